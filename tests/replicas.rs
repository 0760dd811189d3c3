//! Replicas sharing one connector role and one file secret store: a rotation by one
//! must not lock the others out (issue 13, item 2).
//!
//! - A replica whose connector password was rotated by another process heals: its
//!   next login fails with "wrong password", it re-reads the store and reconnects,
//!   so it keeps granting and its runtime keeps revoking on time; every public
//!   operation heals that way, once, without doing anything twice.
//! - Rotations through integrations of different names (and databases) that share
//!   the connector role are serialized by one lock per role: both succeed and the
//!   store's password always logs in.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pgwarden::core::config::{ConfigFormat, IntegrationConfig};
use pgwarden::core::credentials::Credentials;
use pgwarden::secrets::{FileStore, PutOptions, SecretKey, SecretStore, SecretStoreExt};
use pgwarden::{AccessRequest, AuditAction, Integration, IntegrationOptions, RecordingAuditSink};
use pgwarden_testkit::TempCluster;
use secrecy::ExposeSecret;
use tokio::time::timeout;

/// Every test ends within this time.
const TEST_TIMEOUT: Duration = Duration::from_secs(90);

fn cluster() -> &'static TempCluster {
    static C: std::sync::OnceLock<TempCluster> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        let c = TempCluster::builder().max_connections(300).start().unwrap();
        c.create_database("app").unwrap();
        c.create_database("app2").unwrap();
        c.psql_in(
            "app",
            "CREATE SCHEMA sales; CREATE TABLE sales.orders (id serial, v text);",
        )
        .unwrap();
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

fn config(name: &str, database: &str) -> IntegrationConfig {
    IntegrationConfig::parse(
        &format!(
            "name = \"{name}\"\nhostname = \"127.0.0.1\"\nport = {}\ndatabase = \"{database}\"\n\
             ssl_mode = \"disable\"\nmax_ttl = \"1h\"\n",
            cluster().port()
        ),
        ConfigFormat::Toml,
    )
    .unwrap()
}

fn key() -> SecretKey {
    SecretKey::new("connector")
}

/// The ledger key every integration of this binary shares: they manage one instance.
fn shared_ledger_key() -> pgwarden::pg_driver::LedgerKey {
    static KEY: std::sync::OnceLock<pgwarden::pg_driver::LedgerKey> = std::sync::OnceLock::new();
    KEY.get_or_init(pgwarden::pg_driver::LedgerKey::generate)
        .clone()
}

/// A file store over `dir` holding `creds` and the shared ledger key (which a
/// rotation must keep).
async fn seed(dir: &Path, creds: &Credentials) {
    let store = FileStore::new(dir);
    store
        .put_credentials(&key(), creds, PutOptions::create())
        .await
        .unwrap();
    let mut document = store.get_credentials(&key()).await.unwrap().document;
    document.set(
        pgwarden::ledger_key::LEDGER_KEY_FIELD,
        shared_ledger_key().to_base64().expose_secret(),
    );
    store
        .put(&key(), document.to_secret(), PutOptions::overwrite())
        .await
        .unwrap();
}

/// An integration as a separate process would make it: a `FileStore` of its own
/// over the shared directory.
async fn integration(name: &str, database: &str, dir: &Path) -> Arc<Integration> {
    audited(name, database, dir, Arc::new(RecordingAuditSink::new())).await
}

async fn audited(
    name: &str,
    database: &str,
    dir: &Path,
    audit: Arc<RecordingAuditSink>,
) -> Arc<Integration> {
    let options = IntegrationOptions {
        secret_key: Some(key()),
        audit,
        sweep_interval: Duration::from_millis(200),
        scram_iterations: pgwarden::pg_driver::ScramIterations::new(16).unwrap(),
        pool_size: 2,
        ..IntegrationOptions::default()
    };
    Integration::connect(
        config(name, database),
        Arc::new(FileStore::new(dir)),
        options,
    )
    .await
    .unwrap()
}

fn request(requester: &str, secs: u64) -> AccessRequest {
    AccessRequest::new(
        requester,
        ["postgresql-schema:app/sales=read-only".parse().unwrap()],
        pgwarden::Ttl::from_secs(secs).unwrap(),
    )
}

