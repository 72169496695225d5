//! Membership change: the leader's side of an operator's request.
//!
//! The leader checks the change against its epoch's membership and proposes it as a
//! [`Proposal::Reconfigure`] entry in its next slot, like a client batch; from then on
//! it proposes nothing above that slot (`Leadership::stop_slot`). Executing the entry
//! begins the next epoch on every replica at the same slot (`Replica::apply_committed`,
//! `Replica::enter_epoch`); nothing else here is needed for safety (SPEC §7).

use crate::ballot::{NodeId, Slot};
use crate::effect::{Effect, Timer};
use crate::membership::{MemberChange, Membership, ReconfigureOutcome, ReconfigureRefusal};
use crate::message::Proposal;
use crate::replica::{Replica, Role};
use crate::state_machine::StateMachine;

impl<S: StateMachine> Replica<S> {
    /// A member of epoch `epoch` says that epoch's membership retired us: we stop
    /// leading, campaigning and timing out, and say so. Nothing it could be wrong about
    /// costs safety (a node that stops campaigning only does less), and it cannot be
    /// wrong: ids are never given out twice, so a retired id stays retired.
    pub(crate) fn on_removed(&mut self, from: NodeId, epoch: u32, effects: &mut Vec<Effect<S>>) {
        if epoch <= self.members.epoch || self.told_removed.is_some() {
            // Our own log says what that epoch holds (it is ours or older), or we know.
            return;
        }
        self.told_removed = Some(epoch);
        if !matches!(self.role, Role::Follower { .. }) {
            self.step_down(None, effects);
        }
        effects.push(Effect::CancelTimer(Timer::Election));
        effects.push(Effect::Removed { epoch, by: from });
    }

    /// The operator asks this node to change the membership.
    pub(crate) fn on_reconfigure_request(
        &mut self,
        change: MemberChange,
        effects: &mut Vec<Effect<S>>,
    ) {
        match self.propose_reconfiguration(change, effects) {
            Ok((slot, members)) => {
                effects.push(Effect::Reconfiguration(ReconfigureOutcome::Proposed {
                    slot,
                    epoch: members.epoch,
                    members,
                }))
            }
            Err(refusal) => effects.push(Effect::Reconfiguration(ReconfigureOutcome::Refused(
                refusal,
            ))),
        }
    }

    fn propose_reconfiguration(
        &mut self,
        change: MemberChange,
        effects: &mut Vec<Effect<S>>,
    ) -> Result<(Slot, Membership), ReconfigureRefusal> {
        let leader = self.known_leader();
        let Role::Leader(leadership) = &mut self.role else {
            return Err(ReconfigureRefusal::NotLeader { leader });
        };
        if let Some(slot) = leadership.stop_slot() {
            return Err(ReconfigureRefusal::ChangeInProgress { slot });
        }
        // A full pipeline does not hold a change back: under a steady load the
        // pipeline refills at every commit, so a change waiting for room would wait
        // for the load to stop. It takes one slot past the pipeline, the last this
        // leader proposes in its epoch, so the pipeline holds at most
        // `pipeline_depth + 1` slots.
        let next = self
            .members
            .after(&change, self.config.node_count, &self.config.addresses)?;
        let lag_max = self.config.promote_lag_max;
        let checks_lag = lag_max != Slot::MAX;
        if let (true, MemberChange::Promote(id) | MemberChange::Replace { promote: id, .. }) =
            (checks_lag, change)
        {
            let commit = self.durable.commit;
            let reported = leadership.learner_commits.get(&id).copied();
            if reported.is_none_or(|reported| commit.saturating_sub(reported) > lag_max) {
                return Err(ReconfigureRefusal::Lagging {
                    id,
                    reported,
                    commit,
                    lag_max,
                });
            }
        }
        let proposal = Proposal::Reconfigure {
            from_epoch: self.members.epoch,
            voters: next.voters.clone(),
            learners: next.learners.clone(),
            joining: next.joining.clone(),
        };
        let slot = self.propose_next(proposal, effects);
        let members =
            self.members
                .successor(slot, &next.voters, &next.learners, next.joining.as_ref());
        Ok((slot, members))
    }
}
