//! [`TimeoutStore`]: no call waits for ever on a store that does not answer.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::{
    Capabilities, Error, GetOptions, Operation, PutOptions, SecretKey, SecretStore, SecretValue,
    Version,
};

/// The time limits [`from_config`](crate::from_config) puts around a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimeoutConfig {
    /// The limit on each call to the store: each attempt, when retried.
    pub per_call: Duration,
    /// The limit on a whole call, retries and their backoff included; `None` for none
    /// beyond what the retry policy implies (attempts × (`per_call` + backoff)).
    pub total: Option<Duration>,
}

/// [`TimeoutConfig::per_call`]'s default: 10 s.
pub const DEFAULT_PER_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// [`TimeoutConfig::total`]'s default: 60 s.
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for TimeoutConfig {
    fn default() -> Self {
        TimeoutConfig {
            per_call: DEFAULT_PER_CALL_TIMEOUT,
            total: Some(DEFAULT_TOTAL_TIMEOUT),
        }
    }
}

impl TimeoutConfig {
    /// `per_call` for each call, `total` for a whole retried call.
    #[must_use]
    pub fn new(per_call: Duration, total: Option<Duration>) -> Self {
        TimeoutConfig { per_call, total }
    }
}

/// What a [`TimeoutStore`] bounds, for its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Each call to the store.
    PerCall,
    /// A whole call through the layers inside, retries included.
    Total,
}

/// Bounds every call of the wrapped store with a time limit. A call that runs out fails
/// with [`Error::Unreachable`], which is transient: a [`RetryStore`](crate::RetryStore)
/// around this layer tries it again, each attempt with its own limit. The error names
/// the operation, the limit and how to change it, never a value.
///
/// A write that ran out may still have happened (the store may answer after the limit):
/// as with any lost reply, a compare-and-set write retried then reports
/// [`Error::Conflict`], and the caller re-reads.
///
/// Use [`TimeoutStore::new`] inside a retry layer (a limit per attempt) and
/// [`TimeoutStore::total`] outside it (a limit on the whole retried call);
/// [`from_config`](crate::from_config) does both.
pub struct TimeoutStore<S> {
    inner: S,
    limit: Duration,
    scope: Scope,
}

impl<S: SecretStore> TimeoutStore<S> {
    /// Wraps `inner`, each call limited to `limit` (a zero limit fails every call that
    /// does not complete at once).
    pub fn new(inner: S, limit: Duration) -> Self {
        TimeoutStore {
            inner,
            limit,
            scope: Scope::PerCall,
        }
    }

    /// Wraps `inner`, typically a [`RetryStore`](crate::RetryStore), each call limited to
    /// `limit` in all, retries and backoff included.
    pub fn total(inner: S, limit: Duration) -> Self {
        TimeoutStore {
            inner,
            limit,
            scope: Scope::Total,
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The limit on each call.
    #[must_use]
    pub fn limit(&self) -> Duration {
        self.limit
    }

    async fn bounded<T>(
        &self,
        operation: Operation,
        key: &SecretKey,
        call: impl Future<Output = Result<T, Error>> + Send,
    ) -> Result<T, Error> {
        if let Ok(result) = tokio::time::timeout(self.limit, call).await {
            return result;
        }
        tracing::debug!(backend = self.inner.backend(), %operation, key = %key, limit = ?self.limit, "secret store call timed out");
        Err(self.timed_out(operation, key))
    }

    fn timed_out(&self, operation: Operation, key: &SecretKey) -> Error {
        let limit = self.limit;
        let reason = match self.scope {
            Scope::PerCall => format!(
                "{operation} timed out after {limit:?}, the per-call limit; if the store is only slow, raise TimeoutConfig::per_call (pgwarden_secrets::from_config_layered) or the TimeoutStore's limit"
            ),
            Scope::Total => format!(
                "{operation} timed out after {limit:?} in all, retries included; if the store is only slow, raise TimeoutConfig::total (pgwarden_secrets::from_config_layered) or the TimeoutStore's limit"
            ),
        };
        Error::Unreachable {
            backend: self.inner.backend(),
            key: key.as_str().to_owned(),
            reason,
        }
    }
}

impl<S: SecretStore> fmt::Debug for TimeoutStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutStore")
            .field("inner", &self.inner)
            .field("limit", &self.limit)
            .field("scope", &self.scope)
            .finish()
    }
}

impl<S: SecretStore> fmt::Display for TimeoutStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

