//! The acceptor state that must survive a crash, and the records that change it.
//!
//! The core never writes this itself: it emits [`DurableUpdate`]s as `Persist` effects,
//! and whoever drives the core makes them durable (the model's `Storage`, the node's
//! write-ahead log) by folding them with [`DurableState::apply`]. Replaying the same
//! updates gives the same state, in the model and on disk alike.

use crate::ballot::{Ballot, Slot};
use crate::message::AcceptedEntry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything a server must remember across a crash.
///
/// Invariants (checked by [`crate::invariants::check_replica`]):
/// every accepted ballot is `<= promised`; every slot `1..=commit` is in `accepted`, and
/// its value there is the chosen one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DurableState<C> {
    /// Highest ballot this acceptor promised (or ran itself); never decreases.
    pub promised: Ballot,
    /// Per slot, the last value accepted and the ballot it was accepted at.
    pub accepted: BTreeMap<Slot, AcceptedEntry<C>>,
    /// Every slot up to here is known chosen; announced to others only once persisted.
    pub commit: Slot,
}

/// One change to [`DurableState`]; the unit a `Persist` effect carries and a log record
/// holds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DurableUpdate<C> {
    /// Raise the promise to this ballot.
    Promise(Ballot),
    /// Record a vote (and raise the promise to its ballot if lower).
    Accept {
        /// The slot voted for.
        slot: Slot,
        /// The vote.
        entry: AcceptedEntry<C>,
    },
    /// Raise the commit index.
    Commit(Slot),
}

// By hand: a derive would demand `C: Default`, which commands need not be.
impl<C> Default for DurableState<C> {
    fn default() -> Self {
        DurableState {
            promised: Ballot::ZERO,
            accepted: BTreeMap::new(),
            commit: 0,
        }
    }
}

impl<C: Clone> DurableState<C> {
    /// Folds one update into the state: the only way durable state changes.
    ///
    /// ```
    /// use ballot_model::{Ballot, DurableState, DurableUpdate};
    /// let mut d = DurableState::<u8>::default();
    /// d.apply(&DurableUpdate::Promise(Ballot::new(2, 1)));
    /// assert_eq!(d.promised, Ballot::new(2, 1));
    /// ```
    pub fn apply(&mut self, update: &DurableUpdate<C>) {
        match update {
            // Promise and commit only grow: replaying records out of order (or twice)
            // can never lower them.
            DurableUpdate::Promise(ballot) => self.promised = self.promised.max(*ballot),
            DurableUpdate::Accept { slot, entry } => {
                self.promised = self.promised.max(entry.ballot);
                self.accepted.insert(*slot, entry.clone());
            }
            DurableUpdate::Commit(commit) => self.commit = self.commit.max(*commit),
        }
    }

    /// Accepted entries at slots `>= from_slot`, ascending: what a promise reports.
    pub fn accepted_from(&self, from_slot: Slot) -> Vec<(Slot, AcceptedEntry<C>)> {
        self.accepted
            .range(from_slot..)
            .map(|(slot, entry)| (*slot, entry.clone()))
            .collect()
    }
}
