//! Who votes: the membership of one epoch, part of the replicated state, and the changes
//! an operator may ask for.
//!
//! A reconfiguration is a log entry ([`crate::Proposal::Reconfigure`]). The first one
//! executed in epoch `e`, at slot `i`, ends the epoch there: epoch `e + 1`, with the
//! entry's voters and learners, governs the slots from `i + 1` on, and its ballots
//! ([`crate::Ballot::epoch`]) are above every ballot of epoch `e`. A node takes part in
//! an epoch (campaigns, counts votes, acts as an acceptor of its ballots) only once it
//! has applied the entry that began it, so every quorum it counts is one of the epoch
//! whose slots it recovers or commits (SPEC §7).

use crate::ballot::{quorum, NodeId, Slot};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// Most node ids a cluster ever allocates: its bootstrap address book
/// ([`crate::ClusterConfig::node_count`]) and every member added at an address since
/// ([`MemberChange::AddAt`]). Ids are never reused, so this bounds the replacements a
/// cluster makes in its life (a thousand, at one a week, is twenty years), and with
/// [`MEMBER_ADDRESS_BYTES_MAX`] the address book a snapshot carries.
pub const NODE_IDS_MAX: usize = 1024;

/// Longest peer or client address, in bytes, that a member may be added at.
pub const MEMBER_ADDRESS_BYTES_MAX: usize = 255;

/// Where a member added by address is reached ([`MemberChange::AddAt`]). The core
/// never reads it: it only carries it through the log, so that every replica, and every
/// member added later, learns the address book from the log rather than from a file.
///
/// ```
/// use ballot_model::MemberAddress;
/// let at = MemberAddress::new("10.0.0.7:7100", "10.0.0.7:6379");
/// assert_eq!(at.to_string(), "peer 10.0.0.7:7100 client 10.0.0.7:6379");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MemberAddress {
    /// The address peers connect to.
    pub peer: String,
    /// The address clients connect to (the one a redirect names).
    pub client: String,
}

impl MemberAddress {
    /// The address of a member reached at `peer` by its peers and at `client` by
    /// clients.
    pub fn new(peer: impl Into<String>, client: impl Into<String>) -> Self {
        MemberAddress {
            peer: peer.into(),
            client: client.into(),
        }
    }
}

impl fmt::Display for MemberAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer {} client {}", self.peer, self.client)
    }
}

/// The members of one epoch: who votes, who only learns, and which ids are spent.
///
/// Invariant: `voters`, `learners` and `retired` are disjoint, and `voters` is not
/// empty.
///
/// ```
/// use ballot_model::Membership;
/// let m = Membership::bootstrap(4, [3], []);
/// assert_eq!((m.epoch, m.start, m.quorum()), (0, 1, 2));
/// assert!(m.is_voter(0) && !m.is_voter(3) && m.is_member(3));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Membership {
    /// The epoch: how many reconfigurations the log executed before it.
    pub epoch: u32,
    /// The first slot the epoch governs: 1 for epoch 0, `i + 1` for an epoch begun by
    /// the reconfiguration at slot `i`.
    pub start: Slot,
    /// The acceptors, whose majorities are the epoch's quorums.
    pub voters: BTreeSet<NodeId>,
    /// Members that receive the log and apply it but never vote or campaign.
    pub learners: BTreeSet<NodeId>,
    /// Ids removed in an earlier epoch. A removed id never comes back: a machine that
    /// returns is added under a new id, so no vote it cast under its old one can count
    /// again.
    pub retired: BTreeSet<NodeId>,
    /// The address book past the bootstrap one: the address of every member ever added
    /// at an address ([`MemberChange::AddAt`]), in id order, the first having id
    /// [`crate::ClusterConfig::node_count`]. Entries stay when their member leaves, so
    /// ids stay dense and are never given out twice.
    pub added: Vec<MemberAddress>,
}

impl Membership {
    /// Epoch 0: every id below `node_count` votes, except `learners` (members that do
    /// not vote) and `spares` (ids that are no members yet, for a later
    /// [`MemberChange::AddLearner`]). Ids at or above `node_count` are ignored.
    pub fn bootstrap(
        node_count: usize,
        learners: impl IntoIterator<Item = NodeId>,
        spares: impl IntoIterator<Item = NodeId>,
    ) -> Self {
        let learners: BTreeSet<NodeId> =
            learners.into_iter().filter(|id| *id < node_count).collect();
        let spares: BTreeSet<NodeId> = spares.into_iter().filter(|id| *id < node_count).collect();
        Membership {
            epoch: 0,
            start: 1,
            voters: (0..node_count)
                .filter(|id| !learners.contains(id) && !spares.contains(id))
                .collect(),
            learners: learners.difference(&spares).copied().collect(),
            retired: BTreeSet::new(),
            added: Vec::new(),
        }
    }

