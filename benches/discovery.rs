//! Discovery of a large instance against its floor.
//!
//! A throwaway cluster holds 5 databases × 20 schemas × 200 tables = 20,000 tables
//! (every tenth with a tag comment). Two things are measured in the same run:
//! - `pgwarden_discover`: a full [`discover`] (databases, schemas, tables, roles);
//! - `psql_floor`: `psql` running the same catalog queries in each database, one
//!   database after another, as spawned processes.
//!
//! The goal is a ratio of at most 1. Both sides connect over the cluster's unix socket.
//! Afterwards the bench checks that the streaming variant keeps memory flat: it counts
//! the resources of [`discover_stream`] without keeping them and reports the peak
//! resident-set growth (`VmHWM`, reset through `/proc/self/clear_refs`), next to the
//! growth of a [`discover`] that keeps them.
//!
//! ```text
//! cargo bench --bench discovery
//! ```

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::Criterion;
use pgwarden::core::naming::{MARKER_ROLE, PRIVILEGE_ROLE_PREFIX};
use pgwarden::pg_driver::discovery_queries as queries;
use pgwarden::pg_driver::{
    ConnectOptions, Connector, Discovered, DiscoveryOptions, DiscoveryResult, discover,
    discover_stream,
};
use pgwarden_testkit::TempCluster;

const DATABASES: usize = 5;
const SCHEMAS: usize = 20;
const TABLES_PER_SCHEMA: usize = 200;

/// The cluster with its 20,000 tables.
struct Fixture {
    cluster: TempCluster,
    databases: Vec<String>,
}

impl Fixture {
    fn build() -> Fixture {
        let began = Instant::now();
        let cluster = TempCluster::builder()
            .setting("fsync", "off")
            .setting("synchronous_commit", "off")
            .setting("full_page_writes", "off")
            .start()
            .expect("a throwaway cluster starts");
        let databases: Vec<String> = (1..=DATABASES).map(|i| format!("bench_{i}")).collect();
        let first = &databases[0];
        cluster.create_database(first).unwrap();
        // One statement per schema keeps each transaction's lock count well below
        // max_locks_per_transaction.
        let mut script = String::new();
        for s in 1..=SCHEMAS {
            write!(
                script,
                "CREATE SCHEMA s{s};
                 COMMENT ON SCHEMA s{s} IS 'Schema {s}. owner=team_{s}';
                 DO $$ BEGIN
                     FOR t IN 1..{TABLES_PER_SCHEMA} LOOP
                         EXECUTE format('CREATE TABLE s{s}.t%s (id bigint, name text)', t);
                         IF t % 10 = 0 THEN
                             EXECUTE format('COMMENT ON TABLE s{s}.t%s IS %L', t,
                                            'Table ' || t || '. owner=payments tier=' || t % 3);
                         END IF;
                     END LOOP;
                 END $$;\n"
            )
            .unwrap();
        }
        cluster.psql_in(first, &script).unwrap();
        // The other databases are copies: a file copy, much faster than 16,000 CREATEs.
        for db in &databases[1..] {
            cluster
                .psql(&format!("CREATE DATABASE {db} TEMPLATE {first};"))
                .unwrap();
        }
        eprintln!(
            "fixture: {DATABASES} databases x {SCHEMAS} schemas x {TABLES_PER_SCHEMA} tables built in {:.1} s",
            began.elapsed().as_secs_f64()
        );
        Fixture { cluster, databases }
    }

    fn connector(&self) -> Connector {
        let info = self.cluster.socket_conninfo("postgres").parse().unwrap();
        Connector::new(&info, &ConnectOptions::default()).unwrap()
    }

    /// The databases discovery visits: the fixture's and `postgres`.
    fn all_databases(&self) -> Vec<String> {
        let mut all = vec!["postgres".to_owned()];
        all.extend(self.databases.iter().cloned());
        all
    }

    /// psql running discovery's queries: the instance-wide ones once, then the
    /// per-database ones in each database, one database after another.
    fn psql_floor(&self) {
        let roles = queries::ROLES
            .replace("$1", &format!("'{MARKER_ROLE}'"))
            .replace("$2", &format!("'{PRIVILEGE_ROLE_PREFIX}'"));
        for (i, db) in self.all_databases().iter().enumerate() {
            let mut command = Command::new(self.cluster.binaries().psql());
            command
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
                .arg(self.cluster.socket_conninfo(db));
            if i == 0 {
                command.args(["-c", queries::DATABASES, "-c", &roles]);
            }
            let status = command
                .args(["-c", queries::SCHEMAS, "-c", queries::TABLES])
                .stdout(Stdio::null())
                .status()
                .expect("psql runs");
            assert!(status.success(), "psql failed in {db}");
        }
    }
}

