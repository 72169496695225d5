//! Transition tests of compaction and snapshot transfer: exact effects, in order, and
//! the state after. Every step also runs `invariants::check_replica`.

use ballot_model::invariants::check_replica;
use ballot_model::{
    AcceptedEntry, Ballot, ClientTable, ClusterConfig, DurableState, DurableUpdate, Effect, Input,
    Message, NodeId, Proposal, Register, Replica, Request, RestoreError, Role, Snapshot, Timer,
};

type R = Replica<Register>;
type E = Effect<Register>;

fn step(r: &mut R, input: Input<Register>) -> Vec<E> {
    let mut effects = Vec::new();
    if let Err(e) = r.step(input, &mut effects) {
        panic!("step refused valid input: {e}");
    }
    assert_eq!(check_replica(r), Ok(()), "invariants of node {}", r.id());
    effects
}

fn msg(from: NodeId, message: Message<Register>) -> Input<Register> {
    Input::Message { from, message }
}

fn write(client: u64, seq: u64, value: u8) -> Request<u8> {
    Request {
        client,
        seq,
        command: value,
    }
}

/// Node `id` of three, which accepted and committed one write per slot `1..=slots` at
/// ballot 1.0 (value = slot), applied them, and compacted through `compacted`.
fn node_with_log(id: NodeId, slots: u64, compacted: u64) -> R {
    let ballot = Ballot::new(1, 0);
    let mut durable = DurableState::default();
    for slot in 1..=slots {
        durable.apply(&DurableUpdate::Accept {
            slot,
            entry: AcceptedEntry {
                ballot,
                proposal: Proposal::Batch(vec![write(7, slot, slot as u8)]),
            },
        });
    }
    durable.apply(&DurableUpdate::Commit(slots));
    let (mut r, _) = Replica::recover(id, ClusterConfig::new(3), Register::default(), durable);
    if compacted > 0 {
        let effects = step(&mut r, Input::Compact { through: compacted });
        assert_eq!(
            effects,
            vec![Effect::Persist(DurableUpdate::Compact(compacted))]
        );
    }
    r
}

#[test]
fn compaction_drops_the_applied_prefix_and_ignores_what_is_not_applied() {
    let mut r = node_with_log(1, 3, 2);
    assert_eq!(r.durable().compacted, 2);
    assert_eq!(
        r.durable().accepted.keys().copied().collect::<Vec<_>>(),
        vec![3]
    );
    assert_eq!(r.committed_log().count(), 1);
    assert_eq!(r.applied_index(), 3);
    // Not applied (nothing to snapshot there) or already compacted: nothing happens.
    assert!(step(&mut r, Input::Compact { through: 9 }).is_empty());
    assert!(step(&mut r, Input::Compact { through: 1 }).is_empty());
}

#[test]
fn the_slots_a_compaction_drops_are_handed_to_the_driver_once_and_are_no_part_of_the_state() {
    let mut r = node_with_log(1, 5, 0);
    let before = r.clone();
    step(&mut r, Input::Compact { through: 2 });
    let untaken = r.clone();
    step(&mut r, Input::Compact { through: 4 });
    // Only the latest compaction's slots are held: the first batch, never taken, is
    // already freed.
    let dropped = r.take_discarded().expect("the dropped slots");
    assert_eq!(dropped.keys().copied().collect::<Vec<_>>(), vec![3, 4]);
    assert!(r.take_discarded().is_none(), "handed over once");
    // Holding them or not is no difference of protocol state, and a copy holds none.
    let mut held = before;
    step(&mut held, Input::Compact { through: 2 });
    assert_eq!(held, untaken);
    assert!(untaken.clone().take_discarded().is_none());
    let mut taken = held.clone();
    assert!(held.take_discarded().is_some());
    assert_eq!(held, taken);
    assert!(taken.take_discarded().is_none());
}

#[test]
fn a_promise_covering_compacted_slots_carries_the_snapshot_and_the_candidate_installs_it() {
    let mut acceptor = node_with_log(1, 2, 2);
    let mut candidate = node_with_log(2, 0, 0);
    step(&mut candidate, Input::Timer(Timer::Election));
    let ballot = candidate.durable().promised;
    let effects = step(
        &mut acceptor,
        msg(
            2,
            Message::Prepare {
                ballot,
                from_slot: 1,
            },
        ),
    );
    let promise = effects
        .iter()
        .find_map(|e| match e {
            Effect::Send { to: 2, message } => Some(message.clone()),
            _ => None,
        })
        .expect("a promise");
    let Message::Promise {
        snapshot, accepted, ..
    } = &promise
    else {
        panic!("expected a promise, got {promise:?}");
    };
    assert!(accepted.is_empty(), "compacted votes are not reported");
    assert_eq!(snapshot.as_ref().map(|s| s.slot), Some(2));

    let effects = step(&mut candidate, msg(1, promise));
    // Saved, then compacted, before anything is sent.
    let save = effects
        .iter()
        .position(|e| matches!(e, Effect::SaveSnapshot(s) if s.slot == 2))
        .expect("the snapshot is saved");
    let compact = effects
        .iter()
        .position(|e| *e == Effect::Persist(DurableUpdate::Compact(2)))
        .expect("the log is compacted to it");
    let first_send = effects
        .iter()
        .position(|e| matches!(e, Effect::Send { .. }))
        .unwrap_or(usize::MAX);
    assert!(save < compact && compact < first_send, "{effects:?}");
    assert!(candidate.is_leader());
    assert_eq!(candidate.commit_index(), 2);
    assert_eq!(
        candidate.client_table().machine(),
        acceptor.client_table().machine()
    );
    let Role::Leader(leadership) = candidate.role() else {
        unreachable!()
    };
    assert_eq!(
        leadership.next_slot, 3,
        "no slot at or below the snapshot is proposed again"
    );
    assert!(leadership.in_flight.is_empty());
}

