//! The `[secret]` section: which store holds the connector's credentials.

use serde::Serialize;
use serde_json::{Map, Value};

use super::ConfigProblem;

/// Where the connector's `{"username", "password"}` JSON lives: the `[secret]` section.
///
/// This crate knows only that the section names a `backend`; every other key is a
/// setting of that backend, kept as written. The backend reads and checks its settings
/// (pgwarden-secrets: `validate` while the config loads, `from_config` to open the
/// store), so adding a backend changes nothing here.
///
/// ```
/// use pgwarden_core::config::SecretRef;
/// let secret = SecretRef::new("vault").with("path", "pgwarden/orders");
/// assert_eq!(secret.backend(), "vault");
/// assert_eq!(secret.setting("path").and_then(|v| v.as_str()), Some("pgwarden/orders"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SecretRef {
    /// The backend's name (`vault`, `aws`, `file`, ...); empty when the section names
    /// none.
    pub backend: String,
    /// The section's other keys and their values, as written (`null` values are left
    /// out, as if absent).
    #[serde(flatten)]
    pub settings: Map<String, Value>,
}

impl SecretRef {
    /// A section naming `backend`, without settings.
    #[must_use]
    pub fn new(backend: impl Into<String>) -> Self {
        SecretRef {
            backend: backend.into(),
            settings: Map::new(),
        }
    }

    /// The same with `key` set to `value`.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.settings.insert(key.into(), value.into());
        self
    }

    /// The backend's name.
    #[must_use]
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// The setting `key`, if the section has it.
    #[must_use]
    pub fn setting(&self, key: &str) -> Option<&Value> {
        self.settings.get(key)
    }

    /// The check [`IntegrationConfig::parse`](super::IntegrationConfig::parse) makes
    /// without knowing the backends: the section names one.
    pub(super) fn require_backend(&self) -> Vec<ConfigProblem> {
        if self.backend.is_empty() {
            vec![ConfigProblem::new(
                "secret.backend",
                "is required: name the store that holds the connector's credentials",
            )]
        } else {
            Vec::new()
        }
    }
}