    /// How many node ids the cluster has given out: the bootstrap address book's
    /// `node_count` and one per member added at an address. Every id below it has an
    /// address; the next member added at an address gets it.
    pub fn id_count(&self, node_count: usize) -> usize {
        node_count + self.added.len()
    }

    /// The address of `id` if it was added at one ([`MemberAddress`]); `None` for an
    /// id of the bootstrap address book, whose addresses the nodes' configuration
    /// holds, or for an id not given out.
    pub fn added_address(&self, id: NodeId, node_count: usize) -> Option<&MemberAddress> {
        self.added.get(id.checked_sub(node_count)?)
    }

    /// The id, not retired, whose peer or client address `address` repeats, if any:
    /// a new machine must not take a member's or a spare's place. An id's address is
    /// its entry in `book` (the bootstrap address book, empty if unknown) or in
    /// [`Membership::added`]; empty addresses repeat nothing. A retired member's
    /// address may be taken again, under the new id.
    ///
    /// ```
    /// use ballot_model::{MemberAddress, Membership};
    /// let book = [MemberAddress::new("p0", "c0"), MemberAddress::new("p1", "c1")];
    /// let mut m = Membership::bootstrap(2, [], []);
    /// assert_eq!(m.address_in_use(&MemberAddress::new("p9", "c1"), 2, &book), Some(1));
    /// m.retired.insert(1);
    /// assert_eq!(m.address_in_use(&MemberAddress::new("p9", "c1"), 2, &book), None);
    /// ```
    pub fn address_in_use(
        &self,
        address: &MemberAddress,
        node_count: usize,
        book: &[MemberAddress],
    ) -> Option<NodeId> {
        let repeats = |a: &str, b: &str| !a.is_empty() && a == b;
        let bootstrap = book.iter().take(node_count).enumerate();
        bootstrap
            .chain(self.added_members(node_count))
            .find(|(id, at)| {
                !self.retired.contains(id)
                    && (repeats(&at.peer, &address.peer) || repeats(&at.client, &address.client))
            })
            .map(|(id, _)| id)
    }

