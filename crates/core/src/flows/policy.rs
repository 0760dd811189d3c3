//! Approver policies: whether the approvals given complete a flow's policy, what is
//! still missing, and whether a person may approve at all.
//!
//! The semantics are those of [`ApproverPolicy`](super::ApproverPolicy): each approver
//! entry is a requirement (an `owner` entry one per distinct owner set), an `and`
//! group needs all its requirements, an `or` group one entry, `any_of` one group and
//! `all_of` every group through different people, found by a small search over the
//! counted approvers.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::evaluate::FlowError;
use super::lookup::Lookups;
use super::requestors::{Outcome, person_matches};
use super::{
    AccessFlow, ApprovalMode, ApproverGroup, ApproverRule, ApproverType, LogicalOperator,
    MatchOperator, SubjectType,
};
use crate::owners::{Approver, OwnerAttribute, OwnerResolver};
use crate::requests::Vote;
use crate::resource::{AccessEntry, ResourceId};

/// At most this many approvers are considered per group when searching for distinct
/// approvers across `all_of` groups (far beyond any real policy).
const MAX_SEARCHED_APPROVERS: usize = 16;

/// One approval given on a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalVote {
    /// Who approved.
    pub approver: String,
    /// Why, if they said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ApprovalVote {
    /// An approval by `approver`.
    #[must_use]
    pub fn new(approver: impl Into<String>, reason: Option<&str>) -> Self {
        ApprovalVote {
            approver: approver.into(),
            reason: reason.map(str::to_owned),
        }
    }
}

impl From<&Vote> for ApprovalVote {
    fn from(vote: &Vote) -> Self {
        ApprovalVote {
            approver: vote.by.clone(),
            reason: vote.reason.clone(),
        }
    }
}

/// An approval that does not count, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IgnoredVote {
    /// Who approved.
    pub approver: String,
    /// Why it does not count.
    pub why: String,
}

/// Where a request stands against its flow's approver policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalStatus {
    /// Whether the policy is met (always, for a flow that needs no approval).
    pub complete: bool,
    /// What is still needed, in words; empty when complete.
    pub missing: Vec<String>,
    /// The approvers whose approval counts toward the policy.
    pub counted: Vec<String>,
    /// Approvals that do not count.
    pub ignored: Vec<IgnoredVote>,
}

impl fmt::Display for ApprovalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.complete {
            f.write_str("approved")?;
        } else {
            f.write_str("waiting for approval:")?;
            for m in &self.missing {
                write!(f, "\n  - {m}")?;
            }
        }
        for i in &self.ignored {
            write!(
                f,
                "\n  (approval by {} does not count: {})",
                i.approver, i.why
            )?;
        }
        Ok(())
    }
}

/// Why a person may not approve a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "refused", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ApprovalRefused {
    /// The flow needs no approval.
    #[error("flow {flow} needs no approval: its requests are granted on request")]
    NoApprovalNeeded {
        /// The flow.
        flow: String,
    },
    /// The requester may not approve their own request.
    #[error("{approver} requested this access and cannot approve it: ask another approver")]
    SelfApproval {
        /// The requester.
        approver: String,
    },
    /// The flow requires approvers to give a reason.
    #[error("flow {flow} requires a reason with each approval: give one")]
    ReasonRequired {
        /// The flow.
        flow: String,
    },
    /// The person is none of the flow's approvers for this request.
    #[error("{approver} is not an approver of this request; it needs {}", needed.join("; "))]
    NotAnApprover {
        /// The person.
        approver: String,
        /// Who can approve, in words.
        needed: Vec<String>,
    },
}

/// One requirement of a group.
struct Requirement {
    /// The approver entry it comes from.
    rule: usize,
    /// In words.
    text: String,
    what: Needs,
}

enum Needs {
    Person(SubjectType, String, MatchOperator, Vec<String>),
    /// An owner of resources: their owners' approvers (empty: nobody owns them).
    Owner(Vec<Approver>),
}

