//! RESP, the Redis wire protocol (RESP2 and RESP3), as pure functions on byte buffers.
//!
//! The server side is [`parse_request`]: it takes whatever bytes have arrived so far
//! and returns either one complete command (its arguments and how many bytes it used)
//! or `Ok(None)` when more bytes are needed. It is stateless, so the caller simply
//! keeps unconsumed bytes and calls again after the next read. Both forms a Redis
//! server accepts are understood: arrays of bulk strings (what client libraries send)
//! and inline commands (`SET a "b c"\r\n`, what `redis-cli` pipes and telnet send).
//! Requests look the same in both protocol versions; only replies differ.
//!
//! Replies are [`Value`]s, written with [`Value::encode_as`] in the [`Protocol`] the
//! connection negotiated (`HELLO 3` switches a connection to RESP3). A value is one
//! description of a reply for both versions: RESP3's richer types (maps, sets,
//! doubles, booleans, verbatim strings, one null) are written as RESP2 writes them
//! when the client speaks RESP2, the way Redis downgrades its own replies.
//!
//! The client side is [`parse_value`], which reads any RESP2 or RESP3 reply.
//!
//! Bad input never panics and never makes the parser reserve memory for lengths the
//! peer merely claims: buffers are allocated only for bytes that are present, and
//! every length is checked against [`Limits`] first. Error messages copy Redis's
//! wording so clients see what they would see from Redis.
//!
//! ```
//! use ballot_node::resp::{parse_request, Limits, Protocol, Value};
//!
//! let wire = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
//! let (args, used) = parse_request(wire, &Limits::default()).unwrap().unwrap();
//! assert_eq!(args, vec![b"SET".to_vec(), b"k".to_vec(), b"v".to_vec()]);
//! assert_eq!(used, wire.len());
//! // A prefix is not an error, just not a command yet.
//! assert_eq!(parse_request(&wire[..10], &Limits::default()).unwrap(), None);
//!
//! let mut out = Vec::new();
//! Value::Simple("OK".into()).encode(&mut out);
//! assert_eq!(out, b"+OK\r\n");
//!
//! // The same reply, as each protocol version writes it.
//! let reply = Value::Map(vec![(Value::Bulk(b"proto".to_vec()), Value::Integer(3))]);
//! let mut resp2 = Vec::new();
//! reply.encode_as(Protocol::Resp2, &mut resp2);
//! assert_eq!(resp2, b"*2\r\n$5\r\nproto\r\n:3\r\n");
//! let mut resp3 = Vec::new();
//! reply.encode_as(Protocol::Resp3, &mut resp3);
//! assert_eq!(resp3, b"%1\r\n$5\r\nproto\r\n:3\r\n");
//! ```

use std::hash::{Hash, Hasher};
use std::io::Write as _;

/// The version of the wire protocol a connection speaks: RESP2 until the client sends
/// `HELLO 3`, as in Redis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// RESP2, what every connection starts with.
    #[default]
    Resp2,
    /// RESP3, negotiated with `HELLO 3`.
    Resp3,
}

impl Protocol {
    /// The protocol with version number `version` (2 or 3), as `HELLO` names it.
    pub fn from_version(version: i64) -> Option<Protocol> {
        match version {
            2 => Some(Protocol::Resp2),
            3 => Some(Protocol::Resp3),
            _ => None,
        }
    }

    /// The version number, as `HELLO` reports it in `proto`.
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// One reply value (and, as an array of bulk strings, a request).
///
/// The RESP3-only types are written in RESP2 as Redis writes them for a RESP2 client:
/// see [`Value::encode_as`]. Values compare and hash doubles by their bits, so a
/// parsed `nan` equals itself and `Value` can be `Eq`.
#[derive(Clone, Debug)]
pub enum Value {
    /// A simple string, `+OK\r\n`.
    Simple(String),
    /// An error, `-ERR message\r\n`; by convention the first word is the error code.
    /// RESP3's blob errors (`!<len>\r\n...`) are read into this too.
    Error(String),
    /// An integer, `:42\r\n`.
    Integer(i64),
    /// A binary-safe bulk string, `$3\r\nfoo\r\n`.
    Bulk(Vec<u8>),
    /// Null (e.g. `GET` of a missing key): `$-1\r\n` in RESP2, `_\r\n` in RESP3.
    Null,
    /// An array of values, `*2\r\n...`.
    Array(Vec<Value>),
    /// The null array: `*-1\r\n` in RESP2, `_\r\n` in RESP3 (which has one null, read
    /// back as [`Value::Null`]).
    NullArray,
    /// A RESP3 map, `%1\r\n<key><value>`, its pairs in order; in RESP2 a flat array
    /// of keys and values.
    Map(Vec<(Value, Value)>),
    /// A RESP3 set, `~2\r\n...`; in RESP2 an array.
    Set(Vec<Value>),
    /// A RESP3 double, `,1.5\r\n` (also `inf`, `-inf`, `nan`); in RESP2 a bulk string
    /// holding the same text.
    Double(f64),
    /// A RESP3 boolean, `#t\r\n`; in RESP2 the integer 1 or 0.
    Boolean(bool),
    /// A RESP3 verbatim string, `=<len>\r\n<format>:<text>\r\n`, whose three-byte
    /// format says how to show it (`txt`, `mkd`); in RESP2 a bulk string of the text.
    Verbatim {
        /// The format, such as `*b"txt"`.
        format: [u8; 3],
        /// The text itself.
        text: Vec<u8>,
    },
    /// A RESP3 big number, `(12345678901234567890\r\n`: an optional sign and decimal
    /// digits; in RESP2 a bulk string of the digits. Only read, never sent by ballot.
    BigNumber(String),
    /// A RESP3 push, `>2\r\n...`, data the server sends unasked; in RESP2 an array.
    /// Only read, never sent by ballot.
    Push(Vec<Value>),
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        use Value::*;
        match (self, other) {
            (Simple(a), Simple(b)) | (Error(a), Error(b)) | (BigNumber(a), BigNumber(b)) => a == b,
            (Integer(a), Integer(b)) => a == b,
            (Bulk(a), Bulk(b)) => a == b,
            (Null, Null) | (NullArray, NullArray) => true,
            (Array(a), Array(b)) | (Set(a), Set(b)) | (Push(a), Push(b)) => a == b,
            (Map(a), Map(b)) => a == b,
            (Double(a), Double(b)) => a.to_bits() == b.to_bits(),
            (Boolean(a), Boolean(b)) => a == b,
            (
                Verbatim { format, text },
                Verbatim {
                    format: other_format,
                    text: other_text,
                },
            ) => format == other_format && text == other_text,
            _ => false,
        }
    }
}

// Sound: `eq` compares doubles by their bits, which is reflexive.
impl Eq for Value {}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Value::Simple(text) | Value::Error(text) | Value::BigNumber(text) => text.hash(state),
            Value::Integer(n) => n.hash(state),
            Value::Bulk(bytes) => bytes.hash(state),
            Value::Null | Value::NullArray => {}
            Value::Array(items) | Value::Set(items) | Value::Push(items) => items.hash(state),
            Value::Map(pairs) => pairs.hash(state),
            Value::Double(x) => x.to_bits().hash(state),
            Value::Boolean(b) => b.hash(state),
            Value::Verbatim { format, text } => {
                format.hash(state);
                text.hash(state);
            }
        }
    }
}

