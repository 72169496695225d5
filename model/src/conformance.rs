//! Trace conformance: does a running cluster behave like the model?
//!
//! The node and the model step the same core, but a runtime can still break the
//! model's assumptions: send before an fsync completed, deliver a message no one sent
//! (or one twice), restart from a durable state other than the one it saved, fire a
//! timer the core cancelled. A node can record a *trace* of what its loop did
//! ([`TraceRecord`]): every input it stepped with the effects that came out, and the
//! durability points it reached. [`check_conformance`] replays a whole cluster's traces
//! through the core and checks them against each other; any difference is a
//! [`Divergence`] naming the rule, the node and the record.
//!
//! Rules (each a `rule` name in a divergence):
//! - `starts-with-start`: every trace file begins with a [`TraceRecord::Start`].
//! - `replays-identically`: restoring from the recorded snapshot and durable state, then
//!   stepping each recorded input, gives exactly the recorded effects and refusals.
//! - `replica-invariants`: [`crate::invariants::check_replica`] holds after every step
//!   (sampled once a node's log holds thousands of slots, to stay linear).
//! - `timer-was-armed`: a timer input fires only a timer the core armed and did not
//!   cancel (a fired timer stays disarmed until the core re-arms it).
//! - `persist-before-send`: no send or reply left before every persist emitted ahead of
//!   it was durable (a [`TraceRecord::Synced`] covering them before the
//!   [`TraceRecord::Released`] that covers it). A message the core sent ahead
//!   ([`Effect::SendAhead`]) leaves at once and is the only one that may.
//! - `only_heartbeats_sent_ahead`: the core sends ahead nothing but a leader's heartbeats
//!   ([`crate::invariants::only_heartbeats_sent_ahead`]).
//! - `synced-what-was-emitted`, `released-what-was-emitted`: a sync or a release covers
//!   a prefix of what the run emitted, never less than the one before.
//! - `received-was-sent`: every message a node stepped was released by its sender to
//!   that node earlier, and no more often than it was sent.
//! - `restart-state-is-durable-state`: a restarted node loaded the durable state of its
//!   previous run folded up to a point at or after its last completed sync (writes
//!   after it may or may not have reached the disk) and not beyond what was emitted.
//! - `committed-values-agree`: no two nodes, at any time, commit different values for a
//!   slot (the model's agreement, over the whole run rather than one state).
//! - `one_leader_per_ballot` and `at_most_one_value_chosen`: the model's own invariants
//!   ([`crate::invariants`]) on the global states the traces imply (the vote count on
//!   the slots each step voted for, and on every slot at the end) — the traces merged
//!   in timestamp order, which respects every send-before-receive because all nodes
//!   share one clock (one machine) and a send is stamped before it leaves.

use crate::ballot::{NodeId, Slot};
use crate::durable::{DurableState, DurableUpdate};
use crate::effect::{Effect, Input, Timer};
use crate::invariants::{self, Violation};
use crate::message::{Message, Proposal};
use crate::replica::{ClusterConfig, Replica};
use crate::snapshot::Snapshot;
use crate::state_machine::StateMachine;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;

