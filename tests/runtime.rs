//! The Integration runtime end to end: timely expiry, several runtimes, rotation
//! without lockout, owners through discovered tags, audit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgwarden::core::config::{ConfigFormat, IntegrationConfig};
use pgwarden::core::credentials::Credentials;
use pgwarden::core::owners::{InMemoryDirectory, ResolutionReason};
use pgwarden::core::resource::ResourceId;
use pgwarden::rotation::{RotationFault, RotationStep};
use pgwarden::secrets::{InMemory, Operation, PutOptions, SecretKey, SecretStore, SecretStoreExt};
use pgwarden::{AccessRequest, AuditAction, Integration, IntegrationOptions, RecordingAuditSink};
use pgwarden_testkit::TempCluster;
use secrecy::ExposeSecret;

fn cluster() -> &'static TempCluster {
    static C: std::sync::OnceLock<TempCluster> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        let c = TempCluster::builder().max_connections(300).start().unwrap();
        c.create_database("app").unwrap();
        c.psql_in(
            "app",
            "CREATE SCHEMA sales; CREATE TABLE sales.orders (id serial, v text); INSERT INTO sales.orders (v) VALUES ('a');
             CREATE SCHEMA billing; CREATE TABLE billing.invoices (id int);
             COMMENT ON SCHEMA billing IS 'owner=payments';
             COMMENT ON TABLE billing.invoices IS 'Invoices. owner=finance';",
        )
        .unwrap();
        c.psql("COMMENT ON DATABASE app IS 'owner=core'").unwrap();
        c
    })
}

/// A connector role of its own (superuser, as the product's setup asks) per test.
fn connector(name: &str) -> Credentials {
    let password = format!("{name}-initial-pw");
    cluster()
        .psql(&format!("DROP ROLE IF EXISTS {name}; CREATE USER {name} WITH ENCRYPTED PASSWORD '{password}'; ALTER USER {name} WITH SUPERUSER;"))
        .unwrap();
    Credentials::new(name, password)
}

fn config(name: &str, extra: &str) -> IntegrationConfig {
    IntegrationConfig::parse(
        &format!(
            "name = \"{name}\"\nhostname = \"127.0.0.1\"\nport = {}\nssl_mode = \"disable\"\nmax_ttl = \"1h\"\n\
             custom_access_details = \"psql host={{hostname}} port={{port}} user={{username}}\"\n{extra}",
            cluster().port()
        ),
        ConfigFormat::Toml,
    )
    .unwrap()
}

/// The ledger key every integration of this binary shares: they manage one instance.
fn shared_ledger_key() -> pgwarden::pg_driver::LedgerKey {
    static KEY: std::sync::OnceLock<pgwarden::pg_driver::LedgerKey> = std::sync::OnceLock::new();
    KEY.get_or_init(pgwarden::pg_driver::LedgerKey::generate)
        .clone()
}

/// Writes the shared ledger key into the store's credentials document, where an
/// integration looks for it.
async fn seed_ledger_key(store: &InMemory) {
    let key = SecretKey::new("connector");
    let stored = store.get_credentials(&key).await.unwrap();
    let mut document = stored.document.clone();
    document.set(
        pgwarden::ledger_key::LEDGER_KEY_FIELD,
        shared_ledger_key().to_base64().expose_secret(),
    );
    store
        .put(&key, document.to_secret(), PutOptions::overwrite())
        .await
        .unwrap();
}

async fn integration(
    name: &str,
    creds: &Credentials,
    store: Option<Arc<InMemory>>,
    audit: Arc<RecordingAuditSink>,
) -> (Arc<Integration>, Arc<InMemory>) {
    let store = if let Some(s) = store {
        s
    } else {
        let s = Arc::new(InMemory::new());
        s.put_credentials(&SecretKey::new("connector"), creds, PutOptions::create())
            .await
            .unwrap();
        seed_ledger_key(&s).await;
        s
    };
    let options = IntegrationOptions {
        secret_key: Some(SecretKey::new("connector")),
        audit,
        sweep_interval: Duration::from_millis(250),
        scram_iterations: pgwarden::pg_driver::ScramIterations::new(16).unwrap(),
        directories: vec![Arc::new(
            InMemoryDirectory::new("okta")
                .with_group("dba", &["carol"])
                .with_group("payments", &["bob"])
                .with_group("core", &["dave"]),
        )],
        ..IntegrationOptions::default()
    };
    let i = Integration::connect(config(name, ""), store.clone(), options)
        .await
        .unwrap();
    (i, store)
}

