//! Steps 1–7 of an ephemeral role's revocation in one pipeline, once its grant is
//! found under its lock: every step is sent behind the one before it, and each is
//! guarded so that it does nothing the steps before it did not allow.
//!
//! 1. The mark (`NOLOGIN`, the record revoking, `COMMIT`) ends the transaction that
//!    found the grant. If anything before it failed, that transaction is aborted,
//!    the mark fails, and so does everything behind it, which is still inside it.
//! 2. The role's sessions are ended (`pg_terminate_backend`, waiting up to 5 s each).
//! 3. Its memberships, as found, are revoked: its privileges end now, in their own
//!    transaction, whatever happens to the drop.
//! 4. –6. In one transaction under the clean-up's lock timeout: a statement that
//!    fails while any session of the role remains, and otherwise counts what
//!    references the role, for the report ([`BEFORE_DROP_SQL`]); `DROP OWNED` (no
//!    successor) and `DROP ROLE`. It fails, and rolls back, whenever the role is
//!    referenced elsewhere, owns a database, has objects for a successor, or the
//!    connector cannot act as it.
//! 7. The verification (no role, no session by name or by the oid it had), and the
//!    `Revoking` lock released.
//!
//! Whatever the pipeline leaves undone goes on step by step, from where it stopped
//! ([`Provisioner::clean_and_drop`]). A test hook ([`Step`]) that stops the
//! revocation at a step stops the pipeline there: what is before it is sent, nothing
//! after.

use std::collections::BTreeSet;
use std::sync::Mutex;

use futures_util::join;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, SimpleQueryMessage, Statement};

use super::clean::lock_timed_out;
use super::finish::{
    VERIFY_SQL, remove_memberships, revoke_memberships_sql, sessions_ended, sessions_sql,
    terminate_sessions, verified,
};
use super::mark::KNOWN_SQL;
use super::{DatabaseCleanup, RevocationReport};
use crate::error::{ProvisionError, db};
use crate::ledger::LedgerRole;
use crate::lock::{Lock, first_value};
use crate::provision::{ConnectorFacts, Provisioner, Step};
use crate::sql::{Ident, literal};

/// The drop's first statement: fails (division by zero, SQLSTATE 22012) while a
/// session of the role with oid `$1` remains (other than ours); otherwise what
/// references the role: objects it owns in this database, privileges and default
/// privileges here, and references anywhere (any database, shared objects). Run in a
/// transaction of its own, whose activity snapshot is taken after the sessions were
/// ended. The check is in the select list of a query that always returns one row (an
/// aggregate's), so it is evaluated whatever the plan.
const BEFORE_DROP_SQL: &str = "
SELECT 1 OPERATOR(pg_catalog./) (NOT EXISTS (
         SELECT FROM pg_catalog.pg_stat_get_activity(NULL) a
         WHERE a.usesysid OPERATOR(pg_catalog.=) $1::pg_catalog.oid
           AND a.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()))::pg_catalog.int4,
       c.owned, c.privileges, c.anywhere
FROM (SELECT pg_catalog.count(*) FILTER (WHERE s.dbid OPERATOR(pg_catalog.=) h.oid AND s.deptype OPERATOR(pg_catalog.=) 'o') AS owned,
             pg_catalog.count(*) FILTER (WHERE s.dbid OPERATOR(pg_catalog.=) h.oid AND s.deptype OPERATOR(pg_catalog.<>) 'o') AS privileges,
             pg_catalog.count(*) AS anywhere
      FROM pg_catalog.pg_shdepend s,
           (SELECT oid FROM pg_catalog.pg_database
            WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) h
      WHERE s.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid
        AND s.refobjid OPERATOR(pg_catalog.=) $1::pg_catalog.oid) c";

/// The statements a revocation's pipeline runs, prepared on its connection (once per
/// connection: the statement cache keeps them) before anything is sent.
pub(super) struct Statements {
    /// [`KNOWN_SQL`].
    pub(super) known: Statement,
    sessions: Statement,
    before_drop: Statement,
    verify: Statement,
}

impl Statements {
    /// Prepares them on `conn` (for server version `version_num`).
    pub(super) async fn prepare(
        conn: &deadpool_postgres::Object,
        version_num: i32,
    ) -> Result<Statements, ProvisionError> {
        let prepare = |sql: &'static str| async move {
            conn.prepare_cached(sql)
                .await
                .map_err(db("preparing the revocation's statements"))
        };
        Ok(Statements {
            known: prepare(KNOWN_SQL).await?,
            sessions: prepare(sessions_sql(version_num)).await?,
            before_drop: prepare(BEFORE_DROP_SQL).await?,
            verify: prepare(VERIFY_SQL).await?,
        })
    }
}

