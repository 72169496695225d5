//! The core's single entry point, `Replica::step`, under an arbitrary schedule.
//!
//! Three replicas of the register state machine and the messages in flight between
//! them. The fuzzer's bytes are a list of [`Action`]s: deliver, duplicate or drop an
//! in-flight message, deliver everything, fire a timer, send a client write or read,
//! compact, restart a node from what it persisted, or forge a peer message (arbitrary
//! sender, ballot, slots, snapshot — valid or not) straight into a node.
//!
//! After every step, whatever the input:
//!
//! - the replica's invariants hold (`invariants::check_replica`);
//! - a refused input (`Err`) changed nothing and emitted nothing, and a message a
//!   correct node sent is never refused;
//! - the durable state is exactly the fold of every `Persist` emitted so far, a
//!   `SaveSnapshot` precedes the `Persist(Compact)` that relies on it, and a node
//!   restarts from its persisted state and newest saved snapshot;
//! - if the schedule forges nothing (so every message is one a correct node sent, if
//!   late, twice or never), the cluster-wide safety invariants hold too: at most one
//!   value chosen per slot, committed logs agree, one leader per ballot, and replicas
//!   that applied the same slots hold the same state.

use crate::bytes::{Reader, Writer};
use ballot_model::invariants::{
    at_most_one_value_chosen, check_replica, committed_logs_agree, one_leader_per_ballot, Violation,
};
use ballot_model::DurableUpdate;
use ballot_model::{
    AcceptedEntry, Ballot, ClientId, ClientRequest, ClientTable, ClusterConfig, DurableState,
    Effect, Input, Message, NodeId, Proposal, Register, Replica, Request, Slot, Snapshot,
    MemberAddress, MemberChange, StepError, Timer, TransferOutcome, MAX_SLOTS_AHEAD, NODE_IDS_MAX,
};
use std::collections::VecDeque;

/// Cluster size.
pub const NODES: usize = 3;
/// Actions read from one input at most; the rest of a longer input is ignored.
pub const MAX_ACTIONS: usize = 256;
/// Messages in flight at most; a send beyond this is lost (the network may lose it).
pub const MAX_IN_FLIGHT: usize = 64;
/// Deliveries one [`Action::Flush`] makes at most.
pub const MAX_FLUSH_DELIVERIES: usize = 256;

/// Distinct register values, clients and sequence numbers the generator uses: few, so
/// that requests collide (duplicates, retries, competing values).
const VALUES: u8 = 4;
const CLIENTS: u8 = 4;
const SEQS: u8 = 8;
/// Number of [`Action`] kinds, and the order of [`TIMERS`] (the encoding).
const OPCODES: u8 = 12;
/// Kinds of forged message ([`Message`]'s variants).
const MESSAGE_KINDS: u8 = 10;
const TIMERS: [Timer; Timer::ALL.len()] = Timer::ALL;

