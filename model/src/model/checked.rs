//! [`BallotModel`]: the checked model. It wraps stateright's `ActorModel` and adds what
//! the actor model lacks — a total fault budget, an election budget, the partial
//! synchrony switch, coalescing of identical in-flight messages — and carries the
//! [`Ledger`] the refinement mapping needs.

use super::actors::{ModelActor, ModelActorState, ModelMsg, ModelTimer, ServerState};
use super::config::{ModelConfig, NetworkKind};
use super::connectivity::Opening;
use super::fairness::{DeliveryEffects, InFlightEffects};
use super::history::{record_invocation, record_return, ModelHistory};
use super::operator::next_change;
use super::properties;
use super::refinement::{refine, Epochs};
use super::Shared;
use crate::ballot::{Ballot, NodeId, Slot};
use crate::client_session::SessionTimer;
use crate::effect::Timer;
use crate::membership::Membership;
use crate::message::Proposal;
use crate::register::Register;
use crate::register::Value;
use crate::replica::{Replica, Role};
use crate::spec::{ConsensusSpec, SpecViolation};
use stateright::actor::{ActorModel, ActorModelAction, ActorModelState, Id, LossyNetwork, Network};
use stateright::{Model, Path, Property};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

/// An action of the model: deliver, drop, timeout, crash, recover.
pub type BallotAction = ActorModelAction<ModelMsg, ModelTimer, ()>;

/// Every vote ever cast: `(slot, ballot, value)` → voters.
pub type Votes = BTreeMap<(Slot, Ballot, Proposal<Value>), BTreeSet<NodeId>>;

/// Bookkeeping that is part of the explored state but of no actor: fault budgets spent
/// and the abstract spec state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ledger {
    /// Crashes so far (total, not concurrent).
    pub crashes: u8,
    /// Elections so far: election timeouts that started a new ballot (a candidate
    /// asking again at its ballot is not counted).
    pub elections: u8,
    /// Leadership transfers the operator asked for so far.
    pub transfers: u8,
    /// The last transfer: the leader that handed over, and the elections count then
    /// (a successor that leads with no election since took over by the transfer).
    pub handed_over: Option<(NodeId, u8)>,
    /// Some node took over by a transfer, with no election timeout since it was asked.
    pub transfer_took_over: bool,
    /// Membership changes the operator asked for so far.
    pub reconfigurations: u8,
    /// Every vote ever cast: `(slot, ballot, value)` → voters. Shared between states
    /// until a step records a new vote (most steps do not).
    pub votes: Shared<Votes>,
    /// The abstract state the concrete one maps to; shared like `votes`.
    pub spec: Shared<ConsensusSpec>,
    /// Every membership epoch a server entered, with its members: who votes in it.
    /// Shared like `votes` (it changes only at a reconfiguration).
    pub epochs: Shared<Epochs>,
    /// With lazy disks: actions taken while some live server's sync is pending, up to
    /// [`ModelConfig::sync_window`]; zero once every live server is synced.
    pub sync_window_used: u8,
    /// The first spec violation found, if any.
    pub spec_violation: Option<SpecViolation>,
    /// When a leader first crashed: the highest commit index any server had then.
    pub leader_crash_commit: Option<Slot>,
    /// Some server answered a retried request from its client table (the replica's
    /// metric counter takes no part in state identity, so the fact is kept here).
    pub deduplicated: bool,
    /// Some server installed a snapshot from a peer (a promise's or a leader's).
    pub installed_snapshot: bool,
    /// Some leader refused a request because its queue was full.
    pub refused_busy: bool,
    /// Some replica expired a client session.
    pub session_expired: bool,
    /// Some server refused a request because its session had expired.
    pub refused_expired: bool,
    /// A scripted opening ([`Opening::Elected`]) is over: cut links are cut for good.
    pub opened: bool,
}

