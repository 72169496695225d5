//! The runtime in a world of the test's making ([`Node::start_with`]): storage in
//! memory, a network of channels the test can cut. Shows the seam that a deterministic
//! simulation plugs into, and exercises the runtime under a partition without
//! processes: the isolated leader is replaced, writes continue, and after the heal the
//! old leader catches up.

use ballot_model::{DurableState, NodeId, Snapshot};
use ballot_node::frame;
use ballot_node::identity::ClusterId;
use ballot_node::kv::{KvCommand, KvOutput, KvQuery, KvStore};
use ballot_node::node::{Node, NodeConfig, NodeError, PeerFrame, PeerInbox};
use ballot_node::world::memory::{Disk, DiskFaults, MemoryStorage, SharedDisk};
use ballot_node::world::PeerNetwork;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

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

/// Switches that cut each of three nodes off the network, all closed.
fn links() -> Arc<Vec<AtomicBool>> {
    Arc::new((0..3).map(|_| AtomicBool::new(false)).collect())
}

/// Three disks that never fail.
fn healthy() -> Vec<DiskFaults> {
    (0..3).map(|_| DiskFaults::none()).collect()
}

/// Polls `holds` every 20 ms, at most `tries` times; true once it holds.
async fn eventually(tries: usize, mut holds: impl FnMut() -> bool) -> bool {
    for _ in 0..tries {
        if holds() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    holds()
}

/// Three nodes in memory over one channel network (links cut per `isolated`), node
/// `i`'s disk misbehaving as `faults[i]`; returns the nodes and their disks.
fn start_three(
    isolated: &Arc<Vec<AtomicBool>>,
    faults: &[DiskFaults],
    snapshot_log_bytes: u64,
) -> (Vec<Node<KvStore>>, Vec<SharedDisk<KvStore>>) {
    let inboxes = Arc::new(OnceLock::new());
    let (mut nodes, mut disks, mut boxes) = (Vec::new(), Vec::new(), Vec::new());
    for (id, faults) in faults.iter().enumerate() {
        let disk = Disk::shared();
        disks.push(disk.clone());
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
            Box::new(MemoryStorage::new(disk, faults.clone())),
            network,
        )
        .expect("start");
        nodes.push(node);
        boxes.push(inbox);
    }
    assert!(inboxes.set(boxes).is_ok());
    (nodes, disks)
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
    let (isolated, faults) = (links(), healthy());
    let (nodes, logs) = start_three(&isolated, &faults, snapshot_log_bytes);

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
    eventually(200, || {
        snapshot_log_bytes == u64::MAX || nodes[second].status().compacted_index > behind
    })
    .await;

    isolated[first].store(false, Ordering::SeqCst);
    let target = nodes[second].status().applied_index;
    assert!(
        eventually(200, || nodes[first].status().applied_index >= target).await,
        "the healed node caught up"
    );
    let read = nodes[first]
        .read(KvQuery::Get(b"n".to_vec()))
        .await
        .expect("read through the healed node");
    assert_eq!(read, KvOutput::Bulk(Some(b"10".to_vec())));
    assert!(
        !logs[first].lock().unwrap().records.is_empty(),
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
        isolated: links(),
        dropped: AtomicU64::new(0),
    });
    let storage = MemoryStorage::new(Disk::shared(), DiskFaults::none());
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

