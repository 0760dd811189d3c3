//! From the integration's `[secret]` section to a store and a key.

use std::sync::Arc;

use pgwarden_core::config::SecretRef;

use crate::{
    DynSecretStore, EnvStore, Error, FileStore, RetryConfig, RetryStore, SecretKey, TimeoutConfig,
    TimeoutStore,
};

/// The store and key the `[secret]` section names, with the default [`RetryConfig`] and
/// [`TimeoutConfig`]: each call to the store bounded (10 s), a call that times out or
/// finds the store unreachable retried with jittered backoff, and the whole call bounded
/// (60 s); see [`from_config_layered`]. Backend clients are set up here (Vault's
/// `AppRole` login included), so a bad address or missing token is reported now.
pub async fn from_config(secret: &SecretRef) -> Result<(Arc<DynSecretStore>, SecretKey), Error> {
    from_config_layered(
        secret,
        Some(RetryConfig::default()),
        Some(TimeoutConfig::default()),
    )
    .await
}

/// [`from_config`] with a chosen retry policy (`None`: no retries) and the default
/// [`TimeoutConfig`].
pub async fn from_config_with(
    secret: &SecretRef,
    retry: Option<RetryConfig>,
) -> Result<(Arc<DynSecretStore>, SecretKey), Error> {
    from_config_layered(secret, retry, Some(TimeoutConfig::default())).await
}

/// [`from_config`] with a chosen retry policy and time limits (`None`: no retries, no
/// limits beyond the backend client's own). The layers, from the outside in:
///
/// 1. [`TimeoutStore::total`] with [`TimeoutConfig::total`], around
/// 2. [`RetryStore`], which retries transient errors (timeouts included), around
/// 3. [`TimeoutStore::new`] with [`TimeoutConfig::per_call`], around the store.
///
/// Without a total limit, a call still ends within about
/// `max_attempts × (per_call + max_backoff)`.
pub async fn from_config_layered(
    secret: &SecretRef,
    retry: Option<RetryConfig>,
    timeout: Option<TimeoutConfig>,
) -> Result<(Arc<DynSecretStore>, SecretKey), Error> {
    let (store, key) = build(secret).await?;
    Ok((layer(store, retry, timeout), key))
}

/// Wraps `store` in the layers [`from_config_layered`] describes.
fn layer(
    store: Arc<DynSecretStore>,
    retry: Option<RetryConfig>,
    timeout: Option<TimeoutConfig>,
) -> Arc<DynSecretStore> {
    let store = match timeout {
        Some(limits) => Arc::new(TimeoutStore::new(store, limits.per_call)) as Arc<DynSecretStore>,
        None => store,
    };
    let store = match retry {
        Some(config) => Arc::new(RetryStore::new(store, config)) as Arc<DynSecretStore>,
        None => store,
    };
    match timeout.and_then(|limits| limits.total) {
        Some(total) => Arc::new(TimeoutStore::total(store, total)),
        None => store,
    }
}

/// The key of the credentials a `[secret]` section names, without opening the store
/// (for a host that builds the store itself and hands it to the runtime).
pub fn key_for(secret: &SecretRef) -> Result<SecretKey, Error> {
    Ok(match secret {
        SecretRef::Vault { path, .. } => SecretKey::new(path.as_str()),
        SecretRef::Aws { secret_id, .. } => SecretKey::new(secret_id.as_str()),
        SecretRef::Gcp { secret, .. } => SecretKey::new(secret.as_str()),
        SecretRef::Azure { name, .. } | SecretRef::Kubernetes { name, .. } => {
            SecretKey::new(name.as_str())
        }
        SecretRef::Env {
            username_var,
            password_var,
        } => EnvStore::pair_key(username_var, password_var),
        SecretRef::File { path } => FileStore::for_file(path)?.1,
        other => {
            let backend = other.backend().as_str();
            return Err(Error::FeatureDisabled {
                backend,
                feature: backend,
            });
        }
    })
}

