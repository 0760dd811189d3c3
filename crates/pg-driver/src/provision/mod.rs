//! Granting access: privilege roles, short-lived login roles, the ledger.
//!
//! A grant makes sure one privilege role exists per requested (resource, level) —
//! created once, on first use, holding exactly that level's privileges (see
//! [`crate::privilege`]) — and then creates a login role that is a member of them
//! and of the marker role, with a random password sent only as a SCRAM verifier,
//! `VALID UNTIL` the expiry, and the grant recorded in its comment (see
//! [`crate::ledger`]). Revocation lives in [`crate::revoke`], reconciliation in
//! [`crate::reconcile`].
//!
//! Concurrency: privilege roles are created under the exclusive
//! [`Lock::Privileges`](crate::Lock::Privileges); a grant with an explicit id is made
//! under its [`Lock::Grant`](crate::Lock::Grant), so granting the same id twice
//! returns the first grant (see [`crate::lock`] for every lock and their order).
//! Transient catalog conflicts are retried ([`crate::retry`]).
//!
//! The files: [`config`] (settings), [`request`] (what is asked and what comes back),
//! [`grant`] and [`persistent`] (the grant paths), [`privileges`] (privilege-role
//! set-up), [`marker`], [`roles`] (creating roles), [`session`] (session limits on
//! login roles), [`extend`], [`list`], [`steps`] (test hooks).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Mutex;

use pgwarden_core::config::ConnectorMode;
use tokio::sync::OnceCell;

use crate::connect::Connector;
use crate::error::{ProvisionError, db};
use crate::pool::{Pool, PoolOptions};

mod config;
mod extend;
mod grant;
mod hints;
mod list;
mod marker;
mod persistent;
mod privileges;
mod request;
mod roles;
mod session;
mod steps;

pub use config::{DEFAULT_CLEANUP_LOCK_TIMEOUT, ProvisionerConfig};
pub(crate) use hints::Seen;
pub use request::{Expiry, Grant, GrantRequest, ListedGrant, ListedState};
pub(crate) use roles::{ConnectorFacts, NewRole};
pub(crate) use session::reapply_sql;
#[cfg(not(feature = "testing"))]
pub(crate) use steps::Step;
#[cfg(feature = "testing")]
pub use steps::{Step, StepHook};

/// Grants and revokes access on one instance. Cheap to share (`Arc`).
pub struct Provisioner {
    pub(crate) connector: Connector,
    pub(crate) config: ProvisionerConfig,
    pub(crate) admin: Pool,
    pools: tokio::sync::Mutex<HashMap<String, Pool>>,
    /// Privilege roles known ready (see [`privileges`]).
    ready_privilege_roles: Mutex<HashSet<String>>,
    marker_ready: OnceCell<()>,
    facts: OnceCell<ConnectorFacts>,
    /// Where grants were last seen (see [`hints`]).
    pub(crate) hints: hints::GrantHints,
    #[cfg(feature = "testing")]
    hook: Option<StepHook>,
}

impl fmt::Debug for Provisioner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provisioner")
            .field("connector", &self.connector)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Provisioner {
    /// A provisioner connecting with `connector` (the connector role, in the
    /// integration's default database).
    pub fn new(connector: Connector, config: ProvisionerConfig) -> Result<Self, ProvisionError> {
        let admin = Pool::new(
            connector.clone(),
            &PoolOptions {
                max_size: config.pool_size.max(2),
                ..PoolOptions::default()
            },
        )?;
        Ok(Provisioner {
            connector,
            config,
            admin,
            pools: tokio::sync::Mutex::new(HashMap::new()),
            ready_privilege_roles: Mutex::new(HashSet::new()),
            marker_ready: OnceCell::new(),
            facts: OnceCell::new(),
            hints: hints::GrantHints::default(),
            #[cfg(feature = "testing")]
            hook: None,
        })
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &ProvisionerConfig {
        &self.config
    }

    /// The pool for a database (the admin pool for the default database).
    pub(crate) async fn pool(&self, database: &str) -> Result<Pool, ProvisionError> {
        if database == self.connector.database() {
            return Ok(self.admin.clone());
        }
        let mut pools = self.pools.lock().await;
        if let Some(p) = pools.get(database) {
            return Ok(p.clone());
        }
        let pool = Pool::new(
            self.connector.for_database(database),
            &PoolOptions {
                max_size: self.config.pool_size.max(1),
                ..PoolOptions::default()
            },
        )?;
        pools.insert(database.to_owned(), pool.clone());
        Ok(pool)
    }

    /// The connector's attributes and the server version, read on first use and
    /// checked against the configured [`ConnectorMode`].
    pub(crate) async fn facts(&self) -> Result<&ConnectorFacts, ProvisionError> {
        self.facts
            .get_or_try_init(|| async {
                let conn = self.admin.get().await?;
                let row = conn
                    .query_one(
                        "SELECT current_user::text, rolsuper, rolcreaterole,
                                pg_catalog.current_setting('server_version_num')::int
                         FROM pg_catalog.pg_roles WHERE rolname = current_user",
                        &[],
                    )
                    .await
                    .map_err(db("reading the connector's attributes"))?;
                let facts = ConnectorFacts {
                    name: row.get(0),
                    superuser: row.get(1),
                    version_num: row.get(3),
                    createrole_mode: self.config.connector_mode == ConnectorMode::Createrole,
                };
                let createrole: bool = row.get(2);
                facts.check_mode(createrole, self.config.connector_mode)?;
                Ok::<ConnectorFacts, ProvisionError>(facts)
            })
            .await
    }
}
