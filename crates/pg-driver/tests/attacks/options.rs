//! Connection options an attacker would like pgwarden to ignore: `require_auth` (a server,
//! or anyone in the middle, asks for the password in cleartext) and `connect_timeout` (a
//! server accepts the connection and never answers, or stalls the TLS handshake, to hold
//! pgwarden's connections forever). Each option is honoured or refused, never ignored.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pgwarden_core::conninfo::ConnInfo;
use pgwarden_pg_driver::{AuthFailure, ConnectError, NetworkFailure};
use pgwarden_pg_driver::{ConnectOptions, Connector};
use pgwarden_testkit::{SslSetup, TempCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const PASSWORD: &str = "Att4ck-S3cret";

fn connector(s: &str) -> Result<Connector, ConnectError> {
    let info: ConnInfo = s.parse().expect("conninfo parses");
    Connector::new(&info, &ConnectOptions::default())
}

/// A loopback server that accepts every TCP connection, counts it, reads `read` bytes,
/// writes `reply`, and then says nothing more while keeping the connection open.
async fn stalling_server(read: usize, reply: &'static [u8]) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let mut request = vec![0; read];
            if socket.read_exact(&mut request).await.is_ok() {
                let _ = socket.write_all(reply).await;
            }
            held.push(socket);
        }
    });
    (port, accepted)
}

/// libpq's answer to the same string (through `psql`), and how long it took.
async fn libpq(s: &str) -> (Result<String, String>, Duration) {
    let s = s.to_owned();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let result = crate::cluster()
            .psql_with(&s, "SELECT 1")
            .map_err(|e| e.to_string());
        (result, started.elapsed())
    })
    .await
    .unwrap()
}

/// pgwarden's attempt, bounded so that a regression fails instead of hanging.
async fn attempt(s: &str) -> (Result<(), ConnectError>, Duration) {
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(10), async {
        connector(s)?.connect().await.map(drop)
    })
    .await
    .expect("connect_timeout must end the attempt well within 10 s");
    (result, started.elapsed())
}

fn assert_timed_out(result: Result<(), ConnectError>, elapsed: Duration, what: &str) {
    let e = result.expect_err(what);
    assert!(
        matches!(
            e,
            ConnectError::Network {
                kind: NetworkFailure::Timeout,
                ..
            }
        ),
        "{what}: {e}"
    );
    assert!(e.to_string().contains("connect_timeout"), "{what}: {e}");
    assert!(!e.to_string().contains(PASSWORD), "{e}");
    // libpq waits at least 2 s; nothing may wait much longer.
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(4),
        "{what}: {elapsed:?}"
    );
}

