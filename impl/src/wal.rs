//! The write-ahead log: makes the core's [`DurableUpdate`]s survive a crash.
//!
//! The sans-IO core emits `Effect::Persist(update)`; the runtime must have every such
//! update written *and* fsync'd before it performs any later send, because a promise or
//! a vote that a peer has seen but the disk has forgotten is exactly how Paxos loses a
//! chosen value. [`Wal::append`] buffers an update in memory and [`Wal::sync`] writes
//! everything buffered with one `write` and one `fdatasync`, so a burst of updates from
//! one step (or many steps) shares a single fsync: group commit.
//!
//! On start-up [`Wal::open`] replays the log, folding each record with
//! [`DurableState::apply`], and decides what to do about damage: a torn tail (the
//! expected result of a crash mid-write) is cut off, anything else is refused. See
//! [`Wal::open`] for the exact rules.
//!
//! # On-disk format
//!
//! One file, `<dir>/wal.log`:
//!
//! ```text
//! file header : b"BALLOTWL" (8 bytes) | format version, u32 LE (= 3)
//! record      : payload length, u32 LE
//!             | crc32c(payload), u32 LE
//!             | crc32c(the 8 bytes above), u32 LE
//!             | payload = postcard(DurableUpdate<C>)
//! ```
//!
//! The header has its own checksum so that a damaged length field is recognised as
//! damage before it is trusted to say where the next record starts.

use ballot_model::{DurableState, DurableUpdate};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

// The largest payload a record may carry. Appending a larger update fails with
// `WalError::RecordTooLarge`; a header on disk that claims a larger payload is
// corruption (the writer never produces one), which also bounds what recovery
// allocates on the word of an on-disk length field.
use crate::limits::RECORD_BYTES_MAX;

/// Name of the log file inside the directory passed to [`Wal::open`].
pub const FILE_NAME: &str = "wal.log";

/// First bytes of every log file: recognises a ballot log (and not some other file).
const MAGIC: [u8; 8] = *b"BALLOTWL";

/// The on-disk format this build writes and reads.
const FORMAT_VERSION: u32 = 3;

/// Length of the file header: magic plus version.
const FILE_HEADER_LEN: usize = 12;

/// Length of a record header: length, payload checksum, header checksum.
const RECORD_HEADER_LEN: usize = 12;

/// Above this capacity the append buffer is shrunk after a sync, so one unusually large
/// group commit does not pin its memory for the life of the process.
const KEEP_BUFFER_CAPACITY: usize = 1 << 20;

/// Chunk size for scanning a tail for zeros.
const SCAN_CHUNK: usize = 64 << 10;

/// Why the log could not be opened, written or synced.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// An operating-system call on the log (or its directory) failed.
    #[error("I/O error on write-ahead log {}: {source}", path.display())]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The log holds damage that is not a torn tail; recovery refuses to guess.
    #[error(
        "corrupt write-ahead log {} at byte {offset}: {reason}; refusing to start",
        path.display()
    )]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// Byte offset of the damaged record (or header field) in the file.
        offset: u64,
        /// What was wrong there.
        reason: String,
    },
    /// An update encodes to more than [`RECORD_BYTES_MAX`].
    #[error(
        "write-ahead log record of {bytes} bytes exceeds the limit of {RECORD_BYTES_MAX} bytes"
    )]
    RecordTooLarge {
        /// The encoded size of the rejected update.
        bytes: usize,
    },
    /// An earlier write or fsync failed; the log refuses all further work.
    #[error(
        "write-ahead log is unusable after an earlier write or fsync failure; \
         the node must restart and recover from disk"
    )]
    Poisoned,
    /// An update could not be encoded (its `Serialize` impl failed).
    #[error("could not encode a write-ahead log record: {0}")]
    Encode(String),
}

/// What [`Wal::open`] found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered<C> {
    /// Every intact record folded, in order, with [`DurableState::apply`].
    pub durable: DurableState<C>,
    /// How many records were replayed.
    pub records: u64,
    /// Bytes cut off a torn tail (0 if the log ended cleanly).
    pub truncated_bytes: u64,
}

/// An append-only, checksummed, group-committed log of [`DurableUpdate`]s in one file.
///
/// Updates are buffered by [`append`](Wal::append) and become durable at the next
/// successful [`sync`](Wal::sync); the caller must not let any effect that depends on an
/// update (a send, a reply) happen before that sync returns `Ok`. If a write or fsync
/// fails the log is poisoned: every later call returns [`WalError::Poisoned`], because
/// after a failed fsync the kernel may have dropped the dirty pages and a retry could
/// "succeed" without the data ever reaching the disk. The only safe response is to stop
/// the node and recover from what the disk actually holds.
///
/// One process must own a log directory at a time; nothing here locks it.
///
/// ```
/// use ballot_model::{Ballot, DurableUpdate};
/// use ballot_node::wal::Wal;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("ballot-wal-doc-{}", std::process::id()));
/// let (mut wal, recovered) = Wal::open::<u64>(&dir)?;
/// assert_eq!(recovered.records, 0);
///
/// wal.append(&DurableUpdate::<u64>::Promise(Ballot::new(1, 0)))?;
/// wal.sync()?; // durable from here on
/// drop(wal);
///
/// let (_wal, recovered) = Wal::open::<u64>(&dir)?;
/// assert_eq!(recovered.records, 1);
/// assert_eq!(recovered.durable.promised, Ballot::new(1, 0));
/// std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
pub struct Wal {
    /// `<dir>/wal.log`, for error messages.
    path: PathBuf,
    /// Open for writing, positioned at the end of the durable log.
    file: File,
    /// Encoded records appended since the last sync.
    pending: Vec<u8>,
    /// File length covered by the last successful sync (or by recovery).
    synced_len: u64,
    /// Records in the log, including those still pending.
    records: u64,
    /// Set when a write or fsync failed: see the type-level docs.
    poisoned: bool,
    /// Set by [`Wal::stage_rewrite`]: `pending` holds a whole new log (records only),
    /// which the next sync writes as a fresh file that replaces this one.
    rewrite: bool,
    /// Set when [`Wal::open`] read records back: a process that crashed between a
    /// write and its fsync leaves the bytes in the OS's page cache, where this open
    /// read them, yet a power loss can still take them. The next sync fsyncs even with
    /// nothing pending, so that nothing read back is acted on before it is durable.
    unsynced_read_back: bool,
}

