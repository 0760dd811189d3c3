//! Discovery: the databases, schemas, tables and roles of a whole instance.
//!
//! Access can only be requested on what is known, and an integration covers every
//! database of its instance. [`discover`] connects with a [`Connector`], lists the
//! databases that allow connections (templates left out), reads the roles once for the
//! instance, then visits each database — several at a time over a bounded number of
//! connections ([`DiscoveryOptions::max_connections`]) — for its schemas and tables.
//!
//! # How it reads
//! - `pg_catalog` directly, never `information_schema`, which hides objects the
//!   connector has no privilege on and is slow; one query per resource type per
//!   database (see [`queries`]), each database inside one read-only
//!   repeatable-read transaction so its schemas and tables agree.
//! - Rows are streamed (`query_raw`) and turned into [`Resource`]s one at a time.
//!   [`discover_stream`] hands them on through a small bounded channel, so memory
//!   stays flat however large the instance; [`discover`] collects them into a
//!   [`DiscoveryResult`].
//! - A database that cannot be read — no `CONNECT` privilege, its connection limit
//!   reached, dropped meanwhile — becomes a [`DatabaseFailure`] (with the classified
//!   connection error) and discovery goes on with the others. Only a failure that
//!   leaves nothing to discover (the connector's own database unreachable, the
//!   database list unreadable) ends it with a [`DiscoveryError`].
//!
//! # What it reports
//! Each [`Resource`] carries its [`ResourceId`], type, name, database, schema,
//! [`ResourceKind`], owner, comment and tags. Partitions are listed on their
//! partitioned table ([`Resource::partitions`]), not as resources of their own. Roles
//! carry their [`RoleAttributes`] and memberships; PostgreSQL's `pg_*` roles and
//! pgwarden's own (the marker role, privilege roles, and every login role that is a
//! member of the marker) are left out.
//!
//! # Tags
//! Tags come from a [`TagReader`], which sees each resource with its comment while
//! it is being discovered. The default, [`CommentTags`], parses `key=value` pairs out
//! of the comment ([`Tags::parse_comment`]). A host with tags elsewhere (cloud
//! resource tags, a CMDB) has two ways in:
//! - implement [`TagReader`] over a snapshot fetched beforehand, merging it with the
//!   comment's tags (the reader is synchronous: it runs once per row and must not do
//!   I/O), or
//! - keep comment tags here and give the owner resolver a
//!   [`TagSource`](pgwarden_core::tags::TagSource) that layers the cloud tags over
//!   [`DiscoveryResult::tag_source`].
//!
//! # Example
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use pgwarden_pg_driver::{ConnectOptions, Connector};
//! use pgwarden_pg_driver::{DiscoveryOptions, discover};
//!
//! let info = "host=db.internal user=pgwarden dbname=postgres".parse()?;
//! let connector = Connector::new(&info, &ConnectOptions::default())?;
//! let result = discover(&connector, &DiscoveryOptions::default()).await?;
//! for resource in &result.resources {
//!     println!("{} owned by {:?}", resource.id, resource.owner);
//! }
//! for failure in &result.failures {
//!     eprintln!("{failure}");
//! }
//! # Ok(()) }
//! ```
//!
//! Diffing two results ([`DiscoveryResult::diff`]) tells what appeared, disappeared
//! or changed, so a host — and the privilege-role refresh — can react to new tables.

mod diff;
#[cfg_attr(
    not(feature = "testing"),
    allow(unreachable_pub, reason = "public with the testing feature")
)]
pub mod queries;
mod run;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::{Stream, TryStreamExt};
use pgwarden_core::config::IntegrationConfig;
use pgwarden_core::naming::MARKER_ROLE;
use pgwarden_core::resource::{ResourceId, ResourceType};
use pgwarden_core::tags::{InMemoryTagSource, Tags};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::connect::Connector;
use crate::error::ConnectError;

pub use diff::{DiscoveryDiff, ResourceChange};

/// How many databases are read at once by default (each over its own connection).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4;

/// How many discovered items may wait for a slow consumer before discovery pauses.
const CHANNEL_CAPACITY: usize = 256;

