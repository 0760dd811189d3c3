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
//! A role that step 5 cannot free (it owns a tablespace, say) is reported with what
//! holds it; access has ended by then. With a successor, PUBLIC grants on what is
//! handed over are revoked first and `SECURITY DEFINER` functions are listed.
//!
//! Persistent roles keep their objects: a grant's revocation removes only the
//! memberships no other active grant of the role needs (ending the role's sessions
//! if it keeps others), and disables login when none is left. Its session limits are
//! reset and those of the grants it keeps applied again, in the transaction that
//! records the revocation (expiry and reconcile revoke persistent grants here too).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

use pgwarden_core::naming::MARKER_ROLE;
use pgwarden_core::session::SessionLimits;
use serde::Serialize;
use time::OffsetDateTime;

use crate::error::{ProvisionError, db, describe_db_error, transient};
use crate::ledger::{GrantState, RoleMode, find_grant, read_ledger, read_ledger_role_cached};
use crate::lock::Lock;
use crate::pool::Unsettled;
use crate::provision::{ConnectorFacts, Provisioner, Step, reapply_sql};
use crate::retry::with_retry;
use crate::sql::{CachedQuery, Ident, literal, timestamp};

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
}

/// Ends a role's sessions, waiting up to 5 s for each to exit (the timeout argument
/// exists from PostgreSQL 14; [`SESSIONS_SQL_13`] polls instead).
/// Sessions are matched by the role's oid (also returned), never by `usename`,
/// which reads NULL once the role is dropped.
const SESSIONS_SQL: &str = "
SELECT pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(pid, 5000)),
       (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1)
FROM pg_catalog.pg_stat_activity
WHERE usesysid = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1) AND pid <> pg_catalog.pg_backend_pid()";

/// [`SESSIONS_SQL`] for PostgreSQL 13: signal only; the caller's loop waits.
const SESSIONS_SQL_13: &str = "
SELECT pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(pid)),
       (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1)
FROM pg_catalog.pg_stat_activity
WHERE usesysid = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1) AND pid <> pg_catalog.pg_backend_pid()";

/// Databases to clean: those whose objects reference the role, and — for references
/// from shared objects (`dbid` 0: privileges on databases, tablespaces, and from 15
/// parameters), which `DROP OWNED` in any database removes — the current one.
const DATABASES_SQL: &str = "
SELECT DISTINCT COALESCE(d.datname, pg_catalog.current_database())::pg_catalog.text
FROM pg_catalog.pg_shdepend s
LEFT JOIN pg_catalog.pg_database d ON d.oid = s.dbid
WHERE s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid
  AND s.refobjid = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1)
ORDER BY 1";

/// What a role owns in the current database that is open to PUBLIC, or a `SECURITY
/// DEFINER` function: (GRANT object keyword, quoted name, open to PUBLIC, definer).
/// Routines are open to PUBLIC by default (a NULL ACL), hence `acldefault`.
const HANDED_OVER_SQL: &str = "
WITH r AS (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1)
SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
       pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.'::pg_catalog.text
         OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname),
       EXISTS (SELECT 1 FROM pg_catalog.aclexplode(c.relacl) a WHERE a.grantee = 0::pg_catalog.oid),
       false
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relowner = (SELECT oid FROM r) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
UNION ALL
SELECT 'ROUTINE', p.oid::pg_catalog.regprocedure::pg_catalog.text,
       EXISTS (SELECT 1 FROM pg_catalog.aclexplode(COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
               WHERE a.grantee = 0::pg_catalog.oid),
       p.prosecdef
FROM pg_catalog.pg_proc p
WHERE p.proowner = (SELECT oid FROM r) AND p.prokind IN ('f', 'p')
UNION ALL
SELECT 'SCHEMA', pg_catalog.quote_ident(n.nspname),
       EXISTS (SELECT 1 FROM pg_catalog.aclexplode(n.nspacl) a WHERE a.grantee = 0::pg_catalog.oid),
       false
FROM pg_catalog.pg_namespace n WHERE n.nspowner = (SELECT oid FROM r)
ORDER BY 1, 2";

/// Sessions other than ours holding locks, in the current database, on objects that
/// reference role `$1` (what `DROP OWNED`/`REASSIGN OWNED` must lock).
const BLOCKERS_SQL: &str = "
WITH dep AS (
  SELECT s.classid, s.objid FROM pg_catalog.pg_shdepend s
  WHERE s.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
    AND s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid
    AND s.refobjid = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1))
