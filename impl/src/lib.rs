//! # ballot-node: the verified Multi-Paxos core, driven over TCP with a durable log
#![warn(missing_docs)]

pub mod client;
pub mod frame;
pub mod handshake;
pub mod kv;
pub mod metrics;
pub mod node;
pub mod resp;
pub mod server;
mod sync;
pub mod transport;
pub mod waiters;
pub mod wal;
