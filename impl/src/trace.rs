//! Trace files: what a node's loop did, for conformance checking
//! (`ballot_model::conformance`, `ballot-check conform`).
//!
//! With [`crate::node::NodeConfig::trace_dir`] set, every run of a node writes one file,
//! `<dir>/node-<id>-<start time in ns>.trace`, holding a
//! [`TraceRecord`] for its start, every input
//! it stepped (with the effects), every completed fsync and every release of sends.
//!
//! Records are buffered and written (not fsync'd: a trace must survive the *process*
//! dying, which the page cache does) at two points per loop batch: before the batch's
//! persists reach the log, so a restarted node never loaded an update its trace lacks;
//! and before its sends leave, so a peer never steps a message its sender's trace lacks.
//! A node killed mid-write leaves at most its last record cut short; readers drop it.
//!
//! # On-disk format
//!
//! ```text
//! header : b"BALLOTTR" (8 bytes) | format version, u32 LE (= 8)
//! record : payload length, u32 LE | crc32c(payload), u32 LE | payload
//! payload: postcard(TraceRecord<S>)
//! ```

use ballot_model::conformance::{
    check_conformance_over, ConformanceReport, Delivery, Divergence, NodeRun, TraceRecord,
};
use ballot_model::{NodeId, StateMachine};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const MAGIC: [u8; 8] = *b"BALLOTTR";
const FORMAT_VERSION: u32 = 9;
const HEADER_LEN: usize = 12;
const RECORD_HEADER_LEN: usize = 8;
/// Largest record a reader accepts (a record can carry a snapshot).
const MAX_RECORD_BYTES: usize = 1 << 30;

/// Why a trace could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// A file-system call failed.
    #[error("trace i/o error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A trace file is damaged somewhere other than its last record.
    #[error("corrupt trace {path} at byte {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where.
        offset: usize,
        /// What was wrong.
        reason: String,
    },
}

/// Now, in nanoseconds since the Unix epoch: the clock all nodes on one machine share,
/// so traces of different processes merge in an order that respects send-before-receive.
pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Writes one node run's trace.
pub struct TraceWriter<S> {
    path: PathBuf,
    file: File,
    buffer: Vec<u8>,
    /// A write failed: the trace is incomplete, so stop writing (and say so once).
    failed: bool,
    _machine: PhantomData<fn(S)>,
}

