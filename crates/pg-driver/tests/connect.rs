//! Connections beyond the SSL-mode matrix: client certificates, channel binding,
//! classified errors, several hosts, the pool.

#![allow(clippy::too_many_lines, reason = "scenario code reads top to bottom")]

use std::sync::Arc;
use std::time::Duration;

use pgwarden_core::conninfo::ConnInfo;
use pgwarden_pg_driver::{AuthFailure, ConnectError, NetworkFailure, TlsFailure};
use pgwarden_pg_driver::{ConnectOptions, Connector};
use pgwarden_pg_driver::{Pool, PoolOptions};
use pgwarden_testkit::{HbaPolicy, SslSetup, TempCluster};

fn connector(s: &str) -> Result<Connector, ConnectError> {
    let info: ConnInfo = s.parse().expect("conninfo parses");
    Connector::new(&info, &ConnectOptions::default())
}

async fn connect(s: &str) -> Result<pgwarden_pg_driver::Connection, ConnectError> {
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

/// `keepalives*` and `tcp_user_timeout` reach the driver in libpq's units (seconds;
/// milliseconds for `tcp_user_timeout`), and the same strings behave as with `psql`.
#[tokio::test]
async fn tcp_options_are_applied_as_libpq_applies_them() {
    let c = TempCluster::shared();
    let s = format!(
        "{} keepalives_idle=30 keepalives_interval=5 keepalives_count=3 tcp_user_timeout=1500",
        c.dsn()
    );
    let k = connector(&s).unwrap();
    let config = k.base_config();
    assert!(config.get_keepalives());
    assert_eq!(config.get_keepalives_idle(), Duration::from_secs(30));
    assert_eq!(
        config.get_keepalives_interval(),
        Some(Duration::from_secs(5))
    );
    assert_eq!(config.get_keepalives_retries(), Some(3));
    assert_eq!(
        config.get_tcp_user_timeout(),
        Some(&Duration::from_millis(1500))
    );
    // Real sockets accept them, as libpq's do.
    k.connect().await.unwrap();
    c.psql_with(&s, "SELECT 1").unwrap();

    // A negative tcp_user_timeout is 0, the system default.
    let k = connector(&format!("{} tcp_user_timeout=-5", c.dsn())).unwrap();
    assert_eq!(
        k.base_config().get_tcp_user_timeout(),
        Some(&Duration::ZERO)
    );

    // keepalives=0: libpq sets none of them, not even tcp_user_timeout, and does not
    // mind values it would otherwise refuse.
    let s = format!(
        "{} keepalives=0 keepalives_idle=0 tcp_user_timeout=1500",
        c.dsn()
    );
    let k = connector(&s).unwrap();
    assert!(!k.base_config().get_keepalives());
    assert_eq!(k.base_config().get_tcp_user_timeout(), None);
    k.connect().await.unwrap();
    c.psql_with(&s, "SELECT 1").unwrap();

    // Values the kernel rejects: libpq fails every TCP connection, pgwarden refuses them
    // up front, naming the option.
    for (setting, socket_option) in [
        ("keepalives_idle=0", "TCP_KEEPIDLE"),
        ("keepalives_idle=32768", "TCP_KEEPIDLE"),
        ("keepalives_interval=-1", "TCP_KEEPINTVL"),
        ("keepalives_count=0", "TCP_KEEPCNT"),
        ("keepalives_count=128", "TCP_KEEPCNT"),
    ] {
        let s = format!("{} {setting}", c.dsn());
        let e = connector(&s).unwrap_err();
        assert!(e.is_config(), "{e}");
        assert!(e.to_string().contains(setting), "{e}");
        let libpq = c.psql_with(&s, "SELECT 1").unwrap_err().to_string();
        assert!(libpq.contains(socket_option), "{setting}: {libpq}");
    }
    // libpq sets none of them on a Unix socket.
    let s = format!("{} keepalives_idle=0", c.socket_conninfo("postgres"));
    connect(&s).await.unwrap();
    c.psql_with(&s, "SELECT 1").unwrap();
}

/// What pgwarden cannot do as libpq does is refused, naming the option, before any
/// traffic; the rest of those options behave as with a libpq without GSSAPI.
#[tokio::test]
async fn options_pgwarden_cannot_honour_are_refused_by_name() {
    let c = TempCluster::shared();
    for (setting, keyword) in [
        ("require_auth=scram-sha-256", "require_auth"),
        ("require_auth=!password,!md5", "require_auth"),
        ("require_auth=none", "require_auth"),
        (
            "require_auth=md5,password channel_binding=require",
            "require_auth",
        ),
        ("gssencmode=require", "gssencmode"),
        (
            "sslmode=verify-full sslrootcert=system sslcrl=/nonexistent.crl",
            "sslcrl",
        ),
        (
            "sslmode=verify-full sslrootcert=system sslcrldir=/nonexistent",
            "sslcrldir",
        ),
    ] {
        let e = connector(&format!("{} {setting}", c.dsn())).unwrap_err();
        assert!(e.is_config(), "{setting}: {e}");
        let text = format!("{e} {e:?}");
        assert!(text.contains(keyword), "{setting}: {text}");
        assert!(!text.contains(c.password()), "{text}");
    }
    let e = connector(&format!(
        "{} requirepeer=postgres",
        c.socket_conninfo("postgres")
    ))
    .unwrap_err();
    assert!(e.is_config(), "{e}");
    assert!(e.to_string().contains("requirepeer"), "{e}");

    // libpq applies requirepeer to Unix sockets only; gssencmode=prefer/disable without
    // GSSAPI is a normal connection. Both connect, as with psql.
    for setting in [
        "requirepeer=nobody",
        "gssencmode=prefer",
        "gssencmode=disable",
    ] {
        let s = format!("{} {setting}", c.dsn());
        connect(&s).await.unwrap();
        c.psql_with(&s, "SELECT 1").unwrap();
    }
}

/// `channel_binding=require` limits authentication to SCRAM-SHA-256-PLUS, so a
/// `require_auth` list that allows SCRAM holds and is accepted.
#[tokio::test]
async fn require_auth_holds_with_channel_binding_require() {
    let c = TempCluster::shared();
    for list in ["scram-sha-256", "!password,!md5", "md5,scram-sha-256"] {
        let s = format!(
            "{} channel_binding=require require_auth={list}",
            verify_full(c)
        );
        assert!(connect(&s).await.unwrap().tls, "{list}");
    }
}

/// `connect_timeout` ends an attempt on a server that accepts the TCP connection but never
/// answers (at least 2 s, as libpq) and moves on to the next host, as `psql` does.
#[tokio::test]
async fn a_silent_host_times_out_and_the_next_host_is_tried() {
    let c = TempCluster::shared();
    // Never accepted, never read: the kernel completes the TCP handshake anyway.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let s = format!(
        "host=127.0.0.1,127.0.0.1 port={port},{} user={} password={} dbname=postgres connect_timeout=1",
        c.port(),
        q(c.superuser()),
        q(c.password())
    );
    let started = std::time::Instant::now();
    let conn = tokio::time::timeout(Duration::from_secs(20), connect(&s))
        .await
        .expect("connect_timeout bounds the attempt")
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(conn.target, format!("127.0.0.1:{}", c.port()));
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    let started = std::time::Instant::now();
    c.psql_with(&s, "SELECT 1").unwrap();
    assert!(started.elapsed() >= Duration::from_millis(1900));
    drop(silent);
}

