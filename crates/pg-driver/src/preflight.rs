//! What a connector can and cannot do for pgwarden, checked on a live connection.
//!
//! pgwarden needs more than a login: it creates and drops roles, grants on objects
//! in every database, ends sessions and reassigns what a departing role owned. A
//! superuser can do all of it. A `CREATEROLE` connector (the managed-cloud shape:
//! RDS, Cloud SQL, Azure) can do part of it, and PostgreSQL 16 changed which part.
//! [`Preflight::run`] reads the server version, the TLS state of the session, the
//! connector's role attributes and memberships, and turns them into a list of
//! [`Capability`] checks with a plain sentence each.

use pgwarden_core::config::ConnectorMode;
use serde::Serialize;
use tokio_postgres::Client;

/// The TLS state of the connector's session, as the server sees it (`pg_stat_ssl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionTls {
    /// Whether the session is encrypted.
    pub enabled: bool,
    /// The protocol, e.g. `TLSv1.3`.
    pub version: Option<String>,
    /// The cipher suite.
    pub cipher: Option<String>,
    /// Key bits of the cipher.
    pub bits: Option<i32>,
}

/// The connector role's attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "these are PostgreSQL's own role flags"
)]
pub struct ConnectorRole {
    /// The role's name.
    pub name: String,
    /// `rolsuper`.
    pub superuser: bool,
    /// `rolcreaterole`.
    pub createrole: bool,
    /// `rolcreatedb`.
    pub createdb: bool,
    /// `rolcanlogin`.
    pub login: bool,
    /// `rolreplication`.
    pub replication: bool,
    /// `rolbypassrls`.
    pub bypassrls: bool,
    /// `rolinherit`.
    pub inherit: bool,
    /// Roles it is a member of (directly or not).
    pub member_of: Vec<String>,
}

/// One thing pgwarden needs, and whether this connector has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capability {
    /// A stable key (`provision`, `terminate_sessions`, ...).
    pub key: &'static str,
    /// Whether the connector can do it.
    pub ok: bool,
    /// It works, within limits the detail states (createrole mode).
    pub limited: bool,
    /// What that means, in a sentence.
    pub detail: String,
}

/// Everything [`Preflight::run`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preflight {
    /// `server_version`, e.g. `15.18 (Debian 15.18-0+deb12u1)`.
    pub server_version: String,
    /// `server_version_num`, e.g. 150018.
    pub server_version_num: i32,
    /// The mode the checks were made for.
    pub mode: ConnectorMode,
    /// The session's TLS state.
    pub tls: SessionTls,
    /// The connector role.
    pub role: ConnectorRole,
    /// The checks, in a fixed order.
    pub capabilities: Vec<Capability>,
}

const SESSION_SQL: &str = "
SELECT pg_catalog.current_setting('server_version'),
       pg_catalog.current_setting('server_version_num')::int,
       s.ssl, s.version, s.cipher, s.bits,
       r.rolname::text, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
       r.rolreplication, r.rolbypassrls, r.rolinherit,
       ARRAY(SELECT b.rolname::text FROM pg_catalog.pg_roles b
             WHERE b.oid <> r.oid AND pg_catalog.pg_has_role(r.oid, b.oid, 'MEMBER')
             ORDER BY 1),
       pg_catalog.current_setting('password_encryption'),
       ARRAY(SELECT d.datname::text FROM pg_catalog.pg_database d
             WHERE d.datallowconn AND NOT d.datistemplate
               AND NOT pg_catalog.has_database_privilege(r.oid, d.oid, 'CONNECT')
             ORDER BY 1)
FROM pg_catalog.pg_roles r
LEFT JOIN pg_catalog.pg_stat_ssl s ON s.pid = pg_catalog.pg_backend_pid()
WHERE r.rolname = current_user";

