//! Swarm search: many random walks, each under its own randomly chosen restriction of
//! what may happen, for worlds too large to exhaust.
//!
//! A uniform random walk in a big model spends its steps where actions are plentiful
//! (deliveries, mostly) and rarely lines up the few rare ones a bug needs (a crash right
//! after a vote, two elections in a row). Swarm testing (Groce et al., ISSTA 2012)
//! varies the walks instead: before each walk, every *kind* of action (the caller says
//! what the kinds are) is switched on or off with even odds, and the walk takes only
//! switched-on kinds while any is enabled (any action otherwise, so it does not stall).
//! Some walks then see no crashes and many elections, others nothing but crashes and
//! deliveries, and together they reach corners a single uniform walk does not.
//!
//! Every walk is a pure function of the run's seed and its number: the walk that found
//! a violation is replayed by its action indices, which are also stateright's explorer
//! address. Walks are spread over threads; each thread counts the distinct states it
//! visited, and the counts are merged at the end.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use stateright::{Expectation, Model};

use crate::state_graph::{
    discoveries_in, fingerprint, own_properties, undiscovered, Discovery, PROPERTIES_MAX,
};

/// How long and how wide to search.
pub struct Options<F> {
    /// Worker threads (at least 1).
    pub threads: usize,
    /// When to stop starting walks.
    pub deadline: Instant,
    /// Most walks to start (`None`: until the deadline). With one thread, a run bounded
    /// this way is deterministic.
    pub max_walks: Option<u64>,
    /// The run's seed: walk `k` is a function of `(seed, k)`.
    pub seed: u64,
    /// Most steps per walk.
    pub depth: usize,
    /// Number of action kinds, and each action's kind (below that number).
    pub kinds: usize,
    /// Classifies an action.
    pub kind_of: F,
    /// Stop once every safety property is violated or every target found (always), or
    /// at the first violation (when true).
    pub stop_at_first_violation: bool,
}

/// A walk that discovered something.
#[derive(Clone, Debug)]
pub struct Walk {
    /// The walk's number in the run.
    pub number: u64,
    /// The initial state's index among `init_states`, then each action's index among
    /// its state's actions: replays the walk, and is stateright's explorer address.
    pub indices: Vec<usize>,
}

/// What a swarm search found.
pub struct Outcome {
    /// One per `Always` or `Sometimes` property of the model: the first walk (in
    /// completion order) that violated or reached it, up to the discovering state.
    pub discoveries: Vec<Discovery<Walk>>,
    /// Walks finished.
    pub walks: u64,
    /// Steps taken over all walks.
    pub steps: u64,
    /// Distinct states visited (by fingerprint).
    pub unique_states: usize,
    /// Longest walk.
    pub max_depth: usize,
    /// Wall time.
    pub duration: Duration,
}

/// SplitMix64: small, fast, and good enough to drive walks; its whole state is one
/// word, so a walk is a function of its seed alone.
struct Random(u64);

