//! The credentials document and the helpers that read and write it through any store.
//!
//! The document is a JSON object with string fields `username` and `password`; any
//! other fields are kept as they are on every write. During a rotation on a store
//! without native stages it also holds `pending_password` (see the crate docs).

use std::fmt;

use async_trait::async_trait;
use pgwarden_core::credentials::Credentials;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use zeroize::Zeroize;

use crate::{Error, GetOptions, PutMode, PutOptions, SecretKey, SecretStore, Version};

/// The field holding the role name.
pub const USERNAME_FIELD: &str = "username";
/// The field holding the password.
pub const PASSWORD_FIELD: &str = "password";
/// The field holding a staged, not yet promoted password on stores without stages.
pub const PENDING_PASSWORD_FIELD: &str = "pending_password";

/// A parsed secret document. Its string values are zeroized on drop; `Debug` shows
/// the field names only.
#[derive(Clone, Default)]
pub struct SecretDocument(Map<String, Value>);

impl SecretDocument {
    /// Parses `text` as a JSON object. Errors say where the JSON breaks or what the
    /// top-level type is, never what the text holds.
    pub fn parse(backend: &'static str, key: &SecretKey, text: &str) -> Result<Self, Error> {
        let malformed = |reason: String| Error::Malformed {
            backend,
            key: key.to_string(),
            reason,
        };
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(SecretDocument(map)),
            Ok(mut other) => {
                let kind = json_type(&other);
                zeroize_json(&mut other);
                Err(malformed(format!(
                    "it is JSON {kind}, not an object: store {{\"username\": ..., \"password\": ...}}"
                )))
            }
            Err(e) => Err(malformed(format!(
                "it is not JSON (line {}, column {}): store {{\"username\": ..., \"password\": ...}}",
                e.line(),
                e.column()
            ))),
        }
    }

    /// The fields, for backends that store them one by one.
    #[must_use]
    pub fn fields(&self) -> &Map<String, Value> {
        &self.0
    }

    /// A document from fields.
    #[must_use]
    pub fn from_fields(fields: Map<String, Value>) -> Self {
        SecretDocument(fields)
    }

    /// A string field.
    fn string(&self, field: &str) -> Option<&str> {
        self.0.get(field).and_then(Value::as_str)
    }

    /// A required string field, or a `Malformed` error naming it.
    fn required(&self, backend: &'static str, key: &SecretKey, field: &str) -> Result<&str, Error> {
        match self.0.get(field) {
            Some(Value::String(s)) => Ok(s),
            None | Some(Value::Null) => Err(Error::Malformed {
                backend,
                key: key.to_string(),
                reason: format!(
                    "it has no \"{field}\" field: store {{\"username\": ..., \"password\": ...}}"
                ),
            }),
            Some(other) => Err(Error::Malformed {
                backend,
                key: key.to_string(),
                reason: format!(
                    "its \"{field}\" field is {}, not a string",
                    json_type(other)
                ),
            }),
        }
    }

    /// Sets a string field.
    pub fn set(&mut self, field: &str, value: &str) {
        if let Some(mut old) = self
            .0
            .insert(field.to_owned(), Value::String(value.to_owned()))
        {
            zeroize_json(&mut old);
        }
    }

    /// Removes a field.
    pub fn remove(&mut self, field: &str) {
        if let Some(mut old) = self.0.remove(field) {
            zeroize_json(&mut old);
        }
    }

    /// The document as JSON text.
    #[must_use]
    pub fn to_secret(&self) -> SecretString {
        // Serializing a map of JSON values cannot fail.
        SecretString::from(serde_json::to_string(&self.0).unwrap_or_default())
    }
}

impl Drop for SecretDocument {
    fn drop(&mut self) {
        for value in self.0.values_mut() {
            zeroize_json(value);
        }
    }
}

