//! Ending many expired grants at once: what an expiry storm needs.
//!
//! [`Provisioner::revoke_expired_batch`] takes up to [`BATCH_SIZE`] expired grants of
//! ephemeral roles per round trip set and keeps every per-grant guarantee of
//! [`Provisioner::revoke_expired`]:
//!
//! 1. Each grant's revocation lock (a session advisory lock, the one a single
//!    revocation holds) and grant lock (in the marking transaction) are *tried*, never
//!    waited for: a grant another process is revoking, granting or extending right
//!    now is reported [`BatchOutcome::InProgress`] and left for the next sweep. A batch
//!    therefore never waits on anyone.
//! 2. One transaction re-reads the records under those locks (an extension that came
//!    first wins: [`BatchOutcome::Extended`]), marks each grant revoking and sets each
//!    role `NOLOGIN VALID UNTIL <now>`.
//! 3. One statement ends every session of every role (waiting up to 5 s for them).
//! 4. Roles that own or are referenced by nothing (`pg_shdepend`) and own no database —
//!    nearly all of them — are dropped by one `DROP ROLE a, b, …` (their memberships
//!    go with them). The others, and any that fail to drop, lose their memberships now
//!    and are reported [`BatchOutcome::AccessEnded`]: their access has ended and
//!    [`Provisioner::revoke_expired`] finishes their clean-up, one at a time, with its
//!    own lock timeout.
//! 5. One query verifies that no dropped role and none of its sessions remain.
//!
//! A crash at any point leaves each grant marked revoking (or untouched), and the next
//! sweep or reconcile finishes it: nothing is lost, nothing is revoked twice.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use time::OffsetDateTime;

use crate::error::{ProvisionError, db, describe_db_error};
use crate::ledger::{GrantState, LedgerRole, RoleMode, read_ledger_roles_cached};
use crate::lock::Lock;
use crate::pool::Unsettled;
use crate::provision::{ConnectorFacts, ListedGrant, ListedState, Provisioner};
use crate::revoke::RevocationReport;
use crate::sql::{CachedQuery, Ident, literal, timestamp};

/// The most grants one batch takes: large enough to amortise round trips, small
/// enough that one batch's statements stay well under a second.
pub const BATCH_SIZE: usize = 500;

/// What a batch did with one grant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchOutcome {
    /// Revoked completely: login disabled, sessions ended, role dropped, verified.
    Revoked(RevocationReport),
    /// Access has ended (login disabled, `VALID UNTIL` passed, sessions ended,
    /// memberships removed), but the role owns or is referenced by objects, or could
    /// not be dropped: finish with [`Provisioner::revoke_expired`].
    AccessEnded(RevocationReport),
    /// The role is gone: an earlier revocation finished it.
    AlreadyRevoked,
    /// The grant was extended before its revocation began: it stays.
    Extended,
    /// Another process is revoking, granting or extending it right now: try later.
    InProgress,
    /// Not for a batch (a persistent role, or a role whose record holds other grants):
    /// revoke it with [`Provisioner::revoke_expired`].
    Individual,
    /// The batch failed before this grant's outcome was known (the instance could not
    /// be reached, say): it may be marked revoking, or even revoked unheard. Revoke it
    /// with [`Provisioner::revoke_expired`], which finishes whatever is left.
    Failed(String),
}

/// Ends every session of the roles `$1` (oids) but ours, waiting up to 5 s for each
/// (the timeout argument exists from PostgreSQL 14; [`END_SESSIONS_SQL_13`] signals
/// and the caller polls): per role, the sessions found and those signalled. From
/// `pg_stat_get_activity`: the `pg_stat_activity` view joins all of `pg_authid`.
const END_SESSIONS_SQL: &str = "
SELECT usesysid, pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(pid, 5000))
FROM pg_catalog.pg_stat_get_activity(NULL)
WHERE usesysid = ANY($1::pg_catalog.oid[]) AND pid <> pg_catalog.pg_backend_pid()
GROUP BY usesysid";

