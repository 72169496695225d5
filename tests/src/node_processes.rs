//! A cluster of real `ballot node` processes on loopback, each reaching its peers
//! through the [`crate::fault_proxy`], that the nemesis kills, pauses and restarts by
//! PID. Every process started here is killed when the cluster is dropped.

use crate::fault_proxy::Proxies;
use crate::ports::Reservation;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The cluster secret the harness configures.
const SECRET: &str = "nemesis-cluster-secret-0123456789";
/// The cluster id the harness configures.
const CLUSTER_ID: &str = "000000000000000000000000000e3e51";

/// A process's state as the nemesis left it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessState {
    /// Running.
    Up,
    /// SIGSTOPped.
    Paused,
    /// Killed (or never started).
    Down,
}

/// The processes of one cluster.
pub struct NodeProcesses {
    binary: PathBuf,
    dir: PathBuf,
    /// Where clients reach each node.
    pub clients: Vec<SocketAddr>,
    children: Vec<Option<Child>>,
    paused: Vec<bool>,
    /// Nodes started before: only a node's first start bootstraps it.
    bootstrapped: Vec<bool>,
    /// Nodes whose machine is gone for good ([`NodeProcesses::retire`]): never started again.
    retired: Vec<bool>,
    /// Holds the client ports for as long as the nodes may bind them.
    _ports: Reservation,
}

impl NodeProcesses {
    /// Writes each node's configuration into `dir` (peers through `proxies`, traces
    /// into `dir/traces`, `extra` lines appended) without starting anything.
    pub fn configure(
        binary: &Path,
        dir: &Path,
        peers: &[SocketAddr],
        proxies: &Proxies,
        extra: &str,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let nodes = peers.len();
        let mut ports = Reservation::new();
        let clients = ports.claim(nodes)?;
        let list = |addrs: &[SocketAddr]| {
            addrs
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for id in 0..nodes {
            let mut text = String::new();
            let _ = writeln!(text, "cluster_id = \"{CLUSTER_ID}\"");
            let _ = writeln!(text, "id = {id}");
            let _ = writeln!(
                text,
                "data_dir = \"{}\"",
                dir.join(format!("node-{id}")).display()
            );
            let _ = writeln!(text, "peers = [{}]", list(&proxies.peers_for(id, peers)));
            let _ = writeln!(text, "clients = [{}]", list(&clients));
            let _ = writeln!(text, "secret = \"{SECRET}\"");
            let _ = writeln!(text, "trace_dir = \"{}\"", dir.join("traces").display());
            text.push_str(extra);
            std::fs::write(dir.join(format!("node-{id}.toml")), text)?;
        }
        Ok(NodeProcesses {
            binary: binary.to_path_buf(),
            dir: dir.to_path_buf(),
            clients,
            children: (0..nodes).map(|_| None).collect(),
            paused: vec![false; nodes],
            bootstrapped: vec![false; nodes],
            retired: vec![false; nodes],
            _ports: ports,
        })
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// Whether the cluster has no nodes.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// The directory traces are recorded in.
    pub fn trace_dir(&self) -> PathBuf {
        self.dir.join("traces")
    }

    /// Starts node `id` (logging to `dir/node-<id>.log`).
    pub fn start(&mut self, id: usize) -> std::io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node-{id}.log")))?;
        let mut command = Command::new(&self.binary);
        command
            .args(["node", "--config"])
            .arg(self.dir.join(format!("node-{id}.toml")));
        if !self.bootstrapped[id] {
            command.arg("--bootstrap");
        }
        let child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.children[id] = Some(child);
        self.paused[id] = false;
        self.bootstrapped[id] = true;
        Ok(())
    }

    /// Node `id`'s machine is lost for good: SIGKILLed, its data directory removed, and
    /// never started again (not even by [`NodeProcesses::heal`]).
    pub fn retire(&mut self, id: usize) {
        self.kill(id);
        self.retired[id] = true;
        let _ = std::fs::remove_dir_all(self.dir.join(format!("node-{id}")));
    }

    /// SIGKILLs node `id` and reaps it.
    pub fn kill(&mut self, id: usize) {
        if let Some(mut child) = self.children[id].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused[id] = false;
    }

    /// SIGSTOPs (or SIGCONTs) node `id`.
    pub fn pause(&mut self, id: usize, pause: bool) {
        if let Some(child) = &self.children[id] {
            let signal = if pause { libc::SIGSTOP } else { libc::SIGCONT };
            // SAFETY: `kill(2)` on the PID of a child we spawned and have not reaped.
            unsafe {
                libc::kill(child.id() as libc::pid_t, signal);
            }
            self.paused[id] = pause;
        }
    }

    /// What the nemesis left node `id` in.
    pub fn state(&mut self, id: usize) -> ProcessState {
        match &mut self.children[id] {
            None => ProcessState::Down,
            Some(child) => match child.try_wait() {
                Ok(Some(_)) => ProcessState::Down,
                _ if self.paused[id] => ProcessState::Paused,
                _ => ProcessState::Up,
            },
        }
    }

    /// Node `id` exited by itself (a crash, not the nemesis): its exit status.
    pub fn exited(&mut self, id: usize) -> Option<std::process::ExitStatus> {
        self.children[id]
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
    }

    /// Resumes paused nodes and starts killed ones: every node up.
    pub fn heal(&mut self) -> std::io::Result<()> {
        for id in 0..self.len() {
            match self.state(id) {
                ProcessState::Paused => self.pause(id, false),
                ProcessState::Down if self.retired[id] => {}
                ProcessState::Down => {
                    self.kill(id);
                    self.start(id)?;
                }
                ProcessState::Up => {}
            }
        }
        Ok(())
    }

    /// SIGTERMs every node and waits (up to 10 s each) for a clean exit; a node that
    /// does not stop is killed. Returns the nodes that did not exit cleanly.
    pub fn stop_all(&mut self) -> Vec<usize> {
        let mut unclean = Vec::new();
        for id in 0..self.len() {
            self.pause(id, false);
            let Some(mut child) = self.children[id].take() else {
                continue;
            };
            // SAFETY: as in `pause`.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let clean = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break status.success(),
                    Ok(None) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break false;
                    }
                }
            };
            if !clean {
                unclean.push(id);
            }
        }
        unclean
    }

    /// The first line of node `id`'s log that reports a panic, if any: a panic in one
    /// of its tasks (a client's connection, say) is caught by the runtime and does
    /// not end the process, so only the log tells.
    pub fn log_panic(&self, id: usize) -> Option<String> {
        let text =
            std::fs::read_to_string(self.dir.join(format!("node-{id}.log"))).unwrap_or_default();
        text.lines()
            .find(|line| line.contains("panicked at"))
            .map(str::to_string)
    }

    /// The tail of node `id`'s log, for reports.
    pub fn log_tail(&self, id: usize, lines: usize) -> String {
        let text =
            std::fs::read_to_string(self.dir.join(format!("node-{id}.log"))).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for NodeProcesses {
    fn drop(&mut self) {
        for id in 0..self.len() {
            self.kill(id);
        }
    }
}
