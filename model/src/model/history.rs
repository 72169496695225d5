//! What the clients observed, recorded as messages cross the network, for the
//! linearizability tester and the spec's reply checks.

use super::actors::ModelMsg;
use super::config::ModelConfig;
use super::shared::Cached;
use super::Shared;
use crate::ballot::ClientId;
use crate::message::{ClientRequest, ClientResponse};
use crate::register::{RegisterOp, RegisterRet, RegisterSpec, Value};
use stateright::actor::Envelope;
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

/// The clients' history, shared between states until one of them records something
/// (stateright copies it on every step; few steps change it). Reads go through
/// [`Deref`] to [`Observed`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ModelHistory(pub(crate) Shared<Observed>);

impl Deref for ModelHistory {
    type Target = Observed;
    fn deref(&self) -> &Observed {
        &self.0
    }
}

/// What the clients observed.
///
/// An operation is *invoked* when its client first sends it (retries re-send the same
/// `(client, seq)` and are the same operation; a send under a higher seq while it is
/// pending is the same operation numbered again after its session expired unused) and
/// *returns* when the client accepts the first answer for it. A client never abandons an operation, so one thread id per
/// client is sound for the tester (one operation in flight per thread).
#[derive(Clone, Debug)]
pub struct Observed {
    /// Stateright's linearizability tester over the register spec, one thread per client.
    pub linearizability: LinearizabilityTester<ClientId, RegisterSpec>,
    /// Per client, the last seq invoked.
    pub invoked: BTreeMap<ClientId, u64>,
    /// Per client, the last seq returned.
    pub returned: BTreeMap<ClientId, u64>,
    /// Acknowledged writes: `(client, seq)` → output received.
    pub write_replies: BTreeMap<(ClientId, u64), Option<Value>>,
    /// Reads answered: `(client, seq)` → value received.
    pub read_replies: BTreeMap<(ClientId, u64), Option<Value>>,
    /// What the tester was told, in order: the tester's own records are private, so
    /// the client symmetry (`model::symmetry`) renames these and tells a new tester.
    /// No part of the state's identity: the tester's state is a function of them that
    /// does not depend on clients' names, so states whose testers agree have futures
    /// that agree under any renaming.
    pub told: Vec<(ClientId, Told)>,
    /// The tester's verdict, computed once per history: many states share one (it
    /// changes only when a client invokes or returns), and the tester searches orders
    /// of operations. No part of the state's identity; a copy starts without it.
    pub(super) linearizable: Cached<bool>,
}

/// One event told to the linearizability tester.
#[derive(Clone, Debug)]
pub enum Told {
    /// An operation was invoked.
    Invoke(RegisterOp),
    /// The client's operation returned.
    Return(RegisterRet),
}

/// Equality and hashing leave out [`Observed::told`]: how the tester got to its state
/// is no part of the state.
impl PartialEq for Observed {
    fn eq(&self, other: &Self) -> bool {
        self.linearizability == other.linearizability
            && self.invoked == other.invoked
            && self.returned == other.returned
            && self.write_replies == other.write_replies
            && self.read_replies == other.read_replies
    }
}

impl Eq for Observed {}

impl Hash for Observed {
    fn hash<H: Hasher>(&self, hasher: &mut H) {
        self.linearizability.hash(hasher);
        self.invoked.hash(hasher);
        self.returned.hash(hasher);
        self.write_replies.hash(hasher);
        self.read_replies.hash(hasher);
    }
}

impl Default for Observed {
    fn default() -> Self {
        Observed {
            linearizability: LinearizabilityTester::new(RegisterSpec::default()),
            invoked: BTreeMap::new(),
            returned: BTreeMap::new(),
            write_replies: BTreeMap::new(),
            read_replies: BTreeMap::new(),
            told: Vec::new(),
            linearizable: Cached::default(),
        }
    }
}

/// Client id of stateright actor index `index`, if it is a client.
fn client_of(config: &ModelConfig, index: usize) -> Option<ClientId> {
    (index >= config.servers && index < config.servers + config.clients)
        .then(|| (index - config.servers) as ClientId)
}

/// `record_msg_out` hook: a client's first send of an operation invokes it.
pub fn record_invocation(
    config: &ModelConfig,
    history: &ModelHistory,
    envelope: Envelope<&ModelMsg>,
) -> Option<ModelHistory> {
    let ModelMsg::Request(request) = envelope.msg else {
        return None;
    };
    let client = client_of(config, usize::from(envelope.src))?;
    let (_, seq) = request.id();
    let last_invoked = history.invoked.get(&client).copied();
    if last_invoked.is_some_and(|last| last >= seq) {
        return None; // A retry of an operation already invoked.
    }
    if last_invoked.is_some() && last_invoked != history.returned.get(&client).copied() {
        // The pending operation, numbered above an expired session's floor (its
        // earlier attempts were all refused untaken): the same operation.
        let mut next = Observed::clone(history);
        next.invoked.insert(client, seq);
        return Some(ModelHistory(Shared::new(next)));
    }
    let op = match request {
        ClientRequest::Write(request) => RegisterOp::Write(request.command),
        ClientRequest::Read { .. } => RegisterOp::Read,
    };
    let mut next = Observed::clone(history);
    // An error means two operations in flight for one client: the tester then marks the
    // history invalid, which the linearizability property reports.
    let _ = next.linearizability.on_invoke(client, op.clone());
    next.told.push((client, Told::Invoke(op)));
    next.invoked.insert(client, seq);
    Some(ModelHistory(Shared::new(next)))
}

/// `record_msg_in` hook: a client accepting an answer returns the operation. Only
/// called for deliveries the client acts on, i.e. answers to its current operation.
pub fn record_return(
    config: &ModelConfig,
    history: &ModelHistory,
    envelope: Envelope<&ModelMsg>,
) -> Option<ModelHistory> {
    let ModelMsg::Response(response) = envelope.msg else {
        return None;
    };
    let client = client_of(config, usize::from(envelope.dst))?;
    let seq = response.seq();
    if history.invoked.get(&client) != Some(&seq)
        || history
            .returned
            .get(&client)
            .is_some_and(|last| *last >= seq)
    {
        return None;
    }
    let mut next = Observed::clone(history);
    let ret = match response {
        ClientResponse::Written { output, .. } => {
            next.write_replies.insert((client, seq), *output);
            RegisterRet::WriteOk(*output)
        }
        ClientResponse::ReadOk { output, .. } => {
            next.read_replies.insert((client, seq), *output);
            RegisterRet::ReadOk(*output)
        }
        ClientResponse::Redirect { .. } | ClientResponse::Refused { .. } => return None,
    };
    let _ = next.linearizability.on_return(client, ret.clone());
    next.told.push((client, Told::Return(ret)));
    next.returned.insert(client, seq);
    Some(ModelHistory(Shared::new(next)))
}

impl Observed {
    /// True if the history so far is linearizable.
    pub fn is_linearizable(&self) -> bool {
        self.linearizable
            .of(|| self.linearizability.is_consistent())
    }
}
