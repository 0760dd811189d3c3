//! Item: a cancelled operation leaves no lock and no transaction in a pooled
//! connection.
//!
//! A host wraps `grant` or `revoke` in a timeout and the future is dropped half-way.
//! Before the fix the connection went back to the pool still holding the revocation's
//! session advisory lock (that grant then showed "revoking" for ever) or an open
//! transaction holding the shared privileges lock (which blocks every privilege-role
//! setup). Here the future is dropped right after every step hook in turn, and then
//! at spread-out points of a hundred revocations; afterwards no idle session of the connector
//! may hold an advisory lock or sit in a transaction, and the same operation must go
//! through.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pgwarden_pg_driver::ConnectOptions;
use pgwarden_pg_driver::{Provisioner, Step, StepHook};

use pgwarden_testkit::login_roles_of;

use crate::{cluster, common, q_in};

const APP: &str = "pgw-cancel-test";

fn options() -> ConnectOptions {
    ConnectOptions {
        application_name: APP.to_owned(),
        ..ConnectOptions::default()
    }
}

/// Idle sessions of this suite's connector that hold an advisory lock or an open
/// transaction — what a connection returned to the pool must never have.
fn leaked_state() -> String {
    q_in(
        "postgres",
        &format!(
            "SELECT pg_catalog.string_agg(a.pid::text || ' ' || a.state || ' ' || COALESCE(l.locktype, '-'), '; ')
             FROM pg_catalog.pg_stat_activity a
             LEFT JOIN pg_catalog.pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory'
             WHERE a.application_name = '{APP}' AND a.state <> 'active'
               AND (l.pid IS NOT NULL OR a.state LIKE 'idle in transaction%')"
        ),
    )
    .trim()
    .to_owned()
}

/// Waits (up to 5 s) for closed connections to end and in-flight statements to finish,
/// then asserts nothing leaked.
async fn assert_clean(context: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let leaked = leaked_state();
        if leaked.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{context}: pooled connections kept locks or transactions: {leaked}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A step at which an operation is cancelled: its hook, once armed, records that the
/// step was reached.
struct Stall {
    step: &'static str,
    armed: Arc<AtomicBool>,
    reached: Arc<AtomicBool>,
}

impl Stall {
    /// A stall at the first step whose name starts with `step`, and its hook.
    fn at(step: &'static str) -> (Stall, StepHook) {
        let (armed, reached) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (a, r) = (armed.clone(), reached.clone());
        let hook: StepHook = Arc::new(move |s: &Step| {
            if format!("{s:?}").starts_with(step) && a.swap(false, Ordering::SeqCst) {
                r.store(true, Ordering::SeqCst);
            }
            Ok(())
        });
        let stall = Stall {
            step,
            armed,
            reached,
        };
        (stall, hook)
    }

    /// Runs `op` and drops it at its first await after the step — what a host's
    /// timeout does when it fires there. `None` when it was dropped; the operation's
    /// output when it ended in the poll that reached the step.
    async fn cancel<F: std::future::Future>(&self, op: F) -> Option<F::Output> {
        self.reached.store(false, Ordering::SeqCst);
        self.armed.store(true, Ordering::SeqCst);
        let cancel = std::future::poll_fn(|_| {
            if self.reached.load(Ordering::SeqCst) {
                std::task::Poll::Ready(())
            } else {
                // The operation's own wake-ups poll this again.
                std::task::Poll::Pending
            }
        });
        let ended = tokio::select! {
            biased;
            () = cancel => None,
            out = op => Some(out),
        };
        assert!(
            !self.armed.load(Ordering::SeqCst),
            "{} was never reached",
            self.step
        );
        ended
    }
}

fn provisioner_with(hook: StepHook) -> Provisioner {
    crate::provisioner("cancel", &options()).with_step_hook(hook)
}

fn setup_database(db: &str) {
    cluster().create_database(db).unwrap();
    q_in(db, common::PROBE_SCHEMA_SQL);
}

/// How many times a step is tried before the test gives up on cancelling there.
///
/// The future is dropped at its first `Pending` after the step. On a loaded machine
/// the answers to what follows the step can all be in by the time they are polled,
/// and the operation then ends in that same poll: that run cancelled nothing, so it
/// proves nothing either way and the step is tried again.
const ATTEMPTS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_at_every_step_leaves_no_lock_or_transaction() {
    let db = "cancel_steps";
    setup_database(db);
    let access = format!("postgresql-schema:{db}/s1=read-write");
    let grant_steps = ["GrantPrivilegeRoles", "GrantLoginRole"];
    let revoke_steps = [
        "RevokeMark",
        "RevokeTerminateSessions",
        "RevokeMemberships",
        "RevokeCleanDatabase",
        "RevokeDropRole",
    ];
    for step in grant_steps {
        let (stall, hook) = Stall::at(step);
        let p = provisioner_with(hook);
        let mut completed = Vec::new();
        for _ in 0..ATTEMPTS {
            let ended = stall
                .cancel(p.grant(common::request("cancel@example.com", &[&access])))
                .await;
            let Some(result) = ended else { break };
            // Ended in the poll that reached the step: undo it and try again.
            let g = result.unwrap_or_else(|e| panic!("the grant failed: {e}"));
            p.revoke(&g.grant_id).await.unwrap();
            completed.push(g.username);
        }
        assert!(
            completed.len() < ATTEMPTS,
            "the grant was never cancelled at {step} in {ATTEMPTS} tries; it ended as {completed:?}"
        );
        assert_clean(&format!("grant cancelled after {step}")).await;
        // The same provisioner (and pool) grants and revokes afterwards.
        let g = tokio::time::timeout(
            Duration::from_secs(20),
            p.grant(common::request("cancel@example.com", &[&access])),
        )
        .await
        .expect("a grant after the cancelled one hung: a lock was left behind")
        .unwrap();
        p.revoke(&g.grant_id).await.unwrap();
        assert_clean(&format!("after the grant that followed {step}")).await;
    }
    for step in revoke_steps {
        let (stall, hook) = Stall::at(step);
        let p = provisioner_with(hook);
        let admin = format!("postgresql-schema:{db}/s1=admin");
        let (mut completed, mut cancelled) = (Vec::new(), None);
        for _ in 0..ATTEMPTS {
            let g = p
                .grant(common::request("cancel@example.com", &[&admin]))
                .await
                .unwrap();
            // Something to clean in the database, so that every step is reached.
            common::as_user(
                cluster(),
                &g.username,
                secrecy::ExposeSecret::expose_secret(g.password.as_ref().unwrap()),
                db,
                "CREATE TABLE s1.mine (id int)",
            )
            .unwrap();
            let Some(report) = stall.cancel(p.revoke(&g.grant_id)).await else {
                cancelled = Some(g);
                break;
            };
            // Ended in the poll that reached the step: try again on a new grant.
            completed.push(report.unwrap_or_else(|e| panic!("the revocation failed: {e}")));
        }
        let g = cancelled.unwrap_or_else(|| {
            panic!(
                "the revocation was never cancelled at {step} in {ATTEMPTS} tries: {completed:?}"
            )
        });
        assert_clean(&format!("revocation cancelled after {step}")).await;
        // Revoking again completes (it is not "in progress" for ever).
        let report = tokio::time::timeout(Duration::from_secs(20), p.revoke(&g.grant_id))
            .await
            .expect("revoking again hung")
            .unwrap();
        assert!(report.role_dropped || report.already_revoked, "{report:?}");
        let left = q_in(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_catalog.pg_roles WHERE rolname = '{}'",
                g.username
            ),
        );
        assert_eq!(left.trim(), "0", "{} survived after {step}", g.username);
        assert_clean(&format!("after revoking again ({step})")).await;
    }
}

