//! The node: one event loop that owns the core ([`Replica`]) and executes its effects,
//! and the [`Node`] handle applications use to propose commands and read.
//!
//! The loop takes a *batch* of inputs (everything queued, up to a limit), steps the
//! core on each, appends every `Persist` to the write-ahead log, and starts **one**
//! fsync beside the loop (group commit: every persist appended meanwhile shares it; see
//! `group_commit.rs`). Each send and reply leaves once the fsync that covers the
//! persists ahead of it completes: the core's ordering contract — no send or reply
//! before the persists that precede it are durable. While the fsync runs, the loop
//! goes on stepping inputs and sends at once what the core sends ahead (a leader's
//! heartbeats), so a slow disk does not depose a healthy leader. Timers are armed
//! immediately; they never leave the node. Before its
//! first step a node syncs its storage once: what it loaded may have been written by a
//! crashed process and never synced, and it must not act on what a power loss can
//! still take away.
//!
//! No protocol decision is made here: the loop feeds inputs and executes effects. The
//! only choices it makes are the ones the core leaves to drivers: timer durations and
//! their randomisation, dropping obsolete messages unprocessed (`Replica::is_obsolete`),
//! and routing a client's request to whichever node the core names as leader, and when
//! to compact the log (a resource policy: once the log outgrows
//! [`NodeConfig::snapshot_log_bytes`], the applied state is saved in the background and
//! the core is told with `Input::Compact`). A message that carries a snapshot travels
//! in chunks with flow control of its own ([`crate::snapshot_stream`]): that changes
//! how it travels, not what the receiving core steps.

mod operator;

use operator::Forwarded;
pub use operator::{OperatorAnswer, OperatorRequest};

use crate::frame;
use crate::group_commit::{GroupCommit, SyncDone};
use crate::identity::{self, Admission, ClusterId, Identity, IdentityError, KnownPeers};
use crate::limits;
use crate::snapshot_store::{SnapshotDir, SnapshotError};
use crate::snapshot_stream::{
    self, Encoded, SnapshotKey, SnapshotStreams, StreamConfig, StreamError, StreamFrame, TransferId,
};
use crate::sync::Arc;
use crate::trace::{now_nanos, TraceError, TraceWriter};
use crate::transport::{self, TransportConfig};
use crate::waiters::Waiters;
use crate::wal::{Wal, WalError};
use crate::world::{DataDir, PeerNetwork, Storage, StorageError};
use ballot_model::conformance::TraceRecord;
use ballot_model::{
    ClientId, ClientRequest, ClientResponse, ClientSession, ClusterConfig, DurableState,
    DurableUpdate, Effect, Input, MemberAddress, MemberChange, Membership, Message, NodeId,
    Operation, Outcome, ReconfigureOutcome, ReconfigureRefusal, Refusal, Replica, RestoreError,
    Role, SessionEffect, SessionInput, SessionTimer, Slot, Snapshot, StateMachine, Timer,
    TransferOutcome, TransferRefusal, Uncertainty, NODE_IDS_MAX,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The first pause before asking a busy leader (or a node that redirects to itself)
/// again; it doubles up to the heartbeat interval.
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(1);

/// Most inputs stepped between two fsyncs.
const MAX_BATCH_INPUTS: usize = 4096;
// A whole batch may be stepped while an fsync runs.
const _: () = assert!(MAX_BATCH_INPUTS <= limits::INPUTS_WHILE_SYNCING_MAX);
/// Capacity of the node's input queue; a full queue drops peer frames (Paxos
/// retransmits) and makes local callers wait.
const INPUT_QUEUE: usize = 65_536;

/// Everything a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The cluster this node belongs to: recorded in its data directory and checked
    /// at every peer handshake.
    pub cluster: ClusterId,
    /// This node's id: its index in `peers`, or, for a member added at an address
    /// ([`ballot_model::MemberChange::AddAt`]), the id past it that the log gave it.
    pub id: NodeId,
    /// The bootstrap address book: every node's peer (server-to-server) address when
    /// the cluster was created, by id; the same list on every node, including members
    /// added later. Members added at an address since are found in the log.
    pub peers: Vec<SocketAddr>,
    /// Where this node listens for peers when its id is past `peers` (a member added
    /// at an address); `None` otherwise.
    pub peer_address: Option<SocketAddr>,
    /// The bootstrap address book's client addresses, by id, if known (empty by
    /// default): with `peers`, what the leader refuses to add a machine at again
    /// ([`ballot_model::ReconfigureRefusal::AddressInUse`]).
    pub clients: Vec<SocketAddr>,
    /// The nodes (ids into `peers`) that are learners: they receive the log and apply
    /// it, and never vote or campaign (see [`ballot_model::ClusterConfig::learners`]).
    /// Every node of the cluster must be given the same list. Empty by default.
    pub learners: Vec<NodeId>,
    /// The nodes (ids into `peers`) that are no members at bootstrap: machines standing
    /// by, each of which the operator may add as a learner later ([`Node::reconfigure`],
    /// `ballot member add`), promote, or put in a removed voter's place. Every node
    /// must be given the same list. Empty by default. From the first change on, the
    /// log's membership rules who votes; this list only says who voted at the start.
    pub spares: Vec<NodeId>,
    /// Where the write-ahead log lives.
    pub data_dir: PathBuf,
    /// Whether an empty data directory may become this member's: true only for the
    /// first start of a member of a new cluster. Without it, [`Node::start`] refuses a
    /// directory that holds no data, since that is also what a lost disk looks like,
    /// and a member that forgot its votes must not vote again ([`crate::identity`]).
    pub bootstrap: bool,
    /// The shared cluster secret peers authenticate with.
    pub secret: Vec<u8>,
    /// Election timeouts are drawn uniformly from `[min, max)` each time the timer is armed.
    pub election_timeout_min: Duration,
    /// See `election_timeout_min`.
    pub election_timeout_max: Duration,
    /// The leader's heartbeat (and retransmission) interval.
    pub heartbeat_interval: Duration,
    /// How long a request may take in all, across redirects and retries.
    pub request_timeout: Duration,
    /// Largest peer frame sent or accepted. A message carrying a snapshot is streamed
    /// in chunks that fit it ([`limits::snapshot_chunk_bytes`]), so it may be larger.
    pub max_frame_bytes: usize,
    /// Largest message carrying a snapshot this node streams to a peer or assembles
    /// from one (the encoded state machine, client sessions included); a larger one is
    /// refused with an error naming this bound.
    pub snapshot_bytes_max: u64,
    /// Frames queued per peer before new ones are dropped.
    pub send_queue_frames: usize,
    /// Bytes queued per peer before new frames are dropped (an empty queue takes any
    /// frame).
    pub send_queue_bytes_max: usize,
    /// Slots a leader may have in flight (the core's pipeline window).
    pub pipeline_depth: usize,
    /// Slots the leader re-sends to a lagging peer per round trip (the core's
    /// [`catch_up_slots`](ballot_model::ClusterConfig::catch_up_slots)), each window
    /// also bounded by `batch_bytes_max` bytes: how fast a learner or a restarted
    /// follower catches up from the log, one fsync of its own per window.
    pub catch_up_slots: usize,
    /// Client requests one slot may carry (the core's batch limit); at most
    /// [`limits::BATCH_REQUESTS_MAX`].
    pub max_batch: usize,
    /// Bytes of commands one slot may carry, by [`StateMachine::command_bytes`]; a
    /// larger command is refused. With `max_batch`, a slot must fit a log record and a
    /// frame ([`limits::slot_bytes_max`]), which [`Node::start`] checks.
    pub batch_bytes_max: usize,
    /// Writes the leader queues for room in its pipeline; past it, new ones are
    /// refused as busy and retried by their node (backpressure).
    pub queue_requests_max: usize,
    /// Reads the leader holds waiting for confirmation; past it, likewise.
    pub reads_pending_max: usize,
    /// Requests waiting for an answer on this node; past it, a new request fails at
    /// once with [`NodeError::Busy`], before anything is sent.
    pub waiters_max: usize,
    /// Client sessions the replicated state remembers; opening one more expires the
    /// least recently active. Must be the same on every node, and at least
    /// `waiters_max` times the cluster size, so that every session the cluster uses at
    /// once fits the table ([`Node::start`] checks; SPEC §2.6 says what remains).
    pub sessions_max: usize,
    /// How many slots a learner's commit index may trail the leader's when this node,
    /// as leader, is asked to make it a voter; past it, the promotion is refused
    /// ([`ReconfigureRefusal::Lagging`]) until the learner has caught up: a voter far
    /// behind holds up every commit that needs its vote. A learner this leader has not
    /// heard from is refused too; `u64::MAX` turns the check off, that one included.
    pub promote_lag_max: u64,
    /// Once the write-ahead log is larger than this many bytes, the node saves a
    /// snapshot of its applied state (in the background) and compacts the log to it.
    pub snapshot_log_bytes: u64,
    /// Where to write a trace of the loop's inputs, effects and durability points, for
    /// conformance checking (`ballot-check conform`); none if `None`. See
    /// [`crate::trace`].
    pub trace_dir: Option<PathBuf>,
    /// A deliberately broken protocol variant to run, by its kebab-case name: only for
    /// showing that a test harness catches it, and only accepted by builds with the
    /// `mutants` feature (never a production build).
    pub mutant: Option<String>,
    /// Seeds every random choice the node makes (election timeouts, its client ids,
    /// snapshot transfer ids); `None` draws the seed from the operating system. A
    /// deterministic simulation sets it, so that one seed replays one run.
    pub rng_seed: Option<u64>,
    /// Runs the blocking work (fsync, encoding, decoding and saving snapshots, freeing
    /// compacted slots) on the loop's thread instead of tokio's blocking pool. Only for
    /// a deterministic simulation, whose storage is memory and whose runs threads
    /// would make unrepeatable: with a real disk, an fsync would hold up the loop.
    pub blocking_inline: bool,
}

impl NodeConfig {
    /// Where this node listens for peers: its entry in `peers`, or `peer_address` if
    /// its id is past them; an error naming the mismatch otherwise.
    ///
    /// ```
    /// use ballot_node::identity::ClusterId;
    /// use ballot_node::node::NodeConfig;
    /// let peers = vec!["127.0.0.1:7100".parse().unwrap()];
    /// let mut config = NodeConfig::new(ClusterId(7), 3, peers, "/tmp/n3".into(), b"secret".to_vec());
    /// assert!(config.listen_address().is_err(), "id 3 has no address");
    /// config.peer_address = Some("127.0.0.1:7103".parse().unwrap());
    /// assert_eq!(config.listen_address().unwrap().port(), 7103);
    /// ```
    pub fn listen_address(&self) -> Result<SocketAddr, NodeError> {
        match (self.peers.get(self.id), self.peer_address) {
            (Some(addr), None) => Ok(*addr),
            (None, Some(addr)) if self.id < NODE_IDS_MAX => Ok(addr),
            (Some(_), Some(_)) => Err(NodeError::Config(format!(
                "node {} is in the bootstrap address book (`peers`), so it takes no `peer_address`: a machine at a new address joins under a new id (`ballot member add --peer`)",
                self.id
            ))),
            (None, _) => Err(NodeError::Config(format!(
                "node id {} is past the {} bootstrap peer addresses and no `peer_address` says where it listens (ids are below {NODE_IDS_MAX})",
                self.id,
                self.peers.len()
            ))),
        }
    }