/// One revocation's connection, and what each of its steps needs.
pub(super) struct Revocation<'a> {
    /// The connection it runs on (holding, or about to hold, the `Revoking` lock).
    pub(super) conn: &'a deadpool_postgres::Object,
    /// Its statements, prepared on `conn`.
    pub(super) statements: &'a Statements,
    /// The grant revoked.
    pub(super) grant_id: &'a str,
    /// The connector's facts.
    pub(super) facts: &'a ConnectorFacts,
    /// The grant's `Revoking` lock.
    pub(super) lock: Lock<'a>,
}

/// What a mark came to.
pub(super) enum Marked {
    /// The mark committed: what came of the rest of the revocation (the report and
    /// whether the `Revoking` lock was released).
    Done(Result<(RevocationReport, bool), ProvisionError>),
    /// Nothing committed, and the transaction was rolled back (or the connection is
    /// gone): why.
    Not(ProvisionError),
    /// The role is no longer as this process saw it: nothing committed, the
    /// transaction rolled back. The revocation reads it instead.
    Stale,
}

/// What the pipeline's requests answered; `None` for those not sent (a test hook
/// stopped the revocation before them).
pub(super) struct Sent {
    /// The mark.
    pub(super) marked: Result<(), tokio_postgres::Error>,
    ended: Option<Result<Row, tokio_postgres::Error>>,
    revoked: Option<Result<(), tokio_postgres::Error>>,
    dropped: Option<Dropped>,
    /// The hook's error, when one stopped the revocation.
    stopped: Option<ProvisionError>,
}

/// Steps 4–7's answers.
struct Dropped {
    begun: Result<(), tokio_postgres::Error>,
    /// [`BEFORE_DROP_SQL`]'s row.
    counts: Result<Row, tokio_postgres::Error>,
    drop: Result<(), tokio_postgres::Error>,
    verified: Result<Row, tokio_postgres::Error>,
    released: Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>,
}

impl Dropped {
    /// Whether the transaction that dropped the role committed.
    fn committed(&self) -> bool {
        self.begun.is_ok() && self.counts.is_ok() && self.drop.is_ok()
    }
}

impl Provisioner {
    /// Sends `mark` (which commits the transaction holding the grant's lock) and
    /// steps 2–7 behind it, each request when first polled: polled inside a `join!`
    /// after other requests, the whole is still one round trip.
    pub(super) async fn send_rest(
        &self,
        r: &Revocation<'_>,
        role: &LedgerRole,
        mark: &str,
    ) -> Sent {
        let (conn, statements) = (r.conn, r.statements);
        let username = role.username.as_str();
        let u = Ident(username);
        let stopped: Mutex<Option<ProvisionError>> = Mutex::new(None);
        // Whether the hook lets the revocation reach `step` (nothing is sent once it
        // stopped it).
        let reach = |step: Step| {
            let mut stopped = stopped
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if stopped.is_none()
                && let Err(e) = self.step(step)
            {
                *stopped = Some(e);
            }
            stopped.is_none()
        };
        let revoke = revoke_memberships_sql(&role.member_of, username);
        let open_tx = format!(
            "BEGIN; SELECT pg_catalog.set_config('lock_timeout', {}, true)",
            literal(&format!(
                "{}ms",
                self.config.cleanup_lock_timeout.as_millis().max(1)
            ))
        );
        // With a successor, what the role owns is handed over, step by step: this
        // DROP ROLE then succeeds only when nothing references the role.
        let drop_sql = if self.config.successor.is_some() {
            format!("DROP ROLE IF EXISTS {u}; COMMIT")
        } else {
            format!("DROP OWNED BY {u}; DROP ROLE IF EXISTS {u}; COMMIT")
        };
        let oid = Some(role.oid);
        let by_name: [&(dyn ToSql + Sync); 1] = [&username];
        let by_oid: [&(dyn ToSql + Sync); 1] = [&role.oid];
        let by_name_and_oid: [&(dyn ToSql + Sync); 2] = [&username, &oid];
        let release = r.lock.release_sql();
        let here = self.connector.database();
        let (marked, ended, revoked, dropped) = join!(
            conn.batch_execute(mark),
            async {
                if !reach(Step::RevokeTerminateSessions) {
                    return None;
                }
                Some(conn.query_one(&statements.sessions, &by_name).await)
            },
            async {
                if !reach(Step::RevokeMemberships) {
                    return None;
                }
                Some(if revoke.is_empty() {
                    Ok(())
                } else {
                    conn.batch_execute(&revoke).await
                })
            },
            async {
                if !reach(Step::RevokeCleanDatabase(here.to_owned()))
                    || !reach(Step::RevokeDropRole)
                {
                    return None;
                }
                let (begun, counts, drop, verified, released) = join!(
                    conn.batch_execute(&open_tx),
                    conn.query_one(&statements.before_drop, &by_oid),
                    conn.batch_execute(&drop_sql),
                    conn.query_one(&statements.verify, &by_name_and_oid),
                    conn.simple_query(&release),
                );
                Some(Dropped {
                    begun,
                    counts,
                    drop,
                    verified,
                    released,
                })
            },
        );
        Sent {
            marked,
            ended,
            revoked,
            dropped,
            stopped: stopped
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        }
    }

