//! One breadth-first exploration of a stateright [`Model`] that serves every kind of
//! property at once: it evaluates the model's safety properties and reachability
//! targets on each state as it is found, and keeps the reachable graph — compact, in
//! flat arrays — that the liveness analysis ([`crate::liveness`]) decides on afterwards.
//!
//! **Parallel, yet deterministic.** The queue is cut into chunks that worker threads
//! expand (successors, fingerprints, fairness classes, property conditions: all the
//! costly work); one thread merges the expanded chunks *in queue order*, numbering new
//! states as it meets them. So states are numbered in breadth-first order whatever the
//! threads do, counterexamples are shortest paths, and two runs build the same graph.
//!
//! **Compact.** A state is a number. The graph keeps per state its fingerprint, the
//! goal bits of the liveness properties, its first parent, and its outgoing edges (target,
//! fairness class, action index); the states' contents are dropped once expanded, and a
//! counterexample is rebuilt by replaying actions from an initial state.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use stateright::{Expectation, Model, Property};

use crate::liveness::{Fairness, FairnessSpec, LivenessProperty};

/// The class of a fault edge (never part of a fair cycle).
pub(crate) const FAULT: u32 = u32::MAX;
/// The class of an edge that carries no obligation.
pub(crate) const FREE: u32 = u32::MAX - 1;
/// No state.
pub(crate) const NONE: u32 = u32::MAX;

/// Most properties of each kind one exploration evaluates (one bit each).
pub const PROPERTIES_MAX: usize = 64;

/// Most states a chunk handed to a worker holds: small enough that a few chunks per
/// thread keep every thread busy on narrow levels, large enough that handing them out
/// costs nothing.
const CHUNK_MAX: usize = 512;

/// Chunks in flight per worker: one being expanded, one waiting.
const CHUNKS_PER_WORKER: usize = 2;

/// One transition of the graph.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Edge {
    /// The state it leads to.
    pub(crate) to: u32,
    /// An interned fairness key, or [`FAULT`] / [`FREE`].
    pub(crate) class: u32,
    /// Index of the action in `Model::actions` of the source state.
    pub(crate) action: u32,
}

/// The reachable state graph, compact: states are indices, their contents are not
/// kept.
pub(crate) struct Graph {
    /// Edges of state `s` are `edges[offsets[s]..offsets[s + 1]]`.
    pub(crate) offsets: Vec<u32>,
    pub(crate) edges: Vec<Edge>,
    /// Bit `i` set iff liveness property `i`'s condition holds.
    pub(crate) holds: Vec<u64>,
    /// Not expanded: outside the model's boundary (or below a depth bound).
    pub(crate) outside: Vec<bool>,
    /// Obligations due but cut by a bound, per state.
    pub(crate) cut: HashMap<u32, Vec<u32>>,
    /// How each state was first reached: `(parent, edge index)`; roots have
    /// `(NONE, init index)`.
    pub(crate) parent: Vec<(u32, u32)>,
    pub(crate) fingerprints: Vec<u64>,
    /// True if `fingerprints` are those of classes of states ([`Options::class`]).
    pub(crate) classes: bool,
    /// `(state, index in init_states)` of each initial state.
    pub(crate) inits: Vec<(u32, u32)>,
    /// Debug text of each interned key, for reports.
    pub(crate) key_names: Vec<String>,
    /// Whether each interned key is under strong fairness.
    pub(crate) strong: Vec<bool>,
}

impl Graph {
    fn new() -> Self {
        Graph {
            offsets: vec![0],
            edges: Vec::new(),
            holds: Vec::new(),
            outside: Vec::new(),
            cut: HashMap::new(),
            parent: Vec::new(),
            fingerprints: Vec::new(),
            classes: false,
            inits: Vec::new(),
            key_names: Vec::new(),
            strong: Vec::new(),
        }
    }