impl Preflight {
    /// Reads the session and role, and evaluates every capability for `mode`.
    pub async fn run(
        client: &Client,
        mode: ConnectorMode,
    ) -> Result<Preflight, tokio_postgres::Error> {
        let row = client.query_one(SESSION_SQL, &[]).await?;
        let role = ConnectorRole {
            name: row.get(6),
            superuser: row.get(7),
            createrole: row.get(8),
            createdb: row.get(9),
            login: row.get(10),
            replication: row.get(11),
            bypassrls: row.get(12),
            inherit: row.get(13),
            member_of: row.get(14),
        };
        let version_num: i32 = row.get(1);
        let password_encryption: String = row.get(15);
        let unreachable_dbs: Vec<String> = row.get(16);
        let capabilities = capabilities(
            &role,
            version_num,
            &password_encryption,
            &unreachable_dbs,
            mode,
        );
        Ok(Preflight {
            server_version: row.get(0),
            server_version_num: version_num,
            mode,
            tls: SessionTls {
                enabled: row.get::<_, Option<bool>>(2).unwrap_or(false),
                version: row.get(3),
                cipher: row.get(4),
                bits: row.get(5),
            },
            role,
            capabilities,
        })
    }

    /// Whether every capability is present.
    #[must_use]
    pub fn all_ok(&self) -> bool {
        self.capabilities.iter().all(|c| c.ok)
    }

    /// Whether the connector can create login roles at all.
    #[must_use]
    pub fn can_provision(&self) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.key == "provision" && c.ok)
    }
}

fn cap(key: &'static str, ok: bool, detail: impl Into<String>) -> Capability {
    Capability {
        key,
        ok,
        limited: false,
        detail: detail.into(),
    }
}

fn limited(key: &'static str, detail: impl Into<String>) -> Capability {
    Capability {
        key,
        ok: true,
        limited: true,
        detail: detail.into(),
    }
}

/// The checks of createrole mode: what the connector can do, and plainly what not.
fn createrole_capabilities(role: &ConnectorRole, version_num: i32) -> Vec<Capability> {
    let name = &role.name;
    let pg16 = version_num >= 160_000;
    let signal = role.superuser || role.member_of.iter().any(|r| r == "pg_signal_backend");
    let mut out = vec![
        cap(
            "mode",
            role.superuser || role.createrole,
            if role.superuser {
                format!(
                    "connector_mode createrole: {name} is a superuser; createrole mode works, but superuser mode has no limits"
                )
            } else if role.createrole {
                format!(
                    "connector_mode createrole: {name} has CREATEROLE and no SUPERUSER (the managed-cloud shape)"
                )
            } else {
                format!("connector_mode createrole needs CREATEROLE: ALTER ROLE {name} CREATEROLE")
            },
        ),
        if pg16 {
            limited(
                "provision",
                format!(
                    "PostgreSQL 16+: creates login and privilege roles with createrole_self_grant = 'set, inherit' (set per transaction), so {name} holds ADMIN OPTION and membership on each; it cannot alter, drop or add members to roles created by others (for pgwarden's marker role that is a clear error naming the GRANT that fixes it)"
                ),
            )
        } else {
            limited(
                "provision",
                format!(
                    "before PostgreSQL 16: CREATEROLE creates and drops any non-superuser role; {name} grants itself membership in the roles it creates so it can remove what they own"
                ),
            )
        },
        limited(
            "grant_on_objects",
            format!(
                "grants only on objects whose owner {name} can act as (itself, or a role it is an INHERIT member of); a grant whose scope holds other objects is refused before anything changes, naming the objects and owners"
            ),
        ),
        if pg16 {
            limited(
                "grant_role_membership",
                format!(
                    "PostgreSQL 16+: grants membership only in roles {name} holds ADMIN OPTION on (those it created, or granted WITH ADMIN OPTION)"
                ),
            )
        } else {
            limited(
                "grant_role_membership",
                "before PostgreSQL 16: CREATEROLE grants membership in any non-superuser role (pgwarden refuses predefined pg_* roles)",
            )
        },
        if signal {
            limited(
                "terminate_sessions",
                "ends sessions of the login roles it created (pg_signal_backend or membership); never a superuser's session",
            )
        } else {
            limited(
                "terminate_sessions",
                format!(
                    "ends sessions only of roles {name} is a member of (the login roles it creates); grant pg_signal_backend for others; never a superuser's session"
                ),
            )
        },
        limited(
            "reassign_and_drop_owned",
            format!(
                "REASSIGN/DROP OWNED for roles {name} is a member of: every role pgwarden creates in this mode; in databases it cannot connect to, a departing role's objects are left and the revocation stays open"
            ),
        ),
    ];
    if role
        .member_of
        .iter()
        .any(|r| r == "pg_read_all_data" || r == "pg_write_all_data")
    {
        out.push(limited(
            "predefined_data_roles",
            format!("{name} is a member of pg_read_all_data or pg_write_all_data; pgwarden never passes these on"),
        ));
    }
    out
}

