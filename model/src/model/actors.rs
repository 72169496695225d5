//! Thin stateright adapters: servers drive the core; clients issue a script of
//! operations and retry and redirect like real clients. No protocol decision is made
//! here.

use super::operator::{next_change, ModelChange};
use super::shared::Digest;
use super::Shared;
use crate::ballot::ClientId;
use crate::client_session::{
    ClientSession, Operation, Outcome, SessionEffect, SessionInput, SessionTimer,
};
use crate::durable::DurableState;
use crate::effect::{Effect, Input, Timer};
use crate::message::{ClientRequest, ClientResponse, Message, Proposal};
use crate::register::{Register, RegisterOp, Value};
use crate::replica::{ClusterConfig, Replica};
use crate::snapshot::Snapshot;
use stateright::actor::{model_timeout, Actor, Id, Out};
use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Everything on the model's network.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ModelMsg {
    /// Server to server. Shared: stateright copies the whole network on every step,
    /// and a peer message (an accept with its proposal, a promise with its log) is the
    /// largest thing on it.
    Peer(Arc<Message<Register>>),
    /// Client to server.
    Request(ClientRequest<Value, ()>),
    /// Server to client.
    Response(ClientResponse<Option<Value>, Option<Value>>),
}

/// Timers of every actor.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ModelTimer {
    /// A server's timer.
    Server(Timer),
    /// A client session's timer.
    Client(SessionTimer),
    /// The disk finishes an fsync (with [`crate::model::ModelConfig::lazy_disks`]):
    /// what the server persisted becomes durable, and the sends and replies that waited
    /// for it leave. Armed while something persisted is not yet durable.
    Sync,
    /// Not a timer but the operator: "hand your leadership over"
    /// ([`Input::TransferLeadership`]). Armed on every server when the model allows
    /// transfers; the model lets it fire only at a live leader, within its budget.
    TransferLeadership,
    /// Not a timer but the operator: "make the next change of the script"
    /// ([`Input::Reconfigure`]). Armed on every server when the model has a script;
    /// the model lets it fire only at a live leader with a change to make, within its
    /// budget.
    Reconfigure,
}

impl ModelTimer {
    /// This timer's bit in a set of timers: distinct for every timer, so a set's bits
    /// identify it exactly (how a state's hash encodes an actor's armed timers).
    ///
    /// ```
    /// use ballot_model::model::ModelTimer;
    /// use ballot_model::Timer;
    /// assert_ne!(ModelTimer::Server(Timer::Election).bit(), ModelTimer::Sync.bit());
    /// ```
    pub fn bit(&self) -> u16 {
        let index = match self {
            ModelTimer::Server(Timer::Election) => 0,
            ModelTimer::Server(Timer::Heartbeat) => 1,
            ModelTimer::Server(Timer::CheckQuorum) => 2,
            ModelTimer::Server(Timer::CandidacyRetry) => 3,
            ModelTimer::Client(SessionTimer::Attempt) => 4,
            ModelTimer::Client(SessionTimer::Backoff) => 5,
            ModelTimer::Client(SessionTimer::AwaitLeader) => 6,
            ModelTimer::Sync => 7,
            ModelTimer::TransferLeadership => 8,
            ModelTimer::Reconfigure => 9,
        };
        1 << index
    }

    /// True for the timers that run elections: a follower's election timer and a
    /// candidate's retry (which starts a new ballot if its own was outbid). The
    /// election budget and the election timing rule apply to both alike.
    pub fn is_election(&self) -> bool {
        matches!(
            self,
            ModelTimer::Server(Timer::Election | Timer::CandidacyRetry)
        )
    }
}

/// What a server's disk holds: the fold of every `Persist` the core emitted, and the
/// latest snapshot saved.
///
/// Both parts are shared: stateright copies every actor's storage on every step, and
/// most steps persist nothing, so a copy is two reference counts, not a log.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stored {
    /// The durable state as persisted.
    pub durable: Shared<DurableState<Value>>,
    /// The latest durable snapshot (the initial state until the first one).
    pub snapshot: Shared<Snapshot<Register>>,
}

impl Default for Stored {
    fn default() -> Self {
        Stored {
            durable: Shared::default(),
            snapshot: Shared::new(Snapshot::initial(Register::default())),
        }
    }
}