/// Runs `openssl` in `dir`, panicking with its output on failure.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line tool is needed for the CRL tests");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const OPENSSL_CA_CONFIG: &str = "[ ca ]
default_ca = ca_default
[ ca_default ]
database = index.txt
crlnumber = crlnumber
default_md = sha256
default_crl_days = 30
[ v3_ca ]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ v3_server ]
basicConstraints = CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
authorityKeyIdentifier = keyid
";

/// A CA made with `openssl` in `dir`, able to issue and revoke and to write CRLs.
fn openssl_ca(dir: &std::path::Path, name: &str) {
    std::fs::write(dir.join("ca.cnf"), OPENSSL_CA_CONFIG).unwrap();
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("crlnumber"), "01\n").unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "30",
            "-config",
            "ca.cnf",
            "-extensions",
            "v3_ca",
            "-subj",
        ]
        .into_iter()
        .chain([format!("/CN={name}").as_str()])
        .collect::<Vec<_>>(),
    );
}

fn openssl_crl(dir: &std::path::Path, out: &str, extra: &[&str]) {
    let mut args = vec![
        "ca", "-config", "ca.cnf", "-gencrl", "-keyfile", "ca.key", "-cert", "ca.crt", "-out", out,
    ];
    args.extend_from_slice(extra);
    openssl(dir, &args);
}