#[test]
fn a_leader_sends_its_snapshot_to_a_follower_behind_its_compacted_log_once_per_quorum_check() {
    let mut leader = node_with_log(0, 0, 0);
    step(&mut leader, Input::Timer(Timer::Election));
    let ballot = leader.durable().promised;
    step(
        &mut leader,
        msg(
            1,
            Message::Promise {
                ballot,
                accepted: vec![],
                snapshot: None,
            },
        ),
    );
    assert!(leader.is_leader());
    for seq in 1..=3 {
        step(
            &mut leader,
            Input::Client(ballot_model::ClientRequest::Write(write(9, seq, seq as u8))),
        );
        step(
            &mut leader,
            msg(
                1,
                Message::Accepted {
                    ballot,
                    slot: seq,
                    commit: 0,
                },
            ),
        );
    }
    assert_eq!(leader.commit_index(), 3);
    step(&mut leader, Input::Compact { through: 3 });
    let lagging = msg(
        2,
        Message::HeartbeatAck {
            ballot,
            commit: 0,
            read_round: 0,
            lagging: true,
        },
    );
    let effects = step(&mut leader, lagging.clone());
    let snapshot = match effects.as_slice() {
        [Effect::Send {
            to: 2,
            message:
                Message::InstallSnapshot {
                    snapshot,
                    commit: 3,
                    ..
                },
        }] => snapshot.clone(),
        other => panic!("expected one InstallSnapshot to node 2, got {other:?}"),
    };
    assert_eq!(snapshot.slot, 3);
    assert!(
        step(&mut leader, lagging.clone()).is_empty(),
        "not again before the check"
    );
    step(
        &mut leader,
        msg(
            1,
            Message::HeartbeatAck {
                ballot,
                commit: 3,
                read_round: 0,
                lagging: false,
            },
        ),
    );
    step(&mut leader, Input::Timer(Timer::CheckQuorum));
    assert!(leader.is_leader());
    assert_eq!(
        step(&mut leader, lagging).len(),
        1,
        "resent after the check"
    );

    // The follower installs it: saved, compacted, applied, acknowledged, in that order.
    let mut follower = node_with_log(2, 0, 0);
    let effects = step(
        &mut follower,
        msg(
            0,
            Message::InstallSnapshot {
                ballot,
                snapshot: snapshot.clone(),
                commit: 3,
            },
        ),
    );
    let kinds: Vec<&str> = effects
        .iter()
        .map(|e| match e {
            Effect::Persist(DurableUpdate::Promise(_)) => "promise",
            Effect::SaveSnapshot(_) => "save",
            Effect::Persist(DurableUpdate::Compact(3)) => "compact",
            Effect::SetTimer(Timer::Election) => "timer",
            Effect::Send {
                to: 0,
                message:
                    Message::HeartbeatAck {
                        commit: 3,
                        lagging: false,
                        ..
                    },
            } => "ack",
            other => panic!("unexpected effect {other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["promise", "timer", "save", "compact", "ack"]);
    assert_eq!((follower.commit_index(), follower.applied_index()), (3, 3));
    assert_eq!(follower.client_table(), &snapshot.table);
}

#[test]
fn an_accept_for_a_compacted_slot_is_acknowledged_without_a_vote_to_store() {
    let mut r = node_with_log(1, 2, 2);
    let ballot = Ballot::new(2, 2);
    let effects = step(
        &mut r,
        msg(
            2,
            Message::Accept {
                ballot,
                slot: 2,
                proposal: Proposal::Batch(vec![write(7, 2, 2)]),
                commit: 1,
            },
        ),
    );
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::Persist(DurableUpdate::Accept { .. }))),
        "{effects:?}"
    );
    assert!(effects.contains(&Effect::Send {
        to: 2,
        message: Message::Accepted {
            ballot,
            slot: 2,
            commit: 2
        }
    }));
    assert!(r.durable().accepted.is_empty());
}

#[test]
fn restore_takes_a_newer_snapshot_and_refuses_an_older_one() {
    let donor = node_with_log(0, 3, 0);
    let snapshot = donor.snapshot();
    // The log knows nothing of slot 3's compaction (a crash between saving the
    // snapshot and compacting): restoring compacts it now, durably.
    let (r, effects) = Replica::restore(
        1,
        ClusterConfig::new(3),
        snapshot.clone(),
        DurableState::default(),
    )
    .expect("restore");
    assert_eq!(
        effects,
        vec![
            Effect::Persist(DurableUpdate::Compact(3)),
            Effect::SetTimer(Timer::Election)
        ]
    );
    assert_eq!((r.commit_index(), r.applied_index()), (3, 3));
    assert_eq!(r.client_table(), &snapshot.table);

    let mut compacted = DurableState::<u8>::default();
    compacted.apply(&DurableUpdate::Compact(5));
    let error = Replica::restore(1, ClusterConfig::new(3), snapshot, compacted).unwrap_err();
    assert_eq!(
        error,
        RestoreError::SnapshotBehindLog {
            snapshot: 3,
            compacted: 5
        }
    );
    let fresh = Snapshot {
        slot: 0,
        table: ClientTable::new(Register::default()),
        members: Default::default(),
    };
    assert_eq!(fresh, Snapshot::initial(Register::default()));
}
