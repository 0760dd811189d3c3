//! Expiry under faults, end to end through the runtime: a revocation stuck on another
//! session's lock stalls no other expiry, and an immediate server restart in the
//! middle of an expiry storm loses no revocation and repeats none.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgwarden::core::config::{ConfigFormat, IntegrationConfig};
use pgwarden::core::credentials::Credentials;
use pgwarden::core::duration::Ttl;
use pgwarden::pg_driver::{
    ConnectOptions, Connector, Expiry, GrantRequest, LedgerKey, Provisioner, ProvisionerConfig,
    ScramIterations,
};
use pgwarden::secrets::{InMemory, PutOptions, SecretKey, SecretStoreExt};
use pgwarden::{AccessRequest, AuditAction, Integration, IntegrationOptions, RecordingAuditSink};
use pgwarden_testkit::TempCluster;
use secrecy::ExposeSecret;
use time::OffsetDateTime;

/// The cluster the lock test shares with nothing that restarts it.
fn cluster() -> &'static TempCluster {
    static C: std::sync::OnceLock<TempCluster> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        let c = TempCluster::builder().max_connections(200).start().unwrap();
        c.create_database("app").unwrap();
        c.psql_in(
            "app",
            "CREATE SCHEMA sales; CREATE TABLE sales.orders (id int);",
        )
        .unwrap();
        c
    })
}

/// A cluster of its own for the restart test: restarting it disturbs nobody else. A
/// commit must survive the crash as it does on a production server (the testkit's
/// default, `synchronous_commit = off`, may lose the last ones, and a revocation lost
/// that way is rightly revoked — and audited — again).
fn restart_cluster() -> &'static TempCluster {
    static C: std::sync::OnceLock<TempCluster> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        let c = TempCluster::builder()
            .max_connections(200)
            .setting("synchronous_commit", "on")
            .start()
            .unwrap();
        c.create_database("app").unwrap();
        c.psql_in(
            "app",
            "CREATE SCHEMA sales; CREATE TABLE sales.orders (id int);",
        )
        .unwrap();
        c
    })
}

/// The ledger key every integration of this binary shares: integrations of one
/// instance must.
fn ledger_key() -> LedgerKey {
    static KEY: std::sync::OnceLock<LedgerKey> = std::sync::OnceLock::new();
    KEY.get_or_init(LedgerKey::generate).clone()
}

fn connector(c: &TempCluster, name: &str) -> Credentials {
    let password = format!("{name}-pw");
    c.psql(&format!(
        "CREATE USER {name} WITH SUPERUSER ENCRYPTED PASSWORD '{password}'"
    ))
    .unwrap();
    Credentials::new(name, password)
}

fn config(c: &TempCluster, name: &str) -> IntegrationConfig {
    IntegrationConfig::parse(
        &format!(
            "name = \"{name}\"\nhostname = \"127.0.0.1\"\nport = {}\ndatabase = \"app\"\nssl_mode = \"disable\"\nmax_ttl = \"1h\"\n",
            c.port()
        ),
        ConfigFormat::Toml,
    )
    .unwrap()
}

async fn integration(
    c: &TempCluster,
    name: &str,
    creds: &Credentials,
    key: &LedgerKey,
    audit: Arc<RecordingAuditSink>,
) -> Arc<Integration> {
    let store = Arc::new(InMemory::new());
    store
        .put_credentials(&SecretKey::new("connector"), creds, PutOptions::create())
        .await
        .unwrap();
    let options = IntegrationOptions {
        secret_key: Some(SecretKey::new("connector")),
        ledger_key: Some(key.clone()),
        audit,
        sweep_interval: Duration::from_millis(250),
        scram_iterations: ScramIterations::new(16).unwrap(),
        ..IntegrationOptions::default()
    };
    Integration::connect(config(c, name), store, options)
        .await
        .unwrap()
}

fn request(access: &str, secs: u64) -> AccessRequest {
    AccessRequest::new(
        "alice",
        [access.parse().unwrap()],
        Ttl::from_secs(secs).unwrap(),
    )
}

fn role_exists(c: &TempCluster, name: &str) -> bool {
    c.psql(&format!(
        "SELECT count(*) FROM pg_roles WHERE rolname = '{name}'"
    ))
    .unwrap()
    .trim()
        == "1"
}

/// Successful expiry events per grant.
fn expiries(audit: &RecordingAuditSink) -> HashMap<String, usize> {
    events_per_grant(audit, AuditAction::Expire)
}

