//! Command-line arguments, and their translation into a [`ModelConfig`].

use ballot_model::model::operator::ModelChange;
use ballot_model::model::{ClientScript, ModelConfig, NetworkKind, Scenario, Timing};
use ballot_model::Mutant;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;

/// Model-check the ballot Multi-Paxos protocol.
///
/// `check` explores every reachable state of a small cluster (servers, clients, crashes,
/// elections) and verifies safety properties (agreement, linearizability, refinement of
/// an abstract consensus spec, …) and reachability targets. `explore` serves
/// stateright's web UI on the same model. `mutants` proves the checker has teeth: it
/// runs deliberately broken protocol variants and shows each one caught.
#[derive(Debug, Parser)]
#[command(name = "ballot-check", version, about, long_about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Exhaustively check the model (default: 3 servers, one client writing then
    /// reading, 1 crash, 2 elections): safety, reachability targets, and liveness under
    /// fairness. About 10 s on 2 cores. Exit 0 if every safety and liveness property
    /// holds and every reachability target is found, 1 on any violation (or a liveness
    /// verdict left unknown by a bound), 2 on bad usage.
    Check(CheckArgs),
    /// Serve stateright's interactive state explorer for the model.
    Explore(ExploreArgs),
    /// Check every deliberately broken protocol variant; exit 0 only if each is caught.
    Mutants(MutantArgs),
    /// Check a running cluster's traces against the model: replay every node's steps
    /// through the core, check persist-before-send, that every received message was
    /// sent, restart states, timers, and the model's safety invariants on the global
    /// states the traces imply. Record traces with `trace_dir` in a node's
    /// configuration (or `ballot cluster up --trace`). Exit 0 if they conform, 1 on
    /// the first divergence (reported with context), 2 if the traces cannot be read.
    Conform(ConformArgs),
}

/// Exploration strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    /// Breadth-first, on every core, one pass for safety, reachability and liveness:
    /// shortest counterexamples, deterministic; keeps full states only in its queue.
    Bfs,
    /// Depth-first, the same one pass on every core: memory for the graph only (about
    /// 100 bytes per state with its index) instead of a whole breadth-first level of
    /// full states; the same states and verdicts, longer counterexamples.
    Dfs,
    /// Random simulation: never complete, for configurations too large to exhaust.
    Sim,
    /// Swarm search: many random walks on every core, each with its own random choice
    /// of which kinds of action it takes (deliveries, drops, each timer, crashes,
    /// recoveries); never complete, for worlds beyond exhaustion. A violation is
    /// reported with its walk's seed and an explorer address that replays it.
    Swarm,
}

