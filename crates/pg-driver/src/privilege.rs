//! Privilege roles: one NOLOGIN role per (resource, level) holding exactly that
//! level's privileges, so that a grant is a membership and a revocation removes it.
//!
//! | level | privileges of the privilege role |
//! |---|---|
//! | database connect | CONNECT |
//! | database read-only / read-write / admin | the schema level on every schema, plus global default privileges (new schemas and tables); admin adds CREATE, TEMPORARY |
//! | schema read-only | USAGE; SELECT on all tables and sequences; default privileges for every role able to create in the schema |
//! | schema read-write | read-only + INSERT, UPDATE, DELETE on tables; USAGE, UPDATE on sequences |
//! | schema admin | ALL on the schema, its tables, sequences and routines |
//! | table select / insert / update / delete | that privilege (UPDATE, DELETE with SELECT; INSERT with USAGE on its serial/identity sequences) |
//! | table read-only / read-write / admin | SELECT / SELECT, INSERT, UPDATE, DELETE / ALL, with the table's sequences |
//! | role member | membership in the role |
//!
//! Every level also gets CONNECT on its database and USAGE on its schema. CONNECT,
//! TEMPORARY and EXECUTE are granted to PUBLIC by default in PostgreSQL, so revoking
//! them from one user changes nothing while PUBLIC holds them; pgwarden grants them
//! explicitly (so access works where a DBA revoked them from PUBLIC) and never claims
//! to take them away.

use std::fmt::Write as _;

use pgwarden_core::naming::{MARKER_ROLE, PRIVILEGE_ROLE_PREFIX};
use pgwarden_core::resource::{AccessEntry, PermissionLevel as L, ResourceId};
use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;

use crate::sql::{Ident, Qualified};

/// The deterministic name of the privilege role for an access entry:
/// `pgwarden_p_` + 20 hex digits of the entry's SHA-256 (31 bytes, well under 63).
#[must_use]
pub fn privilege_role_name(entry: &AccessEntry) -> String {
    let digest = Sha256::digest(entry.to_string().as_bytes());
    let mut name = String::from(PRIVILEGE_ROLE_PREFIX);
    for b in &digest[..10] {
        let _ = write!(name, "{b:02x}");
    }
    name
}

/// Why privilege statements could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrivilegeError {
    /// The resource does not exist.
    #[error("{resource} does not exist (check the name, or run discovery again)")]
    UnknownResource {
        /// The resource id.
        resource: String,
    },
    /// The request would open more than it names.
    #[error("{0}")]
    Refused(String),
    /// In createrole mode, the connector cannot grant on some objects of the scope:
    /// nothing was granted.
    #[error(
        "connector {connector} (connector_mode createrole) cannot grant {level} on {resource}: it can grant only on objects whose owner it can act as (itself, or a role it is a member of with INHERIT), and {objects}. Make {connector} a member of the owner (GRANT <owner> TO {connector}), change the owner, or use a superuser connector"
    )]
    NotGrantable {
        /// The resource id.
        resource: String,
        /// The level asked for.
        level: String,
        /// The connector role.
        connector: String,
        /// The objects and their owners, e.g. `table s2.u (owner app_owner)`.
        objects: String,
    },
    /// A catalog query failed.
    #[error("reading the catalog for {resource} failed: {source}")]
    Catalog {
        /// The resource id.
        resource: String,
        /// The driver error.
        source: tokio_postgres::Error,
    },
}

const SCHEMAS_SQL: &str = "
SELECT nspname::text FROM pg_catalog.pg_namespace
WHERE nspname !~ '^pg_' AND nspname <> 'information_schema' ORDER BY 1";

/// Roles that can create objects in a schema (or, with `NULL`, in the database):
/// default privileges must be set FOR each of them. pgwarden's own roles are left out.
const CREATORS_SQL: &str = "
SELECT r.rolname::text FROM pg_catalog.pg_roles r
WHERE r.rolname !~ '^pg_' AND r.rolname NOT LIKE 'pgwarden\\_p\\_%' AND r.rolname <> $2
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m
                  JOIN pg_catalog.pg_roles k ON k.oid = m.roleid
                  WHERE m.member = r.oid AND k.rolname = $2 AND NOT m.admin_option)
  AND CASE WHEN $1::text IS NULL
           THEN pg_catalog.has_database_privilege(r.oid, pg_catalog.current_database(), 'CREATE')
           ELSE pg_catalog.has_schema_privilege(r.oid, (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1), 'CREATE')
      END
  AND (r.rolname = current_user
       OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
       OR pg_catalog.pg_has_role(current_user, r.oid, 'USAGE'))
