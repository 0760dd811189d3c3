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
//! | role member | membership in the role, refused when the role reaches anything sensitive (see [`grant_statements`]) |
//!
//! Every level also gets CONNECT on its database and USAGE on its schema. CONNECT,
//! TEMPORARY and EXECUTE are granted to PUBLIC by default in PostgreSQL, so revoking
//! them from one user changes nothing while PUBLIC holds them; pgwarden grants them
//! explicitly (so access works where a DBA revoked them from PUBLIC) and never claims
//! to take them away.

use std::collections::{HashMap, HashSet, VecDeque};
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
WHERE nspname !~ '^pg_'::pg_catalog.text AND nspname <> 'information_schema' ORDER BY 1";

/// Roles that can create objects in a schema (or, with `NULL`, in the database):
/// default privileges must be set FOR each of them. pgwarden's own roles are left out.
const CREATORS_SQL: &str = "
SELECT r.rolname::text FROM pg_catalog.pg_roles r
WHERE r.rolname !~ '^pg_'::pg_catalog.text AND r.rolname NOT LIKE 'pgwarden\\_p\\_%'::pg_catalog.text AND r.rolname <> $2
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
WHERE d.refobjid = $1 AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid AND d.deptype IN ('a', 'i')
ORDER BY 1, 2";

const ROLE_SQL: &str = "
SELECT r.rolsuper, EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m
                           JOIN pg_catalog.pg_roles k ON k.oid = m.roleid
                           WHERE m.member = r.oid AND k.rolname = $2 AND NOT m.admin_option),
       pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER WITH ADMIN OPTION')
FROM pg_catalog.pg_roles r WHERE r.rolname = $1";

/// What membership in role `$1` reaches: every membership edge (member, role) found
/// walking `pg_auth_members` up from `$1`, plus a root row (0, `$1`), each with what
/// makes the role it leads to sensitive. `$2` is the marker role, `$3` the privilege
/// role prefix, `$4` [`SENSITIVE_PREDEFINED`].
///
/// The walk is conservative: it follows **every** membership edge, whatever its
/// options. Membership gives a role's privileges only along edges with INHERIT
/// (before 16: when the member has `rolinherit`), and `SET ROLE` only along edges with
/// SET (always before 16), and an edge with ADMIN OPTION alone still lets the member
/// grant the role to itself. Telling those apart would only let through edges a DBA
/// can change at any time, after the grant, so any edge counts as reach.
///
/// `UNION` (not `UNION ALL`) keeps each edge once, so the walk ends on cycles and
/// visits each edge at most once; the paths are rebuilt from the edges afterwards.
///
/// Column 3, *risky*: SUPERUSER, CREATEROLE, REPLICATION, BYPASSRLS, the predefined
/// roles in [`SENSITIVE_PREDEFINED`], and ADMIN OPTION on any role that is risky
/// itself. Column 4, *own*: pgwarden's connector (`current_user`), privilege roles,
/// the marker role and login roles (members of the marker without ADMIN OPTION: on
/// PostgreSQL 16+ a `CREATEROLE` connector holds ADMIN OPTION on the marker it
/// created, and is not a login role).
const REACH_SQL: &str = "
WITH RECURSIVE edge(member, roleid) AS (
  SELECT 0::pg_catalog.oid, r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = $1::pg_catalog.name
  UNION
  SELECT m.member, m.roleid FROM edge e
  JOIN pg_catalog.pg_auth_members m ON m.member = e.roleid
),
risky AS (
  SELECT r.oid, pg_catalog.array_remove(ARRAY[
           CASE WHEN r.rolsuper THEN 'SUPERUSER' END,
           CASE WHEN r.rolcreaterole THEN 'CREATEROLE' END,
           CASE WHEN r.rolreplication THEN 'REPLICATION' END,
           CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END,
           CASE WHEN r.rolname::pg_catalog.text = ANY ($4::pg_catalog.text[])
                THEN 'sensitive predefined role' END
         ]::pg_catalog.text[], NULL::pg_catalog.text) AS labels
  FROM pg_catalog.pg_roles r
)
SELECT e.member, e.roleid, g.rolname::pg_catalog.text,
       pg_catalog.array_cat(k.labels, ARRAY(
         SELECT pg_catalog.format('ADMIN OPTION on %s (%s)', s.rolname,
                                  pg_catalog.array_to_string(ks.labels, ', '))
         FROM pg_catalog.pg_auth_members a
         JOIN pg_catalog.pg_roles s ON s.oid = a.roleid
         JOIN risky ks ON ks.oid = s.oid
         WHERE a.member = g.oid AND a.admin_option
           AND pg_catalog.cardinality(ks.labels) > 0
         ORDER BY 1)),
       pg_catalog.array_remove(ARRAY[
         CASE WHEN g.rolname = current_user THEN 'pgwarden''s connector' END,
         CASE WHEN pg_catalog.starts_with(g.rolname::pg_catalog.text, $3::pg_catalog.text)
              THEN 'pgwarden privilege role' END,
         CASE WHEN g.rolname = $2::pg_catalog.name THEN 'pgwarden marker role' END,
         CASE WHEN g.rolname <> current_user AND EXISTS (
                SELECT 1 FROM pg_catalog.pg_auth_members m
                JOIN pg_catalog.pg_roles mk ON mk.oid = m.roleid
                WHERE m.member = g.oid AND mk.rolname = $2::pg_catalog.name
                  AND NOT m.admin_option)
              THEN 'pgwarden login role' END
       ]::pg_catalog.text[], NULL::pg_catalog.text)
