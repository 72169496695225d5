//! Peer connections over TCP: one outbound connection per peer (ours to send on), and
//! the inbound connections peers make to us (theirs to send on). Every connection
//! starts with the authenticated handshake; then, once the peer's incarnation is the
//! one this member first met ([`KnownPeers`]), it carries frames.
//!
//! Limits: each peer's send queue holds at most `send_queue_frames` frames and
//! `send_queue_bytes_max` bytes (but always takes a frame when empty, so no frame is
//! too large to send); when it is full (a slow or absent peer), new frames to that
//! peer are dropped and counted.
//! Paxos tolerates loss — the leader's heartbeat retransmits, candidates retry — so a
//! slow peer costs it its messages, never our memory. Reconnection backs off from 50 ms
//! to 1 s.

use crate::frame::{self, FrameError};
use crate::handshake;
use crate::identity::{ClusterId, Incarnation, KnownPeers};
use ballot_model::NodeId;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// How long a peer may take to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Settings the transport needs.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// The cluster this node belongs to; peers of another are refused at the handshake.
    pub cluster: ClusterId,
    /// Who voted at bootstrap ([`handshake::membership_digest`]); peers that say
    /// otherwise are refused at the handshake.
    pub membership: u64,
    /// This node.
    pub id: NodeId,
    /// This node's data directory's incarnation, presented at the handshake.
    pub incarnation: Incarnation,
    /// The incarnation each peer had when first met; a peer presenting another is
    /// refused. Written (rarely: once per peer) under the lock, before any frame.
    pub known_peers: Arc<std::sync::Mutex<KnownPeers>>,
    /// The bootstrap address book: every node's peer address, by node id. This node
    /// listens at its own entry, or at `address` if its id is past the book.
    pub peers: Vec<SocketAddr>,
    /// Where this node listens for peers, as it tells them at the handshake.
    pub address: SocketAddr,
    /// The shared cluster secret.
    pub secret: Vec<u8>,
    /// Largest frame sent or accepted.
    pub max_frame_bytes: usize,
    /// Frames queued per peer before new ones are dropped.
    pub send_queue_frames: usize,
    /// Bytes queued per peer before new frames are dropped.
    pub send_queue_bytes_max: usize,
}

/// The sending side: encoded frames go to per-peer queues drained by writer tasks.
#[derive(Debug)]
pub struct Transport {
    /// Each peer's send queue, by id (never this node's).
    queues: RwLock<BTreeMap<NodeId, PeerQueue>>,
    send_queue_bytes_max: usize,
    /// What a writer needs; `None` in unit tests, which spawn none.
    config: Option<TransportConfig>,
    /// The writer tasks, aborted when the transport is dropped.
    writers: Mutex<JoinSet<()>>,
    /// Frames dropped because a peer's queue was full.
    pub dropped: AtomicU64,
}