SELECT DISTINCT a.pid, a.usename::pg_catalog.text, a.state, a.application_name,
       pg_catalog.date_part('epoch'::pg_catalog.text, pg_catalog.now() OPERATOR(pg_catalog.-) a.xact_start)::pg_catalog.int8
FROM pg_catalog.pg_locks l
JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
WHERE l.granted AND l.pid <> pg_catalog.pg_backend_pid()
  AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
  AND ((l.locktype = 'relation' AND l.relation IN (SELECT objid FROM dep WHERE classid = 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid))
    OR (l.locktype = 'object' AND (l.classid, l.objid) IN (SELECT classid, objid FROM dep)))
ORDER BY 1";

const DEPENDENCIES_SQL: &str = "
SELECT pg_catalog.count(*) FILTER (WHERE s.deptype = 'o'), pg_catalog.count(*) FILTER (WHERE s.deptype <> 'o')
FROM pg_catalog.pg_shdepend s
WHERE s.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
  AND s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid
  AND s.refobjid = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1)";

/// Whether `record` holds grant `grant_id` active and unexpired at `now`: an
/// extension moved it after it was found expired, and its revocation for expiry must
/// not go on.
fn not_expired(record: &crate::ledger::RoleRecord, grant_id: &str, now: OffsetDateTime) -> bool {
    record
        .grants
        .iter()
        .any(|g| g.grant_id == grant_id && g.state == GrantState::Active && g.expires_at > now)
}

/// What marking a grant revoking found.
enum Mark {
    /// Marked: the revocation goes on.
    Marked,
    /// The role no longer exists.
    Gone,
    /// The grant was extended after it was found expired.
    Extended,
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
        let mut ledger = {
            let conn = self.admin.get().await?;
            self.ledger_for_grant(&*conn, grant_id)
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
                .ledger_for_grant(&tx, grant_id)
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
        // Unsettled from before the lock is asked for until it is released: dropped
        // anywhere in between (an error, a cancelled future), the connection closes
        // and takes the lock with it rather than returning to the pool holding it.
        let mut conn = Unsettled::new(self.admin.get().await?);
        let lock = Lock::Revoking { grant_id };
        let locked = if wait {
            lock.acquire(&***conn)
                .await
                .map_err(db("waiting for another revocation"))?;
            true
        } else {
            lock.try_acquire(&***conn)
                .await
                .map_err(db("locking the revocation"))?
        };
        if !locked {
            conn.settle();
            return Err(ProvisionError::InProgress {
                grant_id: grant_id.to_owned(),
            });
        }
        let result = self
            .revoke_role_locked(&mut conn, grant_id, username, expired_only)
            .await;
        // A pooled connection must not keep the lock: back to the pool only once it is
        // released (otherwise it closes, and the lock dies with the session).
        if lock.release(&***conn).await.is_ok() {
            conn.settle();
        }
        result
    }

