//! The sequential specification of one key of the ballot KV server, for the
//! linearizability checker in [`crate::linearizability`].
//!
//! Linearizability is local: a history of a whole store is linearizable exactly when
//! each key's sub-history is (every operation here touches one key). So the spec is
//! one Redis string key, and [`crate::linearizability::check_partitioned`] splits a
//! history by key. The semantics follow `ballot_node::kv::KvStore`: a key is missing
//! or holds a byte string; `INCRBY` reads it as a strict decimal `i64` (Redis's
//! `string2ll`: no sign on zero, no leading zeros, no spaces, no `+`).

use stateright::semantics::SequentialSpec;
use std::fmt;

/// One key as the server stores it: missing, or a byte string.
///
/// ```
/// use ballot_tests::kv_spec::{KeyOp, KeyRet, KeySpec};
/// use stateright::semantics::SequentialSpec;
///
/// let mut key = KeySpec::default();
/// assert_eq!(key.invoke(&KeyOp::IncrBy(5)), KeyRet::Integer(5), "a missing key counts as 0");
/// assert_eq!(key.invoke(&KeyOp::Get), KeyRet::Value(Some(b"5".to_vec())));
/// assert_eq!(key.invoke(&KeyOp::Set(b"x".to_vec())), KeyRet::Ok);
/// assert_eq!(key.invoke(&KeyOp::IncrBy(1)), KeyRet::Error, "not an integer");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeySpec {
    /// The stored bytes; `None` when the key does not exist.
    pub value: Option<Vec<u8>>,
}

/// An operation on one key. Printed as the Redis command would be (`SET "v"`), so an
/// anomaly report reads as the clients' history.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum KeyOp {
    /// `GET key`.
    Get,
    /// `SET key value`.
    Set(Vec<u8>),
    /// `INCRBY key delta` (also `INCR`, `DECR`, `DECRBY`).
    IncrBy(i64),
}

/// What the server answers to a [`KeyOp`]. Printed as `redis-cli` would show it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum KeyRet {
    /// The reply to `GET`: the value, or null for a missing key.
    Value(Option<Vec<u8>>),
    /// The reply to `SET`.
    Ok,
    /// The reply to a successful `INCRBY`: the new value.
    Integer(i64),
    /// An error reply to `INCRBY`: the value is not an integer, or the sum would
    /// overflow. The key is left as it was. Which of the two is not distinguished:
    /// both are decided by the same state, so the message adds nothing to the check.
    Error,
}

impl fmt::Debug for KeyOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyOp::Get => write!(f, "GET"),
            KeyOp::Set(value) => write!(f, "SET {:?}", String::from_utf8_lossy(value)),
            KeyOp::IncrBy(delta) => write!(f, "INCRBY {delta}"),
        }
    }
}

impl fmt::Debug for KeyRet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRet::Value(Some(value)) => write!(f, "{:?}", String::from_utf8_lossy(value)),
            KeyRet::Value(None) => write!(f, "(nil)"),
            KeyRet::Ok => write!(f, "OK"),
            KeyRet::Integer(n) => write!(f, "(integer) {n}"),
            KeyRet::Error => write!(f, "(error) not an integer or overflow"),
        }
    }
}

impl KeySpec {
    /// A key holding `value`.
    ///
    /// ```
    /// use ballot_tests::kv_spec::KeySpec;
    /// assert_eq!(KeySpec::holding(b"7").value, Some(b"7".to_vec()));
    /// ```
    pub fn holding(value: &[u8]) -> Self {
        Self {
            value: Some(value.to_vec()),
        }
    }
}

impl SequentialSpec for KeySpec {
    type Op = KeyOp;
    type Ret = KeyRet;

    fn invoke(&mut self, op: &KeyOp) -> KeyRet {
        match op {
            KeyOp::Get => KeyRet::Value(self.value.clone()),
            KeyOp::Set(value) => {
                self.value = Some(value.clone());
                KeyRet::Ok
            }
            KeyOp::IncrBy(delta) => {
                let current = match &self.value {
                    None => Some(0),
                    Some(bytes) => parse_redis_int(bytes),
                };
                match current.and_then(|n| n.checked_add(*delta)) {
                    Some(next) => {
                        self.value = Some(next.to_string().into_bytes());
                        KeyRet::Integer(next)
                    }
                    None => KeyRet::Error,
                }
            }
        }
    }
}

