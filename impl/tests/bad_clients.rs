//! Bad input at the server: a running three-node cluster in this process, its RESP
//! servers on real TCP sockets, fed what broken or hostile clients send — random
//! bytes, malformed RESP (bad lengths, missing CRLF, wrong type bytes, negative and
//! huge counts, overlong lines), requests over `request_bytes_max`, requests cut off
//! by a disconnect, bursts of connections opened and dropped — while a well-behaved
//! client writes unique keys through every node.
//!
//! After every case: each node reports no storage failure and answers `PING`, no task
//! on the nodes' runtime panicked, a fresh client's `SET` then `GET` succeeds through
//! every node within a bound, every write the well-behaved client saw acknowledged
//! reads back, and no refused or cut-off request took effect. Where one connection
//! carries a bad request between good ones, the exact reply sequence is checked: a
//! request over the limit gets an error naming `request_bytes_max` and the connection
//! goes on; a protocol error gets `-ERR Protocol error: …` and the connection closes,
//! as in Redis.
//!
//! `PROPTEST_CASES` sets the number of random cases (default 16). Every wait is
//! bounded; each cluster shuts down and its directory is removed when its test ends.

mod common;
use common::Cluster;

use ballot_node::limits::{ARGUMENTS_MAX, LINE_BYTES_MAX, REQUEST_BYTES_MAX};
use ballot_node::resp::{parse_value, Value};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long one socket read or write may block before the test fails instead of
/// hanging.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the cluster may take to serve a fresh client's write and read after a case.
const SERVE_TIMEOUT: Duration = Duration::from_secs(20);

/// A request body comfortably over the limit: refused as soon as its header arrives.
const OVERSIZED_BYTES: usize = REQUEST_BYTES_MAX + (1 << 20);

/// The well-behaved client's most writes in one case, whatever the case's length.
const WRITES_PER_CASE_MAX: usize = 2_000;

/// The most bytes a test reads from one connection before calling the server runaway.
const READ_BYTES_MAX: usize = 32 << 20;

/// The name of the nodes' runtime threads, so the panic hook can tell a panic in the
/// server or node (which tokio would otherwise swallow with its task) from the
/// test's own assertions.
const NODE_THREAD: &str = "bad-clients-node";

/// Panics on the nodes' runtime threads since the process started.
static NODE_PANICS: AtomicUsize = AtomicUsize::new(0);

/// Makes every key a test writes unique in the process.
static NEXT_KEY: AtomicU64 = AtomicU64::new(0);

fn fresh_key(prefix: &str) -> Vec<u8> {
    format!("{prefix}:{}", NEXT_KEY.fetch_add(1, Ordering::Relaxed)).into_bytes()
}

/// Counts panics on the nodes' threads (once per process), then reports them as usual.
fn count_node_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|name| name.starts_with(NODE_THREAD))
            {
                NODE_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            report(info);
        }));
    });
}

/// A cluster whose servers take at most `connections_max` clients, with panics on
/// its threads counted.
fn start(name: &str, connections_max: usize) -> Cluster {
    count_node_panics();
    Cluster::start(&format!("bad-{name}"), NODE_THREAD, connections_max)
}

/// What the next read from a connection brought.
#[derive(Debug, PartialEq)]
enum Next {
    /// One whole reply.
    Reply(Value),
    /// The server closed the connection (end of stream, or a reset) between replies.
    Closed,
}

/// One raw client connection: bytes out, RESP values in.
struct Raw {
    stream: TcpStream,
    /// Bytes read but not yet parsed into a reply.
    pending: Vec<u8>,
    /// Total bytes read, bounded by [`READ_BYTES_MAX`].
    read_bytes: usize,
}

impl Raw {
    fn try_connect(addr: SocketAddr) -> std::io::Result<Raw> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Raw {
            stream,
            pending: Vec::new(),
            read_bytes: 0,
        })
    }

    fn connect(addr: SocketAddr) -> Raw {
        Raw::try_connect(addr).unwrap_or_else(|error| panic!("connecting to {addr}: {error}"))
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|error| panic!("sending {} bytes: {error}", bytes.len()));
    }

    /// Sends `bytes` split at `cuts` (positions, in any order), pausing briefly
    /// between pieces so the server is likely to read each on its own.
    fn send_in_pieces(&mut self, bytes: &[u8], cuts: &[usize]) -> std::io::Result<()> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut from = 0;
        for cut in cuts.into_iter().chain([bytes.len()]) {
            if cut > from {
                self.stream.write_all(&bytes[from..cut])?;
                std::thread::sleep(Duration::from_millis(1));
            }
            from = cut;
        }
        Ok(())
    }

    /// Sends `bytes` in 256 KiB writes (what a client sending a large body does).
    fn send_large(&mut self, bytes: &[u8]) {
        for piece in bytes.chunks(256 << 10) {
            self.send(piece);
        }
    }

    /// Reads the next reply, or learns that the server closed the connection.
    fn try_next(&mut self) -> std::io::Result<Next> {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut chunk = [0u8; 64 << 10];
        loop {
            match parse_value(&self.pending) {
                Ok(Some((value, used))) => {
                    self.pending.drain(..used);
                    return Ok(Next::Reply(value));
                }
                Ok(None) => {}
                Err(error) => {
                    return Err(std::io::Error::new(
                        ErrorKind::InvalidData,
                        format!("the server sent bad RESP ({error}): {:?}", self.pending),
                    ))
                }
            }
            if Instant::now() > deadline || self.read_bytes > READ_BYTES_MAX {
                return Err(std::io::Error::new(
                    ErrorKind::TimedOut,
                    format!(
                        "no whole reply within {IO_TIMEOUT:?} ({} bytes read)",
                        self.read_bytes
                    ),
                ));
            }
            let read = match self.stream.read(&mut chunk) {
                Ok(read) => read,
                Err(error)
                    if matches!(
                        error.kind(),
                        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                    ) =>
                {
                    0
                }
                Err(error) => return Err(error),
            };
            if read == 0 {
                if self.pending.is_empty() {
                    return Ok(Next::Closed);
                }
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("closed in the middle of a reply: {:?}", self.pending),
                ));
            }
            self.read_bytes += read;
            self.pending.extend_from_slice(&chunk[..read]);
        }
    }

    fn next(&mut self) -> Next {
        self.try_next()
            .unwrap_or_else(|error| panic!("reading a reply: {error}"))
    }

    /// The next reply; the connection must not close first.
    fn reply(&mut self) -> Value {
        match self.next() {
            Next::Reply(value) => value,
            Next::Closed => panic!("the server closed the connection instead of replying"),
        }
    }

    /// The server must close the connection now, with no further reply.
    fn expect_closed(&mut self, after: &str) {
        assert_eq!(
            self.next(),
            Next::Closed,
            "the connection stays open {after}"
        );
    }

    fn call(&mut self, args: &[&[u8]]) -> Value {
        self.send(&multibulk(args));
        self.reply()
    }
}

