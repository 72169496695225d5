//! The node's world, kept narrow: everything the runtime does outside its own memory
//! goes through these two traits and tokio's clock. The production node plugs in the
//! write-ahead log and TCP; a deterministic simulation can plug in a seeded disk and
//! network and run on tokio's paused clock (`tokio::time::pause`, which advances
//! virtual time whenever every task is idle) — the same runtime, no second
//! implementation.

use crate::wal::{Wal, WalError};
use ballot_model::{DurableUpdate, NodeId};
use serde::Serialize;

/// Durable storage for the core's `Persist` effects.
///
/// Contract: after `sync` returns `Ok`, every update appended before it survives a
/// crash; an error means nothing more can be promised and the node stops.
pub trait Storage<C>: Send + 'static {
    /// Buffers one update (no durability yet).
    fn append(&mut self, update: &DurableUpdate<C>) -> Result<(), WalError>;
    /// Makes everything appended so far durable.
    fn sync(&mut self) -> Result<(), WalError>;
}

impl<C: Serialize> Storage<C> for Wal {
    fn append(&mut self, update: &DurableUpdate<C>) -> Result<(), WalError> {
        Wal::append(self, update)
    }

    fn sync(&mut self) -> Result<(), WalError> {
        Wal::sync(self)
    }
}

/// The sending half of the peer network: best effort, never blocking. Inbound frames
/// enter the node through [`crate::node::PeerInbox`].
pub trait PeerNetwork: Send + Sync + 'static {
    /// Queues one encoded frame for peer `to`, or drops it.
    fn send(&self, to: NodeId, frame: Vec<u8>);
    /// Frames dropped so far (full queues, unknown peers).
    fn dropped_frames(&self) -> u64;
}
