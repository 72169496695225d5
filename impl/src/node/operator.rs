//! An operator's request asked of any node: a membership change or a leadership
//! transfer that this node cannot make, because it does not lead, goes to the leader,
//! which runs it as if it had been asked itself and sends back its answer.
//!
//! Only the node the operator asked forwards, and it follows at most [`HOPS_MAX`]
//! leader hints: a node that receives a forwarded request runs it on its own core
//! and answers, whatever that answer is, so a request never circles between nodes
//! whose ideas of the leader disagree. The leader runs at most
//! [`limits::OPERATOR_REQUESTS_MAX`] forwarded requests at once, and holds as many
//! more; one beyond those is dropped and logged, and its asker times out, as it would
//! if the frame were lost.

use super::{frame, Frame, Node, NodeError, PeerFrame, Replicated, Shared};
use crate::limits;
use ballot_model::{MemberChange, Membership, NodeId, ReconfigureRefusal, Slot, TransferRefusal};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Leader hints a forwarded request follows before the refusal that names the next
/// one is the answer: the leader a follower knows of can have been deposed since, and
/// the node it forwarded to may know the new one. Three hops ride out a failover
/// without letting a request chase a leadership that keeps moving.
pub(super) const HOPS_MAX: usize = 3;

/// A request an operator may ask of any node; one that does not lead forwards it to
/// the node that does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperatorRequest {
    /// [`Node::reconfigure`].
    Reconfigure(MemberChange),
    /// The leader hands its leadership to `to`, or to a peer it picks
    /// ([`Node::move_leadership`]).
    TransferLeadership {
        /// The successor asked for, if any.
        to: Option<NodeId>,
    },
}

/// The leader's answer to a forwarded [`OperatorRequest`]: what its own call returned,
/// as far as an error can cross the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperatorAnswer {
    /// The change was applied: the membership it began.
    Reconfigured(Membership),
    /// Leadership moved: the node that leads now.
    LeaderMoved(NodeId),
    /// The change was refused; nothing changed.
    ReconfigureRefused(ReconfigureRefusal),
    /// The transfer was refused; nothing changed.
    TransferRefused(TransferRefusal),
    /// Another change began the epoch this one would have ([`NodeError::ReconfigureSuperseded`]).
    Superseded {
        /// The epoch.
        epoch: u32,
        /// The slot it begins at.
        start: Slot,
    },
    /// The leader had no answer within this long: the outcome is unknown.
    Timeout(Duration),
    /// The leader could not serve the request (it was shutting down, its storage
    /// failed, ...): the outcome is unknown. Its error, as text.
    Failed(String),
}

impl OperatorAnswer {
    /// The answer that stands for `result`, the leader's own call's.
    fn new(result: Result<OperatorAnswer, NodeError>) -> Self {
        match result {
            Ok(answer) => answer,
            Err(NodeError::ReconfigureRefused(refusal)) => {
                OperatorAnswer::ReconfigureRefused(refusal)
            }
            Err(NodeError::TransferRefused(refusal)) => OperatorAnswer::TransferRefused(refusal),
            Err(NodeError::ReconfigureSuperseded { epoch, start }) => {
                OperatorAnswer::Superseded { epoch, start }
            }
            Err(NodeError::Timeout(after)) => OperatorAnswer::Timeout(after),
            Err(other) => OperatorAnswer::Failed(other.to_string()),
        }
    }

    /// The answer as the asker's own call returns it; `leader` is the node that gave it.
    fn into_result(self, leader: NodeId) -> Result<OperatorAnswer, NodeError> {
        match self {
            OperatorAnswer::ReconfigureRefused(refusal) => {
                Err(NodeError::ReconfigureRefused(refusal))
            }
            OperatorAnswer::TransferRefused(refusal) => Err(NodeError::TransferRefused(refusal)),
            OperatorAnswer::Superseded { epoch, start } => {
                Err(NodeError::ReconfigureSuperseded { epoch, start })
            }
            OperatorAnswer::Timeout(after) => Err(NodeError::Timeout(after)),
            OperatorAnswer::Failed(reason) => Err(NodeError::LeaderFailed { leader, reason }),
            done @ (OperatorAnswer::Reconfigured(_) | OperatorAnswer::LeaderMoved(_)) => Ok(done),
        }
    }
}

/// The leader a refusal says to ask instead, if it is a refusal for not leading that
/// names one.
fn leader_named(error: &NodeError) -> Option<NodeId> {
    match error {
        NodeError::ReconfigureRefused(ReconfigureRefusal::NotLeader { leader })
        | NodeError::TransferRefused(TransferRefusal::NotLeader { leader }) => *leader,
        _ => None,
    }
}

/// A request a peer forwarded to this node, waiting to be run.
#[derive(Debug)]
pub(super) struct Forwarded {
    /// The node that forwarded it, which the answer goes back to.
    pub(super) from: NodeId,
    /// Its number at that node.
    pub(super) id: u64,
    pub(super) request: OperatorRequest,
}

