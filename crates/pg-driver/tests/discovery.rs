//! Discovery against a real cluster: every table kind, awkward names, databases that
//! cannot be read, role filtering, type selection, diffs and streaming.
//!
//! The tests share one cluster and run at the same time, so each works in databases and
//! roles of its own (unique names) and asserts only on those.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::{StreamExt, TryStreamExt};
use pgwarden_core::config::{ConfigFormat, IntegrationConfig};
use pgwarden_core::owners::{
    IntegrationOwner, OwnerAttribute, OwnerResolver, ResolutionReason, ResourceOwnerSetting,
};
use pgwarden_core::resource::{ResourceId, ResourceType};
use pgwarden_core::tags::{TagSource, Tags};
use pgwarden_pg_driver::{ConnectOptions, Connector};
use pgwarden_pg_driver::{
    DatabaseFailure, Discovered, DiscoveryError, DiscoveryOptions, DiscoveryResult, Partition,
    Resource, ResourceKind, TagReader, discover, discover_stream,
};
use pgwarden_testkit::TempCluster;

fn connector(conninfo: &str) -> Connector {
    Connector::new(&conninfo.parse().unwrap(), &ConnectOptions::default()).unwrap()
}

fn superuser() -> Connector {
    connector(&TempCluster::shared().dsn())
}

/// A name no other test uses.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn sql(script: &str) {
    TempCluster::shared().psql(script).unwrap();
}

fn sql_in(database: &str, script: &str) {
    TempCluster::shared().psql_in(database, script).unwrap();
}

fn new_database(name: &str) {
    TempCluster::shared().create_database(name).unwrap();
}

fn options(types: &[ResourceType]) -> DiscoveryOptions {
    DiscoveryOptions {
        types: types.to_vec(),
        ..DiscoveryOptions::default()
    }
}

/// The resources of one database (schemas and tables), keyed by id.
fn in_database<'a>(result: &'a DiscoveryResult, db: &str) -> BTreeMap<String, &'a Resource> {
    result
        .resources
        .iter()
        .filter(|r| r.resource_type != ResourceType::Database && r.database.as_deref() == Some(db))
        .map(|r| (r.id.to_string(), r))
        .collect()
}

fn failure<'a>(result: &'a DiscoveryResult, db: &str) -> Option<&'a DatabaseFailure> {
    result.failures.iter().find(|f| f.database == db)
}

