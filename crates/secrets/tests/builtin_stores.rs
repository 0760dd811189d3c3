//! The conformance suite on the always-built stores: in-memory, file, env.

use std::sync::Arc;

use pgwarden_secrets::{DynSecretStore, EnvStore, FileStore, InMemory, SecretKey};
use pgwarden_testkit::secret_conformance::{
    ReadOnlyFixture, UNICODE_USERNAME, check_read_only, large_password, run_writable,
};

#[tokio::test]
async fn in_memory_passes_the_suite() {
    run_writable(Arc::new(InMemory::new()) as Arc<DynSecretStore>, "mem").await;
}

#[tokio::test]
async fn in_memory_with_stages_passes_the_suite() {
    run_writable(
        Arc::new(InMemory::with_stages()) as Arc<DynSecretStore>,
        "mem-stages",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    run_writable(
        Arc::new(FileStore::new(dir.path())) as Arc<DynSecretStore>,
        "file",
    )
    .await;
    // Every check cleaned up, and no temporary file was left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn env_store_passes_the_read_checks() {
    let password = large_password();
    let store = EnvStore::from_vars([
        ("PGW_USER", UNICODE_USERNAME.to_owned()),
        ("PGW_PASSWORD", password.clone()),
        (
            "PGW_DOC",
            serde_json::json!({"username": UNICODE_USERNAME, "password": password}).to_string(),
        ),
        ("PGW_NOT_JSON", "hunter2 is not json".to_owned()),
        ("PGW_NO_PASSWORD", r#"{"username": "u"}"#.to_owned()),
    ]);
    for present in [
        EnvStore::pair_key("PGW_USER", "PGW_PASSWORD"),
        SecretKey::new("PGW_DOC"),
    ] {
        let fixture = ReadOnlyFixture {
            present,
            missing: SecretKey::new("PGW_MISSING"),
            not_json: Some(SecretKey::new("PGW_NOT_JSON")),
            no_password: SecretKey::new("PGW_NO_PASSWORD"),
        };
        check_read_only(&store, &fixture).await;
    }
    // A pair whose password variable is unset names that variable.
    let e = pgwarden_secrets::SecretStoreExt::get_credentials(
        &store,
        &EnvStore::pair_key("PGW_USER", "PGW_UNSET"),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("$PGW_UNSET"), "{e}");
}