FROM edge e
JOIN pg_catalog.pg_roles g ON g.oid = e.roleid
JOIN risky k ON k.oid = g.oid
ORDER BY g.rolname, e.member";

/// Predefined roles that membership in a role may not reach (unless the role is in
/// `sensitive_roles_allowed`): they run programs or read and write files as the
/// server's operating-system user, or read or write every table of every database —
/// far beyond what granting one role means.
///
/// Other predefined roles are let through when reached: the monitoring and
/// statistics roles (`pg_monitor`, `pg_read_all_settings`, `pg_read_all_stats`,
/// `pg_stat_scan_tables`), `pg_signal_backend` (cannot signal superusers' sessions),
/// `pg_checkpoint`, `pg_maintain`, `pg_use_reserved_connections`,
/// `pg_create_subscription` and `pg_signal_autovacuum_worker`. They give operational
/// powers a DBA commonly bundles into team roles, no data and no code execution as the
/// server. Predefined roles themselves are never a grantable target.
pub(crate) const SENSITIVE_PREDEFINED: &[&str] = &[
    "pg_execute_server_program",
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_read_all_data",
    "pg_write_all_data",
];

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
  WHERE $6 AND n.nspname !~ '^pg_'::pg_catalog.text AND n.nspname <> 'information_schema'
    AND ($1::text IS NULL OR n.nspname = $1)
)
SELECT kind, name, owner FROM (
  SELECT 0 AS ord, 'database' AS kind, d.datname::text AS name,
         pg_catalog.pg_get_userbyid(d.datdba)::text AS owner
  FROM pg_catalog.pg_database d
  WHERE d.datname = pg_catalog.current_database()
    AND NOT pg_catalog.pg_has_role(current_user, d.datdba, 'USAGE')
    AND (SELECT pg_catalog.count(DISTINCT a.privilege_type)
         FROM pg_catalog.aclexplode(COALESCE(d.datacl, pg_catalog.acldefault('d', d.datdba))) a
         WHERE a.grantee = 0 AND a.privilege_type = ANY ($5::text[]))
        < pg_catalog.cardinality($5::text[])
  UNION ALL
  SELECT 1, 'schema', s.nspname::text, pg_catalog.pg_get_userbyid(s.nspowner)::text
  FROM s
  WHERE NOT pg_catalog.pg_has_role(current_user, s.nspowner, 'USAGE')
    AND (SELECT pg_catalog.count(DISTINCT a.privilege_type) FROM pg_catalog.aclexplode(s.acl) a
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
           WHERE d.refobjid = $2 AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid
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
pub(crate) async fn check_grantable<C: GenericClient>(
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
///
/// Membership in a role (`postgresql-role:<name>=member`) gives everything the role
/// reaches through its own memberships, so it is refused, with the paths named
/// (`ops → dba_super (SUPERUSER)`), when the role itself or any role it reaches:
/// - is a superuser, or has CREATEROLE, REPLICATION or BYPASSRLS;
/// - is one of the [`SENSITIVE_PREDEFINED`] roles;
/// - holds ADMIN OPTION on any of those (it can grant them to itself);
/// - is pgwarden's own: its connector, a privilege role, the marker role, a login role.
///
/// "Reaches" is conservative: every membership edge of `pg_auth_members` counts,
/// whatever its INHERIT, SET and ADMIN options (and, before PostgreSQL 16, the
/// member's `rolinherit`), since a DBA can change those after the grant.
///
/// Roles listed in `sensitive_roles_allowed` (the integration's setting) are granted
/// anyway when what they reach is sensitive only by the first three rules; the grant
/// is logged as a warning naming the paths. pgwarden's own roles are never let
/// through. Predefined (`pg_*`) and pgwarden roles are never a target. The check runs
/// before any statement, so a refusal creates nothing.
#[allow(
    clippy::too_many_lines,
    reason = "one arm per resource type, side by side"
)]
pub(crate) async fn grant_statements<C: GenericClient>(
    client: &C,
    entry: &AccessEntry,
    role: &str,
    sensitive_roles_allowed: &[String],
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
            check_membership(client, entry, sensitive_roles_allowed).await?;
            out.push(format!("GRANT {} TO {to}", Ident(target)));
        }
    }
    Ok(out)
}

