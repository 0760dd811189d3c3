//! Telling pgwarden's login roles apart by name in a test's SQL.

/// A SQL condition on `rolname` matching the login roles pgwarden names for a
/// requester with the default `pgw_` prefix: ephemeral roles
/// `pgw_<16 hex digits of the grant id's tag>_<requester>` and persistent roles
/// `pgw_<requester>_<hash>`. `requester` is a POSIX regular expression for the start
/// of the sanitized requester (`"storm_"`, `"hal"`); it must not contain `'`.
///
/// # Panics
///
/// When `requester` contains `'`.
///
/// ```
/// assert_eq!(
///     pgwarden_testkit::login_roles_of("hal"),
///     "rolname ~ '^pgw_([0-9a-f]{16}_)?hal'"
/// );
/// ```
#[must_use]
pub fn login_roles_of(requester: &str) -> String {
    assert!(!requester.contains('\''), "no quotes in {requester:?}");
    format!("rolname ~ '^pgw_([0-9a-f]{{16}}_)?{requester}'")
}
