//! The operator of the membership model: a script of membership changes, asked of
//! whichever server leads when the model lets the operator act.
//!
//! The operator asks for the first change of its script that the leader's membership
//! does not show done yet, so a change lost with a deposed leader is asked again, and a
//! change already made is never asked twice. What is asked depends only on the state,
//! as the model's actions must.

use crate::ballot::NodeId;
use crate::membership::{MemberChange, Membership};
use std::fmt;

/// One step of the operator's script.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ModelChange {
    /// Add this spare server as a learner.
    AddLearner(NodeId),
    /// Promote this learner to voter.
    Promote(NodeId),
    /// Remove whichever server leads when the operator acts.
    RemoveLeader,
    /// Remove this server (a follower, unless it leads when the operator acts).
    Remove(NodeId),
    /// Replace whichever server leads by this learner, in one change.
    ReplaceLeader {
        /// The learner that takes the leader's place.
        by: NodeId,
    },
}

impl ModelChange {
    /// True if `members` shows this step done; `removals_before` is how many steps
    /// before it remove a node (each retires one id).
    fn done(self, members: &Membership, removals_before: usize) -> bool {
        let gone = |id: NodeId| members.retired.contains(&id);
        match self {
            ModelChange::AddLearner(id) => members.is_member(id) || gone(id),
            ModelChange::Promote(id) | ModelChange::ReplaceLeader { by: id } => {
                members.is_voter(id) || gone(id)
            }
            ModelChange::RemoveLeader => members.retired.len() > removals_before,
            ModelChange::Remove(id) => gone(id),
        }
    }

    fn removes(self) -> bool {
        matches!(
            self,
            ModelChange::RemoveLeader | ModelChange::Remove(_) | ModelChange::ReplaceLeader { .. }
        )
    }
}

impl fmt::Display for ModelChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelChange::AddLearner(id) => write!(f, "add-learner {id}"),
            ModelChange::Promote(id) => write!(f, "promote {id}"),
            ModelChange::RemoveLeader => write!(f, "remove-leader"),
            ModelChange::Remove(id) => write!(f, "remove {id}"),
            ModelChange::ReplaceLeader { by } => write!(f, "replace-leader-by {by}"),
        }
    }
}

impl std::str::FromStr for ModelChange {
    type Err = String;

    /// Parses `add-learner:3`, `promote:3`, `remove:2`, `remove-leader` or
    /// `replace-leader-by:3`
    /// (a space works in place of the colon, as `Display` writes it).
    ///
    /// ```
    /// use ballot_model::model::operator::ModelChange;
    /// assert_eq!("replace-leader-by:3".parse(), Ok(ModelChange::ReplaceLeader { by: 3 }));
    /// assert!("promote".parse::<ModelChange>().is_err());
    /// ```
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut words = text.split([' ', ':']).filter(|word| !word.is_empty());
        let (Some(verb), argument, None) = (words.next(), words.next(), words.next()) else {
            return Err(format!(
                "expected a change like `add-learner:3`, got `{text}`"
            ));
        };
        let id = || -> Result<NodeId, String> {
            argument
                .and_then(|id| id.parse().ok())
                .ok_or_else(|| format!("`{verb}` needs a server id, as in `{verb}:3`"))
        };
        match verb {
            "add-learner" => Ok(ModelChange::AddLearner(id()?)),
            "promote" => Ok(ModelChange::Promote(id()?)),
            "replace-leader-by" => Ok(ModelChange::ReplaceLeader { by: id()? }),
            "remove" => Ok(ModelChange::Remove(id()?)),
            "remove-leader" if argument.is_none() => Ok(ModelChange::RemoveLeader),
            _ => Err(format!(
                "unknown change `{text}` (expected add-learner:ID, promote:ID, remove:ID, remove-leader or replace-leader-by:ID)"
            )),
        }
    }
}

/// The change the operator asks of `leader`, whose epoch's membership is `members`: the
/// first step of `script` not done yet, or `None` once all are.
///
/// ```
/// use ballot_model::model::operator::{next_change, ModelChange};
/// use ballot_model::{MemberChange, Membership};
/// let script = [ModelChange::AddLearner(3), ModelChange::ReplaceLeader { by: 3 }];
/// let members = Membership::bootstrap(4, [], [3]);
/// assert_eq!(next_change(&script, &members, 1), Some(MemberChange::AddLearner(3)));
/// ```
pub fn next_change(
    script: &[ModelChange],
    members: &Membership,
    leader: NodeId,
) -> Option<MemberChange> {
    let mut removals = 0;
    for step in script {
        if !step.done(members, removals) {
            return Some(match *step {
                ModelChange::AddLearner(id) => MemberChange::AddLearner(id),
                ModelChange::Promote(id) => MemberChange::Promote(id),
                ModelChange::RemoveLeader => MemberChange::Remove(leader),
                ModelChange::Remove(id) => MemberChange::Remove(id),
                ModelChange::ReplaceLeader { by } => MemberChange::Replace {
                    remove: leader,
                    promote: by,
                },
            });
        }
        removals += usize::from(step.removes());
    }
    None
}
