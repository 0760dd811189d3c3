//! Granting to a persistent user: one stable login role per requester, kept
//! (`NOLOGIN`) between grants, given a new password when its own is too old, carrying
//! the combined session limits of its active grants (see [`super::session`]).

use std::fmt::Write as _;

use pgwarden_core::session::SessionLimits;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::Provisioner;
use super::grant::{sanitize_requester, silence_statement_log};
use super::request::Grant;
use super::roles::{ConnectorFacts, NewLoginRole, create_role_returning_oid};
use super::session::{explain_settings_error, reapply_sql};
use super::steps::Step;
use crate::error::{ProvisionError, db};
use crate::ledger::{
    GrantEntry, GrantState, LEDGER_VERSION, RoleMode, RoleRecord, Seqscan, find_grant,
    read_ledger_role_cached,
};
use crate::lock::Lock;
use crate::scram::{generate_password, verifier};
use crate::sql::{Ident, literal, timestamp};

impl Provisioner {
    /// The stable role name of a persistent user: prefix, readable requester, and a
    /// short hash so two requesters that sanitize alike never share a role.
    fn persistent_name(&self, requester: &str) -> String {
        let hash = Sha256::digest(requester.as_bytes());
        let max = 63 - self.config.username_prefix.len() - 7;
        format!(
            "{}{}_{:02x}{:02x}{:02x}",
            self.config.username_prefix,
            sanitize_requester(requester, max),
            hash[0],
            hash[1],
            hash[2]
        )
    }

    #[allow(clippy::too_many_lines, reason = "one transaction, read top to bottom")]
    pub(super) async fn grant_persistent(
        &self,
        entry: &GrantEntry,
        now: OffsetDateTime,
        facts: &ConnectorFacts,
    ) -> Result<Grant, ProvisionError> {
        let username = self.persistent_name(&entry.requester);
        let mut conn = self.admin.get().await?;
        let tx = Lock::Role {
            username: &username,
        }
        .transaction(&mut conn, "locking the persistent role")
        .await?;
        // Held until commit, as an ephemeral grant with an explicit id does: a
        // revocation of this id waits for the grant instead of missing it.
        Lock::Grant {
            grant_id: &entry.grant_id,
        }
        .acquire(&*tx)
        .await
        .map_err(db("locking the grant id"))?;
        let ledger = self
            .ledger_for_grant(&tx, &entry.grant_id, Seqscan::TurnOff)
            .await
            .map_err(db("reading the ledger"))?;
        if let Some((role, g)) = find_grant(&ledger, &entry.grant_id) {
            return Ok(Grant::existing(role, g));
        }
        self.lock_ready_privilege_roles(&tx, &entry.privilege_roles)
            .await?;
        let existing = read_ledger_role_cached(&tx, &self.config.ledger_key, &username)
            .await
            .map_err(db("reading the ledger"))?
            .and_then(|r| r.record.map(|rec| (r.oid, rec)));
        let u = Ident(&username);
        let key = &self.config.ledger_key;
        let password = match existing {
            None => {
                // A role of that name that is not in the ledger with an authentic
                // record (someone else's, or forged) makes CREATE ROLE fail: its
                // password is never touched.
                let record = RoleRecord {
                    pgwarden: LEDGER_VERSION,
                    integration: self.config.integration.clone(),
                    mode: RoleMode::Persistent,
                    password_set_at: Some(now),
                    grants: vec![entry.clone()],
                };
                let role = NewLoginRole::new(
                    username.clone(),
                    record,
                    entry,
                    facts,
                    self.config.scram_iterations,
                );
                silence_statement_log(&*tx, facts.superuser).await?;
                let oid = create_role_returning_oid(&*tx, &role.create, &username)
                    .await
                    .map_err(|e| explain_settings_error(e, &entry.session, facts))?;
                tx.batch_execute(&role.finish(&role.comment(key, oid)))
                    .await
                    .map_err(db("granting to the persistent role"))?;
                Some(role.password)
            }
            Some((oid, mut record)) => {
                if let Some(other) = record
                    .grants
                    .iter()
                    .find(|g| g.requester != entry.requester)
                {
                    return Err(ProvisionError::NotAuthentic(format!(
                        "persistent role {username} belongs to requester {:?}, not {:?}: refusing to hand it over",
                        other.requester, entry.requester
                    )));
                }
                let stale = match (record.password_set_at, self.config.password_max_age) {
                    (Some(set), Some(max)) => now - set >= max,
                    (None, _) => true,
                    (_, None) => false,
                };
                let password = stale.then(generate_password);
                if password.is_some() {
                    record.password_set_at = Some(now);
                }
                // Limits involved (a grant's that ends here, or the new one's): the
                // role's settings are rewritten from the grants it keeps.
                let had_limits = record
                    .grants
                    .iter()
                    .chain(std::iter::once(entry))
                    .any(|g| !g.session.is_empty());
                record.grants.retain(|g| g.state == GrantState::Active);
                record.grants.push(entry.clone());
                let limits = SessionLimits::combined(
                    record
                        .grants
                        .iter()
                        .filter(|g| g.expires_at > now)
                        .map(|g| &g.session),
                );
                let until = record
                    .grants
                    .iter()
                    .map(|g| g.expires_at)
                    .max()
                    .unwrap_or(entry.expires_at);
                let mut sql = String::new();
                if had_limits {
                    let _ = write!(sql, "{}; ", reapply_sql(&username, &limits));
                }
                for r in &entry.privilege_roles {
                    let _ = write!(sql, "{}; ", facts.grant_membership([r.as_str()], &username));
                }
                let _ = write!(
                    sql,
                    "ALTER ROLE {u} LOGIN VALID UNTIL {}",
                    literal(&timestamp(until))
                );
                if let Some(p) = &password {
                    let _ = write!(
                        sql,
                        " PASSWORD {}",
                        literal(verifier(p, self.config.scram_iterations).as_str())
                    );
                }
                let _ = write!(sql, "; {}", record.comment_on(key, oid, &username));
                silence_statement_log(&*tx, facts.superuser).await?;
                tx.batch_execute(&sql).await.map_err(|e| {
                    explain_settings_error(db("granting to the persistent role")(e), &limits, facts)
                })?;
                password
            }
        };
        self.step(Step::GrantCommit)?;
        tx.commit().await.map_err(db("committing the grant"))?;
        tracing::info!(grant_id = %entry.grant_id, username = %username, expires_at = %entry.expires_at, "granted (persistent)");
        Ok(Grant::made(entry, username, RoleMode::Persistent, password))
    }
}
