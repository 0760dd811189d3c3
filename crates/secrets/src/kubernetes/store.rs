//! The store itself (feature `kubernetes`).

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use zeroize::Zeroize;

use crate::credentials::zeroize_json;
use crate::http::{describe, status_error};
use crate::{
    Capabilities, Error, GetOptions, Operation, PutMode, PutOptions, SecretKey, SecretStore,
    SecretValue, Version,
};

pub use k8s_openapi;
pub use kube;

const BACKEND: &str = "kubernetes";

/// How many times an overwrite re-reads and retries when another writer got in
/// between its read and its write.
const OVERWRITE_ATTEMPTS: usize = 5;

/// Secrets in one Kubernetes namespace; keys are Secret names.
///
/// The document is the Secret's `.data`: each key becomes a JSON string field (it
/// must be UTF-8 text), so the credentials document lives in keys `username` and
/// `password`, and any other keys (`host`, `port`, ..) are kept through every write.
/// A put replaces `.data` with the document's fields and keeps the Secret's labels,
/// annotations and type; a new Secret is created with type `Opaque`.
///
/// Versions are `metadata.resourceVersion`. Compare-and-set is atomic on the API
/// server: [`PutMode::Update`] replaces the Secret with `resourceVersion` set to the
/// expected version (a stale one is `409 Conflict`), and [`PutMode::Create`] is a
/// create (`409 AlreadyExists` if it exists). Values must be JSON objects of strings
/// ([`Capabilities::any_text`] is false). No stages: pending passwords live in the
/// document. `delete` deletes the Secret.
#[derive(Clone)]
pub struct KubernetesStore {
    api: Api<Secret>,
    namespace: String,
}

impl KubernetesStore {
    /// A store on a ready client.
    #[must_use]
    pub fn new(client: kube::Client, namespace: impl Into<String>) -> Self {
        let namespace = namespace.into();
        KubernetesStore {
            api: Api::namespaced(client, &namespace),
            namespace,
        }
    }

    /// A store with `kube`'s default configuration: `$KUBECONFIG` or
    /// `~/.kube/config` (its current context), else the in-cluster service account.
    /// See the module docs about the rustls provider.
    pub async fn from_env(namespace: &str) -> Result<Self, Error> {
        if namespace.is_empty() {
            return Err(Error::Config {
                backend: BACKEND,
                reason: "the namespace is empty".into(),
            });
        }
        let client = kube::Client::try_default()
            .await
            .map_err(|e| Error::Config {
                backend: BACKEND,
                reason: format!(
                    "no usable kubeconfig or in-cluster configuration: {}",
                    describe(&e)
                ),
            })?;
        Ok(Self::new(client, namespace))
    }

    /// The namespace.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn name(&self, key: &SecretKey) -> String {
        format!("{}/{}", self.namespace, key)
    }
}

