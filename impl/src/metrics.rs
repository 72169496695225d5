//! The node's metrics in the Prometheus text exposition format, and a minimal HTTP
//! endpoint serving them (`GET /metrics`); anything else gets a 404.

use crate::node::{Status, FSYNC_BUCKETS_US};
use std::fmt::Write as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Renders `status` (plus the peer frames dropped) as Prometheus text.
///
/// ```
/// use ballot_node::node::Status;
/// let text = ballot_node::metrics::render(&Status { commit_index: 7, ..Status::default() }, 0);
/// assert!(text.contains("ballot_commit_index 7\n"));
/// ```
pub fn render(status: &Status, dropped_frames: u64) -> String {
    let leader = status.leader.map_or("-1".to_string(), |l| l.to_string());
    let metrics: [(&str, &str, &str, String); 24] = [
        (
            "ballot_voter",
            "gauge",
            "1 if this node votes, 0 otherwise (a learner, a spare not added, a removed node).",
            u8::from(status.voter).to_string(),
        ),
        (
            "ballot_membership_epoch",
            "gauge",
            "Membership changes this node has applied: the epoch it is in.",
            status.membership.epoch.to_string(),
        ),
        (
            "ballot_voters",
            "gauge",
            "Voters in this node's membership.",
            status.membership.voters.len().to_string(),
        ),
        (
            "ballot_learners",
            "gauge",
            "Learners in this node's membership.",
            status.membership.learners.len().to_string(),
        ),
        (
            "ballot_commit_index",
            "gauge",
            "Slots known chosen.",
            status.commit_index.to_string(),
        ),
        (
            "ballot_applied_index",
            "gauge",
            "Slots applied to the state machine.",
            status.applied_index.to_string(),
        ),
        (
            "ballot_compacted_index",
            "gauge",
            "Slots dropped from the log into a snapshot.",
            status.compacted_index.to_string(),
        ),
        (
            "ballot_log_bytes",
            "gauge",
            "Size of the write-ahead log.",
            status.log_bytes.to_string(),
        ),
        (
            "ballot_snapshots_saved_total",
            "counter",
            "Snapshots saved by this node's log compaction.",
            status.snapshots_saved.to_string(),
        ),
        (
            "ballot_snapshots_installed_total",
            "counter",
            "Snapshots installed from a peer.",
            status.snapshots_installed.to_string(),
        ),
        (
            "ballot_sessions",
            "gauge",
            "Client sessions in the applied state (at most sessions_max).",
            status.sessions.to_string(),
        ),
        (
            "ballot_session_floor",
            "gauge",
            "Requests of expired client sessions are numbered at or below this.",
            status.session_floor.to_string(),
        ),
        (
            "ballot_snapshot_chunks_sent_total",
            "counter",
            "Chunks of snapshot streams sent to peers, re-sends included.",
            status.snapshot_chunks_sent.to_string(),
        ),
        (
            "ballot_snapshot_bytes_sent_total",
            "counter",
            "Bytes of snapshot stream chunks sent to peers.",
            status.snapshot_bytes_sent.to_string(),
        ),
        (
            "ballot_snapshot_chunks_received_total",
            "counter",
            "Chunks of snapshot streams received in order from peers.",
            status.snapshot_chunks_received.to_string(),
        ),
        (
            "ballot_snapshot_bytes_received_total",
            "counter",
            "Bytes of snapshot stream chunks received in order from peers.",
            status.snapshot_bytes_received.to_string(),
        ),
        (
            "ballot_snapshot_streams_failed_total",
            "counter",
            "Snapshot streams given up: stalled, refused, corrupt or too large.",
            status.snapshot_streams_failed.to_string(),
        ),
        (
            "ballot_is_leader",
            "gauge",
            "1 if this node leads.",
            u8::from(status.role == "leader").to_string(),
        ),
        (
            "ballot_leader_id",
            "gauge",
            "The leader this node knows of, -1 if none.",
            leader,
        ),
        (
            "ballot_proposals_total",
            "counter",
            "Client writes handed to the core on this node.",
            status.proposals.to_string(),
        ),
        (
            "ballot_elections_total",
            "counter",
            "Elections this node started.",
            status.elections.to_string(),
        ),
        (
            "ballot_leadership_transfers_total",
            "counter",
            "Times this node handed its leadership over.",
            status.transfers.to_string(),
        ),
        (
            "ballot_persist_records_total",
            "counter",
            "Records appended to the write-ahead log.",
            status.persists.to_string(),
        ),
        (
            "ballot_dropped_peer_frames_total",
            "counter",
            "Peer frames dropped on full send queues.",
            dropped_frames.to_string(),
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in metrics {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    }
    let _ = write!(
        out,
        "# HELP ballot_fsync_seconds Write-ahead log fsync latency.\n# TYPE ballot_fsync_seconds histogram\n"
    );
    for (bucket, bound) in FSYNC_BUCKETS_US.iter().enumerate() {
        let _ = writeln!(
            out,
            "ballot_fsync_seconds_bucket{{le=\"{}\"}} {}",
            *bound as f64 / 1e6,
            status.fsync_buckets[bucket]
        );
    }
    let _ = writeln!(
        out,
        "ballot_fsync_seconds_bucket{{le=\"+Inf\"}} {}",
        status.fsyncs
    );
    let _ = writeln!(
        out,
        "ballot_fsync_seconds_sum {}",
        status.fsync_micros_total as f64 / 1e6
    );
    let _ = writeln!(out, "ballot_fsync_seconds_count {}", status.fsyncs);
    out
}

/// Serves `GET /metrics` on `listener` with whatever `text()` returns, until dropped.
pub async fn serve(listener: TcpListener, text: impl Fn() -> String + Send + Sync + 'static) {
    let text = std::sync::Arc::new(text);
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let text = text.clone();
        tokio::spawn(async move {
            // One small request per connection; a client that sends nothing within a
            // second is dropped.
            let mut request = [0u8; 1024];
            let read = match tokio::time::timeout(
                std::time::Duration::from_secs(1),
                stream.read(&mut request),
            )
            .await
            {
                Ok(Ok(read)) => read,
                _ => return,
            };
            let head = String::from_utf8_lossy(&request[..read]);
            let response = if head.starts_with("GET /metrics ") {
                let body = text();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
