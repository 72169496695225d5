//! Whole-system testing for ballot: cross-crate tests (in `tests/`) and the nemesis —
//! real clusters of `ballot` processes under injected faults ([`nemesis`], run with
//! `cargo run -p ballot-tests --release -- nemesis`), whose clients' histories are
//! checked for linearizability ([`linearizability`] against the [`kv_spec`] of one
//! key) and whose nodes' traces are checked against the model, while [`abuser`]s send
//! them bad requests. Each run also draws its clients' latencies over time, with the
//! faults and leader changes, as an SVG ([`latency_plot`]). The simulator ([`sim`], run
//! with `cargo run -p ballot-tests --release -- sim`) runs whole clusters of the real
//! node in one thread on a paused clock, over a simulated network and disk, so that one
//! seed replays one run.
pub mod abuser;
pub mod fault_proxy;
pub mod kv_spec;
pub mod latency_plot;
pub mod linearizability;
pub mod nemesis;
pub mod node_processes;
pub mod ports;
pub mod sim;
pub mod workload;
