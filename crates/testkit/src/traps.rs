//! Traps planted in `public`, the way a user with CREATE there would plant them (the
//! CVE-2018-1058 pattern), to prove that a client's own SQL never runs them.
//!
//! [`plant_sql`] creates, in one database: an operator in `public` for every
//! comparison and pattern operator name ([`OPERATORS`]) and every pair of
//! catalog-ish argument types ([`TYPES`]) that `pg_catalog` has no exact operator
//! for — each an exact match that would beat a built-in operator needing a cast —
//! and functions shadowing the catalog functions a client may call ([`FUNCTIONS`])
//! for one and two arguments of common types. [`trap_calls`] counts how often they
//! ran; [`trap_log`] shows which, and from which statements.

use crate::{Error, TempCluster};

/// Comparison and pattern operators: every one a client's SQL could use on catalog
/// columns, whatever its spelling (`LIKE` is `~~`, `IN`/`ANY` are `=`).
pub const OPERATORS: &[&str] = &[
    "=", "<>", "<", ">", "<=", ">=", "~", "!~", "~~", "!~~", "~~*", "!~~*", "~*", "!~*", "@>",
    "<@", "&&",
];

/// The types catalog columns, parameters and literals have.
pub const TYPES: &[&str] = &[
    "oid",
    "regclass",
    "regrole",
    "regnamespace",
    "regproc",
    "regtype",
    "name",
    "text",
    "varchar",
    "\"char\"",
    "int2",
    "int4",
    "int8",
    "bool",
    "aclitem",
    "timestamptz",
    "jsonb",
    "json",
    "oid[]",
    "name[]",
    "text[]",
    "aclitem[]",
    "int4[]",
];

/// Catalog functions a client calls (or could), shadowed for every one-argument type
/// and the common two-argument combinations. A call that is not schema-qualified and
/// whose argument types fit a shadow better than the built-in would run the shadow.
pub const FUNCTIONS: &[&str] = &[
    "count",
    "current_setting",
    "set_config",
    "pg_has_role",
    "has_database_privilege",
    "has_schema_privilege",
    "has_table_privilege",
    "has_sequence_privilege",
    "has_function_privilege",
    "pg_get_userbyid",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_advisory_lock",
    "pg_advisory_unlock",
    "pg_try_advisory_lock",
    "pg_advisory_xact_lock",
    "quote_ident",
    "format",
    "aclexplode",
    "acldefault",
    "cardinality",
    "array_agg",
    "string_agg",
    "unnest",
    "shobj_description",
    "obj_description",
    "lower",
    "max",
    "min",
    "bool_or",
    "now",
    "length",
    "left",
    "starts_with",
    "jsonb_build_object",
    "to_jsonb",
    "pg_backend_pid",
    "current_database",
    "version",
];

/// The argument types the function shadows are made for, alone and in pairs.
pub const FUNCTION_ARG_TYPES: &[&str] = &[
    "oid", "regclass", "regrole", "name", "text", "int4", "int8", "bool",
];

