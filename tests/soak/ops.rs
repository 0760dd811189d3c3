//! The operations a phase mixes, drawn by the driver with all their parameters.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pgwarden::core::duration::Ttl;
use pgwarden::pg_driver::ProvisionError;
use pgwarden::{AccessRequest, IntegrationError};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use crate::book::{FaultKind, RevokeOutcome, Tracked};
use crate::rig::{ACCESS, Soak};
use crate::rng::Rng;

/// At most this many grantee sessions are kept open at once.
const MAX_SESSIONS: usize = 16;

/// One operation, fully drawn.
#[derive(Debug)]
pub(crate) enum Op {
    /// A grant through a replica.
    Grant {
        replica: usize,
        access: Vec<&'static str>,
        secs: u64,
        grant_id: Option<String>,
        requester: &'static str,
    },
    /// An extension.
    Extend {
        replica: usize,
        grant_id: String,
        secs: u64,
    },
    /// An explicit revocation.
    Revoke { replica: usize, grant_id: String },
    /// A grantee logs in (psql), and maybe keeps a session open.
    Login {
        username: String,
        password: SecretString,
        hold: Option<String>,
    },
    /// A grant whose future is dropped after `after`.
    CancelledGrant {
        replica: usize,
        access: Vec<&'static str>,
        secs: u64,
        grant_id: Option<String>,
        after: Duration,
    },
    /// A revocation whose future is dropped after `after`.
    CancelledRevoke {
        replica: usize,
        grant_id: String,
        after: Duration,
    },
}

/// A live grant to act on: not revoked by us, not about to expire, not claimed by
/// another operation of this phase.
fn pick_live(
    soak: &Soak,
    rng: &mut Rng,
    claimed: &mut HashSet<String>,
    margin: time::Duration,
    need_password: bool,
) -> Option<(String, Tracked)> {
    let now = OffsetDateTime::now_utc();
    let book = soak.book();
    let mut live: Vec<(&String, &Tracked)> = book
        .grants
        .iter()
        .filter(|(id, t)| {
            t.revoke == RevokeOutcome::None
                && t.expires_at > now + margin
                && !claimed.contains(*id)
                && (!need_password || !t.password.expose_secret().is_empty())
        })
        .collect();
    if live.is_empty() {
        return None;
    }
    live.sort_by(|a, b| a.0.cmp(b.0));
    let (id, t) = live[rng.index(live.len())];
    claimed.insert(id.clone());
    Some((id.clone(), t.clone()))
}

fn draw_access(rng: &mut Rng) -> Vec<&'static str> {
    let n = 1 + rng.index(2);
    let mut access: Vec<&'static str> = (0..n).map(|_| ACCESS[rng.index(ACCESS.len())]).collect();
    access.sort_unstable();
    access.dedup();
    access
}

fn draw_id(soak: &Soak, rng: &mut Rng) -> Option<String> {
    rng.chance(50).then(|| {
        format!(
            "soak-{:x}-{}",
            soak.seed,
            soak.next_id.fetch_add(1, Ordering::Relaxed)
        )
    })
}

/// Draws the next operation of a phase.
pub(crate) fn draw(soak: &Soak, rng: &mut Rng, claimed: &mut HashSet<String>) -> Op {
    let replica = rng.index(2);
    let roll = rng.below(100);
    let margin = time::Duration::milliseconds(300);
    let fallback = |rng: &mut Rng| Op::Grant {
        replica,
        access: draw_access(rng),
        secs: rng.between(1, 6),
        grant_id: draw_id(soak, rng),
        requester: ["alice", "bob", "carol@example.com"][rng.index(3)],
    };
    match roll {
        0..45 => fallback(rng),
        45..65 => match pick_live(soak, rng, claimed, margin, false) {
            Some((grant_id, _)) => Op::Extend {
                replica,
                grant_id,
                secs: rng.between(1, 6),
            },
            None => fallback(rng),
        },
        65..78 => match pick_live(soak, rng, claimed, margin, false) {
            Some((grant_id, _)) => Op::Revoke { replica, grant_id },
            None => fallback(rng),
        },
        78..90 => match pick_live(soak, rng, claimed, time::Duration::seconds(2), true) {
            Some((grant_id, t)) => Op::Login {
                username: t.username,
                password: t.password,
                hold: rng.chance(50).then_some(grant_id),
            },
            None => fallback(rng),
        },
        90..95 => Op::CancelledGrant {
            replica,
            access: draw_access(rng),
            secs: rng.between(1, 6),
            grant_id: draw_id(soak, rng),
            after: rng.millis(0, 30),
        },
        _ => match pick_live(soak, rng, claimed, margin, false) {
            Some((grant_id, _)) => Op::CancelledRevoke {
                replica,
                grant_id,
                after: rng.millis(0, 30),
            },
            None => fallback(rng),
        },
    }
}

fn request(access: &[&str], secs: u64, grant_id: Option<String>, requester: &str) -> AccessRequest {
    let request = AccessRequest::new(
        requester,
        access.iter().map(|a| a.parse().unwrap()),
        Ttl::from_secs(secs).unwrap(),
    )
    .justification("soak");
    match grant_id {
        Some(id) => request.grant_id(id),
        None => request,
    }
}

