//! A linearizability checker for histories recorded from a real cluster.
//!
//! A history is linearizable when every operation can be given one instant between its
//! invocation and its completion such that, run one at a time in that order, a
//! sequential specification gives the answers the clients saw. Deciding this is
//! NP-complete in general; the Wing–Gong search with Lowe's memoization (as in
//! Porcupine and Knossos's `wgl` checker) is fast in practice:
//!
//! * Events (invocations and completions) sit in one time-ordered linked list. The
//!   operations that may go next are exactly those invoked before the first completion
//!   still in the list: that completing operation has to be placed before anything
//!   invoked after it completed.
//! * The search tries each such operation against the spec; on success it unlinks the
//!   operation's two events and starts again from the head, on a dead end (reaching a
//!   completion) it undoes the last choice and tries the next one.
//! * A configuration is the set of placed operations plus the spec's state. Two paths
//!   that reach the same configuration have the same futures, so each is explored
//!   once. This is what makes thousands of operations tractable.
//! * Unknown operations (below) need not be placed, so a configuration is also cut when
//!   one with the same acknowledged operations and state but fewer unknown ones was
//!   seen (see `Memo`).
//!
//! Clients do not always learn what happened. A [`Outcome::Failed`] operation
//! definitely did not take effect (the server refused it), so it is dropped. An
//! [`Outcome::Unknown`] operation (timeout, lost connection) may have taken effect at
//! any time after its invocation, or never: it has no completion event, may be placed
//! anywhere after its invocation with whatever answer the spec gives, and need not be
//! placed at all: the search succeeds once every acknowledged operation is placed.
//!
//! Real-time order is strict: `a` precedes `b` only if `a` completed *before* `b` was
//! invoked. Equal timestamps count as concurrent, which is the safe reading of a clock
//! whose resolution may hide which came first.
//!
//! Cost: finding a linearization is usually quick; proving there is none means
//! exhausting every configuration up to the violation, and each unknown operation that
//! never took effect multiplies them. For scale, in an unoptimised build (about 250,000
//! steps a second), a 2,000-operation history of 8 clients with 1% unknown checks in
//! about 55,000 steps, and the same history with one stale read is refuted in about
//! 280,000.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{Debug, Write as _};
use std::hash::Hash;

use stateright::semantics::SequentialSpec;

/// A budget for the histories the system tests record (a few thousand operations per
/// key): ample for those, and a hopeless search stops within a minute even unoptimised.
pub const DEFAULT_BUDGET_STEPS: usize = 10_000_000;

/// What a client learned about an operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome<R> {
    /// The server answered `ret` at time `completed`: the operation took effect once,
    /// somewhere between its invocation and `completed`.
    Ok {
        /// The answer.
        ret: R,
        /// When the answer arrived, on the same clock as [`Operation::invoked`];
        /// never earlier than it.
        completed: u64,
    },
    /// The server refused the operation: it did not take effect.
    Failed,
    /// No answer (timeout, connection lost): it may have taken effect at any time after
    /// its invocation, or never.
    Unknown,
}

/// One operation of a history, as a client saw it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Operation<O, R> {
    /// Which client issued it. Only used to describe a verdict: real-time order, not
    /// the process, orders operations.
    pub process: u64,
    /// When the client sent it, on any monotone clock (nanoseconds, event counters).
    pub invoked: u64,
    /// The operation.
    pub op: O,
    /// What came of it.
    pub outcome: Outcome<R>,
}

impl<O, R> Operation<O, R> {
    /// An operation answered with `ret` at `completed`.
    ///
    /// ```
    /// use ballot_tests::linearizability::{Operation, Outcome};
    /// let op = Operation::ok(1, 10, 20, "read", 5);
    /// assert_eq!(op.outcome, Outcome::Ok { ret: 5, completed: 20 });
    /// ```
    pub fn ok(process: u64, invoked: u64, completed: u64, op: O, ret: R) -> Self {
        Self {
            process,
            invoked,
            op,
            outcome: Outcome::Ok { ret, completed },
        }
    }

    /// An operation the server refused.
    ///
    /// ```
    /// use ballot_tests::linearizability::{Operation, Outcome};
    /// let op: Operation<&str, u8> = Operation::failed(1, 10, "write");
    /// assert_eq!(op.outcome, Outcome::Failed);
    /// ```
    pub fn failed(process: u64, invoked: u64, op: O) -> Self {
        Self {
            process,
            invoked,
            op,
            outcome: Outcome::Failed,
        }
    }

    /// An operation whose fate the client never learned.
    ///
    /// ```
    /// use ballot_tests::linearizability::{Operation, Outcome};
    /// let op: Operation<&str, u8> = Operation::unknown(1, 10, "write");
    /// assert_eq!(op.outcome, Outcome::Unknown);
    /// ```
    pub fn unknown(process: u64, invoked: u64, op: O) -> Self {
        Self {
            process,
            invoked,
            op,
            outcome: Outcome::Unknown,
        }
    }
}

/// An operation of a history checked against the spec `S`.
pub type SpecOperation<S> = Operation<<S as SequentialSpec>::Op, <S as SequentialSpec>::Ret>;

/// An operation with its index in the history the caller gave.
type Numbered<'a, S> = (usize, &'a SpecOperation<S>);

/// The answer of [`check`]. Operations are named by their index in the history given.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The history is linearizable.
    Linearizable {
        /// A witness: every acknowledged operation and some unknown ones, in the order
        /// they took effect. Unknown operations left out may be taken never to have
        /// happened.
        order: Vec<usize>,
    },
    /// No order explains the history.
    NotLinearizable {
        /// The longest sequence of operations the search could place, in order.
        longest_prefix: Vec<usize>,
        /// The acknowledged operation not in the prefix that completed first: after the
        /// prefix, it had to be placed before anything invoked after its completion.
        overdue: usize,
        /// Every operation that could have come right after the prefix (not in it,
        /// not failed, invoked no later than `overdue` completed), by invocation time.
        /// The spec refused each of them there, or each led to a dead end.
        next_candidates: Vec<usize>,
    },
    /// The search used up its budget without an answer.
    GaveUp {
        /// How many steps it took.
        steps: usize,
    },
}