impl Value {
    /// Appends this value's RESP2 encoding to `out`: the same as
    /// [`encode_as`](Value::encode_as) with [`Protocol::Resp2`], what a connection that
    /// never sent `HELLO 3` reads, and how requests are written.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_as(Protocol::Resp2, out);
    }

    /// Appends this value's encoding in `protocol` to `out`.
    ///
    /// In RESP2, RESP3's types are downgraded as Redis does: a map becomes a flat
    /// array of keys and values, a set or push an array, a boolean the integer 1 or 0,
    /// a double, big number or verbatim string a bulk string of its text. In RESP3,
    /// both nulls are `_`.
    ///
    /// Simple strings and errors cannot carry CR or LF on the wire (they are
    /// line-terminated), so those bytes are replaced by spaces, as Redis does for its
    /// own error replies; everything else is encoded byte for byte.
    pub fn encode_as(&self, protocol: Protocol, out: &mut Vec<u8>) {
        let resp3 = protocol == Protocol::Resp3;
        match self {
            Value::Simple(text) => {
                out.push(b'+');
                push_line(out, text.as_bytes());
            }
            Value::Error(text) => {
                out.push(b'-');
                push_line(out, text.as_bytes());
            }
            Value::Integer(n) => {
                out.push(b':');
                push_number(out, *n);
            }
            Value::Bulk(bytes) => push_bulk(out, b'$', &[bytes]),
            Value::Null if resp3 => out.extend_from_slice(b"_\r\n"),
            Value::Null => out.extend_from_slice(b"$-1\r\n"),
            Value::NullArray if resp3 => out.extend_from_slice(b"_\r\n"),
            Value::NullArray => out.extend_from_slice(b"*-1\r\n"),
            Value::Array(items) => push_aggregate(out, protocol, b'*', items),
            Value::Set(items) => {
                push_aggregate(out, protocol, if resp3 { b'~' } else { b'*' }, items)
            }
            Value::Push(items) => {
                push_aggregate(out, protocol, if resp3 { b'>' } else { b'*' }, items)
            }
            Value::Map(pairs) => {
                if resp3 {
                    out.push(b'%');
                    push_number(out, pairs.len());
                } else {
                    out.push(b'*');
                    push_number(out, pairs.len().saturating_mul(2));
                }
                for (key, value) in pairs {
                    key.encode_as(protocol, out);
                    value.encode_as(protocol, out);
                }
            }
            Value::Double(x) => {
                let text = double_text(*x);
                if resp3 {
                    out.push(b',');
                    push_line(out, text.as_bytes());
                } else {
                    push_bulk(out, b'$', &[text.as_bytes()]);
                }
            }
            Value::Boolean(b) if resp3 => {
                out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" })
            }
            Value::Boolean(b) => out.extend_from_slice(if *b { b":1\r\n" } else { b":0\r\n" }),
            Value::Verbatim { format, text } if resp3 => {
                push_bulk(out, b'=', &[format, b":", text]);
            }
            Value::Verbatim { text, .. } => push_bulk(out, b'$', &[text]),
            Value::BigNumber(digits) if resp3 => {
                out.push(b'(');
                push_line(out, digits.as_bytes());
            }
            Value::BigNumber(digits) => push_bulk(out, b'$', &[digits.as_bytes()]),
        }
    }
}

/// The text of a double as RESP3 writes it: `inf`, `-inf` and `nan` by name, finite
/// numbers in Rust's shortest round-trip form (`1.5`, `1e300`), which RESP3's grammar
/// and every client's float parser accept.
fn double_text(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{x:?}")
    }
}

/// Writes a length-prefixed string (`$`, `=`) whose content is `parts` joined.
fn push_bulk(out: &mut Vec<u8>, kind: u8, parts: &[&[u8]]) {
    out.push(kind);
    push_number(out, parts.iter().map(|part| part.len()).sum::<usize>());
    for part in parts {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes an aggregate header and its items.
fn push_aggregate(out: &mut Vec<u8>, protocol: Protocol, kind: u8, items: &[Value]) {
    out.push(kind);
    push_number(out, items.len());
    for item in items {
        item.encode_as(protocol, out);
    }
}

/// Writes a line's content, with CR/LF neutralised, and its terminator.
fn push_line(out: &mut Vec<u8>, text: &[u8]) {
    out.extend(
        text.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// Writes a decimal number and CRLF.
fn push_number(out: &mut Vec<u8>, n: impl std::fmt::Display) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{n}\r\n");
}

/// Bounds on what a peer may make the parser accept, so a hostile or broken client
/// cannot make the server buffer or allocate without limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest bulk string the protocol admits (Redis's `proto-max-bulk-len`,
    /// 512 MiB): a longer one is a protocol error that closes the connection. Below
    /// it, `max_request_bytes` refuses the request and the connection goes on.
    pub max_bulk_bytes: usize,
    /// The most elements one array may claim (Redis allows 1M arguments).
    pub max_array_len: usize,
    /// The longest inline command or length line (Redis's `PROTO_INLINE_MAX_SIZE`,
    /// 64 KiB); a peer sending more without a line end is in error.
    pub max_inline_bytes: usize,
    /// The largest request, as encoded: a larger one is refused with
    /// [`RespError::RequestTooLarge`], which the connection survives.
    pub max_request_bytes: usize,
}

impl Default for Limits {
    /// The server's limits ([`crate::limits`]).
    fn default() -> Self {
        Limits {
            max_bulk_bytes: MAX_REPLY_BULK_BYTES,
            max_array_len: crate::limits::ARGUMENTS_MAX,
            max_inline_bytes: crate::limits::LINE_BYTES_MAX,
            max_request_bytes: crate::limits::REQUEST_BYTES_MAX,
        }
    }
}

/// The largest bulk string [`parse_value`] accepts in a reply: Redis's own default
/// `proto-max-bulk-len`, so a client can read any value a server may legitimately hold.
pub const MAX_REPLY_BULK_BYTES: usize = 512 << 20;

/// How deeply [`parse_value`] lets arrays nest before refusing, so that a hostile
/// reply of nested array headers cannot exhaust the stack.
pub const MAX_REPLY_DEPTH: usize = 128;

/// Why bytes are not valid RESP. The `Display` text is Redis's wording (without the
/// `ERR ` code), so the server replies `-ERR <message>` and closes the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    /// An array length that is not a number, is below -1, or is over the limit.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// A bulk length that is not a number, is negative where null is not allowed, or
    /// is over the limit.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// An element of a request array that is not a bulk string.
    #[error("Protocol error: expected '$', got '{}'", .0.escape_ascii())]
    ExpectedBulk(u8),
    /// A reply that starts with a byte that is no RESP2 or RESP3 type.
    #[error("Protocol error: invalid type byte '{}'", .0.escape_ascii())]
    InvalidTypeByte(u8),
    /// An integer reply that is not a 64-bit decimal integer.
    #[error("Protocol error: invalid integer")]
    InvalidInteger,
    /// A line ended by CR without LF, or bulk data not followed by CRLF.
    #[error("Protocol error: expected CRLF")]
    ExpectedCrlf,
    /// An array length line longer than the inline limit.
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    /// A bulk length line longer than the inline limit.
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    /// An inline command longer than the inline limit.
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    /// A reply line (simple string, error, integer) longer than the inline limit.
    #[error("Protocol error: too big reply line")]
    TooBigLine,
    /// An inline command with an unterminated quote, or a closing quote followed by
    /// something other than a space.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// Arrays nested deeper than [`MAX_REPLY_DEPTH`].
    #[error("Protocol error: nesting too deep")]
    TooDeep,
    /// A request whose encoding is larger than [`Limits::max_request_bytes`]. Unlike
    /// the others this error is recoverable: feed the rest of the request to
    /// `discard` and the stream is back in sync.
    #[error(
        "request of at least {bytes} bytes exceeds request_bytes_max ({max} bytes); it was not executed"
    )]
    RequestTooLarge {
        /// How large the request is known to be so far.
        bytes: usize,
        /// The limit.
        max: usize,
        /// How to skip the request, from its first byte (feed it the same buffer
        /// [`parse_request`] was given, then what arrives next).
        discard: Discard,
    },
    /// A RESP3 double that is not a number, `inf`, `-inf` or `nan`.
    #[error("Protocol error: invalid double")]
    InvalidDouble,
    /// A RESP3 boolean other than `#t` or `#f`.
    #[error("Protocol error: invalid boolean")]
    InvalidBoolean,
    /// A RESP3 big number that is not an optional sign followed by decimal digits.
    #[error("Protocol error: invalid big number")]
    InvalidBigNumber,
    /// A RESP3 null (`_`) with something before its line end.
    #[error("Protocol error: invalid null")]
    InvalidNull,
    /// A RESP3 verbatim string shorter than its `xxx:` format prefix.
    #[error("Protocol error: invalid verbatim string")]
    InvalidVerbatim,
}

/// The unread rest of a refused request, to be skipped without buffering it: some raw
/// bytes (the rest of a bulk string and its CRLF), then whole bulk strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discard {
    /// Bytes still to skip before the next bulk header.
    bytes: usize,
    /// Whole bulk strings still to skip after them.
    bulks: usize,
}

