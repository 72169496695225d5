//! Named invariants of the protocol, as plain functions over replicas.
//!
//! The same functions serve three callers: the model checker's properties (on every
//! explored state), the node runtime's `debug_assert!`s (on its live state), and the
//! trace conformance checker. A violation says which invariant and why.

use crate::ballot::{quorum, Ballot, NodeId, Slot};
use crate::client_table::ClientTable;
use crate::effect::Effect;
use crate::message::{Message, Proposal};
use crate::replica::{Replica, Role};
use crate::state_machine::StateMachine;
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// An invariant that does not hold, with the evidence.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Error)]
#[error("invariant `{invariant}` violated: {detail}")]
pub struct Violation {
    /// The invariant's name (the function that checks it).
    pub invariant: &'static str,
    /// What was found.
    pub detail: String,
}

fn violation(invariant: &'static str, detail: String) -> Result<(), Violation> {
    Err(Violation { invariant, detail })
}

/// Per-node invariants, cheap enough to run after every step:
/// `compacted <= applied <= commit`; no slot at or below `compacted` is held; every slot
/// `compacted+1..=commit` holds an accepted entry; no vote is above
/// the promise; a candidate or leader runs exactly its promised ballot, which is its
/// own; a leader's in-flight slots lie in `commit+1 .. next_slot`.
///
/// ```
/// use ballot_model::{invariants, ClusterConfig, DurableState, Register, Replica};
/// let (r, _) = Replica::recover(1, ClusterConfig::new(3), Register::default(), DurableState::default());
/// assert!(invariants::check_replica(&r).is_ok());
/// ```
pub fn check_replica<S: StateMachine>(replica: &Replica<S>) -> Result<(), Violation> {
    let durable = &replica.durable;
    let name = "check_replica";
    if replica.applied > durable.commit {
        return violation(
            name,
            format!(
                "node {} applied {} > commit {}",
                replica.id, replica.applied, durable.commit
            ),
        );
    }
    if replica.applied < durable.compacted {
        return violation(
            name,
            format!(
                "node {} applied {} but compacted its log through {}",
                replica.id, replica.applied, durable.compacted
            ),
        );
    }
    if let Some((slot, _)) = durable.accepted.range(..=durable.compacted).next() {
        return violation(
            name,
            format!(
                "node {} holds slot {slot} although it compacted through {}",
                replica.id, durable.compacted
            ),
        );
    }
    // Counting, not probing each slot: with no slot at or below `compacted` held (just
    // checked), the range is complete exactly when it has `commit - compacted` keys.
    let held = durable
        .accepted
        .range(durable.compacted + 1..)
        .take_while(|(slot, _)| **slot <= durable.commit)
        .count() as Slot;
    // `applied <= commit` and `compacted <= applied` hold here, so this cannot underflow.
    if held < durable.commit - durable.compacted {
        let missing = (durable.compacted + 1..=durable.commit)
            .find(|slot| !durable.accepted.contains_key(slot))
            .unwrap_or(durable.commit);
        return violation(
            name,
            format!(
                "node {} committed slot {missing} but holds no value for it",
                replica.id
            ),
        );
    }
    if let Some((slot, entry)) = durable
        .accepted
        .iter()
        .find(|(_, e)| e.ballot > durable.promised)
    {
        return violation(
            name,
            format!(
                "node {} accepted slot {slot} at {} above its promise {}",
                replica.id, entry.ballot, durable.promised
            ),
        );
    }
    let running = match &replica.role {
        Role::Follower { .. } => None,
        Role::Candidate(candidacy) => Some(candidacy.ballot),
        Role::Leader(leadership) => {
            let bad_slot = leadership
                .in_flight
                .keys()
                .find(|slot| **slot <= durable.commit || **slot >= leadership.next_slot);
            if let Some(slot) = bad_slot {
                return violation(
                    name,
                    format!(
                        "leader {} has slot {slot} in flight outside {}..{}",
                        replica.id,
                        durable.commit + 1,
                        leadership.next_slot
                    ),
                );
            }
            Some(leadership.ballot)
        }
    };
    if let Some(ballot) = running {
        if ballot != durable.promised || ballot.node != replica.id {
            return violation(
                name,
                format!(
                    "node {} runs ballot {ballot} but promised {}",
                    replica.id, durable.promised
                ),
            );
        }
    }
    Ok(())
}

