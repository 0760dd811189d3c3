//! Privilege roles set up for a grant: created once, on first use, under the
//! exclusive [`Lock::Privileges`], and remembered as ready.

use std::collections::BTreeMap;

use pgwarden_core::resource::{AccessEntry, ResourceId};

use super::Provisioner;
use super::roles::{NewRole, create_role_returning_oid};
use crate::error::{ProvisionError, db, transient};
use crate::ledger::{
    LEDGER_VERSION, PrivilegeRecord, PrivilegeState, ROLE_RECORD_SQL, ready_among,
};
use crate::lock::Lock;
use crate::privilege::{check_grantable, check_membership, grant_statements, privilege_role_name};
use crate::retry::with_retry;

impl Provisioner {
    /// Makes sure a ready privilege role exists for every entry; returns their names.
    pub(super) async fn ensure_privilege_roles(
        &self,
        access: &[AccessEntry],
    ) -> Result<Vec<String>, ProvisionError> {
        let names: Vec<String> = access.iter().map(privilege_role_name).collect();
        // Membership in a role is checked on every grant, not only when its privilege
        // role is made: the role's own memberships may have changed since, and another
        // integration may have made the privilege role under its own opt-ins.
        if access
            .iter()
            .any(|e| matches!(e.resource, ResourceId::Role { .. }))
        {
            let conn = self.admin.get().await?;
            for e in access {
                check_membership(&**conn, e, &self.config.sensitive_roles_allowed).await?;
            }
        }
        let missing: Vec<&AccessEntry> = {
            let ready = self
                .ready_privilege_roles
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            access
                .iter()
                .zip(&names)
                .filter(|(_, n)| !ready.contains(*n))
                .map(|(e, _)| e)
                .collect()
        };
        if missing.is_empty() {
            return Ok(names);
        }
        let conn = self.admin.get().await?;
        let wanted: Vec<String> = missing.iter().map(|e| privilege_role_name(e)).collect();
        let ready_now = ready_among(&*conn, &self.config.ledger_key, &wanted)
            .await
            .map_err(db("reading privilege roles"))?;
        drop(conn);
        let mut by_database: BTreeMap<String, Vec<&AccessEntry>> = BTreeMap::new();
        for e in missing {
            if !ready_now.contains(&privilege_role_name(e)) {
                let db = e
                    .resource
                    .database_name()
                    .unwrap_or(self.connector.database())
                    .to_owned();
                by_database.entry(db).or_default().push(e);
            }
        }
        for (database, entries) in by_database {
            with_retry(
                || self.create_privilege_roles(&database, &entries, false),
                transient,
            )
            .await?;
        }
        let mut ready = self
            .ready_privilege_roles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ready.extend(names.iter().cloned());
        Ok(names)
    }

    /// Creates (or re-grants) privilege roles of one database in one transaction, under
    /// the exclusive privileges lock. With `refresh`, roles that are ready are re-granted
    /// too (their scope may have gained objects).
    pub(crate) async fn create_privilege_roles(
        &self,
        database: &str,
        entries: &[&AccessEntry],
        refresh: bool,
    ) -> Result<(), ProvisionError> {
        // The exclusive lock lives in the default database and is held until the
        // work in the resource's database has committed.
        let mut lock_conn = self.admin.get().await?;
        let lock_tx = Lock::Privileges
            .transaction(&mut lock_conn, "locking privilege setup")
            .await?;
        if database == self.connector.database() {
            self.setup_privilege_roles(&*lock_tx, entries, refresh)
                .await?;
        } else {
            let pool = self.pool(database).await?;
            let mut conn = pool.get().await?;
            let tx = conn
                .transaction()
                .await
                .map_err(db(format!("starting privilege setup in {database}")))?;
            self.setup_privilege_roles(&*tx, entries, refresh).await?;
            tx.commit()
                .await
                .map_err(db("committing privilege setup"))?;
        }
        lock_tx
            .commit()
            .await
            .map_err(db("committing privilege setup"))?;
        Ok(())
    }

    /// Creates or re-grants privilege roles in the transaction's database.
    async fn setup_privilege_roles<C: tokio_postgres::GenericClient>(
        &self,
        tx: &C,
        entries: &[&AccessEntry],
        refresh: bool,
    ) -> Result<(), ProvisionError> {
        let facts = self.facts().await?;
        for entry in entries {
            let name = privilege_role_name(entry);
            let key = &self.config.ledger_key;
            let row = tx
                .query_opt(ROLE_RECORD_SQL, &[&name])
                .await
                .map_err(db("reading a privilege role"))?;
            let existing = match &row {
                None => None,
                Some(r) => {
                    let (oid, comment): (u32, Option<String>) = (r.get(0), r.get(1));
                    let Some(record) = comment
                        .as_deref()
                        .and_then(|c| PrivilegeRecord::from_comment(key, oid, &name, c))
                    else {
                        // Someone made a role under this privilege role's name (or
                        // altered it): adopting it would hand grantees whatever it
                        // already holds. Refused until an operator looks at it.
                        return Err(ProvisionError::NotAuthentic(format!(
                            "role {name} is in pgwarden's namespace but carries no record pgwarden sealed for it with this ledger key (made or altered by someone else, or by an integration with another key): pgwarden will not use it for {entry}. Check what it holds, then drop it (DROP OWNED BY {name}; DROP ROLE {name}) or give every integration of this instance the same ledger key"
                        )));
                    };
                    Some((oid, record.state))
                }
            };
            if !refresh && existing.is_some_and(|(_, state)| state == PrivilegeState::Ready) {
                continue;
            }
            if facts.createrole_mode {
                // Refuse up front, naming the objects, rather than half-grant: GRANT
                // by a non-owner without grant options is an error or, where PUBLIC
                // holds something, only a warning.
                check_grantable(tx, entry, &facts.name, facts.version_num).await?;
            }
            let oid = match existing {
                Some((oid, _)) => oid,
                None => {
                    create_role_returning_oid(
                        tx,
                        &facts.create_role(&NewRole::Privilege { name: &name }),
                        &name,
                    )
                    .await?
                }
            };
            let mut sql = String::new();
            for s in
                grant_statements(tx, entry, &name, &self.config.sensitive_roles_allowed).await?
            {
                sql.push_str(&s);
                sql.push_str("; ");
            }
            let record = PrivilegeRecord {
                pgwarden: LEDGER_VERSION,
                access: (*entry).clone(),
                state: PrivilegeState::Ready,
            };
            sql.push_str(&record.comment_on(key, oid, &name));
            tx.batch_execute(&sql)
                .await
                .map_err(db(format!("setting up privilege role for {entry}")))?;
        }
        Ok(())
    }

    /// Forgets that privilege role `name` is ready: it is being retired.
    pub(crate) fn forget_privilege_role(&self, name: &str) {
        self.ready_privilege_roles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name);
    }

    /// Forgets every privilege role known ready: one was retired or dropped meanwhile.
    pub(super) fn forget_privilege_roles(&self) {
        self.ready_privilege_roles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}
