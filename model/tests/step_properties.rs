//! Property test of the core's single entry point: arbitrary sequences of inputs — peer
//! messages with arbitrary ballots, slots and senders (valid or not), timers, client
//! requests, compaction — fed to one replica. Whatever arrives:
//!
//! - `step` never panics;
//! - a refused input (`Err`) leaves the replica exactly as it was;
//! - after an accepted one, the replica's invariants (`check_replica`) hold;
//! - the durable state is exactly the fold of every `Persist` emitted so far (nothing
//!   changes durable state without being persisted), and every `SaveSnapshot` precedes
//!   the `Persist(Compact)` that relies on it.

use ballot_model::invariants::check_replica;
use ballot_model::{
    AcceptedEntry, Ballot, ClientRequest, ClientTable, ClusterConfig, DurableState, DurableUpdate,
    Effect, Input, MemberChange, Message, Proposal, Register, Replica, Request, Snapshot, Timer,
};
use proptest::prelude::*;

/// `default` cases, or `PROPTEST_CASES` when set (for longer runs).
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ballot() -> impl Strategy<Value = Ballot> {
    (0u32..4, 0usize..4).prop_map(|(round, node)| Ballot::new(round, node))
}

fn proposal() -> impl Strategy<Value = Proposal<u8>> {
    prop_oneof![
        Just(Proposal::Noop),
        (0u64..3, 1u64..4, 0u8..4).prop_map(|(client, seq, command)| Proposal::Batch(vec![
            Request {
                client,
                seq,
                command
            }
        ])),
    ]
}

fn snapshot() -> impl Strategy<Value = Snapshot<Register>> {
    (0u64..6, 0u8..4).prop_map(|(slot, value)| {
        let mut table = ClientTable::new(Register::default());
        table.apply(
            &Request {
                client: 9,
                seq: 1,
                command: value,
            },
            usize::MAX,
        );
        Snapshot {
            slot,
            table,
            members: ClusterConfig::new(3).bootstrap(),
        }
    })
}

fn message() -> impl Strategy<Value = Message<Register>> {
    prop_oneof![
        (ballot(), 0u64..6).prop_map(|(ballot, from_slot)| Message::Prepare { ballot, from_slot }),
        (
            ballot(),
            proptest::collection::vec((0u64..6, ballot(), proposal()), 0..3),
            proptest::option::of(snapshot())
        )
            .prop_map(|(ballot, votes, snapshot)| Message::Promise {
                ballot,
                accepted: votes
                    .into_iter()
                    .map(|(slot, b, proposal)| (
                        slot,
                        AcceptedEntry {
                            ballot: b,
                            proposal
                        }
                    ))
                    .collect(),
                snapshot,
            }),
        (ballot(), 0u64..6, proposal(), 0u64..6).prop_map(|(ballot, slot, proposal, commit)| {
            Message::Accept {
                ballot,
                slot,
                proposal,
                commit,
            }
        }),
        (ballot(), 0u64..6, 0u64..6).prop_map(|(ballot, slot, commit)| Message::Accepted {
            ballot,
            slot,
            commit
        }),
        (ballot(), 0u64..6, 0u64..3).prop_map(|(ballot, commit, read_round)| Message::Heartbeat {
            ballot,
            commit,
            read_round
        }),
        (ballot(), 0u64..6, 0u64..3, any::<bool>()).prop_map(
            |(ballot, commit, read_round, lagging)| Message::HeartbeatAck {
                ballot,
                commit,
                read_round,
                lagging
            }
        ),
        (ballot(), snapshot(), 0u64..6).prop_map(|(ballot, snapshot, commit)| {
            Message::InstallSnapshot {
                ballot,
                snapshot,
                commit,
            }
        }),
        (ballot(), ballot()).prop_map(|(ballot, promised)| Message::Reject { ballot, promised }),
    ]
}

