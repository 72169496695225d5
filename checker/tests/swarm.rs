//! The swarm search has teeth: on a world far beyond exhaustion (two clients writing
//! then reading, duelling candidates, three elections, a crash), it finds each of
//! several broken variants within a bounded number of walks, and its report replays
//! to a violating state. One thread and a walk budget make each run deterministic.

use ballot_checker::swarm::{self, Options};
use ballot_model::model::{BallotModel, ModelConfig, Timing};
use ballot_model::Mutant;
use stateright::{Expectation, Model};
use std::time::{Duration, Instant};

/// The world: beyond exhaustion on this machine (over 80 million states at two
/// elections without spurious ones).
fn world(mutant: Option<Mutant>) -> ModelConfig {
    ModelConfig {
        mutant,
        clients: 2,
        ops_per_client: 2,
        timing: Timing::SpuriousElections,
        max_elections: 3,
        ..ModelConfig::default()
    }
}

fn search(model: &BallotModel, walks: u64) -> swarm::Outcome {
    swarm::search(
        model,
        Options {
            threads: 1,
            // The walk budget ends the run; the deadline is only a backstop.
            deadline: Instant::now() + Duration::from_secs(600),
            max_walks: Some(walks),
            seed: 0,
            depth: 200,
            kinds: BallotModel::ACTION_KINDS,
            kind_of: BallotModel::action_kind,
            stop_at_first_violation: true,
        },
    )
}

#[test]
fn swarm_catches_broken_variants_and_replays_them() {
    for mutant in [
        Mutant::IgnorePhase1Values,
        Mutant::MinorityCommit,
        Mutant::NoDedup,
        Mutant::StaleLeaderRead,
        Mutant::RecoveredForgetsPromise,
    ] {
        let model = BallotModel::new(world(Some(mutant)));
        let outcome = search(&model, 20_000);
        let violation = outcome
            .discoveries
            .iter()
            .find(|d| d.expectation == Expectation::Always && d.found.is_some())
            .unwrap_or_else(|| panic!("{mutant:?} not caught in {} walks", outcome.walks));
        let walk = violation.found.as_ref().expect("a walk");
        let (actions, states) = swarm::replay(&model, &walk.indices);
        assert_eq!(actions.len() + 1, states.len());
        let property = model
            .properties()
            .into_iter()
            .find(|p| p.name == violation.name)
            .expect("the property");
        let last = states.last().expect("a state");
        assert!(
            !(property.condition)(&model, last),
            "{mutant:?}: the replayed walk does not violate {}",
            violation.name
        );
    }
}

#[test]
fn swarm_finds_no_violation_in_the_protocol_and_reaches_every_target() {
    let model = BallotModel::new(world(None));
    let outcome = search(&model, 2_000);
    assert_eq!(outcome.walks, 2_000);
    assert!(outcome.unique_states > 10_000, "{}", outcome.unique_states);
    for discovery in &outcome.discoveries {
        match discovery.expectation {
            Expectation::Always => assert!(discovery.found.is_none(), "{}", discovery.name),
            _ => assert!(discovery.found.is_some(), "{} not reached", discovery.name),
        }
    }
}
