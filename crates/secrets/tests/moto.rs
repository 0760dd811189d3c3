//! The conformance suite against a real moto server (AWS Secrets Manager API).
//! Skips with a printed reason when `moto_server` is not installed, unless
//! `PGWARDEN_REQUIRE_SECRET_SERVERS=1`.
#![cfg(feature = "aws")]

use std::sync::Arc;

use pgwarden_secrets::aws::AwsStore;
use pgwarden_secrets::aws::aws_config::{self, BehaviorVersion, Region};
use pgwarden_secrets::aws::aws_sdk_secretsmanager::config::Credentials;
use pgwarden_secrets::{DynSecretStore, GetOptions, PutOptions, SecretKey, SecretStore, Version};
use pgwarden_testkit::Moto;
use pgwarden_testkit::moto::{MOTO_ACCESS_KEY_ID, MOTO_REGION, MOTO_SECRET_ACCESS_KEY};
use pgwarden_testkit::secret_conformance::run_writable;
use secrecy::SecretString;

async fn store(endpoint: &str) -> AwsStore {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(MOTO_REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            MOTO_ACCESS_KEY_ID,
            MOTO_SECRET_ACCESS_KEY,
            None,
            None,
            "pgwarden-test",
        ))
        .load()
        .await;
    AwsStore::from_sdk_config(&config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_passes_the_suite() {
    let Some(moto) = Moto::shared_or_skip("moto_passes_the_suite") else {
        return;
    };
    run_writable(
        Arc::new(store(moto.endpoint()).await) as Arc<DynSecretStore>,
        "pgw-conformance",
    )
    .await;
}

#[tokio::test]
async fn compare_and_set_is_refused_and_a_dead_endpoint_is_unreachable() {
    let Some(moto) = Moto::shared_or_skip("compare_and_set_is_refused") else {
        return;
    };
    let s = store(moto.endpoint()).await;
    let e = s
        .put(
            &SecretKey::new("pgw-no-cas"),
            SecretString::from("{}"),
            PutOptions::expect_version(Version::new("v")),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no compare-and-set"), "{e}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = store(&format!("http://127.0.0.1:{port}")).await;
    let e = dead
        .get(&SecretKey::new("x"), GetOptions::default())
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e:?}");
}
