//! Audit: a structured event for every grant, extension, revocation, rotation and
//! reconciliation, and every failure — never a secret.
//!
//! [`AuditSink`] is the seam: the default [`TracingAuditSink`] emits `tracing`
//! events on target `pgwarden::audit`, one structured field per part of the event;
//! [`RecordingAuditSink`] keeps events in memory (tests, the quickstart); a host
//! application forwards them to its SIEM. Whatever the sink, every event also updates
//! the [`metrics`](crate::metrics) it concerns.

use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Serialize, Serializer};
use time::OffsetDateTime;

/// What happened. New kinds of event may be added in a minor release: match with a
/// wildcard arm.
///
/// The `request_*` actions are the access-request lifecycle of
/// [`AccessRequests`](crate::AccessRequests): each transition of a request is one
/// event, whose `grant_id` is the request's id (the id its grant gets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditAction {
    /// Access granted.
    Grant,
    /// A grant's expiry moved.
    Extend,
    /// Access revoked on request.
    Revoke,
    /// Access revoked because it expired.
    Expire,
    /// The connector's password rotated.
    Rotate,
    /// A reconciliation ran.
    Reconcile,
    /// A grant whose revocation of ours was cut off (a lost connection, a crashed
    /// server) is found gone: that attempt finished it unheard, or another process
    /// did (and audited it there). Access has ended; this is not a second revocation.
    RevocationObserved,
    /// An access request was submitted and a flow matched it (`state`: `pending`, or
    /// `approved` when no approval is needed).
    RequestSubmitted,
    /// An access request matched no flow: refused, with each flow's reasons in `detail`.
    RequestRefused,
    /// An approver approved a request (`approver`, `reason`); `state` says whether
    /// the approver policy is now complete (`approved`) or not (`pending`).
    RequestApproval,
    /// An approver rejected a request.
    RequestRejected,
    /// The requester cancelled a pending request.
    RequestCancelled,
    /// An approved request was granted (the `grant` event comes first).
    RequestGranted,
    /// A request could not be granted; `error` says why.
    RequestFailed,
    /// A granted request's access ended (`state`: `expired` or `revoked`).
    RequestEnded,
}

impl AuditAction {
    /// The action's name, as serialized (`grant`, `revocation_observed`, ...).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Grant => "grant",
            AuditAction::Extend => "extend",
            AuditAction::Revoke => "revoke",
            AuditAction::Expire => "expire",
            AuditAction::Rotate => "rotate",
            AuditAction::Reconcile => "reconcile",
            AuditAction::RevocationObserved => "revocation_observed",
            AuditAction::RequestSubmitted => "request_submitted",
            AuditAction::RequestRefused => "request_refused",
            AuditAction::RequestApproval => "request_approval",
            AuditAction::RequestRejected => "request_rejected",
            AuditAction::RequestCancelled => "request_cancelled",
            AuditAction::RequestGranted => "request_granted",
            AuditAction::RequestFailed => "request_failed",
            AuditAction::RequestEnded => "request_ended",
        }
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audit event. Fields may be added in a minor release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AuditEvent {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The integration.
    pub integration: String,
    /// What.
    pub action: AuditAction,
    /// The grant, when the action concerns one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// Who asked, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    /// The login role, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// `resource=level` entries, when the action concerns access.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<String>,
    /// `None` on success; the error message (never a secret) on failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What kind of failure `error` is, when the operation's error said (see
    /// [`crate::ErrorKind`]); what an alert or a dashboard groups failures by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<crate::ErrorKind>,
    /// How long the operation took, for those that have one: a grant, an extension,
    /// a revocation (on request or at expiry; the whole batch's time for grants
    /// revoked together). Serialized as `duration_seconds`, a number.
    #[serde(
        rename = "duration_seconds",
        serialize_with = "seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<Duration>,
    /// The access flow a request matched (request events, and the grant it led to).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// Who approved, rejected or cancelled (request events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    /// The approver's or requester's reason (request events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The request's state after the event (request events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Marked for review after the fact: a grant (and its request events) through an
    /// automatic flow with `review_required`, e.g. break-glass access.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub review_required: bool,
    /// A revocation (`expire`) that reconciliation finished, not the sweeper.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub by_reconcile: bool,
    /// A short, human summary (what a revocation removed, why a grant was asked for).
    pub detail: String,
}

