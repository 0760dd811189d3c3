//! [`PgRequestStore`]: access requests kept in PostgreSQL, so that every replica of a
//! host shares pending requests and a restart loses none.
//!
//! The store owns one schema, `pgwarden_requests`, in a database the host names (by
//! default the connector's own). It holds a `migrations` table (version, name,
//! SHA-256 of the script, when applied) and the `requests` table: indexed columns (id,
//! integration, requester, state, `created_at`, `updated_at`, version) and the whole
//! record as `jsonb`. [`PgRequestStore::open`] applies pending migrations first (see
//! the runner in `migrations.rs`: one transaction, under an advisory lock, refusing a
//! newer or altered schema and a schema someone else owns).
//!
//! **Against users of the instance:** the schema and its tables belong to the
//! connector role and PUBLIC holds no privilege on them, so no other user reads or
//! writes requests; a `pgwarden_requests` schema (or a relation in it) that someone
//! else owns is refused by name. Connections come from the [`Connector`], so the
//! `search_path` is pinned as for every pgwarden session, and every statement is
//! schema-qualified and typed anyway (`queries.rs`).
//!
//! **Concurrency:** an update names the version it was read at
//! (`UPDATE … WHERE id = $1 AND version = $2`); of several writers of one version
//! exactly one succeeds, the others get [`StoreError::Conflict`].

mod migrations;
mod queries;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio_postgres::types::Json;

use crate::connect::Connector;
use crate::core::requests::{RequestFilter, RequestStore, StoreError, StoredRequest};
use crate::pool::{Pool, PoolOptions};
use crate::sql::CachedQuery;

/// The schema the request store keeps its tables in.
pub const REQUEST_STORE_SCHEMA: &str = migrations::SCHEMA;

/// The newest request store schema version this build knows.
pub const REQUEST_STORE_SCHEMA_VERSION: u32 = migrations::LATEST;

/// A [`RequestStore`] in PostgreSQL (see the module documentation).
#[derive(Debug, Clone)]
pub struct PgRequestStore {
    pool: Pool,
    database: String,
    applied: Vec<u32>,
}

impl PgRequestStore {
    /// Opens the store in `database` (default: the connector's own), with a pool of
    /// default size, applying pending migrations first.
    pub async fn open(
        connector: &Connector,
        database: Option<&str>,
    ) -> Result<PgRequestStore, StoreError> {
        Self::open_with(connector, database, &PoolOptions::default()).await
    }

    /// [`open`](Self::open) with the pool's size and timeouts.
    pub async fn open_with(
        connector: &Connector,
        database: Option<&str>,
        options: &PoolOptions,
    ) -> Result<PgRequestStore, StoreError> {
        let connector = match database {
            Some("") => {
                return Err(StoreError::Invalid(
                    "the request store's database name is empty: name one, or leave it unset for the connector's own".to_owned(),
                ));
            }
            Some(db) => connector.for_database(db),
            None => connector.clone(),
        };
        let database = connector.database().to_owned();
        let pool = Pool::new(connector, options)
            .map_err(|e| StoreError::Failed(format!("the request store's connection pool: {e}")))?;
        let mut conn = pool.get().await.map_err(|e| queries::pool_error(&e))?;
        let applied = migrations::migrate(&mut conn, &database, migrations::MIGRATIONS).await?;
        if !applied.is_empty() {
            tracing::info!(
                database = %database,
                versions = ?applied,
                "applied request store migrations"
            );
        }
        Ok(PgRequestStore {
            pool,
            database,
            applied,
        })
    }

    /// The database the requests are kept in.
    #[must_use]
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The migrations this store applied when it was opened (empty when the schema
    /// was already current, e.g. another replica migrated it).
    #[must_use]
    pub fn applied_migrations(&self) -> &[u32] {
        &self.applied
    }

    /// Closes the pool: later calls fail with [`StoreError::Failed`].
    pub fn close(&self) {
        self.pool.close();
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| queries::pool_error(&e))
    }

    async fn read(
        &self,
        client: &deadpool_postgres::Object,
        id: &str,
    ) -> Result<Option<StoredRequest>, StoreError> {
        let rows = client
            .query_cached(queries::GET, &[&id])
            .await
            .map_err(|e| queries::db_error("reading an access request", &e))?;
        rows.first().map(queries::request_of).transpose()
    }
}

#[async_trait]
impl RequestStore for PgRequestStore {
    async fn insert(&self, request: &StoredRequest) -> Result<StoredRequest, StoreError> {
        request.check().map_err(StoreError::Invalid)?;
        let mut stored = request.clone();
        stored.version = 1;
        let client = self.client().await?;
        let rows = client
            .query_cached(
                queries::INSERT,
                &[
                    &stored.id,
                    &stored.integration,
                    &stored.requester,
                    &stored.state.as_str(),
                    &stored.created_at,
                    &stored.updated_at,
                    &1_i64,
                    &Json(&stored),
                ],
            )
            .await
            .map_err(|e| queries::db_error("storing an access request", &e))?;
        if rows.is_empty() {
            return Err(StoreError::DuplicateId { id: stored.id });
        }
        Ok(stored)
    }

    async fn get(&self, id: &str) -> Result<Option<StoredRequest>, StoreError> {
        let client = self.client().await?;
        self.read(&client, id).await
    }

    async fn update(&self, request: &StoredRequest) -> Result<StoredRequest, StoreError> {
        request.check().map_err(StoreError::Invalid)?;
        let expected = queries::version_param(request.version)?;
        let mut stored = request.clone();
        stored.version = request.version + 1;
        stored.updated_at = OffsetDateTime::now_utc();
        let from = queries::states_leading_to(stored.state);
        let client = self.client().await?;
        let rows = client
            .query_cached(
                queries::UPDATE,
                &[
                    &stored.id,
                    &expected,
                    &from,
                    &stored.state.as_str(),
                    &stored.integration,
                    &stored.requester,
                    &stored.updated_at,
                    &Json(&stored),
                ],
            )
            .await
            .map_err(|e| queries::db_error("updating an access request", &e))?;
        if !rows.is_empty() {
            return Ok(stored);
        }
        // Nothing written: say why, from what is stored now.
        let id = request.id.clone();
        match self.read(&client, &request.id).await? {
            None => Err(StoreError::NotFound { id }),
            Some(current) if current.version != request.version => Err(StoreError::Conflict {
                id,
                expected: request.version,
                found: current.version,
            }),
            Some(current) => Err(match current.state.check_move(request.state) {
                Err(transition) => StoreError::InvalidTransition { id, transition },
                Ok(()) => StoreError::Failed(format!(
                    "access request {id} was not updated, for no reason the store can tell"
                )),
            }),
        }
    }

    async fn list(&self, filter: &RequestFilter) -> Result<Vec<StoredRequest>, StoreError> {
        let states: Option<Vec<&str>> =
            (!filter.states.is_empty()).then(|| filter.states.iter().map(|s| s.as_str()).collect());
        let limit = filter.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let client = self.client().await?;
        let rows = client
            .query_cached(
                queries::LIST,
                &[&filter.integration, &states, &filter.requester, &limit],
            )
            .await
            .map_err(|e| queries::db_error("listing access requests", &e))?;
        rows.iter().map(queries::request_of).collect()
    }
}
