//! [`InMemory`]: a store in a `HashMap`, with scriptable failures for tests.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use crate::{
    Capabilities, Error, GetOptions, Operation, PutMode, PutOptions, SecretKey, SecretStore,
    SecretValue, Stage, Version,
};

const BACKEND: &str = "memory";

/// When a scripted failure strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureTiming {
    /// Instead of the operation: nothing changes.
    Before,
    /// After the operation took effect: the write happened but the caller sees an
    /// error, like a timeout on the reply.
    After,
}

#[derive(Debug)]
struct ScriptedFailure {
    operation: Operation,
    remaining: usize,
    timing: FailureTiming,
    error: Error,
}

#[derive(Default)]
struct Secret {
    current: Option<(u64, SecretString)>,
    pending: Option<(u64, SecretString)>,
}

#[derive(Default)]
struct State {
    secrets: HashMap<SecretKey, Secret>,
    next_version: u64,
    failures: Vec<ScriptedFailure>,
    calls: HashMap<Operation, usize>,
}

/// A secret store in memory: compare-and-set, a version counter shared by all keys,
/// optional native stages ([`InMemory::with_stages`]), and failures scripted per
/// operation ([`InMemory::fail_next`]) for fault-injection tests.
///
/// ```
/// # tokio_test_block_on(async {
/// use pgwarden_secrets::{InMemory, SecretKey, SecretStoreExt, PutOptions, Operation, Error};
/// use pgwarden_core::credentials::Credentials;
///
/// let store = InMemory::new();
/// let key = SecretKey::new("pg/orders");
/// store.put_credentials(&key, &Credentials::new("connector", "s3cret"), PutOptions::create()).await?;
/// store.fail_next(Operation::Get, 1, Error::Unreachable { backend: "memory", key: key.to_string(), reason: "scripted".into() });
/// assert!(store.get_credentials(&key).await.unwrap_err().is_transient());
/// assert_eq!(store.get_credentials(&key).await?.credentials.username, "connector");
/// # Ok::<(), Error>(()) });
/// # fn tokio_test_block_on<F: std::future::Future<Output = Result<(), pgwarden_secrets::Error>>>(f: F) {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f).unwrap()
/// # }
/// ```
pub struct InMemory {
    state: Mutex<State>,
    stages: bool,
}

impl InMemory {
    /// An empty store without stages (rotation keeps `pending_password` in the document).
    #[must_use]
    pub fn new() -> Self {
        InMemory {
            state: Mutex::new(State {
                next_version: 1,
                ..State::default()
            }),
            stages: false,
        }
    }

    /// An empty store with native stages, like AWS Secrets Manager.
    #[must_use]
    pub fn with_stages() -> Self {
        InMemory {
            stages: true,
            ..InMemory::new()
        }
    }

    /// The next `times` calls of `operation` fail with `error` and change nothing.
    pub fn fail_next(&self, operation: Operation, times: usize, error: Error) {
        self.script(operation, times, FailureTiming::Before, error);
    }

    /// The next `times` calls of `operation` fail with `error`, before or after taking
    /// effect.
    pub fn script(&self, operation: Operation, times: usize, timing: FailureTiming, error: Error) {
        self.lock().failures.push(ScriptedFailure {
            operation,
            remaining: times,
            timing,
            error,
        });
    }

    /// Removes every scripted failure.
    pub fn clear_failures(&self) {
        self.lock().failures.clear();
    }

    /// How many times `operation` was called (failed calls included).
    #[must_use]
    pub fn calls(&self, operation: Operation) -> usize {
        self.lock().calls.get(&operation).copied().unwrap_or(0)
    }

