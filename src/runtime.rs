//! The background runtime: timely expiry, reconciliation and rotation.
//!
//! [`Integration::run`] starts one task. Across every process that runs the same
//! integration, exactly one is the **sweeper**: it holds a session advisory lock
//! (`pg_try_advisory_lock`) on a connection of its own; the others retry every
//! `sweep_interval` and take over within that time if the sweeper's session ends.
//! The sweeper revokes every grant at its `expires_at` (waking at the earliest
//! expiry, re-reading the ledger every `sweep_interval` to see other processes'
//! grants), reconciles every `reconcile_interval`, and rotates the connector's
//! password when it is due. At start-up its first pass revokes whatever expired while
//! nothing ran. Each grant is revoked once: revocations of one grant are serialized in
//! PostgreSQL, and one already finished elsewhere is not revoked (or audited) again.
//!
//! Expiry never waits on one slow revocation. Each pass hands every grant due to
//! [`Provisioner::revoke_expired_batch`](pgwarden_pg_driver::provision::Provisioner),
//! which ends their access together (login, sessions, memberships) and drops the roles
//! that own nothing, without waiting for any lock. What is left — roles that own
//! objects, persistent roles — is finished by at most `revocation_concurrency`
//! background revocations, each clean-up bounded by the driver's lock timeout; one
//! that fails (a lock held by another session, named in its audit event) is retried
//! with jittered backoff, from 1 s up to a minute, while later expiries go on.
//! Reconcile and rotation run beside expiry, one of each at a time, so neither a slow
//! reconcile nor a secret store that hangs holds up a revocation.
//!
//! Each revocation is audited once, by the process that heard it finish. One cut short
//! by a lost connection or a crashed server may have finished server-side unheard: its
//! grant is remembered, and when it is found gone with no revocation event here since,
//! a `RevocationObserved` event says so (another process may have revoked and audited
//! it; which one finished it cannot be known). (A
//! revocation the server itself loses — a failover to a replica that had not
//! received it — brings the grant back; it is revoked, and audited, again.)

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgwarden_pg_driver::expire::BatchOutcome;
use pgwarden_pg_driver::provision::{ListedGrant, ListedState};
use pgwarden_pg_driver::retry::backoff;
use pgwarden_pg_driver::sql::advisory_key;
use time::OffsetDateTime;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::audit::{AuditAction, revocation_detail};
use crate::integration::Integration;

/// Stops a running runtime.
#[derive(Debug)]
pub struct RunHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunHandle {
    /// Stops the runtime after the step it is in, and waits for it. Revocations still
    /// running in the background are abandoned where they are (they are cancel-safe:
    /// each grant stays marked revoking, and the next sweeper finishes it).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Whether the task has ended (it ends only when stopped).
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// The first wait before retrying a failed expiry revocation, and the longest.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_CAP: Duration = Duration::from_secs(60);

/// How long a stopping sweeper lets a rotation under way finish.
const ROTATION_GRACE: Duration = Duration::from_secs(30);

/// The sweeper's revocations in flight and those waiting to be retried.
struct Expiries {
    tasks: JoinSet<(String, Ended)>,
    /// Grant of each task, also when it panics.
    task_grants: HashMap<tokio::task::Id, String>,
    in_flight: HashSet<String>,
    /// Failures in a row and when to try again.
    retry: HashMap<String, (u32, Instant)>,
    slots: Arc<Semaphore>,
}

/// How a background revocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Revoked (and audited).
    Revoked,
    /// Nothing was left to revoke.
    Gone,
    /// It failed (and the failure was audited); it is retried.
    Failed,
}

impl Expiries {
    fn new(concurrency: usize) -> Self {
        Expiries {
            tasks: JoinSet::new(),
            task_grants: HashMap::new(),
            in_flight: HashSet::new(),
            retry: HashMap::new(),
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// Whether `grant_id` is left alone this pass: revoking already, or backing off.
    fn skip(&self, grant_id: &str, now: Instant) -> bool {
        self.in_flight.contains(grant_id)
            || self.retry.get(grant_id).is_some_and(|(_, at)| *at > now)
    }

    /// Revokes `grant_id` singly in the background, in one of the slots.
    fn spawn(&mut self, integration: &Arc<Integration>, grant_id: String) {
        if !self.in_flight.insert(grant_id.clone()) {
            return;
        }
        let (this, slots, id) = (integration.clone(), self.slots.clone(), grant_id.clone());
        let handle = self.tasks.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let ended = match this.revoke_as(&id, AuditAction::Expire).await {
                Ok(r) if r.already_revoked => Ended::Gone,
                Ok(_) => Ended::Revoked,
                Err(_) => Ended::Failed,
            };
            (id, ended)
        });
        self.task_grants.insert(handle.id(), grant_id);
    }

