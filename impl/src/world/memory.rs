//! Storage in memory, for tests and simulations of clusters in one process: a disk with
//! the OS's page cache in front of it, so that each kind of crash loses exactly what a
//! real one would.
//!
//! - What the node appends sits in its process until a sync begins: a process crash
//!   loses it.
//! - A sync first writes it to the page cache ([`Disk::cached`]), where it survives a
//!   process crash and the next start reads it back, then fsyncs it to the platter
//!   ([`Disk::records`]). A failing fsync leaves it in the cache.
//! - A power loss ([`Disk::power_loss`]) keeps only a prefix of the cache (the pages
//!   written back by chance), so the last records may be torn off, as the write-ahead
//!   log truncates a torn tail.
//! - A durable record may rot ([`Disk::rot`]): it no longer matches its checksum, and
//!   reading the disk back fails as the write-ahead log's does
//!   ([`WalError::Corrupt`]), so the node refuses to start on it.
//!
//! A [`DiskFaults`] makes fsyncs slow (in simulated time) or fail, at a rate shared
//! with whoever runs the world. A node's size limit on its log counts records here,
//! not bytes, so that a small `snapshot_log_bytes` makes nodes compact often.

use super::{SnapshotSaver, Storage, StorageError};
use crate::wal::WalError;
use ballot_model::{DurableState, DurableUpdate, Snapshot, StateMachine};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// One node's disk and the page cache over it: what survives the node's process.
/// `life` counts the node's starts: storage handles of an earlier life (a background
/// snapshot save that outlived its crash) write nothing.
#[derive(Debug)]
pub struct Disk<S: StateMachine> {
    /// Durable log records, in order.
    pub records: Vec<DurableUpdate<S::Command>>,
    /// Log records written after them but not synced: read back by a restart, lost
    /// (all or a suffix) in a power loss.
    pub cached: Vec<DurableUpdate<S::Command>>,
    /// The latest durable snapshot.
    pub snapshot: Option<Snapshot<S>>,
    /// The node's current life.
    pub life: u64,
    /// A durable record (its index in `records`) that fails its checksum.
    pub rotten: Option<usize>,
}

impl<S: StateMachine> Default for Disk<S> {
    fn default() -> Self {
        Disk {
            records: Vec::new(),
            cached: Vec::new(),
            snapshot: None,
            life: 0,
            rotten: None,
        }
    }
}

impl<S: StateMachine + Clone> Disk<S> {
    /// A fresh disk, shareable between the world and the node's storage.
    pub fn shared() -> SharedDisk<S> {
        Arc::new(Mutex::new(Disk::default()))
    }

    /// What a node starting from this disk reads back: its snapshot (or `initial`'s)
    /// and the fold of its log, durable records and cached ones alike (a file read
    /// cannot tell them apart).
    ///
    /// # Errors
    ///
    /// [`WalError::Corrupt`] if a record rotted ([`Disk::rot`]), as the write-ahead
    /// log refuses a log with damage that is not a torn tail; its `offset` counts
    /// records here, not bytes.
    ///
    /// ```
    /// use ballot_node::kv::{KvCommand, KvStore};
    /// use ballot_node::world::memory::Disk;
    /// use ballot_model::DurableUpdate;
    /// let mut disk = Disk::<KvStore>::default();
    /// disk.records.push(DurableUpdate::Commit(3));
    /// disk.cached.push(DurableUpdate::Commit(5));
    /// assert_eq!(disk.recover(KvStore::default()).unwrap().1.commit, 5);
    /// assert_eq!(disk.power_loss(0), 1);
    /// assert_eq!(disk.recover(KvStore::default()).unwrap().1.commit, 3);
    /// assert!(disk.rot(7), "any index names a durable record");
    /// assert!(disk.recover(KvStore::default()).is_err());
    /// ```
    pub fn recover(&self, initial: S) -> Result<(Snapshot<S>, DurableState<S::Command>), WalError> {
        if let Some(index) = self.rotten {
            return Err(WalError::Corrupt {
                path: "simulated-disk".into(),
                offset: index as u64,
                reason: "record checksum mismatch (this disk counts records, not bytes)".into(),
            });
        }
        let snapshot = self
            .snapshot
            .clone()
            .unwrap_or_else(|| Snapshot::initial(initial));
        let mut durable = DurableState::default();
        for record in self.records.iter().chain(&self.cached) {
            durable.apply(record);
        }
        Ok((snapshot, durable))
    }

    /// A durable record rots: the one at `index` modulo their count. Returns false
    /// (and rots nothing) if no record is durable.
    pub fn rot(&mut self, index: usize) -> bool {
        if self.records.is_empty() {
            return false;
        }
        self.rotten = Some(index % self.records.len());
        true
    }

    /// The power fails: of the records cached and not synced, the first `kept` (at
    /// most) reached the platter, the rest are lost. Returns how many were lost.
    pub fn power_loss(&mut self, kept: usize) -> usize {
        let kept = kept.min(self.cached.len());
        let lost = self.cached.len() - kept;
        let reached: Vec<_> = self.cached.drain(..).take(kept).collect();
        self.records.extend(reached);
        lost
    }
}

/// A disk shared between the world that crashes it and the node that writes it.
pub type SharedDisk<S> = Arc<Mutex<Disk<S>>>;

