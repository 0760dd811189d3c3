//! The [`Integration`]: one PostgreSQL instance under pgwarden's care.

//!
//! How a process heals after another rotated the connector's password: see
//! [`crate::credentials`].

use std::sync::Arc;
use std::time::Duration;

use pgwarden_core::access_details::AccessDetailsValues;
use pgwarden_core::config::IntegrationConfig;
use pgwarden_core::credentials::Credentials;
use pgwarden_core::duration::Ttl;
use pgwarden_core::owners::{Directory, OwnerResolver, Resolution};
use pgwarden_core::resource::{AccessEntry, ResourceId};
use pgwarden_core::tags::{InMemoryTagSource, TagSource};
use pgwarden_pg_driver::{
    ConnectOptions, Connector, DiscoveryOptions, DiscoveryResult, Expiry, GrantRequest, LedgerKey,
    ListedState, Preflight, ProvisionError, Provisioner, ProvisionerConfig, ReconcileReport,
    RevocationReport, ScramIterations, discover,
};
use pgwarden_secrets::{DynSecretStore, SecretKey};
use tokio::sync::{Mutex, Notify, RwLock};

use crate::audit::{AuditAction, AuditEvent, AuditSink, TracingAuditSink};
use crate::error::IntegrationError;
use crate::request::{AccessGrant, AccessRequest};

/// How the runtime behaves, beyond the integration config.
#[derive(Debug, Clone)]
pub struct IntegrationOptions {
    /// TLS provider, home directory for libpq defaults, application name.
    pub connect: ConnectOptions,
    /// Where audit events go (default: `tracing`).
    pub audit: Arc<dyn AuditSink>,
    /// Identity providers for owner resolution.
    pub directories: Vec<Arc<dyn Directory>>,
    /// Where tags come from; `None`: comments, as found by [`Integration::discover`].
    pub tag_source: Option<Arc<dyn TagSource>>,
    /// The key of the connector's credentials in the store; `None`: derived from the
    /// config's `[secret]` section.
    pub secret_key: Option<SecretKey>,
    /// The key that seals the ledger; `None`: the `ledger_key` field of the
    /// connector's credentials document, created there on first use (see
    /// [`crate::ledger_key`]).
    pub ledger_key: Option<LedgerKey>,
    /// PBKDF2 iterations of generated SCRAM verifiers.
    pub scram_iterations: ScramIterations,
    /// Connections per database.
    pub pool_size: usize,
    /// How often the expiry sweeper re-reads the ledger (grants made by other
    /// processes are seen within this time).
    pub sweep_interval: Duration,
    /// How often the sweeper reconciles.
    pub reconcile_interval: Duration,
    /// How often the sweeper checks whether the connector's password is due.
    pub rotation_check_interval: Duration,
}

impl Default for IntegrationOptions {
    fn default() -> Self {
        IntegrationOptions {
            connect: ConnectOptions::default(),
            audit: Arc::new(TracingAuditSink),
            directories: Vec::new(),
            tag_source: None,
            secret_key: None,
            ledger_key: None,
            scram_iterations: ScramIterations::DEFAULT,
            pool_size: 4,
            sweep_interval: Duration::from_secs(1),
            reconcile_interval: Duration::from_secs(60),
            rotation_check_interval: Duration::from_secs(3600),
        }
    }
}

/// The connection side, replaced as a whole when the connector's password rotates.
pub(crate) struct Connected {
    pub(crate) connector: Connector,
    pub(crate) provisioner: Provisioner,
    /// The credentials both log in with.
    pub(crate) credentials: Credentials,
}

