//! Client symmetry: two states that differ only in which client is which are explored
//! once.
//!
//! Clients whose scripts have the same shape (a write where the other writes, a read
//! where the other reads) are interchangeable once their names *and the values they
//! write* are traded: no rule of the core, the clients or the model compares client
//! ids or written values, except the session-expiry rule of a bounded client table,
//! which this reduction refuses (SPEC §4.1). A renaming maps a state onto the one the
//! mirrored run reaches, and every successor of a renamed state is the renaming of a
//! successor (the model's transitions commute with renaming), so a state's future is
//! its mirror's future renamed. Every safety property and reachability target is blind
//! to names, so exploring one state per class finds every violation and every target
//! that the full search finds: the search tells states apart by
//! [`ClientSymmetry::fingerprint`], the least fingerprint over the renamings.
//!
//! Liveness is not decided under this reduction: the checker's liveness analysis
//! replays cycles of concrete actions, and a cycle of classes need not be a cycle of
//! states.
//!
//! A renaming reaches everything that names a client or holds a written value: each
//! server's core (log, client table, leader's queue and pending reads, candidate's
//! promises, waiting clients), its disk and its unsynced outbox, the clients' own
//! states, the messages in flight and their addresses, each actor's timers, the
//! clients' history (whose linearizability tester is rebuilt from its renamed events),
//! the vote history and the abstract spec. The validation
//! (`checker/tests/symmetry.rs`) runs both searches where both fit and asserts the same
//! verdict on every property, and that every mutant is still caught.

use super::actors::{ClientState, ModelActorState, ModelMsg, ServerState, Stored};
use super::checked::{BallotState, Ledger};
use super::config::ModelConfig;
use super::history::{ModelHistory, Observed, Told};
use super::Shared;
use crate::ballot::ClientId;
use crate::durable::DurableState;
use crate::message::{AcceptedEntry, ClientRequest, ClientResponse, Message, Proposal, Request};
use crate::register::{Register, RegisterOp, RegisterRet, Value};
use crate::replica::{Replica, Role};
use crate::snapshot::Snapshot;
use crate::spec::{SpecViolation, SpecWrite};
use stateright::actor::{ActorModelState, Envelope, Id, Network};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};
use std::fmt;
use std::sync::Arc;

/// Most clients the symmetry permutes: their permutations are enumerated per state.
pub const SYMMETRY_CLIENTS_MAX: usize = 4;

/// The client symmetry of one model configuration: every renaming of its clients that
/// keeps each client's script shape.
///
/// ```
/// use ballot_model::model::{ClientScript, ClientSymmetry, ModelConfig};
/// let two_writers = ModelConfig { clients: 2, ops_per_client: 1, script: ClientScript::WritesOnly, ..ModelConfig::default() };
/// assert_eq!(ClientSymmetry::new(&two_writers).unwrap().renamings(), 1);
/// // Alternating scripts: client 0 writes then reads, client 1 reads then writes.
/// let alternating = ModelConfig { clients: 2, ..ModelConfig::default() };
/// assert!(ClientSymmetry::new(&alternating).is_err());
/// ```
#[derive(Clone, Debug)]
pub struct ClientSymmetry {
    /// Every renaming but the identity.
    renamings: Vec<Renaming>,
}

/// Why a configuration has no client symmetry to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SymmetryRefusal {
    /// A bounded client table expires the least recently active session, and its tie
    /// rule compares client ids.
    SessionsMax,
    /// No two clients have scripts of the same shape.
    NoInterchangeableClients,
    /// More clients than [`SYMMETRY_CLIENTS_MAX`].
    TooManyClients(usize),
}

impl fmt::Display for SymmetryRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SymmetryRefusal::SessionsMax => write!(
                f,
                "client symmetry is refused with --sessions-max: which session a full client \
                 table expires depends on client ids"
            ),
            SymmetryRefusal::NoInterchangeableClients => write!(
                f,
                "client symmetry needs two clients whose scripts have the same shape \
                 (e.g. --writes-only with --clients 2 or more); these have none"
            ),
            SymmetryRefusal::TooManyClients(clients) => write!(
                f,
                "client symmetry permutes at most {SYMMETRY_CLIENTS_MAX} clients, not {clients}"
            ),
        }
    }
}

impl std::error::Error for SymmetryRefusal {}