fn role_exists(name: &str) -> bool {
    cluster()
        .psql(&format!(
            "SELECT count(*) FROM pg_catalog.pg_roles WHERE rolname = '{name}'"
        ))
        .unwrap()
        .trim()
        == "1"
}

/// How many login roles pgwarden made for `requester`.
fn login_roles_of(requester: &str) -> usize {
    cluster()
        .psql(&format!(
            "SELECT count(*) FROM pg_catalog.pg_roles WHERE {}",
            pgwarden_testkit::login_roles_of(&format!("{requester}(_|$)"))
        ))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn can_login(user: &str, password: &str) -> bool {
    cluster()
        .psql_with(&cluster().conninfo(user, password, "postgres"), "SELECT 1")
        .is_ok()
}

/// Ends every session of `user`, as a network blip or a pool recycling would.
fn terminate_sessions(user: &str) {
    cluster()
        .psql(&format!(
            "SELECT count(pg_catalog.pg_terminate_backend(pid)) FROM pg_catalog.pg_stat_activity WHERE usename = '{user}'"
        ))
        .unwrap();
}

async fn stored_password_logs_in(dir: &Path, user: &str) -> bool {
    let stored = FileStore::new(dir).get_credentials(&key()).await.unwrap();
    assert!(
        stored.pending_password.is_none(),
        "a staged password was left behind"
    );
    can_login(user, stored.credentials.password.expose_secret())
}

/// Waits until `username` is gone, at most `grace` after `expires_at`.
async fn wait_revoked(username: &str, expires_at: time::OffsetDateTime, grace: time::Duration) {
    let deadline = expires_at + grace;
    while role_exists(username) {
        assert!(
            time::OffsetDateTime::now_utc() < deadline,
            "{username} still exists {grace} after its expiry: the surviving replica does not revoke"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The reproduction: one replica rotates and goes away, the connector's sessions
/// end; the survivor must heal when it grants, and revoke on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_survives_a_rotation_by_another_and_revokes_on_time() {
    timeout(TEST_TIMEOUT, async {
        let creds = connector("conn_heal");
        let dir = tempfile::tempdir().unwrap();
        seed(dir.path(), &creds).await;
        let rotating = integration("heal", "postgres", dir.path()).await;
        let survivor = integration("heal", "postgres", dir.path()).await;
        let (r1, r2) = (rotating.run(), survivor.run());
        // Both runtimes are up; one of them is the sweeper.
        tokio::time::sleep(Duration::from_millis(600)).await;

        rotating.rotate_credentials().await.unwrap();
        r1.shutdown().await;
        drop(rotating);
        assert!(
            !can_login(&creds.username, creds.password.expose_secret()),
            "the rotation did not change the password"
        );
        terminate_sessions(&creds.username);

        let g = timeout(Duration::from_secs(15), survivor.grant(request("alice", 2)))
            .await
            .expect("grant hung")
            .expect("the surviving replica cannot grant after another rotated the password");
        assert!(role_exists(&g.username));
        wait_revoked(&g.username, g.expires_at, time::Duration::seconds(4)).await;
        assert!(stored_password_logs_in(dir.path(), &creds.username).await);
        // The survivor is still fully usable.
        survivor.list().await.unwrap();
        r2.shutdown().await;
    })
    .await
    .expect("test timed out");
}

/// The same, with the grant made before the rotation: only the runtime's sweeper can
/// notice that the password changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_made_before_a_rotation_elsewhere_is_still_revoked_on_time() {
    timeout(TEST_TIMEOUT, async {
        let creds = connector("conn_sweep");
        let dir = tempfile::tempdir().unwrap();
        seed(dir.path(), &creds).await;
        let rotating = integration("sweep", "postgres", dir.path()).await;
        let survivor = integration("sweep", "postgres", dir.path()).await;
        let (r1, r2) = (rotating.run(), survivor.run());
        tokio::time::sleep(Duration::from_millis(600)).await;

        let g = survivor.grant(request("bob", 4)).await.unwrap();
        rotating.rotate_credentials().await.unwrap();
        r1.shutdown().await;
        drop(rotating);
        terminate_sessions(&creds.username);
        assert!(
            time::OffsetDateTime::now_utc() < g.expires_at,
            "the setup took longer than the grant"
        );
        wait_revoked(&g.username, g.expires_at, time::Duration::seconds(4)).await;
        assert!(stored_password_logs_in(dir.path(), &creds.username).await);
        r2.shutdown().await;
    })
    .await
    .expect("test timed out");
}

/// Two integrations of different names and databases on one connector role and one
/// store key rotate at the same moment, several times: the rotations are serialized
/// by the connector's lock, both succeed, and everything logs in afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_rotations_on_one_connector_never_lock_it_out() {
    // Boxed: two rotations side by side make a large future.
    timeout(
        TEST_TIMEOUT,
        Box::pin(async {
            let creds = connector("conn_pair");
            let dir = tempfile::tempdir().unwrap();
            seed(dir.path(), &creds).await;
            let a = integration("pair_a", "app", dir.path()).await;
            let b = integration("pair_b", "app2", dir.path()).await;
            for round in 0..5 {
                let (ra, rb) = tokio::join!(a.rotate_credentials(), b.rotate_credentials());
                assert!(ra.is_ok(), "round {round}: pair_a: {:?}", ra.err());
                assert!(rb.is_ok(), "round {round}: pair_b: {:?}", rb.err());
                assert!(
                    stored_password_logs_in(dir.path(), &creds.username).await,
                    "round {round}: the stored password does not log in"
                );
                // New connections only from here on: both must still work.
                terminate_sessions(&creds.username);
                a.list()
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: pair_a: {e}"));
                b.list()
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: pair_b: {e}"));
            }
            // A fresh process starts from the store.
            let fresh = integration("pair_c", "postgres", dir.path()).await;
            fresh.list().await.unwrap();
        }),
    )
    .await
    .expect("test timed out");
}

/// Without any runtime: after each rotation elsewhere (and the connector's sessions
/// ended), every operation of the replica that did not rotate heals by itself, once,
/// and its audit trail shows each operation once, successful.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_heals_after_a_rotation_elsewhere() {
    timeout(TEST_TIMEOUT, async {
        let creds = connector("conn_ops");
        let dir = tempfile::tempdir().unwrap();
        seed(dir.path(), &creds).await;
        let rotating = integration("ops", "postgres", dir.path()).await;
        let audit = Arc::new(RecordingAuditSink::new());
        let replica = audited("ops", "app", dir.path(), audit.clone()).await;
        let rotate_elsewhere = || async {
            rotating.rotate_credentials().await.unwrap();
            terminate_sessions(&creds.username);
        };

        rotate_elsewhere().await;
        let g = replica.grant(request("carol", 600)).await.unwrap();
        // One grant, one login role: the retried grant did not grant twice.
        assert_eq!(login_roles_of("carol"), 1);
        rotate_elsewhere().await;
        replica
            .extend(
                &g.grant_id,
                pgwarden::core::duration::Ttl::from_secs(900).unwrap(),
            )
            .await
            .unwrap();
        rotate_elsewhere().await;
        let listed = replica.list().await.unwrap();
        assert!(listed.iter().any(|l| l.grant_id == g.grant_id));
        rotate_elsewhere().await;
        replica.reconcile().await.unwrap();
        rotate_elsewhere().await;
        let found = replica.discover().await.unwrap();
        assert!(found.failures.is_empty(), "{:?}", found.failures);
        rotate_elsewhere().await;
        replica.revoke(&g.grant_id).await.unwrap();
        assert!(!role_exists(&g.username));
        assert!(stored_password_logs_in(dir.path(), &creds.username).await);

        let events = audit.events();
        let failures: Vec<_> = events.iter().filter(|e| e.failed()).collect();
        assert!(failures.is_empty(), "{failures:#?}");
        for action in [
            AuditAction::Grant,
            AuditAction::Extend,
            AuditAction::Revoke,
            AuditAction::Reconcile,
        ] {
            assert_eq!(
                events.iter().filter(|e| e.action == action).count(),
                1,
                "{action:?}: {events:#?}"
            );
        }
        assert_eq!(login_roles_of("carol"), 0);
    })
    .await
    .expect("test timed out");
}
