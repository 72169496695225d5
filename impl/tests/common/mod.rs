//! What the in-process cluster tests share: three nodes with real TCP between them
//! and a RESP server each, and the leader they agree on.

use ballot_node::kv::KvStore;
use ballot_node::node::{Node, NodeConfig};
use ballot_node::server::{self, ServerInfo};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// The cluster secret every in-process test uses.
pub const SECRET: &[u8] = b"a-test-cluster-secret-0123456789";

/// Starts three nodes (data under `dir`) and their RESP servers on `runtime`, each
/// server taking at most `connections_max` clients. Returns the nodes and their
/// client addresses.
pub fn start_nodes(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    connections_max: usize,
) -> (Vec<Node<KvStore>>, Vec<SocketAddr>) {
    runtime.block_on(async {
        let mut peers = Vec::new();
        for _ in 0..3 {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            peers.push(probe.local_addr().expect("peer address"));
        }
        let mut listeners = Vec::new();
        for _ in 0..3 {
            listeners.push(
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind a client port"),
            );
        }
        let clients: Vec<SocketAddr> = listeners
            .iter()
            .map(|l| l.local_addr().expect("client address"))
            .collect();
        let mut nodes = Vec::new();
        for id in 0..3 {
            let config =
                NodeConfig::new(id, peers.clone(), dir.join(id.to_string()), SECRET.to_vec());
            nodes.push(
                Node::start(config, KvStore::default())
                    .await
                    .expect("node starts"),
            );
        }
        let info = ServerInfo {
            client_addrs: clients.iter().map(ToString::to_string).collect(),
            peer_addrs: peers.iter().map(ToString::to_string).collect(),
        };
        for (node, listener) in nodes.iter().zip(listeners) {
            tokio::spawn(server::serve(
                listener,
                node.clone(),
                info.clone(),
                connections_max,
            ));
        }
        (nodes, clients)
    })
}

/// The leader every node agrees on, waiting at most 10 s for one.
pub fn agreed_leader(nodes: &[Node<KvStore>]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leaders: Vec<Option<usize>> = nodes.iter().map(|n| n.status().leader).collect();
        if let Some(leader) = leaders[0] {
            if leaders.iter().all(|l| *l == Some(leader)) && nodes[leader].status().role == "leader"
            {
                return leader;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no agreed leader within 10 s: {leaders:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
