//! Every knob of the model, and every bound that keeps its state space finite.

use super::connectivity::{Connectivity, Opening, Scenario};
use super::operator::ModelChange;
use crate::register::{RegisterOp, Value};
use crate::replica::ClusterConfig;
use std::fmt;
use std::str::FromStr;

/// How the model's network treats messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NetworkKind {
    /// Messages arrive in any order, each at most once. Identical messages in flight on
    /// one channel coalesce into one (the later copy counts as lost), which bounds
    /// retransmissions; the protocol treats a duplicate like the original anyway.
    UnorderedNonDuplicating,
    /// Messages arrive in any order, any number of times (a sent message is never
    /// removed).
    UnorderedDuplicating,
    /// Per-channel FIFO, each message at most once (TCP-like). A channel holds at most
    /// [`ModelConfig::channel_capacity`] messages; beyond that the newest is lost, as
    /// with a bounded send queue.
    Ordered,
}

impl NetworkKind {
    /// Every kind, with its CLI name.
    pub const ALL: [(NetworkKind, &'static str); 3] = [
        (NetworkKind::UnorderedNonDuplicating, "unordered"),
        (NetworkKind::UnorderedDuplicating, "duplicating"),
        (NetworkKind::Ordered, "ordered"),
    ];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        name_of(&NetworkKind::ALL, self)
    }
}

impl fmt::Display for NetworkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for NetworkKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_named(&NetworkKind::ALL, s, "network kind")
    }
}

