//! Exactly-once application of client requests: the state machine plus, per client,
//! the last sequence number applied and its output.
//!
//! The table is part of the replicated state (every replica builds the same one by
//! applying the same log), so a request retried across a failover and chosen in two
//! slots is applied once, and the retry is answered with the original output.

use crate::ballot::ClientId;
use crate::message::Request;
use crate::state_machine::StateMachine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What happened when a request met the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome<O> {
    /// First time: applied, with this output.
    Applied(O),
    /// Already applied as the client's latest request: not applied again; this is the
    /// output of the first application.
    Duplicate(O),
    /// Older than the client's latest request: the client has moved on, nothing to do.
    Stale,
}

/// The last request applied for one client.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Session<O> {
    /// Its sequence number.
    pub last_seq: u64,
    /// Its output, kept to answer retries.
    pub last_output: O,
}

/// A state machine wrapped with per-client deduplication.
///
/// ```
/// use ballot_model::{ClientTable, ApplyOutcome, Request, Register};
/// let mut table = ClientTable::new(Register::default());
/// let put = Request { client: 1, seq: 1, command: 7 };
/// assert_eq!(table.apply(&put), ApplyOutcome::Applied(None));
/// assert_eq!(table.apply(&put), ApplyOutcome::Duplicate(None), "a retry is not re-applied");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound(
    serialize = "S: Serialize, S::Output: Serialize",
    deserialize = "S: Deserialize<'de>, S::Output: Deserialize<'de>"
))]
pub struct ClientTable<S: StateMachine> {
    machine: S,
    /// Invariant: `last_seq` per client only grows.
    sessions: BTreeMap<ClientId, Session<S::Output>>,
}

impl<S: StateMachine> ClientTable<S> {
    /// A table over `machine` with no clients seen yet.
    pub fn new(machine: S) -> Self {
        ClientTable {
            machine,
            sessions: BTreeMap::new(),
        }
    }

    /// The wrapped state machine.
    pub fn machine(&self) -> &S {
        &self.machine
    }

    /// What applying `(client, seq)` now would do, without applying: `None` if it is new.
    pub fn lookup(&self, client: ClientId, seq: u64) -> Option<ApplyOutcome<S::Output>> {
        let session = self.sessions.get(&client)?;
        if seq == session.last_seq {
            Some(ApplyOutcome::Duplicate(session.last_output.clone()))
        } else if seq < session.last_seq {
            Some(ApplyOutcome::Stale)
        } else {
            None
        }
    }

    /// Applies `request` unless it was applied before.
    pub fn apply(&mut self, request: &Request<S::Command>) -> ApplyOutcome<S::Output> {
        if let Some(seen) = self.lookup(request.client, request.seq) {
            return seen;
        }
        self.apply_unconditionally(request)
    }

    /// Applies without consulting the sessions (only the `NoDedup` mutant calls this
    /// directly).
    pub(crate) fn apply_unconditionally(
        &mut self,
        request: &Request<S::Command>,
    ) -> ApplyOutcome<S::Output> {
        let output = self.machine.apply(&request.command);
        self.sessions.insert(
            request.client,
            Session {
                last_seq: request.seq,
                last_output: output.clone(),
            },
        );
        ApplyOutcome::Applied(output)
    }
}
