//! pgwarden: just-in-time access to PostgreSQL, as a library.
//!
//! A host application (an access portal, a chat bot, an internal platform) embeds
//! pgwarden to discover a PostgreSQL instance's databases, schemas, tables and roles;
//! grant a person exactly a chosen permission level for a limited time; revoke that
//! access completely when time is up; rotate credentials without locking anyone out;
//! and tell who must approve access to a resource.
//!
//! [`Integration`] ties it together: it reads the connector's credentials through a
//! [`pgwarden_secrets::SecretStore`], connects as libpq would, and offers
//! [`discover`](Integration::discover), [`approvers`](Integration::approvers),
//! [`grant`](Integration::grant), [`extend`](Integration::extend),
//! [`revoke`](Integration::revoke), [`list`](Integration::list),
//! [`reconcile`](Integration::reconcile) and
//! [`rotate_credentials`](Integration::rotate_credentials). [`Integration::run`]
//! starts the background runtime that revokes each grant when it expires. Every
//! action is reported to an [`AuditSink`].
//!
//! The key decision: **the database is the ledger.** Every grant is recorded on the
//! role it created, inside PostgreSQL; a restarted process, or a second replica,
//! knows everything, and nothing is lost on a crash.
//!
//! From a config file to a grant (the config's `[secret]` section says where the
//! connector's credentials are kept; `cargo run --example quickstart` runs the same
//! against a throwaway cluster):
//!
//! ```no_run
//! use pgwarden::{AccessEntry, AccessRequest, Integration, PermissionLevel, ResourceId};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let integration = Integration::from_config("integration.toml", Default::default()).await?;
//! let runtime = integration.run(); // revokes every grant when it expires
//!
//! let read_only = AccessEntry::new(ResourceId::schema("app", "public"), PermissionLevel::ReadOnly)?;
//! let request = AccessRequest::new("alice@example.com", [read_only], "2h".parse()?)
//!     .justification("incident 4711");
//! let grant = integration.grant(request).await?;
//! println!("log in as {} until {}", grant.username, grant.expires_at);
//!
//! runtime.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Failures carry an [`ErrorKind`] to branch on:
//!
//! ```no_run
//! # use pgwarden::{AccessRequest, ErrorKind, Integration, InvalidReason};
//! # async fn demo(integration: &Integration, request: AccessRequest) {
//! match integration.grant(request).await {
//!     Ok(grant) => println!("granted {}", grant.grant_id),
//!     Err(e) if e.kind() == ErrorKind::InvalidRequest(InvalidReason::TtlOverMax) => {
//!         println!("ask for less time: {e}");
//!     }
//!     Err(e) if e.is_retryable() => println!("try again shortly: {e}"),
//!     Err(e) => println!("failed: {e}"),
//! }
//! # }
//! ```

#![forbid(unsafe_code)]

pub mod access;
pub mod audit;
mod credentials;
mod error;
mod from_config;
mod integration;
pub mod ledger_key;
pub mod metrics;
mod request;
pub mod rotation;
mod runtime;

use std::path::Path;

pub use access::{AccessRequestError, AccessRequests, NewAccessRequest, RequestedAccess};
pub use audit::{AuditAction, AuditEvent, AuditSink, RecordingAuditSink, TracingAuditSink};
pub use error::{ErrorKind, IntegrationError, InvalidReason};
pub use from_config::ConfigSource;
pub use integration::{Integration, IntegrationOptions};
pub use request::{AccessGrant, AccessRequest};
pub use runtime::{RunHandle, RunMonitor, RunStatus};

// The types a host meets in the signatures above, so that `pgwarden` is the one
// dependency it needs.
pub use pgwarden_core::config::IntegrationConfig;
pub use pgwarden_core::duration::Ttl;
pub use pgwarden_core::owners::{Directory, Resolution};
pub use pgwarden_core::resource::{AccessEntry, PermissionLevel, ResourceId, ResourceType};
pub use pgwarden_core::tags::TagSource;
pub use pgwarden_pg_driver::{
    ConnectOptions, DiscoveryResult, LedgerKey, ListedState, Preflight, ReconcileFailure,
    ReconcileFailureKind, ReconcileReport, RevocationReport, RoleMode, ScramIterations,
};
pub use pgwarden_secrets::{DynSecretStore, SecretKey, SecretStore};
/// Passwords are handed out as `SecretString`: read one with
/// [`ExposeSecret::expose_secret`], on purpose, when showing it to its user.
pub use secrecy::{ExposeSecret, SecretString};

// The crates underneath, for what the re-exports above leave out.
pub use pgwarden_core as core;
pub use pgwarden_pg_driver as pg_driver;
pub use pgwarden_secrets as secrets;

/// A config file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but is not a valid config.
    #[error("{path}: {source}")]
    Invalid {
        /// The path.
        path: String,
        /// Every problem found.
        source: pgwarden_core::config::ConfigError,
    },
}

impl LoadConfigError {
    /// The config problems, when the file was read; empty for a read error.
    #[must_use]
    pub fn problems(&self) -> Vec<pgwarden_core::config::ConfigProblem> {
        match self {
            LoadConfigError::Read { .. } => Vec::new(),
            LoadConfigError::Invalid { source, .. } => source.problems(),
        }
    }
}

/// Reads and validates an integration config; the format follows the extension
/// (`.toml`, `.yaml`/`.yml`, `.json`).
pub fn load_config(path: impl AsRef<Path>) -> Result<IntegrationConfig, LoadConfigError> {
    use pgwarden_core::config::ConfigFormat;
    let path = path.as_ref();
    let shown = path.display().to_string();
    let invalid = |source| LoadConfigError::Invalid {
        path: shown.clone(),
        source,
    };
    let format = ConfigFormat::from_path(path).map_err(invalid)?;
    let text = std::fs::read_to_string(path).map_err(|source| LoadConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    // The `[secret]` section's backend and settings are checked by the backends, and
    // their problems listed with the rest.
    let mut config = IntegrationConfig::parse_with(&text, format, pgwarden_secrets::validate)
        .map_err(invalid)?;
    // A relative flows path is relative to the config file, wherever the process runs.
    if let (Some(settings), Some(dir)) = (config.access_requests.as_mut(), path.parent())
        && Path::new(&settings.flows).is_relative()
    {
        settings.flows = dir.join(&settings.flows).display().to_string();
    }
    Ok(config)
}