/// A state of the checked model.
#[derive(Clone, Debug, PartialEq)]
pub struct BallotState {
    /// Actors, network, timers, storage and history, as stateright keeps them.
    pub system: ActorModelState<ModelActor, ModelHistory>,
    /// Budgets and the abstract spec state.
    pub ledger: Ledger,
}

/// The checker tells states apart by this hash alone, so it must encode every part of
/// the state unambiguously. Stateright 0.31 hashes each actor's timer set as its sorted
/// element hashes with no length, so two states whose actors hold the same timers in
/// different places (client 0 waiting to retry versus client 1) would hash alike and
/// one of them would never be explored. Each timer set is hashed instead as the bit
/// set of the timers it holds ([`ModelTimer::bit`]): exact, and without hashing and
/// sorting every element on every state. The model makes no random choices, so
/// stateright's per-actor random choices (always empty) are left out.
impl Hash for BallotState {
    fn hash<H: Hasher>(&self, hasher: &mut H) {
        let system = &self.system;
        debug_assert!(
            system
                .random_choices
                .iter()
                .all(|choices| choices.map.is_empty()),
            "the model makes no random choices"
        );
        system.actor_states.hash(hasher);
        system.history.hash(hasher);
        for timers in &system.timers_set {
            let bits = timers.iter().fold(0u16, |bits, timer| bits | timer.bit());
            hasher.write_u16(bits);
        }
        system.network.hash(hasher);
        system.crashed.hash(hasher);
        system.actor_storages.hash(hasher);
        self.ledger.hash(hasher);
    }
}

impl BallotState {
    /// The servers' states, crashed or not, in id order.
    pub fn servers(&self) -> impl Iterator<Item = (NodeId, &ServerState)> {
        self.system
            .actor_states
            .iter()
            .enumerate()
            .filter_map(|(id, state)| match &**state {
                ModelActorState::Server(server) => Some((id, server)),
                ModelActorState::Client(_) => None,
            })
    }

    /// The membership of the latest epoch any server entered (crashed ones included:
    /// a crash forgets no executed entry).
    pub fn latest_membership(&self) -> &Membership {
        self.servers()
            .map(|(_, server)| server.replica.membership())
            .max_by_key(|members| members.epoch)
            .expect("the model has servers")
    }

    /// The servers that are up.
    pub fn live_servers(&self) -> impl Iterator<Item = (NodeId, &ServerState)> {
        self.servers().filter(|(id, _)| !self.system.crashed[*id])
    }

    /// True when every client has finished its script: every request answered. The goal
    /// of the liveness check.
    pub fn all_requests_answered(&self, model: &BallotModel) -> bool {
        self.system
            .actor_states
            .iter()
            .filter_map(|state| match &**state {
                ModelActorState::Client(client) => Some(client),
                ModelActorState::Server(_) => None,
            })
            .all(|client| client.op_index >= model.config.ops_per_client)
    }
}

/// The checked model of a ballot cluster.
///
/// ```
/// use ballot_model::model::{BallotModel, ModelConfig};
/// use stateright::{Checker, Expectation, Model};
/// let model = BallotModel::new(ModelConfig { max_crashes: 0, max_elections: 1, ..ModelConfig::default() });
/// let checker = model.checker().spawn_bfs().join();
/// for property in checker.model().properties() {
///     if property.expectation == Expectation::Always {
///         assert!(checker.discovery(property.name).is_none(), "{} violated", property.name);
///     }
/// }
/// assert_eq!(checker.unique_state_count(), 1_569);
/// ```
#[derive(Clone)]
pub struct BallotModel {
    /// The configuration checked.
    pub config: ModelConfig,
    inner: ActorModel<ModelActor, ModelConfig, ModelHistory>,
    /// Delivery effects remembered for deciding timeliness.
    pub(super) delivery_effects: DeliveryEffects,
}