/// The checks, from facts already read (pure, so every branch is unit-tested).
#[must_use]
pub(crate) fn capabilities(
    role: &ConnectorRole,
    version_num: i32,
    password_encryption: &str,
    unreachable_databases: &[String],
    mode: ConnectorMode,
) -> Vec<Capability> {
    let mut out = match mode {
        ConnectorMode::Superuser => superuser_capabilities(role, version_num),
        ConnectorMode::Createrole => createrole_capabilities(role, version_num),
    };
    out.push(cap(
        "connect_all_databases",
        unreachable_databases.is_empty(),
        if unreachable_databases.is_empty() {
            "can connect to every database that allows connections".to_owned()
        } else {
            format!(
                "no CONNECT on {}: discovery and grants skip them — GRANT CONNECT to the connector",
                unreachable_databases.join(", ")
            )
        },
    ));
    out.push(cap(
        "scram_passwords",
        password_encryption == "scram-sha-256",
        if password_encryption == "scram-sha-256" {
            "password_encryption is scram-sha-256: pgwarden sends only SCRAM verifiers".to_owned()
        } else {
            format!(
                "password_encryption is {password_encryption}: pgwarden still sends SCRAM verifiers, but set scram-sha-256 so other clients do too"
            )
        },
    ));
    if !role.login {
        out.push(cap(
            "login",
            false,
            "the connector role has NOLOGIN: it cannot connect again after this session",
        ));
    }
    out
}