/// One record of a node's trace. `at` is wall-clock time in nanoseconds since the Unix
/// epoch, taken when the record is made; records of one trace are in the order the
/// node's loop did them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "Snapshot<S>: Serialize, Input<S>: Serialize, Effect<S>: Serialize, \
                 S::Command: Serialize",
    deserialize = "Snapshot<S>: Deserialize<'de>, Input<S>: Deserialize<'de>, \
                   Effect<S>: Deserialize<'de>, S::Command: Deserialize<'de>"
))]
pub enum TraceRecord<S: StateMachine> {
    /// The node (re)started: [`Replica::restore`] from `snapshot` and `durable` (what it
    /// loaded from disk) gave `effects`.
    Start {
        /// When.
        at: u64,
        /// The node.
        node: NodeId,
        /// Cluster size, learners included.
        node_count: usize,
        /// The learners among the nodes ([`ClusterConfig::learners`]).
        learners: Vec<NodeId>,
        /// The ids that were no members at bootstrap ([`ClusterConfig::spares`]).
        spares: Vec<NodeId>,
        /// The core's pipeline window.
        pipeline_depth: usize,
        /// The core's batch limit.
        max_batch: usize,
        /// The core's byte bound on a slot's batch.
        batch_bytes_max: usize,
        /// The core's bound on a leader's queue of writes.
        queue_requests_max: usize,
        /// The core's bound on a leader's pending reads.
        reads_pending_max: usize,
        /// The core's bound on client sessions.
        sessions_max: usize,
        /// How far a learner may lag and still be promoted.
        promote_lag_max: Slot,
        /// The core's catch-up window.
        catch_up_slots: usize,
        /// The snapshot it loaded.
        snapshot: Snapshot<S>,
        /// The durable state it loaded.
        durable: DurableState<S::Command>,
        /// What restoring emitted.
        effects: Vec<Effect<S>>,
    },
    /// The loop stepped `input`; the core refused it (`refused`) or emitted `effects`.
    Step {
        /// When.
        at: u64,
        /// The input.
        input: Input<S>,
        /// The core returned an error (and must then have changed nothing).
        refused: bool,
        /// What the step emitted.
        effects: Vec<Effect<S>>,
    },
    /// An fsync completed: the first `persists` persists and snapshots this run
    /// emitted (counted from its Start) are durable. A loop that fsyncs beside its
    /// steps covers only what it had appended when the fsync began.
    Synced {
        /// When.
        at: u64,
        /// How many persists and snapshots, from the run's first, are durable now.
        persists: u64,
    },
    /// The first `sends` sends and replies this run emitted (counted from its Start; a
    /// [`Effect::SendAhead`] is not counted: it leaves at once) have been handed to
    /// the network. Each must have waited for the sync of the persists ahead of it.
    Released {
        /// When.
        at: u64,
        /// How many sends and replies, from the run's first, have left.
        sends: u64,
    },
    /// The node stopped cleanly; nothing follows.
    Stop {
        /// When.
        at: u64,
    },
}

impl<S: StateMachine> TraceRecord<S> {
    /// When the record was made.
    ///
    /// ```
    /// use ballot_model::conformance::TraceRecord;
    /// use ballot_model::Register;
    /// assert_eq!(TraceRecord::<Register>::Synced { at: 7, persists: 2 }.at(), 7);
    /// ```
    pub fn at(&self) -> u64 {
        match self {
            TraceRecord::Start { at, .. }
            | TraceRecord::Step { at, .. }
            | TraceRecord::Synced { at, .. }
            | TraceRecord::Released { at, .. }
            | TraceRecord::Stop { at } => *at,
        }
    }
}

/// One run of one node: the records of one trace file.
#[derive(Clone, Debug)]
pub struct NodeRun<S: StateMachine> {
    /// Where the records came from (a file name), for reports.
    pub source: String,
    /// The records, in order.
    pub records: Vec<TraceRecord<S>>,
}

