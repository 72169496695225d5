//! `ballot-tests`: whole-system test harnesses. `nemesis` runs real clusters under
//! faults and checks what their clients saw (see `ballot_tests::nemesis`).

use ballot_tests::nemesis::{print_table, run_once, FaultKind, NemesisConfig, RunReport};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Whole-system test harnesses for ballot.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run real `ballot` clusters on loopback under concurrent clients while injecting
    /// faults (kills, pauses, partitions, delay); check every key's history for
    /// linearizability, lost acknowledged writes, convergence, recovery after healing,
    /// and the nodes' traces against the model. Prints a table; exit 0 if no run found
    /// an anomaly, 1 otherwise, 2 on bad usage or if a run could not be set up.
    Nemesis(NemesisArgs),
    /// Simulate whole clusters of the real node in one thread on a paused clock, over a
    /// seeded network (loss, duplication, reordering, one-way and two-way cuts,
    /// splits, bridges) and disk (a process crash loses what was not written, a power loss what
    /// was not synced, tearing the last record; fsyncs may fail or be slow; a record may
    /// rot, and its node refuses to start on it), with
    /// leadership hand-overs among the faults: a safety
    /// phase with faults, then a liveness phase where everything heals and the cluster
    /// must commit and converge. Checks linearizability per key, the counter and every
    /// node's trace against the model. One seed replays one run exactly. Exit 0 if no
    /// seed found an anomaly, 1 otherwise.
    Sim(SimArgs),
}

#[derive(clap::Args, Debug)]
struct SimArgs {
    /// Seeds to run: the first seed, then each next one.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed [default: from the clock; printed].
    #[arg(long)]
    seed: Option<u64>,
    /// Nodes per cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(3..=7))]
    nodes: u8,
    /// Machines standing by beside the nodes: among the faults, the operator puts one
    /// in a lost voter's place (added as a learner, then a replace), or, while two are
    /// left (not with `--new-machines`), grows the cluster by two voters and shrinks it
    /// back, removing the leader and another voter; each spare is used once. Each
    /// change is asked of the leader or of a follower, which forwards it.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=4))]
    spares: u8,
    /// The spares are new machines that no node's configuration lists: the operator
    /// adds each at its address, the cluster giving it the next id.
    #[arg(long, requires = "spares")]
    new_machines: bool,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Simulated seconds of faults per seed (the safety phase).
    #[arg(long, default_value_t = 10)]
    faulty_seconds: u64,
    /// Simulated seconds the cluster has to commit and converge once healed.
    #[arg(long, default_value_t = 10)]
    heal_seconds: u64,
    /// Every fsync takes this many milliseconds of simulated time [default: each seed
    /// chooses 0, 0.1, 1 or 10].
    #[arg(long)]
    fsync_ms: Option<u64>,
    /// Simulated seconds the clients keep running once the cluster converged, with no
    /// fault; the elections started meanwhile are counted and printed.
    #[arg(long, default_value_t = 0)]
    calm_seconds: u64,
    /// Print each seed's trace (every client operation and fault, in simulated
    /// milliseconds).
    #[arg(long)]
    trace: bool,
    /// Print the nodes' own logs (filtered by `RUST_LOG`, default `info`) beside the
    /// trace, without wall-clock times (they mean nothing here).
    #[arg(long)]
    log: bool,
    /// Where failing seeds' traces and latency plots are kept (and a lone seed's plot:
    /// `--seeds 1`).
    #[arg(long, default_value = "target/sim")]
    dir: PathBuf,
    /// Run every node with a deliberately broken variant (a core mutant such as
    /// `minority-commit`, or a runtime bug: `release-before-sync`,
    /// `cancelled-timer-fires`, `restart-trusts-unsynced`), to see the simulator catch
    /// it; needs a build with
    /// `--features mutants`. Exit 0 only if some seed caught it.
    #[arg(long)]
    mutant: Option<String>,
    /// Skip checking the nodes' traces against the model (faster; the traces are
    /// written under `DIR/traces` and removed unless the seed failed).
    #[arg(long)]
    no_conform: bool,
}

