//! The conformance suite every [`SecretStore`] backend's tests call.
//!
//! Like `object_store`'s `integration.rs`: each check is an async function taking the
//! store, gated on its declared [`Capabilities`], never on its backend name.
//! [`run_writable`] runs them all on a store that can write; [`check_read_only`] covers
//! read-only stores (env) from values the test seeded itself.
//!
//! Keys are made unique per run ([`unique_key`]) so a shared server can serve many
//! tests, and every check deletes what it wrote. Checks fail by panicking, as tests do.

#![allow(
    clippy::missing_panics_doc,
    reason = "every check is an assertion: panicking is how it reports"
)]

use std::sync::Arc;

use pgwarden_core::credentials::Credentials;
use pgwarden_secrets::{
    Capabilities, DynSecretStore, Error, GetOptions, PutOptions, SecretKey, SecretStore,
    SecretStoreExt, Version,
};
use secrecy::{ExposeSecret, SecretString};

/// A key no other test uses: `<prefix>-<pid>-<counter>-<name>`.
#[must_use]
pub fn unique_key(prefix: &str, name: &str) -> SecretKey {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    SecretKey::new(format!(
        "{prefix}-{}-{nanos}-{n}-{name}",
        std::process::id()
    ))
}

/// A username with characters from several scripts, for the unicode check.
pub const UNICODE_USERNAME: &str = "connecteur_ñ_日本_😀";

/// A 64 KiB password (printable ASCII, varied), for the size check.
#[must_use]
pub fn large_password() -> String {
    (0..64 * 1024u32)
        .map(|i| char::from(b'a' + u8::try_from(i % 26).unwrap_or(0)))
        .collect()
}

fn credentials_json(username: &str, password: &str) -> SecretString {
    SecretString::from(
        serde_json::json!({ "username": username, "password": password }).to_string(),
    )
}

async fn cleanup(store: &DynSecretStore, key: &SecretKey) {
    if store.capabilities().delete {
        let _ = store.delete(key).await;
    }
}

/// Runs every check that `store`'s capabilities allow. Needs `write`.
pub async fn run_writable(store: Arc<DynSecretStore>, prefix: &str) {
    let caps = store.capabilities();
    assert!(caps.write, "run_writable needs a store that can write");
    not_found(&*store, prefix).await;
    get_put_delete(&*store, prefix).await;
    credentials_round_trip(&*store, prefix).await;
    malformed(&*store, prefix).await;
    unicode_and_large_values(&*store, prefix).await;
    versions(&*store, prefix).await;
    if caps.compare_and_set {
        compare_and_set(&*store, prefix).await;
        concurrent_compare_and_set(Arc::clone(&store), prefix).await;
    }
    if caps.stages {
        stages(&*store, prefix).await;
    }
    rotation(&*store, prefix).await;
}

/// A missing key is `NotFound`, naming the backend; deleting it succeeds.
pub async fn not_found(store: &DynSecretStore, prefix: &str) {
    let key = unique_key(prefix, "missing");
    let e = store
        .get(&key, GetOptions::default())
        .await
        .expect_err("reading a missing secret must fail");
    assert!(e.is_not_found(), "{e:?}");
    assert_eq!(e.backend(), store.backend());
    assert!(e.to_string().contains("not found"), "{e}");
    let e = store.get_credentials(&key).await.unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    if store.capabilities().delete {
        store
            .delete(&key)
            .await
            .expect("deleting a missing secret succeeds");
    }
}

