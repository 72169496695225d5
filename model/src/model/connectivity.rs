//! Who can talk to whom once the faults stop, and the partial-connectivity scenarios
//! (from the Omni-Paxos paper, EuroSys'23) in which Raft-style leader election stalls
//! or flaps.
//!
//! A cut link is not cut from the start: before the faults stop, a message on it may
//! still arrive (the liveness checker counts that delivery as a fault, like a crash).
//! So every run may begin with a healthy network — a leader elected through links that
//! are cut later — and then settle into the given graph for good. That is how the
//! scenarios arise: "the leader has lost its links to everyone but one node".

use crate::ballot::{quorum, NodeId};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// The links between servers that hold after the faults stop. Clients reach every
/// server (they stand for many clients, some on each side of any cut).
///
/// ```
/// use ballot_model::model::Connectivity;
/// let line = Connectivity::full().cut(0, 2);
/// assert!(line.connected(0, 1) && line.connected(2, 1));
/// assert!(!line.connected(2, 0));
/// let voters = [0, 1, 2].into();
/// assert!(line.quorum_connected(1, &voters, |_| true));
/// assert!(line.quorum_connected(0, &voters, |_| true), "0 and 1 are a majority of 3");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Connectivity {
    /// Cut server pairs, smaller id first.
    cut: BTreeSet<(NodeId, NodeId)>,
}

impl Connectivity {
    /// Every server reaches every other.
    pub fn full() -> Self {
        Connectivity::default()
    }

    /// This graph with the link between servers `a` and `b` cut (both directions).
    pub fn cut(mut self, a: NodeId, b: NodeId) -> Self {
        if a != b {
            self.cut.insert((a.min(b), a.max(b)));
        }
        self
    }

    /// Keeps only the listed server links among `servers` servers; cuts the rest.
    ///
    /// ```
    /// use ballot_model::model::Connectivity;
    /// let star = Connectivity::only(3, &[(0, 1), (1, 2)]);
    /// assert_eq!(star, Connectivity::full().cut(0, 2));
    /// ```
    pub fn only(servers: usize, links: &[(NodeId, NodeId)]) -> Self {
        let mut graph = Connectivity::full();
        for a in 0..servers {
            for b in a + 1..servers {
                if !links.contains(&(a, b)) && !links.contains(&(b, a)) {
                    graph = graph.cut(a, b);
                }
            }
        }
        graph
    }

    /// True if actors `a` and `b` (stateright indices: servers first, then clients)
    /// can exchange messages once the faults stop.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        !self.cut.contains(&(a.min(b), a.max(b)))
    }

    /// True if every link is up.
    pub fn is_full(&self) -> bool {
        self.cut.is_empty()
    }

    /// True if server `node`, counting itself, reaches a majority of `voters` that
    /// `live` says are up: the condition under which it can win an election and commit.
    pub fn quorum_connected(
        &self,
        node: NodeId,
        voters: &BTreeSet<NodeId>,
        live: impl Fn(NodeId) -> bool,
    ) -> bool {
        let reachable = voters
            .iter()
            .filter(|peer| live(**peer) && self.connected(node, **peer))
            .count();
        reachable >= quorum(voters.len())
    }
}

impl fmt::Display for Connectivity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cut.is_empty() {
            return f.write_str("full");
        }
        let cuts: Vec<String> = self.cut.iter().map(|(a, b)| format!("{a}-{b}")).collect();
        write!(f, "cut {}", cuts.join(","))
    }
}

/// The partial-connectivity scenarios, each a named model configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// Five servers; server 2 reaches everyone, and nobody else reaches anyone but
    /// server 2. If server 0 led before the cut, it now hears from one node only: it
    /// has lost its quorum, and server 2 is the only node that can lead.
    QuorumLoss,
    /// Five servers; server 0 is cut off entirely, server 2 reaches servers 1, 3 and 4,
    /// which reach only server 2. Server 2 is the only quorum-connected node, and it
    /// may have missed entries the old leader (server 0) replicated elsewhere: an
    /// outdated log, which in Raft forbids its election.
    Constrained,
    /// Three servers in a line, 0 – 1 – 2: the ends cannot hear each other, so each
    /// end suspects the other when it leads.
    Chained,
    /// Three voters, every link up, and a learner (server 3) that only the leader,
    /// server 0, reaches: a new member behind a partial partition, which missed the
    /// write and must catch up from the leader alone.
    LearnerBehindLeader,
}

