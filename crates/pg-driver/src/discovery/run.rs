//! The discovery itself: the instance-wide queries on the connector's own connection,
//! then the databases, a bounded number at a time, each on a task of its own.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::{TryStreamExt, pin_mut};
use pgwarden_core::naming::PRIVILEGE_ROLE_PREFIX;
use pgwarden_core::resource::{ResourceId, ResourceType};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

use super::{
    DatabaseFailure, Discovered, DiscoveryError, DiscoveryOptions, Partition, Resource,
    ResourceKind, RoleAttributes, queries,
};
use crate::connect::Connector;

type Sender = mpsc::Sender<Result<Discovered, DiscoveryError>>;

/// The consumer dropped the stream: stop quietly.
struct Gone;

/// Why the instance-wide part stopped early.
enum Stop {
    Gone,
    Fatal(DiscoveryError),
}

impl From<Gone> for Stop {
    fn from(_: Gone) -> Self {
        Stop::Gone
    }
}

/// Why reading one database stopped early.
enum DatabaseStop {
    Gone,
    Query(tokio_postgres::Error),
}

impl From<Gone> for DatabaseStop {
    fn from(_: Gone) -> Self {
        DatabaseStop::Gone
    }
}

impl From<tokio_postgres::Error> for DatabaseStop {
    fn from(e: tokio_postgres::Error) -> Self {
        DatabaseStop::Query(e)
    }
}

fn no_params() -> std::iter::Empty<&'static (dyn ToSql + Sync)> {
    std::iter::empty()
}

/// The server's message with its SQLSTATE, or the driver's own message.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

async fn emit(sender: &Sender, item: Discovered) -> Result<(), Gone> {
    sender.send(Ok(item)).await.map_err(|_| Gone)
}

async fn emit_resource(sender: &Sender, resource: Resource) -> Result<(), Gone> {
    emit(sender, Discovered::Resource(Box::new(resource))).await
}

/// Runs a whole discovery, sending what it finds; a fatal error is the last item.
pub(super) async fn produce(connector: Connector, options: Arc<DiscoveryOptions>, sender: Sender) {
    if let Err(Stop::Fatal(e)) = instance(&connector, &options, &sender).await {
        // The consumer may be gone too; then nobody needs to hear it.
        let _ = sender.send(Err(e)).await;
    }
}

async fn instance(
    connector: &Connector,
    options: &Arc<DiscoveryOptions>,
    sender: &Sender,
) -> Result<(), Stop> {
    let per_database = options.wants(ResourceType::Schema) || options.wants(ResourceType::Table);
    let list_databases = per_database || options.wants(ResourceType::Database);
    if !list_databases && !options.wants(ResourceType::Role) {
        return Ok(());
    }
    let home = connector.connect().await.map_err(|source| {
        Stop::Fatal(DiscoveryError::Connect {
            database: connector.database().to_owned(),
            source,
        })
    })?;
    let instance_query = |what: &'static str| {
        move |source: tokio_postgres::Error| {
            Stop::Fatal(DiscoveryError::Query {
                what,
                message: describe(&source),
                source,
            })
        }
    };

    let mut databases = Vec::new();
    if list_databases {
        let rows = home
            .query_raw(queries::DATABASES, no_params())
            .await
            .map_err(instance_query("databases"))?;
        pin_mut!(rows);
        while let Some(row) = rows.try_next().await.map_err(instance_query("databases"))? {
            let resource = database_resource(&row, options).map_err(instance_query("databases"))?;
            if per_database {
                databases.push(resource.name.clone());
            }
            if options.wants(ResourceType::Database) {
                emit_resource(sender, resource).await?;
            }
        }
    }

    if options.wants(ResourceType::Role) {
        let prefix = PRIVILEGE_ROLE_PREFIX;
        let params: [&(dyn ToSql + Sync); 2] = [&options.marker_role, &prefix];
        let rows = home
            .query_raw(queries::ROLES, params)
            .await
            .map_err(instance_query("roles"))?;
        pin_mut!(rows);
        while let Some(row) = rows.try_next().await.map_err(instance_query("roles"))? {
            emit_resource(
                sender,
                role_resource(&row, options).map_err(instance_query("roles"))?,
            )
            .await?;
        }
    }
    drop(home);

    let limit = options.max_connections.max(1);
    let mut pending = databases.into_iter();
    let mut running = JoinSet::new();
    let mut names = HashMap::new();
    loop {
        while running.len() < limit {
            let Some(name) = pending.next() else { break };
            let task = running.spawn(database(
                connector.for_database(&name),
                name.clone(),
                Arc::clone(options),
                sender.clone(),
            ));
            names.insert(task.id(), name);
        }
        match running.join_next_with_id().await {
            None => return Ok(()),
            Some(Ok((_, Ok(())))) => {}
            Some(Ok((_, Err(Gone)))) => return Err(Stop::Gone),
            Some(Err(e)) => {
                // A bug, not the database's fault: say so for this database and go on.
                let database = names.get(&e.id()).cloned().unwrap_or_default();
                emit(
                    sender,
                    Discovered::Failure(DatabaseFailure {
                        database,
                        class: "interrupted".to_owned(),
                        message: format!("reading this database was interrupted: {e}"),
                    }),
                )
                .await?;
            }
        }
    }
}

