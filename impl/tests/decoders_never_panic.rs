//! Property tests for everything that decodes bytes from outside the process: peer
//! frames, RESP requests and values, and the write-ahead log and snapshot files. Any
//! input must give a value or a clear error, never a panic or a hang; and what the
//! node itself encodes must decode back to the same thing.

use ballot_model::{Ballot, ClientRequest, Message, Request};
use ballot_node::frame;
use ballot_node::kv::{KvCommand, KvStore};
use ballot_node::node::PeerFrame;
use ballot_node::resp::{self, Limits, Protocol, Value};
use ballot_node::snapshot_store::SnapshotDir;
use ballot_node::wal::Wal;
use proptest::prelude::*;

/// `default` cases, or `PROPTEST_CASES` when set (for longer runs).
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
use std::path::PathBuf;

fn scratch(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ballot-prop-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        "[a-zA-Z0-9 ]{0,20}".prop_map(Value::Simple),
        "[a-zA-Z0-9 ]{0,20}".prop_map(Value::Error),
        any::<i64>().prop_map(Value::Integer),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Value::Bulk),
        Just(Value::Null),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        proptest::collection::vec(inner, 0..6).prop_map(Value::Array)
    })
}

/// Any reply a RESP3 server may send (RESP3 has one null, so no `NullArray`; a NaN is
/// the one NaN the text `nan` reads back as).
fn resp3_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        "[a-zA-Z0-9 ]{0,20}".prop_map(Value::Simple),
        "[a-zA-Z0-9 ]{0,20}".prop_map(Value::Error),
        any::<i64>().prop_map(Value::Integer),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Value::Bulk),
        Just(Value::Null),
        any::<bool>().prop_map(Value::Boolean),
        any::<f64>().prop_map(|x| Value::Double(if x.is_nan() { f64::NAN } else { x })),
        "[+-]?[0-9]{1,40}".prop_map(Value::BigNumber),
        ("[a-z]{3}", proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(format, text)| {
            let format = format.as_bytes();
            Value::Verbatim {
                format: [format[0], format[1], format[2]],
                text,
            }
        }),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Set),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Push),
            proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Value::Map),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(512), ..ProptestConfig::default() })]

    #[test]
    fn resp3_values_round_trip_and_every_prefix_is_incomplete(v in resp3_value()) {
        let mut out = Vec::new();
        v.encode_as(Protocol::Resp3, &mut out);
        prop_assert_eq!(resp::parse_value(&out).unwrap(), Some((v.clone(), out.len())));
        for cut in 0..out.len() {
            prop_assert_eq!(resp::parse_value(&out[..cut]).unwrap(), None);
        }
        // Downgraded to RESP2, it still parses, and encodes the same way again.
        let mut resp2 = Vec::new();
        v.encode_as(Protocol::Resp2, &mut resp2);
        let (downgraded, used) = resp::parse_value(&resp2).unwrap().unwrap();
        prop_assert_eq!(used, resp2.len());
        let mut again = Vec::new();
        downgraded.encode_as(Protocol::Resp2, &mut again);
        prop_assert_eq!(again, resp2);
    }

    #[test]
    fn peer_frames_from_arbitrary_bytes_decode_or_fail(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = frame::decode::<PeerFrame<KvStore>>(&bytes);
    }

    #[test]
    fn peer_frames_round_trip(client in any::<u64>(), seq in any::<u64>(), key in proptest::collection::vec(any::<u8>(), 0..32), round in any::<u32>(), node in 0usize..7, slot in any::<u64>()) {
        let frames: Vec<PeerFrame<KvStore>> = vec![
            PeerFrame::Forward(ClientRequest::Write(Request { client, seq, command: KvCommand::Del(vec![key.clone()]) })),
            PeerFrame::Paxos(Message::Prepare { ballot: Ballot::new(round, node), from_slot: slot }),
        ];
        for f in frames {
            let mut out = Vec::new();
            frame::encode(&f, &mut out, ballot_node::limits::FRAME_BYTES_MAX).unwrap();
            let back: PeerFrame<KvStore> = frame::decode(&out[4..]).unwrap();
            prop_assert_eq!(format!("{back:?}"), format!("{f:?}"));
        }
    }

    #[test]
    fn resp_requests_from_arbitrary_bytes_parse_or_fail(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let limits = Limits::default();
        if let Ok(Some((_, used))) = resp::parse_request(&bytes, &limits) {
            prop_assert!(used <= bytes.len() && used > 0);
        }
        if let Ok(Some((_, used))) = resp::parse_value(&bytes) {
            prop_assert!(used <= bytes.len() && used > 0);
        }
    }

    #[test]
    fn resp_values_round_trip_and_every_prefix_is_incomplete(v in value()) {
        let mut out = Vec::new();
        v.encode(&mut out);
        prop_assert_eq!(resp::parse_value(&out).unwrap(), Some((v.clone(), out.len())));
        for cut in 0..out.len() {
            prop_assert_eq!(resp::parse_value(&out[..cut]).unwrap(), None);
        }
    }

    #[test]
    fn resp_requests_parse_alike_whole_or_resumed_in_pieces(
        args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..24), 1..8),
        noise in proptest::collection::vec(any::<u8>(), 0..16),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
        small in any::<bool>(),
    ) {
        // A request (or, with noise after a cut, bytes that may not be one), fed to
        // one parser a prefix at a time as a connection would: every answer matches
        // parsing that prefix afresh, and the first one that is not "incomplete" ends
        // the request.
        let limits = if small {
            Limits { max_request_bytes: 64, max_inline_bytes: 16, ..Limits::default() }
        } else {
            Limits::default()
        };
        let mut wire = Vec::new();
        Value::Array(args.iter().cloned().map(Value::Bulk).collect()).encode(&mut wire);
        if let Some(&cut) = cuts.first() {
            let at = cut % (wire.len() + 1);
            wire.splice(at..at, noise);
        }
        let mut ends: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        ends.push(wire.len());
        ends.sort_unstable();
        let mut parser = resp::RequestParser::default();
        for end in ends {
            let resumed = parser.parse(&wire[..end], &limits);
            prop_assert_eq!(&resumed, &resp::parse_request(&wire[..end], &limits), "prefix of {}", end);
            if !matches!(resumed, Ok(None)) {
                break;
            }
        }
    }

    #[test]
    fn resp_requests_round_trip(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..24), 1..6)) {
        let request = Value::Array(args.iter().cloned().map(Value::Bulk).collect());
        let mut out = Vec::new();
        request.encode(&mut out);
        prop_assert_eq!(resp::parse_request(&out, &Limits::default()).unwrap(), Some((args, out.len())));
    }
}

