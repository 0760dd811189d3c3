//! Grant and revoke throughput beside the raw-SQL floor.
//!
//! For each SCRAM iteration count (4096, PostgreSQL's default, and 1 — see
//! `pgwarden_pg_driver::scram` for why a low count is safe for random passwords) and
//! schema size (100 tables; 10,000 tables at 1 iteration), criterion measures one
//! read-only-on-a-schema grant and one revocation, serially and with 16 concurrent
//! tasks, next to the floor: the same `CREATE ROLE … IN ROLE` / `DROP ROLE`
//! statements sent by a plain client with verifiers computed beforehand. The client
//! cost of hashing is measured on its own (`scram_verifier`), so the goal reads:
//! pgwarden grant ≤ 1.5 × (floor grant + verifier), independent of the table count.
//!
//! A third setting keeps 10,000 grants live (half with explicit ids) while measuring,
//! so per-operation costs show whether they grow with the ledger. Beside the grant
//! floor, `floor_revoke_complete` is what a complete revocation costs a plain client
//! in one batch (NOLOGIN, sessions ended, memberships revoked, shared dependencies
//! looked up, `DROP OWNED`, `DROP ROLE`), the floor pgwarden's revocation is held to;
//! `floor_revoke` is a bare `DROP ROLE`. `pgwarden_grant_id` grants with an explicit
//! id (the idempotent path).
//!
//! Run: `cargo bench --bench provision` (`PGWARDEN_BENCH_ONLY=small|big|live` for one
//! setting). Other servers and connectors:
//! `PGWARDEN_TEST_PG=17` picks the PostgreSQL major (see the README), and
//! `PGWARDEN_BENCH_CONNECTOR_MODE=createrole` runs everything — pgwarden and the floor
//! alike — as a managed-cloud connector (CREATEROLE, no SUPERUSER) that owns the
//! bench database, with `connector_mode = createrole`.

#![allow(clippy::too_many_lines, reason = "scenario code reads top to bottom")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use pgwarden::core::config::{ConnectorMode, UserMode};
use pgwarden::core::conninfo::ConnInfo;
use pgwarden::core::duration::Ttl;
use pgwarden::core::resource::AccessEntry;
use pgwarden::pg_driver::{
    ConnectOptions, Connector, Expiry, GrantRequest, Provisioner, ProvisionerConfig,
    ScramIterations, generate_password, privilege_role_name, random_string, verifier,
};
use pgwarden_testkit::TempCluster;
use tokio::runtime::Runtime;

const CONCURRENCY: usize = 16;
/// Live grants in the ledger for the scale setting.
const LIVE_GRANTS: usize = 10_000;

/// Who connects: the cluster's superuser, or a CREATEROLE connector.
struct As {
    dsn: String,
    mode: ConnectorMode,
    /// The server's major version.
    major: u32,
}

/// One ledger key for every provisioner of the run (they share one instance).
fn ledger_key() -> pgwarden::pg_driver::LedgerKey {
    static KEY: std::sync::OnceLock<pgwarden::pg_driver::LedgerKey> = std::sync::OnceLock::new();
    KEY.get_or_init(pgwarden::pg_driver::LedgerKey::generate)
        .clone()
}

fn provisioner(who: &As, iterations: u32) -> Arc<Provisioner> {
    let info: ConnInfo = who.dsn.parse().unwrap();
    let config = ProvisionerConfig {
        integration: "bench".into(),
        username_prefix: "pgw_".into(),
        user_mode: UserMode::Ephemeral,
        max_ttl: "7d".parse().unwrap(),
        scram_iterations: ScramIterations::new(iterations).unwrap(),
        password_max_age: None,
        successor: None,
        pool_size: CONCURRENCY + 2,
        connector_mode: who.mode,
        sensitive_roles_allowed: Vec::new(),
        cleanup_lock_timeout: pgwarden::pg_driver::DEFAULT_CLEANUP_LOCK_TIMEOUT,
        ledger_key: ledger_key(),
    };
    Arc::new(
        Provisioner::new(
            Connector::new(&info, &ConnectOptions::default()).unwrap(),
            config,
        )
        .unwrap(),
    )
}

fn request(schema: &str) -> GrantRequest {
    request_with_id(schema, None)
}