impl<S> TraceWriter<S>
where
    S: StateMachine + Serialize,
    TraceRecord<S>: Serialize,
{
    /// Creates `<dir>/node-<node>-<now>.trace` (and `dir` if needed).
    pub fn create(dir: &Path, node: NodeId) -> Result<Self, TraceError> {
        fs::create_dir_all(dir).map_err(|source| TraceError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(format!("node-{node}-{:020}.trace", now_nanos()));
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(|source| TraceError::Io {
                path: path.clone(),
                source,
            })?;
        let mut buffer = Vec::with_capacity(1 << 16);
        buffer.extend_from_slice(&MAGIC);
        buffer.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        Ok(TraceWriter {
            path,
            file,
            buffer,
            failed: false,
            _machine: PhantomData,
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Buffers one record.
    pub fn record(&mut self, record: &TraceRecord<S>) {
        if self.failed {
            return;
        }
        let start = self.buffer.len();
        self.buffer.extend_from_slice(&[0; RECORD_HEADER_LEN]);
        match crate::frame::append_encoded(record, std::mem::take(&mut self.buffer)) {
            Ok(buffer) => self.buffer = buffer,
            Err(error) => {
                tracing::error!(%error, "could not encode a trace record; tracing stops");
                self.failed = true;
                return;
            }
        }
        let payload = &self.buffer[start + RECORD_HEADER_LEN..];
        // A record past the readers' bound (a multi-GB snapshot) would not be readable,
        // and past 4 GiB its length would not even fit the header: stop tracing instead
        // of writing a trace that cannot be checked.
        let len = match u32::try_from(payload.len()) {
            Ok(len) if payload.len() <= MAX_RECORD_BYTES => len,
            _ => {
                tracing::error!(
                    bytes = payload.len(),
                    limit = MAX_RECORD_BYTES,
                    "a trace record exceeds the trace's record limit \
                     (a snapshot this large cannot be traced); tracing stops"
                );
                self.buffer.truncate(start);
                self.failed = true;
                return;
            }
        };
        let crc = crc32c::crc32c(payload);
        self.buffer[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.buffer[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// Writes everything buffered to the file (to the OS, not to the disk).
    pub fn flush(&mut self) {
        if self.failed || self.buffer.is_empty() {
            return;
        }
        if let Err(error) = self.file.write_all(&self.buffer) {
            tracing::error!(path = %self.path.display(), %error, "could not write the trace; tracing stops");
            self.failed = true;
        }
        self.buffer.clear();
    }
}

/// One trace file's records, and whether its last record was cut short.
pub fn read_file<S>(path: &Path) -> Result<(NodeRun<S>, bool), TraceError>
where
    S: StateMachine + DeserializeOwned,
    TraceRecord<S>: DeserializeOwned,
{
    let bytes = fs::read(path).map_err(|source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let corrupt = |offset: usize, reason: String| TraceError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    if bytes.len() < HEADER_LEN || bytes[..8] != MAGIC {
        return Err(corrupt(0, "not a ballot trace (bad magic)".into()));
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != FORMAT_VERSION {
        return Err(corrupt(8, format!("unknown format version {version}")));
    }
    let mut records = Vec::new();
    let mut offset = HEADER_LEN;
    let mut torn = false;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        if rest.len() < RECORD_HEADER_LEN {
            torn = true;
            break;
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_RECORD_BYTES {
            return Err(corrupt(offset, format!("record of {len} bytes")));
        }
        let end = RECORD_HEADER_LEN + len;
        if rest.len() < end {
            // Only the last record can be short: the writer died mid-write.
            torn = true;
            break;
        }
        let payload = &rest[RECORD_HEADER_LEN..end];
        if crc32c::crc32c(payload) != crc {
            if rest.len() == end {
                torn = true;
                break;
            }
            return Err(corrupt(offset, "checksum mismatch".into()));
        }
        let record = postcard::from_bytes(payload)
            .map_err(|e| corrupt(offset, format!("undecodable record: {e}")))?;
        records.push(record);
        offset += end;
    }
    let source = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    );
    Ok((NodeRun { source, records }, torn))
}

/// Every trace file (`*.trace`) in `dir`, and how many had a torn last record.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("ballot-trace-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let (runs, torn) = ballot_node::trace::read_dir::<ballot_node::kv::KvStore>(&dir).unwrap();
/// assert!(runs.is_empty() && torn == 0);
/// # std::fs::remove_dir_all(&dir).ok();
/// ```
pub fn read_dir<S>(dir: &Path) -> Result<(Vec<NodeRun<S>>, usize), TraceError>
where
    S: StateMachine + DeserializeOwned,
    TraceRecord<S>: DeserializeOwned,
{
    let io = |source| TraceError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "trace") {
            paths.push(path);
        }
    }
    paths.sort();
    let mut runs = Vec::new();
    let mut torn = 0;
    for path in paths {
        let (run, cut) = read_file(&path)?;
        torn += usize::from(cut);
        runs.push(run);
    }
    Ok((runs, torn))
}

/// Why a trace directory does not conform.
#[derive(Debug, thiserror::Error)]
pub enum ConformError {
    /// The traces could not be read.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// The traces diverge from the model.
    #[error("{0}")]
    Divergence(#[from] Divergence),
}

/// Reads every trace in `dir` and checks them together
/// ([`ballot_model::conformance::check_conformance`]). The report counts torn tails.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("ballot-conform-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let report = ballot_node::trace::check_dir::<ballot_node::kv::KvStore>(&dir).unwrap();
/// assert_eq!(report.runs, 0);
/// # std::fs::remove_dir_all(&dir).ok();
/// ```
pub fn check_dir<S>(dir: &Path) -> Result<ConformanceReport, ConformError>
where
    S: StateMachine + DeserializeOwned,
    TraceRecord<S>: DeserializeOwned,
{
    check_dir_over(dir, Delivery::AtMostOnce)
}

/// [`check_dir`] over a network that delivers as `delivery` says (a simulated one may
/// duplicate).
pub fn check_dir_over<S>(dir: &Path, delivery: Delivery) -> Result<ConformanceReport, ConformError>
where
    S: StateMachine + DeserializeOwned,
    TraceRecord<S>: DeserializeOwned,
{
    let (runs, torn) = read_dir::<S>(dir)?;
    let mut report = check_conformance_over(runs, delivery)?;
    report.torn_tails = torn;
    Ok(report)
}