impl Random {
    fn new(seed: u64) -> Self {
        Random(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        (self.next() % n as u64) as usize
    }
}

/// The seed of walk `number` of a run seeded `seed`.
fn walk_seed(seed: u64, number: u64) -> u64 {
    Random::new(seed ^ number.wrapping_mul(0xd605_bbb5_8c8a_bbfd)).next()
}

/// Runs walks until the deadline (or until everything is discovered).
pub fn search<M, F>(model: &M, options: Options<F>) -> Outcome
where
    M: Model + Sync,
    M::State: Hash + Clone + Sync,
    F: Fn(&M::Action) -> usize + Sync,
{
    assert!(
        options.kinds >= 1 && options.kinds <= 64,
        "1 to 64 action kinds"
    );
    let started = Instant::now();
    let properties = own_properties(model);
    let discoveries = Mutex::new(undiscovered::<M, Walk>(&properties));
    // Properties settled (violated or found): walks stop evaluating them.
    let settled = AtomicU64::new(0);
    let all = if properties.len() == PROPERTIES_MAX {
        u64::MAX
    } else {
        (1u64 << properties.len()) - 1
    };
    let next_walk = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let inits = model.init_states();
    assert!(!inits.is_empty(), "a model has an initial state");
    let totals = Mutex::new((0u64, 0u64, 0usize, HashSet::<u64>::new()));

    let walk = |number: u64, seen: &mut HashSet<u64>| -> (u64, usize) {
        let mut random = Random::new(walk_seed(options.seed, number));
        // The swarm: each kind on or off with even odds (never all off).
        let kinds = if options.kinds == 64 {
            u64::MAX
        } else {
            (1u64 << options.kinds) - 1
        };
        let mut allowed = random.next();
        if allowed & kinds == 0 {
            allowed = u64::MAX;
        }
        let init = random.below(inits.len());
        let mut state = inits[init].clone();
        let mut indices = vec![init];
        let mut actions = Vec::new();
        let mut preferred = Vec::new();
        let mut steps = 0u64;
        loop {
            seen.insert(fingerprint(&state));
            let discovered =
                discoveries_in(&properties, model, &state, settled.load(Ordering::Relaxed));
            for (i, property) in properties.iter().enumerate() {
                if discovered & (1 << i) == 0 {
                    continue;
                }
                let mut found = discoveries.lock().expect("no worker panics holding it");
                if found[i].found.is_none() {
                    found[i].found = Some(Walk {
                        number,
                        indices: indices.clone(),
                    });
                    let now = settled.fetch_or(1 << i, Ordering::Relaxed) | (1 << i);
                    let violation = property.expectation == Expectation::Always;
                    if now & all == all || (violation && options.stop_at_first_violation) {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            }
            if indices.len() > options.depth || !model.within_boundary(&state) {
                break;
            }
            actions.clear();
            model.actions(&state, &mut actions);
            if actions.is_empty() {
                break;
            }
            preferred.clear();
            preferred.extend(
                (0..actions.len())
                    .filter(|i| allowed & (1 << (options.kind_of)(&actions[*i])) != 0),
            );
            let choice = if preferred.is_empty() {
                random.below(actions.len())
            } else {
                preferred[random.below(preferred.len())]
            };
            let action = actions.swap_remove(choice);
            steps += 1;
            match model.next_state(&state, action) {
                Some(next) => {
                    state = next;
                    indices.push(choice);
                }
                // An action that changes nothing: the walk has nowhere new to go.
                None => break,
            }
        }
        (steps, indices.len() - 1)
    };

    std::thread::scope(|scope| {
        for _ in 0..options.threads.max(1) {
            scope.spawn(|| {
                let mut seen = HashSet::new();
                let (mut walks, mut steps, mut depth) = (0u64, 0u64, 0usize);
                while !stop.load(Ordering::Relaxed) && Instant::now() < options.deadline {
                    let number = next_walk.fetch_add(1, Ordering::Relaxed);
                    if options.max_walks.is_some_and(|max| number >= max) {
                        break;
                    }
                    let (taken, length) = walk(number, &mut seen);
                    walks += 1;
                    steps += taken;
                    depth = depth.max(length);
                }
                let mut totals = totals.lock().expect("no worker panics holding it");
                totals.0 += walks;
                totals.1 += steps;
                totals.2 = totals.2.max(depth);
                if totals.3.len() < seen.len() {
                    std::mem::swap(&mut totals.3, &mut seen);
                }
                totals.3.extend(seen);
            });
        }
    });
    let (walks, steps, max_depth, seen) = totals.into_inner().expect("workers finished");
    Outcome {
        discoveries: discoveries.into_inner().expect("workers finished"),
        walks,
        steps,
        unique_states: seen.len(),
        max_depth,
        duration: started.elapsed(),
    }
}

/// Replays a walk's indices on `model`: the actions taken and every state visited.
pub fn replay<M: Model>(model: &M, indices: &[usize]) -> (Vec<M::Action>, Vec<M::State>)
where
    M::Action: Clone,
{
    let mut state = model
        .init_states()
        .into_iter()
        .nth(indices[0])
        .expect("the walk's initial state is the model's");
    let mut actions = Vec::new();
    let mut states = Vec::new();
    let mut enabled = Vec::new();
    for &index in &indices[1..] {
        enabled.clear();
        model.actions(&state, &mut enabled);
        let action = enabled.swap_remove(index);
        let next = model
            .next_state(&state, action.clone())
            .expect("a replayed walk's actions change the state");
        actions.push(action);
        states.push(std::mem::replace(&mut state, next));
    }
    states.push(state);
    (actions, states)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_are_functions_of_their_seed() {
        let a: Vec<u64> = (0..4).map(|k| walk_seed(7, k)).collect();
        let b: Vec<u64> = (0..4).map(|k| walk_seed(7, k)).collect();
        assert_eq!(a, b);
        assert_ne!(walk_seed(7, 0), walk_seed(7, 1));
        assert_ne!(walk_seed(7, 0), walk_seed(8, 0));
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut random = Random::new(1);
        let mut seen = [false; 5];
        for _ in 0..1_000 {
            seen[random.below(5)] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
