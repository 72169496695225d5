//! A sound liveness checker for any stateright [`Model`], under weak and strong fairness.
//!
//! Stateright's own checkers decide `eventually` properties only at terminal states, so
//! a cycle in which the goal never holds — duelling candidates, a leader pre-empted
//! forever, a timer never re-armed — goes unreported. This module builds the whole
//! reachable state graph through the public `Model` API (`init_states`, `actions`,
//! `next_state`, `within_boundary`) and decides liveness on it:
//!
//! - `F p` ([`Temporal::Eventually`]) fails iff, among the states reachable from an
//!   initial state without passing a `p`-state, there is a *fair* strongly connected
//!   component, or a dead end.
//! - `F G p` ([`Temporal::EventuallyAlways`]) fails iff some reachable fair component
//!   contains a `¬p`-state, or some `¬p`-state is a dead end.
//!
//! **Fairness** is data ([`FairnessSpec`]): each action is a [`Fairness::Fault`] (may
//! happen finitely often; never part of a cycle, which is how "after the faults stop"
//! is expressed), [`Fairness::Weak`] under a key (weak fairness: a key enabled in every
//! state of a cycle must be taken in it), [`Fairness::Strong`] under a key (strong
//! fairness: a key enabled anywhere in a cycle must be taken in it), or
//! [`Fairness::Free`]. For weak keys a component is a witness iff it is fair as a
//! whole (a key enabled throughout the component is enabled throughout any sub-cycle,
//! which takes it). For strong keys, the states where a strong key is enabled but never
//! taken in the component are removed and what remains is decomposed again, as in the
//! classic algorithm for Streett conditions.
//!
//! **Dead ends** are states with no non-fault successor: a run may stop there forever.
//!
//! **Bounds.** A state outside the model's boundary is never expanded, and a spec may
//! name obligations that are due but cut by a bound ([`FairnessSpec::cut`]). Both make a
//! verdict [`Verdict::Unknown`] rather than "holds" when they lie where a violation
//! could hide; a reported violation never depends on them.
//!
//! Counterexamples are lassos ([`Lasso`]): a path from an initial state to a state of
//! the component, and a cycle through that state that takes every obligation the
//! component requires (so it is itself a fair run). A lasso is also given as
//! stateright's explorer path (initial state and action indices), so it opens there.

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;
use std::time::{Duration, Instant};

use stateright::Model;

use crate::state_graph::{self, replay, Exploration, Graph, Options, Progress, FAULT, FREE, NONE};

// The vocabulary (what an action is to the checker, the temporal operators, a property)
// has one definition, generic over any stateright model, beside the ballot model that
// states its fairness and properties in it; this crate depends on that one, not the
// other way round.
pub use ballot_model::model::fairness::Fairness;
pub use ballot_model::model::liveness::{LivenessProperty, Temporal};
use ballot_model::model::{BallotAction, BallotModel, BallotState, Obligation};

/// Fairness stated as data for model `M`.
pub trait FairnessSpec<M: Model> {
    /// Identifies one weak-fairness obligation (a message, a timer, an action class).
    type Key: Clone + Eq + Hash + Debug;

    /// Classifies `action`, enabled in `state`.
    fn classify(&self, model: &M, state: &M::State, action: &M::Action) -> Fairness<Self::Key>;

    /// Obligations due in `state` that the model's bounds keep from being taken.
    fn cut(&self, _model: &M, _state: &M::State) -> Vec<Self::Key> {
        Vec::new()
    }
}

/// Weak fairness on every action, keyed by the action itself: for models without
/// faults, where "every action that stays enabled is eventually taken" is the intent.
pub struct EveryActionFair;

impl<M: Model> FairnessSpec<M> for EveryActionFair
where
    M::Action: Clone + Eq + Hash + Debug,
{
    type Key = M::Action;
    fn classify(&self, _: &M, _: &M::State, action: &M::Action) -> Fairness<M::Action> {
        Fairness::Weak(action.clone())
    }
}