impl Transport {
    /// Queues one encoded frame for `to`; drops it if the queue is full or `to` is not
    /// a peer. Never blocks.
    pub fn send(&self, to: NodeId, frame: Vec<u8>) {
        let queues = self.queues.read().unwrap_or_else(PoisonError::into_inner);
        let Some(queue) = queues.get(&to) else {
            return;
        };
        let len = frame.len();
        let queued = queue.bytes.fetch_add(len, Ordering::Relaxed);
        let over = queued > 0 && queued + len > self.send_queue_bytes_max;
        if over || queue.frames.try_send(frame).is_err() {
            queue.bytes.fetch_sub(len, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Transport {
    /// Reaches peer `id` at `addr` from now on: starts a writer for a peer not in the
    /// table, or restarts it at a new address (frames queued for the old one are
    /// dropped). Nothing for this node or for an address already in use for `id`.
    pub fn add_peer(&self, id: NodeId, addr: SocketAddr) {
        let Some(config) = &self.config else {
            return;
        };
        if id == config.id || id >= ballot_model::NODE_IDS_MAX {
            return;
        }
        let mut queues = self.queues.write().unwrap_or_else(PoisonError::into_inner);
        if queues.get(&id).is_some_and(|queue| queue.addr == addr) {
            return;
        }
        let (tx, rx) = mpsc::channel(config.send_queue_frames.max(1));
        let bytes = Arc::new(AtomicUsize::new(0));
        // Replacing the queue closes the old writer's, which then ends.
        queues.insert(
            id,
            PeerQueue {
                frames: tx,
                bytes: bytes.clone(),
                addr,
            },
        );
        self.writers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .spawn(writer(
                config.clone(),
                id,
                addr,
                Dequeue { frames: rx, bytes },
            ));
    }

    /// True if the table has an address for peer `id`.
    pub fn knows(&self, id: NodeId) -> bool {
        self.queues
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&id)
    }
}

/// One peer's send queue: the frames, and their bytes (taken off by the writer), and
/// where its writer connects.
#[derive(Debug)]
struct PeerQueue {
    frames: mpsc::Sender<Vec<u8>>,
    bytes: Arc<AtomicUsize>,
    addr: SocketAddr,
}

impl crate::world::PeerNetwork for Transport {
    fn send(&self, to: NodeId, frame: Vec<u8>) {
        Transport::send(self, to, frame)
    }

    fn add_peer(&self, id: NodeId, address: &str) {
        match address.parse() {
            Ok(addr) => Transport::add_peer(self, id, addr),
            Err(error) => {
                tracing::warn!(peer = id, address, %error, "the log names a peer address that is no socket address; cannot reach that peer")
            }
        }
    }

    fn dropped_frames(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Where a connection's inbound frames go.
pub trait Inbox<F>: Send + Sync + Clone + 'static {
    /// Takes one authenticated frame from peer `from`, `bytes` long as encoded. Returns
    /// false once the node has stopped (the connection then closes).
    fn deliver(&self, from: NodeId, frame: F, bytes: usize) -> bool;
    /// A connection from `from` closed: whatever it was in the middle of sending (a
    /// snapshot stream) will not be finished on it.
    fn disconnected(&self, from: NodeId);
}

/// Starts the listener on `tasks` and one writer task per peer of the bootstrap
/// address book. Authenticated inbound frames are decoded as `F` and handed to
/// `inbox`; an undecodable or oversized frame closes that connection with a logged
/// reason, and a closed connection is reported.
pub fn start<F, D>(
    config: TransportConfig,
    listener: TcpListener,
    inbox: D,
    tasks: &mut JoinSet<()>,
) -> Arc<Transport>
where
    F: DeserializeOwned + Send + 'static,
    D: Inbox<F>,
{
    let transport = Arc::new(Transport {
        queues: RwLock::new(BTreeMap::new()),
        send_queue_bytes_max: config.send_queue_bytes_max,
        config: Some(config.clone()),
        writers: Mutex::new(JoinSet::new()),
        dropped: AtomicU64::new(0),
    });
    for (peer, addr) in config.peers.iter().enumerate() {
        transport.add_peer(peer, *addr);
    }
    tasks.spawn(accept_loop(
        config,
        listener,
        inbox,
        Arc::downgrade(&transport),
    ));
    transport
}

/// The writer's end of a peer queue: takes a frame's bytes off the count as it
/// takes the frame.
struct Dequeue {
    frames: mpsc::Receiver<Vec<u8>>,
    bytes: Arc<AtomicUsize>,
}

impl Dequeue {
    async fn recv(&mut self) -> Option<Vec<u8>> {
        let frame = self.frames.recv().await?;
        self.bytes.fetch_sub(frame.len(), Ordering::Relaxed);
        Some(frame)
    }

    fn try_recv(&mut self) -> Result<Vec<u8>, mpsc::error::TryRecvError> {
        let frame = self.frames.try_recv()?;
        self.bytes.fetch_sub(frame.len(), Ordering::Relaxed);
        Ok(frame)
    }

    fn is_closed(&self) -> bool {
        self.frames.is_closed()
    }
}

/// Keeps a connection to `peer` open and writes its queue to it.
async fn writer(config: TransportConfig, peer: NodeId, addr: SocketAddr, mut queue: Dequeue) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let stream = match connect(&config, peer, addr).await {
            Ok(stream) => {
                backoff = BACKOFF_MIN;
                tracing::info!(peer, %addr, "connected to peer");
                stream
            }
            Err(error) => {
                match &error {
                    ConnectError::Unreachable(reason) => {
                        tracing::debug!(peer, %addr, %reason, "cannot reach peer; retrying in {backoff:?}")
                    }
                    // Reachable but not one of us (or a misconfigured one of us): say
                    // so loudly, an operator must fix it.
                    ConnectError::Refused(reason) => {
                        tracing::warn!(peer, %addr, %reason, "peer handshake failed; retrying in {backoff:?}")
                    }
                }
                // Frames for an unreachable peer are stale by the time it is back.
                while queue.try_recv().is_ok() {}
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                if queue.is_closed() {
                    return;
                }
                continue;
            }
        };
        let mut out = BufWriter::with_capacity(64 << 10, stream);
        loop {
            let Some(frame) = queue.recv().await else {
                let _ = out.flush().await;
                return;
            };
            let mut result = out.write_all(&frame).await;
            // Batch whatever else is queued into the same write, then flush.
            while result.is_ok() {
                match queue.try_recv() {
                    Ok(frame) => result = out.write_all(&frame).await,
                    Err(_) => break,
                }
            }
            if result.is_ok() {
                result = out.flush().await;
            }
            if let Err(error) = result {
                tracing::warn!(peer, %addr, %error, "lost connection to peer; reconnecting");
                break;
            }
        }
    }
}

/// Why an outbound connection could not be set up.
enum ConnectError {
    /// Nothing listens there (yet), or the handshake timed out.
    Unreachable(String),
    /// Something answered but failed the handshake.
    Refused(String),
}

async fn connect(
    config: &TransportConfig,
    peer: NodeId,
    addr: SocketAddr,
) -> Result<TcpStream, ConnectError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let incarnation = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake::dial(
            &mut stream,
            &config.secret,
            config.me(),
            &config.address.to_string(),
            peer as u16,
        ),
    )
    .await
    .map_err(|_| ConnectError::Unreachable("handshake timed out".to_string()))?
    .map_err(|e| match e {
        handshake::HandshakeError::Io(e) => ConnectError::Unreachable(e.to_string()),
        refused => ConnectError::Refused(refused.to_string()),
    })?;
    config
        .meet(peer, incarnation)
        .map_err(ConnectError::Refused)?;
    Ok(stream)
}