ORDER BY 1";

const TABLE_SQL: &str = "
SELECT c.oid, c.relkind::text FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')";

const SEQUENCES_SQL: &str = "
SELECT n.nspname::text, s.relname::text FROM pg_catalog.pg_depend d
JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_catalog.pg_namespace n ON n.oid = s.relnamespace
WHERE d.refobjid = $1 AND d.classid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i')
ORDER BY 1, 2";

const ROLE_SQL: &str = "
SELECT r.rolsuper, EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m
                           JOIN pg_catalog.pg_roles k ON k.oid = m.roleid
                           WHERE m.member = r.oid AND k.rolname = $2 AND NOT m.admin_option),
       pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER WITH ADMIN OPTION')
FROM pg_catalog.pg_roles r WHERE r.rolname = $1";

/// Objects in a scope whose owner the connector cannot act as (and, for a schema or
/// database, whose needed privileges PUBLIC does not hold anyway). `$1` schema (NULL:
/// every schema), `$2` table oid (NULL: every relation), `$3` privileges needed on
/// schemas, `$4` whether routines are in scope, `$5` privileges needed on the
/// database, `$6` whether schemas and what they hold are in scope at all. At most 21
/// rows: enough to name 20 and say there are more.
const UNGRANTABLE_SQL: &str = "
WITH s AS (
  SELECT n.oid, n.nspname, n.nspowner,
         COALESCE(n.nspacl, pg_catalog.acldefault('n', n.nspowner)) AS acl
  FROM pg_catalog.pg_namespace n
  WHERE $6 AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
    AND ($1::text IS NULL OR n.nspname = $1)
)
SELECT kind, name, owner FROM (
  SELECT 0 AS ord, 'database' AS kind, d.datname::text AS name,
         pg_catalog.pg_get_userbyid(d.datdba)::text AS owner
  FROM pg_catalog.pg_database d
  WHERE d.datname = pg_catalog.current_database()
    AND NOT pg_catalog.pg_has_role(current_user, d.datdba, 'USAGE')
    AND (SELECT count(DISTINCT a.privilege_type)
         FROM pg_catalog.aclexplode(COALESCE(d.datacl, pg_catalog.acldefault('d', d.datdba))) a
         WHERE a.grantee = 0 AND a.privilege_type = ANY ($5::text[]))
        < pg_catalog.cardinality($5::text[])
  UNION ALL
  SELECT 1, 'schema', s.nspname::text, pg_catalog.pg_get_userbyid(s.nspowner)::text
  FROM s
  WHERE NOT pg_catalog.pg_has_role(current_user, s.nspowner, 'USAGE')
    AND (SELECT count(DISTINCT a.privilege_type) FROM pg_catalog.aclexplode(s.acl) a
         WHERE a.grantee = 0 AND a.privilege_type = ANY ($3::text[]))
        < pg_catalog.cardinality($3::text[])
  UNION ALL
  SELECT 2, CASE WHEN c.relkind = 'S' THEN 'sequence' ELSE 'table' END,
         pg_catalog.quote_ident(s.nspname) || '.' || pg_catalog.quote_ident(c.relname),
         pg_catalog.pg_get_userbyid(c.relowner)::text
  FROM pg_catalog.pg_class c JOIN s ON s.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
    AND ($2::oid IS NULL OR c.oid = $2 OR c.oid IN (
           SELECT d.objid FROM pg_catalog.pg_depend d
           WHERE d.refobjid = $2 AND d.classid = 'pg_catalog.pg_class'::regclass
             AND d.deptype IN ('a', 'i')))
    AND NOT pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE')
  UNION ALL
  SELECT 3, 'routine', pg_catalog.quote_ident(s.nspname) || '.' || pg_catalog.quote_ident(p.proname),
         pg_catalog.pg_get_userbyid(p.proowner)::text
  FROM pg_catalog.pg_proc p JOIN s ON s.oid = p.pronamespace
  WHERE $4 AND NOT pg_catalog.pg_has_role(current_user, p.proowner, 'USAGE')
) x
ORDER BY ord, name LIMIT 21";

