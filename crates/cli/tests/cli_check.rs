//! `pgwarden check`: connects, reports, classifies failures by exit code.

use std::process::Output;

mod common;

use pgwarden_testkit::{SslSetup, TempCluster};

fn pgwarden(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = common::pgwarden();
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

#[test]
fn createrole_mode_states_what_it_cannot_do() {
    let c = TempCluster::shared();
    c.psql("DO $$ BEGIN CREATE ROLE cloud_check LOGIN CREATEROLE CREATEDB PASSWORD 'cloud-pw'; EXCEPTION WHEN duplicate_object THEN NULL; END $$;").unwrap();
    let dsn = format!(
        "host=127.0.0.1 port={} user=cloud_check dbname=postgres sslmode=disable",
        c.port()
    );
    let env = [("PGPASSWORD", "cloud-pw")];
    let out = pgwarden(&["check", "--dsn", &dsn], &env);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL mode: connector_mode superuser, but cloud_check is not a superuser"),
        "{text}"
    );
    let out = pgwarden(
        &["check", "--dsn", &dsn, "--connector-mode", "createrole"],
        &env,
    );
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("preflight (connector_mode createrole)"),
        "{text}"
    );
    assert!(
        text.contains("ok   mode: connector_mode createrole"),
        "{text}"
    );
    assert!(text.contains("LIMIT grant_on_objects"), "{text}");
    assert!(text.contains("never a superuser's session"), "{text}");
    let out = pgwarden(&["check", "--dsn", &dsn, "--connector-mode", "rds"], &env);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("valid: superuser, createrole"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A loopback proxy recording the first byte each client sends, on a thread; bounded to
/// a few connections.
fn first_byte_recorder(server_port: u16) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().take(4).flatten() {
            let record = record.clone();
            std::thread::spawn(move || {
                let mut client = client;
                let mut first = [0u8; 1];
                if client.read_exact(&mut first).is_err() {
                    return;
                }
                record.lock().unwrap().push(first[0]);
                let Ok(mut server) = std::net::TcpStream::connect(("127.0.0.1", server_port))
                else {
                    return;
                };
                if server.write_all(&first).is_err() {
                    return;
                }
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let up = std::thread::spawn(move || std::io::copy(&mut c2, &mut server));
                let _ = std::io::copy(&mut s2, &mut client);
                let _ = up.join();
            });
        }
    });
    (port, seen)
}

/// `check --dsn … sslnegotiation=direct`: TLS from the first byte against PostgreSQL 17;
/// against 16, exit 1 with a message naming the cause.
#[test]
fn check_connects_over_direct_tls_on_17_and_explains_16() {
    use pgwarden_testkit::PgVersion;
    let direct = |c: &TempCluster, port: u16| {
        format!(
            "host=localhost port={port} user={} password={} dbname=postgres sslmode=verify-full sslrootcert='{}' sslnegotiation=direct connect_timeout=10",
            c.superuser(),
            c.password(),
            c.tls().unwrap().ca_cert_path().display()
        )
    };
    let v17 = TempCluster::builder()
        .pg_version(PgVersion::Major(17))
        .ssl(SslSetup::Valid)
        .start()
        .unwrap();
    let (port, seen) = first_byte_recorder(v17.port());
    let out = pgwarden(
        &["--format", "json", "check", "--dsn", &direct(&v17, port)],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tls"]["enabled"], true, "{v}");
    assert!(v["server_version_num"].as_i64().unwrap() >= 170_000, "{v}");
    assert_eq!(*seen.lock().unwrap(), vec![0x16], "a TLS record first");

    let v16 = TempCluster::builder()
        .pg_version(PgVersion::Major(16))
        .ssl(SslSetup::Valid)
        .start()
        .unwrap();
    let out = pgwarden(&["check", "--dsn", &direct(&v16, v16.port())], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sslnegotiation=direct needs PostgreSQL 17 or later"),
        "{err}"
    );
    assert!(!err.contains(v16.password()), "{err}");
}