    #[allow(clippy::too_many_lines, reason = "the revocation's steps, in order")]
    async fn revoke_role_locked(
        &self,
        conn: &mut deadpool_postgres::Object,
        grant_id: &str,
        username: &str,
        expired_only: bool,
    ) -> Result<RevocationReport, ProvisionError> {
        let mut report = RevocationReport::for_role(grant_id, username);
        let u = Ident(username);
        let facts = self.facts().await?.clone();

        self.step(Step::RevokeMark)?;
        match self
            .mark_revoking(conn, grant_id, username, expired_only)
            .await?
        {
            Mark::Marked => {}
            Mark::Gone => {
                report.already_revoked = true;
                return Ok(report);
            }
            Mark::Extended => {
                return Err(ProvisionError::NotExpired {
                    grant_id: grant_id.to_owned(),
                });
            }
        }
        report.login_disabled = true;

        self.step(Step::RevokeTerminateSessions)?;
        let (ended, role_oid) = terminate_sessions_of(conn, username, facts.version_num).await?;
        report.sessions_terminated = ended;

        self.step(Step::RevokeMemberships)?;
        report.memberships_removed = remove_memberships(conn, username, &BTreeSet::new()).await?;

        if facts.createrole_mode {
            // Access has ended by now; what is left needs the connector to act as the
            // role (REASSIGN/DROP OWNED require its privileges).
            act_as(conn, &facts, username).await?;
        }

        let successor = self
            .config
            .successor
            .clone()
            .unwrap_or_else(|| facts.name.clone());
        let mut still_referenced = None;
        for _round in 0..3 {
            // Databases it owns: DROP OWNED never drops a database.
            let owned: Vec<String> = conn
                .query_cached(
                    "SELECT datname::text FROM pg_catalog.pg_database WHERE datdba = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1)",
                    &[&username],
                )
                .await
                .map_err(db("finding databases the role owns"))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            for d in owned {
                conn.batch_execute(&format!(
                    "ALTER DATABASE {} OWNER TO {}",
                    Ident(&d),
                    Ident(&successor)
                ))
                .await
                .map_err(db(format!("handing database {d} to {successor}")))?;
                report.databases_reassigned.push(d);
            }
            let databases: Vec<String> = conn
                .query_cached(DATABASES_SQL, &[&username])
                .await
                .map_err(db("finding databases that reference the role"))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            for database in databases {
                self.step(Step::RevokeCleanDatabase(database.clone()))?;
                let cleanup = self.clean_database(conn, &database, username).await?;
                match report.databases.iter_mut().find(|c| c.database == database) {
                    Some(c) => {
                        c.objects_dropped += cleanup.objects_dropped;
                        c.objects_reassigned += cleanup.objects_reassigned;
                        c.privileges_revoked += cleanup.privileges_revoked;
                    }
                    None => report.databases.push(cleanup),
                }
            }
            self.step(Step::RevokeDropRole)?;
            match conn
                .batch_execute(&format!("DROP ROLE IF EXISTS {u}"))
                .await
            {
                Ok(()) => {
                    report.role_dropped = true;
                    break;
                }
                Err(e) if e.as_db_error().is_some_and(|d| d.code().code() == "2BP01") => {
                    // Objects appeared (or a database could not be cleaned): look again.
                    let detail = describe_db_error(&e);
                    tracing::warn!(username, error = %detail, "role still referenced; cleaning again");
                    still_referenced = Some(detail);
                }
                Err(e) if e.as_db_error().is_some_and(|d| d.code().code() == "55006") => {
                    // Still connected (a session slipped in before NOLOGIN): end it and retry.
                    report.sessions_terminated +=
                        terminate_sessions(conn, username, facts.version_num).await?;
                }
                Err(e) => return Err(db("dropping the role")(e)),
            }
        }
        if let (false, Some(detail)) = (report.role_dropped, still_referenced) {
            // What DROP OWNED cannot remove (say, a tablespace the role owns) would
            // fail every retry the same way: say what it is and what to do.
            return Err(ProvisionError::RevocationIncomplete {
                username: username.to_owned(),
                reason: format!(
                    "access has ended (login disabled, sessions ended, memberships removed), but the role cannot be dropped: {detail}. Remove or reassign what is named there, then reconcile finishes the revocation"
                ),
            });
        }
        verify_gone(conn, username, role_oid).await?;
        tracing::info!(
            grant_id,
            username,
            sessions = report.sessions_terminated,
            "revoked"
        );
        Ok(report)
    }

