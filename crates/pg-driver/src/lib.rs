//! pgwarden-pg-driver: the PostgreSQL side of pgwarden.
//!
//! Connections that honour libpq's connection options exactly (over tokio-postgres
//! and rustls), pools, discovery, provisioning, complete revocation and
//! reconciliation. This crate is handed credentials and the ledger key; it never
//! reads secrets itself.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use pgwarden_pg_driver::{
//!     ConnectOptions, Connector, Expiry, GrantRequest, LedgerKey, Provisioner, ProvisionerConfig,
//! };
//!
//! let info: pgwarden_pg_driver::core::conninfo::ConnInfo =
//!     "host=db.internal user=pgwarden_connector sslmode=verify-full".parse()?;
//! let config: pgwarden_pg_driver::core::config::IntegrationConfig =
//!     pgwarden_pg_driver::core::config::IntegrationConfig::parse(
//!         "name = \"app\"\nhostname = \"db.internal\"",
//!         pgwarden_pg_driver::core::config::ConfigFormat::Toml,
//!     )?;
//! // The ledger key comes from the secret store, shared by every replica.
//! let key = LedgerKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")?;
//! let provisioner = Provisioner::new(
//!     Connector::new(&info, &ConnectOptions::default())?,
//!     ProvisionerConfig::from_integration(&config, key),
//! )?;
//! let grant = provisioner
//!     .grant(GrantRequest {
//!         grant_id: None,
//!         requester: "alice@example.com".into(),
//!         access: vec!["postgresql-schema:app/public=read-only".parse()?],
//!         expiry: Expiry::After("1h".parse()?),
//!         user_mode: None,
//!         session: pgwarden_pg_driver::core::session::SessionLimits::default(),
//!     })
//!     .await?;
//! provisioner.revoke(&grant.grant_id).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Threat model
//!
//! pgwarden holds a superuser (or, on managed clouds, a `CREATEROLE`) connector and
//! hands out time-limited access. The attacker is a user of the same instance: any
//! login role, a grantee of any level (database admin included), or a role with
//! `CREATEROLE` that is not the connector. Superusers, the host running pgwarden and
//! the secret store are trusted. Against that attacker pgwarden guarantees, each
//! proven by a test in `tests/attacks/` that mounts the attack against a real server
//! (CI runs it on PostgreSQL 13, 15 and 18):
//!
//! - **Its own SQL runs as written** (`search_path.rs`). Every connection pins
//!   `search_path = pg_catalog, pg_temp` in the startup packet ([`PINNED_SEARCH_PATH`]), and the
//!   catalog SQL qualifies its functions and gives literals the exact type of the
//!   catalog operator, so operators and functions planted in `public` never run, even
//!   with the server's default `search_path`.
//! - **The ledger cannot be forged** (`ledger.rs`). Every record is sealed for the
//!   role it is written on ([`LedgerKey`]); a forged, altered or copied record is drift,
//!   never acted on; privilege roles pgwarden did not make are never used; members of
//!   privilege roles that no authentic grant lists are removed by reconcile.
//! - **A grant opens exactly its level** (`roles.rs`). `role: member` refuses targets
//!   that reach, through the membership graph, a superuser, the server program/file
//!   roles, `pg_read_all_data`/`pg_write_all_data`, `CREATEROLE`, `REPLICATION` or
//!   `BYPASSRLS` roles, ADMIN OPTION on any of those, or pgwarden's own roles (unless
//!   `sensitive_roles_allowed` names the target).
//! - **Grantees cannot act as pgwarden's roles** (`set_role.rs`). From 16 every
//!   membership pgwarden gives is `INHERIT TRUE, SET FALSE`; on 13–15, where
//!   membership always allows `SET ROLE`, reconcile removes whatever pgwarden's roles
//!   own ([`Provisioner::reconcile`]).
//! - **Nothing a grant created survives it** unless a successor keeps it, and then
//!   without its PUBLIC grants, its `SECURITY DEFINER` functions listed
//!   (`handover.rs`).
//! - **Cancelled operations leave nothing behind** (`cancel.rs`): a pooled
//!   connection dropped with a lock or transaction open is closed, never reused
//!   ([`Pool`]).
//! - **Every connection option accepted is honoured as libpq does, or refused** by
//!   name (`options.rs`, `tests/connect.rs`).
//!
//! Not covered: a `CREATEROLE` attacker on 15 and earlier can still act on
//! non-superuser roles directly (the server's own rule: such a role is nearly a
//! superuser); pgwarden only makes sure it never acts on that attacker's behalf.