impl BallotModel {
    /// Builds the model for `config`.
    pub fn new(config: ModelConfig) -> Self {
        let cluster = config.cluster();
        let network = match config.network {
            NetworkKind::UnorderedNonDuplicating => Network::new_unordered_nonduplicating([]),
            NetworkKind::UnorderedDuplicating => Network::new_unordered_duplicating([]),
            NetworkKind::Ordered => Network::new_ordered([]),
        };
        let mut inner = ActorModel::new(config.clone(), ModelHistory::default())
            .actors((0..config.servers).map(|_| ModelActor::Server {
                cluster: cluster.clone(),
                compaction: config.compaction,
                transfers: config.max_transfers > 0,
                lazy_disks: config.lazy_disks,
                reconfigurations: config.reconfigurations.clone(),
            }))
            .actors((0..config.clients).map(|client| ModelActor::Client {
                client: client as u64,
                servers: config.servers,
                script: config.script_for(client),
                retries: config.client_retries,
                #[cfg(feature = "mutants")]
                mutant: config.mutant,
            }))
            .init_network(network)
            .lossy_network(if config.lossy {
                LossyNetwork::Yes
            } else {
                LossyNetwork::No
            })
            .max_crashes(config.max_crashes)
            .record_msg_out(record_invocation)
            .record_msg_in(record_return);
        // Properties live on the wrapper; the inner model only explores.
        inner.properties.clear();
        BallotModel {
            config,
            inner,
            delivery_effects: DeliveryEffects::default(),
        }
    }