/// `require_auth` alone cannot be honoured by the driver: the string is refused when the
/// connector is made, before any connection is opened — so no password can leave.
#[tokio::test]
async fn require_auth_is_refused_before_any_connection() {
    let (port, accepted) = stalling_server(0, b"").await;
    for list in ["scram-sha-256", "!password", "!password,!md5", "none"] {
        let s = format!(
            "host=127.0.0.1 port={port} user=victim password={PASSWORD} dbname=postgres sslmode=disable require_auth={list}"
        );
        let e = connector(&s).unwrap_err();
        assert!(e.is_config(), "{list}: {e}");
        let text = format!("{e} {e:?}");
        assert!(text.contains("require_auth"), "{text}");
        assert!(text.contains("channel_binding=require"), "{text}");
        assert!(!text.contains(PASSWORD), "{text}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "a connection was opened"
    );
}

/// A server whose `pg_hba.conf` asks for the password in cleartext (what a malicious or
/// impersonated server does to learn it). Without `require_auth` pgwarden answers, as
/// libpq does; with `require_auth=scram-sha-256` — honoured through
/// `channel_binding=require` — it hangs up without sending the password.
#[tokio::test]
async fn a_cleartext_password_request_gets_no_password_under_require_auth() {
    let c = TempCluster::builder()
        .ssl(SslSetup::Valid)
        .hba_line("hostssl all victim 127.0.0.1/32 password")
        .start()
        .unwrap();
    c.psql("CREATE ROLE victim LOGIN PASSWORD 'the-real-one'")
        .unwrap();
    let ca = c.tls().unwrap().ca_cert_path().display().to_string();
    // A wrong password: the server logs a failure only if it received one.
    let base = format!(
        "host=localhost port={} user=victim password={PASSWORD} dbname=postgres sslmode=verify-full sslrootcert='{ca}'",
        c.port()
    );
    let received = || {
        c.log_contents()
            .unwrap()
            .matches("password authentication failed for user \"victim\"")
            .count()
    };

    // Control: nothing forbids cleartext, so the password goes out (and is wrong).
    let e = connector(&base).unwrap().connect().await.unwrap_err();
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
    let before = received();
    assert_eq!(before, 1, "the server asked for and received a password");

    // require_auth alone: refused up front.
    let e = connector(&format!("{base} require_auth=scram-sha-256")).unwrap_err();
    assert!(
        e.is_config() && e.to_string().contains("require_auth"),
        "{e}"
    );

    // Honoured: refused by the client on the cleartext request, before sending anything.
    let e = connector(&format!(
        "{base} require_auth=scram-sha-256 channel_binding=require"
    ))
    .unwrap()
    .connect()
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
    assert!(!format!("{e} {e:?}").contains(PASSWORD), "{e}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(received(), before, "the password reached the server");
}

/// A server that accepts the TCP connection and never answers the start-up (or SSL)
/// request: `connect_timeout` ends the attempt, as libpq's does; 0 means no limit.
#[tokio::test]
async fn connect_timeout_ends_a_server_that_never_answers() {
    let (port, accepted) = stalling_server(0, b"").await;
    for sslmode in ["disable", "prefer", "require"] {
        let s = format!(
            "host=127.0.0.1 port={port} user=victim password={PASSWORD} dbname=postgres sslmode={sslmode} connect_timeout=2"
        );
        let (result, elapsed) = attempt(&s).await;
        assert_timed_out(result, elapsed, sslmode);
        let (theirs, took) = libpq(&s).await;
        let message = theirs.unwrap_err();
        assert!(message.contains("timeout expired"), "{message}");
        assert!(took < Duration::from_secs(4), "{took:?}");
    }
    // A timed-out attempt does not retry another transport on the same server (libpq
    // moves on to the next address): one connection for pgwarden, one for psql per mode.
    assert_eq!(accepted.load(Ordering::SeqCst), 6);

    // connect_timeout=1 is 2 s, as in libpq.
    let s = format!(
        "host=127.0.0.1 port={port} user=victim password={PASSWORD} dbname=postgres sslmode=disable connect_timeout=1"
    );
    let (result, elapsed) = attempt(&s).await;
    assert_timed_out(result, elapsed, "connect_timeout=1");

    // connect_timeout=0 waits as long as it takes.
    let s = format!(
        "host=127.0.0.1 port={port} user=victim password={PASSWORD} dbname=postgres sslmode=disable connect_timeout=0"
    );
    let k = connector(&s).unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(3), k.connect())
            .await
            .is_err(),
        "connect_timeout=0 must not limit the attempt"
    );
}

/// A server that accepts TLS (`S`) and then stalls the handshake: the timeout covers the
/// handshake too, not only the TCP connect.
#[tokio::test]
async fn connect_timeout_covers_a_stalled_tls_handshake() {
    // The SSLRequest is 8 bytes.
    let (port, accepted) = stalling_server(8, b"S").await;
    for sslmode in ["require", "prefer"] {
        let s = format!(
            "host=127.0.0.1 port={port} user=victim password={PASSWORD} dbname=postgres sslmode={sslmode} connect_timeout=2"
        );
        let (result, elapsed) = attempt(&s).await;
        assert_timed_out(result, elapsed, sslmode);
    }
    let s = format!(
        "host=127.0.0.1 port={port} user=victim password={PASSWORD} dbname=postgres sslmode=require connect_timeout=2"
    );
    let (theirs, took) = libpq(&s).await;
    let message = theirs.unwrap_err();
    assert!(message.contains("timeout expired"), "{message}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    // prefer did not retry without TLS after the timeout, as libpq does not.
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}
