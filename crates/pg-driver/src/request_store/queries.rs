//! The request store's SQL, and how its failures become [`StoreError`]s.
//!
//! Every statement names its tables with their schema and its functions and
//! operators with `pg_catalog`, and gives each parameter its exact type, so nothing a
//! user plants in `public` can run, even with a `search_path` that includes it. Values
//! travel as bind parameters only.

use std::error::Error as _;

use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Json;

use crate::core::requests::{RequestState, StoreError, StoredRequest};
use crate::error::describe_db_error;

/// The catalog queries of the migration runner.
pub(crate) mod schema_sql {
    /// For schema `$1`: whether the current user owns it, its owner, the current user.
    pub(crate) const OWNER: &str = "
SELECT n.nspowner OPERATOR(pg_catalog.=) r.oid,
       pg_catalog.pg_get_userbyid(n.nspowner)::pg_catalog.text,
       r.rolname::pg_catalog.text
FROM pg_catalog.pg_namespace AS n, pg_catalog.pg_roles AS r
WHERE n.nspname OPERATOR(pg_catalog.=) $1::pg_catalog.text::pg_catalog.name
  AND r.rolname OPERATOR(pg_catalog.=) CURRENT_USER";

    /// The relations in schema `$1` the current user does not own, with their owners.
    pub(crate) const FOREIGN_RELATIONS: &str = "
SELECT c.relname::pg_catalog.text, pg_catalog.pg_get_userbyid(c.relowner)::pg_catalog.text
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
JOIN pg_catalog.pg_roles AS r ON r.rolname OPERATOR(pg_catalog.=) CURRENT_USER
WHERE n.nspname OPERATOR(pg_catalog.=) $1::pg_catalog.text::pg_catalog.name
  AND c.relowner OPERATOR(pg_catalog.<>) r.oid
ORDER BY 1";
}

/// Inserts `$1` id … `$8` record unless the id exists: one row if inserted.
pub(crate) const INSERT: &str = "
INSERT INTO pgwarden_requests.requests
    (id, integration, requester, state, created_at, updated_at, version, record)
VALUES ($1::pg_catalog.text, $2::pg_catalog.text, $3::pg_catalog.text, $4::pg_catalog.text,
        $5::pg_catalog.timestamptz, $6::pg_catalog.timestamptz, $7::pg_catalog.int8,
        $8::pg_catalog.jsonb)
ON CONFLICT (id) DO NOTHING
RETURNING version";

/// The record and version of request `$1`.
pub(crate) const GET: &str = "
SELECT record, version FROM pgwarden_requests.requests
WHERE id OPERATOR(pg_catalog.=) $1::pg_catalog.text";

/// Rewrites request `$1` if its version is `$2` and its state one of `$3`: `$4` state,
/// `$5` integration, `$6` requester, `$7` `updated_at`, `$8` record; the version
/// becomes one more. One row if written.
pub(crate) const UPDATE: &str = "
UPDATE pgwarden_requests.requests
SET state = $4::pg_catalog.text,
    integration = $5::pg_catalog.text,
    requester = $6::pg_catalog.text,
    updated_at = $7::pg_catalog.timestamptz,
    record = $8::pg_catalog.jsonb,
    version = version OPERATOR(pg_catalog.+) 1::pg_catalog.int8
WHERE id OPERATOR(pg_catalog.=) $1::pg_catalog.text
  AND version OPERATOR(pg_catalog.=) $2::pg_catalog.int8
  AND state OPERATOR(pg_catalog.=) ANY ($3::pg_catalog.text[])
RETURNING version";

/// The requests matching `$1` integration, `$2` states, `$3` requester (each `NULL`
/// for any), newest first, at most `$4` (`NULL`: all).
pub(crate) const LIST: &str = "
SELECT record, version FROM pgwarden_requests.requests
WHERE ($1::pg_catalog.text IS NULL OR integration OPERATOR(pg_catalog.=) $1::pg_catalog.text)
  AND ($2::pg_catalog.text[] IS NULL
       OR state OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[]))
  AND ($3::pg_catalog.text IS NULL OR requester OPERATOR(pg_catalog.=) $3::pg_catalog.text)
