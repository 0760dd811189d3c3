//! Requestor conditions, and the person matching that approver entries share: does a
//! user's id, or do their groups in an identity provider, satisfy a condition.

use super::evaluate::{FlowError, Mismatch};
use super::lookup::Lookups;
use super::{Condition, LogicalOperator, MatchOperator, Requestors, SubjectType};

/// How one condition went for one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The condition holds.
    Met,
    /// It does not.
    Unmet,
    /// No directory is registered for the condition's source.
    NoDirectory,
    /// The directory cannot list the person's groups (or does not know them).
    NoGroups,
}

/// Whether `person` satisfies `subject`/`source`/`op`/`values`.
///
/// User conditions compare the id. Group conditions ask the directory of `source`:
/// `is` and `is_not` through the members of each named group, the other operators
/// through the person's groups ([`Directory::user_groups`](crate::owners::Directory::user_groups)).
pub(super) async fn person_matches(
    lookups: &mut Lookups<'_>,
    subject: SubjectType,
    source: &str,
    op: MatchOperator,
    values: &[String],
    person: &str,
) -> Result<Outcome, FlowError> {
    let holds = match subject {
        SubjectType::User => op.holds(&[person], values),
        SubjectType::Group => {
            if !lookups.has_directory(source) {
                return Ok(Outcome::NoDirectory);
            }
            match op {
                MatchOperator::Is | MatchOperator::IsNot => {
                    let mut member_of_one = false;
                    for group in values {
                        if lookups.is_member(source, group, person).await? {
                            member_of_one = true;
                            break;
                        }
                    }
                    member_of_one != op.is_negative()
                }
                _ => match lookups.user_groups(source, person).await? {
                    None => return Ok(Outcome::NoGroups),
                    Some(groups) => op.holds(&groups, values),
                },
            }
        }
    };
    Ok(if holds { Outcome::Met } else { Outcome::Unmet })
}

/// A condition in words: `requestors.conditions[0] (group is one of: dba, in okta)`.
pub(super) fn describe(path: &str, c: &Condition) -> String {
    format!(
        "{path} ({} {} {}, in {})",
        c.subject,
        c.match_operator.phrase(),
        c.values.join(", "),
        c.source
    )
}

/// Why `requester` may not use a flow with these requestors: nothing when they may.
pub(super) async fn check(
    lookups: &mut Lookups<'_>,
    requestors: &Requestors,
    requester: &str,
) -> Result<Vec<Mismatch>, FlowError> {
    let mut unmet = Vec::new();
    let mut met = 0;
    for (i, c) in requestors.conditions.iter().enumerate() {
        let outcome = person_matches(
            lookups,
            c.subject,
            &c.source,
            c.match_operator,
            &c.values,
            requester,
        )
        .await?;
        let condition = describe(&format!("requestors.conditions[{i}]"), c);
        match outcome {
            Outcome::Met => met += 1,
            Outcome::Unmet => unmet.push(Mismatch::RequesterNotAllowed {
                requester: requester.to_owned(),
                condition,
                note: None,
            }),
            Outcome::NoGroups => unmet.push(Mismatch::RequesterNotAllowed {
                requester: requester.to_owned(),
                condition,
                note: Some(format!(
                    "directory {} does not list the groups of {requester}",
                    c.source
                )),
            }),
            Outcome::NoDirectory => unmet.push(Mismatch::DirectoryUnavailable {
                source: c.source.clone(),
                condition,
            }),
        }
    }
    let allowed = match requestors.logical_operator {
        LogicalOperator::And => unmet.is_empty(),
        LogicalOperator::Or => met > 0,
    };
    Ok(if allowed { Vec::new() } else { unmet })
}
