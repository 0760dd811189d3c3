//! `pgwarden discover` against a real cluster: the three output formats, type selection,
//! databases that cannot be read, and exit codes.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use pgwarden_testkit::TempCluster;

mod common;
use serde_json::Value;

/// The `pgwarden` binary cargo built for these tests.
fn pgwarden() -> Command {
    let mut command = common::pgwarden();
    for var in [
        "PGUSER",
        "PGPASSWORD",
        "PGHOST",
        "PGPORT",
        "PGDATABASE",
        "PGSSLMODE",
    ] {
        command.env_remove(var);
    }
    command
}

fn run(args: &[&str]) -> Output {
    pgwarden().args(args).output().unwrap()
}

fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn discover_prints_json_ndjson_and_text() {
    let c = TempCluster::shared();
    let db = unique("cli disc ü ");
    c.create_database(&db).unwrap();
    c.psql_in(
        &db,
        "CREATE SCHEMA s;
         CREATE TABLE s.orders (id int, m int) PARTITION BY RANGE (m);
         CREATE TABLE s.orders_1 PARTITION OF s.orders FOR VALUES FROM (1) TO (2);
         COMMENT ON TABLE s.orders IS 'Orders. owner=payments';",
    )
    .unwrap();
    let dsn = c.dsn();
    let orders = format!("postgresql-table:{db}/s/orders");

    let out = run(&["--format", "json", "discover", "--dsn", &dsn]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let resources = v["resources"].as_array().unwrap();
    let table = resources
        .iter()
        .find(|r| r["id"] == orders.as_str())
        .unwrap();
    assert_eq!(table["type"], "table");
    assert_eq!(table["kind"], "partitioned_table");
    assert_eq!(table["name"], "orders");
    assert_eq!(table["database"], db.as_str());
    assert_eq!(table["schema"], "s");
    assert_eq!(table["owner"], "postgres");
    assert_eq!(table["comment"], "Orders. owner=payments");
    assert_eq!(table["tags"]["owner"], "payments");
    assert_eq!(table["partitions"][0]["name"], "orders_1");
    assert!(resources.iter().all(|r| r["name"] != "orders_1"));
    assert!(
        resources
            .iter()
            .any(|r| r["type"] == "role" && r["name"] == "postgres")
    );
    assert!(v["errors"].as_array().is_some());

    // ndjson, before or after the subcommand, with a type selection.
    for args in [
        ["--format", "ndjson", "discover", "--types", "table,schema"],
        ["discover", "--format", "ndjson", "--types", "table,schema"],
    ] {
        let out = pgwarden()
            .args(args)
            .args(["--dsn", &dsn])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let lines: Vec<Value> = stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(
            lines
                .iter()
                .all(|l| l["type"] == "table" || l["type"] == "schema")
        );
        assert!(lines.iter().any(|l| l["id"] == orders.as_str()));
    }

    let out = run(&["discover", "--dsn", &dsn, "--types", "database,table"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.lines().any(|l| l
            .starts_with(&format!("{orders}  partitioned_table  owner=postgres"))
            && l.contains("[owner=payments]")),
        "{text}"
    );
    assert!(
        text.lines().last().unwrap().contains("resources:"),
        "{text}"
    );
    assert!(!text.contains("postgresql-role:"), "{text}");
}

#[test]
fn unreadable_databases_are_reported_and_discovery_goes_on() {
    let c = TempCluster::shared();
    let role = unique("cli_disc_connector_");
    let closed = unique("cli_disc_closed_");
    c.create_database(&closed).unwrap();
    c.psql(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'cli-secret';
         REVOKE CONNECT ON DATABASE {closed} FROM PUBLIC;"
    ))
    .unwrap();
    let dsn = c.conninfo(&role, "cli-secret", "postgres");

    let out = run(&["--format", "json", "discover", "--dsn", &dsn]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&closed) && err.contains("permission denied"),
        "{err}"
    );
    assert!(!err.contains("cli-secret"), "{err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let failure = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["database"] == closed.as_str())
        .unwrap();
    assert!(failure["class"].is_string() && failure["message"].is_string());
    assert!(
        v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == "postgresql-schema:postgres/public")
    );

    let out = run(&["--format", "ndjson", "discover", "--dsn", &dsn]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).lines().any(|l| {
        let v: Value = serde_json::from_str(l).unwrap();
        v["type"] == "error" && v["database"] == closed.as_str()
    }));
}

#[test]
fn a_config_selects_the_types() {
    let c = TempCluster::shared();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("integration.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"local\"\nhostname = \"{}\"\nport = {}\nssl_mode = \"require\"\n\
             discovery = [\"database\", \"role\"]\n",
            c.host(),
            c.port()
        ),
    )
    .unwrap();
    let out = pgwarden()
        .args(["--format", "json", "discover", "--config"])
        .arg(&path)
        .env("PGUSER", c.superuser())
        .env("PGPASSWORD", c.password())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let types: Vec<&str> = v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"database") && types.contains(&"role"));
    assert!(
        types.iter().all(|t| *t == "database" || *t == "role"),
        "{types:?}"
    );
}

#[test]
fn bad_arguments_exit_2_and_an_unreachable_server_exits_1() {
    let c = TempCluster::shared();
    let out = run(&["discover", "--dsn", &c.dsn(), "--types", "table,view"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("view"), "{}", stderr(&out));
    let out = run(&["discover", "--dsn", &c.dsn(), "--max-connections", "0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = run(&[
        "discover",
        "--dsn",
        "host=127.0.0.1 port=1 user=x sslmode=disable",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).starts_with("pgwarden: network error"),
        "{}",
        stderr(&out)
    );
    let out = run(&["discover"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