/// One step of a schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Deliver the in-flight message at `index` (modulo the count), removing it.
    Deliver {
        /// Which message.
        index: u8,
    },
    /// Deliver a copy of the in-flight message at `index`, keeping it in flight.
    Duplicate {
        /// Which message.
        index: u8,
    },
    /// Lose the in-flight message at `index`.
    Drop {
        /// Which message.
        index: u8,
    },
    /// Deliver in-flight messages oldest first until none is left (at most
    /// [`MAX_FLUSH_DELIVERIES`]).
    Flush,
    /// Fire `timer` at `node`, armed or not.
    Timer {
        /// The node.
        node: NodeId,
        /// The timer.
        timer: Timer,
    },
    /// A client write at `node`.
    Write {
        /// The node the client talks to.
        node: NodeId,
        /// The client.
        client: ClientId,
        /// Its sequence number.
        seq: u64,
        /// The value to write.
        value: u8,
    },
    /// A client read at `node`.
    Read {
        /// The node the client talks to.
        node: NodeId,
        /// The client.
        client: ClientId,
        /// Its sequence number.
        seq: u64,
    },
    /// `node`'s driver saves a snapshot of its applied state, then reports
    /// `Input::Compact { through }` (which need not be that snapshot's slot).
    Compact {
        /// The node.
        node: NodeId,
        /// The slot reported.
        through: Slot,
    },
    /// The operator asks `node` to hand its leadership to `to` (perhaps itself,
    /// perhaps no member), or, with `None`, to a peer of its choice.
    Transfer {
        /// The node asked.
        node: NodeId,
        /// The successor named, if any.
        to: Option<NodeId>,
    },
    /// The operator asks `node` for a membership change (perhaps naming no member,
    /// perhaps removing the last voter).
    Reconfigure {
        /// The node asked.
        node: NodeId,
        /// The change.
        change: MemberChange,
    },
    /// `node` crashes and restarts from its durable state and newest saved snapshot.
    Restart {
        /// The node.
        node: NodeId,
    },
    /// `message`, claiming to come from `from`, arrives at `to`: a forgery.
    Forge {
        /// The receiver.
        to: NodeId,
        /// The claimed sender (perhaps `to` itself, perhaps no node at all).
        from: NodeId,
        /// The message.
        message: Message<Register>,
    },
}

/// Reads the actions of a schedule from fuzzer bytes.
pub fn decode(data: &[u8]) -> Vec<Action> {
    let mut reader = Reader::new(data);
    let mut actions = Vec::new();
    while !reader.is_empty() && actions.len() < MAX_ACTIONS {
        actions.push(Action::decode(&mut reader));
    }
    actions
}

impl Action {
    /// Reads one action.
    pub fn decode(r: &mut Reader) -> Action {
        match r.below(OPCODES) {
            0 => Action::Deliver { index: r.u8() },
            1 => Action::Duplicate { index: r.u8() },
            2 => Action::Drop { index: r.u8() },
            3 => Action::Flush,
            4 => Action::Timer {
                node: node(r),
                timer: TIMERS[usize::from(r.below(TIMERS.len() as u8))],
            },
            5 => Action::Write {
                node: node(r),
                client: client(r),
                seq: seq(r),
                value: r.below(VALUES),
            },
            6 => Action::Read {
                node: node(r),
                client: client(r),
                seq: seq(r),
            },
            7 => Action::Compact {
                node: node(r),
                through: slot(r),
            },
            8 => Action::Restart { node: node(r) },
            9 => Action::Transfer {
                node: node(r),
                to: (r.below(2) == 1).then(|| any_node(r)),
            },
            10 => Action::Reconfigure {
                node: node(r),
                change: match r.below(5) {
                    0 => MemberChange::AddLearner(any_node(r)),
                    4 => MemberChange::AddAt(MemberAddress::new(
                        "p".repeat(usize::from(r.u8()) + 10),
                        "c",
                    )),
                    1 => MemberChange::Promote(any_node(r)),
                    2 => MemberChange::Remove(any_node(r)),
                    _ => MemberChange::Replace {
                        remove: any_node(r),
                        promote: any_node(r),
                    },
                },
            },
            _ => Action::Forge {
                to: node(r),
                from: any_node(r),
                message: message(r),
            },
        }
    }
}

fn node(r: &mut Reader) -> NodeId {
    usize::from(r.below(NODES as u8))
}

/// A node id that is usually a member, sometimes not (3, 4), sometimes huge.
fn any_node(r: &mut Reader) -> NodeId {
    r.number(5, usize::MAX as u64) as NodeId
}

fn client(r: &mut Reader) -> ClientId {
    ClientId::from(r.below(CLIENTS))
}

fn seq(r: &mut Reader) -> u64 {
    u64::from(r.below(SEQS))
}

/// Slots a forged message may name without costing a step more than this many
/// re-proposals; see [`slot`].
const SLOTS_AHEAD_AFFORDABLE: Slot = 64;