    /// Every id given out past the bootstrap address book of `node_count`, with the
    /// address it was added at, in id order.
    pub fn added_members(
        &self,
        node_count: usize,
    ) -> impl Iterator<Item = (NodeId, &MemberAddress)> + '_ {
        (node_count..).zip(&self.added)
    }

    /// True if `id` votes in this epoch.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    /// True if `id` is a voter or a learner of this epoch: the leader sends it the log.
    pub fn is_member(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// Size of a majority of the voters.
    pub fn quorum(&self) -> usize {
        quorum(self.voters.len())
    }

    /// Every member but `me`, learners included: who receives the log.
    pub fn peers(&self, me: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.voters
            .union(&self.learners)
            .copied()
            .filter(move |id| *id != me)
    }

    /// Every voter but `me`: who a candidate asks for promises, and who may take over
    /// a leadership.
    pub fn voter_peers(&self, me: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().copied().filter(move |id| *id != me)
    }

    /// The voters and learners after `change`, or why it cannot be made. Ids must be
    /// below [`Membership::id_count`]; a member added at an address gets the next id,
    /// at an address no id that is not retired has (`book`: the bootstrap address
    /// book's, if known); a voter must have been a learner first (it has the log); at
    /// least one voter stays.
    ///
    /// ```
    /// use ballot_model::{MemberAddress, MemberChange, Membership, ReconfigureRefusal};
    /// let m = Membership::bootstrap(4, [], [3]);
    /// let next = m.after(&MemberChange::AddLearner(3), 4, &[]).unwrap();
    /// assert_eq!((next.voters.len(), next.learners.len(), next.joining), (3, 1, None));
    /// let at = MemberAddress::new("10.0.0.7:7100", "10.0.0.7:6379");
    /// let next = m.after(&MemberChange::AddAt(at.clone()), 4, &[]).unwrap();
    /// assert!(next.learners.contains(&4));
    /// assert_eq!(next.joining, Some(at));
    /// assert_eq!(m.after(&MemberChange::Promote(3), 4, &[]), Err(ReconfigureRefusal::NotALearner { id: 3 }));
    /// ```
    pub fn after(
        &self,
        change: &MemberChange,
        node_count: usize,
        book: &[MemberAddress],
    ) -> Result<NextMembers, ReconfigureRefusal> {
        let mut voters = self.voters.clone();
        let mut learners = self.learners.clone();
        let mut joining = None;
        let learner = |id: NodeId| {
            if self.learners.contains(&id) {
                Ok(())
            } else {
                Err(ReconfigureRefusal::NotALearner { id })
            }
        };
        let id_count = self.id_count(node_count);
        match change {
            &MemberChange::AddLearner(id) => {
                if id >= id_count {
                    return Err(ReconfigureRefusal::UnknownNode { id, id_count });
                }
                if self.retired.contains(&id) {
                    return Err(ReconfigureRefusal::Retired { id });
                }
                if self.is_member(id) {
                    return Err(ReconfigureRefusal::AlreadyMember { id });
                }
                learners.insert(id);
            }
            MemberChange::AddAt(address) => {
                let longest = address.peer.len().max(address.client.len());
                if longest > MEMBER_ADDRESS_BYTES_MAX {
                    return Err(ReconfigureRefusal::AddressTooLong {
                        bytes: longest,
                        bytes_max: MEMBER_ADDRESS_BYTES_MAX,
                    });
                }
                if id_count >= NODE_IDS_MAX {
                    return Err(ReconfigureRefusal::IdsExhausted {
                        ids_max: NODE_IDS_MAX,
                    });
                }
                if let Some(id) = self.address_in_use(address, node_count, book) {
                    return Err(ReconfigureRefusal::AddressInUse { id });
                }
                learners.insert(id_count);
                joining = Some(address.clone());
            }
            &MemberChange::Promote(id) => {
                learner(id)?;
                learners.remove(&id);
                voters.insert(id);
            }
            &MemberChange::Remove(id) => {
                if !self.is_member(id) {
                    return Err(ReconfigureRefusal::NotAMember { id });
                }
                voters.remove(&id);
                learners.remove(&id);
            }
            &MemberChange::Replace { remove, promote } => {
                if !self.is_voter(remove) {
                    return Err(ReconfigureRefusal::NotAVoter { id: remove });
                }
                learner(promote)?;
                voters.remove(&remove);
                learners.remove(&promote);
                voters.insert(promote);
            }
        }
        if voters.is_empty() {
            return Err(ReconfigureRefusal::LastVoter);
        }
        Ok(NextMembers {
            voters,
            learners,
            joining,
        })
    }

    /// The membership that a reconfiguration to `voters` and `learners`, executed at
    /// `slot`, begins: the next epoch, from `slot + 1`. Whoever leaves retires; the
    /// member `joining` at an address, if any, takes the next id.
    pub(crate) fn successor(
        &self,
        slot: Slot,
        voters: &BTreeSet<NodeId>,
        learners: &BTreeSet<NodeId>,
        joining: Option<&MemberAddress>,
    ) -> Membership {
        let mut retired = self.retired.clone();
        retired.extend(
            self.voters
                .union(&self.learners)
                .filter(|id| !voters.contains(id) && !learners.contains(id)),
        );
        let mut added = self.added.clone();
        added.extend(joining.cloned());
        Membership {
            epoch: self.epoch + 1,
            start: slot + 1,
            voters: voters.clone(),
            learners: learners.clone(),
            retired,
            added,
        }
    }
}

/// The members a change leads to ([`Membership::after`]): what a
/// [`crate::Proposal::Reconfigure`] entry carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextMembers {
    /// The next epoch's voters.
    pub voters: BTreeSet<NodeId>,
    /// The next epoch's learners.
    pub learners: BTreeSet<NodeId>,
    /// The address of a member added at one, which takes the next id.
    pub joining: Option<MemberAddress>,
}

impl fmt::Display for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "epoch {} from slot {}: voters {:?}, learners {:?}",
            self.epoch, self.start, self.voters, self.learners
        )
    }
}

/// A membership change an operator asks the leader for ([`crate::Input::Reconfigure`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MemberChange {
    /// Make a node of the address book that is no member (a spare) a learner: it
    /// receives the log and snapshots.
    AddLearner(NodeId),
    /// Add a new machine, reached at this address, as a learner under the next id
    /// ([`Membership::id_count`]): the address enters the log, so every member learns
    /// it from there.
    AddAt(MemberAddress),
    /// Make a learner a voter.
    Promote(NodeId),
    /// Remove a voter or learner (the leader included: it steps down once the change
    /// is executed). Its id is never a member again.
    Remove(NodeId),
    /// Promote learner `promote` and remove voter `remove` in one change: replacing a
    /// machine without a moment at an even number of voters.
    Replace {
        /// The voter that leaves.
        remove: NodeId,
        /// The learner that takes its place.
        promote: NodeId,
    },
}

/// What became of a [`crate::Input::Reconfigure`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ReconfigureOutcome {
    /// The leader proposed the change in `slot`; it takes effect, as `epoch`, when that
    /// slot is executed (or never, if the leader is deposed first and its successor
    /// does not find it: ask again).
    Proposed {
        /// The slot of the reconfiguration entry.
        slot: Slot,
        /// The epoch it will begin.
        epoch: u32,
        /// The membership of that epoch, if this change begins it: a node that applies
        /// another (a deposed leader's successor's change, chosen where this one was
        /// not) can tell that this one was not made.
        members: Membership,
    },
    /// Nothing changed, for this reason.
    Refused(ReconfigureRefusal),
}

