//! The nemesis's abusers: clients that send what broken or hostile clients send —
//! requests over `request_bytes_max`, malformed RESP, random bytes, requests cut off
//! by a disconnect, a request of a million arguments — to any node, while the faults
//! go on, and check every answer they get against what the server must say.
//!
//! Their requests name the workload's keys, with values and increments no workload
//! client uses: a refused, malformed or cut-off request that took effect anyway would
//! show in the linearizability check as a value nobody wrote, or in the counter's
//! bounds as an invented increment. None of their operations is part of the history.
//!
//! An abuse that gets no answer (its node killed, paused or restarting) counts as
//! unanswered, not as wrong: the faults are meant to do that. An answer that differs
//! from the server's contract is an anomaly. Each abuser runs at most
//! [`ABUSES_PER_CLIENT_MAX`] abuses, each within [`ABUSE_TIMEOUT`], until stopped.

use crate::workload::COUNTER_KEY;
use ballot_node::limits::{ARGUMENTS_MAX, REQUEST_BYTES_MAX};
use ballot_node::resp::{parse_value, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most abuses one abuser sends in a run, however long the run.
pub const ABUSES_PER_CLIENT_MAX: usize = 10_000;

/// How long one abuse (connect, send, read the answers) may take before it counts as
/// unanswered.
pub const ABUSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A body comfortably over the limit: refused as soon as its header arrives.
const OVERSIZED_BYTES: usize = REQUEST_BYTES_MAX + (1 << 20);

/// The most bytes an abuser reads from one connection.
const READ_BYTES_MAX: usize = 1 << 20;

/// What the abusers do.
#[derive(Clone, Debug)]
pub struct AbuserConfig {
    /// Client addresses of the nodes.
    pub nodes: Vec<SocketAddr>,
    /// Concurrent abusers.
    pub abusers: usize,
    /// The workload's keys besides the counter (`k0`, `k1`, …), which abuses name.
    pub keys: usize,
    /// Seed for the abusers' choices.
    pub seed: u64,
}

/// What the abusers sent and saw.
#[derive(Clone, Debug, Default)]
pub struct AbuseCounts {
    /// Bad requests sent (each abuse sends one).
    pub requests: u64,
    /// Error replies received: the limit's refusals and protocol errors (and the
    /// argument count error of the million-argument request).
    pub errors: u64,
    /// Abuses that got no answer or not all of it: the node was down, paused or cut
    /// off by a fault, or the abuse itself disconnects.
    pub unanswered: u64,
    /// Answers that break the server's contract, one line each: anomalies.
    pub wrong: Vec<String>,
}

impl AbuseCounts {
    fn add(&mut self, other: AbuseCounts) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.unanswered += other.unanswered;
        self.wrong.extend(other.wrong);
    }
}

/// Runs the abusers until `stop` is set (or each has sent
/// [`ABUSES_PER_CLIENT_MAX`] abuses) and adds up what they saw.
pub async fn run_abusers(config: AbuserConfig, stop: Arc<AtomicBool>) -> AbuseCounts {
    let mut tasks = tokio::task::JoinSet::new();
    for abuser in 0..config.abusers {
        let config = config.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(
                config.seed ^ (abuser as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407),
            );
            let mut counts = AbuseCounts::default();
            for _ in 0..ABUSES_PER_CLIENT_MAX {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let node = rng.random_range(0..config.nodes.len());
                let abuse = Abuse::choose(&mut rng, config.keys);
                let sent = abuse.describe();
                counts.requests += 1;
                let outcome =
                    tokio::time::timeout(ABUSE_TIMEOUT, abuse.perform(config.nodes[node])).await;
                match outcome {
                    Ok(Ok(Checked { errors, complete })) => {
                        counts.errors += errors;
                        if !complete {
                            counts.unanswered += 1;
                        }
                    }
                    Ok(Err(Wrong(what))) => counts
                        .wrong
                        .push(format!("node {node} answered {sent} with {what}")),
                    Err(_) => counts.unanswered += 1,
                }
                // Bad clients among good ones, not a flood.
                tokio::time::sleep(Duration::from_millis(rng.random_range(20..200))).await;
            }
            counts
        });
    }
    let mut total = AbuseCounts::default();
    while let Some(counts) = tasks.join_next().await {
        if let Ok(counts) = counts {
            total.add(counts);
        }
    }
    total
}

