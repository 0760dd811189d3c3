//! The facade's error: one enum over what can go wrong in the runtime.

use pgwarden_pg_driver::discovery::DiscoveryError;
use pgwarden_pg_driver::error::ConnectError;
use pgwarden_pg_driver::provision::ProvisionError;

/// Something the integration runtime could not do. Messages name what to fix and
/// never contain a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrationError {
    /// The config or options cannot work.
    #[error("invalid integration setup: {0}")]
    Config(String),
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
    #[error("{action} failed: {message}")]
    Database {
        /// What was being done.
        action: &'static str,
        /// The server's message.
        message: String,
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
