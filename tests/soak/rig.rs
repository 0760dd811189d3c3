//! The soak's fixture: a throwaway cluster, a superuser connector, one in-memory
//! store, two replicas of one integration sharing store, ledger key and audit sink.

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use pgwarden::core::config::{ConfigFormat, IntegrationConfig};
use pgwarden::core::credentials::Credentials;
use pgwarden::pg_driver::{ConnectOptions, Connection, Connector, LedgerKey, ScramIterations};
use pgwarden::secrets::{InMemory, PutOptions, SecretKey, SecretStoreExt};
use pgwarden::{AuditEvent, AuditSink, Integration, IntegrationOptions, RecordingAuditSink};
use pgwarden_testkit::TempCluster;

use crate::book::{Book, SWEEP};

/// Every await on the library is bounded by this: a hang fails the soak.
pub(crate) const BOUND: Duration = Duration::from_secs(60);

/// The access entries grants draw from.
pub(crate) const ACCESS: &[&str] = &[
    "postgresql-schema:app/sales=read-only",
    "postgresql-table:app/sales/orders=read-write",
    "postgresql-database:app=connect",
    "postgresql-schema:app/hr=read-write",
    "postgresql-table:app/hr/staff=read-only",
    "postgresql-schema:reports/public=read-only",
];

/// Forwards a replica's audit events to the shared recorder, and keeps them
/// tagged with the replica for failure reports.
#[derive(Debug)]
pub(crate) struct Tagged {
    replica: usize,
    shared: Arc<RecordingAuditSink>,
    log: Arc<Mutex<Vec<(usize, AuditEvent)>>>,
}

impl AuditSink for Tagged {
    fn record(&self, event: &AuditEvent) {
        self.shared.record(event);
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((self.replica, event.clone()));
    }
}

/// The soak's world.
pub(crate) struct Soak {
    /// The throwaway cluster.
    pub(crate) cluster: Arc<TempCluster>,
    /// Two replicas of one integration.
    pub(crate) replicas: [Arc<Integration>; 2],
    /// The store both read the connector's credentials from.
    pub(crate) store: Arc<InMemory>,
    /// Both replicas' audit events.
    pub(crate) audit: Arc<RecordingAuditSink>,
    /// The same events, tagged with the replica that emitted them.
    pub(crate) tagged: Arc<Mutex<Vec<(usize, AuditEvent)>>>,
    /// The connector role.
    pub(crate) connector: String,
    /// The seed, for messages.
    pub(crate) seed: u64,
    /// What happened.
    pub(crate) book: Mutex<Book>,
    /// Numbers explicit grant ids.
    pub(crate) next_id: AtomicU64,
}

/// The store key of the connector's credentials.
pub(crate) fn store_key() -> SecretKey {
    SecretKey::new("connector")
}

/// The cluster: commits must survive an immediate restart, as on a production server.
fn cluster() -> TempCluster {
    let c = TempCluster::builder()
        .max_connections(150)
        .setting("synchronous_commit", "on")
        .start()
        .expect("a throwaway cluster");
    c.create_database("app").unwrap();
    c.create_database("reports").unwrap();
    c.psql_in(
        "app",
        "CREATE SCHEMA sales; CREATE TABLE sales.orders (id int); CREATE TABLE sales.customers (id int);
         CREATE SCHEMA hr; CREATE TABLE hr.staff (id int); CREATE SEQUENCE hr.ids;",
    )
    .unwrap();
    c.psql_in("reports", "CREATE TABLE public.daily (d date);")
        .unwrap();
    c
}