/// One bad request, and what the server must answer to it.
#[derive(Clone, Debug)]
enum Abuse {
    /// `SET <key> <OVERSIZED_BYTES>`, all of it, then `PING`: the limit's error, then
    /// `PONG` on the same connection.
    Oversized { key: String },
    /// `MSET` of two values that each fit but not together, then `PING`.
    OversizedTogether { first: String, second: String },
    /// An oversized `SET` whose value is followed by an element that is no bulk
    /// string: the limit's error, then (once the value is skipped, to the byte) the
    /// protocol error naming that element, then the close.
    OversizedMalformedRest,
    /// The header and a part of an oversized `SET`, then a disconnect: the limit's
    /// error comes before the body does.
    OversizedThenDisconnect { key: String, body_bytes: usize },
    /// Bytes that can never be a request, then `PING`: the protocol error, then the
    /// close, and no `PONG`.
    Malformed { bytes: Vec<u8>, message: String },
    /// A whole `SET` or `INCRBY`, less its last `cut` bytes, then a disconnect: no
    /// answer, and it must never run.
    CutOff { request: Vec<u8>, cut: usize },
    /// Random bytes, then the end of input: the answers are RESP, and a protocol
    /// error, if any, is the last of them.
    Garbage { bytes: Vec<u8> },
    /// `PING` with a million arguments, then `PING`: the argument count error, then
    /// `PONG`.
    ManyArguments,
}

/// What a checked abuse saw: error replies, and whether every expected answer came.
struct Checked {
    errors: u64,
    complete: bool,
}

/// An answer that breaks the contract.
struct Wrong(String);

impl Abuse {
    fn choose(rng: &mut StdRng, keys: usize) -> Abuse {
        let key = |rng: &mut StdRng| match keys {
            0 => COUNTER_KEY.to_string(),
            _ => format!("k{}", rng.random_range(0..keys)),
        };
        let tag: u32 = rng.random();
        match rng.random_range(0..17) {
            0 | 1 => Abuse::Oversized { key: key(rng) },
            16 => Abuse::OversizedMalformedRest,
            2 => Abuse::OversizedTogether {
                first: key(rng),
                second: COUNTER_KEY.into(),
            },
            3 | 4 => Abuse::OversizedThenDisconnect {
                key: key(rng),
                body_bytes: rng.random_range(0..(2 << 20)),
            },
            5..=9 => {
                let key = key(rng);
                let (bytes, message) = malformed(rng, &key, tag);
                Abuse::Malformed { bytes, message }
            }
            10..=12 => {
                let request = if rng.random_bool(0.5) {
                    multibulk(&[
                        b"SET",
                        key(rng).as_bytes(),
                        format!("abuse-{tag}").as_bytes(),
                    ])
                } else {
                    format!("INCRBY {COUNTER_KEY} 1000000\r\n").into_bytes()
                };
                let cut = rng.random_range(1..request.len());
                Abuse::CutOff { request, cut }
            }
            13 | 14 => Abuse::Garbage {
                bytes: (0..rng.random_range(0..256))
                    .map(|_| rng.random())
                    .collect(),
            },
            _ => Abuse::ManyArguments,
        }
    }

    /// A short description for an anomaly report.
    fn describe(&self) -> String {
        match self {
            Abuse::Oversized { key } => format!("an oversized SET {key}"),
            Abuse::OversizedTogether { first, second } => {
                format!("an MSET {first} {second} over the limit")
            }
            Abuse::OversizedMalformedRest => "an oversized SET with a malformed rest".to_string(),
            Abuse::OversizedThenDisconnect { key, .. } => {
                format!("the start of an oversized SET {key}")
            }
            Abuse::Malformed { bytes, .. } => format!(
                "the malformed request {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(48)])
            ),
            Abuse::CutOff { request, cut } => format!(
                "{:?} cut off",
                String::from_utf8_lossy(&request[..request.len() - cut])
            ),
            Abuse::Garbage { bytes } => format!("{} random bytes", bytes.len()),
            Abuse::ManyArguments => format!("PING with {ARGUMENTS_MAX} arguments"),
        }
    }

