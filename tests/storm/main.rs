//! Expiry storms in CI: 1,000 grants expiring at the same instant are all revoked
//! soon after it, whether the runtime was running or starts after they expired, and
//! each is audited once. (`cargo run --release --example storm` measures 10,000.)

mod harness;

use std::time::Duration;

use harness::Storm;
use time::OffsetDateTime;

const GRANTS: usize = 1_000;
/// Generous: a debug build on a loaded 2-core CI machine. The release figures are in
/// the example's output.
const BOUND: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_grants_expiring_at_once_are_all_revoked() {
    let c = harness::cluster();
    let key = pgwarden::pg_driver::LedgerKey::generate();
    let storm = Storm::new(&c, "storm_live", &key).await;
    let at = storm.grant_expiring_together(GRANTS, 16).await;
    let runtime = storm.run();
    let expired = std::time::Instant::now()
        + Duration::try_from(at - OffsetDateTime::now_utc()).unwrap_or_default();
    let done = storm
        .until_all_revoked(BOUND + Duration::from_secs(3))
        .await;
    runtime.shutdown().await;
    let done = done.unwrap_or_else(|left| panic!("{left} grants left after {BOUND:?}"));
    let took = done.saturating_duration_since(expired);
    eprintln!("{GRANTS} expiries revoked {took:?} after they expired");
    assert!(took < BOUND, "{took:?}");
    assert_eq!(
        storm.audited(),
        (GRANTS, 0),
        "each expiry audited exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_grants_that_expired_while_nothing_ran_are_revoked_at_start_up() {
    let c = harness::cluster();
    let key = pgwarden::pg_driver::LedgerKey::generate();
    let storm = Storm::new(&c, "storm_start", &key).await;
    let at = storm.grant_expiring_together(GRANTS, 16).await;
    tokio::time::sleep(Duration::try_from(at - OffsetDateTime::now_utc()).unwrap_or_default())
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(storm.left().await, i64::try_from(GRANTS).unwrap());
    let started = std::time::Instant::now();
    let runtime = storm.run();
    let done = storm.until_all_revoked(BOUND).await;
    runtime.shutdown().await;
    let done = done.unwrap_or_else(|left| panic!("{left} grants left after {BOUND:?}"));
    eprintln!(
        "{GRANTS} expired grants revoked {:?} after start-up",
        done - started
    );
    assert_eq!(
        storm.audited(),
        (GRANTS, 0),
        "each expiry audited exactly once"
    );
}
