//! The properties the checker verifies, each a named function over a model state. The
//! safety ones call the named invariants in [`crate::invariants`] and the abstract spec.

use super::checked::{BallotModel, BallotState};
use super::config::ModelConfig;
use super::operator::ModelChange;
use crate::invariants;
use crate::message::{Proposal, Request};
use crate::register::{Register, Value};
use crate::replica::Replica;
use crate::spec::SpecViolation;
use stateright::Property;

/// At most one value is chosen per slot, ever.
pub const ONE_VALUE_PER_SLOT: &str = "at most one value chosen per slot";
/// Committed logs agree on every common slot.
pub const LOGS_AGREE: &str = "committed logs agree";
/// No two nodes lead one ballot.
pub const ONE_LEADER_PER_BALLOT: &str = "at most one leader per ballot";
/// Each node's local invariants hold.
pub const REPLICA_INVARIANTS: &str = "replica invariants";
/// Applied state is the replay of the committed (chosen) prefix.
pub const APPLIED_MATCHES_LOG: &str = "applied state matches chosen prefix";
/// Client history is linearizable.
pub const LINEARIZABLE: &str = "linearizable";
/// Acknowledged writes stay durable on a majority.
pub const ACKED_WRITES_DURABLE: &str = "acked writes durable";
/// Every state maps to a valid state of the abstract spec.
pub const REFINES_SPEC: &str = "refines consensus spec";
/// Reachability: some client write commits.
pub const WRITE_COMMITS: &str = "write commits";
/// Reachability: a leader crashes and a later write commits.
pub const FAILOVER_COMMITS: &str = "failover commits a later write";
/// Reachability: a read is served by read-index.
pub const READ_SERVED: &str = "read served by read-index";
/// Reachability: a retried request is answered without re-applying.
pub const DUPLICATE_DEDUPLICATED: &str = "duplicate request deduplicated";

/// Reachability (with compaction on): a lagging node installs a peer's snapshot.
pub const SNAPSHOT_INSTALLED: &str = "snapshot installed from a peer";

/// Reachability (with a bounded leader queue): a busy leader refuses a write, and its
/// client is answered later all the same (liveness).
pub const BUSY_REFUSED: &str = "busy leader refuses a request";

/// Reachability (with a bound on client sessions): a replica expires a client's
/// session.
pub const SESSION_EXPIRED: &str = "a client session expires";

/// Reachability (with a bound on client sessions): a request of an expired session is
/// refused (not applied a second time).
pub const EXPIRED_REFUSED: &str = "an expired session's request is refused";

/// Reachability (with transfers allowed): the operator asks the leader to hand over,
/// and another node leads with no election timeout since.
pub const TRANSFER_TAKES_OVER: &str = "a transfer hands leadership over";

/// Reachability (with learners): a learner applies a write, which it learned from a
/// leader's accepts, heartbeats or snapshot without ever voting.
pub const LEARNER_APPLIES: &str = "a learner applies a write";

/// Reachability (with membership change): some epoch has a voter that was no voter
/// at bootstrap.
pub const LEARNER_PROMOTED: &str = "a learner is promoted";

/// Reachability (with membership change): a write is executed in an epoch that a
/// reconfiguration removing a bootstrap voter (the leader, in the preset) began.
pub const WRITE_AFTER_REMOVAL: &str = "a write commits after a voter is removed";

/// Every property for `config`, safety first.
pub fn all(config: &ModelConfig) -> Vec<Property<BallotModel>> {
    let mut properties = vec![
        Property::always(ONE_VALUE_PER_SLOT, one_value_per_slot),
        Property::always(LOGS_AGREE, logs_agree),
        Property::always(ONE_LEADER_PER_BALLOT, one_leader_per_ballot),
        Property::always(REPLICA_INVARIANTS, replica_invariants),
        Property::always(APPLIED_MATCHES_LOG, applied_matches_log),
        Property::always(LINEARIZABLE, linearizable),
        Property::always(ACKED_WRITES_DURABLE, acked_writes_durable),
        Property::always(REFINES_SPEC, refines_spec),
        Property::sometimes(WRITE_COMMITS, write_commits),
        Property::sometimes(FAILOVER_COMMITS, failover_commits),
        Property::sometimes(READ_SERVED, read_served),
        Property::sometimes(DUPLICATE_DEDUPLICATED, duplicate_deduplicated),
    ];
    if config.compaction {
        properties.push(Property::sometimes(SNAPSHOT_INSTALLED, snapshot_installed));
    }
    if config.queue_requests_max.is_some() {
        properties.push(Property::sometimes(BUSY_REFUSED, busy_refused));
    }
    if config.max_transfers > 0 {
        properties.push(Property::sometimes(
            TRANSFER_TAKES_OVER,
            transfer_takes_over,
        ));
    }
    // Each membership target where the operator's script can reach it.
    let script_has = |wanted: fn(&ModelChange) -> bool| config.reconfigurations.iter().any(wanted);
    if config.learners > 0 || script_has(|c| matches!(c, ModelChange::AddLearner(_))) {
        properties.push(Property::sometimes(LEARNER_APPLIES, learner_applies));
    }
    if script_has(|c| {
        matches!(
            c,
            ModelChange::Promote(_) | ModelChange::ReplaceLeader { .. }
        )
    }) {
        properties.push(Property::sometimes(LEARNER_PROMOTED, learner_promoted));
    }
    if script_has(|c| {
        matches!(
            c,
            ModelChange::RemoveLeader | ModelChange::ReplaceLeader { .. }
        )
    }) {
        properties.push(Property::sometimes(
            WRITE_AFTER_REMOVAL,
            write_after_removal,
        ));
    }
    if config.sessions_max.is_some() {
        properties.push(Property::sometimes(SESSION_EXPIRED, session_expired));
        properties.push(Property::sometimes(EXPIRED_REFUSED, expired_refused));
    }
    properties
}

