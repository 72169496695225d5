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
    /// The client has no session and the seq is at or below the table's
    /// [`floor`](ClientTable::floor): it may belong to a session that expired, whose
    /// requests the table no longer remembers, so it is refused rather than risk
    /// applying it twice. The refused request will never be applied; whether an
    /// earlier attempt of it was is unknown.
    Expired {
        /// The floor: a new session must number its requests above it.
        floor: u64,
    },
}

/// The last request applied for one client.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Session<O> {
    /// Its sequence number.
    pub last_seq: u64,
    /// Its output, kept to answer retries.
    pub last_output: O,
    /// When it last applied a request, on the table's own clock (requests applied):
    /// the least recently active session is the one that expires.
    pub last_active: u64,
}

/// A state machine wrapped with per-client deduplication, holding a bounded number of
/// client sessions.
///
/// **Expiry.** Applying the first request of a new session when the table already holds
/// `sessions_max` sessions expires the least recently active one, and raises the
/// table's `floor` to that session's last seq. A request from a client with no session
/// opens one only if its seq is above the floor; at or below it, it is refused
/// ([`ApplyOutcome::Expired`]). Every request ever applied is therefore at or below its
/// client's session's `last_seq` or the floor, forever: none is applied twice. The
/// decision depends only on the requests applied, in log order, so every replica
/// expires the same sessions at the same slot (SPEC §2.6).
///
/// ```
/// use ballot_model::{ClientTable, ApplyOutcome, Request, Register};
/// let mut table = ClientTable::new(Register::default());
/// let put = Request { client: 1, seq: 1, command: 7 };
/// assert_eq!(table.apply(&put, 1), ApplyOutcome::Applied(None));
/// assert_eq!(table.apply(&put, 1), ApplyOutcome::Duplicate(None), "a retry is not re-applied");
/// // A second client's session expires the first (one session at most).
/// table.apply(&Request { client: 2, seq: 1, command: 8 }, 1);
/// assert_eq!(table.apply(&put, 1), ApplyOutcome::Expired { floor: 1 }, "refused, not re-applied");
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
    /// The sessions by `last_active` (each stamp is unique), least recent first.
    by_activity: BTreeMap<u64, ClientId>,
    /// Requests applied: the clock `last_active` is read from.
    clock: u64,
    /// At or above the last seq of every expired session; only grows.
    floor: u64,
}

impl<S: StateMachine> ClientTable<S> {
    /// A table over `machine` with no clients seen yet.
    pub fn new(machine: S) -> Self {
        ClientTable {
            machine,
            sessions: BTreeMap::new(),
            by_activity: BTreeMap::new(),
            clock: 0,
            floor: 0,
        }
    }

    /// The wrapped state machine.
    pub fn machine(&self) -> &S {
        &self.machine
    }

    /// How many client sessions the table holds.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Every seq of every expired session is at or below this; a new session numbers
    /// its requests above it.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// What applying `(client, seq)` now would do, without applying: `None` if it is new.
    pub fn lookup(&self, client: ClientId, seq: u64) -> Option<ApplyOutcome<S::Output>> {
        let Some(session) = self.sessions.get(&client) else {
            return (seq <= self.floor).then_some(ApplyOutcome::Expired { floor: self.floor });
        };
        if seq == session.last_seq {
            Some(ApplyOutcome::Duplicate(session.last_output.clone()))
        } else if seq < session.last_seq {
            Some(ApplyOutcome::Stale)
        } else {
            None
        }
    }

    /// Applies `request` unless it was applied before or its session expired, holding
    /// at most `sessions_max` sessions (at least one is always held).
    pub fn apply(
        &mut self,
        request: &Request<S::Command>,
        sessions_max: usize,
    ) -> ApplyOutcome<S::Output> {
        self.apply_with(request, sessions_max, Expiry::RaiseFloor)
    }

    /// [`ClientTable::apply`] under an expiry `rule` (only the `ExpiryForgetsFloor`
    /// mutant passes another).
    pub(crate) fn apply_with(
        &mut self,
        request: &Request<S::Command>,
        sessions_max: usize,
        rule: Expiry,
    ) -> ApplyOutcome<S::Output> {
        if let Some(seen) = self.lookup(request.client, request.seq) {
            return seen;
        }
        if !self.sessions.contains_key(&request.client) {
            self.expire_to(sessions_max.max(1) - 1, rule);
        }
        self.apply_unconditionally(request)
    }

    /// Expires least recently active sessions until at most `keep` remain.
    fn expire_to(&mut self, keep: usize, rule: Expiry) {
        while self.sessions.len() > keep {
            let Some((_, client)) = self.by_activity.pop_first() else {
                debug_assert!(false, "every session is indexed by its activity");
                return;
            };
            let Some(expired) = self.sessions.remove(&client) else {
                debug_assert!(false, "the activity index names only held sessions");
                continue;
            };
            if rule == Expiry::RaiseFloor {
                self.floor = self.floor.max(expired.last_seq);
            }
        }
    }

    /// Applies without consulting the sessions (only the `NoDedup` mutant calls this
    /// directly).
    pub(crate) fn apply_unconditionally(
        &mut self,
        request: &Request<S::Command>,
    ) -> ApplyOutcome<S::Output> {
        let output = self.machine.apply(&request.command);
        self.clock += 1;
        let session = Session {
            last_seq: request.seq,
            last_output: output.clone(),
            last_active: self.clock,
        };
        if let Some(previous) = self.sessions.insert(request.client, session) {
            self.by_activity.remove(&previous.last_active);
        }
        self.by_activity.insert(self.clock, request.client);
        debug_assert_eq!(self.by_activity.len(), self.sessions.len());
        ApplyOutcome::Applied(output)
    }

    /// Renames clients and the values the table holds, for the model's client
    /// symmetry (`model::symmetry`): the table another run would hold had the clients
    /// traded names. `client` must be a permutation.
    #[cfg(feature = "model")]
    pub(crate) fn rename(
        &mut self,
        client: &dyn Fn(ClientId) -> ClientId,
        machine: &dyn Fn(&mut S),
        output: &dyn Fn(&mut S::Output),
    ) {
        machine(&mut self.machine);
        self.sessions = std::mem::take(&mut self.sessions)
            .into_iter()
            .map(|(id, mut session)| {
                output(&mut session.last_output);
                (client(id), session)
            })
            .collect();
        for id in self.by_activity.values_mut() {
            *id = client(*id);
        }
    }
}

/// What expiring a session does to the floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// Raise it to the expired session's last seq (the rule).
    RaiseFloor,
    /// Leave it (the `ExpiryForgetsFloor` mutant): a retry of the expired session's
    /// last request is then applied again.
    #[cfg_attr(not(feature = "mutants"), allow(dead_code))]
    ForgetFloor,
}
