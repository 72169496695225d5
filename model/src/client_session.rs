//! The client's side of the protocol, as a pure state machine: one session's sequence
//! numbers, where to send, when to try again, and what an answer means.
//!
//! A client session sends one operation at a time under `(client, seq)`, and every
//! attempt of that operation carries the same pair, so the leader applies it at most
//! once however often it arrives ([`ClientTable`](crate::ClientTable)). What the session
//! does with each answer is protocol, not plumbing: a client that re-numbered a request
//! one of whose attempts may still be applied would apply it twice. So it lives here,
//! beside the replica, and [`ClientSession::step`] is driven by the stateright model's
//! client actors and by the node's `request` alike: the client the node ships is the
//! client the model checks.
//!
//! The policy, per answer or event, while an operation is pending:
//!
//! | event | what the session does |
//! | --- | --- |
//! | `Written` / `ReadOk` for its seq | finished; the next operation takes the next seq |
//! | `Redirect` naming a node other than the target | send there now |
//! | `Redirect` naming the target | wait: the target may answer yet (a late redirect from an earlier target) |
//! | `Redirect` naming no one | no leader is known: pause ([`SessionTimer::AwaitLeader`]), then ask the next node |
//! | `Refused(Busy)` | back off ([`SessionTimer::Backoff`]), then ask the same node again |
//! | `Refused(TooLarge)` | finished: it can never be applied |
//! | `Refused(SessionExpired)` | if no attempt was abandoned, number it above the floor and send again (this attempt will never apply, and every earlier one was answered "not taken"); otherwise the outcome is unknown |
//! | [`SessionTimer::Attempt`] fires | the attempt is abandoned (it may still apply); ask the next node |
//! | [`SessionInput::LeaderIs`] another node | abandon the attempt; ask that node |
//! | [`SessionInput::GiveUp`] | outcome unknown; the next operation takes a later seq |
//!
//! Durations are the driver's: the session names its timers by purpose and a driver
//! maps each to a duration (the model fires them when timely).

use crate::ballot::{ClientId, NodeId};
use crate::message::{ClientRequest, ClientResponse, Refusal, Request};
use crate::mutant::mutant;
use serde::{Deserialize, Serialize};

/// What a client asks: a command for the log, or a read.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Operation<C, Q> {
    /// A command that goes through the log.
    Write(C),
    /// A linearizable read.
    Read(Q),
}

/// A session's timers, one per purpose. At most one is armed at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SessionTimer {
    /// No answer came in time: abandon the attempt and ask the next node. Longer than
    /// an election, so that a leader's failover is not mistaken for a lost request.
    Attempt,
    /// The leader's queue was full: ask it again after a pause.
    Backoff,
    /// The node asked knows no leader (an election is running): ask the next node once
    /// one may have been elected.
    AwaitLeader,
}

impl SessionTimer {
    /// Every session timer, for drivers that keep a table of them.
    pub const ALL: [SessionTimer; 3] = [
        SessionTimer::Attempt,
        SessionTimer::Backoff,
        SessionTimer::AwaitLeader,
    ];
}

/// An input to a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionInput<C, Q, O, R> {
    /// Start an operation. Its seq is the session's next, raised to at least
    /// `seq_at_least` (a driver's hint that lower numbers may be below the cluster's
    /// session floor); it goes to `leader` if the driver knows one, else to the node
    /// the session last used.
    Start {
        /// What to do.
        op: Operation<C, Q>,
        /// The lowest seq the driver wants it to carry.
        seq_at_least: u64,
        /// The leader the driver knows of, if any.
        leader: Option<NodeId>,
    },
    /// A server's answer for this client.
    Answer(ClientResponse<O, R>),
    /// A timer the session armed fired.
    Timer(SessionTimer),
    /// The driver learned of a leader (a node embedding the session sees its own
    /// replica's view).
    LeaderIs(NodeId),
    /// The driver stops waiting (a deadline, a caller that went away).
    GiveUp,
}

/// What a session asks its driver to do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEffect<C, Q, O, R> {
    /// Send `request` to node `to`.
    Send {
        /// The node.
        to: NodeId,
        /// The request (the same `(client, seq)` for every attempt of one operation,
        /// unless its session expired unused).
        request: ClientRequest<C, Q>,
    },
    /// Arm (or re-arm) a timer.
    SetTimer(SessionTimer),
    /// Disarm a timer.
    CancelTimer(SessionTimer),
    /// The operation is over.
    Finished(Outcome<O, R>),
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<O, R> {
    /// Applied (`Written`) or read (`ReadOk`): the server's answer.
    Answered(ClientResponse<O, R>),
    /// Refused for good, and never applied ([`Refusal::TooLarge`]).
    Refused(Refusal),
    /// It may or may not have been applied.
    Unknown(Uncertainty),
}

