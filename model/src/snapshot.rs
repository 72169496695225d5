//! Snapshots: the applied state at one slot, standing in for the log prefix it covers.
//!
//! A node that has applied slot `s` may replace slots `1..=s` of its log by a snapshot
//! of its [`ClientTable`] (state machine plus client sessions) at `s`. Every slot it
//! covers is chosen, so the snapshot holds nothing any acceptor could disagree with:
//! it is what every replica reaches by applying the chosen prefix (SPEC §2.4). A
//! snapshot also travels: a leader sends one to a follower that lags behind what the
//! leader compacted, and an acceptor sends one with its promise to a candidate that
//! lags behind what the acceptor compacted.

use crate::ballot::Slot;
use crate::client_table::ClientTable;
use crate::membership::Membership;
use crate::state_machine::StateMachine;
use serde::{Deserialize, Serialize};

/// The state after applying the chosen slots `1..=slot`.
///
/// ```
/// use ballot_model::{Register, Snapshot};
/// let empty = Snapshot::initial(Register::default());
/// assert_eq!(empty.slot, 0);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(bound(
    serialize = "ClientTable<S>: Serialize",
    deserialize = "ClientTable<S>: Deserialize<'de>"
))]
pub struct Snapshot<S: StateMachine> {
    /// The last slot the snapshot includes.
    pub slot: Slot,
    /// The state machine and client sessions after applying `1..=slot`.
    pub table: ClientTable<S>,
    /// The membership after applying `1..=slot`. Empty in [`Snapshot::initial`]: a
    /// node that starts from no snapshot takes its [`crate::ClusterConfig`]'s bootstrap
    /// membership.
    pub members: Membership,
}

impl<S: StateMachine> Snapshot<S> {
    /// The state before any slot: `machine` as given, no client seen.
    pub fn initial(machine: S) -> Self {
        Snapshot {
            slot: 0,
            table: ClientTable::new(machine),
            members: Membership::default(),
        }
    }
}
