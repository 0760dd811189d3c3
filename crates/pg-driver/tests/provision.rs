//! Grant and revoke against a real server: exactly the level asked for, for exactly
//! as long as asked, and then gone without a trace.

#![allow(clippy::too_many_lines, reason = "scenario tests read top to bottom")]
#![allow(
    clippy::many_single_char_names,
    reason = "p, g, q: provisioner, grant, query"
)]

use std::collections::BTreeMap;
use std::sync::Arc;

use pgwarden_core::config::{ConnectorMode, UserMode};
use pgwarden_core::conninfo::ConnInfo;
use pgwarden_core::duration::Ttl;
use pgwarden_core::resource::{PermissionLevel, ResourceId};
use pgwarden_pg_driver::{ConnectOptions, Connector};
use pgwarden_pg_driver::{Expiry, ListedState, Provisioner, ProvisionerConfig, Step};
use pgwarden_testkit::{TempCluster, login_roles_of};

mod common;
use secrecy::ExposeSecret;

fn cluster() -> &'static TempCluster {
    static C: std::sync::OnceLock<TempCluster> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        TempCluster::builder()
            .setting("log_statement", "all")
            // Logging by duration logs a statement's text whatever log_statement says.
            .setting("log_min_duration_statement", "0")
            .max_connections(300)
            .start()
            .unwrap()
    })
}

fn config(mode: UserMode) -> ProvisionerConfig {
    common::provisioner_config("test", mode, ConnectorMode::Superuser)
}

fn provisioner(mode: UserMode) -> Provisioner {
    let info: ConnInfo = cluster().dsn().parse().unwrap();
    Provisioner::new(
        Connector::new(&info, &ConnectOptions::default()).unwrap(),
        config(mode),
    )
    .unwrap()
}

use common::{entry, request};

/// Runs SQL as a user through psql (libpq); Ok(output) or Err(stderr).
fn as_user(user: &str, password: &str, db: &str, sql: &str) -> Result<String, String> {
    common::as_user(cluster(), user, password, db, sql)
}

fn q(sql: &str) -> String {
    cluster().psql(sql).unwrap()
}

/// Whether a role of that name exists.
fn role_exists(name: &str) -> bool {
    q(&format!(
        "SELECT count(*) FROM pg_roles WHERE rolname = '{name}'"
    ))
    .trim()
        != "0"
}

fn setup_database(name: &str) {
    cluster().create_database(name).unwrap();
    cluster().psql_in(name, common::PROBE_SCHEMA_SQL).unwrap();
}