/// The reproduction: a hundred revocations, each under a timeout shorter than a
/// revocation takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_revocations_under_tiny_timeouts_leave_nothing_behind() {
    let db = "cancel_storm";
    setup_database(db);
    let p = crate::provisioner("cancel_storm", &options());
    let access = format!("postgresql-schema:{db}/s1=read-only");
    let mut grants = Vec::new();
    for i in 0..101 {
        grants.push(
            p.grant(common::request(
                &format!("storm-{i}@example.com"),
                &[&access],
            ))
            .await
            .unwrap(),
        );
    }
    // How long one revocation takes here: the timeouts spread over 5–100 % of it (the
    // reproduction's 0.2–3 ms on its machine), so they fire at every stage.
    let started = Instant::now();
    p.revoke(&grants.pop().unwrap().grant_id).await.unwrap();
    let full = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let mut cancelled = 0;
    for (i, g) in grants.iter().enumerate() {
        let micros = full / 20 + (i as u64 * full) / 99;
        if tokio::time::timeout(Duration::from_micros(micros), p.revoke(&g.grant_id))
            .await
            .is_err()
        {
            cancelled += 1;
        }
    }
    assert!(
        cancelled > 0,
        "no revocation was cancelled: the test proves nothing"
    );
    assert_clean("after the cancelled revocations").await;
    for g in &grants {
        let report = tokio::time::timeout(Duration::from_secs(20), p.revoke(&g.grant_id))
            .await
            .expect("a revocation hung: a lock was left behind")
            .unwrap();
        assert!(report.role_dropped || report.already_revoked, "{report:?}");
    }
    let left = q_in(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_catalog.pg_roles WHERE {}",
            login_roles_of("storm")
        ),
    );
    assert_eq!(left.trim(), "0");
    assert_clean("after revoking again").await;
}
