//! A real Redis client library, the `redis` crate with its default connection
//! settings, against a real three-node cluster in this process: over RESP2 and over
//! RESP3 (`?protocol=resp3`, which makes the crate open with `HELLO 3`), through a
//! follower (which forwards to the leader) and through the leader. The crate also
//! sends `CLIENT SETINFO` on connect; the tests check the server recorded it.
//!
//! A last test reads raw bytes, to pin what the crate cannot show: under RESP3 a
//! missing key is RESP3's null `_`, not RESP2's `$-1`.
//!
//! Every wait is bounded; the cluster shuts down and its directory is removed when a
//! test ends.

mod common;
use common::Cluster;

use ballot_node::resp::parse_value;
use redis::Value as Reply;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long any one client call may take before the test fails instead of hanging.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// A cluster whose servers take the default number of clients.
fn start(name: &str) -> Cluster {
    Cluster::start(
        &format!("redis-{name}"),
        "redis-clients-node",
        ballot_node::limits::CONNECTIONS_MAX,
    )
}

/// The `redis` crate's address of `node`, over RESP3 if `resp3`.
fn url(cluster: &Cluster, node: usize, resp3: bool) -> String {
    let query = if resp3 { "/?protocol=resp3" } else { "" };
    format!("redis://{}{query}", cluster.clients[node])
}

/// A connection through the crate, its default settings apart from timeouts.
fn connect(url: &str) -> redis::Connection {
    let client = redis::Client::open(url).expect("a valid URL");
    let connection = client
        .get_connection_with_timeout(CALL_TIMEOUT)
        .unwrap_or_else(|error| panic!("connecting to {url}: {error}"));
    connection
        .set_read_timeout(Some(CALL_TIMEOUT))
        .expect("read timeout");
    connection
        .set_write_timeout(Some(CALL_TIMEOUT))
        .expect("write timeout");
    connection
}

