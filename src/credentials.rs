//! The connector's credentials: read from the secret store (finishing an interrupted
//! rotation), and read again when another process changed them.
//!
//! **Replicas and rotated credentials.** Several processes (or several integrations)
//! may share one connector role and one secret store. When one of them rotates the
//! connector's password, the others keep the sessions they have, but every new login
//! with the old password fails. A process whose login fails with "wrong password"
//! therefore re-reads the store ([`Integration::refresh_from`]): the current
//! password, then the staged (pending) one of a rotation under way or interrupted;
//! it switches its pools to the one that logs in and says so in its log. One refresh
//! runs at a time per process; a caller that waited for another's refresh uses its
//! result instead of reading the store again. Every public operation refreshes and
//! retries once on such a failure: a refused login happens when a connection is
//! made, before anything is done, so the retry cannot do anything twice (a grant
//! creates its login role in one transaction, the last step, on a connection that
//! is already logged in).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use pgwarden_core::config::IntegrationConfig;
use pgwarden_core::credentials::Credentials;
use pgwarden_pg_driver::{
    AuthFailure, ConnectError, Connector, DiscoveryError, PoolError, ProvisionError,
};
use pgwarden_secrets::{DynSecretStore, SecretKey, SecretStoreExt};

use crate::error::IntegrationError;
use crate::integration::{Connected, Integration, IntegrationOptions, build_connected};