#![forbid(unsafe_code)]

mod adopt;
mod connect;
mod danger;
mod discovery;
mod error;
mod expire;
mod ledger;
mod lock;
mod owned;
mod pool;
mod preflight;
mod privilege;
mod provision;
mod reconcile;
mod request_store;
mod retry;
mod revoke;
mod rotation;
mod scram;
mod seal;
mod sql;
mod tls;

// The public surface: what a host or the `pgwarden` facade uses, by topic. (Plain
// comments: a doc comment on a re-export would be prepended to each item's own docs.)

// Connecting: options, the connector, a live connection, and what goes wrong.
pub use connect::{
    ConnectOptions, Connection, Connector, DEFAULT_APPLICATION_NAME, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_KEEPALIVES, DEFAULT_STATEMENT_TIMEOUT, PINNED_SEARCH_PATH,
};
pub use error::{AuthFailure, ConnectError, NetworkFailure, TlsFailure};

// TLS: the crypto provider connections use, and making it the process default.
pub use tls::{TlsSetupError, default_provider, install_process_default_provider};

// Pools of connections made by a `Connector`.
pub use pool::{Health, IDLE_CHECK_AFTER, Pool, PoolError, PoolOptions, Recycling};

// Checking what a connector role can do before relying on it.
pub use preflight::{Capability, ConnectorRole, Preflight, SessionTls};

// Discovery: the databases, schemas, tables and roles of an instance.
pub use discovery::{
    CommentTags, DEFAULT_MAX_CONNECTIONS, DatabaseFailure, Discovered, DiscoveryDiff,
    DiscoveryError, DiscoveryOptions, DiscoveryResult, DiscoveryStream, Partition, Resource,
    ResourceChange, ResourceKind, RoleAttributes, TagReader, discover, discover_stream,
};

// Provisioning: the provisioner, its settings, requests and the grants it returns.
pub use provision::{
    DEFAULT_CLEANUP_LOCK_TIMEOUT, Expiry, Grant, GrantRequest, ListedGrant, ListedState,
    Provisioner, ProvisionerConfig,
};

// The ledger: the key its records are sealed with, and how a login role lives.
pub use ledger::RoleMode;
pub use seal::{LedgerKey, LedgerKeyError};

// What revocation, expiry, reconciliation and adoption report.
pub use adopt::AdoptionReport;
pub use expire::{BATCH_SIZE, BatchOutcome};
pub use reconcile::{Drift, ReconcileFailure, ReconcileFailureKind, ReconcileReport};
pub use revoke::{Blocker, DatabaseCleanup, RevocationReport};

// Access requests kept in PostgreSQL, shared by replicas.
pub use request_store::{PgRequestStore, REQUEST_STORE_SCHEMA, REQUEST_STORE_SCHEMA_VERSION};

// Why provisioning failed, and the privilege roles' names.
pub use error::{InvalidRequest, ProvisionError, describe_db_error};
pub use privilege::{PrivilegeError, privilege_role_name};

// Every advisory lock pgwarden takes, and the statements of a connector password
// rotation.
pub use lock::{Lock, LockScope};
pub use rotation::{RotationLockDatabase, rotation_lock_database, set_connector_password};

// Passwords and SCRAM verifiers.
pub use scram::{ScramIterations, Verifier, generate_password, verifier};

// Backoff for retrying a failed operation.
pub use retry::backoff;

// Test hooks (feature `testing`, not semver API): a grant or revocation stopped at a
// step, discovery's catalog queries (to time them raw), random names.
#[cfg(feature = "testing")]
pub use {
    discovery::queries as discovery_queries,
    provision::{Step, StepHook},
    scram::random_string,
};

// The crates underneath.
pub use pgwarden_core as core;
/// The driver the connections are made with, for hosts that use the clients directly.
pub use tokio_postgres;
