//! Streaming snapshots between peers: a message that carries a snapshot (a leader's
//! `InstallSnapshot`, an acceptor's `Promise` with one) crosses the peer link as a
//! stream of bounded chunks with flow control of its own, not as one frame.
//!
//! One frame per snapshot bounded the state a cluster could ship by the frame limit,
//! and a large frame sat in a peer's send queue in front of every heartbeat. Here the
//! sender encodes the whole message once (off the event loop), and sends it in chunks of
//! at most [`limits::SNAPSHOT_CHUNK_BYTES_MAX`] bytes, at most
//! [`limits::SNAPSHOT_CHUNKS_IN_FLIGHT_MAX`] of them unacknowledged: snapshot bytes take
//! a bounded share of the send queue, and heartbeats and accepts interleave with them.
//! The receiver appends chunks in order into one buffer per peer (bounded by
//! `snapshot_bytes_max`, grown as bytes arrive), checks the CRC32C of the whole, and
//! hands back the bytes; the node decodes them and steps the core on the message, as if
//! it had arrived in one frame. The core never sees a chunk.
//!
//! This is plumbing, not protocol: whatever this module does — absorb a re-send into the
//! transfer already running, drop a stalled transfer, deliver a message later than the
//! frames sent after it — is something a lossy, reordering network may do to the
//! message anyway, and Paxos tolerates it. Which message to absorb is a resource
//! choice ([`SnapshotKey::absorbs`]); safety does not depend on it.
//!
//! Sans-IO, like the core: handlers take `now`, frames to send are drained with
//! [`SnapshotStreams::poll_transmit`], the driver asks for [`SnapshotStreams::next_deadline`]
//! and calls [`SnapshotStreams::poll`] when it passes.
//!
//! # Wire
//!
//! ```text
//! sender → receiver : Chunk { transfer, offset, total, checksum = crc32c(whole), bytes }
//! receiver → sender : Received { transfer, received }   bytes [0, received) are in
//!                     Resend   { transfer, from }       a gap: send again from `from`
//!                     Refused  { transfer, reason }     too large, or failed its checksum
//! ```
//!
//! Acknowledgements are cumulative. A chunk past the receiver's offset (one was dropped
//! on a full queue) is discarded and answered with one `Resend` (go-back-N); a chunk
//! already held is answered with `Received`. A sender that hears nothing for
//! `resend_after` sends again from the acknowledged offset, and drops the transfer after
//! `stall_timeout` without progress; the core sends the snapshot again at its next
//! quorum check if the peer still lags.

use crate::limits;
use ballot_model::{Ballot, Message, NodeId, Slot, StateMachine};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Names one transfer from one sender. Senders number transfers upwards from a random
/// start, so a restarted sender's transfers are not taken for its predecessor's.
pub type TransferId = u64;

/// A frame of the snapshot stream protocol (carried as `PeerFrame::Snapshot`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamFrame {
    /// Bytes `offset..offset + bytes.len()` of an encoded message `total` bytes long.
    Chunk(Chunk),
    /// The receiver holds bytes `0..received` of `transfer`.
    Received {
        /// The transfer.
        transfer: TransferId,
        /// Bytes held, from the start.
        received: u64,
    },
    /// The receiver discarded a chunk past its offset: send again from `from`.
    Resend {
        /// The transfer.
        transfer: TransferId,
        /// The offset the receiver needs next.
        from: u64,
    },
    /// The receiver gave the transfer up; the sender should drop it.
    Refused {
        /// The transfer.
        transfer: TransferId,
        /// Why.
        reason: Refusal,
    },
}

/// One piece of a streamed message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// The transfer it belongs to.
    pub transfer: TransferId,
    /// Where its bytes start in the encoded message.
    pub offset: u64,
    /// The encoded message's length.
    pub total: u64,
    /// CRC32C of the whole encoded message (the same in every chunk of a transfer).
    pub checksum: u32,
    /// The bytes; never empty.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// Why a receiver refused a transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// The message is larger than the receiver's `snapshot_bytes_max`.
    TooLarge {
        /// The receiver's bound.
        max: u64,
    },
    /// The assembled bytes failed the checksum.
    Corrupt,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::TooLarge { max } => write!(f, "over its snapshot_bytes_max ({max} bytes)"),
            Refusal::Corrupt => f.write_str("it failed its checksum"),
        }
    }
}

/// Why a transfer failed, on either side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// A message over the `snapshot_bytes_max` bound: not sent, or not assembled.
    #[error("a snapshot message of {bytes} bytes exceeds snapshot_bytes_max ({max} bytes); raise it on every node")]
    TooLarge {
        /// The message's encoded length.
        bytes: u64,
        /// The bound.
        max: u64,
    },
    /// The assembled bytes do not match the checksum the sender announced.
    #[error("a streamed snapshot of {total} bytes failed its checksum (crc32c {actual:#010x}, announced {announced:#010x})")]
    Corrupt {
        /// Its length.
        total: u64,
        /// The CRC32C of what arrived.
        actual: u32,
        /// The CRC32C the sender announced.
        announced: u32,
    },
    /// A chunk that cannot belong to any transfer (empty, or past the announced end).
    #[error("a snapshot chunk of {len} bytes at offset {offset} does not fit a transfer of {total} bytes")]
    BadChunk {
        /// Its offset.
        offset: u64,
        /// Its length.
        len: u64,
        /// The announced total.
        total: u64,
    },
    /// The peer refused our transfer.
    #[error("the peer refused a snapshot stream: {0}")]
    Refused(Refusal),
    /// No progress for the stall timeout: the peer is gone or too slow.
    #[error("a snapshot stream made no progress for {0:?}; dropped")]
    Stalled(Duration),
    /// The message could not be encoded.
    #[error("could not encode a snapshot message: {0}")]
    Encode(String),
}

