//! `ballot`: run a replicated key-value node, a local cluster, or a benchmark.

use ballot_model::TransferRefusal;
use ballot_node::bench::{elections, leader_and_follower, run_load, Load};
use ballot_node::client::Client;
use ballot_node::identity::ClusterId;
use ballot_node::kv::KvStore;
use ballot_node::node::{Node, NodeConfig, NodeError};
use ballot_node::resp::Value;
use ballot_node::server::{self, ServerInfo};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// A replicated key-value store on verified Multi-Paxos, speaking the Redis protocol.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one node (logs go to stderr; level from RUST_LOG, default info).
    Node(NodeArgs),
    /// Start or inspect a local cluster on loopback.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// The cluster's members, asked of any node (in the spirit of `etcdctl member`).
    #[command(subcommand)]
    Member(MemberCommand),
    /// Closed-loop load over RESP: prints ops/s, p50/p99/p999 latency, and the elections
    /// the nodes in `--addr` started meanwhile (a busy leader should cause none).
    Bench(BenchArgs),
}

#[derive(clap::Args, Debug)]
struct NodeArgs {
    /// The node's TOML configuration (see README).
    #[arg(long)]
    config: PathBuf,
    /// Override the configured node id.
    #[arg(long)]
    id: Option<usize>,
    /// Override the configured data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// This is the first start of a member of a new cluster: an empty data directory
    /// becomes this member's. Without it an empty directory is refused, since it is
    /// also what a lost disk looks like (README: "A node lost its disk"). Ignored once
    /// the directory is this member's; `cluster up` passes it when it creates a cluster.
    #[arg(long)]
    bootstrap: bool,
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Start N nodes as child processes; stop them all on Ctrl-C.
    Up {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Directory for configurations, logs and data (kept between runs).
        #[arg(long, default_value = "ballot-cluster")]
        dir: PathBuf,
        /// First client port; node i listens for clients on base+i and for peers on base+100+i.
        #[arg(long, default_value_t = 7000)]
        base_port: u16,
        /// Record conformance traces in DIR/traces (check them with
        /// `ballot-check conform DIR/traces`).
        #[arg(long)]
        trace: bool,
        /// Machines standing by, started as well, that are no members until added
        /// (`ballot member add`): what replaces a failed node or grows the cluster. They
        /// take the ids after the members'.
        #[arg(long, default_value_t = 0)]
        spares: usize,
    },
    /// Show each node's role, leader, ballot and indexes.
    Status {
        /// The cluster directory written by `cluster up`.
        #[arg(long, default_value = "ballot-cluster")]
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum MemberCommand {
    /// List every node of the address book: id, client and peer address, what it is in
    /// the membership the log says (voter, learner, removed, or spare: no member yet),
    /// its role, indexes, and how far it lags behind the leader's commit index.
    List {
        /// Any member's client address.
        #[arg(long, default_value = "127.0.0.1:7000")]
        addr: String,
    },
    /// Add a learner: node ID (a spare of the address book, running), or a new machine
    /// at --peer and --client, which the cluster gives the next id and whose addresses
    /// enter the log. A learner receives the log and snapshots and catches up, and
    /// never votes until promoted. For a new machine, --write-config writes its
    /// node.toml (from --template, any member's), to start it with `ballot node
    /// --config FILE --bootstrap`.
    #[command(group(clap::ArgGroup::new("who").required(true).args(["id", "peer"])))]
    Add {
        /// The spare to add.
        id: Option<usize>,
        /// The new machine's peer address (ip:port).
        #[arg(long, requires = "client")]
        peer: Option<SocketAddr>,
        /// The new machine's client (RESP) address (ip:port).
        #[arg(long, requires = "peer")]
        client: Option<SocketAddr>,
        /// Where to write the new machine's node.toml: the template's, with the id the
        /// cluster gave it, its addresses, and its own data directory.
        #[arg(long, requires_all = ["peer", "template", "data_dir"])]
        write_config: Option<PathBuf>,
        /// Any member's node.toml: the cluster id, secret, bootstrap address book and
        /// settings the new machine shares with every member.
        #[arg(long)]
        template: Option<PathBuf>,
        /// The new machine's data directory, for --write-config.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Any member's client address: the leader is found through it.
        #[arg(long, default_value = "127.0.0.1:7000")]
        addr: String,
    },
    /// Make learner ID a voter, once it has caught up (refused while it lags).
    Promote {
        /// The learner to promote.
        id: usize,
        #[command(flatten)]
        catch_up: CatchUpArgs,
        /// Any member's client address: the leader is found through it.
        #[arg(long, default_value = "127.0.0.1:7000")]
        addr: String,
    },
    /// Remove member ID for good (the leader included: it steps down, and a new leader
    /// is elected among the rest). Its id is never a member again; stop its process.
    Remove {
        /// The member to remove.
        id: usize,
        /// Any member's client address: the leader is found through it.
        #[arg(long, default_value = "127.0.0.1:7000")]
        addr: String,
    },
    /// Put learner NEW in voter ID's place in one change (promote and remove at once,
    /// never an even number of voters between): how a failed machine is replaced.
    Replace {
        /// The voter that leaves (a failed machine, say).
        id: usize,
        /// The caught-up learner that takes its place.
        #[arg(long)]
        by: usize,
        #[command(flatten)]
        catch_up: CatchUpArgs,
        /// Any member's client address: the leader is found through it.
        #[arg(long, default_value = "127.0.0.1:7000")]
        addr: String,
    },
    /// Ask the leader to hand its leadership to member ID (or, without ID, to a member
    /// of its choice) without an election timeout; answers once the new leader leads.
    /// A leader stopped with SIGTERM does this by itself.
    TransferLeader {
        /// The member to take over.
        id: Option<usize>,
        /// Any member's client address: the leader is found through it.
        #[arg(long, default_value = "127.0.0.1:7000")]
        addr: String,
    },
}

/// How long a learner may take to catch up before it is promoted.
#[derive(clap::Args, Debug)]
struct CatchUpArgs {
    /// How long to keep asking while the leader refuses because the learner lags (by
    /// more than the leader's `promote_lag_max` slots, 1000 by default: a voter far
    /// behind would slow every commit it is needed for) before giving up.
    #[arg(long, default_value_t = 60)]
    catch_up_seconds: u64,
}

#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// Client addresses to spread connections over (comma-separated).
    #[arg(long, default_value = "127.0.0.1:7000", value_delimiter = ',')]
    addr: Vec<String>,
    /// Concurrent closed-loop clients; a list (`1,16,64`) runs one load per count.
    #[arg(long, default_value = "64", value_delimiter = ',')]
    clients: Vec<usize>,
    /// How long to run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Bytes per value written.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Fraction of operations that are GETs (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0)]
    read_ratio: f64,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// At each client count, load the leader, then a follower (found among `--addr`:
    /// pass every node's address), and print both rows and the follower/leader ratio.
    #[arg(long)]
    leader_vs_follower: bool,
}

/// A node's configuration file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    /// The cluster's identity (32 hex digits), the same on every node; peers of
    /// another cluster are refused.
    cluster_id: ClusterId,
    /// This node's index into `peers`, or for a machine added at an address (`ballot
    /// member add --peer ... --client ...`), the id the cluster gave it.
    id: usize,
    /// Where the write-ahead log lives.
    data_dir: PathBuf,
    /// The bootstrap address book: every node's peer address when the cluster was
    /// created, by id; the same on every node. The log holds the addresses of machines
    /// added since.
    peers: Vec<SocketAddr>,
    /// The bootstrap address book's client (RESP) addresses, by id.
    clients: Vec<SocketAddr>,
    /// Where this node listens for peers, if its id is past `peers` (a machine added
    /// at an address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    peer_address: Option<SocketAddr>,
    /// Where this node listens for clients, if its id is past `clients`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_address: Option<SocketAddr>,
    /// The ids of the nodes that are learners (receive the log, never vote); the same
    /// list on every node. None by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    learners: Vec<usize>,
    /// The ids of the nodes that are no members at bootstrap: machines standing by,
    /// for `ballot member add`; the same list on every node. None by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    spares: Vec<usize>,
    /// The cluster secret (or `secret_file`).
    #[serde(default)]
    secret: Option<String>,
    /// A file holding the cluster secret.
    #[serde(default)]
    secret_file: Option<PathBuf>,
    #[serde(default = "default_election_min")]
    election_timeout_min_ms: u64,
    #[serde(default = "default_election_max")]
    election_timeout_max_ms: u64,
    #[serde(default = "default_heartbeat")]
    heartbeat_ms: u64,
    /// Where to serve Prometheus metrics (`GET /metrics`); none if absent.
    #[serde(default)]
    metrics: Option<SocketAddr>,
    /// Most client requests per log slot (batching); default 512.
    #[serde(default)]
    max_batch: Option<usize>,
    /// Most slots in flight at once (pipelining); default 32.
    #[serde(default)]
    pipeline_depth: Option<usize>,
    /// Most slots re-sent to a lagging peer per round trip (catching up from the
    /// log); default 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    catch_up_slots: Option<usize>,
    /// Log size, in bytes, past which the node snapshots and compacts; default 64 MiB.
    #[serde(default)]
    snapshot_log_bytes: Option<u64>,
    /// Most bytes of commands per log slot; default (and most) 8 MiB.
    #[serde(default)]
    batch_bytes_max: Option<usize>,
    /// Largest snapshot message streamed to or assembled from a peer; default 8 GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    snapshot_bytes_max: Option<u64>,
    /// Most client connections served at once; default 10000.
    #[serde(default)]
    connections_max: Option<usize>,
    /// Most requests waiting for an answer on this node; default 65536.
    #[serde(default)]
    waiters_max: Option<usize>,
    /// Most client sessions the replicated state remembers (the same on every node,
    /// and at least waiters_max times the cluster size); default 1048576.
    #[serde(default)]
    sessions_max: Option<usize>,
    /// Most slots a learner may trail the leader's commit index and still be promoted
    /// to voter (refused until it catches up); default 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    promote_lag_max: Option<u64>,
    /// Record a conformance trace into this directory (`ballot-check conform DIR`).
    #[serde(default)]
    trace_dir: Option<PathBuf>,
    /// A deliberately broken protocol variant (test builds with `mutants` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mutant: Option<String>,
}