/// A slot: small, or near `u64::MAX`, or any other value except those from
/// [`SLOTS_AHEAD_AFFORDABLE`] to just past `MAX_SLOTS_AHEAD` (2^20), which are folded
/// into the small ones. Such a slot is valid, and a `Promise` vote there makes a new
/// leader re-propose every slot up to it in one step — a million persisted `Accept`s
/// and two million sends, bounded by design — which would leave the fuzzer running a
/// few slow inputs instead of many fast ones. Slots past the limit are still generated
/// (the core must refuse them).
fn slot(r: &mut Reader) -> Slot {
    let slot = r.number(8, u64::MAX);
    let costly = SLOTS_AHEAD_AFFORDABLE..=MAX_SLOTS_AHEAD + SLOTS_AHEAD_AFFORDABLE;
    if costly.contains(&slot) {
        slot % SLOTS_AHEAD_AFFORDABLE
    } else {
        slot
    }
}

fn ballot(r: &mut Reader) -> Ballot {
    let epoch = r.number(2, u64::from(u32::MAX)) as u32;
    let round = r.number(4, u64::from(u32::MAX)) as u32;
    Ballot::in_epoch(epoch, round, any_node(r))
}

fn request(r: &mut Reader) -> Request<u8> {
    Request {
        client: client(r),
        seq: seq(r),
        command: r.below(VALUES),
    }
}

fn proposal(r: &mut Reader) -> Proposal<u8> {
    if r.below(2) == 0 {
        return Proposal::Noop;
    }
    let count = r.below(3);
    Proposal::Batch((0..count).map(|_| request(r)).collect())
}

/// A snapshot of any slot, holding the state after up to two requests.
fn snapshot(r: &mut Reader) -> Snapshot<Register> {
    let slot = slot(r);
    let mut table = ClientTable::new(Register::default());
    // Sometimes room for one session only, so a snapshot may carry a raised floor.
    let sessions_max = 1 + r.below(2) as usize;
    for _ in 0..r.below(3) {
        table.apply(&request(r), sessions_max);
    }
    Snapshot {
        slot,
        table,
        members: ClusterConfig::new(NODES).bootstrap(),
    }
}

fn message(r: &mut Reader) -> Message<Register> {
    let ballot = ballot(r);
    match r.below(MESSAGE_KINDS) {
        0 => Message::Prepare {
            ballot,
            from_slot: slot(r),
        },
        1 => {
            let count = r.below(3);
            let accepted = (0..count)
                .map(|_| {
                    let slot = slot(r);
                    let entry = AcceptedEntry {
                        ballot: self::ballot(r),
                        proposal: proposal(r),
                    };
                    (slot, entry)
                })
                .collect();
            let snapshot = (r.below(2) == 1).then(|| snapshot(r));
            Message::Promise {
                ballot,
                accepted,
                snapshot,
            }
        }
        2 => Message::Accept {
            ballot,
            slot: slot(r),
            proposal: proposal(r),
            commit: slot(r),
        },
        3 => Message::Accepted {
            ballot,
            slot: slot(r),
            commit: slot(r),
        },
        4 => Message::Heartbeat {
            ballot,
            commit: slot(r),
            read_round: r.number(4, u64::MAX),
        },
        5 => Message::HeartbeatAck {
            ballot,
            commit: slot(r),
            read_round: r.number(4, u64::MAX),
            lagging: r.below(2) == 1,
        },
        6 => Message::InstallSnapshot {
            ballot,
            snapshot: snapshot(r),
            commit: slot(r),
        },
        7 => Message::Reject {
            ballot,
            promised: self::ballot(r),
        },
        8 => Message::TransferLeadership {
            ballot,
            to: any_node(r),
        },
        _ => Message::Removed {
            ballot,
            epoch: u32::try_from(r.number(2, u64::from(u32::MAX))).unwrap_or(u32::MAX),
        },
    }
}