    /// A configuration with the default timings for node `id` of `cluster`, whose peer
    /// addresses are `peers`; not bootstrapping (set [`NodeConfig::bootstrap`] for a new
    /// member's first start).
    ///
    /// ```
    /// use ballot_node::identity::ClusterId;
    /// use ballot_node::node::NodeConfig;
    /// let peers = vec!["127.0.0.1:7100".parse().unwrap(), "127.0.0.1:7101".parse().unwrap()];
    /// let config = NodeConfig::new(ClusterId(7), 1, peers, "/tmp/n1".into(), b"secret".to_vec());
    /// assert!(config.election_timeout_min > config.heartbeat_interval * 2);
    /// assert!(!config.bootstrap);
    /// ```
    pub fn new(
        cluster: ClusterId,
        id: NodeId,
        peers: Vec<SocketAddr>,
        data_dir: PathBuf,
        secret: Vec<u8>,
    ) -> Self {
        NodeConfig {
            cluster,
            id,
            peers,
            peer_address: None,
            clients: Vec::new(),
            learners: Vec::new(),
            spares: Vec::new(),
            data_dir,
            bootstrap: false,
            secret,
            election_timeout_min: Duration::from_millis(150),
            election_timeout_max: Duration::from_millis(300),
            heartbeat_interval: Duration::from_millis(40),
            request_timeout: Duration::from_secs(10),
            max_frame_bytes: limits::FRAME_BYTES_MAX,
            snapshot_bytes_max: limits::SNAPSHOT_BYTES_MAX,
            send_queue_frames: 8192,
            send_queue_bytes_max: limits::SEND_QUEUE_BYTES_MAX,
            pipeline_depth: 32,
            catch_up_slots: 1024,
            max_batch: 512,
            batch_bytes_max: limits::BATCH_BYTES_MAX,
            queue_requests_max: limits::QUEUE_REQUESTS_MAX,
            reads_pending_max: limits::READS_PENDING_MAX,
            waiters_max: limits::WAITERS_MAX,
            sessions_max: limits::SESSIONS_MAX,
            promote_lag_max: 1000,
            snapshot_log_bytes: 64 << 20,
            trace_dir: None,
            mutant: None,
            rng_seed: None,
            blocking_inline: false,
        }
    }
}

/// Why a node could not start or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The data directory belongs to another member, or holds no data and the node was
    /// not told to bootstrap (see [`crate::identity`]).
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The write-ahead log could not be opened, read or written.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The newest snapshot could not be read.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The trace file could not be created.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// The snapshot and the log do not fit together.
    #[error("cannot start from the data directory: {0}")]
    Restore(#[from] RestoreError),
    /// A socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// No answer within the request timeout (the request may or may not have taken effect).
    #[error("no answer within {0:?} (the outcome is unknown)")]
    Timeout(Duration),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    Shutdown,
    /// A leadership transfer was refused; nothing changed.
    #[error("leadership transfer refused: {0}")]
    TransferRefused(TransferRefusal),
    /// A membership change was refused; nothing changed.
    #[error("membership change refused: {0}")]
    ReconfigureRefused(ReconfigureRefusal),
    /// The change was proposed, but this leader was deposed before it was chosen, and
    /// another change began the epoch it would have: it was not made, and may be asked
    /// for again (against the membership now).
    #[error("membership change not made: another change began epoch {epoch} first (at slot {start}); ask again")]
    ReconfigureSuperseded {
        /// The epoch the change would have begun.
        epoch: u32,
        /// The slot that epoch begins at.
        start: Slot,
    },
    /// The leader an operator's request was forwarded to could not serve it (it was
    /// shutting down, say): the request's outcome is unknown.
    #[error("node {leader}, which leads, could not serve the request: {reason} (the outcome is unknown)")]
    LeaderFailed {
        /// The node that was asked.
        leader: NodeId,
        /// Its error.
        reason: String,
    },
    /// A peer answered a request with the wrong kind of answer (a write with a read's
    /// result, say): a bug or a hostile peer; the request's outcome is unknown.
    #[error("a peer sent the wrong kind of answer: {0}")]
    BadAnswer(String),
    /// The node broke one of its own rules: a bug in ballot, reported rather than
    /// panicking; the request's outcome is unknown.
    #[error("internal error (a bug in ballot; the outcome is unknown): {0}")]
    Internal(String),
    /// Too many requests wait on this node already ([`NodeConfig::waiters_max`]); this
    /// one was not sent anywhere. Retry later.
    #[error("{waiting} requests are waiting on this node (waiters_max); retry later")]
    Busy {
        /// Requests waiting.
        waiting: usize,
    },
    /// The command is larger than a slot may carry; it was not executed.
    #[error(
        "the command counts {bytes} bytes, over batch_bytes_max ({max} bytes); it was not executed"
    )]
    TooLarge {
        /// What the command counts ([`StateMachine::command_bytes`]).
        bytes: usize,
        /// The bound.
        max: usize,
    },
    /// The client session the request was sent under expired before it was answered
    /// (the cluster holds more sessions than `sessions_max`): the request may or may
    /// not have taken effect.
    #[error("the client session expired while the request was in flight (the outcome is unknown)")]
    SessionExpired,
    /// The node's storage failed: it cannot promise anything any more and has stopped.
    #[error("the node stopped because its storage failed: {0}")]
    StorageFailed(String),
}

impl From<StorageError> for NodeError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Wal(error) => NodeError::Wal(error),
            StorageError::Snapshot(error) => NodeError::Snapshot(error),
        }
    }
}

/// What travels between nodes: the core's messages, plus client requests forwarded to
/// the leader and the leader's answers to them (routed to the node the client is on).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound(
    serialize = "Message<S>: Serialize, Request_<S>: Serialize, Response<S>: Serialize",
    deserialize = "Message<S>: Deserialize<'de>, Request_<S>: Deserialize<'de>, Response<S>: Deserialize<'de>"
))]
pub enum PeerFrame<S: StateMachine> {
    /// A Paxos message for the core.
    Paxos(Message<S>),
    /// A client request forwarded by the node the client talks to.
    Forward(ClientRequest<S::Command, S::Query>),
    /// The answer to a forwarded request.
    ForwardReply {
        /// The client it answers.
        client: ClientId,
        /// The answer.
        response: ClientResponse<S::Output, S::QueryOutput>,
    },
    /// A piece of a streamed message carrying a snapshot, or its flow control
    /// ([`crate::snapshot_stream`]).
    Snapshot(StreamFrame),
    /// An operator's request that the node asked could not serve, forwarded to the
    /// node it believes leads (see [`OperatorRequest`]).
    Operator {
        /// Its number at the forwarding node, which the answer names.
        id: u64,
        /// The request.
        request: OperatorRequest,
    },
    /// The answer to a forwarded operator's request.
    OperatorReply {
        /// The request's number.
        id: u64,
        /// The answer.
        answer: OperatorAnswer,
    },
}

type Frame<S> = PeerFrame<S>;
type Response<S> = ClientResponse<<S as StateMachine>::Output, <S as StateMachine>::QueryOutput>;
type Request_<S> = ClientRequest<<S as StateMachine>::Command, <S as StateMachine>::Query>;
/// A client session of this node's requests.
type NodeSession<S> = ClientSession<<S as StateMachine>::Command, <S as StateMachine>::Query>;
/// What such a session asks the node to do.
type NodeSessionEffect<S> = SessionEffect<
    <S as StateMachine>::Command,
    <S as StateMachine>::Query,
    <S as StateMachine>::Output,
    <S as StateMachine>::QueryOutput,
>;

/// The bounds a state machine needs to be replicated over the network: its commands,
/// queries and answers cross the wire and the disk, and it lives on a task. Written as
/// associated type bounds so that they are implied wherever `S: Replicated` is.
pub trait Replicated:
    Serialize
    + DeserializeOwned
    + StateMachine<
        Command: Serialize + DeserializeOwned + Send + Sync,
        Query: Serialize + DeserializeOwned + Send + Sync,
        Output: Serialize + DeserializeOwned + Send + Sync,
        QueryOutput: Serialize + DeserializeOwned + Send + Sync,
    > + Send
    + Sync
    + 'static
{
}

impl<S> Replicated for S where
    S: Serialize
        + DeserializeOwned
        + StateMachine<
            Command: Serialize + DeserializeOwned + Send + Sync,
            Query: Serialize + DeserializeOwned + Send + Sync,
            Output: Serialize + DeserializeOwned + Send + Sync,
            QueryOutput: Serialize + DeserializeOwned + Send + Sync,
        > + Send
        + Sync
        + 'static
{
}

/// What the node's loop reports after every batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// "leader", "candidate" or "follower".
    pub role: &'static str,
    /// True if this node votes; false for a learner (it receives the log, never
    /// votes or campaigns), a spare not added yet, or a removed node.
    pub voter: bool,
    /// The membership this node applied last: the epoch, its voters, learners and
    /// retired ids. The log rules it: every node passes through the same ones.
    pub membership: Membership,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// The highest ballot promised, as `round.node`.
    pub ballot: String,
    /// Slots known chosen.
    pub commit_index: u64,
    /// Slots applied to the state machine.
    pub applied_index: u64,
    /// Slots dropped from the log into a snapshot.
    pub compacted_index: u64,
    /// Size of the write-ahead log in bytes.
    pub log_bytes: u64,
    /// Snapshots saved by this node's own compaction (since it started).
    pub snapshots_saved: u64,
    /// Snapshots installed from a peer (since it started).
    pub snapshots_installed: u64,
    /// Chunks of snapshot streams sent to peers, re-sends included (since it started).
    pub snapshot_chunks_sent: u64,
    /// Bytes of those chunks.
    pub snapshot_bytes_sent: u64,
    /// Chunks of snapshot streams received in order from peers (since it started).
    pub snapshot_chunks_received: u64,
    /// Bytes of those chunks.
    pub snapshot_bytes_received: u64,
    /// Snapshot streams given up, either way: stalled, refused, corrupt or too large
    /// (since it started).
    pub snapshot_streams_failed: u64,
    /// The epoch a peer said retired this node, while the log this node applied has
    /// not reached it (it was removed while cut off): it no longer campaigns.
    pub told_removed: Option<u32>,
    /// Elections this node started (since it started).
    pub elections: u64,
    /// Times this node handed its leadership over (since it started).
    pub transfers: u64,
    /// Fsyncs of the write-ahead log (since it started).
    pub fsyncs: u64,
    /// Persist records written (since it started).
    pub persists: u64,
    /// Client writes handed to the core on this node (its own clients' and forwarded
    /// ones; retries count again).
    pub proposals: u64,
    /// Fsync latencies: how many took at most each of [`FSYNC_BUCKETS_US`] (cumulative,
    /// Prometheus-style); the last entry counts them all.
    pub fsync_buckets: [u64; FSYNC_BUCKETS_US.len() + 1],
    /// Total time spent in fsync, in microseconds.
    pub fsync_micros_total: u64,
    /// Why the node stopped serving, if its storage failed: it can promise nothing
    /// more, so it stops (and a server process built on it should exit).
    pub storage_failure: Option<String>,
    /// Client sessions in the applied state (at most `sessions_max`).
    pub sessions: usize,
    /// The applied state's session floor: a new session numbers its requests above it
    /// ([`ballot_model::ClientTable::floor`]).
    pub session_floor: u64,
}

impl Status {
    /// What this node is in the membership it applied last: "voter", "learner",
    /// "removed" (its id is retired, as its log or a peer of a later epoch says: it
    /// never campaigns again, and should be stopped), or "none" (a spare not added).
    ///
    /// ```
    /// let mut status = ballot_node::node::Status::default();
    /// status.membership = ballot_model::Membership::bootstrap(3, [1], [2]);
    /// status.id = 1;
    /// assert_eq!(status.member_role(), "learner");
    /// status.id = 2;
    /// assert_eq!(status.member_role(), "none");
    /// ```
    pub fn member_role(&self) -> &'static str {
        let members = &self.membership;
        if members.retired.contains(&self.id) || self.told_removed.is_some() {
            // A peer's word that a later epoch retired it outranks our older log.
            "removed"
        } else if members.is_voter(self.id) {
            "voter"
        } else if members.learners.contains(&self.id) {
            "learner"
        } else {
            "none"
        }
    }
}

/// Upper bounds, in microseconds, of the fsync latency histogram's buckets.
pub const FSYNC_BUCKETS_US: [u64; 10] = [
    250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 1_000_000,
];

