//! Attacks that go through the facade: the SQL of credential rotation and of the
//! expiry sweeper (its lock, its revocations) is as immune to operators and functions
//! planted in `public` as the driver's (see `crates/pg-driver/tests/attacks/`).
//!
//! The traps of `pgwarden_testkit::traps` are planted in every database the runtime
//! touches; the `search_path` pin is turned off, so the SQL itself is what is proven.
//! Then grant, extend, list, rotate, let the sweeper expire a grant, reconcile and
//! discover: no trap may fire, and the would-be attacker is still no superuser.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgwarden::core::config::{ConfigFormat, IntegrationConfig};
use pgwarden::core::credentials::Credentials;
use pgwarden::core::duration::Ttl;
use pgwarden::pg_driver::ConnectOptions;
use pgwarden::secrets::{InMemory, PutOptions, SecretKey, SecretStoreExt};
use pgwarden::{AccessRequest, Integration, IntegrationOptions};
use pgwarden_testkit::{TempCluster, traps};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_operators_never_run_in_rotation_or_the_sweeper() {
    let c = TempCluster::builder()
        .setting("log_min_messages", "warning")
        .start()
        .unwrap();
    c.create_database("fa_app").unwrap();
    c.psql_in(
        "fa_app",
        "CREATE SCHEMA s1; CREATE TABLE s1.t1 (id serial PRIMARY KEY, v text);",
    )
    .unwrap();
    c.psql(
        "CREATE ROLE fa_attacker LOGIN PASSWORD 'fa_attacker';
         CREATE ROLE fa_conn LOGIN SUPERUSER PASSWORD 'fa-conn-initial'",
    )
    .unwrap();
    for db in ["postgres", "fa_app"] {
        c.psql_in(db, &traps::plant_sql("fa_attacker")).unwrap();
    }

    let store = Arc::new(InMemory::new());
    let key = SecretKey::new("connector");
    store
        .put_credentials(
            &key,
            &Credentials::new("fa_conn", "fa-conn-initial"),
            PutOptions::create(),
        )
        .await
        .unwrap();
    let config = IntegrationConfig::parse(
        &format!(
            "name = \"facade-traps\"\nhostname = \"127.0.0.1\"\nport = {}\nssl_mode = \"disable\"\nmax_ttl = \"1h\"\n",
            c.port()
        ),
        ConfigFormat::Toml,
    )
    .unwrap();
    let options = IntegrationOptions {
        secret_key: Some(key),
        connect: ConnectOptions {
            pin_search_path: false,
            ..ConnectOptions::default()
        },
        sweep_interval: Duration::from_millis(200),
        scram_iterations: pgwarden::pg_driver::ScramIterations::new(16).unwrap(),
        ..IntegrationOptions::default()
    };
    let integration = Integration::connect(config, store, options).await.unwrap();
    let runtime = integration.run();
    let request = |requester: &str, secs: u64| {
        AccessRequest::new(
            requester,
            ["postgresql-schema:fa_app/s1=read-write".parse().unwrap()],
            Ttl::from_secs(secs).unwrap(),
        )
        .justification("trap test")
    };
    let kept = integration
        .grant(request("fa-kept@example.com", 600))
        .await
        .unwrap();
    let short = integration
        .grant(request("fa-short@example.com", 1))
        .await
        .unwrap();
    integration
        .extend(&kept.grant_id, Ttl::from_secs(900).unwrap())
        .await
        .unwrap();
    assert!(!integration.list().await.unwrap().is_empty());
    integration.rotate_credentials().await.unwrap();
    // The sweeper expires the short grant.
    let deadline = Instant::now() + Duration::from_secs(15);
    while integration
        .list()
        .await
        .unwrap()
        .iter()
        .any(|g| g.grant_id == short.grant_id)
    {
        assert!(
            Instant::now() < deadline,
            "the sweeper did not expire the grant"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    integration.reconcile().await.unwrap();
    integration.discover().await.unwrap();
    integration.revoke(&kept.grant_id).await.unwrap();
    runtime.shutdown().await;

    for db in ["postgres", "fa_app"] {
        assert_eq!(
            traps::trap_calls(&c, db).unwrap(),
            0,
            "planted operators or functions ran in {db}:\n{}",
            traps::trap_log(&c).unwrap()
        );
    }
    let attacker = c
        .psql("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = 'fa_attacker'")
        .unwrap();
    assert_eq!(attacker.trim(), "f");
}
