//! [`Integration::from_config`]: from a config file (or a config) to a connected
//! integration, the `[secret]` store opened from the config itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgwarden_core::config::IntegrationConfig;

use crate::error::IntegrationError;
use crate::integration::{Integration, IntegrationOptions};

/// Where [`Integration::from_config`] takes its config from: a file (`.toml`,
/// `.yaml`/`.yml` or `.json`), or a config already loaded.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A config file, read and validated by [`crate::load_config`].
    Path(PathBuf),
    /// A config already loaded and validated.
    Config(Box<IntegrationConfig>),
}

impl From<&Path> for ConfigSource {
    fn from(p: &Path) -> Self {
        ConfigSource::Path(p.to_owned())
    }
}

impl From<PathBuf> for ConfigSource {
    fn from(p: PathBuf) -> Self {
        ConfigSource::Path(p)
    }
}

impl From<&PathBuf> for ConfigSource {
    fn from(p: &PathBuf) -> Self {
        ConfigSource::Path(p.clone())
    }
}

/// A path, never config text.
impl From<&str> for ConfigSource {
    fn from(p: &str) -> Self {
        ConfigSource::Path(PathBuf::from(p))
    }
}

/// A path, never config text.
impl From<String> for ConfigSource {
    fn from(p: String) -> Self {
        ConfigSource::Path(PathBuf::from(p))
    }
}

impl From<IntegrationConfig> for ConfigSource {
    fn from(c: IntegrationConfig) -> Self {
        ConfigSource::Config(Box::new(c))
    }
}

impl Integration {
    /// Loads the config (when given a path), opens the secret store its `[secret]`
    /// section names (with the default retry and time limits), and connects as
    /// [`Integration::connect`] does; the key of the connector's credentials comes
    /// from `[secret]` unless `options.secret_key` is set.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), pgwarden::IntegrationError> {
    /// let integration =
    ///     pgwarden::Integration::from_config("integration.toml", Default::default()).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// A config without `[secret]` is refused with a message saying to add one; a
    /// host with a store of its own (see the `custom_secret_store` example) calls
    /// [`Integration::connect`] instead.
    pub async fn from_config(
        source: impl Into<ConfigSource>,
        options: IntegrationOptions,
    ) -> Result<Arc<Self>, IntegrationError> {
        let config = match source.into() {
            ConfigSource::Path(p) => crate::load_config(&p)?,
            ConfigSource::Config(c) => *c,
        };
        let Some(secret) = config.secret.as_ref() else {
            return Err(IntegrationError::Config(format!(
                "integration {} has no [secret] section: add one naming where the connector's credentials are kept, or open the store yourself and call Integration::connect",
                config.name
            )));
        };
        let (store, key) = pgwarden_secrets::from_config(secret).await?;
        let options = IntegrationOptions {
            secret_key: Some(options.secret_key.clone().unwrap_or(key)),
            ..options
        };
        Integration::connect(config, store, options).await
    }
}