impl fmt::Debug for Wal {
    // Hand-written so that debugging output does not dump the pending bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal")
            .field("path", &self.path)
            .field("len_bytes", &self.len_bytes())
            .field("records", &self.records)
            .field("pending_bytes", &self.pending.len())
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

/// Where the scan of the records stopped.
enum ScanEnd {
    /// The log ended exactly at the end of a record.
    Clean,
    /// A torn tail starts at `offset`; `reason` says which kind.
    Torn { offset: u64, reason: &'static str },
}

impl Wal {
    /// Opens (creating if needed) the log in `dir` and replays it.
    ///
    /// Creates `dir` if it does not exist. A new log gets its file header, and both the
    /// file and the directory are fsync'd before this returns, so the log's existence is
    /// itself durable. An existing log is replayed record by record into
    /// [`Recovered::durable`]; the returned [`Wal`] appends after the last intact record.
    ///
    /// # Damage
    ///
    /// A crash in the middle of a [`sync`](Wal::sync) can leave the *last* record
    /// partially written. That — a **torn tail** — is expected: a sync that never
    /// returned cannot have been acted on. It is cut off (`set_len` + fsync), a `warn!`
    /// names the file, the offset and the number of bytes dropped, and recovery
    /// continues. (A last record that was synced and later rotted on disk looks the
    /// same and is dropped too; no checksum can tell the two apart.) A record starting
    /// at offset `o` is a torn tail when:
    ///
    /// * fewer than 12 bytes remain from `o` (an incomplete record header);
    /// * its header checksum is valid but its payload runs past the end of the file;
    /// * its header checksum is valid, its payload checksum is not, and the record ends
    ///   exactly at the end of the file (it is the last record);
    /// * its header checksum is invalid and every byte from `o` to the end of the file is
    ///   zero (a zero-filled or preallocated tail).
    ///
    /// Anything else is refused with [`WalError::Corrupt`], naming the file and the
    /// offset, and the file is left untouched: a bad header checksum followed by
    /// non-zero bytes, a payload checksum failure with more data after the record, a
    /// checksummed payload that does not decode (or has bytes left over), a length field
    /// above [`RECORD_BYTES_MAX`], or a bad magic number or format version. Such damage
    /// is not what a crash produces, and "repairing" it could silently drop a record a
    /// peer was told was durable — a promise or a vote — which would break Paxos's
    /// safety. An operator has to look.
    ///
    /// A file shorter than the 12-byte file header whose bytes are a prefix of the
    /// header (or all zero), including an empty file, is a creation interrupted by a
    /// crash; it cannot hold records, so its header is rewritten (with a warning).
    ///
    /// # Errors
    ///
    /// [`WalError::Corrupt`] as above; [`WalError::Io`] if a file-system call fails.
    pub fn open<C>(dir: &Path) -> Result<(Wal, Recovered<C>), WalError>
    where
        C: Serialize + DeserializeOwned + Clone,
    {
        create_dir_durably(dir)?;
        let path = dir.join(FILE_NAME);
        let io_err = |source| WalError::Io {
            path: path.clone(),
            source,
        };

        let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let file = create_log(&path, dir)?;
                let wal = Wal::at_end(path, file, FILE_HEADER_LEN as u64, 0);
                return Ok((wal, empty_recovery()));
            }
            Err(e) => return Err(io_err(e)),
        };
        let file_len = file.metadata().map_err(io_err)?.len();

        if file_len < FILE_HEADER_LEN as u64 {
            reinit_short_file(&path, &mut file, file_len)?;
            let wal = Wal::at_end(path, file, FILE_HEADER_LEN as u64, 0);
            return Ok((wal, empty_recovery()));
        }

        let mut durable = empty_state();
        let mut records = 0u64;
        let (end, scan_end) = {
            let mut reader = BufReader::with_capacity(SCAN_CHUNK, &file);
            check_file_header(&path, &mut reader)?;
            scan_records(&path, &mut reader, file_len, |update: DurableUpdate<C>| {
                durable.apply(&update);
                records += 1;
            })?
        };

        let mut truncated_bytes = 0;
        if let ScanEnd::Torn { offset, reason } = scan_end {
            truncated_bytes = file_len - offset;
            tracing::warn!(
                path = %path.display(),
                offset,
                dropped_bytes = truncated_bytes,
                reason,
                "write-ahead log {} has a torn tail at byte {offset} ({reason}); \
                 truncating {truncated_bytes} bytes",
                path.display(),
            );
            // The dropped bytes were never acknowledged by a successful sync, so no one
            // can have acted on them; cutting them off makes the next append land where
            // a reader will look for it.
            file.set_len(offset).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
        }
        debug_assert_eq!(end, file_len - truncated_bytes);
        // The scan read through a shared handle (and past `end` when it buffered), so
        // put the write position back where the next record belongs.
        file.seek(SeekFrom::Start(end)).map_err(io_err)?;

        let mut wal = Wal::at_end(path, file, end, records);
        wal.unsynced_read_back = records > 0;
        let recovered = Recovered {
            durable,
            records,
            truncated_bytes,
        };
        Ok((wal, recovered))
    }

    /// Wraps an open log file whose first `len` bytes are intact records.
    fn at_end(path: PathBuf, file: File, len: u64, records: u64) -> Wal {
        Wal {
            path,
            file,
            pending: Vec::new(),
            synced_len: len,
            records,
            poisoned: false,
            rewrite: false,
            unsynced_read_back: false,
        }
    }

