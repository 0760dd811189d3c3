//! [`EnvStore`]: read-only secrets from environment variables.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::credentials::{PASSWORD_FIELD, SecretDocument, USERNAME_FIELD};
use crate::{
    Capabilities, DynSecretStore, Error, GetOptions, Operation, PutOptions, SecretKey, SecretStore,
    SecretValue, Version,
};

const BACKEND: &str = "env";

/// The `[secret]` settings of backend `env`: the variables holding the username and
/// the password.
#[derive(eserde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    username_var: String,
    password_var: String,
}

impl crate::factory::Settings for Settings {
    const BACKEND: &'static str = BACKEND;

    fn key(&self) -> Result<SecretKey, Error> {
        Ok(EnvStore::pair_key(&self.username_var, &self.password_var))
    }

    async fn open(&self) -> Result<Arc<DynSecretStore>, Error> {
        Ok(Arc::new(EnvStore::from_process()))
    }
}

/// The version every value of this store has: variables carry none.
const ENV_VERSION: &str = "env";

/// Read-only secrets from environment variables.
///
/// A key is either one variable name, whose value is the whole document (e.g.
/// `PGWARDEN_SECRET='{"username": "..", "password": ".."}'`), or two names joined by a
/// comma, `USERNAME_VAR,PASSWORD_VAR`, which the store turns into the credentials
/// document `{"username": $USERNAME_VAR, "password": $PASSWORD_VAR}`
/// ([`EnvStore::pair_key`]); the `[secret]` section's `username_var`/`password_var`
/// become such a key. Values never have a version worth comparing, and writes are
/// refused: set the variables instead.
pub struct EnvStore {
    vars: Option<HashMap<String, String>>,
}

impl EnvStore {
    /// Reads the process environment at each `get`.
    #[must_use]
    pub fn from_process() -> Self {
        EnvStore { vars: None }
    }

    /// Reads a fixed set of variables (tests, or an environment captured elsewhere).
    #[must_use]
    pub fn from_vars<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        EnvStore {
            vars: Some(
                vars.into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    /// The key reading the username and password from two variables.
    #[must_use]
    pub fn pair_key(username_var: &str, password_var: &str) -> SecretKey {
        SecretKey::new(format!("{username_var},{password_var}"))
    }

    fn var(&self, key: &SecretKey, name: &str) -> Result<String, Error> {
        let found = match &self.vars {
            Some(vars) => vars.get(name).cloned(),
            None => std::env::var(name).ok(),
        };
        found.ok_or_else(|| Error::NotFound {
            backend: BACKEND,
            key: if key.as_str() == name {
                format!("${name}")
            } else {
                format!("${name} (of {key})")
            },
        })
    }
}

impl fmt::Debug for EnvStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvStore")
            .field(
                "source",
                &if self.vars.is_some() {
                    "fixed"
                } else {
                    "process"
                },
            )
            .finish()
    }
}

impl fmt::Display for EnvStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("environment variables")
    }
}

#[async_trait]
impl SecretStore for EnvStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::read_only().with_any_text(true)
    }

    async fn get(&self, key: &SecretKey, options: GetOptions) -> Result<SecretValue, Error> {
        Error::only_current_stage(BACKEND, Operation::Get, options.stage)?;
        let value = if let Some((user_var, pass_var)) = key.as_str().split_once(',') {
            let mut document = SecretDocument::default();
            let mut username = self.var(key, user_var.trim())?;
            document.set(USERNAME_FIELD, &username);
            zeroize::Zeroize::zeroize(&mut username);
            let mut password = self.var(key, pass_var.trim())?;
            document.set(PASSWORD_FIELD, &password);
            zeroize::Zeroize::zeroize(&mut password);
            document.to_secret()
        } else {
            SecretString::from(self.var(key, key.as_str())?)
        };
        Ok(SecretValue {
            value,
            version: Version::new(ENV_VERSION),
        })
    }

    async fn put(
        &self,
        _key: &SecretKey,
        _value: SecretString,
        _options: PutOptions,
    ) -> Result<Version, Error> {
        Err(Error::not_implemented(
            BACKEND,
            Operation::Put,
            Some("environment variables are read-only; set them outside pgwarden"),
        ))
    }

    async fn delete(&self, _key: &SecretKey) -> Result<(), Error> {
        Err(Error::not_implemented(
            BACKEND,
            Operation::Delete,
            Some("environment variables are read-only; unset them outside pgwarden"),
        ))
    }
}
