//! What the in-process cluster tests share: three nodes with real TCP between them
//! and a RESP server each, on a runtime of their own so that tests can use blocking
//! clients from their own threads.
// Each test binary compiles its own copy and uses a part of it.
#![allow(dead_code)]

use ballot_node::identity::ClusterId;
use ballot_node::kv::KvStore;
use ballot_node::node::{Node, NodeConfig};
use ballot_node::server::{self, ServerInfo};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The cluster secret every in-process test uses.
const SECRET: &[u8] = b"a-test-cluster-secret-0123456789";

/// Three nodes and their RESP servers; shut down and removed when dropped.
pub struct Cluster {
    /// The runtime the nodes and servers run on.
    pub runtime: tokio::runtime::Runtime,
    /// The nodes, by id.
    pub nodes: Vec<Node<KvStore>>,
    /// Each node's RESP address, by id.
    pub clients: Vec<SocketAddr>,
    /// Each node's configuration, by id.
    pub configs: Vec<NodeConfig>,
    dir: PathBuf,
}

impl Cluster {
    /// Starts the cluster (data in a scratch directory named for `name`), its runtime's
    /// threads named `thread_name`, each server taking at most `connections_max`
    /// clients, and waits (at most 10 s) for a leader every node knows.
    pub fn start(name: &str, thread_name: &str, connections_max: usize) -> Cluster {
        Self::start_configured(name, thread_name, connections_max, |_| {})
    }

    /// As [`Cluster::start`], with each node's configuration passed through `configure`
    /// first.
    pub fn start_configured(
        name: &str,
        thread_name: &str,
        connections_max: usize,
        configure: impl Fn(&mut NodeConfig),
    ) -> Cluster {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(thread_name)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let dir = std::env::temp_dir().join(format!("ballot-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (nodes, clients, configs) = runtime.block_on(async {
            // Each peer port stays held until its node binds it: released earlier, the
            // client listeners below (or another test) could be handed the same port.
            let mut probes = Vec::new();
            let mut peers = Vec::new();
            for _ in 0..3 {
                let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                peers.push(probe.local_addr().expect("peer address"));
                probes.push(Some(probe));
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
            let mut configs = Vec::new();
            for (id, probe) in probes.iter_mut().enumerate() {
                let mut config = NodeConfig::new(
                    ClusterId(0xc1),
                    id,
                    peers.clone(),
                    dir.join(id.to_string()),
                    SECRET.to_vec(),
                );
                configure(&mut config);
                // Restarts find the member's data; only the first start bootstraps.
                configs.push(config.clone());
                config.bootstrap = true;
                drop(probe.take());
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
            (nodes, clients, configs)
        });
        let cluster = Cluster {
            runtime,
            nodes,
            clients,
            configs,
            dir,
        };
        cluster.leader();
        cluster
    }

    /// The leader every node agrees on, waiting at most 10 s for one.
    pub fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let leaders: Vec<Option<usize>> =
                self.nodes.iter().map(|n| n.status().leader).collect();
            if let Some(leader) = leaders[0] {
                if leaders.iter().all(|l| *l == Some(leader))
                    && self.nodes[leader].status().role == "leader"
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

    /// Stops node `id` (its RESP server stays, answering that the node is shut down).
    pub fn stop(&self, id: usize) {
        self.runtime.block_on(self.nodes[id].shutdown());
    }

    /// Starts node `id` again from its data directory, as a library node only: its
    /// RESP server still holds the stopped one.
    pub fn restart(&mut self, id: usize) {
        let config = self.configs[id].clone();
        self.nodes[id] = self.runtime.block_on(async {
            Node::start(config, KvStore::default())
                .await
                .expect("node restarts")
        });
    }

    /// A node that follows the agreed leader.
    pub fn follower(&self) -> usize {
        (self.leader() + 1) % self.nodes.len()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.runtime.block_on(async {
            for node in &self.nodes {
                node.shutdown().await;
            }
        });
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
