//! Transition tests of the sans-IO core, in the style of openraft's engine tests: drive a
//! replica into a precise state by feeding it inputs, then `step` it with one input and
//! assert the *exact* effect vector (order included) and the observable state after it.
//!
//! Every successful step also runs `invariants::check_replica`.

use ballot_model::invariants::check_replica;
use ballot_model::{
    AcceptedEntry, ApplyOutcome, Ballot, ClientRequest, ClientResponse, ClusterConfig,
    DurableState, DurableUpdate, Effect, Input, MemberAddress, MemberChange, Membership, Message,
    NodeId, Proposal, ReconfigureOutcome, ReconfigureRefusal, Refusal, Register, Replica, Request,
    Role, Slot, StepError, Timer, TransferOutcome, TransferRefusal, MEMBER_ADDRESS_BYTES_MAX,
    NODE_IDS_MAX,
};
use std::collections::BTreeMap;

type R = Replica<Register>;
type E = Effect<Register>;
type Msg = Message<Register>;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn cluster(n: usize) -> ClusterConfig {
    ClusterConfig::new(n)
}

fn b(round: u32, node: NodeId) -> Ballot {
    Ballot::new(round, node)
}

/// Recovers node `id` of a `config` cluster from `durable`, checking that recovery only
/// arms the election timer.
fn recover_with(id: NodeId, config: ClusterConfig, durable: DurableState<u8>) -> R {
    let (r, effects) = Replica::recover(id, config, Register::default(), durable);
    assert_eq!(effects, vec![Effect::SetTimer(Timer::Election)]);
    check(&r);
    r
}

/// A fresh follower of a 3-node cluster.
fn follower(id: NodeId) -> R {
    recover_with(id, cluster(3), DurableState::default())
}

/// Runs two candidacies on `r`: ballot 1 is outbid (a peer names a promise of 1.2),
/// so the next timeout starts ballot 2.
fn second_candidacy(r: &mut R) {
    step(r, timer(Timer::Election));
    step(
        r,
        msg(
            1,
            Message::Reject {
                ballot: b(1, r.id()),
                promised: b(1, 2),
            },
        ),
    );
    step(r, timer(Timer::Election));
    assert!(matches!(r.role(), Role::Candidate(c) if c.ballot == b(2, r.id())));
}

fn check(r: &R) {
    assert_eq!(check_replica(r), Ok(()), "invariants of node {}", r.id());
}

/// Steps with an input the core must accept; returns the effects.
fn step(r: &mut R, input: Input<Register>) -> Vec<E> {
    let mut effects = Vec::new();
    if let Err(e) = r.step(input, &mut effects) {
        panic!("step refused valid input: {e}");
    }
    check(r);
    effects
}

/// Steps with any input; returns the result and the effects.
fn try_step(r: &mut R, input: Input<Register>) -> (Result<(), StepError>, Vec<E>) {
    let mut effects = Vec::new();
    let result = r.step(input, &mut effects);
    (result, effects)
}

fn msg(from: NodeId, message: Msg) -> Input<Register> {
    Input::Message { from, message }
}

fn timer(t: Timer) -> Input<Register> {
    Input::Timer(t)
}

fn req(client: u64, seq: u64, command: u8) -> Request<u8> {
    Request {
        client,
        seq,
        command,
    }
}

fn client_write(client: u64, seq: u64, command: u8) -> Input<Register> {
    Input::Client(ClientRequest::Write(req(client, seq, command)))
}

fn client_read(client: u64, seq: u64) -> Input<Register> {
    Input::Client(ClientRequest::Read {
        client,
        seq,
        query: (),
    })
}

fn batch(requests: &[Request<u8>]) -> Proposal<u8> {
    Proposal::Batch(requests.to_vec())
}

fn entry(ballot: Ballot, proposal: Proposal<u8>) -> AcceptedEntry<u8> {
    AcceptedEntry { ballot, proposal }
}

fn send(to: NodeId, message: Msg) -> E {
    Effect::Send { to, message }
}

/// A send that may leave ahead of the persists before it (a leader's heartbeat).
fn send_ahead(to: NodeId, message: Msg) -> E {
    Effect::SendAhead { to, message }
}

fn persist_accept(slot: Slot, ballot: Ballot, proposal: Proposal<u8>) -> E {
    Effect::Persist(DurableUpdate::Accept {
        slot,
        entry: entry(ballot, proposal),
    })
}

fn accept(ballot: Ballot, slot: Slot, proposal: Proposal<u8>, commit: Slot) -> Msg {
    Message::Accept {
        ballot,
        slot,
        proposal,
        commit,
    }
}

fn accepted(ballot: Ballot, slot: Slot, commit: Slot) -> Msg {
    Message::Accepted {
        ballot,
        slot,
        commit,
    }
}

fn prepare(ballot: Ballot, from_slot: Slot) -> Msg {
    Message::Prepare { ballot, from_slot }
}

fn heartbeat(ballot: Ballot, commit: Slot, read_round: u64) -> Msg {
    Message::Heartbeat {
        ballot,
        commit,
        read_round,
    }
}

fn heartbeat_ack(ballot: Ballot, commit: Slot, read_round: u64, lagging: bool) -> Msg {
    Message::HeartbeatAck {
        ballot,
        commit,
        read_round,
        lagging,
    }
}

fn written(client: u64, seq: u64, output: Option<u8>) -> E {
    Effect::Reply {
        client,
        response: ClientResponse::Written { seq, output },
    }
}

fn read_ok(client: u64, seq: u64, output: Option<u8>) -> E {
    Effect::Reply {
        client,
        response: ClientResponse::ReadOk { seq, output },
    }
}

fn redirect(client: u64, seq: u64, leader: Option<NodeId>) -> E {
    Effect::Reply {
        client,
        response: ClientResponse::Redirect { seq, leader },
    }
}

/// Node 0 of a 3-node cluster: Persist + Prepare to 1 and 2 + election timer.
fn election_effects(ballot: Ballot, from_slot: Slot) -> Vec<E> {
    vec![
        Effect::Persist(DurableUpdate::Promise(ballot)),
        Effect::Campaigning { ballot },
        send(1, Message::Prepare { ballot, from_slot }),
        send(2, Message::Prepare { ballot, from_slot }),
        Effect::SetTimer(Timer::CandidacyRetry),
    ]
}

/// What a leader emits on becoming leader with nothing to re-propose.
fn leadership_timers() -> Vec<E> {
    vec![
        Effect::CancelTimer(Timer::CandidacyRetry),
        Effect::SetTimer(Timer::Heartbeat),
        Effect::SetTimer(Timer::CheckQuorum),
    ]
}

/// What a candidate emits when it gives up: it stops asking and watches for a leader.
fn failed_candidacy_timers() -> Vec<E> {
    vec![
        Effect::CancelTimer(Timer::CandidacyRetry),
        Effect::SetTimer(Timer::Election),
    ]
}

/// What a leader emits when it steps down.
fn step_down_timers() -> Vec<E> {
    vec![
        Effect::CancelTimer(Timer::Heartbeat),
        Effect::CancelTimer(Timer::CheckQuorum),
        Effect::SetTimer(Timer::Election),
    ]
}

/// Leader (node 0 of 3) proposing `proposal` in `slot`: persist, then Accept to 1 and 2.
fn propose_effects(ballot: Ballot, slot: Slot, proposal: Proposal<u8>, commit: Slot) -> Vec<E> {
    vec![
        persist_accept(slot, ballot, proposal.clone()),
        send(1, accept(ballot, slot, proposal.clone(), commit)),
        send(2, accept(ballot, slot, proposal, commit)),
    ]
}

/// Drives `r` (a follower or candidate of a 3-node cluster) to leadership: election
/// timeout, then an empty promise from the next peer.
fn elect(mut r: R) -> R {
    step(&mut r, timer(Timer::Election));
    let ballot = r.durable().promised;
    let peer = (r.id() + 1) % r.config().node_count;
    let effects = step(
        &mut r,
        msg(
            peer,
            Message::Promise {
                ballot,
                accepted: vec![],
                snapshot: None,
            },
        ),
    );
    assert_eq!(effects, leadership_timers());
    assert!(r.is_leader());
    assert_eq!(r.leader_ballot(), Some(ballot));
    r
}

/// A leader (with nothing in flight) takes `request` and commits it with an Accepted
/// from node 1. Returns the effects of the Accepted.
fn commit_write(r: &mut R, request: Request<u8>) -> Vec<E> {
    step(r, Input::Client(ClientRequest::Write(request)));
    let ballot = r.leader_ballot().expect("leader");
    let slot = *r.durable().accepted.keys().next_back().expect("proposed");
    let effects = step(r, msg(1, accepted(ballot, slot, 0)));
    assert_eq!(r.commit_index(), slot);
    assert_eq!(r.applied_index(), slot);
    effects
}

// ---------------------------------------------------------------------------------------
// 1. Recovery
// ---------------------------------------------------------------------------------------

#[test]
fn recover_from_default_durable_state_arms_only_election_timer() {
    let (r, effects) = Replica::recover(
        0,
        cluster(3),
        Register::default(),
        DurableState::<u8>::default(),
    );
    assert_eq!(effects, vec![Effect::SetTimer(Timer::Election)]);
    assert!(!r.is_leader());
    assert_eq!(r.known_leader(), None);
    assert_eq!(r.leader_ballot(), None);
    assert_eq!(r.commit_index(), 0);
    assert_eq!(r.applied_index(), 0);
    assert_eq!(r.durable(), &DurableState::default());
    assert_eq!(r.role(), &Role::Follower { leader: None });
    check(&r);
}

#[test]
fn recover_replays_committed_slots_into_state_machine() {
    let ballot = b(1, 1);
    let durable = DurableState {
        promised: ballot,
        accepted: BTreeMap::from([
            (1, entry(ballot, batch(&[req(7, 1, 5)]))),
            (2, entry(ballot, batch(&[req(7, 2, 6), req(8, 1, 9)]))),
            // Accepted but not committed: must not be applied.
            (3, entry(ballot, batch(&[req(8, 2, 4)]))),
        ]),
        commit: 2,
        compacted: 0,
    };
    let (r, effects) = Replica::recover(2, cluster(3), Register::default(), durable.clone());
    assert_eq!(effects, vec![Effect::SetTimer(Timer::Election)]);
    assert_eq!(r.commit_index(), 2);
    assert_eq!(r.applied_index(), 2);
    assert_eq!(r.durable(), &durable);
    assert!(!r.is_leader());
    assert_eq!(r.known_leader(), None);
    let table = r.client_table();
    assert_eq!(table.machine().value, Some(9));
    assert_eq!(table.lookup(7, 1), Some(ApplyOutcome::Stale));
    assert_eq!(table.lookup(7, 2), Some(ApplyOutcome::Duplicate(Some(5))));
    assert_eq!(table.lookup(8, 1), Some(ApplyOutcome::Duplicate(Some(6))));
    assert_eq!(table.lookup(8, 2), None, "slot 3 is not committed");
    assert_eq!(r.committed_log().count(), 2);
    check(&r);
}

// ---------------------------------------------------------------------------------------
// 2. Election timeout
// ---------------------------------------------------------------------------------------

