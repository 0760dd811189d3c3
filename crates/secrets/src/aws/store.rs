//! The store itself (feature `aws`).

use std::fmt;

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use secrecy::{ExposeSecret, SecretString};

use crate::http::{describe, status_error};
use crate::{
    Capabilities, Error, GetOptions, Operation, PutMode, PutOptions, SecretKey, SecretStore,
    SecretValue, Stage, Version,
};

pub use aws_config;
pub use aws_sdk_secretsmanager;

const BACKEND: &str = "aws";
const CURRENT: &str = "AWSCURRENT";
const PENDING: &str = "AWSPENDING";

/// Secrets in AWS Secrets Manager; keys are secret names or ARNs, values are
/// `SecretString`s (any text), versions are `VersionId`s.
///
/// Secrets Manager has no compare-and-set: [`PutMode::Update`] is refused with
/// [`Error::NotImplemented`], and [`PutMode::Create`] is `CreateSecret` (atomic).
/// It has stages: a pending put labels the new version `AWSPENDING`, and
/// [`promote`](SecretStore::promote) moves `AWSCURRENT` to it and removes
/// `AWSPENDING`. A current put to a missing secret creates it. `delete` deletes at
/// once, without a recovery window (`ForceDeleteWithoutRecovery`).
#[derive(Clone)]
pub struct AwsStore {
    client: Client,
    region: Option<String>,
    endpoint: Option<String>,
}

impl AwsStore {
    /// A store on the SDK's default configuration chain (environment, profile, web
    /// identity, instance metadata), with an optional region and endpoint override.
    pub async fn from_env(region: Option<&str>, endpoint: Option<&str>) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region.to_owned()));
        }
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let config = loader.load().await;
        Self::from_sdk_config(&config)
    }

    /// A store on a ready SDK configuration.
    #[must_use]
    pub fn from_sdk_config(config: &aws_config::SdkConfig) -> Self {
        AwsStore {
            client: Client::new(config),
            region: config.region().map(ToString::to_string),
            endpoint: config.endpoint_url().map(str::to_owned),
        }
    }
}

/// Turns an SDK error into ours, from Secrets Manager's error codes; a code with no
/// meaning of its own means what its HTTP status does.
fn map_error<E>(e: &SdkError<E, HttpResponse>, operation: Operation, key: &SecretKey) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let key = key.to_string();
    match e {
        SdkError::DispatchFailure(f) => Error::Unreachable {
            backend: BACKEND,
            key,
            reason: f.as_connector_error().map_or_else(
                || "the request could not be sent".to_owned(),
                ToString::to_string,
            ),
        },
        SdkError::TimeoutError(_) => Error::Unreachable {
            backend: BACKEND,
            key,
            reason: "timed out".into(),
        },
        SdkError::ServiceError(_) => {
            let code = e.code().unwrap_or("unknown error");
            // Secrets Manager's messages describe the request, never the value.
            let reason = match e.message() {
                Some(m) => format!("{code}: {m}"),
                None => code.to_owned(),
            };
            match code {
                "ResourceNotFoundException" => Error::NotFound {
                    backend: BACKEND,
                    key,
                },
                "AccessDeniedException"
                | "UnrecognizedClientException"
                | "InvalidClientTokenId"
                | "InvalidSignatureException"
                | "ExpiredTokenException"
                | "DecryptionFailure" => Error::PermissionDenied {
                    backend: BACKEND,
                    key,
                    reason,
                },
                "ResourceExistsException" => Error::Conflict {
                    backend: BACKEND,
                    key,
                    expected: "no secret".into(),
                },
                "ThrottlingException" | "InternalServiceError" | "ServiceUnavailable" => {
                    Error::Backend {
                        backend: BACKEND,
                        operation,
                        key,
                        reason,
                        transient: true,
                    }
                }
                _ => match e.raw_response() {
                    Some(response) => {
                        status_error(BACKEND, operation, key, response.status().as_u16(), reason)
                    }
                    None => Error::Backend {
                        backend: BACKEND,
                        operation,
                        key,
                        reason,
                        transient: false,
                    },
                },
            }
        }
        SdkError::ResponseError(_) => Error::Backend {
            backend: BACKEND,
            operation,
            key,
            reason: "the response could not be read".into(),
            transient: true,
        },
        _ => Error::Config {
            backend: BACKEND,
            reason: format!("the request could not be built: {}", describe(e)),
        },
    }
}

fn missing_version(operation: Operation, key: &SecretKey) -> Error {
    Error::Backend {
        backend: BACKEND,
        operation,
        key: key.to_string(),
        reason: "the response carried no VersionId".into(),
        transient: false,
    }
}

