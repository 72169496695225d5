//! Write-ahead log files, with and without a valid header or checksums: recover.
//! The check and its properties: `ballot_fuzz::decoders::wal`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ballot_fuzz::decoders::wal(data));
