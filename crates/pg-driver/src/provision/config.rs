//! The settings of a provisioner.

use pgwarden_core::config::{ConnectorMode, IntegrationConfig, UserMode};
use pgwarden_core::duration::Ttl;

use crate::scram::ScramIterations;
use crate::seal::LedgerKey;

/// Settings of a provisioner, usually taken from the integration config.
#[derive(Debug, Clone)]
pub struct ProvisionerConfig {
    /// The integration's name, recorded in every role comment.
    pub integration: String,
    /// Prefix of login role names.
    pub username_prefix: String,
    /// Ephemeral or persistent login roles.
    pub user_mode: UserMode,
    /// The longest grant or extension allowed.
    pub max_ttl: Ttl,
    /// PBKDF2 iterations of generated verifiers (see [`ScramIterations`]).
    pub scram_iterations: ScramIterations,
    /// Persistent users get a new password at a grant when theirs is older than this.
    pub password_max_age: Option<time::Duration>,
    /// Objects a revoked ephemeral role owns are handed to this role instead of
    /// dropped (`REASSIGN OWNED`); `None` drops them.
    pub successor: Option<String>,
    /// Connections per database.
    pub pool_size: usize,
    /// Whether the connector is a superuser or a `CREATEROLE` role (see
    /// [`ConnectorMode`]).
    pub connector_mode: ConnectorMode,
    /// Roles whose membership may be granted (`postgresql-role:<name>=member`) even
    /// though they reach a superuser, a role with CREATEROLE, REPLICATION or
    /// BYPASSRLS, a server program, file or all-data predefined role, or ADMIN OPTION
    /// on one of those. Such a grant is logged as a warning naming what the role
    /// reaches. Roles reaching pgwarden's own roles are refused regardless. Usually
    /// empty.
    pub sensitive_roles_allowed: Vec<String>,
    /// The key every ledger record is sealed with (see [`LedgerKey`]). Every
    /// integration and replica managing the instance must use the same key.
    pub ledger_key: LedgerKey,
    /// How long a revocation's clean-up (`REASSIGN OWNED`, `DROP OWNED`) waits for a
    /// lock held by another session before it stops and reports who holds it
    /// ([`ProvisionError::CleanupWaiting`](crate::ProvisionError::CleanupWaiting));
    /// access has ended by then, and the clean-up is retried. Default 2 s.
    pub cleanup_lock_timeout: std::time::Duration,
}

impl ProvisionerConfig {
    /// The settings of an integration, with the ledger key read from its secret store.
    #[must_use]
    pub fn from_integration(config: &IntegrationConfig, ledger_key: LedgerKey) -> Self {
        ProvisionerConfig {
            ledger_key,
            integration: config.name.clone(),
            username_prefix: config.username_prefix.clone(),
            user_mode: config.user_mode,
            max_ttl: config.max_ttl,
            scram_iterations: ScramIterations::DEFAULT,
            password_max_age: config
                .credential_rotation_days
                .map(|d| time::Duration::days(i64::from(d))),
            successor: None,
            pool_size: 4,
            connector_mode: config.connector_mode,
            sensitive_roles_allowed: config.sensitive_roles_allowed.clone(),
            cleanup_lock_timeout: DEFAULT_CLEANUP_LOCK_TIMEOUT,
        }
    }
}

/// The default [`ProvisionerConfig::cleanup_lock_timeout`].
pub const DEFAULT_CLEANUP_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