/// A node whose disk fails at start does not start; a follower whose disk fails later
/// stops, and tells every later caller why at once (rather than forwarding their
/// requests to the leader, whose answers would bypass its stopped loop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_disk_fails_says_so_to_every_caller() {
    let lonely = || {
        Arc::new(ChannelNetwork {
            me: 0,
            inboxes: Arc::new(OnceLock::new()),
            isolated: links(),
            dropped: AtomicU64::new(0),
        })
    };
    let start = |faults: &DiskFaults| {
        Node::start_with(
            config(0),
            Snapshot::initial(KvStore::default()),
            DurableState::default(),
            Box::new(MemoryStorage::new(Disk::shared(), faults.clone())),
            lonely(),
        )
    };
    let failing = DiskFaults::none();
    failing.sync_failure_ppm.store(1_000_000, Ordering::Relaxed);
    assert!(
        matches!(start(&failing), Err(NodeError::Wal(_))),
        "a start whose first sync fails is refused"
    );

    // A follower's disk fails: the next write's accept cannot be synced there.
    let (isolated, faults) = (links(), healthy());
    let (nodes, _disks) = start_three(&isolated, &faults, u64::MAX);
    let leader = leader_among(&nodes, &[0, 1, 2]).await;
    let follower = (leader + 1) % 3;
    let command = KvCommand::IncrBy {
        key: b"n".to_vec(),
        delta: 1,
    };
    faults[follower]
        .sync_failure_ppm
        .store(1_000_000, Ordering::Relaxed);
    nodes[leader]
        .propose(command.clone())
        .await
        .expect("the others commit");
    let stopped = tokio::time::timeout(
        Duration::from_secs(10),
        nodes[follower].wait_for(|s| s.storage_failure.is_some()),
    )
    .await
    .expect("the follower stops on its failed fsync");
    let reason = stopped.storage_failure.expect("a reason");
    assert!(reason.contains("simulated fsync failure"), "{reason}");
    // The leader is up and known: a request through the stopped follower would be
    // forwarded there and answered, as if the follower were fine.
    match nodes[follower].propose(command).await {
        Err(NodeError::StorageFailed(why)) => assert_eq!(why, reason),
        other => panic!("a stopped node answered {other:?}"),
    }
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_proposed_by_a_deposed_leader_is_reported_as_not_made() {
    use ballot_model::MemberChange;
    let (isolated, faults) = (links(), healthy());
    let (nodes, _) = start_three(&isolated, &faults, u64::MAX);
    let first = leader_among(&nodes, &[0, 1, 2]).await;
    let rest: Vec<usize> = (0..3).filter(|&id| id != first).collect();

    // Cut off, the leader still proposes a change of its own (it has not noticed), which
    // no one else ever hears of; the others elect a leader that removes the third node
    // (not the old leader, which then learns of the new epoch once the link heals).
    isolated[first].store(true, Ordering::SeqCst);
    let nodes = Arc::new(nodes);
    let lost = {
        let nodes = nodes.clone();
        tokio::spawn(async move { nodes[first].reconfigure(MemberChange::Remove(first)).await })
    };
    let second = leader_among(&nodes, &rest).await;
    let third = rest
        .iter()
        .copied()
        .find(|&id| id != second)
        .expect("a third node");
    let removed = nodes[second]
        .reconfigure(MemberChange::Remove(third))
        .await
        .expect("the majority's change");
    assert!(removed.retired.contains(&third));
    isolated[first].store(false, Ordering::SeqCst);
    match lost.await.expect("the task") {
        Err(NodeError::ReconfigureSuperseded { epoch: 1, start }) => {
            assert_eq!(start, removed.start)
        }
        other => panic!("the deposed leader's change was answered {other:?}"),
    }
    for node in nodes.iter() {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_removed_while_cut_off_is_told_when_it_returns_and_stops_campaigning() {
    use ballot_model::MemberChange;
    let (isolated, faults) = (links(), healthy());
    let (nodes, _) = start_three(&isolated, &faults, u64::MAX);
    let leader = leader_among(&nodes, &[0, 1, 2]).await;
    let gone = (leader + 1) % 3;

    // Removed while cut off: the change is chosen and executed without it, so its own
    // log never says so, and it campaigns in the old epoch where no one listens.
    isolated[gone].store(true, Ordering::SeqCst);
    let members = nodes[leader]
        .reconfigure(MemberChange::Remove(gone))
        .await
        .expect("two of three remove the third");
    assert!(members.retired.contains(&gone));
    assert!(
        eventually(100, || nodes[gone].status().elections > 0).await,
        "cut off, it campaigns"
    );
    assert_eq!(nodes[gone].status().member_role(), "voter");

    // Back, its next campaign is answered: it stops, and says it was removed.
    isolated[gone].store(false, Ordering::SeqCst);
    eventually(200, || nodes[gone].status().told_removed.is_some()).await;
    let status = nodes[gone].status();
    assert_eq!(status.told_removed, Some(members.epoch));
    assert_eq!((status.member_role(), status.role), ("removed", "follower"));
    assert_eq!(status.membership.epoch, 0, "its log still lacks the change");
    // At least four election timeouts (150 to 300 ms each): no new ballot, and the
    // members still lead.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(nodes[gone].status().elections, status.elections);
    assert_eq!(nodes[leader].status().role, "leader");
    for node in &nodes {
        node.shutdown().await;
    }
}
