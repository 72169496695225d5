//! Group commit beside the loop: the node's storage fsyncs while the event loop goes on
//! stepping inputs, and each send or reply leaves once the fsync that covers the
//! persists emitted ahead of it has completed (the core's ordering contract, SPEC §2.5).
//! A message the core sends ahead ([`Effect::SendAhead`]: a leader's heartbeat, which
//! vouches for nothing unsynced) never waits here, so a slow disk does not silence a
//! healthy leader (SPEC §3.4).
//!
//! One fsync is in flight at a time. It covers everything appended when it began;
//! what is persisted meanwhile is buffered (the storage is away on the fsync's thread)
//! and handed to the storage when it returns, and the next fsync covers it. Persists
//! are counted from the run's start, as the trace counts them, so that a send waits
//! exactly for the count of persists ahead of it.

use crate::node::off_loop;
use crate::wal::WalError;
use crate::world::{Storage, StorageError};
use ballot_model::{DurableState, DurableUpdate, Effect, Snapshot, StateMachine};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// What a completed fsync hands back: the storage, and how the fsync went.
pub(crate) struct SyncDone<S: StateMachine> {
    storage: Option<Box<dyn Storage<S>>>,
    result: Result<(), StorageError>,
    /// Wall-clock time the fsync took, for the node's histogram.
    pub(crate) took: Duration,
}

type SyncFuture<S> = Pin<Box<dyn Future<Output = SyncDone<S>> + Send>>;

/// A durable operation that arrived while the storage was away on an fsync.
enum Buffered<S: StateMachine> {
    Append(DurableUpdate<S::Command>),
    Snapshot(Snapshot<S>),
    /// Replace the log with the records that rebuild this state (after a compaction).
    Rewrite(DurableState<S::Command>),
}

/// The storage, its fsync in flight, and the sends and replies waiting for it.
pub(crate) struct GroupCommit<S: StateMachine> {
    /// `None` while an fsync runs (it owns the storage then).
    storage: Option<Box<dyn Storage<S>>>,
    in_flight: Option<(SyncFuture<S>, u64)>,
    buffered: Vec<Buffered<S>>,
    /// Sends and replies, in emission order, each with the number of persists emitted
    /// ahead of it: it leaves once that many are durable.
    waiting: VecDeque<(Effect<S>, u64)>,
    /// Persists and snapshots emitted since the run began, and how many are durable.
    emitted: u64,
    synced: u64,
    /// Sends and replies released since the run began (a send ahead is not counted).
    released: u64,
    /// Run fsyncs on this thread ([`crate::node::NodeConfig::blocking_inline`]).
    inline: bool,
}

