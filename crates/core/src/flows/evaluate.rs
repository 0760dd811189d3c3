//! Evaluation: a request against a set of flows, and the decision that explains itself.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use time::OffsetDateTime;

use super::lookup::Lookups;
use super::policy::{self, ApprovalRefused, ApprovalStatus, ApprovalVote};
use super::{AccessFlow, FlowSet, Trigger, requestors, targets};
use crate::duration::Ttl;
use crate::owners::{Directory, DirectoryError, OwnerError, OwnerResolver};
use crate::resource::{AccessEntry, PermissionLevel, ResourceId};
use crate::session::SessionLimits;
use crate::tags::{TagSource, TagSourceError};

/// What someone asks for.
#[derive(Debug, Clone, Copy)]
pub struct FlowRequest<'a> {
    /// The integration's name.
    pub integration: &'a str,
    /// The requester's id in the identity provider.
    pub requester: &'a str,
    /// The access asked for; a flow must cover every entry.
    pub access: &'a [AccessEntry],
    /// For how long.
    pub duration: Ttl,
    /// Why, when the requester said.
    pub justification: Option<&'a str>,
    /// When the request is made (timeframes are checked at this instant).
    pub at: OffsetDateTime,
}

/// Evaluation could not finish: a directory or the tag source failed. A request is
/// never granted because of such a failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    /// A directory failed.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// The tag source failed.
    #[error(transparent)]
    TagSource(#[from] TagSourceError),
    /// Owner resolution failed.
    #[error(transparent)]
    Owners(#[from] OwnerError),
}

/// Why a flow does not match a request. Each says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Mismatch {
    /// The flow is switched off.
    Inactive,
    /// The flow offers nothing on the request's integration.
    OtherIntegration {
        /// The integration asked for.
        integration: String,
        /// The integrations the flow covers.
        covers: Vec<String>,
    },
    /// The request names no access entry.
    NothingRequested,
    /// The requester fails a requestor condition.
    RequesterNotAllowed {
        /// The requester.
        requester: String,
        /// The condition, with its path: `requestors.conditions[0] (group is one of: dba, in okta)`.
        condition: String,
        /// Why it could not be checked fully, when that is the case.
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// A group condition names an identity provider no directory is registered for;
    /// the condition is unmet.
    DirectoryUnavailable {
        /// The identity provider.
        source: String,
        /// The condition.
        condition: String,
    },
    /// An exclude scope removes the resource.
    ResourceExcluded {
        /// The resource.
        resource: ResourceId,
        /// The scope, with its path: `access_targets[0].resources[1] (exclude by tag pii = true)`.
        scope: String,
    },
    /// No target of the flow takes in the resource.
    ResourceNotIncluded {
        /// The resource.
        resource: ResourceId,
    },
    /// The resource is offered, but not at the level asked for.
    PermissionNotOffered {
        /// The resource.
        resource: ResourceId,
        /// The level asked for.
        level: PermissionLevel,
        /// The levels offered on it.
        offered: Vec<PermissionLevel>,
    },
    /// The duration is over the flow's `grant_duration`.
    DurationOverLimit {
        /// The duration asked for.
        asked: Ttl,
        /// The flow's limit.
        max: Ttl,
    },
    /// The request is made outside the flow's timeframe.
    OutsideTimeframe {
        /// The day and time in the timeframe's zone.
        now: String,
        /// The timeframe: `monday, friday, 09:00-18:00 (Europe/Paris)`.
        window: String,
    },
    /// The flow requires a justification and none was given.
    JustificationMissing,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Inactive => f.write_str(
                "the flow is inactive: ask its administrator to activate it, or use another flow",
            ),
            Mismatch::OtherIntegration {
                integration,
                covers,
            } => write!(
                f,
                "the flow offers nothing on integration {integration} (it covers {}): use a flow of {integration}",
                covers.join(", ")
            ),
            Mismatch::NothingRequested => {
                f.write_str("the request names no access: ask for at least one resource and level")
            }
            Mismatch::RequesterNotAllowed {
                requester,
                condition,
                note,
            } => {
                write!(f, "{requester} does not meet {condition}")?;
                if let Some(note) = note {
                    write!(f, " ({note})")?;
                }
                f.write_str(": ask to be added, or use another flow")
            }
            Mismatch::DirectoryUnavailable { source, condition } => write!(
                f,
                "{condition} cannot be checked: no directory for identity provider {source} is registered; register one with the evaluator"
            ),
            Mismatch::ResourceExcluded { resource, scope } => write!(
                f,
                "{resource} is excluded by {scope}: it cannot be requested through this flow"
            ),
            Mismatch::ResourceNotIncluded { resource } => write!(
                f,
                "{resource} is not among the resources this flow offers: ask for a resource it covers, or use another flow"
            ),
            Mismatch::PermissionNotOffered {
                resource,
                level,
                offered,
            } => write!(
                f,
                "{level} is not offered on {resource}: ask for {}",
                offered
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            Mismatch::DurationOverLimit { asked, max } => write!(
                f,
                "{asked} is longer than the flow's grant_duration {max}: ask for {max} or less"
            ),
            Mismatch::OutsideTimeframe { now, window } => write!(
                f,
                "requests are accepted {window}, and it is {now} there: ask again within that window"
            ),
            Mismatch::JustificationMissing => {
                f.write_str("the flow requires a justification: say why you need this access")
            }
        }
    }
}

