//! pgwarden's bookkeeping roles, made and checked once per provisioner:
//!
//! - the marker role: every login role pgwarden manages is a member of it;
//! - [`UNTAGGED_ROLE`]: the login roles a grant id cannot be found from by name;
//! - the names role of this provisioner's `username_prefix` ([`names_role`]), under
//!   which ephemeral login roles are named by their grant's id.
//!
//! Each carries a record pgwarden sealed for it. Together they let a grant id be found,
//! or proven absent, through indexes ([`crate::ledger::LEDGER_ID_SQL`]): every
//! ephemeral role is named `<prefix><tag>_…` under a registered prefix, and every other
//! login role is a member of [`UNTAGGED_ROLE`]. A marker sealed before this rule (no
//! `ids_by_name` in its record) has its existing login roles made members of
//! [`UNTAGGED_ROLE`] first, once, under the exclusive privileges lock, which every
//! grant (of this version or an earlier one) waits for.

use std::collections::HashMap;

use pgwarden_core::naming::{MARKER_ROLE, UNTAGGED_ROLE, names_role};

use super::Provisioner;
use super::roles::{ConnectorFacts, NewRole, create_role_returning_oid};
use crate::error::{ProvisionError, db};
use crate::ledger::{LedgerRole, MarkerRecord, RoleMode};
use crate::lock::Lock;

/// The roles named in `$1` (a `name[]`): name, oid and comment.
const BOOKKEEPING_SQL: &str = "
SELECT r.rolname::pg_catalog.text, r.oid, d.description FROM pg_catalog.pg_roles r
LEFT JOIN pg_catalog.pg_shdescription d ON d.objoid = r.oid AND d.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid
WHERE r.rolname OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.name[])";

/// The members of the marker (`$1`) that are not members of [`UNTAGGED_ROLE`] (`$2`):
/// the login roles to make members of it when ids start being found by name.
const NOT_UNTAGGED_SQL: &str = "
SELECT DISTINCT pg_catalog.pg_get_userbyid(m.member)::pg_catalog.text FROM pg_catalog.pg_auth_members m
WHERE m.roleid OPERATOR(pg_catalog.=) pg_catalog.to_regrole(pg_catalog.quote_ident($1::pg_catalog.text))::pg_catalog.oid
  AND NOT m.admin_option
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_auth_members u
                  WHERE u.member OPERATOR(pg_catalog.=) m.member
                    AND u.roleid OPERATOR(pg_catalog.=) pg_catalog.to_regrole(pg_catalog.quote_ident($2::pg_catalog.text))::pg_catalog.oid)
ORDER BY 1";

/// The registered username prefixes: what follows
/// [`pgwarden_core::naming::NAMES_ROLE_PREFIX`] in the names roles' names.
const PREFIXES_SQL: &str = "
SELECT pg_catalog.substr(r.rolname::pg_catalog.text, 24) FROM pg_catalog.pg_roles r
WHERE r.rolname OPERATOR(pg_catalog.>=) 'pgwarden_managed_names_'::pg_catalog.name
  AND r.rolname OPERATOR(pg_catalog.<) 'pgwarden_managed_names`'::pg_catalog.name";

/// What a bookkeeping role is, as found.
enum Found {
    /// No role of that name.
    Missing,
    /// pgwarden's, with its record.
    Authentic(MarkerRecord),
}

impl Provisioner {
    /// Makes sure the bookkeeping roles exist and are pgwarden's, that every login
    /// role can be found by its grants' ids (see the module documentation), and
    /// (createrole mode, 16+) that the connector may add members to the marker and to
    /// [`UNTAGGED_ROLE`]. Once per provisioner.
    pub(super) async fn ensure_marker(&self) -> Result<(), ProvisionError> {
        self.marker_ready
            .get_or_try_init(|| async {
                let facts = self.facts().await?;
                let names = names_role(&self.config.username_prefix);
                let mut conn = self.admin.get().await?;
                if !self.bookkeeping_ready(&**conn, &names).await? {
                    // Under the exclusive privileges lock: two first grants racing make
                    // each role once, and no grant runs while login roles are moved.
                    let tx = Lock::Privileges
                        .transaction(&mut conn, "locking setting up pgwarden's roles")
                        .await?;
                    self.set_up_bookkeeping(&tx, facts, &names).await?;
                    tx.commit()
                        .await
                        .map_err(db("setting up pgwarden's roles"))?;
                }
                if facts.createrole_mode && facts.version_num >= 160_000 {
                    check_admin(&**conn, facts).await?;
                }
                Ok::<(), ProvisionError>(())
            })
            .await?;
        Ok(())
    }

    /// Whether every bookkeeping role exists and the marker says ids are found by name.
    async fn bookkeeping_ready<C: tokio_postgres::GenericClient>(
        &self,
        client: &C,
        names: &str,
    ) -> Result<bool, ProvisionError> {
        let found = self.read_bookkeeping(client, names).await?;
        Ok(
            matches!(&found[MARKER_ROLE], Found::Authentic(r) if r.ids_by_name)
                && matches!(found[UNTAGGED_ROLE], Found::Authentic(_))
                && matches!(found[names], Found::Authentic(_)),
        )
    }

