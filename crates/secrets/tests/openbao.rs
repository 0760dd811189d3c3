//! The conformance suite against a real OpenBao dev server (the Vault KV v2 API).
//! Skips with a printed reason when `bao` is not installed, unless
//! `PGWARDEN_REQUIRE_SECRET_SERVERS=1`.
#![cfg(feature = "vault")]

use std::sync::Arc;

use pgwarden_secrets::vault::{VaultConfig, VaultStore};
use pgwarden_secrets::{DynSecretStore, Error, GetOptions, SecretKey, SecretStore};
use pgwarden_testkit::OpenBao;
use pgwarden_testkit::secret_conformance::run_writable;
use secrecy::SecretString;

async fn store(bao: &OpenBao) -> VaultStore {
    VaultStore::new(VaultConfig::new(
        bao.address(),
        "secret",
        SecretString::from(bao.root_token()),
    ))
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openbao_passes_the_suite() {
    let Some(bao) = OpenBao::shared_or_skip("openbao_passes_the_suite") else {
        return;
    };
    run_writable(
        Arc::new(store(bao).await) as Arc<DynSecretStore>,
        "pgw/conformance",
    )
    .await;
}

#[tokio::test]
async fn a_bad_token_is_permission_denied_and_a_dead_server_unreachable() {
    let Some(bao) = OpenBao::shared_or_skip("a_bad_token_is_permission_denied") else {
        return;
    };
    let bad = VaultStore::new(VaultConfig::new(
        bao.address(),
        "secret",
        SecretString::from("not-the-token"),
    ))
    .await
    .unwrap();
    let e = bad
        .get(&SecretKey::new("x"), GetOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::PermissionDenied { .. }), "{e:?}");
    assert!(!e.to_string().contains("not-the-token"), "{e}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = VaultStore::new(VaultConfig::new(
        format!("http://127.0.0.1:{port}"),
        "secret",
        SecretString::from("t"),
    ))
    .await
    .unwrap();
    let e = dead
        .get(&SecretKey::new("x"), GetOptions::default())
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert!(e.to_string().contains("unreachable"), "{e}");
}
