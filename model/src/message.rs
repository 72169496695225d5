//! Everything that crosses the network: peer messages, client requests and responses,
//! and the values the log holds.

use crate::ballot::{Ballot, ClientId, NodeId, Slot};
use crate::membership::MemberAddress;
use crate::snapshot::Snapshot;
use crate::state_machine::StateMachine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// One client command with the identity that makes retries idempotent.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Request<C> {
    /// Who sent it.
    pub client: ClientId,
    /// The client's sequence number; a client has at most one request outstanding and
    /// numbers them in increasing order (1, 2, 3, …, or with gaps).
    pub seq: u64,
    /// The state machine command.
    pub command: C,
}

/// The value of one log slot.
///
/// A slot carries a batch so one round of Paxos can commit many commands; the model
/// uses batches of one, through the same code path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Proposal<C> {
    /// Fills a hole a new leader found in phase 1; applies nothing.
    Noop,
    /// Client commands, applied in order.
    Batch(Vec<Request<C>>),
    /// A membership change (SPEC §7). The first one of epoch `from_epoch` executed
    /// ends that epoch at its slot: the next epoch, with these voters and learners,
    /// governs the slots after it. One of another epoch executes as a no-op.
    Reconfigure {
        /// The epoch this change ends.
        from_epoch: u32,
        /// The next epoch's voters.
        voters: BTreeSet<NodeId>,
        /// The next epoch's learners.
        learners: BTreeSet<NodeId>,
        /// The address of the member this change adds at one
        /// ([`crate::MemberChange::AddAt`]): it takes the next id, the one `learners`
        /// names for it.
        joining: Option<MemberAddress>,
    },
}

impl<C> Proposal<C> {
    /// The requests in this slot (none for a no-op).
    ///
    /// ```
    /// use ballot_model::Proposal;
    /// assert!(Proposal::<u8>::Noop.requests().is_empty());
    /// ```
    pub fn requests(&self) -> &[Request<C>] {
        match self {
            Proposal::Noop | Proposal::Reconfigure { .. } => &[],
            Proposal::Batch(requests) => requests,
        }
    }
}

/// An acceptor's vote: the ballot it accepted a slot's value at, and the value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AcceptedEntry<C> {
    /// Ballot at which the value was accepted.
    pub ballot: Ballot,
    /// The accepted value.
    pub proposal: Proposal<C>,
}

