//! One server's protocol state and its single entry point, [`Replica::step`].
//!
//! The handlers live next to the role they serve: `acceptor.rs` (phase 1b/2b and
//! heartbeats from a leader), `leader.rs` (candidacy, phase 2a, commits, reads). This
//! file holds the state, dispatch, elections and the apply loop shared by all roles.

use crate::ballot::{Ballot, ClientId, NodeId, Slot};
use crate::client_table::{ApplyOutcome, ClientTable, Expiry};
use crate::durable::{DurableState, DurableUpdate};
use crate::effect::{Effect, Input, Timer};
use crate::membership::{MemberAddress, Membership, NODE_IDS_MAX};
use crate::message::{AcceptedEntry, ClientResponse, Message, Proposal, Refusal, Request};
use crate::mutant::mutant;
use crate::snapshot::Snapshot;
use crate::state_machine::StateMachine;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use thiserror::Error;

/// How far beyond its commit index a node accepts slot numbers from peers. A leader
/// never proposes more than its pipeline ahead of what it committed, so anything further
/// is a confused or malicious peer; without a limit one message could make a new leader
/// re-propose billions of slots (or overflow `next_slot`).
pub const MAX_SLOTS_AHEAD: Slot = 1 << 20;

/// Static cluster parameters, identical on every server.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterConfig {
    /// The bootstrap address book: the nodes of ids `0..node_count`, each a voter, a
    /// learner or a spare at bootstrap. A member added at an address later
    /// ([`crate::MemberChange::AddAt`]) takes the next id past it
    /// ([`Membership::id_count`]); at most [`NODE_IDS_MAX`] in all.
    pub node_count: usize,
    /// The learners at bootstrap: they receive the log, commit and apply it, and
    /// answer clients with redirects, but never count in a quorum and never campaign.
    /// Empty by default. After bootstrap the log's reconfigurations rule
    /// ([`Membership`]).
    pub learners: BTreeSet<NodeId>,
    /// The ids that are no members at bootstrap: spare machines an operator may add
    /// later ([`crate::MemberChange::AddLearner`]). Every id below `node_count` that
    /// is neither a learner nor a spare is a voter at bootstrap. Empty by default.
    pub spares: BTreeSet<NodeId>,
    /// Most slots a leader has proposed but not yet committed (the pipeline window).
    /// At least 1.
    pub pipeline_depth: usize,
    /// Most client requests one slot carries. At least 1.
    pub max_batch: usize,
    /// Most bytes one slot's batch carries, counted by [`StateMachine::command_bytes`]:
    /// a batch closes at this bound as well as at `max_batch`, so one slot always fits
    /// the driver's log record and peer frame. A single request over it is refused
    /// ([`Refusal::TooLarge`]), never proposed. At least 1.
    pub batch_bytes_max: usize,
    /// Most write requests a leader holds queued while its pipeline is full; past it,
    /// a new request is refused ([`Refusal::Busy`]) and its
    /// client retries later. Zero refuses every write that finds the pipeline full.
    pub queue_requests_max: usize,
    /// Most reads a leader holds waiting for leadership confirmation; past it, a new
    /// read is refused ([`Refusal::Busy`]). At least 1.
    pub reads_pending_max: usize,
    /// Most client sessions the replicated state holds; opening one more expires the
    /// least recently active (see [`ClientTable`]). Part of the replicated state
    /// machine's definition: it must be the same on every server. At least 1.
    pub sessions_max: usize,
    /// How far behind the leader's commit index a learner may be, by the commit index
    /// it last reported to this leader, and still be made a voter: a voter that lags
    /// slows every commit that needs its vote, and with another voter down stops them
    /// until it has caught up. A learner the leader has not heard from lags without
    /// bound. `Slot::MAX` (the default) checks nothing, not even that the learner
    /// reported: the model's worlds that do not study the check need not pay the
    /// steps a report takes (`check --promote-lag-max` sets it).
    pub promote_lag_max: Slot,
    /// Slots a leader re-sends to a lagging peer at once (a catch-up window), before
    /// the peer's acknowledgement of the window's last slot asks for the next: with the
    /// peer's fsync in each round trip, the window sets the pace of catch-up from the
    /// log. Each window is also bounded by `batch_bytes_max` bytes of commands. At
    /// least 1.
    pub catch_up_slots: usize,
    /// The bootstrap address book's addresses, by id (empty if the core need not know
    /// them, as in the model): with `Membership::added`, what a machine added at an
    /// address must not duplicate ([`crate::ReconfigureRefusal::AddressInUse`]).
    pub addresses: Vec<MemberAddress>,
    /// Which broken variant to run (only with the `mutants` feature).
    #[cfg(feature = "mutants")]
    pub mutant: Option<crate::mutant::Mutant>,
}

impl ClusterConfig {
    /// A cluster of `node_count` servers with a pipeline of 4 slots, batches of up to
    /// 64 requests, and no byte, queue or read bound that a small cluster could reach
    /// (drivers set their own: [`ClusterConfig::with_batch_bytes_max`],
    /// [`ClusterConfig::with_queue_requests_max`],
    /// [`ClusterConfig::with_reads_pending_max`]).
    ///
    /// ```
    /// let c = ballot_model::ClusterConfig::new(3);
    /// assert_eq!(c.bootstrap().quorum(), 2);
    /// ```
    pub fn new(node_count: usize) -> Self {
        assert!(
            (1..=NODE_IDS_MAX).contains(&node_count),
            "a cluster has 1 to {NODE_IDS_MAX} nodes, not {node_count}"
        );
        ClusterConfig {
            node_count,
            learners: BTreeSet::new(),
            spares: BTreeSet::new(),
            pipeline_depth: 4,
            max_batch: 64,
            batch_bytes_max: usize::MAX,
            queue_requests_max: usize::MAX,
            reads_pending_max: usize::MAX,
            sessions_max: usize::MAX,
            promote_lag_max: Slot::MAX,
            catch_up_slots: 4,
            addresses: Vec::new(),
            #[cfg(feature = "mutants")]
            mutant: None,
        }
    }

    /// Sets the pipeline window.
    ///
    /// ```
    /// assert_eq!(ballot_model::ClusterConfig::new(3).with_pipeline_depth(2).pipeline_depth, 2);
    /// ```
    pub fn with_pipeline_depth(mut self, pipeline_depth: usize) -> Self {
        self.pipeline_depth = pipeline_depth.max(1);
        self
    }

