//! The API a host touches, as the README shows it: a config file whose `[secret]`
//! names the store, `Integration::from_config`, typed requests and entries, one grant
//! type from `grant`, `extend` and `list`, and errors a host branches on by kind.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pgwarden::core::credentials::Credentials;
use pgwarden::secrets::{FileStore, PutOptions, SecretStoreExt};
use pgwarden::{
    AccessEntry, AccessGrant, AccessRequest, AuditAction, ErrorKind, ExposeSecret, Integration,
    IntegrationError, IntegrationOptions, InvalidReason, ListedState, PermissionLevel,
    RecordingAuditSink, ResourceId, ScramIterations, Ttl,
};
use pgwarden_testkit::TempCluster;

fn cluster() -> &'static TempCluster {
    static C: std::sync::OnceLock<TempCluster> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        let c = TempCluster::start().unwrap();
        c.create_database("app").unwrap();
        c.psql_in(
            "app",
            "CREATE SCHEMA sales; CREATE TABLE sales.orders (id int); INSERT INTO sales.orders VALUES (1);",
        )
        .unwrap();
        c
    })
}

/// A superuser connector of its own, its credentials in a JSON file, and a config
/// file naming that file in `[secret]`. Returns the config file's path.
async fn setup(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let password = format!("{name}-pw");
    cluster()
        .psql(&format!(
            "DROP ROLE IF EXISTS {name}; CREATE USER {name} SUPERUSER PASSWORD '{password}'"
        ))
        .unwrap();
    let secret_file = dir.join(format!("{name}.json"));
    let (store, key) = FileStore::for_file(&secret_file).unwrap();
    store
        .put_credentials(
            &key,
            &Credentials::new(name, password),
            PutOptions::create(),
        )
        .await
        .unwrap();
    let config_file = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config_file,
        format!(
            "name = \"{name}\"\nhostname = \"127.0.0.1\"\nport = {port}\ndatabase = \"app\"\n\
             ssl_mode = \"disable\"\nmax_ttl = \"1h\"\n{extra}\n\
             [secret]\nbackend = \"file\"\npath = \"{path}\"\n",
            port = cluster().port(),
            path = secret_file.display(),
        ),
    )
    .unwrap();
    config_file
}

/// The tests' integrations manage one instance: they share one ledger key (else the
/// second refuses the ledger the first sealed, as it should).
fn options(audit: Arc<RecordingAuditSink>) -> IntegrationOptions {
    static KEY: std::sync::OnceLock<pgwarden::pg_driver::LedgerKey> = std::sync::OnceLock::new();
    IntegrationOptions {
        audit,
        ledger_key: Some(
            KEY.get_or_init(pgwarden::pg_driver::LedgerKey::generate)
                .clone(),
        ),
        scram_iterations: ScramIterations::new(16).unwrap(),
        ..IntegrationOptions::default()
    }
}

fn read_only_sales() -> AccessEntry {
    AccessEntry::new(
        ResourceId::schema("app", "sales"),
        PermissionLevel::ReadOnly,
    )
    .unwrap()
}

/// Whether libpq (psql) logs in with the grant's password.
fn can_log_in(grant: &AccessGrant) -> bool {
    let password = grant.password.as_ref().unwrap().expose_secret();
    cluster()
        .psql_with(
            &cluster().conninfo(&grant.username, password, "app"),
            "SELECT count(*) FROM sales.orders",
        )
        .is_ok()
}

#[tokio::test]
async fn a_config_file_is_two_lines_from_a_grant() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "emb_two_lines", "").await;
    let audit = Arc::new(RecordingAuditSink::new());

    let integration = Integration::from_config(&config, options(audit.clone()))
        .await
        .unwrap();
    let request = AccessRequest::new(
        "alice@example.com",
        [read_only_sales()],
        Ttl::from_secs(600).unwrap(),
    )
    .justification("INC-1")
    .grant_id("ticket-1");
    let grant = integration.grant(request.clone()).await.unwrap();

    assert_eq!(grant.grant_id, "ticket-1");
    assert_eq!(grant.integration, "emb_two_lines");
    assert_eq!(grant.requester, "alice@example.com");
    assert_eq!(grant.access, vec![read_only_sales()]);
    assert_eq!(grant.state, ListedState::Active);
    assert!(grant.created);
    assert!(grant.created_at <= grant.expires_at);
    assert!(can_log_in(&grant), "the grant's password logs in");
    let shown = format!("{grant:?}");
    assert!(
        !shown.contains(grant.password.as_ref().unwrap().expose_secret()),
        "{shown}"
    );
    let json = serde_json::to_value(&grant).unwrap();
    assert!(json.get("password").is_none(), "{json}");
    assert_eq!(json["grant_id"], "ticket-1");
    assert!(
        !json
            .to_string()
            .contains(grant.password.as_ref().unwrap().expose_secret()),
        "{json}"
    );

    // The same id again returns the grant, without a password.
    let again = integration.grant(request).await.unwrap();
    assert_eq!(
        (
            again.grant_id.as_str(),
            again.created,
            again.password.is_none()
        ),
        ("ticket-1", false, true)
    );

    // extend and list return the same type, describing the same grant.
    let extended = integration
        .extend("ticket-1", Ttl::from_secs(1200).unwrap())
        .await
        .unwrap();
    assert!(extended.expires_at > grant.expires_at);
    assert_eq!(
        (extended.username.as_str(), extended.requester.as_str()),
        (grant.username.as_str(), "alice@example.com")
    );
    let listed: Vec<AccessGrant> = integration.list().await.unwrap();
    let found = listed.iter().find(|g| g.grant_id == "ticket-1").unwrap();
    assert_eq!(found.expires_at, extended.expires_at);
    assert_eq!(found.created_at, grant.created_at);
    assert!(found.password.is_none());

    integration.revoke("ticket-1").await.unwrap();
    assert!(!can_log_in(&grant), "revoked");
}

