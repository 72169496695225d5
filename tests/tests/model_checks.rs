//! Model checks at small bounds through the library API. The model is deterministic, so
//! the number of distinct states of each configuration is pinned: a change to it is a
//! change to the protocol or the model, and should be made on purpose.
//!
//! The counts are distinct states. Stateright 0.31 alone would merge a few (its hash
//! of per-actor timer sets does not delimit one actor's set from the next);
//! `BallotState`'s own `Hash` makes the encoding unambiguous, so these equal the counts
//! of a search that compares states by full equality.

use ballot_model::model::operator::ModelChange;
use ballot_model::model::properties::{
    ACKED_WRITES_DURABLE, APPLIED_MATCHES_LOG, DUPLICATE_DEDUPLICATED, FAILOVER_COMMITS,
    LEARNER_APPLIES, LINEARIZABLE, LOGS_AGREE, ONE_LEADER_PER_BALLOT, ONE_VALUE_PER_SLOT,
    READ_SERVED, REFINES_SPEC, REPLICA_INVARIANTS, WRITE_AFTER_REMOVAL, WRITE_COMMITS,
};
use ballot_model::model::{BallotModel, ClientScript, ModelConfig, NetworkKind, Timing};
use stateright::{Checker, Model, Path};

/// Every safety property.
const SAFETY: [&str; 8] = [
    ONE_VALUE_PER_SLOT,
    LOGS_AGREE,
    ONE_LEADER_PER_BALLOT,
    REPLICA_INVARIANTS,
    APPLIED_MATCHES_LOG,
    LINEARIZABLE,
    ACKED_WRITES_DURABLE,
    REFINES_SPEC,
];

/// Every reachability target.
const TARGETS: [&str; 4] = [
    WRITE_COMMITS,
    FAILOVER_COMMITS,
    READ_SERVED,
    DUPLICATE_DEDUPLICATED,
];

/// Checks `config` exhaustively, breadth-first, on two threads.
fn check(config: ModelConfig) -> impl Checker<BallotModel> {
    BallotModel::new(config)
        .checker()
        .threads(2)
        .spawn_bfs()
        .join()
}

/// Asserts the exploration completed, no safety property has a counterexample, and
/// exactly the reachability targets in `found` were reached.
fn assert_verdicts(checker: &impl Checker<BallotModel>, found: &[&str]) {
    assert!(checker.is_done(), "exploration incomplete");
    // Every property the model declares is one of the names above.
    let declared: Vec<&str> = checker
        .model()
        .properties()
        .iter()
        .map(|p| p.name)
        .collect();
    let mut known: Vec<&str> = SAFETY.iter().chain(TARGETS.iter()).copied().collect();
    let mut declared_sorted = declared.clone();
    known.sort_unstable();
    declared_sorted.sort_unstable();
    assert_eq!(declared_sorted, known, "the model's properties changed");
    for name in SAFETY {
        checker.assert_no_discovery(name);
    }
    for name in TARGETS {
        let expected = found.contains(&name);
        assert_eq!(
            checker.discovery(name).is_some(),
            expected,
            "reachability target {name:?} should {}be found",
            if expected { "" } else { "not " }
        );
    }
}

/// No crashes, one election: the leader is elected once and serves the client's write
/// and read.
fn no_crash_config() -> ModelConfig {
    ModelConfig {
        max_crashes: 0,
        max_elections: 1,
        ..ModelConfig::default()
    }
}

#[test]
fn no_crash_one_election() {
    let checker = check(no_crash_config());
    assert_eq!(checker.unique_state_count(), 1_569);
    // Without a crash there is no failover and no retry, so these two targets are out of
    // reach: they are not trivially true.
    assert_verdicts(&checker, &[WRITE_COMMITS, READ_SERVED]);
}

#[test]
fn one_crash_one_election() {
    let checker = check(ModelConfig {
        max_crashes: 1,
        max_elections: 1,
        ..ModelConfig::default()
    });
    assert_eq!(checker.unique_state_count(), 21_632);
    // A crashed leader cannot be replaced with only one election in the budget (the
    // first one elected it), so nothing commits after a failover and no retry is
    // answered from the client table.
    assert_verdicts(&checker, &[WRITE_COMMITS, READ_SERVED]);
}

