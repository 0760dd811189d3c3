//! Every advisory lock pgwarden takes, in one place.
//!
//! A [`Lock`] names one lock: what it guards, its key, whether it lasts for a session
//! or a transaction. Its key is the first 8 bytes (big-endian) of the SHA-256 of its
//! name (`pgwarden:grant:<id>`, …), so every version and replica of pgwarden that
//! takes a lock of the same name excludes the others. Advisory locks are per
//! database: each lock says where it is taken.
//!
//! | lock | name | scope | taken | database |
//! |---|---|---|---|---|
//! | [`Lock::Sweeper`] | `pgwarden:sweeper:<integration>` | session | tried | the integration's |
//! | [`Lock::Rotation`] | `pgwarden:rotation:role:<role>` | session | waited for | the rotation lock database ([`rotation_lock_database`](crate::rotation_lock_database)) |
//! | [`Lock::Revoking`] | `pgwarden:revoking:<grant id>` | session | waited for, or tried | the connector's default |
//! | [`Lock::Role`] | `pgwarden:role:<login role>` | transaction | waited for | the connector's default |
//! | [`Lock::Grant`] | `pgwarden:grant:<grant id>` | transaction | waited for, or tried | the connector's default |
//! | [`Lock::Privileges`] | `pgwarden:privileges` | transaction | waited for, exclusive or shared | the connector's default |
//! | [`Lock::Migrations`] | `pgwarden:migrations:<schema>` | transaction | waited for | the request store's |
//!
//! # Order
//!
//! Locks are taken in the order of that table, top to bottom: whoever holds one may
//! go on to take those below it, never one above, so no two processes (or tasks)
//! can ever wait for each other. Any of them may be skipped.
//!
//! 1. **Sweeper**, held while the process is the sweeper; everything the sweeper does
//!    (revocations, reconciliation, rotation) runs under it.
//! 2. **Rotation**, held for a whole credential rotation, which takes no other lock.
//! 3. **Revoking**, held for a whole revocation of an ephemeral grant, whose first
//!    step takes the grant's **Grant** lock. A batch of expiries tries the Revoking
//!    locks of all its grants, then, in one transaction, their Grant locks.
//! 4. **Role**, held by the transaction that grants to or revokes from a persistent
//!    login role, or removes a membership of a login role; a grant then takes the
//!    grant's **Grant** lock.
//! 5. **Grant**, held by the transaction that makes, extends or marks a grant
//!    revoking; making it then takes **Privileges**, shared.
//! 6. **Privileges**, last: exclusive while a privilege role (or the marker) is
//!    created, re-granted, retired or dropped, or the ledger adopted, holding no other
//!    lock (but the sweeper's); shared while a login role is made a member of
//!    privilege roles.
//! 7. **Migrations**, held by the transaction that migrates the request store's
//!    schema at start-up, which takes no other lock.
//!
//! A revocation that finds no grant first waits for one in flight by taking its Grant
//! lock on its own, and lets go of it before taking the Revoking lock. Several locks
//! of one kind are only ever *tried* together (a batch), never waited for, so their
//! order among themselves does not matter.

use std::collections::HashSet;

use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;

use crate::error::{ProvisionError, db};
use crate::sql::CachedQuery;

/// An advisory lock pgwarden takes (see the module documentation for what each
/// guards and the order they are taken in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Lock<'a> {
    /// One sweeper per integration, across every process running it: held by the
    /// sweeper's own session for as long as it sweeps, taken with
    /// [`try_acquire`](Lock::try_acquire) by the others, in the integration's default
    /// database.
    Sweeper {
        /// The integration's name.
        integration: &'a str,
    },
    /// One rotation of a connector role's password at a time, across every process
    /// and integration logging in as that role: a session lock, in the database
    /// [`rotation_lock_database`](crate::rotation_lock_database) names.
    Rotation {
        /// The connector role.
        role: &'a str,
    },
    /// One revocation of a grant at a time: a session lock held for the whole
    /// revocation (released with the session if the process dies).
    Revoking {
        /// The grant.
        grant_id: &'a str,
    },
    /// A persistent login role's record: a transaction lock held while a grant or a
    /// revocation rewrites it, or reconcile removes a membership of the role.
    Role {
        /// The login role.
        username: &'a str,
    },
    /// A grant id: a transaction lock held while the grant is made (explicit id or
    /// persistent user), extended or marked revoking, so granting one id twice returns
    /// the first grant and a revocation waits for a grant in flight.
    Grant {
        /// The grant.
        grant_id: &'a str,
    },
    /// Privilege roles' lifecycle: exclusive while one is created, re-granted, retired
    /// or dropped; shared while a login role is made a member of some. So a privilege
    /// role is never dropped while a grant adds a member, and never used half-made.
    Privileges,
    /// Migrating one of pgwarden's own schemas (the request store's): a transaction
    /// lock held while pending migrations are applied, so replicas starting at once
    /// apply each migration once.
    Migrations {
        /// The schema migrated.
        schema: &'a str,
    },
}

