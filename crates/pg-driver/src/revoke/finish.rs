//! Steps 2–7 of an ephemeral role's revocation one at a time, where the pipeline
//! ([`super::pipeline`]) stopped: sessions ended, memberships removed, what the role
//! owns dropped (or handed over) in each database, the role dropped and its absence
//! verified.

use std::collections::BTreeSet;
use std::time::Duration;

use pgwarden_core::naming::{MARKER_ROLE, UNTAGGED_ROLE};

use super::RevocationReport;
use crate::error::{ProvisionError, db, describe_db_error, transient};
use crate::provision::{ConnectorFacts, Provisioner, Step};
use crate::retry::with_retry;
use crate::sql::{CachedQuery, Ident};

/// Ends a role's sessions, waiting up to 5 s for each to exit (the timeout argument
/// exists from PostgreSQL 14; [`SESSIONS_SQL_13`] polls instead): the sessions found
/// and those ended. Sessions are matched by the role's oid, never by `usename`, which
/// reads NULL once the role is dropped; and read from `pg_stat_get_activity`, not the
/// `pg_stat_activity` view, whose join to `pg_authid` (for `usename`) costs about a
/// millisecond at 10,000 roles.
const SESSIONS_SQL: &str = "
SELECT pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(pid, 5000))
FROM pg_catalog.pg_stat_get_activity(NULL)
WHERE usesysid = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1) AND pid <> pg_catalog.pg_backend_pid()";

/// [`SESSIONS_SQL`] for PostgreSQL 13: signal only; the caller's loop waits.
const SESSIONS_SQL_13: &str = "
SELECT pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(pid))
FROM pg_catalog.pg_stat_get_activity(NULL)
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

/// Databases the role owns (`DROP OWNED` never drops a database: they are handed to
/// the successor).
const OWNED_DATABASES_SQL: &str = "SELECT datname::text FROM pg_catalog.pg_database WHERE datdba = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1)";

/// Whether the connector holds the privileges of role `$1` (or it is gone): what
/// `REASSIGN OWNED`/`DROP OWNED` need in createrole mode.
const CAN_ACT_AS_SQL: &str = "SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)
    OR pg_catalog.pg_has_role(current_user, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1), 'USAGE')";

/// Step 7: whether role `$1` exists, and how many sessions remain of it, matched by
/// the oid it had (`$2`) as well as by the name (a role made again under it).
/// Read from `pg_stat_get_activity`, not the `pg_stat_activity` view, whose join to
/// `pg_authid` (for `usename`) cost a millisecond at 10,000 roles.
pub(super) const VERIFY_SQL: &str = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1),
    (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_get_activity(NULL) a
     WHERE a.usesysid OPERATOR(pg_catalog.=) $2
        OR a.usesysid OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1))";

impl Provisioner {
    /// Steps 4–7 one at a time, in rounds: what the pipelined end leaves to it (other
    /// databases, owned databases, a successor, sessions that would not end, a
    /// clean-up that failed).
    pub(super) async fn clean_and_drop(
        &self,
        conn: &deadpool_postgres::Object,
        report: &mut RevocationReport,
        username: &str,
        role_oid: u32,
        facts: &ConnectorFacts,
    ) -> Result<(), ProvisionError> {
        let u = Ident(username);

        if facts.createrole_mode {
            // Access has ended by now; what is left needs the connector to act as the
            // role (REASSIGN/DROP OWNED require its privileges).
            act_as(conn, facts, username).await?;
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
                .query_cached(OWNED_DATABASES_SQL, &[&username])
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
        verify_gone(conn, username, Some(role_oid)).await
    }
}

/// Step 2: end sessions until none remain (bounded).
pub(crate) async fn terminate_sessions(
    conn: &deadpool_postgres::ClientWrapper,
    username: &str,
    version_num: i32,
) -> Result<i64, ProvisionError> {
    let mut ended = 0;
    for _ in 0..50 {
        let row = conn
            .query_one_cached(sessions_sql(version_num), &[&username])
            .await
            .map_err(db("ending sessions"))?;
        ended = sessions_ended(version_num, ended, row.get(1));
        if sessions_left(&row, version_num) == 0 {
            return Ok(ended);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(ProvisionError::RevocationIncomplete {
        username: username.to_owned(),
        reason: "sessions keep running (a superuser's session cannot be ended by a non-superuser connector)".into(),
    })
}

/// Sessions ended so far, `so_far`, and `n` more reported ended by a later pass of
/// [`sessions_sql`]: from 14 those have exited, so they add up; on 13 a session is
/// signalled again on each pass until it exits, so it is counted once.
pub(super) fn sessions_ended(version_num: i32, so_far: i64, n: i64) -> i64 {
    if version_num >= 140_000 {
        so_far + n
    } else {
        so_far.max(n)
    }
}

/// The statement that ends a role's sessions on this server version.
pub(super) fn sessions_sql(version_num: i32) -> &'static str {
    if version_num >= 140_000 {
        SESSIONS_SQL
    } else {
        SESSIONS_SQL_13
    }
}

/// Sessions possibly still running after a [`sessions_sql`] row: from PostgreSQL 14 a
/// session reported terminated has exited; on 13 it was only signalled, so every
/// session found counts until a later look finds none.
fn sessions_left(row: &tokio_postgres::Row, version_num: i32) -> i64 {
    let (found, terminated): (i64, i64) = (row.get(0), row.get(1));
    if version_num >= 140_000 {
        found - terminated
    } else {
        found
    }
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
        .query_one(CAN_ACT_AS_SQL, &[&username])
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

/// `REVOKE <group> FROM <username>` for each of `groups`, as one batch.
pub(super) fn revoke_memberships_sql(groups: &[String], username: &str) -> String {
    groups
        .iter()
        .map(|g| format!("REVOKE {} FROM {}", Ident(g), Ident(username)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Step 3: removes memberships other than the marker, [`UNTAGGED_ROLE`] (which keeps a
/// persistent role findable by its grants' ids) and `keep`.
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
        .filter(|g| !keep.contains(g) && g != UNTAGGED_ROLE)
        .collect();
    if !groups.is_empty() {
        let sql = revoke_memberships_sql(&groups, username);
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
        .query_one_cached(VERIFY_SQL, &[&username, &role_oid])
        .await
        .map_err(db("verifying the revocation"))?;
    verified(username, &row)
}

/// Judges a [`VERIFY_SQL`] row: an error unless the role and its sessions are gone.
pub(super) fn verified(username: &str, row: &tokio_postgres::Row) -> Result<(), ProvisionError> {
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
