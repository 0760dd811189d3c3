//! The faults: killed connector backends, an immediate server restart, a failing
//! secret store around a rotation. (Cancelled operations are drawn with the other
//! operations, see `ops.rs`.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgwarden::secrets::{Error, FailureTiming, Operation, SecretStoreExt};
use secrecy::ExposeSecret;
use time::OffsetDateTime;

use crate::book::FaultKind;
use crate::rig::{Soak, store_key};
use crate::rng::Rng;

/// A fault, fully drawn.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Plan {
    /// Terminate every backend of the connector role.
    Kill,
    /// Crash and restart the server.
    Restart,
    /// The store fails `times` calls of `operation` (before or after they take
    /// effect); then replica `replica` rotates the connector's password.
    Store {
        operation: Operation,
        times: usize,
        after: bool,
        replica: usize,
        second: bool,
    },
}

impl Plan {
    /// Draws a fault.
    pub(crate) fn draw(rng: &mut Rng) -> Plan {
        match rng.below(100) {
            0..40 => Plan::Kill,
            40..65 => Plan::Restart,
            _ => Plan::Store {
                operation: [Operation::Get, Operation::Put, Operation::Promote][rng.index(3)],
                times: 1 + rng.index(3),
                after: rng.chance(30),
                replica: rng.index(2),
                second: rng.chance(60),
            },
        }
    }
}

/// Injects `plan` and records it with its start and duration.
pub(crate) async fn inject(soak: &Arc<Soak>, plan: Plan, phase: usize) {
    let (start, instant) = (OffsetDateTime::now_utc(), Instant::now());
    let (kind, detail) = match plan {
        Plan::Kill => {
            let su = soak.superuser().await;
            let n: i64 = su
                .query_one(
                    "SELECT pg_catalog.count(pg_catalog.pg_terminate_backend(pid)) FROM pg_catalog.pg_stat_activity WHERE usename = $1",
                    &[&soak.connector],
                )
                .await
                .map_or(-1, |r| r.get(0));
            (
                FaultKind::KillBackends,
                format!("terminated {n} connector backend(s)"),
            )
        }
        Plan::Restart => {
            let c = soak.cluster.clone();
            tokio::task::spawn_blocking(move || c.restart_immediate())
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("seed {}: restart_immediate: {e}", soak.seed));
            (FaultKind::Restart, "pg_ctl stop -m immediate; start".into())
        }
        Plan::Store {
            operation,
            times,
            after,
            replica,
            second,
        } => (
            FaultKind::StoreFailure,
            Box::pin(store_fault(soak, operation, times, after, replica, second)).await,
        ),
    };
    soak.book()
        .fault(kind, phase, start, instant.elapsed(), detail);
}

async fn store_fault(
    soak: &Arc<Soak>,
    operation: Operation,
    times: usize,
    after: bool,
    replica: usize,
    second: bool,
) -> String {
    let timing = if after {
        FailureTiming::After
    } else {
        FailureTiming::Before
    };
    soak.store.script(
        operation,
        times,
        timing,
        Error::Unreachable {
            backend: "memory",
            key: "connector".into(),
            reason: "soak: scripted failure".into(),
        },
    );
    let rotated = soak
        .bounded(
            "rotate_credentials",
            Box::pin(soak.replicas[replica].rotate_credentials()),
        )
        .await;
    soak.store.clear_failures();
    let mut outcome = describe(soak, rotated.as_ref());
    if second {
        // The store works again: the other replica rotates (it must succeed or fail
        // cleanly), and the first must follow the new password.
        let again = soak
            .bounded(
                "rotate_credentials",
                Box::pin(soak.replicas[1 - replica].rotate_credentials()),
            )
            .await;
        outcome = format!(
            "{outcome}; then replica {}: {}",
            1 - replica,
            describe(soak, again.as_ref())
        );
    }
    if let Err(e) = connector_logs_in(soak).await {
        soak.book().hangs.push(format!(
            "after a store failure ({times} × {operation:?}, {timing:?}) and {outcome}: {e}"
        ));
    }
    format!("{times} × {operation:?} fail {timing:?}; replica {replica}: {outcome}")
}

fn describe<T>(soak: &Soak, rotated: Option<&Result<T, pgwarden::IntegrationError>>) -> String {
    match rotated {
        Some(Ok(_)) => {
            soak.book().counts.rotations_ok += 1;
            "rotated".to_owned()
        }
        Some(Err(e)) => {
            soak.book().counts.rotations_failed += 1;
            format!("rotation failed: {e}")
        }
        None => "rotation hung".to_owned(),
    }
}

/// The connector logs in with the store's current password, or with its staged one
/// (which the next refresh or rotation promotes).
async fn connector_logs_in(soak: &Soak) -> Result<(), String> {
    let stored = soak
        .store
        .get_credentials(&store_key())
        .await
        .map_err(|e| e.to_string())?;
    let mut candidates = vec![stored.credentials.password.clone()];
    if let Some(p) = soak
        .store
        .pending_password(&store_key())
        .await
        .map_err(|e| e.to_string())?
    {
        candidates.push(p.password);
    }
    for p in &candidates {
        if soak
            .login(&soak.connector, p.expose_secret(), "app")
            .await
            .is_ok()
        {
            return Ok(());
        }
    }
    Err("neither stored password of the connector logs in".into())
}

/// After a store fault: both replicas still work (they re-read the store when the
/// password changed under them).
pub(crate) async fn replicas_work(soak: &Soak) -> Result<(), String> {
    for (n, r) in soak.replicas.iter().enumerate() {
        let mut last = String::new();
        let mut ok = false;
        for _ in 0..3 {
            match soak.bounded("list", r.list()).await {
                Some(Ok(_)) => {
                    ok = true;
                    break;
                }
                Some(Err(e)) => last = e.to_string(),
                None => last = "hung".into(),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        if !ok {
            return Err(format!(
                "replica {n} cannot list after a credential rotation: {last}"
            ));
        }
    }
    Ok(())
}
