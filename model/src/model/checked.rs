//! [`BallotModel`]: the checked model. It wraps stateright's `ActorModel` and adds what
//! the actor model lacks — a total fault budget, an election budget, the partial
//! synchrony switch, coalescing of identical in-flight messages — and carries the
//! [`Ledger`] the refinement mapping needs.

use super::actors::{ModelActor, ModelActorState, ModelMsg, ModelTimer, ServerState};
use super::config::{ModelConfig, NetworkKind};
use super::history::{record_invocation, record_return, ModelHistory};
use super::properties;
use super::refinement::refine;
use crate::ballot::{Ballot, NodeId, Slot};
use crate::effect::Timer;
use crate::message::{ClientResponse, Proposal};
use crate::register::Value;
use crate::replica::Role;
use crate::spec::{ConsensusSpec, SpecViolation};
use stateright::actor::{ActorModel, ActorModelAction, ActorModelState, Id, LossyNetwork, Network};
use stateright::{Model, Path, Property};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

/// An action of the model: deliver, drop, timeout, crash, recover.
pub type BallotAction = ActorModelAction<ModelMsg, ModelTimer, ()>;

/// Bookkeeping that is part of the explored state but of no actor: fault budgets spent
/// and the abstract spec state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ledger {
    /// Crashes so far (total, not concurrent).
    pub crashes: u8,
    /// Election timeouts so far.
    pub elections: u8,
    /// Every vote ever cast: `(slot, ballot, value)` → voters.
    pub votes: BTreeMap<(Slot, Ballot, Proposal<Value>), BTreeSet<NodeId>>,
    /// The abstract state the concrete one maps to.
    pub spec: ConsensusSpec,
    /// The first spec violation found, if any.
    pub spec_violation: Option<SpecViolation>,
    /// When a leader first crashed: the highest commit index any server had then.
    pub leader_crash_commit: Option<Slot>,
    /// Some server answered a retried request from its client table (the replica's
    /// metric counter takes no part in state identity, so the fact is kept here).
    pub deduplicated: bool,
}

/// A state of the checked model.
#[derive(Clone, Debug, PartialEq)]
pub struct BallotState {
    /// Actors, network, timers, storage and history, as stateright keeps them.
    pub system: ActorModelState<ModelActor, ModelHistory>,
    /// Budgets and the abstract spec state.
    pub ledger: Ledger,
}