fn default_election_min() -> u64 {
    150
}
fn default_election_max() -> u64 {
    300
}
fn default_heartbeat() -> u64 {
    40
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Node(args) => run_node(args).await,
            Command::Cluster(ClusterCommand::Up {
                nodes,
                dir,
                base_port,
                trace,
                spares,
            }) => cluster_up(nodes, spares, &dir, base_port, trace).await,
            Command::Cluster(ClusterCommand::Status { dir }) => cluster_status(&dir).await,
            Command::Member(MemberCommand::List { addr }) => member_list(&addr).await,
            Command::Member(MemberCommand::TransferLeader { id, addr }) => {
                transfer_leader(&addr, id).await
            }
            Command::Member(MemberCommand::Add {
                id: Some(id), addr, ..
            }) => change_members(&addr, &["ADD".into(), id.to_string()]).await,
            Command::Member(MemberCommand::Add {
                peer: Some(peer),
                client: Some(client),
                write_config,
                template,
                data_dir,
                addr,
                ..
            }) => {
                let args = ["ADD".into(), peer.to_string(), client.to_string()];
                let reply = ask_leader(&addr, &members_command(&args)).await?;
                println!("{reply}");
                match (write_config, template, data_dir) {
                    (Some(out), Some(template), Some(data_dir)) => {
                        let id = added_id(&reply)?;
                        write_joiner_config(&template, &out, id, (peer, client), data_dir)
                    }
                    _ => Ok(()),
                }
            }
            Command::Member(MemberCommand::Add { .. }) => {
                Err("name a spare's id, or a new machine's --peer and --client".into())
            }
            Command::Member(MemberCommand::Promote { id, catch_up, addr }) => {
                let args = ["PROMOTE".into(), id.to_string()];
                promote_once_caught_up(&addr, &args, &catch_up).await
            }
            Command::Member(MemberCommand::Remove { id, addr }) => {
                change_members(&addr, &["REMOVE".into(), id.to_string()]).await
            }
            Command::Member(MemberCommand::Replace {
                id,
                by,
                catch_up,
                addr,
            }) => {
                let args = ["REPLACE".into(), id.to_string(), by.to_string()];
                promote_once_caught_up(&addr, &args, &catch_up).await
            }
            Command::Bench(args) => bench(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn read_node_file(path: &Path) -> Result<NodeFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("invalid configuration {}: {e}", path.display()))
}

