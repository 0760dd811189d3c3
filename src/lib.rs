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
//! ```no_run
//! use std::sync::Arc;
//! use pgwarden::{AccessRequest, Integration, IntegrationOptions};
//! use pgwarden::secrets::{InMemory, PutOptions, SecretKey, SecretStoreExt};
//! use pgwarden::core::credentials::Credentials;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = pgwarden::load_config("examples/integration.toml")?;
//! let store = Arc::new(InMemory::new());
//! let key = SecretKey::new("connector");
//! store.put_credentials(&key, &Credentials::new("pgwarden_connector", "…"), PutOptions::create()).await?;
//! let options = IntegrationOptions { secret_key: Some(key), ..IntegrationOptions::default() };
//! let integration = Integration::connect(config, store, options).await?;
//! let runtime = integration.run();
//! let grant = integration
//!     .grant(AccessRequest {
//!         requester: "alice@example.com".into(),
//!         access: vec!["postgresql-schema:app/public=read-only".parse()?],
//!         duration: "2h".parse()?,
//!         justification: Some("incident 4711".into()),
//!         grant_id: None,
//!     })
//!     .await?;
//! println!("log in as {} until {}", grant.username, grant.expires_at);
//! runtime.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

pub mod audit;
mod error;
mod integration;
pub mod ledger_key;
pub mod rotation;
mod runtime;

use std::path::Path;

pub use audit::{AuditAction, AuditEvent, AuditSink, RecordingAuditSink, TracingAuditSink};
pub use error::IntegrationError;
pub use integration::{AccessGrant, AccessRequest, Integration, IntegrationOptions};
pub use pgwarden_core as core;
pub use pgwarden_core::config::IntegrationConfig;
pub use pgwarden_pg_driver as pg_driver;
pub use pgwarden_secrets as secrets;
pub use runtime::RunHandle;

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
    IntegrationConfig::parse(&text, format).map_err(invalid)
}