fn replicas(state: &BallotState) -> Vec<&Replica<Register>> {
    state.servers().map(|(_, server)| &server.replica).collect()
}

fn live_replicas(state: &BallotState) -> Vec<&Replica<Register>> {
    state
        .live_servers()
        .map(|(_, server)| &server.replica)
        .collect()
}

fn one_value_per_slot(_: &BallotModel, state: &BallotState) -> bool {
    !matches!(
        state.ledger.spec_violation,
        Some(SpecViolation::TwoValuesChosen { .. })
    ) && invariants::at_most_one_value_chosen(&replicas(state)).is_ok()
}

fn logs_agree(_: &BallotModel, state: &BallotState) -> bool {
    invariants::committed_logs_agree(&replicas(state)).is_ok()
}

fn one_leader_per_ballot(_: &BallotModel, state: &BallotState) -> bool {
    invariants::one_leader_per_ballot(&live_replicas(state)).is_ok()
}

fn replica_invariants(_: &BallotModel, state: &BallotState) -> bool {
    live_replicas(state)
        .into_iter()
        .all(|replica| invariants::check_replica(replica).is_ok())
}

/// The chosen prefix as the spec records it, as log values. The spec, not the
/// replica's own log: a replica that compacted (or installed a snapshot) no longer
/// holds the slots its state came from, and the check is against what was chosen.
fn chosen_log(state: &BallotState) -> Vec<Proposal<Value>> {
    state
        .ledger
        .spec
        .chosen_prefix()
        .map(|(_, writes)| {
            Proposal::Batch(
                writes
                    .iter()
                    .map(|(client, seq, command)| Request {
                        client: *client,
                        seq: *seq,
                        command: *command,
                    })
                    .collect(),
            )
        })
        .collect()
}

fn applied_matches_log(_: &BallotModel, state: &BallotState) -> bool {
    let log = chosen_log(state);
    live_replicas(state).into_iter().all(|replica| {
        invariants::applied_state_matches_log(replica, &Register::default(), &log).is_ok()
    })
}

fn linearizable(_: &BallotModel, state: &BallotState) -> bool {
    state.system.history.is_linearizable()
}

/// Every acknowledged write sits in a chosen slot that a majority of voters hold in
/// *stable storage* (what survives any crash), with that same value: the voters of the
/// epoch that governs the slot, whose majorities are the ones a later phase 1 of that
/// epoch asks (and every node of a later epoch executed the slot before it entered).
fn acked_writes_durable(_: &BallotModel, state: &BallotState) -> bool {
    state
        .system
        .history
        .write_replies
        .keys()
        .all(|(client, seq)| {
            let contains =
                |writes: &[(u64, u64, u8)]| writes.iter().any(|w| (w.0, w.1) == (*client, *seq));
            let Some((slot, _)) = state
                .ledger
                .spec
                .chosen_prefix()
                .find(|(_, writes)| contains(writes))
            else {
                return false;
            };
            let Some(members) = state
                .ledger
                .epochs
                .values()
                .rev()
                .find(|members| members.start <= slot)
            else {
                return false;
            };
            let holders = state
                .system
                .actor_storages
                .iter()
                .enumerate()
                .filter(|(node, _)| members.is_voter(*node))
                .filter_map(|(_, stored)| stored.as_ref())
                .filter(|stored| {
                    stored.holds(slot, |proposal| {
                        proposal
                            .requests()
                            .iter()
                            .any(|r| (r.client, r.seq) == (*client, *seq))
                    })
                })
                .count();
            holders >= members.quorum()
        })
}

