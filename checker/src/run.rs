//! Running one model check and collecting its outcome.

use crate::args::{RunArgs, Strategy};
use crate::report::group;
use ballot_checker::liveness::{self, BallotFairness, Verdict};
use ballot_checker::state_graph::{self, fingerprint, ClassFingerprint, Order, Progress};
use ballot_model::model::liveness as goals;
use ballot_model::model::{BallotAction, BallotModel, BallotState, ClientSymmetry, ModelConfig};
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
    /// Bytes per state of the graph the liveness analysis reads (breadth-first only).
    pub graph_bytes_per_state: Option<f64>,
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

    /// States per second.
    pub fn rate(&self) -> f64 {
        self.states as f64 / self.duration.as_secs_f64().max(1e-9)
    }

    /// Distinct states per second.
    pub fn unique_rate(&self) -> f64 {
        self.unique_states as f64 / self.duration.as_secs_f64().max(1e-9)
    }
}

/// Checks `config` as `run` says; prints progress on stderr if `progress`.
pub fn run(config: ModelConfig, run: &RunArgs, progress: bool) -> Outcome {
    let mut description = config.describe();
    if run.symmetry {
        description.push_str(" symmetry=clients");
    }
    let model = BallotModel::new(config);
    let threads = run
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let timeout = match (run.strategy, run.timeout) {
        (_, Some(secs)) => Some(Duration::from_secs(secs)),
        (Strategy::Sim | Strategy::Swarm, None) => {
            Some(Duration::from_secs(SIMULATION_DEFAULT_SECS))
        }
        _ => None,
    };
    let started = Instant::now();
    let deadline = timeout.map(|timeout| started + timeout);
    let mut outcome = match (run.strategy, deadline) {
        (Strategy::Bfs, _) => explore_once(
            &model,
            run,
            threads,
            deadline,
            Order::BreadthFirst,
            progress,
        ),
        (Strategy::Dfs, _) => {
            explore_once(&model, run, threads, deadline, Order::DepthFirst, progress)
        }
        (Strategy::Swarm, Some(deadline)) => swarm(&model, run, threads, deadline, progress),
        (Strategy::Sim | Strategy::Swarm, _) => simulate(&model, run, threads, timeout, progress),
    };
    outcome.config = description;
    outcome
}

/// Stateright's random simulation: never complete; no liveness.
fn simulate(
    model: &BallotModel,
    run: &RunArgs,
    threads: usize,
    timeout: Option<Duration>,
    progress: bool,
) -> Outcome {
    let started = Instant::now();
    let deadline = timeout.map(|timeout| started + timeout);
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
    let checker = builder.spawn_simulation(run.seed, UniformChooser);
    let (mut outcome, discoveries) = drive(checker, started, deadline, progress);
    outcome.strategy = run.strategy;
    outcome.threads = threads;
    for (name, kind, counterexample) in discoveries {
        outcome.properties.push(PropertyOutcome {
            status: status_of(kind, counterexample.is_some(), false),
            name,
            kind,
            counterexample: counterexample.filter(|_| kind == Kind::Safety),
        });
    }
    sort_properties(&mut outcome.properties);
    outcome
}

/// A safety or reachability property's status, from whether a discovery was made and
/// whether the exploration was complete.
fn status_of(kind: Kind, discovered: bool, complete: bool) -> Status {
    match (kind, discovered) {
        (Kind::Safety | Kind::Liveness, true) => Status::Violated,
        (Kind::Reachability, true) => Status::Found,
        (Kind::Safety, false) if complete => Status::Holds,
        (Kind::Reachability, false) if complete => Status::NotFound,
        (_, false) => Status::Unknown,
    }
}

/// Safety, then reachability, then liveness; the model's order within each kind.
fn sort_properties(properties: &mut [PropertyOutcome]) {
    properties.sort_by_key(|p| match p.kind {
        Kind::Safety => 0,
        Kind::Reachability => 1,
        Kind::Liveness => 2,
    });
}