    /// Stores `text` as the current version without any check (e.g. a malformed
    /// document for a test).
    pub fn insert_raw(&self, key: &SecretKey, text: &str) -> Version {
        let mut state = self.lock();
        let v = state.bump();
        state.secrets.entry(key.clone()).or_default().current = Some((v, SecretString::from(text)));
        Version::new(v.to_string())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data: every change is one
        // assignment.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts the call and takes a scripted failure for it, if any.
    fn begin(state: &mut State, operation: Operation) -> Option<(FailureTiming, Error)> {
        *state.calls.entry(operation).or_default() += 1;
        let i = state
            .failures
            .iter()
            .position(|f| f.operation == operation && f.remaining > 0)?;
        let f = &mut state.failures[i];
        f.remaining -= 1;
        let out = (f.timing, f.error.clone());
        if f.remaining == 0 {
            state.failures.remove(i);
        }
        Some(out)
    }

    fn run<T>(
        &self,
        operation: Operation,
        body: impl FnOnce(&mut State) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut state = self.lock();
        match Self::begin(&mut state, operation) {
            Some((FailureTiming::Before, e)) => Err(e),
            Some((FailureTiming::After, e)) => {
                let _ = body(&mut state);
                Err(e)
            }
            None => body(&mut state),
        }
    }
}

impl State {
    fn bump(&mut self) -> u64 {
        let v = self.next_version;
        self.next_version += 1;
        v
    }
}

impl Default for InMemory {
    fn default() -> Self {
        InMemory::new()
    }
}

impl fmt::Debug for InMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        let mut keys: Vec<&SecretKey> = state.secrets.keys().collect();
        keys.sort();
        f.debug_struct("InMemory")
            .field("keys", &keys)
            .field("stages", &self.stages)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for InMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InMemory")
    }
}

fn not_found(key: &SecretKey) -> Error {
    Error::NotFound {
        backend: BACKEND,
        key: key.to_string(),
    }
}

#[async_trait]
impl SecretStore for InMemory {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::versioned().with_stages(self.stages)
    }

    async fn get(&self, key: &SecretKey, options: GetOptions) -> Result<SecretValue, Error> {
        if !self.stages {
            Error::only_current_stage(BACKEND, Operation::Get, options.stage)?;
        }
        self.run(Operation::Get, |state| {
            let secret = state.secrets.get(key).ok_or_else(|| not_found(key))?;
            let slot = match options.stage {
                Stage::Pending => &secret.pending,
                Stage::Current => &secret.current,
            };
            let (v, text) = slot.as_ref().ok_or_else(|| not_found(key))?;
            Ok(SecretValue {
                value: SecretString::from(text.expose_secret()),
                version: Version::new(v.to_string()),
            })
        })
    }

    async fn put(
        &self,
        key: &SecretKey,
        value: SecretString,
        options: PutOptions,
    ) -> Result<Version, Error> {
        if !self.stages {
            Error::only_current_stage(BACKEND, Operation::Put, options.stage)?;
        }
        self.run(Operation::Put, |state| {
            let current = state
                .secrets
                .get(key)
                .and_then(|s| s.current.as_ref())
                .map(|(v, _)| *v);
            match (&options.mode, current) {
                (PutMode::Create, Some(_)) => {
                    return Err(Error::Conflict {
                        backend: BACKEND,
                        key: key.to_string(),
                        expected: "no secret".into(),
                    });
                }
                (PutMode::Update(expected), current)
                    if current.map(|v| v.to_string()).as_deref() != Some(expected.as_str()) =>
                {
                    return Err(Error::Conflict {
                        backend: BACKEND,
                        key: key.to_string(),
                        expected: expected.to_string(),
                    });
                }
                _ => {}
            }
            let v = state.bump();
            let secret = state.secrets.entry(key.clone()).or_default();
            match options.stage {
                Stage::Pending => secret.pending = Some((v, value)),
                Stage::Current => secret.current = Some((v, value)),
            }
            Ok(Version::new(v.to_string()))
        })
    }

    async fn delete(&self, key: &SecretKey) -> Result<(), Error> {
        self.run(Operation::Delete, |state| {
            state.secrets.remove(key);
            Ok(())
        })
    }

    async fn promote(&self, key: &SecretKey, version: &Version) -> Result<(), Error> {
        if !self.stages {
            return Err(Error::not_implemented(
                BACKEND,
                Operation::Promote,
                Some("no stages"),
            ));
        }
        self.run(Operation::Promote, |state| {
            let secret = state.secrets.get_mut(key).ok_or_else(|| not_found(key))?;
            match secret.pending.take() {
                Some((v, text)) if v.to_string() == version.as_str() => {
                    secret.current = Some((v, text));
                    Ok(())
                }
                other => {
                    secret.pending = other;
                    Err(Error::Conflict {
                        backend: BACKEND,
                        key: key.to_string(),
                        expected: format!("pending version {version}"),
                    })
                }
            }
        })
    }
}
