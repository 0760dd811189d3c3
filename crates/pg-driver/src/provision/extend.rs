//! Extending a grant: a new expiry, under the grant's lock.

use time::OffsetDateTime;

use super::Provisioner;
use super::hints::Seen;
use super::request::{Expiry, ListedGrant};
use crate::error::{ProvisionError, db};
use crate::ledger::{GrantState, LEDGER_VERSION, RoleMode, RoleRecord, find_grant};
use crate::lock::Lock;
use crate::sql::{Ident, comment_on_role, literal, timestamp};

impl Provisioner {
    /// Moves a grant's expiry (bounded by `max_ttl` from now).
    pub async fn extend(
        &self,
        grant_id: &str,
        expiry: Expiry,
    ) -> Result<ListedGrant, ProvisionError> {
        let now = OffsetDateTime::now_utc();
        let expires_at = self.expiry_instant(expiry, now)?;
        let mut conn = self.admin.get().await?;
        let tx = Lock::Grant { grant_id }
            .transaction(&mut conn, "locking the grant id")
            .await?;
        let ledger = self
            .ledger_for_grant_or_scan(&tx, grant_id)
            .await
            .map_err(db("reading the ledger"))?;
        let Some((role, _)) =
            find_grant(&ledger, grant_id).filter(|(_, g)| g.state == GrantState::Active)
        else {
            return Err(ProvisionError::UnknownGrant {
                grant_id: grant_id.to_owned(),
            });
        };
        let mut record = role.record.clone().unwrap_or_else(unreachable_record);
        let oid = role.oid;
        for g in &mut record.grants {
            if g.grant_id == grant_id {
                g.expires_at = expires_at;
            }
        }
        let until = record
            .grants
            .iter()
            .map(|g| g.expires_at)
            .max()
            .unwrap_or(expires_at);
        let comment = record.to_comment(&self.config.ledger_key, oid, &role.username);
        let sql = format!(
            "ALTER ROLE {u} VALID UNTIL {t}; {c}",
            u = Ident(&role.username),
            t = literal(&timestamp(until)),
            c = comment_on_role(&role.username, &comment)
        );
        tx.batch_execute(&sql)
            .await
            .map_err(db("extending the grant"))?;
        tx.commit().await.map_err(db("committing the extension"))?;
        let seen = Seen::written(role, &record, comment);
        self.hints.remember_seen(grant_id, &role.username, seen);
        let g = record
            .grants
            .iter()
            .find(|g| g.grant_id == grant_id)
            .cloned()
            .unwrap_or_else(|| record.grants[0].clone());
        tracing::info!(grant_id, username = %role.username, expires_at = %expires_at, "extended");
        Ok(ListedGrant::new(&role.username, &record, &g, now))
    }
}

/// A record `find_grant` found but that holds no grant: cannot happen (a role is
/// found through the grants of its record).
fn unreachable_record() -> RoleRecord {
    RoleRecord {
        pgwarden: LEDGER_VERSION,
        integration: String::new(),
        mode: RoleMode::Ephemeral,
        password_set_at: None,
        grants: Vec::new(),
    }
}