fn input() -> impl Strategy<Value = Input<Register>> {
    prop_oneof![
        4 => (0usize..4, message()).prop_map(|(from, message)| Input::Message { from, message }),
        1 => prop_oneof![
            Just(Timer::Election),
            Just(Timer::Heartbeat),
            Just(Timer::CheckQuorum)
        ]
        .prop_map(Input::Timer),
        1 => (0u64..3, 1u64..4, 0u8..4).prop_map(|(client, seq, command)| {
            Input::Client(ClientRequest::Write(Request {
                client,
                seq,
                command,
            }))
        }),
        1 => (0u64..3, 1u64..4).prop_map(|(client, seq)| {
            Input::Client(ClientRequest::Read {
                client,
                seq,
                query: (),
            })
        }),
        1 => (0u64..6).prop_map(|through| Input::Compact { through }),
        1 => (0usize..4, 0u8..4).prop_map(|(id, kind)| Input::Reconfigure(match kind {
            0 => MemberChange::AddLearner(id),
            1 => MemberChange::Promote(id),
            2 => MemberChange::Remove(id),
            _ => MemberChange::Replace {
                remove: id,
                promote: (id + 1) % 4,
            },
        })),
    ]
}

/// What a run reached, so that the test can show it explores the interesting paths.
#[derive(Default)]
struct Reached {
    leader: bool,
    committed: bool,
    compacted: bool,
    installed: bool,
    refused: bool,
}

/// Feeds `inputs` to node 0 of 3, checking the properties above after every step.
fn run(inputs: Vec<Input<Register>>) -> Result<Reached, TestCaseError> {
    let (mut replica, _) = Replica::recover(
        0,
        ClusterConfig::new(3),
        Register::default(),
        DurableState::default(),
    );
    let mut stored = DurableState::default();
    let mut reached = Reached::default();
    for input in inputs {
        let before = replica.clone();
        let mut effects = Vec::new();
        match replica.step(input.clone(), &mut effects) {
            Err(_) => {
                reached.refused = true;
                prop_assert_eq!(&replica, &before, "a refused input changed the state");
                prop_assert!(effects.is_empty());
            }
            Ok(()) => {
                if let Err(violation) = check_replica(&replica) {
                    return Err(TestCaseError::fail(format!("{violation} after {input:?}")));
                }
                let mut saved = None;
                for effect in &effects {
                    match effect {
                        Effect::SaveSnapshot(snapshot) => saved = Some(snapshot.slot),
                        Effect::Persist(update) => {
                            if let (DurableUpdate::Compact(slot), Input::Message { .. }) =
                                (update, &input)
                            {
                                prop_assert_eq!(
                                    saved,
                                    Some(*slot),
                                    "compacted to a snapshot not saved first"
                                );
                            }
                            stored.apply(update);
                        }
                        _ => {}
                    }
                }
                prop_assert_eq!(
                    replica.durable(),
                    &stored,
                    "durable state changed without a Persist"
                );
            }
        }
        reached.leader |= replica.is_leader();
        reached.committed |= replica.commit_index() > 0;
        reached.compacted |= replica.durable().compacted > 0;
        reached.installed |= replica.snapshots_installed() > 0;
    }
    Ok(reached)
}

fn inputs() -> impl Strategy<Value = Vec<Input<Register>>> {
    proptest::collection::vec(input(), 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2_000), ..ProptestConfig::default() })]

    #[test]
    fn any_input_sequence_keeps_the_replica_consistent(inputs in inputs()) {
        run(inputs)?;
    }
}

/// The generator is not vacuous: over a fixed sample of runs it leads, commits,
/// compacts, installs peers' snapshots and has input refused.
#[test]
fn the_generated_runs_reach_the_interesting_paths() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut total = Reached::default();
    for _ in 0..2_000 {
        let inputs = inputs().new_tree(&mut runner).unwrap().current();
        let reached = run(inputs).expect("properties hold");
        total.leader |= reached.leader;
        total.committed |= reached.committed;
        total.compacted |= reached.compacted;
        total.installed |= reached.installed;
        total.refused |= reached.refused;
    }
    assert!(total.leader, "no run led");
    assert!(total.committed, "no run committed");
    assert!(total.compacted, "no run compacted");
    assert!(total.installed, "no run installed a snapshot");
    assert!(total.refused, "no run had input refused");
}
