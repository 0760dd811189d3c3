//! Connections beyond the SSL-mode matrix: client certificates, channel binding,
//! classified errors, several hosts, the pool.

#![allow(clippy::too_many_lines, reason = "scenario code reads top to bottom")]

use std::sync::Arc;
use std::time::Duration;

use pgwarden_core::conninfo::ConnInfo;
use pgwarden_pg_driver::connect::{ConnectOptions, Connector};
use pgwarden_pg_driver::error::{AuthFailure, ConnectError, NetworkFailure, TlsFailure};
use pgwarden_pg_driver::pool::{Pool, PoolOptions};
use pgwarden_testkit::{HbaPolicy, SslSetup, TempCluster};

fn connector(s: &str) -> Result<Connector, ConnectError> {
    let info: ConnInfo = s.parse().expect("conninfo parses");
    Connector::new(&info, &ConnectOptions::default())
}

async fn connect(s: &str) -> Result<pgwarden_pg_driver::connect::Connection, ConnectError> {
    connector(s)?.connect().await
}

fn q(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn verify_full(cluster: &TempCluster) -> String {
    format!(
        "{} sslmode=verify-full sslrootcert={}",
        cluster.dsn().replace("127.0.0.1", "localhost"),
        q(&cluster.tls().unwrap().ca_cert_path().display().to_string())
    )
}

#[tokio::test]
async fn application_name_defaults_to_pgwarden() {
    let c = TempCluster::shared();
    let conn = connect(&c.dsn()).await.unwrap();
    let row = conn
        .query_one("SELECT current_setting('application_name')", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "pgwarden");
    let conn = connect(&format!("{} application_name=portal", c.dsn()))
        .await
        .unwrap();
    let row = conn
        .query_one("SELECT current_setting('application_name')", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "portal");
}

#[tokio::test]
async fn inline_pem_root_certificate() {
    let c = TempCluster::shared();
    let pem = c.tls().unwrap().ca_cert_pem();
    let s = format!("{} sslmode=verify-full sslrootcert={}", c.dsn(), q(pem));
    let conn = connect(&s).await.unwrap();
    assert!(conn.tls);
}

#[tokio::test]
async fn errors_are_classified_and_never_hold_the_password() {
    let c = TempCluster::shared();
    let wrong = c.dsn().replace(
        &format!("password={}", q(c.password())),
        "password='Wr0ng-S3cret'",
    );
    let wrong = if wrong == c.dsn() {
        format!("{} password='Wr0ng-S3cret'", c.dsn())
    } else {
        wrong
    };
    let e = connect(&wrong).await.unwrap_err();
    assert!(
        matches!(
            e,
            ConnectError::Auth {
                kind: AuthFailure::WrongPassword,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.class(), "auth");
    let text = format!("{e} {e:?}");
    assert!(!text.contains("Wr0ng-S3cret"), "{text}");
    assert!(text.contains("check the user name and password"), "{text}");

    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let e = connect(&format!(
        "host=127.0.0.1 port={port} user=x password=y sslmode=disable"
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            ConnectError::Network {
                kind: NetworkFailure::Unreachable,
                ..
            }
        ),
        "{e}"
    );

    // Bad settings are config errors, found before any traffic.
    let e = connect(&format!("{} sslmode=verify-ca", c.dsn()))
        .await
        .unwrap_err();
    assert!(e.is_config(), "{e}");
    assert!(e.to_string().contains("needs a root certificate"), "{e}");

    // A certificate for another name.
    let wrong_name = TempCluster::builder()
        .ssl(SslSetup::WrongName)
        .start()
        .unwrap();
    let e = connect(&verify_full(&wrong_name)).await.unwrap_err();
    assert!(
        matches!(
            e,
            ConnectError::Tls {
                kind: TlsFailure::HostnameMismatch,
                ..
            }
        ),
        "{e}"
    );
    // From an untrusted CA.
    let other_ca = TempCluster::builder()
        .ssl(SslSetup::OtherCa)
        .start()
        .unwrap();
    let e = connect(&verify_full(&other_ca)).await.unwrap_err();
    assert!(
        matches!(
            e,
            ConnectError::Tls {
                kind: TlsFailure::UntrustedCertificate,
                ..
            }
        ),
        "{e}"
    );
    // A server without TLS, TLS required.
    let plain = TempCluster::builder().start().unwrap();
    let e = connect(&format!("{} sslmode=require", plain.dsn()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ConnectError::Tls {
                kind: TlsFailure::ServerHasNoTls,
                ..
            }
        ),
        "{e}"
    );
    // pg_hba has no line for plaintext.
    let ssl_only = TempCluster::builder()
        .ssl(SslSetup::Valid)
        .hba(HbaPolicy::HostSslOnly)
        .start()
        .unwrap();
    let e = connect(&format!("{} sslmode=disable", ssl_only.dsn()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ConnectError::Auth {
                kind: AuthFailure::NoHbaEntry,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("pg_hba.conf"), "{e}");
}

#[tokio::test]
async fn client_certificate_authentication() {
    let c = TempCluster::builder()
        .ssl(SslSetup::Valid)
        .hba(HbaPolicy::ClientCert)
        .start()
        .unwrap();
    c.psql("CREATE ROLE certuser LOGIN").unwrap();
    let tls = c.tls().unwrap();
    let ca = q(&tls.ca_cert_path().display().to_string());
    let base = format!(
        "host=localhost port={} user=certuser dbname=postgres sslmode=verify-full sslrootcert={ca}",
        c.port()
    );

    // Files.
    let good = tls.client_cert("certuser").unwrap();
    let conn = connect(&format!("{base} {}", good.conninfo()))
        .await
        .unwrap();
    let row = conn
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "certuser");
    // Inline PEM.
    let inline = format!(
        "{base} sslcert={} sslkey={}",
        q(good.cert_pem()),
        q(good.key_pem())
    );
    connect(&inline).await.unwrap();
    // No certificate: refused.
    let e = connect(&base).await.unwrap_err();
    assert!(matches!(e.class(), "tls" | "auth"), "{e}");
    // A certificate from another CA: refused by the server's TLS layer.
    let other = tls.client_cert_from_other_ca("certuser").unwrap();
    let e = connect(&format!("{base} {}", other.conninfo()))
        .await
        .unwrap_err();
    assert!(matches!(e.class(), "tls" | "auth"), "{e}");
    // A certificate for another role: refused by authentication.
    let alice = tls.client_cert("alice").unwrap();
    let e = connect(&format!("{base} {}", alice.conninfo()))
        .await
        .unwrap_err();
    assert!(matches!(e.class(), "tls" | "auth"), "{e}");
}

#[tokio::test]
async fn key_file_permissions_follow_libpq() {
    use std::os::unix::fs::PermissionsExt;
    let c = TempCluster::shared();
    let cert = c.tls().unwrap().client_cert("x").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("open.key");
    std::fs::write(&key, cert.key_pem()).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let s = format!(
        "{} sslmode=require sslcert={} sslkey={}",
        c.dsn(),
        q(&cert.cert_path().display().to_string()),
        q(&key.display().to_string())
    );
    let e = connector(&s).unwrap_err().to_string();
    assert!(e.contains("has group or world access"), "{e}");
}

#[tokio::test]
async fn channel_binding() {
    let c = TempCluster::shared();
    let conn = connect(&format!("{} channel_binding=require", verify_full(c)))
        .await
        .unwrap();
    assert!(conn.tls);
    let e = connect(&format!(
        "{} sslmode=disable channel_binding=require",
        c.dsn()
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            ConnectError::Auth {
                kind: AuthFailure::ChannelBinding,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("channel_binding=require needs TLS"),
        "{e}"
    );
}

#[tokio::test]
async fn several_hosts_are_tried_in_order() {
    let c = TempCluster::shared();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().port();
    drop(closed);
    let s = format!(
        "host=127.0.0.1,localhost port={dead},{} user={} password={} dbname=postgres sslmode=disable",
        c.port(),
        q(c.superuser()),
        q(c.password())
    );
    let conn = connect(&s).await.unwrap();
    assert_eq!(conn.target, format!("localhost:{}", c.port()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_serves_32_tasks_with_4_connections_and_survives_a_restart() {
    let c = TempCluster::builder().ssl(SslSetup::Valid).start().unwrap();
    let pool = Pool::new(
        connector(&verify_full(&c)).unwrap(),
        &PoolOptions {
            max_size: 4,
            ..PoolOptions::default()
        },
    )
    .unwrap();
    let pool = Arc::new(pool);
    let run_tasks = |pool: Arc<Pool>| async move {
        let mut tasks = Vec::new();
        for i in 0..32_i32 {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                let conn = pool.get().await.unwrap();
                let row = conn
                    .query_one(
                        "SELECT $1::int + 1, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                        &[&i],
                    )
                    .await
                    .unwrap();
                assert_eq!(row.get::<_, i32>(0), i + 1);
                assert!(row.get::<_, bool>(1), "pooled connection is not TLS");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    };
    run_tasks(pool.clone()).await;
    let status = pool.status();
    assert!(status.size <= 4, "{status:?}");
    let backends = c
        .psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgwarden'")
        .unwrap();
    assert!(backends.trim().parse::<i32>().unwrap() <= 4, "{backends}");

    let c2 = &c;
    tokio::task::block_in_place(|| c2.restart().unwrap());
    run_tasks(pool.clone()).await;
    let health = pool.health_check().await.unwrap();
    assert!(
        health.server_version.starts_with(char::is_numeric),
        "{health:?}"
    );
}

/// The settings are accepted or refused as libpq does; a direct attempt against the
/// shared cluster connects on 17+ and, before 17, fails as a classified error that
/// names the cause rather than hanging (`direct_tls.rs` covers both for real).
#[tokio::test]
async fn direct_negotiation_settings() {
    let c = TempCluster::shared();
    for weak in ["disable", "allow", "prefer"] {
        let s = format!("{} sslnegotiation=direct sslmode={weak}", c.dsn());
        assert!(s.parse::<ConnInfo>().is_err(), "parsing validates too");
        let info = ConnInfo::parse_unvalidated(&s).unwrap();
        let e = Connector::new(&info, &ConnectOptions::default()).unwrap_err();
        assert!(e.is_config(), "{e}");
        assert!(e.to_string().contains("sslnegotiation=direct"), "{e}");
    }
    let direct = connector(&format!(
        "{} sslnegotiation=direct sslmode=require connect_timeout=5",
        c.dsn()
    ))
    .unwrap();
    if c.server_major() >= 17 {
        assert!(direct.connect().await.unwrap().tls);
    } else {
        let e = direct.connect().await.unwrap_err();
        assert!(matches!(e.class(), "tls" | "network"), "{e}");
        assert!(e.to_string().contains("needs PostgreSQL 17"), "{e}");
    }
}
