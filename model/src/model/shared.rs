//! [`Shared`]: a part of the state that many states share, copied on write and hashed
//! once.

use super::fingerprint;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

/// A value that many states share — a disk's durable state and snapshot, the vote
/// history, the abstract spec, the clients' history — copied when a step changes it
/// (like an `Arc` with [`Shared::make_mut`]), and keeping the digest of its value, so
/// that the fingerprints of all the states sharing it hash it once instead of once per
/// state. Equality, order and `Debug` are the value's.
///
/// ```
/// use ballot_model::model::Shared;
/// let mut a = Shared::new(vec![1, 2]);
/// let b = a.clone();
/// assert!(Shared::ptr_eq(&a, &b));
/// a.make_mut().push(3);
/// assert_eq!(*a, vec![1, 2, 3]);
/// assert_eq!(*b, vec![1, 2]);
/// assert_ne!(a, b);
/// ```
pub struct Shared<T>(Arc<Digested<T>>);

#[derive(Clone)]
struct Digested<T> {
    value: T,
    /// The fingerprint of `value`, computed when first hashed.
    digest: Digest,
}

/// A cached function of the value it is kept with (its digest, or a property's
/// verdict on it): no part of that value's identity (equal, ordered and hashed as
/// nothing), and never copied, since a value is copied in order to be changed.
#[derive(Debug)]
pub(super) struct Cached<T>(OnceLock<T>);

/// A value's cached fingerprint.
pub(super) type Digest = Cached<u64>;

impl<T: Copy + PartialEq + fmt::Debug> Cached<T> {
    /// The result, computed by `compute` on first need. Debug builds compute it again
    /// every time and assert it is the same: a value changed after it was cached would
    /// otherwise be judged (or told apart) by its old result.
    pub(super) fn of(&self, compute: impl Fn() -> T) -> T {
        let cached = *self.0.get_or_init(&compute);
        debug_assert_eq!(cached, compute(), "a value changed after it was cached");
        cached
    }
}

impl<T> Default for Cached<T> {
    fn default() -> Self {
        Cached(OnceLock::new())
    }
}

impl<T> Clone for Cached<T> {
    fn clone(&self) -> Self {
        Cached::default()
    }
}

impl<T> PartialEq for Cached<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> Eq for Cached<T> {}

impl<T> PartialOrd for Cached<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Cached<T> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl<T> Shared<T> {
    /// Shares `value`.
    pub fn new(value: T) -> Self {
        Shared(Arc::new(Digested {
            value,
            digest: Digest::default(),
        }))
    }

    /// True if `a` and `b` share one value (so are equal without comparing).
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl<T: Clone> Shared<T> {
    /// The value, to change: copied first if another state shares it; its digest is
    /// forgotten either way.
    pub fn make_mut(&mut self) -> &mut T {
        let digested = Arc::make_mut(&mut self.0);
        digested.digest = Digest::default();
        &mut digested.value
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0.value
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<T: Hash> Hash for Shared<T> {
    fn hash<H: Hasher>(&self, hasher: &mut H) {
        hasher.write_u64(self.0.digest.of(|| fingerprint(&self.0.value)));
    }
}

impl<T: PartialEq> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        Shared::ptr_eq(self, other) || self.0.value == other.0.value
    }
}

impl<T: Eq> Eq for Shared<T> {}

impl<T: PartialOrd> PartialOrd for Shared<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.0.value.partial_cmp(&other.0.value)
    }
}

impl<T: Ord> Ord for Shared<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.value.cmp(&other.0.value)
    }
}

impl<T: fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.value.fmt(f)
    }
}

impl<T: Default> Default for Shared<T> {
    fn default() -> Self {
        Shared::new(T::default())
    }
}