/// The ballot model's fairness (stated by the model, [`BallotModel::classify`] and
/// [`BallotModel::cut_obligations`]), as this checker reads it.
///
/// [`BallotModel::classify`]: ballot_model::model::BallotModel::classify
/// [`BallotModel::cut_obligations`]: ballot_model::model::BallotModel::cut_obligations
pub struct BallotFairness;

impl FairnessSpec<BallotModel> for BallotFairness {
    type Key = Obligation;

    fn classify(
        &self,
        model: &BallotModel,
        state: &BallotState,
        action: &BallotAction,
    ) -> Fairness<Obligation> {
        model.classify(state, action)
    }

    fn cut(&self, model: &BallotModel, state: &BallotState) -> Vec<Obligation> {
        model.cut_obligations(state)
    }
}

/// A counterexample: `prefix` leads from an initial state to `states[prefix.len()]`,
/// and `cycle` leads from there back to it, forever. An empty cycle is a dead end: the
/// run stops there.
pub struct Lasso<M: Model> {
    /// Actions from the initial state to the cycle.
    pub prefix: Vec<M::Action>,
    /// Actions around the cycle.
    pub cycle: Vec<M::Action>,
    /// Every state visited: `prefix.len() + cycle.len() + 1` of them.
    pub states: Vec<M::State>,
    /// Stateright's encoding of the path through prefix and cycle: the initial state's
    /// index, then each action's index among the state's actions.
    pub indices: Vec<usize>,
    /// Why the cycle is a counterexample (which obligations it meets, or "dead end").
    pub reason: String,
}

impl<M: Model> Lasso<M> {
    /// The explorer's address (`#/steps/...`) of the prefix followed by one turn of
    /// the cycle.
    pub fn explorer_path(&self) -> String {
        let indices: Vec<String> = self.indices.iter().map(usize::to_string).collect();
        format!("#/steps/{}", indices.join("/"))
    }

    /// The state where the cycle starts.
    pub fn cycle_entry(&self) -> &M::State {
        &self.states[self.prefix.len()]
    }
}

/// A property's verdict.
pub enum Verdict<M: Model> {
    /// No fair counterexample exists in the complete graph.
    Holds,
    /// A fair counterexample.
    Violated(Box<Lasso<M>>),
    /// No counterexample found, but the model's bounds cut states where one could hide.
    Unknown(String),
}

/// The result of one liveness property.
pub struct PropertyResult<M: Model> {
    /// Its name.
    pub name: &'static str,
    /// Its operator.
    pub temporal: Temporal,
    /// The verdict.
    pub verdict: Verdict<M>,
    /// Strongly connected components examined (over the states it concerns).
    pub components: usize,
    /// Of those, the ones with a cycle.
    pub cyclic_components: usize,
    /// Of those, the fair ones.
    pub fair_components: usize,
}

/// The result of a liveness check.
pub struct LivenessOutcome<M: Model> {
    /// Per property, in the order given.
    pub properties: Vec<PropertyResult<M>>,
    /// Distinct states in the graph.
    pub unique_states: usize,
    /// Transitions in the graph.
    pub edges: usize,
    /// States outside the boundary (not expanded) or with obligations cut by a bound.
    pub truncated_states: usize,
    /// Time to build the graph.
    pub explore_time: Duration,
    /// Time to decide every property on it.
    pub analysis_time: Duration,
}

/// Checks `properties` of `model` under `fairness`: explores the graph (one thread)
/// and decides every property on it. `progress` is called now and then with the
/// number of states explored so far.
pub fn check<M, F>(
    model: &M,
    fairness: &F,
    properties: Vec<LivenessProperty<M>>,
    mut progress: impl FnMut(usize),
) -> LivenessOutcome<M>
where
    M: Model + Sync,
    M::State: Hash + Send,
    M::Action: Clone,
    F: FairnessSpec<M> + Sync,
    F::Key: Send,
{
    let started = Instant::now();
    let mut report = |figures: &Progress| progress(figures.unique_states);
    let options = Options {
        progress: Some(&mut report),
        ..Options::default()
    };
    let exploration = state_graph::explore(model, fairness, &properties, options);
    let explore_time = started.elapsed();
    let mut outcome = analyze(model, &exploration, &properties);
    outcome.explore_time = explore_time;
    outcome
}