impl TransportConfig {
    /// This node as the handshake presents it.
    fn me(&self) -> handshake::Me {
        handshake::Me {
            cluster: self.cluster,
            membership: self.membership,
            id: self.id as u16,
            incarnation: self.incarnation,
        }
    }

    /// Checks an authenticated peer's incarnation against the one first met (recording
    /// it the first time); a reason to refuse the connection if it differs.
    fn meet(&self, peer: NodeId, incarnation: Incarnation) -> Result<(), String> {
        let mut known = self
            .known_peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        known.meet(peer, incarnation).map_err(|e| e.to_string())
    }
}

async fn accept_loop<F, D>(
    config: TransportConfig,
    listener: TcpListener,
    inbox: D,
    transport: Weak<Transport>,
) where
    F: DeserializeOwned + Send + 'static,
    D: Inbox<F>,
{
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a peer connection failed");
                tokio::time::sleep(BACKOFF_MIN).await;
                continue;
            }
        };
        let config = config.clone();
        let inbox = inbox.clone();
        let transport = transport.clone();
        tokio::spawn(async move {
            if let Err(reason) = serve_inbound::<F, D>(&config, stream, inbox, transport).await {
                tracing::warn!(%remote, %reason, "closed peer connection");
            }
        });
    }
}

async fn serve_inbound<F, D>(
    config: &TransportConfig,
    mut stream: TcpStream,
    inbox: D,
    transport: Weak<Transport>,
) -> Result<(), String>
where
    F: DeserializeOwned,
    D: Inbox<F>,
{
    let _ = stream.set_nodelay(true);
    let dialer = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake::accept(&mut stream, &config.secret, config.me()),
    )
    .await
    .map_err(|_| "handshake timed out".to_string())?
    .map_err(|e| format!("handshake refused: {e}"))?;
    let peer = NodeId::from(dialer.id);
    config.meet(peer, dialer.incarnation)?;
    tracing::info!(peer, "peer connected");
    // A peer this node has no address for joined while it was away (or before it
    // applied the change that added it): answer it where it says it listens, until
    // the log says where (which then replaces this).
    if let Some(transport) = transport.upgrade() {
        if !transport.knows(peer) {
            match dialer.address.parse() {
                Ok(addr) => {
                    tracing::info!(peer, %addr, "reaching a peer at the address its handshake names");
                    transport.add_peer(peer, addr);
                }
                Err(error) => {
                    tracing::warn!(peer, address = dialer.address, %error, "peer names no socket address; cannot answer it")
                }
            }
        }
    }
    let served = serve_frames(config, peer, stream, &inbox).await;
    inbox.disconnected(peer);
    served
}