impl Integration {
    /// Re-reads the connector's credentials from the store after a login failed with
    /// "wrong password" (another process rotated them): the current password, then
    /// the staged one; switches the pools to the one that logs in. Returns whether the
    /// credentials in use changed (here, or by a concurrent refresh or rotation this
    /// caller waited for). Retries with a bounded, jittered backoff while neither
    /// logs in (a rotation elsewhere may be between its steps).
    ///
    /// `seen` is what the caller failed with: when another refresh or a rotation
    /// replaced it meanwhile, there is nothing to read. `None`: read the store
    /// whatever happened.
    pub(crate) async fn refresh_from(
        &self,
        seen: Option<&Arc<Connected>>,
    ) -> Result<bool, IntegrationError> {
        let _one_at_a_time = self.refresh.lock().await;
        let current = self.connected().await;
        if let Some(seen) = seen
            && !Arc::ptr_eq(seen, &current)
        {
            return Ok(true);
        }
        let mut attempt: u32 = 1;
        let credentials = loop {
            match stored_login(&self.config, &self.secrets, &self.key, &self.options).await {
                Ok((c, _)) => break c,
                Err(e) if is_wrong_password(&e) && attempt < REFRESH_ATTEMPTS => {
                    let delay = refresh_backoff(attempt);
                    tracing::warn!(integration = %self.config.name, attempt, retry_in = ?delay, "neither the connector's current nor its staged password in the secret store logs in (a rotation elsewhere may be under way); reading the store again");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => {
                    tracing::warn!(integration = %self.config.name, error = %e, "the connector's password was refused and re-reading the secret store did not help");
                    return Err(e);
                }
            }
        };
        if same_credentials(&credentials, &current.credentials) {
            return Ok(false);
        }
        let fresh = build_connected(&self.config, &self.options, &credentials, &self.ledger_key)?;
        *self.connected.write().await = Arc::new(fresh);
        tracing::warn!(integration = %self.config.name, "the connector's password was changed elsewhere (a rotation by another process): reconnected with the one in the secret store");
        Ok(true)
    }

    /// A new session of the connector's own, in `database` (`None`: the config's); a
    /// login refused as a wrong password re-reads the store first (see
    /// [`Integration::refresh_from`]) and tries once more.
    pub(crate) async fn connector_session(
        &self,
        database: Option<&str>,
    ) -> Result<pgwarden_pg_driver::Connection, IntegrationError> {
        let session = |connected: Arc<Connected>| async move {
            match database {
                None => Ok(connected.connector.connect().await?),
                Some(db) => {
                    let info = self.config.conninfo(Some(&connected.credentials), Some(db));
                    Ok::<_, IntegrationError>(
                        Connector::new(&info, &self.options.connect)?
                            .connect()
                            .await?,
                    )
                }
            }
        };
        let connected = self.connected().await;
        match session(connected.clone()).await {
            Err(e) if is_wrong_password(&e) => {
                self.refresh_from(Some(&connected)).await?;
                session(self.connected().await).await
            }
            other => other,
        }
    }

    /// Runs `op` on the connection side; when it fails because the connector's login
    /// was refused as a wrong password, refreshes the credentials and runs it once
    /// more. Only that failure is retried: it happens when a connection is made,
    /// before anything is done.
    pub(crate) async fn with_current_credentials<T, E, F, Fut>(
        &self,
        op: F,
    ) -> Result<T, IntegrationError>
    where
        F: Fn(Arc<Connected>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Into<IntegrationError>,
    {
        let connected = self.connected().await;
        let error: IntegrationError = match op(connected.clone()).await {
            Ok(v) => return Ok(v),
            Err(e) => e.into(),
        };
        if !is_wrong_password(&error) {
            return Err(error);
        }
        self.refresh_from(Some(&connected)).await?;
        op(self.connected().await).await.map_err(Into::into)
    }
}

fn is_auth_failure(e: &ConnectError) -> bool {
    matches!(
        e,
        ConnectError::Auth {
            kind: AuthFailure::WrongPassword,
            ..
        }
    )
}

fn pool_wrong_password(e: &PoolError) -> bool {
    matches!(e, PoolError::Connect(c) if is_auth_failure(c))
}

fn provision_wrong_password(e: &ProvisionError) -> bool {
    match e {
        ProvisionError::Connect(c) => is_auth_failure(c),
        ProvisionError::Pool(p) => pool_wrong_password(p),
        _ => false,
    }
}

/// Whether `e` is the connector's login refused as a wrong password (the server's
/// `28P01`), however it is wrapped: directly, in a pool error, a provisioning error,
/// a discovery error, or anywhere down the error's source chain. Errors of statements
/// on a session already logged in never count, whatever their text.
pub(crate) fn is_wrong_password(e: &IntegrationError) -> bool {
    let direct = match e {
        IntegrationError::Connect(c) => is_auth_failure(c),
        IntegrationError::Provision(p) => provision_wrong_password(p),
        IntegrationError::Discovery(DiscoveryError::Connect { source, .. }) => {
            is_auth_failure(source)
        }
        _ => false,
    };
    if direct {
        return true;
    }
    // Wrappers added later: look down the chain (`transparent` variants hide their
    // inner error itself, hence the explicit cases above).
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<ConnectError>()
            .is_some_and(is_auth_failure)
            || s.downcast_ref::<PoolError>()
                .is_some_and(pool_wrong_password)
            || s.downcast_ref::<ProvisionError>()
                .is_some_and(provision_wrong_password)
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// How many times a refresh reads the store while no stored password logs in.
const REFRESH_ATTEMPTS: u32 = 5;

/// The wait before a refresh's attempt `attempt + 1`: 100 ms doubling, at most 2 s,
/// jittered (keeps replicas apart).
fn refresh_backoff(attempt: u32) -> Duration {
    pgwarden_pg_driver::backoff(attempt, Duration::from_millis(100), Duration::from_secs(2))
}

fn same_credentials(a: &Credentials, b: &Credentials) -> bool {
    use secrecy::ExposeSecret;
    a.username == b.username && a.password.expose_secret() == b.password.expose_secret()
}

/// Logs in once with `credentials` (to the config's database) and hangs up.
async fn try_login(
    config: &IntegrationConfig,
    options: &IntegrationOptions,
    credentials: &Credentials,
) -> Result<(), ConnectError> {
    let info = config.conninfo(Some(credentials), None);
    Connector::new(&info, &options.connect)?
        .connect()
        .await
        .map(drop)
}

/// The stored credentials that log in now: the current password, else the staged
/// one (a rotation elsewhere changed the role and has not promoted it yet, or
/// stopped before), with the version that holds it. Nothing is written to the store.
/// A wrong-password error when neither logs in.
async fn stored_login(
    config: &IntegrationConfig,
    secrets: &Arc<DynSecretStore>,
    key: &SecretKey,
    options: &IntegrationOptions,
) -> Result<(Credentials, Option<pgwarden_secrets::Version>), IntegrationError> {
    let stored = secrets.get_credentials(key).await?;
    let refused = match try_login(config, options, &stored.credentials).await {
        Ok(()) => return Ok((stored.credentials, None)),
        Err(e) if is_auth_failure(&e) => e,
        Err(e) => return Err(e.into()),
    };
    if let Some(pending) = secrets.pending_password(key).await? {
        let candidate = Credentials {
            username: stored.credentials.username.clone(),
            password: pending.password,
        };
        match try_login(config, options, &candidate).await {
            Ok(()) => return Ok((candidate, Some(pending.version))),
            Err(e) if is_auth_failure(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(refused.into())
}

/// Reads the credentials; if the current password is refused and a staged one works,
/// an earlier rotation changed the role but did not promote: promote it now.
pub(crate) async fn recover_credentials(
    config: &IntegrationConfig,
    secrets: &Arc<DynSecretStore>,
    key: &SecretKey,
    options: &IntegrationOptions,
) -> Result<Credentials, IntegrationError> {
    let (credentials, staged) = stored_login(config, secrets, key, options).await?;
    if let Some(version) = staged {
        secrets.promote_password(key, &version).await?;
        tracing::warn!(integration = %config.name, "finished an interrupted credential rotation: the staged password is now current");
    }
    Ok(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(kind: AuthFailure) -> ConnectError {
        ConnectError::Auth {
            target: "127.0.0.1:5432".into(),
            kind,
            detail: "password authentication failed for user \"c\"".into(),
        }
    }

    #[test]
    fn a_wrong_password_is_recognized_through_every_wrapper() {
        let wrong = || refused(AuthFailure::WrongPassword);
        for e in [
            IntegrationError::Connect(wrong()),
            IntegrationError::Provision(ProvisionError::Connect(wrong())),
            IntegrationError::Provision(ProvisionError::Pool(PoolError::Connect(wrong()))),
            IntegrationError::Discovery(DiscoveryError::Connect {
                database: "postgres".into(),
                source: wrong(),
            }),
        ] {
            assert!(is_wrong_password(&e), "{e:?}");
        }
        for e in [
            IntegrationError::Connect(refused(AuthFailure::NoHbaEntry)),
            IntegrationError::Provision(ProvisionError::Pool(PoolError::Connect(refused(
                AuthFailure::Other,
            )))),
            IntegrationError::Provision(ProvisionError::Pool(PoolError::Timeout("create"))),
            IntegrationError::Provision(ProvisionError::InvalidRequest(
                pgwarden_pg_driver::InvalidRequest::NoAccess,
            )),
            // A failure whose text mentions a password is never taken for a refused login.
            IntegrationError::Rotation {
                step: "locking the rotation",
                message: "password authentication failed (SQLSTATE 28P01)".into(),
            },
            IntegrationError::Config("wrong password".into()),
        ] {
            assert!(!is_wrong_password(&e), "{e:?}");
        }
    }

    #[test]
    fn the_refresh_backoff_is_jittered_and_bounded() {
        let full = |attempt: u32| {
            Duration::from_millis(100)
                .saturating_mul(1 << attempt.saturating_sub(1).min(5))
                .min(Duration::from_secs(2))
        };
        for attempt in (1..=40).chain([u32::MAX]) {
            for _ in 0..20 {
                let d = refresh_backoff(attempt);
                assert!(
                    d >= full(attempt) / 2 && d <= full(attempt),
                    "{attempt}: {d:?}"
                );
            }
        }
        assert_eq!(full(1), Duration::from_millis(100));
        assert_eq!(full(u32::MAX), Duration::from_secs(2));
        // A refresh that finds no password that logs in gives up within 2 s of waiting.
        let total: Duration = (1..REFRESH_ATTEMPTS).map(full).sum();
        assert!(total <= Duration::from_secs(2), "{total:?}");
    }
}
