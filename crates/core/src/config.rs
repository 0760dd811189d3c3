//! The integration config: every setting of one PostgreSQL integration.
//!
//! A config is read from TOML, YAML or JSON ([`ConfigFormat::from_path`] picks by the
//! file extension) and validated in one pass that reports **every** problem at once,
//! each naming the field (`secret.path`, `integration_owners[1].attribute`) and what to
//! fix. Unknown fields are rejected by name, so a typo never silently falls back to a
//! default. The Terraform provider's names are accepted as aliases (`dbname`,
//! `sslmode`, `sslrootcert`, `credentials_rotation_period_in_days`).
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
//!
//! let err = IntegrationConfig::parse(r#"{"name": "x", "hostname": "h", "port": 0, "colour": 1}"#, ConfigFormat::Json).unwrap_err();
//! assert_eq!(err.problems().len(), 2); // port 0, unknown field colour
//! ```

use std::fmt;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::access_details::AccessDetailsTemplate;
use crate::duration::Ttl;
use crate::owners::{IntegrationOwner, OwnerAttribute, ResourceOwnerSetting};
use crate::resource::ResourceType;
use crate::ssl::{RootCertSource, SslMode, SslNegotiation, effective_ssl_mode};

/// The longest integration name.
pub const MAX_NAME_CHARS: usize = 64;
/// The longest username prefix, in bytes: it leaves room in PostgreSQL's 63-byte role
/// names for the requester and a random suffix.
pub const MAX_USERNAME_PREFIX_BYTES: usize = 20;

/// How login roles are created for grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UserMode {
    /// A fresh role per grant, dropped at revocation.
    #[default]
    Ephemeral,
    /// One role per requester, disabled and stripped of access between grants.
    Persistent,
}

/// What the connector role may do, and so how pgwarden provisions with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorMode {
    /// The connector is a superuser (self-hosted instances): every step of granting
    /// and revoking is available.
    #[default]
    Superuser,
    /// The connector has `CREATEROLE` but not `SUPERUSER` (managed clouds: RDS, Cloud
    /// SQL, Azure). pgwarden makes itself a member of the roles it creates (on
    /// PostgreSQL 16+ through `createrole_self_grant = 'set, inherit'`, which also
    /// leaves it ADMIN OPTION), grants only on objects whose owner it can act as, and
    /// refuses, with an error naming the objects and owners, what it cannot do.
    Createrole,
}

impl ConnectorMode {
    /// The name used in configuration files.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorMode::Superuser => "superuser",
            ConnectorMode::Createrole => "createrole",
        }
    }
}

impl std::fmt::Display for ConnectorMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ConnectorMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "superuser" => Ok(ConnectorMode::Superuser),
            "createrole" => Ok(ConnectorMode::Createrole),
            other => Err(format!(
                "\"{other}\" is not a connector mode (valid: superuser, createrole)"
            )),
        }
    }
}

/// The secret-store backends a `[secret]` section can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretBackend {
    /// HashiCorp Vault or OpenBao, KV v2.
    Vault,
    /// AWS Secrets Manager.
    Aws,
    /// GCP Secret Manager.
    Gcp,
    /// Azure Key Vault.
    Azure,
    /// A Kubernetes Secret.
    Kubernetes,
    /// Environment variables (read-only).
    Env,
    /// A JSON file.
    File,
}

impl SecretBackend {
    /// Every backend.
    pub const ALL: [SecretBackend; 7] = [
        SecretBackend::Vault,
        SecretBackend::Aws,
        SecretBackend::Gcp,
        SecretBackend::Azure,
        SecretBackend::Kubernetes,
        SecretBackend::Env,
        SecretBackend::File,
    ];

    /// The config spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            SecretBackend::Vault => "vault",
            SecretBackend::Aws => "aws",
            SecretBackend::Gcp => "gcp",
            SecretBackend::Azure => "azure",
            SecretBackend::Kubernetes => "kubernetes",
            SecretBackend::Env => "env",
            SecretBackend::File => "file",
        }
    }
}

