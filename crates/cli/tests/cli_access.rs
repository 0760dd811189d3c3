//! `pgwarden grant | list | extend | revoke | reconcile` end to end.

use std::process::Output;

mod common;

use pgwarden_testkit::TempCluster;

fn pgwarden(args: &[&str]) -> Output {
    let mut cmd = common::pgwarden();
    cmd.args(args).output().unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn grant_list_extend_revoke_reconcile() {
    let c = TempCluster::builder().start().unwrap();
    c.create_database("app").unwrap();
    c.psql_in(
        "app",
        "CREATE SCHEMA s1; CREATE TABLE s1.t (id int); INSERT INTO s1.t VALUES (1);",
    )
    .unwrap();
    let dsn = c.dsn();
    let g = json(&pgwarden(&[
        "--format",
        "json",
        "grant",
        "--dsn",
        &dsn,
        "--requester",
        "alice@example.com",
        "--access",
        "postgresql-schema:app/s1=read-only",
        "--ttl",
        "1h",
        "--grant-id",
        "T-1",
    ]));
    let (user, password) = (
        g["username"].as_str().unwrap(),
        g["password"].as_str().unwrap(),
    );
    assert_eq!(g["grant_id"], "T-1");
    assert_eq!(password.len(), 32);
    let out = c
        .psql_with(
            &c.conninfo(user, password, "app"),
            "SELECT count(*) FROM s1.t",
        )
        .unwrap();
    assert_eq!(out.trim(), "1");

    let listed = json(&pgwarden(&["--format", "json", "list", "--dsn", &dsn]));
    let l = &listed.as_array().unwrap()[0];
    assert_eq!(
        (l["grant_id"].as_str(), l["state"].as_str()),
        (Some("T-1"), Some("active"))
    );
    assert_eq!(l["access"][0]["resource"], "postgresql-schema:app/s1");
    assert_eq!(l["access"][0]["level"], "read-only");

    let ext = json(&pgwarden(&[
        "--format", "json", "extend", "--dsn", &dsn, "--grant", "T-1", "--ttl", "2h",
    ]));
    assert_eq!(ext["grant_id"], "T-1");

    let report = json(&pgwarden(&[
        "--format", "json", "revoke", "--dsn", &dsn, "--grant", "T-1",
    ]));
    assert_eq!(report["role_dropped"], true);
    assert!(
        c.psql_with(&c.conninfo(user, password, "app"), "SELECT 1")
            .is_err()
    );
    let again = json(&pgwarden(&[
        "--format", "json", "revoke", "--dsn", &dsn, "--grant", "T-1",
    ]));
    assert_eq!(again["already_revoked"], true);

    let rec = json(&pgwarden(&["--format", "json", "reconcile", "--dsn", &dsn]));
    assert_eq!(rec["errors"].as_array().unwrap().len(), 0, "{rec}");

    // Bad input is a usage error (exit 2) naming the problem.
    let out = pgwarden(&[
        "grant",
        "--dsn",
        &dsn,
        "--requester",
        "x",
        "--access",
        "postgresql-schema:app/s1=select",
        "--ttl",
        "1h",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid for a schema"));
    let out = pgwarden(&[
        "grant",
        "--dsn",
        &dsn,
        "--requester",
        "x",
        "--access",
        "postgresql-schema:app/s1=read-only",
        "--ttl",
        "30d",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_ttl"));
    let out = pgwarden(&["extend", "--dsn", &dsn, "--grant", "nope", "--ttl", "1h"]);
    assert_eq!(out.status.code(), Some(2));
}

/// A managed-cloud connector (CREATEROLE, no SUPERUSER) through the CLI: refused in the
/// default superuser mode with the setting to change, working with
/// `--connector-mode createrole` on what it owns.
#[test]
fn grant_and_revoke_with_a_createrole_connector() {
    let c = TempCluster::builder().start().unwrap();
    c.psql("CREATE ROLE cloud LOGIN CREATEROLE CREATEDB PASSWORD 'cloud-pw'")
        .unwrap();
    let dsn = c.conninfo("cloud", "cloud-pw", "postgres");
    c.psql_with(&dsn, "CREATE DATABASE shop").unwrap();
    c.psql_with(
        &c.conninfo("cloud", "cloud-pw", "shop"),
        "CREATE SCHEMA s1; CREATE TABLE s1.t (id int); INSERT INTO s1.t VALUES (3);",
    )
    .unwrap();
    let grant = |mode: Option<&str>| {
        let mut args = vec!["--format", "json", "grant", "--dsn", &dsn];
        if let Some(mode) = mode {
            args.extend(["--connector-mode", mode]);
        }
        args.extend([
            "--requester",
            "bo",
            "--access",
            "postgresql-schema:shop/s1=read-only",
            "--ttl",
            "1h",
        ]);
        pgwarden(&args)
    };
    let out = grant(None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connector_mode = \"createrole\""), "{err}");

    let g = json(&grant(Some("createrole")));
    let (user, password) = (
        g["username"].as_str().unwrap(),
        g["password"].as_str().unwrap(),
    );
    let out = c
        .psql_with(&c.conninfo(user, password, "shop"), "SELECT id FROM s1.t")
        .unwrap();
    assert_eq!(out.trim(), "3");
    let r = json(&pgwarden(&[
        "--format",
        "json",
        "revoke",
        "--dsn",
        &dsn,
        "--connector-mode",
        "createrole",
        "--grant",
        g["grant_id"].as_str().unwrap(),
    ]));
    assert_eq!(r["role_dropped"], true, "{r}");
    assert!(
        c.psql_with(&c.conninfo(user, password, "shop"), "SELECT 1")
            .is_err()
    );
}
