//! The simulator has teeth: a cluster whose nodes run a deliberately broken variant, a
//! core mutant or a runtime bug planted in the node's loop, is caught within a bounded
//! number of seeds. Built only with the `mutants` feature:
//! `cargo test -p ballot-tests --features mutants --test sim_teeth`.
#![cfg(feature = "mutants")]

use ballot_tests::sim::{run_seed, SimConfig};
use std::path::PathBuf;
use std::time::Duration;

/// The first of `seeds` seeds whose run with `mutant` found an anomaly, and what it
/// found.
fn first_catch(mutant: &str, traces: Option<PathBuf>, seeds: u64) -> Option<(u64, Vec<String>)> {
    let config = SimConfig {
        faulty: Duration::from_secs(6),
        traces,
        mutant: Some(mutant.to_string()),
        ..SimConfig::default()
    };
    (0..seeds).find_map(|seed| {
        let report = run_seed(&config, seed);
        (!report.anomalies.is_empty()).then_some((seed, report.anomalies))
    })
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ballot-sim-teeth-{}-{name}", std::process::id()))
}

/// Core mutants, with no trace check: what the clients saw gives them away.
#[test]
fn core_mutants_are_caught_by_what_clients_observe() {
    for mutant in ["minority-commit", "stale-leader-read"] {
        let caught = first_catch(mutant, None, 60);
        let (seed, anomalies) =
            caught.unwrap_or_else(|| panic!("{mutant}: not caught in 60 seeds"));
        eprintln!("{mutant}: caught by seed {seed}: {anomalies:?}");
    }
}

/// Runtime bugs: the model's conformance rules over the nodes' traces catch them.
#[test]
fn runtime_bugs_are_caught_by_trace_conformance() {
    for (bug, rule, seeds) in [
        ("release-before-sync", "persist-before-send", 5),
        ("cancelled-timer-fires", "timer-was-armed", 5),
        // Needs a crash between a write and its fsync, a restart, and a power loss
        // before the restart's first sync: rarer.
        (
            "restart-trusts-unsynced",
            "restart-state-is-durable-state",
            40,
        ),
    ] {
        let dir = scratch(bug);
        let caught = first_catch(bug, Some(dir.clone()), seeds);
        let _ = std::fs::remove_dir_all(&dir);
        let (seed, anomalies) =
            caught.unwrap_or_else(|| panic!("{bug}: not caught in {seeds} seeds"));
        assert!(
            anomalies
                .iter()
                .any(|a| a.contains("traces do not conform") && a.contains(rule)),
            "{bug} (seed {seed}) should break rule {rule}: {anomalies:?}"
        );
    }
}