impl fmt::Display for SecretBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the connector's `{"username", "password"}` JSON lives: the `[secret]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SecretRef {
    /// Vault/OpenBao KV v2. The token comes from `$VAULT_TOKEN` (or `AppRole`), never the config.
    Vault {
        /// Server address; `None` means `$VAULT_ADDR`.
        #[serde(skip_serializing_if = "Option::is_none")]
        address: Option<String>,
        /// KV v2 mount.
        mount: String,
        /// Secret path under the mount.
        path: String,
        /// Vault Enterprise / OpenBao namespace.
        #[serde(skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
    },
    /// AWS Secrets Manager.
    Aws {
        /// Secret name or ARN.
        secret_id: String,
        /// Region; `None` means the SDK's default chain.
        #[serde(skip_serializing_if = "Option::is_none")]
        region: Option<String>,
        /// Endpoint override (e.g. a local emulator).
        #[serde(skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
    },
    /// GCP Secret Manager.
    Gcp {
        /// Project id.
        project: String,
        /// Secret name.
        secret: String,
        /// Version, `latest` by default.
        version: String,
    },
    /// Azure Key Vault.
    Azure {
        /// Vault URL, `https://<name>.vault.azure.net`.
        vault_url: String,
        /// Secret name.
        name: String,
    },
    /// A Kubernetes Secret with keys `username` and `password`.
    Kubernetes {
        /// Namespace.
        namespace: String,
        /// Secret name.
        name: String,
    },
    /// Environment variables.
    Env {
        /// Variable holding the username.
        username_var: String,
        /// Variable holding the password.
        password_var: String,
    },
    /// A JSON file.
    File {
        /// File path.
        path: String,
    },
}

impl SecretRef {
    /// The backend this reference points into.
    #[must_use]
    pub fn backend(&self) -> SecretBackend {
        match self {
            SecretRef::Vault { .. } => SecretBackend::Vault,
            SecretRef::Aws { .. } => SecretBackend::Aws,
            SecretRef::Gcp { .. } => SecretBackend::Gcp,
            SecretRef::Azure { .. } => SecretBackend::Azure,
            SecretRef::Kubernetes { .. } => SecretBackend::Kubernetes,
            SecretRef::Env { .. } => SecretBackend::Env,
            SecretRef::File { .. } => SecretBackend::File,
        }
    }
}

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
}

impl ConfigError {
    /// The problems found (one for a syntax or format error).
    #[must_use]
    pub fn problems(&self) -> Vec<ConfigProblem> {
        match self {
            ConfigError::Invalid { problems } => problems.clone(),
            other => vec![ConfigProblem {
                field: String::new(),
                message: other.to_string(),
            }],
        }
    }
}

const TOP_FIELDS: &[&str] = &[
    "name",
    "hostname",
    "port",
    "database",
    "ssl_mode",
    "ssl_root_cert",
    "ssl_cert",
    "ssl_key",
    "credential_rotation_days",
    "custom_access_details",
    "discovery",
    "user_mode",
    "connector_mode",
    "username_prefix",
    "max_ttl",
    "sensitive_roles_allowed",
    "secret",
    "integration_owners",
    "resource_owner",
];

/// Terraform-style names accepted for our fields.
const ALIASES: &[(&str, &str)] = &[
    ("dbname", "database"),
    ("sslmode", "ssl_mode"),
    ("sslrootcert", "ssl_root_cert"),
    ("sslcert", "ssl_cert"),
    ("sslkey", "ssl_key"),
    (
        "credentials_rotation_period_in_days",
        "credential_rotation_days",
    ),
];

