//! What a connector can and cannot do for pgwarden, checked on a live connection.
//!
//! pgwarden needs more than a login: it creates and drops roles, grants on objects
//! in every database, ends sessions and reassigns what a departing role owned. A
//! superuser can do all of it. A `CREATEROLE` connector (the managed-cloud shape:
//! RDS, Cloud SQL, Azure) can do part of it, and PostgreSQL 16 changed which part.
//! [`Preflight::run`] reads the server version, the TLS state of the session, the
//! connector's role attributes and memberships, and turns them into a list of
//! [`Capability`] checks with a plain sentence each.

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
pub struct RoleAttributes {
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
    /// The session's TLS state.
    pub tls: SessionTls,
    /// The connector role.
    pub role: RoleAttributes,
    /// The checks, in a fixed order.
    pub capabilities: Vec<Capability>,
}

const SESSION_SQL: &str = "
SELECT current_setting('server_version'),
       current_setting('server_version_num')::int,
       s.ssl, s.version, s.cipher, s.bits,
       r.rolname::text, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
       r.rolreplication, r.rolbypassrls, r.rolinherit,
       ARRAY(SELECT b.rolname::text FROM pg_catalog.pg_roles b
             WHERE b.oid <> r.oid AND pg_catalog.pg_has_role(r.oid, b.oid, 'MEMBER')
             ORDER BY 1),
       current_setting('password_encryption'),
       ARRAY(SELECT d.datname::text FROM pg_catalog.pg_database d
             WHERE d.datallowconn AND NOT d.datistemplate
               AND NOT pg_catalog.has_database_privilege(r.oid, d.oid, 'CONNECT')
             ORDER BY 1)
FROM pg_catalog.pg_roles r
LEFT JOIN pg_catalog.pg_stat_ssl s ON s.pid = pg_catalog.pg_backend_pid()
WHERE r.rolname = current_user";

impl Preflight {
    /// Reads the session and role, and evaluates every capability.
    pub async fn run(client: &Client) -> Result<Preflight, tokio_postgres::Error> {
        let row = client.query_one(SESSION_SQL, &[]).await?;
        let role = RoleAttributes {
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
        let capabilities = capabilities(&role, version_num, &password_encryption, &unreachable_dbs);
        Ok(Preflight {
            server_version: row.get(0),
            server_version_num: version_num,
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
        detail: detail.into(),
    }
}

/// The checks, from facts already read (pure, so every branch is unit-tested).
#[must_use]
pub fn capabilities(
    role: &RoleAttributes,
    version_num: i32,
    password_encryption: &str,
    unreachable_databases: &[String],
) -> Vec<Capability> {
    let su = role.superuser;
    let pg16 = version_num >= 160_000;
    let signal = su || role.member_of.iter().any(|r| r == "pg_signal_backend");
    let mut out = vec![
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
        cap(
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
        ),
        cap(
            "scram_passwords",
            password_encryption == "scram-sha-256",
            if password_encryption == "scram-sha-256" {
                "password_encryption is scram-sha-256: pgwarden sends only SCRAM verifiers"
                    .to_owned()
            } else {
                format!(
                    "password_encryption is {password_encryption}: pgwarden still sends SCRAM verifiers, but set scram-sha-256 so other clients do too"
                )
            },
        ),
    ];
    if !role.login {
        out.push(cap(
            "login",
            false,
            "the connector role has NOLOGIN: it cannot connect again after this session",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(superuser: bool, createrole: bool, member_of: &[&str]) -> RoleAttributes {
        RoleAttributes {
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

    fn ok(caps: &[Capability], key: &str) -> bool {
        caps.iter().find(|c| c.key == key).unwrap().ok
    }

    #[test]
    fn superuser_can_do_everything() {
        let caps = capabilities(&role(true, false, &[]), 150_000, "scram-sha-256", &[]);
        assert!(caps.iter().all(|c| c.ok), "{caps:#?}");
    }

    #[test]
    fn nothing_without_createrole() {
        let caps = capabilities(&role(false, false, &[]), 150_000, "scram-sha-256", &[]);
        assert!(!ok(&caps, "provision"));
        let p = caps.iter().find(|c| c.key == "provision").unwrap();
        assert!(p.detail.contains("cannot provision"), "{}", p.detail);
    }

    #[test]
    fn createrole_differs_before_and_after_16() {
        let r = role(false, true, &["pg_signal_backend"]);
        let v15 = capabilities(&r, 150_018, "scram-sha-256", &[]);
        let v16 = capabilities(&r, 160_000, "scram-sha-256", &[]);
        assert!(ok(&v15, "provision") && ok(&v16, "provision"));
        assert!(!ok(&v15, "reassign_and_drop_owned"));
        assert!(ok(&v16, "reassign_and_drop_owned"));
        assert!(ok(&v15, "terminate_sessions"));
        assert!(!ok(&v15, "grant_on_objects"));
        assert!(v16[0].detail.contains("ADMIN OPTION"));
    }

    #[test]
    fn unreachable_databases_and_md5_are_named() {
        let caps = capabilities(&role(true, false, &[]), 150_000, "md5", &["locked".into()]);
        assert!(!ok(&caps, "connect_all_databases"));
        assert!(
            caps.iter()
                .any(|c| c.detail.contains("no CONNECT on locked"))
        );
        assert!(!ok(&caps, "scram_passwords"));
    }
}