/// A request as client libraries send it: an array of bulk strings.
fn multibulk(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    Value::Array(args.iter().map(|a| Value::Bulk(a.to_vec())).collect()).encode(&mut out);
    out
}

/// A request as telnet or `redis-cli` pipes send it: one line, every argument
/// double-quoted with each byte escaped, so any bytes fit.
fn inline(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.push(b'"');
        for byte in *arg {
            out.extend_from_slice(format!("\\x{byte:02x}").as_bytes());
        }
        out.push(b'"');
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn ok() -> Value {
    Value::Simple("OK".into())
}

fn pong() -> Value {
    Value::Simple("PONG".into())
}

/// The error a request over the limit gets: `bytes` is how large the request is known
/// to be when the server refuses it.
fn too_large(bytes: usize) -> Value {
    Value::Error(format!(
        "ERR request of at least {bytes} bytes exceeds request_bytes_max ({REQUEST_BYTES_MAX} bytes); it was not executed"
    ))
}

fn protocol_error(message: &str) -> Value {
    Value::Error(format!("ERR Protocol error: {message}"))
}

/// Bytes of `x`, shared, for large bodies that need no generating.
fn filler(len: usize) -> Vec<u8> {
    vec![b'x'; len]
}

// ---------------------------------------------------------------------------------
// The well-behaved client.

/// What the well-behaved client saw in one case.
#[derive(Debug, Default)]
struct WriterLog {
    /// Keys and values whose `SET` was acknowledged with `+OK`.
    acked: Vec<(Vec<u8>, Vec<u8>)>,
    /// Every other outcome, described.
    refused: Vec<String>,
}

/// Writes unique keys through each node in turn on its own thread until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<WriterLog>>,
}