impl IntegrationConfig {
    /// Parses and validates a config written in `format`.
    pub fn parse(text: &str, format: ConfigFormat) -> Result<Self, ConfigError> {
        let value: Value = match format {
            ConfigFormat::Toml => toml::from_str(text).map_err(|e| ConfigError::Syntax {
                format: "TOML",
                message: e.message().to_owned() + &span_note(text, e.span()),
            })?,
            ConfigFormat::Yaml => {
                serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Syntax {
                    format: "YAML",
                    message: e.to_string(),
                })?
            }
            ConfigFormat::Json => serde_json::from_str(text).map_err(|e| ConfigError::Syntax {
                format: "JSON",
                message: e.to_string(),
            })?,
        };
        Self::from_value(&value)
    }

    /// Validates an already-parsed document (any serde format turned into JSON values).
    pub fn from_value(value: &Value) -> Result<Self, ConfigError> {
        let mut v = Validator::default();
        let cfg = v.integration(value);
        match cfg {
            Some(cfg) if v.problems.is_empty() => Ok(cfg),
            _ => Err(ConfigError::Invalid {
                problems: v.problems,
            }),
        }
    }

    /// The config as TOML text, which [`IntegrationConfig::parse`] reads back to an
    /// equal config.
    #[must_use]
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

fn span_note(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.map(|s| {
        let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
        format!(" (line {line})")
    })
    .unwrap_or_default()
}

#[derive(Default)]
struct Validator {
    problems: Vec<ConfigProblem>,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

impl Validator {
    fn problem(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// Collects a table's known fields (resolving aliases), reporting unknown and
    /// duplicated ones.
    fn fields<'a>(
        &mut self,
        prefix: &str,
        map: &'a Map<String, Value>,
        known: &[&str],
        aliases: &[(&str, &str)],
    ) -> Map<String, Value> {
        let mut out = Map::new();
        let mut seen_as: Vec<(String, &'a str)> = Vec::new();
        for (key, value) in map {
            let canonical = aliases
                .iter()
                .find(|(alias, _)| alias == key)
                .map_or(key.as_str(), |(_, canonical)| *canonical);
            let path = join_path(prefix, key);
            if !known.contains(&canonical) {
                self.problem(
                    &path,
                    format!("unknown field (valid fields: {})", known.join(", ")),
                );
                continue;
            }
            if let Some((_, first)) = seen_as.iter().find(|(c, _)| c == canonical) {
                self.problem(
                    &path,
                    format!("\"{key}\" and \"{first}\" both set {canonical}: keep one"),
                );
                continue;
            }
            seen_as.push((canonical.to_owned(), key.as_str()));
            out.insert(canonical.to_owned(), value.clone());
        }
        out
    }

    fn string(&mut self, path: &str, v: Option<&Value>, required: bool) -> Option<String> {
        match v {
            None | Some(Value::Null) => {
                if required {
                    self.problem(path, "is required");
                }
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.problem(path, "must not be empty");
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.problem(path, format!("must be a string, not {}", type_name(other)));
                None
            }
        }
    }

    fn integer(&mut self, path: &str, v: &Value, min: u64, max: u64) -> Option<u64> {
        let n = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(_) | None if matches!(v, Value::Number(_) | Value::String(_)) => {
                self.problem(
                    path,
                    format!("must be a whole number from {min} to {max}, got {v}"),
                );
                None
            }
            _ => {
                self.problem(
                    path,
                    format!("must be a whole number, not {}", type_name(v)),
                );
                None
            }
        }
    }

    fn parsed<T, E: fmt::Display>(
        &mut self,
        path: &str,
        v: Option<&Value>,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        let s = self.string(path, v, false)?;
        match parse(&s) {
            Ok(t) => Some(t),
            Err(e) => {
                self.problem(path, e.to_string());
                None
            }
        }
    }

