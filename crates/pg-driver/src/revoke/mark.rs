//! Step 1 in two round trips: the revocation's lock, then the grant marked revoking.
//!
//! The first round trip is one pipeline: the `Revoking` session lock (waited for, or
//! tried), `BEGIN` and the grant's `Grant` lock, and the role's ledger row read under
//! it. The second, decided on what was read, sets the role `NOLOGIN`, rewrites its
//! sealed record with the grant revoking and commits. Anything else (the role gone,
//! the grant extended, a hint that named the wrong role) rolls back instead.

use std::fmt::Write as _;
use std::time::Duration;

use futures_util::join;
use pgwarden_core::naming::MARKER_ROLE;
use time::OffsetDateTime;
use tokio_postgres::types::ToSql;

use super::not_expired;
use crate::error::{ProvisionError, db, transient};
use crate::ledger::{GrantState, LEDGER_ROLE_SQL, LedgerRole, RoleMode, ledger_roles};
use crate::lock::{Lock, first_value};
use crate::provision::Provisioner;
use crate::sql::{Ident, literal, timestamp};

/// What marking a grant revoking found.
pub(super) enum Mark {
    /// Marked and committed, with the role as read under the grant's lock: the
    /// revocation goes on.
    Marked(Box<LedgerRole>),
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
    /// Takes the `Revoking` lock on `conn` (a session lock: the caller releases it,
    /// or closes the connection) and marks the grant revoking on role `username`.
    /// Transient catalog conflicts are retried, the lock kept.
    pub(super) async fn lock_and_mark(
        &self,
        conn: &deadpool_postgres::Object,
        grant_id: &str,
        username: &str,
        wait: Wait,
        expired_only: bool,
        hinted: bool,
    ) -> Result<Mark, ProvisionError> {
        let key = &self.config.ledger_key;
        let read = conn
            .prepare_cached(LEDGER_ROLE_SQL)
            .await
            .map_err(db("reading the ledger"))?;
        let revoking = Lock::Revoking { grant_id };
        let open_locked = format!("BEGIN; {}", Lock::Grant { grant_id }.acquire_sql(false));
        let params: [&(dyn ToSql + Sync); 2] = [&MARKER_ROLE, &username];
        let mut locked = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            // One round trip: requests pipelined in this order (futures' join polls
            // its futures in order, and each is sent when first polled).
            let (taken, begun, rows) = join!(
                async {
                    if locked {
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
            locked = taken.map_err(db("locking the revocation"))?;
            begun.map_err(db("locking the grant id"))?;
            let outcome = match rows {
                Err(e) => Err(db("reading the ledger")(e)),
                Ok(_) if !locked => Ok(Mark::InProgress),
                Ok(rows) => match ledger_roles(&rows, key).into_iter().next() {
                    None => Ok(Mark::Gone),
                    Some(role) if hinted && !holds_ephemeral(&role, grant_id) => Ok(Mark::NotHere),
                    Some(role)
                        if expired_only
                            && role.record.as_ref().is_some_and(|r| {
                                not_expired(r, grant_id, OffsetDateTime::now_utc())
                            }) =>
                    {
                        Ok(Mark::Extended)
                    }
                    Some(role) => conn
                        .batch_execute(&mark_sql(key, &role, grant_id))
                        .await
                        .map(|()| Mark::Marked(Box::new(role)))
                        .map_err(db("disabling login")),
                },
            };
            match outcome {
                Ok(Mark::Marked(role)) => return Ok(Mark::Marked(role)),
                Ok(other) => {
                    conn.batch_execute("ROLLBACK")
                        .await
                        .map_err(db("ending the revocation's transaction"))?;
                    return Ok(other);
                }
                Err(e) => {
                    conn.batch_execute("ROLLBACK")
                        .await
                        .map_err(db("ending the revocation's transaction"))?;
                    if attempt < crate::retry::MAX_ATTEMPTS && transient(&e) {
                        tokio::time::sleep(Duration::from_millis(10 << attempt.min(6))).await;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }
}

/// Whether `role`'s record holds `grant_id` as an ephemeral grant.
fn holds_ephemeral(role: &LedgerRole, grant_id: &str) -> bool {
    role.record.as_ref().is_some_and(|r| {
        r.mode == RoleMode::Ephemeral && r.grants.iter().any(|g| g.grant_id == grant_id)
    })
}

/// `NOLOGIN`, `VALID UNTIL` a second ago, the record rewritten with the grant
/// revoking (when the role has one), `COMMIT`.
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