    /// Step 1, under the grant's lock: the grant is marked revoking and the role set
    /// NOLOGIN — unless the role is gone, or (`expired_only`) the grant, read afresh,
    /// is active and no longer expired: an extension committed first.
    async fn mark_revoking(
        &self,
        conn: &mut deadpool_postgres::Object,
        grant_id: &str,
        username: &str,
        expired_only: bool,
    ) -> Result<Mark, ProvisionError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::mark_once(
                conn,
                &self.config.ledger_key,
                grant_id,
                username,
                expired_only,
            )
            .await
            {
                Err(e) if attempt < crate::retry::MAX_ATTEMPTS && transient(&e) => {
                    tokio::time::sleep(Duration::from_millis(10 << attempt.min(6))).await;
                }
                other => return other,
            }
        }
    }

    async fn mark_once(
        conn: &mut deadpool_postgres::Object,
        key: &crate::seal::LedgerKey,
        grant_id: &str,
        username: &str,
        expired_only: bool,
    ) -> Result<Mark, ProvisionError> {
        let tx = Lock::Grant { grant_id }
            .transaction(conn, "locking the grant id")
            .await?;
        let Some(role) = read_ledger_role_cached(&tx, key, username)
            .await
            .map_err(db("reading the ledger"))?
        else {
            return Ok(Mark::Gone);
        };
        if expired_only
            && role
                .record
                .as_ref()
                .is_some_and(|r| not_expired(r, grant_id, OffsetDateTime::now_utc()))
        {
            return Ok(Mark::Extended);
        }
        let mut sql = format!(
            "ALTER ROLE {} NOLOGIN VALID UNTIL {}",
            Ident(username),
            literal(&timestamp(
                OffsetDateTime::now_utc() - time::Duration::seconds(1)
            ))
        );
        if let Some(mut record) = role.record.clone() {
            for g in &mut record.grants {
                if g.grant_id == grant_id {
                    g.state = GrantState::Revoking;
                }
            }
            let _ = write!(sql, "; {}", record.comment_on(key, role.oid, username));
        }
        tx.batch_execute(&sql)
            .await
            .map_err(db("disabling login"))?;
        tx.commit()
            .await
            .map_err(db("committing the revocation mark"))?;
        Ok(Mark::Marked)
    }

    /// Step 5 in one database (on `admin` when it is the default database, so one
    /// revocation never holds two connections of the same pool).
    async fn clean_database(
        &self,
        admin: &deadpool_postgres::Object,
        database: &str,
        username: &str,
    ) -> Result<DatabaseCleanup, ProvisionError> {
        let other;
        let conn: &deadpool_postgres::ClientWrapper = if database == self.connector.database() {
            admin
        } else {
            let pool = self.pool(database).await?;
            other = pool.get().await.map_err(|e| ProvisionError::RevocationIncomplete {
                username: username.to_owned(),
                reason: format!("cannot connect to database {database} to remove what the role owns there: {e}"),
            })?;
            &other
        };
        let row = conn
            .query_one_cached(DEPENDENCIES_SQL, &[&username])
            .await
            .map_err(db(format!("counting objects in {database}")))?;
        let (owned, privileges): (i64, i64) = (row.get(0), row.get(1));
        let u = Ident(username);
        let mut sql = String::new();
        let (mut public_grants_revoked, mut security_definer_functions) = (Vec::new(), Vec::new());
        if let Some(s) = &self.config.successor {
            if owned > 0 {
                for row in conn
                    .query_cached(HANDED_OVER_SQL, &[&username])
                    .await
                    .map_err(db(format!(
                        "reviewing what the role hands over in {database}"
                    )))?
                {
                    let (kind, name, public, definer): (String, String, bool, bool) =
                        (row.get(0), row.get(1), row.get(2), row.get(3));
                    if public {
                        // `name` is quoted by the server (quote_ident / regprocedure).
                        let _ = write!(sql, "REVOKE ALL ON {kind} {name} FROM PUBLIC; ");
                        public_grants_revoked.push(format!("{} {name}", kind.to_lowercase()));
                    }
                    if definer {
                        security_definer_functions.push(name);
                    }
                }
            }
            let _ = write!(sql, "REASSIGN OWNED BY {u} TO {}; ", Ident(s));
        }
        let _ = write!(sql, "DROP OWNED BY {u}");
        // Never wait without limit for another session's lock: access has ended
        // already, and the caller retries the clean-up later.
        let waited = self.config.cleanup_lock_timeout;
        let sql = format!(
            "SELECT pg_catalog.set_config('lock_timeout', {}, true); {sql}",
            literal(&format!("{}ms", waited.as_millis().max(1)))
        );
        let result = with_retry(
            || async {
                conn.batch_execute(&sql)
                    .await
                    .map_err(db(format!("removing what the role owns in {database}")))
            },
            transient,
        )
        .await;
        if let Err(ProvisionError::Database { source, .. }) = &result
            && source
                .as_db_error()
                .is_some_and(|d| d.code().code() == "55P03")
        {
            let blockers = conn
                .query_cached(BLOCKERS_SQL, &[&username])
                .await
                .map_err(db(format!(
                    "finding what the clean-up in {database} waits for"
                )))?
                .iter()
                .map(|r| Blocker {
                    pid: r.get(0),
                    user: r.get(1),
                    state: r.get(2),
                    application_name: r.get(3),
                    transaction_seconds: r.get(4),
                })
                .collect();
            return Err(ProvisionError::CleanupWaiting {
                username: username.to_owned(),
                database: database.to_owned(),
                waited,
                blockers,
            });
        }
        result?;
        let kept = self.config.successor.is_some();
        Ok(DatabaseCleanup {
            database: database.to_owned(),
            objects_dropped: if kept { 0 } else { owned },
            objects_reassigned: if kept { owned } else { 0 },
            privileges_revoked: privileges,
            public_grants_revoked,
            security_definer_functions,
        })
    }

    /// A persistent role: drop this grant's memberships (those no other active grant
    /// needs); with no grant left, disable login and end sessions. Objects are kept.
    async fn revoke_persistent(
        &self,
        grant_id: &str,
        username: &str,
        expired_only: bool,
    ) -> Result<RevocationReport, ProvisionError> {
        let mut report = RevocationReport::for_role(grant_id, username);
        self.step(Step::RevokeMark)?;
        let remaining = with_retry(
            || async {
                let mut conn = self.admin.get().await?;
                let tx = Lock::Role { username }
                    .transaction(&mut conn, "locking the persistent role")
                    .await?;
                let key = &self.config.ledger_key;
                let ledger = read_ledger(&*tx, key)
                    .await
                    .map_err(db("reading the ledger"))?;
                let Some((oid, mut record)) = ledger
                    .iter()
                    .find(|r| r.username == username)
                    .and_then(|r| r.record.clone().map(|rec| (r.oid, rec)))
                else {
                    return Ok(None);
                };
                let now = OffsetDateTime::now_utc();
                if expired_only && not_expired(&record, grant_id, now) {
                    return Err(ProvisionError::NotExpired {
                        grant_id: grant_id.to_owned(),
                    });
                }
                // Limits involved: the role's settings are rewritten from the grants
                // it keeps (reset to none when it keeps none).
                let had_limits = record.grants.iter().any(|g| !g.session.is_empty());
                record.grants.retain(|g| g.grant_id != grant_id);
                record
                    .grants
                    .retain(|g| g.expires_at > now && g.state == GrantState::Active);
                let u = Ident(username);
                let mut sql = record.comment_on(key, oid, username);
                if had_limits {
                    let limits = SessionLimits::combined(record.grants.iter().map(|g| &g.session));
                    let _ = write!(sql, "; {}", reapply_sql(username, &limits));
                }
                if record.grants.is_empty() {
                    let _ = write!(
                        sql,
                        "; ALTER ROLE {u} NOLOGIN VALID UNTIL {}",
                        literal(&timestamp(now))
                    );
                } else {
                    let until = record
                        .grants
                        .iter()
                        .map(|g| g.expires_at)
                        .max()
                        .unwrap_or(now);
                    let _ = write!(
                        sql,
                        "; ALTER ROLE {u} VALID UNTIL {}",
                        literal(&timestamp(until))
                    );
                }
                tx.batch_execute(&sql)
                    .await
                    .map_err(db("updating the persistent role"))?;
                tx.commit().await.map_err(db("committing the revocation"))?;
                Ok(Some(record))
            },
            transient,
        )
        .await?;
        let Some(record) = remaining else {
            report.already_revoked = true;
            return Ok(report);
        };
        let keep: BTreeSet<String> = record.privilege_roles().cloned().collect();
        if record.grants.is_empty() {
            report.login_disabled = true;
            self.step(Step::RevokeTerminateSessions)?;
            let version_num = self.facts().await?.version_num;
            let conn = self.admin.get().await?;
            report.sessions_terminated = terminate_sessions(&conn, username, version_num).await?;
        }
        self.step(Step::RevokeMemberships)?;
        let conn = self.admin.get().await?;
        report.memberships_removed = remove_memberships(&conn, username, &keep).await?;
        if !record.grants.is_empty() && !report.memberships_removed.is_empty() {
            // Other grants go on, so login stays; but no session may keep using what
            // this one gave (on 15 and earlier one may even have SET ROLE to a
            // privilege role): they end, and reconnect with the remaining access.
            let version_num = self.facts().await?.version_num;
            report.sessions_terminated = terminate_sessions(&conn, username, version_num).await?;
        }
        tracing::info!(grant_id, username, "revoked (persistent role kept)");
        Ok(report)
    }
}

