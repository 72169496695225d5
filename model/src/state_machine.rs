//! The application the log drives, as a trait, so the verified core serves any
//! deterministic state machine.

use std::fmt::Debug;
use std::hash::Hash;

/// A deterministic state machine replicated by the log.
///
/// `apply` must be a pure function of the state and the command: every replica applies
/// the same chosen commands in the same order and must reach the same state. The
/// `Hash`/`Ord` bounds exist so the model checker can store and compare states.
///
/// ```
/// use ballot_model::StateMachine;
///
/// #[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
/// struct Counter(u64);
///
/// impl StateMachine for Counter {
///     type Command = u64;       // add this much
///     type Output = u64;        // the new total
///     type Query = ();          // read the total
///     type QueryOutput = u64;
///     fn apply(&mut self, add: &u64) -> u64 { self.0 += add; self.0 }
///     fn query(&self, _: &()) -> u64 { self.0 }
/// }
///
/// let mut c = Counter::default();
/// assert_eq!(c.apply(&5), 5);
/// assert_eq!(c.query(&()), 5);
/// ```
pub trait StateMachine: Clone + Debug + Eq + Hash + Ord {
    /// A state-changing command (goes through the log).
    type Command: Clone + Debug + Eq + Hash + Ord;
    /// What applying a command returns to its client.
    type Output: Clone + Debug + Eq + Hash + Ord;
    /// A read-only query (served by read-index, never logged).
    type Query: Clone + Debug + Eq + Hash + Ord;
    /// What a query returns.
    type QueryOutput: Clone + Debug + Eq + Hash + Ord;

    /// Applies one chosen command.
    fn apply(&mut self, command: &Self::Command) -> Self::Output;

    /// Answers a query from the applied state.
    fn query(&self, query: &Self::Query) -> Self::QueryOutput;

    /// How many bytes `command` counts for against a slot's
    /// [`batch_bytes_max`](crate::ClusterConfig::batch_bytes_max). A driver that bounds
    /// its log records and frames needs this to be at least the command's encoded size;
    /// the default, the command's in-memory size, is right only for commands that own
    /// no heap data.
    ///
    /// ```
    /// # use ballot_model::StateMachine;
    /// # #[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
    /// # struct Counter(u64);
    /// # impl StateMachine for Counter {
    /// #     type Command = u64; type Output = u64; type Query = (); type QueryOutput = u64;
    /// #     fn apply(&mut self, add: &u64) -> u64 { self.0 += add; self.0 }
    /// #     fn query(&self, _: &()) -> u64 { self.0 }
    /// # }
    /// assert_eq!(Counter::command_bytes(&5), 8);
    /// ```
    fn command_bytes(command: &Self::Command) -> usize {
        std::mem::size_of_val(command)
    }
}
