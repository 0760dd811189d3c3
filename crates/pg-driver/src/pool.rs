//! A connection pool whose connections go through the same libpq-exact logic.
//!
//! Built on deadpool-postgres with `Manager::from_connect`: every new pooled
//! connection is made by [`Connector`], so `allow`/`prefer` fallbacks, certificate
//! checks and host order are the same as for a single connection.
//!
//! # Timeouts
//!
//! [`Pool::get`] first waits up to [`PoolOptions::wait_timeout`] for a free slot (all
//! `max_size` connections in use or being made), then, if no idle connection is left,
//! makes one within [`PoolOptions::create_timeout`]. The connector bounds each attempt
//! itself with its connect timeout (the string's `connect_timeout`, else
//! [`ConnectOptions::default_connect_timeout`](crate::connect::ConnectOptions::default_connect_timeout)),
//! and its error says which host timed out; so that the pool never cuts such an attempt
//! short with a bare "create timed out", the create timeout is raised to at least the
//! connect timeout once per host, plus a second. A server that accepts connections and
//! never answers therefore gives a [`PoolError::Connect`] naming it within that time, and
//! every other `get` waiting meanwhile a [`PoolError::Timeout`] after `wait_timeout`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{
    Manager, ManagerConfig, Object, PoolError as DeadpoolError, RecyclingMethod, Runtime, Timeouts,
};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::connect::{AttemptFailure, Connector, Failures};
use crate::error::ConnectError;

/// Pool size, timeouts and recycling.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// The most connections open at once.
    pub max_size: usize,
    /// How long `get` waits for a free slot in the pool (see the module's *Timeouts*).
    pub wait_timeout: Option<Duration>,
    /// How long creating one connection may take: at least the connector's connect
    /// timeout once per host, plus a second ([`Pool::new`] raises a shorter one). `None`
    /// leaves it to the connector's own timeout alone.
    pub create_timeout: Option<Duration>,
    /// How long checking a returned connection may take.
    pub recycle_timeout: Option<Duration>,
    /// How a connection is checked before reuse.
    pub recycling: Recycling,
}

/// How a pooled connection is checked before it is handed out again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Recycling {
    /// Only check that the connection is not closed.
    Fast,
    /// Run a trivial query first when the connection has been idle for
    /// [`IDLE_CHECK_AFTER`] or longer; one handed out more recently is only checked not
    /// to be closed. Saves a round trip per check-out under load (as `HikariCP`'s
    /// `aliveBypassWindowMs`). The catch: a backend terminated moments before the
    /// check-out (`pg_terminate_backend`, as after a credential rotation elsewhere) is
    /// not seen closed yet, and the first statement on it fails with SQLSTATE 57P01
    /// instead of going to a fresh connection. Only for callers that retry that.
    VerifiedWhenIdle,
    /// Run a trivial query first, every time (detects a restarted server, and a
    /// backend terminated moments ago) — except for pgwarden's own grants and
    /// revocations, which skip it: their first round trip commits nothing, and when it
    /// finds the connection dead they run again once on a checked one.
    #[default]
    Verified,
    /// Reset the session (`DISCARD ALL`-like) before reuse.
    Clean,
}

/// How long a pooled connection may sit idle before [`Recycling::VerifiedWhenIdle`]
/// checks it with a query.
pub const IDLE_CHECK_AFTER: Duration = Duration::from_millis(500);

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_size: 8,
            wait_timeout: Some(Duration::from_secs(30)),
            create_timeout: Some(Duration::from_secs(30)),
            recycle_timeout: Some(Duration::from_secs(5)),
            recycling: Recycling::Verified,
        }
    }
}

/// Getting a pooled connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// No connection became free, or none could be made, in time.
    #[error("timed out waiting for a database connection ({0}): raise the pool size or timeouts")]
    Timeout(&'static str),
    /// A new connection could not be made.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The pool was closed.
    #[error("the connection pool is closed")]
    Closed,
}

/// A pool of connections to one instance.
#[derive(Clone, Debug)]
pub struct Pool {
    inner: deadpool_postgres::Pool,
    connector: Arc<Connector>,
}

/// A pooled connection in a state the next user must not inherit: a session advisory
/// lock held, or a transaction opened with a plain `BEGIN`. If it is dropped before
/// [`Unsettled::settle`] — an error path, or the caller dropping the operation's future
/// (a host-side timeout) half-way — the connection is closed instead of going back to
/// the pool, and the server rolls back and releases whatever the session held. A
/// connection in an unknown state is never reused.
pub(crate) struct Unsettled {
    object: Option<Object>,
}

impl Unsettled {
    /// Guards `object` from now on.
    pub(crate) fn new(object: Object) -> Self {
        Unsettled {
            object: Some(object),
        }
    }

