//! The one place the hand-written concurrent structures get their primitives from.
//!
//! Under `--cfg ballot_loom` these are loom's instrumented types, so `cargo test
//! --cfg ballot_loom` explores every interleaving of the code that uses them (see
//! `tests/loom_waiters.rs`). A project cfg rather than plain `cfg(loom)`: that one also
//! switches tokio's internals and breaks its build.

#[cfg(ballot_loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};

#[cfg(not(ballot_loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

/// Locks `mutex`, recovering the data if another thread panicked while holding it: the
/// structures guarded here stay consistent at every unlock (each critical section is a
/// single insert, remove or swap), so a poisoned lock holds nothing half-done.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    #[cfg(ballot_loom)]
    {
        mutex
            .lock()
            .unwrap_or_else(|_| unreachable!("loom does not poison"))
    }
    #[cfg(not(ballot_loom))]
    {
        mutex
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
