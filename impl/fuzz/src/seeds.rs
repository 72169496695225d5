//! The seed corpus, made by the real encoders: `cargo run --example gen_seeds` writes
//! it to `corpus/<target>/`, and `tests/seeds.rs` checks that what is committed is what
//! this module makes. Seeds are small valid inputs the fuzzer mutates from; each target
//! starts from every kind of thing its decoder accepts.

use crate::bytes::Writer;
use crate::cluster::Schedule;
use crate::decoders::{snapshot_file, ScratchDir, WAL_HEADER};
use ballot_model::{
    AcceptedEntry, Ballot, ClientRequest, ClientResponse, ClientTable, DurableUpdate,
    MemberChange, Message, Proposal, ReconfigureRefusal, Request, Snapshot, Timer,
};
use ballot_node::frame;
use ballot_node::kv::{KvCommand, KvOutput, KvQuery, KvStore};
use ballot_node::limits::FRAME_BYTES_MAX;
use ballot_node::node::{OperatorAnswer, OperatorRequest, PeerFrame};
use ballot_node::resp::Value;
use ballot_node::snapshot_store::{self, SnapshotDir};
use ballot_node::wal::{Wal, FILE_NAME};

/// One seed: its target, its file name in `corpus/<target>/`, its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seed {
    /// The fuzz target.
    pub target: &'static str,
    /// The file name.
    pub name: String,
    /// The content.
    pub bytes: Vec<u8>,
}

/// Every seed of every target.
pub fn all() -> Vec<Seed> {
    let mut seeds = Vec::new();
    seeds.extend(peer_frame());
    seeds.extend(resp());
    seeds.extend(wal());
    seeds.extend(snapshot());
    seeds.extend(core_step());
    seeds
}

fn seed(target: &'static str, name: &str, bytes: Vec<u8>) -> Seed {
    Seed {
        target,
        name: name.to_string(),
        bytes,
    }
}

fn set(key: &str, value: &str) -> KvCommand {
    KvCommand::Set {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
    }
}

/// A small key-value state with two clients' sessions.
fn kv_table() -> ClientTable<KvStore> {
    let mut table = ClientTable::new(KvStore::default());
    table.apply(
        &Request {
            client: 7,
            seq: 1,
            command: set("k", "v"),
        },
        usize::MAX,
    );
    table.apply(
        &Request {
            client: 8,
            seq: 4,
            command: KvCommand::IncrBy {
                key: b"n".to_vec(),
                delta: -3,
            },
        },
        usize::MAX,
    );
    table
}

fn kv_snapshot(slot: u64) -> Snapshot<KvStore> {
    Snapshot {
        slot,
        table: kv_table(),
        members: ballot_model::ClusterConfig::new(3).bootstrap(),
    }
}

