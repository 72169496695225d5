//! Deliberately broken protocol variants, compiled only with the `mutants` feature, that
//! show the checker catches real bugs. Each names the property expected to catch it.

#[cfg(feature = "mutants")]
use serde::{Deserialize, Serialize};

/// A deliberately broken variant of the protocol.
#[cfg(feature = "mutants")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Mutant {
    /// The acceptor accepts a ballot below its promise.
    AcceptBelowPromise,
    /// A new leader ignores the values it learned in phase 1 and proposes fresh ones.
    IgnorePhase1Values,
    /// The leader counts a slot chosen on a minority of acceptors.
    MinorityCommit,
    /// An acceptor answers `Prepare` without persisting its promise first.
    PromiseNotPersisted,
    /// The state machine applies retried requests again.
    NoDedup,
    /// The leader serves reads from its local state without confirming leadership.
    StaleLeaderRead,
    /// A replica applies newly committed slots newest first.
    ApplyOutOfOrder,
    /// A recovering node forgets its durable promise.
    RecoveredForgetsPromise,
    /// A candidate never re-arms its election timer: an election that fails is never
    /// tried again. Safe, but not live.
    ElectionTimerNotRearmed,
    /// A new leader proposes nothing for the slots it learned about in phase 1 (neither
    /// their values nor no-ops), so the log has a hole that never commits.
    IgnoreRecoveredSlots,
    /// A candidate neither promises a higher ballot nor yields to a rejection naming
    /// one: two candidates can wait for each other forever.
    CandidateIgnoresHigherBallot,
    /// An acceptor that compacted slots a candidate asks about promises without its
    /// snapshot: the candidate sees no vote there and may fill a chosen slot with a
    /// no-op.
    PromiseOmitsSnapshot,
    /// Expiring a client session does not raise the sessions' floor: a late retry of
    /// the expired session's last request opens a new session and is applied again.
    ExpiryForgetsFloor,
    /// A client whose session expired numbers its request above the floor and sends it
    /// again even though an attempt it gave up on may have been applied: the write can
    /// be applied twice.
    ClientRenumbersAbandoned,
    /// The driver lets sends and replies leave before the persists ahead of them are
    /// durable (the runtime's ordering contract broken; seen by the model with lazy
    /// disks, where a crash loses what was not synced). The node's planted runtime bug
    /// of the same name breaks the same rule in its real loop.
    ReleaseBeforeSync,
    /// The leader marks its `Accept`s as free to leave ahead of the persist of its own
    /// vote (`Effect::SendAhead`), as only heartbeats may: a crash before the sync
    /// loses a vote that, with a follower's, made a majority, and a second value can
    /// be chosen in the slot.
    AcceptSentAhead,
    /// The leader counts a learner's acknowledgement toward a slot's quorum: a leader
    /// and a learner "choose" a slot that no majority of voters holds, and a new
    /// leader's phase 1 (which asks voters only) never finds it.
    LearnerCounted,
    /// A node that restarts with its disk lost (an empty data directory) rejoins as a
    /// voter with no promise and no votes. The node refuses to start that way (its
    /// data directory names the cluster and the member: `impl/src/identity.rs`); the
    /// model restarts every node from its disk, and this mutant shows why it must.
    WipedVoter,
    /// A node counts votes under a reconfiguration it has accepted but not yet
    /// executed (etcd-io/raft #456's kind): a candidate or leader of the old epoch
    /// counts a majority of the next voters, which need not meet a majority of the
    /// old ones, so a value the old voters chose can be missed and overwritten.
    ConfigBeforeApplied,
    /// A leader keeps sending the log to the members a reconfiguration removed and
    /// counts their acknowledgements: a removed node and one new voter "choose" a slot
    /// that no majority of the new voters holds.
    RemovedCounted,
    /// A leader keeps proposing client batches above its own reconfiguration entry:
    /// those slots are chosen in the old epoch, and a new-epoch leader that does not
    /// know them chosen fills them with other values.
    ProposesPastStop,
    /// A member never tells a node its epoch retired that the node was removed: a
    /// follower removed while it missed the change's commit campaigns in its old epoch
    /// forever, unheard. Safe, but not live.
    RemovedNotTold,
    /// A new leader recovers, for a slot several promises report votes in, the value of
    /// the *lowest* ballot instead of the highest: a value chosen at a middle ballot is
    /// replaced by an older one. It needs three ballots and two different writes.
    RecoversLowestBallot,
    /// A follower commits a slot on a vote of an older ballot than the leader whose
    /// commit index it learns (instead of only on a vote of that leader's ballot, which
    /// holds the chosen value): its log and applied state take a value that was never
    /// chosen. It needs duelling candidates and two different writes.
    CommitsOlderBallotVote,
    /// A candidate counts a late promise of an earlier candidacy of its own toward its
    /// current ballot, and does not treat it as obsolete (`Replica::is_obsolete`, which
    /// the model's network and the node's loop apply before the core): the acceptor may
    /// have voted for another leader's chosen value since it promised, which the
    /// candidate then never hears of and overwrites. Both halves are needed: either
    /// check alone keeps the promise from being counted.
    CountsLatePromise,
}

