//! The `pgwarden` binary: exit codes, output, and `conninfo` against libpq.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

mod common;

fn pgwarden() -> Command {
    common::pgwarden()
}

fn run(args: &[&str]) -> Output {
    pgwarden().args(args).output().unwrap()
}

fn example_config() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/integration.toml")
        .display()
        .to_string()
}

#[test]
fn validate_accepts_the_shipped_config() {
    let out = run(&["validate", "--config", &example_config()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("orders-prod: valid"));
    let out = run(&[
        "--format",
        "json",
        "validate",
        "--config",
        &example_config(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["config"]["ssl_mode"], "verify-full");
}

#[test]
fn validate_lists_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "name: bad name\nhostname: db\nport: 0\nmax_ttl: forever\ncolour: red\n",
    )
    .unwrap();
    let out = run(&["validate", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("pgwarden: "), "{err}");
    assert!(err.contains("(4 problems)"), "{err}");
    for field in ["name:", "port:", "max_ttl:", "colour:"] {
        assert!(err.contains(field), "{field} missing: {err}");
    }
    let out = run(&[
        "--format",
        "json",
        "validate",
        "--config",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["problems"].as_array().unwrap().len(), 4);
    // A missing file and a missing argument are usage errors too.
    assert_eq!(
        run(&["validate", "--config", "/nonexistent.toml"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(run(&["validate"]).status.code(), Some(2));
}

#[test]
fn validate_checks_the_access_flows_the_config_names() {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows).unwrap();
    let flow = |name: &str, integration: &str, duration: &str| {
        format!(
            "name = \"{name}\"\ntrigger = \"self_serve\"\ngrant_duration = \"{duration}\"\n\
             requestors = {{ conditions = [{{ type = \"user\", source = \"okta\", values = [\"alice\"] }}] }}\n\
             access_targets = [{{ integration = \"{integration}\", resource_type = \"postgresql-schema\", permissions = [\"read-only\"] }}]\n"
        )
    };
    std::fs::write(flows.join("long.toml"), flow("long", "app", "2d")).unwrap();
    std::fs::write(flows.join("fine.toml"), flow("fine", "app", "1h")).unwrap();
    let config = dir.path().join("app.toml");
    let write_config = |integration: &str| {
        std::fs::write(
            &config,
            format!(
                "name = \"{integration}\"\nhostname = \"db\"\nmax_ttl = \"8h\"\n\
                 [access_requests]\nflows = \"flows\"\n"
            ),
        )
        .unwrap();
    };
    // A flow longer than max_ttl is named; the path is relative to the config file.
    write_config("app");
    let out = run(&["validate", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("long: grant_duration: 2d is longer than"),
        "{err}"
    );
    assert!(!err.contains("fine"), "{err}");
    // No flow for this integration: every request would be refused.
    write_config("other");
    let out = run(&["validate", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no flow has an access target on integration other")
    );
    // A broken flow file is reported with its file.
    std::fs::write(flows.join("long.toml"), flow("long", "app", "1h")).unwrap();
    std::fs::write(flows.join("bad.toml"), "name = \"bad\"\n").unwrap();
    write_config("app");
    let out = run(&["validate", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.toml: "),
        "{out:?}"
    );
    std::fs::remove_file(flows.join("bad.toml")).unwrap();
    let out = run(&["validate", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

/// libpq's `PQconninfoParse` through the core crate's oracle script, or `None`
/// when python3/libpq are missing (CI requires them).
fn libpq_parse(strings: &[&str]) -> Option<Vec<serde_json::Value>> {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../core/tests/oracle/libpq_oracle.py");
    let request = serde_json::json!({ "parse": strings, "validate": [], "defaults": [] });
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    serde_json::to_writer(child.stdin.take().unwrap(), &request).unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        let required = std::env::var("PGWARDEN_REQUIRE_LIBPQ_ORACLE").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "libpq oracle failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "skipping: libpq oracle unavailable: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Some(answer["parse"].as_array().unwrap().clone())
}

#[test]
fn conninfo_prints_what_libpq_parses() {
    let strings = [
        "host=db port=5433 dbname=app user=alice password=secret",
        "host = 'my host' options='-c search_path=a\\'b'",
        "postgresql://alice:s%40cret@[::1]:5433,db2/app?sslmode=require&application_name=x",
        "postgres://db/%E2%98%83?connect_timeout=10",
        "postgresql:///app?host=/var/run/postgresql",
        "host=a keepalives=0 target_session_attrs=read-write",
        "postgresql://h?ssl=true",
        "host",
        "host=a bogus=1",
        "host='unterminated",
        "postgresql://h?sslmode",
    ];
    let Some(oracle) = libpq_parse(&strings) else {
        return;
    };
    for (s, want) in strings.iter().zip(oracle) {
        let out = run(&["conninfo", "--parse-only", s]);
        if let Some(ok) = want.get("ok") {
            assert_eq!(out.status.code(), Some(0), "{s}: {out:?}");
            let mut want = ok.clone();
            if want.get("password").is_some() {
                want["password"] = "***".into();
            }
            let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(got, want, "{s}");
        } else {
            assert_eq!(out.status.code(), Some(2), "{s}: libpq rejects it: {want}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.starts_with("pgwarden: invalid connection string: "),
                "{err}"
            );
            assert!(!err.contains("secret"), "{err}");
        }
    }
    // Without --parse-only, values are checked as libpq checks them when connecting.
    let out = run(&["conninfo", "host=a sslmode=bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid sslmode value: \"bogus\""));
}