/// Successful events of `action` per grant.
fn events_per_grant(audit: &RecordingAuditSink, action: AuditAction) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for e in audit.events() {
        if e.action == action && !e.failed() {
            *n.entry(e.grant_id.clone().unwrap_or_default()).or_insert(0) += 1;
        }
    }
    n
}

/// The reproduction of the stuck revocation: a grantee with database admin creates a
/// table; another session holds `ACCESS SHARE` on it in an open transaction, so the
/// grantee's `DROP OWNED` cannot take its lock. Access still ends at expiry; a second
/// grant expiring meanwhile is revoked within 1 s of its expiry; the audit trail names
/// the session in the way; the first revocation completes once the lock is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines, reason = "one scenario, step by step")]
async fn a_revocation_stuck_on_a_lock_stalls_no_other_expiry() {
    let c = cluster();
    let audit = Arc::new(RecordingAuditSink::new());
    let key = ledger_key();
    let i = integration(c, "stuck", &connector(c, "conn_stuck"), &key, audit.clone()).await;
    let runtime = i.run();

    let admin = i
        .grant(request("postgresql-database:app=admin", 2))
        .await
        .unwrap();
    let pw = admin.password.clone().unwrap();
    c.psql_with(
        &c.conninfo(&admin.username, pw.expose_secret(), "app"),
        "CREATE TABLE sales.scratch (id int)",
    )
    .unwrap();
    // The blocker: an open transaction holding ACCESS SHARE on the grantee's table.
    let info = format!(
        "{} application_name=report-job",
        c.conninfo(c.superuser(), c.password(), "app")
    )
    .parse()
    .unwrap();
    let blocker = Connector::new(&info, &ConnectOptions::default())
        .unwrap()
        .connect()
        .await
        .unwrap();
    blocker
        .batch_execute("BEGIN; SELECT pg_catalog.count(*) FROM sales.scratch")
        .await
        .unwrap();
    let blocker_pid: i32 = blocker
        .query_one("SELECT pg_catalog.pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    let second = i
        .grant(request("postgresql-schema:app/sales=read-only", 4))
        .await
        .unwrap();
    let second_pw = second.password.clone().unwrap();

    // Access of the stuck grant ends at its expiry, although its role cannot go yet.
    let deadline = admin.expires_at + time::Duration::seconds(1);
    loop {
        let refused = c
            .psql_with(
                &c.conninfo(&admin.username, pw.expose_secret(), "app"),
                "SELECT 1",
            )
            .is_err();
        if refused {
            break;
        }
        assert!(
            OffsetDateTime::now_utc() < deadline,
            "still logs in 1 s after expiry"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The second grant, expiring while the first's clean-up waits, goes on time.
    let deadline = second.expires_at + time::Duration::seconds(1);
    while role_exists(c, &second.username) {
        assert!(
            OffsetDateTime::now_utc() < deadline,
            "the second grant is still there 1 s after its expiry: the stuck revocation stalled it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        c.psql_with(
            &c.conninfo(&second.username, second_pw.expose_secret(), "app"),
            "SELECT 1"
        )
        .is_err()
    );
    assert!(role_exists(c, &admin.username), "the lock is still held");
    // The audit trail says what the clean-up waits on.
    let waiting = audit
        .events()
        .into_iter()
        .find(|e| {
            e.action == AuditAction::Expire
                && e.grant_id.as_deref() == Some(&admin.grant_id)
                && e.failed()
        })
        .expect("an audit event for the waiting clean-up");
    let why = waiting.error.unwrap();
    assert!(
        why.contains(&format!("pid {blocker_pid}"))
            && why.contains(&format!("user {}", c.superuser()))
            && why.contains("idle in transaction")
            && why.contains("report-job"),
        "{why}"
    );
    // Its grantee's memberships are gone already, though the role is not.
    let members = c
        .psql(&format!(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
             JOIN pg_roles g ON g.oid = m.roleid
             WHERE r.rolname = '{}' AND g.rolname <> 'pgwarden_managed'",
            admin.username
        ))
        .unwrap();
    assert_eq!(members.trim(), "0");

    // Released: the first revocation completes.
    blocker.batch_execute("COMMIT").await.unwrap();
    let released = Instant::now();
    while role_exists(c, &admin.username) {
        assert!(
            released.elapsed() < Duration::from_secs(15),
            "the first revocation did not complete after the lock was released"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    runtime.shutdown().await;
    let done = expiries(&audit);
    assert_eq!(done.get(&admin.grant_id), Some(&1), "{done:?}");
    assert_eq!(done.get(&second.grant_id), Some(&1), "{done:?}");
    assert_eq!(
        c.psql_in(
            "app",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'scratch'"
        )
        .unwrap()
        .trim(),
        "",
        "what the grantee owned is dropped"
    );
}

/// An immediate restart (a crash) of the server while hundreds of grants are expiring:
/// every one is revoked, and the audit trail shows each revocation once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines, reason = "one scenario, step by step")]
async fn a_server_crash_during_an_expiry_storm_loses_and_repeats_nothing() {
    const GRANTS: usize = 300;
    let c = restart_cluster();
    let audit = Arc::new(RecordingAuditSink::new());
    let key = ledger_key();
    let creds = connector(c, "conn_restart");
    let i = integration(c, "restart", &creds, &key, audit.clone()).await;
    // Granted straight through the driver, all for the same instant.
    let info = config(c, "restart").conninfo(Some(&creds), None);
    let mut settings = ProvisionerConfig::from_integration(&config(c, "restart"), key.clone());
    settings.scram_iterations = ScramIterations::new(16).unwrap();
    settings.pool_size = 8;
    let provisioner = Arc::new(
        Provisioner::new(
            Connector::new(&info, &ConnectOptions::default()).unwrap(),
            settings,
        )
        .unwrap(),
    );
    let started = Instant::now();
    let at = OffsetDateTime::now_utc() + time::Duration::seconds(8);
    let mut users = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..GRANTS {
        let p = provisioner.clone();
        tasks.spawn(async move {
            p.grant(GrantRequest {
                grant_id: Some(format!("storm-{n}")),
                requester: "storm".into(),
                access: vec!["postgresql-schema:app/sales=read-only".parse().unwrap()],
                expiry: Expiry::At(at),
                user_mode: None,
                session: pgwarden::core::session::SessionLimits::default(),
            })
            .await
            .unwrap()
            .username
        });
        if tasks.len() >= 16 {
            users.push(tasks.join_next().await.unwrap().unwrap());
        }
    }
    while let Some(u) = tasks.join_next().await {
        users.push(u.unwrap());
    }
    drop(provisioner);
    eprintln!("{GRANTS} grants made in {:?}", started.elapsed());
    assert!(
        OffsetDateTime::now_utc() < at,
        "granting took too long for the test"
    );
    let observer = Connector::new(
        &c.conninfo(c.superuser(), c.password(), "postgres")
            .parse()
            .unwrap(),
        &ConnectOptions::default(),
    )
    .unwrap()
    .connect()
    .await
    .unwrap();
    let runtime = i.run();
    // Crash the server the moment the sweeper has marked the grants (their roles
    // can no longer log in) and before it has dropped them all.
    let watching = Instant::now();
    let marked_at_crash: i64 = loop {
        let row = observer
            .query_one(
                "SELECT pg_catalog.count(*) FILTER (WHERE NOT rolcanlogin), pg_catalog.count(*)
                 FROM pg_catalog.pg_roles WHERE rolname ~ '^pgw_([0-9a-f]{16}_)?storm(_|$)'",
                &[],
            )
            .await
            .unwrap();
        let (marked, left): (i64, i64) = (row.get(0), row.get(1));
        if marked > 0 || left < i64::try_from(GRANTS).unwrap() {
            break marked;
        }
        assert!(
            watching.elapsed() < Duration::from_secs(60),
            "the sweeper never started revoking"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    drop(observer);
    c.restart_immediate().unwrap();
    eprintln!("crashed with {marked_at_crash} roles marked and not yet dropped");
    let restarted = Instant::now();
    loop {
        let left: usize = c
            .psql("SELECT count(*) FROM pg_roles r JOIN pg_auth_members m ON m.member = r.oid JOIN pg_roles k ON k.oid = m.roleid WHERE k.rolname = 'pgwarden_managed' AND NOT m.admin_option")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(60),
            "{left} grants still there 60 s after the restart"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A revocation whose reply the crash cut off is observed on a later pass: let the
    // audit trail settle before reading it.
    let settled = Instant::now();
    while (0..GRANTS).any(|n| {
        let id = format!("storm-{n}");
        !expiries(&audit).contains_key(&id)
            && !events_per_grant(&audit, AuditAction::RevocationObserved).contains_key(&id)
    }) {
        assert!(
            settled.elapsed() < Duration::from_secs(90),
            "grants gone without a revocation event or an observation"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    runtime.shutdown().await;
    for u in &users {
        assert!(!role_exists(c, u), "{u} survived");
    }
    // Each revocation audited once; one whose reply the crash cut off is observed
    // gone instead (it is not audited as a revocation a second time).
    let done = expiries(&audit);
    let gone = events_per_grant(&audit, AuditAction::RevocationObserved);
    for n in 0..GRANTS {
        let id = format!("storm-{n}");
        let (revoked, seen) = (
            done.get(&id).copied().unwrap_or(0),
            gone.get(&id).copied().unwrap_or(0),
        );
        assert!(
            revoked + seen == 1,
            "grant {id}: one revocation event or one observation; its events: {:#?}",
            audit
                .events()
                .into_iter()
                .filter(|e| e.grant_id.as_deref() == Some(id.as_str()))
                .collect::<Vec<_>>()
        );
    }
    assert!(i.list().await.unwrap().is_empty());
}

/// A secret store that answers until told to hang, then never answers again.
#[derive(Debug)]
struct Hanging {
    inner: InMemory,
    hang: std::sync::atomic::AtomicBool,
}

impl std::fmt::Display for Hanging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a store that stops answering")
    }
}

impl Hanging {
    async fn gate(&self) {
        if self.hang.load(std::sync::atomic::Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait::async_trait]
impl pgwarden::secrets::SecretStore for Hanging {
    fn backend(&self) -> &'static str {
        "hanging"
    }

    fn capabilities(&self) -> pgwarden::secrets::Capabilities {
        self.inner.capabilities()
    }

    async fn get(
        &self,
        key: &SecretKey,
        options: pgwarden::secrets::GetOptions,
    ) -> Result<pgwarden::secrets::SecretValue, pgwarden::secrets::Error> {
        self.gate().await;
        self.inner.get(key, options).await
    }

    async fn put(
        &self,
        key: &SecretKey,
        value: secrecy::SecretString,
        options: PutOptions,
    ) -> Result<pgwarden::secrets::Version, pgwarden::secrets::Error> {
        self.gate().await;
        self.inner.put(key, value, options).await
    }

    async fn delete(&self, key: &SecretKey) -> Result<(), pgwarden::secrets::Error> {
        self.gate().await;
        self.inner.delete(key).await
    }
}

/// A secret store that stops answering: a rotation through it fails within the
/// store's time bound, and the runtime — whose rotation is due and hangs on the store
/// for far longer than a sweep — keeps revoking grants on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_store_that_never_answers_holds_up_no_expiry() {
    let c = cluster();
    let creds = connector(c, "conn_hang");
    let hanging = Arc::new(Hanging {
        inner: InMemory::new(),
        hang: std::sync::atomic::AtomicBool::new(false),
    });
    hanging
        .inner
        .put_credentials(&SecretKey::new("connector"), &creds, PutOptions::create())
        .await
        .unwrap();
    let store: Arc<pgwarden::secrets::DynSecretStore> = Arc::new(
        pgwarden::secrets::TimeoutStore::new(hanging.clone(), Duration::from_secs(20)),
    );
    let audit = Arc::new(RecordingAuditSink::new());
    let options = IntegrationOptions {
        secret_key: Some(SecretKey::new("connector")),
        ledger_key: Some(ledger_key()),
        audit: audit.clone(),
        sweep_interval: Duration::from_millis(250),
        scram_iterations: ScramIterations::new(16).unwrap(),
        ..IntegrationOptions::default()
    };
    let mut config = config(c, "hang");
    // Due at once: no rotation is recorded yet.
    config.credential_rotation_days = Some(30);
    let i = Integration::connect(config, store, options).await.unwrap();
    hanging
        .hang
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let runtime = i.run();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let g = i
        .grant(request("postgresql-schema:app/sales=read-only", 2))
        .await
        .unwrap();
    let deadline = g.expires_at + time::Duration::seconds(1);
    while role_exists(c, &g.username) {
        assert!(
            OffsetDateTime::now_utc() < deadline,
            "a rotation hanging on the store held up the expiry"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A rotation asked for directly fails within the store's bound, with a clear error.
    let short: Arc<pgwarden::secrets::DynSecretStore> = Arc::new(
        pgwarden::secrets::TimeoutStore::new(hanging.clone(), Duration::from_millis(500)),
    );
    let started = Instant::now();
    let err =
        pgwarden::secrets::SecretStoreExt::get_credentials(&*short, &SecretKey::new("connector"))
            .await
            .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.is_transient() && err.to_string().contains("500ms"),
        "{err}"
    );
    runtime.shutdown().await;
    assert!(
        can_still_log_in(c, &creds),
        "the connector's password must be unchanged"
    );
}

fn can_still_log_in(c: &TempCluster, creds: &Credentials) -> bool {
    c.psql_with(
        &c.conninfo(&creds.username, creds.password.expose_secret(), "app"),
        "SELECT 1",
    )
    .is_ok()
}
