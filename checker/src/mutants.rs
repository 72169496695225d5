//! `ballot-check mutants`: every deliberately broken variant, each checked on a
//! configuration that can expose it, with the property that caught it.

use crate::args::{RunArgs, Strategy};
use crate::report::group;
use crate::run::{run, Outcome, Status};
use ballot_model::model::operator::ModelChange;
use ballot_model::model::{ClientScript, ModelConfig, Opening, Timing};
use ballot_model::Mutant;
use serde_json::json;

/// The configuration a mutant is checked on: the smallest that can expose it.
///
/// Bugs that need two leaders at once (a stale leader, a candidate racing an old
/// ballot) need spurious timeouts: under partial synchrony the model never elects a
/// second leader while the first is alive and connected.
pub fn witness_config(mutant: Mutant) -> ModelConfig {
    // Two concurrent clients with one operation each: the bugs below need two writes
    // (or a write and a read) in flight at once.
    // Safety bugs show within one retry per operation, which keeps these small.
    let base = ModelConfig {
        mutant: Some(mutant),
        clients: 2,
        ops_per_client: 1,
        client_retries: Some(1),
        ..ModelConfig::default()
    };
    // Two leaders at once, two different values for one slot, no client retries (they
    // add nothing these bugs need).
    let duelling_writers = ModelConfig {
        timing: Timing::SpuriousElections,
        script: ClientScript::WritesOnly,
        client_retries: Some(0),
        ..base.clone()
    };
    // One session at most and impatient clients, after a leader is elected (the
    // expiry needs a leader, not the interleavings of its election).
    let expiring_sessions = ModelConfig {
        script: ClientScript::WritesOnly,
        timing: Timing::ImpatientClients,
        sessions_max: Some(1),
        max_crashes: 0,
        max_elections: 1,
        opening: Opening::Elected {
            leader: 0,
            miss: None,
        },
        ..base.clone()
    };
    match mutant {
        Mutant::AcceptBelowPromise => ModelConfig {
            max_crashes: 0,
            ..duelling_writers
        },
        // The acceptor must crash between promising and the old leader's late accept.
        Mutant::PromiseNotPersisted => duelling_writers,
        // A deposed leader must answer a read invoked after a newer write completed.
        Mutant::StaleLeaderRead => ModelConfig {
            timing: Timing::SpuriousElections,
            max_crashes: 0,
            ops_per_client: 2,
            client_retries: Some(0),
            ..base
        },
        // Two different writes make a wrong order or a double apply visible.
        Mutant::IgnorePhase1Values | Mutant::ApplyOutOfOrder | Mutant::NoDedup => ModelConfig {
            script: ClientScript::WritesOnly,
            ..base
        },
        Mutant::MinorityCommit | Mutant::RecoveredForgetsPromise => base,
        // The operator removes the leader while one write runs: three voters become
        // two. Proposing past the change puts the write in a slot the new epoch fills
        // afresh; counting the removed node lets the new leader commit on its own
        // vote and the removed node's (elections: the first, and the new epoch's).
        Mutant::ProposesPastStop | Mutant::RemovedCounted => ModelConfig {
            mutant: Some(mutant),
            script: ClientScript::WritesOnly,
            ops_per_client: 1,
            max_crashes: 0,
            reconfigurations: vec![ModelChange::RemoveLeader],
            max_reconfigurations: 1,
            ..ModelConfig::default()
        },
        // A learner the operator puts in the leader's place counts itself a voter (and
        // is counted) as soon as it holds the change, before it is executed: after the
        // old leader crashes, a candidate wins with it and one old voter, no majority
        // of the old voters, and misses the write they chose.
        Mutant::ConfigBeforeApplied => ModelConfig {
            mutant: Some(mutant),
            servers: 4,
            learners: 1,
            script: ClientScript::WritesOnly,
            ops_per_client: 1,
            client_retries: Some(0),
            reconfigurations: vec![ModelChange::ReplaceLeader { by: 3 }],
            max_reconfigurations: 1,
            ..ModelConfig::default()
        },
        // A leader and a learner count as a majority: the write is acknowledged on
        // votes no majority of voters holds, and after the leader crashes the next
        // leader's phase 1 (voters only) fills the slot with a no-op. One write, one
        // crash; the learner is the fourth server.
        Mutant::LearnerCounted => ModelConfig {
            mutant: Some(mutant),
            servers: 4,
            learners: 1,
            script: ClientScript::WritesOnly,
            ops_per_client: 1,
            client_retries: Some(1),
            ..ModelConfig::default()
        },
        // One session at most: the second client's write expires the first client's
        // session, and the first client's retry of its applied write (sent early: an
        // impatient client) must be refused.
        Mutant::ExpiryForgetsFloor => expiring_sessions,
        // A client that renumbers after expiry although an attempt it gave up on may
        // have been applied: the first client's write is applied, its answer is late,
        // the client retries elsewhere, the second client's write expires the first
        // session, and the renumbered write is applied again after the second.
        Mutant::ClientRenumbersAbandoned => expiring_sessions,
        // Liveness bugs: real clients (unlimited retries). A slot the new leader never
        // re-proposes needs a crash after one acceptor voted: the default model.
        Mutant::IgnoreRecoveredSlots => ModelConfig {
            mutant: Some(mutant),
            ..ModelConfig::default()
        },
        // A chosen slot compacted on one acceptor, its leader crashed, and a candidate
        // that never received the slot's accept (the network lost it) winning with
        // that acceptor's promise; the next write then lands in the chosen slot.
        Mutant::PromiseOmitsSnapshot => ModelConfig {
            mutant: Some(mutant),
            compaction: true,
            lossy: true,
            script: ClientScript::WritesOnly,
            ..ModelConfig::default()
        },
        // A write acknowledged on the leader's and one follower's votes, then that
        // follower restarts with its disk lost before the third holds the value: no
        // majority holds the acknowledged write any more (and a second leader could
        // fill its slot with a no-op). One write, one crash, one election.
        Mutant::WipedVoter => ModelConfig {
            mutant: Some(mutant),
            script: ClientScript::WritesOnly,
            ops_per_client: 1,
            client_retries: Some(0),
            max_elections: 1,
            ..ModelConfig::default()
        },
        // An answer that leaves before the persists ahead of it are durable, then a
        // crash that loses them: one write, one crash. Lazy disks are what let a crash
        // lose a persist at all.
        Mutant::ReleaseBeforeSync => ModelConfig {
            mutant: Some(mutant),
            lazy_disks: true,
            script: ClientScript::WritesOnly,
            ops_per_client: 1,
            ..ModelConfig::default()
        },
        // An accept that leaves before the leader's own vote is durable: a follower
        // votes and acknowledges while the leader's fsync still runs (the loop steps
        // inputs meanwhile: a sync window of two actions), and the leader commits on
        // a vote no disk holds. One write; no crash needed to see it.
        Mutant::AcceptSentAhead => ModelConfig {
            mutant: Some(mutant),
            lazy_disks: true,
            sync_window: 2,
            script: ClientScript::WritesOnly,
            ops_per_client: 1,
            ..ModelConfig::default()
        },
        // A follower removed while it misses the commit of its removal (the new
        // epoch's leader sends a non-member nothing more) or is down: it campaigns
        // in the old epoch, and only a member's answer stops it. One write around the
        // change; a crash is not needed.
        Mutant::RemovedNotTold => ModelConfig {
            mutant: Some(mutant),
            script: ClientScript::WritesOnly,
            ops_per_client: 1,
            max_crashes: 0,
            reconfigurations: vec![ModelChange::Remove(2)],
            max_reconfigurations: 1,
            ..ModelConfig::default()
        },
        // A wrong choice among recovered votes needs three ballots (a vote at the first,
        // a different value chosen at the second, a candidate at the third that hears
        // both), a follower's commit on an older ballot's vote needs a vote for a
        // value that was never chosen, and a late promise counted needs it held while
        // another candidate wins and commits: all need two different writes and
        // duelling candidates, a world beyond exhaustion that the swarm search covers
        // ([`witness_search`]).
        Mutant::RecoversLowestBallot
        | Mutant::CommitsOlderBallotVote
        | Mutant::CountsLatePromise => ModelConfig {
            mutant: Some(mutant),
            clients: 2,
            ops_per_client: 2,
            script: ClientScript::WriteFirst,
            timing: Timing::SpuriousElections,
            max_elections: 4,
            ..ModelConfig::default()
        },
        // Candidates that give up, or never yield, need a failed or contested election:
        // spurious timeouts make one (as faults, before the run settles), and a crash
        // removes the node whose promise would have settled it. Elections alone show
        // it: no clients.
        Mutant::ElectionTimerNotRearmed | Mutant::CandidateIgnoresHigherBallot => ModelConfig {
            mutant: Some(mutant),
            clients: 0,
            timing: Timing::SpuriousElections,
            ..ModelConfig::default()
        },
    }
}

