//! `pgwarden check`: connects, reports, classifies failures by exit code.

use std::process::Output;

mod common;

use pgwarden_testkit::{SslSetup, TempCluster};

fn pgwarden(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = common::example("pgwarden");
    cmd.args(args).envs(env.iter().copied()).output().unwrap()
}

fn verify_full(c: &TempCluster) -> String {
    format!(
        "{} sslmode=verify-full sslrootcert='{}'",
        c.dsn().replace("127.0.0.1", "localhost"),
        c.tls().unwrap().ca_cert_path().display()
    )
}

#[test]
fn reports_server_tls_role_and_preflight() {
    let c = TempCluster::shared();
    let out = pgwarden(
        &["--format", "json", "check", "--dsn", &verify_full(c)],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["connected"], true);
    assert_eq!(v["tls"]["enabled"], true);
    assert!(
        v["tls"]["version"].as_str().unwrap().starts_with("TLSv1."),
        "{v}"
    );
    assert!(!v["tls"]["cipher"].as_str().unwrap().is_empty());
    assert!(
        v["server_version"]
            .as_str()
            .unwrap()
            .starts_with(char::is_numeric)
    );
    assert_eq!(v["role"]["superuser"], true);
    let preflight = v["preflight"].as_array().unwrap();
    assert!(preflight.iter().all(|c| c["ok"] == true), "{v}");

    // A non-superuser without CREATEROLE: connected (exit 0), but told it cannot provision.
    c.psql("DO $$ BEGIN CREATE ROLE weak LOGIN PASSWORD 'weak-pw'; EXCEPTION WHEN duplicate_object THEN NULL; END $$;").unwrap();
    let dsn = format!(
        "host=127.0.0.1 port={} user=weak dbname=postgres sslmode=disable",
        c.port()
    );
    let out = pgwarden(&["check", "--dsn", &dsn], &[("PGPASSWORD", "weak-pw")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(no TLS)"), "{text}");
    assert!(
        text.contains("FAIL provision: neither superuser nor CREATEROLE: cannot provision"),
        "{text}"
    );
}

#[test]
fn failures_exit_1_with_the_class_and_bad_settings_exit_2() {
    let c = TempCluster::shared();
    let wrong = format!(
        "host=127.0.0.1 port={} user={} password=nope-nope dbname=postgres",
        c.port(),
        c.superuser()
    );
    let out = pgwarden(&["check", "--dsn", &wrong], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("pgwarden: auth error: "), "{err}");
    assert!(!err.contains("nope-nope"), "{err}");

    let other = TempCluster::builder()
        .ssl(SslSetup::OtherCa)
        .start()
        .unwrap();
    let out = pgwarden(&["check", "--dsn", &verify_full(&other)], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("pgwarden: tls error: "));

    let out = pgwarden(
        &["check", "--dsn", &format!("{} sslmode=verify-ca", c.dsn())],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a root certificate"));

    let out = pgwarden(&["check", "--dsn", "host=a bogus=1"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = pgwarden(&["check"], &[]);
    assert_eq!(out.status.code(), Some(2));
}