#[tokio::test]
async fn every_table_kind_with_awkward_names_owners_comments_and_tags() {
    let db = unique("disc \"kinds\" ü ✓ ");
    let owner = unique("disc_owner_");
    new_database(&db);
    sql(&format!(
        "CREATE ROLE {o} NOLOGIN;
         COMMENT ON DATABASE {d} IS 'The shop. owner=dba';",
        o = ident(&owner),
        d = ident(&db)
    ));
    let odd = "odd \"schema\" ü/1";
    let table = "ta\"ble ✓:x";
    sql_in(
        &db,
        &format!(
            "CREATE SCHEMA {s};
             COMMENT ON SCHEMA {s} IS 'Sales data. owner=sales team=\"core platform\"';
             CREATE SCHEMA other;
             CREATE TABLE {s}.{t} (id int);
             ALTER TABLE {s}.{t} OWNER TO {o};
             COMMENT ON TABLE {s}.{t} IS 'owner=alice,bob';
             CREATE VIEW {s}.v AS SELECT 1 AS x;
             CREATE MATERIALIZED VIEW {s}.mv AS SELECT 1 AS x;
             CREATE FOREIGN DATA WRAPPER dummy;
             CREATE SERVER srv FOREIGN DATA WRAPPER dummy;
             CREATE FOREIGN TABLE {s}.ft (id int) SERVER srv;
             CREATE TABLE {s}.\"orders by month\" (id int, m int) PARTITION BY RANGE (m);
             CREATE TABLE {s}.o1 PARTITION OF {s}.\"orders by month\" FOR VALUES FROM (1) TO (2);
             CREATE TABLE other.o2 PARTITION OF {s}.\"orders by month\"
                 FOR VALUES FROM (2) TO (3) PARTITION BY LIST (id);
             CREATE TABLE other.o2a PARTITION OF other.o2 FOR VALUES IN (1);
             CREATE FOREIGN TABLE other.o3 PARTITION OF {s}.\"orders by month\"
                 FOR VALUES FROM (3) TO (4) SERVER srv;
             CREATE INDEX ON {s}.\"orders by month\" (id);
             CREATE SEQUENCE {s}.seq;
             CREATE TYPE {s}.composite AS (a int);",
            s = ident(odd),
            t = ident(table),
            o = ident(&owner),
        ),
    );

    let result = discover(&superuser(), &DiscoveryOptions::default())
        .await
        .unwrap();
    assert!(failure(&result, &db).is_none(), "{:?}", result.failures);

    let database = result
        .get(&ResourceId::database(&db))
        .expect("database found");
    assert_eq!(database.kind, ResourceKind::Database);
    assert_eq!(database.owner.as_deref(), Some("postgres"));
    assert_eq!(database.comment.as_deref(), Some("The shop. owner=dba"));
    assert_eq!(database.tags.get("owner"), Some("dba"));

    let found = in_database(&result, &db);
    let kinds: BTreeMap<&str, ResourceKind> =
        found.values().map(|r| (r.name.as_str(), r.kind)).collect();
    let want: BTreeMap<&str, ResourceKind> = [
        ("public", ResourceKind::Schema),
        (odd, ResourceKind::Schema),
        ("other", ResourceKind::Schema),
        (table, ResourceKind::Table),
        ("v", ResourceKind::View),
        ("mv", ResourceKind::MaterializedView),
        ("ft", ResourceKind::ForeignTable),
        ("orders by month", ResourceKind::PartitionedTable),
    ]
    .into_iter()
    .collect();
    // No partitions, indexes, sequences, composite types, or system schemas.
    assert_eq!(kinds, want);

    let schema = result.get(&ResourceId::schema(&db, odd)).unwrap();
    assert_eq!(schema.owner.as_deref(), Some("postgres"));
    assert_eq!(schema.tags.get("owner"), Some("sales"));
    assert_eq!(schema.tags.get("team"), Some("core platform"));

    let id = ResourceId::table(&db, odd, table);
    let t = result.get(&id).unwrap();
    assert_eq!(t.owner.as_deref(), Some(owner.as_str()));
    assert_eq!(t.tags.get("owner"), Some("alice,bob"));
    assert_eq!(t.schema.as_deref(), Some(odd));
    assert_eq!(t.database.as_deref(), Some(db.as_str()));
    // The id survives its text form, '/' and ':' and all.
    assert_eq!(id.to_string().parse::<ResourceId>().unwrap(), id);

    let parted = result
        .get(&ResourceId::table(&db, odd, "orders by month"))
        .unwrap();
    let partition = |schema: &str, name: &str| Partition {
        schema: schema.to_owned(),
        name: name.to_owned(),
    };
    assert_eq!(
        parted.partitions,
        vec![
            partition(odd, "o1"),
            partition("other", "o2"),
            partition("other", "o2a"),
            partition("other", "o3"),
        ]
    );
    assert!(t.partitions.is_empty());

    check_serialized_shape(t, parted);
}

/// The serialized shape: the fields the CLI and host applications read.
fn check_serialized_shape(t: &Resource, parted: &Resource) {
    let json = serde_json::to_value(t).unwrap();
    for key in [
        "id", "type", "name", "database", "schema", "kind", "owner", "comment", "tags",
    ] {
        assert!(json.get(key).is_some(), "{key} missing in {json}");
    }
    assert_eq!(json["type"], "table");
    assert_eq!(json["kind"], "table");
    assert_eq!(json["tags"]["owner"], "alice,bob");
    assert!(json.get("partitions").is_none());
    let json = serde_json::to_value(parted).unwrap();
    assert_eq!(json["kind"], "partitioned_table");
    assert_eq!(json["partitions"][0]["name"], "o1");
    let back: Resource = serde_json::from_value(json).unwrap();
    assert_eq!(&back, parted);
}