fn peer_frame() -> Vec<Seed> {
    let write = Request {
        client: 7,
        seq: 1,
        command: set("k", "v"),
    };
    let entry = AcceptedEntry {
        ballot: Ballot::new(1, 0),
        proposal: Proposal::Batch(vec![write.clone()]),
    };
    let frames: Vec<(&str, PeerFrame<KvStore>)> = vec![
        (
            "prepare",
            PeerFrame::Paxos(Message::Prepare {
                ballot: Ballot::new(2, 1),
                from_slot: 1,
            }),
        ),
        (
            "promise",
            PeerFrame::Paxos(Message::Promise {
                ballot: Ballot::new(2, 1),
                accepted: vec![(3, entry.clone())],
                snapshot: Some(kv_snapshot(2)),
            }),
        ),
        (
            "accept",
            PeerFrame::Paxos(Message::Accept {
                ballot: Ballot::new(2, 1),
                slot: 4,
                proposal: Proposal::Batch(vec![
                    write,
                    Request {
                        client: 9,
                        seq: 2,
                        command: KvCommand::MSet(vec![(b"a".to_vec(), b"1".to_vec())]),
                    },
                ]),
                commit: 3,
            }),
        ),
        (
            "accepted",
            PeerFrame::Paxos(Message::Accepted {
                ballot: Ballot::new(2, 1),
                slot: 4,
                commit: 3,
            }),
        ),
        (
            "heartbeat",
            PeerFrame::Paxos(Message::Heartbeat {
                ballot: Ballot::new(2, 1),
                commit: 4,
                read_round: 9,
            }),
        ),
        (
            "heartbeat_ack",
            PeerFrame::Paxos(Message::HeartbeatAck {
                ballot: Ballot::new(2, 1),
                commit: 2,
                read_round: 9,
                lagging: true,
            }),
        ),
        (
            "install_snapshot",
            PeerFrame::Paxos(Message::InstallSnapshot {
                ballot: Ballot::new(2, 1),
                snapshot: kv_snapshot(5),
                commit: 6,
            }),
        ),
        (
            "reject",
            PeerFrame::Paxos(Message::Reject {
                ballot: Ballot::new(1, 0),
                promised: Ballot::new(2, 1),
            }),
        ),
        (
            "transfer_leadership",
            PeerFrame::Paxos(Message::TransferLeadership {
                ballot: Ballot::new(2, 1),
                to: 2,
            }),
        ),
        (
            "removed",
            PeerFrame::Paxos(Message::Removed {
                ballot: Ballot::new(1, 2),
                epoch: 1,
            }),
        ),
        (
            "forward_write",
            PeerFrame::Forward(ClientRequest::Write(Request {
                client: 3,
                seq: 5,
                command: KvCommand::Del(vec![b"k".to_vec(), b"x".to_vec()]),
            })),
        ),
        (
            "forward_read",
            PeerFrame::Forward(ClientRequest::Read {
                client: 3,
                seq: 6,
                query: KvQuery::MGet(vec![b"k".to_vec()]),
            }),
        ),
        (
            "forward_reply_written",
            PeerFrame::ForwardReply {
                client: 3,
                response: ClientResponse::Written {
                    seq: 5,
                    output: KvOutput::Integer(1),
                },
            },
        ),
        (
            "forward_reply_read",
            PeerFrame::ForwardReply {
                client: 3,
                response: ClientResponse::ReadOk {
                    seq: 6,
                    output: KvOutput::Array(vec![Some(b"v".to_vec()), None]),
                },
            },
        ),
        (
            "forward_reply_redirect",
            PeerFrame::ForwardReply {
                client: 3,
                response: ClientResponse::Redirect {
                    seq: 7,
                    leader: Some(2),
                },
            },
        ),
        (
            "operator_reconfigure",
            PeerFrame::Operator {
                id: 1,
                request: OperatorRequest::Reconfigure(MemberChange::Replace {
                    remove: 1,
                    promote: 3,
                }),
            },
        ),
        (
            "operator_transfer",
            PeerFrame::Operator {
                id: 2,
                request: OperatorRequest::TransferLeadership { to: Some(2) },
            },
        ),
        (
            "operator_reply_refused",
            PeerFrame::OperatorReply {
                id: 1,
                answer: OperatorAnswer::ReconfigureRefused(ReconfigureRefusal::NotLeader {
                    leader: Some(0),
                }),
            },
        ),
        (
            "operator_reply_moved",
            PeerFrame::OperatorReply {
                id: 2,
                answer: OperatorAnswer::LeaderMoved(2),
            },
        ),
    ];
    let mut seeds = Vec::new();
    let mut stream = Vec::new();
    for (name, frame) in &frames {
        let mut encoded = Vec::new();
        frame::encode(frame, &mut encoded, FRAME_BYTES_MAX).expect("encodes");
        seeds.push(seed("peer_frame", name, encoded[4..].to_vec()));
        stream.extend_from_slice(&encoded);
    }
    seeds.push(seed("peer_frame", "stream_of_every_kind", stream));
    seeds
}

