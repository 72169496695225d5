//! The table of callers waiting for their request's answer, and the one-shot reply slot
//! each of them waits on.
//!
//! A request is named by `(client, seq)`. The node's event loop completes a waiter when
//! the core emits a `Reply` (or a forwarded reply arrives from the leader); the caller
//! may meanwhile give up (timeout, dropped future) and retry under the same name. The
//! table guarantees, and the loom tests in `tests/loom_waiters.rs` check:
//!
//! - **no double reply**: a waiter is completed at most once; a second answer for the
//!   same request (a retry answered twice, a duplicate forwarded reply) is dropped;
//! - **no lost wake-up**: an answer that arrives between the caller's last check and
//!   its parking still wakes it;
//! - **no stale answer**: an answer for `(client, seq)` never completes a waiter for
//!   another `seq` of the same client.

use crate::sync::{lock, Arc, Mutex};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// What a reply slot holds.
#[derive(Debug)]
enum SlotState<R> {
    /// Nobody answered yet; the waker of the task waiting, if it has polled.
    Empty(Option<Waker>),
    /// Answered, not yet taken.
    Full(R),
    /// Taken by the receiver, or the sender gave up (the table forgot the waiter).
    Closed,
}

/// The sending half of a one-shot reply.
#[derive(Debug)]
struct ReplySender<R> {
    slot: Arc<Mutex<SlotState<R>>>,
}

/// The receiving half: a future that resolves to the answer, or to `None` if the
/// request was abandoned by the table (the node shut down).
#[derive(Debug)]
pub struct Reply<R> {
    slot: Arc<Mutex<SlotState<R>>>,
}

fn reply_pair<R>() -> (ReplySender<R>, Reply<R>) {
    let slot = Arc::new(Mutex::new(SlotState::Empty(None)));
    (ReplySender { slot: slot.clone() }, Reply { slot })
}

impl<R> ReplySender<R> {
    /// Delivers `value`; returns it back if the slot was already answered or closed.
    fn send(self, value: R) -> Result<(), R> {
        let waker = {
            let mut state = lock(&self.slot);
            match std::mem::replace(&mut *state, SlotState::Closed) {
                SlotState::Empty(waker) => {
                    *state = SlotState::Full(value);
                    waker
                }
                other => {
                    *state = other;
                    return Err(value);
                }
            }
        };
        // Wake outside the lock: the woken task takes the same lock first thing.
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Gives up: a waiting receiver resolves to `None`.
    fn close(self) {
        let waker = {
            let mut state = lock(&self.slot);
            match std::mem::replace(&mut *state, SlotState::Closed) {
                SlotState::Empty(waker) => waker,
                full @ SlotState::Full(_) => {
                    *state = full;
                    None
                }
                SlotState::Closed => None,
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<R> Future for Reply<R> {
    type Output = Option<R>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<R>> {
        let mut state = lock(&self.slot);
        match std::mem::replace(&mut *state, SlotState::Closed) {
            SlotState::Full(value) => Poll::Ready(Some(value)),
            SlotState::Closed => Poll::Ready(None),
            SlotState::Empty(_) => {
                // Register under the same lock `send` takes: an answer cannot slip in
                // between this check and the registration (the lost wake-up).
                *state = SlotState::Empty(Some(cx.waker().clone()));
                Poll::Pending
            }
        }
    }
}

/// Callers waiting for answers, by client id; at most one request per client waits
/// (the core's contract: a client has at most one request outstanding).
///
/// ```
/// use ballot_node::waiters::Waiters;
/// let waiters = Waiters::<&str>::default();
/// let reply = waiters.register(7, 1);
/// assert!(waiters.complete(7, 1, "done"));
/// assert!(!waiters.complete(7, 1, "again"), "answered once");
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// assert_eq!(rt.block_on(reply), Some("done"));
/// ```
#[derive(Debug)]
pub struct Waiters<R> {
    table: Mutex<HashMap<u64, (u64, ReplySender<R>)>>,
}

impl<R> Default for Waiters<R> {
    fn default() -> Self {
        Waiters {
            table: Mutex::new(HashMap::new()),
        }
    }
}

impl<R> Waiters<R> {
    /// Registers a waiter for request `(client, seq)` and returns the future of its
    /// answer. A waiter for an earlier request of the same client is closed (it was
    /// abandoned: the client moved on).
    pub fn register(&self, client: u64, seq: u64) -> Reply<R> {
        let (sender, reply) = reply_pair();
        let previous = lock(&self.table).insert(client, (seq, sender));
        if let Some((_, previous)) = previous {
            previous.close();
        }
        reply
    }

    /// Completes the waiter for `(client, seq)` with `value`. Returns false (and drops
    /// `value`) if no such waiter exists: already answered, abandoned, or another seq.
    pub fn complete(&self, client: u64, seq: u64, value: R) -> bool {
        match self.take(client, seq) {
            Some(sender) => sender.send(value).is_ok(),
            None => false,
        }
    }

    /// Forgets the waiter for `(client, seq)` if it is still there (its caller gave
    /// up); the caller's future resolves to `None`.
    pub fn cancel(&self, client: u64, seq: u64) {
        if let Some(sender) = self.take(client, seq) {
            sender.close();
        }
    }

    /// Removes and returns the waiter for exactly `(client, seq)`.
    fn take(&self, client: u64, seq: u64) -> Option<ReplySender<R>> {
        let mut table = lock(&self.table);
        match table.get(&client) {
            Some((waiting, _)) if *waiting == seq => table.remove(&client).map(|(_, s)| s),
            _ => None,
        }
    }

    /// Closes every waiter (shutdown): all pending futures resolve to `None`.
    pub fn close_all(&self) {
        let mut drained: Vec<_> = lock(&self.table).drain().collect();
        // In client order, not the table's: the waiters wake in this order, and a
        // simulation replays a run only if wake-ups come in the same order.
        drained.sort_unstable_by_key(|(client, _)| *client);
        for (_, (_, sender)) in drained {
            sender.close();
        }
    }

    /// Number of callers waiting.
    pub fn len(&self) -> usize {
        lock(&self.table).len()
    }

    /// True if nobody waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
