//! Loom checks of the waiter table and its reply slots: every interleaving of an answer,
//! a waiting caller, a retry and a cancellation. Run with
//! `cargo test -p ballot-node --features loom --test loom_waiters` (the dev profile
//! optimises dependencies, loom included, so this takes seconds).
#![cfg(feature = "loom")]

use ballot_node::waiters::Waiters;
use loom::sync::Arc;
use loom::thread;

/// An answer racing the caller's first poll is never lost: the caller always gets it.
#[test]
fn answer_racing_the_wait_is_not_lost() {
    loom::model(|| {
        let waiters = Arc::new(Waiters::<u32>::default());
        let reply = waiters.register(1, 1);
        let completer = {
            let waiters = waiters.clone();
            thread::spawn(move || waiters.complete(1, 1, 42))
        };
        // A lost wake-up would leave block_on parked forever: loom reports a deadlock.
        assert_eq!(loom::future::block_on(reply), Some(42));
        assert!(completer.join().unwrap());
        assert!(waiters.is_empty());
    });
}

/// Two answers for one request (a retry answered twice): exactly one is delivered.
#[test]
fn two_answers_deliver_exactly_one() {
    loom::model(|| {
        let waiters = Arc::new(Waiters::<u32>::default());
        let reply = waiters.register(1, 1);
        let answer = |value| {
            let waiters = waiters.clone();
            thread::spawn(move || waiters.complete(1, 1, value))
        };
        let first = answer(1);
        let second = answer(2);
        let got = loom::future::block_on(reply).expect("answered");
        let delivered = [first.join().unwrap(), second.join().unwrap()];
        assert_eq!(
            delivered.iter().filter(|d| **d).count(),
            1,
            "exactly one reply"
        );
        assert!(got == 1 || got == 2);
    });
}

/// A caller giving up races the answer: the caller sees the answer or `None`, and the
/// answer is reported delivered exactly when the caller got it.
#[test]
fn cancel_racing_the_answer_is_consistent() {
    loom::model(|| {
        let waiters = Arc::new(Waiters::<u32>::default());
        let reply = waiters.register(1, 1);
        let completer = {
            let waiters = waiters.clone();
            thread::spawn(move || waiters.complete(1, 1, 7))
        };
        let canceller = {
            let waiters = waiters.clone();
            thread::spawn(move || waiters.cancel(1, 1))
        };
        let got = loom::future::block_on(reply);
        let delivered = completer.join().unwrap();
        canceller.join().unwrap();
        assert_eq!(got.is_some(), delivered);
        assert!(waiters.is_empty());
    });
}

/// A retry registers the next seq while the old answer arrives: the old answer never
/// completes the new request.
#[test]
fn stale_answer_never_completes_the_next_request() {
    loom::model(|| {
        let waiters = Arc::new(Waiters::<u32>::default());
        let old = waiters.register(1, 1);
        let completer = {
            let waiters = waiters.clone();
            thread::spawn(move || waiters.complete(1, 1, 100))
        };
        let new = waiters.register(1, 2);
        let _ = loom::future::block_on(old);
        assert!(waiters.complete(1, 2, 200));
        assert_eq!(loom::future::block_on(new), Some(200));
        completer.join().unwrap();
    });
}
