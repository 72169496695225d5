//! An abstract specification of consensus on a log of register writes, written apart
//! from the core and sharing none of its code, so the core is never checked only
//! against itself.
//!
//! The abstract state is, per slot and membership epoch, the value chosen (at most one,
//! never retracted). The executed log reads slot after slot in epoch 0 until a chosen
//! value that stops the epoch (a reconfiguration); the slots after it are read in the
//! next epoch, and so on: a value an epoch chose above its stop is never executed.
//! The model maps every explored state onto it (see `model::refinement`) and checks:
//! each newly chosen value is the only one for its slot; no vote at or above the ballot
//! a value was chosen at is for another value (so a choice cannot be undone); every
//! value a replica committed is chosen; every reply carries the output that replaying
//! the chosen prefix gives, under this module's own register-and-dedup semantics.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A ballot as the spec sees it: `(epoch, round, node)`, compared lexicographically.
pub type SpecBallot = (u32, u32, usize);

/// A write as the spec sees it: `(client, seq, value)`.
pub type SpecWrite = (u64, u64, u8);

/// A slot's value as the spec sees it: its writes in order (empty for a no-op).
pub type SpecValue = Vec<SpecWrite>;

/// How the implementation departed from the spec.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpecViolation {
    /// A second, different value was chosen for a slot.
    TwoValuesChosen {
        /// The slot.
        slot: u64,
        /// The value chosen first.
        first: SpecValue,
        /// The other value.
        second: SpecValue,
    },
    /// A vote at or above the choosing ballot is for another value: the choice could be
    /// undone.
    ChoiceContradicted {
        /// The slot.
        slot: u64,
        /// The acceptor.
        node: usize,
        /// The contradicting vote's ballot.
        ballot: SpecBallot,
    },
    /// Two replicas began the same epoch at different slots or with different members.
    EpochsDiffer {
        /// The epoch.
        epoch: u32,
        /// The replica that disagrees with the first one seen in the epoch.
        node: usize,
    },
    /// A replica committed a value that is not the chosen one.
    CommittedUnchosen {
        /// The replica.
        node: usize,
        /// The slot.
        slot: u64,
    },
    /// A client was told its write was applied, but the write is not in the chosen
    /// prefix, or its output differs from the prefix's replay.
    WrongWriteReply {
        /// The client.
        client: u64,
        /// The request.
        seq: u64,
        /// The output replied.
        replied: Option<u8>,
        /// What the chosen prefix gives (`None` if the write is not in it).
        expected: Option<Option<u8>>,
    },
    /// A replica's applied register differs from the replay of the chosen prefix it
    /// applied.
    AppliedStateDiffers {
        /// The replica.
        node: usize,
        /// Slots it applied.
        applied: u64,
        /// Its register's value.
        value: Option<u8>,
        /// The replay's value (`None` inside if the prefix is not chosen that far).
        expected: Option<Option<u8>>,
    },
    /// A read returned a value that no prefix of the chosen log produces.
    ReadNotFromPrefix {
        /// The client.
        client: u64,
        /// The value read.
        replied: Option<u8>,
    },
}

impl fmt::Display for SpecViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// The abstract consensus state: what has been chosen.
///
/// ```
/// use ballot_model::spec::ConsensusSpec;
/// let mut spec = ConsensusSpec::default();
/// spec.choose(1, (0, 1, 0), vec![(7, 1, 3)], false).unwrap();
/// assert!(spec.choose(1, (0, 2, 1), vec![], false).is_err(), "a slot holds one value");
/// assert_eq!(spec.write_output(7, 1), Some(None));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConsensusSpec {
    /// Per slot and epoch: the lowest ballot it was seen chosen at, the value, and
    /// whether the value stops its epoch.
    chosen: BTreeMap<(u64, u32), (SpecBallot, SpecValue, bool)>,
    /// Client sessions remembered at once; `None` for no bound.
    sessions_max: Option<usize>,
}

impl ConsensusSpec {
    /// A spec under which at most `sessions_max` client sessions are remembered (`None`
    /// for no bound): opening one more forgets the one whose last write is oldest, and
    /// no write numbered at or below any forgotten session's last write opens a new one.
    pub fn with_sessions_max(sessions_max: Option<usize>) -> Self {
        ConsensusSpec {
            chosen: BTreeMap::new(),
            sessions_max,
        }
    }

    /// The abstract step "`value` is chosen for `slot` at `ballot`"; `stops` if it is a
    /// reconfiguration, which ends its epoch.
    pub fn choose(
        &mut self,
        slot: u64,
        ballot: SpecBallot,
        value: SpecValue,
        stops: bool,
    ) -> Result<(), SpecViolation> {
        match self.chosen.get_mut(&(slot, ballot.0)) {
            None => {
                self.chosen.insert((slot, ballot.0), (ballot, value, stops));
                Ok(())
            }
            Some((first_ballot, first, first_stops))
                if *first == value && *first_stops == stops =>
            {
                *first_ballot = (*first_ballot).min(ballot);
                Ok(())
            }
            Some((_, first, _)) => Err(SpecViolation::TwoValuesChosen {
                slot,
                first: first.clone(),
                second: value,
            }),
        }
    }

    /// Checks a vote against the choices: a vote at or above a slot's choosing ballot
    /// (of the same epoch) must be for the chosen value.
    pub fn check_vote(
        &self,
        node: usize,
        slot: u64,
        ballot: SpecBallot,
        value: &SpecValue,
        stops: bool,
    ) -> Result<(), SpecViolation> {
        match self.chosen.get(&(slot, ballot.0)) {
            Some((chosen_at, chosen, chosen_stops))
                if ballot >= *chosen_at && (chosen != value || *chosen_stops != stops) =>
            {
                Err(SpecViolation::ChoiceContradicted { slot, node, ballot })
            }
            _ => Ok(()),
        }
    }

