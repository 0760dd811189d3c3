//! The integration config: every setting of one PostgreSQL integration.
//!
//! A config is read from TOML, YAML or JSON ([`ConfigFormat::from_path`] picks by the
//! file extension) and validated in one pass that reports **every** problem at once,
//! each naming the field (`secret.path`, `integration_owners[1].attribute`) and what to
//! fix. Unknown fields are rejected by name, so a typo never silently falls back to a
//! default. The Terraform provider's names are accepted as aliases (`dbname`,
//! `sslmode`, `sslrootcert`, `credentials_rotation_period_in_days`).
//!
//! The `[secret]` section is a [`SecretRef`]: a `backend` name and that backend's
//! settings. This crate knows no backend; whoever does checks the section while the
//! config is validated ([`IntegrationConfig::parse_with`]), so its problems are listed
//! with the others (pgwarden-secrets' `validate` does it for its backends).
//!
//! ```
//! use pgwarden_core::config::{ConfigFormat, IntegrationConfig, UserMode};
//! let cfg = IntegrationConfig::parse(r#"
//!     name = "orders-prod"
//!     hostname = "db.internal"
//!     sslmode = "require"
//!     [secret]
//!     backend = "file"
//!     path = "/etc/pgwarden/orders.json"
//! "#, ConfigFormat::Toml).unwrap();
//! assert_eq!(cfg.port, 5432);
//! assert_eq!(cfg.user_mode, UserMode::Ephemeral);
//! assert_eq!(cfg.secret.unwrap().backend, "file");
//!
//! let err = IntegrationConfig::parse(r#"{"name": "x", "hostname": "h", "port": 0, "colour": 1}"#, ConfigFormat::Json).unwrap_err();
//! assert_eq!(err.problems().len(), 2); // port 0, unknown field colour
//! ```

mod conninfo;
mod enums;
mod secret;
mod validate;

use std::fmt;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::access_details::AccessDetailsTemplate;
use crate::duration::Ttl;
use crate::owners::{IntegrationOwner, ResourceOwnerSetting};
use crate::resource::ResourceType;
use crate::session::SessionLimits;
use crate::ssl::SslMode;

pub use conninfo::FromConnInfoError;
pub use enums::{ConnectorMode, ParseEnumError, UserMode};
pub use secret::SecretRef;

/// The longest integration name.
pub const MAX_NAME_CHARS: usize = 64;
/// The longest username prefix, in bytes: it leaves room in PostgreSQL's 63-byte role
/// names for the requester and a random suffix.
pub const MAX_USERNAME_PREFIX_BYTES: usize = 20;

/// Every setting of a PostgreSQL integration, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntegrationConfig {
    /// Unique, user-friendly name: ASCII letters, digits, `-`, `_`; 1..=64 chars.
    pub name: String,
    /// Host name or IP address of the instance.
    pub hostname: String,
    /// TCP port (default 5432).
    pub port: u16,
    /// The database the connector connects to first (default `postgres`).
    pub database: String,
    /// The effective SSL mode (default `prefer`; `verify-full` when `ssl_root_cert = "system"`).
    pub ssl_mode: SslMode,
    /// Trusted roots: a file path, inline PEM, or `system`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_root_cert: Option<String>,
    /// Client certificate (path or inline PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_cert: Option<String>,
    /// Client key (path or inline PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssl_key: Option<String>,
    /// Rotate the connector's password every this many days (1..=3650).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_rotation_days: Option<u32>,
    /// The note shown to users with their access, rendered per grant.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "template_source"
    )]
    pub custom_access_details: Option<AccessDetailsTemplate>,
    /// Resource types to discover (default: all).
    pub discovery: Vec<ResourceType>,
    /// Ephemeral or persistent login roles.
    pub user_mode: UserMode,
    /// Whether the connector is a superuser or a `CREATEROLE` role (default
    /// `superuser`; `createrole` on managed clouds).
    pub connector_mode: ConnectorMode,
    /// Prefix of generated login role names (default `pgw_`).
    pub username_prefix: String,
    /// The longest grant allowed (default 7d).
    pub max_ttl: Ttl,
    /// Roles whose membership may be granted although they reach something sensitive:
    /// a superuser, a role with CREATEROLE, REPLICATION or BYPASSRLS, a server
    /// program, file or all-data predefined role, or ADMIN OPTION on one of those
    /// (default: none; pgwarden refuses such grants and names the path). Grants of
    /// these roles are flagged in the audit trail. Roles reaching pgwarden's own roles
    /// stay refused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sensitive_roles_allowed: Vec<String>,
    /// Where the connector's credentials live; `None` when the host application hands
    /// the secret store and key to the runtime itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
    /// Fallback approvers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub integration_owners: Vec<IntegrationOwner>,
    /// Which tag names a resource's owners.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_owner: Option<ResourceOwnerSetting>,
    /// Session limits applied to the login role of every grant of the integration
    /// (the `[session]` table; default: none). An access flow's own limits are laid
    /// over these ([`SessionLimits::merged_over`]).
    #[serde(skip_serializing_if = "SessionLimits::is_empty")]
    pub session: SessionLimits,
    /// Where access requests are decided and kept (the `[access_requests]` table);
    /// `None` when the integration takes no requests through flows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_requests: Option<AccessRequestsSettings>,
}

