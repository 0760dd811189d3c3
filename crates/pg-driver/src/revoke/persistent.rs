//! A persistent role's grant revoked: the role and its objects are kept.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use pgwarden_core::session::SessionLimits;
use time::OffsetDateTime;

use super::finish::{remove_memberships, terminate_sessions};
use super::{RevocationReport, not_expired};
use crate::error::{ProvisionError, db, transient};
use crate::ledger::{GrantState, read_ledger};
use crate::lock::Lock;
use crate::provision::{Provisioner, Step, reapply_sql};
use crate::retry::with_retry;
use crate::sql::{Ident, literal, timestamp};

impl Provisioner {
    /// A persistent role: drop this grant's memberships (those no other active grant
    /// needs); with no grant left, disable login and end sessions. Objects are kept.
    pub(super) async fn revoke_persistent(
        &self,
        grant_id: &str,
        username: &str,
        expired_only: bool,
    ) -> Result<RevocationReport, ProvisionError> {
        let mut report = RevocationReport::for_role(grant_id, username);
        self.step(Step::RevokeMark)?;
        let remaining = with_retry(
            || async {
                let mut conn = self.admin.get().await?;
                let tx = Lock::Role { username }
                    .transaction(&mut conn, "locking the persistent role")
                    .await?;
                let key = &self.config.ledger_key;
                let ledger = read_ledger(&*tx, key)
                    .await
                    .map_err(db("reading the ledger"))?;
                let Some((oid, mut record)) = ledger
                    .iter()
                    .find(|r| r.username == username)
                    .and_then(|r| r.record.clone().map(|rec| (r.oid, rec)))
                else {
                    return Ok(None);
                };
                let now = OffsetDateTime::now_utc();
                if expired_only && not_expired(&record, grant_id, now) {
                    return Err(ProvisionError::NotExpired {
                        grant_id: grant_id.to_owned(),
                    });
                }
                // Limits involved: the role's settings are rewritten from the grants
                // it keeps (reset to none when it keeps none).
                let had_limits = record.grants.iter().any(|g| !g.session.is_empty());
                record.grants.retain(|g| g.grant_id != grant_id);
                record
                    .grants
                    .retain(|g| g.expires_at > now && g.state == GrantState::Active);
                let u = Ident(username);
                let mut sql = record.comment_on(key, oid, username);
                if had_limits {
                    let limits = SessionLimits::combined(record.grants.iter().map(|g| &g.session));
                    let _ = write!(sql, "; {}", reapply_sql(username, &limits));
                }
                if record.grants.is_empty() {
                    let _ = write!(
                        sql,
                        "; ALTER ROLE {u} NOLOGIN VALID UNTIL {}",
                        literal(&timestamp(now))
                    );
                } else {
                    let until = record
                        .grants
                        .iter()
                        .map(|g| g.expires_at)
                        .max()
                        .unwrap_or(now);
                    let _ = write!(
                        sql,
                        "; ALTER ROLE {u} VALID UNTIL {}",
                        literal(&timestamp(until))
                    );
                }
                tx.batch_execute(&sql)
                    .await
                    .map_err(db("updating the persistent role"))?;
                tx.commit().await.map_err(db("committing the revocation"))?;
                Ok(Some(record))
            },
            transient,
        )
        .await?;
        let Some(record) = remaining else {
            report.already_revoked = true;
            return Ok(report);
        };
        let keep: BTreeSet<String> = record.privilege_roles().cloned().collect();
        if record.grants.is_empty() {
            report.login_disabled = true;
            self.step(Step::RevokeTerminateSessions)?;
            let version_num = self.facts().await?.version_num;
            let conn = self.admin.get().await?;
            report.sessions_terminated = terminate_sessions(&conn, username, version_num).await?;
        }
        self.step(Step::RevokeMemberships)?;
        let conn = self.admin.get().await?;
        report.memberships_removed = remove_memberships(&conn, username, &keep).await?;
        if !record.grants.is_empty() && !report.memberships_removed.is_empty() {
            // Other grants go on, so login stays; but no session may keep using what
            // this one gave (on 15 and earlier one may even have SET ROLE to a
            // privilege role): they end, and reconnect with the remaining access.
            let version_num = self.facts().await?.version_num;
            report.sessions_terminated = terminate_sessions(&conn, username, version_num).await?;
        }
        tracing::info!(grant_id, username, "revoked (persistent role kept)");
        Ok(report)
    }
}
