//! Running one model check and collecting its outcome.

use crate::args::{RunArgs, Strategy};
use ballot_checker::liveness::{self, Fairness, FairnessSpec, Verdict};
use ballot_model::model::liveness as goals;
use ballot_model::model::{BallotAction, BallotModel, BallotState, ModelConfig, Obligation};
use stateright::{Checker, Expectation, HasDiscoveries, Model, Path, UniformChooser};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How long a simulation runs when no `--timeout` is given.
const SIMULATION_DEFAULT_SECS: u64 = 30;
/// Interval between progress lines on stderr.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

/// What kind of property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Must hold in every reachable state.
    Safety,
    /// Must hold in some reachable state (the model is not vacuous).
    Reachability,
    /// Must eventually hold (or hold forever) in every fair run once faults stop.
    Liveness,
}

impl Kind {
    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Safety => "safety",
            Kind::Reachability => "reachability",
            Kind::Liveness => "liveness",
        }
    }
}

/// A property's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Safety: no reachable state violates it (exploration complete). Liveness: no
    /// fair run violates it.
    Holds,
    /// Safety: a reachable state violates it. Liveness: a fair lasso violates it.
    Violated,
    /// Reachability: a state satisfying it was found.
    Found,
    /// Reachability: exploration completed without finding one.
    NotFound,
    /// Exploration was incomplete, or (liveness) a bound cut states where a violation
    /// could hide, and nothing was found either way.
    Unknown,
}

impl Status {
    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Status::Holds => "holds",
            Status::Violated => "violated",
            Status::Found => "found",
            Status::NotFound => "not found",
            Status::Unknown => "unknown",
        }
    }

    /// True for the statuses that make the check fail.
    pub fn is_failure(self) -> bool {
        matches!(self, Status::Violated | Status::NotFound)
    }
}

/// One property's outcome.
pub struct PropertyOutcome {
    /// Its name.
    pub name: &'static str,
    /// Safety or reachability.
    pub kind: Kind,
    /// The verdict.
    pub status: Status,
    /// For a violation: the step-by-step trace and the reason.
    pub counterexample: Option<Counterexample>,
}

/// A path to a violating state, or a lasso (a path, then a cycle repeated forever),
/// rendered.
pub struct Counterexample {
    /// One line per step: the path, then the cycle.
    pub steps: Vec<String>,
    /// For a lasso: the index in `steps` where the cycle begins (`steps.len()` for a
    /// run that stops in a dead end).
    pub cycle_start: Option<usize>,
    /// The explorer address that replays the path (`ballot-check explore` with the
    /// same flags).
    pub explorer: Option<String>,
    /// The final state, summarised.
    pub final_state: Vec<String>,
    /// Why the property fails there.
    pub reason: Option<String>,
}

/// The outcome of a check.
pub struct Outcome {
    /// The configuration checked, in one line.
    pub config: String,
    /// The strategy used.
    pub strategy: Strategy,
    /// Worker threads.
    pub threads: usize,
    /// States explored (with repeats).
    pub states: usize,
    /// Distinct states.
    pub unique_states: usize,
    /// Deepest path explored.
    pub max_depth: usize,
    /// Wall time.
    pub duration: Duration,
    /// True if every reachable state was explored.
    pub complete: bool,
    /// Per-property verdicts.
    pub properties: Vec<PropertyOutcome>,
    /// Figures of the liveness check, if it ran.
    pub liveness: Option<LivenessFigures>,
}

/// What the liveness check explored and examined.
pub struct LivenessFigures {
    /// Distinct states in its graph.
    pub unique_states: usize,
    /// Transitions.
    pub edges: usize,
    /// Strongly connected components examined, summed over properties.
    pub components: usize,
    /// Of those, the ones with a cycle.
    pub cyclic_components: usize,
    /// Of those, the fair ones (each a candidate counterexample).
    pub fair_components: usize,
    /// States where a bound cut the exploration or an obligation.
    pub truncated_states: usize,
    /// Wall time, exploration and analysis.
    pub duration: Duration,
}