/// Writes schedules as [`decode`] reads them: how the seed corpus is made.
#[derive(Clone, Debug, Default)]
pub struct Schedule {
    writer: Writer,
}

impl Schedule {
    /// An empty schedule.
    pub fn new() -> Self {
        Schedule::default()
    }

    /// The encoded schedule.
    pub fn bytes(&self) -> Vec<u8> {
        self.writer.out.clone()
    }

    fn op(&mut self, opcode: u8) -> &mut Writer {
        self.writer.below(opcode, OPCODES);
        &mut self.writer
    }

    /// [`Action::Deliver`].
    pub fn deliver(&mut self, index: u8) -> &mut Self {
        self.op(0).u8(index);
        self
    }

    /// [`Action::Duplicate`].
    pub fn duplicate(&mut self, index: u8) -> &mut Self {
        self.op(1).u8(index);
        self
    }

    /// [`Action::Drop`].
    pub fn drop_message(&mut self, index: u8) -> &mut Self {
        self.op(2).u8(index);
        self
    }

    /// [`Action::Flush`].
    pub fn flush(&mut self) -> &mut Self {
        self.op(3);
        self
    }

    /// [`Action::Timer`].
    pub fn timer(&mut self, node: NodeId, timer: Timer) -> &mut Self {
        let index = TIMERS.iter().position(|t| *t == timer).expect("a timer") as u8;
        let w = self.op(4);
        w.below(node as u8, NODES as u8);
        w.below(index, TIMERS.len() as u8);
        self
    }

    /// [`Action::Write`].
    pub fn write(&mut self, node: NodeId, client: u8, seq: u8, value: u8) -> &mut Self {
        let w = self.op(5);
        w.below(node as u8, NODES as u8);
        w.below(client, CLIENTS);
        w.below(seq, SEQS);
        w.below(value, VALUES);
        self
    }

    /// [`Action::Read`].
    pub fn read(&mut self, node: NodeId, client: u8, seq: u8) -> &mut Self {
        let w = self.op(6);
        w.below(node as u8, NODES as u8);
        w.below(client, CLIENTS);
        w.below(seq, SEQS);
        self
    }

    /// [`Action::Compact`].
    pub fn compact(&mut self, node: NodeId, through: Slot) -> &mut Self {
        let w = self.op(7);
        w.below(node as u8, NODES as u8);
        w.number(through, 8, u64::MAX);
        self
    }

    /// [`Action::Restart`].
    pub fn restart(&mut self, node: NodeId) -> &mut Self {
        self.op(8).below(node as u8, NODES as u8);
        self
    }

    /// [`Action::Forge`] of a `Prepare`.
    pub fn forge_prepare(
        &mut self,
        to: NodeId,
        from: NodeId,
        ballot: Ballot,
        from_slot: Slot,
    ) -> &mut Self {
        let w = self.op(11);
        w.below(to as u8, NODES as u8);
        w.number(from as u64, 5, usize::MAX as u64);
        w.number(u64::from(ballot.epoch), 2, u64::from(u32::MAX));
        w.number(u64::from(ballot.round), 4, u64::from(u32::MAX));
        w.number(ballot.node as u64, 5, usize::MAX as u64);
        w.below(0, MESSAGE_KINDS);
        w.number(from_slot, 8, u64::MAX);
        self
    }

    /// [`Action::Transfer`].
    pub fn transfer(&mut self, node: NodeId, to: Option<NodeId>) -> &mut Self {
        let w = self.op(9);
        w.below(node as u8, NODES as u8);
        w.below(u8::from(to.is_some()), 2);
        if let Some(to) = to {
            w.number(to as u64, 5, usize::MAX as u64);
        }
        self
    }
}

