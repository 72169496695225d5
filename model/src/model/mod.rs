//! The stateright model: the core driven by stateright's actor runtime, with clients
//! that retry and redirect like real ones, a fault budget, and the properties the
//! checker verifies.
//!
//! Layers, from the bottom:
//! - [`actors`]: thin [`stateright::actor::Actor`] adapters. A server maps stateright's
//!   callbacks to [`crate::Input`]s and the core's [`crate::Effect`]s to stateright
//!   commands (`Persist` → `Out::save`, so a crash loses exactly the volatile state).
//! - [`history`]: what clients observed, fed to stateright's linearizability tester.
//! - [`refinement`]: the mapping from each explored state to the abstract
//!   [`crate::spec::ConsensusSpec`].
//! - [`checked`]: [`BallotModel`], a [`stateright::Model`] wrapping stateright's
//!   `ActorModel` to add what it lacks: a *total* crash budget (stateright bounds only
//!   concurrent crashes), an election budget and the partial-synchrony switch,
//!   coalescing of identical in-flight messages, and the ledger the spec mapping needs.
//! - [`operator`]: the operator's script of membership changes.
//! - [`properties`]: the named safety and reachability properties.
//! - [`symmetry`]: renaming clients with the same script shape, so that states that
//!   differ only in which client is which are explored once.
//! - [`fingerprint`](mod@fingerprint) and [`shared`]: how states are told apart (one
//!   deterministic 64-bit hash), and the copy-on-write parts many states share, each
//!   hashed once.

pub mod actors;
pub mod checked;
pub mod config;
pub mod connectivity;
pub mod fairness;
pub mod fingerprint;
pub mod history;
pub mod liveness;
pub mod operator;
pub mod properties;
pub mod refinement;
pub mod shared;
pub mod symmetry;

pub use actors::{ClientState, ModelActor, ModelActorState, ModelMsg, ModelTimer, ServerState};
pub use checked::{BallotAction, BallotModel, BallotState, Ledger};
pub use config::{ClientScript, ModelConfig, NetworkKind, Timing};
pub use connectivity::{Connectivity, Opening, Scenario};
pub use fairness::{ActionClass, Obligation};
pub use fingerprint::fingerprint;
pub use history::{ModelHistory, Observed};
pub use shared::Shared;
pub use symmetry::{ClientSymmetry, SymmetryRefusal};