    /// The connection is clean again (lock released, transaction ended): it may go
    /// back to the pool when dropped.
    pub(crate) fn settle(mut self) -> Option<Object> {
        self.object.take()
    }
}

impl std::ops::Deref for Unsettled {
    type Target = Object;

    fn deref(&self) -> &Object {
        self.object
            .as_ref()
            .unwrap_or_else(|| unreachable!("taken only by settle, which consumes the guard"))
    }
}

impl std::ops::DerefMut for Unsettled {
    fn deref_mut(&mut self) -> &mut Object {
        self.object
            .as_mut()
            .unwrap_or_else(|| unreachable!("taken only by settle, which consumes the guard"))
    }
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        if let Some(object) = self.object.take() {
            // Detached from the pool and dropped: the connection closes, and with it
            // the session's locks and open transaction.
            drop(Object::take(object));
            tracing::debug!("closed a pooled connection left in an unsettled state");
        }
    }
}

/// What a health check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// `server_version` as the server reports it.
    pub server_version: String,
    /// Round-trip time of the check query.
    pub latency: Duration,
}

struct PooledConnect {
    connector: Arc<Connector>,
}

impl deadpool_postgres::Connect for PooledConnect {
    fn connect(
        &self,
        _pg_config: &tokio_postgres::Config,
    ) -> Pin<
        Box<
            dyn Future<Output = Result<(Client, JoinHandle<()>), tokio_postgres::Error>>
                + Send
                + '_,
        >,
    > {
        Box::pin(async move {
            match self.connector.connect_raw().await {
                Ok(c) => Ok((c.client, c.task)),
                Err(failures) => Err(most_relevant_driver_error(failures)),
            }
        })
    }
}

/// deadpool-postgres wants a tokio-postgres error: pick the most telling one of the host
/// that ended the connection (see [`Failures::decisive`]).
fn most_relevant_driver_error(failures: Failures) -> tokio_postgres::Error {
    failures
        .attempts
        .into_iter()
        .skip(failures.decisive)
        .filter_map(|f| match f {
            AttemptFailure::Driver(_, target, e) => {
                Some((ConnectError::classify(&target, &e).relevance(), e))
            }
            AttemptFailure::Setup(..) => None,
        })
        .max_by_key(|(r, _)| *r)
        .map_or_else(
            || {
                // Unreachable: Connector::new rejects TLS-only modes whose TLS setup failed,
                // and every other mode has a plaintext attempt. tokio-postgres offers no
                // public constructor, so a config parse error stands in.
                "pgwarden_no_attempt="
                    .parse::<tokio_postgres::Config>()
                    .unwrap_err()
            },
            |(_, e)| e,
        )
}

tokio::task_local! {
    /// Set around [`Pool::get_unchecked`]: the check-out skips the check query.
    static UNCHECKED: ();
}

/// The check of [`Recycling::Verified`] and [`Recycling::VerifiedWhenIdle`]: an empty
/// query (what deadpool's verified recycling sends), within `timeout`, for every
/// check-out (`Verified`) or for a connection idle since its last check-out for
/// [`IDLE_CHECK_AFTER`] or longer (`VerifiedWhenIdle`); never inside
/// [`Pool::get_unchecked`]. A connection that fails it is discarded and the pool hands
/// out (or makes) another.
fn verify(recycling: Recycling, timeout: Option<Duration>) -> deadpool_postgres::Hook {
    deadpool_postgres::Hook::async_fn(move |client, metrics| {
        Box::pin(async move {
            let wanted = match recycling {
                Recycling::Verified => true,
                Recycling::VerifiedWhenIdle => metrics.last_used() >= IDLE_CHECK_AFTER,
                Recycling::Fast | Recycling::Clean => false,
            };
            if !wanted || UNCHECKED.try_with(|()| ()).is_ok() {
                return Ok(());
            }
            let check = client.simple_query("");
            let healthy = match timeout {
                Some(t) => matches!(tokio::time::timeout(t, check).await, Ok(Ok(_))),
                None => check.await.is_ok(),
            };
            if healthy {
                Ok(())
            } else {
                Err(deadpool_postgres::HookError::message(
                    "a pooled connection failed its check",
                ))
            }
        })
    })
}

/// Whether `e` says the connection itself is gone — closed, reset, or its backend
/// terminated (SQLSTATE class 08, 57P01–57P03) — rather than that a statement failed.
pub(crate) fn connection_lost(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let code = code.code();
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03");
    }
    std::error::Error::source(e).is_some_and(<dyn std::error::Error>::is::<std::io::Error>)
}

/// The margin over the connector's own bound, so that its error (naming the host) comes
/// before the pool's.
const CREATE_MARGIN: Duration = Duration::from_secs(1);

