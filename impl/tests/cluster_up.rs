//! `ballot cluster up` as an operator runs it: the first run creates the cluster and
//! bootstraps its nodes; a later run restarts them from their data, and a node whose
//! data directory was lost meanwhile is refused (and reported), not bootstrapped
//! again, while the others serve what was written before. Real processes on loopback;
//! every process started is stopped by PID, and every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../tests/src/ports.rs"]
mod ports;

/// A base port such that every port `cluster up` derives from it (clients at
/// `base + i`, peers at `base + 100 + i`, metrics at `base + 200 + i`) is free and held
/// by `ports` (the nodes bind them while it lives).
fn free_base(ports: &mut ports::Reservation, nodes: u16) -> u16 {
    let offsets: Vec<u16> = [0, 100, 200]
        .iter()
        .flat_map(|offset| (0..nodes).map(move |i| offset + i))
        .collect();
    ports.claim_base(&offsets).expect("a free range of ports")
}

/// One `ballot cluster up` process, its output going to files.
struct Up {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Up {
    /// `cluster up` with 3 members and `spares` machines standing by.
    fn start(dir: &Path, base: u16, run: usize, spares: usize) -> Up {
        let stdout = dir.with_extension(format!("up-{run}.out"));
        let stderr = dir.with_extension(format!("up-{run}.err"));
        let child = Command::new(env!("CARGO_BIN_EXE_ballot"))
            .args(["cluster", "up", "--nodes", "3", "--spares"])
            .arg(spares.to_string())
            .arg("--base-port")
            .arg(base.to_string())
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("start ballot cluster up");
        Up {
            child,
            stdout,
            stderr,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
            + &std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits (at most 20 s) until the output contains `text`.
    fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.output().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no `{text}` within 20 s in:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, as Ctrl-C would: it stops its nodes and exits 0 (within 20 s).
    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "cluster up exited with {status}");
                return self.output();
            }
            assert!(Instant::now() < deadline, "cluster up did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Up {
    /// A test that panicked still stops its nodes: SIGTERM first, which `cluster up`
    /// passes on to them, then SIGKILL after 10 s (and the nodes then get their
    /// parent-death signal).
    fn drop(&mut self) {
        // Reaped already (by `stop`): its PID may be another process's by now.
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A RESP connection to the node whose clients' port is `port` (at most 2 s to connect).
fn connect(port: u16) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(2)))
}

/// Sends one command to `port`, retrying (for at most 20 s) until a leader answers.
fn call(port: u16, args: &[&str]) -> redis::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = connect(port).and_then(|mut connection| {
            let mut command = redis::cmd(args[0]);
            for arg in &args[1..] {
                command.arg(*arg);
            }
            command.query::<redis::Value>(&mut connection)
        });
        match reply {
            Ok(value) => return value,
            Err(error) => {
                assert!(Instant::now() < deadline, "{args:?} on {port}: {error}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

#[test]
fn cluster_up_bootstraps_once_and_then_refuses_a_node_that_lost_its_data() {
    let dir = std::env::temp_dir().join(format!("ballot-cluster-up-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut ports = ports::Reservation::new();
    let base = free_base(&mut ports, 3);

    let first = Up::start(&dir, base, 1, 0);
    first.wait_for("cluster of 3 running");
    call(base, &["SET", "greeting", "hello"]);
    let output = first.stop();
    assert!(output.contains("created cluster"), "{output}");
    let id = std::fs::read_to_string(dir.join("cluster-id")).expect("the cluster id");
    assert!(output.contains(id.trim()), "{output}");

    // The disk of node 2 dies.
    std::fs::remove_dir_all(dir.join("node-2")).expect("wipe node 2");
    let second = Up::start(&dir, base, 2, 0);
    second.wait_for("node 2 exited");
    let reply = call(base + 1, &["GET", "greeting"]);
    assert_eq!(reply, redis::Value::BulkString(b"hello".to_vec()));
    let output = second.stop();
    assert!(
        !output.contains("created cluster"),
        "a second run created the cluster again:\n{output}"
    );
    assert!(
        output.contains("node 2 exited") && output.contains("holds no ballot data"),
        "the refusal was not reported:\n{output}"
    );
    assert!(
        !dir.join("node-2").exists(),
        "the lost node was bootstrapped again"
    );
    let _ = std::fs::remove_dir_all(&dir);
    for run in 1..=2 {
        let _ = std::fs::remove_file(dir.with_extension(format!("up-{run}.out")));
        let _ = std::fs::remove_file(dir.with_extension(format!("up-{run}.err")));
    }
}

/// A client that keeps writing distinct keys (`key-i` = `value-i`) while the cluster
/// changes under it, moving to the next node whenever one fails it, and remembers the
/// writes acknowledged: each must be readable at the end, whatever happened between.
struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked: std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Most writes one writer makes, and for how long: it stops by itself.
    const WRITES_MAX: usize = 100_000;
    const SECONDS_MAX: u64 = 120;

    fn start(ports: Vec<u16>) -> Writer {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let thread = {
            let (stop, acked) = (stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut target = 0;
                let mut connection = None;
                for i in 0..Self::WRITES_MAX {
                    if stop.load(std::sync::atomic::Ordering::Relaxed)
                        || started.elapsed() > Duration::from_secs(Self::SECONDS_MAX)
                    {
                        return;
                    }
                    if connection.is_none() {
                        connection = connect(ports[target % ports.len()]).ok();
                        if let Some(c) = &connection {
                            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                        }
                    }
                    let written = connection.as_mut().map(|c| {
                        redis::cmd("SET")
                            .arg(format!("key-{i}"))
                            .arg(format!("value-{i}"))
                            .query::<redis::Value>(c)
                    });
                    match written {
                        Some(Ok(redis::Value::Okay)) => acked.lock().unwrap().push(i),
                        // Not acknowledged (refused, timed out, connection lost): its
                        // outcome is unknown, and nothing is claimed of it.
                        _ => {
                            connection = None;
                            target += 1;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
            })
        };
        Writer {
            stop,
            acked,
            thread: Some(thread),
        }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits (at most 60 s) until `more` writes beyond the ones acknowledged now are.
    fn wait_for_more(&self, more: usize) {
        let target = self.acked() + more;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.acked() < target {
            assert!(
                Instant::now() < deadline,
                "the cluster acknowledged {} writes, not {target}, within 60 s",
                self.acked()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the writer; the writes it saw acknowledged.
    fn finish(mut self) -> Vec<usize> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the writer panicked");
        }
        std::mem::take(&mut *self.acked.lock().unwrap())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Runs `ballot member ARGS --addr 127.0.0.1:port` and returns its output; panics with
/// it unless it succeeds.
fn member(port: u16, args: &[&str]) -> String {
    let (succeeded, text) = run_member(port, args);
    assert!(succeeded, "ballot member {args:?}: {text}");
    text
}

/// Runs `ballot member ARGS --addr 127.0.0.1:port`, which must fail; returns what it said.
fn member_refused(port: u16, args: &[&str]) -> String {
    let (succeeded, text) = run_member(port, args);
    assert!(!succeeded, "ballot member {args:?} succeeded: {text}");
    text
}

/// Whether `ballot member ARGS --addr 127.0.0.1:port` succeeded, and its output.
fn run_member(port: u16, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ballot"))
        .arg("member")
        .args(args)
        .arg("--addr")
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .expect("run ballot member");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

/// One `INFO` field of the node at `port`.
fn info_field(port: u16, field: &str) -> String {
    let text = match call(port, &["INFO"]) {
        redis::Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).to_string(),
        other => panic!("INFO answered {other:?}"),
    };
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in INFO: {text}"))
        .trim()
        .to_string()
}

/// Waits (at most 10 s) until `INFO` field `field` of the node at `port` is `value`:
/// a node applies a change once it learns it was chosen, a heartbeat after the leader.
fn wait_for_field(port: u16, field: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = info_field(port, field);
        if now == value {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{field} of the node at {port} is {now}, not {value}, after 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every write in `acked` reads back its value from the node at `port`.
fn assert_readable(port: u16, acked: &[usize]) {
    let mut connection = connect(port).expect("connect to read back");
    for i in acked {
        let value: Option<String> = redis::cmd("GET")
            .arg(format!("key-{i}"))
            .query(&mut connection)
            .expect("GET");
        assert_eq!(
            value.as_deref(),
            Some(format!("value-{i}").as_str()),
            "acknowledged write {i} is not readable from port {port}"
        );
    }
}

/// The PID `cluster up` printed for node `id`.
fn pid_of(output: &str, id: usize) -> u32 {
    output
        .lines()
        .find(|line| {
            line.starts_with(&format!("node {id}: ")) || line.starts_with(&format!("spare {id}: "))
        })
        .and_then(|line| line.split("(pid ").nth(1))
        .and_then(|rest| rest.split(',').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid for node {id} in {output}"))
}

#[test]
fn a_dead_machine_is_replaced_by_a_spare_while_a_client_writes() {
    let dir = std::env::temp_dir().join(format!("ballot-replace-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut ports = ports::Reservation::new();
    let base = free_base(&mut ports, 4);
    let up = Up::start(&dir, base, 3, 1);
    up.wait_for("cluster of 3 running");
    let writer = Writer::start(vec![base, base + 2]);
    writer.wait_for_more(50);

    // Node 1's machine dies for good: killed, its disk gone.
    let pid = pid_of(&up.output(), 1);
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg(pid.to_string())
        .status();
    up.wait_for("node 1 exited");
    std::fs::remove_dir_all(dir.join("node-1")).expect("wipe node 1");
    // Started again with its old configuration, it refuses to vote with forgotten votes.
    let restarted = Command::new(env!("CARGO_BIN_EXE_ballot"))
        .arg("node")
        .arg("--config")
        .arg(dir.join("node-1.toml"))
        .output()
        .expect("run ballot node");
    let said = String::from_utf8_lossy(&restarted.stderr);
    assert!(!restarted.status.success(), "a wiped node started: {said}");
    assert!(said.contains("holds no ballot data"), "{said}");
    assert!(
        said.contains("ballot member replace"),
        "the refusal says what to do: {said}"
    );
    writer.wait_for_more(20);

    // The spare joins as a learner, asked of a follower with a Redis client: the
    // follower forwards the change to the leader (asked again, for at most 10 s, while
    // an election leaves it no leader to forward to). It catches up, and takes node 1's
    // place. While it is stopped, the leader has no word of its progress and refuses
    // to make it a voter, with the error code a client may retry on.
    let spare = pid_of(&up.output(), 3);
    let signal = |name: &str| {
        let _ = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(spare.to_string())
            .status();
    };
    signal("STOP");
    let deadline = Instant::now() + Duration::from_secs(10);
    let added = loop {
        let leader: u16 = info_field(base, "leader").parse().unwrap_or(u16::MAX);
        let follower = if leader == 0 { 2 } else { 0 };
        let answer = connect(base + follower)
            .and_then(|mut c| {
                redis::cmd("BALLOT.MEMBER")
                    .arg("ADD")
                    .arg("3")
                    .query::<String>(&mut c)
            })
            .map_err(|e| e.to_string());
        match answer {
            Ok(added) => break added,
            Err(error) if error.contains("no leader is known") && Instant::now() < deadline => {}
            other => panic!("node {follower} answered {other:?} to an add it should forward"),
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(added.contains("learners 3"), "{added}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Node 0 names the leader once it has heard from it.
        let leader = info_field(base, "leader").parse::<u16>().unwrap_or(0);
        let refused = connect(base + leader)
            .and_then(|mut c| {
                redis::cmd("BALLOT.MEMBER")
                    .arg(&["REPLACE", "1", "3"][..])
                    .query::<redis::Value>(&mut c)
            })
            .map_err(|e| (e.code().map(str::to_string), e.to_string()));
        match refused {
            Err((Some(code), said)) if code == "LAGGING" => {
                assert!(said.contains("learner 3"), "{said}");
                break;
            }
            other => assert!(
                Instant::now() < deadline,
                "a stopped learner's promotion was answered {other:?}, not refused as lagging"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    signal("CONT");
    writer.wait_for_more(20);
    let replaced = member(base, &["replace", "1", "--by", "3"]);
    assert!(replaced.contains("voters 0,2,3"), "{replaced}");
    writer.wait_for_more(50);
    let acked = writer.finish();
    assert!(
        acked.len() >= 140,
        "only {} writes acknowledged",
        acked.len()
    );

    wait_for_field(base + 3, "member", "voter");
    wait_for_field(base + 3, "retired", "1");
    assert_readable(base + 3, &acked);
    let listed = member(base + 3, &["list"]);
    assert!(listed.contains("removed"), "{listed}");
    up.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_cluster_grows_to_five_and_shrinks_to_three_removing_its_leader_under_load() {
    let dir = std::env::temp_dir().join(format!("ballot-grow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut ports = ports::Reservation::new();
    let base = free_base(&mut ports, 5);
    let up = Up::start(&dir, base, 4, 2);
    up.wait_for("cluster of 3 running");
    let writer = Writer::start((0..5).map(|i| base + i).collect());
    writer.wait_for_more(30);
    for step in [
        &["add", "3"][..],
        &["add", "4"],
        &["promote", "3"],
        &["promote", "4"],
    ] {
        member(base, step);
        writer.wait_for_more(10);
    }
    wait_for_field(base, "voters", "0,1,2,3,4");

    let leader: u16 = info_field(base + 3, "leader").parse().expect("a leader");
    let removed = member(base + 3, &["remove", &leader.to_string()]);
    assert!(!removed.contains(&format!("voters {leader}")), "{removed}");
    writer.wait_for_more(20);
    // Then one more voter, so that three remain.
    let survivor = (0..5u16)
        .find(|id| *id != leader && *id < 3)
        .expect("a first member");
    let other = (0..3u16)
        .find(|id| *id != leader && *id != survivor)
        .expect("a second one");
    member(base + 3, &["remove", &other.to_string()]);
    writer.wait_for_more(50);
    let acked = writer.finish();

    let mut voters: Vec<u16> = (0..5).filter(|id| *id != leader && *id != other).collect();
    voters.sort_unstable();
    let voters: Vec<String> = voters.iter().map(u16::to_string).collect();
    wait_for_field(base + 4, "voters", &voters.join(","));
    wait_for_field(base + leader, "member", "removed");
    for port in [base + survivor, base + 3, base + 4] {
        assert_readable(port, &acked);
    }
    up.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `ballot node` process the test started, stopped by PID when dropped.
struct NodeProcess(Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_dead_machine_is_replaced_by_a_new_one_at_an_address_the_log_records() {
    let dir = std::env::temp_dir().join(format!("ballot-join-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut ports = ports::Reservation::new();
    let base = free_base(&mut ports, 3);
    let new_machine = ports.claim(2).expect("two free ports");
    let (peer, client) = (new_machine[0], new_machine[1]);
    let up = Up::start(&dir, base, 5, 0);
    up.wait_for("cluster of 3 running");
    let writer = Writer::start(vec![base, base + 2]);
    writer.wait_for_more(50);

    // Node 1's machine dies for good; no spare stands by. A new machine, at addresses
    // no configuration file lists, is added: the cluster gives it the next id, 3, and
    // writes its node.toml from a member's.
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg(pid_of(&up.output(), 1).to_string())
        .status();
    up.wait_for("node 1 exited");
    let config = dir.join("node-3.toml");
    let added = member(
        base,
        &[
            "add",
            "--peer",
            &peer.to_string(),
            "--client",
            &client.to_string(),
            "--template",
            &dir.join("node-0.toml").display().to_string(),
            "--write-config",
            &config.display().to_string(),
            "--data-dir",
            &dir.join("node-3").display().to_string(),
        ],
    );
    assert!(added.contains("learners 3 id 3"), "{added}");
    // The same address again is refused: it is node 3's now.
    let unused = format!("127.0.0.1:{}", base + 99);
    let said = member_refused(
        base,
        &["add", "--peer", &peer.to_string(), "--client", &unused],
    );
    assert!(
        said.contains("node 3 already has one of these addresses"),
        "{said}"
    );
    // And so is a bootstrap node's client address.
    let node_0 = format!("127.0.0.1:{base}");
    let said = member_refused(base, &["add", "--peer", &unused, "--client", &node_0]);
    assert!(
        said.contains("node 0 already has one of these addresses"),
        "{said}"
    );
    let log = std::fs::File::create(dir.join("node-3.log")).expect("log file");
    let _node = NodeProcess(
        Command::new(env!("CARGO_BIN_EXE_ballot"))
            .arg("node")
            .arg("--config")
            .arg(&config)
            .arg("--bootstrap")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start the new machine"),
    );
    let replaced = member(base, &["replace", "1", "--by", "3"]);
    assert!(replaced.contains("voters 0,2,3"), "{replaced}");
    writer.wait_for_more(20);
    // The new machine leads: the writer's requests to nodes 0 and 2 reach it through
    // their sessions, whose leader hints name an id past the bootstrap address book.
    member(base, &["transfer-leader", "3"]);
    wait_for_field(base, "leader", "3");
    assert_eq!(info_field(base + 2, "leader_addr"), client.to_string());
    writer.wait_for_more(50);
    let acked = writer.finish();

    // Every member finds the new machine through the log: INFO lists its addresses,
    // and every acknowledged write reads back from it.
    let peers = info_field(base + 2, "peers");
    assert!(peers.ends_with(&format!(",{peer}")), "{peers}");
    wait_for_field(client.port(), "member", "voter");
    wait_for_field(client.port(), "retired", "1");
    assert_readable(client.port(), &acked);
    let listed = member(client.port(), &["list"]);
    assert!(listed.contains(&client.to_string()), "{listed}");
    up.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