    pub(super) fn server<'a>(&self, state: &'a BallotState, id: usize) -> Option<&'a ServerState> {
        match state.system.actor_states.get(id).map(|s| &**s) {
            Some(ModelActorState::Server(server)) => Some(server),
            _ => None,
        }
    }

    pub(super) fn is_live_leader(&self, state: &BallotState, id: NodeId) -> bool {
        !state.system.crashed[id]
            && self
                .server(state, id)
                .is_some_and(|server| server.replica.is_leader())
    }

    /// The actors, by stateright index.
    pub(super) fn actors(&self) -> &[ModelActor] {
        &self.inner.actors
    }

    /// True if server `id` is up and would start a new ballot (not just ask again) if
    /// its election timer fired: what the election budget counts.
    fn election_starts_ballot(&self, state: &BallotState, id: NodeId) -> bool {
        self.server(state, id)
            .is_some_and(|server| server.replica.election_timeout_starts_ballot())
    }

    /// Whether the wrapper lets an action the actor model offers happen: fault budgets,
    /// and in the stricter timing modes only timely timer firings (see
    /// [`BallotModel::timer_is_timely`], which the liveness checker also uses to tell
    /// faults from fair steps).
    fn allowed(
        &self,
        state: &BallotState,
        action: &BallotAction,
        effects: &InFlightEffects,
    ) -> bool {
        let config = &self.config;
        if config.lazy_disks && !self.lazy_disk_allows(state, action) {
            return false;
        }
        match action {
            ActorModelAction::Crash(id) => {
                usize::from(*id) < config.servers
                    && (state.ledger.crashes as usize) < config.max_crashes
            }
            ActorModelAction::Timeout(id, ModelTimer::TransferLeadership) => {
                (state.ledger.transfers as usize) < config.max_transfers
                    && self.is_live_leader(state, usize::from(*id))
            }
            ActorModelAction::Timeout(id, ModelTimer::Reconfigure) => {
                let id = usize::from(*id);
                (state.ledger.reconfigurations as usize) < config.max_reconfigurations
                    && self.is_live_leader(state, id)
                    && self.server(state, id).is_some_and(|server| {
                        next_change(&config.reconfigurations, server.replica.membership(), id)
                            .is_some()
                    })
            }
            ActorModelAction::Timeout(id, timer) => {
                let over_budget = timer.is_election()
                    && state.ledger.elections as usize >= config.max_elections
                    && self.election_starts_ballot(state, usize::from(*id));
                if over_budget {
                    return false;
                }
                let free_to_fire = match timer {
                    ModelTimer::Server(
                        Timer::Election | Timer::CandidacyRetry | Timer::CheckQuorum,
                    ) => config.timing.spurious_elections(),
                    ModelTimer::Server(Timer::Heartbeat) => config.timing.early_heartbeats(),
                    // A client that gives up on an attempt early is what impatience
                    // means; its pauses (back-off, waiting for an election) fire when
                    // timely, except under `async`.
                    ModelTimer::Client(SessionTimer::Attempt) => {
                        config.timing.early_client_retries()
                    }
                    ModelTimer::Client(SessionTimer::Backoff | SessionTimer::AwaitLeader) => {
                        config.timing.early_heartbeats()
                    }
                    // A disk completes its fsync in its own time.
                    ModelTimer::TransferLeadership | ModelTimer::Reconfigure | ModelTimer::Sync => {
                        true
                    }
                };
                free_to_fire || self.timer_is_timely_in(state, *id, timer, effects)
            }
            _ => true,
        }
    }

    /// With lazy disks, an fsync is faster than all but [`ModelConfig::sync_window`]
    /// other actions: while a live server has written what is not durable, the actions
    /// are its sync, its crash (which loses what was not synced), and up to that many
    /// others (the runtime's loop steps inputs while its fsync runs). A window of 0
    /// keeps the one gap the ordering contract is about, a crash between a persist and
    /// its fsync, without every interleaving of slow disks with everything else.
    fn lazy_disk_allows(&self, state: &BallotState, action: &BallotAction) -> bool {
        !self.any_unsynced(state)
            || self.ends_sync_gap(state, action)
            || state.ledger.sync_window_used < self.config.sync_window
    }

    /// True if some live server has written what is not durable yet.
    fn any_unsynced(&self, state: &BallotState) -> bool {
        (0..self.config.servers).any(|id| self.unsynced(state, id))
    }

    fn unsynced(&self, state: &BallotState, id: usize) -> bool {
        !state.system.crashed[id] && self.server(state, id).is_some_and(|s| s.unsynced)
    }

    /// The action is an unsynced server's sync or crash.
    fn ends_sync_gap(&self, state: &BallotState, action: &BallotAction) -> bool {
        match action {
            ActorModelAction::Timeout(id, ModelTimer::Sync) | ActorModelAction::Crash(id) => {
                self.unsynced(state, usize::from(*id))
            }
            _ => false,
        }
    }

    /// Plays the scripted opening ([`Opening::Elected`]) from `state`: every step goes
    /// through `next_state`, so the ledger (elections, votes, the spec) records it.
    fn open(&self, mut state: BallotState, leader: NodeId, miss: Option<NodeId>) -> BallotState {
        let step = |state: BallotState, action: BallotAction| -> BallotState {
            self.next_state(&state, action.clone()).unwrap_or(state)
        };
        let leader_id = Id::from(leader);
        state = step(
            state,
            ActorModelAction::Timeout(leader_id, ModelTimer::Server(Timer::Election)),
        );
        // Deliver peer messages (all of them, then all but those to or from `miss`)
        // until none is left that changes anything.
        let settle = |mut state: BallotState, skip: Option<NodeId>| -> BallotState {
            for _ in 0..1_000 {
                let candidates: Vec<BallotAction> = state
                    .system
                    .network
                    .iter_deliverable()
                    .filter(|e| {
                        let skipped = skip
                            .is_some_and(|m| usize::from(e.src) == m || usize::from(e.dst) == m);
                        matches!(e.msg, ModelMsg::Peer(_)) && !skipped
                    })
                    .map(|e| ActorModelAction::Deliver {
                        src: e.src,
                        dst: e.dst,
                        msg: e.msg.clone(),
                    })
                    .collect();
                // The first delivery that changes anything; none left: settled.
                let Some(next) = candidates
                    .into_iter()
                    .find_map(|action| self.next_state(&state, action))
                else {
                    break;
                };
                state = next;
            }
            state
        };
        state = settle(state, None);
        let request = state.system.network.iter_deliverable().find_map(|e| {
            (usize::from(e.dst) == leader && matches!(e.msg, ModelMsg::Request(_))).then(|| {
                ActorModelAction::Deliver {
                    src: e.src,
                    dst: e.dst,
                    msg: e.msg.clone(),
                }
            })
        });
        if let Some(request) = request {
            state = step(state, request);
            state = settle(state, miss);
        }
        state.ledger.opened = true;
        self.bound_network(&mut state.system, true);
        state
    }

    /// Bounds the network after a step (see [`NetworkKind`]), and removes answers no
    /// client will ever act on: delivering them would change nothing, now or later
    /// (a client's sequence number only grows), so removing them only merges states
    /// that differ in garbage.
    fn bound_network(&self, system: &mut ActorModelState<ModelActor, ModelHistory>, opened: bool) {
        let actor_states = &system.actor_states;
        let crashed = &system.crashed;
        // A crash closes the node's connections: whatever was on its way to it, or is
        // sent to it while it is down, is lost (TCP semantics; the runtime's peers
        // reconnect and retransmit). What it sent before crashing may still arrive.
        let to_crashed = |dst: Id| crashed.get(usize::from(dst)).copied().unwrap_or(false);
        // After a scripted opening the cut links are cut for good.
        let cut_for_good = opened;
        let lost = |src: Id, dst: Id| {
            to_crashed(dst)
                || (cut_for_good
                    && !self
                        .config
                        .connectivity
                        .connected(usize::from(src), usize::from(dst)))
        };
        let is_dead_answer =
            |dst: Id, msg: &ModelMsg| match (actor_states.get(usize::from(dst)).map(|s| &**s), msg)
            {
                (Some(ModelActorState::Client(client)), ModelMsg::Response(response)) => {
                    !client.session.awaits(response.seq())
                }
                (Some(ModelActorState::Server(server)), ModelMsg::Peer(message)) => {
                    server.replica.is_obsolete(message)
                }
                _ => false,
            };
        match &mut system.network {
            Network::UnorderedNonDuplicating(multiset) => {
                multiset.retain(|envelope, _| {
                    !lost(envelope.src, envelope.dst)
                        && !is_dead_answer(envelope.dst, &envelope.msg)
                });
                for count in multiset.values_mut() {
                    *count = 1;
                }
            }
            Network::Ordered(channels) => {
                channels.retain(|(src, dst), _| !lost(*src, *dst));
                for queue in channels.values_mut() {
                    queue.truncate(self.config.channel_capacity);
                }
            }
            // Peer messages here may be delivered again and again: that is what this
            // network checks (a replica that acts twice on one promise, accept or
            // acknowledgement). Client traffic is delivered at most once, as on the
            // non-duplicating network: a client's own retries already send a request
            // twice (the client table's deduplication is reached that way in every
            // world with retries), and a re-delivered answer only moves the client
            // between nodes, while copies kept forever multiplied the states past
            // reach (SPEC §4). The simulator duplicates the real node's client frames.
            // A message whose delivery is a no-op now and forever is dropped as above.
            // Crashes lose nothing here: re-delivery after a restart is what this
            // network models. Stateright remembers the last delivered envelope only to
            // vary fingerprints; once client traffic is removed from it, nothing that
            // happens next depends on it, so forget it rather than multiply states by
            // the number of messages.
            Network::UnorderedDuplicating(set, last_delivered) => {
                if let Some(delivered) = last_delivered.take() {
                    if !matches!(delivered.msg, ModelMsg::Peer(_)) {
                        set.remove(&delivered);
                    }
                }
                set.retain(|envelope| !is_dead_answer(envelope.dst, &envelope.msg));
            }
        }
    }
}