/// Turns what discovery read about a resource into its tags.
///
/// Called once per resource, while rows stream in: keep it cheap and free of I/O
/// (fetch external tags beforehand and look them up here).
pub trait TagReader: Send + Sync + fmt::Debug {
    /// The tags of `resource`, whose comment (if any) is `comment`.
    fn tags(&self, resource: &ResourceId, comment: Option<&str>) -> Tags;
}

/// The default [`TagReader`]: `key=value` pairs in the object's comment.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommentTags;

impl TagReader for CommentTags {
    fn tags(&self, _resource: &ResourceId, comment: Option<&str>) -> Tags {
        comment.map(Tags::parse_comment).unwrap_or_default()
    }
}

/// What to discover and how. Build it with `..Default::default()` so that new fields
/// break nobody.
#[derive(Debug, Clone)]
pub struct DiscoveryOptions {
    /// The resource types to discover (default: all). Per-database connections are
    /// made only when schemas or tables are asked for.
    pub types: Vec<ResourceType>,
    /// The most databases read at once, each over its own connection (default
    /// [`DEFAULT_MAX_CONNECTIONS`]; 0 counts as 1). The connector's own connection,
    /// used for the database list and the roles, comes on top.
    pub max_connections: usize,
    /// pgwarden's marker role (default [`MARKER_ROLE`]): it and its members are left
    /// out of the roles.
    pub marker_role: String,
    /// Where tags come from (default [`CommentTags`]).
    pub tags: Arc<dyn TagReader>,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        DiscoveryOptions {
            types: ResourceType::ALL.to_vec(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            marker_role: MARKER_ROLE.to_owned(),
            tags: Arc::new(CommentTags),
        }
    }
}

impl DiscoveryOptions {
    /// The defaults, with the resource types the integration selects.
    #[must_use]
    pub fn for_integration(config: &IntegrationConfig) -> Self {
        DiscoveryOptions {
            types: config.discovery.clone(),
            ..DiscoveryOptions::default()
        }
    }

    /// Whether `resource_type` is to be discovered.
    #[must_use]
    pub fn wants(&self, resource_type: ResourceType) -> bool {
        self.types.contains(&resource_type)
    }
}

/// What a table-like relation is, or the type of any other resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// A database.
    Database,
    /// A schema.
    Schema,
    /// An ordinary table (`relkind` `r`).
    Table,
    /// A partitioned table (`p`); its partitions are listed on it.
    PartitionedTable,
    /// A view (`v`).
    View,
    /// A materialized view (`m`).
    MaterializedView,
    /// A foreign table (`f`).
    ForeignTable,
    /// A role.
    Role,
}

impl ResourceKind {
    /// The `snake_case` name, as serialized.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Database => "database",
            ResourceKind::Schema => "schema",
            ResourceKind::Table => "table",
            ResourceKind::PartitionedTable => "partitioned_table",
            ResourceKind::View => "view",
            ResourceKind::MaterializedView => "materialized_view",
            ResourceKind::ForeignTable => "foreign_table",
            ResourceKind::Role => "role",
        }
    }

    /// The kind of a `pg_class.relkind`, for the kinds discovery reports.
    #[must_use]
    pub fn from_relkind(relkind: u8) -> Option<Self> {
        Some(match relkind {
            b'r' => ResourceKind::Table,
            b'p' => ResourceKind::PartitionedTable,
            b'v' => ResourceKind::View,
            b'm' => ResourceKind::MaterializedView,
            b'f' => ResourceKind::ForeignTable,
            _ => return None,
        })
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One partition of a partitioned table (it may live in another schema).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Partition {
    /// The partition's schema.
    pub schema: String,
    /// The partition's name.
    pub name: String,
}

/// A role's attributes and memberships.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "these are PostgreSQL's own role flags"
)]
pub struct RoleAttributes {
    /// `rolcanlogin`.
    pub login: bool,
    /// `rolsuper`.
    pub superuser: bool,
    /// `rolcreaterole`.
    pub createrole: bool,
    /// `rolcreatedb`.
    pub createdb: bool,
    /// `rolreplication`.
    pub replication: bool,
    /// `rolbypassrls`.
    pub bypassrls: bool,
    /// `rolinherit`.
    pub inherit: bool,
    /// `rolconnlimit`; `None` for no limit (-1).
    pub connection_limit: Option<i32>,
    /// `rolvaliduntil` in RFC 3339 (UTC), or `infinity`; `None` when unset.
    pub valid_until: Option<String>,
    /// The roles it is a direct member of, sorted by name (byte order).
    pub member_of: Vec<String>,
}

