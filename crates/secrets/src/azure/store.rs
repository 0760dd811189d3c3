//! The store itself (feature `azure`).

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use azure_core::credentials::{
    AccessToken, Secret as AzureSecret, TokenCredential, TokenRequestOptions,
};
use azure_core::error::ErrorKind;
use azure_identity::{
    ClientSecretCredential, DeveloperToolsCredential, ManagedIdentityCredential,
    WorkloadIdentityCredential,
};
use azure_security_keyvault_secrets::SecretClient;
use azure_security_keyvault_secrets::models::SetSecretParameters;
use secrecy::{ExposeSecret, SecretString};

use crate::http::{describe, status_error};
use crate::{
    Capabilities, Error, GetOptions, Operation, PutMode, PutOptions, SecretKey, SecretStore,
    SecretValue, Version,
};

pub use azure_core;
pub use azure_identity;
pub use azure_security_keyvault_secrets;

const BACKEND: &str = "azure";

/// Which identity the store uses with Key Vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AzureCredential {
    /// The first that works of: service principal ([`AzureCredential::ClientSecret`],
    /// when its variables are set), workload identity (when
    /// `$AZURE_FEDERATED_TOKEN_FILE` is set), managed identity, developer tools.
    #[default]
    Auto,
    /// The Azure CLI's or Azure Developer CLI's login (`az login`, `azd auth login`).
    Developer,
    /// The managed identity of the VM, App Service, Functions or container
    /// (`$AZURE_CLIENT_ID` selects a user-assigned one).
    ManagedIdentity,
    /// Kubernetes workload identity: `$AZURE_TENANT_ID`, `$AZURE_CLIENT_ID`,
    /// `$AZURE_FEDERATED_TOKEN_FILE`.
    WorkloadIdentity,
    /// A service principal: `$AZURE_TENANT_ID`, `$AZURE_CLIENT_ID`,
    /// `$AZURE_CLIENT_SECRET`.
    ClientSecret,
}

impl AzureCredential {
    /// The credential `$PGWARDEN_AZURE_CREDENTIAL` names: `auto` (or unset),
    /// `developer`, `managed-identity`, `workload-identity` or `client-secret`.
    pub fn from_env() -> Result<Self, Error> {
        match std::env::var("PGWARDEN_AZURE_CREDENTIAL") {
            Ok(v) => Self::parse(&v),
            Err(_) => Ok(AzureCredential::Auto),
        }
    }

    /// A credential from its name (see [`AzureCredential::from_env`]).
    pub fn parse(name: &str) -> Result<Self, Error> {
        Ok(match name.trim() {
            "" | "auto" => AzureCredential::Auto,
            "developer" => AzureCredential::Developer,
            "managed-identity" | "managed" => AzureCredential::ManagedIdentity,
            "workload-identity" | "workload" => AzureCredential::WorkloadIdentity,
            "client-secret" => AzureCredential::ClientSecret,
            other => {
                return Err(Error::Config {
                    backend: BACKEND,
                    reason: format!(
                        "unknown credential {other:?} in $PGWARDEN_AZURE_CREDENTIAL: use auto, developer, managed-identity, workload-identity or client-secret"
                    ),
                });
            }
        })
    }

    /// The `azure_identity` credential.
    pub fn build(self) -> Result<Arc<dyn TokenCredential>, Error> {
        let config = |what: &str, e: &azure_core::Error| Error::Config {
            backend: BACKEND,
            reason: format!("cannot set up the {what} credential: {e}"),
        };
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let client_secret = || -> Result<Arc<dyn TokenCredential>, Error> {
            let (Some(tenant), Some(client), Some(secret)) = (
                var("AZURE_TENANT_ID"),
                var("AZURE_CLIENT_ID"),
                var("AZURE_CLIENT_SECRET"),
            ) else {
                return Err(Error::Config {
                    backend: BACKEND,
                    reason: "the client-secret credential needs $AZURE_TENANT_ID, $AZURE_CLIENT_ID and $AZURE_CLIENT_SECRET".into(),
                });
            };
            let c = ClientSecretCredential::new(&tenant, client, AzureSecret::new(secret), None)
                .map_err(|e| config("client-secret", &e))?;
            Ok(c)
        };
        let workload = || -> Result<Arc<dyn TokenCredential>, Error> {
            let c = WorkloadIdentityCredential::new(None)
                .map_err(|e| config("workload-identity", &e))?;
            Ok(c)
        };
        let managed = || -> Result<Arc<dyn TokenCredential>, Error> {
            let c =
                ManagedIdentityCredential::new(None).map_err(|e| config("managed-identity", &e))?;
            Ok(c)
        };
        let developer = || -> Result<Arc<dyn TokenCredential>, Error> {
            let c = DeveloperToolsCredential::new(None).map_err(|e| config("developer", &e))?;
            Ok(c)
        };
        match self {
            AzureCredential::Developer => developer(),
            AzureCredential::ManagedIdentity => managed(),
            AzureCredential::WorkloadIdentity => workload(),
            AzureCredential::ClientSecret => client_secret(),
            AzureCredential::Auto => {
                let mut sources = Vec::new();
                if var("AZURE_CLIENT_SECRET").is_some() {
                    sources.push(("client-secret", client_secret()?));
                }
                if var("AZURE_FEDERATED_TOKEN_FILE").is_some() {
                    sources.push(("workload-identity", workload()?));
                }
                if let Ok(c) = managed() {
                    sources.push(("managed-identity", c));
                }
                if let Ok(c) = developer() {
                    sources.push(("developer", c));
                }
                Ok(Arc::new(ChainCredential {
                    sources,
                    chosen: Mutex::new(None),
                }))
            }
        }
    }
}

