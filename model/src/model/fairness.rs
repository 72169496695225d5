//! Fairness and the timing assumption, as data: what every action of the model *is*
//! to the liveness checker, and when a timer firing is timely.
//!
//! Paxos cannot be live in a purely asynchronous system (Fischer, Lynch and Paterson):
//! duelling candidates can outbid each other forever, and a timer can always fire just
//! before the message that would have made it unnecessary. Progress needs two
//! assumptions, both stated here in code and in SPEC.md ("Liveness"):
//!
//! 1. **Fairness.** A message between two live, connected nodes that stays deliverable
//!    is eventually delivered (weak fairness, [`ActionClass::Weak`]), and an armed
//!    timer of a live node that is due again and again eventually fires (strong
//!    fairness, [`ActionClass::Strong`]); one [`Obligation`] per message or timer.
//! 2. **Faults stop (partial synchrony).** Crashes, message loss, deliveries over links
//!    that are cut for good, and *untimely* election and quorum-check timeouts are
//!    faults ([`ActionClass::Fault`]): any finite number may happen, but a run the
//!    checker calls live must make progress once they stop. When a firing is timely is
//!    decided by [`BallotModel::timer_is_timely`] — the same function the `stable`
//!    timing mode uses to prune untimely firings, so the safety run and the liveness
//!    argument rest on one definition.

use super::actors::{ModelActor, ModelActorState, ModelMsg, ModelTimer};
use super::checked::{BallotAction, BallotModel, BallotState};
use super::config::NetworkKind;
use super::fingerprint;
use crate::ballot::NodeId;
use crate::client_session::SessionTimer;
use crate::effect::Timer;
use crate::replica::Role;
use stateright::actor::{Actor, ActorModelAction, Envelope, Id, Out};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Mutex;

/// A weak-fairness obligation: if it stays enabled, it is eventually taken.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Obligation {
    /// This message, on a link that holds, is delivered.
    Deliver {
        /// Sender.
        src: Id,
        /// Receiver.
        dst: Id,
        /// The message.
        msg: ModelMsg,
    },
    /// This armed timer of a live actor fires (when timely).
    Timer {
        /// Its actor.
        actor: Id,
        /// The timer.
        timer: ModelTimer,
    },
}

/// What an action is to a liveness checker, for any stateright model: one vocabulary,
/// shared by this model's [`ActionClass`] and the generic checker
/// (`ballot_checker::liveness`), which re-exports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Fairness<K> {
    /// A fault: allowed finitely often, never part of the infinite suffix of a run the
    /// liveness properties speak about (never part of a counterexample's cycle).
    Fault,
    /// Weakly fair under this key: if the key stays enabled, it is eventually taken.
    Weak(K),
    /// Strongly fair under this key: if the key is enabled again and again, it is
    /// eventually taken.
    Strong(K),
    /// Neither obliged nor a fault: may happen or not.
    Free,
}

/// For one state: whether delivering each message in flight now would change
/// anything (the receiver's state, or what it sends), found out on first need and
/// remembered, so that deciding the timeliness of every timer in a state runs each
/// receiver's handler on each message at most once. Indexed by the message's place in
/// the network's iteration order, which is fixed for one state.
#[derive(Default)]
pub(super) struct InFlightEffects(RefCell<Vec<Option<bool>>>);

impl InFlightEffects {
    /// Whether the message at `index` changes anything: remembered, or found by `find`.
    fn of(&self, index: usize, find: impl FnOnce() -> bool) -> bool {
        if let Some(Some(known)) = self.0.borrow().get(index) {
            return *known;
        }
        let found = find();
        let mut known = self.0.borrow_mut();
        if index >= known.len() {
            known.resize(index + 1, None);
        }
        known[index] = Some(found);
        found
    }
}

/// What identifies a delivery's effect: the receiver and the sender, and the
/// fingerprints of the receiver's state and of the message. The handler is a pure
/// function of exactly these (each actor's code and configuration are fixed for a
/// model), so its effect is too.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct DeliveryKey {
    dst: Id,
    src: Id,
    receiver: u64,
    msg: u64,
}