/// Messages between servers. Each carries the ballot it belongs to; receivers use it to
/// learn about newer ballots and to ignore answers to rounds they have left.
///
/// Generic over the state machine because snapshots travel too (to a follower behind
/// the leader's compacted prefix, or with a promise to a candidate behind the
/// acceptor's).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound(
    serialize = "S::Command: Serialize, Snapshot<S>: Serialize",
    deserialize = "S::Command: Deserialize<'de>, Snapshot<S>: Deserialize<'de>"
))]
pub enum Message<S: StateMachine> {
    /// Phase 1a: "promise not to accept below `ballot`, and tell me what you accepted
    /// at or above `from_slot`". Sent once for all slots from the candidate's commit
    /// point on (the Multi-Paxos optimisation).
    Prepare {
        /// The candidate's ballot.
        ballot: Ballot,
        /// First slot the candidate does not know to be chosen.
        from_slot: Slot,
    },
    /// Phase 1b: the promise, with every entry accepted at or above `from_slot`.
    Promise {
        /// The ballot promised.
        ballot: Ballot,
        /// Accepted entries at slots `>= from_slot`, ascending by slot (none at or
        /// below the acceptor's compaction point).
        accepted: Vec<(Slot, AcceptedEntry<S::Command>)>,
        /// Present when the acceptor compacted slots at or above `from_slot`: its
        /// applied state, which stands for the votes it no longer holds (they are all
        /// for chosen values). The candidate must install it before it proposes.
        snapshot: Option<Snapshot<S>>,
    },
    /// Phase 2a: "accept `proposal` for `slot` at `ballot`". Also announces the leader's
    /// commit index, and doubles as catch-up for a lagging follower.
    Accept {
        /// The leader's ballot.
        ballot: Ballot,
        /// The slot.
        slot: Slot,
        /// The value for the slot.
        proposal: Proposal<S::Command>,
        /// The leader's commit index when it sent this.
        commit: Slot,
    },
    /// Phase 2b: the acceptor accepted `slot` at `ballot` (and has persisted it).
    Accepted {
        /// The ballot accepted.
        ballot: Ballot,
        /// The slot accepted.
        slot: Slot,
        /// The acceptor's commit index, so the leader can see who lags.
        commit: Slot,
    },
    /// Leader liveness and commit announcement; `read_round` ties acknowledgements to
    /// read-index confirmation rounds.
    Heartbeat {
        /// The leader's ballot.
        ballot: Ballot,
        /// The leader's commit index.
        commit: Slot,
        /// The leader's latest read-confirmation round.
        read_round: u64,
    },
    /// Answer to a heartbeat from a node that still accepts `ballot`.
    HeartbeatAck {
        /// The ballot acknowledged.
        ballot: Ballot,
        /// The follower's commit index.
        commit: Slot,
        /// The round echoed from the heartbeat.
        read_round: u64,
        /// True if the follower could not commit up to the heartbeat's commit index
        /// because it lacks slots: the leader should send them.
        lagging: bool,
    },
    /// Catch-up past the leader's compaction point: the leader's applied state, for a
    /// follower that lacks slots the leader no longer holds. Answered like a heartbeat.
    InstallSnapshot {
        /// The leader's ballot.
        ballot: Ballot,
        /// The leader's applied state.
        snapshot: Snapshot<S>,
        /// The leader's commit index.
        commit: Slot,
    },
    /// "Your `ballot` is stale: I promised `promised`." Lets candidates and deposed
    /// leaders learn of a newer ballot and yield to it.
    Reject {
        /// The stale ballot the rejected message carried.
        ballot: Ballot,
        /// The receiver's promise, which is higher.
        promised: Ballot,
    },
    /// The leader of `ballot` steps down in favour of `to`: `to` runs for leader at
    /// once, and every other peer backs `to` rather than the sender (leadership
    /// transfer, for rolling restarts). Safety asks nothing of it: any node may start
    /// a ballot at any time; it only spares the cluster an election timeout.
    TransferLeadership {
        /// The sender's ballot, as it led.
        ballot: Ballot,
        /// The peer that takes over.
        to: NodeId,
    },
    /// "The membership of `epoch`, which I applied, retired you": the answer to a
    /// `Prepare` of an older epoch from a node that epoch no longer has. A member removed
    /// while cut off never applies the change that removed it (no leader sends the log
    /// to a non-member), and without this would campaign in its old epoch forever,
    /// unheard. Ids are never given out twice, so the news is final.
    Removed {
        /// The stale ballot the answered message carried (the removed node's own).
        ballot: Ballot,
        /// The sender's epoch, whose membership lists the receiver as retired.
        epoch: u32,
    },
}

impl<S: StateMachine> Message<S> {
    /// The ballot a message belongs to (for `Reject` and `Removed`, the answered one).
    ///
    /// ```
    /// use ballot_model::{Ballot, Message, Register};
    /// let m = Message::<Register>::Prepare { ballot: Ballot::new(1, 0), from_slot: 1 };
    /// assert_eq!(m.ballot(), Ballot::new(1, 0));
    /// ```
    pub fn ballot(&self) -> Ballot {
        match self {
            Message::Prepare { ballot, .. }
            | Message::Promise { ballot, .. }
            | Message::Accept { ballot, .. }
            | Message::Accepted { ballot, .. }
            | Message::Heartbeat { ballot, .. }
            | Message::HeartbeatAck { ballot, .. }
            | Message::InstallSnapshot { ballot, .. }
            | Message::Reject { ballot, .. }
            | Message::Removed { ballot, .. }
            | Message::TransferLeadership { ballot, .. } => *ballot,
        }
    }
}