impl Discard {
    /// Consumes from the start of `buf` what belongs to the refused request. Returns
    /// how many bytes it took and whether the request is now wholly skipped.
    ///
    /// # Errors
    ///
    /// A [`RespError`] if a bulk header of the rest is malformed: the stream cannot be
    /// resynchronised and the connection should be closed.
    ///
    /// ```
    /// use ballot_node::resp::{parse_request, Limits, RespError};
    /// let limits = Limits { max_request_bytes: 32, ..Limits::default() };
    /// let wire = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$40\r\n".to_vec();
    /// let Err(RespError::RequestTooLarge { mut discard, .. }) = parse_request(&wire, &limits) else {
    ///     panic!("too large")
    /// };
    /// // What has arrived so far is all skipped, and more is still to come.
    /// assert_eq!(discard.advance(&wire, &limits).unwrap(), (wire.len(), false));
    /// // Then the value's 40 bytes and CRLF, and the next command.
    /// let mut rest = vec![b'x'; 40];
    /// rest.extend_from_slice(b"\r\n*1\r\n$4\r\nPING\r\n");
    /// assert_eq!(discard.advance(&rest, &limits).unwrap(), (42, true));
    /// let (args, _) = parse_request(&rest[42..], &limits).unwrap().unwrap();
    /// assert_eq!(args, vec![b"PING".to_vec()]);
    /// ```
    pub fn advance(&mut self, buf: &[u8], limits: &Limits) -> Result<(usize, bool), RespError> {
        let mut pos = 0;
        loop {
            let take = self.bytes.min(buf.len() - pos);
            pos += take;
            self.bytes -= take;
            if self.bytes > 0 {
                return Ok((pos, false));
            }
            if self.bulks == 0 {
                return Ok((pos, true));
            }
            let Some((len, start)) = bulk_header(buf, pos, limits)? else {
                return Ok((pos, false));
            };
            self.bytes = len.checked_add(2).ok_or(RespError::InvalidBulkLength)?;
            self.bulks -= 1;
            pos = start;
        }
    }
}

/// Parses Redis's strict decimal integer (its `string2ll`): an optional `-`, then
/// digits without a leading zero (except `0` itself), no `+`, no spaces, in range.
///
/// Shared with the key-value commands so `INCR` accepts exactly what Redis accepts.
pub(crate) fn parse_redis_int(bytes: &[u8]) -> Option<i64> {
    // Redis rejects anything of 21 characters or more before looking at it.
    if bytes.is_empty() || bytes.len() >= 21 {
        return None;
    }
    if bytes == b"0" {
        return Some(0);
    }
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    // Accumulate as a negative number so i64::MIN, whose magnitude has no positive
    // i64, parses too.
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

/// Finds the CRLF that ends the line starting at `start`, looking at most `max`
/// content bytes ahead. Returns the content's end and the position after the CRLF,
/// `None` if the line is not complete yet, or `too_long` if no line end can come
/// within the limit.
fn find_line(
    buf: &[u8],
    start: usize,
    max: usize,
    too_long: RespError,
) -> Result<Option<(usize, usize)>, RespError> {
    let rest = buf.get(start..).unwrap_or_default();
    let window = &rest[..rest.len().min(max.saturating_add(1))];
    match window.iter().position(|&b| b == b'\r') {
        Some(offset) => {
            let cr = start + offset;
            match buf.get(cr + 1) {
                None => Ok(None),
                Some(b'\n') => Ok(Some((cr, cr + 2))),
                Some(_) => Err(RespError::ExpectedCrlf),
            }
        }
        None if rest.len() > max => Err(too_long),
        None => Ok(None),
    }
}

/// Reads the bulk string header `$<len>\r\n` at `pos`: the length (at most the
/// protocol's `max_bulk_bytes`) and where the data starts, or `None` if the header
/// has not wholly arrived. One reading of the header for requests parsed and
/// requests skipped, so both refuse the same things.
fn bulk_header(
    buf: &[u8],
    pos: usize,
    limits: &Limits,
) -> Result<Option<(usize, usize)>, RespError> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    if kind != b'$' {
        return Err(RespError::ExpectedBulk(kind));
    }
    let Some((end, start)) = find_line(
        buf,
        pos + 1,
        limits.max_inline_bytes,
        RespError::TooBigBulkCount,
    )?
    else {
        return Ok(None);
    };
    let len = parse_redis_int(&buf[pos + 1..end])
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n <= limits.max_bulk_bytes)
        .ok_or(RespError::InvalidBulkLength)?;
    Ok(Some((len, start)))
}

/// What [`parse_request`] yields: a command's arguments and the number of bytes it
/// occupied, or `None` while the buffer holds only a prefix of it.
pub type ParsedRequest = Option<(Vec<Vec<u8>>, usize)>;

/// Parses one command from the start of `buf`: its arguments and the number of bytes
/// it occupied, or `Ok(None)` if `buf` holds only a prefix of a command.
///
/// A buffer starting with `*` is an array of bulk strings; anything else is an inline
/// command, a line split on whitespace with Redis's quoting rules (`"..."` with
/// `\n`, `\r`, `\t`, `\b`, `\a`, `\\`, `\"` and `\xHH` escapes; `'...'` with `\'`).
/// An empty array (`*0`, `*-1`) or a blank line yields an empty argument list, which
/// the caller should skip, as Redis does.
///
/// Each call starts from the first byte; a connection that calls again as more bytes
/// arrive uses a [`RequestParser`], which goes on from where it stopped.
///
/// # Errors
///
/// A [`RespError`] for input that can never become a valid command; the connection
/// should then be closed, since the stream cannot be resynchronised.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<ParsedRequest, RespError> {
    RequestParser::default().parse(buf, limits)
}

/// [`parse_request`] for a connection's input as it arrives: it remembers how far it
/// got into a partly received array, so each call costs the bytes that are new since
/// the last one rather than the whole request again.
///
/// Parsing from the first byte on every read made a request of many short arguments
/// (up to [`Limits::max_array_len`], a million, in 6 MiB) arriving in a hundred reads
/// cost a hundred parses of a growing prefix: seconds of a server thread for one
/// request, and a client sending a few bytes at a time could keep a thread busy for as
/// long as it liked.
///
/// The caller's side of the contract: every call passes a buffer that starts at the
/// same request's first byte and holds at least what the previous call saw, until a
/// call returns a request or an error; the parser is then fresh for the next request.
///
/// ```
/// use ballot_node::resp::{Limits, RequestParser};
///
/// let wire = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
/// let mut parser = RequestParser::default();
/// assert_eq!(parser.parse(&wire[..20], &Limits::default()), Ok(None));
/// // On from the second argument: the first is not looked at again.
/// let (args, used) = parser.parse(wire, &Limits::default()).unwrap().unwrap();
/// assert_eq!(args, vec![b"SET".to_vec(), b"k".to_vec(), b"v".to_vec()]);
/// assert_eq!(used, wire.len());
/// ```
#[derive(Clone, Debug, Default)]
pub struct RequestParser {
    /// The array the buffer starts with, while only part of it has arrived.
    partial: Option<PartialArray>,
}

/// How far a partly received array has been parsed.
#[derive(Clone, Debug)]
struct PartialArray {
    /// The arguments the array claims: `1..=max_array_len`.
    count: usize,
    /// Where each complete argument lies, from the request's first byte; fewer than
    /// `count` of them while the array is partial.
    ranges: Vec<std::ops::Range<usize>>,
    /// Where the next argument's `$` header starts, from the request's first byte.
    next: usize,
}

impl RequestParser {
    /// Parses the command at the start of `buf`, going on from the previous call if
    /// that one ended in `Ok(None)`; answers as [`parse_request`] would on `buf`.
    ///
    /// # Errors
    ///
    /// As [`parse_request`].
    pub fn parse(&mut self, buf: &[u8], limits: &Limits) -> Result<ParsedRequest, RespError> {
        match (self.partial.take(), buf.first()) {
            (Some(partial), _) => self.parse_arguments(buf, partial, limits),
            (None, None) => Ok(None),
            (None, Some(b'*')) => match parse_array_header(buf, limits)? {
                ArrayHeader::Incomplete => Ok(None),
                ArrayHeader::Empty { used } => Ok(Some((Vec::new(), used))),
                ArrayHeader::Arguments(partial) => self.parse_arguments(buf, partial, limits),
            },
            (None, Some(_)) => parse_inline(buf, limits),
        }
    }