/// Shards of [`DeliveryEffects`], so that worker threads rarely wait for each other.
const DELIVERY_SHARDS: usize = 16;
/// Effects a shard remembers before it forgets them all: 16 shards of 16,384 keep at
/// most 262,144 (each shard's table then has 32,768 buckets of 40 bytes: about 21 MB).
const DELIVERY_SHARD_MAX: usize = 1 << 14;

/// Whether delivering a message changes anything, remembered across states: states
/// that differ elsewhere hold the same receiver in the same state with the same message
/// in flight again and again, and running the receiver's handler on a copy of its
/// state is the costliest part of deciding whether a timer is timely. Bounded: a shard
/// that fills is emptied. A model's clone starts empty.
pub(super) struct DeliveryEffects {
    shards: [Mutex<HashMap<DeliveryKey, bool, ahash::RandomState>>; DELIVERY_SHARDS],
}

impl Default for DeliveryEffects {
    fn default() -> Self {
        DeliveryEffects {
            shards: std::array::from_fn(|_| Mutex::default()),
        }
    }
}

impl Clone for DeliveryEffects {
    fn clone(&self) -> Self {
        DeliveryEffects::default()
    }
}

impl DeliveryEffects {
    /// The effect remembered for `key`, or found by `find` (outside the lock) and
    /// remembered.
    fn get_or_find(&self, key: DeliveryKey, find: impl FnOnce() -> bool) -> bool {
        let shard = &self.shards[(key.receiver ^ key.msg) as usize % DELIVERY_SHARDS];
        let lock = || {
            shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        };
        if let Some(known) = lock().get(&key) {
            return *known;
        }
        let found = find();
        let mut known = lock();
        if known.len() >= DELIVERY_SHARD_MAX {
            known.clear();
        }
        known.insert(key, found);
        found
    }
}

/// What an action of this model is to the liveness checker: crashes, losses, deliveries
/// over links cut for good and untimely timeouts are faults; message deliveries are
/// weakly fair; timers are strongly fair (a real timer that keeps coming due fires, even
/// when the model's "messages first" ordering keeps briefly making it not due: another
/// node's retransmission in flight, say); a crashed node recovering is free.
pub type ActionClass = Fairness<Obligation>;

impl BallotModel {
    /// Classifies `action`, enabled in `state`, for the liveness checker.
    ///
    /// ```
    /// use ballot_model::model::{ActionClass, BallotModel, ModelConfig};
    /// use stateright::Model;
    /// let model = BallotModel::new(ModelConfig::default());
    /// let init = &model.init_states()[0];
    /// let mut actions = Vec::new();
    /// model.actions(init, &mut actions);
    /// for action in &actions {
    ///     // Nothing is lost or cut at the start; only crashes are faults.
    ///     let fault = matches!(model.classify(init, action), ActionClass::Fault);
    ///     assert_eq!(fault, matches!(action, stateright::actor::ActorModelAction::Crash(_)));
    /// }
    /// ```
    pub fn classify(&self, state: &BallotState, action: &BallotAction) -> ActionClass {
        match action {
            // An operator's request, like a crash, may happen a finite number of times
            // and need never happen: no run is unfair for lacking one.
            ActorModelAction::Crash(_)
            | ActorModelAction::Drop(_)
            | ActorModelAction::Timeout(
                _,
                ModelTimer::TransferLeadership | ModelTimer::Reconfigure,
            ) => ActionClass::Fault,
            ActorModelAction::Recover(_) | ActorModelAction::SelectRandom { .. } => {
                ActionClass::Free
            }
            ActorModelAction::Deliver { src, dst, msg } => {
                if self.linked(*src, *dst) {
                    ActionClass::Weak(Obligation::Deliver {
                        src: *src,
                        dst: *dst,
                        msg: msg.clone(),
                    })
                } else {
                    ActionClass::Fault
                }
            }
            ActorModelAction::Timeout(id, timer) => {
                // Only timings that let these timers fire at any moment enable an untimely
                // one (`BallotModel::allowed`); otherwise being enabled means being timely,
                // and asking again would cost a scan of the network per action.
                let spurious = matches!(
                    timer,
                    ModelTimer::Server(
                        Timer::Election | Timer::CandidacyRetry | Timer::CheckQuorum
                    )
                ) && self.config.timing.spurious_elections()
                    && !self.timer_is_timely(state, *id, timer);
                if spurious {
                    ActionClass::Fault
                } else {
                    ActionClass::Strong(Obligation::Timer {
                        actor: *id,
                        timer: timer.clone(),
                    })
                }
            }
        }
    }