/// `sslcrl`/`sslcrldir` against a real server whose certificate a CRL revokes, each case
/// compared with `psql` (libpq with OpenSSL): revoked, not revoked, missing, no CRL
/// from the issuer, expired, hashed directories, the default `~/.postgresql/root.crl`;
/// and the setups libpq would mishandle are refused.
#[tokio::test]
async fn revocation_lists_are_checked_as_libpq_checks_them() {
    use std::os::unix::fs::PermissionsExt;
    let c = TempCluster::builder().ssl(SslSetup::Valid).start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The server must read the certificate: a world-readable directory.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ca_dir = dir.join("ca");
    let other_dir = dir.join("other");
    std::fs::create_dir(&ca_dir).unwrap();
    std::fs::create_dir(&other_dir).unwrap();
    openssl_ca(&ca_dir, "pgwarden CRL test CA");
    openssl_ca(&other_dir, "pgwarden CRL other CA");
    openssl_crl(&other_dir, "other.crl", &[]);

    // A certificate from our CA for the key the server already has.
    let tls = c.tls().unwrap();
    std::fs::copy(tls.server_cert_path(), ca_dir.join("testkit.crt")).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["x509", "-in", "testkit.crt", "-pubkey", "-noout"])
        .current_dir(&ca_dir)
        .output()
        .unwrap();
    std::fs::write(ca_dir.join("server.pub"), out.stdout).unwrap();
    openssl(
        &ca_dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "throwaway.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    openssl(
        &ca_dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-force_pubkey",
            "server.pub",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "0x1234",
            "-days",
            "30",
            "-extfile",
            "ca.cnf",
            "-extensions",
            "v3_server",
            "-out",
            "server.crt",
        ],
    );
    for f in ["server.crt", "ca.crt"] {
        std::fs::set_permissions(ca_dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(&ca_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    openssl_crl(&ca_dir, "empty.crl", &[]);
    openssl(
        &ca_dir,
        &[
            "ca",
            "-config",
            "ca.cnf",
            "-revoke",
            "server.crt",
            "-keyfile",
            "ca.key",
            "-cert",
            "ca.crt",
        ],
    );
    openssl_crl(&ca_dir, "revoked.crl", &[]);
    openssl_crl(&ca_dir, "expired.crl", &["-crlsec", "1"]);
    for (sub, crl) in [
        ("hashed-revoked", "revoked.crl"),
        ("hashed-empty", "empty.crl"),
    ] {
        let d = ca_dir.join(sub);
        std::fs::create_dir(&d).unwrap();
        std::fs::copy(ca_dir.join(crl), d.join("crl.pem")).unwrap();
        openssl(&d, &["rehash", "."]);
    }

    // The server presents it from now on.
    let cert = ca_dir.join("server.crt").display().to_string();
    c.psql(&format!(
        "ALTER SYSTEM SET ssl_cert_file = '{cert}';\nSELECT pg_reload_conf();"
    ))
    .unwrap();
    let path = |name: &str| q(&ca_dir.join(name).display().to_string());
    let base = format!("{} sslrootcert={}", c.dsn(), path("ca.crt"));
    let mut served = false;
    for _ in 0..50 {
        if connect(&format!("{base} sslmode=verify-ca")).await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "the server does not present the new certificate");
    // Past the expired CRL's nextUpdate.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let other = q(&other_dir.join("other.crl").display().to_string());
    let revoked = [
        format!("sslmode=verify-ca sslcrl={}", path("revoked.crl")),
        format!("sslmode=verify-full sslcrl={}", path("revoked.crl")),
        // A root certificate makes libpq check the chain in require too.
        format!("sslmode=require sslcrl={}", path("revoked.crl")),
        format!("sslmode=verify-ca sslcrldir={}", path("hashed-revoked")),
        // No CRL from the server certificate's issuer: its status is unknown.
        format!("sslmode=verify-ca sslcrl={other}"),
        format!("sslmode=verify-ca sslcrl={}", path("expired.crl")),
    ];
    for setting in &revoked {
        let s = format!("{base} {setting}");
        let e = connect(&s).await.unwrap_err();
        assert!(
            matches!(
                e,
                ConnectError::Tls {
                    kind: TlsFailure::Revoked,
                    ..
                }
            ),
            "{setting}: {e}"
        );
        let libpq = c.psql_with(&s, "SELECT 1").unwrap_err().to_string();
        assert!(
            libpq.contains("certificate verify failed"),
            "{setting}: {libpq}"
        );
    }
    let accepted = [
        format!("sslmode=verify-ca sslcrl={}", path("empty.crl")),
        format!("sslmode=verify-full sslcrl={}", path("empty.crl")),
        format!("sslmode=verify-ca sslcrldir={}", path("hashed-empty")),
        format!(
            "sslmode=verify-ca sslcrl={} sslcrldir={}",
            path("empty.crl"),
            path("nonexistent")
        ),
        // libpq ignores a CRL file that does not exist.
        format!("sslmode=verify-ca sslcrl={}", path("nonexistent.crl")),
    ];
    for setting in &accepted {
        let s = format!("{base} {setting}");
        assert!(connect(&s).await.unwrap().tls, "{setting}");
        c.psql_with(&s, "SELECT 1").unwrap();
    }
    // prefer falls back to plaintext when the certificate is revoked, as libpq does.
    let s = format!("{base} sslmode=prefer sslcrl={}", path("revoked.crl"));
    assert!(!connect(&s).await.unwrap().tls);
    c.psql_with(&s, "SELECT 1").unwrap();

    // libpq's default CRL file, ~/.postgresql/root.crl.
    let home = dir.join("home");
    std::fs::create_dir_all(home.join(".postgresql")).unwrap();
    std::fs::copy(
        ca_dir.join("revoked.crl"),
        home.join(".postgresql/root.crl"),
    )
    .unwrap();
    let options = ConnectOptions {
        home_dir: Some(home),
        ..ConnectOptions::default()
    };
    let info: ConnInfo = format!("{base} sslmode=verify-ca").parse().unwrap();
    let e = Connector::new(&info, &options)
        .unwrap()
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ConnectError::Tls {
                kind: TlsFailure::Revoked,
                ..
            }
        ),
        "{e}"
    );

    // Refused: what libpq would turn into "every certificate fails" or silently drop.
    std::fs::create_dir(ca_dir.join("empty-dir")).unwrap();
    for (setting, keyword, libpq_connects) in [
        (
            format!("sslcrldir={}", path("nonexistent")),
            "sslcrldir",
            false,
        ),
        (
            format!("sslcrldir={}", path("empty-dir")),
            "sslcrldir",
            false,
        ),
        (format!("sslcrl={}", path("ca.crt")), "sslcrl", false),
        (
            format!(
                "sslcrl={} sslcrldir={}",
                path("nonexistent.crl"),
                path("hashed-revoked")
            ),
            "sslcrl",
            true,
        ),
    ] {
        let s = format!("{base} sslmode=verify-ca {setting}");
        let e = connector(&s).unwrap_err();
        assert!(e.is_config(), "{setting}: {e}");
        assert!(e.to_string().contains(keyword), "{setting}: {e}");
        // In every mode: falling back to plaintext would ignore the refusal.
        let e = connector(&format!("{base} sslmode=prefer {setting}")).unwrap_err();
        assert!(e.is_config(), "{setting}: {e}");
        assert_eq!(
            c.psql_with(&s, "SELECT 1").is_ok(),
            libpq_connects,
            "{setting}"
        );
    }
}

/// A fake server that counts who connects to it and either hangs up at once or answers
/// the start-up packet with a `FATAL` error (after `N` to an SSL or GSS encryption
/// request, as a server without them does).
struct FakeServer {
    port: u16,
    count: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    /// A server that is starting up: `FATAL 57P03 the database system is starting up`,
    /// which libpq (and pgwarden) take as "try the next host".
    fn starting_up() -> Self {
        Self::start(Some(("57P03", "the database system is starting up")))
    }

    /// A server that answers with `FATAL <code> <message>`.
    fn answering(code: &'static str, message: &'static str) -> Self {
        Self::start(Some((code, message)))
    }

    /// A server that accepts the connection and closes it at once.
    fn hanging_up() -> Self {
        Self::start(None)
    }