/// Turns a client error into ours. API server messages name the object and the
/// verb, never data; for `422 Invalid` only the status is kept, since validation
/// messages may quote field contents.
fn map_error(e: &kube::Error, operation: Operation, key: &str) -> Error {
    let key = key.to_owned();
    match e {
        kube::Error::Api(status) => {
            let code = status.code;
            let reason = if code == 422 {
                format!("HTTP 422 {}", status.reason)
            } else {
                format!("HTTP {code} {}: {}", status.reason, status.message)
            };
            match code {
                409 => Error::Conflict {
                    backend: BACKEND,
                    key,
                    expected: if status.reason == "AlreadyExists" {
                        "no secret".into()
                    } else {
                        "the version given".into()
                    },
                },
                422 if operation == Operation::Put => Error::Malformed {
                    backend: BACKEND,
                    key,
                    reason: format!(
                        "the API server rejected the Secret ({reason}): data keys must be made of letters, digits, '-', '_' and '.', and a Secret holds at most 1 MiB"
                    ),
                },
                _ => status_error(BACKEND, operation, key, code, reason),
            }
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => Error::Unreachable {
            backend: BACKEND,
            key,
            reason: describe(e),
        },
        kube::Error::Auth(_) => Error::PermissionDenied {
            backend: BACKEND,
            key,
            reason: describe(e),
        },
        kube::Error::SerdeError(_) => Error::Backend {
            backend: BACKEND,
            operation,
            key,
            reason: "the response was not the Secret the API server sends".into(),
            transient: false,
        },
        other => Error::Backend {
            backend: BACKEND,
            operation,
            key,
            reason: describe(other),
            transient: false,
        },
    }
}

/// A Secret's `.data` as the JSON document: one string field per key. Keys whose
/// bytes are not UTF-8 are [`Error::Malformed`] (naming the key, never the bytes).
pub(crate) fn data_to_document(
    data: Option<&BTreeMap<String, ByteString>>,
    key: &str,
) -> Result<SecretString, Error> {
    let mut fields = serde_json::Map::new();
    for (name, bytes) in data.into_iter().flatten() {
        let Ok(text) = std::str::from_utf8(&bytes.0) else {
            let mut partial = Value::Object(fields);
            zeroize_json(&mut partial);
            return Err(Error::Malformed {
                backend: BACKEND,
                key: key.to_owned(),
                reason: format!(
                    "data key \"{name}\" is not UTF-8 text: pgwarden reads each key as a JSON string"
                ),
            });
        };
        fields.insert(name.clone(), Value::String(text.to_owned()));
    }
    let mut document = Value::Object(fields);
    let text = SecretString::from(document.to_string());
    zeroize_json(&mut document);
    Ok(text)
}

/// The JSON document as a Secret's `.data`: a JSON object whose fields are all
/// strings, with names Kubernetes accepts as data keys.
pub(crate) fn document_to_data(
    value: &SecretString,
    key: &str,
) -> Result<BTreeMap<String, ByteString>, Error> {
    let malformed = |reason: String| Error::Malformed {
        backend: BACKEND,
        key: key.to_owned(),
        reason,
    };
    let mut parsed = serde_json::from_str::<Value>(value.expose_secret()).map_err(|_| {
        malformed("a Kubernetes Secret keeps a JSON object of strings, and this is not JSON".into())
    })?;
    let result = match &mut parsed {
        Value::Object(fields) => {
            let mut data = BTreeMap::new();
            let mut problem = None;
            for (name, field) in fields.iter_mut() {
                if !is_valid_data_key(name) {
                    problem = Some(format!(
                        "field \"{name}\" is not a valid Secret data key (letters, digits, '-', '_', '.')"
                    ));
                    break;
                }
                match field {
                    Value::String(text) => {
                        data.insert(name.clone(), ByteString(std::mem::take(text).into_bytes()));
                    }
                    other => {
                        problem = Some(format!(
                            "field \"{name}\" is {}: a Kubernetes Secret keeps strings only",
                            json_type(other)
                        ));
                        break;
                    }
                }
            }
            match problem {
                None => Ok(data),
                Some(reason) => {
                    zeroize_data(&mut data);
                    Err(malformed(reason))
                }
            }
        }
        other => Err(malformed(format!(
            "a Kubernetes Secret keeps a JSON object of strings, not {}",
            json_type(other)
        ))),
    };
    zeroize_json(&mut parsed);
    result
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

/// Kubernetes' rule for Secret data keys: `[-._a-zA-Z0-9]+`, at most 253 bytes.
fn is_valid_data_key(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn zeroize_data(data: &mut BTreeMap<String, ByteString>) {
    for bytes in data.values_mut() {
        bytes.0.zeroize();
    }
}

fn zeroize_secret(secret: &mut Secret) {
    if let Some(data) = secret.data.as_mut() {
        zeroize_data(data);
    }
    if let Some(string_data) = secret.string_data.as_mut() {
        for text in string_data.values_mut() {
            text.zeroize();
        }
    }
}

fn new_secret(name: &str, data: BTreeMap<String, ByteString>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Secret::default()
    }
}

fn written_version(secret: &mut Secret, key: &str) -> Result<Version, Error> {
    zeroize_secret(secret);
    secret
        .metadata
        .resource_version
        .take()
        .map(Version::new)
        .ok_or_else(|| Error::Backend {
            backend: BACKEND,
            operation: Operation::Put,
            key: key.to_owned(),
            reason: "the response carried no resourceVersion".into(),
            transient: false,
        })
}

impl fmt::Debug for KubernetesStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubernetesStore")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for KubernetesStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kubernetes Secrets in namespace {}", self.namespace)
    }
}