    /// Obligations that are due in `state` but that the model's bounds keep from being
    /// taken: an election that is timely but would exceed the election budget. The
    /// liveness checker counts them as enabled and never taken, so a cycle that needs
    /// them is not reported as a violation, and reports the states where they occur as
    /// cut by a bound (the verdict is then "unknown", never "holds").
    pub fn cut_obligations(&self, state: &BallotState) -> Vec<Obligation> {
        if (state.ledger.elections as usize) < self.config.max_elections {
            return Vec::new();
        }
        let effects = InFlightEffects::default();
        state
            .live_servers()
            .filter(|(_, server)| server.replica.election_timeout_starts_ballot())
            .flat_map(|(id, _)| {
                let effects = &effects;
                state.system.timers_set[id]
                    .iter()
                    .filter(|timer| timer.is_election())
                    .filter(move |timer| {
                        self.timer_is_timely_in(state, Id::from(id), timer, effects)
                    })
                    .map(move |timer| Obligation::Timer {
                        actor: Id::from(id),
                        timer: timer.clone(),
                    })
            })
            .collect()
    }

    /// The partial-synchrony assumption: whether `timer` of actor `id` firing now is
    /// timely (a correct node's timeout, given timeouts longer than message delays and
    /// randomised so that elections eventually run one at a time) rather than spurious.
    ///
    /// - **Election** of server `n` (or its candidacy retry): no peer message that would change anything is in
    ///   flight to or from it; no live leader it is connected to, whose epoch has `n`
    ///   as a member, holds a ballot `n` would accept (its heartbeats would reach
    ///   `n`); and no live, connected, quorum-connected candidate whose epoch has `n`
    ///   as a voter runs a ballot `n` would promise or has promised (randomised
    ///   timeouts: one election at a time).
    /// - **CheckQuorum** of leader `n`: `n` is not connected to a live majority.
    /// - **Heartbeat** of leader `n`: its previous messages have arrived, and some
    ///   connected live follower lacks a commit or a vote, or does not back `n`.
    /// - A client's **Attempt** timer: the client's messages have arrived, its server is
    ///   not working on the request (it is not a live leader holding it), and either
    ///   that server is down or some server leads (a client's timeout outlasts an
    ///   election: retrying while no one leads only meets another "no leader yet").
    /// - A client's **AwaitLeader** pause: its messages have arrived, and its server is
    ///   down or some server leads.
    /// - A client's **Backoff** pause: its messages have arrived.
    pub fn timer_is_timely(&self, state: &BallotState, id: Id, timer: &ModelTimer) -> bool {
        self.timer_is_timely_in(state, id, timer, &InFlightEffects::default())
    }

