//! The one place SQL identifiers and literals are quoted.
//!
//! Every identifier pgwarden puts into SQL text goes through [`Ident`]; values go
//! through bind parameters. The only literals inlined are those PostgreSQL cannot
//! bind — SCRAM verifiers, `VALID UNTIL` timestamps and role comments in DDL — and they
//! go through [`literal`]. Advisory locks and their keys live in [`crate::lock`].

use std::fmt;

use time::OffsetDateTime;

/// A quoted SQL identifier: `"name"` with embedded quotes doubled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ident<'a>(pub &'a str);

impl fmt::Display for Ident<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&postgres_protocol::escape::escape_identifier(self.0))
    }
}

/// A quoted, qualified name: `"schema"."name"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Qualified<'a>(pub &'a str, pub &'a str);

impl fmt::Display for Qualified<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", Ident(self.0), Ident(self.1))
    }
}

/// A string literal, escaped for any `standard_conforming_strings` setting.
#[must_use]
pub(crate) fn literal(value: &str) -> String {
    postgres_protocol::escape::escape_literal(value)
}

/// `COMMENT ON ROLE name IS 'comment'`.
pub(crate) fn comment_on_role(name: &str, comment: &str) -> String {
    format!("COMMENT ON ROLE {} IS {}", Ident(name), literal(comment))
}

/// `VALID UNTIL` text: UTC, whole seconds.
pub(crate) fn timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}+00",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
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

    /// Runs `sql`, statements without parameters or rows, in one simple-protocol
    /// message.
    async fn batch(&self, sql: &str) -> Result<(), tokio_postgres::Error>;

    /// Prepares `sql` once per connection: after it, [`query_cached`](Self::query_cached)
    /// sends its query when first polled, so it can take its place in a pipeline.
    async fn prepare_only(&self, sql: &str) -> Result<(), tokio_postgres::Error>;
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

            async fn batch(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
                self.batch_execute(sql).await
            }

            async fn prepare_only(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
                self.prepare_cached(sql).await.map(drop)
            }
        }
    )+};
}

cached_query!(
    deadpool_postgres::ClientWrapper,
    deadpool_postgres::Transaction<'_>
);

/// The settings that keep statements out of the server log from now on (for the
/// transaction with `local`, else for the session): no statement logging, no logging
/// by duration (`log_min_duration_statement` logs a statement's text whatever
/// `log_statement` says), no sampled logging. Only a superuser may set them; sent
/// before a statement that carries a verifier.
#[must_use]
pub(crate) fn silence_log_sql(local: bool) -> String {
    let set = if local { "SET LOCAL" } else { "SET" };
    format!(
        "{set} log_statement = 'none'; {set} log_min_duration_statement = -1; \
         {set} log_min_duration_sample = -1; {set} log_transaction_sample_rate = 0"
    )
}

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
    fn timestamps_are_utc_seconds() {
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert_eq!(timestamp(t), "2027-01-15 08:00:00+00");
    }

    #[test]
    fn comments_quote_the_role_and_the_text() {
        assert_eq!(
            comment_on_role("a\"b", "it's"),
            "COMMENT ON ROLE \"a\"\"b\" IS 'it''s'"
        );
    }
}
