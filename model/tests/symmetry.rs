//! The client symmetry's renaming is a symmetry of the model: on every state of the
//! first breadth-first levels of worlds with interchangeable clients, renaming commutes
//! with taking a step (the successors of a renamed state are the renamed successors),
//! every property has the same value on a state and its renaming, and renaming back
//! gives the state itself. A field the renaming missed that changes what happens next
//! fails the first check; one that changes a property fails the second.

use ballot_model::model::{
    BallotModel, BallotState, ClientScript, ClientSymmetry, ModelConfig, NetworkKind, Timing,
};
use stateright::Model;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};

fn fingerprint(state: &BallotState) -> u64 {
    let mut hasher = DefaultHasher::new();
    state.hash(&mut hasher);
    hasher.finish()
}

/// The states one step from `state`, one per enabled action.
fn next_states(model: &BallotModel, state: &BallotState) -> Vec<BallotState> {
    let mut actions = Vec::new();
    model.actions(state, &mut actions);
    actions
        .into_iter()
        .filter_map(|action| model.next_state(state, action))
        .collect()
}

/// Fingerprints of `states`, with how many times each occurs.
fn counted(states: impl IntoIterator<Item = BallotState>) -> BTreeMap<u64, usize> {
    let mut found = BTreeMap::new();
    for state in states {
        *found.entry(fingerprint(&state)).or_insert(0) += 1;
    }
    found
}

/// The first `limit` distinct states of `model`, breadth first.
fn breadth_first(model: &BallotModel, limit: usize) -> Vec<BallotState> {
    let mut queue: VecDeque<BallotState> = model.init_states().into();
    let mut seen: HashSet<u64> = queue.iter().map(fingerprint).collect();
    let mut found = Vec::new();
    while let Some(state) = queue.pop_front() {
        if found.len() == limit {
            break;
        }
        for next in next_states(model, &state) {
            if seen.insert(fingerprint(&next)) {
                queue.push_back(next);
            }
        }
        found.push(state);
    }
    found
}

/// Checks the first `limit` states of `config`, breadth first; returns how many of
/// them had a renaming different from themselves.
fn commutes(config: ModelConfig, limit: usize) -> usize {
    let symmetry = ClientSymmetry::new(&config).expect("interchangeable clients");
    assert_eq!(
        symmetry.renamings(),
        1,
        "two interchangeable clients: one swap"
    );
    let model = BallotModel::new(config.clone());
    let properties = model.properties();
    let mut moved = 0;
    for state in breadth_first(&model, limit) {
        for image in symmetry.images(&state) {
            if fingerprint(&image) != fingerprint(&state) {
                moved += 1;
            }
            // Two clients: the one renaming is the swap, so it is also the image of
            // each successor.
            let renamed = counted(
                next_states(&model, &state)
                    .iter()
                    .map(|next| symmetry.images(next).remove(0)),
            );
            assert_eq!(
                counted(next_states(&model, &image)),
                renamed,
                "renaming does not commute with a step in {}:\n{state:#?}",
                config.describe()
            );
            for property in &properties {
                assert_eq!(
                    (property.condition)(&model, &state),
                    (property.condition)(&model, &image),
                    "{} differs on a renamed state in {}",
                    property.name,
                    config.describe()
                );
            }
        }
    }
    moved
}

fn two_writers() -> ModelConfig {
    ModelConfig {
        clients: 2,
        ops_per_client: 1,
        script: ClientScript::WritesOnly,
        ..ModelConfig::default()
    }
}

#[test]
fn renaming_two_writers_commutes_with_every_step() {
    let moved = commutes(two_writers(), 3_000);
    assert!(
        moved > 2_000,
        "most states are not their own mirror ({moved})"
    );
}

#[test]
fn renaming_commutes_with_duelling_leaders_lazy_disks_compaction_and_learners() {
    for config in [
        ModelConfig {
            timing: Timing::SpuriousElections,
            ..two_writers()
        },
        ModelConfig {
            lazy_disks: true,
            sync_window: 1,
            ..two_writers()
        },
        ModelConfig {
            compaction: true,
            lossy: true,
            ..two_writers()
        },
        ModelConfig {
            network: NetworkKind::Ordered,
            ..two_writers()
        },
        ModelConfig {
            network: NetworkKind::UnorderedDuplicating,
            ..two_writers()
        },
        ModelConfig {
            ops_per_client: 2,
            max_transfers: 1,
            ..two_writers()
        },
        // Three voters and a learner.
        ModelConfig {
            servers: 4,
            learners: 1,
            ..two_writers()
        },
        // Reads: each client writes, then reads.
        ModelConfig {
            ops_per_client: 2,
            script: ClientScript::WriteFirst,
            ..two_writers()
        },
        ModelConfig {
            ops_per_client: 2,
            script: ClientScript::WriteFirst,
            timing: Timing::SpuriousElections,
            max_crashes: 0,
            ..two_writers()
        },
    ] {
        // Enough states that the reads worlds reach a leader holding a pending read.
        let limit = match config.script {
            ClientScript::WriteFirst => 10_000,
            _ => 1_500,
        };
        commutes(config, limit);
    }
}

#[test]
fn renaming_twice_is_the_identity() {
    let config = two_writers();
    let symmetry = ClientSymmetry::new(&config).expect("interchangeable clients");
    let model = BallotModel::new(config);
    for state in breadth_first(&model, 2_000) {
        let image = symmetry.images(&state).remove(0);
        let back = symmetry.images(&image).remove(0);
        assert_eq!(back, state);
        assert_eq!(fingerprint(&back), fingerprint(&state));
    }
}
