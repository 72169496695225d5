//! Checks for everything that decodes bytes from outside the process.
//!
//! Each function takes libFuzzer's bytes and panics only on a finding: a panic inside
//! the decoder itself, or a broken property (stated on each function). Damage must come
//! back as an error value, never as a panic, a hang or an allocation the input merely
//! asked for.

use crate::bytes::Reader;
use ballot_model::{Ballot, DurableUpdate, Snapshot};
use ballot_node::frame::{self, FrameError};
use ballot_node::kv::{KvCommand, KvStore};
use ballot_node::limits::FRAME_BYTES_MAX;
use ballot_node::node::PeerFrame;
use ballot_node::resp::{self, Limits, Value};
use ballot_node::snapshot_store::{self, SnapshotDir, SnapshotError};
use ballot_node::wal::{Wal, WalError, FILE_NAME};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

/// The frame type the key-value server exchanges with its peers.
pub type KvFrame = PeerFrame<KvStore>;

/// The largest frame [`peer_frame`] reads from a stream: far below the production limit,
/// so that the limit check itself is reached by small inputs.
pub const STREAM_MAX_FRAME_BYTES: usize = 1024;

/// Limits small enough for short inputs to cross every one of them.
pub const SMALL_LIMITS: Limits = Limits {
    max_bulk_bytes: 64,
    max_array_len: 8,
    max_inline_bytes: 64,
    max_request_bytes: 128,
};

/// Inputs up to this length have every prefix re-parsed; longer ones a sample of
/// [`PREFIX_SAMPLES`] prefixes, so that a 4 KiB input costs no more than a short one.
const ALL_PREFIXES_UP_TO: usize = 256;
/// How many prefixes of a long input are re-parsed.
const PREFIX_SAMPLES: usize = 64;

/// Peer frames: the bytes as one frame payload, and as a stream of length-prefixed
/// frames read with `read_frame` (limit [`STREAM_MAX_FRAME_BYTES`]).
///
/// Properties: decoding returns `Ok` or `Err`; a decoded frame re-encodes, decodes
/// again to the same frame, and encodes to the same bytes the second time; reading from
/// a byte slice never waits; a frame read never exceeds the limit.
pub fn peer_frame(data: &[u8]) {
    round_trip_payload(data);

    let mut stream = data;
    let mut buf = Vec::new();
    loop {
        let before = stream.len();
        let read = {
            let future = pin!(frame::read_frame(
                &mut stream,
                &mut buf,
                STREAM_MAX_FRAME_BYTES
            ));
            match future.poll(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(read) => read,
                Poll::Pending => panic!("read_frame waited on a byte slice"),
            }
        };
        match read {
            Ok(true) => {
                assert!(buf.len() <= STREAM_MAX_FRAME_BYTES, "frame over the limit");
                assert_eq!(
                    before - stream.len(),
                    4 + buf.len(),
                    "a frame is its length prefix and its payload"
                );
                round_trip_payload(&buf);
            }
            Ok(false) => {
                // A stream cut inside the length prefix is an error, not a clean end
                // (this target found `read_frame` calling it one).
                assert_eq!(before, 0, "a clean end only before a frame starts");
                return;
            }
            Err(FrameError::TooLarge { len, max }) => {
                assert!(len > max && max == STREAM_MAX_FRAME_BYTES);
                return;
            }
            Err(FrameError::Io(error)) => {
                assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof, "{error}");
                return;
            }
            Err(other) => panic!("read_frame returned {other}"),
        }
    }
}

/// Decodes `payload` as a peer frame; if it decodes, checks the re-encoding.
fn round_trip_payload(payload: &[u8]) {
    let Ok(decoded) = frame::decode::<KvFrame>(payload) else {
        return;
    };
    let mut encoded = Vec::new();
    frame::encode(&decoded, &mut encoded, FRAME_BYTES_MAX)
        .unwrap_or_else(|error| panic!("decoded frame {decoded:?} does not encode: {error}"));
    let again: KvFrame = frame::decode(&encoded[4..])
        .unwrap_or_else(|error| panic!("re-encoded frame {decoded:?} does not decode: {error}"));
    assert_eq!(format!("{again:?}"), format!("{decoded:?}"), "round trip");
    let mut encoded_again = Vec::new();
    frame::encode(&again, &mut encoded_again, FRAME_BYTES_MAX).expect("encodes");
    assert_eq!(encoded_again, encoded, "encoding is deterministic");
}