/// Tries each credential in turn and sticks to the first that gives a token.
struct ChainCredential {
    sources: Vec<(&'static str, Arc<dyn TokenCredential>)>,
    chosen: Mutex<Option<usize>>,
}

impl fmt::Debug for ChainCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.sources.iter().map(|(n, _)| *n).collect();
        f.debug_struct("ChainCredential")
            .field("sources", &names)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TokenCredential for ChainCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let chosen = *self
            .chosen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(i) = chosen {
            return self.sources[i].1.get_token(scopes, options).await;
        }
        let mut failures = Vec::new();
        for (i, (name, source)) in self.sources.iter().enumerate() {
            match source.get_token(scopes, options.clone()).await {
                Ok(token) => {
                    *self
                        .chosen
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(i);
                    return Ok(token);
                }
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
        Err(azure_core::Error::with_message(
            ErrorKind::Credential,
            if failures.is_empty() {
                "no credential is available".to_owned()
            } else {
                format!("no credential gave a token ({})", failures.join("; "))
            },
        ))
    }
}

/// Secrets in one Azure Key Vault; keys are secret names, values are secret values
/// (any text), versions are Key Vault's secret versions (the last segment of the
/// secret id).
///
/// Every put sets a new version. Key Vault has no compare-and-set:
/// [`PutMode::Update`] is refused with [`Error::NotImplemented`], and
/// [`PutMode::Create`] is a read then a write, so it is *not* atomic against a
/// concurrent writer. No stages: pending passwords live in the document. `delete`
/// deletes the secret; on vaults with soft delete (the default) it stays
/// recoverable, and its name cannot be set again, until it is purged or the
/// retention period ends.
pub struct AzureStore {
    client: SecretClient,
    vault_url: String,
}

impl AzureStore {
    /// A store on `vault_url` (`https://<vault>.vault.azure.net`) with `credential`.
    pub fn new(vault_url: &str, credential: Arc<dyn TokenCredential>) -> Result<Self, Error> {
        let vault_url = check_vault_url(vault_url)?;
        let client =
            SecretClient::new(&vault_url, credential, None).map_err(|e| Error::Config {
                backend: BACKEND,
                reason: format!("cannot build the Key Vault client: {e}"),
            })?;
        Ok(AzureStore { client, vault_url })
    }

    /// The store the `[secret]` section describes, with the credential
    /// `$PGWARDEN_AZURE_CREDENTIAL` names ([`AzureCredential::Auto`] by default).
    pub fn from_env(vault_url: &str) -> Result<Self, Error> {
        let credential = AzureCredential::from_env()?.build()?;
        Self::new(vault_url, credential)
    }

    fn name(&self, key: &SecretKey) -> String {
        format!("{}/secrets/{}", self.vault_url, key)
    }
}

/// `https://v.vault.azure.net/` → `https://v.vault.azure.net`; anything else than an
/// http(s) URL without a path is a [`Error::Config`].
fn check_vault_url(url: &str) -> Result<String, Error> {
    let trimmed = url.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains('/') => Ok(trimmed.to_owned()),
        _ => Err(Error::Config {
            backend: BACKEND,
            reason: format!(
                "vault_url {url:?} is not a vault URL such as https://<vault>.vault.azure.net"
            ),
        }),
    }
}

/// Key Vault names: 1-127 ASCII letters, digits and `-`.
fn check_name(key: &SecretKey, name: &str) -> Result<(), Error> {
    let k = key.as_str();
    if !k.is_empty() && k.len() <= 127 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        Ok(())
    } else {
        Err(Error::Config {
            backend: BACKEND,
            reason: format!("{name}: a Key Vault secret name has 1 to 127 letters, digits and '-'"),
        })
    }
}

