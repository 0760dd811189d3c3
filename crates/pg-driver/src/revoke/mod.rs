//! Revoking completely, in this order, and resuming where a revocation stopped.
//!
//! 1. Mark the grant "revoking" in the ledger and set the role `NOLOGIN` (one
//!    transaction), so nobody reconnects during cleanup and a crash leaves a trace.
//! 2. End the role's sessions (`pg_terminate_backend(pid, 5000)`), until none remain.
//! 3. Remove its memberships: its privileges end now, even if a later step fails.
//! 4. Find every database that still references the role (`pg_shdepend`, a shared
//!    catalog) and every database it owns (handed to the successor).
//! 5. In each: `REASSIGN OWNED` to the successor where objects are kept, then
//!    `DROP OWNED` (its objects, grants and default-privilege entries).
//! 6. `DROP ROLE`; if objects appeared meanwhile (SQLSTATE 2BP01), back to 4.
//! 7. Verify: no role, no session. Until then the grant stays "revoking" and
//!    [`Provisioner::reconcile`] retries.
//!
//! # Round trips
//!
//! The order is kept, but the steps travel together: requests sent in one pipeline
//! run in order on the server and cost one round trip, and each step is written so
//! that it does nothing unless the steps before it succeeded ([`pipeline`]).
//!
//! - **A grant this process saw** (it made, extended or listed it; at most
//!   [`crate::provision`]'s hint bound) takes **one round trip**: the `Revoking`
//!   lock, `BEGIN`, the grant's `Grant` lock, a statement that fails unless the role
//!   still has the oid, sealed comment and memberships seen ([`mark`]), then steps
//!   1–7. Anything changed since, and that statement aborts the transaction: nothing
//!   behind it runs, and the revocation goes on as below.
//! - **Any other grant** takes **two**: the same locks and the role's record read
//!   under them, then, decided on what was read, steps 1–7.
//! - A grant this process has no hint for is first looked up in the ledger.
//!
//! In the pipeline, the drop (steps 4–6) is one transaction that succeeds only when
//! nothing outside this database references the role, it owns no database, no
//! successor takes objects over and no session is left. Anything else (other
//! databases, a successor, sessions that outlive the wait, a clean-up that fails or
//! waits on a lock) rolls it back and goes on step by step, from where the pipeline
//! stopped ([`finish`]).
//!
//! A role that step 5 cannot free (it owns a tablespace, say) is reported with what
//! holds it; access has ended by then. With a successor, PUBLIC grants on what is
//! handed over are revoked first and `SECURITY DEFINER` functions are listed.
//!
//! Persistent roles keep their objects: a grant's revocation removes only the
//! memberships no other active grant of the role needs (ending the role's sessions
//! if it keeps others), and disables login when none is left. Its session limits are
//! reset and those of the grants it keeps applied again, in the transaction that
//! records the revocation (expiry and reconcile revoke persistent grants here too).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::error::{ProvisionError, db, lost, transient};
use crate::ledger::{GrantState, LedgerRole, RoleMode, RoleRecord, find_grant};
use crate::lock::Lock;
use crate::pool::Unsettled;
use crate::provision::{Provisioner, Seen, Step};

mod clean;
mod finish;
mod mark;
mod persistent;
mod pipeline;

pub(crate) use finish::{remove_memberships, terminate_sessions};
use mark::{Mark, Wait, holds_ephemeral};
use pipeline::{Marked, Revocation, Statements};

/// What one database's cleanup did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseCleanup {
    /// The database.
    pub database: String,
    /// Objects the role owned there that were dropped.
    pub objects_dropped: i64,
    /// Objects handed to the successor.
    pub objects_reassigned: i64,
    /// Privilege and default-privilege entries removed.
    pub privileges_revoked: i64,
    /// Before objects go to a successor: those the role had opened to PUBLIC, whose
    /// PUBLIC grants were revoked (the successor's objects must not stay open to
    /// everyone on the departed user's say-so), e.g. `function public.f(integer)`.
    pub public_grants_revoked: Vec<String>,
    /// `SECURITY DEFINER` functions handed to the successor: from now on they run with
    /// the successor's rights. Review them.
    pub security_definer_functions: Vec<String>,
}