impl Stored {
    /// True if slot `slot`'s value survives a crash here: its vote is in the durable
    /// log, or a saved snapshot covers it.
    pub fn holds(
        &self,
        slot: crate::ballot::Slot,
        holds_value: impl Fn(&Proposal<Value>) -> bool,
    ) -> bool {
        self.snapshot.slot >= slot
            || self
                .durable
                .accepted
                .get(&slot)
                .is_some_and(|entry| holds_value(&entry.proposal))
    }
}

/// A server's state in the model: the core, plus its disk as last saved.
///
/// `stored` is kept apart from `replica`'s own copy of its durable state so that a core
/// that changed durable state without persisting it (see the `PromiseNotPersisted`
/// mutant) loses that change on a crash, exactly as a real node would.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerState {
    /// The protocol state.
    pub replica: Replica<Register>,
    /// The disk as written: what a sync makes durable. Durable at once without
    /// [`crate::model::ModelConfig::lazy_disks`].
    pub stored: Stored,
    /// With lazy disks: `stored` holds writes not yet durable.
    pub unsynced: bool,
    /// With lazy disks: sends and replies waiting for the sync of what was persisted
    /// before them, in order (stateright ids and messages).
    pub outbox: Vec<(usize, ModelMsg)>,
    /// The digest of the fields above, computed when first hashed.
    pub(super) digest: Digest,
}

/// A server's state is hashed as a digest of its fields, computed once and kept with
/// it: a step changes one actor, and the others keep their very state (stateright
/// shares it between a state and its successors), so every successor's fingerprint
/// would otherwise hash every unchanged replica, log and client table again.
impl Hash for ServerState {
    fn hash<H: Hasher>(&self, hasher: &mut H) {
        hasher.write_u64(self.digest.of(|| self.digest_now()));
    }
}

impl ServerState {
    /// The state as the model starts (or restarts) a server: `replica` over `stored`.
    pub(super) fn new(replica: Replica<Register>, stored: Stored) -> Self {
        ServerState {
            replica,
            stored,
            unsynced: false,
            outbox: Vec::new(),
            digest: Digest::default(),
        }
    }

    fn digest_now(&self) -> u64 {
        super::fingerprint(&(&self.replica, &self.stored, self.unsynced, &self.outbox))
    }
}

/// A client's progress through its script: which operation, and the session that
/// carries it (the core's [`ClientSession`], the one the node's clients run).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientState {
    /// Index of the operation in progress; equal to the script's length when done
    /// (every operation answered, or one whose outcome the client cannot know).
    pub op_index: usize,
    /// The session.
    pub session: ModelSession,
}

/// The session of a model client: register writes and reads.
pub type ModelSession = ClientSession<Value, ()>;

/// What a model client's session asks its actor to do.
type ModelSessionEffect = SessionEffect<Value, (), Option<Value>, Option<Value>>;

/// Per-actor state.
// Stateright keeps each actor's state behind an `Arc` already; boxing the large variant
// would add an allocation per step for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ModelActorState {
    /// A server.
    Server(ServerState),
    /// A client.
    Client(ClientState),
}

/// The model's actors. Servers are ids `0..servers`; client `c` is id `servers + c`.
#[derive(Clone, Debug)]
pub enum ModelActor {
    /// A server running the core.
    Server {
        /// The core's configuration.
        cluster: ClusterConfig,
        /// Whether the driver compacts (see [`crate::model::ModelConfig::compaction`]).
        compaction: bool,
        /// Whether the operator may ask for leadership transfers
        /// ([`crate::model::ModelConfig::max_transfers`]).
        transfers: bool,
        /// Whether persists become durable only at a sync of their own
        /// ([`crate::model::ModelConfig::lazy_disks`]).
        lazy_disks: bool,
        /// The operator's membership changes, asked in order
        /// ([`crate::model::ModelConfig::reconfigurations`]).
        reconfigurations: Vec<ModelChange>,
    },
    /// A client running a script.
    Client {
        /// Its client id.
        client: ClientId,
        /// Number of servers (to address and rotate among them).
        servers: usize,
        /// Its operations.
        script: Vec<RegisterOp>,
        /// Retries per operation; `None` for no limit.
        retries: Option<u8>,
        /// Which broken variant its session runs (only with the `mutants` feature).
        #[cfg(feature = "mutants")]
        mutant: Option<crate::mutant::Mutant>,
    },
}