/// How a disk misbehaves: the chance that an fsync fails and how long one takes in
/// simulated time, both shared with the world (which calms them when faults heal).
#[derive(Clone, Debug)]
pub struct DiskFaults {
    /// Chance in a million that an fsync fails.
    pub sync_failure_ppm: Arc<AtomicU32>,
    /// How long an fsync takes, in microseconds of simulated time.
    pub sync_micros: Arc<AtomicU64>,
    /// Seed of the draws of this storage handle.
    pub seed: u64,
}

impl DiskFaults {
    /// A disk that never fails and takes no time.
    pub fn none() -> Self {
        DiskFaults {
            sync_failure_ppm: Arc::new(AtomicU32::new(0)),
            sync_micros: Arc::new(AtomicU64::new(0)),
            seed: 0,
        }
    }
}

/// The storage a node in memory writes through (see the [module docs](self)).
///
/// ```
/// use ballot_node::kv::KvStore;
/// use ballot_node::world::memory::{Disk, DiskFaults, MemoryStorage};
/// use ballot_node::world::Storage;
/// use ballot_model::DurableUpdate;
/// let disk = Disk::<KvStore>::shared();
/// let mut storage = MemoryStorage::new(disk.clone(), DiskFaults::none());
/// storage.append(&DurableUpdate::Commit(1)).unwrap();
/// assert!(disk.lock().unwrap().records.is_empty(), "appended, not synced");
/// storage.sync().unwrap();
/// assert_eq!(disk.lock().unwrap().records.len(), 1);
/// ```
pub struct MemoryStorage<S: StateMachine> {
    disk: SharedDisk<S>,
    life: u64,
    pending: Vec<DurableUpdate<S::Command>>,
    rewrite: Option<DurableState<S::Command>>,
    staged: Option<Snapshot<S>>,
    faults: DiskFaults,
    rng: StdRng,
}

impl<S: StateMachine> MemoryStorage<S> {
    /// A handle for the node's current life on `disk`.
    pub fn new(disk: SharedDisk<S>, faults: DiskFaults) -> Self {
        let life = lock(&disk).life;
        let rng = StdRng::seed_from_u64(faults.seed);
        MemoryStorage {
            disk,
            life,
            pending: Vec::new(),
            rewrite: None,
            staged: None,
            faults,
            rng,
        }
    }

    /// The write before an fsync: appended records go to the page cache, where they
    /// survive a process crash (a staged rewrite goes to its new file at the fsync).
    fn write_to_cache(&mut self) {
        if self.rewrite.is_some() {
            return;
        }
        let mut disk = lock(&self.disk);
        if disk.life == self.life {
            disk.cached.append(&mut self.pending);
        }
    }
}

fn lock<S: StateMachine>(disk: &SharedDisk<S>) -> MutexGuard<'_, Disk<S>> {
    disk.lock().unwrap_or_else(|e| e.into_inner())
}

impl<S> Storage<S> for MemoryStorage<S>
where
    S: StateMachine + Clone + Send + Sync + 'static,
    S::Command: Send + Sync,
    S::Output: Send + Sync,
{
    fn append(&mut self, update: &DurableUpdate<S::Command>) -> Result<(), StorageError> {
        self.pending.push(update.clone());
        Ok(())
    }

    fn stage_snapshot(&mut self, snapshot: Snapshot<S>) {
        self.staged = Some(snapshot);
    }

    fn stage_rewrite(&mut self, state: &DurableState<S::Command>) -> Result<(), StorageError> {
        self.pending.clear();
        self.rewrite = Some(state.clone());
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        // The write comes first (`begin_sync` did it, unless this sync did not go
        // through the loop: a start's), then the fsync, which may fail.
        self.write_to_cache();
        let ppm = self.faults.sync_failure_ppm.load(Ordering::Relaxed);
        if self.rng.random_range(0..1_000_000) < ppm {
            // What was written stays in the page cache, not synced; the node stops.
            return Err(StorageError::Wal(WalError::Io {
                path: "simulated-disk".into(),
                source: std::io::Error::other("simulated fsync failure"),
            }));
        }
        let mut disk = lock(&self.disk);
        if disk.life != self.life {
            return Ok(()); // A handle of a crashed life: the process is gone.
        }
        if let Some(snapshot) = self.staged.take() {
            disk.snapshot = Some(snapshot);
        }
        if let Some(state) = self.rewrite.take() {
            // A rewrite is a new file made durable and renamed over the old one.
            disk.records = state.rebuild().chain(self.pending.drain(..)).collect();
            disk.cached.clear();
        }
        let cached = std::mem::take(&mut disk.cached);
        disk.records.extend(cached);
        Ok(())
    }

    fn log_bytes(&self) -> u64 {
        let disk = lock(&self.disk);
        (disk.records.len() + disk.cached.len() + self.pending.len()) as u64
    }

    fn begin_sync(&mut self) -> Duration {
        self.write_to_cache();
        Duration::from_micros(self.faults.sync_micros.load(Ordering::Relaxed))
    }

    fn snapshot_saver(&self) -> SnapshotSaver<S> {
        let (disk, life) = (self.disk.clone(), self.life);
        Arc::new(move |snapshot: &Snapshot<S>| {
            let mut disk = lock(&disk);
            let newer = disk
                .snapshot
                .as_ref()
                .is_none_or(|s| s.slot < snapshot.slot);
            if disk.life == life && newer {
                disk.snapshot = Some(snapshot.clone());
            }
            Ok(())
        })
    }
}
