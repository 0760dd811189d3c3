//! The request store's schema migrations and the runner that applies them at start-up.
//!
//! Each [`Migration`] is a numbered SQL script embedded in the binary. [`migrate`]
//! applies the pending ones in **one transaction** holding the transaction-scoped
//! advisory lock [`Lock::Migrations`], so replicas starting at the same moment apply
//! each migration once (the second waits, then finds nothing to do). Before applying
//! anything it refuses:
//!
//! - a schema of that name the connector role does not own, or a relation in it owned
//!   by someone else: whoever owns it could read or forge access requests;
//! - a database migrated by a newer pgwarden (a version this build does not know);
//! - an applied migration whose SHA-256 differs from this build's (changed by hand, or
//!   by another build).
//!
//! Every run also revokes everything from PUBLIC on the schema and its tables.

use deadpool_postgres::Object;
use sha2::{Digest, Sha256};
use tokio_postgres::Transaction;

use super::queries::{db_error, schema_sql};
use crate::core::requests::StoreError;
use crate::lock::Lock;
use crate::sql::Ident;

/// The schema the request store owns.
pub(crate) const SCHEMA: &str = "pgwarden_requests";

/// One numbered migration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    /// Its number: applied in increasing order, each once.
    pub(crate) version: i32,
    /// A short name, recorded beside the number.
    pub(crate) name: &'static str,
    /// The script (no transaction control: it runs inside the runner's).
    pub(crate) sql: &'static str,
}

impl Migration {
    /// The SHA-256 of the script, in lowercase hex.
    pub(crate) fn checksum(&self) -> String {
        use std::fmt::Write as _;
        Sha256::digest(self.sql.as_bytes())
            .iter()
            .fold(String::with_capacity(64), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
    }
}

/// Every migration this build knows, in order.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "requests",
    sql: include_str!("migrations/0001_requests.sql"),
}];

/// The newest version [`MIGRATIONS`] knows.
pub(crate) const LATEST: u32 = MIGRATIONS[MIGRATIONS.len() - 1].version.unsigned_abs();

/// Brings the schema in `database` up to `migrations`: the versions applied now
/// (empty when it was current).
pub(crate) async fn migrate(
    conn: &mut Object,
    database: &str,
    migrations: &[Migration],
) -> Result<Vec<u32>, StoreError> {
    let action = |what: &'static str| move |e| db_error(what, &e);
    let tx = conn
        .transaction()
        .await
        .map_err(action("starting the migration transaction"))?;
    tx.batch_execute("SET LOCAL search_path = pg_catalog, pg_temp")
        .await
        .map_err(action("pinning search_path"))?;
    Lock::Migrations { schema: SCHEMA }
        .acquire(&*tx)
        .await
        .map_err(action("taking the migration lock"))?;

    check_or_create_schema(&tx, database).await?;
    tx.batch_execute(&format!(
        "REVOKE ALL ON SCHEMA {schema} FROM PUBLIC;
         CREATE TABLE IF NOT EXISTS {schema}.migrations (
             version pg_catalog.int4 PRIMARY KEY,
             name pg_catalog.text NOT NULL,
             checksum pg_catalog.text NOT NULL,
             applied_at pg_catalog.timestamptz NOT NULL
         )",
        schema = Ident(SCHEMA)
    ))
    .await
    .map_err(action("creating the migrations table"))?;

    let applied = tx
        .query(
            &format!(
                "SELECT version, name, checksum FROM {}.migrations ORDER BY version",
                Ident(SCHEMA)
            ),
            &[],
        )
        .await
        .map_err(action("reading the applied migrations"))?;
    let known_max = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    let mut done = Vec::new();
    for row in &applied {
        let (version, name, checksum): (i32, String, String) = (row.get(0), row.get(1), row.get(2));
        let Some(ours) = migrations.iter().find(|m| m.version == version) else {
            return Err(StoreError::Failed(if version > known_max {
                format!(
                    "database {database} was migrated by a newer pgwarden: its request store schema is at version {version} ({name}), this pgwarden knows versions up to {known_max}; upgrade pgwarden on every replica"
                )
            } else {
                format!(
                    "database {database} has request store migration {version} ({name}), which this pgwarden does not know; it was not applied by pgwarden"
                )
            }));
        };
        let expected = ours.checksum();
        if checksum != expected {
            return Err(StoreError::Failed(format!(
                "request store migration {version} ({name}) in database {database} has checksum {checksum}, but this pgwarden's is {expected}: the schema {SCHEMA} was changed outside pgwarden or by another build; restore it from that build, or drop the schema (losing its requests) to start afresh"
            )));
        }
        done.push(version);
    }

    let mut newly = Vec::new();
    for m in migrations.iter().filter(|m| !done.contains(&m.version)) {
        tx.batch_execute(m.sql).await.map_err(|e| {
            db_error(
                &format!("applying request store migration {}", m.version),
                &e,
            )
        })?;
        tx.execute(
            &format!(
                "INSERT INTO {}.migrations (version, name, checksum, applied_at)
                 VALUES ($1::pg_catalog.int4, $2::pg_catalog.text, $3::pg_catalog.text, pg_catalog.now())",
                Ident(SCHEMA)
            ),
            &[&m.version, &m.name, &m.checksum()],
        )
        .await
        .map_err(action("recording a migration"))?;
        newly.push(u32::try_from(m.version).unwrap_or_default());
    }
    tx.batch_execute(&format!(
        "REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM PUBLIC;
         REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM PUBLIC",
        schema = Ident(SCHEMA)
    ))
    .await
    .map_err(action("revoking PUBLIC's privileges"))?;
    tx.commit()
        .await
        .map_err(action("committing the migrations"))?;
    Ok(newly)
}

