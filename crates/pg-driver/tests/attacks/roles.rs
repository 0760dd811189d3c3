//! Item: `role: member` reaches no further than the role.
//!
//! The attack: a DBA offers membership in a team role (`postgresql-role:ops=member`),
//! and that role is itself a member of something far bigger — a superuser
//! (`GRANT dba_super TO ops`, then `SET ROLE dba_super`), a predefined role that runs
//! programs or reads and writes files as the server (`COPY … TO PROGRAM`), a role with
//! CREATEROLE, REPLICATION or BYPASSRLS, a role holding ADMIN OPTION on one of those,
//! or one of pgwarden's own roles or its connector. Each is mounted here, directly and
//! through longer paths and a membership cycle, and every grant must be refused with
//! the path named and nothing left behind; a harmless role must still be granted and
//! work; and an integration's `sensitive_roles_allowed` opts a role in (but never past
//! pgwarden's own roles).

use pgwarden_core::config::{ConfigFormat, ConnectorMode, IntegrationConfig, UserMode};
use pgwarden_core::conninfo::ConnInfo;
use pgwarden_pg_driver::privilege_role_name;
use pgwarden_pg_driver::{ConnectOptions, Connector};
use pgwarden_pg_driver::{Provisioner, ProvisionerConfig};
use secrecy::ExposeSecret;

use crate::{cluster, common, q_in};

/// A superuser-mode provisioner connecting as `user` (the cluster's superuser when
/// `None`) that lets `allowed` through; its sessions are named `app` (one per test, so
/// that [`assert_no_open_transaction`] sees only that test's sessions).
fn provisioner(app: &str, user: Option<(&str, &str)>, allowed: &[&str]) -> Provisioner {
    let dsn = match user {
        Some((user, password)) => cluster().conninfo(user, password, "postgres"),
        None => cluster().dsn(),
    };
    let info: ConnInfo = dsn.parse().unwrap();
    let mut config: ProvisionerConfig =
        common::provisioner_config("roles", UserMode::Ephemeral, ConnectorMode::Superuser);
    config.sensitive_roles_allowed = allowed.iter().map(|s| (*s).to_owned()).collect();
    let options = ConnectOptions {
        application_name: app.to_owned(),
        ..ConnectOptions::default()
    };
    Provisioner::new(Connector::new(&info, &options).unwrap(), config).unwrap()
}

fn count(sql: &str) -> i64 {
    q_in("postgres", sql).trim().parse().unwrap()
}

/// Asks for membership in `target` as `requester`, expects a refusal naming every one
/// of `paths`, and checks nothing was left: no login role for the requester, no
/// privilege role for the entry, no pgwarden role a member of the target, no session
/// of `app` idle in a transaction or holding an advisory lock.
async fn assert_refused(
    (app, p): (&str, &Provisioner),
    requester: &str,
    target: &str,
    paths: &[&str],
) {
    let access = format!("postgresql-role:{target}=member");
    let err = p
        .grant(common::request(requester, &[&access]))
        .await
        .expect_err(&format!("membership in {target} was granted"))
        .to_string();
    for path in paths {
        assert!(err.contains(path), "{target}: want {path:?} in: {err}");
    }
    assert!(err.contains("cannot be granted"), "{err}");
    let prefix = format!("pgw_{}_", requester.replace('-', "_"));
    assert_eq!(
        count(&format!(
            "SELECT count(*) FROM pg_catalog.pg_roles WHERE pg_catalog.starts_with(rolname::text, '{prefix}')"
        )),
        0,
        "a login role was left for {requester}"
    );
    let privilege_role = privilege_role_name(&common::entry(&access));
    assert_eq!(
        count(&format!(
            "SELECT count(*) FROM pg_catalog.pg_roles WHERE rolname = '{privilege_role}'"
        )),
        0,
        "privilege role {privilege_role} for {access} was left"
    );
    assert_eq!(
        count(&format!(
            "SELECT count(*) FROM pg_catalog.pg_auth_members m
             JOIN pg_catalog.pg_roles r ON r.oid = m.member
             WHERE m.roleid = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = '{target}')
               AND (r.rolname LIKE 'pgw%')"
        )),
        0,
        "a pgwarden role became a member of {target}"
    );
    assert_no_open_transaction(app).await;
}

