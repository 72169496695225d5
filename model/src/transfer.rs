//! Leadership transfer: a leader hands over to a peer without waiting for an election
//! timeout (rolling restarts, draining a machine).
//!
//! The leader steps down, answers the requests it queued but never proposed with a
//! redirect to the successor, and sends [`Message::TransferLeadership`] to every peer.
//! The successor campaigns at once; every other peer backs the successor, so that its
//! leader stickiness (see `on_prepare`) promises the successor's ballot instead of
//! refusing it out of loyalty to the leader that left. Nothing here is needed for
//! safety: any node may start a ballot at any time, and phase 1 recovers every value
//! the old leader may have had chosen. It only spares the cluster the election timeout
//! in which no one leads.

use crate::ballot::{Ballot, NodeId};
use crate::effect::{Effect, TransferOutcome, TransferRefusal};
use crate::message::Message;
use crate::replica::{Replica, Role};
use crate::state_machine::StateMachine;

impl<S: StateMachine> Replica<S> {
    /// The operator asks this node to hand its leadership to `to` (or to a peer of its
    /// choice: the lowest-numbered peer heard from since the last quorum check, else
    /// the lowest-numbered peer).
    pub(crate) fn on_transfer_request(&mut self, to: Option<NodeId>, effects: &mut Vec<Effect<S>>) {
        let refuse = |effects: &mut Vec<Effect<S>>, refusal| {
            effects.push(Effect::LeadershipTransfer(TransferOutcome::Refused(
                refusal,
            )));
        };
        let Role::Leader(leadership) = &mut self.role else {
            let leader = self.known_leader();
            return refuse(effects, TransferRefusal::NotLeader { leader });
        };
        // Only a voter can take over: a learner never campaigns.
        let is_peer = |node: NodeId| self.members.is_voter(node) && node != self.id;
        let successor = match to {
            Some(to) if is_peer(to) => to,
            Some(to) => return refuse(effects, TransferRefusal::NotAPeer { to }),
            None => {
                let heard = leadership.heard.iter().copied().find(|&peer| is_peer(peer));
                match heard.or_else(|| self.members.voter_peers(self.id).next()) {
                    Some(peer) => peer,
                    None => return refuse(effects, TransferRefusal::NoPeer),
                }
            }
        };
        let ballot = leadership.ballot;
        // Requests queued but never proposed are in no slot: the successor takes them
        // with no delay if their clients go there now.
        self.redirect_unproposed(Some(successor), effects);
        for peer in self.log_peers() {
            effects.push(Effect::Send {
                to: peer,
                message: Message::TransferLeadership {
                    ballot,
                    to: successor,
                },
            });
        }
        self.step_down(None, effects);
        self.back(successor);
        effects.push(Effect::LeadershipTransfer(TransferOutcome::HandedOver {
            to: successor,
        }));
    }

    /// The leader of `ballot` handed over to `to`: run for leader now if that is us,
    /// else back `to`. A transfer from a ballot below our promise is stale (someone
    /// newer leads or runs) and changes nothing.
    pub(crate) fn on_transfer(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        to: NodeId,
        effects: &mut Vec<Effect<S>>,
    ) {
        debug_assert!(from != to, "validated: a leader hands over to a peer");
        if ballot < self.durable.promised {
            return;
        }
        if to == self.id {
            if !self.is_leader() {
                self.campaign(effects);
            }
            return;
        }
        if !matches!(self.role, Role::Follower { .. }) {
            self.step_down(None, effects);
        } else {
            // Give the successor a whole timeout to win before we run ourselves.
            self.role = Role::Follower { leader: None };
            self.arm_election_timer(effects);
        }
        self.back(to);
    }

    /// Backs `node` from now on: promises its ballot, refuses others' out of loyalty
    /// (the leader it follows, or the successor a leader handed over to).
    pub(crate) fn back(&mut self, node: NodeId) {
        self.backing = Some(node);
        self.released = false;
    }
}