/// A grant request with an explicit id (the approval ticket's), or none.
fn request_with_id(schema: &str, grant_id: Option<String>) -> GrantRequest {
    GrantRequest {
        grant_id,
        requester: "bench@example.com".into(),
        access: vec![
            format!("postgresql-schema:bench/{schema}=read-only")
                .parse()
                .unwrap(),
        ],
        expiry: Expiry::After(Ttl::from_secs(3600).unwrap()),
        user_mode: None,
        session: pgwarden::core::session::SessionLimits::default(),
    }
}

/// Runs `n` jobs over `workers` tasks; returns the wall time.
async fn run_jobs<F, Fut>(n: u64, workers: usize, job: F) -> Duration
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let n = usize::try_from(n).unwrap();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers.min(n.max(1)) {
        let (job, next) = (job.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                job(i).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

/// Plain clients for the floor, one per worker.
async fn floor_clients(
    who: &As,
    n: usize,
) -> Vec<Arc<pgwarden::pg_driver::tokio_postgres::Client>> {
    let info: ConnInfo = who.dsn.parse().unwrap();
    let connector = Connector::new(&info, &ConnectOptions::default()).unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let c = connector.connect().await.unwrap();
        out.push(Arc::new(c.client));
    }
    out
}

/// Grants `n` read-only grants on `schema` (half of them with an explicit id) that stay
/// live while the benches run: the ledger of a busy instance.
async fn live_grants(p: &Arc<Provisioner>, schema: &str, n: usize) -> Vec<String> {
    let ids = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
    let (p2, ids2, schema) = (p.clone(), ids.clone(), schema.to_owned());
    run_jobs(n as u64, CONCURRENCY, move |i| {
        let (p, ids, schema) = (p2.clone(), ids2.clone(), schema.clone());
        async move {
            let id = (i % 2 == 0).then(|| format!("live-{i}"));
            let g = p.grant(request_with_id(&schema, id)).await.unwrap();
            ids.lock().unwrap().push(g.grant_id);
        }
    })
    .await;
    std::mem::take(&mut *ids.lock().unwrap())
}

fn bench_setting(
    c: &mut Criterion,
    rt: &Runtime,
    who: &As,
    schema: &str,
    iterations: u32,
    live: usize,
) {
    let p = provisioner(who, iterations);
    // Create the privilege role once, as a first grant would.
    let first = rt.block_on(p.grant(request(schema))).unwrap();
    rt.block_on(p.revoke(&first.grant_id)).unwrap();
    let keep = rt.block_on(p.grant(request(schema))).unwrap();
    let live_ids = rt.block_on(live_grants(&p, schema, live));
    let entry: AccessEntry = format!("postgresql-schema:bench/{schema}=read-only")
        .parse()
        .unwrap();
    let privilege_role = privilege_role_name(&entry);
    let clients = rt.block_on(floor_clients(who, CONCURRENCY));

    let mode = match who.mode {
        ConnectorMode::Superuser => String::new(),
        ConnectorMode::Createrole => "createrole/".to_owned(),
    };
    let live_label = if live > 0 {
        format!("+{live}live")
    } else {
        String::new()
    };
    let mut group = c.benchmark_group(format!(
        "provision/{mode}{schema}{live_label}/scram{iterations}"
    ));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    for (label, workers) in [("serial", 1), ("concurrent16", CONCURRENCY)] {
        for (name, explicit) in [("pgwarden_grant", false), ("pgwarden_grant_id", true)] {
            group.bench_function(format!("{name}/{label}"), |b| {
                b.to_async(rt).iter_custom(|iters| {
                    let p = p.clone();
                    let schema = schema.to_owned();
                    async move {
                        let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
                        let (p2, ids2) = (p.clone(), ids.clone());
                        let took = run_jobs(iters, workers, move |_| {
                            let (p, ids, schema) = (p2.clone(), ids2.clone(), schema.clone());
                            async move {
                                let id = explicit.then(|| {
                                    format!(
                                        "ticket-{}",
                                        random_string(b"abcdefghijklmnopqrstuvwxyz", 16)
                                    )
                                });
                                let g = p.grant(request_with_id(&schema, id)).await.unwrap();
                                ids.lock().unwrap().push(g.grant_id);
                            }
                        })
                        .await;
                        let ids = std::mem::take(&mut *ids.lock().unwrap());
                        run_jobs(ids.len() as u64, CONCURRENCY, move |i| {
                            let (p, id) = (p.clone(), ids[i].clone());
                            async move {
                                p.revoke(&id).await.unwrap();
                            }
                        })
                        .await;
                        took
                    }
                });
            });
        }
        group.bench_function(format!("pgwarden_revoke/{label}"), |b| {
            b.to_async(rt).iter_custom(|iters| {
                let p = p.clone();
                let schema = schema.to_owned();
                async move {
                    let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
                    let (p2, ids2) = (p.clone(), ids.clone());
                    run_jobs(iters, CONCURRENCY, move |_| {
                        let (p, ids, schema) = (p2.clone(), ids2.clone(), schema.clone());
                        async move {
                            let g = p.grant(request(&schema)).await.unwrap();
                            ids.lock().unwrap().push(g.grant_id);
                        }
                    })
                    .await;
                    let ids = std::mem::take(&mut *ids.lock().unwrap());
                    run_jobs(ids.len() as u64, workers, move |i| {
                        let (p, id) = (p.clone(), ids[i].clone());
                        async move {
                            p.revoke(&id).await.unwrap();
                        }
                    })
                    .await
                }
            });
        });
        group.bench_function(format!("floor_grant/{label}"), |b| {
            b.to_async(rt).iter_custom(|iters| {
                let clients = clients.clone();
                let privilege_role = privilege_role.clone();
                async move {
                    let n = usize::try_from(iters).unwrap();
                    // Verifiers are computed before the clock starts: that is the floor.
                    let stmts: Arc<Vec<(String, String)>> = Arc::new(
                        (0..n)
                            .map(|_| {
                                let name = format!("floor_{}", random_string(b"abcdefghijklmnopqrstuvwxyz", 12));
                                let v = verifier(&generate_password(), ScramIterations::new(iterations).unwrap());
                                (
                                    format!(
                                        "CREATE ROLE {name} LOGIN PASSWORD '{v}' VALID UNTIL '2100-01-01' IN ROLE pgwarden_managed, {privilege_role}"
                                    ),
                                    format!("DROP ROLE {name}"),
                                )
                            })
                            .collect(),
                    );
                    let (c2, s2) = (clients.clone(), stmts.clone());
                    let took = run_jobs(iters, workers, move |i| {
                        let (client, sql) = (c2[i % c2.len()].clone(), s2[i].0.clone());
                        async move {
                            client.batch_execute(&sql).await.unwrap();
                        }
                    })
                    .await;
                    run_jobs(iters, CONCURRENCY, move |i| {
                        let (client, sql) = (clients[i % clients.len()].clone(), stmts[i].1.clone());
                        async move {
                            client.batch_execute(&sql).await.unwrap();
                        }
                    })
                    .await;
                    took
                }
            });
        });
        // A bare DROP ROLE, and what a complete revocation must do as one batch from a
        // plain client: no login, sessions ended, memberships removed, the databases
        // that still reference the role found, what it owns here dropped, the role
        // dropped.
        let (mode, major) = (who.mode, who.major);
        for (name, complete) in [("floor_revoke", false), ("floor_revoke_complete", true)] {
            group.bench_function(format!("{name}/{label}"), |b| {
                b.to_async(rt).iter_custom(|iters| {
                    let clients = clients.clone();
                    let privilege_role = privilege_role.clone();
                    async move {
                        let n = usize::try_from(iters).unwrap();
                        let names: Arc<Vec<String>> =
                            Arc::new((0..n).map(|_| format!("floor_{}", random_string(b"abcdefghijklmnopqrstuvwxyz", 12))).collect());
                        let v = verifier(&generate_password(), ScramIterations::new(iterations).unwrap());
                        let (c2, n2) = (clients.clone(), names.clone());
                        let privilege_role2 = privilege_role.clone();
                        run_jobs(iters, CONCURRENCY, move |i| {
                            // A CREATEROLE client may drop what a role owns only as a
                            // member of it, which pgwarden also arranges when it
                            // creates a role (before 16 a GRANT, from 16
                            // createrole_self_grant).
                            let (before, after) = match (mode, major >= 16) {
                                (ConnectorMode::Createrole, true) => {
                                    ("SET createrole_self_grant = 'set, inherit'; ", String::new())
                                }
                                (ConnectorMode::Createrole, false) => {
                                    ("", format!("; GRANT {} TO CURRENT_USER", n2[i]))
                                }
                                (ConnectorMode::Superuser, _) => ("", String::new()),
                            };
                            let sql = format!(
                                "{before}CREATE ROLE {} LOGIN PASSWORD '{v}' VALID UNTIL '2100-01-01' IN ROLE pgwarden_managed, {privilege_role2}{after}",
                                n2[i]
                            );
                            let client = c2[i % c2.len()].clone();
                            async move {
                                client.batch_execute(&sql).await.unwrap();
                            }
                        })
                        .await;
                        run_jobs(iters, workers, move |i| {
                            let name = &names[i];
                            let sql = if complete {
                                format!(
                                    "ALTER ROLE {name} NOLOGIN;
                                     SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE usename = '{name}';
                                     REVOKE pgwarden_managed, {privilege_role} FROM {name};
                                     SELECT DISTINCT dbid FROM pg_catalog.pg_shdepend WHERE refobjid = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = '{name}');
                                     DROP OWNED BY {name};
                                     DROP ROLE {name}"
                                )
                            } else {
                                format!("DROP ROLE {name}")
                            };
                            let client = clients[i % clients.len()].clone();
                            async move {
                                client.batch_execute(&sql).await.unwrap();
                            }
                        })
                        .await
                    }
                });
            });
        }
    }
    group.bench_function("scram_verifier", |b| {
        let it = ScramIterations::new(iterations).unwrap();
        let pw = generate_password();
        b.iter(|| verifier(&pw, it));
    });
    group.finish();
    rt.block_on(p.revoke(&keep.grant_id)).unwrap();
    let p2 = p.clone();
    rt.block_on(run_jobs(live_ids.len() as u64, CONCURRENCY, move |i| {
        let (p, id) = (p2.clone(), live_ids[i].clone());
        async move {
            p.revoke(&id).await.unwrap();
        }
    }));
}

