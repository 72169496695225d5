//! The refinement mapping: from every explored model state to the abstract
//! [`ConsensusSpec`](crate::spec::ConsensusSpec), checking each abstract step is one the spec allows.
//!
//! Votes are the bridge. An acceptor's vote is whatever its *durable* `accepted` map
//! holds (what its disk has made durable: with lazy disks, only what a sync completed;
//! a vote a crash took back before its sync was never cast, and nothing it caused left
//! the node); each model step changes at most one server, so recording every vote seen
//! after every step records every vote ever cast (Lamport's `votes` history variable).
//! A value is chosen once a majority has voted for it at one ballot — whether or not
//! they still hold that vote — exactly the definition in the Paxos papers.

use super::actors::{ModelActor, ModelActorState};
use super::checked::Ledger;
use super::history::ModelHistory;
use super::Shared;
use crate::ballot::{Ballot, Slot};
use crate::membership::Membership;
use crate::message::Proposal;
use crate::register::{Register, Value};
use crate::replica::Replica;
use crate::spec::{SpecBallot, SpecValue, SpecViolation};
use stateright::actor::ActorModelState;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The spec's view of a slot's value.
pub fn abstract_value(proposal: &Proposal<Value>) -> SpecValue {
    proposal
        .requests()
        .iter()
        .map(|request| (request.client, request.seq, request.command))
        .collect()
}

/// Whether a slot's value stops its epoch, as the spec sees it: a reconfiguration.
pub fn abstract_stops(proposal: &Proposal<Value>) -> bool {
    matches!(proposal, Proposal::Reconfigure { .. })
}

fn spec_ballot(ballot: Ballot) -> SpecBallot {
    (ballot.epoch, ballot.round, ballot.node)
}

/// Every epoch a replica has entered, by number: the first replica seen in an epoch
/// sets its members, and every other one must agree (it began the epoch at the same
/// slot, with the same voters and learners).
pub type Epochs = BTreeMap<u32, Membership>;

/// Records the epochs the servers are in, checking that they agree. A server for
/// which `untouched` holds kept its very state, whose epoch was recorded or checked
/// when it entered it (recorded epochs never change, only new ones are added).
fn record_epochs(
    epochs: &mut Shared<Epochs>,
    system: &ActorModelState<ModelActor, ModelHistory>,
    untouched: impl Fn(usize) -> bool,
) -> Result<(), SpecViolation> {
    for (node, state) in system.actor_states.iter().enumerate() {
        let ModelActorState::Server(server) = &**state else {
            continue;
        };
        if untouched(node) {
            continue;
        }
        let members = server.replica.membership();
        match epochs.get(&members.epoch) {
            Some(known) if known == members => {}
            Some(_) => {
                return Err(SpecViolation::EpochsDiffer {
                    epoch: members.epoch,
                    node,
                })
            }
            None => {
                epochs.make_mut().insert(members.epoch, members.clone());
            }
        }
    }
    Ok(())
}

/// Advances the ledger's abstract state to match `system`, reached in one step from
/// `previous` (`None` for an initial state, whose ledger holds the bootstrap epoch);
/// records the first spec violation found. A vote counts if its node votes in the
/// vote's epoch (`ledger.epochs`): a learner's copy of the log is no vote, but what it
/// commits and applies must agree with the spec like any replica's.
///
/// The vote history and the abstract state change only when a step records a new
/// vote, and are shared between states otherwise. That is exact, not a shortcut: a
/// choice is a function of the votes, so without a new vote the abstract step would
/// choose nothing new, and every vote was already checked against every choice.
pub fn refine(
    ledger: &mut Ledger,
    system: &ActorModelState<ModelActor, ModelHistory>,
    previous: Option<&ActorModelState<ModelActor, ModelHistory>>,
) {
    if ledger.spec_violation.is_some() {
        return; // Already failed; the first violation is the interesting one.
    }
    if let Err(violation) = refine_step(ledger, system, previous) {
        ledger.spec_violation = Some(violation);
    }
    // The step re-checks only what changed since `previous`; debug builds (the test
    // command) also run every check from scratch on a copy, which must agree.
    debug_assert!(
        ledger.spec_violation.is_some()
            || previous.is_none()
            || refine_step(&mut ledger.clone(), system, None).is_ok(),
        "the refinement's incremental checks passed a state its full checks reject"
    );
}

