//! The core's inputs and outputs. The core is a function from (state, [`Input`]) to
//! (state, `Vec<`[`Effect`]`>`); drivers feed inputs in and carry effects out.

use crate::ballot::{Ballot, ClientId, NodeId, Slot};
use crate::durable::DurableUpdate;
use crate::membership::{MemberChange, ReconfigureOutcome};
use crate::message::{ClientRequest, ClientResponse, Message};
use crate::snapshot::Snapshot;
use crate::state_machine::StateMachine;
use serde::{Deserialize, Serialize};

/// The timers a server arms. They name a purpose, never a duration: drivers own
/// durations and their randomisation, and the model may fire any armed timer. Each
/// purpose has its own timer, so that a driver maps timers to durations and asks the
/// core nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Timer {
    /// Follower: "the leader has been silent too long; run for election". Reset by
    /// every valid message from the leader. Randomised by drivers, so that candidates
    /// rarely collide.
    Election,
    /// Leader: "send heartbeats and retransmit unacknowledged accepts".
    Heartbeat,
    /// Leader: "have I heard from a majority since the last check? If not, step down".
    CheckQuorum,
    /// Candidate: "ask the peers that have not promised again, at the same ballot". A
    /// retry costs no ballot and deposes no one, so drivers may run it at the heartbeat
    /// pace: a follower that was loyal to a dead leader then promises on the first
    /// retry after its own election timeout, not a whole timeout later.
    CandidacyRetry,
}

impl Timer {
    /// Every timer.
    ///
    /// ```
    /// use ballot_model::Timer;
    /// assert!(Timer::ALL.contains(&Timer::CandidacyRetry));
    /// ```
    pub const ALL: [Timer; 4] = [
        Timer::Election,
        Timer::Heartbeat,
        Timer::CheckQuorum,
        Timer::CandidacyRetry,
    ];
}

/// One input to [`crate::Replica::step`]. Serializable so a node's trace can record it
/// (see [`crate::conformance`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "Message<S>: Serialize, S::Command: Serialize, S::Query: Serialize",
    deserialize = "Message<S>: Deserialize<'de>, S::Command: Deserialize<'de>, S::Query: Deserialize<'de>"
))]
pub enum Input<S: StateMachine> {
    /// A message from another server.
    Message {
        /// The sender; must be a peer (not this node, and below [`crate::NODE_IDS_MAX`]).
        from: NodeId,
        /// The message.
        message: Message<S>,
    },
    /// A request from a client.
    Client(ClientRequest<S::Command, S::Query>),
    /// An armed timer fired.
    Timer(Timer),
    /// The operator asks this node, if it leads, to hand its leadership to `to` (or,
    /// with `None`, to the peer of its choice) without waiting for an election
    /// timeout: for rolling restarts. Answered by one
    /// [`Effect::LeadershipTransfer`].
    TransferLeadership {
        /// The peer to hand over to.
        to: Option<NodeId>,
    },
    /// The operator asks this node, if it leads, to change the membership: proposed as
    /// a [`Proposal::Reconfigure`](crate::Proposal::Reconfigure) entry that takes
    /// effect when executed (SPEC §7). Answered by one [`Effect::Reconfiguration`].
    Reconfigure(MemberChange),
    /// The driver made a snapshot taken with [`crate::Replica::snapshot`] durable, at
    /// this slot: the core may drop the log up to it. When to compact is the driver's
    /// choice (a resource policy, not a protocol decision); the driver must not send
    /// this for a snapshot that is not durable.
    Compact {
        /// The snapshot's slot.
        through: Slot,
    },
}

