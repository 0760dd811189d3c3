//! Reconciliation: make the instance agree with the ledger it holds.
//!
//! [`Provisioner::reconcile`] revokes grants past their expiry, finishes
//! revocations that stopped half-way, strips persistent roles of memberships no
//! active grant needs, drops privilege roles nobody is a member of, re-grants
//! privilege roles whose scope gained objects (a table created after the grant), and
//! reports drift: managed roles changed by hand. It is safe to run any time, from any
//! number of processes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use pgwarden_core::naming::{MARKER_ROLE, PRIVILEGE_ROLE_PREFIX};
use serde::Serialize;
use time::OffsetDateTime;

use crate::error::{ProvisionError, db, describe_db_error, transient};
use crate::ledger::{
    GrantState, PrivilegeRecord, PrivilegeState, RoleMode, read_ledger_cached,
    read_ledger_role_cached,
};
use crate::lock::Lock;
use crate::privilege::{privilege_role_name, staleness_query};
use crate::provision::Provisioner;
use crate::retry::with_retry;
use crate::revoke::RevocationReport;
use crate::sql::{Ident, timestamp};

/// One difference between a managed role and its ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// The role.
    pub username: String,
    /// What differs, in a sentence.
    pub what: String,
}

/// What a reconciliation did and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Grants revoked because they expired or had a revocation to finish.
    pub revoked: Vec<RevocationReport>,
    /// Memberships removed from persistent roles (`role: membership`).
    pub memberships_removed: Vec<String>,
    /// Login roles a grant id could not be found from by name (made by an earlier
    /// version of pgwarden still running), made members of
    /// [`pgwarden_core::naming::UNTAGGED_ROLE`] so that a grant retried with their id
    /// finds them.
    pub made_findable_by_id: Vec<String>,
    /// Privilege roles dropped because nobody used them.
    pub privilege_roles_dropped: Vec<String>,
    /// Privilege roles re-granted because their scope gained objects.
    pub privilege_roles_refreshed: Vec<String>,
    /// Objects that pgwarden's own roles (privilege roles, the marker) owned —
    /// created by a grantee acting as one of them — and that were removed, as
    /// `database: description`.
    pub owned_objects_removed: Vec<String>,
    /// Differences found (reported, not changed).
    pub drift: Vec<Drift>,
    /// What could not be done this time (retried next time).
    pub errors: Vec<ReconcileFailure>,
}

/// Something a reconciliation could not do this time; the next one retries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReconcileFailure {
    /// The role concerned: a grant's login role, a privilege role, or the roles whose
    /// objects were being removed (comma-separated).
    pub role: String,
    /// The grant, when the failure concerns one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// What was being done.
    pub kind: ReconcileFailureKind,
    /// What went wrong (the server's message; never a secret).
    pub message: String,
}

/// What a reconciliation was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReconcileFailureKind {
    /// Revoking an expired grant, or finishing an interrupted revocation.
    Revoke,
    /// Removing memberships (a persistent user's left by an interrupted revocation,
    /// or a privilege role's member that no grant lists).
    RemoveMembership,
    /// Disabling the login of a persistent user with no live grant left.
    DisableLogin,
    /// Re-granting a privilege role whose scope gained objects.
    RefreshPrivilegeRole,
    /// Dropping a privilege role nobody uses.
    DropPrivilegeRole,
    /// Removing objects owned by pgwarden's own roles.
    RemoveOwnedObjects,
    /// Making login roles findable by their grants' ids.
    MakeFindableById,
}

impl ReconcileFailure {
    pub(crate) fn new(
        role: impl Into<String>,
        grant_id: Option<&str>,
        kind: ReconcileFailureKind,
        error: impl fmt::Display,
    ) -> Self {
        ReconcileFailure {
            role: role.into(),
            grant_id: grant_id.map(str::to_owned),
            kind,
            message: error.to_string(),
        }
    }
}

