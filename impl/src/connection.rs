//! Connection-level commands: the state Redis keeps for each client connection, and
//! the commands that read or change it rather than the key-value store.
//!
//! Client libraries send these on connect before any key is touched: redis-py 8
//! sends `HELLO 3` and `CLIENT SETINFO`, redis-rs `CLIENT SETINFO` (and `HELLO 3`
//! when asked for RESP3), `redis-cli` 7 reads `COMMAND DOCS` for its hints,
//! `redis-benchmark` asks `CONFIG GET save` and `CONFIG GET appendonly`, pools send
//! `SELECT 0`, `CLIENT SETNAME` and `RESET`. A server that refuses them is refused by
//! the clients, so [`Connection::handle`] answers them the way Redis does:
//!
//! - `HELLO [protover [AUTH user pass] [SETNAME name]]` switches between RESP2 and
//!   RESP3 and replies with the server's map (`NOPROTO` for other versions);
//! - `CLIENT ID | GETNAME | SETNAME | SETINFO | INFO | LIST | NO-EVICT | NO-TOUCH |
//!   HELP` (`INFO` and `LIST` describe this connection only);
//! - `SELECT 0` (the one database), `RESET`;
//! - `AUTH`, refused: ballot has no users or passwords;
//! - `CONFIG GET` for the few settings clients probe, from a fixed table;
//! - `COMMAND`, `COMMAND COUNT | INFO | DOCS | LIST | HELP`, from [`COMMANDS`].
//!
//! The module is pure: no I/O and no clock of its own (the age `CLIENT INFO` reports
//! is computed from the instant passed in), so every reply is checked byte for byte
//! in the tests below. Error texts are Redis 7's.
//!
//! ```
//! use ballot_node::connection::Connection;
//! use ballot_node::resp::{Protocol, Value};
//!
//! let mut connection = Connection::new(7, None, None, std::time::Instant::now());
//! let args = |list: &[&str]| list.iter().map(|a| a.as_bytes().to_vec()).collect::<Vec<_>>();
//! assert_eq!(connection.handle(&args(&["GET", "k"])), None, "not a connection command");
//! let reply = connection.handle(&args(&["HELLO", "3"])).unwrap();
//! assert_eq!(connection.protocol(), Protocol::Resp3);
//! assert!(matches!(reply, Value::Map(_)));
//! assert_eq!(connection.handle(&args(&["CLIENT", "ID"])), Some(Value::Integer(7)));
//! ```

use crate::kv::{arity_ok, wrong_arity, NOT_AN_INTEGER};
use crate::resp::{parse_redis_int, Protocol, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The longest client name, library name or library version a connection may set,
/// in bytes. Redis sets no bound of its own; names are short, and every connection
/// holding a large one would add up.
pub const MAX_CLIENT_ATTRIBUTE_BYTES: usize = 1024;

/// How many bytes of a client-supplied word (an unknown option or subcommand) an
/// error reply repeats, like Redis's `%.128s`.
const QUOTED_BYTES_MAX: usize = 128;

/// The next client id; ids are unique within the process and start at 1, as in Redis.
static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);

/// Redis's reply to `AUTH <password>` when no password is configured.
const AUTH_WITHOUT_PASSWORD: &str = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";

/// The reply to `AUTH <user> <password>` and `HELLO ... AUTH`: Redis would accept any
/// password for its password-less default user, but a client that sends credentials
/// expects them to be checked, and ballot checks none.
const AUTH_NOT_SUPPORTED: &str = "ERR AUTH <username> <password> called, but ballot has no users or passwords: clients are not authenticated";

/// The commands [`Connection::handle`] answers, with their Redis arities.
const CONNECTION_COMMANDS: [(&str, i32); 7] = [
    ("hello", -1),
    ("client", -2),
    ("select", 2),
    ("auth", -2),
    ("reset", 1),
    ("config", -2),
    ("command", -1),
];

/// One client connection's state.
#[derive(Clone, Debug)]
pub struct Connection {
    /// Unique within the process; never changes.
    id: u64,
    /// What replies are written in; RESP2 until `HELLO 3`.
    protocol: Protocol,
    /// Set by `CLIENT SETNAME` or `HELLO ... SETNAME`: printable ASCII without
    /// spaces, at most [`MAX_CLIENT_ATTRIBUTE_BYTES`], never empty (empty clears it).
    name: Option<Vec<u8>>,
    /// Set by `CLIENT SETINFO LIB-NAME`; same rules as `name`.
    lib_name: Option<Vec<u8>>,
    /// Set by `CLIENT SETINFO LIB-VER`; same rules as `name`.
    lib_ver: Option<Vec<u8>>,
    /// The client's address, if the socket knew it.
    peer_addr: Option<SocketAddr>,
    /// The server's address this client connected to, if the socket knew it.
    local_addr: Option<SocketAddr>,
    /// When the connection was accepted.
    connected_at: Instant,
}

