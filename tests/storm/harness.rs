//! An expiry storm against a throwaway cluster: many grants expiring at one instant,
//! revoked by the runtime. Shared by the CI test (`tests/storm/main.rs`) and the
//! measuring example (`cargo run --release --example storm`).

#![allow(
    dead_code,
    reason = "shared with examples/storm.rs, which uses all of it"
)]

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgwarden::core::config::{ConfigFormat, IntegrationConfig};
use pgwarden::core::credentials::Credentials;
use pgwarden::pg_driver::{
    ConnectOptions, Connection, Connector, Expiry, GrantRequest, LedgerKey, Provisioner,
    ProvisionerConfig, ScramIterations,
};
use pgwarden::secrets::{InMemory, PutOptions, SecretKey, SecretStoreExt};
use pgwarden::{AuditAction, Integration, IntegrationOptions, RecordingAuditSink, RunHandle};
use pgwarden_testkit::TempCluster;
use time::OffsetDateTime;

/// Managed login roles left (members of the marker role).
const LEFT_SQL: &str = "SELECT pg_catalog.count(*) FROM pg_catalog.pg_roles r
JOIN pg_catalog.pg_auth_members m ON m.member = r.oid
JOIN pg_catalog.pg_roles k ON k.oid = m.roleid
WHERE k.rolname = 'pgwarden_managed' AND NOT m.admin_option";

/// One storm's integration, the driver that makes its grants, and its audit trail.
pub(crate) struct Storm {
    /// The runtime's integration.
    pub(crate) integration: Arc<Integration>,
    /// Makes grants for an exact instant, as another process would.
    pub(crate) provisioner: Arc<Provisioner>,
    /// Every audit event.
    pub(crate) audit: Arc<RecordingAuditSink>,
    /// A superuser session for counting.
    observer: Connection,
}

/// A cluster sized for storms: its own, as the storm saturates it.
pub(crate) fn cluster() -> TempCluster {
    let c = TempCluster::builder()
        .max_connections(100)
        .setting("shared_buffers", "128MB")
        .start()
        .expect("a throwaway cluster");
    c.create_database("app").unwrap();
    c.psql_in(
        "app",
        "CREATE SCHEMA sales; CREATE TABLE sales.orders (id int);",
    )
    .unwrap();
    c
}

impl Storm {
    /// A superuser connector `name`, an integration of that name and a driver for it.
    /// Every storm on one cluster shares `key`: integrations of one instance do.
    pub(crate) async fn new(c: &TempCluster, name: &str, key: &LedgerKey) -> Storm {
        let password = format!("{name}-pw");
        c.psql(&format!(
            "CREATE USER {name} WITH SUPERUSER ENCRYPTED PASSWORD '{password}'"
        ))
        .unwrap();
        let creds = Credentials::new(name, password);
        let config = IntegrationConfig::parse(
            &format!(
                "name = \"{name}\"\nhostname = \"127.0.0.1\"\nport = {}\ndatabase = \"app\"\nssl_mode = \"disable\"\nmax_ttl = \"1h\"\n",
                c.port()
            ),
            ConfigFormat::Toml,
        )
        .unwrap();
        let store = Arc::new(InMemory::new());
        store
            .put_credentials(&SecretKey::new("connector"), &creds, PutOptions::create())
            .await
            .unwrap();
        let audit = Arc::new(RecordingAuditSink::new());
        let options = IntegrationOptions {
            secret_key: Some(SecretKey::new("connector")),
            ledger_key: Some(key.clone()),
            audit: audit.clone(),
            scram_iterations: ScramIterations::new(16).unwrap(),
            ..IntegrationOptions::default()
        };
        let integration = Integration::connect(config.clone(), store, options)
            .await
            .unwrap();
        let info = config.conninfo(Some(&creds), None);
        let mut settings = ProvisionerConfig::from_integration(&config, key.clone());
        settings.scram_iterations = ScramIterations::new(16).unwrap();
        settings.pool_size = 16;
        let provisioner = Arc::new(
            Provisioner::new(
                Connector::new(&info, &ConnectOptions::default()).unwrap(),
                settings,
            )
            .unwrap(),
        );
        let observer = superuser_session(c).await;
        Storm {
            integration,
            provisioner,
            audit,
            observer,
        }
    }

