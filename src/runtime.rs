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

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgwarden_pg_driver::provision::ListedState;
use pgwarden_pg_driver::sql::advisory_key;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::audit::AuditAction;
use crate::integration::Integration;

/// Stops a running runtime.
#[derive(Debug)]
pub struct RunHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunHandle {
    /// Stops the runtime after the step it is in, and waits for it.
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

impl Integration {
    /// Starts the background runtime (see the module docs) on the current tokio runtime.
    #[must_use]
    pub fn run(self: &Arc<Self>) -> RunHandle {
        let (stop, mut stopped) = watch::channel(false);
        let this = self.clone();
        let task = tokio::spawn(async move {
            while !*stopped.borrow() {
                match this.try_become_sweeper().await {
                    Ok(Some(lock)) => {
                        tracing::info!(integration = %this.config.name, "this process is the sweeper");
                        this.sweep(&lock, &mut stopped).await;
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
        let connected = self.connected().await;
        let conn = match connected.connector.connect().await {
            Ok(c) => c,
            Err(e) => {
                // Another process rotated the connector's password: re-read the store.
                let e = crate::IntegrationError::from(e);
                if !crate::integration::is_wrong_password(&e) {
                    return Err(e);
                }
                self.refresh_credentials().await?;
                self.connected().await.connector.connect().await?
            }
        };
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
        &self,
        lock: &pgwarden_pg_driver::connect::Connection,
        stopped: &mut watch::Receiver<bool>,
    ) {
        let mut last_reconcile: Option<Instant> = None;
        let mut last_rotation_check: Option<Instant> = None;
        // A failed rotation is retried soon (30 s, doubling), not a whole check
        // interval later.
        let mut rotation_failures: u32 = 0;
        loop {
            if *stopped.borrow() || lock.client.is_closed() {
                return;
            }
            let next_expiry = self.revoke_expired().await;
            if last_reconcile.is_none_or(|t| t.elapsed() >= self.options.reconcile_interval) {
                let _ = self.reconcile().await;
                last_reconcile = Some(Instant::now());
            }
            if last_rotation_check.is_none_or(|t| {
                t.elapsed()
                    >= rotation_check_delay(rotation_failures, self.options.rotation_check_interval)
            }) {
                match self.rotate_if_due().await {
                    Ok(_) => rotation_failures = 0,
                    Err(e) => {
                        rotation_failures = rotation_failures.saturating_add(1);
                        tracing::warn!(integration = %self.config.name, error = %e, retry_in = ?rotation_check_delay(rotation_failures, self.options.rotation_check_interval), "scheduled credential rotation failed; the connector still logs in");
                    }
                }
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
    }

    /// Revokes every grant past its expiry; returns the next expiry to wake for.
    async fn revoke_expired(&self) -> Option<OffsetDateTime> {
        let grants = match self.list().await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(integration = %self.config.name, error = %e, "cannot read the ledger");
                return None;
            }
        };
        let now = OffsetDateTime::now_utc();
        let mut next = None::<OffsetDateTime>;
        for g in grants {
            if g.state == ListedState::Active && g.expires_at > now {
                next = Some(next.map_or(g.expires_at, |n| n.min(g.expires_at)));
                continue;
            }
            if let Err(e) = self.revoke_as(&g.grant_id, AuditAction::Expire).await {
                tracing::warn!(integration = %self.config.name, grant_id = %g.grant_id, error = %e, "expiry revocation failed; retrying");
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
