//! The runtime in a world of the test's making ([`Node::start_with`]): storage in
//! memory, a network of channels the test can cut. Shows the seam that a deterministic
//! simulation plugs into, and exercises the runtime under a partition without
//! processes: the isolated leader is replaced, writes continue, and after the heal the
//! old leader catches up.

use ballot_model::{DurableState, DurableUpdate, NodeId, Snapshot};
use ballot_node::frame;
use ballot_node::identity::ClusterId;
use ballot_node::kv::{KvCommand, KvOutput, KvQuery, KvStore};
use ballot_node::node::{Node, NodeConfig, NodeError, PeerFrame, PeerInbox};
use ballot_node::world::{PeerNetwork, SnapshotSaver, Storage, StorageError};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Persists into a shared vector; "durable" once synced. Its "log size" is its
/// record count, so a small `snapshot_log_bytes` makes nodes compact.
struct MemoryStorage {
    pending: Vec<DurableUpdate<KvCommand>>,
    rewrite: Option<DurableState<KvCommand>>,
    durable: Arc<Mutex<Vec<DurableUpdate<KvCommand>>>>,
    snapshots: Arc<Mutex<Vec<Snapshot<KvStore>>>>,
    staged: Option<Snapshot<KvStore>>,
}

impl MemoryStorage {
    fn new() -> Self {
        MemoryStorage {
            pending: Vec::new(),
            rewrite: None,
            durable: Arc::new(Mutex::new(Vec::new())),
            snapshots: Arc::new(Mutex::new(Vec::new())),
            staged: None,
        }
    }
}

impl Storage<KvStore> for MemoryStorage {
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
        if let Some(snapshot) = self.staged.take() {
            self.snapshots.lock().unwrap().push(snapshot);
        }
        let mut durable = self.durable.lock().unwrap();
        if let Some(state) = self.rewrite.take() {
            durable.clear();
            durable.push(DurableUpdate::Compact(state.compacted));
            durable.extend(
                state
                    .accepted
                    .into_iter()
                    .map(|(slot, entry)| DurableUpdate::Accept { slot, entry }),
            );
            durable.push(DurableUpdate::Promise(state.promised));
            durable.push(DurableUpdate::Commit(state.commit));
        }
        durable.append(&mut self.pending);
        Ok(())
    }

    fn log_bytes(&self) -> u64 {
        self.durable.lock().unwrap().len() as u64
    }

    fn snapshot_saver(&self) -> SnapshotSaver<KvStore> {
        let snapshots = self.snapshots.clone();
        Arc::new(move |snapshot: &Snapshot<KvStore>| {
            snapshots.lock().unwrap().push(snapshot.clone());
            Ok(())
        })
    }
}

type Frame = PeerFrame<KvStore>;

/// Delivers frames straight into the peers' inboxes unless a link is cut.
struct ChannelNetwork {
    me: NodeId,
    inboxes: Arc<OnceLock<Vec<PeerInbox<KvStore>>>>,
    isolated: Arc<Vec<AtomicBool>>,
    dropped: AtomicU64,
}