/// The `[access_requests]` table: the access flows of an integration and where its
/// requests are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessRequestsSettings {
    /// A flow file or a directory of flow files (TOML, YAML, JSON). A relative path
    /// is relative to the config file's directory when the config is loaded from a
    /// file.
    pub flows: String,
    /// The database of the integration's instance that keeps the requests (schema
    /// `pgwarden_requests`); `None`: the integration's `database`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

#[allow(
    clippy::ref_option,
    reason = "serde's serialize_with passes &Option<T>"
)]
fn template_source<S: serde::Serializer>(
    t: &Option<AccessDetailsTemplate>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(t.source()),
        None => s.serialize_none(),
    }
}

/// The file formats a config can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    /// TOML (`.toml`).
    Toml,
    /// YAML (`.yaml`, `.yml`).
    Yaml,
    /// JSON (`.json`).
    Json,
}

impl ConfigFormat {
    /// Picks the format from a file's extension.
    pub fn from_path(path: &Path) -> Result<Self, ConfigError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("toml") => Ok(ConfigFormat::Toml),
            Some("yaml" | "yml") => Ok(ConfigFormat::Yaml),
            Some("json") => Ok(ConfigFormat::Json),
            _ => Err(ConfigError::UnknownFormat {
                path: path.display().to_string(),
            }),
        }
    }

    /// The text as a document of JSON values.
    pub(crate) fn read(self, text: &str) -> Result<Value, ConfigError> {
        match self {
            ConfigFormat::Toml => toml::from_str(text).map_err(|e| ConfigError::Syntax {
                format: "TOML",
                message: e.message().to_owned() + &span_note(text, e.span()),
            }),
            ConfigFormat::Yaml => serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Syntax {
                format: "YAML",
                message: e.to_string(),
            }),
            ConfigFormat::Json => serde_json::from_str(text).map_err(|e| ConfigError::Syntax {
                format: "JSON",
                message: e.to_string(),
            }),
        }
    }
}

fn span_note(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.map(|s| {
        let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
        format!(" (line {line})")
    })
    .unwrap_or_default()
}

/// One problem in a config: the field and what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted path of the field (`secret.path`, `integration_owners[0].values`), or
    /// empty for the document as a whole.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ConfigProblem {
    /// A problem of `field`.
    #[must_use]
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigProblem {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// A config could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file extension names no known format.
    #[error(
        "cannot tell the format of config file {path}: use a .toml, .yaml, .yml or .json extension"
    )]
    UnknownFormat {
        /// The path.
        path: String,
    },
    /// The text is not valid TOML/YAML/JSON.
    #[error("config is not valid {format}: {message}")]
    Syntax {
        /// The format that was expected.
        format: &'static str,
        /// The parser's message.
        message: String,
    },
    /// The document parsed but has problems; all of them are listed.
    #[error("invalid integration config ({} problem{}):\n{}", problems.len(), if problems.len() == 1 { "" } else { "s" }, problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// Every problem found.
        problems: Vec<ConfigProblem>,
    },
    /// A set of access flows parsed but has problems; all of them are listed.
    #[error("invalid access flows ({} problem{}):\n{}", problems.len(), if problems.len() == 1 { "" } else { "s" }, problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    InvalidFlows {
        /// Every problem found.
        problems: Vec<ConfigProblem>,
    },
}

impl ConfigError {
    /// The problems found (one for a syntax or format error).
    #[must_use]
    pub fn problems(&self) -> Vec<ConfigProblem> {
        match self {
            ConfigError::Invalid { problems } | ConfigError::InvalidFlows { problems } => {
                problems.clone()
            }
            other => vec![ConfigProblem::new("", other.to_string())],
        }
    }
}

impl IntegrationConfig {
    /// Parses and validates a config written in `format`. The `[secret]` section is
    /// only checked to name a backend: [`IntegrationConfig::parse_with`] checks its
    /// settings too.
    pub fn parse(text: &str, format: ConfigFormat) -> Result<Self, ConfigError> {
        Self::parse_with(text, format, SecretRef::require_backend)
    }

    /// Parses and validates a config written in `format`, with `check_secret` finding
    /// the problems of its `[secret]` section (an unknown backend, settings the backend
    /// refuses), which are reported with every other problem. pgwarden-secrets'
    /// `validate` is such a check.
    pub fn parse_with(
        text: &str,
        format: ConfigFormat,
        check_secret: impl FnOnce(&SecretRef) -> Vec<ConfigProblem>,
    ) -> Result<Self, ConfigError> {
        Self::from_value_with(&format.read(text)?, check_secret)
    }

    /// Validates an already-parsed document (any serde format turned into JSON values),
    /// as [`IntegrationConfig::parse`] does.
    pub fn from_value(value: &Value) -> Result<Self, ConfigError> {
        Self::from_value_with(value, SecretRef::require_backend)
    }

    /// Validates an already-parsed document, as [`IntegrationConfig::parse_with`] does.
    pub fn from_value_with(
        value: &Value,
        check_secret: impl FnOnce(&SecretRef) -> Vec<ConfigProblem>,
    ) -> Result<Self, ConfigError> {
        validate::integration(value, check_secret)
    }

    /// The config as TOML text, which [`IntegrationConfig::parse`] reads back to an
    /// equal config.
    #[must_use]
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}