/// Why an operation's outcome is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Uncertainty {
    /// The session expired while an abandoned attempt may still have been applied.
    SessionExpired,
    /// The driver gave up waiting.
    GaveUp,
}

/// Why a session refused an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// An operation is already pending: a session runs one at a time.
    #[error("the session already has an operation pending")]
    Pending,
    /// The session has no members to send to.
    #[error("a session needs at least one member to send to")]
    NoMembers,
}

/// One client session (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientSession<C, Q> {
    client: ClientId,
    /// Nodes `0..members` serve requests; attempts rotate among them.
    members: usize,
    /// The pending operation's seq, or the next operation's when idle.
    seq: u64,
    /// Where the pending operation was last sent (or the next one goes).
    target: NodeId,
    /// Attempts after the first that an operation may make; `None` for no limit.
    retries: Option<u8>,
    pending: Option<Pending<C, Q>>,
    /// Which broken variant to run (only with the `mutants` feature).
    #[cfg(feature = "mutants")]
    mutant: Option<crate::mutant::Mutant>,
}

/// The operation in progress.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Pending<C, Q> {
    op: Operation<C, Q>,
    /// Some attempt was given up on without its answer: it may still be applied, so
    /// the request must keep its seq.
    abandoned: bool,
    /// Retries left (always 0 with no limit, so that retrying makes no new state).
    retries_left: u8,
    /// The one armed timer, if any (none once retries ran out).
    armed: Option<SessionTimer>,
}

type Effects<C, Q, O, R> = Vec<SessionEffect<C, Q, O, R>>;

impl<C: Clone, Q: Clone> ClientSession<C, Q> {
    /// A session for `client` among nodes `0..members`, sending first to `home`;
    /// `retries` bounds the attempts after the first (`None`: no limit).
    ///
    /// ```
    /// use ballot_model::client_session::{ClientSession, Operation, SessionEffect, SessionInput};
    /// let mut session = ClientSession::<u8, ()>::new(7, 3, 1, None).unwrap();
    /// let mut effects = Vec::<SessionEffect<u8, (), u8, u8>>::new();
    /// let op = Operation::Write(5);
    /// session.step(SessionInput::Start { op, seq_at_least: 0, leader: None }, &mut effects).unwrap();
    /// assert!(matches!(effects[0], SessionEffect::Send { to: 1, .. }));
    /// assert_eq!(session.seq(), 1);
    /// ```
    pub fn new(
        client: ClientId,
        members: usize,
        home: NodeId,
        retries: Option<u8>,
    ) -> Result<Self, SessionError> {
        if members == 0 {
            return Err(SessionError::NoMembers);
        }
        Ok(ClientSession {
            client,
            members,
            seq: 1,
            target: home % members,
            retries,
            pending: None,
            #[cfg(feature = "mutants")]
            mutant: None,
        })
    }

    /// Nodes `0..members` serve requests from now on: the cluster gave out more ids
    /// (machines added at an address) since the session was made. Leader hints name
    /// any of them, and attempts without one rotate among them.
    ///
    /// ```
    /// use ballot_model::client_session::ClientSession;
    /// let mut session = ClientSession::<u8, ()>::new(7, 3, 1, None).unwrap();
    /// session.set_members(5).unwrap();
    /// assert!(session.set_members(0).is_err());
    /// ```
    pub fn set_members(&mut self, members: usize) -> Result<(), SessionError> {
        if members == 0 {
            return Err(SessionError::NoMembers);
        }
        self.members = members;
        self.target %= members;
        Ok(())
    }

    /// Selects a deliberately broken variant (only with the `mutants` feature).
    #[cfg(feature = "mutants")]
    pub fn with_mutant(mut self, mutant: Option<crate::mutant::Mutant>) -> Self {
        self.mutant = mutant;
        self
    }

    /// The session's client id.
    pub fn client(&self) -> ClientId {
        self.client
    }

    /// The pending operation's seq, or the next operation's when idle.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The node the pending operation was last sent to.
    pub fn target(&self) -> NodeId {
        self.target
    }

