//! [`VaultStore`]: HashiCorp Vault and OpenBao, KV version 2 (feature `vault`).
//!
//! The `[secret]` settings of backend `vault` are read and checked here whether or not
//! the feature is compiled in.

#[cfg(feature = "vault")]
use std::sync::Arc;

#[cfg(feature = "vault")]
use crate::DynSecretStore;
use crate::{Error, SecretKey};

#[cfg(feature = "vault")]
mod store;

#[cfg(feature = "vault")]
pub use store::*;

/// The `[secret]` settings of backend `vault`.
#[derive(eserde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(
    not(feature = "vault"),
    allow(dead_code, reason = "the store, which the feature builds, reads them")
)]
pub(crate) struct Settings {
    /// Server address; `None` means `$VAULT_ADDR`.
    #[serde(default)]
    #[eserde(compat)]
    address: Option<Address>,
    /// The KV v2 mount.
    #[serde(default = "default_mount")]
    mount: String,
    /// The secret's path under the mount: the key.
    path: String,
    /// Vault Enterprise / OpenBao namespace.
    #[serde(default)]
    namespace: Option<String>,
}

/// A server address, which names its scheme.
#[derive(serde::Deserialize)]
#[serde(try_from = "String")]
#[cfg_attr(
    not(feature = "vault"),
    allow(dead_code, reason = "the store, which the feature builds, reads it")
)]
struct Address(String);

impl TryFrom<String> for Address {
    type Error = String;

    fn try_from(address: String) -> Result<Self, String> {
        if address.starts_with("http://") || address.starts_with("https://") {
            Ok(Address(address))
        } else {
            Err(format!("\"{address}\" must start with http:// or https://"))
        }
    }
}

fn default_mount() -> String {
    "secret".to_owned()
}

impl crate::factory::Settings for Settings {
    const BACKEND: &'static str = "vault";

    fn key(&self) -> Result<SecretKey, Error> {
        Ok(SecretKey::new(self.path.as_str()))
    }

    #[cfg(feature = "vault")]
    async fn open(&self) -> Result<Arc<DynSecretStore>, Error> {
        let store = VaultStore::from_env(
            self.address.as_ref().map(|a| a.0.as_str()),
            &self.mount,
            self.namespace.as_deref(),
        )
        .await?;
        Ok(Arc::new(store))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::factory::Settings as _;

    #[test]
    fn mount_defaults_to_secret_and_the_path_is_the_key() {
        let s: Settings = serde_json::from_value(serde_json::json!({"path": "pg/orders"})).unwrap();
        assert_eq!(s.mount, "secret");
        assert!(s.address.is_none() && s.namespace.is_none());
        assert_eq!(s.key().unwrap(), SecretKey::new("pg/orders"));
    }
}
