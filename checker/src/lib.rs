//! The reusable part of `ballot-check`: a sound liveness checker for any stateright
//! model (see [`liveness`]). The binary adds the ballot model's fairness, its
//! properties, and the command line.

pub mod liveness;
pub mod state_graph;
pub mod swarm;