    /// Sets the batch limit.
    ///
    /// ```
    /// assert_eq!(ballot_model::ClusterConfig::new(3).with_max_batch(1).max_batch, 1);
    /// ```
    pub fn with_max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch.max(1);
        self
    }

    /// Sets the byte bound of one slot's batch.
    ///
    /// ```
    /// let c = ballot_model::ClusterConfig::new(3).with_batch_bytes_max(1 << 20);
    /// assert_eq!(c.batch_bytes_max, 1 << 20);
    /// ```
    pub fn with_batch_bytes_max(mut self, batch_bytes_max: usize) -> Self {
        self.batch_bytes_max = batch_bytes_max.max(1);
        self
    }

    /// Sets the bound of a leader's queue of writes waiting for the pipeline.
    ///
    /// ```
    /// let c = ballot_model::ClusterConfig::new(3).with_queue_requests_max(100);
    /// assert_eq!(c.queue_requests_max, 100);
    /// ```
    pub fn with_queue_requests_max(mut self, queue_requests_max: usize) -> Self {
        self.queue_requests_max = queue_requests_max;
        self
    }

    /// Sets the bound of a leader's reads waiting for confirmation.
    ///
    /// ```
    /// let c = ballot_model::ClusterConfig::new(3).with_reads_pending_max(100);
    /// assert_eq!(c.reads_pending_max, 100);
    /// ```
    pub fn with_reads_pending_max(mut self, reads_pending_max: usize) -> Self {
        self.reads_pending_max = reads_pending_max.max(1);
        self
    }

    /// Sets the bound on client sessions.
    ///
    /// ```
    /// let c = ballot_model::ClusterConfig::new(3).with_sessions_max(1000);
    /// assert_eq!(c.sessions_max, 1000);
    /// ```
    pub fn with_sessions_max(mut self, sessions_max: usize) -> Self {
        self.sessions_max = sessions_max.max(1);
        self
    }

    /// Sets how far a learner may lag and still be promoted.
    ///
    /// ```
    /// let c = ballot_model::ClusterConfig::new(3).with_promote_lag_max(1000);
    /// assert_eq!(c.promote_lag_max, 1000);
    /// ```
    pub fn with_promote_lag_max(mut self, promote_lag_max: Slot) -> Self {
        self.promote_lag_max = promote_lag_max;
        self
    }

    /// Sets the catch-up window.
    ///
    /// ```
    /// assert_eq!(ballot_model::ClusterConfig::new(3).with_catch_up_slots(256).catch_up_slots, 256);
    /// ```
    pub fn with_catch_up_slots(mut self, catch_up_slots: usize) -> Self {
        self.catch_up_slots = catch_up_slots.max(1);
        self
    }

    /// Selects a broken variant.
    #[cfg(feature = "mutants")]
    pub fn with_mutant(mut self, mutant: Option<crate::mutant::Mutant>) -> Self {
        self.mutant = mutant;
        self
    }

    /// Makes `learners` learners (non-voting members) at bootstrap: ids at or above
    /// `node_count` are ignored. At least one server must stay a voter for anything to
    /// be chosen.
    ///
    /// ```
    /// let c = ballot_model::ClusterConfig::new(4).with_learners([3, 9]);
    /// let members = c.bootstrap();
    /// assert_eq!((members.voters.len(), members.quorum()), (3, 2));
    /// assert!(members.is_voter(2) && !members.is_voter(3) && !members.is_member(9));
    /// ```
    pub fn with_learners(mut self, learners: impl IntoIterator<Item = NodeId>) -> Self {
        let node_count = self.node_count;
        self.learners = learners.into_iter().filter(|id| *id < node_count).collect();
        self
    }

    /// Makes `spares` no members at bootstrap (ids at or above `node_count` are
    /// ignored): machines standing by to be added.
    ///
    /// ```
    /// let c = ballot_model::ClusterConfig::new(4).with_spares([3]);
    /// assert!(!c.bootstrap().is_member(3));
    /// ```
    pub fn with_spares(mut self, spares: impl IntoIterator<Item = NodeId>) -> Self {
        let node_count = self.node_count;
        self.spares = spares.into_iter().filter(|id| *id < node_count).collect();
        self
    }

    /// The bootstrap address book's addresses, by id (ids past `node_count` are
    /// ignored).
    ///
    /// ```
    /// use ballot_model::{ClusterConfig, MemberAddress};
    /// let c = ClusterConfig::new(1).with_addresses([MemberAddress::new("p0", "c0")]);
    /// assert_eq!(c.addresses[0].peer, "p0");
    /// ```
    pub fn with_addresses(mut self, addresses: impl IntoIterator<Item = MemberAddress>) -> Self {
        self.addresses = addresses.into_iter().take(self.node_count).collect();
        self
    }

    /// The membership of epoch 0, before any reconfiguration.
    pub fn bootstrap(&self) -> Membership {
        Membership::bootstrap(
            self.node_count,
            self.learners.iter().copied(),
            self.spares.iter().copied(),
        )
    }
}

/// Input the core refuses: it comes from a confused or malicious peer. The node logs it
/// and drops the message; it never panics on it.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum StepError {
    /// The sender is not a peer: this node, or an id no cluster gives out.
    #[error("message from node {from}, which is no peer (ids are below {ids_max}, this is {me})")]
    UnknownPeer {
        /// The claimed sender.
        from: NodeId,
        /// The id space ([`crate::NODE_IDS_MAX`]).
        ids_max: usize,
        /// This node.
        me: NodeId,
    },
    /// A leader-originated message whose ballot names another node.
    #[error("{kind} from node {from} carries ballot {ballot} of another node")]
    BallotNotSender {
        /// Message kind.
        kind: &'static str,
        /// Sender.
        from: NodeId,
        /// The ballot.
        ballot: Ballot,
    },
    /// A leadership transfer naming the sender itself or no member as successor.
    #[error("TransferLeadership from node {from} names node {to}, which cannot take over")]
    TransferToNonPeer {
        /// Sender.
        from: NodeId,
        /// The successor named.
        to: NodeId,
    },
    /// A reply about a ballot this node never ran.
    #[error("{kind} from node {from} answers ballot {ballot}, which is not ours")]
    NotOurBallot {
        /// Message kind.
        kind: &'static str,
        /// Sender.
        from: NodeId,
        /// The ballot.
        ballot: Ballot,
    },
    /// Slot 0 does not exist.
    #[error("{kind} from node {from} names slot 0")]
    SlotZero {
        /// Message kind.
        kind: &'static str,
        /// Sender.
        from: NodeId,
    },
    /// A slot further ahead of our commit index than [`MAX_SLOTS_AHEAD`].
    #[error("{kind} from node {from} names slot {slot}, beyond the limit {limit}")]
    SlotOutOfRange {
        /// Message kind.
        kind: &'static str,
        /// Sender.
        from: NodeId,
        /// The slot named.
        slot: Slot,
        /// The highest slot acceptable now.
        limit: Slot,
    },
}

/// Why a node cannot start from what its disk holds.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RestoreError {
    /// The log was compacted past the snapshot offered: the slots in between exist
    /// nowhere on this node. (A driver saves the snapshot before it compacts, so this
    /// means the snapshot file was replaced by an older one or lost.)
    #[error("the log is compacted through slot {compacted} but the snapshot only reaches slot {snapshot}")]
    SnapshotBehindLog {
        /// The snapshot's slot.
        snapshot: Slot,
        /// The log's compaction point.
        compacted: Slot,
    },
}

/// A node's role. Volatile: a recovering node is always a follower.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role<S: StateMachine> {
    /// Accepts proposals; `leader` is who it last heard lead (a redirect hint).
    Follower {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// Running phase 1.
    Candidate(Candidacy<S::Command>),
    /// Won phase 1; proposes, commits, serves reads.
    Leader(Leadership<S>),
}

/// A candidate's phase 1 in progress.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Candidacy<C> {
    /// The ballot being run; equals the node's `promised`.
    pub ballot: Ballot,
    /// First slot not known chosen when the candidacy began (`commit + 1`).
    pub from_slot: Slot,
    /// Promises received, the candidate's own included: what each acceptor reported.
    pub promises: BTreeMap<NodeId, Vec<(Slot, AcceptedEntry<C>)>>,
}

/// A slot proposed by the leader and not yet committed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InFlight<C> {
    /// The value proposed.
    pub proposal: Proposal<C>,
    /// Acceptors that accepted it at the leader's ballot (the leader included).
    pub acks: BTreeSet<NodeId>,
}

/// A read waiting for leadership confirmation and for the log to catch up.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PendingRead<Q> {
    /// Who asked.
    pub client: ClientId,
    /// Their sequence number.
    pub seq: u64,
    /// What to read.
    pub query: Q,
    /// Serve once `applied >= read_index`: the last slot this leader had proposed when
    /// the read arrived, so every write completed before the read is included.
    pub read_index: Slot,
    /// Serve once a majority acknowledged a heartbeat of this round or later.
    pub round: u64,
}