#[tokio::test]
async fn failures_carry_a_kind_to_branch_on() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "emb_kinds", "").await;
    let audit = Arc::new(RecordingAuditSink::new());
    let integration = Integration::from_config(&config, options(audit.clone()))
        .await
        .unwrap();
    let kind = |r: Result<AccessGrant, IntegrationError>| r.unwrap_err().kind();

    let too_long = AccessRequest::new("a", [read_only_sales()], Ttl::from_secs(7200).unwrap());
    assert_eq!(
        kind(integration.grant(too_long).await),
        ErrorKind::InvalidRequest(InvalidReason::TtlOverMax)
    );
    // The audit trail says the same, for whoever reads it without the error.
    let refused = audit
        .events()
        .into_iter()
        .rfind(|e| e.action == AuditAction::Grant)
        .unwrap();
    assert_eq!(
        refused.error_kind,
        Some(ErrorKind::InvalidRequest(InvalidReason::TtlOverMax))
    );
    assert_eq!(
        serde_json::to_value(&refused).unwrap()["error_kind"],
        serde_json::json!({ "invalid_request": "ttl_over_max" })
    );
    let missing =
        AccessEntry::new(ResourceId::schema("app", "nope"), PermissionLevel::ReadOnly).unwrap();
    assert_eq!(
        kind(
            integration
                .grant(AccessRequest::new(
                    "a",
                    [missing],
                    Ttl::from_secs(60).unwrap()
                ))
                .await
        ),
        ErrorKind::InvalidRequest(InvalidReason::UnknownResource)
    );
    // AccessEntry::new refuses this; a host filling the fields by hand gets it at grant.
    assert!(AccessEntry::new(ResourceId::role("pg_monitor"), PermissionLevel::ReadOnly).is_err());
    let wrong_level = AccessEntry {
        resource: ResourceId::role("pg_monitor"),
        level: PermissionLevel::ReadOnly,
    };
    assert_eq!(
        kind(
            integration
                .grant(AccessRequest::new(
                    "a",
                    [wrong_level],
                    Ttl::from_secs(60).unwrap()
                ))
                .await
        ),
        ErrorKind::InvalidRequest(InvalidReason::LevelNotValidForType)
    );
    assert_eq!(
        kind(
            integration
                .grant(AccessRequest::new(
                    "",
                    [read_only_sales()],
                    Ttl::from_secs(60).unwrap()
                ))
                .await
        ),
        ErrorKind::InvalidRequest(InvalidReason::EmptyRequester)
    );
    let nothing: [AccessEntry; 0] = [];
    assert_eq!(
        kind(
            integration
                .grant(AccessRequest::new(
                    "a",
                    nothing,
                    Ttl::from_secs(60).unwrap()
                ))
                .await
        ),
        ErrorKind::InvalidRequest(InvalidReason::NoAccess)
    );
    // Nothing was granted by any of them.
    assert!(integration.list().await.unwrap().is_empty());

    // Revoking is idempotent: a grant that is not there is already revoked.
    let gone = integration.revoke("no-such-grant").await.unwrap();
    assert!(gone.already_revoked);
    let unknown = integration
        .extend("no-such-grant", Ttl::from_secs(60).unwrap())
        .await
        .unwrap_err();
    assert_eq!(unknown.kind(), ErrorKind::NotFound);
    assert!(!unknown.is_retryable());
}

#[tokio::test]
async fn setup_failures_say_what_to_fix_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    let quiet = || options(Arc::new(RecordingAuditSink::new()));

    // No such file.
    let e = Integration::from_config(dir.path().join("absent.toml"), quiet())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("absent.toml"), "{e}");

    // A config without [secret].
    let bare = dir.path().join("bare.toml");
    std::fs::write(
        &bare,
        format!(
            "name = \"bare\"\nhostname = \"127.0.0.1\"\nport = {}\n",
            cluster().port()
        ),
    )
    .unwrap();
    let e = Integration::from_config(&bare, quiet()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("[secret]"), "{e}");

    // The store holds a password the server refuses.
    let config = setup(dir.path(), "emb_denied", "").await;
    cluster()
        .psql("ALTER USER emb_denied PASSWORD 'changed-behind-its-back'")
        .unwrap();
    let e = Integration::from_config(&config, quiet())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Denied, "{e}");

    // Nobody listens on the port: unavailable, retryable, and the cause is kept.
    let config = setup(dir.path(), "emb_down", "").await;
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("port = {}", cluster().port()),
        &format!("port = {}", closed_port()),
    );
    std::fs::write(&config, text).unwrap();
    let started = std::time::Instant::now();
    let e = Integration::from_config(&config, quiet())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
