//! Peers that hang: a server that accepts the TCP connection and never answers (plaintext
//! start-up, TLS handshake, pooled connections), and statements that run too long. Every
//! operation ends with an error within its time limit, also when the connection string
//! sets none (pgwarden's defaults, [`ConnectOptions`]); what the string sets wins.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pgwarden_core::conninfo::ConnInfo;
use pgwarden_pg_driver::{ConnectError, NetworkFailure};
use pgwarden_pg_driver::{
    ConnectOptions, Connector, DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEEPALIVES,
    DEFAULT_STATEMENT_TIMEOUT,
};
use pgwarden_pg_driver::{Pool, PoolError, PoolOptions};
use pgwarden_testkit::TempCluster;
use tokio::net::TcpListener;
use tokio_postgres::error::SqlState;

/// The test's own default connect timeout, short to keep the suite fast.
const DEFAULT: Duration = Duration::from_secs(1);

fn options(default_connect_timeout: Option<Duration>) -> ConnectOptions {
    ConnectOptions {
        default_connect_timeout,
        ..ConnectOptions::default()
    }
}

fn connector(s: &str, options: &ConnectOptions) -> Connector {
    let info: ConnInfo = s.parse().expect("conninfo parses");
    Connector::new(&info, options).expect("valid settings")
}

/// A loopback server that accepts every TCP connection, counts it, and keeps it open
/// without reading or writing a byte.
async fn silent_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (port, accepted)
}

fn silent_dsn(port: u16, extra: &str) -> String {
    format!("host=127.0.0.1 port={port} user=victim password=Hang-S3cret dbname=postgres {extra}")
}

/// Runs `call`, failing the test instead of hanging if nothing bounds it.
async fn timed<T>(call: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the operation must end on its own time limit");
    (result, started.elapsed())
}

fn assert_timed_out(e: &ConnectError, what: &str) {
    assert!(
        matches!(
            e,
            ConnectError::Network {
                kind: NetworkFailure::Timeout,
                ..
            }
        ),
        "{what}: {e:?}"
    );
    let text = e.to_string();
    assert!(text.contains("timed out"), "{what}: {text}");
    assert!(text.contains("default_connect_timeout"), "{what}: {text}");
    assert!(
        !format!("{e} {e:?}").contains("Hang-S3cret"),
        "{what}: {e:?}"
    );
}

/// (a) No `connect_timeout` in the string: pgwarden's default bounds the attempt, for
/// every SSL mode (the start-up or the SSL request never answered).
#[tokio::test]
async fn a_silent_server_times_out_without_connect_timeout() {
    let (port, accepted) = silent_server().await;
    for sslmode in ["disable", "prefer", "allow"] {
        let k = connector(
            &silent_dsn(port, &format!("sslmode={sslmode}")),
            &options(Some(DEFAULT)),
        );
        assert_eq!(k.connect_timeout(), Some(DEFAULT));
        let (result, took) = timed(k.connect()).await;
        assert_timed_out(&result.unwrap_err(), sslmode);
        assert!(
            took >= DEFAULT && took < Duration::from_secs(3),
            "{sslmode}: {took:?}"
        );
    }
    // A timed-out attempt is not retried with the other transport (as libpq).
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

/// (b) `sslmode=require`: the SSL request, or with `sslnegotiation=direct` the TLS
/// handshake, never answered.
#[tokio::test]
async fn a_stalled_tls_handshake_times_out_without_connect_timeout() {
    let (port, _) = silent_server().await;
    for sslmode in ["require", "require sslnegotiation=direct"] {
        let k = connector(
            &silent_dsn(port, &format!("sslmode={sslmode}")),
            &options(Some(DEFAULT)),
        );
        let (result, took) = timed(k.connect()).await;
        assert_timed_out(&result.unwrap_err(), sslmode);
        assert!(
            took >= DEFAULT && took < Duration::from_secs(3),
            "{sslmode}: {took:?}"
        );
    }
}

/// What the string says wins: `connect_timeout=2` over the default, and
/// `connect_timeout=0` keeps libpq's "no limit".
#[tokio::test]
async fn the_strings_connect_timeout_wins_over_the_default() {
    assert_eq!(
        ConnectOptions::default().default_connect_timeout,
        Some(DEFAULT_CONNECT_TIMEOUT)
    );
    let (port, _) = silent_server().await;
    let k = connector(
        &silent_dsn(port, "sslmode=disable connect_timeout=2"),
        &options(Some(DEFAULT)),
    );
    assert_eq!(k.connect_timeout(), Some(Duration::from_secs(2)));
    let (result, took) = timed(k.connect()).await;
    assert!(result.is_err());
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "{took:?}"
    );

    let k = connector(
        &silent_dsn(port, "sslmode=disable connect_timeout=0"),
        &options(Some(DEFAULT)),
    );
    assert_eq!(k.connect_timeout(), None);
    assert!(
        tokio::time::timeout(Duration::from_millis(2500), k.connect())
            .await
            .is_err(),
        "connect_timeout=0 must not limit the attempt"
    );

    // No default either: libpq's behaviour, no limit.
    let k = connector(&silent_dsn(port, "sslmode=disable"), &options(None));
    assert_eq!(k.connect_timeout(), None);
}

