//! The one-pass exploration ([`ballot_checker::state_graph`]) against stateright's own
//! breadth-first checker on the ballot model: the same distinct states and the same
//! verdict on every safety property and reachability target, on worlds small enough to
//! exhaust both ways, with the real protocol and with broken variants.

use ballot_checker::liveness::EveryActionFair;
use ballot_checker::state_graph::{self, Options};
use ballot_model::model::{BallotModel, ClientScript, ModelConfig, Timing};
use ballot_model::Mutant;
use stateright::{Checker, Expectation, HasDiscoveries, Model};

/// Explores `config` both ways and compares everything both report.
fn agree(config: ModelConfig) {
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
        let ours = discovery.state.is_some();
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
            .find(|d| d.expectation == Expectation::Always && d.state.is_some())
            .expect("a violation");
        let path = exploration.path_to(&model, discovery.state.expect("a state"));
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
    // Each in a world where it is caught early (see `ballot-check mutants`).
    agree(ModelConfig {
        mutant: Some(Mutant::AcceptBelowPromise),
        clients: 2,
        ops_per_client: 1,
        script: ClientScript::WritesOnly,
        timing: Timing::SpuriousElections,
        client_retries: Some(0),
        max_crashes: 0,
        ..ModelConfig::default()
    });
    agree(ModelConfig {
        mutant: Some(Mutant::IgnorePhase1Values),
        clients: 2,
        ops_per_client: 1,
        script: ClientScript::WritesOnly,
        client_retries: Some(1),
        ..ModelConfig::default()
    });
}
