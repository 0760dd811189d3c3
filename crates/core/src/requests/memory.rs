//! [`InMemoryRequestStore`]: requests kept in this process only, for tests, examples
//! and single-process hosts that may lose pending requests on restart.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use time::OffsetDateTime;

use super::record::StoredRequest;
use super::store::{RequestFilter, RequestStore, StoreError};

/// A [`RequestStore`] in memory: the same rules as the PostgreSQL store (versions,
/// allowed transitions, newest first), shared by whoever holds it (wrap it in an
/// `Arc`), gone when the process ends.
#[derive(Debug, Default)]
pub struct InMemoryRequestStore {
    requests: Mutex<HashMap<String, StoredRequest>>,
}

impl InMemoryRequestStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, StoredRequest>> {
        // A panic while holding the lock cannot leave a half-written record: every
        // write replaces a whole entry.
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl RequestStore for InMemoryRequestStore {
    async fn insert(&self, request: &StoredRequest) -> Result<StoredRequest, StoreError> {
        request.check().map_err(StoreError::Invalid)?;
        let mut requests = self.lock();
        if requests.contains_key(&request.id) {
            return Err(StoreError::DuplicateId {
                id: request.id.clone(),
            });
        }
        let mut stored = request.clone();
        stored.version = 1;
        requests.insert(stored.id.clone(), stored.clone());
        Ok(stored)
    }

    async fn get(&self, id: &str) -> Result<Option<StoredRequest>, StoreError> {
        Ok(self.lock().get(id).cloned())
    }

    async fn update(&self, request: &StoredRequest) -> Result<StoredRequest, StoreError> {
        request.check().map_err(StoreError::Invalid)?;
        let mut requests = self.lock();
        let Some(current) = requests.get_mut(&request.id) else {
            return Err(StoreError::NotFound {
                id: request.id.clone(),
            });
        };
        if current.version != request.version {
            return Err(StoreError::Conflict {
                id: request.id.clone(),
                expected: request.version,
                found: current.version,
            });
        }
        if current.state != request.state {
            current
                .state
                .check_move(request.state)
                .map_err(|transition| StoreError::InvalidTransition {
                    id: request.id.clone(),
                    transition,
                })?;
        }
        let mut stored = request.clone();
        stored.version = current.version + 1;
        stored.updated_at = OffsetDateTime::now_utc();
        *current = stored.clone();
        Ok(stored)
    }

    async fn list(&self, filter: &RequestFilter) -> Result<Vec<StoredRequest>, StoreError> {
        let mut found: Vec<StoredRequest> = self
            .lock()
            .values()
            .filter(|r| filter.matches(r))
            .cloned()
            .collect();
        found.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| b.id.as_bytes().cmp(a.id.as_bytes()))
        });
        if let Some(limit) = filter.limit {
            found.truncate(limit);
        }
        Ok(found)
    }
}