/// Put, get the same text back with the returned version, overwrite, delete.
pub async fn get_put_delete(store: &DynSecretStore, prefix: &str) {
    let key = unique_key(prefix, "round-trip");
    let v1 = store
        .put(
            &key,
            credentials_json("alice", "first"),
            PutOptions::default(),
        )
        .await
        .expect("put");
    let got = store.get(&key, GetOptions::default()).await.expect("get");
    assert_same_document(got.expose(), r#"{"username":"alice","password":"first"}"#);
    assert_eq!(got.version, v1);
    let v2 = store
        .put(
            &key,
            credentials_json("alice", "second"),
            PutOptions::default(),
        )
        .await
        .expect("overwrite");
    let got = store.get(&key, GetOptions::default()).await.expect("get");
    assert_same_document(got.expose(), r#"{"username":"alice","password":"second"}"#);
    assert_eq!(got.version, v2);
    if store.capabilities().delete {
        store.delete(&key).await.expect("delete");
        let e = store.get(&key, GetOptions::default()).await.unwrap_err();
        assert!(e.is_not_found(), "after delete: {e:?}");
    }
    cleanup(store, &key).await;
}

fn assert_same_document(got: &str, expected: &str) {
    let got: serde_json::Value = serde_json::from_str(got).expect("stored JSON reads back as JSON");
    let expected: serde_json::Value = serde_json::from_str(expected).unwrap();
    assert!(got == expected, "document changed in the store");
}

/// `put_credentials` keeps other fields; `get_credentials` reads them back.
pub async fn credentials_round_trip(store: &DynSecretStore, prefix: &str) {
    let key = unique_key(prefix, "credentials");
    store
        .put(
            &key,
            SecretString::from(
                r#"{"username":"old","password":"old-pw","host":"db.internal","port":"5432"}"#,
            ),
            PutOptions::default(),
        )
        .await
        .expect("put");
    let v = store
        .put_credentials(
            &key,
            &Credentials::new("connector", "p@ss \"w0rd\""),
            PutOptions::default(),
        )
        .await
        .expect("put_credentials");
    let c = store.get_credentials(&key).await.expect("get_credentials");
    assert_eq!(c.credentials.username, "connector");
    assert_eq!(c.credentials.password.expose_secret(), "p@ss \"w0rd\"");
    assert_eq!(c.document.fields()["host"], "db.internal");
    assert_eq!(c.document.fields()["port"], "5432");
    assert_eq!(c.version, v);
    assert!(c.pending_password.is_none());
    cleanup(store, &key).await;
}

/// Documents that are not JSON or lack a password are `Malformed`, and the message
/// holds no part of the value.
pub async fn malformed(store: &DynSecretStore, prefix: &str) {
    let key = unique_key(prefix, "malformed");
    if store.capabilities().any_text {
        store
            .put(
                &key,
                SecretString::from("hunter2 is not json"),
                PutOptions::default(),
            )
            .await
            .expect("put text");
        let e = store.get_credentials(&key).await.unwrap_err();
        assert!(matches!(e, Error::Malformed { .. }), "{e:?}");
        assert!(e.to_string().contains("not JSON"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
    } else {
        let e = store
            .put(
                &key,
                SecretString::from("hunter2 is not json"),
                PutOptions::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Malformed { .. }), "{e:?}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
    store
        .put(
            &key,
            SecretString::from(r#"{"username":"hunter2-user"}"#),
            PutOptions::default(),
        )
        .await
        .expect("put");
    let e = store.get_credentials(&key).await.unwrap_err();
    assert!(e.to_string().contains("no \"password\" field"), "{e}");
    store
        .put(
            &key,
            SecretString::from(r#"{"password":"hunter2"}"#),
            PutOptions::default(),
        )
        .await
        .expect("put");
    let e = store.get_credentials(&key).await.unwrap_err();
    assert!(e.to_string().contains("no \"username\" field"), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    cleanup(store, &key).await;
}

/// Unicode usernames and 64 KiB passwords survive the round trip.
pub async fn unicode_and_large_values(store: &DynSecretStore, prefix: &str) {
    let key = unique_key(prefix, "large");
    let password = large_password();
    store
        .put_credentials(
            &key,
            &Credentials::new(UNICODE_USERNAME, password.clone()),
            PutOptions::default(),
        )
        .await
        .expect("put a 64 KiB unicode document");
    let c = store.get_credentials(&key).await.expect("get");
    assert_eq!(c.credentials.username, UNICODE_USERNAME);
    assert!(
        c.credentials.password.expose_secret() == password,
        "64 KiB password changed"
    );
    cleanup(store, &key).await;
}

/// With `versions`, every put returns a new version that `get` then reports.
pub async fn versions(store: &DynSecretStore, prefix: &str) {
    if !store.capabilities().versions {
        return;
    }
    let key = unique_key(prefix, "versions");
    let mut seen: Vec<Version> = Vec::new();
    for i in 0..3 {
        let v = store
            .put(
                &key,
                credentials_json("u", &format!("p{i}")),
                PutOptions::default(),
            )
            .await
            .expect("put");
        assert!(!seen.contains(&v), "version {v} repeated");
        assert_eq!(
            store
                .get(&key, GetOptions::default())
                .await
                .unwrap()
                .version,
            v
        );
        seen.push(v);
    }
    cleanup(store, &key).await;
}

/// Create-only and expected-version writes: stale versions conflict, fresh ones win.
pub async fn compare_and_set(store: &DynSecretStore, prefix: &str) {
    let key = unique_key(prefix, "cas");
    let v1 = store
        .put(&key, credentials_json("u", "one"), PutOptions::create())
        .await
        .expect("create");
    let e = store
        .put(&key, credentials_json("u", "again"), PutOptions::create())
        .await
        .unwrap_err();
    assert!(e.is_conflict(), "second create: {e:?}");
    let v2 = store
        .put(
            &key,
            credentials_json("u", "two"),
            PutOptions::expect_version(v1.clone()),
        )
        .await
        .expect("update at the current version");
    let e = store
        .put(
            &key,
            credentials_json("u", "stale"),
            PutOptions::expect_version(v1),
        )
        .await
        .unwrap_err();
    assert!(e.is_conflict(), "stale update: {e:?}");
    assert!(e.to_string().contains("changed concurrently"), "{e}");
    let c = store.get_credentials(&key).await.unwrap();
    assert_eq!(c.credentials.password.expose_secret(), "two");
    assert_eq!(c.version, v2);
    // Through the credentials helper too.
    let e = store
        .put_credentials(
            &key,
            &Credentials::new("u", "x"),
            PutOptions::expect_version(Version::new("999999")),
        )
        .await
        .unwrap_err();
    assert!(e.is_conflict(), "{e:?}");
    cleanup(store, &key).await;
}

/// 16 writers race with the same expected version: exactly one wins, twice over.
pub async fn concurrent_compare_and_set(store: Arc<DynSecretStore>, prefix: &str) {
    const WRITERS: usize = 16;
    let key = unique_key(prefix, "race");
    let mut version = store
        .put(&key, credentials_json("u", "start"), PutOptions::create())
        .await
        .expect("create");
    for round in 0..2 {
        let mut tasks = tokio::task::JoinSet::new();
        for writer in 0..WRITERS {
            let store = Arc::clone(&store);
            let key = key.clone();
            let expected = version.clone();
            tasks.spawn(async move {
                let password = format!("round{round}-writer{writer}");
                let result = store
                    .put(
                        &key,
                        credentials_json("u", &password),
                        PutOptions::expect_version(expected),
                    )
                    .await;
                (password, result)
            });
        }
        let mut winners = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (password, result) = joined.expect("writer task");
            match result {
                Ok(v) => winners.push((password, v)),
                Err(e) => assert!(e.is_conflict(), "a losing writer must see Conflict: {e:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one writer wins");
        let (password, v) = winners.pop().unwrap();
        let c = store.get_credentials(&key).await.unwrap();
        assert_eq!(c.credentials.password.expose_secret(), password);
        assert_eq!(c.version, v);
        version = v;
    }
    cleanup(&*store, &key).await;
}

/// Native stages: a pending version is separate from the current one until promoted.
pub async fn stages(store: &DynSecretStore, prefix: &str) {
    let key = unique_key(prefix, "stages");
    let current = store
        .put(
            &key,
            credentials_json("u", "current"),
            PutOptions::default(),
        )
        .await
        .expect("put");
    let pending = store
        .put(
            &key,
            credentials_json("u", "pending"),
            PutOptions::overwrite().pending(),
        )
        .await
        .expect("put pending");
    assert_ne!(pending, current);
    let got = store.get(&key, GetOptions::default()).await.unwrap();
    assert_eq!(
        got.version, current,
        "a pending put leaves the current version"
    );
    let got = store.get(&key, GetOptions::pending()).await.unwrap();
    assert_eq!(got.version, pending);
    store.promote(&key, &pending).await.expect("promote");
    let got = store.get(&key, GetOptions::default()).await.unwrap();
    assert_eq!(got.version, pending);
    let e = store.get(&key, GetOptions::pending()).await.unwrap_err();
    assert!(e.is_not_found(), "no pending version after promote: {e:?}");
    let e = store.promote(&key, &current).await.unwrap_err();
    assert!(
        e.is_conflict(),
        "promoting a version that is not pending: {e:?}"
    );
    cleanup(store, &key).await;
}

/// The rotation protocol of the crate docs, through the extension helpers.
pub async fn rotation(store: &DynSecretStore, prefix: &str) {
    let key = unique_key(prefix, "rotation");
    store
        .put(
            &key,
            SecretString::from(r#"{"username":"connector","password":"old","note":"keep"}"#),
            PutOptions::default(),
        )
        .await
        .expect("put");
    assert!(store.pending_password(&key).await.unwrap().is_none());
    let current = store.get_credentials(&key).await.unwrap();
    let staged = store
        .stage_password(&key, &current, &SecretString::from("new"))
        .await
        .expect("stage");
    // The old password is still the one in use.
    let now = store.get_credentials(&key).await.unwrap();
    assert_eq!(now.credentials.password.expose_secret(), "old");
    let pending = store
        .pending_password(&key)
        .await
        .unwrap()
        .expect("a staged password is pending");
    assert_eq!(pending.password.expose_secret(), "new");
    assert_eq!(pending.version, staged);
    store
        .promote_password(&key, &staged)
        .await
        .expect("promote");
    let now = store.get_credentials(&key).await.unwrap();
    assert_eq!(now.credentials.password.expose_secret(), "new");
    assert_eq!(now.document.fields()["note"], "keep");
    assert!(store.pending_password(&key).await.unwrap().is_none());
    if store.capabilities().compare_and_set && !store.capabilities().stages {
        // A stale stage (someone rotated meanwhile) conflicts instead of clobbering.
        let e = store
            .stage_password(&key, &current, &SecretString::from("late"))
            .await
            .unwrap_err();
        assert!(e.is_conflict(), "{e:?}");
    }
    cleanup(store, &key).await;
}

/// What a read-only store was seeded with.
#[derive(Debug, Clone)]
pub struct ReadOnlyFixture {
    /// A key holding credentials with [`UNICODE_USERNAME`] and [`large_password`].
    pub present: SecretKey,
    /// A key that does not exist.
    pub missing: SecretKey,
    /// A key whose value is not JSON (`hunter2 is not json`), if the store can hold one.
    pub not_json: Option<SecretKey>,
    /// A key whose document has a username and no password.
    pub no_password: SecretKey,
}

/// The read checks on a store that cannot write, seeded as `fixture` says.
pub async fn check_read_only(store: &DynSecretStore, fixture: &ReadOnlyFixture) {
    let caps: Capabilities = store.capabilities();
    let c = store
        .get_credentials(&fixture.present)
        .await
        .expect("seeded credentials");
    assert_eq!(c.credentials.username, UNICODE_USERNAME);
    assert!(c.credentials.password.expose_secret() == large_password());
    let e = store
        .get(&fixture.missing, GetOptions::default())
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    if let Some(key) = &fixture.not_json {
        let e = store.get_credentials(key).await.unwrap_err();
        assert!(matches!(e, Error::Malformed { .. }), "{e:?}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
    let e = store
        .get_credentials(&fixture.no_password)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no \"password\" field"), "{e}");
    if !caps.write {
        let e = store
            .put(
                &fixture.present,
                credentials_json("u", "p"),
                PutOptions::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, Error::NotImplemented { .. }), "{e:?}");
    }
    if !caps.delete {
        let e = store.delete(&fixture.present).await.unwrap_err();
        assert!(matches!(e, Error::NotImplemented { .. }), "{e:?}");
    }
}