/// What a run reached: evidence that a schedule explores the interesting paths.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reached {
    /// Some node led.
    pub leader: bool,
    /// Some node committed a slot.
    pub committed: bool,
    /// Some node compacted its log.
    pub compacted: bool,
    /// Some node installed a peer's snapshot.
    pub installed: bool,
    /// Some input was refused.
    pub refused: bool,
    /// Some node restarted.
    pub restarted: bool,
    /// Some leader handed its leadership over.
    pub handed_over: bool,
}

/// A message in flight.
#[derive(Clone, Debug)]
struct Envelope {
    from: NodeId,
    to: NodeId,
    message: Message<Register>,
}

/// Where a check failed: the action's position and the action.
type At<'a> = (usize, &'a Action);

/// Three replicas, what each persisted and saved, and the messages in flight.
struct Cluster {
    config: ClusterConfig,
    replicas: Vec<Replica<Register>>,
    /// Per node, the fold of every `Persist` it emitted: its disk.
    stored: Vec<DurableState<u8>>,
    /// Per node, the newest snapshot saved (by its driver or from `SaveSnapshot`).
    saved: Vec<Snapshot<Register>>,
    /// Sent and not yet delivered or lost, oldest first; at most [`MAX_IN_FLIGHT`].
    network: VecDeque<Envelope>,
    /// No forged message in the schedule: the cluster-wide invariants must hold.
    honest: bool,
    reached: Reached,
}

/// Runs the schedule in `data`; panics on the first broken property.
pub fn run(data: &[u8]) {
    simulate(data);
}

/// Runs the schedule in `data` and says what it reached; panics on the first broken
/// property, naming the action.
pub fn simulate(data: &[u8]) -> Reached {
    let actions = decode(data);
    let honest = !actions.iter().any(|a| matches!(a, Action::Forge { .. }));
    let mut cluster = Cluster::new(honest);
    for (position, action) in actions.iter().enumerate() {
        cluster.act((position, action));
    }
    cluster.reached
}

impl Cluster {
    fn new(honest: bool) -> Self {
        let config = ClusterConfig::new(NODES);
        let mut replicas = Vec::new();
        for id in 0..NODES {
            let (replica, effects) = Replica::recover(
                id,
                config.clone(),
                Register::default(),
                DurableState::default(),
            );
            assert_eq!(effects, vec![Effect::SetTimer(Timer::Election)]);
            replicas.push(replica);
        }
        Cluster {
            config,
            replicas,
            stored: vec![DurableState::default(); NODES],
            saved: vec![Snapshot::initial(Register::default()); NODES],
            network: VecDeque::new(),
            honest,
            reached: Reached::default(),
        }
    }

    fn act(&mut self, at: At) {
        match *at.1 {
            Action::Deliver { index } => {
                if let Some(envelope) = self.take(index) {
                    self.deliver(envelope, at);
                }
            }
            Action::Duplicate { index } => {
                if !self.network.is_empty() {
                    let envelope = self.network[usize::from(index) % self.network.len()].clone();
                    self.deliver(envelope, at);
                }
            }
            Action::Drop { index } => {
                self.take(index);
            }
            Action::Flush => {
                for _ in 0..MAX_FLUSH_DELIVERIES {
                    let Some(envelope) = self.network.pop_front() else {
                        break;
                    };
                    self.deliver(envelope, at);
                }
            }
            Action::Timer { node, timer } => {
                let _ = self.step(node, Input::Timer(timer), at);
            }
            Action::Write {
                node,
                client,
                seq,
                value,
            } => {
                let request = ClientRequest::Write(Request {
                    client,
                    seq,
                    command: value,
                });
                let _ = self.step(node, Input::Client(request), at);
            }
            Action::Read { node, client, seq } => {
                let request = ClientRequest::Read {
                    client,
                    seq,
                    query: (),
                };
                let _ = self.step(node, Input::Client(request), at);
            }
            Action::Compact { node, through } => {
                let snapshot = self.replicas[node].snapshot();
                self.save(node, snapshot);
                let _ = self.step(node, Input::Compact { through }, at);
            }
            Action::Restart { node } => self.restart(node, at),
            Action::Transfer { node, to } => {
                let _ = self.step(node, Input::TransferLeadership { to }, at);
            }
            Action::Reconfigure { node, ref change } => {
                let _ = self.step(node, Input::Reconfigure(change.clone()), at);
            }
            Action::Forge {
                to,
                from,
                ref message,
            } => {
                let input = Input::Message {
                    from,
                    message: message.clone(),
                };
                let _ = self.step(to, input, at);
            }
        }
    }

