//! The invariants, checked after every phase with the cluster's superuser and the
//! library.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use pgwarden::AccessGrant;
use pgwarden::pg_driver::{ListedState, privilege_role_name};
use pgwarden::{AuditAction, AuditEvent};
use secrecy::ExposeSecret;
use time::OffsetDateTime;

use crate::book::{RevokeOutcome, allowance};
use crate::rig::Soak;

/// Managed login roles (members of the marker role without admin option), whether
/// they can log in, their `VALID UNTIL` (epoch seconds) and their other memberships.
const ROLES_SQL: &str = "SELECT DISTINCT r.rolname::text, r.rolcanlogin,
       pg_catalog.date_part('epoch', r.rolvaliduntil)::bigint,
       ARRAY(SELECT DISTINCT g.rolname::text FROM pg_catalog.pg_auth_members m2
             JOIN pg_catalog.pg_roles g ON g.oid = m2.roleid
             WHERE m2.member = r.oid AND g.rolname <> 'pgwarden_managed')
FROM pg_catalog.pg_roles r
JOIN pg_catalog.pg_auth_members m ON m.member = r.oid
JOIN pg_catalog.pg_roles k ON k.oid = m.roleid
WHERE k.rolname = 'pgwarden_managed' AND NOT m.admin_option";

/// A managed role as the catalog shows it.
#[derive(Debug, Clone)]
pub(crate) struct Role {
    can_login: bool,
    valid_until: Option<i64>,
    member_of: BTreeSet<String>,
}

