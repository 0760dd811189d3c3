//! [`CachingStore`]: remember reads for a while.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use secrecy::SecretString;

use crate::{
    Capabilities, Error, GetOptions, PutOptions, SecretKey, SecretStore, SecretValue, Stage,
    Version,
};

/// Serves `get` from memory for `ttl` after a successful read. A `put`, `delete` or
/// `promote` through this store forgets the key first, so this process always reads
/// its own writes; writes by others show after at most `ttl`. Errors are not cached.
pub struct CachingStore<S> {
    inner: S,
    ttl: Duration,
    entries: Mutex<HashMap<(SecretKey, Stage), (Instant, SecretValue)>>,
}

impl<S: SecretStore> CachingStore<S> {
    /// Wraps `inner`, caching reads for `ttl`.
    pub fn new(inner: S, ttl: Duration) -> Self {
        CachingStore {
            inner,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Forgets everything cached.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(SecretKey, Stage), (Instant, SecretValue)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn forget(&self, key: &SecretKey) {
        self.lock().retain(|(k, _), _| k != key);
    }
}

impl<S: SecretStore> fmt::Debug for CachingStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingStore")
            .field("inner", &self.inner)
            .field("ttl", &self.ttl)
            .field("cached", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl<S: SecretStore> fmt::Display for CachingStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (cached {:?})", self.inner, self.ttl)
    }
}

#[async_trait]
impl<S: SecretStore> SecretStore for CachingStore<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn get(&self, key: &SecretKey, options: GetOptions) -> Result<SecretValue, Error> {
        let slot = (key.clone(), options.stage);
        if let Some((at, value)) = self.lock().get(&slot)
            && at.elapsed() < self.ttl
        {
            return Ok(value.clone());
        }
        let value = self.inner.get(key, options).await?;
        self.lock().insert(slot, (Instant::now(), value.clone()));
        Ok(value)
    }

    async fn put(
        &self,
        key: &SecretKey,
        value: SecretString,
        options: PutOptions,
    ) -> Result<Version, Error> {
        self.forget(key);
        let result = self.inner.put(key, value, options).await;
        // A read racing with this write may have cached the old value meanwhile.
        self.forget(key);
        result
    }

    async fn delete(&self, key: &SecretKey) -> Result<(), Error> {
        self.forget(key);
        let result = self.inner.delete(key).await;
        self.forget(key);
        result
    }

    async fn promote(&self, key: &SecretKey, version: &Version) -> Result<(), Error> {
        self.forget(key);
        let result = self.inner.promote(key, version).await;
        self.forget(key);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InMemory, Operation};

    #[tokio::test]
    async fn caches_reads_until_ttl_or_a_write() {
        let store = CachingStore::new(InMemory::new(), Duration::from_secs(60));
        let key = SecretKey::new("k");
        store
            .put(&key, SecretString::from("a"), PutOptions::default())
            .await
            .unwrap();
        store.get(&key, GetOptions::default()).await.unwrap();
        store.get(&key, GetOptions::default()).await.unwrap();
        assert_eq!(store.inner().calls(Operation::Get), 1);
        store
            .put(&key, SecretString::from("b"), PutOptions::default())
            .await
            .unwrap();
        assert_eq!(
            store
                .get(&key, GetOptions::default())
                .await
                .unwrap()
                .expose(),
            "b"
        );
        assert_eq!(store.inner().calls(Operation::Get), 2);
        store.delete(&key).await.unwrap();
        assert!(
            store
                .get(&key, GetOptions::default())
                .await
                .unwrap_err()
                .is_not_found()
        );

        let short = CachingStore::new(InMemory::new(), Duration::from_millis(1));
        short
            .put(&key, SecretString::from("a"), PutOptions::default())
            .await
            .unwrap();
        short.get(&key, GetOptions::default()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        short.get(&key, GetOptions::default()).await.unwrap();
        assert_eq!(short.inner().calls(Operation::Get), 2);
    }
}