impl Outcome {
    /// True if no property is violated, every reachability target was found, and no
    /// liveness verdict was left open by a bound.
    pub fn passed(&self) -> bool {
        !self.properties.iter().any(|p| {
            p.status.is_failure() || (p.kind == Kind::Liveness && p.status == Status::Unknown)
        })
    }

    /// True if no property is violated and no liveness verdict was left open: what
    /// `--safety-only` and scenarios require (reachability targets not required).
    pub fn passed_without_targets(&self) -> bool {
        !self.properties.iter().any(|p| {
            p.status == Status::Violated
                || (p.kind == Kind::Liveness && p.status == Status::Unknown)
        })
    }

    /// True if no safety property is violated.
    pub fn safe(&self) -> bool {
        !self.properties.iter().any(|p| p.status == Status::Violated)
    }

    /// States per second.
    pub fn rate(&self) -> f64 {
        self.states as f64 / self.duration.as_secs_f64().max(1e-9)
    }
}

/// Checks `config` as `run` says; prints progress on stderr if `progress`.
pub fn run(config: ModelConfig, run: &RunArgs, progress: bool) -> Outcome {
    let description = config.describe();
    let model = BallotModel::new(config);
    let threads = run
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let timeout = match (run.strategy, run.timeout) {
        (_, Some(secs)) => Some(Duration::from_secs(secs)),
        (Strategy::Sim, None) => Some(Duration::from_secs(SIMULATION_DEFAULT_SECS)),
        _ => None,
    };
    let mut builder = model
        .clone()
        .checker()
        .threads(threads)
        .finish_when(HasDiscoveries::AnyFailures);
    if let Some(depth) = run.depth {
        builder = builder.target_max_depth(depth);
    }
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    let started = Instant::now();
    let deadline = timeout.map(|timeout| started + timeout);
    let (mut outcome, discoveries) = match run.strategy {
        Strategy::Bfs => drive(builder.spawn_bfs(), started, deadline, progress),
        Strategy::Dfs => drive(builder.spawn_dfs(), started, deadline, progress),
        Strategy::Sim => drive(
            builder.spawn_simulation(run.seed, UniformChooser),
            started,
            deadline,
            progress,
        ),
    };
    outcome.config = description;
    outcome.strategy = run.strategy;
    outcome.threads = threads;
    let stopped_by_timeout = timeout.is_some_and(|t| outcome.duration >= t);
    let stopped_by_depth = run.depth.is_some_and(|d| outcome.max_depth >= d);
    let stopped_by_failure = discoveries
        .iter()
        .any(|(_, kind, counterexample)| *kind == Kind::Safety && counterexample.is_some());
    outcome.complete = run.strategy != Strategy::Sim
        && !stopped_by_timeout
        && !stopped_by_depth
        && !stopped_by_failure;
    let skip_liveness =
        !run.liveness || run.strategy == Strategy::Sim || run.depth.is_some() || !outcome.safe();
    if !skip_liveness {
        let (figures, properties) = check_liveness(&model, progress);
        outcome.liveness = Some(figures);
        outcome.properties.extend(properties);
    }
    for (name, kind, counterexample) in discoveries {
        let status = match (kind, counterexample.is_some()) {
            (Kind::Safety | Kind::Liveness, true) => Status::Violated,
            (Kind::Reachability, true) => Status::Found,
            (Kind::Safety, false) if outcome.complete => Status::Holds,
            (Kind::Reachability, false) if outcome.complete => Status::NotFound,
            (_, false) => Status::Unknown,
        };
        outcome.properties.insert(
            outcome
                .properties
                .iter()
                .position(|p| p.kind == Kind::Liveness)
                .unwrap_or(outcome.properties.len()),
            PropertyOutcome {
                name,
                kind,
                status,
                counterexample: counterexample.filter(|_| kind == Kind::Safety),
            },
        );
    }
    outcome
}

