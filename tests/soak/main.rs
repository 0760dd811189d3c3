//! A soak that checks invariants (issue 13, item 6): for `PGWARDEN_SOAK_SECS`
//! (default 60) it runs phases of a few seconds of mixed grant / extend / revoke /
//! login against a throwaway cluster, with two replicas of one integration running
//! the runtime (expiry), and injects faults at random, during phases or between them:
//! killed connector backends, an immediate server restart, a secret store that fails
//! around a credential rotation, and cancelled grants and revocations. After every
//! phase it quiesces and checks, with the cluster's superuser and the library:
//!
//! 1. every managed login role (member of `pgwarden_managed` without admin option)
//!    that exists before and after the listing is listed by exactly one grant
//!    (Revoking grants are listed too, so no exception is needed; a role dropped
//!    while we listed is skipped);
//! 2. every Active grant's role can log in, `VALID UNTIL` its expiry, and is a
//!    member of exactly the privilege roles of its access entries; a few of them
//!    really log in;
//! 3. no grant is listed (or audited as expired) later than its expiry plus the
//!    sweep interval, plus the duration of every fault overlapping the window from
//!    one sweep interval before the expiry to when it was seen, plus 2 s of slack;
//! 4. no grant has more than one successful Expire/Revoke audit event;
//! 5. every grant whose `grant()` returned Ok is listed or has a successful
//!    Expire/Revoke event, except those whose explicit revocation failed or was
//!    cancelled (the server may have finished it without anybody hearing), and
//!    those reconciliation revoked (audited as one count per run: bounded by the sum
//!    of those counts);
//!
//! and that grantee sessions kept open are ended once their grant is gone. At the
//! end it waits for every grant to expire and checks that nothing is left.
//!
//! Run it for an hour: `PGWARDEN_SOAK_SECS=3600 cargo test --release --all-features
//! --test soak -- --nocapture`; replay a seed with `PGWARDEN_SOAK_SEED=<seed>`.

mod book;
mod check;
mod faults;
mod ops;
mod rig;
mod rng;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use book::FaultKind;
use faults::Plan;
use rig::Soak;
use rng::Rng;
use time::OffsetDateTime;

/// Operations in flight at once.
const CONCURRENCY: usize = 8;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let folded = u64::try_from(nanos & u128::from(u64::MAX)).unwrap_or(0);
    Rng::new(folded ^ u64::from(std::process::id())).next_u64()
}

