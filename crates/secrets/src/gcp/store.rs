//! The store itself (feature `gcp`).

use std::fmt;

use async_trait::async_trait;
use google_cloud_gax::error::rpc::Code;
use google_cloud_secretmanager_v1::client::SecretManagerService;
use google_cloud_secretmanager_v1::model;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroize;

use crate::http::{describe, status_error};
use crate::{
    Capabilities, Error, GetOptions, Operation, PutMode, PutOptions, SecretKey, SecretStore,
    SecretValue, Version,
};

pub use google_cloud_secretmanager_v1;

const BACKEND: &str = "gcp";

/// Where the secrets live.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcpConfig {
    /// The project id (or number).
    pub project: String,
    /// The version `get` reads: `latest` (the default), or a pinned version number.
    pub version: String,
    /// An endpoint override, e.g. a regional or private endpoint.
    pub endpoint: Option<String>,
}

impl GcpConfig {
    /// Secrets of `project`, reading `latest`.
    #[must_use]
    pub fn new(project: impl Into<String>) -> Self {
        GcpConfig {
            project: project.into(),
            version: "latest".into(),
            endpoint: None,
        }
    }

    /// The same reading `version` (empty: `latest`).
    #[must_use]
    pub fn version(mut self, version: impl Into<String>) -> Self {
        let version = version.into();
        self.version = if version.is_empty() {
            "latest".into()
        } else {
            version
        };
        self
    }

    /// The same with an endpoint override.
    #[must_use]
    pub fn endpoint(mut self, endpoint: Option<String>) -> Self {
        self.endpoint = endpoint;
        self
    }

    fn check(&self) -> Result<(), Error> {
        let bad = |what: &str, value: &str| Error::Config {
            backend: BACKEND,
            reason: format!("{what} {value:?} is not valid: it must be non-empty, without '/'"),
        };
        if self.project.is_empty() || self.project.contains('/') {
            return Err(bad("project", &self.project));
        }
        if self.version.is_empty() || self.version.contains('/') {
            return Err(bad("version", &self.version));
        }
        Ok(())
    }
}

/// Secrets in GCP Secret Manager; keys are secret ids in the configured project,
/// values are the payloads of secret versions (UTF-8 text), versions are the
/// version numbers (`7` for `projects/p/secrets/s/versions/7`).
///
/// Every put adds a secret version (creating the secret, with automatic
/// replication, if it does not exist). `get` reads the configured version, `latest`
/// by default. [`PutMode::Create`] is `CreateSecret`, which fails atomically if the
/// secret exists. Secret Manager has no compare-and-set on versions (the etag of the
/// Secret resource covers its metadata, not the adding of versions), so
/// [`PutMode::Update`] is refused with [`Error::NotImplemented`] and
/// [`Capabilities::compare_and_set`] is false. No stages: pending passwords live in
/// the document. `delete` deletes the secret and all its versions.
#[derive(Clone)]
pub struct GcpStore {
    client: SecretManagerService,
    config: GcpConfig,
}

impl GcpStore {
    /// A store with Application Default Credentials.
    pub async fn new(config: GcpConfig) -> Result<Self, Error> {
        config.check()?;
        let mut builder = SecretManagerService::builder();
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        let client = builder.build().await.map_err(|e| Error::Config {
            backend: BACKEND,
            reason: format!(
                "cannot build the Secret Manager client (are Application Default Credentials set up?): {}",
                describe(&e)
            ),
        })?;
        Ok(Self::from_client(client, config))
    }

    /// A store on a ready client (custom credentials, retry policy, or a test stub
    /// through `SecretManagerService::from_stub`).
    #[must_use]
    pub fn from_client(client: SecretManagerService, config: GcpConfig) -> Self {
        GcpStore { client, config }
    }

    /// The store the `[secret]` section describes.
    pub async fn from_env(project: &str, version: &str) -> Result<Self, Error> {
        Self::new(GcpConfig::new(project).version(version)).await
    }

    fn secret_name(&self, key: &SecretKey) -> String {
        secret_name(&self.config.project, key.as_str())
    }
}

fn secret_name(project: &str, secret: &str) -> String {
    format!("projects/{project}/secrets/{secret}")
}

fn version_name(project: &str, secret: &str, version: &str) -> String {
    format!("{}/versions/{version}", secret_name(project, secret))
}

/// `projects/p/secrets/s/versions/7` → `7`.
fn version_of(name: &str) -> Option<&str> {
    let (_, v) = name.rsplit_once("/versions/")?;
    (!v.is_empty() && !v.contains('/')).then_some(v)
}