impl<S: Replicated> Node<S> {
    /// Runs `request` on this node's core; if this node does not lead, forwards it to
    /// the leader the refusal names (following at most [`HOPS_MAX`] such hints) and
    /// returns that node's answer.
    pub(super) async fn ask_any(
        &self,
        request: OperatorRequest,
    ) -> Result<OperatorAnswer, NodeError> {
        let me = self.shared.config.id;
        let mut result = self.run_here(request.clone()).await;
        let mut asked = me;
        for _ in 0..HOPS_MAX {
            match result.as_ref().err().and_then(leader_named) {
                Some(leader) if leader != asked && leader != me => {
                    result = self
                        .forward(leader, request.clone())
                        .await
                        .and_then(|answer| answer.into_result(leader));
                    asked = leader;
                }
                _ => break,
            }
        }
        result
    }

    /// Runs `request` as this node's own (no forwarding).
    async fn run_here(&self, request: OperatorRequest) -> Result<OperatorAnswer, NodeError> {
        match request {
            OperatorRequest::Reconfigure(change) => self
                .reconfigure_here(change)
                .await
                .map(OperatorAnswer::Reconfigured),
            OperatorRequest::TransferLeadership { to } => self
                .transfer_leadership(to)
                .await
                .map(OperatorAnswer::LeaderMoved),
        }
    }

    /// Sends `request` to `leader` and waits for its answer: as long as the leader may
    /// take to run it (the request timeout), plus the longest election timeout for
    /// the frames' way and the leader's queue.
    async fn forward(
        &self,
        leader: NodeId,
        request: OperatorRequest,
    ) -> Result<OperatorAnswer, NodeError> {
        let shared = &self.shared;
        let config = &shared.config;
        let id = shared.next_operator_request.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            leader,
            ?request,
            "forwarding an operator's request to the leader"
        );
        let mut bytes = Vec::new();
        let frame: Frame<S> = PeerFrame::Operator { id, request };
        if let Err(error) = frame::encode(&frame, &mut bytes, config.max_frame_bytes) {
            return Err(NodeError::Internal(format!(
                "cannot encode an operator's request: {error}"
            )));
        }
        // Keyed by the request's number and the node asked: only that node's answer
        // completes it.
        let reply = shared.operator_replies.register(id, leader as u64);
        shared.network.send(leader, bytes);
        let limit = config.request_timeout + config.election_timeout_max;
        let answer = tokio::time::timeout(limit, reply).await;
        shared.operator_replies.cancel(id, leader as u64);
        match answer {
            Ok(Some(answer)) => Ok(answer),
            Ok(None) => Err(self.stopped_error()),
            Err(_) => Err(NodeError::Timeout(limit)),
        }
    }
}

/// Runs the requests peers forward to this node, at most
/// [`limits::OPERATOR_REQUESTS_MAX`] at once, each answered to the node that forwarded
/// it. Holds the node only while a request runs, so a node dropped without a shutdown
/// is freed; ends when the inbox is gone or the node is.
pub(super) async fn serve_forwarded<S: Replicated>(
    node: std::sync::Weak<Shared<S>>,
    mut requests: mpsc::Receiver<Forwarded>,
) {
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            forwarded = requests.recv(), if running.len() < limits::OPERATOR_REQUESTS_MAX => {
                let Some(Forwarded { from, id, request }) = forwarded else { break };
                let Some(shared) = node.upgrade() else { break };
                let node = Node { shared };
                running.spawn(async move {
                    tracing::info!(from, ?request, "running an operator's request forwarded by a peer");
                    let answer = OperatorAnswer::new(node.run_here(request).await);
                    let mut bytes = Vec::new();
                    let frame: Frame<S> = PeerFrame::OperatorReply { id, answer };
                    match frame::encode(&frame, &mut bytes, node.shared.config.max_frame_bytes) {
                        Ok(()) => node.shared.network.send(from, bytes),
                        Err(error) => tracing::error!(%error, "cannot encode the answer to a forwarded request"),
                    }
                });
            }
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaders_error_crosses_back_as_the_same_error_or_as_its_failure() {
        let same = [
            NodeError::ReconfigureRefused(ReconfigureRefusal::LastVoter),
            NodeError::ReconfigureRefused(ReconfigureRefusal::NotLeader { leader: Some(2) }),
            NodeError::TransferRefused(TransferRefusal::NoPeer),
            NodeError::ReconfigureSuperseded { epoch: 2, start: 9 },
            NodeError::Timeout(Duration::from_millis(1500)),
        ];
        for error in same {
            let said = error.to_string();
            let back = OperatorAnswer::new(Err(error))
                .into_result(1)
                .expect_err("an error stays one");
            assert_eq!(back.to_string(), said);
        }
        // Anything else says the leader could not serve it: the outcome is unknown.
        let back = OperatorAnswer::new(Err(NodeError::Shutdown))
            .into_result(1)
            .expect_err("an error stays one");
        match back {
            NodeError::LeaderFailed { leader: 1, reason } => {
                assert_eq!(reason, NodeError::Shutdown.to_string())
            }
            other => panic!("{other:?}"),
        }
        let done = OperatorAnswer::new(Ok(OperatorAnswer::LeaderMoved(2))).into_result(1);
        assert_eq!(done.ok(), Some(OperatorAnswer::LeaderMoved(2)));
    }
}