/// In createrole mode, refuses an entry whose scope holds objects the connector
/// cannot grant on, naming up to 20 of them with their owners. A superuser passes
/// every check; so does a connector that owns (or is an INHERIT member of the owner
/// of) everything in scope.
pub async fn check_grantable<C: GenericClient>(
    client: &C,
    entry: &AccessEntry,
    connector: &str,
    version_num: i32,
) -> Result<(), PrivilegeError> {
    let res = &entry.resource;
    let err = catalog(res);
    let level = entry.level;
    let schema_privs: Vec<String> = match level {
        L::Admin => vec!["USAGE".into(), "CREATE".into()],
        _ => vec!["USAGE".into()],
    };
    let mut db_privs: Vec<String> = vec!["CONNECT".into()];
    if level == L::Admin && matches!(res, ResourceId::Database { .. }) {
        db_privs.extend(["CREATE".into(), "TEMPORARY".into()]);
    }
    let rows = match res {
        ResourceId::Role { role } => {
            return check_role_grantable(client, entry, role, connector, version_num).await;
        }
        ResourceId::Database { .. } => {
            let every_schema: Option<&str> = None;
            let every_table: Option<u32> = None;
            client
                .query(
                    UNGRANTABLE_SQL,
                    &[
                        &every_schema,
                        &every_table,
                        &schema_privs,
                        &(level == L::Admin),
                        &db_privs,
                        &(level != L::Connect),
                    ],
                )
                .await
        }
        ResourceId::Schema { schema, .. } => {
            let every_table: Option<u32> = None;
            client
                .query(
                    UNGRANTABLE_SQL,
                    &[
                        schema,
                        &every_table,
                        &schema_privs,
                        &(level == L::Admin),
                        &db_privs,
                        &true,
                    ],
                )
                .await
        }
        ResourceId::Table { schema, table, .. } => {
            let Some(row) = client
                .query_opt(TABLE_SQL, &[schema, table])
                .await
                .map_err(&err)?
            else {
                return Err(PrivilegeError::UnknownResource {
                    resource: res.to_string(),
                });
            };
            let oid: Option<u32> = Some(row.get(0));
            client
                .query(
                    UNGRANTABLE_SQL,
                    &[schema, &oid, &schema_privs, &false, &db_privs, &true],
                )
                .await
        }
    }
    .map_err(&err)?;
    if rows.is_empty() {
        return Ok(());
    }
    Err(PrivilegeError::NotGrantable {
        resource: res.to_string(),
        level: level.to_string(),
        connector: connector.to_owned(),
        objects: format!("these belong to other roles: {}", name_objects(&rows)),
    })
}

/// `table s.t (owner o), …`: up to 20 rows of [`UNGRANTABLE_SQL`], then "more".
fn name_objects(rows: &[tokio_postgres::Row]) -> String {
    let mut named: Vec<String> = rows
        .iter()
        .take(20)
        .map(|r| {
            format!(
                "{} {} (owner {})",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2)
            )
        })
        .collect();
    if rows.len() > 20 {
        named.push("more".into());
    }
    named.join(", ")
}

/// Membership: before 16, CREATEROLE may grant any non-superuser role; from 16 on
/// only roles the connector holds ADMIN OPTION on.
async fn check_role_grantable<C: GenericClient>(
    client: &C,
    entry: &AccessEntry,
    role: &str,
    connector: &str,
    version_num: i32,
) -> Result<(), PrivilegeError> {
    if version_num < 160_000 {
        return Ok(());
    }
    let res = &entry.resource;
    let row = client
        .query_opt(ROLE_SQL, &[&role, &MARKER_ROLE])
        .await
        .map_err(catalog(res))?;
    match row {
        Some(row) if !row.get::<_, bool>(2) => Err(PrivilegeError::NotGrantable {
            resource: res.to_string(),
            level: entry.level.to_string(),
            connector: connector.to_owned(),
            objects: format!(
                "on PostgreSQL 16+ it needs ADMIN OPTION on role {role}, which it holds only on roles it created (GRANT {role} TO {connector} WITH ADMIN OPTION)"
            ),
        }),
        _ => Ok(()),
    }
}

fn catalog(resource: &ResourceId) -> impl Fn(tokio_postgres::Error) -> PrivilegeError + '_ {
    move |source| PrivilegeError::Catalog {
        resource: resource.to_string(),
        source,
    }
}