/// The first difference found between the traces and the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// Which rule failed (see the module documentation).
    pub rule: &'static str,
    /// The node whose record broke it.
    pub node: Option<NodeId>,
    /// The trace it is in.
    pub source: String,
    /// The record's index in that trace.
    pub record: usize,
    /// What went wrong.
    pub detail: String,
    /// The records before it, oldest first (shortened).
    pub context: Vec<String>,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let node = self.node.map_or("?".to_string(), |n| n.to_string());
        writeln!(
            f,
            "rule {} broken by node {node} at record {} of {}: {}",
            self.rule, self.record, self.source, self.detail
        )?;
        for line in &self.context {
            writeln!(f, "    {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Divergence {}

/// What a conforming set of traces contained.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConformanceReport {
    /// Distinct nodes.
    pub nodes: usize,
    /// Trace files (node runs); restarts are `runs - nodes`.
    pub runs: usize,
    /// Restarts whose loaded durable state was checked against the run before.
    pub restarts_checked: usize,
    /// Records read.
    pub records: usize,
    /// Inputs replayed through the core.
    pub steps: usize,
    /// Peer messages matched to a send.
    pub messages_matched: usize,
    /// Persists replayed.
    pub persists: usize,
    /// Slots whose committed value was compared across nodes.
    pub slots_committed: usize,
    /// Global states the model's invariants were evaluated on.
    pub global_states_checked: usize,
    /// Trace files whose last record was cut short (a killed node).
    pub torn_tails: usize,
}

/// Logs up to this many slots get [`invariants::check_replica`] after every step; a
/// longer log every `len / CHECK_EVERY_STEP_UP_TO`-th step, and every run's last state
/// (the check is linear in the log: on every step a long trace would be quadratic to
/// check, and it dominated the time of a nemesis run's check).
const CHECK_EVERY_STEP_UP_TO: usize = 64;

/// How many records before a divergence to show.
const CONTEXT_RECORDS: usize = 6;

/// Replay state of one node run.
/// A message and the peer it goes to.
type Addressed<S> = (NodeId, Message<S>);

struct RunState<S: StateMachine> {
    node: NodeId,
    replica: Replica<S>,
    armed: BTreeSet<Timer>,
    /// The durable state folded up to the last completed sync.
    synced_state: DurableState<S::Command>,
    /// Persists emitted and not yet synced, in order (`None`: a snapshot).
    unsynced: VecDeque<Option<DurableUpdate<S::Command>>>,
    /// Persists and snapshots emitted, and synced, since the run's Start.
    persists_emitted: u64,
    persists_synced: u64,
    /// Sends and replies emitted and not yet released, in order, each with the number
    /// of persists emitted ahead of it (which must be synced before it leaves); a
    /// reply has no message to put in flight.
    unreleased: VecDeque<(Option<Addressed<S>>, u64)>,
    /// Sends and replies released since the run's Start.
    sends_released: u64,
    stopped: bool,
    last_commit: Slot,
}

/// Checks a cluster's traces (every run of every node, in any order) against the core
/// and the model's invariants. Runs of one node are ordered by their start time.
///
/// ```
/// use ballot_model::conformance::{check_conformance, NodeRun, TraceRecord};
/// use ballot_model::{ClusterConfig, DurableState, Register, Replica, Snapshot};
/// let (_, effects) =
///     Replica::restore(0, ClusterConfig::new(3), Snapshot::initial(Register::default()), DurableState::default())
///         .unwrap();
/// let start = TraceRecord::<Register>::Start {
///     at: 1, node: 0, node_count: 3, learners: vec![], spares: vec![], pipeline_depth: 4, max_batch: 64,
///     batch_bytes_max: usize::MAX, queue_requests_max: usize::MAX, reads_pending_max: usize::MAX,
///     sessions_max: usize::MAX, promote_lag_max: u64::MAX, catch_up_slots: 4, snapshot: Snapshot::initial(Register::default()), durable: DurableState::default(), effects,
/// };
/// let report = check_conformance(vec![NodeRun { source: "n0".into(), records: vec![start] }]).unwrap();
/// assert_eq!((report.nodes, report.runs), (1, 1));
/// ```
pub fn check_conformance<S: StateMachine>(
    runs: Vec<NodeRun<S>>,
) -> Result<ConformanceReport, Divergence> {
    check_conformance_over(runs, Delivery::AtMostOnce)
}

/// How the network between the traced nodes delivers what a node released: what the
/// `received-was-sent` rule holds a receiver to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// At most once per release (TCP, the production transport): a message stepped
    /// more often than it was released is a runtime bug.
    AtMostOnce,
    /// Any number of times once released (a simulated network that duplicates): a
    /// message stepped that was never released is still a runtime bug.
    Duplicating,
}