    fn start(error: Option<(&'static str, &'static str)>) -> Self {
        use std::io::{Read as _, Write as _};
        use std::sync::atomic::Ordering;
        const SSL_REQUEST: u32 = 80_877_103;
        const GSSENC_REQUEST: u32 = 80_877_104;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reply = error.map(|(code, message)| {
            let mut reply = Vec::new();
            for (field, value) in [
                (b'S', "FATAL"),
                (b'V', "FATAL"),
                (b'C', code),
                (b'M', message),
            ] {
                reply.push(field);
                reply.extend_from_slice(value.as_bytes());
                reply.push(0);
            }
            reply.push(0);
            let length = u32::try_from(reply.len() + 4).unwrap().to_be_bytes();
            [&b"E"[..], &length, &reply].concat()
        });
        let thread = std::thread::spawn({
            let (count, stop) = (count.clone(), stop.clone());
            move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut stream) = stream else { continue };
                    // Counted before the client can see the answer.
                    count.fetch_add(1, Ordering::SeqCst);
                    let Some(reply) = &reply else {
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    loop {
                        let mut length = [0; 4];
                        if stream.read_exact(&mut length).is_err() {
                            break;
                        }
                        let mut rest =
                            vec![0; (u32::from_be_bytes(length) as usize).saturating_sub(4)];
                        if stream.read_exact(&mut rest).is_err() {
                            break;
                        }
                        let request = rest
                            .get(..4)
                            .map(|code| u32::from_be_bytes(code.try_into().unwrap()));
                        if rest.len() == 4 && matches!(request, Some(SSL_REQUEST | GSSENC_REQUEST))
                        {
                            if stream.write_all(b"N").is_err() {
                                break;
                            }
                            continue;
                        }
                        let _ = stream.write_all(reply);
                        break;
                    }
                }
            }
        });
        FakeServer {
            port,
            count,
            stop,
            thread: Some(thread),
        }
    }

    /// How many connections came since the last call.
    fn take(&self) -> usize {
        self.count.swap(0, std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accept loop up.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Connects `attempts` times with libpq 16 or later (the first version with
/// `load_balance_hosts`; the machine's `psql` may be older), loaded with Python's `ctypes`
/// from the system or the testkit's PostgreSQL cache. Each attempt yields `Ok(port)` or
/// `Err(message)`; `None` when no such libpq (or no python3) is found.
fn with_libpq_16(conninfo: &str, attempts: usize) -> Option<Vec<Result<String, String>>> {
    use std::io::Write as _;
    const SCRIPT: &str = r#"
import ctypes, sys
lib = None
for path in sys.argv[2:]:
    try:
        candidate = ctypes.CDLL(path)
    except OSError:
        continue
    if candidate.PQlibVersion() >= 160000 and (lib is None or candidate.PQlibVersion() > lib.PQlibVersion()):
        lib = candidate
if lib is None:
    print("none")
    sys.exit(0)
lib.PQconnectdb.restype = ctypes.c_void_p
lib.PQconnectdb.argtypes = [ctypes.c_char_p]
for f in ("PQstatus", "PQfinish"):
    getattr(lib, f).argtypes = [ctypes.c_void_p]
for f in ("PQport", "PQerrorMessage"):
    getattr(lib, f).argtypes = [ctypes.c_void_p]
    getattr(lib, f).restype = ctypes.c_char_p
print("libpq", lib.PQlibVersion())
conninfo = sys.stdin.read().encode()
for _ in range(int(sys.argv[1])):
    conn = lib.PQconnectdb(conninfo)
    if lib.PQstatus(conn) == 0:
        print("ok", lib.PQport(conn).decode())
    else:
        print("error", lib.PQerrorMessage(conn).decode().replace("\n", " "))
    lib.PQfinish(conn)
"#;
    let mut candidates = vec!["libpq.so.5".to_owned()];
    let cache = pgwarden_testkit::pg_cache_dir().ok();
    if let Some(entries) = cache.and_then(|d| std::fs::read_dir(d).ok()) {
        for entry in entries.flatten() {
            let lib = entry.path().join("native/lib/libpq.so.5");
            if lib.exists() {
                candidates.push(lib.display().to_string());
            }
        }
    }
    let mut command = std::process::Command::new("python3");
    command
        .arg("-c")
        .arg(SCRIPT)
        .arg(attempts.to_string())
        .args(&candidates)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            command.env_remove(name);
        }
    }
    let mut child = command.spawn().ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conninfo.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let mut lines = text.lines();
    let first = lines.next()?;
    if first == "none" {
        return None;
    }
    eprintln!("comparing with {first}");
    Some(
        lines
            .map(|line| match line.split_once(' ') {
                Some(("ok", port)) => Ok(port.to_owned()),
                _ => Err(line.to_owned()),
            })
            .collect(),
    )
}

/// `load_balance_hosts=random` tries the hosts in a new random order for every connection,
/// as libpq does: with a dead host (nothing listens) and a live one every connection
/// succeeds; with a host that is starting up (so that attempts on it can be counted) and a
/// live one, both orders occur — for pgwarden and, where the machine has libpq 16 or
/// later, for libpq. `disable` keeps the list order.
#[tokio::test]
async fn load_balance_hosts_random_shuffles_the_hosts_for_every_connection() {
    const ATTEMPTS: usize = 20;
    let c = TempCluster::shared();
    let starting = FakeServer::starting_up();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().port();
    drop(closed);
    let auth = format!(
        "user={} password={} dbname=postgres sslmode=disable connect_timeout=5",
        q(c.superuser()),
        q(c.password())
    );
    let hosts = |first: u16| format!("host=127.0.0.1,127.0.0.1 port={first},{} {auth}", c.port());
    let live = format!("127.0.0.1:{}", c.port());

    // disable (the default): the list order, so the first host is tried every time.
    for s in [
        hosts(starting.port),
        format!("{} load_balance_hosts=disable", hosts(starting.port)),
    ] {
        let k = connector(&s).unwrap();
        for _ in 0..5 {
            assert_eq!(k.connect().await.unwrap().target, live);
        }
        assert_eq!(starting.take(), 5, "{s}");
    }

    let dead_random = format!("{} load_balance_hosts=random", hosts(dead));
    let k = connector(&dead_random).unwrap();
    for _ in 0..ATTEMPTS {
        assert_eq!(k.connect().await.unwrap().target, live);
    }
    let random = format!("{} load_balance_hosts=random", hosts(starting.port));
    let k = connector(&random).unwrap();
    for _ in 0..ATTEMPTS {
        assert_eq!(k.connect().await.unwrap().target, live);
    }
    let first = starting.take();
    assert!(
        (1..ATTEMPTS).contains(&first),
        "the starting host came first in {first} of {ATTEMPTS} connections"
    );
    // The pool makes each of its connections the same way.
    let pool = Pool::new(
        k.clone(),
        &PoolOptions {
            max_size: ATTEMPTS,
            ..PoolOptions::default()
        },
    )
    .unwrap();
    let mut held = Vec::new();
    for _ in 0..ATTEMPTS {
        held.push(pool.get().await.unwrap());
    }
    let first = starting.take();
    assert!((1..ATTEMPTS).contains(&first), "pool: {first}");
    drop(held);

    // Two live names for the same server: both are used.
    let k = connector(&format!(
        "host=127.0.0.1,localhost port={} {auth} load_balance_hosts=random",
        c.port()
    ))
    .unwrap();
    let mut targets = std::collections::BTreeSet::new();
    for _ in 0..ATTEMPTS {
        targets.insert(k.connect().await.unwrap().target.clone());
    }
    assert_eq!(targets.len(), 2, "{targets:?}");

    // libpq itself, same strings.
    let port = c.port().to_string();
    for (s, counted) in [(&dead_random, false), (&random, true)] {
        let Some(results) = with_libpq_16(s, ATTEMPTS) else {
            eprintln!("no libpq 16 or later found: the libpq comparison is skipped");
            return;
        };
        assert_eq!(results.len(), ATTEMPTS);
        for r in &results {
            assert_eq!(r.as_deref(), Ok(port.as_str()));
        }
        if counted {
            let first = starting.take();
            assert!(
                (1..ATTEMPTS).contains(&first),
                "libpq: the starting host came first in {first} of {ATTEMPTS} connections"
            );
        }
    }
}

/// `target_session_attrs` against a primary, a primary with `default_transaction_read_only`
/// and a hot standby, in several host orders: pgwarden connects to the server `psql`
/// (libpq) connects to, or fails where it fails. `primary` and `read-write` (and `standby`
/// and `read-only`) differ exactly on the read-only primary.
#[tokio::test]
async fn target_session_attrs_pick_the_server_libpq_picks() {
    use std::os::unix::fs::MetadataExt;
    const USER: &str = "tsa_admin";
    const PASSWORD: &str = "Tsa-Pass-31";
    let start = |b: pgwarden_testkit::TempClusterBuilder| {
        b.superuser(USER).password(PASSWORD).start().unwrap()
    };
    let primary = start(TempCluster::builder());
    let read_only = start(TempCluster::builder().setting("default_transaction_read_only", "on"));
    let standby = start(TempCluster::builder());
    // A cleanly stopped cluster restarted with standby.signal is a hot standby at once.
    standby.stop().unwrap();
    let signal = standby.data_dir().join("standby.signal");
    std::fs::write(&signal, "").unwrap();
    let owner = std::fs::metadata(standby.data_dir()).unwrap();
    std::os::unix::fs::chown(&signal, Some(owner.uid()), Some(owner.gid())).unwrap();
    standby.restart().unwrap();
    assert_eq!(
        standby.psql("SELECT pg_is_in_recovery()").unwrap().trim(),
        "t"
    );
    let servers = [("P", &primary), ("R", &read_only), ("S", &standby)];
    let name_of = |port: &str| {
        servers
            .iter()
            .find(|(_, c)| c.port().to_string() == port)
            .map_or("?", |(n, _)| *n)
    };
    let string = |attrs: &str, list: &[&str]| {
        let ports: Vec<String> = list
            .iter()
            .map(|n| {
                servers
                    .iter()
                    .find(|(m, _)| m == n)
                    .unwrap()
                    .1
                    .port()
                    .to_string()
            })
            .collect();
        format!(
            "host={} port={} user={USER} password={PASSWORD} dbname=postgres sslmode=disable target_session_attrs={attrs}",
            vec!["127.0.0.1"; list.len()].join(","),
            ports.join(",")
        )
    };
    // (attrs, hosts, the server libpq picks)
    let cases: &[(&str, &[&str], Option<&str>)] = &[
        ("any", &["S", "R", "P"], Some("S")),
        ("read-write", &["S", "R", "P"], Some("P")),
        ("read-write", &["R", "S"], None),
        ("read-only", &["P", "R", "S"], Some("R")),
        ("read-only", &["P", "S"], Some("S")),
        ("read-only", &["P"], None),
        ("primary", &["S", "R", "P"], Some("R")),
        ("primary", &["S"], None),
        ("standby", &["P", "R", "S"], Some("S")),
        ("standby", &["R", "P"], None),
        ("prefer-standby", &["P", "R", "S"], Some("S")),
        ("prefer-standby", &["R", "P"], Some("R")),
        ("prefer-standby", &["S"], Some("S")),
    ];
    for (attrs, list, expected) in cases {
        let s = string(attrs, list);
        let ours = match connector(&s).unwrap().connect().await {
            Ok(conn) => Ok(name_of(conn.target.rsplit(':').next().unwrap())),
            Err(e) => Err(e.to_string()),
        };
        let libpq = primary
            .psql_with(&s, "SELECT current_setting('port')")
            .map(|out| name_of(out.trim()))
            .map_err(|e| e.to_string());
        assert_eq!(
            libpq.as_ref().ok(),
            expected.as_ref(),
            "psql, {attrs} over {list:?}: {libpq:?}"
        );
        assert_eq!(
            ours.as_ref().ok(),
            expected.as_ref(),
            "{attrs} over {list:?}: {ours:?}"
        );
        if let Err(e) = &ours {
            assert!(!e.contains(PASSWORD), "{e}");
        }
    }
    // A server of the wrong kind is named for what it is.
    let e = connector(&string("primary", &["S"]))
        .unwrap()
        .connect()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("during recovery"), "{e}");
    let e = connector(&string("standby", &["P"]))
        .unwrap()
        .connect()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("recovery is not in progress"), "{e}");
}