/// (c) The pool: the connector's timeout ends a pooled connection attempt with an error
/// naming the host (the pool's shorter create timeout is raised so as not to cut it
/// short), other `get`s waiting meanwhile end after `wait_timeout`, and without any
/// connect timeout the pool's create timeout ends the attempt.
#[tokio::test]
async fn a_pooled_get_on_a_silent_server_ends_within_its_timeouts() {
    let (port, _) = silent_server().await;
    let k = connector(
        &silent_dsn(port, "sslmode=disable"),
        &options(Some(DEFAULT)),
    );
    let wait = Duration::from_millis(300);
    let pool = Pool::new(
        k,
        &PoolOptions {
            max_size: 1,
            wait_timeout: Some(wait),
            create_timeout: Some(Duration::from_millis(200)),
            ..PoolOptions::default()
        },
    )
    .unwrap();
    let first = {
        let pool = pool.clone();
        tokio::spawn(async move { timed(pool.get()).await })
    };
    // The first get holds the only slot while it connects; this one waits for it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (second, took) = timed(pool.get()).await;
    assert!(
        matches!(second, Err(PoolError::Timeout("wait"))),
        "{second:?}"
    );
    assert!(
        took >= wait && took < wait + Duration::from_secs(1),
        "{took:?}"
    );
    let (first, took) = first.await.unwrap();
    match first {
        Err(PoolError::Connect(e)) => assert_timed_out(&e, "pooled"),
        other => panic!("expected the connector's timeout, got {other:?}"),
    }
    assert!(took >= DEFAULT && took < Duration::from_secs(3), "{took:?}");

    // No connect timeout at all (connect_timeout=0): the pool's create timeout ends it.
    let k = connector(
        &silent_dsn(port, "sslmode=disable connect_timeout=0"),
        &options(Some(DEFAULT)),
    );
    let create = Duration::from_millis(800);
    let pool = Pool::new(
        k,
        &PoolOptions {
            max_size: 1,
            wait_timeout: Some(wait),
            create_timeout: Some(create),
            ..PoolOptions::default()
        },
    )
    .unwrap();
    let (result, took) = timed(pool.get()).await;
    assert!(
        matches!(result, Err(PoolError::Timeout("create"))),
        "{result:?}"
    );
    assert!(
        took >= create && took < create + Duration::from_secs(1),
        "{took:?}"
    );
}

