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
/// every accepted ballot is `<= promised`; `compacted <= commit`; no slot `<= compacted`
/// is in `accepted` (a snapshot stands for them); every slot `compacted+1..=commit` is,
/// and its value there is the chosen one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DurableState<C> {
    /// Highest ballot this acceptor promised (or ran itself); never decreases.
    pub promised: Ballot,
    /// Per slot, the last value accepted and the ballot it was accepted at.
    pub accepted: BTreeMap<Slot, AcceptedEntry<C>>,
    /// Every slot up to here is known chosen; announced to others only once persisted.
    pub commit: Slot,
    /// Slots up to here are dropped from `accepted`: a durable snapshot at this slot
    /// or later holds their effect. 0 until the first compaction.
    pub compacted: Slot,
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
    /// Drop every slot up to this one (raising the commit index to it if lower). Only
    /// emitted once a snapshot covering that slot is durable.
    Compact(Slot),
}

// By hand: a derive would demand `C: Default`, which commands need not be.
impl<C> Default for DurableState<C> {
    fn default() -> Self {
        DurableState {
            promised: Ballot::ZERO,
            accepted: BTreeMap::new(),
            commit: 0,
            compacted: 0,
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
                // A compacted slot is chosen and its effect is in the snapshot: a vote
                // for it has nothing left to protect.
                if *slot > self.compacted {
                    self.accepted.insert(*slot, entry.clone());
                }
            }
            DurableUpdate::Commit(commit) => self.commit = self.commit.max(*commit),
            DurableUpdate::Compact(through) => {
                self.compact(*through);
            }
        }
    }

    /// Drops slots `..=through` (if not dropped already); they are chosen, so the
    /// commit index is at least `through` afterwards.
    ///
    /// ```
    /// use ballot_model::{AcceptedEntry, Ballot, DurableState, DurableUpdate, Proposal};
    /// let mut d = DurableState::<u8>::default();
    /// for slot in 1..=3 {
    ///     let entry = AcceptedEntry { ballot: Ballot::new(1, 0), proposal: Proposal::Noop };
    ///     d.apply(&DurableUpdate::Accept { slot, entry });
    /// }
    /// d.apply(&DurableUpdate::Compact(2));
    /// assert_eq!(d.accepted.keys().copied().collect::<Vec<_>>(), vec![3]);
    /// assert_eq!((d.compacted, d.commit), (2, 2));
    /// ```
    ///
    /// Returns the dropped slots, for the caller to free where it likes: after a long
    /// run they are hundreds of thousands of entries, and freeing them takes a while.
    pub fn compact(&mut self, through: Slot) -> BTreeMap<Slot, AcceptedEntry<C>> {
        if through <= self.compacted {
            return BTreeMap::new();
        }
        self.compacted = through;
        self.commit = self.commit.max(through);
        let kept = self.accepted.split_off(&through.saturating_add(1));
        std::mem::replace(&mut self.accepted, kept)
    }

    /// The updates that, folded into an empty state in order, give back exactly this
    /// one: how a log is rewritten after a compaction. The compaction point first (it
    /// only drops slots and raises the commit index), then the votes after it (each at
    /// most the promise), then the promise and the commit index.
    ///
    /// ```
    /// use ballot_model::{AcceptedEntry, Ballot, DurableState, DurableUpdate, Proposal};
    /// let mut d = DurableState::<u8>::default();
    /// for slot in 1..=3 {
    ///     let entry = AcceptedEntry { ballot: Ballot::new(1, 0), proposal: Proposal::Noop };
    ///     d.apply(&DurableUpdate::Accept { slot, entry });
    /// }
    /// d.apply(&DurableUpdate::Compact(2));
    /// let mut rebuilt = DurableState::default();
    /// for update in d.rebuild() {
    ///     rebuilt.apply(&update);
    /// }
    /// assert_eq!(rebuilt, d);
    /// ```
    pub fn rebuild(&self) -> impl Iterator<Item = DurableUpdate<C>> + '_ {
        let compact = (self.compacted > 0).then_some(DurableUpdate::Compact(self.compacted));
        // After a compaction only the slots past it remain: few, so cloning is cheap.
        let votes = self
            .accepted
            .iter()
            .map(|(slot, entry)| DurableUpdate::Accept {
                slot: *slot,
                entry: entry.clone(),
            });
        compact.into_iter().chain(votes).chain([
            DurableUpdate::Promise(self.promised),
            DurableUpdate::Commit(self.commit),
        ])
    }

    /// Accepted entries at slots `>= from_slot`, ascending: what a promise reports.
    pub fn accepted_from(&self, from_slot: Slot) -> Vec<(Slot, AcceptedEntry<C>)> {
        self.accepted
            .range(from_slot..)
            .map(|(slot, entry)| (*slot, entry.clone()))
            .collect()
    }
}