/// Only a leader's heartbeats may leave ahead of the persists before them
/// ([`Effect::SendAhead`], SPEC §3.4): every other message vouches for something the
/// sender persisted (a promise, a vote, its own vote in an accept) and must wait for
/// its sync. Checked on every step's effects in debug builds, and by trace
/// conformance on what a node emitted.
///
/// ```
/// use ballot_model::{invariants, Effect, Message, Register};
/// let heartbeat = Effect::<Register>::SendAhead {
///     to: 1,
///     message: Message::Heartbeat { ballot: Default::default(), commit: 0, read_round: 0 },
/// };
/// assert!(invariants::only_heartbeats_sent_ahead(&[heartbeat]).is_ok());
/// let promise = Effect::<Register>::SendAhead {
///     to: 1,
///     message: Message::Prepare { ballot: Default::default(), from_slot: 1 },
/// };
/// assert!(invariants::only_heartbeats_sent_ahead(&[promise]).is_err());
/// ```
pub fn only_heartbeats_sent_ahead<S: StateMachine>(effects: &[Effect<S>]) -> Result<(), Violation> {
    for effect in effects {
        if let Effect::SendAhead { to, message } = effect {
            if !matches!(message, Message::Heartbeat { .. }) {
                return violation(
                    "only_heartbeats_sent_ahead",
                    format!("a message to node {to} may leave before its sync: {message:?}"),
                );
            }
        }
    }
    Ok(())
}

/// The voters of every epoch some replica is in, from the replicas' memberships.
fn epoch_voters<'a, S: StateMachine>(
    replicas: &[&'a Replica<S>],
) -> BTreeMap<u32, &'a BTreeSet<NodeId>> {
    replicas
        .iter()
        .map(|replica| (replica.members.epoch, &replica.members.voters))
        .collect()
}

/// Per slot and epoch, the values currently chosen: voted by a majority of the
/// epoch's voters at one ballot of the epoch (a learner's copy of the log is no vote).
/// Only the current votes, and only of epochs some replica is in; the model's ledger
/// remembers past choices. Two epochs may choose different values for a slot: the
/// later one's is executed, the earlier one's lies above the reconfiguration that
/// ended its epoch and is void (SPEC §7).
pub fn chosen_values<S: StateMachine>(
    replicas: &[&Replica<S>],
) -> BTreeMap<(Slot, u32), BTreeSet<Proposal<S::Command>>> {
    let voters = epoch_voters(replicas);
    let mut votes: BTreeMap<(Slot, Ballot, &Proposal<S::Command>), usize> = BTreeMap::new();
    for replica in replicas {
        for (slot, entry) in &replica.durable.accepted {
            if voters
                .get(&entry.ballot.epoch)
                .is_some_and(|voters| voters.contains(&replica.id))
            {
                *votes
                    .entry((*slot, entry.ballot, &entry.proposal))
                    .or_default() += 1;
            }
        }
    }
    let mut chosen: BTreeMap<(Slot, u32), BTreeSet<Proposal<S::Command>>> = BTreeMap::new();
    for ((slot, ballot, proposal), count) in votes {
        if count >= quorum(voters[&ballot.epoch].len()) {
            chosen
                .entry((slot, ballot.epoch))
                .or_default()
                .insert(proposal.clone());
        }
    }
    chosen
}

/// At most one value is chosen per slot in each epoch (Paxos's safety property, on
/// current votes).
pub fn at_most_one_value_chosen<S: StateMachine>(
    replicas: &[&Replica<S>],
) -> Result<(), Violation> {
    for ((slot, epoch), values) in chosen_values(replicas) {
        if values.len() > 1 {
            return violation(
                "at_most_one_value_chosen",
                format!(
                    "slot {slot} has {} chosen values in epoch {epoch}: {values:?}",
                    values.len()
                ),
            );
        }
    }
    Ok(())
}

