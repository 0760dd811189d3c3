//! [`KubernetesStore`]: a Secret in a Kubernetes namespace (feature `kubernetes`).
//!
//! Built on `kube` and `k8s-openapi`. This crate, a library, enables **no**
//! `k8s-openapi` Kubernetes version feature: the application picks one
//! (`k8s-openapi = { version = "0.28", features = ["v1_32"] }`, or `latest`), as
//! `k8s-openapi` requires. Commands that build this crate alone with the feature on
//! (`cargo check`/`cargo doc -p pgwarden-secrets --features kubernetes`) need
//! `K8S_OPENAPI_ENABLED_VERSION=1.36` in the environment instead; tests enable
//! `latest` through a dev-dependency.
//!
//! **TLS:** `kube` is built with `rustls-tls` and neither of its crypto-provider
//! features, because its `aws-lc-rs` feature installs a process-wide default
//! provider, which library code must not do. `kube` builds its rustls config from
//! the process default provider, so a host whose build compiles more than one rustls
//! provider (aws-lc-rs and ring) must install one before calling
//! [`KubernetesStore::from_env`], e.g.
//! `rustls::crypto::aws_lc_rs::default_provider().install_default()`. With exactly
//! one provider compiled in, rustls picks it by itself.
//!
//! The `[secret]` settings of backend `kubernetes` are read and checked here whether or not
//! the feature is compiled in.

#[cfg(feature = "kubernetes")]
use std::sync::Arc;

#[cfg(feature = "kubernetes")]
use crate::DynSecretStore;
use crate::{Error, SecretKey};

#[cfg(feature = "kubernetes")]
mod store;

#[cfg(feature = "kubernetes")]
pub use store::*;

/// The `[secret]` settings of backend `kubernetes`.
#[derive(eserde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(
    not(feature = "kubernetes"),
    allow(dead_code, reason = "the store, which the feature builds, reads them")
)]
pub(crate) struct Settings {
    /// Namespace.
    namespace: String,
    /// Secret name: the key.
    name: String,
}

impl crate::factory::Settings for Settings {
    const BACKEND: &'static str = "kubernetes";

    fn key(&self) -> Result<SecretKey, Error> {
        Ok(SecretKey::new(self.name.as_str()))
    }

    #[cfg(feature = "kubernetes")]
    async fn open(&self) -> Result<Arc<DynSecretStore>, Error> {
        Ok(Arc::new(KubernetesStore::from_env(&self.namespace).await?))
    }
}