    /// Stages a rewrite of the whole log as the records that rebuild `state`, dropping
    /// whatever was appended before (pending or synced): `state` must already include
    /// it. The next [`sync`](Wal::sync) writes the new log to a temporary file, fsyncs
    /// it and renames it over the old one, so a crash leaves either log intact, never a
    /// mix. This is how the log shrinks after compaction.
    ///
    /// # Errors
    ///
    /// As [`append`](Wal::append).
    pub fn stage_rewrite<C: Serialize + Clone>(
        &mut self,
        state: &DurableState<C>,
    ) -> Result<(), WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        self.pending.clear();
        self.records = 0;
        self.rewrite = true;
        for update in state.rebuild() {
            self.append(&update)?;
        }
        Ok(())
    }

    /// Buffers `update` as a record; it becomes durable at the next successful
    /// [`sync`](Wal::sync). Makes no system call.
    ///
    /// # Errors
    ///
    /// [`WalError::Poisoned`] after a failed write or fsync;
    /// [`WalError::RecordTooLarge`] if the update encodes to more than
    /// [`RECORD_BYTES_MAX`]; [`WalError::Encode`] if it cannot be encoded. On the last
    /// two the log is unchanged and still usable.
    pub fn append<C: Serialize>(&mut self, update: &DurableUpdate<C>) -> Result<(), WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        let start = self.pending.len();
        // Encode straight into the pending buffer behind a placeholder header, then fill
        // the header in: no temporary allocation per record.
        self.pending.extend_from_slice(&[0; RECORD_HEADER_LEN]);
        if let Err(e) = postcard::to_io(update, &mut self.pending) {
            self.pending.truncate(start);
            return Err(WalError::Encode(e.to_string()));
        }
        let payload_start = start + RECORD_HEADER_LEN;
        let bytes = self.pending.len() - payload_start;
        let len = match u32::try_from(bytes) {
            Ok(len) if bytes <= RECORD_BYTES_MAX => len,
            _ => {
                self.pending.truncate(start);
                return Err(WalError::RecordTooLarge { bytes });
            }
        };
        let header = record_header(len, crc32c::crc32c(&self.pending[payload_start..]));
        self.pending[start..payload_start].copy_from_slice(&header);
        self.records += 1;
        Ok(())
    }

    /// Writes every pending record with one `write_all` and makes it durable with
    /// `sync_data`. Does nothing (and succeeds) if nothing is pending, except the first
    /// time after [`Wal::open`] read records back: those may have been written and never
    /// synced, so it fsyncs them.
    ///
    /// # Errors
    ///
    /// [`WalError::Io`] if the write or the fsync fails, after which the log is poisoned
    /// and every later call returns [`WalError::Poisoned`]: the pending updates may or
    /// may not be on disk, and retrying cannot tell.
    pub fn sync(&mut self) -> Result<(), WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        if self.rewrite {
            return self.sync_rewrite();
        }
        if self.pending.is_empty() && !self.unsynced_read_back {
            return Ok(());
        }
        let result = self
            .file
            .write_all(&self.pending)
            .and_then(|()| self.file.sync_data());
        self.unsynced_read_back = false;
        if let Err(source) = result {
            self.poisoned = true;
            return Err(WalError::Io {
                path: self.path.clone(),
                source,
            });
        }
        self.synced_len += self.pending.len() as u64;
        self.pending.clear();
        if self.pending.capacity() > KEEP_BUFFER_CAPACITY {
            self.pending.shrink_to(KEEP_BUFFER_CAPACITY);
        }
        Ok(())
    }

    /// Writes a staged rewrite: header and records to `wal.log.tmp`, fsync, rename over
    /// `wal.log`, fsync the directory. Appends then continue on the new file.
    fn sync_rewrite(&mut self) -> Result<(), WalError> {
        let tmp = self.path.with_extension("log.tmp");
        let dir = self.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let written = (|| -> io::Result<File> {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            file.write_all(&file_header())?;
            file.write_all(&self.pending)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            Ok(file)
        })();
        let file = match written {
            Ok(file) => file,
            Err(source) => {
                self.poisoned = true;
                return Err(WalError::Io { path: tmp, source });
            }
        };
        if let Err(error) = sync_dir(&dir) {
            self.poisoned = true;
            return Err(error);
        }
        // The old log is unlinked but still open here: closing it frees its blocks
        // (tens of megabytes), which can take longer than an election timeout. That is
        // no business of the log's writer; let another thread wait for it.
        let old = std::mem::replace(&mut self.file, file);
        std::thread::spawn(move || drop(old));
        self.synced_len = (FILE_HEADER_LEN + self.pending.len()) as u64;
        self.pending.clear();
        self.rewrite = false;
        self.unsynced_read_back = false;
        if self.pending.capacity() > KEEP_BUFFER_CAPACITY {
            self.pending.shrink_to(KEEP_BUFFER_CAPACITY);
        }
        Ok(())
    }

    /// Length of the log in bytes, file header included, counting pending records: the
    /// file's length after the next successful [`sync`](Wal::sync).
    pub fn len_bytes(&self) -> u64 {
        let base = if self.rewrite {
            FILE_HEADER_LEN as u64
        } else {
            self.synced_len
        };
        base + self.pending.len() as u64
    }

    /// Number of records in the log: those replayed at open plus those appended since,
    /// pending ones included.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes appended but not yet made durable by [`sync`](Wal::sync).
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// The log file, `<dir>/wal.log`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The recovery result for a log with no records.
fn empty_recovery<C>() -> Recovered<C> {
    Recovered {
        durable: empty_state(),
        records: 0,
        truncated_bytes: 0,
    }
}

/// The state before any record: written out because `DurableState`'s derived `Default`
/// would demand `C: Default`, which the log has no reason to require.
fn empty_state<C>() -> DurableState<C> {
    DurableState::default()
}

