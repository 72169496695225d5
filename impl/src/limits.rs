//! Every bound the node keeps, in one table, with the relations between them checked
//! at compile time.
//!
//! A bound that disagrees with another is a bug waiting for a large enough request: a
//! value the client protocol accepts but the log cannot record would stop the node that
//! tried. So the chain is written down and asserted here:
//!
//! ```text
//! request (RESP-encoded, ≤ REQUEST_BYTES_MAX)
//!   ≥ its command's bytes (KvStore::command_bytes, the command's encoded size)
//!   ≤ BATCH_BYTES_MAX                 (any accepted request fits a slot alone)
//! slot = batch ≤ BATCH_BYTES_MAX + BATCH_REQUESTS_MAX × REQUEST_OVERHEAD_BYTES
//!   + SLOT_OVERHEAD_BYTES ≤ RECORD_BYTES_MAX   (any slot fits a log record)
//!                          ≤ FRAME_BYTES_MAX    (and a peer frame)
//!                          ≤ SEND_QUEUE_BYTES_MAX (and a peer's send queue)
//!
//! snapshot message (≤ snapshot_bytes_max, configurable; SNAPSHOT_BYTES_MAX by default)
//!   streamed in chunks of ≤ SNAPSHOT_CHUNK_BYTES_MAX
//!   + SNAPSHOT_CHUNK_OVERHEAD_BYTES ≤ FRAME_BYTES_MAX  (a chunk fits a frame)
//!   × SNAPSHOT_CHUNKS_IN_FLIGHT_MAX ≤ SEND_QUEUE_BYTES_MAX / 4, INBOX_BYTES_MAX / 4
//!                                    (a transfer leaves most of the queues to others)
//!
//! membership ≤ MEMBERSHIP_BYTES_MAX (NODE_IDS_MAX ids, each with its addresses)
//!   + SLOT_OVERHEAD_BYTES ≤ FRAME_BYTES_MAX  (a forwarded change's answer fits a frame)
//! ```
//!
//! The runtime-configurable ones ([`crate::node::NodeConfig`]'s `max_batch`,
//! `connections_max`, …) are checked against this table when a node starts.
//!
//! ```
//! use ballot_node::limits;
//! assert!(limits::REQUEST_BYTES_MAX <= limits::BATCH_BYTES_MAX);
//! assert!(limits::slot_bytes_max(limits::BATCH_REQUESTS_MAX) <= limits::RECORD_BYTES_MAX);
//! ```

use ballot_model::{MEMBER_ADDRESS_BYTES_MAX, NODE_IDS_MAX};

/// The largest client request, as its RESP encoding (the bytes a client sends for one
/// command). Larger ones are refused with an error naming this limit; the connection
/// skips the request's bytes and goes on.
pub const REQUEST_BYTES_MAX: usize = 8 << 20;

/// The largest value the key-value store holds: `APPEND` refuses to grow one past it,
/// so every stored value can be read back in one reply. A constant, so every replica
/// decides alike.
pub const VALUE_BYTES_MAX: usize = REQUEST_BYTES_MAX;

/// The largest reply a read may produce (`MGET` of many large values): a larger one
/// is an error reply, because it must cross the network to a client's node in one
/// frame and sit in the client's output buffer.
pub const REPLY_BYTES_MAX: usize = 64 << 20;

/// The most bytes of commands one slot carries (the core's
/// [`batch_bytes_max`](ballot_model::ClusterConfig::batch_bytes_max)): the leader
/// closes a batch at this bound as well as at its request count.
pub const BATCH_BYTES_MAX: usize = 8 << 20;

/// The most requests one slot may carry (`max_batch` is configured up to this).
pub const BATCH_REQUESTS_MAX: usize = 1 << 16;

/// What a request adds to its command in a log record or frame: its client id and
/// sequence number, each a varint of at most 10 bytes.
pub const REQUEST_OVERHEAD_BYTES: usize = 20;

/// What a slot adds to its batch's requests in a log record or an `Accept` frame: the
/// record or frame tags, slot, ballot, commit index and the batch's length, all
/// varints (generously rounded up).
pub const SLOT_OVERHEAD_BYTES: usize = 128;

/// The largest write-ahead log record. Appending a larger one is refused; a header on
/// disk claiming more is corruption.
pub const RECORD_BYTES_MAX: usize = 16 << 20;

/// The largest peer frame, sent or accepted. Messages that carry a snapshot do not
/// travel as one frame but in chunks ([`crate::snapshot_stream`]), so this bound no
/// longer limits the state a cluster can ship. Memory is reserved as bytes arrive,
/// never on the word of a length field.
pub const FRAME_BYTES_MAX: usize = 1 << 30;