impl fmt::Debug for AwsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsStore")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for AwsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AWS Secrets Manager")?;
        if let Some(r) = &self.region {
            write!(f, " in {r}")?;
        }
        if let Some(e) = &self.endpoint {
            write!(f, " at {e}")?;
        }
        Ok(())
    }
}

#[async_trait]
impl SecretStore for AwsStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::versioned()
            .with_compare_and_set(false)
            .with_stages(true)
    }

    async fn get(&self, key: &SecretKey, options: GetOptions) -> Result<SecretValue, Error> {
        let stage = match options.stage {
            Stage::Pending => PENDING,
            _ => CURRENT,
        };
        let mut output = self
            .client
            .get_secret_value()
            .secret_id(key.as_str())
            .version_stage(stage)
            .send()
            .await
            .map_err(|e| map_error(&e, Operation::Get, key))?;
        let version = output
            .version_id
            .take()
            .ok_or_else(|| missing_version(Operation::Get, key))?;
        let value = output
            .secret_string
            .take()
            .ok_or_else(|| Error::Malformed {
                backend: BACKEND,
                key: key.to_string(),
                reason: "it is a binary secret: store the credentials JSON as a SecretString"
                    .into(),
            })?;
        Ok(SecretValue {
            value: SecretString::from(value),
            version: Version::new(version),
        })
    }

    async fn put(
        &self,
        key: &SecretKey,
        value: SecretString,
        options: PutOptions,
    ) -> Result<Version, Error> {
        let pending = options.stage == Stage::Pending;
        match &options.mode {
            PutMode::Update(_) => {
                return Err(Error::not_implemented(
                    BACKEND,
                    Operation::Put,
                    Some(
                        "Secrets Manager has no compare-and-set: overwrite, or stage a pending version",
                    ),
                ));
            }
            PutMode::Create if pending => {
                return Err(Error::not_implemented(
                    BACKEND,
                    Operation::Put,
                    Some("a new secret cannot start with a pending version"),
                ));
            }
            PutMode::Create => return self.create(key, &value).await,
            PutMode::Overwrite => {}
        }
        let mut request = self
            .client
            .put_secret_value()
            .secret_id(key.as_str())
            .secret_string(value.expose_secret());
        if pending {
            request = request.version_stages(PENDING);
        }
        match request.send().await {
            Ok(mut out) => out
                .version_id
                .take()
                .map(Version::new)
                .ok_or_else(|| missing_version(Operation::Put, key)),
            Err(e) => match map_error(&e, Operation::Put, key) {
                Error::NotFound { .. } if !pending => self.create(key, &value).await,
                other => Err(other),
            },
        }
    }

    async fn delete(&self, key: &SecretKey) -> Result<(), Error> {
        match self
            .client
            .delete_secret()
            .secret_id(key.as_str())
            .force_delete_without_recovery(true)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match map_error(&e, Operation::Delete, key) {
                Error::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn promote(&self, key: &SecretKey, version: &Version) -> Result<(), Error> {
        let described = self
            .client
            .describe_secret()
            .secret_id(key.as_str())
            .send()
            .await
            .map_err(|e| map_error(&e, Operation::Promote, key))?;
        let stages = described.version_ids_to_stages.unwrap_or_default();
        let has =
            |id: &str, stage: &str| stages.get(id).is_some_and(|s| s.iter().any(|x| x == stage));
        if !has(version.as_str(), PENDING) {
            return Err(Error::Conflict {
                backend: BACKEND,
                key: key.to_string(),
                expected: format!("{version} labelled {PENDING}"),
            });
        }
        if !has(version.as_str(), CURRENT) {
            let current = stages
                .iter()
                .find(|(_, s)| s.iter().any(|x| x == CURRENT))
                .map(|(id, _)| id.clone());
            let mut request = self
                .client
                .update_secret_version_stage()
                .secret_id(key.as_str())
                .version_stage(CURRENT)
                .move_to_version_id(version.as_str());
            if let Some(current) = current {
                request = request.remove_from_version_id(current);
            }
            request
                .send()
                .await
                .map_err(|e| map_error(&e, Operation::Promote, key))?;
        }
        self.client
            .update_secret_version_stage()
            .secret_id(key.as_str())
            .version_stage(PENDING)
            .remove_from_version_id(version.as_str())
            .send()
            .await
            .map_err(|e| map_error(&e, Operation::Promote, key))?;
        Ok(())
    }
}

impl AwsStore {
    async fn create(&self, key: &SecretKey, value: &SecretString) -> Result<Version, Error> {
        let mut out = self
            .client
            .create_secret()
            .name(key.as_str())
            .secret_string(value.expose_secret())
            .send()
            .await
            .map_err(|e| map_error(&e, Operation::Put, key))?;
        out.version_id
            .take()
            .map(Version::new)
            .ok_or_else(|| missing_version(Operation::Put, key))
    }
}
