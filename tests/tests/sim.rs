//! The simulator (`ballot_tests::sim`): one seed is one run, replayed byte for byte,
//! and a healthy cluster shows no anomaly under the seed's faults.

use ballot_tests::sim::{run_seed, SimConfig};
use std::time::Duration;

/// A short run: a few simulated seconds of faults, then healing.
fn short(nodes: usize) -> SimConfig {
    SimConfig {
        nodes,
        faulty: Duration::from_secs(4),
        heal_within: Duration::from_secs(10),
        ..SimConfig::default()
    }
}

#[test]
fn a_seed_replays_byte_for_byte() {
    // Every kind of crash must replay too: what a power loss keeps of the page cache
    // is drawn from the seed.
    let mut replayed = String::new();
    for (nodes, seeds) in [(3, 11..15), (5, 12..14)] {
        let config = short(nodes);
        for seed in seeds {
            let first = run_seed(&config, seed);
            let second = run_seed(&config, seed);
            assert!(
                first.operations > 20 && first.faults > 0,
                "a run worth replaying: {} operations, {} faults",
                first.operations,
                first.faults
            );
            assert_eq!(first.trace, second.trace, "seed {seed} on {nodes} nodes");
            // And another seed is another run.
            let other = run_seed(&config, seed + 1000);
            assert_ne!(first.trace, other.trace);
            replayed.push_str(&first.trace);
        }
    }
    for kind in ["crashes", "loses power", "fault: power cycle"] {
        assert!(replayed.contains(kind), "no replayed seed had {kind:?}");
    }
}

/// The seed found no anomaly, acknowledged writes, and its traces were checked.
fn assert_clean(seed: u64, report: &ballot_tests::sim::SeedReport) {
    assert!(
        report.anomalies.is_empty(),
        "seed {seed}: {:?}\n{}",
        report.anomalies,
        report.trace
    );
    assert!(report.acknowledged > 0, "seed {seed} acknowledged nothing");
    assert!(
        report.conform_steps > 0,
        "seed {seed}: no trace was checked"
    );
}

#[test]
fn seeds_show_no_anomaly_and_their_traces_conform() {
    let dir = std::env::temp_dir().join(format!("ballot-sim-test-{}", std::process::id()));
    let config = SimConfig {
        traces: Some(dir.clone()),
        ..short(3)
    };
    for seed in 0..4 {
        let report = run_seed(&config, seed);
        assert_clean(seed, &report);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_node_whose_disk_rots_refuses_to_start_and_the_others_serve() {
    // A power loss now and then leaves a record that fails its checksum; the node
    // must refuse to start on it (never vote with what it may have lost), and the
    // majority left must still commit and converge.
    let config = short(3);
    let found = (0..60)
        .map(|seed| (seed, run_seed(&config, seed)))
        .find(|(_, report)| {
            report.trace.contains("disk rots") && report.trace.contains("refuses to start")
        });
    let (seed, report) = found.expect("no seed of 60 lost a disk");
    eprintln!("seed {seed} lost a disk");
    assert!(
        report.anomalies.is_empty(),
        "seed {seed}: {:?}\n{}",
        report.anomalies,
        report.trace
    );
    assert!(
        report.trace.contains("converged"),
        "seed {seed}:\n{}",
        report.trace
    );
}

#[test]
fn a_disk_slower_than_an_election_timeout_deposes_no_leader() {
    // Every fsync takes 200 ms, more than the shortest election timeout (150 ms): a
    // loop that held up heartbeats for its fsync lost its leader again and again and
    // acknowledged nothing. The leader's heartbeats leave ahead of the fsync, and the
    // loop steps inputs while it runs.
    let config = SimConfig {
        nodes: 3,
        clients: 16,
        faulty: Duration::ZERO,
        heal_within: Duration::from_secs(10),
        fsync: Some(Duration::from_millis(200)),
        calm: Duration::from_secs(10),
        ..SimConfig::default()
    };
    let report = run_seed(&config, 1);
    assert!(
        report.anomalies.is_empty(),
        "{:?}\n{}",
        report.anomalies,
        report.trace
    );
    assert_eq!(
        report.calm_elections, 0,
        "elections while clients ran with no fault"
    );
    assert!(
        report.acknowledged > 100,
        "{} operations acknowledged",
        report.acknowledged
    );
}

#[test]
fn a_lost_voter_is_replaced_by_a_spare_among_the_faults() {
    // With a spare, the operator now and then loses a voter's machine for good and puts
    // the spare in its place (added as a learner, then a replace) while the faults go
    // on; the history stays linearizable, the traces conform, and the new membership
    // commits and converges once everything heals.
    let (config, dir) = with_spares("replace", 1, false);
    assert_replaces_a_voter(&config, "AddLearner");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A short run of 3 nodes with `spares` machines standing by (new machines if
/// `new_machines`), its traces kept in a scratch directory named for `name`, returned
/// for the caller to remove.
fn with_spares(name: &str, spares: usize, new_machines: bool) -> (SimConfig, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("ballot-sim-{name}-{}", std::process::id()));
    let config = SimConfig {
        spares,
        new_machines,
        traces: Some(dir.clone()),
        ..short(3)
    };
    (config, dir)
}

/// Runs seeds 0 to 7 of `config`, each clean; at least two must complete a voter's
/// replacement, each of which the operator began with a change named `began_with`.
fn assert_replaces_a_voter(config: &SimConfig, began_with: &str) {
    let mut replaced = 0;
    for seed in 0..8 {
        let report = run_seed(config, seed);
        assert_clean(seed, &report);
        if report.trace.contains("operator: replace") && !report.trace.contains("unfinished") {
            assert!(report.trace.contains(began_with), "{}", report.trace);
            replaced += 1;
        }
    }
    assert!(replaced >= 2, "only {replaced} of 8 seeds replaced a voter");
}

#[test]
fn a_lost_voter_is_replaced_by_a_new_machine_the_log_gives_an_id() {
    // As above, but the spare is in no node's configuration: the operator adds it at
    // its address, the log gives it the next id, and it then takes the lost voter's
    // place, while deposed leaders and lost answers may make the add be asked again.
    let (config, dir) = with_spares("new", 1, true);
    assert_replaces_a_voter(&config, "AddAt");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_cluster_grows_by_two_voters_and_shrinks_back_past_its_leader_among_the_faults() {
    // With two spares, the operator may instead add both as voters, then remove the
    // node that leads and another old voter, while the faults go on, asking the leader
    // and a follower (which forwards) in turn; seeds 0 to 7 stay clean, and at least two
    // finish such a change (back to three voters).
    let (config, dir) = with_spares("grow", 2, false);
    let mut grown = 0;
    for seed in 0..8 {
        let report = run_seed(&config, seed);
        assert_clean(seed, &report);
        // Finished: the operator saw both spares vote, then three voters left.
        if report.trace.contains("operator: grow by 3,4 and shrink\n") {
            for asked in ["Promote(3)", "Promote(4)", "Remove("] {
                assert!(report.trace.contains(asked), "{}", report.trace);
            }
            grown += 1;
        }
    }
    assert!(
        grown >= 2,
        "only {grown} of 8 seeds grew and shrank the cluster"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
