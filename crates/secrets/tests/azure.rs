//! The conformance suite against a real Azure Key Vault. Runs only when
//! `PGWARDEN_TEST_AZURE_VAULT_URL` is set (credential: `$PGWARDEN_AZURE_CREDENTIAL`,
//! `auto` by default); otherwise prints why it skips. No local emulator of Key Vault
//! exists. Deleted test secrets stay soft-deleted until purged.
#![cfg(feature = "azure")]

use std::sync::Arc;

use pgwarden_secrets::DynSecretStore;
use pgwarden_secrets::azure::AzureStore;
use pgwarden_testkit::secret_conformance::run_writable;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_key_vault_passes_the_suite() {
    let Some(url) = std::env::var("PGWARDEN_TEST_AZURE_VAULT_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!(
            "skipping azure_key_vault_passes_the_suite: set PGWARDEN_TEST_AZURE_VAULT_URL (https://<vault>.vault.azure.net) and an Azure credential to run it against Key Vault"
        );
        return;
    };
    let store = AzureStore::from_env(&url).expect("Key Vault client");
    run_writable(Arc::new(store) as Arc<DynSecretStore>, "pgw-conformance").await;
}
