//! Audit: a structured event for every grant, extension, revocation, rotation and
//! reconciliation, and every failure — never a secret.
//!
//! [`AuditSink`] is the seam: the default [`TracingAuditSink`] emits `tracing`
//! events on target `pgwarden::audit`; [`RecordingAuditSink`] keeps events in memory
//! (tests, the quickstart); a host application forwards them to its SIEM.

use std::fmt::Debug;
use std::sync::Mutex;

use serde::Serialize;
use time::OffsetDateTime;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
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
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    /// A short, human summary (what a revocation removed, why a grant was asked for).
    pub detail: String,
}

impl AuditEvent {
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

/// Emits each event as a `tracing` event (target `pgwarden::audit`): info on
/// success, warn on failure.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingAuditSink;

impl AuditSink for TracingAuditSink {
    fn record(&self, e: &AuditEvent) {
        let json = serde_json::to_string(e).unwrap_or_default();
        if e.failed() {
            tracing::warn!(target: "pgwarden::audit", action = ?e.action, grant_id = ?e.grant_id, event = %json, "{}", e.detail);
        } else {
            tracing::info!(target: "pgwarden::audit", action = ?e.action, grant_id = ?e.grant_id, event = %json, "{}", e.detail);
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
pub(crate) fn revocation_detail(r: &pgwarden_pg_driver::revoke::RevocationReport) -> String {
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
