//! pgwarden-secrets: where the connector's credentials live.
//!
//! This crate will hold the object-safe `SecretStore` trait, its caching and retry
//! layers, and the in-memory, env, file, Vault/OpenBao, AWS, GCP, Azure and Kubernetes
//! backends. Today it only re-exports the model it builds on; the stores land with
//! their own issue.
//!
//! ```
//! use pgwarden_secrets::core::config::SecretBackend;
//! assert_eq!(SecretBackend::Vault.to_string(), "vault");
//! ```

pub use pgwarden_core as core;