impl Writer {
    fn start(clients: Vec<SocketAddr>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || write_until(&clients, &stop))
        };
        Writer {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> WriterLog {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(log)) => log,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => WriterLog::default(),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // A failing case unwinds past `finish`: stop the thread rather than leave it.
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer's loop: at least one write, then until `stop`, at most
/// [`WRITES_PER_CASE_MAX`] writes or [`SERVE_TIMEOUT`].
fn write_until(clients: &[SocketAddr], stop: &AtomicBool) -> WriterLog {
    let mut log = WriterLog::default();
    let mut connections: Vec<Option<Raw>> = clients.iter().map(|_| None).collect();
    let started = Instant::now();
    for write in 0..WRITES_PER_CASE_MAX {
        if write > 0 && (stop.load(Ordering::SeqCst) || started.elapsed() > SERVE_TIMEOUT) {
            break;
        }
        let node = write % clients.len();
        let key = fresh_key("good");
        let value = format!("value-{write}").into_bytes();
        let outcome = (|| -> std::io::Result<Next> {
            if connections[node].is_none() {
                connections[node] = Some(Raw::try_connect(clients[node])?);
            }
            let connection = connections[node].as_mut().expect("just connected");
            connection
                .stream
                .write_all(&multibulk(&[b"SET", &key, &value]))?;
            connection.try_next()
        })();
        match outcome {
            Ok(Next::Reply(reply)) if reply == ok() => log.acked.push((key, value)),
            other => {
                log.refused.push(format!(
                    "SET {} through node {node}: {other:?}",
                    String::from_utf8_lossy(&key)
                ));
                connections[node] = None;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    log
}

// ---------------------------------------------------------------------------------
// What the cluster must still do after any case.

/// Every node is up and serving, every acknowledged write reads back, and none of
/// `never_written` (keys only refused or cut-off requests wrote) exists.
fn check_cluster(cluster: &Cluster, acked: &[(Vec<u8>, Vec<u8>)], never_written: &[Vec<u8>]) {
    assert_eq!(
        NODE_PANICS.load(Ordering::SeqCst),
        0,
        "a task on the nodes' runtime panicked (its message is above)"
    );
    for (id, node) in cluster.nodes.iter().enumerate() {
        assert_eq!(node.status().storage_failure, None, "node {id} stopped");
        let mut connection = Raw::connect(cluster.clients[id]);
        assert_eq!(connection.call(&[b"PING"]), pong(), "node {id}");
    }
    for id in 0..cluster.nodes.len() {
        set_then_get(cluster.clients[id]);
    }
    // Linearizable reads through every node in turn.
    for (i, batch) in acked.chunks(500).enumerate() {
        let mut connection = Raw::connect(cluster.clients[i % cluster.clients.len()]);
        let mut args: Vec<&[u8]> = vec![b"MGET"];
        args.extend(batch.iter().map(|(key, _)| key.as_slice()));
        let expected = Value::Array(
            batch
                .iter()
                .map(|(_, value)| Value::Bulk(value.clone()))
                .collect(),
        );
        assert_eq!(
            connection.call(&args),
            expected,
            "acknowledged writes read back"
        );
    }
    if !never_written.is_empty() {
        let mut connection = Raw::connect(cluster.clients[0]);
        let mut args: Vec<&[u8]> = vec![b"EXISTS"];
        args.extend(never_written.iter().map(Vec::as_slice));
        assert_eq!(
            connection.call(&args),
            Value::Integer(0),
            "a refused or cut-off request took effect: one of {:?} exists",
            never_written
                .iter()
                .map(|k| String::from_utf8_lossy(k))
                .collect::<Vec<_>>()
        );
    }
}

/// A fresh client's `SET` then `GET` through `addr` succeeds within
/// [`SERVE_TIMEOUT`]; a write that fails is retried (under a new key).
fn set_then_get(addr: SocketAddr) {
    let deadline = Instant::now() + SERVE_TIMEOUT;
    let mut failures = Vec::new();
    while Instant::now() < deadline && failures.len() < 100 {
        let key = fresh_key("probe");
        let mut connection = match Raw::try_connect(addr) {
            Ok(connection) => connection,
            Err(error) => {
                failures.push(format!("connect: {error}"));
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        match connection.call(&[b"SET", &key, b"probe-value"]) {
            reply if reply == ok() => {
                assert_eq!(
                    connection.call(&[b"GET", &key]),
                    Value::Bulk(b"probe-value".to_vec()),
                    "a fresh client's GET after its acknowledged SET through {addr}"
                );
                return;
            }
            other => failures.push(format!("SET: {other:?}")),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no SET then GET through {addr} within {SERVE_TIMEOUT:?}: {failures:?}");
}

// ---------------------------------------------------------------------------------
// Good commands, and what a single key's state says they answer.

/// A command on one key (or none), which [`Cmd::expect`] can predict.
#[derive(Clone, Debug)]
enum Cmd {
    Set(Vec<u8>),
    Get,
    Append(Vec<u8>),
    Strlen,
    Incr,
    Del,
    Exists,
    Ping,
    Echo(Vec<u8>),
}

/// A reply as predicted: exactly this value, or an error with this prefix.
#[derive(Debug)]
enum Expected {
    Exactly(Value),
    ErrorStarting(&'static str),
}

impl Expected {
    fn check(&self, reply: &Value, what: &str) {
        match self {
            Expected::Exactly(value) => assert_eq!(reply, value, "{what}"),
            Expected::ErrorStarting(prefix) => assert!(
                matches!(reply, Value::Error(text) if text.starts_with(prefix)),
                "{what}: {reply:?} is not an error starting {prefix:?}"
            ),
        }
    }
}

/// The integer a stored value holds, if Redis would take it for one: exactly the
/// canonical decimal form of an `i64`.
fn stored_integer(value: &[u8]) -> Option<i64> {
    let number: i64 = std::str::from_utf8(value).ok()?.parse().ok()?;
    (number.to_string().as_bytes() == value).then_some(number)
}

impl Cmd {
    fn args<'a>(&'a self, key: &'a [u8]) -> Vec<&'a [u8]> {
        match self {
            Cmd::Set(value) => vec![b"SET", key, value],
            Cmd::Get => vec![b"GET", key],
            Cmd::Append(value) => vec![b"APPEND", key, value],
            Cmd::Strlen => vec![b"STRLEN", key],
            Cmd::Incr => vec![b"INCR", key],
            Cmd::Del => vec![b"DEL", key],
            Cmd::Exists => vec![b"EXISTS", key],
            Cmd::Ping => vec![b"PING"],
            Cmd::Echo(message) => vec![b"ECHO", message],
        }
    }

    /// The reply to this command given the key's `state`, which it updates.
    fn expect(&self, state: &mut Option<Vec<u8>>) -> Expected {
        let length = |state: &Option<Vec<u8>>| state.as_ref().map_or(0, Vec::len) as i64;
        let value = match self {
            Cmd::Set(value) => {
                *state = Some(value.clone());
                ok()
            }
            Cmd::Get => state.clone().map_or(Value::Null, Value::Bulk),
            Cmd::Append(value) => {
                state.get_or_insert_with(Vec::new).extend_from_slice(value);
                Value::Integer(length(state))
            }
            Cmd::Strlen => Value::Integer(length(state)),
            Cmd::Incr => {
                let current = match state {
                    None => 0,
                    Some(value) => match stored_integer(value) {
                        Some(number) => number,
                        None => return Expected::ErrorStarting("ERR value is not an integer"),
                    },
                };
                let Some(next) = current.checked_add(1) else {
                    return Expected::ErrorStarting("ERR increment or decrement would overflow");
                };
                *state = Some(next.to_string().into_bytes());
                Value::Integer(next)
            }
            Cmd::Del => Value::Integer(i64::from(state.take().is_some())),
            Cmd::Exists => Value::Integer(i64::from(state.is_some())),
            Cmd::Ping => pong(),
            Cmd::Echo(message) => Value::Bulk(message.clone()),
        };
        Expected::Exactly(value)
    }
}

// ---------------------------------------------------------------------------------
// Bad requests, each with the protocol error it must get.

/// A request the server must refuse with a protocol error and close the connection.
#[derive(Clone, Debug)]
enum Bad {
    /// `*<text>`: a count that is no number, negative, or over the argument limit.
    MultibulkLength(&'static str),
    /// A bulk length that is no number, negative, or over the bulk limit.
    BulkLength(&'static str),
    /// An element of the request array that is no bulk string.
    TypeByte(u8),
    /// Bulk data followed by these two bytes instead of CRLF.
    NoCrlfAfterData(&'static [u8; 2]),
    /// A header line whose CR is followed by something other than LF.
    NoLfInHeader,
    /// A count line longer than the line limit.
    LongCount,
    /// A bulk length line longer than the line limit.
    LongBulkLength,
    /// An inline command with unbalanced quotes.
    UnbalancedQuotes(&'static str),
    /// An inline command longer than the line limit.
    LongInline,
}

impl Bad {
    const ALL: [Bad; 31] = [
        Bad::MultibulkLength("x"),
        Bad::MultibulkLength(""),
        Bad::MultibulkLength("-2"),
        Bad::MultibulkLength("-100"),
        Bad::MultibulkLength("+1"),
        Bad::MultibulkLength("01"),
        Bad::MultibulkLength(" 1"),
        Bad::MultibulkLength("1048577"),
        Bad::MultibulkLength("99999999999999999999999"),
        Bad::BulkLength("x"),
        Bad::BulkLength(""),
        Bad::BulkLength("-1"),
        Bad::BulkLength("-3"),
        Bad::BulkLength("03"),
        Bad::BulkLength("536870913"),
        Bad::BulkLength("18446744073709551615"),
        Bad::TypeByte(b':'),
        Bad::TypeByte(b'+'),
        Bad::TypeByte(b'*'),
        Bad::TypeByte(b'\0'),
        Bad::TypeByte(b'\r'),
        Bad::NoCrlfAfterData(b"xy"),
        Bad::NoCrlfAfterData(b"\rx"),
        Bad::NoCrlfAfterData(b"\n\r"),
        Bad::NoLfInHeader,
        Bad::LongCount,
        Bad::LongBulkLength,
        Bad::UnbalancedQuotes("ECHO \"abc\r\n"),
        Bad::UnbalancedQuotes("ECHO 'abc\r\n"),
        Bad::UnbalancedQuotes("ECHO \"a\"b\r\n"),
        Bad::LongInline,
    ];

    fn bytes(&self) -> Vec<u8> {
        let long_number = || vec![b'1'; LINE_BYTES_MAX + 1];
        match self {
            Bad::MultibulkLength(text) => format!("*{text}\r\n").into_bytes(),
            Bad::BulkLength(text) => format!("*2\r\n$4\r\nECHO\r\n${text}\r\n").into_bytes(),
            Bad::TypeByte(byte) => [
                b"*2\r\n$4\r\nECHO\r\n".as_slice(),
                &[*byte],
                b"3\r\nabc\r\n",
            ]
            .concat(),
            Bad::NoCrlfAfterData(after) => [b"*1\r\n$4\r\nPING".as_slice(), *after].concat(),
            Bad::NoLfInHeader => b"*1\rX".to_vec(),
            Bad::LongCount => [b"*".as_slice(), &long_number()].concat(),
            Bad::LongBulkLength => [b"*1\r\n$".as_slice(), &long_number()].concat(),
            Bad::UnbalancedQuotes(line) => line.as_bytes().to_vec(),
            Bad::LongInline => vec![b'a'; LINE_BYTES_MAX + 1],
        }
    }

    /// The error's message after `Protocol error: `, in Redis's words.
    fn message(&self) -> String {
        match self {
            Bad::MultibulkLength(_) => "invalid multibulk length".into(),
            Bad::BulkLength(_) => "invalid bulk length".into(),
            Bad::TypeByte(byte) => format!("expected '$', got '{}'", byte.escape_ascii()),
            Bad::NoCrlfAfterData(_) | Bad::NoLfInHeader => "expected CRLF".into(),
            Bad::LongCount => "too big mbulk count string".into(),
            Bad::LongBulkLength => "too big bulk count string".into(),
            Bad::UnbalancedQuotes(_) => "unbalanced quotes in request".into(),
            Bad::LongInline => "too big inline request".into(),
        }
    }

    /// Whether bytes may follow it in the same write: the overlong lines are sent
    /// alone, since the server closes as soon as the line is too long and bytes it
    /// never read would turn its close into a reset.
    fn may_be_followed(&self) -> bool {
        !matches!(self, Bad::LongCount | Bad::LongBulkLength | Bad::LongInline)
    }
}

/// How a request over the limit is sent.
#[derive(Clone, Copy, Debug)]
enum Oversize {
    /// `SET key <OVERSIZED_BYTES>`, all of it, then `GET key`: refused, then null.
    Whole,
    /// `MSET` of two values that fit alone but not together, then `PING`.
    AddsUp,
    /// The header and part of the body, then the client disconnects.
    ThenDisconnect,
    /// A body over the limit, then an element that is no bulk string: the limit's
    /// error, then the protocol error, then the close.
    MalformedRest,
}

/// One thing a case does, on a connection of its own.
#[derive(Clone, Debug)]
enum Action {
    /// Good commands on one fresh key, each inline or as a bulk array, the whole
    /// pipeline sent in pieces; every reply is predicted. With `quit`, the pipeline
    /// ends in `QUIT` followed by a `SET` that must not run.
    Good {
        node: usize,
        commands: Vec<(Cmd, bool)>,
        cuts: Vec<usize>,
        quit: bool,
    },
    /// Good commands, then a bad request (and a `PING` that must go unanswered).
    Malformed {
        node: usize,
        before: Vec<Cmd>,
        bad: Bad,
        cuts: Vec<usize>,
    },
    /// Arbitrary bytes, then end of input: whatever comes back is RESP, and a
    /// protocol error, if any, is the last reply.
    Garbage { node: usize, bytes: Vec<u8> },
    /// A request over the limit.
    Oversized {
        node: usize,
        how: Oversize,
        ping_first: bool,
        sent_kib: usize,
    },
    /// A `SET` cut off at `cut` by a disconnect: it must never run.
    CutOff {
        node: usize,
        inline: bool,
        value: Vec<u8>,
        cut: usize,
        cuts: Vec<usize>,
    },
    /// Connections opened and dropped, some after half a request.
    Churn {
        node: usize,
        connections: usize,
        half_requests: bool,
    },
}

/// Performs `action`; keys that only refused or cut-off requests wrote are added to
/// `never_written`.
fn perform(cluster: &Cluster, action: &Action, never_written: &mut Vec<Vec<u8>>) {
    match action {
        Action::Good {
            node,
            commands,
            cuts,
            quit,
        } => good(cluster.clients[*node], commands, cuts, *quit),
        Action::Malformed {
            node,
            before,
            bad,
            cuts,
        } => malformed(cluster.clients[*node], before, bad, cuts),
        Action::Garbage { node, bytes } => garbage(cluster.clients[*node], bytes),
        Action::Oversized {
            node,
            how,
            ping_first,
            sent_kib,
        } => oversized(
            cluster.clients[*node],
            *how,
            *ping_first,
            *sent_kib,
            never_written,
        ),
        Action::CutOff {
            node,
            inline: as_inline,
            value,
            cut,
            cuts,
        } => {
            let key = fresh_key("cut");
            let args: [&[u8]; 3] = [b"SET", &key, value];
            // An inline line longer than the line limit is a protocol error, not a
            // request: long values go as bulk strings.
            let request = match inline(&args) {
                line if *as_inline && line.len() <= LINE_BYTES_MAX => line,
                _ => multibulk(&args),
            };
            // Anywhere short of the last byte: the request is never whole.
            let cut = 1 + cut % (request.len() - 1);
            let mut connection = Raw::connect(cluster.clients[*node]);
            connection
                .send_in_pieces(&request[..cut], cuts)
                .expect("sending part of a request");
            drop(connection);
            never_written.push(key);
        }
        Action::Churn {
            node,
            connections,
            half_requests,
        } => {
            let mut open = Vec::new();
            for i in 0..*connections {
                let mut connection = Raw::connect(cluster.clients[*node]);
                if *half_requests && i % 2 == 0 {
                    connection.send(b"*3\r\n$3\r\nSET\r\n$4\r\nchur");
                }
                open.push(connection);
            }
            drop(open);
        }
    }
}

fn good(addr: SocketAddr, commands: &[(Cmd, bool)], cuts: &[usize], quit: bool) {
    let key = fresh_key("good-cmds");
    let mut wire = Vec::new();
    for (command, as_inline) in commands {
        let args = command.args(&key);
        wire.extend(if *as_inline {
            inline(&args)
        } else {
            multibulk(&args)
        });
    }
    if quit {
        wire.extend(inline(&[b"QUIT"]));
        wire.extend(multibulk(&[b"SET", &key, b"after-quit"]));
    }
    let mut connection = Raw::connect(addr);
    let sent = connection.send_in_pieces(&wire, cuts);
    // The server closes on QUIT, perhaps before the pieces after it arrive.
    assert!(quit || sent.is_ok(), "sending a pipeline: {sent:?}");
    let mut state = None;
    for (i, (command, _)) in commands.iter().enumerate() {
        let expected = command.expect(&mut state);
        expected.check(&connection.reply(), &format!("command {i}, {command:?}"));
    }
    if quit {
        assert_eq!(connection.reply(), ok(), "QUIT");
        connection.expect_closed("after QUIT");
        // What followed QUIT on the connection never ran.
        let mut check = Raw::connect(addr);
        let reply = check.call(&[b"GET", &key]);
        assert_eq!(reply, state.map_or(Value::Null, Value::Bulk), "after QUIT");
    }
}

fn malformed(addr: SocketAddr, before: &[Cmd], bad: &Bad, cuts: &[usize]) {
    let key = fresh_key("before-bad");
    let mut wire = Vec::new();
    for command in before {
        wire.extend(multibulk(&command.args(&key)));
    }
    wire.extend(bad.bytes());
    let mut connection = Raw::connect(addr);
    if bad.may_be_followed() {
        wire.extend(b"PING\r\n");
        // The server may close before the last pieces arrive: it answers what it read.
        let _ = connection.send_in_pieces(&wire, cuts);
    } else {
        connection.send(&wire);
    }
    let mut state = None;
    for (i, command) in before.iter().enumerate() {
        let expected = command.expect(&mut state);
        expected.check(&connection.reply(), &format!("command {i} before {bad:?}"));
    }
    assert_eq!(
        connection.reply(),
        protocol_error(&bad.message()),
        "the reply to {bad:?}"
    );
    connection.expect_closed(&format!("after {bad:?}"));
}

fn garbage(addr: SocketAddr, bytes: &[u8]) {
    let mut connection = Raw::connect(addr);
    // The server may close early (a protocol error, or QUIT among the bytes).
    let _ = connection.stream.write_all(bytes);
    let _ = connection.stream.shutdown(Shutdown::Write);
    let mut replies = Vec::new();
    // Until the close; bounded, as each reply takes at least 3 of READ_BYTES_MAX bytes.
    while let Next::Reply(reply) = connection.next() {
        replies.push(reply);
    }
    let is_protocol_error = |reply: &Value| matches!(reply, Value::Error(text) if text.starts_with("ERR Protocol error"));
    if let Some(at) = replies.iter().position(is_protocol_error) {
        assert_eq!(
            at,
            replies.len() - 1,
            "replies after a protocol error: {replies:?}"
        );
    }
}

fn oversized(
    addr: SocketAddr,
    how: Oversize,
    ping_first: bool,
    sent_kib: usize,
    never_written: &mut Vec<Vec<u8>>,
) {
    let mut connection = Raw::connect(addr);
    if ping_first {
        connection.send(b"PING\r\n");
    }
    let key = fresh_key("oversized");
    match how {
        Oversize::Whole => {
            let request = multibulk(&[b"SET", &key, &filler(OVERSIZED_BYTES)]);
            connection.send_large(&request);
            connection.send(&inline(&[b"GET", &key]));
            if ping_first {
                assert_eq!(connection.reply(), pong());
            }
            assert_eq!(connection.reply(), too_large(request.len()));
            assert_eq!(connection.reply(), Value::Null, "GET after the refused SET");
            never_written.push(key);
        }
        Oversize::AddsUp => {
            let half = filler(REQUEST_BYTES_MAX / 2 + 1);
            let other = fresh_key("oversized");
            let request = multibulk(&[b"MSET", &key, &half, &other, &half]);
            connection.send_large(&request);
            connection.send(b"PING\r\n");
            if ping_first {
                assert_eq!(connection.reply(), pong());
            }
            // Known too large at the last value's header: the request's whole length.
            assert_eq!(connection.reply(), too_large(request.len()));
            assert_eq!(connection.reply(), pong(), "PING after the refused MSET");
            never_written.push(key);
            never_written.push(other);
        }
        Oversize::ThenDisconnect => {
            let request = multibulk(&[b"SET", &key, &filler(OVERSIZED_BYTES)]);
            let header = request.len() - OVERSIZED_BYTES - 2;
            let sent = header + (sent_kib << 10).min(OVERSIZED_BYTES);
            connection.send_large(&request[..sent]);
            if ping_first {
                assert_eq!(connection.reply(), pong());
            }
            assert_eq!(connection.reply(), too_large(request.len()));
            drop(connection);
            never_written.push(key);
        }
        Oversize::MalformedRest => {
            // The value is the refused part; the key is never named.
            let mut request = b"*3\r\n$3\r\nSET\r\n".to_vec();
            request.extend(format!("${OVERSIZED_BYTES}\r\n").into_bytes());
            let refused_at = request.len() + OVERSIZED_BYTES + 2;
            request.extend(filler(OVERSIZED_BYTES));
            request.extend(b"\r\n:1\r\nPING\r\n");
            connection.send_large(&request);
            if ping_first {
                assert_eq!(connection.reply(), pong());
            }
            assert_eq!(connection.reply(), too_large(refused_at));
            assert_eq!(connection.reply(), protocol_error("expected '$', got ':'"));
            connection.expect_closed("after the rest of a refused request turned out malformed");
        }
    }
}

// ---------------------------------------------------------------------------------
// Strategies.

fn value_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..16),
        "-?[1-9][0-9]{0,5}".prop_map(String::into_bytes),
    ]
}

fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        value_bytes().prop_map(Cmd::Set),
        Just(Cmd::Get),
        value_bytes().prop_map(Cmd::Append),
        Just(Cmd::Strlen),
        Just(Cmd::Incr),
        Just(Cmd::Del),
        Just(Cmd::Exists),
        Just(Cmd::Ping),
        value_bytes().prop_map(Cmd::Echo),
    ]
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(any::<usize>(), 0..4)
}

/// Bytes that look like RESP more often than uniform bytes do, to reach deeper into
/// the parser.
fn resp_soup() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(&b"*"[..]),
        Just(&b"$"[..]),
        Just(&b"\r\n"[..]),
        Just(&b"\r"[..]),
        Just(&b"\n"[..]),
        Just(&b"-1"[..]),
        Just(&b"0"[..]),
        Just(&b"1"[..]),
        Just(&b"3"[..]),
        Just(&b"4"[..]),
        Just(&b"1048577"[..]),
        Just(&b"9437184"[..]),
        Just(&b"PING"[..]),
        Just(&b"ECHO"[..]),
        Just(&b"GET"[..]),
        Just(&b"HELLO 3"[..]),
        Just(&b"\""[..]),
        Just(&b"'"[..]),
        Just(&b"\\x"[..]),
        Just(&b":"[..]),
        Just(&b" "[..]),
        Just(&b"x"[..]),
    ];
    proptest::collection::vec(token, 0..48).prop_map(|tokens| tokens.concat())
}

fn action() -> impl Strategy<Value = Action> {
    let node = 0usize..3;
    prop_oneof![
        4 => (node.clone(), proptest::collection::vec((cmd(), any::<bool>()), 1..8), cuts(), proptest::bool::weighted(0.2))
            .prop_map(|(node, commands, cuts, quit)| Action::Good { node, commands, cuts, quit }),
        3 => (node.clone(), proptest::collection::vec(cmd(), 0..3), proptest::sample::select(Bad::ALL.to_vec()), cuts())
            .prop_map(|(node, before, bad, cuts)| Action::Malformed { node, before, bad, cuts }),
        3 => (node.clone(), prop_oneof![proptest::collection::vec(any::<u8>(), 0..512), resp_soup()])
            .prop_map(|(node, bytes)| Action::Garbage { node, bytes }),
        1 => (node.clone(), prop_oneof![Just(Oversize::Whole), Just(Oversize::AddsUp), Just(Oversize::ThenDisconnect), Just(Oversize::MalformedRest)], any::<bool>(), 0usize..2048)
            .prop_map(|(node, how, ping_first, sent_kib)| Action::Oversized { node, how, ping_first, sent_kib }),
        2 => (node.clone(), any::<bool>(), prop_oneof![proptest::collection::vec(any::<u8>(), 0..32), (1usize..200_000).prop_map(filler)], any::<usize>(), cuts())
            .prop_map(|(node, inline, value, cut, cuts)| Action::CutOff { node, inline, value, cut, cuts }),
        1 => (node, 1usize..40, any::<bool>())
            .prop_map(|(node, connections, half_requests)| Action::Churn { node, connections, half_requests }),
    ]
}

/// `default` cases, or `PROPTEST_CASES` when set.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------
// The tests.

#[test]
fn random_bad_clients_never_stop_the_cluster_or_lose_a_write() {
    let cluster = start("random", ballot_node::limits::CONNECTIONS_MAX);
    let acked_so_far: RefCell<Vec<(Vec<u8>, Vec<u8>)>> = RefCell::new(Vec::new());
    let never_written_so_far: RefCell<Vec<Vec<u8>>> = RefCell::new(Vec::new());
    let mut runner = TestRunner::new(Config {
        cases: cases(16),
        // Each case runs against a live cluster: keep shrinking bounded.
        max_shrink_iters: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(action(), 1..6), |actions| {
        let writer = Writer::start(cluster.clients.clone());
        let mut never_written = Vec::new();
        for action in &actions {
            perform(&cluster, action, &mut never_written);
        }
        let log = writer.finish();
        prop_assert!(
            log.refused.is_empty(),
            "the well-behaved client's writes failed: {:?}",
            log.refused
        );
        prop_assert!(!log.acked.is_empty(), "no write was acknowledged");
        // Every write so far, not only this case's, must still read back.
        acked_so_far.borrow_mut().extend(log.acked);
        never_written_so_far.borrow_mut().extend(never_written);
        check_cluster(
            &cluster,
            &acked_so_far.borrow(),
            &never_written_so_far.borrow(),
        );
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

#[test]
fn every_malformed_request_gets_its_protocol_error_and_the_connection_closes() {
    let cluster = start("malformed", ballot_node::limits::CONNECTIONS_MAX);
    let follower = cluster.follower();
    for (i, bad) in Bad::ALL.iter().enumerate() {
        // A good command first on the same connection, answered before the error.
        malformed(
            cluster.clients[if i % 2 == 0 { follower } else { 0 }],
            &[Cmd::Set(b"v".to_vec()), Cmd::Get],
            bad,
            &[],
        );
    }
    check_cluster(&cluster, &[], &[]);
}

#[test]
fn requests_over_the_limit_are_refused_and_the_connection_goes_on() {
    let cluster = start("oversized", ballot_node::limits::CONNECTIONS_MAX);
    let leader = cluster.leader();
    let mut never_written = Vec::new();
    for (i, how) in [
        Oversize::Whole,
        Oversize::AddsUp,
        Oversize::ThenDisconnect,
        Oversize::MalformedRest,
    ]
    .into_iter()
    .enumerate()
    {
        // Through the leader and through a follower, alone and after a PING.
        for node in [leader, (leader + 1) % 3] {
            oversized(
                cluster.clients[node],
                how,
                i % 2 == 0,
                512,
                &mut never_written,
            );
        }
    }
    // A request just under the limit is served, on a connection that had one over it
    // refused.
    let mut connection = Raw::connect(cluster.clients[leader]);
    let overhead = multibulk(&[b"ECHO", b""]).len();
    let message = filler(REQUEST_BYTES_MAX - overhead - 8);
    let under = multibulk(&[b"ECHO", &message]);
    assert!(under.len() <= REQUEST_BYTES_MAX);
    let over = multibulk(&[b"ECHO", &filler(OVERSIZED_BYTES)]);
    connection.send_large(&over);
    assert_eq!(connection.reply(), too_large(over.len()));
    connection.send_large(&under);
    assert_eq!(connection.reply(), Value::Bulk(message), "under the limit");
    check_cluster(&cluster, &[], &never_written);
}

/// A write of a value just under `request_bytes_max`, through the leader and then a
/// follower (which forwards it): each is acknowledged and reads back. In a debug
/// build the nodes used to encode such a frame a byte at a time, which stalled the
/// cluster for good.
#[test]
fn a_write_just_under_the_limit_is_served_through_the_leader_and_a_follower() {
    let cluster = start("under-limit", ballot_node::limits::CONNECTIONS_MAX);
    let leader = cluster.leader();
    let mut acked = Vec::new();
    for node in [leader, (leader + 1) % 3] {
        let key = fresh_key("under-limit");
        let overhead = multibulk(&[b"SET", &key, b""]).len();
        let value = filler(REQUEST_BYTES_MAX - overhead - 8);
        let request = multibulk(&[b"SET", &key, &value]);
        assert!(request.len() <= REQUEST_BYTES_MAX);
        let mut connection = Raw::connect(cluster.clients[node]);
        connection.send_large(&request);
        assert_eq!(connection.reply(), ok(), "through node {node}");
        acked.push((key, value));
    }
    check_cluster(&cluster, &acked, &[]);
}

/// Writes of values just under `request_bytes_max`, three clients at once, through the
/// leader and both followers: each must be acknowledged.
#[test]
#[ignore = "writes near request_bytes_max from three clients stall the cluster: each heartbeat tick re-sends every unacknowledged slot (up to 8 MiB) to every peer, heartbeats queue behind those frames, followers elect again, and each Promise carries the accepted 8 MiB entries; re-sending needs flow control"]
fn writes_just_under_the_limit_are_served() {
    let cluster = start("near-limit", ballot_node::limits::CONNECTIONS_MAX);
    let leader = cluster.leader();
    let writers: Vec<JoinHandle<Vec<String>>> = (0..3)
        .map(|offset| {
            let addr = cluster.clients[(leader + offset) % 3];
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                let mut connection = Raw::connect(addr);
                for _ in 0..8 {
                    let key = fresh_key("near-limit");
                    let overhead = multibulk(&[b"SET", &key, b""]).len();
                    let value = filler(REQUEST_BYTES_MAX - overhead - 8);
                    connection.send_large(&multibulk(&[b"SET", &key, &value]));
                    let reply = connection.reply();
                    if reply != ok() {
                        failures.push(format!("SET through {addr}: {reply:?}"));
                    }
                }
                failures
            })
        })
        .collect();
    let failures: Vec<String> = writers
        .into_iter()
        .flat_map(|writer| writer.join().expect("writer thread"))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    check_cluster(&cluster, &[], &[]);
}

#[test]
fn a_request_of_a_million_arguments_is_parsed_in_one_pass() {
    let cluster = start("arguments", ballot_node::limits::CONNECTIONS_MAX);
    // The most arguments a request may have, nearly all empty: 6 MiB of short bulk
    // strings, which arrive in about a hundred reads of 64 KiB.
    let mut request = format!("*{ARGUMENTS_MAX}\r\n$4\r\nPING\r\n").into_bytes();
    for _ in 1..ARGUMENTS_MAX {
        request.extend_from_slice(b"$0\r\n\r\n");
    }
    request.extend_from_slice(b"PING\r\n");
    let mut connection = Raw::connect(cluster.clients[0]);
    let started = Instant::now();
    connection.send_large(&request);
    assert_eq!(
        connection.reply(),
        Value::Error("ERR wrong number of arguments for 'ping' command".into())
    );
    assert_eq!(connection.reply(), pong());
    // Parsing what has arrived again on every read costs about fifty whole passes
    // over the request (seconds in a debug build); parsing on from where the last read
    // stopped costs one. The time is a figure to read, not an assertion (machines
    // differ); the reply and the cluster's health are what this test asserts.
    eprintln!(
        "a request of {ARGUMENTS_MAX} arguments took {:?}",
        started.elapsed()
    );
    check_cluster(&cluster, &[], &[]);
}

/// `SLOTS` connections to `addr` that each answered `PING`, once the server has that
/// many free (at most 10 s from now).
fn every_slot(addr: SocketAddr, slots: usize) -> Vec<Raw> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut fresh: Vec<Raw> = (0..slots).map(|_| Raw::connect(addr)).collect();
        let mut answered = 0;
        for connection in &mut fresh {
            connection.send(&multibulk(&[b"PING"]));
            if connection.try_next().ok() == Some(Next::Reply(pong())) {
                answered += 1;
            }
        }
        if answered == slots {
            return fresh;
        }
        assert!(
            Instant::now() < deadline,
            "only {answered} of {slots} connection slots free within 10 s"
        );
        drop(fresh);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn connection_slots_come_back_after_bad_clients_leave() {
    const SLOTS: usize = 8;
    let cluster = start("slots", SLOTS);
    let addr = cluster.clients[0];
    let misbehaviours: [Vec<u8>; SLOTS] = [
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nab".to_vec(),
        format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${OVERSIZED_BYTES}\r\n").into_bytes(),
        Bad::TypeByte(b':').bytes(),
        b"QUIT\r\n".to_vec(),
        b"\xff\xfe garbage".to_vec(),
        Vec::new(),
        b"ECHO \"never closed".to_vec(),
        b"*1\r\n$4\r\nPI".to_vec(),
    ];
    let mut taken = every_slot(addr, SLOTS);
    for round in 0..3 {
        // Every slot is taken: the next client is told so and closed, as in Redis.
        let mut refused = Raw::connect(addr);
        assert_eq!(
            refused.reply(),
            Value::Error("ERR max number of clients reached".into()),
            "round {round}"
        );
        refused.expect_closed("after refusing a client over connections_max");
        // Each slot's client misbehaves in its own way and leaves.
        for (connection, bytes) in taken.iter_mut().zip(&misbehaviours) {
            connection.send(bytes);
        }
        drop(taken);
        taken = every_slot(addr, SLOTS);
    }
    // With every slot held again, the slots' connections write and read, and the
    // other nodes pass the usual checks.
    let key = fresh_key("slots");
    assert_eq!(taken[0].call(&[b"SET", &key, b"v"]), ok());
    assert_eq!(
        taken[SLOTS - 1].call(&[b"GET", &key]),
        Value::Bulk(b"v".to_vec())
    );
    assert_eq!(
        NODE_PANICS.load(Ordering::SeqCst),
        0,
        "a node's task panicked"
    );
    for (id, node) in cluster.nodes.iter().enumerate() {
        assert_eq!(node.status().storage_failure, None, "node {id} stopped");
    }
    for &other in &cluster.clients[1..] {
        set_then_get(other);
    }
}