/// Per-iteration times recorded by `iter_custom`, for the ratio.
#[derive(Default)]
struct Samples(Mutex<Vec<Duration>>);

impl Samples {
    fn record(&self, total: Duration, iters: u64) {
        let per_iter = total / u32::try_from(iters.max(1)).unwrap_or(u32::MAX);
        self.0.lock().unwrap().push(per_iter);
    }

    fn median(&self) -> Duration {
        let mut samples = self.0.lock().unwrap().clone();
        samples.sort();
        samples.get(samples.len() / 2).copied().unwrap_or_default()
    }
}

/// Peak resident set since the last reset, and the current one, in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Resets the peak resident set to the current one (Linux 4.0+); false if unsupported.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn main() {
    let fixture = Fixture::build();
    let connector = fixture.connector();
    let options = DiscoveryOptions::default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let result = check_memory(&runtime, &connector, &options);
    assert!(result.failures.is_empty(), "{:?}", result.failures);
    let tables = result
        .of_type(pgwarden::core::resource::ResourceType::Table)
        .count();
    assert!(
        tables >= DATABASES * SCHEMAS * TABLES_PER_SCHEMA,
        "{tables}"
    );
    let result_bytes = serde_json::to_vec(&result.resources).unwrap().len();
    eprintln!(
        "discovered {} resources ({tables} tables); as JSON {:.1} MiB",
        result.resources.len(),
        mib(result_bytes as u64)
    );
    drop(result);

    let ours = Samples::default();
    let floor = Samples::default();
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
        .configure_from_args();
    {
        let mut group = criterion.benchmark_group("discovery_20k_tables");
        group.bench_function("pgwarden_discover", |b| {
            b.to_async(&runtime).iter_custom(|iters| {
                let (connector, options, ours) = (&connector, &options, &ours);
                async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let result = discover(connector, options).await.unwrap();
                        std::hint::black_box(result);
                    }
                    let total = start.elapsed();
                    ours.record(total, iters);
                    total
                }
            });
        });
        group.bench_function("psql_floor", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    fixture.psql_floor();
                }
                let total = start.elapsed();
                floor.record(total, iters);
                total
            });
        });
        group.finish();
    }
    criterion.final_summary();

    let (ours, floor) = (ours.median(), floor.median());
    eprintln!(
        "\nfull discovery: median {:.1} ms; psql floor (6 databases one after another): median {:.1} ms; ratio {:.2} (goal <= 1)",
        ours.as_secs_f64() * 1e3,
        floor.as_secs_f64() * 1e3,
        ours.as_secs_f64() / floor.as_secs_f64()
    );
}

/// Counts a streamed discovery without keeping it, then keeps a full one, and reports
/// how far the peak resident set rose for each. Runs first, before anything else has
/// grown the allocator's heap, and returns the kept result.
fn check_memory(
    runtime: &tokio::runtime::Runtime,
    connector: &Connector,
    options: &DiscoveryOptions,
) -> DiscoveryResult {
    let supported = reset_peak();
    let (_, start) = memory_kib();
    let streamed = runtime.block_on(async {
        let mut count = 0_usize;
        let mut stream = discover_stream(connector, options);
        while let Some(item) = stream.next_item().await {
            if let Discovered::Resource(_) = item.unwrap() {
                count += 1;
            }
        }
        count
    });
    let (stream_peak, _) = memory_kib();
    reset_peak();
    let (_, before_collect) = memory_kib();
    let kept = runtime.block_on(discover(connector, options)).unwrap();
    let (collect_peak, _) = memory_kib();
    if supported {
        eprintln!(
            "memory: streaming {streamed} resources (counted, not kept) raised the peak RSS by {:.1} MiB; \
             discover() keeping {} resources raised it by {:.1} MiB",
            mib(stream_peak.saturating_sub(start) * 1024),
            kept.resources.len(),
            mib(collect_peak.saturating_sub(before_collect) * 1024),
        );
    } else {
        eprintln!("memory: /proc/self/clear_refs unavailable; not measured");
    }
    kept
}

#[allow(clippy::cast_precision_loss, reason = "a figure for people")]
fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
