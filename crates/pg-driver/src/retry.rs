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
pub(crate) const MAX_ATTEMPTS: u32 = 8;

/// Whether an error is worth retrying.
#[must_use]
pub(crate) fn is_transient(e: &tokio_postgres::Error) -> bool {
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
pub(crate) async fn with_retry<T, E, F, Fut>(
    mut op: F,
    transient: impl Fn(&E) -> bool,
) -> Result<T, E>
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

/// The wait before retry number `failures` (1-based) of an operation that failed:
/// `first`, doubling with each failure up to `cap`, with the upper half jittered
/// (between half and all of it), so replicas and grants that failed together do not
/// retry together.
#[must_use]
pub fn backoff(failures: u32, first: Duration, cap: Duration) -> Duration {
    let ceiling = first
        .saturating_mul(1 << failures.saturating_sub(1).min(20))
        .min(cap);
    let half = ceiling / 2;
    let spread = u32::from_le_bytes(random_bytes::<4>());
    half + half.mul_f64(f64::from(spread) / f64::from(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_is_jittered() {
        let (first, cap) = (Duration::from_secs(1), Duration::from_secs(30));
        for _ in 0..100 {
            let b = backoff(1, first, cap);
            assert!(b >= Duration::from_millis(500) && b <= first, "{b:?}");
            let b = backoff(3, first, cap);
            assert!(
                b >= Duration::from_secs(2) && b <= Duration::from_secs(4),
                "{b:?}"
            );
            let b = backoff(u32::MAX, first, cap);
            assert!(b >= cap / 2 && b <= cap, "{b:?}");
        }
        let distinct: std::collections::HashSet<Duration> =
            (0..20).map(|_| backoff(5, first, cap)).collect();
        assert!(distinct.len() > 1, "jittered");
    }
}