/// [`END_SESSIONS_SQL`] for PostgreSQL 13.
const END_SESSIONS_SQL_13: &str = "
SELECT usesysid, pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(pid))
FROM pg_catalog.pg_stat_get_activity(NULL)
WHERE usesysid = ANY($1::pg_catalog.oid[]) AND pid <> pg_catalog.pg_backend_pid()
GROUP BY usesysid";

/// Which of the roles `$1` (oids) anything references: objects they own or hold
/// privileges on, in any database (`pg_shdepend`), or databases they own.
const REFERENCED_SQL: &str = "
SELECT DISTINCT s.refobjid FROM pg_catalog.pg_shdepend s
WHERE s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid
  AND s.refobjid = ANY($1::pg_catalog.oid[])
UNION
SELECT d.datdba FROM pg_catalog.pg_database d WHERE d.datdba = ANY($1::pg_catalog.oid[])";

/// Which of the roles `$1` (oids) still exist or still have a session.
const STILL_THERE_SQL: &str = "
SELECT o FROM pg_catalog.unnest($1::pg_catalog.oid[]) AS o
WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.oid = o)
   OR EXISTS (SELECT 1 FROM pg_catalog.pg_stat_get_activity(NULL) a WHERE a.usesysid = o)";

/// One grant of a batch, from when it is locked until its outcome.
struct Item {
    grant_id: String,
    username: String,
    /// The role's oid, once read under the lock.
    oid: u32,
    /// Its memberships, as read under the lock (gone with it when it is dropped).
    member_of: Vec<String>,
    report: RevocationReport,
}

impl Provisioner {
    /// Revokes expired grants in batches (see the module docs); returns each grant's
    /// outcome, in no particular order. Grants that are neither expired nor revoking
    /// are ignored. A batch the instance failed half-way reports its unfinished grants
    /// [`BatchOutcome::Failed`]: those it marked stay revoking, and the next call (or
    /// reconcile) finishes them; the other batches go on.
    pub async fn revoke_expired_batch(
        &self,
        grants: &[ListedGrant],
    ) -> Vec<(String, BatchOutcome)> {
        let now = OffsetDateTime::now_utc();
        let mut outcomes = Vec::with_capacity(grants.len());
        let mut batch: Vec<&ListedGrant> = Vec::new();
        for g in grants {
            if g.mode == RoleMode::Persistent {
                outcomes.push((g.grant_id.clone(), BatchOutcome::Individual));
            } else if g.state != ListedState::Active || g.expires_at <= now {
                batch.push(g);
            }
        }
        for chunk in batch.chunks(BATCH_SIZE) {
            let mut done = Vec::with_capacity(chunk.len());
            if let Err(e) = self.revoke_chunk(chunk, &mut done).await {
                let why = e.to_string();
                tracing::warn!(error = %why, grants = chunk.len(), "a batch of expiries failed half-way");
                let settled: HashSet<&str> = done.iter().map(|(id, _)| id.as_str()).collect();
                let failed: Vec<(String, BatchOutcome)> = chunk
                    .iter()
                    .filter(|g| !settled.contains(g.grant_id.as_str()))
                    .map(|g| (g.grant_id.clone(), BatchOutcome::Failed(why.clone())))
                    .collect();
                done.extend(failed);
            }
            outcomes.extend(done);
        }
        outcomes
    }

    async fn revoke_chunk(
        &self,
        chunk: &[&ListedGrant],
        outcomes: &mut Vec<(String, BatchOutcome)>,
    ) -> Result<(), ProvisionError> {
        let facts = self.facts().await?.clone();
        // Unsettled until the revocation locks are released: dropped half-way, the
        // connection closes and the server releases them.
        let mut conn = Unsettled::new(self.admin.get().await?);
        let revoking: Vec<Lock<'_>> = chunk
            .iter()
            .map(|g| Lock::Revoking {
                grant_id: &g.grant_id,
            })
            .collect();
        let taken = Lock::try_acquire_all(&**conn, &revoking)
            .await
            .map_err(db("locking the revocations"))?;
        let mut held = Vec::new();
        let mut locked = Vec::new();
        for ((g, lock), taken) in chunk.iter().zip(revoking).zip(taken) {
            if taken {
                held.push(lock);
                locked.push(*g);
            } else {
                outcomes.push((g.grant_id.clone(), BatchOutcome::InProgress));
            }
        }
        let result = self
            .revoke_locked_chunk(&mut conn, &facts, &locked, outcomes)
            .await;
        if Lock::release_all(&**conn, &held).await.is_ok() {
            conn.settle();
        }
        result
    }

