//! The PostgreSQL request store of an integration, following its connector: when the
//! connector's password rotates, the store reconnects with the new credentials.

use std::sync::Arc;

use async_trait::async_trait;
use pgwarden_core::requests::{RequestFilter, RequestStore, StoreError, StoredRequest};
use pgwarden_pg_driver::PgRequestStore;
use tokio::sync::Mutex;

use crate::integration::{Connected, Integration};

/// Requests kept in the integration's own instance (schema `pgwarden_requests`),
/// through the connector's current credentials. Made by [`AccessRequests::open`](super::AccessRequests::open).
pub struct IntegrationRequestStore {
    integration: Arc<Integration>,
    database: Option<String>,
    /// The store, and the connection side it was opened with.
    current: Mutex<(Arc<Connected>, Arc<PgRequestStore>)>,
}

impl std::fmt::Debug for IntegrationRequestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntegrationRequestStore")
            .field("integration", &self.integration.config().name)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl IntegrationRequestStore {
    /// Opens the store in `database` (default: the connector's database), creating
    /// and migrating its schema if needed.
    pub async fn open(
        integration: Arc<Integration>,
        database: Option<&str>,
    ) -> Result<Self, StoreError> {
        let connected = integration.connected().await;
        let store = PgRequestStore::open(&connected.connector, database).await?;
        Ok(IntegrationRequestStore {
            integration,
            database: database.map(str::to_owned),
            current: Mutex::new((connected, Arc::new(store))),
        })
    }

    /// The store for the current credentials, reopened after a rotation.
    async fn store(&self) -> Result<Arc<PgRequestStore>, StoreError> {
        let connected = self.integration.connected().await;
        let mut current = self.current.lock().await;
        if !Arc::ptr_eq(&current.0, &connected) {
            let store =
                PgRequestStore::open(&connected.connector, self.database.as_deref()).await?;
            *current = (connected, Arc::new(store));
        }
        Ok(current.1.clone())
    }
}

#[async_trait]
impl RequestStore for IntegrationRequestStore {
    async fn insert(&self, request: &StoredRequest) -> Result<StoredRequest, StoreError> {
        self.store().await?.insert(request).await
    }

    async fn get(&self, id: &str) -> Result<Option<StoredRequest>, StoreError> {
        self.store().await?.get(id).await
    }

    async fn update(&self, request: &StoredRequest) -> Result<StoredRequest, StoreError> {
        self.store().await?.update(request).await
    }

    async fn list(&self, filter: &RequestFilter) -> Result<Vec<StoredRequest>, StoreError> {
        self.store().await?.list(filter).await
    }
}
