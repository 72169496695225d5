//! The acceptor's side: promises (phase 1b), votes (phase 2b) and following a leader's
//! heartbeats. Every handler persists before it answers.

use crate::ballot::{Ballot, NodeId, Slot};
use crate::durable::DurableUpdate;
use crate::effect::Effect;
use crate::message::{AcceptedEntry, Message, Proposal};
use crate::mutant::mutant;
use crate::replica::{Replica, Role};
use crate::snapshot::Snapshot;
use crate::state_machine::StateMachine;

impl<S: StateMachine> Replica<S> {
    /// Phase 1b. Promise `ballot` if it is not below our promise, and report every vote
    /// at or above `from_slot`; otherwise tell the candidate what we promised.
    pub(crate) fn on_prepare(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        from_slot: Slot,
        effects: &mut Vec<Effect<S>>,
    ) {
        if ballot.epoch == self.members.epoch && !self.counted().is_voter(self.id) {
            // A learner is no acceptor: its promise would count in no quorum, and a
            // candidate asks voters only. (A ballot of a later epoch comes from a
            // candidate that executed a reconfiguration we have not: it counts us only
            // if we vote in its epoch.)
            return;
        }
        if ballot < self.durable.promised {
            effects.push(reject(from, ballot, self.durable.promised));
            return;
        }
        if ballot > self.durable.promised && self.is_loyal_to_another(from) {
            // We heard from a live leader since our election timer last fired: the
            // candidate is cut off from it, not replacing a dead one. Promising would
            // depose a leader that a majority still follows (and, if the candidate can
            // reach no majority, for nothing). Refuse silently: a refusal naming no
            // higher promise would teach the candidate nothing (`on_reject` ignores
            // it), and a retransmitted Prepare we ignore must not count as news that
            // keeps our own election timer from running. The candidate keeps its
            // ballot and asks again; if our leader really died our timer fires and
            // ends the loyalty.
            return;
        }
        if ballot > self.durable.promised && self.is_candidate_ignoring_higher() {
            return;
        }
        if ballot > self.durable.promised {
            if mutant!(self.config, PromiseNotPersisted) {
                self.durable.promised = ballot;
            } else {
                self.persist(DurableUpdate::Promise(ballot), effects);
            }
            // Whoever we followed is being replaced: stop redirecting clients to it.
            // Stepping down (re-)arms the election timer, which also gives the
            // candidate time to finish phase 1 before we run ourselves.
            self.step_down(None, effects);
            self.backing = Some(from);
        }
        // `ballot == promised` here: a new promise, or a retransmitted Prepare answered
        // again (idempotent).
        //
        // Votes at or below our compaction point are gone; they were all for chosen
        // values, whose effect our applied state holds. A candidate that does not know
        // those slots chosen must get that state: were it to see no vote for such a
        // slot, it could fill the slot with a no-op and choose a second value there.
        let snapshot = (from_slot <= self.durable.compacted
            && !mutant!(self.config, PromiseOmitsSnapshot))
        .then(|| self.snapshot());
        effects.push(Effect::Send {
            to: from,
            message: Message::Promise {
                ballot,
                accepted: self.votes_in_epoch(ballot.epoch, from_slot),
                snapshot,
            },
        });
    }

    /// Phase 2b. Vote for `proposal` in `slot` unless we promised a higher ballot; learn
    /// the leader's commit index; acknowledge.
    pub(crate) fn on_accept(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        slot: Slot,
        proposal: Proposal<S::Command>,
        commit: Slot,
        effects: &mut Vec<Effect<S>>,
    ) {
        if ballot < self.durable.promised && !mutant!(self.config, AcceptBelowPromise) {
            effects.push(reject(from, ballot, self.durable.promised));
            return;
        }
        self.follow(from, ballot, effects);
        let entry = AcceptedEntry { ballot, proposal };
        // A slot we compacted is chosen, and a leader only ever proposes the chosen
        // value for it (Paxos's guarantee), so we acknowledge without a vote to store:
        // our snapshot already answers for that slot in any later phase 1.
        if slot > self.durable.compacted && self.durable.accepted.get(&slot) != Some(&entry) {
            self.persist(DurableUpdate::Accept { slot, entry }, effects);
        }
        self.learn_commit(ballot, commit, effects);
        effects.push(Effect::Send {
            to: from,
            message: Message::Accepted {
                ballot,
                slot,
                commit: self.durable.commit,
            },
        });
    }

    /// A leader's heartbeat: follow it, learn its commit index, acknowledge the round.
    pub(crate) fn on_heartbeat(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        commit: Slot,
        read_round: u64,
        effects: &mut Vec<Effect<S>>,
    ) {
        self.on_leader_contact(from, ballot, commit, read_round, None, effects);
    }