/// Reads, decodes and delivers frames from an authenticated peer until the connection
/// ends.
async fn serve_frames<F, D>(
    config: &TransportConfig,
    peer: NodeId,
    stream: TcpStream,
    inbox: &D,
) -> Result<(), String>
where
    F: DeserializeOwned,
    D: Inbox<F>,
{
    let mut reader = tokio::io::BufReader::with_capacity(64 << 10, stream);
    let mut buf = Vec::new();
    loop {
        match frame::read_frame(&mut reader, &mut buf, config.max_frame_bytes).await {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(FrameError::Io(e)) => return Err(format!("from node {peer}: {e}")),
            Err(e) => return Err(format!("from node {peer}: {e}")),
        }
        let message: F = frame::decode(&buf).map_err(|e| format!("from node {peer}: {e}"))?;
        if !inbox.deliver(peer, message, buf.len()) {
            return Ok(()); // the node is shutting down
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects the frames a transport delivers.
    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<(NodeId, u32)>>>);

    impl Inbox<u32> for Collect {
        fn deliver(&self, from: NodeId, frame: u32, _bytes: usize) -> bool {
            self.0.lock().unwrap().push((from, frame));
            true
        }
        fn disconnected(&self, _from: NodeId) {}
    }

    /// A transport for node `id` of a cluster whose bootstrap book is `book`, listening
    /// at `address`; what it receives goes to the returned inbox.
    async fn node(
        id: NodeId,
        book: Vec<SocketAddr>,
        address: SocketAddr,
        dir: &std::path::Path,
        tasks: &mut JoinSet<()>,
    ) -> (Arc<Transport>, Collect) {
        let config = TransportConfig {
            cluster: ClusterId(7),
            membership: handshake::membership_digest(book.len(), &[], &[]),
            id,
            incarnation: Incarnation(id as u64),
            known_peers: Arc::new(Mutex::new(KnownPeers::load(dir).unwrap())),
            peers: book,
            address,
            secret: b"a secret of sixteen bytes".to_vec(),
            max_frame_bytes: 1 << 16,
            send_queue_frames: 16,
            send_queue_bytes_max: 1 << 16,
        };
        let listener = TcpListener::bind(address).await.unwrap();
        let inbox = Collect::default();
        let transport = start::<u32, _>(config, listener, inbox.clone(), tasks);
        (transport, inbox)
    }

    fn encoded(value: u32) -> Vec<u8> {
        let mut out = Vec::new();
        frame::encode(&value, &mut out, 1 << 16).unwrap();
        out
    }

    /// Waits (at most 10 s) until `inbox` holds `frame` from `from`.
    async fn received(inbox: &Collect, from: NodeId, frame: u32) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !inbox.0.lock().unwrap().contains(&(from, frame)) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no frame {frame} from {from}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_peer_past_the_book_is_answered_at_the_address_its_handshake_names() {
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        };
        let (a, b) = (free(), free());
        let dir = std::env::temp_dir().join(format!("ballot-transport-{}", std::process::id()));
        let dirs = [dir.join("0"), dir.join("2")];
        for d in &dirs {
            std::fs::create_dir_all(d).unwrap();
        }
        let mut tasks = JoinSet::new();
        // Node 0 knows the bootstrap book of two; node 2 was added at `b` since.
        let (zero, zero_inbox) = node(0, vec![a, free()], a, &dirs[0], &mut tasks).await;
        let (two, two_inbox) = node(2, vec![a, free()], b, &dirs[1], &mut tasks).await;
        assert!(!zero.knows(2));
        zero.send(2, encoded(1)); // no address: dropped
        two.send(0, encoded(2));
        received(&zero_inbox, 2, 2).await;
        assert!(zero.knows(2), "learned from the handshake");
        zero.send(2, encoded(3));
        received(&two_inbox, 0, 3).await;
        assert!(!two_inbox.0.lock().unwrap().contains(&(0, 1)));
        tasks.abort_all();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_send_queue_takes_any_frame_when_empty_and_drops_past_its_byte_bound() {
        let (frames, receiver) = mpsc::channel(16);
        let bytes = Arc::new(AtomicUsize::new(0));
        let transport = Transport {
            queues: RwLock::new(BTreeMap::from([(
                1,
                PeerQueue {
                    frames,
                    bytes: bytes.clone(),
                    addr: "127.0.0.1:1".parse().unwrap(),
                },
            )])),
            send_queue_bytes_max: 10,
            config: None,
            writers: Mutex::new(JoinSet::new()),
            dropped: AtomicU64::new(0),
        };
        transport.send(1, vec![0; 25]); // larger than the bound, but the queue is empty
        transport.send(1, vec![0; 1]); // over the bound now: dropped
        assert_eq!(transport.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(bytes.load(Ordering::Relaxed), 25);
        let mut dequeue = Dequeue {
            frames: receiver,
            bytes: bytes.clone(),
        };
        assert_eq!(dequeue.try_recv().map(|f| f.len()), Ok(25));
        assert_eq!(
            bytes.load(Ordering::Relaxed),
            0,
            "taking a frame frees its bytes"
        );
        transport.send(1, vec![0; 6]);
        transport.send(1, vec![0; 4]); // exactly at the bound: taken
        transport.send(1, vec![0; 1]);
        assert_eq!(transport.dropped.load(Ordering::Relaxed), 2);
        transport.send(7, vec![0; 1]); // no such peer: ignored
        assert_eq!(bytes.load(Ordering::Relaxed), 10);
    }
}