/// RESP: `parse_request` (default and [`SMALL_LIMITS`]) and `parse_value` on the bytes.
///
/// Properties: a parse uses at least one byte and at most what is there; parsing is
/// incremental, so along the prefixes of the input the answer goes from "incomplete"
/// (`Ok(None)`) to either one complete value that never changes again or an error that
/// never goes away; a parsed request re-encodes as an array of bulk strings that parses
/// to the same arguments; a parsed reply re-encodes to bytes that parse to a value
/// encoding the same way (simple strings may hold a lone LF, which encoding blanks).
pub fn resp(data: &[u8]) {
    let default_limits = Limits::default();
    check_incremental(data, |buf| resp::parse_request(buf, &default_limits));
    check_incremental(data, |buf| resp::parse_request(buf, &SMALL_LIMITS));
    check_incremental(data, resp::parse_value);

    if let Ok(Some((args, _))) = resp::parse_request(data, &default_limits) {
        if !args.is_empty() {
            let mut wire = Vec::new();
            Value::Array(args.iter().cloned().map(Value::Bulk).collect()).encode(&mut wire);
            assert_eq!(
                resp::parse_request(&wire, &default_limits),
                Ok(Some((args, wire.len()))),
                "a request re-encoded as bulk strings parses the same"
            );
        }
    }
    if let Ok(Some((value, _))) = resp::parse_value(data) {
        let mut wire = Vec::new();
        value.encode(&mut wire);
        let parsed = resp::parse_value(&wire);
        let Ok(Some((again, used))) = parsed else {
            panic!("{value:?} encodes to {wire:?}, which parses to {parsed:?}");
        };
        assert_eq!(used, wire.len());
        let mut wire_again = Vec::new();
        again.encode(&mut wire_again);
        assert_eq!(wire_again, wire, "encoding a re-parsed reply is stable");
    }
}

/// Checks `parse` along the prefixes of `data`; see [`resp`].
fn check_incremental<T, E>(data: &[u8], parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, E>)
where
    T: PartialEq + std::fmt::Debug,
    E: std::fmt::Debug,
{
    let whole = parse(data);
    if let Ok(Some((_, used))) = &whole {
        assert!(
            *used > 0 && *used <= data.len(),
            "used {used} of {}",
            data.len()
        );
    }
    let cuts: Vec<usize> = if data.len() <= ALL_PREFIXES_UP_TO {
        (0..data.len()).collect()
    } else {
        let mut cuts: Vec<usize> = (0..PREFIX_SAMPLES)
            .map(|i| i * data.len() / PREFIX_SAMPLES)
            .collect();
        if let Ok(Some((_, used))) = &whole {
            cuts.extend([used - 1, *used]);
        }
        cuts
    };
    for cut in cuts {
        let prefix = parse(&data[..cut]);
        match (&prefix, &whole) {
            (Ok(None), _) => {}
            (Ok(Some((value, used))), Ok(Some((whole_value, whole_used)))) => {
                assert_eq!(
                    (value, used),
                    (whole_value, whole_used),
                    "prefix of {cut} bytes parses differently from the whole"
                );
            }
            (Err(_), Err(_)) => {}
            _ => panic!(
                "prefix of {cut} bytes gives {prefix:?} but the whole {} bytes give {whole:?}",
                data.len()
            ),
        }
    }
}

/// A scratch directory of this process, emptied on creation and removed on drop (a
/// crash leaves it behind, beside the reproducer). Under `$TMPDIR`: `run.sh` points that
/// at `/dev/shm` where it can, since every open of a log fsyncs.
pub struct ScratchDir {
    /// The directory.
    pub path: PathBuf,
}

