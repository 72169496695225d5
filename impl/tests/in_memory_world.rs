//! The runtime in a world of the test's making ([`Node::start_with`]): storage in
//! memory, a network of channels the test can cut. Shows the seam that a deterministic
//! simulation plugs into, and exercises the runtime under a partition without
//! processes: the isolated leader is replaced, writes continue, and after the heal the
//! old leader catches up.

use ballot_model::{DurableState, DurableUpdate, NodeId};
use ballot_node::frame;
use ballot_node::kv::{KvCommand, KvOutput, KvQuery, KvStore};
use ballot_node::node::{Node, NodeConfig, PeerFrame, PeerInbox};
use ballot_node::wal::WalError;
use ballot_node::world::{PeerNetwork, Storage};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Persists into a shared vector; "durable" once synced.
struct MemoryStorage {
    pending: Vec<DurableUpdate<KvCommand>>,
    durable: Arc<Mutex<Vec<DurableUpdate<KvCommand>>>>,
}

impl Storage<KvCommand> for MemoryStorage {
    fn append(&mut self, update: &DurableUpdate<KvCommand>) -> Result<(), WalError> {
        self.pending.push(update.clone());
        Ok(())
    }

    fn sync(&mut self) -> Result<(), WalError> {
        self.durable.lock().unwrap().append(&mut self.pending);
        Ok(())
    }
}

type Frame = PeerFrame<KvCommand, KvQuery, KvOutput, KvOutput>;

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
        inboxes[to].deliver(self.me, frame);
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
    let mut config = NodeConfig::new(id, peers, "/nonexistent".into(), b"unused".to_vec());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_is_replaced_and_catches_up_after_the_heal() {
    let inboxes = Arc::new(OnceLock::new());
    let isolated = Arc::new((0..3).map(|_| AtomicBool::new(false)).collect::<Vec<_>>());
    let logs: Vec<_> = (0..3).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    let mut nodes = Vec::new();
    let mut boxes = Vec::new();
    for (id, log) in logs.iter().enumerate() {
        let storage = MemoryStorage {
            pending: Vec::new(),
            durable: log.clone(),
        };
        let network = Arc::new(ChannelNetwork {
            me: id,
            inboxes: inboxes.clone(),
            isolated: isolated.clone(),
            dropped: AtomicU64::new(0),
        });
        let (node, inbox) = Node::start_with(
            config(id),
            KvStore::default(),
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
    assert!(
        !logs[first].lock().unwrap().is_empty(),
        "persists went to the given storage"
    );
    for node in &nodes {
        node.shutdown().await;
    }
}

/// A caller that gives up (drops the request future, as a RESP connection that hangs
/// up does) leaves nothing waiting behind: no leak per abandoned request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_requests_leave_no_waiter_behind() {
    let network = Arc::new(ChannelNetwork {
        me: 0,
        inboxes: Arc::new(OnceLock::new()), // no peers ever: nothing can commit
        isolated: Arc::new((0..3).map(|_| AtomicBool::new(false)).collect()),
        dropped: AtomicU64::new(0),
    });
    let storage = MemoryStorage {
        pending: Vec::new(),
        durable: Arc::new(Mutex::new(Vec::new())),
    };
    let (node, _inbox) = Node::start_with(
        config(0),
        KvStore::default(),
        DurableState::default(),
        Box::new(storage),
        network,
    )
    .expect("start");
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