impl fmt::Display for ReconcileFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ReconcileFailureKind::Revoke => "revoking",
            ReconcileFailureKind::RemoveMembership => "removing memberships of",
            ReconcileFailureKind::DisableLogin => "disabling the login of",
            ReconcileFailureKind::RefreshPrivilegeRole => "refreshing privilege role",
            ReconcileFailureKind::DropPrivilegeRole => "dropping privilege role",
            ReconcileFailureKind::RemoveOwnedObjects => "removing objects owned by",
            ReconcileFailureKind::MakeFindableById => "adding login roles to",
        };
        write!(f, "{what} {}", self.role)?;
        if let Some(id) = &self.grant_id {
            write!(f, " (grant {id})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Privilege roles with their comments and how many members they have; the
/// connector's own membership (createrole mode) does not count.
macro_rules! privilege_roles_sql {
    ($filter:literal) => {
        concat!(
            "
SELECT r.rolname::text, d.description,
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_auth_members m
        WHERE m.roleid = r.oid AND m.member <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)),
       r.oid
FROM pg_catalog.pg_roles r
LEFT JOIN pg_catalog.pg_shdescription d ON d.objoid = r.oid AND d.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid
WHERE ",
            $filter
        )
    };
}

/// Every membership (role, member, grantor) in a privilege role or in a login role
/// pgwarden manages (`$1`: the marker), but the connector's own (createrole mode).
/// Nobody is ever meant to be a member of a login role: that would hand on a
/// grantee's access (a persistent role's, between and across grants).
const PRIVILEGE_MEMBERS_SQL: &str = "
SELECT g.rolname::pg_catalog.text, u.rolname::pg_catalog.text,
       pg_catalog.pg_get_userbyid(m.grantor)::pg_catalog.text
FROM pg_catalog.pg_auth_members m
JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
JOIN pg_catalog.pg_roles u ON u.oid = m.member
WHERE u.rolname <> current_user
  AND (g.rolname LIKE 'pgwarden\\_p\\_%'::pg_catalog.text
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members mk
                  JOIN pg_catalog.pg_roles k ON k.oid = mk.roleid
                  WHERE mk.member = g.oid AND k.rolname = $1 AND NOT mk.admin_option))
ORDER BY 1, 2";

/// Every privilege role.
const PRIVILEGE_ROLES_SQL: &str =
    privilege_roles_sql!("r.rolname LIKE 'pgwarden\\_p\\_%'::pg_catalog.text ORDER BY 1");
/// One privilege role (`$1`).
const PRIVILEGE_ROLE_SQL: &str = privilege_roles_sql!("r.rolname = $1");

impl Provisioner {
    /// Reconciles the instance with its ledger (see the module documentation).
    pub async fn reconcile(&self) -> Result<ReconcileReport, ProvisionError> {
        self.reconcile_integration(None).await
    }