/// An encoded message ready to stream, with its checksum.
#[derive(Debug)]
pub struct Encoded {
    bytes: Vec<u8>,
    checksum: u32,
}

/// Encodes `message` (postcard) for streaming; a message over `bytes_max` is refused
/// here, before any of it is sent.
///
/// ```
/// use ballot_node::snapshot_stream::{encode, StreamError};
/// assert!(encode(&vec![1u8; 100], 1_000).is_ok());
/// assert!(matches!(encode(&vec![1u8; 100], 10), Err(StreamError::TooLarge { .. })));
/// ```
pub fn encode<T: Serialize>(message: &T, bytes_max: u64) -> Result<Encoded, StreamError> {
    let bytes = crate::frame::append_encoded(message, Vec::new())
        .map_err(|e| StreamError::Encode(e.to_string()))?;
    if bytes.len() as u64 > bytes_max {
        return Err(StreamError::TooLarge {
            bytes: bytes.len() as u64,
            max: bytes_max,
        });
    }
    let checksum = crc32c::crc32c(&bytes);
    Ok(Encoded { bytes, checksum })
}

/// What identifies a snapshot-carrying message for deciding whether a re-send is
/// already covered by the transfer in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotKey {
    kind: Kind,
    ballot: Ballot,
    slot: Slot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    InstallSnapshot,
    Promise,
}

impl SnapshotKey {
    /// The key of a message that carries a snapshot (and so is streamed); `None` for
    /// any other message, which goes as one frame.
    pub fn of<S: StateMachine>(message: &Message<S>) -> Option<SnapshotKey> {
        match message {
            Message::InstallSnapshot {
                ballot, snapshot, ..
            } => Some(SnapshotKey {
                kind: Kind::InstallSnapshot,
                ballot: *ballot,
                slot: snapshot.slot,
            }),
            Message::Promise {
                ballot,
                snapshot: Some(snapshot),
                ..
            } => Some(SnapshotKey {
                kind: Kind::Promise,
                ballot: *ballot,
                slot: snapshot.slot,
            }),
            _ => None,
        }
    }

    /// Whether the transfer of `self` in progress makes a new send of `offered` to the
    /// same peer redundant: the same kind of message at the same ballot, whose snapshot
    /// is at least as new, or still reaches the sender's compaction point `compacted`
    /// (so the peer can go on from the sender's log once it has it).
    ///
    /// The second case matters: the core re-sends its *current* applied state every
    /// quorum check while a follower lags, which under writes is newer each time.
    /// Restarting the transfer for each would never finish a snapshot that takes longer
    /// than a quorum check to move.
    pub fn absorbs(&self, offered: &SnapshotKey, compacted: Slot) -> bool {
        self.kind == offered.kind
            && self.ballot == offered.ballot
            && (self.slot >= offered.slot || self.slot >= compacted)
    }
}

/// The bounds and timings of the streams.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    /// Largest chunk, in bytes (at least 1; with the chunk frame's overhead it fits a
    /// peer frame: [`limits::snapshot_chunk_bytes`]).
    pub chunk_bytes: usize,
    /// Chunks of one transfer sent and not yet acknowledged, at most.
    pub chunks_in_flight: usize,
    /// Largest encoded message streamed or assembled.
    pub snapshot_bytes_max: u64,
    /// A transfer that heard nothing for this long sends again from the acknowledged
    /// offset.
    pub resend_after: Duration,
    /// A transfer, or an assembly, without progress for this long is dropped.
    pub stall_timeout: Duration,
}

impl StreamConfig {
    /// The defaults for peer frames of at most `frame_bytes_max` bytes, assembling at
    /// most `snapshot_bytes_max`.
    pub fn new(frame_bytes_max: usize, snapshot_bytes_max: u64) -> Self {
        StreamConfig {
            chunk_bytes: limits::snapshot_chunk_bytes(frame_bytes_max),
            chunks_in_flight: limits::SNAPSHOT_CHUNKS_IN_FLIGHT_MAX,
            snapshot_bytes_max,
            resend_after: Duration::from_secs(1),
            stall_timeout: Duration::from_secs(10),
        }
    }
}

/// What the streams did since the node started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamCounters {
    /// Chunks sent (re-sends included).
    pub chunks_sent: u64,
    /// Bytes of chunks sent (re-sends included).
    pub bytes_sent: u64,
    /// Chunks received and appended in order.
    pub chunks_received: u64,
    /// Bytes of chunks received and appended in order.
    pub bytes_received: u64,
    /// Messages sent whole (acknowledged to their last byte).
    pub transfers_sent: u64,
    /// Messages assembled and verified.
    pub transfers_received: u64,
    /// Re-sends absorbed by the transfer in progress.
    pub absorbed: u64,
    /// Transfers given up: stalled, refused, corrupt, too large.
    pub failed: u64,
}

/// One peer's outgoing transfer.
#[derive(Debug)]
struct Outgoing {
    transfer: TransferId,
    key: SnapshotKey,
    /// `None` while the message is being encoded.
    sending: Option<Sending>,
}