/// The value of `field` in a `HELLO` reply, a map in RESP3 and a flat array of keys
/// and values in RESP2.
fn hello_field(reply: &Reply, field: &str) -> Reply {
    let pairs: Vec<(Reply, Reply)> = match reply {
        Reply::Map(pairs) => pairs.clone(),
        Reply::Array(flat) => flat
            .chunks(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect(),
        other => panic!("HELLO answered {other:?}"),
    };
    pairs
        .into_iter()
        .find(|(key, _)| *key == Reply::BulkString(field.as_bytes().to_vec()))
        .unwrap_or_else(|| panic!("HELLO has no {field}: {reply:?}"))
        .1
}

/// Everything the tests ask of one connection, with `resp3` the protocol it should
/// have negotiated.
fn exercise(url: &str, resp3: bool) {
    let mut con = connect(url);
    let query = |con: &mut redis::Connection, args: &[&str]| -> redis::RedisResult<Reply> {
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command.query(con)
    };

    // The negotiated protocol, seen from both ends.
    let hello = query(&mut con, &["HELLO"]).expect("HELLO");
    assert_eq!(matches!(hello, Reply::Map(_)), resp3, "{hello:?}");
    assert_eq!(
        hello_field(&hello, "proto"),
        Reply::Int(if resp3 { 3 } else { 2 })
    );
    assert_eq!(
        hello_field(&hello, "server"),
        Reply::BulkString(b"ballot".to_vec())
    );
    let id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query(&mut con)
        .expect("CLIENT ID");
    assert_eq!(hello_field(&hello, "id"), Reply::Int(id));

    // Strings, counters, deletes.
    let () = redis::cmd("SET")
        .arg("greeting")
        .arg("hello")
        .query(&mut con)
        .expect("SET");
    let greeting: Option<String> = redis::cmd("GET")
        .arg("greeting")
        .query(&mut con)
        .expect("GET");
    assert_eq!(greeting.as_deref(), Some("hello"));
    let missing: Option<String> = redis::cmd("GET")
        .arg("missing")
        .query(&mut con)
        .expect("GET");
    assert_eq!(missing, None);
    assert_eq!(
        query(&mut con, &["GET", "missing"]).expect("GET"),
        Reply::Nil
    );
    let counter: i64 = redis::cmd("INCR")
        .arg("counter")
        .query(&mut con)
        .expect("INCR");
    assert_eq!(counter, 1);
    let counter: i64 = redis::cmd("INCR")
        .arg("counter")
        .query(&mut con)
        .expect("INCR");
    assert_eq!(counter, 2);
    let error = redis::cmd("INCR")
        .arg("greeting")
        .query::<i64>(&mut con)
        .expect_err("INCR of a string");
    assert!(
        error.to_string().contains("value is not an integer"),
        "{error}"
    );
    let exists: i64 = redis::cmd("EXISTS")
        .arg("greeting")
        .arg("missing")
        .arg("counter")
        .query(&mut con)
        .expect("EXISTS");
    assert_eq!(exists, 2);
    let values: Vec<Option<String>> = redis::cmd("MGET")
        .arg("greeting")
        .arg("missing")
        .arg("counter")
        .query(&mut con)
        .expect("MGET");
    assert_eq!(
        values,
        vec![Some("hello".to_string()), None, Some("2".to_string())]
    );
    let deleted: i64 = redis::cmd("DEL")
        .arg("greeting")
        .arg("missing")
        .query(&mut con)
        .expect("DEL");
    assert_eq!(deleted, 1);
    let gone: Option<String> = redis::cmd("GET")
        .arg("greeting")
        .query(&mut con)
        .expect("GET");
    assert_eq!(gone, None);

    // A pipeline: several commands written before any reply is read.
    let (value, incremented, both): (String, i64, Vec<Option<String>>) = redis::pipe()
        .cmd("SET")
        .arg("piped")
        .arg("41")
        .ignore()
        .cmd("GET")
        .arg("piped")
        .cmd("INCR")
        .arg("piped")
        .cmd("MGET")
        .arg("piped")
        .arg("nowhere")
        .query(&mut con)
        .expect("pipeline");
    assert_eq!(value, "41");
    assert_eq!(incremented, 42);
    assert_eq!(both, vec![Some("42".to_string()), None]);

    // Connection state.
    let name: Option<String> = redis::cmd("CLIENT")
        .arg("GETNAME")
        .query(&mut con)
        .expect("GETNAME");
    assert_eq!(name, None);
    let () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("redis-clients-test")
        .query(&mut con)
        .expect("SETNAME");
    let name: Option<String> = redis::cmd("CLIENT")
        .arg("GETNAME")
        .query(&mut con)
        .expect("GETNAME");
    assert_eq!(name.as_deref(), Some("redis-clients-test"));
    let () = redis::cmd("SELECT")
        .arg(0)
        .query(&mut con)
        .expect("SELECT 0");
    let error = redis::cmd("SELECT")
        .arg(1)
        .query::<()>(&mut con)
        .expect_err("SELECT 1");
    assert!(
        error.to_string().contains("DB index is out of range"),
        "{error}"
    );
    // What the crate sent on connect (CLIENT SETINFO, whose errors it ignores) was
    // recorded, and the line reports the protocol.
    let info: String = redis::cmd("CLIENT")
        .arg("INFO")
        .query(&mut con)
        .expect("CLIENT INFO");
    for field in [
        "name=redis-clients-test",
        "lib-name=redis-rs",
        if resp3 { "resp=3" } else { "resp=2" },
    ] {
        assert!(info.contains(field), "{field} not in {info:?}");
    }
    let pong: String = redis::cmd("PING").query(&mut con).expect("PING");
    assert_eq!(pong, "PONG");
}

#[test]
fn resp2_through_a_follower() {
    let cluster = start("resp2-follower");
    exercise(&url(&cluster, cluster.follower(), false), false);
}

#[test]
fn resp3_through_a_follower() {
    let cluster = start("resp3-follower");
    exercise(&url(&cluster, cluster.follower(), true), true);
}

#[test]
fn resp2_and_resp3_through_the_leader() {
    let cluster = start("leader");
    let leader = cluster.leader();
    exercise(&url(&cluster, leader, false), false);
    // The same keys again: the first run's writes are there for the second to see.
    let mut con = connect(&url(&cluster, leader, true));
    let deleted: i64 = redis::cmd("DEL")
        .arg("counter")
        .arg("piped")
        .query(&mut con)
        .expect("DEL");
    assert_eq!(deleted, 2);
    exercise(&url(&cluster, leader, true), true);
}

/// An operator's commands sent to a follower reach the leader: its refusal comes back
/// as it gave it, a leadership transfer moves the leader's leadership, and the
/// removal of the new leader (asked of the same follower, which then follows it) is
/// applied; the two voters left go on serving.
#[test]
fn operator_commands_through_a_follower_reach_the_leader() {
    let cluster = start("operator-follower");
    let leader = cluster.leader();
    let (follower, third) = ((leader + 1) % 3, (leader + 2) % 3);
    let mut con = connect(&url(&cluster, follower, false));

    let refused = redis::cmd("BALLOT.MEMBER")
        .arg("PROMOTE")
        .arg(third)
        .query::<String>(&mut con)
        .expect_err("a voter was promoted");
    assert!(
        refused
            .to_string()
            .contains(&format!("node {third} is no learner")),
        "{refused}"
    );

    let moved: String = redis::cmd("BALLOT.TRANSFERLEADER")
        .arg(third)
        .query(&mut con)
        .expect("a transfer asked of a follower");
    assert_eq!(moved, format!("OK node {third} leads"));
    assert_eq!(cluster.leader(), third);

    let removed: String = redis::cmd("BALLOT.MEMBER")
        .arg("REMOVE")
        .arg(third)
        .query(&mut con)
        .expect("the leader's removal asked of a follower");
    let mut voters = [leader, follower];
    voters.sort_unstable();
    assert_eq!(
        removed,
        format!("OK epoch 1 voters {},{} learners ", voters[0], voters[1])
    );
    let _: () = redis::cmd("SET")
        .arg("after-removal")
        .arg("1")
        .query(&mut con)
        .expect("a write after the leader's removal");
    let mut con = connect(&url(&cluster, leader, false));
    let read: String = redis::cmd("GET")
        .arg("after-removal")
        .query(&mut con)
        .expect("a read from the other voter");
    assert_eq!(read, "1");
}

/// Reads one whole reply from `stream` and returns its bytes.
fn read_reply(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Vec<u8> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((_, used)) = parse_value(pending).expect("a valid reply") {
            return pending.drain(..used).collect();
        }
        let read = stream.read(&mut chunk).expect("a reply within the timeout");
        assert!(read > 0, "the server closed the connection");
        pending.extend_from_slice(&chunk[..read]);
    }
}

