//! pgwarden: just-in-time access to PostgreSQL, as a library.
//!
//! A host application (an access portal, a chat bot, an internal platform) embeds
//! pgwarden to discover a PostgreSQL instance's databases, schemas, tables and roles;
//! grant a person exactly a chosen permission level for a limited time; revoke that
//! access completely when time is up; rotate credentials without locking anyone out;
//! and tell who must approve access to a resource.
//!
//! This facade re-exports the workspace's crates and adds what needs the file system:
//! [`load_config`] reads an integration config from a file.
//!
//! ```no_run
//! let config = pgwarden::load_config("examples/integration.toml")?;
//! println!("{} on {}:{}", config.name, config.hostname, config.port);
//! # Ok::<(), pgwarden::LoadConfigError>(())
//! ```

#![forbid(unsafe_code)]

use std::path::Path;

pub use pgwarden_core as core;
pub use pgwarden_pg_driver as pg_driver;
pub use pgwarden_core::config::IntegrationConfig;

/// A config file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but is not a valid config.
    #[error("{path}: {source}")]
    Invalid {
        /// The path.
        path: String,
        /// Every problem found.
        source: pgwarden_core::config::ConfigError,
    },
}

impl LoadConfigError {
    /// The config problems, when the file was read; empty for a read error.
    #[must_use]
    pub fn problems(&self) -> Vec<pgwarden_core::config::ConfigProblem> {
        match self {
            LoadConfigError::Read { .. } => Vec::new(),
            LoadConfigError::Invalid { source, .. } => source.problems(),
        }
    }
}

/// Reads and validates an integration config; the format follows the extension
/// (`.toml`, `.yaml`/`.yml`, `.json`).
pub fn load_config(path: impl AsRef<Path>) -> Result<IntegrationConfig, LoadConfigError> {
    use pgwarden_core::config::ConfigFormat;
    let path = path.as_ref();
    let shown = path.display().to_string();
    let invalid = |source| LoadConfigError::Invalid { path: shown.clone(), source };
    let format = ConfigFormat::from_path(path).map_err(invalid)?;
    let text = std::fs::read_to_string(path)
        .map_err(|source| LoadConfigError::Read { path: shown.clone(), source })?;
    IntegrationConfig::parse(&text, format).map_err(invalid)
}