    /// Under the exclusive privileges lock: makes what is missing, and, unless the
    /// marker already says so (and [`UNTAGGED_ROLE`] was not just made again), makes
    /// every login role a member of [`UNTAGGED_ROLE`] and seals the marker's record
    /// saying ids are found by name.
    async fn set_up_bookkeeping(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        facts: &ConnectorFacts,
        names: &str,
    ) -> Result<(), ProvisionError> {
        let key = &self.config.ledger_key;
        let mut found = self.read_bookkeeping(&**tx, names).await?;
        let prefix = &self.config.username_prefix;
        let mut untagged_made = false;
        for (role, what) in [
            (
                UNTAGGED_ROLE,
                "login roles found by their grants' ids without being named by them".to_owned(),
            ),
            (
                names,
                format!("ephemeral login roles are named {prefix}<grant id tag>_<requester>"),
            ),
        ] {
            if matches!(found[role], Found::Missing) {
                let record = MarkerRecord::bookkeeping(&what);
                self.create_bookkeeping(tx, facts, role, &record).await?;
                found.insert(role.to_owned(), Found::Authentic(record));
                untagged_made |= role == UNTAGGED_ROLE;
            }
        }
        let marker_oid = match found.remove(MARKER_ROLE) {
            // An untagged role made again (it was dropped, and its memberships with
            // it) is filled again below.
            Some(Found::Authentic(r)) if r.ids_by_name && !untagged_made => return Ok(()),
            // Made now: no login role is a member yet.
            Some(Found::Missing) | None => {
                return self
                    .create_bookkeeping(tx, facts, MARKER_ROLE, &MarkerRecord::ids_by_name())
                    .await;
            }
            Some(Found::Authentic(_)) => marker_oid(&**tx).await?,
        };
        if facts.createrole_mode && facts.version_num >= 160_000 {
            // Before the GRANTs below, which need it: say what to run instead.
            check_admin(&**tx, facts).await?;
        }
        let rows = tx
            .query(NOT_UNTAGGED_SQL, &[&MARKER_ROLE, &UNTAGGED_ROLE])
            .await
            .map_err(db("reading the login roles to make findable by id"))?;
        let members: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        let mut sql = untagged_grants_sql(facts, &members);
        if !sql.is_empty() {
            sql.push_str("; ");
        }
        sql.push_str(&MarkerRecord::ids_by_name().comment_on(key, marker_oid, MARKER_ROLE));
        tx.batch_execute(&sql)
            .await
            .map_err(db("making the login roles findable by id"))?;
        tracing::info!(
            login_roles = rows.len(),
            "login roles made members of {UNTAGGED_ROLE}: grant ids are now found by name"
        );
        Ok(())
    }

    /// Makes the login roles of `ledger` that a grant id could not be found from (not
    /// named by their grant's id under a registered prefix, and not members of
    /// [`UNTAGGED_ROLE`]) members of [`UNTAGGED_ROLE`], and returns their names. Such
    /// a role was made by an earlier version of pgwarden still running beside this
    /// one: reconcile runs this, so that a grant retried with its id finds it from
    /// then on, not only revocations (which fall back to reading every record).
    pub(crate) async fn make_findable_by_id(
        &self,
        ledger: &[LedgerRole],
    ) -> Result<Vec<String>, ProvisionError> {
        let key = &self.config.ledger_key;
        let (outside, prefixes) = {
            let conn = self.admin.get().await?;
            let (outside, prefixes) = futures_util::join!(
                conn.query(NOT_UNTAGGED_SQL, &[&MARKER_ROLE, &UNTAGGED_ROLE]),
                conn.query(PREFIXES_SQL, &[]),
            );
            (
                outside.map_err(db("reading the login roles outside the untagged role"))?,
                prefixes.map_err(db("reading the registered username prefixes"))?,
            )
        };
        let outside: std::collections::HashSet<String> = outside.iter().map(|r| r.get(0)).collect();
        let prefixes: Vec<String> = prefixes.iter().map(|r| r.get(0)).collect();
        let named_by_id = |role: &LedgerRole| {
            role.record.as_ref().is_some_and(|r| {
                let [grant] = r.grants.as_slice() else {
                    return false;
                };
                let tag = key.lookup_tag(&grant.grant_id);
                r.mode == RoleMode::Ephemeral
                    && prefixes.iter().any(|p| {
                        role.username
                            .strip_prefix(p.as_str())
                            .and_then(|rest| rest.strip_prefix(&tag))
                            .is_some_and(|rest| rest.starts_with('_'))
                    })
            })
        };
        let lost: Vec<String> = ledger
            .iter()
            .filter(|r| r.record.is_some() && outside.contains(&r.username) && !named_by_id(r))
            .map(|r| r.username.clone())
            .collect();
        if lost.is_empty() {
            return Ok(lost);
        }
        // Before taking a connection again: it may need one of its own.
        self.ensure_marker().await?;
        let facts = self.facts().await?;
        self.admin
            .get()
            .await?
            .batch_execute(&untagged_grants_sql(facts, &lost))
            .await
            .map_err(db("making login roles findable by their grants' ids"))?;
        tracing::warn!(
            login_roles = ?lost,
            "login roles a grant id could not be found from (made by an earlier pgwarden still running?) made members of {UNTAGGED_ROLE}"
        );
        Ok(lost)
    }