    /// Parses the array's arguments from `partial.next` on; keeps the progress made if
    /// the buffer ends first.
    fn parse_arguments(
        &mut self,
        buf: &[u8],
        mut partial: PartialArray,
        limits: &Limits,
    ) -> Result<ParsedRequest, RespError> {
        debug_assert!(partial.ranges.len() < partial.count);
        debug_assert!(partial.next <= buf.len(), "the buffer lost bytes it had");
        while partial.ranges.len() < partial.count {
            let index = partial.ranges.len();
            let pos = partial.next;
            let Some((len, start)) = bulk_header(buf, pos, limits)? else {
                self.partial = Some(partial);
                return Ok(None);
            };
            let data_end = start.checked_add(len).ok_or(RespError::InvalidBulkLength)?;
            let after = data_end
                .checked_add(2)
                .ok_or(RespError::InvalidBulkLength)?;
            if after > limits.max_request_bytes {
                // Known too large before its bytes arrive: refuse it now, and tell the
                // caller how to skip the rest rather than buffer it.
                return Err(RespError::RequestTooLarge {
                    bytes: after,
                    max: limits.max_request_bytes,
                    discard: Discard {
                        bytes: after,
                        bulks: partial.count - index - 1,
                    },
                });
            }
            if buf.len() < after {
                self.partial = Some(partial);
                return Ok(None);
            }
            if &buf[data_end..after] != b"\r\n" {
                return Err(RespError::ExpectedCrlf);
            }
            partial.ranges.push(start..data_end);
            partial.next = after;
        }
        let args = partial
            .ranges
            .into_iter()
            .map(|range| buf[range].to_vec())
            .collect();
        Ok(Some((args, partial.next)))
    }
}

/// What an array's `*<n>\r\n` header says.
enum ArrayHeader {
    /// The line has not all arrived.
    Incomplete,
    /// `*0` or `*-1`: no command, `used` bytes long.
    Empty { used: usize },
    /// Arguments follow.
    Arguments(PartialArray),
}

/// Parses the `*<n>\r\n` at the start of `buf`.
fn parse_array_header(buf: &[u8], limits: &Limits) -> Result<ArrayHeader, RespError> {
    let Some((end, next)) = find_line(
        buf,
        1,
        limits.max_inline_bytes,
        RespError::TooBigMultibulkCount,
    )?
    else {
        return Ok(ArrayHeader::Incomplete);
    };
    let count = parse_redis_int(&buf[1..end]).ok_or(RespError::InvalidMultibulkLength)?;
    if count < -1 || usize::try_from(count).is_ok_and(|n| n > limits.max_array_len) {
        return Err(RespError::InvalidMultibulkLength);
    }
    if count <= 0 {
        return Ok(ArrayHeader::Empty { used: next });
    }
    let count = usize::try_from(count).map_err(|_| RespError::InvalidMultibulkLength)?;
    Ok(ArrayHeader::Arguments(PartialArray {
        count,
        // Every bulk takes at least 6 bytes (`$0\r\n\r\n`), which bounds the reservation
        // by what is actually present, not by what the count claims.
        ranges: Vec::with_capacity(count.min(buf.len() / 6 + 1)),
        next,
    }))
}

/// Parses an inline command: one line ended by LF (an optional CR before it is
/// dropped), as Redis accepts from telnet.
fn parse_inline(buf: &[u8], limits: &Limits) -> Result<ParsedRequest, RespError> {
    let window = &buf[..buf.len().min(limits.max_inline_bytes.saturating_add(1))];
    let Some(newline) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() > limits.max_inline_bytes {
            return Err(RespError::TooBigInline);
        }
        return Ok(None);
    };
    let mut line = &buf[..newline];
    if let Some(stripped) = line.strip_suffix(b"\r") {
        line = stripped;
    }
    let args = split_args(line).ok_or(RespError::UnbalancedQuotes)?;
    Ok(Some((args, newline + 1)))
}

/// The whitespace Redis's `isspace` recognises.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// The value of a hexadecimal digit.
fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Splits an inline line into arguments like Redis's `sdssplitargs`; `None` means
/// unbalanced quotes.
fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let n = line.len();
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < n && is_space(line[i]) {
            i += 1;
        }
        if i == n {
            return Some(args);
        }
        let mut current = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            if in_double {
                let c = *line.get(i)?; // end of line inside quotes: unbalanced
                if c == b'\\' && line.get(i + 1) == Some(&b'x') {
                    if let (Some(hi), Some(lo)) = (
                        line.get(i + 2).copied().and_then(hex_value),
                        line.get(i + 3).copied().and_then(hex_value),
                    ) {
                        current.push(hi * 16 + lo);
                        i += 4;
                        continue;
                    }
                }
                if c == b'\\' && i + 1 < n {
                    current.push(match line[i + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                    i += 2;
                } else if c == b'"' {
                    // A closing quote must end the argument.
                    if i + 1 < n && !is_space(line[i + 1]) {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    current.push(c);
                    i += 1;
                }
            } else if in_single {
                let c = *line.get(i)?;
                if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                    current.push(b'\'');
                    i += 2;
                } else if c == b'\'' {
                    if i + 1 < n && !is_space(line[i + 1]) {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    current.push(c);
                    i += 1;
                }
            } else {
                match line.get(i) {
                    None => break,
                    Some(&c) if is_space(c) => {
                        i += 1;
                        break;
                    }
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(&c) => current.push(c),
                }
                i += 1;
            }
        }
        args.push(current);
    }
}

/// Parses one reply from the start of `buf`: the value and the number of bytes it
/// occupied, or `Ok(None)` if `buf` holds only a prefix of it.
///
/// Every RESP2 and RESP3 type is read. A RESP3 null (`_`) reads as [`Value::Null`],
/// and a blob error (`!`) as [`Value::Error`]. A RESP3 attribute (`|`), metadata a
/// server may send ahead of a reply, is read and dropped: the reply after it is
/// returned, and the bytes used include the attribute's.
///
/// Bulk strings up to [`MAX_REPLY_BULK_BYTES`], aggregates up to the default
/// [`Limits::max_array_len`] elements (or pairs, for maps) nested at most
/// [`MAX_REPLY_DEPTH`] deep, and lines up to the default [`Limits::max_inline_bytes`]
/// are accepted.
///
/// ```
/// use ballot_node::resp::{parse_value, Value};
///
/// let (value, used) = parse_value(b"*2\r\n$1\r\na\r\n$-1\r\n").unwrap().unwrap();
/// assert_eq!(value, Value::Array(vec![Value::Bulk(b"a".to_vec()), Value::Null]));
/// assert_eq!(used, 16);
///
/// let (value, _) = parse_value(b"%1\r\n+proto\r\n:3\r\n").unwrap().unwrap();
/// assert_eq!(value, Value::Map(vec![(Value::Simple("proto".into()), Value::Integer(3))]));
/// assert_eq!(parse_value(b"_\r\n").unwrap(), Some((Value::Null, 3)));
/// ```
///
/// # Errors
///
/// A [`RespError`] for bytes that can never become a valid reply.
pub fn parse_value(buf: &[u8]) -> Result<Option<(Value, usize)>, RespError> {
    let limits = Limits {
        max_bulk_bytes: MAX_REPLY_BULK_BYTES,
        ..Limits::default()
    };
    value_at(buf, 0, &limits, 0)
}

/// What the value parsers yield: a value and the position after it, or `None` while
/// the buffer holds only a prefix of it.
type Parsed<T> = Result<Option<(T, usize)>, RespError>;

/// Parses the value starting at `pos`; returns it and the position after it.
fn value_at(buf: &[u8], mut pos: usize, limits: &Limits, depth: usize) -> Parsed<Value> {
    // Attributes annotate the reply that follows them: skip each (each is at least
    // `|0\r\n`, so the loop moves forward and ends with the buffer).
    loop {
        let Some(&kind) = buf.get(pos) else {
            return Ok(None);
        };
        if !matches!(
            kind,
            b'+' | b'-'
                | b':'
                | b'$'
                | b'*'
                | b'_'
                | b','
                | b'#'
                | b'('
                | b'!'
                | b'='
                | b'%'
                | b'~'
                | b'>'
                | b'|'
        ) {
            return Err(RespError::InvalidTypeByte(kind));
        }
        let Some((end, next)) =
            find_line(buf, pos + 1, limits.max_inline_bytes, RespError::TooBigLine)?
        else {
            return Ok(None);
        };
        let line = &buf[pos + 1..end];
        if kind == b'|' {
            let Some((_, after)) = items_at(buf, next, line, 2, limits, depth)? else {
                return Ok(None);
            };
            pos = after;
            continue;
        }
        return scalar_or_aggregate(buf, kind, line, next, limits, depth);
    }
}

