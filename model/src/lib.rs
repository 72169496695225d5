//! # ballot-model: Multi-Paxos with leader failover, as pure functions
//!
//! A replicated log is a sequence of *slots*; each slot must end up holding one value
//! that every replica agrees on, even when servers crash and messages are lost, delayed,
//! reordered or duplicated. Paxos chooses one value per slot in two phases: a proposer
//! with ballot `b` first collects *promises* from a majority (phase 1: "accept nothing
//! below `b`, and tell me what you accepted"), then asks them to *accept* a value
//! (phase 2). If a value was already chosen, every majority contains an acceptor that
//! voted for it, and the proposer is bound to re-propose the value voted at the highest
//! ballot — so a choice is never undone. Any two majorities intersect; that is the
//! whole argument.
//!
//! Multi-Paxos runs phase 1 once for all slots from the proposer's commit point on, then
//! streams phase 2 for new slots: the winner is the *leader*. It pipelines several
//! slots, batches client requests into one slot, announces the commit index on accepts
//! and heartbeats, and serves linearizable reads by *read-index* (confirm leadership
//! with a majority round, then answer once the log is applied up to what it had
//! proposed). When the leader falls silent, a follower's election timer fires and it
//! runs phase 1 with a higher ballot: failover is just Paxos doing its job.
//!
//! This crate is *sans-IO*: [`Replica::step`] maps a state and an [`Input`] to a new
//! state and a list of [`Effect`]s (persist, send, reply, set/cancel timer). No clock,
//! no sockets, no threads, no randomness. The same functions are driven by the
//! stateright model in `ballot_model::model` — checked exhaustively at small bounds — and
//! by the production node over TCP with a write-ahead log. The protocol, its messages,
//! state, invariants and the bounds checked are written down in `SPEC.md` at the
//! repository root.
//!
//! ## What the `model` feature adds
//!
//! The core — everything outside `model` — depends on serde and thiserror only. The
//! stateright model (the `model` module, with the register's sequential spec
//! `RegisterSpec` for its linearizability tester) is verification, not protocol, so it
//! sits behind the `model` feature. The feature is on by default, for the checker
//! (`checker/`, `ballot-check`) and the cross-crate tests; the production node
//! (`impl/`, `ballot-node`) turns it off and links no model checker, and a test there
//! (`node_links_no_model_checker`) reads its dependency tree to keep it so.
//!
//! ```
//! use ballot_model::{ClusterConfig, DurableState, Effect, Input, Register, Replica, Timer};
//!
//! // A single-node cluster elects itself and commits a write on its own.
//! let config = ClusterConfig::new(1);
//! let (mut node, _) = Replica::recover(0, config, Register::default(), DurableState::default());
//! let mut effects = Vec::new();
//! node.step(Input::Timer(Timer::Election), &mut effects).unwrap();
//! assert!(node.is_leader());
//! ```
#![warn(missing_docs)]

mod acceptor;
pub mod ballot;
pub mod client_session;
pub mod client_table;
pub mod conformance;
pub mod durable;
pub mod effect;
pub mod invariants;
mod leader;
pub mod membership;
pub mod message;
#[cfg(feature = "model")]
pub mod model;
#[cfg(feature = "mutants")]
pub mod mutant;
#[cfg(not(feature = "mutants"))]
mod mutant;
mod reconfigure;
pub mod register;
pub mod replica;
pub mod snapshot;
pub mod spec;
pub mod state_machine;
mod transfer;

pub use ballot::{quorum, Ballot, ClientId, NodeId, Slot};
pub use client_session::{
    ClientSession, Operation, Outcome, SessionEffect, SessionError, SessionInput, SessionTimer,
    Uncertainty,
};
pub use client_table::{ApplyOutcome, ClientTable, Session};
pub use durable::{DurableState, DurableUpdate};
pub use effect::{Effect, Input, Timer, TransferOutcome, TransferRefusal};
pub use membership::{
    MemberAddress, MemberChange, Membership, NextMembers, ReconfigureOutcome, ReconfigureRefusal,
    MEMBER_ADDRESS_BYTES_MAX, NODE_IDS_MAX,
};
pub use message::{
    AcceptedEntry, ClientRequest, ClientResponse, Message, Proposal, Refusal, Request,
};
#[cfg(feature = "mutants")]
pub use mutant::Mutant;
#[cfg(feature = "model")]
pub use register::RegisterSpec;
pub use register::{Register, RegisterOp, RegisterRet, Value};
pub use replica::{
    Candidacy, ClusterConfig, InFlight, Leadership, MetricCounter, PendingRead, Replica,
    RestoreError, Role, StepError, MAX_SLOTS_AHEAD,
};
pub use snapshot::Snapshot;
pub use state_machine::StateMachine;