impl ClientSymmetry {
    /// The symmetry of `config`, or why it has none that may be used.
    pub fn new(config: &ModelConfig) -> Result<Self, SymmetryRefusal> {
        if config.sessions_max.is_some() {
            return Err(SymmetryRefusal::SessionsMax);
        }
        if config.clients > SYMMETRY_CLIENTS_MAX {
            return Err(SymmetryRefusal::TooManyClients(config.clients));
        }
        let scripts: Vec<_> = (0..config.clients).map(|c| config.script_for(c)).collect();
        let shape = |client: usize| -> Vec<bool> {
            scripts[client]
                .iter()
                .map(|op| matches!(op, RegisterOp::Write(_)))
                .collect()
        };
        let mut renamings = Vec::new();
        for permutation in permutations(config.clients) {
            let identity = permutation.iter().enumerate().all(|(c, p)| c == *p);
            let keeps_shapes = (0..config.clients).all(|c| shape(c) == shape(permutation[c]));
            if identity || !keeps_shapes {
                continue;
            }
            // Value table: client c's k-th write becomes client π(c)'s k-th write.
            let mut values: [Value; 256] = std::array::from_fn(|v| v as Value);
            for (c, script) in scripts.iter().enumerate() {
                for (k, op) in script.iter().enumerate() {
                    if let (RegisterOp::Write(from), RegisterOp::Write(to)) =
                        (op, &scripts[permutation[c]][k])
                    {
                        values[*from as usize] = *to;
                    }
                }
            }
            renamings.push(Renaming {
                servers: config.servers,
                clients: permutation.iter().map(|p| *p as ClientId).collect(),
                values,
            });
        }
        if renamings.is_empty() {
            return Err(SymmetryRefusal::NoInterchangeableClients);
        }
        Ok(ClientSymmetry { renamings })
    }

    /// How many renamings other than the identity each state is compared under.
    pub fn renamings(&self) -> usize {
        self.renamings.len()
    }

    /// The fingerprint of `state`'s class: the least of `fingerprint` over the state
    /// and each of its renamings. States that differ only in their clients' names get
    /// the same one.
    pub fn fingerprint(
        &self,
        state: &BallotState,
        fingerprint: impl Fn(&BallotState) -> u64,
    ) -> u64 {
        self.renamings
            .iter()
            .map(|renaming| fingerprint(&renaming.state(state)))
            .fold(fingerprint(state), u64::min)
    }

    /// Every renaming of `state` other than itself (for tests of the reduction).
    pub fn images(&self, state: &BallotState) -> Vec<BallotState> {
        self.renamings.iter().map(|r| r.state(state)).collect()
    }
}

/// Every permutation of `0..n`, in lexicographic order.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for rest in permutations(n - 1) {
        for at in 0..n {
            let mut permutation = rest.clone();
            permutation.insert(at, n - 1);
            all.push(permutation);
        }
    }
    all.sort();
    all
}

/// One renaming: client `c` becomes `clients[c]`, value `v` becomes `values[v]`.
#[derive(Clone)]
struct Renaming {
    servers: usize,
    clients: Vec<ClientId>,
    values: [Value; 256],
}

impl fmt::Debug for Renaming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Renaming({:?})", self.clients)
    }
}

impl Renaming {
    fn client(&self, client: ClientId) -> ClientId {
        self.clients.get(client as usize).copied().unwrap_or(client)
    }

    fn value(&self, value: Value) -> Value {
        self.values[value as usize]
    }

    fn output(&self, output: Option<Value>) -> Option<Value> {
        output.map(|v| self.value(v))
    }

    /// A stateright actor index: clients move, servers stay.
    fn actor(&self, index: usize) -> usize {
        match index.checked_sub(self.servers) {
            Some(client) if client < self.clients.len() => {
                self.servers + self.clients[client] as usize
            }
            _ => index,
        }
    }

    fn id(&self, id: Id) -> Id {
        Id::from(self.actor(usize::from(id)))
    }

    /// `items[i]` moved to `actor(i)`.
    fn per_actor<T>(&self, items: Vec<T>) -> Vec<T> {
        let mut slots: Vec<Option<T>> = items.iter().map(|_| None).collect();
        for (index, item) in items.into_iter().enumerate() {
            slots[self.actor(index)] = Some(item);
        }
        slots
            .into_iter()
            .map(|slot| slot.expect("a renaming is a permutation of the actors"))
            .collect()
    }

    fn request(&self, request: &Request<Value>) -> Request<Value> {
        Request {
            client: self.client(request.client),
            seq: request.seq,
            command: self.value(request.command),
        }
    }