fn refine_step(
    ledger: &mut Ledger,
    system: &ActorModelState<ModelActor, ModelHistory>,
    previous: Option<&ActorModelState<ModelActor, ModelHistory>>,
) -> Result<(), SpecViolation> {
    // A server the step did not touch keeps its very state (stateright shares it):
    // its votes are recorded already, and what it committed and applied was checked
    // against the spec already. Those checks stay passed as the spec grows, since a
    // choice is never changed, only added, and the chosen prefix only extends.
    let untouched = |node: usize| {
        previous.is_some_and(|previous| {
            Arc::ptr_eq(&previous.actor_states[node], &system.actor_states[node])
        })
    };
    // 0. The epochs the servers entered, which say who votes in each. (Before the
    //    votes: a vote of an epoch is cast only after some server entered it.)
    record_epochs(&mut ledger.epochs, system, untouched)?;
    let epochs = &ledger.epochs;
    let votes_in = |node: usize, epoch: u32| epochs.get(&epoch).is_some_and(|m| m.is_voter(node));
    // A disk the step did not write keeps its very durable state, whose votes are
    // recorded already.
    let disk_unchanged = |node: usize| {
        previous.is_some_and(|previous| {
            match (&previous.actor_storages[node], &system.actor_storages[node]) {
                (Some(before), Some(now)) => Shared::ptr_eq(&before.durable, &now.durable),
                (None, None) => true,
                _ => false,
            }
        })
    };
    // 1. Record the votes visible now.
    let mut new_votes = Vec::new();
    for (node, state) in system.actor_states.iter().enumerate() {
        if !matches!(&**state, ModelActorState::Server(_)) || disk_unchanged(node) {
            continue;
        }
        // The disk's durable copy, as the last save (eager disks: every step that
        // persists; lazy disks: every sync) left it; none before the first.
        let Some(stored) = &system.actor_storages[node] else {
            continue;
        };
        for (slot, entry) in &stored.durable.accepted {
            if !votes_in(node, entry.ballot.epoch) {
                continue;
            }
            let key = (*slot, entry.ballot, entry.proposal.clone());
            let known = ledger
                .votes
                .get(&key)
                .is_some_and(|voters| voters.contains(&node));
            if !known {
                new_votes.push((key, node));
            }
        }
    }
    if previous.is_none() || !new_votes.is_empty() {
        // Only a slot that gained a vote can gain a choice, and only there can a vote
        // meet a new choice: every other slot's votes and choice are as the last
        // check left them. (Every slot, for an initial state.)
        let gained: BTreeSet<Slot> = new_votes.iter().map(|((slot, _, _), _)| *slot).collect();
        let recheck = |slot: &Slot| previous.is_none() || gained.contains(slot);
        let votes = ledger.votes.make_mut();
        for (key, node) in new_votes {
            votes.entry(key).or_default().insert(node);
        }
        let spec = ledger.spec.make_mut();
        // 2. Abstract step: values voted by a majority of their epoch's voters at one
        //    ballot are chosen.
        let majority = |epoch: u32| epochs.get(&epoch).map_or(usize::MAX, |m| m.quorum());
        for ((slot, ballot, proposal), voted) in votes.iter() {
            if recheck(slot) && voted.len() >= majority(ballot.epoch) {
                spec.choose(
                    *slot,
                    spec_ballot(*ballot),
                    abstract_value(proposal),
                    abstract_stops(proposal),
                )?;
            }
        }
        // 3. No vote may contradict a choice.
        for ((slot, ballot, proposal), voted) in votes.iter() {
            if !recheck(slot) {
                continue;
            }
            let value = abstract_value(proposal);
            for node in voted {
                spec.check_vote(
                    *node,
                    *slot,
                    spec_ballot(*ballot),
                    &value,
                    abstract_stops(proposal),
                )?;
            }
        }
    }
    // The same server before the step: what it committed and applied then was checked
    // then, and needs no second check if the step left it as it was.
    let before = |node: usize| match previous.map(|previous| &*previous.actor_states[node]) {
        Some(ModelActorState::Server(server)) => Some(&server.replica),
        _ => None,
    };
    // 4. What replicas committed is chosen.
    for (node, state) in system.actor_states.iter().enumerate() {
        let ModelActorState::Server(server) = &**state else {
            continue;
        };
        let replica = &server.replica;
        let same = || {
            before(node).is_some_and(|before| before.committed_log().eq(replica.committed_log()))
        };
        if untouched(node) || same() {
            continue;
        }
        for (slot, proposal) in replica.committed_log() {
            ledger.spec.check_committed(
                node,
                slot,
                &abstract_value(proposal),
                abstract_stops(proposal),
            )?;
        }
    }
    // 5. What replicas applied is the replay of the chosen prefix.
    for (node, state) in system.actor_states.iter().enumerate() {
        let ModelActorState::Server(server) = &**state else {
            continue;
        };
        let replica = &server.replica;
        let applied = |replica: &Replica<Register>| {
            (
                replica.applied_index(),
                replica.client_table().machine().value,
            )
        };
        let (index, value) = applied(replica);
        if untouched(node) || before(node).is_some_and(|before| applied(before) == (index, value)) {
            continue;
        }
        ledger.spec.check_applied_state(node, index, value)?;
    }
    // 6. Replies carry what the chosen prefix gives. A reply checked before stays
    //    right: a write's output is fixed once its slot is chosen, and the states a
    //    read may return only grow with the prefix.
    let history = &system.history;
    let replied_before = previous.map(|previous| &previous.history);
    if replied_before.is_none_or(|before| before.write_replies != history.write_replies) {
        for ((client, seq), output) in &history.write_replies {
            ledger.spec.check_write_reply(*client, *seq, *output)?;
        }
    }
    if replied_before.is_none_or(|before| before.read_replies != history.read_replies) {
        for ((client, _), output) in &history.read_replies {
            ledger.spec.check_read_reply(*client, *output)?;
        }
    }
    Ok(())
}