    /// True while an operation is pending.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// True if an answer with `seq` could still matter to this session: one for the
    /// pending operation. Every other answer is ignored, now and later (seqs only grow).
    pub fn awaits(&self, seq: u64) -> bool {
        self.pending.is_some() && seq == self.seq
    }

    /// Feeds one input; appends the effects to run, in order. Answers for another seq
    /// and timers that are not armed are ignored (late, or already superseded).
    ///
    /// ```
    /// use ballot_model::client_session::*;
    /// use ballot_model::{ClientResponse, Refusal};
    /// let mut session = ClientSession::<u8, ()>::new(7, 3, 0, None).unwrap();
    /// let mut effects = Vec::<SessionEffect<u8, (), u8, u8>>::new();
    /// let op = Operation::Write(5);
    /// session.step(SessionInput::Start { op, seq_at_least: 0, leader: None }, &mut effects).unwrap();
    /// // Nothing was taken, and this attempt never will be: number it above the floor.
    /// let expired = ClientResponse::Refused { seq: 1, reason: Refusal::SessionExpired { floor: 9 } };
    /// effects.clear();
    /// session.step(SessionInput::Answer(expired), &mut effects).unwrap();
    /// assert_eq!(session.seq(), 10);
    /// assert!(matches!(&effects[0], SessionEffect::Send { to: 0, request } if request.id() == (7, 10)));
    /// ```
    pub fn step<O, R>(
        &mut self,
        input: SessionInput<C, Q, O, R>,
        effects: &mut Effects<C, Q, O, R>,
    ) -> Result<(), SessionError> {
        match input {
            SessionInput::Start {
                op,
                seq_at_least,
                leader,
            } => {
                if self.pending.is_some() {
                    return Err(SessionError::Pending);
                }
                self.seq = self.seq.max(seq_at_least);
                if let Some(leader) = leader.filter(|l| *l < self.members) {
                    self.target = leader;
                }
                self.pending = Some(Pending {
                    op,
                    abandoned: false,
                    retries_left: self.retries.unwrap_or(0),
                    armed: None,
                });
                self.send(effects);
            }
            SessionInput::Answer(response) => {
                if self.awaits(response.seq()) {
                    self.on_answer(response, effects);
                }
            }
            SessionInput::Timer(timer) => self.on_timer(timer, effects),
            SessionInput::LeaderIs(leader) => {
                if self.pending.is_some() && leader != self.target && leader < self.members {
                    self.abandon();
                    self.target = leader;
                    self.send(effects);
                }
            }
            SessionInput::GiveUp => {
                if self.pending.is_some() {
                    self.finish(Outcome::Unknown(Uncertainty::GaveUp), effects);
                }
            }
        }
        Ok(())
    }

    fn on_answer<O, R>(
        &mut self,
        response: ClientResponse<O, R>,
        effects: &mut Effects<C, Q, O, R>,
    ) {
        debug_assert!(self.awaits(response.seq()), "an answer for another seq");
        match response {
            ClientResponse::Written { .. } | ClientResponse::ReadOk { .. } => {
                self.finish(Outcome::Answered(response), effects);
            }
            ClientResponse::Redirect {
                leader: Some(leader),
                ..
            } if leader != self.target && leader < self.members => {
                self.target = leader;
                self.send(effects);
            }
            ClientResponse::Redirect { leader: None, .. } => {
                self.arm(SessionTimer::AwaitLeader, effects);
            }
            // Named the node already asked: a late answer to an earlier attempt, or a
            // hint this session cannot use. The target's own answer, or the attempt
            // timer, decides.
            ClientResponse::Redirect { .. } => {}
            ClientResponse::Refused {
                reason: Refusal::Busy,
                ..
            } => self.arm(SessionTimer::Backoff, effects),
            ClientResponse::Refused {
                reason: reason @ Refusal::TooLarge { .. },
                ..
            } => self.finish(Outcome::Refused(reason), effects),
            ClientResponse::Refused {
                reason: Refusal::SessionExpired { floor },
                ..
            } => {
                let abandoned = self.pending.as_ref().is_some_and(|p| p.abandoned)
                    && !mutant!(self, ClientRenumbersAbandoned);
                // This attempt will never be applied (the floor only rises). If every
                // earlier one was answered "not taken", none will: the operation may
                // be numbered above the floor and sent again. Otherwise one may have
                // been applied before the session expired.
                let renumbered = floor.max(self.seq) + 1;
                if abandoned {
                    self.finish(Outcome::Unknown(Uncertainty::SessionExpired), effects);
                    // `finish` moved past the expired seq; stay above the floor too.
                    self.seq = self.seq.max(renumbered);
                } else {
                    self.seq = renumbered;
                    self.send(effects);
                }
            }
        }
    }