/// The statements that give privilege role `role` exactly `entry`'s privileges. They
/// run in the resource's database (role memberships: in any database), are
/// idempotent, and re-running them refreshes the role after new objects appeared.
#[allow(
    clippy::too_many_lines,
    reason = "one arm per resource type, side by side"
)]
pub async fn grant_statements<C: GenericClient>(
    client: &C,
    entry: &AccessEntry,
    role: &str,
) -> Result<Vec<String>, PrivilegeError> {
    let to = Ident(role);
    let res = &entry.resource;
    let err = catalog(res);
    let mut out = Vec::new();
    if let Some(db) = res.database_name() {
        out.push(format!("GRANT CONNECT ON DATABASE {} TO {to}", Ident(db)));
    }
    match (res, entry.level) {
        (ResourceId::Database { database }, level) => {
            if level == L::Connect {
                return Ok(out);
            }
            for row in client.query(SCHEMAS_SQL, &[]).await.map_err(&err)? {
                let schema: String = row.get(0);
                schema_statements(client, &mut out, &schema, level, role)
                    .await
                    .map_err(&err)?;
            }
            // Global default privileges reach schemas and tables created later.
            let creators = creators(client, None).await.map_err(&err)?;
            for c in &creators {
                for (privs, on) in default_privileges(level, true) {
                    out.push(format!(
                        "ALTER DEFAULT PRIVILEGES FOR ROLE {} GRANT {privs} ON {on} TO {to}",
                        Ident(c)
                    ));
                }
            }
            if level == L::Admin {
                out.push(format!(
                    "GRANT CREATE, TEMPORARY ON DATABASE {} TO {to}",
                    Ident(database)
                ));
            }
        }
        (ResourceId::Schema { schema, .. }, level) => {
            let exists = client
                .query_opt(
                    "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1",
                    &[schema],
                )
                .await
                .map_err(&err)?;
            if exists.is_none() {
                return Err(PrivilegeError::UnknownResource {
                    resource: res.to_string(),
                });
            }
            schema_statements(client, &mut out, schema, level, role)
                .await
                .map_err(&err)?;
        }
        (ResourceId::Table { schema, table, .. }, level) => {
            let row = client
                .query_opt(TABLE_SQL, &[schema, table])
                .await
                .map_err(&err)?;
            let Some(row) = row else {
                return Err(PrivilegeError::UnknownResource {
                    resource: res.to_string(),
                });
            };
            let oid: u32 = row.get(0);
            let t = Qualified(schema, table);
            out.push(format!("GRANT USAGE ON SCHEMA {} TO {to}", Ident(schema)));
            let (table_privs, seq_privs) = match level {
                L::Select | L::ReadOnly => ("SELECT", None),
                L::Insert => ("INSERT", Some("USAGE")),
                L::Update => ("SELECT, UPDATE", None),
                L::Delete => ("SELECT, DELETE", None),
                L::ReadWrite => (
                    "SELECT, INSERT, UPDATE, DELETE",
                    Some("USAGE, SELECT, UPDATE"),
                ),
                _ => ("ALL", Some("ALL")),
            };
            out.push(format!("GRANT {table_privs} ON TABLE {t} TO {to}"));
            if let Some(seq_privs) = seq_privs {
                for s in client.query(SEQUENCES_SQL, &[&oid]).await.map_err(&err)? {
                    let (sn, name): (String, String) = (s.get(0), s.get(1));
                    out.push(format!(
                        "GRANT {seq_privs} ON SEQUENCE {} TO {to}",
                        Qualified(&sn, &name)
                    ));
                }
            }
        }
        (ResourceId::Role { role: target }, _) => {
            if target.starts_with("pg_") || pgwarden_core::naming::is_bookkeeping_role(target) {
                return Err(PrivilegeError::Refused(format!(
                    "membership in {target} cannot be granted: predefined and pgwarden roles are not grantable resources"
                )));
            }
            let row = client
                .query_opt(ROLE_SQL, &[target, &MARKER_ROLE])
                .await
                .map_err(&err)?;
            let Some(row) = row else {
                return Err(PrivilegeError::UnknownResource {
                    resource: res.to_string(),
                });
            };
            let (superuser, managed): (bool, bool) = (row.get(0), row.get(1));
            if superuser {
                return Err(PrivilegeError::Refused(format!(
                    "role {target} is a superuser: membership would let the requester SET ROLE to a superuser"
                )));
            }
            if managed {
                return Err(PrivilegeError::Refused(format!(
                    "role {target} is a pgwarden login role, not a grantable resource"
                )));
            }
            out.push(format!("GRANT {} TO {to}", Ident(target)));
        }
    }
    Ok(out)
}