fn resp() -> Vec<Seed> {
    let request = |args: &[&[u8]]| {
        let mut out = Vec::new();
        Value::Array(args.iter().map(|a| Value::Bulk(a.to_vec())).collect()).encode(&mut out);
        out
    };
    let reply = |value: Value| {
        let mut out = Vec::new();
        value.encode(&mut out);
        out
    };
    let mut pipelined = request(&[b"INCRBY", b"n", b"-5"]);
    pipelined.extend(request(&[b"GET", b"n"]));
    vec![
        seed("resp", "set", request(&[b"SET", b"k", b"v"])),
        seed("resp", "get", request(&[b"GET", b"k"])),
        seed(
            "resp",
            "mset_binary",
            request(&[b"MSET", b"a", b"\r\n\0\xff", b"b", b""]),
        ),
        seed("resp", "pipelined", pipelined),
        seed("resp", "empty_array", b"*0\r\n".to_vec()),
        seed(
            "resp",
            "inline",
            b"SET a \"b c\\x41\\n\" 'd\\'e'\r\n".to_vec(),
        ),
        seed("resp", "inline_lf", b"DEL  k1\tk2\n".to_vec()),
        seed("resp", "reply_ok", reply(Value::Simple("OK".into()))),
        seed(
            "resp",
            "reply_error",
            reply(Value::Error(
                "ERR value is not an integer or out of range".into(),
            )),
        ),
        seed("resp", "reply_integer", reply(Value::Integer(i64::MIN))),
        seed("resp", "reply_null", reply(Value::Null)),
        seed(
            "resp",
            "reply_nested",
            reply(Value::Array(vec![
                Value::Bulk(b"v".to_vec()),
                Value::Null,
                Value::Array(vec![Value::Integer(3), Value::NullArray]),
            ])),
        ),
    ]
}

/// A log written by the real `Wal`: promise, votes, commit, compaction.
fn real_wal() -> Vec<u8> {
    let dir = ScratchDir::new("seed-wal");
    let (mut wal, _) = Wal::open::<KvCommand>(&dir.path).expect("opens");
    let updates = [
        DurableUpdate::Promise(Ballot::new(1, 0)),
        DurableUpdate::Accept {
            slot: 1,
            entry: AcceptedEntry {
                ballot: Ballot::new(1, 0),
                proposal: Proposal::Noop,
            },
        },
        DurableUpdate::Accept {
            slot: 2,
            entry: AcceptedEntry {
                ballot: Ballot::new(1, 0),
                proposal: Proposal::Batch(vec![Request {
                    client: 7,
                    seq: 1,
                    command: set("k", "v"),
                }]),
            },
        },
        DurableUpdate::Commit(2),
        DurableUpdate::Compact(1),
    ];
    for update in &updates {
        wal.append(update).expect("appends");
    }
    wal.sync().expect("syncs");
    drop(wal);
    std::fs::read(dir.path.join(FILE_NAME)).expect("reads")
}

/// The payloads of the records in a log file (the format is in `wal.rs`).
fn wal_payloads(file: &[u8]) -> Vec<Vec<u8>> {
    let mut payloads = Vec::new();
    let mut at = WAL_HEADER.len();
    while at < file.len() {
        let len = u32::from_le_bytes(file[at..at + 4].try_into().expect("4 bytes")) as usize;
        payloads.push(file[at + 12..at + 12 + len].to_vec());
        at += 12 + len;
    }
    payloads
}

fn wal() -> Vec<Seed> {
    let file = real_wal();
    let mut records = Vec::new();
    for payload in wal_payloads(&file) {
        records.push(u8::try_from(payload.len()).expect("a small record"));
        records.extend(payload);
    }
    let mode = |mode: u8, body: &[u8]| [&[mode][..], body].concat();
    vec![
        seed("wal", "raw_real_log", mode(0, &file)),
        seed(
            "wal",
            "header_then_records",
            mode(1, &file[WAL_HEADER.len()..]),
        ),
        seed("wal", "checksummed_payloads", mode(2, &records)),
        seed(
            "wal",
            "torn_after_records",
            mode(3, &[&[5][..], &records].concat()),
        ),
        seed("wal", "raw_empty_file", mode(0, b"")),
        seed("wal", "raw_header_prefix", mode(0, &WAL_HEADER[..6])),
        seed(
            "wal",
            "raw_zero_tail",
            mode(0, &[&file[..], &[0; 16]].concat()),
        ),
    ]
}

