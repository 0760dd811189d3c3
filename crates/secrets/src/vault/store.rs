//! The store itself (feature `vault`).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use vaultrs::api::kv2::requests::{
    DeleteSecretMetadataRequest, ReadSecretRequest, SetSecretRequest, SetSecretRequestOptions,
};
use vaultrs::client::{Client as _, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use crate::credentials::zeroize_json;
use crate::http::{describe, status_error};
use crate::{
    Capabilities, Error, GetOptions, Operation, PutMode, PutOptions, SecretKey, SecretStore,
    SecretValue, Version,
};

const BACKEND: &str = "vault";

/// How the store logs in.
#[derive(Clone)]
#[non_exhaustive]
pub enum VaultAuth {
    /// A token (`$VAULT_TOKEN`).
    Token(SecretString),
    /// `AppRole` login at `mount` (usually `approle`).
    AppRole {
        /// The auth mount.
        mount: String,
        /// The role id.
        role_id: String,
        /// The secret id.
        secret_id: SecretString,
    },
}

impl fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VaultAuth::Token(_) => f.write_str("Token(***)"),
            VaultAuth::AppRole { mount, role_id, .. } => f
                .debug_struct("AppRole")
                .field("mount", mount)
                .field("role_id", role_id)
                .field("secret_id", &"***")
                .finish(),
        }
    }
}

/// Where and how to reach Vault.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VaultConfig {
    /// Server address, e.g. `https://vault.example.com:8200`.
    pub address: String,
    /// The KV v2 mount (usually `secret`).
    pub mount: String,
    /// Vault Enterprise / OpenBao namespace.
    pub namespace: Option<String>,
    /// How to log in.
    pub auth: VaultAuth,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl VaultConfig {
    /// A config with token auth and a 30 s timeout.
    #[must_use]
    pub fn new(address: impl Into<String>, mount: impl Into<String>, token: SecretString) -> Self {
        VaultConfig {
            address: address.into(),
            mount: mount.into(),
            namespace: None,
            auth: VaultAuth::Token(token),
            timeout: Duration::from_secs(30),
        }
    }

    /// The same with a namespace.
    #[must_use]
    pub fn namespace(mut self, namespace: Option<String>) -> Self {
        self.namespace = namespace;
        self
    }

    /// The same with another auth method.
    #[must_use]
    pub fn auth(mut self, auth: VaultAuth) -> Self {
        self.auth = auth;
        self
    }
}

/// Secrets in a Vault or OpenBao KV v2 mount; keys are paths under the mount.
///
/// Every put makes a new KV version; [`PutMode::Create`] and [`PutMode::Update`] use
/// KV v2's `cas` parameter, so compare-and-set is atomic on the server. Values must be
/// JSON objects (KV v2 stores fields). `delete` removes the metadata, so every version.
/// Pending passwords live in the document (no stages).
pub struct VaultStore {
    client: VaultClient,
    address: String,
    mount: String,
    namespace: Option<String>,
}

impl VaultStore {
    /// Connects (and logs in, for `AppRole`).
    pub async fn new(config: VaultConfig) -> Result<Self, Error> {
        let config_error = |reason: String| Error::Config {
            backend: BACKEND,
            reason,
        };
        let mut settings = VaultClientSettingsBuilder::default();
        settings
            .address(config.address.as_str())
            .timeout(Some(config.timeout));
        if let Some(ns) = &config.namespace {
            settings.set_namespace(ns.clone());
        }
        if let VaultAuth::Token(token) = &config.auth {
            settings.token(token.expose_secret());
        } else {
            settings.token("");
        }
        let settings = settings
            .build()
            .map_err(|e| config_error(format!("invalid settings: {e}")))?;
        let mut client = VaultClient::new(settings)
            .map_err(|e| config_error(format!("cannot build the client: {}", describe(&e))))?;
        if let VaultAuth::AppRole {
            mount,
            role_id,
            secret_id,
        } = &config.auth
        {
            let auth =
                vaultrs::auth::approle::login(&client, mount, role_id, secret_id.expose_secret())
                    .await
                    .map_err(|e| map_error(&e, Operation::Get, &format!("auth/{mount}/login")))?;
            let token = SecretString::from(auth.client_token);
            client.set_token(token.expose_secret());
        }
        Ok(VaultStore {
            client,
            address: config.address,
            mount: config.mount,
            namespace: config.namespace,
        })
    }

    /// The store the `[secret]` section describes: the address from the section or
    /// `$VAULT_ADDR`; a token from `$VAULT_TOKEN`, else `AppRole` from
    /// `$VAULT_ROLE_ID` and `$VAULT_SECRET_ID` (auth mount `$VAULT_APPROLE_MOUNT`,
    /// default `approle`).
    pub async fn from_env(
        address: Option<&str>,
        mount: &str,
        namespace: Option<&str>,
    ) -> Result<Self, Error> {
        let address = match address {
            Some(a) => a.to_owned(),
            None => std::env::var("VAULT_ADDR").map_err(|_| Error::Config {
                backend: BACKEND,
                reason: "no address: set [secret] address or $VAULT_ADDR".into(),
            })?,
        };
        let nonempty = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let auth = if let Some(token) = nonempty("VAULT_TOKEN") {
            VaultAuth::Token(SecretString::from(token))
        } else if let (Some(role_id), Some(secret_id)) =
            (nonempty("VAULT_ROLE_ID"), nonempty("VAULT_SECRET_ID"))
        {
            VaultAuth::AppRole {
                mount: nonempty("VAULT_APPROLE_MOUNT").unwrap_or_else(|| "approle".into()),
                role_id,
                secret_id: SecretString::from(secret_id),
            }
        } else {
            return Err(Error::Config {
                backend: BACKEND,
                reason: "no credentials: set $VAULT_TOKEN, or $VAULT_ROLE_ID and $VAULT_SECRET_ID for AppRole".into(),
            });
        };
        let config = VaultConfig::new(address, mount, SecretString::from(""))
            .namespace(namespace.map(str::to_owned))
            .auth(auth);
        VaultStore::new(config).await
    }