impl Verdict {
    /// Whether the history is known to be linearizable.
    ///
    /// ```
    /// use ballot_tests::linearizability::Verdict;
    /// assert!(Verdict::Linearizable { order: vec![] }.is_linearizable());
    /// assert!(!Verdict::GaveUp { steps: 9 }.is_linearizable());
    /// ```
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable { .. })
    }

    /// A readable account of the verdict, listing the operations it names.
    ///
    /// `operation` looks an index up in the history the verdict is about.
    ///
    /// ```
    /// use ballot_tests::kv_spec::{KeyOp, KeyRet, KeySpec};
    /// use ballot_tests::linearizability::{check, Operation};
    ///
    /// let history = [
    ///     Operation::ok(1, 0, 1, KeyOp::Set(b"a".to_vec()), KeyRet::Ok),
    ///     Operation::ok(2, 2, 3, KeyOp::Get, KeyRet::Value(None)),
    /// ];
    /// let verdict = check(&KeySpec::default(), &history, None).unwrap();
    /// let text = verdict.explain(|i| history.get(i));
    /// assert!(text.contains("not linearizable"), "{text}");
    /// ```
    pub fn explain<'a, O: Debug + 'a, R: Debug + 'a>(
        &self,
        operation: impl Fn(usize) -> Option<&'a Operation<O, R>>,
    ) -> String {
        let line = |index: usize| match operation(index) {
            Some(found) => format!("  #{index} {found:?}\n"),
            None => format!("  #{index} (not in the history)\n"),
        };
        let mut text = String::new();
        match self {
            Verdict::Linearizable { order } => {
                let _ = writeln!(text, "linearizable; one order:");
                order.iter().for_each(|&i| text.push_str(&line(i)));
            }
            Verdict::NotLinearizable {
                longest_prefix,
                overdue,
                next_candidates,
            } => {
                let _ = writeln!(
                    text,
                    "not linearizable; the longest order found ({} operations):",
                    longest_prefix.len()
                );
                longest_prefix.iter().for_each(|&i| text.push_str(&line(i)));
                let _ = writeln!(text, "then this one had to be placed:");
                text.push_str(&line(*overdue));
                let _ = writeln!(text, "but none of these could come next:");
                next_candidates
                    .iter()
                    .for_each(|&i| text.push_str(&line(i)));
            }
            Verdict::GaveUp { steps } => {
                let _ = writeln!(text, "gave up after {steps} steps");
            }
        }
        text
    }
}

/// Why a history cannot be checked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// An operation's answer is timed before its invocation: the recorder's clock is
    /// not monotone, or the history was put together wrongly.
    #[error("operation #{index} completed at {completed}, before it was invoked at {invoked}")]
    CompletedBeforeInvoked {
        /// The operation's index in the history.
        index: usize,
        /// Its invocation time.
        invoked: u64,
        /// Its completion time.
        completed: u64,
    },
}

/// Checks whether `history`, run against a spec starting from `initial`, is
/// linearizable, taking at most `budget` steps (`None`: no limit; see
/// [`DEFAULT_BUDGET_STEPS`]).
///
/// # Errors
///
/// [`HistoryError`] if an operation completed before it was invoked.
///
/// ```
/// use ballot_tests::kv_spec::{KeyOp, KeyRet, KeySpec};
/// use ballot_tests::linearizability::{check, Operation, Verdict};
///
/// // Two increments overlap, so either may go first; the read comes after both.
/// let history = [
///     Operation::ok(1, 0, 10, KeyOp::IncrBy(1), KeyRet::Integer(2)),
///     Operation::ok(2, 1, 5, KeyOp::IncrBy(1), KeyRet::Integer(1)),
///     Operation::ok(3, 11, 12, KeyOp::Get, KeyRet::Value(Some(b"2".to_vec()))),
/// ];
/// assert_eq!(
///     check(&KeySpec::default(), &history, None),
///     Ok(Verdict::Linearizable { order: vec![1, 0, 2] }),
/// );
/// ```
pub fn check<S>(
    initial: &S,
    history: &[Operation<S::Op, S::Ret>],
    budget: Option<usize>,
) -> Result<Verdict, HistoryError>
where
    S: SequentialSpec + Clone + Hash + Eq,
{
    validate(history.iter().enumerate())?;
    Ok(search(
        initial,
        history.iter().enumerate().collect(),
        budget,
    ))
}

/// Checks a history of a store of independent objects (such as keys) one object at a
/// time: linearizability is local, so the whole is linearizable exactly when every
/// object's part is. Each object gets its own `budget`, and starts from
/// `initial(key)`. Indices in the verdicts are positions in `history`.
///
/// # Errors
///
/// [`HistoryError`] if an operation completed before it was invoked.
///
/// ```
/// use ballot_tests::kv_spec::{KeyOp, KeyRet, KeySpec};
/// use ballot_tests::linearizability::{check_partitioned, Operation, Verdict};
///
/// let history = [
///     ("a", Operation::ok(1, 0, 1, KeyOp::Set(b"1".to_vec()), KeyRet::Ok)),
///     ("b", Operation::ok(2, 2, 3, KeyOp::Get, KeyRet::Value(None))),
///     ("a", Operation::ok(2, 4, 5, KeyOp::Get, KeyRet::Value(None))),
/// ];
/// let verdicts = check_partitioned(|_| KeySpec::default(), &history, None).unwrap();
/// assert_eq!(verdicts["b"], Verdict::Linearizable { order: vec![1] });
/// assert!(!verdicts["a"].is_linearizable(), "key a lost its write");
/// ```
pub fn check_partitioned<K, S>(
    initial: impl Fn(&K) -> S,
    history: &[(K, SpecOperation<S>)],
    budget: Option<usize>,
) -> Result<BTreeMap<K, Verdict>, HistoryError>
where
    K: Ord + Clone,
    S: SequentialSpec + Clone + Hash + Eq,
{
    validate(history.iter().map(|(_, operation)| operation).enumerate())?;
    let mut by_key: BTreeMap<&K, Vec<Numbered<S>>> = BTreeMap::new();
    for (index, (key, operation)) in history.iter().enumerate() {
        by_key.entry(key).or_default().push((index, operation));
    }
    Ok(by_key
        .into_iter()
        .map(|(key, operations)| (key.clone(), search(&initial(key), operations, budget)))
        .collect())
}