enum Event<S: StateMachine> {
    /// A frame from a peer, and its encoded size (counted against the inbox's bytes).
    Peer(NodeId, Frame<S>, usize),
    Local(Request_<S>),
    /// A background snapshot save finished (the slot it saved, or why it failed).
    SnapshotSaved(Result<Slot, String>),
    /// A message to stream to `to` as `transfer` was encoded off the loop.
    SnapshotEncoded {
        to: NodeId,
        transfer: TransferId,
        encoded: Result<Encoded, StreamError>,
    },
    /// A connection from this peer closed.
    PeerDisconnected(NodeId),
    /// The operator asks for a leadership transfer; the core's answer goes to `reply`.
    TransferLeadership {
        to: Option<NodeId>,
        reply: tokio::sync::oneshot::Sender<TransferOutcome>,
    },
    /// The operator asks for a membership change; the core's answer goes to `reply`.
    Reconfigure {
        change: MemberChange,
        reply: tokio::sync::oneshot::Sender<ReconfigureOutcome>,
    },
    Shutdown,
}

/// Where frames from peers enter a node: the transport (or a simulated network) hands
/// each decoded frame to [`PeerInbox::deliver`]. Cheap to clone.
pub struct PeerInbox<S: StateMachine> {
    id: NodeId,
    events: mpsc::Sender<Event<S>>,
    waiters: Arc<Waiters<Response<S>>>,
    /// Operator requests peers forward to this node, for the task that runs them.
    operators: mpsc::Sender<Forwarded>,
    /// Where the answers to the operator requests this node forwarded go.
    operator_replies: Arc<Waiters<OperatorAnswer>>,
    /// Encoded bytes of the peer frames queued for the loop (it takes them off).
    queued_bytes: std::sync::Arc<AtomicUsize>,
    /// Frames dropped because the queue was full, in frames or in bytes.
    dropped: std::sync::Arc<AtomicU64>,
}

impl<S: StateMachine> Clone for PeerInbox<S> {
    fn clone(&self) -> Self {
        PeerInbox {
            id: self.id,
            events: self.events.clone(),
            waiters: self.waiters.clone(),
            operators: self.operators.clone(),
            operator_replies: self.operator_replies.clone(),
            queued_bytes: self.queued_bytes.clone(),
            dropped: self.dropped.clone(),
        }
    }
}

/// What a new [`PeerInbox`] hands on, and the node takes from: its loop's events, and
/// the operator requests peers forward.
type InboxQueues<S> = (mpsc::Receiver<Event<S>>, mpsc::Receiver<Forwarded>);

impl<S: StateMachine> PeerInbox<S> {
    fn new(id: NodeId) -> (Self, InboxQueues<S>) {
        let (events, receiver) = mpsc::channel(INPUT_QUEUE);
        let (operators, forwarded) = mpsc::channel(limits::OPERATOR_REQUESTS_MAX);
        let waiters = Arc::new(Waiters::default());
        (
            PeerInbox {
                id,
                events,
                waiters,
                operators,
                operator_replies: Arc::new(Waiters::default()),
                queued_bytes: Default::default(),
                dropped: Default::default(),
            },
            (receiver, forwarded),
        )
    }

    /// Hands `frame` from peer `from`, `bytes` long as encoded, on: a leader's answer to
    /// a request this node forwarded goes straight to the request that waits for it
    /// (it is no input to the core, so it need not queue behind the loop's fsync), an
    /// operator's request a peer forwarded goes to the task that runs those, and
    /// anything else is queued for the node's loop. A queue holding
    /// [`limits::INBOX_BYTES_MAX`] bytes (an empty one takes any frame) or its most
    /// frames drops it: Paxos retransmits. Returns false once the node has stopped.
    pub fn deliver(&self, from: NodeId, frame: PeerFrame<S>, bytes: usize) -> bool {
        match frame {
            PeerFrame::ForwardReply { client, response } => {
                if client_node(client) == self.id {
                    self.waiters.complete(client, response.seq(), response);
                } else {
                    tracing::warn!(
                        from,
                        client,
                        "dropped a forwarded reply for another node's client"
                    );
                }
            }
            PeerFrame::OperatorReply { id, answer } => {
                // Only the node asked answers (`complete` matches it); any other
                // answer is a stale or stray frame, dropped.
                self.operator_replies.complete(id, from as u64, answer);
            }
            PeerFrame::Operator { id, request } => {
                let forwarded = Forwarded { from, id, request };
                if let Err(mpsc::error::TrySendError::Full(dropped)) =
                    self.operators.try_send(forwarded)
                {
                    // Its asker times out, as if the frame were lost.
                    tracing::warn!(
                        from,
                        request = ?dropped.request,
                        "dropped an operator's request forwarded by a peer: {} wait already",
                        limits::OPERATOR_REQUESTS_MAX
                    );
                }
            }
            frame => return self.enqueue(from, frame, bytes),
        }
        !self.events.is_closed()
    }

    /// Queues `frame` for the node's loop, or drops it if the queue is full.
    fn enqueue(&self, from: NodeId, frame: PeerFrame<S>, bytes: usize) -> bool {
        let queued = self.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        if queued > 0 && queued + bytes > limits::INBOX_BYTES_MAX {
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return !self.events.is_closed();
        }
        match self.events.try_send(Event::Peer(from, frame, bytes)) {
            Ok(()) => true,
            Err(refused) => {
                self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                matches!(refused, mpsc::error::TrySendError::Full(_))
            }
        }
    }
}

impl<S: Replicated> transport::Inbox<PeerFrame<S>> for PeerInbox<S> {
    fn deliver(&self, from: NodeId, frame: PeerFrame<S>, bytes: usize) -> bool {
        PeerInbox::deliver(self, from, frame, bytes)
    }

    fn disconnected(&self, from: NodeId) {
        // Best effort: if the queue is full, the partial stream idles out instead.
        let _ = self.events.try_send(Event::PeerDisconnected(from));
    }
}

/// A running node: propose commands, read linearizably, watch its status, shut it down.
/// Cheap to clone; all clones drive the same node.
pub struct Node<S: Replicated> {
    // The standard `Arc`, not the loom-checked one: the task that runs forwarded
    // operator requests holds a `Weak` to it.
    shared: std::sync::Arc<Shared<S>>,
}

impl<S: Replicated> Clone for Node<S> {
    fn clone(&self) -> Self {
        Node {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<S: Replicated> {
    config: NodeConfig,
    events: mpsc::Sender<Event<S>>,
    waiters: Arc<Waiters<Response<S>>>,
    network: std::sync::Arc<dyn PeerNetwork>,
    status: watch::Receiver<Status>,
    /// Operator requests this node forwarded, waiting for the leader's answer (keyed by
    /// the request's number and the node asked).
    operator_replies: Arc<Waiters<OperatorAnswer>>,
    /// The next forwarded operator request's number.
    next_operator_request: AtomicU64,
    /// Notified when the leader this node knows changes (see `leader_moves`).
    leader_changed: Arc<tokio::sync::Notify>,
    /// Frames the inbox dropped.
    inbox_dropped: std::sync::Arc<AtomicU64>,
    /// Idle client sessions, lent one per request.
    sessions: crate::sync::Mutex<Vec<NodeSession<S>>>,
    next_session: AtomicU64,
    /// Client ids are `node (16 bits) | incarnation (24 bits) | session (24 bits)`: the
    /// node routes answers back to the client's node, the random incarnation keeps a
    /// restarted node from reusing an id whose old requests the cluster remembers.
    client_prefix: u64,
    /// The network's tasks (they run until aborted).
    tasks: crate::sync::Mutex<Option<JoinSet<()>>>,
    /// The event loop; it ends by itself on `Event::Shutdown`.
    driver: crate::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A deliberately broken runtime: the loop breaks one of its obligations to the core
/// (SPEC §2.5, §3.5). Selected by name like the core's mutants, in builds with the
/// `mutants` feature only, to show that trace conformance and the simulator catch a
/// runtime that breaks them.
#[cfg(feature = "mutants")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeBug {
    /// Sends and replies leave before the fsync of the persists ahead of them.
    ReleaseBeforeSync,
    /// A timer the core cancelled still fires.
    CancelledTimerFires,
    /// A restart acts on what it loaded without syncing it first: records a crashed
    /// process wrote but never synced, read back from the page cache, which a power
    /// loss can still take away.
    RestartTrustsUnsynced,
}

#[cfg(feature = "mutants")]
impl RuntimeBug {
    /// Every planted runtime bug.
    pub const ALL: [RuntimeBug; 3] = [
        RuntimeBug::ReleaseBeforeSync,
        RuntimeBug::CancelledTimerFires,
        RuntimeBug::RestartTrustsUnsynced,
    ];

    /// Its kebab-case name, as `NodeConfig::mutant` takes it.
    pub fn name(self) -> &'static str {
        match self {
            RuntimeBug::ReleaseBeforeSync => "release-before-sync",
            RuntimeBug::CancelledTimerFires => "cancelled-timer-fires",
            RuntimeBug::RestartTrustsUnsynced => "restart-trusts-unsynced",
        }
    }
}

/// `runtime_bug!(driver, Name)`: true when the build has the `mutants` feature and the
/// driver runs that bug; the constant `false` otherwise.
macro_rules! runtime_bug {
    ($driver:expr, $name:ident) => {{
        #[cfg(feature = "mutants")]
        {
            $driver.bug == Some(RuntimeBug::$name)
        }
        #[cfg(not(feature = "mutants"))]
        {
            false
        }
    }};
}

/// Selects the broken variant named `mutant`, if any (builds with `mutants` only): a
/// core mutant goes into the cluster configuration, a runtime bug to the loop.
#[cfg(feature = "mutants")]
fn with_mutant(
    cluster: ClusterConfig,
    mutant: Option<&str>,
) -> Result<(ClusterConfig, Option<RuntimeBug>), NodeError> {
    let Some(name) = mutant else {
        return Ok((cluster, None));
    };
    tracing::warn!(mutant = name, "running a deliberately broken variant");
    if let Some(bug) = RuntimeBug::ALL.into_iter().find(|b| b.name() == name) {
        return Ok((cluster, Some(bug)));
    }
    let mutant = ballot_model::Mutant::ALL
        .into_iter()
        .find(|m| m.name() == name)
        .ok_or_else(|| NodeError::Config(format!("no mutant named {name:?}")))?;
    if mutant == ballot_model::Mutant::WipedVoter {
        // A bug of the model's restarts, not of the core: a node shows it by starting
        // on an emptied data directory, which it refuses (`crate::identity`).
        return Err(NodeError::Config(format!(
            "{name} exists in the model only: empty a node's data directory to see the node refuse it"
        )));
    }
    Ok((cluster.with_mutant(Some(mutant)), None))
}

/// Refuses any mutant: this build has none.
#[cfg(not(feature = "mutants"))]
fn with_mutant(
    cluster: ClusterConfig,
    mutant: Option<&str>,
) -> Result<(ClusterConfig, ()), NodeError> {
    match mutant {
        None => Ok((cluster, ())),
        Some(name) => Err(NodeError::Config(format!(
            "mutant {name:?} requested, but this build has no mutants (build with --features mutants)"
        ))),
    }
}

/// The armed timers and their deadlines.
#[derive(Debug, Default)]
struct Timers {
    deadlines: HashMap<Timer, Instant>,
}

impl Timers {
    /// How many distinct timers there are: no more can be due at once.
    const KINDS: usize = Timer::ALL.len();

    /// Arms `timer` (re-arming resets its deadline).
    fn set(&mut self, timer: Timer, deadline: Instant) {
        self.deadlines.insert(timer, deadline);
    }

    /// Disarms `timer`.
    fn cancel(&mut self, timer: Timer) {
        self.deadlines.remove(&timer);
    }

    /// When the next timer is due.
    fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.values().min().copied()
    }

    /// Disarms and returns the timer due earliest, if one is due at `now`. A fired
    /// timer stays disarmed until the core re-arms it.
    fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let (&timer, _) = self
            .deadlines
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .min_by_key(|(timer, deadline)| (**deadline, **timer))?;
        self.deadlines.remove(&timer);
        Some(timer)
    }
}

/// The node a client id belongs to.
fn client_node(client: ClientId) -> NodeId {
    (client >> 48) as NodeId
}

