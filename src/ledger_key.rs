//! The ledger key: kept in the secret store, in the connector's credentials document.
//!
//! Every ledger record pgwarden writes into the instance is sealed with this key (see
//! [`LedgerKey`]). It lives beside the connector's credentials, as the
//! document's `ledger_key` field (base64 of 32 random bytes), so that:
//! - every replica reading the same document uses the same key;
//! - a credential rotation keeps it (rotation rewrites the password and keeps the
//!   document's other fields);
//! - it is created on first use: the first process that finds none writes a new one,
//!   conditionally on the version it read where the store can compare-and-set, and
//!   every process then uses what the store holds.
//!
//! Integrations that manage the same instance must hold the same key: copy the field
//! into each one's document, or pass [`IntegrationOptions::ledger_key`](crate::IntegrationOptions::ledger_key).

use pgwarden_pg_driver::LedgerKey;
use pgwarden_secrets::{DynSecretStore, PutOptions, SecretKey, SecretStoreExt};
use secrecy::ExposeSecret;

use crate::IntegrationError;

/// The field of the credentials document that holds the ledger key.
pub const LEDGER_KEY_FIELD: &str = "ledger_key";

/// The ledger key stored with the credentials at `key`, created (and stored) when
/// the document has none yet.
pub async fn load_or_create_ledger_key(
    store: &DynSecretStore,
    key: &SecretKey,
) -> Result<LedgerKey, IntegrationError> {
    for _ in 0..5 {
        let stored = store.get_credentials(key).await?;
        if let Some(text) = stored
            .document
            .fields()
            .get(LEDGER_KEY_FIELD)
            .and_then(serde_json::Value::as_str)
        {
            return LedgerKey::from_base64(text).map_err(|e| {
                IntegrationError::Config(format!(
                    "field {LEDGER_KEY_FIELD} of secret {key} in {store}: {e}"
                ))
            });
        }
        let capabilities = store.capabilities();
        if !capabilities.write {
            return Err(IntegrationError::Config(format!(
                "secret {key} in {store} has no {LEDGER_KEY_FIELD} field and the store is read-only: add one holding 32 random bytes in base64 (e.g. from `openssl rand -base64 32`); every integration managing this instance must use the same value"
            )));
        }
        let fresh = LedgerKey::generate();
        let mut document = stored.document.clone();
        document.set(LEDGER_KEY_FIELD, fresh.to_base64().expose_secret());
        let options = if capabilities.compare_and_set {
            PutOptions::expect_version(stored.version.clone())
        } else {
            PutOptions::overwrite()
        };
        match store.put(key, document.to_secret(), options).await {
            // Read back: without compare-and-set another process may have written
            // its own key meanwhile; whatever the store holds now is the key.
            Ok(_) => {
                tracing::info!(secret = %key, "created the ledger key in the secret store");
            }
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(IntegrationError::Config(format!(
        "could not store a ledger key in secret {key} in {store}: it kept changing under concurrent writers; retry"
    )))
}