/// Refuses answers timed before their invocation, before any search starts.
fn validate<'a, O: 'a, R: 'a>(
    history: impl Iterator<Item = (usize, &'a Operation<O, R>)>,
) -> Result<(), HistoryError> {
    for (index, operation) in history {
        if let Outcome::Ok { completed, .. } = operation.outcome {
            if completed < operation.invoked {
                return Err(HistoryError::CompletedBeforeInvoked {
                    index,
                    invoked: operation.invoked,
                    completed,
                });
            }
        }
    }
    Ok(())
}

/// The end of the event list.
const NIL: usize = usize::MAX;
/// The list's head sentinel, at index 0 of the entry arrays.
const HEAD: usize = 0;

/// One event in the time-ordered list.
#[derive(Clone, Copy)]
struct Event {
    /// The operation's position in the search's operation list.
    operation: usize,
    /// Whether this is the completion (else the invocation).
    is_completion: bool,
}

/// The events of a history as a doubly linked list whose removals can be undone in
/// reverse order (Knuth's dancing links): the search's backtracking is exactly that.
struct EventList {
    /// `events[0]` is the head sentinel.
    events: Vec<Event>,
    next: Vec<usize>,
    previous: Vec<usize>,
    /// For each operation, the index of its completion event; `NIL` for unknown ones.
    completion_of: Vec<usize>,
}

impl EventList {
    fn new<O, R>(operations: &[(usize, &Operation<O, R>)]) -> Self {
        // (time, completion after invocation at equal times, operation): equal times
        // are concurrent, and the operation breaks ties so the search is deterministic.
        let mut keyed: Vec<(u64, bool, usize)> = Vec::with_capacity(operations.len() * 2);
        for (position, (_, operation)) in operations.iter().enumerate() {
            keyed.push((operation.invoked, false, position));
            if let Outcome::Ok { completed, .. } = operation.outcome {
                keyed.push((completed, true, position));
            }
        }
        keyed.sort_unstable();
        let sentinel = Event {
            operation: NIL,
            is_completion: false,
        };
        let mut events = vec![sentinel];
        let mut completion_of = vec![NIL; operations.len()];
        for &(_, is_completion, operation) in &keyed {
            if is_completion {
                completion_of[operation] = events.len();
            }
            events.push(Event {
                operation,
                is_completion,
            });
        }
        let count = events.len();
        let next = (1..=count)
            .map(|i| if i == count { NIL } else { i })
            .collect();
        let previous = (0..count).map(|i| i.wrapping_sub(1)).collect();
        Self {
            events,
            next,
            previous,
            completion_of,
        }
    }

    fn unlink(&mut self, entry: usize) {
        let (previous, next) = (self.previous[entry], self.next[entry]);
        self.next[previous] = next;
        if next != NIL {
            self.previous[next] = previous;
        }
    }

    fn relink(&mut self, entry: usize) {
        let (previous, next) = (self.previous[entry], self.next[entry]);
        self.next[previous] = entry;
        if next != NIL {
            self.previous[next] = entry;
        }
    }

    /// Removes an invocation event and its operation's completion event.
    fn lift(&mut self, invocation: usize) {
        self.unlink(invocation);
        let completion = self.completion_of[self.events[invocation].operation];
        if completion != NIL {
            self.unlink(completion);
        }
    }

    /// Undoes [`EventList::lift`]; lifts must be undone last-in, first-out.
    fn unlift(&mut self, invocation: usize) {
        let completion = self.completion_of[self.events[invocation].operation];
        if completion != NIL {
            self.relink(completion);
        }
        self.relink(invocation);
    }
}

/// A set of operations, by their index among the acknowledged (or the unknown) ones.
#[derive(Clone, PartialEq, Eq, Hash)]
struct OperationSet(Box<[u64]>);

impl OperationSet {
    fn new(len: usize) -> Self {
        Self(vec![0; len.div_ceil(64)].into_boxed_slice())
    }

    fn insert(&mut self, index: usize) {
        self.0[index / 64] |= 1 << (index % 64);
    }

    fn remove(&mut self, index: usize) {
        self.0[index / 64] &= !(1 << (index % 64));
    }

    fn is_subset(&self, other: &Self) -> bool {
        self.0.iter().zip(other.0.iter()).all(|(a, b)| a & !b == 0)
    }
}

/// Which operations are placed: acknowledged ones must all be, unknown ones may be.
struct Placed {
    /// How many acknowledged operations there are; they come first in the search's
    /// operation list, so position `p` is acknowledged when `p < acknowledged_count`.
    acknowledged_count: usize,
    acknowledged: OperationSet,
    unknown: OperationSet,
}

impl Placed {
    fn set(&mut self, position: usize, placed: bool) {
        let (set, index) = match position.checked_sub(self.acknowledged_count) {
            None => (&mut self.acknowledged, position),
            Some(index) => (&mut self.unknown, index),
        };
        if placed {
            set.insert(index);
        } else {
            set.remove(index);
        }
    }
}

/// The configurations explored so far: Lowe's memo, refined for unknown operations.
///
/// Two paths to the same placed operations and spec state have the same futures, so
/// the second is cut. Beyond that, placing an unknown operation is optional, so a
/// configuration is also cut when one with the same acknowledged operations and state
/// but a *subset* of its unknown ones was seen: that one can do everything this one
/// can, by never placing the extra ones. Without this, every unanswered operation would
/// double the configurations from its invocation on (placed or not, forever), and an
/// unanswered read, which changes nothing, would double them for nothing.
struct Memo<S> {
    /// Minimal sets of unknown operations seen, by (acknowledged placed, state).
    seen: HashMap<(OperationSet, S), Vec<OperationSet>>,
}

impl<S: Hash + Eq + Clone> Memo<S> {
    /// Records the configuration; false if it was seen already, or is dominated.
    fn first_visit(&mut self, placed: &Placed, state: &S) -> bool {
        let unknown_sets = self
            .seen
            .entry((placed.acknowledged.clone(), state.clone()))
            .or_default();
        if unknown_sets
            .iter()
            .any(|seen| seen.is_subset(&placed.unknown))
        {
            return false;
        }
        unknown_sets.retain(|seen| !placed.unknown.is_subset(seen));
        unknown_sets.push(placed.unknown.clone());
        true
    }
}