impl Connection {
    /// A new connection with the next process-wide client id, accepted now.
    pub fn accept(peer_addr: Option<SocketAddr>, local_addr: Option<SocketAddr>) -> Connection {
        let id = NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed);
        Connection::new(id, peer_addr, local_addr, Instant::now())
    }

    /// A new connection with the given id (for tests and callers that allocate ids
    /// themselves), speaking RESP2, with no name.
    pub fn new(
        id: u64,
        peer_addr: Option<SocketAddr>,
        local_addr: Option<SocketAddr>,
        connected_at: Instant,
    ) -> Connection {
        Connection {
            id,
            protocol: Protocol::Resp2,
            name: None,
            lib_name: None,
            lib_ver: None,
            peer_addr,
            local_addr,
            connected_at,
        }
    }

    /// The client id, as `CLIENT ID` and `HELLO` report it.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The protocol replies to this connection must be written in.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The client's name, if it set one.
    pub fn name(&self) -> Option<&[u8]> {
        self.name.as_deref()
    }

    /// Answers `args` if it is a connection-level command, changing this connection's
    /// state as the command asks; `None` if it is not one (the caller then runs it
    /// against the store). Errors are replies too (`Value::Error`), as in Redis.
    ///
    /// The reply to `HELLO` is meant to be written in the protocol it switched to:
    /// encode every reply with [`Connection::protocol`] read after this returns.
    pub fn handle(&mut self, args: &[Vec<u8>]) -> Option<Value> {
        self.handle_at(args, Instant::now())
    }

    /// [`Connection::handle`], with `now` the current time (only `CLIENT INFO` and
    /// `CLIENT LIST` read it, for the connection's age).
    pub fn handle_at(&mut self, args: &[Vec<u8>], now: Instant) -> Option<Value> {
        // Every command passes through here first: find it without allocating.
        let first = args.first()?;
        let &(name, arity) = CONNECTION_COMMANDS
            .iter()
            .find(|(name, _)| first.eq_ignore_ascii_case(name.as_bytes()))?;
        if !arity_ok(arity, args.len()) {
            return Some(Value::Error(wrong_arity(name)));
        }
        let reply = match name {
            "hello" => self.hello(&args[1..]),
            "client" => self.client(&args[1..], now),
            "select" => select(&args[1]),
            "auth" => auth(args.len()),
            "reset" => Ok(self.reset()),
            "config" => config(&args[1..]),
            _ => command(&args[1..]),
        };
        Some(reply.unwrap_or_else(Value::Error))
    }

    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`. Nothing changes unless the
    /// whole command is valid; the reply is in the new protocol.
    fn hello(&mut self, args: &[Vec<u8>]) -> Result<Value, String> {
        let mut protocol = self.protocol;
        let mut options: &[Vec<u8>] = &[];
        if let Some((version, rest)) = args.split_first() {
            let version = parse_redis_int(version)
                .ok_or("ERR Protocol version is not an integer or out of range")?;
            protocol =
                Protocol::from_version(version).ok_or("NOPROTO unsupported protocol version")?;
            options = rest;
        }
        let mut auth = false;
        let mut name = None;
        let mut at = 0;
        while let Some(option) = options.get(at) {
            let more = options.len() - at - 1;
            if option.eq_ignore_ascii_case(b"AUTH") && more >= 2 {
                auth = true;
                at += 3;
            } else if option.eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
                name = Some(&options[at + 1]);
                at += 2;
            } else {
                return Err(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    quoted(option)
                ));
            }
        }
        if auth {
            return Err(AUTH_NOT_SUPPORTED.into());
        }
        if let Some(name) = name {
            self.name = client_attribute(name, "Client names")?;
        }
        self.protocol = protocol;
        Ok(self.hello_reply())
    }

    /// The map `HELLO` replies with, keys as Redis sends them.
    ///
    /// `role` is `master` on every node: any node takes writes (followers forward
    /// them) and reads linearizably, which is what a client infers from `master`;
    /// `replica` would tell it to expect `READONLY` errors that ballot never sends.
    fn hello_reply(&self) -> Value {
        Value::Map(vec![
            (bulk("server"), bulk("ballot")),
            (bulk("version"), bulk(env!("CARGO_PKG_VERSION"))),
            (bulk("proto"), Value::Integer(self.protocol.version())),
            (bulk("id"), Value::Integer(client_id_integer(self.id))),
            (bulk("mode"), bulk("standalone")),
            (bulk("role"), bulk("master")),
            (bulk("modules"), Value::Array(Vec::new())),
        ])
    }

    /// `CLIENT <subcommand> ...`; `args` starts at the subcommand.
    fn client(&mut self, args: &[Vec<u8>], now: Instant) -> Result<Value, String> {
        let sub = args[0].to_ascii_lowercase();
        let (name, arity): (&str, i32) = match sub.as_slice() {
            b"id" => ("client|id", 2),
            b"getname" => ("client|getname", 2),
            b"setname" => ("client|setname", 3),
            b"setinfo" => ("client|setinfo", 4),
            b"info" => ("client|info", 2),
            b"list" => ("client|list", -2),
            b"no-evict" => ("client|no-evict", 3),
            b"no-touch" => ("client|no-touch", 3),
            b"help" => ("client|help", 2),
            _ => return Err(unknown_subcommand("CLIENT", &args[0])),
        };
        // The arity counts the command's own name, which `args` no longer holds.
        if !arity_ok(arity, args.len() + 1) {
            return Err(wrong_arity(name));
        }
        match name {
            "client|id" => Ok(Value::Integer(client_id_integer(self.id))),
            "client|getname" => Ok(self.name.clone().map_or(Value::Null, Value::Bulk)),
            "client|setname" => {
                self.name = client_attribute(&args[1], "Client names")?;
                Ok(ok())
            }
            "client|setinfo" => self.set_info(&args[1], &args[2]),
            "client|info" => Ok(text(self.info_line(now, "client|info"))),
            "client|list" if args.len() == 1 => Ok(text(self.info_line(now, "client|list"))),
            "client|list" => Err("ERR syntax error".into()),
            "client|no-evict" | "client|no-touch" => {
                // Nothing is ever evicted, and no access time is kept: either mode
                // holds already.
                on_off(&args[1]).map(|_| ok())
            }
            _ => Ok(help(&[
                "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "ID",
                "    Return the ID of the current connection.",
                "GETNAME",
                "    Return the name of the current connection.",
                "SETNAME <name>",
                "    Assign the name <name> to the current connection.",
                "SETINFO <LIB-NAME|LIB-VER> <value>",
                "    Set client meta attributes.",
                "INFO",
                "    Return information about the current client connection.",
                "LIST",
                "    Return information about this connection (ballot lists no others).",
                "NO-EVICT (ON|OFF)",
                "    Accepted; ballot evicts nothing.",
                "NO-TOUCH (ON|OFF)",
                "    Accepted; ballot keeps no access times.",
                "HELP",
                "    Print this help.",
            ])),
        }
    }

    /// `CLIENT SETINFO <LIB-NAME|LIB-VER> <value>`.
    fn set_info(&mut self, attribute: &[u8], value: &[u8]) -> Result<Value, String> {
        let slot = if attribute.eq_ignore_ascii_case(b"lib-name") {
            &mut self.lib_name
        } else if attribute.eq_ignore_ascii_case(b"lib-ver") {
            &mut self.lib_ver
        } else {
            return Err(format!("ERR Unrecognized option '{}'", quoted(attribute)));
        };
        *slot = client_attribute(value, &quoted(attribute))?;
        Ok(ok())
    }

    /// `RESET`: back to RESP2, no name, as a new connection would be (the id and the
    /// library attributes stay, as in Redis).
    fn reset(&mut self) -> Value {
        self.protocol = Protocol::Resp2;
        self.name = None;
        Value::Simple("RESET".into())
    }

    /// This connection as one `CLIENT LIST` line, Redis's fields for what ballot
    /// tracks (no buffer or memory figures). `idle` is 0: the connection is running
    /// the command that asks.
    fn info_line(&self, now: Instant, command: &str) -> Vec<u8> {
        let addr = |addr: Option<SocketAddr>| addr.map(|a| a.to_string()).unwrap_or_default();
        let attribute = |value: &Option<Vec<u8>>| {
            String::from_utf8_lossy(value.as_deref().unwrap_or_default()).into_owned()
        };
        format!(
            "id={} addr={} laddr={} name={} age={} idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}\n",
            self.id,
            addr(self.peer_addr),
            addr(self.local_addr),
            attribute(&self.name),
            now.saturating_duration_since(self.connected_at).as_secs(),
            command,
            self.protocol.version(),
            attribute(&self.lib_name),
            attribute(&self.lib_ver),
        )
        .into_bytes()
    }
}

/// `SELECT index`: there is one database, 0.
fn select(index: &[u8]) -> Result<Value, String> {
    // Redis reads the index as a C int.
    let index = parse_redis_int(index)
        .and_then(|index| i32::try_from(index).ok())
        .ok_or(NOT_AN_INTEGER)?;
    if index == 0 {
        Ok(ok())
    } else {
        Err("ERR DB index is out of range".into())
    }
}

/// `AUTH [username] password` (`argc` counts the command name): refused, with Redis's
/// own words for the one-argument form.
fn auth(argc: usize) -> Result<Value, String> {
    Err(match argc {
        2 => AUTH_WITHOUT_PASSWORD.into(),
        3 => AUTH_NOT_SUPPORTED.into(),
        _ => "ERR syntax error".into(),
    })
}

/// The settings `CONFIG GET` reports, by name: what clients probe, with the values
/// that describe ballot in Redis's terms. Every write is in the fsync'd log before it
/// is acknowledged (`appendonly yes`, `appendfsync always`), there are no timed RDB
/// saves (`save ""`), and there is one database.
const CONFIG: &[(&str, &str)] = &[
    ("appendfsync", "always"),
    ("appendonly", "yes"),
    ("databases", "1"),
    ("save", ""),
];

/// `CONFIG <subcommand> ...`; `args` starts at the subcommand.
fn config(args: &[Vec<u8>]) -> Result<Value, String> {
    let sub = args[0].to_ascii_lowercase();
    match sub.as_slice() {
        b"get" if args.len() < 2 => Err(wrong_arity("config|get")),
        b"get" => {
            // A parameter matching several patterns is listed once, in table order.
            let pairs = CONFIG
                .iter()
                .filter(|(name, _)| {
                    args[1..]
                        .iter()
                        .any(|pattern| glob_matches(pattern, name.as_bytes()))
                })
                .map(|(name, value)| (bulk(name), bulk(value)))
                .collect();
            Ok(Value::Map(pairs))
        }
        b"set" | b"resetstat" | b"rewrite" => Err(format!(
            "ERR CONFIG {} is not supported: ballot reads its settings from its configuration file at start-up",
            String::from_utf8_lossy(&sub).to_ascii_uppercase()
        )),
        b"help" if args.len() == 1 => Ok(help(&[
            "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET <pattern>",
            "    Return parameters matching the glob-like <pattern> and their values.",
            "HELP",
            "    Print this help.",
        ])),
        b"help" => Err(wrong_arity("config|help")),
        _ => Err(unknown_subcommand("CONFIG", &args[0])),
    }
}

/// Whether `name` matches the glob `pattern`, ignoring ASCII case: `*` matches any
/// run of bytes, `?` any one byte, everything else itself. (Redis's character classes
/// and escapes are not needed for the few names in [`CONFIG`].) Iterative, so a
/// pattern of many stars costs time proportional to the product of the lengths, and
/// no stack.
fn glob_matches(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // Where the last star was and where in `name` its match currently ends.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c.eq_ignore_ascii_case(&name[n]) => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    // Let the star swallow one more byte and retry after it.
                    star = Some((star_p, star_n + 1));
                    p = star_p + 1;
                    n = star_n + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The kind of one argument in `COMMAND DOCS`, as Redis names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// A key name.
    Key,
    /// Any string.
    String,
    /// A decimal integer.
    Integer,
    /// A group of arguments given together (`key value` in `MSET`).
    Block,
}

impl ArgKind {
    /// The name `COMMAND DOCS` uses.
    fn name(self) -> &'static str {
        match self {
            ArgKind::Key => "key",
            ArgKind::String => "string",
            ArgKind::Integer => "integer",
            ArgKind::Block => "block",
        }
    }
}

/// One argument of a command, for `COMMAND DOCS` (`redis-cli` shows these as hints).
#[derive(Clone, Copy, Debug)]
pub struct ArgSpec {
    /// The argument's name, as shown.
    pub name: &'static str,
    /// What it holds.
    pub kind: ArgKind,
    /// A word that must precede it (`SETNAME` in `HELLO`), if any.
    pub token: Option<&'static str>,
    /// Whether it may be left out.
    pub optional: bool,
    /// Whether it may be repeated.
    pub multiple: bool,
    /// The arguments it groups, for [`ArgKind::Block`]; empty otherwise.
    pub arguments: &'static [ArgSpec],
}

/// What `COMMAND` and `COMMAND DOCS` report about one command.
#[derive(Clone, Copy, Debug)]
pub struct CommandSpec {
    /// The command's name, in lower case.
    pub name: &'static str,
    /// Redis's arity: positive is the exact argument count, negative the minimum,
    /// the command's name included. Matches what the server checks.
    pub arity: i32,
    /// Redis's command flags (`write`, `readonly`, `fast`, ...).
    pub flags: &'static [&'static str],
    /// The position of the first key argument, 0 if none.
    pub first_key: i64,
    /// The position of the last key argument; -1 for "the last argument".
    pub last_key: i64,
    /// The step between key positions.
    pub key_step: i64,
    /// Redis's command group (`string`, `generic`, `connection`, `server`).
    pub group: &'static str,
    /// The Redis version that introduced the command.
    pub since: &'static str,
    /// One sentence on what ballot does with it.
    pub summary: &'static str,
    /// Its time complexity.
    pub complexity: &'static str,
    /// Its arguments.
    pub arguments: &'static [ArgSpec],
}

/// Shorthand for the table: a required, single argument.
const fn arg(name: &'static str, kind: ArgKind) -> ArgSpec {
    ArgSpec {
        name,
        kind,
        token: None,
        optional: false,
        multiple: false,
        arguments: &[],
    }
}

/// Shorthand for the table: an argument that may be repeated.
const fn many(name: &'static str, kind: ArgKind) -> ArgSpec {
    ArgSpec {
        multiple: true,
        ..arg(name, kind)
    }
}

/// Shorthand for the table: an argument that may be left out.
const fn optional(spec: ArgSpec) -> ArgSpec {
    ArgSpec {
        optional: true,
        ..spec
    }
}

/// The flags of a command that only reads and returns at once.
const READ_FAST: &[&str] = &["readonly", "fast"];
/// The flags of a command that writes a bounded amount and returns at once.
const WRITE_FAST: &[&str] = &["write", "denyoom", "fast"];
/// The flags of a connection command that works before authentication and while
/// loading, as Redis marks `HELLO`, `AUTH`, `QUIT` and `RESET`.
const CONNECTION: &[&str] = &[
    "noscript",
    "loading",
    "stale",
    "fast",
    "no_auth",
    "allow_busy",
];
/// The arguments of a command with subcommands (`CLIENT`, `CONFIG`, `COMMAND`).
const SUBCOMMAND_ARGS: &[ArgSpec] = &[
    arg("subcommand", ArgKind::String),
    optional(many("arg", ArgKind::String)),
];
/// A single key.
const KEY: &[ArgSpec] = &[arg("key", ArgKind::Key)];

/// Every command the server accepts, key-value and connection-level alike, sorted by
/// name: what `COMMAND`, `COMMAND COUNT`, `COMMAND INFO`, `COMMAND LIST` and `COMMAND
/// DOCS` report. A test checks each entry's name and arity against the server's own
/// dispatch, so the table cannot drift from what is accepted.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "append",
        arity: 3,
        flags: WRITE_FAST,
        first_key: 1,
        last_key: 1,
        key_step: 1,
        group: "string",
        since: "2.0.0",
        summary: "Appends a string to the value of a key, creating the key if missing.",
        complexity: "O(1)",
        arguments: &[arg("key", ArgKind::Key), arg("value", ArgKind::String)],
    },
    CommandSpec {
        name: "auth",
        arity: -2,
        flags: CONNECTION,
        first_key: 0,
        last_key: 0,
        key_step: 0,
        group: "connection",
        since: "1.0.0",
        summary: "Refused: ballot has no users or passwords.",
        complexity: "O(1)",
        arguments: &[
            optional(arg("username", ArgKind::String)),
            arg("password", ArgKind::String),
        ],
    },
    CommandSpec {
        name: "client",
        arity: -2,
        flags: &["noscript", "loading", "stale"],
        first_key: 0,
        last_key: 0,
        key_step: 0,
        group: "connection",
        since: "2.4.0",
        summary: "Reads or sets this connection's id, name and library (CLIENT HELP lists them).",
        complexity: "O(1)",
        arguments: SUBCOMMAND_ARGS,
    },
    CommandSpec {
        name: "command",
        arity: -1,
        flags: &["loading", "stale"],
        first_key: 0,
        last_key: 0,
        key_step: 0,
        group: "server",
        since: "2.8.13",
        summary: "Describes the commands ballot accepts (COMMAND HELP lists the subcommands).",
        complexity: "O(N) where N is the number of commands",
        arguments: &[
            optional(arg("subcommand", ArgKind::String)),
            optional(many("arg", ArgKind::String)),
        ],
    },
    CommandSpec {
        name: "config",
        arity: -2,
        flags: &["admin", "noscript", "loading", "stale"],
        first_key: 0,
        last_key: 0,
        key_step: 0,
        group: "server",
        since: "2.0.0",
        summary: "CONFIG GET reports the few settings clients probe; nothing can be set.",
        complexity: "O(N) where N is the number of parameters",
        arguments: SUBCOMMAND_ARGS,
    },
    CommandSpec {
        name: "dbsize",
        arity: 1,
        flags: READ_FAST,
        first_key: 0,
        last_key: 0,
        key_step: 0,
        group: "server",
        since: "1.0.0",
        summary: "Returns the number of keys.",
        complexity: "O(1)",
        arguments: &[],
    },
    CommandSpec {
        name: "decr",
        arity: 2,
        flags: WRITE_FAST,
        first_key: 1,
        last_key: 1,
        key_step: 1,
        group: "string",
        since: "1.0.0",
        summary: "Decrements the integer value of a key by one (a missing key counts as 0).",
        complexity: "O(1)",
        arguments: KEY,
    },
    CommandSpec {
        name: "decrby",
        arity: 3,
        flags: WRITE_FAST,
        first_key: 1,
        last_key: 1,
        key_step: 1,
        group: "string",
        since: "1.0.0",
        summary: "Decrements the integer value of a key by a number (a missing key counts as 0).",
        complexity: "O(1)",
        arguments: &[arg("key", ArgKind::Key), arg("decrement", ArgKind::Integer)],
    },
    CommandSpec {
        name: "del",
        arity: -2,
        flags: &["write"],
        first_key: 1,
        last_key: -1,
        key_step: 1,
        group: "generic",
        since: "1.0.0",
        summary: "Deletes keys; returns how many existed.",
        complexity: "O(N) where N is the number of keys",
        arguments: &[many("key", ArgKind::Key)],
    },
    CommandSpec {
        name: "echo",
        arity: 2,
        flags: &["fast"],
        first_key: 0,
        last_key: 0,
        key_step: 0,
        group: "connection",
        since: "1.0.0",
        summary: "Returns the given string.",
        complexity: "O(1)",
        arguments: &[arg("message", ArgKind::String)],
    },
    CommandSpec {
        name: "exists",
        arity: -2,
        flags: READ_FAST,
        first_key: 1,
        last_key: -1,
        key_step: 1,
        group: "generic",
        since: "1.0.0",
        summary: "Counts how many of the keys exist (repeats count again).",
        complexity: "O(N) where N is the number of keys",
        arguments: &[many("key", ArgKind::Key)],
    },
    CommandSpec {
        name: "get",
        arity: 2,
        flags: READ_FAST,
        first_key: 1,
        last_key: 1,
        key_step: 1,
        group: "string",
        since: "1.0.0",
        summary: "Returns the value of a key, linearizably, from any node.",
        complexity: "O(1)",
        arguments: KEY,
    },
    CommandSpec {
        name: "hello",
        arity: -1,
        flags: CONNECTION,
        first_key: 0,
        last_key: 0,
        key_step: 0,
        group: "connection",
        since: "6.0.0",
        summary: "Switches the connection to RESP2 or RESP3 and describes the server.",
        complexity: "O(1)",
        arguments: &[optional(ArgSpec {
            name: "arguments",
            kind: ArgKind::Block,
            token: None,
            optional: false,
            multiple: false,
            arguments: &[
                arg("protover", ArgKind::Integer),
                optional(ArgSpec {
                    token: Some("SETNAME"),
                    ..arg("clientname", ArgKind::String)
                }),
            ],
        })],
    },
    CommandSpec {
        name: "incr",
        arity: 2,
        flags: WRITE_FAST,
        first_key: 1,
        last_key: 1,
        key_step: 1,
        group: "string",
        since: "1.0.0",
        summary: "Increments the integer value of a key by one (a missing key counts as 0).",
        complexity: "O(1)",
        arguments: KEY,
    },
    CommandSpec {
        name: "incrby",
        arity: 3,
        flags: WRITE_FAST,
        first_key: 1,
        last_key: 1,
        key_step: 1,
        group: "string",
        since: "1.0.0",
        summary: "Increments the integer value of a key by a number (a missing key counts as 0).",
        complexity: "O(1)",
        arguments: &[arg("key", ArgKind::Key), arg("increment", ArgKind::Integer)],
    },
    CommandSpec {
        name: "info",
        arity: -1,
        flags: &["loading", "stale"],
        first_key: 0,
        last_key: 0,
        key_step: 0,
        group: "server",
        since: "1.0.0",
        summary: "Returns the node's replication status: role, leader, ballot, indexes, peers.",
        complexity: "O(1)",
        arguments: &[optional(many("section", ArgKind::String))],
    },
    CommandSpec {
        name: "mget",
        arity: -2,
        flags: READ_FAST,
        first_key: 1,
        last_key: -1,
        key_step: 1,
        group: "string",
        since: "1.0.0",
        summary: "Returns the values of keys, null for missing ones.",
        complexity: "O(N) where N is the number of keys",
        arguments: &[many("key", ArgKind::Key)],
    },
    CommandSpec {
        name: "mset",
        arity: -3,
        flags: &["write", "denyoom"],
        first_key: 1,
        last_key: -1,
        key_step: 2,
        group: "string",
        since: "1.0.1",
        summary: "Sets several keys in one replicated write.",
        complexity: "O(N) where N is the number of keys",
        arguments: &[ArgSpec {
            name: "data",
            kind: ArgKind::Block,
            token: None,
            optional: false,
            multiple: true,
            arguments: &[arg("key", ArgKind::Key), arg("value", ArgKind::String)],
        }],
    },
    CommandSpec {
        name: "ping",
        arity: -1,
        flags: &["fast"],
        first_key: 0,
        last_key: 0,
        key_step: 0,
        group: "connection",
        since: "1.0.0",
        summary: "Returns PONG, or the given message.",
        complexity: "O(1)",
        arguments: &[optional(arg("message", ArgKind::String))],
    },
    CommandSpec {
        name: "quit",
        arity: -1,
        flags: CONNECTION,
        first_key: 0,
        last_key: 0,
        key_step: 0,
        group: "connection",
        since: "1.0.0",
        summary: "Closes the connection.",
        complexity: "O(1)",
        arguments: &[],
    },
    CommandSpec {
        name: "reset",
        arity: 1,
        flags: CONNECTION,
        first_key: 0,
        last_key: 0,
        key_step: 0,
        group: "connection",
        since: "6.2.0",
        summary: "Returns the connection to RESP2 with no name.",
        complexity: "O(1)",
        arguments: &[],
    },
    CommandSpec {
        name: "select",
        arity: 2,
        flags: &["loading", "stale", "fast"],
        first_key: 0,
        last_key: 0,
        key_step: 0,
        group: "connection",
        since: "1.0.0",
        summary: "Accepts database 0, the only one.",
        complexity: "O(1)",
        arguments: &[arg("index", ArgKind::Integer)],
    },
    CommandSpec {
        name: "set",
        arity: -3,
        flags: &["write", "denyoom"],
        first_key: 1,
        last_key: 1,
        key_step: 1,
        group: "string",
        since: "1.0.0",
        summary: "Sets the value of a key (no expiry or conditional options).",
        complexity: "O(1)",
        arguments: &[arg("key", ArgKind::Key), arg("value", ArgKind::String)],
    },
    CommandSpec {
        name: "strlen",
        arity: 2,
        flags: READ_FAST,
        first_key: 1,
        last_key: 1,
        key_step: 1,
        group: "string",
        since: "2.2.0",
        summary: "Returns the length of a key's value, 0 if missing.",
        complexity: "O(1)",
        arguments: KEY,
    },
];

