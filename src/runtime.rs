//! The background runtime: timely expiry, reconciliation and rotation.
//!
//! [`Integration::run`] starts one task. Across every process that runs the same
//! integration, exactly one is the **sweeper**: it holds a session advisory lock
//! ([`Lock::Sweeper`], tried) on a connection of its own; the others retry every
//! `sweep_interval` and take over within that time if the sweeper's session ends.
//! The sweeper revokes every grant at its `expires_at` (waking at the earliest
//! expiry, re-reading the ledger every `sweep_interval` to see other processes'
//! grants), reconciles every `reconcile_interval`, and rotates the connector's
//! password when it is due. At start-up its first pass revokes whatever expired while
//! nothing ran. Each grant is revoked once: revocations of one grant are serialized in
//! PostgreSQL, and one already finished elsewhere is not revoked (or audited) again.
//!
//! Expiry never waits on one slow revocation. Each pass hands every grant due to
//! [`Provisioner::revoke_expired_batch`](pgwarden_pg_driver::Provisioner::revoke_expired_batch),
//! which ends their access together (login, sessions, memberships) and drops the roles
//! that own nothing, without waiting for any lock. What is left — roles that own
//! objects, persistent roles — is finished by at most `pool_size − 1` background
//! revocations ([`IntegrationOptions::pool_size`](crate::IntegrationOptions::pool_size)), each clean-up bounded by the driver's lock timeout; one
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
//!
//! **Health.** [`RunHandle::status`] (or a [`RunMonitor`] that outlives no handle)
//! says whether the runtime reaches the instance and when it last completed a pass —
//! what a readiness probe needs. Every error the runtime meets is logged as a
//! structured `tracing` event (fields `integration`, `error`, and `grant_id` where
//! one is concerned) and counted in [`metrics`](crate::metrics).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgwarden_pg_driver::{BatchOutcome, ListedGrant, ListedState, Lock, backoff};
use time::OffsetDateTime;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::audit::{AuditAction, revocation_detail};
use crate::error::IntegrationError;
use crate::integration::Integration;
use crate::metrics::{self, Reason};

/// Stops a running runtime, and tells how it is doing.
#[derive(Debug)]
pub struct RunHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    monitor: RunMonitor,
}

/// What a running runtime is doing, for health checks: see [`RunStatus::is_ready`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunStatus {
    /// Whether the runtime's last attempt to reach the instance (taking the sweeper
    /// lock, or as the sweeper, reading the ledger) succeeded.
    pub connected: bool,
    /// Whether this process is the integration's sweeper now.
    pub sweeper: bool,
    /// When the runtime last completed a pass: as the sweeper, a read of the ledger;
    /// otherwise, finding that another process holds the sweeper lock. `None` before
    /// the first.
    pub last_pass: Option<Instant>,
    /// The integration's sweep interval: a pass completes at least this often while
    /// all is well.
    pub sweep_interval: Duration,
}

impl RunStatus {
    /// How many sweep intervals may go by without a pass before the runtime is not
    /// ready.
    pub const READY_INTERVALS: u32 = 3;

    /// Ready: connected, and a pass completed within [`Self::READY_INTERVALS`]
    /// sweep intervals.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.connected
            && self.last_pass.is_some_and(|at| {
                at.elapsed() <= self.sweep_interval.saturating_mul(Self::READY_INTERVALS)
            })
    }
}

/// A clonable view of a runtime's [`RunStatus`], for a health endpoint that lives
/// beside the [`RunHandle`] (which stopping consumes).
#[derive(Debug, Clone)]
pub struct RunMonitor(Arc<Mutex<RunStatus>>);

impl RunMonitor {
    fn new(sweep_interval: Duration) -> Self {
        RunMonitor(Arc::new(Mutex::new(RunStatus {
            connected: false,
            sweeper: false,
            last_pass: None,
            sweep_interval,
        })))
    }

