//! Listing every grant recorded in the instance.

use time::OffsetDateTime;

use super::Provisioner;
use super::hints::Seen;
use super::request::ListedGrant;
use crate::error::{ProvisionError, db};
use crate::ledger::read_ledger;

impl Provisioner {
    /// Every grant recorded in the instance.
    pub async fn list(&self) -> Result<Vec<ListedGrant>, ProvisionError> {
        let conn = self.admin.get().await?;
        let ledger = read_ledger(&**conn, &self.config.ledger_key)
            .await
            .map_err(db("reading the ledger"))?;
        let now = OffsetDateTime::now_utc();
        for r in &ledger {
            for g in r.record.iter().flat_map(|rec| &rec.grants) {
                self.hints
                    .remember_seen(&g.grant_id, &r.username, Seen::of(r));
            }
        }
        Ok(ledger
            .iter()
            .filter_map(|r| r.record.as_ref().map(|rec| (r, rec)))
            .flat_map(|(r, rec)| {
                rec.grants
                    .iter()
                    .map(move |g| ListedGrant::new(&r.username, rec, g, now))
            })
            .collect())
    }
}