/// The model's fairness, as the generic liveness checker wants it.
struct BallotFairness;

impl FairnessSpec<BallotModel> for BallotFairness {
    type Key = Obligation;

    fn classify(
        &self,
        model: &BallotModel,
        state: &BallotState,
        action: &BallotAction,
    ) -> Fairness<Obligation> {
        model.classify(state, action)
    }

    fn cut(&self, model: &BallotModel, state: &BallotState) -> Vec<Obligation> {
        model.cut_obligations(state)
    }
}

/// Runs the liveness check on `model`'s full state graph.
pub fn check_liveness(
    model: &BallotModel,
    progress: bool,
) -> (LivenessFigures, Vec<PropertyOutcome>) {
    let started = Instant::now();
    let properties = goals::all();
    let mut last_report = Instant::now();
    let interactive = std::io::stderr().is_terminal();
    let outcome = liveness::check(model, &BallotFairness, properties, |states| {
        if progress && last_report.elapsed() >= PROGRESS_INTERVAL {
            last_report = Instant::now();
            let line = format!(
                "  … liveness: {:>11} states in the graph, {:>6.1} s",
                states,
                started.elapsed().as_secs_f64()
            );
            if interactive {
                eprint!("\r{line}");
            } else {
                eprintln!("{line}");
            }
        }
    });
    if progress && interactive {
        eprint!("\r{:100}\r", "");
    }
    let figures = LivenessFigures {
        unique_states: outcome.unique_states,
        edges: outcome.edges,
        components: outcome.properties.iter().map(|p| p.components).sum(),
        cyclic_components: outcome.properties.iter().map(|p| p.cyclic_components).sum(),
        fair_components: outcome.properties.iter().map(|p| p.fair_components).sum(),
        truncated_states: outcome.truncated_states,
        duration: outcome.explore_time + outcome.analysis_time,
    };
    let properties = outcome
        .properties
        .into_iter()
        .map(|result| {
            let (status, counterexample) = match result.verdict {
                Verdict::Holds => (Status::Holds, None),
                Verdict::Unknown(_) => (Status::Unknown, None),
                Verdict::Violated(lasso) => (Status::Violated, Some(render_lasso(model, &lasso))),
            };
            PropertyOutcome {
                name: result.name,
                kind: Kind::Liveness,
                status,
                counterexample,
            }
        })
        .collect();
    (figures, properties)
}

fn render_lasso(model: &BallotModel, lasso: &liveness::Lasso<BallotModel>) -> Counterexample {
    let steps: Vec<String> = lasso
        .prefix
        .iter()
        .chain(&lasso.cycle)
        .map(|action| model.format_action(action))
        .collect();
    let mut final_state = summarise(model, lasso.cycle_entry());
    if lasso.cycle.is_empty() {
        final_state.insert(
            0,
            "(the run stops here: nothing but a fault can happen)".into(),
        );
    } else {
        final_state.insert(0, "(state where the cycle starts and ends)".into());
    }
    Counterexample {
        steps,
        cycle_start: Some(lasso.prefix.len()),
        explorer: Some(lasso.explorer_path()),
        final_state,
        reason: Some(lasso.reason.clone()),
    }
}

