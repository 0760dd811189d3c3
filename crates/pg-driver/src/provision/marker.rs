//! The marker role: every login role pgwarden manages is a member of it, and it
//! carries a record pgwarden sealed for it.

use pgwarden_core::naming::MARKER_ROLE;

use super::Provisioner;
use super::roles::{NewRole, create_role_returning_oid};
use crate::error::{ProvisionError, db};
use crate::ledger::{MarkerRecord, ROLE_RECORD_SQL};
use crate::lock::Lock;

impl Provisioner {
    /// Makes sure the marker role exists, is pgwarden's, and (createrole mode, 16+)
    /// that the connector may add members to it. Once per provisioner.
    pub(super) async fn ensure_marker(&self) -> Result<(), ProvisionError> {
        self.marker_ready
            .get_or_try_init(|| async {
                let facts = self.facts().await?;
                let mut conn = self.admin.get().await?;
                if !self.check_marker(&**conn).await? {
                    // Created under the exclusive privileges lock: two first grants
                    // racing make one marker, sealed once.
                    let tx = Lock::Privileges
                        .transaction(&mut conn, "locking creating the marker role")
                        .await?;
                    if !self.check_marker(&*tx).await? {
                        let oid = create_role_returning_oid(
                            &*tx,
                            &facts.create_role(&NewRole::Marker),
                            MARKER_ROLE,
                        )
                        .await?;
                        tx.batch_execute(
                            &MarkerRecord::new().comment_on(&self.config.ledger_key, oid),
                        )
                        .await
                        .map_err(db("sealing the marker role"))?;
                    }
                    tx.commit().await.map_err(db("creating the marker role"))?;
                }
                if facts.createrole_mode && facts.version_num >= 160_000 {
                    // A CREATEROLE connector adds members only to roles it holds ADMIN
                    // OPTION on: the marker may have been made by another role.
                    let admin: bool = conn
                        .query_one(
                            "SELECT pg_catalog.pg_has_role(current_user, $1::pg_catalog.text::pg_catalog.regrole, 'MEMBER WITH ADMIN OPTION')",
                            &[&MARKER_ROLE],
                        )
                        .await
                        .map_err(db("checking the marker role"))?
                        .get(0);
                    if !admin {
                        return Err(ProvisionError::ConnectorMode(format!(
                            "role {MARKER_ROLE} was created by another role and connector {n} holds no ADMIN OPTION on it, so it cannot add login roles to it: as a superuser (or the provider's admin) run GRANT {MARKER_ROLE} TO {n} WITH ADMIN OPTION",
                            n = facts.name
                        )));
                    }
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// Whether the marker role exists (false: create it). One that exists must carry
    /// the record pgwarden sealed for it: a marker made by someone else could be used
    /// to hide login roles from the ledger, or to plant forged ones.
    async fn check_marker<C: tokio_postgres::GenericClient>(
        &self,
        client: &C,
    ) -> Result<bool, ProvisionError> {
        let row = client
            .query_opt(ROLE_RECORD_SQL, &[&MARKER_ROLE])
            .await
            .map_err(db("reading the marker role"))?;
        let Some(row) = row else { return Ok(false) };
        let (oid, comment): (u32, Option<String>) = (row.get(0), row.get(1));
        if comment.is_some_and(|c| MarkerRecord::authentic(&self.config.ledger_key, oid, &c)) {
            return Ok(true);
        }
        Err(ProvisionError::NotAuthentic(format!(
            "role {MARKER_ROLE} exists but carries no record sealed by pgwarden with this ledger key: another tool or user made or altered it, or another integration manages this instance with a different ledger key. pgwarden will not use it: give every integration of this instance the same ledger key, or, if no pgwarden manages this instance, drop the role (DROP ROLE {MARKER_ROLE})"
        )))
    }
}