impl AuditEvent {
    /// An event of `action` in `integration`, now, with nothing else set.
    pub(crate) fn new(integration: &str, action: AuditAction) -> Self {
        AuditEvent {
            at: OffsetDateTime::now_utc(),
            integration: integration.to_owned(),
            action,
            grant_id: None,
            requester: None,
            username: None,
            access: Vec::new(),
            error: None,
            error_kind: None,
            duration: None,
            flow: None,
            approver: None,
            reason: None,
            state: None,
            review_required: false,
            by_reconcile: false,
            detail: String::new(),
        }
    }

    /// Whether the action failed.
    #[must_use]
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }
}

/// Where audit events go. Must be cheap and must not fail the operation.
pub trait AuditSink: Send + Sync + Debug {
    /// Records one event.
    fn record(&self, event: &AuditEvent);
}

/// `duration` as seconds.
#[allow(
    clippy::ref_option,
    reason = "the signature serde's serialize_with calls"
)]
fn seconds<S: Serializer>(duration: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match duration {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// Emits each event as a `tracing` event (target `pgwarden::audit`): info on
/// success, warn on failure; the message is the event's detail.
///
/// Fields: `integration`, `action`, and when they apply `grant_id`, `user` (the login
/// role), `requester`, `access` (the `resource=level` entries, space-separated),
/// `duration_seconds`, `flow`, `approver`, `reason`, `state`, `review_required`,
/// `by_reconcile` and `error`.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingAuditSink;

impl AuditSink for TracingAuditSink {
    fn record(&self, e: &AuditEvent) {
        let access = (!e.access.is_empty()).then(|| e.access.join(" "));
        let duration = e.duration.map(|d| d.as_secs_f64());
        macro_rules! emit {
            ($level:ident) => {
                tracing::$level!(
                    target: "pgwarden::audit",
                    integration = %e.integration,
                    action = e.action.as_str(),
                    grant_id = e.grant_id.as_deref(),
                    user = e.username.as_deref(),
                    requester = e.requester.as_deref(),
                    access = access.as_deref(),
                    duration_seconds = duration,
                    flow = e.flow.as_deref(),
                    approver = e.approver.as_deref(),
                    reason = e.reason.as_deref(),
                    state = e.state.as_deref(),
                    review_required = e.review_required,
                    by_reconcile = e.by_reconcile,
                    error = e.error.as_deref(),
                    "{}",
                    e.detail
                )
            };
        }
        if e.failed() {
            emit!(warn);
        } else {
            emit!(info);
        }
    }
}

/// Keeps every event in memory, for tests and demos.
#[derive(Debug, Default)]
pub struct RecordingAuditSink {
    events: Mutex<Vec<AuditEvent>>,
}

impl RecordingAuditSink {
    /// An empty recorder.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The events so far.
    #[must_use]
    pub fn events(&self) -> Vec<AuditEvent> {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl AuditSink for RecordingAuditSink {
    fn record(&self, event: &AuditEvent) {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(event.clone());
    }
}

/// The detail of a finished revocation's event.
pub(crate) fn revocation_detail(r: &pgwarden_pg_driver::RevocationReport) -> String {
    format!(
        "revoked: {} session(s) ended, {} membership(s) removed, cleaned {} database(s), role {}",
        r.sessions_terminated,
        r.memberships_removed.len(),
        r.databases.len(),
        if r.role_dropped {
            "dropped"
        } else {
            "kept (persistent)"
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_duration_is_serialized_in_seconds() {
        let mut e = AuditEvent::new("i", AuditAction::Grant);
        e.grant_id = Some("g".into());
        e.duration = Some(Duration::from_millis(1500));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["duration_seconds"], 1.5);
        assert_eq!(json["action"], AuditAction::Grant.as_str());
        e.duration = None;
        let json = serde_json::to_value(&e).unwrap();
        assert!(json.get("duration_seconds").is_none());
        // Flags are left out unless set.
        assert!(json.get("review_required").is_none());
        e.review_required = true;
        assert_eq!(serde_json::to_value(&e).unwrap()["review_required"], true);
    }
}