impl Soak {
    /// Starts the cluster, makes the connector and both replicas.
    pub(crate) async fn new(seed: u64) -> Arc<Soak> {
        let cluster = Arc::new(tokio::task::spawn_blocking(cluster).await.unwrap());
        let connector = "soak_connector".to_owned();
        let password = "soak-connector-initial-pw";
        cluster
            .psql(&format!(
                "CREATE USER {connector} WITH SUPERUSER ENCRYPTED PASSWORD '{password}'"
            ))
            .unwrap();
        let config = IntegrationConfig::parse(
            &format!(
                "name = \"soak\"\nhostname = \"127.0.0.1\"\nport = {}\ndatabase = \"app\"\nssl_mode = \"disable\"\nmax_ttl = \"1h\"\n",
                cluster.port()
            ),
            ConfigFormat::Toml,
        )
        .unwrap();
        let store = Arc::new(InMemory::new());
        store
            .put_credentials(
                &store_key(),
                &Credentials::new(&connector, password),
                PutOptions::create(),
            )
            .await
            .unwrap();
        let key = LedgerKey::generate();
        let audit = Arc::new(RecordingAuditSink::new());
        let tagged = Arc::new(Mutex::new(Vec::new()));
        let mut replicas = Vec::new();
        for replica in 0..2 {
            let options = IntegrationOptions {
                secret_key: Some(store_key()),
                ledger_key: Some(key.clone()),
                audit: Arc::new(Tagged {
                    replica,
                    shared: audit.clone(),
                    log: tagged.clone(),
                }),
                sweep_interval: SWEEP,
                scram_iterations: ScramIterations::new(16).unwrap(),
                pool_size: 4,
                ..IntegrationOptions::default()
            };
            replicas.push(
                Integration::connect(config.clone(), store.clone(), options)
                    .await
                    .unwrap(),
            );
        }
        let replicas: [Arc<Integration>; 2] = replicas.try_into().unwrap();
        Arc::new(Soak {
            cluster,
            replicas,
            store,
            audit,
            tagged,
            connector,
            seed,
            book: Mutex::new(Book::default()),
            next_id: AtomicU64::new(0),
        })
    }

    /// The book, locked.
    pub(crate) fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The audit events of `grant_id` and every reconciliation and rotation, each
    /// with the replica that emitted it, for a failure report.
    pub(crate) fn story(&self, grant_id: &str) -> String {
        self.tagged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, e)| {
                e.grant_id.as_deref() == Some(grant_id)
                    || matches!(
                        e.action,
                        pgwarden::AuditAction::Reconcile | pgwarden::AuditAction::Rotate
                    )
            })
            .map(|(r, e)| {
                format!(
                    "  {} replica {r} {:?} {} {}{}",
                    e.at,
                    e.action,
                    e.grant_id.as_deref().unwrap_or(""),
                    e.detail,
                    e.error
                        .as_deref()
                        .map(|x| format!(" ERROR {x}"))
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Awaits `fut` at most [`BOUND`]; a hang is recorded (and fails the soak).
    pub(crate) async fn bounded<T>(&self, what: &str, fut: impl Future<Output = T>) -> Option<T> {
        if let Ok(v) = tokio::time::timeout(BOUND, fut).await {
            Some(v)
        } else {
            self.book()
                .hangs
                .push(format!("{what} did not finish within {BOUND:?}"));
            None
        }
    }

    /// A session as `user` to `database`, within 10 s.
    pub(crate) async fn login(
        &self,
        user: &str,
        password: &str,
        database: &str,
    ) -> Result<Connection, String> {
        let info = self
            .cluster
            .conninfo(user, password, database)
            .parse()
            .map_err(|e| format!("{e:?}"))?;
        let connector =
            Connector::new(&info, &ConnectOptions::default()).map_err(|e| e.to_string())?;
        match tokio::time::timeout(Duration::from_secs(10), connector.connect()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("login timed out".into()),
        }
    }

    /// A superuser session, retried for up to 30 s (the server may be restarting).
    pub(crate) async fn superuser(&self) -> Connection {
        let started = std::time::Instant::now();
        loop {
            let (user, password) = (self.cluster.superuser(), self.cluster.password());
            match self.login(user, password, "postgres").await {
                Ok(c) => return c,
                Err(e) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(30),
                        "seed {}: no superuser session for 30 s: {e}",
                        self.seed
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}
