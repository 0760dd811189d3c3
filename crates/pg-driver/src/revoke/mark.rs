//! Step 1: the grant found under its locks, and what marks it revoking.
//!
//! A grant is found in one of two ways, both one pipeline that takes the
//! `Revoking` session lock, then `BEGIN` and the grant's `Grant` lock:
//!
//! - **read** ([`Provisioner::lock_and_read`]): the role's ledger row is read under
//!   the lock, and the mark is decided on what was read (the role gone, the grant
//!   extended, a hint that named the wrong role: the transaction rolls back instead);
//! - **confirmed** ([`KNOWN_SQL`]): for a grant this process last saw as an ephemeral
//!   grant (it made, extended or listed it), a statement that fails unless the role
//!   still has the oid, the sealed comment and the memberships seen then. The mark
//!   and the rest of the revocation are sent behind it in the same pipeline: if it
//!   fails, the transaction is aborted and none of them runs; the revocation then
//!   reads the role as above.
//!
//! The mark itself ([`mark_sql`]) sets the role `NOLOGIN`, rewrites its sealed record
//! with the grant revoking and commits.

use std::fmt::Write as _;

use futures_util::join;
use pgwarden_core::naming::{MARKER_ROLE, UNTAGGED_ROLE};
use time::OffsetDateTime;
use tokio_postgres::types::ToSql;

use super::extended;
use super::pipeline::{Marked, Revocation};
use crate::error::{ProvisionError, db, lost};
use crate::ledger::{
    GrantState, INDEX_SCANS_IN_TRANSACTION, LEDGER_ROLE_SQL, LedgerRole, RoleMode, ledger_roles,
};
use crate::lock::{Lock, first_value};
use crate::provision::Provisioner;
use crate::sql::{Ident, literal, timestamp};

/// Fails (division by zero, SQLSTATE 22012) unless role `$3` still has oid `$4`, the
/// comment `$5` (byte for byte: the sealed record seen), is a member of the marker
/// `$1`, and its other memberships, but for the marker and [`UNTAGGED_ROLE`] (`$2`),
/// are exactly `$6` (sorted by bytes, no repeats). One row otherwise.
pub(super) const KNOWN_SQL: &str = "
SELECT 1 OPERATOR(pg_catalog./) pg_catalog.count(*)::pg_catalog.int4
FROM pg_catalog.pg_roles r
JOIN pg_catalog.pg_shdescription d
  ON d.objoid OPERATOR(pg_catalog.=) r.oid
 AND d.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid
WHERE r.rolname OPERATOR(pg_catalog.=) $3::pg_catalog.text
  AND r.oid OPERATOR(pg_catalog.=) $4::pg_catalog.oid
  AND d.description OPERATOR(pg_catalog.=) $5::pg_catalog.text
  AND EXISTS (SELECT FROM pg_catalog.pg_auth_members m
              WHERE m.member OPERATOR(pg_catalog.=) r.oid AND NOT m.admin_option
                AND m.roleid OPERATOR(pg_catalog.=) pg_catalog.to_regrole(pg_catalog.quote_ident($1::pg_catalog.text))::pg_catalog.oid)
  AND ARRAY(SELECT DISTINCT pg_catalog.pg_get_userbyid(m2.roleid)::pg_catalog.text COLLATE pg_catalog.\"C\"
            FROM pg_catalog.pg_auth_members m2
            WHERE m2.member OPERATOR(pg_catalog.=) r.oid
              AND pg_catalog.pg_get_userbyid(m2.roleid)::pg_catalog.text
                  OPERATOR(pg_catalog.<>) ALL (ARRAY[$1::pg_catalog.text, $2::pg_catalog.text])
            ORDER BY 1) OPERATOR(pg_catalog.=) $6::pg_catalog.text[]";

/// What reading the grant's role under its lock found.
pub(super) enum Mark {
    /// The grant is to be marked: the role as read, in the transaction still open
    /// (holding the grant's lock).
    Found(Box<LedgerRole>),
    /// Another revocation of the grant holds its lock (only when not waiting).
    InProgress,
    /// The role no longer exists.
    Gone,
    /// The grant was extended after it was found expired.
    Extended,
    /// The role was named by a hint, and its record does not hold the grant as an
    /// ephemeral grant: the caller looks the grant up instead.
    NotHere,
}

/// How the revocation's lock is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    /// Wait for another revocation of the grant to finish.
    Wait,
    /// Report [`Mark::InProgress`] instead of waiting.
    Try,
}

