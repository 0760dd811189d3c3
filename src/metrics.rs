//! Metrics, recorded through the [`metrics`](https://docs.rs/metrics) facade: the
//! one place that names every metric pgwarden records.
//!
//! pgwarden only records; the host installs a recorder (`pgwarden serve
//! --metrics-addr` installs `metrics-exporter-prometheus`). Without one, recording
//! costs next to nothing. Call [`describe`] once after installing a recorder to give
//! each metric its unit and help text. Every metric has the label `integration`, the
//! config's name.
//!
//! | name | type | other labels | what |
//! | --- | --- | --- | --- |
//! | [`GRANTS`] | counter | | grants made (a repeated grant id that returns the existing grant counts too) |
//! | [`REVOCATIONS`] | counter | `how`: `expiry`, `revoke`, `reconcile` | grants whose access this process ended |
//! | [`FAILURES`] | counter | `reason`: see [`FAILURE_REASONS`]; `kind`: [`ErrorKind::label`](crate::ErrorKind::label) | operations that failed |
//! | [`GRANT_DURATION`] | histogram | | seconds a successful grant took |
//! | [`REVOKE_DURATION`] | histogram | `how`: `expiry`, `revoke` | seconds a revocation took |
//! | [`EXPIRY_LAG`] | histogram | | seconds between a grant's expiry and the end of its access |
//! | [`LIVE_GRANTS`] | gauge | | grants whose access has not ended, at the sweeper's last ledger read |
//! | [`SWEEPER_LEADER`] | gauge | | 1 while this process is the integration's sweeper, else 0 |
//! | [`SECRET_STORE_ERRORS`] | counter | | failures of the secret store the runtime met |
//! | [`REQUEST_EVENTS`] | counter | `event`: a `request_*` [`AuditAction`] name | access-request transitions |
//!
//! Label values come from fixed sets (and the integration's name): never an error
//! message, a grant id or a user.

use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

use crate::audit::{AuditAction, AuditEvent};
use crate::error::IntegrationError;

/// Counter: grants made.
pub const GRANTS: &str = "pgwarden_grants_total";
/// Counter: grants whose access this process ended, by `how` (`expiry`, `revoke`,
/// `reconcile`).
pub const REVOCATIONS: &str = "pgwarden_revocations_total";
/// Counter: failed operations, by `reason` (one of [`FAILURE_REASONS`]).
pub const FAILURES: &str = "pgwarden_failures_total";
/// Histogram: seconds a successful grant took.
pub const GRANT_DURATION: &str = "pgwarden_grant_duration_seconds";
/// Histogram: seconds a successful revocation took, by `how` (`expiry`, `revoke`);
/// grants revoked together at expiry each record the batch's time.
pub const REVOKE_DURATION: &str = "pgwarden_revoke_duration_seconds";
/// Histogram: seconds from a grant's expiry to the end of its access (login
/// disabled, sessions ended), as the sweeper saw it.
pub const EXPIRY_LAG: &str = "pgwarden_expiry_lag_seconds";
/// Gauge: grants whose access has not ended, counted at each ledger read of the
/// sweeper (a process that is not the sweeper leaves it as it was).
pub const LIVE_GRANTS: &str = "pgwarden_live_grants";
/// Gauge: 1 while this process holds the integration's sweeper lock, else 0.
pub const SWEEPER_LEADER: &str = "pgwarden_sweeper_leader";
/// Counter: secret-store failures the runtime met (reading or writing the
/// connector's credentials).
pub const SECRET_STORE_ERRORS: &str = "pgwarden_secret_store_errors_total";

/// Counter: access-request transitions, by `event` (`request_submitted`,
/// `request_refused`, `request_approval`, `request_rejected`, `request_cancelled`,
/// `request_granted`, `request_failed`, `request_ended`).
pub const REQUEST_EVENTS: &str = "pgwarden_access_request_events_total";

/// The values of [`FAILURES`]' `reason` label: `grant`, `extend`, `revoke`, `expiry`
/// (a revocation at expiry), `reconcile`, `rotation` (the connector's password),
/// `connect` (the runtime could not reach the instance), `ledger_read` (the sweeper
/// could not read the grants), `request` (an approved access request could not be
/// granted).
pub const FAILURE_REASONS: &[&str] = &[
    "grant",
    "extend",
    "revoke",
    "expiry",
    "reconcile",
    "rotation",
    "connect",
    "ledger_read",
    "request",
];

