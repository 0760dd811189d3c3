//! [`AzureStore`]: Azure Key Vault secrets (feature `azure`).
//!
//! Built on the official `azure_security_keyvault_secrets` and `azure_identity`
//! crates. Their HTTP client is reqwest with rustls: it uses the host's process
//! default provider when one is installed, and aws-lc-rs, passed explicitly, when
//! none is; nothing here installs a process-wide provider.
//!
//! `azure_identity` 1.x has no `DefaultAzureCredential`; [`AzureCredential::Auto`]
//! is this crate's chain in the same order: service principal from the environment,
//! workload identity, managed identity, developer tools (Azure CLI, Azure Developer
//! CLI). `$PGWARDEN_AZURE_CREDENTIAL` pins one (see [`AzureCredential::from_env`]).
//!
//! The `[secret]` settings of backend `azure` are read and checked here whether or not
//! the feature is compiled in.

#[cfg(feature = "azure")]
use std::sync::Arc;

#[cfg(feature = "azure")]
use crate::DynSecretStore;
use crate::{Error, SecretKey};

#[cfg(feature = "azure")]
mod store;

#[cfg(feature = "azure")]
pub use store::*;

/// The `[secret]` settings of backend `azure`.
#[derive(eserde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(
    not(feature = "azure"),
    allow(dead_code, reason = "the store, which the feature builds, reads them")
)]
pub(crate) struct Settings {
    /// Vault URL, `https://<name>.vault.azure.net`.
    #[eserde(compat)]
    vault_url: VaultUrl,
    /// Secret name: the key.
    name: String,
}

/// A vault URL: Key Vault is reached over HTTPS only.
#[derive(serde::Deserialize)]
#[serde(try_from = "String")]
#[cfg_attr(
    not(feature = "azure"),
    allow(dead_code, reason = "the store, which the feature builds, reads it")
)]
struct VaultUrl(String);

impl TryFrom<String> for VaultUrl {
    type Error = String;

    fn try_from(url: String) -> Result<Self, String> {
        if url.starts_with("https://") {
            Ok(VaultUrl(url))
        } else {
            Err(format!("\"{url}\" must start with https://"))
        }
    }
}

impl crate::factory::Settings for Settings {
    const BACKEND: &'static str = "azure";

    fn key(&self) -> Result<SecretKey, Error> {
        Ok(SecretKey::new(self.name.as_str()))
    }

    #[cfg(feature = "azure")]
    async fn open(&self) -> Result<Arc<DynSecretStore>, Error> {
        Ok(Arc::new(AzureStore::from_env(&self.vault_url.0)?))
    }
}
