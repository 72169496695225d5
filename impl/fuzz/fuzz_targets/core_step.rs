//! `Replica::step` of a three-node cluster under an arbitrary schedule.
//! The check and its properties: `ballot_fuzz::cluster::run`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ballot_fuzz::cluster::run(data));