impl ModelActor {
    /// Feeds one input to a server's core and turns its effects into stateright
    /// commands. Invalid peer input leaves the state unchanged (as the node drops it).
    fn drive_server(
        &self,
        state: &mut Cow<ModelActorState>,
        input: Input<Register>,
        o: &mut Out<Self>,
    ) {
        let (
            ModelActorState::Server(server),
            ModelActor::Server {
                compaction,
                lazy_disks,
                ..
            },
        ) = (&**state, self)
        else {
            return;
        };
        let mut next = server.clone();
        let mut effects = Vec::new();
        if next.replica.step(input, &mut effects).is_err() {
            return;
        }
        if *compaction && next.replica.applied_index() > next.replica.durable().compacted {
            // The driver's compaction policy: save the applied state, then tell the core
            // it is durable. Both land in this one step, after the step's own effects.
            let snapshot = next.replica.snapshot();
            let through = snapshot.slot;
            effects.push(Effect::SaveSnapshot(snapshot));
            let _ = next.replica.step(Input::Compact { through }, &mut effects);
        }
        let acted = !effects.is_empty();
        emit(&mut next, effects, *lazy_disks, o);
        // A step that emitted anything took effect, even if what changed (a metric
        // counter) takes no part in equality: keep the new state.
        if acted || next != *server {
            *state = Cow::Owned(ModelActorState::Server(next));
        }
    }
}

/// Maps the core's effects onto stateright commands, in order. Stateright applies one
/// handler's commands atomically, so with eager disks persist-before-send holds
/// trivially here; the runtime must honour it explicitly (see `Effect`). With lazy
/// disks ([`crate::model::ModelConfig::lazy_disks`]) the adapter honours it as the
/// runtime does: persists are written, not durable, until a [`ModelTimer::Sync`], and a
/// send or reply emitted while anything written is not durable waits for that sync,
/// except a [`Effect::SendAhead`], which leaves at once.
fn emit(
    server: &mut ServerState,
    effects: Vec<Effect<Register>>,
    lazy_disks: bool,
    o: &mut Out<ModelActor>,
) {
    let servers = server.replica.config().node_count;
    let was_unsynced = server.unsynced;
    let mut persisted = false;
    for effect in effects {
        let (to, msg) = match effect {
            Effect::Persist(update) => {
                server.stored.durable.make_mut().apply(&update);
                persisted = true;
                continue;
            }
            Effect::SaveSnapshot(snapshot) => {
                if snapshot.slot > server.stored.snapshot.slot {
                    server.stored.snapshot = Shared::new(snapshot);
                    persisted = true;
                }
                continue;
            }
            Effect::Send { to, message } => (to, ModelMsg::Peer(Arc::new(message))),
            // Depends on no persist: leaves at once, even while a sync is pending.
            Effect::SendAhead { to, message } => {
                o.send(Id::from(to), ModelMsg::Peer(Arc::new(message)));
                continue;
            }
            Effect::Reply { client, response } => (
                usize::from(client_actor_id(servers, client)),
                ModelMsg::Response(response),
            ),
            Effect::SetTimer(timer) => {
                o.set_timer(ModelTimer::Server(timer), model_timeout());
                continue;
            }
            Effect::CancelTimer(timer) => {
                o.cancel_timer(ModelTimer::Server(timer));
                continue;
            }
            // The election, transfer and reconfiguration budgets are counted by the
            // model itself (`BallotModel`).
            Effect::Applied { .. }
            | Effect::Campaigning { .. }
            | Effect::Removed { .. }
            | Effect::LeadershipTransfer(_)
            | Effect::Reconfiguration(_) => continue,
        };
        if lazy_disks && (persisted || server.unsynced) && !release_before_sync(server) {
            // A copy of a message already waiting is dropped, as identical messages in
            // flight on one channel coalesce (SPEC §4): Paxos tolerates the loss, and
            // otherwise acknowledgements of repeated heartbeats would pile up without
            // bound while a sync waits.
            if !server.outbox.contains(&(to, msg.clone())) {
                server.outbox.push((to, msg));
            }
        } else {
            o.send(Id::from(to), msg);
        }
    }
    if !persisted {
        return;
    }
    if lazy_disks {
        server.unsynced = true;
        if !was_unsynced {
            o.set_timer(ModelTimer::Sync, model_timeout());
        }
    } else {
        o.save(server.stored.clone());
    }
}