/// Without a password, the password file is read with libpq's rules (first matching line,
/// `*`, `\` escapes, CRLF, ignored unless private), each case compared with `psql`.
#[tokio::test]
async fn the_password_file_is_read_as_libpq_reads_it() {
    use std::os::unix::fs::PermissionsExt;
    let c = TempCluster::shared();
    let role = "pgpass_role";
    // Colons and a backslash, escaped in the file.
    c.psql(&format!(
        "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN PASSWORD 'pa:ss\\wo:rd'"
    ))
    .unwrap();
    let escaped = r"pa\:ss\\wo\:rd";
    let port = c.port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgpass");
    let base = format!(
        "host=127.0.0.1 port={port} user={role} dbname=postgres sslmode=disable passfile={}",
        q(&file.display().to_string())
    );
    let write = |contents: &str, mode: u32| {
        std::fs::write(&file, contents).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let good = format!(
        "# pgwarden test\n\
         127.0.0.1:1:postgres:{role}:wrong-port\n\
         localhost:{port}:postgres:{role}:wrong-host\n\
         127.0.0.1:{port}:other_db:{role}:wrong-db\n\
         127.0.0.1:{port}:*:{role}:{escaped}:trailing field\r\n\
         *:*:*:*:wrong-later\n"
    );
    let first_wins =
        format!("*:*:*:{role}:wrong-first\n127.0.0.1:{port}:postgres:{role}:{escaped}\n");
    let escaped_fields = format!("127\\.0.0.1:{port}:post\\gres:pgpass\\_role:{escaped}");
    for (contents, mode, extra, connects) in [
        (good.as_str(), 0o600, "", true),
        (good.as_str(), 0o400, "password=''", true),
        (escaped_fields.as_str(), 0o600, "", true),
        // Group or world access: ignored.
        (good.as_str(), 0o640, "", false),
        (good.as_str(), 0o604, "", false),
        // A password given wins over the file.
        (good.as_str(), 0o600, "password=wrong", false),
        (first_wins.as_str(), 0o600, "", false),
        ("*:*:*:*:wrong-everywhere\n", 0o600, "", false),
    ] {
        write(contents, mode);
        let s = format!("{base} {extra}");
        let ours = match connect(&s).await {
            Ok(conn) => {
                let row = conn
                    .query_one("SELECT current_user::text", &[])
                    .await
                    .unwrap();
                Ok(row.get::<_, String>(0))
            }
            Err(e) => Err(e.to_string()),
        };
        let libpq = c
            .psql_with(&s, "SELECT current_user")
            .map(|out| out.trim().to_owned())
            .map_err(|e| e.to_string());
        assert_eq!(
            ours.is_ok(),
            connects,
            "{contents:?} {mode:o} {extra}: {ours:?}"
        );
        assert_eq!(
            libpq.is_ok(),
            connects,
            "psql, {contents:?} {mode:o} {extra}: {libpq:?}"
        );
        if connects {
            assert_eq!(ours.as_deref(), Ok(role));
        } else if let Err(e) = &ours {
            assert!(!e.contains("pa:ss"), "{e}");
        }
    }

    // The default file is ~/.pgpass (ConnectOptions::home_dir).
    let home = tempfile::tempdir().unwrap();
    let pgpass = home.path().join(".pgpass");
    std::fs::write(&pgpass, &good).unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = format!("host=127.0.0.1 port={port} user={role} dbname=postgres sslmode=disable");
    let options = ConnectOptions {
        home_dir: Some(home.path().to_owned()),
        ..ConnectOptions::default()
    };
    let info: ConnInfo = s.parse().unwrap();
    Connector::new(&info, &options)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let options = ConnectOptions {
        home_dir: None,
        ..ConnectOptions::default()
    };
    assert!(
        Connector::new(&info, &options)
            .unwrap()
            .connect()
            .await
            .is_err()
    );
}

/// The settings libpq honours and pgwarden cannot are refused, naming the keyword, before
/// any traffic; where the machine's libpq knows the keyword, `psql` shows what it would
/// have done instead. libpq's defaults, spelled out, connect as with `psql`.
#[tokio::test]
async fn settings_pgwarden_cannot_honour_are_refused_not_ignored() {
    let c = TempCluster::shared();
    let show_encoding = "SHOW client_encoding";
    // (setting, keyword, what psql answers to `SHOW client_encoding` if it connects; None
    // when psql refuses too or may not know the keyword)
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("service=pgwarden_no_such_service", "service", None),
        ("hostaddr=127.1", "hostaddr", Some("UTF8")),
        ("client_encoding=LATIN1", "client_encoding", Some("LATIN1")),
        ("sslcompression=1", "sslcompression", Some("UTF8")),
        ("replication=database", "replication", None),
        ("min_protocol_version=3.2", "min_protocol_version", None),
        ("max_protocol_version=latest", "max_protocol_version", None),
        (
            "scram_client_key=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "scram_client_key",
            None,
        ),
        ("oauth_issuer=https://idp.example", "oauth_issuer", None),
        (
            "oauth_client_secret=0auth-S3cret",
            "oauth_client_secret",
            None,
        ),
        ("sslkeylogfile=/tmp/pgwarden-keys", "sslkeylogfile", None),
    ];
    for (setting, keyword, libpq) in cases {
        let s = format!("{} {setting}", c.dsn());
        let e = connector(&s).unwrap_err();
        assert!(e.is_config(), "{setting}: {e}");
        let text = format!("{e} {e:?}");
        assert!(text.contains(&format!("{keyword}=")), "{setting}: {text}");
        for secret in [c.password(), "0auth-S3cret", "AAAAAAAAAAAAAAAA"] {
            assert!(!text.contains(secret), "{text}");
        }
        let out = c.psql_with(&s, show_encoding);
        match libpq {
            Some(encoding) => assert_eq!(out.unwrap().trim(), *encoding, "{setting}"),
            None if *keyword == "service" => {
                let e = out.unwrap_err().to_string();
                assert!(e.contains("pgwarden_no_such_service"), "{e}");
            }
            None => {}
        }
    }

    // libpq's defaults and their equivalents connect, as with psql.
    let known_to_psql = "target_session_attrs=any sslcompression=0 gssencmode=prefer replication=false client_encoding=utf-8 krbsrvname=postgres sslsni=1 ssl_min_protocol_version=tlsv1.2 ssl_max_protocol_version=tlsv1.3";
    let s = format!("{} {known_to_psql}", c.dsn());
    assert_eq!(c.psql_with(&s, show_encoding).unwrap().trim(), "UTF8");
    let newer = "load_balance_hosts=disable min_protocol_version=3.0 max_protocol_version=3.0 gssdelegation=0 oauth_issuer='' sslkeylogfile=''";
    let conn = connect(&format!("{s} {newer}")).await.unwrap();
    assert!(conn.tls);
    let row = conn.query_one(show_encoding, &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "UTF8");
}