/// A discovered resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// Its id, e.g. `postgresql-table:app/s1/orders`.
    pub id: ResourceId,
    /// Its type.
    #[serde(rename = "type")]
    pub resource_type: ResourceType,
    /// Its own name (the last part of the id).
    pub name: String,
    /// The database it lives in (a database's own name; `None` for roles).
    pub database: Option<String>,
    /// The schema of a schema or table.
    pub schema: Option<String>,
    /// What it is.
    pub kind: ResourceKind,
    /// The owning role (`None` for roles).
    pub owner: Option<String>,
    /// The object's comment.
    pub comment: Option<String>,
    /// Its tags, from the [`TagReader`].
    pub tags: Tags,
    /// For a partitioned table: every partition below it, at any depth, sorted by
    /// schema and name (byte order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<Partition>,
    /// For a role: its attributes and memberships.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<RoleAttributes>,
}

impl Resource {
    /// A resource with the fields its id determines filled in, and nothing else.
    #[must_use]
    pub fn new(id: ResourceId, kind: ResourceKind) -> Self {
        Resource {
            resource_type: id.resource_type(),
            name: id.name().to_owned(),
            database: id.database_name().map(str::to_owned),
            schema: id.schema_name().map(str::to_owned),
            id,
            kind,
            owner: None,
            comment: None,
            tags: Tags::new(),
            partitions: Vec::new(),
            attributes: None,
        }
    }
}

/// A database that could not be read. The others were.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("database {database:?} was not discovered: {message}")]
pub struct DatabaseFailure {
    /// The database's name.
    pub database: String,
    /// `network`, `tls`, `auth`, `server` or `config` for a connection that failed
    /// (see [`ConnectError::class`]), `query` for a catalog query that failed.
    pub class: String,
    /// What went wrong, and what to fix.
    pub message: String,
}

/// One item of a discovery stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovered {
    /// A resource.
    Resource(Box<Resource>),
    /// A database that could not be read.
    Failure(DatabaseFailure),
}

/// Discovery could not run at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The connector's own database, where the database list and roles are read, could
    /// not be reached.
    #[error("cannot connect to database {database:?} to discover the instance: {source}")]
    Connect {
        /// The connector's database.
        database: String,
        /// Why.
        source: ConnectError,
    },
    /// An instance-wide catalog query failed.
    #[error("reading the {what} of the instance failed: {message}")]
    Query {
        /// `databases` or `roles`.
        what: &'static str,
        /// The server's message with its SQLSTATE.
        message: String,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// A discovery task ended abnormally (it panicked or the runtime shut down).
    #[error("discovery was interrupted: {message}")]
    Interrupted {
        /// What happened.
        message: String,
    },
}

impl DiscoveryError {
    /// A short machine-readable class: the connection error's class, `query`, or
    /// `interrupted`.
    #[must_use]
    pub fn class(&self) -> &'static str {
        match self {
            DiscoveryError::Connect { source, .. } => source.class(),
            DiscoveryError::Query { .. } => "query",
            DiscoveryError::Interrupted { .. } => "interrupted",
        }
    }

    /// Whether the connection settings are at fault.
    #[must_use]
    pub fn is_config(&self) -> bool {
        matches!(self, DiscoveryError::Connect { source, .. } if source.is_config())
    }
}

/// Everything one discovery found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryResult {
    /// The resource types that were asked for, in [`ResourceType::ALL`] order.
    pub types: Vec<ResourceType>,
    /// The resources, sorted by id (databases, schemas, tables, roles).
    pub resources: Vec<Resource>,
    /// The databases that could not be read, sorted by name.
    pub failures: Vec<DatabaseFailure>,
}

impl DiscoveryResult {
    /// The resource with this id.
    #[must_use]
    pub fn get(&self, id: &ResourceId) -> Option<&Resource> {
        self.resources
            .binary_search_by(|r| r.id.cmp(id))
            .ok()
            .map(|i| &self.resources[i])
    }