#[test]
fn resp3_replies_use_resp3_nulls_on_the_wire() {
    let cluster = start("raw");
    let mut stream = TcpStream::connect(cluster.clients[cluster.follower()]).expect("connect");
    stream
        .set_read_timeout(Some(CALL_TIMEOUT))
        .expect("timeout");
    let mut pending = Vec::new();
    let mut call = |request: &[u8]| {
        stream.write_all(request).expect("write");
        read_reply(&mut stream, &mut pending)
    };
    assert_eq!(call(b"SET present v\r\n"), b"+OK\r\n");
    assert_eq!(call(b"GET missing\r\n"), b"$-1\r\n");
    assert_eq!(
        call(b"MGET present missing\r\n"),
        b"*2\r\n$1\r\nv\r\n$-1\r\n"
    );
    assert!(call(b"HELLO 3\r\n").starts_with(b"%7\r\n$6\r\nserver\r\n"));
    assert_eq!(call(b"GET missing\r\n"), b"_\r\n");
    assert_eq!(call(b"MGET present missing\r\n"), b"*2\r\n$1\r\nv\r\n_\r\n");
    assert_eq!(call(b"CLIENT GETNAME\r\n"), b"_\r\n");
    assert_eq!(
        call(b"CONFIG GET appendonly\r\n"),
        b"%1\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n"
    );
    let info = call(b"INFO\r\n");
    assert!(info.starts_with(b"="), "INFO is verbatim text: {info:?}");
    assert!(
        info.windows(14).any(|w| w == b"role:follower\r"),
        "{:?}",
        String::from_utf8_lossy(&info)
    );
    // And back: RESP2 again.
    assert!(call(b"HELLO 2\r\n").starts_with(b"*14\r\n"));
    assert_eq!(call(b"GET missing\r\n"), b"$-1\r\n");
}