    /// [`Provisioner::reconcile`] limited to the grants one integration made (other
    /// integrations' login roles are left to them). Privilege roles are shared by
    /// every integration of the instance and are always reconciled.
    #[allow(
        clippy::too_many_lines,
        reason = "one pass over the ledger, case by case"
    )]
    pub async fn reconcile_integration(
        &self,
        only: Option<&str>,
    ) -> Result<ReconcileReport, ProvisionError> {
        let mut report = ReconcileReport::default();
        let now = OffsetDateTime::now_utc();
        let ledger = {
            let conn = self.admin.get().await?;
            read_ledger_cached(&*conn, &self.config.ledger_key)
                .await
                .map_err(db("reading the ledger"))?
        };
        for role in &ledger {
            if let (Some(only), Some(record)) = (only, &role.record)
                && record.integration != only
            {
                continue;
            }
            let Some(record) = &role.record else {
                report.drift.push(Drift {
                    username: role.username.clone(),
                    what: if role.has_comment {
                        "member of the marker role, but its comment is not a record pgwarden sealed for it (forged, altered, copied from another role, or sealed with another ledger key): never acted on".into()
                    } else {
                        "member of the marker role without a pgwarden record: not managed by pgwarden, left alone".into()
                    },
                });
                continue;
            };
            if role.elevated {
                report.drift.push(Drift {
                    username: role.username.clone(),
                    what: "has SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS, which pgwarden never grants".into(),
                });
            }
            match record.mode {
                RoleMode::Ephemeral => {
                    let Some(g) = record.grants.first() else {
                        continue;
                    };
                    if g.state == GrantState::Revoking || g.expires_at <= now {
                        match self
                            .revoke_role(&g.grant_id, &role.username, false, true)
                            .await
                        {
                            Ok(r) => report.revoked.push(r),
                            // Someone else is on it; their run reports it. Or it was
                            // extended since the ledger was read: it stays.
                            Err(
                                ProvisionError::InProgress { .. }
                                | ProvisionError::NotExpired { .. },
                            ) => {}
                            Err(e) => report.errors.push(ReconcileFailure::new(
                                &role.username,
                                Some(&g.grant_id),
                                ReconcileFailureKind::Revoke,
                                e,
                            )),
                        }
                        continue;
                    }
                    let expected: BTreeSet<&String> = g.privilege_roles.iter().collect();
                    let actual: BTreeSet<&String> = role.member_of.iter().collect();
                    if expected != actual {
                        report.drift.push(Drift {
                            username: role.username.clone(),
                            what: format!(
                                "memberships {actual:?} differ from the grant's {expected:?}"
                            ),
                        });
                    }
                    if !role.can_login {
                        report.drift.push(Drift {
                            username: role.username.clone(),
                            what: "active grant but NOLOGIN".into(),
                        });
                    }
                    if role.valid_until.map(time::OffsetDateTime::unix_timestamp)
                        != Some(g.expires_at.unix_timestamp())
                    {
                        report.drift.push(Drift {
                            username: role.username.clone(),
                            what: format!(
                                "VALID UNTIL {:?} differs from the grant's expiry {}",
                                role.valid_until.map(timestamp),
                                timestamp(g.expires_at)
                            ),
                        });
                    }
                }
                RoleMode::Persistent => {
                    for g in record
                        .grants
                        .iter()
                        .filter(|g| g.state == GrantState::Revoking || g.expires_at <= now)
                    {
                        match self.revoke(&g.grant_id).await {
                            Ok(r) => report.revoked.push(r),
                            Err(e) => report.errors.push(ReconcileFailure::new(
                                &role.username,
                                Some(&g.grant_id),
                                ReconcileFailureKind::Revoke,
                                e,
                            )),
                        }
                    }
                    // Memberships left by an interrupted revocation.
                    let live: BTreeSet<String> = record
                        .grants
                        .iter()
                        .filter(|g| g.state == GrantState::Active && g.expires_at > now)
                        .flat_map(|g| g.privilege_roles.iter().cloned())
                        .collect();
                    if role.member_of.iter().any(|m| !live.contains(m)) {
                        let conn = self.admin.get().await?;
                        match crate::revoke::remove_memberships(&conn, &role.username, &live).await
                        {
                            Ok(removed) => report.memberships_removed.extend(
                                removed
                                    .into_iter()
                                    .map(|m| format!("{}: {m}", role.username)),
                            ),
                            Err(e) => report.errors.push(ReconcileFailure::new(
                                &role.username,
                                None,
                                ReconcileFailureKind::RemoveMembership,
                                e,
                            )),
                        }
                    }
                    if live.is_empty() && role.can_login {
                        let conn = self.admin.get().await?;
                        let sql = format!("ALTER ROLE {} NOLOGIN", Ident(&role.username));
                        if let Err(e) = conn.batch_execute(&sql).await {
                            report.errors.push(ReconcileFailure::new(
                                &role.username,
                                None,
                                ReconcileFailureKind::DisableLogin,
                                describe_db_error(&e),
                            ));
                        } else if let Err(e) = crate::revoke::terminate_sessions(
                            &conn,
                            &role.username,
                            self.facts().await?.version_num,
                        )
                        .await
                        {
                            report.errors.push(ReconcileFailure::new(
                                &role.username,
                                None,
                                ReconcileFailureKind::DisableLogin,
                                e,
                            ));
                        }
                    }
                }
            }
        }
        match self.make_findable_by_id(&ledger).await {
            Ok(made) => report.made_findable_by_id = made,
            Err(e) => report.errors.push(ReconcileFailure::new(
                pgwarden_core::naming::UNTAGGED_ROLE,
                None,
                ReconcileFailureKind::MakeFindableById,
                e,
            )),
        }
        self.remove_unlisted_members(&ledger, &mut report).await?;
        self.reconcile_privilege_roles(&mut report).await?;
        let owned = self.remove_objects_owned_by_pgwarden().await?;
        report.owned_objects_removed = owned.removed;
        report
            .drift
            .extend(owned.left.into_iter().map(|what| Drift {
                username: String::new(),
                what,
            }));
        report.errors.extend(owned.errors);
        Ok(report)
    }

    #[allow(
        clippy::too_many_lines,
        reason = "one pass over the privilege roles, case by case"
    )]
    async fn reconcile_privilege_roles(
        &self,
        report: &mut ReconcileReport,
    ) -> Result<(), ProvisionError> {
        let rows = {
            let conn = self.admin.get().await?;
            conn.query(PRIVILEGE_ROLES_SQL, &[])
                .await
                .map_err(db("reading privilege roles"))?
        };
        for row in rows {
            let name: String = row.get(0);
            let oid: u32 = row.get(3);
            let record = row.get::<_, Option<String>>(1).as_deref().and_then(|c| {
                PrivilegeRecord::from_comment(&self.config.ledger_key, oid, &name, c)
            });
            let members: i64 = row.get(2);
            let Some(record) = record.filter(|r| privilege_role_name(&r.access) == name) else {
                report.drift.push(Drift {
                    username: name.clone(),
                    what: format!("named like a privilege role ({PRIVILEGE_ROLE_PREFIX}…) but carries no record pgwarden sealed for it: never granted to, left alone"),
                });
                continue;
            };
            let database = record
                .access
                .resource
                .database_name()
                .unwrap_or(self.connector.database())
                .to_owned();
            if members > 0 && record.state == PrivilegeState::Retiring {
                // A retirement was interrupted after a grant used the role: re-grant it.
                let entries = [&record.access];
                match with_retry(
                    || self.create_privilege_roles(&database, &entries, false),
                    transient,
                )
                .await
                {
                    Ok(()) => report.privilege_roles_refreshed.push(name),
                    Err(e) => report.errors.push(ReconcileFailure::new(
                        &name,
                        None,
                        ReconcileFailureKind::RefreshPrivilegeRole,
                        e,
                    )),
                }
                continue;
            }
            if members == 0 {
                match with_retry(
                    || self.drop_privilege_role(&name, &record, &database),
                    transient,
                )
                .await
                {
                    Ok(true) => report.privilege_roles_dropped.push(name),
                    Ok(false) => {}
                    Err(e) => report.errors.push(ReconcileFailure::new(
                        &name,
                        None,
                        ReconcileFailureKind::DropPrivilegeRole,
                        e,
                    )),
                }
                continue;
            }
            if let Some((sql, params)) = staleness_query(&record.access) {
                let pool = match self.pool(&database).await {
                    Ok(p) => p,
                    Err(e) => {
                        report.errors.push(ReconcileFailure::new(
                            &name,
                            None,
                            ReconcileFailureKind::RefreshPrivilegeRole,
                            e,
                        ));
                        continue;
                    }
                };
                let stale = async {
                    let conn = pool.get().await?;
                    let row = conn
                        .query_one(sql, &[&params[0], &name, &params[1]])
                        .await
                        .map_err(db(format!("checking {name}")))?;
                    Ok::<i64, ProvisionError>(row.get(0))
                }
                .await;
                match stale {
                    Ok(0) => {}
                    Ok(_) => {
                        // Re-running the idempotent grants covers the new objects.
                        match self.refresh_privilege_role(&database, &record).await {
                            Ok(()) => report.privilege_roles_refreshed.push(name),
                            Err(e) => report.errors.push(ReconcileFailure::new(
                                &name,
                                None,
                                ReconcileFailureKind::RefreshPrivilegeRole,
                                e,
                            )),
                        }
                    }
                    Err(e) => report.errors.push(ReconcileFailure::new(
                        &name,
                        None,
                        ReconcileFailureKind::RefreshPrivilegeRole,
                        e,
                    )),
                }
            }
        }
        Ok(())
    }

    /// Removes members of privilege roles that no authentic grant lists — someone ran
    /// `GRANT pgwarden_p_… TO x` by hand, or forged a ledger entry — and any member of
    /// a login role pgwarden manages, and reports them.
    /// Each is confirmed against a fresh read of that role's record under the role's
    /// lock (a persistent grant takes the same lock), so a grant made since `ledger`
    /// was read is never undone. On PostgreSQL 16+ every grantor's grant goes
    /// (`GRANTED BY`), not only the connector's.
    async fn remove_unlisted_members(
        &self,
        ledger: &[crate::ledger::LedgerRole],
        report: &mut ReconcileReport,
    ) -> Result<(), ProvisionError> {
        let listed: BTreeSet<(&str, &str)> = ledger
            .iter()
            .filter_map(|r| r.record.as_ref().map(|rec| (r.username.as_str(), rec)))
            .flat_map(|(u, rec)| rec.privilege_roles().map(move |p| (p.as_str(), u)))
            .collect();
        let key = &self.config.ledger_key;
        let version_num = self.facts().await?.version_num;
        let mut conn = self.admin.get().await?;
        let rows = conn
            .query(PRIVILEGE_MEMBERS_SQL, &[&MARKER_ROLE])
            .await
            .map_err(db("reading privilege roles' members"))?;
        // (role, member) -> the grantors of that membership (one row each on 16+).
        let mut suspects: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for row in &rows {
            let (role, member, grantor): (String, String, String) =
                (row.get(0), row.get(1), row.get(2));
            if !listed.contains(&(role.as_str(), member.as_str())) {
                suspects.entry((role, member)).or_default().push(grantor);
            }
        }
        for ((role, member), grantors) in suspects {
            let tx = Lock::Role { username: &member }
                .transaction(&mut conn, "locking the member role")
                .await?;
            let fresh = read_ledger_role_cached(&tx, key, &member)
                .await
                .map_err(db("reading the ledger"))?;
            let still_unlisted = !fresh
                .as_ref()
                .and_then(|r| r.record.as_ref())
                .is_some_and(|rec| rec.privilege_roles().any(|p| *p == role));
            if !still_unlisted {
                continue;
            }
            let sql = if version_num >= 160_000 {
                grantors
                    .iter()
                    .map(|g| {
                        format!(
                            "REVOKE {} FROM {} GRANTED BY {}",
                            Ident(&role),
                            Ident(&member),
                            Ident(g)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            } else {
                format!("REVOKE {} FROM {}", Ident(&role), Ident(&member))
            };
            match tx.batch_execute(&sql).await {
                Ok(()) => {
                    tx.commit()
                        .await
                        .map_err(db("committing a membership removal"))?;
                    tracing::warn!(privilege_role = %role, member = %member, "removed a membership no grant lists");
                    report.memberships_removed.push(format!(
                        "{member} from {role}: no grant of pgwarden lists it"
                    ));
                }
                Err(e) => report.errors.push(ReconcileFailure::new(
                    &member,
                    None,
                    ReconcileFailureKind::RemoveMembership,
                    format_args!(
                        "removing it from {role} (no grant lists it): {}",
                        describe_db_error(&e)
                    ),
                )),
            }
        }
        Ok(())
    }

    /// Re-grants a privilege role whose scope gained objects, under the same lock and
    /// transient-error retry as its creation.
    async fn refresh_privilege_role(
        &self,
        database: &str,
        record: &PrivilegeRecord,
    ) -> Result<(), ProvisionError> {
        let entries = [&record.access];
        with_retry(
            || self.create_privilege_roles(database, &entries, true),
            transient,
        )
        .await
    }

    /// Drops an unused privilege role, in two steps so that a crash never leaves a
    /// stripped role that looks ready: (1) mark it retiring (a grant then re-grants it
    /// before use); (2) if it still has no member and is still retiring, drop what it
    /// holds in its database and drop it. Both under the exclusive privileges lock.
    /// Returns false when a member appeared meanwhile.
    async fn drop_privilege_role(
        &self,
        name: &str,
        record: &PrivilegeRecord,
        database: &str,
    ) -> Result<bool, ProvisionError> {
        let n = Ident(name);
        // Step 1.
        {
            let mut conn = self.admin.get().await?;
            let tx = Lock::Privileges
                .transaction(&mut conn, "locking privilege cleanup")
                .await?;
            let Some(row) = tx
                .query_opt(PRIVILEGE_ROLE_SQL, &[&name])
                .await
                .map_err(db("counting members"))?
            else {
                return Ok(true);
            };
            let (members, oid): (i64, u32) = (row.get(2), row.get(3));
            if members > 0 {
                return Ok(false);
            }
            let mut retiring = record.clone();
            retiring.state = PrivilegeState::Retiring;
            tx.batch_execute(&retiring.comment_on(&self.config.ledger_key, oid, name))
                .await
                .map_err(db("marking a privilege role retiring"))?;
            tx.commit()
                .await
                .map_err(db("committing privilege cleanup"))?;
        }
        self.forget_privilege_role(name);
        // Step 2.
        let mut conn = self.admin.get().await?;
        let tx = Lock::Privileges
            .transaction(&mut conn, "locking privilege cleanup")
            .await?;
        let row = tx
            .query_opt(PRIVILEGE_ROLE_SQL, &[&name])
            .await
            .map_err(db("reading a privilege role"))?;
        let Some(row) = row else { return Ok(true) };
        let oid: u32 = row.get(3);
        let still_retiring = row
            .get::<_, Option<String>>(1)
            .as_deref()
            .and_then(|c| PrivilegeRecord::from_comment(&self.config.ledger_key, oid, name, c))
            .is_some_and(|p| p.state == PrivilegeState::Retiring);
        if !still_retiring || row.get::<_, i64>(2) > 0 {
            return Ok(false);
        }
        if database == self.connector.database() {
            // Same database: no second connection (grants waiting for the lock may
            // hold the rest of the pool).
            tx.batch_execute(&format!("DROP OWNED BY {n}"))
                .await
                .map_err(db(format!("removing privilege role {name}'s privileges")))?;
        } else {
            let pool = self.pool(database).await?;
            let holder = pool.get().await?;
            holder
                .batch_execute(&format!("DROP OWNED BY {n}"))
                .await
                .map_err(db(format!(
                    "removing privilege role {name}'s privileges in {database}"
                )))?;
        }
        tx.batch_execute(&format!("DROP ROLE {n}"))
            .await
            .map_err(db(format!("dropping privilege role {name}")))?;
        tx.commit()
            .await
            .map_err(db("committing privilege cleanup"))?;
        Ok(true)
    }
}
