//! A simulated disk with a page cache between the node and the platter, so that each
//! kind of crash loses exactly what a real one would:
//!
//! - what the node appended sits in its process until a sync begins, and a process
//!   crash loses it;
//! - a sync first writes it to the OS's page cache ([`Platter::cached`]), where it
//!   survives a process crash and is read back by the next start, then fsyncs it to
//!   the platter; a failing fsync leaves it in the cache;
//! - a power loss ([`Platter::power_loss`]) keeps only a prefix of the cache (the pages
//!   written back by chance), so the last record may be torn off, as the write-ahead
//!   log truncates a torn tail.
//!
//! A seed can make an fsync slow or fail.

use ballot_model::{DurableState, DurableUpdate, Snapshot};
use ballot_node::kv::{KvCommand, KvStore};
use ballot_node::wal::WalError;
use ballot_node::world::{SnapshotSaver, Storage, StorageError};
use rand::rngs::StdRng;
use rand::Rng;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One node's disk and the OS's page cache over it: what survives a crash of the
/// node's process. `life` counts the node's starts; storage handles of an earlier life
/// (a background snapshot save that outlived its crash) write nothing.
#[derive(Debug, Default)]
pub struct Platter {
    /// Durable log records, in order.
    pub records: Vec<DurableUpdate<KvCommand>>,
    /// Log records written after them but not synced: read back by a restart, lost
    /// (all or a suffix) in a power loss.
    pub cached: Vec<DurableUpdate<KvCommand>>,
    /// The latest durable snapshot.
    pub snapshot: Option<Snapshot<KvStore>>,
    /// The node's current life.
    pub life: u64,
}

impl Platter {
    /// What a node restarting from this disk reads back: its snapshot and the fold of
    /// its log, durable records and cached ones alike (a file read cannot tell them
    /// apart).
    pub fn recover(&self) -> (Snapshot<KvStore>, DurableState<KvCommand>) {
        let snapshot = self
            .snapshot
            .clone()
            .unwrap_or_else(|| Snapshot::initial(KvStore::default()));
        let mut durable = DurableState::default();
        for record in self.records.iter().chain(&self.cached) {
            durable.apply(record);
        }
        (snapshot, durable)
    }

    /// The power fails: of the records cached and not synced, a prefix of `kept`
    /// reached the platter, the rest is lost. Returns how many were lost.
    pub fn power_loss(&mut self, kept: usize) -> usize {
        let kept = kept.min(self.cached.len());
        let lost = self.cached.len() - kept;
        let reached: Vec<_> = self.cached.drain(..).take(kept).collect();
        self.records.extend(reached);
        lost
    }
}

/// One node's disk, shared between the simulation and the node's storage handle.
pub type SharedPlatter = Arc<Mutex<Platter>>;

/// The storage a simulated node writes through: appends are buffered until `sync`,
/// which may fail when the seed says so (the node then stops, as on a real disk
/// error).
pub struct SimStorage {
    platter: SharedPlatter,
    life: u64,
    pending: Vec<DurableUpdate<KvCommand>>,
    rewrite: Option<DurableState<KvCommand>>,
    staged: Option<Snapshot<KvStore>>,
    /// Chance in a million that a sync fails (shared: healing sets it to 0).
    sync_failure_ppm: Arc<AtomicU32>,
    /// How long a sync takes, in microseconds of simulated time (shared).
    sync_micros: Arc<AtomicU64>,
    rng: StdRng,
}

impl SimStorage {
    /// A handle for the node's current life on `platter`.
    pub fn new(
        platter: SharedPlatter,
        sync_failure_ppm: Arc<AtomicU32>,
        sync_micros: Arc<AtomicU64>,
        rng: StdRng,
    ) -> Self {
        let life = platter.lock().unwrap_or_else(|e| e.into_inner()).life;
        SimStorage {
            platter,
            life,
            pending: Vec::new(),
            rewrite: None,
            staged: None,
            sync_failure_ppm,
            sync_micros,
            rng,
        }
    }
}

impl SimStorage {
    /// The write before an fsync: appended records go to the page cache, where they
    /// survive a process crash (a staged rewrite goes to its new file at the fsync).
    fn write_to_cache(&mut self) {
        if self.rewrite.is_some() {
            return;
        }
        let mut platter = lock(&self.platter);
        if platter.life == self.life {
            platter.cached.append(&mut self.pending);
        }
    }
}

fn lock(platter: &SharedPlatter) -> std::sync::MutexGuard<'_, Platter> {
    platter.lock().unwrap_or_else(|e| e.into_inner())
}

impl Storage<KvStore> for SimStorage {
    fn append(&mut self, update: &DurableUpdate<KvCommand>) -> Result<(), StorageError> {
        self.pending.push(update.clone());
        Ok(())
    }

    fn stage_snapshot(&mut self, snapshot: Snapshot<KvStore>) {
        self.staged = Some(snapshot);
    }

    fn stage_rewrite(&mut self, state: &DurableState<KvCommand>) -> Result<(), StorageError> {
        self.pending.clear();
        self.rewrite = Some(state.clone());
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        // The write comes first (`begin_sync` did it, unless this sync did not go
        // through the loop), then the fsync, which may fail.
        self.write_to_cache();
        if self.rng.random_range(0..1_000_000) < self.sync_failure_ppm.load(Ordering::Relaxed) {
            // What was written stays in the page cache, not synced, and the node must
            // stop.
            return Err(StorageError::Wal(WalError::Io {
                path: "simulated-disk".into(),
                source: std::io::Error::other("simulated fsync failure"),
            }));
        }
        let mut platter = lock(&self.platter);
        if platter.life != self.life {
            return Ok(()); // A handle of a crashed life: the process is gone.
        }
        if let Some(snapshot) = self.staged.take() {
            platter.snapshot = Some(snapshot);
        }
        if let Some(state) = self.rewrite.take() {
            // A rewrite is a new file made durable and renamed over the old one.
            platter.records = state.rebuild().chain(self.pending.drain(..)).collect();
            platter.cached.clear();
        }
        let cached = std::mem::take(&mut platter.cached);
        platter.records.extend(cached);
        Ok(())
    }

    fn log_bytes(&self) -> u64 {
        // Records, not bytes: a small `snapshot_log_bytes` then makes nodes compact.
        let platter = lock(&self.platter);
        (platter.records.len() + platter.cached.len() + self.pending.len()) as u64
    }

    fn begin_sync(&mut self) -> Duration {
        self.write_to_cache();
        Duration::from_micros(self.sync_micros.load(Ordering::Relaxed))
    }

    fn snapshot_saver(&self) -> SnapshotSaver<KvStore> {
        let (platter, life) = (self.platter.clone(), self.life);
        Arc::new(move |snapshot: &Snapshot<KvStore>| {
            let mut platter = lock(&platter);
            let newer = platter
                .snapshot
                .as_ref()
                .is_none_or(|s| s.slot < snapshot.slot);
            if platter.life == life && newer {
                platter.snapshot = Some(snapshot.clone());
            }
            Ok(())
        })
    }
}