type Discoveries = Vec<(&'static str, Kind, Option<Counterexample>)>;

/// Waits for `checker` to finish, or for `deadline`. Stateright 0.31 checks its own
/// timeout only between jobs, so a busy worker can run on long after it; at the deadline
/// we stop waiting and report what was explored (the workers end with the process).
fn drive<C: Checker<BallotModel>>(
    checker: C,
    started: Instant,
    deadline: Option<Instant>,
    progress: bool,
) -> (Outcome, Discoveries) {
    let mut last_report = Instant::now();
    let interactive = std::io::stderr().is_terminal();
    let mut timed_out = false;
    while !checker.is_done() {
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            timed_out = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        if progress && last_report.elapsed() >= PROGRESS_INTERVAL {
            last_report = Instant::now();
            let elapsed = started.elapsed().as_secs_f64();
            let line = format!(
                "  … {:>12} states, {:>11} unique, depth {:>3}, {:>6.1} s, {:>9.0} states/s",
                checker.state_count(),
                checker.unique_state_count(),
                checker.max_depth(),
                elapsed,
                checker.state_count() as f64 / elapsed.max(1e-9)
            );
            let mut stderr = std::io::stderr();
            if interactive {
                let _ = write!(stderr, "\r{line}");
            } else {
                let _ = writeln!(stderr, "{line}");
            }
            let _ = stderr.flush();
        }
    }
    if progress && interactive {
        eprint!("\r{:100}\r", "");
    }
    // Stateright may also call itself done at the deadline while a worker is still busy
    // with a block of states: joining would wait for that worker.
    let timed_out = timed_out || deadline.is_some_and(|deadline| Instant::now() >= deadline);
    let checker = if timed_out { checker } else { checker.join() };
    let duration = started.elapsed();
    let model = checker.model();
    let discoveries = model
        .properties()
        .into_iter()
        .map(|property| {
            let kind = match property.expectation {
                Expectation::Sometimes => Kind::Reachability,
                _ => Kind::Safety,
            };
            let counterexample = checker
                .discovery(property.name)
                .map(|path| render(model, property.name, path));
            (property.name, kind, counterexample)
        })
        .collect();
    let outcome = Outcome {
        config: String::new(),
        strategy: Strategy::Bfs,
        threads: 0,
        states: checker.state_count(),
        unique_states: checker.unique_state_count(),
        max_depth: checker.max_depth(),
        duration,
        complete: false,
        properties: Vec::new(),
        liveness: None,
    };
    (outcome, discoveries)
}

fn render(
    model: &BallotModel,
    property: &str,
    path: Path<BallotState, ballot_model::model::BallotAction>,
) -> Counterexample {
    let steps: Vec<String> = path
        .clone()
        .into_actions()
        .iter()
        .map(|action| model.format_action(action))
        .collect();
    let last = path.last_state();
    Counterexample {
        steps,
        cycle_start: None,
        explorer: None,
        final_state: summarise(model, last),
        reason: ballot_model::model::properties::explain(property, model, last),
    }
}

/// A few lines describing a state: each server's role, ballot, commit and log; each
/// client's progress; what the spec recorded.
pub fn summarise(model: &BallotModel, state: &BallotState) -> Vec<String> {
    use ballot_model::Role;
    let mut lines = Vec::new();
    for (id, server) in state.servers() {
        let replica = &server.replica;
        let role = match replica.role() {
            Role::Follower { leader: Some(l) } => format!("follower of {l}"),
            Role::Follower { leader: None } => "follower".to_string(),
            Role::Candidate(c) => format!("candidate {}", c.ballot),
            Role::Leader(l) => format!("leader {}", l.ballot),
        };
        let log: Vec<String> = replica
            .durable()
            .accepted
            .iter()
            .map(|(slot, entry)| format!("{slot}@{}={:?}", entry.ballot, entry.proposal))
            .collect();
        lines.push(format!(
            "server {id}{}: {role}, promised {}, commit {}, applied {}, log [{}]",
            if state.system.crashed[id] {
                " (crashed)"
            } else {
                ""
            },
            replica.durable().promised,
            replica.commit_index(),
            replica.applied_index(),
            log.join(", ")
        ));
    }
    let history = &state.system.history;
    lines.push(format!(
        "clients: writes acked {:?}, reads answered {:?}",
        history.write_replies, history.read_replies
    ));
    lines.push(format!(
        "faults used: {} of {} crashes, {} of {} elections; messages in flight: {}",
        state.ledger.crashes,
        model.config.max_crashes,
        state.ledger.elections,
        model.config.max_elections,
        state.system.network.len()
    ));
    lines
}