    /// Checks that a replica's committed value for `slot` was chosen for it in some
    /// epoch (which epoch's value is executed there, the applied-state check decides).
    pub fn check_committed(
        &self,
        node: usize,
        slot: u64,
        value: &SpecValue,
        stops: bool,
    ) -> Result<(), SpecViolation> {
        let chosen = self
            .chosen
            .range((slot, 0)..=(slot, u32::MAX))
            .any(|(_, (_, chosen, chosen_stops))| chosen == value && *chosen_stops == stops);
        if chosen {
            Ok(())
        } else {
            Err(SpecViolation::CommittedUnchosen { node, slot })
        }
    }

    /// The executed value of `slot`, if the executed prefix reaches it.
    pub fn chosen(&self, slot: u64) -> Option<&SpecValue> {
        self.chosen_prefix()
            .find(|(at, _)| *at == slot)
            .map(|(_, value)| value)
    }

    /// The executed prefix `1..=n`, in order: slot by slot, the value chosen in the
    /// epoch that governs it — epoch 0 from slot 1, and the next epoch after each
    /// chosen value that stops one — up to the first slot with none.
    pub fn chosen_prefix(&self) -> impl Iterator<Item = (u64, &SpecValue)> {
        let mut epoch = 0;
        (1u64..).map_while(move |slot| {
            let (_, value, stops) = self.chosen.get(&(slot, epoch))?;
            if *stops {
                epoch += 1;
            }
            Some((slot, value))
        })
    }

    /// Replays the chosen prefix: a register whose write returns the previous value,
    /// where a client's write with a seq not above its last applied one is skipped, and
    /// so is a write of a client with no remembered session numbered at or below the
    /// highest last seq of any forgotten session.
    /// Calls `visit(client, seq, output)` for each applied write and `state(value)` for
    /// the register's value after each slot (and initially).
    fn replay(
        &self,
        mut visit: impl FnMut(u64, u64, Option<u8>),
        mut state: impl FnMut(Option<u8>),
    ) {
        let mut register: Option<u8> = None;
        // Remembered sessions, least recently written first: (client, last seq).
        let mut sessions: Vec<(u64, u64)> = Vec::new();
        let mut forgotten_up_to = 0;
        state(register);
        for (_, writes) in self.chosen_prefix() {
            for &(client, seq, value) in writes {
                match sessions.iter().position(|(c, _)| *c == client) {
                    Some(at) if seq <= sessions[at].1 => continue,
                    Some(at) => {
                        sessions.remove(at);
                    }
                    None if seq <= forgotten_up_to => continue,
                    None => {
                        if self
                            .sessions_max
                            .is_some_and(|max| sessions.len() >= max.max(1))
                        {
                            let (_, last) = sessions.remove(0);
                            forgotten_up_to = forgotten_up_to.max(last);
                        }
                    }
                }
                sessions.push((client, seq));
                visit(client, seq, register);
                register = Some(value);
            }
            state(register);
        }
    }

    /// The output the chosen prefix gives write `(client, seq)`, or `None` if it is not
    /// in the prefix.
    pub fn write_output(&self, client: u64, seq: u64) -> Option<Option<u8>> {
        let mut found = None;
        self.replay(
            |c, s, output| {
                if (c, s) == (client, seq) {
                    found = Some(output);
                }
            },
            |_| {},
        );
        found
    }

    /// Checks a write's reply against the chosen prefix.
    pub fn check_write_reply(
        &self,
        client: u64,
        seq: u64,
        replied: Option<u8>,
    ) -> Result<(), SpecViolation> {
        let expected = self.write_output(client, seq);
        if expected == Some(replied) {
            return Ok(());
        }
        Err(SpecViolation::WrongWriteReply {
            client,
            seq,
            replied,
            expected,
        })
    }

    /// Checks a replica's register after applying slots `1..=applied` against the
    /// replay of the chosen prefix that far.
    pub fn check_applied_state(
        &self,
        node: usize,
        applied: u64,
        value: Option<u8>,
    ) -> Result<(), SpecViolation> {
        // `state` is called once initially and once per slot: the `applied + 1`-th call
        // is the value after slot `applied`.
        let mut calls = 0;
        let mut expected = None;
        self.replay(
            |_, _, _| {},
            |register| {
                if calls == applied {
                    expected = Some(register);
                }
                calls += 1;
            },
        );
        if expected == Some(value) {
            return Ok(());
        }
        Err(SpecViolation::AppliedStateDiffers {
            node,
            applied,
            value,
            expected,
        })
    }

    /// Checks that a read's value is the register's value after some chosen prefix.
    pub fn check_read_reply(&self, client: u64, replied: Option<u8>) -> Result<(), SpecViolation> {
        let mut states = BTreeSet::new();
        self.replay(
            |_, _, _| {},
            |value| {
                states.insert(value);
            },
        );
        if states.contains(&replied) {
            return Ok(());
        }
        Err(SpecViolation::ReadNotFromPrefix { client, replied })
    }

    /// Renames the writes of every chosen value, for the model's client symmetry.
    #[cfg(feature = "model")]
    pub(crate) fn rename(&mut self, write: &dyn Fn(&mut SpecWrite)) {
        for (_, value, _) in self.chosen.values_mut() {
            value.iter_mut().for_each(write);
        }
    }
}