impl ScratchDir {
    /// `$TMPDIR/ballot-fuzz-<name>-<pid>-<n>`, empty; `n` counts within the process, so
    /// that tests running in parallel threads do not share one.
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("ballot-fuzz-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", path.display()));
        ScratchDir { path }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The write-ahead log's file header (magic and format version 1).
pub const WAL_HEADER: [u8; 12] = *b"BALLOTWL\x01\x00\x00\x00";

/// A write-ahead log record around `payload`: length, payload checksum, header checksum.
pub fn wal_record(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("small payload");
    let mut record = Vec::with_capacity(12 + payload.len());
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    let header_crc = crc32c::crc32c(&record[..8]);
    record.extend_from_slice(&header_crc.to_le_bytes());
    record.extend_from_slice(payload);
    record
}

/// How [`wal`] turns the bytes after its mode byte into a log file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalMode {
    /// The bytes are the file.
    Raw,
    /// A valid file header, then the bytes.
    Header,
    /// A valid file header, then records with valid checksums around payloads read as
    /// `[length byte][payload]`: reaches the payload decoder and the replay.
    Records,
    /// As `Records`, then the file is cut short by the first byte's worth of bytes: a
    /// torn tail after intact records.
    TornRecords,
}

impl WalMode {
    /// Every mode, indexed by the mode byte (modulo 4).
    pub const ALL: [WalMode; 4] = [
        WalMode::Raw,
        WalMode::Header,
        WalMode::Records,
        WalMode::TornRecords,
    ];

    /// The file [`wal`] writes for `body` in this mode.
    pub fn file(self, body: &[u8]) -> Vec<u8> {
        match self {
            WalMode::Raw => body.to_vec(),
            WalMode::Header => [&WAL_HEADER[..], body].concat(),
            WalMode::Records | WalMode::TornRecords => {
                let mut reader = Reader::new(body);
                let cut = if self == WalMode::TornRecords {
                    usize::from(reader.u8())
                } else {
                    0
                };
                let mut file = WAL_HEADER.to_vec();
                while !reader.is_empty() {
                    file.extend(wal_record(&reader.bytes(u8::MAX)));
                }
                file.truncate(file.len().saturating_sub(cut).max(WAL_HEADER.len()));
                file
            }
        }
    }
}

/// The write-ahead log: the first byte picks a [`WalMode`], the rest becomes
/// `<scratch>/wal.log`, which `Wal::open` then recovers.
///
/// Properties: open returns `Ok` or [`WalError::Corrupt`] (never an I/O error on a
/// healthy file system), and a refused log is left untouched; after a successful open
/// the file holds exactly the intact records (what open reports as truncated is gone),
/// an update appended and synced is there on the next open, and that open finds no
/// damage and the same state plus the update.
pub fn wal(data: &[u8]) {
    let (mode, body) = match data.split_first() {
        Some((&mode, body)) => (WalMode::ALL[usize::from(mode % 4)], body),
        None => (WalMode::Raw, data),
    };
    let file = mode.file(body);
    let dir = ScratchDir::new("wal");
    let path = dir.path.join(FILE_NAME);
    write(&path, &file);

    let (mut wal, recovered) = match Wal::open::<KvCommand>(&dir.path) {
        Ok(opened) => opened,
        Err(WalError::Corrupt { .. }) => {
            assert_eq!(read(&path), file, "a refused log is left untouched");
            return;
        }
        Err(other) => panic!("open of a {}-byte log failed: {other}", file.len()),
    };
    let on_disk = read(&path).len() as u64;
    assert_eq!(
        on_disk,
        wal.len_bytes(),
        "open leaves exactly the intact log"
    );
    if file.len() >= WAL_HEADER.len() {
        assert_eq!(
            on_disk + recovered.truncated_bytes,
            file.len() as u64,
            "what open reports as truncated is what it cut off"
        );
    }

    let update = DurableUpdate::Promise(Ballot::new(u32::MAX, 2));
    let mut expected = recovered.durable.clone();
    expected.apply(&update);
    wal.append(&update).expect("append after open");
    wal.sync().expect("sync after open");
    drop(wal);
    let (_, reopened) = Wal::open::<KvCommand>(&dir.path)
        .unwrap_or_else(|error| panic!("a log just recovered and appended to: {error}"));
    assert_eq!(reopened.truncated_bytes, 0, "no damage after recovery");
    assert_eq!(reopened.records, recovered.records + 1);
    assert_eq!(reopened.durable, expected, "the appended update replays");
}