    /// The runtime's status now.
    #[must_use]
    pub fn status(&self) -> RunStatus {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RunStatus> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The instance answered: a pass completed.
    fn passed(&self) {
        let mut s = self.lock();
        s.connected = true;
        s.last_pass = Some(Instant::now());
    }

    /// The instance could not be reached.
    fn unreachable(&self) {
        self.lock().connected = false;
    }

    fn sweeper(&self, integration: &str, sweeper: bool) {
        self.lock().sweeper = sweeper;
        metrics::sweeper_leader(integration, sweeper);
    }
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

    /// What the runtime is doing now.
    #[must_use]
    pub fn status(&self) -> RunStatus {
        self.monitor.status()
    }

    /// A clonable view of [`RunHandle::status`].
    #[must_use]
    pub fn monitor(&self) -> RunMonitor {
        self.monitor.clone()
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

    /// Revokes `grant_id` singly in the background, in one of the slots. `expires_at`:
    /// when its access is still to end, for the expiry lag.
    fn spawn(
        &mut self,
        integration: &Arc<Integration>,
        grant_id: String,
        expires_at: Option<OffsetDateTime>,
    ) {
        if !self.in_flight.insert(grant_id.clone()) {
            return;
        }
        let (this, slots, id) = (integration.clone(), self.slots.clone(), grant_id.clone());
        let handle = self.tasks.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let ended = match this.revoke_as(&id, AuditAction::Expire).await {
                Ok(r) if r.already_revoked => Ended::Gone,
                Ok(_) => {
                    if let Some(at) = expires_at {
                        metrics::expiry_lag(&this.config.name, lag_since(at));
                    }
                    Ended::Revoked
                }
                Err(_) => Ended::Failed,
            };
            (id, ended)
        });
        self.task_grants.insert(handle.id(), grant_id);
    }