impl<S: Replicated> Node<S> {
    /// Checks that `config.data_dir` is this member's (or, with
    /// [`NodeConfig::bootstrap`], empty: see [`crate::identity`]), opens its
    /// write-ahead log (replaying it), binds the peer address, and starts the node.
    /// `machine` is the empty state machine; the log's committed prefix is applied to
    /// it before the node serves.
    pub async fn start(config: NodeConfig, machine: S) -> Result<Self, NodeError> {
        Self::check_config(&config)?;
        let identity = Identity {
            cluster: config.cluster,
            member: config.id,
        };
        let found = identity::check_before_open(&config.data_dir, identity, config.bootstrap)?;
        let (wal, recovered) = Wal::open::<S::Command>(&config.data_dir)?;
        let snapshots = SnapshotDir::new(&config.data_dir);
        let snapshot = snapshots.latest::<S>()?;
        let (admission, incarnation) = identity::admit(
            &config.data_dir,
            found,
            identity,
            config.bootstrap,
            recovered.records,
        )?;
        match admission {
            Admission::Known => tracing::info!(%identity, %incarnation, "data directory"),
            Admission::Adopted => tracing::warn!(
                %identity,
                "the data directory holds this member's log but no identity file (written before directories carried one); recorded it"
            ),
            Admission::Bootstrapped => {
                tracing::info!(%identity, "bootstrapped a new member in an empty data directory")
            }
        }
        tracing::info!(
            records = recovered.records,
            promised = %recovered.durable.promised,
            commit = recovered.durable.commit,
            compacted = recovered.durable.compacted,
            snapshot = snapshot.as_ref().map(|s| s.slot),
            "write-ahead log replayed"
        );
        let snapshot = snapshot.unwrap_or_else(|| Snapshot::initial(machine));
        let addr = config.listen_address()?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| NodeError::Bind { addr, source })?;
        let (inbox, queues) = PeerInbox::new(config.id);
        let mut tasks = JoinSet::new();
        let transport = transport::start::<Frame<S>, _>(
            TransportConfig {
                cluster: config.cluster,
                membership: crate::handshake::membership_digest(
                    config.peers.len(),
                    &config.learners,
                    &config.spares,
                ),
                id: config.id,
                incarnation,
                known_peers: std::sync::Arc::new(std::sync::Mutex::new(KnownPeers::load(
                    &config.data_dir,
                )?)),
                peers: config.peers.clone(),
                address: addr,
                secret: config.secret.clone(),
                max_frame_bytes: config.max_frame_bytes,
                send_queue_frames: config.send_queue_frames,
                send_queue_bytes_max: config.send_queue_bytes_max,
            },
            listener,
            inbox.clone(),
            &mut tasks,
        );
        Self::launch(
            config,
            snapshot,
            recovered.durable,
            Box::new(DataDir::new(wal, snapshots)),
            transport,
            (inbox, queues),
            tasks,
        )
    }

    /// Starts a node in a world of the caller's making: `storage` for its persists
    /// and snapshots (holding `snapshot` and `durable`, what it recovered; a new node
    /// passes `Snapshot::initial(machine)` and an empty state), `network` for its
    /// outbound frames, and the returned [`PeerInbox`] for the frames peers send it.
    /// Timers run on tokio's clock. This is the seam for deterministic simulation;
    /// [`Node::start`] is the same with the data directory and TCP.
    pub fn start_with(
        config: NodeConfig,
        snapshot: Snapshot<S>,
        durable: DurableState<S::Command>,
        storage: Box<dyn Storage<S>>,
        network: std::sync::Arc<dyn PeerNetwork>,
    ) -> Result<(Self, PeerInbox<S>), NodeError> {
        Self::check_config(&config)?;
        let (inbox, queues) = PeerInbox::new(config.id);
        let node = Self::launch(
            config,
            snapshot,
            durable,
            storage,
            network,
            (inbox.clone(), queues),
            JoinSet::new(),
        )?;
        Ok((node, inbox))
    }

    fn check_config(config: &NodeConfig) -> Result<(), NodeError> {
        let node_count = config.peers.len();
        if node_count == 0 || node_count > NODE_IDS_MAX {
            return Err(NodeError::Config(format!(
                "the cluster has {node_count} peer addresses; it needs 1 to {NODE_IDS_MAX}"
            )));
        }
        config.listen_address()?;
        if let Some(learner) = config.learners.iter().find(|id| **id >= node_count) {
            return Err(NodeError::Config(format!(
                "learner {learner} is not an index into the {node_count} peer addresses"
            )));
        }
        if let Some(spare) = config.spares.iter().find(|id| **id >= node_count) {
            return Err(NodeError::Config(format!(
                "spare {spare} is not an index into the {node_count} peer addresses"
            )));
        }
        if let Some(both) = config.spares.iter().find(|id| config.learners.contains(id)) {
            return Err(NodeError::Config(format!(
                "node {both} is listed as a learner and as a spare: a spare is no member yet"
            )));
        }
        if (0..node_count).all(|id| config.learners.contains(&id) || config.spares.contains(&id)) {
            return Err(NodeError::Config(
                "every node is a learner or a spare: at least one must vote".into(),
            ));
        }
        if config.election_timeout_min >= config.election_timeout_max
            || config.heartbeat_interval * 2 > config.election_timeout_min
        {
            return Err(NodeError::Config(
                "need heartbeat_interval * 2 <= election_timeout_min < election_timeout_max".into(),
            ));
        }
        if config.max_batch == 0 || config.max_batch > limits::BATCH_REQUESTS_MAX {
            return Err(NodeError::Config(format!(
                "max_batch is {}; it must be between 1 and {}",
                config.max_batch,
                limits::BATCH_REQUESTS_MAX
            )));
        }
        // A full slot must fit a log record and a frame, or the first one to fill up
        // would stop the node (the log refuses it) or never reach a follower.
        let slot_bytes_max = config
            .batch_bytes_max
            .saturating_add(config.max_batch * limits::REQUEST_OVERHEAD_BYTES)
            .saturating_add(limits::SLOT_OVERHEAD_BYTES);
        let room = limits::RECORD_BYTES_MAX.min(config.max_frame_bytes);
        if config.batch_bytes_max == 0 || slot_bytes_max > room {
            return Err(NodeError::Config(format!(
                "a slot of batch_bytes_max ({}) and max_batch ({}) requests needs up to {slot_bytes_max} bytes, over the {room} bytes a log record and a peer frame may hold",
                config.batch_bytes_max, config.max_batch
            )));
        }
        // Every node lends at most `waiters_max` sessions at once: a table this large
        // has room for every session the cluster can be using at once (SPEC §2.6).
        let sessions_needed = config.waiters_max.saturating_mul(node_count);
        if config.sessions_max < sessions_needed {
            return Err(NodeError::Config(format!(
                "sessions_max is {}; with waiters_max {} on {node_count} nodes it must be at least {sessions_needed}, or the sessions the cluster uses at once would not fit the table",
                config.sessions_max, config.waiters_max
            )));
        }
        // A snapshot stream's window must leave most of a peer's send queue to
        // heartbeats and accepts, or they would be dropped behind it.
        let window_bytes = limits::snapshot_window_bytes(config.max_frame_bytes);
        if window_bytes > config.send_queue_bytes_max / 2 {
            return Err(NodeError::Config(format!(
                "a snapshot stream keeps up to {window_bytes} bytes in flight, over half of send_queue_bytes_max ({})",
                config.send_queue_bytes_max
            )));
        }
        if config.snapshot_bytes_max == 0 {
            return Err(NodeError::Config(
                "snapshot_bytes_max must be positive".into(),
            ));
        }
        // A catch-up window and a pipeline of accepts behind it must fit a peer's send
        // queue's frame bound with room to spare (its bytes are bounded by
        // batch_bytes_max, one slot's worth), or the queue would drop the window's
        // tail every time and the peer would catch up only by heartbeats.
        let frames = config.catch_up_slots.saturating_add(config.pipeline_depth);
        if config.catch_up_slots == 0 || frames > config.send_queue_frames / 2 {
            return Err(NodeError::Config(format!(
                "catch_up_slots ({}) plus pipeline_depth ({}) must be positive and at most half of send_queue_frames ({})",
                config.catch_up_slots, config.pipeline_depth, config.send_queue_frames
            )));
        }
        Ok(())
    }

    fn launch(
        config: NodeConfig,
        snapshot: Snapshot<S>,
        durable: DurableState<S::Command>,
        storage: Box<dyn Storage<S>>,
        network: std::sync::Arc<dyn PeerNetwork>,
        (inbox, (events_rx, forwarded)): (PeerInbox<S>, InboxQueues<S>),
        tasks: JoinSet<()>,
    ) -> Result<Self, NodeError> {
        let (cluster, _bug) = with_mutant(
            ClusterConfig::new(config.peers.len())
                .with_addresses(config.peers.iter().enumerate().map(|(id, peer)| {
                    let client = config.clients.get(id).map(SocketAddr::to_string);
                    MemberAddress::new(peer.to_string(), client.unwrap_or_default())
                }))
                .with_learners(config.learners.iter().copied())
                .with_spares(config.spares.iter().copied())
                .with_pipeline_depth(config.pipeline_depth.max(1))
                .with_max_batch(config.max_batch.max(1))
                .with_batch_bytes_max(config.batch_bytes_max)
                .with_queue_requests_max(config.queue_requests_max)
                .with_reads_pending_max(config.reads_pending_max)
                .with_sessions_max(config.sessions_max)
                .with_promote_lag_max(config.promote_lag_max)
                .with_catch_up_slots(config.catch_up_slots),
            config.mutant.as_deref(),
        )?;
        // What this start loaded may have been written by a crashed process and never
        // synced (read back from the page cache): make it durable before acting on it,
        // or a power loss after this node voted on it could take the vote back.
        #[cfg(feature = "mutants")]
        let trusts_unsynced = _bug == Some(RuntimeBug::RestartTrustsUnsynced);
        #[cfg(not(feature = "mutants"))]
        let trusts_unsynced = false;
        let mut storage = storage;
        if !trusts_unsynced {
            storage.sync()?;
        }
        let mut trace = match &config.trace_dir {
            Some(dir) => {
                let writer = TraceWriter::create(dir, config.id)?;
                tracing::info!(path = %writer.path().display(), "recording a trace");
                Some((writer, snapshot.clone(), durable.clone()))
            }
            None => None,
        };
        let (replica, effects) = Replica::restore(config.id, cluster.clone(), snapshot, durable)?;
        let trace = trace.take().map(|(mut writer, snapshot, durable)| {
            writer.record(&TraceRecord::Start {
                at: now_nanos(),
                node: config.id,
                node_count: cluster.node_count,
                learners: cluster.learners.iter().copied().collect(),
                spares: cluster.spares.iter().copied().collect(),
                pipeline_depth: cluster.pipeline_depth,
                max_batch: cluster.max_batch,
                batch_bytes_max: cluster.batch_bytes_max,
                queue_requests_max: cluster.queue_requests_max,
                reads_pending_max: cluster.reads_pending_max,
                sessions_max: cluster.sessions_max,
                promote_lag_max: cluster.promote_lag_max,
                catch_up_slots: cluster.catch_up_slots,
                snapshot,
                durable,
                effects: effects.clone(),
            });
            writer.flush();
            writer
        });
        let waiters = inbox.waiters.clone();
        let (status_tx, status_rx) = watch::channel(Status::default());
        let leader_changed = Arc::new(tokio::sync::Notify::new());
        let mut rng = match config.rng_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let incarnation = rng.random_range(0..1u64 << 24);
        let transfer_ids = rng.random();
        let driver = Driver {
            replica,
            commit: GroupCommit::new(storage, config.blocking_inline),
            timers: Timers::default(),
            config: config.clone(),
            network: network.clone(),
            waiters: waiters.clone(),
            status: status_tx,
            leader_changed: leader_changed.clone(),
            counters: Status::default(),
            scratch: Vec::new(),
            events: inbox.events.clone(),
            inbox_bytes: inbox.queued_bytes.clone(),
            snapshotting: false,
            streams: SnapshotStreams::new(
                StreamConfig::new(config.max_frame_bytes, config.snapshot_bytes_max),
                transfer_ids,
            ),
            trace,
            busy: Busy::default(),
            inputs_while_syncing: 0,
            rng,
            transfer_replies: std::collections::VecDeque::new(),
            reconfigure_replies: std::collections::VecDeque::new(),
            #[cfg(feature = "mutants")]
            bug: _bug,
        };
        let driver = tokio::spawn(driver.run(events_rx, effects));
        let mut tasks = tasks;
        let shared = std::sync::Arc::new_cyclic(|node| {
            tasks.spawn(operator::serve_forwarded(node.clone(), forwarded));
            Shared {
                client_prefix: ((config.id as u64) << 48) | (incarnation << 24),
                config,
                events: inbox.events,
                waiters,
                network,
                status: status_rx,
                operator_replies: inbox.operator_replies,
                next_operator_request: AtomicU64::new(1),
                leader_changed: leader_changed.clone(),
                inbox_dropped: inbox.dropped.clone(),
                sessions: crate::sync::Mutex::new(Vec::new()),
                next_session: AtomicU64::new(1),
                tasks: crate::sync::Mutex::new(Some(tasks)),
                driver: crate::sync::Mutex::new(Some(driver)),
            }
        });
        Ok(Node { shared })
    }

    /// Replicates `command` and returns its output once it is applied (exactly once,
    /// even if this call retried it after a leader change).
    pub async fn propose(&self, command: S::Command) -> Result<S::Output, NodeError> {
        // The leader would refuse it too; saying so here spares the round trip.
        let (bytes, max) = (
            S::command_bytes(&command),
            self.shared.config.batch_bytes_max,
        );
        if bytes > max {
            return Err(NodeError::TooLarge { bytes, max });
        }
        let response = self.request(Operation::Write(command)).await?;
        match response {
            ClientResponse::Written { output, .. } => Ok(output),
            other => Err(NodeError::BadAnswer(format!("{other:?}"))),
        }
    }

    /// A linearizable read: answered by the leader after it confirmed its leadership
    /// with a majority and applied everything it had committed (read-index).
    pub async fn read(&self, query: S::Query) -> Result<S::QueryOutput, NodeError> {
        let response = self.request(Operation::Read(query)).await?;
        match response {
            ClientResponse::ReadOk { output, .. } => Ok(output),
            other => Err(NodeError::BadAnswer(format!("{other:?}"))),
        }
    }

    /// Hands this node's leadership to `to` (or, with `None`, to a peer it heard from
    /// lately) without waiting for an election timeout, and waits until another node
    /// leads; returns that node. For rolling restarts: a leader that is about to stop
    /// calls this first, and clients see no failover gap.
    ///
    /// Refused ([`NodeError::TransferRefused`]) if this node does not lead or `to` is
    /// not a peer; [`NodeError::Timeout`] if no other node leads within the longest
    /// election timeout (the successor could not win: this node may lead again).
    ///
    /// ```no_run
    /// # async fn example(node: &ballot_node::node::Node<ballot_node::kv::KvStore>) {
    /// match node.transfer_leadership(None).await {
    ///     Ok(leader) => println!("node {leader} leads now"),
    ///     Err(error) => eprintln!("kept the lead: {error}"),
    /// }
    /// # }
    /// ```
    pub async fn transfer_leadership(&self, to: Option<NodeId>) -> Result<NodeId, NodeError> {
        let outcome = self
            .ask_core(|reply| Event::TransferLeadership { to, reply })
            .await?;
        let successor = match outcome {
            TransferOutcome::HandedOver { to } => to,
            TransferOutcome::Refused(refusal) => return Err(NodeError::TransferRefused(refusal)),
        };
        let me = self.shared.config.id;
        let limit = self.shared.config.election_timeout_max;
        let leads = |s: &Status| s.leader.is_some_and(|leader| leader != me);
        match tokio::time::timeout(limit, self.wait_for(leads)).await {
            Ok(status) => Ok(status.leader.unwrap_or(successor)),
            Err(_) => Err(NodeError::Timeout(limit)),
        }
    }

    /// Hands the loop an operator's request, built by `event` around the channel the
    /// core's answer comes back on, and waits for that answer.
    async fn ask_core<T>(
        &self,
        event: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> Event<S>,
    ) -> Result<T, NodeError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.shared
            .events
            .send(event(reply))
            .await
            .map_err(|_| self.stopped_error())?;
        answer.await.map_err(|_| self.stopped_error())
    }

    /// Changes the membership, and waits until the leader has applied the change:
    /// returns the new epoch's membership. The change is a log entry; the epoch it
    /// begins governs the slots after it (SPEC §7). Asked of a node that does not
    /// lead, it goes to the leader that node knows of, which runs it and answers
    /// (see [`OperatorRequest`]).
    ///
    /// Refused ([`NodeError::ReconfigureRefused`], nothing changed) if no leader is
    /// known (or the ones asked in turn each named another), a change is in progress,
    /// the change does not fit the membership (a promotion of a non-learner, the
    /// removal of the last voter, a retired id...), or the learner to promote lags by
    /// more than [`NodeConfig::promote_lag_max`] ([`ReconfigureRefusal::Lagging`]: ask
    /// again once it has caught up). [`NodeError::Timeout`] if the
    /// change was proposed but not applied within the request timeout: it may still
    /// take effect, or be lost with this node's leadership; the membership says which.
    /// [`NodeError::ReconfigureSuperseded`] if the leader was deposed and another
    /// change began the epoch instead: this one was not made.
    /// [`NodeError::LeaderFailed`] if the leader it was forwarded to could not serve
    /// it (it was stopping, say): the outcome is unknown.
    ///
    /// ```no_run
    /// # async fn example(node: &ballot_node::node::Node<ballot_node::kv::KvStore>) {
    /// use ballot_model::MemberChange;
    /// match node.reconfigure(MemberChange::AddLearner(3)).await {
    ///     Ok(members) => println!("epoch {}: learners {:?}", members.epoch, members.learners),
    ///     Err(error) => eprintln!("no change: {error}"),
    /// }
    /// # }
    /// ```
    pub async fn reconfigure(&self, change: MemberChange) -> Result<Membership, NodeError> {
        match self.ask_any(OperatorRequest::Reconfigure(change)).await? {
            OperatorAnswer::Reconfigured(members) => Ok(members),
            other => Err(NodeError::BadAnswer(format!("{other:?}"))),
        }
    }

    /// Asks whichever node leads to hand its leadership over, as
    /// [`Node::transfer_leadership`] does on the leader: to `to`, or to a peer the
    /// leader picks. Asked of a follower, it goes to the leader that node knows of.
    /// Returns the node that leads afterwards. For operators (`BALLOT.TRANSFERLEADER`);
    /// a leader that stops hands over its own leadership with
    /// [`Node::transfer_leadership`], which a follower refuses.
    ///
    /// ```no_run
    /// # async fn example(node: &ballot_node::node::Node<ballot_node::kv::KvStore>) {
    /// match node.move_leadership(Some(2)).await {
    ///     Ok(leader) => println!("node {leader} leads now"),
    ///     Err(error) => eprintln!("leadership stayed: {error}"),
    /// }
    /// # }
    /// ```
    pub async fn move_leadership(&self, to: Option<NodeId>) -> Result<NodeId, NodeError> {
        match self
            .ask_any(OperatorRequest::TransferLeadership { to })
            .await?
        {
            OperatorAnswer::LeaderMoved(leader) => Ok(leader),
            other => Err(NodeError::BadAnswer(format!("{other:?}"))),
        }
    }

    /// [`Node::reconfigure`] on this node's own core: refused unless it leads.
    async fn reconfigure_here(&self, change: MemberChange) -> Result<Membership, NodeError> {
        let outcome = self
            .ask_core(|reply| Event::Reconfigure { change, reply })
            .await?;
        let (epoch, expected) = match outcome {
            ReconfigureOutcome::Proposed { epoch, members, .. } => (epoch, members),
            ReconfigureOutcome::Refused(refusal) => {
                return Err(NodeError::ReconfigureRefused(refusal))
            }
        };
        let limit = self.shared.config.request_timeout;
        let applied = |s: &Status| s.membership.epoch >= epoch;
        let members = match tokio::time::timeout(limit, self.wait_for(applied)).await {
            Ok(status) => status.membership,
            Err(_) => return Err(NodeError::Timeout(limit)),
        };
        // `wait_for` gives up only when the node stops (its status is gone).
        if members.epoch < epoch {
            return Err(NodeError::Shutdown);
        }
        // The core said what this change makes the epoch: another membership there was
        // another leader's change, chosen where this one was not. (Past it already,
        // this node cannot tell which began it: the membership now is the answer.)
        if members.epoch == epoch && members != expected {
            return Err(NodeError::ReconfigureSuperseded {
                epoch,
                start: members.start,
            });
        }
        Ok(members)
    }

    /// The node's latest status.
    pub fn status(&self) -> Status {
        self.shared.status.borrow().clone()
    }

    /// Waits until the status satisfies `predicate` (e.g. "some node leads").
    pub async fn wait_for(&self, predicate: impl Fn(&Status) -> bool) -> Status {
        let mut status = self.shared.status.clone();
        let result = status.wait_for(|s| predicate(s)).await.map(|s| s.clone());
        result.unwrap_or_default()
    }

    /// Stops the node: the loop makes its log durable and exits, pending requests
    /// fail with [`NodeError::Shutdown`], connections close.
    pub async fn shutdown(&self) {
        let _ = self.shared.events.send(Event::Shutdown).await;
        let driver = crate::sync::lock(&self.shared.driver).take();
        if let Some(driver) = driver {
            // Let the loop make its log durable; a disk that hangs for longer than
            // this gets the task dropped (nothing unsynced was ever acknowledged).
            let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
        }
        self.stop_tasks().await;
    }

    /// Stops the node at once, as a crash would: its loop is dropped wherever it is and
    /// writes nothing more (what its storage had not synced is the storage's to lose),
    /// and pending requests fail with [`NodeError::Shutdown`]. For simulations and
    /// recovery tests; a server stops with [`Node::shutdown`].
    pub async fn crash(&self) {
        let driver = crate::sync::lock(&self.shared.driver).take();
        if let Some(driver) = driver {
            driver.abort();
            let _ = driver.await;
        }
        self.stop_tasks().await;
    }

    /// Stops the network tasks (they run forever) and fails every pending request.
    async fn stop_tasks(&self) {
        let tasks = crate::sync::lock(&self.shared.tasks).take();
        if let Some(mut tasks) = tasks {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        self.shared.waiters.close_all();
        self.shared.operator_replies.close_all();
    }

    /// Resolves with the reason once the node's storage has failed and its loop has
    /// stopped; never resolves on a node that shuts down cleanly. A server process
    /// should exit non-zero on it, so that a supervisor restarts it.
    pub async fn storage_failed(&self) -> String {
        let mut status = self.shared.status.clone();
        let failed = status
            .wait_for(|s| s.storage_failure.is_some())
            .await
            .map(|s| s.storage_failure.clone().unwrap_or_default());
        match failed {
            Ok(reason) => reason,
            Err(_) => std::future::pending().await,
        }
    }

    /// Why requests can no longer be served: a storage failure, or a shutdown.
    fn stopped_error(&self) -> NodeError {
        match self.shared.status.borrow().storage_failure.clone() {
            Some(reason) => NodeError::StorageFailed(reason),
            None => NodeError::Shutdown,
        }
    }

    /// Requests waiting for an answer on this node.
    pub fn waiting(&self) -> usize {
        self.shared.waiters.len()
    }

    /// Peer frames dropped because a queue was full: a peer's send queue, or this
    /// node's inbox.
    pub fn dropped_frames(&self) -> u64 {
        self.shared.network.dropped_frames() + self.shared.inbox_dropped.load(Ordering::Relaxed)
    }

    /// An idle client session: a pooled one, or a new one homed at this node. Either
    /// rotates among every id the cluster has given out (machines added at an address
    /// included, this one too).
    fn session(&self) -> NodeSession<S> {
        let config = &self.shared.config;
        let ids = self
            .shared
            .status
            .borrow()
            .membership
            .id_count(config.peers.len())
            .max(config.id + 1);
        if let Some(mut session) = crate::sync::lock(&self.shared.sessions).pop() {
            session
                .set_members(ids)
                .expect("a node's cluster has at least itself as a member");
            return session;
        }
        let index = self.shared.next_session.fetch_add(1, Ordering::Relaxed) & ((1 << 24) - 1);
        ClientSession::new(self.shared.client_prefix | index, ids, config.id, None)
            .expect("a node's cluster has at least itself as a member")
    }

    /// The lowest seq a request should carry now: above the session floor this node
    /// last saw, and above `(commit index + 1) << 16`. Sequence numbers only need to
    /// grow per session, so every session numbers its requests by the log position
    /// it last saw: an expired session's last seq is then below the next seq of every
    /// node whose commit index has caught up with when that session last sent, and a
    /// new or long-idle session is not refused for a floor that rose since this node
    /// last applied (SPEC §2.6).
    fn seq_at_least(&self) -> u64 {
        let status = self.shared.status.borrow();
        let by_position = status
            .commit_index
            .saturating_add(1)
            .saturating_mul(1 << 16);
        status.session_floor.saturating_add(1).max(by_position)
    }

    /// Runs `op` under a pooled client session until it is answered: the core's
    /// [`ClientSession`] decides where each attempt goes and what every answer means
    /// (the same session the model's clients run); this maps its effects onto the
    /// event loop, peer frames and timers. Every attempt keeps the same
    /// `(client, seq)`, so the leader deduplicates them.
    async fn request(&self, op: Operation<S::Command, S::Query>) -> Result<Response<S>, NodeError> {
        let shared = &self.shared;
        let config = &shared.config;
        // A node whose storage failed stops its loop; its requests would still be
        // forwarded to the leader (answers bypass the loop), so a library caller would
        // never learn that this node is down.
        if let Some(reason) = shared.status.borrow().storage_failure.clone() {
            return Err(NodeError::StorageFailed(reason));
        }
        let waiting = shared.waiters.len();
        if waiting >= config.waiters_max {
            return Err(NodeError::Busy { waiting });
        }
        // Returns the session to the pool however this ends, including the caller
        // dropping this future mid-request (a client that hung up).
        let mut lent = SessionGuard {
            shared,
            session: self.session(),
        };
        let mut effects: Vec<NodeSessionEffect<S>> = Vec::new();
        // Straight to the leader this node knows, if any: asking this node first would
        // cost a redirect that waits for this node's own fsync.
        let start = SessionInput::Start {
            op,
            seq_at_least: self.seq_at_least(),
            leader: shared.status.borrow().leader,
        };
        if let Err(error) = lent.session.step(start, &mut effects) {
            return Err(NodeError::Internal(error.to_string()));
        }
        let deadline = Instant::now() + config.request_timeout;
        let mut backoff = RETRY_BACKOFF_MIN;
        // The session arms at most one timer at a time.
        let mut armed: Option<(SessionTimer, Instant)> = None;
        let mut reply = None;
        // The (client, seq) the waiter is registered under: a finished request must
        // not leave it behind (it would count against `waiters_max`).
        let mut registered = None;
        loop {
            for effect in effects.drain(..) {
                match effect {
                    SessionEffect::Send { to, request } => {
                        let (client, seq) = request.id();
                        // One waiter per client: this replaces (and closes) the last.
                        reply = Some(shared.waiters.register(client, seq));
                        registered = Some((client, seq));
                        if to == config.id {
                            if shared.events.send(Event::Local(request)).await.is_err() {
                                return Err(self.stopped_error());
                            }
                        } else {
                            let mut bytes = Vec::new();
                            let frame: Frame<S> = PeerFrame::Forward(request);
                            if frame::encode(&frame, &mut bytes, config.max_frame_bytes).is_ok() {
                                shared.network.send(to, bytes);
                            }
                        }
                    }
                    SessionEffect::SetTimer(timer) => {
                        let after = match timer {
                            SessionTimer::Attempt => config.election_timeout_max * 2,
                            SessionTimer::Backoff => {
                                let pause = backoff;
                                backoff = (backoff * 2).min(config.heartbeat_interval);
                                pause
                            }
                            SessionTimer::AwaitLeader => config.election_timeout_min / 4,
                        };
                        armed = Some((timer, Instant::now() + after));
                    }
                    SessionEffect::CancelTimer(timer) => {
                        if armed.is_some_and(|(t, _)| t == timer) {
                            armed = None;
                        }
                    }
                    SessionEffect::Finished(outcome) => {
                        if let Some((client, seq)) = registered {
                            shared.waiters.cancel(client, seq);
                        }
                        return match outcome {
                            Outcome::Answered(response) => Ok(response),
                            Outcome::Refused(Refusal::TooLarge { bytes, max }) => {
                                Err(NodeError::TooLarge { bytes, max })
                            }
                            // The session finishes as refused only when the request can
                            // never be applied (`TooLarge`, above).
                            Outcome::Refused(other) => Err(NodeError::Internal(format!(
                                "the client session gave up on a refusal it should retry: {other}"
                            ))),
                            Outcome::Unknown(Uncertainty::SessionExpired) => {
                                Err(NodeError::SessionExpired)
                            }
                            Outcome::Unknown(Uncertainty::GaveUp) => {
                                Err(NodeError::Timeout(config.request_timeout))
                            }
                        };
                    }
                }
            }
            if reply.is_none() {
                // The last answer was taken and did not end the operation: listen for
                // the next one under the same (client, seq).
                let session = &lent.session;
                reply = Some(shared.waiters.register(session.client(), session.seq()));
                registered = Some((session.client(), session.seq()));
            }
            let target = lent.session.target();
            // Biased (in order), not random: one seed replays one run in a simulation.
            let input = tokio::select! {
                biased;
                answer = async { reply.as_mut().expect("registered above").await } => {
                    reply = None;
                    match answer {
                        Some(response) => SessionInput::Answer(response),
                        // Closed: the node is stopping.
                        None => return Err(self.stopped_error()),
                    }
                }
                timer = async {
                    match armed {
                        Some((timer, at)) => {
                            tokio::time::sleep_until(at).await;
                            timer
                        }
                        None => std::future::pending().await,
                    }
                } => {
                    armed = None;
                    SessionInput::Timer(timer)
                }
                leader = leader_moves(shared, target) => SessionInput::LeaderIs(leader),
                _ = tokio::time::sleep_until(deadline) => SessionInput::GiveUp,
            };
            if let Err(error) = lent.session.step(input, &mut effects) {
                return Err(NodeError::Internal(error.to_string()));
            }
        }
    }
}

