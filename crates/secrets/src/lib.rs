//! pgwarden-secrets: where the connector's credentials live.
//!
//! pgwarden never keeps the connector's password in its own config: the integration's
//! `[secret]` section says which store holds it, and this crate reads and writes it
//! there. The model is `object_store`: one small object-safe trait, [`SecretStore`]
//! (`get`, `put`, `delete`, `promote`, `capabilities`), held as
//! `Arc<`[`DynSecretStore`]`>`; options structs with `Default` so fields can be added;
//! conveniences in an extension trait ([`SecretStoreExt`]); one `#[non_exhaustive]`
//! [`Error`] whose variants name the backend and key; layers that wrap any store
//! ([`CachingStore`], [`RetryStore`], [`TimeoutStore`]); and backends behind cargo
//! features.
//!
//! **The key decision: a value is a whole document, and secrets never show.** Values
//! travel as [`secrecy::SecretString`] (zeroized on drop, redacted in `Debug`); no
//! error, log line or `Display` of this crate contains one. For pgwarden the document
//! is the credentials JSON `{"username": .., "password": ..}`; other fields are kept on
//! every write ([`SecretStoreExt::put_credentials`]).
//!
//! | store | feature | writes | compare-and-set | stages |
//! |---|---|---|---|---|
//! | [`InMemory`] (scriptable failures) | always | yes | yes | optional |
//! | [`EnvStore`] | always | no | – | – |
//! | [`FileStore`] (JSON, atomic rename, 0600) | always | yes | yes (in-process) | no |
//! | `VaultStore`: HashiCorp Vault / OpenBao KV v2 | `vault` | yes | yes (KV v2 `cas`) | no |
//! | `AwsStore`: AWS Secrets Manager | `aws` | yes | no | yes (`AWSPENDING`) |
//! | `GcpStore`: GCP Secret Manager | `gcp` | yes (new version) | no (create only) | no |
//! | `AzureStore`: Azure Key Vault | `azure` | yes (new version) | no | no |
//! | `KubernetesStore`: a Secret in a namespace | `kubernetes` | yes | yes (`resourceVersion`) | no |
//!
//! [`from_config`] turns the `[secret]` section into a store and a key; a backend that
//! is not compiled in is [`Error::FeatureDisabled`], naming the feature to enable.
//! [`validate`] lists every problem of a `[secret]` section (for every backend, compiled
//! in or not) so a config loader reports them with the config's others; each backend
//! declares and checks its own settings.
//!
//! # No call waits for ever
//!
//! A store that accepts the connection and never answers must not hang the expiry or
//! rotation of access. [`from_config`] therefore wraps every store as
//! `TimeoutStore::total(RetryStore::new(TimeoutStore::new(store, 10 s), retry), 60 s)`:
//! each call to the store is bounded ([`TimeoutConfig::per_call`], default 10 s); one that
//! runs out is [`Error::Unreachable`], transient, so it is retried with jittered backoff up
//! to [`RetryConfig::max_attempts`] times; and the whole retried call is bounded too
//! ([`TimeoutConfig::total`], default 60 s). [`from_config_layered`] chooses both policies.
//!
//! # Credentials for the stores themselves
//!
//! - Vault/OpenBao: `$VAULT_TOKEN`, or `AppRole` through `$VAULT_ROLE_ID` and
//!   `$VAULT_SECRET_ID` (mount `approle`, or `$VAULT_APPROLE_MOUNT`). The address is
//!   the section's `address`, else `$VAULT_ADDR`. `$VAULT_CACERT`, `$VAULT_CAPATH`,
//!   `$VAULT_SKIP_VERIFY`, `$VAULT_CLIENT_CERT`/`$VAULT_CLIENT_KEY` work as in the
//!   `vault` CLI. TLS is rustls with aws-lc-rs, configured by the client itself (it
//!   does not rely on a process-default provider).
//! - AWS: the SDK's default chain (environment, profile, web identity, IMDS); the
//!   section's `region` and `endpoint` override.
//! - GCP: Application Default Credentials (`$GOOGLE_APPLICATION_CREDENTIALS`,
//!   `gcloud auth application-default login`, or the metadata server). The section's
//!   `version` (default `latest`) is the version read.
//! - Azure: `$PGWARDEN_AZURE_CREDENTIAL` = `auto` (default: service principal from
//!   `$AZURE_TENANT_ID`/`$AZURE_CLIENT_ID`/`$AZURE_CLIENT_SECRET`, then workload
//!   identity, managed identity, Azure CLI / Azure Developer CLI), `developer`,
//!   `managed-identity`, `workload-identity` or `client-secret`.
//! - Kubernetes: `$KUBECONFIG` or `~/.kube/config` (current context), else the
//!   in-cluster service account. The library enables no `k8s-openapi` version
//!   feature: the application does (e.g. `features = ["v1_32"]`); building this
//!   crate alone with `kubernetes` (`cargo check`, `cargo doc`) needs
//!   `K8S_OPENAPI_ENABLED_VERSION=1.36`. `kube`'s rustls config comes from the
//!   process default provider: a host that compiles in both aws-lc-rs and ring
//!   must install one first.
//!
//! TLS never depends on this crate installing a process-wide rustls provider: none
//! of its code does. Vault, AWS, GCP and Azure pass aws-lc-rs explicitly unless the
//! host installed a process default, which GCP and Azure then use.
//!
//! # Tests against real services
//!
//! `tests/{gcp,azure,kubernetes}.rs` run the conformance suite against a real
//! service when these are set, and print why they skip otherwise:
//!
//! - `PGWARDEN_TEST_GCP_PROJECT`: a project where Application Default Credentials
//!   may create and delete secrets (`roles/secretmanager.admin`).
//! - `PGWARDEN_TEST_AZURE_VAULT_URL`: a vault where the credential may get, set and
//!   delete secrets (deleted test secrets stay soft-deleted until purged).
//! - `PGWARDEN_TEST_K8S_NAMESPACE`: a namespace of the kubeconfig's current context
//!   where the identity may get, create, update and delete Secrets.
//!
//! # Rotation protocol
//!
//! Rotating the connector's password must never lock it out. With the store read as
//! `current = store.get_credentials(&key)`:
//!
//! 1. `staged = store.stage_password(&key, &current, &new_password)` records the new
//!    password as *pending*; the old one stays current and keeps working.
//! 2. `ALTER ROLE .. PASSWORD '<verifier of new_password>'`, then log in with it.
//! 3. `store.promote_password(&key, &staged)` makes it current.
//!
//! How "pending" is stored depends on [`Capabilities::stages`]:
//! - With stages (AWS): step 1 writes a full document with the new password as a
//!   pending version (`AWSPENDING`); step 3 moves `AWSCURRENT` to it and removes
//!   `AWSPENDING`.
//! - Without (Vault, file, memory): step 1 writes the document with an extra field
//!   `pending_password`, conditional on `current.version` when the store can
//!   compare-and-set; step 3 re-reads, checks the version is still `staged`, and
//!   writes `password = pending_password` without the field, again conditionally.
//!
//! After a crash, [`SecretStoreExt::pending_password`] returns the staged password if
//! any. Recovery: if logging in with the current password fails and with the pending
//! one succeeds, the `ALTER ROLE` happened: promote. Otherwise the pending password is
//! stale and harmless; the next rotation replaces it. A [`Error::Conflict`] at any
//! step means another replica is rotating: re-read and start over (the facade should
//! hold a PostgreSQL advisory lock around a rotation anyway, since AWS cannot
//! compare-and-set).
//!
//! ```
//! use pgwarden_core::credentials::Credentials;
//! use pgwarden_secrets::{InMemory, PutOptions, SecretKey, SecretStoreExt};
//! use secrecy::{ExposeSecret, SecretString};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = InMemory::new();
//! let key = SecretKey::new("pg/orders");
//! store.put_credentials(&key, &Credentials::new("connector", "old"), PutOptions::create()).await?;
//!
//! let current = store.get_credentials(&key).await?;
//! let staged = store.stage_password(&key, &current, &SecretString::from("new")).await?;
//! // ... ALTER ROLE, verify a login with "new" ...
//! store.promote_password(&key, &staged).await?;
//!
//! let now = store.get_credentials(&key).await?;
//! assert_eq!(now.credentials.password.expose_secret(), "new");
//! assert!(store.pending_password(&key).await?.is_none());
//! # Ok::<(), pgwarden_secrets::Error>(()) }).unwrap();
//! ```