/// A leader's state.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Leadership<S: StateMachine> {
    /// The ballot won; equals the node's `promised` while it leads.
    pub ballot: Ballot,
    /// Next slot to propose into. Invariant: `next_slot > commit`.
    pub next_slot: Slot,
    /// Proposed, not yet committed; keys in `commit+1 .. next_slot`.
    pub in_flight: BTreeMap<Slot, InFlight<S::Command>>,
    /// Requests waiting for room in the pipeline; they form the next batch.
    pub queue: VecDeque<Request<S::Command>>,
    /// Peers heard from at this ballot since the last `CheckQuorum`.
    pub heard: BTreeSet<NodeId>,
    /// Latest read-confirmation round started.
    pub read_round: u64,
    /// Per peer, the highest read round it acknowledged.
    pub read_acks: BTreeMap<NodeId, u64>,
    /// Reads not yet served.
    pub reads: Vec<PendingRead<S::Query>>,
    /// Peers sent a snapshot since the last `CheckQuorum`: not sent another before.
    pub snapshot_sent: BTreeSet<NodeId>,
    /// Per learner, the highest commit index it reported at this ballot: how far it
    /// lags, which decides whether it may be promoted (`promote_lag_max`).
    pub learner_commits: BTreeMap<NodeId, Slot>,
}

impl<S: StateMachine> Leadership<S> {
    /// The slot of the reconfiguration this leader has in its pipeline (proposed by it,
    /// or recovered in its phase 1), if any: it proposes nothing above it.
    pub fn stop_slot(&self) -> Option<Slot> {
        self.in_flight
            .iter()
            .find(|(_, in_flight)| matches!(in_flight.proposal, Proposal::Reconfigure { .. }))
            .map(|(slot, _)| *slot)
    }
}

/// One server: acceptor, learner/replica and (when elected) proposer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Replica<S: StateMachine> {
    pub(crate) id: NodeId,
    pub(crate) config: ClusterConfig,
    /// The membership of the epoch this node is in: the one the entries it applied
    /// began. Part of the applied state, like `table` (and of every snapshot).
    pub(crate) members: Membership,
    /// The crash-surviving part. Every change to it is also emitted as a `Persist`.
    pub(crate) durable: DurableState<S::Command>,
    pub(crate) role: Role<S>,
    /// Highest ballot seen in any message; a new candidacy picks a round above it.
    pub(crate) highest_seen: Ballot,
    /// Slots applied to `table`. Invariant: `applied <= durable.commit`.
    pub(crate) applied: Slot,
    pub(crate) table: ClientTable<S>,
    /// Clients waiting at this node for their write, by the seq they wait for.
    pub(crate) waiters: BTreeMap<ClientId, u64>,
    /// Requests recognised as retries of applied ones (at intake or at apply) and
    /// answered from the client table instead of being applied again. For metrics, and
    /// for the model's "a duplicate was deduplicated" reachability check.
    pub(crate) deduplicated: MetricCounter,
    /// Snapshots installed from peers (for metrics, and the model's reachability check).
    pub(crate) installed: MetricCounter,
    /// Requests this node refused as a busy leader (a metric, no part of identity):
    /// for the model's "a busy leader refused a write" reachability check.
    pub(crate) refused_busy: MetricCounter,
    /// Requests refused because their session expired (a metric): for the model's
    /// "a request of an expired session is refused" reachability check.
    pub(crate) refused_expired: MetricCounter,
    /// The node whose ballot we promised, or whose leadership we accepted, since our
    /// election timer last fired. While set, we refuse to promise anyone else's ballot
    /// (leader stickiness): see `on_prepare`.
    pub(crate) backing: Option<NodeId>,
    /// Set when an election timeout released our loyalty instead of campaigning;
    /// cleared when we follow a leader or campaign. A node releases at most once between
    /// leaders: otherwise candidates that cannot win (cut off from a majority) could
    /// keep outbidding each other through us, each one we back making us release
    /// again, and the one node that can reach a majority would never run.
    pub(crate) released: bool,
    /// The epoch a peer said retired this node ([`Message::Removed`]), while the log
    /// this node applied has not said so yet. Set, it never campaigns or arms an election
    /// timer. Volatile: after a restart its next campaign is answered the same way.
    pub(crate) told_removed: Option<u32>,
    /// What the last compaction dropped, until the driver takes it
    /// ([`Replica::take_discarded`]). No part of the protocol state.
    pub(crate) discarded: Discarded<S::Command>,
}

/// A count kept for metrics only. It takes no part in equality, ordering or hashing,
/// so two replicas that differ only in their metrics are the same protocol state (the
/// model checker merges them; otherwise every retry would make a new state).
#[derive(Clone, Copy, Debug, Default)]
pub struct MetricCounter(pub u64);

