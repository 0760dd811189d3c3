//! Helpers shared by the provisioning suites (`provision.rs` with a superuser
//! connector, `managed.rs` with a managed-cloud one): probing what a user can do, and
//! looking for anything a revoked role left behind.

#![allow(dead_code, reason = "each suite uses its own subset")]

use std::collections::BTreeMap;

use pgwarden_core::config::{ConnectorMode, UserMode};
use pgwarden_core::conninfo::ConnInfo;
use pgwarden_core::duration::Ttl;
use pgwarden_core::resource::AccessEntry;
use pgwarden_pg_driver::ScramIterations;
use pgwarden_pg_driver::{ConnectOptions, Connection, Connector};
use pgwarden_pg_driver::{Expiry, GrantRequest, ProvisionerConfig};
use pgwarden_testkit::TempCluster;

/// A session of `user` in `db`, held open (as a user's client would) until dropped.
pub(crate) async fn session(
    cluster: &TempCluster,
    user: &str,
    password: &str,
    db: &str,
) -> Connection {
    let info: ConnInfo = cluster.conninfo(user, password, db).parse().unwrap();
    Connector::new(&info, &ConnectOptions::default())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// An access entry from its text form.
pub(crate) fn entry(s: &str) -> AccessEntry {
    s.parse().unwrap()
}

/// An hour of `access` for `requester`, with a generated grant id.
pub(crate) fn request(requester: &str, access: &[&str]) -> GrantRequest {
    GrantRequest {
        grant_id: None,
        requester: requester.into(),
        access: access.iter().map(|s| entry(s)).collect(),
        expiry: Expiry::After(Ttl::from_secs(3600).unwrap()),
        user_mode: None,
        session: pgwarden_core::session::SessionLimits::default(),
    }
}

/// Test settings: prefix `pgw_`, 7 days at most, cheap verifiers (16 iterations).
pub(crate) fn provisioner_config(
    integration: &str,
    user_mode: UserMode,
    connector_mode: ConnectorMode,
) -> ProvisionerConfig {
    ProvisionerConfig {
        integration: integration.into(),
        username_prefix: "pgw_".into(),
        user_mode,
        max_ttl: "7d".parse().unwrap(),
        scram_iterations: ScramIterations::new(16).unwrap(),
        password_max_age: None,
        successor: None,
        pool_size: 4,
        connector_mode,
        sensitive_roles_allowed: Vec::new(),
        cleanup_lock_timeout: pgwarden_pg_driver::DEFAULT_CLEANUP_LOCK_TIMEOUT,
        ledger_key: ledger_key(),
    }
}

/// The ledger key every provisioner of this test binary shares, as every integration
/// managing one instance must.
pub(crate) fn ledger_key() -> pgwarden_pg_driver::LedgerKey {
    static KEY: std::sync::OnceLock<pgwarden_pg_driver::LedgerKey> = std::sync::OnceLock::new();
    KEY.get_or_init(pgwarden_pg_driver::LedgerKey::generate)
        .clone()
}

/// The schema every probe database has: `s1.t1` (serial), `s1.t2`, `s2.u1`.
pub(crate) const PROBE_SCHEMA_SQL: &str = "CREATE SCHEMA s1; CREATE SCHEMA s2;
     CREATE TABLE s1.t1 (id serial PRIMARY KEY, v text); INSERT INTO s1.t1 (v) VALUES ('a');
     CREATE TABLE s1.t2 (id int); INSERT INTO s1.t2 VALUES (1);
     CREATE TABLE s2.u1 (id int); INSERT INTO s2.u1 VALUES (1);";

/// Runs SQL as a user through psql (libpq); Ok(output) or Err(stderr).
pub(crate) fn as_user(
    cluster: &TempCluster,
    user: &str,
    password: &str,
    db: &str,
    sql: &str,
) -> Result<String, String> {
    cluster
        .psql_with(&cluster.conninfo(user, password, db), sql)
        .map_err(|e| e.to_string())
}

/// The probes, each run in its own psql call so one failure does not hide another.
/// `s1.late` is a table the caller creates after the grant.
pub(crate) fn probes(
    cluster: &TempCluster,
    user: &str,
    password: &str,
    db: &str,
) -> BTreeMap<&'static str, bool> {
    let ops: [(&str, &str); 10] = [
        ("connect", "SELECT 1"),
        ("select", "SELECT count(*) FROM s1.t1"),
        ("insert", "INSERT INTO s1.t1 (v) VALUES ('x')"),
        ("update", "UPDATE s1.t1 SET v = 'y' WHERE id = 1"),
        ("delete", "DELETE FROM s1.t1 WHERE id = -1"),
        ("truncate", "BEGIN; TRUNCATE s1.t1; ROLLBACK"),
        ("select_other_table", "SELECT count(*) FROM s1.t2"),
        ("select_other_schema", "SELECT count(*) FROM s2.u1"),
        (
            "create",
            "CREATE TABLE s1.probe_made (id int); DROP TABLE s1.probe_made",
        ),
        ("select_late", "SELECT count(*) FROM s1.late"),
    ];
    ops.iter()
        .map(|(name, sql)| (*name, as_user(cluster, user, password, db, sql).is_ok()))
        .collect()
}