/// One phase: a bounded random mix of operations, and maybe a fault during it.
async fn phase(soak: &Arc<Soak>, rng: &mut Rng, n: usize) {
    let length = rng.millis(2_000, 5_000);
    let end = Instant::now() + length;
    let mut tasks = tokio::task::JoinSet::new();
    if rng.chance(40) {
        let (plan, at) = (Plan::draw(rng), rng.millis(0, 3_000));
        let s = soak.clone();
        tasks.spawn(async move {
            tokio::time::sleep(at).await;
            Box::pin(faults::inject(&s, plan, n)).await;
        });
    }
    let mut claimed = HashSet::new();
    while Instant::now() < end {
        while tasks.len() >= CONCURRENCY {
            tasks.join_next().await.unwrap().unwrap();
        }
        let op = ops::draw(soak, rng, &mut claimed);
        tasks.spawn(ops::run(soak.clone(), op, n));
        tokio::time::sleep(rng.millis(5, 80)).await;
    }
    let quiet = tokio::time::timeout(rig::BOUND * 2, async {
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    })
    .await;
    assert!(
        quiet.is_ok(),
        "seed {}: phase {n} did not quiesce",
        soak.seed
    );
    // A cancelled operation's server side ends a moment after its future.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Fails with everything needed to replay and understand the failure.
fn fail(soak: &Soak, phase: usize, violations: &[String]) -> ! {
    let book = soak.book();
    let faults: Vec<String> = book
        .faults
        .iter()
        .filter(|f| f.kind != FaultKind::Cancel)
        .map(|f| {
            format!(
                "phase {} {:?} at {} for {}: {}",
                f.phase, f.kind, f.start, f.duration, f.detail
            )
        })
        .collect();
    panic!(
        "SOAK FAILED — seed {} (replay: PGWARDEN_SOAK_SEED={}), phase {phase}\nviolations:\n{}\nfaults so far (cancellations omitted: {}):\n{}\ncounts: {:#?}",
        soak.seed,
        soak.seed,
        violations.join("\n"),
        book.faults_by_kind().get(&FaultKind::Cancel).unwrap_or(&0),
        faults.join("\n"),
        book.counts
    );
}

/// After the last phase: every grant expires and is revoked; nothing is left.
async fn drain(soak: &Arc<Soak>, phase: usize) {
    let started = Instant::now();
    let last_expiry = {
        let book = soak.book();
        book.grants
            .values()
            .map(|t| t.expires_at)
            .max()
            .unwrap_or_else(OffsetDateTime::now_utc)
    };
    let wait = Duration::try_from(last_expiry - OffsetDateTime::now_utc()).unwrap_or_default()
        + Duration::from_secs(15);
    loop {
        let left = check::roles_left(soak).await;
        if left == 0 {
            break;
        }
        if started.elapsed() > wait {
            fail(
                soak,
                phase,
                &[format!(
                    "{left} managed role(s) left {wait:?} after the last phase"
                )],
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let violations = check::check(soak, 0).await;
    if !violations.is_empty() {
        fail(soak, phase, &violations);
    }
}

fn figures(soak: &Soak, phases: usize, took: Duration) {
    let book = soak.book();
    let events = soak.audit.events();
    let count = |a: pgwarden::AuditAction| {
        events
            .iter()
            .filter(|e| e.action == a && !e.failed())
            .count()
    };
    eprintln!(
        "soak figures (seed {}): {took:.1?}, {phases} phases, {} checks\n  \
         grants made {} (failed {}), extended {} (failed {}), revoked on request {} (failed {}), \
         expired (audited) {}, cancelled grants {} / revocations {} ({} finished before the cancel)\n  \
         grantee logins {} (refused {}), sessions held {} (seen ended {}), rotations {} (failed {}), list retries {}\n  \
         faults: {:?}\n  max lateness of an expiry beyond its expiry: {} ({})",
        soak.seed,
        book.counts.checks,
        book.counts.grants_ok,
        book.counts.grants_failed,
        book.counts.extends_ok,
        book.counts.extends_failed,
        book.counts.revokes_ok,
        book.counts.revokes_failed,
        count(pgwarden::AuditAction::Expire),
        book.counts.cancelled_grants,
        book.counts.cancelled_revokes,
        book.counts.cancelled_completed,
        book.counts.logins_ok,
        book.counts.logins_refused,
        book.counts.sessions_held,
        book.counts.sessions_seen_ended,
        book.counts.rotations_ok,
        book.counts.rotations_failed,
        book.counts.list_retries,
        book.faults_by_kind(),
        book.max_lateness,
        book.max_lateness_grant,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_keeps_every_invariant() {
    let secs = env_u64("PGWARDEN_SOAK_SECS").unwrap_or(60);
    let seed = env_u64("PGWARDEN_SOAK_SEED").unwrap_or_else(random_seed);
    eprintln!("soak: {secs} s, seed {seed} (replay with PGWARDEN_SOAK_SEED={seed})");
    let mut rng = Rng::new(seed);
    let soak = Soak::new(seed).await;
    let runtimes = [soak.replicas[0].run(), soak.replicas[1].run()];
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        n += 1;
        phase(&soak, &mut rng, n).await;
        let mut violations = check::check(&soak, rng.index(2)).await;
        if violations.is_empty()
            && soak
                .book()
                .faults
                .last()
                .is_some_and(|f| f.phase == n && f.kind == FaultKind::StoreFailure)
            && let Err(e) = faults::replicas_work(&soak).await
        {
            violations.push(e);
        }
        if !violations.is_empty() {
            fail(&soak, n, &violations);
        }
        if rng.chance(25) {
            Box::pin(faults::inject(&soak, Plan::draw(&mut rng), n)).await;
        }
    }
    drain(&soak, n).await;
    for r in runtimes {
        assert!(
            tokio::time::timeout(rig::BOUND, r.shutdown()).await.is_ok(),
            "seed {seed}: a runtime did not shut down"
        );
    }
    figures(&soak, n, started.elapsed());
}