#[derive(clap::Args, Debug)]
struct NemesisArgs {
    /// Nodes per cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(3..=7))]
    nodes: u8,
    /// Seconds of load and faults per run.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Runs, each on a fresh cluster with its own seed (seed, seed+1, ...).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Seed of the first run [default: from the clock; printed].
    #[arg(long)]
    seed: Option<u64>,
    /// Concurrent clients [default: 2 per node].
    #[arg(long)]
    clients: Option<usize>,
    /// Keys (besides the increment-only counter) that clients read, write and increment.
    #[arg(long, default_value_t = 3)]
    keys: usize,
    /// Milliseconds a client waits for an answer before calling the outcome unknown.
    #[arg(long, default_value_t = 1500)]
    op_timeout_ms: u64,
    /// Fault kinds to draw from (comma-separated) [default: all; the membership ones,
    /// `replace`, `replace-leader` and `grow-shrink`, only with `--spares`, each while
    /// enough spares are left].
    #[arg(long, value_enum, value_delimiter = ',')]
    faults: Vec<FaultKind>,
    /// Machines standing by beside the `--nodes` voters, which the membership faults
    /// make voters: `replace` and `replace-leader` one each, in a lost machine's place;
    /// `grow-shrink` two, before two old voters leave.
    #[arg(long, default_value_t = 0)]
    spares: usize,
    /// The `ballot` binary [default: the one next to this program, built first with
    /// cargo if it is missing].
    #[arg(long)]
    ballot: Option<PathBuf>,
    /// Scratch directory; runs with anomalies are kept there.
    #[arg(long, default_value = "target/nemesis")]
    dir: PathBuf,
    /// Run a deliberately broken protocol variant (kebab-case name, e.g.
    /// `minority-commit`) to show the harness catches it; builds `ballot` with the
    /// `mutants` feature into `target/nemesis-mutant`. Exit 0 only if it is caught.
    #[arg(long)]
    mutant: Option<String>,
    /// Keep every run's directory (logs, data, traces), not only failed ones.
    #[arg(long)]
    keep: bool,
    /// Linearizability search steps per key before giving up.
    #[arg(long, default_value_t = 20_000_000)]
    search_budget: usize,
    /// Clients sending oversized, malformed, cut-off and random requests to any node
    /// beside the workload (outside the history; a wrong answer is an anomaly).
    #[arg(long, default_value_t = 1)]
    abusers: usize,
    /// Nodes compact their logs past this many bytes (the nodes' `snapshot_log_bytes`),
    /// so that nodes behind catch up by snapshot streams under the faults [default: the
    /// node's own, 64 MiB, which a run rarely reaches].
    #[arg(long)]
    snapshot_log_bytes: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Nemesis(args) => args,
        Command::Sim(args) => return simulate(args),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(nemesis(args))
}