/// With lazy disks: the fsync completes. What was written is durable, and what waited
/// for it leaves, in order.
fn sync(server: &mut ServerState, o: &mut Out<ModelActor>) {
    o.save(server.stored.clone());
    server.unsynced = false;
    for (to, msg) in server.outbox.drain(..) {
        o.send(Id::from(to), msg);
    }
}

/// The `release-before-sync` mutant: the runtime sends without waiting for its fsync.
#[cfg_attr(not(feature = "mutants"), allow(unused_variables))]
fn release_before_sync(server: &ServerState) -> bool {
    crate::mutant::mutant!(server.replica.config(), ReleaseBeforeSync)
}

/// The stateright id of client `client`.
pub fn client_actor_id(servers: usize, client: ClientId) -> Id {
    Id::from(servers + client as usize)
}

impl Actor for ModelActor {
    type Msg = ModelMsg;
    type State = ModelActorState;
    type Timer = ModelTimer;
    type Storage = Stored;
    type Random = ();

    fn name(&self) -> String {
        match self {
            ModelActor::Server { .. } => "server".into(),
            ModelActor::Client { .. } => "client".into(),
        }
    }

    fn on_start(&self, id: Id, storage: &Option<Self::Storage>, o: &mut Out<Self>) -> Self::State {
        match self {
            ModelActor::Server {
                cluster,
                transfers,
                lazy_disks,
                reconfigurations,
                ..
            } => {
                if *transfers {
                    o.set_timer(ModelTimer::TransferLeadership, model_timeout());
                }
                if !reconfigurations.is_empty() {
                    o.set_timer(ModelTimer::Reconfigure, model_timeout());
                }
                // A restart finds the disk as the last save left it: a node whose disk
                // was lost must not start as the member it was (the node's identity
                // check refuses it), which the `WipedVoter` mutant breaks.
                let wiped = crate::mutant::mutant!(cluster, WipedVoter) && storage.is_some();
                let stored = if wiped {
                    o.save(Stored::default()); // The disk is empty from now on.
                    Stored::default()
                } else {
                    storage.clone().unwrap_or_default()
                };
                let restored = Replica::restore(
                    usize::from(id),
                    cluster.clone(),
                    Snapshot::clone(&stored.snapshot),
                    DurableState::clone(&stored.durable),
                );
                // The adapter saves every snapshot before it compacts, so the disk it
                // kept is always consistent.
                let (replica, effects) = restored.expect("the model's disk is consistent");
                let mut server = ServerState::new(replica, stored);
                emit(&mut server, effects, *lazy_disks, o);
                ModelActorState::Server(server)
            }
            ModelActor::Client {
                client,
                servers,
                retries,
                ..
            } => {
                // A client starts at a server of its own, as a node's clients start at
                // that node.
                let home = *client as usize % servers;
                let session = ClientSession::new(*client, *servers, home, *retries)
                    .expect("a model has servers");
                #[cfg(feature = "mutants")]
                let session = session.with_mutant(match self {
                    ModelActor::Client { mutant, .. } => *mutant,
                    ModelActor::Server { .. } => None,
                });
                let mut state = ClientState {
                    op_index: 0,
                    session,
                };
                self.start_next(&mut state, o);
                ModelActorState::Client(state)
            }
        }
    }

    fn on_msg(
        &self,
        _id: Id,
        state: &mut Cow<Self::State>,
        src: Id,
        msg: Self::Msg,
        o: &mut Out<Self>,
    ) {
        match (self, msg) {
            (ModelActor::Server { .. }, ModelMsg::Peer(message)) => {
                let input = Input::Message {
                    from: usize::from(src),
                    message: Arc::unwrap_or_clone(message),
                };
                self.drive_server(state, input, o);
            }
            (ModelActor::Server { .. }, ModelMsg::Request(request)) => {
                self.drive_server(state, Input::Client(request), o);
            }
            (ModelActor::Client { .. }, ModelMsg::Response(response)) => {
                self.drive_client(state, SessionInput::Answer(response), o);
            }
            _ => {}
        }
    }

