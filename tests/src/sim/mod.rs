//! Deterministic simulation of whole clusters of the real node: the production
//! [`Node`] and its driver, the same code as `ballot node`, run in one thread on
//! tokio's paused clock, over a simulated network ([`network`]) and disk
//! ([`ballot_node::world::memory`]: a page cache in front of a platter),
//! with every random choice drawn from the seed. One seed is one run, and running it
//! again replays it exactly (a test compares two runs' traces byte for byte).
//!
//! Each seed runs two phases, as TigerBeetle's VOPR does:
//!
//! 1. **Safety**: clients read, write and increment a few keys through random nodes
//!    while the seed's faults come and go: lost, duplicated and reordered frames, links
//!    cut one way or both, a node isolated, the cluster split, or split with one node
//!    bridging the halves; processes crashing (what they had not written is lost),
//!    machines losing power (what they had not synced is lost, the last record may be
//!    torn off) and restarting; a failing fsync (the node stops, and is restarted
//!    later).
//! 2. **Liveness**: every fault heals and every node runs; the cluster must commit a
//!    write and converge (every node applies the same log) within a bounded simulated
//!    time.
//!
//! Then the clients' history is checked for linearizability per key (the WGL checker
//! of [`crate::linearizability`]), the counter key for lost or invented increments,
//! and, with [`SimConfig::traces`], every node's trace against the model (persist
//! before send, received was sent, restart state is durable state, the model's
//! invariants: `ballot-check conform`'s rules).

pub mod network;

use crate::kv_spec::{KeyOp, KeyRet, KeySpec};
use crate::latency_plot::{FaultWindow, LatencyPlot, LeaderChange, PlotOp};
use crate::linearizability::{check_partitioned, Operation, Outcome, Verdict};
use ballot_model::conformance::Delivery;
use ballot_model::{MemberChange, NodeId};
use ballot_node::identity::ClusterId;
use ballot_node::kv::{KvCommand, KvOutput, KvQuery, KvStore};
use ballot_node::node::{Node, NodeConfig, NodeError, Status};
use ballot_node::world::memory::{Disk, DiskFaults, MemoryStorage, SharedDisk};
use network::{Fabric, SharedFabric, SimNetwork, Weather};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What one simulated run does.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Nodes in the cluster: its voters at the start.
    pub nodes: usize,
    /// Machines standing by besides them (ids `nodes..nodes + spares`), no members
    /// until the operator puts one in a lost voter's place (a spare added as a learner,
    /// then a `Replace`) or, while two are left, grows the cluster by two voters and
    /// shrinks it back (removing the leader and another voter): membership changes
    /// among the faults, each spare used once.
    pub spares: usize,
    /// Whether the spares are new machines rather than entries of the address book:
    /// no node's configuration lists them, and the operator adds each at its address
    /// (`MemberChange::AddAt`), the cluster giving it the next id. Each machine runs
    /// under the id it will be given (the next one, when the operator adds it).
    pub new_machines: bool,
    /// Concurrent clients.
    pub clients: usize,
    /// Keys besides the counter.
    pub keys: usize,
    /// Simulated time of the safety phase (faults come and go).
    pub faulty: Duration,
    /// Simulated time the liveness phase allows to commit a write and converge.
    pub heal_within: Duration,
    /// Where the nodes write their traces, a directory per seed, to be checked against
    /// the model afterwards (`ballot-check conform`'s rules; kept only if the seed
    /// failed); `None` skips the check.
    pub traces: Option<PathBuf>,
    /// How long every fsync takes (simulated time); `None` lets the seed choose.
    pub fsync: Option<Duration>,
    /// Simulated time the clients keep running once the cluster converged, with no
    /// fault: the elections started meanwhile are counted ([`SeedReport::calm_elections`]).
    pub calm: Duration,
    /// A deliberately broken variant every node runs (a core mutant or a planted
    /// runtime bug, by name: `NodeConfig::mutant`); only builds with the `mutants`
    /// feature accept one.
    pub mutant: Option<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 3,
            spares: 0,
            new_machines: false,
            clients: 4,
            keys: 2,
            faulty: Duration::from_secs(10),
            heal_within: Duration::from_secs(10),
            traces: None,
            fsync: None,
            calm: Duration::ZERO,
            mutant: None,
        }
    }
}

/// The result of one seed.
#[derive(Clone, Debug)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// What went wrong; empty if nothing did.
    pub anomalies: Vec<String>,
    /// Elections started while the clients ran with no fault ([`SimConfig::calm`]).
    pub calm_elections: u64,
    /// Trace steps replayed through the core by the conformance check.
    pub conform_steps: usize,
    /// Operations the clients ran, and how many were acknowledged.
    pub operations: usize,
    /// See `operations`.
    pub acknowledged: usize,
    /// Faults injected.
    pub faults: usize,
    /// Simulated time the run took.
    pub simulated: Duration,
    /// Everything that happened, one line per event, in order: the same seed gives
    /// the same trace byte for byte.
    pub trace: String,
    /// Every client operation's latency over simulated time, with the fault windows
    /// and leader changes ([`LatencyPlot::to_svg`]).
    pub plot: LatencyPlot,
}

/// The counter key, only ever incremented by 1.
const COUNTER: &str = "counter";

/// Runs `seed` (see the [module docs](self)) on a fresh single-threaded runtime with a
/// paused clock.
///
/// ```no_run
/// use ballot_tests::sim::{run_seed, SimConfig};
/// let report = run_seed(&SimConfig::default(), 7);
/// assert!(report.anomalies.is_empty(), "{:?}", report.anomalies);
/// ```
pub fn run_seed(config: &SimConfig, seed: u64) -> SeedReport {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime builds");
    // Clients hold their nodes by `Rc`: they run as local tasks, on this one thread.
    let local = tokio::task::LocalSet::new();
    let run = async {
        // The paused clock starts a few wall-clock microseconds off the timer wheel's
        // millisecond ticks, and that offset varies from run to run: sleeps would round
        // to different ticks. The first auto-advance lands exactly on a tick, and every
        // later one does too.
        tokio::time::sleep(Duration::from_millis(1)).await;
        // Made here, so that its epoch is the paused clock's, not the wall's.
        Simulation::new(config.clone(), seed).run().await
    };
    runtime.block_on(local.run_until(run))
}