    #[allow(
        clippy::too_many_lines,
        reason = "one flat pass over the fields reads best as a list"
    )]
    fn integration(&mut self, doc: &Value) -> Option<IntegrationConfig> {
        let Value::Object(map) = doc else {
            self.problem(
                "",
                format!(
                    "the config must be a table of settings, not {}",
                    type_name(doc)
                ),
            );
            return None;
        };
        let f = self.fields("", map, TOP_FIELDS, ALIASES);

        let name = self.string("name", f.get("name"), true);
        if let Some(n) = &name {
            let len = n.chars().count();
            if len > MAX_NAME_CHARS {
                self.problem(
                    "name",
                    format!("is {len} chars; at most {MAX_NAME_CHARS} are allowed"),
                );
            } else if let Some(bad) = n
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
            {
                self.problem(
                    "name",
                    format!("has '{bad}': use only letters, digits, '-' and '_'"),
                );
            }
        }

        let hostname = self.string("hostname", f.get("hostname"), true);
        if let Some(h) = &hostname
            && let Some(bad) = h
                .chars()
                .find(|c| c.is_whitespace() || matches!(c, ',' | '/' | '@' | '\'' | '"'))
        {
            self.problem(
                "hostname",
                format!(
                    "\"{h}\" has '{}': give one host name or IP address",
                    bad.escape_default()
                ),
            );
        }

        let port = match f.get("port") {
            None => Some(5432),
            Some(v) => self
                .integer("port", v, 1, 65535)
                .and_then(|p| u16::try_from(p).ok()),
        };
        let database = if f.contains_key("database") {
            self.string("database", f.get("database"), true)
        } else {
            Some("postgres".to_owned())
        };
        let explicit_mode = self.parsed("ssl_mode", f.get("ssl_mode"), str::parse::<SslMode>);
        let ssl_root_cert = self.string("ssl_root_cert", f.get("ssl_root_cert"), false);
        let ssl_cert = self.string("ssl_cert", f.get("ssl_cert"), false);
        let ssl_key = self.string("ssl_key", f.get("ssl_key"), false);
        match (&ssl_cert, &ssl_key) {
            (Some(_), None) => self.problem("ssl_key", "is required when ssl_cert is set"),
            (None, Some(_)) => self.problem("ssl_cert", "is required when ssl_key is set"),
            _ => {}
        }
        for (field, value) in [
            ("ssl_root_cert", &ssl_root_cert),
            ("ssl_cert", &ssl_cert),
            ("ssl_key", &ssl_key),
        ] {
            if let Some(v) = value
                && v.trim_start().starts_with("-----BEGIN")
                && !v.contains("-----END")
            {
                self.problem(
                    field,
                    "inline PEM has no -----END line: paste the whole block",
                );
            }
        }
        let ssl_mode = if f.get("ssl_mode").is_some() && explicit_mode.is_none() {
            None
        } else {
            let root = ssl_root_cert.as_deref().map(RootCertSource::parse);
            match effective_ssl_mode(
                explicit_mode,
                root.as_ref(),
                SslNegotiation::Postgres,
                false,
            ) {
                Ok(m) => Some(m),
                Err(e) => {
                    let field = if root.is_some() || explicit_mode.is_some() {
                        "ssl_mode"
                    } else {
                        "ssl_root_cert"
                    };
                    self.problem(field, e.to_string().replace("sslrootcert", "ssl_root_cert"));
                    None
                }
            }
        };

        let credential_rotation_days = match f.get("credential_rotation_days") {
            None | Some(Value::Null) => Some(None),
            Some(v) => self
                .integer("credential_rotation_days", v, 1, 3650)
                .map(|d| Some(u32::try_from(d).unwrap_or(3650))),
        };
        let custom_access_details = match f.get("custom_access_details") {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(s)) => match AccessDetailsTemplate::parse(s) {
                Ok(t) => Some(Some(t)),
                Err(e) => {
                    self.problem(
                        "custom_access_details",
                        e.to_string()
                            .trim_start_matches("custom_access_details ")
                            .to_owned(),
                    );
                    None
                }
            },
            Some(other) => {
                self.problem(
                    "custom_access_details",
                    format!("must be a string, not {}", type_name(other)),
                );
                None
            }
        };
        let discovery = match f.get("discovery") {
            None => Some(ResourceType::ALL.to_vec()),
            Some(v) => self.discovery(v),
        };
        let user_mode = match self
            .string("user_mode", f.get("user_mode"), false)
            .as_deref()
        {
            None if f.get("user_mode").is_some() => None,
            None | Some("ephemeral") => Some(UserMode::Ephemeral),
            Some("persistent") => Some(UserMode::Persistent),
            Some(other) => {
                self.problem(
                    "user_mode",
                    format!("\"{other}\" is not a user mode (valid: ephemeral, persistent)"),
                );
                None
            }
        };
        let connector_mode = match self
            .string("connector_mode", f.get("connector_mode"), false)
            .as_deref()
        {
            None if f.get("connector_mode").is_some() => None,
            None => Some(ConnectorMode::Superuser),
            Some(other) => match other.parse() {
                Ok(mode) => Some(mode),
                Err(message) => {
                    self.problem("connector_mode", message);
                    None
                }
            },
        };
        let username_prefix = match f.get("username_prefix") {
            None => Some("pgw_".to_owned()),
            Some(v) => self.username_prefix(v),
        };
        let max_ttl = match f.get("max_ttl") {
            None => Some(Ttl::from_secs(7 * 86_400).unwrap_or(crate::duration::MAX_TTL_CEILING)),
            Some(v) => self.parsed("max_ttl", Some(v), str::parse::<Ttl>),
        };
        let sensitive_roles_allowed = match f.get("sensitive_roles_allowed") {
            None | Some(Value::Null) => Some(Vec::new()),
            Some(v) => self.sensitive_roles_allowed(v),
        };
        let secret = match f.get("secret") {
            None | Some(Value::Null) => Some(None),
            Some(v) => self.secret(v).map(Some),
        };
        let integration_owners = match f.get("integration_owners") {
            None | Some(Value::Null) => Some(Vec::new()),
            Some(v) => self.integration_owners(v),
        };
        let resource_owner = match f.get("resource_owner") {
            None | Some(Value::Null) => Some(None),
            Some(v) => self.resource_owner(v).map(Some),
        };
        if let (Some(Some(_)), Some(owners)) = (&resource_owner, &integration_owners)
            && owners.is_empty()
        {
            self.problem(
                "resource_owner",
                "is set but there are no integration_owners: add at least one [[integration_owners]] entry as the fallback approver",
            );
        }

        Some(IntegrationConfig {
            name: name?,
            hostname: hostname?,
            port: port?,
            database: database?,
            ssl_mode: ssl_mode?,
            ssl_root_cert,
            ssl_cert,
            ssl_key,
            credential_rotation_days: credential_rotation_days?,
            custom_access_details: custom_access_details?,
            discovery: discovery?,
            user_mode: user_mode?,
            connector_mode: connector_mode?,
            username_prefix: username_prefix?,
            max_ttl: max_ttl?,
            sensitive_roles_allowed: sensitive_roles_allowed?,
            secret: secret?,
            integration_owners: integration_owners?,
            resource_owner: resource_owner?,
        })
    }

    fn discovery(&mut self, v: &Value) -> Option<Vec<ResourceType>> {
        let Value::Array(items) = v else {
            self.problem(
                "discovery",
                format!(
                    "must be a list such as [\"database\", \"table\"], not {}",
                    type_name(v)
                ),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let path = format!("discovery[{i}]");
            match self.parsed(&path, Some(item), str::parse::<ResourceType>) {
                Some(t) if out.contains(&t) => {
                    self.problem(&path, format!("\"{t}\" is listed twice"));
                    ok = false;
                }
                Some(t) => out.push(t),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn sensitive_roles_allowed(&mut self, v: &Value) -> Option<Vec<String>> {
        let Value::Array(items) = v else {
            self.problem(
                "sensitive_roles_allowed",
                format!(
                    "must be a list of role names such as [\"ops\"], not {}",
                    type_name(v)
                ),
            );
            return None;
        };
        let mut out: Vec<String> = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let path = format!("sensitive_roles_allowed[{i}]");
            let Some(role) = self.string(&path, Some(item), true) else {
                ok = false;
                continue;
            };
            let problem = if role.len() > 63 {
                Some(format!(
                    "\"{role}\" is {} bytes; PostgreSQL role names have at most 63",
                    role.len()
                ))
            } else if role.starts_with("pg_") {
                Some(format!(
                    "\"{role}\" is a predefined role: membership in predefined roles is never granted"
                ))
            } else if crate::naming::is_bookkeeping_role(&role) {
                Some(format!(
                    "\"{role}\" is one of pgwarden's own roles, which are never granted"
                ))
            } else if out.contains(&role) {
                Some(format!("\"{role}\" is listed twice"))
            } else {
                None
            };
            match problem {
                Some(m) => {
                    self.problem(&path, m);
                    ok = false;
                }
                None => out.push(role),
            }
        }
        ok.then_some(out)
    }

    fn username_prefix(&mut self, v: &Value) -> Option<String> {
        let Value::String(p) = v else {
            self.problem(
                "username_prefix",
                format!("must be a string, not {}", type_name(v)),
            );
            return None;
        };
        let problem = if p.is_empty() {
            Some("must not be empty (the default is \"pgw_\")".to_owned())
        } else if p.len() > MAX_USERNAME_PREFIX_BYTES {
            Some(format!(
                "is {} bytes; at most {MAX_USERNAME_PREFIX_BYTES} leave room for the requester in 63-byte role names",
                p.len()
            ))
        } else if !p.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
            Some("must start with a lowercase letter or '_'".to_owned())
        } else if let Some(bad) = p
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
        {
            Some(format!(
                "has '{bad}': use lowercase letters, digits and '_' so role names need no quoting"
            ))
        } else if p.starts_with("pg_") {
            Some(
                "must not start with \"pg_\": PostgreSQL reserves that prefix for its own roles"
                    .to_owned(),
            )
        } else {
            None
        };
        match problem {
            Some(m) => {
                self.problem("username_prefix", m);
                None
            }
            None => Some(p.clone()),
        }
    }

    #[allow(
        clippy::too_many_lines,
        reason = "one arm per backend reads best side by side"
    )]
    fn secret(&mut self, v: &Value) -> Option<SecretRef> {
        let Value::Object(map) = v else {
            self.problem(
                "secret",
                format!("must be a table ([secret]), not {}", type_name(v)),
            );
            return None;
        };
        let valid = SecretBackend::ALL.map(SecretBackend::as_str).join(", ");
        let backend = match map.get("backend") {
            None => {
                self.problem("secret.backend", format!("is required (one of: {valid})"));
                return None;
            }
            Some(b) => {
                let found = b
                    .as_str()
                    .and_then(|s| SecretBackend::ALL.into_iter().find(|x| x.as_str() == s));
                let Some(found) = found else {
                    self.problem(
                        "secret.backend",
                        format!("{b} is not a secret backend (valid: {valid})"),
                    );
                    return None;
                };
                found
            }
        };
        let fields: &[&str] = match backend {
            SecretBackend::Vault => &["backend", "address", "mount", "path", "namespace"],
            SecretBackend::Aws => &["backend", "secret_id", "region", "endpoint"],
            SecretBackend::Gcp => &["backend", "project", "secret", "version"],
            SecretBackend::Azure | SecretBackend::Kubernetes => {
                &["backend", "namespace", "vault_url", "name"]
            }
            SecretBackend::Env => &["backend", "username_var", "password_var"],
            SecretBackend::File => &["backend", "path"],
        };
        let fields: Vec<&str> = fields
            .iter()
            .copied()
            .filter(|f| match backend {
                SecretBackend::Azure => *f != "namespace",
                SecretBackend::Kubernetes => *f != "vault_url",
                _ => true,
            })
            .collect();
        let f = self.fields("secret", map, &fields, &[]);
        let req = |v: &mut Self, key: &str| v.string(&format!("secret.{key}"), f.get(key), true);
        let r = match backend {
            SecretBackend::Vault => {
                let path = req(self, "path");
                let address = self.string("secret.address", f.get("address"), false);
                if let Some(a) = &address
                    && !(a.starts_with("http://") || a.starts_with("https://"))
                {
                    self.problem(
                        "secret.address",
                        format!("\"{a}\" must start with http:// or https://"),
                    );
                }
                let mount = if f.contains_key("mount") {
                    req(self, "mount")
                } else {
                    Some("secret".to_owned())
                };
                let namespace = self.string("secret.namespace", f.get("namespace"), false);
                SecretRef::Vault {
                    address,
                    mount: mount?,
                    path: path?,
                    namespace,
                }
            }
            SecretBackend::Aws => {
                let secret_id = req(self, "secret_id");
                let region = self.string("secret.region", f.get("region"), false);
                let endpoint = self.string("secret.endpoint", f.get("endpoint"), false);
                SecretRef::Aws {
                    secret_id: secret_id?,
                    region,
                    endpoint,
                }
            }
            SecretBackend::Gcp => {
                let project = req(self, "project");
                let secret = req(self, "secret");
                let version = if f.contains_key("version") {
                    req(self, "version")
                } else {
                    Some("latest".to_owned())
                };
                SecretRef::Gcp {
                    project: project?,
                    secret: secret?,
                    version: version?,
                }
            }
            SecretBackend::Azure => {
                let vault_url = req(self, "vault_url");
                if let Some(u) = &vault_url
                    && !u.starts_with("https://")
                {
                    self.problem(
                        "secret.vault_url",
                        format!("\"{u}\" must start with https://"),
                    );
                }
                let name = req(self, "name");
                SecretRef::Azure {
                    vault_url: vault_url?,
                    name: name?,
                }
            }
            SecretBackend::Kubernetes => {
                let namespace = req(self, "namespace");
                let name = req(self, "name");
                SecretRef::Kubernetes {
                    namespace: namespace?,
                    name: name?,
                }
            }
            SecretBackend::Env => {
                let username_var = req(self, "username_var");
                let password_var = req(self, "password_var");
                SecretRef::Env {
                    username_var: username_var?,
                    password_var: password_var?,
                }
            }
            SecretBackend::File => SecretRef::File {
                path: req(self, "path")?,
            },
        };
        Some(r)
    }

    fn owner_attribute(&mut self, path: &str, v: Option<&Value>) -> Option<OwnerAttribute> {
        match self.string(path, v, true)?.as_str() {
            "user" => Some(OwnerAttribute::User),
            "group" => Some(OwnerAttribute::Group),
            other => {
                self.problem(
                    path,
                    format!("\"{other}\" is not an owner attribute (valid: user, group)"),
                );
                None
            }
        }
    }

    fn integration_owners(&mut self, v: &Value) -> Option<Vec<IntegrationOwner>> {
        let Value::Array(items) = v else {
            self.problem(
                "integration_owners",
                format!(
                    "must be a list of tables ([[integration_owners]]), not {}",
                    type_name(v)
                ),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let prefix = format!("integration_owners[{i}]");
            let Value::Object(map) = item else {
                self.problem(&prefix, format!("must be a table, not {}", type_name(item)));
                ok = false;
                continue;
            };
            let f = self.fields(&prefix, map, &["source", "attribute", "values"], &[]);
            let source = self.string(&format!("{prefix}.source"), f.get("source"), true);
            let attribute =
                self.owner_attribute(&format!("{prefix}.attribute"), f.get("attribute"));
            let values = self.values(&format!("{prefix}.values"), f.get("values"));
            match (source, attribute, values) {
                (Some(source), Some(attribute), Some(values)) => out.push(IntegrationOwner {
                    source,
                    attribute,
                    values,
                }),
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn values(&mut self, path: &str, v: Option<&Value>) -> Option<Vec<String>> {
        match v {
            None => {
                self.problem(path, "is required: list at least one user or group");
                None
            }
            Some(Value::Array(items)) if items.is_empty() => {
                self.problem(path, "is empty: list at least one user or group");
                None
            }
            Some(Value::Array(items)) => {
                let before = self.problems.len();
                let vals: Vec<String> = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| self.string(&format!("{path}[{i}]"), Some(item), true))
                    .collect();
                (self.problems.len() == before).then_some(vals)
            }
            Some(other) => {
                self.problem(
                    path,
                    format!("must be a list of strings, not {}", type_name(other)),
                );
                None
            }
        }
    }

    fn resource_owner(&mut self, v: &Value) -> Option<ResourceOwnerSetting> {
        let Value::Object(map) = v else {
            self.problem(
                "resource_owner",
                format!("must be a table ([resource_owner]), not {}", type_name(v)),
            );
            return None;
        };
        let f = self.fields("resource_owner", map, &["key", "source", "attribute"], &[]);
        let key = self.string("resource_owner.key", f.get("key"), true);
        let source = self.string("resource_owner.source", f.get("source"), true);
        let attribute = self.owner_attribute("resource_owner.attribute", f.get("attribute"));
        Some(ResourceOwnerSetting {
            key: key?,
            source: source?,
            attribute: attribute?,
        })
    }
}

fn join_path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Why a connection string could not become an integration config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FromConnInfoError {
    /// The string itself is invalid.
    #[error(transparent)]
    ConnInfo(#[from] crate::conninfo::ConnInfoError),
    /// An integration names exactly one TCP host.
    #[error("an integration needs exactly one TCP host; the connection string has {0}")]
    Hosts(String),
    /// The resulting config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl IntegrationConfig {
    /// The libpq connection string for this integration, logging in with `credentials`
    /// (when given) to `database` (the integration's default database when `None`).
    #[must_use]
    pub fn conninfo(
        &self,
        credentials: Option<&crate::credentials::Credentials>,
        database: Option<&str>,
    ) -> crate::conninfo::ConnInfo {
        use secrecy::ExposeSecret;
        let mut info = crate::conninfo::ConnInfo::new();
        // Every keyword below is a libpq keyword, so `set` cannot fail.
        let mut set = |k: &str, v: &str| {
            let _ = info.set(k, v);
        };
        set("host", &self.hostname);
        set("port", &self.port.to_string());
        set("dbname", database.unwrap_or(&self.database));
        set("sslmode", self.ssl_mode.as_str());
        if let Some(v) = &self.ssl_root_cert {
            set("sslrootcert", v);
        }
        if let Some(v) = &self.ssl_cert {
            set("sslcert", v);
        }
        if let Some(v) = &self.ssl_key {
            set("sslkey", v);
        }
        if let Some(c) = credentials {
            set("user", &c.username);
            set("password", c.password.expose_secret());
        }
        info
    }

    /// An integration config named `name` from a connection string, and the
    /// credentials it carries (`user` and `password`), if any. Keywords an integration
    /// has no field for (`application_name`, `connect_timeout`, ...) are dropped.
    pub fn from_conninfo(
        name: &str,
        info: &crate::conninfo::ConnInfo,
    ) -> Result<(Self, Option<crate::credentials::Credentials>), FromConnInfoError> {
        use secrecy::ExposeSecret;
        info.validate()?;
        let hosts = info.hosts()?;
        let [host] = hosts.as_slice() else {
            return Err(FromConnInfoError::Hosts(hosts.len().to_string()));
        };
        let hostname = host
            .host
            .clone()
            .or_else(|| host.hostaddr.clone())
            .filter(|h| !h.starts_with('/') && !h.starts_with('@'))
            .ok_or_else(|| FromConnInfoError::Hosts("a Unix socket".to_owned()))?;
        let mut doc = Map::new();
        doc.insert("name".into(), name.into());
        doc.insert("hostname".into(), hostname.into());
        doc.insert("port".into(), host.port.into());
        if let Some(db) = info.dbname() {
            doc.insert("database".into(), db.into());
        }
        for (keyword, field) in [
            ("sslmode", "ssl_mode"),
            ("sslrootcert", "ssl_root_cert"),
            ("sslcert", "ssl_cert"),
            ("sslkey", "ssl_key"),
        ] {
            if let Some(v) = info.get(keyword).filter(|v| !v.is_empty()) {
                doc.insert(field.into(), v.into());
            }
        }
        let config = IntegrationConfig::from_value(&Value::Object(doc))?;
        let credentials = match (info.user(), info.password()) {
            (Some(user), Some(password)) => Some(crate::credentials::Credentials::new(
                user,
                password.expose_secret(),
            )),
            _ => None,
        };
        Ok((config, credentials))
    }
}