async fn creators<C: GenericClient>(
    client: &C,
    schema: Option<&str>,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client.query(CREATORS_SQL, &[&schema, &MARKER_ROLE]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// (privileges, object kind) pairs for `ALTER DEFAULT PRIVILEGES` at a level.
fn default_privileges(level: L, database_wide: bool) -> Vec<(&'static str, &'static str)> {
    let mut v = match level {
        L::ReadOnly => vec![("SELECT", "TABLES"), ("SELECT", "SEQUENCES")],
        L::ReadWrite => vec![
            ("SELECT, INSERT, UPDATE, DELETE", "TABLES"),
            ("USAGE, SELECT, UPDATE", "SEQUENCES"),
        ],
        L::Admin => vec![("ALL", "TABLES"), ("ALL", "SEQUENCES"), ("ALL", "ROUTINES")],
        _ => Vec::new(),
    };
    if database_wide && !v.is_empty() {
        v.push((
            if level == L::Admin {
                "USAGE, CREATE"
            } else {
                "USAGE"
            },
            "SCHEMAS",
        ));
    }
    v
}

async fn schema_statements<C: GenericClient>(
    client: &C,
    out: &mut Vec<String>,
    schema: &str,
    level: L,
    role: &str,
) -> Result<(), tokio_postgres::Error> {
    let (s, to) = (Ident(schema), Ident(role));
    match level {
        L::ReadOnly => {
            out.push(format!("GRANT USAGE ON SCHEMA {s} TO {to}"));
            out.push(format!("GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {to}"));
            out.push(format!(
                "GRANT SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {to}"
            ));
        }
        L::ReadWrite => {
            out.push(format!("GRANT USAGE ON SCHEMA {s} TO {to}"));
            out.push(format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {to}"
            ));
            out.push(format!(
                "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {s} TO {to}"
            ));
        }
        _ => {
            out.push(format!("GRANT USAGE, CREATE ON SCHEMA {s} TO {to}"));
            out.push(format!("GRANT ALL ON ALL TABLES IN SCHEMA {s} TO {to}"));
            out.push(format!("GRANT ALL ON ALL SEQUENCES IN SCHEMA {s} TO {to}"));
            out.push(format!("GRANT ALL ON ALL ROUTINES IN SCHEMA {s} TO {to}"));
        }
    }
    for c in creators(client, Some(schema)).await? {
        for (privs, on) in default_privileges(level, false) {
            out.push(format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {s} GRANT {privs} ON {on} TO {to}",
                Ident(&c)
            ));
        }
    }
    Ok(())
}

/// A query returning how many objects in the entry's scope the privilege role lacks
/// its level's characteristic privilege on (0 = up to date), or `None` for levels
/// whose scope cannot grow (a table, a role, CONNECT).
#[must_use]
pub fn staleness_query(entry: &AccessEntry) -> Option<(&'static str, Vec<String>)> {
    let privilege = match entry.level {
        L::ReadOnly => "SELECT",
        L::ReadWrite => "INSERT",
        L::Admin => "TRIGGER",
        _ => return None,
    };
    match &entry.resource {
        ResourceId::Schema { schema, .. } => Some((
            "SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
               AND NOT pg_catalog.has_table_privilege($2, c.oid, $3)",
            vec![schema.clone(), privilege.to_owned()],
        )),
        ResourceId::Database { .. } => Some((
            "SELECT (SELECT count(*) FROM pg_catalog.pg_namespace n
                     WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
                       AND NOT pg_catalog.has_schema_privilege($2, n.oid, 'USAGE'))
                  + (SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' AND $1 <> ''
                       AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                       AND NOT pg_catalog.has_table_privilege($2, c.oid, $3))",
            vec![String::from("-"), privilege.to_owned()],
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_short_and_distinct() {
        let a = AccessEntry::new(ResourceId::schema("app", "s"), L::ReadOnly).unwrap();
        let b = AccessEntry::new(ResourceId::schema("app", "s"), L::ReadWrite).unwrap();
        assert_eq!(privilege_role_name(&a), privilege_role_name(&a.clone()));
        assert_ne!(privilege_role_name(&a), privilege_role_name(&b));
        assert!(privilege_role_name(&a).starts_with("pgwarden_p_"));
        assert_eq!(privilege_role_name(&a).len(), 31);
    }
}