/// A request from a client to any server.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ClientRequest<C, Q> {
    /// A command that goes through the log.
    Write(Request<C>),
    /// A linearizable read served by read-index, without writing the log.
    Read {
        /// Who asks.
        client: ClientId,
        /// The client's sequence number.
        seq: u64,
        /// What to read.
        query: Q,
    },
}

impl<C, Q> ClientRequest<C, Q> {
    /// The `(client, seq)` pair naming this request.
    ///
    /// ```
    /// use ballot_model::ClientRequest;
    /// let r = ClientRequest::<u8, ()>::Read { client: 4, seq: 2, query: () };
    /// assert_eq!(r.id(), (4, 2));
    /// ```
    pub fn id(&self) -> (ClientId, u64) {
        match self {
            ClientRequest::Write(request) => (request.client, request.seq),
            ClientRequest::Read { client, seq, .. } => (*client, *seq),
        }
    }
}

/// A server's answer to a client.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ClientResponse<O, R> {
    /// The write with this sequence number was applied (exactly once) with `output`.
    Written {
        /// The request's sequence number.
        seq: u64,
        /// The state machine's output for it.
        output: O,
    },
    /// The read with this sequence number, served linearizably.
    ReadOk {
        /// The request's sequence number.
        seq: u64,
        /// The query's result.
        output: R,
    },
    /// This server is not the leader; try `leader` if known.
    Redirect {
        /// The request's sequence number.
        seq: u64,
        /// The leader this server knows of, if any.
        leader: Option<NodeId>,
    },
    /// The leader did not take the request, for `reason`. It did not queue it; the
    /// request may still take effect if an earlier attempt of it is in the log, so a
    /// client that gives up must treat its outcome as unknown, and one that retries
    /// keeps the same `(client, seq)`.
    Refused {
        /// The request's sequence number.
        seq: u64,
        /// Why.
        reason: Refusal,
    },
}

/// Why a leader refused a request without queueing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Refusal {
    /// Its queue of writes (or of reads waiting for confirmation) is at its bound
    /// ([`ClusterConfig::queue_requests_max`](crate::ClusterConfig::queue_requests_max),
    /// [`ClusterConfig::reads_pending_max`](crate::ClusterConfig::reads_pending_max)):
    /// retry later.
    Busy,
    /// The command alone counts more bytes than a slot may carry
    /// ([`ClusterConfig::batch_bytes_max`](crate::ClusterConfig::batch_bytes_max)):
    /// it can never be proposed.
    TooLarge {
        /// What the command counts ([`StateMachine::command_bytes`]).
        bytes: usize,
        /// The bound.
        max: usize,
    },
    /// The client has no session and the request's seq is at or below the sessions'
    /// floor ([`ClientTable::floor`](crate::ClientTable::floor)): it may belong to a
    /// session that expired. This attempt will never be applied; an earlier attempt of
    /// the same request may have been. A client whose only attempt this was may number
    /// the request above `floor` and send it again.
    SessionExpired {
        /// Every seq of an expired session is at or below this.
        floor: u64,
    },
}

impl std::fmt::Display for Refusal {
    /// ```
    /// assert_eq!(ballot_model::Refusal::Busy.to_string(), "the leader's queue is full");
    /// ```
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Busy => f.write_str("the leader's queue is full"),
            Refusal::TooLarge { bytes, max } => write!(
                f,
                "the command counts {bytes} bytes, over batch_bytes_max ({max} bytes)"
            ),
            Refusal::SessionExpired { floor } => write!(
                f,
                "the client session expired (requests at or below {floor} are refused); \
                 the request may or may not have been applied"
            ),
        }
    }
}

impl<O, R> ClientResponse<O, R> {
    /// The sequence number the response answers.
    ///
    /// ```
    /// use ballot_model::ClientResponse;
    /// let r = ClientResponse::<(), ()>::Redirect { seq: 7, leader: None };
    /// assert_eq!(r.seq(), 7);
    /// ```
    pub fn seq(&self) -> u64 {
        match self {
            ClientResponse::Written { seq, .. }
            | ClientResponse::ReadOk { seq, .. }
            | ClientResponse::Redirect { seq, .. }
            | ClientResponse::Refused { seq, .. } => *seq,
        }
    }
}