/// Makes a type take no part in the equality, ordering or hashing of the state that
/// holds it: every two values compare equal and hash to nothing. The one home of that
/// rule for what a replica keeps beside its protocol state.
macro_rules! outside_identity {
    ($type:ident $(<$param:ident>)?) => {
        impl$(<$param>)? PartialEq for $type$(<$param>)? {
            fn eq(&self, _: &Self) -> bool {
                true
            }
        }
        impl$(<$param>)? Eq for $type$(<$param>)? {}
        impl$(<$param>)? PartialOrd for $type$(<$param>)? {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl$(<$param>)? Ord for $type$(<$param>)? {
            fn cmp(&self, _: &Self) -> std::cmp::Ordering {
                std::cmp::Ordering::Equal
            }
        }
        impl$(<$param>)? std::hash::Hash for $type$(<$param>)? {
            fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
        }
    };
}

outside_identity!(MetricCounter);
outside_identity!(Discarded<C>);

/// Log entries a compaction dropped, held for the driver to free where freeing costs
/// it nothing: a node's loop hands them to another thread, since dropping a few hundred
/// thousand slots on the loop held up its heartbeats for a quarter of a second, long
/// enough for followers to start an election. Bounded: only the latest compaction's
/// are held (an earlier batch nobody took is freed when the next arrives). No part of
/// the protocol state: it takes no part in equality, ordering or hashing, and a clone
/// holds none of it.
#[derive(Debug)]
pub struct Discarded<C>(Option<BTreeMap<Slot, AcceptedEntry<C>>>);

impl<C> Default for Discarded<C> {
    fn default() -> Self {
        Discarded(None)
    }
}
impl<C> Clone for Discarded<C> {
    fn clone(&self) -> Self {
        Discarded(None)
    }
}

impl<S: StateMachine> Replica<S> {
    /// Takes the log entries the last compaction dropped, if the driver has not taken
    /// them yet, so that it can free them off its critical path. A driver that never
    /// calls this loses nothing: they are freed at the next compaction.
    ///
    /// ```
    /// use ballot_model::{ClusterConfig, DurableState, Input, Register, Replica};
    /// let (mut r, _) = Replica::recover(0, ClusterConfig::new(1), Register::default(), DurableState::default());
    /// assert!(r.take_discarded().is_none());
    /// ```
    pub fn take_discarded(&mut self) -> Option<BTreeMap<Slot, AcceptedEntry<S::Command>>> {
        self.discarded.0.take()
    }

    /// Starts (or restarts) a server that has never compacted its log: replays the
    /// committed prefix into `machine` and becomes a follower with its election timer
    /// armed. A node with a snapshot starts with [`Replica::restore`].
    ///
    /// # Panics
    ///
    /// If `durable` was compacted (`durable.compacted > 0`): the slots it dropped are
    /// only in a snapshot, which this constructor does not take.
    ///
    /// ```
    /// use ballot_model::{ClusterConfig, DurableState, Effect, Register, Replica, Timer};
    /// let (replica, effects) =
    ///     Replica::recover(0, ClusterConfig::new(3), Register::default(), DurableState::default());
    /// assert_eq!(effects, vec![Effect::SetTimer(Timer::Election)]);
    /// assert!(!replica.is_leader());
    /// ```
    pub fn recover(
        id: NodeId,
        config: ClusterConfig,
        machine: S,
        durable: DurableState<S::Command>,
    ) -> (Self, Vec<Effect<S>>) {
        match Self::restore(id, config, Snapshot::initial(machine), durable) {
            Ok(started) => started,
            Err(error) => panic!("Replica::recover on a compacted log: {error}"),
        }
    }

    /// Starts (or restarts) a server from its latest durable snapshot and its durable
    /// state: the state machine starts as the snapshot, the committed slots after it
    /// are replayed, and the node becomes a follower with its election timer armed.
    ///
    /// A snapshot newer than the log's compaction point (the node crashed between
    /// saving a snapshot and compacting) is fine: the log is compacted to it now.
    ///
    /// ```
    /// use ballot_model::{ClusterConfig, DurableState, Register, Replica, Snapshot};
    /// let (replica, _) = Replica::restore(
    ///     0, ClusterConfig::new(3), Snapshot::initial(Register::default()), DurableState::default(),
    /// ).unwrap();
    /// assert_eq!(replica.applied_index(), 0);
    /// ```
    pub fn restore(
        id: NodeId,
        config: ClusterConfig,
        snapshot: Snapshot<S>,
        mut durable: DurableState<S::Command>,
    ) -> Result<(Self, Vec<Effect<S>>), RestoreError> {
        if durable.compacted > snapshot.slot {
            return Err(RestoreError::SnapshotBehindLog {
                snapshot: snapshot.slot,
                compacted: durable.compacted,
            });
        }
        if mutant!(config, RecoveredForgetsPromise) {
            durable.promised = Ballot::ZERO;
        }
        let ahead_of_log = snapshot.slot > durable.compacted;
        // A snapshot at slot 0 is the initial state: the bootstrap membership.
        let members = if snapshot.slot == 0 {
            config.bootstrap()
        } else {
            snapshot.members
        };
        let mut replica = Replica {
            id,
            config,
            members,
            highest_seen: durable.promised,
            durable,
            role: Role::Follower { leader: None },
            applied: 0,
            table: snapshot.table,
            waiters: BTreeMap::new(),
            deduplicated: MetricCounter::default(),
            installed: MetricCounter::default(),
            refused_busy: MetricCounter::default(),
            refused_expired: MetricCounter::default(),
            backing: None,
            released: false,
            told_removed: None,
            discarded: Discarded::default(),
        };
        let mut effects = Vec::new();
        if ahead_of_log {
            replica.persist(DurableUpdate::Compact(snapshot.slot), &mut effects);
        }
        replica.applied = snapshot.slot;
        let mut replay = Vec::new();
        replica.apply_committed(&mut replay);
        // Replaying at start-up is not news to anyone: only the persist and the timer
        // matter.
        replica.arm_election_timer(&mut effects);
        Ok((replica, effects))
    }

    /// The applied state, as a snapshot a driver may save and then report with
    /// [`Input::Compact`]. Cloning the state machine is the driver's cost to choose
    /// when to pay.
    ///
    /// ```
    /// use ballot_model::{ClusterConfig, DurableState, Register, Replica};
    /// let (r, _) = Replica::recover(0, ClusterConfig::new(3), Register::default(), DurableState::default());
    /// assert_eq!(r.snapshot().slot, r.applied_index());
    /// ```
    pub fn snapshot(&self) -> Snapshot<S> {
        Snapshot {
            slot: self.applied,
            table: self.table.clone(),
            members: self.members.clone(),
        }
    }

    /// Feeds one input to the core; appends the effects to carry out, in order (see
    /// [`Effect`] for the ordering contract). Invalid peer input is an `Err` and leaves
    /// the state unchanged.
    pub fn step(&mut self, input: Input<S>, effects: &mut Vec<Effect<S>>) -> Result<(), StepError> {
        let from = effects.len();
        let result = self.step_input(input, effects);
        debug_assert!(
            mutant!(self.config, AcceptSentAhead)
                || crate::invariants::only_heartbeats_sent_ahead(&effects[from..]).is_ok(),
            "{:?}",
            crate::invariants::only_heartbeats_sent_ahead(&effects[from..])
        );
        result
    }

    fn step_input(
        &mut self,
        input: Input<S>,
        effects: &mut Vec<Effect<S>>,
    ) -> Result<(), StepError> {
        match input {
            Input::Message { from, message } => self.on_message(from, message, effects),
            Input::Client(request) => {
                self.on_client_request(request, effects);
                Ok(())
            }
            Input::Timer(Timer::Election) => {
                self.on_election_timeout(effects);
                Ok(())
            }
            Input::Timer(Timer::CandidacyRetry) => {
                // Armed only while a candidate; a stale firing changes nothing.
                if matches!(self.role, Role::Candidate(_)) {
                    self.on_election_timeout(effects);
                }
                Ok(())
            }
            Input::Timer(Timer::Heartbeat) => {
                self.on_heartbeat_timeout(effects);
                Ok(())
            }
            Input::Timer(Timer::CheckQuorum) => {
                self.on_check_quorum_timeout(effects);
                Ok(())
            }
            Input::Compact { through } => {
                self.on_compact(through, effects);
                Ok(())
            }
            Input::TransferLeadership { to } => {
                self.on_transfer_request(to, effects);
                Ok(())
            }
            Input::Reconfigure(change) => {
                self.on_reconfigure_request(change, effects);
                Ok(())
            }
        }
    }

    /// The driver saved a snapshot at `through`: drop the log up to it. A snapshot at
    /// or below the current compaction point, or beyond what is applied (it cannot be
    /// one of ours), changes nothing.
    fn on_compact(&mut self, through: Slot, effects: &mut Vec<Effect<S>>) {
        if through <= self.durable.compacted || through > self.applied {
            return;
        }
        self.persist(DurableUpdate::Compact(through), effects);
    }

    /// Installs a snapshot from a peer if it reaches past our commit index: saved
    /// first, then the log is compacted to it and the state machine replaced. Clients
    /// waiting here for a write the snapshot covers are answered from its sessions.
    pub(crate) fn install_snapshot(&mut self, snapshot: Snapshot<S>, effects: &mut Vec<Effect<S>>) {
        if snapshot.slot <= self.durable.commit {
            return; // We hold (or compacted) every slot it covers already.
        }
        let slot = snapshot.slot;
        self.installed.0 += 1;
        effects.push(Effect::SaveSnapshot(snapshot.clone()));
        self.persist(DurableUpdate::Compact(slot), effects);
        self.table = snapshot.table;
        self.applied = slot;
        let epoch = self.members.epoch;
        self.members = snapshot.members;
        let waiting: Vec<(ClientId, u64)> = self.waiters.iter().map(|(c, s)| (*c, *s)).collect();
        for (client, seq) in waiting {
            if let Some(outcome) = self.table.lookup(client, seq) {
                self.answer_waiter(client, seq, outcome, effects);
            }
        }
        // Slots after the snapshot that we already hold may now be applicable.
        self.apply_committed(effects);
        if self.members.epoch > epoch {
            self.enter_epoch(false, effects);
        }
    }

    fn on_message(
        &mut self,
        from: NodeId,
        message: Message<S>,
        effects: &mut Vec<Effect<S>>,
    ) -> Result<(), StepError> {
        // Any id the cluster may have given out: a member added after the last
        // reconfiguration this node applied (a new leader, say) is who brings it the
        // entries that name it. Whether the sender counts is the epoch's business.
        if from >= NODE_IDS_MAX || from == self.id {
            return Err(StepError::UnknownPeer {
                from,
                ids_max: NODE_IDS_MAX,
                me: self.id,
            });
        }
        self.validate(from, &message)?;
        if message.ballot().epoch < self.members.epoch {
            // Of an epoch we left: no quorum of it will ever count again here, and
            // its leader or candidate, once it catches up, stops on its own. Silence
            // rather than a refusal: a refusal naming our newer ballot would stop a
            // node of the old epoch from running in it, and the old epoch may still
            // need a leader to execute the change that ends it. Except for a
            // candidate our epoch retired, which never catches up (no leader sends a
            // non-member the log), in an epoch whose change is executed: telling it is
            // all that stops it. (A removed node that believes it leads hears no
            // acknowledgement, steps down at its quorum check, and campaigns.)
            if self.members.retired.contains(&from)
                && matches!(message, Message::Prepare { .. })
                && !mutant!(self.config, RemovedNotTold)
            {
                effects.push(Effect::Send {
                    to: from,
                    message: Message::Removed {
                        ballot: message.ballot(),
                        epoch: self.members.epoch,
                    },
                });
            }
            return Ok(());
        }
        // Only a valid message may teach us a ballot: a refused one changes nothing.
        self.highest_seen = self.highest_seen.max(message.ballot());
        match message {
            Message::Prepare { ballot, from_slot } => {
                self.on_prepare(from, ballot, from_slot, effects);
            }
            Message::Promise {
                ballot,
                accepted,
                snapshot,
            } => {
                self.on_promise(from, ballot, accepted, snapshot, effects);
            }
            Message::Accept {
                ballot,
                slot,
                proposal,
                commit,
            } => {
                self.on_accept(from, ballot, slot, proposal, commit, effects);
            }
            Message::Accepted {
                ballot,
                slot,
                commit,
            } => {
                self.on_accepted(from, ballot, slot, commit, effects);
            }
            Message::Heartbeat {
                ballot,
                commit,
                read_round,
            } => {
                self.on_heartbeat(from, ballot, commit, read_round, effects);
            }
            Message::HeartbeatAck {
                ballot,
                commit,
                read_round,
                lagging,
            } => {
                self.on_heartbeat_ack(from, ballot, commit, read_round, lagging, effects);
            }
            Message::InstallSnapshot {
                ballot,
                snapshot,
                commit,
            } => {
                self.on_install_snapshot(from, ballot, snapshot, commit, effects);
            }
            Message::Reject { ballot, promised } => self.on_reject(ballot, promised, effects),
            Message::Removed { epoch, .. } => self.on_removed(from, epoch, effects),
            Message::TransferLeadership { ballot, to } => {
                self.on_transfer(from, ballot, to, effects);
            }
        }
        Ok(())
    }

    /// True if this node may run for leader: it votes in the membership that counts,
    /// and no peer has told it that a later one retired it.
    pub(crate) fn may_campaign(&self) -> bool {
        self.counted().is_voter(self.id) && self.told_removed.is_none()
    }

    /// Checks a peer message before it may change anything.
    fn validate(&self, from: NodeId, message: &Message<S>) -> Result<(), StepError> {
        match message {
            Message::Prepare { ballot, .. } => self.require_sender_ballot("Prepare", from, *ballot),
            Message::Accept { ballot, slot, .. } => {
                self.require_sender_ballot("Accept", from, *ballot)?;
                if *slot == 0 {
                    return Err(StepError::SlotZero {
                        kind: "Accept",
                        from,
                    });
                }
                self.require_slot_in_range("Accept", from, *slot)
            }
            Message::Heartbeat { ballot, .. } => {
                self.require_sender_ballot("Heartbeat", from, *ballot)
            }
            Message::Promise {
                ballot,
                accepted,
                snapshot,
            } => {
                self.require_own_ballot("Promise", from, *ballot)?;
                if let Some(snapshot) = snapshot {
                    self.require_slot_in_range("Promise", from, snapshot.slot)?;
                }
                accepted
                    .iter()
                    .try_for_each(|(slot, _)| self.require_slot_in_range("Promise", from, *slot))
            }
            Message::InstallSnapshot {
                ballot, snapshot, ..
            } => {
                self.require_sender_ballot("InstallSnapshot", from, *ballot)?;
                self.require_slot_in_range("InstallSnapshot", from, snapshot.slot)
            }
            Message::Accepted { ballot, .. } => self.require_own_ballot("Accepted", from, *ballot),
            Message::HeartbeatAck { ballot, .. } => {
                self.require_own_ballot("HeartbeatAck", from, *ballot)
            }
            Message::Reject { ballot, .. } => self.require_own_ballot("Reject", from, *ballot),
            Message::Removed { ballot, .. } => self.require_own_ballot("Removed", from, *ballot),
            Message::TransferLeadership { ballot, to } => {
                self.require_sender_ballot("TransferLeadership", from, *ballot)?;
                // Who votes in a newer epoch than ours we cannot tell yet.
                let voter = ballot.epoch > self.members.epoch || self.members.is_voter(*to);
                if !voter || *to == from {
                    return Err(StepError::TransferToNonPeer { from, to: *to });
                }
                Ok(())
            }
        }
    }

    /// Slots named by peers lie within [`MAX_SLOTS_AHEAD`] of our commit index.
    fn require_slot_in_range(
        &self,
        kind: &'static str,
        from: NodeId,
        slot: Slot,
    ) -> Result<(), StepError> {
        let limit = self.durable.commit.saturating_add(MAX_SLOTS_AHEAD);
        if slot > limit {
            return Err(StepError::SlotOutOfRange {
                kind,
                from,
                slot,
                limit,
            });
        }
        Ok(())
    }

    /// Leader-originated messages must carry the sender's own ballot.
    fn require_sender_ballot(
        &self,
        kind: &'static str,
        from: NodeId,
        ballot: Ballot,
    ) -> Result<(), StepError> {
        if ballot.node != from || ballot.is_zero() {
            return Err(StepError::BallotNotSender { kind, from, ballot });
        }
        Ok(())
    }

    /// Replies must answer a ballot this node ran.
    fn require_own_ballot(
        &self,
        kind: &'static str,
        from: NodeId,
        ballot: Ballot,
    ) -> Result<(), StepError> {
        if ballot.node != self.id || ballot.is_zero() {
            return Err(StepError::NotOurBallot { kind, from, ballot });
        }
        Ok(())
    }

    /// Changes durable state and emits the matching `Persist`, in one place, so memory
    /// and disk cannot drift apart.
    pub(crate) fn persist(
        &mut self,
        update: DurableUpdate<S::Command>,
        effects: &mut Vec<Effect<S>>,
    ) {
        match &update {
            DurableUpdate::Compact(through) => {
                let dropped = self.durable.compact(*through);
                if !dropped.is_empty() {
                    self.discarded.0 = Some(dropped);
                }
            }
            _ => self.durable.apply(&update),
        }
        effects.push(Effect::Persist(update));
    }

    /// Follower (its election timer) or candidate (its retry timer): the leader went
    /// quiet, or the candidacy is not won yet. Start phase 1 for every slot from the
    /// commit point on, with a ballot above everything seen; or, as a candidate whose
    /// ballot nobody has outbid, ask again at the same ballot.
    fn on_election_timeout(&mut self, effects: &mut Vec<Effect<S>>) {
        if matches!(self.role, Role::Leader(_)) || !self.may_campaign() {
            // A leader's election timer is cancelled, and a learner's (or a removed
            // node's) never armed: a stale firing changes nothing.
            return;
        }
        if self.election_retries_ballot() {
            self.retry_candidacy(effects);
            return;
        }
        if self.backing.take().is_some()
            && self.highest_seen > self.durable.promised
            && !self.released
        {
            // Our leader (or the candidate we backed) went quiet, and meanwhile we
            // refused a higher ballot out of loyalty. Stop refusing rather than outbid
            // it: its candidate asks again and can now win, with no new ballot spent.
            // If no one wins, our next timeout campaigns (`released`).
            self.released = true;
            self.role = Role::Follower { leader: None };
            self.arm_election_timer(effects);
            return;
        }
        self.campaign(effects);
    }

    /// Starts phase 1 at a new ballot above every ballot seen, for every slot from the
    /// commit point on. Only a node that does not lead campaigns.
    pub(crate) fn campaign(&mut self, effects: &mut Vec<Effect<S>>) {
        debug_assert!(!self.is_leader(), "a leader campaigns against itself");
        if !self.may_campaign() {
            return; // A learner never runs: its promise counts in no quorum.
        }
        let epoch = self.members.epoch;
        if self.durable.promised.epoch > epoch || self.highest_seen.epoch > epoch {
            // Others run a later epoch, whose start we have not executed: we cannot
            // tell its voters, so we cannot count its votes. Its leader catches us
            // up; until then we wait (and ask again at our next timeout).
            self.arm_election_timer(effects);
            return;
        }
        let round_in_epoch = |ballot: Ballot| {
            if ballot.epoch == epoch {
                ballot.round
            } else {
                0
            }
        };
        let Some(round) = round_in_epoch(self.durable.promised)
            .max(round_in_epoch(self.highest_seen))
            .checked_add(1)
        else {
            // The ballot space is exhausted (only a peer sending absurd ballots gets us
            // here). Never wrap: a wrapped round would lower our promise. Stay a
            // follower; a node with a usable ballot can still lead.
            return;
        };
        let ballot = Ballot::in_epoch(epoch, round, self.id);
        self.released = false;
        // Persisting our own ballot as our promise is what makes ballots unique: after a
        // crash we restart above it, never re-running it with another value.
        self.persist(DurableUpdate::Promise(ballot), effects);
        effects.push(Effect::Campaigning { ballot });
        self.highest_seen = ballot;
        let from_slot = self.durable.commit + 1;
        let mut promises = BTreeMap::new();
        promises.insert(self.id, self.votes_in_epoch(epoch, from_slot));
        self.role = Role::Candidate(Candidacy {
            ballot,
            from_slot,
            promises,
        });
        for peer in self.counted().voter_peers(self.id) {
            effects.push(Effect::Send {
                to: peer,
                message: Message::Prepare { ballot, from_slot },
            });
        }
        if !mutant!(self.config, ElectionTimerNotRearmed) {
            effects.push(Effect::SetTimer(Timer::CandidacyRetry));
        }
        self.try_become_leader(effects);
    }

    /// True if the next election timeout would re-send the current candidacy's
    /// `Prepare` rather than start a new ballot: we are a candidate and have seen no
    /// higher ballot (a higher one makes us yield, so in practice: still a candidate).
    ///
    /// Why retry rather than escalate: a candidate that cannot reach a majority (it is
    /// cut off, or its peers still follow a live leader) would otherwise raise its ballot
    /// on every timeout, and the first time its `Prepare` reaches a node that ballot
    /// would depose a leader that was doing fine. A ballot nobody has outbid is as good
    /// as a new one, so asking again costs nothing and disturbs no one. Ballots only
    /// grow when someone has actually promised a higher one.
    ///
    /// ```
    /// use ballot_model::{ClusterConfig, DurableState, Input, Register, Replica, Timer};
    /// let (mut r, _) = Replica::recover(0, ClusterConfig::new(3), Register::default(), DurableState::default());
    /// assert!(!r.election_retries_ballot(), "a follower starts a new ballot");
    /// r.step(Input::Timer(Timer::Election), &mut Vec::new()).unwrap();
    /// assert!(r.election_retries_ballot(), "an unanswered candidate asks again");
    /// ```
    pub fn election_retries_ballot(&self) -> bool {
        match &self.role {
            Role::Candidate(candidacy) => self.highest_seen <= candidacy.ballot,
            _ => false,
        }
    }

    /// True if an election timeout now would start a new ballot: not a leader, not a
    /// candidate asking again, not a loyal follower releasing its loyalty.
    ///
    /// ```
    /// use ballot_model::{ClusterConfig, DurableState, Input, Register, Replica, Timer};
    /// let (mut r, _) = Replica::recover(0, ClusterConfig::new(3), Register::default(), DurableState::default());
    /// assert!(r.election_timeout_starts_ballot());
    /// r.step(Input::Timer(Timer::Election), &mut Vec::new()).unwrap();
    /// assert!(!r.election_timeout_starts_ballot());
    /// ```
    pub fn election_timeout_starts_ballot(&self) -> bool {
        if !self.may_campaign() {
            return false; // A learner, or a removed member, never campaigns.
        }
        match self.role {
            Role::Leader(_) => false,
            Role::Candidate(_) => !self.election_retries_ballot(),
            Role::Follower { .. } => {
                self.backing.is_none()
                    || self.highest_seen <= self.durable.promised
                    || self.released
            }
        }
    }

    /// The epoch a peer said retired this node ([`Message::Removed`]) while its own log
    /// has not reached that epoch: set, the node never campaigns. `None` after a
    /// restart, until the next peer says so again.
    ///
    /// ```
    /// use ballot_model::{ClusterConfig, DurableState, Register, Replica};
    /// let (r, _) = Replica::recover(0, ClusterConfig::new(3), Register::default(), DurableState::default());
    /// assert_eq!(r.told_removed(), None);
    /// ```
    pub fn told_removed(&self) -> Option<u32> {
        self.told_removed
    }

    /// The node this one backs since its election timer last fired: the leader it
    /// follows or the candidate it promised. While set, it promises no one else.
    pub fn backing(&self) -> Option<NodeId> {
        self.backing
    }

    /// Re-sends the candidacy's `Prepare` to every peer that has not promised yet.
    fn retry_candidacy(&mut self, effects: &mut Vec<Effect<S>>) {
        let Role::Candidate(candidacy) = &self.role else {
            return;
        };
        let (ballot, from_slot) = (candidacy.ballot, candidacy.from_slot);
        for peer in self.counted().voter_peers(self.id) {
            if !candidacy.promises.contains_key(&peer) {
                effects.push(Effect::Send {
                    to: peer,
                    message: Message::Prepare { ballot, from_slot },
                });
            }
        }
        if !mutant!(self.config, ElectionTimerNotRearmed) {
            effects.push(Effect::SetTimer(Timer::CandidacyRetry));
        }
    }

    /// Leaves candidacy or leadership (a higher ballot exists, or the majority is gone).
    /// Always (re-)arms the election timer: whoever leads next, we must notice if it
    /// fails.
    pub(crate) fn step_down(&mut self, leader: Option<NodeId>, effects: &mut Vec<Effect<S>>) {
        if matches!(self.role, Role::Leader(_)) {
            effects.push(Effect::CancelTimer(Timer::Heartbeat));
            effects.push(Effect::CancelTimer(Timer::CheckQuorum));
        }
        let failed_candidate = matches!(self.role, Role::Candidate(_));
        if failed_candidate {
            effects.push(Effect::CancelTimer(Timer::CandidacyRetry));
        }
        if !(failed_candidate && mutant!(self.config, ElectionTimerNotRearmed)) {
            self.arm_election_timer(effects);
        }
        // Pending reads cannot be confirmed any more; their clients time out and retry
        // elsewhere. Write waiters stay: if their slot is chosen we will still apply it
        // and can answer with the chosen output.
        self.role = Role::Follower { leader };
    }

    /// (Re-)arms the election timer, which only a voter has: a learner never
    /// campaigns, so it has no timeout to notice a silent leader by.
    pub(crate) fn arm_election_timer(&self, effects: &mut Vec<Effect<S>>) {
        if self.may_campaign() {
            effects.push(Effect::SetTimer(Timer::Election));
        }
    }

    /// Raises the commit index to `commit` (if higher), persisting it before anything
    /// announces it, then applies.
    pub(crate) fn commit_to(&mut self, commit: Slot, effects: &mut Vec<Effect<S>>) {
        if commit <= self.durable.commit {
            return;
        }
        self.persist(DurableUpdate::Commit(commit), effects);
        self.apply_committed(effects);
    }

    /// Applies every committed, unapplied slot in order and answers waiting clients.
    pub(crate) fn apply_committed(&mut self, effects: &mut Vec<Effect<S>>) {
        let epoch = self.members.epoch;
        let mut slots: Vec<Slot> = (self.applied + 1..=self.durable.commit).collect();
        if mutant!(self.config, ApplyOutOfOrder) {
            slots.reverse();
        }
        for slot in slots {
            let Some(entry) = self.durable.accepted.get(&slot) else {
                // Unreachable while the invariant "1..=commit are accepted" holds; the
                // invariant checker reports it, so stop rather than skip a slot.
                break;
            };
            if let Proposal::Reconfigure {
                from_epoch,
                voters,
                learners,
                joining,
            } = &entry.proposal
            {
                // The first reconfiguration executed in an epoch ends it here; one of
                // an epoch already ended changes nothing.
                if *from_epoch == self.members.epoch {
                    self.members = self
                        .members
                        .successor(slot, voters, learners, joining.as_ref());
                }
            }
            let requests = entry.proposal.requests().to_vec();
            for request in &requests {
                let outcome = if mutant!(self.config, NoDedup) {
                    self.table.apply_unconditionally(request)
                } else {
                    let rule = if mutant!(self.config, ExpiryForgetsFloor) {
                        Expiry::ForgetFloor
                    } else {
                        Expiry::RaiseFloor
                    };
                    self.table
                        .apply_with(request, self.config.sessions_max, rule)
                };
                self.answer_waiter(request.client, request.seq, outcome, effects);
            }
            self.applied = self.applied.max(slot);
            effects.push(Effect::Applied { slot });
        }
        self.serve_reads(effects);
        if self.members.epoch > epoch {
            self.enter_epoch(true, effects);
        }
    }

    /// This node just executed the start of a new epoch (from its log, or from a
    /// snapshot): a leader or candidate of the old one stops, since its ballot's quorums
    /// are of the old voters; a leader that is still a voter runs at once in the new
    /// epoch (its phase 1 finds nothing to recover, so the change costs no election
    /// timeout); a node that is no longer a member stops campaigning for good.
    ///
    /// `by_log` is false for a snapshot install: then this node was behind, and leads
    /// nothing of the old epoch worth continuing.
    pub(crate) fn enter_epoch(&mut self, by_log: bool, effects: &mut Vec<Effect<S>>) {
        let was_leader = self.is_leader();
        let stays = self.members.is_voter(self.id);
        // The queue waited for this epoch (nothing is proposed above a
        // reconfiguration): its clients ask again, here if we run again.
        self.redirect_unproposed(stays.then_some(self.id), effects);
        if self
            .backing
            .is_some_and(|backed| !self.members.is_voter(backed))
        {
            // Loyalty to a node that no longer votes would refuse its successors.
            self.backing = None;
        }
        match self.role {
            Role::Leader(_) | Role::Candidate(_) => self.step_down(None, effects),
            Role::Follower { .. } => self.arm_election_timer(effects),
        }
        if !stays {
            // No longer a voter: it never campaigns again, so it watches for no leader.
            effects.push(Effect::CancelTimer(Timer::Election));
        }
        if was_leader && by_log && stays {
            self.campaign(effects);
        }
    }

    /// A leader about to stop leading answers the requests it holds but never
    /// proposed (its queue) and the reads it has not confirmed with a redirect to
    /// `leader`, and stops waiting for them, so that their clients ask again instead
    /// of waiting for an answer nothing will give.
    pub(crate) fn redirect_unproposed(
        &mut self,
        leader: Option<NodeId>,
        effects: &mut Vec<Effect<S>>,
    ) {
        let Role::Leader(leadership) = &mut self.role else {
            return;
        };
        let queued = std::mem::take(&mut leadership.queue)
            .into_iter()
            .map(|request| (request.client, request.seq));
        let reads = std::mem::take(&mut leadership.reads)
            .into_iter()
            .map(|read| (read.client, read.seq));
        for (client, seq) in queued.chain(reads) {
            // No longer held here: this node must not count as serving it.
            if self.waiters.get(&client) == Some(&seq) {
                self.waiters.remove(&client);
            }
            effects.push(Effect::Reply {
                client,
                response: ClientResponse::Redirect { seq, leader },
            });
        }
    }

    /// The members this node acts under — whom it counts votes of, asks for promises,
    /// promises as: its epoch's (in the `ConfigBeforeApplied` mutant, those of a
    /// reconfiguration it has accepted but not executed, if any).
    pub(crate) fn counted(&self) -> Cow<'_, Membership> {
        if mutant!(self.config, ConfigBeforeApplied) {
            let pending = self
                .durable
                .accepted
                .range(self.applied + 1..)
                .filter_map(|(slot, entry)| match &entry.proposal {
                    Proposal::Reconfigure {
                        from_epoch,
                        voters,
                        learners,
                        joining,
                    } if *from_epoch == self.members.epoch => {
                        Some(
                            self.members
                                .successor(*slot, voters, learners, joining.as_ref()),
                        )
                    }
                    _ => None,
                })
                .last();
            if let Some(next) = pending {
                return Cow::Owned(next);
            }
        }
        Cow::Borrowed(&self.members)
    }

    /// Size of a majority of the voters counted.
    pub(crate) fn quorum(&self) -> usize {
        self.counted().quorum()
    }

    /// How many voters' acknowledgements (the leader's own included) choose a slot. A
    /// majority, except in the `MinorityCommit` mutant.
    pub(crate) fn commit_quorum(&self) -> usize {
        if mutant!(self.config, MinorityCommit) {
            return (self.counted().voters.len() / 2).max(1);
        }
        self.quorum()
    }

    /// How many of `ids` count toward a quorum: the voters among them. The one place
    /// votes are counted. (In the `LearnerCounted` mutant, every one of them; in
    /// `RemovedCounted`, removed members' too.)
    pub(crate) fn votes_among<'a>(&self, ids: impl IntoIterator<Item = &'a NodeId>) -> usize {
        if mutant!(self.config, LearnerCounted) {
            return ids.into_iter().count();
        }
        let members = self.counted();
        let removed_counted = mutant!(self.config, RemovedCounted);
        ids.into_iter()
            .filter(|id| {
                members.is_voter(**id) || (removed_counted && members.retired.contains(id))
            })
            .count()
    }

    /// Who receives the log from a leader: every member but this node (in the
    /// `RemovedCounted` mutant, removed members too).
    pub(crate) fn log_peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        let removed_too = mutant!(self.config, RemovedCounted);
        let me = self.id;
        self.members.peers(me).chain(
            self.members
                .retired
                .iter()
                .copied()
                .filter(move |id| removed_too && *id != me),
        )
    }

    /// Replies to a client waiting here for `(client, seq)`, if there is one.
    pub(crate) fn answer_waiter(
        &mut self,
        client: ClientId,
        seq: u64,
        outcome: ApplyOutcome<S::Output>,
        effects: &mut Vec<Effect<S>>,
    ) {
        let response = match outcome {
            ApplyOutcome::Applied(output) => ClientResponse::Written { seq, output },
            ApplyOutcome::Duplicate(output) => {
                self.deduplicated.0 += 1;
                ClientResponse::Written { seq, output }
            }
            ApplyOutcome::Expired { floor } => {
                self.refused_expired.0 += 1;
                ClientResponse::Refused {
                    seq,
                    reason: Refusal::SessionExpired { floor },
                }
            }
            ApplyOutcome::Stale => return,
        };
        if self.waiters.get(&client) == Some(&seq) {
            self.waiters.remove(&client);
            effects.push(Effect::Reply { client, response });
        }
    }

    /// True if `message` can never change this replica again, whatever happens next.
    ///
    /// Answers (`Promise`, `Accepted`, `HeartbeatAck`, `Reject`) concern one ballot this
    /// node ran; once the node no longer runs that ballot it never will again (ballots
    /// are never reused), so answers to it are inert forever. A `Promise` is also inert
    /// once its candidacy succeeded, and a `Reject` that names no promise above the
    /// ballot it refuses is inert from the start. Requests from leaders and candidates
    /// always deserve an answer, so they are never obsolete; of an epoch this node left,
    /// a `Prepare` still is not (a removed candidate is told so). `Removed` is inert
    /// once this node knows. Drivers may drop obsolete messages
    /// unprocessed; the model does, so that states differing only in such garbage merge.
    ///
    /// ```
    /// use ballot_model::{Ballot, ClusterConfig, DurableState, Message, Register, Replica};
    /// let (r, _) = Replica::recover(0, ClusterConfig::new(3), Register::default(), DurableState::default());
    /// let late = Message::Promise { ballot: Ballot::new(1, 0), accepted: vec![], snapshot: None };
    /// assert!(r.is_obsolete(&late), "a follower runs no ballot");
    /// ```
    pub fn is_obsolete(&self, message: &Message<S>) -> bool {
        if message.ballot().epoch < self.members.epoch {
            // Of an epoch this node left, and epochs never go back: `on_message`
            // ignores it now and forever, except a `Prepare` whose sender is retired
            // by the time it arrives (answered `Removed`), which is not known now.
            return !matches!(message, Message::Prepare { .. });
        }
        let running = match &self.role {
            Role::Follower { .. } => None,
            Role::Candidate(candidacy) => Some((candidacy.ballot, false)),
            Role::Leader(leadership) => Some((leadership.ballot, true)),
        };
        match message {
            Message::Prepare { .. }
            | Message::Accept { .. }
            | Message::Heartbeat { .. }
            | Message::InstallSnapshot { .. }
            | Message::TransferLeadership { .. } => false,
            Message::Promise { ballot, .. } => match running {
                Some((running, false)) if mutant!(self.config, CountsLatePromise) => {
                    *ballot > running
                }
                _ => running != Some((*ballot, false)),
            },
            Message::Accepted { ballot, .. } | Message::HeartbeatAck { ballot, .. } => {
                running != Some((*ballot, true))
            }
            // A refusal that names no higher promise (a follower still loyal to its
            // leader) teaches nothing, now or later: `on_reject` ignores it.
            Message::Reject { ballot, promised } => {
                promised <= ballot || running.map(|(b, _)| b) != Some(*ballot)
            }
            // Once told (until a restart, which loses what is in flight to us), or once
            // our own log reached the epoch: `on_removed` ignores it.
            Message::Removed { epoch, .. } => {
                *epoch <= self.members.epoch || self.told_removed.is_some()
            }
        }
    }

    /// True if this node leads and holds request `(client, seq)`: it will answer it
    /// once it commits (a write) or confirms its leadership (a read), unless it loses
    /// the lead first.
    ///
    /// ```
    /// use ballot_model::{ClusterConfig, DurableState, Register, Replica};
    /// let (r, _) = Replica::recover(0, ClusterConfig::new(3), Register::default(), DurableState::default());
    /// assert!(!r.is_serving(7, 1));
    /// ```
    pub fn is_serving(&self, client: ClientId, seq: u64) -> bool {
        let Role::Leader(leadership) = &self.role else {
            return false;
        };
        self.waiters.get(&client) == Some(&seq)
            || leadership
                .reads
                .iter()
                .any(|read| read.client == client && read.seq == seq)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The cluster configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The durable part of the state.
    pub fn durable(&self) -> &DurableState<S::Command> {
        &self.durable
    }

    /// The current role.
    pub fn role(&self) -> &Role<S> {
        &self.role
    }

    /// True if this node is a voter (an acceptor that counts in quorums), false for a
    /// learner.
    ///
    /// ```
    /// use ballot_model::{ClusterConfig, DurableState, Register, Replica};
    /// let config = ClusterConfig::new(4).with_learners([3]);
    /// let (learner, _) = Replica::recover(3, config, Register::default(), DurableState::default());
    /// assert!(!learner.is_voter());
    /// ```
    pub fn is_voter(&self) -> bool {
        self.members.is_voter(self.id)
    }

    /// True if this node is a voter or a learner of its epoch; false for a node not
    /// yet added, or removed (which no longer campaigns or follows anyone).
    ///
    /// ```
    /// use ballot_model::{ClusterConfig, DurableState, Register, Replica};
    /// let config = ClusterConfig::new(4).with_spares([3]);
    /// let (spare, _) = Replica::recover(3, config, Register::default(), DurableState::default());
    /// assert!(!spare.is_member());
    /// ```
    pub fn is_member(&self) -> bool {
        self.members.is_member(self.id)
    }

    /// The membership of the epoch this node is in.
    pub fn membership(&self) -> &Membership {
        &self.members
    }

    /// True while leading.
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    /// The ballot this node leads, if it leads.
    pub fn leader_ballot(&self) -> Option<Ballot> {
        match &self.role {
            Role::Leader(leadership) => Some(leadership.ballot),
            _ => None,
        }
    }

    /// Who this node believes leads (itself included).
    pub fn known_leader(&self) -> Option<NodeId> {
        match &self.role {
            Role::Follower { leader } => *leader,
            Role::Candidate(_) => None,
            Role::Leader(_) => Some(self.id),
        }
    }

    /// Where this node sends clients: the leader it knows (itself included), else the
    /// candidate whose ballot it promised (the likeliest next leader; it learns who
    /// leads only from that leader's first accept or heartbeat), else no one.
    ///
    /// ```
    /// use ballot_model::{Ballot, ClusterConfig, DurableState, Input, Message, Register, Replica};
    /// let (mut r, _) = Replica::recover(0, ClusterConfig::new(3), Register::default(), DurableState::default());
    /// assert_eq!(r.leader_hint(), None);
    /// let prepare = Message::Prepare { ballot: Ballot::new(1, 2), from_slot: 1 };
    /// r.step(Input::Message { from: 2, message: prepare }, &mut Vec::new()).unwrap();
    /// assert_eq!((r.known_leader(), r.leader_hint()), (None, Some(2)));
    /// ```
    pub fn leader_hint(&self) -> Option<NodeId> {
        match &self.role {
            Role::Follower { leader } => leader.or(self.backing.filter(|b| *b != self.id)),
            Role::Candidate(_) => None,
            Role::Leader(_) => Some(self.id),
        }
    }

    /// Highest slot known chosen.
    pub fn commit_index(&self) -> Slot {
        self.durable.commit
    }

    /// Highest slot applied to the state machine.
    pub fn applied_index(&self) -> Slot {
        self.applied
    }

    /// How many retried requests were answered without being applied again.
    pub fn deduplicated_count(&self) -> u64 {
        self.deduplicated.0
    }

    /// How many requests this node refused because its queue was full.
    pub fn refused_busy_count(&self) -> u64 {
        self.refused_busy.0
    }

    /// Requests this node refused because their client's session had expired.
    pub fn refused_expired_count(&self) -> u64 {
        self.refused_expired.0
    }

    /// How many snapshots from peers this node installed.
    pub fn snapshots_installed(&self) -> u64 {
        self.installed.0
    }

    /// The state machine with its client sessions.
    pub fn client_table(&self) -> &ClientTable<S> {
        &self.table
    }

    /// The committed log this node still holds: `compacted+1..=commit`.
    pub fn committed_log(&self) -> impl Iterator<Item = (Slot, &Proposal<S::Command>)> {
        self.durable
            .accepted
            .range(self.durable.compacted + 1..self.durable.commit + 1)
            .map(|(slot, entry)| (*slot, &entry.proposal))
    }
}