/// The checker tells states apart by this hash alone. Stateright 0.31 hashes each
/// actor's timer set as its sorted element hashes with no length, so two states whose
/// actors hold the same timers in different places (client 0 waiting to retry versus
/// client 1) hash alike and one of them would never be explored. Hashing each set's
/// size as well makes the encoding unambiguous.
impl Hash for BallotState {
    fn hash<H: Hasher>(&self, hasher: &mut H) {
        self.system.hash(hasher);
        for timers in &self.system.timers_set {
            timers.iter().count().hash(hasher);
        }
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
/// assert_eq!(checker.unique_state_count(), 3_307);
/// ```
#[derive(Clone)]
pub struct BallotModel {
    /// The configuration checked.
    pub config: ModelConfig,
    inner: ActorModel<ModelActor, ModelConfig, ModelHistory>,
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
            }))
            .actors((0..config.clients).map(|client| ModelActor::Client {
                client: client as u64,
                servers: config.servers,
                script: config.script_for(client),
                retries: config.client_retries,
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
        BallotModel { config, inner }
    }

    fn server<'a>(&self, state: &'a BallotState, id: usize) -> Option<&'a ServerState> {
        match state.system.actor_states.get(id).map(|s| &**s) {
            Some(ModelActorState::Server(server)) => Some(server),
            _ => None,
        }
    }

    fn is_live_leader(&self, state: &BallotState, id: NodeId) -> bool {
        !state.system.crashed[id]
            && self
                .server(state, id)
                .is_some_and(|server| server.replica.is_leader())
    }

    /// Whether the wrapper lets an action the actor model offers happen: fault budgets,
    /// and the partial-synchrony assumption when spurious elections are off.
    fn allowed(&self, state: &BallotState, action: &BallotAction) -> bool {
        let config = &self.config;
        match action {
            ActorModelAction::Crash(id) => {
                usize::from(*id) < config.servers
                    && (state.ledger.crashes as usize) < config.max_crashes
            }
            ActorModelAction::Timeout(id, ModelTimer::Server(Timer::Election)) => {
                if state.ledger.elections as usize >= config.max_elections {
                    return false;
                }
                if config.timing.spurious_elections() {
                    return true;
                }
                // Partial synchrony: a node times out only when no live leader exists
                // whose ballot it would accept (that leader's messages would reach it
                // within the election timeout), and not while messages from or to it are
                // still travelling (its own candidacy may yet succeed).
                if self.has_in_flight(state, *id) {
                    return false;
                }
                let id = usize::from(*id);
                let Some(me) = self.server(state, id) else {
                    return false;
                };
                let promised = me.replica.durable().promised;
                !state.live_servers().any(|(_, server)| {
                    server
                        .replica
                        .leader_ballot()
                        .is_some_and(|ballot| ballot >= promised)
                })
            }
            ActorModelAction::Timeout(id, ModelTimer::Server(Timer::Heartbeat)) => {
                if config.timing.early_ticks() {
                    return true;
                }
                // Partial synchrony: the heartbeat interval exceeds the network delay, so
                // a tick comes after the leader's previous messages arrived (or were
                // lost); and since quorum checks cannot fail spuriously here, a tick only
                // matters when a live follower lacks commits or votes.
                let leader = usize::from(*id);
                !self.has_in_flight(state, *id) && self.follower_lags(state, leader)
            }
            ActorModelAction::Timeout(id, ModelTimer::ClientRetry) => {
                if config.timing.early_ticks() {
                    return true;
                }
                // Partial synchrony: a client times out only when its server cannot
                // answer (crashed, or not leading and its answer already consumed).
                let client_index = usize::from(*id);
                let Some(ModelActorState::Client(client)) =
                    state.system.actor_states.get(client_index).map(|s| &**s)
                else {
                    return true;
                };
                !self.has_in_flight(state, *id) && !self.is_live_leader(state, client.target)
            }
            ActorModelAction::Timeout(_, ModelTimer::Server(Timer::CheckQuorum)) => {
                if config.timing.spurious_elections() {
                    return true;
                }
                // Partial synchrony: a leader's quorum check fails only when a majority
                // is really unreachable, i.e. crashed.
                let live = state
                    .system
                    .crashed
                    .iter()
                    .take(config.servers)
                    .filter(|c| !**c)
                    .count();
                live < crate::ballot::quorum(config.servers)
            }
            _ => true,
        }
    }

    /// True if a message from or to actor `id` is in flight. Always false on a
    /// duplicating network, where every message ever sent stays deliverable: "in
    /// flight" means nothing there, so the timing guards that use it do not apply.
    fn has_in_flight(&self, state: &BallotState, id: Id) -> bool {
        if self.config.network == NetworkKind::UnorderedDuplicating {
            return false;
        }
        state
            .system
            .network
            .iter_deliverable()
            .any(|envelope| envelope.src == id || envelope.dst == id)
    }

    /// True if some live follower of leader `leader` lacks a commit or a vote the
    /// leader has: the case where a heartbeat tick changes something.
    fn follower_lags(&self, state: &BallotState, leader: NodeId) -> bool {
        let Some(leader_state) = self.server(state, leader) else {
            return false;
        };
        let Role::Leader(leadership) = leader_state.replica.role() else {
            return false;
        };
        let commit = leader_state.replica.commit_index();
        state.live_servers().any(|(id, follower)| {
            id != leader
                && (follower.replica.commit_index() < commit
                    || leadership
                        .in_flight
                        .values()
                        .any(|slot| !slot.acks.contains(&id)))
        })
    }

    /// Bounds the network after a step (see [`NetworkKind`]), and removes answers no
    /// client will ever act on: delivering them would change nothing, now or later
    /// (a client's sequence number only grows), so removing them only merges states
    /// that differ in garbage.
    fn bound_network(&self, system: &mut ActorModelState<ModelActor, ModelHistory>) {
        let actor_states = &system.actor_states;
        let is_dead_answer =
            |dst: Id, msg: &ModelMsg| match (actor_states.get(usize::from(dst)).map(|s| &**s), msg)
            {
                (Some(ModelActorState::Client(client)), ModelMsg::Response(response)) => {
                    response.seq() <= client.op_index as u64
                        || matches!(response, ClientResponse::Redirect { leader: None, .. })
                }
                (Some(ModelActorState::Server(server)), ModelMsg::Peer(message)) => {
                    server.replica.is_obsolete(message)
                }
                _ => false,
            };
        match &mut system.network {
            Network::UnorderedNonDuplicating(multiset) => {
                multiset.retain(|envelope, _| !is_dead_answer(envelope.dst, &envelope.msg));
                for count in multiset.values_mut() {
                    *count = 1;
                }
            }
            Network::Ordered(channels) => {
                for queue in channels.values_mut() {
                    queue.truncate(self.config.channel_capacity);
                }
            }
            // Stateright remembers the last delivered envelope only to vary
            // fingerprints; nothing that happens next depends on it, so forget it
            // rather than multiply states by the number of messages.
            Network::UnorderedDuplicating(_, last_delivered) => *last_delivered = None,
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
                let mut ledger = Ledger::default();
                refine(&mut ledger, self.config.servers, &system);
                BallotState { system, ledger }
            })
            .collect()
    }

    fn actions(&self, state: &BallotState, actions: &mut Vec<BallotAction>) {
        self.inner.actions(&state.system, actions);
        actions.retain(|action| self.allowed(state, action));
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
            ActorModelAction::Timeout(_, ModelTimer::Server(Timer::Election)) => {
                ledger.elections += 1;
            }
            _ => {}
        }
        let mut system = self.inner.next_state(&last.system, action)?;
        self.bound_network(&mut system);
        if !ledger.deduplicated {
            let count = |system: &ActorModelState<ModelActor, ModelHistory>| -> u64 {
                system
                    .actor_states
                    .iter()
                    .map(|state| match &**state {
                        ModelActorState::Server(server) => server.replica.deduplicated_count(),
                        ModelActorState::Client(_) => 0,
                    })
                    .sum()
            };
            ledger.deduplicated = count(&system) > count(&last.system);
        }
        refine(&mut ledger, self.config.servers, &system);
        Some(BallotState { system, ledger })
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
        properties::all()
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
