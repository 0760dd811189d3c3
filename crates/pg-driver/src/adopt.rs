//! Adopting a ledger written before records were sealed (pgwarden 0.1: plain JSON).
//!
//! Sealed records are the only ones pgwarden acts on, so after an upgrade the grants
//! an earlier version made would be reported as drift and never revoked. An operator
//! who trusts the instance's current state runs [`Provisioner::adopt_unsealed_ledger`]
//! once (`pgwarden adopt-ledger`): every format-1 record — on the marker role, on its
//! login-role members, on privilege roles whose name matches what they grant — is
//! sealed for its role, under the exclusive privileges lock. Anything else is listed
//! and left alone. Adoption trusts what it finds: run it right after the upgrade,
//! before anyone could have forged a plain record.

use std::fmt::Write as _;

use pgwarden_core::naming::MARKER_ROLE;
use serde::Serialize;

use crate::error::{ProvisionError, db};
use crate::ledger::{LEDGER_VERSION, MarkerRecord, PrivilegeRecord, RoleRecord};
use crate::lock::Lock;
use crate::privilege::privilege_role_name;
use crate::provision::Provisioner;
use crate::sql::comment_on_role;

/// The format of the records adoption seals.
const UNSEALED_VERSION: u32 = 1;

/// Roles pgwarden may have written records on: the marker, its login-role members and
/// privilege roles, each with its oid and comment.
const CANDIDATES_SQL: &str = "
SELECT r.oid, r.rolname::pg_catalog.text, d.description,
       CASE WHEN r.rolname = $1 THEN 'marker'
            WHEN r.rolname LIKE 'pgwarden\\_p\\_%'::pg_catalog.text THEN 'privilege'
            ELSE 'login' END
FROM pg_catalog.pg_roles r
LEFT JOIN pg_catalog.pg_shdescription d
       ON d.objoid = r.oid AND d.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid
WHERE r.rolname = $1
   OR r.rolname LIKE 'pgwarden\\_p\\_%'::pg_catalog.text
   OR EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m
              JOIN pg_catalog.pg_roles k ON k.oid = m.roleid
              WHERE m.member = r.oid AND k.rolname = $1 AND NOT m.admin_option)
ORDER BY 2";

/// What adoption sealed and what it left.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AdoptionReport {
    /// The marker role's record was sealed.
    pub marker: bool,
    /// Login roles whose record was sealed.
    pub login_roles: Vec<String>,
    /// Privilege roles whose record was sealed.
    pub privilege_roles: Vec<String>,
    /// Roles already sealed with this key.
    pub already_sealed: usize,
    /// Roles with no record adoption recognises, left alone (and reported as drift
    /// by reconcile): `name: why`.
    pub left: Vec<String>,
}

impl Provisioner {
    /// Seals every unsealed (format 1) record pgwarden wrote before records were
    /// sealed. See the module documentation; idempotent.
    pub async fn adopt_unsealed_ledger(&self) -> Result<AdoptionReport, ProvisionError> {
        let key = &self.config().ledger_key;
        let mut report = AdoptionReport::default();
        let mut conn = self.admin.get().await?;
        let tx = Lock::Privileges
            .transaction(&mut conn, "locking adopting the ledger")
            .await?;
        let rows = tx
            .query(CANDIDATES_SQL, &[&MARKER_ROLE])
            .await
            .map_err(db("reading the ledger to adopt"))?;
        let mut sql = String::new();
        for row in rows {
            let (oid, name, comment, kind): (u32, String, Option<String>, String) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            let Some(comment) = comment else {
                report.left.push(format!("{name}: no comment"));
                continue;
            };
            let sealed = match kind.as_str() {
                "marker" => {
                    if MarkerRecord::authentic(key, oid, &comment) {
                        None
                    } else {
                        report.marker = true;
                        Some(MarkerRecord::new().to_comment(key, oid, MARKER_ROLE))
                    }
                }
                "privilege" => {
                    if PrivilegeRecord::from_comment(key, oid, &name, &comment).is_some() {
                        None
                    } else {
                        match serde_json::from_str::<PrivilegeRecord>(&comment) {
                            Ok(mut r)
                                if r.pgwarden == UNSEALED_VERSION
                                    && privilege_role_name(&r.access) == name =>
                            {
                                r.pgwarden = LEDGER_VERSION;
                                report.privilege_roles.push(name.clone());
                                Some(r.to_comment(key, oid, &name))
                            }
                            _ => {
                                report
                                    .left
                                    .push(format!("{name}: not a format-1 privilege record"));
                                continue;
                            }
                        }
                    }
                }
                _ => {
                    if RoleRecord::from_comment(key, oid, &name, &comment).is_some() {
                        None
                    } else {
                        match serde_json::from_str::<RoleRecord>(&comment) {
                            Ok(mut r) if r.pgwarden == UNSEALED_VERSION => {
                                r.pgwarden = LEDGER_VERSION;
                                report.login_roles.push(name.clone());
                                Some(r.to_comment(key, oid, &name))
                            }
                            _ => {
                                report
                                    .left
                                    .push(format!("{name}: not a format-1 grant record"));
                                continue;
                            }
                        }
                    }
                }
            };
            match sealed {
                Some(c) => {
                    let _ = write!(sql, "{}; ", comment_on_role(&name, &c));
                }
                None => report.already_sealed += 1,
            }
        }
        if !sql.is_empty() {
            tx.batch_execute(&sql)
                .await
                .map_err(db("sealing the adopted records"))?;
        }
        tx.commit().await.map_err(db("committing the adoption"))?;
        tracing::info!(
            login_roles = report.login_roles.len(),
            privilege_roles = report.privilege_roles.len(),
            marker = report.marker,
            "adopted the unsealed ledger"
        );
        Ok(report)
    }
}