impl Provisioner {
    /// Takes the `Revoking` lock on `conn` unless `locked` says it is held (a session
    /// lock: the caller releases it, or closes the connection), then `BEGIN`, the
    /// grant's lock, and reads role `username`, in one round trip. Only
    /// [`Mark::Found`] leaves the transaction open.
    #[allow(
        clippy::too_many_arguments,
        reason = "the revocation's flags, passed down as they are"
    )]
    pub(super) async fn lock_and_read(
        &self,
        conn: &deadpool_postgres::Object,
        grant_id: &str,
        username: &str,
        wait: Wait,
        expired_only: bool,
        hinted: bool,
        locked: &mut bool,
    ) -> Result<Mark, ProvisionError> {
        let key = &self.config.ledger_key;
        let read = conn
            .prepare_cached(LEDGER_ROLE_SQL)
            .await
            .map_err(db("reading the ledger"))?;
        let revoking = Lock::Revoking { grant_id };
        // The read's one cached plan uses indexes whatever the statistics said when it
        // was made (see INDEX_SCANS); the setting ends with the transaction.
        let open_locked = format!(
            "BEGIN; {INDEX_SCANS_IN_TRANSACTION}; {}",
            Lock::Grant { grant_id }.acquire_sql(false)
        );
        let params: [&(dyn ToSql + Sync); 2] = [&MARKER_ROLE, &username];
        // One round trip: requests pipelined in this order (futures' join polls
        // its futures in order, and each is sent when first polled).
        let (taken, begun, rows) = join!(
            async {
                if *locked {
                    return Ok(true);
                }
                let m = conn
                    .simple_query(&revoking.acquire_sql(wait == Wait::Try))
                    .await?;
                Ok::<_, tokio_postgres::Error>(first_value(&m) != Some("f"))
            },
            conn.batch_execute(&open_locked),
            conn.query(&read, &params),
        );
        let outcome = match taken {
            Err(e) => Err(db("locking the revocation")(e)),
            Ok(taken) => {
                *locked = taken;
                begun.map_err(db("locking the grant id"))
            }
        };
        let outcome = match outcome {
            Err(e) => Err(e),
            Ok(()) => match rows {
                Err(e) => Err(db("reading the ledger")(e)),
                Ok(_) if !*locked => Ok(Mark::InProgress),
                Ok(rows) => Ok(match ledger_roles(&rows, key).into_iter().next() {
                    None => Mark::Gone,
                    Some(role) if hinted && !holds_ephemeral(&role, grant_id) => Mark::NotHere,
                    Some(role) if expired_only && extended(&role, grant_id) => Mark::Extended,
                    Some(role) => return Ok(Mark::Found(Box::new(role))),
                }),
            },
        };
        conn.batch_execute("ROLLBACK")
            .await
            .map_err(db("ending the revocation's transaction"))?;
        outcome
    }

    /// The revocation of a grant found by [`Self::lock_and_read`] (its transaction
    /// open): the mark, then the rest ([`Self::send_rest`]), in one round trip.
    pub(super) async fn mark_found(&self, r: &Revocation<'_>, role: &LedgerRole) -> Marked {
        let mark = mark_sql(&self.config.ledger_key, role, r.grant_id);
        // Boxed, as below: the pipeline's many requests make a large future.
        let sent = Box::pin(self.send_rest(r, role, &mark)).await;
        self.judge_marked(r, role, sent).await
    }

    /// The revocation of a grant as this process last saw its role (`role`, built
    /// from what it saw): the `Revoking` lock (waited for), `BEGIN`, the grant's
    /// lock, [`KNOWN_SQL`], the mark and the rest, in one round trip. Also returns
    /// whether the `Revoking` lock is held. [`Marked::Stale`] (rolled back) when the
    /// role is no longer as seen.
    pub(super) async fn mark_known(&self, r: &Revocation<'_>, role: &LedgerRole) -> (bool, Marked) {
        let Some(comment) = role.comment.as_deref() else {
            return (false, Marked::Stale);
        };
        let (conn, grant_id) = (r.conn, r.grant_id);
        let mark = mark_sql(&self.config.ledger_key, role, grant_id);
        // The session lock after BEGIN: should it fail, the transaction is aborted and
        // nothing behind it runs. (A session lock outlives the transaction.) KNOWN_SQL's
        // cached plan uses indexes, as the read's does.
        let open_locked = format!(
            "BEGIN; {INDEX_SCANS_IN_TRANSACTION}; {}",
            r.lock.acquire_sql(false)
        );
        let grant_locked = Lock::Grant { grant_id }.acquire_sql(false);
        let params: [&(dyn ToSql + Sync); 6] = [
            &MARKER_ROLE,
            &UNTAGGED_ROLE,
            &role.username,
            &role.oid,
            &comment,
            &role.member_of,
        ];
        // One round trip, sent in this order (see `lock_and_read`).
        let (taken, begun, confirmed, sent) = join!(
            conn.batch_execute(&open_locked),
            conn.batch_execute(&grant_locked),
            conn.query_one(&r.statements.known, &params),
            Box::pin(self.send_rest(r, role, &mark)),
        );
        let locked = taken.is_ok();
        if sent.marked.is_ok() {
            return (locked, self.judge_marked(r, role, sent).await);
        }
        let failed = [taken.err(), begun.err(), confirmed.err()]
            .into_iter()
            .flatten()
            .map(|e| db("confirming the grant's role")(e))
            .find(lost);
        if let Some(e) = failed {
            return (false, Marked::Not(e));
        }
        match conn.batch_execute("ROLLBACK").await {
            Ok(()) => (locked, Marked::Stale),
            Err(e) => (
                false,
                Marked::Not(db("ending the revocation's transaction")(e)),
            ),
        }
    }
}

/// Whether `role`'s record holds `grant_id` as an ephemeral grant.
pub(super) fn holds_ephemeral(role: &LedgerRole, grant_id: &str) -> bool {
    role.record.as_ref().is_some_and(|r| {
        r.mode == RoleMode::Ephemeral && r.grants.iter().any(|g| g.grant_id == grant_id)
    })
}

/// `NOLOGIN`, `VALID UNTIL` a second ago, the record rewritten with the grant
/// revoking (when the role has one), `COMMIT`: one message, so that if any of it
/// fails the rest of it (the `COMMIT` included) does not run.
fn mark_sql(key: &crate::seal::LedgerKey, role: &LedgerRole, grant_id: &str) -> String {
    let mut sql = format!(
        "ALTER ROLE {} NOLOGIN VALID UNTIL {}",
        Ident(&role.username),
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
        let _ = write!(
            sql,
            "; {}",
            record.comment_on(key, role.oid, &role.username)
        );
    }
    sql.push_str("; COMMIT");
    sql
}
