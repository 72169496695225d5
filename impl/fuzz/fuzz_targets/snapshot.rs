//! Snapshot files, with and without a valid header: load the newest.
//! The check and its properties: `ballot_fuzz::decoders::snapshot`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ballot_fuzz::decoders::snapshot(data));