/// Reads one database; a failure becomes a [`DatabaseFailure`] item.
async fn database(
    connector: Connector,
    name: String,
    options: Arc<DiscoveryOptions>,
    sender: Sender,
) -> Result<(), Gone> {
    let failure = match connector.connect().await {
        Err(e) => DatabaseFailure {
            database: name,
            class: e.class().to_owned(),
            message: e.to_string(),
        },
        Ok(conn) => match read_database(&conn, &name, &options, &sender).await {
            Ok(()) => return Ok(()),
            Err(DatabaseStop::Gone) => return Err(Gone),
            Err(DatabaseStop::Query(e)) => DatabaseFailure {
                message: format!("reading its catalog failed: {}", describe(&e)),
                database: name,
                class: "query".to_owned(),
            },
        },
    };
    emit(&sender, Discovered::Failure(failure)).await
}

async fn read_database(
    client: &Client,
    database: &str,
    options: &DiscoveryOptions,
    sender: &Sender,
) -> Result<(), DatabaseStop> {
    // One snapshot for both queries, so the tables agree with the schemas.
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    if options.wants(ResourceType::Schema) {
        let rows = client.query_raw(queries::SCHEMAS, no_params()).await?;
        pin_mut!(rows);
        while let Some(row) = rows.try_next().await? {
            emit_resource(sender, schema_resource(&row, database, options)?).await?;
        }
    }
    if options.wants(ResourceType::Table) {
        let rows = client.query_raw(queries::TABLES, no_params()).await?;
        pin_mut!(rows);
        while let Some(row) = rows.try_next().await? {
            if let Some(resource) = table_resource(&row, database, options)? {
                emit_resource(sender, resource).await?;
            }
        }
    }
    client.batch_execute("COMMIT").await?;
    Ok(())
}

/// Fills owner, comment and tags.
fn described(
    mut resource: Resource,
    owner: Option<String>,
    comment: Option<String>,
    options: &DiscoveryOptions,
) -> Resource {
    resource.tags = options.tags.tags(&resource.id, comment.as_deref());
    resource.owner = owner;
    resource.comment = comment;
    resource
}

fn database_resource(
    row: &Row,
    options: &DiscoveryOptions,
) -> Result<Resource, tokio_postgres::Error> {
    let name: String = row.try_get(0)?;
    Ok(described(
        Resource::new(ResourceId::database(name), ResourceKind::Database),
        row.try_get(1)?,
        row.try_get(2)?,
        options,
    ))
}

fn schema_resource(
    row: &Row,
    database: &str,
    options: &DiscoveryOptions,
) -> Result<Resource, tokio_postgres::Error> {
    let name: String = row.try_get(0)?;
    Ok(described(
        Resource::new(ResourceId::schema(database, name), ResourceKind::Schema),
        row.try_get(1)?,
        row.try_get(2)?,
        options,
    ))
}

fn table_resource(
    row: &Row,
    database: &str,
    options: &DiscoveryOptions,
) -> Result<Option<Resource>, tokio_postgres::Error> {
    let schema: String = row.try_get(0)?;
    let name: String = row.try_get(1)?;
    let relkind: i8 = row.try_get(2)?;
    let Some(kind) = u8::try_from(relkind)
        .ok()
        .and_then(ResourceKind::from_relkind)
    else {
        return Ok(None);
    };
    let mut resource = described(
        Resource::new(ResourceId::table(database, schema, name), kind),
        row.try_get(3)?,
        row.try_get(4)?,
        options,
    );
    let schemas: Option<Vec<String>> = row.try_get(5)?;
    let names: Option<Vec<String>> = row.try_get(6)?;
    resource.partitions = schemas
        .unwrap_or_default()
        .into_iter()
        .zip(names.unwrap_or_default())
        .map(|(schema, name)| Partition { schema, name })
        .collect();
    // Byte order, whatever the database's collation.
    resource.partitions.sort_unstable();
    Ok(Some(resource))
}

fn role_resource(row: &Row, options: &DiscoveryOptions) -> Result<Resource, tokio_postgres::Error> {
    let name: String = row.try_get(0)?;
    let connection_limit: i32 = row.try_get(8)?;
    let mut member_of: Vec<String> = row.try_get(10)?;
    member_of.sort_unstable();
    let mut resource = described(
        Resource::new(ResourceId::role(name), ResourceKind::Role),
        None,
        row.try_get(11)?,
        options,
    );
    resource.attributes = Some(RoleAttributes {
        login: row.try_get(1)?,
        superuser: row.try_get(2)?,
        createrole: row.try_get(3)?,
        createdb: row.try_get(4)?,
        replication: row.try_get(5)?,
        bypassrls: row.try_get(6)?,
        inherit: row.try_get(7)?,
        connection_limit: (connection_limit >= 0).then_some(connection_limit),
        valid_until: row.try_get(9)?,
        member_of,
    });
    Ok(resource)
}
