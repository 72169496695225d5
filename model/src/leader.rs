//! The proposer's side: winning phase 1, re-proposing what it learned, proposing client
//! batches through a bounded pipeline, counting votes, serving reads by read-index, and
//! stepping down when a majority is gone.

use crate::ballot::{Ballot, NodeId, Slot};
use crate::client_table::ApplyOutcome;
use crate::durable::DurableUpdate;
use crate::effect::{Effect, Timer};
use crate::message::{
    AcceptedEntry, ClientRequest, ClientResponse, Message, Proposal, Refusal, Request,
};
use crate::mutant::mutant;
use crate::replica::{ClusterConfig, InFlight, Leadership, PendingRead, Replica, Role};
use crate::snapshot::Snapshot;
use crate::state_machine::StateMachine;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

impl<S: StateMachine> Replica<S> {
    /// Phase 1b arrives: record it (installing the acceptor's snapshot if it covers
    /// slots we do not know chosen); with a majority, lead.
    pub(crate) fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        accepted: Vec<(Slot, AcceptedEntry<S::Command>)>,
        snapshot: Option<Snapshot<S>>,
        effects: &mut Vec<Effect<S>>,
    ) {
        let Role::Candidate(candidacy) = &self.role else {
            return; // Already leading, or gave up: a late promise changes nothing.
        };
        let counts_late = mutant!(self.config, CountsLatePromise) && ballot < candidacy.ballot;
        if candidacy.ballot != ballot && !counts_late {
            return; // A promise for an earlier candidacy of ours.
        }
        if !self.members.is_voter(from) {
            // Learners do not promise; one that says it did counts for nothing, and
            // its snapshot is not installed on its word.
            return;
        }
        if let Some(snapshot) = snapshot {
            // The acceptor no longer holds its votes for these slots; they are chosen,
            // and this is their effect. Phase 1 then starts after it.
            self.install_snapshot(snapshot, effects);
        }
        let Role::Candidate(candidacy) = &mut self.role else {
            return;
        };
        candidacy.promises.insert(from, accepted);
        self.try_become_leader(effects);
    }

    /// With promises from a majority, become leader: for every slot from the candidacy's
    /// start, re-propose the value voted at the highest ballot (Paxos's rule), fill holes
    /// with no-ops, then open the pipeline to new requests.
    pub(crate) fn try_become_leader(&mut self, effects: &mut Vec<Effect<S>>) {
        let Role::Candidate(candidacy) = &self.role else {
            return;
        };
        if self.votes_among(candidacy.promises.keys()) < self.quorum() {
            return;
        }
        let ballot = candidacy.ballot;
        // A snapshot installed during phase 1 moved the commit index: slots up to it
        // are known chosen and need no recovery.
        let from_slot = candidacy.from_slot.max(self.durable.commit + 1);
        // Highest-ballot vote per slot across the quorum's reports.
        let mut recovered: BTreeMap<Slot, AcceptedEntry<S::Command>> = BTreeMap::new();
        if !mutant!(self.config, IgnorePhase1Values) {
            let lowest_wins = mutant!(self.config, RecoversLowestBallot);
            for (slot, entry) in candidacy.promises.values().flatten() {
                if *slot < from_slot {
                    continue;
                }
                match recovered.get(slot) {
                    Some(best) if (best.ballot >= entry.ballot) != lowest_wins => {}
                    _ => {
                        recovered.insert(*slot, entry.clone());
                    }
                }
            }
        }
        let last_recovered = recovered
            .keys()
            .next_back()
            .copied()
            .unwrap_or(from_slot - 1);
        let mut leadership = Leadership {
            ballot,
            next_slot: last_recovered + 1,
            in_flight: BTreeMap::new(),
            queue: VecDeque::new(),
            heard: BTreeSet::new(),
            read_round: 0,
            read_acks: BTreeMap::new(),
            reads: Vec::new(),
            snapshot_sent: BTreeSet::new(),
            learner_commits: BTreeMap::new(),
        };
        let mut proposals = Vec::new();
        for slot in from_slot..=last_recovered {
            let proposal = recovered
                .remove(&slot)
                .map(|entry| entry.proposal)
                .unwrap_or(Proposal::Noop);
            proposals.push((slot, proposal));
        }
        if mutant!(self.config, IgnoreRecoveredSlots) {
            // Leaves `from_slot..next_slot` unproposed (and untracked, so never
            // retransmitted): those slots can never commit, nor anything after them.
            proposals.clear();
        }
        for (slot, proposal) in &proposals {
            leadership.in_flight.insert(
                *slot,
                InFlight {
                    proposal: proposal.clone(),
                    acks: BTreeSet::from([self.id]),
                },
            );
        }
        self.role = Role::Leader(leadership);
        // Only candidates become leaders: their retry timer is the one armed.
        effects.push(Effect::CancelTimer(Timer::CandidacyRetry));
        effects.push(Effect::SetTimer(Timer::Heartbeat));
        effects.push(Effect::SetTimer(Timer::CheckQuorum));
        for (slot, proposal) in proposals {
            self.propose_in_slot(ballot, slot, proposal, effects);
        }
        self.try_advance_commit(effects);
    }

    /// Self-accepts `proposal` in `slot` (persisted) and asks every peer to accept it.
    pub(crate) fn propose_in_slot(
        &mut self,
        ballot: Ballot,
        slot: Slot,
        proposal: Proposal<S::Command>,
        effects: &mut Vec<Effect<S>>,
    ) {
        let entry = AcceptedEntry {
            ballot,
            proposal: proposal.clone(),
        };
        self.persist(DurableUpdate::Accept { slot, entry }, effects);
        let commit = self.durable.commit;
        for peer in self.log_peers() {
            let message = Message::Accept {
                ballot,
                slot,
                proposal: proposal.clone(),
                commit,
            };
            // The accept vouches for the leader's own vote, just persisted: it must
            // wait for that vote's sync. Sent ahead, a crash can lose the vote after a
            // follower's acknowledgement completed a majority with it.
            if mutant!(self.config, AcceptSentAhead) {
                effects.push(Effect::SendAhead { to: peer, message });
            } else {
                effects.push(Effect::Send { to: peer, message });
            }
        }
    }

    /// Fills the pipeline from the queue: each free slot takes a batch of up to
    /// `max_batch` queued requests and `batch_bytes_max` bytes.
    fn propose_queued(&mut self, effects: &mut Vec<Effect<S>>) {
        loop {
            let Role::Leader(leadership) = &mut self.role else {
                return;
            };
            if leadership.queue.is_empty()
                || leadership.in_flight.len() >= self.config.pipeline_depth
            {
                return;
            }
            if leadership.stop_slot().is_some() && !mutant!(self.config, ProposesPastStop) {
                // Nothing above a reconfiguration of our epoch: slots after it belong
                // to the next epoch, whose voters will choose them. The queue waits
                // for the next epoch's leader (or its clients retry there).
                return;
            }
            let take = batch_len::<S>(&leadership.queue, &self.config);
            debug_assert!(take >= 1, "a queued request always fits an empty batch");
            let batch: Vec<Request<S::Command>> = leadership.queue.drain(..take).collect();
            self.propose_next(Proposal::Batch(batch), effects);
        }
    }

    /// Proposes `proposal` in the leader's next slot: tracked in flight with the
    /// leader's own vote, persisted, sent, and committed at once if that vote is a
    /// majority (a cluster of one). Returns the slot.
    pub(crate) fn propose_next(
        &mut self,
        proposal: Proposal<S::Command>,
        effects: &mut Vec<Effect<S>>,
    ) -> Slot {
        let Role::Leader(leadership) = &mut self.role else {
            unreachable!("only a leader proposes");
        };
        let slot = leadership.next_slot;
        leadership.next_slot += 1;
        leadership.in_flight.insert(
            slot,
            InFlight {
                proposal: proposal.clone(),
                acks: BTreeSet::from([self.id]),
            },
        );
        let ballot = leadership.ballot;
        self.propose_in_slot(ballot, slot, proposal, effects);
        self.try_advance_commit(effects);
        slot
    }

    /// Phase 2b arrives: count the vote; commit the longest chosen prefix.
    pub(crate) fn on_accepted(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        slot: Slot,
        commit: Slot,
        effects: &mut Vec<Effect<S>>,
    ) {
        let Role::Leader(leadership) = &mut self.role else {
            return; // No longer leading: votes for our old ballot are moot.
        };
        if leadership.ballot != ballot {
            return;
        }
        leadership.heard.insert(from);
        if let Some(in_flight) = leadership.in_flight.get_mut(&slot) {
            in_flight.acks.insert(from);
        }
        self.note_learner_commit(from, commit);
        self.try_advance_commit(effects);
        if continues_catch_up(
            slot,
            commit,
            self.durable.commit,
            self.config.catch_up_slots,
        ) {
            self.catch_up(from, commit, effects);
        }
    }

    /// Records the commit index a learner of our epoch reports (the highest one: reports
    /// may arrive out of order), for [`ClusterConfig::promote_lag_max`]. Voters' are not
    /// kept: nothing asks how far a voter lags.
    fn note_learner_commit(&mut self, from: NodeId, commit: Slot) {
        if !self.members.learners.contains(&from) {
            return;
        }
        if let Role::Leader(leadership) = &mut self.role {
            let reported = leadership.learner_commits.entry(from).or_insert(commit);
            *reported = (*reported).max(commit);
        }
    }

    /// Commits every leading in-flight slot with enough votes, then refills the pipeline.
    pub(crate) fn try_advance_commit(&mut self, effects: &mut Vec<Effect<S>>) {
        let quorum = self.commit_quorum();
        let Role::Leader(leadership) = &self.role else {
            return;
        };
        let mut commit = self.durable.commit;
        while let Some(in_flight) = leadership.in_flight.get(&(commit + 1)) {
            // `acks` holds learners too (so that accepts are not re-sent to them);
            // only voters' count.
            if self.votes_among(&in_flight.acks) < quorum {
                break;
            }
            commit += 1;
        }
        if commit > self.durable.commit {
            if let Role::Leader(leadership) = &mut self.role {
                leadership.in_flight = leadership.in_flight.split_off(&(commit + 1));
            }
            self.commit_to(commit, effects);
            self.propose_queued(effects);
        }
    }

    /// A follower could not commit up to the commit index we announced: it lacks chosen
    /// slots at our ballot (it missed accepts, or crashed). Re-send up to one window
    /// (`catch_up_slots`) from its commit on; if we compacted the slot it needs next,
    /// send our applied state instead, at most once per quorum check (a snapshot can
    /// be large, and the follower keeps reporting that it lags while one is on its
    /// way).
    fn catch_up(&mut self, to: NodeId, follower_commit: Slot, effects: &mut Vec<Effect<S>>) {
        let commit = self.durable.commit;
        let compacted = self.durable.compacted;
        let Role::Leader(leadership) = &mut self.role else {
            return;
        };
        let ballot = leadership.ballot;
        if follower_commit >= commit {
            return; // Not behind us after all (or an absurd report).
        }
        if follower_commit < compacted {
            if leadership.snapshot_sent.insert(to) {
                let snapshot = self.snapshot();
                effects.push(Effect::Send {
                    to,
                    message: Message::InstallSnapshot {
                        ballot,
                        snapshot,
                        commit,
                    },
                });
            }
            return;
        }
        let last = commit.min(follower_commit.saturating_add(self.config.catch_up_slots as Slot));
        let mut budget = ResendBudget::new(&self.config);
        for slot in follower_commit + 1..=last {
            let Some(entry) = self.durable.accepted.get(&slot) else {
                continue;
            };
            if !budget.take::<S>(&entry.proposal) {
                break; // The rest at the next acknowledgement.
            }
            effects.push(Effect::Send {
                to,
                message: Message::Accept {
                    ballot,
                    slot,
                    proposal: entry.proposal.clone(),
                    commit,
                },
            });
        }
    }

    /// A heartbeat acknowledgement: the peer still accepts us; it may confirm reads and
    /// may reveal that it lags.
    pub(crate) fn on_heartbeat_ack(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        commit: Slot,
        read_round: u64,
        lagging: bool,
        effects: &mut Vec<Effect<S>>,
    ) {
        let Role::Leader(leadership) = &mut self.role else {
            return;
        };
        if leadership.ballot != ballot {
            return;
        }
        leadership.heard.insert(from);
        let acked = leadership.read_acks.entry(from).or_insert(0);
        *acked = (*acked).max(read_round);
        self.note_learner_commit(from, commit);
        self.serve_reads(effects);
        if lagging {
            self.catch_up(from, commit, effects);
        }
    }

    /// Someone promised a higher ballot than the one we run: yield to it.
    pub(crate) fn on_reject(
        &mut self,
        ballot: Ballot,
        promised: Ballot,
        effects: &mut Vec<Effect<S>>,
    ) {
        let current = match &self.role {
            Role::Candidate(candidacy) => candidacy.ballot,
            Role::Leader(leadership) => leadership.ballot,
            Role::Follower { .. } => return,
        };
        if ballot != current || promised <= current {
            // About an older ballot of ours, or a follower loyal to a leader we cannot
            // see (it names no higher promise): learn nothing from it, so such a Reject
            // really is inert, as `is_obsolete` says. A candidate keeps its ballot and
            // asks again on its next timeout.
            return;
        }
        if self.is_candidate_ignoring_higher() {
            return;
        }
        self.highest_seen = self.highest_seen.max(promised);
        self.step_down(None, effects);
    }

    /// A client request. Followers and candidates redirect; the leader deduplicates,
    /// then queues writes or starts a read-index round.
    pub(crate) fn on_client_request(
        &mut self,
        request: ClientRequest<S::Command, S::Query>,
        effects: &mut Vec<Effect<S>>,
    ) {
        if !self.is_leader() {
            let (client, seq) = request.id();
            effects.push(Effect::Reply {
                client,
                response: ClientResponse::Redirect {
                    seq,
                    leader: self.leader_hint(),
                },
            });
            return;
        }
        match request {
            ClientRequest::Write(request) => self.on_write(request, effects),
            ClientRequest::Read { client, seq, query } => self.on_read(client, seq, query, effects),
        }
    }

    fn on_write(&mut self, request: Request<S::Command>, effects: &mut Vec<Effect<S>>) {
        let (client, seq) = (request.client, request.seq);
        if !mutant!(self.config, NoDedup) {
            match self.table.lookup(client, seq) {
                Some(ApplyOutcome::Stale) => return, // The client has moved on.
                Some(outcome @ (ApplyOutcome::Duplicate(_) | ApplyOutcome::Expired { .. })) => {
                    // Already applied, or of an expired session: answer from the
                    // table, do not propose.
                    self.waiters.insert(client, seq);
                    self.answer_waiter(client, seq, outcome, effects);
                    return;
                }
                Some(ApplyOutcome::Applied(_)) | None => {}
            }
        }
        let Role::Leader(leadership) = &mut self.role else {
            return;
        };
        let already_proposed = leadership
            .in_flight
            .values()
            .flat_map(|in_flight| in_flight.proposal.requests())
            .chain(leadership.queue.iter())
            .any(|queued| queued.client == client && queued.seq == seq);
        if already_proposed && !mutant!(self.config, NoDedup) {
            // A retry of a request in the pipeline: we now wait for it here.
            self.waiters.insert(client, seq);
            return;
        }
        let bytes = S::command_bytes(&request.command);
        let refusal = if bytes > self.config.batch_bytes_max {
            Some(Refusal::TooLarge {
                bytes,
                max: self.config.batch_bytes_max,
            })
        } else if leadership.in_flight.len() >= self.config.pipeline_depth
            && leadership.queue.len() >= self.config.queue_requests_max
        {
            Some(Refusal::Busy)
        } else {
            None
        };
        if let Some(reason) = refusal {
            if reason == Refusal::Busy {
                self.refused_busy.0 += 1;
            }
            effects.push(Effect::Reply {
                client,
                response: ClientResponse::Refused { seq, reason },
            });
            return;
        }
        self.waiters.insert(client, seq);
        leadership.queue.push_back(request);
        self.propose_queued(effects);
    }

    fn on_read(&mut self, client: u64, seq: u64, query: S::Query, effects: &mut Vec<Effect<S>>) {
        if mutant!(self.config, StaleLeaderRead) {
            let output = self.table.machine().query(&query);
            effects.push(Effect::Reply {
                client,
                response: ClientResponse::ReadOk { seq, output },
            });
            return;
        }
        let Role::Leader(leadership) = &mut self.role else {
            return;
        };
        // A client has one request outstanding: its newer read replaces its older one.
        leadership.reads.retain(|read| read.client != client);
        if leadership.reads.len() >= self.config.reads_pending_max {
            self.refused_busy.0 += 1;
            effects.push(Effect::Reply {
                client,
                response: ClientResponse::Refused {
                    seq,
                    reason: Refusal::Busy,
                },
            });
            return;
        }
        leadership.read_round += 1;
        let round = leadership.read_round;
        let ballot = leadership.ballot;
        leadership.reads.push(PendingRead {
            client,
            seq,
            query,
            read_index: leadership.next_slot - 1,
            round,
        });
        let commit = self.durable.commit;
        for peer in self.log_peers() {
            effects.push(Effect::SendAhead {
                to: peer,
                message: Message::Heartbeat {
                    ballot,
                    commit,
                    read_round: round,
                },
            });
        }
        self.serve_reads(effects);
    }

    /// Serves every read whose round a majority confirmed and whose index is applied.
    pub(crate) fn serve_reads(&mut self, effects: &mut Vec<Effect<S>>) {
        let Role::Leader(leadership) = &self.role else {
            return;
        };
        if leadership.reads.is_empty() {
            return;
        }
        // The latest round a majority (this leader and `quorum - 1` voters) confirmed:
        // the `quorum - 1`-th highest round the counted voters acknowledged.
        let mut rounds: Vec<u64> = leadership
            .read_acks
            .iter()
            .filter(|(peer, _)| self.votes_among([*peer]) == 1)
            .map(|(_, round)| *round)
            .collect();
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        let confirmed = match self.quorum() - 1 {
            0 => u64::MAX,
            others => rounds.get(others - 1).copied().unwrap_or(0),
        };
        let applied = self.applied;
        let Role::Leader(leadership) = &mut self.role else {
            return;
        };
        let machine = self.table.machine();
        leadership.reads.retain(|read| {
            if read.round > confirmed || applied < read.read_index {
                return true;
            }
            effects.push(Effect::Reply {
                client: read.client,
                response: ClientResponse::ReadOk {
                    seq: read.seq,
                    output: machine.query(&read.query),
                },
            });
            false
        });
    }

    /// Leader tick: heartbeat everyone and retransmit accepts not yet acknowledged,
    /// oldest first, within a [`ResendBudget`] per peer.
    pub(crate) fn on_heartbeat_timeout(&mut self, effects: &mut Vec<Effect<S>>) {
        let Role::Leader(leadership) = &self.role else {
            return;
        };
        let ballot = leadership.ballot;
        let commit = self.durable.commit;
        for peer in self.log_peers() {
            effects.push(Effect::SendAhead {
                to: peer,
                message: Message::Heartbeat {
                    ballot,
                    commit,
                    read_round: leadership.read_round,
                },
            });
            let mut budget = ResendBudget::new(&self.config);
            for (slot, in_flight) in &leadership.in_flight {
                if !in_flight.acks.contains(&peer) {
                    if !budget.take::<S>(&in_flight.proposal) {
                        break; // The rest at the next tick, oldest first.
                    }
                    effects.push(Effect::Send {
                        to: peer,
                        message: Message::Accept {
                            ballot,
                            slot: *slot,
                            proposal: in_flight.proposal.clone(),
                            commit,
                        },
                    });
                }
            }
        }
        effects.push(Effect::SetTimer(Timer::Heartbeat));
    }

    /// Leader check: without word from a majority since the last check, we may be on
    /// the minority side of a partition; stop serving rather than serve stale data.
    pub(crate) fn on_check_quorum_timeout(&mut self, effects: &mut Vec<Effect<S>>) {
        let quorum = self.quorum();
        let Role::Leader(leadership) = &self.role else {
            return;
        };
        let heard = self.votes_among(&leadership.heard);
        let Role::Leader(leadership) = &mut self.role else {
            return;
        };
        if heard + 1 >= quorum {
            leadership.heard.clear();
            leadership.snapshot_sent.clear();
            effects.push(Effect::SetTimer(Timer::CheckQuorum));
            return;
        }
        self.step_down(None, effects);
    }
}