/// One sensitive role reached from a membership target, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reached {
    /// `target → … → role (labels)`.
    path: String,
    /// Whether the role is pgwarden's own (never let through).
    own: bool,
}

/// A role as [`REACH_SQL`] describes it.
#[derive(Debug, Clone, Default)]
struct RoleNode {
    name: String,
    risky: Vec<String>,
    own: Vec<String>,
}

/// The sensitive roles reachable from `root` over `edges` (member → role), each with
/// one shortest path, in breadth-first order. Cycle-safe: each role is visited once.
fn sensitive_paths(
    root: u32,
    edges: &HashMap<u32, Vec<u32>>,
    nodes: &HashMap<u32, RoleNode>,
) -> Vec<Reached> {
    let mut parent: HashMap<u32, u32> = HashMap::new();
    let mut seen: HashSet<u32> = HashSet::from([root]);
    let mut queue = VecDeque::from([root]);
    let mut out = Vec::new();
    while let Some(oid) = queue.pop_front() {
        let Some(node) = nodes.get(&oid) else {
            continue;
        };
        if !node.risky.is_empty() || !node.own.is_empty() {
            let mut chain = vec![node.name.as_str()];
            let mut at = oid;
            while let Some(p) = parent.get(&at) {
                chain.push(nodes.get(p).map_or("?", |n| n.name.as_str()));
                at = *p;
            }
            chain.reverse();
            let labels: Vec<&str> = node
                .own
                .iter()
                .chain(&node.risky)
                .map(String::as_str)
                .collect();
            out.push(Reached {
                path: format!("{} ({})", chain.join(" → "), labels.join(", ")),
                own: !node.own.is_empty(),
            });
        }
        for next in edges.get(&oid).into_iter().flatten() {
            if seen.insert(*next) {
                parent.insert(*next, oid);
                queue.push_back(*next);
            }
        }
    }
    out
}

/// For a membership entry (`postgresql-role:<name>=member`): refuses predefined and
/// pgwarden roles as targets, and a role that reaches anything sensitive (see
/// [`grant_statements`]); lets the latter through, with a warning naming the paths,
/// when the role is in `sensitive_roles_allowed` and nothing reached is pgwarden's
/// own. Other entries pass. One catalog query; [`grant_statements`] runs it, and it
/// can run again whenever a grant reuses an existing privilege role.
pub(crate) async fn check_membership<C: GenericClient>(
    client: &C,
    entry: &AccessEntry,
    sensitive_roles_allowed: &[String],
) -> Result<(), PrivilegeError> {
    let res = &entry.resource;
    let ResourceId::Role { role: target } = res else {
        return Ok(());
    };
    if target.starts_with("pg_") || pgwarden_core::naming::is_bookkeeping_role(target) {
        return Err(PrivilegeError::Refused(format!(
            "membership in {target} cannot be granted: predefined and pgwarden roles are not grantable resources"
        )));
    }
    let predefined: Vec<&str> = SENSITIVE_PREDEFINED.to_vec();
    let rows = client
        .query(
            REACH_SQL,
            &[&target, &MARKER_ROLE, &PRIVILEGE_ROLE_PREFIX, &predefined],
        )
        .await
        .map_err(catalog(res))?;
    let mut root = None;
    let mut edges: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut nodes: HashMap<u32, RoleNode> = HashMap::new();
    for row in &rows {
        let (member, oid): (u32, u32) = (row.get(0), row.get(1));
        if member == 0 {
            root = Some(oid);
        } else {
            edges.entry(member).or_default().push(oid);
        }
        nodes.entry(oid).or_insert_with(|| RoleNode {
            name: row.get(2),
            risky: row.get(3),
            own: row.get(4),
        });
    }
    let Some(root) = root else {
        return Err(PrivilegeError::UnknownResource {
            resource: res.to_string(),
        });
    };
    let reached = sensitive_paths(root, &edges, &nodes);
    if reached.is_empty() {
        return Ok(());
    }
    let named = name_paths(&reached);
    let own = reached.iter().any(|r| r.own);
    if !own && sensitive_roles_allowed.iter().any(|a| a == target) {
        tracing::warn!(
            role = %target,
            reaches = %named,
            "membership in role {target} reaches sensitive roles; granted because the integration's sensitive_roles_allowed lists it"
        );
        return Ok(());
    }
    let remedy = if own {
        "No role grant may reach pgwarden's own roles (its connector, privilege roles, marker and login roles), not even with sensitive_roles_allowed: revoke those memberships from the path"
    } else {
        "Revoke those memberships from the path, ask for a narrower role, or, if members of the role are meant to have this, list it in the integration's sensitive_roles_allowed"
    };
    Err(PrivilegeError::Refused(format!(
        "membership in role {target} cannot be granted: through its own memberships it reaches roles that a member could act as or use the privileges of (superusers, role administrators, server program, file and all-data roles, pgwarden's own): {named}. {remedy}"
    )))
}