/// The trap-planting script for one database. Each trap records its call in the
/// sequence `public.sp_trap_calls` (a rollback cannot erase that) and in the server
/// log (a WARNING naming the trap, with the statement that called it); the trap for
/// `oid = regclass` (the classic one: `classid = 'pg_class'::regclass`) also runs `ALTER ROLE <payload_role>
/// SUPERUSER`, which succeeds if a superuser ever calls it.
#[must_use]
pub fn plant_sql(payload_role: &str) -> String {
    let list = |items: &[&str]| {
        items
            .iter()
            .map(|s| format!("'{}'", s.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r"
CREATE SEQUENCE public.sp_trap_calls;
GRANT USAGE, UPDATE ON SEQUENCE public.sp_trap_calls TO PUBLIC;
DO $plant$
DECLARE
  ops text[] := ARRAY[{ops}];
  types text[] := ARRAY[{types}];
  fns text[] := ARRAY[{fns}];
  fargs text[] := ARRAY[{fargs}];
  o text; l text; r text; f text; i int := 0; body text;
BEGIN
  FOREACH o IN ARRAY ops LOOP
    i := i + 1;
    FOREACH l IN ARRAY types LOOP
      FOREACH r IN ARRAY types LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_operator p
                   WHERE p.oprname OPERATOR(pg_catalog.=) o
                     AND p.oprnamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace::pg_catalog.oid
                     AND p.oprleft OPERATOR(pg_catalog.=) l::pg_catalog.regtype::pg_catalog.oid
                     AND p.oprright OPERATOR(pg_catalog.=) r::pg_catalog.regtype::pg_catalog.oid) THEN
          CONTINUE;
        END IF;
        body := pg_catalog.format(
          'BEGIN RAISE WARNING %L; PERFORM pg_catalog.nextval(%L::pg_catalog.regclass); '
          '%s RETURN NULL; END',
          'sp_trap ' || o || ' (' || l || ', ' || r || ')', 'public.sp_trap_calls',
          CASE WHEN o = '=' AND l = 'oid' AND r = 'regclass'
               THEN {payload} ELSE '' END);
        EXECUTE pg_catalog.format(
          'CREATE FUNCTION public.sp_trap_%s(%s, %s) RETURNS bool LANGUAGE plpgsql AS %L',
          i, l, r, body);
        EXECUTE pg_catalog.format(
          'CREATE OPERATOR public.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = public.sp_trap_%s)',
          o, l, r, i);
      END LOOP;
    END LOOP;
  END LOOP;
  FOREACH f IN ARRAY fns LOOP
    body := pg_catalog.format(
      'BEGIN RAISE WARNING %L; PERFORM pg_catalog.nextval(%L::pg_catalog.regclass); RETURN NULL; END',
      'sp_trap function ' || f, 'public.sp_trap_calls');
    FOREACH l IN ARRAY fargs LOOP
      EXECUTE pg_catalog.format(
        'CREATE FUNCTION public.%I(%s) RETURNS text LANGUAGE plpgsql AS %L', f, l, body);
      FOREACH r IN ARRAY fargs LOOP
        EXECUTE pg_catalog.format(
          'CREATE FUNCTION public.%I(%s, %s) RETURNS text LANGUAGE plpgsql AS %L', f, l, r, body);
      END LOOP;
    END LOOP;
    EXECUTE pg_catalog.format(
      'CREATE FUNCTION public.%I() RETURNS text LANGUAGE plpgsql AS %L', f, body);
  END LOOP;
END
$plant$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO PUBLIC;
",
        payload = list(&[&format!(
            "ALTER ROLE {} SUPERUSER;",
            quote_ident(payload_role)
        )]),
        ops = list(OPERATORS),
        types = list(TYPES),
        fns = list(FUNCTIONS),
        fargs = list(FUNCTION_ARG_TYPES),
    )
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// How often the traps in `db` have fired so far.
pub fn trap_calls(cluster: &TempCluster, db: &str) -> Result<i64, Error> {
    let out = cluster.psql_in(
        db,
        "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM public.sp_trap_calls",
    )?;
    Ok(out.trim().parse().unwrap_or(-1))
}

/// The traps' WARNINGs in the server log, each with the statement that set it off.
pub fn trap_log(cluster: &TempCluster) -> Result<String, Error> {
    let log = cluster.log_contents()?;
    let lines: Vec<&str> = log.lines().collect();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        if line.contains("sp_trap ") || line.contains("sp_trap function") {
            out.push_str(line);
            out.push('\n');
            for next in lines.iter().skip(i + 1).take(3) {
                if next.contains("STATEMENT") || next.contains("CONTEXT") {
                    out.push_str(next);
                    out.push('\n');
                }
            }
        }
    }
    Ok(out)
}