/// Idle sessions named `app` holding an advisory lock or an open transaction: a
/// refused grant must have rolled back and released the privileges lock.
async fn assert_no_open_transaction(app: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let leaked = q_in(
            "postgres",
            &format!(
                "SELECT pg_catalog.string_agg(a.pid::text || ' ' || a.state, '; ')
                 FROM pg_catalog.pg_stat_activity a
                 LEFT JOIN pg_catalog.pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory'
                 WHERE a.application_name = '{app}' AND a.state <> 'active'
                   AND (l.pid IS NOT NULL OR a.state LIKE 'idle in transaction%')"
            ),
        );
        if leaked.trim().is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sessions kept a transaction or lock: {leaked}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_reaching_a_superuser_is_refused_with_the_path() {
    const APP: &str = "pgw-r3-membership-reaching-a-superuser-is-refus";
    q_in(
        "postgres",
        "CREATE ROLE r3_dba SUPERUSER NOLOGIN; CREATE ROLE r3_ops NOLOGIN; GRANT r3_dba TO r3_ops;
         CREATE ROLE r3_dba_direct SUPERUSER NOLOGIN;",
    );
    let p = provisioner(APP, None, &[]);
    assert_refused(
        (APP, &p),
        "r3-super",
        "r3_ops",
        &["r3_ops → r3_dba (SUPERUSER)"],
    )
    .await;
    // The target itself, as before.
    assert_refused(
        (APP, &p),
        "r3-super-direct",
        "r3_dba_direct",
        &["r3_dba_direct (SUPERUSER)", "superuser"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_reaching_sensitive_roles_is_refused() {
    const APP: &str = "pgw-r3-membership-reaching-sensitive-roles-is-r";
    let v16 = cluster().server_major() >= 16;
    q_in(
        "postgres",
        &format!(
            "CREATE ROLE r3_shell NOLOGIN; GRANT pg_execute_server_program TO r3_shell;
             CREATE ROLE r3_a NOLOGIN; CREATE ROLE r3_b NOLOGIN;
             GRANT r3_b TO r3_a; GRANT pg_read_server_files TO r3_b;
             CREATE ROLE r3_cr CREATEROLE NOLOGIN; CREATE ROLE r3_via_cr NOLOGIN; GRANT r3_cr TO r3_via_cr;
             CREATE ROLE r3_brls BYPASSRLS NOLOGIN; CREATE ROLE r3_via_brls NOLOGIN; GRANT r3_brls TO r3_via_brls;
             CREATE ROLE r3_repl REPLICATION NOLOGIN; CREATE ROLE r3_via_repl NOLOGIN; GRANT r3_repl TO r3_via_repl;
             CREATE ROLE r3_adm NOLOGIN; GRANT pg_write_server_files TO r3_adm WITH ADMIN {};
             CREATE ROLE r3_via_adm NOLOGIN; GRANT r3_adm TO r3_via_adm;",
            // On 16+ an ADMIN-only membership (no INHERIT, no SET): r3_adm cannot use
            // the role, only grant it, to itself among others.
            if v16 {
                "TRUE, INHERIT FALSE, SET FALSE"
            } else {
                "OPTION"
            }
        ),
    );
    let p = provisioner(APP, None, &[]);
    assert_refused(
        (APP, &p),
        "r3-shell",
        "r3_shell",
        &["r3_shell → pg_execute_server_program (sensitive predefined role)"],
    )
    .await;
    assert_refused(
        (APP, &p),
        "r3-two-hops",
        "r3_a",
        &["r3_a → r3_b → pg_read_server_files (sensitive predefined role)"],
    )
    .await;
    assert_refused(
        (APP, &p),
        "r3-cr",
        "r3_via_cr",
        &["r3_via_cr → r3_cr (CREATEROLE)"],
    )
    .await;
    assert_refused(
        (APP, &p),
        "r3-brls",
        "r3_via_brls",
        &["r3_via_brls → r3_brls (BYPASSRLS)"],
    )
    .await;
    assert_refused(
        (APP, &p),
        "r3-repl",
        "r3_via_repl",
        &["r3_via_repl → r3_repl (REPLICATION)"],
    )
    .await;
    if cluster().server_major() >= 14 {
        // pg_read_all_data and pg_write_all_data came with PostgreSQL 14.
        q_in(
            "postgres",
            "CREATE ROLE r3_alldata NOLOGIN; GRANT pg_write_all_data TO r3_alldata;",
        );
        assert_refused(
            (APP, &p),
            "r3-alldata",
            "r3_alldata",
            &["r3_alldata → pg_write_all_data"],
        )
        .await;
    }
    assert_refused(
        (APP, &p),
        "r3-adm",
        "r3_adm",
        &["r3_adm (ADMIN OPTION on pg_write_server_files (sensitive predefined role))"],
    )
    .await;
    assert_refused(
        (APP, &p),
        "r3-via-adm",
        "r3_via_adm",
        &["r3_via_adm → r3_adm (ADMIN OPTION on pg_write_server_files"],
    )
    .await;
    // Predefined roles are never a target.
    let e = p
        .grant(common::request(
            "r3-predefined",
            &["postgresql-role:pg_execute_server_program=member"],
        ))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("predefined"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_cycle_is_walked_once() {
    const APP: &str = "pgw-r3-a-membership-cycle-is-walked-once";
    // PostgreSQL refuses circular GRANTs, but a catalog edited by hand (or restored
    // from elsewhere) can hold one: make r3_cy2 a member of r3_cy1 and r3_cy1 of
    // r3_cy2 by moving an existing membership row, and the same for a harmless pair.
    let cycle = |a: &str, b: &str, tmp: &str| {
        format!(
            "CREATE ROLE {a} NOLOGIN; CREATE ROLE {b} NOLOGIN; CREATE ROLE {tmp} NOLOGIN;
             GRANT {b} TO {a}; GRANT {a} TO {tmp};
             SET allow_system_table_mods = on;
             UPDATE pg_catalog.pg_auth_members SET member = '{b}'::regrole
             WHERE roleid = '{a}'::regrole AND member = '{tmp}'::regrole;
             RESET allow_system_table_mods;"
        )
    };
    q_in("postgres", &cycle("r3_cy1", "r3_cy2", "r3_cytmp"));
    q_in("postgres", "GRANT pg_write_server_files TO r3_cy2;");
    q_in("postgres", &cycle("r3_hc1", "r3_hc2", "r3_hctmp"));
    for (a, b) in [("r3_cy1", "r3_cy2"), ("r3_hc1", "r3_hc2")] {
        assert_eq!(
            count(&format!(
                "SELECT count(*) FROM pg_catalog.pg_auth_members
                 WHERE (roleid, member) IN (('{a}'::regrole, '{b}'::regrole), ('{b}'::regrole, '{a}'::regrole))"
            )),
            2,
            "no cycle between {a} and {b}"
        );
    }
    let p = provisioner(APP, None, &[]);
    let refused = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        assert_refused(
            (APP, &p),
            "r3-cycle",
            "r3_cy1",
            &["r3_cy1 → r3_cy2 → pg_write_server_files (sensitive predefined role)"],
        ),
    )
    .await;
    assert!(refused.is_ok(), "the walk did not end on a cycle");
    let g = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        p.grant(common::request(
            "r3-harmless-cycle",
            &["postgresql-role:r3_hc1=member"],
        )),
    )
    .await
    .expect("the walk did not end on a cycle")
    .unwrap();
    p.revoke(&g.grant_id).await.unwrap();
    q_in(
        "postgres",
        "DROP ROLE r3_cy1, r3_cy2, r3_cytmp, r3_hc1, r3_hc2, r3_hctmp;",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_reaching_pgwarden_roles_is_refused_even_when_allowed() {
    const APP: &str = "pgw-r3-membership-reaching-pgwarden-roles-is-re";
    q_in(
        "postgres",
        "CREATE ROLE r3_connector LOGIN SUPERUSER PASSWORD 'r3-connector-pw';
         CREATE ROLE r3_via_conn NOLOGIN; GRANT r3_connector TO r3_via_conn;",
    );
    let conn = Some(("r3_connector", "r3-connector-pw"));
    let strict = provisioner(APP, conn, &[]);
    // A privilege role and a login role of pgwarden's, made by a harmless grant.
    let harmless = "postgresql-database:postgres=connect";
    let g = strict
        .grant(common::request("r3-owner", &[harmless]))
        .await
        .unwrap();
    let privilege_role = privilege_role_name(&common::entry(harmless));
    q_in(
        "postgres",
        &format!(
            "CREATE ROLE r3_via_priv NOLOGIN; GRANT \"{privilege_role}\" TO r3_via_priv;
             CREATE ROLE r3_via_login NOLOGIN; CREATE ROLE r3_mid NOLOGIN;
             GRANT r3_mid TO r3_via_login; GRANT \"{}\" TO r3_mid;",
            g.username
        ),
    );
    let own = ["r3_via_conn", "r3_via_priv", "r3_via_login"];
    for p in [strict, provisioner(APP, conn, &own)] {
        assert_refused(
            (APP, &p),
            "r3-conn",
            "r3_via_conn",
            &["r3_via_conn → r3_connector (pgwarden's connector, SUPERUSER)"],
        )
        .await;
        assert_refused(
            (APP, &p),
            "r3-priv",
            "r3_via_priv",
            &[&format!(
                "r3_via_priv → {privilege_role} (pgwarden privilege role)"
            )],
        )
        .await;
        assert_refused(
            (APP, &p),
            "r3-login",
            "r3_via_login",
            &[&format!(
                "r3_via_login → r3_mid → {} (pgwarden login role)",
                g.username
            )],
        )
        .await;
    }
    let p = provisioner(APP, conn, &[]);
    p.revoke(&g.grant_id).await.unwrap();
    // r3_via_priv would keep the privilege role in use for ever.
    q_in(
        "postgres",
        "DROP ROLE r3_via_priv, r3_via_login, r3_mid, r3_via_conn;",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_harmless_role_is_granted_and_reaches_nothing_more() {
    const APP: &str = "pgw-r3-a-harmless-role-is-granted-and-reaches-n";
    let db = "r3_harmless";
    cluster().create_database(db).unwrap();
    q_in(
        "postgres",
        "CREATE ROLE r3_readers NOLOGIN; CREATE ROLE r3_base NOLOGIN;
         GRANT r3_base TO r3_readers; GRANT pg_read_all_settings TO r3_base;
         CREATE ROLE r3_dba_h SUPERUSER NOLOGIN; CREATE ROLE r3_files_h NOLOGIN;
         GRANT pg_execute_server_program TO r3_files_h;",
    );
    q_in(
        db,
        "CREATE SCHEMA r3s; CREATE TABLE r3s.t (id int); INSERT INTO r3s.t VALUES (7);
         CREATE TABLE r3s.other (id int);
         GRANT USAGE ON SCHEMA r3s TO r3_readers; GRANT SELECT ON r3s.t TO r3_readers;",
    );
    let p = provisioner(APP, None, &[]);
    let g = p
        .grant(common::request(
            "r3-reader",
            &["postgresql-role:r3_readers=member"],
        ))
        .await
        .unwrap();
    let pw = g.password.as_ref().unwrap().expose_secret().to_owned();
    let run = |sql: &str| common::as_user(cluster(), &g.username, &pw, db, sql);
    assert_eq!(run("SELECT id FROM r3s.t").unwrap().trim(), "7");
    assert!(run("SELECT 1 FROM r3s.other").is_err());
    for sql in [
        "SET ROLE r3_dba_h",
        "SET ROLE r3_files_h",
        "SET ROLE pg_execute_server_program",
        "SET ROLE pg_write_server_files",
        "COPY (SELECT 1) TO PROGRAM 'true'",
        "SELECT pg_catalog.pg_read_file('postgresql.conf', 0, 1)",
        "CREATE ROLE r3_made_by_grantee",
    ] {
        assert!(run(sql).is_err(), "the grantee could run {sql}");
    }
    // What it may reach: pg_read_all_settings, through r3_base.
    assert_eq!(
        run("SELECT pg_catalog.pg_has_role(current_user, 'pg_read_all_settings', 'USAGE')")
            .unwrap()
            .trim(),
        "t"
    );
    p.revoke(&g.grant_id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_roles_allowed_opts_a_role_in() {
    const APP: &str = "pgw-r3-sensitive-roles-allowed-opts-a-role-in";
    // The setting travels from the integration config to the provisioner.
    let config = IntegrationConfig::parse(
        "name = \"r3\"\nhostname = \"h\"\nsensitive_roles_allowed = [\"r3_ops2\"]\n",
        ConfigFormat::Toml,
    )
    .unwrap();
    assert_eq!(
        ProvisionerConfig::from_integration(&config, crate::common::ledger_key())
            .sensitive_roles_allowed,
        ["r3_ops2"]
    );
    // Case 1 again, on roles of its own (privilege roles are shared by every
    // provisioner of the instance: a grant here must not make case 1's role ready).
    q_in(
        "postgres",
        "CREATE ROLE r3_dba2 SUPERUSER NOLOGIN; CREATE ROLE r3_ops2 NOLOGIN; GRANT r3_dba2 TO r3_ops2;",
    );
    assert_refused(
        (APP, &provisioner(APP, None, &[])),
        "r3-opt-strict",
        "r3_ops2",
        &["r3_ops2 → r3_dba2 (SUPERUSER)"],
    )
    .await;
    let p = provisioner(APP, None, &["r3_ops2"]);
    let g = p
        .grant(common::request(
            "r3-opt",
            &["postgresql-role:r3_ops2=member"],
        ))
        .await
        .unwrap();
    let member = q_in(
        "postgres",
        &format!(
            "SELECT pg_catalog.pg_has_role('{}', 'r3_ops2', 'MEMBER')",
            g.username
        ),
    );
    assert_eq!(member.trim(), "t");
    p.revoke(&g.grant_id).await.unwrap();
}
