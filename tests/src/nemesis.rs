//! The nemesis: a real cluster of `ballot` processes under concurrent clients while
//! faults are injected, then checked — every key's history linearizable, no
//! acknowledged increment lost, every node converged, the cluster serving again within
//! a bound after the faults heal, and every node's trace conforming to the model.
//!
//! One fault at a time, each lasting 1–4 s with 0.5–2 s of calm between: SIGKILL and
//! restart (a random node or the leader), SIGSTOP/SIGCONT pauses (likewise),
//! partitions (the leader isolated, a random minority cut from the majority, a
//! bridge: two halves that only one node hears both of), and message delay on every
//! link. Every choice comes from the run's seed.
//!
//! Beside the workload's clients, [`crate::abuser`]s send oversized, malformed, cut-off
//! and random requests to any node throughout; their operations are not in the
//! history, but an answer that breaks the server's contract is an anomaly, and so is
//! a node that panics (a panic in a connection's task would not stop the process, so
//! the nodes' logs are read for one).

use crate::abuser::{run_abusers, AbuseCounts, AbuserConfig};
use crate::fault_proxy::Proxies;
use crate::kv_spec::{KeyOp, KeyRet, KeySpec};
use crate::latency_plot::{FaultWindow, LatencyPlot, LeaderChange, PlotOp};
use crate::linearizability::{check_partitioned, Operation, Outcome, Verdict};
use crate::node_processes::NodeProcesses;
use crate::ports::Reservation;
use crate::workload::{final_read, run_clients, Event, History, WorkloadConfig, COUNTER_KEY};
use ballot_node::client::Client;
use ballot_node::kv::KvStore;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum FaultKind {
    /// SIGKILL a random node; restart it when the fault heals.
    Kill,
    /// SIGKILL the leader; restart it when the fault heals.
    KillLeader,
    /// SIGSTOP a random node; SIGCONT it when the fault heals.
    Pause,
    /// SIGSTOP the leader; SIGCONT it when the fault heals.
    PauseLeader,
    /// Cut every link to and from the leader.
    IsolateLeader,
    /// Cut a random minority from the majority.
    Partition,
    /// Two halves that cannot hear each other, bridged by one node that hears both.
    Bridge,
    /// Hold every message back 20–150 ms.
    Delay,
    /// A random voter's machine is lost for good (SIGKILL, data directory wiped): a
    /// spare is added as a learner and put in its place (`BALLOT.MEMBER ADD`, then
    /// `REPLACE`), while the clients run. Needs a spare (`--spares`); each use takes one.
    Replace,
    /// As `replace`, for the leader's machine.
    ReplaceLeader,
    /// The cluster grows by two voters and shrinks back, while the clients run: two
    /// spares are added as learners and promoted, then the leader and another of the
    /// old voters are removed (and their machines stopped and wiped). Needs two spares.
    GrowShrink,
}

impl FaultKind {
    /// Every fault kind.
    pub const ALL: [FaultKind; 8] = [
        FaultKind::Kill,
        FaultKind::KillLeader,
        FaultKind::Pause,
        FaultKind::PauseLeader,
        FaultKind::IsolateLeader,
        FaultKind::Partition,
        FaultKind::Bridge,
        FaultKind::Delay,
    ];

    /// The membership faults: each puts spares in the place of voters.
    pub const MEMBERSHIP: [FaultKind; 3] = [
        FaultKind::Replace,
        FaultKind::ReplaceLeader,
        FaultKind::GrowShrink,
    ];

    /// Whether the fault changes the membership (and takes spares).
    pub fn is_membership(self) -> bool {
        Self::MEMBERSHIP.contains(&self)
    }

    /// How many spares the fault puts in voters' places.
    pub fn spares_needed(self) -> usize {
        match self {
            FaultKind::Replace | FaultKind::ReplaceLeader => 1,
            FaultKind::GrowShrink => 2,
            _ => 0,
        }
    }

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::KillLeader => "kill-leader",
            FaultKind::Pause => "pause",
            FaultKind::PauseLeader => "pause-leader",
            FaultKind::IsolateLeader => "isolate-leader",
            FaultKind::Partition => "partition",
            FaultKind::Bridge => "bridge",
            FaultKind::Delay => "delay",
            FaultKind::Replace => "replace",
            FaultKind::ReplaceLeader => "replace-leader",
            FaultKind::GrowShrink => "grow-shrink",
        }
    }

    /// Whether the fault takes the leader away (its recovery time is a failover time).
    pub fn deposes_leader(self) -> bool {
        matches!(
            self,
            FaultKind::KillLeader
                | FaultKind::PauseLeader
                | FaultKind::IsolateLeader
                | FaultKind::ReplaceLeader
        )
    }
}