/// Creates the schema if missing; otherwise makes sure the connector role
/// (`current_user`) owns it and every relation in it.
async fn check_or_create_schema(tx: &Transaction<'_>, database: &str) -> Result<(), StoreError> {
    let row = tx
        .query_opt(schema_sql::OWNER, &[&SCHEMA])
        .await
        .map_err(|e| db_error("reading the request store schema's owner", &e))?;
    let Some(row) = row else {
        return tx
            .batch_execute(&format!("CREATE SCHEMA {}", Ident(SCHEMA)))
            .await
            .map_err(|e| {
                if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
                    StoreError::Failed(format!(
                        "the connector role may not create schema {SCHEMA} in database {database}: grant it CREATE on that database, or name a database where it may create schemas"
                    ))
                } else {
                    db_error("creating the request store schema", &e)
                }
            });
    };
    let (ours, owner, me): (bool, String, String) = (row.get(0), row.get(1), row.get(2));
    if !ours {
        return Err(StoreError::Failed(format!(
            "schema {SCHEMA} in database {database} is owned by role {owner}, not by the connector role {me}: its owner could read or forge access requests; drop it (after checking what it holds) or hand it to {me}, then start again"
        )));
    }
    let foreign = tx
        .query(schema_sql::FOREIGN_RELATIONS, &[&SCHEMA])
        .await
        .map_err(|e| db_error("reading the request store's relations", &e))?;
    if let Some(row) = foreign.first() {
        let (relation, owner): (String, String) = (row.get(0), row.get(1));
        return Err(StoreError::Failed(format!(
            "{SCHEMA}.{relation} in database {database} is owned by role {owner}, not by the connector role {me}: its owner could read or forge access requests; drop it (after checking what it holds), then start again"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_qualified() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(usize::try_from(m.version).unwrap(), i + 1);
            assert_eq!(m.checksum().len(), 64);
            let upper = m.sql.to_ascii_uppercase();
            for forbidden in ["BEGIN", "COMMIT", "ROLLBACK", "PUBLIC."] {
                assert!(!upper.contains(forbidden), "{} holds {forbidden}", m.name);
            }
        }
        // A change of the script is a change of its checksum (what the runner checks).
        let changed = Migration {
            sql: "SELECT 1",
            ..MIGRATIONS[0]
        };
        assert_ne!(changed.checksum(), MIGRATIONS[0].checksum());
    }
}