/// The spec of the command named `name` (any case).
fn find_command(name: &[u8]) -> Option<&'static CommandSpec> {
    COMMANDS
        .iter()
        .find(|spec| spec.name.as_bytes().eq_ignore_ascii_case(name))
}

/// `COMMAND [subcommand ...]`; `args` starts after `COMMAND`.
fn command(args: &[Vec<u8>]) -> Result<Value, String> {
    let Some((sub, rest)) = args.split_first() else {
        return Ok(Value::Array(COMMANDS.iter().map(command_info).collect()));
    };
    let lower = sub.to_ascii_lowercase();
    match lower.as_slice() {
        b"count" if rest.is_empty() => Ok(Value::Integer(
            i64::try_from(COMMANDS.len()).unwrap_or(i64::MAX),
        )),
        b"count" => Err(wrong_arity("command|count")),
        b"list" if rest.is_empty() => Ok(Value::Array(
            COMMANDS.iter().map(|spec| bulk(spec.name)).collect(),
        )),
        b"list" => Err("ERR syntax error".into()),
        b"info" if rest.is_empty() => Ok(Value::Array(COMMANDS.iter().map(command_info).collect())),
        b"info" => Ok(Value::Array(
            rest.iter()
                .map(|name| find_command(name).map_or(Value::Null, command_info))
                .collect(),
        )),
        b"docs" => {
            // Unknown names are left out, as Redis does.
            let specs: Vec<&CommandSpec> = if rest.is_empty() {
                COMMANDS.iter().collect()
            } else {
                rest.iter().filter_map(|name| find_command(name)).collect()
            };
            Ok(Value::Map(
                specs
                    .into_iter()
                    .map(|spec| (bulk(spec.name), command_docs(spec)))
                    .collect(),
            ))
        }
        b"help" if rest.is_empty() => Ok(help(&[
            "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "(no subcommand)",
            "    Return details about all commands.",
            "COUNT",
            "    Return the total number of commands.",
            "DOCS [<command-name> ...]",
            "    Return documentary information about commands.",
            "INFO [<command-name> ...]",
            "    Return details about the given commands, or all of them.",
            "LIST",
            "    Return the names of all commands.",
            "HELP",
            "    Print this help.",
        ])),
        b"help" => Err(wrong_arity("command|help")),
        _ => Err(unknown_subcommand("COMMAND", sub)),
    }
}

