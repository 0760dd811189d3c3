//! Rotating the connector's own password without ever locking it out.
//!
//! 1. Stage: the new password goes into the store as *pending*; the current one
//!    stays current and keeps working.
//! 2. `ALTER ROLE CURRENT_USER PASSWORD '<SCRAM verifier>'` (the plaintext never
//!    reaches the server).
//! 3. Verify: a fresh login with the new password. If it fails, the old verifier is
//!    restored and the rotation stops.
//! 4. Promote: the pending password becomes current in the store.
//!
//! A failure or crash at any point leaves the connector able to log in: before 2 the
//! old password is current everywhere; after 2 the store holds the new one as
//! pending, and [`Integration::connect`] (or the next rotation) finds the current
//! password refused, the pending one accepted, and promotes it.
//!
//! **One rotation at a time per connector role.** Every process and every
//! integration that logs in as the same connector role rotates the same password,
//! whatever its integration name or database, so the lock belongs to the role: the
//! session advisory lock [`Lock::Rotation`]. Advisory locks are per database, and two
//! integrations on one connector may point at different databases, so the lock is
//! taken in a database every one of them finds the same way
//! ([`rotation_lock_database`]): the connectable (`datallowconn`), non-template
//! database with the lowest oid on which the role has CONNECT. Databases and the
//! role's privileges are instance-wide, so all of them see the same answer (normally
//! `postgres`, created by `initdb` before any other), independent of their own config.
//!
//! `ALTER ROLE`, and putting the old password back when the new one is refused, run
//! on the session that holds the lock, so they never run while another rotation
//! does: if that session ends, the lock is gone and so is any chance to run them.
//! After taking the lock a rotation re-reads the store and switches to the password
//! that logs in now (a rotation that waited sees the other's new password; one that
//! finds an unpromoted staged password that works promotes it first), and the "old
//! password" it would restore is that one: never an older one over another
//! process's new one.
//!
//! Replicas that did not rotate keep their sessions; their next login with the old
//! password is refused, and they re-read the store (the current password, then the
//! staged one), reconnect with the one that logs in and retry what they were doing
//! once; one such refresh at a time per process, with a bounded, jittered backoff
//! while neither password logs in.

use pgwarden_core::credentials::Credentials;
use pgwarden_pg_driver::{
    Connection, Connector, Lock, generate_password, rotation_lock_database, set_connector_password,
    verifier,
};
use pgwarden_secrets::SecretStoreExt;
use secrecy::ExposeSecret;
use time::OffsetDateTime;

use crate::audit::AuditAction;
use crate::error::IntegrationError;
use crate::integration::{Integration, build_connected};

/// The document field recording when the password was last rotated (RFC 3339).
pub const ROTATED_AT_FIELD: &str = "rotated_at";

// Fault injection (tests): public with the `testing` feature, not semver API.
#[cfg(not(feature = "testing"))]
use hooks::{RotationFault, RotationHook, RotationStep};
#[cfg(feature = "testing")]
pub use hooks::{RotationFault, RotationHook, RotationStep};

mod hooks {
    #![cfg_attr(
        not(feature = "testing"),
        allow(
            unreachable_pub,
            dead_code,
            reason = "public with the testing feature; without it nothing is injected"
        )
    )]

    use std::sync::Arc;

    /// A step of a rotation, for fault injection (feature `testing`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum RotationStep {
        /// Writing the pending password to the store.
        StorePending,
        /// Changing the role's password.
        AlterRole,
        /// Logging in with the new password.
        Verify,
        /// Making the pending password current in the store.
        Promote,
    }

    /// How an injected fault behaves (feature `testing`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum RotationFault {
        /// The step fails; the rotation handles it as a real failure.
        Fail,
        /// The process dies before the step: nothing after it runs, nothing is undone.
        Crash,
    }

    /// A fault-injection hook for tests (feature `testing`).
    pub type RotationHook = Arc<dyn Fn(RotationStep) -> Option<RotationFault> + Send + Sync>;
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RotationReport {
    /// The connector role.
    pub username: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub rotated_at: OffsetDateTime,
}