/// `sslpassword` decrypts an encrypted client key in libpq; pgwarden cannot read such a
/// key, so the setting is refused (in `prefer` too, which would otherwise go on without
/// the certificate). With a plain key libpq ignores `sslpassword`, and so does pgwarden.
#[tokio::test]
async fn sslpassword_with_an_encrypted_key_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    const PASSPHRASE: &str = "Key-Passphrase-42";
    let c = TempCluster::shared();
    let cert = c.tls().unwrap().client_cert("pgwarden_keyuser").unwrap();
    let dir = tempfile::tempdir().unwrap();
    openssl(
        dir.path(),
        &[
            "pkey",
            "-in",
            &cert.key_path().display().to_string(),
            "-aes256",
            "-passout",
            &format!("pass:{PASSPHRASE}"),
            "-out",
            "encrypted.key",
        ],
    );
    let encrypted = dir.path().join("encrypted.key");
    std::fs::set_permissions(&encrypted, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cert_path = q(&cert.cert_path().display().to_string());
    let client_dn = "SELECT coalesce(client_dn, '') FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    for mode in ["require", "prefer"] {
        let s = format!(
            "{} sslmode={mode} sslcert={cert_path} sslkey={} sslpassword={PASSPHRASE}",
            c.dsn(),
            q(&encrypted.display().to_string())
        );
        let e = connector(&s).unwrap_err();
        assert!(e.is_config(), "{e}");
        let text = format!("{e} {e:?}");
        assert!(text.contains("sslpassword"), "{text}");
        assert!(
            !text.contains(PASSPHRASE) && !text.contains(c.password()),
            "{text}"
        );
        // libpq decrypts the key and presents the certificate.
        let dn = c.psql_with(&s, client_dn).unwrap();
        assert!(dn.contains("pgwarden_keyuser"), "{mode}: {dn:?}");
    }
    // A plain key: sslpassword has no effect, in libpq as in pgwarden.
    let s = format!(
        "{} sslmode=require {} sslpassword={PASSPHRASE}",
        c.dsn(),
        cert.conninfo()
    );
    let conn = connect(&s).await.unwrap();
    let row = conn.query_one(client_dn, &[]).await.unwrap();
    assert!(row.get::<_, String>(0).contains("pgwarden_keyuser"));
    assert!(
        c.psql_with(&s, client_dn)
            .unwrap()
            .contains("pgwarden_keyuser")
    );
}