/// The model's configuration, shared by `check` and `explore`.
#[derive(Clone, Debug, Args)]
pub struct ModelArgs {
    /// A partial-connectivity scenario: `quorum-loss`, `constrained` or `chained` from
    /// the Omni-Paxos paper, or `learner-behind-leader` (a learner only the leader
    /// reaches); see SPEC.md, "Partial connectivity". Sets the
    /// servers, the links that hold once faults stop, no crashes, and its own client
    /// and election counts unless `--clients`/`--elections` are given; the other flags
    /// apply on top.
    #[arg(long, value_parser = parse_scenario, conflicts_with_all = ["servers", "ops", "crashes"])]
    pub scenario: Option<Scenario>,
    /// Number of servers.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=7))]
    pub servers: u8,
    /// Learners: this many more servers, numbered after the voters, that receive the
    /// log, commit and apply it, and answer clients, but never vote or campaign (see
    /// SPEC.md, "Membership change").
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub learners: u8,
    /// Membership change: one more server, a spare numbered after the others, that the
    /// operator adds as a learner and then puts in the leader's place (promoting it and
    /// removing the leader in one change), while the clients run (see SPEC.md,
    /// "Membership change"). Adds the targets "a learner is promoted" and "a write
    /// commits after a voter is removed".
    #[arg(long)]
    pub membership: bool,
    /// The operator's membership changes, in order, instead of `--membership`'s
    /// (which adds one spare server first): a comma-separated list of
    /// `add-learner:ID`, `promote:ID`, `remove:ID`, `remove-leader`, `replace-leader-by:ID`. Use
    /// with `--learners` or `--spares` for the servers it names.
    #[arg(long, value_delimiter = ',', conflicts_with = "membership")]
    pub reconfigure: Vec<ModelChange>,
    /// Spares: this many more servers, numbered after the others, that are no
    /// members until the operator adds them (`--reconfigure add-learner:ID`).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub spares: u8,
    /// How many times the operator may ask for a change; a change lost with a deposed
    /// leader is asked again [default: the script's length].
    #[arg(long)]
    pub reconfigurations: Option<u8>,
    /// The leader refuses to promote a learner whose last reported commit index trails
    /// its own by more than this many slots, or that has not reported to it at all
    /// (the node's `promote_lag_max`) [default: no check].
    #[arg(long)]
    pub promote_lag_max: Option<u64>,
    /// Slots a leader re-sends to a lagging peer at once, the next window following
    /// the acknowledgement of the last [default: the pipeline's depth].
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
    pub catch_up: Option<u8>,
    /// Number of clients [default: 1].
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=4))]
    pub clients: Option<u8>,
    /// Operations per client (alternating writes and reads).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=4))]
    pub ops: u8,
    /// Make every client operation a write.
    #[arg(long)]
    pub writes_only: bool,
    /// Every client writes first, then alternates (write, read, …) instead of client
    /// `c` starting with a read when `c` is odd: every client's script then has the
    /// same shape, which `--symmetry` needs.
    #[arg(long, conflicts_with = "writes_only")]
    pub write_first: bool,
    /// Network semantics: `unordered` (any order, at most once), `duplicating` (any
    /// order; peer messages any number of times, client traffic at most once) or
    /// `ordered` (per-channel FIFO, at most once).
    #[arg(long, default_value = "unordered", value_parser = parse_network)]
    pub network: NetworkKind,
    /// Let the network drop any message (much larger state space).
    #[arg(long)]
    pub lossy: bool,
    /// Total server crashes allowed in a run.
    #[arg(long, default_value_t = 1)]
    pub crashes: u8,
    /// Elections (new ballots) allowed in a run [default: 2].
    #[arg(long)]
    pub elections: Option<u8>,
    /// Times the operator may ask the leader to hand its leadership over (`ballot member
    /// transfer-leader`), at any moment; each starts one ballot outside the election
    /// budget. Adds the target "a transfer hands leadership over".
    #[arg(long, default_value_t = 0)]
    pub transfers: u8,
    /// Persists become durable only at a disk sync of their own, a crash loses what was
    /// not synced, and sends and replies wait for the sync of what was persisted before
    /// them (the runtime's ordering contract, checked rather than assumed; more states).
    #[arg(long)]
    pub lazy_disks: bool,
    /// With `--lazy-disks`: how many other actions may happen while a server's sync is
    /// pending (the node's loop steps inputs while its fsync runs). 0: every fsync is
    /// faster than anything else.
    #[arg(long, default_value_t = 0, requires = "lazy_disks")]
    pub sync_window: u8,
    /// When timers fire: `stable` (partial synchrony), `spurious-elections` (election
    /// and quorum-check timers at any moment), `async` (every timer at any moment).
    #[arg(long, default_value = "stable", value_parser = parse_timing)]
    pub timing: Timing,
    /// Retries per client operation: a number, or `unlimited` (real clients; needed
    /// for liveness, since a client that gives up is never answered).
    #[arg(long, default_value = "unlimited", value_parser = parse_retries)]
    pub retries: Retries,
    /// The leader's pipeline window, in slots.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..))]
    pub pipeline: u8,
    /// Client requests per slot.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..))]
    pub batch: u8,
    /// Writes a leader queues while its pipeline is full; past it, it refuses new ones
    /// as busy and their clients retry (0: refuse whenever the pipeline is full)
    /// [default: no bound].
    #[arg(long)]
    pub queue_max: Option<u8>,
    /// Client sessions the replicated state holds; opening one more expires the least
    /// recently active, and a request of an expired session is refused (its client
    /// stops) [default: no bound].
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
    pub sessions_max: Option<u8>,
    /// Servers compact their logs as soon as they apply a slot (snapshots replace the
    /// log; lagging nodes catch up by snapshot transfer).
    #[arg(long)]
    pub compaction: bool,
    /// Check a deliberately broken protocol variant instead (see `mutants`).
    #[arg(long, value_parser = parse_mutant)]
    pub mutant: Option<Mutant>,
}

fn parse_mutant(text: &str) -> Result<Mutant, String> {
    Mutant::ALL
        .iter()
        .copied()
        .find(|m| m.name() == text)
        .ok_or_else(|| {
            let names: Vec<_> = Mutant::ALL.iter().map(|m| m.name()).collect();
            format!(
                "unknown mutant `{text}` (expected one of: {})",
                names.join(", ")
            )
        })
}

/// A client retry limit, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retries(pub Option<u8>);

fn parse_retries(text: &str) -> Result<Retries, String> {
    if text == "unlimited" {
        return Ok(Retries(None));
    }
    text.parse::<u8>()
        .map(|n| Retries(Some(n)))
        .map_err(|_| format!("expected a number of retries (0-255) or `unlimited`, got `{text}`"))
}

