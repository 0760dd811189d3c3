//! pgwarden in one minute: grant, use, revoke, on a throwaway PostgreSQL.
//!
//! ```text
//! cargo run --example quickstart                       # starts its own PostgreSQL
//! cargo run --example quickstart -- --dsn "host=... user=postgres password=..."
//! ```
//!
//! It creates the connector user as the product's setup asks, keeps its credentials
//! in an in-memory secret store, discovers the instance, shows who approves access,
//! grants `alice` two minutes of read-only on a schema, shows that SELECT works and
//! INSERT is denied, revokes, shows that alice can no longer log in, and prints the
//! audit trail.

use std::sync::Arc;

use pgwarden::core::conninfo::ConnInfo;
use pgwarden::core::credentials::Credentials;
use pgwarden::core::owners::InMemoryDirectory;
use pgwarden::core::resource::ResourceId;
use pgwarden::pg_driver::{ConnectOptions, Connector, generate_password};
use pgwarden::secrets::{FileStore, PutOptions, SecretStoreExt};
use pgwarden::{AccessRequest, Integration, IntegrationOptions, RecordingAuditSink};
use secrecy::ExposeSecret;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn usage() -> ! {
    eprintln!("usage: quickstart [--dsn \"<superuser conninfo>\"]");
    std::process::exit(2);
}

