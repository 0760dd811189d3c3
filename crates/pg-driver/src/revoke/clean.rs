//! Step 5 in one database: what the role owns there dropped (or handed to the
//! successor, PUBLIC grants revoked first and `SECURITY DEFINER` functions listed),
//! its privileges removed; a wait on another session's lock reported with who holds it.

use std::fmt::Write as _;

use super::{Blocker, DatabaseCleanup};
use crate::error::{ProvisionError, db, transient};
use crate::provision::Provisioner;
use crate::retry::with_retry;
use crate::sql::{CachedQuery, Ident, literal};

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

/// What the role owns (`o`) and otherwise references (privileges, default privileges)
/// in the current database.
const DEPENDENCIES_SQL: &str = "
SELECT pg_catalog.count(*) FILTER (WHERE s.deptype = 'o'), pg_catalog.count(*) FILTER (WHERE s.deptype <> 'o')
FROM pg_catalog.pg_shdepend s
WHERE s.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
  AND s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid
  AND s.refobjid = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1)";

impl Provisioner {
    /// Step 5 in one database (on `admin` when it is the default database, so one
    /// revocation never holds two connections of the same pool).
    pub(super) async fn clean_database(
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
            && lock_timed_out(source)
        {
            return Err(self.cleanup_waiting(conn, database, username).await);
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

    /// The clean-up in `database` gave up waiting for a lock: the error that says so,
    /// naming the sessions holding locks on what it must drop (read on `conn`, in that
    /// database).
    pub(super) async fn cleanup_waiting(
        &self,
        conn: &deadpool_postgres::ClientWrapper,
        database: &str,
        username: &str,
    ) -> ProvisionError {
        let blockers = match conn.query_cached(BLOCKERS_SQL, &[&username]).await {
            Ok(rows) => rows
                .iter()
                .map(|r| Blocker {
                    pid: r.get(0),
                    user: r.get(1),
                    state: r.get(2),
                    application_name: r.get(3),
                    transaction_seconds: r.get(4),
                })
                .collect(),
            Err(e) => {
                return db(format!("finding what the clean-up in {database} waits for"))(e);
            }
        };
        ProvisionError::CleanupWaiting {
            username: username.to_owned(),
            database: database.to_owned(),
            waited: self.config.cleanup_lock_timeout,
            blockers,
        }
    }
}

/// Whether a statement gave up waiting for a lock (`lock_timeout`, SQLSTATE 55P03).
pub(super) fn lock_timed_out(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| d.code().code() == "55P03")
}
