//! Objects owned by pgwarden's own roles — privilege roles and the marker — found
//! and removed.
//!
//! Nothing should ever be owned by one of pgwarden's roles. Yet before PostgreSQL 16
//! membership always allows `SET ROLE`, so a grantee can act as a privilege role and
//! create, say, a `SECURITY DEFINER` function granted to PUBLIC: it would outlive the
//! grant and serve everyone, the next grantees of that level included. From 16 on
//! pgwarden's memberships are `SET FALSE`, but one made otherwise (by hand, by an
//! older pgwarden) still allows it. So reconcile asks `pg_shdepend` — a shared
//! catalog, one query from any database — which databases hold objects owned by
//! those roles, and in each of them hands the objects to a throwaway holder role
//! (`REASSIGN OWNED`), drops everything the holder owns (`DROP OWNED`: it holds no
//! privileges, so nothing else goes) and drops the holder, in one transaction.
//! Default privileges defined *by* such a role are reported, not changed.

use pgwarden_core::naming::MARKER_ROLE;

use crate::error::{ProvisionError, db};
use crate::provision::{NewRole, Provisioner};
use crate::scram::random_string;
use crate::sql::Ident;

/// Databases (by name) holding objects owned by pgwarden's roles, and the roles.
/// Shared objects (`dbid = 0`) are reported under an empty name.
const OWNERS_SQL: &str = "
SELECT COALESCE(d.datname::pg_catalog.text, ''), pg_catalog.array_agg(DISTINCT r.rolname::pg_catalog.text)
FROM pg_catalog.pg_shdepend s
JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) s.refobjid
LEFT JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.dbid
WHERE s.deptype OPERATOR(pg_catalog.=) 'o'::pg_catalog.\"char\"
  AND s.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid
  AND (r.rolname OPERATOR(pg_catalog.~~) 'pgwarden\\_p\\_%'::pg_catalog.text
       OR r.rolname OPERATOR(pg_catalog.=) $1::pg_catalog.name)
GROUP BY 1 ORDER BY 1";

/// What those roles own in the current database, described.
const DESCRIBE_SQL: &str = "
SELECT pg_catalog.pg_describe_object(s.classid, s.objid, s.objsubid),
       s.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_default_acl'::pg_catalog.regclass::pg_catalog.oid
FROM pg_catalog.pg_shdepend s
JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) s.refobjid
WHERE s.dbid OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database
                                     WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
  AND s.deptype OPERATOR(pg_catalog.=) 'o'::pg_catalog.\"char\"
  AND s.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid
  AND r.rolname OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.name[])
ORDER BY 1";

/// What was found owned by pgwarden's roles in one database.
#[derive(Debug, Default)]
pub(crate) struct OwnedCleanup {
    /// Objects removed, as `database: description`.
    pub(crate) removed: Vec<String>,
    /// Found but left (default privileges, shared objects), as `database: description`.
    pub(crate) left: Vec<String>,
    /// What failed, per database.
    pub(crate) errors: Vec<crate::reconcile::ReconcileFailure>,
}

impl Provisioner {
    /// Removes every object owned by a privilege role or the marker role, in every
    /// database (see the module documentation).
    pub(crate) async fn remove_objects_owned_by_pgwarden(
        &self,
    ) -> Result<OwnedCleanup, ProvisionError> {
        let mut out = OwnedCleanup::default();
        let rows = {
            let conn = self.admin.get().await?;
            conn.query(OWNERS_SQL, &[&MARKER_ROLE])
                .await
                .map_err(db("looking for objects owned by pgwarden's roles"))?
        };
        for row in rows {
            let (database, owners): (String, Vec<String>) = (row.get(0), row.get(1));
            if database.is_empty() {
                out.left.push(format!(
                    "a shared object (database or tablespace) is owned by {}: change its owner by hand",
                    owners.join(", ")
                ));
                continue;
            }
            match self.remove_owned_in(&database, &owners).await {
                Ok((removed, left)) => {
                    out.removed
                        .extend(removed.into_iter().map(|d| format!("{database}: {d}")));
                    out.left
                        .extend(left.into_iter().map(|d| format!("{database}: {d}")));
                }
                Err(e) => out.errors.push(crate::reconcile::ReconcileFailure::new(
                    owners.join(", "),
                    None,
                    crate::reconcile::ReconcileFailureKind::RemoveOwnedObjects,
                    format_args!("in database {database}: {e}"),
                )),
            }
        }
        for d in &out.removed {
            tracing::warn!(object = %d, "removed an object owned by a pgwarden role");
        }
        Ok(out)
    }

    /// In `database`: (objects removed, default privileges left).
    async fn remove_owned_in(
        &self,
        database: &str,
        owners: &[String],
    ) -> Result<(Vec<String>, Vec<String>), ProvisionError> {
        let pool = self.pool(database).await?;
        let mut conn = pool.get().await?;
        let tx = conn
            .transaction()
            .await
            .map_err(db(format!("starting the clean-up in {database}")))?;
        let described = tx
            .query(DESCRIBE_SQL, &[&owners])
            .await
            .map_err(db(format!(
                "describing what pgwarden's roles own in {database}"
            )))?;
        let (mut removed, mut left) = (Vec::new(), Vec::new());
        for row in described {
            let (what, default_acl): (String, bool) = (row.get(0), row.get(1));
            if default_acl {
                left.push(format!(
                    "{what} (defined by a pgwarden role; left in place)"
                ));
            } else {
                removed.push(what);
            }
        }
        if removed.is_empty() {
            return Ok((removed, left));
        }
        let holder = format!(
            "pgwarden_h_{}",
            random_string(b"abcdefghijklmnopqrstuvwxyz0123456789", 12)
        );
        let h = Ident(&holder);
        let from = owners
            .iter()
            .map(|o| Ident(o).to_string())
            .collect::<Vec<_>>()
            .join(", ");
        // A CREATEROLE connector needs the holder's privileges to hand objects to it.
        let create = self
            .facts()
            .await?
            .create_role(&NewRole::Holder { name: &holder });
        tx.batch_execute(&format!(
            "{create}; REASSIGN OWNED BY {from} TO {h}; DROP OWNED BY {h}; DROP ROLE {h}"
        ))
        .await
        .map_err(db(format!(
            "removing what pgwarden's roles own in {database}"
        )))?;
        tx.commit()
            .await
            .map_err(db(format!("committing the clean-up in {database}")))?;
        Ok((removed, left))
    }
}
