//! Measures an expiry storm: N grants (default 10,000) expiring at one instant on a
//! throwaway PostgreSQL cluster, revoked by the runtime — once while it runs, once
//! when it starts after they all expired — beside the floor: one plain client
//! dropping N login roles, one `DROP ROLE` each.
//!
//! ```text
//! cargo run --release --example storm -- 10000
//! ```
//!
//! Prints, per scenario, the time from expiry (or start-up) to the last revocation,
//! the rate, the peak resident memory of this process during the revocations, and
//! whether each grant was audited exactly once.

#[path = "../tests/storm/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::Storm;
use time::OffsetDateTime;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(10_000, |a| a.parse().expect("the number of grants"));
    let c = harness::cluster();
    let key = pgwarden::pg_driver::LedgerKey::generate();
    println!(
        "PostgreSQL {} on 127.0.0.1:{}, {n} grants per scenario",
        c.server_major(),
        c.port()
    );

    // 1. The runtime runs; every grant expires at one instant.
    let storm = Storm::new(&c, "storm_live", &key).await;
    let made = Instant::now();
    let at = storm.grant_expiring_together(n, 16).await;
    println!(
        "granted (16 at a time, all for one instant) in {:.1?}",
        made.elapsed()
    );
    let read = Instant::now();
    let listed = storm.integration.list().await.expect("the ledger").len();
    println!(
        "one sweep's ledger read of {listed} grants: {:.1?}",
        read.elapsed()
    );
    let expired =
        Instant::now() + Duration::try_from(at - OffsetDateTime::now_utc()).unwrap_or_default();
    let (done, rss) = storm.run_until_all_revoked().await;
    report(
        "expiring while serve runs",
        n,
        done.saturating_duration_since(expired),
        rss,
        storm.audited(),
    );

    // 2. Nothing ran while they expired; the runtime starts afterwards.
    let storm = Storm::new(&c, "storm_start", &key).await;
    let at = storm.grant_expiring_together(n, 16).await;
    tokio::time::sleep(
        Duration::try_from(at - OffsetDateTime::now_utc()).unwrap_or_default()
            + Duration::from_secs(1),
    )
    .await;
    let started = Instant::now();
    let (done, rss) = storm.run_until_all_revoked().await;
    report(
        "expired before start-up",
        n,
        done - started,
        rss,
        storm.audited(),
    );

    // 3. The floor.
    let floor = harness::drop_role_floor(&c, n).await;
    println!(
        "floor: one client, DROP ROLE x {n}: {floor:.2?} ({:.0}/s)",
        rate(n, floor)
    );
}

fn rate(n: usize, took: Duration) -> f64 {
    #[allow(clippy::cast_precision_loss, reason = "a rate to print")]
    let n = n as f64;
    n / took.as_secs_f64().max(1e-9)
}

fn report(
    what: &str,
    n: usize,
    took: Duration,
    rss_kib: Option<u64>,
    (audited, twice): (usize, usize),
) {
    println!(
        "{what}: all {n} revoked {took:.2?} after expiry ({:.0}/s); peak RSS {}; audited {audited}, {twice} more than once",
        rate(n, took),
        rss_kib.map_or("unknown".into(), |k| format!("{} MiB", k.div_ceil(1024))),
    );
}