/// Up to 10 paths, then how many more.
fn name_paths(reached: &[Reached]) -> String {
    let mut named: Vec<&str> = reached.iter().take(10).map(|r| r.path.as_str()).collect();
    let more = reached.len().saturating_sub(10);
    let more = format!("and {more} more");
    if reached.len() > 10 {
        named.push(&more);
    }
    named.join("; ")
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
pub(crate) fn staleness_query(entry: &AccessEntry) -> Option<(&'static str, Vec<String>)> {
    let privilege = match entry.level {
        L::ReadOnly => "SELECT",
        L::ReadWrite => "INSERT",
        L::Admin => "TRIGGER",
        _ => return None,
    };
    match &entry.resource {
        ResourceId::Schema { schema, .. } => Some((
            "SELECT pg_catalog.count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
               AND NOT pg_catalog.has_table_privilege($2, c.oid, $3)",
            vec![schema.clone(), privilege.to_owned()],
        )),
        ResourceId::Database { .. } => Some((
            "SELECT (SELECT pg_catalog.count(*) FROM pg_catalog.pg_namespace n
                     WHERE n.nspname !~ '^pg_'::pg_catalog.text AND n.nspname <> 'information_schema'
                       AND NOT pg_catalog.has_schema_privilege($2, n.oid, 'USAGE'))
                  + (SELECT pg_catalog.count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname !~ '^pg_'::pg_catalog.text AND n.nspname <> 'information_schema' AND $1 <> ''
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

    fn node(name: &str, risky: &[&str], own: &[&str]) -> RoleNode {
        RoleNode {
            name: name.into(),
            risky: risky.iter().map(|s| (*s).to_owned()).collect(),
            own: own.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn reach_names_shortest_paths_and_survives_cycles() {
        // ops → a → b → ops (a cycle), a → su; ops → c → su (longer); c → p.
        let nodes = HashMap::from([
            (1, node("ops", &[], &[])),
            (2, node("a", &[], &[])),
            (3, node("b", &[], &[])),
            (4, node("su", &["SUPERUSER"], &[])),
            (5, node("c", &[], &[])),
            (6, node("pgwarden_p_x", &[], &["pgwarden privilege role"])),
        ]);
        let edges = HashMap::from([
            (1, vec![2, 5]),
            (2, vec![3, 4]),
            (3, vec![1]),
            (5, vec![4, 6]),
        ]);
        let got = sensitive_paths(1, &edges, &nodes);
        assert_eq!(
            got,
            vec![
                Reached {
                    path: "ops → a → su (SUPERUSER)".into(),
                    own: false
                },
                Reached {
                    path: "ops → c → pgwarden_p_x (pgwarden privilege role)".into(),
                    own: true
                },
            ]
        );
        // The target itself counts.
        let nodes = HashMap::from([(1, node("ops", &["CREATEROLE"], &[]))]);
        let got = sensitive_paths(1, &HashMap::new(), &nodes);
        assert_eq!(got[0].path, "ops (CREATEROLE)");
        assert!(
            sensitive_paths(1, &edges, &HashMap::from([(1, node("ops", &[], &[]))])).is_empty()
        );
    }

    #[test]
    fn many_paths_are_cut_at_ten() {
        let reached: Vec<Reached> = (0..12)
            .map(|i| Reached {
                path: format!("p{i}"),
                own: false,
            })
            .collect();
        assert_eq!(name_paths(&reached[..2]), "p0; p1");
        assert!(name_paths(&reached).ends_with("p9; and 2 more"));
    }
}
