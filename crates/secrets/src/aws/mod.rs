//! [`AwsStore`]: AWS Secrets Manager (feature `aws`).
//!
//! The SDK is built with `default-features = false` and only the default HTTPS client
//! and tokio: its TLS is rustls with aws-lc-rs, configured by the SDK's own HTTP
//! client (no process-default crypto provider is needed or installed).
//!
//! The `[secret]` settings of backend `aws` are read and checked here whether or not
//! the feature is compiled in.

#[cfg(feature = "aws")]
use std::sync::Arc;

#[cfg(feature = "aws")]
use crate::DynSecretStore;
use crate::{Error, SecretKey};

#[cfg(feature = "aws")]
mod store;

#[cfg(feature = "aws")]
pub use store::*;

/// The `[secret]` settings of backend `aws`.
#[derive(eserde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(
    not(feature = "aws"),
    allow(dead_code, reason = "the store, which the feature builds, reads them")
)]
pub(crate) struct Settings {
    /// Secret name or ARN: the key.
    secret_id: String,
    /// Region; `None` means the SDK's default chain.
    #[serde(default)]
    region: Option<String>,
    /// Endpoint override (e.g. a local emulator).
    #[serde(default)]
    endpoint: Option<String>,
}

impl crate::factory::Settings for Settings {
    const BACKEND: &'static str = "aws";

    fn key(&self) -> Result<SecretKey, Error> {
        Ok(SecretKey::new(self.secret_id.as_str()))
    }

    #[cfg(feature = "aws")]
    async fn open(&self) -> Result<Arc<DynSecretStore>, Error> {
        let store = AwsStore::from_env(self.region.as_deref(), self.endpoint.as_deref()).await;
        Ok(Arc::new(store))
    }
}