    async fn perform(&self, addr: SocketAddr) -> Result<Checked, Wrong> {
        let Ok(mut connection) = Connection::open(addr).await else {
            return Ok(Checked::unanswered());
        };
        match self {
            Abuse::Oversized { key } => {
                let request = multibulk(&[b"SET", key.as_bytes(), &vec![b'x'; OVERSIZED_BYTES]]);
                let expected = [too_large(request.len()), pong()];
                connection.send(&request).await;
                connection.send(&multibulk(&[b"PING"])).await;
                connection.expect(&expected).await
            }
            Abuse::OversizedTogether { first, second } => {
                let half = vec![b'x'; REQUEST_BYTES_MAX / 2 + 1];
                let request =
                    multibulk(&[b"MSET", first.as_bytes(), &half, second.as_bytes(), &half]);
                let expected = [too_large(request.len()), pong()];
                connection.send(&request).await;
                connection.send(&multibulk(&[b"PING"])).await;
                connection.expect(&expected).await
            }
            Abuse::OversizedMalformedRest => {
                let mut request = format!("*3\r\n$3\r\nSET\r\n${OVERSIZED_BYTES}\r\n").into_bytes();
                let refused_at = request.len() + OVERSIZED_BYTES + 2;
                request.extend(vec![b'x'; OVERSIZED_BYTES]);
                request.extend(b"\r\n:1\r\n*1\r\n$4\r\nPING\r\n");
                connection.send(&request).await;
                let expected = [
                    too_large(refused_at),
                    Value::Error("ERR Protocol error: expected '$', got ':'".into()),
                ];
                let checked = connection.expect(&expected).await?;
                connection.expect_closed(checked).await
            }
            Abuse::OversizedThenDisconnect { key, body_bytes } => {
                let request = multibulk(&[b"SET", key.as_bytes(), &vec![b'x'; OVERSIZED_BYTES]]);
                let header = request.len() - OVERSIZED_BYTES - 2;
                connection.send(&request[..header + body_bytes]).await;
                connection.expect(&[too_large(request.len())]).await
            }
            Abuse::Malformed { bytes, message } => {
                connection.send(bytes).await;
                connection.send(b"PING\r\n").await;
                let checked = connection
                    .expect(&[Value::Error(format!("ERR Protocol error: {message}"))])
                    .await?;
                connection.expect_closed(checked).await
            }
            Abuse::CutOff { request, cut } => {
                connection.send(&request[..request.len() - cut]).await;
                Ok(Checked {
                    errors: 0,
                    complete: true,
                })
            }
            Abuse::Garbage { bytes } => {
                connection.send(bytes).await;
                connection.shutdown_write().await;
                connection.read_to_close().await
            }
            Abuse::ManyArguments => {
                let mut request = format!("*{ARGUMENTS_MAX}\r\n$4\r\nPING\r\n").into_bytes();
                for _ in 1..ARGUMENTS_MAX {
                    request.extend_from_slice(b"$0\r\n\r\n");
                }
                request.extend_from_slice(b"PING\r\n");
                connection.send(&request).await;
                let arity = Value::Error("ERR wrong number of arguments for 'ping' command".into());
                connection.expect(&[arity, pong()]).await
            }
        }
    }
}

impl Checked {
    fn unanswered() -> Checked {
        Checked {
            errors: 0,
            complete: false,
        }
    }
}

/// A malformed request naming `key`, and the message of the protocol error it gets.
fn malformed(rng: &mut StdRng, key: &str, tag: u32) -> (Vec<u8>, String) {
    let set = format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n", key.len());
    let incr = format!(
        "*3\r\n$6\r\nINCRBY\r\n${}\r\n{COUNTER_KEY}\r\n",
        COUNTER_KEY.len()
    );
    let (bytes, message) = match rng.random_range(0..8) {
        0 => (
            format!("{set}$8\r\nabuse-{:02}xy", tag % 100),
            "expected CRLF",
        ),
        1 => (format!("{incr}:1000000\r\n"), "expected '$', got ':'"),
        2 => (format!("{set}$-5\r\n"), "invalid bulk length"),
        3 => (format!("{set}$abc\r\n"), "invalid bulk length"),
        4 => ("*-3\r\n".to_string(), "invalid multibulk length"),
        5 => (
            format!("*{}\r\n", ARGUMENTS_MAX + 1),
            "invalid multibulk length",
        ),
        6 => (
            format!("SET {key} \"abuse-{tag}\r\n"),
            "unbalanced quotes in request",
        ),
        _ => (
            format!("{set}$8\r\nabuse-{:02}\rX", tag % 100),
            "expected CRLF",
        ),
    };
    (bytes.into_bytes(), message.to_string())
}

fn multibulk(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    Value::Array(args.iter().map(|a| Value::Bulk(a.to_vec())).collect()).encode(&mut out);
    out
}

fn pong() -> Value {
    Value::Simple("PONG".into())
}

/// The limit's refusal of a request known to be `bytes` long when refused.
fn too_large(bytes: usize) -> Value {
    Value::Error(format!(
        "ERR request of at least {bytes} bytes exceeds request_bytes_max ({REQUEST_BYTES_MAX} bytes); it was not executed"
    ))
}

