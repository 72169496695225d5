//! Whole-cluster tests: real `ballot` processes on loopback, real TCP, real fsync'd
//! logs, spoken to over RESP. Every loop here is bounded in time and stops by itself;
//! every process started is killed by PID when the test ends.

use ballot_model::conformance::{check_conformance, ConformanceReport, NodeRun, TraceRecord};
use ballot_model::{DurableState, Input, Timer};
use ballot_node::client::Client;
use ballot_node::kv::KvStore;
use ballot_node::resp::Value;
use ballot_node::trace::{check_dir, read_dir};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "a-test-cluster-secret-0123456789";
const CLUSTER_ID: &str = "00000000000000000000000000c1a55e";

/// A cluster of `ballot node` processes in a scratch directory.
struct Cluster {
    dir: PathBuf,
    clients: Vec<SocketAddr>,
    peers: Vec<SocketAddr>,
    metrics: Vec<SocketAddr>,
    children: Vec<Option<Child>>,
    /// Nodes started before: a node's first start bootstraps it (`--bootstrap`), as
    /// `ballot cluster up` does; later ones must find its data.
    bootstrapped: Vec<bool>,
    /// Nodes record conformance traces, checked when the cluster is dropped.
    traced: bool,
    /// Holds the cluster's ports for as long as its nodes may bind them.
    _ports: ports::Reservation,
}

#[path = "../../tests/src/ports.rs"]
mod ports;