    /// A leader's snapshot, sent because we lag behind its compaction point: answered
    /// as a heartbeat (saying whether we still lag), after installing the snapshot if
    /// it reaches past our commit index.
    pub(crate) fn on_install_snapshot(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        snapshot: Snapshot<S>,
        commit: Slot,
        effects: &mut Vec<Effect<S>>,
    ) {
        self.on_leader_contact(from, ballot, commit, 0, Some(snapshot), effects);
    }

    /// Word from the leader of `ballot` without a vote to cast: follow it (unless we
    /// promised higher), install its snapshot if one came, learn its commit index and
    /// acknowledge.
    fn on_leader_contact(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        commit: Slot,
        read_round: u64,
        snapshot: Option<Snapshot<S>>,
        effects: &mut Vec<Effect<S>>,
    ) {
        if ballot < self.durable.promised {
            effects.push(reject(from, ballot, self.durable.promised));
            return;
        }
        self.follow(from, ballot, effects);
        if let Some(snapshot) = snapshot {
            self.install_snapshot(snapshot, effects);
        }
        self.learn_commit(ballot, commit, effects);
        effects.push(Effect::Send {
            to: from,
            message: Message::HeartbeatAck {
                ballot,
                commit: self.durable.commit,
                read_round,
                lagging: self.durable.commit < commit,
            },
        });
    }

    /// Our votes at or above `from_slot` cast in `epoch`, for a promise to a candidate
    /// of that epoch. Votes of an earlier epoch there are void: that epoch ended below
    /// `from_slot` (the candidate executed its end, so knows every slot up to it
    /// chosen), and whatever it chose above its end is never executed.
    pub(crate) fn votes_in_epoch(
        &self,
        epoch: u32,
        from_slot: Slot,
    ) -> Vec<(Slot, AcceptedEntry<S::Command>)> {
        let mut votes = self.durable.accepted_from(from_slot.max(1));
        votes.retain(|(_, entry)| entry.ballot.epoch == epoch);
        votes
    }

    /// True while this follower backs a node other than `candidate` — a leader it heard
    /// from, or a candidate it promised, since its election timer last fired (leader
    /// stickiness, as in Raft's pre-vote with check-quorum, or Omni-Paxos's
    /// quorum-connected leader election).
    fn is_loyal_to_another(&self, candidate: NodeId) -> bool {
        matches!(self.role, Role::Follower { .. })
            && self.backing.is_some_and(|backed| backed != candidate)
    }

    /// The `CandidateIgnoresHigherBallot` mutant: a candidate that hears of a higher
    /// ballot neither promises it nor yields. Always false in a correct build.
    pub(crate) fn is_candidate_ignoring_higher(&self) -> bool {
        matches!(self.role, Role::Candidate(_))
            && mutant!(self.config, CandidateIgnoresHigherBallot)
    }

    /// Accepts `leader` at `ballot >= promised` as the leader: raise the promise if
    /// needed (persisted), leave any candidacy or leadership, reset the election timer.
    fn follow(&mut self, leader: NodeId, ballot: Ballot, effects: &mut Vec<Effect<S>>) {
        if ballot > self.durable.promised {
            self.persist(DurableUpdate::Promise(ballot), effects);
        }
        self.back(leader);
        match self.role {
            Role::Follower { .. } => {
                self.role = Role::Follower {
                    leader: Some(leader),
                };
                self.arm_election_timer(effects);
            }
            _ => self.step_down(Some(leader), effects),
        }
    }

    /// Learns that the leader of `ballot` has committed up to `leader_commit`.
    ///
    /// A slot is ours to commit only if we accepted it *at this ballot*: a leader
    /// proposes one value per slot per ballot, so that vote holds the chosen value. A
    /// vote from an older ballot may hold another value; we stop there and the leader's
    /// catch-up (triggered by our lower commit in the ack) sends the right one.
    fn learn_commit(&mut self, ballot: Ballot, leader_commit: Slot, effects: &mut Vec<Effect<S>>) {
        let mut commit = self.durable.commit;
        while commit < leader_commit {
            match self.durable.accepted.get(&(commit + 1)) {
                Some(entry)
                    if entry.ballot == ballot
                        || (mutant!(self.config, CommitsOlderBallotVote)
                            && entry.ballot < ballot) =>
                {
                    commit += 1
                }
                _ => break,
            }
        }
        self.commit_to(commit, effects);
    }
}

fn reject<S: StateMachine>(to: NodeId, ballot: Ballot, promised: Ballot) -> Effect<S> {
    Effect::Send {
        to,
        message: Message::Reject { ballot, promised },
    }
}