/// [`check_conformance`] over a network that delivers as `delivery` says.
///
/// ```
/// use ballot_model::conformance::{check_conformance_over, Delivery, NodeRun};
/// let report = check_conformance_over::<ballot_model::Register>(Vec::new(), Delivery::Duplicating).unwrap();
/// assert_eq!(report.runs, 0);
/// ```
pub fn check_conformance_over<S: StateMachine>(
    mut runs: Vec<NodeRun<S>>,
    delivery: Delivery,
) -> Result<ConformanceReport, Divergence> {
    let mut report = ConformanceReport {
        runs: runs.len(),
        ..ConformanceReport::default()
    };
    runs.retain(|run| !run.records.is_empty());
    for run in &runs {
        if !matches!(run.records.first(), Some(TraceRecord::Start { .. })) {
            return Err(divergence(
                "starts-with-start",
                None,
                run,
                0,
                "the trace does not begin with a Start record".into(),
            ));
        }
    }
    // Runs of one node in start order: each restart is checked against the run before.
    runs.sort_by_key(|run| run.records[0].at());
    let mut state: Vec<Option<RunState<S>>> = runs.iter().map(|_| None).collect();
    let mut previous_run: HashMap<NodeId, usize> = HashMap::new();
    // The current replica of each node (its latest run), for whole-cluster invariants.
    let mut current: BTreeMap<NodeId, usize> = BTreeMap::new();
    // (from, to, message) -> released minus received.
    let mut in_flight: HashMap<(NodeId, NodeId, Message<S>), u64> = HashMap::new();
    let mut committed: BTreeMap<Slot, Proposal<S::Command>> = BTreeMap::new();
    let mut cursor = vec![0usize; runs.len()];
    let mut merged_steps = 0usize;

    // Merge all runs by timestamp, keeping each run's own order.
    loop {
        let mut next: Option<(u64, usize)> = None;
        for (index, run) in runs.iter().enumerate() {
            if let Some(record) = run.records.get(cursor[index]) {
                if next.is_none_or(|(at, _)| record.at() < at) {
                    next = Some((record.at(), index));
                }
            }
        }
        let Some((_, index)) = next else { break };
        let position = cursor[index];
        cursor[index] += 1;
        report.records += 1;
        let run = &runs[index];
        let fail = |rule: &'static str, node: Option<NodeId>, detail: String| {
            divergence(rule, node, run, position, detail)
        };
        match &run.records[position] {
            TraceRecord::Start {
                node,
                node_count,
                learners,
                spares,
                pipeline_depth,
                max_batch,
                batch_bytes_max,
                queue_requests_max,
                reads_pending_max,
                sessions_max,
                promote_lag_max,
                catch_up_slots,
                snapshot,
                durable,
                effects,
                ..
            } => {
                if position != 0 {
                    return Err(fail(
                        "starts-with-start",
                        Some(*node),
                        "a second Start inside one trace".into(),
                    ));
                }
                if let Some(&before) = previous_run.get(node) {
                    let Some(previous) = state[before].as_ref() else {
                        unreachable!("a run's state exists once its Start was read")
                    };
                    check_restart(previous, durable).map_err(|detail| {
                        fail("restart-state-is-durable-state", Some(*node), detail)
                    })?;
                    report.restarts_checked += 1;
                } else {
                    report.nodes += 1;
                }
                let config = ClusterConfig::new(*node_count)
                    .with_learners(learners.iter().copied())
                    .with_spares(spares.iter().copied())
                    .with_pipeline_depth(*pipeline_depth)
                    .with_max_batch(*max_batch)
                    .with_batch_bytes_max(*batch_bytes_max)
                    .with_queue_requests_max(*queue_requests_max)
                    .with_reads_pending_max(*reads_pending_max)
                    .with_sessions_max(*sessions_max)
                    .with_promote_lag_max(*promote_lag_max)
                    .with_catch_up_slots(*catch_up_slots);
                let (replica, replayed) =
                    Replica::restore(*node, config, snapshot.clone(), durable.clone()).map_err(
                        |error| fail("replays-identically", Some(*node), error.to_string()),
                    )?;
                if &replayed != effects {
                    return Err(fail(
                        "replays-identically",
                        Some(*node),
                        format!("restore emitted {replayed:?}, the trace says {effects:?}"),
                    ));
                }
                let mut run_state = RunState {
                    node: *node,
                    last_commit: replica.commit_index(),
                    replica,
                    armed: BTreeSet::new(),
                    synced_state: durable.clone(),
                    unsynced: VecDeque::new(),
                    persists_emitted: 0,
                    persists_synced: 0,
                    unreleased: VecDeque::new(),
                    sends_released: 0,
                    stopped: false,
                };
                absorb(&mut run_state, replayed, &mut in_flight, &mut report);
                state[index] = Some(run_state);
                previous_run.insert(*node, index);
                current.insert(*node, index);
            }
            record => {
                let Some(run_state) = state[index].as_mut() else {
                    unreachable!("every run begins with Start, checked above")
                };
                let node = Some(run_state.node);
                if run_state.stopped {
                    return Err(fail(
                        "starts-with-start",
                        node,
                        "a record after Stop".into(),
                    ));
                }
                match record {
                    TraceRecord::Start { .. } => unreachable!("handled above"),
                    TraceRecord::Step {
                        input,
                        refused,
                        effects,
                        ..
                    } => {
                        report.steps += 1;
                        merged_steps += 1;
                        if let Input::Timer(timer) = input {
                            if !run_state.armed.remove(timer) {
                                return Err(fail(
                                    "timer-was-armed",
                                    node,
                                    format!("{timer:?} fired but the core had not armed it"),
                                ));
                            }
                        }
                        if let Input::Message { from, message } = input {
                            let key = (*from, run_state.node, message.clone());
                            match in_flight.get_mut(&key) {
                                Some(count) if *count > 0 => {
                                    if delivery == Delivery::AtMostOnce {
                                        *count -= 1;
                                    }
                                    report.messages_matched += 1;
                                }
                                _ => {
                                    return Err(fail(
                                        "received-was-sent",
                                        node,
                                        format!(
                                            "stepped a message from node {from} that it had \
                                             not released (or released fewer times): {message:?}"
                                        ),
                                    ))
                                }
                            }
                        }
                        let mut replayed = Vec::new();
                        let result = run_state.replica.step(input.clone(), &mut replayed);
                        if result.is_err() != *refused || &replayed != effects {
                            return Err(fail(
                                "replays-identically",
                                node,
                                format!(
                                    "replaying {input:?} gave {result:?} with {replayed:?}; \
                                     the trace says refused={refused} with {effects:?}"
                                ),
                            ));
                        }
                        let log_len = run_state.replica.durable().accepted.len();
                        if merged_steps.is_multiple_of((log_len / CHECK_EVERY_STEP_UP_TO).max(1)) {
                            invariants::check_replica(&run_state.replica)
                                .map_err(|v| fail("replica-invariants", node, v.to_string()))?;
                        }
                        let voted: Vec<Slot> = replayed
                            .iter()
                            .filter_map(|effect| match effect {
                                Effect::Persist(DurableUpdate::Accept { slot, .. }) => Some(*slot),
                                _ => None,
                            })
                            .collect();
                        invariants::only_heartbeats_sent_ahead(&replayed)
                            .map_err(|v| fail(v.invariant, node, v.to_string()))?;
                        absorb(run_state, replayed, &mut in_flight, &mut report);
                        // Agreement over time: each newly committed slot still in the log
                        // must match what any node ever committed there.
                        let replica = &run_state.replica;
                        let commit = replica.commit_index();
                        let held_from = replica.durable().compacted.max(run_state.last_commit) + 1;
                        for slot in held_from..=commit {
                            let Some(entry) = replica.durable().accepted.get(&slot) else {
                                continue;
                            };
                            match committed.get(&slot) {
                                Some(value) if *value != entry.proposal => {
                                    return Err(fail(
                                        "committed-values-agree",
                                        node,
                                        format!(
                                            "slot {slot} committed as {:?}, but another node \
                                             committed {value:?}",
                                            entry.proposal
                                        ),
                                    ));
                                }
                                Some(_) => {}
                                None => {
                                    committed.insert(slot, entry.proposal.clone());
                                    report.slots_committed += 1;
                                }
                            }
                        }
                        run_state.last_commit = run_state.last_commit.max(commit);
                        // The model's whole-cluster invariants on this global state.
                        let replicas: Vec<&Replica<S>> = current
                            .values()
                            .filter_map(|&i| state[i].as_ref().map(|s| &s.replica))
                            .collect();
                        let global = |violation: Violation| {
                            fail(violation.invariant, node, violation.to_string())
                        };
                        invariants::one_leader_per_ballot(&replicas).map_err(global)?;
                        invariants::at_most_one_value_chosen_at(&replicas, voted)
                            .map_err(global)?;
                        report.global_states_checked += 1;
                    }
                    TraceRecord::Synced { persists, .. } => {
                        if *persists < run_state.persists_synced
                            || *persists > run_state.persists_emitted
                        {
                            return Err(fail(
                                "synced-what-was-emitted",
                                node,
                                format!(
                                    "a sync of the first {persists} persists, after {} were \
                                     synced and with {} emitted",
                                    run_state.persists_synced, run_state.persists_emitted
                                ),
                            ));
                        }
                        while run_state.persists_synced < *persists {
                            run_state.persists_synced += 1;
                            if let Some(Some(update)) = run_state.unsynced.pop_front() {
                                run_state.synced_state.apply(&update);
                            }
                        }
                    }
                    TraceRecord::Released { sends, .. } => {
                        let waiting = run_state.unreleased.len() as u64;
                        if *sends < run_state.sends_released
                            || *sends > run_state.sends_released + waiting
                        {
                            return Err(fail(
                                "released-what-was-emitted",
                                node,
                                format!(
                                    "released the first {sends} sends and replies, after {} \
                                     were released and with {waiting} more emitted",
                                    run_state.sends_released
                                ),
                            ));
                        }
                        while run_state.sends_released < *sends {
                            run_state.sends_released += 1;
                            let Some((send, ahead)) = run_state.unreleased.pop_front() else {
                                unreachable!("bounded by the count of waiting sends above")
                            };
                            if ahead > run_state.persists_synced {
                                return Err(fail(
                                    "persist-before-send",
                                    node,
                                    format!(
                                        "a send or reply left after {} persists were durable, \
                                         but {ahead} were emitted ahead of it (only a \
                                         message the core sends ahead may leave early)",
                                        run_state.persists_synced
                                    ),
                                ));
                            }
                            if let Some((to, message)) = send {
                                *in_flight.entry((run_state.node, to, message)).or_default() += 1;
                            }
                        }
                    }
                    TraceRecord::Stop { .. } => run_state.stopped = true,
                }
            }
        }
    }
    for (index, run_state) in state.iter().enumerate() {
        if let Some(run_state) = run_state {
            if let Err(violation) = invariants::check_replica(&run_state.replica) {
                let run = &runs[index];
                return Err(divergence(
                    "replica-invariants",
                    Some(run_state.node),
                    run,
                    run.records.len() - 1,
                    violation.to_string(),
                ));
            }
        }
    }
    let replicas: Vec<&Replica<S>> = current
        .values()
        .filter_map(|&i| state[i].as_ref().map(|s| &s.replica))
        .collect();
    if let Err(violation) = invariants::at_most_one_value_chosen(&replicas) {
        let last = runs.len().saturating_sub(1);
        return Err(Divergence {
            rule: violation.invariant,
            node: None,
            source: runs.get(last).map_or(String::new(), |r| r.source.clone()),
            record: runs.get(last).map_or(0, |r| r.records.len()),
            detail: violation.to_string(),
            context: Vec::new(),
        });
    }
    report.global_states_checked += 1;
    Ok(report)
}

