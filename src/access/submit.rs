//! Submitting a request: what a person asks for, the flows' decision, and the stored
//! request it starts (or the refusal, flow by flow).

use std::sync::Arc;

use pgwarden_core::duration::Ttl;
use pgwarden_core::flows::{Decision, FlowRequest};
use pgwarden_core::requests::StoredRequest;
use pgwarden_core::resource::{AccessEntry, PermissionLevel, ResourceId, ResourceType};
use pgwarden_core::tags::TagSource;
use time::OffsetDateTime;

use super::{AccessRequestError, AccessRequests};
use crate::audit::AuditAction;
use crate::error::InvalidReason;
use crate::request::AccessGrant;

/// What a person asks for: resources by id, or every resource of a type carrying a
/// tag.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestedAccess {
    /// One resource at one level.
    Entry(AccessEntry),
    /// Every resource of `resource_type` whose tag `key` (on it, or inherited from its
    /// schema or database) is `value`, at `level`; expanded when submitted, from what
    /// discovery found.
    Tagged {
        /// The type of the resources.
        resource_type: ResourceType,
        /// The tag key.
        key: String,
        /// The tag value.
        value: String,
        /// The level asked for on each.
        level: PermissionLevel,
    },
}

impl From<AccessEntry> for RequestedAccess {
    fn from(entry: AccessEntry) -> Self {
        RequestedAccess::Entry(entry)
    }
}

/// A request as a person makes it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewAccessRequest {
    /// Who asks (an identity-provider user id).
    pub requester: String,
    /// What is asked for.
    pub access: Vec<RequestedAccess>,
    /// For how long (at most the matching flow's `grant_duration`).
    pub duration: Ttl,
    /// Why (most flows require it).
    pub justification: Option<String>,
}

impl NewAccessRequest {
    /// A request by `requester` for `access`, lasting `duration`.
    #[must_use]
    pub fn new(
        requester: impl Into<String>,
        access: impl IntoIterator<Item = impl Into<RequestedAccess>>,
        duration: Ttl,
    ) -> Self {
        NewAccessRequest {
            requester: requester.into(),
            access: access.into_iter().map(Into::into).collect(),
            duration,
            justification: None,
        }
    }

    /// Why access is asked for.
    #[must_use]
    pub fn justification(mut self, justification: impl Into<String>) -> Self {
        self.justification = Some(justification.into());
        self
    }
}

/// What [`AccessRequests::submit`] did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Submitted {
    /// The flows' decision: the flow that matched, or each flow's reasons.
    pub decision: Decision,
    /// The stored request (`None` when refused).
    pub request: Option<StoredRequest>,
    /// The grant, when the flow needs no approval and the grant was made.
    pub grant: Option<AccessGrant>,
}

impl AccessRequests {
    /// Evaluates `new` against the integration's active flows; stores it when a flow
    /// matches (granting at once when that flow needs no approval), and audits either
    /// outcome. A refusal is not an error: [`Submitted::decision`] says why.
    pub async fn submit(&self, new: NewAccessRequest) -> Result<Submitted, AccessRequestError> {
        self.submit_again(new, None).await
    }

    /// A new request with what closed request `id` asked for, by its requester.
    pub async fn request_again(
        &self,
        id: &str,
        requester: &str,
    ) -> Result<Submitted, AccessRequestError> {
        let old = self.get(id).await?;
        if !old.state.is_closed() {
            return Err(AccessRequestError::WrongState {
                id: id.to_owned(),
                state: old.state,
                action: "request again",
            });
        }
        if old.requester != requester {
            return Err(AccessRequestError::NotAllowed {
                id: id.to_owned(),
                who: requester.to_owned(),
                action: "request again",
                why: format!("only its requester, {}, may", old.requester),
            });
        }
        let mut new = NewAccessRequest::new(
            old.requester.clone(),
            old.access.iter().cloned(),
            old.duration,
        );
        new.justification.clone_from(&old.justification);
        self.submit_again(new, Some(old.id)).await
    }