/// `https://v.vault.azure.net/secrets/name/0123abcd` → `0123abcd`.
fn version_of(id: &str) -> Option<&str> {
    let (before, version) = id.rsplit_once('/')?;
    let (before, _name) = before.rsplit_once('/')?;
    (before.ends_with("/secrets") && !version.is_empty()).then_some(version)
}

/// Turns a client error into ours, from the HTTP status and Key Vault's error code;
/// response bodies are never quoted.
fn map_error(e: &azure_core::Error, operation: Operation, key: &str) -> Error {
    let key = key.to_owned();
    match e.kind() {
        ErrorKind::HttpResponse {
            status, error_code, ..
        } => {
            let code = u16::from(*status);
            let reason = match error_code {
                Some(c) => format!("HTTP {code} {c}"),
                None => format!("HTTP {code}"),
            };
            match code {
                409 => Error::Backend {
                    backend: BACKEND,
                    operation,
                    key,
                    reason: format!(
                        "{reason}: a deleted secret of this name is still recoverable; recover or purge it"
                    ),
                    transient: false,
                },
                _ => status_error(BACKEND, operation, key, code, reason),
            }
        }
        ErrorKind::Connection | ErrorKind::Io => Error::Unreachable {
            backend: BACKEND,
            key,
            reason: describe(e),
        },
        ErrorKind::Credential => Error::PermissionDenied {
            backend: BACKEND,
            key,
            reason: format!("no usable credential: {}", describe(e)),
        },
        ErrorKind::DataConversion => Error::Backend {
            backend: BACKEND,
            operation,
            key,
            reason: "the response was not what Key Vault sends".into(),
            transient: false,
        },
        ErrorKind::Other => Error::Backend {
            backend: BACKEND,
            operation,
            key,
            reason: describe(e),
            transient: false,
        },
    }
}

fn missing_version(operation: Operation, key: &str) -> Error {
    Error::Backend {
        backend: BACKEND,
        operation,
        key: key.to_owned(),
        reason: "the response carried no secret id with a version".into(),
        transient: false,
    }
}

impl fmt::Debug for AzureStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureStore")
            .field("vault_url", &self.vault_url)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for AzureStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Azure Key Vault {}", self.vault_url)
    }
}

