//! Adversarial tests: each mounts, against a real server, an attack by a user of the
//! instance (any login role, a grantee, or a `CREATEROLE` role that is not pgwarden's
//! connector) and fails if the attack works. One cluster serves the whole binary; each
//! test works in databases and roles of its own. CI runs this suite on PostgreSQL 13,
//! 15 and 18 (`PGWARDEN_TEST_PG`).

#![allow(clippy::too_many_lines, reason = "attack scenarios read top to bottom")]

#[path = "../common/mod.rs"]
mod common;

mod cancel;
mod handover;
mod ledger;
mod options;
mod races;
mod roles;
mod search_path;
mod set_role;

use pgwarden_core::config::{ConnectorMode, UserMode};
use pgwarden_core::conninfo::ConnInfo;
use pgwarden_pg_driver::Provisioner;
use pgwarden_pg_driver::{ConnectOptions, Connector};
use pgwarden_testkit::TempCluster;

/// The cluster every attack in this binary runs against.
pub(crate) fn cluster() -> &'static TempCluster {
    static C: std::sync::OnceLock<TempCluster> = std::sync::OnceLock::new();
    C.get_or_init(|| TempCluster::builder().max_connections(200).start().unwrap())
}

/// Held by the tests that reconcile: a reconcile acts on the whole instance (it
/// removes memberships no grant lists, objects pgwarden's roles own), so another
/// test's half-built attack must not be cleaned up under it.
pub(crate) async fn reconciling() -> tokio::sync::MutexGuard<'static, ()> {
    static M: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    M.lock().await
}

/// The privilege role `username` is a member of (its grant has one entry).
pub(crate) fn privilege_role_of(username: &str) -> String {
    q_in(
        "postgres",
        &format!(
            "SELECT r.rolname FROM pg_catalog.pg_auth_members m
             JOIN pg_catalog.pg_roles r ON r.oid = m.roleid
             JOIN pg_catalog.pg_roles u ON u.oid = m.member
             WHERE u.rolname = '{username}' AND r.rolname LIKE 'pgwarden\\_p\\_%'"
        ),
    )
    .trim()
    .to_owned()
}

/// Runs SQL as the cluster's superuser in `db`, panicking on error.
pub(crate) fn q_in(db: &str, sql: &str) -> String {
    cluster()
        .psql_in(db, sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A superuser-mode provisioner for integration `integration` connecting to `db`.
pub(crate) fn provisioner(integration: &str, options: &ConnectOptions) -> Provisioner {
    let info: ConnInfo = cluster().dsn().parse().unwrap();
    Provisioner::new(
        Connector::new(&info, options).unwrap(),
        common::provisioner_config(integration, UserMode::Ephemeral, ConnectorMode::Superuser),
    )
    .unwrap()
}