/// Runs one operation.
pub(crate) async fn run(soak: Arc<Soak>, op: Op, phase: usize) {
    match op {
        Op::Grant {
            replica,
            access,
            secs,
            grant_id,
            requester,
        } => {
            let r = soak.replicas[replica].grant(request(&access, secs, grant_id, requester));
            match soak.bounded("grant", r).await {
                Some(Ok(g)) => {
                    let mut book = soak.book();
                    book.counts.grants_ok += 1;
                    let password = g.password.clone().unwrap_or_else(|| String::new().into());
                    book.grants.insert(
                        g.grant_id.clone(),
                        Tracked {
                            username: g.username,
                            password,
                            expires_at: g.expires_at,
                            expiry_uncertain: false,
                            revoke: RevokeOutcome::None,
                            phase,
                        },
                    );
                }
                Some(Err(_)) => soak.book().counts.grants_failed += 1,
                None => {}
            }
        }
        Op::Extend {
            replica,
            grant_id,
            secs,
        } => extend(&soak, replica, &grant_id, secs).await,
        Op::Revoke { replica, grant_id } => {
            let r = soak.replicas[replica].revoke(&grant_id);
            let outcome = match soak.bounded("revoke", r).await {
                Some(Ok(_)) => RevokeOutcome::Ok,
                Some(Err(_)) | None => RevokeOutcome::Failed,
            };
            let mut book = soak.book();
            if outcome == RevokeOutcome::Ok {
                book.counts.revokes_ok += 1;
            } else {
                book.counts.revokes_failed += 1;
            }
            if let Some(t) = book.grants.get_mut(&grant_id) {
                t.revoke = outcome;
            }
        }
        Op::Login {
            username,
            password,
            hold,
        } => login(&soak, &username, &password, hold).await,
        Op::CancelledGrant {
            replica,
            access,
            secs,
            grant_id,
            after,
        } => {
            cancelled_grant(
                &soak,
                phase,
                replica,
                request(&access, secs, grant_id, "mallory"),
                after,
            )
            .await;
        }
        Op::CancelledRevoke {
            replica,
            grant_id,
            after,
        } => {
            let started = (OffsetDateTime::now_utc(), Instant::now());
            let done = tokio::time::timeout(after, soak.replicas[replica].revoke(&grant_id)).await;
            cancelled(&soak, phase, started, after, "revoke", done.is_ok());
            let mut book = soak.book();
            if let Some(t) = book.grants.get_mut(&grant_id) {
                t.revoke = match done {
                    Ok(Ok(_)) => RevokeOutcome::Ok,
                    Ok(Err(_)) => RevokeOutcome::Failed,
                    Err(_) => RevokeOutcome::Cancelled,
                };
            }
        }
    }
}

async fn cancelled_grant(
    soak: &Soak,
    phase: usize,
    replica: usize,
    request: AccessRequest,
    after: Duration,
) {
    let started = (OffsetDateTime::now_utc(), Instant::now());
    let done = tokio::time::timeout(after, soak.replicas[replica].grant(request)).await;
    cancelled(soak, phase, started, after, "grant", done.is_ok());
    if let Ok(Ok(g)) = done {
        // It finished in time: a grant like any other.
        soak.book().grants.insert(
            g.grant_id.clone(),
            Tracked {
                username: g.username,
                password: g.password.unwrap_or_else(|| String::new().into()),
                expires_at: g.expires_at,
                expiry_uncertain: false,
                revoke: RevokeOutcome::None,
                phase,
            },
        );
    }
}

fn cancelled(
    soak: &Soak,
    phase: usize,
    (start, instant): (OffsetDateTime, Instant),
    after: Duration,
    what: &str,
    completed: bool,
) {
    let mut book = soak.book();
    if what == "grant" {
        book.counts.cancelled_grants += 1;
    } else {
        book.counts.cancelled_revokes += 1;
    }
    if completed {
        book.counts.cancelled_completed += 1;
    }
    book.fault(
        FaultKind::Cancel,
        phase,
        start,
        instant.elapsed(),
        format!(
            "{what} cancelled after {after:?}{}",
            if completed {
                " (it had finished already)"
            } else {
                ""
            }
        ),
    );
}

async fn extend(soak: &Soak, replica: usize, grant_id: &str, secs: u64) {
    let r = soak.replicas[replica].extend(grant_id, Ttl::from_secs(secs).unwrap());
    let result = soak.bounded("extend", r).await;
    let mut book = soak.book();
    match result {
        Some(Ok(g)) => {
            book.counts.extends_ok += 1;
            if let Some(t) = book.grants.get_mut(grant_id) {
                t.expires_at = g.expires_at;
                t.expiry_uncertain = false;
            }
        }
        Some(Err(e)) => {
            book.counts.extends_failed += 1;
            // Not found: nothing changed. Anything else may have committed.
            let unknown = matches!(
                e,
                IntegrationError::Provision(ProvisionError::UnknownGrant { .. })
            );
            if let Some(t) = book.grants.get_mut(grant_id).filter(|_| !unknown) {
                t.expiry_uncertain = true;
            }
        }
        None => {}
    }
}

async fn login(soak: &Soak, username: &str, password: &SecretString, hold: Option<String>) {
    let (c, info) = (
        soak.cluster.clone(),
        soak.cluster
            .conninfo(username, password.expose_secret(), "app"),
    );
    let ok = tokio::task::spawn_blocking(move || c.psql_with(&info, "SELECT 1").is_ok())
        .await
        .unwrap();
    {
        let mut book = soak.book();
        if ok {
            book.counts.logins_ok += 1;
        } else {
            book.counts.logins_refused += 1;
        }
        if !ok || book.sessions.len() >= MAX_SESSIONS {
            return;
        }
    }
    let Some(grant_id) = hold else { return };
    if let Ok(session) = soak.login(username, password.expose_secret(), "app").await {
        let mut book = soak.book();
        book.counts.sessions_held += 1;
        book.sessions.push((grant_id, session));
    }
}
