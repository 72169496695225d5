//! A simulated disk: what a node appended is kept apart from what it synced, so a
//! crash loses exactly what a real one would (a crash during a slow fsync included),
//! and a seed can make an fsync slow or fail.

use ballot_model::{DurableState, DurableUpdate, Snapshot};
use ballot_node::kv::{KvCommand, KvStore};
use ballot_node::wal::WalError;
use ballot_node::world::{SnapshotSaver, Storage, StorageError};
use rand::rngs::StdRng;
use rand::Rng;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What survives a crash of one node: the synced log records and the latest saved
/// snapshot. `life` counts the node's starts; storage handles of an earlier life (a
/// background snapshot save that outlived its crash) write nothing.
#[derive(Debug, Default)]
pub struct Platter {
    /// Durable log records, in order.
    pub records: Vec<DurableUpdate<KvCommand>>,
    /// The latest durable snapshot.
    pub snapshot: Option<Snapshot<KvStore>>,
    /// The node's current life.
    pub life: u64,
}

impl Platter {
    /// What a node restarting from this disk recovers: its snapshot and the fold of
    /// its durable records.
    pub fn recover(&self) -> (Snapshot<KvStore>, DurableState<KvCommand>) {
        let snapshot = self
            .snapshot
            .clone()
            .unwrap_or_else(|| Snapshot::initial(KvStore::default()));
        let mut durable = DurableState::default();
        for record in &self.records {
            durable.apply(record);
        }
        (snapshot, durable)
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
        if self.rng.random_range(0..1_000_000) < self.sync_failure_ppm.load(Ordering::Relaxed) {
            // Nothing pending became durable, and the node must stop.
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
            platter.records = state.rebuild().collect();
        }
        platter.records.append(&mut self.pending);
        Ok(())
    }

    fn log_bytes(&self) -> u64 {
        // Records, not bytes: a small `snapshot_log_bytes` then makes nodes compact.
        (lock(&self.platter).records.len() + self.pending.len()) as u64
    }

    fn simulated_sync_latency(&mut self) -> Duration {
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