/// The resources of a request grouped by their owners.
struct OwnerSet {
    resources: Vec<ResourceId>,
    approvers: Vec<Approver>,
}

async fn owner_sets(
    access: &[AccessEntry],
    owners: &OwnerResolver,
) -> Result<Vec<OwnerSet>, FlowError> {
    let mut sets: BTreeMap<Vec<String>, OwnerSet> = BTreeMap::new();
    for entry in access {
        let r = owners.resolve(&entry.resource).await?;
        let mut key: Vec<String> = r
            .approvers
            .iter()
            .map(|a| format!("{}:{}:{}", a.source, a.attribute, a.value))
            .collect();
        key.sort();
        let set = sets.entry(key).or_insert_with(|| OwnerSet {
            resources: Vec::new(),
            approvers: r.approvers.clone(),
        });
        if !set.resources.contains(&entry.resource) {
            set.resources.push(entry.resource.clone());
        }
    }
    Ok(sets.into_values().collect())
}

fn describe_rule(rule: &ApproverRule) -> String {
    let source = rule.source.as_deref().unwrap_or_default();
    let values = rule.values.join(" or ");
    match (rule.approver, rule.match_operator) {
        (ApproverType::User, MatchOperator::Is) => format!("user {values} ({source})"),
        (ApproverType::User, op) => format!(
            "a user whose id {} {} ({source})",
            op.phrase(),
            rule.values.join(", ")
        ),
        (ApproverType::Group, MatchOperator::Is) => {
            format!("a member of {values} ({source})")
        }
        (_, op) => format!(
            "someone whose {source} groups: {} {}",
            op.phrase(),
            rule.values.join(", ")
        ),
    }
}

fn describe_owners(set: &OwnerSet) -> String {
    let resources: Vec<String> = set.resources.iter().map(ToString::to_string).collect();
    if set.approvers.is_empty() {
        return format!(
            "an owner of {}, but nobody owns it: set its resource-owner tag or the integration owners",
            resources.join(", ")
        );
    }
    let who: Vec<String> = set
        .approvers
        .iter()
        .map(|a| format!("{} {} ({})", a.attribute, a.value, a.source))
        .collect();
    format!("an owner of {}: {}", resources.join(", "), who.join(" or "))
}

/// The requirements of each group.
async fn requirements(
    groups: &[ApproverGroup],
    access: &[AccessEntry],
    owners: &OwnerResolver,
) -> Result<Vec<Vec<Requirement>>, FlowError> {
    let needs_owners = groups
        .iter()
        .flat_map(|g| &g.approvers)
        .any(|r| r.approver == ApproverType::Owner);
    let sets = if needs_owners {
        owner_sets(access, owners).await?
    } else {
        Vec::new()
    };
    Ok(groups
        .iter()
        .map(|g| {
            let mut reqs = Vec::new();
            for (i, rule) in g.approvers.iter().enumerate() {
                let subject = match rule.approver {
                    ApproverType::Owner => {
                        reqs.extend(sets.iter().map(|set| Requirement {
                            rule: i,
                            text: describe_owners(set),
                            what: Needs::Owner(set.approvers.clone()),
                        }));
                        continue;
                    }
                    ApproverType::User => SubjectType::User,
                    ApproverType::Group => SubjectType::Group,
                };
                reqs.push(Requirement {
                    rule: i,
                    text: describe_rule(rule),
                    what: Needs::Person(
                        subject,
                        rule.source.clone().unwrap_or_default(),
                        rule.match_operator,
                        rule.values.clone(),
                    ),
                });
            }
            reqs
        })
        .collect())
}