    /// [`BallotModel::timer_is_timely`], reusing what `effects` already found out about
    /// `state`'s messages in flight (every call on it must pass the same state).
    pub(super) fn timer_is_timely_in(
        &self,
        state: &BallotState,
        id: Id,
        timer: &ModelTimer,
        effects: &InFlightEffects,
    ) -> bool {
        let n = usize::from(id);
        match timer {
            // A candidate's retry is due exactly when a follower's election would be.
            ModelTimer::Server(Timer::Election | Timer::CandidacyRetry) => {
                let Some(me) = self.server(state, n) else {
                    return false;
                };
                let promised = me.replica.durable().promised;
                let backing = me.replica.backing();
                // The peers' roles first: far cheaper than running handlers on what
                // is in flight, and they usually decide. A leader contests only a
                // member of its epoch, and a candidate only a voter of its: they send
                // nothing to the others (a follower removed while it missed the
                // change's commit hears from no one, and times out).
                let contested =
                    self.live_peers(state, n)
                        .any(|(peer, server)| match server.replica.role() {
                            Role::Leader(leadership) => {
                                leadership.ballot >= promised
                                    && server.replica.membership().is_member(n)
                            }
                            Role::Candidate(candidacy) => {
                                backing.is_none_or(|backed| backed == peer)
                                    && candidacy.ballot >= promised
                                    && server.replica.membership().is_voter(n)
                                    && self.is_quorum_connected(state, peer)
                            }
                            Role::Follower { .. } => false,
                        });
                !contested && !self.has_effective_in_flight(state, id, true, effects)
            }
            // Due when the leader lost its majority (it must step down), and also when a
            // snapshot it sent is lost and nothing else is on its way: the check is the
            // leader's periodic tick that allows a resend (`Leadership::snapshot_sent`).
            ModelTimer::Server(Timer::CheckQuorum) => {
                !self.is_quorum_connected(state, n)
                    || (self.snapshot_resend_due(state, n)
                        && !self.has_effective_in_flight(state, id, false, effects))
            }
            ModelTimer::Server(Timer::Heartbeat) => {
                self.follower_lags(state, n)
                    && !self.has_effective_in_flight(state, id, false, effects)
            }
            // The operator is no timer: whenever the model lets it act, it may. A disk
            // finishes its fsync in its own time.
            ModelTimer::TransferLeadership | ModelTimer::Reconfigure | ModelTimer::Sync => true,
            ModelTimer::Client(timer) => {
                let Some(ModelActorState::Client(client)) =
                    state.system.actor_states.get(n).map(|s| &**s)
                else {
                    return false;
                };
                let target = client.session.target();
                let target_down = state.system.crashed[target];
                let some_leader = || {
                    state
                        .live_servers()
                        .any(|(_, server)| server.replica.is_leader())
                };
                // The cheap conditions first; the messages in flight last.
                let due = match timer {
                    SessionTimer::Attempt => {
                        let seq = client.session.seq();
                        let being_served = !target_down
                            && self.server(state, target).is_some_and(|server| {
                                server.replica.is_serving(self.client_id(n), seq)
                            });
                        !being_served && (target_down || some_leader())
                    }
                    SessionTimer::AwaitLeader => target_down || some_leader(),
                    SessionTimer::Backoff => true,
                };
                due && !self.has_effective_in_flight(state, id, false, effects)
            }
        }
    }

    /// The client id of stateright actor `index`.
    fn client_id(&self, index: usize) -> u64 {
        (index - self.config.servers) as u64
    }

    /// True if actors `a` and `b` can exchange messages once the faults stop.
    pub(super) fn linked(&self, a: Id, b: Id) -> bool {
        self.config
            .connectivity
            .connected(usize::from(a), usize::from(b))
    }