impl BallotModel {
    /// Kinds of action, for searches that weigh or switch them (see
    /// `ballot-check check --strategy swarm`): delivering a peer message, a client
    /// request, an answer; a drop; each timer; a crash; a recovery; the operator's
    /// request for a leadership transfer; a disk's sync.
    pub const ACTION_KINDS: usize = 12;

    /// The kind of `action`, below [`BallotModel::ACTION_KINDS`].
    ///
    /// ```
    /// use ballot_model::model::{BallotModel, ModelConfig};
    /// use stateright::actor::{ActorModelAction, Id};
    /// use stateright::Model;
    /// let model = BallotModel::new(ModelConfig::default());
    /// let crash = ActorModelAction::Crash(Id::from(0));
    /// assert!(BallotModel::action_kind(&crash) < BallotModel::ACTION_KINDS);
    /// ```
    pub fn action_kind(action: &BallotAction) -> usize {
        match action {
            ActorModelAction::Deliver { msg, .. } => match msg {
                ModelMsg::Peer(_) => 0,
                ModelMsg::Request(_) => 1,
                ModelMsg::Response(_) => 2,
            },
            ActorModelAction::Drop(_) => 3,
            ActorModelAction::Timeout(_, timer) => match timer {
                // A retry is the candidate's side of an election.
                ModelTimer::Server(Timer::Election | Timer::CandidacyRetry) => 4,
                ModelTimer::Server(Timer::Heartbeat) => 5,
                ModelTimer::Server(Timer::CheckQuorum) => 6,
                ModelTimer::Client(_) => 7,
                // The operator's requests.
                ModelTimer::TransferLeadership | ModelTimer::Reconfigure => 10,
                ModelTimer::Sync => 11,
            },
            ActorModelAction::Crash(_) => 8,
            ActorModelAction::Recover(_) | ActorModelAction::SelectRandom { .. } => 9,
        }
    }
}