/// Each node while it runs, `None` while it is down; shared with the clients.
type Running = Rc<RefCell<Vec<Option<Rc<Node<KvStore>>>>>>;

/// One client's record of one operation.
struct Event {
    key: String,
    operation: Operation<KeyOp, KeyRet>,
}

/// A run in progress.
struct Simulation {
    config: SimConfig,
    seed: u64,
    epoch: Instant,
    fabric: SharedFabric,
    disks: Vec<SharedDisk<KvStore>>,
    /// Each node while it runs; `None` while it is down.
    nodes: Running,
    /// How many times each node has started (part of its seed).
    starts: Vec<u64>,
    /// Nodes gone for good: a record on their disk rotted, and they refuse to start
    /// on it (as a real node refuses a corrupt log). At most a minority.
    lost: Vec<bool>,
    /// Draws whether a power loss also rots a record: a stream of its own, so that
    /// seeds where nothing rots run exactly as before this fault existed.
    rot_rng: StdRng,
    history: Rc<RefCell<Vec<Event>>>,
    trace: Rc<RefCell<String>>,
    faults: usize,
    /// For the latency plot: the fault windows that ended, the link faults in force
    /// (since when), each node's outage in force, and the leaders the clients saw.
    windows: Vec<FaultWindow>,
    link_faults: Vec<(String, u64)>,
    outages: Vec<Option<(String, u64)>>,
    leaders: Rc<RefCell<Vec<LeaderChange>>>,
    /// Hand-overs, each from the operator's request until the node saw another lead
    /// (or gave up): they run beside the fault loop, which cannot close them.
    handovers: Rc<RefCell<Vec<FaultWindow>>>,
    /// How every node's disk misbehaves: how long an fsync takes (this seed's disk)
    /// and the chance in a million that one fails (0 once healed).
    disk_faults: DiskFaults,
    /// The network may duplicate frames (this seed's weather).
    duplicates: bool,
    /// Spares not put in a voter's place yet, in the order the operator uses them.
    spares_left: Vec<NodeId>,
    /// The operator is changing the membership (it makes one change at a time).
    operating: Rc<std::cell::Cell<bool>>,
}

/// What an operator's step asks next, as the node asked sees the cluster.
enum Next {
    /// The step is done: on to the next one.
    Done,
    /// Ask for this change (again, after a refusal or a lost answer).
    Ask(MemberChange),
    /// Nothing to ask yet (no leader known): look again shortly.
    Wait,
}

/// One step of an operator's plan.
type Step = Box<dyn Fn(&Status) -> Next>;

/// The step that makes `spare` a member (a learner).
fn add_step(spare: NodeId) -> Step {
    Box::new(move |s| match s.membership.is_member(spare) {
        true => Next::Done,
        false => Next::Ask(MemberChange::AddLearner(spare)),
    })
}

/// The node the operator asks on its `attempt`-th try: the leader and a voter that
/// follows in turn (one that forwards the request to the leader, through the same
/// faulty network), or whichever of the two runs.
fn asked(nodes: &Running, attempt: u32) -> Option<Rc<Node<KvStore>>> {
    let nodes = nodes.borrow();
    let running = || nodes.iter().flatten();
    let leader = || running().find(|node| node.status().role == "leader");
    let follower = || {
        running().find(|node| {
            let status = node.status();
            status.voter && status.role == "follower"
        })
    };
    match attempt.is_multiple_of(2) {
        true => follower().or_else(leader).cloned(),
        false => leader().or_else(follower).cloned(),
    }
}

/// The operator at work, beside the fault loop: what its task needs of the simulation.
/// The simulation lets one work at a time ([`Simulation::operator`]).
struct Operator {
    nodes: Running,
    trace: Rc<RefCell<String>>,
    epoch: Instant,
    /// Set while this operator works; cleared when it is done.
    operating: Rc<std::cell::Cell<bool>>,
    handovers: Rc<RefCell<Vec<FaultWindow>>>,
    /// When it began, for its window in the latency plot.
    from_ns: u64,
}

impl Operator {
    /// Runs `steps` in order, each asked again every 100 ms until the node asked shows
    /// it done, within `deadline`; records the outcome as `label` (or `label
    /// unfinished`) in the trace and as a window of the latency plot.
    async fn run(self, label: String, steps: Vec<Step>, deadline: Instant) {
        let mut attempt = 0;
        let mut finished = true;
        'steps: for step in steps {
            loop {
                attempt += 1;
                if let Some(node) = asked(&self.nodes, attempt) {
                    match step(&node.status()) {
                        Next::Done => continue 'steps,
                        Next::Ask(change) => {
                            let answer = node.reconfigure(change.clone()).await;
                            self.log(format_args!("operator: {change:?} -> {answer:?}"));
                        }
                        Next::Wait => {}
                    }
                }
                if Instant::now() >= deadline {
                    finished = false;
                    break 'steps;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let outcome = match finished {
            true => label,
            false => format!("{label} unfinished"),
        };
        self.log(format_args!("operator: {outcome}"));
        self.handovers.borrow_mut().push(FaultWindow {
            label: outcome,
            from_ns: self.from_ns,
            to_ns: nanos(self.epoch),
        });
        self.operating.set(false);
    }

    /// Stops before any change, saying why.
    fn give_up(self, why: std::fmt::Arguments<'_>) {
        self.log(why);
        self.operating.set(false);
    }

    fn log(&self, line: std::fmt::Arguments<'_>) {
        log(&self.trace, self.epoch, line);
    }
}

/// Derives an independent seed for one purpose of one run.
fn derive(seed: u64, purpose: u64) -> u64 {
    // SplitMix64's finaliser: nearby inputs give unrelated outputs.
    let mut z = seed ^ purpose.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Where machine `id` listens for peers (never bound: the simulated network routes by
/// id; the address only fills the book).
fn machine_address(id: NodeId) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 1 + id as u16))
}