/// Folds a step's effects into the run's bookkeeping: persists wait for a sync, sends
/// and replies for a release (each after the persists ahead of it), a send ahead is in
/// flight at once, timers arm and disarm.
fn absorb<S: StateMachine>(
    run: &mut RunState<S>,
    effects: Vec<Effect<S>>,
    in_flight: &mut HashMap<(NodeId, NodeId, Message<S>), u64>,
    report: &mut ConformanceReport,
) {
    for effect in effects {
        match effect {
            Effect::Persist(update) => {
                report.persists += 1;
                run.persists_emitted += 1;
                run.unsynced.push_back(Some(update));
            }
            Effect::SaveSnapshot(_) => {
                run.persists_emitted += 1;
                run.unsynced.push_back(None);
            }
            Effect::Send { to, message } => {
                run.unreleased
                    .push_back((Some((to, message)), run.persists_emitted));
            }
            Effect::SendAhead { to, message } => {
                *in_flight.entry((run.node, to, message)).or_default() += 1;
            }
            Effect::Reply { .. } => {
                run.unreleased.push_back((None, run.persists_emitted));
            }
            Effect::SetTimer(timer) => {
                run.armed.insert(timer);
            }
            Effect::CancelTimer(timer) => {
                run.armed.remove(&timer);
            }
            Effect::Applied { .. }
            | Effect::Campaigning { .. }
            | Effect::Removed { .. }
            | Effect::LeadershipTransfer(_)
            | Effect::Reconfiguration(_) => {}
        }
    }
}

