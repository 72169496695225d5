//! # ballot-node: the verified Multi-Paxos core, driven over TCP with a durable log
//!
//! The node runs `ballot_model::Replica` — the same transition functions the model
//! checker explores — with real sockets, a real clock and an fsync'd write-ahead log.
//! It makes no protocol decision: it feeds inputs to the core and executes the effects,
//! durably persisting before anything leaves the node (SPEC.md §3.4).
//!
//! Bring your own deterministic [`StateMachine`](ballot_model::StateMachine) with
//! serde-serializable commands and outputs, and [`node::Node`] replicates it. The state
//! machine itself is serializable too: that is its snapshot (saved when the log is
//! compacted, restored at start-up, sent to a node that fell behind the compacted log).
//! A tiny replicated counter on three nodes in one process:
//!
//! ```
//! use ballot_model::StateMachine;
//! use ballot_node::identity::ClusterId;
//! use ballot_node::node::{Node, NodeConfig};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
//! struct Counter(u64);
//!
//! impl StateMachine for Counter {
//!     type Command = u64; // add this much
//!     type Output = u64; // the new total
//!     type Query = (); // read the total
//!     type QueryOutput = u64;
//!     fn apply(&mut self, add: &u64) -> u64 {
//!         self.0 += add;
//!         self.0
//!     }
//!     fn query(&self, _: &()) -> u64 {
//!         self.0
//!     }
//! }
//!
//! # fn free_addr() -> std::net::SocketAddr {
//! #     std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
//! # }
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let peers: Vec<_> = (0..3).map(|_| free_addr()).collect();
//! let dir = std::env::temp_dir().join(format!("ballot-counter-{}", std::process::id()));
//! let cluster = ClusterId::random();
//! let mut nodes = Vec::new();
//! for id in 0..3 {
//!     let mut config = NodeConfig::new(cluster, id, peers.clone(), dir.join(id.to_string()), b"a shared cluster secret".to_vec());
//!     config.bootstrap = true; // first start of a new cluster; restarts leave it false
//!     nodes.push(Node::start(config, Counter::default()).await?);
//! }
//! // Any node takes proposals; followers forward them to the leader.
//! assert_eq!(nodes[0].propose(5).await?, 5);
//! assert_eq!(nodes[1].propose(2).await?, 7);
//! // Linearizable: a read anywhere sees every write that completed before it.
//! assert_eq!(nodes[2].read(()).await?, 7);
//! for node in &nodes {
//!     node.shutdown().await;
//! }
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod bench;
mod byte_strings;
pub mod client;
pub mod connection;
pub mod frame;
mod group_commit;
pub mod handshake;
pub mod identity;
pub mod kv;
pub mod limits;
pub mod metrics;
pub mod node;
pub mod resp;
pub mod server;
pub mod snapshot_store;
pub mod snapshot_stream;
mod sync;
pub mod trace;
pub mod transport;
pub mod waiters;
pub mod wal;
pub mod world;