#[test]
fn a_learner_applies_what_the_voters_chose() {
    // Three voters and a learner (server 3): the learner receives the log and applies
    // it, and the client may ask it first (it redirects); it never votes or runs.
    let checker = check(ModelConfig {
        servers: 4,
        learners: 1,
        ops_per_client: 1,
        script: ClientScript::WritesOnly,
        max_crashes: 0,
        max_elections: 1,
        ..ModelConfig::default()
    });
    assert!(checker.is_done(), "exploration incomplete");
    assert_eq!(checker.unique_state_count(), 5_172);
    for name in SAFETY {
        checker.assert_no_discovery(name);
    }
    assert!(checker.discovery(LEARNER_APPLIES).is_some());
    assert!(checker.discovery(WRITE_COMMITS).is_some());
}

#[test]
fn the_leader_is_removed_and_the_next_epoch_commits() {
    // The operator removes the leader while a write runs: three voters become two, the
    // removed leader steps down for good, and the new epoch elects and commits.
    let checker = check(ModelConfig {
        ops_per_client: 1,
        script: ClientScript::WritesOnly,
        max_crashes: 0,
        reconfigurations: vec![ModelChange::RemoveLeader],
        max_reconfigurations: 1,
        ..ModelConfig::default()
    });
    assert!(checker.is_done(), "exploration incomplete");
    assert_eq!(checker.unique_state_count(), 34_466);
    for name in SAFETY {
        checker.assert_no_discovery(name);
    }
    assert!(checker.discovery(WRITE_AFTER_REMOVAL).is_some());
    assert!(checker.discovery(WRITE_COMMITS).is_some());
}

#[test]
fn a_learner_is_promoted_only_once_it_has_reported_its_progress() {
    use ballot_model::model::actors::{ModelMsg, ModelTimer};
    use ballot_model::model::properties::LEARNER_PROMOTED;
    use stateright::actor::{ActorModelAction, Id};
    // Three voters and learner 3, which the operator promotes; no client, no fault.
    let world = |promote_lag_max| ModelConfig {
        servers: 4,
        learners: 1,
        ops_per_client: 0,
        max_crashes: 0,
        max_elections: 1,
        reconfigurations: vec![ModelChange::Promote(3)],
        max_reconfigurations: 1,
        promote_lag_max,
        ..ModelConfig::default()
    };
    // Whether the shortest way to the promotion has the leader hear from the learner
    // before the operator asks.
    let hears_the_learner_first = |checker: &dyn Checker<BallotModel>| {
        let actions = checker
            .discovery(LEARNER_PROMOTED)
            .expect("the learner is promoted")
            .into_actions();
        let asked = actions
            .iter()
            .position(|a| matches!(a, ActorModelAction::Timeout(_, ModelTimer::Reconfigure)))
            .expect("the operator asks");
        actions[..asked].iter().any(|a| {
            matches!(a, ActorModelAction::Deliver { src, msg: ModelMsg::Peer(_), .. }
                if *src == Id::from(3))
        })
    };
    let unchecked = check(world(None));
    let checked = check(world(Some(0)));
    for (checker, states) in [(&unchecked, 11_470), (&checked, 5_755)] {
        assert!(checker.is_done(), "exploration incomplete");
        assert_eq!(checker.unique_state_count(), states);
        for name in SAFETY {
            checker.assert_no_discovery(name);
        }
    }
    assert!(!hears_the_learner_first(&unchecked));
    assert!(
        hears_the_learner_first(&checked),
        "with promote_lag_max the leader promotes no learner it has not heard from"
    );
}

#[test]
fn ordered_network_no_crash() {
    let checker = check(ModelConfig {
        network: NetworkKind::Ordered,
        max_crashes: 0,
        max_elections: 1,
        // Retransmissions do not coalesce on FIFO channels: bound them.
        client_retries: Some(1),
        ..ModelConfig::default()
    });
    assert_eq!(checker.unique_state_count(), 507);
    assert_verdicts(&checker, &[WRITE_COMMITS, READ_SERVED]);
}

#[test]
fn default_config() {
    let checker = check(ModelConfig::default());
    assert_eq!(checker.unique_state_count(), 462_797);
    assert_verdicts(&checker, &TARGETS);
    checker.assert_properties();
}

#[test]
fn spurious_elections_one_client() {
    let checker = check(ModelConfig {
        timing: Timing::SpuriousElections,
        ops_per_client: 1,
        script: ballot_model::model::ClientScript::WritesOnly,
        max_crashes: 0,
        ..ModelConfig::default()
    });
    assert_eq!(checker.unique_state_count(), 717_244);
    // The one client writes, so no read is served; no crash, so no failover. A spurious
    // election does make its retry land on a leader that already applied the write.
    assert_verdicts(&checker, &[WRITE_COMMITS, DUPLICATE_DEDUPLICATED]);
}

