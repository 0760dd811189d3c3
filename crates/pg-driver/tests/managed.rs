//! Grant, revoke and reconcile with a managed-cloud connector: no SUPERUSER, the shape
//! RDS gives its master user (Cloud SQL and Azure are alike). The connector
//! `cloud_admin` has CREATEROLE and CREATEDB, is a member of `provider_admin` (as of
//! `rds_superuser`), which holds `pg_signal_backend` and not `pg_read_all_data`, and
//! owns the application databases. pgwarden runs in `connector_mode = createrole`.
//!
//! What the mode can do must work exactly as with a superuser; what it cannot do must
//! be refused with an error naming the fix, and leave nothing behind.

#![allow(clippy::too_many_lines, reason = "scenario tests read top to bottom")]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use pgwarden_core::config::{ConnectorMode, UserMode};
use pgwarden_core::conninfo::ConnInfo;
use pgwarden_core::duration::Ttl;
use pgwarden_pg_driver::{ConnectOptions, Connector};
use pgwarden_pg_driver::{
    Expiry, GrantRequest, ProvisionError, Provisioner, ProvisionerConfig, Step,
};
use pgwarden_testkit::{TempCluster, login_roles_of};
use secrecy::ExposeSecret;

mod common;

const CONNECTOR: &str = "cloud_admin";
const CONNECTOR_PW: &str = "cloud-admin-pw";

/// The provider's setup, as a superuser would make it before handing the instance over.
const PROVIDER_SQL: &str = "
CREATE ROLE provider_admin NOLOGIN;
GRANT pg_signal_backend TO provider_admin;
CREATE ROLE cloud_admin LOGIN CREATEROLE CREATEDB PASSWORD 'cloud-admin-pw' IN ROLE provider_admin;
CREATE ROLE dba_owned NOLOGIN;";

fn cluster() -> &'static TempCluster {
    static C: OnceLock<TempCluster> = OnceLock::new();
    C.get_or_init(|| {
        let c = TempCluster::builder().max_connections(200).start().unwrap();
        c.psql(PROVIDER_SQL).unwrap();
        c
    })
}

/// SQL as the connector (not a superuser) in `db`.
fn as_connector(db: &str, sql: &str) -> Result<String, String> {
    common::as_user(cluster(), CONNECTOR, CONNECTOR_PW, db, sql)
}

fn as_user(user: &str, password: &str, db: &str, sql: &str) -> Result<String, String> {
    common::as_user(cluster(), user, password, db, sql)
}

/// SQL as the bootstrap superuser (the test's eyes, and the provider's hands).
fn q(sql: &str) -> String {
    cluster().psql(sql).unwrap()
}

fn count(sql: &str) -> i64 {
    q(sql).trim().parse().unwrap()
}

fn config(mode: UserMode, connector_mode: ConnectorMode) -> ProvisionerConfig {
    common::provisioner_config("managed", mode, connector_mode)
}

fn provisioner_with(config: ProvisionerConfig) -> Provisioner {
    let info: ConnInfo = cluster()
        .conninfo(CONNECTOR, CONNECTOR_PW, "postgres")
        .parse()
        .unwrap();
    Provisioner::new(
        Connector::new(&info, &ConnectOptions::default()).unwrap(),
        config,
    )
    .unwrap()
}

fn provisioner() -> Provisioner {
    provisioner_with(config(UserMode::Ephemeral, ConnectorMode::Createrole))
}

use common::{entry, request};

/// An application database the connector creates and owns, with the probe schema
/// made by the connector.
fn app_database(name: &str) {
    as_connector("postgres", &format!("CREATE DATABASE {name}")).unwrap();
    as_connector(name, common::PROBE_SCHEMA_SQL).unwrap();
}

fn role_exists(name: &str) -> bool {
    count(&format!(
        "SELECT count(*) FROM pg_roles WHERE rolname = '{name}'"
    )) == 1
}

fn logins_of(requester: &str) -> i64 {
    count(&format!(
        "SELECT count(*) FROM pg_roles WHERE {}",
        login_roles_of(requester)
    ))
}