/// A client session lent to one request: back to the pool when the request ends,
/// however it ends.
struct SessionGuard<'a, S: Replicated> {
    shared: &'a Shared<S>,
    session: NodeSession<S>,
}

impl<S: Replicated> Drop for SessionGuard<'_, S> {
    fn drop(&mut self) {
        let session = &mut self.session;
        self.shared.waiters.cancel(session.client(), session.seq());
        // A request dropped mid-way gives its operation up: the session's next one
        // takes a later seq, which supersedes it in the leader's client table.
        let mut effects: Vec<NodeSessionEffect<S>> = Vec::new();
        let _ = session.step(SessionInput::GiveUp, &mut effects);
        crate::sync::lock(&self.shared.sessions).push(session.clone());
    }
}

/// The event loop's state.
struct Driver<S: Replicated> {
    replica: Replica<S>,
    /// The storage, and the fsync that runs beside the loop.
    commit: GroupCommit<S>,
    timers: Timers,
    config: NodeConfig,
    network: std::sync::Arc<dyn PeerNetwork>,
    waiters: Arc<Waiters<Response<S>>>,
    status: watch::Sender<Status>,
    counters: Status,
    scratch: Vec<u8>,
    /// The loop's own input queue, for background work to report back on.
    events: mpsc::Sender<Event<S>>,
    /// The inbox's count of queued peer-frame bytes: taken off as frames are taken.
    inbox_bytes: std::sync::Arc<AtomicUsize>,
    /// A background snapshot save is running: start no other.
    snapshotting: bool,
    /// Messages carrying snapshots, streamed to and from peers in chunks.
    streams: SnapshotStreams,
    /// The trace being recorded, if any (see [`crate::trace`]).
    trace: Option<TraceWriter<S>>,
    /// Where the current batch's time went, for the slow-batch warning.
    busy: Busy,
    /// Inputs stepped since the fsync in flight began.
    inputs_while_syncing: usize,
    /// Every random choice the loop makes ([`NodeConfig::rng_seed`]).
    rng: StdRng,
    /// Notified when the known leader changes.
    leader_changed: Arc<tokio::sync::Notify>,
    /// Operators waiting for the core's answer to their transfer request, in the
    /// order their inputs were stepped (each step answers exactly one).
    transfer_replies: std::collections::VecDeque<tokio::sync::oneshot::Sender<TransferOutcome>>,
    /// Operators waiting for the core's answer to their membership change, oldest first.
    reconfigure_replies:
        std::collections::VecDeque<tokio::sync::oneshot::Sender<ReconfigureOutcome>>,
    /// The planted runtime bug this loop runs, if any.
    #[cfg(feature = "mutants")]
    bug: Option<RuntimeBug>,
}

