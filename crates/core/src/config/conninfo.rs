//! An integration config to a libpq connection string, and back.

use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use super::{ConfigError, IntegrationConfig};
use crate::conninfo::{ConnInfo, ConnInfoError};
use crate::credentials::Credentials;

/// The libpq keywords an integration has a field for, and the fields.
const SSL_KEYWORDS: [(&str, &str); 4] = [
    ("sslmode", "ssl_mode"),
    ("sslrootcert", "ssl_root_cert"),
    ("sslcert", "ssl_cert"),
    ("sslkey", "ssl_key"),
];

/// Why a connection string could not become an integration config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FromConnInfoError {
    /// The string itself is invalid.
    #[error(transparent)]
    ConnInfo(#[from] ConnInfoError),
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
    pub fn conninfo(&self, credentials: Option<&Credentials>, database: Option<&str>) -> ConnInfo {
        let mut info = ConnInfo::new();
        // Every keyword below is a libpq keyword, so `set` cannot fail.
        let mut set = |k: &str, v: &str| {
            let _ = info.set(k, v);
        };
        set("host", &self.hostname);
        set("port", &self.port.to_string());
        set("dbname", database.unwrap_or(&self.database));
        set("sslmode", self.ssl_mode.as_str());
        for (keyword, value) in [
            ("sslrootcert", &self.ssl_root_cert),
            ("sslcert", &self.ssl_cert),
            ("sslkey", &self.ssl_key),
        ] {
            if let Some(v) = value {
                set(keyword, v);
            }
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
        info: &ConnInfo,
    ) -> Result<(Self, Option<Credentials>), FromConnInfoError> {
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
        for (keyword, field) in SSL_KEYWORDS {
            if let Some(v) = info.get(keyword).filter(|v| !v.is_empty()) {
                doc.insert(field.into(), v.into());
            }
        }
        let config = IntegrationConfig::from_value(&Value::Object(doc))?;
        let credentials = match (info.user(), info.password()) {
            (Some(user), Some(password)) => Some(Credentials::new(user, password.expose_secret())),
            _ => None,
        };
        Ok((config, credentials))
    }
}