fn provision(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let cluster = TempCluster::builder().max_connections(200).start().unwrap();
    let mode: ConnectorMode = std::env::var("PGWARDEN_BENCH_CONNECTOR_MODE")
        .map_or(Ok(ConnectorMode::Superuser), |v| v.parse())
        .unwrap();
    let who = match mode {
        ConnectorMode::Superuser => As {
            dsn: cluster.dsn(),
            mode,
            major: cluster.server_major(),
        },
        ConnectorMode::Createrole => {
            cluster
                .psql("CREATE ROLE bench_cloud LOGIN CREATEROLE CREATEDB PASSWORD 'bench-cloud'")
                .unwrap();
            As {
                dsn: cluster.conninfo("bench_cloud", "bench-cloud", "postgres"),
                mode,
                major: cluster.server_major(),
            }
        }
    };
    let owner_dsn = who.dsn.replace("dbname=postgres", "dbname=bench");
    cluster
        .psql_with(&who.dsn, "CREATE DATABASE bench")
        .unwrap();
    cluster
        .psql_with(
            &owner_dsn,
            "CREATE SCHEMA small; CREATE SCHEMA big;
             DO $$ BEGIN
               FOR i IN 1..100 LOOP EXECUTE format('CREATE TABLE small.t%s (id serial, v text)', i); END LOOP;
               FOR i IN 1..10000 LOOP EXECUTE format('CREATE TABLE big.t%s (id int)', i); END LOOP;
             END $$;",
        )
        .unwrap();
    // PGWARDEN_BENCH_ONLY=small|big|live runs one setting.
    let only = std::env::var("PGWARDEN_BENCH_ONLY").unwrap_or_default();
    let runs = |what: &str| only.is_empty() || only == what;
    if runs("small") {
        for iterations in [4096, 1] {
            bench_setting(c, &rt, &who, "small", iterations, 0);
        }
    }
    if runs("big") {
        bench_setting(c, &rt, &who, "big", 1, 0);
    }
    if runs("live") {
        bench_setting(c, &rt, &who, "small", 1, LIVE_GRANTS);
    }
}

criterion_group!(benches, provision);
criterion_main!(benches);