    fn proposal(&self, proposal: &Proposal<Value>) -> Proposal<Value> {
        match proposal {
            Proposal::Noop => Proposal::Noop,
            // Names servers, not clients: client renaming leaves it as it is.
            Proposal::Reconfigure { .. } => proposal.clone(),
            Proposal::Batch(requests) => {
                Proposal::Batch(requests.iter().map(|r| self.request(r)).collect())
            }
        }
    }

    fn entry(&self, entry: &AcceptedEntry<Value>) -> AcceptedEntry<Value> {
        AcceptedEntry {
            ballot: entry.ballot,
            proposal: self.proposal(&entry.proposal),
        }
    }

    fn snapshot(&self, snapshot: &Snapshot<Register>) -> Snapshot<Register> {
        let mut renamed = snapshot.clone();
        renamed.table.rename(
            &|client| self.client(client),
            &|register: &mut Register| register.value = self.output(register.value),
            &|output: &mut Option<Value>| *output = self.output(*output),
        );
        renamed
    }

    fn durable(&self, durable: &DurableState<Value>) -> DurableState<Value> {
        DurableState {
            accepted: durable
                .accepted
                .iter()
                .map(|(slot, entry)| (*slot, self.entry(entry)))
                .collect(),
            ..durable.clone()
        }
    }

    fn message(&self, message: &Message<Register>) -> Message<Register> {
        match message {
            Message::Promise {
                ballot,
                accepted,
                snapshot,
            } => Message::Promise {
                ballot: *ballot,
                accepted: accepted
                    .iter()
                    .map(|(slot, entry)| (*slot, self.entry(entry)))
                    .collect(),
                snapshot: snapshot.as_ref().map(|s| self.snapshot(s)),
            },
            Message::Accept {
                ballot,
                slot,
                proposal,
                commit,
            } => Message::Accept {
                ballot: *ballot,
                slot: *slot,
                proposal: self.proposal(proposal),
                commit: *commit,
            },
            Message::InstallSnapshot {
                ballot,
                snapshot,
                commit,
            } => Message::InstallSnapshot {
                ballot: *ballot,
                snapshot: self.snapshot(snapshot),
                commit: *commit,
            },
            Message::Prepare { .. }
            | Message::Accepted { .. }
            | Message::Heartbeat { .. }
            | Message::HeartbeatAck { .. }
            | Message::Reject { .. }
            | Message::Removed { .. }
            | Message::TransferLeadership { .. } => message.clone(),
        }
    }

    fn model_msg(&self, msg: &ModelMsg) -> ModelMsg {
        match msg {
            // Only these carry requests or client tables; the rest are shared as they are.
            ModelMsg::Peer(message)
                if matches!(
                    **message,
                    Message::Promise { .. }
                        | Message::Accept { .. }
                        | Message::InstallSnapshot { .. }
                ) =>
            {
                ModelMsg::Peer(Arc::new(self.message(message)))
            }
            ModelMsg::Peer(_) => msg.clone(),
            ModelMsg::Request(ClientRequest::Write(request)) => {
                ModelMsg::Request(ClientRequest::Write(self.request(request)))
            }
            ModelMsg::Request(ClientRequest::Read { client, seq, query }) => {
                ModelMsg::Request(ClientRequest::Read {
                    client: self.client(*client),
                    seq: *seq,
                    query: *query,
                })
            }
            ModelMsg::Response(ClientResponse::Written { seq, output }) => {
                ModelMsg::Response(ClientResponse::Written {
                    seq: *seq,
                    output: self.output(*output),
                })
            }
            ModelMsg::Response(ClientResponse::ReadOk { seq, output }) => {
                ModelMsg::Response(ClientResponse::ReadOk {
                    seq: *seq,
                    output: self.output(*output),
                })
            }
            ModelMsg::Response(
                ClientResponse::Redirect { .. } | ClientResponse::Refused { .. },
            ) => msg.clone(),
        }
    }

    fn envelope(&self, envelope: Envelope<&ModelMsg>) -> Envelope<ModelMsg> {
        Envelope {
            src: self.id(envelope.src),
            dst: self.id(envelope.dst),
            msg: self.model_msg(envelope.msg),
        }
    }

