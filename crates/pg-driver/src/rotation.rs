//! The statements of a connector password rotation: where its lock is taken, and
//! setting the new password. The protocol around them (staging in the secret store,
//! verifying, promoting) belongs to the host; the lock is [`Lock::Rotation`].
//!
//! [`Lock::Rotation`]: crate::Lock::Rotation

use tokio_postgres::GenericClient;

use crate::scram::Verifier;
use crate::sql::literal;

/// The database of the rotation lock: the connectable, non-template database with the
/// lowest oid the connector may connect to; also the connector's role name and the
/// database this session is in.
const LOCK_DATABASE_SQL: &str = "SELECT d.datname::pg_catalog.text, \
       SESSION_USER::pg_catalog.text, \
       pg_catalog.current_database()::pg_catalog.text \
  FROM pg_catalog.pg_database d \
 WHERE d.datallowconn AND NOT d.datistemplate \
   AND pg_catalog.has_database_privilege(d.oid, 'CONNECT'::pg_catalog.text) \
 ORDER BY d.oid \
 LIMIT 1";

/// Where a connector role's rotation lock is taken, as a session sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationLockDatabase {
    /// The database to take the lock in.
    pub database: String,
    /// The connector role (`SESSION_USER`): whose rotation the lock guards.
    pub role: String,
    /// The database the asking session is in (take the lock on it when it is
    /// `database`).
    pub current: String,
}

/// The database every process logging in as this session's role takes that role's
/// rotation lock in: the connectable (`datallowconn`), non-template database with the
/// lowest oid on which the role has CONNECT. Advisory locks are per database, and two
/// integrations on one connector may point at different databases; databases and the
/// role's privileges are instance-wide, so all of them find the same one (normally
/// `postgres`, created by `initdb` before any other). `None`: the role may connect to
/// no database that accepts connections.
pub async fn rotation_lock_database<C: GenericClient>(
    client: &C,
) -> Result<Option<RotationLockDatabase>, tokio_postgres::Error> {
    Ok(client
        .query_opt(LOCK_DATABASE_SQL, &[])
        .await?
        .map(|row| RotationLockDatabase {
            database: row.get(0),
            role: row.get(1),
            current: row.get(2),
        }))
}

/// Sets the session role's password to `verifier` (`ALTER ROLE CURRENT_USER PASSWORD`):
/// the plaintext never reaches the server. With `silence_log` (a superuser session),
/// statement logging (by kind, duration or sampling) is turned off for the session
/// first, in a statement of its own:
/// the server logs a query string when it arrives, so the setting must be in force
/// before the statement carrying the verifier is sent. (Failing to silence it is not an
/// error.)
pub async fn set_connector_password<C: GenericClient>(
    client: &C,
    verifier: &Verifier,
    silence_log: bool,
) -> Result<(), tokio_postgres::Error> {
    if silence_log {
        client
            .batch_execute(&crate::sql::silence_log_sql(false))
            .await
            .ok();
    }
    client
        .batch_execute(&format!(
            "ALTER ROLE CURRENT_USER PASSWORD {}",
            literal(verifier.as_str())
        ))
        .await
}