#[allow(
    clippy::unused_async,
    reason = "async when the vault, aws, gcp or kubernetes feature is on"
)]
async fn build(secret: &SecretRef) -> Result<(Arc<DynSecretStore>, SecretKey), Error> {
    let key = key_for(secret)?;
    let store: Arc<DynSecretStore> = match secret {
        SecretRef::Env { .. } => Arc::new(EnvStore::from_process()),
        SecretRef::File { path } => Arc::new(FileStore::for_file(path)?.0),
        #[cfg(feature = "vault")]
        SecretRef::Vault {
            address,
            mount,
            namespace,
            ..
        } => {
            let store =
                crate::vault::VaultStore::from_env(address.as_deref(), mount, namespace.as_deref())
                    .await?;
            Arc::new(store)
        }
        #[cfg(feature = "aws")]
        SecretRef::Aws {
            region, endpoint, ..
        } => {
            let store =
                crate::aws::AwsStore::from_env(region.as_deref(), endpoint.as_deref()).await;
            Arc::new(store)
        }
        #[cfg(feature = "gcp")]
        SecretRef::Gcp {
            project, version, ..
        } => {
            let store = crate::gcp::GcpStore::from_env(project, version).await?;
            Arc::new(store)
        }
        #[cfg(feature = "azure")]
        SecretRef::Azure { vault_url, .. } => {
            let store = crate::azure::AzureStore::from_env(vault_url)?;
            Arc::new(store)
        }
        #[cfg(feature = "kubernetes")]
        SecretRef::Kubernetes { namespace, .. } => {
            let store = crate::kubernetes::KubernetesStore::from_env(namespace).await?;
            Arc::new(store)
        }
        other => {
            let backend = other.backend().as_str();
            return Err(Error::FeatureDisabled {
                backend,
                feature: backend,
            });
        }
    };
    Ok((store, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GetOptions, SecretStoreExt};
    use pgwarden_core::config::{ConfigFormat, IntegrationConfig};
    use secrecy::ExposeSecret;

    fn secret_section(section: &str) -> SecretRef {
        let text = format!("name = \"x\"\nhostname = \"db\"\n[secret]\n{section}\n");
        IntegrationConfig::parse(&text, ConfigFormat::Toml)
            .unwrap()
            .secret
            .unwrap()
    }

    #[tokio::test]
    async fn file_section_reads_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(&path, r#"{"username":"u","password":"p"}"#).unwrap();
        let section = secret_section(&format!(
            "backend = \"file\"\npath = \"{}\"",
            path.display()
        ));
        let (store, key) = from_config(&section).await.unwrap();
        let c = store.get_credentials(&key).await.unwrap();
        assert_eq!(c.credentials.username, "u");
        assert_eq!(c.credentials.password.expose_secret(), "p");
        assert!(
            store
                .get(&SecretKey::new("nope"), GetOptions::default())
                .await
                .unwrap_err()
                .is_not_found()
        );
    }

    #[tokio::test]
    async fn stores_are_bounded_per_call_inside_retries_and_in_all() {
        let section = secret_section(
            "backend = \"env\"\nusername_var = \"PGW_TEST_NO_SUCH_USER\"\npassword_var = \"PGW_TEST_NO_SUCH_PASSWORD\"",
        );
        let (store, _) = from_config(&section).await.unwrap();
        let layers = format!("{store:?}");
        assert!(
            layers.starts_with(
                "TimeoutStore { inner: RetryStore { inner: TimeoutStore { inner: EnvStore"
            ),
            "{layers}"
        );
        assert!(layers.contains("limit: 60s, scope: Total"), "{layers}");
        assert!(layers.contains("limit: 10s, scope: PerCall"), "{layers}");
        let (store, _) = from_config_layered(&section, None, None).await.unwrap();
        assert!(format!("{store:?}").starts_with("EnvStore"), "{store:?}");
        let limits = TimeoutConfig::new(std::time::Duration::from_secs(3), None);
        let (store, _) = from_config_layered(&section, None, Some(limits))
            .await
            .unwrap();
        let layers = format!("{store:?}");
        assert!(
            layers.starts_with("TimeoutStore { inner: EnvStore") && layers.contains("limit: 3s"),
            "{layers}"
        );
    }

    #[tokio::test]
    async fn env_section_names_both_variables() {
        let section = secret_section(
            "backend = \"env\"\nusername_var = \"PGW_TEST_NO_SUCH_USER\"\npassword_var = \"PGW_TEST_NO_SUCH_PASSWORD\"",
        );
        let (store, key) = from_config(&section).await.unwrap();
        assert_eq!(
            key.as_str(),
            "PGW_TEST_NO_SUCH_USER,PGW_TEST_NO_SUCH_PASSWORD"
        );
        let e = store.get_credentials(&key).await.unwrap_err();
        assert!(e.is_not_found());
        assert!(e.to_string().contains("$PGW_TEST_NO_SUCH_USER"), "{e}");
    }

    #[tokio::test]
    async fn backends_not_compiled_in_name_their_feature() {
        let mut sections = vec![];
        if cfg!(not(feature = "vault")) {
            sections.push("backend = \"vault\"\npath = \"p\"");
        }
        if cfg!(not(feature = "aws")) {
            sections.push("backend = \"aws\"\nsecret_id = \"s\"");
        }
        if cfg!(not(feature = "gcp")) {
            sections.push("backend = \"gcp\"\nproject = \"p\"\nsecret = \"s\"");
        }
        if cfg!(not(feature = "azure")) {
            sections.push(
                "backend = \"azure\"\nvault_url = \"https://v.vault.azure.net\"\nname = \"n\"",
            );
        }
        if cfg!(not(feature = "kubernetes")) {
            sections.push("backend = \"kubernetes\"\nnamespace = \"ns\"\nname = \"n\"");
        }
        for section in sections {
            let section = secret_section(section);
            let backend = section.backend().as_str();
            let e = from_config(&section).await.unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "secret backend {backend} is not compiled into this build: enable the cargo feature \"{backend}\" of pgwarden-secrets"
                )
            );
        }
    }
}