impl Simulation {
    fn new(config: SimConfig, seed: u64) -> Self {
        let nodes = config.nodes + config.spares;
        Simulation {
            seed,
            epoch: Instant::now(),
            fabric: Fabric::new(nodes, StdRng::seed_from_u64(derive(seed, 1))),
            disks: (0..nodes).map(|_| Disk::shared()).collect(),
            nodes: Rc::new(RefCell::new(vec![None; nodes])),
            starts: vec![0; nodes],
            lost: vec![false; nodes],
            rot_rng: StdRng::seed_from_u64(derive(seed, 3)),
            history: Rc::new(RefCell::new(Vec::new())),
            trace: Rc::new(RefCell::new(String::new())),
            faults: 0,
            windows: Vec::new(),
            link_faults: Vec::new(),
            outages: vec![None; nodes],
            leaders: Rc::new(RefCell::new(Vec::new())),
            handovers: Rc::new(RefCell::new(Vec::new())),
            disk_faults: DiskFaults::none(),
            duplicates: false,
            spares_left: (config.nodes..nodes).rev().collect(),
            operating: Rc::new(std::cell::Cell::new(false)),
            config,
        }
    }

    /// Every machine: the voters at the start and the spares.
    fn machines(&self) -> usize {
        self.config.nodes + self.config.spares
    }

    /// This seed's trace directory, if traces are checked.
    fn trace_dir(&self) -> Option<PathBuf> {
        let dir = self.config.traces.as_ref()?;
        Some(dir.join(format!("seed-{}-{}", self.seed, self.config.nodes)))
    }

    fn log(&self, line: std::fmt::Arguments<'_>) {
        log(&self.trace, self.epoch, line);
    }

    /// Starts (or restarts) node `id` from its disk, unless it is lost for good.
    fn start(&mut self, id: NodeId) {
        if self.lost[id] {
            return;
        }
        // New machines are in no one's address book: the log says where they are.
        let book = if self.config.new_machines {
            self.config.nodes
        } else {
            self.machines()
        };
        let peers = (0..book).map(machine_address).collect();
        let mut config = NodeConfig::new(
            ClusterId(1),
            id,
            peers,
            "/nonexistent".into(),
            b"simulated".to_vec(),
        );
        if id >= book {
            config.peer_address = Some(machine_address(id));
        }
        self.starts[id] += 1;
        let life = self.starts[id];
        config.rng_seed = Some(derive(self.seed, 100 + 16 * id as u64 + life));
        config.blocking_inline = true;
        config.request_timeout = Duration::from_secs(2);
        // Records, not bytes (see `ballot_node::world::memory`): compact every 300.
        config.snapshot_log_bytes = 300;
        config.trace_dir = self.trace_dir();
        config.mutant = self.config.mutant.clone();
        config.spares = (self.config.nodes..book).collect();
        let recovered = {
            let mut disk = self.disks[id].lock().unwrap_or_else(|e| e.into_inner());
            disk.life = life;
            disk.recover(KvStore::default())
        };
        let (snapshot, durable) = match recovered {
            Ok(recovered) => recovered,
            Err(error) => {
                // What a real node does with a corrupt log: refuse to start, rather
                // than vote with what it may have forgotten. The machine is gone.
                self.log(format_args!("node {id} refuses to start: {error}"));
                self.lost[id] = true;
                if let Some((label, _)) = self.outages[id].as_mut() {
                    *label = format!("node {id} lost");
                }
                return;
            }
        };
        let faults = DiskFaults {
            seed: derive(self.seed, 200 + 16 * id as u64 + life),
            ..self.disk_faults.clone()
        };
        let storage = MemoryStorage::new(self.disks[id].clone(), faults);
        let network = Arc::new(SimNetwork::new(id, self.fabric.clone()));
        match Node::start_with(config, snapshot, durable, Box::new(storage), network) {
            Ok((node, inbox)) => {
                network::attach(&self.fabric, id, inbox);
                self.nodes.borrow_mut()[id] = Some(Rc::new(node));
                self.log(format_args!("node {id} starts (life {life})"));
                self.end_outage(id);
            }
            Err(error) => self.log(format_args!("node {id} refuses to start: {error}")),
        }
    }

    /// Crashes node `id`'s process: what it had not yet written is lost; what it
    /// wrote and did not sync stays in the page cache, for its next start to read.
    async fn crash(&mut self, id: NodeId) {
        network::detach(&self.fabric, id);
        let node = self.nodes.borrow_mut()[id].take();
        if let Some(node) = node {
            node.crash().await;
            self.log(format_args!("node {id} crashes"));
            self.outages[id] = Some((format!("node {id} down"), nanos(self.epoch)));
        }
    }

    /// Closes node `id`'s outage window, if one is open.
    fn end_outage(&mut self, id: NodeId) {
        if let Some((label, from_ns)) = self.outages[id].take() {
            let to_ns = nanos(self.epoch);
            self.windows.push(FaultWindow {
                label,
                from_ns,
                to_ns,
            });
        }
    }

    /// Opens a window for a link fault, in force until the links heal.
    fn link_fault(&mut self, label: String) {
        self.link_faults.push((label, nanos(self.epoch)));
    }

    /// The links heal: every link fault's window closes.
    fn heal_links(&mut self) {
        network::heal(&self.fabric);
        let to_ns = nanos(self.epoch);
        for (label, from_ns) in self.link_faults.drain(..) {
            self.windows.push(FaultWindow {
                label,
                from_ns,
                to_ns,
            });
        }
    }

