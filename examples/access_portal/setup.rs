//! The portal's demo setup: a throwaway PostgreSQL with an `app` database, the
//! integration `orders-prod` on it, the flows of `examples/flows/`, and requests kept
//! in the instance. Shared by the example and its test.

use std::sync::Arc;

use pgwarden::core::config::ConfigFormat;
use pgwarden::core::credentials::Credentials;
use pgwarden::core::flows::FlowSet;
use pgwarden::core::owners::InMemoryDirectory;
use pgwarden::pg_driver::generate_password;
use pgwarden::secrets::{InMemory, PutOptions, SecretKey, SecretStoreExt};
use pgwarden::{AccessRequests, Integration, IntegrationConfig, IntegrationOptions, RunHandle};
use pgwarden_testkit::TempCluster;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A throwaway cluster with the demo's data: `app.analytics.orders`, and
/// `app.analytics.customers` tagged `pii=true`. It preloads pgaudit when the server's
/// installation has it: the break-glass flow logs every statement through it, and is
/// refused (the request fails, saying why) on a server without it.
pub(crate) fn cluster() -> Result<TempCluster> {
    let mut builder = TempCluster::builder();
    if pgwarden_testkit::PgBinaries::locate(None, None).is_ok_and(|b| b.has_library("pgaudit")) {
        builder = builder.setting("shared_preload_libraries", "pgaudit");
    }
    let cluster = builder.start()?;
    cluster.create_database("app")?;
    cluster.psql_in(
        "app",
        "CREATE SCHEMA analytics;
         CREATE TABLE analytics.orders (id int, total numeric);
         CREATE TABLE analytics.customers (id int, email text);
         COMMENT ON TABLE analytics.customers IS 'pii=true';
         INSERT INTO analytics.orders VALUES (1, 9.5), (2, 20);",
    )?;
    Ok(cluster)
}

/// The integration `orders-prod` on `cluster` (its own superuser connector), running,
/// with its requests decided by `examples/flows/` and kept in the instance.
pub(crate) async fn portal(cluster: &TempCluster) -> Result<(Arc<AccessRequests>, RunHandle)> {
    let connector = Credentials {
        username: "pgwarden_connector".into(),
        password: generate_password(),
    };
    {
        use secrecy::ExposeSecret;
        cluster.psql(&format!(
            "CREATE USER pgwarden_connector SUPERUSER PASSWORD '{}'",
            connector.password.expose_secret()
        ))?;
    }
    let config = IntegrationConfig::parse(
        &format!(
            "name = \"orders-prod\"\nhostname = \"127.0.0.1\"\nport = {}\ndatabase = \"app\"\n\
             ssl_mode = \"disable\"\nmax_ttl = \"8h\"\n\
             [[integration_owners]]\nsource = \"okta\"\nattribute = \"group\"\nvalues = [\"dba\"]\n",
            cluster.port()
        ),
        ConfigFormat::Toml,
    )?;
    let store = Arc::new(InMemory::new());
    let key = SecretKey::new("connector");
    store
        .put_credentials(&key, &connector, PutOptions::create())
        .await?;
    let okta = InMemoryDirectory::new("okta")
        .with_group("engineering", &["alice"])
        .with_group("analysts", &["alice"])
        .with_group("dba", &["bob"])
        .with_group("team-leads", &["carol"])
        .with_group("on-call", &["dave"])
        .with_group("data-stewards", &["erin"]);
    let integration = Integration::connect(
        config,
        store,
        IntegrationOptions {
            secret_key: Some(key),
            directories: vec![Arc::new(okta)],
            ..IntegrationOptions::default()
        },
    )
    .await?;
    let flows = FlowSet::load(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/flows"))?;
    // Expiry, rotation and reconciliation, for as long as the portal runs.
    let runtime = integration.run();
    let requests = AccessRequests::open(integration, flows, None).await?;
    Ok((requests, runtime))
}