/// Decides `properties` (the ones `exploration` was built with, in the same order) on
/// the graph an exploration built.
pub fn analyze<M>(
    model: &M,
    exploration: &Exploration,
    properties: &[LivenessProperty<M>],
) -> LivenessOutcome<M>
where
    M: Model,
    M::State: Hash,
    M::Action: Clone,
{
    assert!(
        !exploration.classes(),
        "liveness is not decided on a graph of classes: its cycles need not be cycles of states"
    );
    let graph = &exploration.graph;
    let started = Instant::now();
    let mut truncated = graph.outside.iter().filter(|o| **o).count() + graph.cut.len();
    truncated = truncated.min(graph.len());
    // One decomposition of the whole graph serves every `F G` property.
    let all_states = vec![true; graph.len()];
    let mut whole: Option<Vec<Vec<u32>>> = None;
    let results = properties
        .iter()
        .enumerate()
        .map(|(index, property)| {
            let bit = 1u64 << index;
            match property.temporal {
                Temporal::Eventually => {
                    let (scope, parents) = goal_free_region(graph, bit);
                    let members: Vec<u32> = (0..graph.len() as u32)
                        .filter(|s| scope[*s as usize])
                        .collect();
                    let components = components_within(graph, &members);
                    decide(
                        model,
                        graph,
                        property,
                        &scope,
                        &components,
                        bit,
                        Some(&parents),
                    )
                }
                Temporal::EventuallyAlways => {
                    let components = whole.get_or_insert_with(|| {
                        let members: Vec<u32> = (0..graph.len() as u32).collect();
                        components_within(graph, &members)
                    });
                    decide(model, graph, property, &all_states, components, bit, None)
                }
            }
        })
        .collect();
    LivenessOutcome {
        properties: results,
        unique_states: graph.len(),
        edges: graph.edges.len(),
        truncated_states: truncated,
        explore_time: Duration::ZERO,
        analysis_time: started.elapsed(),
    }
}

/// The states reachable from an initial state through states where the goal (`bit`)
/// does not hold, with a breadth-first parent for each (for short prefixes).
fn goal_free_region(graph: &Graph, bit: u64) -> (Vec<bool>, Vec<(u32, u32)>) {
    let mut scope = vec![false; graph.len()];
    let mut parents = vec![(NONE, NONE); graph.len()];
    let mut queue = VecDeque::new();
    for (init, position) in &graph.inits {
        if graph.holds[*init as usize] & bit == 0 && !scope[*init as usize] {
            scope[*init as usize] = true;
            parents[*init as usize] = (NONE, *position);
            queue.push_back(*init);
        }
    }
    while let Some(s) = queue.pop_front() {
        let base = graph.offsets[s as usize];
        for (offset, edge) in graph.out(s).iter().enumerate() {
            let t = edge.to as usize;
            if !scope[t] && graph.holds[t] & bit == 0 {
                scope[t] = true;
                parents[t] = (s, base + offset as u32);
                queue.push_back(edge.to);
            }
        }
    }
    (scope, parents)
}