/// The name `value` has in `all`.
pub(super) fn name_of<T: Copy + PartialEq>(all: &[(T, &'static str)], value: T) -> &'static str {
    all.iter()
        .find(|(candidate, _)| *candidate == value)
        .map_or("?", |(_, name)| name)
}

/// The value named `text` in `all`, or an error listing the names.
pub(super) fn parse_named<T: Copy>(
    all: &[(T, &'static str)],
    text: &str,
    what: &str,
) -> Result<T, String> {
    all.iter()
        .find(|(_, name)| *name == text)
        .map(|(value, _)| *value)
        .ok_or_else(|| {
            let names: Vec<_> = all.iter().map(|(_, name)| *name).collect();
            format!(
                "unknown {what} `{text}` (expected one of: {})",
                names.join(", ")
            )
        })
}

/// When the model lets timers fire.
///
/// Paxos is safe whatever the timing; timing only limits which interleavings are
/// explored. The stricter settings model partial synchrony once the network is stable,
/// as in the liveness argument (SPEC.md, "Bounds").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timing {
    /// Partial synchrony: an election only when no live leader the node would accept
    /// exists and nothing to or from it is in flight; a failed quorum check only when a
    /// majority is down; a heartbeat only after the leader's previous messages are gone
    /// and only when a follower lacks something; a client retry only when it has nothing
    /// in flight and its server is not a live leader.
    Stable,
    /// As `Stable`, but election and quorum-check timers fire at any moment (within the
    /// election budget): duelling candidates, deposed leaders that still think they
    /// lead.
    SpuriousElections,
    /// As `Stable`, but a client may re-send its operation at any moment (within its
    /// retry budget): a client that gave up waiting while its request, or the answer,
    /// was still on its way. The smallest way for a retry to reach a leader after the
    /// original was applied, with no crash and one election.
    ImpatientClients,
    /// Every armed timer may fire at any moment. Much larger state spaces.
    Asynchronous,
}

impl Timing {
    /// Every setting, with its CLI name.
    pub const ALL: [(Timing, &'static str); 4] = [
        (Timing::Stable, "stable"),
        (Timing::SpuriousElections, "spurious-elections"),
        (Timing::ImpatientClients, "impatient-clients"),
        (Timing::Asynchronous, "async"),
    ];

    /// True if election and quorum-check timers may fire at any moment.
    pub fn spurious_elections(self) -> bool {
        matches!(self, Timing::SpuriousElections | Timing::Asynchronous)
    }

    /// True if heartbeat timers may fire at any moment.
    pub fn early_heartbeats(self) -> bool {
        self == Timing::Asynchronous
    }

    /// True if client retry timers may fire at any moment.
    pub fn early_client_retries(self) -> bool {
        matches!(self, Timing::ImpatientClients | Timing::Asynchronous)
    }
}

impl fmt::Display for Timing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(name_of(&Timing::ALL, *self))
    }
}

impl FromStr for Timing {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_named(&Timing::ALL, s, "timing")
    }
}

/// What the model's clients do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientScript {
    /// Client `c`'s `k`-th operation is a write if `c + k` is even, else a read: with
    /// two clients and one operation each, one writes while the other reads.
    Alternating,
    /// Every operation is a write (exposes ordering and deduplication bugs).
    WritesOnly,
    /// Every client alternates starting with a write (write, read, write, …): two
    /// clients × two operations each write and then read, and since every client's
    /// script has the same shape, client symmetry applies (SPEC §4.1).
    WriteFirst,
}

/// The model's configuration. Defaults: 3 servers, one client that writes then reads,
/// unordered non-duplicating reliable network, one crash, two elections, no spurious
/// elections, clients that retry without limit, every link up. (Two concurrent clients,
/// `clients: 2, ops_per_client: 1`, make about nine times the states.)
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ModelConfig {
    /// Number of servers, learners included (3 or 5 voters are the interesting sizes).
    pub servers: usize,
    /// How many of the servers, numbered after the voters (and before the spares), are
    /// learners at bootstrap: they receive the log and apply it but never vote or
    /// campaign ([`ClusterConfig::learners`]). Zero by default.
    pub learners: usize,
    /// How many of the servers, the highest ids (after the learners), are no members
    /// at bootstrap: spares the operator may add ([`ClusterConfig::spares`]). Zero by
    /// default.
    pub spares: usize,
    /// The operator's membership changes, asked of the leader in order, each until
    /// the leader's membership shows it made (see [`crate::model::operator`]). Empty by
    /// default.
    pub reconfigurations: Vec<ModelChange>,
    /// Times over a run the operator asks for a change: at least the script's length
    /// for the whole script to be made. Each request is an operator action, outside
    /// the fairness of the liveness check, like a fault.
    pub max_reconfigurations: usize,
    /// How far a learner may lag (by the commit index it reported to the leader) and
    /// be promoted ([`ClusterConfig::promote_lag_max`]); `None` checks nothing (the
    /// default: a world that does not study the check need not pay for the learner's
    /// report before every promotion).
    pub promote_lag_max: Option<u64>,
    /// Number of clients.
    pub clients: usize,
    /// Operations each client performs, one at a time. Bound: finite client work.
    pub ops_per_client: usize,
    /// Which operations.
    pub script: ClientScript,
    /// Network semantics.
    pub network: NetworkKind,
    /// Whether the network may drop any message. Multiplies states by a lot.
    pub lossy: bool,
    /// Total crashes over a run (each crash is followed, possibly, by one recovery).
    /// Bound: a finite fault budget, which liveness checking also needs.
    pub max_crashes: usize,
    /// Total election timeouts over a run. Bound: ballots stay small and finite.
    pub max_elections: usize,
    /// Times over a run that the operator asks the leader to hand its leadership over
    /// ([`crate::Input::TransferLeadership`]). Each starts one ballot outside the
    /// election budget, so ballots stay finite.
    pub max_transfers: usize,
    /// A server's persists become durable only at a sync of their own (a separate
    /// action, as the runtime's fsync is), a crash loses what was not synced, and its
    /// sends and replies wait for the sync of the persists before them: the runtime's
    /// ordering contract, checked rather than assumed. Off: a step's persists are
    /// durable with the step.
    pub lazy_disks: bool,
    /// With lazy disks: how many other actions may happen while some live server's
    /// sync is pending. The node's loop goes on stepping inputs while its fsync runs;
    /// 0 makes every fsync faster than anything else (the smallest world that still
    /// lets a crash fall between a persist and its sync).
    pub sync_window: u8,
    /// When timers may fire; see [`Timing`].
    pub timing: Timing,
    /// Times a client re-sends one operation after a timeout, to the next server;
    /// `None` for no limit (real clients; what liveness needs, since a client that
    /// gives up is never answered). Retries re-send the same request, so unlimited
    /// retries add transitions, not states.
    pub client_retries: Option<u8>,
    /// Which server links hold once the faults stop (see [`Connectivity`]).
    pub connectivity: Connectivity,
    /// How runs begin (see [`Opening`]).
    pub opening: Opening,
    /// The leader's pipeline window, in slots.
    pub pipeline_depth: usize,
    /// Slots a leader re-sends to a lagging peer at once
    /// ([`ClusterConfig::catch_up_slots`]); `None` for the pipeline's depth. The node's
    /// window is far larger than its pipeline: a window unlike the pipeline checks
    /// that catch-up does not lean on their being equal.
    pub catch_up_slots: Option<usize>,
    /// Requests per slot.
    pub max_batch: usize,
    /// Writes a leader queues while its pipeline is full before it refuses new ones as
    /// busy; `None` for no bound.
    pub queue_requests_max: Option<usize>,
    /// Client sessions the replicated state holds before the least recently active
    /// expires; `None` for no bound.
    pub sessions_max: Option<usize>,
    /// Messages one ordered channel holds (only for [`NetworkKind::Ordered`]).
    pub channel_capacity: usize,
    /// Servers compact their logs: after every step, a server that applied a slot it
    /// still holds saves a snapshot and compacts through it (the most eager policy a
    /// driver may follow, so snapshot transfer and snapshot-carrying promises happen
    /// as soon as they can).
    pub compaction: bool,
    /// A broken protocol variant to run instead of the real one.
    #[cfg(feature = "mutants")]
    pub mutant: Option<crate::mutant::Mutant>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            servers: 3,
            learners: 0,
            spares: 0,
            reconfigurations: Vec::new(),
            max_reconfigurations: 0,
            promote_lag_max: None,
            clients: 1,
            ops_per_client: 2,
            script: ClientScript::Alternating,
            network: NetworkKind::UnorderedNonDuplicating,
            lossy: false,
            max_crashes: 1,
            max_elections: 2,
            max_transfers: 0,
            lazy_disks: false,
            sync_window: 0,
            timing: Timing::Stable,
            client_retries: None,
            connectivity: Connectivity::full(),
            opening: Opening::Cold,
            pipeline_depth: 2,
            catch_up_slots: None,
            max_batch: 1,
            queue_requests_max: None,
            sessions_max: None,
            channel_capacity: 3,
            compaction: false,
            #[cfg(feature = "mutants")]
            mutant: None,
        }
    }
}