/// How to run the nemesis.
#[derive(Clone, Debug)]
pub struct NemesisConfig {
    /// Nodes per cluster (3 or 5): its voters at the start.
    pub nodes: usize,
    /// Machines standing by besides them (ids `nodes..nodes + spares`), no members
    /// until a membership fault puts one in a lost machine's place.
    pub spares: usize,
    /// Seconds of faults and load per run.
    pub seconds: u64,
    /// Concurrent clients.
    pub clients: usize,
    /// Keys besides the counter.
    pub keys: usize,
    /// How long a client waits before calling an outcome unknown.
    pub op_timeout: Duration,
    /// The fault kinds to draw from.
    pub faults: Vec<FaultKind>,
    /// The `ballot` binary.
    pub binary: PathBuf,
    /// Scratch directory (one sub-directory per run).
    pub dir: PathBuf,
    /// A deliberately broken protocol variant the nodes run (needs a binary built
    /// with the `mutants` feature); traces are then not checked for conformance.
    pub mutant: Option<String>,
    /// Keep every run's directory, not only failed ones.
    pub keep: bool,
    /// Search steps the linearizability check may take per key.
    pub search_budget: usize,
    /// Clients sending bad requests (see [`crate::abuser`]) beside the workload's.
    pub abusers: usize,
    /// The nodes' `snapshot_log_bytes`, if set: small values make nodes compact often
    /// and catch up by snapshot streams.
    pub snapshot_log_bytes: Option<u64>,
}

/// What one run found.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// Run number.
    pub run: usize,
    /// Its seed.
    pub seed: u64,
    /// Operations answered.
    pub ok: usize,
    /// Operations that definitely did not happen.
    pub failed: usize,
    /// Operations whose outcome is unknown.
    pub unknown: usize,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, usize>,
    /// For each fault that took the leader away: milliseconds from the fault to the
    /// next acknowledged write.
    pub failover_ms: Vec<u64>,
    /// Milliseconds from healing everything to the first acknowledged write.
    pub heal_to_write_ms: Option<u64>,
    /// Keys whose history was checked; keys the search gave up on.
    pub keys_checked: usize,
    /// Keys the linearizability search gave up on (budget exhausted).
    pub keys_gave_up: usize,
    /// Trace steps replayed by the conformance check (0 if not run).
    pub conform_steps: usize,
    /// What the abusers sent and got.
    pub abuse: AbuseCounts,
    /// Everything wrong, one line each.
    pub anomalies: Vec<String>,
    /// Where the run's files are (kept when it found anomalies).
    pub dir: PathBuf,
    /// The run's latency plot (an SVG beside the run directories, always kept).
    pub plot: Option<PathBuf>,
}

/// Stop early on Ctrl-C.
pub type Cancel = Arc<AtomicBool>;

async fn info(addr: SocketAddr) -> Option<BTreeMap<String, String>> {
    tokio::time::timeout(Duration::from_millis(500), async {
        let mut client = Client::connect(&addr.to_string()).await.ok()?;
        client.info().await.ok()
    })
    .await
    .ok()
    .flatten()
}

/// The node that says it leads, if any answers so.
async fn find_leader(clients: &[SocketAddr]) -> Option<usize> {
    for (id, addr) in clients.iter().enumerate() {
        if info(*addr)
            .await
            .is_some_and(|i| i.get("role").map(String::as_str) == Some("leader"))
        {
            return Some(id);
        }
    }
    None
}

/// One injected fault, for the report: when it began and when it was healed
/// (nanoseconds since the run's epoch).
struct Injected {
    kind: FaultKind,
    at: u64,
    healed: u64,
}

