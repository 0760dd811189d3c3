//! pgwarden-pg-driver: the PostgreSQL side of pgwarden.
//!
//! This crate will hold connections that honour libpq's `sslmode` exactly, discovery,
//! provisioning, revocation and reconciliation over tokio-postgres. It is handed
//! credentials and never reads secrets itself. Today it only re-exports the model it
//! builds on; the connection layer lands with its own issue.
//!
//! ```
//! use pgwarden_pg_driver::core::conninfo::ConnInfo;
//! let info: ConnInfo = "host=localhost dbname=app".parse().unwrap();
//! assert_eq!(info.get("dbname"), Some("app"));
//! ```

pub use pgwarden_core as core;