impl fmt::Debug for SecretDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Overwrites every string in a JSON value with zeros.
pub fn zeroize_json(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(zeroize_json),
        Value::Object(map) => map.values_mut().for_each(zeroize_json),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Credentials as read from a store, with the version they were read at and the rest
/// of the document (kept on the next write).
#[derive(Debug, Clone)]
pub struct StoredCredentials {
    /// The username and password.
    pub credentials: Credentials,
    /// The version read.
    pub version: Version,
    /// A staged password not yet promoted (stores without stages only).
    pub pending_password: Option<SecretString>,
    /// The whole document.
    pub document: SecretDocument,
}

impl StoredCredentials {
    /// Parses a credentials document.
    pub fn parse(
        backend: &'static str,
        key: &SecretKey,
        text: &str,
        version: Version,
    ) -> Result<Self, Error> {
        let document = SecretDocument::parse(backend, key, text)?;
        let username = document.required(backend, key, USERNAME_FIELD)?;
        if username.is_empty() {
            return Err(Error::Malformed {
                backend,
                key: key.to_string(),
                reason: "its \"username\" field is empty".to_owned(),
            });
        }
        let password = document.required(backend, key, PASSWORD_FIELD)?;
        let credentials = Credentials {
            username: username.to_owned(),
            password: SecretString::from(password),
        };
        let pending_password = document
            .string(PENDING_PASSWORD_FIELD)
            .map(SecretString::from);
        Ok(StoredCredentials {
            credentials,
            version,
            pending_password,
            document,
        })
    }
}

/// A password written as pending and not promoted yet.
#[derive(Debug, Clone)]
pub struct PendingPassword {
    /// The staged password.
    pub password: SecretString,
    /// The version that holds it (pass it to [`SecretStoreExt::promote_password`]).
    pub version: Version,
}

/// Conveniences over any [`SecretStore`]: the credentials document and the rotation
/// protocol described in the crate docs.
#[async_trait]
pub trait SecretStoreExt: SecretStore {
    /// Reads the current credentials.
    async fn get_credentials(&self, key: &SecretKey) -> Result<StoredCredentials, Error> {
        let value = self.get(key, GetOptions::default()).await?;
        StoredCredentials::parse(self.backend(), key, value.expose(), value.version.clone())
    }

    /// Writes `credentials` into the document at `key`, keeping its other fields (and
    /// dropping a stale `pending_password`); creates the document when there is none.
    /// With [`PutMode::Update`] the read must see that version, and the write is
    /// conditional on it.
    async fn put_credentials(
        &self,
        key: &SecretKey,
        credentials: &Credentials,
        options: PutOptions,
    ) -> Result<Version, Error> {
        let mut document = match self.get(key, GetOptions::default()).await {
            Ok(current) => {
                if let PutMode::Update(expected) = &options.mode
                    && *expected != current.version
                {
                    return Err(Error::Conflict {
                        backend: self.backend(),
                        key: key.to_string(),
                        expected: expected.to_string(),
                    });
                }
                if options.mode == PutMode::Create {
                    return Err(Error::Conflict {
                        backend: self.backend(),
                        key: key.to_string(),
                        expected: "no secret".to_owned(),
                    });
                }
                // An unparsable document is replaced: its content cannot be kept.
                SecretDocument::parse(self.backend(), key, current.expose()).unwrap_or_default()
            }
            Err(e) if e.is_not_found() => SecretDocument::default(),
            Err(e) => return Err(e),
        };
        document.set(USERNAME_FIELD, &credentials.username);
        document.set(PASSWORD_FIELD, credentials.password.expose_secret());
        document.remove(PENDING_PASSWORD_FIELD);
        self.put(key, document.to_secret(), options).await
    }

    /// Rotation step 1: records `new_password` as pending next to `current` (as read
    /// by [`get_credentials`](Self::get_credentials)), which stays the password in
    /// use. Returns the version to promote later.
    ///
    /// Stores with stages write a pending version (AWS `AWSPENDING`); the others write
    /// `pending_password` into the document, conditional on `current.version` when they
    /// can compare-and-set.
    async fn stage_password(
        &self,
        key: &SecretKey,
        current: &StoredCredentials,
        new_password: &SecretString,
    ) -> Result<Version, Error> {
        let caps = self.capabilities();
        let mut document = current.document.clone();
        if caps.stages {
            document.set(PASSWORD_FIELD, new_password.expose_secret());
            document.remove(PENDING_PASSWORD_FIELD);
            self.put(key, document.to_secret(), PutOptions::overwrite().pending())
                .await
        } else {
            document.set(PENDING_PASSWORD_FIELD, new_password.expose_secret());
            let options = if caps.compare_and_set {
                PutOptions::expect_version(current.version.clone())
            } else {
                PutOptions::overwrite()
            };
            self.put(key, document.to_secret(), options).await
        }
    }

    /// Rotation step 2: makes the password staged at `staged` current. Returns the
    /// version now current.
    async fn promote_password(&self, key: &SecretKey, staged: &Version) -> Result<Version, Error> {
        let caps = self.capabilities();
        if caps.stages {
            self.promote(key, staged).await?;
            return Ok(staged.clone());
        }
        let current = self.get_credentials(key).await?;
        if current.version != *staged {
            return Err(Error::Conflict {
                backend: self.backend(),
                key: key.to_string(),
                expected: staged.to_string(),
            });
        }
        let Some(pending) = &current.pending_password else {
            return Err(Error::Malformed {
                backend: self.backend(),
                key: key.to_string(),
                reason: "it has no \"pending_password\" to promote".to_owned(),
            });
        };
        let mut document = current.document.clone();
        document.set(PASSWORD_FIELD, pending.expose_secret());
        document.remove(PENDING_PASSWORD_FIELD);
        let options = if caps.compare_and_set {
            PutOptions::expect_version(current.version.clone())
        } else {
            PutOptions::overwrite()
        };
        self.put(key, document.to_secret(), options).await
    }

    /// Crash recovery: the password staged and not promoted, if any.
    async fn pending_password(&self, key: &SecretKey) -> Result<Option<PendingPassword>, Error> {
        if self.capabilities().stages {
            let pending = match self.get(key, GetOptions::pending()).await {
                Ok(v) => v,
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(e),
            };
            let current = self.get(key, GetOptions::default()).await?;
            if current.version == pending.version {
                return Ok(None);
            }
            let parsed = StoredCredentials::parse(
                self.backend(),
                key,
                pending.expose(),
                pending.version.clone(),
            )?;
            return Ok(Some(PendingPassword {
                password: parsed.credentials.password,
                version: parsed.version,
            }));
        }
        let current = self.get_credentials(key).await?;
        Ok(current.pending_password.map(|password| PendingPassword {
            password,
            version: current.version,
        }))
    }
}

impl<T: SecretStore + ?Sized> SecretStoreExt for T {}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        SecretKey::new("k")
    }

    fn parse(text: &str) -> Result<StoredCredentials, Error> {
        StoredCredentials::parse("memory", &key(), text, Version::new("1"))
    }

    #[test]
    fn malformed_documents_say_why_without_the_value() {
        let e = parse("hunter2-not-json").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("is not JSON (line 1, column 1)"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
        let e = parse("\"hunter2\"").unwrap_err().to_string();
        assert!(
            e.contains("JSON a string, not an object") && !e.contains("hunter2"),
            "{e}"
        );
        let e = parse(r#"{"username": "u"}"#).unwrap_err().to_string();
        assert!(e.contains("no \"password\" field"), "{e}");
        let e = parse(r#"{"password": "hunter2"}"#).unwrap_err().to_string();
        assert!(
            e.contains("no \"username\" field") && !e.contains("hunter2"),
            "{e}"
        );
        let e = parse(r#"{"username": "u", "password": 42}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"password\" field is a number, not a string"),
            "{e}"
        );
        let e = parse(r#"{"username": "", "password": "p"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"username\" field is empty"), "{e}");
    }

    #[test]
    fn parses_and_keeps_other_fields_and_redacts_debug() {
        let c = parse(
            r#"{"username": "u", "password": "hunter2", "host": "db", "pending_password": "next"}"#,
        )
        .unwrap();
        assert_eq!(c.credentials.username, "u");
        assert_eq!(c.credentials.password.expose_secret(), "hunter2");
        assert_eq!(c.pending_password.as_ref().unwrap().expose_secret(), "next");
        assert_eq!(c.document.fields()["host"], "db");
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("next\""),
            "{debug}"
        );
    }
}