async fn run_node(args: NodeArgs) -> Result<(), String> {
    let mut file = read_node_file(&args.config)?;
    if let Some(id) = args.id {
        file.id = id;
    }
    if let Some(dir) = args.data_dir {
        file.data_dir = dir;
    }
    let secret = match (&file.secret, &file.secret_file) {
        (Some(secret), None) => secret.clone().into_bytes(),
        (None, Some(path)) => std::fs::read(path)
            .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?,
        _ => return Err("set exactly one of `secret` and `secret_file`".into()),
    };
    if secret.len() < 16 {
        return Err("the cluster secret must be at least 16 bytes".into());
    }
    if file.clients.len() != file.peers.len() {
        return Err("`clients` and `peers` must list the same nodes".into());
    }
    let client_addr = match (file.clients.get(file.id), file.client_address) {
        (Some(addr), None) => *addr,
        (None, Some(addr)) => addr,
        (Some(_), Some(_)) => {
            return Err(format!(
                "node {} is in the bootstrap address book, so it takes no `client_address`",
                file.id
            ))
        }
        (None, None) => {
            return Err(format!(
                "node id {} has no entry in `clients` and no `client_address`",
                file.id
            ))
        }
    };
    let mut config = NodeConfig::new(
        file.cluster_id,
        file.id,
        file.peers.clone(),
        file.data_dir.clone(),
        secret,
    );
    config.bootstrap = args.bootstrap;
    config.peer_address = file.peer_address;
    config.clients = file.clients.clone();
    config.learners = file.learners.clone();
    config.spares = file.spares.clone();
    config.election_timeout_min = Duration::from_millis(file.election_timeout_min_ms);
    config.election_timeout_max = Duration::from_millis(file.election_timeout_max_ms);
    config.heartbeat_interval = Duration::from_millis(file.heartbeat_ms);
    if let Some(max_batch) = file.max_batch {
        config.max_batch = max_batch.max(1);
    }
    if let Some(batch_bytes_max) = file.batch_bytes_max {
        config.batch_bytes_max = batch_bytes_max;
    }
    if let Some(waiters_max) = file.waiters_max {
        config.waiters_max = waiters_max.max(1);
    }
    if let Some(sessions_max) = file.sessions_max {
        config.sessions_max = sessions_max;
    }
    if let Some(promote_lag_max) = file.promote_lag_max {
        config.promote_lag_max = promote_lag_max;
    }
    if let Some(snapshot_log_bytes) = file.snapshot_log_bytes {
        config.snapshot_log_bytes = snapshot_log_bytes;
    }
    if let Some(snapshot_bytes_max) = file.snapshot_bytes_max {
        config.snapshot_bytes_max = snapshot_bytes_max;
    }
    config.trace_dir = file.trace_dir.clone();
    config.mutant = file.mutant.clone();
    if let Some(pipeline_depth) = file.pipeline_depth {
        config.pipeline_depth = pipeline_depth.max(1);
    }
    if let Some(catch_up_slots) = file.catch_up_slots {
        config.catch_up_slots = catch_up_slots;
    }
    let node = Node::start(config, KvStore::default())
        .await
        .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(client_addr)
        .await
        .map_err(|e| format!("cannot listen for clients on {client_addr}: {e}"))?;
    let peer_addr = file.peers.get(file.id).copied().or(file.peer_address);
    tracing::info!(id = file.id, %client_addr, peer_addr = ?peer_addr, "node serving");
    let info = ServerInfo {
        client_addrs: file.clients.iter().map(|a| a.to_string()).collect(),
        peer_addrs: file.peers.iter().map(|a| a.to_string()).collect(),
    };
    let connections_max = file
        .connections_max
        .unwrap_or(ballot_node::limits::CONNECTIONS_MAX)
        .max(1);
    let server = tokio::spawn(server::serve(listener, node.clone(), info, connections_max));
    let metrics = match file.metrics {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
            tracing::info!(%addr, "metrics at http://{addr}/metrics");
            let node = node.clone();
            Some(tokio::spawn(ballot_node::metrics::serve(
                listener,
                move || ballot_node::metrics::render(&node.status(), node.dropped_frames()),
            )))
        }
        None => None,
    };
    let failure = tokio::select! {
        _ = wait_for_signal() => None,
        reason = node.storage_failed() => Some(reason),
    };
    match &failure {
        None => {
            // A leader that stops hands over first, so that a rolling restart costs
            // clients a round trip, not an election timeout. Clients are still served
            // meanwhile (their requests follow the new leader).
            match node.transfer_leadership(None).await {
                Ok(leader) => tracing::info!(leader, "handed leadership over"),
                // A follower has nothing to hand over.
                Err(NodeError::TransferRefused(TransferRefusal::NotLeader { .. })) => {}
                Err(error) => tracing::warn!(%error, "could not hand leadership over"),
            }
            tracing::info!("shutting down");
        }
        Some(reason) => {
            tracing::error!(%reason, "storage failed: exiting so that a supervisor restarts the node; it recovers from what its log made durable")
        }
    }
    server.abort();
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    node.shutdown().await;
    match failure {
        None => Ok(()),
        Some(reason) => Err(format!("storage failed: {reason}")),
    }
}

