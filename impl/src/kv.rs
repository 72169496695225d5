//! The replicated key-value state machine and the Redis command table that feeds it.
//!
//! [`parse_command`] turns a RESP command into a [`KvRequest`]: writes become
//! [`KvCommand`]s that go through the log, reads become [`KvQuery`]s served by
//! read-index, and `PING`, `ECHO`, `INFO` and `QUIT` are answered by the server
//! itself (the commands about the connection's own state, `HELLO`, `CLIENT`,
//! `SELECT`, `COMMAND`, ..., are [`crate::connection`]'s). All argument checking
//! happens here, before anything is proposed, so the log only ever carries
//! well-formed commands; [`KvStore::apply`] still never panics, because a replica
//! must survive whatever the log holds.
//!
//! Error texts copy Redis 7's so existing clients and tests recognise them.
//!
//! ```
//! use ballot_model::StateMachine;
//! use ballot_node::kv::{parse_command, KvRequest, KvStore};
//! use ballot_node::resp::Value;
//!
//! let mut store = KvStore::default();
//! let set = parse_command(&[b"set".to_vec(), b"k".to_vec(), b"v".to_vec()]).unwrap();
//! let KvRequest::Write(command) = set else { unreachable!() };
//! let reply: Value = store.apply(&command).into();
//! let mut wire = Vec::new();
//! reply.encode(&mut wire);
//! assert_eq!(wire, b"+OK\r\n");
//!
//! let KvRequest::Read(query) = parse_command(&[b"GET".to_vec(), b"k".to_vec()]).unwrap() else {
//!     unreachable!()
//! };
//! assert_eq!(Value::from(store.query(&query)), Value::Bulk(b"v".to_vec()));
//! ```

use crate::resp::{parse_redis_int, Value};
use ballot_model::StateMachine;
use serde::{Deserialize, Serialize};

/// Redis's reply when a value or an argument is not a 64-bit integer.
pub(crate) const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";

/// Redis's reply when `INCRBY`/`DECRBY` would leave the i64 range.
const OVERFLOW: &str = "ERR increment or decrement would overflow";

/// The replicated state: a sorted map from keys to values, both binary strings.
///
/// Sorted, so that equal states compare, hash and serialise equally, which the model
/// checker and snapshots rely on; and persistent (`imbl::OrdMap`, a B-tree whose
/// nodes are shared between copies), so that a snapshot is an O(1) copy the node can
/// encode and write in the background while the live map moves on: taking a snapshot
/// never stalls the event loop, whatever the number of keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KvStore {
    #[serde(serialize_with = "serialize_map", deserialize_with = "deserialize_map")]
    map: imbl::OrdMap<Vec<u8>, Vec<u8>>,
}

/// Serializes the map with its keys and values as byte strings (see
/// [`crate::byte_strings`]: the same bytes as the default, written in one piece each).
fn serialize_map<S: serde::Serializer>(
    map: &imbl::OrdMap<Vec<u8>, Vec<u8>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(
        map.iter()
            .map(|(key, value)| (serde_bytes::Bytes::new(key), serde_bytes::Bytes::new(value))),
    )
}

/// Deserializes the map entry by entry. imbl's own deserializer reserves room for as
/// many entries as the input *claims*: a 20-byte frame from a peer claiming 2^60 keys
/// aborted the process (found by the `peer_frame` and `snapshot` fuzz targets). Here
/// memory grows only with entries that actually arrive; the encoding is unchanged.
fn deserialize_map<'de, D>(deserializer: D) -> Result<imbl::OrdMap<Vec<u8>, Vec<u8>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Entries;
    impl<'de> serde::de::Visitor<'de> for Entries {
        type Value = imbl::OrdMap<Vec<u8>, Vec<u8>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of byte strings to byte strings")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut entries: A,
        ) -> Result<Self::Value, A::Error> {
            let mut map = imbl::OrdMap::new();
            while let Some((key, value)) =
                entries.next_entry::<serde_bytes::ByteBuf, serde_bytes::ByteBuf>()?
            {
                map.insert(key.into_vec(), value.into_vec());
            }
            Ok(map)
        }
    }
    deserializer.deserialize_map(Entries)
}

impl KvStore {
    /// The number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the store holds no keys.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }
}

