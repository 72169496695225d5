//! Ballots, slots and quorums: the numbers the protocol orders itself by.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Index of a server in the cluster, `0..node_count`. Dense so that quorum
/// bookkeeping is a bitset-sized problem and the model can map ids one to one.
pub type NodeId = usize;

/// Position in the replicated log. Slot 0 is never used: the first entry is slot 1,
/// so "commit index 0" means "nothing committed".
pub type Slot = u64;

/// Identifies a client across retries and failovers; with a sequence number it names
/// one request exactly (`(client, seq)`), which is what deduplication keys on.
pub type ClientId = u64;

/// A Paxos ballot (proposal number): an `(epoch, round, node)` triple ordered by epoch,
/// then round, then node, so two nodes can never run the same ballot, and every ballot
/// of a membership epoch is above every ballot of the epochs before it (SPEC §7).
///
/// Invariant: a node only ever leads ballots whose `node` is itself, and runs each round
/// at most once, because it persists the ballot as its own promise before sending
/// `Prepare` and always picks a round above its promise.
///
/// ```
/// use ballot_model::Ballot;
/// let a = Ballot::new(1, 2);
/// let b = Ballot::new(2, 0);
/// assert!(a < b, "rounds dominate node ids");
/// assert!(Ballot::ZERO < a);
/// assert!(b < Ballot::in_epoch(1, 1, 0), "epochs dominate rounds");
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Ballot {
    /// The membership epoch the ballot belongs to: only the voters of that epoch vote
    /// in it ([`crate::Membership`]). 0 until the first reconfiguration.
    pub epoch: u32,
    /// Election round within the epoch; 0 only in [`Ballot::ZERO`].
    pub round: u32,
    /// The node that runs this ballot (its would-be leader).
    pub node: NodeId,
}

impl Ballot {
    /// The ballot below every real ballot: "nothing promised, nothing accepted".
    pub const ZERO: Ballot = Ballot {
        epoch: 0,
        round: 0,
        node: 0,
    };

    /// Builds a ballot of epoch 0 (a cluster that never reconfigured).
    ///
    /// ```
    /// assert_eq!(ballot_model::Ballot::new(3, 1).round, 3);
    /// ```
    pub const fn new(round: u32, node: NodeId) -> Self {
        Ballot {
            epoch: 0,
            round,
            node,
        }
    }

    /// Builds a ballot of membership epoch `epoch`.
    ///
    /// ```
    /// let b = ballot_model::Ballot::in_epoch(2, 1, 0);
    /// assert_eq!((b.epoch, b.round, b.node), (2, 1, 0));
    /// ```
    pub const fn in_epoch(epoch: u32, round: u32, node: NodeId) -> Self {
        Ballot { epoch, round, node }
    }

    /// True for [`Ballot::ZERO`].
    ///
    /// ```
    /// assert!(ballot_model::Ballot::ZERO.is_zero());
    /// ```
    pub fn is_zero(&self) -> bool {
        *self == Ballot::ZERO
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Epoch 0 prints as it did before epochs existed: most clusters never leave it.
        if self.epoch > 0 {
            write!(f, "{}:", self.epoch)?;
        }
        write!(f, "{}.{}", self.round, self.node)
    }
}

/// Size of a majority of `node_count` servers: any two such sets intersect, which is the
/// whole of Paxos's safety argument.
///
/// ```
/// assert_eq!(ballot_model::quorum(3), 2);
/// assert_eq!(ballot_model::quorum(5), 3);
/// assert_eq!(ballot_model::quorum(4), 3);
/// ```
pub const fn quorum(node_count: usize) -> usize {
    node_count / 2 + 1
}
