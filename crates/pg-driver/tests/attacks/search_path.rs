//! Item: the connector's own SQL runs as written, whatever users plant in `public`.
//!
//! The attack (the CVE-2018-1058 pattern): a user with CREATE on `public` — every login
//! role on PostgreSQL 13/14, a grantee of an admin level on `public` on 15+ — creates
//! operators (and functions) whose argument types match pgwarden's catalog SQL more
//! exactly than the built-in ones. If pgwarden's session searched `public`, the next
//! grant would run the attacker's code as the connector (a superuser), and
//! `ALTER ROLE attacker SUPERUSER` in that code would succeed.
//!
//! The traps: in `public` of every database pgwarden touches, an operator for every
//! comparison and pattern operator name and every pair of catalog-ish argument types
//! that `pg_catalog` has no exact operator for, plus functions shadowing the catalog
//! functions pgwarden calls, each recording its call in a sequence (which no rollback
//! undoes) and raising a WARNING (so the server log names the statement). One trap
//! also carries the real payload. Then every operation runs — grants of every level in
//! both user modes and both connector modes, extend, list, revoke, reconcile (with
//! stale and expired grants), discovery, preflight — and no trap may have fired.
//!
//! It runs with the `search_path` pinned in the startup packet (what pgwarden always
//! does), and with the pin turned off and the server's default `search_path`, which
//! proves the SQL itself is immune (defence in depth). A `search_path` that names
//! `public` *before* `pg_catalog` is outside what SQL can defend against (every type
//! name and operator would need qualifying); the pin is what rules it out.

use std::time::Duration;

use pgwarden_core::config::{ConnectorMode, UserMode};
use pgwarden_core::conninfo::ConnInfo;
use pgwarden_core::duration::Ttl;
use pgwarden_pg_driver::Preflight;
use pgwarden_pg_driver::{ConnectOptions, Connector};
use pgwarden_pg_driver::{DiscoveryOptions, discover};
use pgwarden_pg_driver::{Expiry, Provisioner};
use pgwarden_testkit::{TempCluster, traps};
use secrecy::ExposeSecret;

use crate::common;

/// A cluster of its own: the traps would disturb the other attacks' helper queries.
fn trapped_cluster() -> &'static TempCluster {
    static C: std::sync::OnceLock<TempCluster> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        TempCluster::builder()
            .setting("log_min_messages", "warning")
            .max_connections(100)
            .start()
            .unwrap()
    })
}