    /// Removes the in-flight message at `index` (modulo the count), if any.
    fn take(&mut self, index: u8) -> Option<Envelope> {
        if self.network.is_empty() {
            return None;
        }
        let index = usize::from(index) % self.network.len();
        self.network.remove(index)
    }

    fn deliver(&mut self, envelope: Envelope, at: At) {
        let Envelope { from, to, message } = envelope;
        let input = Input::Message { from, message };
        if let Err(error) = self.step(to, input, at) {
            fail(
                at,
                format!("node {to} refused a message node {from} sent: {error}"),
            );
        }
    }

    /// Steps `node` with `input` and checks every property of the module docs.
    fn step(&mut self, node: NodeId, input: Input<Register>, at: At) -> Result<(), StepError> {
        let replica = &mut self.replicas[node];
        let before = replica.clone();
        let mut effects = Vec::new();
        let result = replica.step(input.clone(), &mut effects);
        match &result {
            Err(error) => {
                if *replica != before {
                    fail(
                        at,
                        format!("refused {input:?} ({error}) changed node {node}"),
                    );
                }
                if !effects.is_empty() {
                    fail(
                        at,
                        format!("refused {input:?} ({error}) emitted {effects:?}"),
                    );
                }
                self.reached.refused = true;
            }
            Ok(()) => {
                check(at, check_replica(replica), &input);
                self.carry_out(node, Some(&input), effects, at);
            }
        }
        self.check_durable(node, at, &input);
        if self.honest {
            self.check_cluster(at, &input);
        }
        self.note_reached();
        result
    }

    /// Does what a driver does with `effects`: persist, save snapshots, send.
    fn carry_out(
        &mut self,
        node: NodeId,
        input: Option<&Input<Register>>,
        effects: Vec<Effect<Register>>,
        at: At,
    ) {
        let mut saved_slot = None;
        for effect in effects {
            match effect {
                Effect::Persist(update) => {
                    if let (DurableUpdate::Compact(slot), Some(Input::Message { .. })) =
                        (&update, input)
                    {
                        if saved_slot != Some(*slot) {
                            fail(at, format!("node {node} compacted through {slot} but saved {saved_slot:?} first"));
                        }
                    }
                    self.stored[node].apply(&update);
                }
                Effect::SaveSnapshot(snapshot) => {
                    saved_slot = Some(snapshot.slot);
                    self.save(node, snapshot);
                }
                Effect::Send { to, message } | Effect::SendAhead { to, message } => {
                    if to >= NODE_IDS_MAX || to == node {
                        fail(at, format!("node {node} sent {message:?} to node {to}"));
                    }
                    // A machine added at an address has no replica here: what is sent
                    // to it is lost, as if it never came up.
                    if to < NODES && self.network.len() < MAX_IN_FLIGHT {
                        self.network.push_back(Envelope {
                            from: node,
                            to,
                            message,
                        });
                    }
                }
                Effect::Reply { .. }
                | Effect::SetTimer(_)
                | Effect::CancelTimer(_)
                | Effect::Applied { .. }
                | Effect::Campaigning { .. }
                | Effect::Removed { .. }
                | Effect::Reconfiguration(_) => {}
                Effect::LeadershipTransfer(outcome) => {
                    self.reached.handed_over |=
                        matches!(outcome, TransferOutcome::HandedOver { .. });
                }
            }
        }
    }