proptest! {
    // Each case touches the file system: fewer cases.
    #![proptest_config(ProptestConfig { cases: cases(96), ..ProptestConfig::default() })]

    #[test]
    fn a_log_of_arbitrary_bytes_opens_or_is_refused(tail in proptest::collection::vec(any::<u8>(), 0..256), with_header in any::<bool>()) {
        let dir = scratch("wal");
        let mut bytes = Vec::new();
        if with_header {
            bytes.extend_from_slice(b"BALLOTWL");
            bytes.extend_from_slice(&1u32.to_le_bytes());
        }
        bytes.extend_from_slice(&tail);
        std::fs::write(dir.join("wal.log"), &bytes).unwrap();
        let _ = Wal::open::<KvCommand>(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_snapshot_file_of_arbitrary_bytes_loads_or_is_refused(tail in proptest::collection::vec(any::<u8>(), 0..256), with_magic in any::<bool>()) {
        let dir = scratch("snap");
        let mut bytes = Vec::new();
        if with_magic {
            bytes.extend_from_slice(b"BALLOTSN");
            bytes.extend_from_slice(&1u32.to_le_bytes());
        }
        bytes.extend_from_slice(&tail);
        std::fs::write(dir.join("snapshot-00000000000000000001.bin"), &bytes).unwrap();
        prop_assert!(SnapshotDir::new(&dir).latest::<KvStore>().is_err(), "damage is never taken as a snapshot");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