    /// What a pipeline sent behind a mark came to: [`Marked::Not`] (rolled back) when
    /// the mark failed; else the revocation, finished step by step from where the
    /// pipeline stopped.
    pub(super) async fn judge_marked(
        &self,
        r: &Revocation<'_>,
        role: &LedgerRole,
        sent: Sent,
    ) -> Marked {
        if let Err(e) = sent.marked {
            // Not rolled back (the connection broke): the caller closes it.
            let _ = r.conn.batch_execute("ROLLBACK").await;
            return Marked::Not(db("disabling login")(e));
        }
        // Boxed: the step-by-step end makes a large future, seldom needed.
        let result = Box::pin(self.finish_marked(r, role, sent)).await;
        if let Ok((report, _)) = &result {
            tracing::info!(
                grant_id = r.grant_id,
                username = %role.username,
                sessions = report.sessions_terminated,
                "revoked"
            );
        }
        Marked::Done(result)
    }

    /// Steps 2–7 once the mark committed: as the pipeline did them, or on from where
    /// it stopped.
    async fn finish_marked(
        &self,
        r: &Revocation<'_>,
        role: &LedgerRole,
        sent: Sent,
    ) -> Result<(RevocationReport, bool), ProvisionError> {
        let (conn, facts) = (r.conn, r.facts);
        let username = role.username.as_str();
        let here = self.connector.database();
        let mut report = RevocationReport::for_role(r.grant_id, username);
        report.login_disabled = true;
        let ended = sent.ended.map(|r| r.map_err(db("ending sessions")));
        if let Some(Ok(row)) = &ended {
            report.sessions_terminated = row.get(1);
        }
        if let Some(d) = sent.dropped {
            if d.committed() {
                report.role_dropped = true;
                // Dropping the role ended every membership it had.
                report.memberships_removed.clone_from(&role.member_of);
                if let Ok(row) = d.counts {
                    let (owned, privileges, anywhere): (i64, i64, i64) =
                        (row.get(1), row.get(2), row.get(3));
                    // Referenced only from here (else the drop failed): cleaned here.
                    if anywhere > 0 {
                        report.databases.push(DatabaseCleanup {
                            database: here.to_owned(),
                            objects_dropped: owned,
                            objects_reassigned: 0,
                            privileges_revoked: privileges,
                            public_grants_revoked: Vec::new(),
                            security_definer_functions: Vec::new(),
                        });
                    }
                }
                verified(
                    username,
                    &d.verified.map_err(db("verifying the revocation"))?,
                )?;
                // Not released (the connection broke): the caller closes it.
                let released = d.released.is_ok_and(|m| first_value(&m) == Some("t"));
                return Ok((report, released));
            }
            conn.batch_execute("ROLLBACK")
                .await
                .map_err(db("ending the clean-up's transaction"))?;
            // Waiting again step by step would only double the wait: say who holds it.
            if d.drop.as_ref().is_err_and(lock_timed_out) {
                return Err(self.cleanup_waiting(conn, here, username).await);
            }
        }
        if let Some(e) = sent.stopped {
            return Err(e);
        }
        if let Some(Err(e)) = ended {
            return Err(e);
        }
        if let Some(Ok(())) = sent.revoked {
            report.memberships_removed.clone_from(&role.member_of);
        } else {
            tracing::debug!(username, "removing memberships again, one by one");
            report.memberships_removed =
                remove_memberships(conn, username, &BTreeSet::new()).await?;
        }
        // Sessions still there (on 13, signalled sessions still exiting): until none.
        let again = terminate_sessions(conn, username, facts.version_num).await?;
        report.sessions_terminated =
            sessions_ended(facts.version_num, report.sessions_terminated, again);
        self.clean_and_drop(conn, &mut report, username, role.oid, facts)
            .await?;
        Ok((report, false))
    }
}
