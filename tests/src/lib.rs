//! Cross-crate tests for ballot; see `tests/`.
pub mod fault_proxy;
pub mod kv_spec;
pub mod linearizability;
pub mod nemesis;
pub mod node_processes;
pub mod workload;