/// A session holding a lock that a revocation's clean-up waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocker {
    /// Its backend pid.
    pub pid: i32,
    /// Its user (`None` for a background process).
    pub user: Option<String>,
    /// Its `pg_stat_activity.state`, e.g. `idle in transaction`.
    pub state: Option<String>,
    /// Its `application_name`.
    pub application_name: Option<String>,
    /// How long its transaction has been open, in seconds.
    pub transaction_seconds: Option<i64>,
}

/// `pid 123 (user alice, idle in transaction for 12 s, application psql)`, joined.
pub(crate) fn describe_blockers(blockers: &[Blocker]) -> String {
    if blockers.is_empty() {
        return "sessions that have let go since (none found)".into();
    }
    blockers
        .iter()
        .map(|b| {
            let mut s = format!(
                "pid {} (user {}, {}",
                b.pid,
                b.user.as_deref().unwrap_or("-"),
                b.state.as_deref().unwrap_or("unknown state")
            );
            if let Some(t) = b.transaction_seconds {
                let _ = write!(s, " for {t} s");
            }
            if let Some(a) = b.application_name.as_deref().filter(|a| !a.is_empty()) {
                let _ = write!(s, ", application {a}");
            }
            s.push(')');
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a revocation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RevocationReport {
    /// The grant.
    pub grant_id: String,
    /// The login role, when one was found.
    pub username: Option<String>,
    /// Nothing was left to revoke (an earlier call finished it).
    pub already_revoked: bool,
    /// Sessions ended.
    pub sessions_terminated: i64,
    /// Roles the login role stopped being a member of.
    pub memberships_removed: Vec<String>,
    /// Per-database cleanup.
    pub databases: Vec<DatabaseCleanup>,
    /// Databases the role owned, now owned by the successor.
    pub databases_reassigned: Vec<String>,
    /// Whether the role was dropped (false for a persistent role, which is kept).
    pub role_dropped: bool,
    /// Whether login was disabled.
    pub login_disabled: bool,
}

impl RevocationReport {
    /// An empty report for `grant_id`, held by login role `username`.
    fn for_role(grant_id: &str, username: &str) -> Self {
        RevocationReport {
            grant_id: grant_id.to_owned(),
            username: Some(username.to_owned()),
            ..RevocationReport::default()
        }
    }

    /// The report for a grant whose login role `username` was already gone.
    fn already_revoked(grant_id: &str, username: &str) -> Self {
        RevocationReport {
            already_revoked: true,
            ..RevocationReport::for_role(grant_id, username)
        }
    }
}

/// Whether `record` holds grant `grant_id` active and unexpired at `now`: an
/// extension moved it after it was found expired, and its revocation for expiry must
/// not go on.
fn not_expired(record: &crate::ledger::RoleRecord, grant_id: &str, now: OffsetDateTime) -> bool {
    record
        .grants
        .iter()
        .any(|g| g.grant_id == grant_id && g.state == GrantState::Active && g.expires_at > now)
}

/// Whether `role`'s record holds grant `grant_id` unexpired now ([`not_expired`]).
fn extended(role: &LedgerRole, grant_id: &str) -> bool {
    role.record
        .as_ref()
        .is_some_and(|r| not_expired(r, grant_id, OffsetDateTime::now_utc()))
}

impl Provisioner {
    /// Revokes a grant completely. Idempotent: revoking again reports `already_revoked`.
    pub async fn revoke(&self, grant_id: &str) -> Result<RevocationReport, ProvisionError> {
        self.revoke_with(grant_id, false).await
    }

    /// Revokes a grant because it expired: like [`Provisioner::revoke`], but a grant
    /// that an extension moved into the future before its revocation began stays, and
    /// [`ProvisionError::NotExpired`] says so (the expiry decision is re-checked under
    /// the grant's lock, so a revocation never undoes an extension that came first).
    pub async fn revoke_expired(&self, grant_id: &str) -> Result<RevocationReport, ProvisionError> {
        self.revoke_with(grant_id, true).await
    }

    async fn revoke_with(
        &self,
        grant_id: &str,
        expired_only: bool,
    ) -> Result<RevocationReport, ProvisionError> {
        let result = self.revoke_found(grant_id, expired_only).await;
        if result.is_ok() {
            self.hints.forget(grant_id);
        }
        result
    }

    /// Finds grant `grant_id` (waiting for one in flight) and revokes it.
    async fn revoke_found(
        &self,
        grant_id: &str,
        expired_only: bool,
    ) -> Result<RevocationReport, ProvisionError> {
        // This process made or saw the grant: its role is known, and the revocation
        // reads it under the grant's lock anyway (a stale hint costs one round trip).
        // Not an ephemeral grant on that role: the look-up below reads the hinted role
        // again (a persistent grant), or forgets the hint.
        if let Some((username, seen)) = self.hints.get_seen(grant_id) {
            // A grant seen extended is left for the read to judge.
            let known = seen
                .and_then(|seen| self.known_role(grant_id, &username, seen))
                .filter(|role| !(expired_only && extended(role, grant_id)));
            if let Some(report) = self
                .revoke_role_once(grant_id, &username, Wait::Wait, expired_only, true, known)
                .await?
            {
                return Ok(report);
            }
        }
        let mut ledger = {
            let conn = self.admin.get().await?;
            self.ledger_for_grant_or_scan(&*conn, grant_id)
                .await
                .map_err(db("reading the ledger"))?
        };
        if find_grant(&ledger, grant_id).is_none() {
            // A grant of this id may be in flight (it holds the grant's lock until it
            // commits): wait for it and look again, rather than answer "already
            // revoked" and let it commit afterwards.
            let mut conn = self.admin.get().await?;
            let tx = Lock::Grant { grant_id }
                .transaction(&mut conn, "waiting for a grant in flight")
                .await?;
            ledger = self
                .ledger_for_grant_or_scan(&tx, grant_id)
                .await
                .map_err(db("reading the ledger"))?;
            tx.commit().await.map_err(db("reading the ledger"))?;
        }
        let Some((role, _)) = find_grant(&ledger, grant_id) else {
            return Ok(RevocationReport {
                grant_id: grant_id.to_owned(),
                already_revoked: true,
                ..RevocationReport::default()
            });
        };
        let mode = role.record.as_ref().map_or(RoleMode::Ephemeral, |r| r.mode);
        let username = role.username.clone();
        match mode {
            RoleMode::Ephemeral => {
                self.revoke_role(grant_id, &username, true, expired_only)
                    .await
            }
            RoleMode::Persistent => {
                self.revoke_persistent(grant_id, &username, expired_only)
                    .await
            }
        }
    }

    /// Role `username` as this process last saw it (`seen`), when that shows grant
    /// `grant_id` as an ephemeral grant: what [`Self::mark_known`] confirms.
    fn known_role(&self, grant_id: &str, username: &str, seen: Seen) -> Option<LedgerRole> {
        let record =
            RoleRecord::from_comment(&self.config.ledger_key, seen.oid, username, &seen.comment)?;
        let role = LedgerRole {
            username: username.to_owned(),
            oid: seen.oid,
            record: Some(record),
            has_comment: true,
            comment: Some(seen.comment),
            member_of: seen.member_of,
            // Not seen, and not read by a revocation (KNOWN_SQL confirms what is).
            can_login: true,
            valid_until: None,
            elevated: false,
        };
        holds_ephemeral(&role, grant_id).then_some(role)
    }

    /// Steps 1–7 for an ephemeral role (also used to resume). One revocation of a
    /// grant runs at a time across all processes: it holds a session advisory lock
    /// for its whole length (released with the session if the process dies). With
    /// `wait` false, a revocation already running elsewhere is reported as
    /// [`ProvisionError::InProgress`] instead of waited for.
    pub(crate) async fn revoke_role(
        &self,
        grant_id: &str,
        username: &str,
        wait: bool,
        expired_only: bool,
    ) -> Result<RevocationReport, ProvisionError> {
        let wait = if wait { Wait::Wait } else { Wait::Try };
        Ok(self
            .revoke_role_once(grant_id, username, wait, expired_only, false, None)
            .await?
            .unwrap_or_else(|| RevocationReport::already_revoked(grant_id, username)))
    }

    /// [`Self::revoke_role`]; with `hinted`, `None` when the role's record does not
    /// hold the grant as an ephemeral grant (nothing was done). With `known` (the
    /// role as this process last saw it), the grant is confirmed rather than read
    /// ([`Self::mark_known`]): the whole revocation is then one round trip.
    async fn revoke_role_once(
        &self,
        grant_id: &str,
        username: &str,
        wait: Wait,
        expired_only: bool,
        hinted: bool,
        known: Option<LedgerRole>,
    ) -> Result<Option<RevocationReport>, ProvisionError> {
        self.step(Step::RevokeMark)?;
        let facts = self.facts().await?.clone();
        // Unsettled from before the lock is asked for until it is released: dropped
        // anywhere in between (an error, a cancelled future), the connection closes
        // and takes the lock with it rather than returning to the pool holding it.
        // Checked out without the pool's check query: nothing before the mark commits,
        // so a connection found dead (a backend terminated while it sat in the pool)
        // costs a second try on a checked one instead of a round trip on every check-out.
        let mut conn = Unsettled::new(self.admin.get_unchecked().await?);
        let lock = Lock::Revoking { grant_id };
        let mut known = known;
        let (mut locked, mut checked, mut attempt) = (false, false, 0);
        let (result, released) = loop {
            attempt += 1;
            let marked = match Statements::prepare(&conn, facts.version_num).await {
                Err(e) => Marked::Not(e),
                Ok(statements) => {
                    let r = Revocation {
                        conn: &conn,
                        statements: &statements,
                        grant_id,
                        facts: &facts,
                        lock,
                    };
                    match known.take() {
                        Some(role) => {
                            let (held, marked) = self.mark_known(&r, &role).await;
                            locked = held;
                            marked
                        }
                        None => match self
                            .lock_and_read(
                                &conn,
                                grant_id,
                                username,
                                wait,
                                expired_only,
                                hinted,
                                &mut locked,
                            )
                            .await
                        {
                            Err(e) => Marked::Not(e),
                            Ok(Mark::Found(role)) => self.mark_found(&r, &role).await,
                            Ok(Mark::InProgress) => {
                                conn.settle();
                                return Err(ProvisionError::InProgress {
                                    grant_id: grant_id.to_owned(),
                                });
                            }
                            Ok(Mark::NotHere) => break (Ok(None), false),
                            Ok(Mark::Gone) => {
                                let report = RevocationReport::already_revoked(grant_id, username);
                                break (Ok(Some(report)), false);
                            }
                            Ok(Mark::Extended) => {
                                let grant_id = grant_id.to_owned();
                                break (Err(ProvisionError::NotExpired { grant_id }), false);
                            }
                        },
                    }
                }
            };
            match marked {
                Marked::Done(Ok((report, released))) => break (Ok(Some(report)), released),
                // Read it, then.
                Marked::Stale => {}
                Marked::Not(e) if lost(&e) && !checked => {
                    tracing::debug!(error = %e, "a pooled connection was dead; revoking on a checked one");
                    // Gone first: waiting for a second connection while holding the dead
                    // one would take two of the pool's slots per revocation. Its lock
                    // went with it.
                    drop(conn);
                    conn = Unsettled::new(self.admin.get().await?);
                    (locked, checked) = (false, true);
                }
                Marked::Not(e) if attempt < crate::retry::MAX_ATTEMPTS && transient(&e) => {
                    tokio::time::sleep(Duration::from_millis(10 << attempt.min(6))).await;
                }
                Marked::Done(Err(e)) | Marked::Not(e) => break (Err(e), false),
            }
        };
        // A pooled connection must not keep the lock: back to the pool only once it is
        // released (otherwise it closes, and the lock dies with the session).
        if released || lock.release(&***conn).await.is_ok() {
            conn.settle();
        }
        result
    }
}