/// [`at_most_one_value_chosen`] on the given slots only: what one step can change (a
/// step's new votes are its `Persist(Accept)`s), so a checker that follows a long run
/// step by step stays linear in the run.
///
/// ```
/// use ballot_model::{invariants, ClusterConfig, DurableState, Register, Replica};
/// let (r, _) = Replica::recover(1, ClusterConfig::new(3), Register::default(), DurableState::default());
/// assert!(invariants::at_most_one_value_chosen_at(&[&r], [1, 2]).is_ok());
/// ```
pub fn at_most_one_value_chosen_at<S: StateMachine>(
    replicas: &[&Replica<S>],
    slots: impl IntoIterator<Item = Slot>,
) -> Result<(), Violation> {
    let voters = epoch_voters(replicas);
    for slot in slots {
        let mut votes: BTreeMap<(Ballot, &Proposal<S::Command>), usize> = BTreeMap::new();
        for replica in replicas {
            if let Some(entry) = replica.durable.accepted.get(&slot) {
                if voters
                    .get(&entry.ballot.epoch)
                    .is_some_and(|voters| voters.contains(&replica.id))
                {
                    *votes.entry((entry.ballot, &entry.proposal)).or_default() += 1;
                }
            }
        }
        let mut chosen: BTreeMap<u32, BTreeSet<&Proposal<S::Command>>> = BTreeMap::new();
        for ((ballot, proposal), count) in votes {
            if count >= quorum(voters[&ballot.epoch].len()) {
                chosen.entry(ballot.epoch).or_default().insert(proposal);
            }
        }
        if let Some((epoch, values)) = chosen.iter().find(|(_, values)| values.len() > 1) {
            return violation(
                "at_most_one_value_chosen",
                format!(
                    "slot {slot} has {} chosen values in epoch {epoch}: {values:?}",
                    values.len()
                ),
            );
        }
    }
    Ok(())
}

/// Any two replicas agree on every slot both have committed and still hold (compacted
/// slots are checked through the applied state instead: see
/// [`applied_state_matches_log`]).
pub fn committed_logs_agree<S: StateMachine>(replicas: &[&Replica<S>]) -> Result<(), Violation> {
    for (i, a) in replicas.iter().enumerate() {
        for b in &replicas[i + 1..] {
            let common = a.durable.commit.min(b.durable.commit);
            let held = a.durable.compacted.max(b.durable.compacted) + 1;
            for slot in held..=common {
                let va = a.durable.accepted.get(&slot).map(|e| &e.proposal);
                let vb = b.durable.accepted.get(&slot).map(|e| &e.proposal);
                if va != vb {
                    return violation(
                        "committed_logs_agree",
                        format!(
                            "slot {slot}: node {} committed {va:?}, node {} committed {vb:?}",
                            a.id, b.id
                        ),
                    );
                }
            }
        }
    }
    Ok(())
}

/// No two nodes lead the same ballot, and a leader's ballot is its own.
pub fn one_leader_per_ballot<S: StateMachine>(replicas: &[&Replica<S>]) -> Result<(), Violation> {
    let mut leaders = BTreeMap::new();
    for replica in replicas {
        if let Some(ballot) = replica.leader_ballot() {
            if ballot.node != replica.id {
                return violation(
                    "one_leader_per_ballot",
                    format!(
                        "node {} leads ballot {ballot} of node {}",
                        replica.id, ballot.node
                    ),
                );
            }
            if let Some(other) = leaders.insert(ballot, replica.id) {
                return violation(
                    "one_leader_per_ballot",
                    format!("nodes {other} and {} both lead ballot {ballot}", replica.id),
                );
            }
        }
    }
    Ok(())
}

/// A replica's state machine (with its client sessions) equals a fresh one that applied
/// `log` — the chosen values of slots `1..=applied` — in order.
pub fn applied_state_matches_log<'a, S: StateMachine + 'a>(
    replica: &Replica<S>,
    initial: &S,
    log: impl IntoIterator<Item = &'a Proposal<S::Command>>,
) -> Result<(), Violation> {
    let mut replay = ClientTable::new(initial.clone());
    let mut replayed: Slot = 0;
    for proposal in log.into_iter().take(replica.applied as usize) {
        for request in proposal.requests() {
            replay.apply(request, replica.config.sessions_max);
        }
        replayed += 1;
    }
    if replayed < replica.applied {
        return violation(
            "applied_state_matches_log",
            format!(
                "node {} applied {} slots but only {replayed} are chosen",
                replica.id, replica.applied
            ),
        );
    }
    if replay != replica.table {
        return violation(
            "applied_state_matches_log",
            format!(
                "node {} state {:?} differs from the replay of slots 1..={}: {:?}",
                replica.id, replica.table, replica.applied, replay
            ),
        );
    }
    Ok(())
}