#[derive(Debug)]
struct Sending {
    bytes: Vec<u8>,
    checksum: u32,
    /// Bytes the receiver acknowledged, from the start; `acked <= next <= total`.
    acked: u64,
    /// The next offset to send.
    next: u64,
    started: Instant,
    /// The last time `acked` grew.
    progressed: Instant,
    /// The last time `acked` grew or chunks were sent again from it.
    quiet_since: Instant,
}

impl Sending {
    fn total(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// One peer's incoming side: at most one assembly.
#[derive(Debug, Default)]
struct Incoming {
    assembly: Option<Assembly>,
    /// The last transfer completed (or refused), answered `Received` if its chunks come
    /// again rather than taken for a new transfer.
    finished: Option<(TransferId, u64)>,
    /// The last `Resend` asked for, not asked again until something changes.
    asked: Option<(TransferId, u64)>,
}

#[derive(Debug)]
struct Assembly {
    transfer: TransferId,
    total: u64,
    checksum: u32,
    /// Bytes `0..bytes.len()` of the message. Reserved as chunks arrive, not on the
    /// word of `total`: at most twice what arrived, and never past `total`.
    bytes: Vec<u8>,
    /// CRC32C of `bytes`.
    crc: u32,
    started: Instant,
    /// The last time a chunk of this transfer arrived.
    active: Instant,
}

/// Every snapshot stream of one node: at most one outgoing transfer and one incoming
/// assembly per peer.
#[derive(Debug)]
pub struct SnapshotStreams {
    config: StreamConfig,
    /// The transfer to each peer, if any: one at a time.
    outgoing: BTreeMap<NodeId, Outgoing>,
    /// What each peer is streaming to us: at most one assembly.
    incoming: BTreeMap<NodeId, Incoming>,
    /// The id the next transfer gets; increases (wrapping) by one per transfer.
    next_transfer: TransferId,
    /// Frames to send, oldest first. The driver drains it after every call, so it
    /// holds at most a window of chunks per transfer and an answer per chunk taken.
    transmit: VecDeque<(NodeId, StreamFrame)>,
    counters: StreamCounters,
}

impl SnapshotStreams {
    /// No streams yet; transfer ids start at `first_transfer` (pick it at random).
    pub fn new(config: StreamConfig, first_transfer: TransferId) -> Self {
        assert!(config.chunk_bytes > 0, "chunks must carry bytes");
        assert!(
            config.chunks_in_flight > 0,
            "a transfer needs a chunk in flight"
        );
        SnapshotStreams {
            config,
            outgoing: BTreeMap::new(),
            incoming: BTreeMap::new(),
            next_transfer: first_transfer,
            transmit: VecDeque::new(),
            counters: StreamCounters::default(),
        }
    }

    /// The bound on a streamed message.
    pub fn snapshot_bytes_max(&self) -> u64 {
        self.config.snapshot_bytes_max
    }

    /// What the streams did so far.
    pub fn counters(&self) -> StreamCounters {
        self.counters
    }

    /// The next frame to send, and to whom.
    pub fn poll_transmit(&mut self) -> Option<(NodeId, StreamFrame)> {
        self.transmit.pop_front()
    }

    /// The core asks to send a message with key `key` to `to`. `None` if the transfer
    /// in progress to `to` absorbs it; otherwise that transfer (if any) is replaced by
    /// a new one, whose id is returned: encode the message and report it with
    /// [`SnapshotStreams::encoded`]. `compacted` is the sender's compaction point.
    pub fn offer(&mut self, to: NodeId, key: SnapshotKey, compacted: Slot) -> Option<TransferId> {
        if let Some(current) = self.outgoing.get(&to) {
            if current.key.absorbs(&key, compacted) {
                self.counters.absorbed += 1;
                return None;
            }
            tracing::debug!(
                to,
                transfer = current.transfer,
                "a newer snapshot message replaces the transfer in progress"
            );
        }
        let transfer = self.next_transfer;
        self.next_transfer = self.next_transfer.wrapping_add(1);
        self.outgoing.insert(
            to,
            Outgoing {
                transfer,
                key,
                sending: None,
            },
        );
        Some(transfer)
    }

    /// The message of `transfer` to `to` is encoded (or failed to): start sending it.
    /// A transfer replaced meanwhile is forgotten.
    pub fn encoded(
        &mut self,
        to: NodeId,
        transfer: TransferId,
        encoded: Result<Encoded, StreamError>,
        now: Instant,
    ) -> Result<(), StreamError> {
        match self.outgoing.get(&to) {
            Some(current) if current.transfer == transfer && current.sending.is_none() => {}
            _ => return Ok(()), // replaced while it was being encoded
        }
        let encoded = match encoded {
            Ok(encoded) if encoded.bytes.is_empty() => {
                Err(StreamError::Encode("an empty message".into()))
            }
            other => other,
        };
        let encoded = match encoded {
            Ok(encoded) => encoded,
            Err(error) => {
                self.outgoing.remove(&to);
                self.counters.failed += 1;
                return Err(error);
            }
        };
        let outgoing = self.outgoing.get_mut(&to).expect("checked above");
        outgoing.sending = Some(Sending {
            bytes: encoded.bytes,
            checksum: encoded.checksum,
            acked: 0,
            next: 0,
            started: now,
            progressed: now,
            quiet_since: now,
        });
        self.fill_window(to);
        Ok(())
    }

    /// A stream frame from peer `from`. Returns a message's bytes when this chunk
    /// completed a verified assembly, and an error when a transfer (either way) failed.
    pub fn on_frame(
        &mut self,
        from: NodeId,
        frame: StreamFrame,
        now: Instant,
    ) -> Result<Option<Vec<u8>>, StreamError> {
        match frame {
            StreamFrame::Chunk(chunk) => self.on_chunk(from, chunk, now),
            StreamFrame::Received { transfer, received } => {
                self.on_received(from, transfer, received, now);
                Ok(None)
            }
            StreamFrame::Resend {
                transfer,
                from: offset,
            } => {
                self.on_resend(from, transfer, offset, now);
                Ok(None)
            }
            StreamFrame::Refused { transfer, reason } => {
                if self.sending_mut(from, transfer).is_none() {
                    return Ok(None); // a transfer already over
                }
                self.outgoing.remove(&from);
                self.counters.failed += 1;
                Err(StreamError::Refused(reason))
            }
        }
    }

    /// The connection from `from` closed: its partial assembly, if any, is discarded.
    /// (If `from` had already reconnected, the assembly the new connection feeds goes
    /// too; its next chunk then asks for the start again.)
    pub fn disconnected(&mut self, from: NodeId) {
        if let Some(incoming) = self.incoming.remove(&from) {
            if let Some(assembly) = incoming.assembly {
                tracing::info!(
                    from,
                    transfer = assembly.transfer,
                    received = assembly.bytes.len(),
                    total = assembly.total,
                    "peer disconnected mid-stream; partial snapshot discarded"
                );
            }
        }
    }

    /// When [`SnapshotStreams::poll`] next has something to do, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        let sending = self.outgoing.values().filter_map(|o| o.sending.as_ref());
        let resends = sending
            .clone()
            .filter(|s| s.acked < s.next)
            .map(|s| s.quiet_since + self.config.resend_after);
        let stalls = sending.map(|s| s.progressed + self.config.stall_timeout);
        let idle = self
            .incoming
            .values()
            .filter_map(|i| i.assembly.as_ref())
            .map(|a| a.active + self.config.stall_timeout);
        resends.chain(stalls).chain(idle).min()
    }

    /// Sends again what went unacknowledged too long, and drops stalled transfers and
    /// idle assemblies. Returns the transfers dropped, by peer.
    pub fn poll(&mut self, now: Instant) -> Vec<(NodeId, StreamError)> {
        let config = self.config.clone();
        let mut dropped = Vec::new();
        let mut resend = Vec::new();
        self.outgoing.retain(|&to, outgoing| {
            let Some(sending) = outgoing.sending.as_mut() else {
                return true; // being encoded: it always reports back
            };
            if now >= sending.progressed + config.stall_timeout {
                dropped.push((to, StreamError::Stalled(config.stall_timeout)));
                return false;
            }
            if sending.acked < sending.next && now >= sending.quiet_since + config.resend_after {
                // Go back to what the receiver holds: a chunk (or its acknowledgement)
                // was lost, most likely on a full queue.
                sending.next = sending.acked;
                sending.quiet_since = now;
                resend.push(to);
            }
            true
        });
        for to in resend {
            self.fill_window(to);
        }
        for (from, incoming) in &mut self.incoming {
            if let Some(assembly) = &incoming.assembly {
                if now >= assembly.active + config.stall_timeout {
                    tracing::info!(
                        from,
                        transfer = assembly.transfer,
                        "snapshot stream idle; partial snapshot discarded"
                    );
                    incoming.assembly = None;
                }
            }
        }
        self.counters.failed += dropped.len() as u64;
        dropped
    }

    fn sending_mut(&mut self, to: NodeId, transfer: TransferId) -> Option<&mut Sending> {
        self.outgoing
            .get_mut(&to)
            .filter(|o| o.transfer == transfer)
            .and_then(|o| o.sending.as_mut())
    }

    /// Sends chunks of the transfer to `to` until its window is full or all are out.
    fn fill_window(&mut self, to: NodeId) {
        let Some(outgoing) = self.outgoing.get_mut(&to) else {
            return;
        };
        let transfer = outgoing.transfer;
        let Some(sending) = outgoing.sending.as_mut() else {
            return;
        };
        let chunk_bytes = self.config.chunk_bytes as u64;
        let window_bytes = chunk_bytes * self.config.chunks_in_flight as u64;
        let total = sending.total();
        while sending.next < total && sending.next - sending.acked < window_bytes {
            let start = sending.next;
            let end = (start + chunk_bytes).min(total);
            self.transmit.push_back((
                to,
                StreamFrame::Chunk(Chunk {
                    transfer,
                    offset: start,
                    total,
                    checksum: sending.checksum,
                    bytes: sending.bytes[start as usize..end as usize].to_vec(),
                }),
            ));
            sending.next = end;
            self.counters.chunks_sent += 1;
            self.counters.bytes_sent += end - start;
        }
        debug_assert!(sending.acked <= sending.next && sending.next <= total);
        debug_assert!(sending.next - sending.acked <= window_bytes);
    }

    fn on_received(&mut self, from: NodeId, transfer: TransferId, received: u64, now: Instant) {
        let Some(sending) = self.sending_mut(from, transfer) else {
            return; // an acknowledgement of a transfer already over
        };
        if received > sending.total() || received <= sending.acked {
            return; // nothing new (or nonsense)
        }
        debug_assert!(received > sending.acked && received <= sending.total());
        sending.acked = received;
        sending.next = sending.next.max(received);
        sending.progressed = now;
        sending.quiet_since = now;
        if received == sending.total() {
            tracing::info!(
                to = from,
                transfer,
                bytes = received,
                ms = now.duration_since(sending.started).as_millis() as u64,
                "snapshot message streamed"
            );
            self.outgoing.remove(&from);
            self.counters.transfers_sent += 1;
            return;
        }
        self.fill_window(from);
    }

    fn on_resend(&mut self, from: NodeId, transfer: TransferId, offset: u64, now: Instant) {
        let Some(sending) = self.sending_mut(from, transfer) else {
            return;
        };
        if offset > sending.next {
            return; // asks for what was never sent: nonsense
        }
        // The receiver may have lost what it acknowledged (it restarted, or its
        // connection closed): go back to what it says it holds.
        sending.acked = sending.acked.min(offset);
        sending.next = offset;
        sending.quiet_since = now;
        self.fill_window(from);
    }

    fn on_chunk(
        &mut self,
        from: NodeId,
        chunk: Chunk,
        now: Instant,
    ) -> Result<Option<Vec<u8>>, StreamError> {
        let len = chunk.bytes.len() as u64;
        if len == 0
            || chunk
                .offset
                .checked_add(len)
                .is_none_or(|end| end > chunk.total)
        {
            return Err(StreamError::BadChunk {
                offset: chunk.offset,
                len,
                total: chunk.total,
            });
        }
        let max = self.config.snapshot_bytes_max;
        let incoming = self.incoming.entry(from).or_default();
        let transfer = chunk.transfer;
        if chunk.total > max {
            incoming.assembly = None;
            if incoming.finished != Some((transfer, chunk.total)) {
                // Refused once per transfer, not once per chunk in flight.
                incoming.finished = Some((transfer, chunk.total));
                self.transmit.push_back((
                    from,
                    StreamFrame::Refused {
                        transfer,
                        reason: Refusal::TooLarge { max },
                    },
                ));
                self.counters.failed += 1;
                return Err(StreamError::TooLarge {
                    bytes: chunk.total,
                    max,
                });
            }
            return Ok(None);
        }
        let continues = incoming.assembly.as_ref().is_some_and(|a| {
            a.transfer == transfer && a.total == chunk.total && a.checksum == chunk.checksum
        });
        if !continues {
            if incoming.finished == Some((transfer, chunk.total)) {
                // A late copy of a chunk of the transfer just completed.
                self.transmit.push_back((
                    from,
                    StreamFrame::Received {
                        transfer,
                        received: chunk.total,
                    },
                ));
                return Ok(None);
            }
            if chunk.offset != 0 {
                // The start of this transfer is lost to us (we restarted, the
                // connection closed, or a newer transfer replaced it): ask again.
                if incoming.asked != Some((transfer, 0)) {
                    incoming.asked = Some((transfer, 0));
                    self.transmit
                        .push_back((from, StreamFrame::Resend { transfer, from: 0 }));
                }
                return Ok(None);
            }
            if let Some(old) = incoming.assembly.take() {
                tracing::debug!(
                    from,
                    old = old.transfer,
                    new = transfer,
                    "a new snapshot stream replaces a partial one"
                );
            }
            incoming.assembly = Some(Assembly {
                transfer,
                total: chunk.total,
                checksum: chunk.checksum,
                bytes: Vec::new(),
                crc: 0,
                started: now,
                active: now,
            });
        }
        let assembly = incoming.assembly.as_mut().expect("present or just made");
        assembly.active = now;
        let received = assembly.bytes.len() as u64;
        if chunk.offset < received {
            // Already held (a re-send after a lost acknowledgement): say how far we are.
            self.transmit
                .push_back((from, StreamFrame::Received { transfer, received }));
            return Ok(None);
        }
        if chunk.offset > received {
            // A chunk before this one was lost: go back to it, once.
            if incoming.asked != Some((transfer, received)) {
                incoming.asked = Some((transfer, received));
                self.transmit.push_back((
                    from,
                    StreamFrame::Resend {
                        transfer,
                        from: received,
                    },
                ));
            }
            return Ok(None);
        }
        // Grow by doubling, but never past the announced total: at most twice what
        // arrived, and at most `snapshot_bytes_max`, is ever reserved.
        let room = assembly.bytes.capacity() - assembly.bytes.len();
        if room < chunk.bytes.len() {
            let grow = assembly.bytes.len().max(chunk.bytes.len());
            let left = (assembly.total - received) as usize;
            assembly.bytes.reserve_exact(grow.min(left));
        }
        assembly.bytes.extend_from_slice(&chunk.bytes);
        debug_assert!(assembly.bytes.capacity() as u64 <= assembly.total);
        assembly.crc = crc32c::crc32c_append(assembly.crc, &chunk.bytes);
        incoming.asked = None;
        self.counters.chunks_received += 1;
        self.counters.bytes_received += len;
        let received = assembly.bytes.len() as u64;
        if received < assembly.total {
            self.transmit
                .push_back((from, StreamFrame::Received { transfer, received }));
            return Ok(None);
        }
        let assembly = incoming.assembly.take().expect("present");
        incoming.finished = Some((transfer, assembly.total));
        if assembly.crc != assembly.checksum {
            self.transmit.push_back((
                from,
                StreamFrame::Refused {
                    transfer,
                    reason: Refusal::Corrupt,
                },
            ));
            self.counters.failed += 1;
            return Err(StreamError::Corrupt {
                total: assembly.total,
                actual: assembly.crc,
                announced: assembly.checksum,
            });
        }
        self.transmit
            .push_back((from, StreamFrame::Received { transfer, received }));
        self.counters.transfers_received += 1;
        tracing::info!(
            from,
            transfer,
            bytes = received,
            ms = now.duration_since(assembly.started).as_millis() as u64,
            "snapshot message assembled"
        );
        Ok(Some(assembly.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballot_model::{Register, Snapshot};
    use proptest::prelude::*;
    use serde_bytes::ByteBuf;
    use std::collections::VecDeque;

    const SENDER: NodeId = 0;
    const RECEIVER: NodeId = 1;

    fn config(chunk_bytes: usize, chunks_in_flight: usize) -> StreamConfig {
        StreamConfig {
            chunk_bytes,
            chunks_in_flight,
            snapshot_bytes_max: 1 << 20,
            resend_after: Duration::from_secs(1),
            stall_timeout: Duration::from_secs(10),
        }
    }

    fn install(round: u32, slot: Slot) -> SnapshotKey {
        let mut snapshot = Snapshot::initial(Register::default());
        snapshot.slot = slot;
        let message = Message::<Register>::InstallSnapshot {
            ballot: Ballot::new(round, 0),
            snapshot,
            commit: slot,
        };
        SnapshotKey::of(&message).expect("carries a snapshot")
    }

    fn promise(round: u32, slot: Slot) -> SnapshotKey {
        let mut snapshot = Snapshot::initial(Register::default());
        snapshot.slot = slot;
        let message = Message::<Register>::Promise {
            ballot: Ballot::new(round, 0),
            accepted: vec![],
            snapshot: Some(snapshot),
        };
        SnapshotKey::of(&message).expect("carries a snapshot")
    }

    /// What the link between the two does to one frame.
    #[derive(Clone, Copy, Debug)]
    enum Fault {
        Deliver,
        Drop,
        Duplicate,
        /// Deliver the second frame in the queue before the first.
        Swap,
        /// Let `resend_after` pass.
        Wait,
    }

    fn fault() -> impl Strategy<Value = Fault> {
        prop_oneof![
            6 => Just(Fault::Deliver),
            1 => Just(Fault::Drop),
            1 => Just(Fault::Duplicate),
            1 => Just(Fault::Swap),
            1 => Just(Fault::Wait),
        ]
    }

    /// A sender and a receiver, the frames between them, and a clock.
    struct Pair {
        sender: SnapshotStreams,
        receiver: SnapshotStreams,
        to_receiver: VecDeque<StreamFrame>,
        to_sender: VecDeque<StreamFrame>,
        now: Instant,
        delivered: Vec<Vec<u8>>,
        errors: Vec<StreamError>,
    }

    impl Pair {
        fn new(config: StreamConfig) -> Pair {
            Pair {
                sender: SnapshotStreams::new(config.clone(), 100),
                receiver: SnapshotStreams::new(config, 500),
                to_receiver: VecDeque::new(),
                to_sender: VecDeque::new(),
                now: Instant::now(),
                delivered: Vec::new(),
                errors: Vec::new(),
            }
        }

        /// The core sends the message again (as it does every quorum check).
        fn offer(&mut self, message: &[u8]) {
            if let Some(transfer) = self.sender.offer(RECEIVER, install(1, 5), 0) {
                let encoded = encode(&ByteBuf::from(message.to_vec()), 1 << 20);
                let result = self.sender.encoded(RECEIVER, transfer, encoded, self.now);
                assert_eq!(result, Ok(()));
            }
            self.collect();
        }

        /// Moves what each side wants to send onto the link.
        fn collect(&mut self) {
            while let Some((to, frame)) = self.sender.poll_transmit() {
                assert_eq!(to, RECEIVER);
                self.to_receiver.push_back(frame);
            }
            while let Some((to, frame)) = self.receiver.poll_transmit() {
                assert_eq!(to, SENDER);
                self.to_sender.push_back(frame);
            }
            self.check_window();
        }

        /// Never more than the window unacknowledged.
        fn check_window(&self) {
            let config = &self.sender.config;
            for outgoing in self.sender.outgoing.values() {
                if let Some(sending) = &outgoing.sending {
                    assert!(sending.acked <= sending.next);
                    assert!(sending.next <= sending.total());
                    let window = (config.chunk_bytes * config.chunks_in_flight) as u64;
                    assert!(sending.next - sending.acked <= window);
                }
            }
        }

        fn step(&mut self, fault: Fault, toward_receiver: bool) {
            let queue = if toward_receiver {
                &mut self.to_receiver
            } else {
                &mut self.to_sender
            };
            let frame = match fault {
                Fault::Wait => {
                    self.now += self.sender.config.resend_after;
                    self.poll();
                    return;
                }
                Fault::Drop => {
                    queue.pop_front();
                    return;
                }
                Fault::Duplicate => queue.front().cloned(),
                Fault::Swap if queue.len() >= 2 => queue.remove(1),
                Fault::Swap | Fault::Deliver => queue.pop_front(),
            };
            if let Some(frame) = frame {
                self.deliver(frame, toward_receiver);
            }
        }

        fn deliver(&mut self, frame: StreamFrame, toward_receiver: bool) {
            let result = if toward_receiver {
                self.receiver.on_frame(SENDER, frame, self.now)
            } else {
                self.sender.on_frame(RECEIVER, frame, self.now)
            };
            match result {
                Ok(Some(bytes)) => self.delivered.push(bytes),
                Ok(None) => {}
                Err(error) => self.errors.push(error),
            }
            self.collect();
        }

        fn poll(&mut self) {
            for (_, error) in self.sender.poll(self.now) {
                self.errors.push(error);
            }
            for (_, error) in self.receiver.poll(self.now) {
                self.errors.push(error);
            }
            self.collect();
        }

        /// Delivers everything in order until the link is quiet.
        fn drain(&mut self) {
            for _ in 0..100_000 {
                if let Some(frame) = self.to_receiver.pop_front() {
                    self.deliver(frame, true);
                } else if let Some(frame) = self.to_sender.pop_front() {
                    self.deliver(frame, false);
                } else {
                    return;
                }
            }
        }

        /// Drains the link until the message is delivered, letting time pass when the
        /// link is quiet, and offering the message again as the core would.
        fn settle(&mut self, message: &[u8]) {
            for _ in 0..1_000 {
                self.drain();
                if !self.delivered.is_empty() {
                    return;
                }
                self.now += self.sender.config.resend_after;
                self.poll();
                self.offer(message);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the link loses, repeats or reorders, what arrives is the message
        /// byte for byte, once per transfer, and the window is never exceeded.
        #[test]
        fn chunks_reassemble_byte_exact_over_a_lossy_link(
            message in proptest::collection::vec(any::<u8>(), 1..40_000),
            chunk_bytes in 1usize..3_000,
            chunks_in_flight in 1usize..6,
            faults in proptest::collection::vec((fault(), any::<bool>()), 0..300),
        ) {
            let mut pair = Pair::new(config(chunk_bytes, chunks_in_flight));
            pair.offer(&message);
            for (fault, toward_receiver) in faults {
                pair.step(fault, toward_receiver);
            }
            pair.settle(&message);
            let expected = postcard::to_stdvec(&ByteBuf::from(message.clone())).unwrap();
            prop_assert!(!pair.delivered.is_empty(), "never delivered: {:?}", pair.errors);
            for delivered in &pair.delivered {
                prop_assert_eq!(delivered, &expected);
            }
            let decoded: ByteBuf = crate::frame::decode(&pair.delivered[0]).unwrap();
            prop_assert_eq!(decoded.into_vec(), message);
            prop_assert!(
                !pair.errors.iter().any(|e| matches!(e, StreamError::Corrupt { .. })),
                "{:?}", pair.errors
            );
        }

        /// A byte changed in flight is caught by the checksum: an error on both sides,
        /// nothing delivered.
        #[test]
        fn a_corrupted_chunk_fails_the_checksum(
            message in proptest::collection::vec(any::<u8>(), 1..20_000),
            chunk_bytes in 1usize..3_000,
            victim in any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let mut pair = Pair::new(config(chunk_bytes, 4));
            pair.offer(&message);
            let total = postcard::to_stdvec(&ByteBuf::from(message)).unwrap().len();
            let position = victim.index(total) as u64;
            let mut corrupted = false;
            for _ in 0..100_000 {
                if let Some(mut frame) = pair.to_receiver.pop_front() {
                    if let StreamFrame::Chunk(chunk) = &mut frame {
                        let range = chunk.offset..chunk.offset + chunk.bytes.len() as u64;
                        if !corrupted && range.contains(&position) {
                            chunk.bytes[(position - chunk.offset) as usize] ^= flip;
                            corrupted = true;
                        }
                    }
                    pair.deliver(frame, true);
                } else if let Some(frame) = pair.to_sender.pop_front() {
                    pair.deliver(frame, false);
                } else {
                    break;
                }
            }
            prop_assert!(corrupted);
            prop_assert!(pair.delivered.is_empty());
            prop_assert!(matches!(pair.errors[0], StreamError::Corrupt { .. }), "{:?}", pair.errors);
            prop_assert_eq!(&pair.errors[1], &StreamError::Refused(Refusal::Corrupt));
            prop_assert!(pair.sender.outgoing.is_empty(), "the sender dropped it");
        }

        /// Chunk frames with any fields at all, in any order: errors or silence,
        /// never a panic, and never more held than the bound.
        #[test]
        fn arbitrary_chunks_never_panic(
            chunks in proptest::collection::vec(
                (0u64..3, prop_oneof![0u64..64, any::<u64>()], prop_oneof![0u64..64, any::<u64>()],
                 0u32..2, proptest::collection::vec(any::<u8>(), 0..32)),
                0..64,
            ),
        ) {
            let mut config = config(16, 2);
            config.snapshot_bytes_max = 48;
            let mut streams = SnapshotStreams::new(config, 0);
            let now = Instant::now();
            for (transfer, offset, total, checksum, bytes) in chunks {
                let chunk = Chunk { transfer, offset, total, checksum, bytes };
                if let Ok(Some(bytes)) = streams.on_frame(SENDER, StreamFrame::Chunk(chunk), now) {
                    prop_assert!(bytes.len() as u64 <= 48);
                }
                for incoming in streams.incoming.values() {
                    if let Some(assembly) = &incoming.assembly {
                        prop_assert!(assembly.bytes.len() as u64 <= assembly.total);
                        prop_assert!(assembly.total <= 48);
                    }
                }
            }
        }
    }

    #[test]
    fn a_truncated_stream_is_never_delivered_and_its_assembly_times_out() {
        let mut pair = Pair::new(config(100, 4));
        let message = vec![7u8; 1_000];
        pair.offer(&message);
        // Every chunk but the last arrives; the last is lost, and so is every re-send.
        let last = |frame: &StreamFrame| matches!(frame, StreamFrame::Chunk(c) if c.offset + c.bytes.len() as u64 == c.total);
        for _ in 0..20 {
            while let Some(frame) = pair.to_receiver.pop_front() {
                if !last(&frame) {
                    pair.deliver(frame, true);
                }
            }
            while let Some(frame) = pair.to_sender.pop_front() {
                pair.deliver(frame, false);
            }
            pair.now += Duration::from_secs(1);
            pair.poll();
        }
        assert!(pair.delivered.is_empty());
        assert!(pair
            .errors
            .contains(&StreamError::Stalled(Duration::from_secs(10))));
        assert!(
            pair.sender.outgoing.is_empty(),
            "the stalled transfer was dropped"
        );
        assert!(
            pair.receiver.incoming[&SENDER].assembly.is_none(),
            "the idle assembly was discarded"
        );
        assert_eq!(pair.receiver.next_deadline(), None);
    }

    #[test]
    fn a_message_over_the_bound_is_refused_on_both_sides() {
        assert_eq!(
            encode(&vec![0u8; 100], 50).unwrap_err(),
            StreamError::TooLarge {
                bytes: 101,
                max: 50
            }
        );
        let mut small = config(100, 4);
        small.snapshot_bytes_max = 500;
        let mut pair = Pair::new(config(100, 4));
        pair.receiver = SnapshotStreams::new(small, 0);
        pair.offer(&[1u8; 1_000]);
        pair.drain();
        assert!(pair.delivered.is_empty());
        assert!(pair.sender.outgoing.is_empty(), "the sender dropped it");
        assert_eq!(
            pair.errors[..2],
            [
                StreamError::TooLarge {
                    bytes: 1_002,
                    max: 500
                },
                StreamError::Refused(Refusal::TooLarge { max: 500 })
            ]
        );
        assert_eq!(pair.receiver.counters().bytes_received, 0);
    }

    #[test]
    fn a_disconnect_discards_the_partial_assembly_and_the_sender_starts_over() {
        let mut pair = Pair::new(config(100, 2));
        let message = vec![3u8; 1_000];
        pair.offer(&message);
        for _ in 0..2 {
            let frame = pair.to_receiver.pop_front().unwrap();
            pair.deliver(frame, true);
        }
        assert_eq!(pair.receiver.counters().bytes_received, 200);
        pair.receiver.disconnected(SENDER);
        assert!(!pair.receiver.incoming.contains_key(&SENDER));
        // The acknowledgements get through; the next chunks find no assembly and
        // ask for the start again.
        pair.settle(&message);
        assert_eq!(pair.delivered.len(), 1);
        assert_eq!(pair.receiver.counters().bytes_received, 200 + 1_002);
        assert_eq!(pair.sender.counters().transfers_sent, 1);
        assert!(pair.sender.outgoing.is_empty());
    }

    #[test]
    fn resends_are_absorbed_and_newer_or_different_messages_replace_the_transfer() {
        let mut streams = SnapshotStreams::new(config(100, 4), 7);
        assert_eq!(streams.offer(RECEIVER, install(1, 50), 40), Some(7));
        // The same message again, or an older snapshot: absorbed.
        assert_eq!(streams.offer(RECEIVER, install(1, 50), 40), None);
        assert_eq!(streams.offer(RECEIVER, install(1, 45), 40), None);
        // A newer snapshot while ours still reaches the compaction point: absorbed
        // (under writes every re-send is newer; restarting would never finish).
        assert_eq!(streams.offer(RECEIVER, install(1, 60), 50), None);
        assert_eq!(streams.counters().absorbed, 3);
        // Compacted past ours: the peer would still lag after it, so replace.
        assert_eq!(streams.offer(RECEIVER, install(1, 70), 51), Some(8));
        // Another ballot, or another kind of message: replace.
        assert_eq!(streams.offer(RECEIVER, install(2, 70), 0), Some(9));
        assert_eq!(streams.offer(RECEIVER, promise(2, 70), 0), Some(10));
        // Another peer has its own transfer.
        assert_eq!(streams.offer(2, promise(2, 70), 0), Some(11));
        // A replaced transfer's encoding is forgotten when it comes back.
        let stale = encode(&vec![1u8; 10], 1_000);
        assert_eq!(streams.encoded(RECEIVER, 9, stale, Instant::now()), Ok(()));
        assert_eq!(streams.poll_transmit(), None);
        let current = encode(&vec![1u8; 10], 1_000);
        assert_eq!(
            streams.encoded(RECEIVER, 10, current, Instant::now()),
            Ok(())
        );
        assert!(matches!(
            streams.poll_transmit(),
            Some((
                RECEIVER,
                StreamFrame::Chunk(Chunk {
                    transfer: 10,
                    offset: 0,
                    ..
                })
            ))
        ));
        // Messages without a snapshot are not streamed.
        let heartbeat = Message::<Register>::Heartbeat {
            ballot: Ballot::new(1, 0),
            commit: 3,
            read_round: 0,
        };
        assert_eq!(SnapshotKey::of(&heartbeat), None);
    }
}