#![forbid(unsafe_code)]

pub mod credentials;
mod env;
mod error;
mod factory;
mod file;
#[cfg(any(
    feature = "vault",
    feature = "aws",
    feature = "gcp",
    feature = "azure",
    feature = "kubernetes"
))]
mod http;
mod layers;
mod memory;
mod store;

// A backend's settings are read and checked without its feature; its store, and so
// its public module, needs the feature.
#[cfg(feature = "aws")]
pub mod aws;
#[cfg(not(feature = "aws"))]
mod aws;
#[cfg(feature = "azure")]
pub mod azure;
#[cfg(not(feature = "azure"))]
mod azure;
#[cfg(feature = "gcp")]
pub mod gcp;
#[cfg(not(feature = "gcp"))]
mod gcp;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
#[cfg(not(feature = "kubernetes"))]
mod kubernetes;
#[cfg(feature = "vault")]
pub mod vault;
#[cfg(not(feature = "vault"))]
mod vault;

pub use pgwarden_core as core;

pub use credentials::{PendingPassword, SecretDocument, SecretStoreExt, StoredCredentials};
pub use env::EnvStore;
pub use error::{Error, Operation};
pub use factory::{
    backends, from_config, from_config_layered, from_config_with, key_for, validate,
};
pub use file::FileStore;
pub use layers::{
    CachingStore, DEFAULT_PER_CALL_TIMEOUT, DEFAULT_TOTAL_TIMEOUT, RetryConfig, RetryStore,
    TimeoutConfig, TimeoutStore,
};
pub use memory::{FailureTiming, InMemory};
pub use store::{
    Capabilities, DynSecretStore, GetOptions, PutMode, PutOptions, SecretKey, SecretStore,
    SecretValue, Stage, Version,
};