    /// Collects finished revocations: a failed one is retried after a backoff.
    fn reap(&mut self, integration: &Integration) {
        while let Some(done) = self.tasks.try_join_next_with_id() {
            let (task, ended) = match done {
                Ok((task, (_, ended))) => (task, ended),
                Err(e) => (e.id(), Ended::Failed),
            };
            let Some(grant_id) = self.task_grants.remove(&task) else {
                continue;
            };
            self.in_flight.remove(&grant_id);
            match ended {
                Ended::Revoked => self.settled(&grant_id, true),
                Ended::Gone => self.gone(integration, &grant_id),
                Ended::Failed => self.settled(&grant_id, false),
            }
        }
    }

    /// After an attempt on `grant_id`: forget it, or schedule its retry.
    fn settled(&mut self, grant_id: &str, ok: bool) {
        if ok {
            self.retry.remove(grant_id);
        } else {
            let failures = self.retry.get(grant_id).map_or(0, |(n, _)| *n) + 1;
            let at = Instant::now() + backoff(failures, RETRY_FIRST, RETRY_CAP);
            self.retry.insert(grant_id.to_owned(), (failures, at));
        }
    }

    /// `grant_id` is no longer in the ledger. If a revocation of ours failed half-way
    /// and none has been audited here since, record that it is gone: that attempt
    /// finished it unheard, or another process did — which cannot be told apart, so
    /// this is an observation, not a second revocation event.
    /// While a revocation or reconcile of this process runs, it may be the one that
    /// finished it and is yet to say so: the grant stays unconfirmed, for a later pass.
    fn gone(&mut self, integration: &Integration, grant_id: &str) {
        self.retry.remove(grant_id);
        if integration
            .revoking
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0
        {
            return;
        }
        let unheard = integration.unconfirmed().remove(grant_id);
        if unheard {
            integration.audit(AuditAction::RevocationObserved, |e| {
                e.grant_id = Some(grant_id.to_owned());
                e.detail = "the grant is gone: a revocation of ours was cut off, and it or another process finished it".into();
            });
        }
    }
}

