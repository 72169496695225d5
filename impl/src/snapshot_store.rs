//! Snapshot files: the state machine at one slot, so the write-ahead log can drop the
//! slots before it.
//!
//! Each snapshot is its own file, `<dir>/snapshot-<slot>.bin`, written to a temporary
//! name, fsync'd, renamed into place and the directory fsync'd: a crash leaves either
//! the complete file or none. Distinct names mean a snapshot saved in the background and
//! one installed from the leader never overwrite each other; start-up takes the newest,
//! and older ones are removed once the log no longer needs them.
//!
//! # On-disk format
//!
//! ```text
//! header  : b"BALLOTSN" (8 bytes) | format version, u32 LE (= 4)
//!         | slot, u64 LE | payload length, u64 LE | crc32c(payload), u32 LE
//! payload : postcard(Snapshot<S>)
//! ```

use crate::wal::replace_durably;
use ballot_model::{ClientTable, Membership, Slot, Snapshot, StateMachine};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

const MAGIC: [u8; 8] = *b"BALLOTSN";
/// The snapshot file format this build writes and reads (in the header, after the
/// magic); a file of another version is refused as corrupt.
pub const FORMAT_VERSION: u32 = 4;
const HEADER_LEN: usize = 8 + 4 + 8 + 8 + 4;
const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".bin";

/// Why a snapshot could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A file-system call failed.
    #[error("snapshot i/o error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A snapshot file is damaged. Start-up stops: the log may have been compacted on
    /// the strength of this file, so skipping it could lose committed slots.
    #[error("corrupt snapshot {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The snapshot could not be encoded.
    #[error("could not encode a snapshot: {0}")]
    Encode(String),
}

/// A snapshot by reference: encodes exactly as [`Snapshot`] does (same fields, same
/// order), so the node can encode its live state without copying it first.
#[derive(Serialize)]
#[serde(bound(serialize = "ClientTable<S>: Serialize"))]
struct SnapshotRef<'a, S: StateMachine> {
    slot: Slot,
    table: &'a ClientTable<S>,
    members: &'a Membership,
}

/// Encodes the applied state `table` and membership `members` at `slot` as a snapshot
/// payload, without cloning them. Cheaper in time and far cheaper in memory than
/// cloning a large state machine (one buffer, released whole, instead of a copy of
/// every key).
pub fn encode<S: StateMachine + Serialize>(
    slot: Slot,
    table: &ClientTable<S>,
    members: &Membership,
) -> Result<Vec<u8>, SnapshotError>
where
    S::Output: Serialize,
{
    postcard::to_stdvec(&SnapshotRef {
        slot,
        table,
        members,
    })
    .map_err(|e| SnapshotError::Encode(e.to_string()))
}

/// Where snapshots are kept: a directory (the node's data directory).
///
/// ```
/// use ballot_model::{Register, Snapshot};
/// use ballot_node::snapshot_store::SnapshotDir;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("ballot-snap-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let store = SnapshotDir::new(&dir);
/// assert!(store.latest::<Register>()?.is_none());
/// let mut snapshot = Snapshot::initial(Register::default());
/// snapshot.slot = 7;
/// store.save(&snapshot)?;
/// assert_eq!(store.latest::<Register>()?, Some(snapshot));
/// std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct SnapshotDir {
    dir: PathBuf,
}

impl SnapshotDir {
    /// Snapshots in `dir` (which must exist).
    pub fn new(dir: &Path) -> Self {
        SnapshotDir {
            dir: dir.to_path_buf(),
        }
    }

    fn path_for(&self, slot: Slot) -> PathBuf {
        // Zero-padded so that names sort like slots.
        self.dir.join(format!("{PREFIX}{slot:020}{SUFFIX}"))
    }

    /// Writes `snapshot` durably: when this returns `Ok`, it survives a crash.
    pub fn save<S: StateMachine + Serialize>(
        &self,
        snapshot: &Snapshot<S>,
    ) -> Result<(), SnapshotError>
    where
        S::Output: Serialize,
    {
        let payload =
            postcard::to_stdvec(snapshot).map_err(|e| SnapshotError::Encode(e.to_string()))?;
        self.save_encoded(snapshot.slot, &payload)
    }

    /// Writes an already encoded snapshot of `slot` durably.
    pub fn save_encoded(&self, slot: Slot, payload: &[u8]) -> Result<(), SnapshotError> {
        let path = self.path_for(slot);
        let tmp = path.with_extension("tmp");
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        header.extend_from_slice(&slot.to_le_bytes());
        header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        header.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
        replace_durably(&path, &tmp, &[&header, payload])
            .map_err(|(path, source)| SnapshotError::Io { path, source })
    }