/// Turns a client error into ours, from status codes and Google's status messages
/// (which describe the request, never the payload); HTTP bodies are never quoted.
fn map_error(e: &google_cloud_gax::error::Error, operation: Operation, key: &str) -> Error {
    let key = key.to_owned();
    if let Some(status) = e.status() {
        let reason = if status.message.is_empty() {
            status.code.name().to_owned()
        } else {
            format!("{}: {}", status.code.name(), status.message)
        };
        return match status.code {
            Code::NotFound => Error::NotFound {
                backend: BACKEND,
                key,
            },
            Code::PermissionDenied | Code::Unauthenticated => Error::PermissionDenied {
                backend: BACKEND,
                key,
                reason,
            },
            Code::AlreadyExists => Error::Conflict {
                backend: BACKEND,
                key,
                expected: "no secret".into(),
            },
            Code::Unavailable | Code::DeadlineExceeded => Error::Unreachable {
                backend: BACKEND,
                key,
                reason,
            },
            Code::ResourceExhausted | Code::Internal | Code::Aborted | Code::Unknown => {
                Error::Backend {
                    backend: BACKEND,
                    operation,
                    key,
                    reason,
                    transient: true,
                }
            }
            _ => Error::Backend {
                backend: BACKEND,
                operation,
                key,
                reason,
                transient: false,
            },
        };
    }
    if e.is_authentication() {
        return Error::PermissionDenied {
            backend: BACKEND,
            key,
            reason: format!("no usable credentials: {}", describe(e)),
        };
    }
    if e.is_timeout() || e.is_connect() || e.is_io() || e.is_transport() || e.is_exhausted() {
        return Error::Unreachable {
            backend: BACKEND,
            key,
            reason: describe(e),
        };
    }
    if let Some(code) = e.http_status_code() {
        return status_error(BACKEND, operation, key, code, format!("HTTP {code}"));
    }
    let reason = if e.is_deserialization() {
        "the response was not what Secret Manager sends".to_owned()
    } else if e.is_serialization() || e.is_binding() {
        format!("the request could not be built: {}", describe(e))
    } else {
        "the request failed".to_owned()
    };
    Error::Backend {
        backend: BACKEND,
        operation,
        key,
        reason,
        transient: false,
    }
}

/// A payload as text; not UTF-8 is [`Error::Malformed`].
fn payload_text(data: bytes::Bytes, key: &str) -> Result<SecretString, Error> {
    // Take the only reference if we can, so the buffer can be wiped after copying.
    let mut owned = match data.try_into_mut() {
        Ok(mut unique) => {
            let v = unique.to_vec();
            unique.zeroize_bytes();
            v
        }
        Err(shared) => shared.to_vec(),
    };
    if let Ok(text) = std::str::from_utf8(&owned) {
        let value = SecretString::from(text);
        owned.zeroize();
        Ok(value)
    } else {
        owned.zeroize();
        Err(Error::Malformed {
            backend: BACKEND,
            key: key.to_owned(),
            reason: "the payload is not UTF-8 text: store the credentials JSON".into(),
        })
    }
}

trait ZeroizeBytes {
    fn zeroize_bytes(&mut self);
}

impl ZeroizeBytes for bytes::BytesMut {
    fn zeroize_bytes(&mut self) {
        self.as_mut().zeroize();
    }
}

fn missing_version(operation: Operation, key: &str) -> Error {
    Error::Backend {
        backend: BACKEND,
        operation,
        key: key.to_owned(),
        reason: "the response named no secret version".into(),
        transient: false,
    }
}

impl fmt::Debug for GcpStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for GcpStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GCP Secret Manager in project {} (reading version {})",
            self.config.project, self.config.version
        )?;
        if let Some(e) = &self.config.endpoint {
            write!(f, " at {e}")?;
        }
        Ok(())
    }
}

#[async_trait]
impl SecretStore for GcpStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::versioned().with_compare_and_set(false)
    }

    async fn get(&self, key: &SecretKey, options: GetOptions) -> Result<SecretValue, Error> {
        let name = self.secret_name(key);
        Error::only_current_stage(BACKEND, Operation::Get, options.stage)?;
        let response = self
            .client
            .access_secret_version()
            .set_name(version_name(
                &self.config.project,
                key.as_str(),
                &self.config.version,
            ))
            .send()
            .await
            .map_err(|e| map_error(&e, Operation::Get, &name))?;
        let version = version_of(&response.name)
            .map(Version::new)
            .ok_or_else(|| missing_version(Operation::Get, &name))?;
        let data = response.payload.map(|p| p.data).unwrap_or_default();
        Ok(SecretValue {
            value: payload_text(data, &name)?,
            version,
        })
    }

    async fn put(
        &self,
        key: &SecretKey,
        value: SecretString,
        options: PutOptions,
    ) -> Result<Version, Error> {
        let name = self.secret_name(key);
        Error::only_current_stage(BACKEND, Operation::Put, options.stage)?;
        match &options.mode {
            PutMode::Update(_) => {
                return Err(Error::not_implemented(
                    BACKEND,
                    Operation::Put,
                    Some("Secret Manager has no compare-and-set on versions: overwrite"),
                ));
            }
            PutMode::Create => {
                self.create(key, &name).await?;
            }
            PutMode::Overwrite => {}
        }
        match self.add_version(key, &value, &name).await {
            Err(Error::NotFound { .. }) if options.mode == PutMode::Overwrite => {
                match self.create(key, &name).await {
                    // Created meanwhile by another writer: fine for an overwrite.
                    Ok(()) | Err(Error::Conflict { .. }) => {}
                    Err(other) => return Err(other),
                }
                self.add_version(key, &value, &name).await
            }
            other => other,
        }
    }

    async fn delete(&self, key: &SecretKey) -> Result<(), Error> {
        let name = self.secret_name(key);
        match self
            .client
            .delete_secret()
            .set_name(name.as_str())
            .send()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => match map_error(&e, Operation::Delete, &name) {
                Error::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }
}