    /// Node `id`'s machine loses power: its process crashes, and of what it wrote and
    /// did not sync only a prefix drawn from `rng` reached the disk (the last record
    /// may be torn off).
    async fn power_loss(&mut self, id: NodeId, rng: &mut StdRng) {
        self.crash(id).await;
        let mut disk = self.disks[id].lock().unwrap_or_else(|e| e.into_inner());
        let cached = disk.cached.len();
        let lost = disk.power_loss(rng.random_range(0..=cached));
        // Now and then the machine does not come back whole: a record on its disk
        // rots. Only while a majority stays, so that the cluster can still serve.
        let gone = (0..self.machines())
            .filter(|&other| other != id)
            .filter(|&other| {
                let disk = self.disks[other].lock().unwrap_or_else(|e| e.into_inner());
                disk.rotten.is_some() || self.lost[other]
            })
            .count();
        let rots = self.rot_rng.random_range(0..16) == 0
            && gone < (self.config.nodes - 1) / 2
            && disk.rot(self.rot_rng.random_range(0..usize::MAX));
        drop(disk);
        self.log(format_args!(
            "node {id} loses power: {lost} of {cached} unsynced records lost"
        ));
        if rots {
            self.log(format_args!(
                "node {id}'s disk rots: a record fails its checksum"
            ));
        }
    }

    /// Nodes whose storage failed are down: take them out (they restart later).
    async fn reap_failed(&mut self) {
        for id in 0..self.machines() {
            let failed = self.nodes.borrow()[id]
                .as_ref()
                .and_then(|node| node.status().storage_failure);
            if let Some(reason) = failed {
                self.log(format_args!("node {id} stopped: {reason}"));
                self.crash(id).await;
            }
        }
    }