/// Which host a connection string reaches — the port connected to — or the failure: for
/// pgwarden, for `psql` (the machine's libpq) and, where the machine has one, for libpq 16
/// or later.
async fn reached(cluster: &TempCluster, s: &str) -> [Option<Result<u16, String>>; 3] {
    let ours = match connect(s).await {
        Ok(conn) => Ok(conn.target.rsplit(':').next().unwrap().parse().unwrap()),
        Err(e) => Err(e.to_string()),
    };
    let psql = cluster
        .psql_with(s, "SELECT current_setting('port')")
        .map(|out| out.trim().parse().unwrap())
        .map_err(|e| e.to_string());
    let newer = with_libpq_16(s, 1).map(|mut results| {
        assert_eq!(results.len(), 1);
        results.remove(0).map(|port| port.parse().unwrap())
    });
    [Some(ours), Some(psql), newer]
}

/// What a connection string does: the host (port) libpq connects to, or the host whose
/// error ends the connection and the class of that error.
type FailoverOutcome = Result<u16, (u16, &'static str)>;

/// Several hosts: as libpq, pgwarden moves on to the next address or host only when the
/// connection cannot be opened or times out, when the server answers 57P03 ("starting
/// up"), or when it is of the wrong kind for `target_session_attrs`. A host that was
/// reached and failed otherwise — closed the connection, rejected the password, has no
/// such database, has no TLS where TLS is required, has too many connections — ends the
/// connection, with that host's error: the remaining hosts are not tried. Each string
/// goes through pgwarden, `psql` and (where found) libpq 16 or later, and all must reach
/// the same host or all fail.
#[tokio::test]
async fn only_unreachable_starting_or_wrong_kind_hosts_are_skipped_as_by_libpq() {
    const USER: &str = "failover_admin";
    const PASSWORD: &str = "Failover-Pass-47";
    // TLS on, so that `sslmode=require` would succeed there.
    let live = TempCluster::builder()
        .superuser(USER)
        .password(PASSWORD)
        .ssl(SslSetup::Valid)
        .start()
        .unwrap();
    live.create_database("only_on_live").unwrap();
    live.psql("CREATE ROLE failover_user LOGIN PASSWORD 'Right-Pass-1'")
        .unwrap();
    // The same superuser, but no TLS, no database only_on_live, read-only sessions, and
    // another password for failover_user.
    let other = TempCluster::builder()
        .superuser(USER)
        .password(PASSWORD)
        .setting("default_transaction_read_only", "on")
        .start()
        .unwrap();
    other
        .psql("BEGIN READ WRITE; CREATE ROLE failover_user LOGIN PASSWORD 'Other-Pass-2'; COMMIT")
        .unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = closed.local_addr().unwrap().port();
    drop(closed);
    // Never accepted, never read: the kernel completes the TCP handshake anyway.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let hanging_up = FakeServer::hanging_up();
    let starting = FakeServer::starting_up();
    let too_many = FakeServer::answering("53300", "sorry, too many clients already");

    let admin = format!("user={USER} password={PASSWORD}");
    let user = "user=failover_user password=Right-Pass-1";
    let (live_port, other_port) = (live.port(), other.port());
    // (what, ports, credentials and settings, outcome)
    let cases: Vec<(&str, Vec<u16>, String, FailoverOutcome)> = vec![
        (
            "a healthy first host",
            vec![other_port, live_port],
            format!("{admin} dbname=postgres"),
            Ok(other_port),
        ),
        (
            "(1) the first host refuses the connection",
            vec![refused, live_port],
            format!("{admin} dbname=postgres"),
            Ok(live_port),
        ),
        (
            "(2) the first host never answers",
            vec![silent_port, live_port],
            format!("{admin} dbname=postgres connect_timeout=2"),
            Ok(live_port),
        ),
        (
            "(3) the first host closes the connection at once",
            vec![hanging_up.port, live_port],
            format!("{admin} dbname=postgres"),
            Err((hanging_up.port, "network")),
        ),
        (
            "(3) the first host closes the connection at once, sslmode=disable",
            vec![hanging_up.port, live_port],
            format!("{admin} dbname=postgres sslmode=disable"),
            Err((hanging_up.port, "network")),
        ),
        (
            "(4) the first host rejects the password",
            vec![other_port, live_port],
            format!("{user} dbname=postgres"),
            Err((other_port, "auth")),
        ),
        (
            "(5) the first host has no such database",
            vec![other_port, live_port],
            format!("{admin} dbname=only_on_live"),
            Err((other_port, "server")),
        ),
        (
            "(6) the first host is starting up (57P03)",
            vec![starting.port, live_port],
            format!("{admin} dbname=postgres"),
            Ok(live_port),
        ),
        (
            "(7) the first host is read-only, read-write wanted",
            vec![other_port, live_port],
            format!("{admin} dbname=postgres target_session_attrs=read-write"),
            Ok(live_port),
        ),
        (
            "the first host has too many connections (53300)",
            vec![too_many.port, live_port],
            format!("{admin} dbname=postgres"),
            Err((too_many.port, "server")),
        ),
        (
            "the first host has no TLS, sslmode=require",
            vec![other_port, live_port],
            format!("{admin} dbname=postgres sslmode=require"),
            Err((other_port, "tls")),
        ),
        (
            "refused, starting up, then no such database: that host's error",
            vec![refused, starting.port, other_port, live_port],
            format!("{admin} dbname=only_on_live"),
            Err((other_port, "server")),
        ),
    ];
    let mut newer_libpq = false;
    for (what, ports, settings, expected) in &cases {
        let ports_text: Vec<String> = ports.iter().map(u16::to_string).collect();
        let s = format!(
            "host={} port={} {settings}",
            vec!["127.0.0.1"; ports.len()].join(","),
            ports_text.join(",")
        );
        let [ours, psql, newer] = reached(&live, &s).await;
        let (ours, psql) = (ours.unwrap(), psql.unwrap());
        assert_eq!(
            psql.as_ref().ok(),
            expected.as_ref().ok(),
            "psql, {what}: {psql:?}"
        );
        if let Some(newer) = newer {
            newer_libpq = true;
            assert_eq!(
                newer.as_ref().ok(),
                expected.as_ref().ok(),
                "libpq 16+, {what}: {newer:?}"
            );
        }
        assert_eq!(
            ours.as_ref().ok(),
            expected.as_ref().ok(),
            "pgwarden, {what}: {ours:?}"
        );
        if let Err((ended_by, class)) = expected {
            let e = connect(&s).await.unwrap_err();
            assert_eq!(e.class(), *class, "{what}: {e}");
            // The error is the one from the host that ended the connection.
            let message = e.to_string();
            let head = message.split(" [also tried").next().unwrap();
            assert!(
                head.contains(&format!("127.0.0.1:{ended_by}")),
                "{what}: {message}"
            );
            assert!(!message.contains(PASSWORD), "{message}");
        }
    }
    if !newer_libpq {
        eprintln!("no libpq 16 or later found: only psql was compared");
    }
    // The second host was never tried where the first ended the connection; the others
    // were tried once by each client (twice by pgwarden: its check above, and TLS then
    // plaintext for `prefer` on fakes without TLS, counted per TCP connection).
    assert!(hanging_up.take() >= 4);
    assert!(starting.take() >= 3);
    assert!(too_many.take() >= 3);

    // The specific errors.
    let s = |ports: &[u16], settings: &str| {
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        format!(
            "host={} port={} {settings}",
            vec!["127.0.0.1"; ports.len()].join(","),
            ports.join(",")
        )
    };
    let e = connect(&s(
        &[hanging_up.port, live_port],
        &format!("{admin} dbname=postgres"),
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            ConnectError::Network {
                kind: NetworkFailure::Closed,
                ..
            }
        ),
        "{e}"
    );
    let e = connect(&s(
        &[other_port, live_port],
        &format!("{user} dbname=postgres"),
    ))
    .await
    .unwrap_err();
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
    let e = connect(&s(
        &[other_port, live_port],
        &format!("{admin} dbname=postgres sslmode=require"),
    ))
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
    let ended = s(
        &[refused, starting.port, other_port, live_port],
        &format!("{admin} dbname=only_on_live"),
    );
    let e = connect(&ended).await.unwrap_err();
    assert!(
        matches!(&e, ConnectError::Server { code, .. } if code == "3D000"),
        "{e}"
    );
    // The hosts tried before are noted.
    assert!(e.to_string().contains("57P03"), "{e}");
    // The pool reports the same host's error.
    let pool = Pool::new(connector(&ended).unwrap(), &PoolOptions::default()).unwrap();
    match pool.get().await {
        Err(pgwarden_pg_driver::PoolError::Connect(ConnectError::Server { code, .. })) => {
            assert_eq!(code, "3D000");
        }
        other => panic!("{other:?}"),
    }
    drop(silent);
}