    /// Puts the edges, stored in expansion order with `ranges[s]` = (first, count) for
    /// state `s`, in state order (`offsets`), and turns each parent's local successor
    /// position into an edge index. Breadth-first, expansion order is state order and
    /// nothing moves.
    fn order_edges(&mut self, ranges: &[(u32, u32)]) {
        debug_assert_eq!(ranges.len(), self.len());
        let mut offsets = Vec::with_capacity(ranges.len() + 1);
        offsets.push(0u32);
        let mut in_order = true;
        for (first, count) in ranges {
            let end = *offsets.last().expect("one offset at least");
            in_order &= *count == 0 || *first == end;
            offsets.push(end + count);
        }
        if !in_order {
            let mut edges = Vec::with_capacity(self.edges.len());
            for (first, count) in ranges {
                edges.extend_from_slice(&self.edges[*first as usize..(first + count) as usize]);
            }
            self.edges = edges;
        }
        self.offsets = offsets;
        for (parent, via) in &mut self.parent {
            if *parent != NONE {
                *via += self.offsets[*parent as usize];
            }
        }
    }

    /// Returns the arrays' unused capacity.
    fn shrink_to_fit(&mut self) {
        self.offsets.shrink_to_fit();
        self.edges.shrink_to_fit();
        self.holds.shrink_to_fit();
        self.outside.shrink_to_fit();
        self.parent.shrink_to_fit();
        self.fingerprints.shrink_to_fit();
    }

    /// Number of states.
    pub(crate) fn len(&self) -> usize {
        self.holds.len()
    }

    /// Outgoing edges of `s`.
    pub(crate) fn out(&self, s: u32) -> &[Edge] {
        let s = s as usize;
        &self.edges[self.offsets[s] as usize..self.offsets[s + 1] as usize]
    }

    /// Bytes the graph holds per state (its arrays' capacity; the fingerprint index
    /// used while exploring is not counted here).
    pub(crate) fn bytes(&self) -> usize {
        use std::mem::size_of;
        self.offsets.capacity() * size_of::<u32>()
            + self.edges.capacity() * size_of::<Edge>()
            + self.holds.capacity() * size_of::<u64>()
            + self.outside.capacity()
            + self.parent.capacity() * size_of::<(u32, u32)>()
            + self.fingerprints.capacity() * size_of::<u64>()
            + self
                .cut
                .values()
                .map(|keys| keys.capacity() * size_of::<u32>() + 16)
                .sum::<usize>()
    }
}

/// A state's fingerprint: how the graph tells states apart (deterministic; one home,
/// in the model, since a server's state keeps a digest of itself made the same way).
pub use ballot_model::model::fingerprint;

/// Hashes a fingerprint (already uniformly distributed) to itself.
#[derive(Default)]
struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed with it; fold anything else in, to stay correct.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type FingerprintMap = HashMap<u64, u32, BuildHasherDefault<FingerprintHasher>>;

/// How states are told apart when not by their own fingerprint: the fingerprint of
/// their class under a symmetry (see `ClientSymmetry::fingerprint` in the model).
pub type ClassFingerprint<'a, S> = &'a (dyn Fn(&S) -> u64 + Sync);

/// How far and how wide to explore.
pub struct Options<'a, S> {
    /// Worker threads expanding states (at least 1).
    pub threads: usize,
    /// Stop expanding at this time (the exploration is then incomplete).
    pub deadline: Option<Instant>,
    /// Do not expand states at this depth (initial states are at depth 0); the
    /// exploration is then incomplete if any was cut.
    pub max_depth: Option<usize>,
    /// Called now and then from the merging thread.
    pub progress: Option<&'a mut dyn FnMut(&Progress)>,
    /// Which queued state to expand next.
    pub order: Order,
    /// Explore one state per class: states with the same class fingerprint are one
    /// node of the graph, expanded from the first member found. Safety and
    /// reachability verdicts carry over when the classes are those of a symmetry of
    /// the model and its properties; liveness is not decided on such a graph
    /// ([`Exploration::classes`]).
    pub class: Option<ClassFingerprint<'a, S>>,
}

/// The order states are expanded in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    /// Oldest first: states are numbered breadth first, counterexamples are shortest,
    /// and the numbering is the same on every run. The queue holds a whole level of
    /// full states, which bounds the worlds that fit in memory.
    #[default]
    BreadthFirst,
    /// Newest first: the queue holds about depth × branching states, so memory is the
    /// graph's (under 100 bytes per state) and the fingerprint index. The same states
    /// and verdicts, but counterexamples are not shortest and the numbering depends on
    /// thread timing.
    DepthFirst,
}