/// Whether `person` meets `req`.
async fn meets(
    lookups: &mut Lookups<'_>,
    req: &Requirement,
    person: &str,
) -> Result<bool, FlowError> {
    match &req.what {
        Needs::Person(subject, source, op, values) => Ok(person_matches(
            lookups, *subject, source, *op, values, person,
        )
        .await?
            == Outcome::Met),
        Needs::Owner(approvers) => {
            for a in approvers {
                let found = match (&a.people, a.attribute) {
                    (Some(people), _) => people.iter().any(|p| p.id == person),
                    (None, OwnerAttribute::User) => a.value == person,
                    (None, OwnerAttribute::Group) => {
                        lookups.is_member(&a.source, &a.value, person).await?
                    }
                };
                if found {
                    return Ok(true);
                }
            }
            Ok(false)
        }
    }
}

/// Which requirements each voter meets: `matrix[req][voter]`.
struct Group<'r> {
    operator: LogicalOperator,
    reqs: &'r [Requirement],
    matrix: Vec<Vec<bool>>,
}

impl Group<'_> {
    /// Whether the voters in `mask` satisfy the group.
    fn satisfied(&self, mask: u64) -> bool {
        let met = |r: usize| {
            self.matrix[r]
                .iter()
                .enumerate()
                .any(|(v, m)| *m && mask & (1 << v) != 0)
        };
        match self.operator {
            LogicalOperator::And => (0..self.reqs.len()).all(met),
            LogicalOperator::Or => {
                let mut rules: Vec<usize> = self.reqs.iter().map(|r| r.rule).collect();
                rules.dedup();
                rules.into_iter().any(|rule| {
                    (0..self.reqs.len())
                        .filter(|r| self.reqs[*r].rule == rule)
                        .all(met)
                })
            }
        }
    }

    /// The voters meeting at least one requirement.
    fn relevant(&self) -> u64 {
        let mut mask = 0;
        for row in &self.matrix {
            for (v, m) in row.iter().enumerate() {
                if *m {
                    mask |= 1 << v;
                }
            }
        }
        mask
    }

    /// The smallest sets of voters (among `allowed`) that satisfy the group.
    fn minimal_sets(&self, allowed: u64) -> Vec<u64> {
        let bits: Vec<u64> = (0..64)
            .map(|b| 1u64 << b)
            .filter(|b| self.relevant() & allowed & b != 0)
            .take(MAX_SEARCHED_APPROVERS)
            .collect();
        let mut subsets: Vec<u64> = (0u32..(1 << bits.len()))
            .map(|i| {
                bits.iter()
                    .enumerate()
                    .filter(|(k, _)| i & (1 << k) != 0)
                    .fold(0, |m, (_, b)| m | b)
            })
            .collect();
        subsets.sort_by_key(|m| m.count_ones());
        let mut found: Vec<u64> = Vec::new();
        for m in subsets {
            if !found.iter().any(|f| f & m == *f) && self.satisfied(m) {
                found.push(m);
            }
        }
        found
    }

    /// What the voters in `mask` leave unmet, in words.
    fn missing(&self, mask: u64) -> String {
        let unmet: Vec<&str> = self
            .reqs
            .iter()
            .enumerate()
            .filter(|(r, _)| {
                !self.matrix[*r]
                    .iter()
                    .enumerate()
                    .any(|(v, m)| *m && mask & (1 << v) != 0)
            })
            .map(|(_, req)| req.text.as_str())
            .collect();
        match self.operator {
            LogicalOperator::And => unmet.join("; and "),
            LogicalOperator::Or => format!("one of: {}", unmet.join("; or ")),
        }
    }
}