#[test]
fn election_timeout_persists_promise_before_sending_prepare() {
    let mut r = follower(0);
    let effects = step(&mut r, timer(Timer::Election));
    assert_eq!(
        effects,
        vec![
            Effect::Persist(DurableUpdate::Promise(b(1, 0))),
            Effect::Campaigning { ballot: b(1, 0) },
            send(
                1,
                Message::Prepare {
                    ballot: b(1, 0),
                    from_slot: 1
                }
            ),
            send(
                2,
                Message::Prepare {
                    ballot: b(1, 0),
                    from_slot: 1
                }
            ),
            Effect::SetTimer(Timer::CandidacyRetry),
        ]
    );
    assert_eq!(r.durable().promised, b(1, 0));
    assert!(!r.is_leader());
    assert_eq!(r.known_leader(), None);
    assert_eq!(r.leader_ballot(), None);
    assert!(matches!(r.role(), Role::Candidate(c) if c.ballot == b(1, 0) && c.from_slot == 1));
}

#[test]
fn election_timeout_runs_above_promise_from_commit_point() {
    let old = b(4, 2);
    let durable = DurableState {
        promised: old,
        accepted: BTreeMap::from([
            (1, entry(old, batch(&[req(7, 1, 5)]))),
            (2, entry(old, batch(&[req(7, 2, 6)]))),
        ]),
        commit: 2,
        compacted: 0,
    };
    let mut r = recover_with(0, cluster(3), durable);
    let effects = step(&mut r, timer(Timer::Election));
    assert_eq!(effects, election_effects(b(5, 0), 3));
    assert_eq!(r.durable().promised, b(5, 0));
}

#[test]
fn outbid_candidate_election_timeout_starts_a_higher_ballot() {
    let mut r = follower(0);
    step(&mut r, timer(Timer::Election));
    step(
        &mut r,
        msg(
            2,
            Message::Reject {
                ballot: b(1, 0),
                promised: b(1, 2),
            },
        ),
    );
    let effects = step(&mut r, timer(Timer::Election));
    assert_eq!(effects, election_effects(b(2, 0), 1));
    assert!(matches!(r.role(), Role::Candidate(c) if c.ballot == b(2, 0)));
}

#[test]
fn unbeaten_candidate_election_timeout_asks_again_at_the_same_ballot() {
    let mut r = follower(0);
    step(&mut r, timer(Timer::Election));
    step(
        &mut r,
        msg(
            1,
            Message::Promise {
                ballot: b(1, 0),
                accepted: vec![],
                snapshot: None,
            },
        ),
    );
    // 0 and 1 make a majority of 3: it leads. Use a 5-node cluster to stay a candidate.
    let mut r5 = recover_with(0, cluster(5), DurableState::default());
    step(&mut r5, timer(Timer::Election));
    step(
        &mut r5,
        msg(
            1,
            Message::Promise {
                ballot: b(1, 0),
                accepted: vec![],
                snapshot: None,
            },
        ),
    );
    let before = r5.durable().clone();
    let effects = step(&mut r5, timer(Timer::CandidacyRetry));
    assert_eq!(
        effects,
        vec![
            send(2, prepare(b(1, 0), 1)),
            send(3, prepare(b(1, 0), 1)),
            send(4, prepare(b(1, 0), 1)),
            Effect::SetTimer(Timer::CandidacyRetry),
        ],
        "no new ballot, nothing persisted, only peers that have not promised are asked"
    );
    assert_eq!(r5.durable(), &before);
    assert!(r.is_leader());
}

#[test]
fn follower_loyal_to_a_live_leader_refuses_a_higher_prepare_without_promising() {
    let mut r = follower(1);
    step(&mut r, msg(2, heartbeat(b(1, 2), 0, 0)));
    let before = r.clone();
    let effects = step(&mut r, msg(0, prepare(b(2, 0), 1)));
    assert_eq!(effects, vec![], "a loyal refusal is silent");
    assert_eq!(r.durable(), before.durable(), "no promise is made");
    assert_eq!(r.known_leader(), Some(2));
    // A retransmission of the refused Prepare is no news at all.
    let seen = r.clone();
    assert_eq!(step(&mut r, msg(0, prepare(b(2, 0), 1))), vec![]);
    assert_eq!(r, seen);
    // Its leader may still raise its own ballot.
    let effects = step(&mut r, msg(2, prepare(b(2, 2), 1)));
    assert_eq!(effects[0], Effect::Persist(DurableUpdate::Promise(b(2, 2))));
    // Once its election timer fires the loyalty ends without a new ballot: the
    // refused candidate, asking again, now gets the promise.
    let mut r = follower(1);
    step(&mut r, msg(2, heartbeat(b(1, 2), 0, 0)));
    step(&mut r, msg(0, prepare(b(2, 0), 1)));
    let effects = step(&mut r, timer(Timer::Election));
    assert_eq!(effects, vec![Effect::SetTimer(Timer::Election)]);
    assert_eq!(r.durable().promised, b(1, 2), "no ballot spent");
    assert_eq!(r.backing(), None);
    let effects = step(&mut r, msg(0, prepare(b(2, 0), 1)));
    assert_eq!(effects[0], Effect::Persist(DurableUpdate::Promise(b(2, 0))));
    // Had it refused no one, its timeout would have started its own ballot.
    let mut r = follower(1);
    step(&mut r, msg(2, heartbeat(b(1, 2), 0, 0)));
    step(&mut r, timer(Timer::Election));
    assert_eq!(r.durable().promised, b(2, 1));
}

#[test]
fn loyalty_is_released_once_between_leaders_then_the_follower_campaigns() {
    // Candidates that cannot win outbid each other through this follower: it backs
    // 2.0, refuses 2.3, releases; backs 2.3, refuses 2.4. Releasing again would let
    // this go on forever; its second timeout campaigns above everything it saw.
    let mut r = recover_with(1, cluster(5), DurableState::default());
    step(&mut r, msg(0, prepare(b(2, 0), 1)));
    step(&mut r, msg(3, prepare(b(2, 3), 1)));
    assert!(
        !r.election_timeout_starts_ballot(),
        "first timeout releases"
    );
    step(&mut r, timer(Timer::Election));
    assert_eq!(r.durable().promised, b(2, 0));
    step(&mut r, msg(3, prepare(b(2, 3), 1)));
    assert_eq!(r.durable().promised, b(2, 3));
    assert_eq!(r.backing(), Some(3));
    step(&mut r, msg(4, prepare(b(2, 4), 1)));
    assert_eq!(r.durable().promised, b(2, 3), "still loyal to 3");
    assert!(r.election_timeout_starts_ballot(), "already released once");
    step(&mut r, timer(Timer::Election));
    assert_eq!(r.durable().promised, b(3, 1), "campaigns above 2.4");
    // Following a leader resets it: the next loyalty may be released again.
    step(&mut r, msg(4, heartbeat(b(4, 4), 0, 0)));
    step(&mut r, msg(3, prepare(b(5, 3), 1)));
    assert!(!r.election_timeout_starts_ballot());
}

#[test]
fn candidate_ignores_a_loyal_followers_refusal_and_keeps_its_ballot() {
    let mut r = follower(0);
    step(&mut r, timer(Timer::Election));
    let before = r.clone();
    let effects = step(
        &mut r,
        msg(
            1,
            Message::Reject {
                ballot: b(1, 0),
                promised: b(1, 2),
            },
        ),
    );
    // promised 1.2 > 1.0 here: a real outbid. A loyal refusal names a lower promise.
    assert_eq!(effects, failed_candidacy_timers());
    assert_eq!(r.known_leader(), None);
    let mut r = before;
    let effects = step(
        &mut r,
        msg(
            1,
            Message::Reject {
                ballot: b(1, 0),
                promised: b(0, 2),
            },
        ),
    );
    assert_eq!(effects, vec![]);
    assert!(r.election_retries_ballot());
}

#[test]
fn stale_election_timeout_at_leader_is_ignored() {
    let mut r = elect(follower(0));
    let before = r.clone();
    let effects = step(&mut r, timer(Timer::Election));
    assert_eq!(effects, vec![]);
    assert_eq!(r, before);
}

// ---------------------------------------------------------------------------------------
// 3. Acceptor: Prepare
// ---------------------------------------------------------------------------------------

#[test]
fn acceptor_promises_prepare_above_promise_reporting_votes_from_slot() {
    let mut r = follower(1);
    let old = b(1, 2);
    let p1 = batch(&[req(7, 1, 5)]);
    let p2 = batch(&[req(7, 2, 6)]);
    step(&mut r, msg(2, accept(old, 1, p1, 0)));
    step(&mut r, msg(2, accept(old, 2, p2.clone(), 0)));
    // Its leader went quiet: the election timer fired, and the node restarted before
    // campaigning (so it follows no one and promised nothing new).
    let mut r = recover_with(1, cluster(3), r.durable().clone());

    let effects = step(&mut r, msg(0, prepare(b(2, 0), 2)));
    assert_eq!(
        effects,
        vec![
            Effect::Persist(DurableUpdate::Promise(b(2, 0))),
            Effect::SetTimer(Timer::Election),
            send(
                0,
                Message::Promise {
                    ballot: b(2, 0),
                    accepted: vec![(2, entry(old, p2))],
                    snapshot: None,
                }
            ),
        ]
    );
    assert_eq!(r.durable().promised, b(2, 0));
    assert!(!r.is_leader());
    assert_eq!(r.commit_index(), 0);
}

#[test]
fn acceptor_rejects_prepare_below_promise() {
    let mut r = follower(1);
    step(&mut r, msg(0, prepare(b(2, 0), 1)));
    let before = r.clone();
    let effects = step(&mut r, msg(2, prepare(b(1, 2), 1)));
    assert_eq!(
        effects,
        vec![send(
            2,
            Message::Reject {
                ballot: b(1, 2),
                promised: b(2, 0),
            }
        )]
    );
    assert_eq!(r, before, "a rejected Prepare changes nothing");
    assert_eq!(r.durable().promised, b(2, 0));
}

#[test]
fn acceptor_repeats_promise_for_duplicate_prepare_without_persisting() {
    let mut r = follower(1);
    let p = batch(&[req(7, 1, 5)]);
    step(&mut r, msg(2, accept(b(1, 2), 1, p.clone(), 0)));
    let mut r = recover_with(1, cluster(3), r.durable().clone());
    let prepare = prepare(b(2, 0), 1);
    let first = step(&mut r, msg(0, prepare.clone()));
    assert_eq!(first[0], Effect::Persist(DurableUpdate::Promise(b(2, 0))));
    let before = r.clone();

    let effects = step(&mut r, msg(0, prepare));
    assert_eq!(
        effects,
        vec![send(
            0,
            Message::Promise {
                ballot: b(2, 0),
                accepted: vec![(1, entry(b(1, 2), p))],
                snapshot: None,
            }
        )]
    );
    assert_eq!(r, before);
}

#[test]
fn leader_steps_down_on_prepare_above_its_ballot() {
    let mut r = elect(follower(0));
    let effects = step(&mut r, msg(1, prepare(b(2, 1), 1)));
    let mut expected = vec![Effect::Persist(DurableUpdate::Promise(b(2, 1)))];
    expected.extend(step_down_timers());
    expected.push(send(
        1,
        Message::Promise {
            ballot: b(2, 1),
            accepted: vec![],
            snapshot: None,
        },
    ));
    assert_eq!(effects, expected);
    assert!(!r.is_leader());
    assert_eq!(r.leader_ballot(), None);
    assert_eq!(r.known_leader(), None);
    assert_eq!(r.durable().promised, b(2, 1));
}