fn request(requester: &str, secs: u64) -> AccessRequest {
    AccessRequest::new(
        requester,
        ["postgresql-schema:app/sales=read-only".parse().unwrap()],
        pgwarden::Ttl::from_secs(secs).unwrap(),
    )
    .justification("on call")
}

fn role_exists(name: &str) -> bool {
    cluster()
        .psql(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{name}'"
        ))
        .unwrap()
        .trim()
        == "1"
}

fn can_login(user: &str, password: &str) -> bool {
    cluster()
        .psql_with(&cluster().conninfo(user, password, "app"), "SELECT 1")
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_are_revoked_within_a_second_of_expiry() {
    let audit = Arc::new(RecordingAuditSink::new());
    let (i, _) = integration("expiry", &connector("conn_expiry"), None, audit.clone()).await;
    let runtime = i.run();
    let g = i.grant(request("alice", 3)).await.unwrap();
    assert!(g.access_details.as_deref().unwrap().contains(&g.username));
    assert!(can_login(
        &g.username,
        g.password.as_ref().unwrap().expose_secret()
    ));
    let deadline = g.expires_at + time::Duration::seconds(1);
    while role_exists(&g.username) {
        assert!(
            time::OffsetDateTime::now_utc() < deadline,
            "still there 1 s after expiry"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    runtime.shutdown().await;
    let events = audit.events();
    assert!(
        events
            .iter()
            .any(|e| e.action == AuditAction::Grant && e.grant_id.as_deref() == Some(&g.grant_id))
    );
    assert!(events.iter().any(|e| e.action == AuditAction::Expire
        && e.grant_id.as_deref() == Some(&g.grant_id)
        && !e.failed()));
    for e in &events {
        let text = serde_json::to_string(e).unwrap();
        assert!(
            !text.contains(g.password.as_ref().unwrap().expose_secret()),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_that_expired_while_nothing_ran_are_revoked_at_start_up() {
    let audit = Arc::new(RecordingAuditSink::new());
    let creds = connector("conn_startup");
    let (i, store) = integration("startup", &creds, None, audit.clone()).await;
    let g = i.grant(request("bob", 1)).await.unwrap();
    drop(i);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(role_exists(&g.username));
    let (i, _) = integration("startup", &creds, Some(store), audit.clone()).await;
    let started = Instant::now();
    let runtime = i.run();
    while role_exists(&g.username) {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "not revoked at start-up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runtimes_revoke_every_grant_exactly_once() {
    let creds = connector("conn_two");
    let (a_audit, b_audit) = (
        Arc::new(RecordingAuditSink::new()),
        Arc::new(RecordingAuditSink::new()),
    );
    let (a, store) = integration("two", &creds, None, a_audit.clone()).await;
    let (b, _) = integration("two", &creds, Some(store), b_audit.clone()).await;
    let (ra, rb) = (a.run(), b.run());
    let mut grants = Vec::new();
    for n in 0..6 {
        let by = if n % 2 == 0 { &a } else { &b };
        grants.push(
            by.grant(request(&format!("user{n}"), 2 + n % 2))
                .await
                .unwrap(),
        );
    }
    let started = Instant::now();
    while grants.iter().any(|g| role_exists(&g.username)) {
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "grants left behind"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ra.shutdown().await;
    rb.shutdown().await;
    let all: Vec<_> = a_audit
        .events()
        .into_iter()
        .chain(b_audit.events())
        .collect();
    for g in &grants {
        let revocations = all
            .iter()
            .filter(|e| {
                e.action == AuditAction::Expire && e.grant_id.as_deref() == Some(&g.grant_id)
            })
            .count();
        assert_eq!(
            revocations, 1,
            "grant {} revoked {revocations} times",
            g.grant_id
        );
    }
    let failures: Vec<_> = all.iter().filter(|e| e.failed()).collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_changes_the_password_everywhere() {
    let creds = connector("conn_rotate");
    let audit = Arc::new(RecordingAuditSink::new());
    let (i, store) = integration("rotate", &creds, None, audit.clone()).await;
    i.rotate_credentials().await.unwrap();
    let now = store
        .get_credentials(&SecretKey::new("connector"))
        .await
        .unwrap();
    let new = now.credentials.password.expose_secret().to_owned();
    assert_ne!(new, creds.password.expose_secret());
    assert!(now.pending_password.is_none());
    assert!(
        !can_login(&creds.username, creds.password.expose_secret()),
        "old password still works"
    );
    assert!(can_login(&creds.username, &new), "new password refused");
    // The runtime keeps working with the new password (its pools were rebuilt).
    let g = i.grant(request("eve", 60)).await.unwrap();
    i.revoke(&g.grant_id).await.unwrap();
    assert!(
        audit
            .events()
            .iter()
            .any(|e| e.action == AuditAction::Rotate && !e.failed())
    );
    assert!(
        audit
            .events()
            .iter()
            .all(|e| !serde_json::to_string(e).unwrap().contains(&new))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_or_crash_at_any_rotation_step_never_locks_the_connector_out() {
    let steps = [
        RotationStep::StorePending,
        RotationStep::AlterRole,
        RotationStep::Verify,
        RotationStep::Promote,
    ];
    for (n, step) in steps.into_iter().enumerate() {
        for fault in [RotationFault::Fail, RotationFault::Crash] {
            let name = format!(
                "conn_fault_{n}_{}",
                u8::from(matches!(fault, RotationFault::Crash))
            );
            let creds = connector(&name);
            let audit = Arc::new(RecordingAuditSink::new());
            let (i, store) = integration(&name, &creds, None, audit.clone()).await;
            let hook: pgwarden::rotation::RotationHook =
                Arc::new(move |s| (s == step).then_some(fault));
            assert!(
                i.rotate_with_hook(Some(hook)).await.is_err(),
                "{step:?} {fault:?}"
            );
            drop(i);
            // A restart can log in (finishing the rotation if the role already changed)...
            let (i, store) = integration(&name, &creds, Some(store), audit.clone()).await;
            let stored = store
                .get_credentials(&SecretKey::new("connector"))
                .await
                .unwrap();
            assert!(
                can_login(&creds.username, stored.credentials.password.expose_secret()),
                "{step:?} {fault:?}: the stored password does not work"
            );
            // ...and the next rotation completes.
            i.rotate_credentials().await.unwrap();
            let stored = store
                .get_credentials(&SecretKey::new("connector"))
                .await
                .unwrap();
            assert!(
                can_login(&creds.username, stored.credentials.password.expose_secret()),
                "{step:?} {fault:?}"
            );
        }
    }
    // A real store failure while staging.
    let creds = connector("conn_store_fail");
    let (i, store) = integration(
        "store_fail",
        &creds,
        None,
        Arc::new(RecordingAuditSink::new()),
    )
    .await;
    store.fail_next(
        Operation::Put,
        1,
        pgwarden::secrets::Error::Unreachable {
            backend: "memory",
            key: "connector".into(),
            reason: "scripted".into(),
        },
    );
    assert!(i.rotate_credentials().await.is_err());
    assert!(can_login(&creds.username, creds.password.expose_secret()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_come_from_discovered_comment_tags_with_fallback() {
    let creds = connector("conn_owners");
    let store = Arc::new(InMemory::new());
    store
        .put_credentials(&SecretKey::new("connector"), &creds, PutOptions::create())
        .await
        .unwrap();
    let cfg = config(
        "owners",
        "[[integration_owners]]\nsource = \"okta\"\nattribute = \"group\"\nvalues = [\"dba\"]\n\
         [resource_owner]\nkey = \"owner\"\nsource = \"okta\"\nattribute = \"group\"\n",
    );
    let options = IntegrationOptions {
        secret_key: Some(SecretKey::new("connector")),
        directories: vec![Arc::new(
            InMemoryDirectory::new("okta")
                .with_group("dba", &["carol"])
                .with_group("payments", &["bob"])
                .with_group("core", &["dave"]),
        )],
        ..IntegrationOptions::default()
    };
    let i = Integration::connect(cfg, store, options).await.unwrap();
    // Schema tag, inherited by its tables.
    let r = i
        .approvers(&ResourceId::table("app", "billing", "orders_2024"))
        .await
        .unwrap();
    assert_eq!(r.approvers[0].value, "payments");
    // The table's own tag names a group the directory does not know: the schema's does not
    // apply (the resource's own tag decides), so the integration owner is the fallback.
    let r = i
        .approvers(&ResourceId::table("app", "billing", "invoices"))
        .await
        .unwrap();
    assert!(
        matches!(r.reason, ResolutionReason::IntegrationOwnerFallback { .. }),
        "{r:?}"
    );
    assert_eq!(r.unknown, ["okta:group:finance"]);
    // The database tag.
    let r = i
        .approvers(&ResourceId::schema("app", "sales"))
        .await
        .unwrap();
    assert_eq!(r.approvers[0].value, "core");
    // No tag anywhere.
    let r = i
        .approvers(&ResourceId::database("postgres"))
        .await
        .unwrap();
    assert_eq!(r.approvers[0].value, "dba");
}