/// Waits for Ctrl-C or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn random_secret() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..32)
        .map(|_| format!("{:x}", rng.random_range(0..16u8)))
        .collect()
}

async fn cluster_up(
    members: usize,
    spares: usize,
    dir: &Path,
    base_port: u16,
    trace: bool,
) -> Result<(), String> {
    let nodes = members + spares;
    if members == 0 || nodes > 99 {
        return Err("--nodes must be at least 1, and --nodes plus --spares at most 99".into());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let secret_path = dir.join("secret");
    if !secret_path.exists() {
        std::fs::write(&secret_path, random_secret())
            .map_err(|e| format!("cannot write {}: {e}", secret_path.display()))?;
    }
    // The cluster id file marks a cluster that exists: only when this run creates it
    // do the nodes bootstrap, so a node whose directory was lost since is refused
    // rather than rejoining with forgotten votes.
    let (cluster_id, bootstrap) = cluster_identity(dir)?;
    let addr = |port: u16| -> SocketAddr { SocketAddr::from(([127, 0, 0, 1], port)) };
    let clients: Vec<SocketAddr> = (0..nodes).map(|i| addr(base_port + i as u16)).collect();
    let peers: Vec<SocketAddr> = (0..nodes)
        .map(|i| addr(base_port + 100 + i as u16))
        .collect();
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let mut children = Vec::new();
    for id in 0..nodes {
        let file = NodeFile {
            cluster_id,
            id,
            data_dir: dir.join(format!("node-{id}")),
            peers: peers.clone(),
            clients: clients.clone(),
            peer_address: None,
            client_address: None,
            learners: Vec::new(),
            spares: (members..nodes).collect(),
            secret: None,
            secret_file: Some(secret_path.clone()),
            election_timeout_min_ms: default_election_min(),
            election_timeout_max_ms: default_election_max(),
            heartbeat_ms: default_heartbeat(),
            metrics: Some(addr(base_port + 200 + id as u16)),
            max_batch: None,
            pipeline_depth: None,
            catch_up_slots: None,
            snapshot_log_bytes: None,
            snapshot_bytes_max: None,
            batch_bytes_max: None,
            connections_max: None,
            waiters_max: None,
            sessions_max: None,
            promote_lag_max: None,
            trace_dir: trace.then(|| dir.join("traces")),
            mutant: None,
        };
        let config_path = dir.join(format!("node-{id}.toml"));
        let text = toml::to_string(&file).map_err(|e| e.to_string())?;
        std::fs::write(&config_path, text)
            .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
        let log_path = dir.join(format!("node-{id}.log"));
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let mut command = tokio::process::Command::new(&exe);
        command.arg("node").arg("--config").arg(&config_path);
        if bootstrap {
            command.arg("--bootstrap");
        }
        stop_with_parent(&mut command);
        let child = command
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start node {id}: {e}"))?;
        println!(
            "{} {id}: clients {} metrics http://{}/metrics (pid {}, log {})",
            if id < members { "node" } else { "spare" },
            clients[id],
            addr(base_port + 200 + id as u16),
            child.id().unwrap_or(0),
            log_path.display()
        );
        children.push((child, log_path));
    }
    let listing = clients
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("clients"), listing + "\n").map_err(|e| e.to_string())?;
    if bootstrap {
        println!("created cluster {cluster_id} in {}", dir.display());
    }
    println!(
        "cluster of {members} running; try `redis-cli -p {base_port} set k v`; Ctrl-C stops it"
    );
    report_exits_until_signal(&mut children).await;
    println!("stopping");
    let mut children: Vec<_> = children.into_iter().map(|(child, _)| child).collect();
    for child in &mut children {
        if let Some(pid) = child.id() {
            // SIGTERM lets the node flush its log and exit cleanly.
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
    }
    for (id, child) in children.iter_mut().enumerate() {
        match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("node {id} did not stop within 5 s; killing it");
                let _ = child.kill().await;
            }
        }
    }
    Ok(())
}