impl ModelConfig {
    /// The core's configuration for this model.
    pub fn cluster(&self) -> ClusterConfig {
        let config = ClusterConfig::new(self.servers)
            .with_learners(self.voters()..self.servers - self.spares)
            .with_spares(self.servers - self.spares..self.servers)
            .with_pipeline_depth(self.pipeline_depth)
            .with_catch_up_slots(self.catch_up_slots.unwrap_or(self.pipeline_depth))
            .with_max_batch(self.max_batch);
        let config = match self.queue_requests_max {
            Some(max) => config.with_queue_requests_max(max),
            None => config,
        };
        let config = match self.sessions_max {
            Some(max) => config.with_sessions_max(max),
            None => config,
        };
        let config = match self.promote_lag_max {
            Some(max) => config.with_promote_lag_max(max),
            None => config,
        };
        #[cfg(feature = "mutants")]
        let config = config.with_mutant(self.mutant);
        config
    }

    /// Number of voters at bootstrap: the servers `0..voters()`; the learners, then
    /// the spares, follow them.
    ///
    /// ```
    /// use ballot_model::model::ModelConfig;
    /// let config = ModelConfig { servers: 4, learners: 1, ..ModelConfig::default() };
    /// assert_eq!(config.voters(), 3);
    /// let members = config.cluster().bootstrap();
    /// assert!(members.is_voter(2) && !members.is_voter(3));
    /// ```
    pub fn voters(&self) -> usize {
        self.servers.saturating_sub(self.learners + self.spares)
    }

    /// Client `client`'s operations, in order. Written values are distinct across the
    /// whole run (1, 2, 3, …) so every read can be traced to its write.
    ///
    /// ```
    /// use ballot_model::model::ModelConfig;
    /// use ballot_model::RegisterOp;
    /// let config = ModelConfig { clients: 2, ops_per_client: 1, ..ModelConfig::default() };
    /// assert_eq!(config.script_for(0), vec![RegisterOp::Write(1)]);
    /// assert_eq!(config.script_for(1), vec![RegisterOp::Read]);
    /// ```
    pub fn script_for(&self, client: usize) -> Vec<RegisterOp> {
        (0..self.ops_per_client)
            .map(|k| {
                let write = match self.script {
                    ClientScript::Alternating => (client + k).is_multiple_of(2),
                    ClientScript::WritesOnly => true,
                    ClientScript::WriteFirst => k.is_multiple_of(2),
                };
                if write {
                    RegisterOp::Write((client * self.ops_per_client + k + 1) as Value)
                } else {
                    RegisterOp::Read
                }
            })
            .collect()
    }

    /// Most read-confirmation rounds one leader may start before the model stops
    /// expanding a state: one per read invocation and retry. Only a duplicating network
    /// (which re-delivers read requests at will) can exceed it.
    pub fn max_read_rounds(&self) -> u64 {
        // Unlimited retries: one round per server per election, a bound no run on a
        // non-duplicating network reaches.
        let attempts = match self.client_retries {
            Some(retries) => 1 + retries as usize,
            None => 1 + self.servers * (1 + self.max_elections),
        };
        (self.clients * self.ops_per_client * attempts) as u64
    }