/// Strongly connected components of the subgraph induced by `members` over non-fault
/// edges (iterative Tarjan, with indices local to `members`).
fn components_within(graph: &Graph, members: &[u32]) -> Vec<Vec<u32>> {
    let local: HashMap<u32, u32> = members
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, i as u32))
        .collect();
    let n = members.len();
    let mut order = vec![NONE; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<u32> = Vec::new();
    let mut components: Vec<Vec<u32>> = Vec::new();
    let mut counter = 0u32;
    // Frames: (local state, next edge position in the global edge array).
    let mut frames: Vec<(u32, u32)> = Vec::new();
    for root in 0..n as u32 {
        if order[root as usize] != NONE {
            continue;
        }
        let visit = |v: u32, counter: &mut u32, order: &mut [u32], low: &mut [u32]| {
            order[v as usize] = *counter;
            low[v as usize] = *counter;
            *counter += 1;
        };
        visit(root, &mut counter, &mut order, &mut low);
        stack.push(root);
        on_stack[root as usize] = true;
        frames.push((root, graph.offsets[members[root as usize] as usize]));
        while let Some(&(v, position)) = frames.last() {
            let end = graph.offsets[members[v as usize] as usize + 1];
            if position < end {
                frames.last_mut().expect("a frame").1 += 1;
                let edge = graph.edges[position as usize];
                if edge.class == FAULT {
                    continue;
                }
                let Some(&w) = local.get(&edge.to) else {
                    continue;
                };
                if order[w as usize] == NONE {
                    visit(w, &mut counter, &mut order, &mut low);
                    stack.push(w);
                    on_stack[w as usize] = true;
                    frames.push((w, graph.offsets[edge.to as usize]));
                } else if on_stack[w as usize] {
                    low[v as usize] = low[v as usize].min(order[w as usize]);
                }
                continue;
            }
            frames.pop();
            if let Some(&(u, _)) = frames.last() {
                low[u as usize] = low[u as usize].min(low[v as usize]);
            }
            if low[v as usize] == order[v as usize] {
                let mut component = Vec::new();
                loop {
                    let w = stack.pop().expect("Tarjan's stack holds v");
                    on_stack[w as usize] = false;
                    component.push(members[w as usize]);
                    if w == v {
                        break;
                    }
                }
                components.push(component);
            }
        }
    }
    components
}

/// True if `members` (one component) contains a cycle: more than one state, or a
/// non-fault self-loop.
fn is_cyclic(graph: &Graph, members: &[u32]) -> bool {
    members.len() > 1
        || graph
            .out(members[0])
            .iter()
            .any(|e| e.class != FAULT && e.to == members[0])
}

/// A fair component found inside a strongly connected component.
struct FairComponent {
    members: Vec<u32>,
    /// For each obligation the component must meet, an edge inside it that meets it.
    takes: Vec<(u32, u32)>,
}

/// What the search for fair cycles inside one component found.
#[derive(Default)]
struct FairSearch {
    /// Maximal fair sub-components.
    fair: Vec<FairComponent>,
    /// Sub-components that are unfair only because of obligations a bound cut.
    cut: usize,
}

/// The fair cycles inside component `members` (Emerson–Lei refinement).
///
/// A weak obligation enabled in every state of a component and taken on none of its
/// inner edges rules out every cycle inside it. A strong obligation (a timer: "if it is
/// due again and again, it fires") enabled somewhere and never taken rules out the
/// states where it is enabled: a fair cycle must avoid them, so they are removed and
/// the rest decomposed again. What survives with nothing missing is fair.
fn fair_components(graph: &Graph, members: Vec<u32>) -> FairSearch {
    let mut found = FairSearch::default();
    let mut work = vec![members];
    while let Some(members) = work.pop() {
        if !is_cyclic(graph, &members) {
            continue;
        }
        let inside: std::collections::HashSet<u32> = members.iter().copied().collect();
        let obligations = |s: u32| {
            graph
                .out(s)
                .iter()
                .map(|e| e.class)
                .filter(|class| *class != FAULT && *class != FREE)
                .chain(graph.cut.get(&s).into_iter().flatten().copied())
        };
        // Taken inside, with one edge for each.
        let mut taking: HashMap<u32, (u32, u32)> = HashMap::new();
        for s in &members {
            let base = graph.offsets[*s as usize];
            for (offset, edge) in graph.out(*s).iter().enumerate() {
                if inside.contains(&edge.to) && edge.class != FAULT && edge.class != FREE {
                    taking
                        .entry(edge.class)
                        .or_insert((*s, base + offset as u32));
                }
            }
        }
        let is_cut = |key: u32| graph.cut.values().any(|keys| keys.contains(&key));
        // Weak obligations enabled everywhere.
        let mut everywhere: Vec<u32> = obligations(members[0])
            .filter(|k| !graph.strong[*k as usize])
            .collect();
        everywhere.sort_unstable();
        everywhere.dedup();
        for s in &members[1..] {
            if everywhere.is_empty() {
                break;
            }
            let here: Vec<u32> = obligations(*s).collect();
            everywhere.retain(|k| here.contains(k));
        }
        let weak_missing: Vec<u32> = everywhere
            .iter()
            .copied()
            .filter(|k| !taking.contains_key(k))
            .collect();
        if !weak_missing.is_empty() {
            if weak_missing.iter().all(|k| is_cut(*k)) {
                found.cut += 1;
            }
            continue;
        }
        // Strong obligations enabled somewhere and never taken.
        let strong_missing =
            |s: u32| obligations(s).any(|k| graph.strong[k as usize] && !taking.contains_key(&k));
        let (avoid, keep): (Vec<u32>, Vec<u32>) =
            members.iter().copied().partition(|s| strong_missing(*s));
        if avoid.is_empty() {
            let mut required: Vec<u32> = members
                .iter()
                .flat_map(|s| obligations(*s).collect::<Vec<_>>())
                .filter(|k| graph.strong[*k as usize])
                .chain(everywhere)
                .collect();
            required.sort_unstable();
            required.dedup();
            found.fair.push(FairComponent {
                members,
                takes: required.iter().map(|k| taking[k]).collect(),
            });
            continue;
        }
        let strong_cut = avoid.iter().all(|s| {
            obligations(*s)
                .filter(|k| graph.strong[*k as usize] && !taking.contains_key(k))
                .all(is_cut)
        });
        if strong_cut {
            // Without the cut obligations these states would stay: the verdict on
            // them is open.
            found.cut += 1;
        }
        if !keep.is_empty() {
            work.extend(components_within(graph, &keep));
        }
    }
    found
}