impl Integration {
    /// Rotates the connector's password now (see the module docs).
    pub async fn rotate_credentials(&self) -> Result<RotationReport, IntegrationError> {
        self.rotate_audited(None).await
    }

    /// [`Integration::rotate_credentials`] with a fault-injection hook (tests; feature
    /// `testing`).
    #[cfg(feature = "testing")]
    pub async fn rotate_with_hook(
        &self,
        hook: Option<RotationHook>,
    ) -> Result<RotationReport, IntegrationError> {
        self.rotate_audited(hook).await
    }

    /// A rotation, audited.
    async fn rotate_audited(
        &self,
        hook: Option<RotationHook>,
    ) -> Result<RotationReport, IntegrationError> {
        let result = self.rotate_inner(hook).await;
        self.audit(AuditAction::Rotate, |e| match &result {
            Ok(r) => {
                e.username = Some(r.username.clone());
                e.detail = "connector password rotated".into();
            }
            Err(err) => {
                e.error = Some(err.to_string());
                e.error_kind = Some(err.kind());
                e.detail =
                    "connector password rotation stopped; the connector still logs in".into();
            }
        });
        result
    }

    /// Rotates when `credential_rotation_days` have passed since the last rotation
    /// (or none is recorded).
    pub async fn rotate_if_due(&self) -> Result<Option<RotationReport>, IntegrationError> {
        let Some(days) = self.config.credential_rotation_days else {
            return Ok(None);
        };
        let stored = self.secrets.get_credentials(&self.key).await?;
        let last = stored
            .document
            .fields()
            .get(ROTATED_AT_FIELD)
            .and_then(|v| v.as_str())
            .and_then(|s| {
                OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
            });
        let due = last
            .is_none_or(|t| OffsetDateTime::now_utc() - t >= time::Duration::days(i64::from(days)));
        if due {
            self.rotate_credentials().await.map(Some)
        } else {
            Ok(None)
        }
    }

    #[allow(clippy::too_many_lines, reason = "the protocol's four steps, in order")]
    async fn rotate_inner(
        &self,
        hook: Option<RotationHook>,
    ) -> Result<RotationReport, IntegrationError> {
        let fault = |step: RotationStep| hook.as_ref().and_then(|h| h(step));
        let stop = |step: &'static str, message: &str| IntegrationError::Rotation {
            step,
            message: message.to_owned(),
        };
        // One rotation at a time per connector role, across every process and
        // integration: a session lock on a dedicated connection (see the module docs).
        let (lock, role) = self.lock_rotation().await?;