/// Polls the nodes for the leader every 100 ms until `stop`, recording each change
/// (nanoseconds since `epoch`), for the latency plot.
async fn watch_leaders(
    clients: Vec<SocketAddr>,
    epoch: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<LeaderChange> {
    let mut changes: Vec<LeaderChange> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if let Some(leader) = find_leader(&clients).await {
            if changes.last().is_none_or(|last| last.leader != leader) {
                changes.push(LeaderChange {
                    at_ns: epoch.elapsed().as_nanos() as u64,
                    leader,
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    changes
}

/// Runs one seeded nemesis run and checks it.
pub async fn run_once(
    config: &NemesisConfig,
    run: usize,
    seed: u64,
    cancel: &Cancel,
) -> Result<RunReport, String> {
    let dir = config.dir.join(format!("run-{run}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut report = RunReport {
        run,
        seed,
        dir: dir.clone(),
        ..RunReport::default()
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let io = |e: std::io::Error| e.to_string();
    let mut ports = Reservation::new();
    let peers = ports.claim(config.nodes + config.spares).map_err(io)?;
    let proxies = Proxies::start(&peers).await.map_err(io)?;
    let mut extra = config
        .mutant
        .as_ref()
        .map(|m| format!("mutant = \"{m}\"\n"))
        .unwrap_or_default();
    if let Some(bytes) = config.snapshot_log_bytes {
        extra.push_str(&format!("snapshot_log_bytes = {bytes}\n"));
    }
    let spares: Vec<usize> = (config.nodes..config.nodes + config.spares).collect();
    if !spares.is_empty() {
        extra.push_str(&format!("spares = {spares:?}\n"));
    }
    // The voters now, and the spares not used yet: membership faults change both.
    let mut voters: Vec<usize> = (0..config.nodes).collect();
    let mut spares: std::collections::VecDeque<usize> = spares.into();
    let mut cluster =
        NodeProcesses::configure(&config.binary, &dir, &peers, &proxies, &extra).map_err(io)?;
    for id in 0..cluster.len() {
        cluster.start(id).map_err(io)?;
    }
    let started = Instant::now();
    while find_leader(&cluster.clients).await.is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "no leader within 30 s of starting; node 0 log:\n{}",
                cluster.log_tail(0, 20)
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Load and faults.
    let epoch = Instant::now();
    let history: History = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let workload_seed: u64 = rng.random();
    let clients = tokio::spawn(run_clients(
        WorkloadConfig {
            nodes: cluster.clients.clone(),
            clients: config.clients,
            keys: config.keys,
            op_timeout: config.op_timeout,
            seed: workload_seed,
        },
        epoch,
        history.clone(),
        stop.clone(),
    ));
    // Seeded from the workload's seed rather than drawn from `rng`, so that a seed
    // injects the same faults with or without abusers.
    let abusers = tokio::spawn(run_abusers(
        AbuserConfig {
            nodes: cluster.clients.clone(),
            abusers: config.abusers,
            keys: config.keys,
            seed: workload_seed ^ 0x6162_7573_6572_7321,
        },
        stop.clone(),
    ));
    let leaders = tokio::spawn(watch_leaders(cluster.clients.clone(), epoch, stop.clone()));
    let end = epoch + Duration::from_secs(config.seconds);
    let mut injected = Vec::new();
    let sleep_until = |deadline: Instant| async move {
        while Instant::now() < deadline && !cancel.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    while Instant::now() < end && !cancel.load(Ordering::Relaxed) {
        sleep_until((Instant::now() + Duration::from_millis(rng.random_range(500..2000))).min(end))
            .await;
        if Instant::now() >= end {
            break;
        }
        // A membership fault needs spares left to put in place.
        let possible: Vec<FaultKind> = config
            .faults
            .iter()
            .copied()
            .filter(|kind| kind.spares_needed() <= spares.len())
            .collect();
        let Some(&kind) = possible.choose(&mut rng) else {
            break;
        };
        let leader = find_leader(&cluster.clients).await;
        let at = epoch.elapsed().as_nanos() as u64;
        if kind == FaultKind::GrowShrink {
            let new = [0, 1].map(|_| spares.pop_front().expect("two spares, checked above"));
            // The leader leaves (when one is known), and one more of the old voters.
            let mut old = voters.clone();
            old.shuffle(&mut rng);
            if let Some(leader) = leader {
                old.retain(|&v| v != leader);
                old.insert(0, leader);
            }
            let leaving = [old[0], old[1]];
            let outcome = grow_and_shrink(&cluster.clients, &voters, new, leaving).await;
            let mut members: Vec<usize> = voters.iter().copied().chain(new).collect();
            match outcome {
                Ok(()) => members.retain(|m| !leaving.contains(m)),
                Err(error) => report.anomalies.push(format!(
                    "growing by {new:?} and removing {leaving:?}: {error}"
                )),
            }
            // The membership the leader shows now rules who counts as a voter (after a
            // failed change too); a removed node is stopped for good.
            match current_voters(&cluster.clients, &members).await {
                Some(now) => voters = now,
                None => report
                    .anomalies
                    .push("no leader to ask for the membership after growing".into()),
            }
            for id in leaving.into_iter().filter(|id| !voters.contains(id)) {
                cluster.retire(id);
            }
        } else if kind.is_membership() {
            let victim = match (kind, leader) {
                (FaultKind::ReplaceLeader, Some(leader)) => leader,
                _ => *voters.choose(&mut rng).expect("a cluster has voters"),
            };
            let spare = spares.pop_front().expect("a spare, checked above");
            cluster.retire(victim);
            match replace(&cluster.clients, &voters, victim, spare).await {
                Ok(()) => {
                    voters.retain(|&v| v != victim);
                    voters.push(spare);
                    voters.sort_unstable();
                }
                Err(error) => report
                    .anomalies
                    .push(format!("replacing node {victim} by spare {spare}: {error}")),
            }
        } else {
            inject(kind, leader, &voters, &mut rng, &mut cluster, &proxies).map_err(io)?;
        }
        *report.faults.entry(kind.name()).or_default() += 1;
        sleep_until(
            (Instant::now() + Duration::from_millis(rng.random_range(1000..4000))).min(end),
        )
        .await;
        proxies.heal_all();
        let healed = epoch.elapsed().as_nanos() as u64;
        injected.push(Injected { kind, at, healed });
        for id in 0..cluster.len() {
            if let Some(status) = cluster.exited(id) {
                report.anomalies.push(format!(
                    "node {id} exited by itself ({status}); its log ends:\n{}",
                    cluster.log_tail(id, 10)
                ));
            }
        }
        cluster.heal().map_err(io)?;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = clients.await;
    let leaders = leaders.await.unwrap_or_default();
    report.abuse = abusers.await.unwrap_or_default();
    for wrong in &report.abuse.wrong {
        report.anomalies.push(format!("abuser: {wrong}"));
    }
    proxies.heal_all();
    cluster.heal().map_err(io)?;

    // The cluster serves again, and converges.
    let healed = Instant::now();
    let mut served = false;
    let mut attempt = 0usize;
    while healed.elapsed() < Duration::from_secs(30) {
        let addr = cluster.clients[voters[attempt % voters.len()]];
        attempt += 1;
        let ok = tokio::time::timeout(Duration::from_secs(2), async {
            let mut client = Client::connect(&addr.to_string()).await.ok()?;
            client.call(&["SET", "nemesis-probe", "1"]).await.ok()
        })
        .await;
        if matches!(ok, Ok(Some(ballot_node::resp::Value::Simple(_)))) {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if served {
        report.heal_to_write_ms = Some(healed.elapsed().as_millis() as u64);
    } else {
        report
            .anomalies
            .push("no write succeeded within 30 s of healing every fault".into());
    }
    let converge_deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // The members converge; a spare never added receives no log.
        let mut applied = Vec::new();
        for addr in voters.iter().map(|&v| &cluster.clients[v]) {
            applied.push(
                info(*addr)
                    .await
                    .and_then(|i| i.get("applied_index").cloned()),
            );
        }
        if applied.iter().all(|a| a.is_some() && *a == applied[0]) {
            break;
        }
        if Instant::now() > converge_deadline {
            report.anomalies.push(format!(
                "nodes did not converge within 30 s of healing: applied indexes {applied:?}"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Final reads (part of the history), then the counter's bounds.
    let mut keys: Vec<String> = (0..config.keys).map(|k| format!("k{k}")).collect();
    keys.push(COUNTER_KEY.to_string());
    let read_deadline = Instant::now() + Duration::from_secs(20);
    let mut counter_value = None;
    for (i, key) in keys.iter().enumerate() {
        let node = voters[i % voters.len()];
        let value = final_read(
            cluster.clients[node],
            node,
            key,
            epoch,
            &history,
            read_deadline,
        )
        .await;
        match value {
            None => report
                .anomalies
                .push(format!("final read of {key} got no answer")),
            Some(value) if key == COUNTER_KEY => counter_value = Some(value),
            Some(_) => {}
        }
    }
    let unclean = cluster.stop_all();
    for id in unclean {
        report
            .anomalies
            .push(format!("node {id} did not exit cleanly on SIGTERM"));
    }
    for id in 0..cluster.len() {
        if let Some(panic) = cluster.log_panic(id) {
            report
                .anomalies
                .push(format!("node {id} panicked: {panic}"));
        }
    }
    proxies.shutdown().await;

    let history: Vec<Event> =
        std::mem::take(&mut *history.lock().unwrap_or_else(|e| e.into_inner()));
    for event in &history {
        match event.operation.outcome {
            Outcome::Ok { .. } => report.ok += 1,
            Outcome::Failed => report.failed += 1,
            Outcome::Unknown => report.unknown += 1,
        }
    }
    if let Some(value) = counter_value {
        check_counter(&history, value, &mut report.anomalies);
    }
    report.failover_ms = failover_times(&history, &injected);
    let plot_path = config.dir.join(format!("run-{run}-latency.svg"));
    let plot = latency_plot(&history, &injected, leaders, config, run, seed);
    match std::fs::write(&plot_path, plot.to_svg()) {
        Ok(()) => report.plot = Some(plot_path),
        Err(error) => eprintln!("cannot write {}: {error}", plot_path.display()),
    }

    // Linearizability, key by key.
    let checking = Instant::now();
    let keyed: Vec<(String, Operation<KeyOp, KeyRet>)> = history
        .iter()
        .map(|e| (e.key.clone(), e.operation.clone()))
        .collect();
    match check_partitioned(|_| KeySpec::default(), &keyed, Some(config.search_budget)) {
        Err(error) => report.anomalies.push(format!("bad history: {error}")),
        Ok(verdicts) => {
            for (key, verdict) in verdicts {
                report.keys_checked += 1;
                match &verdict {
                    Verdict::Linearizable { .. } => {}
                    Verdict::GaveUp { .. } => report.keys_gave_up += 1,
                    Verdict::NotLinearizable { .. } => {
                        let text = verdict.explain(|i| keyed.get(i).map(|(_, op)| op));
                        report.anomalies.push(format!(
                            "key {key} is not linearizable: {}",
                            shorten(&text, 40)
                        ));
                    }
                }
            }
        }
    }

    let linearizability_time = checking.elapsed();
    // The traces against the model.
    let checking = Instant::now();
    if config.mutant.is_none() {
        match ballot_node::trace::check_dir::<KvStore>(&cluster.trace_dir()) {
            Ok(conformance) => report.conform_steps = conformance.steps,
            Err(error) => report
                .anomalies
                .push(format!("traces do not conform: {error}")),
        }
    }
    eprintln!(
        "run {run}: checked {} operations on {} keys in {:.1} s, {} trace steps in {:.1} s",
        history.len(),
        report.keys_checked,
        linearizability_time.as_secs_f64(),
        report.conform_steps,
        checking.elapsed().as_secs_f64()
    );
    drop(cluster);
    if report.anomalies.is_empty() && !config.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(report)
}

/// Injects a fault of `kind` among `voters` (spares not added are left alone).
fn inject(
    kind: FaultKind,
    leader: Option<usize>,
    voters: &[usize],
    rng: &mut StdRng,
    cluster: &mut NodeProcesses,
    proxies: &Proxies,
) -> std::io::Result<()> {
    let nodes = cluster.len();
    let random = *voters.choose(rng).expect("a cluster has voters");
    let leader = leader.unwrap_or(random);
    match kind {
        FaultKind::Kill => cluster.kill(random),
        FaultKind::KillLeader => cluster.kill(leader),
        FaultKind::Pause => cluster.pause(random, true),
        FaultKind::PauseLeader => cluster.pause(leader, true),
        FaultKind::IsolateLeader => {
            for other in (0..nodes).filter(|&n| n != leader) {
                proxies.set_cut_between(leader, other, true);
            }
        }
        FaultKind::Partition => {
            let mut order: Vec<usize> = voters.to_vec();
            rand::seq::SliceRandom::shuffle(&mut order[..], rng);
            let minority = &order[..(order.len() - 1) / 2];
            let majority = &order[(order.len() - 1) / 2..];
            for &a in minority {
                for &b in majority {
                    proxies.set_cut_between(a, b, true);
                }
            }
        }
        FaultKind::Bridge => {
            // The bridge hears everyone; the rest split in two halves that do not.
            let mut order: Vec<usize> = voters.to_vec();
            rand::seq::SliceRandom::shuffle(&mut order[..], rng);
            let rest = &order[1..];
            let (left, right) = rest.split_at(rest.len() / 2);
            for &a in left {
                for &b in right {
                    proxies.set_cut_between(a, b, true);
                }
            }
        }
        FaultKind::Delay => {
            let delay = Duration::from_millis(rng.random_range(20..150));
            for from in 0..nodes {
                for to in 0..nodes {
                    proxies.link(from, to).set_delay(delay);
                }
            }
        }
        FaultKind::Replace | FaultKind::ReplaceLeader | FaultKind::GrowShrink => {
            unreachable!("membership faults are run by `replace` and `grow_and_shrink`")
        }
    }
    Ok(())
}

/// One membership change, as an operator asks for it with `BALLOT.MEMBER`.
#[derive(Clone, Copy, Debug)]
enum Change {
    Add(usize),
    Promote(usize),
    Remove(usize),
    Replace { old: usize, new: usize },
}

impl Change {
    /// `BALLOT.MEMBER`'s arguments.
    fn args(self) -> Vec<String> {
        match self {
            Change::Add(id) => vec!["ADD".into(), id.to_string()],
            Change::Promote(id) => vec!["PROMOTE".into(), id.to_string()],
            Change::Remove(id) => vec!["REMOVE".into(), id.to_string()],
            Change::Replace { old, new } => {
                vec!["REPLACE".into(), old.to_string(), new.to_string()]
            }
        }
    }

    /// Whether the leader's `INFO` shows the change made.
    fn done(self, info: &BTreeMap<String, String>) -> bool {
        let member = |id| lists(info, "voters", id) || lists(info, "learners", id);
        match self {
            Change::Add(id) => member(id),
            Change::Promote(id) => lists(info, "voters", id),
            Change::Remove(id) => !member(id),
            Change::Replace { old, new } => {
                lists(info, "voters", new) && !lists(info, "voters", old)
            }
        }
    }
}

/// Makes `changes` in order as an operator would, each asked of whichever of `members`
/// leads (found again after a refusal, such as a learner that still lags, or a lost
/// answer) until the leader's membership shows it made, for at most 20 s each;
/// `members` follows the changes.
async fn make_changes(
    clients: &[SocketAddr],
    members: &mut Vec<usize>,
    changes: &[Change],
) -> Result<(), String> {
    for &change in changes {
        change_members(clients, members, &change.args(), |info| change.done(info)).await?;
        match change {
            Change::Add(id) => members.push(id),
            Change::Remove(old) | Change::Replace { old, .. } => members.retain(|&m| m != old),
            Change::Promote(_) => {}
        }
    }
    Ok(())
}

/// Puts `spare` in lost voter `victim`'s place: adds it as a learner, then replaces
/// the victim by it.
async fn replace(
    clients: &[SocketAddr],
    voters: &[usize],
    victim: usize,
    spare: usize,
) -> Result<(), String> {
    let changes = [
        Change::Add(spare),
        Change::Replace {
            old: victim,
            new: spare,
        },
    ];
    make_changes(clients, &mut voters.to_vec(), &changes).await
}

/// Grows the voters by spares `new` (added, then promoted) and shrinks them by
/// `leaving` (removed, the leader among them).
async fn grow_and_shrink(
    clients: &[SocketAddr],
    voters: &[usize],
    new: [usize; 2],
    leaving: [usize; 2],
) -> Result<(), String> {
    let changes = [
        Change::Add(new[0]),
        Change::Add(new[1]),
        Change::Promote(new[0]),
        Change::Promote(new[1]),
        Change::Remove(leaving[0]),
        Change::Remove(leaving[1]),
    ];
    make_changes(clients, &mut voters.to_vec(), &changes).await
}

/// The voters as the member of `members` that leads lists them, asked for up to 10 s.
async fn current_voters(clients: &[SocketAddr], members: &[usize]) -> Option<Vec<usize>> {
    let addrs: Vec<SocketAddr> = members.iter().map(|&m| clients[m]).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(leader) = find_leader(&addrs).await {
            if let Some(voters) = info(addrs[leader]).await.and_then(|info| {
                let list = info.get("voters")?;
                list.split(',').map(|id| id.parse().ok()).collect()
            }) {
                return Some(voters);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Whether `INFO` field `field` (a comma-separated list of ids) holds `id`.
fn lists(info: &BTreeMap<String, String>, field: &str, id: usize) -> bool {
    info.get(field)
        .is_some_and(|ids| ids.split(',').any(|i| i == id.to_string()))
}

/// Sends `BALLOT.MEMBER args` to the member of `members` that leads and to another
/// member in turn (which forwards it to the leader) until the `INFO` of the one that
/// leads satisfies `done`, for at most 20 s.
async fn change_members(
    clients: &[SocketAddr],
    members: &[usize],
    args: &[String],
    done: impl Fn(&BTreeMap<String, String>) -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let addrs: Vec<SocketAddr> = members.iter().map(|&m| clients[m]).collect();
    let mut last = String::from("no member leads");
    let mut attempt = 0usize;
    while Instant::now() < deadline {
        if let Some(leading) = find_leader(&addrs).await {
            let leader = addrs[leading];
            if info(leader).await.is_some_and(|info| done(&info)) {
                return Ok(());
            }
            attempt += 1;
            let asked = addrs[(leading + attempt % 2) % addrs.len()];
            let mut command = vec!["BALLOT.MEMBER".to_string()];
            command.extend_from_slice(args);
            let answer = tokio::time::timeout(Duration::from_secs(5), async {
                let mut client = Client::connect(&asked.to_string()).await.ok()?;
                client.call(&command).await.ok()
            })
            .await;
            last = format!("{answer:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("{args:?} not done within 20 s; last answer {last}"))
}

/// The counter is only ever incremented by 1: its final value must count every
/// acknowledged increment (none lost) and no more than were attempted (none invented).
fn check_counter(history: &[Event], value: Option<Vec<u8>>, anomalies: &mut Vec<String>) {
    let (mut acked, mut unknown) = (0u64, 0u64);
    for event in history.iter().filter(|e| e.key == COUNTER_KEY) {
        if let KeyOp::IncrBy(_) = event.operation.op {
            match event.operation.outcome {
                Outcome::Ok { .. } => acked += 1,
                Outcome::Unknown => unknown += 1,
                Outcome::Failed => {}
            }
        }
    }
    let final_value = value
        .as_deref()
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if final_value < acked {
        anomalies.push(format!(
            "lost acknowledged writes: the counter is {final_value} after {acked} acknowledged increments"
        ));
    }
    if final_value > acked + unknown {
        anomalies.push(format!(
            "invented writes: the counter is {final_value} after only {} attempted increments",
            acked + unknown
        ));
    }
}

/// For each fault that took the leader away, the time from the fault to the first
/// acknowledgement of a write sent after it (a write already in flight may still be
/// acknowledged by the old leader, which says nothing about failover).
fn failover_times(history: &[Event], injected: &[Injected]) -> Vec<u64> {
    let mut writes: Vec<(u64, u64)> = history
        .iter()
        .filter(|e| e.operation.op != KeyOp::Get)
        .filter_map(|e| match e.operation.outcome {
            Outcome::Ok { completed, .. } => Some((e.operation.invoked, completed)),
            _ => None,
        })
        .collect();
    writes.sort_unstable();
    injected
        .iter()
        .filter(|f| f.kind.deposes_leader())
        .filter_map(|f| {
            let sent_after = writes.partition_point(|&(invoked, _)| invoked < f.at);
            writes[sent_after..]
                .iter()
                .map(|&(_, completed)| completed)
                .min()
                .map(|t| (t - f.at) / 1_000_000)
        })
        .collect()
}

/// The run's latency plot: every client operation, the fault windows and leader changes.
fn latency_plot(
    history: &[Event],
    injected: &[Injected],
    leaders: Vec<LeaderChange>,
    config: &NemesisConfig,
    run: usize,
    seed: u64,
) -> LatencyPlot {
    let ops = history.iter().map(|e| PlotOp::of(&e.operation)).collect();
    let faults = injected
        .iter()
        .map(|f| FaultWindow {
            label: f.kind.name().to_string(),
            from_ns: f.at,
            to_ns: f.healed,
        })
        .collect();
    LatencyPlot {
        title: format!(
            "nemesis run {run} (seed {seed}): {} nodes, {} clients, {} s; latency of every operation",
            config.nodes, config.clients, config.seconds
        ),
        ops,
        faults,
        leaders,
    }
}

/// Prints one line per run and a total: the summary table.
pub fn print_table(reports: &[RunReport]) {
    println!(
        "{:>4} {:>20} {:>8} {:>7} {:>8} {:>7} {:>10} {:>12} {:>8} {:>9} {:>10} {:>10} {:>9}",
        "run",
        "seed",
        "ok",
        "failed",
        "unknown",
        "faults",
        "lin keys",
        "failover ms",
        "heal ms",
        "conform",
        "abuse req",
        "abuse err",
        "anomalies"
    );
    for r in reports {
        let faults: usize = r.faults.values().sum();
        let failover = median_max(&r.failover_ms);
        println!(
            "{:>4} {:>20} {:>8} {:>7} {:>8} {:>7} {:>10} {:>12} {:>8} {:>9} {:>10} {:>10} {:>9}",
            r.run,
            r.seed,
            r.ok,
            r.failed,
            r.unknown,
            faults,
            format!("{}/{}", r.keys_checked - r.keys_gave_up, r.keys_checked),
            failover,
            r.heal_to_write_ms.map_or("-".into(), |ms| ms.to_string()),
            if r.conform_steps > 0 {
                "ok".to_string()
            } else {
                "-".to_string()
            },
            r.abuse.requests,
            r.abuse.errors,
            r.anomalies.len()
        );
    }
    let total = |f: fn(&RunReport) -> usize| reports.iter().map(f).sum::<usize>();
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reports {
        for (kind, n) in &r.faults {
            *by_kind.entry(kind).or_default() += n;
        }
    }
    let failovers: Vec<u64> = reports.iter().flat_map(|r| r.failover_ms.clone()).collect();
    let abuse = |f: fn(&AbuseCounts) -> u64| reports.iter().map(|r| f(&r.abuse)).sum::<u64>();
    println!(
        "total: {} runs, {} ok, {} failed, {} unknown, {} faults ({}), failover ms median/max {}, \
         {} keys checked ({} gave up), {} trace steps conformed, \
         {} bad requests ({} error replies, {} unanswered), {} anomalies",
        reports.len(),
        total(|r| r.ok),
        total(|r| r.failed),
        total(|r| r.unknown),
        total(|r| r.faults.values().sum()),
        by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        median_max(&failovers),
        total(|r| r.keys_checked),
        total(|r| r.keys_gave_up),
        total(|r| r.conform_steps),
        abuse(|a| a.requests),
        abuse(|a| a.errors),
        abuse(|a| a.unanswered),
        total(|r| r.anomalies.len()),
    );
}

fn median_max(values: &[u64]) -> String {
    if values.is_empty() {
        return "-".into();
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    format!("{}/{}", sorted[sorted.len() / 2], sorted[sorted.len() - 1])
}

/// The first line and the last `lines` lines of `text` (a long search prefix says
/// little beyond its end).
fn shorten(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    if all.len() <= lines + 1 {
        return text.to_string();
    }
    format!(
        "{}\n  … {} lines …\n{}",
        all[0],
        all.len() - lines - 1,
        all[all.len() - lines..].join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(key: &str, op: KeyOp, invoked: u64, outcome: Outcome<KeyRet>) -> Event {
        Event {
            node: 0,
            key: key.into(),
            operation: Operation {
                process: 1,
                invoked,
                op,
                outcome,
            },
        }
    }

    fn incr(outcome: Outcome<KeyRet>) -> Event {
        event(COUNTER_KEY, KeyOp::IncrBy(1), 0, outcome)
    }

    #[test]
    fn the_counter_must_count_every_acknowledged_increment_and_no_invented_one() {
        let ok = |n| Outcome::Ok {
            ret: KeyRet::Integer(n),
            completed: 1,
        };
        let history = vec![
            incr(ok(1)),
            incr(ok(2)),
            incr(Outcome::Unknown),
            incr(Outcome::Failed),
        ];
        let verdict = |value: &str| {
            let mut anomalies = Vec::new();
            check_counter(&history, Some(value.as_bytes().to_vec()), &mut anomalies);
            anomalies
        };
        assert!(verdict("2").is_empty(), "the unknown one did not happen");
        assert!(verdict("3").is_empty(), "the unknown one happened");
        assert!(verdict("1")[0].starts_with("lost acknowledged writes"));
        assert!(verdict("4")[0].starts_with("invented writes"));
    }

    #[test]
    fn failover_is_timed_from_the_fault_to_the_first_write_sent_after_it() {
        let ms = 1_000_000;
        let acked = |invoked: u64, completed: u64| {
            event(
                "k0",
                KeyOp::Set(b"1".to_vec()),
                invoked * ms,
                Outcome::Ok {
                    ret: KeyRet::Ok,
                    completed: completed * ms,
                },
            )
        };
        let history = vec![
            acked(90, 101),  // in flight at the fault: says nothing about failover
            acked(100, 400), // sent after it, acknowledged by the new leader
            acked(150, 350),
            event(
                "k0",
                KeyOp::Get,
                120 * ms,
                Outcome::Ok {
                    ret: KeyRet::Value(None),
                    completed: 130 * ms,
                },
            ),
        ];
        let injected = [
            Injected {
                kind: FaultKind::KillLeader,
                at: 100 * ms,
                healed: 2000 * ms,
            },
            Injected {
                kind: FaultKind::Delay,
                at: 100 * ms,
                healed: 2000 * ms,
            },
        ];
        assert_eq!(failover_times(&history, &injected), vec![250]);
    }
}