    /// The configuration of a partial-connectivity scenario: its servers, links and
    /// opening, one client writing once, no crashes (the cut is the fault), and an
    /// election budget.
    ///
    /// ```
    /// use ballot_model::model::{ModelConfig, Scenario};
    /// let config = ModelConfig::scenario(Scenario::Chained);
    /// assert_eq!(config.servers, 3);
    /// assert!(!config.connectivity.connected(0, 2));
    /// ```
    pub fn scenario(scenario: Scenario) -> Self {
        let servers = scenario.servers();
        ModelConfig {
            servers,
            learners: scenario.learners(),
            lossy: scenario.lossy(),
            clients: 1,
            ops_per_client: 1,
            script: ClientScript::WritesOnly,
            max_crashes: 0,
            max_elections: scenario.elections(),
            connectivity: scenario.connectivity(),
            opening: scenario.opening(),
            ..ModelConfig::default()
        }
    }

    /// This configuration with membership change: one more server, a spare (the
    /// highest id), that the operator adds as a learner and then puts in the leader's
    /// place, asking at most once per change.
    ///
    /// ```
    /// use ballot_model::model::ModelConfig;
    /// let config = ModelConfig::default().with_membership();
    /// assert_eq!((config.servers, config.voters(), config.spares), (4, 3, 1));
    /// assert!(!config.cluster().bootstrap().is_member(3));
    /// ```
    pub fn with_membership(self) -> Self {
        let spare = self.servers;
        let reconfigurations = vec![
            ModelChange::AddLearner(spare),
            ModelChange::ReplaceLeader { by: spare },
        ];
        ModelConfig {
            servers: self.servers + 1,
            spares: self.spares + 1,
            max_reconfigurations: reconfigurations.len(),
            reconfigurations,
            ..self
        }
    }

    /// A one-line description for reports.
    pub fn describe(&self) -> String {
        #[allow(unused_mut)]
        let mut text = format!(
            "servers={} clients={} ops={} network={}{} crashes={} elections={} timing={} retries={} links={}{} pipeline={} batch={}",
            self.servers,
            self.clients,
            self.ops_per_client,
            self.network,
            if self.lossy { " lossy" } else { "" },
            self.max_crashes,
            self.max_elections,
            self.timing,
            self.client_retries
                .map_or_else(|| "unlimited".to_string(), |r| r.to_string()),
            self.connectivity,
            match self.opening {
                Opening::Cold => String::new(),
                Opening::Elected { leader, miss } => format!(
                    " opening=leader-{leader}{}",
                    miss.map_or(String::new(), |m| format!("-missing-{m}"))
                ),
            },
            self.pipeline_depth,
            self.max_batch,
        );
        if self.learners > 0 {
            text.push_str(&format!(" learners={}", self.learners));
        }
        if self.spares > 0 {
            text.push_str(&format!(" spares={}", self.spares));
        }
        if !self.reconfigurations.is_empty() {
            let steps: Vec<String> = self
                .reconfigurations
                .iter()
                .map(|c| c.to_string())
                .collect();
            text.push_str(&format!(
                " reconfigurations={} (at most {} asked)",
                steps.join(","),
                self.max_reconfigurations
            ));
        }
        match self.script {
            ClientScript::Alternating => {}
            ClientScript::WritesOnly => text.push_str(" script=writes-only"),
            ClientScript::WriteFirst => text.push_str(" script=write-first"),
        }
        if let Some(window) = self.catch_up_slots {
            text.push_str(&format!(" catch-up={window}"));
        }
        if let Some(max) = self.promote_lag_max {
            text.push_str(&format!(" promote-lag-max={max}"));
        }
        if self.max_transfers > 0 {
            text.push_str(&format!(" transfers={}", self.max_transfers));
        }
        if self.lazy_disks {
            text.push_str(" lazy-disks");
            if self.sync_window > 0 {
                text.push_str(&format!(" sync-window={}", self.sync_window));
            }
        }
        if let Some(max) = self.queue_requests_max {
            text.push_str(&format!(" queue-max={max}"));
        }
        if let Some(max) = self.sessions_max {
            text.push_str(&format!(" sessions-max={max}"));
        }
        #[cfg(feature = "mutants")]
        if let Some(mutant) = self.mutant {
            text.push_str(&format!(" mutant={}", mutant.name()));
        }
        text
    }
}
