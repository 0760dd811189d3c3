//! A secret store that accepts the connection and never answers: every call ends with a
//! transient error within its time limit, alone, under retries, and through
//! `from_config`. The "store" is a loopback socket that accepts and reads nothing, with
//! the Vault backend pointed at it (no Vault server needed).
#![cfg(feature = "vault")]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgwarden_core::config::{ConfigFormat, IntegrationConfig};
use pgwarden_secrets::vault::{VaultConfig, VaultStore};
use pgwarden_secrets::{
    Error, GetOptions, PutOptions, RetryConfig, RetryStore, SecretKey, SecretStore, TimeoutConfig,
    TimeoutStore, from_config_layered, from_config_with,
};
use secrecy::SecretString;
use tokio::net::TcpListener;

const LIMIT: Duration = Duration::from_millis(500);
const TOKEN: &str = "hang-test-token-XYZ";

/// A loopback server that accepts every connection and keeps it open without reading or
/// writing a byte; its address as a Vault URL.
async fn silent_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://127.0.0.1:{port}")
}

/// A Vault store at `address` whose own HTTP timeout (60 s) is far beyond the test's.
async fn vault(address: &str) -> VaultStore {
    let mut config = VaultConfig::new(address, "secret", SecretString::from(TOKEN));
    config.timeout = Duration::from_secs(60);
    VaultStore::new(config).await.unwrap()
}

/// Runs `call`, failing the test instead of hanging if nothing bounds it.
async fn timed<T>(call: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the call must end on its own time limit");
    (result, started.elapsed())
}

fn assert_timed_out(e: &Error, operation: &str, limit: Duration) {
    assert!(e.is_transient(), "{e:?}");
    assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("{operation} timed out after {limit:?}")),
        "{text}"
    );
    assert!(
        text.contains("vault") && text.contains("pg/orders"),
        "{text}"
    );
    assert!(!format!("{e} {e:?}").contains(TOKEN), "{e:?}");
}

#[tokio::test]
async fn get_and_put_end_within_the_per_call_limit() {
    let address = silent_server().await;
    let store = TimeoutStore::new(vault(&address).await, LIMIT);
    let key = SecretKey::new("pg/orders");

    let (result, took) = timed(store.get(&key, GetOptions::default())).await;
    assert_timed_out(&result.unwrap_err(), "get", LIMIT);
    assert!(
        took >= LIMIT && took < Duration::from_millis(1500),
        "{took:?}"
    );

    let value = SecretString::from(r#"{"username":"u","password":"Hang-S3cret"}"#);
    let (result, took) = timed(store.put(&key, value, PutOptions::default())).await;
    let e = result.unwrap_err();
    assert_timed_out(&e, "put", LIMIT);
    assert!(!format!("{e} {e:?}").contains("Hang-S3cret"), "{e:?}");
    assert!(
        took >= LIMIT && took < Duration::from_millis(1500),
        "{took:?}"
    );

    let (result, took) = timed(store.delete(&key)).await;
    assert_timed_out(&result.unwrap_err(), "delete", LIMIT);
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

#[tokio::test]
async fn retries_end_within_attempts_times_limit_and_backoff() {
    let address = silent_server().await;
    let max_backoff = Duration::from_millis(200);
    let retry = RetryConfig::new(3, Duration::from_millis(50), max_backoff);
    let store = RetryStore::new(TimeoutStore::new(vault(&address).await, LIMIT), retry);
    let key = SecretKey::new("pg/orders");
    let (result, took) = timed(store.get(&key, GetOptions::default())).await;
    assert_timed_out(&result.unwrap_err(), "get", LIMIT);
    // Three attempts were made (each one a full limit), and no more.
    let bound = (LIMIT + max_backoff) * 3 + Duration::from_secs(1);
    assert!(took >= LIMIT * 3 && took < bound, "{took:?}");
}

/// The `[secret]` section of an integration pointing Vault at `address`.
fn vault_section(address: &str) -> pgwarden_core::config::SecretRef {
    let text = format!(
        "name = \"x\"\nhostname = \"db\"\n[secret]\nbackend = \"vault\"\naddress = \"{address}\"\nmount = \"secret\"\npath = \"pg/orders\"\n"
    );
    IntegrationConfig::parse_with(&text, ConfigFormat::Toml, pgwarden_secrets::validate)
        .unwrap()
        .secret
        .unwrap()
}

/// `from_config_with` reads `$VAULT_TOKEN`, which a test cannot set in its own process
/// without `unsafe`: this test runs itself again in a child process that has it.
#[test]
fn from_config_bounds_every_call() {
    const CHILD: &str = "PGWARDEN_SECRETS_HANG_CHILD";
    if std::env::var_os(CHILD).is_some() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(from_config_in_child());
        return;
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "from_config_bounds_every_call", "--nocapture"])
        .env(CHILD, "1")
        .env("VAULT_TOKEN", TOKEN)
        .env_remove("VAULT_ADDR")
        .env_remove("VAULT_NAMESPACE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: kill the child rather than hang the suite.
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("the child test did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the child ran no test: {text}");
}

async fn from_config_in_child() {
    let address = silent_server().await;
    let section = vault_section(&address);
    let key = SecretKey::new("pg/orders");

    // Through from_config_layered: 2 attempts of 500 ms each.
    let retry = RetryConfig::new(2, Duration::from_millis(50), Duration::from_millis(100));
    let (store, k) =
        from_config_layered(&section, Some(retry), Some(TimeoutConfig::new(LIMIT, None)))
            .await
            .unwrap();
    assert_eq!(k, key);
    let (result, took) = timed(store.get(&key, GetOptions::default())).await;
    assert_timed_out(&result.unwrap_err(), "get", LIMIT);
    assert!(
        took >= LIMIT * 2 && took < Duration::from_millis(2 * 600 + 1000),
        "{took:?}"
    );

    // A total limit shorter than the retries ends the call first.
    let total = Duration::from_millis(700);
    let (store, _) = from_config_layered(
        &section,
        Some(retry),
        Some(TimeoutConfig::new(LIMIT, Some(total))),
    )
    .await
    .unwrap();
    let (result, took) =
        timed(store.put(&key, SecretString::from("{}"), PutOptions::default())).await;
    let e = result.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert!(
        e.to_string().contains("put timed out after 700ms in all"),
        "{e}"
    );
    assert!(
        took >= total && took < Duration::from_millis(1700),
        "{took:?}"
    );

    // from_config_with: the default per-call limit (10 s) and total (60 s) apply; with a
    // single attempt the call ends after 10 s.
    let (store, _) = from_config_with(&section, None).await.unwrap();
    let store: Arc<dyn SecretStore> = store;
    let (result, took) = timed(store.get(&key, GetOptions::default())).await;
    assert_timed_out(&result.unwrap_err(), "get", Duration::from_secs(10));
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(12),
        "{took:?}"
    );
}
