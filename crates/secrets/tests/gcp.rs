//! The conformance suite against real GCP Secret Manager. Runs only when
//! `PGWARDEN_TEST_GCP_PROJECT` names a project where Application Default Credentials
//! may create and delete secrets; otherwise prints why it skips. No local emulator
//! of Secret Manager exists.
#![cfg(feature = "gcp")]

use std::sync::Arc;

use pgwarden_secrets::DynSecretStore;
use pgwarden_secrets::gcp::{GcpConfig, GcpStore};
use pgwarden_testkit::secret_conformance::run_writable;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_secret_manager_passes_the_suite() {
    let Some(project) = std::env::var("PGWARDEN_TEST_GCP_PROJECT")
        .ok()
        .filter(|p| !p.is_empty())
    else {
        eprintln!(
            "skipping gcp_secret_manager_passes_the_suite: set PGWARDEN_TEST_GCP_PROJECT (and Application Default Credentials) to run it against GCP Secret Manager"
        );
        return;
    };
    let store = GcpStore::new(GcpConfig::new(project))
        .await
        .expect("GCP Secret Manager client");
    run_writable(Arc::new(store) as Arc<DynSecretStore>, "pgw-conformance").await;
}
