//! [`GcpStore`]: GCP Secret Manager (feature `gcp`).
//!
//! Built on the official `google-cloud-secretmanager-v1` client, which talks REST
//! over reqwest with rustls and authenticates with Application Default Credentials
//! (`$GOOGLE_APPLICATION_CREDENTIALS`, the gcloud user credentials, or the metadata
//! server on GCE, GKE and Cloud Run).
//!
//! **TLS:** its `default-rustls-provider` feature is kept on. It does not install a
//! process-wide provider: the client uses the host's process default provider when
//! one is installed, and aws-lc-rs, passed explicitly, when none is. Turning it off
//! would make the client *require* a process default, so it stays on.
//!
//! The `[secret]` settings of backend `gcp` are read and checked here whether or not
//! the feature is compiled in.

#[cfg(feature = "gcp")]
use std::sync::Arc;

#[cfg(feature = "gcp")]
use crate::DynSecretStore;
use crate::{Error, SecretKey};

#[cfg(feature = "gcp")]
mod store;

#[cfg(feature = "gcp")]
pub use store::*;

/// The `[secret]` settings of backend `gcp`.
#[derive(eserde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(
    not(feature = "gcp"),
    allow(dead_code, reason = "the store, which the feature builds, reads them")
)]
pub(crate) struct Settings {
    /// Project id.
    project: String,
    /// Secret name: the key.
    secret: String,
    /// The version read.
    #[serde(default = "default_version")]
    version: String,
}

fn default_version() -> String {
    "latest".to_owned()
}

impl crate::factory::Settings for Settings {
    const BACKEND: &'static str = "gcp";

    fn key(&self) -> Result<SecretKey, Error> {
        Ok(SecretKey::new(self.secret.as_str()))
    }

    #[cfg(feature = "gcp")]
    async fn open(&self) -> Result<Arc<DynSecretStore>, Error> {
        let store = GcpStore::from_env(&self.project, &self.version).await?;
        Ok(Arc::new(store))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::factory::Settings as _;

    #[test]
    fn version_defaults_to_latest_and_the_secret_is_the_key() {
        let s: Settings =
            serde_json::from_value(serde_json::json!({"project": "p", "secret": "pg"})).unwrap();
        assert_eq!((s.project.as_str(), s.version.as_str()), ("p", "latest"));
        assert_eq!(s.key().unwrap(), SecretKey::new("pg"));
    }
}
