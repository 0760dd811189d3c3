//! The facade's error: one enum over what can go wrong, and a [`ErrorKind`] a host
//! branches on without reading messages.

use std::fmt;

use pgwarden_pg_driver::{
    AuthFailure, ConnectError, DiscoveryError, InvalidRequest, PoolError, PrivilegeError,
    ProvisionError, describe_db_error,
};

/// Something the integration could not do. Messages name what to fix and never
/// contain a secret; [`IntegrationError::kind`] says what kind of failure it is, and
/// the underlying error (the server's, the store's) is reachable through
/// [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrationError {
    /// The config or options cannot work.
    #[error("invalid integration setup: {0}")]
    Config(String),
    /// The config file could not be read or is invalid.
    #[error(transparent)]
    LoadConfig(#[from] crate::LoadConfigError),
    /// The connector's credentials could not be read from (or written to) the store.
    #[error("secret store: {0}")]
    Secrets(#[from] pgwarden_secrets::Error),
    /// The instance could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Granting, revoking or reconciling failed.
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    /// Discovery failed.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// Owner resolution failed.
    #[error(transparent)]
    Owners(#[from] pgwarden_core::owners::OwnerError),
    /// A statement of the runtime itself failed.
    #[error("{action} failed: {}", describe_db_error(source))]
    Database {
        /// What was being done.
        action: &'static str,
        /// The driver's error (the server's message and SQLSTATE through
        /// `as_db_error`).
        source: pgwarden_pg_driver::tokio_postgres::Error,
    },
    /// Credential rotation stopped; the connector can still log in (see the message).
    #[error("credential rotation stopped at {step}: {message}")]
    Rotation {
        /// The step.
        step: &'static str,
        /// What happened and what state was left.
        message: String,
    },
}

/// What kind of failure an [`IntegrationError`] is: what a host branches on.
/// Serialized in snake case (`"not_found"`, `{"invalid_request": "ttl_over_max"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request cannot be granted as asked; nothing was changed. Fix the request.
    InvalidRequest(InvalidReason),
    /// No active grant has the id given.
    NotFound,
    /// Another operation on the same grant or role is under way, or came first (an
    /// extension before an expiry, a revocation in another process); retry later.
    Conflict,
    /// The server (or the secret store) refused: a login, or a permission the
    /// connector lacks.
    Denied,
    /// The instance or the secret store could not be reached, timed out, or is
    /// overloaded or restarting; retry later.
    Unavailable,
    /// The integration's config, options or environment cannot work as set up.
    Config,
    /// An access request's state does not allow the action (approving a rejected
    /// request); retrying will not help.
    InvalidState,
    /// Anything else: the message says what happened.
    Failed,
}

impl ErrorKind {
    /// A short, stable label: `invalid_request`, `not_found`, `conflict`, `denied`,
    /// `unavailable`, `config`, `invalid_state` or `failed` (the `kind` label of the
    /// failure metric).
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest(_) => "invalid_request",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Denied => "denied",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Config => "config",
            ErrorKind::InvalidState => "invalid_state",
            ErrorKind::Failed => "failed",
        }
    }

    /// Whether the same call may succeed later without any change on the host's side.
    #[must_use]
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Conflict | ErrorKind::Unavailable)
    }
}

/// Why a request is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum InvalidReason {
    /// A resource named does not exist.
    UnknownResource,
    /// A level is not valid for the type of its resource (e.g. `member` on a table).
    LevelNotValidForType,
    /// The duration is longer than the integration's `max_ttl`.
    TtlOverMax,
    /// The expiry is not in the future.
    ExpiryNotInFuture,
    /// No requester was named.
    EmptyRequester,
    /// No access was asked for.
    NoAccess,
    /// The grant id is empty, too long or not printable.
    InvalidGrantId,
    /// The access would open more than it names (e.g. membership in a role that
    /// reaches a superuser), and the integration's `sensitive_roles_allowed` does not
    /// name it.
    OpensMoreThanNamed,
    /// The session limits are invalid (a timeout of 0, a connection limit of 0, a
    /// schema name or pgaudit class that cannot be).
    SessionLimitsInvalid,
    /// A session limit needs a newer PostgreSQL than the server's
    /// (`idle_session_timeout` 14+, `transaction_timeout` 17+).
    SettingUnsupported,
    /// `pgaudit_log` is set but the server has not loaded pgaudit.
    PgauditMissing,
}

/// The [`label`](ErrorKind::label).
impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl IntegrationError {
    /// What kind of failure this is.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            IntegrationError::Config(_) | IntegrationError::LoadConfig(_) => ErrorKind::Config,
            IntegrationError::Secrets(e) => secrets_kind(e),
            IntegrationError::Connect(e) => connect_kind(e),
            IntegrationError::Provision(e) => provision_kind(e),
            IntegrationError::Discovery(e) => match e {
                DiscoveryError::Connect { source, .. } => connect_kind(source),
                DiscoveryError::Query { source, .. } => db_kind(source),
                _ => ErrorKind::Failed,
            },
            IntegrationError::Owners(e) => match e {
                pgwarden_core::owners::OwnerError::ResourceOwnerWithoutIntegrationOwner => {
                    ErrorKind::Config
                }
                _ => ErrorKind::Unavailable,
            },
            IntegrationError::Database { source, .. } => db_kind(source),
            IntegrationError::Rotation { .. } => ErrorKind::Failed,
        }
    }

    /// Shorthand for `self.kind().is_retryable()`.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }

    /// The server's error, when the failure is one the server reported.
    #[must_use]
    pub fn db_error(&self) -> Option<&pgwarden_pg_driver::tokio_postgres::error::DbError> {
        let mut e: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(cur) = e {
            if let Some(pg) = cur.downcast_ref::<pgwarden_pg_driver::tokio_postgres::Error>() {
                return pg.as_db_error();
            }
            e = cur.source();
        }
        None
    }
}