    async fn revoke_locked_chunk(
        &self,
        conn: &mut deadpool_postgres::Object,
        facts: &ConnectorFacts,
        chunk: &[&ListedGrant],
        outcomes: &mut Vec<(String, BatchOutcome)>,
    ) -> Result<(), ProvisionError> {
        let mut items = self.mark_chunk(conn, chunk, outcomes).await?;
        if items.is_empty() {
            return Ok(());
        }
        // Access ends for all before any clean-up.
        end_sessions(conn, &mut items, facts.version_num).await?;
        let oids: Vec<u32> = items.iter().map(|i| i.oid).collect();
        let referenced: HashSet<u32> = conn
            .query_cached(REFERENCED_SQL, &[&oids])
            .await
            .map_err(db("finding what the roles own"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let (simple, mut involved): (Vec<Item>, Vec<Item>) = items
            .into_iter()
            .partition(|i| !referenced.contains(&i.oid));
        let mut dropped = Vec::new();
        if !simple.is_empty() {
            let names: Vec<String> = simple
                .iter()
                .map(|i| Ident(&i.username).to_string())
                .collect();
            match conn
                .batch_execute(&format!("DROP ROLE IF EXISTS {}", names.join(", ")))
                .await
            {
                Ok(()) => dropped = simple,
                Err(e) => {
                    // One of them could not go (an object or a session appeared): each
                    // on its own, and those that still cannot are finished singly.
                    tracing::warn!(error = %describe_db_error(&e), "dropping a batch of roles failed; dropping them one by one");
                    for item in simple {
                        let sql = format!("DROP ROLE IF EXISTS {}", Ident(&item.username));
                        match conn.batch_execute(&sql).await {
                            Ok(()) => dropped.push(item),
                            Err(_) => involved.push(item),
                        }
                    }
                }
            }
        }
        // Those kept: their privileges end now, before their clean-up.
        remove_memberships(conn, &mut involved).await?;
        for item in involved {
            outcomes.push((item.grant_id, BatchOutcome::AccessEnded(item.report)));
        }
        let oids: Vec<u32> = dropped.iter().map(|i| i.oid).collect();
        let still: HashSet<u32> = conn
            .query_cached(STILL_THERE_SQL, &[&oids])
            .await
            .map_err(db("verifying the revocations"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for mut item in dropped {
            if still.contains(&item.oid) {
                outcomes.push((item.grant_id, BatchOutcome::AccessEnded(item.report)));
            } else {
                item.report.role_dropped = true;
                item.report.memberships_removed = item.member_of;
                tracing::info!(
                    grant_id = %item.grant_id,
                    username = %item.username,
                    sessions = item.report.sessions_terminated,
                    "revoked"
                );
                outcomes.push((item.grant_id, BatchOutcome::Revoked(item.report)));
            }
        }
        Ok(())
    }

    /// Step 2: under the grants' locks (tried), re-reads the records and marks each
    /// grant revoking with its role `NOLOGIN`, in one transaction.
    async fn mark_chunk(
        &self,
        conn: &mut deadpool_postgres::Object,
        chunk: &[&ListedGrant],
        outcomes: &mut Vec<(String, BatchOutcome)>,
    ) -> Result<Vec<Item>, ProvisionError> {
        let key = &self.config.ledger_key;
        let tx = conn
            .transaction()
            .await
            .map_err(db("starting the revocations"))?;
        let grants: Vec<Lock<'_>> = chunk
            .iter()
            .map(|g| Lock::Grant {
                grant_id: &g.grant_id,
            })
            .collect();
        let taken = Lock::try_acquire_all(&tx, &grants)
            .await
            .map_err(db("locking the grants"))?;
        let mut mine = Vec::new();
        for (g, taken) in chunk.iter().zip(taken) {
            if taken {
                mine.push(*g);
            } else {
                outcomes.push((g.grant_id.clone(), BatchOutcome::InProgress));
            }
        }
        let names: Vec<String> = mine.iter().map(|g| g.username.clone()).collect();
        let roles: HashMap<String, LedgerRole> = read_ledger_roles_cached(&tx, key, &names)
            .await
            .map_err(db("reading the ledger"))?
            .into_iter()
            .map(|r| (r.username.clone(), r))
            .collect();
        let now = OffsetDateTime::now_utc();
        let until = literal(&timestamp(now - time::Duration::seconds(1)));
        let mut sql = String::new();
        let mut items = Vec::new();
        for g in mine {
            let Some(role) = roles.get(&g.username) else {
                outcomes.push((g.grant_id.clone(), BatchOutcome::AlreadyRevoked));
                continue;
            };
            let Some(mut record) = role.record.clone() else {
                outcomes.push((g.grant_id.clone(), BatchOutcome::Individual));
                continue;
            };
            let ours = record.grants.len() == 1 && record.grants[0].grant_id == g.grant_id;
            if record.mode != RoleMode::Ephemeral || !ours {
                outcomes.push((g.grant_id.clone(), BatchOutcome::Individual));
                continue;
            }
            let entry = &mut record.grants[0];
            if entry.state == GrantState::Active && entry.expires_at > now {
                outcomes.push((g.grant_id.clone(), BatchOutcome::Extended));
                continue;
            }
            entry.state = GrantState::Revoking;
            let u = Ident(&role.username);
            let _ = write!(
                sql,
                "ALTER ROLE {u} NOLOGIN VALID UNTIL {until}; {}; ",
                record.comment_on(key, role.oid, &role.username)
            );
            let mut report = RevocationReport {
                grant_id: g.grant_id.clone(),
                username: Some(role.username.clone()),
                ..RevocationReport::default()
            };
            report.login_disabled = true;
            items.push(Item {
                grant_id: g.grant_id.clone(),
                username: role.username.clone(),
                oid: role.oid,
                member_of: role.member_of.clone(),
                report,
            });
        }
        if !sql.is_empty() {
            tx.batch_execute(&sql)
                .await
                .map_err(db("disabling login"))?;
        }
        tx.commit()
            .await
            .map_err(db("committing the revocation marks"))?;
        Ok(items)
    }
}

/// Step 3: ends every session of `items`' roles, until none remain (bounded).
async fn end_sessions(
    conn: &deadpool_postgres::Object,
    items: &mut [Item],
    version_num: i32,
) -> Result<(), ProvisionError> {
    let sql = if version_num >= 140_000 {
        END_SESSIONS_SQL
    } else {
        END_SESSIONS_SQL_13
    };
    let oids: Vec<u32> = items.iter().map(|i| i.oid).collect();
    for _ in 0..50 {
        let rows = conn
            .query_cached(sql, &[&oids])
            .await
            .map_err(db("ending sessions"))?;
        if rows.is_empty() {
            return Ok(());
        }
        for row in rows {
            let (oid, terminated): (u32, i64) = (row.get(0), row.get(2));
            if let Some(i) = items.iter_mut().find(|i| i.oid == oid) {
                i.report.sessions_terminated += terminated;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Sessions that will not end (a superuser's, for a non-superuser connector): those
    // roles fail to drop and are finished singly, which reports them.
    Ok(())
}

/// Removes the memberships of roles that stay for now (the marker's excepted).
async fn remove_memberships(
    conn: &deadpool_postgres::Object,
    items: &mut [Item],
) -> Result<(), ProvisionError> {
    for item in items.iter_mut() {
        item.report.memberships_removed = crate::revoke::remove_memberships(
            conn,
            &item.username,
            &std::collections::BTreeSet::new(),
        )
        .await?;
    }
    Ok(())
}