/// One thing the driver must do, in order.
///
/// **Ordering contract.** Effects are executed in the order they are returned. A `Send`
/// or `Reply` must not leave the node until every `Persist` before it in the same list
/// (and in earlier lists) is durable; a `SaveSnapshot` counts as a persist, and must be
/// durable before the `Persist`s after it. A `SendAhead` is the one exception: it may
/// leave at once. The core relies on this: it never emits a message
/// that depends on state it has not first asked to persist. `SetTimer` re-arms (resets)
/// a timer; `CancelTimer` disarms it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "Message<S>: Serialize, Snapshot<S>: Serialize, S::Command: Serialize, \
                 S::Output: Serialize, S::QueryOutput: Serialize",
    deserialize = "Message<S>: Deserialize<'de>, Snapshot<S>: Deserialize<'de>, \
                   S::Command: Deserialize<'de>, S::Output: Deserialize<'de>, \
                   S::QueryOutput: Deserialize<'de>"
))]
pub enum Effect<S: StateMachine> {
    /// Make this update durable (fsync) before any later `Send`/`Reply`.
    Persist(DurableUpdate<S::Command>),
    /// Send a message to a peer.
    Send {
        /// The peer.
        to: NodeId,
        /// The message.
        message: Message<S>,
    },
    /// Send a message to a peer that may leave *ahead* of the persists before it: it
    /// vouches for nothing that is not durable already (SPEC §3.4). Only a leader's
    /// [`Message::Heartbeat`] is sent so ([`crate::invariants::only_heartbeats_sent_ahead`]):
    /// its ballot was durable before the node led, its commit index counts
    /// acknowledgements of accepts that each left after the leader's own vote was
    /// durable, and its read round is volatile. A driver that fsyncs beside its loop
    /// sends it at once, so a slow disk does not silence a healthy leader.
    SendAhead {
        /// The peer.
        to: NodeId,
        /// The message.
        message: Message<S>,
    },
    /// Make this snapshot durable, replacing any older one, before any later
    /// `Persist`, `Send` or `Reply`. Emitted when a snapshot from a peer is installed;
    /// the `Persist(Compact)` that follows relies on it.
    SaveSnapshot(Snapshot<S>),
    /// Answer a client.
    Reply {
        /// The client.
        client: ClientId,
        /// The answer.
        response: ClientResponse<S::Output, S::QueryOutput>,
    },
    /// Arm (or re-arm, resetting its deadline) a timer.
    SetTimer(Timer),
    /// Disarm a timer.
    CancelTimer(Timer),
    /// The core applied this slot to its state machine (for traces and metrics; nothing
    /// for the driver to do).
    Applied {
        /// The slot just applied.
        slot: Slot,
    },
    /// The answer to [`Input::TransferLeadership`], for the operator who asked.
    LeadershipTransfer(TransferOutcome),
    /// The answer to [`Input::Reconfigure`], for the operator who asked.
    Reconfiguration(ReconfigureOutcome),
    /// The core started a new ballot to run for leader (for logs and metrics; nothing
    /// for the driver to do). A candidacy retry at the same ballot is not one.
    Campaigning {
        /// The new ballot (persisted as the promise just before).
        ballot: Ballot,
    },
    /// A peer told this node that the membership of `epoch`, which its own log has not
    /// reached, retired it ([`crate::Message::Removed`]): it no longer campaigns or
    /// times out. For logs: the operator should stop it (its id is never reused).
    Removed {
        /// The epoch that retired this node.
        epoch: u32,
        /// The peer that said so.
        by: NodeId,
    },
}

/// What became of a request to hand leadership over ([`Input::TransferLeadership`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TransferOutcome {
    /// This node stepped down and told `to` to run for leader at once, and every other
    /// peer to back `to`. Whether `to` wins shows in who leads next.
    HandedOver {
        /// The peer asked to take over.
        to: NodeId,
    },
    /// Nothing changed, for this reason.
    Refused(TransferRefusal),
}

/// Why a request to hand leadership over was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TransferRefusal {
    /// This node does not lead; `leader` is the one it knows of, if any.
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// `to` is not a peer of this node (it is this node, or no member at all).
    NotAPeer {
        /// The node named.
        to: NodeId,
    },
    /// This node has no peer to hand over to (a cluster of one).
    NoPeer,
}

impl std::fmt::Display for TransferRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransferRefusal::NotLeader {
                leader: Some(leader),
            } => {
                write!(f, "this node does not lead; node {leader} does")
            }
            TransferRefusal::NotLeader { leader: None } => {
                write!(f, "this node does not lead, and knows no leader")
            }
            TransferRefusal::NotAPeer { to } => {
                write!(f, "node {to} is not a peer of this node")
            }
            TransferRefusal::NoPeer => write!(f, "this node has no peer to hand over to"),
        }
    }
}