    fn on_timer<O, R>(&mut self, timer: SessionTimer, effects: &mut Effects<C, Q, O, R>) {
        let retries = self.retries;
        let members = self.members;
        let Some(pending) = self.pending.as_mut().filter(|p| p.armed == Some(timer)) else {
            return; // Not armed: a firing the driver could not cancel in time.
        };
        pending.armed = None;
        match timer {
            SessionTimer::Attempt => {
                if retries.is_some() && pending.retries_left == 0 {
                    return; // Out of retries: wait for an answer, if one comes.
                }
                pending.retries_left = pending.retries_left.saturating_sub(1);
                pending.abandoned = true;
                self.target = (self.target + 1) % members;
                self.send(effects);
            }
            // The leader is there, only busy: ask it again.
            SessionTimer::Backoff => self.send(effects),
            // Ask the next node, not the one that knew no leader: that one may stay
            // without one for long (a node whose higher ballot the others ignore
            // learns of no leader until it gives up), and asking it again and again
            // would keep the request from ever timing out.
            SessionTimer::AwaitLeader => {
                self.target = (self.target + 1) % members;
                self.send(effects);
            }
        }
    }

    /// Sends the pending operation to the target and arms the attempt timer.
    fn send<O, R>(&mut self, effects: &mut Effects<C, Q, O, R>) {
        let (client, seq) = (self.client, self.seq);
        let Some(pending) = &self.pending else {
            debug_assert!(false, "send with nothing pending");
            return;
        };
        let request = match &pending.op {
            Operation::Write(command) => ClientRequest::Write(Request {
                client,
                seq,
                command: command.clone(),
            }),
            Operation::Read(query) => ClientRequest::Read {
                client,
                seq,
                query: query.clone(),
            },
        };
        effects.push(SessionEffect::Send {
            to: self.target,
            request,
        });
        self.arm(SessionTimer::Attempt, effects);
    }

    /// Makes `timer` the one armed timer.
    fn arm<O, R>(&mut self, timer: SessionTimer, effects: &mut Effects<C, Q, O, R>) {
        let Some(pending) = &mut self.pending else {
            return;
        };
        if let Some(previous) = pending.armed.filter(|t| *t != timer) {
            effects.push(SessionEffect::CancelTimer(previous));
        }
        pending.armed = Some(timer);
        effects.push(SessionEffect::SetTimer(timer));
    }

    /// Marks the pending attempt as given up on without its answer.
    fn abandon(&mut self) {
        if let Some(pending) = &mut self.pending {
            pending.abandoned = true;
        }
    }

    /// Ends the pending operation with `outcome`; the next one takes the next seq
    /// (a later seq supersedes this one in the leader's client table).
    fn finish<O, R>(&mut self, outcome: Outcome<O, R>, effects: &mut Effects<C, Q, O, R>) {
        if let Some(timer) = self.pending.take().and_then(|p| p.armed) {
            effects.push(SessionEffect::CancelTimer(timer));
        }
        self.seq += 1;
        effects.push(SessionEffect::Finished(outcome));
    }