/// How a mutant's witness world is searched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WitnessSearch {
    /// Every state (breadth first): the mutant is caught, and the counterexample is a
    /// shortest one.
    Exhaustive,
    /// The world is beyond exhaustion: a swarm search on one thread, bounded by a
    /// number of walks, so that the run is a pure function of its seed and catches the
    /// mutant on every machine.
    Swarm {
        /// Most walks.
        walks: u64,
        /// The run's seed.
        seed: u64,
    },
}

/// How `mutant`'s witness ([`witness_config`]) is searched.
pub fn witness_search(mutant: Mutant) -> WitnessSearch {
    match mutant {
        // Seed 0 catches each within 8,411 walks (about 3 s); the budget leaves room
        // for changes to the model that reorder actions.
        Mutant::RecoversLowestBallot
        | Mutant::CommitsOlderBallotVote
        | Mutant::CountsLatePromise => WitnessSearch::Swarm {
            walks: 40_000,
            seed: 0,
        },
        _ => WitnessSearch::Exhaustive,
    }
}

/// True for the mutants that break progress only, never safety.
pub fn is_liveness_mutant(mutant: Mutant) -> bool {
    matches!(
        mutant,
        Mutant::ElectionTimerNotRearmed
            | Mutant::IgnoreRecoveredSlots
            | Mutant::CandidateIgnoresHigherBallot
            | Mutant::RemovedNotTold
    )
}