/// Why a membership change was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ReconfigureRefusal {
    /// This node does not lead; `leader` is the one it knows of, if any.
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// A change is in the pipeline already (at `slot`): changes are made one at a time.
    ChangeInProgress {
        /// The slot of the change in progress.
        slot: Slot,
    },
    /// `id` is no node of this cluster (ids are below `id_count`).
    UnknownNode {
        /// The id named.
        id: NodeId,
        /// How many ids the cluster has given out ([`Membership::id_count`]).
        id_count: usize,
    },
    /// An address is longer than [`MEMBER_ADDRESS_BYTES_MAX`].
    AddressTooLong {
        /// The longer of the two addresses' lengths.
        bytes: usize,
        /// The most allowed.
        bytes_max: usize,
    },
    /// Node `id`, not retired, already has the peer or the client address of the
    /// machine to add ([`Membership::address_in_use`]).
    AddressInUse {
        /// The node that has it.
        id: NodeId,
    },
    /// The cluster has given out every id it may ([`NODE_IDS_MAX`]).
    IdsExhausted {
        /// The most ids a cluster gives out.
        ids_max: usize,
    },
    /// `id` is a member already.
    AlreadyMember {
        /// The id named.
        id: NodeId,
    },
    /// `id` was removed before; ids are never reused.
    Retired {
        /// The id named.
        id: NodeId,
    },
    /// `id` is no learner: only a learner, which holds the log, becomes a voter.
    NotALearner {
        /// The id named.
        id: NodeId,
    },
    /// `id` is no voter.
    NotAVoter {
        /// The id named.
        id: NodeId,
    },
    /// `id` is no member.
    NotAMember {
        /// The id named.
        id: NodeId,
    },
    /// The change would leave no voter.
    LastVoter,
    /// Learner `id` trails the leader's commit index by more than the cluster allows a
    /// new voter to ([`crate::ClusterConfig::promote_lag_max`]): ask again once it has
    /// caught up.
    Lagging {
        /// The learner named.
        id: NodeId,
        /// The commit index it last reported to this leader, if it reported one.
        reported: Option<Slot>,
        /// The leader's commit index.
        commit: Slot,
        /// The lag allowed.
        lag_max: Slot,
    },
}

impl fmt::Display for ReconfigureRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReconfigureRefusal::NotLeader {
                leader: Some(leader),
            } => {
                write!(f, "not the leader: node {leader} leads")
            }
            ReconfigureRefusal::NotLeader { leader: None } => {
                write!(f, "not the leader, and no leader is known")
            }
            ReconfigureRefusal::ChangeInProgress { slot } => write!(
                f,
                "a membership change is in progress (slot {slot}): one change at a time"
            ),
            ReconfigureRefusal::UnknownNode { id, id_count } => {
                write!(f, "node {id} does not exist (ids are below {id_count})")
            }
            ReconfigureRefusal::AddressTooLong { bytes, bytes_max } => write!(
                f,
                "an address of {bytes} bytes is longer than the {bytes_max} allowed"
            ),
            ReconfigureRefusal::AddressInUse { id } => write!(
                f,
                "node {id} already has one of these addresses; remove that node first, or add the machine at other addresses"
            ),
            ReconfigureRefusal::IdsExhausted { ids_max } => write!(
                f,
                "the cluster has given out all of its {ids_max} node ids (ids are never reused)"
            ),
            ReconfigureRefusal::AlreadyMember { id } => write!(f, "node {id} is a member already"),
            ReconfigureRefusal::Retired { id } => write!(
                f,
                "node {id} was removed and ids are never reused: add the machine under a new id"
            ),
            ReconfigureRefusal::NotALearner { id } => write!(
                f,
                "node {id} is no learner: add it as a learner first, so that it holds the log"
            ),
            ReconfigureRefusal::NotAVoter { id } => write!(f, "node {id} is no voter"),
            ReconfigureRefusal::NotAMember { id } => write!(f, "node {id} is no member"),
            ReconfigureRefusal::LastVoter => write!(f, "the change would leave no voter"),
            ReconfigureRefusal::Lagging {
                id,
                reported: Some(reported),
                commit,
                lag_max,
            } => write!(
                f,
                "learner {id} lags: it has committed through slot {reported}, the leader through {commit}, more than {lag_max} behind; ask again once it has caught up"
            ),
            ReconfigureRefusal::Lagging {
                id, reported: None, ..
            } => write!(
                f,
                "learner {id} has not reported its progress to this leader yet; ask again once it has caught up"
            ),
        }
    }
}