fn secrets_kind(e: &pgwarden_secrets::Error) -> ErrorKind {
    use pgwarden_secrets::Error as S;
    match e {
        _ if e.is_transient() => ErrorKind::Unavailable,
        S::PermissionDenied { .. } => ErrorKind::Denied,
        S::Conflict { .. } => ErrorKind::Conflict,
        S::Config { .. } | S::FeatureDisabled { .. } | S::NotImplemented { .. } => {
            ErrorKind::Config
        }
        S::NotFound { .. } | S::Malformed { .. } => ErrorKind::Config,
        _ => ErrorKind::Failed,
    }
}

fn connect_kind(e: &ConnectError) -> ErrorKind {
    match e {
        ConnectError::Network { .. } => ErrorKind::Unavailable,
        ConnectError::Auth {
            kind: AuthFailure::WrongPassword | AuthFailure::NoHbaEntry | AuthFailure::Other,
            ..
        } => ErrorKind::Denied,
        ConnectError::Server { code, .. } => sqlstate_kind(code),
        _ => ErrorKind::Config,
    }
}

fn provision_kind(e: &ProvisionError) -> ErrorKind {
    match e {
        ProvisionError::InvalidRequest(p) => ErrorKind::InvalidRequest(match p {
            InvalidRequest::EmptyRequester => InvalidReason::EmptyRequester,
            InvalidRequest::NoAccess => InvalidReason::NoAccess,
            InvalidRequest::InvalidGrantId => InvalidReason::InvalidGrantId,
            InvalidRequest::ExpiryNotInFuture { .. } => InvalidReason::ExpiryNotInFuture,
            InvalidRequest::OverMaxTtl { .. } => InvalidReason::TtlOverMax,
            InvalidRequest::SessionLimits(_) => InvalidReason::SessionLimitsInvalid,
            InvalidRequest::SettingUnsupported { .. } => InvalidReason::SettingUnsupported,
            InvalidRequest::PgauditMissing => InvalidReason::PgauditMissing,
            InvalidRequest::Level(_) | _ => InvalidReason::LevelNotValidForType,
        }),
        ProvisionError::Privilege(p) => match p {
            PrivilegeError::UnknownResource { .. } => {
                ErrorKind::InvalidRequest(InvalidReason::UnknownResource)
            }
            PrivilegeError::Refused(_) => {
                ErrorKind::InvalidRequest(InvalidReason::OpensMoreThanNamed)
            }
            PrivilegeError::NotGrantable { .. } => ErrorKind::Denied,
            PrivilegeError::Catalog { source, .. } => db_kind(source),
            _ => ErrorKind::Failed,
        },
        ProvisionError::UnknownGrant { .. } => ErrorKind::NotFound,
        ProvisionError::Connect(e) => connect_kind(e),
        ProvisionError::Pool(p) => match p {
            PoolError::Connect(e) => connect_kind(e),
            _ => ErrorKind::Unavailable,
        },
        ProvisionError::Database { source, .. } => db_kind(source),
        ProvisionError::PrivilegeRoleNotReady(_)
        | ProvisionError::NotExpired { .. }
        | ProvisionError::InProgress { .. }
        | ProvisionError::CleanupWaiting { .. } => ErrorKind::Conflict,
        ProvisionError::ConnectorMode(_) | ProvisionError::NotAuthentic(_) => ErrorKind::Config,
        _ => ErrorKind::Failed,
    }
}

/// A statement's failure: by SQLSTATE when the server sent one; unavailable when the
/// connection was closed or its socket failed (an I/O error under it).
fn db_kind(e: &pgwarden_pg_driver::tokio_postgres::Error) -> ErrorKind {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut io = false;
    while let Some(c) = cause {
        io |= c.is::<std::io::Error>();
        cause = c.source();
    }
    match e.as_db_error() {
        Some(db) => sqlstate_kind(db.code().code()),
        None if e.is_closed() || io => ErrorKind::Unavailable,
        None => ErrorKind::Failed,
    }
}

/// Classes and codes from the PostgreSQL manual's appendix A.
fn sqlstate_kind(code: &str) -> ErrorKind {
    match code {
        // insufficient_privilege; invalid authorization; invalid password
        "42501" | "28000" | "28P01" => ErrorKind::Denied,
        // serialization failure, deadlock, lock not available, object in use
        "40001" | "40P01" | "55P03" | "55006" => ErrorKind::Conflict,
        // query canceled (statement or lock timeout), admin/crash shutdown, cannot
        // connect now
        "57014" | "57P01" | "57P02" | "57P03" => ErrorKind::Unavailable,
        _ if code.starts_with("08") || code.starts_with("53") => ErrorKind::Unavailable,
        // invalid catalog name (no such database)
        "3D000" => ErrorKind::Config,
        _ => ErrorKind::Failed,
    }
}
