//! The refinement mapping: from every explored model state to the abstract
//! [`ConsensusSpec`](crate::spec::ConsensusSpec), checking each abstract step is one the spec allows.
//!
//! Votes are the bridge. An acceptor's vote is whatever its `accepted` map holds; each
//! model step changes at most one server, so recording every vote seen after every step
//! records every vote ever cast (Lamport's `votes` history variable). A value is chosen
//! once a majority has voted for it at one ballot — whether or not they still hold that
//! vote — exactly the definition in the Paxos papers.

use super::actors::{ModelActor, ModelActorState};
use super::checked::Ledger;
use super::history::ModelHistory;
use crate::ballot::{quorum, Ballot};
use crate::message::Proposal;
use crate::register::Value;
use crate::spec::{SpecValue, SpecViolation};
use stateright::actor::ActorModelState;

/// The spec's view of a slot's value.
pub fn abstract_value(proposal: &Proposal<Value>) -> SpecValue {
    proposal
        .requests()
        .iter()
        .map(|request| (request.client, request.seq, request.command))
        .collect()
}

fn spec_ballot(ballot: Ballot) -> (u32, usize) {
    (ballot.round, ballot.node)
}

/// Advances the ledger's abstract state to match `system`; records the first spec
/// violation found.
pub fn refine(
    ledger: &mut Ledger,
    servers: usize,
    system: &ActorModelState<ModelActor, ModelHistory>,
) {
    if ledger.spec_violation.is_some() {
        return; // Already failed; the first violation is the interesting one.
    }
    if let Err(violation) = refine_step(ledger, servers, system) {
        ledger.spec_violation = Some(violation);
    }
}

fn refine_step(
    ledger: &mut Ledger,
    servers: usize,
    system: &ActorModelState<ModelActor, ModelHistory>,
) -> Result<(), SpecViolation> {
    // 1. Record the votes visible now.
    for (node, state) in system.actor_states.iter().enumerate().take(servers) {
        let ModelActorState::Server(server) = &**state else {
            continue;
        };
        for (slot, entry) in &server.replica.durable().accepted {
            ledger
                .votes
                .entry((*slot, entry.ballot, entry.proposal.clone()))
                .or_default()
                .insert(node);
        }
    }
    // 2. Abstract step: values voted by a majority at one ballot are chosen.
    let majority = quorum(servers);
    for ((slot, ballot, proposal), voters) in &ledger.votes {
        if voters.len() >= majority {
            ledger
                .spec
                .choose(*slot, spec_ballot(*ballot), abstract_value(proposal))?;
        }
    }
    // 3. No vote may contradict a choice.
    for ((slot, ballot, proposal), voters) in &ledger.votes {
        let value = abstract_value(proposal);
        for node in voters {
            ledger
                .spec
                .check_vote(*node, *slot, spec_ballot(*ballot), &value)?;
        }
    }
    // 4. What replicas committed is chosen.
    for (node, state) in system.actor_states.iter().enumerate().take(servers) {
        let ModelActorState::Server(server) = &**state else {
            continue;
        };
        for (slot, proposal) in server.replica.committed_log() {
            ledger
                .spec
                .check_committed(node, slot, &abstract_value(proposal))?;
        }
    }
    // 5. What replicas applied is the replay of the chosen prefix.
    for (node, state) in system.actor_states.iter().enumerate().take(servers) {
        let ModelActorState::Server(server) = &**state else {
            continue;
        };
        let replica = &server.replica;
        ledger.spec.check_applied_state(
            node,
            replica.applied_index(),
            replica.client_table().machine().value,
        )?;
    }
    // 6. Replies carry what the chosen prefix gives.
    for ((client, seq), output) in &system.history.write_replies {
        ledger.spec.check_write_reply(*client, *seq, *output)?;
    }
    for ((client, _), output) in &system.history.read_replies {
        ledger.spec.check_read_reply(*client, *output)?;
    }
    Ok(())
}