/// Makes the node `command` starts receive SIGTERM when this process dies, however it
/// dies: a `cluster up` that is SIGKILLed cannot stop its nodes itself, and they would
/// go on serving, unowned. (Linux only; elsewhere Ctrl-C and SIGTERM still stop them.)
fn stop_with_parent(command: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    {
        // The signal is sent when the thread that forked exits: `cluster up` forks from
        // the main thread (the runtime's `block_on`), which lives as long as the process.
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed: prctl is a plain system call.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// The cluster id recorded in `dir`, and whether this run creates the cluster (no id
/// was recorded yet: one is chosen and written).
fn cluster_identity(dir: &Path) -> Result<(ClusterId, bool), String> {
    let path = dir.join("cluster-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .map(|id| (id, false))
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = ClusterId::random();
            std::fs::write(&path, format!("{id}\n"))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok((id, true))
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Waits for Ctrl-C or SIGTERM, saying meanwhile when a node exits by itself and why
/// (the last line of its log), since the cluster keeps serving without it.
async fn report_exits_until_signal(children: &mut [(tokio::process::Child, PathBuf)]) {
    let mut reported = vec![false; children.len()];
    let signal = wait_for_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        for (id, (child, log)) in children.iter_mut().enumerate() {
            if reported[id] {
                continue;
            }
            if let Ok(Some(status)) = child.try_wait() {
                reported[id] = true;
                let text = std::fs::read_to_string(&*log).unwrap_or_default();
                let last = text.lines().last().unwrap_or("(empty log)");
                eprintln!("node {id} exited ({status}): {last}");
            }
        }
    }
}

async fn cluster_status(dir: &Path) -> Result<(), String> {
    let path = dir.join("clients");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read {} (start the cluster with `ballot cluster up`): {e}",
            path.display()
        )
    })?;
    for (id, addr) in text.lines().filter(|l| !l.is_empty()).enumerate() {
        let info = match Client::connect(addr).await {
            Ok(mut client) => client.info().await,
            Err(e) => {
                println!("node {id} {addr}: down ({e})");
                continue;
            }
        };
        let info = match info {
            Ok(info) => info,
            Err(e) => {
                println!("node {id} {addr}: no INFO ({e})");
                continue;
            }
        };
        let field = |name: &str| info.get(name).map_or("?", String::as_str).to_string();
        println!(
            "node {id} {addr}: {} leader={} ballot={} commit={} applied={}",
            field("role"),
            field("leader"),
            field("ballot"),
            field("commit_index"),
            field("applied_index")
        );
    }
    Ok(())
}