/// Where one batch's time went: while the loop is busy it sends no heartbeat, so a
/// batch near an election timeout is logged with this breakdown. (An fsync runs beside
/// the loop and holds up no heartbeat.)
#[derive(Debug, Default)]
struct Busy {
    /// Inputs stepped.
    inputs: usize,
    /// Time inside the core's `step`.
    stepping: Duration,
}

/// What woke the loop.
enum Wake<S: Replicated> {
    /// The fsync beside the loop completed.
    Synced(SyncDone<S>),
    /// An input arrived (`None`: every sender is gone).
    Event(Option<Event<S>>),
    /// A timer or a stream deadline is due.
    Deadline,
}

impl<S: Replicated> Driver<S> {
    async fn run(mut self, mut events: mpsc::Receiver<Event<S>>, initial: Vec<Effect<S>>) {
        self.arm_timers(&initial);
        let mut effects = initial;
        let mut batch_started = Instant::now();
        let mut synced = None;
        loop {
            let executed = match synced.take() {
                Some(done) => self.on_synced(done),
                None => Ok(()),
            }
            .and_then(|()| self.execute(&mut effects));
            self.report_slow_batch(batch_started.elapsed());
            if let Err(error) = executed {
                // A log that cannot be written cannot promise anything: stop serving,
                // and say why to whoever watches the status (a server exits on it, so
                // a supervisor restarts it). Nothing unsynced was acknowledged.
                tracing::error!(%error, "storage failed; the node stops");
                self.counters.storage_failure = Some(error.to_string());
                self.publish_status();
                break;
            }
            self.maybe_snapshot();
            self.publish_status();
            let deadline = earliest(
                self.timers.next_deadline(),
                self.streams.next_deadline().map(Instant::from_std),
            );
            // Past this many inputs stepped while one fsync runs, take no more until it
            // completes (timers still fire): what waits for it stays bounded.
            let backlogged = self.commit.syncing()
                && self.inputs_while_syncing >= limits::INPUTS_WHILE_SYNCING_MAX;
            // Biased (a completed fsync first, so that replies are never starved by a
            // stream of inputs; then inputs), not random: one seed replays one run in a
            // simulation.
            let wake = tokio::select! {
                biased;
                done = self.commit.completion() => Wake::Synced(done),
                event = events.recv(), if !backlogged => Wake::Event(event),
                _ = sleep_until(deadline) => Wake::Deadline,
            };
            batch_started = Instant::now();
            let mut next = match wake {
                Wake::Synced(done) => {
                    synced = Some(done);
                    continue;
                }
                Wake::Event(None) => break,
                Wake::Event(Some(event)) => Some(event),
                Wake::Deadline => None,
            };
            // Take everything already queued (up to a limit) into this batch: the
            // persists of all of it share the next fsync.
            let mut batch = 0;
            let mut shutdown = false;
            loop {
                match next.take() {
                    Some(Event::Shutdown) => {
                        shutdown = true;
                        break;
                    }
                    Some(event) => {
                        self.on_event(event, &mut effects);
                        batch += 1;
                        if self.commit.syncing() {
                            self.inputs_while_syncing += 1;
                        }
                    }
                    None => {}
                }
                if batch >= MAX_BATCH_INPUTS {
                    break;
                }
                match events.try_recv() {
                    Ok(event) => next = Some(event),
                    Err(_) => break,
                }
            }
            self.fire_due_timers(&mut effects);
            self.poll_streams();
            if shutdown {
                if let Err(error) = self.drain(&mut effects).await {
                    tracing::error!(%error, "write-ahead log failed at shutdown");
                }
                if let Some(trace) = self.trace.as_mut() {
                    trace.record(&TraceRecord::Stop { at: now_nanos() });
                    trace.flush();
                }
                tracing::info!("node stopped");
                break;
            }
        }
        self.waiters.close_all();
    }

