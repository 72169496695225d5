//! The nemesis's clients: closed-loop RESP clients doing GET, SET and INCRBY on a few
//! keys, recording every operation (invocation, and ok, failed or unknown) for the
//! linearizability check.
//!
//! Outcomes are classified conservatively. A reply is `Ok` only if the server
//! answered the operation itself (including a state-machine error such as "not an
//! integer", which is a result). A read that got no answer `Failed` (reads change
//! nothing, so it cannot matter whether it ran). A write that got no answer, an error
//! or a dropped connection is `Unknown`: it may or may not have taken effect, at any
//! time after its invocation. A write is `Failed` only when it was never sent (the
//! connection could not be opened).

use crate::kv_spec::{KeyOp, KeyRet};
use crate::linearizability::{Operation, Outcome};
use ballot_node::client::Client;
use ballot_node::resp::Value;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One operation in the history: a key, and the operation as its client saw it.
/// Times are nanoseconds since the run began.
#[derive(Clone, Debug)]
pub struct Event {
    /// The node the client was connected to.
    pub node: usize,
    /// The key.
    pub key: String,
    /// The operation and its outcome.
    pub operation: Operation<KeyOp, KeyRet>,
}

/// A shared, append-only history.
pub type History = Arc<Mutex<Vec<Event>>>;

/// The key only ever incremented by 1: its final value bounds the acknowledged
/// increments (none lost) and the attempted ones (none invented).
pub const COUNTER_KEY: &str = "counter";

/// What the clients do.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    /// Client addresses of the nodes.
    pub nodes: Vec<SocketAddr>,
    /// Concurrent clients.
    pub clients: usize,
    /// Keys besides the counter (`k0`, `k1`, …).
    pub keys: usize,
    /// How long a client waits for an answer before calling the outcome unknown.
    pub op_timeout: Duration,
    /// Seed for the clients' choices.
    pub seed: u64,
}

/// Runs the clients until `stop` is set; every operation lands in `history`.
pub async fn run_clients(
    config: WorkloadConfig,
    epoch: Instant,
    history: History,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..config.clients {
        let config = config.clone();
        let history = history.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            let mut rng =
                StdRng::seed_from_u64(config.seed ^ (client as u64).wrapping_mul(0x9E37_79B9));
            let mut incarnation = 0u64;
            let mut seq = 0u64;
            let mut connection: Option<(usize, Client)> = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let process = (client as u64) * 1_000_000 + incarnation;
                let (node, mut conn) = match connection.take() {
                    Some(c) => c,
                    None => {
                        let node = rng.random_range(0..config.nodes.len());
                        let addr = config.nodes[node].to_string();
                        match tokio::time::timeout(config.op_timeout, Client::connect(&addr)).await
                        {
                            Ok(Ok(conn)) => (node, conn),
                            _ => {
                                // Nothing was sent: no operation to record.
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                        }
                    }
                };
                seq += 1;
                let (key, op) = choose(&mut rng, &config, client, seq);
                let invoked = epoch.elapsed().as_nanos() as u64;
                let args = command(&key, &op);
                let reply = tokio::time::timeout(config.op_timeout, conn.call(&args)).await;
                let completed = epoch.elapsed().as_nanos() as u64;
                let outcome = classify(
                    &op,
                    completed,
                    reply.ok().map(|r| r.map_err(|e| e.to_string())),
                );
                let keep = matches!(outcome, Outcome::Ok { .. });
                history
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Event {
                        node,
                        key,
                        operation: Operation {
                            process,
                            invoked,
                            op,
                            outcome,
                        },
                    });
                if keep {
                    connection = Some((node, conn));
                } else {
                    // The connection may still carry the old answer: start afresh, as a
                    // new process (the old operation may yet take effect).
                    incarnation += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Reads `key` through node `node`, recording the read; retried until `deadline`.
pub async fn final_read(
    addr: SocketAddr,
    node: usize,
    key: &str,
    epoch: Instant,
    history: &History,
    deadline: Instant,
) -> Option<Option<Vec<u8>>> {
    while Instant::now() < deadline {
        let invoked = epoch.elapsed().as_nanos() as u64;
        let reply = tokio::time::timeout(Duration::from_secs(2), async {
            let mut conn = Client::connect(&addr.to_string()).await?;
            conn.call(&command(key, &KeyOp::Get)).await
        })
        .await;
        let completed = epoch.elapsed().as_nanos() as u64;
        let outcome = classify(
            &KeyOp::Get,
            completed,
            reply.ok().map(|r| r.map_err(|e| e.to_string())),
        );
        if let Outcome::Ok {
            ret: KeyRet::Value(value),
            ..
        } = &outcome
        {
            let value = value.clone();
            history
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Event {
                    node,
                    key: key.to_string(),
                    operation: Operation {
                        process: u64::MAX - node as u64,
                        invoked,
                        op: KeyOp::Get,
                        outcome,
                    },
                });
            return Some(value);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn choose(rng: &mut StdRng, config: &WorkloadConfig, client: usize, seq: u64) -> (String, KeyOp) {
    // One operation in five goes to the counter; the rest spread over the keys.
    if config.keys == 0 || rng.random_range(0..5) == 0 {
        return (COUNTER_KEY.to_string(), KeyOp::IncrBy(1));
    }
    let key = format!("k{}", rng.random_range(0..config.keys));
    let op = match rng.random_range(0..4) {
        0 | 1 => KeyOp::Get,
        // Unique values, and integers, so increments keep working on them.
        2 => KeyOp::Set(format!("{}", (client as u64 + 1) * 1_000_000_000 + seq).into_bytes()),
        _ => KeyOp::IncrBy(1),
    };
    (key, op)
}

fn command(key: &str, op: &KeyOp) -> Vec<Vec<u8>> {
    match op {
        KeyOp::Get => vec![b"GET".to_vec(), key.as_bytes().to_vec()],
        KeyOp::Set(value) => vec![b"SET".to_vec(), key.as_bytes().to_vec(), value.clone()],
        KeyOp::IncrBy(delta) => vec![
            b"INCRBY".to_vec(),
            key.as_bytes().to_vec(),
            delta.to_string().into_bytes(),
        ],
    }
}

/// `reply` (arrived at `completed`) is `None` on timeout.
fn classify(op: &KeyOp, completed: u64, reply: Option<Result<Value, String>>) -> Outcome<KeyRet> {
    let unanswered = if !matches!(op, KeyOp::Get) {
        Outcome::Unknown
    } else {
        Outcome::Failed
    };
    let Some(Ok(value)) = reply else {
        return unanswered;
    };
    let ret = match (op, value) {
        (KeyOp::Get, Value::Bulk(bytes)) => KeyRet::Value(Some(bytes)),
        (KeyOp::Get, Value::Null) => KeyRet::Value(None),
        (KeyOp::Set(_), Value::Simple(s)) if s == "OK" => KeyRet::Ok,
        (KeyOp::IncrBy(_), Value::Integer(n)) => KeyRet::Integer(n),
        (KeyOp::IncrBy(_), Value::Error(e))
            if e.contains("not an integer") || e.contains("overflow") =>
        {
            KeyRet::Error
        }
        // Timeouts, redirects exhausted, shutdown: the server does not know either.
        _ => return unanswered,
    };
    Outcome::Ok { ret, completed }
}
