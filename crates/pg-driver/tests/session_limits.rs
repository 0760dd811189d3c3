//! Per-grant session limits against a real server: each limit is applied to the
//! grant's login role and bites when the granted user logs in with its password; a
//! limit the server cannot apply refuses the grant before anything is made; a
//! persistent user's limits follow its grants.
//!
//! pgaudit: the cluster preloads pgaudit when the server's installation has it. When
//! it does not, the pgaudit test says why it skips — unless `PGWARDEN_REQUIRE_PGAUDIT`
//! is set (CI, after installing it for the system's server), and the server is the
//! system's (no `PGWARDEN_TEST_PG` / `PGWARDEN_TEST_PG_BINDIR`): then it fails.

#![allow(clippy::too_many_lines, reason = "scenario tests read top to bottom")]
#![allow(
    clippy::many_single_char_names,
    reason = "p, g, a, b, c, u: provisioner, grants, user"
)]

use std::sync::OnceLock;
use std::time::Duration;

use pgwarden_core::config::{ConnectorMode, UserMode};
use pgwarden_core::conninfo::ConnInfo;
use pgwarden_core::session::{Millis, SessionLimits};
use pgwarden_pg_driver::tokio_postgres::{self, NoTls};
use pgwarden_pg_driver::{
    ConnectOptions, Connector, Grant, GrantRequest, InvalidRequest, ProvisionError, Provisioner,
};
use pgwarden_testkit::{PgBinaries, TempCluster, login_roles_of};
use secrecy::ExposeSecret;

mod common;

const DB: &str = "limits";

/// Whether the selected server installation has pgaudit.
fn pgaudit_installed() -> bool {
    PgBinaries::locate(None, None).is_ok_and(|b| b.has_library("pgaudit"))
}

/// Whether a missing pgaudit fails the test instead of skipping it.
fn pgaudit_required() -> bool {
    std::env::var_os("PGWARDEN_REQUIRE_PGAUDIT").is_some_and(|v| !v.is_empty())
        && std::env::var_os(pgwarden_testkit::PG_VERSION_ENV).is_none()
        && std::env::var_os(pgwarden_testkit::BINDIR_ENV).is_none()
}

/// The cluster of this test binary (pgaudit preloaded when installed), with database
/// `limits`: table `s1.t1`.
fn cluster() -> &'static TempCluster {
    static C: OnceLock<(TempCluster, bool)> = OnceLock::new();
    &C.get_or_init(|| {
        let pgaudit = pgaudit_installed();
        let mut b = TempCluster::builder();
        if pgaudit {
            b = b.setting("shared_preload_libraries", "pgaudit");
        }
        let c = b.start().unwrap();
        c.create_database(DB).unwrap();
        c.psql_in(
            DB,
            "CREATE SCHEMA s1; CREATE TABLE s1.t1 (id int); INSERT INTO s1.t1 VALUES (1);",
        )
        .unwrap();
        (c, pgaudit)
    })
    .0
}

/// Whether the cluster loaded pgaudit.
fn pgaudit_loaded() -> bool {
    cluster()
        .psql("SELECT count(*) FROM pg_catalog.pg_settings WHERE name = 'pgaudit.log'")
        .unwrap()
        .trim()
        == "1"
}

fn provisioner(mode: UserMode) -> Provisioner {
    provisioner_on(cluster(), mode)
}

fn provisioner_on(c: &TempCluster, mode: UserMode) -> Provisioner {
    let info: ConnInfo = c.dsn().parse().unwrap();
    Provisioner::new(
        Connector::new(&info, &ConnectOptions::default()).unwrap(),
        common::provisioner_config("limits", mode, ConnectorMode::Superuser),
    )
    .unwrap()
}

fn q(sql: &str) -> String {
    cluster().psql(sql).unwrap().trim().to_owned()
}

/// A read-write grant on `s1` for `requester` with `session` limits.
fn request(requester: &str, session: SessionLimits) -> GrantRequest {
    GrantRequest {
        session,
        ..common::request(
            requester,
            &[&format!("postgresql-schema:{DB}/s1=read-write")],
        )
    }
}