/// What reading a connection brought.
enum Next {
    Reply(Value),
    /// The server closed the connection between replies.
    Closed,
    /// The connection failed, or closed mid-reply, or the abuse's bytes ran out: no
    /// telling what the server meant (a fault may have struck).
    Unanswered,
    /// Bytes that are not RESP.
    NotResp(String),
}

/// A raw connection: bytes out, RESP values in.
struct Connection {
    stream: TcpStream,
    pending: Vec<u8>,
    read_bytes: usize,
    /// A send failed: the server closed or the connection broke; what it answered
    /// before that can still be read.
    broken: bool,
}

impl Connection {
    async fn open(addr: SocketAddr) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            pending: Vec::new(),
            read_bytes: 0,
            broken: false,
        })
    }

    /// Sends `bytes` in 256 KiB writes, stopping at the first failure (the server
    /// may close first: after a protocol error, for instance).
    async fn send(&mut self, bytes: &[u8]) {
        for piece in bytes.chunks(256 << 10) {
            if self.broken {
                return;
            }
            if self.stream.write_all(piece).await.is_err() {
                self.broken = true;
            }
        }
    }

    async fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown().await;
    }

    async fn next(&mut self) -> Next {
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            match parse_value(&self.pending) {
                Ok(Some((value, used))) => {
                    self.pending.drain(..used);
                    return Next::Reply(value);
                }
                Ok(None) => {}
                Err(error) => {
                    return Next::NotResp(format!(
                        "bytes that are not RESP ({error}): {:?}",
                        String::from_utf8_lossy(&self.pending[..self.pending.len().min(64)])
                    ))
                }
            }
            if self.read_bytes > READ_BYTES_MAX {
                return Next::NotResp(format!("more than {READ_BYTES_MAX} bytes of answers"));
            }
            match self.stream.read(&mut chunk).await {
                Ok(0) if self.pending.is_empty() => return Next::Closed,
                Ok(0) | Err(_) => return Next::Unanswered,
                Ok(read) => {
                    self.read_bytes += read;
                    self.pending.extend_from_slice(&chunk[..read]);
                }
            }
        }
    }

    /// Reads the `expected` answers in order: an answer that differs is wrong; an
    /// answer that never comes is a fault's doing.
    async fn expect(&mut self, expected: &[Value]) -> Result<Checked, Wrong> {
        let mut errors = 0;
        for want in expected {
            match self.next().await {
                Next::Reply(reply) if reply == *want => {
                    errors += u64::from(matches!(reply, Value::Error(_)));
                }
                Next::Reply(reply) => {
                    return Err(Wrong(format!("{reply:?} where {want:?} was due")));
                }
                Next::NotResp(what) => return Err(Wrong(what)),
                Next::Closed | Next::Unanswered => {
                    return Ok(Checked {
                        errors,
                        complete: false,
                    })
                }
            }
        }
        Ok(Checked {
            errors,
            complete: true,
        })
    }

    /// After the protocol error `checked` saw, if it saw it: the server must close,
    /// answering nothing more.
    async fn expect_closed(&mut self, checked: Checked) -> Result<Checked, Wrong> {
        if !checked.complete {
            return Ok(checked);
        }
        match self.next().await {
            Next::Closed | Next::Unanswered => Ok(checked),
            Next::Reply(reply) => Err(Wrong(format!(
                "{reply:?} after the protocol error instead of closing"
            ))),
            Next::NotResp(what) => Err(Wrong(what)),
        }
    }

    /// Reads answers until the server closes: they must be RESP, and a protocol error
    /// must be the last of them.
    async fn read_to_close(&mut self) -> Result<Checked, Wrong> {
        let mut errors = 0;
        let mut protocol_error = false;
        // Bounded by READ_BYTES_MAX: every answer takes at least 3 bytes.
        loop {
            match self.next().await {
                Next::Reply(reply) => {
                    if protocol_error {
                        return Err(Wrong(format!("{reply:?} after a protocol error")));
                    }
                    if let Value::Error(text) = &reply {
                        errors += 1;
                        protocol_error = text.starts_with("ERR Protocol error");
                    }
                }
                Next::Closed => {
                    return Ok(Checked {
                        errors,
                        complete: true,
                    })
                }
                Next::Unanswered => {
                    return Ok(Checked {
                        errors,
                        complete: false,
                    })
                }
                Next::NotResp(what) => return Err(Wrong(what)),
            }
        }
    }
}