impl Model for BallotModel {
    type State = BallotState;
    type Action = BallotAction;

    fn init_states(&self) -> Vec<BallotState> {
        self.inner
            .init_states()
            .into_iter()
            .map(|system| {
                let mut ledger = Ledger {
                    spec: Shared::new(ConsensusSpec::with_sessions_max(self.config.sessions_max)),
                    ..Ledger::default()
                };
                refine(&mut ledger, &system, None);
                let state = BallotState { system, ledger };
                match self.config.opening {
                    Opening::Cold => state,
                    Opening::Elected { leader, miss } => self.open(state, leader, miss),
                }
            })
            .collect()
    }

    fn actions(&self, state: &BallotState, actions: &mut Vec<BallotAction>) {
        self.inner.actions(&state.system, actions);
        let effects = InFlightEffects::default();
        actions.retain(|action| self.allowed(state, action, &effects));
    }

    fn next_state(&self, last: &BallotState, action: BallotAction) -> Option<BallotState> {
        let mut ledger = last.ledger.clone();
        match &action {
            ActorModelAction::Crash(id) => {
                let id = usize::from(*id);
                ledger.crashes += 1;
                if ledger.leader_crash_commit.is_none() && self.is_live_leader(last, id) {
                    let commit = last.servers().map(|(_, s)| s.replica.commit_index()).max();
                    ledger.leader_crash_commit = commit;
                }
            }
            ActorModelAction::Timeout(id, timer)
                if timer.is_election() && self.election_starts_ballot(last, usize::from(*id)) =>
            {
                ledger.elections += 1;
            }
            ActorModelAction::Timeout(_, ModelTimer::Reconfigure) => {
                ledger.reconfigurations += 1;
            }
            ActorModelAction::Timeout(id, ModelTimer::TransferLeadership) => {
                ledger.transfers += 1;
                ledger.handed_over = Some((usize::from(*id), ledger.elections));
            }
            _ => {}
        }
        if self.config.lazy_disks && self.any_unsynced(last) && !self.ends_sync_gap(last, &action) {
            ledger.sync_window_used += 1;
        }
        let mut system = self.inner.next_state(&last.system, action)?;
        self.bound_network(&mut system, ledger.opened);
        // Metric counters take no part in state identity, so facts the reachability
        // properties need are kept in the ledger: did this step raise a counter?
        let rose = |metric: fn(&Replica<Register>) -> u64| -> bool {
            let sum = |system: &ActorModelState<ModelActor, ModelHistory>| -> u64 {
                system
                    .actor_states
                    .iter()
                    .map(|state| match &**state {
                        ModelActorState::Server(server) => metric(&server.replica),
                        ModelActorState::Client(_) => 0,
                    })
                    .sum()
            };
            sum(&system) > sum(&last.system)
        };
        ledger.transfer_took_over = ledger.transfer_took_over
            || ledger.handed_over.is_some_and(|(from, elections)| {
                elections == ledger.elections
                    && system.actor_states.iter().enumerate().any(|(id, state)| {
                        id != from
                            && !system.crashed[id]
                            && matches!(&**state, ModelActorState::Server(server)
                                if server.replica.is_leader())
                    })
            });
        ledger.deduplicated = ledger.deduplicated || rose(Replica::deduplicated_count);
        ledger.installed_snapshot = ledger.installed_snapshot || rose(Replica::snapshots_installed);
        ledger.refused_busy = ledger.refused_busy || rose(Replica::refused_busy_count);
        ledger.refused_expired = ledger.refused_expired || rose(Replica::refused_expired_count);
        ledger.session_expired = ledger.session_expired
            || system.actor_states.iter().any(|state| {
                matches!(&**state, ModelActorState::Server(server)
                    if server.replica.client_table().floor() > 0)
            });
        refine(&mut ledger, &system, Some(&last.system));
        let mut next = BallotState { system, ledger };
        if next.ledger.sync_window_used > 0 && !self.any_unsynced(&next) {
            next.ledger.sync_window_used = 0;
        }
        Some(next)
    }