impl PeerNetwork for ChannelNetwork {
    fn send(&self, to: NodeId, bytes: Vec<u8>) {
        let cut = self.isolated[self.me].load(Ordering::SeqCst)
            || self.isolated[to].load(Ordering::SeqCst);
        let Some(inboxes) = self.inboxes.get() else {
            return;
        };
        if cut {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let frame: Frame = frame::decode(&bytes[4..]).expect("frames this node encoded decode");
        inboxes[to].deliver(self.me, frame, bytes.len());
    }

    fn dropped_frames(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn config(id: NodeId) -> NodeConfig {
    // Addresses are never bound in this world; they only size the cluster.
    let peers = (0..3)
        .map(|i| format!("127.0.0.1:{}", 1 + i).parse().unwrap())
        .collect();
    let mut config = NodeConfig::new(
        ClusterId(1),
        id,
        peers,
        "/nonexistent".into(),
        b"unused".to_vec(),
    );
    config.request_timeout = Duration::from_secs(5);
    config
}

async fn leader_among(nodes: &[Node<KvStore>], among: &[usize]) -> usize {
    for _ in 0..200 {
        if let Some(&id) = among
            .iter()
            .find(|&&id| nodes[id].status().role == "leader")
        {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no leader among {among:?} within 4 s");
}

/// Three nodes on the channel network; the leader is cut off, the others elect a new
/// one and write on, then the link heals and the old leader must catch up. With
/// `snapshot_log_bytes` small the new leader compacts while the old one is away, so
/// the catch-up has to go by snapshot transfer.
async fn isolate_leader_then_heal(snapshot_log_bytes: u64) -> Vec<Node<KvStore>> {
    let inboxes = Arc::new(OnceLock::new());
    let isolated = Arc::new((0..3).map(|_| AtomicBool::new(false)).collect::<Vec<_>>());
    let mut logs = Vec::new();
    let mut nodes = Vec::new();
    let mut boxes = Vec::new();
    for id in 0..3 {
        let storage = MemoryStorage::new();
        logs.push(storage.durable.clone());
        let network = Arc::new(ChannelNetwork {
            me: id,
            inboxes: inboxes.clone(),
            isolated: isolated.clone(),
            dropped: AtomicU64::new(0),
        });
        let mut config = config(id);
        config.snapshot_log_bytes = snapshot_log_bytes;
        let (node, inbox) = Node::start_with(
            config,
            Snapshot::initial(KvStore::default()),
            DurableState::default(),
            Box::new(storage),
            network,
        )
        .expect("start");
        nodes.push(node);
        boxes.push(inbox);
    }
    assert!(inboxes.set(boxes).is_ok());

    let first = leader_among(&nodes, &[0, 1, 2]).await;
    let incr = KvCommand::IncrBy {
        key: b"n".to_vec(),
        delta: 1,
    };
    for _ in 0..5 {
        assert!(matches!(
            nodes[first].propose(incr.clone()).await,
            Ok(KvOutput::Integer(_))
        ));
    }

    isolated[first].store(true, Ordering::SeqCst);
    let rest: Vec<usize> = (0..3).filter(|&id| id != first).collect();
    let second = leader_among(&nodes, &rest).await;
    for _ in 0..5 {
        assert!(matches!(
            nodes[second].propose(incr.clone()).await,
            Ok(KvOutput::Integer(_))
        ));
    }
    let read = nodes[rest[0]]
        .read(KvQuery::Get(b"n".to_vec()))
        .await
        .expect("read");
    assert_eq!(
        read,
        KvOutput::Bulk(Some(b"10".to_vec())),
        "both leaders' writes, once each"
    );
    assert!(nodes[first].dropped_frames() > 0, "the cut did drop frames");
    // Compaction runs in the background: give it (boundedly) time to pass the old
    // leader's commit index, when the test asks for it.
    let behind = nodes[first].status().commit_index;
    for _ in 0..200 {
        if snapshot_log_bytes == u64::MAX || nodes[second].status().compacted_index > behind {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    isolated[first].store(false, Ordering::SeqCst);
    let target = nodes[second].status().applied_index;
    for _ in 0..200 {
        if nodes[first].status().applied_index >= target {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        nodes[first].status().applied_index >= target,
        "the healed node caught up"
    );
    let read = nodes[first]
        .read(KvQuery::Get(b"n".to_vec()))
        .await
        .expect("read through the healed node");
    assert_eq!(read, KvOutput::Bulk(Some(b"10".to_vec())));
    assert!(
        !logs[first].lock().unwrap().is_empty(),
        "persists went to the given storage"
    );
    for node in &nodes {
        node.shutdown().await;
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_is_replaced_and_catches_up_after_the_heal() {
    let nodes = isolate_leader_then_heal(u64::MAX).await;
    assert!(
        nodes.iter().all(|n| n.status().snapshots_saved == 0),
        "no compaction without a log limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_the_compacted_log_catches_up_by_snapshot() {
    let nodes = isolate_leader_then_heal(4).await;
    assert!(
        nodes.iter().any(|n| n.status().snapshots_saved > 0),
        "someone compacted"
    );
    assert!(
        nodes.iter().any(|n| n.status().snapshots_installed > 0),
        "the healed node caught up by snapshot transfer"
    );
}

/// A request the node gives up on at its request timeout, and one whose caller gives up
/// first (drops the request future, as a RESP connection that hangs up does), leave
/// nothing waiting behind: no leak per abandoned request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_requests_leave_no_waiter_behind() {
    let network = Arc::new(ChannelNetwork {
        me: 0,
        inboxes: Arc::new(OnceLock::new()), // no peers ever: nothing can commit
        isolated: Arc::new((0..3).map(|_| AtomicBool::new(false)).collect()),
        dropped: AtomicU64::new(0),
    });
    let storage = MemoryStorage::new();
    let mut config = config(0);
    config.request_timeout = Duration::from_millis(300);
    let (node, _inbox) = Node::start_with(
        config,
        Snapshot::initial(KvStore::default()),
        DurableState::default(),
        Box::new(storage),
        network,
    )
    .expect("start");
    // A request the node itself gives up on, at its request timeout.
    let command = KvCommand::IncrBy {
        key: b"n".to_vec(),
        delta: 1,
    };
    let timed_out = node.propose(command).await;
    assert!(
        matches!(timed_out, Err(NodeError::Timeout(_))),
        "{timed_out:?}"
    );
    assert_eq!(
        node.waiting(),
        0,
        "a timed-out request's waiter was removed"
    );
    // Requests whose callers give up first.
    for _ in 0..3 {
        let command = KvCommand::IncrBy {
            key: b"n".to_vec(),
            delta: 1,
        };
        let gave_up = tokio::time::timeout(Duration::from_millis(100), node.propose(command)).await;
        assert!(gave_up.is_err(), "a lone node of three cannot commit");
    }
    assert_eq!(
        node.waiting(),
        0,
        "every abandoned request's waiter was removed"
    );
    node.shutdown().await;
}
