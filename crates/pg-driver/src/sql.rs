//! The one place SQL identifiers and literals are quoted.
//!
//! Every identifier pgwarden puts into SQL text goes through [`Ident`]; values go
//! through bind parameters. The only literals inlined are those PostgreSQL cannot
//! bind — SCRAM verifiers, `VALID UNTIL` timestamps and role comments in DDL — and they
//! go through [`literal`].

use std::fmt;

use sha2::{Digest, Sha256};

/// A quoted SQL identifier: `"name"` with embedded quotes doubled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ident<'a>(pub &'a str);

impl fmt::Display for Ident<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&postgres_protocol::escape::escape_identifier(self.0))
    }
}

/// A quoted, qualified name: `"schema"."name"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qualified<'a>(pub &'a str, pub &'a str);

impl fmt::Display for Qualified<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", Ident(self.0), Ident(self.1))
    }
}

/// A string literal, escaped for any `standard_conforming_strings` setting.
#[must_use]
pub fn literal(value: &str) -> String {
    postgres_protocol::escape::escape_literal(value)
}

/// A stable 64-bit advisory-lock key for a name (the first 8 bytes of its SHA-256).
#[must_use]
pub fn advisory_key(scope: &str) -> i64 {
    let digest = Sha256::digest(scope.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// Takes a transaction-level advisory lock on `scope`'s key. Advisory locks are per
/// database: the lock lives in the transaction's database.
pub async fn xact_lock<C: tokio_postgres::GenericClient>(
    tx: &C,
    scope: &str,
) -> Result<(), tokio_postgres::Error> {
    // The key is a number we computed: sent inline over the simple protocol, one round
    // trip and nothing to parse, bind or plan.
    tx.batch_execute(&format!(
        "SELECT pg_catalog.pg_advisory_xact_lock({})",
        advisory_key(scope)
    ))
    .await
}

/// Queries through deadpool's per-connection statement cache: a catalog query that
/// runs on every grant or revocation is parsed once per connection, and after a few
/// runs the server reuses its plan, instead of parsing and planning it every time.
pub(crate) trait CachedQuery {
    /// Runs `sql` (prepared once per connection) with `params`.
    async fn query_cached(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>;

    /// [`query_cached`](Self::query_cached) for exactly one row.
    async fn query_one_cached(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<tokio_postgres::Row, tokio_postgres::Error>;
}

/// The same two methods for deadpool's client and its transaction, which have
/// `prepare_cached` but no trait in common.
macro_rules! cached_query {
    ($($client:ty),+) => {$(
        impl CachedQuery for $client {
            async fn query_cached(
                &self,
                sql: &str,
                params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
            ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
                let statement = self.prepare_cached(sql).await?;
                self.query(&statement, params).await
            }

            async fn query_one_cached(
                &self,
                sql: &str,
                params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
            ) -> Result<tokio_postgres::Row, tokio_postgres::Error> {
                let statement = self.prepare_cached(sql).await?;
                self.query_one(&statement, params).await
            }
        }
    )+};
}

cached_query!(
    deadpool_postgres::ClientWrapper,
    deadpool_postgres::Transaction<'_>
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_inject_nothing() {
        assert_eq!(Ident("orders").to_string(), "\"orders\"");
        assert_eq!(Ident("a\"b").to_string(), "\"a\"\"b\"");
        assert_eq!(
            Ident("x\"; DROP TABLE t; --").to_string(),
            "\"x\"\"; DROP TABLE t; --\""
        );
        assert_eq!(Qualified("s p", "ü").to_string(), "\"s p\".\"ü\"");
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("a\\b"), " E'a\\\\b'");
    }

    #[test]
    fn advisory_keys_are_stable_and_distinct() {
        assert_eq!(advisory_key("a"), advisory_key("a"));
        assert_ne!(advisory_key("a"), advisory_key("b"));
    }
}