    /// Logs a batch that kept the loop busy for more than half the shortest election
    /// timeout (no heartbeat could leave meanwhile: a little more and followers start
    /// an election), with where the time went; then starts counting the next batch.
    fn report_slow_batch(&mut self, elapsed: Duration) {
        let busy = std::mem::take(&mut self.busy);
        if elapsed > self.config.election_timeout_min / 2 {
            tracing::warn!(
                busy_ms = elapsed.as_millis() as u64,
                inputs = busy.inputs,
                stepping_ms = busy.stepping.as_millis() as u64,
                "the loop was busy for over half an election timeout, sending no heartbeat"
            );
        }
    }

    fn on_event(&mut self, event: Event<S>, effects: &mut Vec<Effect<S>>) {
        if let Event::Peer(_, _, bytes) = &event {
            self.inbox_bytes.fetch_sub(*bytes, Ordering::Relaxed);
        }
        let input = match event {
            Event::Peer(from, PeerFrame::Paxos(message), _) => {
                if self.replica.is_obsolete(&message) {
                    return; // answers to a round we left: inert, see `is_obsolete`
                }
                Input::Message { from, message }
            }
            Event::Peer(_, PeerFrame::Forward(request), _) | Event::Local(request) => {
                if matches!(request, ClientRequest::Write(_)) {
                    self.counters.proposals += 1;
                }
                Input::Client(request)
            }
            Event::Peer(
                _,
                PeerFrame::ForwardReply { .. }
                | PeerFrame::Operator { .. }
                | PeerFrame::OperatorReply { .. },
                _,
            ) => {
                unreachable!("the inbox hands forwarded replies and operator requests on")
            }
            Event::Peer(from, PeerFrame::Snapshot(frame), _) => {
                return self.on_stream_frame(from, frame);
            }
            Event::SnapshotEncoded {
                to,
                transfer,
                encoded,
            } => {
                let now = Instant::now().into_std();
                if let Err(error) = self.streams.encoded(to, transfer, encoded, now) {
                    tracing::error!(to, %error, "could not stream a snapshot message");
                }
                return self.flush_streams();
            }
            Event::PeerDisconnected(from) => return self.streams.disconnected(from),
            Event::TransferLeadership { to, reply } => {
                self.transfer_replies.push_back(reply);
                Input::TransferLeadership { to }
            }
            Event::Reconfigure { change, reply } => {
                self.reconfigure_replies.push_back(reply);
                Input::Reconfigure(change)
            }
            Event::SnapshotSaved(saved) => {
                self.snapshotting = false;
                match saved {
                    Ok(through) => {
                        self.counters.snapshots_saved += 1;
                        tracing::info!(slot = through, "snapshot saved; compacting the log");
                        Input::Compact { through }
                    }
                    Err(error) => {
                        // The log keeps growing until a later attempt succeeds; nothing
                        // is lost.
                        tracing::error!(%error, "could not save a snapshot");
                        return;
                    }
                }
            }
            Event::Shutdown => return,
        };
        self.step(input, effects);
    }

    /// The compaction policy: once the log outgrows `snapshot_log_bytes` and there are
    /// applied slots it still holds, copy the applied state, encode and write the copy
    /// on a blocking thread and, when it is durable, tell the core (`Input::Compact`).
    /// Only the copy is taken on the loop: make the state machine a persistent
    /// structure (as [`crate::kv::KvStore`] is) and it costs next to nothing.
    fn maybe_snapshot(&mut self) {
        let Some(storage) = self.commit.storage() else {
            return; // away on an fsync: look again after it
        };
        let log_bytes = storage.log_bytes();
        self.counters.log_bytes = log_bytes;
        if self.snapshotting
            || log_bytes <= self.config.snapshot_log_bytes
            || self.replica.applied_index() <= self.replica.durable().compacted
        {
            return;
        }
        self.snapshotting = true;
        // A copy of the applied state: cheap when the state machine is a persistent
        // structure (the key-value store is), and then encoding and writing it run off
        // the loop while the live state moves on.
        let started = std::time::Instant::now();
        let snapshot = self.replica.snapshot();
        let slot = snapshot.slot;
        let saver = storage.snapshot_saver();
        let events = self.events.clone();
        let inline = self.config.blocking_inline;
        tracing::info!(
            slot,
            log_bytes,
            copy_us = started.elapsed().as_micros() as u64,
            "log outgrew its limit; saving a snapshot"
        );
        tokio::spawn(async move {
            let saved = match off_loop(inline, move || saver(&snapshot)).await {
                Some(Ok(())) => Ok(slot),
                Some(Err(error)) => Err(error.to_string()),
                None => Err("saving the snapshot panicked".to_string()),
            };
            // Waits for room: this report must not be dropped, or no snapshot would
            // ever be taken again. Fails only once the loop is gone.
            let _ = events.send(Event::SnapshotSaved(saved)).await;
        });
    }

    fn step(&mut self, input: Input<S>, effects: &mut Vec<Effect<S>>) {
        let traced = self.trace.as_ref().map(|_| (input.clone(), effects.len()));
        let from = effects.len();
        let started = Instant::now();
        let result = self.replica.step(input, effects);
        if let Some(dropped) = self.replica.take_discarded() {
            // A compaction's dropped slots: freeing a few hundred thousand on the loop
            // would hold up heartbeats for longer than an election timeout.
            if self.config.blocking_inline {
                drop(dropped);
            } else {
                tokio::task::spawn_blocking(move || drop(dropped));
            }
        }
        self.busy.stepping += started.elapsed();
        self.busy.inputs += 1;
        self.arm_timers(&effects[from..]);
        if let (Some(trace), Some((input, from))) = (self.trace.as_mut(), traced) {
            trace.record(&TraceRecord::Step {
                at: now_nanos(),
                input,
                refused: result.is_err(),
                effects: effects[from..].to_vec(),
            });
        }
        if let Err(error) = result {
            // Bad input from a peer: the core refused it without changing state.
            tracing::warn!(%error, "refused a peer message");
        }
        #[cfg(debug_assertions)]
        if let Err(violation) = ballot_model::invariants::check_replica(&self.replica) {
            panic!("replica invariant violated on the live state: {violation}");
        }
    }

    /// Arms and disarms timers as the core asks, the moment it asks: timers never
    /// leave the node, so nothing orders them after a sync, and a timer one step
    /// cancels must not fire in the next.
    fn arm_timers(&mut self, effects: &[Effect<S>]) {
        for effect in effects {
            match effect {
                Effect::SetTimer(timer) => {
                    let deadline = Instant::now() + self.duration(*timer);
                    self.timers.set(*timer, deadline);
                }
                Effect::CancelTimer(timer) if !runtime_bug!(self, CancelledTimerFires) => {
                    self.timers.cancel(*timer);
                }
                _ => {}
            }
        }
    }

    fn fire_due_timers(&mut self, effects: &mut Vec<Effect<S>>) {
        let now = Instant::now();
        // One at a time, earliest first: each step may cancel or re-arm the others
        // (a leader stepping down on its quorum check cancels its heartbeat). Bounded
        // by the number of timers, so a zero duration cannot spin.
        for _ in 0..Timers::KINDS {
            let Some(timer) = self.timers.pop_due(now) else {
                break;
            };
            // A new ballot shows as `Effect::Campaigning`, counted where it is executed.
            self.step(Input::Timer(timer), effects);
        }
    }

    /// Executes `effects` in order, keeping the contract: persists are appended as they
    /// come; a send or reply leaves once the fsync that covers the persists emitted
    /// ahead of it has completed (at once if they are durable already), a send ahead
    /// at once; then an fsync starts beside the loop if anything is left to sync.
    fn execute(&mut self, effects: &mut Vec<Effect<S>>) -> Result<(), StorageError> {
        // The trace reaches the OS before the log does: a restarted node must never
        // have loaded an update its trace lacks.
        if let Some(trace) = self.trace.as_mut() {
            trace.flush();
        }
        let mut now = Vec::new();
        let mut compacted = false;
        for effect in effects.drain(..) {
            match effect {
                Effect::Persist(update) => {
                    compacted |= matches!(update, DurableUpdate::Compact(_));
                    self.commit.persist(update)?;
                    self.counters.persists += 1;
                }
                Effect::SaveSnapshot(snapshot) => {
                    tracing::info!(slot = snapshot.slot, "installing a snapshot from a peer");
                    self.counters.snapshots_installed += 1;
                    self.commit.save_snapshot(snapshot);
                }
                Effect::Removed { epoch, by } => tracing::warn!(
                    epoch,
                    by,
                    "node {by} says the cluster removed this node at epoch {epoch}, while it was cut off: it will never vote or campaign again; stop it (its id is not reused)"
                ),
                Effect::Campaigning { ballot } => {
                    self.counters.elections += 1;
                    tracing::info!(%ballot, "running for leader");
                }
                Effect::LeadershipTransfer(outcome) => {
                    match outcome {
                        TransferOutcome::HandedOver { to } => {
                            self.counters.transfers += 1;
                            tracing::info!(to, "handing leadership over");
                        }
                        TransferOutcome::Refused(refusal) => {
                            tracing::info!(%refusal, "leadership transfer refused");
                        }
                    }
                    // The operator may have stopped waiting: nothing to do then.
                    if let Some(reply) = self.transfer_replies.pop_front() {
                        let _ = reply.send(outcome);
                    }
                }
                // The core answers every `Input::Reconfigure` with exactly one of
                // these, in order: the oldest waiting request gets it.
                Effect::Reconfiguration(outcome) => {
                    match &outcome {
                        ReconfigureOutcome::Proposed { slot, epoch, .. } => {
                            tracing::info!(slot, epoch, "membership change proposed")
                        }
                        ReconfigureOutcome::Refused(refusal) => {
                            tracing::info!(%refusal, "membership change refused")
                        }
                    }
                    if let Some(reply) = self.reconfigure_replies.pop_front() {
                        let _ = reply.send(outcome);
                    }
                }
                // Armed when emitted (`arm_timers`).
                Effect::SetTimer(_) | Effect::CancelTimer(_) | Effect::Applied { .. } => {}
                out @ (Effect::Send { .. } | Effect::Reply { .. }) => {
                    now.extend(self.commit.hold(out));
                }
                ahead @ Effect::SendAhead { .. } => now.push(ahead),
            }
        }
        if compacted {
            // The log now starts after the compaction point: write it afresh (few
            // records) rather than keep the dropped slots on disk.
            self.commit.rewrite(self.replica.durable())?;
        }
        #[cfg(feature = "mutants")]
        if runtime_bug!(self, ReleaseBeforeSync) {
            now.extend(self.commit.release_all_early());
        }
        self.commit.start_sync();
        self.release(now);
        Ok(())
    }

    /// The fsync beside the loop completed: what waited for it leaves.
    fn on_synced(&mut self, done: SyncDone<S>) -> Result<(), StorageError> {
        self.inputs_while_syncing = 0;
        self.count_fsync(done.took);
        let ready = self.commit.completed(done)?;
        if let Some(trace) = self.trace.as_mut() {
            trace.record(&TraceRecord::Synced {
                at: now_nanos(),
                persists: self.commit.synced(),
            });
        }
        self.release(ready);
        Ok(())
    }