    /// Keeps the newest snapshot, as start-up picks the newest file.
    fn save(&mut self, node: NodeId, snapshot: Snapshot<Register>) {
        if snapshot.slot >= self.saved[node].slot {
            self.saved[node] = snapshot;
        }
    }

    fn restart(&mut self, node: NodeId, at: At) {
        let restored = Replica::restore(
            node,
            self.config.clone(),
            self.saved[node].clone(),
            self.stored[node].clone(),
        );
        let (replica, effects) = restored.unwrap_or_else(|error| {
            fail(
                at,
                format!("node {node} cannot restart from what it persisted: {error}"),
            )
        });
        self.replicas[node] = replica;
        self.reached.restarted = true;
        let input = Input::Timer(Timer::Election);
        check(at, check_replica(&self.replicas[node]), &input);
        self.carry_out(node, None, effects, at);
        self.check_durable(node, at, &input);
        if self.honest {
            self.check_cluster(at, &input);
        }
    }

    fn check_durable(&self, node: NodeId, at: At, input: &Input<Register>) {
        if self.replicas[node].durable() != &self.stored[node] {
            fail(
                at,
                format!(
                    "after {input:?}, node {node}'s durable state {:?} is not the fold of its Persists {:?}",
                    self.replicas[node].durable(),
                    self.stored[node]
                ),
            );
        }
    }

    fn check_cluster(&self, at: At, input: &Input<Register>) {
        let all: Vec<&Replica<Register>> = self.replicas.iter().collect();
        check(at, at_most_one_value_chosen(&all), input);
        check(at, committed_logs_agree(&all), input);
        check(at, one_leader_per_ballot(&all), input);
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                if a.applied_index() == b.applied_index() && a.client_table() != b.client_table() {
                    fail(
                        at,
                        format!(
                            "nodes {} and {} applied slots 1..={} into different states: {:?} and {:?}",
                            a.id(),
                            b.id(),
                            a.applied_index(),
                            a.client_table(),
                            b.client_table()
                        ),
                    );
                }
            }
        }
    }

    fn note_reached(&mut self) {
        for replica in &self.replicas {
            self.reached.leader |= replica.is_leader();
            self.reached.committed |= replica.commit_index() > 0;
            self.reached.compacted |= replica.durable().compacted > 0;
            self.reached.installed |= replica.snapshots_installed() > 0;
        }
    }
}

fn check(at: At, result: Result<(), Violation>, input: &Input<Register>) {
    if let Err(violation) = result {
        fail(at, format!("{violation} after {input:?}"));
    }
}

fn fail(at: At, what: String) -> ! {
    panic!("action {} ({:?}): {what}", at.0, at.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_decode_as_written() {
        let mut schedule = Schedule::new();
        schedule
            .timer(1, Timer::Election)
            .flush()
            .write(1, 2, 3, 1)
            .deliver(200)
            .duplicate(0)
            .drop_message(5)
            .read(0, 3, 7)
            .compact(2, 5)
            .restart(2)
            .forge_prepare(0, 4, Ballot::new(7, 4), u64::MAX);
        let expected = vec![
            Action::Timer {
                node: 1,
                timer: Timer::Election,
            },
            Action::Flush,
            Action::Write {
                node: 1,
                client: 2,
                seq: 3,
                value: 1,
            },
            Action::Deliver { index: 200 },
            Action::Duplicate { index: 0 },
            Action::Drop { index: 5 },
            Action::Read {
                node: 0,
                client: 3,
                seq: 7,
            },
            Action::Compact {
                node: 2,
                through: 5,
            },
            Action::Restart { node: 2 },
            Action::Forge {
                to: 0,
                from: 4,
                message: Message::Prepare {
                    ballot: Ballot::new(7, 4),
                    from_slot: u64::MAX,
                },
            },
        ];
        assert_eq!(decode(&schedule.bytes()), expected);
    }
}
