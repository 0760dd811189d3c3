//! [`RetryStore`]: try transient failures again.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::{
    Capabilities, Error, GetOptions, PutOptions, SecretKey, SecretStore, SecretValue, Version,
};

/// How [`RetryStore`] retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Calls in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The backoff ceiling before the first retry; it doubles with each retry.
    pub initial_backoff: Duration,
    /// The largest backoff ceiling.
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryConfig {
    /// `max_attempts` calls, backoff from `initial` up to `max`.
    #[must_use]
    pub fn new(max_attempts: u32, initial: Duration, max: Duration) -> Self {
        RetryConfig {
            max_attempts: max_attempts.max(1),
            initial_backoff: initial,
            max_backoff: max.max(initial),
        }
    }

    /// The sleep before retry number `retry` (0-based): "full jitter", uniformly
    /// random up to an exponentially growing, capped ceiling, so replicas that failed
    /// together do not retry together.
    #[must_use]
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry.min(16)))
            .min(self.max_backoff);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }
}

/// Retries calls that failed with a transient error ([`Error::is_transient`]: an
/// unreachable store, throttling, a 5xx), with bounded exponential backoff and
/// jitter. Anything else — not found, denied, malformed, a conflict — returns at once.
///
/// A write whose reply was lost may have happened: retried, a compare-and-set write
/// then reports [`Error::Conflict`], and the caller re-reads, as after any conflict.
pub struct RetryStore<S> {
    inner: S,
    config: RetryConfig,
}

impl<S: SecretStore> RetryStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, config: RetryConfig) -> Self {
        RetryStore { inner, config }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    async fn retry<T, F, Fut>(&self, mut call: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut + Send,
        Fut: std::future::Future<Output = Result<T, Error>> + Send,
        T: Send,
    {
        let mut retry = 0;
        loop {
            match call().await {
                Err(e) if e.is_transient() && retry + 1 < self.config.max_attempts => {
                    let wait = self.config.backoff(retry);
                    tracing::debug!(backend = self.inner.backend(), retry, ?wait, error = %e, "retrying secret store call");
                    tokio::time::sleep(wait).await;
                    retry += 1;
                }
                other => return other,
            }
        }
    }
}

impl<S: SecretStore> fmt::Debug for RetryStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryStore")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

impl<S: SecretStore> fmt::Display for RetryStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

#[async_trait]
impl<S: SecretStore> SecretStore for RetryStore<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn get(&self, key: &SecretKey, options: GetOptions) -> Result<SecretValue, Error> {
        self.retry(|| self.inner.get(key, options.clone())).await
    }

    async fn put(
        &self,
        key: &SecretKey,
        value: SecretString,
        options: PutOptions,
    ) -> Result<Version, Error> {
        self.retry(|| self.inner.put(key, value.clone(), options.clone()))
            .await
    }

    async fn delete(&self, key: &SecretKey) -> Result<(), Error> {
        self.retry(|| self.inner.delete(key)).await
    }

    async fn promote(&self, key: &SecretKey, version: &Version) -> Result<(), Error> {
        self.retry(|| self.inner.promote(key, version)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InMemory, Operation};

    fn unreachable() -> Error {
        Error::Unreachable {
            backend: "memory",
            key: "k".into(),
            reason: "scripted".into(),
        }
    }

    fn fast(attempts: u32) -> RetryConfig {
        RetryConfig::new(attempts, Duration::from_millis(1), Duration::from_millis(4))
    }

    #[tokio::test]
    async fn retries_transient_errors_a_bounded_number_of_times() {
        let store = RetryStore::new(InMemory::new(), fast(3));
        let key = SecretKey::new("k");
        store.inner().fail_next(Operation::Put, 2, unreachable());
        store
            .put(&key, SecretString::from("v"), PutOptions::default())
            .await
            .unwrap();
        assert_eq!(store.inner().calls(Operation::Put), 3);

        store.inner().fail_next(Operation::Get, 5, unreachable());
        let e = store.get(&key, GetOptions::default()).await.unwrap_err();
        assert!(e.is_transient());
        assert_eq!(store.inner().calls(Operation::Get), 3);
    }

    #[tokio::test]
    async fn does_not_retry_permanent_errors() {
        let store = RetryStore::new(InMemory::new(), fast(5));
        let key = SecretKey::new("missing");
        assert!(
            store
                .get(&key, GetOptions::default())
                .await
                .unwrap_err()
                .is_not_found()
        );
        assert_eq!(store.inner().calls(Operation::Get), 1);
        store
            .put(&key, SecretString::from("v"), PutOptions::default())
            .await
            .unwrap();
        let e = store
            .put(
                &key,
                SecretString::from("w"),
                PutOptions::expect_version(Version::new("0")),
            )
            .await
            .unwrap_err();
        assert!(e.is_conflict());
        assert_eq!(store.inner().calls(Operation::Put), 2);
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let c = RetryConfig::new(10, Duration::from_millis(100), Duration::from_millis(800));
        for retry in 0..20 {
            assert!(c.backoff(retry) <= Duration::from_millis(800));
        }
        assert!(c.backoff(0) <= Duration::from_millis(100));
    }
}
