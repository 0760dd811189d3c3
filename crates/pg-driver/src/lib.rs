//! pgwarden-pg-driver: the PostgreSQL side of pgwarden.
//!
//! Connections that honour libpq's connection options exactly (over tokio-postgres
//! and rustls), pools, discovery, provisioning, complete revocation and
//! reconciliation. This crate is handed credentials and the ledger key; it never
//! reads secrets itself.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use pgwarden_pg_driver::connect::{ConnectOptions, Connector};
//! use pgwarden_pg_driver::provision::{Expiry, GrantRequest, Provisioner, ProvisionerConfig};
//! use pgwarden_pg_driver::seal::LedgerKey;
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
//!   `search_path = pg_catalog, pg_temp` in the startup packet ([`connect`]), and the
//!   catalog SQL qualifies its functions and gives literals the exact type of the
//!   catalog operator, so operators and functions planted in `public` never run, even
//!   with the server's default `search_path`.
//! - **The ledger cannot be forged** (`ledger.rs`). Every record is sealed for the
//!   role it is written on ([`seal`]); a forged, altered or copied record is drift,
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
//!   own ([`reconcile`]).
//! - **Nothing a grant created survives it** unless a successor keeps it, and then
//!   without its PUBLIC grants, its `SECURITY DEFINER` functions listed
//!   (`handover.rs`).
//! - **Cancelled operations leave nothing behind** (`cancel.rs`): a pooled
//!   connection dropped with a lock or transaction open is closed, never reused
//!   ([`pool`]).
//! - **Every connection option accepted is honoured as libpq does, or refused** by
//!   name (`options.rs`, `tests/connect.rs`).
//!
//! Not covered: a `CREATEROLE` attacker on 15 and earlier can still act on
//! non-superuser roles directly (the server's own rule: such a role is nearly a
//! superuser); pgwarden only makes sure it never acts on that attacker's behalf.

#![forbid(unsafe_code)]

pub mod adopt;
pub mod connect;
pub mod danger;
pub mod discovery;
pub mod error;
pub mod expire;
pub mod ledger;
mod owned;
pub mod pool;
pub mod preflight;
pub mod privilege;
pub mod provision;
pub mod reconcile;
pub mod retry;
pub mod revoke;
pub mod scram;
pub mod seal;
pub mod sql;
pub mod tls;

pub use pgwarden_core as core;
/// The driver the connections are made with, for hosts that use the clients directly.
pub use tokio_postgres;