/// The 12-byte file header.
fn file_header() -> [u8; FILE_HEADER_LEN] {
    let mut header = [0; FILE_HEADER_LEN];
    header[..8].copy_from_slice(&MAGIC);
    header[8..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header
}

/// The 12-byte header of a record with a `len`-byte payload whose checksum is `crc`.
fn record_header(len: u32, crc: u32) -> [u8; RECORD_HEADER_LEN] {
    let mut header = [0; RECORD_HEADER_LEN];
    header[0..4].copy_from_slice(&len.to_le_bytes());
    header[4..8].copy_from_slice(&crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&header[0..8]);
    header[8..12].copy_from_slice(&header_crc.to_le_bytes());
    header
}

/// Reads the little-endian `u32` at `at` in a 12-byte header.
fn le_u32(bytes: &[u8; 12], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Creates `dir` (and its ancestors) if missing; if it had to create `dir`, fsyncs its
/// parent so the new directory entry survives a crash. (Ancestors created along the way
/// are not fsync'd: deployments are expected to provide the data directory's parent.)
fn create_dir_durably(dir: &Path) -> Result<(), WalError> {
    let io_err = |source| WalError::Io {
        path: dir.to_path_buf(),
        source,
    };
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(io_err)?;
    let parent = match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    sync_dir(parent)
}

/// Fsyncs a directory, making entries created in it durable.
#[cfg(unix)]
pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| WalError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// Directories cannot be opened for fsync here; the platform makes entries durable
/// with the file's own metadata.
#[cfg(not(unix))]
pub(crate) fn sync_dir(_dir: &Path) -> Result<(), WalError> {
    Ok(())
}

/// Replaces `path` with the concatenation of `parts`, durably: written to `tmp`,
/// fsync'd, renamed over `path`, then the directory fsync'd, so a crash leaves the old
/// file or the new one, never a mix. The one home of that sequence for whole small
/// files (snapshots, the identity and peers files). On failure: the file or directory
/// the failing call was about, and why.
pub(crate) fn replace_durably(
    path: &Path,
    tmp: &Path,
    parts: &[&[u8]],
) -> Result<(), (PathBuf, io::Error)> {
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |error| (path, error)
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(at(tmp))?;
    for part in parts {
        file.write_all(part).map_err(at(tmp))?;
    }
    file.sync_all().map_err(at(tmp))?;
    drop(file);
    fs::rename(tmp, path).map_err(at(path))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    sync_dir(dir).map_err(|e| (dir.to_path_buf(), io::Error::other(e.to_string())))
}

/// Creates a new, empty log: header written, file and directory fsync'd.
fn create_log(path: &Path, dir: &Path) -> Result<File, WalError> {
    let io_err = |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    };
    // `create_new`: if another process created the file since we looked, fail rather
    // than write a header over its records.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err)?;
    file.write_all(&file_header()).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    // Without this, a crash could lose the directory entry and with it the whole log,
    // after a caller had already been told its first updates were durable.
    sync_dir(dir)?;
    Ok(file)
}

/// Handles a file shorter than its header: a creation interrupted before the header
/// was durable is rewritten; anything else is refused.
fn reinit_short_file(path: &Path, file: &mut File, file_len: u64) -> Result<(), WalError> {
    let io_err = |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::with_capacity(FILE_HEADER_LEN);
    file.read_to_end(&mut bytes).map_err(io_err)?;
    let header = file_header();
    let interrupted_create = bytes.len() < FILE_HEADER_LEN
        && (header.starts_with(&bytes) || bytes.iter().all(|&b| b == 0));
    if !interrupted_create {
        return Err(WalError::Corrupt {
            path: path.to_path_buf(),
            offset: 0,
            reason: format!(
                "file is {file_len} bytes, shorter than the {FILE_HEADER_LEN}-byte header, \
                 and is not a partially written header"
            ),
        });
    }
    tracing::warn!(
        path = %path.display(),
        file_len,
        "write-ahead log {} is {file_len} bytes, an interrupted creation; rewriting its header",
        path.display(),
    );
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    file.write_all(&header).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    Ok(())
}

/// Checks the magic number and format version at the start of the file.
fn check_file_header(path: &Path, reader: &mut impl Read) -> Result<(), WalError> {
    let mut header = [0; FILE_HEADER_LEN];
    reader
        .read_exact(&mut header)
        .map_err(|source| WalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if header[..8] != MAGIC {
        return Err(WalError::Corrupt {
            path: path.to_path_buf(),
            offset: 0,
            reason: format!(
                "bad magic number {:?} (expected {:?}); not a ballot write-ahead log",
                String::from_utf8_lossy(&header[..8]),
                String::from_utf8_lossy(&MAGIC),
            ),
        });
    }
    let version = le_u32(&header, 8);
    if version != FORMAT_VERSION {
        return Err(WalError::Corrupt {
            path: path.to_path_buf(),
            offset: 8,
            reason: format!(
                "unsupported format version {version} (this build reads version {FORMAT_VERSION})"
            ),
        });
    }
    Ok(())
}

/// Reads records from just after the file header to `file_len`, handing each decoded
/// update to `apply`. Returns the offset just past the last intact record and how the
/// scan ended; returns `Corrupt` for damage that is not a torn tail (see [`Wal::open`]).
fn scan_records<C, R>(
    path: &Path,
    reader: &mut R,
    file_len: u64,
    mut apply: impl FnMut(DurableUpdate<C>),
) -> Result<(u64, ScanEnd), WalError>
where
    C: DeserializeOwned,
    R: Read,
{
    let io_err = |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let corrupt = |offset: u64, reason: String| WalError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let mut offset = FILE_HEADER_LEN as u64;
    loop {
        let remaining = file_len - offset;
        if remaining == 0 {
            return Ok((offset, ScanEnd::Clean));
        }
        if remaining < RECORD_HEADER_LEN as u64 {
            // A write appends; only the last write can stop short of a full header.
            let reason = "incomplete record header";
            return Ok((offset, ScanEnd::Torn { offset, reason }));
        }
        let mut header = [0; RECORD_HEADER_LEN];
        reader.read_exact(&mut header).map_err(io_err)?;

        if crc32c::crc32c(&header[0..8]) != le_u32(&header, 8) {
            // The length cannot be trusted, so we cannot know where a next record would
            // start: only a tail of nothing but zeros (preallocated or zero-filled by
            // the file system after a crash) is safe to call torn.
            if header.iter().all(|&b| b == 0) {
                if let Some(nonzero) =
                    first_nonzero(reader, remaining - header.len() as u64).map_err(io_err)?
                {
                    return Err(corrupt(
                        offset,
                        format!(
                            "record header checksum mismatch, with non-zero data {} bytes \
                             further on",
                            nonzero + header.len() as u64
                        ),
                    ));
                }
                let reason = "zero-filled tail";
                return Ok((offset, ScanEnd::Torn { offset, reason }));
            }
            return Err(corrupt(
                offset,
                "record header checksum mismatch, with non-zero data following".to_string(),
            ));
        }

        let len = le_u32(&header, 0);
        let payload_crc = le_u32(&header, 4);
        let len_bytes = len as usize;
        if len_bytes > RECORD_BYTES_MAX {
            return Err(corrupt(
                offset,
                format!("record length {len} exceeds the limit of {RECORD_BYTES_MAX} bytes"),
            ));
        }
        let record_end = offset + (RECORD_HEADER_LEN as u64) + u64::from(len);
        if record_end > file_len {
            let reason = "record payload extends past the end of the file";
            return Ok((offset, ScanEnd::Torn { offset, reason }));
        }

        // Allocation is bounded by RECORD_BYTES_MAX and by what the file holds.
        let mut payload = vec![0; len_bytes];
        reader.read_exact(&mut payload).map_err(io_err)?;
        if crc32c::crc32c(&payload) != payload_crc {
            if record_end == file_len {
                let reason = "payload checksum mismatch in the last record";
                return Ok((offset, ScanEnd::Torn { offset, reason }));
            }
            return Err(corrupt(
                offset,
                "payload checksum mismatch (record is not the last one)".to_string(),
            ));
        }
        // The checksum says these are the bytes the writer wrote; if they do not decode,
        // the writer and this reader disagree on the format, which no truncation fixes.
        match postcard::take_from_bytes::<DurableUpdate<C>>(&payload) {
            Ok((update, [])) => apply(update),
            Ok((_, rest)) => {
                return Err(corrupt(
                    offset,
                    format!(
                        "checksummed payload has {} undecoded trailing bytes",
                        rest.len()
                    ),
                ))
            }
            Err(e) => {
                return Err(corrupt(
                    offset,
                    format!("checksummed payload does not decode: {e}"),
                ))
            }
        }
        offset = record_end;
    }
}

/// Reads up to `limit` bytes and returns the position of the first non-zero byte, if
/// any.
fn first_nonzero(reader: &mut impl Read, limit: u64) -> io::Result<Option<u64>> {
    let mut chunk = vec![0; SCAN_CHUNK];
    let mut reader = reader.take(limit);
    let mut position = 0u64;
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if let Some(i) = chunk[..n].iter().position(|&b| b != 0) {
            return Ok(Some(position + i as u64));
        }
        position += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballot_model::{AcceptedEntry, Ballot, Proposal, Request};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TestDir(PathBuf);

    impl TestDir {
        fn new() -> TestDir {
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("ballot-wal-test-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            TestDir(dir)
        }

        fn log(&self) -> PathBuf {
            self.0.join(FILE_NAME)
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Captures formatted tracing output for one test.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Capture {
        fn text(&self) -> String {
            let bytes = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }

    /// Runs `f` with tracing output captured; returns its result and the output.
    fn with_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .finish();
        let result = tracing::subscriber::with_default(subscriber, f);
        (result, capture.text())
    }

    fn open(dir: &TestDir) -> Result<(Wal, Recovered<u64>), WalError> {
        Wal::open::<u64>(&dir.0)
    }

    fn request(client: u64, seq: u64, command: u64) -> Request<u64> {
        Request {
            client,
            seq,
            command,
        }
    }

    fn sample_updates() -> Vec<DurableUpdate<u64>> {
        vec![
            DurableUpdate::Promise(Ballot::new(1, 0)),
            DurableUpdate::Accept {
                slot: 1,
                entry: AcceptedEntry {
                    ballot: Ballot::new(1, 0),
                    proposal: Proposal::Batch(vec![request(7, 1, 42), request(8, 3, 99)]),
                },
            },
            DurableUpdate::Accept {
                slot: 2,
                entry: AcceptedEntry {
                    ballot: Ballot::new(2, 1),
                    proposal: Proposal::Noop,
                },
            },
            DurableUpdate::Commit(2),
        ]
    }

    fn fold(updates: &[DurableUpdate<u64>]) -> DurableState<u64> {
        let mut state = DurableState::default();
        for update in updates {
            state.apply(update);
        }
        state
    }

    #[test]
    fn a_rewrite_replaces_the_log_with_the_compacted_state_and_appends_continue() {
        let dir = TestDir::new();
        write_log(&dir, &sample_updates());
        let (mut wal, recovered) = open(&dir).expect("reopen");
        let before = wal.len_bytes();
        let mut state = recovered.durable;
        state.apply(&DurableUpdate::Compact(1));
        wal.stage_rewrite(&state).expect("stage");
        wal.sync().expect("rewrite");
        assert!(wal.len_bytes() < before, "the compacted log is smaller");
        let later = DurableUpdate::Promise(Ballot::new(3, 2));
        wal.append(&later).expect("append after the rewrite");
        wal.sync().expect("sync");
        drop(wal);
        let (_, recovered) = open(&dir).expect("reopen the rewritten log");
        state.apply(&later);
        assert_eq!(recovered.durable, state);
        assert_eq!(recovered.durable.compacted, 1);
        assert!(!recovered.durable.accepted.contains_key(&1));
        assert!(
            !dir.0.join("wal.log.tmp").exists(),
            "no temporary file left"
        );
    }

    /// Writes `updates` to a fresh log and returns each record's start offset.
    fn write_log(dir: &TestDir, updates: &[DurableUpdate<u64>]) -> Vec<u64> {
        let (mut wal, recovered) = open(dir).expect("open fresh log");
        assert_eq!(recovered.records, 0);
        let mut offsets = Vec::new();
        for update in updates {
            offsets.push(wal.len_bytes());
            wal.append(update).expect("append");
        }
        wal.sync().expect("sync");
        offsets
    }

    fn read(path: &Path) -> Vec<u8> {
        fs::read(path).expect("read log file")
    }

    fn expect_corrupt(result: Result<(Wal, Recovered<u64>), WalError>, dir: &TestDir) -> u64 {
        match result {
            Err(WalError::Corrupt { path, offset, .. }) => {
                assert_eq!(path, dir.log());
                offset
            }
            Err(e) => panic!("expected Corrupt, got {e}"),
            Ok((_, recovered)) => panic!("expected Corrupt, opened with {recovered:?}"),
        }
    }

    /// Opens a log with a torn tail, checks what was kept and logged, then appends and
    /// checks that the appended record survives another reopen.
    /// `torn_at` is where the damaged record starts; `updates` are the records written,
    /// the last of them being the damaged one.
    fn check_torn_tail_recovery(dir: &TestDir, updates: &[DurableUpdate<u64>], torn_at: u64) {
        let len_before = read(&dir.log()).len() as u64;
        let (result, logs) = with_logs(|| open(dir));
        let (mut wal, recovered) = result.expect("torn tail must not stop recovery");
        let kept = updates.len() - 1;
        assert_eq!(recovered.records, kept as u64);
        assert_eq!(recovered.durable, fold(&updates[..kept]));
        assert_eq!(recovered.truncated_bytes, len_before - torn_at);
        assert_eq!(read(&dir.log()).len() as u64, torn_at, "file truncated");
        assert_eq!(wal.len_bytes(), torn_at);
        assert!(logs.contains("WARN"), "no warning in {logs:?}");
        assert!(
            logs.contains(&dir.log().display().to_string()),
            "warning does not name the file: {logs:?}"
        );
        assert!(
            logs.contains(&format!("at byte {torn_at}")),
            "warning does not name the offset: {logs:?}"
        );

        let extra = DurableUpdate::Commit(9);
        wal.append(&extra).expect("append after truncation");
        wal.sync().expect("sync after truncation");
        drop(wal);

        let (wal, recovered) = open(dir).expect("reopen after repair");
        let mut expected = updates[..kept].to_vec();
        expected.push(extra);
        assert_eq!(recovered.records, expected.len() as u64);
        assert_eq!(recovered.truncated_bytes, 0);
        assert_eq!(recovered.durable, fold(&expected));
        assert_eq!(wal.records(), expected.len() as u64);
    }

    #[test]
    fn round_trip_across_reopen() {
        let dir = TestDir::new();
        let updates = sample_updates();
        write_log(&dir, &updates);

        let (mut wal, recovered) = open(&dir).expect("reopen");
        assert_eq!(recovered.records, updates.len() as u64);
        assert_eq!(recovered.truncated_bytes, 0);
        assert_eq!(recovered.durable, fold(&updates));
        assert_eq!(recovered.durable.promised, Ballot::new(2, 1));
        assert_eq!(recovered.durable.commit, 2);
        assert_eq!(
            recovered.durable.accepted[&1].proposal.requests(),
            &[request(7, 1, 42), request(8, 3, 99)]
        );
        assert_eq!(wal.records(), updates.len() as u64);
        assert_eq!(wal.len_bytes(), read(&dir.log()).len() as u64);
        // What was read back may never have been synced: the first sync fsyncs it
        // even with nothing appended, and the next one with nothing has nothing to do.
        assert!(wal.unsynced_read_back);
        wal.sync().expect("sync what was read back");
        assert!(!wal.unsynced_read_back);

        // Appending to a reopened log continues after the replayed records.
        wal.append(&DurableUpdate::<u64>::Promise(Ballot::new(5, 2)))
            .expect("append");
        wal.sync().expect("sync");
        drop(wal);
        let (_, recovered) = open(&dir).expect("reopen again");
        assert_eq!(recovered.records, updates.len() as u64 + 1);
        assert_eq!(recovered.durable.promised, Ballot::new(5, 2));
    }

    #[test]
    fn new_log_has_header_and_creates_nested_dir() {
        let dir = TestDir::new();
        let nested = TestDir(dir.0.join("a").join("b"));
        let (wal, recovered) = Wal::open::<u64>(&nested.0).expect("open");
        assert_eq!(recovered, empty_recovery());
        assert_eq!(read(&nested.log()), file_header());
        assert_eq!(&read(&nested.log())[..8], b"BALLOTWL");
        assert_eq!(wal.len_bytes(), FILE_HEADER_LEN as u64);
        assert_eq!(wal.path(), nested.log());
    }

    #[test]
    fn many_appends_share_one_sync() {
        let dir = TestDir::new();
        let (mut wal, _) = open(&dir).expect("open");
        for slot in 1..=100u64 {
            wal.append(&DurableUpdate::<u64>::Commit(slot))
                .expect("append");
        }
        // Appends only buffer: nothing has reached the file yet.
        assert_eq!(read(&dir.log()).len(), FILE_HEADER_LEN);
        assert!(wal.pending_bytes() > 100 * RECORD_HEADER_LEN);
        assert_eq!(wal.records(), 100);
        assert_eq!(
            wal.len_bytes(),
            (FILE_HEADER_LEN + wal.pending_bytes()) as u64
        );

        wal.sync().expect("sync");
        assert_eq!(wal.pending_bytes(), 0);
        assert_eq!(read(&dir.log()).len() as u64, wal.len_bytes());
        // A second sync with nothing pending changes nothing.
        wal.sync().expect("empty sync");
        assert_eq!(read(&dir.log()).len() as u64, wal.len_bytes());
        drop(wal);

        let (_, recovered) = open(&dir).expect("reopen");
        assert_eq!(recovered.records, 100);
        assert_eq!(recovered.durable.commit, 100);
    }

    #[test]
    fn unsynced_appends_are_not_durable() {
        let dir = TestDir::new();
        let (mut wal, _) = open(&dir).expect("open");
        wal.append(&DurableUpdate::<u64>::Promise(Ballot::new(1, 0)))
            .expect("append");
        wal.sync().expect("sync");
        wal.append(&DurableUpdate::<u64>::Promise(Ballot::new(2, 0)))
            .expect("append");
        drop(wal);
        let (_, recovered) = open(&dir).expect("reopen");
        assert_eq!(recovered.records, 1);
        assert_eq!(recovered.durable.promised, Ballot::new(1, 0));
    }

    #[test]
    fn torn_mid_header_is_truncated() {
        let dir = TestDir::new();
        let updates = sample_updates();
        let offsets = write_log(&dir, &updates);
        let cut_at = offsets[3] + 5;
        let bytes = read(&dir.log());
        fs::write(dir.log(), &bytes[..cut_at as usize]).expect("cut");
        check_torn_tail_recovery(&dir, &updates, offsets[3]);
    }

    #[test]
    fn torn_mid_payload_is_truncated() {
        let dir = TestDir::new();
        let updates = sample_updates();
        let offsets = write_log(&dir, &updates);
        let bytes = read(&dir.log());
        // Cut in the middle of the batch Accept's payload (record 1), as if the crash hit
        // while writing it: it and everything after it are gone or partial.
        let cut_at = offsets[1] + RECORD_HEADER_LEN as u64 + 4;
        assert!(cut_at < offsets[2]);
        fs::write(dir.log(), &bytes[..cut_at as usize]).expect("cut");
        check_torn_tail_recovery(&dir, &updates[..2], offsets[1]);
    }

    #[test]
    fn bad_checksum_in_last_record_is_truncated() {
        let dir = TestDir::new();
        let updates = sample_updates();
        let offsets = write_log(&dir, &updates);
        let mut bytes = read(&dir.log());
        let last_payload = offsets[3] as usize + RECORD_HEADER_LEN;
        bytes[last_payload] ^= 0x40;
        fs::write(dir.log(), &bytes).expect("flip");
        check_torn_tail_recovery(&dir, &updates, offsets[3]);
    }

    #[test]
    fn zero_filled_tail_is_truncated() {
        let dir = TestDir::new();
        // Three records plus a zero-filled region: the zeros stand for a fourth record
        // whose data never made it, the file having been extended already.
        let mut updates = sample_updates();
        updates.truncate(3);
        let mut offsets = write_log(&dir, &updates);
        let mut bytes = read(&dir.log());
        offsets.push(bytes.len() as u64);
        bytes.extend(std::iter::repeat_n(0, 3 * SCAN_CHUNK + 17));
        fs::write(dir.log(), &bytes).expect("extend");
        updates.push(DurableUpdate::Commit(77)); // the record that never made it
        check_torn_tail_recovery(&dir, &updates, offsets[3]);
    }

    #[test]
    fn interrupted_creation_is_reinitialised() {
        for contents in [&b""[..], &b"BALLO"[..], &[0u8; 7][..]] {
            let dir = TestDir::new();
            fs::create_dir_all(&dir.0).expect("mkdir");
            fs::write(dir.log(), contents).expect("write");
            let (result, logs) = with_logs(|| open(&dir));
            let (mut wal, recovered) = result.expect("open");
            assert_eq!(recovered.records, 0);
            assert!(logs.contains("WARN"), "no warning in {logs:?}");
            assert_eq!(read(&dir.log()), file_header());
            wal.append(&DurableUpdate::<u64>::Commit(3))
                .expect("append");
            wal.sync().expect("sync");
            drop(wal);
            let (_, recovered) = open(&dir).expect("reopen");
            assert_eq!(recovered.durable.commit, 3);
        }
    }

    #[test]
    fn short_garbage_file_is_corrupt() {
        let dir = TestDir::new();
        fs::create_dir_all(&dir.0).expect("mkdir");
        fs::write(dir.log(), b"hello").expect("write");
        assert_eq!(expect_corrupt(open(&dir), &dir), 0);
        assert_eq!(read(&dir.log()), b"hello");
    }

    #[test]
    fn bad_payload_checksum_mid_log_is_corrupt() {
        let dir = TestDir::new();
        let updates = &sample_updates()[..3];
        let offsets = write_log(&dir, updates);
        let mut bytes = read(&dir.log());
        bytes[offsets[0] as usize + RECORD_HEADER_LEN] ^= 0x01;
        fs::write(dir.log(), &bytes).expect("flip");

        let result = open(&dir);
        let message = match &result {
            Err(e) => e.to_string(),
            Ok(_) => String::new(),
        };
        assert_eq!(expect_corrupt(result, &dir), offsets[0]);
        assert_eq!(
            message,
            format!(
                "corrupt write-ahead log {} at byte {}: payload checksum mismatch \
                 (record is not the last one); refusing to start",
                dir.log().display(),
                offsets[0]
            )
        );
        assert_eq!(
            read(&dir.log()),
            bytes,
            "a refused log must not be modified"
        );
    }

    #[test]
    fn bad_header_checksum_mid_log_is_corrupt() {
        let dir = TestDir::new();
        let updates = &sample_updates()[..3];
        let offsets = write_log(&dir, updates);
        let mut bytes = read(&dir.log());
        bytes[offsets[1] as usize + 1] ^= 0x10; // inside the length field
        fs::write(dir.log(), &bytes).expect("flip");
        let result = open(&dir);
        assert!(matches!(&result, Err(e) if e.to_string().contains("header checksum")));
        assert_eq!(expect_corrupt(result, &dir), offsets[1]);
        assert_eq!(
            read(&dir.log()),
            bytes,
            "a refused log must not be modified"
        );
    }

    #[test]
    fn bad_header_checksum_in_last_record_is_corrupt() {
        // With a damaged header the length is unknown, so the non-zero bytes after it
        // might be further records: refuse rather than guess.
        let dir = TestDir::new();
        let updates = sample_updates();
        let offsets = write_log(&dir, &updates);
        let mut bytes = read(&dir.log());
        bytes[offsets[3] as usize + 9] ^= 0x01; // inside the header checksum
        fs::write(dir.log(), &bytes).expect("flip");
        assert_eq!(expect_corrupt(open(&dir), &dir), offsets[3]);
        assert_eq!(read(&dir.log()), bytes);
    }

    #[test]
    fn damaged_header_before_zero_tail_is_corrupt() {
        // Only an all-zero tail counts as torn: a non-zero but broken header is damage
        // the writer cannot produce by stopping early, even if zeros follow it.
        let dir = TestDir::new();
        write_log(&dir, &sample_updates());
        let mut bytes = read(&dir.log());
        let end = bytes.len() as u64;
        bytes.push(0xff);
        bytes.extend(std::iter::repeat_n(0, 100));
        fs::write(dir.log(), &bytes).expect("extend");
        assert_eq!(expect_corrupt(open(&dir), &dir), end);
        assert_eq!(read(&dir.log()), bytes);
    }

    #[test]
    fn zeros_then_data_is_corrupt() {
        let dir = TestDir::new();
        let updates = sample_updates();
        let offsets = write_log(&dir, &updates);
        let mut bytes = read(&dir.log());
        let end = bytes.len() as u64;
        bytes.extend(std::iter::repeat_n(0, SCAN_CHUNK + 100));
        bytes.extend_from_slice(&read(&dir.log())[offsets[3] as usize..]);
        fs::write(dir.log(), &bytes).expect("extend");
        assert_eq!(expect_corrupt(open(&dir), &dir), end);
        assert_eq!(read(&dir.log()), bytes);
    }

    #[test]
    fn over_long_length_is_corrupt() {
        let dir = TestDir::new();
        let updates = sample_updates();
        write_log(&dir, &updates);
        let mut bytes = read(&dir.log());
        // A header with a valid checksum claiming a payload above the limit, at the tail
        // where a short payload alone would look torn: the limit must win.
        let too_long = u32::try_from(RECORD_BYTES_MAX + 1).expect("fits");
        let end = bytes.len() as u64;
        bytes.extend_from_slice(&record_header(too_long, 0));
        bytes.extend_from_slice(&[1, 2, 3]);
        fs::write(dir.log(), &bytes).expect("append header");
        let result = open(&dir);
        assert!(matches!(&result, Err(e) if e.to_string().contains("exceeds the limit")));
        assert_eq!(expect_corrupt(result, &dir), end);
        assert_eq!(read(&dir.log()), bytes);
    }

    #[test]
    fn undecodable_payload_is_corrupt_even_at_tail() {
        let dir = TestDir::new();
        write_log(&dir, &sample_updates());
        for payload in [&[9u8][..], &[2, 5, 0][..]] {
            // [9]: no such variant; [2, 5, 0]: `Commit(5)` plus a trailing byte.
            let mut bytes = read(&dir.log());
            let end = bytes.len() as u64;
            let len = u32::try_from(payload.len()).expect("fits");
            bytes.extend_from_slice(&record_header(len, crc32c::crc32c(payload)));
            bytes.extend_from_slice(payload);
            let log = dir.log();
            let original = read(&log);
            fs::write(&log, &bytes).expect("append record");
            assert_eq!(expect_corrupt(open(&dir), &dir), end);
            assert_eq!(read(&log), bytes);
            fs::write(&log, original).expect("restore");
        }
    }

    #[test]
    fn bad_magic_is_corrupt() {
        let dir = TestDir::new();
        write_log(&dir, &sample_updates());
        let mut bytes = read(&dir.log());
        bytes[0] = b'X';
        fs::write(dir.log(), &bytes).expect("flip");
        let result = open(&dir);
        assert!(matches!(&result, Err(e) if e.to_string().contains("magic")));
        assert_eq!(expect_corrupt(result, &dir), 0);
        assert_eq!(read(&dir.log()), bytes);
    }

    #[test]
    fn unknown_version_is_corrupt() {
        let dir = TestDir::new();
        write_log(&dir, &sample_updates());
        let mut bytes = read(&dir.log());
        // A version this build does not read (a newer one, or 1: ballots without
        // epochs).
        bytes[8] = FORMAT_VERSION as u8 + 1;
        fs::write(dir.log(), &bytes).expect("flip");
        let result = open(&dir);
        let named = format!("version {}", FORMAT_VERSION + 1);
        assert!(matches!(&result, Err(e) if e.to_string().contains(&named)));
        assert_eq!(expect_corrupt(result, &dir), 8);
        assert_eq!(read(&dir.log()), bytes);
    }

    #[test]
    fn oversized_append_is_rejected_and_log_stays_usable() {
        let dir = TestDir::new();
        let (mut wal, _) = Wal::open::<Vec<u8>>(&dir.0).expect("open");
        wal.append(&DurableUpdate::<Vec<u8>>::Commit(1))
            .expect("append");
        let pending = wal.pending_bytes();
        let huge = DurableUpdate::Accept {
            slot: 1,
            entry: AcceptedEntry {
                ballot: Ballot::new(1, 0),
                proposal: Proposal::Batch(vec![Request {
                    client: 1,
                    seq: 1,
                    command: vec![0u8; RECORD_BYTES_MAX],
                }]),
            },
        };
        match wal.append(&huge) {
            Err(WalError::RecordTooLarge { bytes }) => assert!(bytes > RECORD_BYTES_MAX),
            other => panic!("expected RecordTooLarge, got {other:?}"),
        }
        assert_eq!(
            wal.pending_bytes(),
            pending,
            "rejected record left no bytes"
        );
        assert_eq!(wal.records(), 1);
        wal.sync().expect("sync");
        drop(wal);
        let (_, recovered) = Wal::open::<Vec<u8>>(&dir.0).expect("reopen");
        assert_eq!(recovered.records, 1);
        assert_eq!(recovered.durable.commit, 1);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn failed_sync_poisons_the_log() {
        // /dev/full fails every write with ENOSPC, standing in for a failing disk.
        let file = OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("open /dev/full");
        let mut wal = Wal::at_end(PathBuf::from("/dev/full"), file, 0, 0);
        // Nothing pending: no system call, so nothing to fail.
        wal.sync().expect("empty sync is a no-op");
        wal.append(&DurableUpdate::<u64>::Commit(1))
            .expect("append only buffers");
        assert!(matches!(wal.sync(), Err(WalError::Io { .. })));
        assert!(matches!(
            wal.append(&DurableUpdate::<u64>::Commit(2)),
            Err(WalError::Poisoned)
        ));
        assert!(matches!(wal.sync(), Err(WalError::Poisoned)));
        assert_eq!(wal.len_bytes(), wal.pending_bytes() as u64);
    }
}