fn probes(user: &str, password: &str, db: &str) -> BTreeMap<&'static str, bool> {
    common::probes(cluster(), user, password, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_level_allows_exactly_what_it_should() {
    let p = provisioner(UserMode::Ephemeral);
    cluster().psql("CREATE ROLE analysts NOLOGIN").unwrap();
    let cases = common::LEVEL_CASES;
    for (i, (access, allowed)) in cases.iter().enumerate() {
        let db = format!("levels_{i}");
        setup_database(&db);
        cluster()
            .psql_in(
                &db,
                "GRANT USAGE ON SCHEMA s2 TO analysts; GRANT SELECT ON s2.u1 TO analysts;",
            )
            .unwrap();
        let access = access.replace("{db}", &db);
        let g = p
            .grant(request("alice@example.com", &[&access]))
            .await
            .unwrap();
        // A table created after the grant, by the owner (a superuser).
        cluster()
            .psql_in(
                &db,
                "CREATE TABLE s1.late (id int); INSERT INTO s1.late VALUES (1);",
            )
            .unwrap();
        let got = probes(
            &g.username,
            g.password.as_ref().unwrap().expose_secret(),
            &db,
        );
        let want: BTreeMap<&str, bool> = got.keys().map(|k| (*k, allowed.contains(k))).collect();
        assert_eq!(got, want, "{access}");
        if cluster().server_major() >= 17
            && !access.contains("=connect")
            && !access.contains("role:")
        {
            // PostgreSQL 17's MAINTAIN comes with admin ("ALL"), and only with it.
            let maintain = as_user(
                &g.username,
                g.password.as_ref().unwrap().expose_secret(),
                &db,
                "SELECT has_table_privilege('s1.t1', 'MAINTAIN')",
            )
            .unwrap();
            let want = if access.ends_with("=admin") { "t" } else { "f" };
            assert_eq!(maintain.trim(), want, "MAINTAIN with {access}");
        }
        p.revoke(&g.grant_id).await.unwrap();
        assert!(
            as_user(
                &g.username,
                g.password.as_ref().unwrap().expose_secret(),
                &db,
                "SELECT 1"
            )
            .is_err()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_is_complete_across_databases_and_sessions() {
    let p = provisioner(UserMode::Ephemeral);
    for db in ["rev_a", "rev_b"] {
        setup_database(db);
        cluster()
            .psql_in(
                db,
                "CREATE SCHEMA scratch; GRANT CREATE, USAGE ON SCHEMA scratch TO PUBLIC;",
            )
            .unwrap();
    }
    let g = p
        .grant(request(
            "bob",
            &[
                "postgresql-database:rev_a=read-write",
                "postgresql-database:rev_b=read-write",
            ],
        ))
        .await
        .unwrap();
    let pw = g.password.as_ref().unwrap().expose_secret().to_owned();
    for db in ["rev_a", "rev_b"] {
        as_user(
            &g.username,
            &pw,
            db,
            "CREATE TABLE scratch.mine (id serial, v text);
             CREATE SEQUENCE scratch.myseq;
             CREATE FUNCTION scratch.f() RETURNS int LANGUAGE sql AS 'SELECT 1';
             ALTER DEFAULT PRIVILEGES IN SCHEMA scratch GRANT SELECT ON TABLES TO PUBLIC;
             GRANT SELECT ON scratch.mine TO analysts_dummy_missing_ok;",
        )
        .ok();
        as_user(
            &g.username,
            &pw,
            db,
            "CREATE TABLE IF NOT EXISTS scratch.mine (id serial, v text);
             CREATE SEQUENCE IF NOT EXISTS scratch.myseq;
             CREATE OR REPLACE FUNCTION scratch.f() RETURNS int LANGUAGE sql AS 'SELECT 1';
             ALTER DEFAULT PRIVILEGES IN SCHEMA scratch GRANT SELECT ON TABLES TO PUBLIC;",
        )
        .unwrap();
        if cluster().server_major() >= 17 {
            // An ACL entry with PostgreSQL 17's MAINTAIN, granted by the user.
            as_user(
                &g.username,
                &pw,
                db,
                "GRANT MAINTAIN ON scratch.mine TO PUBLIC;
                 ALTER DEFAULT PRIVILEGES IN SCHEMA scratch GRANT MAINTAIN ON TABLES TO PUBLIC;",
            )
            .unwrap();
        }
    }
    // Open sessions that would outlive a VALID UNTIL.
    let session = common::session(cluster(), &g.username, &pw, "rev_a").await;
    let session_b = common::session(cluster(), &g.username, &pw, "rev_b").await;

    let report = p.revoke(&g.grant_id).await.unwrap();
    assert!(report.role_dropped && report.login_disabled, "{report:?}");
    assert_eq!(report.sessions_terminated, 2, "{report:?}");
    assert_eq!(report.memberships_removed.len(), 2, "{report:?}");
    let dbs: Vec<&str> = report
        .databases
        .iter()
        .map(|d| d.database.as_str())
        .collect();
    assert!(
        dbs.contains(&"rev_a") && dbs.contains(&"rev_b"),
        "{report:?}"
    );
    for d in &report.databases {
        assert!(
            d.objects_dropped >= 4,
            "table, its sequence, a sequence, a function, default ACL: {d:?}"
        );
    }
    // Sessions are gone.
    assert!(session.query_one("SELECT 1", &[]).await.is_err());
    assert!(session_b.query_one("SELECT 1", &[]).await.is_err());
    // Nothing refers to the role anywhere.
    assert!(!role_exists(&g.username));
    assert_eq!(q("SELECT count(*) FROM pg_shdepend WHERE refclassid = 'pg_authid'::regclass AND refobjid NOT IN (SELECT oid FROM pg_roles)").trim(), "0");
    for db in ["rev_a", "rev_b"] {
        let out = cluster()
            .psql_in(
                db,
                &format!(
                    "SELECT (SELECT count(*) FROM pg_class WHERE relacl::text LIKE '%{u}%')
                          + (SELECT count(*) FROM pg_default_acl WHERE defaclacl::text LIKE '%{u}%')
                          + (SELECT count(*) FROM pg_namespace WHERE nspacl::text LIKE '%{u}%')
                          + (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'scratch')
                          + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'scratch')",
                    u = g.username
                ),
            )
            .unwrap();
        assert_eq!(out.trim(), "0", "{db}");
    }
    // Idempotent.
    let again = p.revoke(&g.grant_id).await.unwrap();
    assert!(again.already_revoked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_users_keep_objects_and_lose_login() {
    let p = provisioner(UserMode::Persistent);
    setup_database("persist");
    cluster()
        .psql_in(
            "persist",
            "CREATE SCHEMA scratch; GRANT CREATE, USAGE ON SCHEMA scratch TO PUBLIC;",
        )
        .unwrap();
    let g1 = p
        .grant(request(
            "carol@example.com",
            &["postgresql-schema:persist/s1=read-only"],
        ))
        .await
        .unwrap();
    let pw = g1.password.as_ref().unwrap().expose_secret().to_owned();
    as_user(
        &g1.username,
        &pw,
        "persist",
        "CREATE TABLE scratch.kept (id int)",
    )
    .unwrap();
    // A second grant reuses the role and keeps the password.
    let g2 = p
        .grant(request(
            "carol@example.com",
            &["postgresql-schema:persist/s2=read-only"],
        ))
        .await
        .unwrap();
    assert_eq!(g2.username, g1.username);
    assert!(g2.password.is_none());
    assert!(as_user(&g1.username, &pw, "persist", "SELECT count(*) FROM s2.u1").is_ok());
    // Revoking the first keeps the second's access.
    p.revoke(&g1.grant_id).await.unwrap();
    assert!(as_user(&g1.username, &pw, "persist", "SELECT count(*) FROM s1.t1").is_err());
    assert!(as_user(&g1.username, &pw, "persist", "SELECT count(*) FROM s2.u1").is_ok());
    // Revoking the last disables login; objects survive.
    let r = p.revoke(&g2.grant_id).await.unwrap();
    assert!(r.login_disabled && !r.role_dropped, "{r:?}");
    assert!(as_user(&g1.username, &pw, "persist", "SELECT 1").is_err());
    assert_eq!(
        cluster()
            .psql_in("persist", "SELECT count(*) FROM scratch.kept")
            .unwrap()
            .trim(),
        "0"
    );
    assert_eq!(
        q(&format!(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = '{}'",
            g1.username
        ))
        .trim(),
        "f"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_until_stops_logins_with_nothing_running() {
    let _alone = common::reconciling().lock().await;
    let p = provisioner(UserMode::Ephemeral);
    setup_database("expiry");
    let mut req = request("dave", &["postgresql-database:expiry=connect"]);
    req.expiry = Expiry::After(Ttl::from_secs(2).unwrap());
    let g = p.grant(req).await.unwrap();
    let pw = g.password.as_ref().unwrap().expose_secret().to_owned();
    assert!(as_user(&g.username, &pw, "expiry", "SELECT 1").is_ok());
    drop(p);
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let e = as_user(&g.username, &pw, "expiry", "SELECT 1").unwrap_err();
    assert!(e.contains("password authentication failed"), "{e}");
    // A new process sees it as expired and reconcile revokes it.
    let p = provisioner(UserMode::Ephemeral);
    let listed = p.list().await.unwrap();
    let mine = listed.iter().find(|l| l.grant_id == g.grant_id).unwrap();
    assert_eq!(mine.state, ListedState::Expired);
    let report = p.reconcile().await.unwrap();
    assert!(
        report.revoked.iter().any(|r| r.grant_id == g.grant_id),
        "{report:?}"
    );
    assert!(
        p.list()
            .await
            .unwrap()
            .iter()
            .all(|l| l.grant_id != g.grant_id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_ids_are_idempotent_and_extend_moves_the_expiry() {
    let p = provisioner(UserMode::Ephemeral);
    setup_database("idem");
    let mut req = request("erin", &["postgresql-schema:idem/s1=read-only"]);
    req.grant_id = Some("ticket-42".into());
    let a = p.grant(req.clone()).await.unwrap();
    let b = p.grant(req).await.unwrap();
    assert!(a.created && !b.created);
    assert_eq!(a.username, b.username);
    assert!(b.password.is_none());
    assert!(!format!("{a:?}").contains(a.password.as_ref().unwrap().expose_secret()));
    let n = q(
        "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid WHERE r.rolname = 'pgwarden_managed'",
    );
    assert!(n.trim().parse::<i64>().unwrap() >= 1);
    let extended = p
        .extend("ticket-42", Expiry::After(Ttl::from_secs(7200).unwrap()))
        .await
        .unwrap();
    assert!(extended.expires_at > a.expires_at);
    let until = q(&format!(
        "SELECT extract(epoch FROM rolvaliduntil)::bigint FROM pg_roles WHERE rolname = '{}'",
        a.username
    ));
    assert_eq!(
        until.trim().parse::<i64>().unwrap(),
        extended.expires_at.unix_timestamp()
    );
    let e = p
        .extend(
            "ticket-42",
            Expiry::After(Ttl::from_secs(30 * 86_400).unwrap()),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("max_ttl"), "{e}");
    assert!(
        p.extend("nope", Expiry::After(Ttl::from_secs(60).unwrap()))
            .await
            .is_err()
    );
    // A restarted process knows everything.
    let fresh = provisioner(UserMode::Ephemeral);
    let listed = fresh.list().await.unwrap();
    let l = listed.iter().find(|l| l.grant_id == "ticket-42").unwrap();
    assert_eq!(
        (l.username.as_str(), l.requester.as_str(), l.state),
        (a.username.as_str(), "erin", ListedState::Active)
    );
    fresh.revoke("ticket-42").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_inject_nothing() {
    let p = provisioner(UserMode::Ephemeral);
    let db = "we\"ird db; --";
    let schema = "s'p a\"ce;ü";
    let table = format!("{}x", "é".repeat(31)); // 63 bytes
    cluster().create_database(db).unwrap();
    let qi = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    cluster()
        .psql_in(
            db,
            &format!(
                "CREATE SCHEMA {s}; CREATE TABLE {s}.{t} (id int); INSERT INTO {s}.{t} VALUES (7);",
                s = qi(schema),
                t = qi(&table)
            ),
        )
        .unwrap();
    let access = pgwarden_core::resource::AccessEntry::new(
        ResourceId::table(db, schema, &table),
        PermissionLevel::Select,
    )
    .unwrap();
    let mut req = request("mallory\"; DROP ROLE postgres; --", &[]);
    req.access = vec![access];
    let g = p.grant(req).await.unwrap();
    assert!(
        g.username.starts_with("pgw_") && g.username.ends_with("_mallory_drop_role_postgres"),
        "{}",
        g.username
    );
    let out = cluster()
        .psql_with(
            &cluster().conninfo(
                &g.username,
                g.password.as_ref().unwrap().expose_secret(),
                db,
            ),
            &format!("SELECT * FROM {}.{}", qi(schema), qi(&table)),
        )
        .unwrap();
    assert_eq!(out.trim(), "7");
    p.revoke(&g.grant_id).await.unwrap();
    // Grant ids with LIKE and JSON metacharacters are found exactly: revoking one never
    // touches another whose id it matches as a pattern or a prefix.
    let ids = [r#"T-1%_"\ 'x"#, "T-1__", "T-1", "T-1%"];
    let mut grants = Vec::new();
    for id in ids {
        let mut req = request("ids", &["postgresql-database:postgres=connect"]);
        req.grant_id = Some(id.to_owned());
        grants.push(p.grant(req).await.unwrap());
    }
    for (i, id) in ids.iter().enumerate() {
        let report = p.revoke(id).await.unwrap();
        assert!(report.role_dropped, "{id}: {report:?}");
        assert_eq!(
            report.username.as_deref(),
            Some(grants[i].username.as_str())
        );
        let left: Vec<String> = p
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|g| g.grant_id)
            .collect();
        for later in &ids[i + 1..] {
            assert!(
                left.iter().any(|l| l == later),
                "revoking {id} took {later}"
            );
        }
    }
    // The requester's name injected nothing: the superuser is still there.
    let su = cluster().superuser().to_owned();
    assert_eq!(
        q(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{su}' AND rolsuper"
        ))
        .trim(),
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_reach_sql_logs_or_errors() {
    let p = provisioner(UserMode::Ephemeral);
    setup_database("secrets");
    let g = p
        .grant(request(
            "frank",
            &["postgresql-schema:secrets/s1=read-only"],
        ))
        .await
        .unwrap();
    let pw = g.password.as_ref().unwrap().expose_secret().to_owned();
    as_user(&g.username, &pw, "secrets", "SELECT 1").unwrap();
    let log = cluster().log_contents().unwrap();
    assert!(!log.contains(&pw), "the password is in the server log");
    // The superuser connector silences statement logging before the statement that
    // carries the verifier (the login role is created without one, then given it).
    assert!(
        log.contains(&format!("CREATE ROLE \"{}\" NOLOGIN", g.username)),
        "the role's creation (no secret in it) is logged as any statement"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains(&g.username) && l.contains("PASSWORD")),
        "verifier statement logged: {:?}",
        log.lines()
            .filter(|l| l.contains(&g.username) && l.contains("PASSWORD"))
            .collect::<Vec<_>>()
    );
    assert!(!log.contains("SCRAM-SHA-256$"), "a verifier is in the log");
    assert!(!format!("{g:?}").contains(&pw));
    p.revoke(&g.grant_id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_in_a_superuser_role_is_refused() {
    let p = provisioner(UserMode::Ephemeral);
    cluster()
        .psql("CREATE ROLE root_like SUPERUSER NOLOGIN")
        .unwrap();
    let e = p
        .grant(request("gina", &["postgresql-role:root_like=member"]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("superuser"), "{e}");
    let e = p
        .grant(request(
            "gina",
            &["postgresql-table:postgres/public/nope=select"],
        ))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    let e = p
        .grant(request("", &["postgresql-database:postgres=connect"]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("requester is empty"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_grants_and_revokes_on_one_schema() {
    let p = Arc::new(provisioner(UserMode::Ephemeral));
    setup_database("busy");
    let mut tasks = Vec::new();
    for i in 0..64 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let level = ["read-only", "read-write", "admin"][i % 3];
            let g = p
                .grant(request(
                    &format!("user{i}"),
                    &[&format!("postgresql-schema:busy/s1={level}")],
                ))
                .await?;
            let r = p.revoke(&g.grant_id).await?;
            assert!(r.role_dropped);
            Ok::<_, pgwarden_pg_driver::ProvisionError>(())
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            failures.push(e.to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_refreshes_new_objects_drops_unused_and_reports_drift() {
    let _alone = common::reconciling().lock().await;
    let p = provisioner(UserMode::Ephemeral);
    setup_database("recon");
    cluster()
        .psql("CREATE ROLE app_writer LOGIN PASSWORD 'w'")
        .unwrap();
    let g = p
        .grant(request("hank", &["postgresql-schema:recon/s1=read-only"]))
        .await
        .unwrap();
    let pw = g.password.as_ref().unwrap().expose_secret().to_owned();
    // A role that gained CREATE after the grant makes a table: default privileges do not
    // cover it until reconcile refreshes the privilege role.
    cluster().psql_in("recon", "GRANT CREATE, USAGE ON SCHEMA s1 TO app_writer; SET ROLE app_writer; CREATE TABLE s1.newer (id int);").unwrap();
    assert!(as_user(&g.username, &pw, "recon", "SELECT * FROM s1.newer").is_err());
    // Drift: VALID UNTIL moved by hand.
    q(&format!(
        "ALTER ROLE \"{}\" VALID UNTIL 'infinity'",
        g.username
    ));
    let report = p.reconcile().await.unwrap();
    assert!(!report.privilege_roles_refreshed.is_empty(), "{report:?}");
    assert!(as_user(&g.username, &pw, "recon", "SELECT * FROM s1.newer").is_ok());
    assert!(
        report
            .drift
            .iter()
            .any(|d| d.username == g.username && d.what.contains("VALID UNTIL")),
        "{report:?}"
    );
    p.revoke(&g.grant_id).await.unwrap();
    let report = p.reconcile().await.unwrap();
    let name =
        pgwarden_pg_driver::privilege_role_name(&entry("postgresql-schema:recon/s1=read-only"));
    assert!(
        report.privilege_roles_dropped.contains(&name)
            || q(&format!(
                "SELECT count(*) FROM pg_roles WHERE rolname = '{name}'"
            ))
            .trim()
                == "0",
        "{report:?}"
    );
    // A new grant on the same scope re-creates it.
    let g = p
        .grant(request("hank", &["postgresql-schema:recon/s1=read-only"]))
        .await
        .unwrap();
    assert!(
        as_user(
            &g.username,
            g.password.as_ref().unwrap().expose_secret(),
            "recon",
            "SELECT * FROM s1.t1"
        )
        .is_ok()
    );
    p.revoke(&g.grant_id).await.unwrap();
}

/// Interrupt grant and revoke before each of their steps; reconcile then leaves the
/// instance clean and consistent: no grant lost, no role orphaned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_step_then_reconcile_is_clean() {
    let _alone = common::reconciling().lock().await;
    setup_database("crash");
    let grant_steps = [Step::GrantPrivilegeRoles, Step::GrantLoginRole];
    let revoke_steps = [
        Step::RevokeMark,
        Step::RevokeTerminateSessions,
        Step::RevokeMemberships,
        Step::RevokeCleanDatabase("crash".into()),
        Step::RevokeDropRole,
    ];
    let crashing = |at: Step| {
        let info: ConnInfo = cluster().dsn().parse().unwrap();
        Provisioner::new(
            Connector::new(&info, &ConnectOptions::default()).unwrap(),
            config(UserMode::Ephemeral),
        )
        .unwrap()
        .with_step_hook(Arc::new(move |s: &Step| {
            if *s == at {
                Err("simulated crash".into())
            } else {
                Ok(())
            }
        }))
    };
    for at in grant_steps {
        let p = crashing(at.clone());
        let e = p
            .grant(request("ivan", &["postgresql-schema:crash/s2=read-write"]))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("simulated crash"), "{e}");
        let fresh = provisioner(UserMode::Ephemeral);
        fresh.reconcile().await.unwrap();
        assert!(
            fresh
                .list()
                .await
                .unwrap()
                .iter()
                .all(|l| l.requester != "ivan"),
            "{at:?}: a half grant is listed"
        );
        assert_eq!(
            q(&format!(
                "SELECT count(*) FROM pg_roles WHERE {}",
                login_roles_of("ivan")
            ))
            .trim(),
            "0",
            "{at:?}"
        );
    }
    for at in revoke_steps {
        let fresh = provisioner(UserMode::Ephemeral);
        cluster().psql_in("crash", "CREATE SCHEMA IF NOT EXISTS scratch; GRANT CREATE, USAGE ON SCHEMA scratch TO PUBLIC;").unwrap();
        let g = fresh
            .grant(request("judy", &["postgresql-schema:crash/s1=read-write"]))
            .await
            .unwrap();
        let pw = g.password.as_ref().unwrap().expose_secret().to_owned();
        as_user(&g.username, &pw, "crash", "CREATE TABLE scratch.j (id int)").unwrap();
        let p = crashing(at.clone());
        let e = p.revoke(&g.grant_id).await.unwrap_err();
        assert!(e.to_string().contains("simulated crash"), "{e}");
        // Not lost: still listed (active or revoking) until reconcile finishes.
        let listed = fresh.list().await.unwrap();
        assert!(
            listed.iter().any(|l| l.grant_id == g.grant_id),
            "{at:?}: the grant vanished from the ledger"
        );
        if at == Step::RevokeMark {
            fresh.revoke(&g.grant_id).await.unwrap();
        } else {
            let l = listed.iter().find(|l| l.grant_id == g.grant_id).unwrap();
            assert_eq!(l.state, ListedState::Revoking, "{at:?}");
            assert!(
                as_user(&g.username, &pw, "crash", "SELECT 1").is_err(),
                "{at:?}: can still log in"
            );
            let report = fresh.reconcile().await.unwrap();
            assert!(
                report.revoked.iter().any(|r| r.grant_id == g.grant_id),
                "{at:?}: {report:?}"
            );
        }
        assert!(!role_exists(&g.username), "{at:?}");
        assert_eq!(
            cluster()
                .psql_in("crash", "SELECT count(*) FROM pg_class WHERE relname = 'j'")
                .unwrap()
                .trim(),
            "0",
            "{at:?}"
        );
    }
}

/// The connector's own connections die between steps (as when the process or the
/// network goes away); the next run completes the revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_mid_revocation_are_recovered() {
    let _alone = common::reconciling().lock().await;
    setup_database("killed");
    let fresh = provisioner(UserMode::Ephemeral);
    let g = fresh
        .grant(request("ken", &["postgresql-schema:killed/s1=read-only"]))
        .await
        .unwrap();
    let info: ConnInfo = format!("{} application_name=pgwarden_killer", cluster().dsn())
        .parse()
        .unwrap();
    let p = Provisioner::new(Connector::new(&info, &ConnectOptions::default()).unwrap(), config(UserMode::Ephemeral))
        .unwrap()
        .with_step_hook(Arc::new(|s: &Step| {
            if *s == Step::RevokeMemberships {
                // Kill every connection of this provisioner, from outside.
                cluster()
                    .psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgwarden_killer'")
                    .unwrap();
            }
            Ok(())
        }));
    // The pool may reconnect and finish; if not, the next reconcile runs must. (The
    // killed session's lock is released when its backend has exited, which may take a
    // moment; a reconcile meanwhile leaves the grant to a later run.)
    if p.revoke(&g.grant_id).await.is_err() {
        let gone = || !role_exists(&g.username);
        for _ in 0..50 {
            if gone() {
                break;
            }
            fresh.reconcile().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    assert!(!role_exists(&g.username));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_passwords_are_renewed_when_older_than_the_period() {
    let info: ConnInfo = cluster().dsn().parse().unwrap();
    let mut settings = config(UserMode::Persistent);
    settings.password_max_age = Some(time::Duration::ZERO);
    let p = Provisioner::new(
        Connector::new(&info, &ConnectOptions::default()).unwrap(),
        settings,
    )
    .unwrap();
    setup_database("renew");
    let g1 = p
        .grant(request("olga", &["postgresql-schema:renew/s1=read-only"]))
        .await
        .unwrap();
    let g2 = p
        .grant(request("olga", &["postgresql-schema:renew/s2=read-only"]))
        .await
        .unwrap();
    let (old, new) = (
        g1.password.unwrap(),
        g2.password.expect("a renewed password"),
    );
    assert_ne!(old.expose_secret(), new.expose_secret());
    assert!(as_user(&g2.username, old.expose_secret(), "renew", "SELECT 1").is_err());
    assert!(
        as_user(
            &g2.username,
            new.expose_secret(),
            "renew",
            "SELECT count(*) FROM s1.t1"
        )
        .is_ok()
    );
    p.revoke(&g1.grant_id).await.unwrap();
    p.revoke(&g2.grant_id).await.unwrap();
}

/// After an upgrade from plain (format 1) records, the grants they describe are
/// managed again once adopted — and not before: an unsealed record is nobody's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsealed_ledger_is_adopted_and_its_grants_revoked() {
    let _alone = common::reconciling().lock().await;
    // A cluster of its own: the marker's record is rewritten here.
    let c = TempCluster::start().unwrap();
    c.create_database("ad_app").unwrap();
    c.psql_in("ad_app", common::PROBE_SCHEMA_SQL).unwrap();
    let info: ConnInfo = c.dsn().parse().unwrap();
    let fresh = || {
        Provisioner::new(
            Connector::new(&info, &ConnectOptions::default()).unwrap(),
            config(UserMode::Ephemeral),
        )
        .unwrap()
    };
    let access = entry("postgresql-schema:ad_app/s1=read-only");
    let g = fresh()
        .grant(request(
            "ad-alice@example.com",
            &["postgresql-schema:ad_app/s1=read-only"],
        ))
        .await
        .unwrap();
    let privilege_role = c
        .psql(&format!(
            "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
             JOIN pg_roles u ON u.oid = m.member
             WHERE u.rolname = '{}' AND r.rolname LIKE 'pgwarden\\_p\\_%'",
            g.username
        ))
        .unwrap()
        .trim()
        .to_owned();
    // What pgwarden 0.1 wrote: plain JSON, format 1.
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    // Written out field by field: the format-1 records as 0.1 serialized them.
    let rfc3339 = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let login = serde_json::json!({
        "pgwarden": 1,
        "integration": "test",
        "mode": "ephemeral",
        "grants": [{
            "grant_id": g.grant_id,
            "requester": "ad-alice@example.com",
            "access": [access],
            "privilege_roles": [privilege_role],
            "created_at": rfc3339(now),
            "expires_at": rfc3339(g.expires_at),
            "state": "active",
        }],
    });
    let privilege = serde_json::json!({
        "pgwarden": 1,
        "access": access,
        "state": "ready",
    });
    let quote = |s: String| s.replace('\'', "''");
    c.psql(&format!(
        "COMMENT ON ROLE pgwarden_managed IS 'pgwarden: every login role pgwarden manages is a member of this role';
         COMMENT ON ROLE {} IS '{}'; COMMENT ON ROLE {privilege_role} IS '{}';",
        g.username,
        quote(serde_json::to_string(&login).unwrap()),
        quote(serde_json::to_string(&privilege).unwrap()),
    ))
    .unwrap();

    // Unsealed: not acted on.
    let p = fresh();
    assert!(p.list().await.unwrap().is_empty());
    assert!(p.revoke(&g.grant_id).await.unwrap().already_revoked);
    assert!(
        c.psql(&format!(
            "SELECT 1 FROM pg_roles WHERE rolname = '{}'",
            g.username
        ))
        .unwrap()
        .contains('1'),
        "an unsealed record was acted on"
    );
    let report = p.adopt_unsealed_ledger().await.unwrap();
    assert!(report.marker, "{report:?}");
    assert_eq!(report.login_roles, vec![g.username.clone()]);
    assert_eq!(report.privilege_roles, vec![privilege_role]);
    // Adopted: listed and revoked completely; adopting again changes nothing.
    let p = fresh();
    assert_eq!(p.list().await.unwrap().len(), 1);
    let again = p.adopt_unsealed_ledger().await.unwrap();
    assert!(again.login_roles.is_empty() && !again.marker, "{again:?}");
    let r = p.revoke(&g.grant_id).await.unwrap();
    assert!(r.role_dropped, "{r:?}");
}

/// Grant ids are found through indexes: an ephemeral role is named by its id's tag,
/// and every other login role is a member of `pgwarden_managed_untagged`. A ledger
/// written before that rule (roles named `<prefix><requester>_<random>`, persistent
/// roles outside the untagged role, a marker record without `ids_by_name`) is made
/// findable at the first grant: an id granted then is returned, never granted twice.
/// A login role an earlier version makes afterwards, findable by neither, is still
/// revoked and extended by its id, and reconcile makes it findable for grants too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_ids_made_before_roles_were_named_by_them_are_still_found() {
    // A cluster of its own: the marker's record is rewritten here.
    let c = TempCluster::start().unwrap();
    c.create_database("lg_app").unwrap();
    c.psql_in("lg_app", common::PROBE_SCHEMA_SQL).unwrap();
    let info: ConnInfo = c.dsn().parse().unwrap();
    let fresh = |mode| {
        Provisioner::new(
            Connector::new(&info, &ConnectOptions::default()).unwrap(),
            config(mode),
        )
        .unwrap()
    };
    let psql = |sql: &str| c.psql(sql).unwrap().trim().to_owned();
    let key = common::ledger_key();
    let untagged_members = || {
        psql(
            "SELECT string_agg(pg_get_userbyid(member), ',' ORDER BY 1) FROM pg_auth_members
             WHERE roleid = 'pgwarden_managed_untagged'::regrole",
        )
    };
    // A grant with id `id` by a new process (no hints).
    let grant = async |mode, id: &str, requester: &str| {
        let mut r = request(requester, &["postgresql-schema:lg_app/s1=read-only"]);
        r.grant_id = Some(id.into());
        fresh(mode).grant(r).await.unwrap()
    };
    // What an earlier version wrote: `rename` moves a role to an old-style name, its
    // record sealed again for that name, as that version sealed it.
    let oid_and_comment = |name: &str| {
        let row = psql(&format!(
            "SELECT r.oid || ' ' || d.description FROM pg_roles r JOIN pg_shdescription d ON d.objoid = r.oid WHERE r.rolname = '{name}'"
        ));
        let (oid, comment) = row.split_once(' ').unwrap();
        (oid.parse::<u32>().unwrap(), comment.to_owned())
    };
    let rename = |from: &str, to: &str, id: &str| {
        let (oid, comment) = oid_and_comment(from);
        let record = key.open(oid, from, &comment).expect("pgwarden's record");
        let sealed = key.seal(oid, to, &[key.lookup_tag(id)], &record);
        psql(&format!(
            "ALTER ROLE {from} RENAME TO {to}; COMMENT ON ROLE {to} IS '{sealed}'"
        ));
    };

    // Made by this version: named by the id's tag, or (persistent) in the untagged role.
    let eph = grant(UserMode::Ephemeral, "old-eph", "lg-old@example.com").await;
    assert_eq!(
        eph.username,
        format!("pgw_{}_lg_old_example_com", key.lookup_tag("old-eph"))
    );
    let per = grant(UserMode::Persistent, "old-per", "lg-per@example.com").await;
    assert_eq!(untagged_members(), per.username);

    // Now as an earlier version left them.
    let legacy = "pgw_lg_old_example_com_k3x9qa";
    rename(&eph.username, legacy, "old-eph");
    psql(&format!(
        "REVOKE pgwarden_managed_untagged FROM {}",
        per.username
    ));
    let (marker_oid, _) = oid_and_comment("pgwarden_managed");
    let old_marker = key.seal(
        marker_oid,
        "pgwarden_managed",
        &[],
        r#"{"pgwarden":2,"marker":"every login role pgwarden manages is a member of this role"}"#,
    );
    psql(&format!(
        "COMMENT ON ROLE pgwarden_managed IS '{old_marker}'"
    ));

    // The first grant of a new process makes them findable; neither id is granted twice.
    let again = grant(UserMode::Ephemeral, "old-eph", "lg-old@example.com").await;
    assert!(!again.created, "granted twice: {again:?}");
    assert_eq!(again.username, legacy);
    assert_eq!(untagged_members(), format!("{legacy},{}", per.username));
    let (_, marker) = oid_and_comment("pgwarden_managed");
    assert!(
        key.open(marker_oid, "pgwarden_managed", &marker)
            .unwrap()
            .contains(r#""ids_by_name":true"#),
        "{marker}"
    );
    let again = grant(UserMode::Ephemeral, "old-per", "lg-per@example.com").await;
    assert!(!again.created, "granted twice: {again:?}");
    assert_eq!(again.username, per.username);
    // The untagged role dropped, and its memberships with it: the next process makes
    // it again, with every login role in it.
    psql("DROP ROLE pgwarden_managed_untagged");
    let again = grant(UserMode::Ephemeral, "old-per", "lg-per@example.com").await;
    assert!(!again.created, "granted twice: {again:?}");
    assert!(untagged_members().contains(&per.username));

    // An earlier version still running makes a role neither named by its id nor in the
    // untagged role: revoking and extending by id still find it.
    let late = grant(UserMode::Ephemeral, "late", "lg-late@example.com").await;
    let late_legacy = "pgw_lg_late_example_com_p2m7wz";
    rename(&late.username, late_legacy, "late");
    let extended = fresh(UserMode::Ephemeral)
        .extend("late", Expiry::After(Ttl::from_secs(7200).unwrap()))
        .await
        .unwrap();
    assert_eq!(extended.username, late_legacy);
    // Reconcile makes it findable by name: a grant retried with its id finds it too.
    let report = fresh(UserMode::Ephemeral).reconcile().await.unwrap();
    assert_eq!(report.made_findable_by_id, vec![late_legacy], "{report:?}");
    let again = grant(UserMode::Ephemeral, "late", "lg-late@example.com").await;
    assert!(!again.created, "granted twice: {again:?}");
    assert_eq!(again.username, late_legacy);
    for id in ["late", "old-eph", "old-per"] {
        let r = fresh(UserMode::Ephemeral).revoke(id).await.unwrap();
        assert!(!r.already_revoked, "{id}: {r:?}");
    }
    assert_eq!(
        psql(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname IN ('{late_legacy}', '{legacy}') OR ({})",
            login_roles_of("lg_")
        )),
        "1",
        "only the persistent role is kept"
    );
}

/// A dependency DROP OWNED cannot remove (a tablespace the role owns) ends access all
/// the same, and the revocation says what blocks the drop; once it is gone, reconcile
/// finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undroppable_role_is_reported_with_what_holds_it() {
    let _alone = common::reconciling().lock().await;
    let p = provisioner(UserMode::Ephemeral);
    setup_database("holds");
    let g = p
        .grant(request("holly", &["postgresql-schema:holds/s1=read-only"]))
        .await
        .unwrap();
    let pw = g.password.as_ref().unwrap().expose_secret().to_owned();
    // In-place tablespaces need no directory of their own (a developer option).
    q(&format!(
        "SET allow_in_place_tablespaces = on; CREATE TABLESPACE holds_ts OWNER {} LOCATION ''",
        g.username
    ));
    let e = p.revoke(&g.grant_id).await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("tablespace") && text.contains("access has ended"),
        "{text}"
    );
    assert!(
        as_user(&g.username, &pw, "holds", "SELECT 1").is_err(),
        "access outlived the failed drop"
    );
    q("DROP TABLESPACE holds_ts");
    let report = p.reconcile().await.unwrap();
    assert!(
        report
            .revoked
            .iter()
            .any(|r| r.grant_id == g.grant_id && r.role_dropped),
        "{report:?}"
    );
}

/// Privileges on shared objects (a database, a parameter on 15+) reference the role
/// from no database in particular: revocation removes them too and drops the role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileges_on_shared_objects_do_not_keep_a_role_alive() {
    let p = provisioner(UserMode::Ephemeral);
    setup_database("shared_deps");
    let g = p
        .grant(request(
            "sharon",
            &["postgresql-schema:shared_deps/s1=read-only"],
        ))
        .await
        .unwrap();
    let mut sql = format!("GRANT TEMPORARY ON DATABASE shared_deps TO {}", g.username);
    if cluster().server_major() >= 15 {
        sql = format!("{sql}; GRANT SET ON PARAMETER work_mem TO {}", g.username);
    }
    q(&sql);
    let report = p.revoke(&g.grant_id).await.unwrap();
    assert!(report.role_dropped, "{report:?}");
    assert!(!role_exists(&g.username));
}

/// A batch of expiries: each grant gets its own outcome and every guarantee of a
/// single revocation — sessions ended, roles that own nothing dropped, a role that
/// owns a table left to `revoke_expired` with its access ended, an extension that
/// came first respected, a revocation running elsewhere not touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_expiries_gives_each_grant_its_outcome() {
    use pgwarden_pg_driver::BatchOutcome;
    let _alone = common::reconciling().lock().await;

    let p = provisioner(UserMode::Ephemeral);
    setup_database("batch_db");
    cluster()
        .psql_in(
            "batch_db",
            "CREATE SCHEMA scratch; GRANT CREATE, USAGE ON SCHEMA scratch TO PUBLIC;",
        )
        .unwrap();
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let mut grants = BTreeMap::new();
    for id in ["plain", "session", "owner", "extended", "busy"] {
        let mut r = request("batch", &["postgresql-database:batch_db=read-write"]);
        r.grant_id = Some(format!("batch-{id}"));
        r.expiry = Expiry::At(at);
        grants.insert(id, p.grant(r).await.unwrap());
    }
    let pw = |id: &str| {
        grants[id]
            .password
            .as_ref()
            .unwrap()
            .expose_secret()
            .to_owned()
    };
    as_user(
        &grants["owner"].username,
        &pw("owner"),
        "batch_db",
        "CREATE TABLE scratch.owned (id int)",
    )
    .unwrap();
    // A session that stays open until the batch ends it.
    let session = common::session(
        cluster(),
        &grants["session"].username,
        &pw("session"),
        "batch_db",
    )
    .await;
    // Another process is revoking "busy": it holds the grant's revocation lock.
    let holder = Connector::new(
        &cluster().dsn().parse().unwrap(),
        &ConnectOptions::default(),
    )
    .unwrap()
    .connect()
    .await
    .unwrap();
    let busy_lock = pgwarden_pg_driver::Lock::Revoking {
        grant_id: "batch-busy",
    };
    busy_lock.acquire(&holder.client).await.unwrap();
    // Found expired, then extended before the batch runs.
    let due = common::expired_by_prefix(&p, at, "batch-").await;
    assert_eq!(due.len(), 5);
    assert!(due.iter().all(|g| g.state == ListedState::Expired));
    p.extend(
        "batch-extended",
        Expiry::After(Ttl::from_secs(600).unwrap()),
    )
    .await
    .unwrap();

    let outcomes: BTreeMap<String, BatchOutcome> =
        p.revoke_expired_batch(&due).await.into_iter().collect();
    let login = |id: &str| as_user(&grants[id].username, &pw(id), "batch_db", "SELECT 1");
    match &outcomes["batch-plain"] {
        BatchOutcome::Revoked(r) => assert!(r.role_dropped && r.login_disabled, "{r:?}"),
        other => panic!("{other:?}"),
    }
    match &outcomes["batch-session"] {
        BatchOutcome::Revoked(r) => assert_eq!(r.sessions_terminated, 1, "{r:?}"),
        other => panic!("{other:?}"),
    }
    assert!(
        session.simple_query("SELECT 1").await.is_err(),
        "its session was ended"
    );
    for id in ["plain", "session"] {
        assert_eq!(count(&grants[id].username), 0, "{id} dropped");
    }
    match &outcomes["batch-owner"] {
        BatchOutcome::AccessEnded(r) => assert!(!r.memberships_removed.is_empty(), "{r:?}"),
        other => panic!("{other:?}"),
    }
    assert!(
        login("owner").is_err(),
        "access ended although the role stays"
    );
    assert_eq!(outcomes["batch-extended"], BatchOutcome::Extended);
    assert!(
        login("extended").is_ok(),
        "the extension that came first stands"
    );
    assert_eq!(outcomes["batch-busy"], BatchOutcome::InProgress);
    // Left to the revocation holding it (its expired VALID UNTIL already refuses it).
    assert_eq!(
        q(&format!(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = '{}'",
            grants["busy"].username
        ))
        .trim(),
        "t",
        "a revocation held elsewhere is left to it"
    );

    // The role that owns a table is finished singly; the busy one once released.
    let r = p.revoke_expired("batch-owner").await.unwrap();
    assert!(
        r.role_dropped && r.databases.iter().any(|d| d.objects_dropped == 1),
        "{r:?}"
    );
    assert!(busy_lock.release(&holder.client).await.unwrap());
    let busy: Vec<_> = due
        .into_iter()
        .filter(|g| g.grant_id == "batch-busy")
        .collect();
    let again = p.revoke_expired_batch(&busy).await;
    assert!(
        matches!(&again[..], [(_, BatchOutcome::Revoked(_))]),
        "{again:?}"
    );
    p.revoke("batch-extended").await.unwrap();
    for g in grants.values() {
        assert_eq!(count(&g.username), 0, "{} gone", g.username);
    }
}

fn count(role: &str) -> i64 {
    q(&format!(
        "SELECT count(*) FROM pg_roles WHERE rolname = '{role}'"
    ))
    .trim()
    .parse()
    .unwrap()
}

/// The common revocation (all the role holds in the connector's own database, a
/// session open) takes the pipelined path, whether this process knows the grant (it
/// made it) or not (another process, after a restart): either way it reports what it
/// did, leaves nothing of the role behind and lets go of the grant's lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_in_the_connectors_database_reports_all_it_did() {
    cluster()
        .psql("CREATE SCHEMA pipe_scratch; GRANT CREATE, USAGE ON SCHEMA pipe_scratch TO PUBLIC; CREATE SCHEMA pipe; CREATE TABLE pipe.t (id int)")
        .unwrap();
    for known in [true, false] {
        let granter = provisioner(UserMode::Ephemeral);
        let g = granter
            .grant(request(
                "pia",
                &["postgresql-schema:postgres/pipe=read-only"],
            ))
            .await
            .unwrap();
        let pw = g.password.as_ref().unwrap().expose_secret().to_owned();
        as_user(
            &g.username,
            &pw,
            "postgres",
            "CREATE TABLE pipe_scratch.mine (id int); GRANT SELECT ON pipe_scratch.mine TO PUBLIC",
        )
        .unwrap();
        let session = common::session(cluster(), &g.username, &pw, "postgres").await;
        let revoker = if known {
            granter
        } else {
            provisioner(UserMode::Ephemeral)
        };
        let report = revoker.revoke(&g.grant_id).await.unwrap();
        assert!(
            report.role_dropped && report.login_disabled && !report.already_revoked,
            "known {known}: {report:?}"
        );
        assert_eq!(report.sessions_terminated, 1, "known {known}: {report:?}");
        assert_eq!(
            report.memberships_removed.len(),
            1,
            "known {known}: {report:?}"
        );
        let [cleanup] = report.databases.as_slice() else {
            panic!("known {known}: one database cleaned: {report:?}");
        };
        assert_eq!(cleanup.database, "postgres", "known {known}: {report:?}");
        assert_eq!(cleanup.objects_dropped, 1, "known {known}: {report:?}");
        assert!(session.query_one("SELECT 1", &[]).await.is_err());
        assert_eq!(
            q(&format!(
                "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = '{u}')
                      + (SELECT count(*) FROM pg_class WHERE relname = 'mine')
                      + (SELECT count(*) FROM pg_stat_activity WHERE usename = '{u}')",
                u = g.username
            ))
            .trim(),
            "0",
            "known {known}"
        );
        // The grant's revocation lock is free: no session holds it.
        let key = pgwarden_pg_driver::Lock::Revoking {
            grant_id: &g.grant_id,
        }
        .key();
        let b = key.to_be_bytes();
        let high = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let low = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        assert_eq!(
            q(&format!(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = {high} AND objid = {low}"
            ))
            .trim(),
            "0",
            "known {known}"
        );
        // And again: already revoked, from either process.
        assert!(revoker.revoke(&g.grant_id).await.unwrap().already_revoked);
    }
}

/// A process revokes a grant it made without reading its role first: it confirms,
/// under the grant's lock, that the role is still as it saw it. Whatever changed since
/// (another process extended the grant, someone added a membership, the role was made
/// again under its name) is judged on what the role is now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_changed_since_this_process_saw_it_is_judged_as_it_is_now() {
    // Part 3 leaves a role in the marker that no reconcile may meanwhile judge.
    let _alone = common::reconciling().lock().await;
    setup_database("seen");
    let granter = provisioner(UserMode::Ephemeral);
    let other = provisioner(UserMode::Ephemeral);
    let access = ["postgresql-schema:seen/s1=read-only"];

    // 1. Found expired by this process, extended by another: not revoked for expiry.
    let mut req = request("sam", &access);
    req.expiry = Expiry::At(time::OffsetDateTime::now_utc() + time::Duration::seconds(1));
    let g = granter.grant(req).await.unwrap();
    let pw = g.password.as_ref().unwrap().expose_secret().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    other
        .extend(&g.grant_id, Expiry::After(Ttl::from_secs(3600).unwrap()))
        .await
        .unwrap();
    let e = granter.revoke_expired(&g.grant_id).await.unwrap_err();
    assert!(
        matches!(e, pgwarden_pg_driver::ProvisionError::NotExpired { .. }),
        "{e}"
    );
    assert!(
        as_user(&g.username, &pw, "seen", "SELECT count(*) FROM s1.t1").is_ok(),
        "the extended grant still works"
    );
    granter.revoke(&g.grant_id).await.unwrap();
    assert!(!role_exists(&g.username));

    // 2. A membership added by someone else: removed, and reported.
    cluster().psql("CREATE ROLE seen_extra NOLOGIN").unwrap();
    let g = granter.grant(request("sam", &access)).await.unwrap();
    cluster()
        .psql(&format!("GRANT seen_extra TO {}", g.username))
        .unwrap();
    let report = granter.revoke(&g.grant_id).await.unwrap();
    assert!(report.role_dropped, "{report:?}");
    assert!(
        report.memberships_removed.iter().any(|m| m == "seen_extra"),
        "{report:?}"
    );
    assert_eq!(report.memberships_removed.len(), 2, "{report:?}");

    // 3. The role made again under its name, in the marker, with the same memberships
    // and the same comment: not the grant's role (its record is sealed to the oid it
    // had), so it is left alone.
    let g = granter.grant(request("sam", &access)).await.unwrap();
    let (comment, groups) = (
        q(&format!(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = '{}'",
            g.username
        )),
        q(&format!(
            "SELECT string_agg(quote_ident(b.rolname), ', ') FROM pg_auth_members m
             JOIN pg_roles a ON a.oid = m.member JOIN pg_roles b ON b.oid = m.roleid
             WHERE a.rolname = '{}'",
            g.username
        )),
    );
    cluster()
        .psql(&format!(
            "DROP ROLE {u}; CREATE ROLE {u} NOLOGIN IN ROLE {g}; COMMENT ON ROLE {u} IS '{c}'",
            u = g.username,
            g = groups.trim(),
            c = comment.trim()
        ))
        .unwrap();
    let report = granter.revoke(&g.grant_id).await.unwrap();
    assert!(report.already_revoked && !report.role_dropped, "{report:?}");
    assert!(
        role_exists(&g.username),
        "a role pgwarden did not make was dropped"
    );
    cluster()
        .psql(&format!("DROP ROLE {}; DROP ROLE seen_extra", g.username))
        .unwrap();
}

/// A session that outlives its termination (its backend is stopped, as one stuck
/// in the kernel would be) keeps the role from being dropped until it is gone:
/// dropped meanwhile, the role would leave nothing in the ledger to finish the
/// revocation, and the session would run on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_outlives_its_termination_keeps_the_role_until_it_ends() {
    setup_database("stuck");
    let p = provisioner(UserMode::Ephemeral);
    let g = p
        .grant(request("stu", &["postgresql-schema:stuck/s1=read-only"]))
        .await
        .unwrap();
    let pw = g.password.as_ref().unwrap().expose_secret().to_owned();
    let session = common::session(cluster(), &g.username, &pw, "stuck").await;
    let pid: i32 = session
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let signal = move |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP");
    // From 14 a termination waits 5 s for the session to exit, and gives up: resume
    // it after that. On 13 a termination only signals, and the revocation polls for
    // 5 s: resume it before that.
    let version: i32 = q("SHOW server_version_num").trim().parse().unwrap();
    let resume_after = if version >= 140_000 { 6 } else { 2 };
    let resumer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(resume_after));
        signal("-CONT");
    });
    let result = p.revoke(&g.grant_id).await;
    resumer.join().unwrap();
    let report = result.unwrap();
    assert!(report.role_dropped, "{report:?}");
    assert_eq!(report.sessions_terminated, 1, "{report:?}");
    assert!(!role_exists(&g.username));
    assert!(session.query_one("SELECT 1", &[]).await.is_err());
}

/// A loopback TCP proxy to the cluster that can cut every connection it carries so
/// that the client does not notice: the server side is closed at once (its backend
/// ends), the client side only when the client next writes — as a backend terminated
/// while its connection sat idle in the pool looks before the client reads its
/// goodbye. Returns the port, the cut switch, and how many cut connections were
/// written to afterwards (handed out and used while dead).
async fn cutting_proxy() -> (
    u16,
    tokio::sync::watch::Sender<u64>,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = format!("{}:{}", cluster().host(), cluster().port());
    let (cut, cuts) = tokio::sync::watch::channel(0u64);
    let used_dead = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = used_dead.clone();
    tokio::spawn(async move {
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            let mut server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
            let mut cuts = cuts.clone();
            let born = *cuts.borrow_and_update();
            let counter = counter.clone();
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.split();
                let (mut sr, mut sw) = server.split();
                let (mut up, mut down) = ([0u8; 8192], [0u8; 8192]);
                loop {
                    tokio::select! {
                        n = cr.read(&mut up) => match n {
                            // Written after a cut this task has not acted on yet: the
                            // connection is dead all the same, the server never sees it.
                            Ok(n) if n > 0 && *cuts.borrow() != born => {
                                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                return;
                            }
                            Ok(n) if n > 0 => {
                                if sw.write_all(&up[..n]).await.is_err() { return; }
                            }
                            _ => return,
                        },
                        n = sr.read(&mut down) => match n {
                            Ok(n) if n > 0 => {
                                if cw.write_all(&down[..n]).await.is_err() { return; }
                            }
                            _ => return,
                        },
                        _ = cuts.changed() => break,
                    }
                }
                drop(server);
                // The client learns of it only when it next writes.
                let mut buf = [0u8; 1];
                if matches!(client.read(&mut buf).await, Ok(n) if n > 0) {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    (port, cut, used_dead)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_and_revocations_survive_pooled_connections_that_died_idle() {
    setup_database("deadpool");
    let (port, cut, used_dead) = cutting_proxy().await;
    let dsn = cluster().dsn().replace(
        &format!("port={}", cluster().port()),
        &format!("port={port}"),
    );
    assert!(dsn.contains(&format!("port={port}")), "{dsn}");
    let info: ConnInfo = dsn.parse().unwrap();
    let p = Provisioner::new(
        Connector::new(&info, &ConnectOptions::default()).unwrap(),
        config(UserMode::Ephemeral),
    )
    .unwrap();
    let access = ["postgresql-schema:deadpool/s1=read-only"];
    // Fill the pool with a few connections, then let them sit idle.
    let warm: Vec<_> = futures_util::future::join_all(
        (0..3).map(|i| p.grant(request(&format!("warm{i}"), &access))),
    )
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    for g in &warm {
        p.revoke(&g.grant_id).await.unwrap();
    }
    let mut grants = Vec::new();
    for round in 1..=3u64 {
        // Every pooled connection dies unnoticed; the next grant is handed one.
        cut.send_modify(|generation| *generation += 1);
        let mut req = request("after_cut", &access);
        if round == 2 {
            req.grant_id = Some(format!("ticket-dead-{round}"));
        }
        let g = p.grant(req).await.unwrap();
        let pw = g.password.as_ref().unwrap().expose_secret().to_owned();
        assert_eq!(
            as_user(&g.username, &pw, "deadpool", "SELECT count(*) FROM s1.t1")
                .unwrap()
                .trim(),
            "1"
        );
        grants.push(g);
    }
    for g in &grants {
        cut.send_modify(|generation| *generation += 1);
        let report = p.revoke(&g.grant_id).await.unwrap();
        assert!(report.role_dropped, "{report:?}");
        assert!(!role_exists(&g.username));
    }
    // Dead connections were really handed out and written to (not weeded out before).
    assert!(
        used_dead.load(std::sync::atomic::Ordering::SeqCst) >= 6,
        "{used_dead:?}"
    );
}