impl Scenario {
    /// Every scenario, with its CLI name.
    pub const ALL: [(Scenario, &'static str); 4] = [
        (Scenario::QuorumLoss, "quorum-loss"),
        (Scenario::Constrained, "constrained"),
        (Scenario::Chained, "chained"),
        (Scenario::LearnerBehindLeader, "learner-behind-leader"),
    ];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        super::config::name_of(&Scenario::ALL, self)
    }

    /// The election budget the scenario's preset uses: the smallest under which no
    /// run of the scenario is cut short by the budget (found by raising it until the
    /// liveness check reports no state cut by a bound), so the verdict is "holds" or
    /// "violated", never "unknown". In the 5-node scenarios the nodes that cannot
    /// reach a majority campaign and outbid each other through the hub before the hub
    /// runs; that costs more ballots than there are nodes.
    ///
    /// ```
    /// use ballot_model::model::Scenario;
    /// assert!(Scenario::QuorumLoss.elections() > Scenario::QuorumLoss.servers());
    /// ```
    pub fn elections(self) -> usize {
        match self {
            Scenario::QuorumLoss => 9,
            Scenario::Constrained => 8,
            Scenario::Chained => 3,
            // The opening's election; the leader keeps its majority.
            Scenario::LearnerBehindLeader => 1,
        }
    }

    /// Number of servers, learners included.
    pub fn servers(self) -> usize {
        match self {
            Scenario::QuorumLoss | Scenario::Constrained => 5,
            Scenario::Chained => 3,
            Scenario::LearnerBehindLeader => 4,
        }
    }

    /// True if the network may lose messages: in `LearnerBehindLeader`, so that the
    /// learner must catch up by the leader's re-sends (an accept it never got, a
    /// commit it learns late), not by the one accept the opening left in flight.
    pub fn lossy(self) -> bool {
        self == Scenario::LearnerBehindLeader
    }

    /// How many of the servers, the highest ids, are learners.
    pub fn learners(self) -> usize {
        match self {
            Scenario::LearnerBehindLeader => 1,
            _ => 0,
        }
    }

    /// The links that hold once the faults stop.
    ///
    /// ```
    /// use ballot_model::model::Scenario;
    /// let g = Scenario::QuorumLoss.connectivity();
    /// let live = |_| true;
    /// let voters = (0..5).collect();
    /// let qc: Vec<usize> = (0..5).filter(|n| g.quorum_connected(*n, &voters, live)).collect();
    /// assert_eq!(qc, vec![2], "only the hub can lead");
    /// ```
    pub fn connectivity(self) -> Connectivity {
        match self {
            Scenario::QuorumLoss => Connectivity::only(5, &[(2, 0), (2, 1), (2, 3), (2, 4)]),
            Scenario::Constrained => Connectivity::only(5, &[(2, 1), (2, 3), (2, 4)]),
            Scenario::Chained => Connectivity::only(3, &[(0, 1), (1, 2)]),
            Scenario::LearnerBehindLeader => {
                Connectivity::only(4, &[(0, 1), (0, 2), (1, 2), (0, 3)])
            }
        }
    }

    /// How the scenario's runs begin: with server 0 leading, and for `Constrained`
    /// with server 2 missing the write it replicated (for `LearnerBehindLeader`, the
    /// learner).
    pub fn opening(self) -> Opening {
        match self {
            Scenario::QuorumLoss | Scenario::Chained => Opening::Elected {
                leader: 0,
                miss: None,
            },
            Scenario::Constrained => Opening::Elected {
                leader: 0,
                miss: Some(2),
            },
            Scenario::LearnerBehindLeader => Opening::Elected {
                leader: 0,
                miss: Some(3),
            },
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        super::config::parse_named(&Scenario::ALL, s, "scenario")
    }
}

/// How a run begins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Opening {
    /// From the initial state, over links that may still work for a while (deliveries
    /// over cut links are faults).
    #[default]
    Cold,
    /// Scripted, over every link: `leader`'s election timer fires and every server
    /// promises; then the first client request (if any) reaches `leader`, which
    /// replicates it to every server but `miss`. From then on the cut links are cut for
    /// good: whatever is on them is lost. This is the scenario's "before", explored once
    /// instead of in every interleaving.
    Elected {
        /// The leader before the cut.
        leader: NodeId,
        /// A server that misses the replicated write (an outdated log).
        miss: Option<NodeId>,
    },
}
