//! pgwarden-core: the model of pgwarden, with no I/O.
//!
//! Everything the other crates agree on lives here: the integration config
//! (loaded from TOML, YAML or JSON and validated all at once), libpq connection
//! strings and SSL modes with libpq's exact rules, resources and their permission
//! levels, and owner resolution (who approves access to a resource).
//!
//! Key decision: libpq is the authority for connection strings. [`conninfo::ConnInfo`]
//! accepts exactly what libpq's parser accepts and yields the same keywords and values,
//! because users paste strings that already work with `psql`.
//!
//! ```
//! use pgwarden_core::config::{ConfigFormat, IntegrationConfig};
//! use pgwarden_core::conninfo::ConnInfo;
//! use pgwarden_core::resource::{AccessEntry, PermissionLevel, ResourceId};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A config, validated all at once.
//! let config = IntegrationConfig::parse(
//!     "name = \"app\"\nhostname = \"db.internal\"\nmax_ttl = \"8h\"",
//!     ConfigFormat::Toml,
//! )?;
//! assert_eq!((config.port, config.database.as_str()), (5432, "postgres"));
//! let problems = IntegrationConfig::parse("name = \"\"\nport = 0", ConfigFormat::Toml)
//!     .unwrap_err()
//!     .problems();
//! assert!(problems.iter().any(|p| p.field == "hostname"), "{problems:?}");
//!
//! // A connection string, as libpq reads it.
//! let info: ConnInfo = "postgresql://alice@db:5433/app?sslmode=verify-full".parse()?;
//! assert_eq!((info.dbname(), info.get("sslmode")), (Some("app"), Some("verify-full")));
//!
//! // What a person asks for: a resource at a level valid for its type.
//! let entry = AccessEntry::new(ResourceId::schema("app", "public"), PermissionLevel::ReadOnly)?;
//! assert_eq!(entry.to_string(), "postgresql-schema:app/public=read-only");
//! assert!(AccessEntry::new(ResourceId::role("ops"), PermissionLevel::ReadOnly).is_err());
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

pub mod access_details;
pub mod config;
pub mod conninfo;
pub mod credentials;
pub mod duration;
pub mod flows;
pub mod naming;
pub mod owners;
pub mod requests;
pub mod resource;
pub mod session;
pub mod ssl;
pub mod tags;