    fn network(&self, network: &Network<ModelMsg>) -> Network<ModelMsg> {
        // Every kind keeps its own bookkeeping: copies on the non-duplicating network
        // (`iter_all` yields each copy), the last delivery on the duplicating one, and
        // per-channel order on the ordered one.
        match network {
            Network::UnorderedNonDuplicating(_) => {
                Network::new_unordered_nonduplicating(network.iter_all().map(|e| self.envelope(e)))
            }
            Network::UnorderedDuplicating(set, last) => {
                let set: Vec<_> = set.iter().map(|e| self.envelope(e.to_ref())).collect();
                Network::new_unordered_duplicating_with_last_msg(
                    set,
                    last.as_ref().map(|e| self.envelope(e.to_ref())),
                )
            }
            // Stateright 0.31's `iter_all` never leaves an ordered channel's first
            // message, so its channels are read directly.
            Network::Ordered(channels) => {
                Network::new_ordered(channels.iter().flat_map(|(&(src, dst), queue)| {
                    queue
                        .iter()
                        .map(move |msg| self.envelope(Envelope { src, dst, msg }))
                }))
            }
        }
    }

    fn replica(&self, replica: &Replica<Register>) -> Replica<Register> {
        let mut renamed = replica.clone();
        renamed.durable = self.durable(&replica.durable);
        renamed.table.rename(
            &|client| self.client(client),
            &|register: &mut Register| register.value = self.output(register.value),
            &|output: &mut Option<Value>| *output = self.output(*output),
        );
        renamed.waiters = replica
            .waiters
            .iter()
            .map(|(client, seq)| (self.client(*client), *seq))
            .collect();
        match &mut renamed.role {
            Role::Follower { .. } => {}
            Role::Candidate(candidacy) => {
                for promise in candidacy.promises.values_mut() {
                    for (_, entry) in promise.iter_mut() {
                        *entry = self.entry(entry);
                    }
                }
            }
            Role::Leader(leadership) => {
                for in_flight in leadership.in_flight.values_mut() {
                    in_flight.proposal = self.proposal(&in_flight.proposal);
                }
                for request in leadership.queue.iter_mut() {
                    *request = self.request(request);
                }
                for read in leadership.reads.iter_mut() {
                    read.client = self.client(read.client);
                }
            }
        }
        renamed
    }

    fn stored(&self, stored: &Stored) -> Stored {
        // An empty log or the initial snapshot names no client: shared as it is.
        Stored {
            durable: if stored.durable.accepted.is_empty() {
                stored.durable.clone()
            } else {
                Shared::new(self.durable(&stored.durable))
            },
            snapshot: if stored.snapshot.slot == 0 {
                stored.snapshot.clone()
            } else {
                Shared::new(self.snapshot(&stored.snapshot))
            },
        }
    }

    fn actor_state(&self, state: &ModelActorState) -> ModelActorState {
        match state {
            ModelActorState::Server(server) => ModelActorState::Server(ServerState {
                replica: self.replica(&server.replica),
                stored: self.stored(&server.stored),
                unsynced: server.unsynced,
                outbox: server
                    .outbox
                    .iter()
                    .map(|(to, msg)| (self.actor(*to), self.model_msg(msg)))
                    .collect(),
                digest: Default::default(),
            }),
            ModelActorState::Client(client) => {
                let mut session = client.session.clone();
                session.rename(&|c| self.client(c), &|value: &mut Value| {
                    *value = self.value(*value)
                });
                ModelActorState::Client(ClientState {
                    op_index: client.op_index,
                    session,
                })
            }
        }
    }

    fn history(&self, history: &ModelHistory) -> ModelHistory {
        let told: Vec<(ClientId, Told)> = history
            .told
            .iter()
            .map(|(client, event)| {
                let event = match event {
                    Told::Invoke(RegisterOp::Write(value)) => {
                        Told::Invoke(RegisterOp::Write(self.value(*value)))
                    }
                    Told::Invoke(RegisterOp::Read) => Told::Invoke(RegisterOp::Read),
                    Told::Return(RegisterRet::WriteOk(output)) => {
                        Told::Return(RegisterRet::WriteOk(self.output(*output)))
                    }
                    Told::Return(RegisterRet::ReadOk(output)) => {
                        Told::Return(RegisterRet::ReadOk(self.output(*output)))
                    }
                };
                (self.client(*client), event)
            })
            .collect();
        let mut linearizability = LinearizabilityTester::new(Default::default());
        for (client, event) in &told {
            // The same errors as the original tester met: it is told the same events.
            let _ = match event {
                Told::Invoke(op) => linearizability.on_invoke(*client, op.clone()),
                Told::Return(ret) => linearizability.on_return(*client, ret.clone()),
            };
        }
        let rename_keys = |map: &std::collections::BTreeMap<ClientId, u64>| {
            map.iter().map(|(c, seq)| (self.client(*c), *seq)).collect()
        };
        let rename_replies = |map: &std::collections::BTreeMap<(ClientId, u64), Option<Value>>| {
            map.iter()
                .map(|((c, seq), output)| ((self.client(*c), *seq), self.output(*output)))
                .collect()
        };
        ModelHistory(Shared::new(Observed {
            linearizability,
            invoked: rename_keys(&history.invoked),
            returned: rename_keys(&history.returned),
            write_replies: rename_replies(&history.write_replies),
            read_replies: rename_replies(&history.read_replies),
            told,
            linearizable: Default::default(),
        }))
    }