/// Whether an acceptor's `Accepted` for `slot`, reporting its commit index
/// `follower_commit`, asks the leader (at commit `leader_commit`) for the next window
/// of a catch-up: the acceptor holds every slot through `slot` (a re-sent, already
/// chosen one), still lags, and `slot` is the last of an aligned window of
/// `catch_up_slots` slots.
///
/// Why: catch-up paced by heartbeats alone moves one window per heartbeat interval,
/// slower than a leader under load commits, so a learner added under load would never
/// catch up by the log. Paced by acknowledgements, it moves one window per round trip.
/// Only the window's last slot continues it (every run of `catch_up_slots` slots holds
/// exactly one aligned slot), so a chain of windows sends each slot once; a heartbeat's
/// catch-up, which starts anywhere, at most adds a window beside it. An `Accepted` for
/// a slot still in flight never qualifies: the acceptor cannot have learned it chosen.
fn continues_catch_up(
    slot: Slot,
    follower_commit: Slot,
    leader_commit: Slot,
    catch_up_slots: usize,
) -> bool {
    let window = catch_up_slots.max(1) as Slot;
    slot.is_multiple_of(window) && follower_commit >= slot && follower_commit < leader_commit
}

/// How many requests from the front of `queue` the next slot takes: at most
/// `max_batch`, and no more than fit `batch_bytes_max` — but always the first, which
/// `on_write` admitted only if it fits alone.
fn batch_len<S: StateMachine>(
    queue: &VecDeque<Request<S::Command>>,
    config: &ClusterConfig,
) -> usize {
    let mut bytes = 0usize;
    let mut take = 0;
    for request in queue.iter().take(config.max_batch) {
        bytes = bytes.saturating_add(S::command_bytes(&request.command));
        if take > 0 && bytes > config.batch_bytes_max {
            break;
        }
        take += 1;
    }
    take
}