/// A session of the granted user, logging in with its password, as its own client
/// would: plain libpq-style settings, nothing pinned by pgwarden.
async fn login(g: &Grant) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    login_as(
        cluster(),
        &g.username,
        g.password.as_ref().unwrap().expose_secret(),
    )
    .await
}

async fn login_as(
    c: &TempCluster,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) =
        tokio_postgres::connect(&c.conninfo(user, password, DB), NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn code(e: &tokio_postgres::Error) -> Option<&str> {
    e.as_db_error().map(|d| d.code().code())
}

/// The role's settings as the server keeps them (`pg_db_role_setting`), sorted.
fn role_settings(username: &str) -> String {
    q(&format!(
        "SELECT coalesce(string_agg(c, ' ' ORDER BY c), '') FROM pg_catalog.pg_db_role_setting s \
         JOIN pg_catalog.pg_roles r ON r.oid = s.setrole, unnest(s.setconfig) c \
         WHERE r.rolname = '{username}'"
    ))
}

fn connection_limit(username: &str) -> String {
    q(&format!(
        "SELECT rolconnlimit FROM pg_catalog.pg_roles WHERE rolname = '{username}'"
    ))
}

fn limits(f: impl FnOnce(&mut SessionLimits)) -> SessionLimits {
    let mut l = SessionLimits::default();
    f(&mut l);
    l
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_cancels_a_long_statement() {
    let p = provisioner(UserMode::Ephemeral);
    // With an explicit id: the path that takes the grant's lock.
    let g = p
        .grant(GrantRequest {
            grant_id: Some("limits-statement".into()),
            ..request(
                "stmt",
                limits(|l| l.statement_timeout = Some(Millis::new(200))),
            )
        })
        .await
        .unwrap();
    assert_eq!(role_settings(&g.username), "statement_timeout=200");
    let user = login(&g).await.unwrap();
    let e = user.simple_query("SELECT pg_sleep(3)").await.unwrap_err();
    assert_eq!(code(&e), Some("57014"), "{e}");
    assert!(user.simple_query("SELECT pg_sleep(0.05)").await.is_ok());
    p.revoke(&g.grant_id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_timeout_gives_up_on_a_held_lock() {
    let p = provisioner(UserMode::Ephemeral);
    let g = p
        .grant(request(
            "locker",
            limits(|l| l.lock_timeout = Some(Millis::new(200))),
        ))
        .await
        .unwrap();
    let (holder, connection) = tokio_postgres::connect(
        &cluster().conninfo(cluster().superuser(), cluster().password(), DB),
        NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    holder
        .batch_execute("BEGIN; LOCK TABLE s1.t1 IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let user = login(&g).await.unwrap();
    let started = std::time::Instant::now();
    let e = tokio::time::timeout(
        Duration::from_secs(10),
        user.simple_query("SELECT count(*) FROM s1.t1"),
    )
    .await
    .expect("lock_timeout should have ended the wait")
    .unwrap_err();
    assert_eq!(code(&e), Some("55P03"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    holder.batch_execute("ROLLBACK").await.unwrap();
    assert!(
        user.simple_query("SELECT count(*) FROM s1.t1")
            .await
            .is_ok()
    );
    p.revoke(&g.grant_id).await.unwrap();
}

/// Waits (bounded) until a query on `client` fails; the failure.
async fn closed_within(client: &tokio_postgres::Client, wait: Duration) -> tokio_postgres::Error {
    tokio::time::sleep(wait).await;
    tokio::time::timeout(Duration::from_secs(5), client.simple_query("SELECT 1"))
        .await
        .expect("a query on a closed session answers at once")
        .expect_err("the session should have been closed by the server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeouts_close_the_session() {
    let p = provisioner(UserMode::Ephemeral);
    let g = p
        .grant(request(
            "idle_tx",
            limits(|l| l.idle_in_transaction_session_timeout = Some(Millis::new(300))),
        ))
        .await
        .unwrap();
    let user = login(&g).await.unwrap();
    user.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let e = closed_within(&user, Duration::from_millis(1200)).await;
    assert!(user.is_closed() || code(&e) == Some("25P03"), "{e}");
    // Outside a transaction, idling is fine.
    let user = login(&g).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(user.simple_query("SELECT 1").await.is_ok());
    p.revoke(&g.grant_id).await.unwrap();

    let idle = limits(|l| l.idle_session_timeout = Some(Millis::new(300)));
    if cluster().server_major() < 14 {
        let e = p.grant(request("idle", idle)).await.unwrap_err();
        assert!(
            matches!(
                e,
                ProvisionError::InvalidRequest(InvalidRequest::SettingUnsupported {
                    setting: "idle_session_timeout",
                    since: 14,
                    ..
                })
            ),
            "{e}"
        );
        return;
    }
    let g = p.grant(request("idle", idle)).await.unwrap();
    let user = login(&g).await.unwrap();
    assert!(user.simple_query("SELECT 1").await.is_ok());
    let e = closed_within(&user, Duration::from_millis(1200)).await;
    assert!(user.is_closed() || code(&e) == Some("57P05"), "{e}");
    p.revoke(&g.grant_id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_timeout_bites_from_17_and_is_refused_before() {
    let p = provisioner(UserMode::Ephemeral);
    let req = request(
        "txn_timeout",
        limits(|l| l.transaction_timeout = Some(Millis::new(300))),
    );
    let major = cluster().server_major();
    if major < 17 {
        let e = p.grant(req).await.unwrap_err();
        match &e {
            ProvisionError::InvalidRequest(InvalidRequest::SettingUnsupported {
                setting,
                major: m,
                since,
            }) => assert_eq!((*setting, *m, *since), ("transaction_timeout", major, 17)),
            other => panic!("{other}"),
        }
        let text = e.to_string();
        assert!(
            text.contains("transaction_timeout") && text.contains(&format!("PostgreSQL {major}")),
            "{text}"
        );
        // Refused before anything was made.
        assert_eq!(
            q(&format!(
                "SELECT count(*) FROM pg_catalog.pg_roles WHERE {}",
                login_roles_of("txn_timeout")
            )),
            "0"
        );
        return;
    }
    let g = p.grant(req).await.unwrap();
    let user = login(&g).await.unwrap();
    user.batch_execute("BEGIN").await.unwrap();
    let e = user.simple_query("SELECT pg_sleep(3)").await.unwrap_err();
    assert!(user.is_closed() || code(&e) == Some("25P04"), "{e}");
    p.revoke(&g.grant_id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_refuses_the_extra_login() {
    let p = provisioner(UserMode::Ephemeral);
    let g = p
        .grant(request("conn", limits(|l| l.connection_limit = Some(1))))
        .await
        .unwrap();
    assert_eq!(connection_limit(&g.username), "1");
    let first = login(&g).await.unwrap();
    let e = login(&g).await.unwrap_err();
    assert_eq!(code(&e), Some("53300"), "{e}");
    drop(first);
    // Once the first has gone, one may log in again.
    let mut again = None;
    for _ in 0..50 {
        if let Ok(c) = login(&g).await {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "a login after the first ended");
    p.revoke(&g.grant_id).await.unwrap();
}

/// The grantee tries to lift the limits that are security controls, as itself: its
/// connection limit and (when pgaudit is loaded) its audit class. Both are refused;
/// the timeouts, by contrast, are defaults it may change (the docs say so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grantee_cannot_lift_its_connection_limit_or_audit_logging() {
    let audited = pgaudit_loaded();
    let p = provisioner(UserMode::Ephemeral);
    let g = p
        .grant(request(
            "escaper",
            limits(|l| {
                l.connection_limit = Some(2);
                l.statement_timeout = Some(Millis::new(5000));
                if audited {
                    l.pgaudit_log = Some("all".into());
                }
            }),
        ))
        .await
        .unwrap();
    let user = login(&g).await.unwrap();
    for attack in [
        "ALTER ROLE CURRENT_USER CONNECTION LIMIT -1",
        "ALTER ROLE CURRENT_USER WITH CONNECTION LIMIT 100",
    ] {
        let e = user.batch_execute(attack).await.unwrap_err();
        assert_eq!(code(&e), Some("42501"), "{attack}: {e}");
    }
    assert_eq!(connection_limit(&g.username), "2");
    if audited {
        for attack in [
            "ALTER ROLE CURRENT_USER SET pgaudit.log = 'none'",
            "ALTER ROLE CURRENT_USER RESET pgaudit.log",
            "SET pgaudit.log = 'none'",
        ] {
            let result = user.batch_execute(attack).await;
            let after = role_settings(&g.username);
            assert!(
                result.is_err(),
                "{attack} succeeded; role settings now {after}"
            );
            let e = result.unwrap_err();
            assert_eq!(code(&e), Some("42501"), "{attack}: {e}");
        }
        // RESET ALL is let through, but resets only what the user may set: the audit
        // class stays (and the user's own timeout default goes).
        user.batch_execute("ALTER ROLE CURRENT_USER RESET ALL")
            .await
            .unwrap();
        assert_eq!(role_settings(&g.username), "pgaudit.log=all");
    } else {
        assert!(
            !pgaudit_required(),
            "PGWARDEN_REQUIRE_PGAUDIT is set, but pgaudit is not loaded"
        );
        eprintln!("pgaudit not loaded: only the connection limit was attacked");
    }
    // A guard rail, not a control: the user may change its own timeout default.
    user.batch_execute("SET statement_timeout = 0")
        .await
        .unwrap();
    p.revoke(&g.grant_id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_path_and_read_only_are_the_session_defaults() {
    let p = provisioner(UserMode::Ephemeral);
    let g = p
        .grant(request(
            "defaults",
            limits(|l| {
                l.search_path = Some(vec!["s1".into(), "$user".into(), "Odd \"name\"".into()]);
                l.default_transaction_read_only = Some(true);
            }),
        ))
        .await
        .unwrap();
    let user = login(&g).await.unwrap();
    let row = user.query_one("SHOW search_path", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), r#"s1, "$user", "Odd ""name""""#);
    // Unqualified names resolve through it.
    assert!(user.simple_query("SELECT count(*) FROM t1").await.is_ok());
    let e = user
        .simple_query("INSERT INTO s1.t1 VALUES (2)")
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some("25006"), "{e}");
    // A default, not a control: the user may lift it in its own session.
    user.batch_execute("SET default_transaction_read_only = off")
        .await
        .unwrap();
    user.batch_execute("INSERT INTO s1.t1 VALUES (2)")
        .await
        .unwrap();
    p.revoke(&g.grant_id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgaudit_writes_the_users_statements_to_the_log() {
    if !pgaudit_loaded() {
        assert!(
            !pgaudit_required(),
            "PGWARDEN_REQUIRE_PGAUDIT is set, but the server in use has no pgaudit (install postgresql-<major>-pgaudit)"
        );
        eprintln!(
            "skipping: pgaudit is not installed for the server in use (install postgresql-{}-pgaudit; PGWARDEN_REQUIRE_PGAUDIT=1 makes this a failure with the system's server)",
            cluster().server_major()
        );
        return;
    }
    let p = provisioner(UserMode::Ephemeral);
    let g = p
        .grant(request(
            "auditor",
            limits(|l| l.pgaudit_log = Some("read".into())),
        ))
        .await
        .unwrap();
    assert_eq!(role_settings(&g.username), "pgaudit.log=read");
    let user = login(&g).await.unwrap();
    user.simple_query("SELECT id AS audited_marker_7f3 FROM s1.t1")
        .await
        .unwrap();
    user.simple_query("INSERT INTO s1.t1 VALUES (3) RETURNING 'not_audited_marker_7f3'")
        .await
        .unwrap();
    let mut log = String::new();
    for _ in 0..50 {
        log = cluster().log_contents().unwrap();
        if log.contains("audited_marker_7f3") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let line = log
        .lines()
        .find(|l| l.contains("AUDIT:") && l.contains("audited_marker_7f3"))
        .unwrap_or_else(|| panic!("no AUDIT line for the user's SELECT in the log"));
    assert!(line.contains("READ"), "{line}");
    // Only the classes asked for: the write is not audited.
    assert!(
        !log.lines()
            .any(|l| l.contains("AUDIT:") && l.contains("not_audited_marker_7f3")),
        "a WRITE was audited with pgaudit_log = read"
    );
    p.revoke(&g.grant_id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgaudit_log_without_pgaudit_is_refused() {
    // A small cluster of its own when the shared one has pgaudit loaded.
    let own;
    let c = if pgaudit_loaded() {
        own = TempCluster::builder().max_connections(20).start().unwrap();
        own.create_database(DB).unwrap();
        own.psql_in(DB, "CREATE SCHEMA s1").unwrap();
        &own
    } else {
        cluster()
    };
    let p = provisioner_on(c, UserMode::Ephemeral);
    let e = p
        .grant(request(
            "no_audit",
            limits(|l| l.pgaudit_log = Some("read".into())),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ProvisionError::InvalidRequest(InvalidRequest::PgauditMissing)
        ),
        "{e}"
    );
    let text = e.to_string();
    assert!(
        text.contains("pgaudit") && text.contains("shared_preload_libraries"),
        "{text}"
    );
    assert_eq!(
        c.psql(&format!(
            "SELECT count(*) FROM pg_catalog.pg_roles WHERE {}",
            login_roles_of("no_audit")
        ))
        .unwrap()
        .trim(),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_limits_are_refused_by_name() {
    let p = provisioner(UserMode::Ephemeral);
    let e = p
        .grant(request(
            "invalid",
            limits(|l| {
                l.connection_limit = Some(0);
                l.statement_timeout = Some(Millis::new(0));
            }),
        ))
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(e, ProvisionError::InvalidRequest(InvalidRequest::SessionLimits(ref p)) if p.len() == 2)
            && text.contains("session.connection_limit")
            && text.contains("session.statement_timeout"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ephemeral_roles_settings_go_with_it() {
    let p = provisioner(UserMode::Ephemeral);
    let g = p
        .grant(request(
            "gone",
            limits(|l| {
                l.statement_timeout = Some(Millis::new(30_000));
                l.search_path = Some(vec!["s1".into()]);
                l.connection_limit = Some(3);
            }),
        ))
        .await
        .unwrap();
    let oid = q(&format!(
        "SELECT oid FROM pg_catalog.pg_roles WHERE rolname = '{}'",
        g.username
    ));
    assert_eq!(
        role_settings(&g.username),
        "search_path=s1 statement_timeout=30000"
    );
    assert_eq!(connection_limit(&g.username), "3");
    p.revoke(&g.grant_id).await.unwrap();
    assert_eq!(
        q(&format!(
            "SELECT count(*) FROM pg_catalog.pg_db_role_setting WHERE setrole = {oid}"
        )),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_users_limits_follow_its_grants() {
    let p = provisioner(UserMode::Persistent);
    let a = p
        .grant(request(
            "persistent_limits",
            limits(|l| {
                l.statement_timeout = Some(Millis::new(1_000));
                l.connection_limit = Some(2);
                l.search_path = Some(vec!["s1".into()]);
            }),
        ))
        .await
        .unwrap();
    let u = a.username.clone();
    assert_eq!(role_settings(&u), "search_path=s1 statement_timeout=1000");
    assert_eq!(connection_limit(&u), "2");
    let password = a.password.clone().unwrap();
    let user = login_as(cluster(), &u, password.expose_secret())
        .await
        .unwrap();
    let row = user.query_one("SHOW statement_timeout", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "1s");
    drop(user);

    // A second grant: the most restrictive of each limit.
    let b = p
        .grant(request(
            "persistent_limits",
            limits(|l| {
                l.statement_timeout = Some(Millis::new(500));
                l.connection_limit = Some(5);
                l.default_transaction_read_only = Some(true);
            }),
        ))
        .await
        .unwrap();
    assert_eq!(b.username, u);
    assert_eq!(
        role_settings(&u),
        "default_transaction_read_only=on search_path=s1 statement_timeout=500"
    );
    assert_eq!(connection_limit(&u), "2");
    let user = login_as(cluster(), &u, password.expose_secret())
        .await
        .unwrap();
    let e = user.simple_query("SELECT pg_sleep(3)").await.unwrap_err();
    assert_eq!(code(&e), Some("57014"), "{e}");
    drop(user);

    // Revoking one leaves the other's.
    p.revoke(&b.grant_id).await.unwrap();
    assert_eq!(role_settings(&u), "search_path=s1 statement_timeout=1000");
    assert_eq!(connection_limit(&u), "2");

    // Revoking the last resets them all.
    p.revoke(&a.grant_id).await.unwrap();
    assert_eq!(role_settings(&u), "");
    assert_eq!(
        q(&format!(
            "SELECT count(*) FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_roles r ON r.oid = s.setrole WHERE r.rolname = '{u}'"
        )),
        "0"
    );
    assert_eq!(connection_limit(&u), "-1");

    // A grant without limits after them: none come back.
    let c = p
        .grant(request("persistent_limits", SessionLimits::default()))
        .await
        .unwrap();
    assert_eq!(role_settings(&u), "");
    assert_eq!(connection_limit(&u), "-1");
    p.revoke(&c.grant_id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_createrole_connector_is_told_how_to_set_pgaudit_log() {
    if !pgaudit_loaded() || cluster().server_major() < 15 {
        eprintln!("skipping: needs pgaudit and PostgreSQL 15+ (GRANT SET ON PARAMETER)");
        return;
    }
    // A managed-cloud shape on a cluster of its own: the connector has CREATEROLE,
    // not SUPERUSER, and owns the application's database.
    let c = TempCluster::builder()
        .setting("shared_preload_libraries", "pgaudit")
        .max_connections(30)
        .start()
        .unwrap();
    c.psql("CREATE ROLE cloud_admin LOGIN CREATEROLE CREATEDB PASSWORD 'cloud-admin-pw'")
        .unwrap();
    c.psql_with(
        &c.conninfo("cloud_admin", "cloud-admin-pw", "postgres"),
        "CREATE DATABASE limits_cr",
    )
    .unwrap();
    c.psql_with(
        &c.conninfo("cloud_admin", "cloud-admin-pw", "limits_cr"),
        "CREATE SCHEMA s1; CREATE TABLE s1.t1 (id int)",
    )
    .unwrap();
    let info: ConnInfo = c
        .conninfo("cloud_admin", "cloud-admin-pw", "postgres")
        .parse()
        .unwrap();
    let p = Provisioner::new(
        Connector::new(&info, &ConnectOptions::default()).unwrap(),
        common::provisioner_config("limits", UserMode::Ephemeral, ConnectorMode::Createrole),
    )
    .unwrap();
    let req = || GrantRequest {
        session: limits(|l| l.pgaudit_log = Some("read".into())),
        ..common::request("cr_audit", &["postgresql-schema:limits_cr/s1=read-only"])
    };
    let e = p.grant(req()).await.unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(e, ProvisionError::ConnectorMode(_))
            && text.contains("GRANT SET ON PARAMETER pgaudit.log TO \"cloud_admin\""),
        "{text}"
    );
    assert_eq!(
        c.psql(&format!(
            "SELECT count(*) FROM pg_catalog.pg_roles WHERE {}",
            login_roles_of("cr_audit")
        ))
        .unwrap()
        .trim(),
        "0"
    );
    c.psql("GRANT SET ON PARAMETER pgaudit.log TO cloud_admin")
        .unwrap();
    let g = p.grant(req()).await.unwrap();
    assert_eq!(
        c.psql(&format!(
            "SELECT array_to_string(setconfig, ' ') FROM pg_catalog.pg_db_role_setting s \
             JOIN pg_catalog.pg_roles r ON r.oid = s.setrole WHERE r.rolname = '{}'",
            g.username
        ))
        .unwrap()
        .trim(),
        "pgaudit.log=read"
    );
    p.revoke(&g.grant_id).await.unwrap();
}
