//! pgwarden: just-in-time access to PostgreSQL, as a library.
//!
//! The facade re-exports the crates a host application needs. See the README for a map.

#![forbid(unsafe_code)]

pub use pgwarden_core as core;