#[tokio::test]
async fn databases_that_disallow_connections_and_templates_are_left_out() {
    let closed = unique("disc_closed_");
    let template = unique("disc_template_");
    new_database(&closed);
    new_database(&template);
    sql(&format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS false;
         ALTER DATABASE {} IS_TEMPLATE true;",
        ident(&closed),
        ident(&template)
    ));
    let result = discover(&superuser(), &DiscoveryOptions::default())
        .await
        .unwrap();
    let databases: Vec<&str> = result
        .of_type(ResourceType::Database)
        .map(|r| r.name.as_str())
        .collect();
    assert!(databases.contains(&"postgres"), "{databases:?}");
    for absent in [closed.as_str(), template.as_str(), "template0", "template1"] {
        assert!(!databases.contains(&absent), "{absent} listed");
        assert!(failure(&result, absent).is_none(), "{absent} attempted");
        assert!(in_database(&result, absent).is_empty());
    }
}

#[tokio::test]
async fn databases_that_cannot_be_read_become_failures_and_discovery_goes_on() {
    let role = unique("disc_connector_");
    let no_connect = unique("disc no connect ");
    let full = unique("disc_full_");
    let open = unique("disc_open_");
    for db in [&no_connect, &full, &open] {
        new_database(db);
    }
    sql(&format!(
        "CREATE ROLE {r} LOGIN PASSWORD 'disc-secret';
         REVOKE CONNECT ON DATABASE {n} FROM PUBLIC;
         ALTER DATABASE {f} CONNECTION LIMIT 0;",
        r = ident(&role),
        n = ident(&no_connect),
        f = ident(&full)
    ));
    sql_in(&open, "CREATE TABLE visible (id int);");

    let cluster = TempCluster::shared();
    let connector = connector(&cluster.conninfo(&role, "disc-secret", "postgres"));
    let result = discover(&connector, &DiscoveryOptions::default())
        .await
        .unwrap();

    let denied = failure(&result, &no_connect).expect("no-CONNECT database reported");
    assert!(denied.message.contains("permission denied"), "{denied:?}");
    assert_ne!(denied.class, "query", "{denied:?}");
    let limited = failure(&result, &full).expect("full database reported");
    assert!(
        limited.message.contains("too many connections"),
        "{limited:?}"
    );
    assert!(limited.to_string().contains(&full), "{limited}");

    // The databases themselves are still listed, and the others were read.
    assert!(result.get(&ResourceId::database(&no_connect)).is_some());
    assert!(result.get(&ResourceId::database(&full)).is_some());
    assert!(failure(&result, &open).is_none(), "{:?}", result.failures);
    assert!(
        result
            .get(&ResourceId::table(&open, "public", "visible"))
            .is_some()
    );
    // Failures are data: they serialize.
    let json = serde_json::to_value(denied).unwrap();
    assert_eq!(json["database"], no_connect.as_str());
}