fn refines_spec(_: &BallotModel, state: &BallotState) -> bool {
    state.ledger.spec_violation.is_none()
}

fn write_commits(_: &BallotModel, state: &BallotState) -> bool {
    state
        .ledger
        .spec
        .chosen_prefix()
        .any(|(_, writes)| !writes.is_empty())
}

fn failover_commits(_: &BallotModel, state: &BallotState) -> bool {
    let Some(crash_commit) = state.ledger.leader_crash_commit else {
        return false;
    };
    // Committed by some server past the crash point, with a write in it; the values come
    // from the spec's chosen prefix, since compaction empties the servers' logs.
    let committed = state
        .servers()
        .map(|(_, server)| server.replica.commit_index())
        .max()
        .unwrap_or(0);
    state
        .ledger
        .spec
        .chosen_prefix()
        .any(|(slot, writes)| slot > crash_commit && slot <= committed && !writes.is_empty())
}

fn learner_applies(_: &BallotModel, state: &BallotState) -> bool {
    state.servers().any(|(_, server)| {
        let learner = &server.replica;
        learner.is_member()
            && !learner.is_voter()
            && learner.client_table().machine().value.is_some()
    })
}

fn learner_promoted(_: &BallotModel, state: &BallotState) -> bool {
    let epochs = &state.ledger.epochs;
    let Some(bootstrap) = epochs.get(&0) else {
        return false;
    };
    epochs
        .values()
        .any(|members| !members.voters.is_subset(&bootstrap.voters))
}

fn write_after_removal(_: &BallotModel, state: &BallotState) -> bool {
    let epochs = &state.ledger.epochs;
    let Some(bootstrap) = epochs.get(&0) else {
        return false;
    };
    let Some(first_removal) = epochs
        .values()
        .find(|members| !members.retired.is_disjoint(&bootstrap.voters))
    else {
        return false;
    };
    state
        .ledger
        .spec
        .chosen_prefix()
        .any(|(slot, writes)| slot >= first_removal.start && !writes.is_empty())
}

fn read_served(_: &BallotModel, state: &BallotState) -> bool {
    !state.system.history.read_replies.is_empty()
}

fn snapshot_installed(_: &BallotModel, state: &BallotState) -> bool {
    state.ledger.installed_snapshot
}

fn busy_refused(_: &BallotModel, state: &BallotState) -> bool {
    state.ledger.refused_busy
}

fn transfer_takes_over(_: &BallotModel, state: &BallotState) -> bool {
    state.ledger.transfer_took_over
}

fn session_expired(_: &BallotModel, state: &BallotState) -> bool {
    state.ledger.session_expired
}

fn expired_refused(_: &BallotModel, state: &BallotState) -> bool {
    state.ledger.refused_expired
}

fn duplicate_deduplicated(_: &BallotModel, state: &BallotState) -> bool {
    state.ledger.deduplicated
}

/// Why a safety property fails in `state`, in words, from the invariant functions: for
/// counterexample reports. `None` if it holds there or is not a safety property.
pub fn explain(name: &str, model: &BallotModel, state: &BallotState) -> Option<String> {
    let all = replicas(state);
    let live = live_replicas(state);
    let first_err = |result: Result<(), invariants::Violation>| result.err().map(|v| v.to_string());
    match name {
        ONE_VALUE_PER_SLOT => first_err(invariants::at_most_one_value_chosen(&all)).or_else(|| {
            state
                .ledger
                .spec_violation
                .as_ref()
                .map(|v| format!("spec: {v}"))
        }),
        LOGS_AGREE => first_err(invariants::committed_logs_agree(&all)),
        ONE_LEADER_PER_BALLOT => first_err(invariants::one_leader_per_ballot(&live)),
        REPLICA_INVARIANTS => live
            .iter()
            .find_map(|replica| first_err(invariants::check_replica(replica))),
        APPLIED_MATCHES_LOG => {
            let log = chosen_log(state);
            live.iter().find_map(|replica| {
                first_err(invariants::applied_state_matches_log(
                    replica,
                    &Register::default(),
                    &log,
                ))
            })
        }
        LINEARIZABLE => (!linearizable(model, state)).then(|| {
            format!(
                "no linearization of the client history exists: {:?}",
                state.system.history.linearizability
            )
        }),
        ACKED_WRITES_DURABLE => (!acked_writes_durable(model, state)).then(|| {
            format!(
                "an acknowledged write is not held by a majority in stable storage; acked: {:?}",
                state.system.history.write_replies
            )
        }),
        REFINES_SPEC => state
            .ledger
            .spec_violation
            .as_ref()
            .map(|v| format!("spec: {v}")),
        _ => None,
    }
}