    fn format_action(&self, action: &BallotAction) -> String {
        let name = |id: &Id| {
            let index = usize::from(*id);
            if index < self.config.servers {
                format!("server {index}")
            } else {
                format!("client {}", index - self.config.servers)
            }
        };
        match action {
            ActorModelAction::Deliver { src, dst, msg } => {
                format!("{} → {} : {msg:?}", name(src), name(dst))
            }
            ActorModelAction::Drop(envelope) => format!(
                "drop {} → {} : {:?}",
                name(&envelope.src),
                name(&envelope.dst),
                envelope.msg
            ),
            ActorModelAction::Timeout(id, timer) => format!("{} timer {timer:?} fires", name(id)),
            ActorModelAction::Crash(id) => format!("{} crashes", name(id)),
            ActorModelAction::Recover(id) => format!("{} recovers", name(id)),
            ActorModelAction::SelectRandom { actor, random, .. } => {
                format!("{} picks {random:?}", name(actor))
            }
        }
    }

    fn format_step(&self, last: &BallotState, action: BallotAction) -> Option<String> {
        self.inner.format_step(&last.system, action)
    }

    /// The explorer's sequence diagram: the path's actions replayed through the inner
    /// actor model, which enables every action the wrapper does (it only holds more
    /// messages: no coalescing, no garbage removal).
    fn as_svg(&self, path: Path<BallotState, BallotAction>) -> Option<String> {
        let init = self.inner.init_states().into_iter().next()?;
        let actions = path.into_actions();
        let inner_path = Path::from_actions(&self.inner, init, actions.iter())?;
        self.inner.as_svg(inner_path)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        properties::all(&self.config)
    }

    /// Only needed on duplicating networks, where a read request can be delivered
    /// again and again and each delivery to a leader starts a new confirmation round:
    /// states past [`ModelConfig::max_read_rounds`] rounds are not expanded. Never
    /// reached on the other networks (each read is delivered at most once per retry).
    fn within_boundary(&self, state: &BallotState) -> bool {
        state
            .servers()
            .all(|(_, server)| match server.replica.role() {
                Role::Leader(leadership) => leadership.read_round <= self.config.max_read_rounds(),
                _ => true,
            })
    }
}

/// The ballot of a leader in `state`, per live server (for reports).
pub fn leaders(state: &BallotState) -> Vec<(NodeId, Ballot)> {
    state
        .live_servers()
        .filter_map(|(id, server)| server.replica.leader_ballot().map(|ballot| (id, ballot)))
        .collect()
}
