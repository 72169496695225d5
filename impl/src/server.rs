//! The reference application: a replicated key-value store speaking RESP2 and RESP3,
//! so `redis-cli`, `redis-benchmark` and Redis client libraries work against any node.
//! Writes go through the log; reads are linearizable (read-index through the core);
//! any node accepts clients and forwards to the leader.

use crate::connection::Connection;
use crate::kv::{parse_command, KvRequest, KvStore};
use crate::node::{Node, NodeError};
use crate::resp::{Discard, Limits, RequestParser, RespError, Value};
use ballot_model::{MemberChange, Membership, NodeId, ReconfigureRefusal};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The error code of a `BALLOT.MEMBER PROMOTE` or `REPLACE` refused because the
/// learner lags ([`ReconfigureRefusal::Lagging`]): worth asking again once it has
/// caught up, which `ballot member` does.
///
/// ```
/// assert_eq!(ballot_node::server::LAGGING, "LAGGING");
/// ```
pub const LAGGING: &str = "LAGGING";

/// What `INFO` reports besides the node's status.
#[derive(Clone, Debug, Default)]
pub struct ServerInfo {
    /// The bootstrap address book's client addresses, by id.
    pub client_addrs: Vec<String>,
    /// The bootstrap address book's peer addresses, by id.
    pub peer_addrs: Vec<String>,
}

impl ServerInfo {
    /// Every node's client and peer address, by id: the bootstrap address book, then
    /// each member added at an address, where the log (`members`) says it is.
    ///
    /// ```
    /// use ballot_model::{MemberAddress, Membership};
    /// use ballot_node::server::ServerInfo;
    /// let info = ServerInfo { client_addrs: vec!["c0".into()], peer_addrs: vec!["p0".into()] };
    /// let mut members = Membership::bootstrap(1, [], []);
    /// members.added.push(MemberAddress::new("p1", "c1"));
    /// assert_eq!(info.address_book(&members), (vec!["c0".into(), "c1".into()], vec!["p0".into(), "p1".into()]));
    /// assert_eq!(info.client_addr(1, &members).as_deref(), Some("c1"));
    /// ```
    pub fn address_book(&self, members: &Membership) -> (Vec<String>, Vec<String>) {
        let mut clients = self.client_addrs.clone();
        let mut peers = self.peer_addrs.clone();
        for (_, address) in members.added_members(self.peer_addrs.len()) {
            clients.push(address.client.clone());
            peers.push(address.peer.clone());
        }
        (clients, peers)
    }

    /// Where clients reach node `id`, if it has an address.
    pub fn client_addr(&self, id: NodeId, members: &Membership) -> Option<String> {
        match members.added_address(id, self.peer_addrs.len()) {
            Some(address) => Some(address.client.clone()),
            None => self.client_addrs.get(id).cloned(),
        }
    }
}

/// Accepts RESP clients on `listener` until the task is dropped, serving at most
/// `connections_max` at once: the next one is told so, as Redis words it, and closed.
pub async fn serve(
    listener: TcpListener,
    node: Node<KvStore>,
    info: ServerInfo,
    connections_max: usize,
) {
    let info = Arc::new(info);
    let slots = Arc::new(tokio::sync::Semaphore::new(connections_max));
    loop {
        let (mut stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a client failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%remote, connections_max, "refused a client: too many connections");
            tokio::spawn(async move {
                let _ = stream
                    .write_all(b"-ERR max number of clients reached\r\n")
                    .await;
            });
            continue;
        };
        let node = node.clone();
        let info = info.clone();
        tokio::spawn(async move {
            if let Err(error) = serve_client(stream, node, &info).await {
                tracing::debug!(%remote, %error, "client connection closed");
            }
            drop(slot);
        });
    }
}