/// (d) The statement timeout: sent in the startup packet, ends a long statement with
/// SQLSTATE 57014, and gives way to the string's own `options`.
#[tokio::test]
async fn statements_are_bounded_by_the_statement_timeout() {
    let c = TempCluster::shared();
    let short = ConnectOptions {
        statement_timeout: Some(Duration::from_millis(500)),
        ..ConnectOptions::default()
    };
    let conn = connector(&c.dsn(), &short).connect().await.unwrap();
    assert_eq!(setting(&conn, "statement_timeout").await, "500ms");
    // lock_timeout is left alone (revocation sets its own per step).
    assert_eq!(setting(&conn, "lock_timeout").await, "0");
    // The search_path pin is still there, and still last.
    assert_eq!(setting(&conn, "search_path").await, "pg_catalog,pg_temp");
    let (result, took) = timed(conn.batch_execute("SELECT pg_catalog.pg_sleep(5)")).await;
    let e = result.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e:?}");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    // The session is still usable.
    conn.batch_execute("SELECT 1").await.unwrap();

    // The default: 60 s.
    assert_eq!(DEFAULT_STATEMENT_TIMEOUT, Duration::from_secs(60));
    let conn = connector(&c.dsn(), &ConnectOptions::default())
        .connect()
        .await
        .unwrap();
    assert_eq!(setting(&conn, "statement_timeout").await, "1min");

    // The string's own options win over the default, and cannot move the pin.
    let s = format!(
        "{} options='-c statement_timeout=0 -c search_path=public'",
        c.dsn()
    );
    let conn = connector(&s, &short).connect().await.unwrap();
    assert_eq!(setting(&conn, "statement_timeout").await, "0");
    assert_eq!(setting(&conn, "search_path").await, "pg_catalog,pg_temp");
    // A RESET goes back to the startup packet's value, not to no limit.
    let conn = connector(&c.dsn(), &short).connect().await.unwrap();
    conn.batch_execute("SET statement_timeout = 0; RESET statement_timeout")
        .await
        .unwrap();
    assert_eq!(setting(&conn, "statement_timeout").await, "500ms");

    // None: nothing is sent, the server's setting applies.
    let none = ConnectOptions {
        statement_timeout: None,
        ..ConnectOptions::default()
    };
    let conn = connector(&c.dsn(), &none).connect().await.unwrap();
    assert_eq!(setting(&conn, "statement_timeout").await, "0");
}

async fn setting(conn: &tokio_postgres::Client, name: &str) -> String {
    conn.query_one(&format!("SHOW {name}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// (e) Keepalives: pgwarden's defaults where the string sets nothing, the string's values
/// where it does, the system's with `default_keepalives: None`, none with `keepalives=0`.
#[tokio::test]
async fn keepalive_defaults_apply_only_where_the_string_sets_nothing() {
    let c = TempCluster::shared();
    let (idle, interval, count) = DEFAULT_KEEPALIVES;
    assert_eq!(
        (idle, interval, count),
        (Duration::from_secs(30), Duration::from_secs(10), 3)
    );
    let k = connector(&c.dsn(), &ConnectOptions::default());
    let config = k.base_config();
    assert!(config.get_keepalives());
    assert_eq!(config.get_keepalives_idle(), idle);
    assert_eq!(config.get_keepalives_interval(), Some(interval));
    assert_eq!(config.get_keepalives_retries(), Some(count));
    // Real sockets accept them.
    k.connect().await.unwrap();

    // The string's values win, one by one.
    let k = connector(
        &format!("{} keepalives_idle=100 keepalives_count=7", c.dsn()),
        &ConnectOptions::default(),
    );
    let config = k.base_config();
    assert_eq!(config.get_keepalives_idle(), Duration::from_secs(100));
    assert_eq!(config.get_keepalives_interval(), Some(interval));
    assert_eq!(config.get_keepalives_retries(), Some(7));
    let k = connector(
        &format!("{} keepalives_interval=4", c.dsn()),
        &ConnectOptions::default(),
    );
    assert_eq!(k.base_config().get_keepalives_idle(), idle);
    assert_eq!(
        k.base_config().get_keepalives_interval(),
        Some(Duration::from_secs(4))
    );
    k.connect().await.unwrap();

    // None: the system's defaults, as libpq (the driver's idle default is 2 h).
    let system = ConnectOptions {
        default_keepalives: None,
        ..ConnectOptions::default()
    };
    let k = connector(&c.dsn(), &system);
    assert!(k.base_config().get_keepalives());
    assert_eq!(
        k.base_config().get_keepalives_idle(),
        Duration::from_secs(2 * 60 * 60)
    );
    assert_eq!(k.base_config().get_keepalives_interval(), None);
    assert_eq!(k.base_config().get_keepalives_retries(), None);

    // keepalives=0: none at all.
    let k = connector(
        &format!("{} keepalives=0", c.dsn()),
        &ConnectOptions::default(),
    );
    assert!(!k.base_config().get_keepalives());
    assert_eq!(k.base_config().get_keepalives_interval(), None);
    k.connect().await.unwrap();
}