/// How much a leader re-sends to one peer at once (a heartbeat tick's retransmissions,
/// or one catch-up): slots while their bytes stay within one slot's bound
/// (`batch_bytes_max`), and always the first. Without it, every tick re-sent the whole
/// pipeline of unacknowledged slots: with large values, far more than a link carries
/// between ticks, so acknowledgements (and heartbeats behind the backlog) came ever
/// later and followers started elections: retransmission became congestion collapse.
struct ResendBudget {
    bytes_left: usize,
    first: bool,
}

impl ResendBudget {
    fn new(config: &ClusterConfig) -> Self {
        ResendBudget {
            bytes_left: config.batch_bytes_max,
            first: true,
        }
    }

    /// Whether `proposal` may be sent within the budget (and spends it if so).
    fn take<S: StateMachine>(&mut self, proposal: &Proposal<S::Command>) -> bool {
        let bytes: usize = proposal
            .requests()
            .iter()
            .map(|request| S::command_bytes(&request.command))
            .sum();
        if !self.first && bytes > self.bytes_left {
            return false;
        }
        self.first = false;
        self.bytes_left = self.bytes_left.saturating_sub(bytes);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::continues_catch_up;

    #[test]
    fn only_the_last_slot_of_a_window_held_in_full_by_a_lagging_acceptor_continues_a_catch_up() {
        assert!(continues_catch_up(64, 64, 1000, 32));
        assert!(continues_catch_up(64, 90, 1000, 32)); // held later slots already
        assert!(!continues_catch_up(63, 63, 1000, 32)); // not the window's last slot
        assert!(!continues_catch_up(64, 60, 1000, 32)); // still lacks a slot below it
        assert!(!continues_catch_up(64, 1000, 1000, 32)); // caught up
        assert!(continues_catch_up(5, 5, 6, 0)); // a zero window counts as one
    }
}