/// A swarm witness is bounded by its walks; this deadline only stops a run that a very
/// slow machine would otherwise let go on for many minutes.
const SWARM_WITNESS_BACKSTOP_SECS: u64 = 600;

/// One mutant's result.
pub struct MutantResult {
    /// The mutant.
    pub mutant: Mutant,
    /// Its check.
    pub outcome: Outcome,
    /// The safety properties it violated.
    pub caught_by: Vec<&'static str>,
}

/// Runs every mutant (or the one named).
pub fn run_all(
    only: Option<&str>,
    threads: Option<usize>,
    progress: bool,
) -> Result<Vec<MutantResult>, String> {
    let selected: Vec<Mutant> = match only {
        None => Mutant::ALL.to_vec(),
        Some(name) => {
            let found = Mutant::ALL.iter().copied().find(|m| m.name() == name);
            match found {
                Some(mutant) => vec![mutant],
                None => {
                    let names: Vec<_> = Mutant::ALL.iter().map(|m| m.name()).collect();
                    return Err(format!(
                        "unknown mutant `{name}` (expected one of: {})",
                        names.join(", ")
                    ));
                }
            }
        }
    };
    let run_args = |mutant| match witness_search(mutant) {
        WitnessSearch::Exhaustive => RunArgs {
            strategy: Strategy::Bfs,
            threads,
            depth: None,
            timeout: None,
            seed: 0,
            walks: None,
            symmetry: false,
            // Safety mutants are checked for safety only (what catches them), liveness
            // mutants for both (safety must hold: only liveness may catch them).
            liveness: is_liveness_mutant(mutant),
        },
        WitnessSearch::Swarm { walks, seed } => RunArgs {
            strategy: Strategy::Swarm,
            threads: Some(1),
            depth: None,
            // The walk budget ends the run; the deadline is only a backstop.
            timeout: Some(SWARM_WITNESS_BACKSTOP_SECS),
            seed,
            walks: Some(walks),
            symmetry: false,
            liveness: false,
        },
    };
    Ok(selected
        .into_iter()
        .map(|mutant| {
            if progress {
                eprintln!("mutant {} …", mutant.name());
            }
            let outcome = run(witness_config(mutant), &run_args(mutant), progress);
            let caught_by = outcome
                .properties
                .iter()
                .filter(|p| p.status == Status::Violated)
                .map(|p| p.name)
                .collect();
            MutantResult {
                mutant,
                outcome,
                caught_by,
            }
        })
        .collect())
}

/// Text table of mutant results.
pub fn text(results: &[MutantResult]) -> String {
    let mut out = format!(
        "{:<32} {:<8} {:>10} {:>8}  {}\n",
        "mutant", "caught", "states", "time s", "caught by"
    );
    for result in results {
        out.push_str(&format!(
            "{:<32} {:<8} {:>10} {:>8.2}  {}\n",
            result.mutant.name(),
            if result.caught_by.is_empty() {
                "NO"
            } else {
                "yes"
            },
            group(result.outcome.unique_states),
            result.outcome.duration.as_secs_f64(),
            result.caught_by.join(", ")
        ));
    }
    let caught = results.iter().filter(|r| !r.caught_by.is_empty()).count();
    out.push_str(&format!("\n{caught} of {} mutants caught\n", results.len()));
    out
}

/// JSON of mutant results.
pub fn json(results: &[MutantResult]) -> serde_json::Value {
    json!({
        "mutants": results.iter().map(|r| json!({
            "name": r.mutant.name(),
            "config": r.outcome.config,
            "caught": !r.caught_by.is_empty(),
            "caught_by": r.caught_by,
            "unique_states": r.outcome.unique_states,
            "duration_s": r.outcome.duration.as_secs_f64(),
        })).collect::<Vec<_>>(),
        "all_caught": results.iter().all(|r| !r.caught_by.is_empty()),
    })
}