/// Parses the value of type `kind` whose header line is `line`, its body (if any)
/// starting at `next`.
fn scalar_or_aggregate(
    buf: &[u8],
    kind: u8,
    line: &[u8],
    next: usize,
    limits: &Limits,
    depth: usize,
) -> Parsed<Value> {
    let text = || String::from_utf8_lossy(line).into_owned();
    let value = match kind {
        b'+' => Value::Simple(text()),
        b'-' => Value::Error(text()),
        b':' => Value::Integer(parse_redis_int(line).ok_or(RespError::InvalidInteger)?),
        b'_' if line.is_empty() => Value::Null,
        b'_' => return Err(RespError::InvalidNull),
        b'#' => match line {
            b"t" => Value::Boolean(true),
            b"f" => Value::Boolean(false),
            _ => return Err(RespError::InvalidBoolean),
        },
        b',' => Value::Double(
            std::str::from_utf8(line)
                .ok()
                .and_then(|text| text.parse::<f64>().ok())
                .ok_or(RespError::InvalidDouble)?,
        ),
        b'(' => {
            let digits = line
                .strip_prefix(b"-")
                .or(line.strip_prefix(b"+"))
                .unwrap_or(line);
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Err(RespError::InvalidBigNumber);
            }
            Value::BigNumber(text())
        }
        b'$' if line == b"-1" => Value::Null,
        b'$' | b'!' | b'=' => {
            let Some((data, after)) = bulk_at(buf, next, line, limits)? else {
                return Ok(None);
            };
            let value = match kind {
                b'$' => Value::Bulk(data.to_vec()),
                b'!' => Value::Error(String::from_utf8_lossy(data).into_owned()),
                _ => match data {
                    [a, b, c, b':', text @ ..] => Value::Verbatim {
                        format: [*a, *b, *c],
                        text: text.to_vec(),
                    },
                    _ => return Err(RespError::InvalidVerbatim),
                },
            };
            return Ok(Some((value, after)));
        }
        b'*' if line == b"-1" => Value::NullArray,
        b'%' => {
            let Some((items, after)) = items_at(buf, next, line, 2, limits, depth)? else {
                return Ok(None);
            };
            let mut items = items.into_iter();
            let mut pairs = Vec::with_capacity(items.len() / 2);
            while let (Some(key), Some(value)) = (items.next(), items.next()) {
                pairs.push((key, value));
            }
            return Ok(Some((Value::Map(pairs), after)));
        }
        _ => {
            let Some((items, after)) = items_at(buf, next, line, 1, limits, depth)? else {
                return Ok(None);
            };
            let value = match kind {
                b'~' => Value::Set(items),
                b'>' => Value::Push(items),
                _ => Value::Array(items),
            };
            return Ok(Some((value, after)));
        }
    };
    Ok(Some((value, next)))
}

/// Reads the data of a length-prefixed string whose length line is `line`, starting
/// at `next`; returns the data and the position after its CRLF.
fn bulk_at<'a>(buf: &'a [u8], next: usize, line: &[u8], limits: &Limits) -> Parsed<&'a [u8]> {
    let len = parse_redis_int(line)
        .and_then(|len| usize::try_from(len).ok())
        .filter(|&len| len <= limits.max_bulk_bytes)
        .ok_or(RespError::InvalidBulkLength)?;
    let data_end = next.checked_add(len).ok_or(RespError::InvalidBulkLength)?;
    let after = data_end
        .checked_add(2)
        .ok_or(RespError::InvalidBulkLength)?;
    if buf.len() < after {
        return Ok(None);
    }
    if &buf[data_end..after] != b"\r\n" {
        return Err(RespError::ExpectedCrlf);
    }
    Ok(Some((&buf[next..data_end], after)))
}