/// One PostgreSQL instance under pgwarden's care: discovery, owners, grants,
/// expiry, rotation and audit. Share it as `Arc<Integration>`.
pub struct Integration {
    pub(crate) config: IntegrationConfig,
    pub(crate) secrets: Arc<DynSecretStore>,
    pub(crate) key: SecretKey,
    pub(crate) ledger_key: LedgerKey,
    pub(crate) options: IntegrationOptions,
    pub(crate) connected: RwLock<Arc<Connected>>,
    pub(crate) preflight: Preflight,
    tags: Arc<InMemoryTagSource>,
    discovered: RwLock<Option<DiscoveryResult>>,
    pub(crate) wake: Notify,
    /// One credential refresh (or swap of `connected`) at a time.
    pub(crate) refresh: Mutex<()>,
    /// Grants a revocation of ours failed on half-way (a lost connection, a crashed
    /// server): it may have finished server-side unheard. The first successful
    /// revocation event for such a grant clears it; the sweeper audits one it finds
    /// gone without one (see [`crate::runtime`]).
    pub(crate) unconfirmed: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Revocations and reconciles running in this process: while any runs, a grant
    /// found gone may be one whose event is still to come, so none is confirmed.
    pub(crate) revoking: std::sync::atomic::AtomicUsize,
}

/// Counts a revocation or reconcile in [`Integration::revoking`] while alive.
pub(crate) struct Revoking<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Revoking<'a> {
    pub(crate) fn new(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Revoking(count)
    }
}

