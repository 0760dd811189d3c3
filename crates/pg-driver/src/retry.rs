//! Retrying the errors concurrent grants and revocations cause by nature.
//!
//! Concurrent GRANT/REVOKE on one catalog row fail with "tuple concurrently updated"
//! (SQLSTATE XX000, only recognisable by its message); serialization failures (40001)
//! and deadlocks (40P01) are transient too. They are retried with bounded,
//! jittered exponential backoff; anything else is returned at once.

use std::future::Future;
use std::time::Duration;

use crate::scram::random_bytes;

/// How many attempts in all.
pub const MAX_ATTEMPTS: u32 = 8;

/// Whether an error is worth retrying.
#[must_use]
pub fn is_transient(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        let code = db.code().code();
        code == "40001"
            || code == "40P01"
            || (code == "XX000" && db.message().contains("tuple concurrently updated"))
            // Two sessions creating the same role at once: one loses on the unique index.
            || (code == "23505" && db.message().contains("pg_authid"))
    })
}

/// Runs `op` until it succeeds, fails with a non-transient error, or
/// [`MAX_ATTEMPTS`] are spent.
pub async fn with_retry<T, E, F, Fut>(mut op: F, transient: impl Fn(&E) -> bool) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match op().await {
            Err(e) if attempt < MAX_ATTEMPTS && transient(&e) => {
                let base = 5u64 << attempt.min(7);
                let jitter = u64::from(random_bytes::<1>()[0]) % base.max(1);
                tokio::time::sleep(Duration::from_millis(base + jitter)).await;
            }
            other => return other,
        }
    }
}
