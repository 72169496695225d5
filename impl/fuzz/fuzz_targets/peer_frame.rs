//! Peer frames of the key-value server: decode, re-encode, stream reading.
//! The check and its properties: `ballot_fuzz::decoders::peer_frame`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ballot_fuzz::decoders::peer_frame(data));