impl Integration {
    /// Starts the background runtime (see the module docs) on the current tokio runtime.
    #[must_use]
    pub fn run(self: &Arc<Self>) -> RunHandle {
        let (stop, mut stopped) = watch::channel(false);
        let this = self.clone();
        let task = tokio::spawn(async move {
            // Kept across sweeper sessions: revocations in flight and retries go on
            // when a lost connection ends one session and the next takes over.
            let mut expiries = Expiries::new(this.options.pool_size.saturating_sub(1));
            while !*stopped.borrow() {
                match this.try_become_sweeper().await {
                    Ok(Some(lock)) => {
                        tracing::info!(integration = %this.config.name, "this process is the sweeper");
                        this.sweep(&lock, &mut expiries, &mut stopped).await;
                        drop(lock);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(integration = %this.config.name, error = %e, "cannot reach the instance; retrying");
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(this.options.sweep_interval) => {}
                    _ = stopped.changed() => {}
                }
            }
        });
        RunHandle { stop, task }
    }

    /// A connection holding the sweeper lock, or `None` when another process holds it.
    async fn try_become_sweeper(
        &self,
    ) -> Result<Option<pgwarden_pg_driver::connect::Connection>, crate::IntegrationError> {
        let conn = self.connector_session(None).await?;
        let key = advisory_key(&format!("pgwarden:sweeper:{}", self.config.name));
        let got: bool = conn
            .query_one("SELECT pg_catalog.pg_try_advisory_lock($1)", &[&key])
            .await
            .map_err(|e| crate::IntegrationError::Database {
                action: "taking the sweeper lock",
                message: e.to_string(),
            })?
            .get(0);
        Ok(got.then_some(conn))
    }

    async fn sweep(
        self: &Arc<Self>,
        lock: &pgwarden_pg_driver::connect::Connection,
        expiries: &mut Expiries,
        stopped: &mut watch::Receiver<bool>,
    ) {
        // Reconcile and rotation run beside expiry, one of each at a time: a slow
        // reconcile or a secret store that hangs never holds up a revocation.
        let mut reconciling: Option<JoinHandle<()>> = None;
        let mut rotating: Option<JoinHandle<bool>> = None;
        let mut last_reconcile: Option<Instant> = None;
        let mut last_rotation_check: Option<Instant> = None;
        // A failed rotation is retried soon (30 s, doubling), not a whole check
        // interval later.
        let mut rotation_failures: u32 = 0;
        loop {
            if *stopped.borrow() || lock.client.is_closed() {
                break;
            }
            let next_expiry = self.revoke_expired(expiries).await;
            if reconciling.as_ref().is_none_or(JoinHandle::is_finished)
                && last_reconcile.is_none_or(|t| t.elapsed() >= self.options.reconcile_interval)
            {
                let this = self.clone();
                reconciling = Some(tokio::spawn(async move {
                    let _ = this.reconcile().await;
                }));
                last_reconcile = Some(Instant::now());
            }
            if let Some(done) = rotating.take_if(|h| h.is_finished()) {
                if done.await.unwrap_or(false) {
                    rotation_failures = 0;
                } else {
                    rotation_failures = rotation_failures.saturating_add(1);
                }
            }
            let rotation_delay =
                rotation_check_delay(rotation_failures, self.options.rotation_check_interval);
            if rotating.is_none()
                && last_rotation_check.is_none_or(|t| t.elapsed() >= rotation_delay)
            {
                let this = self.clone();
                let retry_in = rotation_check_delay(
                    rotation_failures.saturating_add(1),
                    self.options.rotation_check_interval,
                );
                rotating = Some(tokio::spawn(async move {
                    match this.rotate_if_due().await {
                        Ok(_) => true,
                        Err(e) => {
                            tracing::warn!(integration = %this.config.name, error = %e, ?retry_in, "scheduled credential rotation failed; the connector still logs in");
                            false
                        }
                    }
                }));
                last_rotation_check = Some(Instant::now());
            }
            let mut wait = self.options.sweep_interval;
            if let Some(at) = next_expiry {
                let until = at - OffsetDateTime::now_utc();
                let until = Duration::try_from(until).unwrap_or(Duration::ZERO);
                wait = wait.min(until);
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.wake.notified() => {}
                _ = stopped.changed() => {}
            }
        }
        if let Some(r) = reconciling {
            r.abort();
        }
        // A rotation is let finish (bounded): stopped half-way it is recovered, but
        // the next start would have to promote its staged password.
        if let Some(r) = rotating {
            let _ = tokio::time::timeout(ROTATION_GRACE, r).await;
        }
    }

    /// Revokes every grant past its expiry (see the module docs); returns the next
    /// expiry to wake for.
    async fn revoke_expired(self: &Arc<Self>, expiries: &mut Expiries) -> Option<OffsetDateTime> {
        expiries.reap(self);
        let grants = match self.list().await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(integration = %self.config.name, error = %e, "cannot read the ledger");
                return None;
            }
        };
        let (now, instant) = (OffsetDateTime::now_utc(), Instant::now());
        let mut next = None::<OffsetDateTime>;
        let mut due: Vec<ListedGrant> = Vec::new();
        // A grant a failed attempt left unheard and now gone was finished by that
        // attempt (see `gone`).
        if !self.unconfirmed().is_empty() {
            let listed: HashSet<&str> = grants.iter().map(|g| g.grant_id.as_str()).collect();
            let vanished: Vec<String> = self
                .unconfirmed()
                .iter()
                .filter(|id| !listed.contains(id.as_str()))
                .cloned()
                .collect();
            for id in vanished {
                expiries.gone(self, &id);
            }
        }
        for g in grants {
            if g.state == ListedState::Active && g.expires_at > now {
                next = Some(next.map_or(g.expires_at, |n| n.min(g.expires_at)));
            } else if !expiries.skip(&g.grant_id, instant) {
                due.push(g);
            }
        }
        if due.is_empty() {
            return next;
        }
        let connected = self.connected().await;
        for (grant_id, outcome) in connected.provisioner.revoke_expired_batch(&due).await {
            match outcome {
                BatchOutcome::Revoked(report) => {
                    expiries.settled(&grant_id, true);
                    self.audit(AuditAction::Expire, |e| {
                        e.grant_id = Some(grant_id);
                        e.username.clone_from(&report.username);
                        e.detail = revocation_detail(&report);
                    });
                }
                BatchOutcome::AccessEnded(_) | BatchOutcome::Individual => {
                    expiries.spawn(self, grant_id);
                }
                BatchOutcome::Failed(_) => {
                    // It may have finished before the batch failed: see `gone`.
                    self.unconfirmed().insert(grant_id.clone());
                    expiries.spawn(self, grant_id);
                }
                BatchOutcome::AlreadyRevoked => expiries.gone(self, &grant_id),
                // Taken by another process, or extended: nothing to do now.
                _ => {}
            }
        }
        next
    }
}

/// How long after a rotation check the next one comes: the check interval, or, after
/// `failures` failed rotations in a row, 30 s doubling each time up to that interval.
fn rotation_check_delay(failures: u32, interval: Duration) -> Duration {
    if failures == 0 {
        return interval;
    }
    Duration::from_secs(30)
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_rotation_is_retried_soon_then_less_often() {
        let hour = Duration::from_secs(3600);
        assert_eq!(rotation_check_delay(0, hour), hour);
        assert_eq!(rotation_check_delay(1, hour), Duration::from_secs(30));
        assert_eq!(rotation_check_delay(2, hour), Duration::from_secs(60));
        assert_eq!(rotation_check_delay(3, hour), Duration::from_secs(120));
        assert_eq!(rotation_check_delay(10, hour), hour);
        assert_eq!(rotation_check_delay(u32::MAX, hour), hour);
    }
}
