//! The catalog queries discovery runs, one per resource type.
//!
//! They read `pg_catalog` directly: `information_schema` shows only objects the
//! current role has some privilege on, and its views are slow on large catalogs.
//! Every name is schema-qualified so that a `search_path` set on the connector's role
//! cannot redirect them, and values come as bind parameters.
//!
//! Public only with the `testing` feature (benchmarks time them raw).

/// The databases discovery walks: those that allow connections and are not templates.
/// Run once, in the connector's own database (`pg_database` is shared).
///
/// Columns: name, owner, comment.
pub const DATABASES: &str = "\
SELECT d.datname,
       pg_catalog.pg_get_userbyid(d.datdba),
       s.description
FROM pg_catalog.pg_database d
LEFT JOIN pg_catalog.pg_shdescription s
       ON s.objoid = d.oid
      AND s.classoid = 'pg_catalog.pg_database'::pg_catalog.regclass::pg_catalog.oid
WHERE d.datallowconn AND NOT d.datistemplate
ORDER BY d.datname";

/// The instance's roles, once for the whole instance (`pg_authid` is shared), without
/// PostgreSQL's own `pg_*` roles, pgwarden's marker role (`$1`) and the bookkeeping
/// roles named after it (`$1_…`), its privilege roles (names starting with `$2`) and
/// its login roles (direct members of the marker).
///
/// Columns: name, login, superuser, createrole, createdb, replication, bypassrls,
/// inherit, connection limit, valid until (RFC 3339 in UTC, or `infinity`), the roles it
/// is a direct member of, comment.
pub const ROLES: &str = "\
SELECT r.rolname,
       r.rolcanlogin,
       r.rolsuper,
       r.rolcreaterole,
       r.rolcreatedb,
       r.rolreplication,
       r.rolbypassrls,
       r.rolinherit,
       r.rolconnlimit,
       CASE
           WHEN r.rolvaliduntil IS NULL THEN NULL
           WHEN pg_catalog.isfinite(r.rolvaliduntil)
               THEN pg_catalog.to_char(r.rolvaliduntil AT TIME ZONE 'UTC',
                                       'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
           ELSE r.rolvaliduntil::pg_catalog.text
       END,
       ARRAY(SELECT g.rolname
             FROM pg_catalog.pg_auth_members m
             JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
             WHERE m.member = r.oid
             ORDER BY g.rolname),
       s.description
FROM pg_catalog.pg_roles r
LEFT JOIN pg_catalog.pg_shdescription s
       ON s.objoid = r.oid
      AND s.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid
WHERE r.rolname !~ '^pg_'::pg_catalog.text
  AND r.rolname <> $1
  AND NOT pg_catalog.starts_with(r.rolname, $1::pg_catalog.text OPERATOR(pg_catalog.||) '_')
  AND NOT pg_catalog.starts_with(r.rolname, $2)
  AND NOT EXISTS (SELECT
                  FROM pg_catalog.pg_auth_members m
                  JOIN pg_catalog.pg_roles marker ON marker.oid = m.roleid
                  WHERE m.member = r.oid AND marker.rolname = $1 AND NOT m.admin_option)
ORDER BY r.rolname";

/// The schemas of the current database, without `pg_catalog`, `information_schema`,
/// `pg_toast*` and `pg_temp*`.
///
/// Columns: name, owner, comment.
pub const SCHEMAS: &str = "\
SELECT n.nspname,
       pg_catalog.pg_get_userbyid(n.nspowner),
       d.description
FROM pg_catalog.pg_namespace n
LEFT JOIN pg_catalog.pg_description d
       ON d.objoid = n.oid
      AND d.classoid = 'pg_catalog.pg_namespace'::pg_catalog.regclass::pg_catalog.oid
      AND d.objsubid = 0
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp)'::pg_catalog.text";

/// The table-like relations of the current database (ordinary, partitioned and
/// foreign tables, views, materialized views) outside the system schemas. Partitions
/// are not rows of their own: each partitioned table that is not itself a partition
/// carries every partition below it, at any depth.
///
/// Columns: schema, name, `relkind`, owner, comment, partition schemas, partition
/// names (both null when there are none).
pub const TABLES: &str = "\
WITH partitions AS (
    SELECT pg_catalog.pg_partition_root(p.oid)::pg_catalog.oid AS root,
           pg_catalog.array_agg(pn.nspname ORDER BY pn.nspname, p.relname) AS schemas,
           pg_catalog.array_agg(p.relname ORDER BY pn.nspname, p.relname) AS names
    FROM pg_catalog.pg_class p
    JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
    WHERE p.relispartition AND p.relkind IN ('r', 'p', 'f')
    GROUP BY 1
)
SELECT n.nspname,
       c.relname,
       c.relkind,
       pg_catalog.pg_get_userbyid(c.relowner),
       d.description,
       pt.schemas,
       pt.names
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_description d
       ON d.objoid = c.oid
      AND d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid
      AND d.objsubid = 0
LEFT JOIN partitions pt ON pt.root = c.oid
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp)'::pg_catalog.text";