/// The snapshot file header's length: magic, version, slot, payload length, checksum.
pub const SNAPSHOT_HEADER_LEN: usize = 32;

/// A snapshot file for `slot` around `payload`, with a correct header.
pub fn snapshot_file(slot: u64, payload: &[u8]) -> Vec<u8> {
    let mut file = Vec::with_capacity(SNAPSHOT_HEADER_LEN + payload.len());
    file.extend_from_slice(b"BALLOTSN");
    file.extend_from_slice(&snapshot_store::FORMAT_VERSION.to_le_bytes());
    file.extend_from_slice(&slot.to_le_bytes());
    file.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    file.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    file.extend_from_slice(payload);
    file
}

/// How [`snapshot`] turns its input into a snapshot file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotMode {
    /// The bytes are the file.
    Raw,
    /// Magic and format version, then the bytes.
    Magic,
    /// A complete, correct header around the bytes as payload: reaches the decoder.
    Payload,
}

impl SnapshotMode {
    /// Every mode, indexed by the mode byte (modulo 3).
    pub const ALL: [SnapshotMode; 3] = [
        SnapshotMode::Raw,
        SnapshotMode::Magic,
        SnapshotMode::Payload,
    ];
}

/// Snapshot files: the first byte picks a [`SnapshotMode`], then a slot (as
/// [`Reader::number`]) names the file `snapshot-<slot>.bin`, and the rest is its content.
/// Beside it lies a valid, older snapshot of slot 0 (when the slot is not 0).
///
/// Properties: loading the newest returns `Ok(Some)` or [`SnapshotError::Corrupt`],
/// never an older snapshot in place of a damaged newer one; a loaded snapshot is of
/// the slot its name says, saves and loads back equal, and `snapshot_store::encode` of
/// it is exactly the payload `save` writes.
pub fn snapshot(data: &[u8]) {
    let mut reader = Reader::new(data);
    let mode = SnapshotMode::ALL[usize::from(reader.u8() % 3)];
    let slot = reader.number(8, u64::MAX);
    let body = reader.remaining();
    let file = match mode {
        SnapshotMode::Raw => body.to_vec(),
        SnapshotMode::Magic => [&b"BALLOTSN\x01\x00\x00\x00"[..], body].concat(),
        SnapshotMode::Payload => snapshot_file(slot, body),
    };

    let dir = ScratchDir::new("snapshot");
    let store = SnapshotDir::new(&dir.path);
    if slot > 0 {
        store
            .save(&Snapshot::initial(KvStore::default()))
            .expect("save an older snapshot");
    }
    write(&dir.path.join(format!("snapshot-{slot:020}.bin")), &file);
    let loaded = match store.latest::<KvStore>() {
        Ok(Some(loaded)) => loaded,
        Ok(None) => panic!("the snapshot file of slot {slot} was not found"),
        Err(SnapshotError::Corrupt { .. }) => return,
        Err(other) => panic!("loading a {}-byte snapshot failed: {other}", file.len()),
    };
    assert_eq!(loaded.slot, slot, "the newest file, and of its own slot");

    let copy = ScratchDir::new("snapshot-copy");
    let copy_store = SnapshotDir::new(&copy.path);
    copy_store.save(&loaded).expect("a loaded snapshot saves");
    assert_eq!(
        copy_store.latest::<KvStore>().expect("loads"),
        Some(loaded.clone()),
        "save and load round trip"
    );
    let saved = read(&copy.path.join(format!("snapshot-{slot:020}.bin")));
    let encoded = snapshot_store::encode(loaded.slot, &loaded.table, &loaded.members).expect("encodes");
    assert_eq!(
        saved[SNAPSHOT_HEADER_LEN..],
        encoded[..],
        "encode by reference matches save"
    );
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes)
        .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}