/// Decides one property on its scope.
fn decide<M: Model>(
    model: &M,
    graph: &Graph,
    property: &LivenessProperty<M>,
    scope: &[bool],
    components: &[Vec<u32>],
    bit: u64,
    parents: Option<&[(u32, u32)]>,
) -> PropertyResult<M>
where
    M::State: Hash,
    M::Action: Clone,
{
    let parents = parents.unwrap_or(&graph.parent);
    let mut result = PropertyResult {
        name: property.name,
        temporal: property.temporal,
        verdict: Verdict::Holds,
        components: components.len(),
        cyclic_components: 0,
        fair_components: 0,
    };
    let concerns = |s: u32| match property.temporal {
        Temporal::Eventually => true,
        Temporal::EventuallyAlways => graph.holds[s as usize] & bit == 0,
    };
    let mut unknown: Vec<String> = Vec::new();
    let mut violation: Option<Box<Lasso<M>>> = None;
    for component in components {
        if !is_cyclic(graph, component) {
            continue;
        }
        result.cyclic_components += 1;
        if !component.iter().any(|s| concerns(*s)) {
            continue;
        }
        let search = fair_components(graph, component.clone());
        if search.cut > 0 {
            unknown.push("a cycle is unfair only because a bound cut an obligation".into());
        }
        for fair in search.fair {
            result.fair_components += 1;
            let Some(&entry) = fair.members.iter().find(|s| concerns(**s)) else {
                continue;
            };
            if violation.is_some() {
                continue;
            }
            let cycle = fair_cycle(graph, &fair, entry);
            let reason = format!(
                "a fair cycle through {} states ({} obligations met in it, every other one \
                 is not continuously enabled or not due infinitely often), and {}",
                fair.members.len(),
                fair.takes.len(),
                match property.temporal {
                    Temporal::Eventually => "the goal never holds on it",
                    Temporal::EventuallyAlways => {
                        "it keeps returning to a state where the goal fails"
                    }
                }
            );
            violation = Some(Box::new(lasso(
                model, graph, parents, entry, &cycle, reason,
            )));
        }
    }
    for s in 0..graph.len() as u32 {
        if !scope[s as usize] || !concerns(s) {
            continue;
        }
        if graph.outside[s as usize] {
            unknown.push("a state outside the model's boundary was not expanded".into());
            continue;
        }
        let stuck = !graph.out(s).iter().any(|e| e.class != FAULT);
        if !stuck {
            continue;
        }
        if graph.cut.contains_key(&s) {
            unknown.push("a state is stuck only because a bound cut an obligation".into());
        } else if violation.is_none() {
            violation = Some(Box::new(lasso(
                model,
                graph,
                parents,
                s,
                &[],
                "a dead end: no step but a fault is possible, and the goal does not hold".into(),
            )));
        }
    }
    result.verdict = match (violation, unknown.first()) {
        (Some(lasso), _) => Verdict::Violated(lasso),
        (None, Some(reason)) => Verdict::Unknown(format!(
            "{reason} ({} such states or cycles)",
            unknown.len()
        )),
        (None, None) => Verdict::Holds,
    };
    result
}

