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
    fn start(dir: &Path, base: u16, run: usize) -> Up {
        let stdout = dir.with_extension(format!("up-{run}.out"));
        let stderr = dir.with_extension(format!("up-{run}.err"));
        let child = Command::new(env!("CARGO_BIN_EXE_ballot"))
            .args(["cluster", "up", "--nodes", "3", "--base-port"])
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
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one command to `port`, retrying (for at most 20 s) until a leader answers.
fn call(port: u16, args: &[&str]) -> redis::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(2)))
            .and_then(|mut connection| {
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

    let first = Up::start(&dir, base, 1);
    first.wait_for("cluster of 3 running");
    call(base, &["SET", "greeting", "hello"]);
    let output = first.stop();
    assert!(output.contains("created cluster"), "{output}");
    let id = std::fs::read_to_string(dir.join("cluster-id")).expect("the cluster id");
    assert!(output.contains(id.trim()), "{output}");

    // The disk of node 2 dies.
    std::fs::remove_dir_all(dir.join("node-2")).expect("wipe node 2");
    let second = Up::start(&dir, base, 2);
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