impl<S> Default for Options<'_, S> {
    fn default() -> Self {
        Options {
            threads: 1,
            deadline: None,
            max_depth: None,
            progress: None,
            order: Order::BreadthFirst,
            class: None,
        }
    }
}

/// Figures of an exploration so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    /// States generated, with repeats (initial states and every successor).
    pub states: usize,
    /// Distinct states.
    pub unique_states: usize,
    /// Deepest state found.
    pub max_depth: usize,
    /// Time since the exploration began.
    pub elapsed: Duration,
}

/// The verdict of one of the model's own properties (safety or reachability), and
/// where it was first discovered: `W` is a state number for an exploration, a walk for
/// the swarm search.
#[derive(Clone, Debug)]
pub struct Discovery<W> {
    /// The property's name.
    pub name: &'static str,
    /// `Always` (safety) or `Sometimes` (reachability).
    pub expectation: Expectation,
    /// The first place that violates it (`Always`) or satisfies it (`Sometimes`): for
    /// an exploration, the first state in its order.
    pub found: Option<W>,
}

/// The model's safety properties and reachability targets (its `Eventually` ones are
/// the liveness analysis's business), at most [`PROPERTIES_MAX`].
pub(crate) fn own_properties<M: Model>(model: &M) -> Vec<Property<M>> {
    let properties: Vec<_> = model
        .properties()
        .into_iter()
        .filter(|p| matches!(p.expectation, Expectation::Always | Expectation::Sometimes))
        .collect();
    assert!(
        properties.len() <= PROPERTIES_MAX,
        "at most {PROPERTIES_MAX} safety and reachability properties per check"
    );
    properties
}

/// A verdict not yet discovered for each of `properties`.
pub(crate) fn undiscovered<M: Model, W>(properties: &[Property<M>]) -> Vec<Discovery<W>> {
    properties
        .iter()
        .map(|p| Discovery {
            name: p.name,
            expectation: p.expectation.clone(),
            found: None,
        })
        .collect()
}

/// Bit `i` set iff `state` is a discovery for `properties[i]` (violates it if
/// `Always`, satisfies it if `Sometimes`); properties whose bit is in `skip` are not
/// evaluated.
pub(crate) fn discoveries_in<M: Model>(
    properties: &[Property<M>],
    model: &M,
    state: &M::State,
    skip: u64,
) -> u64 {
    let mut discovered = 0u64;
    for (i, property) in properties.iter().enumerate() {
        if skip & (1 << i) != 0 {
            continue;
        }
        let holds = (property.condition)(model, state);
        let is_discovery = match property.expectation {
            Expectation::Always => !holds,
            _ => holds,
        };
        if is_discovery {
            discovered |= 1 << i;
        }
    }
    discovered
}

/// What one exploration found.
pub struct Exploration {
    pub(crate) graph: Graph,
    /// One per `Always` or `Sometimes` property of the model, in the model's order.
    pub discoveries: Vec<Discovery<u32>>,
    /// Figures at the end.
    pub figures: Progress,
    /// True if every reachable state was expanded (no deadline, depth bound or
    /// violation stopped it; states outside the model's boundary do not count).
    pub complete: bool,
    /// True if a violated safety property stopped the exploration.
    pub stopped_by_violation: bool,
}

impl Exploration {
    /// True if the graph's nodes are classes of states ([`Options::class`]): its
    /// cycles need not be cycles of states, so no liveness verdict is drawn from it.
    pub fn classes(&self) -> bool {
        self.graph.classes
    }

    /// Distinct states.
    pub fn unique_states(&self) -> usize {
        self.graph.len()
    }

    /// Transitions.
    pub fn edges(&self) -> usize {
        self.graph.edges.len()
    }

    /// Bytes per state of the graph kept for the liveness analysis.
    pub fn bytes_per_state(&self) -> f64 {
        self.graph.bytes() as f64 / self.graph.len().max(1) as f64
    }

    /// True if some safety property is violated.
    pub fn violated(&self) -> bool {
        self.discoveries
            .iter()
            .any(|d| d.expectation == Expectation::Always && d.found.is_some())
    }

    /// The actions leading from an initial state to `state` (a shortest path), with
    /// the initial state's index among `init_states` and each action's index among its
    /// state's actions (stateright's explorer address).
    pub fn path_to<M: Model>(&self, model: &M, state: u32) -> Replayed<M>
    where
        M::State: Hash,
        M::Action: Clone,
    {
        replay(model, &self.graph, &self.graph.parent, state, &[])
    }
}