/// Reads the elements of an aggregate whose count line is `line`, starting at `next`:
/// `count * per_entry` values (2 per entry for maps and attributes).
fn items_at(
    buf: &[u8],
    next: usize,
    line: &[u8],
    per_entry: usize,
    limits: &Limits,
    depth: usize,
) -> Parsed<Vec<Value>> {
    let count = parse_redis_int(line)
        .and_then(|count| usize::try_from(count).ok())
        .filter(|&count| count <= limits.max_array_len)
        .ok_or(RespError::InvalidMultibulkLength)?;
    if count > 0 && depth >= MAX_REPLY_DEPTH {
        return Err(RespError::TooDeep);
    }
    let total = count.saturating_mul(per_entry);
    // Every element takes at least 3 bytes (`+\r\n`): reserve no more than the bytes
    // present could hold.
    let mut items = Vec::with_capacity(total.min(buf.len().saturating_sub(next) / 3));
    let mut at = next;
    for _ in 0..total {
        let Some((item, after)) = value_at(buf, at, limits, depth + 1)? else {
            return Ok(None);
        };
        items.push(item);
        at = after;
    }
    Ok(Some((items, at)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    fn encode(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        value.encode(&mut out);
        out
    }

    fn request(list: &[&str]) -> Vec<u8> {
        encode(&Value::Array(
            list.iter()
                .map(|a| Value::Bulk(a.as_bytes().to_vec()))
                .collect(),
        ))
    }

    fn parse(buf: &[u8]) -> Result<ParsedRequest, RespError> {
        parse_request(buf, &Limits::default())
    }

    /// Runs the server's loop over `input` delivered in the given chunks.
    fn drive(chunks: &[&[u8]], limits: &Limits) -> Result<Vec<Vec<Vec<u8>>>, RespError> {
        let mut buffer = Vec::new();
        let mut commands = Vec::new();
        for chunk in chunks {
            buffer.extend_from_slice(chunk);
            while let Some((command, used)) = parse_request(&buffer, limits)? {
                assert!(used > 0 && used <= buffer.len());
                buffer.drain(..used);
                commands.push(command);
            }
        }
        assert!(buffer.is_empty(), "leftover bytes {buffer:?}");
        Ok(commands)
    }

    #[test]
    fn parses_a_multibulk_request() {
        let wire = request(&["SET", "key", "value"]);
        assert_eq!(
            parse(&wire),
            Ok(Some((args(&["SET", "key", "value"]), wire.len())))
        );
    }

    #[test]
    fn bulk_strings_are_binary_safe() {
        let wire = b"*2\r\n$3\r\nSET\r\n$4\r\n\r\n\0\xff\r\n";
        let (parsed, used) = parse(wire).unwrap().unwrap();
        assert_eq!(parsed, vec![b"SET".to_vec(), b"\r\n\0\xff".to_vec()]);
        assert_eq!(used, wire.len());
    }

    #[test]
    fn every_proper_prefix_needs_more_bytes() {
        let wire = request(&["SET", "k", "a longer value", ""]);
        for cut in 0..wire.len() {
            assert_eq!(parse(&wire[..cut]), Ok(None), "prefix of {cut} bytes");
        }
        assert_eq!(parse(&wire).unwrap().unwrap().1, wire.len());
        let inline = b"SET a \"b c\"\r\n";
        for cut in 0..inline.len() {
            assert_eq!(
                parse(&inline[..cut]),
                Ok(None),
                "inline prefix of {cut} bytes"
            );
        }
    }

    #[test]
    fn pipelined_requests_split_at_every_byte_boundary() {
        let mut wire = Vec::new();
        wire.extend(request(&["SET", "a", "1"]));
        wire.extend(b"PING\r\n");
        wire.extend(request(&["GET", "a"]));
        wire.extend(b"*0\r\n");
        wire.extend(b"ECHO 'x y'\n");
        wire.extend(request(&["MSET", "k1", "", "k2", "v2"]));
        let expected = vec![
            args(&["SET", "a", "1"]),
            args(&["PING"]),
            args(&["GET", "a"]),
            vec![],
            args(&["ECHO", "x y"]),
            args(&["MSET", "k1", "", "k2", "v2"]),
        ];
        let limits = Limits::default();
        for cut in 0..=wire.len() {
            let (first, second) = wire.split_at(cut);
            assert_eq!(
                drive(&[first, second], &limits),
                Ok(expected.clone()),
                "cut at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(drive(&bytes, &limits), Ok(expected));
    }

    #[test]
    fn inline_commands_split_on_whitespace() {
        assert_eq!(parse(b"PING\r\n"), Ok(Some((args(&["PING"]), 6))));
        assert_eq!(parse(b"PING\n"), Ok(Some((args(&["PING"]), 5))));
        assert_eq!(
            parse(b"  SET\ta   b \r\n"),
            Ok(Some((args(&["SET", "a", "b"]), 14)))
        );
        assert_eq!(parse(b"\r\n"), Ok(Some((vec![], 2))));
        assert_eq!(parse(b"   \n"), Ok(Some((vec![], 4))));
        assert_eq!(parse(b"PING"), Ok(None));
    }

    #[test]
    fn inline_commands_honour_quotes_and_escapes() {
        let line = b"SET \"a b\" \"x\\n\\x41\\\"\\\\\" 'it\\'s' \"\" ''\r\n";
        let (parsed, used) = parse(line).unwrap().unwrap();
        assert_eq!(
            parsed,
            vec![
                b"SET".to_vec(),
                b"a b".to_vec(),
                b"x\nA\"\\".to_vec(),
                b"it's".to_vec(),
                b"".to_vec(),
                b"".to_vec(),
            ]
        );
        assert_eq!(used, line.len());
        // Redis joins a quoted part onto an unquoted prefix.
        assert_eq!(parse(b"a\"b c\"\n").unwrap().unwrap().0, args(&["ab c"]));
    }

    #[test]
    fn inline_unbalanced_quotes_are_errors() {
        for line in [
            &b"SET \"a\r\n"[..],
            b"SET 'a\n",
            b"SET \"a\"b\n",
            b"SET 'a'b\n",
            b"GET \"\\\n",
        ] {
            assert_eq!(parse(line), Err(RespError::UnbalancedQuotes), "{line:?}");
        }
        assert_eq!(
            RespError::UnbalancedQuotes.to_string(),
            "Protocol error: unbalanced quotes in request"
        );
    }

    #[test]
    fn empty_and_null_arrays_are_empty_commands() {
        assert_eq!(parse(b"*0\r\n"), Ok(Some((vec![], 4))));
        assert_eq!(parse(b"*-1\r\n"), Ok(Some((vec![], 5))));
    }

    #[test]
    fn bad_multibulk_lengths_are_errors() {
        for wire in [
            &b"*x\r\n"[..],
            b"*\r\n",
            b"*-2\r\n",
            b"*+1\r\n",
            b"*01\r\n",
            b"* 1\r\n",
            b"*99999999999999999999999\r\n",
        ] {
            assert_eq!(
                parse(wire),
                Err(RespError::InvalidMultibulkLength),
                "{wire:?}"
            );
        }
        assert_eq!(
            RespError::InvalidMultibulkLength.to_string(),
            "Protocol error: invalid multibulk length"
        );
    }

    #[test]
    fn bad_bulk_lengths_are_errors() {
        for wire in [
            &b"*1\r\n$x\r\n"[..],
            b"*1\r\n$-1\r\n",
            b"*1\r\n$-5\r\n",
            b"*1\r\n$\r\n",
            b"*1\r\n$1a\r\n",
        ] {
            assert_eq!(parse(wire), Err(RespError::InvalidBulkLength), "{wire:?}");
        }
        assert_eq!(
            RespError::InvalidBulkLength.to_string(),
            "Protocol error: invalid bulk length"
        );
    }

    #[test]
    fn array_elements_must_be_bulk_strings() {
        assert_eq!(parse(b"*1\r\n:1\r\n"), Err(RespError::ExpectedBulk(b':')));
        assert_eq!(
            RespError::ExpectedBulk(b':').to_string(),
            "Protocol error: expected '$', got ':'"
        );
        assert_eq!(
            RespError::ExpectedBulk(0).to_string(),
            "Protocol error: expected '$', got '\\x00'"
        );
    }

    #[test]
    fn missing_crlf_is_an_error() {
        assert_eq!(parse(b"*1\r\n$3\r\nabcXY"), Err(RespError::ExpectedCrlf));
        assert_eq!(parse(b"*1\r\n$3\r\nabc\rX"), Err(RespError::ExpectedCrlf));
        assert_eq!(parse(b"*1\rX"), Err(RespError::ExpectedCrlf));
        assert_eq!(parse(b"*1\r\n$3\rX"), Err(RespError::ExpectedCrlf));
        // Only the terminator's first byte present: wait for the second.
        assert_eq!(parse(b"*1\r\n$3\r\nabc\r"), Ok(None));
    }

    #[test]
    fn limits_are_enforced() {
        let limits = Limits {
            max_bulk_bytes: 4,
            max_array_len: 2,
            max_inline_bytes: 8,
            max_request_bytes: 1 << 20,
        };
        assert!(parse_request(b"*1\r\n$4\r\nabcd\r\n", &limits)
            .unwrap()
            .is_some());
        assert_eq!(
            parse_request(b"*1\r\n$5\r\n", &limits),
            Err(RespError::InvalidBulkLength)
        );
        assert!(parse_request(b"*2\r\n$1\r\na\r\n$1\r\nb\r\n", &limits)
            .unwrap()
            .is_some());
        assert_eq!(
            parse_request(b"*3\r\n", &limits),
            Err(RespError::InvalidMultibulkLength)
        );
        // Length lines and inline commands without an end within the limit.
        assert_eq!(
            parse_request(b"*000000000", &limits),
            Err(RespError::TooBigMultibulkCount)
        );
        assert_eq!(
            parse_request(b"*1\r\n$000000000", &limits),
            Err(RespError::TooBigBulkCount)
        );
        assert_eq!(
            parse_request(b"PING PING", &limits),
            Err(RespError::TooBigInline)
        );
        assert_eq!(parse_request(b"PING PIN", &limits), Ok(None));
        assert_eq!(
            parse_request(b"PING PIN\n", &limits).unwrap().unwrap().0,
            args(&["PING", "PIN"])
        );
        // The default limits refuse a claimed 1 GiB bulk before any data arrives.
        assert_eq!(
            parse(b"*1\r\n$1073741824\r\n"),
            Err(RespError::InvalidBulkLength)
        );
        assert_eq!(
            parse(b"*2000000\r\n"),
            Err(RespError::InvalidMultibulkLength)
        );
    }

    #[test]
    fn huge_claims_within_limits_allocate_only_what_is_present() {
        let limits = Limits {
            max_bulk_bytes: usize::MAX,
            max_array_len: usize::MAX,
            max_inline_bytes: 64,
            max_request_bytes: usize::MAX,
        };
        assert_eq!(
            parse_request(b"*1000000000000\r\n$1\r\na\r\n", &limits),
            Ok(None)
        );
        assert_eq!(
            parse_request(b"*1\r\n$9223372036854775807\r\n", &limits),
            Ok(None),
            "a bulk claiming i64::MAX bytes just waits (and the caller's buffer limit applies)"
        );
    }

    #[test]
    fn strict_integers_match_redis() {
        assert_eq!(parse_redis_int(b"0"), Some(0));
        assert_eq!(parse_redis_int(b"-1"), Some(-1));
        assert_eq!(parse_redis_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_redis_int(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b"01",
            b"-0",
            b" 1",
            b"1 ",
            b"9223372036854775808",
            b"1.5",
            b"0x10",
        ] {
            assert_eq!(parse_redis_int(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn encodes_every_value() {
        assert_eq!(encode(&Value::Simple("OK".into())), b"+OK\r\n");
        assert_eq!(
            encode(&Value::Error("ERR bad\r\nthing".into())),
            b"-ERR bad  thing\r\n"
        );
        assert_eq!(encode(&Value::Integer(-42)), b":-42\r\n");
        assert_eq!(
            encode(&Value::Bulk(b"a\r\nb".to_vec())),
            b"$4\r\na\r\nb\r\n"
        );
        assert_eq!(encode(&Value::Bulk(Vec::new())), b"$0\r\n\r\n");
        assert_eq!(encode(&Value::Null), b"$-1\r\n");
        assert_eq!(encode(&Value::NullArray), b"*-1\r\n");
        assert_eq!(encode(&Value::Array(vec![])), b"*0\r\n");
        assert_eq!(
            encode(&Value::Array(vec![Value::Integer(1), Value::Null])),
            b"*2\r\n:1\r\n$-1\r\n"
        );
    }

    #[test]
    fn encode_then_parse_round_trips() {
        let values = vec![
            Value::Simple("PONG".into()),
            Value::Error("ERR unknown command 'x'".into()),
            Value::Integer(i64::MIN),
            Value::Integer(i64::MAX),
            Value::Integer(0),
            Value::Bulk(b"\0\r\n\xff".to_vec()),
            Value::Bulk(Vec::new()),
            Value::Null,
            Value::NullArray,
            Value::Array(vec![]),
            Value::Array(vec![
                Value::Bulk(b"x".to_vec()),
                Value::Null,
                Value::Array(vec![Value::Integer(7), Value::NullArray]),
                Value::Simple(String::new()),
            ]),
        ];
        assert_round_trips(&values, encode);
    }

    /// Each value, encoded by `encode`, parses back whole, every proper prefix of it
    /// is incomplete, and the values pipelined come back one by one, in order.
    fn assert_round_trips(values: &[Value], encode: fn(&Value) -> Vec<u8>) {
        let mut wire = Vec::new();
        for value in values {
            let one = encode(value);
            assert_eq!(
                parse_value(&one),
                Ok(Some((value.clone(), one.len()))),
                "{value:?}"
            );
            for cut in 0..one.len() {
                assert_eq!(parse_value(&one[..cut]), Ok(None), "{value:?} cut at {cut}");
            }
            wire.extend(one);
        }
        let mut rest = &wire[..];
        for value in values {
            let (parsed, used) = parse_value(rest).unwrap().unwrap();
            assert_eq!(&parsed, value);
            rest = &rest[used..];
        }
        assert!(rest.is_empty());
    }

    #[test]
    fn requests_round_trip_through_the_value_encoding() {
        let command = args(&["MSET", "", "\r\n", "k", "\0"]);
        let wire = encode(&Value::Array(
            command.iter().cloned().map(Value::Bulk).collect(),
        ));
        assert_eq!(parse(&wire), Ok(Some((command, wire.len()))));
    }

    #[test]
    fn bad_replies_are_errors() {
        assert_eq!(
            parse_value(b"?x\r\n"),
            Err(RespError::InvalidTypeByte(b'?'))
        );
        assert_eq!(
            RespError::InvalidTypeByte(b'?').to_string(),
            "Protocol error: invalid type byte '?'"
        );
        assert_eq!(parse_value(b":12a\r\n"), Err(RespError::InvalidInteger));
        assert_eq!(parse_value(b"$-2\r\n"), Err(RespError::InvalidBulkLength));
        assert_eq!(parse_value(b"$x\r\n"), Err(RespError::InvalidBulkLength));
        assert_eq!(
            parse_value(b"*-2\r\n"),
            Err(RespError::InvalidMultibulkLength)
        );
        assert_eq!(parse_value(b"$1\r\nabc"), Err(RespError::ExpectedCrlf));
        assert_eq!(parse_value(b"+OK\rx"), Err(RespError::ExpectedCrlf));
        // (`!` would start a RESP3 blob error.)
        assert_eq!(
            parse_value(b"*1\r\n@"),
            Err(RespError::InvalidTypeByte(b'@'))
        );
        let long = [b"+".as_slice(), &[b'a'; 70_000]].concat();
        assert_eq!(parse_value(&long), Err(RespError::TooBigLine));
        assert_eq!(
            parse_value(b"$536870913\r\n"),
            Err(RespError::InvalidBulkLength)
        );
        assert_eq!(parse_value(b"$536870912\r\n"), Ok(None));
        assert_eq!(
            parse_value(b"*1048577\r\n"),
            Err(RespError::InvalidMultibulkLength)
        );
    }

    fn encode3(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        value.encode_as(Protocol::Resp3, &mut out);
        out
    }

    fn bulk(text: &str) -> Value {
        Value::Bulk(text.as_bytes().to_vec())
    }

    /// One of every RESP3 type, nested, as a server might send them.
    fn resp3_values() -> Vec<Value> {
        vec![
            Value::Null,
            Value::Boolean(true),
            Value::Boolean(false),
            Value::Double(1.5),
            Value::Double(-0.0),
            Value::Double(1e300),
            Value::Double(f64::INFINITY),
            Value::Double(f64::NEG_INFINITY),
            Value::Double(f64::NAN),
            Value::BigNumber("-123456789012345678901234567890".into()),
            Value::Verbatim {
                format: *b"txt",
                text: b"line one\r\nline two\r\n".to_vec(),
            },
            Value::Verbatim {
                format: *b"mkd",
                text: Vec::new(),
            },
            Value::Map(vec![]),
            Value::Map(vec![
                (bulk("server"), bulk("ballot")),
                (bulk("proto"), Value::Integer(3)),
                (bulk("modules"), Value::Array(vec![])),
                (
                    Value::Integer(1),
                    Value::Set(vec![Value::Null, Value::Boolean(true)]),
                ),
            ]),
            Value::Set(vec![bulk("a"), Value::Double(2.0)]),
            Value::Push(vec![bulk("message"), bulk("channel"), bulk("hi")]),
            Value::Array(vec![
                Value::Null,
                Value::Map(vec![(bulk("k"), Value::Null)]),
            ]),
        ]
    }

    #[test]
    fn protocol_versions_are_two_and_three() {
        assert_eq!(Protocol::from_version(2), Some(Protocol::Resp2));
        assert_eq!(Protocol::from_version(3), Some(Protocol::Resp3));
        for other in [0, 1, 4, -2, i64::MAX] {
            assert_eq!(Protocol::from_version(other), None, "{other}");
        }
        assert_eq!(Protocol::Resp2.version(), 2);
        assert_eq!(Protocol::Resp3.version(), 3);
        assert_eq!(Protocol::default(), Protocol::Resp2);
    }

    #[test]
    fn encodes_resp3_types_in_each_protocol() {
        // (value, RESP2 bytes, RESP3 bytes)
        let cases: Vec<(Value, &[u8], &[u8])> = vec![
            (Value::Null, b"$-1\r\n", b"_\r\n"),
            (Value::NullArray, b"*-1\r\n", b"_\r\n"),
            (Value::Boolean(true), b":1\r\n", b"#t\r\n"),
            (Value::Boolean(false), b":0\r\n", b"#f\r\n"),
            (Value::Double(1.5), b"$3\r\n1.5\r\n", b",1.5\r\n"),
            (Value::Double(1e300), b"$5\r\n1e300\r\n", b",1e300\r\n"),
            (Value::Double(f64::INFINITY), b"$3\r\ninf\r\n", b",inf\r\n"),
            (
                Value::Double(f64::NEG_INFINITY),
                b"$4\r\n-inf\r\n",
                b",-inf\r\n",
            ),
            (Value::Double(f64::NAN), b"$3\r\nnan\r\n", b",nan\r\n"),
            (
                Value::BigNumber("-12".into()),
                b"$3\r\n-12\r\n",
                b"(-12\r\n",
            ),
            (
                Value::Verbatim {
                    format: *b"txt",
                    text: b"a\r\nb".to_vec(),
                },
                b"$4\r\na\r\nb\r\n",
                b"=8\r\ntxt:a\r\nb\r\n",
            ),
            (
                Value::Map(vec![
                    (bulk("proto"), Value::Integer(3)),
                    (bulk("id"), Value::Null),
                ]),
                b"*4\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n$-1\r\n",
                b"%2\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n_\r\n",
            ),
            (Value::Map(vec![]), b"*0\r\n", b"%0\r\n"),
            (
                Value::Set(vec![Value::Boolean(true)]),
                b"*1\r\n:1\r\n",
                b"~1\r\n#t\r\n",
            ),
            (
                Value::Push(vec![bulk("x")]),
                b"*1\r\n$1\r\nx\r\n",
                b">1\r\n$1\r\nx\r\n",
            ),
            // Nulls inside an array follow the protocol too (MGET of a missing key).
            (
                Value::Array(vec![bulk("v"), Value::Null]),
                b"*2\r\n$1\r\nv\r\n$-1\r\n",
                b"*2\r\n$1\r\nv\r\n_\r\n",
            ),
            // Types both versions share are written alike.
            (Value::Simple("OK".into()), b"+OK\r\n", b"+OK\r\n"),
            (Value::Error("ERR x".into()), b"-ERR x\r\n", b"-ERR x\r\n"),
            (Value::Integer(-1), b":-1\r\n", b":-1\r\n"),
        ];
        for (value, resp2, resp3) in cases {
            let mut out = Vec::new();
            value.encode_as(Protocol::Resp2, &mut out);
            assert_eq!(out, resp2, "{value:?} in RESP2");
            assert_eq!(encode(&value), resp2, "{value:?}: encode is RESP2");
            assert_eq!(encode3(&value), resp3, "{value:?} in RESP3");
        }
    }

    #[test]
    fn resp3_replies_round_trip_and_every_prefix_is_incomplete() {
        assert_round_trips(&resp3_values(), encode3);
        // RESP3 has a single null: the null array comes back as the null.
        assert_eq!(
            parse_value(&encode3(&Value::NullArray)),
            Ok(Some((Value::Null, 3)))
        );
    }

    #[test]
    fn resp2_downgrades_read_back_as_resp2_types() {
        let pairs = vec![
            (
                Value::Map(vec![(bulk("a"), Value::Integer(1))]),
                Value::Array(vec![bulk("a"), Value::Integer(1)]),
            ),
            (Value::Set(vec![bulk("a")]), Value::Array(vec![bulk("a")])),
            (Value::Boolean(true), Value::Integer(1)),
            (Value::Double(0.25), bulk("0.25")),
            (
                Value::Verbatim {
                    format: *b"txt",
                    text: b"role:leader".to_vec(),
                },
                bulk("role:leader"),
            ),
        ];
        for (value, downgraded) in pairs {
            let wire = encode(&value);
            assert_eq!(
                parse_value(&wire),
                Ok(Some((downgraded, wire.len()))),
                "{value:?}"
            );
        }
    }

    #[test]
    fn doubles_compare_by_their_bits() {
        assert_eq!(Value::Double(f64::NAN), Value::Double(f64::NAN));
        assert_ne!(Value::Double(0.0), Value::Double(-0.0));
        assert_ne!(Value::Double(1.0), Value::Integer(1));
        let hash = |value: &Value| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            value.hash(&mut hasher);
            hasher.finish()
        };
        assert_eq!(
            hash(&Value::Double(f64::NAN)),
            hash(&Value::Double(f64::NAN))
        );
        for value in resp3_values() {
            assert_eq!(value, value.clone());
            assert_eq!(hash(&value), hash(&value.clone()));
        }
    }

    #[test]
    fn resp3_scalars_from_other_servers_parse() {
        assert_eq!(parse_value(b",10\r\n"), Ok(Some((Value::Double(10.0), 5))));
        assert_eq!(
            parse_value(b",1.23E+10\r\n").unwrap().unwrap().0,
            Value::Double(1.23e10)
        );
        assert_eq!(
            parse_value(b"(+7\r\n").unwrap().unwrap().0,
            Value::BigNumber("+7".into())
        );
        assert_eq!(
            parse_value(b"!21\r\nSYNTAX invalid syntax\r\n"),
            Ok(Some((Value::Error("SYNTAX invalid syntax".into()), 28)))
        );
    }

    #[test]
    fn attributes_are_skipped() {
        let wire = b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n:42\r\n";
        assert_eq!(
            parse_value(wire),
            Ok(Some((Value::Integer(42), wire.len())))
        );
        for cut in 0..wire.len() {
            assert_eq!(parse_value(&wire[..cut]), Ok(None), "cut at {cut}");
        }
        let inside = b"*2\r\n|0\r\n:1\r\n|0\r\n|0\r\n:2\r\n";
        assert_eq!(
            parse_value(inside),
            Ok(Some((
                Value::Array(vec![Value::Integer(1), Value::Integer(2)]),
                inside.len()
            )))
        );
        // A long run of attributes is a loop, not a recursion.
        let mut many = b"|0\r\n".repeat(200_000);
        many.extend(b":7\r\n");
        assert_eq!(parse_value(&many).unwrap().unwrap().0, Value::Integer(7));
    }

    #[test]
    fn bad_resp3_replies_are_errors() {
        let cases: &[(&[u8], RespError)] = &[
            (b"_x\r\n", RespError::InvalidNull),
            (b"#x\r\n", RespError::InvalidBoolean),
            (b"#\r\n", RespError::InvalidBoolean),
            (b"#tt\r\n", RespError::InvalidBoolean),
            (b",\r\n", RespError::InvalidDouble),
            (b",1.5x\r\n", RespError::InvalidDouble),
            (b",\xff\r\n", RespError::InvalidDouble),
            (b"(\r\n", RespError::InvalidBigNumber),
            (b"(-\r\n", RespError::InvalidBigNumber),
            (b"(12a\r\n", RespError::InvalidBigNumber),
            (b"=3\r\ntxt\r\n", RespError::InvalidVerbatim),
            (b"=4\r\ntxt-\r\n", RespError::InvalidVerbatim),
            (b"=-1\r\n", RespError::InvalidBulkLength),
            (b"!-1\r\n", RespError::InvalidBulkLength),
            (b"%-1\r\n", RespError::InvalidMultibulkLength),
            (b"~-1\r\n", RespError::InvalidMultibulkLength),
            (b">x\r\n", RespError::InvalidMultibulkLength),
            (b"|-1\r\n", RespError::InvalidMultibulkLength),
            (b"%1048577\r\n", RespError::InvalidMultibulkLength),
            (b"=4\r\ntxt:abc", RespError::ExpectedCrlf),
            (b"%1\r\n?\r\n", RespError::InvalidTypeByte(b'?')),
        ];
        for (wire, error) in cases {
            assert_eq!(parse_value(wire).as_ref(), Err(error), "{wire:?}");
        }
        // Claims within the limits wait for the bytes, reserving nothing for them.
        assert_eq!(parse_value(b"%1048576\r\n"), Ok(None));
        assert_eq!(parse_value(b"~1048576\r\n$1\r\na\r\n"), Ok(None));
        assert_eq!(parse_value(b"=536870912\r\n"), Ok(None));
    }

    #[test]
    fn nested_resp3_aggregates_are_refused_past_the_depth_limit() {
        for header in [
            &b"%1\r\n+k\r\n"[..],
            b"~1\r\n",
            b">1\r\n",
            b"|1\r\n+k\r\n*1\r\n",
        ] {
            let deep = header.repeat(MAX_REPLY_DEPTH + 1);
            assert_eq!(parse_value(&deep), Err(RespError::TooDeep), "{header:?}");
        }
        let mut ok = b"%1\r\n+k\r\n".repeat(MAX_REPLY_DEPTH);
        ok.extend(b"#t\r\n");
        assert!(parse_value(&ok).unwrap().is_some());
    }

    #[test]
    fn deeply_nested_replies_are_refused_not_overflowed() {
        let deep = b"*1\r\n".repeat(MAX_REPLY_DEPTH + 1);
        assert_eq!(parse_value(&deep), Err(RespError::TooDeep));
        let mut ok = b"*1\r\n".repeat(MAX_REPLY_DEPTH);
        ok.extend(b":1\r\n");
        assert!(parse_value(&ok).unwrap().is_some());
        let huge = b"*1\r\n".repeat(1_000_000);
        assert_eq!(parse_value(&huge), Err(RespError::TooDeep));
    }

    #[test]
    fn an_oversized_request_is_skipped_in_pieces_and_the_next_one_parses() {
        let limits = Limits {
            max_request_bytes: 64,
            ..Limits::default()
        };
        // MSET a <100 bytes> b <3 bytes>, then PING, arriving 7 bytes at a time.
        let mut stream = b"*5\r\n$4\r\nMSET\r\n$1\r\na\r\n$100\r\n".to_vec();
        stream.extend_from_slice(&[b'v'; 100]);
        stream.extend_from_slice(b"\r\n$1\r\nb\r\n$3\r\nxyz\r\n*1\r\n$4\r\nPING\r\n");
        let mut input = Vec::new();
        let mut discard = None;
        let mut commands = Vec::new();
        for chunk in stream.chunks(7) {
            input.extend_from_slice(chunk);
            loop {
                if let Some(skip) = discard.as_mut() {
                    let (used, done) = Discard::advance(skip, &input, &limits).unwrap();
                    input.drain(..used);
                    if !done {
                        break;
                    }
                    discard = None;
                }
                match parse_request(&input, &limits) {
                    Ok(Some((args, used))) => {
                        commands.push(args);
                        input.drain(..used);
                    }
                    Ok(None) => break,
                    Err(RespError::RequestTooLarge {
                        bytes,
                        max,
                        discard: skip,
                    }) => {
                        assert_eq!((bytes, max), (129, 64));
                        discard = Some(skip);
                    }
                    Err(other) => panic!("{other}"),
                }
            }
        }
        assert_eq!(commands, vec![vec![b"PING".to_vec()]]);
        assert!(input.is_empty() && discard.is_none());
    }
}