    /// Renames the client and the command in flight, for the model's client symmetry
    /// (`model::symmetry`): the session the client named `client(self.client)` would
    /// hold in the mirrored run.
    #[cfg(feature = "model")]
    pub(crate) fn rename(
        &mut self,
        client: &dyn Fn(ClientId) -> ClientId,
        command: &dyn Fn(&mut C),
    ) {
        self.client = client(self.client);
        if let Some(Pending {
            op: Operation::Write(written),
            ..
        }) = &mut self.pending
        {
            command(written);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Session = ClientSession<u8, ()>;
    type Effect = SessionEffect<u8, (), u8, u8>;

    /// A session of client 7 among three nodes, home 0, with a write to node 0 sent.
    fn started(retries: Option<u8>) -> (Session, Vec<Effect>) {
        let mut session = Session::new(7, 3, 0, retries).unwrap();
        let mut effects = Vec::new();
        let start = SessionInput::Start {
            op: Operation::Write(5),
            seq_at_least: 0,
            leader: None,
        };
        session.step(start, &mut effects).unwrap();
        (session, effects)
    }

    fn step(session: &mut Session, input: SessionInput<u8, (), u8, u8>) -> Vec<Effect> {
        let mut effects = Vec::new();
        session.step(input, &mut effects).unwrap();
        effects
    }

    fn answer(session: &mut Session, response: ClientResponse<u8, u8>) -> Vec<Effect> {
        step(session, SessionInput::Answer(response))
    }

    /// The `(to, client, seq)` of each send.
    fn sends(effects: &[Effect]) -> Vec<(NodeId, ClientId, u64)> {
        effects
            .iter()
            .filter_map(|e| match e {
                SessionEffect::Send { to, request } => Some((*to, request.id().0, request.id().1)),
                _ => None,
            })
            .collect()
    }

    fn armed(effects: &[Effect]) -> Vec<SessionTimer> {
        effects
            .iter()
            .filter_map(|e| match e {
                SessionEffect::SetTimer(t) => Some(*t),
                _ => None,
            })
            .collect()
    }

    fn finished(effects: &[Effect]) -> Option<&Outcome<u8, u8>> {
        effects.iter().find_map(|e| match e {
            SessionEffect::Finished(outcome) => Some(outcome),
            _ => None,
        })
    }

    #[test]
    fn start_sends_to_the_known_leader_or_the_last_target_and_arms_the_attempt() {
        let (session, effects) = started(None);
        assert_eq!(sends(&effects), vec![(0, 7, 1)]);
        assert_eq!(armed(&effects), vec![SessionTimer::Attempt]);
        assert!(session.awaits(1) && !session.awaits(2));

        let mut session = Session::new(7, 3, 0, None).unwrap();
        let start = SessionInput::Start {
            op: Operation::Read(()),
            seq_at_least: 40,
            leader: Some(2),
        };
        let effects = step(&mut session, start);
        assert_eq!(sends(&effects), vec![(2, 7, 40)]);
        let again = SessionInput::Start {
            op: Operation::Read(()),
            seq_at_least: 0,
            leader: None,
        };
        assert_eq!(
            session.step(again, &mut Vec::<Effect>::new()),
            Err(SessionError::Pending)
        );
        assert_eq!(Session::new(7, 0, 0, None), Err(SessionError::NoMembers));
    }

    #[test]
    fn an_answer_finishes_the_operation_and_the_next_takes_the_next_seq() {
        let (mut session, _) = started(None);
        // Answers for another seq are late: ignored.
        assert!(answer(&mut session, ClientResponse::Written { seq: 0, output: 1 }).is_empty());
        let effects = answer(&mut session, ClientResponse::Written { seq: 1, output: 1 });
        assert_eq!(
            finished(&effects),
            Some(&Outcome::Answered(ClientResponse::Written {
                seq: 1,
                output: 1
            }))
        );
        assert!(effects.contains(&SessionEffect::CancelTimer(SessionTimer::Attempt)));
        assert!(!session.is_pending());
        assert_eq!(session.seq(), 2);
        // A second answer for the finished seq changes nothing.
        assert!(answer(&mut session, ClientResponse::Written { seq: 1, output: 1 }).is_empty());
    }

    #[test]
    fn a_redirect_to_another_node_is_followed_and_one_to_the_target_or_no_one_waits() {
        let (mut session, _) = started(None);
        let effects = answer(
            &mut session,
            ClientResponse::Redirect {
                seq: 1,
                leader: Some(2),
            },
        );
        assert_eq!(sends(&effects), vec![(2, 7, 1)]);
        // A late redirect from node 0 naming node 2, the target: the target answers.
        let effects = answer(
            &mut session,
            ClientResponse::Redirect {
                seq: 1,
                leader: Some(2),
            },
        );
        assert!(effects.is_empty(), "{effects:?}");
        // A hint outside the cluster is no hint.
        let effects = answer(
            &mut session,
            ClientResponse::Redirect {
                seq: 1,
                leader: Some(9),
            },
        );
        assert!(effects.is_empty(), "{effects:?}");
        // No leader known: pause, then ask the next node.
        let effects = answer(
            &mut session,
            ClientResponse::Redirect {
                seq: 1,
                leader: None,
            },
        );
        assert_eq!(
            effects,
            vec![
                SessionEffect::CancelTimer(SessionTimer::Attempt),
                SessionEffect::SetTimer(SessionTimer::AwaitLeader)
            ]
        );
        // The attempt timer was cancelled: a late firing is ignored.
        assert!(step(&mut session, SessionInput::Timer(SessionTimer::Attempt)).is_empty());
        let effects = step(&mut session, SessionInput::Timer(SessionTimer::AwaitLeader));
        assert_eq!(
            sends(&effects),
            vec![(0, 7, 1)],
            "node 2 knew no leader: ask node 0"
        );
        assert_eq!(armed(&effects), vec![SessionTimer::Attempt]);
    }

    #[test]
    fn a_busy_leader_is_asked_again_after_a_pause() {
        let (mut session, _) = started(None);
        let busy = ClientResponse::Refused {
            seq: 1,
            reason: Refusal::Busy,
        };
        let effects = answer(&mut session, busy);
        assert_eq!(armed(&effects), vec![SessionTimer::Backoff]);
        assert!(sends(&effects).is_empty());
        let effects = step(&mut session, SessionInput::Timer(SessionTimer::Backoff));
        assert_eq!(sends(&effects), vec![(0, 7, 1)]);
    }

    #[test]
    fn too_large_is_final_and_never_applied() {
        let (mut session, _) = started(None);
        let reason = Refusal::TooLarge { bytes: 9, max: 4 };
        let effects = answer(&mut session, ClientResponse::Refused { seq: 1, reason });
        assert_eq!(finished(&effects), Some(&Outcome::Refused(reason)));
        assert_eq!(session.seq(), 2);
    }

    #[test]
    fn an_expired_session_renumbers_only_if_no_attempt_was_abandoned() {
        let expired = |seq| ClientResponse::Refused {
            seq,
            reason: Refusal::SessionExpired { floor: 20 },
        };
        // Every attempt answered "not taken": number it above the floor, same node.
        let (mut session, _) = started(None);
        let effects = answer(&mut session, expired(1));
        assert_eq!(sends(&effects), vec![(0, 7, 21)]);
        assert!(session.awaits(21) && !session.awaits(1));

        // An attempt timed out and may still be applied: the outcome is unknown, and
        // the next operation starts above the floor.
        let (mut session, _) = started(None);
        let effects = step(&mut session, SessionInput::Timer(SessionTimer::Attempt));
        assert_eq!(sends(&effects), vec![(1, 7, 1)]);
        let effects = answer(&mut session, expired(1));
        assert_eq!(
            finished(&effects),
            Some(&Outcome::Unknown(Uncertainty::SessionExpired))
        );
        assert!(sends(&effects).is_empty());
        assert_eq!(session.seq(), 21);
    }

    #[test]
    fn news_of_a_leader_abandons_the_attempt_and_asks_the_leader() {
        let (mut session, _) = started(None);
        // News of the target itself is no news.
        assert!(step(&mut session, SessionInput::LeaderIs(0)).is_empty());
        let effects = step(&mut session, SessionInput::LeaderIs(1));
        assert_eq!(sends(&effects), vec![(1, 7, 1)]);
        // The attempt at node 0 may still apply: an expiry now leaves it unknown.
        let expired = ClientResponse::Refused {
            seq: 1,
            reason: Refusal::SessionExpired { floor: 3 },
        };
        let effects = answer(&mut session, expired);
        assert_eq!(
            finished(&effects),
            Some(&Outcome::Unknown(Uncertainty::SessionExpired))
        );
    }

    #[test]
    fn attempts_rotate_through_the_members_within_the_retry_budget() {
        let (mut session, _) = started(Some(2));
        let mut targets = Vec::new();
        for _ in 0..3 {
            let effects = step(&mut session, SessionInput::Timer(SessionTimer::Attempt));
            targets.extend(sends(&effects).into_iter().map(|(to, _, seq)| (to, seq)));
        }
        // Two retries, same seq, next node each time; the third firing lapses.
        assert_eq!(targets, vec![(1, 1), (2, 1)]);
        assert!(session.is_pending(), "still waiting for an answer");
        let effects = answer(&mut session, ClientResponse::Written { seq: 1, output: 0 });
        assert!(finished(&effects).is_some());
    }

    #[test]
    fn giving_up_leaves_the_outcome_unknown_and_moves_the_seq_on() {
        let (mut session, _) = started(None);
        let effects = step(&mut session, SessionInput::GiveUp);
        assert_eq!(
            finished(&effects),
            Some(&Outcome::Unknown(Uncertainty::GaveUp))
        );
        assert_eq!(session.seq(), 2);
        assert!(step(&mut session, SessionInput::GiveUp).is_empty());
        assert!(step(&mut session, SessionInput::Timer(SessionTimer::Attempt)).is_empty());
    }
}