/// One command's `COMMAND INFO` entry, Redis 7's ten fields: name, arity, flags,
/// first key, last key, key step, ACL categories, tips, key specifications and
/// subcommands (the last four empty: ballot has no ACLs, and the key positions say
/// all there is to say about its keys).
fn command_info(spec: &CommandSpec) -> Value {
    Value::Array(vec![
        bulk(spec.name),
        Value::Integer(i64::from(spec.arity)),
        Value::Set(spec.flags.iter().map(|flag| simple(flag)).collect()),
        Value::Integer(spec.first_key),
        Value::Integer(spec.last_key),
        Value::Integer(spec.key_step),
        Value::Set(Vec::new()),
        Value::Set(Vec::new()),
        Value::Array(Vec::new()),
        Value::Array(Vec::new()),
    ])
}

/// One command's `COMMAND DOCS` map; `arguments` is left out when there are none, as
/// Redis does.
fn command_docs(spec: &CommandSpec) -> Value {
    let mut fields = vec![
        (bulk("summary"), bulk(spec.summary)),
        (bulk("since"), bulk(spec.since)),
        (bulk("group"), bulk(spec.group)),
        (bulk("complexity"), bulk(spec.complexity)),
    ];
    if !spec.arguments.is_empty() {
        fields.push((bulk("arguments"), argument_docs(spec.arguments)));
    }
    Value::Map(fields)
}

