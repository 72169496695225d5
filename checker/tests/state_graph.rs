//! The one-pass exploration ([`ballot_checker::state_graph`]), breadth first and depth
//! first, against stateright's own breadth-first checker on the ballot model: the same
//! distinct states and the same verdict on every safety property and reachability
//! target, on worlds small enough to exhaust both ways, with the real protocol and with
//! broken variants; and the same liveness verdicts in both orders.

use ballot_checker::liveness::EveryActionFair;
use ballot_checker::state_graph::{self, Options, Order};
use ballot_model::model::{BallotModel, ClientScript, ModelConfig, Timing};
use ballot_model::Mutant;
use stateright::{Checker, Expectation, HasDiscoveries, Model};

/// Explores `config` with stateright and in both orders, and compares everything they
/// report.
fn agree(config: ModelConfig) {
    for order in [Order::BreadthFirst, Order::DepthFirst] {
        agree_in(config.clone(), order);
    }
}

fn agree_in(config: ModelConfig, order: Order) {
    let model = BallotModel::new(config.clone());
    let reference = model
        .clone()
        .checker()
        .threads(1)
        .finish_when(HasDiscoveries::AnyFailures)
        .spawn_bfs()
        .join();
    let exploration = state_graph::explore(
        &model,
        &EveryActionFair,
        &[],
        Options {
            threads: 2,
            order,
            ..Options::default()
        },
    );
    assert!(exploration.complete || exploration.violated(), "{config:?}");
    let violated = exploration.violated();
    if !violated {
        assert_eq!(
            exploration.unique_states(),
            reference.unique_state_count(),
            "distinct states differ for {}",
            config.describe()
        );
    }
    let theirs_violated = exploration
        .discoveries
        .iter()
        .any(|d| d.expectation == Expectation::Always && reference.discovery(d.name).is_some());
    assert_eq!(violated, theirs_violated, "{}", config.describe());
    for discovery in &exploration.discoveries {
        let theirs = reference.discovery(discovery.name).is_some();
        let ours = discovery.found.is_some();
        // Both stop at the first violation, which may be another property's when two
        // are violated at the same depth: then only the fact of a violation compares.
        if violated {
            continue;
        }
        assert_eq!(
            ours,
            theirs,
            "{} ({:?}) differs for {}",
            discovery.name,
            discovery.expectation,
            config.describe()
        );
    }
    if violated {
        // The counterexample replays to a state that violates the property.
        let discovery = exploration
            .discoveries
            .iter()
            .find(|d| d.expectation == Expectation::Always && d.found.is_some())
            .expect("a violation");
        let path = exploration.path_to(&model, discovery.found.expect("a state"));
        let last = path.states.last().expect("a state");
        let property = model
            .properties()
            .into_iter()
            .find(|p| p.name == discovery.name)
            .expect("the property");
        assert!(!(property.condition)(&model, last), "{}", discovery.name);
        assert_eq!(path.actions.len() + 1, path.states.len());
    }
}

#[test]
fn agrees_with_stateright_on_the_protocol() {
    agree(ModelConfig {
        max_crashes: 0,
        max_elections: 1,
        ..ModelConfig::default()
    });
    agree(ModelConfig {
        clients: 2,
        ops_per_client: 1,
        script: ClientScript::WritesOnly,
        max_crashes: 0,
        timing: Timing::SpuriousElections,
        max_elections: 1,
        ..ModelConfig::default()
    });
    agree(ModelConfig {
        max_elections: 2,
        max_crashes: 1,
        ops_per_client: 1,
        client_retries: Some(1),
        ..ModelConfig::default()
    });
}

#[test]
fn agrees_with_stateright_on_broken_variants() {
    // Each in a world where it is caught early (see `ballot-check mutants`). Depth
    // first, a violation can lie far down the first branches taken, so the large worlds
    // are compared breadth first only, and a small one both ways.
    agree(ModelConfig {
        mutant: Some(Mutant::RecoveredForgetsPromise),
        ops_per_client: 1,
        client_retries: Some(1),
        ..ModelConfig::default()
    });
    agree_in(
        ModelConfig {
            mutant: Some(Mutant::AcceptBelowPromise),
            clients: 2,
            ops_per_client: 1,
            script: ClientScript::WritesOnly,
            timing: Timing::SpuriousElections,
            client_retries: Some(0),
            max_crashes: 0,
            ..ModelConfig::default()
        },
        Order::BreadthFirst,
    );
    agree_in(
        ModelConfig {
            mutant: Some(Mutant::IgnorePhase1Values),
            clients: 2,
            ops_per_client: 1,
            script: ClientScript::WritesOnly,
            client_retries: Some(1),
            ..ModelConfig::default()
        },
        Order::BreadthFirst,
    );
}

/// The liveness analysis gives the same verdicts on the graph either order builds, with
/// the protocol and with a liveness mutant.
#[test]
fn liveness_verdicts_do_not_depend_on_the_order() {
    use ballot_checker::liveness::{self, Verdict};
    use ballot_model::model::liveness as goals;
    for mutant in [None, Some(Mutant::IgnoreRecoveredSlots)] {
        // One write, a crash and a failover: where the mutant's slot goes unfilled.
        let model = BallotModel::new(ModelConfig {
            mutant,
            ops_per_client: 1,
            ..ModelConfig::default()
        });
        let properties = goals::all();
        let verdicts: Vec<Vec<(&str, bool, bool)>> = [Order::BreadthFirst, Order::DepthFirst]
            .into_iter()
            .map(|order| {
                let exploration = state_graph::explore(
                    &model,
                    &liveness::BallotFairness,
                    &properties,
                    Options {
                        threads: 2,
                        order,
                        ..Options::default()
                    },
                );
                assert!(exploration.complete);
                liveness::analyze(&model, &exploration, &properties)
                    .properties
                    .iter()
                    .map(|p| {
                        (
                            p.name,
                            matches!(p.verdict, Verdict::Holds),
                            matches!(p.verdict, Verdict::Violated(_)),
                        )
                    })
                    .collect()
            })
            .collect();
        assert_eq!(verdicts[0], verdicts[1], "{mutant:?}");
        let violated = verdicts[0].iter().any(|(_, _, violated)| *violated);
        assert_eq!(violated, mutant.is_some(), "{:?}", verdicts[0]);
    }
}
