//! What the backends that speak HTTP share: one meaning for each status, one rule for
//! which failures are worth retrying, and one way to describe a client's error.

use crate::{Error, Operation};

/// Whether a response with this status is worth retrying: request timeout (408),
/// throttling (429) and server errors (5xx). [`RetryStore`](crate::RetryStore) retries
/// the errors [`status_error`] marks so.
fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// The error for a failed response with `status`: 404 is [`Error::NotFound`], 401 and
/// 403 [`Error::PermissionDenied`], anything else [`Error::Backend`], transient as
/// [`is_transient_status`] says. `reason` is what the store said (status and error
/// code, never a response body that could echo a value). Statuses with a meaning of
/// their own in one backend (a compare-and-set conflict, a soft-deleted secret) are
/// mapped there before this.
pub(crate) fn status_error(
    backend: &'static str,
    operation: Operation,
    key: String,
    status: u16,
    reason: String,
) -> Error {
    match status {
        404 => Error::NotFound { backend, key },
        401 | 403 => Error::PermissionDenied {
            backend,
            key,
            reason,
        },
        _ => Error::Backend {
            backend,
            operation,
            key,
            reason,
            transient: is_transient_status(status),
        },
    }
}

/// A client's error and its sources on one line, each source once. Clients' errors
/// describe requests and statuses; none of the backends' clients puts a response body
/// that could hold a secret into them.
pub(crate) fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_one_meaning() {
        let e = |status| {
            status_error(
                "vault",
                Operation::Get,
                "k".into(),
                status,
                format!("HTTP {status}"),
            )
        };
        assert!(e(404).is_not_found());
        assert!(matches!(e(401), Error::PermissionDenied { .. }));
        assert!(matches!(e(403), Error::PermissionDenied { .. }));
        for status in [408, 429, 500, 502, 503, 599] {
            assert!(e(status).is_transient(), "{status}");
        }
        for status in [400, 405, 409, 412, 422, 600] {
            let error = e(status);
            assert!(!error.is_transient(), "{status}");
            assert!(
                error.to_string().contains(&format!("HTTP {status}")),
                "{error}"
            );
        }
    }

    #[test]
    fn describe_names_each_source_once() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("request failed")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let io =
            || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        assert_eq!(describe(&Outer(io())), "request failed: connection refused");
        assert_eq!(describe(&io()), "connection refused");
    }
}
