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

#![forbid(unsafe_code)]

pub mod access_details;
pub mod config;
pub mod conninfo;
pub mod credentials;
pub mod duration;
pub mod naming;
pub mod owners;
pub mod resource;
pub mod ssl;
pub mod tags;