#[async_trait]
impl SecretStore for KubernetesStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::versioned().with_any_text(false)
    }

    async fn get(&self, key: &SecretKey, options: GetOptions) -> Result<SecretValue, Error> {
        let name = self.name(key);
        Error::only_current_stage(BACKEND, Operation::Get, options.stage)?;
        let mut secret = self
            .api
            .get(key.as_str())
            .await
            .map_err(|e| map_error(&e, Operation::Get, &name))?;
        let value = data_to_document(secret.data.as_ref(), &name);
        zeroize_secret(&mut secret);
        let version = secret
            .metadata
            .resource_version
            .take()
            .ok_or_else(|| Error::Backend {
                backend: BACKEND,
                operation: Operation::Get,
                key: name.clone(),
                reason: "the response carried no resourceVersion".into(),
                transient: false,
            })?;
        Ok(SecretValue {
            value: value?,
            version: Version::new(version),
        })
    }

    async fn put(
        &self,
        key: &SecretKey,
        value: SecretString,
        options: PutOptions,
    ) -> Result<Version, Error> {
        let name = self.name(key);
        Error::only_current_stage(BACKEND, Operation::Put, options.stage)?;
        let data = document_to_data(&value, &name)?;
        let post = PostParams::default();
        match &options.mode {
            PutMode::Create => {
                let mut created = self
                    .api
                    .create(&post, &new_secret(key.as_str(), data))
                    .await
                    .map_err(|e| match map_error(&e, Operation::Put, &name) {
                        Error::Conflict { backend, key, .. } => Error::Conflict {
                            backend,
                            key,
                            expected: "no secret".into(),
                        },
                        other => other,
                    })?;
                written_version(&mut created, &name)
            }
            PutMode::Update(expected) => {
                let conflict = || Error::Conflict {
                    backend: BACKEND,
                    key: name.clone(),
                    expected: expected.to_string(),
                };
                let mut current = match self.api.get(key.as_str()).await {
                    Ok(s) => s,
                    Err(e) => {
                        return Err(match map_error(&e, Operation::Put, &name) {
                            Error::NotFound { .. } => conflict(),
                            other => other,
                        });
                    }
                };
                zeroize_secret(&mut current);
                current.data = Some(data);
                current.string_data = None;
                // The server compares this with the stored resourceVersion atomically.
                current.metadata.resource_version = Some(expected.as_str().to_owned());
                let result = self.api.replace(key.as_str(), &post, &current).await;
                zeroize_secret(&mut current);
                let mut replaced =
                    result.map_err(|e| match map_error(&e, Operation::Put, &name) {
                        Error::Conflict { .. } => conflict(),
                        other => other,
                    })?;
                written_version(&mut replaced, &name)
            }
            PutMode::Overwrite => self.overwrite(key, &name, data).await,
        }
    }

    async fn delete(&self, key: &SecretKey) -> Result<(), Error> {
        let name = self.name(key);
        match self
            .api
            .delete(key.as_str(), &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match map_error(&e, Operation::Delete, &name) {
                Error::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }
}

impl KubernetesStore {
    /// Read, then create or replace at the version read; another writer in between
    /// makes it read again, a few times.
    async fn overwrite(
        &self,
        key: &SecretKey,
        name: &str,
        mut data: BTreeMap<String, ByteString>,
    ) -> Result<Version, Error> {
        let post = PostParams::default();
        for _ in 0..OVERWRITE_ATTEMPTS {
            let result = match self.api.get(key.as_str()).await {
                Ok(mut current) => {
                    zeroize_secret(&mut current);
                    current.data = Some(data.clone());
                    current.string_data = None;
                    let result = self.api.replace(key.as_str(), &post, &current).await;
                    zeroize_secret(&mut current);
                    result
                }
                Err(e) => match map_error(&e, Operation::Put, name) {
                    Error::NotFound { .. } => {
                        let mut fresh = new_secret(key.as_str(), data.clone());
                        let result = self.api.create(&post, &fresh).await;
                        zeroize_secret(&mut fresh);
                        result
                    }
                    other => {
                        zeroize_data(&mut data);
                        return Err(other);
                    }
                },
            };
            match result {
                Ok(mut written) => {
                    zeroize_data(&mut data);
                    return written_version(&mut written, name);
                }
                Err(e) => match map_error(&e, Operation::Put, name) {
                    Error::Conflict { .. } => {}
                    other => {
                        zeroize_data(&mut data);
                        return Err(other);
                    }
                },
            }
        }
        zeroize_data(&mut data);
        Err(Error::Conflict {
            backend: BACKEND,
            key: name.to_owned(),
            expected: format!("any version ({OVERWRITE_ATTEMPTS} concurrent writes in a row)"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn data(pairs: &[(&str, &[u8])]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
            .collect()
    }

    #[test]
    fn secret_data_reads_as_a_json_document_keeping_other_keys() {
        let d = data(&[
            ("username", b"connector"),
            ("password", "p\u{e4}ss \"w\"".as_bytes()),
            ("host", b"db.internal"),
        ]);
        let doc = data_to_document(Some(&d), "ns/pg").unwrap();
        let v: Value = serde_json::from_str(doc.expose_secret()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"username": "connector", "password": "p\u{e4}ss \"w\"", "host": "db.internal"})
        );
        assert_eq!(
            data_to_document(None, "ns/pg").unwrap().expose_secret(),
            "{}"
        );
    }

    #[test]
    fn non_utf8_data_is_malformed_naming_the_key_only() {
        let d = data(&[("username", b"u"), ("password", &[0xff, 0xfe, b'h', b'i'])]);
        let e = data_to_document(Some(&d), "ns/pg").unwrap_err();
        assert!(matches!(e, Error::Malformed { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("kubernetes secret ns/pg is malformed"),
            "{text}"
        );
        assert!(text.contains("\"password\" is not UTF-8"), "{text}");
        assert!(!text.contains("hi"), "{text}");
    }

    #[test]
    fn documents_become_data_and_back() {
        let doc = SecretString::from(
            r#"{"username":"日本","password":"hunter2","pending_password":"next","port":"5432"}"#,
        );
        let d = document_to_data(&doc, "ns/pg").unwrap();
        assert_eq!(d["username"].0, "日本".as_bytes());
        assert_eq!(d["password"].0, b"hunter2");
        assert_eq!(d["port"].0, b"5432");
        let back = data_to_document(Some(&d), "ns/pg").unwrap();
        let a: Value = serde_json::from_str(back.expose_secret()).unwrap();
        let b: Value = serde_json::from_str(doc.expose_secret()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn documents_that_are_not_objects_of_strings_are_malformed_without_the_value() {
        for (text, expected) in [
            ("hunter2 is not json", "this is not JSON"),
            ("[\"hunter2\"]", "not an array"),
            (
                r#"{"username":"u","password":7}"#,
                "field \"password\" is a number",
            ),
            (
                r#"{"username":"u","pass word":"hunter2"}"#,
                "\"pass word\" is not a valid Secret data key",
            ),
        ] {
            let e = document_to_data(&SecretString::from(text), "ns/pg").unwrap_err();
            assert!(matches!(e, Error::Malformed { .. }), "{e:?}");
            assert!(e.to_string().contains(expected), "{e}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
    }

    fn api_error(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Box::new(Status {
            status: None,
            code,
            message: format!("secrets \"pg\" {reason}"),
            metadata: None,
            reason: reason.into(),
            details: None,
        }))
    }

    #[test]
    fn api_errors_map_to_ours() {
        let e = map_error(&api_error(404, "NotFound"), Operation::Get, "ns/pg");
        assert!(e.is_not_found(), "{e:?}");
        let e = map_error(&api_error(403, "Forbidden"), Operation::Get, "ns/pg");
        assert!(matches!(e, Error::PermissionDenied { .. }), "{e:?}");
        assert!(e.to_string().contains("HTTP 403 Forbidden"), "{e}");
        let e = map_error(&api_error(409, "Conflict"), Operation::Put, "ns/pg");
        assert!(e.is_conflict(), "{e:?}");
        let e = map_error(&api_error(409, "AlreadyExists"), Operation::Put, "ns/pg");
        assert!(e.to_string().contains("expected no secret"), "{e}");
        let e = map_error(&api_error(422, "Invalid"), Operation::Put, "ns/pg");
        assert!(matches!(e, Error::Malformed { .. }), "{e:?}");
        assert!(!e.to_string().contains("secrets \"pg\""), "{e}");
        for code in [429, 500, 503] {
            let e = map_error(&api_error(code, "ServiceUnavailable"), Operation::Get, "k");
            assert!(e.is_transient(), "{code}: {e:?}");
        }
        let e = map_error(&api_error(400, "BadRequest"), Operation::Get, "k");
        assert!(!e.is_transient(), "{e:?}");
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = map_error(&kube::Error::Service(Box::new(io)), Operation::Get, "k");
        assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
        assert!(e.is_transient());
    }

    #[test]
    fn new_secrets_are_opaque_and_named() {
        let s = new_secret("pg", data(&[("username", b"u")]));
        assert_eq!(s.metadata.name.as_deref(), Some("pg"));
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        assert!(is_valid_data_key("tls.crt"));
        assert!(!is_valid_data_key("a/b"));
        assert!(!is_valid_data_key(""));
    }
}
