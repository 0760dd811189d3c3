//! pgwarden-pg-driver: the PostgreSQL side of pgwarden.
//!
//! Connections that honour libpq's `sslmode` exactly (over tokio-postgres and
//! rustls), pools, and — as they land — discovery, provisioning, revocation and
//! reconciliation. This crate is handed credentials; it never reads secrets itself.

#![forbid(unsafe_code)]

pub mod adopt;
pub mod connect;
pub mod danger;
pub mod discovery;
pub mod error;
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
