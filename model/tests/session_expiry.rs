//! The client table's session expiry, against its promise: whatever requests arrive, in
//! whatever order and however often, no `(client, seq)` is applied twice, the table
//! never holds more than `sessions_max` sessions, and a client that keeps numbering
//! above the floor is always served.

use ballot_model::{ApplyOutcome, ClientTable, Register, Request};
use proptest::prelude::*;
use std::collections::BTreeSet;

fn requests() -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec((0u64..5, 1u64..8), 0..60)
}

proptest! {
    #[test]
    fn no_request_is_applied_twice_and_the_table_stays_bounded(
        sessions_max in 1usize..4,
        arrivals in requests(),
    ) {
        let mut table = ClientTable::new(Register::default());
        let mut applied = BTreeSet::new();
        for (client, seq) in arrivals {
            let floor_before = table.floor();
            let request = Request { client, seq, command: (client * 10 + seq) as u8 };
            match table.apply(&request, sessions_max) {
                ApplyOutcome::Applied(_) => {
                    prop_assert!(applied.insert((client, seq)), "({client}, {seq}) applied twice");
                }
                ApplyOutcome::Duplicate(_) => {
                    prop_assert!(applied.contains(&(client, seq)), "a duplicate of nothing applied");
                }
                ApplyOutcome::Stale => {}
                ApplyOutcome::Expired { floor } => {
                    prop_assert_eq!(floor, floor_before);
                    prop_assert!(seq <= floor, "refused above the floor");
                }
            }
            prop_assert!(table.session_count() <= sessions_max);
            prop_assert!(table.floor() >= floor_before, "the floor only rises");
        }
    }

    #[test]
    fn a_client_numbering_above_the_floor_is_served(
        sessions_max in 1usize..4,
        others in requests(),
    ) {
        let mut table = ClientTable::new(Register::default());
        let mut mine = 0;
        for (client, seq) in others {
            table.apply(&Request { client, seq, command: 0 }, sessions_max);
            // Client 99 opens a fresh session each time, numbered above the floor.
            mine = mine.max(table.floor()) + 1;
            let outcome = table.apply(&Request { client: 99, seq: mine, command: 1 }, sessions_max);
            prop_assert!(matches!(outcome, ApplyOutcome::Applied(_)));
        }
    }
}