/// A flow that did not match, and every reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowMismatch {
    /// The flow's name.
    pub flow: String,
    /// Why it did not match (never empty).
    pub reasons: Vec<Mismatch>,
}

/// The outcome of a request against a set of flows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// A flow matched: the first one, in load order.
    Matched {
        /// The flow's name.
        flow: String,
        /// Its trigger.
        trigger: Trigger,
        /// Whether approvals are needed before the grant.
        approval_required: bool,
        /// The flow's `grant_duration`.
        max_duration: Ttl,
        /// Limits for the grant's login role.
        session: SessionLimits,
        /// Whether the grant is marked for review after the fact.
        review_required: bool,
        /// The flow's labels.
        labels: Vec<String>,
    },
    /// No flow matched.
    Refused {
        /// The integration asked for.
        integration: String,
        /// Every flow of the integration (inactive ones included), in load order, with
        /// every reason it did not match; empty when the integration has no flow.
        flows: Vec<FlowMismatch>,
    },
}

impl Decision {
    /// Whether a flow matched.
    #[must_use]
    pub fn is_matched(&self) -> bool {
        matches!(self, Decision::Matched { .. })
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Matched {
                flow,
                trigger,
                approval_required,
                max_duration,
                review_required,
                ..
            } => {
                write!(
                    f,
                    "matched flow \"{flow}\" ({trigger}, up to {max_duration})"
                )?;
                if *approval_required {
                    f.write_str(": waiting for approval")?;
                } else {
                    f.write_str(": granted on request")?;
                }
                if *review_required {
                    f.write_str("; the grant will be reviewed")?;
                }
                Ok(())
            }
            Decision::Refused { integration, flows } if flows.is_empty() => write!(
                f,
                "refused: no access flow offers anything on integration {integration}; ask an administrator to add one"
            ),
            Decision::Refused { flows, .. } => {
                f.write_str("refused: no access flow matches this request")?;
                for m in flows {
                    write!(f, "\n  flow \"{}\":", m.flow)?;
                    for r in &m.reasons {
                        write!(f, "\n    - {r}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Decides requests against flows, and approvals against approver policies, looking
/// groups up in directories and tags in a tag source at each call.
#[derive(Debug, Clone)]
pub struct FlowEvaluator {
    directories: Vec<Arc<dyn Directory>>,
    tags: Arc<dyn TagSource>,
}

impl FlowEvaluator {
    /// An evaluator with these identity providers (matched by name against each
    /// condition's `source`) and this tag source.
    #[must_use]
    pub fn new(directories: Vec<Arc<dyn Directory>>, tags: Arc<dyn TagSource>) -> Self {
        FlowEvaluator { directories, tags }
    }

    fn lookups(&self) -> Lookups<'_> {
        Lookups::new(&self.directories, self.tags.as_ref())
    }

    /// Decides `request` against the flows of its integration: the first flow (in
    /// load order) that matches, or every flow's reasons.
    pub async fn evaluate(
        &self,
        flows: &FlowSet,
        request: &FlowRequest<'_>,
    ) -> Result<Decision, FlowError> {
        let mut lookups = self.lookups();
        let mut refused = Vec::new();
        for flow in flows.for_integration(request.integration) {
            let reasons = check(&mut lookups, flow, request).await?;
            if reasons.is_empty() {
                return Ok(Decision::Matched {
                    flow: flow.name.clone(),
                    trigger: flow.trigger,
                    approval_required: flow.approval_required(),
                    max_duration: flow.grant_duration,
                    session: flow.session.clone(),
                    review_required: flow.settings.review_required,
                    labels: flow.settings.labels.clone(),
                });
            }
            refused.push(FlowMismatch {
                flow: flow.name.clone(),
                reasons,
            });
        }
        Ok(Decision::Refused {
            integration: request.integration.to_owned(),
            flows: refused,
        })
    }

    /// Every reason `flow` does not match `request`; empty when it matches.
    pub async fn check(
        &self,
        flow: &AccessFlow,
        request: &FlowRequest<'_>,
    ) -> Result<Vec<Mismatch>, FlowError> {
        check(&mut self.lookups(), flow, request).await
    }

    /// Where a request of `requester` for `access`, matched to `flow`, stands with
    /// `approvals`. `owners` resolves the resources' owners for `owner` entries.
    pub async fn approval_status(
        &self,
        flow: &AccessFlow,
        requester: &str,
        access: &[AccessEntry],
        approvals: &[ApprovalVote],
        owners: &OwnerResolver,
    ) -> Result<ApprovalStatus, FlowError> {
        policy::status(
            &mut self.lookups(),
            flow,
            requester,
            access,
            approvals,
            owners,
        )
        .await
    }

    /// Whether `approver` may approve (with `reason`) the request of `requester` for
    /// `access` matched to `flow`: `Ok(Err(..))` says why not.
    pub async fn may_approve(
        &self,
        flow: &AccessFlow,
        requester: &str,
        approver: &str,
        reason: Option<&str>,
        access: &[AccessEntry],
        owners: &OwnerResolver,
    ) -> Result<Result<(), ApprovalRefused>, FlowError> {
        policy::may_approve(
            &mut self.lookups(),
            flow,
            requester,
            approver,
            reason,
            access,
            owners,
        )
        .await
    }
}

/// Every reason `flow` does not match `request`.
async fn check(
    lookups: &mut Lookups<'_>,
    flow: &AccessFlow,
    request: &FlowRequest<'_>,
) -> Result<Vec<Mismatch>, FlowError> {
    let mut reasons = Vec::new();
    if !flow.active {
        reasons.push(Mismatch::Inactive);
    }
    if !flow.covers_integration(request.integration) {
        let mut covers: Vec<String> = flow
            .access_targets
            .iter()
            .map(|t| t.integration.clone())
            .collect();
        covers.dedup();
        reasons.push(Mismatch::OtherIntegration {
            integration: request.integration.to_owned(),
            covers,
        });
        return Ok(reasons);
    }
    if request.access.is_empty() {
        reasons.push(Mismatch::NothingRequested);
    }
    reasons.extend(requestors::check(lookups, &flow.requestors, request.requester).await?);
    for entry in request.access {
        if let Some(m) = targets::check_entry(lookups, flow, request.integration, entry).await? {
            reasons.push(m);
        }
    }
    if request.duration > flow.grant_duration {
        reasons.push(Mismatch::DurationOverLimit {
            asked: request.duration,
            max: flow.grant_duration,
        });
    }
    if let Some(frame) = &flow.timeframe {
        let local = frame.local(request.at);
        if !local.open {
            reasons.push(Mismatch::OutsideTimeframe {
                now: local.now,
                window: frame.to_string(),
            });
        }
    }
    if flow.settings.justification_required
        && request.justification.is_none_or(|j| j.trim().is_empty())
    {
        reasons.push(Mismatch::JustificationMissing);
    }
    Ok(reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_as_instructions() {
        let d = Decision::Refused {
            integration: "orders".into(),
            flows: vec![FlowMismatch {
                flow: "ro".into(),
                reasons: vec![
                    Mismatch::PermissionNotOffered {
                        resource: ResourceId::schema("app", "s"),
                        level: PermissionLevel::ReadWrite,
                        offered: vec![PermissionLevel::ReadOnly],
                    },
                    Mismatch::JustificationMissing,
                ],
            }],
        };
        assert_eq!(
            d.to_string(),
            "refused: no access flow matches this request\n  flow \"ro\":\n    - read-write is not offered on postgresql-schema:app/s: ask for read-only\n    - the flow requires a justification: say why you need this access"
        );
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(
            json["flows"][0]["reasons"][0]["reason"],
            "permission_not_offered"
        );
        assert_eq!(json["flows"][0]["reasons"][0]["offered"][0], "read-only");
        assert_eq!(
            json["flows"][0]["reasons"][1]["reason"],
            "justification_missing"
        );
    }
}