/// Every level with the probes it must pass (and no other), `{db}` standing for the
/// database; `analysts` is a role with SELECT on `s2.u1`.
pub(crate) const LEVEL_CASES: &[(&str, &[&str])] = &[
    ("postgresql-database:{db}=connect", &["connect"]),
    (
        "postgresql-database:{db}=read-only",
        &[
            "connect",
            "select",
            "select_other_table",
            "select_other_schema",
            "select_late",
        ],
    ),
    (
        "postgresql-database:{db}=read-write",
        &[
            "connect",
            "select",
            "insert",
            "update",
            "delete",
            "select_other_table",
            "select_other_schema",
            "select_late",
        ],
    ),
    (
        "postgresql-database:{db}=admin",
        &[
            "connect",
            "select",
            "insert",
            "update",
            "delete",
            "truncate",
            "select_other_table",
            "select_other_schema",
            "create",
            "select_late",
        ],
    ),
    (
        "postgresql-schema:{db}/s1=read-only",
        &["connect", "select", "select_other_table", "select_late"],
    ),
    (
        "postgresql-schema:{db}/s1=read-write",
        &[
            "connect",
            "select",
            "insert",
            "update",
            "delete",
            "select_other_table",
            "select_late",
        ],
    ),
    (
        "postgresql-schema:{db}/s1=admin",
        &[
            "connect",
            "select",
            "insert",
            "update",
            "delete",
            "truncate",
            "select_other_table",
            "create",
            "select_late",
        ],
    ),
    ("postgresql-table:{db}/s1/t1=select", &["connect", "select"]),
    ("postgresql-table:{db}/s1/t1=insert", &["connect", "insert"]),
    (
        "postgresql-table:{db}/s1/t1=update",
        &["connect", "select", "update"],
    ),
    (
        "postgresql-table:{db}/s1/t1=delete",
        &["connect", "select", "delete"],
    ),
    (
        "postgresql-table:{db}/s1/t1=read-only",
        &["connect", "select"],
    ),
    (
        "postgresql-table:{db}/s1/t1=read-write",
        &["connect", "select", "insert", "update", "delete"],
    ),
    (
        "postgresql-table:{db}/s1/t1=admin",
        &[
            "connect", "select", "insert", "update", "delete", "truncate",
        ],
    ),
    (
        "postgresql-role:analysts=member",
        &["connect", "select_other_schema"],
    ),
];

/// What still refers to `username`: the role itself, dependencies of dropped roles
/// anywhere, and ACL or default-ACL entries naming it in `databases`. 0 when a
/// revocation was complete.
pub(crate) fn leftovers(cluster: &TempCluster, username: &str, databases: &[&str]) -> i64 {
    let count = |db: &str, sql: &str| -> i64 {
        cluster
            .psql_in(db, sql)
            .unwrap()
            .trim()
            .parse::<i64>()
            .unwrap()
    };
    let mut total = count(
        "postgres",
        &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{username}'"),
    );
    total += count(
        "postgres",
        "SELECT count(*) FROM pg_shdepend WHERE refclassid = 'pg_authid'::regclass AND refobjid NOT IN (SELECT oid FROM pg_roles)",
    );
    for db in databases {
        total += count(
            db,
            &format!(
                "SELECT (SELECT count(*) FROM pg_class WHERE relacl::text LIKE '%{username}%')
                      + (SELECT count(*) FROM pg_default_acl WHERE defaclacl::text LIKE '%{username}%')
                      + (SELECT count(*) FROM pg_namespace WHERE nspacl::text LIKE '%{username}%')
                      + (SELECT count(*) FROM pg_proc WHERE proacl::text LIKE '%{username}%')"
            ),
        );
    }
    total
}

/// Waits until just after `at`, then lists the grants whose id starts with `prefix`:
/// what a sweep finds expired.
#[allow(dead_code, reason = "used by the batch tests of some binaries")]
pub(crate) async fn expired_by_prefix(
    p: &pgwarden_pg_driver::Provisioner,
    at: time::OffsetDateTime,
    prefix: &str,
) -> Vec<pgwarden_pg_driver::ListedGrant> {
    let until =
        std::time::Duration::try_from(at - time::OffsetDateTime::now_utc()).unwrap_or_default();
    tokio::time::sleep(until + std::time::Duration::from_millis(200)).await;
    p.list()
        .await
        .unwrap()
        .into_iter()
        .filter(|g| g.grant_id.starts_with(prefix))
        .collect()
}

/// Held by tests that reconcile (which revokes every expired grant in the instance)
/// and by those whose expired grants must wait for their own revocation.
#[allow(dead_code, reason = "used by the binaries whose tests reconcile")]
pub(crate) fn reconciling() -> &'static tokio::sync::Mutex<()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    &LOCK
}