/// A cycle through `entry` inside `fair` that takes each edge of `fair.takes`:
/// shortest paths from edge to edge, then back to `entry`. Returns edge indices.
fn fair_cycle(graph: &Graph, fair: &FairComponent, entry: u32) -> Vec<u32> {
    let inside: std::collections::HashSet<u32> = fair.members.iter().copied().collect();
    let mut cycle = Vec::new();
    let mut at = entry;
    for (source, edge) in &fair.takes {
        cycle.extend(path_within(graph, &inside, at, *source));
        cycle.push(*edge);
        at = graph.edges[*edge as usize].to;
    }
    cycle.extend(path_within(graph, &inside, at, entry));
    if cycle.is_empty() {
        // A cycle must take at least one step: the self-loop, or out and back.
        let first = graph
            .out(entry)
            .iter()
            .position(|e| e.class != FAULT && inside.contains(&e.to))
            .expect("a cyclic component has an edge from each member inside it");
        let edge = graph.offsets[entry as usize] + first as u32;
        cycle.push(edge);
        cycle.extend(path_within(
            graph,
            &inside,
            graph.edges[edge as usize].to,
            entry,
        ));
    }
    cycle
}

/// Shortest path of non-fault edges from `from` to `to` through `inside`.
fn path_within(
    graph: &Graph,
    inside: &std::collections::HashSet<u32>,
    from: u32,
    to: u32,
) -> Vec<u32> {
    if from == to {
        return Vec::new();
    }
    let mut via: HashMap<u32, u32> = HashMap::new();
    let mut queue = VecDeque::from([from]);
    while let Some(s) = queue.pop_front() {
        let base = graph.offsets[s as usize];
        for (offset, edge) in graph.out(s).iter().enumerate() {
            if edge.class == FAULT || !inside.contains(&edge.to) {
                continue;
            }
            if edge.to == from || via.contains_key(&edge.to) {
                continue;
            }
            via.insert(edge.to, base + offset as u32);
            if edge.to == to {
                let mut path = vec![base + offset as u32];
                let mut at = s;
                while at != from {
                    let edge = via[&at];
                    path.push(edge);
                    at = source_of(graph, edge);
                }
                path.reverse();
                return path;
            }
            queue.push_back(edge.to);
        }
    }
    unreachable!("members of one component reach each other")
}

/// The state an edge leaves (edges are stored grouped by source).
fn source_of(graph: &Graph, edge: u32) -> u32 {
    (graph.offsets.partition_point(|offset| *offset <= edge) - 1) as u32
}

/// Rebuilds a lasso's actions and states by replaying edges from an initial state.
fn lasso<M: Model>(
    model: &M,
    graph: &Graph,
    parents: &[(u32, u32)],
    entry: u32,
    cycle: &[u32],
    reason: String,
) -> Lasso<M>
where
    M::State: Hash,
    M::Action: Clone,
{
    let mut replayed = replay(model, graph, parents, entry, cycle);
    let cycle = replayed
        .actions
        .split_off(replayed.actions.len() - cycle.len());
    Lasso {
        prefix: replayed.actions,
        cycle,
        states: replayed.states,
        indices: replayed.indices,
        reason,
    }
}

#[cfg(test)]
mod tests;