impl Drop for Revoking<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Integration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Integration")
            .field("name", &self.config.name)
            .field("secrets", &self.secrets)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Integration {
    /// Validates the setup, reads the connector's credentials through the store
    /// (finishing an interrupted rotation if one is found), builds the pools and runs
    /// the preflight.
    pub async fn connect(
        config: IntegrationConfig,
        secrets: Arc<DynSecretStore>,
        options: IntegrationOptions,
    ) -> Result<Arc<Self>, IntegrationError> {
        let key = match (&options.secret_key, &config.secret) {
            (Some(k), _) => k.clone(),
            (None, Some(s)) => pgwarden_secrets::key_for(s)?,
            (None, None) => {
                return Err(IntegrationError::Config(
                    "no secret key: set [secret] in the config or IntegrationOptions::secret_key"
                        .into(),
                ));
            }
        };
        let credentials =
            crate::credentials::recover_credentials(&config, &secrets, &key, &options).await?;
        let ledger_key = match &options.ledger_key {
            Some(k) => k.clone(),
            None => crate::ledger_key::load_or_create_ledger_key(&secrets, &key).await?,
        };
        let connected = Arc::new(build_connected(
            &config,
            &options,
            &credentials,
            &ledger_key,
        )?);
        let conn = connected.connector.connect().await?;
        let preflight = Preflight::run(&conn.client, config.connector_mode)
            .await
            .map_err(|source| IntegrationError::Database {
                action: "reading the connector's capabilities",
                source,
            })?;
        for c in preflight.capabilities.iter().filter(|c| !c.ok) {
            tracing::warn!(integration = %config.name, capability = c.key, "{}", c.detail);
        }
        Ok(Arc::new(Integration {
            config,
            secrets,
            key,
            ledger_key,
            options,
            connected: RwLock::new(connected),
            preflight,
            tags: Arc::new(InMemoryTagSource::new()),
            discovered: RwLock::new(None),
            wake: Notify::new(),
            refresh: Mutex::new(()),
            unconfirmed: std::sync::Mutex::default(),
            revoking: std::sync::atomic::AtomicUsize::new(0),
        }))
    }

    /// The integration config.
    #[must_use]
    pub fn config(&self) -> &IntegrationConfig {
        &self.config
    }

    /// What the connector can and cannot do, as found at connect time.
    #[must_use]
    pub fn preflight(&self) -> &Preflight {
        &self.preflight
    }

    pub(crate) async fn connected(&self) -> Arc<Connected> {
        self.connected.read().await.clone()
    }

    /// Puts `fresh` in place of the connection side (after a rotation), in turn with
    /// credential refreshes.
    pub(crate) async fn replace_connected(&self, fresh: Connected) {
        let _one_at_a_time = self.refresh.lock().await;
        *self.connected.write().await = Arc::new(fresh);
    }

    pub(crate) fn audit(&self, action: AuditAction, fill: impl FnOnce(&mut AuditEvent)) {
        let mut e = AuditEvent::new(&self.config.name, action);
        fill(&mut e);
        if matches!(e.action, AuditAction::Expire | AuditAction::Revoke)
            && !e.failed()
            && let Some(id) = &e.grant_id
        {
            self.unconfirmed().remove(id);
        }
        crate::metrics::audited(&e);
        self.options.audit.record(&e);
    }

    /// The grants whose revocation may have finished unheard (see the field).
    pub(crate) fn unconfirmed(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.unconfirmed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Discovers the resource types the config selects, across every database, and
    /// keeps the tags found for owner resolution.
    pub async fn discover(&self) -> Result<DiscoveryResult, IntegrationError> {
        let options = &DiscoveryOptions::for_integration(&self.config);
        let result = self
            .with_current_credentials(|c| async move { discover(&c.connector, options).await })
            .await?;
        result.fill_tag_source(&self.tags);
        *self.discovered.write().await = Some(result.clone());
        Ok(result)
    }

    /// Who must approve access to `resource`, and why: the resource-owner tag on it,
    /// its schema or its database, else the integration owners. Runs discovery once
    /// when tags come from comments and nothing was discovered yet.
    pub async fn approvers(&self, resource: &ResourceId) -> Result<Resolution, IntegrationError> {
        Ok(self.owner_resolver().await?.resolve(resource).await?)
    }

    /// Where tags come from: the host's tag source, else the comments discovery found
    /// (discovering once if nothing was discovered yet).
    pub(crate) async fn tag_source(&self) -> Result<Arc<dyn TagSource>, IntegrationError> {
        if let Some(t) = &self.options.tag_source {
            return Ok(t.clone());
        }
        if self.discovered.read().await.is_none() {
            self.discover().await?;
        }
        Ok(self.tags.clone())
    }

    /// The resources discovery found last (discovering once if nothing was yet).
    pub(crate) async fn discovered(&self) -> Result<DiscoveryResult, IntegrationError> {
        if let Some(d) = self.discovered.read().await.as_ref() {
            return Ok(d.clone());
        }
        self.discover().await
    }

    /// The integration's owner resolution, over [`tag_source`](Self::tag_source).
    pub(crate) async fn owner_resolver(&self) -> Result<OwnerResolver, IntegrationError> {
        Ok(OwnerResolver::new(
            self.config.integration_owners.clone(),
            self.config.resource_owner.clone(),
            self.tag_source().await?,
            self.options.directories.clone(),
        )?)
    }

    /// Grants access and renders the access details for it.
    pub async fn grant(&self, request: AccessRequest) -> Result<AccessGrant, IntegrationError> {
        let access: Vec<String> = request.access.iter().map(ToString::to_string).collect();
        let grant_request = &GrantRequest {
            grant_id: request.grant_id.clone(),
            requester: request.requester.clone(),
            access: request.access.clone(),
            expiry: Expiry::After(request.duration),
            user_mode: None,
            session: request.session.merged_over(&self.config.session),
        };
        // A retry after a refused login cannot grant twice: see the module docs.
        let started = std::time::Instant::now();
        let result = self
            .with_current_credentials(|c| async move {
                c.provisioner.grant(grant_request.clone()).await
            })
            .await;
        let took = started.elapsed();
        match result {
            Ok(g) => {
                let opted_in =
                    sensitive_roles_note(&self.config.sensitive_roles_allowed, &request.access);
                self.audit(AuditAction::Grant, |e| {
                    e.grant_id = Some(g.grant_id.clone());
                    e.requester = Some(request.requester.clone());
                    e.username = Some(g.username.clone());
                    e.access = access;
                    e.duration = Some(took);
                    if let Some(flow) = &request.flow {
                        e.flow = Some(flow.name.clone());
                        e.review_required = flow.review_required;
                    }
                    e.detail = format!(
                        "granted until {}{}{opted_in}{}",
                        g.expires_at
                            .format(&time::format_description::well_known::Rfc3339)
                            .unwrap_or_default(),
                        if g.created {
                            ""
                        } else {
                            " (existing grant returned)"
                        },
                        request
                            .justification
                            .as_deref()
                            .map(|j| format!("; justification: {j}"))
                            .unwrap_or_default()
                    );
                });
                // The sweeper may need to wake earlier for this expiry.
                self.wake.notify_waiters();
                let access_details = self.config.custom_access_details.as_ref().map(|t| {
                    t.render(&AccessDetailsValues {
                        hostname: self.config.hostname.clone(),
                        port: self.config.port,
                        database: self.config.database.clone(),
                        username: g.username.clone(),
                        expires_at: g
                            .expires_at
                            .format(&time::format_description::well_known::Rfc3339)
                            .unwrap_or_default(),
                        integration: self.config.name.clone(),
                    })
                });
                Ok(AccessGrant {
                    grant_id: g.grant_id,
                    integration: self.config.name.clone(),
                    username: g.username,
                    requester: g.requester,
                    access: g.access,
                    created_at: g.created_at,
                    expires_at: g.expires_at,
                    state: ListedState::Active,
                    mode: g.mode,
                    password: g.password,
                    created: g.created,
                    access_details,
                })
            }
            Err(err) => {
                self.audit(AuditAction::Grant, |e| {
                    e.grant_id.clone_from(&request.grant_id);
                    e.flow = request.flow.as_ref().map(|f| f.name.clone());
                    e.requester = Some(request.requester.clone());
                    e.access = access;
                    e.error = Some(err.to_string());
                    e.error_kind = Some(err.kind());
                    e.duration = Some(took);
                    e.detail = "grant failed".into();
                });
                Err(err)
            }
        }
    }

    /// Moves a grant's expiry to `duration` from now (at most `max_ttl`).
    pub async fn extend(
        &self,
        grant_id: &str,
        duration: Ttl,
    ) -> Result<AccessGrant, IntegrationError> {
        let started = std::time::Instant::now();
        let result = self
            .with_current_credentials(|c| async move {
                c.provisioner
                    .extend(grant_id, Expiry::After(duration))
                    .await
            })
            .await;
        let took = started.elapsed();
        self.audit(AuditAction::Extend, |e| {
            e.grant_id = Some(grant_id.to_owned());
            e.duration = Some(took);
            match &result {
                Ok(g) => {
                    e.username = Some(g.username.clone());
                    e.requester = Some(g.requester.clone());
                    e.detail = format!("extended until {}", g.expires_at);
                }
                Err(err) => {
                    e.error = Some(err.to_string());
                    e.error_kind = Some(err.kind());
                    e.detail = "extension failed".into();
                }
            }
        });
        self.wake.notify_waiters();
        result.map(AccessGrant::listed)
    }

    /// Revokes a grant completely.
    pub async fn revoke(&self, grant_id: &str) -> Result<RevocationReport, IntegrationError> {
        self.revoke_as(grant_id, AuditAction::Revoke).await
    }

    pub(crate) async fn revoke_as(
        &self,
        grant_id: &str,
        action: AuditAction,
    ) -> Result<RevocationReport, IntegrationError> {
        let _counted = Revoking::new(&self.revoking);
        let expire = action == AuditAction::Expire;
        let started = std::time::Instant::now();
        let result = self
            .with_current_credentials(|c| async move {
                if expire {
                    // Re-checked under the grant's lock: an extension that came first wins.
                    c.provisioner.revoke_expired(grant_id).await
                } else {
                    c.provisioner.revoke(grant_id).await
                }
            })
            .await;
        let took = started.elapsed();
        if let Err(IntegrationError::Provision(ProvisionError::NotExpired { .. })) = &result {
            return Ok(RevocationReport {
                grant_id: grant_id.to_owned(),
                ..RevocationReport::default()
            });
        }
        if result.is_err() {
            self.unconfirmed().insert(grant_id.to_owned());
        }
        // A revocation another process already finished is not an event of ours.
        if !matches!(&result, Ok(r) if r.already_revoked) {
            self.audit(action, |e| {
                e.grant_id = Some(grant_id.to_owned());
                e.duration = Some(took);
                match &result {
                    Ok(r) => {
                        e.username.clone_from(&r.username);
                        e.detail = crate::audit::revocation_detail(r);
                    }
                    Err(err) => {
                        e.error = Some(err.to_string());
                        e.error_kind = Some(err.kind());
                        e.detail = "revocation failed; reconcile retries it".into();
                    }
                }
            });
        }
        result
    }

    /// Every grant this integration recorded in the instance.
    pub async fn list(&self) -> Result<Vec<AccessGrant>, IntegrationError> {
        let grants = self
            .with_current_credentials(|c| async move { c.provisioner.list().await })
            .await?;
        Ok(grants
            .into_iter()
            .filter(|g| g.integration == self.config.name)
            .map(AccessGrant::listed)
            .collect())
    }

    /// Reconciles the instance with its ledger.
    pub async fn reconcile(&self) -> Result<ReconcileReport, IntegrationError> {
        let _counted = Revoking::new(&self.revoking);
        let name = self.config.name.as_str();
        let result = self
            .with_current_credentials(|c| async move {
                c.provisioner.reconcile_integration(Some(name)).await
            })
            .await;
        // Each revocation reconcile finished is audited on its own, as the sweeper's are.
        for r in result.iter().flat_map(|r| &r.revoked) {
            if !r.already_revoked {
                self.audit(AuditAction::Expire, |e| {
                    e.grant_id = Some(r.grant_id.clone());
                    e.username.clone_from(&r.username);
                    e.by_reconcile = true;
                    e.detail = format!("{} (by reconcile)", crate::audit::revocation_detail(r));
                });
            }
        }
        self.audit(AuditAction::Reconcile, |e| match &result {
            Ok(r) => {
                e.detail = format!(
                    "revoked {}, dropped {} and refreshed {} privilege role(s), {} drift finding(s)",
                    r.revoked.len(),
                    r.privilege_roles_dropped.len(),
                    r.privilege_roles_refreshed.len(),
                    r.drift.len()
                );
                if !r.errors.is_empty() {
                    e.error = Some(
                        r.errors
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; "),
                    );
                }
            }
            Err(err) => {
                e.error = Some(err.to_string());
                    e.error_kind = Some(err.kind());
                e.detail = "reconcile failed".into();
            }
        });
        result
    }
}

pub(crate) fn build_connected(
    config: &IntegrationConfig,
    options: &IntegrationOptions,
    credentials: &Credentials,
    ledger_key: &LedgerKey,
) -> Result<Connected, IntegrationError> {
    let info = config.conninfo(Some(credentials), None);
    let connector = Connector::new(&info, &options.connect)?;
    let mut settings = ProvisionerConfig::from_integration(config, ledger_key.clone());
    settings.scram_iterations = options.scram_iterations;
    settings.pool_size = options.pool_size;
    let provisioner = Provisioner::new(connector.clone(), settings)?;
    Ok(Connected {
        connector,
        provisioner,
        credentials: credentials.clone(),
    })
}

/// For a grant's audit event: the roles of `access` granted as members that the
/// integration's `sensitive_roles_allowed` lists, which pgwarden therefore did not
/// refuse even where they reach superusers or other sensitive roles (the driver logs
/// the paths as a warning when it sets such a role up); empty when there are none.
fn sensitive_roles_note(allowed: &[String], access: &[AccessEntry]) -> String {
    let roles: Vec<&str> = access
        .iter()
        .filter_map(|a| match &a.resource {
            ResourceId::Role { role } if allowed.contains(role) => Some(role.as_str()),
            _ => None,
        })
        .collect();
    if roles.is_empty() {
        String::new()
    } else {
        format!(
            "; granted under sensitive_roles_allowed: membership in {} is let through even where it reaches superusers or other sensitive roles",
            roles.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opted_in_roles_are_named_in_the_audit_note() {
        let access: Vec<AccessEntry> = [
            "postgresql-role:ops=member",
            "postgresql-role:readers=member",
            "postgresql-database:app=connect",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let note = sensitive_roles_note(&["ops".into()], &access);
        assert!(
            note.contains("sensitive_roles_allowed: membership in ops "),
            "{note}"
        );
        assert!(!note.contains("readers"), "{note}");
        assert_eq!(sensitive_roles_note(&[], &access), "");
        assert_eq!(sensitive_roles_note(&["readers".into()], &access[2..]), "");
    }
}