impl<S: StateMachine + 'static> GroupCommit<S> {
    /// Group commit over `storage`, whose loaded state is already durable.
    pub(crate) fn new(storage: Box<dyn Storage<S>>, inline: bool) -> Self {
        GroupCommit {
            storage: Some(storage),
            in_flight: None,
            buffered: Vec::new(),
            waiting: VecDeque::new(),
            emitted: 0,
            synced: 0,
            released: 0,
            inline,
        }
    }

    /// The storage, unless an fsync has it.
    pub(crate) fn storage(&self) -> Option<&dyn Storage<S>> {
        self.storage.as_deref()
    }

    /// Appends `update`, or buffers it while an fsync runs. Not durable until a later
    /// fsync completes.
    pub(crate) fn persist(
        &mut self,
        update: DurableUpdate<S::Command>,
    ) -> Result<(), StorageError> {
        self.emitted += 1;
        match self.storage.as_mut() {
            Some(storage) => storage.append(&update),
            None => {
                self.buffered.push(Buffered::Append(update));
                Ok(())
            }
        }
    }

    /// Stages `snapshot` to be made durable first at the next fsync that covers it.
    pub(crate) fn save_snapshot(&mut self, snapshot: Snapshot<S>) {
        self.emitted += 1;
        match self.storage.as_mut() {
            Some(storage) => storage.stage_snapshot(snapshot),
            None => self.buffered.push(Buffered::Snapshot(snapshot)),
        }
    }

    /// Stages replacing the log by the records that rebuild `state` (which holds every
    /// persist emitted so far): how the log shrinks after a compaction.
    pub(crate) fn rewrite(&mut self, state: &DurableState<S::Command>) -> Result<(), StorageError> {
        match self.storage.as_mut() {
            Some(storage) => storage.stage_rewrite(state),
            None => {
                self.buffered.push(Buffered::Rewrite(state.clone()));
                Ok(())
            }
        }
    }

    /// A send or reply: returned if it may leave now (everything persisted ahead of it
    /// is durable), else kept until the fsync that covers it completes.
    pub(crate) fn hold(&mut self, effect: Effect<S>) -> Option<Effect<S>> {
        debug_assert!(matches!(effect, Effect::Send { .. } | Effect::Reply { .. }));
        if self.waiting.is_empty() && self.emitted == self.synced {
            self.released += 1;
            return Some(effect);
        }
        self.waiting.push_back((effect, self.emitted));
        None
    }

    /// Sends and replies released since the run began (a send ahead not counted): what
    /// the trace's `Released` records.
    pub(crate) fn released(&self) -> u64 {
        self.released
    }

    /// Persists durable since the run began: what the trace's `Synced` records.
    pub(crate) fn synced(&self) -> u64 {
        self.synced
    }

    /// True while an fsync runs.
    pub(crate) fn syncing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// True when something persisted is not yet durable nor being made so.
    fn dirty(&self) -> bool {
        self.emitted
            > self
                .in_flight
                .as_ref()
                .map_or(self.synced, |(_, covers)| *covers)
    }

    /// Starts an fsync of everything appended so far, unless one runs or there is
    /// nothing to sync. Returns whether one started.
    pub(crate) fn start_sync(&mut self) -> bool {
        if self.in_flight.is_some() || !self.dirty() {
            return false;
        }
        let Some(mut storage) = self.storage.take() else {
            unreachable!("the storage is home whenever no fsync runs")
        };
        debug_assert!(
            self.buffered.is_empty(),
            "buffered only while an fsync runs"
        );
        let latency = storage.begin_sync();
        let inline = self.inline;
        let future = async move {
            let started = std::time::Instant::now();
            if !latency.is_zero() {
                // A simulated disk's fsync takes simulated time.
                tokio::time::sleep(latency).await;
            }
            let done = off_loop(inline, move || {
                let result = storage.sync();
                (storage, result)
            })
            .await;
            let (storage, result) = match done {
                Some((storage, result)) => (Some(storage), result),
                None => (None, Err(WalError::Poisoned.into())),
            };
            SyncDone {
                storage,
                result,
                took: started.elapsed(),
            }
        };
        self.in_flight = Some((Box::pin(future), self.emitted));
        true
    }

    /// Waits for the fsync in flight; pending forever if none runs (for `select!`).
    pub(crate) async fn completion(&mut self) -> SyncDone<S> {
        match self.in_flight.as_mut() {
            Some((future, _)) => future.await,
            None => std::future::pending().await,
        }
    }

    /// The fsync in flight completed with `done`: takes the storage back, hands it what
    /// was buffered meanwhile, and returns the sends and replies that may leave now, in
    /// order. An error means the storage can promise nothing more.
    pub(crate) fn completed(&mut self, done: SyncDone<S>) -> Result<Vec<Effect<S>>, StorageError> {
        let Some((_, covers)) = self.in_flight.take() else {
            unreachable!("completion is awaited only while an fsync runs")
        };
        done.result?;
        let mut storage = done.storage.ok_or(WalError::Poisoned)?;
        for buffered in self.buffered.drain(..) {
            match buffered {
                Buffered::Append(update) => storage.append(&update)?,
                Buffered::Snapshot(snapshot) => storage.stage_snapshot(snapshot),
                Buffered::Rewrite(state) => storage.stage_rewrite(&state)?,
            }
        }
        self.storage = Some(storage);
        self.synced = covers;
        let mut ready = Vec::new();
        while let Some((_, ahead)) = self.waiting.front() {
            if *ahead > self.synced {
                break;
            }
            let Some((effect, _)) = self.waiting.pop_front() else {
                unreachable!("front checked above")
            };
            ready.push(effect);
        }
        self.released += ready.len() as u64;
        Ok(ready)
    }

    /// Releases everything waiting without its fsync: the planted runtime bug
    /// `release-before-sync`.
    #[cfg(feature = "mutants")]
    pub(crate) fn release_all_early(&mut self) -> Vec<Effect<S>> {
        let ready: Vec<Effect<S>> = self.waiting.drain(..).map(|(effect, _)| effect).collect();
        self.released += ready.len() as u64;
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::memory::{Disk, DiskFaults, MemoryStorage};
    use ballot_model::{Message, Register};

    fn send(to: usize) -> Effect<Register> {
        Effect::Send {
            to,
            message: Message::Prepare {
                ballot: Default::default(),
                from_slot: 1,
            },
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_send_waits_for_the_fsync_of_the_persists_ahead_of_it_and_no_longer() {
        let mut commit = GroupCommit::<Register>::new(
            Box::new(MemoryStorage::new(Disk::shared(), DiskFaults::none())),
            true,
        );
        // Nothing persisted: a send leaves at once.
        assert!(commit.hold(send(1)).is_some());
        commit.persist(DurableUpdate::Commit(1)).unwrap();
        assert!(
            commit.hold(send(2)).is_none(),
            "waits for the persist ahead"
        );
        assert!(commit.start_sync());
        // Persisted while the fsync runs: the next fsync covers it, and the send
        // behind it waits for that one.
        commit.persist(DurableUpdate::Commit(2)).unwrap();
        assert!(commit.hold(send(3)).is_none());
        assert!(!commit.start_sync(), "one fsync at a time");
        let done = commit.completion().await;
        let ready = commit.completed(done).unwrap();
        assert_eq!(ready, vec![send(2)], "only what the first fsync covered");
        assert_eq!((commit.synced(), commit.released()), (1, 2));
        assert!(commit.start_sync());
        let done = commit.completion().await;
        assert_eq!(commit.completed(done).unwrap(), vec![send(3)]);
        assert_eq!((commit.synced(), commit.released()), (2, 3));
        assert!(!commit.start_sync(), "nothing left to sync");
    }
}