fn parse_scenario(text: &str) -> Result<Scenario, String> {
    text.parse()
}

fn parse_network(text: &str) -> Result<NetworkKind, String> {
    text.parse()
}

fn parse_timing(text: &str) -> Result<Timing, String> {
    text.parse()
}

impl ModelArgs {
    /// The model configuration these flags describe.
    pub fn config(&self) -> ModelConfig {
        let base = match self.scenario {
            Some(scenario) => ModelConfig::scenario(scenario),
            None => ModelConfig {
                servers: self.servers as usize,
                ops_per_client: self.ops as usize,
                max_crashes: self.crashes as usize,
                ..ModelConfig::default()
            },
        };
        let base = ModelConfig {
            servers: base.servers + usize::from(self.learners),
            learners: base.learners + usize::from(self.learners),
            clients: self.clients.map_or(base.clients, usize::from),
            max_elections: self.elections.map_or(base.max_elections, usize::from),
            max_transfers: usize::from(self.transfers),
            lazy_disks: self.lazy_disks,
            sync_window: self.sync_window,
            ..base
        };
        let base = if self.membership {
            base.with_membership()
        } else {
            ModelConfig {
                servers: base.servers + usize::from(self.spares),
                spares: base.spares + usize::from(self.spares),
                max_reconfigurations: self.reconfigure.len(),
                reconfigurations: self.reconfigure.clone(),
                ..base
            }
        };
        let base = ModelConfig {
            max_reconfigurations: self
                .reconfigurations
                .map_or(base.max_reconfigurations, usize::from),
            ..base
        };
        ModelConfig {
            script: if self.writes_only || self.scenario.is_some() {
                ClientScript::WritesOnly
            } else if self.write_first {
                ClientScript::WriteFirst
            } else {
                ClientScript::Alternating
            },
            network: self.network,
            lossy: self.lossy || base.lossy,
            timing: self.timing,
            client_retries: self.retries.0,
            pipeline_depth: self.pipeline as usize,
            max_batch: self.batch as usize,
            queue_requests_max: self.queue_max.map(usize::from),
            sessions_max: self.sessions_max.map(usize::from),
            promote_lag_max: self.promote_lag_max,
            catch_up_slots: self.catch_up.map(usize::from),
            compaction: self.compaction,
            mutant: self.mutant,
            ..base
        }
    }
}

/// How to run a check.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// Exploration strategy.
    #[arg(long, value_enum, default_value_t = Strategy::Bfs)]
    pub strategy: Strategy,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Stop exploring below this depth (the result is then incomplete); with `swarm`,
    /// the most steps per walk [default: 200].
    #[arg(long)]
    pub depth: Option<usize>,
    /// Stop after this many seconds (the result is then incomplete) [default: 30 for
    /// `sim` and `swarm`, none otherwise].
    #[arg(long, visible_alias = "seconds")]
    pub timeout: Option<u64>,
    /// Seed for `--strategy sim` and `swarm`.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// With `--strategy swarm`: stop after this many walks (or at the timeout, if that
    /// comes first). With `--threads 1` the run is then a pure function of the seed:
    /// the same walks, the same report, on any machine.
    #[arg(long)]
    pub walks: Option<u64>,
    /// Client symmetry: states that differ only in which of two clients with the same
    /// script shape is which (their ids and written values traded) are explored once.
    /// Safety and reachability only (needs `--no-liveness`); refused without two such
    /// clients or with `--sessions-max`. See SPEC.md, "Symmetry".
    #[arg(long)]
    pub symmetry: bool,
    /// Skip the liveness analysis (the graph it reads is built by the exploration
    /// anyway).
    #[arg(long = "no-liveness", action = clap::ArgAction::SetFalse)]
    pub liveness: bool,
}

/// `check` arguments.
#[derive(Clone, Debug, Args)]
pub struct CheckArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The run.
    #[command(flatten)]
    pub run: RunArgs,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Report reachability targets but do not require them (for configurations too
    /// small to reach every target, e.g. without crashes). Safety and liveness still
    /// decide the exit code.
    #[arg(long)]
    pub safety_only: bool,
}

/// `explore` arguments.
#[derive(Clone, Debug, Args)]
pub struct ExploreArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to serve the explorer on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
}

/// `mutants` arguments.
#[derive(Clone, Debug, Args)]
pub struct MutantArgs {
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Check only this mutant (kebab-case name).
    #[arg(long)]
    pub only: Option<String>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// `conform` arguments.
#[derive(Clone, Debug, Args)]
pub struct ConformArgs {
    /// The directory the nodes wrote their `*.trace` files to.
    pub trace_dir: std::path::PathBuf,
}
