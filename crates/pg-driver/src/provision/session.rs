//! Session limits on a grant's login role: the statements that apply and reset them,
//! and the checks that refuse a limit the server cannot apply before anything is made.
//!
//! A grant's [`SessionLimits`] become role settings (`ALTER ROLE u SET
//! statement_timeout = 30000`, …) and the role's `CONNECTION LIMIT`, written in the
//! transaction that makes the grant. An ephemeral role's settings go with it when it is
//! dropped (the server removes its `pg_db_role_setting` rows). A persistent role
//! carries the combination of its active grants' limits
//! ([`SessionLimits::combined`]); whenever one of its grants starts or ends, its
//! settings are reset (`RESET ALL`, `CONNECTION LIMIT -1`) and the combination of the
//! grants still active is applied again — only when some grant involved has limits, so
//! a persistent role nobody set limits for keeps whatever settings it has.

use pgwarden_core::session::SessionLimits;

use super::Provisioner;
use super::roles::ConnectorFacts;
use crate::error::{InvalidRequest, ProvisionError, db};
use crate::sql::{Ident, literal};

/// The statements applying `limits`' settings to role `username` (`ALTER ROLE … SET`,
/// one per setting, joined by `; `); empty when none is set. `connection_limit` is not
/// among them: it goes into the `ALTER ROLE … LOGIN` ([`connection_limit_clause`]).
/// Timeouts are integer milliseconds, `search_path` a list of quoted identifiers,
/// `pgaudit.log` a literal.
pub(crate) fn apply_settings_sql(username: &str, limits: &SessionLimits) -> String {
    let u = Ident(username);
    let mut settings: Vec<(&str, String)> = [
        ("statement_timeout", limits.statement_timeout),
        ("lock_timeout", limits.lock_timeout),
        (
            "idle_in_transaction_session_timeout",
            limits.idle_in_transaction_session_timeout,
        ),
        ("idle_session_timeout", limits.idle_session_timeout),
        ("transaction_timeout", limits.transaction_timeout),
    ]
    .into_iter()
    .filter_map(|(name, ms)| ms.map(|ms| (name, ms.as_millis().to_string())))
    .collect();
    if let Some(schemas) = &limits.search_path {
        let list = schemas
            .iter()
            .map(|s| Ident(s).to_string())
            .collect::<Vec<_>>()
            .join(", ");
        settings.push(("search_path", list));
    }
    if let Some(ro) = limits.default_transaction_read_only {
        settings.push((
            "default_transaction_read_only",
            if ro { "on" } else { "off" }.to_owned(),
        ));
    }
    if let Some(log) = &limits.pgaudit_log {
        settings.push(("pgaudit.log", literal(log)));
    }
    settings
        .into_iter()
        .map(|(name, value)| format!("ALTER ROLE {u} SET {name} = {value}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// ` CONNECTION LIMIT n` for an `ALTER ROLE … LOGIN`: the limit, or `-1` (none) when
/// `reset` and no limit is set; empty otherwise.
pub(crate) fn connection_limit_clause(limits: &SessionLimits, reset: bool) -> String {
    match limits.connection_limit {
        Some(n) => format!(" CONNECTION LIMIT {n}"),
        None if reset => " CONNECTION LIMIT -1".to_owned(),
        None => String::new(),
    }
}

/// `ALTER ROLE u RESET ALL; ALTER ROLE u CONNECTION LIMIT -1`, then `limits` applied:
/// a persistent role's settings rewritten from the grants it carries.
pub(crate) fn reapply_sql(username: &str, limits: &SessionLimits) -> String {
    let u = Ident(username);
    let mut sql = format!(
        "ALTER ROLE {u} RESET ALL; ALTER ROLE {u}{}",
        connection_limit_clause(limits, true)
    );
    let apply = apply_settings_sql(username, limits);
    if !apply.is_empty() {
        sql.push_str("; ");
        sql.push_str(&apply);
    }
    sql
}

impl Provisioner {
    /// Refuses limits that are invalid, that the server's major lacks, or that need
    /// pgaudit when the server has not loaded it — before anything is created.
    pub(super) async fn check_session_limits(
        &self,
        limits: &SessionLimits,
        facts: &ConnectorFacts,
    ) -> Result<(), ProvisionError> {
        if limits.is_empty() {
            return Ok(());
        }
        let problems = limits.problems("session", None);
        if !problems.is_empty() {
            return Err(InvalidRequest::SessionLimits(problems).into());
        }
        let major = u32::try_from(facts.version_num / 10_000).unwrap_or(0);
        if let Some((setting, since)) = limits.unsupported(major).into_iter().next() {
            return Err(InvalidRequest::SettingUnsupported {
                setting,
                major,
                since,
            }
            .into());
        }
        if limits.pgaudit_log.is_some() {
            let conn = self.admin.get().await?;
            let loaded = conn
                .query_opt(
                    "SELECT 1 FROM pg_catalog.pg_settings WHERE name OPERATOR(pg_catalog.=) $1::pg_catalog.text",
                    &[&"pgaudit.log"],
                )
                .await
                .map_err(db("checking that pgaudit is loaded"))?
                .is_some();
            if !loaded {
                return Err(InvalidRequest::PgauditMissing.into());
            }
        }
        Ok(())
    }
}

/// A failure to apply `limits`: a connector refused `pgaudit.log` (SQLSTATE 42501, a
/// superuser setting) is told how to be allowed; any other error is returned as is.
pub(crate) fn explain_settings_error(
    e: ProvisionError,
    limits: &SessionLimits,
    facts: &ConnectorFacts,
) -> ProvisionError {
    let refused = matches!(&e, ProvisionError::Database { source, .. }
    if source.as_db_error().is_some_and(|d| {
        d.code().code() == "42501" && d.message().contains("pgaudit.log")
    }));
    if !refused || limits.pgaudit_log.is_none() {
        return e;
    }
    let name = &facts.name;
    let how = if facts.version_num >= 150_000 {
        format!(
            "as a superuser, GRANT SET ON PARAMETER pgaudit.log TO {}",
            Ident(name)
        )
    } else {
        "before PostgreSQL 15 only a superuser connector can set it".to_owned()
    };
    ProvisionError::ConnectorMode(format!(
        "connector role {name} may not set pgaudit.log on the grant's role (it is a superuser setting): {how}; or leave pgaudit_log out of the session limits. Nothing was granted"
    ))
}

#[cfg(test)]
mod tests {
    use pgwarden_core::session::Millis;

    use super::*;

    fn all() -> SessionLimits {
        SessionLimits {
            statement_timeout: Some(Millis::new(30_000)),
            lock_timeout: Some(Millis::new(2_000)),
            idle_in_transaction_session_timeout: Some(Millis::new(60_000)),
            idle_session_timeout: Some(Millis::new(600_000)),
            transaction_timeout: Some(Millis::new(3_600_000)),
            connection_limit: Some(2),
            search_path: Some(vec!["$user".into(), "a\"b; DROP ROLE x".into()]),
            default_transaction_read_only: Some(true),
            pgaudit_log: Some("read, 'write".into()),
        }
    }

    #[test]
    fn every_setting_becomes_one_alter_role_set() {
        assert_eq!(
            apply_settings_sql("u\"x", &all()),
            "ALTER ROLE \"u\"\"x\" SET statement_timeout = 30000; \
             ALTER ROLE \"u\"\"x\" SET lock_timeout = 2000; \
             ALTER ROLE \"u\"\"x\" SET idle_in_transaction_session_timeout = 60000; \
             ALTER ROLE \"u\"\"x\" SET idle_session_timeout = 600000; \
             ALTER ROLE \"u\"\"x\" SET transaction_timeout = 3600000; \
             ALTER ROLE \"u\"\"x\" SET search_path = \"$user\", \"a\"\"b; DROP ROLE x\"; \
             ALTER ROLE \"u\"\"x\" SET default_transaction_read_only = on; \
             ALTER ROLE \"u\"\"x\" SET pgaudit.log = 'read, ''write'"
        );
        assert_eq!(apply_settings_sql("u", &SessionLimits::default()), "");
        let off = SessionLimits {
            default_transaction_read_only: Some(false),
            ..SessionLimits::default()
        };
        assert_eq!(
            apply_settings_sql("u", &off),
            "ALTER ROLE \"u\" SET default_transaction_read_only = off"
        );
    }

    #[test]
    fn the_connection_limit_goes_into_alter_role_login() {
        assert_eq!(
            connection_limit_clause(&all(), false),
            " CONNECTION LIMIT 2"
        );
        assert_eq!(
            connection_limit_clause(&SessionLimits::default(), false),
            ""
        );
        assert_eq!(
            connection_limit_clause(&SessionLimits::default(), true),
            " CONNECTION LIMIT -1"
        );
    }

    #[test]
    fn reapplying_resets_everything_first() {
        assert_eq!(
            reapply_sql("u", &SessionLimits::default()),
            "ALTER ROLE \"u\" RESET ALL; ALTER ROLE \"u\" CONNECTION LIMIT -1"
        );
        let l = SessionLimits {
            lock_timeout: Some(Millis::new(5)),
            connection_limit: Some(1),
            ..SessionLimits::default()
        };
        assert_eq!(
            reapply_sql("u", &l),
            "ALTER ROLE \"u\" RESET ALL; ALTER ROLE \"u\" CONNECTION LIMIT 1; ALTER ROLE \"u\" SET lock_timeout = 5"
        );
    }
}