/// The breadth-first check: one exploration (see [`ballot_checker::state_graph`])
/// decides safety and reachability as it goes and keeps the graph the liveness
/// analysis then runs on.
fn explore_once(
    model: &BallotModel,
    run: &RunArgs,
    threads: usize,
    deadline: Option<Instant>,
    order: Order,
    progress: bool,
) -> Outcome {
    let started = Instant::now();
    let interactive = std::io::stderr().is_terminal();
    let mut last_report = Instant::now();
    let mut report = |figures: &Progress| {
        if !progress || last_report.elapsed() < PROGRESS_INTERVAL {
            return;
        }
        last_report = Instant::now();
        progress_line(
            interactive,
            &format!(
                "  … {:>12} states, {:>11} unique, depth {:>3}, {:>6.1} s, {:>9.0} unique/s",
                figures.states,
                figures.unique_states,
                figures.max_depth,
                figures.elapsed.as_secs_f64(),
                figures.unique_states as f64 / figures.elapsed.as_secs_f64().max(1e-9)
            ),
        );
    };
    let liveness_properties = goals::all();
    let symmetry = run.symmetry.then(|| {
        ClientSymmetry::new(&model.config).expect("the command line checked the symmetry")
    });
    let class = |state: &BallotState| {
        symmetry
            .as_ref()
            .map_or_else(|| fingerprint(state), |s| s.fingerprint(state, fingerprint))
    };
    let options = state_graph::Options {
        threads,
        deadline,
        max_depth: run.depth,
        progress: Some(&mut report),
        order,
        class: symmetry
            .is_some()
            .then_some(&class as ClassFingerprint<BallotState>),
    };
    let exploration = state_graph::explore(model, &BallotFairness, &liveness_properties, options);
    if progress && interactive {
        eprint!("\r{:100}\r", "");
    }
    let duration = started.elapsed();
    let mut outcome = Outcome {
        config: String::new(),
        strategy: run.strategy,
        threads,
        states: exploration.figures.states,
        unique_states: exploration.unique_states(),
        max_depth: exploration.figures.max_depth,
        duration,
        complete: exploration.complete,
        properties: Vec::new(),
        liveness: None,
        graph_bytes_per_state: Some(exploration.bytes_per_state()),
    };
    for discovery in &exploration.discoveries {
        let kind = match discovery.expectation {
            Expectation::Sometimes => Kind::Reachability,
            _ => Kind::Safety,
        };
        let counterexample = match (kind, discovery.found) {
            (Kind::Safety, Some(state)) => {
                let replayed = exploration.path_to(model, state);
                let mut counterexample = render_replayed(model, discovery.name, &replayed);
                counterexample.explorer = Some(explorer_address(&replayed.indices));
                Some(counterexample)
            }
            _ => None,
        };
        outcome.properties.push(PropertyOutcome {
            name: discovery.name,
            kind,
            status: status_of(kind, discovery.found.is_some(), exploration.complete),
            counterexample,
        });
    }
    // On an incomplete graph every liveness verdict would be "unknown": not worth the
    // analysis.
    let run_liveness = run.liveness && exploration.complete && !exploration.classes();
    if run_liveness {
        let started = Instant::now();
        let result = liveness::analyze(model, &exploration, &liveness_properties);
        let (figures, properties) = liveness_outcome(model, result, started.elapsed());
        outcome.liveness = Some(figures);
        outcome.properties.extend(properties);
    }
    outcome
}

/// Most steps per swarm walk when `--depth` is not given: deeper than any
/// counterexample the exhaustive checks have produced, short enough that many walks
/// start afresh.
const SWARM_DEPTH_DEFAULT: usize = 200;