/// Histogram bucket bounds, in seconds, suited to every histogram above: from a
/// few milliseconds (a grant) to minutes (a revocation retried under lock contention).
pub const HISTOGRAM_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Gives every metric its unit and help text, in the recorder installed now.
pub fn describe() {
    describe_counter!(GRANTS, Unit::Count, "Grants made.");
    describe_counter!(
        REVOCATIONS,
        Unit::Count,
        "Grants whose access this process ended, by how: expiry, revoke, reconcile."
    );
    describe_counter!(
        FAILURES,
        Unit::Count,
        "Failed operations, by what failed (reason) and how (kind)."
    );
    describe_histogram!(
        GRANT_DURATION,
        Unit::Seconds,
        "Time a successful grant took."
    );
    describe_histogram!(
        REVOKE_DURATION,
        Unit::Seconds,
        "Time a successful revocation took, by how: expiry, revoke."
    );
    describe_histogram!(
        EXPIRY_LAG,
        Unit::Seconds,
        "Time from a grant's expiry to the end of its access."
    );
    describe_gauge!(
        LIVE_GRANTS,
        Unit::Count,
        "Grants whose access has not ended, at the sweeper's last ledger read."
    );
    describe_gauge!(
        SWEEPER_LEADER,
        "1 while this process is the integration's sweeper, else 0."
    );
    describe_counter!(
        SECRET_STORE_ERRORS,
        Unit::Count,
        "Secret-store failures the runtime met."
    );
    describe_counter!(
        REQUEST_EVENTS,
        Unit::Count,
        "Access-request transitions, by event."
    );
}

/// Why an operation failed: the `reason` label of [`FAILURES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Grant,
    Extend,
    Revoke,
    Expiry,
    Reconcile,
    Rotation,
    Connect,
    LedgerRead,
    Request,
}

impl Reason {
    fn label(self) -> &'static str {
        match self {
            Reason::Grant => "grant",
            Reason::Extend => "extend",
            Reason::Revoke => "revoke",
            Reason::Expiry => "expiry",
            Reason::Reconcile => "reconcile",
            Reason::Rotation => "rotation",
            Reason::Connect => "connect",
            Reason::LedgerRead => "ledger_read",
            Reason::Request => "request",
        }
    }
}

/// Records what an audit event says: called once for every event, whatever the sink.
pub(crate) fn audited(e: &AuditEvent) {
    let integration = e.integration.clone();
    if e.action.as_str().starts_with("request_") {
        counter!(REQUEST_EVENTS, "integration" => integration.clone(), "event" => e.action.as_str())
            .increment(1);
    }
    if e.failed() {
        let reason = match e.action {
            AuditAction::Grant => Reason::Grant,
            AuditAction::Extend => Reason::Extend,
            AuditAction::Revoke => Reason::Revoke,
            AuditAction::Expire => Reason::Expiry,
            AuditAction::Rotate => Reason::Rotation,
            AuditAction::Reconcile => Reason::Reconcile,
            AuditAction::RequestFailed => Reason::Request,
            // Not an operation of ours: it never fails. Request events other than
            // `request_failed` carry no error.
            _ => return,
        };
        failure(&integration, reason, e.error_kind);
        return;
    }
    match e.action {
        AuditAction::Grant => {
            counter!(GRANTS, "integration" => integration.clone()).increment(1);
            if let Some(d) = e.duration {
                histogram!(GRANT_DURATION, "integration" => integration).record(d);
            }
        }
        AuditAction::Revoke | AuditAction::Expire => {
            let how = match e.action {
                AuditAction::Revoke => "revoke",
                _ if e.by_reconcile => "reconcile",
                _ => "expiry",
            };
            counter!(REVOCATIONS, "integration" => integration.clone(), "how" => how).increment(1);
            if let Some(d) = e.duration {
                histogram!(REVOKE_DURATION, "integration" => integration, "how" => how).record(d);
            }
        }
        _ => {}
    }
}

/// An operation failed: `kind` is what kind of failure, when known (else `failed`).
pub(crate) fn failure(integration: &str, reason: Reason, kind: Option<crate::ErrorKind>) {
    let kind = kind.map_or("failed", crate::ErrorKind::label);
    counter!(FAILURES, "integration" => integration.to_owned(), "reason" => reason.label(), "kind" => kind)
        .increment(1);
}

/// The runtime met `error`: counts it in [`SECRET_STORE_ERRORS`] when the secret
/// store failed.
pub(crate) fn secret_store_error(integration: &str, error: &IntegrationError) {
    if matches!(error, IntegrationError::Secrets(_)) {
        counter!(SECRET_STORE_ERRORS, "integration" => integration.to_owned()).increment(1);
    }
}

/// A grant's access ended `lag` after its expiry.
pub(crate) fn expiry_lag(integration: &str, lag: Duration) {
    histogram!(EXPIRY_LAG, "integration" => integration.to_owned()).record(lag);
}

/// The sweeper read `live` grants whose access has not ended.
pub(crate) fn live_grants(integration: &str, live: usize) {
    #[allow(
        clippy::cast_precision_loss,
        reason = "a count of grants is far below 2^52"
    )]
    gauge!(LIVE_GRANTS, "integration" => integration.to_owned()).set(live as f64);
}

/// This process became, or stopped being, the sweeper.
pub(crate) fn sweeper_leader(integration: &str, leader: bool) {
    gauge!(SWEEPER_LEADER, "integration" => integration.to_owned()).set(if leader {
        1.0
    } else {
        0.0
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_reason_is_documented() {
        let all = [
            Reason::Grant,
            Reason::Extend,
            Reason::Revoke,
            Reason::Expiry,
            Reason::Reconcile,
            Reason::Rotation,
            Reason::Connect,
            Reason::LedgerRead,
            Reason::Request,
        ];
        let labels: Vec<&str> = all.iter().map(|r| r.label()).collect();
        assert_eq!(labels, FAILURE_REASONS);
    }
}