/// Bytes queued for one peer before new frames to it are dropped (Paxos retransmits).
/// A frame is always taken by an empty queue, whatever its size.
pub const SEND_QUEUE_BYTES_MAX: usize = 64 << 20;

/// Bytes of peer frames waiting for a node's event loop; past it, new frames are
/// dropped (Paxos retransmits). An empty inbox takes any frame.
pub const INBOX_BYTES_MAX: usize = 256 << 20;

/// The largest chunk of a streamed snapshot message: small enough that a transfer's
/// chunks interleave with heartbeats and accepts on the peer link (one chunk delays a
/// heartbeat by about 8 ms on a 1 Gbit/s link), large enough that each chunk's
/// acknowledgement is cheap beside it.
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 1 << 20;

/// What a chunk frame adds to its bytes: the frame tags, transfer id, offset, total
/// length, checksum and the bytes' length, all varints (generously rounded up).
pub const SNAPSHOT_CHUNK_OVERHEAD_BYTES: usize = 64;

/// Chunks of one transfer sent and not yet acknowledged: the transfer's share of a
/// peer's send queue and of the receiver's inbox.
pub const SNAPSHOT_CHUNKS_IN_FLIGHT_MAX: usize = 4;

/// The largest message carrying a snapshot a node streams or assembles, by default
/// (`snapshot_bytes_max`). The receiver holds the encoded message in memory while it
/// arrives, and then the decoded state beside it.
pub const SNAPSHOT_BYTES_MAX: u64 = 8 << 30;

/// Inputs the node's loop steps while one fsync runs beside it, before it takes no
/// more until that fsync completes (timers still fire): what waits for the fsync —
/// the persists appended meanwhile, the sends and replies behind them — stays bounded,
/// while a disk that is merely slow holds up no heartbeat.
pub const INPUTS_WHILE_SYNCING_MAX: usize = 1 << 16;

/// Client connections one node serves at once, by default; the next is told
/// `-ERR max number of clients reached` and closed, as Redis does.
pub const CONNECTIONS_MAX: usize = 10_000;

/// Requests waiting for an answer on one node (its clients' and library callers'),
/// by default; past it, a new request fails at once with a busy error, before
/// anything is sent.
pub const WAITERS_MAX: usize = 65_536;

/// Operator requests (membership changes, leadership transfers) other nodes forwarded
/// that one node runs at once; as many more wait their turn, and one beyond those is
/// dropped with a warning (its asker times out). Operators change a cluster one step at
/// a time: a handful is plenty.
pub const OPERATOR_REQUESTS_MAX: usize = 16;

/// The most bytes a membership takes encoded, as the answer to a forwarded change
/// carries it: every id a cluster may give out, in each of its sets, each with an
/// address pair of the longest (lengths included).
pub const MEMBERSHIP_BYTES_MAX: usize = NODE_IDS_MAX * (3 * 8 + 2 * (MEMBER_ADDRESS_BYTES_MAX + 8));

/// Client sessions the replicated state remembers, by default (the core's
/// [`sessions_max`](ballot_model::ClusterConfig::sessions_max)); opening one more
/// expires the least recently active. Each node lends at most `waiters_max` sessions
/// at once, so the table has room for every session a full cluster uses at once; a
/// session expires only after this many others were active since its last request
/// (SPEC §2.6).
pub const SESSIONS_MAX: usize = 1 << 20;

/// The largest cluster whose nodes can all have [`WAITERS_MAX`] requests in flight
/// under the default [`SESSIONS_MAX`] with room in the table for all their sessions.
pub const SESSIONS_NODES_MAX: usize = 16;

/// Writes a leader queues for room in its pipeline, by default (the core's
/// [`queue_requests_max`](ballot_model::ClusterConfig::queue_requests_max)).
pub const QUEUE_REQUESTS_MAX: usize = 16_384;

/// Reads a leader holds waiting for confirmation, by default (the core's
/// [`reads_pending_max`](ballot_model::ClusterConfig::reads_pending_max)).
pub const READS_PENDING_MAX: usize = 16_384;

/// The longest RESP line: an inline command or a length header (Redis's
/// `PROTO_INLINE_MAX_SIZE`).
pub const LINE_BYTES_MAX: usize = 64 << 10;

/// The most arguments one RESP command may claim (Redis allows 1M).
pub const ARGUMENTS_MAX: usize = 1 << 20;

/// A client connection's replies are written out once this many bytes have piled up,
/// so a client pipelining many large reads costs at most about this much memory on
/// top of one reply.
pub const OUTPUT_FLUSH_BYTES: usize = 1 << 20;

/// The largest log record or frame a slot of `max_batch` requests can need.
pub const fn slot_bytes_max(max_batch: usize) -> usize {
    BATCH_BYTES_MAX + max_batch * REQUEST_OVERHEAD_BYTES + SLOT_OVERHEAD_BYTES
}