    fn key_name(&self, key: &SecretKey) -> String {
        format!("{}/{}", self.mount, key)
    }
}

/// Turns a client error into ours. Never quotes response bodies: vaultrs keeps those
/// in `APIError.errors`, which only ever hold Vault's own messages.
fn map_error(e: &ClientError, operation: Operation, key: &str) -> Error {
    let key = key.to_owned();
    match e {
        ClientError::APIError { code: 400, errors }
            if errors.iter().any(|m| m.contains("check-and-set")) =>
        {
            Error::Conflict {
                backend: BACKEND,
                key,
                expected: "the version given".into(),
            }
        }
        ClientError::APIError { code, errors } => {
            let reason = format!("HTTP {code}: {}", errors.join("; "));
            status_error(BACKEND, operation, key, *code, reason)
        }
        ClientError::RestClientError { .. } => Error::Unreachable {
            backend: BACKEND,
            key,
            reason: describe(e),
        },
        ClientError::JsonParseError { .. } => Error::Backend {
            backend: BACKEND,
            operation,
            key,
            reason: "the response was not the JSON KV v2 sends".into(),
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

impl fmt::Debug for VaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultStore")
            .field("address", &self.address)
            .field("mount", &self.mount)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for VaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vault KV v2 at {} (mount {})", self.address, self.mount)?;
        if let Some(ns) = &self.namespace {
            write!(f, ", namespace {ns}")?;
        }
        Ok(())
    }
}

#[async_trait]
impl SecretStore for VaultStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::versioned().with_any_text(false)
    }

    async fn get(&self, key: &SecretKey, options: GetOptions) -> Result<SecretValue, Error> {
        let name = self.key_name(key);
        Error::only_current_stage(BACKEND, Operation::Get, options.stage)?;
        let endpoint = ReadSecretRequest::builder()
            .mount(self.mount.as_str())
            .path(key.as_str())
            .build()
            .map_err(|e| Error::Config {
                backend: BACKEND,
                reason: format!("bad key {key}: {e}"),
            })?;
        let mut response = vaultrs::api::exec_with_result(&self.client, endpoint)
            .await
            .map_err(|e| map_error(&e, Operation::Get, &name))?;
        // A soft-deleted or destroyed latest version reads as null data.
        if response.data.is_null() {
            return Err(Error::NotFound {
                backend: BACKEND,
                key: name,
            });
        }
        let value = SecretString::from(serde_json::to_string(&response.data).unwrap_or_default());
        zeroize_json(&mut response.data);
        Ok(SecretValue {
            value,
            version: Version::new(response.metadata.version.to_string()),
        })
    }

    async fn put(
        &self,
        key: &SecretKey,
        value: SecretString,
        options: PutOptions,
    ) -> Result<Version, Error> {
        let name = self.key_name(key);
        Error::only_current_stage(BACKEND, Operation::Put, options.stage)?;
        let data = match serde_json::from_str::<Value>(value.expose_secret()) {
            Ok(v @ Value::Object(_)) => v,
            Ok(mut other) => {
                zeroize_json(&mut other);
                return Err(Error::Malformed {
                    backend: BACKEND,
                    key: name,
                    reason: "KV v2 keeps JSON objects only".into(),
                });
            }
            Err(_) => {
                return Err(Error::Malformed {
                    backend: BACKEND,
                    key: name,
                    reason: "KV v2 keeps JSON objects only, and this is not JSON".into(),
                });
            }
        };
        let cas = match &options.mode {
            PutMode::Overwrite => None,
            PutMode::Create => Some(0),
            PutMode::Update(v) => Some(v.as_str().parse::<u32>().map_err(|_| Error::Conflict {
                backend: BACKEND,
                key: name.clone(),
                expected: v.to_string(),
            })?),
        };
        let mut builder = SetSecretRequest::builder();
        builder
            .mount(self.mount.as_str())
            .path(key.as_str())
            .data(data);
        if let Some(cas) = cas {
            builder.options(SetSecretRequestOptions { cas });
        }
        let endpoint = builder.build().map_err(|e| Error::Config {
            backend: BACKEND,
            reason: format!("bad key {key}: {e}"),
        })?;
        let written = vaultrs::api::exec_with_result(&self.client, endpoint)
            .await
            .map_err(|e| match map_error(&e, Operation::Put, &name) {
                Error::Conflict { backend, key, .. } => Error::Conflict {
                    backend,
                    key,
                    expected: match &options.mode {
                        PutMode::Update(v) => v.to_string(),
                        _ => "no secret".into(),
                    },
                },
                other => other,
            })?;
        Ok(Version::new(written.version.to_string()))
    }

    async fn delete(&self, key: &SecretKey) -> Result<(), Error> {
        let name = self.key_name(key);
        let endpoint = DeleteSecretMetadataRequest::builder()
            .mount(self.mount.as_str())
            .path(key.as_str())
            .build()
            .map_err(|e| Error::Config {
                backend: BACKEND,
                reason: format!("bad key {key}: {e}"),
            })?;
        match vaultrs::api::exec_with_empty(&self.client, endpoint).await {
            Ok(()) => Ok(()),
            Err(e) => match map_error(&e, Operation::Delete, &name) {
                Error::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }
}