    fn on_timeout(
        &self,
        _id: Id,
        state: &mut Cow<Self::State>,
        timer: &Self::Timer,
        o: &mut Out<Self>,
    ) {
        match (self, timer) {
            (ModelActor::Server { .. }, ModelTimer::Server(timer)) => {
                self.drive_server(state, Input::Timer(*timer), o);
            }
            (ModelActor::Server { .. }, ModelTimer::Sync) => {
                if let ModelActorState::Server(server) = state.to_mut() {
                    sync(server, o);
                }
            }
            (ModelActor::Server { .. }, ModelTimer::TransferLeadership) => {
                // The operator may ask again (the model's budget bounds how often).
                o.set_timer(ModelTimer::TransferLeadership, model_timeout());
                self.drive_server(state, Input::TransferLeadership { to: None }, o);
            }
            (
                ModelActor::Server {
                    reconfigurations, ..
                },
                ModelTimer::Reconfigure,
            ) => {
                o.set_timer(ModelTimer::Reconfigure, model_timeout());
                let next = match &**state {
                    ModelActorState::Server(server) => next_change(
                        reconfigurations,
                        server.replica.membership(),
                        server.replica.id(),
                    ),
                    ModelActorState::Client(_) => None,
                };
                if let Some(change) = next {
                    self.drive_server(state, Input::Reconfigure(change), o);
                }
            }
            (ModelActor::Client { .. }, ModelTimer::Client(timer)) => {
                self.drive_client(state, SessionInput::Timer(*timer), o);
            }
            _ => {}
        }
    }
}

impl ModelActor {
    /// Feeds one input to a client's session and turns its effects into stateright
    /// commands; a finished operation starts the script's next one. The state is
    /// left untouched when the session ignored the input.
    fn drive_client(
        &self,
        state: &mut Cow<ModelActorState>,
        input: SessionInput<Value, (), Option<Value>, Option<Value>>,
        o: &mut Out<Self>,
    ) {
        let (ModelActorState::Client(current), ModelActor::Client { script, .. }) =
            (&**state, self)
        else {
            return;
        };
        if current.op_index >= script.len() {
            return; // Done: nothing more to do or learn.
        }
        let mut next = current.clone();
        let mut effects = Vec::new();
        if next.session.step(input, &mut effects).is_err() {
            return;
        }
        if effects.is_empty() {
            return;
        }
        self.run_client_effects(&mut next, effects, o);
        *state = Cow::Owned(ModelActorState::Client(next));
    }

    /// Starts the script's next operation, if any.
    fn start_next(&self, state: &mut ClientState, o: &mut Out<Self>) {
        let ModelActor::Client { script, .. } = self else {
            return;
        };
        let Some(op) = script.get(state.op_index) else {
            return;
        };
        let op = match op {
            RegisterOp::Write(value) => Operation::Write(*value),
            RegisterOp::Read => Operation::Read(()),
        };
        let mut effects = Vec::new();
        let start = SessionInput::Start {
            op,
            seq_at_least: 0,
            leader: None,
        };
        if state.session.step(start, &mut effects).is_ok() {
            self.run_client_effects(state, effects, o);
        }
    }

    /// Maps a session's effects onto stateright commands, in order.
    fn run_client_effects(
        &self,
        state: &mut ClientState,
        effects: Vec<ModelSessionEffect>,
        o: &mut Out<Self>,
    ) {
        let ModelActor::Client { script, .. } = self else {
            return;
        };
        for effect in effects {
            match effect {
                SessionEffect::Send { to, request } => {
                    o.send(Id::from(to), ModelMsg::Request(request));
                }
                SessionEffect::SetTimer(timer) => {
                    o.set_timer(ModelTimer::Client(timer), model_timeout());
                }
                SessionEffect::CancelTimer(timer) => o.cancel_timer(ModelTimer::Client(timer)),
                SessionEffect::Finished(Outcome::Answered(_)) => {
                    state.op_index += 1;
                    self.start_next(state, o);
                }
                // An operation whose outcome is unknown stays pending in the history
                // (it may or may not have taken effect), so the client stops there: a
                // history has one operation in flight per client.
                SessionEffect::Finished(Outcome::Refused(_) | Outcome::Unknown(_)) => {
                    state.op_index = script.len();
                }
            }
        }
    }
}
