//! Deciding a request: approvals checked against the flow's approver policy,
//! rejections, and cancellation by the requester. Each write names the version of
//! the request it read; a writer that lost re-reads and decides again, so two
//! approvers at the same instant complete a policy once.

use pgwarden_core::flows::{ApprovalStatus, ApprovalVote, FlowEvaluator};
use pgwarden_core::owners::OwnerResolver;
use pgwarden_core::requests::{RequestState, StoreError, StoredRequest, Vote};
use time::OffsetDateTime;

use super::{AccessRequestError, AccessRequests, MAX_ATTEMPTS, conflict};
use crate::audit::AuditAction;
use crate::request::AccessGrant;

/// What [`AccessRequests::approve`] did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Approved {
    /// The request after the approval.
    pub request: StoredRequest,
    /// Where the approver policy stands: complete, or what is still needed.
    pub status: ApprovalStatus,
    /// The grant, when this approval completed the policy and the grant was made.
    pub grant: Option<AccessGrant>,
}

impl AccessRequests {
    /// `approver` approves request `id`, with `reason` (required when the flow says
    /// so). The approval that completes the flow's policy grants at once. Approving
    /// again is harmless: the request is returned as it stands.
    pub async fn approve(
        &self,
        id: &str,
        approver: &str,
        reason: Option<&str>,
    ) -> Result<Approved, AccessRequestError> {
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        let resolver = self.integration.owner_resolver().await?;
        let evaluator = self.evaluator(self.integration.tag_source().await?);
        for _ in 0..MAX_ATTEMPTS {
            let mut request = self.get(id).await?;
            let already = request.approvals.iter().any(|v| v.by == approver);
            if request.state != RequestState::Pending {
                return self.decided(request, already, &evaluator, &resolver).await;
            }
            let flow = match self.flow_of(&request) {
                Ok(f) => f,
                Err(e) => {
                    self.fail(request, &e.to_string()).await?;
                    return Err(e);
                }
            };
            if let Err(why) = evaluator
                .may_approve(
                    flow,
                    &request.requester,
                    approver,
                    reason,
                    &request.access,
                    &resolver,
                )
                .await?
            {
                return Err(AccessRequestError::NotAllowed {
                    id: id.to_owned(),
                    who: approver.to_owned(),
                    action: "approve",
                    why: why.to_string(),
                });
            }
            if !already {
                request.approvals.push(Vote {
                    by: approver.to_owned(),
                    reason: reason.map(str::to_owned),
                    at: OffsetDateTime::now_utc(),
                });
            }
            let status = evaluator
                .approval_status(
                    flow,
                    &request.requester,
                    &request.access,
                    &votes(&request),
                    &resolver,
                )
                .await?;
            if status.complete {
                request.transition(RequestState::Approved).map_err(|_| {
                    AccessRequestError::WrongState {
                        id: id.to_owned(),
                        state: request.state,
                        action: "approve",
                    }
                })?;
            }
            let saved = match self.store.update(&request).await {
                Ok(saved) => saved,
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            self.audit(AuditAction::RequestApproval, &saved, |e| {
                e.approver = Some(approver.to_owned());
                e.reason = reason.map(str::to_owned);
                e.detail = if status.complete {
                    "approved: the approver policy is complete".to_owned()
                } else {
                    format!(
                        "approval recorded; still needed: {}",
                        status.missing.join("; ")
                    )
                };
            });
            if !status.complete {
                return Ok(Approved {
                    request: saved,
                    status,
                    grant: None,
                });
            }
            let (request, grant) = self.grant_request(saved).await?;
            return Ok(Approved {
                request,
                status,
                grant,
            });
        }
        Err(conflict(id))
    }

    /// An approval of a request no longer pending: a repeated approval is answered
    /// with where the request stands, changing nothing; any other is refused.
    async fn decided(
        &self,
        request: StoredRequest,
        already: bool,
        evaluator: &FlowEvaluator,
        resolver: &OwnerResolver,
    ) -> Result<Approved, AccessRequestError> {
        if !already {
            return Err(super::wrong_state(&request, "approve"));
        }
        let flow = self.flow_of(&request)?;
        let status = evaluator
            .approval_status(
                flow,
                &request.requester,
                &request.access,
                &votes(&request),
                resolver,
            )
            .await?;
        Ok(Approved {
            request,
            status,
            grant: None,
        })
    }

    /// `approver` rejects pending request `id`, with `reason` (required when the
    /// flow's `approver_reason_required` is set). Only an approver the flow's policy
    /// names may reject.
    pub async fn reject(
        &self,
        id: &str,
        approver: &str,
        reason: Option<&str>,
    ) -> Result<StoredRequest, AccessRequestError> {
        self.close_pending(id, approver, reason, RequestState::Rejected)
            .await
    }

    /// The requester cancels their pending request `id`.
    pub async fn cancel(
        &self,
        id: &str,
        requester: &str,
        reason: Option<&str>,
    ) -> Result<StoredRequest, AccessRequestError> {
        self.close_pending(id, requester, reason, RequestState::Cancelled)
            .await
    }

    /// Moves pending request `id` to `to` (rejected or cancelled) by `who`.
    async fn close_pending(
        &self,
        id: &str,
        who: &str,
        reason: Option<&str>,
        to: RequestState,
    ) -> Result<StoredRequest, AccessRequestError> {
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        let (action, audited) = if to == RequestState::Rejected {
            ("reject", AuditAction::RequestRejected)
        } else {
            ("cancel", AuditAction::RequestCancelled)
        };
        for _ in 0..MAX_ATTEMPTS {
            let mut request = self.get(id).await?;
            if request.state != RequestState::Pending {
                return Err(AccessRequestError::WrongState {
                    id: id.to_owned(),
                    state: request.state,
                    action,
                });
            }
            let not_allowed = |why: String| AccessRequestError::NotAllowed {
                id: id.to_owned(),
                who: who.to_owned(),
                action,
                why,
            };
            if to == RequestState::Cancelled {
                if request.requester != who {
                    return Err(not_allowed(format!(
                        "only its requester, {}, may",
                        request.requester
                    )));
                }
            } else {
                let flow = self.flow_of(&request)?;
                let resolver = self.integration.owner_resolver().await?;
                let evaluator = self.evaluator(self.integration.tag_source().await?);
                evaluator
                    .may_approve(
                        flow,
                        &request.requester,
                        who,
                        reason,
                        &request.access,
                        &resolver,
                    )
                    .await?
                    .map_err(|why| not_allowed(why.to_string()))?;
            }
            request.rejection = Some(Vote {
                by: who.to_owned(),
                reason: reason.map(str::to_owned),
                at: OffsetDateTime::now_utc(),
            });
            request
                .transition(to)
                .map_err(|_| AccessRequestError::WrongState {
                    id: id.to_owned(),
                    state: request.state,
                    action,
                })?;
            match self.store.update(&request).await {
                Ok(saved) => {
                    self.audit(audited, &saved, |e| {
                        e.approver = Some(who.to_owned());
                        e.reason = reason.map(str::to_owned);
                        e.detail = format!("{to} by {who}");
                    });
                    return Ok(saved);
                }
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict(id))
    }
}

/// The votes of `request`, as the policy reads them.
fn votes(request: &StoredRequest) -> Vec<ApprovalVote> {
    request
        .approvals
        .iter()
        .map(|v| ApprovalVote {
            approver: v.by.clone(),
            reason: v.reason.clone(),
        })
        .collect()
}