    fn spec_write(&self, write: &mut SpecWrite) {
        write.0 = self.client(write.0);
        write.2 = self.value(write.2);
    }

    fn violation(&self, violation: &SpecViolation) -> SpecViolation {
        let values = |value: &[SpecWrite]| -> Vec<SpecWrite> {
            value
                .iter()
                .map(|w| {
                    let mut w = *w;
                    self.spec_write(&mut w);
                    w
                })
                .collect()
        };
        match violation {
            SpecViolation::TwoValuesChosen {
                slot,
                first,
                second,
            } => SpecViolation::TwoValuesChosen {
                slot: *slot,
                first: values(first),
                second: values(second),
            },
            SpecViolation::WrongWriteReply {
                client,
                seq,
                replied,
                expected,
            } => SpecViolation::WrongWriteReply {
                client: self.client(*client),
                seq: *seq,
                replied: self.output(*replied),
                expected: expected.map(|e| self.output(e)),
            },
            SpecViolation::AppliedStateDiffers {
                node,
                applied,
                value,
                expected,
            } => SpecViolation::AppliedStateDiffers {
                node: *node,
                applied: *applied,
                value: self.output(*value),
                expected: expected.map(|e| self.output(e)),
            },
            SpecViolation::ReadNotFromPrefix { client, replied } => {
                SpecViolation::ReadNotFromPrefix {
                    client: self.client(*client),
                    replied: self.output(*replied),
                }
            }
            SpecViolation::ChoiceContradicted { .. }
            | SpecViolation::CommittedUnchosen { .. }
            | SpecViolation::EpochsDiffer { .. } => violation.clone(),
        }
    }

    fn ledger(&self, ledger: &Ledger) -> Ledger {
        let mut spec = (*ledger.spec).clone();
        spec.rename(&|write| self.spec_write(write));
        Ledger {
            votes: Shared::new(
                ledger
                    .votes
                    .iter()
                    .map(|((slot, ballot, proposal), voters)| {
                        ((*slot, *ballot, self.proposal(proposal)), voters.clone())
                    })
                    .collect(),
            ),
            spec: Shared::new(spec),
            spec_violation: ledger.spec_violation.as_ref().map(|v| self.violation(v)),
            ..ledger.clone()
        }
    }

    fn state(&self, state: &BallotState) -> BallotState {
        let system = &state.system;
        let renamed = ActorModelState {
            actor_states: self.per_actor(
                system
                    .actor_states
                    .iter()
                    .map(|s| Arc::new(self.actor_state(s)))
                    .collect(),
            ),
            network: self.network(&system.network),
            timers_set: self.per_actor(system.timers_set.clone()),
            random_choices: self.per_actor(system.random_choices.clone()),
            crashed: self.per_actor(system.crashed.clone()),
            history: self.history(&system.history),
            actor_storages: self.per_actor(
                system
                    .actor_storages
                    .iter()
                    .map(|s| s.as_ref().map(|stored| self.stored(stored)))
                    .collect(),
            ),
        };
        BallotState {
            system: renamed,
            ledger: self.ledger(&state.ledger),
        }
    }
}

/// A borrowed view of an owned envelope.
trait EnvelopeRef {
    fn to_ref(&self) -> Envelope<&ModelMsg>;
}

impl EnvelopeRef for Envelope<ModelMsg> {
    fn to_ref(&self) -> Envelope<&ModelMsg> {
        Envelope {
            src: self.src,
            dst: self.dst,
            msg: &self.msg,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::permutations;

    #[test]
    fn permutations_are_every_ordering_once() {
        let all = permutations(3);
        assert_eq!(all.len(), 6);
        let mut unique = all.clone();
        unique.dedup();
        assert_eq!(unique, all);
        assert!(all.iter().all(|p| {
            let mut sorted = p.clone();
            sorted.sort();
            sorted == vec![0, 1, 2]
        }));
    }
}