/// The managed roles, by name.
pub(crate) async fn managed_roles(soak: &Soak) -> HashMap<String, Role> {
    for _ in 0..5 {
        let su = soak.superuser().await;
        if let Ok(rows) = su.query(ROLES_SQL, &[]).await {
            return rows
                .iter()
                .map(|r| {
                    let member_of: Vec<String> = r.get(3);
                    (
                        r.get(0),
                        Role {
                            can_login: r.get(1),
                            valid_until: r.get(2),
                            member_of: member_of.into_iter().collect(),
                        },
                    )
                })
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("seed {}: cannot read the managed roles", soak.seed);
}

/// `list()` through one replica, retried while the instance recovers from a fault
/// (each retry is counted).
async fn list(soak: &Soak, replica: usize) -> Result<Vec<AccessGrant>, String> {
    let mut last = String::new();
    for attempt in 0..20 {
        match soak.bounded("list", soak.replicas[replica].list()).await {
            Some(Ok(g)) => return Ok(g),
            Some(Err(e)) => last = e.to_string(),
            None => return Err("list hung".into()),
        }
        if attempt > 0 {
            soak.book().counts.list_retries += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(format!("list kept failing: {last}"))
}

/// Successful revocation events (Expire or Revoke) per grant id.
fn revocations(events: &[AuditEvent]) -> HashMap<String, Vec<&AuditEvent>> {
    let mut by_grant: HashMap<String, Vec<&AuditEvent>> = HashMap::new();
    for e in events {
        if matches!(e.action, AuditAction::Expire | AuditAction::Revoke) && !e.failed() {
            by_grant
                .entry(e.grant_id.clone().unwrap_or_default())
                .or_default()
                .push(e);
        }
    }
    by_grant
}

/// One consistent look: catalog, listing, catalog again, audit trail.
pub(crate) struct Snapshot {
    before: HashMap<String, Role>,
    listed: Vec<AccessGrant>,
    listed_at: OffsetDateTime,
    after: HashMap<String, Role>,
}

/// Takes a snapshot through `replica`.
pub(crate) async fn snapshot(soak: &Soak, replica: usize) -> Result<Snapshot, String> {
    let before = managed_roles(soak).await;
    let listed = list(soak, replica).await?;
    let listed_at = OffsetDateTime::now_utc();
    let after = managed_roles(soak).await;
    Ok(Snapshot {
        before,
        listed,
        listed_at,
        after,
    })
}

/// Invariant 1: every managed role present in both catalog reads is listed by
/// exactly one grant; grant ids are listed once.
fn roles_listed_once(s: &Snapshot, out: &mut Vec<String>) {
    for name in s.before.keys().filter(|n| s.after.contains_key(*n)) {
        let n = s.listed.iter().filter(|g| &g.username == name).count();
        if n != 1 {
            out.push(format!(
                "invariant 1: managed role {name} is listed by {n} grants"
            ));
        }
    }
    let mut ids = BTreeSet::new();
    for g in &s.listed {
        if !ids.insert(&g.grant_id) {
            out.push(format!("invariant 1: grant {} is listed twice", g.grant_id));
        }
    }
}

/// Invariant 2: an Active grant's role exists, can log in until its expiry, and is a
/// member of exactly the privilege roles of its access entries.
fn active_grants_exact(s: &Snapshot, out: &mut Vec<String>) {
    for g in s.listed.iter().filter(|g| g.state == ListedState::Active) {
        let Some(role) = s.before.get(&g.username) else {
            out.push(format!(
                "invariant 2: active grant {} has no role {}",
                g.grant_id, g.username
            ));
            continue;
        };
        let expected: BTreeSet<String> = g.access.iter().map(privilege_role_name).collect();
        if !role.can_login
            || role.valid_until != Some(g.expires_at.unix_timestamp())
            || role.member_of != expected
        {
            out.push(format!(
                "invariant 2: active grant {} ({:?}): role {} is {role:?}, expected login until {} and memberships {expected:?}",
                g.grant_id, g.access.iter().map(ToString::to_string).collect::<Vec<_>>(), g.username, g.expires_at
            ));
        }
    }
}

/// Invariant 3 on the listing: no grant is listed later than its expiry plus its
/// allowance.
fn nothing_overdue(soak: &Soak, s: &Snapshot, out: &mut Vec<String>) {
    let book = soak.book();
    for g in &s.listed {
        let allowed = allowance(&book.faults, g.expires_at, s.listed_at);
        if s.listed_at > g.expires_at + allowed {
            out.push(format!(
                "invariant 3: grant {} ({}, state {:?}) still listed {} after its expiry {}; allowed {}",
                g.grant_id,
                g.username,
                g.state,
                s.listed_at - g.expires_at,
                g.expires_at,
                allowed
            ));
        }
    }
}

/// Invariant 3 on the audit trail (an expiry revoked late between two checks), and
/// the lateness figure.
fn expiries_on_time(soak: &Soak, events: &[AuditEvent], out: &mut Vec<String>) {
    let mut book = soak.book();
    let mut worst = (book.max_lateness, book.max_lateness_grant.clone());
    // The first successful expiry event of each grant is when it was revoked (a
    // second one is invariant 4's business).
    let mut first: HashMap<String, &AuditEvent> = HashMap::new();
    for e in events
        .iter()
        .filter(|e| e.action == AuditAction::Expire && !e.failed())
    {
        first
            .entry(e.grant_id.clone().unwrap_or_default())
            .and_modify(|f| {
                if e.at < f.at {
                    *f = e;
                }
            })
            .or_insert(e);
    }
    for (id, e) in first {
        let Some(t) = book.grants.get(&id) else {
            continue;
        };
        if t.expiry_uncertain || t.revoke != RevokeOutcome::None {
            continue;
        }
        let late = e.at - t.expires_at;
        if late > worst.0 {
            worst = (late, id.clone());
        }
        let allowed = allowance(&book.faults, t.expires_at, e.at);
        if late > allowed {
            out.push(format!(
                "invariant 3: grant {id} ({}) expired at {} was revoked {late} late (at {}); allowed {allowed}",
                t.username, t.expires_at, e.at
            ));
        }
    }
    (book.max_lateness, book.max_lateness_grant) = worst;
}

/// Invariant 4: at most one successful revocation event per grant.
fn revoked_once(soak: &Soak, events: &[AuditEvent], out: &mut Vec<String>) {
    for (id, evs) in revocations(events) {
        if evs.len() > 1 {
            out.push(format!(
                "invariant 4: grant {id} revoked {} times; its events, and every reconciliation and rotation:\n{}",
                evs.len(),
                soak.story(&id)
            ));
        }
    }
}

/// Invariant 5: a grant made (Ok) is listed, or has a successful revocation event
/// (the sweeper's, an explicit revoke's or reconcile's, each per grant), or an event
/// observing it gone after a revocation of ours was cut off, or was revoked by an
/// explicit call of ours that failed or was cancelled (the server may have finished
/// it without telling anyone, and only the sweeper observes such grants).
fn nothing_lost(soak: &Soak, s: &Snapshot, events: &[AuditEvent]) -> Vec<String> {
    let listed: BTreeSet<&str> = s.listed.iter().map(|g| g.grant_id.as_str()).collect();
    let revoked = revocations(events);
    let observed: BTreeSet<&str> = events
        .iter()
        .filter(|e| e.action == AuditAction::RevocationObserved)
        .filter_map(|e| e.grant_id.as_deref())
        .collect();
    let book = soak.book();
    let mut missing: Vec<String> = book
        .grants
        .iter()
        .filter(|(id, t)| {
            !listed.contains(id.as_str())
                && !revoked.contains_key(*id)
                && !observed.contains(id.as_str())
                && !matches!(t.revoke, RevokeOutcome::Failed | RevokeOutcome::Cancelled)
        })
        .map(|(id, t)| {
            format!(
                "{id} ({}, expiry {}, made in phase {})",
                t.username, t.expires_at, t.phase
            )
        })
        .collect();
    missing.sort();
    if missing.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "invariant 5: {} grant(s) made are neither listed nor audited as revoked: {missing:#?}",
        missing.len(),
    )]
}

/// Held grantee sessions of grants that are gone must have been ended.
async fn sessions_ended(soak: &Soak, s: &Snapshot, out: &mut Vec<String>) {
    let listed: BTreeSet<String> = s.listed.iter().map(|g| g.grant_id.clone()).collect();
    let sessions = std::mem::take(&mut soak.book().sessions);
    let mut keep = Vec::new();
    for (id, session) in sessions {
        if listed.contains(&id) {
            keep.push((id, session));
            continue;
        }
        let alive = tokio::time::timeout(Duration::from_secs(5), session.simple_query("SELECT 1"))
            .await
            .is_ok_and(|r| r.is_ok());
        if alive {
            out.push(format!(
                "a session of grant {id} still runs queries after its grant is gone"
            ));
        } else {
            soak.book().counts.sessions_seen_ended += 1;
        }
    }
    soak.book().sessions.extend(keep);
}

/// Logs in as a few Active grants whose password we know.
async fn active_grants_log_in(soak: &Soak, s: &Snapshot, out: &mut Vec<String>) {
    let soon = OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let sample: Vec<(String, String, secrecy::SecretString)> = {
        let book = soak.book();
        s.listed
            .iter()
            .filter(|g| g.state == ListedState::Active && g.expires_at > soon)
            .filter_map(|g| {
                let t = book.grants.get(&g.grant_id)?;
                (t.revoke == RevokeOutcome::None && !t.password.expose_secret().is_empty())
                    .then(|| (g.grant_id.clone(), t.username.clone(), t.password.clone()))
            })
            .take(3)
            .collect()
    };
    for (id, user, password) in sample {
        if let Err(e) = soak.login(&user, password.expose_secret(), "app").await {
            out.push(format!(
                "invariant 2: active grant {id} ({user}) cannot log in: {e}"
            ));
        }
    }
}

/// Every invariant; returns the violations.
pub(crate) async fn check(soak: &Soak, replica: usize) -> Vec<String> {
    let mut out = Vec::new();
    soak.book().counts.checks += 1;
    let s = match snapshot(soak, replica).await {
        Ok(s) => s,
        Err(e) => return vec![format!("replica {replica}: {e}")],
    };
    {
        // The listing is the authority on expiries.
        let mut book = soak.book();
        for g in &s.listed {
            if let Some(t) = book.grants.get_mut(&g.grant_id) {
                t.expires_at = g.expires_at;
                t.expiry_uncertain = false;
            }
        }
    }
    roles_listed_once(&s, &mut out);
    active_grants_exact(&s, &mut out);
    nothing_overdue(soak, &s, &mut out);
    active_grants_log_in(soak, &s, &mut out).await;
    sessions_ended(soak, &s, &mut out).await;
    let events = soak.audit.events();
    expiries_on_time(soak, &events, &mut out);
    revoked_once(soak, &events, &mut out);
    if !nothing_lost(soak, &s, &events).is_empty() {
        // A revocation that committed just before the listing is audited just
        // after it: look again a little later.
        tokio::time::sleep(Duration::from_secs(1)).await;
        out.extend(nothing_lost(soak, &s, &soak.audit.events()));
    }
    out.extend(std::mem::take(&mut soak.book().hangs));
    out
}

/// Managed login roles left.
pub(crate) async fn roles_left(soak: &Soak) -> usize {
    managed_roles(soak).await.len()
}