/// Parses `bytes` as Redis does for `INCRBY`: an optional `-`, then digits without
/// leading zeros, fitting an `i64`. `None` for anything else.
///
/// A copy of the server's parser rather than a call to it: the spec is what the server
/// is checked against, so it must not share the server's bugs.
fn parse_redis_int(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    let canonical = match digits.as_bytes() {
        [b'0'] => text == "0",
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if !canonical {
        return None;
    }
    // Canonical decimal text, so the standard parser agrees with Redis on every input
    // it accepts, including i64::MIN, and refuses what does not fit.
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incr(key: &mut KeySpec, delta: i64) -> KeyRet {
        key.invoke(&KeyOp::IncrBy(delta))
    }

    #[test]
    fn get_of_a_missing_key_is_null_and_set_then_get_reads_it_back() {
        let mut key = KeySpec::default();
        assert_eq!(key.invoke(&KeyOp::Get), KeyRet::Value(None));
        assert_eq!(key.invoke(&KeyOp::Set(b"a".to_vec())), KeyRet::Ok);
        assert_eq!(key.invoke(&KeyOp::Get), KeyRet::Value(Some(b"a".to_vec())));
    }

    #[test]
    fn incr_stores_the_decimal_string_of_the_sum() {
        let mut key = KeySpec::holding(b"-3");
        assert_eq!(incr(&mut key, 10), KeyRet::Integer(7));
        assert_eq!(key, KeySpec::holding(b"7"));
        assert_eq!(incr(&mut key, -7), KeyRet::Integer(0));
        assert_eq!(key, KeySpec::holding(b"0"));
    }

    #[test]
    fn incr_refuses_non_canonical_integers_and_leaves_them_alone() {
        for bad in [
            &b""[..],
            b"x",
            b"01",
            b"-0",
            b"+1",
            b" 1",
            b"1 ",
            b"-",
            b"1.0",
            b"9223372036854775808",
        ] {
            let mut key = KeySpec::holding(bad);
            assert_eq!(
                incr(&mut key, 1),
                KeyRet::Error,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
            assert_eq!(key, KeySpec::holding(bad), "an error changes nothing");
        }
    }

    #[test]
    fn incr_accepts_the_extremes_of_i64() {
        let mut key = KeySpec::holding(b"-9223372036854775808");
        assert_eq!(incr(&mut key, 1), KeyRet::Integer(i64::MIN + 1));
        let mut key = KeySpec::holding(b"9223372036854775807");
        assert_eq!(incr(&mut key, -1), KeyRet::Integer(i64::MAX - 1));
    }

    #[test]
    fn incr_that_would_overflow_is_an_error_and_changes_nothing() {
        let mut key = KeySpec::holding(b"9223372036854775807");
        assert_eq!(incr(&mut key, 1), KeyRet::Error);
        assert_eq!(key, KeySpec::holding(b"9223372036854775807"));
        let mut key = KeySpec::default();
        assert_eq!(incr(&mut key, i64::MIN), KeyRet::Integer(i64::MIN));
        assert_eq!(incr(&mut key, -1), KeyRet::Error);
        assert_eq!(key, KeySpec::holding(b"-9223372036854775808"));
    }

    #[test]
    fn is_valid_step_accepts_only_the_answer_the_spec_gives() {
        let mut key = KeySpec::holding(b"1");
        assert!(!key
            .clone()
            .is_valid_step(&KeyOp::IncrBy(1), &KeyRet::Integer(1)));
        assert!(!key.clone().is_valid_step(&KeyOp::Get, &KeyRet::Value(None)));
        assert!(key.is_valid_step(&KeyOp::IncrBy(1), &KeyRet::Integer(2)));
        assert_eq!(key, KeySpec::holding(b"2"), "a valid step moves the state");
    }
}