/// The largest set of groups that distinct voters can satisfy together.
fn best_assignment(groups: &[Group<'_>], minimal: &[Vec<u64>]) -> Vec<usize> {
    fn search(
        g: usize,
        used: u64,
        chosen: &mut Vec<usize>,
        best: &mut Vec<usize>,
        minimal: &[Vec<u64>],
    ) {
        if chosen.len() > best.len() {
            best.clone_from(chosen);
        }
        if g == minimal.len() || chosen.len() + (minimal.len() - g) <= best.len() {
            return;
        }
        for m in &minimal[g] {
            if m & used == 0 {
                chosen.push(g);
                search(g + 1, used | m, chosen, best, minimal);
                chosen.pop();
                if best.len() == minimal.len() {
                    return;
                }
            }
        }
        search(g + 1, used, chosen, best, minimal);
    }
    let mut best = Vec::new();
    search(0, 0, &mut Vec::new(), &mut best, minimal);
    debug_assert!(best.len() <= groups.len());
    best
}

/// The votes that count, deduplicated (first vote per approver), and those that do
/// not.
fn sort_votes(
    flow: &AccessFlow,
    requester: &str,
    votes: &[ApprovalVote],
) -> (Vec<String>, Vec<IgnoredVote>) {
    let mut counted: Vec<String> = Vec::new();
    let mut ignored = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for vote in votes {
        if seen.contains(&vote.approver.as_str()) {
            continue;
        }
        seen.push(&vote.approver);
        let why = if flow.settings.requester_cannot_approve_self && vote.approver == requester {
            Some("the requester cannot approve their own request".to_owned())
        } else if flow.settings.approver_reason_required
            && vote.reason.as_deref().is_none_or(|r| r.trim().is_empty())
        {
            Some("the flow requires a reason with each approval".to_owned())
        } else {
            None
        };
        match why {
            Some(why) => ignored.push(IgnoredVote {
                approver: vote.approver.clone(),
                why,
            }),
            None => counted.push(vote.approver.clone()),
        }
    }
    (counted, ignored)
}

/// Where a request of `requester` for `access` stands against `flow`'s policy.
pub(super) async fn status(
    lookups: &mut Lookups<'_>,
    flow: &AccessFlow,
    requester: &str,
    access: &[AccessEntry],
    approvals: &[ApprovalVote],
    owners: &OwnerResolver,
) -> Result<ApprovalStatus, FlowError> {
    let (mut voters, mut ignored) = sort_votes(flow, requester, approvals);
    if !flow.approval_required() {
        return Ok(ApprovalStatus {
            complete: true,
            missing: Vec::new(),
            counted: Vec::new(),
            ignored,
        });
    }
    voters.truncate(64);
    let policy = &flow.approver_policy;
    let reqs = requirements(&policy.approver_groups, access, owners).await?;
    let mut groups = Vec::new();
    for (g, group) in policy.approver_groups.iter().enumerate() {
        let mut matrix = Vec::new();
        for req in &reqs[g] {
            let mut row = Vec::new();
            for voter in &voters {
                row.push(meets(lookups, req, voter).await?);
            }
            matrix.push(row);
        }
        groups.push(Group {
            operator: group.logical_operator,
            reqs: &reqs[g],
            matrix,
        });
    }
    // Approvals by people no entry names do not count.
    let relevant = groups.iter().fold(0u64, |m, g| m | g.relevant());
    let mut counted = Vec::new();
    for (v, voter) in voters.iter().enumerate() {
        if relevant & (1 << v) == 0 {
            ignored.push(IgnoredVote {
                approver: voter.clone(),
                why: "not an approver of this request".to_owned(),
            });
        } else {
            counted.push(voter.clone());
        }
    }
    let all = u64::MAX;
    let several = groups.len() > 1;
    let label = |g: usize| {
        if several {
            format!("approver_groups[{g}]: ")
        } else {
            String::new()
        }
    };
    let (complete, missing) = match policy.approval_mode {
        ApprovalMode::AnyOf => {
            if groups.iter().any(|g| g.satisfied(all)) {
                (true, Vec::new())
            } else {
                let suffix = if several {
                    " (any one group suffices)"
                } else {
                    ""
                };
                let missing = groups
                    .iter()
                    .enumerate()
                    .map(|(g, group)| format!("{}{}{suffix}", label(g), group.missing(all)))
                    .collect();
                (false, missing)
            }
        }
        ApprovalMode::AllOf => {
            let minimal: Vec<Vec<u64>> = groups.iter().map(|g| g.minimal_sets(all)).collect();
            let best = best_assignment(&groups, &minimal);
            if best.len() == groups.len() {
                (true, Vec::new())
            } else {
                let missing = (0..groups.len())
                    .filter(|g| !best.contains(g))
                    .map(|g| {
                        if minimal[g].is_empty() {
                            format!("{}{}", label(g), groups[g].missing(all))
                        } else {
                            format!(
                                "{}an approver other than those counted for the other groups (one person's approval counts for one group only): {}",
                                label(g),
                                groups[g].missing(0)
                            )
                        }
                    })
                    .collect();
                (false, missing)
            }
        }
    };
    Ok(ApprovalStatus {
        complete,
        missing,
        counted,
        ignored,
    })
}

/// Whether `approver` may approve `requester`'s request for `access` under `flow`.
pub(super) async fn may_approve(
    lookups: &mut Lookups<'_>,
    flow: &AccessFlow,
    requester: &str,
    approver: &str,
    reason: Option<&str>,
    access: &[AccessEntry],
    owners: &OwnerResolver,
) -> Result<Result<(), ApprovalRefused>, FlowError> {
    if !flow.approval_required() {
        return Ok(Err(ApprovalRefused::NoApprovalNeeded {
            flow: flow.name.clone(),
        }));
    }
    if flow.settings.requester_cannot_approve_self && approver == requester {
        return Ok(Err(ApprovalRefused::SelfApproval {
            approver: approver.to_owned(),
        }));
    }
    if flow.settings.approver_reason_required && reason.is_none_or(|r| r.trim().is_empty()) {
        return Ok(Err(ApprovalRefused::ReasonRequired {
            flow: flow.name.clone(),
        }));
    }
    let reqs = requirements(&flow.approver_policy.approver_groups, access, owners).await?;
    let mut needed = Vec::new();
    for req in reqs.iter().flatten() {
        if meets(lookups, req, approver).await? {
            return Ok(Ok(()));
        }
        if !needed.contains(&req.text) {
            needed.push(req.text.clone());
        }
    }
    Ok(Err(ApprovalRefused::NotAnApprover {
        approver: approver.to_owned(),
        needed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(rule: usize) -> Requirement {
        Requirement {
            rule,
            text: format!("rule {rule}"),
            what: Needs::Owner(Vec::new()),
        }
    }

    #[test]
    fn groups_and_distinct_assignment() {
        // Voters 0 and 1; group A (and): req0 by voter 0 or 1, req1 by voter 1.
        let a_reqs = [req(0), req(1)];
        let a = Group {
            operator: LogicalOperator::And,
            reqs: &a_reqs,
            matrix: vec![vec![true, true], vec![false, true]],
        };
        assert!(a.satisfied(0b10));
        assert!(!a.satisfied(0b01));
        assert_eq!(a.minimal_sets(u64::MAX), [0b10]);
        assert_eq!(a.missing(0b01), "rule 1");
        // Group B (or): voter 0 for rule 0, or voter 1 for rule 1.
        let b_reqs = [req(0), req(1)];
        let b = Group {
            operator: LogicalOperator::Or,
            reqs: &b_reqs,
            matrix: vec![vec![true, false], vec![false, true]],
        };
        assert_eq!(b.minimal_sets(u64::MAX), [0b01, 0b10]);
        assert!(b.missing(0).starts_with("one of: "));
        let groups = [a, b];
        let minimal: Vec<Vec<u64>> = groups.iter().map(|g| g.minimal_sets(u64::MAX)).collect();
        // A takes voter 1, B voter 0.
        assert_eq!(best_assignment(&groups, &minimal), [0, 1]);
        // With only voter 1 useful to both, one group is left.
        let only = vec![vec![0b10], vec![0b10]];
        assert_eq!(best_assignment(&groups, &only).len(), 1);
    }
}