#[cfg(feature = "mutants")]
impl Mutant {
    /// Every mutant, in a stable order.
    pub const ALL: [Mutant; 25] = [
        Mutant::AcceptBelowPromise,
        Mutant::IgnorePhase1Values,
        Mutant::MinorityCommit,
        Mutant::PromiseNotPersisted,
        Mutant::NoDedup,
        Mutant::StaleLeaderRead,
        Mutant::ApplyOutOfOrder,
        Mutant::RecoveredForgetsPromise,
        Mutant::ElectionTimerNotRearmed,
        Mutant::IgnoreRecoveredSlots,
        Mutant::CandidateIgnoresHigherBallot,
        Mutant::PromiseOmitsSnapshot,
        Mutant::ExpiryForgetsFloor,
        Mutant::ClientRenumbersAbandoned,
        Mutant::ReleaseBeforeSync,
        Mutant::AcceptSentAhead,
        Mutant::LearnerCounted,
        Mutant::WipedVoter,
        Mutant::ConfigBeforeApplied,
        Mutant::RemovedCounted,
        Mutant::ProposesPastStop,
        Mutant::RemovedNotTold,
        Mutant::RecoversLowestBallot,
        Mutant::CommitsOlderBallotVote,
        Mutant::CountsLatePromise,
    ];

    /// A kebab-case name for the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Mutant::AcceptBelowPromise => "accept-below-promise",
            Mutant::IgnorePhase1Values => "ignore-phase1-values",
            Mutant::MinorityCommit => "minority-commit",
            Mutant::PromiseNotPersisted => "promise-not-persisted",
            Mutant::NoDedup => "no-dedup",
            Mutant::StaleLeaderRead => "stale-leader-read",
            Mutant::ApplyOutOfOrder => "apply-out-of-order",
            Mutant::RecoveredForgetsPromise => "recovered-forgets-promise",
            Mutant::ElectionTimerNotRearmed => "election-timer-not-rearmed",
            Mutant::IgnoreRecoveredSlots => "ignore-recovered-slots",
            Mutant::CandidateIgnoresHigherBallot => "candidate-ignores-higher-ballot",
            Mutant::PromiseOmitsSnapshot => "promise-omits-snapshot",
            Mutant::ExpiryForgetsFloor => "expiry-forgets-floor",
            Mutant::ClientRenumbersAbandoned => "client-renumbers-abandoned",
            Mutant::ReleaseBeforeSync => "release-before-sync",
            Mutant::AcceptSentAhead => "accept-sent-ahead",
            Mutant::LearnerCounted => "learner-counted",
            Mutant::WipedVoter => "wiped-voter",
            Mutant::ConfigBeforeApplied => "config-before-applied",
            Mutant::RemovedCounted => "removed-counted",
            Mutant::ProposesPastStop => "proposes-past-stop",
            Mutant::RemovedNotTold => "removed-not-told",
            Mutant::RecoversLowestBallot => "recovers-lowest-ballot",
            Mutant::CommitsOlderBallotVote => "commits-older-ballot-vote",
            Mutant::CountsLatePromise => "counts-late-promise",
        }
    }
}

/// `mutant!(config, Name)` is true when the build has the `mutants` feature and
/// `config` selects that mutant; without the feature it is the constant `false`, so
/// production code paths contain no mutant logic at all.
macro_rules! mutant {
    ($config:expr, $name:ident) => {{
        #[cfg(feature = "mutants")]
        {
            $config.mutant == Some($crate::mutant::Mutant::$name)
        }
        #[cfg(not(feature = "mutants"))]
        {
            false
        }
    }};
}
pub(crate) use mutant;