/// A restart loaded `loaded`: it must be the previous run's durable state folded up to
/// its last completed sync plus some prefix (maybe all, maybe none) of the persists
/// after it — unsynced writes may or may not have reached the disk.
fn check_restart<S: StateMachine>(
    previous: &RunState<S>,
    loaded: &DurableState<S::Command>,
) -> Result<(), String> {
    let mut candidate = previous.synced_state.clone();
    if candidate == *loaded {
        return Ok(());
    }
    for update in previous.unsynced.iter().flatten() {
        candidate.apply(update);
        if candidate == *loaded {
            return Ok(());
        }
    }
    Err(format!(
        "loaded promised={} commit={} compacted={} with {} votes; the last sync of the run \
         before had promised={} commit={} compacted={} with {} votes ({} persists after it)",
        loaded.promised,
        loaded.commit,
        loaded.compacted,
        loaded.accepted.len(),
        previous.synced_state.promised,
        previous.synced_state.commit,
        previous.synced_state.compacted,
        previous.synced_state.accepted.len(),
        previous.unsynced.len(),
    ))
}

fn divergence<S: StateMachine>(
    rule: &'static str,
    node: Option<NodeId>,
    run: &NodeRun<S>,
    record: usize,
    detail: String,
) -> Divergence {
    let from = record.saturating_sub(CONTEXT_RECORDS);
    let context = run.records[from..=record.min(run.records.len().saturating_sub(1))]
        .iter()
        .enumerate()
        .map(|(offset, r)| {
            let mut line = format!("#{} {r:?}", from + offset);
            if line.len() > 300 {
                let mut cut = 300;
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.truncate(cut);
                line.push('…');
            }
            line
        })
        .collect();
    Divergence {
        rule,
        node,
        source: run.source.clone(),
        record,
        detail,
        context,
    }
}