    /// Makes `n` grants, `concurrency` at a time, all expiring at one instant, and
    /// returns it: far enough ahead for granting to finish (3 ms per grant and 5 s,
    /// several times what a grant takes even in a debug build).
    pub(crate) async fn grant_expiring_together(
        &self,
        n: usize,
        concurrency: usize,
    ) -> OffsetDateTime {
        let lead = Duration::from_millis(3).saturating_mul(u32::try_from(n).unwrap())
            + Duration::from_secs(5);
        let at = OffsetDateTime::now_utc() + lead;
        self.grant_until(n, concurrency, at).await;
        assert!(
            OffsetDateTime::now_utc() < at,
            "granting {n} took longer than {lead:?}"
        );
        at
    }

    /// Makes `n` grants, `concurrency` at a time, all until `at`.
    pub(crate) async fn grant_until(&self, n: usize, concurrency: usize, at: OffsetDateTime) {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let p = self.provisioner.clone();
            tasks.spawn(async move {
                p.grant(GrantRequest {
                    grant_id: None,
                    requester: "storm".into(),
                    access: vec!["postgresql-schema:app/sales=read-only".parse().unwrap()],
                    expiry: Expiry::At(at),
                    user_mode: None,
                    session: pgwarden::core::session::SessionLimits::default(),
                })
                .await
                .map(drop)
            });
            if tasks.len() >= concurrency {
                tasks.join_next().await.unwrap().unwrap().unwrap();
            }
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
    }

    /// Managed login roles left.
    pub(crate) async fn left(&self) -> i64 {
        self.observer.query_one(LEFT_SQL, &[]).await.unwrap().get(0)
    }

    /// Starts the runtime.
    pub(crate) fn run(&self) -> RunHandle {
        self.integration.run()
    }

    /// Waits until no managed role is left, at most `limit`; returns when that was.
    pub(crate) async fn until_all_revoked(&self, limit: Duration) -> Result<Instant, i64> {
        let started = Instant::now();
        loop {
            let left = self.left().await;
            if left == 0 {
                return Ok(Instant::now());
            }
            if started.elapsed() > limit {
                return Err(left);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs until every grant is revoked (at most 10 minutes); the instant that was,
    /// and the peak RSS meanwhile (KiB).
    pub(crate) async fn run_until_all_revoked(&self) -> (Instant, Option<u64>) {
        reset_peak_rss();
        let runtime = self.run();
        let done = self
            .until_all_revoked(Duration::from_secs(600))
            .await
            .unwrap_or_else(|left| panic!("{left} grants left after 10 minutes"));
        let rss = peak_rss_kib();
        runtime.shutdown().await;
        (done, rss)
    }

    /// Grants whose expiry was audited as a success, and how many of them more than once.
    pub(crate) fn audited(&self) -> (usize, usize) {
        let mut seen = std::collections::HashMap::<String, usize>::new();
        for e in self.audit.events() {
            if e.action == AuditAction::Expire && !e.failed() {
                *seen.entry(e.grant_id.unwrap_or_default()).or_default() += 1;
            }
        }
        (seen.len(), seen.values().filter(|n| **n > 1).count())
    }
}

/// A session of the cluster's superuser.
pub(crate) async fn superuser_session(c: &TempCluster) -> Connection {
    Connector::new(
        &c.conninfo(c.superuser(), c.password(), "postgres")
            .parse()
            .unwrap(),
        &ConnectOptions::default(),
    )
    .unwrap()
    .connect()
    .await
    .unwrap()
}

/// The floor: a plain client (one session) creating `n` login roles and then timing
/// `DROP ROLE` of each, one statement per role.
pub(crate) async fn drop_role_floor(c: &TempCluster, n: usize) -> Duration {
    let client = superuser_session(c).await;
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let sql = chunk.iter().fold(String::new(), |mut sql, i| {
            let _ = write!(sql, "CREATE ROLE floor_{i} LOGIN; ");
            sql
        });
        client.batch_execute(&sql).await.unwrap();
    }
    let started = Instant::now();
    for i in 0..n {
        client
            .batch_execute(&format!("DROP ROLE floor_{i}"))
            .await
            .unwrap();
    }
    started.elapsed()
}

/// This process's peak resident set size in KiB since the last
/// [`reset_peak_rss`] (`VmHWM`), if the kernel says.
pub(crate) fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resets the peak resident set size (Linux: `5` to `clear_refs`).
pub(crate) fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