fn q_in(db: &str, sql: &str) -> String {
    trapped_cluster()
        .psql_in(db, sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// How often the traps in `db` fired.
fn trap_calls(db: &str) -> i64 {
    traps::trap_calls(trapped_cluster(), db).unwrap()
}

/// The trap WARNINGs in the server log, with the statements that set them off.
fn trap_log() -> String {
    traps::trap_log(trapped_cluster()).unwrap()
}

/// Plants the traps once per database, in `postgres` and the two resource databases.
fn setup() -> &'static [&'static str] {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    const DBS: &[&str] = &["postgres", "sp_app", "sp_other"];
    DONE.get_or_init(|| {
        let c = trapped_cluster();
        q_in(
            "postgres",
            "CREATE ROLE sp_attacker LOGIN PASSWORD 'sp_attacker';
             CREATE ROLE sp_manager CREATEROLE LOGIN PASSWORD 'sp_manager';
             CREATE ROLE analysts NOLOGIN;",
        );
        for db in &DBS[1..] {
            c.create_database(db).unwrap();
            q_in(db, common::PROBE_SCHEMA_SQL);
            q_in(
                db,
                &format!(
                    "GRANT USAGE ON SCHEMA s2 TO analysts; GRANT SELECT ON s2.u1 TO analysts;
                     ALTER DATABASE {db} OWNER TO sp_manager;"
                ),
            );
            q_in(
                db,
                "ALTER SCHEMA s1 OWNER TO sp_manager; ALTER SCHEMA s2 OWNER TO sp_manager;
                 ALTER SCHEMA public OWNER TO sp_manager;
                 ALTER TABLE s1.t1 OWNER TO sp_manager; ALTER TABLE s1.t2 OWNER TO sp_manager;
                 ALTER TABLE s2.u1 OWNER TO sp_manager;",
            );
        }
        // In the application databases the traps belong to their owner, so that a
        // CREATEROLE connector (which grants only on what it can act as) can still
        // grant database-wide: the traps do not depend on who owns them.
        q_in("postgres", &traps::plant_sql("sp_attacker"));
        for db in &DBS[1..] {
            q_in(
                db,
                &format!("SET ROLE sp_manager; {}", traps::plant_sql("sp_attacker")),
            );
        }
        // The planting itself must not have fired anything.
        for db in DBS {
            assert_eq!(trap_calls(db), 0, "planting fired a trap in {db}");
        }
    });
    DBS
}

fn provisioner(
    options: &ConnectOptions,
    dsn: &str,
    user_mode: UserMode,
    connector_mode: ConnectorMode,
) -> Provisioner {
    let info: ConnInfo = dsn.parse().unwrap();
    Provisioner::new(
        Connector::new(&info, options).unwrap(),
        common::provisioner_config("sp", user_mode, connector_mode),
    )
    .unwrap()
}

/// Every operation, against every database with traps.
async fn run_every_operation(options: &ConnectOptions, dsn: &str, connector_mode: ConnectorMode) {
    let c = trapped_cluster();
    let info: ConnInfo = dsn.parse().unwrap();
    let connector = Connector::new(&info, options).unwrap();

    // check
    let conn = connector.connect().await.unwrap();
    let preflight = Preflight::run(&conn.client, connector_mode).await.unwrap();
    assert!(preflight.can_provision(), "{preflight:?}");
    drop(conn);

    // discover
    let found = discover(&connector, &DiscoveryOptions::default())
        .await
        .unwrap();
    assert!(
        found.failures.is_empty(),
        "{:?}\n{}",
        found.failures,
        trap_log()
    );

    for user_mode in [UserMode::Ephemeral, UserMode::Persistent] {
        let p = provisioner(options, dsn, user_mode, connector_mode);
        let mut grants = Vec::new();
        for (access, _) in common::LEVEL_CASES {
            if connector_mode == ConnectorMode::Createrole && access.contains("role:") {
                continue;
            }
            for db in ["sp_app", "sp_other"] {
                let access = access.replace("{db}", db);
                // A persistent role per connector: on 16+ a CREATEROLE connector may
                // not alter a persistent role the superuser connector made.
                let requester = if user_mode == UserMode::Persistent {
                    format!("persistent-{connector_mode:?}@example.com")
                } else {
                    format!("sp-{}@example.com", grants.len())
                };
                let g = p
                    .grant(common::request(&requester, &[&access]))
                    .await
                    .unwrap_or_else(|e| panic!("{access}: {e}"));
                grants.push(g);
            }
        }
        // The grantee works (the pin is pgwarden's, not theirs).
        if let Some(g) = grants.iter().find(|g| g.password.is_some()) {
            common::as_user(
                c,
                &g.username,
                g.password.as_ref().unwrap().expose_secret(),
                "sp_app",
                "SELECT 1",
            )
            .unwrap();
        }
        // A table appears: reconcile refreshes privilege roles.
        q_in(
            "sp_app",
            "CREATE TABLE IF NOT EXISTS s1.late (id int); ALTER TABLE s1.late OWNER TO sp_manager",
        );
        p.extend(
            &grants[1].grant_id,
            Expiry::After(Ttl::from_secs(7200).unwrap()),
        )
        .await
        .unwrap();
        assert!(!p.list().await.unwrap().is_empty());
        // An expired grant for reconcile to revoke.
        let mut short = common::request(
            &format!("short-{connector_mode:?}@example.com"),
            &["postgresql-schema:sp_app/s1=read-only"],
        );
        short.expiry = Expiry::After(Ttl::from_secs(1).unwrap());
        let short = p.grant(short).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let report = p.reconcile().await.unwrap();
        assert!(
            report.revoked.iter().any(|r| r.grant_id == short.grant_id),
            "{report:?}"
        );
        // A session left open, objects made by the grantee: revocation's full path.
        let mut _open = None;
        if let Some(g) = grants.iter().find(|g| g.password.is_some()) {
            _open = Some(
                common::session(
                    c,
                    &g.username,
                    g.password.as_ref().unwrap().expose_secret(),
                    "sp_app",
                )
                .await,
            );
        }
        for g in &grants {
            p.revoke(&g.grant_id).await.unwrap();
        }
        p.reconcile().await.unwrap();
    }
}

async fn assert_no_trap_fired(options: ConnectOptions, dsn: &str, connector_mode: ConnectorMode) {
    let dbs = setup();
    q_in("postgres", "ALTER ROLE sp_attacker NOSUPERUSER");
    let before: Vec<i64> = dbs.iter().map(|db| trap_calls(db)).collect();
    run_every_operation(&options, dsn, connector_mode).await;
    let after: Vec<i64> = dbs.iter().map(|db| trap_calls(db)).collect();
    assert_eq!(
        before,
        after,
        "planted operators or functions ran as the connector:\n{}",
        trap_log()
    );
    let attacker = q_in(
        "postgres",
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = 'sp_attacker'",
    );
    assert_eq!(attacker.trim(), "f", "the attacker became a superuser");
}

/// With the `search_path` pinned in the startup packet, as pgwarden always connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_operators_never_run_with_the_pinned_search_path() {
    let _serial = serial().lock().await;
    setup();
    assert_no_trap_fired(
        ConnectOptions::default(),
        &trapped_cluster().dsn(),
        ConnectorMode::Superuser,
    )
    .await;
}