/// The chunk size of snapshot streams over peer frames of at most `frame_bytes_max`
/// bytes: [`SNAPSHOT_CHUNK_BYTES_MAX`], or less if a chunk frame would not fit.
///
/// ```
/// use ballot_node::limits::*;
/// assert_eq!(snapshot_chunk_bytes(FRAME_BYTES_MAX), SNAPSHOT_CHUNK_BYTES_MAX);
/// assert_eq!(snapshot_chunk_bytes(4096), 4096 - SNAPSHOT_CHUNK_OVERHEAD_BYTES);
/// ```
pub const fn snapshot_chunk_bytes(frame_bytes_max: usize) -> usize {
    let room = frame_bytes_max.saturating_sub(SNAPSHOT_CHUNK_OVERHEAD_BYTES);
    if room < SNAPSHOT_CHUNK_BYTES_MAX {
        room
    } else {
        SNAPSHOT_CHUNK_BYTES_MAX
    }
}

/// The bytes of chunk frames one snapshot transfer has in flight, at most, over peer
/// frames of at most `frame_bytes_max` bytes.
pub const fn snapshot_window_bytes(frame_bytes_max: usize) -> usize {
    SNAPSHOT_CHUNKS_IN_FLIGHT_MAX
        * (snapshot_chunk_bytes(frame_bytes_max) + SNAPSHOT_CHUNK_OVERHEAD_BYTES)
}

// Any request the server accepts fits a slot alone.
const _: () = assert!(REQUEST_BYTES_MAX <= BATCH_BYTES_MAX);
// Any stored value fits a request (SET of it) and a reply (GET of it).
const _: () = assert!(VALUE_BYTES_MAX <= REQUEST_BYTES_MAX);
const _: () = assert!(VALUE_BYTES_MAX < REPLY_BYTES_MAX);
// Any slot fits a log record, a peer frame and an empty send queue's worth.
const _: () = assert!(slot_bytes_max(BATCH_REQUESTS_MAX) <= RECORD_BYTES_MAX);
const _: () = assert!(slot_bytes_max(BATCH_REQUESTS_MAX) <= FRAME_BYTES_MAX);
const _: () = assert!(slot_bytes_max(BATCH_REQUESTS_MAX) <= SEND_QUEUE_BYTES_MAX);
// A node's inbox holds a full slot's frame with room to spare.
const _: () = assert!(slot_bytes_max(BATCH_REQUESTS_MAX) <= INBOX_BYTES_MAX);
// A forwarded request and a forwarded reply each fit a frame.
const _: () = assert!(REQUEST_BYTES_MAX + SLOT_OVERHEAD_BYTES <= FRAME_BYTES_MAX);
const _: () = assert!(REPLY_BYTES_MAX + SLOT_OVERHEAD_BYTES <= FRAME_BYTES_MAX);
// The answer to a forwarded membership change fits a frame.
const _: () = assert!(MEMBERSHIP_BYTES_MAX + SLOT_OVERHEAD_BYTES <= FRAME_BYTES_MAX);
// Every RESP client can have a request waiting without the waiter table refusing it.
const _: () = assert!(CONNECTIONS_MAX <= WAITERS_MAX);
// The default session table holds every session a full cluster can be using.
const _: () = assert!(SESSIONS_MAX >= WAITERS_MAX * SESSIONS_NODES_MAX);
// A line never outgrows a request.
const _: () = assert!(LINE_BYTES_MAX <= REQUEST_BYTES_MAX);
// A snapshot chunk fits a frame, and any frame that fits a slot fits a chunk of
// more than the chunk frame's overhead: the node's own checks on `max_frame_bytes`
// then leave snapshots a chunk size worth streaming.
const _: () = assert!(SNAPSHOT_CHUNK_BYTES_MAX + SNAPSHOT_CHUNK_OVERHEAD_BYTES <= FRAME_BYTES_MAX);
const _: () = assert!(SNAPSHOT_CHUNK_OVERHEAD_BYTES < SLOT_OVERHEAD_BYTES);
// A transfer's window takes at most a quarter of a peer's send queue and of the
// receiver's inbox: heartbeats and accepts always find room beside it.
const _: () = assert!(snapshot_window_bytes(FRAME_BYTES_MAX) <= SEND_QUEUE_BYTES_MAX / 4);
const _: () = assert!(snapshot_window_bytes(FRAME_BYTES_MAX) <= INBOX_BYTES_MAX / 4);
// Streaming is what lets a snapshot outgrow a frame.
const _: () = assert!(SNAPSHOT_BYTES_MAX > FRAME_BYTES_MAX as u64);
// Frame lengths travel as u32.
const _: () = assert!(FRAME_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(RECORD_BYTES_MAX <= u32::MAX as usize);