#[tokio::main(flavor = "current_thread")]
#[allow(clippy::too_many_lines, reason = "a demo script, read top to bottom")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dsn = match args.as_slice() {
        [] => None,
        [flag, dsn] if flag == "--dsn" => Some(dsn.clone()),
        _ => usage(),
    };
    // Keep the throwaway cluster alive until the end.
    let cluster;
    let admin: ConnInfo = if let Some(d) = dsn {
        d.parse()?
    } else {
        println!("starting a throwaway PostgreSQL…");
        cluster = pgwarden_testkit::TempCluster::start()?;
        cluster.dsn().parse()?
    };
    let admin_conn = Connector::new(&admin, &ConnectOptions::default())?
        .connect()
        .await?;

    // 1. The product's setup: a connector user, a demo schema.
    let connector = Credentials {
        username: "pgwarden_connector".into(),
        password: generate_password(),
    };
    admin_conn
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS quickstart CASCADE;
             DO $$ BEGIN CREATE USER pgwarden_connector; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
             ALTER USER pgwarden_connector WITH ENCRYPTED PASSWORD '{}';
             ALTER USER pgwarden_connector WITH SUPERUSER;
             CREATE SCHEMA quickstart;
             COMMENT ON SCHEMA quickstart IS 'Demo data. owner=analytics';
             CREATE TABLE quickstart.orders (id serial PRIMARY KEY, item text);
             INSERT INTO quickstart.orders (item) VALUES ('coffee'), ('tea');",
            connector.password.expose_secret()
        ))
        .await?;
    println!("created the connector user pgwarden_connector (superuser) and schema quickstart");

    // 2. Its credentials live in a secret store: a JSON file here (mode 0600); Vault,
    //    AWS, GCP, Azure or Kubernetes in production, named by the config's [secret].
    let dir = tempfile::tempdir()?;
    let secret_file = dir.path().join("connector.json");
    let (store, key) = FileStore::for_file(&secret_file)?;
    store
        .put_credentials(&key, &connector, PutOptions::create())
        .await?;

    let hosts = admin.hosts()?;
    let host = &hosts[0];
    let config_file = dir.path().join("integration.toml");
    std::fs::write(
        &config_file,
        format!(
            r#"
            name = "quickstart"
            hostname = "{host}"
            port = {port}
            database = "{db}"
            ssl_mode = "prefer"
            max_ttl = "1h"
            custom_access_details = "psql \"host={{hostname}} port={{port}} dbname={{database}} user={{username}}\""
            [[integration_owners]]
            source = "okta"
            attribute = "group"
            values = ["dba"]
            [resource_owner]
            key = "owner"
            source = "okta"
            attribute = "group"
            [secret]
            backend = "file"
            path = {secret_file:?}
            "#,
            host = host
                .host
                .clone()
                .or(host.hostaddr.clone())
                .unwrap_or_else(|| "localhost".into()),
            port = host.port,
            db = admin.dbname().unwrap_or("postgres"),
            secret_file = secret_file.display().to_string(),
        ),
    )?;
    let audit = Arc::new(RecordingAuditSink::new());
    // The ledger key seals what pgwarden records in the instance. The in-memory store
    // starts empty, so a new key is made (and kept there) unless PGWARDEN_LEDGER_KEY
    // gives the one an existing server (--dsn) was managed with before.
    let ledger_key = match std::env::var("PGWARDEN_LEDGER_KEY") {
        Ok(text) => Some(pgwarden::pg_driver::LedgerKey::from_base64(&text)?),
        Err(_) => None,
    };
    let options = IntegrationOptions {
        ledger_key,
        audit: audit.clone(),
        directories: vec![Arc::new(
            InMemoryDirectory::new("okta")
                .with_group("dba", &["carol"])
                .with_group("analytics", &["bob"]),
        )],
        ..IntegrationOptions::default()
    };
    // The two lines a host needs: the config names the store, pgwarden opens it.
    let integration = Integration::from_config(&config_file, options).await?;
    let runtime = integration.run();

    // 3. Discover.
    let found = integration.discover().await?;
    println!("discovered {} resources, e.g.:", found.resources.len());
    for r in found
        .resources
        .iter()
        .filter(|r| r.id.to_string().contains("quickstart"))
    {
        println!("  {}", r.id);
    }

    // 4. Who approves?
    let schema = ResourceId::schema(admin.dbname().unwrap_or("postgres"), "quickstart");
    let who = integration.approvers(&schema).await?;
    let names: Vec<_> = who
        .approvers
        .iter()
        .map(|a| format!("{}:{}:{}", a.source, a.attribute, a.value))
        .collect();
    println!(
        "approvers of {schema}: {} ({:?})",
        names.join(", "),
        who.reason
    );

    // 5. Grant alice two minutes of read-only.
    let grant = integration
        .grant(
            AccessRequest::new(
                "alice@example.com",
                [format!("{schema}=read-only").parse()?],
                "2m".parse()?,
            )
            .justification("quickstart demo"),
        )
        .await?;
    let password = grant.password.clone().ok_or("no password returned")?;
    println!(
        "granted: user {} until {}",
        grant.username,
        rfc3339(grant.expires_at)
    );
    println!(
        "access details: {}",
        grant.access_details.as_deref().unwrap_or("-")
    );

    // 6. Alice connects.
    let mut alice = admin.clone();
    alice.set("user", &grant.username)?;
    alice.set("password", password.expose_secret())?;
    let alice_conn = Connector::new(&alice, &ConnectOptions::default())?
        .connect()
        .await?;
    let n: i64 = alice_conn
        .query_one("SELECT count(*) FROM quickstart.orders", &[])
        .await?
        .get(0);
    println!("alice: SELECT works ({n} orders)");
    match alice_conn
        .batch_execute("INSERT INTO quickstart.orders (item) VALUES ('cake')")
        .await
    {
        Err(e) => println!(
            "alice: INSERT denied ({})",
            e.as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned())
        ),
        Ok(()) => return Err("INSERT should have been denied".into()),
    }

    // 7. Revoke.
    let report = integration.revoke(&grant.grant_id).await?;
    println!(
        "revoked: {} session(s) ended, memberships removed: {}, role dropped: {}",
        report.sessions_terminated,
        report.memberships_removed.len(),
        report.role_dropped
    );
    match Connector::new(&alice, &ConnectOptions::default())?
        .connect()
        .await
    {
        Err(e) => println!("alice can no longer log in: {e}"),
        Ok(_) => return Err("alice could still log in".into()),
    }

    runtime.shutdown().await;
    println!("audit trail:");
    for e in audit.events() {
        println!(
            "  {} {:?} {} {}",
            rfc3339(e.at),
            e.action,
            e.grant_id.as_deref().unwrap_or("-"),
            e.detail
        );
    }
    admin_conn
        .batch_execute("DROP SCHEMA quickstart CASCADE")
        .await?;
    Ok(())
}