/// The `arguments` array of `COMMAND DOCS`. `redis-cli` reads every field with an
/// assertion on its type, so each is exactly what Redis sends: bulk strings, and
/// flags as a set of simple strings.
fn argument_docs(arguments: &[ArgSpec]) -> Value {
    Value::Array(
        arguments
            .iter()
            .map(|argument| {
                let mut fields = vec![
                    (bulk("name"), bulk(argument.name)),
                    (bulk("type"), bulk(argument.kind.name())),
                ];
                if let Some(token) = argument.token {
                    fields.push((bulk("token"), bulk(token)));
                }
                let flags: Vec<Value> = [
                    (argument.optional, "optional"),
                    (argument.multiple, "multiple"),
                ]
                .into_iter()
                .filter(|(set, _)| *set)
                .map(|(_, flag)| simple(flag))
                .collect();
                if !flags.is_empty() {
                    fields.push((bulk("flags"), Value::Set(flags)));
                }
                if !argument.arguments.is_empty() {
                    fields.push((bulk("arguments"), argument_docs(argument.arguments)));
                }
                Value::Map(fields)
            })
            .collect(),
    )
}

/// Checks a client name or library attribute (`what` names it in the error): printable
/// ASCII without spaces, as Redis requires so `CLIENT LIST` lines split on spaces, and
/// at most [`MAX_CLIENT_ATTRIBUTE_BYTES`]. Empty clears it (`None`).
fn client_attribute(value: &[u8], what: &str) -> Result<Option<Vec<u8>>, String> {
    if value.len() > MAX_CLIENT_ATTRIBUTE_BYTES {
        return Err(format!(
            "ERR {what} cannot be longer than {MAX_CLIENT_ATTRIBUTE_BYTES} bytes"
        ));
    }
    if value.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
        return Err(format!(
            "ERR {what} cannot contain spaces, newlines or special characters."
        ));
    }
    Ok((!value.is_empty()).then(|| value.to_vec()))
}

/// `ON` or `OFF`, any case.
fn on_off(arg: &[u8]) -> Result<bool, String> {
    if arg.eq_ignore_ascii_case(b"on") {
        Ok(true)
    } else if arg.eq_ignore_ascii_case(b"off") {
        Ok(false)
    } else {
        Err("ERR syntax error".into())
    }
}

/// Redis 7's reply to an unknown subcommand of `command` (given in upper case).
fn unknown_subcommand(command: &str, sub: &[u8]) -> String {
    format!(
        "ERR unknown subcommand '{}'. Try {command} HELP.",
        quoted(sub)
    )
}

/// A client-supplied word for an error reply: at most [`QUOTED_BYTES_MAX`] bytes of
/// it (CR and LF are blanked when the error is written).
fn quoted(word: &[u8]) -> String {
    String::from_utf8_lossy(&word[..word.len().min(QUOTED_BYTES_MAX)]).into_owned()
}