    async fn run(mut self) -> SeedReport {
        let mut rng = StdRng::seed_from_u64(derive(self.seed, 2));
        // This seed's weather and disk.
        let weather = Weather {
            drop_ppm: *pick(&mut rng, &[0, 1_000, 20_000, 100_000]),
            duplicate_ppm: *pick(&mut rng, &[0, 1_000, 20_000]),
            delay_min: Duration::from_micros(50),
            delay_max: Duration::from_micros(*pick(&mut rng, &[500, 5_000, 30_000])),
        };
        let sync_failure_ppm = *pick(&mut rng, &[0, 0, 200]);
        self.disk_faults
            .sync_failure_ppm
            .store(sync_failure_ppm, Ordering::Relaxed);
        let fsync_micros = match self.config.fsync {
            Some(fsync) => fsync.as_micros() as u64,
            None => *pick(&mut rng, &[0, 100, 1_000, 10_000]),
        };
        self.disk_faults
            .sync_micros
            .store(fsync_micros, Ordering::Relaxed);
        self.log(format_args!(
            "seed {} nodes {} weather {weather:?} sync-failure-ppm {sync_failure_ppm} fsync-us {fsync_micros}",
            self.seed, self.config.nodes
        ));
        network::set_weather(&self.fabric, weather);
        self.duplicates = weather.duplicate_ppm > 0;
        if let Some(dir) = self.trace_dir() {
            // Traces of an earlier run of this seed would mix with this one's.
            let _ = std::fs::remove_dir_all(&dir);
        }
        for id in 0..self.machines() {
            self.start(id);
        }
        let stop = Rc::new(std::cell::Cell::new(false));
        let clients = self.spawn_clients(stop.clone());

        // Phase 1: faults come and go.
        let faulty_until = self.epoch + self.config.faulty;
        while Instant::now() < faulty_until {
            let pause = Duration::from_millis(rng.random_range(100..1_500));
            tokio::time::sleep(pause).await;
            self.reap_failed().await;
            self.fault(&mut rng).await;
        }

        // Phase 2: heal everything; the cluster must commit and converge.
        self.heal_links();
        network::set_weather(&self.fabric, Weather::CALM);
        self.disk_faults
            .sync_failure_ppm
            .store(0, Ordering::Relaxed);
        self.reap_failed().await;
        for id in 0..self.machines() {
            if self.nodes.borrow()[id].is_none() {
                self.start(id);
            }
        }
        self.log(format_args!("healed"));
        let mut anomalies = Vec::new();
        let healed = Instant::now();
        if let Err(why) = self.converge(healed + self.config.heal_within).await {
            anomalies.push(why);
        }
        let calm_elections = self.calm().await;
        stop.set(true);
        for client in clients {
            let _ = client.await;
        }
        // The counter, read once more after everything settled.
        let final_count = self
            .final_count(Instant::now() + self.config.heal_within)
            .await;
        let simulated = Instant::now() - self.epoch;
        let plot = self.plot();
        for id in 0..self.machines() {
            self.crash(id).await;
        }
        let (delivered, lost, duplicated) = network::counts(&self.fabric);
        self.log(format_args!(
            "frames delivered {delivered} lost {lost} duplicated {duplicated}"
        ));
        anomalies.extend(self.check_history(final_count));
        let mut conform_steps = 0;
        if let Some(dir) = self.trace_dir() {
            // What the simulated network does: it may deliver a frame twice.
            let delivery = if self.duplicates {
                Delivery::Duplicating
            } else {
                Delivery::AtMostOnce
            };
            match ballot_node::trace::check_dir_over::<KvStore>(&dir, delivery) {
                Ok(report) => conform_steps = report.steps,
                Err(error) => anomalies.push(format!("traces do not conform: {error}")),
            }
            if anomalies.is_empty() {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        let history = self.history.borrow();
        let acknowledged = history
            .iter()
            .filter(|e| matches!(e.operation.outcome, Outcome::Ok { .. }))
            .count();
        let trace = self.trace.borrow().clone();
        SeedReport {
            seed: self.seed,
            anomalies,
            calm_elections,
            conform_steps,
            operations: history.len(),
            acknowledged,
            faults: self.faults,
            simulated,
            trace,
            plot,
        }
    }

    /// The latency plot of the run so far.
    fn plot(&self) -> LatencyPlot {
        let ops = self
            .history
            .borrow()
            .iter()
            .map(|e| PlotOp::of(&e.operation))
            .collect();
        LatencyPlot {
            title: format!(
                "sim seed {}: {} nodes, {} clients, {} s of faults then healed; latency of every operation (simulated time)",
                self.seed,
                self.config.nodes,
                self.config.clients,
                self.config.faulty.as_secs()
            ),
            ops,
            faults: self
                .windows
                .iter()
                .chain(self.handovers.borrow().iter())
                .cloned()
                .collect(),
            leaders: self.leaders.borrow().clone(),
        }
    }

    /// Injects one fault drawn from `rng`, or heals.
    async fn fault(&mut self, rng: &mut StdRng) {
        // Drawn only with spares, so that a seed without them runs as it always did
        // (and one with a single spare, or new machines, as it did before the cluster
        // could also grow and shrink).
        if !self.spares_left.is_empty() && !self.operating.get() && rng.random_range(0..8) == 0 {
            self.faults += 1;
            if self.spares_left.len() >= 2 && !self.config.new_machines && rng.random_bool(0.5) {
                return self.grow_and_shrink();
            }
            return self.replace(rng).await;
        }
        let n = self.machines();
        let node = rng.random_range(0..n);
        self.faults += 1;
        match rng.random_range(0..7) {
            0 => {
                self.heal_links();
                self.log(format_args!("fault: heal links"));
            }
            1 => {
                for other in (0..n).filter(|o| *o != node) {
                    network::set_cut(&self.fabric, node, other, true);
                    network::set_cut(&self.fabric, other, node, true);
                }
                self.log(format_args!("fault: isolate {node}"));
                self.link_fault(format!("isolate {node}"));
            }
            2 => {
                let other = (node + 1 + rng.random_range(0..n - 1)) % n;
                network::set_cut(&self.fabric, node, other, true);
                self.log(format_args!("fault: cut {node} -> {other} (one way)"));
                self.link_fault(format!("cut {node}→{other}"));
            }
            3 if rng.random_bool(0.5) => {
                // A majority and a minority, with `node` in the minority.
                let minority: Vec<NodeId> = (0..n / 2).map(|k| (node + k) % n).collect();
                for a in 0..n {
                    for b in 0..n {
                        if minority.contains(&a) != minority.contains(&b) {
                            network::set_cut(&self.fabric, a, b, true);
                        }
                    }
                }
                self.log(format_args!("fault: split {minority:?} from the rest"));
                self.link_fault(format!("split {minority:?}"));
            }
            3 => {
                // A bridge: the others split in two halves that cannot reach each
                // other, and `node` still reaches both (each half with the bridge may
                // be a majority; no majority sees all of it).
                let others: Vec<NodeId> = (1..n).map(|k| (node + k) % n).collect();
                let (left, right) = others.split_at(others.len() / 2);
                for &a in left {
                    for &b in right {
                        network::set_cut(&self.fabric, a, b, true);
                        network::set_cut(&self.fabric, b, a, true);
                    }
                }
                self.log(format_args!(
                    "fault: bridge {node} between {left:?} and {right:?}"
                ));
                self.link_fault(format!("bridge {node}"));
            }
            4 => {
                if self.nodes.borrow()[node].is_none() {
                    self.start(node);
                } else if rng.random_bool(0.5) {
                    self.crash(node).await;
                } else {
                    self.power_loss(node, rng).await;
                }
            }
            5 => {
                // A machine that reboots and loses power again at once: its start is
                // cut short before or after its first sync.
                self.log(format_args!("fault: power cycle {node}"));
                if self.nodes.borrow()[node].is_some() {
                    self.crash(node).await;
                }
                self.start(node);
                let up = Duration::from_micros(rng.random_range(0..20_000));
                tokio::time::sleep(up).await;
                self.power_loss(node, rng).await;
            }
            6 if rng.random_bool(0.5) => {
                // The operator hands leadership over (a rolling restart's first step),
                // at whichever node leads; the request runs beside the faults that
                // follow, as an operator's command would.
                let leading = self
                    .nodes
                    .borrow()
                    .iter()
                    .flatten()
                    .find_map(|node| (node.status().role == "leader").then(|| node.clone()));
                match leading {
                    Some(node) => {
                        let id = node.status().id;
                        self.log(format_args!("fault: node {id} hands its leadership over"));
                        let (handovers, epoch) = (self.handovers.clone(), self.epoch);
                        let from_ns = nanos(epoch);
                        tokio::task::spawn_local(async move {
                            let label = match node.transfer_leadership(None).await {
                                Ok(leader) => format!("hand-over {id}→{leader}"),
                                Err(_) => format!("hand-over by {id} failed"),
                            };
                            let to_ns = nanos(epoch);
                            handovers.borrow_mut().push(FaultWindow {
                                label,
                                from_ns,
                                to_ns,
                            });
                        });
                    }
                    None => self.log(format_args!("fault: no leader to hand over")),
                }
            }
            _ => {
                // Restart every node that is down.
                for id in 0..n {
                    if self.nodes.borrow()[id].is_none() {
                        self.start(id);
                    }
                }
                self.log(format_args!("fault: restart the down nodes"));
            }
        }
    }

    /// A voter's machine is gone for good and the operator puts a spare in its place:
    /// the voter is one lost already (its disk rotted) or, if a majority of voters
    /// would remain without it, one chosen by `rng` (which crashes and is never started
    /// again); the spare is added as a learner, then replaces it, each change asked of
    /// the leader or of a voter that follows ([`asked`]), again after a refusal or a
    /// lost answer, until the membership shows it done (or 10 s pass). The operator
    /// works beside the faults that follow, as a real one would.
    async fn replace(&mut self, rng: &mut StdRng) {
        let Some(members) = self
            .nodes
            .borrow()
            .iter()
            .flatten()
            .map(|node| node.status().membership)
            .max_by_key(|m| m.epoch)
        else {
            return self.log(format_args!("fault: no node runs to replace one"));
        };
        let voters: Vec<NodeId> = members.voters.iter().copied().collect();
        // A voter whose disk rotted is as good as lost (it will refuse to start): that
        // one is replaced first, and no other is lost while it is.
        let gone = |id: NodeId| {
            self.lost[id]
                || self.disks[id]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .rotten
                    .is_some()
        };
        let gone_voters: Vec<NodeId> = voters.iter().copied().filter(|&v| gone(v)).collect();
        let victim = match gone_voters.first() {
            Some(&gone) => gone,
            None if voters.len() < 3 => {
                return self.log(format_args!("fault: too few voters to lose one"));
            }
            None => *pick(rng, &voters),
        };
        if !self.lost[victim] {
            self.crash(victim).await;
            self.lost[victim] = true;
            if let Some((label, _)) = self.outages[victim].as_mut() {
                *label = format!("node {victim} lost");
            }
        }
        let Some(spare) = self.spares_left.pop().filter(|&s| !self.lost[s]) else {
            return self.log(format_args!("fault: no spare left to replace {victim}"));
        };
        let new_machines = self.config.new_machines;
        if new_machines {
            self.log(format_args!(
                "fault: node {victim}'s machine is lost; the operator adds a new machine in its place"
            ));
        } else {
            self.log(format_args!(
                "fault: node {victim}'s machine is lost; the operator puts spare {spare} in its place"
            ));
        }
        let (book, machines) = (self.config.nodes, self.machines());
        let operator = self.operator();
        tokio::task::spawn_local(async move {
            use ballot_model::MemberAddress;
            let deadline = Instant::now() + Duration::from_secs(10);
            // A new machine is added at the address of the id it runs under, the next
            // one; the id the log gives it is the one it then takes the place under (a
            // learner added at an address by an attempt whose answer was lost counts).
            let spare = if new_machines {
                let mut joined = None;
                let mut attempt = 0;
                while joined.is_none() && Instant::now() < deadline {
                    attempt += 1;
                    if let Some(node) = asked(&operator.nodes, attempt) {
                        let m = node.status().membership;
                        joined = m
                            .added_members(book)
                            .map(|(id, _)| id)
                            .find(|id| m.learners.contains(id));
                        let next = m.id_count(book);
                        if joined.is_none() && next < machines {
                            let at = machine_address(next).to_string();
                            let change = MemberChange::AddAt(MemberAddress::new(at, ""));
                            let answer = node.reconfigure(change.clone()).await;
                            operator.log(format_args!("operator: {change:?} -> {answer:?}"));
                        }
                    }
                    if joined.is_none() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                joined
            } else {
                Some(spare)
            };
            let Some(spare) = spare else {
                return operator.give_up(format_args!("operator: no new machine joined"));
            };
            let replace: Step = Box::new(move |s| {
                let m = &s.membership;
                match m.is_voter(spare) && !m.is_voter(victim) {
                    true => Next::Done,
                    false => Next::Ask(MemberChange::Replace {
                        remove: victim,
                        promote: spare,
                    }),
                }
            });
            let label = format!("replace {victim} by {spare}");
            operator
                .run(label, vec![add_step(spare), replace], deadline)
                .await;
        });
    }

    /// The operator grows the cluster by two spares (each added as a learner, then
    /// promoted) and shrinks it back: it removes the node that leads at that moment,
    /// then another of the voters it had before, each change asked as in
    /// [`Simulation::replace`] (within 15 s). The removed nodes' machines run on: a
    /// removed node stops campaigning by itself.
    fn grow_and_shrink(&mut self) {
        let before = self
            .nodes
            .borrow()
            .iter()
            .flatten()
            .map(|node| node.status().membership)
            .max_by_key(|m| m.epoch);
        let Some(before) = before else {
            return self.log(format_args!("fault: no node runs to grow the cluster"));
        };
        let (Some(a), Some(b)) = (self.spares_left.pop(), self.spares_left.pop()) else {
            unreachable!("drawn with two spares left")
        };
        self.log(format_args!(
            "fault: the operator adds spares {a} and {b} as voters, then removes the leader and another voter"
        ));
        let promote = |spare: NodeId| -> Step {
            Box::new(move |s| match s.membership.is_voter(spare) {
                true => Next::Done,
                false => Next::Ask(MemberChange::Promote(spare)),
            })
        };
        // The leader when the removals begin, kept: its successor is not the target.
        let first = Rc::new(std::cell::Cell::new(None::<NodeId>));
        let remove_leader: Step = Box::new(move |s| {
            let Some(target) = first.get().or(s.leader) else {
                return Next::Wait;
            };
            first.set(Some(target));
            match s.membership.is_voter(target) {
                true => Next::Ask(MemberChange::Remove(target)),
                false => Next::Done,
            }
        });
        let voters_before = before.voters.len();
        let old: Vec<NodeId> = before.voters.iter().copied().collect();
        let remove_another: Step = Box::new(move |s| {
            let m = &s.membership;
            if m.voters.len() <= voters_before {
                return Next::Done;
            }
            match old.iter().find(|&&v| m.is_voter(v) && s.leader != Some(v)) {
                Some(&voter) => Next::Ask(MemberChange::Remove(voter)),
                None => Next::Wait,
            }
        });
        let steps = vec![
            add_step(a),
            add_step(b),
            promote(a),
            promote(b),
            remove_leader,
            remove_another,
        ];
        let operator = self.operator();
        let deadline = Instant::now() + Duration::from_secs(15);
        let label = format!("grow by {a},{b} and shrink");
        tokio::task::spawn_local(operator.run(label, steps, deadline));
    }

    /// The operator, now at work (none other starts until it is done).
    fn operator(&self) -> Operator {
        self.operating.set(true);
        Operator {
            nodes: self.nodes.clone(),
            trace: self.trace.clone(),
            epoch: self.epoch,
            operating: self.operating.clone(),
            handovers: self.handovers.clone(),
            from_ns: nanos(self.epoch),
        }
    }

    /// Waits until a write commits and every node has applied the same log, or
    /// `deadline` passes.
    async fn converge(&self, deadline: Instant) -> Result<(), String> {
        let probe = loop {
            if Instant::now() >= deadline {
                return Err("liveness: no write committed after every fault healed".into());
            }
            let node = self.nodes.borrow().iter().flatten().next().cloned();
            if let Some(node) = node {
                let probe = KvCommand::Set {
                    key: b"probe".to_vec(),
                    value: b"healed".to_vec(),
                };
                if node.propose(probe).await.is_ok() {
                    break Instant::now();
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.log(format_args!(
            "a write committed {} ms after healing",
            (probe - (deadline - self.config.heal_within)).as_millis()
        ));
        loop {
            let statuses: Vec<_> = self
                .nodes
                .borrow()
                .iter()
                .map(|node| node.as_ref().map(|n| (n.status(), n.dropped_frames())))
                .collect();
            let (statuses, dropped): (Vec<_>, Vec<_>) = statuses
                .into_iter()
                .map(|s| match s {
                    Some((status, dropped)) => (Some(status), dropped),
                    None => (None, 0),
                })
                .unzip();
            let commit = statuses.iter().flatten().map(|s| s.commit_index).max();
            // The members of the latest membership any node applied: every one of
            // them not lost for good must run and have applied the whole log (a spare
            // never added receives none of it).
            let members = statuses
                .iter()
                .flatten()
                .map(|s| &s.membership)
                .max_by_key(|m| m.epoch)
                .cloned()
                .unwrap_or_default();
            let expected: Vec<NodeId> = members
                .voters
                .iter()
                .chain(&members.learners)
                .copied()
                .filter(|&id| !self.lost[id])
                .collect();
            let applied: Vec<u64> = expected
                .iter()
                .filter_map(|&id| statuses[id].as_ref().map(|s| s.applied_index))
                .collect();
            if !expected.is_empty()
                && applied.len() == expected.len()
                && applied.iter().all(|a| Some(*a) == commit)
            {
                self.log(format_args!("converged at slot {}", applied[0]));
                return Ok(());
            }
            if Instant::now() >= deadline {
                let detail: Vec<String> = statuses
                    .iter()
                    .zip(&dropped)
                    .filter_map(|(s, d)| s.as_ref().map(|s| (s, d)))
                    .map(|(s, dropped)| {
                        format!(
                            "node {} {} (leader {:?}) ballot {} commit {} applied {} compacted {}; snapshots saved {} installed {}, chunks sent {} received {}, streams failed {}; fsyncs {} elections {}; inbound frames dropped {dropped}; storage failure {:?}",
                            s.id, s.role, s.leader, s.ballot, s.commit_index, s.applied_index, s.compacted_index,
                            s.snapshots_saved, s.snapshots_installed, s.snapshot_chunks_sent, s.snapshot_chunks_received,
                            s.snapshot_streams_failed, s.fsyncs, s.elections, s.storage_failure
                        )
                    })
                    .collect();
                for line in &detail {
                    self.log(format_args!("{line}"));
                }
                return Err(format!(
                    "liveness: nodes did not converge after healing (applied {applied:?}, commit {commit:?})"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Lets the clients run for [`SimConfig::calm`] with no fault; returns the
    /// elections the nodes started meanwhile.
    async fn calm(&self) -> u64 {
        if self.config.calm.is_zero() {
            return 0;
        }
        let elections = || -> u64 {
            self.nodes
                .borrow()
                .iter()
                .flatten()
                .map(|node| node.status().elections)
                .sum()
        };
        let before = elections();
        tokio::time::sleep(self.config.calm).await;
        let started = elections() - before;
        self.log(format_args!(
            "calm for {} s: {started} elections",
            self.config.calm.as_secs()
        ));
        started
    }

    /// The counter's value, read linearizably through some node once faults healed.
    async fn final_count(&self, deadline: Instant) -> Option<i64> {
        while Instant::now() < deadline {
            for id in 0..self.machines() {
                let node = self.nodes.borrow()[id].clone();
                if let Some(node) = node {
                    if let Ok(KvOutput::Bulk(value)) =
                        node.read(KvQuery::Get(COUNTER.as_bytes().to_vec())).await
                    {
                        let count = value.map_or(Some(0), |v| {
                            std::str::from_utf8(&v).ok().and_then(|t| t.parse().ok())
                        });
                        self.log(format_args!("final counter {count:?}"));
                        return count;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Starts the clients: each runs operations through random nodes until `stop`.
    fn spawn_clients(&self, stop: Rc<std::cell::Cell<bool>>) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.config.clients)
            .map(|client| {
                let mut rng = StdRng::seed_from_u64(derive(self.seed, 1000 + client as u64));
                let (nodes, history, trace, stop, leaders) = (
                    self.nodes.clone(),
                    self.history.clone(),
                    self.trace.clone(),
                    stop.clone(),
                    self.leaders.clone(),
                );
                let (epoch, keys, n) = (self.epoch, self.config.keys, self.machines());
                tokio::task::spawn_local(async move {
                    let mut process = client as u64 * 1_000_000;
                    let mut count = 0u64;
                    while !stop.get() {
                        count += 1;
                        let node_id = rng.random_range(0..n);
                        let node = nodes.borrow()[node_id].clone();
                        let Some(node) = node else {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        };
                        let (key, op) = choose(&mut rng, keys, client, count);
                        let invoked = nanos(epoch);
                        let outcome = perform(&node, &key, &op, epoch).await;
                        let unknown = matches!(outcome, Outcome::Unknown);
                        log(
                            &trace,
                            epoch,
                            format_args!(
                                "client {client} via {node_id}: {key} {op:?} -> {outcome:?}"
                            ),
                        );
                        history.borrow_mut().push(Event {
                            key,
                            operation: Operation {
                                process,
                                invoked,
                                op,
                                outcome,
                            },
                        });
                        if unknown {
                            // Its operation may still take effect: a new process.
                            process += 1;
                        }
                        note_leader(&nodes, &leaders, epoch);
                        let think = rng.random_range(0..20);
                        tokio::time::sleep(Duration::from_millis(think)).await;
                    }
                })
            })
            .collect()
    }

    /// Checks the history: linearizable per key, and the counter neither lost an
    /// acknowledged increment nor counted one never attempted.
    fn check_history(&self, final_count: Option<i64>) -> Vec<String> {
        let history = self.history.borrow();
        let keyed: Vec<(String, Operation<KeyOp, KeyRet>)> = history
            .iter()
            .map(|e| (e.key.clone(), e.operation.clone()))
            .collect();
        let mut anomalies = Vec::new();
        match check_partitioned(|_| KeySpec::default(), &keyed, Some(2_000_000)) {
            Ok(verdicts) => {
                for (key, verdict) in verdicts {
                    match verdict {
                        Verdict::Linearizable { .. } => {}
                        Verdict::NotLinearizable { .. } => {
                            anomalies.push(format!("key {key}: history not linearizable"));
                        }
                        Verdict::GaveUp { steps } => self.log(format_args!(
                            "key {key}: linearizability undecided after {steps} steps"
                        )),
                    }
                }
            }
            Err(error) => anomalies.push(format!("history: {error}")),
        }
        let increments = history.iter().filter(|e| e.key == COUNTER);
        let (mut acknowledged, mut attempted) = (0i64, 0i64);
        for event in increments.filter(|e| matches!(e.operation.op, KeyOp::IncrBy(_))) {
            match event.operation.outcome {
                Outcome::Ok { .. } => {
                    acknowledged += 1;
                    attempted += 1;
                }
                Outcome::Unknown => attempted += 1,
                Outcome::Failed => {}
            }
        }
        match final_count {
            Some(count) if count < acknowledged => anomalies.push(format!(
                "lost increments: {acknowledged} acknowledged, the counter reads {count}"
            )),
            Some(count) if count > attempted => anomalies.push(format!(
                "invented increments: {attempted} attempted, the counter reads {count}"
            )),
            Some(_) => {}
            None => anomalies.push("liveness: the counter could not be read after healing".into()),
        }
        anomalies
    }
}

fn log(trace: &Rc<RefCell<String>>, epoch: Instant, line: std::fmt::Arguments<'_>) {
    let at = Instant::now() - epoch;
    let mut trace = trace.borrow_mut();
    let _ = writeln!(trace, "{:>9.3} {line}", at.as_secs_f64() * 1e3);
}

/// Records the node that leads now, if it is not the last one recorded.
fn note_leader(nodes: &Running, leaders: &RefCell<Vec<LeaderChange>>, epoch: Instant) {
    let leading = nodes
        .borrow()
        .iter()
        .flatten()
        .map(|node| node.status())
        .find(|status| status.role == "leader")
        .map(|status| status.id);
    let mut leaders = leaders.borrow_mut();
    if let Some(leader) = leading.filter(|l| leaders.last().is_none_or(|c| c.leader != *l)) {
        leaders.push(LeaderChange {
            at_ns: nanos(epoch),
            leader,
        });
    }
}

fn nanos(epoch: Instant) -> u64 {
    (Instant::now() - epoch).as_nanos() as u64
}

fn pick<'a, T>(rng: &mut StdRng, choices: &'a [T]) -> &'a T {
    &choices[rng.random_range(0..choices.len())]
}

/// A client's next operation: an increment of the counter, or a read or a unique
/// write of one of the keys.
fn choose(rng: &mut StdRng, keys: usize, client: usize, count: u64) -> (String, KeyOp) {
    match rng.random_range(0..10) {
        0..=2 => (COUNTER.to_string(), KeyOp::IncrBy(1)),
        3..=5 => (format!("k{}", rng.random_range(0..keys)), KeyOp::Get),
        _ => (
            format!("k{}", rng.random_range(0..keys)),
            KeyOp::Set(format!("c{client}-{count}").into_bytes()),
        ),
    }
}

/// Runs `op` on `key` through `node`; classifies the answer as the nemesis does: a
/// write without an answer is unknown, a read without one failed.
async fn perform(node: &Node<KvStore>, key: &str, op: &KeyOp, epoch: Instant) -> Outcome<KeyRet> {
    let key_bytes = key.as_bytes().to_vec();
    let result = match op {
        KeyOp::Get => node.read(KvQuery::Get(key_bytes)).await,
        KeyOp::Set(value) => {
            node.propose(KvCommand::Set {
                key: key_bytes,
                value: value.clone(),
            })
            .await
        }
        KeyOp::IncrBy(delta) => {
            node.propose(KvCommand::IncrBy {
                key: key_bytes,
                delta: *delta,
            })
            .await
        }
    };
    let completed = nanos(epoch);
    let ret = match (op, result) {
        (KeyOp::Get, Ok(KvOutput::Bulk(value))) => KeyRet::Value(value),
        (KeyOp::Set(_), Ok(KvOutput::Ok)) => KeyRet::Ok,
        (KeyOp::IncrBy(_), Ok(KvOutput::Integer(n))) => KeyRet::Integer(n),
        (KeyOp::IncrBy(_), Ok(KvOutput::Error(_))) => KeyRet::Error,
        // Not sent anywhere: nothing happened.
        (_, Err(NodeError::Busy { .. } | NodeError::TooLarge { .. })) => return Outcome::Failed,
        (KeyOp::Get, _) => return Outcome::Failed,
        _ => return Outcome::Unknown,
    };
    Outcome::Ok { completed, ret }
}
