//! The one public error of this crate.
//!
//! Every variant names the backend and, where there is one, the key, and says what to
//! fix. None ever carries a secret value: backends turn their client's errors into a
//! `reason` written from status codes and error codes, never from response bodies
//! that could echo a value, and JSON problems are described by position and type only.

use std::fmt;

/// Which operation an error or a scripted failure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// [`SecretStore::get`](crate::SecretStore::get).
    Get,
    /// [`SecretStore::put`](crate::SecretStore::put).
    Put,
    /// [`SecretStore::delete`](crate::SecretStore::delete).
    Delete,
    /// [`SecretStore::promote`](crate::SecretStore::promote).
    Promote,
}

impl Operation {
    /// The method name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Operation::Get => "get",
            Operation::Put => "put",
            Operation::Delete => "delete",
            Operation::Promote => "promote",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A secret store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The secret does not exist (or has no version in the asked-for stage).
    #[error(
        "{backend} secret {key} not found: create it with {{\"username\": ..., \"password\": ...}} or fix the [secret] section"
    )]
    NotFound {
        /// The backend, e.g. `vault`.
        backend: &'static str,
        /// The key that was looked up.
        key: String,
    },
    /// The store refused our identity.
    #[error(
        "{backend} denied access to secret {key} ({reason}): check the credentials pgwarden uses for {backend} and their policy"
    )]
    PermissionDenied {
        /// The backend.
        backend: &'static str,
        /// The key.
        key: String,
        /// What the store said (a status or error code, never the value).
        reason: String,
    },
    /// The store could not be reached (network, DNS, TLS, timeout, 5xx). Transient.
    #[error(
        "{backend} secret store is unreachable while reading or writing {key} ({reason}): check its address and that it is running"
    )]
    Unreachable {
        /// The backend.
        backend: &'static str,
        /// The key.
        key: String,
        /// What went wrong.
        reason: String,
    },
    /// The secret exists but is not what pgwarden needs.
    #[error("{backend} secret {key} is malformed: {reason}")]
    Malformed {
        /// The backend.
        backend: &'static str,
        /// The key.
        key: String,
        /// What is wrong: not JSON (with the position), not an object, a missing or
        /// non-string `username`/`password`.
        reason: String,
    },
    /// A compare-and-set precondition failed: someone else wrote the secret first.
    #[error(
        "{backend} secret {key} changed concurrently (expected {expected}): read it again and retry"
    )]
    Conflict {
        /// The backend.
        backend: &'static str,
        /// The key.
        key: String,
        /// The precondition that failed: a version, or `no secret` for a create.
        expected: String,
    },
    /// The backend cannot do this (e.g. writing to environment variables).
    #[error("the {backend} secret store does not support {operation}{}", hint.as_deref().map(|h| format!(": {h}")).unwrap_or_default())]
    NotImplemented {
        /// The operation.
        operation: &'static str,
        /// The backend.
        backend: &'static str,
        /// What to do instead, if anything.
        hint: Option<String>,
    },
    /// The `[secret]` section names a backend this build does not include.
    #[error(
        "secret backend {backend} is not compiled into this build: enable the cargo feature \"{feature}\" of pgwarden-secrets"
    )]
    FeatureDisabled {
        /// The backend.
        backend: &'static str,
        /// The cargo feature that adds it.
        feature: &'static str,
    },
    /// The `[secret]` section names a backend this crate does not know.
    #[error("\"{name}\" is not a secret backend (valid: {valid}): fix the [secret] section")]
    UnknownBackend {
        /// The name the section gives.
        name: String,
        /// The backends this crate knows.
        valid: String,
    },
    /// The store could not be set up: missing token, bad address, bad key, settings
    /// its backend refuses.
    #[error("{backend} secret store is misconfigured: {reason}")]
    Config {
        /// The backend.
        backend: &'static str,
        /// What to fix.
        reason: String,
    },
    /// Any other failure the store reported.
    #[error("{backend} failed to {operation} secret {key}: {reason}")]
    Backend {
        /// The backend.
        backend: &'static str,
        /// The operation.
        operation: Operation,
        /// The key.
        key: String,
        /// What the store said (status or error code).
        reason: String,
        /// Whether retrying may help (throttling, 5xx).
        transient: bool,
    },
}

impl Error {
    /// Whether retrying the same call may succeed: unreachable stores and failures the
    /// backend marked transient (throttling, 5xx). [`RetryStore`](crate::RetryStore)
    /// retries exactly these.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Unreachable { .. }
                | Error::Backend {
                    transient: true,
                    ..
                }
        )
    }

    /// Whether this is [`Error::NotFound`].
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Whether this is [`Error::Conflict`].
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// The backend named in the error (`unknown` for [`Error::UnknownBackend`]).
    #[must_use]
    pub fn backend(&self) -> &'static str {
        match self {
            Error::UnknownBackend { .. } => "unknown",
            Error::NotFound { backend, .. }
            | Error::PermissionDenied { backend, .. }
            | Error::Unreachable { backend, .. }
            | Error::Malformed { backend, .. }
            | Error::Conflict { backend, .. }
            | Error::NotImplemented { backend, .. }
            | Error::FeatureDisabled { backend, .. }
            | Error::Config { backend, .. }
            | Error::Backend { backend, .. } => backend,
        }
    }

    /// Refuses the pending stage where the backend keeps no stages (the
    /// `NotImplemented` error with hint "no stages"); the current stage passes.
    pub(crate) fn only_current_stage(
        backend: &'static str,
        operation: Operation,
        stage: crate::Stage,
    ) -> Result<(), Self> {
        if stage == crate::Stage::Current {
            Ok(())
        } else {
            Err(Self::not_implemented(backend, operation, Some("no stages")))
        }
    }

    pub(crate) fn not_implemented(
        backend: &'static str,
        operation: Operation,
        hint: Option<&str>,
    ) -> Self {
        Error::NotImplemented {
            operation: operation.as_str(),
            backend,
            hint: hint.map(str::to_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_backend_and_key_and_say_what_to_fix() {
        let e = Error::NotFound {
            backend: "vault",
            key: "secret/pg".into(),
        };
        assert_eq!(
            e.to_string(),
            "vault secret secret/pg not found: create it with {\"username\": ..., \"password\": ...} or fix the [secret] section"
        );
        let e = Error::FeatureDisabled {
            backend: "gcp",
            feature: "gcp",
        };
        assert!(e.to_string().contains("enable the cargo feature \"gcp\""));
        let e = Error::not_implemented("env", Operation::Put, Some("set the variables"));
        assert_eq!(
            e.to_string(),
            "the env secret store does not support put: set the variables"
        );
        assert!(
            Error::Unreachable {
                backend: "aws",
                key: "k".into(),
                reason: "timeout".into()
            }
            .is_transient()
        );
        assert!(!e.is_transient());
    }
}