    async fn submit_again(
        &self,
        new: NewAccessRequest,
        again_of: Option<String>,
    ) -> Result<Submitted, AccessRequestError> {
        self.check_new(&new)?;
        let tags = self.integration.tag_source().await?;
        let access = self.expand(&new.access, &tags).await?;
        let justification = new
            .justification
            .as_deref()
            .map(str::trim)
            .filter(|j| !j.is_empty());
        let now = OffsetDateTime::now_utc();
        let name = self.integration.config().name.clone();
        let decision = self
            .evaluator(tags)
            .evaluate(
                &self.flows,
                &FlowRequest {
                    integration: &name,
                    requester: &new.requester,
                    access: &access,
                    duration: new.duration,
                    justification,
                    at: now,
                },
            )
            .await?;
        let Decision::Matched {
            flow,
            approval_required,
            review_required,
            labels,
            ..
        } = &decision
        else {
            self.integration.audit(AuditAction::RequestRefused, |e| {
                e.requester = Some(new.requester.clone());
                e.access = access.iter().map(ToString::to_string).collect();
                e.reason = justification.map(str::to_owned);
                e.detail = decision.to_string();
            });
            return Ok(Submitted {
                decision,
                request: None,
                grant: None,
            });
        };
        let mut request = StoredRequest::new(
            StoredRequest::new_id(),
            name,
            new.requester.clone(),
            access,
            new.duration,
            justification.map(str::to_owned),
        );
        request.flow = Some(flow.clone());
        request.review_required = *review_required;
        request.labels.clone_from(labels);
        request.again_of = again_of;
        let request = self.store.insert(&request).await?;
        self.audit(AuditAction::RequestSubmitted, &request, |e| {
            e.detail = format!(
                "submitted under flow {flow}{}{}",
                if *approval_required {
                    ", awaiting approval"
                } else {
                    ", no approval needed"
                },
                request
                    .again_of
                    .as_deref()
                    .map(|old| format!(", again after {old}"))
                    .unwrap_or_default()
            );
            e.reason.clone_from(&request.justification);
        });
        if *approval_required {
            return Ok(Submitted {
                decision,
                request: Some(request),
                grant: None,
            });
        }
        let (request, grant) = self.grant_request(request).await?;
        Ok(Submitted {
            decision,
            request: Some(request),
            grant,
        })
    }

    /// Refuses a request with no requester, no access, or longer than `max_ttl`.
    fn check_new(&self, new: &NewAccessRequest) -> Result<(), AccessRequestError> {
        let invalid = |reason, message: &str| AccessRequestError::Invalid {
            message: message.to_owned(),
            reason,
        };
        if new.requester.trim().is_empty() {
            return Err(invalid(InvalidReason::EmptyRequester, "name the requester"));
        }
        if new.access.is_empty() {
            return Err(invalid(
                InvalidReason::NoAccess,
                "ask for at least one resource",
            ));
        }
        let max = self.integration.config().max_ttl;
        if new.duration > max {
            return Err(invalid(
                InvalidReason::TtlOverMax,
                &format!(
                    "{} is longer than the integration's max_ttl {max}: ask for less",
                    new.duration
                ),
            ));
        }
        Ok(())
    }

    /// The entries `access` names: tag selections expanded over what discovery found.
    async fn expand(
        &self,
        access: &[RequestedAccess],
        tags: &Arc<dyn TagSource>,
    ) -> Result<Vec<AccessEntry>, AccessRequestError> {
        let mut entries = Vec::new();
        // Read once, and only when a tag selection asks for it.
        let mut discovered = None;
        for a in access {
            match a {
                RequestedAccess::Entry(e) => entries.push(e.clone()),
                RequestedAccess::Tagged {
                    resource_type,
                    key,
                    value,
                    level,
                } => {
                    let found = match discovered {
                        Some(ref d) => d,
                        None => discovered.insert(self.integration.discovered().await?),
                    };
                    let before = entries.len();
                    for r in found.of_type(*resource_type) {
                        if tag_of(tags, &r.id, key).await?.as_deref() == Some(value.as_str()) {
                            let entry = AccessEntry::new(r.id.clone(), *level).map_err(|e| {
                                AccessRequestError::Invalid {
                                    message: e.to_string(),
                                    reason: InvalidReason::LevelNotValidForType,
                                }
                            })?;
                            entries.push(entry);
                        }
                    }
                    if entries.len() == before {
                        return Err(AccessRequestError::Invalid {
                            message: format!(
                                "no {resource_type} is tagged {key}={value}: check the tag, or run discovery again"
                            ),
                            reason: InvalidReason::UnknownResource,
                        });
                    }
                }
            }
        }
        entries.sort();
        entries.dedup();
        Ok(entries)
    }
}

/// The value of tag `key` on `resource`, else on its schema, else on its database.
async fn tag_of(
    tags: &Arc<dyn TagSource>,
    resource: &ResourceId,
    key: &str,
) -> Result<Option<String>, AccessRequestError> {
    let mut current = Some(resource.clone());
    while let Some(r) = current {
        let found = tags.tags(&r).await.map_err(|e| {
            AccessRequestError::Integration(crate::IntegrationError::Owners(e.into()))
        })?;
        if let Some(v) = found.get(key) {
            return Ok(Some(v.to_owned()));
        }
        current = r.parent();
    }
    Ok(None)
}