/// How long a lock lasts once taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockScope {
    /// Until released, or the session ends.
    Session,
    /// Until the transaction it was taken in ends.
    Transaction,
}

impl Lock<'_> {
    /// The lock's name, from which its key is derived.
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            Lock::Sweeper { integration } => format!("pgwarden:sweeper:{integration}"),
            Lock::Rotation { role } => format!("pgwarden:rotation:role:{role}"),
            Lock::Revoking { grant_id } => format!("pgwarden:revoking:{grant_id}"),
            Lock::Role { username } => format!("pgwarden:role:{username}"),
            Lock::Grant { grant_id } => format!("pgwarden:grant:{grant_id}"),
            Lock::Privileges => "pgwarden:privileges".to_owned(),
            Lock::Migrations { schema } => format!("pgwarden:migrations:{schema}"),
        }
    }

    /// The 64-bit advisory-lock key: the first 8 bytes of the SHA-256 of the name.
    #[must_use]
    pub fn key(&self) -> i64 {
        let digest = Sha256::digest(self.name().as_bytes());
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(bytes)
    }

    /// Whether it lasts for the session or the transaction.
    #[must_use]
    pub fn scope(&self) -> LockScope {
        match self {
            Lock::Sweeper { .. } | Lock::Rotation { .. } | Lock::Revoking { .. } => {
                LockScope::Session
            }
            Lock::Role { .. } | Lock::Grant { .. } | Lock::Privileges | Lock::Migrations { .. } => {
                LockScope::Transaction
            }
        }
    }

    /// The server function taking the lock: `pg_[try_]advisory_[xact_]lock[_shared]`.
    fn function(&self, try_only: bool, shared: bool) -> String {
        format!(
            "pg_catalog.pg_{}advisory_{}lock{}",
            if try_only { "try_" } else { "" },
            match self.scope() {
                LockScope::Session => "",
                LockScope::Transaction => "xact_",
            },
            if shared { "_shared" } else { "" }
        )
    }

    /// `SELECT <function>(<key>)`: the key is a number computed here, so it goes
    /// inline over the simple protocol (one round trip, nothing to parse or plan).
    fn statement(&self, try_only: bool, shared: bool) -> String {
        format!("SELECT {}({})", self.function(try_only, shared), self.key())
    }

    /// The statement that takes the lock (exclusive; waiting, or with `try_only` only
    /// trying, when it answers `t` or `f`): for a batch sent as one simple query.
    pub(crate) fn acquire_sql(&self, try_only: bool) -> String {
        self.statement(try_only, false)
    }

    /// The statement that releases a session lock (answers `t` when it was held).
    pub(crate) fn release_sql(&self) -> String {
        format!("SELECT pg_catalog.pg_advisory_unlock({})", self.key())
    }

    /// The statement that waits for the lock, shared: for a transaction sent as one
    /// simple query.
    pub(crate) fn acquire_shared_sql(&self) -> String {
        self.statement(false, true)
    }

    /// Takes the lock, waiting for whoever holds it. A transaction lock must be taken
    /// inside a transaction (it ends with it).
    pub async fn acquire<C: GenericClient>(&self, client: &C) -> Result<(), tokio_postgres::Error> {
        client.batch_execute(&self.statement(false, false)).await
    }

    /// Takes the lock in shared mode, waiting for an exclusive holder.
    pub async fn acquire_shared<C: GenericClient>(
        &self,
        client: &C,
    ) -> Result<(), tokio_postgres::Error> {
        client.batch_execute(&self.statement(false, true)).await
    }

    /// Takes the lock if nobody holds it: whether it was taken.
    pub async fn try_acquire<C: GenericClient>(
        &self,
        client: &C,
    ) -> Result<bool, tokio_postgres::Error> {
        let messages = client.simple_query(&self.statement(true, false)).await?;
        Ok(first_value(&messages) == Some("t"))
    }

    /// Releases a session lock this session holds: whether it was held. (A
    /// transaction lock ends with its transaction.)
    pub async fn release<C: GenericClient>(
        &self,
        client: &C,
    ) -> Result<bool, tokio_postgres::Error> {
        let messages = client.simple_query(&self.release_sql()).await?;
        Ok(first_value(&messages) == Some("t"))
    }

    /// A transaction on `conn` holding this transaction-scoped lock, taken first
    /// (waiting); it ends with the transaction. `action` says what failed, if anything.
    pub(crate) async fn transaction<'c>(
        &self,
        conn: &'c mut deadpool_postgres::Object,
        action: &str,
    ) -> Result<deadpool_postgres::Transaction<'c>, ProvisionError> {
        debug_assert_eq!(self.scope(), LockScope::Transaction);
        let tx = conn.transaction().await.map_err(db(action))?;
        self.acquire(&*tx).await.map_err(db(action))?;
        Ok(tx)
    }

    /// Tries every lock of `locks` (all of one scope) in one round trip: for each,
    /// whether it was taken.
    pub(crate) async fn try_acquire_all<C: CachedQuery>(
        client: &C,
        locks: &[Lock<'_>],
    ) -> Result<Vec<bool>, tokio_postgres::Error> {
        let Some(first) = locks.first() else {
            return Ok(Vec::new());
        };
        debug_assert!(locks.iter().all(|l| l.scope() == first.scope()));
        let sql = match first.scope() {
            LockScope::Session => TRY_SESSION_LOCKS_SQL,
            LockScope::Transaction => TRY_XACT_LOCKS_SQL,
        };
        let keys: Vec<i64> = locks.iter().map(Lock::key).collect();
        let taken: HashSet<i64> = client
            .query_cached(sql, &[&keys])
            .await?
            .iter()
            .filter(|r| r.get::<_, bool>(1))
            .map(|r| r.get(0))
            .collect();
        Ok(keys.iter().map(|k| taken.contains(k)).collect())
    }

    /// Releases the session locks `locks`, in one round trip.
    pub(crate) async fn release_all<C: CachedQuery>(
        client: &C,
        locks: &[Lock<'_>],
    ) -> Result<(), tokio_postgres::Error> {
        let keys: Vec<i64> = locks.iter().map(Lock::key).collect();
        client.query_one_cached(UNLOCK_SQL, &[&keys]).await?;
        Ok(())
    }
}

/// Tries the session advisory locks `$1`: each key with whether it was taken.
const TRY_SESSION_LOCKS_SQL: &str = "
SELECT k, pg_catalog.pg_try_advisory_lock(k) FROM pg_catalog.unnest($1::pg_catalog.int8[]) AS k";

/// [`TRY_SESSION_LOCKS_SQL`] for transaction-level locks.
const TRY_XACT_LOCKS_SQL: &str = "
SELECT k, pg_catalog.pg_try_advisory_xact_lock(k) FROM pg_catalog.unnest($1::pg_catalog.int8[]) AS k";

/// Releases the session advisory locks `$1`.
const UNLOCK_SQL: &str = "
SELECT pg_catalog.count(*) FILTER (WHERE pg_catalog.pg_advisory_unlock(k))
FROM pg_catalog.unnest($1::pg_catalog.int8[]) AS k";

/// The first column of the first row of a simple-protocol result.
pub(crate) fn first_value(messages: &[tokio_postgres::SimpleQueryMessage]) -> Option<&str> {
    messages.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_those_every_version_derives() {
        // The first 8 bytes of SHA-256 of the name, big-endian: what every release
        // computes, so replicas of different versions still exclude each other.
        assert_eq!(Lock::Privileges.key(), -2_464_572_981_100_958_776);
        assert_eq!(
            Lock::Grant { grant_id: "a" }.key(),
            -8_832_835_746_318_920_907
        );
        assert_eq!(
            Lock::Sweeper { integration: "app" }.key(),
            349_601_900_382_981_408
        );
        assert_ne!(
            Lock::Grant { grant_id: "a" }.key(),
            Lock::Revoking { grant_id: "a" }.key()
        );
    }

    #[test]
    fn names_are_unchanged() {
        assert_eq!(
            Lock::Sweeper { integration: "app" }.name(),
            "pgwarden:sweeper:app"
        );
        assert_eq!(
            Lock::Rotation { role: "pgw" }.name(),
            "pgwarden:rotation:role:pgw"
        );
        assert_eq!(
            Lock::Revoking { grant_id: "g" }.name(),
            "pgwarden:revoking:g"
        );
        assert_eq!(Lock::Role { username: "u" }.name(), "pgwarden:role:u");
        assert_eq!(Lock::Grant { grant_id: "g" }.name(), "pgwarden:grant:g");
        assert_eq!(Lock::Privileges.name(), "pgwarden:privileges");
        assert_eq!(
            Lock::Migrations { schema: "s" }.name(),
            "pgwarden:migrations:s"
        );
        assert_eq!(
            Lock::Migrations { schema: "s" }.scope(),
            LockScope::Transaction
        );
    }

    #[test]
    fn statements_fit_the_scope() {
        let k = Lock::Privileges.key();
        assert_eq!(
            Lock::Privileges.acquire_shared_sql(),
            format!("SELECT pg_catalog.pg_advisory_xact_lock_shared({k})")
        );
        assert_eq!(
            Lock::Grant { grant_id: "g" }.statement(true, false),
            format!(
                "SELECT pg_catalog.pg_try_advisory_xact_lock({})",
                Lock::Grant { grant_id: "g" }.key()
            )
        );
        assert_eq!(
            Lock::Revoking { grant_id: "g" }.statement(false, false),
            format!(
                "SELECT pg_catalog.pg_advisory_lock({})",
                Lock::Revoking { grant_id: "g" }.key()
            )
        );
    }
}