    /// Live servers other than `n` that `n` is connected to.
    fn live_peers<'a>(
        &'a self,
        state: &'a BallotState,
        n: NodeId,
    ) -> impl Iterator<Item = (NodeId, &'a super::actors::ServerState)> + 'a {
        state
            .live_servers()
            .filter(move |(peer, _)| *peer != n && self.linked(Id::from(*peer), Id::from(n)))
    }

    /// True if server `n` reaches a live majority of the voters (itself included) over
    /// links that hold: the voters of the latest epoch any server entered, which are
    /// the ones that elect once reconfigurations stop.
    pub(super) fn is_quorum_connected(&self, state: &BallotState, n: NodeId) -> bool {
        let crashed = &state.system.crashed;
        self.config
            .connectivity
            .quorum_connected(n, &state.latest_membership().voters, |peer| !crashed[peer])
    }

    /// True if some connected live follower of leader `leader` lacks a commit or a
    /// vote, or does not back `leader` (it restarted, or still backs an older leader):
    /// the case where a heartbeat changes something. (The election guard assumes a live leader's heartbeats reach its
    /// followers; this makes sure the model sends them whenever they matter.)
    /// True if `leader` sent a snapshot since its last quorum check and a follower
    /// still lags: only the next check lets the leader send another.
    fn snapshot_resend_due(&self, state: &BallotState, leader: NodeId) -> bool {
        let Some(Role::Leader(leadership)) = self.server(state, leader).map(|s| s.replica.role())
        else {
            return false;
        };
        !leadership.snapshot_sent.is_empty() && self.follower_lags(state, leader)
    }

    pub(super) fn follower_lags(&self, state: &BallotState, leader: NodeId) -> bool {
        let Some(leader_state) = self.server(state, leader) else {
            return false;
        };
        let Role::Leader(leadership) = leader_state.replica.role() else {
            return false;
        };
        let commit = leader_state.replica.commit_index();
        self.live_peers(state, leader).any(|(id, follower)| {
            follower.replica.commit_index() < commit
                || follower.replica.backing() != Some(leader)
                || leadership
                    .in_flight
                    .values()
                    .any(|slot| !slot.acks.contains(&id))
        })
    }

    /// True if a message from or to actor `id` (with `peers_only`, a server-to-server
    /// message: client traffic does not reset an election timer) is on its way over a
    /// link that holds, to a live receiver, and would change something when delivered. Messages the
    /// receiver would ignore (they stay in stateright's network, since ignoring them is
    /// not a transition) and messages that can never arrive are not waited for.
    ///
    /// Always false on a duplicating network, where every message ever sent stays
    /// deliverable: "in flight" means nothing there.
    pub(super) fn has_effective_in_flight(
        &self,
        state: &BallotState,
        id: Id,
        peers_only: bool,
        effects: &InFlightEffects,
    ) -> bool {
        if self.config.network == NetworkKind::UnorderedDuplicating {
            return false;
        }
        state
            .system
            .network
            .iter_deliverable()
            .enumerate()
            .any(|(index, envelope)| {
                (envelope.src == id || envelope.dst == id)
                    && (!peers_only || matches!(envelope.msg, ModelMsg::Peer(_)))
                    && !state.system.crashed[usize::from(envelope.dst)]
                    && self.linked(envelope.src, envelope.dst)
                    && effects.of(index, || self.delivery_changes_something(state, &envelope))
            })
    }

    /// Does delivering `envelope` now change the receiver's state or make it send
    /// anything? Found by running the receiver's handler on a copy, or remembered
    /// from another state where the same receiver held the same state.
    fn delivery_changes_something(
        &self,
        state: &BallotState,
        envelope: &Envelope<&ModelMsg>,
    ) -> bool {
        let receiver = &state.system.actor_states[usize::from(envelope.dst)];
        let key = DeliveryKey {
            dst: envelope.dst,
            src: envelope.src,
            receiver: fingerprint(&**receiver),
            msg: fingerprint(envelope.msg),
        };
        let find = || {
            let (changed, out) = self.deliver_on_copy(state, envelope);
            changed || !out.is_empty()
        };
        let changes = self.delivery_effects.get_or_find(key, find);
        debug_assert_eq!(changes, find(), "a remembered delivery effect is stale");
        changes
    }

    /// Runs the receiver's handler for `envelope` on a copy of its state: whether its
    /// state changed, and the commands it issued.
    fn deliver_on_copy(
        &self,
        state: &BallotState,
        envelope: &Envelope<&ModelMsg>,
    ) -> (bool, Out<ModelActor>) {
        let index = usize::from(envelope.dst);
        let mut out: Out<ModelActor> = Out::new();
        let Some(actor) = self.actors().get(index) else {
            return (false, out);
        };
        let mut actor_state = Cow::Borrowed(&*state.system.actor_states[index]);
        actor.on_msg(
            envelope.dst,
            &mut actor_state,
            envelope.src,
            envelope.msg.clone(),
            &mut out,
        );
        (matches!(actor_state, Cow::Owned(_)), out)
    }
}
