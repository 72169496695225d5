//! RESP requests and replies: parse, incrementally, and re-encode.
//! The check and its properties: `ballot_fuzz::decoders::resp`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ballot_fuzz::decoders::resp(data));