// ---------------------------------------------------------------------------------------
// 4. Candidate → leader
// ---------------------------------------------------------------------------------------

#[test]
fn candidate_becomes_leader_on_majority_of_promises() {
    let mut r = follower(0);
    step(&mut r, timer(Timer::Election));
    let effects = step(
        &mut r,
        msg(
            2,
            Message::Promise {
                ballot: b(1, 0),
                accepted: vec![],
                snapshot: None,
            },
        ),
    );
    assert_eq!(effects, leadership_timers());
    assert!(r.is_leader());
    assert_eq!(r.leader_ballot(), Some(b(1, 0)));
    assert_eq!(r.known_leader(), Some(0));
    assert_eq!(r.commit_index(), 0);
    assert_eq!(r.durable().promised, b(1, 0));
}

#[test]
fn new_leader_reproposes_highest_ballot_value_and_fills_holes_with_noop() {
    let mut r = follower(0);
    let low = b(1, 1);
    let high = b(1, 2);
    let p10 = batch(&[req(7, 1, 10)]);
    let p20 = batch(&[req(8, 1, 20)]);
    let p30 = batch(&[req(9, 1, 30)]);
    // Our own vote for slot 1, at the lower ballot.
    step(&mut r, msg(1, accept(low, 1, p10, 0)));
    let effects = step(&mut r, timer(Timer::Election));
    assert_eq!(effects, election_effects(b(2, 0), 1));

    // Node 2 voted for slot 1 at a higher ballot, and for slot 3 but not slot 2.
    let effects = step(
        &mut r,
        msg(
            2,
            Message::Promise {
                ballot: b(2, 0),
                accepted: vec![(1, entry(high, p20.clone())), (3, entry(high, p30.clone()))],
                snapshot: None,
            },
        ),
    );
    let ballot = b(2, 0);
    let mut expected = leadership_timers();
    expected.extend(propose_effects(ballot, 1, p20.clone(), 0));
    expected.extend(propose_effects(ballot, 2, Proposal::Noop, 0));
    expected.extend(propose_effects(ballot, 3, p30.clone(), 0));
    assert_eq!(effects, expected);
    assert!(r.is_leader());
    assert_eq!(r.leader_ballot(), Some(ballot));
    assert_eq!(r.commit_index(), 0);
    assert_eq!(
        r.durable().accepted,
        BTreeMap::from([
            (1, entry(ballot, p20)),
            (2, entry(ballot, Proposal::Noop)),
            (3, entry(ballot, p30)),
        ])
    );
    match r.role() {
        Role::Leader(l) => {
            assert_eq!(l.next_slot, 4);
            assert_eq!(l.in_flight.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
        }
        other => panic!("not leading: {other:?}"),
    }
}

#[test]
fn new_leader_keeps_its_own_vote_when_it_has_the_highest_ballot() {
    let mut r = follower(0);
    let mine = batch(&[req(7, 1, 10)]);
    let theirs = batch(&[req(8, 1, 20)]);
    step(&mut r, msg(2, accept(b(1, 2), 1, mine.clone(), 0)));
    step(&mut r, timer(Timer::Election));
    let effects = step(
        &mut r,
        msg(
            1,
            Message::Promise {
                ballot: b(2, 0),
                accepted: vec![(1, entry(b(1, 1), theirs))],
                snapshot: None,
            },
        ),
    );
    let mut expected = leadership_timers();
    expected.extend(propose_effects(b(2, 0), 1, mine, 0));
    assert_eq!(effects, expected);
}

#[test]
fn candidate_ignores_promise_for_its_earlier_ballot() {
    let mut r = follower(0);
    second_candidacy(&mut r);
    let before = r.clone();
    let effects = step(
        &mut r,
        msg(
            1,
            Message::Promise {
                ballot: b(1, 0),
                accepted: vec![],
                snapshot: None,
            },
        ),
    );
    assert_eq!(effects, vec![]);
    assert_eq!(r, before);
    assert!(!r.is_leader());
}

#[test]
fn leader_ignores_late_promise() {
    let mut r = elect(follower(0));
    let before = r.clone();
    let effects = step(
        &mut r,
        msg(
            2,
            Message::Promise {
                ballot: b(1, 0),
                accepted: vec![(1, entry(b(1, 0), Proposal::Noop))],
                snapshot: None,
            },
        ),
    );
    assert_eq!(effects, vec![]);
    assert_eq!(r, before);
}

#[test]
fn single_node_cluster_elects_itself_and_commits_alone() {
    let mut r = recover_with(0, cluster(1), DurableState::default());
    let effects = step(&mut r, timer(Timer::Election));
    let mut expected = vec![
        Effect::Persist(DurableUpdate::Promise(b(1, 0))),
        Effect::Campaigning { ballot: b(1, 0) },
        Effect::SetTimer(Timer::CandidacyRetry),
    ];
    expected.extend(leadership_timers());
    assert_eq!(effects, expected);
    assert!(r.is_leader());

    let effects = step(&mut r, client_write(7, 1, 5));
    assert_eq!(
        effects,
        vec![
            persist_accept(1, b(1, 0), batch(&[req(7, 1, 5)])),
            Effect::Persist(DurableUpdate::Commit(1)),
            written(7, 1, None),
            Effect::Applied { slot: 1 },
        ]
    );
    assert_eq!(r.commit_index(), 1);
    assert_eq!(r.applied_index(), 1);

    let effects = step(&mut r, client_read(9, 1));
    assert_eq!(effects, vec![read_ok(9, 1, Some(5))]);
    let effects = step(&mut r, timer(Timer::CheckQuorum));
    assert_eq!(effects, vec![Effect::SetTimer(Timer::CheckQuorum)]);
    assert!(r.is_leader());
}

// ---------------------------------------------------------------------------------------
// 5. Leader: writes and commits
// ---------------------------------------------------------------------------------------

#[test]
fn leader_persists_client_write_before_sending_accepts() {
    let mut r = elect(follower(0));
    let p = batch(&[req(7, 1, 5)]);
    let effects = step(&mut r, client_write(7, 1, 5));
    assert_eq!(effects, propose_effects(b(1, 0), 1, p.clone(), 0));
    assert_eq!(r.durable().accepted.get(&1), Some(&entry(b(1, 0), p)));
    assert_eq!(r.commit_index(), 0);
    assert_eq!(r.applied_index(), 0);
    assert!(r.is_leader());
}

#[test]
fn accepted_from_one_peer_commits_applies_and_replies() {
    let mut r = elect(follower(0));
    step(&mut r, client_write(7, 1, 5));
    let effects = step(&mut r, msg(1, accepted(b(1, 0), 1, 0)));
    // The reply to the waiting client is emitted while applying the slot, before the
    // `Applied` trace event for that slot.
    assert_eq!(
        effects,
        vec![
            Effect::Persist(DurableUpdate::Commit(1)),
            written(7, 1, None),
            Effect::Applied { slot: 1 },
        ]
    );
    assert_eq!(r.commit_index(), 1);
    assert_eq!(r.applied_index(), 1);
    assert_eq!(r.durable().commit, 1);
    assert_eq!(r.client_table().machine().value, Some(5));
    assert!(r.is_leader());

    // The second vote for an already committed slot changes nothing.
    let before = r.clone();
    let effects = step(&mut r, msg(2, accepted(b(1, 0), 1, 0)));
    assert_eq!(effects, vec![]);
    assert_ne!(
        r, before,
        "the vote still counts as contact for CheckQuorum"
    );
    match r.role() {
        Role::Leader(l) => assert!(l.heard.contains(&2)),
        other => panic!("not leading: {other:?}"),
    }
}

#[test]
fn leader_commits_only_a_contiguous_prefix() {
    let mut r = elect(follower(0));
    step(&mut r, client_write(7, 1, 5));
    step(&mut r, client_write(8, 1, 6));
    // Slot 2 has a majority but slot 1 does not: nothing commits.
    let effects = step(&mut r, msg(2, accepted(b(1, 0), 2, 0)));
    assert_eq!(effects, vec![]);
    assert_eq!(r.commit_index(), 0);
    // Slot 1 gets its majority: both commit, in order.
    let effects = step(&mut r, msg(1, accepted(b(1, 0), 1, 0)));
    assert_eq!(
        effects,
        vec![
            Effect::Persist(DurableUpdate::Commit(2)),
            written(7, 1, None),
            Effect::Applied { slot: 1 },
            written(8, 1, Some(5)),
            Effect::Applied { slot: 2 },
        ]
    );
    assert_eq!(r.commit_index(), 2);
    assert_eq!(r.applied_index(), 2);
}

#[test]
fn heartbeat_timeout_retransmits_unacknowledged_accepts() {
    let mut r = elect(follower(0));
    let ballot = b(1, 0);
    let p1 = batch(&[req(7, 1, 5)]);
    let p2 = batch(&[req(8, 1, 6)]);
    step(&mut r, client_write(7, 1, 5));
    step(&mut r, client_write(8, 1, 6));
    step(&mut r, msg(2, accepted(ballot, 2, 0)));
    let effects = step(&mut r, timer(Timer::Heartbeat));
    assert_eq!(
        effects,
        vec![
            send_ahead(1, heartbeat(ballot, 0, 0)),
            send(1, accept(ballot, 1, p1.clone(), 0)),
            send(1, accept(ballot, 2, p2, 0)),
            send_ahead(2, heartbeat(ballot, 0, 0)),
            send(2, accept(ballot, 1, p1, 0)),
            Effect::SetTimer(Timer::Heartbeat),
        ]
    );
}

#[test]
fn heartbeat_retransmits_within_one_slots_bytes_per_peer_oldest_first() {
    // Each register command counts one byte; a tick re-sends at most two bytes' worth
    // to each peer (and always one slot).
    let mut r = elect(recover_with(
        0,
        cluster(3).with_pipeline_depth(3).with_batch_bytes_max(2),
        DurableState::default(),
    ));
    let ballot = b(1, 0);
    let p = |client: u64| batch(&[req(client, 1, client as u8)]);
    for client in 1..=3 {
        step(&mut r, client_write(client, 1, client as u8));
    }
    let effects = step(&mut r, timer(Timer::Heartbeat));
    assert_eq!(
        effects,
        vec![
            send_ahead(1, heartbeat(ballot, 0, 0)),
            send(1, accept(ballot, 1, p(1), 0)),
            send(1, accept(ballot, 2, p(2), 0)),
            send_ahead(2, heartbeat(ballot, 0, 0)),
            send(2, accept(ballot, 1, p(1), 0)),
            send(2, accept(ballot, 2, p(2), 0)),
            Effect::SetTimer(Timer::Heartbeat),
        ],
        "slot 3 waits for a later tick"
    );
    // Node 1 acknowledges slots 1 and 2 (a majority: they commit): its next tick
    // carries slot 3; node 2 still gets the oldest two in flight.
    step(&mut r, msg(1, accepted(ballot, 1, 0)));
    step(&mut r, msg(1, accepted(ballot, 2, 0)));
    let effects = step(&mut r, timer(Timer::Heartbeat));
    assert_eq!(
        effects,
        vec![
            send_ahead(1, heartbeat(ballot, 2, 0)),
            send(1, accept(ballot, 3, p(3), 2)),
            send_ahead(2, heartbeat(ballot, 2, 0)),
            send(2, accept(ballot, 3, p(3), 2)),
            Effect::SetTimer(Timer::Heartbeat),
        ]
    );
}

#[test]
fn full_pipeline_queues_writes_and_batches_them_after_commit() {
    let mut r = elect(recover_with(
        0,
        cluster(3).with_pipeline_depth(1),
        DurableState::default(),
    ));
    let ballot = b(1, 0);
    step(&mut r, client_write(7, 1, 5));
    assert_eq!(step(&mut r, client_write(8, 1, 6)), vec![]);
    assert_eq!(step(&mut r, client_write(9, 1, 7)), vec![]);
    assert_eq!(
        r.durable().accepted.len(),
        1,
        "queued writes are not persisted"
    );

    let effects = step(&mut r, msg(1, accepted(ballot, 1, 0)));
    let mut expected = vec![
        Effect::Persist(DurableUpdate::Commit(1)),
        written(7, 1, None),
        Effect::Applied { slot: 1 },
    ];
    expected.extend(propose_effects(
        ballot,
        2,
        batch(&[req(8, 1, 6), req(9, 1, 7)]),
        1,
    ));
    assert_eq!(effects, expected);
}

#[test]
fn a_batch_closes_at_its_byte_bound_as_well_as_its_count() {
    // A register's command counts one byte: two fit a slot of two bytes.
    let mut r = elect(recover_with(
        0,
        cluster(3).with_pipeline_depth(1).with_batch_bytes_max(2),
        DurableState::default(),
    ));
    let ballot = b(1, 0);
    step(&mut r, client_write(7, 1, 5));
    for client in 8..=10 {
        assert_eq!(step(&mut r, client_write(client, 1, 6)), vec![]);
    }
    let effects = step(&mut r, msg(1, accepted(ballot, 1, 0)));
    let mut expected = vec![
        Effect::Persist(DurableUpdate::Commit(1)),
        written(7, 1, None),
        Effect::Applied { slot: 1 },
    ];
    expected.extend(propose_effects(
        ballot,
        2,
        batch(&[req(8, 1, 6), req(9, 1, 6)]),
        1,
    ));
    assert_eq!(
        effects, expected,
        "the third queued request waits for slot 3"
    );
}

/// A state machine whose commands count their length, to exercise byte bounds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Blobs(usize);

impl ballot_model::StateMachine for Blobs {
    type Command = Vec<u8>;
    type Output = usize;
    type Query = ();
    type QueryOutput = usize;
    fn apply(&mut self, blob: &Vec<u8>) -> usize {
        self.0 += blob.len();
        self.0
    }
    fn query(&self, _: &()) -> usize {
        self.0
    }
    fn command_bytes(blob: &Vec<u8>) -> usize {
        blob.len()
    }
}

#[test]
fn a_request_over_the_batch_byte_bound_is_refused_and_never_proposed() {
    let config = cluster(1).with_batch_bytes_max(4);
    let (mut r, _) = Replica::recover(0, config, Blobs::default(), DurableState::default());
    let mut effects = Vec::new();
    r.step(Input::Timer(Timer::Election), &mut effects).unwrap();
    assert!(r.is_leader(), "a cluster of one elects itself");
    let write = |seq: u64, len: usize| {
        Input::Client(ClientRequest::Write(Request {
            client: 7,
            seq,
            command: vec![0u8; len],
        }))
    };
    effects.clear();
    r.step(write(1, 5), &mut effects).unwrap();
    assert_eq!(
        effects,
        vec![Effect::Reply {
            client: 7,
            response: ClientResponse::Refused {
                seq: 1,
                reason: Refusal::TooLarge { bytes: 5, max: 4 }
            },
        }]
    );
    assert!(r.durable().accepted.is_empty(), "nothing proposed");
    effects.clear();
    r.step(write(2, 4), &mut effects).unwrap();
    assert!(
        matches!(
            &effects[0],
            Effect::Persist(DurableUpdate::Accept { slot: 1, .. })
        ),
        "a request at the bound is proposed: {effects:?}"
    );
}

#[test]
fn a_full_queue_refuses_new_writes_as_busy_but_still_takes_retries_of_queued_ones() {
    let mut r = elect(recover_with(
        0,
        cluster(3).with_pipeline_depth(1).with_queue_requests_max(1),
        DurableState::default(),
    ));
    step(&mut r, client_write(7, 1, 5)); // proposed in slot 1
    assert_eq!(step(&mut r, client_write(8, 1, 6)), vec![], "queued");
    assert_eq!(
        step(&mut r, client_write(9, 1, 7)),
        vec![Effect::Reply {
            client: 9,
            response: ClientResponse::Refused {
                seq: 1,
                reason: Refusal::Busy
            },
        }]
    );
    // A retry of the queued request is not a new one: no refusal, no second copy.
    assert_eq!(step(&mut r, client_write(8, 1, 6)), vec![]);
    let effects = step(&mut r, msg(1, accepted(b(1, 0), 1, 0)));
    assert!(
        effects.contains(&persist_accept(2, b(1, 0), batch(&[req(8, 1, 6)]))),
        "the queued request, once, in slot 2: {effects:?}"
    );
    // Room again: client 9's retry is taken.
    assert_eq!(step(&mut r, client_write(9, 1, 7)), vec![]);
}

#[test]
fn reads_past_the_pending_bound_are_refused_as_busy() {
    let mut r = elect(recover_with(
        0,
        cluster(3).with_reads_pending_max(1),
        DurableState::default(),
    ));
    let effects = step(&mut r, client_read(7, 1));
    assert_eq!(effects.len(), 2, "a confirmation round: {effects:?}");
    // The same client's newer read replaces its older one rather than counting twice.
    assert_eq!(step(&mut r, client_read(7, 2)).len(), 2);
    assert_eq!(
        step(&mut r, client_read(8, 1)),
        vec![Effect::Reply {
            client: 8,
            response: ClientResponse::Refused {
                seq: 1,
                reason: Refusal::Busy
            },
        }]
    );
}

#[test]
fn lagging_heartbeat_ack_triggers_catch_up() {
    let mut r = elect(follower(0));
    let ballot = b(1, 0);
    commit_write(&mut r, req(7, 1, 5));
    let effects = step(&mut r, msg(2, heartbeat_ack(ballot, 0, 0, true)));
    assert_eq!(
        effects,
        vec![send(2, accept(ballot, 1, batch(&[req(7, 1, 5)]), 1))]
    );
    // Without `lagging`, nothing is re-sent.
    let effects = step(&mut r, msg(1, heartbeat_ack(ballot, 1, 0, false)));
    assert_eq!(effects, vec![]);
}

#[test]
fn an_accepted_ending_a_caught_up_window_continues_the_catch_up_at_once() {
    // Windows of 2: five committed writes; node 2 missed them all.
    let mut r = elect(recover_with(
        0,
        cluster(3).with_pipeline_depth(2).with_catch_up_slots(2),
        DurableState::default(),
    ));
    let ballot = b(1, 0);
    for seq in 1..=5 {
        commit_write(&mut r, req(7, seq, seq as u8));
    }
    let slot = |s: u64| send(2, accept(ballot, s, batch(&[req(7, s, s as u8)]), 5));
    // A heartbeat's catch-up sends the first window from node 2's commit index.
    let effects = step(&mut r, msg(2, heartbeat_ack(ballot, 0, 0, true)));
    assert_eq!(effects, vec![slot(1), slot(2)]);
    // Slot 1 acknowledged: not the window's last slot, nothing more.
    assert_eq!(step(&mut r, msg(2, accepted(ballot, 1, 1))), vec![]);
    // Slot 2 acknowledged with everything through it: the next window, without
    // waiting for a heartbeat.
    let effects = step(&mut r, msg(2, accepted(ballot, 2, 2)));
    assert_eq!(effects, vec![slot(3), slot(4)]);
    let effects = step(&mut r, msg(2, accepted(ballot, 4, 4)));
    assert_eq!(effects, vec![slot(5)]);
    // Caught up: the chain ends.
    assert_eq!(step(&mut r, msg(2, accepted(ballot, 5, 5))), vec![]);
    // A window's last slot acknowledged by an acceptor that still lacks one below
    // it continues nothing: the next heartbeat finds the gap.
    assert_eq!(step(&mut r, msg(1, accepted(ballot, 4, 2))), vec![]);
}

// ---------------------------------------------------------------------------------------
// 6. Acceptor: Accept
// ---------------------------------------------------------------------------------------

#[test]
fn acceptor_persists_accept_before_replying_and_learns_commit() {
    let mut r = follower(1);
    let ballot = b(1, 0);
    let p1 = batch(&[req(7, 1, 5)]);
    let p2 = batch(&[req(7, 2, 6)]);
    let effects = step(&mut r, msg(0, accept(ballot, 1, p1.clone(), 0)));
    assert_eq!(
        effects,
        vec![
            Effect::Persist(DurableUpdate::Promise(ballot)),
            Effect::SetTimer(Timer::Election),
            persist_accept(1, ballot, p1),
            send(0, accepted(ballot, 1, 0)),
        ]
    );
    assert_eq!(r.known_leader(), Some(0));
    assert_eq!(r.durable().promised, ballot);
    assert_eq!(r.commit_index(), 0);

    // Same ballot: slot 1 was accepted at it, so the announced commit 1 is learned.
    let effects = step(&mut r, msg(0, accept(ballot, 2, p2.clone(), 1)));
    assert_eq!(
        effects,
        vec![
            Effect::SetTimer(Timer::Election),
            persist_accept(2, ballot, p2),
            Effect::Persist(DurableUpdate::Commit(1)),
            Effect::Applied { slot: 1 },
            send(0, accepted(ballot, 2, 1)),
        ]
    );
    assert_eq!(r.commit_index(), 1);
    assert_eq!(r.applied_index(), 1);
    assert_eq!(r.client_table().machine().value, Some(5));
}

#[test]
fn acceptor_learns_commit_only_for_slots_accepted_at_the_same_ballot() {
    let mut r = follower(1);
    let old = b(1, 2);
    let new = b(2, 0);
    let stale = batch(&[req(7, 1, 1)]);
    let pb = batch(&[req(9, 1, 4)]);
    let pc = batch(&[req(8, 1, 3)]);
    step(&mut r, msg(2, accept(old, 1, stale, 0)));

    // The new leader announces commit 2; slot 1 holds a vote from another ballot, so
    // nothing is learned.
    let effects = step(&mut r, msg(0, accept(new, 2, pb.clone(), 2)));
    assert_eq!(
        effects,
        vec![
            Effect::Persist(DurableUpdate::Promise(new)),
            Effect::SetTimer(Timer::Election),
            persist_accept(2, new, pb),
            send(0, accepted(new, 2, 0)),
        ]
    );
    assert_eq!(r.commit_index(), 0);
    assert_eq!(r.known_leader(), Some(0));

    // Catch-up of slot 1 at the new ballot: now 1..=2 are ours to commit.
    let effects = step(&mut r, msg(0, accept(new, 1, pc.clone(), 2)));
    assert_eq!(
        effects,
        vec![
            Effect::SetTimer(Timer::Election),
            persist_accept(1, new, pc),
            Effect::Persist(DurableUpdate::Commit(2)),
            Effect::Applied { slot: 1 },
            Effect::Applied { slot: 2 },
            send(0, accepted(new, 1, 2)),
        ]
    );
    assert_eq!(r.commit_index(), 2);
    assert_eq!(r.applied_index(), 2);
    let table = r.client_table();
    assert_eq!(table.machine().value, Some(4));
    assert_eq!(table.lookup(8, 1), Some(ApplyOutcome::Duplicate(None)));
    assert_eq!(table.lookup(9, 1), Some(ApplyOutcome::Duplicate(Some(3))));
    assert_eq!(table.lookup(7, 1), None, "the stale vote was never applied");
}

#[test]
fn acceptor_rejects_accept_below_promise_without_persisting() {
    let mut r = follower(1);
    step(&mut r, msg(0, prepare(b(2, 0), 1)));
    let before = r.clone();
    let effects = step(
        &mut r,
        msg(2, accept(b(1, 2), 1, batch(&[req(7, 1, 5)]), 0)),
    );
    assert_eq!(
        effects,
        vec![send(
            2,
            Message::Reject {
                ballot: b(1, 2),
                promised: b(2, 0),
            }
        )]
    );
    assert_eq!(r, before);
    assert!(r.durable().accepted.is_empty());
}

#[test]
fn acceptor_does_not_repersist_identical_accept() {
    let mut r = follower(1);
    let ballot = b(1, 0);
    let p = batch(&[req(7, 1, 5)]);
    step(&mut r, msg(0, accept(ballot, 1, p.clone(), 0)));
    let before = r.clone();
    let effects = step(&mut r, msg(0, accept(ballot, 1, p, 0)));
    assert_eq!(
        effects,
        vec![
            Effect::SetTimer(Timer::Election),
            send(0, accepted(ballot, 1, 0)),
        ]
    );
    assert_eq!(r, before);
}

#[test]
fn follower_follows_heartbeat_and_reports_lagging() {
    let mut r = follower(1);
    step(&mut r, msg(2, accept(b(1, 2), 1, Proposal::Noop, 0)));
    let ballot = b(2, 0);
    let effects = step(&mut r, msg(0, heartbeat(ballot, 1, 3)));
    assert_eq!(
        effects,
        vec![
            Effect::Persist(DurableUpdate::Promise(ballot)),
            Effect::SetTimer(Timer::Election),
            send(0, heartbeat_ack(ballot, 0, 3, true)),
        ]
    );
    assert_eq!(r.known_leader(), Some(0));
    assert_eq!(r.commit_index(), 0, "slot 1 was accepted at another ballot");

    // A repeated heartbeat only resets the timer and acks.
    let effects = step(&mut r, msg(0, heartbeat(ballot, 0, 3)));
    assert_eq!(
        effects,
        vec![
            Effect::SetTimer(Timer::Election),
            send(0, heartbeat_ack(ballot, 0, 3, false)),
        ]
    );
}

#[test]
fn leader_steps_down_on_heartbeat_from_higher_ballot() {
    let mut r = elect(follower(0));
    let effects = step(&mut r, msg(1, heartbeat(b(2, 1), 0, 0)));
    let mut expected = vec![Effect::Persist(DurableUpdate::Promise(b(2, 1)))];
    expected.extend(step_down_timers());
    expected.push(send(1, heartbeat_ack(b(2, 1), 0, 0, false)));
    assert_eq!(effects, expected);
    assert!(!r.is_leader());
    assert_eq!(r.known_leader(), Some(1));
}

// ---------------------------------------------------------------------------------------
// 7. Redirects
// ---------------------------------------------------------------------------------------

#[test]
fn follower_redirects_client_to_known_leader() {
    let mut r = follower(1);
    step(&mut r, msg(0, heartbeat(b(1, 0), 0, 0)));
    assert_eq!(r.known_leader(), Some(0));
    let before = r.clone();
    assert_eq!(
        step(&mut r, client_write(7, 1, 5)),
        vec![redirect(7, 1, Some(0))]
    );
    assert_eq!(
        step(&mut r, client_read(7, 2)),
        vec![redirect(7, 2, Some(0))]
    );
    assert_eq!(r, before);
}

#[test]
fn follower_without_known_leader_redirects_to_none() {
    let mut r = follower(1);
    assert_eq!(
        step(&mut r, client_write(7, 1, 5)),
        vec![redirect(7, 1, None)]
    );
    // A candidate knows no leader either.
    step(&mut r, timer(Timer::Election));
    let before = r.clone();
    assert_eq!(step(&mut r, client_read(7, 2)), vec![redirect(7, 2, None)]);
    assert_eq!(r, before);
}

// ---------------------------------------------------------------------------------------
// 8. Deduplication
// ---------------------------------------------------------------------------------------

#[test]
fn leader_answers_retried_write_from_client_table() {
    let mut r = elect(follower(0));
    commit_write(&mut r, req(7, 1, 5));
    // Another client overwrites the register, so re-applying (7, 1) would answer Some(6).
    commit_write(&mut r, req(8, 1, 6));
    let durable = r.durable().clone();

    let effects = step(&mut r, client_write(7, 1, 5));
    assert_eq!(effects, vec![written(7, 1, None)]);
    assert_eq!(r.durable(), &durable, "nothing persisted");
    assert_eq!(r.commit_index(), 2);
    assert_eq!(r.applied_index(), 2);
    assert_eq!(r.deduplicated_count(), 1);
    assert_eq!(r.client_table().machine().value, Some(6));
    match r.role() {
        Role::Leader(l) => {
            assert!(l.in_flight.is_empty());
            assert!(l.queue.is_empty());
        }
        other => panic!("not leading: {other:?}"),
    }
}

#[test]
fn leader_ignores_stale_write() {
    let mut r = elect(follower(0));
    commit_write(&mut r, req(7, 1, 5));
    commit_write(&mut r, req(7, 2, 6));
    let before = r.clone();
    let effects = step(&mut r, client_write(7, 1, 5));
    assert_eq!(effects, vec![]);
    assert_eq!(r, before);
}

#[test]
fn leader_does_not_repropose_retry_of_in_flight_write() {
    let mut r = elect(follower(0));
    step(&mut r, client_write(7, 1, 5));
    let before = r.clone();
    assert_eq!(step(&mut r, client_write(7, 1, 5)), vec![]);
    assert_eq!(r, before);
    let effects = step(&mut r, msg(1, accepted(b(1, 0), 1, 0)));
    assert_eq!(
        effects,
        vec![
            Effect::Persist(DurableUpdate::Commit(1)),
            written(7, 1, None),
            Effect::Applied { slot: 1 },
        ]
    );
}

// ---------------------------------------------------------------------------------------
// 9. Read-index
// ---------------------------------------------------------------------------------------

#[test]
fn leader_confirms_read_with_heartbeat_round_before_replying() {
    let mut r = elect(follower(0));
    let ballot = b(1, 0);
    commit_write(&mut r, req(7, 1, 5));

    let effects = step(&mut r, client_read(9, 1));
    assert_eq!(
        effects,
        vec![
            send_ahead(1, heartbeat(ballot, 1, 1)),
            send_ahead(2, heartbeat(ballot, 1, 1)),
        ]
    );
    // An ack of an older round does not confirm the read.
    let effects = step(&mut r, msg(2, heartbeat_ack(ballot, 1, 0, false)));
    assert_eq!(effects, vec![]);
    let effects = step(&mut r, msg(1, heartbeat_ack(ballot, 1, 1, false)));
    assert_eq!(effects, vec![read_ok(9, 1, Some(5))]);
    match r.role() {
        Role::Leader(l) => assert!(l.reads.is_empty()),
        other => panic!("not leading: {other:?}"),
    }
}

#[test]
fn read_waits_until_read_index_is_applied() {
    let mut r = elect(follower(0));
    let ballot = b(1, 0);
    step(&mut r, client_write(7, 1, 5));
    step(&mut r, client_read(9, 1));
    // Leadership confirmed, but slot 1 (proposed before the read) is not applied yet.
    let effects = step(&mut r, msg(2, heartbeat_ack(ballot, 0, 1, false)));
    assert_eq!(effects, vec![]);
    let effects = step(&mut r, msg(1, accepted(ballot, 1, 0)));
    assert_eq!(
        effects,
        vec![
            Effect::Persist(DurableUpdate::Commit(1)),
            written(7, 1, None),
            Effect::Applied { slot: 1 },
            read_ok(9, 1, Some(5)),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// 10. Check quorum
// ---------------------------------------------------------------------------------------

#[test]
fn leader_without_quorum_contact_steps_down_on_check_quorum() {
    let mut r = elect(follower(0));
    let effects = step(&mut r, timer(Timer::CheckQuorum));
    assert_eq!(effects, step_down_timers());
    assert!(!r.is_leader());
    assert_eq!(r.known_leader(), None);
    assert_eq!(r.leader_ballot(), None);
    assert_eq!(r.durable().promised, b(1, 0));
}

#[test]
fn leader_with_majority_contact_stays_on_check_quorum() {
    let mut r = elect(follower(0));
    let ballot = b(1, 0);
    assert_eq!(
        step(&mut r, msg(1, heartbeat_ack(ballot, 0, 0, false))),
        vec![]
    );
    let effects = step(&mut r, timer(Timer::CheckQuorum));
    assert_eq!(effects, vec![Effect::SetTimer(Timer::CheckQuorum)]);
    assert!(r.is_leader());
    assert_eq!(r.leader_ballot(), Some(ballot));
    // Contact is counted per period: silence during the next one means stepping down.
    let effects = step(&mut r, timer(Timer::CheckQuorum));
    assert_eq!(effects, step_down_timers());
    assert!(!r.is_leader());
}

// ---------------------------------------------------------------------------------------
// 11. Reject
// ---------------------------------------------------------------------------------------

#[test]
fn candidate_steps_down_on_reject_with_higher_promise() {
    let mut r = follower(0);
    step(&mut r, timer(Timer::Election));
    let effects = step(
        &mut r,
        msg(
            1,
            Message::Reject {
                ballot: b(1, 0),
                promised: b(3, 2),
            },
        ),
    );
    assert_eq!(
        effects,
        failed_candidacy_timers(),
        "a candidate has no leader timers to cancel; it re-arms its election timer"
    );
    assert!(!r.is_leader());
    assert_eq!(r.role(), &Role::Follower { leader: None });
    // The next candidacy runs above the promise it learned of.
    let effects = step(&mut r, timer(Timer::Election));
    assert_eq!(effects, election_effects(b(4, 0), 1));
}

#[test]
fn leader_steps_down_on_reject_with_higher_promise() {
    let mut r = elect(follower(0));
    let effects = step(
        &mut r,
        msg(
            2,
            Message::Reject {
                ballot: b(1, 0),
                promised: b(2, 1),
            },
        ),
    );
    assert_eq!(effects, step_down_timers());
    assert!(!r.is_leader());
    assert_eq!(r.known_leader(), None);
    assert_eq!(r.leader_ballot(), None);
}

#[test]
fn reject_for_an_older_ballot_is_ignored() {
    let mut r = follower(0);
    second_candidacy(&mut r);
    let r = elect(r);
    assert_eq!(r.leader_ballot(), Some(b(2, 0)));
    let mut r = r;
    let before = r.clone();
    let effects = step(
        &mut r,
        msg(
            1,
            Message::Reject {
                ballot: b(1, 0),
                promised: b(1, 2),
            },
        ),
    );
    assert_eq!(effects, vec![]);
    assert_eq!(r, before);
    assert!(r.is_leader());
}

// ---------------------------------------------------------------------------------------
// 12. Invalid input
// ---------------------------------------------------------------------------------------

#[test]
fn invalid_input_returns_error_and_leaves_state_unchanged() {
    // A candidate at 6.0 that has seen ballot 5.2: every invalid message below carries a
    // ballot no higher than what it has seen.
    let mut r = follower(0);
    step(&mut r, msg(2, prepare(b(5, 2), 1)));
    step(&mut r, timer(Timer::Election));
    assert!(matches!(r.role(), Role::Candidate(c) if c.ballot == b(6, 0)));

    let cases: Vec<(NodeId, Msg, StepError)> = vec![
        (
            NODE_IDS_MAX,
            heartbeat(b(9, 3), 0, 0),
            StepError::UnknownPeer {
                from: NODE_IDS_MAX,
                ids_max: NODE_IDS_MAX,
                me: 0,
            },
        ),
        (
            0,
            Message::Promise {
                ballot: b(6, 0),
                accepted: vec![],
                snapshot: None,
            },
            StepError::UnknownPeer {
                from: 0,
                ids_max: NODE_IDS_MAX,
                me: 0,
            },
        ),
        (
            1,
            prepare(b(4, 2), 1),
            StepError::BallotNotSender {
                kind: "Prepare",
                from: 1,
                ballot: b(4, 2),
            },
        ),
        (
            1,
            prepare(Ballot::ZERO, 1),
            StepError::BallotNotSender {
                kind: "Prepare",
                from: 1,
                ballot: Ballot::ZERO,
            },
        ),
        (
            2,
            heartbeat(b(3, 1), 0, 0),
            StepError::BallotNotSender {
                kind: "Heartbeat",
                from: 2,
                ballot: b(3, 1),
            },
        ),
        (
            1,
            accept(b(5, 1), 0, Proposal::Noop, 0),
            StepError::SlotZero {
                kind: "Accept",
                from: 1,
            },
        ),
        (
            2,
            Message::Promise {
                ballot: b(3, 1),
                accepted: vec![],
                snapshot: None,
            },
            StepError::NotOurBallot {
                kind: "Promise",
                from: 2,
                ballot: b(3, 1),
            },
        ),
        (
            1,
            Message::Promise {
                ballot: Ballot::ZERO,
                accepted: vec![],
                snapshot: None,
            },
            StepError::NotOurBallot {
                kind: "Promise",
                from: 1,
                ballot: Ballot::ZERO,
            },
        ),
        (
            1,
            accepted(b(2, 1), 1, 0),
            StepError::NotOurBallot {
                kind: "Accepted",
                from: 1,
                ballot: b(2, 1),
            },
        ),
        (
            2,
            Message::Reject {
                ballot: b(4, 2),
                promised: b(9, 1),
            },
            StepError::NotOurBallot {
                kind: "Reject",
                from: 2,
                ballot: b(4, 2),
            },
        ),
    ];
    for (from, message, expected) in cases {
        let before = r.clone();
        let (result, effects) = try_step(&mut r, msg(from, message.clone()));
        assert_eq!(result, Err(expected), "from {from}: {message:?}");
        assert_eq!(effects, vec![], "from {from}: {message:?}");
        assert_eq!(r, before, "from {from}: {message:?} changed the state");
    }
}

#[test]
fn invalid_message_with_higher_ballot_leaves_state_unchanged() {
    let mut r = follower(0);
    let before = r.clone();
    let (result, effects) = try_step(&mut r, msg(1, prepare(b(9, 2), 1)));
    assert_eq!(
        result,
        Err(StepError::BallotNotSender {
            kind: "Prepare",
            from: 1,
            ballot: b(9, 2),
        })
    );
    assert_eq!(effects, vec![]);
    assert_eq!(r, before, "a refused message must not change the state");
    // Consequence: the next candidacy must not be pushed up by the refused ballot.
    let effects = step(&mut r, timer(Timer::Election));
    assert_eq!(effects, election_effects(b(1, 0), 1));
}

#[test]
fn election_after_max_round_ballot_neither_panics_nor_lowers_promise() {
    let mut r = follower(0);
    let top = b(u32::MAX, 1);
    step(&mut r, msg(1, prepare(top, 1)));
    assert_eq!(r.durable().promised, top);
    let effects = step(&mut r, timer(Timer::Election));
    assert!(
        r.durable().promised >= top,
        "promise lowered to {} by {effects:?}",
        r.durable().promised
    );
}

// ---------------------------------------------------------------------------------------
// 13. Obsolete messages
// ---------------------------------------------------------------------------------------

#[test]
fn is_obsolete_tracks_the_running_ballot() {
    let promise = |ballot| Message::Promise {
        ballot,
        accepted: vec![],
        snapshot: None,
    };
    let reject = |ballot| Message::Reject {
        ballot,
        promised: b(9, 1),
    };

    let mut r = follower(0);
    second_candidacy(&mut r);
    let mut r = elect(r); // candidacy 1.0 abandoned, leads 2.0
    let current = b(2, 0);
    let older = b(1, 0);
    assert_eq!(r.leader_ballot(), Some(current));

    // A candidate at 1.0.
    let mut candidate = follower(0);
    step(&mut candidate, timer(Timer::Election));
    assert!(!candidate.is_obsolete(&promise(b(1, 0))));
    assert!(candidate.is_obsolete(&accepted(b(1, 0), 1, 0)));
    assert!(!candidate.is_obsolete(&reject(b(1, 0))));

    // The leader.
    assert!(r.is_obsolete(&promise(current)), "the candidacy succeeded");
    assert!(r.is_obsolete(&promise(older)));
    assert!(!r.is_obsolete(&accepted(current, 1, 0)));
    assert!(!r.is_obsolete(&heartbeat_ack(current, 0, 0, false)));
    assert!(r.is_obsolete(&accepted(older, 1, 0)));
    assert!(r.is_obsolete(&heartbeat_ack(older, 0, 0, false)));
    assert!(!r.is_obsolete(&reject(current)));
    assert!(r.is_obsolete(&reject(older)));
    // Requests from others always deserve an answer.
    assert!(!r.is_obsolete(&prepare(b(1, 1), 1)));
    assert!(!r.is_obsolete(&accept(b(1, 1), 1, Proposal::Noop, 0)));
    assert!(!r.is_obsolete(&heartbeat(b(1, 1), 0, 0)));

    // After stepping down nothing answers a running ballot.
    step(&mut r, timer(Timer::CheckQuorum));
    assert!(r.is_obsolete(&accepted(current, 1, 0)));
    assert!(r.is_obsolete(&heartbeat_ack(current, 0, 0, false)));
    assert!(r.is_obsolete(&reject(current)));
}

#[test]
fn follower_forgets_old_leader_when_promising_a_newer_ballot() {
    let mut r = follower(0);
    step(&mut r, msg(1, heartbeat(b(1, 1), 0, 0)));
    assert_eq!(r.known_leader(), Some(1));
    // The leader's own higher ballot (it restarted, or re-ran).
    step(&mut r, msg(1, prepare(b(2, 1), 1)));
    assert_eq!(
        r.known_leader(),
        None,
        "clients must not be redirected to a leader being replaced"
    );
}

#[test]
fn accept_or_promise_naming_an_absurd_slot_is_refused() {
    let mut r = follower(0);
    let before = r.clone();
    let (result, effects) = try_step(
        &mut r,
        msg(
            1,
            Message::Accept {
                ballot: b(1, 1),
                slot: u64::MAX,
                proposal: Proposal::Noop,
                commit: 0,
            },
        ),
    );
    assert!(
        matches!(
            result,
            Err(StepError::SlotOutOfRange { slot: u64::MAX, .. })
        ),
        "{result:?}"
    );
    assert_eq!(effects, vec![]);
    assert_eq!(r, before);

    step(&mut r, timer(Timer::Election));
    let ballot = r.durable().promised;
    let before = r.clone();
    let entry = AcceptedEntry {
        ballot: b(1, 1),
        proposal: Proposal::Noop,
    };
    let (result, effects) = try_step(
        &mut r,
        msg(
            1,
            Message::Promise {
                ballot,
                accepted: vec![(u64::MAX, entry)],
                snapshot: None,
            },
        ),
    );
    assert!(
        matches!(result, Err(StepError::SlotOutOfRange { .. })),
        "{result:?}"
    );
    assert_eq!(effects, vec![]);
    assert_eq!(r, before, "a refused promise must not make us leader");
}

#[test]
fn absurd_commit_in_heartbeat_ack_sends_nothing() {
    let mut r = elect(follower(0));
    let ballot = r.leader_ballot().unwrap();
    let effects = step(&mut r, msg(1, heartbeat_ack(ballot, u64::MAX, 0, true)));
    assert_eq!(
        effects,
        vec![],
        "a follower claiming to be ahead needs no catch-up"
    );
    assert!(r.is_leader());
}

#[test]
fn reject_about_an_old_ballot_teaches_nothing() {
    let mut r = follower(0);
    second_candidacy(&mut r); // candidate 1.0 outbid by 1.2, now candidate 2.0
    let before = r.clone();
    let effects = step(
        &mut r,
        msg(
            1,
            Message::Reject {
                ballot: b(1, 0),
                promised: b(u32::MAX, 2),
            },
        ),
    );
    assert_eq!(effects, vec![]);
    assert_eq!(r, before);
    // The candidacy is not pushed to the end of the ballot space: it asks again at 2.0.
    step(&mut r, timer(Timer::Election));
    assert_eq!(r.durable().promised, b(2, 0));
}

// ---------------------------------------------------------------------------------------
// 14. Leadership transfer
// ---------------------------------------------------------------------------------------

fn transfer(to: Option<NodeId>) -> Input<Register> {
    Input::TransferLeadership { to }
}

#[test]
fn a_leader_hands_over_redirects_what_it_queued_and_steps_down() {
    let config = cluster(3).with_pipeline_depth(1);
    let mut r = elect(recover_with(0, config, DurableState::default()));
    let ballot = r.leader_ballot().unwrap();
    // The pipeline (1 slot) fills; the second write waits in the queue.
    step(&mut r, client_write(10, 1, 1));
    step(&mut r, client_write(12, 1, 3));
    let effects = step(&mut r, transfer(Some(2)));
    let handover = |to| send(to, Message::TransferLeadership { ballot, to: 2 });
    let mut expected = vec![redirect(12, 1, Some(2)), handover(1), handover(2)];
    expected.extend(step_down_timers());
    expected.push(Effect::LeadershipTransfer(TransferOutcome::HandedOver {
        to: 2,
    }));
    assert_eq!(effects, expected);
    assert!(!r.is_leader());
    assert_eq!(r.backing(), Some(2));
    assert_eq!(
        r.leader_hint(),
        Some(2),
        "clients are sent to the successor"
    );
    // The successor's higher ballot is promised, not refused out of loyalty.
    let effects = step(&mut r, msg(2, prepare(b(ballot.round + 1, 2), 1)));
    assert!(effects.contains(&Effect::Persist(DurableUpdate::Promise(b(
        ballot.round + 1,
        2
    )))));
}

#[test]
fn a_leader_chooses_a_peer_it_heard_from_when_none_is_named() {
    let mut r = elect(follower(0));
    let ballot = r.leader_ballot().unwrap();
    step(&mut r, msg(2, heartbeat_ack(ballot, 0, 0, false)));
    let effects = step(&mut r, transfer(None));
    assert_eq!(
        effects.last(),
        Some(&Effect::LeadershipTransfer(TransferOutcome::HandedOver {
            to: 2
        }))
    );
}

#[test]
fn a_transfer_is_refused_by_a_follower_and_for_a_non_peer() {
    let mut r = follower(1);
    step(&mut r, msg(0, heartbeat(b(1, 0), 0, 0)));
    let before = r.clone();
    let effects = step(&mut r, transfer(Some(2)));
    assert_eq!(
        effects,
        vec![Effect::LeadershipTransfer(TransferOutcome::Refused(
            TransferRefusal::NotLeader { leader: Some(0) }
        ))]
    );
    assert_eq!(r, before);

    let mut r = elect(follower(0));
    let before = r.clone();
    for to in [0, 3] {
        let effects = step(&mut r, transfer(Some(to)));
        assert_eq!(
            effects,
            vec![Effect::LeadershipTransfer(TransferOutcome::Refused(
                TransferRefusal::NotAPeer { to }
            ))]
        );
        assert_eq!(r, before, "a refused transfer changes nothing");
    }
}

#[test]
fn the_successor_campaigns_at_once_and_the_others_back_it() {
    let mut successor = follower(2);
    step(&mut successor, msg(0, heartbeat(b(1, 0), 0, 0)));
    let effects = step(
        &mut successor,
        msg(
            0,
            Message::TransferLeadership {
                ballot: b(1, 0),
                to: 2,
            },
        ),
    );
    assert_eq!(effects[0], Effect::Persist(DurableUpdate::Promise(b(2, 2))));
    assert!(matches!(successor.role(), Role::Candidate(_)));

    let mut other = follower(1);
    step(&mut other, msg(0, heartbeat(b(1, 0), 0, 0)));
    let effects = step(
        &mut other,
        msg(
            0,
            Message::TransferLeadership {
                ballot: b(1, 0),
                to: 2,
            },
        ),
    );
    assert_eq!(effects, vec![Effect::SetTimer(Timer::Election)]);
    assert_eq!(other.backing(), Some(2));
    let effects = step(&mut other, msg(2, prepare(b(2, 2), 1)));
    assert!(effects.contains(&Effect::Persist(DurableUpdate::Promise(b(2, 2)))));
}

#[test]
fn a_stale_or_malformed_transfer_changes_nothing() {
    let mut r = follower(1);
    step(&mut r, msg(2, prepare(b(3, 2), 1)));
    let before = r.clone();
    let effects = step(
        &mut r,
        msg(
            0,
            Message::TransferLeadership {
                ballot: b(1, 0),
                to: 1,
            },
        ),
    );
    assert_eq!(effects, vec![], "a newer ballot was promised since");
    assert_eq!(r, before);
    for (from, ballot, to) in [(0, b(4, 2), 1), (0, b(4, 0), 0), (0, b(4, 0), 9)] {
        let (result, effects) = try_step(
            &mut r,
            msg(from, Message::TransferLeadership { ballot, to }),
        );
        assert!(result.is_err(), "{ballot} to {to} accepted");
        assert_eq!(effects, vec![]);
        assert_eq!(r, before);
    }
}

// ---------------------------------------------------------------------------------------
// Learners: members that receive the log but never vote
// ---------------------------------------------------------------------------------------

/// Three voters (0, 1, 2) and a learner (3).
fn with_learner() -> ClusterConfig {
    cluster(4).with_learners([3])
}

#[test]
fn a_learner_never_campaigns_nor_promises() {
    let (mut r, effects) = Replica::recover(
        3,
        with_learner(),
        Register::default(),
        DurableState::default(),
    );
    assert_eq!(effects, vec![], "a learner arms no election timer");
    assert!(!r.is_voter());
    assert_eq!(step(&mut r, timer(Timer::Election)), vec![]);
    assert!(matches!(r.role(), Role::Follower { .. }));
    let before = r.clone();
    assert_eq!(step(&mut r, msg(0, prepare(b(1, 0), 1))), vec![]);
    assert_eq!(r.durable(), before.durable(), "a learner promises nothing");
    assert_eq!(r.role(), before.role());
    // It does learn the log: an accept is stored and acknowledged, and a heartbeat
    // commits it; following a leader arms no timer either.
    let proposal = batch(&[req(7, 1, 5)]);
    let effects = step(&mut r, msg(0, accept(b(1, 0), 1, proposal.clone(), 0)));
    assert_eq!(
        effects,
        vec![
            Effect::Persist(DurableUpdate::Promise(b(1, 0))),
            persist_accept(1, b(1, 0), proposal),
            send(0, accepted(b(1, 0), 1, 0)),
        ]
    );
    step(&mut r, msg(0, heartbeat(b(1, 0), 1, 0)));
    assert_eq!((r.commit_index(), r.applied_index()), (1, 1));
}

#[test]
fn a_candidate_asks_voters_only_and_a_learner_transfer_is_refused() {
    let mut r = recover_with(0, with_learner(), DurableState::default());
    let effects = step(&mut r, timer(Timer::Election));
    assert_eq!(
        effects,
        election_effects(b(1, 0), 1),
        "no Prepare to the learner"
    );
    let promise = Message::Promise {
        ballot: b(1, 0),
        accepted: vec![],
        snapshot: None,
    };
    assert_eq!(step(&mut r, msg(3, promise.clone())), vec![], "not counted");
    assert!(!r.is_leader());
    assert_eq!(step(&mut r, msg(1, promise)), leadership_timers());
    let effects = step(&mut r, Input::TransferLeadership { to: Some(3) });
    assert_eq!(
        effects,
        vec![Effect::LeadershipTransfer(TransferOutcome::Refused(
            TransferRefusal::NotAPeer { to: 3 }
        ))]
    );
    let (result, _) = try_step(
        &mut follower_of_four(1),
        msg(
            0,
            Message::TransferLeadership {
                ballot: b(1, 0),
                to: 3,
            },
        ),
    );
    assert!(result.is_err(), "a transfer to a learner is refused");
}

fn follower_of_four(id: NodeId) -> R {
    recover_with(id, with_learner(), DurableState::default())
}

#[test]
fn a_learners_acknowledgement_chooses_nothing() {
    let mut r = leader_with_learner();
    let effects = step(&mut r, client_write(7, 1, 5));
    assert!(
        effects.contains(&send(3, accept(b(1, 0), 1, batch(&[req(7, 1, 5)]), 0))),
        "the learner receives the log: {effects:?}"
    );
    assert_eq!(step(&mut r, msg(3, accepted(b(1, 0), 1, 0))), vec![]);
    assert_eq!(
        r.commit_index(),
        0,
        "leader and learner are no majority of 3 voters"
    );
    // A heartbeat re-sends the accept to the voters that have not acknowledged, not to
    // the learner that has.
    let effects = step(&mut r, timer(Timer::Heartbeat));
    let accepts_to: Vec<NodeId> = effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Send {
                to,
                message: Message::Accept { .. },
            } => Some(*to),
            _ => None,
        })
        .collect();
    assert_eq!(accepts_to, vec![1, 2]);
    step(&mut r, msg(2, accepted(b(1, 0), 1, 0)));
    assert_eq!(r.commit_index(), 1, "with a second voter it is chosen");
}

/// Node 0 leading a cluster of three voters and a learner (3), at ballot 1.0.
fn leader_with_learner() -> R {
    elect(recover_with(0, with_learner(), DurableState::default()))
}

#[test]
fn a_learners_heartbeat_acknowledgement_confirms_no_read() {
    let mut r = leader_with_learner();
    step(&mut r, client_read(7, 1));
    assert_eq!(
        step(&mut r, msg(3, heartbeat_ack(b(1, 0), 0, 1, false))),
        vec![],
        "leader and learner are no majority of the voters"
    );
    assert_eq!(
        step(&mut r, msg(2, heartbeat_ack(b(1, 0), 0, 1, false))),
        vec![read_ok(7, 1, None)]
    );
}

#[test]
fn a_leader_that_hears_only_from_its_learner_steps_down() {
    let mut r = leader_with_learner();
    step(&mut r, msg(3, heartbeat_ack(b(1, 0), 0, 0, false)));
    assert_eq!(step(&mut r, timer(Timer::CheckQuorum)), step_down_timers());
    assert!(!r.is_leader());
    let mut r = leader_with_learner();
    step(&mut r, msg(2, heartbeat_ack(b(1, 0), 0, 0, false)));
    assert_eq!(
        step(&mut r, timer(Timer::CheckQuorum)),
        vec![Effect::SetTimer(Timer::CheckQuorum)]
    );
    assert!(r.is_leader());
}

// ---------------------------------------------------------------------------------------
// Membership change: reconfiguration entries end an epoch
// ---------------------------------------------------------------------------------------

fn reconfigure(change: MemberChange) -> Input<Register> {
    Input::Reconfigure(change)
}

fn refused(refusal: ReconfigureRefusal) -> Vec<E> {
    vec![Effect::Reconfiguration(ReconfigureOutcome::Refused(
        refusal,
    ))]
}

/// The entry that moves learner 3 into the voters.
fn promote_3() -> Proposal<u8> {
    Proposal::Reconfigure {
        from_epoch: 0,
        voters: [0, 1, 2, 3].into(),
        learners: [].into(),
        joining: None,
    }
}

#[test]
fn a_change_is_refused_with_its_reason_and_changes_nothing() {
    let mut follower = recover_with(1, with_learner(), DurableState::default());
    let before = follower.clone();
    assert_eq!(
        step(&mut follower, reconfigure(MemberChange::Promote(3))),
        refused(ReconfigureRefusal::NotLeader { leader: None })
    );
    assert_eq!(follower, before);
    let mut r = leader_with_learner();
    let before = r.clone();
    for (change, refusal) in [
        (
            MemberChange::Promote(2),
            ReconfigureRefusal::NotALearner { id: 2 },
        ),
        (
            MemberChange::AddLearner(3),
            ReconfigureRefusal::AlreadyMember { id: 3 },
        ),
        (
            MemberChange::AddLearner(4),
            ReconfigureRefusal::UnknownNode { id: 4, id_count: 4 },
        ),
        (
            MemberChange::AddAt(MemberAddress::new("p".repeat(256), "c")),
            ReconfigureRefusal::AddressTooLong {
                bytes: 256,
                bytes_max: MEMBER_ADDRESS_BYTES_MAX,
            },
        ),
        (
            MemberChange::Remove(9),
            ReconfigureRefusal::NotAMember { id: 9 },
        ),
        (
            MemberChange::Replace {
                remove: 3,
                promote: 3,
            },
            ReconfigureRefusal::NotAVoter { id: 3 },
        ),
    ] {
        assert_eq!(
            step(&mut r, reconfigure(change.clone())),
            refused(refusal),
            "{change:?}"
        );
        assert_eq!(r, before, "{change:?} changed something");
    }
    let mut lone = recover_with(0, cluster(1), DurableState::default());
    step(&mut lone, timer(Timer::Election));
    assert!(lone.is_leader(), "a cluster of one elects itself");
    assert_eq!(
        step(&mut lone, reconfigure(MemberChange::Remove(0))),
        refused(ReconfigureRefusal::LastVoter)
    );
}

#[test]
fn a_promotion_waits_until_the_learner_reports_that_it_has_caught_up() {
    let config = with_learner().with_promote_lag_max(1);
    let mut r = elect(recover_with(0, config, DurableState::default()));
    let ballot = b(1, 0);
    for seq in 1..=3 {
        commit_write(&mut r, req(7, seq, seq as u8));
    }
    let before = r.clone();
    let lagging = |reported| {
        refused(ReconfigureRefusal::Lagging {
            id: 3,
            reported,
            commit: 3,
            lag_max: 1,
        })
    };
    // Not heard from at this ballot: it may be down, or far behind.
    for change in [
        MemberChange::Promote(3),
        MemberChange::Replace {
            remove: 2,
            promote: 3,
        },
    ] {
        assert_eq!(step(&mut r, reconfigure(change)), lagging(None));
        assert_eq!(r, before, "a refusal changes nothing");
    }
    // Two slots behind, then one: the first is refused, saying by how much.
    step(&mut r, msg(3, heartbeat_ack(ballot, 1, 0, true)));
    assert_eq!(
        step(&mut r, reconfigure(MemberChange::Promote(3))),
        lagging(Some(1))
    );
    // An older report arriving late does not take the progress back.
    step(&mut r, msg(3, accepted(ballot, 2, 2)));
    step(&mut r, msg(3, heartbeat_ack(ballot, 1, 0, true)));
    let effects = step(&mut r, reconfigure(MemberChange::Promote(3)));
    assert!(
        matches!(
            effects.last(),
            Some(Effect::Reconfiguration(ReconfigureOutcome::Proposed {
                slot: 4,
                epoch: 1,
                ..
            }))
        ),
        "{effects:?}"
    );
}

#[test]
fn a_leader_proposes_nothing_above_its_change_and_runs_again_in_the_next_epoch() {
    let mut r = leader_with_learner();
    let effects = step(&mut r, reconfigure(MemberChange::Promote(3)));
    let mut expected = vec![persist_accept(1, b(1, 0), promote_3())];
    for peer in [1, 2, 3] {
        expected.push(send(peer, accept(b(1, 0), 1, promote_3(), 0)));
    }
    expected.push(Effect::Reconfiguration(ReconfigureOutcome::Proposed {
        slot: 1,
        epoch: 1,
        members: Membership {
            epoch: 1,
            start: 2,
            voters: [0, 1, 2, 3].into(),
            ..Membership::default()
        },
    }));
    assert_eq!(effects, expected);
    assert_eq!(
        step(&mut r, reconfigure(MemberChange::Remove(3))),
        refused(ReconfigureRefusal::ChangeInProgress { slot: 1 }),
        "one change at a time"
    );
    // A write waits: slot 2 belongs to the next epoch.
    let effects = step(&mut r, client_write(7, 1, 5));
    assert_eq!(effects, vec![], "nothing proposed above the change");
    // Chosen: the leader executes it, redirects the queued write to itself, steps
    // down and runs at once in epoch 1, asking the new voters (node 3 included).
    let effects = step(&mut r, msg(1, accepted(b(1, 0), 1, 0)));
    let ballot = Ballot::in_epoch(1, 1, 0);
    assert_eq!(
        effects,
        vec![
            Effect::Persist(DurableUpdate::Commit(1)),
            Effect::Applied { slot: 1 },
            redirect(7, 1, Some(0)),
            Effect::CancelTimer(Timer::Heartbeat),
            Effect::CancelTimer(Timer::CheckQuorum),
            Effect::SetTimer(Timer::Election),
            Effect::Persist(DurableUpdate::Promise(ballot)),
            Effect::Campaigning { ballot },
            send(1, prepare(ballot, 2)),
            send(2, prepare(ballot, 2)),
            send(3, prepare(ballot, 2)),
            Effect::SetTimer(Timer::CandidacyRetry),
        ]
    );
    let members = r.membership();
    assert_eq!((members.epoch, members.start, members.quorum()), (1, 2, 3));
    assert!(
        !r.is_serving(7, 1),
        "the redirected write is no longer held here"
    );
}

#[test]
fn a_machine_added_at_an_address_takes_the_next_id_and_its_address_enters_the_log() {
    let mut r = elect(follower(0));
    let at = MemberAddress::new("10.0.0.9:7100", "10.0.0.9:6379");
    let entry = Proposal::Reconfigure {
        from_epoch: 0,
        voters: [0, 1, 2].into(),
        learners: [3].into(),
        joining: Some(at.clone()),
    };
    let effects = step(&mut r, reconfigure(MemberChange::AddAt(at.clone())));
    assert_eq!(effects[0], persist_accept(1, b(1, 0), entry.clone()));
    // Executed: id 3, past the bootstrap address book of three, is a learner at that
    // address, and the leader sends it the log from then on.
    step(&mut r, msg(1, accepted(b(1, 0), 1, 0)));
    let members = r.membership().clone();
    assert_eq!(members.learners, [3].into());
    assert_eq!(
        (members.id_count(3), members.added_address(3, 3)),
        (4, Some(&at))
    );
    assert_eq!(
        members.added_address(2, 3),
        None,
        "bootstrap ids are the book's"
    );
    // The next machine gets the next id, even at an address reused after a removal.
    let mut r = elect(r);
    let again = MemberAddress::new("10.0.0.8:7100", at.client.clone());
    assert_eq!(
        step(&mut r, reconfigure(MemberChange::AddAt(again))),
        refused(ReconfigureRefusal::AddressInUse { id: 3 }),
        "one machine, one id"
    );
    step(&mut r, reconfigure(MemberChange::Remove(3)));
    let ballot = r.durable().promised;
    step(&mut r, msg(1, accepted(ballot, 2, 1)));
    assert!(r.membership().retired.contains(&3));
    let mut r = elect(r);
    let ballot = r.durable().promised;
    step(&mut r, reconfigure(MemberChange::AddAt(at.clone())));
    step(&mut r, msg(1, accepted(ballot, 3, 2)));
    let members = r.membership();
    assert_eq!(members.learners, [4].into(), "{members}");
    assert_eq!(members.added, vec![at.clone(), at], "ids are never reused");
}

#[test]
fn a_follower_takes_the_log_from_a_leader_it_has_not_heard_of_yet() {
    // Node 1 missed the change that added node 3, which leads now: its messages are
    // what bring node 1 the entries that name it.
    let mut r = follower(1);
    let from_new_leader = step(&mut r, msg(3, heartbeat(b(1, 3), 0, 0)));
    assert!(
        from_new_leader
            .iter()
            .any(|e| matches!(e, Effect::Send { to: 3, .. })),
        "{from_new_leader:?}"
    );
}

#[test]
fn a_removed_leader_steps_down_for_good() {
    let mut r = elect(follower(0));
    let removal = Proposal::Reconfigure {
        from_epoch: 0,
        voters: [1, 2].into(),
        learners: [].into(),
        joining: None,
    };
    step(&mut r, reconfigure(MemberChange::Remove(0)));
    let effects = step(&mut r, msg(1, accepted(b(1, 0), 1, 0)));
    assert_eq!(
        effects,
        vec![
            Effect::Persist(DurableUpdate::Commit(1)),
            Effect::Applied { slot: 1 },
            Effect::CancelTimer(Timer::Heartbeat),
            Effect::CancelTimer(Timer::CheckQuorum),
            Effect::CancelTimer(Timer::Election),
        ],
        "no election timer: a removed node never campaigns"
    );
    assert!(!r.is_member() && !r.is_leader());
    assert!(r.membership().retired.contains(&0));
    assert_eq!(r.committed_log().last(), Some((1, &removal)));
    assert_eq!(step(&mut r, timer(Timer::Election)), vec![]);
}

#[test]
fn a_node_of_the_next_epoch_ignores_the_old_one_and_promises_only_its_votes() {
    // Node 1 votes for a write at slot 2 in epoch 0 (a deposed leader's, above the
    // change at slot 1), then executes the change.
    let mut r = follower(1);
    let change = Proposal::Reconfigure {
        from_epoch: 0,
        voters: [0, 1, 2].into(),
        learners: [].into(),
        joining: None,
    };
    step(&mut r, msg(0, accept(b(1, 0), 1, change, 0)));
    step(
        &mut r,
        msg(0, accept(b(1, 0), 2, batch(&[req(7, 1, 5)]), 0)),
    );
    step(&mut r, msg(0, heartbeat(b(1, 0), 1, 0)));
    assert_eq!(r.membership().epoch, 1);
    // Messages of epoch 0 are ignored. A candidate's is not obsolete: had its sender
    // been retired by the time it arrives, it would be told so.
    let stale = prepare(b(5, 2), 1);
    assert!(!r.is_obsolete(&stale));
    let before = r.clone();
    assert_eq!(step(&mut r, msg(2, stale)), vec![]);
    assert_eq!(r, before);
    // A candidate of epoch 1 (the leader it backs, running again) hears of no vote
    // of epoch 0: that one is void.
    let ballot = Ballot::in_epoch(1, 1, 0);
    assert_eq!(
        step(&mut r, msg(0, prepare(ballot, 2))),
        vec![
            Effect::Persist(DurableUpdate::Promise(ballot)),
            Effect::SetTimer(Timer::Election),
            send(
                0,
                Message::Promise {
                    ballot,
                    accepted: vec![],
                    snapshot: None
                }
            ),
        ]
    );
}

#[test]
fn a_node_removed_while_cut_off_is_told_and_stops_campaigning() {
    // Node 1 executes the change that removes node 2, which is cut off and hears of
    // none of it.
    let mut member = follower(1);
    let removal = Proposal::Reconfigure {
        from_epoch: 0,
        voters: [0, 1].into(),
        learners: [].into(),
        joining: None,
    };
    step(&mut member, msg(0, accept(b(1, 0), 1, removal, 0)));
    step(&mut member, msg(0, heartbeat(b(1, 0), 1, 0)));
    assert_eq!(member.membership().epoch, 1);
    assert!(member.membership().retired.contains(&2));
    // Node 2 campaigns in epoch 0, where no one listens any more.
    let mut removed = follower(2);
    let campaign = step(&mut removed, timer(Timer::Election));
    let prepare = campaign
        .iter()
        .find_map(|e| match e {
            Effect::Send { to: 1, message } => Some(message.clone()),
            _ => None,
        })
        .expect("a candidate asks node 1");
    let ballot = prepare.ballot();
    assert_eq!(ballot.epoch, 0);
    // The member of epoch 1 answers that node, and only it, with the news.
    let told = Message::Removed { ballot, epoch: 1 };
    assert_eq!(
        step(&mut member, msg(2, prepare.clone())),
        vec![send(2, told.clone())]
    );
    let from_a_member = Message::Prepare {
        ballot: b(9, 0),
        from_slot: 1,
    };
    assert_eq!(
        step(&mut member, msg(0, from_a_member)),
        vec![],
        "a member's old-epoch message is ignored as before"
    );
    // Told, node 2 stops running, disarms its timer, says so, and never campaigns.
    assert!(!removed.is_obsolete(&told));
    assert_eq!(
        step(&mut removed, msg(1, told.clone())),
        vec![
            Effect::CancelTimer(Timer::CandidacyRetry),
            Effect::CancelTimer(Timer::Election),
            Effect::Removed { epoch: 1, by: 1 },
        ]
    );
    assert_eq!(removed.told_removed(), Some(1));
    assert!(!removed.is_leader() && !removed.election_timeout_starts_ballot());
    assert_eq!(step(&mut removed, timer(Timer::Election)), vec![]);
    assert!(removed.is_obsolete(&told), "told once is enough");
    assert_eq!(step(&mut removed, msg(0, told)), vec![]);
}
