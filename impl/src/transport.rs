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
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
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
    /// Every node's peer address, by node id.
    pub peers: Vec<SocketAddr>,
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
    queues: Vec<Option<PeerQueue>>,
    send_queue_bytes_max: usize,
    /// Frames dropped because a peer's queue was full.
    pub dropped: AtomicU64,
}

impl Transport {
    /// Queues one encoded frame for `to`; drops it if the queue is full or `to` is not
    /// a peer. Never blocks.
    pub fn send(&self, to: NodeId, frame: Vec<u8>) {
        let Some(Some(queue)) = self.queues.get(to) else {
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

/// One peer's send queue: the frames, and their bytes (taken off by the writer).
#[derive(Debug)]
struct PeerQueue {
    frames: mpsc::Sender<Vec<u8>>,
    bytes: Arc<AtomicUsize>,
}

impl crate::world::PeerNetwork for Transport {
    fn send(&self, to: NodeId, frame: Vec<u8>) {
        Transport::send(self, to, frame)
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

/// Starts the listener and one writer task per peer on `tasks`. Authenticated inbound
/// frames are decoded as `F` and handed to `inbox`; an undecodable or oversized frame
/// closes that connection with a logged reason, and a closed connection is reported.
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
    let mut queues = Vec::new();
    for (peer, addr) in config.peers.iter().enumerate() {
        if peer == config.id {
            queues.push(None);
            continue;
        }
        let (tx, rx) = mpsc::channel(config.send_queue_frames.max(1));
        let bytes = Arc::new(AtomicUsize::new(0));
        queues.push(Some(PeerQueue {
            frames: tx,
            bytes: bytes.clone(),
        }));
        tasks.spawn(writer(
            config.clone(),
            peer,
            *addr,
            Dequeue { frames: rx, bytes },
        ));
    }
    let send_queue_bytes_max = config.send_queue_bytes_max;
    tasks.spawn(accept_loop(config, listener, inbox));
    Arc::new(Transport {
        queues,
        send_queue_bytes_max,
        dropped: AtomicU64::new(0),
    })
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
        handshake::dial(&mut stream, &config.secret, config.me(), peer as u16),
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

async fn accept_loop<F, D>(config: TransportConfig, listener: TcpListener, inbox: D)
where
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
        tokio::spawn(async move {
            if let Err(reason) = serve_inbound::<F, D>(&config, stream, inbox).await {
                tracing::warn!(%remote, %reason, "closed peer connection");
            }
        });
    }
}

async fn serve_inbound<F, D>(
    config: &TransportConfig,
    mut stream: TcpStream,
    inbox: D,
) -> Result<(), String>
where
    F: DeserializeOwned,
    D: Inbox<F>,
{
    let _ = stream.set_nodelay(true);
    let (peer, incarnation) = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake::accept(&mut stream, &config.secret, config.me(), config.peers.len()),
    )
    .await
    .map_err(|_| "handshake timed out".to_string())?
    .map_err(|e| format!("handshake refused: {e}"))?;
    let peer = NodeId::from(peer);
    config.meet(peer, incarnation)?;
    tracing::info!(peer, "peer connected");
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

    #[test]
    fn a_send_queue_takes_any_frame_when_empty_and_drops_past_its_byte_bound() {
        let (frames, receiver) = mpsc::channel(16);
        let bytes = Arc::new(AtomicUsize::new(0));
        let transport = Transport {
            queues: vec![
                None,
                Some(PeerQueue {
                    frames,
                    bytes: bytes.clone(),
                }),
            ],
            send_queue_bytes_max: 10,
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