/// The create timeout actually used: `wanted`, raised to the connector's `budget` plus
/// [`CREATE_MARGIN`] when shorter.
fn create_timeout(wanted: Option<Duration>, budget: Option<Duration>) -> Option<Duration> {
    match (wanted, budget) {
        (Some(wanted), Some(budget)) if wanted < budget.saturating_add(CREATE_MARGIN) => {
            let raised = budget.saturating_add(CREATE_MARGIN);
            tracing::debug!(
                ?wanted,
                ?raised,
                "pool create_timeout raised to outlast the connect timeout"
            );
            Some(raised)
        }
        _ => wanted,
    }
}

impl Pool {
    /// A pool over `connector`. Connections are made lazily, on first use.
    ///
    /// A [`PoolOptions::create_timeout`] shorter than the connector's connect timeout
    /// once per host, plus a second, is raised to that, so that a timed-out connection
    /// reports its host rather than a bare pool timeout.
    pub fn new(connector: Connector, options: &PoolOptions) -> Result<Self, ConnectError> {
        let create = create_timeout(options.create_timeout, connector.connect_budget());
        let connector = Arc::new(connector);
        // The verified modes check in a hook (skipped by `get_unchecked`), deadpool
        // itself only that the connection is not closed.
        let recycling_method = match options.recycling {
            Recycling::Clean => RecyclingMethod::Clean,
            Recycling::Fast | Recycling::Verified | Recycling::VerifiedWhenIdle => {
                RecyclingMethod::Fast
            }
        };
        let manager = Manager::from_connect(
            connector.base_config().clone(),
            PooledConnect {
                connector: connector.clone(),
            },
            ManagerConfig { recycling_method },
        );
        let mut builder = deadpool_postgres::Pool::builder(manager);
        if matches!(
            options.recycling,
            Recycling::Verified | Recycling::VerifiedWhenIdle
        ) {
            builder = builder.pre_recycle(verify(options.recycling, options.recycle_timeout));
        }
        let inner = builder
            .max_size(options.max_size.max(1))
            .runtime(Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: options.wait_timeout,
                create,
                recycle: options.recycle_timeout,
            })
            .build()
            .map_err(|e| ConnectError::Config {
                message: format!("connection pool: {e}"),
            })?;
        Ok(Pool { inner, connector })
    }

    /// A connection from the pool (made now if none is free and the pool is not full).
    pub async fn get(&self) -> Result<Object, PoolError> {
        self.inner.get().await.map_err(|e| self.convert(e))
    }

    /// A connection checked only for not being closed, whatever the recycling: for a
    /// caller whose first round trip commits nothing and that, when it finds the
    /// connection dead ([`connection_lost`]), runs again on one from [`Pool::get`]. A
    /// backend terminated moments ago is not seen closed yet: the check query would
    /// catch it, at the cost of a round trip on every check-out.
    pub(crate) async fn get_unchecked(&self) -> Result<Object, PoolError> {
        UNCHECKED.scope((), self.get()).await
    }

    fn convert(&self, e: DeadpoolError) -> PoolError {
        match e {
            DeadpoolError::Timeout(t) => PoolError::Timeout(match t {
                deadpool_postgres::TimeoutType::Wait => "wait",
                deadpool_postgres::TimeoutType::Create => "create",
                deadpool_postgres::TimeoutType::Recycle => "recycle",
            }),
            DeadpoolError::Backend(e) => {
                let target = self
                    .connector
                    .base_config()
                    .get_hosts()
                    .first()
                    .map_or_else(|| "the server".to_owned(), |h| format!("{h:?}"));
                PoolError::Connect(ConnectError::classify(&target, &e))
            }
            DeadpoolError::Closed => PoolError::Closed,
            other => PoolError::Connect(ConnectError::Config {
                message: other.to_string(),
            }),
        }
    }

    /// Checks that a connection can be had and answers a query.
    pub async fn health_check(&self) -> Result<Health, PoolError> {
        let started = Instant::now();
        let conn = self.get().await?;
        let row = conn
            .query_one("SELECT pg_catalog.current_setting('server_version')", &[])
            .await
            .map_err(|e| PoolError::Connect(ConnectError::classify("the server", &e)))?;
        Ok(Health {
            server_version: row.get(0),
            latency: started.elapsed(),
        })
    }

    /// Size and availability right now.
    #[must_use]
    pub fn status(&self) -> deadpool_postgres::Status {
        self.inner.status()
    }

    /// Closes the pool: waiting `get`s fail, connections are dropped as they return.
    pub fn close(&self) {
        self.inner.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_create_timeout_outlasts_the_connect_timeout() {
        let s = Duration::from_secs;
        assert_eq!(create_timeout(Some(s(30)), Some(s(10))), Some(s(30)));
        assert_eq!(create_timeout(Some(s(5)), Some(s(10))), Some(s(11)));
        assert_eq!(create_timeout(Some(s(5)), None), Some(s(5)));
        assert_eq!(create_timeout(None, Some(s(10))), None);
    }
}