    /// Creates bookkeeping role `name` and seals `record` on it.
    async fn create_bookkeeping(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        facts: &ConnectorFacts,
        name: &str,
        record: &MarkerRecord,
    ) -> Result<(), ProvisionError> {
        let oid = create_role_returning_oid(
            &**tx,
            &facts.create_role(&NewRole::Bookkeeping { name }),
            name,
        )
        .await?;
        tx.batch_execute(&record.comment_on(&self.config.ledger_key, oid, name))
            .await
            .map_err(db(format!("sealing role {name}")))
    }

    /// The marker, [`UNTAGGED_ROLE`] and names role `names`, as found. One that
    /// exists must carry the record pgwarden sealed for it: a marker made by someone
    /// else could be used to hide login roles from the ledger, or to plant forged
    /// ones; an untagged or names role made by someone else could be dropped by them
    /// later, hiding grants from their ids.
    async fn read_bookkeeping<C: tokio_postgres::GenericClient>(
        &self,
        client: &C,
        names: &str,
    ) -> Result<HashMap<String, Found>, ProvisionError> {
        let wanted = [MARKER_ROLE, UNTAGGED_ROLE, names];
        let rows = client
            .query(BOOKKEEPING_SQL, &[&wanted.as_slice()])
            .await
            .map_err(db("reading pgwarden's roles"))?;
        let mut found: HashMap<String, Found> = wanted
            .iter()
            .map(|n| ((*n).to_owned(), Found::Missing))
            .collect();
        for row in &rows {
            let (name, oid, comment): (String, u32, Option<String>) =
                (row.get(0), row.get(1), row.get(2));
            match comment.and_then(|c| MarkerRecord::open(&self.config.ledger_key, oid, &name, &c))
            {
                Some(record) => {
                    found.insert(name, Found::Authentic(record));
                }
                None => return Err(not_authentic(&name)),
            }
        }
        Ok(found)
    }
}

/// `GRANT` [`UNTAGGED_ROLE`] to each of `members`, as one batch (empty for none).
fn untagged_grants_sql(facts: &ConnectorFacts, members: &[String]) -> String {
    members
        .iter()
        .map(|m| facts.grant_membership([UNTAGGED_ROLE], m))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The marker's oid (it exists: read under the lock just before).
async fn marker_oid<C: tokio_postgres::GenericClient>(client: &C) -> Result<u32, ProvisionError> {
    client
        .query_one(
            "SELECT pg_catalog.to_regrole(pg_catalog.quote_ident($1::pg_catalog.text))::pg_catalog.oid",
            &[&MARKER_ROLE],
        )
        .await
        .map_err(db("reading the marker role"))
        .map(|r| r.get(0))
}

/// Refuses a `CREATEROLE` connector (16+) without ADMIN OPTION on the marker and
/// [`UNTAGGED_ROLE`]: it adds login roles to them, and either may have been made by
/// another role.
async fn check_admin<C: tokio_postgres::GenericClient>(
    client: &C,
    facts: &ConnectorFacts,
) -> Result<(), ProvisionError> {
    let rows = client
        .query(
            "SELECT r FROM pg_catalog.unnest($1::pg_catalog.text[]) AS r
             WHERE NOT pg_catalog.pg_has_role(current_user, r::pg_catalog.regrole, 'MEMBER WITH ADMIN OPTION')
             ORDER BY 1",
            &[&[MARKER_ROLE, UNTAGGED_ROLE].as_slice()],
        )
        .await
        .map_err(db("checking pgwarden's roles"))?;
    if rows.is_empty() {
        return Ok(());
    }
    let roles: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let (roles, n) = (roles.join(", "), &facts.name);
    Err(ProvisionError::ConnectorMode(format!(
        "role(s) {roles} were created by another role and connector {n} holds no ADMIN OPTION on them, so it cannot add login roles to them: as a superuser (or the provider's admin) run GRANT {roles} TO {n} WITH ADMIN OPTION"
    )))
}

/// The error for a bookkeeping role pgwarden did not seal.
fn not_authentic(role: &str) -> ProvisionError {
    ProvisionError::NotAuthentic(format!(
        "role {role} exists but carries no record sealed by pgwarden with this ledger key: another tool or user made or altered it, or another integration manages this instance with a different ledger key. pgwarden will not use it: give every integration of this instance the same ledger key, or, if no pgwarden manages this instance, drop the role (DROP ROLE {role})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefixes_are_read_from_the_names_roles() {
        use pgwarden_core::naming::NAMES_ROLE_PREFIX;
        assert!(PREFIXES_SQL.contains(&format!("'{NAMES_ROLE_PREFIX}'")));
        assert!(PREFIXES_SQL.contains(&format!(
            "substr(r.rolname::pg_catalog.text, {})",
            NAMES_ROLE_PREFIX.len() + 1
        )));
    }
}