impl GcpStore {
    async fn create(&self, key: &SecretKey, name: &str) -> Result<(), Error> {
        self.client
            .create_secret()
            .set_parent(format!("projects/{}", self.config.project))
            .set_secret_id(key.as_str())
            .set_secret(model::Secret::new().set_replication(
                model::Replication::new().set_automatic(model::replication::Automatic::new()),
            ))
            .send()
            .await
            .map_err(|e| map_error(&e, Operation::Put, name))?;
        Ok(())
    }

    async fn add_version(
        &self,
        key: &SecretKey,
        value: &SecretString,
        name: &str,
    ) -> Result<Version, Error> {
        let written = self
            .client
            .add_secret_version()
            .set_parent(self.secret_name(key))
            .set_payload(
                model::SecretPayload::new().set_data(bytes::Bytes::copy_from_slice(
                    value.expose_secret().as_bytes(),
                )),
            )
            .send()
            .await
            .map_err(|e| map_error(&e, Operation::Put, name))?;
        version_of(&written.name)
            .map(Version::new)
            .ok_or_else(|| missing_version(Operation::Put, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use google_cloud_gax::error::rpc::Status;

    #[test]
    fn names_are_built_and_parsed() {
        assert_eq!(secret_name("p", "pg"), "projects/p/secrets/pg");
        assert_eq!(
            version_name("p", "pg", "latest"),
            "projects/p/secrets/pg/versions/latest"
        );
        assert_eq!(version_of("projects/123/secrets/pg/versions/7"), Some("7"));
        assert_eq!(version_of("projects/123/secrets/pg"), None);
        assert_eq!(version_of("projects/123/secrets/pg/versions/"), None);
    }

    #[test]
    fn config_defaults_to_latest_and_rejects_slashes() {
        let c = GcpConfig::new("proj");
        assert_eq!(c.version, "latest");
        assert_eq!(c.clone().version("").version, "latest");
        assert_eq!(c.clone().version("3").version, "3");
        assert!(c.check().is_ok());
        let e = GcpConfig::new("a/b").check().unwrap_err();
        assert!(e.to_string().contains("project \"a/b\""), "{e}");
        assert!(GcpConfig::new("").check().is_err());
        assert!(GcpConfig::new("p").version("1/2").check().is_err());
    }

    fn service(code: Code) -> google_cloud_gax::error::Error {
        google_cloud_gax::error::Error::service(
            Status::default()
                .set_code(code)
                .set_message("Secret [projects/1/secrets/pg] not found or has no versions."),
        )
    }

    #[test]
    fn status_codes_map_to_ours() {
        let k = "projects/p/secrets/pg";
        assert!(map_error(&service(Code::NotFound), Operation::Get, k).is_not_found());
        let e = map_error(&service(Code::PermissionDenied), Operation::Get, k);
        assert!(matches!(e, Error::PermissionDenied { .. }), "{e:?}");
        let e = map_error(&service(Code::Unauthenticated), Operation::Get, k);
        assert!(matches!(e, Error::PermissionDenied { .. }), "{e:?}");
        let e = map_error(&service(Code::AlreadyExists), Operation::Put, k);
        assert!(e.is_conflict(), "{e:?}");
        let e = map_error(&service(Code::Unavailable), Operation::Get, k);
        assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
        for code in [
            Code::ResourceExhausted,
            Code::Internal,
            Code::DeadlineExceeded,
        ] {
            assert!(map_error(&service(code), Operation::Get, k).is_transient());
        }
        let e = map_error(&service(Code::FailedPrecondition), Operation::Get, k);
        assert!(!e.is_transient(), "{e:?}");
        assert!(e.to_string().contains("FAILED_PRECONDITION"), "{e}");
        let e = map_error(
            &google_cloud_gax::error::Error::timeout("deadline"),
            Operation::Get,
            k,
        );
        assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
        let e = map_error(
            &google_cloud_gax::error::Error::connect("connection refused"),
            Operation::Get,
            k,
        );
        assert!(e.is_transient(), "{e:?}");
        let e = map_error(
            &google_cloud_gax::error::Error::deser("bad json"),
            Operation::Get,
            k,
        );
        assert!(
            matches!(
                e,
                Error::Backend {
                    transient: false,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn payloads_must_be_utf8() {
        let ok = payload_text(bytes::Bytes::from_static("{\"a\":\"ü\"}".as_bytes()), "k").unwrap();
        assert_eq!(ok.expose_secret(), "{\"a\":\"ü\"}");
        let owned = bytes::Bytes::from(vec![b'h', b'i', 0xff]);
        let e = payload_text(owned, "k").unwrap_err();
        assert!(matches!(e, Error::Malformed { .. }), "{e:?}");
        assert!(!e.to_string().contains("hi"), "{e}");
    }
}