        // A rotation that waited for another sees its new password here: log in with
        // what the store holds now. `old` is what logs in, and what a failed
        // verification puts back.
        self.refresh_from(None).await?;
        let old = self.connected().await.credentials.clone();
        let mut current = self.secrets.get_credentials(&self.key).await?;
        if current.credentials.password.expose_secret() != old.password.expose_secret() {
            // The stored current password is refused and the staged one works: an
            // earlier rotation changed the role and stopped before promoting.
            match self.secrets.pending_password(&self.key).await? {
                Some(p) if p.password.expose_secret() == old.password.expose_secret() => {
                    self.secrets.promote_password(&self.key, &p.version).await?;
                    tracing::warn!(integration = %self.config.name, "finished an interrupted credential rotation: the staged password is now current");
                }
                _ => {
                    return Err(stop(
                        "lock",
                        "the secret store was changed by another writer while this rotation held the lock: the password that logs in is neither its current nor its staged one; nothing changed",
                    ));
                }
            }
            current = self.secrets.get_credentials(&self.key).await?;
        }
        let new_password = generate_password();
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc());
        current.document.set(
            ROTATED_AT_FIELD,
            &now.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        );

        // 1. Stage.
        match fault(RotationStep::StorePending) {
            Some(RotationFault::Crash) => return Err(stop("store pending", "simulated crash")),
            Some(RotationFault::Fail) => {
                return Err(stop("store pending", "injected failure; nothing changed"));
            }
            None => {}
        }
        let staged = self
            .secrets
            .stage_password(&self.key, &current, &new_password)
            .await?;

        // 2. ALTER ROLE, silencing the statement log first (superusers).
        let superuser = self.preflight.role.superuser;
        let session = &lock.client;
        let alter = |password: &secrecy::SecretString| {
            let v = verifier(password, self.options.scram_iterations);
            async move { set_connector_password(session, &v, superuser).await }
        };
        match fault(RotationStep::AlterRole) {
            Some(RotationFault::Crash) => {
                return Err(stop(
                    "alter role",
                    "simulated crash; the store holds the new password as pending",
                ));
            }
            Some(RotationFault::Fail) => {
                return Err(stop(
                    "alter role",
                    "injected failure; the old password is unchanged",
                ));
            }
            None => {}
        }
        alter(&new_password)
            .await
            .map_err(|e| stop("alter role", &format!("{e}; the old password is unchanged")))?;

        // 3. Verify with a fresh login.
        let new_credentials = Credentials {
            username: old.username.clone(),
            password: new_password.clone(),
        };
        let verified = match fault(RotationStep::Verify) {
            Some(RotationFault::Crash) => {
                return Err(stop(
                    "verify",
                    "simulated crash; the role has the new password, the store holds it as pending",
                ));
            }
            Some(RotationFault::Fail) => Err("injected failure".to_owned()),
            None => {
                let info = self.config.conninfo(Some(&new_credentials), None);
                match Connector::new(&info, &self.options.connect) {
                    Ok(c) => c.connect().await.map(drop).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        if let Err(why) = verified {
            // Put the old password back; the staged one is stale and harmless.
            alter(&old.password)
                .await
                .map_err(|e| stop("verify", &format!("new password refused ({why}) and restoring the old one failed ({e}); the store holds the new one as pending")))?;
            return Err(stop(
                "verify",
                &format!(
                    "a login with the new password failed ({why}); the old password was restored"
                ),
            ));
        }
        // From here new connections must use the new password.
        let fresh = build_connected(
            &self.config,
            &self.options,
            &new_credentials,
            &self.ledger_key,
        )?;
        self.replace_connected(fresh).await;

        // 4. Promote.
        match fault(RotationStep::Promote) {
            Some(RotationFault::Crash) => {
                return Err(stop(
                    "promote",
                    "simulated crash; the next start promotes the pending password",
                ));
            }
            Some(RotationFault::Fail) => {
                return Err(stop(
                    "promote",
                    "injected failure; the next start promotes the pending password",
                ));
            }
            None => {}
        }
        self.secrets.promote_password(&self.key, &staged).await?;
        let _ = Lock::Rotation { role: &role }.release(&lock.client).await;
        Ok(RotationReport {
            username: old.username,
            rotated_at: now,
        })
    }

    /// A session holding the connector role's rotation lock, in the database every
    /// process sharing the role chooses alike (see the module docs), and the role.
    async fn lock_rotation(&self) -> Result<(Connection, String), IntegrationError> {
        let first = self.connector_session(None).await?;
        let db = |action: &'static str| {
            move |source: pgwarden_pg_driver::tokio_postgres::Error| IntegrationError::Database {
                action,
                source,
            }
        };
        let place = rotation_lock_database(&first.client)
            .await
            .map_err(db("choosing the database of the rotation lock"))?
            .ok_or_else(|| IntegrationError::Rotation {
                step: "lock",
                message: "the connector may connect to no database that accepts connections; nothing changed".to_owned(),
            })?;
        let lock = if place.database == place.current {
            first
        } else {
            drop(first);
            self.connector_session(Some(&place.database)).await?
        };
        Lock::Rotation { role: &place.role }
            .acquire(&lock.client)
            .await
            .map_err(db("locking the rotation"))?;
        Ok((lock, place.role))
    }
}