/// The checks of superuser mode (the default).
fn superuser_capabilities(role: &ConnectorRole, version_num: i32) -> Vec<Capability> {
    let su = role.superuser;
    let pg16 = version_num >= 160_000;
    let signal = su || role.member_of.iter().any(|r| r == "pg_signal_backend");
    vec![
        cap(
            "mode",
            su,
            if su {
                format!("connector_mode superuser: {} is a superuser", role.name)
            } else {
                format!(
                    "connector_mode superuser, but {} is not a superuser: grants and revocations are refused — set connector_mode = \"createrole\" (managed clouds) or use a superuser",
                    role.name
                )
            },
        ),
        cap(
            "provision",
            su || role.createrole,
            if su {
                "superuser: can create, alter and drop login and privilege roles".to_owned()
            } else if role.createrole && pg16 {
                "CREATEROLE on PostgreSQL 16+: can create roles and manage those it created (it gets ADMIN OPTION on them); cannot alter or drop roles created by others".to_owned()
            } else if role.createrole {
                "CREATEROLE: can create, alter and drop non-superuser roles".to_owned()
            } else {
                "neither superuser nor CREATEROLE: cannot provision — grant CREATEROLE (or SUPERUSER) to the connector".to_owned()
            },
        ),
        cap(
            "grant_on_objects",
            su,
            if su {
                "superuser: can grant on every object of every database".to_owned()
            } else {
                "not superuser: can grant only on objects it owns, holds WITH GRANT OPTION, or whose owner it can SET ROLE to".to_owned()
            },
        ),
        cap(
            "terminate_sessions",
            signal,
            if su {
                "superuser: can end any session at revocation".to_owned()
            } else if signal {
                "member of pg_signal_backend: can end sessions of non-superusers at revocation"
                    .to_owned()
            } else {
                "cannot end other sessions: grant pg_signal_backend so revocation can end a user's open sessions".to_owned()
            },
        ),
        cap(
            "reassign_and_drop_owned",
            su || (role.createrole && pg16),
            if su {
                "superuser: can REASSIGN OWNED and DROP OWNED for any role".to_owned()
            } else if role.createrole && pg16 {
                "PostgreSQL 16+: can REASSIGN/DROP OWNED for roles it holds ADMIN OPTION on (those it created)".to_owned()
            } else {
                "cannot REASSIGN/DROP OWNED BY another role (needs superuser, or membership in that role): objects a user created may block its removal".to_owned()
            },
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(superuser: bool, createrole: bool, member_of: &[&str]) -> ConnectorRole {
        ConnectorRole {
            name: "c".into(),
            superuser,
            createrole,
            createdb: false,
            login: true,
            replication: false,
            bypassrls: false,
            inherit: true,
            member_of: member_of.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn find<'a>(caps: &'a [Capability], key: &str) -> &'a Capability {
        caps.iter().find(|c| c.key == key).unwrap()
    }

    fn ok(caps: &[Capability], key: &str) -> bool {
        find(caps, key).ok
    }

    const SU: ConnectorMode = ConnectorMode::Superuser;
    const CR: ConnectorMode = ConnectorMode::Createrole;

    #[test]
    fn superuser_can_do_everything() {
        let caps = capabilities(&role(true, false, &[]), 150_000, "scram-sha-256", &[], SU);
        assert!(caps.iter().all(|c| c.ok && !c.limited), "{caps:#?}");
    }

    #[test]
    fn superuser_mode_needs_a_superuser() {
        let caps = capabilities(&role(false, true, &[]), 160_000, "scram-sha-256", &[], SU);
        let mode = find(&caps, "mode");
        assert!(!mode.ok);
        assert!(
            mode.detail.contains("connector_mode = \"createrole\""),
            "{}",
            mode.detail
        );
    }

    #[test]
    fn nothing_without_createrole() {
        for mode in [SU, CR] {
            let caps = capabilities(
                &role(false, false, &[]),
                150_000,
                "scram-sha-256",
                &[],
                mode,
            );
            assert!(!ok(&caps, "mode"), "{mode}");
        }
        let caps = capabilities(&role(false, false, &[]), 150_000, "scram-sha-256", &[], SU);
        assert!(find(&caps, "provision").detail.contains("cannot provision"));
    }

    #[test]
    fn createrole_mode_states_its_limits_before_and_after_16() {
        let r = role(false, true, &["provider_admin", "pg_signal_backend"]);
        let v15 = capabilities(&r, 150_018, "scram-sha-256", &[], CR);
        let v16 = capabilities(&r, 160_000, "scram-sha-256", &[], CR);
        for caps in [&v15, &v16] {
            assert!(caps.iter().all(|c| c.ok), "{caps:#?}");
            assert!(find(caps, "grant_on_objects").limited);
            assert!(
                find(caps, "grant_on_objects")
                    .detail
                    .contains("refused before anything changes")
            );
            assert!(
                find(caps, "terminate_sessions")
                    .detail
                    .contains("never a superuser's session")
            );
        }
        assert!(
            find(&v16, "provision")
                .detail
                .contains("createrole_self_grant")
        );
        assert!(
            find(&v16, "grant_role_membership")
                .detail
                .contains("ADMIN OPTION")
        );
        assert!(
            find(&v15, "grant_role_membership")
                .detail
                .contains("any non-superuser role")
        );
    }

    #[test]
    fn unreachable_databases_and_md5_are_named() {
        let caps = capabilities(
            &role(true, false, &[]),
            150_000,
            "md5",
            &["locked".into()],
            SU,
        );
        assert!(!ok(&caps, "connect_all_databases"));
        assert!(
            caps.iter()
                .any(|c| c.detail.contains("no CONNECT on locked"))
        );
        assert!(!ok(&caps, "scram_passwords"));
    }
}
