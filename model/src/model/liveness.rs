//! The liveness properties: what must eventually happen once the faults stop, under
//! the fairness of [`super::fairness`]. Each is a named state predicate with a temporal
//! operator; the checker (`ballot-check`) decides them over the whole state graph.

use super::checked::{BallotModel, BallotState};
use crate::ballot::NodeId;
use crate::replica::Role;
use stateright::{Expectation, Model};

/// The temporal operator of a liveness property: a fair run eventually... (`F`,
/// "eventually") or eventually forever (`F G`). One vocabulary, shared with the generic
/// checker (`ballot_checker::liveness`), which re-exports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Temporal {
    /// `F p`: the predicate holds at some point of every fair run.
    Eventually,
    /// `F G p`: the predicate holds from some point on, forever, in every fair run.
    EventuallyAlways,
}

impl Temporal {
    /// Its notation in reports.
    pub fn notation(self) -> &'static str {
        match self {
            Temporal::Eventually => "eventually",
            Temporal::EventuallyAlways => "eventually always",
        }
    }
}

/// One liveness property of a stateright model `M` (this model's are [`all`]).
pub struct LivenessProperty<M: Model> {
    /// Its name in reports.
    pub name: &'static str,
    /// How the predicate must hold.
    pub temporal: Temporal,
    /// The state predicate.
    pub condition: fn(&M, &M::State) -> bool,
}

impl<M: Model> LivenessProperty<M> {
    /// The model's own `eventually` properties, as `F p` (which the generic checker
    /// decides soundly, unlike stateright's checkers).
    pub fn from_model(model: &M) -> Vec<Self> {
        model
            .properties()
            .into_iter()
            .filter(|p| p.expectation == Expectation::Eventually)
            .map(|p| LivenessProperty {
                name: p.name,
                temporal: Temporal::Eventually,
                condition: p.condition,
            })
            .collect()
    }
}

/// "(1) some node becomes leader and stays leader."
pub const LEADER_STAYS: &str = "a leader is elected and stays";
/// "(2) every client request is eventually answered."
pub const REQUESTS_ANSWERED: &str = "every request is answered";
/// "(3) all live replicas eventually apply the same prefix."
pub const REPLICAS_CONVERGE: &str = "live replicas converge";

/// "(4) a node the cluster removed stops campaigning": it learns of its removal from
/// its own log or, if it was cut off when the change was executed, from a member's
/// answer to its campaign (`Message::Removed`).
pub const REMOVED_STOP: &str = "removed nodes stop campaigning";

/// Every liveness property, in report order.
pub fn all() -> Vec<LivenessProperty<BallotModel>> {
    vec![
        LivenessProperty {
            name: LEADER_STAYS,
            temporal: Temporal::EventuallyAlways,
            condition: stable_leader_exists,
        },
        LivenessProperty {
            name: REQUESTS_ANSWERED,
            temporal: Temporal::Eventually,
            condition: |model, state| state.all_requests_answered(model),
        },
        LivenessProperty {
            name: REPLICAS_CONVERGE,
            temporal: Temporal::EventuallyAlways,
            condition: replicas_converged,
        },
        LivenessProperty {
            name: REMOVED_STOP,
            temporal: Temporal::EventuallyAlways,
            condition: removed_nodes_stopped,
        },
    ]
}

/// The one live leader a majority follows, if there is one: exactly one live server
/// leads, and it together with the live voters that back it (promised its ballot in
/// phase 1, or heard from it since) make a majority of the voters. A leadership change passes through states where this is `None` (the old
/// leader's followers must promise the new ballot before it can lead), so "from some
/// point on, always `Some`" means one leader for good.
pub fn stable_leader(_model: &BallotModel, state: &BallotState) -> Option<NodeId> {
    let mut leaders = state.live_servers().filter_map(|(id, server)| {
        server
            .replica
            .leader_ballot()
            .map(|b| (id, b, server.replica.membership()))
    });
    let (leader, ballot, members) = leaders.next()?;
    if leaders.next().is_some() {
        return None;
    }
    // The leader's epoch decides who votes: a follower still in an older epoch backs
    // no ballot of this one.
    let followers = state
        .live_servers()
        .filter(|(id, server)| {
            matches!(server.replica.role(), Role::Follower { .. })
                && members.is_voter(*id)
                && server.replica.backing() == Some(leader)
                && server.replica.durable().promised == ballot
        })
        .count();
    (1 + followers >= members.quorum()).then_some(leader)
}

/// True if a leader exists that a live majority follows (see [`stable_leader`]).
pub fn stable_leader_exists(model: &BallotModel, state: &BallotState) -> bool {
    stable_leader(model, state).is_some()
}

/// True if there is a stable leader, it has applied everything it committed, and every
/// live server it can reach has committed and applied exactly as far. Servers cut off
/// from the leader are exempt: Multi-Paxos does not relay, so they cannot learn.
pub fn replicas_converged(model: &BallotModel, state: &BallotState) -> bool {
    let Some(leader) = stable_leader(model, state) else {
        return false;
    };
    let Some((_, leader_state)) = state.servers().find(|(id, _)| *id == leader) else {
        return false;
    };
    let commit = leader_state.replica.commit_index();
    // The leader's members: a spare never added, or a member removed, hears nothing
    // more from it.
    let members = leader_state.replica.membership();
    state
        .live_servers()
        .filter(|(id, _)| members.is_member(*id) || *id == leader)
        .filter(|(id, _)| model.config.connectivity.connected(*id, leader))
        .all(|(_, server)| {
            server.replica.commit_index() == commit && server.replica.applied_index() == commit
        })
}

/// True if every live server that the newest membership any server applied retired
/// knows it, and so never campaigns again: its own log says so, or a member told it.
pub fn removed_nodes_stopped(_model: &BallotModel, state: &BallotState) -> bool {
    let retired = &state.latest_membership().retired;
    state
        .live_servers()
        .filter(|(id, _)| retired.contains(id))
        .all(|(id, server)| {
            server.replica.membership().retired.contains(&id)
                || server.replica.told_removed().is_some()
        })
}