/// A client id as a RESP integer (ids never approach i64::MAX; saturate regardless).
fn client_id_integer(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

/// A `HELP` reply: one simple string per line, as Redis sends it.
fn help(lines: &[&str]) -> Value {
    Value::Array(lines.iter().map(|line| simple(line)).collect())
}

/// Text for a person: verbatim `txt` in RESP3, a bulk string in RESP2.
fn text(text: Vec<u8>) -> Value {
    Value::Verbatim {
        format: *b"txt",
        text,
    }
}

fn bulk(text: &str) -> Value {
    Value::Bulk(text.as_bytes().to_vec())
}

fn simple(text: &str) -> Value {
    Value::Simple(text.into())
}

fn ok() -> Value {
    Value::Simple("OK".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::parse_command;
    use std::time::Duration;

    fn args(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    fn connection(id: u64) -> Connection {
        Connection::new(
            id,
            Some("127.0.0.1:50000".parse().unwrap()),
            Some("127.0.0.1:7001".parse().unwrap()),
            Instant::now(),
        )
    }

    /// Runs `command` and returns the reply as the server would write it: in the
    /// protocol the connection speaks after the command.
    fn wire(connection: &mut Connection, command: &[&str]) -> Vec<u8> {
        let reply = connection
            .handle(&args(command))
            .unwrap_or_else(|| panic!("{command:?} is a connection command"));
        let mut out = Vec::new();
        reply.encode_as(connection.protocol(), &mut out);
        out
    }

    fn error(connection: &mut Connection, command: &[&str]) -> String {
        match connection.handle(&args(command)) {
            Some(Value::Error(message)) => message,
            other => panic!("{command:?} answered {other:?}, not an error"),
        }
    }

    /// The body of the `HELLO` reply after its map or array header.
    fn hello_fields(proto: u8, id: u64) -> String {
        let version = env!("CARGO_PKG_VERSION");
        let id = id.to_string();
        format!(
            "$6\r\nserver\r\n$6\r\nballot\r\n$7\r\nversion\r\n${}\r\n{version}\r\n$5\r\nproto\r\n:{proto}\r\n$2\r\nid\r\n:{id}\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n",
            version.len()
        )
    }

    #[test]
    fn hello_3_switches_to_resp3_and_replies_with_a_map() {
        let mut c = connection(7);
        assert_eq!(c.protocol(), Protocol::Resp2);
        let reply = wire(&mut c, &["HELLO", "3"]);
        assert_eq!(c.protocol(), Protocol::Resp3);
        assert_eq!(reply, format!("%7\r\n{}", hello_fields(3, 7)).into_bytes());
    }

    #[test]
    fn hello_2_replies_with_a_flat_array() {
        let mut c = connection(8);
        assert_eq!(
            wire(&mut c, &["hello", "2"]),
            format!("*14\r\n{}", hello_fields(2, 8)).into_bytes()
        );
        assert_eq!(c.protocol(), Protocol::Resp2);
        // Back from RESP3: the reply is already RESP2.
        wire(&mut c, &["HELLO", "3"]);
        assert_eq!(
            wire(&mut c, &["HELLO", "2"]),
            format!("*14\r\n{}", hello_fields(2, 8)).into_bytes()
        );
        assert_eq!(c.protocol(), Protocol::Resp2);
    }

    #[test]
    fn hello_without_a_version_keeps_the_protocol() {
        let mut c = connection(9);
        wire(&mut c, &["HELLO", "3"]);
        assert_eq!(
            wire(&mut c, &["HELLO"]),
            format!("%7\r\n{}", hello_fields(3, 9)).into_bytes()
        );
        assert_eq!(c.protocol(), Protocol::Resp3);
    }

    #[test]
    fn hello_refuses_other_versions_in_redis_words() {
        let mut c = connection(1);
        for version in ["1", "4", "0", "-3"] {
            assert_eq!(
                wire(&mut c, &["HELLO", version]),
                b"-NOPROTO unsupported protocol version\r\n",
                "{version}"
            );
        }
        for version in ["three", "3.0", "", "99999999999999999999"] {
            assert_eq!(
                error(&mut c, &["HELLO", version]),
                "ERR Protocol version is not an integer or out of range"
            );
        }
        assert_eq!(
            c.protocol(),
            Protocol::Resp2,
            "a refused HELLO changes nothing"
        );
    }

    #[test]
    fn hello_setname_names_the_connection() {
        let mut c = connection(2);
        wire(&mut c, &["HELLO", "3", "SETNAME", "pool-1"]);
        assert_eq!(c.name(), Some(&b"pool-1"[..]));
        assert_eq!(c.protocol(), Protocol::Resp3);
        // A bad name refuses the whole command: neither protocol nor name changes.
        assert_eq!(
            error(&mut c, &["HELLO", "2", "setname", "a b"]),
            "ERR Client names cannot contain spaces, newlines or special characters."
        );
        assert_eq!(c.protocol(), Protocol::Resp3);
        assert_eq!(c.name(), Some(&b"pool-1"[..]));
    }

    #[test]
    fn hello_options_are_checked() {
        let mut c = connection(3);
        assert_eq!(
            error(&mut c, &["HELLO", "3", "SETNAME"]),
            "ERR Syntax error in HELLO option 'SETNAME'"
        );
        assert_eq!(
            error(&mut c, &["HELLO", "3", "AUTH", "default"]),
            "ERR Syntax error in HELLO option 'AUTH'"
        );
        assert_eq!(
            error(&mut c, &["HELLO", "3", "NOPE"]),
            "ERR Syntax error in HELLO option 'NOPE'"
        );
        assert_eq!(
            error(&mut c, &["HELLO", "3", "AUTH", "default", "secret"]),
            AUTH_NOT_SUPPORTED
        );
        assert_eq!(c.protocol(), Protocol::Resp2);
        let long = "x".repeat(1000);
        let message = error(&mut c, &["HELLO", "3", &long]);
        assert_eq!(
            message,
            format!("ERR Syntax error in HELLO option '{}'", &long[..128])
        );
    }

    #[test]
    fn client_setname_getname_and_id() {
        for protocol in ["2", "3"] {
            let mut c = connection(42);
            wire(&mut c, &["HELLO", protocol]);
            let null: &[u8] = if protocol == "3" {
                b"_\r\n"
            } else {
                b"$-1\r\n"
            };
            assert_eq!(wire(&mut c, &["CLIENT", "GETNAME"]), null);
            assert_eq!(wire(&mut c, &["client", "setname", "worker-7"]), b"+OK\r\n");
            assert_eq!(wire(&mut c, &["CLIENT", "GETNAME"]), b"$8\r\nworker-7\r\n");
            assert_eq!(wire(&mut c, &["CLIENT", "ID"]), b":42\r\n");
            // An empty name clears it.
            assert_eq!(wire(&mut c, &["CLIENT", "SETNAME", ""]), b"+OK\r\n");
            assert_eq!(wire(&mut c, &["CLIENT", "GETNAME"]), null);
        }
    }

    #[test]
    fn client_names_are_checked() {
        let mut c = connection(1);
        for bad in ["a b", "a\nb", "caf\u{e9}", "\u{7f}"] {
            assert_eq!(
                error(&mut c, &["CLIENT", "SETNAME", bad]),
                "ERR Client names cannot contain spaces, newlines or special characters.",
                "{bad:?}"
            );
        }
        let long = "n".repeat(MAX_CLIENT_ATTRIBUTE_BYTES + 1);
        assert_eq!(
            error(&mut c, &["CLIENT", "SETNAME", &long]),
            "ERR Client names cannot be longer than 1024 bytes"
        );
        let longest = "n".repeat(MAX_CLIENT_ATTRIBUTE_BYTES);
        assert_eq!(wire(&mut c, &["CLIENT", "SETNAME", &longest]), b"+OK\r\n");
        assert_eq!(c.name(), Some(longest.as_bytes()));
    }

    #[test]
    fn client_setinfo_records_the_library() {
        let mut c = connection(5);
        assert_eq!(
            wire(&mut c, &["CLIENT", "SETINFO", "LIB-NAME", "redis-py"]),
            b"+OK\r\n"
        );
        assert_eq!(
            wire(&mut c, &["CLIENT", "SETINFO", "lib-ver", "8.1.0"]),
            b"+OK\r\n"
        );
        assert_eq!(c.lib_name.as_deref(), Some(&b"redis-py"[..]));
        assert_eq!(c.lib_ver.as_deref(), Some(&b"8.1.0"[..]));
        assert_eq!(
            error(&mut c, &["CLIENT", "SETINFO", "LIB-COLOUR", "red"]),
            "ERR Unrecognized option 'LIB-COLOUR'"
        );
        assert_eq!(
            error(&mut c, &["CLIENT", "SETINFO", "LIB-NAME", "my lib"]),
            "ERR LIB-NAME cannot contain spaces, newlines or special characters."
        );
        assert_eq!(
            error(&mut c, &["CLIENT", "SETINFO", "LIB-NAME"]),
            "ERR wrong number of arguments for 'client|setinfo' command"
        );
        assert_eq!(c.lib_name.as_deref(), Some(&b"redis-py"[..]));
    }

    #[test]
    fn client_info_describes_this_connection() {
        let start = Instant::now();
        let mut c = Connection::new(
            11,
            Some("127.0.0.1:50000".parse().unwrap()),
            Some("[::1]:7001".parse().unwrap()),
            start,
        );
        c.handle(&args(&["CLIENT", "SETNAME", "probe"]));
        c.handle(&args(&["CLIENT", "SETINFO", "LIB-NAME", "redis-rs"]));
        let later = start + Duration::from_secs(5);
        let line = "id=11 addr=127.0.0.1:50000 laddr=[::1]:7001 name=probe age=5 idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 watch=0 cmd=client|info user=default redir=-1 resp=2 lib-name=redis-rs lib-ver=\n";
        let reply = c.handle_at(&args(&["CLIENT", "INFO"]), later).unwrap();
        let mut out = Vec::new();
        reply.encode_as(Protocol::Resp2, &mut out);
        assert_eq!(out, format!("${}\r\n{line}\r\n", line.len()).into_bytes());

        c.handle(&args(&["HELLO", "3"]));
        let reply = c.handle_at(&args(&["CLIENT", "LIST"]), later).unwrap();
        let line = line
            .replace("cmd=client|info", "cmd=client|list")
            .replace("resp=2", "resp=3");
        let mut out = Vec::new();
        reply.encode_as(Protocol::Resp3, &mut out);
        assert_eq!(
            out,
            format!("={}\r\ntxt:{line}\r\n", line.len() + 4).into_bytes()
        );
        assert_eq!(
            error(&mut c, &["CLIENT", "LIST", "TYPE", "pubsub"]),
            "ERR syntax error"
        );
    }

    #[test]
    fn client_no_evict_and_no_touch_take_on_or_off() {
        let mut c = connection(1);
        for sub in ["NO-EVICT", "no-touch"] {
            assert_eq!(wire(&mut c, &["CLIENT", sub, "on"]), b"+OK\r\n");
            assert_eq!(wire(&mut c, &["CLIENT", sub, "OFF"]), b"+OK\r\n");
            assert_eq!(error(&mut c, &["CLIENT", sub, "maybe"]), "ERR syntax error");
        }
    }

    #[test]
    fn client_errors_are_redis_words() {
        let mut c = connection(1);
        assert_eq!(
            error(&mut c, &["CLIENT"]),
            "ERR wrong number of arguments for 'client' command"
        );
        assert_eq!(
            error(&mut c, &["CLIENT", "MAINT_NOTIFICATIONS", "ON"]),
            "ERR unknown subcommand 'MAINT_NOTIFICATIONS'. Try CLIENT HELP."
        );
        assert_eq!(
            error(&mut c, &["CLIENT", "ID", "extra"]),
            "ERR wrong number of arguments for 'client|id' command"
        );
        assert_eq!(
            error(&mut c, &["CLIENT", "SETNAME"]),
            "ERR wrong number of arguments for 'client|setname' command"
        );
        let Some(Value::Array(lines)) = c.handle(&args(&["CLIENT", "HELP"])) else {
            panic!("CLIENT HELP is an array");
        };
        assert!(lines.contains(&Value::Simple("SETNAME <name>".into())));
    }

    #[test]
    fn select_accepts_database_zero_only() {
        for protocol in ["2", "3"] {
            let mut c = connection(1);
            wire(&mut c, &["HELLO", protocol]);
            assert_eq!(wire(&mut c, &["SELECT", "0"]), b"+OK\r\n");
            assert_eq!(
                wire(&mut c, &["select", "1"]),
                b"-ERR DB index is out of range\r\n"
            );
            assert_eq!(
                wire(&mut c, &["SELECT", "-1"]),
                b"-ERR DB index is out of range\r\n"
            );
            for bad in ["x", "0.0", "2147483648", ""] {
                assert_eq!(
                    wire(&mut c, &["SELECT", bad]),
                    b"-ERR value is not an integer or out of range\r\n",
                    "{bad:?}"
                );
            }
            assert_eq!(
                wire(&mut c, &["SELECT"]),
                b"-ERR wrong number of arguments for 'select' command\r\n"
            );
        }
    }

    #[test]
    fn auth_is_refused_clearly() {
        let mut c = connection(1);
        assert_eq!(error(&mut c, &["AUTH", "secret"]), AUTH_WITHOUT_PASSWORD);
        assert!(AUTH_WITHOUT_PASSWORD
            .starts_with("ERR AUTH <password> called without any password configured"));
        assert_eq!(
            error(&mut c, &["AUTH", "default", "secret"]),
            AUTH_NOT_SUPPORTED
        );
        assert_eq!(error(&mut c, &["AUTH", "a", "b", "c"]), "ERR syntax error");
        assert_eq!(
            error(&mut c, &["AUTH"]),
            "ERR wrong number of arguments for 'auth' command"
        );
    }

    #[test]
    fn reset_returns_to_a_fresh_connection() {
        let mut c = connection(4);
        wire(&mut c, &["HELLO", "3", "SETNAME", "x"]);
        assert_eq!(wire(&mut c, &["RESET"]), b"+RESET\r\n");
        assert_eq!(c.protocol(), Protocol::Resp2);
        assert_eq!(c.name(), None);
        assert_eq!(c.id(), 4);
    }

    #[test]
    fn config_get_reports_what_clients_probe() {
        let mut c = connection(1);
        assert_eq!(
            wire(&mut c, &["CONFIG", "GET", "save"]),
            b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
        );
        assert_eq!(
            wire(&mut c, &["CONFIG", "GET", "appendonly"]),
            b"*2\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n"
        );
        assert_eq!(wire(&mut c, &["CONFIG", "GET", "maxmemory"]), b"*0\r\n");
        wire(&mut c, &["HELLO", "3"]);
        assert_eq!(wire(&mut c, &["CONFIG", "GET", "maxmemory"]), b"%0\r\n");
        assert_eq!(
            wire(&mut c, &["CONFIG", "GET", "APPEND*", "appendonly"]),
            b"%2\r\n$11\r\nappendfsync\r\n$6\r\nalways\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n"
        );
        let Some(Value::Map(all)) = c.handle(&args(&["CONFIG", "GET", "*"])) else {
            panic!("CONFIG GET is a map");
        };
        assert_eq!(all.len(), CONFIG.len());
        assert_eq!(
            error(&mut c, &["CONFIG", "GET"]),
            "ERR wrong number of arguments for 'config|get' command"
        );
        assert!(error(&mut c, &["CONFIG", "SET", "save", ""])
            .starts_with("ERR CONFIG SET is not supported"));
        assert_eq!(
            error(&mut c, &["CONFIG", "FROB"]),
            "ERR unknown subcommand 'FROB'. Try CONFIG HELP."
        );
    }

    #[test]
    fn glob_patterns_match_like_redis() {
        let m = |pattern: &str, name: &str| glob_matches(pattern.as_bytes(), name.as_bytes());
        assert!(m("*", "save"));
        assert!(m("*", ""));
        assert!(m("sa?e", "save"));
        assert!(m("SAVE", "save"));
        assert!(m("a*y*", "appendonly"));
        assert!(m("*only", "appendonly"));
        assert!(!m("*only", "appendfsync"));
        assert!(!m("sav", "save"));
        assert!(!m("save?", "save"));
        assert!(!m("", "save"));
        // Many stars cost time, not stack.
        let stars = "*a".repeat(10_000);
        assert!(!m(&stars, &"b".repeat(100)));
    }

    #[test]
    fn command_count_list_info_and_docs() {
        let mut c = connection(1);
        assert_eq!(
            wire(&mut c, &["COMMAND", "COUNT"]),
            format!(":{}\r\n", COMMANDS.len()).into_bytes()
        );
        let Some(Value::Array(names)) = c.handle(&args(&["COMMAND", "LIST"])) else {
            panic!("COMMAND LIST is an array");
        };
        assert_eq!(names.len(), COMMANDS.len());
        assert!(names.contains(&Value::Bulk(b"hello".to_vec())));
        assert_eq!(
            wire(&mut c, &["COMMAND", "INFO", "get", "nosuch"]),
            b"*2\r\n*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n*0\r\n*0\r\n*0\r\n*0\r\n$-1\r\n"
        );
        let Some(Value::Array(all)) = c.handle(&args(&["COMMAND"])) else {
            panic!("COMMAND is an array");
        };
        assert_eq!(all.len(), COMMANDS.len());
        wire(&mut c, &["HELLO", "3"]);
        assert_eq!(
            wire(&mut c, &["COMMAND", "DOCS", "GET", "nosuch"]),
            b"%1\r\n$3\r\nget\r\n%5\r\n$7\r\nsummary\r\n$56\r\nReturns the value of a key, linearizably, from any node.\r\n$5\r\nsince\r\n$5\r\n1.0.0\r\n$5\r\ngroup\r\n$6\r\nstring\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$9\r\narguments\r\n*1\r\n%2\r\n$4\r\nname\r\n$3\r\nkey\r\n$4\r\ntype\r\n$3\r\nkey\r\n"
        );
        // What redis-cli builds its hints from: every command, argument flags as a
        // set of simple strings.
        let Some(Value::Map(docs)) = c.handle(&args(&["COMMAND", "DOCS"])) else {
            panic!("COMMAND DOCS is a map");
        };
        assert_eq!(docs.len(), COMMANDS.len());
        let mset = find_command(b"MSET").unwrap();
        let Value::Map(fields) = command_docs(mset) else {
            panic!("docs are a map");
        };
        let arguments = &fields.last().unwrap().1;
        assert_eq!(
            arguments,
            &Value::Array(vec![Value::Map(vec![
                (bulk("name"), bulk("data")),
                (bulk("type"), bulk("block")),
                (bulk("flags"), Value::Set(vec![simple("multiple")])),
                (
                    bulk("arguments"),
                    Value::Array(vec![
                        Value::Map(vec![
                            (bulk("name"), bulk("key")),
                            (bulk("type"), bulk("key"))
                        ]),
                        Value::Map(vec![
                            (bulk("name"), bulk("value")),
                            (bulk("type"), bulk("string"))
                        ]),
                    ])
                ),
            ])])
        );
        assert_eq!(
            error(&mut c, &["COMMAND", "GETKEYS", "get", "k"]),
            "ERR unknown subcommand 'GETKEYS'. Try COMMAND HELP."
        );
        assert_eq!(
            error(&mut c, &["COMMAND", "COUNT", "x"]),
            "ERR wrong number of arguments for 'command|count' command"
        );
    }

    #[test]
    fn other_commands_are_not_connection_commands() {
        let mut c = connection(1);
        for command in [
            &["GET", "k"][..],
            &["PING"],
            &["SET", "a", "b"],
            &["INFO"],
            &["QUIT"],
        ] {
            assert_eq!(c.handle(&args(command)), None, "{command:?}");
        }
        assert_eq!(c.handle(&[]), None);
    }

    /// Replies with an arity error, from this module or the key-value command table.
    fn wrong_arity_reply(c: &mut Connection, command: &[Vec<u8>]) -> Option<String> {
        let message = match c.handle(command) {
            Some(Value::Error(message)) => message,
            Some(_) => return None,
            None => parse_command(command).err()?,
        };
        message
            .starts_with("ERR wrong number of arguments")
            .then_some(message)
    }

    #[test]
    fn the_command_table_matches_what_the_server_accepts() {
        let names: Vec<&str> = COMMANDS.iter().map(|spec| spec.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted, "sorted by name, no duplicates");
        for spec in COMMANDS {
            let mut c = connection(1);
            let argc = usize::try_from(spec.arity.unsigned_abs()).unwrap();
            // Placeholder arguments: "0" is a valid key, value, integer and index.
            let with = |n: usize| {
                let mut command = vec![spec.name.to_uppercase().into_bytes()];
                command.extend((1..n).map(|_| b"0".to_vec()));
                command
            };
            let command = with(argc);
            let accepted = c.handle(&command).is_some()
                || !matches!(parse_command(&command), Err(m) if m.starts_with("ERR unknown command"));
            assert!(accepted, "{} is not accepted", spec.name);
            assert_eq!(
                wrong_arity_reply(&mut c, &command),
                None,
                "{} with {argc} arguments",
                spec.name
            );
            if argc > 1 {
                assert!(
                    wrong_arity_reply(&mut c, &with(argc - 1)).is_some(),
                    "{} with {} arguments",
                    spec.name,
                    argc - 1
                );
            }
            if spec.arity > 0 {
                assert!(
                    wrong_arity_reply(&mut c, &with(argc + 1)).is_some(),
                    "{} takes exactly {argc}",
                    spec.name
                );
            }
            assert!(
                find_command(spec.name.to_uppercase().as_bytes()).is_some(),
                "{} found in any case",
                spec.name
            );
        }
        // And nothing the server accepts is missing from the table.
        for name in [
            "ping", "echo", "get", "set", "del", "exists", "incr", "incrby", "decr", "decrby",
            "mget", "mset", "append", "strlen", "dbsize", "info", "quit", "hello", "client",
            "select", "auth", "reset", "config", "command",
        ] {
            assert!(find_command(name.as_bytes()).is_some(), "{name} missing");
        }
        let mut c = connection(1);
        assert_eq!(c.handle(&args(&["FLUSHALL"])), None);
        assert!(parse_command(&args(&["FLUSHALL"])).is_err());
    }
}