/// Runs the simulator over `args.seeds` seeds; prints a line per failing seed with the
/// command that replays it, and the rates.
fn simulate(args: SimArgs) -> ExitCode {
    if args.log {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .without_time()
            .with_writer(std::io::stdout)
            .init();
    }
    let first = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let config = ballot_tests::sim::SimConfig {
        nodes: usize::from(args.nodes),
        spares: usize::from(args.spares),
        new_machines: args.new_machines,
        clients: args.clients.max(1),
        faulty: Duration::from_secs(args.faulty_seconds),
        heal_within: Duration::from_secs(args.heal_seconds.max(1)),
        traces: (!args.no_conform).then(|| args.dir.join("traces")),
        mutant: args.mutant.clone(),
        fsync: args.fsync_ms.map(Duration::from_millis),
        calm: Duration::from_secs(args.calm_seconds),
        ..Default::default()
    };
    eprintln!(
        "sim: {} seeds from {first} on {} nodes ({} spares), {} clients, {} s of faults, {} s to heal",
        args.seeds, config.nodes, config.spares, config.clients, args.faulty_seconds, args.heal_seconds
    );
    let started = std::time::Instant::now();
    let mut last_progress = started;
    let (mut failed, mut simulated, mut operations, mut acknowledged, mut faults) =
        (0u64, Duration::ZERO, 0usize, 0usize, 0usize);
    let mut conform_steps = 0usize;
    let mut calm_elections = 0u64;
    for seed in first..first.saturating_add(args.seeds) {
        let report = ballot_tests::sim::run_seed(&config, seed);
        simulated += report.simulated;
        operations += report.operations;
        acknowledged += report.acknowledged;
        faults += report.faults;
        conform_steps += report.conform_steps;
        calm_elections += report.calm_elections;
        if args.trace {
            println!("{}", report.trace);
        }
        // A replayed seed, and every failing one, gets its latency plot.
        let plot = args.dir.join(format!("seed-{seed}-latency.svg"));
        if args.seeds == 1 || !report.anomalies.is_empty() {
            let written = std::fs::create_dir_all(&args.dir)
                .and_then(|()| std::fs::write(&plot, report.plot.to_svg()));
            match written {
                Ok(()) => eprintln!("latency plot: {}", plot.display()),
                Err(error) => eprintln!("latency plot not written: {error}"),
            }
        }
        if !report.anomalies.is_empty() {
            failed += 1;
            let kept = args.dir.join(format!("seed-{seed}.trace"));
            let saved = std::fs::create_dir_all(&args.dir)
                .and_then(|()| std::fs::write(&kept, &report.trace));
            let features = if args.mutant.is_some() {
                " --features mutants"
            } else {
                ""
            };
            let mutant = args
                .mutant
                .as_ref()
                .map(|m| format!(" --mutant {m}"))
                .unwrap_or_default();
            let node_traces = match &config.traces {
                Some(dir) => format!(
                    "\n  node traces: {}",
                    dir.join(format!("seed-{seed}-{}", config.nodes)).display()
                ),
                None => String::new(),
            };
            println!(
                "seed {seed}: {}\n  replay: cargo run -p ballot-tests --release{features} -- sim --seeds 1 --seed {seed} --nodes {} --spares {}{} --clients {} --faulty-seconds {} --heal-seconds {}{mutant} --trace\n  trace: {}{node_traces}",
                report.anomalies.join("; "),
                args.nodes,
                args.spares,
                if args.new_machines { " --new-machines" } else { "" },
                config.clients,
                args.faulty_seconds,
                args.heal_seconds,
                match saved {
                    Ok(()) => kept.display().to_string(),
                    Err(error) => format!("not kept ({error})"),
                }
            );
        }
        if last_progress.elapsed() >= Duration::from_secs(10) {
            last_progress = std::time::Instant::now();
            eprintln!(
                "  … {} seeds, {failed} failed, {:.1} seeds/s",
                seed - first + 1,
                (seed - first + 1) as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let wall = started.elapsed().as_secs_f64();
    println!(
        "sim: {} seeds, {failed} with anomalies; {operations} operations ({acknowledged} acknowledged), {faults} faults, {conform_steps} trace steps conformed; {:.1} seeds/s, {:.0} simulated s per wall-clock s ({:.0} s simulated in {wall:.1} s)",
        args.seeds,
        args.seeds as f64 / wall,
        simulated.as_secs_f64() / wall,
        simulated.as_secs_f64(),
    );
    if args.calm_seconds > 0 {
        println!(
            "calm load: {calm_elections} elections in {} s without faults over {} seeds",
            args.calm_seconds, args.seeds
        );
    }
    let caught = failed > 0;
    if args.mutant.is_some() {
        println!(
            "mutant {}: {}",
            args.mutant.as_deref().unwrap_or_default(),
            if caught { "caught" } else { "NOT caught" }
        );
        return if caught {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    if caught {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Finds (or builds) the `ballot` binary to test.
fn ballot_binary(args: &NemesisArgs) -> Result<PathBuf, String> {
    if let Some(path) = &args.ballot {
        return Ok(path.clone());
    }
    let release = !cfg!(debug_assertions);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.args(["build", "-p", "ballot-node", "--bin", "ballot"]);
    if release {
        command.arg("--release");
    }
    let profile = if release { "release" } else { "debug" };
    let target = match &args.mutant {
        Some(_) => {
            command.args([
                "--features",
                "mutants",
                "--target-dir",
                "target/nemesis-mutant",
            ]);
            PathBuf::from("target/nemesis-mutant").join(profile)
        }
        None => {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let dir = exe
                .parent()
                .ok_or("cannot find this program's directory")?
                .to_path_buf();
            if dir.join("ballot").exists() {
                return Ok(dir.join("ballot"));
            }
            dir
        }
    };
    eprintln!("building the ballot binary: {command:?}");
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building ballot failed ({status})"));
    }
    Ok(target.join("ballot"))
}

async fn nemesis(args: NemesisArgs) -> ExitCode {
    let binary = match ballot_binary(&args) {
        Ok(binary) => binary,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let nodes = usize::from(args.nodes);
    if let Some(kind) = args.faults.iter().find(|f| f.spares_needed() > args.spares) {
        eprintln!(
            "error: {} needs {} spare(s) to put in place (--spares)",
            kind.name(),
            kind.spares_needed()
        );
        return ExitCode::from(2);
    }
    if nodes + args.spares > 16 {
        eprintln!("error: at most 16 nodes and spares in all");
        return ExitCode::from(2);
    }
    let config = NemesisConfig {
        nodes,
        spares: args.spares,
        seconds: args.seconds,
        clients: args.clients.unwrap_or(2 * nodes).max(1),
        keys: args.keys,
        op_timeout: Duration::from_millis(args.op_timeout_ms.max(1)),
        faults: if args.faults.is_empty() {
            let membership = FaultKind::MEMBERSHIP.iter().filter(|_| args.spares > 0);
            FaultKind::ALL.iter().chain(membership).copied().collect()
        } else {
            args.faults.clone()
        },
        binary,
        dir: args.dir.clone(),
        mutant: args.mutant.clone(),
        keep: args.keep,
        search_budget: args.search_budget,
        abusers: args.abusers,
        snapshot_log_bytes: args.snapshot_log_bytes,
    };
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: finishing the current run's checks, then stopping");
                cancel.store(true, Ordering::Relaxed);
            }
        });
    }
    eprintln!(
        "nemesis: {} runs of {} s on {} nodes ({} spares), {} clients, {} abusers, {} keys + counter, faults {}, first seed {seed}{}",
        args.runs,
        config.seconds,
        nodes,
        config.spares,
        config.clients,
        config.abusers,
        config.keys,
        config
            .faults
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(","),
        config
            .mutant
            .as_ref()
            .map(|m| format!(", mutant {m}"))
            .unwrap_or_default()
    );
    let mut reports: Vec<RunReport> = Vec::new();
    for run in 0..args.runs {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let run_seed = seed.wrapping_add(run as u64);
        let started = std::time::Instant::now();
        match run_once(&config, run, run_seed, &cancel).await {
            Ok(report) => {
                let faults: usize = report.faults.values().sum();
                eprintln!(
                    "run {run} (seed {run_seed}): {} ok, {} failed, {} unknown, {faults} faults, {} bad requests ({} error replies, {} unanswered), {} anomalies, {:.1} s",
                    report.ok,
                    report.failed,
                    report.unknown,
                    report.abuse.requests,
                    report.abuse.errors,
                    report.abuse.unanswered,
                    report.anomalies.len(),
                    started.elapsed().as_secs_f64()
                );
                for anomaly in &report.anomalies {
                    eprintln!("  ANOMALY: {anomaly}");
                }
                if !report.anomalies.is_empty() {
                    eprintln!("  files kept in {}", report.dir.display());
                }
                if let Some(plot) = &report.plot {
                    eprintln!("  latency plot: {}", plot.display());
                }
                reports.push(report);
            }
            Err(message) => {
                eprintln!("error: run {run} (seed {run_seed}) could not run: {message}");
                return ExitCode::from(2);
            }
        }
    }
    print_table(&reports);
    let anomalies: usize = reports.iter().map(|r| r.anomalies.len()).sum();
    match (&args.mutant, anomalies) {
        (None, 0) => ExitCode::SUCCESS,
        (None, _) => ExitCode::from(1),
        (Some(mutant), 0) => {
            println!("mutant {mutant}: NOT caught");
            ExitCode::from(1)
        }
        (Some(mutant), n) => {
            println!("mutant {mutant}: caught ({n} anomalies)");
            ExitCode::SUCCESS
        }
    }
}