/// Step 2: end sessions until none remain (bounded).
pub(crate) async fn terminate_sessions(
    conn: &deadpool_postgres::ClientWrapper,
    username: &str,
    version_num: i32,
) -> Result<i64, ProvisionError> {
    terminate_sessions_of(conn, username, version_num)
        .await
        .map(|(ended, _)| ended)
}

/// [`terminate_sessions`], also returning the role's oid (`None`: no such role), by
/// which [`verify_gone`] finds sessions after the role is dropped.
async fn terminate_sessions_of(
    conn: &deadpool_postgres::ClientWrapper,
    username: &str,
    version_num: i32,
) -> Result<(i64, Option<u32>), ProvisionError> {
    let sql = if version_num >= 140_000 {
        SESSIONS_SQL
    } else {
        SESSIONS_SQL_13
    };
    let mut ended = 0;
    for _ in 0..50 {
        let row = conn
            .query_one_cached(sql, &[&username])
            .await
            .map_err(db("ending sessions"))?;
        let (remaining, terminated, oid): (i64, i64, Option<u32>) =
            (row.get(0), row.get(1), row.get(2));
        ended += terminated;
        if remaining == 0 {
            return Ok((ended, oid));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(ProvisionError::RevocationIncomplete {
        username: username.to_owned(),
        reason: "sessions keep running (a superuser's session cannot be ended by a non-superuser connector)".into(),
    })
}

/// In createrole mode, makes sure the connector holds the privileges of `username`
/// (REASSIGN OWNED and DROP OWNED need them). Roles pgwarden created in this mode
/// already have the connector as a member; one created otherwise (by a superuser
/// connector earlier) gets the membership now, which a CREATEROLE connector may
/// grant before PostgreSQL 16 and, from 16, only with ADMIN OPTION on the role.
async fn act_as(
    conn: &tokio_postgres::Client,
    facts: &ConnectorFacts,
    username: &str,
) -> Result<(), ProvisionError> {
    let can: bool = conn
        .query_one(
            "SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)
                 OR pg_catalog.pg_has_role(current_user, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1), 'USAGE')",
            &[&username],
        )
        .await
        .map_err(db("checking the connector's membership"))?
        .get(0);
    if can {
        return Ok(());
    }
    let options = if facts.version_num >= 160_000 {
        " WITH INHERIT TRUE, SET TRUE"
    } else {
        ""
    };
    conn.batch_execute(&format!(
        "GRANT {} TO {}{options}",
        Ident(username),
        Ident(&facts.name)
    ))
    .await
    .map_err(|e| ProvisionError::RevocationIncomplete {
        username: username.to_owned(),
        reason: format!(
            "login is disabled, sessions ended and memberships removed, but connector {c} cannot act as the role to remove what it owns ({}); as a superuser run GRANT {u} TO {c} WITH ADMIN OPTION, then reconcile",
            describe_db_error(&e),
            c = facts.name,
            u = username,
        ),
    })
}

/// Step 3: removes memberships other than the marker and `keep`.
pub(crate) async fn remove_memberships(
    conn: &deadpool_postgres::ClientWrapper,
    username: &str,
    keep: &BTreeSet<String>,
) -> Result<Vec<String>, ProvisionError> {
    let rows = conn
        .query_cached(
            "SELECT g.rolname::text FROM pg_catalog.pg_auth_members m
             JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
             JOIN pg_catalog.pg_roles u ON u.oid = m.member
             WHERE u.rolname = $1 AND g.rolname <> $2 ORDER BY 1",
            &[&username, &MARKER_ROLE],
        )
        .await
        .map_err(db("reading memberships"))?;
    let groups: Vec<String> = rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|g| !keep.contains(g))
        .collect();
    if !groups.is_empty() {
        let sql = groups
            .iter()
            .map(|g| format!("REVOKE {} FROM {}", Ident(g), Ident(username)))
            .collect::<Vec<_>>()
            .join("; ");
        with_retry(
            || async {
                conn.batch_execute(&sql)
                    .await
                    .map_err(db("removing memberships"))
            },
            transient,
        )
        .await?;
    }
    Ok(groups)
}

/// Step 7.
/// Sessions are counted by the oid the role had (`usename` is NULL once it is
/// dropped, so a surviving session would go unseen).
async fn verify_gone(
    conn: &deadpool_postgres::ClientWrapper,
    username: &str,
    role_oid: Option<u32>,
) -> Result<(), ProvisionError> {
    let row = conn
        .query_one_cached(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1),
                    (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity
                     WHERE usesysid = $2 OR usename = $1)",
            &[&username, &role_oid],
        )
        .await
        .map_err(db("verifying the revocation"))?;
    let (exists, sessions): (bool, i64) = (row.get(0), row.get(1));
    if exists || sessions > 0 {
        return Err(ProvisionError::RevocationIncomplete {
            username: username.to_owned(),
            reason: format!(
                "role still exists: {exists}, sessions left: {sessions}; it stays marked revoking and reconcile retries"
            ),
        });
    }
    Ok(())
}