ORDER BY created_at DESC, id COLLATE pg_catalog.\"C\" DESC
LIMIT $4::pg_catalog.int8";

/// The stored version as the column holds it.
pub(crate) fn version_param(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version)
        .map_err(|_| StoreError::Invalid(format!("version {version} is out of range")))
}

/// The record `(record, version)` of a row.
pub(crate) fn request_of(row: &Row) -> Result<StoredRequest, StoreError> {
    let Json(mut request): Json<StoredRequest> = row.try_get(0).map_err(|e| {
        StoreError::Failed(format!(
            "a stored access request cannot be read ({e}): was it written by a newer pgwarden?"
        ))
    })?;
    let version: i64 = row.get(1);
    request.version = u64::try_from(version).unwrap_or_default();
    Ok(request)
}

/// The states an update to `to` may start from: `to` itself and every state that may
/// move to it.
pub(crate) fn states_leading_to(to: RequestState) -> Vec<&'static str> {
    RequestState::ALL
        .into_iter()
        .filter(|from| *from == to || from.can_move_to(to))
        .map(RequestState::as_str)
        .collect()
}

/// A statement's failure while `action`: [`StoreError::Unavailable`] when the
/// connection or the server is at fault for now, [`StoreError::Failed`] otherwise.
pub(crate) fn db_error(action: &str, e: &tokio_postgres::Error) -> StoreError {
    let message = format!("{action}: {}", describe_db_error(e));
    let transient = match e.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08")
                || code.starts_with("57P")
                || code == SqlState::TOO_MANY_CONNECTIONS.code()
                || code == SqlState::T_R_SERIALIZATION_FAILURE.code()
                || code == SqlState::T_R_DEADLOCK_DETECTED.code()
                || code == SqlState::QUERY_CANCELED.code()
                || code == SqlState::LOCK_NOT_AVAILABLE.code()
        }
        None => {
            e.is_closed()
                || e.source()
                    .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some())
        }
    };
    if transient {
        StoreError::Unavailable(message)
    } else {
        StoreError::Failed(message)
    }
}

/// Getting a pooled connection failed.
pub(crate) fn pool_error(e: &crate::pool::PoolError) -> StoreError {
    use crate::error::ConnectError;
    use crate::pool::PoolError;
    let message = format!("connecting to the request store: {e}");
    match e {
        PoolError::Timeout(_) | PoolError::Connect(ConnectError::Network { .. }) => {
            StoreError::Unavailable(message)
        }
        PoolError::Connect(ConnectError::Server { code, .. })
            if code.starts_with("57P") || code.starts_with("08") || code == "53300" =>
        {
            StoreError::Unavailable(message)
        }
        _ => StoreError::Failed(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_start_from_the_state_itself_or_one_leading_to_it() {
        assert_eq!(states_leading_to(RequestState::Pending), ["pending"]);
        assert_eq!(
            states_leading_to(RequestState::Granted),
            ["pending", "approved", "granted"]
        );
        assert_eq!(
            states_leading_to(RequestState::Revoked),
            ["granted", "revoking", "revoked"]
        );
    }

    #[test]
    fn statements_qualify_every_operator_and_table() {
        for sql in [
            INSERT,
            GET,
            UPDATE,
            LIST,
            schema_sql::OWNER,
            schema_sql::FOREIGN_RELATIONS,
        ] {
            for bare in [" <> ", " + ", " IN ", "public."] {
                assert!(!sql.contains(bare), "{bare} in {sql}");
            }
            // `=` in SET is an assignment; in conditions it is an operator.
            let conditions = sql.split_once("WHERE").map_or("", |(_, c)| c);
            assert!(!conditions.contains(" = "), "bare = in {sql}");
            assert!(!sql.contains(" ON n.oid = "), "bare = in {sql}");
        }
    }
}