#[test]
fn same_config_same_count() {
    let first = check(no_crash_config()).unique_state_count();
    let second = check(no_crash_config()).unique_state_count();
    assert_eq!(first, second);
    // And on one thread, where exploration order is fixed, the same again.
    let single = BallotModel::new(no_crash_config())
        .checker()
        .threads(1)
        .spawn_bfs()
        .join();
    assert_eq!(single.unique_state_count(), first);
}

#[test]
fn write_commits_discovery_replays() {
    let checker = check(no_crash_config());
    let path = checker
        .discovery(WRITE_COMMITS)
        .expect("a path to a committed write");
    let last = path.last_state().clone();
    assert!(
        last.servers()
            .any(|(_, server)| server.replica.commit_index() >= 1),
        "no server has committed anything at the end of the write-commits path: {last:?}"
    );

    // Replay the actions from the initial state through the model: every step is one
    // the model offers, and the replay ends in the same state.
    let model = checker.model();
    let states = path.clone().into_states();
    let actions = path.into_actions();
    assert!(!actions.is_empty());
    let init = states[0].clone();
    let replayed = Path::from_actions(model, init, &actions).expect("the path replays");
    assert_eq!(replayed.last_state(), &last);
    let property = model.property(WRITE_COMMITS);
    assert!((property.condition)(model, replayed.last_state()));
    // Stateright's own replay check agrees.
    checker.assert_discovery(WRITE_COMMITS, actions);
}

/// Two clients write into a pipeline of one slot with no queue behind it: the leader
/// refuses the second write as busy, its client retries, and every safety property
/// still holds (the CLI check of the same configuration, in CI, adds liveness: the
/// refused client is answered in the end).
#[test]
fn a_busy_leader_refuses_writes_without_breaking_safety() {
    use ballot_model::model::properties::BUSY_REFUSED;
    let states = two_writers_reach(
        ModelConfig {
            pipeline_depth: 1,
            queue_requests_max: Some(0),
            ..two_writers()
        },
        &[
            (BUSY_REFUSED, "the leader refuses a write as busy"),
            (WRITE_COMMITS, "a write commits"),
        ],
    );
    assert_eq!(states, 14_314);
}

/// Two clients writing once each, no crash, one election: the smallest world in which
/// one client's request meets state another's made.
fn two_writers() -> ModelConfig {
    ModelConfig {
        clients: 2,
        ops_per_client: 1,
        script: ballot_model::model::ClientScript::WritesOnly,
        max_crashes: 0,
        max_elections: 1,
        ..ModelConfig::default()
    }
}

/// Checks `config` exhaustively: every safety property holds and every `(target,
/// what it shows)` is reached. Returns the unique state count.
fn two_writers_reach(config: ModelConfig, targets: &[(&'static str, &str)]) -> usize {
    let checker = check(config);
    assert!(checker.is_done(), "exploration incomplete");
    for name in SAFETY {
        checker.assert_no_discovery(name);
    }
    for (target, shows) in targets {
        assert!(checker.discovery(target).is_some(), "not reached: {shows}");
    }
    checker.unique_state_count()
}

/// One client session at most: the second client's write expires the first client's
/// session, the first client's early retry of its applied write is refused rather than
/// applied again, and every safety property holds (the independent spec included:
/// its replay forgets sessions by its own rule).
#[test]
fn expired_sessions_are_refused_not_applied_twice() {
    use ballot_model::model::properties::{EXPIRED_REFUSED, SESSION_EXPIRED};
    let states = two_writers_reach(
        ModelConfig {
            timing: ballot_model::model::Timing::ImpatientClients,
            client_retries: Some(1),
            pipeline_depth: 1,
            sessions_max: Some(1),
            // Elected before the clients' sessions matter: the expiry needs a leader,
            // not the interleavings of its election.
            opening: ballot_model::model::Opening::Elected {
                leader: 0,
                miss: None,
            },
            ..two_writers()
        },
        &[
            (SESSION_EXPIRED, "a session expires"),
            (EXPIRED_REFUSED, "a retry of an expired session is refused"),
        ],
    );
    assert_eq!(states, 10_790);
}