/// A state-changing command; it goes through the log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum KvCommand {
    /// `SET key value`: replies `+OK`.
    Set {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// Its new value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// `MSET k v [k v ...]`: sets each pair in order (a later duplicate wins); `+OK`.
    MSet(#[serde(with = "crate::byte_strings::pairs")] Vec<(Vec<u8>, Vec<u8>)>),
    /// `DEL key [key ...]`: replies with how many keys existed and were removed.
    Del(#[serde(with = "crate::byte_strings::list")] Vec<Vec<u8>>),
    /// `INCR`/`INCRBY`/`DECR`/`DECRBY`: adds `delta` to the key's integer value (a
    /// missing key counts as 0) and replies with the result.
    IncrBy {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// What to add (negative for `DECR`).
        delta: i64,
    },
    /// `APPEND key value`: appends, creating the key if missing; replies with the new
    /// length.
    Append {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The bytes to append.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
}

/// A read-only query; served from the applied state by read-index, never logged.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum KvQuery {
    /// `GET key`: the value, or null.
    Get(#[serde(with = "serde_bytes")] Vec<u8>),
    /// `MGET key [key ...]`: each value or null, in order.
    MGet(#[serde(with = "crate::byte_strings::list")] Vec<Vec<u8>>),
    /// `EXISTS key [key ...]`: how many of the keys exist, counting repeats, like Redis.
    Exists(#[serde(with = "crate::byte_strings::list")] Vec<Vec<u8>>),
    /// `STRLEN key`: the value's length, 0 if missing.
    Strlen(#[serde(with = "serde_bytes")] Vec<u8>),
    /// `DBSIZE`: the number of keys.
    DbSize,
}

/// What a command or query returns; converts to a RESP reply with `Value::from`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum KvOutput {
    /// `+OK`.
    Ok,
    /// An integer reply.
    Integer(i64),
    /// A bulk string, or null for a missing key.
    Bulk(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// An array of bulk strings or nulls (`MGET`).
    Array(#[serde(with = "crate::byte_strings::optional_list")] Vec<Option<Vec<u8>>>),
    /// An error reply, its code included (`"ERR value is not an integer or out of
    /// range"`). The command had no effect.
    Error(String),
}

impl From<KvOutput> for Value {
    fn from(output: KvOutput) -> Self {
        let bulk = |value: Option<Vec<u8>>| value.map_or(Value::Null, Value::Bulk);
        match output {
            KvOutput::Ok => Value::Simple("OK".into()),
            KvOutput::Integer(n) => Value::Integer(n),
            KvOutput::Bulk(value) => bulk(value),
            KvOutput::Array(values) => Value::Array(values.into_iter().map(bulk).collect()),
            KvOutput::Error(message) => Value::Error(message),
        }
    }
}

/// How many bytes postcard's varint takes for `n`: seven bits a byte.
fn varint_bytes(n: u64) -> usize {
    (64 - n.leading_zeros() as usize).div_ceil(7).max(1)
}

/// A length as a RESP integer (lengths never approach i64::MAX; saturate rather than
/// panic regardless).
fn count(n: usize) -> KvOutput {
    KvOutput::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

impl StateMachine for KvStore {
    type Command = KvCommand;
    type Output = KvOutput;
    type Query = KvQuery;
    type QueryOutput = KvOutput;

    fn apply(&mut self, command: &KvCommand) -> KvOutput {
        match command {
            KvCommand::Set { key, value } => {
                self.map.insert(key.clone(), value.clone());
                KvOutput::Ok
            }
            KvCommand::MSet(pairs) => {
                for (key, value) in pairs {
                    self.map.insert(key.clone(), value.clone());
                }
                KvOutput::Ok
            }
            KvCommand::Del(keys) => {
                // A repeated key is removed once and counted once, as in Redis.
                count(
                    keys.iter()
                        .filter(|key| self.map.remove(*key).is_some())
                        .count(),
                )
            }
            KvCommand::IncrBy { key, delta } => {
                let current = match self.map.get(key) {
                    None => 0,
                    Some(value) => match parse_redis_int(value) {
                        Some(n) => n,
                        None => return KvOutput::Error(NOT_AN_INTEGER.into()),
                    },
                };
                match current.checked_add(*delta) {
                    Some(next) => {
                        self.map.insert(key.clone(), next.to_string().into_bytes());
                        KvOutput::Integer(next)
                    }
                    None => KvOutput::Error(OVERFLOW.into()),
                }
            }
            KvCommand::Append { key, value } => {
                let current = self.map.get(key).map_or(0, Vec::len);
                if current.saturating_add(value.len()) > crate::limits::VALUE_BYTES_MAX {
                    return KvOutput::Error(
                        "ERR string exceeds maximum allowed size (proto-max-bulk-len)".into(),
                    );
                }
                let stored = self.map.entry(key.clone()).or_default();
                stored.extend_from_slice(value);
                count(stored.len())
            }
        }
    }

    fn query(&self, query: &KvQuery) -> KvOutput {
        match query {
            KvQuery::Get(key) => KvOutput::Bulk(self.map.get(key).cloned()),
            KvQuery::MGet(keys) => {
                // Sized before it is built: the reply must fit one frame to the
                // client's node and the client's output buffer.
                let reply_bytes: usize = keys
                    .iter()
                    .map(|key| self.map.get(key).map_or(0, Vec::len) + 16)
                    .sum();
                if reply_bytes > crate::limits::REPLY_BYTES_MAX {
                    return KvOutput::Error(format!(
                        "ERR reply of {reply_bytes} bytes exceeds reply_bytes_max ({} bytes): read fewer keys at once",
                        crate::limits::REPLY_BYTES_MAX
                    ));
                }
                KvOutput::Array(keys.iter().map(|key| self.map.get(key).cloned()).collect())
            }
            KvQuery::Exists(keys) => count(
                keys.iter()
                    .filter(|key| self.map.contains_key(*key))
                    .count(),
            ),
            KvQuery::Strlen(key) => count(self.map.get(key).map_or(0, Vec::len)),
            KvQuery::DbSize => count(self.map.len()),
        }
    }

    /// The command's exact encoded size in the log and on the wire (postcard: a
    /// one-byte variant tag, varint lengths and integers), so a slot's byte bound is a
    /// bound on its log record and frame ([`crate::limits`]).
    fn command_bytes(command: &KvCommand) -> usize {
        let bytes = |b: &Vec<u8>| varint_bytes(b.len() as u64) + b.len();
        1 + match command {
            KvCommand::Set { key, value } | KvCommand::Append { key, value } => {
                bytes(key) + bytes(value)
            }
            KvCommand::MSet(pairs) => {
                varint_bytes(pairs.len() as u64)
                    + pairs
                        .iter()
                        .map(|(k, v)| bytes(k) + bytes(v))
                        .sum::<usize>()
            }
            KvCommand::Del(keys) => {
                varint_bytes(keys.len() as u64) + keys.iter().map(bytes).sum::<usize>()
            }
            KvCommand::IncrBy { key, delta } => {
                // Zigzag: small magnitudes of either sign take few bytes.
                let zigzag = ((delta << 1) ^ (delta >> 63)) as u64;
                bytes(key) + varint_bytes(zigzag)
            }
        }
    }
}

/// What one client command asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvRequest {
    /// A command to propose through the log.
    Write(KvCommand),
    /// A query to serve linearizably from the applied state.
    Read(KvQuery),
    /// `PING [message]`: `+PONG`, or the message as a bulk string.
    Ping(Option<Vec<u8>>),
    /// `ECHO message`: the message as a bulk string.
    Echo(Vec<u8>),
    /// `QUIT`: reply `+OK` and close the connection.
    Quit,
    /// `INFO [section ...]`: the sections asked for, joined by spaces, if any.
    Info(Option<String>),
    /// `BALLOT.TRANSFERLEADER [id]`: the leader hands its leadership to node `id` (or
    /// to a peer of its choice) and answers once another node leads. Any node takes
    /// it: one that does not lead forwards it to the leader.
    TransferLeader(Option<usize>),
    /// `BALLOT.MEMBER ADD id | ADD peer-addr client-addr | PROMOTE id | REMOVE id |
    /// REPLACE old new`: the leader proposes the membership change and answers once it
    /// has applied it; any node takes it, forwarding it to the leader. `ADD` with two
    /// addresses adds a new machine under the next id, its addresses entering the log.
    Member(ballot_model::MemberChange),
}

/// The options Redis's `SET` takes; all involve expiry or conditional writes, which
/// this store does not implement.
const SET_OPTIONS: &[&[u8]] = &[
    b"ex", b"px", b"exat", b"pxat", b"keepttl", b"nx", b"xx", b"get",
];

/// Redis's arity rule: a positive arity is the exact argument count (command name
/// included), a negative one the minimum.
pub(crate) fn arity_ok(arity: i32, argc: usize) -> bool {
    let needed = usize::try_from(arity.unsigned_abs()).unwrap_or(usize::MAX);
    if arity >= 0 {
        argc == needed
    } else {
        argc >= needed
    }
}

/// Redis's wrong-arity reply, naming the command in lower case.
pub(crate) fn wrong_arity(name: &str) -> String {
    format!("ERR wrong number of arguments for '{name}' command")
}

/// Redis 7's reply to an unknown command: the name (at most 128 bytes) and its first
/// arguments, each quoted and followed by a space, until about 128 bytes are shown.
fn unknown_command(args: &[Vec<u8>]) -> String {
    let name = args.first().map_or(&[][..], |n| &n[..n.len().min(128)]);
    let mut shown: Vec<u8> = Vec::new();
    for arg in args.iter().skip(1) {
        if shown.len() >= 128 {
            break;
        }
        let room = 128 - shown.len();
        shown.push(b'\'');
        shown.extend_from_slice(&arg[..arg.len().min(room)]);
        shown.extend_from_slice(b"' ");
    }
    let message = format!(
        "ERR unknown command '{}', with args beginning with: {}",
        String::from_utf8_lossy(name),
        String::from_utf8_lossy(&shown)
    );
    // Redis maps CR and LF to spaces so the reply stays one line.
    message.replace(['\r', '\n'], " ")
}

/// Parses an integer argument the way Redis does.
fn integer_arg(arg: &[u8]) -> Result<i64, String> {
    parse_redis_int(arg).ok_or_else(|| NOT_AN_INTEGER.to_string())
}

/// Maps a RESP command (its name matched case-insensitively) to a request.
///
/// # Errors
///
/// The error reply to send, in Redis's words: an unknown command, a wrong number of
/// arguments, a non-integer increment, an unsupported `SET` option.
///
/// ```
/// use ballot_node::kv::{parse_command, KvCommand, KvRequest};
///
/// let args = [b"incrby".to_vec(), b"n".to_vec(), b"5".to_vec()];
/// assert_eq!(
///     parse_command(&args),
///     Ok(KvRequest::Write(KvCommand::IncrBy { key: b"n".to_vec(), delta: 5 }))
/// );
/// assert_eq!(
///     parse_command(&[b"GET".to_vec()]),
///     Err("ERR wrong number of arguments for 'get' command".to_string())
/// );
/// ```
pub fn parse_command(args: &[Vec<u8>]) -> Result<KvRequest, String> {
    let Some(first) = args.first() else {
        return Err("ERR empty command".into());
    };
    let lower = first.to_ascii_lowercase();
    // (name, Redis arity); PING's extra bound (at most one message) is checked below.
    let (name, arity): (&str, i32) = match lower.as_slice() {
        b"ping" => ("ping", -1),
        b"echo" => ("echo", 2),
        b"get" => ("get", 2),
        b"set" => ("set", -3),
        b"del" => ("del", -2),
        b"exists" => ("exists", -2),
        b"incr" => ("incr", 2),
        b"incrby" => ("incrby", 3),
        b"decr" => ("decr", 2),
        b"decrby" => ("decrby", 3),
        b"mget" => ("mget", -2),
        b"mset" => ("mset", -3),
        b"append" => ("append", 3),
        b"strlen" => ("strlen", 2),
        b"dbsize" => ("dbsize", 1),
        b"info" => ("info", -1),
        b"quit" => ("quit", -1),
        b"ballot.transferleader" => ("ballot.transferleader", -1),
        b"ballot.member" => ("ballot.member", -3),
        _ => return Err(unknown_command(args)),
    };
    if !arity_ok(arity, args.len()) {
        return Err(wrong_arity(name));
    }
    let key = || args[1].clone();
    let rest = || args[1..].to_vec();
    let request = match name {
        "ping" => match args.len() {
            1 => KvRequest::Ping(None),
            2 => KvRequest::Ping(Some(args[1].clone())),
            _ => return Err(wrong_arity(name)),
        },
        "echo" => KvRequest::Echo(key()),
        "get" => KvRequest::Read(KvQuery::Get(key())),
        "set" => {
            if args.len() > 3 {
                let unsupported = args[3..]
                    .iter()
                    .any(|option| SET_OPTIONS.contains(&option.to_ascii_lowercase().as_slice()));
                return Err(if unsupported {
                    "ERR SET options (EX, PX, EXAT, PXAT, KEEPTTL, NX, XX, GET) are not supported: expiry and conditional writes are out of scope".into()
                } else {
                    "ERR syntax error".into()
                });
            }
            KvRequest::Write(KvCommand::Set {
                key: key(),
                value: args[2].clone(),
            })
        }
        "del" => KvRequest::Write(KvCommand::Del(rest())),
        "exists" => KvRequest::Read(KvQuery::Exists(rest())),
        "incr" => KvRequest::Write(KvCommand::IncrBy {
            key: key(),
            delta: 1,
        }),
        "decr" => KvRequest::Write(KvCommand::IncrBy {
            key: key(),
            delta: -1,
        }),
        "incrby" => KvRequest::Write(KvCommand::IncrBy {
            key: key(),
            delta: integer_arg(&args[2])?,
        }),
        "decrby" => {
            let delta = integer_arg(&args[2])?;
            // Negating i64::MIN overflows; Redis 7 refuses it with this message.
            let delta = delta
                .checked_neg()
                .ok_or_else(|| "ERR decrement would overflow".to_string())?;
            KvRequest::Write(KvCommand::IncrBy { key: key(), delta })
        }
        "mget" => KvRequest::Read(KvQuery::MGet(rest())),
        "mset" => {
            if args.len().is_multiple_of(2) {
                return Err(wrong_arity(name));
            }
            let pairs = args[1..]
                .chunks_exact(2)
                .map(|pair| (pair[0].clone(), pair[1].clone()))
                .collect();
            KvRequest::Write(KvCommand::MSet(pairs))
        }
        "append" => KvRequest::Write(KvCommand::Append {
            key: key(),
            value: args[2].clone(),
        }),
        "strlen" => KvRequest::Read(KvQuery::Strlen(key())),
        "dbsize" => KvRequest::Read(KvQuery::DbSize),
        "info" => KvRequest::Info(if args.len() > 1 {
            let sections: Vec<_> = args[1..]
                .iter()
                .map(|s| String::from_utf8_lossy(s))
                .collect();
            Some(sections.join(" "))
        } else {
            None
        }),
        "ballot.transferleader" => match &args[1..] {
            [] => KvRequest::TransferLeader(None),
            [id] => KvRequest::TransferLeader(Some(node_id(id)?)),
            _ => return Err(wrong_arity(name)),
        },
        "ballot.member" => KvRequest::Member(parse_member_change(&args[1..])?),
        _ => KvRequest::Quit,
    };
    Ok(request)
}

/// A node id argument.
fn node_id(arg: &[u8]) -> Result<usize, String> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| "ERR the node id must be a non-negative integer".to_string())
}

/// An address a machine is added at: `host:port` with a numeric host, as the node's
/// configuration takes it, in its canonical form.
fn socket_address(arg: &[u8]) -> Result<String, String> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|addr| addr.parse::<std::net::SocketAddr>().ok())
        .map(|addr| addr.to_string())
        .ok_or_else(|| {
            format!(
                "ERR '{}' is no socket address (ip:port)",
                String::from_utf8_lossy(arg)
                    .chars()
                    .take(64)
                    .collect::<String>()
            )
        })
}

/// `ADD id | ADD peer-addr client-addr | PROMOTE id | REMOVE id | REPLACE old new`, the
/// arguments of `BALLOT.MEMBER`.
fn parse_member_change(args: &[Vec<u8>]) -> Result<ballot_model::MemberChange, String> {
    use ballot_model::MemberChange;
    let (sub, ids) = args
        .split_first()
        .ok_or_else(|| wrong_arity("ballot.member"))?;
    let sub = sub.to_ascii_lowercase();
    match (sub.as_slice(), ids) {
        (b"add", [id]) => Ok(MemberChange::AddLearner(node_id(id)?)),
        (b"add", [peer, client]) => Ok(MemberChange::AddAt(ballot_model::MemberAddress::new(
            socket_address(peer)?,
            socket_address(client)?,
        ))),
        (b"promote", [id]) => Ok(MemberChange::Promote(node_id(id)?)),
        (b"remove", [id]) => Ok(MemberChange::Remove(node_id(id)?)),
        (b"replace", [old, new]) => Ok(MemberChange::Replace {
            remove: node_id(old)?,
            promote: node_id(new)?,
        }),
        (b"add" | b"promote" | b"remove" | b"replace", _) => Err(wrong_arity("ballot.member")),
        _ => {
            Err(format!(
            "ERR unknown subcommand '{}' of 'ballot.member': try ADD, PROMOTE, REMOVE or REPLACE",
            String::from_utf8_lossy(&sub).chars().take(64).collect::<String>()
        ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    /// Parses and runs one command against `store`, as the server would.
    fn run(store: &mut KvStore, list: &[&str]) -> Result<KvOutput, String> {
        match parse_command(&args(list))? {
            KvRequest::Write(command) => Ok(store.apply(&command)),
            KvRequest::Read(query) => Ok(store.query(&query)),
            other => panic!("not a key-value request: {other:?}"),
        }
    }

    #[test]
    fn member_changes_name_their_ids() {
        use ballot_model::MemberChange;
        let parse = |list: &[&str]| parse_command(&args(list));
        assert_eq!(
            parse(&["BALLOT.MEMBER", "add", "3"]),
            Ok(KvRequest::Member(MemberChange::AddLearner(3)))
        );
        assert_eq!(
            parse(&["ballot.member", "PROMOTE", "3"]),
            Ok(KvRequest::Member(MemberChange::Promote(3)))
        );
        assert_eq!(
            parse(&["ballot.member", "remove", "0"]),
            Ok(KvRequest::Member(MemberChange::Remove(0)))
        );
        assert_eq!(
            parse(&["ballot.member", "replace", "1", "4"]),
            Ok(KvRequest::Member(MemberChange::Replace {
                remove: 1,
                promote: 4
            }))
        );
        assert_eq!(
            parse(&["ballot.member", "add", "10.0.0.9:7100", "10.0.0.9:6379"]),
            Ok(KvRequest::Member(MemberChange::AddAt(
                ballot_model::MemberAddress::new("10.0.0.9:7100", "10.0.0.9:6379")
            )))
        );
        assert!(parse(&["ballot.member", "add", "1", "2"])
            .unwrap_err()
            .contains("'1' is no socket address"));
        for bad in [
            &["ballot.member", "add"][..],
            &["ballot.member", "add", "1", "2", "3"],
            &["ballot.member", "replace", "1"],
        ] {
            assert_eq!(parse(bad), Err(wrong_arity("ballot.member")), "{bad:?}");
        }
        assert!(parse(&["ballot.member", "add", "-1"])
            .unwrap_err()
            .contains("non-negative integer"));
        assert!(parse(&["ballot.member", "grow", "1"])
            .unwrap_err()
            .contains("unknown subcommand 'grow'"));
    }

    #[test]
    fn transfer_leader_takes_an_optional_member_id() {
        let parse = |list: &[&str]| parse_command(&args(list));
        assert_eq!(
            parse(&["BALLOT.TRANSFERLEADER"]),
            Ok(KvRequest::TransferLeader(None))
        );
        assert_eq!(
            parse(&["ballot.transferleader", "2"]),
            Ok(KvRequest::TransferLeader(Some(2)))
        );
        for bad in ["-1", "x", ""] {
            assert_eq!(
                parse(&["ballot.transferleader", bad]),
                Err("ERR the node id must be a non-negative integer".to_string())
            );
        }
        assert_eq!(
            parse(&["ballot.transferleader", "1", "2"]),
            Err(wrong_arity("ballot.transferleader"))
        );
    }

    #[test]
    fn set_get_and_missing_keys() {
        let mut store = KvStore::default();
        assert_eq!(run(&mut store, &["GET", "k"]), Ok(KvOutput::Bulk(None)));
        assert_eq!(run(&mut store, &["SET", "k", "v"]), Ok(KvOutput::Ok));
        assert_eq!(
            run(&mut store, &["get", "k"]),
            Ok(KvOutput::Bulk(Some(b("v"))))
        );
        assert_eq!(run(&mut store, &["SeT", "k", ""]), Ok(KvOutput::Ok));
        assert_eq!(
            run(&mut store, &["GET", "k"]),
            Ok(KvOutput::Bulk(Some(b(""))))
        );
        assert_eq!(store.get(b"k"), Some(&b""[..]));
        assert_eq!(store.len(), 1);
        assert!(!store.is_empty());
    }

    #[test]
    fn incr_family() {
        let mut store = KvStore::default();
        assert_eq!(run(&mut store, &["INCR", "n"]), Ok(KvOutput::Integer(1)));
        assert_eq!(
            run(&mut store, &["INCRBY", "n", "41"]),
            Ok(KvOutput::Integer(42))
        );
        assert_eq!(run(&mut store, &["DECR", "n"]), Ok(KvOutput::Integer(41)));
        assert_eq!(
            run(&mut store, &["DECRBY", "n", "-9"]),
            Ok(KvOutput::Integer(50))
        );
        assert_eq!(
            run(&mut store, &["DECRBY", "m", "5"]),
            Ok(KvOutput::Integer(-5))
        );
        // The result is stored as its decimal text.
        assert_eq!(
            run(&mut store, &["GET", "m"]),
            Ok(KvOutput::Bulk(Some(b("-5"))))
        );
        assert_eq!(
            run(&mut store, &["APPEND", "m", "0"]),
            Ok(KvOutput::Integer(3))
        );
        assert_eq!(run(&mut store, &["INCR", "m"]), Ok(KvOutput::Integer(-49)));
    }

    #[test]
    fn incr_on_a_non_integer_is_an_error_without_effect() {
        let mut store = KvStore::default();
        for value in ["abc", "1.5", " 1", "01", "+1", "", "99999999999999999999"] {
            run(&mut store, &["SET", "k", value]).unwrap();
            assert_eq!(
                run(&mut store, &["INCR", "k"]),
                Ok(KvOutput::Error(
                    "ERR value is not an integer or out of range".into()
                )),
                "{value:?}"
            );
            assert_eq!(
                run(&mut store, &["GET", "k"]),
                Ok(KvOutput::Bulk(Some(b(value))))
            );
        }
    }

    #[test]
    fn incr_overflow_is_an_error_without_effect() {
        let mut store = KvStore::default();
        let overflow = Ok(KvOutput::Error(
            "ERR increment or decrement would overflow".into(),
        ));
        run(&mut store, &["SET", "k", "9223372036854775807"]).unwrap();
        assert_eq!(run(&mut store, &["INCR", "k"]), overflow);
        assert_eq!(
            run(&mut store, &["DECR", "k"]),
            Ok(KvOutput::Integer(i64::MAX - 1))
        );
        run(&mut store, &["SET", "k", "-9223372036854775808"]).unwrap();
        assert_eq!(run(&mut store, &["DECR", "k"]), overflow);
        assert_eq!(run(&mut store, &["INCRBY", "k", "-1"]), overflow);
        assert_eq!(
            run(&mut store, &["GET", "k"]),
            Ok(KvOutput::Bulk(Some(b("-9223372036854775808"))))
        );
        assert_eq!(
            run(&mut store, &["INCRBY", "k", "9223372036854775807"]),
            Ok(KvOutput::Integer(-1))
        );
        // DECRBY i64::MIN cannot be negated at all.
        assert_eq!(
            parse_command(&args(&["DECRBY", "k", "-9223372036854775808"])),
            Err("ERR decrement would overflow".into())
        );
        // Applying directly with extreme deltas must not panic either.
        let mut store = KvStore::default();
        let min = KvCommand::IncrBy {
            key: b("x"),
            delta: i64::MIN,
        };
        assert_eq!(store.apply(&min), KvOutput::Integer(i64::MIN));
        assert_eq!(store.apply(&min), KvOutput::Error(OVERFLOW.into()));
    }

    #[test]
    fn incrby_needs_an_integer_delta() {
        for delta in ["x", "1.0", "", "+5", "9223372036854775808"] {
            assert_eq!(
                parse_command(&args(&["INCRBY", "k", delta])),
                Err("ERR value is not an integer or out of range".into()),
                "{delta:?}"
            );
            assert_eq!(
                parse_command(&args(&["DECRBY", "k", delta])),
                Err("ERR value is not an integer or out of range".into())
            );
        }
    }

    #[test]
    fn append_creates_and_extends() {
        let mut store = KvStore::default();
        assert_eq!(
            run(&mut store, &["APPEND", "k", "hello"]),
            Ok(KvOutput::Integer(5))
        );
        assert_eq!(
            run(&mut store, &["APPEND", "k", " world"]),
            Ok(KvOutput::Integer(11))
        );
        assert_eq!(
            run(&mut store, &["APPEND", "k", ""]),
            Ok(KvOutput::Integer(11))
        );
        assert_eq!(
            run(&mut store, &["GET", "k"]),
            Ok(KvOutput::Bulk(Some(b("hello world"))))
        );
        assert_eq!(run(&mut store, &["STRLEN", "k"]), Ok(KvOutput::Integer(11)));
        // An empty append still creates the key, as in Redis.
        assert_eq!(
            run(&mut store, &["APPEND", "e", ""]),
            Ok(KvOutput::Integer(0))
        );
        assert_eq!(run(&mut store, &["EXISTS", "e"]), Ok(KvOutput::Integer(1)));
    }

    #[test]
    fn del_counts_removed_keys() {
        let mut store = KvStore::default();
        run(&mut store, &["MSET", "a", "1", "b", "2", "c", "3"]).unwrap();
        assert_eq!(
            run(&mut store, &["DEL", "a", "a", "missing", "b"]),
            Ok(KvOutput::Integer(2))
        );
        assert_eq!(run(&mut store, &["DEL", "a"]), Ok(KvOutput::Integer(0)));
        assert_eq!(run(&mut store, &["DBSIZE"]), Ok(KvOutput::Integer(1)));
        assert_eq!(run(&mut store, &["GET", "a"]), Ok(KvOutput::Bulk(None)));
    }

    #[test]
    fn exists_counts_repeats_like_redis() {
        let mut store = KvStore::default();
        run(&mut store, &["SET", "a", "1"]).unwrap();
        assert_eq!(
            run(&mut store, &["EXISTS", "a", "a", "b", "a"]),
            Ok(KvOutput::Integer(3))
        );
        assert_eq!(run(&mut store, &["EXISTS", "b"]), Ok(KvOutput::Integer(0)));
    }

    #[test]
    fn mset_and_mget() {
        let mut store = KvStore::default();
        assert_eq!(
            run(&mut store, &["MSET", "a", "1", "b", "2", "a", "3"]),
            Ok(KvOutput::Ok)
        );
        assert_eq!(
            run(&mut store, &["MGET", "a", "missing", "b", "a"]),
            Ok(KvOutput::Array(vec![
                Some(b("3")),
                None,
                Some(b("2")),
                Some(b("3"))
            ]))
        );
        assert_eq!(run(&mut store, &["DBSIZE"]), Ok(KvOutput::Integer(2)));
        assert_eq!(
            parse_command(&args(&["MSET", "a", "1", "b"])),
            Err("ERR wrong number of arguments for 'mset' command".into())
        );
    }

    #[test]
    fn strlen_and_dbsize() {
        let mut store = KvStore::default();
        assert_eq!(run(&mut store, &["DBSIZE"]), Ok(KvOutput::Integer(0)));
        assert_eq!(run(&mut store, &["STRLEN", "k"]), Ok(KvOutput::Integer(0)));
        run(&mut store, &["SET", "k", "four"]).unwrap();
        assert_eq!(run(&mut store, &["STRLEN", "k"]), Ok(KvOutput::Integer(4)));
        assert_eq!(run(&mut store, &["DBSIZE"]), Ok(KvOutput::Integer(1)));
    }

    #[test]
    fn connection_commands() {
        let p = |list: &[&str]| parse_command(&args(list));
        assert_eq!(p(&["PING"]), Ok(KvRequest::Ping(None)));
        assert_eq!(p(&["ping", "hi"]), Ok(KvRequest::Ping(Some(b("hi")))));
        assert_eq!(
            p(&["PING", "a", "b"]),
            Err("ERR wrong number of arguments for 'ping' command".into())
        );
        assert_eq!(p(&["ECHO", "x"]), Ok(KvRequest::Echo(b("x"))));
        assert_eq!(p(&["QUIT"]), Ok(KvRequest::Quit));
        assert_eq!(p(&["INFO"]), Ok(KvRequest::Info(None)));
        assert_eq!(
            p(&["INFO", "replication"]),
            Ok(KvRequest::Info(Some("replication".into())))
        );
        assert_eq!(
            p(&["INFO", "server", "clients"]),
            Ok(KvRequest::Info(Some("server clients".into())))
        );
        assert_eq!(p(&[]), Err("ERR empty command".into()));
    }

    #[test]
    fn wrong_arity_is_reported_in_redis_words() {
        let cases: &[(&[&str], &str)] = &[
            (&["GET"], "get"),
            (&["GET", "a", "b"], "get"),
            (&["SET", "a"], "set"),
            (&["ECHO"], "echo"),
            (&["DEL"], "del"),
            (&["EXISTS"], "exists"),
            (&["INCR"], "incr"),
            (&["incrby", "a"], "incrby"),
            (&["DECR", "a", "b"], "decr"),
            (&["DECRBY", "a"], "decrby"),
            (&["MGET"], "mget"),
            (&["MSET"], "mset"),
            (&["MSET", "a"], "mset"),
            (&["APPEND", "a"], "append"),
            (&["STRLEN"], "strlen"),
            (&["DBSIZE", "x"], "dbsize"),
        ];
        for (list, name) in cases {
            assert_eq!(
                parse_command(&args(list)),
                Err(format!(
                    "ERR wrong number of arguments for '{name}' command"
                )),
                "{list:?}"
            );
        }
    }

    #[test]
    fn unknown_commands_are_reported_like_redis() {
        assert_eq!(
            parse_command(&args(&["foo", "a", "b"])),
            Err("ERR unknown command 'foo', with args beginning with: 'a' 'b' ".into())
        );
        assert_eq!(
            parse_command(&args(&["FLUSHALL"])),
            Err("ERR unknown command 'FLUSHALL', with args beginning with: ".into())
        );
        // Arguments are shown only up to about 128 bytes; CR/LF become spaces.
        let long = "x".repeat(200);
        let message = parse_command(&args(&["nope", "a\r\nb", &long, "never"])).unwrap_err();
        assert_eq!(
            message,
            format!(
                "ERR unknown command 'nope', with args beginning with: 'a  b' '{}' ",
                "x".repeat(128 - 7)
            )
        );
        let name = "n".repeat(300);
        let message = parse_command(&args(&[&name])).unwrap_err();
        assert_eq!(
            message,
            format!(
                "ERR unknown command '{}', with args beginning with: ",
                "n".repeat(128)
            )
        );
    }

    #[test]
    fn set_options_are_refused_clearly() {
        for option in ["EX", "px", "NX", "xx", "KEEPTTL", "GET", "exat", "PXAT"] {
            let error = parse_command(&args(&["SET", "k", "v", option, "10"])).unwrap_err();
            assert!(error.starts_with("ERR SET options"), "{option}: {error}");
            assert!(error.contains("not supported"), "{error}");
        }
        assert_eq!(
            parse_command(&args(&["SET", "k", "v", "bogus"])),
            Err("ERR syntax error".into())
        );
    }

    #[test]
    fn outputs_become_resp_replies() {
        let encode = |output: KvOutput| {
            let mut out = Vec::new();
            Value::from(output).encode(&mut out);
            out
        };
        assert_eq!(encode(KvOutput::Ok), b"+OK\r\n");
        assert_eq!(encode(KvOutput::Integer(-3)), b":-3\r\n");
        assert_eq!(encode(KvOutput::Bulk(None)), b"$-1\r\n");
        assert_eq!(encode(KvOutput::Bulk(Some(b("v")))), b"$1\r\nv\r\n");
        assert_eq!(
            encode(KvOutput::Array(vec![Some(b("a")), None])),
            b"*2\r\n$1\r\na\r\n$-1\r\n"
        );
        assert_eq!(encode(KvOutput::Error("ERR boom".into())), b"-ERR boom\r\n");
    }

    #[test]
    fn apply_is_deterministic() {
        let commands = [
            KvCommand::Set {
                key: b("a"),
                value: b("1"),
            },
            KvCommand::IncrBy {
                key: b("a"),
                delta: 5,
            },
            KvCommand::Append {
                key: b("b"),
                value: b("x"),
            },
            KvCommand::MSet(vec![(b("c"), b("3")), (b("d"), b("4"))]),
            KvCommand::Del(vec![b("c"), b("zz")]),
            KvCommand::IncrBy {
                key: b("b"),
                delta: 1,
            },
        ];
        let run_all = || {
            let mut store = KvStore::default();
            let outputs: Vec<_> = commands.iter().map(|c| store.apply(c)).collect();
            (store, outputs)
        };
        let (first, outputs) = run_all();
        assert_eq!(run_all(), (first.clone(), outputs.clone()));
        assert_eq!(
            outputs,
            vec![
                KvOutput::Ok,
                KvOutput::Integer(6),
                KvOutput::Integer(1),
                KvOutput::Ok,
                KvOutput::Integer(1),
                KvOutput::Error(NOT_AN_INTEGER.into()),
            ]
        );
        assert_eq!(first.query(&KvQuery::DbSize), KvOutput::Integer(3));
    }

    #[test]
    fn a_snapshot_claiming_more_keys_than_it_holds_is_an_error_not_an_abort() {
        // A map of 2^60 entries by its length prefix, and no entries: what a 20-byte
        // peer frame found by fuzzing carried. Decoding must fail without reserving.
        let claim = postcard::to_stdvec(&(1u64 << 60)).unwrap();
        assert!(postcard::from_bytes::<KvStore>(&claim).is_err());
        // The real encoding still round-trips.
        let mut store = KvStore::default();
        store.apply(&KvCommand::Set {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        });
        let bytes = postcard::to_stdvec(&store).unwrap();
        assert_eq!(postcard::from_bytes::<KvStore>(&bytes).unwrap(), store);
    }

    fn arbitrary_command() -> impl proptest::strategy::Strategy<Value = KvCommand> {
        use proptest::prelude::*;
        let bytes = || proptest::collection::vec(any::<u8>(), 0..300);
        prop_oneof![
            (bytes(), bytes()).prop_map(|(key, value)| KvCommand::Set { key, value }),
            (bytes(), bytes()).prop_map(|(key, value)| KvCommand::Append { key, value }),
            proptest::collection::vec((bytes(), bytes()), 0..200).prop_map(KvCommand::MSet),
            proptest::collection::vec(bytes(), 0..200).prop_map(KvCommand::Del),
            (bytes(), any::<i64>()).prop_map(|(key, delta)| KvCommand::IncrBy { key, delta }),
        ]
    }

    proptest::proptest! {
        /// The byte bound on a slot is a bound on its log record only if a command
        /// counts exactly what it encodes to.
        #[test]
        fn command_bytes_is_the_encoded_size(command in arbitrary_command()) {
            let encoded = postcard::to_stdvec(&command).unwrap();
            proptest::prop_assert_eq!(KvStore::command_bytes(&command), encoded.len());
        }
    }

    #[test]
    fn command_bytes_is_exact_at_varint_boundaries() {
        for len in [0usize, 127, 128, 16_383, 16_384, 2_097_152] {
            let command = KvCommand::Set {
                key: vec![1; len],
                value: vec![2; 3],
            };
            let encoded = postcard::to_stdvec(&command).unwrap();
            assert_eq!(
                KvStore::command_bytes(&command),
                encoded.len(),
                "key of {len}"
            );
        }
        for delta in [0i64, -1, 63, -64, 64, i64::MIN, i64::MAX] {
            let command = KvCommand::IncrBy { key: vec![], delta };
            let encoded = postcard::to_stdvec(&command).unwrap();
            assert_eq!(
                KvStore::command_bytes(&command),
                encoded.len(),
                "delta {delta}"
            );
        }
    }

    #[test]
    fn an_mget_whose_reply_would_exceed_the_reply_bound_is_an_error() {
        let mut store = KvStore::default();
        let value = vec![7u8; crate::limits::VALUE_BYTES_MAX];
        store.apply(&KvCommand::Set {
            key: b"big".to_vec(),
            value,
        });
        let fits = crate::limits::REPLY_BYTES_MAX / crate::limits::VALUE_BYTES_MAX - 1;
        let reply = store.query(&KvQuery::MGet(vec![b"big".to_vec(); fits]));
        assert!(matches!(reply, KvOutput::Array(values) if values.len() == fits));
        let reply = store.query(&KvQuery::MGet(vec![b"big".to_vec(); fits + 2]));
        assert!(
            matches!(&reply, KvOutput::Error(e) if e.contains("reply_bytes_max")),
            "{reply:?}"
        );
    }

    /// The byte-string encoding is the same bytes as serde's default sequence of
    /// numbers, so logs, snapshots and frames written before it still read back.
    #[test]
    fn byte_strings_encode_as_the_default_sequence_form_did() {
        #[derive(Serialize)]
        enum Before {
            Set { key: Vec<u8>, value: Vec<u8> },
            MSet(Vec<(Vec<u8>, Vec<u8>)>),
        }
        let (key, value) = (b"k\x00\xff".to_vec(), vec![9u8; 300]);
        let now = postcard::to_stdvec(&KvCommand::Set {
            key: key.clone(),
            value: value.clone(),
        })
        .unwrap();
        let then = postcard::to_stdvec(&Before::Set {
            key: key.clone(),
            value: value.clone(),
        })
        .unwrap();
        assert_eq!(now, then);
        let now =
            postcard::to_stdvec(&KvCommand::MSet(vec![(key.clone(), value.clone())])).unwrap();
        let then = postcard::to_stdvec(&Before::MSet(vec![(key.clone(), value.clone())])).unwrap();
        assert_eq!(now, then);
        let mut store = KvStore::default();
        store.apply(&KvCommand::Set {
            key: key.clone(),
            value: value.clone(),
        });
        let map: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = [(key, value)].into();
        #[derive(Serialize)]
        struct Map {
            map: std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
        }
        assert_eq!(
            postcard::to_stdvec(&store).unwrap(),
            postcard::to_stdvec(&Map { map }).unwrap()
        );
    }
}
