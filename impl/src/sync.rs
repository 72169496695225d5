//! The one place the hand-written concurrent structures get their primitives from.
//!
//! With the `loom` feature these are loom's instrumented types, so `cargo test
//! --features loom` explores every interleaving of the code that uses them (see
//! `tests/loom_waiters.rs`).

#[cfg(feature = "loom")]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};

#[cfg(not(feature = "loom"))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

/// Locks `mutex`, recovering the data if another thread panicked while holding it: the
/// structures guarded here stay consistent at every unlock (each critical section is a
/// single insert, remove or swap), so a poisoned lock holds nothing half-done.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    #[cfg(feature = "loom")]
    {
        mutex
            .lock()
            .unwrap_or_else(|_| unreachable!("loom does not poison"))
    }
    #[cfg(not(feature = "loom"))]
    {
        mutex
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
