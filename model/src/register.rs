//! The small application the model checks the protocol with: one register whose write
//! returns the previous value (like Redis `SET … GET`).
//!
//! A write that returns the old value is not idempotent in what it answers, so a retry
//! applied twice is visible to clients and to the linearizability checker: that is how
//! the model catches a missing deduplication.
//!
//! `RegisterSpec`, the sequential specification the model's linearizability tester
//! checks histories against, implements stateright's `SequentialSpec` and so exists only
//! with the `model` feature.

use crate::state_machine::StateMachine;
use serde::{Deserialize, Serialize};
#[cfg(feature = "model")]
use stateright::semantics::SequentialSpec;

/// A value in the model's register. Small on purpose: states must stay few.
pub type Value = u8;

/// A register holding an optional [`Value`].
///
/// ```
/// use ballot_model::{Register, StateMachine};
/// let mut r = Register::default();
/// assert_eq!(r.apply(&3), None);
/// assert_eq!(r.apply(&4), Some(3), "a write returns what it replaced");
/// assert_eq!(r.query(&()), Some(4));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Register {
    /// The current value.
    pub value: Option<Value>,
}

impl StateMachine for Register {
    type Command = Value;
    type Output = Option<Value>;
    type Query = ();
    type QueryOutput = Option<Value>;

    fn apply(&mut self, command: &Value) -> Option<Value> {
        self.value.replace(*command)
    }

    fn query(&self, _query: &()) -> Option<Value> {
        self.value
    }
}

/// An operation as a client invokes it, for the linearizability checker.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RegisterOp {
    /// Write a value (returns the previous one).
    Write(Value),
    /// Read the value.
    Read,
}

/// An operation's result as a client sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RegisterRet {
    /// The write took effect, replacing this value.
    WriteOk(Option<Value>),
    /// The value read.
    ReadOk(Option<Value>),
}

/// The sequential specification the client history must linearize to. Written apart
/// from [`Register`] on purpose: the history is checked against this, not against the
/// code under test.
///
/// ```
/// use ballot_model::{RegisterOp, RegisterRet, RegisterSpec};
/// use stateright::semantics::SequentialSpec;
/// let mut spec = RegisterSpec::default();
/// assert!(spec.is_valid_history([
///     (RegisterOp::Write(1), RegisterRet::WriteOk(None)),
///     (RegisterOp::Read, RegisterRet::ReadOk(Some(1))),
/// ]));
/// ```
#[cfg(feature = "model")]
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RegisterSpec {
    current: Option<Value>,
}

#[cfg(feature = "model")]
impl SequentialSpec for RegisterSpec {
    type Op = RegisterOp;
    type Ret = RegisterRet;

    fn invoke(&mut self, op: &RegisterOp) -> RegisterRet {
        match op {
            RegisterOp::Write(value) => {
                let previous = self.current;
                self.current = Some(*value);
                RegisterRet::WriteOk(previous)
            }
            RegisterOp::Read => RegisterRet::ReadOk(self.current),
        }
    }
}