    /// The resources of one type.
    pub fn of_type(&self, resource_type: ResourceType) -> impl Iterator<Item = &Resource> {
        self.resources
            .iter()
            .filter(move |r| r.resource_type == resource_type)
    }

    /// Whether `database` could not be read (so its schemas and tables are unknown).
    #[must_use]
    pub fn failed(&self, database: &str) -> bool {
        self.failures.iter().any(|f| f.database == database)
    }

    /// Sets every resource's tags in `source` (resources without tags too, so stale
    /// tags are cleared).
    pub fn fill_tag_source(&self, source: &InMemoryTagSource) {
        for resource in &self.resources {
            source.set(resource.id.clone(), resource.tags.clone());
        }
    }

    /// A tag source holding every resource's tags, for owner resolution.
    #[must_use]
    pub fn tag_source(&self) -> InMemoryTagSource {
        let source = InMemoryTagSource::new();
        self.fill_tag_source(&source);
        source
    }

    /// What changed since `earlier`; see [`DiscoveryDiff`].
    #[must_use]
    pub fn diff(&self, earlier: &DiscoveryResult) -> DiscoveryDiff {
        diff::diff(earlier, self)
    }

    fn from_items(
        types: &[ResourceType],
        mut resources: Vec<Resource>,
        mut failures: Vec<DatabaseFailure>,
    ) -> Self {
        resources.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        failures.sort_by(|a, b| a.database.cmp(&b.database));
        let types = ResourceType::ALL
            .into_iter()
            .filter(|t| types.contains(t))
            .collect();
        DiscoveryResult {
            types,
            resources,
            failures,
        }
    }
}

/// Discovers the instance and returns everything at once.
pub async fn discover(
    connector: &Connector,
    options: &DiscoveryOptions,
) -> Result<DiscoveryResult, DiscoveryError> {
    let mut resources = Vec::new();
    let mut failures = Vec::new();
    let mut stream = discover_stream(connector, options);
    while let Some(item) = stream.try_next().await? {
        match item {
            Discovered::Resource(r) => resources.push(*r),
            Discovered::Failure(f) => failures.push(f),
        }
    }
    Ok(DiscoveryResult::from_items(
        &options.types,
        resources,
        failures,
    ))
}

/// Discovers the instance, handing each resource and failure on as it is read.
///
/// Items come in no particular order: the databases and roles first, then schemas and
/// tables as each database is read. At most a few hundred items wait for the consumer;
/// when it is slower, discovery pauses. The stream ends after the last item, or right
/// after an `Err` (nothing more follows it). Dropping the stream stops the discovery.
///
/// Discovery runs on tasks of the current tokio runtime, so this must be called
/// within one.
#[must_use = "a stream does nothing unless polled"]
pub fn discover_stream(connector: &Connector, options: &DiscoveryOptions) -> DiscoveryStream {
    let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
    let task = tokio::spawn(run::produce(
        connector.clone(),
        Arc::new(options.clone()),
        sender,
    ));
    DiscoveryStream {
        receiver,
        task,
        finished: false,
    }
}

/// The stream [`discover_stream`] returns. Dropping it stops the discovery.
#[derive(Debug)]
pub struct DiscoveryStream {
    receiver: mpsc::Receiver<Result<Discovered, DiscoveryError>>,
    task: JoinHandle<()>,
    finished: bool,
}

impl DiscoveryStream {
    /// The next item, for callers without a `Stream` combinator crate at hand;
    /// `None` once the discovery is over.
    pub async fn next_item(&mut self) -> Option<Result<Discovered, DiscoveryError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for DiscoveryStream {
    type Item = Result<Discovered, DiscoveryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if let Some(item) = std::task::ready!(self.receiver.poll_recv(cx)) {
            return Poll::Ready(Some(item));
        }
        // Every sender is gone: tell a finished discovery from one whose task panicked,
        // so that a truncated stream never passes for a complete one.
        let outcome = std::task::ready!(Pin::new(&mut self.task).poll(cx));
        self.finished = true;
        Poll::Ready(outcome.err().map(|e| {
            Err(DiscoveryError::Interrupted {
                message: e.to_string(),
            })
        }))
    }
}

impl Drop for DiscoveryStream {
    fn drop(&mut self) {
        // Aborting the producer drops its per-database tasks (a JoinSet) with it.
        self.task.abort();
    }
}