#[async_trait]
impl<S: SecretStore> SecretStore for TimeoutStore<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn get(&self, key: &SecretKey, options: GetOptions) -> Result<SecretValue, Error> {
        self.bounded(Operation::Get, key, self.inner.get(key, options))
            .await
    }

    async fn put(
        &self,
        key: &SecretKey,
        value: SecretString,
        options: PutOptions,
    ) -> Result<Version, Error> {
        self.bounded(Operation::Put, key, self.inner.put(key, value, options))
            .await
    }

    async fn delete(&self, key: &SecretKey) -> Result<(), Error> {
        self.bounded(Operation::Delete, key, self.inner.delete(key))
            .await
    }

    async fn promote(&self, key: &SecretKey, version: &Version) -> Result<(), Error> {
        self.bounded(Operation::Promote, key, self.inner.promote(key, version))
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    use super::*;
    use crate::{InMemory, RetryConfig, RetryStore};

    /// A store whose every call waits for ever, counting the calls.
    #[derive(Debug, Default)]
    struct Silent {
        calls: AtomicU32,
    }

    impl fmt::Display for Silent {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("silent store")
        }
    }

    impl Silent {
        async fn never<T>(&self) -> Result<T, Error> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
    }

    #[async_trait]
    impl SecretStore for Silent {
        fn backend(&self) -> &'static str {
            "silent"
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::versioned().with_stages(true)
        }
        async fn get(&self, _: &SecretKey, _: GetOptions) -> Result<SecretValue, Error> {
            self.never().await
        }
        async fn put(
            &self,
            _: &SecretKey,
            _: SecretString,
            _: PutOptions,
        ) -> Result<Version, Error> {
            self.never().await
        }
        async fn delete(&self, _: &SecretKey) -> Result<(), Error> {
            self.never().await
        }
        async fn promote(&self, _: &SecretKey, _: &Version) -> Result<(), Error> {
            self.never().await
        }
    }

    const LIMIT: Duration = Duration::from_millis(100);

    /// Runs `call`, failing the test rather than hanging should the layer not work.
    async fn within<T>(call: impl Future<Output = T>) -> (T, Duration) {
        let started = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("the timeout layer must end the call");
        (result, started.elapsed())
    }

    fn assert_timed_out(e: &Error, operation: &str) {
        assert!(e.is_transient(), "{e:?}");
        assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains(&format!("{operation} timed out after 100ms")),
            "{text}"
        );
        assert!(text.contains("TimeoutConfig::per_call"), "{text}");
        assert!(text.contains("silent") && text.contains("pg/k"), "{text}");
    }

    #[tokio::test]
    async fn every_operation_of_a_silent_store_times_out() {
        let store = TimeoutStore::new(Silent::default(), LIMIT);
        let key = SecretKey::new("pg/k");
        let (r, took) = within(store.get(&key, GetOptions::default())).await;
        assert_timed_out(&r.unwrap_err(), "get");
        assert!(took >= LIMIT && took < Duration::from_secs(1), "{took:?}");
        let secret = SecretString::from("Sup3r-Secret");
        let (r, _) = within(store.put(&key, secret, PutOptions::default())).await;
        let e = r.unwrap_err();
        assert_timed_out(&e, "put");
        assert!(!format!("{e} {e:?} {store:?}").contains("Sup3r-Secret"));
        let (r, _) = within(store.delete(&key)).await;
        assert_timed_out(&r.unwrap_err(), "delete");
        let (r, _) = within(store.promote(&key, &Version::new("1"))).await;
        assert_timed_out(&r.unwrap_err(), "promote");
        assert_eq!(store.inner().calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn retried_timeouts_are_bounded_by_the_attempts_and_the_total() {
        let retry = RetryConfig::new(3, Duration::from_millis(10), Duration::from_millis(20));
        let store = RetryStore::new(TimeoutStore::new(Silent::default(), LIMIT), retry);
        let key = SecretKey::new("pg/k");
        let (r, took) = within(store.get(&key, GetOptions::default())).await;
        assert_timed_out(&r.unwrap_err(), "get");
        assert_eq!(store.inner().inner().calls.load(Ordering::SeqCst), 3);
        // 3 attempts of 100 ms, two backoffs of at most 20 ms.
        assert!(
            took >= LIMIT * 3 && took < Duration::from_millis(340 + 500),
            "{took:?}"
        );

        // A total limit ends the retries early.
        let total = Duration::from_millis(150);
        let store = TimeoutStore::total(
            RetryStore::new(TimeoutStore::new(Silent::default(), LIMIT), retry),
            total,
        );
        let (r, took) = within(store.get(&key, GetOptions::default())).await;
        let e = r.unwrap_err();
        assert!(e.is_transient(), "{e:?}");
        assert!(
            e.to_string()
                .contains("get timed out after 150ms in all, retries included"),
            "{e}"
        );
        assert!(took >= total && took < Duration::from_secs(1), "{took:?}");
        assert_eq!(
            store.inner().inner().inner().calls.load(Ordering::SeqCst),
            2
        );
    }

    #[tokio::test]
    async fn answers_within_the_limit_pass_through() {
        let store = TimeoutStore::new(InMemory::new(), LIMIT);
        let key = SecretKey::new("k");
        let version = store
            .put(&key, SecretString::from("v"), PutOptions::create())
            .await
            .unwrap();
        let read = store.get(&key, GetOptions::default()).await.unwrap();
        assert_eq!(read.version, version);
        assert_eq!(read.expose(), "v");
        // Errors of the store itself come through unchanged.
        let e = store
            .get(&SecretKey::new("missing"), GetOptions::default())
            .await
            .unwrap_err();
        assert!(e.is_not_found(), "{e:?}");
        assert_eq!(store.capabilities(), InMemory::new().capabilities());
    }
}