    /// Collects finished revocations: a failed one is retried after a backoff.
    fn reap(&mut self, integration: &Integration) {
        while let Some(done) = self.tasks.try_join_next_with_id() {
            let (task, ended, panicked) = match done {
                Ok((task, (_, ended))) => (task, ended, None),
                Err(e) => (e.id(), Ended::Failed, Some(e)),
            };
            let Some(grant_id) = self.task_grants.remove(&task) else {
                continue;
            };
            if let Some(e) = panicked {
                // Not audited (the revocation never said how it ended): say it here.
                tracing::error!(integration = %integration.config.name, grant_id = %grant_id, error = %e, "a revocation at expiry ended abnormally; it is retried");
                metrics::failure(&integration.config.name, Reason::Expiry, None);
            }
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
        let monitor = RunMonitor::new(self.options.sweep_interval);
        let status = monitor.clone();
        let task = tokio::spawn(async move {
            let name = this.config.name.clone();
            status.sweeper(&name, false);
            // Kept across sweeper sessions: revocations in flight and retries go on
            // when a lost connection ends one session and the next takes over.
            let mut expiries = Expiries::new(this.options.pool_size.saturating_sub(1));
            while !*stopped.borrow() {
                match this.try_become_sweeper().await {
                    Ok(Some(lock)) => {
                        tracing::info!(integration = %name, "this process is the sweeper");
                        status.sweeper(&name, true);
                        this.sweep(&lock, &mut expiries, &mut stopped, &status)
                            .await;
                        drop(lock);
                        status.sweeper(&name, false);
                        if !*stopped.borrow() {
                            tracing::warn!(integration = %name, "this process lost the sweeper lock (its session ended); trying to take it again");
                        }
                    }
                    Ok(None) => status.passed(),
                    Err(e) => {
                        status.unreachable();
                        metrics::failure(&name, Reason::Connect, Some(e.kind()));
                        metrics::secret_store_error(&name, &e);
                        tracing::warn!(integration = %name, error = %e, "cannot reach the instance; retrying");
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(this.options.sweep_interval) => {}
                    _ = stopped.changed() => {}
                }
            }
        });
        RunHandle {
            stop,
            task,
            monitor,
        }
    }

    /// A connection holding the sweeper lock, or `None` when another process holds it.
    async fn try_become_sweeper(
        &self,
    ) -> Result<Option<pgwarden_pg_driver::Connection>, crate::IntegrationError> {
        let conn = self.connector_session(None).await?;
        let got = Lock::Sweeper {
            integration: &self.config.name,
        }
        .try_acquire(&conn.client)
        .await
        .map_err(|source| crate::IntegrationError::Database {
            action: "taking the sweeper lock",
            source,
        })?;
        Ok(got.then_some(conn))
    }

    async fn sweep(
        self: &Arc<Self>,
        lock: &pgwarden_pg_driver::Connection,
        expiries: &mut Expiries,
        stopped: &mut watch::Receiver<bool>,
        status: &RunMonitor,
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
            let next_expiry = self.revoke_expired(expiries, status).await;
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
                            // Audited (and counted) by the rotation itself.
                            metrics::secret_store_error(&this.config.name, &e);
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

    /// Every grant of this integration in the ledger, as the driver lists them.
    async fn ledger(&self) -> Result<Vec<ListedGrant>, IntegrationError> {
        let mut grants = self
            .with_current_credentials(|c| async move { c.provisioner.list().await })
            .await?;
        grants.retain(|g| g.integration == self.config.name);
        Ok(grants)
    }

    /// Revokes every grant past its expiry (see the module docs); returns the next
    /// expiry to wake for.
    async fn revoke_expired(
        self: &Arc<Self>,
        expiries: &mut Expiries,
        status: &RunMonitor,
    ) -> Option<OffsetDateTime> {
        expiries.reap(self);
        let grants = match self.ledger().await {
            Ok(g) => g,
            Err(e) => {
                status.unreachable();
                metrics::failure(&self.config.name, Reason::LedgerRead, Some(e.kind()));
                metrics::secret_store_error(&self.config.name, &e);
                tracing::warn!(integration = %self.config.name, error = %e, "cannot read the ledger");
                return None;
            }
        };
        status.passed();
        metrics::live_grants(
            &self.config.name,
            grants
                .iter()
                .filter(|g| g.state == ListedState::Active)
                .count(),
        );
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
        let expiry_of: HashMap<&str, OffsetDateTime> = due
            .iter()
            .map(|g| (g.grant_id.as_str(), g.expires_at))
            .collect();
        let connected = self.connected().await;
        let started = Instant::now();
        let outcomes = connected.provisioner.revoke_expired_batch(&due).await;
        let took = started.elapsed();
        for (grant_id, outcome) in outcomes {
            let expires_at = expiry_of.get(grant_id.as_str()).copied();
            match outcome {
                BatchOutcome::Revoked(report) => {
                    expiries.settled(&grant_id, true);
                    if let Some(at) = expires_at {
                        metrics::expiry_lag(&self.config.name, lag_since(at));
                    }
                    self.audit(AuditAction::Expire, |e| {
                        e.grant_id = Some(grant_id);
                        e.username.clone_from(&report.username);
                        e.duration = Some(took);
                        e.detail = revocation_detail(&report);
                    });
                }
                BatchOutcome::AccessEnded(_) => {
                    // Its access ended in the batch; what the role owns is dropped apart.
                    if let Some(at) = expires_at {
                        metrics::expiry_lag(&self.config.name, lag_since(at));
                    }
                    expiries.spawn(self, grant_id, None);
                }
                BatchOutcome::Individual => expiries.spawn(self, grant_id, expires_at),
                BatchOutcome::Failed(_) => {
                    // It may have finished before the batch failed: see `gone`.
                    self.unconfirmed().insert(grant_id.clone());
                    expiries.spawn(self, grant_id, expires_at);
                }
                BatchOutcome::AlreadyRevoked => expiries.gone(self, &grant_id),
                // Taken by another process, or extended: nothing to do now.
                _ => {}
            }
        }
        next
    }
}

/// How long ago `expires_at` was (zero if it is still to come).
fn lag_since(expires_at: OffsetDateTime) -> Duration {
    Duration::try_from(OffsetDateTime::now_utc() - expires_at).unwrap_or(Duration::ZERO)
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
    fn ready_means_connected_with_a_recent_pass() {
        let interval = Duration::from_millis(200);
        let mut s = RunStatus {
            connected: true,
            sweeper: false,
            last_pass: None,
            sweep_interval: interval,
        };
        assert!(!s.is_ready(), "no pass yet");
        s.last_pass = Some(Instant::now());
        assert!(s.is_ready());
        s.connected = false;
        assert!(!s.is_ready(), "not connected");
        s.connected = true;
        s.last_pass = Instant::now().checked_sub(interval * 4);
        assert!(!s.is_ready(), "the last pass is too old");
    }

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