    /// Executes `effects` and waits until everything persisted is durable and every
    /// send and reply has left: a clean stop.
    async fn drain(&mut self, effects: &mut Vec<Effect<S>>) -> Result<(), StorageError> {
        self.execute(effects)?;
        while self.commit.syncing() {
            let done = self.commit.completion().await;
            self.on_synced(done)?;
            self.execute(effects)?;
        }
        Ok(())
    }

    /// Hands `out` (sends, sends ahead, replies) to the network and the waiting
    /// clients, recording first in the trace how many sends and replies have left, and
    /// making the trace reach the OS: a peer must never step a message that its
    /// sender's trace lacks.
    fn release(&mut self, out: Vec<Effect<S>>) {
        if out.is_empty() {
            return;
        }
        if let Some(trace) = self.trace.as_mut() {
            if out.iter().any(|e| !matches!(e, Effect::SendAhead { .. })) {
                trace.record(&TraceRecord::Released {
                    at: now_nanos(),
                    sends: self.commit.released(),
                });
            }
            trace.flush();
        }
        for effect in out {
            match effect {
                Effect::Send { to, message } | Effect::SendAhead { to, message } => {
                    match SnapshotKey::of(&message) {
                        Some(key) => self.stream(to, key, message),
                        None => self.send(to, &PeerFrame::Paxos(message)),
                    }
                }
                Effect::Reply { client, response } => {
                    let owner = client_node(client);
                    if owner == self.config.id {
                        self.waiters.complete(client, response.seq(), response);
                    } else {
                        let frame: Frame<S> = PeerFrame::ForwardReply { client, response };
                        self.send(owner, &frame);
                    }
                }
                _ => unreachable!("only sends and replies are released"),
            }
        }
    }

    /// Counts one completed fsync that took `took`.
    fn count_fsync(&mut self, took: Duration) {
        let counters = &mut self.counters;
        counters.fsyncs += 1;
        let micros = took.as_micros() as u64;
        counters.fsync_micros_total += micros;
        for (bucket, bound) in FSYNC_BUCKETS_US.iter().enumerate() {
            if micros <= *bound {
                counters.fsync_buckets[bucket] += 1;
            }
        }
        counters.fsync_buckets[FSYNC_BUCKETS_US.len()] += 1;
    }

    /// Streams `message`, which carries a snapshot, to `to` in chunks, unless the
    /// transfer to `to` in progress covers it. It is encoded off the loop (it may be
    /// gigabytes), and reported back as `Event::SnapshotEncoded`.
    fn stream(&mut self, to: NodeId, key: SnapshotKey, message: Message<S>) {
        let compacted = self.replica.durable().compacted;
        let Some(transfer) = self.streams.offer(to, key, compacted) else {
            return; // the transfer in progress delivers an equivalent message
        };
        let bytes_max = self.streams.snapshot_bytes_max();
        let events = self.events.clone();
        let inline = self.config.blocking_inline;
        tokio::spawn(async move {
            let encoded = off_loop(inline, move || snapshot_stream::encode(&message, bytes_max))
                .await
                .unwrap_or_else(|| Err(StreamError::Encode("the encoder panicked".into())));
            let _ = events
                .send(Event::SnapshotEncoded {
                    to,
                    transfer,
                    encoded,
                })
                .await;
        });
    }

    /// A stream frame from `from`. A completed, verified message is decoded off the
    /// loop and then stepped like any peer message (`Event::Peer` with no inbox bytes):
    /// the core sees exactly the message its peer's core sent.
    fn on_stream_frame(&mut self, from: NodeId, frame: StreamFrame) {
        match self
            .streams
            .on_frame(from, frame, Instant::now().into_std())
        {
            Ok(None) => {}
            Ok(Some(bytes)) => {
                let events = self.events.clone();
                let inline = self.config.blocking_inline;
                tokio::spawn(async move {
                    let decoded =
                        off_loop(inline, move || frame::decode::<Message<S>>(&bytes)).await;
                    match decoded {
                        Some(Ok(message)) => {
                            let frame = PeerFrame::Paxos(message);
                            let _ = events.send(Event::Peer(from, frame, 0)).await;
                        }
                        Some(Err(error)) => {
                            tracing::warn!(from, %error, "a streamed message did not decode; dropped")
                        }
                        None => tracing::error!(from, "decoding a streamed message panicked"),
                    }
                });
            }
            Err(error) => tracing::warn!(peer = from, %error, "snapshot stream failed"),
        }
        self.flush_streams();
    }

    /// Re-sends what went unacknowledged and drops what stalled, when due.
    fn poll_streams(&mut self) {
        let now = Instant::now().into_std();
        if self.streams.next_deadline().is_some_and(|due| due <= now) {
            for (peer, error) in self.streams.poll(now) {
                tracing::warn!(peer, %error, "snapshot stream failed");
            }
            self.flush_streams();
        }
    }

    /// Sends the frames the streams produced.
    fn flush_streams(&mut self) {
        while let Some((to, frame)) = self.streams.poll_transmit() {
            self.send(to, &PeerFrame::Snapshot(frame));
        }
    }

    fn send(&mut self, to: NodeId, frame: &Frame<S>) {
        self.scratch.clear();
        match frame::encode(frame, &mut self.scratch, self.config.max_frame_bytes) {
            Ok(()) => self.network.send(to, std::mem::take(&mut self.scratch)),
            Err(error) => tracing::error!(to, %error, "could not encode a peer frame; dropped"),
        }
    }

    fn duration(&mut self, timer: Timer) -> Duration {
        match timer {
            // Randomised so that candidates rarely collide (the timing assumption of
            // SPEC.md: elections eventually run one at a time).
            Timer::Election => self
                .rng
                .random_range(self.config.election_timeout_min..self.config.election_timeout_max),
            // Asking again at the same ballot costs no ballot and deposes no one.
            Timer::CandidacyRetry | Timer::Heartbeat => self.config.heartbeat_interval,
            Timer::CheckQuorum => self.config.election_timeout_max,
        }
    }

    fn publish_status(&mut self) {
        let replica = &self.replica;
        let status = Status {
            id: self.config.id,
            role: match replica.role() {
                Role::Leader(_) => "leader",
                Role::Candidate(_) => "candidate",
                Role::Follower { .. } => "follower",
            },
            voter: replica.is_voter() && replica.told_removed().is_none(),
            membership: replica.membership().clone(),
            told_removed: replica.told_removed(),
            leader: replica.known_leader(),
            ballot: replica.durable().promised.to_string(),
            commit_index: replica.commit_index(),
            applied_index: replica.applied_index(),
            compacted_index: replica.durable().compacted,
            sessions: replica.client_table().session_count(),
            session_floor: replica.client_table().floor(),
            ..self.counters.clone()
        };
        let streamed = self.streams.counters();
        let status = Status {
            snapshot_chunks_sent: streamed.chunks_sent,
            snapshot_bytes_sent: streamed.bytes_sent,
            snapshot_chunks_received: streamed.chunks_received,
            snapshot_bytes_received: streamed.bytes_received,
            snapshot_streams_failed: streamed.failed,
            ..status
        };
        let leader_moved = self.status.borrow().leader != status.leader;
        if self.status.borrow().membership.epoch != status.membership.epoch {
            let members = &status.membership;
            // The log is the address book past the bootstrap one: reach every member
            // added at an address where the log says it is.
            for (id, address) in members.added_members(self.config.peers.len()) {
                self.network.add_peer(id, &address.peer);
            }
            tracing::info!(
                epoch = members.epoch,
                from_slot = members.start,
                voters = ?members.voters,
                learners = ?members.learners,
                this_node = status.member_role(),
                "membership changed"
            );
            if status.member_role() == "removed" {
                tracing::warn!(
                    epoch = members.epoch,
                    "this node was removed from the cluster: it will never vote or campaign again; stop it (its id is not reused)"
                );
            }
        }
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
        if leader_moved {
            self.leader_changed.notify_waiters();
        }
    }
}

/// Resolves, with the new leader, the next time this node's known leader changes to
/// someone other than `from`. Changes already seen do not count: only news does.
///
/// Waits on `leader_changed`, not on the status channel: a watch channel wakes its
/// receivers in a random order, and one seed must replay one run in a simulation.
async fn leader_moves<S: Replicated>(shared: &Shared<S>, from: NodeId) -> NodeId {
    let known = shared.status.borrow().leader;
    loop {
        // Registered before the status is read, so no change between is missed.
        let notified = shared.leader_changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let leader = shared.status.borrow().leader;
        if let Some(leader) = leader.filter(|l| *l != from && Some(*l) != known) {
            return leader;
        }
        // Never woken once the node stopped: the reply says so.
        notified.await;
    }
}

/// Runs `work` off the async threads, on tokio's blocking pool; or right here with
/// [`NodeConfig::blocking_inline`]. `None` if it panicked on the pool.
pub(crate) async fn off_loop<T: Send + 'static>(
    inline: bool,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    if inline {
        return Some(work());
    }
    tokio::task::spawn_blocking(work).await.ok()
}

/// The earlier of two optional deadlines.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learners_must_be_nodes_and_leave_a_voter() {
        let peers: Vec<SocketAddr> = (0..3)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 7100 + i)))
            .collect();
        let config = |learners: Vec<NodeId>| NodeConfig {
            learners,
            ..NodeConfig::new(
                ClusterId(1),
                0,
                peers.clone(),
                "/nowhere".into(),
                vec![7; 32],
            )
        };
        assert!(Node::<crate::kv::KvStore>::check_config(&config(vec![2])).is_ok());
        let refused = |learners| match Node::<crate::kv::KvStore>::check_config(&config(learners)) {
            Err(NodeError::Config(reason)) => reason,
            other => panic!("accepted: {other:?}"),
        };
        assert!(refused(vec![3]).contains("learner 3 is not an index"));
        assert!(refused(vec![0, 1, 2]).contains("at least one must vote"));
    }

    #[test]
    fn spares_must_be_nodes_no_learners_and_leave_a_voter() {
        let peers: Vec<SocketAddr> = (0..3)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 7100 + i)))
            .collect();
        let check = |learners: Vec<NodeId>, spares: Vec<NodeId>| {
            let config = NodeConfig {
                learners,
                spares,
                ..NodeConfig::new(
                    ClusterId(1),
                    0,
                    peers.clone(),
                    "/nowhere".into(),
                    vec![7; 32],
                )
            };
            match Node::<crate::kv::KvStore>::check_config(&config) {
                Ok(()) => String::new(),
                Err(NodeError::Config(reason)) => reason,
                Err(other) => panic!("not a configuration error: {other:?}"),
            }
        };
        assert_eq!(check(vec![], vec![2]), "");
        assert!(check(vec![], vec![3]).contains("spare 3 is not an index"));
        assert!(check(vec![1], vec![1]).contains("a learner and as a spare"));
        assert!(check(vec![0], vec![1, 2]).contains("at least one must vote"));
    }

    #[test]
    fn due_timers_fire_earliest_first_and_a_cancelled_one_never_fires() {
        let now = Instant::now();
        let mut timers = Timers::default();
        timers.set(Timer::Heartbeat, now - Duration::from_millis(10));
        timers.set(Timer::CheckQuorum, now - Duration::from_millis(20));
        timers.set(Timer::Election, now + Duration::from_secs(1));
        assert_eq!(timers.pop_due(now), Some(Timer::CheckQuorum));
        // Stepping the quorum check deposed the leader: its heartbeat is cancelled
        // before the next timer is looked at, so it does not fire.
        timers.cancel(Timer::Heartbeat);
        assert_eq!(timers.pop_due(now), None);
        assert_eq!(timers.next_deadline(), Some(now + Duration::from_secs(1)));
        // A re-armed timer fires at its new deadline, not its old one.
        timers.set(Timer::Heartbeat, now - Duration::from_millis(5));
        timers.set(Timer::Heartbeat, now + Duration::from_millis(5));
        assert_eq!(timers.pop_due(now), None);
        assert_eq!(
            timers.pop_due(now + Duration::from_millis(5)),
            Some(Timer::Heartbeat)
        );
        assert_eq!(
            timers.pop_due(now + Duration::from_millis(5)),
            None,
            "fired once"
        );
    }
}
