//! After the decision: granting an approved request (re-checked against its flow),
//! failing one, revoking one, and following grants to the end of their access.

use std::collections::HashMap;

use pgwarden_core::duration::Ttl;
use pgwarden_core::flows::FlowRequest;
use pgwarden_core::requests::{RequestState, StoreError, StoredRequest, Vote};
use time::OffsetDateTime;

use super::{AccessRequestError, AccessRequests, MAX_ATTEMPTS, conflict, wrong_state};
use crate::audit::AuditAction;
use crate::request::{AccessGrant, AccessRequest, FlowContext};

/// What [`AccessRequests::sync`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct SyncReport {
    /// Approved requests granted now (a grant a crash or an outage interrupted).
    pub granted: Vec<String>,
    /// Requests whose access ended, with their new state (`expired`, `revoked`).
    pub ended: Vec<(String, RequestState)>,
    /// Requests that could not be granted and are now `failed`.
    pub failed: Vec<String>,
    /// Requests whose revocation was finished now.
    pub revoked: Vec<String>,
    /// What could not be done this time (retried at the next sync).
    pub errors: Vec<String>,
}

impl AccessRequests {
    /// Grants `request` (approved, or pending under a flow that needs no approval)
    /// after checking it against its flow again, and records the outcome: `granted`,
    /// or `failed` with the reason. A failure worth retrying (the instance
    /// unreachable) leaves it approved for [`sync`](Self::sync) and is returned.
    pub(super) async fn grant_request(
        &self,
        mut request: StoredRequest,
    ) -> Result<(StoredRequest, Option<AccessGrant>), AccessRequestError> {
        if request.state == RequestState::Pending {
            request
                .transition(RequestState::Approved)
                .map_err(|_| wrong_state(&request, "grant"))?;
            request = self.store.update(&request).await?;
        }
        let flow = match self.flow_of(&request) {
            Ok(f) => f.clone(),
            Err(e) => return Ok((self.fail(request, &e.to_string()).await?, None)),
        };
        // Decided again: a requester who left a group, a resource tagged out of the
        // flow since, stop the grant. The timeframe is judged at submission.
        let tags = self.integration.tag_source().await?;
        let reasons = self
            .evaluator(tags)
            .check(
                &flow,
                &FlowRequest {
                    integration: &request.integration,
                    requester: &request.requester,
                    access: &request.access,
                    duration: request.duration,
                    justification: request.justification.as_deref(),
                    at: request.created_at,
                },
            )
            .await?;
        if !reasons.is_empty() {
            let why = format!(
                "no longer allowed by flow {}: {}",
                flow.name,
                reasons
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            return Ok((self.fail(request, &why).await?, None));
        }
        // The access window starts at the approval; one a crash left ungranted past
        // its end is not opened late.
        let approved_at = request
            .approvals
            .iter()
            .map(|v| v.at)
            .max()
            .unwrap_or(request.created_at);
        let ends = approved_at + time::Duration::seconds(secs(request.duration));
        let now = OffsetDateTime::now_utc();
        let Some(left) = u64::try_from((ends - now).whole_seconds())
            .ok()
            .and_then(Ttl::from_secs)
        else {
            return Ok((
                self.fail(
                    request,
                    "approved, but its duration ran out before it could be granted: request again",
                )
                .await?,
                None,
            ));
        };
        let mut grant_request = AccessRequest::new(
            request.requester.clone(),
            request.access.iter().cloned(),
            left,
        )
        .grant_id(request.id.clone())
        .session(flow.session.clone());
        grant_request
            .justification
            .clone_from(&request.justification);
        grant_request.flow = Some(FlowContext {
            name: flow.name.clone(),
            review_required: request.review_required,
        });
        match self.integration.grant(grant_request).await {
            Ok(grant) => {
                let saved = self.mark_granted(request, &grant).await?;
                Ok((saved, Some(grant)))
            }
            Err(e) if e.is_retryable() => Err(e.into()),
            Err(e) => {
                let failed = self.fail(request, &e.to_string()).await?;
                Ok((failed, None))
            }
        }
    }

    async fn mark_granted(
        &self,
        request: StoredRequest,
        grant: &AccessGrant,
    ) -> Result<StoredRequest, AccessRequestError> {
        let (saved, moved) = self
            .move_to(request, RequestState::Granted, |r| {
                r.username = Some(grant.username.clone());
                r.expires_at = Some(grant.expires_at);
            })
            .await?;
        if moved {
            self.audit(AuditAction::RequestGranted, &saved, |e| {
                e.detail = format!(
                    "granted until {}",
                    grant
                        .expires_at
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default()
                );
            });
        }
        Ok(saved)
    }

    /// Moves `request` to `failed` with `why`, and audits it.
    pub(super) async fn fail(
        &self,
        request: StoredRequest,
        why: &str,
    ) -> Result<StoredRequest, AccessRequestError> {
        let (saved, moved) = self
            .move_to(request, RequestState::Failed, |r| {
                r.failure = Some(why.to_owned());
            })
            .await?;
        if moved {
            self.audit(AuditAction::RequestFailed, &saved, |e| {
                e.error = Some(why.to_owned());
                e.detail = "request failed".into();
            });
        }
        Ok(saved)
    }

    /// Moves `request` to `to` with `edit` applied. When another writer came first it
    /// re-reads and tries again; once the request can no longer move to `to` (another
    /// writer moved it on), it is returned as it stands. The flag says whether this
    /// call moved it (and so owes the audit event).
    async fn move_to(
        &self,
        mut request: StoredRequest,
        to: RequestState,
        edit: impl Fn(&mut StoredRequest),
    ) -> Result<(StoredRequest, bool), AccessRequestError> {
        for _ in 0..MAX_ATTEMPTS {
            if !request.state.can_move_to(to) {
                return Ok((request, false));
            }
            request
                .transition(to)
                .map_err(|_| wrong_state(&request, "move"))?;
            edit(&mut request);
            match self.store.update(&request).await {
                Ok(saved) => return Ok((saved, true)),
                Err(StoreError::Conflict { .. }) => request = self.get(&request.id).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict(&request.id))
    }

    /// Ends granted request `id` now, on behalf of `by` (an approver, an admin, the
    /// requester giving access back): `revoking`, the grant revoked completely, then
    /// `revoked`.
    pub async fn revoke(
        &self,
        id: &str,
        by: &str,
        reason: Option<&str>,
    ) -> Result<StoredRequest, AccessRequestError> {
        let mut request = self.get(id).await?;
        if request.state == RequestState::Granted {
            request
                .transition(RequestState::Revoking)
                .map_err(|_| wrong_state(&request, "revoke"))?;
            request.rejection = Some(Vote {
                by: by.to_owned(),
                reason: reason.map(str::to_owned),
                at: OffsetDateTime::now_utc(),
            });
            request = self.store.update(&request).await?;
        } else if request.state != RequestState::Revoking {
            return Err(wrong_state(&request, "revoke"));
        }
        self.integration.revoke(id).await?;
        self.end(request, RequestState::Revoked).await
    }

    /// Moves `request` (granted or revoking) to `to` (expired or revoked), and audits it.
    async fn end(
        &self,
        request: StoredRequest,
        to: RequestState,
    ) -> Result<StoredRequest, AccessRequestError> {
        let (saved, moved) = self.move_to(request, to, |_| {}).await?;
        if moved {
            self.audit(AuditAction::RequestEnded, &saved, |e| {
                if let Some(v) = &saved.rejection {
                    e.approver = Some(v.by.clone());
                    e.reason.clone_from(&v.reason);
                }
                e.detail = format!("access ended: {to}");
            });
        }
        Ok(saved)
    }

    /// Runs [`sync`](Self::sync) every `every` until the task is aborted (errors are
    /// logged and retried at the next round): what `pgwarden serve` runs for an
    /// integration with `[access_requests]`.
    #[must_use = "the task stops when the handle is aborted; dropping it keeps it running"]
    pub fn spawn_sync(
        self: &std::sync::Arc<Self>,
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let requests = self.clone();
        tokio::spawn(async move {
            loop {
                match requests.sync().await {
                    Ok(report) => {
                        for e in &report.errors {
                            tracing::warn!(integration = %requests.integration.config().name, "access requests: {e}");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(integration = %requests.integration.config().name, error = %e, "access requests: sync failed; retrying");
                    }
                }
                tokio::time::sleep(every).await;
            }
        })
    }

    /// Brings requests up to date with their grants: approved requests are granted
    /// (after a crash or an outage between approval and grant), granted ones whose
    /// access ended become `expired` or `revoked`, and revocations left half-way are
    /// finished. Cheap when nothing is open; run it periodically (every replica may).
    pub async fn sync(&self) -> Result<SyncReport, AccessRequestError> {
        let open = self
            .list(&[
                RequestState::Approved,
                RequestState::Granted,
                RequestState::Revoking,
            ])
            .await?;
        let mut report = SyncReport::default();
        if open.is_empty() {
            return Ok(report);
        }
        let grants: HashMap<String, AccessGrant> = self
            .integration
            .list()
            .await?
            .into_iter()
            .map(|g| (g.grant_id.clone(), g))
            .collect();
        let now = OffsetDateTime::now_utc();
        for request in open {
            let id = request.id.clone();
            let outcome = match (request.state, grants.get(&id)) {
                (RequestState::Approved, _) => match self.grant_request(request).await {
                    Ok((r, _)) if r.state == RequestState::Failed => {
                        report.failed.push(id.clone());
                        Ok(())
                    }
                    Ok(_) => {
                        report.granted.push(id.clone());
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                (RequestState::Revoking, Some(_)) => {
                    match self.revoke(&id, "pgwarden", None).await {
                        Ok(_) => {
                            report.revoked.push(id.clone());
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                (_, None) => {
                    // The grant is gone: at its expiry, or revoked before it.
                    let to = match request.expires_at {
                        Some(at) if at <= now + time::Duration::seconds(1) => RequestState::Expired,
                        _ if request.state == RequestState::Revoking => RequestState::Revoked,
                        None => RequestState::Expired,
                        Some(_) => RequestState::Revoked,
                    };
                    self.end(request, to).await.map(|_| {
                        report.ended.push((id.clone(), to));
                    })
                }
                _ => Ok(()),
            };
            if let Err(e) = outcome {
                report.errors.push(format!("{id}: {e}"));
            }
        }
        Ok(report)
    }
}

fn secs(ttl: Ttl) -> i64 {
    i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)
}