/// The Wing–Gong–Lowe search over `operations` (original index, operation).
fn search<S>(initial: &S, operations: Vec<Numbered<S>>, budget: Option<usize>) -> Verdict
where
    S: SequentialSpec + Clone + Hash + Eq,
{
    // Refused operations never happened: leave them out of the search entirely.
    // Acknowledged ones go first, as `Placed` expects.
    let (mut operations, unknown): (Vec<_>, Vec<_>) = operations
        .into_iter()
        .filter(|(_, operation)| !matches!(operation.outcome, Outcome::Failed))
        .partition(|(_, operation)| matches!(operation.outcome, Outcome::Ok { .. }));
    let acknowledged_count = operations.len();
    if acknowledged_count == 0 {
        return Verdict::Linearizable { order: Vec::new() };
    }
    let mut placed = Placed {
        acknowledged_count,
        acknowledged: OperationSet::new(acknowledged_count),
        unknown: OperationSet::new(unknown.len()),
    };
    operations.extend(unknown);
    let mut acknowledged_left = acknowledged_count;
    let mut list = EventList::new(&operations);
    let mut memo = Memo {
        seen: HashMap::new(),
    };
    let mut state = initial.clone();
    // The invocation events lifted so far, with the state before each.
    let mut stack: Vec<(usize, S)> = Vec::new();
    let mut longest_prefix: Vec<usize> = Vec::new();
    let mut steps = 0usize;
    let mut cursor = list.next[HEAD];
    loop {
        if budget.is_some_and(|budget| steps >= budget) {
            return Verdict::GaveUp { steps };
        }
        steps += 1;
        let event = (cursor != NIL).then(|| list.events[cursor]);
        if let Some(event) = event.filter(|event| !event.is_completion) {
            let position = event.operation;
            let operation = operations[position].1;
            let mut after = state.clone();
            let accepted = match &operation.outcome {
                Outcome::Ok { ret, .. } => after.is_valid_step(&operation.op, ret),
                // Whatever it would have answered, nobody saw it.
                Outcome::Unknown => {
                    after.invoke(&operation.op);
                    true
                }
                Outcome::Failed => false,
            };
            if accepted {
                placed.set(position, true);
                if memo.first_visit(&placed, &after) {
                    list.lift(cursor);
                    stack.push((cursor, std::mem::replace(&mut state, after)));
                    if position < acknowledged_count {
                        acknowledged_left -= 1;
                        if acknowledged_left == 0 {
                            let order = stack
                                .iter()
                                .map(|&(entry, _)| operations[list.events[entry].operation].0)
                                .collect();
                            return Verdict::Linearizable { order };
                        }
                    }
                    cursor = list.next[HEAD];
                    continue;
                }
                // Been here, or somewhere better, by another path.
                placed.set(position, false);
            }
            cursor = list.next[cursor];
            continue;
        }
        // A completion (or the end): whatever is placed so far cannot be extended in
        // time for it. Remember how far this got, then undo the last choice.
        if stack.len() > longest_prefix.len() {
            longest_prefix = stack
                .iter()
                .map(|&(entry, _)| operations[list.events[entry].operation].0)
                .collect();
        }
        let Some((entry, before)) = stack.pop() else {
            return explain_failure(&operations, longest_prefix);
        };
        state = before;
        let position = list.events[entry].operation;
        placed.set(position, false);
        list.unlift(entry);
        if position < acknowledged_count {
            acknowledged_left += 1;
        }
        cursor = list.next[entry];
    }
}

