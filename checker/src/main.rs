//! `ballot-check`: model-check the ballot protocol, explore it, and run its mutants.

mod args;
mod mutants;
mod report;
mod run;

use args::Strategy;
use args::{Cli, Command};
use ballot_model::model::{BallotModel, ClientSymmetry};
use clap::Parser;
use stateright::Model;
use std::process::ExitCode;

/// Exploring states allocates and frees many small values; mimalloc does that faster
/// than the system allocator (SPEC §4.2 gives the figures).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => {
            if args.run.symmetry {
                if let Err(refusal) = ClientSymmetry::new(&args.model.config()) {
                    return usage_error(&format!("--symmetry: {refusal} (SPEC.md, \"Symmetry\")"));
                }
                if args.run.liveness {
                    return usage_error(
                        "--symmetry decides safety and reachability only (a cycle of classes \
                         of states need not be a cycle of states): add --no-liveness",
                    );
                }
                if !matches!(args.run.strategy, Strategy::Bfs | Strategy::Dfs) {
                    return usage_error("--symmetry applies to --strategy bfs and dfs only");
                }
            }
            if args.run.walks.is_some() && args.run.strategy != Strategy::Swarm {
                return usage_error("--walks bounds a swarm search: add --strategy swarm");
            }
            let outcome = run::run(args.model.config(), &args.run, !args.json);
            let targets_optional = args.safety_only || args.model.scenario.is_some();
            if args.json {
                println!("{}", report::json(&outcome));
            } else {
                print!("{}", report::text(&outcome, targets_optional));
            }
            let passed = if targets_optional {
                outcome.passed_without_targets()
            } else {
                outcome.passed()
            };
            if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Explore(args) => {
            let model = BallotModel::new(args.model.config());
            eprintln!(
                "exploring {} at http://{} (Ctrl-C to stop)",
                model.config.describe(),
                args.addr
            );
            let _checker = model.checker().serve(args.addr);
            loop {
                std::thread::park();
            }
        }
        Command::Conform(args) => conform(&args.trace_dir),
        Command::Mutants(args) => {
            let results = match mutants::run_all(args.only.as_deref(), args.threads, !args.json) {
                Ok(results) => results,
                Err(message) => return usage_error(&message),
            };
            if args.json {
                println!("{}", mutants::json(&results));
            } else {
                print!("{}", mutants::text(&results));
            }
            if results.iter().all(|r| !r.caught_by.is_empty()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// `ballot-check conform DIR`: the key-value server's traces against the model.
fn conform(dir: &std::path::Path) -> ExitCode {
    use ballot_node::trace::{check_dir, ConformError};
    match check_dir::<ballot_node::kv::KvStore>(dir) {
        Ok(report) => {
            println!(
                "conform: {} traces of {} nodes conform ({} restarts checked, {} torn tails)",
                report.runs, report.nodes, report.restarts_checked, report.torn_tails
            );
            println!(
                "  {} records, {} steps replayed identically, {} persists, {} messages \
                 matched to their sends, {} slots agreed, {} global states checked",
                report.records,
                report.steps,
                report.persists,
                report.messages_matched,
                report.slots_committed,
                report.global_states_checked
            );
            println!(
                "  rules: replays-identically, replica-invariants, timer-was-armed, \
                 persist-before-send, received-was-sent, restart-state-is-durable-state, \
                 committed-values-agree, one_leader_per_ballot, at_most_one_value_chosen"
            );
            if report.runs == 0 {
                eprintln!("error: no *.trace files in {}", dir.display());
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }
        Err(ConformError::Divergence(divergence)) => {
            print!("conform: DIVERGENCE\n{divergence}");
            ExitCode::from(1)
        }
        Err(ConformError::Trace(error)) => usage_error(&error.to_string()),
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}