    /// Slots of the snapshot files present, ascending. Leftover temporary files (a
    /// save cut short by a crash) are not snapshots and are ignored.
    fn slots(&self) -> Result<Vec<Slot>, SnapshotError> {
        let entries = fs::read_dir(&self.dir).map_err(|source| SnapshotError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut slots = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let slot = name
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.strip_suffix(SUFFIX))
                .and_then(|digits| digits.parse::<Slot>().ok());
            if let Some(slot) = slot {
                slots.push(slot);
            }
        }
        slots.sort_unstable();
        Ok(slots)
    }

    /// Whether the directory holds any snapshot file (an unreadable or missing
    /// directory holds none).
    pub fn has_any(&self) -> bool {
        self.slots().is_ok_and(|slots| !slots.is_empty())
    }

    /// The newest snapshot, checked and decoded; `None` if there is none.
    ///
    /// # Errors
    ///
    /// [`SnapshotError::Corrupt`] if the newest file is damaged (wrong magic, version
    /// or slot, short, checksum mismatch, undecodable): never silently an older one.
    pub fn latest<S: StateMachine + DeserializeOwned>(
        &self,
    ) -> Result<Option<Snapshot<S>>, SnapshotError>
    where
        S::Output: DeserializeOwned,
    {
        let Some(slot) = self.slots()?.last().copied() else {
            return Ok(None);
        };
        let path = self.path_for(slot);
        let corrupt = |reason: String| SnapshotError::Corrupt {
            path: path.clone(),
            reason,
        };
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut file| file.read_to_end(&mut bytes))
            .map_err(|source| SnapshotError::Io {
                path: path.clone(),
                source,
            })?;
        if bytes.len() < HEADER_LEN {
            return Err(corrupt(format!(
                "{} bytes, shorter than its header",
                bytes.len()
            )));
        }
        let (header, payload) = bytes.split_at(HEADER_LEN);
        let u32_at =
            |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().unwrap_or([0; 4]));
        let u64_at =
            |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap_or([0; 8]));
        if header[..8] != MAGIC {
            return Err(corrupt("not a ballot snapshot (bad magic)".into()));
        }
        if u32_at(8) != FORMAT_VERSION {
            return Err(corrupt(format!("unsupported format version {}", u32_at(8))));
        }
        if u64_at(12) != slot {
            return Err(corrupt(format!(
                "header says slot {}, name says {slot}",
                u64_at(12)
            )));
        }
        if u64_at(20) != payload.len() as u64 {
            return Err(corrupt(format!(
                "header says {} payload bytes, file has {}",
                u64_at(20),
                payload.len()
            )));
        }
        if u32_at(28) != crc32c::crc32c(payload) {
            return Err(corrupt("payload checksum mismatch".into()));
        }
        let (snapshot, rest): (Snapshot<S>, _) =
            postcard::take_from_bytes(payload).map_err(|e| corrupt(format!("undecodable: {e}")))?;
        if !rest.is_empty() {
            return Err(corrupt(format!("{} bytes after the snapshot", rest.len())));
        }
        if snapshot.slot != slot {
            return Err(corrupt(format!("payload is of slot {}", snapshot.slot)));
        }
        Ok(Some(snapshot))
    }

    /// Removes snapshot files older than `slot` (and leftover temporary files): the log
    /// is compacted through `slot`, so nothing can need them.
    pub fn remove_older(&self, slot: Slot) -> Result<(), SnapshotError> {
        for old in self.slots()?.into_iter().filter(|s| *s < slot) {
            let path = self.path_for(old);
            fs::remove_file(&path).map_err(|source| SnapshotError::Io { path, source })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballot_model::{ClientTable, Register, Request};

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ballot-snap-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn snapshot(slot: Slot, value: u8) -> Snapshot<Register> {
        let mut table = ClientTable::new(Register::default());
        table.apply(
            &Request {
                client: 1,
                seq: 1,
                command: value,
            },
            usize::MAX,
        );
        Snapshot {
            slot,
            table,
            members: ballot_model::ClusterConfig::new(3).bootstrap(),
        }
    }

    #[test]
    fn newest_wins_and_older_ones_are_removed() {
        let dir = temp_dir("newest");
        let store = SnapshotDir::new(&dir);
        store.save(&snapshot(3, 1)).unwrap();
        store.save(&snapshot(12, 2)).unwrap();
        store.save(&snapshot(9, 3)).unwrap(); // a slow background save, finishing late
        assert_eq!(store.latest::<Register>().unwrap(), Some(snapshot(12, 2)));
        store.remove_older(12).unwrap();
        assert_eq!(store.slots().unwrap(), vec![12]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_snapshot_encoded_by_reference_decodes_as_the_owned_one() {
        let owned = snapshot(4, 9);
        let bytes = encode(owned.slot, &owned.table, &owned.members).unwrap();
        assert_eq!(postcard::to_stdvec(&owned).unwrap(), bytes);
        let back: Snapshot<Register> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, owned);
    }

    #[test]
    fn damage_is_refused_with_the_file_named() {
        let dir = temp_dir("damage");
        let store = SnapshotDir::new(&dir);
        store.save(&snapshot(5, 1)).unwrap();
        let path = store.path_for(5);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let error = store.latest::<Register>().unwrap_err().to_string();
        assert!(error.contains("checksum"), "{error}");
        assert!(
            error.contains("snapshot-00000000000000000005.bin"),
            "{error}"
        );
        fs::write(&path, &bytes[..10]).unwrap();
        let error = store.latest::<Register>().unwrap_err().to_string();
        assert!(error.contains("shorter than its header"), "{error}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
