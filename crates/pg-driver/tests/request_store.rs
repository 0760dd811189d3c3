//! The PostgreSQL request store against a real server: the conformance suite, a
//! restart with pending requests, replicas starting at once, concurrent approvals,
//! the migration runner's refusals, and hostile users of the instance. One cluster
//! serves the whole binary; each test works in a database of its own.

use std::sync::{Arc, OnceLock};

use pgwarden_core::conninfo::ConnInfo;
use pgwarden_core::requests::{RequestFilter, RequestState, RequestStore, StoreError};
use pgwarden_pg_driver::{
    ConnectOptions, Connector, PgRequestStore, REQUEST_STORE_SCHEMA, REQUEST_STORE_SCHEMA_VERSION,
};
use pgwarden_testkit::{TempCluster, request_store_conformance as conformance, traps};

fn cluster() -> &'static TempCluster {
    static C: OnceLock<TempCluster> = OnceLock::new();
    C.get_or_init(|| {
        TempCluster::builder()
            .setting("log_min_messages", "warning")
            .max_connections(300)
            .start()
            .unwrap()
    })
}

/// Held shared by every test, and exclusively by the one that restarts the server.
static SERVER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn q_in(db: &str, sql: &str) -> String {
    cluster()
        .psql_in(db, sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A fresh database named `db`.
fn database(db: &str) -> &str {
    cluster().create_database(db).unwrap();
    db
}

/// The superuser connector, to the `postgres` database.
fn connector(options: &ConnectOptions) -> Connector {
    let info: ConnInfo = cluster().dsn().parse().unwrap();
    Connector::new(&info, options).unwrap()
}

async fn open(db: &str) -> Result<PgRequestStore, StoreError> {
    PgRequestStore::open(&connector(&ConnectOptions::default()), Some(db)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conforms() {
    let _server = SERVER.read().await;
    let db = database("rs_conformance");
    let store = open(db).await.unwrap();
    assert_eq!(store.database(), db);
    assert_eq!(store.applied_migrations(), [1]);
    conformance::run(Arc::new(store), "pg").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn defaults_to_the_connectors_database() {
    let _server = SERVER.read().await;
    let db = database("rs_default");
    let info: ConnInfo = cluster()
        .conninfo(cluster().superuser(), cluster().password(), db)
        .parse()
        .unwrap();
    let store = PgRequestStore::open(
        &Connector::new(&info, &ConnectOptions::default()).unwrap(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(store.database(), db);
    assert_eq!(
        q_in(db, "SELECT count(*) FROM pgwarden_requests.migrations").trim(),
        "1"
    );
    let e = PgRequestStore::open(&connector(&ConnectOptions::default()), Some(""))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pending_requests_survive_reopening_and_a_server_restart() {
    let db = database("rs_restart");
    let mut ids = Vec::new();
    {
        let _server = SERVER.read().await;
        let store = open(db).await.unwrap();
        for i in 0..5 {
            let r = conformance::sample("restart-app", &format!("user{i}"));
            store.insert(&r).await.unwrap();
            ids.push(r.id);
        }
        store.close();
    }
    let pending = RequestFilter::default()
        .integration("restart-app")
        .state(RequestState::Pending);
    // A new store (a new process, or another replica) finds them, and migrates nothing.
    let reopened = open(db).await.unwrap();
    assert_eq!(reopened.applied_migrations(), [] as [u32; 0]);
    let listed: Vec<String> = reopened
        .list(&pending)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed.len(), 5);
    for id in &ids {
        assert!(listed.contains(id), "{id} lost");
    }

    // The server restarts under an open store: it reconnects, nothing is lost.
    {
        let _exclusive = SERVER.write().await;
        cluster().restart().unwrap();
    }
    let _server = SERVER.read().await;
    let mut survived = None;
    for _ in 0..20 {
        match reopened.list(&pending).await {
            Ok(list) => {
                survived = Some(list);
                break;
            }
            Err(e) => {
                assert!(e.is_retryable(), "{e:?}");
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
        }
    }
    assert_eq!(survived.expect("the store reconnects").len(), 5);
    let mut first = reopened.get(&ids[0]).await.unwrap().unwrap();
    first.transition(RequestState::Approved).unwrap();
    assert_eq!(reopened.update(&first).await.unwrap().version, 2);
    let again = open(db).await.unwrap();
    assert_eq!(again.list(&pending).await.unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_starting_at_once_migrate_once() {
    let _server = SERVER.read().await;
    let db = database("rs_replicas");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let db = db.to_owned();
        tasks.spawn(async move { open(&db).await });
    }
    let mut applied = Vec::new();
    while let Some(store) = tasks.join_next().await {
        applied.extend_from_slice(store.unwrap().unwrap().applied_migrations());
    }
    assert_eq!(
        applied,
        [1],
        "each migration is applied by exactly one replica"
    );
    assert_eq!(
        q_in(
            db,
            "SELECT string_agg(version || ':' || name, ',') FROM pgwarden_requests.migrations"
        )
        .trim(),
        "1:requests"
    );
    assert_eq!(REQUEST_STORE_SCHEMA_VERSION, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_approvals_complete_a_request_once() {
    let _server = SERVER.read().await;
    let db = database("rs_approvals");
    // Several replicas, each with its own pool, race on one request.
    let stores: Vec<Arc<dyn RequestStore>> = vec![
        Arc::new(open(db).await.unwrap()),
        Arc::new(open(db).await.unwrap()),
        Arc::new(open(db).await.unwrap()),
    ];
    let v1 = stores[0]
        .insert(&conformance::sample("race-app", "alice"))
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24 {
        let store = Arc::clone(&stores[i % stores.len()]);
        let mut change = v1.clone();
        change.approvals.push(pgwarden_core::requests::Vote::new(
            format!("approver-{i}"),
            None,
        ));
        change.transition(RequestState::Approved).unwrap();
        tasks.spawn(async move { store.update(&change).await });
    }
    let (mut won, mut conflicts) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::Conflict { .. }) => conflicts += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!((won, conflicts), (1, 23));
    let winner = stores[2].get(&v1.id).await.unwrap().unwrap();
    assert_eq!((winner.version, winner.approvals.len()), (2, 1));
    // Also through the suite's check, on one store shared by many tasks.
    conformance::concurrent_updates(Arc::clone(&stores[1]), "pg-race", 32).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_migration_is_refused() {
    let _server = SERVER.read().await;
    let db = database("rs_checksum");
    open(db).await.unwrap();
    q_in(
        db,
        "UPDATE pgwarden_requests.migrations SET checksum = 'edited' WHERE version = 1",
    );
    let e = open(db).await.unwrap_err();
    let message = e.to_string();
    assert!(matches!(e, StoreError::Failed(_)), "{e:?}");
    assert!(
        message.contains("migration 1 (requests)")
            && message.contains("checksum edited")
            && message.contains("changed outside pgwarden"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_migrated_by_a_newer_pgwarden_is_refused() {
    let _server = SERVER.read().await;
    let db = database("rs_newer");
    open(db).await.unwrap();
    q_in(
        db,
        "INSERT INTO pgwarden_requests.migrations VALUES (2, 'future', 'abc', now())",
    );
    let e = open(db).await.unwrap_err().to_string();
    assert!(
        e.contains("migrated by a newer pgwarden")
            && e.contains("version 2 (future)")
            && e.contains("up to 1"),
        "{e}"
    );
    // Nothing was changed by the refused start.
    assert_eq!(
        q_in(db, "SELECT count(*) FROM pgwarden_requests.migrations").trim(),
        "2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_someone_else_owns_is_refused() {
    let _server = SERVER.read().await;
    let db = database("rs_hostile");
    q_in(
        "postgres",
        "CREATE ROLE rs_mallory LOGIN PASSWORD 'rs_mallory';
         CREATE ROLE rs_peer LOGIN PASSWORD 'rs_peer';",
    );
    q_in(db, "GRANT CREATE ON DATABASE rs_hostile TO rs_mallory");
    // Mallory creates the schema first, with a table where the requests would go.
    cluster()
        .psql_with(
            &cluster().conninfo("rs_mallory", "rs_mallory", db),
            "CREATE SCHEMA pgwarden_requests;
             CREATE TABLE pgwarden_requests.requests (id text, record jsonb);",
        )
        .unwrap();
    let e = open(db).await.unwrap_err().to_string();
    assert!(
        e.contains("schema pgwarden_requests in database rs_hostile is owned by role rs_mallory")
            && e.contains("could read or forge"),
        "{e}"
    );

    // A schema owned by the connector, but a relation in it owned by someone else.
    q_in(
        db,
        "DROP SCHEMA pgwarden_requests CASCADE;
         CREATE SCHEMA pgwarden_requests;
         CREATE TABLE pgwarden_requests.migrations (version int4 PRIMARY KEY, name text, checksum text, applied_at timestamptz);
         ALTER TABLE pgwarden_requests.migrations OWNER TO rs_mallory;",
    );
    let e = open(db).await.unwrap_err().to_string();
    assert!(
        e.contains(
            "pgwarden_requests.migrations in database rs_hostile is owned by role rs_mallory"
        ),
        "{e}"
    );

    // Once it is clean, the store opens, and other users can neither read nor write it.
    q_in(db, "DROP SCHEMA pgwarden_requests CASCADE");
    let store = open(db).await.unwrap();
    store
        .insert(&conformance::sample("hostile-app", "alice"))
        .await
        .unwrap();
    for (user, sql) in [
        ("rs_peer", "SELECT count(*) FROM pgwarden_requests.requests"),
        (
            "rs_mallory",
            "SELECT count(*) FROM pgwarden_requests.requests",
        ),
        (
            "rs_mallory",
            "UPDATE pgwarden_requests.requests SET state = 'granted'",
        ),
        (
            "rs_mallory",
            "CREATE TABLE pgwarden_requests.planted (x int)",
        ),
    ] {
        let out = cluster().psql_with(&cluster().conninfo(user, user, db), sql);
        let e = out.expect_err(sql).to_string();
        assert!(e.contains("permission denied"), "{user}: {sql}: {e}");
    }
    assert_eq!(REQUEST_STORE_SCHEMA, "pgwarden_requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn traps_in_public_never_run() {
    let _server = SERVER.read().await;
    let db = database("rs_traps");
    q_in(
        "postgres",
        "CREATE ROLE rs_trapper LOGIN PASSWORD 'rs_trapper'",
    );
    q_in(db, &traps::plant_sql("rs_trapper"));
    // Look-alike tables in public, which an unqualified name would reach.
    q_in(
        db,
        "CREATE TABLE public.requests (id text, integration text, requester text, state text,
             created_at timestamptz, updated_at timestamptz, version int8, record jsonb);
         CREATE TABLE public.migrations (version int4, name text, checksum text, applied_at timestamptz);
         GRANT ALL ON public.requests, public.migrations TO PUBLIC;",
    );
    for (name, pin) in [("pinned", true), ("unpinned", false)] {
        let options = ConnectOptions {
            pin_search_path: pin,
            ..ConnectOptions::default()
        };
        let store = PgRequestStore::open(&connector(&options), Some(db))
            .await
            .unwrap();
        conformance::run(Arc::new(store), name).await;
    }
    assert_eq!(
        traps::trap_calls(cluster(), db).unwrap(),
        0,
        "{}",
        traps::trap_log(cluster()).unwrap()
    );
    assert_eq!(
        q_in(
            db,
            "SELECT (SELECT count(*) FROM public.requests) + (SELECT count(*) FROM public.migrations)"
        )
        .trim(),
        "0"
    );
    assert_eq!(
        q_in(
            "postgres",
            "SELECT rolsuper FROM pg_roles WHERE rolname = 'rs_trapper'"
        )
        .trim(),
        "f"
    );
}