impl Cluster {
    fn new(name: &str, nodes: usize) -> Cluster {
        let dir = std::env::temp_dir().join(format!("ballot-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let mut ports = ports::Reservation::new();
        let mut claim = || ports.claim(nodes).expect("loopback ports for the cluster");
        let (clients, peers, metrics) = (claim(), claim(), claim());
        let cluster = Cluster {
            dir,
            clients,
            peers,
            metrics,
            children: (0..nodes).map(|_| None).collect(),
            bootstrapped: vec![false; nodes],
            traced: true,
            _ports: ports,
        };
        for id in 0..nodes {
            cluster.write_config(id, SECRET);
        }
        cluster
    }

    /// Appends a line to every node's configuration (taking effect at its next start).
    fn configure(&self, line: &str) {
        for id in 0..self.children.len() {
            let mut text = std::fs::read_to_string(self.config(id)).expect("read config");
            text.push_str(line);
            text.push('\n');
            std::fs::write(self.config(id), text).expect("write config");
        }
    }

    fn write_config(&self, id: usize, secret: &str) {
        self.write_config_in(id, secret, CLUSTER_ID);
    }

    /// Writes node `id`'s configuration as a member of cluster `cluster_id`.
    fn write_config_in(&self, id: usize, secret: &str, cluster_id: &str) {
        let list = |addrs: &[SocketAddr]| {
            addrs
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let text = format!(
            "cluster_id = \"{cluster_id}\"\nid = {id}\ndata_dir = \"{}\"\npeers = [{}]\nclients = [{}]\nsecret = \"{secret}\"\nmetrics = \"{}\"\ntrace_dir = \"{}\"\n",
            self.data_dir(id).display(),
            list(&self.peers),
            list(&self.clients),
            self.metrics[id],
            self.trace_dir().display(),
        );
        std::fs::write(self.config(id), text).expect("write config");
    }

    /// Records no traces: for tests whose nodes cannot write them whole (a disk that
    /// fails on purpose), where a cut trace would not conform.
    fn untraced(&mut self) {
        for id in 0..self.children.len() {
            let text = std::fs::read_to_string(self.config(id)).expect("read config");
            let kept: Vec<&str> = text
                .lines()
                .filter(|line| !line.starts_with("trace_dir"))
                .collect();
            std::fs::write(self.config(id), kept.join("\n") + "\n").expect("write config");
        }
        self.traced = false;
    }

    /// Where every node records its conformance trace.
    fn trace_dir(&self) -> PathBuf {
        self.dir.join("traces")
    }

    /// Checks every trace recorded so far against the model (the library behind
    /// `ballot-check conform`); panics with the divergence if they do not conform.
    fn conform(&self) -> ConformanceReport {
        match check_dir::<KvStore>(&self.trace_dir()) {
            Ok(report) => report,
            Err(error) => panic!("the cluster's traces do not conform:\n{error}"),
        }
    }

    fn config(&self, id: usize) -> PathBuf {
        self.dir.join(format!("node-{id}.toml"))
    }

    fn data_dir(&self, id: usize) -> PathBuf {
        self.dir.join(format!("node-{id}"))
    }

    fn log(&self, id: usize) -> PathBuf {
        self.dir.join(format!("node-{id}.log"))
    }

    fn start(&mut self, id: usize) {
        let command = Command::new(env!("CARGO_BIN_EXE_ballot"));
        self.start_with(id, command);
    }

    /// Starts node `id` as `command` (the `ballot` binary, or a wrapper that runs it).
    fn start_with(&mut self, id: usize, mut command: Command) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(id))
            .expect("log file");
        command.args(["node", "--config"]).arg(self.config(id));
        if !self.bootstrapped[id] {
            command.arg("--bootstrap");
            self.bootstrapped[id] = true;
        }
        let child = command
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start ballot node");
        self.children[id] = Some(child);
    }

    fn kill(&mut self, id: usize) {
        if let Some(mut child) = self.children[id].take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait: the node flushes its log and exits 0.
    fn stop(&mut self, id: usize) {
        if let Some(mut child) = self.children[id].take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    assert!(
                        status.success(),
                        "node {id} exited with {status} on SIGTERM"
                    );
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {id} did not stop on SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn log_text(&self, id: usize) -> String {
        std::fs::read_to_string(self.log(id)).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in 0..self.children.len() {
            self.kill(id);
        }
        if !std::thread::panicking() && self.traced {
            // Every multi-process test is also a conformance test.
            let report = self.conform();
            eprintln!("traces conform: {report:?}");
            let _ = std::fs::remove_dir_all(&self.dir);
        } else if std::thread::panicking() {
            eprintln!("cluster files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn call(addr: SocketAddr, args: &[&[u8]]) -> Result<Value, String> {
    let mut client = Client::connect(&addr.to_string())
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(12), client.call(args))
        .await
        .map_err(|_| "no reply".to_string())?
        .map_err(|e| e.to_string())
}

async fn info(addr: SocketAddr) -> Option<std::collections::BTreeMap<String, String>> {
    let mut client = Client::connect(&addr.to_string()).await.ok()?;
    tokio::time::timeout(Duration::from_secs(5), client.info())
        .await
        .ok()?
        .ok()
}

/// Waits (at most 20 s) until a node among `nodes` reports itself leader; returns it.
async fn leader(cluster: &Cluster, nodes: &[usize]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for &id in nodes {
            if let Some(info) = info(cluster.clients[id]).await {
                if info.get("role").map(String::as_str) == Some("leader") {
                    return id;
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader elected within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn set(addr: SocketAddr, key: &str, value: &str) -> Result<(), String> {
    match call(addr, &[b"SET", key.as_bytes(), value.as_bytes()]).await? {
        Value::Simple(ok) if ok == "OK" => Ok(()),
        other => Err(format!("SET {key}: {other:?}")),
    }
}

async fn get(addr: SocketAddr, key: &str) -> Result<Option<Vec<u8>>, String> {
    match call(addr, &[b"GET", key.as_bytes()]).await? {
        Value::Bulk(value) => Ok(Some(value)),
        Value::Null => Ok(None),
        other => Err(format!("GET {key}: {other:?}")),
    }
}

/// Three nodes; writes through every node (followers forward); SIGKILL the leader;
/// writes succeed again through the survivors and every acknowledged write is still
/// readable; the killed node restarts and catches up to the same applied index.
#[test]
fn leader_killed_writes_resume_and_restarted_node_catches_up() {
    let mut cluster = Cluster::new("failover", 3);
    for id in 0..3 {
        cluster.start(id);
    }
    runtime().block_on(async {
        let first = leader(&cluster, &[0, 1, 2]).await;
        let mut acked = Vec::new();
        for i in 0..30 {
            let key = format!("k{i}");
            let via = cluster.clients[i % 3];
            set(via, &key, &format!("v{i}"))
                .await
                .expect("write before the failover");
            acked.push((key, format!("v{i}")));
        }
        cluster.kill(first);
        let survivors: Vec<usize> = (0..3).filter(|&id| id != first).collect();
        let killed_at = Instant::now();
        let deadline = killed_at + Duration::from_secs(20);
        loop {
            let via = cluster.clients[survivors[0]];
            if set(via, "after-failover", "1").await.is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no write succeeded within 20 s of the kill"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        eprintln!(
            "first write after killing the leader: {:?}",
            killed_at.elapsed()
        );
        acked.push(("after-failover".into(), "1".into()));
        let second = leader(&cluster, &survivors).await;
        assert_ne!(second, first);
        let report = info(cluster.clients[second]).await.expect("INFO");
        let elections: u64 = report["elections"].parse().unwrap();
        assert!(elections >= 1, "the new leader ran an election: {report:?}");
        for i in 30..60 {
            let key = format!("k{i}");
            let via = cluster.clients[survivors[i % 2]];
            set(via, &key, &format!("v{i}"))
                .await
                .expect("write after the failover");
            acked.push((key, format!("v{i}")));
        }
        for (key, value) in &acked {
            let got = get(cluster.clients[survivors[1]], key).await.expect("read");
            assert_eq!(
                got.as_deref(),
                Some(value.as_bytes()),
                "acknowledged write {key} lost"
            );
        }
        cluster.start(first);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut applied = Vec::new();
            for id in 0..3 {
                applied.push(
                    info(cluster.clients[id])
                        .await
                        .and_then(|i| i.get("applied_index").cloned()),
                );
            }
            if applied.iter().all(|a| a.is_some() && *a == applied[0]) {
                eprintln!("all nodes at applied index {:?}", applied[0]);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "restarted node did not catch up: {applied:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // It serves reads again too (through whichever node leads).
        let got = get(cluster.clients[first], "k0")
            .await
            .expect("read via the restarted node");
        assert_eq!(got.as_deref(), Some(b"v0".as_slice()));
    });
    for id in 0..3 {
        cluster.stop(id);
    }
    // The traces of this run conform, including the SIGKILLed leader's restart...
    let report = cluster.conform();
    assert_eq!((report.nodes, report.runs), (3, 4), "{report:?}");
    assert_eq!(report.restarts_checked, 1, "{report:?}");
    assert!(
        report.messages_matched > 0 && report.slots_committed >= 61,
        "{report:?}"
    );
    // ...and the checker catches each way a runtime could break the model, planted in
    // copies of these real traces.
    let (runs, _) = read_dir::<KvStore>(&cluster.trace_dir()).expect("read traces");
    assert_doctored_traces_are_caught(runs);
}

/// Plants one runtime bug at a time in a copy of conforming traces; each must be
/// reported under its rule.
fn assert_doctored_traces_are_caught(runs: Vec<NodeRun<KvStore>>) {
    type Doctor = fn(&mut Vec<NodeRun<KvStore>>) -> bool;
    let doctors: [(&str, &str, Doctor); 5] = [
        (
            "a send leaves before its fsync",
            "persist-before-send",
            |runs| {
                let before = runs[0].records.len();
                runs[0]
                    .records
                    .retain(|r| !matches!(r, TraceRecord::Synced { .. }));
                runs[0].records.len() < before
            },
        ),
        (
            "a message no one sent is delivered",
            "received-was-sent",
            |runs| {
                let before = runs[0].records.len();
                runs[0]
                    .records
                    .retain(|r| !matches!(r, TraceRecord::Released { .. }));
                runs[0].records.len() < before
            },
        ),
        (
            "a timer the core never armed fires",
            "timer-was-armed",
            |runs| {
                let at = runs[0].records[0].at() + 1;
                runs[0].records.insert(
                    1,
                    TraceRecord::Step {
                        at,
                        input: Input::Timer(Timer::Heartbeat),
                        refused: false,
                        effects: Vec::new(),
                    },
                );
                true
            },
        ),
        (
            "a node restarts from a lost disk",
            "restart-state-is-durable-state",
            |runs| {
                // The latest-starting run is the restarted leader.
                let Some(run) = runs.iter_mut().max_by_key(|r| r.records[0].at()) else {
                    return false;
                };
                match &mut run.records[0] {
                    TraceRecord::Start { durable, .. } if durable.commit > 0 => {
                        *durable = DurableState::default();
                        true
                    }
                    _ => false,
                }
            },
        ),
        (
            "the runtime drops an effect",
            "replays-identically",
            |runs| {
                for record in &mut runs[1].records {
                    if let TraceRecord::Step { effects, .. } = record {
                        if effects.len() > 1 {
                            effects.pop();
                            return true;
                        }
                    }
                }
                false
            },
        ),
    ];
    for (bug, rule, doctor) in doctors {
        let mut copy = runs.clone();
        assert!(doctor(&mut copy), "could not plant: {bug}");
        match check_conformance(copy) {
            Ok(report) => panic!("{bug}: not caught ({report:?})"),
            Err(divergence) => {
                assert_eq!(divergence.rule, rule, "{bug}: caught as {divergence}");
                eprintln!("{bug}: caught: {divergence}");
            }
        }
    }
}

/// A node that was down while the others compacted their logs (a 4 KiB limit here)
/// catches up by snapshot transfer over TCP; then every node is killed and restarted,
/// and each recovers from its own snapshot plus rewritten log to the same state.
#[test]
fn a_node_behind_compacted_logs_catches_up_by_snapshot_and_restarts_from_its_own() {
    let mut cluster = Cluster::new("snapshot", 3);
    cluster.configure("snapshot_log_bytes = 4096");
    for id in 0..3 {
        cluster.start(id);
    }
    runtime().block_on(async {
        let first = leader(&cluster, &[0, 1, 2]).await;
        let away = (first + 1) % 3;
        cluster.kill(away);
        let up: Vec<usize> = (0..3).filter(|&id| id != away).collect();
        for i in 0..300 {
            set(
                cluster.clients[up[i % 2]],
                &format!("k{i}"),
                &format!("v{i}"),
            )
            .await
            .expect("write while a node is down");
        }
        let compacted = |report: &std::collections::BTreeMap<String, String>| -> u64 {
            report["compacted_index"].parse().unwrap()
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let report = info(cluster.clients[first]).await.expect("INFO");
            if compacted(&report) > 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the leader never compacted: {report:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cluster.start(away);
        let deadline = Instant::now() + Duration::from_secs(30);
        let converged = |reports: &[Option<std::collections::BTreeMap<String, String>>]| {
            reports.iter().all(|r| {
                r.as_ref().map(|r| &r["applied_index"])
                    == reports[0].as_ref().map(|r| &r["applied_index"])
                    && r.is_some()
            })
        };
        loop {
            let mut reports = Vec::new();
            for id in 0..3 {
                reports.push(info(cluster.clients[id]).await);
            }
            if converged(&reports) {
                let rejoined = reports[away].as_ref().unwrap();
                assert!(
                    rejoined["snapshots_installed"].parse::<u64>().unwrap() >= 1,
                    "caught up by snapshot: {rejoined:?}"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the node that was away did not catch up: {reports:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for i in (0..300).step_by(37) {
            let got = get(cluster.clients[away], &format!("k{i}"))
                .await
                .expect("read");
            assert_eq!(got, Some(format!("v{i}").into_bytes()));
        }
        // Every node restarts from its snapshot and compacted log.
        let before = info(cluster.clients[first]).await.expect("INFO")["applied_index"].clone();
        for id in 0..3 {
            cluster.kill(id);
        }
        for id in 0..3 {
            cluster.start(id);
        }
        leader(&cluster, &[0, 1, 2]).await;
        for id in 0..3 {
            let got = get(cluster.clients[id], "k299")
                .await
                .expect("read after restart");
            assert_eq!(got.as_deref(), Some(b"v299".as_slice()));
            let report = info(cluster.clients[id]).await.expect("INFO");
            let applied: u64 = report["applied_index"].parse().unwrap();
            assert!(
                applied >= before.parse().unwrap(),
                "node {id} restarted behind: {report:?}"
            );
        }
    });
}

/// `GET /metrics` over plain HTTP.
fn scrape(addr: SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("metrics endpoint");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}

fn wal_path(cluster: &Cluster, id: usize) -> PathBuf {
    cluster.data_dir(id).join("wal.log")
}

fn start_and_wait_for_exit(cluster: &mut Cluster, id: usize) -> Option<std::process::ExitStatus> {
    cluster.start(id);
    let deadline = Instant::now() + Duration::from_secs(5);
    let child = cluster.children[id].as_mut().expect("started");
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            cluster.children[id] = None;
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).expect("read wal");
    bytes[offset as usize] ^= 0x5a;
    std::fs::write(path, bytes).expect("write wal");
}

/// A torn record at the log's tail is truncated with a warning and the node serves
/// every acknowledged write; a corrupt record before the tail stops start-up with an
/// error naming the file and the offset.
#[test]
fn torn_tail_is_truncated_and_mid_log_corruption_refuses_to_start() {
    let mut cluster = Cluster::new("wal", 1);
    cluster.start(0);
    let rt = runtime();
    rt.block_on(async {
        leader(&cluster, &[0]).await;
        for i in 0..5 {
            set(cluster.clients[0], &format!("k{i}"), "v")
                .await
                .expect("write");
        }
    });
    cluster.stop(0);
    let wal = wal_path(&cluster, 0);
    let clean_len = std::fs::metadata(&wal).expect("wal exists").len();
    // A torn append: a record header promising more bytes than were written.
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&wal, &bytes).unwrap();
    cluster.start(0);
    rt.block_on(async {
        leader(&cluster, &[0]).await;
        for i in 0..5 {
            let got = get(cluster.clients[0], &format!("k{i}"))
                .await
                .expect("read");
            assert_eq!(got.as_deref(), Some(b"v".as_slice()), "k{i} lost");
        }
    });
    cluster.stop(0);
    let log = cluster.log_text(0);
    assert!(
        log.contains("WARN") && log.contains("wal.log"),
        "no truncation warning in:\n{log}"
    );
    assert!(
        std::fs::metadata(&wal).unwrap().len() >= clean_len,
        "records after the tail kept"
    );

    // Corrupt the first record's payload (the record starts after the 12-byte file
    // header; its payload after the 12-byte record header): records follow it, so it
    // is not a torn tail.
    flip_byte(&wal, 12 + 12 + 1);
    let before = std::fs::read(&wal).unwrap();
    let status = start_and_wait_for_exit(&mut cluster, 0).expect("the node must refuse to start");
    assert!(!status.success(), "started on a corrupt log");
    let log = cluster.log_text(0);
    assert!(
        log.contains("wal.log") && log.contains("byte 12"),
        "error names file and offset:\n{log}"
    );
    assert_eq!(
        std::fs::read(&wal).unwrap(),
        before,
        "a refused log is left untouched"
    );
}

/// The `members` elect a leader and commit `writes` writes (`k0`, `k1`, ...), while
/// `outsider`, whom they refuse, learns nothing and does not lead. Returns the leader.
async fn serve_without(
    cluster: &Cluster,
    members: &[usize],
    outsider: usize,
    writes: usize,
) -> usize {
    let leader = leader(cluster, members).await;
    for i in 0..writes {
        set(cluster.clients[leader], &format!("k{i}"), "v")
            .await
            .expect("write without the outsider");
    }
    assert_learned_nothing(cluster, outsider).await;
    leader
}

/// Node `outsider`, refused by its peers, has applied nothing and does not lead.
async fn assert_learned_nothing(cluster: &Cluster, outsider: usize) {
    let state = info(cluster.clients[outsider])
        .await
        .expect("the outsider answers INFO");
    assert_eq!(
        state.get("applied_index").map(String::as_str),
        Some("0"),
        "the outsider learned something: {state:?}"
    );
    assert_ne!(state.get("role").map(String::as_str), Some("leader"));
}

/// A node configured with the wrong secret is refused by its peers (and refuses
/// them); the two nodes that share the secret elect a leader and commit without it.
#[test]
fn peer_with_wrong_secret_is_refused_and_cluster_keeps_working() {
    let mut cluster = Cluster::new("secret", 3);
    cluster.write_config(2, "not-the-cluster-secret-at-all!!");
    for id in 0..3 {
        cluster.start(id);
    }
    runtime().block_on(async {
        let leader = serve_without(&cluster, &[0, 1], 2, 10).await;
        let insider = info(cluster.clients[leader]).await.expect("leader INFO");
        let applied: u64 = insider["applied_index"].parse().unwrap();
        assert!(applied >= 10, "{insider:?}");
        let metrics = scrape(cluster.metrics[leader]);
        assert!(metrics.contains("ballot_is_leader 1\n"), "{metrics}");
        let value = |name: &str| -> u64 {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {metrics}"))
        };
        assert!(value("ballot_commit_index") >= 10, "{metrics}");
        assert!(value("ballot_proposals_total") >= 10, "{metrics}");
        assert!(
            value("ballot_fsync_seconds_count") >= 10,
            "every write was fsync'd: {metrics}"
        );
    });
    let refused = (0..2).any(|id| cluster.log_text(id).contains("wrong cluster secret"));
    assert!(
        refused,
        "no peer logged the refusal:\n{}",
        cluster.log_text(0)
    );
}

/// Three nodes take `writes` writes (`k0`, `k1`, ... set to `v`); then a follower is
/// killed and its data directory deleted. Returns the cluster, a runtime and the
/// follower.
fn a_follower_loses_its_disk(
    name: &str,
    writes: usize,
) -> (Cluster, tokio::runtime::Runtime, usize) {
    let mut cluster = Cluster::new(name, 3);
    for id in 0..3 {
        cluster.start(id);
    }
    let rt = runtime();
    let first_leader = rt.block_on(async {
        let leader = leader(&cluster, &[0, 1, 2]).await;
        for i in 0..writes {
            set(cluster.clients[leader], &format!("k{i}"), "v")
                .await
                .expect("write");
        }
        leader
    });
    let lost = (first_leader + 1) % 3;
    cluster.kill(lost);
    std::fs::remove_dir_all(cluster.data_dir(lost)).expect("wipe the data directory");
    (cluster, rt, lost)
}

/// The operator's mistake the identity rules exist for: a follower's disk dies, and it
/// is started again, empty, with its old configuration. It must not rejoin as a voter
/// (it forgot its votes): it refuses to start, says why and what to do, and touches
/// nothing; the two others keep serving, and every acknowledged write stays readable.
#[test]
fn a_node_that_lost_its_disk_refuses_to_start_and_the_cluster_keeps_serving() {
    let (mut cluster, rt, lost) = a_follower_loses_its_disk("lost-disk", 20);
    let status = start_and_wait_for_exit(&mut cluster, lost)
        .expect("a node with an empty data directory must refuse to start");
    assert!(!status.success(), "started with a lost disk: {status}");
    let log = cluster.log_text(lost);
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.contains("holds no ballot data")
            && last.contains("must not vote again")
            && last.contains("--bootstrap"),
        "the refusal does not say why and what to do:\n{log}"
    );
    assert!(
        !cluster.data_dir(lost).exists(),
        "a refused start created the data directory"
    );
    rt.block_on(survivors_keep_serving(&cluster, lost, 20, 30));
}

/// The nodes other than `lost` write `k{written}..k{total}` and read back every
/// `k0..k{total}`: nothing acknowledged before `lost` lost its disk is missing.
async fn survivors_keep_serving(cluster: &Cluster, lost: usize, written: usize, total: usize) {
    let survivors: Vec<usize> = (0..3).filter(|id| *id != lost).collect();
    let leader = leader(cluster, &survivors).await;
    for i in written..total {
        set(cluster.clients[leader], &format!("k{i}"), "v")
            .await
            .expect("write without the lost node");
    }
    for i in 0..total {
        let got = get(cluster.clients[leader], &format!("k{i}"))
            .await
            .expect("read");
        assert_eq!(got.as_deref(), Some(b"v".as_slice()), "k{i} lost");
    }
}

/// The same mistake, made worse: the operator forces the wiped follower in with
/// `--bootstrap`. It starts, as a new incarnation of its data directory, but every peer
/// that met its old one refuses it at the handshake and says why: it cannot vote,
/// lead or learn, and the cluster keeps serving without it.
#[test]
fn a_node_bootstrapped_again_after_losing_its_disk_is_refused_by_its_peers() {
    let (mut cluster, rt, lost) = a_follower_loses_its_disk("rebootstrap", 10);
    cluster.bootstrapped[lost] = false; // the operator passes --bootstrap again
    cluster.start(lost);
    let survivors: Vec<usize> = (0..3).filter(|id| *id != lost).collect();
    rt.block_on(async {
        // Both survivors refuse it, whichever side dials.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !survivors.iter().all(|id| {
            cluster
                .log_text(*id)
                .contains(&format!("peer {lost} presents a new data directory"))
        }) {
            assert!(
                Instant::now() < deadline,
                "the survivors did not refuse the reincarnated node:\n{}\n{}",
                cluster.log_text(survivors[0]),
                cluster.log_text(survivors[1])
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        survivors_keep_serving(&cluster, lost, 10, 20).await;
        assert_learned_nothing(&cluster, lost).await;
    });
    // Trace conformance sees the amnesia too: the node's new run did not start from
    // what its last run made durable.
    let error = check_dir::<KvStore>(&cluster.trace_dir())
        .expect_err("a run that restarted without its votes conforms");
    assert!(
        error.to_string().contains("restart-state-is-durable-state"),
        "{error}"
    );
    cluster.traced = false;
}

/// A node configured for another cluster (even one sharing the secret) is refused at
/// the handshake by both sides, each saying which cluster the other belongs to; the
/// two members elect a leader and commit without it.
#[test]
fn a_node_of_another_cluster_is_refused_at_the_handshake() {
    let other = "0000000000000000000000000000e15e";
    let mut cluster = Cluster::new("foreign", 3);
    cluster.write_config_in(2, SECRET, other);
    for id in 0..3 {
        cluster.start(id);
    }
    runtime().block_on(serve_without(&cluster, &[0, 1], 2, 5));
    let refusal = format!("peer belongs to cluster {other}, this node to cluster {CLUSTER_ID}");
    assert!(
        (0..2).any(|id| cluster.log_text(id).contains(&refusal)),
        "no member logged the refusal:\n{}",
        cluster.log_text(0)
    );
    let refusal = format!("peer belongs to cluster {CLUSTER_ID}, this node to cluster {other}");
    assert!(
        cluster.log_text(2).contains(&refusal),
        "the outsider did not log why:\n{}",
        cluster.log_text(2)
    );
}

/// Concurrent INCRs through every node while the leader is SIGKILLed: each increment
/// that was acknowledged is applied exactly once, and one whose outcome is unknown (its
/// connection died, or it timed out) at most once — so the final count lies between
/// the acknowledged ones and those plus the unknown ones.
#[test]
fn increments_apply_exactly_once_across_a_leader_kill() {
    let mut cluster = Cluster::new("incr", 3);
    for id in 0..3 {
        cluster.start(id);
    }
    // Workers must run while this thread sleeps and kills: a multi-threaded runtime.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let first = rt.block_on(leader(&cluster, &[0, 1, 2]));
    let addrs = cluster.clients.clone();
    let stop_at = Instant::now() + Duration::from_secs(3);
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let addrs = addrs.clone();
            rt.spawn(async move {
                let (mut acked, mut unknown) = (0u64, 0u64);
                let mut node = w % addrs.len();
                while Instant::now() < stop_at {
                    let Ok(mut client) = Client::connect(&addrs[node].to_string()).await else {
                        node = (node + 1) % addrs.len();
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    while Instant::now() < stop_at {
                        let reply = tokio::time::timeout(
                            Duration::from_secs(12),
                            client.call(&[b"INCR".as_slice(), b"counter"]),
                        )
                        .await;
                        match reply {
                            Ok(Ok(Value::Integer(_))) => acked += 1,
                            Ok(Ok(other)) => panic!("INCR answered {other:?}"),
                            // The connection died (its node was killed) or timed
                            // out: the increment may or may not have happened.
                            _ => {
                                unknown += 1;
                                break;
                            }
                        }
                    }
                    node = (node + 1) % addrs.len();
                }
                (acked, unknown)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1000));
    cluster.kill(first);
    let (mut acked, mut unknown) = (0, 0);
    for worker in workers {
        let (a, u) = rt.block_on(worker).expect("worker");
        acked += a;
        unknown += u;
    }
    let survivor = (first + 1) % 3;
    let value = rt.block_on(async {
        match call(cluster.clients[survivor], &[b"GET", b"counter"]).await {
            Ok(Value::Bulk(bytes)) => String::from_utf8(bytes).unwrap().parse::<u64>().unwrap(),
            other => panic!("GET counter: {other:?}"),
        }
    });
    eprintln!("acknowledged {acked}, unknown {unknown}, final {value}");
    assert!(acked > 0);
    assert!(
        acked <= value && value <= acked + unknown,
        "acknowledged {acked}, unknown {unknown}, but the counter is {value}"
    );
}

/// Sends `args` on `client` and waits (at most 30 s) for the reply.
async fn call_on(client: &mut Client, args: &[&[u8]]) -> Result<Value, String> {
    tokio::time::timeout(Duration::from_secs(30), client.call(args))
        .await
        .map_err(|_| "no reply".to_string())?
        .map_err(|e| e.to_string())
}

/// A request over the size limit (one 17 MiB value, or sixteen 600 KiB values in one
/// MSET), to the leader and to a follower, gets an error that names the limit, on a
/// connection that then goes on serving; 16 clients writing 100 KiB values at once
/// (no request oversized, their sum three slots' worth of 512 KiB) all succeed,
/// because the leader closes a batch at its byte bound; every node stays up.
#[test]
fn oversized_requests_are_refused_and_large_batches_commit() {
    let mut cluster = Cluster::new("limits", 3);
    // Slots of 512 KiB, so that a few 100 KiB writes fill more than one.
    cluster.configure("batch_bytes_max = 524288");
    for id in 0..3 {
        cluster.start(id);
    }
    runtime().block_on(async {
        let leader = leader(&cluster, &[0, 1, 2]).await;
        let follower = (leader + 1) % 3;
        let big = vec![b'x'; 17 << 20];
        for id in [leader, follower] {
            let mut client = Client::connect(&cluster.clients[id].to_string())
                .await
                .expect("connect");
            let reply = call_on(&mut client, &[b"SET", b"big", &big]).await;
            match reply {
                Ok(Value::Error(e)) => assert!(
                    e.starts_with("ERR ") && e.contains("request_bytes_max"),
                    "the error names the limit: {e}"
                ),
                other => panic!("a 17 MiB SET through node {id}: {other:?}"),
            }
            // The same connection skipped the request's bytes and serves the next.
            let reply = call_on(&mut client, &[b"SET", b"small", b"v"]).await;
            assert_eq!(reply, Ok(Value::Simple("OK".into())), "through node {id}");
            let reply = call_on(&mut client, &[b"EXISTS", b"big"]).await;
            assert_eq!(reply, Ok(Value::Integer(0)), "the big write never happened");
        }

        // A batch of large values in one request: over the limit as a whole.
        let value = vec![b'v'; 600 << 10];
        let small_value = vec![b'v'; 100 << 10];
        let mut mset: Vec<&[u8]> = vec![b"MSET"];
        let keys: Vec<String> = (0..16).map(|k| format!("many:{k}")).collect();
        for key in &keys {
            mset.push(key.as_bytes());
            mset.push(&value);
        }
        match call(cluster.clients[follower], &mset).await {
            Ok(Value::Error(e)) => assert!(e.contains("request_bytes_max"), "{e}"),
            other => panic!("an MSET of 16 x 600 KiB: {other:?}"),
        }
        // The same values from 16 clients at once: each fits, together they fill
        // more than one slot, and the leader closes each batch at its byte bound.
        let mut writers = Vec::new();
        for c in 0..16usize {
            let addr = cluster.clients[c % 3];
            let value = small_value.clone();
            writers.push(tokio::spawn(async move {
                let mut client = Client::connect(&addr.to_string())
                    .await
                    .map_err(|e| e.to_string())?;
                let key = format!("large:{c}");
                match call_on(&mut client, &[b"SET", key.as_bytes(), &value]).await? {
                    Value::Simple(ok) if ok == "OK" => Ok(()),
                    other => Err(format!("{key}: {other:?}")),
                }
            }));
        }
        for writer in writers {
            writer
                .await
                .expect("writer task")
                .expect("every large write succeeds");
        }
        for c in [0usize, 7, 15] {
            let got = get(cluster.clients[c % 3], &format!("large:{c}")).await;
            assert_eq!(got.map(|v| v.map(|v| v.len())), Ok(Some(100 << 10)));
        }
        set(cluster.clients[follower], "after", "1")
            .await
            .expect("a small write after");
        assert_eq!(
            get(cluster.clients[leader], "after").await,
            Ok(Some(b"1".to_vec()))
        );
    });
    for (id, child) in cluster.children.iter_mut().enumerate() {
        let child = child.as_mut().expect("started");
        assert!(
            matches!(child.try_wait(), Ok(None)),
            "node {id} stopped; its log:\n{}",
            std::fs::read_to_string(cluster.dir.join(format!("node-{id}.log"))).unwrap_or_default()
        );
    }
}

/// Every node runs with a 1 MiB file size limit (and SIGXFSZ ignored, so a write past
/// it fails with EFBIG as a full or failing disk would): writing through the leader,
/// the write that needs its log to grow past the limit fails, and the leader exits
/// non-zero within a second, having said why; restarted without the limit, every
/// node serves every write that was acknowledged.
#[test]
fn a_node_whose_log_write_fails_exits_non_zero_promptly_and_loses_nothing() {
    let mut cluster = Cluster::new("disk-fails", 3);
    cluster.untraced();
    let limited = || {
        let mut command = Command::new("sh");
        command.args([
            "-c",
            "trap '' XFSZ; exec prlimit --fsize=1048576 -- \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_ballot"),
        ]);
        command
    };
    for id in 0..3 {
        cluster.start_with(id, limited());
    }
    let (leader, acknowledged, failed_at) = runtime().block_on(async {
        let leader = leader(&cluster, &[0, 1, 2]).await;
        let mut client = Client::connect(&cluster.clients[leader].to_string())
            .await
            .expect("connect");
        let value = vec![b'd'; 64 << 10];
        let mut acknowledged = Vec::new();
        for n in 0..64 {
            let key = format!("disk:{n}");
            match call_on(&mut client, &[b"SET", key.as_bytes(), &value]).await {
                Ok(Value::Simple(ok)) if ok == "OK" => acknowledged.push(key),
                _ => return (leader, acknowledged, Instant::now()),
            }
        }
        panic!("64 writes of 64 KiB fit under a 1 MiB file size limit");
    });
    assert!(!acknowledged.is_empty(), "some writes fit before the limit");
    let status = loop {
        let child = cluster.children[leader].as_mut().expect("started");
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        assert!(
            failed_at.elapsed() < Duration::from_secs(1),
            "the leader did not exit within a second of its log failing"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let exited_ms = failed_at.elapsed().as_millis();
    eprintln!("leader {leader} exited {exited_ms} ms after the failed write, with {status}");
    assert!(!status.success(), "a node whose log failed exits non-zero");
    cluster.children[leader] = None;
    let log = cluster.log_text(leader);
    assert!(log.contains("storage failed"), "the log says why:\n{log}");
    // A supervisor restarts everything on a healthy disk: nothing acknowledged is lost.
    for id in 0..3 {
        cluster.kill(id);
        cluster.start(id);
    }
    runtime().block_on(async {
        leader_of(&cluster).await;
        for key in &acknowledged {
            for id in 0..3 {
                let got = get(cluster.clients[id], key).await;
                assert_eq!(
                    got.map(|v| v.map(|v| v.len())),
                    Ok(Some(64 << 10)),
                    "{key} via node {id}"
                );
            }
        }
    });
}

/// Waits for any node to lead.
async fn leader_of(cluster: &Cluster) -> usize {
    leader(cluster, &(0..cluster.children.len()).collect::<Vec<_>>()).await
}

/// Client sessions expire through the log: with room for 12 sessions (4 requests in
/// flight on each of 3 nodes), every restart gives a node a fresh set of client ids, so
/// the replicated table must expire old sessions to take the new ones. Clients of
/// every node run different numbers of increments each round, so expired sessions
/// leave different floors behind and reused sessions find their numbers refused and
/// start over above the floor. No increment is applied twice: the counter is at least
/// the acknowledged increments and at most those plus the ones whose outcome the node
/// called unknown (a session that expired while a timed-out attempt was in flight: at
/// this table size, under load, it happens); every node's table stays within its bound,
/// and every node expired sessions.
#[test]
fn client_sessions_expire_through_the_log_and_increments_apply_exactly_once() {
    const CLIENTS_PER_NODE: usize = 4;
    let mut cluster = Cluster::new("sessions", 3);
    cluster.configure(&format!(
        "waiters_max = {CLIENTS_PER_NODE}\nsessions_max = {}",
        3 * CLIENTS_PER_NODE
    ));
    for id in 0..3 {
        cluster.start(id);
    }
    let rt = runtime();
    rt.block_on(leader(&cluster, &[0, 1, 2]));
    let (mut acked, mut unknown) = (0u64, 0u64);
    for round in 0..4usize {
        if round > 0 {
            let id = (round - 1) % 3;
            cluster.stop(id);
            cluster.start(id);
            rt.block_on(async {
                let deadline = Instant::now() + Duration::from_secs(20);
                while info(cluster.clients[id]).await.is_none() {
                    assert!(Instant::now() < deadline, "node {id} did not come back");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                leader(&cluster, &[0, 1, 2]).await
            });
        }
        let addrs = cluster.clients.clone();
        let (round_acked, round_unknown) = rt.block_on(async move {
            let mut clients = tokio::task::JoinSet::new();
            for (node, addr) in addrs.into_iter().enumerate() {
                for k in 0..CLIENTS_PER_NODE {
                    let increments = 1 + (node + k + round) % 4;
                    clients.spawn(async move {
                        let mut client = Client::connect(&addr.to_string()).await.expect("connect");
                        let (mut acked, mut unknown) = (0, 0);
                        for _ in 0..increments {
                            match call_on(&mut client, &[b"INCR", b"counter"]).await {
                                Ok(Value::Integer(_)) => acked += 1,
                                Ok(Value::Error(e)) if e.contains("outcome is unknown") => {
                                    unknown += 1
                                }
                                other => panic!("INCR through node {node}: {other:?}"),
                            }
                        }
                        (acked, unknown)
                    });
                }
            }
            let (mut acked, mut unknown) = (0, 0);
            while let Some(result) = clients.join_next().await {
                let (a, u) = result.expect("client task");
                acked += a;
                unknown += u;
            }
            (acked, unknown)
        });
        acked += round_acked;
        unknown += round_unknown;
    }
    rt.block_on(async {
        let counter = match call(cluster.clients[0], &[b"GET", b"counter"]).await {
            Ok(Value::Bulk(bytes)) => String::from_utf8(bytes).unwrap().parse::<u64>().unwrap(),
            other => panic!("GET counter: {other:?}"),
        };
        eprintln!("acknowledged {acked}, unknown {unknown}, counter {counter}");
        assert!(
            acked <= counter && counter <= acked + unknown,
            "acknowledged {acked}, unknown {unknown}, but the counter is {counter}"
        );
        for (id, addr) in cluster.clients.iter().enumerate() {
            // Wait for the node to apply the last increment before reading its table.
            let deadline = Instant::now() + Duration::from_secs(10);
            let info = loop {
                let info = info(*addr).await.expect("INFO");
                if info["applied_index"] == info["commit_index"] || Instant::now() > deadline {
                    break info;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let sessions: usize = info["sessions"].parse().unwrap();
            let floor: u64 = info["session_floor"].parse().unwrap();
            eprintln!("node {id}: {sessions} sessions, floor {floor}");
            assert!(
                sessions <= 3 * CLIENTS_PER_NODE,
                "node {id} holds {sessions} sessions"
            );
            assert!(floor > 0, "node {id} expired no session");
        }
    });
}

/// A rolling restart under load: each node in turn, the leader included, is stopped
/// with SIGTERM and started again while a client keeps writing. The stopped leader hands
/// over first (its log says so), every acknowledged write survives, and the longest
/// wait between two acknowledged writes is printed (no time is asserted).
#[test]
fn a_rolling_restart_hands_leadership_over_and_loses_no_write() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let mut cluster = Cluster::new("rolling", 3);
    for id in 0..3 {
        cluster.start(id);
    }
    let first = runtime().block_on(leader(&cluster, &[0, 1, 2]));
    // Stop the followers first and the leader last, so the leader's stop is the one
    // that has to hand over, with both peers up to date.
    let order: Vec<usize> = (0..3).filter(|&id| id != first).chain([first]).collect();
    let clients = cluster.clients.clone();
    let stopping = Arc::new(AtomicUsize::new(usize::MAX));
    let done = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
    let writer = {
        let (stopping, done, acked) = (stopping.clone(), done.clone(), acked.clone());
        std::thread::spawn(move || {
            runtime().block_on(async {
                let mut i = 0usize;
                while !done.load(Ordering::SeqCst) {
                    // Through a node that is not being restarted.
                    let avoid = stopping.load(Ordering::SeqCst);
                    let via = (0..3).map(|k| (i + k) % 3).find(|&n| n != avoid).unwrap();
                    let key = format!("r{i}");
                    if set(clients[via], &key, "v").await.is_ok() {
                        acked.lock().unwrap().push((key, Instant::now()));
                        i += 1;
                    } else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            })
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    for &id in &order {
        stopping.store(id, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        cluster.stop(id);
        cluster.start(id);
        runtime().block_on(async {
            // Back in service once it reports a leader again.
            let deadline = Instant::now() + Duration::from_secs(20);
            while info(cluster.clients[id])
                .await
                .is_none_or(|i| i.get("leader").is_none_or(|l| l.is_empty()))
            {
                assert!(Instant::now() < deadline, "node {id} did not rejoin");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        stopping.store(usize::MAX, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(500));
    }
    done.store(true, Ordering::SeqCst);
    writer.join().expect("writer");
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 100, "too few writes: {}", acked.len());
    let longest = acked
        .windows(2)
        .map(|pair| pair[1].1 - pair[0].1)
        .max()
        .unwrap();
    eprintln!(
        "rolling restart of 3 nodes: {} writes, longest wait between two acknowledged writes {longest:?}",
        acked.len()
    );
    assert!(
        cluster.log_text(first).contains("handed leadership over"),
        "the leader did not hand over on SIGTERM:\n{}",
        cluster.log_text(first)
    );
    runtime().block_on(async {
        for (key, _) in &acked {
            let got = get(cluster.clients[first], key).await.expect("read");
            assert_eq!(got.as_deref(), Some(b"v".as_slice()), "{key} lost");
        }
    });
    for id in 0..3 {
        cluster.stop(id);
    }
}

/// `ballot member list` and `ballot member transfer-leader`, as an operator runs them
/// against any node: the list shows every member with one leader, a transfer to a named
/// follower makes it lead, and a transfer to no member is refused with the reason.
#[test]
fn member_commands_list_members_and_transfer_leadership() {
    let mut cluster = Cluster::new("member-cli", 3);
    for id in 0..3 {
        cluster.start(id);
    }
    let first = runtime().block_on(leader(&cluster, &[0, 1, 2]));
    let ballot = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_ballot"))
            .args(args)
            .output()
            .expect("run ballot");
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).to_string();
        (
            output.status.success(),
            text(&output.stdout),
            text(&output.stderr),
        )
    };
    let follower = (first + 1) % 3;
    let via = cluster.clients[(first + 2) % 3].to_string();
    let (ok, listed, _) = ballot(&["member", "list", "--addr", &via]);
    assert!(ok, "{listed}");
    assert_eq!(
        listed.lines().count(),
        5,
        "the epoch, a header and three members:\n{listed}"
    );
    assert!(listed.starts_with("membership epoch 0"), "{listed}");
    assert_eq!(listed.matches(" voter ").count(), 3, "{listed}");
    assert_eq!(listed.matches(" leader ").count(), 1, "{listed}");
    for id in 0..3 {
        assert!(
            listed.contains(&cluster.clients[id].to_string()),
            "{listed}"
        );
    }

    let (ok, out, err) = ballot(&["member", "transfer-leader", "7", "--addr", &via]);
    assert!(!ok, "a transfer to no member succeeded: {out}");
    assert!(err.contains("node 7 is not a peer"), "{err}");

    let (ok, out, err) = ballot(&[
        "member",
        "transfer-leader",
        &follower.to_string(),
        "--addr",
        &via,
    ]);
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), format!("OK node {follower} leads"));
    let now = runtime().block_on(leader(&cluster, &[0, 1, 2]));
    assert_eq!(now, follower);
    runtime().block_on(async {
        set(cluster.clients[first], "after-transfer", "1")
            .await
            .expect("a write through the old leader after the transfer");
    });
    for id in 0..3 {
        cluster.stop(id);
    }
}

/// Waits (at most 20 s) until node `id` has applied at least `index`; returns its INFO.
async fn applied_at_least(
    cluster: &Cluster,
    id: usize,
    index: u64,
) -> std::collections::BTreeMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(info) = info(cluster.clients[id]).await {
            let applied: u64 = info
                .get("applied_index")
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            if applied >= index {
                return info;
            }
        }
        assert!(
            Instant::now() < deadline,
            "node {id} did not apply {index} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Three voters and a learner (node 3, `learners = [3]` on every node): writes commit
/// and the learner applies them; INFO and `ballot member list` say which is which; the
/// leader is SIGKILLed, a voter (never the learner) takes over, and the learner goes on
/// applying what the new leader commits. Every node records a trace, checked against
/// the model when the cluster is dropped.
#[test]
fn a_learner_applies_the_log_and_never_leads() {
    let mut cluster = Cluster::new("learner", 4);
    cluster.configure("learners = [3]");
    for id in 0..4 {
        cluster.start(id);
    }
    let voters = [0, 1, 2];
    runtime().block_on(async {
        let first = leader(&cluster, &voters).await;
        for i in 0..20 {
            set(cluster.clients[i % 4], &format!("k{i}"), "v")
                .await
                .expect("a write through any node, the learner included");
        }
        let leader_info = info(cluster.clients[first]).await.expect("leader INFO");
        let commit: u64 = leader_info["commit_index"].parse().expect("commit index");
        assert!(commit >= 20, "{leader_info:?}");
        assert_eq!(leader_info["member"], "voter");
        let learner = applied_at_least(&cluster, 3, commit).await;
        assert_eq!(learner["member"], "learner", "{learner:?}");
        assert_eq!(learner["learners"], "3");
        assert_eq!(learner["role"], "follower");

        cluster.kill(first);
        let survivors: Vec<usize> = voters.into_iter().filter(|&id| id != first).collect();
        let next = leader(&cluster, &survivors).await;
        set(cluster.clients[next], "after-failover", "1")
            .await
            .expect("a write after the failover");
        let commit: u64 = info(cluster.clients[next]).await.expect("INFO")["commit_index"]
            .parse()
            .expect("commit index");
        let learner = applied_at_least(&cluster, 3, commit).await;
        assert_eq!(
            learner["role"], "follower",
            "a learner never runs: {learner:?}"
        );
        assert_eq!(learner["elections"], "0", "{learner:?}");
    });
    let output = Command::new(env!("CARGO_BIN_EXE_ballot"))
        .args(["member", "list", "--addr", &cluster.clients[3].to_string()])
        .output()
        .expect("run ballot member list");
    let listed = String::from_utf8_lossy(&output.stdout).to_string();
    let row = |id: usize| {
        listed
            .lines()
            .find(|line| line.starts_with(&format!("{id} ")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row(3).contains(" learner "), "{listed}");
    assert!(row(0).contains(" voter "), "{listed}");
    for id in 0..4 {
        cluster.stop(id);
    }
}