/// Builds the verdict for a history with no linearization, from the longest prefix.
fn explain_failure<O, R>(
    operations: &[(usize, &Operation<O, R>)],
    longest_prefix: Vec<usize>,
) -> Verdict {
    let placed: HashSet<usize> = longest_prefix.iter().copied().collect();
    let rest = || {
        operations
            .iter()
            .filter(|(index, _)| !placed.contains(index))
    };
    let overdue = rest()
        .filter_map(|&(index, operation)| match operation.outcome {
            Outcome::Ok { completed, .. } => Some((completed, index)),
            _ => None,
        })
        .min();
    let Some((deadline, overdue)) = overdue else {
        // The prefix holds every acknowledged operation, so it is a linearization. The
        // search returns as soon as it finds one, so this does not happen; the answer
        // is right regardless.
        return Verdict::Linearizable {
            order: longest_prefix,
        };
    };
    let mut next_candidates: Vec<(u64, usize)> = rest()
        .filter(|(_, operation)| operation.invoked <= deadline)
        .map(|&(index, operation)| (operation.invoked, index))
        .collect();
    next_candidates.sort_unstable();
    Verdict::NotLinearizable {
        longest_prefix,
        overdue,
        next_candidates: next_candidates
            .into_iter()
            .map(|(_, index)| index)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_spec::{KeyOp, KeyRet, KeySpec};
    use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
    use stateright::semantics::{ConsistencyTester, LinearizabilityTester};

    type KvOperation = Operation<KeyOp, KeyRet>;

    fn set(value: &str) -> KeyOp {
        KeyOp::Set(value.as_bytes().to_vec())
    }

    fn read(value: Option<&str>) -> KeyRet {
        KeyRet::Value(value.map(|v| v.as_bytes().to_vec()))
    }

    fn check_key(history: &[KvOperation]) -> Verdict {
        check(&KeySpec::default(), history, Some(DEFAULT_BUDGET_STEPS)).expect("well-formed")
    }

    /// Asserts that `order` is a linearization of `history`: every acknowledged
    /// operation once, no refused one, real-time order kept, and the spec agreeing.
    fn assert_witness<S>(initial: &S, history: &[Operation<S::Op, S::Ret>], order: &[usize])
    where
        S: SequentialSpec + Clone,
        S::Op: Debug,
        S::Ret: Debug,
    {
        let mut count = vec![0; history.len()];
        order.iter().for_each(|&i| count[i] += 1);
        for (index, operation) in history.iter().enumerate() {
            let expected = match operation.outcome {
                Outcome::Ok { .. } => 1..=1,
                Outcome::Failed => 0..=0,
                Outcome::Unknown => 0..=1,
            };
            assert!(
                expected.contains(&count[index]),
                "#{index} placed {} times",
                count[index]
            );
        }
        for (earlier, &first) in order.iter().enumerate() {
            for &second in &order[earlier + 1..] {
                if let Outcome::Ok { completed, .. } = history[second].outcome {
                    assert!(
                        completed >= history[first].invoked,
                        "#{second} completed before #{first} was invoked, yet is placed after it"
                    );
                }
            }
        }
        let mut state = initial.clone();
        for &index in order {
            let operation = &history[index];
            match &operation.outcome {
                Outcome::Ok { ret, .. } => assert!(
                    state.is_valid_step(&operation.op, ret),
                    "#{index} {operation:?} does not fit the order"
                ),
                _ => {
                    state.invoke(&operation.op);
                }
            }
        }
    }

    fn assert_linearizable(history: &[KvOperation]) -> Vec<usize> {
        match check_key(history) {
            Verdict::Linearizable { order } => {
                assert_witness(&KeySpec::default(), history, &order);
                order
            }
            other => panic!("{}", other.explain(|i| history.get(i))),
        }
    }

    #[test]
    fn overlapping_write_and_reads_linearize_around_the_write() {
        let history = [
            Operation::ok(1, 0, 10, set("a"), KeyRet::Ok),
            Operation::ok(2, 2, 5, KeyOp::Get, read(Some("a"))),
            Operation::ok(3, 1, 3, KeyOp::Get, read(None)),
            Operation::ok(2, 6, 12, KeyOp::Get, read(Some("a"))),
            Operation::ok(3, 4, 11, KeyOp::Get, read(Some("a"))),
        ];
        let order = assert_linearizable(&history);
        assert_eq!(
            order[..2],
            [2, 0],
            "the read of nothing goes before the write"
        );
    }

    #[test]
    fn stale_read_after_a_completed_write_is_not_linearizable() {
        let history = [
            Operation::ok(1, 0, 1, set("a"), KeyRet::Ok),
            Operation::ok(2, 2, 3, KeyOp::Get, read(None)),
        ];
        assert_eq!(
            check_key(&history),
            Verdict::NotLinearizable {
                longest_prefix: vec![0],
                overdue: 1,
                next_candidates: vec![1],
            }
        );
    }

    #[test]
    fn losing_an_acknowledged_write_is_not_linearizable() {
        let history = [
            Operation::ok(1, 0, 1, set("1"), KeyRet::Ok),
            Operation::ok(2, 2, 3, set("2"), KeyRet::Ok),
            Operation::ok(3, 4, 6, KeyOp::Get, read(Some("2"))),
            Operation::ok(1, 5, 7, KeyOp::Get, read(Some("1"))),
        ];
        let verdict = check_key(&history);
        assert_eq!(
            verdict,
            Verdict::NotLinearizable {
                longest_prefix: vec![0, 1, 2],
                overdue: 3,
                next_candidates: vec![3],
            },
            "{}",
            verdict.explain(|i| history.get(i))
        );
    }

    #[test]
    fn unknown_write_observed_by_a_later_read_took_effect() {
        let history = [
            Operation::unknown(1, 0, set("a")),
            Operation::ok(2, 5, 6, KeyOp::Get, read(Some("a"))),
        ];
        assert_eq!(assert_linearizable(&history), [0, 1]);
    }

    #[test]
    fn unknown_write_never_observed_may_never_have_happened() {
        let history = [
            Operation::unknown(1, 0, set("a")),
            Operation::ok(2, 5, 6, KeyOp::Get, read(None)),
            Operation::ok(2, 7, 8, KeyOp::Get, read(None)),
        ];
        assert_eq!(
            assert_linearizable(&history),
            [1, 2],
            "the unknown write is left out"
        );
    }

    #[test]
    fn unknown_write_may_take_effect_long_after_its_invocation() {
        let history = [
            Operation::unknown(1, 0, set("a")),
            Operation::ok(2, 5, 6, KeyOp::Get, read(None)),
            Operation::ok(2, 7, 8, KeyOp::Get, read(Some("a"))),
        ];
        assert_eq!(assert_linearizable(&history), [1, 0, 2]);
    }

    #[test]
    fn unknown_write_that_changes_nothing_early_may_still_take_effect_later() {
        // Placed right after the first write, the unknown one changes nothing; the
        // search must still try it after the second write, which the read needs.
        let history = [
            Operation::ok(1, 0, 1, set("a"), KeyRet::Ok),
            Operation::unknown(2, 2, set("a")),
            Operation::ok(3, 3, 4, set("b"), KeyRet::Ok),
            Operation::ok(3, 5, 6, KeyOp::Get, read(Some("a"))),
        ];
        assert_eq!(assert_linearizable(&history), [0, 2, 1, 3]);
    }

    #[test]
    fn unknown_write_once_observed_cannot_be_undone() {
        let history = [
            Operation::unknown(1, 0, set("a")),
            Operation::ok(2, 5, 6, KeyOp::Get, read(Some("a"))),
            Operation::ok(2, 7, 8, KeyOp::Get, read(None)),
        ];
        assert!(matches!(
            check_key(&history),
            Verdict::NotLinearizable { overdue: 2, .. }
        ));
    }

    #[test]
    fn failed_write_observed_by_a_read_is_not_linearizable() {
        let history = [
            Operation::failed(1, 0, set("a")),
            Operation::ok(2, 5, 6, KeyOp::Get, read(Some("a"))),
        ];
        assert_eq!(
            check_key(&history),
            Verdict::NotLinearizable {
                longest_prefix: vec![],
                overdue: 1,
                next_candidates: vec![1],
            },
            "a refused write did not happen, and is no candidate"
        );
        let unobserved = [
            Operation::failed(1, 0, set("a")),
            Operation::ok(2, 5, 6, KeyOp::Get, read(None)),
        ];
        assert_eq!(assert_linearizable(&unobserved), [1]);
    }

    #[test]
    fn two_increments_in_real_time_order_cannot_both_return_one() {
        let sequential = [
            Operation::ok(1, 0, 1, KeyOp::IncrBy(1), KeyRet::Integer(1)),
            Operation::ok(2, 2, 3, KeyOp::IncrBy(1), KeyRet::Integer(1)),
        ];
        assert!(matches!(
            check_key(&sequential),
            Verdict::NotLinearizable { overdue: 1, .. }
        ));
        let concurrent = [
            Operation::ok(1, 0, 3, KeyOp::IncrBy(1), KeyRet::Integer(1)),
            Operation::ok(2, 1, 2, KeyOp::IncrBy(1), KeyRet::Integer(1)),
        ];
        assert!(
            !check_key(&concurrent).is_linearizable(),
            "overlap or not, one of two increments from 0 sees 1"
        );
    }

    #[test]
    fn increments_answered_out_of_real_time_order_are_not_linearizable() {
        let sequential = [
            Operation::ok(1, 0, 1, KeyOp::IncrBy(1), KeyRet::Integer(2)),
            Operation::ok(2, 2, 3, KeyOp::IncrBy(1), KeyRet::Integer(1)),
        ];
        assert!(!check_key(&sequential).is_linearizable());
        let overlapping = [
            Operation::ok(1, 0, 2, KeyOp::IncrBy(1), KeyRet::Integer(2)),
            Operation::ok(2, 1, 3, KeyOp::IncrBy(1), KeyRet::Integer(1)),
        ];
        assert_eq!(assert_linearizable(&overlapping), [1, 0]);
    }

    #[test]
    fn equal_timestamps_are_concurrent() {
        let history = [
            Operation::ok(1, 0, 5, set("a"), KeyRet::Ok),
            Operation::ok(2, 5, 6, KeyOp::Get, read(None)),
        ];
        assert_eq!(assert_linearizable(&history), [1, 0]);
    }

    #[test]
    fn histories_without_acknowledged_operations_are_trivially_linearizable() {
        assert_eq!(check_key(&[]), Verdict::Linearizable { order: vec![] });
        let history = [
            Operation::unknown(1, 0, set("a")),
            Operation::failed(2, 0, set("b")),
        ];
        assert_eq!(check_key(&history), Verdict::Linearizable { order: vec![] });
    }

    #[test]
    fn an_answer_before_the_invocation_is_refused() {
        let history = [
            Operation::ok(1, 0, 1, set("a"), KeyRet::Ok),
            Operation::ok(1, 5, 4, KeyOp::Get, read(Some("a"))),
        ];
        let expected = HistoryError::CompletedBeforeInvoked {
            index: 1,
            invoked: 5,
            completed: 4,
        };
        assert_eq!(
            check(&KeySpec::default(), &history, None),
            Err(expected.clone())
        );
        let keyed: Vec<_> = history
            .into_iter()
            .map(|operation| ("k", operation))
            .collect();
        assert_eq!(
            check_partitioned(|_| KeySpec::default(), &keyed, None),
            Err(expected)
        );
    }

    #[test]
    fn the_search_gives_up_when_its_budget_runs_out() {
        // Ten concurrent increments answered 1..=10 in reverse invocation order: only
        // one of the 10! interleavings fits, and the search has to look for it.
        let history: Vec<KvOperation> = (0..10)
            .map(|i| Operation::ok(i, i, 100, KeyOp::IncrBy(1), KeyRet::Integer(10 - i as i64)))
            .collect();
        assert_eq!(
            check_key(&history[..0]),
            Verdict::Linearizable { order: vec![] }
        );
        assert_eq!(
            check(&KeySpec::default(), &history, Some(5)),
            Ok(Verdict::GaveUp { steps: 5 })
        );
        let order = assert_linearizable(&history);
        assert_eq!(order, (0..10).rev().collect::<Vec<_>>());
    }

    #[test]
    fn partitioned_verdicts_name_operations_by_their_place_in_the_whole_history() {
        let history = [
            ("x", Operation::ok(1, 0, 1, set("1"), KeyRet::Ok)),
            ("y", Operation::ok(1, 2, 3, set("2"), KeyRet::Ok)),
            ("x", Operation::ok(2, 4, 5, KeyOp::Get, read(Some("1")))),
            ("y", Operation::ok(2, 6, 7, KeyOp::Get, read(Some("1")))),
        ];
        let verdicts = check_partitioned(|_| KeySpec::default(), &history, None).unwrap();
        assert_eq!(verdicts.len(), 2);
        assert_eq!(verdicts["x"], Verdict::Linearizable { order: vec![0, 2] });
        assert_eq!(
            verdicts["y"],
            Verdict::NotLinearizable {
                longest_prefix: vec![1],
                overdue: 3,
                next_candidates: vec![3],
            },
            "key y read key x's value"
        );
    }

    #[test]
    fn explain_lists_the_operations_a_verdict_names() {
        let history = [
            Operation::ok(7, 0, 1, set("a"), KeyRet::Ok),
            Operation::ok(8, 2, 3, KeyOp::Get, read(None)),
        ];
        let text = check_key(&history).explain(|i| history.get(i));
        assert!(text.starts_with("not linearizable"), "{text}");
        assert!(text.contains("#0 Operation { process: 7"), "{text}");
        assert!(text.contains("#1 Operation { process: 8"), "{text}");
    }

    /// SplitMix64: a seeded generator, so a failing case prints a seed that replays it.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound
        }

        fn one_in(&mut self, odds: u64) -> bool {
            self.below(odds) == 0
        }

        fn pick<T: Clone>(&mut self, choices: &[T]) -> T {
            choices[self.below(choices.len() as u64) as usize].clone()
        }
    }

    /// Where one simulated client is.
    enum Client<R> {
        Idle,
        /// Waiting for operation `index`; `answer` once it took effect.
        Waiting {
            index: usize,
            answer: Option<R>,
        },
    }

    /// A small random history from clients of one real object that sometimes lies:
    /// an answer may be replaced by a random one, and a refusal may come after the
    /// operation took effect. Times are event counters, so no two events tie. Clients
    /// still waiting when it ends are unknown. With `timeouts`, a client may also stop
    /// waiting and move on, and what it gave up on may take effect later or never;
    /// without, each process's unknown operation is its last, as stateright's tester
    /// requires.
    fn small_history<S: SequentialSpec + Clone>(
        rng: &mut Rng,
        initial: &S,
        ops: &[S::Op],
        answers: &[S::Ret],
        timeouts: bool,
    ) -> Vec<Operation<S::Op, S::Ret>>
    where
        S::Op: Clone,
        S::Ret: Clone,
    {
        let mut real = initial.clone();
        let mut history: Vec<Operation<S::Op, S::Ret>> = Vec::new();
        let mut clients: Vec<Client<S::Ret>> = (0..3).map(|_| Client::Idle).collect();
        // Operations given up on that have not taken effect (yet).
        let mut limbo: Vec<usize> = Vec::new();
        let mut left = 1 + rng.below(8);
        for time in 0.. {
            let everyone_idle = clients.iter().all(|c| matches!(c, Client::Idle));
            if left == 0 && (everyone_idle || rng.one_in(4)) {
                break;
            }
            if !limbo.is_empty() && rng.one_in(8) {
                let index = limbo.swap_remove(rng.below(limbo.len() as u64) as usize);
                real.invoke(&history[index].op);
            }
            let process = rng.below(clients.len() as u64);
            let client = &mut clients[process as usize];
            match client {
                Client::Waiting { index, answer } if timeouts && rng.one_in(8) => {
                    if answer.is_none() {
                        limbo.push(*index);
                    }
                    *client = Client::Idle;
                }
                Client::Idle if left > 0 => {
                    left -= 1;
                    *client = Client::Waiting {
                        index: history.len(),
                        answer: None,
                    };
                    history.push(Operation::unknown(process, time, rng.pick(ops)));
                }
                Client::Idle => {}
                Client::Waiting { index, answer } => {
                    let operation: &mut Operation<S::Op, S::Ret> = &mut history[*index];
                    match answer.take() {
                        None if rng.one_in(6) => {
                            if rng.one_in(3) {
                                real.invoke(&operation.op);
                            }
                            operation.outcome = Outcome::Failed;
                            *client = Client::Idle;
                        }
                        None => *answer = Some(real.invoke(&operation.op)),
                        Some(real_answer) => {
                            let ret = if rng.one_in(6) {
                                rng.pick(answers)
                            } else {
                                real_answer
                            };
                            operation.outcome = Outcome::Ok {
                                ret,
                                completed: time,
                            };
                            *client = Client::Idle;
                        }
                    }
                }
            }
        }
        history
    }

    /// Runs stateright's tester over the same history: events in time order, refused
    /// operations left out (they did not happen), unknown ones left in flight.
    fn stateright_says<S>(initial: &S, history: &[Operation<S::Op, S::Ret>]) -> bool
    where
        S: SequentialSpec + Clone,
        S::Op: Clone + Debug,
        S::Ret: Clone + Debug,
    {
        let mut events = Vec::new();
        for operation in history {
            match &operation.outcome {
                Outcome::Failed => {}
                Outcome::Unknown => events.push((operation.invoked, operation, None)),
                Outcome::Ok { ret, completed } => {
                    events.push((operation.invoked, operation, None));
                    events.push((*completed, operation, Some(ret)));
                }
            }
        }
        events.sort_by_key(|&(time, _, _)| time);
        let mut tester = LinearizabilityTester::<u64, S>::new(initial.clone());
        for (_, operation, ret) in events {
            match ret {
                None => tester.on_invoke(operation.process, operation.op.clone()),
                Some(ret) => tester.on_return(operation.process, ret.clone()),
            }
            .expect("one operation in flight per process");
        }
        tester.serialized_history().is_some()
    }

    /// Checks `cases` random histories with both checkers; returns how many were
    /// linearizable, so callers can assert both answers were exercised.
    fn cross_check<S>(seed: u64, cases: u64, initial: &S, ops: &[S::Op], answers: &[S::Ret]) -> u64
    where
        S: SequentialSpec + Clone + Hash + Eq,
        S::Op: Clone + Debug,
        S::Ret: Clone + Debug,
    {
        let mut linearizable = 0;
        for case in 0..cases {
            let mut rng = Rng(seed ^ case);
            let history = small_history(&mut rng, initial, ops, answers, false);
            let ours = check(initial, &history, None).expect("well-formed");
            let theirs = stateright_says(initial, &history);
            assert_eq!(
                ours.is_linearizable(),
                theirs,
                "seed {seed} case {case}: stateright says {theirs}, we say\n{}",
                ours.explain(|i| history.get(i))
            );
            if let Verdict::Linearizable { order } = &ours {
                assert_witness(initial, &history, order);
                linearizable += 1;
            }
        }
        linearizable
    }

    /// Stateright's register, which does not implement `Eq`, as the memo needs.
    #[derive(Clone, Debug, PartialEq, Eq, Hash)]
    struct EqRegister(u8);

    impl SequentialSpec for EqRegister {
        type Op = RegisterOp<u8>;
        type Ret = RegisterRet<u8>;

        fn invoke(&mut self, op: &Self::Op) -> Self::Ret {
            let mut register = Register(self.0);
            let ret = register.invoke(op);
            self.0 = register.0;
            ret
        }
    }

    #[test]
    fn agrees_with_stateright_on_random_register_histories() {
        let ops = [
            RegisterOp::Read,
            RegisterOp::Write(1u8),
            RegisterOp::Write(2),
            RegisterOp::Write(3),
        ];
        let answers = [
            RegisterRet::WriteOk,
            RegisterRet::ReadOk(0),
            RegisterRet::ReadOk(1),
            RegisterRet::ReadOk(2),
            RegisterRet::ReadOk(3),
        ];
        let cases = 3000;
        let linearizable = cross_check(0x5eed_0001, cases, &EqRegister(0), &ops, &answers);
        assert!(
            (cases / 5..cases * 4 / 5).contains(&linearizable),
            "both answers exercised: {linearizable} of {cases} linearizable"
        );
    }

    /// Linearizability by its definition, without memo or event list: try every
    /// operation that may go next (not failed, not placed, and no unplaced acknowledged
    /// operation completed before its invocation) and succeed once every acknowledged
    /// one is placed. Exponential; for a handful of operations.
    fn brute_force<S>(state: &S, history: &[KvOperation], placed: &mut Vec<bool>) -> bool
    where
        S: SequentialSpec<Op = KeyOp, Ret = KeyRet> + Clone,
    {
        let pending_acknowledged = |placed: &[bool], index: usize| {
            !placed[index] && matches!(history[index].outcome, Outcome::Ok { .. })
        };
        if !(0..history.len()).any(|index| pending_acknowledged(placed, index)) {
            return true;
        }
        for next in 0..history.len() {
            let operation = &history[next];
            let must_wait = (0..history.len()).any(|other| {
                pending_acknowledged(placed, other)
                    && matches!(history[other].outcome,
                        Outcome::Ok { completed, .. } if completed < operation.invoked)
            });
            if placed[next] || must_wait {
                continue;
            }
            let mut after = state.clone();
            let fits = match &operation.outcome {
                Outcome::Ok { ret, .. } => after.is_valid_step(&operation.op, ret),
                Outcome::Unknown => {
                    after.invoke(&operation.op);
                    true
                }
                Outcome::Failed => false,
            };
            if fits {
                placed[next] = true;
                let found = brute_force(&after, history, placed);
                placed[next] = false;
                if found {
                    return true;
                }
            }
        }
        false
    }

    #[test]
    fn agrees_with_brute_force_when_clients_time_out_and_move_on() {
        let ops = [KeyOp::Get, set("1"), set("x"), KeyOp::IncrBy(1)];
        let answers = [
            KeyRet::Ok,
            KeyRet::Error,
            KeyRet::Integer(1),
            KeyRet::Integer(2),
            read(None),
            read(Some("1")),
            read(Some("2")),
        ];
        let (seed, cases) = (0x5eed_0005u64, 3000);
        let (mut linearizable, mut unknown_then_more) = (0, 0);
        for case in 0..cases {
            let mut rng = Rng(seed ^ case);
            let history = small_history(&mut rng, &KeySpec::default(), &ops, &answers, true);
            let ours = check_key(&history);
            let expected = brute_force(
                &KeySpec::default(),
                &history,
                &mut vec![false; history.len()],
            );
            assert_eq!(
                ours.is_linearizable(),
                expected,
                "seed {seed} case {case}: by definition {expected}, we say\n{}",
                ours.explain(|i| history.get(i))
            );
            if let Verdict::Linearizable { order } = &ours {
                assert_witness(&KeySpec::default(), &history, order);
                linearizable += 1;
            }
            let continued_after_unknown = history.iter().enumerate().any(|(i, unknown)| {
                unknown.outcome == Outcome::Unknown
                    && history[i + 1..]
                        .iter()
                        .any(|later| later.process == unknown.process)
            });
            unknown_then_more += u64::from(continued_after_unknown);
        }
        assert!(
            (cases / 5..cases * 4 / 5).contains(&linearizable),
            "both answers exercised: {linearizable} of {cases} linearizable"
        );
        assert!(
            unknown_then_more > cases / 5,
            "only {unknown_then_more} timed out and went on"
        );
    }

    #[test]
    fn agrees_with_stateright_on_random_key_histories() {
        let ops = [
            KeyOp::Get,
            set("1"),
            set("x"),
            KeyOp::IncrBy(1),
            KeyOp::IncrBy(-1),
        ];
        let answers = [
            KeyRet::Ok,
            KeyRet::Error,
            KeyRet::Integer(0),
            KeyRet::Integer(1),
            KeyRet::Integer(2),
            read(None),
            read(Some("1")),
            read(Some("x")),
        ];
        let cases = 3000;
        let linearizable = cross_check(0x5eed_0002, cases, &KeySpec::default(), &ops, &answers);
        assert!(
            (cases / 5..cases * 4 / 5).contains(&linearizable),
            "both answers exercised: {linearizable} of {cases} linearizable"
        );
    }

    /// A linearizable history of `count` operations by `processes` clients of a real
    /// key: each operation takes effect at a random instant inside its interval, and
    /// intervals of different clients overlap freely. About one in a hundred is
    /// refused (and did not happen) and one in a hundred never answered (and happened
    /// or not).
    fn recorded_history(rng: &mut Rng, processes: u64, count: usize) -> Vec<KvOperation> {
        let ops = [
            KeyOp::Get,
            KeyOp::Get,
            set("1"),
            set("7"),
            KeyOp::IncrBy(1),
            KeyOp::IncrBy(-2),
        ];
        let mut clocks = vec![0u64; processes as usize];
        // (linearization point, index) of each operation that takes effect.
        let mut effects = Vec::new();
        let mut history = Vec::with_capacity(count);
        while history.len() < count {
            let process = rng.below(processes);
            let clock = &mut clocks[process as usize];
            let invoked = *clock + rng.below(50);
            let completed = invoked + 1 + rng.below(200);
            *clock = completed + 1;
            let op = rng.pick(&ops);
            let index = history.len();
            let happens = match rng.below(100) {
                0 => {
                    history.push(Operation::failed(process, invoked, op));
                    false
                }
                1 => {
                    history.push(Operation::unknown(process, invoked, op));
                    // A client that times out keeps no further history: its next
                    // operation starts after the timeout, as a real one would.
                    *clock += 1000;
                    rng.one_in(2)
                }
                _ => {
                    history.push(Operation::ok(process, invoked, completed, op, KeyRet::Ok));
                    true
                }
            };
            if happens {
                effects.push((invoked + rng.below(completed - invoked + 1), index));
            }
        }
        effects.sort_unstable();
        let mut real = KeySpec::default();
        for (_, index) in effects {
            let ret = real.invoke(&history[index].op);
            if let Outcome::Ok { ret: answer, .. } = &mut history[index].outcome {
                *answer = ret;
            }
        }
        history
    }

    #[test]
    fn a_long_recorded_history_checks_within_the_budget() {
        let seed = 0x5eed_0003;
        let history = recorded_history(&mut Rng(seed), 8, 2000);
        match check_key(&history) {
            Verdict::Linearizable { order } => {
                assert_witness(&KeySpec::default(), &history, &order);
                let acknowledged = history
                    .iter()
                    .filter(|operation| matches!(operation.outcome, Outcome::Ok { .. }))
                    .count();
                assert!(acknowledged > 1900 && order.len() >= acknowledged);
            }
            other => panic!("seed {seed}: {}", other.explain(|i| history.get(i))),
        }
    }

    #[test]
    fn a_long_history_with_one_stale_read_is_caught() {
        let seed = 0x5eed_0004;
        let mut history = recorded_history(&mut Rng(seed), 8, 2000);
        // Make a late read that saw a value answer null instead: nothing deletes the
        // key, so once the first write took effect it can never read null again.
        let stale = (1000..history.len())
            .find(|&i| {
                history[i].op == KeyOp::Get
                    && matches!(history[i].outcome, Outcome::Ok { ref ret, .. } if *ret != read(None))
            })
            .expect("a read of something");
        if let Outcome::Ok { ret, .. } = &mut history[stale].outcome {
            *ret = read(None);
        }
        match check_key(&history) {
            Verdict::NotLinearizable { overdue, .. } => assert_eq!(overdue, stale),
            other => panic!("seed {seed}: {}", other.explain(|i| history.get(i))),
        }
    }
}