fn snapshot() -> Vec<Seed> {
    let slot = 3;
    let members = ballot_model::ClusterConfig::new(3).bootstrap();
    let payload = snapshot_store::encode(slot, &kv_table(), &members).expect("encodes");
    let dir = ScratchDir::new("seed-snapshot");
    SnapshotDir::new(&dir.path)
        .save(&kv_snapshot(slot))
        .expect("saves");
    let file = std::fs::read(dir.path.join(format!("snapshot-{slot:020}.bin"))).expect("reads");
    assert_eq!(file, snapshot_file(slot, &payload), "seeds know the format");
    let input = |mode: u8, slot: u64, body: &[u8]| {
        let mut writer = Writer::default();
        writer.u8(mode);
        writer.number(slot, 8, u64::MAX);
        writer.out.extend_from_slice(body);
        writer.out
    };
    let initial =
        snapshot_store::encode(0, &ClientTable::new(KvStore::default()), &Default::default())
            .expect("encodes");
    vec![
        seed("snapshot", "raw_real_file", input(0, slot, &file)),
        seed("snapshot", "magic_then_rest", input(1, slot, &file[12..])),
        seed("snapshot", "checksummed_payload", input(2, slot, &payload)),
        seed("snapshot", "checksummed_initial", input(2, 0, &initial)),
        seed(
            "snapshot",
            "raw_damaged_newest",
            input(0, slot + 1, &file[..file.len() - 1]),
        ),
    ]
}

fn core_step() -> Vec<Seed> {
    // Node 0 leads ballot 1.0; every message delivered.
    let elect = || {
        let mut schedule = Schedule::new();
        schedule.timer(0, Timer::Election).flush();
        schedule
    };

    let mut commit = elect();
    commit
        .write(0, 1, 1, 2)
        .flush()
        .write(1, 2, 1, 3)
        .timer(0, Timer::Heartbeat)
        .flush()
        .read(0, 1, 2)
        .timer(0, Timer::Heartbeat)
        .flush();

    let mut failover = elect();
    failover
        .write(0, 1, 1, 1)
        .flush()
        .write(0, 1, 2, 2)
        .deliver(0)
        .timer(1, Timer::Election)
        .flush()
        .write(1, 1, 2, 2)
        .flush()
        .timer(0, Timer::CheckQuorum)
        .timer(1, Timer::Heartbeat)
        .flush();

    // Node 2 misses the writes, the others compact, and the leader sends it a
    // snapshot when its heartbeat ack says it lags.
    let mut catch_up = elect();
    for seq in 1..=3 {
        // Accept to 1 and to 2 are in flight: deliver the first, lose the second,
        // deliver node 1's Accepted.
        catch_up
            .write(0, 1, seq, seq % 4)
            .deliver(0)
            .drop_message(0)
            .deliver(0);
    }
    catch_up
        .timer(0, Timer::Heartbeat)
        .deliver(0)
        .drop_message(0)
        .flush()
        .compact(0, 3)
        .compact(1, 3)
        .timer(0, Timer::Heartbeat)
        .flush()
        .compact(2, 3);

    let mut restart = elect();
    restart
        .write(0, 1, 1, 1)
        .flush()
        .compact(0, 1)
        .restart(0)
        .restart(1)
        .timer(1, Timer::Election)
        .flush()
        .write(1, 2, 1, 3)
        .duplicate(0)
        .flush()
        .restart(2)
        .timer(1, Timer::Heartbeat)
        .flush();

    // The leader hands over to node 2, which leads ballot 2.2 and commits; a follower
    // and a member that does not exist are refused.
    let mut transfer = elect();
    transfer
        .write(0, 1, 1, 1)
        .flush()
        .transfer(1, Some(2))
        .transfer(0, Some(7))
        .transfer(0, Some(2))
        .flush()
        .write(2, 2, 1, 2)
        .flush()
        .transfer(2, None)
        .flush();

    // Prepares no correct peer sends: a ballot above the leader's, one from an id the
    // cluster may give out later, one from an id no cluster gives out and one whose
    // ballot names another node (the last two refused).
    let mut forged = elect();
    forged
        .forge_prepare(0, 1, Ballot::new(5, 1), 1)
        .forge_prepare(2, 4, Ballot::new(9, 4), u64::MAX)
        .forge_prepare(1, ballot_model::NODE_IDS_MAX, Ballot::new(9, 0), 1)
        .forge_prepare(1, 2, Ballot::new(9, 0), 1)
        .write(0, 3, 1, 1)
        .flush();

    vec![
        seed("core_step", "elect_commit_read", commit.bytes()),
        seed("core_step", "failover", failover.bytes()),
        seed(
            "core_step",
            "compact_and_install_snapshot",
            catch_up.bytes(),
        ),
        seed("core_step", "restarts", restart.bytes()),
        seed("core_step", "forged_prepares", forged.bytes()),
        seed("core_step", "leadership_transfer", transfer.bytes()),
    ]
}