/// Without the pin, with the server's default `search_path` (`"$user", public`, the
/// catalog searched first implicitly): pgwarden's SQL itself names `pg_catalog`
/// functions and uses exact-type operators, so no planted operator or function is a
/// better match and the traps still never run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_operators_never_run_even_without_the_pin() {
    let _serial = serial().lock().await;
    setup();
    let c = trapped_cluster();
    let options = ConnectOptions {
        pin_search_path: false,
        ..ConnectOptions::default()
    };
    assert_no_trap_fired(options, &c.dsn(), ConnectorMode::Superuser).await;
}

/// A managed-cloud (CREATEROLE) connector runs other catalog SQL: the same traps, the
/// same verdict, pin off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_operators_never_run_for_a_createrole_connector() {
    let _serial = serial().lock().await;
    setup();
    let c = trapped_cluster();
    // The marker and the untagged role may have been made by the superuser tests'
    // connector (same ledger key): on 16+ a CREATEROLE connector needs ADMIN OPTION
    // on them.
    q_in(
        "postgres",
        "GRANT pg_signal_backend TO sp_manager;
         DO $$ BEGIN
           IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgwarden_managed') THEN
             GRANT pgwarden_managed TO sp_manager WITH ADMIN OPTION;
           END IF;
           IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgwarden_managed_untagged') THEN
             GRANT pgwarden_managed_untagged TO sp_manager WITH ADMIN OPTION;
           END IF;
         END $$;",
    );
    let options = ConnectOptions {
        pin_search_path: false,
        ..ConnectOptions::default()
    };
    let dsn = c.conninfo("sp_manager", "sp_manager", "postgres");
    assert_no_trap_fired(options, &dsn, ConnectorMode::Createrole).await;
}

/// The tests share the traps' counters: one at a time.
fn serial() -> &'static tokio::sync::Mutex<()> {
    static M: std::sync::OnceLock<tokio::sync::Mutex<()>> = std::sync::OnceLock::new();
    M.get_or_init(|| tokio::sync::Mutex::new(()))
}

/// The pin holds whatever the connection string, the role's settings or a `RESET`
/// say, on direct and pooled connections alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_path_is_pinned_in_the_startup_packet() {
    let c = crate::cluster();
    crate::q_in(
        "postgres",
        "CREATE ROLE sp_pinned LOGIN PASSWORD 'sp_pinned';
         ALTER ROLE sp_pinned SET search_path = public, pg_catalog",
    );
    let dsn = format!(
        "{} options='-c search_path=public,pg_catalog'",
        c.conninfo("sp_pinned", "sp_pinned", "postgres")
    );
    let info: ConnInfo = dsn.parse().unwrap();
    let connector = Connector::new(&info, &ConnectOptions::default()).unwrap();
    let conn = connector.connect().await.unwrap();
    let show = |rows: Vec<tokio_postgres::SimpleQueryMessage>| -> Vec<String> {
        rows.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .collect()
    };
    let pinned = vec![pgwarden_pg_driver::PINNED_SEARCH_PATH.to_owned()];
    assert_eq!(
        show(conn.simple_query("SHOW search_path").await.unwrap()),
        pinned
    );
    assert_eq!(
        show(
            conn.simple_query("RESET ALL; SHOW search_path")
                .await
                .unwrap()
        ),
        pinned,
        "RESET must return to the pinned value"
    );
    let pool = pgwarden_pg_driver::Pool::new(
        connector.clone(),
        &pgwarden_pg_driver::PoolOptions::default(),
    )
    .unwrap();
    let pooled = pool.get().await.unwrap();
    assert_eq!(
        show(pooled.simple_query("SHOW search_path").await.unwrap()),
        pinned
    );
    // Without the pin (the adversarial tests' switch), the string's options apply:
    // proof that the assertion above is about the pin, not the server.
    let unpinned = Connector::new(
        &info,
        &ConnectOptions {
            pin_search_path: false,
            ..ConnectOptions::default()
        },
    )
    .unwrap()
    .connect()
    .await
    .unwrap();
    assert_eq!(
        show(unpinned.simple_query("SHOW search_path").await.unwrap()),
        vec!["public,pg_catalog".to_owned()]
    );
}