#[tokio::test]
async fn a_connector_database_that_cannot_be_reached_ends_discovery() {
    let cluster = TempCluster::shared();
    let missing = unique("disc_missing_");
    let connector = connector(&cluster.conninfo(cluster.superuser(), cluster.password(), &missing));
    let err = discover(&connector, &DiscoveryOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, DiscoveryError::Connect { .. }), "{err:?}");
    assert_eq!(err.class(), "server");
    assert!(err.to_string().contains(&missing), "{err}");
    // Only roles asked for: the same connection is needed, the same error comes back.
    assert!(
        discover(&connector, &options(&[ResourceType::Role]))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn roles_leave_out_system_and_pgwarden_roles() {
    let analyst = unique("disc_analyst_");
    let app = unique("disc_app_");
    let privilege = unique("pgwarden_p_disc");
    let jit = unique("pgw_disc_jit_");
    let marked_group = unique("disc_marked_group_");
    sql(&format!(
        "DO $$ BEGIN
             CREATE ROLE pgwarden_managed NOLOGIN;
         EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         CREATE ROLE {analyst} NOLOGIN;
         COMMENT ON ROLE {analyst} IS 'Analysts. owner=data';
         CREATE ROLE {app} LOGIN CREATEDB NOINHERIT CONNECTION LIMIT 5
             VALID UNTIL '2030-01-02 03:04:05+00' IN ROLE {analyst};
         CREATE ROLE {privilege} NOLOGIN;
         CREATE ROLE {jit} LOGIN IN ROLE pgwarden_managed, {privilege};
         CREATE ROLE {marked_group} NOLOGIN IN ROLE pgwarden_managed;",
        analyst = ident(&analyst),
        app = ident(&app),
        privilege = ident(&privilege),
        jit = ident(&jit),
        marked_group = ident(&marked_group),
    ));
    let result = discover(&superuser(), &options(&[ResourceType::Role]))
        .await
        .unwrap();
    assert!(
        result
            .resources
            .iter()
            .all(|r| r.resource_type == ResourceType::Role)
    );
    let names: Vec<&str> = result.resources.iter().map(|r| r.name.as_str()).collect();
    assert!(names.contains(&"postgres"), "{names:?}");
    for absent in [
        "pg_read_all_data",
        "pg_monitor",
        "pgwarden_managed",
        &privilege,
        &jit,
        &marked_group,
    ] {
        assert!(!names.contains(&absent), "{absent} listed: {names:?}");
    }

    let analyst = result.get(&ResourceId::role(&analyst)).unwrap();
    assert_eq!(analyst.kind, ResourceKind::Role);
    assert_eq!(analyst.tags.get("owner"), Some("data"));
    assert_eq!(analyst.owner, None);
    assert_eq!(analyst.database, None);
    let a = analyst.attributes.as_ref().unwrap();
    assert!(!a.login && !a.superuser && a.inherit);
    assert_eq!(a.connection_limit, None);
    assert_eq!(a.valid_until, None);

    let app = result.get(&ResourceId::role(&app)).unwrap();
    let a = app.attributes.as_ref().unwrap();
    assert!(a.login && a.createdb && !a.createrole && !a.inherit && !a.replication);
    assert_eq!(a.connection_limit, Some(5));
    assert_eq!(a.valid_until.as_deref(), Some("2030-01-02T03:04:05Z"));
    assert_eq!(a.member_of, vec![analyst.name.clone()]);
    let json = serde_json::to_value(app).unwrap();
    assert_eq!(json["attributes"]["connection_limit"], 5);

    let postgres = result.get(&ResourceId::role("postgres")).unwrap();
    assert!(postgres.attributes.as_ref().unwrap().superuser);
}

#[tokio::test]
async fn only_the_selected_types_are_discovered() {
    let db = unique("disc_types_");
    new_database(&db);
    sql_in(&db, "CREATE TABLE t (id int);");
    let connector = superuser();

    let only = |types: &[ResourceType]| {
        let options = options(types);
        let connector = connector.clone();
        async move { discover(&connector, &options).await.unwrap() }
    };
    let databases = only(&[ResourceType::Database]).await;
    assert!(
        databases
            .resources
            .iter()
            .all(|r| r.resource_type == ResourceType::Database)
    );
    assert!(databases.get(&ResourceId::database(&db)).is_some());
    assert_eq!(databases.types, vec![ResourceType::Database]);

    let tables = only(&[ResourceType::Table]).await;
    assert!(
        tables
            .resources
            .iter()
            .all(|r| r.resource_type == ResourceType::Table)
    );
    assert!(tables.get(&ResourceId::table(&db, "public", "t")).is_some());

    let mixed = only(&[ResourceType::Role, ResourceType::Schema]).await;
    assert!(mixed.get(&ResourceId::schema(&db, "public")).is_some());
    assert!(mixed.get(&ResourceId::role("postgres")).is_some());
    assert!(mixed.get(&ResourceId::database(&db)).is_none());
    assert_eq!(mixed.types, vec![ResourceType::Schema, ResourceType::Role]);

    assert!(only(&[]).await.resources.is_empty());

    // An integration's `discovery` setting selects the types.
    let config = IntegrationConfig::parse(
        "name = \"disc\"\nhostname = \"db\"\ndiscovery = [\"role\", \"database\"]\n",
        ConfigFormat::Toml,
    )
    .unwrap();
    let from_config = DiscoveryOptions::for_integration(&config);
    assert!(from_config.wants(ResourceType::Role) && !from_config.wants(ResourceType::Table));
    let result = discover(&connector, &from_config).await.unwrap();
    assert!(result.get(&ResourceId::database(&db)).is_some());
    assert!(result.of_type(ResourceType::Table).next().is_none());
}

#[tokio::test]
async fn diff_reports_added_removed_and_changed() {
    let db = unique("disc_diff_");
    let new_owner = unique("disc_diff_owner_");
    new_database(&db);
    sql(&format!("CREATE ROLE {} NOLOGIN;", ident(&new_owner)));
    sql_in(
        &db,
        "CREATE SCHEMA s;
         CREATE TABLE s.kept (id int);
         CREATE TABLE s.dropped (id int);
         CREATE TABLE s.retagged (id int);
         COMMENT ON TABLE s.retagged IS 'owner=a';
         CREATE VIEW s.replaced AS SELECT 1 AS x;",
    );
    let connector = superuser();
    let types = [
        ResourceType::Database,
        ResourceType::Schema,
        ResourceType::Table,
    ];
    let before = discover(&connector, &options(&types)).await.unwrap();
    sql_in(
        &db,
        &format!(
            "CREATE TABLE s.added (id int);
             DROP TABLE s.dropped;
             COMMENT ON TABLE s.retagged IS 'owner=b';
             ALTER SCHEMA s OWNER TO {};
             DROP VIEW s.replaced;
             CREATE TABLE s.replaced (x int);",
            ident(&new_owner)
        ),
    );
    let after = discover(&connector, &options(&types)).await.unwrap();
    assert!(after.diff(&after).is_empty());

    let diff = after.diff(&before);
    let mine = |r: &Resource| r.database.as_deref() == Some(db.as_str());
    let ids = |rs: &[Resource]| -> Vec<String> {
        rs.iter()
            .filter(|r| mine(r))
            .map(|r| r.name.clone())
            .collect()
    };
    assert_eq!(ids(&diff.added), vec!["added"]);
    assert_eq!(ids(&diff.removed), vec!["dropped"]);
    let changed: BTreeMap<String, Vec<&str>> = diff
        .changed
        .iter()
        .filter(|c| mine(&c.after))
        .map(|c| (c.id.to_string(), c.fields.clone()))
        .collect();
    let want: BTreeMap<String, Vec<&str>> = [
        (ResourceId::schema(&db, "s").to_string(), vec!["owner"]),
        (
            ResourceId::table(&db, "s", "retagged").to_string(),
            vec!["comment", "tags"],
        ),
        (
            ResourceId::table(&db, "s", "replaced").to_string(),
            vec!["kind"],
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(changed, want);
    let retagged = diff
        .changed
        .iter()
        .find(|c| c.id == ResourceId::table(&db, "s", "retagged"))
        .unwrap();
    assert_eq!(retagged.before.tags.get("owner"), Some("a"));
    assert_eq!(retagged.after.tags.get("owner"), Some("b"));

    // A database the later discovery could not read is unknown, not emptied.
    let mut unreadable = after.clone();
    unreadable.resources.retain(|r| {
        !(r.database.as_deref() == Some(db.as_str()) && r.resource_type != ResourceType::Database)
    });
    unreadable.failures.push(DatabaseFailure {
        database: db.clone(),
        class: "auth".into(),
        message: "permission denied".into(),
    });
    let diff = unreadable.diff(&after);
    assert!(diff.removed.iter().all(|r| !mine(r)), "{:?}", diff.removed);
    assert!(diff.unverified_databases.contains(&db));
    // Types not asked for both times are not compared.
    let roles_too = discover(&connector, &DiscoveryOptions::default())
        .await
        .unwrap();
    assert!(
        after
            .diff(&roles_too)
            .removed
            .iter()
            .all(|r| r.resource_type != ResourceType::Role)
    );
    assert!(
        roles_too
            .diff(&after)
            .added
            .iter()
            .all(|r| r.resource_type != ResourceType::Role)
    );
}

#[tokio::test]
async fn the_stream_yields_what_discover_returns() {
    let db = unique("disc_stream_");
    new_database(&db);
    sql_in(
        &db,
        "CREATE SCHEMA a; CREATE SCHEMA b;
         SELECT format('CREATE TABLE a.t%s (id int)', i) FROM generate_series(1, 50) i \\gexec",
    );
    let connector = superuser();
    let collected = discover(&connector, &DiscoveryOptions::default())
        .await
        .unwrap();
    let mut streamed = Vec::new();
    let mut stream = discover_stream(
        &connector,
        &DiscoveryOptions {
            max_connections: 1,
            ..DiscoveryOptions::default()
        },
    );
    while let Some(item) = stream.try_next().await.unwrap() {
        if let Discovered::Resource(r) = item
            && r.database.as_deref() == Some(db.as_str())
        {
            streamed.push(r.id.to_string());
        }
    }
    streamed.sort();
    let want: Vec<String> = collected
        .resources
        .iter()
        .filter(|r| r.database.as_deref() == Some(db.as_str()))
        .map(|r| r.id.to_string())
        .collect();
    assert_eq!(want.len(), 1 + 3 + 50, "{want:?}");
    let mut want = want;
    want.sort();
    assert_eq!(streamed, want);

    // Dropping a stream part-way stops the discovery without fuss.
    let mut stream = discover_stream(&connector, &DiscoveryOptions::default());
    assert!(stream.next().await.is_some());
    drop(stream);
}

/// A tag reader standing in for cloud tags fetched beforehand.
#[derive(Debug)]
struct CloudTags {
    cloud: BTreeMap<ResourceId, Tags>,
}

impl TagReader for CloudTags {
    fn tags(&self, resource: &ResourceId, comment: Option<&str>) -> Tags {
        let mut tags = comment.map(Tags::parse_comment).unwrap_or_default();
        if let Some(cloud) = self.cloud.get(resource) {
            for (k, v) in cloud.iter() {
                tags.insert(k, v);
            }
        }
        tags
    }
}

#[tokio::test]
async fn tags_feed_owner_resolution_and_a_host_can_plug_its_own() {
    let db = unique("disc_tags_");
    new_database(&db);
    sql_in(
        &db,
        "CREATE SCHEMA billing;
         COMMENT ON SCHEMA billing IS 'owner=payments';
         CREATE TABLE billing.invoices (id int);
         CREATE TABLE billing.refunds (id int);
         COMMENT ON TABLE billing.refunds IS 'Refunds. owner=risk';",
    );
    let invoices = ResourceId::table(&db, "billing", "invoices");
    let reader = CloudTags {
        cloud: [(
            invoices.clone(),
            [("cost-center", "42")].into_iter().collect(),
        )]
        .into_iter()
        .collect(),
    };
    let options = DiscoveryOptions {
        types: vec![ResourceType::Schema, ResourceType::Table],
        tags: Arc::new(reader),
        ..DiscoveryOptions::default()
    };
    let result = discover(&superuser(), &options).await.unwrap();
    let refunds = ResourceId::table(&db, "billing", "refunds");
    assert_eq!(
        result.get(&invoices).unwrap().tags.get("cost-center"),
        Some("42")
    );
    assert_eq!(
        result.get(&refunds).unwrap().tags.get("owner"),
        Some("risk")
    );

    let source = Arc::new(result.tag_source());
    assert_eq!(
        source.tags(&refunds).await.unwrap().get("owner"),
        Some("risk")
    );
    let resolver = OwnerResolver::new(
        vec![IntegrationOwner {
            source: "okta".into(),
            attribute: OwnerAttribute::Group,
            values: vec!["dba".into()],
        }],
        Some(ResourceOwnerSetting {
            key: "owner".into(),
            source: "okta".into(),
            attribute: OwnerAttribute::Group,
        }),
        source,
        Vec::new(),
    )
    .unwrap();
    // The table has no owner tag of its own: its schema's applies.
    let resolution = resolver.resolve(&invoices).await.unwrap();
    assert_eq!(resolution.approvers[0].value, "payments");
    assert!(matches!(
        resolution.reason,
        ResolutionReason::ResourceOwnerTag { .. }
    ));
    let resolution = resolver.resolve(&refunds).await.unwrap();
    assert_eq!(resolution.approvers[0].value, "risk");
}