/// A path through the graph replayed on the model.
pub struct Replayed<M: Model> {
    /// Every action, in order.
    pub actions: Vec<M::Action>,
    /// Every state visited: one more than the actions.
    pub states: Vec<M::State>,
    /// The initial state's index among `init_states`, then each action's index among
    /// its state's actions.
    pub indices: Vec<usize>,
}

/// A state expanded by a worker.
struct Expanded<S, K> {
    /// Its number.
    index: u32,
    /// Goal bits of the liveness properties.
    holds: u64,
    /// Bits of the model's properties whose discovery this state is.
    discovered: u64,
    /// Not expanded (outside the boundary or at the depth bound).
    outside: bool,
    /// Obligations a bound cut here.
    cut: Vec<K>,
    /// `(action index, fairness, fingerprint, state)` per successor, in action order.
    successors: Vec<(u32, Fairness<K>, u64, S)>,
}

/// A chunk's states, expanded, in queue order.
type ExpandedChunk<S, K> = Vec<Expanded<S, K>>;

/// Explores every state of `model` reachable from its initial states, breadth first.
pub fn explore<M, F>(
    model: &M,
    fairness: &F,
    liveness: &[LivenessProperty<M>],
    mut options: Options<'_, M::State>,
) -> Exploration
where
    M: Model + Sync,
    M::State: Hash + Send,
    F: FairnessSpec<M> + Sync,
    F::Key: Send,
{
    assert!(
        liveness.len() <= PROPERTIES_MAX,
        "at most {PROPERTIES_MAX} liveness properties per check"
    );
    let started = Instant::now();
    let properties = own_properties(model);
    let mut discoveries = undiscovered(&properties);
    // Properties whose verdict is settled (a target found): workers skip them.
    let settled = AtomicU64::new(0);
    let threads = options.threads.max(1);
    let mut graph = Graph::new();
    graph.classes = options.class.is_some();
    let mut index_of = FingerprintMap::default();
    // Interned on the one merging thread, for every edge: aHash, not SipHash.
    let mut keys: HashMap<F::Key, u32, ahash::RandomState> = HashMap::default();
    // States numbered but not yet handed out, by index.
    let mut queue: VecDeque<(M::State, u32)> = VecDeque::new();
    let mut depths: Vec<u32> = Vec::new();
    // Per state, where its edges are in `graph.edges` (in expansion order) and how
    // many; the arrays are put in index order at the end.
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    let mut figures = Progress::default();
    let class = options.class;
    let identify = |state: &M::State| match class {
        Some(class) => class(state),
        None => fingerprint(state),
    };
    let discover = |graph: &mut Graph,
                    depths: &mut Vec<u32>,
                    ranges: &mut Vec<(u32, u32)>,
                    fp: u64,
                    parent: (u32, u32),
                    depth: u32|
     -> u32 {
        let index = graph.parent.len() as u32;
        graph.parent.push(parent);
        graph.fingerprints.push(fp);
        // Not expanded until merged: a stop leaves it so.
        graph.holds.push(0);
        graph.outside.push(true);
        depths.push(depth);
        ranges.push((0, 0));
        index
    };
    for (position, state) in model.init_states().into_iter().enumerate() {
        figures.states += 1;
        let fp = identify(&state);
        if index_of.contains_key(&fp) {
            continue;
        }
        let index = discover(
            &mut graph,
            &mut depths,
            &mut ranges,
            fp,
            (NONE, position as u32),
            0,
        );
        index_of.insert(fp, index);
        graph.inits.push((index, position as u32));
        queue.push_back((state, index));
    }

    let expand = |state: M::State, index: u32, depth: u32| -> Expanded<M::State, F::Key> {
        let mut holds = 0u64;
        for (i, property) in liveness.iter().enumerate() {
            if (property.condition)(model, &state) {
                holds |= 1 << i;
            }
        }
        let discovered =
            discoveries_in(&properties, model, &state, settled.load(Ordering::Relaxed));
        let below_bound = options.max_depth.is_some_and(|max| depth as usize >= max);
        if below_bound || !model.within_boundary(&state) {
            return Expanded {
                index,
                holds,
                discovered,
                outside: true,
                cut: Vec::new(),
                successors: Vec::new(),
            };
        }
        let cut = fairness.cut(model, &state);
        let mut actions = Vec::new();
        model.actions(&state, &mut actions);
        let mut successors = Vec::with_capacity(actions.len());
        for (position, action) in actions.into_iter().enumerate() {
            let class = fairness.classify(model, &state, &action);
            if let Some(next) = model.next_state(&state, action) {
                let fp = identify(&next);
                successors.push((position as u32, class, fp, next));
            }
        }
        Expanded {
            index,
            holds,
            discovered,
            outside: false,
            cut,
            successors,
        }
    };

    let mut stopped_by_violation = false;
    let mut stopped_early = false;
    let mut last_report = Instant::now();
    // A chunk to expand (states with their index and depth), and states the merge
    // found to be duplicates, for the worker to drop: freeing a state costs about as
    // much as building it, and the merging thread must not do it alone.
    type Job<S> = (u64, Vec<(S, u32, u32)>, Vec<S>);
    let (job_sender, job_receiver) = mpsc::channel::<Job<M::State>>();
    let job_receiver = Mutex::new(job_receiver);
    let (result_sender, result_receiver) = mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let job_receiver = &job_receiver;
            let result_sender = result_sender.clone();
            let expand = &expand;
            scope.spawn(move || loop {
                let job = job_receiver.lock().map(|receiver| receiver.recv());
                let Ok(Ok((chunk, states, garbage))) = job else {
                    return;
                };
                drop(garbage);
                let expanded: Vec<_> = states
                    .into_iter()
                    .map(|(state, index, depth)| expand(state, index, depth))
                    .collect();
                if result_sender.send((chunk, expanded)).is_err() {
                    return;
                }
            });
        }
        drop(result_sender);
        let mut next_chunk = 0u64;
        let mut merge_chunk = 0u64;
        let mut in_flight = 0usize;
        // Expanded chunks that arrived before an earlier one.
        let mut waiting: BTreeMap<u64, ExpandedChunk<M::State, F::Key>> = BTreeMap::new();
        let mut garbage: Vec<M::State> = Vec::new();
        let mut intern = |key: F::Key, strong: bool, graph: &mut Graph| -> u32 {
            let next = keys.len() as u32;
            *keys.entry(key).or_insert_with_key(|key| {
                graph.key_names.push(format!("{key:?}"));
                graph.strong.push(strong);
                next
            })
        };
        loop {
            let stop = stopped_by_violation || stopped_early;
            while !stop && in_flight < threads * CHUNKS_PER_WORKER && !queue.is_empty() {
                let size = (queue.len() / (threads * CHUNKS_PER_WORKER)).clamp(1, CHUNK_MAX);
                let taken = match options.order {
                    Order::BreadthFirst => queue.drain(..size).collect::<Vec<_>>(),
                    Order::DepthFirst => queue.split_off(queue.len() - size).into(),
                };
                let states = taken
                    .into_iter()
                    .map(|(state, index)| (state, index, depths[index as usize]))
                    .collect();
                let garbage = std::mem::take(&mut garbage);
                if job_sender.send((next_chunk, states, garbage)).is_err() {
                    break;
                }
                next_chunk += 1;
                in_flight += 1;
            }
            if in_flight == 0 {
                break;
            }
            let Ok((chunk, expanded)) = result_receiver.recv() else {
                break;
            };
            in_flight -= 1;
            waiting.insert(chunk, expanded);
            while let Some(expanded) = waiting.remove(&merge_chunk) {
                merge_chunk += 1;
                if stopped_by_violation {
                    continue;
                }
                for item in expanded {
                    let index = item.index;
                    let depth = depths[index as usize];
                    graph.holds[index as usize] = item.holds;
                    graph.outside[index as usize] = item.outside;
                    if item.discovered != 0 {
                        for (i, discovery) in discoveries.iter_mut().enumerate() {
                            if item.discovered & (1 << i) != 0 && discovery.found.is_none() {
                                discovery.found = Some(index);
                                if discovery.expectation == Expectation::Always {
                                    stopped_by_violation = true;
                                } else {
                                    settled.fetch_or(1 << i, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    if !item.cut.is_empty() {
                        let cut = item
                            .cut
                            .into_iter()
                            .map(|key| intern(key, true, &mut graph))
                            .collect();
                        graph.cut.insert(index, cut);
                    }
                    let first = graph.edges.len() as u32;
                    for (local, (action, class, fp, next)) in
                        item.successors.into_iter().enumerate()
                    {
                        figures.states += 1;
                        let class = match class {
                            Fairness::Fault => FAULT,
                            Fairness::Free => FREE,
                            Fairness::Weak(key) => intern(key, false, &mut graph),
                            Fairness::Strong(key) => intern(key, true, &mut graph),
                        };
                        let to = match index_of.entry(fp) {
                            Entry::Occupied(known) => {
                                garbage.push(next);
                                *known.get()
                            }
                            Entry::Vacant(new) => {
                                let to = discover(
                                    &mut graph,
                                    &mut depths,
                                    &mut ranges,
                                    fp,
                                    (index, local as u32),
                                    depth + 1,
                                );
                                new.insert(to);
                                figures.max_depth = figures.max_depth.max(depth as usize + 1);
                                queue.push_back((next, to));
                                to
                            }
                        };
                        graph.edges.push(Edge { to, class, action });
                    }
                    ranges[index as usize] = (first, graph.edges.len() as u32 - first);
                }
            }
            if options.deadline.is_some_and(|d| Instant::now() >= d) {
                stopped_early = true;
            }
            if let Some(progress) = options.progress.as_mut() {
                if last_report.elapsed() >= Duration::from_millis(100) {
                    last_report = Instant::now();
                    figures.unique_states = graph.parent.len();
                    figures.elapsed = started.elapsed();
                    progress(&figures);
                }
            }
        }
        drop(job_sender);
    });
    // States numbered but never expanded (a stop left them in the queue or in flight)
    // stay marked outside, with no edges.
    let cut_short = !queue.is_empty() || stopped_by_violation || stopped_early;
    graph.order_edges(&ranges);
    // States at the depth bound were numbered but not expanded.
    let depth_cut = options
        .max_depth
        .is_some_and(|max| depths.iter().any(|d| *d as usize >= max));
    // Growth by doubling leaves up to half of each array unused; the graph lives on
    // through the liveness analysis.
    graph.shrink_to_fit();
    figures.unique_states = graph.len();
    figures.elapsed = started.elapsed();
    if let Some(progress) = options.progress.as_mut() {
        progress(&figures);
    }
    Exploration {
        graph,
        discoveries,
        figures,
        complete: !cut_short && !depth_cut,
        stopped_by_violation,
    }
}

/// Rebuilds the path to `entry` (along `parents`) followed by `cycle` (edge indices)
/// by replaying actions from an initial state.
pub(crate) fn replay<M: Model>(
    model: &M,
    graph: &Graph,
    parents: &[(u32, u32)],
    entry: u32,
    cycle: &[u32],
) -> Replayed<M>
where
    M::State: Hash,
    M::Action: Clone,
{
    let mut prefix_edges = Vec::new();
    let mut at = entry;
    let init_position = loop {
        let (parent, via) = parents[at as usize];
        if parent == NONE {
            break via;
        }
        prefix_edges.push(via);
        at = parent;
    };
    prefix_edges.reverse();
    let mut state = model
        .init_states()
        .into_iter()
        .nth(init_position as usize)
        .expect("the graph's initial states are the model's");
    let mut states = Vec::new();
    let mut indices = vec![init_position as usize];
    let mut replayed = Vec::new();
    let mut actions = Vec::new();
    for edge in prefix_edges.iter().chain(cycle) {
        let edge = graph.edges[*edge as usize];
        actions.clear();
        model.actions(&state, &mut actions);
        let action = actions.swap_remove(edge.action as usize);
        let next = model
            .next_state(&state, action.clone())
            .expect("replayed actions were enabled when the graph was built");
        indices.push(edge.action as usize);
        // Along parents, each state replayed is the one the exploration expanded;
        // with classes, the graph holds its class's fingerprint instead.
        debug_assert!(graph.classes || fingerprint(&next) == graph.fingerprints[edge.to as usize]);
        states.push(std::mem::replace(&mut state, next));
        replayed.push(action);
    }
    states.push(state);
    Replayed {
        actions: replayed,
        states,
        indices,
    }
}