/// `INFO` of the node at `addr`, or why not.
async fn node_info(addr: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut client = tokio::time::timeout(Duration::from_secs(2), Client::connect(addr))
        .await
        .map_err(|_| "no answer within 2 s".to_string())?
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(2), client.info())
        .await
        .map_err(|_| "no INFO within 2 s".to_string())?
        .map_err(|e| e.to_string())
}

/// A comma-separated `INFO` field as a list (empty if absent or empty).
fn info_list(info: &std::collections::BTreeMap<String, String>, field: &str) -> Vec<String> {
    info.get(field)
        .filter(|v| !v.is_empty())
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

async fn member_list(addr: &str) -> Result<(), String> {
    let info = node_info(addr)
        .await
        .map_err(|e| format!("cannot ask {addr}: {e}"))?;
    let (clients, peers) = (info_list(&info, "clients"), info_list(&info, "peers"));
    let (voters, learners, retired) = (
        info_list(&info, "voters"),
        info_list(&info, "learners"),
        info_list(&info, "retired"),
    );
    let member = |id: usize| {
        let id = id.to_string();
        if voters.contains(&id) {
            "voter"
        } else if learners.contains(&id) {
            "learner"
        } else if retired.contains(&id) {
            "removed"
        } else {
            "spare"
        }
    };
    let mut rows = Vec::new();
    for (id, client) in clients.iter().enumerate() {
        rows.push((id, client, node_info(client).await));
    }
    let leader_commit: Option<u64> = rows.iter().find_map(|(_, _, info)| {
        let info = info.as_ref().ok()?;
        (info.get("role")? == "leader").then(|| info.get("commit_index")?.parse().ok())?
    });
    println!(
        "membership epoch {} (as node {} applied it)",
        info.get("epoch").map_or("?", String::as_str),
        info.get("node_id").map_or("?", String::as_str)
    );
    println!(
        "id  client                 peer                   member   role       commit   applied  lag"
    );
    for (id, client, info) in rows {
        let peer = peers.get(id).map_or("?", String::as_str);
        let member = member(id);
        match info {
            Ok(info) => {
                let field = |name: &str| info.get(name).map_or("?", String::as_str).to_string();
                let commit: Option<u64> = info.get("commit_index").and_then(|c| c.parse().ok());
                // Only members receive the log: a spare's or removed node's lag says nothing.
                let lag = match (leader_commit, commit) {
                    _ if member == "spare" || member == "removed" => "-".into(),
                    (Some(leader), Some(commit)) => leader.saturating_sub(commit).to_string(),
                    _ => "?".into(),
                };
                println!(
                    "{id:<3} {client:<22} {peer:<22} {member:<8} {:<10} {:<8} {:<8} {lag}",
                    field("role"),
                    field("commit_index"),
                    field("applied_index"),
                );
            }
            Err(error) => {
                println!("{id:<3} {client:<22} {peer:<22} {member:<8} down       ({error})")
            }
        }
    }
    Ok(())
}

/// The client address of the member that says it leads, found through the node at
/// `addr`. A node that has not heard from a new leader yet knows none, so every
/// member is asked, for about an election's time.
async fn find_leader(addr: &str) -> Result<String, String> {
    let info = node_info(addr)
        .await
        .map_err(|e| format!("cannot ask {addr}: {e}"))?;
    let members = info_list(&info, "clients");
    for _ in 0..20 {
        for member in &members {
            if let Ok(info) = node_info(member).await {
                if info.get("role").is_some_and(|role| role == "leader") {
                    return Ok(member.clone());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("no member leads; try again in a moment".into())
}

/// Sends `args` to the leader (found through `addr`) and prints its `+OK` answer.
async fn call_leader(addr: &str, args: &[String]) -> Result<(), String> {
    println!("{}", ask_leader(addr, args).await?);
    Ok(())
}

/// The leader's `+OK`-style answer to `args`, or its error.
async fn ask_leader(addr: &str, args: &[String]) -> Result<String, String> {
    let leader = find_leader(addr).await?;
    let mut client = Client::connect(&leader)
        .await
        .map_err(|e| format!("cannot reach the leader at {leader}: {e}"))?;
    match client.call(args).await.map_err(|e| e.to_string())? {
        Value::Simple(reply) => Ok(reply),
        Value::Error(error) => Err(error),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

/// The id in a `BALLOT.MEMBER ADD peer client` answer (`OK epoch … id N`).
fn added_id(reply: &str) -> Result<usize, String> {
    reply
        .rsplit_once(" id ")
        .and_then(|(_, id)| id.trim().parse().ok())
        .ok_or_else(|| format!("the leader's answer names no id: {reply}"))
}

/// Writes the node.toml of a machine the cluster added at `peer` and `client` under
/// `id`: `template` (any member's) with this id, these addresses, `data_dir`, and no
/// metrics address (the template's is its own node's).
fn write_joiner_config(
    template: &Path,
    out: &Path,
    id: usize,
    (peer, client): (SocketAddr, SocketAddr),
    data_dir: PathBuf,
) -> Result<(), String> {
    let text = std::fs::read_to_string(template)
        .map_err(|e| format!("cannot read {}: {e}", template.display()))?;
    let mut file: NodeFile =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", template.display()))?;
    file.id = id;
    file.peer_address = Some(peer);
    file.client_address = Some(client);
    file.data_dir = data_dir;
    file.metrics = None;
    let text = toml::to_string(&file).map_err(|e| e.to_string())?;
    std::fs::write(out, text).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    println!(
        "wrote {}: start the machine with `ballot node --config {} --bootstrap`",
        out.display(),
        out.display()
    );
    Ok(())
}

async fn transfer_leader(addr: &str, id: Option<usize>) -> Result<(), String> {
    let mut args = vec!["BALLOT.TRANSFERLEADER".to_string()];
    args.extend(id.map(|id| id.to_string()));
    call_leader(addr, &args).await
}

/// `BALLOT.MEMBER` with `args`, at the leader.
async fn change_members(addr: &str, args: &[String]) -> Result<(), String> {
    call_leader(addr, &members_command(args)).await
}

/// The `BALLOT.MEMBER` command with `args`.
fn members_command(args: &[String]) -> Vec<String> {
    let mut command = vec!["BALLOT.MEMBER".to_string()];
    command.extend_from_slice(args);
    command
}

/// `BALLOT.MEMBER` with `args` (a promotion), asked again while the leader refuses it
/// because the learner lags (a `LAGGING` error: the leader decides, by its
/// `promote_lag_max`), for up to `--catch-up-seconds`; progress goes to stderr.
async fn promote_once_caught_up(
    addr: &str,
    args: &[String],
    catch_up: &CatchUpArgs,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(catch_up.catch_up_seconds);
    let mut last_said: Option<tokio::time::Instant> = None;
    loop {
        let error = match change_members(addr, args).await {
            Err(error) if error.starts_with(ballot_node::server::LAGGING) => error,
            done => return done,
        };
        let reason = error
            .trim_start_matches(ballot_node::server::LAGGING)
            .trim();
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(format!(
                "{reason} (still, after {} s: --catch-up-seconds)",
                catch_up.catch_up_seconds
            ));
        }
        if last_said.is_none_or(|said| now - said >= Duration::from_secs(5)) {
            eprintln!("waiting: {reason}");
            last_said = Some(now);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn bench(args: BenchArgs) -> Result<(), String> {
    let load = |clients: usize| Load {
        clients,
        seconds: args.seconds,
        value_size: args.value_size,
        read_ratio: args.read_ratio,
        keys: args.keys,
    };
    if !args.leader_vs_follower {
        for &clients in &args.clients {
            let before = elections(&args.addr).await;
            let result = run_load(&args.addr, &load(clients)).await?;
            let during = match (before, elections(&args.addr).await) {
                (Some(before), Some(after)) => after.saturating_sub(before).to_string(),
                _ => "?".to_string(),
            };
            println!(
                "clients={} seconds={} value_size={} read_ratio={}: {} ops, {:.0} ops/s, errors {}, latency ms p50 {:.3} p99 {:.3} p999 {:.3}, elections {during}",
                clients,
                args.seconds,
                args.value_size,
                args.read_ratio,
                result.latencies.len(),
                result.ops_per_second(),
                result.errors,
                result.latency_ms(0.50),
                result.latency_ms(0.99),
                result.latency_ms(0.999)
            );
        }
        return Ok(());
    }
    let (leader, follower) = leader_and_follower(&args.addr).await?;
    println!(
        "leader {leader}, follower {follower}: {} s per load, {}-byte values, read ratio {}",
        args.seconds, args.value_size, args.read_ratio
    );
    println!(
        "{:>7} | {:>10} {:>8} {:>8} | {:>10} {:>8} {:>8} | {:>11} {:>9}",
        "clients",
        "leader/s",
        "p50 ms",
        "p99 ms",
        "follower/s",
        "p50 ms",
        "p99 ms",
        "ratio ops/s",
        "ratio p99"
    );
    for &clients in &args.clients {
        let via_leader = run_load(std::slice::from_ref(&leader), &load(clients)).await?;
        let via_follower = run_load(std::slice::from_ref(&follower), &load(clients)).await?;
        println!(
            "{:>7} | {:>10.0} {:>8.3} {:>8.3} | {:>10.0} {:>8.3} {:>8.3} | {:>11.2} {:>9.2}",
            clients,
            via_leader.ops_per_second(),
            via_leader.latency_ms(0.50),
            via_leader.latency_ms(0.99),
            via_follower.ops_per_second(),
            via_follower.latency_ms(0.50),
            via_follower.latency_ms(0.99),
            via_follower.ops_per_second() / via_leader.ops_per_second().max(1.0),
            via_follower.latency_ms(0.99) / via_leader.latency_ms(0.99).max(1e-3),
        );
    }
    Ok(())
}
