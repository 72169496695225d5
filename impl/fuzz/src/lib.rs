//! # ballot-fuzz: what the fuzz targets check, as plain functions
//!
//! Each fuzz target in `fuzz_targets/` is one line: it hands libFuzzer's bytes to a
//! function here. Keeping the checks in a library means the seed corpus can be replayed
//! by `cargo test` on a stable toolchain without cargo-fuzz (`tests/seeds.rs`), and that
//! the seeds themselves are produced by the real encoders ([`seeds`]).
//!
//! - [`decoders`]: peer frames, RESP requests and replies, the write-ahead log and
//!   snapshot files. Any bytes give a value or a clear error, never a panic; what
//!   decodes re-encodes to something that decodes the same; parsing is incremental.
//! - [`cluster`]: three `Replica`s of the register state machine driven by an arbitrary
//!   schedule (deliver, drop, duplicate, timers, client requests, compaction, restarts)
//!   plus forged peer messages, with the core's invariants checked after every step.
//! - [`bytes`]: how fuzzer bytes become fields, and back (for hand-made seeds).
//!
//! See `README.md` next to this crate for how to run the targets.

#![warn(missing_docs)]

pub mod bytes;
pub mod cluster;
pub mod decoders;
pub mod seeds;

/// Every fuzz target, by name (the `[[bin]]` names and `corpus/` directories).
pub const TARGETS: [&str; 5] = ["peer_frame", "resp", "wal", "snapshot", "core_step"];

/// Runs the check of `target` on `data`, as its fuzz target does; panics on a finding.
///
/// # Panics
///
/// If `target` is not one of [`TARGETS`], or if the check finds a bug.
pub fn check(target: &str, data: &[u8]) {
    match target {
        "peer_frame" => decoders::peer_frame(data),
        "resp" => decoders::resp(data),
        "wal" => decoders::wal(data),
        "snapshot" => decoders::snapshot(data),
        "core_step" => cluster::run(data),
        other => panic!("no fuzz target named {other:?}"),
    }
}