/// The swarm search (see [`ballot_checker::swarm`]): never complete; safety properties
/// are violated or unknown, targets found or unknown.
fn swarm(
    model: &BallotModel,
    run: &RunArgs,
    threads: usize,
    deadline: Instant,
    progress: bool,
) -> Outcome {
    if progress {
        eprintln!(
            "  … swarm: random walks on {threads} threads until {:.0} s{}, seed {}",
            deadline
                .saturating_duration_since(Instant::now())
                .as_secs_f64(),
            run.walks.map_or(String::new(), |walks| format!(
                " or {} walks",
                group(walks as usize)
            )),
            run.seed
        );
    }
    let result = ballot_checker::swarm::search(
        model,
        ballot_checker::swarm::Options {
            threads,
            deadline,
            max_walks: run.walks,
            seed: run.seed,
            depth: run.depth.unwrap_or(SWARM_DEPTH_DEFAULT),
            kinds: BallotModel::ACTION_KINDS,
            kind_of: BallotModel::action_kind,
            stop_at_first_violation: true,
        },
    );
    let mut outcome = Outcome {
        config: String::new(),
        strategy: Strategy::Swarm,
        threads,
        states: result.steps as usize,
        unique_states: result.unique_states,
        max_depth: result.max_depth,
        duration: result.duration,
        complete: false,
        properties: Vec::new(),
        liveness: None,
        graph_bytes_per_state: None,
    };
    for discovery in result.discoveries {
        let kind = match discovery.expectation {
            Expectation::Sometimes => Kind::Reachability,
            _ => Kind::Safety,
        };
        let counterexample = match (kind, &discovery.found) {
            (Kind::Safety, Some(walk)) => {
                let (actions, states) = ballot_checker::swarm::replay(model, &walk.indices);
                let last = states.last().expect("a walk has a state");
                let mut counterexample = render_steps(model, discovery.name, &actions, last);
                counterexample.explorer = Some(explorer_address(&walk.indices));
                counterexample.reason = Some(format!(
                    "{} (walk {} of seed {})",
                    counterexample.reason.unwrap_or_default(),
                    walk.number,
                    run.seed
                ));
                Some(counterexample)
            }
            _ => None,
        };
        outcome.properties.push(PropertyOutcome {
            name: discovery.name,
            kind,
            status: status_of(kind, discovery.found.is_some(), false),
            counterexample,
        });
    }
    if progress {
        eprintln!(
            "  … swarm: {} walks, {} steps",
            group(result.walks as usize),
            group(result.steps as usize)
        );
    }
    outcome
}

/// Writes one progress line on stderr (overwriting the last one on a terminal).
fn progress_line(interactive: bool, line: &str) {
    let mut stderr = std::io::stderr();
    if interactive {
        let _ = write!(stderr, "\r{line}");
    } else {
        let _ = writeln!(stderr, "{line}");
    }
    let _ = stderr.flush();
}

/// Stateright's explorer address of a path: the initial state's index, then each
/// action's index among its state's actions.
fn explorer_address(indices: &[usize]) -> String {
    let indices: Vec<String> = indices.iter().map(usize::to_string).collect();
    format!("#/steps/{}", indices.join("/"))
}

/// The liveness verdicts as properties of the report, and the figures.
fn liveness_outcome(
    model: &BallotModel,
    outcome: liveness::LivenessOutcome<BallotModel>,
    duration: Duration,
) -> (LivenessFigures, Vec<PropertyOutcome>) {
    let figures = LivenessFigures {
        unique_states: outcome.unique_states,
        edges: outcome.edges,
        components: outcome.properties.iter().map(|p| p.components).sum(),
        cyclic_components: outcome.properties.iter().map(|p| p.cyclic_components).sum(),
        fair_components: outcome.properties.iter().map(|p| p.fair_components).sum(),
        truncated_states: outcome.truncated_states,
        duration,
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
            progress_line(interactive, &line);
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
        graph_bytes_per_state: None,
    };
    (outcome, discoveries)
}

fn render(
    model: &BallotModel,
    property: &str,
    path: Path<BallotState, ballot_model::model::BallotAction>,
) -> Counterexample {
    let last = path.last_state().clone();
    render_steps(model, property, &path.into_actions(), &last)
}

/// A safety counterexample found by the breadth-first exploration.
fn render_replayed(
    model: &BallotModel,
    property: &str,
    replayed: &state_graph::Replayed<BallotModel>,
) -> Counterexample {
    let last = replayed.states.last().expect("a path has a state");
    render_steps(model, property, &replayed.actions, last)
}

/// A safety counterexample: the steps to `last`, and why `property` fails there.
fn render_steps(
    model: &BallotModel,
    property: &str,
    actions: &[BallotAction],
    last: &BallotState,
) -> Counterexample {
    Counterexample {
        steps: actions
            .iter()
            .map(|action| model.format_action(action))
            .collect(),
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