#[async_trait]
impl SecretStore for AzureStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::versioned().with_compare_and_set(false)
    }

    async fn get(&self, key: &SecretKey, options: GetOptions) -> Result<SecretValue, Error> {
        let name = self.name(key);
        Error::only_current_stage(BACKEND, Operation::Get, options.stage)?;
        check_name(key, &name)?;
        let secret = self
            .client
            .get_secret(key.as_str(), None)
            .await
            .and_then(azure_core::http::Response::into_model)
            .map_err(|e| map_error(&e, Operation::Get, &name))?;
        let version = secret
            .id
            .as_deref()
            .and_then(version_of)
            .map(Version::new)
            .ok_or_else(|| missing_version(Operation::Get, &name))?;
        let value = secret
            .value
            .map(SecretString::from)
            .ok_or_else(|| Error::Malformed {
                backend: BACKEND,
                key: name.clone(),
                reason: "the secret has no value".into(),
            })?;
        Ok(SecretValue { value, version })
    }

    async fn put(
        &self,
        key: &SecretKey,
        value: SecretString,
        options: PutOptions,
    ) -> Result<Version, Error> {
        let name = self.name(key);
        Error::only_current_stage(BACKEND, Operation::Put, options.stage)?;
        check_name(key, &name)?;
        match &options.mode {
            PutMode::Update(_) => {
                return Err(Error::not_implemented(
                    BACKEND,
                    Operation::Put,
                    Some("Key Vault has no compare-and-set: overwrite"),
                ));
            }
            PutMode::Create => match self.get(key, GetOptions::default()).await {
                Ok(_) => {
                    return Err(Error::Conflict {
                        backend: BACKEND,
                        key: name,
                        expected: "no secret".into(),
                    });
                }
                Err(Error::NotFound { .. }) => {}
                Err(other) => return Err(other),
            },
            PutMode::Overwrite => {}
        }
        let parameters = SetSecretParameters {
            value: Some(value.expose_secret().to_owned()),
            content_type: Some("application/json".into()),
            ..SetSecretParameters::default()
        };
        let body = parameters
            .try_into()
            .map_err(|e: azure_core::Error| Error::Backend {
                backend: BACKEND,
                operation: Operation::Put,
                key: name.clone(),
                reason: format!("the request could not be built: {}", e.kind()),
                transient: false,
            })?;
        let written = self
            .client
            .set_secret(key.as_str(), body, None)
            .await
            .and_then(azure_core::http::Response::into_model)
            .map_err(|e| map_error(&e, Operation::Put, &name))?;
        written
            .id
            .as_deref()
            .and_then(version_of)
            .map(Version::new)
            .ok_or_else(|| missing_version(Operation::Put, &name))
    }

    async fn delete(&self, key: &SecretKey) -> Result<(), Error> {
        let name = self.name(key);
        check_name(key, &name)?;
        match self.client.delete_secret(key.as_str(), None).await {
            Ok(_) => Ok(()),
            Err(e) => match map_error(&e, Operation::Delete, &name) {
                Error::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::http::StatusCode;

    #[test]
    fn vault_urls_are_checked_and_trimmed() {
        assert_eq!(
            check_vault_url("https://v.vault.azure.net/").unwrap(),
            "https://v.vault.azure.net"
        );
        assert!(check_vault_url("v.vault.azure.net").is_err());
        assert!(check_vault_url("https://v.vault.azure.net/secrets/x").is_err());
        assert!(check_vault_url("https://").is_err());
        assert!(
            AzureStore::new(
                "ftp://x",
                Arc::new(ChainCredential {
                    sources: vec![],
                    chosen: Mutex::new(None),
                })
            )
            .is_err()
        );
    }

    #[test]
    fn names_and_versions() {
        assert!(check_name(&SecretKey::new("pg-orders-1"), "n").is_ok());
        assert!(check_name(&SecretKey::new("pg/orders"), "n").is_err());
        assert!(check_name(&SecretKey::new(""), "n").is_err());
        assert_eq!(
            version_of("https://v.vault.azure.net/secrets/pg/0123abcd"),
            Some("0123abcd")
        );
        assert_eq!(version_of("https://v.vault.azure.net/secrets/pg"), None);
    }

    #[test]
    fn credential_names_parse() {
        assert_eq!(AzureCredential::parse("").unwrap(), AzureCredential::Auto);
        assert_eq!(
            AzureCredential::parse("managed-identity").unwrap(),
            AzureCredential::ManagedIdentity
        );
        assert_eq!(
            AzureCredential::parse("developer").unwrap(),
            AzureCredential::Developer
        );
        let e = AzureCredential::parse("magic").unwrap_err();
        assert!(e.to_string().contains("PGWARDEN_AZURE_CREDENTIAL"), "{e}");
    }

    fn http(code: u16, error_code: &str) -> azure_core::Error {
        azure_core::Error::new(
            ErrorKind::HttpResponse {
                status: StatusCode::from(code),
                error_code: Some(error_code.into()),
                raw_response: None,
            },
            "boom",
        )
    }

    #[test]
    fn errors_map_to_ours() {
        let k = "https://v.vault.azure.net/secrets/pg";
        assert!(map_error(&http(404, "SecretNotFound"), Operation::Get, k).is_not_found());
        let e = map_error(&http(403, "Forbidden"), Operation::Get, k);
        assert!(matches!(e, Error::PermissionDenied { .. }), "{e:?}");
        assert!(e.to_string().contains("HTTP 403 Forbidden"), "{e}");
        let e = map_error(&http(401, "Unauthorized"), Operation::Get, k);
        assert!(matches!(e, Error::PermissionDenied { .. }), "{e:?}");
        for code in [429, 500, 503] {
            assert!(map_error(&http(code, "x"), Operation::Get, k).is_transient());
        }
        let e = map_error(&http(409, "Conflict"), Operation::Put, k);
        assert!(e.to_string().contains("recover or purge"), "{e}");
        assert!(!map_error(&http(400, "BadParameter"), Operation::Put, k).is_transient());
        let e = map_error(
            &azure_core::Error::with_message(ErrorKind::Connection, "connection refused"),
            Operation::Get,
            k,
        );
        assert!(
            matches!(e, Error::Unreachable { .. }) && e.is_transient(),
            "{e:?}"
        );
        let e = map_error(
            &azure_core::Error::with_message(ErrorKind::Credential, "az not found"),
            Operation::Get,
            k,
        );
        assert!(matches!(e, Error::PermissionDenied { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn an_empty_chain_says_no_credential() {
        let chain = ChainCredential {
            sources: vec![],
            chosen: Mutex::new(None),
        };
        let e = chain.get_token(&["s"], None).await.unwrap_err();
        assert_eq!(*e.kind(), ErrorKind::Credential);
    }
}