/// SQL: whether `user` has the privileges of `pg_read_all_data` or
/// `pg_write_all_data` (PostgreSQL 14+; false on 13, which has neither).
fn data_roles(user: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_roles d
                 WHERE d.rolname IN ('pg_read_all_data', 'pg_write_all_data')
                   AND pg_has_role('{user}', d.oid, 'USAGE'))"
    )
}

#[test]
fn the_connector_has_the_managed_shape() {
    let attrs = q(&format!(
        "SELECT rolsuper, rolcreaterole, rolcreatedb,
                pg_has_role('cloud_admin', 'pg_signal_backend', 'USAGE'),
                {}
         FROM pg_roles WHERE rolname = 'cloud_admin'",
        data_roles("cloud_admin")
    ));
    assert_eq!(attrs.trim(), "f|t|t|t|f");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_level_allows_exactly_what_it_should() {
    let p = provisioner();
    // A role the connector made (on 16+ it holds ADMIN OPTION on it).
    as_connector("postgres", "CREATE ROLE analysts NOLOGIN").unwrap();
    for (i, (access, allowed)) in common::LEVEL_CASES.iter().enumerate() {
        let db = format!("m_levels_{i}");
        app_database(&db);
        as_connector(
            &db,
            "GRANT USAGE ON SCHEMA s2 TO analysts; GRANT SELECT ON s2.u1 TO analysts;",
        )
        .unwrap();
        let access = access.replace("{db}", &db);
        let g = p
            .grant(request("alice@example.com", &[&access]))
            .await
            .unwrap_or_else(|e| panic!("{access}: {e}"));
        let pw = g.password.as_ref().unwrap().expose_secret().to_owned();
        // A table created after the grant, by the owner (the connector).
        as_connector(
            &db,
            "CREATE TABLE s1.late (id int); INSERT INTO s1.late VALUES (1);",
        )
        .unwrap();
        let got = common::probes(cluster(), &g.username, &pw, &db);
        let want: BTreeMap<&str, bool> = got.keys().map(|k| (*k, allowed.contains(k))).collect();
        assert_eq!(got, want, "{access}");
        // The user gets nothing cluster-wide: no predefined data roles, no attributes.
        assert_eq!(
            q(&format!(
                "SELECT {d}
                        OR pg_has_role('{u}', 'cloud_admin', 'USAGE') OR rolcreaterole OR rolcreatedb
                 FROM pg_roles WHERE rolname = '{u}'",
                d = data_roles(&g.username),
                u = g.username
            ))
            .trim(),
            "f"
        );
        let report = p.revoke(&g.grant_id).await.unwrap();
        assert!(report.role_dropped, "{access}: {report:?}");
        assert!(as_user(&g.username, &pw, &db, "SELECT 1").is_err());
        assert_eq!(
            common::leftovers(cluster(), &g.username, &[&db]),
            0,
            "{access}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_is_complete_with_objects_and_open_sessions() {
    let p = provisioner();
    for db in ["m_rev_a", "m_rev_b"] {
        app_database(db);
        as_connector(db, "CREATE SCHEMA scratch").unwrap();
    }
    let g = p
        .grant(request(
            "bob",
            &[
                "postgresql-database:m_rev_a=admin",
                "postgresql-schema:m_rev_b/scratch=admin",
            ],
        ))
        .await
        .unwrap();
    let pw = g.password.as_ref().unwrap().expose_secret().to_owned();
    let maintain = cluster().server_major() >= 17;
    for db in ["m_rev_a", "m_rev_b"] {
        let mut sql = String::from(
            "CREATE TABLE scratch.mine (id serial, v text);
             CREATE SEQUENCE scratch.myseq;
             CREATE FUNCTION scratch.f() RETURNS int LANGUAGE sql AS 'SELECT 1';
             ALTER DEFAULT PRIVILEGES IN SCHEMA scratch GRANT SELECT ON TABLES TO PUBLIC;
             GRANT SELECT ON scratch.mine TO analysts_m;",
        );
        if maintain {
            sql.push_str(
                "GRANT MAINTAIN ON scratch.mine TO PUBLIC;
                 ALTER DEFAULT PRIVILEGES IN SCHEMA scratch GRANT MAINTAIN ON TABLES TO PUBLIC;",
            );
        }
        as_connector("postgres", "CREATE ROLE analysts_m NOLOGIN").ok();
        as_user(&g.username, &pw, db, &sql).unwrap();
    }
    if maintain {
        // The admin level brings PostgreSQL 17's MAINTAIN on existing tables.
        assert_eq!(
            as_user(
                &g.username,
                &pw,
                "m_rev_a",
                "SELECT has_table_privilege('s1.t1', 'MAINTAIN')"
            )
            .unwrap()
            .trim(),
            "t"
        );
    }
    let session_a = common::session(cluster(), &g.username, &pw, "m_rev_a").await;

    let report = p.revoke(&g.grant_id).await.unwrap();
    assert!(report.role_dropped && report.login_disabled, "{report:?}");
    assert_eq!(report.sessions_terminated, 1, "{report:?}");
    assert_eq!(report.memberships_removed.len(), 2, "{report:?}");
    for db in ["m_rev_a", "m_rev_b"] {
        let cleaned = report
            .databases
            .iter()
            .find(|d| d.database == db)
            .unwrap_or_else(|| panic!("{db} not cleaned: {report:?}"));
        assert!(cleaned.objects_dropped >= 4, "{cleaned:?}");
    }
    assert!(session_a.query_one("SELECT 1", &[]).await.is_err());
    assert_eq!(
        common::leftovers(cluster(), &g.username, &["m_rev_a", "m_rev_b"]),
        0
    );
    for db in ["m_rev_a", "m_rev_b"] {
        assert_eq!(
            cluster()
                .psql_in(
                    db,
                    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'scratch'"
                )
                .unwrap()
                .trim(),
            "0",
            "{db}"
        );
    }
    assert!(p.revoke(&g.grant_id).await.unwrap().already_revoked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_mode_cannot_do_is_a_clear_error_and_leaves_nothing() {
    let p = provisioner();
    app_database("m_limits");
    // A schema owned by a role the provider made: the connector is no member of it.
    q("GRANT CONNECT ON DATABASE m_limits TO dba_owned");
    cluster()
        .psql_in(
            "m_limits",
            "CREATE SCHEMA foreign_s AUTHORIZATION dba_owned;
             SET ROLE dba_owned; CREATE TABLE foreign_s.secret (id int);",
        )
        .unwrap();
    for access in [
        "postgresql-schema:m_limits/foreign_s=read-only",
        "postgresql-table:m_limits/foreign_s/secret=select",
        "postgresql-database:m_limits=read-only",
    ] {
        let e = p.grant(request("carol", &[access])).await.unwrap_err();
        let message = e.to_string();
        assert!(
            matches!(
                e,
                ProvisionError::Privilege(pgwarden_pg_driver::PrivilegeError::NotGrantable { .. })
            ),
            "{access}: {message}"
        );
        assert!(
            message.contains("owner dba_owned") && message.contains("GRANT <owner> TO cloud_admin"),
            "{access}: {message}"
        );
        assert!(
            !role_exists(&pgwarden_pg_driver::privilege_role_name(&entry(access))),
            "{access}: half-made privilege role"
        );
    }
    assert_eq!(logins_of("carol"), 0);

    // An application role the connector made but is no INHERIT member of (the
    // default on 16+: ADMIN OPTION only): refused, then fixed as the error says.
    as_connector("postgres", "CREATE ROLE app_owner NOLOGIN").unwrap();
    cluster()
        .psql_in("m_limits", "CREATE SCHEMA app AUTHORIZATION app_owner")
        .unwrap();
    q("GRANT CONNECT ON DATABASE m_limits TO app_owner");
    cluster()
        .psql_in(
            "m_limits",
            "SET ROLE app_owner; CREATE TABLE app.orders (id int); INSERT INTO app.orders VALUES (7);",
        )
        .unwrap();
    let app = "postgresql-schema:m_limits/app=read-only";
    let e = p.grant(request("carol", &[app])).await.unwrap_err();
    assert!(e.to_string().contains("owner app_owner"), "{e}");
    assert_eq!(logins_of("carol"), 0);
    as_connector("postgres", "GRANT app_owner TO cloud_admin").unwrap();
    let g = p.grant(request("carol", &[app])).await.unwrap();
    assert_eq!(
        as_user(
            &g.username,
            g.password.as_ref().unwrap().expose_secret(),
            "m_limits",
            "SELECT id FROM app.orders"
        )
        .unwrap()
        .trim(),
        "7"
    );
    p.revoke(&g.grant_id).await.unwrap();

    // Membership in a role the provider made: PostgreSQL 16 requires ADMIN OPTION.
    let member = p
        .grant(request("carol", &["postgresql-role:dba_owned=member"]))
        .await;
    if cluster().server_major() >= 16 {
        let e = member.unwrap_err();
        assert!(
            e.to_string().contains("ADMIN OPTION on role dba_owned"),
            "{e}"
        );
        assert_eq!(logins_of("carol"), 0);
    } else {
        // Before 16, CREATEROLE may grant any non-superuser role.
        let g = member.unwrap();
        p.revoke(&g.grant_id).await.unwrap();
    }

    // Superuser mode with a non-superuser connector: refused before anything changes.
    let wrong = provisioner_with(config(UserMode::Ephemeral, ConnectorMode::Superuser));
    let e = wrong
        .grant(request(
            "carol",
            &["postgresql-schema:m_limits/s1=read-only"],
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, ProvisionError::ConnectorMode(_)), "{e}");
    assert!(
        e.to_string().contains("connector_mode = \"createrole\""),
        "{e}"
    );
    assert_eq!(logins_of("carol"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_refreshes_revokes_expired_and_drops_unused() {
    let _alone = common::reconciling().lock().await;
    let p = provisioner();
    app_database("m_recon");
    let scope = "postgresql-schema:m_recon/s1=read-only";
    let g = p.grant(request("dave", &[scope])).await.unwrap();
    let pw = g.password.as_ref().unwrap().expose_secret().to_owned();
    // A role that can create in the schema, made by the connector after the grant.
    as_connector(
        "postgres",
        "CREATE ROLE late_writer NOLOGIN; GRANT late_writer TO cloud_admin;",
    )
    .unwrap();
    as_connector(
        "m_recon",
        "GRANT CREATE, USAGE ON SCHEMA s1 TO late_writer; SET ROLE late_writer; CREATE TABLE s1.newer (id int);",
    )
    .unwrap();
    assert!(as_user(&g.username, &pw, "m_recon", "SELECT * FROM s1.newer").is_err());
    let report = p.reconcile().await.unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    assert!(!report.privilege_roles_refreshed.is_empty(), "{report:?}");
    assert!(as_user(&g.username, &pw, "m_recon", "SELECT * FROM s1.newer").is_ok());

    // An expired grant is revoked by reconcile; the unused privilege role then goes
    // (the connector's own membership in it does not keep it alive).
    let short = p
        .grant(GrantRequest {
            expiry: Expiry::After(Ttl::from_secs(1).unwrap()),
            ..request("erin", &["postgresql-table:m_recon/s1/t2=select"])
        })
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    p.revoke(&g.grant_id).await.unwrap();
    let report = p.reconcile().await.unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    assert!(!role_exists(&short.username), "{report:?}");
    for access in [scope, "postgresql-table:m_recon/s1/t2=select"] {
        let name = pgwarden_pg_driver::privilege_role_name(&entry(access));
        assert!(!role_exists(&name), "{access} kept: {report:?}");
    }
    assert_eq!(
        common::leftovers(cluster(), &short.username, &["m_recon"]),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_revocation_is_finished_by_reconcile() {
    let _alone = common::reconciling().lock().await;
    app_database("m_crash");
    as_connector("m_crash", "CREATE SCHEMA scratch").unwrap();
    let hooked = provisioner().with_step_hook(std::sync::Arc::new(|step: &Step| {
        if *step == Step::RevokeCleanDatabase("m_crash".into()) {
            Err("crash".into())
        } else {
            Ok(())
        }
    }));
    let g = hooked
        .grant(request("fay", &["postgresql-schema:m_crash/scratch=admin"]))
        .await
        .unwrap();
    as_user(
        &g.username,
        g.password.as_ref().unwrap().expose_secret(),
        "m_crash",
        "CREATE TABLE scratch.made (id int)",
    )
    .unwrap();
    let e = hooked.revoke(&g.grant_id).await.unwrap_err();
    assert!(matches!(e, ProvisionError::Injected { .. }), "{e}");
    // Access ended already: login off, memberships gone.
    assert_eq!(
        q(&format!(
            "SELECT rolcanlogin, (SELECT count(*) FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid AND g.rolname <> 'pgwarden_managed')
             FROM pg_roles r WHERE rolname = '{}'",
            g.username
        ))
        .trim(),
        "f|0"
    );
    let report = provisioner().reconcile().await.unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(common::leftovers(cluster(), &g.username, &["m_crash"]), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_users_work_without_superuser() {
    let p = provisioner_with(config(UserMode::Persistent, ConnectorMode::Createrole));
    app_database("m_persist");
    let g1 = p
        .grant(request(
            "gus",
            &["postgresql-schema:m_persist/s1=read-only"],
        ))
        .await
        .unwrap();
    let pw = g1.password.as_ref().unwrap().expose_secret().to_owned();
    let g2 = p
        .grant(request(
            "gus",
            &["postgresql-schema:m_persist/s2=read-only"],
        ))
        .await
        .unwrap();
    assert_eq!(g1.username, g2.username);
    assert!(as_user(&g1.username, &pw, "m_persist", "SELECT * FROM s2.u1").is_ok());
    p.revoke(&g2.grant_id).await.unwrap();
    assert!(as_user(&g1.username, &pw, "m_persist", "SELECT * FROM s2.u1").is_err());
    assert!(as_user(&g1.username, &pw, "m_persist", "SELECT * FROM s1.t1").is_ok());
    let report = p.revoke(&g1.grant_id).await.unwrap();
    assert!(report.login_disabled, "{report:?}");
    assert!(as_user(&g1.username, &pw, "m_persist", "SELECT 1").is_err());
}

/// On PostgreSQL 16+, a marker role made by someone else (a superuser connector
/// earlier) carries no ADMIN OPTION for the CREATEROLE connector: the error says which
/// GRANT fixes it. Its own cluster: the marker is cluster-wide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marker_made_by_another_role_is_named() {
    let other = TempCluster::start().unwrap();
    other.psql(PROVIDER_SQL).unwrap();
    let info: ConnInfo = other
        .conninfo(CONNECTOR, CONNECTOR_PW, "postgres")
        .parse()
        .unwrap();
    let createrole = || {
        Provisioner::new(
            Connector::new(&info, &ConnectOptions::default()).unwrap(),
            config(UserMode::Ephemeral, ConnectorMode::Createrole),
        )
        .unwrap()
    };
    // Made by hand, with no record pgwarden sealed: not pgwarden's, on every version.
    other.psql("CREATE ROLE pgwarden_managed NOLOGIN").unwrap();
    let e = createrole()
        .grant(request("hal", &["postgresql-database:postgres=connect"]))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ProvisionError::NotAuthentic(_))
            && e.to_string().contains("DROP ROLE pgwarden_managed"),
        "{e}"
    );
    let left = other
        .psql(&format!(
            "SELECT count(*) FROM pg_roles WHERE {}",
            login_roles_of("hal")
        ))
        .unwrap();
    assert_eq!(left.trim(), "0", "a refused grant left a login role");
    other.psql("DROP ROLE pgwarden_managed").unwrap();
    // Made by a superuser pgwarden with the same ledger key: authentic, but on 16+ a
    // CREATEROLE connector needs ADMIN OPTION on it (and on the untagged role, made
    // with it) to add members.
    let superuser: ConnInfo = other.dsn().parse().unwrap();
    let su = Provisioner::new(
        Connector::new(&superuser, &ConnectOptions::default()).unwrap(),
        config(UserMode::Ephemeral, ConnectorMode::Superuser),
    )
    .unwrap();
    let g = su
        .grant(request("sue", &["postgresql-database:postgres=connect"]))
        .await
        .unwrap();
    su.revoke(&g.grant_id).await.unwrap();
    // Its privilege role goes with its last member: on 16+ the CREATEROLE connector
    // could not grant one the superuser made.
    su.reconcile().await.unwrap();
    let result = createrole()
        .grant(request("hal", &["postgresql-database:postgres=connect"]))
        .await;
    if other.server_major() >= 16 {
        let e = result.unwrap_err();
        let fix =
            "GRANT pgwarden_managed, pgwarden_managed_untagged TO cloud_admin WITH ADMIN OPTION";
        assert!(e.to_string().contains(fix), "{e}");
        other.psql(fix).unwrap();
        let p = createrole();
        let g = p
            .grant(request("hal", &["postgresql-database:postgres=connect"]))
            .await
            .unwrap();
        p.revoke(&g.grant_id).await.unwrap();
    } else {
        let g = result.unwrap();
        createrole().revoke(&g.grant_id).await.unwrap();
    }
}

/// Expiries in a batch work for a connector without SUPERUSER: sessions are ended
/// (through `pg_signal_backend`), roles that own nothing are dropped together (from
/// PostgreSQL 16 the connector's ADMIN OPTION on each allows it), and a role that owns
/// a table is finished singly, the connector acting as the role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiries_in_a_batch_work_without_superuser() {
    use pgwarden_pg_driver::BatchOutcome;

    let _alone = common::reconciling().lock().await;
    let p = provisioner();
    app_database("m_batch");
    as_connector("m_batch", "GRANT CREATE ON SCHEMA s1 TO PUBLIC").unwrap();
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let mut grants = Vec::new();
    for n in 0..4 {
        let g = p
            .grant(GrantRequest {
                grant_id: Some(format!("m-batch-{n}")),
                expiry: Expiry::At(at),
                ..request("mbatch", &["postgresql-schema:m_batch/s1=read-write"])
            })
            .await
            .unwrap();
        grants.push(g);
    }
    let pw = |n: usize| {
        grants[n]
            .password
            .as_ref()
            .unwrap()
            .expose_secret()
            .to_owned()
    };
    as_user(
        &grants[0].username,
        &pw(0),
        "m_batch",
        "CREATE TABLE s1.m_owned (id int)",
    )
    .unwrap();
    let session = common::session(cluster(), &grants[1].username, &pw(1), "m_batch").await;
    let due = common::expired_by_prefix(&p, at, "m-batch-").await;
    assert_eq!(due.len(), 4);
    let outcomes: BTreeMap<String, BatchOutcome> =
        p.revoke_expired_batch(&due).await.into_iter().collect();
    assert!(
        matches!(outcomes["m-batch-0"], BatchOutcome::AccessEnded(_)),
        "{outcomes:?}"
    );
    for n in 1..4 {
        assert!(
            matches!(outcomes[&format!("m-batch-{n}")], BatchOutcome::Revoked(_)),
            "{outcomes:?}"
        );
        assert!(!role_exists(&grants[n].username));
    }
    assert!(
        session.simple_query("SELECT 1").await.is_err(),
        "session ended"
    );
    let r = p.revoke_expired("m-batch-0").await.unwrap();
    assert!(r.role_dropped, "{r:?}");
    assert_eq!(
        common::leftovers(cluster(), &grants[0].username, &["m_batch"]),
        0
    );
}
