//! The node's world, kept narrow: everything the runtime does outside its own memory
//! goes through these two traits and tokio's clock. The production node plugs in its
//! data directory (write-ahead log and snapshot files) and TCP; a deterministic
//! simulation can plug in a seeded disk and network and run on tokio's paused clock
//! (`tokio::time::pause`, which advances virtual time whenever every task is idle) —
//! the same runtime, no second implementation.

pub mod memory;

use crate::snapshot_store::{SnapshotDir, SnapshotError};
use crate::wal::{Wal, WalError};
use ballot_model::{DurableState, DurableUpdate, NodeId, Slot, Snapshot, StateMachine};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Why storage failed. Either way the node stops: it can no longer promise anything.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The write-ahead log failed.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// A snapshot could not be saved.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// Saves a snapshot durably from any thread (background compaction).
pub type SnapshotSaver<S> = Arc<dyn Fn(&Snapshot<S>) -> Result<(), StorageError> + Send + Sync>;

/// Durable storage for the core's `Persist` and `SaveSnapshot` effects.
///
/// Contract: after `sync` returns `Ok`, every staged snapshot and every update appended
/// before it survive a crash, the snapshot made durable *before* the log records (a
/// `Compact` record relies on its snapshot); an error means nothing more can be
/// promised and the node stops.
pub trait Storage<S: StateMachine>: Send + 'static {
    /// Buffers one update (no durability yet).
    fn append(&mut self, update: &DurableUpdate<S::Command>) -> Result<(), StorageError>;
    /// Stages a snapshot to be made durable first at the next `sync`.
    fn stage_snapshot(&mut self, snapshot: Snapshot<S>);
    /// Stages replacing the whole log by the records that rebuild `state` (which
    /// includes everything appended so far): how the log shrinks after a compaction.
    fn stage_rewrite(&mut self, state: &DurableState<S::Command>) -> Result<(), StorageError>;
    /// Makes everything staged and appended so far durable, and everything a restart
    /// loaded from this storage: what a crashed process wrote without syncing may sit
    /// in the OS's page cache, where the next start reads it back, and a power loss can
    /// still take it away. The node syncs once before it steps anything (so that no
    /// vote or promise it acts on can vanish), then once per batch.
    fn sync(&mut self) -> Result<(), StorageError>;
    /// The log's size in bytes: what the compaction policy watches.
    fn log_bytes(&self) -> u64;
    /// A saver for snapshots taken in the background. Each snapshot it saves must not
    /// disturb one staged through [`Storage::stage_snapshot`] (they may run at once).
    fn snapshot_saver(&self) -> SnapshotSaver<S>;
    /// Called as a sync begins, before [`Storage::sync`]; returns how long the sync
    /// takes on the node's clock when that clock is simulated (the loop waits this
    /// long first, as it waits for a real fsync). A simulated disk hands the appended
    /// records to its page cache here, so that a crash during the wait leaves them
    /// written but not synced. A real disk does nothing and returns zero, the default.
    fn begin_sync(&mut self) -> Duration {
        Duration::ZERO
    }
}

/// The production storage: a write-ahead log and snapshot files in one directory.
pub struct DataDir<S: StateMachine> {
    wal: Wal,
    snapshots: SnapshotDir,
    staged: Option<Snapshot<S>>,
    /// Set by a staged rewrite: once it is durable, snapshots older than this slot are
    /// garbage.
    prune_below: Option<Slot>,
}

impl<S: StateMachine> DataDir<S> {
    /// Storage over an open log and the snapshot files beside it.
    pub fn new(wal: Wal, snapshots: SnapshotDir) -> Self {
        DataDir {
            wal,
            snapshots,
            staged: None,
            prune_below: None,
        }
    }
}

impl<S> Storage<S> for DataDir<S>
where
    S: StateMachine + Serialize + DeserializeOwned + Send + Sync + 'static,
    S::Command: Serialize + Send,
    S::Output: Serialize + Send,
{
    fn append(&mut self, update: &DurableUpdate<S::Command>) -> Result<(), StorageError> {
        Ok(self.wal.append(update)?)
    }

    fn stage_snapshot(&mut self, snapshot: Snapshot<S>) {
        self.staged = Some(snapshot);
    }

    fn stage_rewrite(&mut self, state: &DurableState<S::Command>) -> Result<(), StorageError> {
        self.prune_below = Some(state.compacted);
        Ok(self.wal.stage_rewrite(state)?)
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        if let Some(snapshot) = self.staged.take() {
            self.snapshots.save(&snapshot)?;
        }
        self.wal.sync()?;
        if let Some(slot) = self.prune_below.take() {
            if let Err(error) = self.snapshots.remove_older(slot) {
                // Garbage left behind costs disk space, not safety.
                tracing::warn!(%error, "could not remove old snapshots");
            }
        }
        Ok(())
    }

    fn log_bytes(&self) -> u64 {
        self.wal.len_bytes()
    }

    fn snapshot_saver(&self) -> SnapshotSaver<S> {
        let snapshots = self.snapshots.clone();
        Arc::new(move |snapshot: &Snapshot<S>| Ok(snapshots.save(snapshot)?))
    }
}

/// The sending half of the peer network: best effort, never blocking. Inbound frames
/// enter the node through [`crate::node::PeerInbox`].
pub trait PeerNetwork: Send + Sync + 'static {
    /// Queues one encoded frame for peer `to`, or drops it.
    fn send(&self, to: NodeId, frame: Vec<u8>);
    /// Frames dropped so far (full queues, unknown peers).
    fn dropped_frames(&self) -> u64;
    /// Peer `id` is at `address`, as the log says ([`ballot_model::MemberAddress`]):
    /// reach it there from now on. A network whose peers are known otherwise (a
    /// simulation's) ignores it.
    fn add_peer(&self, _id: NodeId, _address: &str) {}
}