/// Serves one connection: parses pipelined requests, answers each in order, flushes
/// when the input holds no further complete request.
async fn serve_client(
    mut stream: TcpStream,
    node: Node<KvStore>,
    info: &ServerInfo,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut connection = Connection::accept(stream.peer_addr().ok(), stream.local_addr().ok());
    let limits = Limits::default();
    // The request at the front of `input` is parsed on from where the last read left
    // it, never again from its first byte.
    let mut parser = RequestParser::default();
    let mut discard: Option<Discard> = None;
    let mut input = Vec::with_capacity(16 << 10);
    let mut output = Vec::with_capacity(16 << 10);
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        input.extend_from_slice(&chunk[..read]);
        let mut consumed = 0;
        let mut quit = false;
        loop {
            if let Some(rest) = discard.as_mut() {
                // Skipping a refused request: its bytes are dropped as they come.
                let (used, done) = match rest.advance(&input[consumed..], &limits) {
                    Ok(advanced) => advanced,
                    Err(error) => {
                        Value::Error(format!("ERR {error}")).encode(&mut output);
                        stream.write_all(&output).await?;
                        return Ok(());
                    }
                };
                consumed += used;
                if !done {
                    break;
                }
                discard = None;
            }
            if output.len() >= crate::limits::OUTPUT_FLUSH_BYTES {
                // A client pipelining many large reads: write out what is ready
                // rather than hold every reply.
                stream.write_all(&output).await?;
                output.clear();
            }
            match parser.parse(&input[consumed..], &limits) {
                Ok(Some((args, used))) => {
                    consumed += used;
                    if args.is_empty() {
                        continue;
                    }
                    let (reply, last) = match connection.handle(&args) {
                        Some(reply) => (reply, false),
                        None => execute(&node, info, &args).await,
                    };
                    // After the command: `HELLO`'s reply is in the protocol it chose.
                    reply.encode_as(connection.protocol(), &mut output);
                    if last {
                        quit = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(RespError::RequestTooLarge {
                    bytes,
                    max,
                    discard: rest,
                }) => {
                    // Refused, and the connection goes on once its bytes are skipped.
                    tracing::debug!(bytes, max, "refused an oversized request");
                    let refused = RespError::RequestTooLarge {
                        bytes,
                        max,
                        discard: rest.clone(),
                    };
                    Value::Error(format!("ERR {refused}")).encode(&mut output);
                    discard = Some(rest);
                }
                Err(error) => {
                    // Like Redis: report the protocol error and close the connection.
                    Value::Error(format!("ERR {error}")).encode(&mut output);
                    stream.write_all(&output).await?;
                    return Ok(());
                }
            }
        }
        input.drain(..consumed);
        stream.write_all(&output).await?;
        output.clear();
        if quit {
            return Ok(());
        }
    }
}

/// Runs one command; the flag is true for `QUIT`.
async fn execute(node: &Node<KvStore>, info: &ServerInfo, args: &[Vec<u8>]) -> (Value, bool) {
    let request = match parse_command(args) {
        Ok(request) => request,
        Err(message) => return (Value::Error(message), false),
    };
    let reply = match request {
        KvRequest::Write(command) => outcome(node.propose(command).await),
        KvRequest::Read(query) => outcome(node.read(query).await),
        KvRequest::Ping(None) => Value::Simple("PONG".into()),
        KvRequest::Ping(Some(message)) | KvRequest::Echo(message) => Value::Bulk(message),
        KvRequest::Quit => return (Value::Simple("OK".into()), true),
        KvRequest::TransferLeader(to) => match node.move_leadership(to).await {
            Ok(leader) => Value::Simple(format!("OK node {leader} leads")),
            Err(error) => Value::Error(format!("ERR {error}")),
        },
        KvRequest::Member(change) => member_change(change, node, info).await,
        KvRequest::Info(_) => Value::Verbatim {
            format: *b"txt",
            text: info_text(node, info).into_bytes(),
        },
    };
    (reply, false)
}

/// Runs `BALLOT.MEMBER`'s change: `+OK epoch E voters … learners …`, and `id N` for a
/// machine added at an address (the id the cluster gave it), or the refusal.
async fn member_change(change: MemberChange, node: &Node<KvStore>, info: &ServerInfo) -> Value {
    let joining = match &change {
        MemberChange::AddAt(address) => Some(address.clone()),
        _ => None,
    };
    match node.reconfigure(change).await {
        Ok(members) => {
            let added = joining.and_then(|address| {
                members
                    .added_members(info.peer_addrs.len())
                    .filter(|(_, at)| **at == address)
                    .map(|(id, _)| id)
                    .last()
            });
            Value::Simple(format!(
                "OK epoch {} voters {} learners {}{}",
                members.epoch,
                id_list(&members.voters),
                id_list(&members.learners),
                added.map_or(String::new(), |id| format!(" id {id}"))
            ))
        }
        // Where to ask instead: the leader's client address, as `INFO` gives it.
        Err(
            error @ NodeError::ReconfigureRefused(ReconfigureRefusal::NotLeader {
                leader: Some(leader),
            }),
        ) => match info.client_addr(leader, &node.status().membership) {
            Some(addr) => Value::Error(format!("ERR {error} (clients reach it at {addr})")),
            None => Value::Error(format!("ERR {error}")),
        },
        // Its own error code, as Redis has `BUSY` and `LOADING`: a refusal that
        // passes once the learner catches up, which a client may retry.
        Err(error @ NodeError::ReconfigureRefused(ReconfigureRefusal::Lagging { .. })) => {
            Value::Error(format!("{LAGGING} {error}"))
        }
        Err(error) => Value::Error(format!("ERR {error}")),
    }
}

fn outcome(result: Result<crate::kv::KvOutput, NodeError>) -> Value {
    match result {
        Ok(output) => output.into(),
        Err(NodeError::Timeout(after)) => Value::Error(format!(
            "TIMEOUT no answer within {after:?}; the command may or may not have taken effect"
        )),
        // Redis clients treat a reply's first word as its kind: a client that backs
        // off on load can tell this one apart.
        Err(error @ NodeError::Busy { .. }) => Value::Error(format!("BUSY {error}")),
        Err(error) => Value::Error(format!("ERR {error}")),
    }
}

/// Ids as `INFO` lists them: comma-separated, in order.
fn id_list<'a>(ids: impl IntoIterator<Item = &'a usize>) -> String {
    ids.into_iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The `INFO` text: Redis-style `key:value` lines in a `# Replication` section.
pub fn info_text(node: &Node<KvStore>, info: &ServerInfo) -> String {
    let status = node.status();
    let leader = status.leader.map_or("none".to_string(), |l| l.to_string());
    let members = &status.membership;
    let leader_addr = status
        .leader
        .and_then(|l| info.client_addr(l, members))
        .unwrap_or_default();
    let (clients, peers) = info.address_book(members);
    format!(
        "# Replication\r\nrole:{}\r\nmember:{}\r\nepoch:{}\r\nvoters:{}\r\nlearners:{}\r\nretired:{}\r\nnode_id:{}\r\nleader:{}\r\nleader_addr:{}\r\nballot:{}\r\ncommit_index:{}\r\napplied_index:{}\r\ncompacted_index:{}\r\nlog_bytes:{}\r\nsnapshots_saved:{}\r\nsnapshots_installed:{}\r\nsessions:{}\r\nsession_floor:{}\r\nsnapshot_chunks_sent:{}\r\nsnapshot_bytes_sent:{}\r\nsnapshot_chunks_received:{}\r\nsnapshot_bytes_received:{}\r\nsnapshot_streams_failed:{}\r\nelections:{}\r\ntransfers:{}\r\nfsyncs:{}\r\npersists:{}\r\ndropped_peer_frames:{}\r\npeers:{}\r\nclients:{}\r\n",
        status.role,
        status.member_role(),
        members.epoch,
        id_list(&members.voters),
        id_list(&members.learners),
        id_list(&members.retired),
        status.id,
        leader,
        leader_addr,
        status.ballot,
        status.commit_index,
        status.applied_index,
        status.compacted_index,
        status.log_bytes,
        status.snapshots_saved,
        status.snapshots_installed,
        status.sessions,
        status.session_floor,
        status.snapshot_chunks_sent,
        status.snapshot_bytes_sent,
        status.snapshot_chunks_received,
        status.snapshot_bytes_received,
        status.snapshot_streams_failed,
        status.elections,
        status.transfers,
        status.fsyncs,
        status.persists,
        node.dropped_frames(),
        peers.join(","),
        clients.join(","),
    )
}
