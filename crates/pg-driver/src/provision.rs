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
//! Concurrency: privilege roles of one database are created under an advisory lock
//! taken in that database; a grant with an explicit id is made under an advisory lock
//! on the id, so granting the same id twice returns the first grant. Transient
//! catalog conflicts are retried ([`crate::retry`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use pgwarden_core::config::{ConnectorMode, IntegrationConfig, UserMode};
use pgwarden_core::duration::Ttl;
use pgwarden_core::naming::MARKER_ROLE;
use pgwarden_core::resource::AccessEntry;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use crate::connect::Connector;
use crate::error::ConnectError;
use crate::ledger::{
    GrantEntry, GrantState, LEDGER_VERSION, LedgerRole, MarkerRecord, PrivilegeRecord,
    PrivilegeState, RoleMode, RoleRecord, read_ledger, read_ledger_for_grant_cached,
    read_ledger_role_cached,
};
use crate::pool::{Pool, PoolError, PoolOptions, Unsettled};
use crate::privilege::{PrivilegeError, check_grantable, grant_statements, privilege_role_name};
use crate::retry::{is_transient, with_retry};
use crate::scram::{ScramIterations, generate_password, random_string, verifier};
use crate::seal::LedgerKey;
use crate::sql::{Ident, advisory_key, literal, xact_lock};

/// The advisory lock (in the connector's default database) guarding privilege roles'
/// lifecycle: exclusive while one is created, re-granted or dropped; shared while a
/// login role is made a member of some. So a privilege role is never dropped while
/// a grant adds a member, and never used half-made.
pub(crate) const PRIVILEGES_LOCK: &str = "pgwarden:privileges";

/// A transaction on `conn` holding the transaction-level advisory lock on `scope`
/// (in the connection's database), released at commit or rollback; `action` says
/// what failed, if anything.
pub(crate) async fn locked_transaction<'a>(
    conn: &'a mut deadpool_postgres::Object,
    scope: &str,
    action: &str,
) -> Result<deadpool_postgres::Transaction<'a>, ProvisionError> {
    let tx = conn.transaction().await.map_err(db(action.to_owned()))?;
    xact_lock(&*tx, scope)
        .await
        .map_err(db(action.to_owned()))?;
    Ok(tx)
}

/// A transaction on `conn` holding the exclusive [`PRIVILEGES_LOCK`].
pub(crate) async fn privileges_transaction<'a>(
    conn: &'a mut deadpool_postgres::Object,
    action: &str,
) -> Result<deadpool_postgres::Transaction<'a>, ProvisionError> {
    locked_transaction(conn, PRIVILEGES_LOCK, &format!("locking {action}")).await
}

/// One role's oid and comment (`$1`): what its sealed record is checked against.
const ROLE_RECORD_SQL: &str = "
SELECT r.oid, d.description FROM pg_catalog.pg_roles r
LEFT JOIN pg_catalog.pg_shdescription d ON d.objoid = r.oid AND d.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid
WHERE r.rolname = $1";

/// Privilege roles with their comments and oids, by name (`$1`, an array).
const PRIVILEGE_ROLES_BY_NAME_SQL: &str = "
SELECT r.rolname::text, d.description, r.oid FROM pg_catalog.pg_roles r
LEFT JOIN pg_catalog.pg_shdescription d ON d.objoid = r.oid AND d.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid
WHERE r.rolname = ANY($1)";

/// Which of `names` are privilege roles whose authentic record says "ready".
async fn ready_among<C: tokio_postgres::GenericClient>(
    client: &C,
    key: &LedgerKey,
    names: &[String],
) -> Result<HashSet<String>, ProvisionError> {
    let rows = client
        .query(PRIVILEGE_ROLES_BY_NAME_SQL, &[&names])
        .await
        .map_err(db("reading privilege roles"))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let (name, comment, oid): (String, Option<String>, u32) =
                (r.get(0), r.get(1), r.get(2));
            privilege_ready(key, oid, &name, comment.as_deref()).then_some(name)
        })
        .collect())
}

/// The one readiness rule: the role carries a record pgwarden sealed for it, in state
/// ready. A role made or altered by anyone else — even under a privilege role's name,
/// with a comment copied from a real one — is never used.
fn privilege_ready(key: &LedgerKey, oid: u32, name: &str, comment: Option<&str>) -> bool {
    comment
        .and_then(|c| PrivilegeRecord::from_comment(key, oid, name, c))
        .is_some_and(|p| p.state == PrivilegeState::Ready)
}

/// Settings of a provisioner, usually taken from the integration config.
#[derive(Debug, Clone)]
pub struct ProvisionerConfig {
    /// The integration's name, recorded in every role comment.
    pub integration: String,
    /// Prefix of login role names.
    pub username_prefix: String,
    /// Ephemeral or persistent login roles.
    pub user_mode: UserMode,
    /// The longest grant or extension allowed.
    pub max_ttl: Ttl,
    /// PBKDF2 iterations of generated verifiers (see [`crate::scram`]).
    pub scram_iterations: ScramIterations,
    /// Persistent users get a new password at a grant when theirs is older than this.
    pub password_max_age: Option<time::Duration>,
    /// Objects a revoked ephemeral role owns are handed to this role instead of
    /// dropped (`REASSIGN OWNED`); `None` drops them.
    pub successor: Option<String>,
    /// Connections per database.
    pub pool_size: usize,
    /// Whether the connector is a superuser or a `CREATEROLE` role (see
    /// [`ConnectorMode`]).
    pub connector_mode: ConnectorMode,
    /// Roles whose membership may be granted (`postgresql-role:<name>=member`) even
    /// though they reach a superuser, a role with CREATEROLE, REPLICATION or
    /// BYPASSRLS, a server program, file or all-data predefined role, or ADMIN OPTION
    /// on one of those (see [`crate::privilege::grant_statements`]). Such a grant is
    /// logged as a warning naming what the role reaches. Roles reaching pgwarden's own
    /// roles are refused regardless. Usually empty.
    pub sensitive_roles_allowed: Vec<String>,
    /// The key every ledger record is sealed with (see [`crate::seal`]). Every
    /// integration and replica managing the instance must use the same key.
    pub ledger_key: LedgerKey,
    /// How long a revocation's clean-up (`REASSIGN OWNED`, `DROP OWNED`) waits for a
    /// lock held by another session before it stops and reports who holds it
    /// ([`ProvisionError::CleanupWaiting`]); access has ended by then, and the clean-up
    /// is retried. Default 2 s.
    pub cleanup_lock_timeout: std::time::Duration,
}

impl ProvisionerConfig {
    /// The settings of an integration, with the ledger key read from its secret store.
    #[must_use]
    pub fn from_integration(config: &IntegrationConfig, ledger_key: LedgerKey) -> Self {
        ProvisionerConfig {
            ledger_key,
            integration: config.name.clone(),
            username_prefix: config.username_prefix.clone(),
            user_mode: config.user_mode,
            max_ttl: config.max_ttl,
            scram_iterations: ScramIterations::DEFAULT,
            password_max_age: config
                .credential_rotation_days
                .map(|d| time::Duration::days(i64::from(d))),
            successor: None,
            pool_size: 4,
            connector_mode: config.connector_mode,
            sensitive_roles_allowed: config.sensitive_roles_allowed.clone(),
            cleanup_lock_timeout: DEFAULT_CLEANUP_LOCK_TIMEOUT,
        }
    }
}

/// The default [`ProvisionerConfig::cleanup_lock_timeout`].
pub const DEFAULT_CLEANUP_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// When a grant ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// At this instant.
    At(OffsetDateTime),
    /// This long from now.
    After(Ttl),
}

/// What is asked for.
#[derive(Debug, Clone)]
pub struct GrantRequest {
    /// The grant's id; generated when `None`. An explicit id is an idempotency key for
    /// as long as the grant exists: granting it again returns the first grant (no
    /// password), and a revocation of it waits for a grant of it still in flight.
    /// Once the grant is revoked or has expired, the instance keeps no trace of it
    /// (the ledger is the roles themselves), so the same id makes a *new* grant —
    /// new role, new password, [`Grant::created`] true, audited as a grant. A host that
    /// must never reuse an id keeps its own record of the ids it used.
    pub grant_id: Option<String>,
    /// Who asked (an identity-provider user id or email).
    pub requester: String,
    /// Resources and levels (validated pairs).
    pub access: Vec<AccessEntry>,
    /// When access ends (bounded by `max_ttl`).
    pub expiry: Expiry,
    /// Overrides the integration's user mode for this grant.
    pub user_mode: Option<UserMode>,
}

/// A grant that was made (or found, for a repeated id).
#[derive(Clone)]
pub struct Grant {
    /// The grant's id.
    pub grant_id: String,
    /// The login role.
    pub username: String,
    /// The password, given once: `None` when the grant already existed or a
    /// persistent user keeps the password it has.
    pub password: Option<SecretString>,
    /// When access ends.
    pub expires_at: OffsetDateTime,
    /// What was granted.
    pub access: Vec<AccessEntry>,
    /// Whether this call made the grant (false when the id already existed).
    pub created: bool,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("grant_id", &self.grant_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("expires_at", &self.expires_at)
            .field("access", &self.access)
            .field("created", &self.created)
            .finish()
    }
}

/// Where a listed grant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListedState {
    /// In effect.
    Active,
    /// Past its expiry, not yet revoked (reconciliation revokes it).
    Expired,
    /// Revocation started and has not finished.
    Revoking,
}

/// A grant read back from the instance.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ListedGrant {
    /// The grant's id.
    pub grant_id: String,
    /// The integration that made it.
    pub integration: String,
    /// The login role.
    pub username: String,
    /// Who asked.
    pub requester: String,
    /// What was granted.
    pub access: Vec<AccessEntry>,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it ends.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Active, expired or revoking.
    pub state: ListedState,
    /// Ephemeral or persistent.
    pub mode: RoleMode,
}

/// A step of a grant or revocation, for fault injection in tests: a hook that
/// fails at a step makes the operation stop there, as if the process died.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Before privilege roles are created.
    GrantPrivilegeRoles,
    /// Before the login role is created.
    GrantLoginRole,
    /// Before a grant with an explicit id (or a persistent grant) commits, holding
    /// the grant id's lock.
    GrantCommit,
    /// Before the grant is marked revoking and its role set NOLOGIN.
    RevokeMark,
    /// Before sessions are ended.
    RevokeTerminateSessions,
    /// Before memberships are removed.
    RevokeMemberships,
    /// Before owned objects and privileges are removed in this database.
    RevokeCleanDatabase(String),
    /// Before the role is dropped.
    RevokeDropRole,
}

/// A fault-injection hook (see [`Step`]).
pub type StepHook = Arc<dyn Fn(&Step) -> Result<(), String> + Send + Sync>;

/// Granting, extending, revoking or reconciling failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// The request is invalid; nothing was changed.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A resource does not exist, or may not be granted.
    #[error(transparent)]
    Privilege(#[from] PrivilegeError),
    /// No grant with this id is active.
    #[error("no active grant has id {grant_id}")]
    UnknownGrant {
        /// The id asked for.
        grant_id: String,
    },
    /// The instance could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The pool gave no connection.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A statement failed.
    #[error("{action} failed: {}", describe_db_error(source))]
    Database {
        /// What was being done.
        action: String,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// A revocation could not finish; the grant stays "revoking" and reconciliation
    /// retries it. Nothing is forgotten.
    #[error("revocation of {username} is incomplete: {reason}")]
    RevocationIncomplete {
        /// The login role.
        username: String,
        /// What is left.
        reason: String,
    },
    /// A privilege role the grant needs was retired meanwhile; the grant retries.
    #[error("privilege role {0} is being retired; retry the grant")]
    PrivilegeRoleNotReady(String),
    /// Reconcile found the grant expired, but it was extended before its revocation
    /// began: it stays.
    #[error("grant {grant_id} was extended meanwhile: not revoked")]
    NotExpired {
        /// The grant.
        grant_id: String,
    },
    /// Access has ended (login disabled, sessions ended, memberships removed), but
    /// removing what the role owns waited longer than `cleanup_lock_timeout` for locks
    /// other sessions hold. The grant stays "revoking" and the clean-up is retried.
    #[error(
        "access of {username} has ended, but removing what it owns in database {database} waited {waited:?} for locks held by {}; it stays revoking and is retried",
        crate::revoke::describe_blockers(blockers)
    )]
    CleanupWaiting {
        /// The login role.
        username: String,
        /// The database whose clean-up waits.
        database: String,
        /// How long it waited (the lock timeout).
        waited: std::time::Duration,
        /// The sessions holding locks on what the role owns there.
        blockers: Vec<crate::revoke::Blocker>,
    },
    /// Another process is revoking this grant right now.
    #[error("grant {grant_id} is being revoked by another process")]
    InProgress {
        /// The grant.
        grant_id: String,
    },
    /// The connector role does not fit the configured [`ConnectorMode`]; nothing was
    /// changed.
    #[error("{0}")]
    ConnectorMode(String),
    /// A role in pgwarden's namespace carries no record pgwarden sealed for it (made or
    /// altered by someone else, or sealed with another ledger key): pgwarden will not
    /// use it. Nothing was changed.
    #[error("{0}")]
    NotAuthentic(String),
    /// A test hook stopped the operation at a step.
    #[error("stopped at {step:?}: {message}")]
    Injected {
        /// The step.
        step: Step,
        /// The hook's message.
        message: String,
    },
}

/// The server's message, detail and SQLSTATE (never SQL text, which may hold a verifier).
pub(crate) fn describe_db_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(": ");
                s.push_str(d);
            }
            s
        }
        None => e.to_string(),
    }
}

pub(crate) fn db(
    action: impl Into<String>,
) -> impl FnOnce(tokio_postgres::Error) -> ProvisionError {
    let action = action.into();
    move |source| ProvisionError::Database { action, source }
}

pub(crate) fn transient(e: &ProvisionError) -> bool {
    matches!(e, ProvisionError::Database { source, .. } if is_transient(source))
}

/// Grants and revokes access on one instance. Cheap to share (`Arc`).
pub struct Provisioner {
    pub(crate) connector: Connector,
    pub(crate) config: ProvisionerConfig,
    pub(crate) admin: Pool,
    pools: tokio::sync::Mutex<HashMap<String, Pool>>,
    ready_privilege_roles: Mutex<HashSet<String>>,
    marker_ready: OnceCell<()>,
    facts: OnceCell<ConnectorFacts>,
    hook: Option<StepHook>,
}

/// What pgwarden needs to know about the connector role and the server, read once.
#[derive(Debug, Clone)]
pub(crate) struct ConnectorFacts {
    /// `current_user`.
    pub name: String,
    /// `rolsuper`.
    pub superuser: bool,
    /// `server_version_num`.
    pub version_num: i32,
    /// The configured mode is `createrole`.
    pub createrole_mode: bool,
}

impl ConnectorFacts {
    /// Prefix of a transaction that creates roles: on PostgreSQL 16+ in createrole
    /// mode, the connector becomes a member (SET, INHERIT) of each role it creates, on
    /// top of the ADMIN OPTION the server gives the creator. REASSIGN/DROP OWNED and
    /// ending sessions need that membership.
    pub(crate) fn role_creation_prefix(&self) -> &'static str {
        if self.createrole_mode && self.version_num >= 160_000 {
            "SET LOCAL createrole_self_grant = 'set, inherit'; "
        } else {
            ""
        }
    }

    /// The options of every membership pgwarden gives a login role: from PostgreSQL
    /// 16 `INHERIT TRUE, SET FALSE`, so the grantee uses a privilege role's privileges
    /// but can never act *as* it (`SET ROLE`) and create objects it owns, which would
    /// outlive the grant and serve the next grantees. Before 16 membership always
    /// allows `SET ROLE`; there revocation and reconcile remove what pgwarden's roles
    /// come to own instead.
    pub(crate) fn membership_options(&self) -> &'static str {
        if self.version_num >= 160_000 {
            " WITH INHERIT TRUE, SET FALSE"
        } else {
            ""
        }
    }

    /// How a new login role `username` joins the marker role and `privilege_roles`:
    /// (what follows `CREATE ROLE … VALID UNTIL …`, a statement to run right after it).
    /// Before 16 that is `IN ROLE …`; from 16 a `GRANT` with
    /// [`membership_options`](Self::membership_options), which `IN ROLE` cannot carry.
    pub(crate) fn join_clauses(
        &self,
        username: &str,
        privilege_roles: &[String],
    ) -> (String, String) {
        let roles = std::iter::once(MARKER_ROLE)
            .chain(privilege_roles.iter().map(String::as_str))
            .map(|r| Ident(r).to_string())
            .collect::<Vec<_>>()
            .join(", ");
        if self.version_num >= 160_000 {
            (
                String::new(),
                format!(
                    "; GRANT {roles} TO {}{}",
                    Ident(username),
                    self.membership_options()
                ),
            )
        } else {
            (format!(" IN ROLE {roles}"), String::new())
        }
    }

    /// What follows `CREATE ROLE role` so the connector can later act as the role:
    /// before PostgreSQL 16 a `CREATEROLE` connector grants itself the membership
    /// explicitly (16+ has [`role_creation_prefix`](Self::role_creation_prefix)).
    pub(crate) fn self_membership(&self, role: &str) -> String {
        if self.createrole_mode && self.version_num < 160_000 {
            format!("; GRANT {} TO {}", Ident(role), Ident(&self.name))
        } else {
            String::new()
        }
    }
}

impl fmt::Debug for Provisioner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provisioner")
            .field("connector", &self.connector)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn sanitize_requester(requester: &str, max: usize) -> String {
    let mut out = String::new();
    for c in requester.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '_'
        };
        if !(c == '_' && (out.is_empty() || out.ends_with('_'))) {
            out.push(c);
        }
    }
    let mut out = out.trim_end_matches('_').to_owned();
    out.truncate(max);
    let out = out.trim_end_matches('_').to_owned();
    if out.is_empty() {
        "user".to_owned()
    } else {
        out
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
            hook: None,
        })
    }

    /// Installs a fault-injection hook (tests).
    #[must_use]
    pub fn with_step_hook(mut self, hook: StepHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &ProvisionerConfig {
        &self.config
    }

    pub(crate) fn step(&self, step: Step) -> Result<(), ProvisionError> {
        match &self.hook {
            Some(hook) => hook(&step).map_err(|message| ProvisionError::Injected { step, message }),
            None => Ok(()),
        }
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
                check_mode(&facts, createrole, self.config.connector_mode)?;
                Ok::<ConnectorFacts, ProvisionError>(facts)
            })
            .await
    }

    async fn ensure_marker(&self) -> Result<(), ProvisionError> {
        self.marker_ready
            .get_or_try_init(|| async {
                let facts = self.facts().await?;
                let mut conn = self.admin.get().await?;
                if !self.check_marker(&**conn).await? {
                    // Created under the exclusive privileges lock: two first grants
                    // racing make one marker, sealed once.
                    let tx = privileges_transaction(&mut conn, "creating the marker role").await?;
                    if !self.check_marker(&*tx).await? {
                        let oid = create_role_returning_oid(
                            &*tx,
                            &format!("CREATE ROLE {} NOLOGIN", Ident(MARKER_ROLE)),
                            MARKER_ROLE,
                        )
                        .await?;
                        tx.batch_execute(&format!(
                            "COMMENT ON ROLE {} IS {}",
                            Ident(MARKER_ROLE),
                            literal(&MarkerRecord::new().to_comment(&self.config.ledger_key, oid))
                        ))
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

    fn validate(
        &self,
        req: &GrantRequest,
        now: OffsetDateTime,
    ) -> Result<OffsetDateTime, ProvisionError> {
        if req.requester.trim().is_empty() {
            return Err(ProvisionError::InvalidRequest(
                "requester is empty: name who asks for access".into(),
            ));
        }
        if req.access.is_empty() {
            return Err(ProvisionError::InvalidRequest(
                "no access asked for: give at least one <resource-id>=<level>".into(),
            ));
        }
        for entry in &req.access {
            entry
                .resource
                .check_level(entry.level)
                .map_err(|e| ProvisionError::InvalidRequest(e.to_string()))?;
        }
        if let Some(id) = &req.grant_id
            && (id.is_empty() || id.len() > 200 || id.chars().any(char::is_control))
        {
            return Err(ProvisionError::InvalidRequest(
                "grant id must be 1 to 200 printable characters".into(),
            ));
        }
        self.expiry_instant(req.expiry, now)
    }

    pub(crate) fn expiry_instant(
        &self,
        expiry: Expiry,
        now: OffsetDateTime,
    ) -> Result<OffsetDateTime, ProvisionError> {
        let at = match expiry {
            Expiry::At(t) => t,
            Expiry::After(ttl) => {
                now + time::Duration::seconds(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX))
            }
        };
        if at <= now {
            return Err(ProvisionError::InvalidRequest(format!(
                "expiry {at} is not in the future"
            )));
        }
        let max = self.config.max_ttl;
        if at - now
            > time::Duration::seconds(i64::try_from(max.as_secs()).unwrap_or(i64::MAX))
                + time::Duration::seconds(1)
        {
            return Err(ProvisionError::InvalidRequest(format!(
                "expiry is more than max_ttl ({max}) from now: ask for a shorter time or raise max_ttl"
            )));
        }
        // Whole seconds: what VALID UNTIL and the ledger keep.
        Ok(at.replace_nanosecond(0).unwrap_or(at))
    }

    /// Grants access. See the module documentation.
    pub async fn grant(&self, req: GrantRequest) -> Result<Grant, ProvisionError> {
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc());
        let expires_at = self.validate(&req, now)?;
        let mut access = req.access.clone();
        access.sort();
        access.dedup();
        self.ensure_marker().await?;
        let grant_id = req.grant_id.clone().unwrap_or_else(|| {
            format!(
                "g_{}",
                random_string(b"abcdefghijklmnopqrstuvwxyz0123456789", 20)
            )
        });
        let mode = req.user_mode.unwrap_or(self.config.user_mode);
        let explicit_id = req.grant_id.is_some();
        // Superusers silence the statement log around verifiers (`SET LOCAL
        // log_statement`). Asked before any transaction takes its connection: the
        // first call needs a connection of its own.
        let facts = self.facts().await?.clone();
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.step(Step::GrantPrivilegeRoles)?;
            let privilege_roles = self.ensure_privilege_roles(&access).await?;
            self.step(Step::GrantLoginRole)?;
            let entry = GrantEntry {
                grant_id: grant_id.clone(),
                requester: req.requester.clone(),
                access: access.clone(),
                privilege_roles,
                created_at: now,
                expires_at,
                state: GrantState::Active,
            };
            let result = with_retry(
                || async {
                    match mode {
                        UserMode::Ephemeral => {
                            self.create_ephemeral(&entry, explicit_id, &facts).await
                        }
                        UserMode::Persistent => self.grant_persistent(&entry, now, &facts).await,
                    }
                },
                transient,
            )
            .await;
            match result {
                // A privilege role was retired or dropped meanwhile (a reconcile
                // elsewhere): forget what we knew and set it up again.
                Err(e)
                    if attempt < 3
                        && (missing_role(&e)
                            || matches!(e, ProvisionError::PrivilegeRoleNotReady(_))) =>
                {
                    self.ready_privilege_roles
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clear();
                }
                other => return other,
            }
        }
    }

    /// Under the shared privileges lock, checks that every privilege role is ready.
    async fn lock_ready_privilege_roles<C: tokio_postgres::GenericClient>(
        &self,
        tx: &C,
        names: &[String],
    ) -> Result<(), ProvisionError> {
        tx.execute(
            "SELECT pg_catalog.pg_advisory_xact_lock_shared($1)",
            &[&advisory_key(PRIVILEGES_LOCK)],
        )
        .await
        .map_err(db("locking privilege roles"))?;
        let ready = ready_among(tx, &self.config.ledger_key, names).await?;
        match names.iter().find(|n| !ready.contains(*n)) {
            Some(name) => Err(ProvisionError::PrivilegeRoleNotReady(name.clone())),
            None => Ok(()),
        }
    }

    async fn create_ephemeral(
        &self,
        entry: &GrantEntry,
        explicit_id: bool,
        facts: &ConnectorFacts,
    ) -> Result<Grant, ProvisionError> {
        if !explicit_id {
            return self.create_ephemeral_fast(entry, facts).await;
        }
        let mut conn = self.admin.get().await?;
        let tx = locked_transaction(
            &mut conn,
            &format!("pgwarden:grant:{}", entry.grant_id),
            "locking the grant id",
        )
        .await?;
        // Only the roles that may hold this id: a grant's cost does not grow with the
        // number of grants.
        let ledger = read_ledger_for_grant_cached(&tx, &self.config.ledger_key, &entry.grant_id)
            .await
            .map_err(db("reading the ledger"))?;
        if let Some((role, g)) = find_grant(&ledger, &entry.grant_id) {
            return Ok(existing_grant(role, g));
        }
        self.lock_ready_privilege_roles(&*tx, &entry.privilege_roles)
            .await?;
        let role = self.new_ephemeral_role(entry, facts);
        silence_statement_log(&*tx, facts.superuser).await?;
        let oid = create_role_returning_oid(&*tx, &role.create, &role.username).await?;
        tx.batch_execute(&role.finish(&self.config.ledger_key, oid))
            .await
            .map_err(db("creating the login role"))?;
        self.step(Step::GrantCommit)?;
        tx.commit().await.map_err(db("committing the grant"))?;
        tracing::info!(grant_id = %entry.grant_id, username = %role.username, expires_at = %entry.expires_at, "granted");
        Ok(role.into_grant(entry))
    }

    /// A new ephemeral login role for `entry`: a fresh name and password.
    fn new_ephemeral_role(&self, entry: &GrantEntry, facts: &ConnectorFacts) -> NewLoginRole {
        let max = 63 - self.config.username_prefix.len() - 7;
        let username = format!(
            "{}{}_{}",
            self.config.username_prefix,
            sanitize_requester(&entry.requester, max),
            random_string(b"abcdefghijklmnopqrstuvwxyz0123456789", 6)
        );
        let record = RoleRecord {
            pgwarden: LEDGER_VERSION,
            integration: self.config.integration.clone(),
            mode: RoleMode::Ephemeral,
            password_set_at: None,
            grants: vec![entry.clone()],
        };
        NewLoginRole::new(username, record, entry, facts, self.config.scram_iterations)
    }

    /// A grant without an explicit id needs no ledger look-up: the whole transaction
    /// goes in two round trips. The first takes the shared privileges lock, reads the
    /// privilege roles' records and creates the login role (no login, no password
    /// yet) with its memberships; the records are opened here, and only if every
    /// privilege role is authentic and ready does the second round trip give the role
    /// its password and sealed record (bound to the oid the first returned) and
    /// commit. Otherwise the transaction rolls back. The password travels only in the
    /// second, after `SET LOCAL log_statement = 'none'` took effect (superusers).
    async fn create_ephemeral_fast(
        &self,
        entry: &GrantEntry,
        facts: &ConnectorFacts,
    ) -> Result<Grant, ProvisionError> {
        // A plain BEGIN … COMMIT over two round trips: dropped in between (a cancelled
        // future), the connection must close, not return to the pool mid-transaction
        // holding the shared privileges lock.
        let conn = Unsettled::new(self.admin.get().await?);
        let names = entry
            .privilege_roles
            .iter()
            .map(|n| literal(n))
            .collect::<Vec<_>>()
            .join(", ");
        let role = self.new_ephemeral_role(entry, facts);
        let first = format!(
            "BEGIN; {silence}SELECT pg_catalog.pg_advisory_xact_lock_shared({key}); \
             SELECT 'p', r.oid, r.rolname, d.description FROM pg_catalog.pg_roles r \
               LEFT JOIN pg_catalog.pg_shdescription d ON d.objoid = r.oid AND d.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid \
               WHERE r.rolname = ANY (ARRAY[{names}]::pg_catalog.name[]); \
             {create}; \
             SELECT 'u', oid, NULL, NULL FROM pg_catalog.pg_roles WHERE rolname = {u}",
            silence = if facts.superuser {
                "SET LOCAL log_statement = 'none'; "
            } else {
                ""
            },
            key = advisory_key(PRIVILEGES_LOCK),
            create = role.create,
            u = literal(&role.username),
        );
        let key = &self.config.ledger_key;
        let outcome = match conn.simple_query(&first).await {
            Err(e) => Err(db("creating the login role")(e)),
            Ok(messages) => {
                let mut ready = 0;
                let mut oid = None;
                for m in &messages {
                    // The tagged rows have four columns (the lock's row has one).
                    let tokio_postgres::SimpleQueryMessage::Row(r) = m else {
                        continue;
                    };
                    if r.len() != 4 {
                        continue;
                    }
                    let number = r.get(1).and_then(|v| v.parse::<u32>().ok());
                    match (r.get(0), number) {
                        (Some("p"), Some(o))
                            if privilege_ready(key, o, r.get(2).unwrap_or_default(), r.get(3)) =>
                        {
                            ready += 1;
                        }
                        (Some("u"), Some(o)) => oid = Some(o),
                        _ => {}
                    }
                }
                match oid {
                    Some(oid) if ready == entry.privilege_roles.len() => conn
                        .batch_execute(&format!("{}; COMMIT", role.finish(key, oid)))
                        .await
                        .map_err(db("creating the login role")),
                    _ => Err(ProvisionError::PrivilegeRoleNotReady(
                        entry.privilege_roles.join(", "),
                    )),
                }
            }
        };
        if let Err(e) = outcome {
            if conn.batch_execute("ROLLBACK").await.is_ok() {
                conn.settle();
            }
            // A privilege role dropped meanwhile: CREATE ROLE … IN ROLE names it.
            if missing_role(&e) {
                return Err(ProvisionError::PrivilegeRoleNotReady(
                    entry.privilege_roles.join(", "),
                ));
            }
            return Err(e);
        }
        conn.settle();
        tracing::info!(grant_id = %entry.grant_id, username = %role.username, expires_at = %entry.expires_at, "granted");
        Ok(role.into_grant(entry))
    }

    /// The stable role name of a persistent user: prefix, readable requester, and a
    /// short hash so two requesters that sanitize alike never share a role.
    fn persistent_name(&self, requester: &str) -> String {
        let hash = Sha256::digest(requester.as_bytes());
        let max = 63 - self.config.username_prefix.len() - 7;
        format!(
            "{}{}_{:02x}{:02x}{:02x}",
            self.config.username_prefix,
            sanitize_requester(requester, max),
            hash[0],
            hash[1],
            hash[2]
        )
    }

    #[allow(clippy::too_many_lines, reason = "one transaction, read top to bottom")]
    async fn grant_persistent(
        &self,
        entry: &GrantEntry,
        now: OffsetDateTime,
        facts: &ConnectorFacts,
    ) -> Result<Grant, ProvisionError> {
        let username = self.persistent_name(&entry.requester);
        let mut conn = self.admin.get().await?;
        let tx = locked_transaction(
            &mut conn,
            &format!("pgwarden:role:{username}"),
            "locking the persistent role",
        )
        .await?;
        // Held until commit, as an ephemeral grant with an explicit id does: a
        // revocation of this id waits for the grant instead of missing it.
        xact_lock(&*tx, &format!("pgwarden:grant:{}", entry.grant_id))
            .await
            .map_err(db("locking the grant id"))?;
        let ledger = read_ledger_for_grant_cached(&tx, &self.config.ledger_key, &entry.grant_id)
            .await
            .map_err(db("reading the ledger"))?;
        if let Some((role, g)) = find_grant(&ledger, &entry.grant_id) {
            return Ok(existing_grant(role, g));
        }
        self.lock_ready_privilege_roles(&*tx, &entry.privilege_roles)
            .await?;
        let existing = read_ledger_role_cached(&tx, &self.config.ledger_key, &username)
            .await
            .map_err(db("reading the ledger"))?
            .and_then(|r| r.record.map(|rec| (r.oid, rec)));
        let u = Ident(&username);
        let key = &self.config.ledger_key;
        let password = match existing {
            None => {
                // A role of that name that is not in the ledger with an authentic
                // record (someone else's, or forged) makes CREATE ROLE fail: its
                // password is never touched.
                let record = RoleRecord {
                    pgwarden: LEDGER_VERSION,
                    integration: self.config.integration.clone(),
                    mode: RoleMode::Persistent,
                    password_set_at: Some(now),
                    grants: vec![entry.clone()],
                };
                let role = NewLoginRole::new(
                    username.clone(),
                    record,
                    entry,
                    facts,
                    self.config.scram_iterations,
                );
                silence_statement_log(&*tx, facts.superuser).await?;
                let oid = create_role_returning_oid(&*tx, &role.create, &username).await?;
                tx.batch_execute(&role.finish(key, oid))
                    .await
                    .map_err(db("granting to the persistent role"))?;
                Some(role.password)
            }
            Some((oid, mut record)) => {
                if let Some(other) = record
                    .grants
                    .iter()
                    .find(|g| g.requester != entry.requester)
                {
                    return Err(ProvisionError::NotAuthentic(format!(
                        "persistent role {username} belongs to requester {:?}, not {:?}: refusing to hand it over",
                        other.requester, entry.requester
                    )));
                }
                let stale = match (record.password_set_at, self.config.password_max_age) {
                    (Some(set), Some(max)) => now - set >= max,
                    (None, _) => true,
                    (_, None) => false,
                };
                let password = stale.then(generate_password);
                if password.is_some() {
                    record.password_set_at = Some(now);
                }
                record.grants.retain(|g| g.state == GrantState::Active);
                record.grants.push(entry.clone());
                let until = record
                    .grants
                    .iter()
                    .map(|g| g.expires_at)
                    .max()
                    .unwrap_or(entry.expires_at);
                let mut sql = String::new();
                for r in &entry.privilege_roles {
                    let _ = write!(
                        sql,
                        "GRANT {} TO {u}{}; ",
                        Ident(r),
                        facts.membership_options()
                    );
                }
                let _ = write!(
                    sql,
                    "ALTER ROLE {u} LOGIN VALID UNTIL {}",
                    literal(&timestamp(until))
                );
                if let Some(p) = &password {
                    let _ = write!(
                        sql,
                        " PASSWORD {}",
                        literal(verifier(p, self.config.scram_iterations).as_str())
                    );
                }
                let _ = write!(
                    sql,
                    "; COMMENT ON ROLE {u} IS {}",
                    literal(&record.to_comment(key, oid, &username))
                );
                silence_statement_log(&*tx, facts.superuser).await?;
                tx.batch_execute(&sql)
                    .await
                    .map_err(db("granting to the persistent role"))?;
                password
            }
        };
        self.step(Step::GrantCommit)?;
        tx.commit().await.map_err(db("committing the grant"))?;
        tracing::info!(grant_id = %entry.grant_id, username = %username, expires_at = %entry.expires_at, "granted (persistent)");
        Ok(Grant {
            grant_id: entry.grant_id.clone(),
            username,
            password,
            expires_at: entry.expires_at,
            access: entry.access.clone(),
            created: true,
        })
    }

    /// Makes sure a ready privilege role exists for every entry; returns their names.
    async fn ensure_privilege_roles(
        &self,
        access: &[AccessEntry],
    ) -> Result<Vec<String>, ProvisionError> {
        let names: Vec<String> = access.iter().map(privilege_role_name).collect();
        // Membership in a role is checked on every grant, not only when its privilege
        // role is made: the role's own memberships may have changed since, and another
        // integration may have made the privilege role under its own opt-ins.
        if access
            .iter()
            .any(|e| matches!(e.resource, pgwarden_core::resource::ResourceId::Role { .. }))
        {
            let conn = self.admin.get().await?;
            for e in access {
                crate::privilege::check_membership(
                    &**conn,
                    e,
                    &self.config.sensitive_roles_allowed,
                )
                .await?;
            }
        }
        let missing: Vec<&AccessEntry> = {
            let ready = self
                .ready_privilege_roles
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            access
                .iter()
                .zip(&names)
                .filter(|(_, n)| !ready.contains(*n))
                .map(|(e, _)| e)
                .collect()
        };
        if missing.is_empty() {
            return Ok(names);
        }
        let conn = self.admin.get().await?;
        let wanted: Vec<String> = missing.iter().map(|e| privilege_role_name(e)).collect();
        let ready_now = ready_among(&**conn, &self.config.ledger_key, &wanted).await?;
        drop(conn);
        let mut by_database: BTreeMap<String, Vec<&AccessEntry>> = BTreeMap::new();
        for e in missing {
            if !ready_now.contains(&privilege_role_name(e)) {
                let db = e
                    .resource
                    .database_name()
                    .unwrap_or(self.connector.database())
                    .to_owned();
                by_database.entry(db).or_default().push(e);
            }
        }
        for (database, entries) in by_database {
            with_retry(
                || self.create_privilege_roles(&database, &entries, false),
                transient,
            )
            .await?;
        }
        let mut ready = self
            .ready_privilege_roles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ready.extend(names.iter().cloned());
        Ok(names)
    }

    /// Creates (or re-grants) privilege roles of one database in one transaction, under
    /// the exclusive privileges lock. With `refresh`, roles that are ready are re-granted
    /// too (their scope may have gained objects).
    pub(crate) async fn create_privilege_roles(
        &self,
        database: &str,
        entries: &[&AccessEntry],
        refresh: bool,
    ) -> Result<(), ProvisionError> {
        // The exclusive lock lives in the default database and is held until the
        // work in the resource's database has committed.
        let mut lock_conn = self.admin.get().await?;
        let lock_tx = privileges_transaction(&mut lock_conn, "privilege setup").await?;
        if database == self.connector.database() {
            self.setup_privilege_roles(&*lock_tx, entries, refresh)
                .await?;
        } else {
            let pool = self.pool(database).await?;
            let mut conn = pool.get().await?;
            let tx = conn
                .transaction()
                .await
                .map_err(db(format!("starting privilege setup in {database}")))?;
            self.setup_privilege_roles(&*tx, entries, refresh).await?;
            tx.commit()
                .await
                .map_err(db("committing privilege setup"))?;
        }
        lock_tx
            .commit()
            .await
            .map_err(db("committing privilege setup"))?;
        Ok(())
    }

    /// Creates or re-grants privilege roles in the transaction's database.
    async fn setup_privilege_roles<C: tokio_postgres::GenericClient>(
        &self,
        tx: &C,
        entries: &[&AccessEntry],
        refresh: bool,
    ) -> Result<(), ProvisionError> {
        let facts = self.facts().await?;
        for entry in entries {
            let name = privilege_role_name(entry);
            let key = &self.config.ledger_key;
            let row = tx
                .query_opt(ROLE_RECORD_SQL, &[&name])
                .await
                .map_err(db("reading a privilege role"))?;
            let existing = match &row {
                None => None,
                Some(r) => {
                    let (oid, comment): (u32, Option<String>) = (r.get(0), r.get(1));
                    let Some(record) = comment
                        .as_deref()
                        .and_then(|c| PrivilegeRecord::from_comment(key, oid, &name, c))
                    else {
                        // Someone made a role under this privilege role's name (or
                        // altered it): adopting it would hand grantees whatever it
                        // already holds. Refused until an operator looks at it.
                        return Err(ProvisionError::NotAuthentic(format!(
                            "role {name} is in pgwarden's namespace but carries no record pgwarden sealed for it with this ledger key (made or altered by someone else, or by an integration with another key): pgwarden will not use it for {entry}. Check what it holds, then drop it (DROP OWNED BY {name}; DROP ROLE {name}) or give every integration of this instance the same ledger key"
                        )));
                    };
                    Some((oid, record.state))
                }
            };
            if !refresh && existing.is_some_and(|(_, state)| state == PrivilegeState::Ready) {
                continue;
            }
            if facts.createrole_mode {
                // Refuse up front, naming the objects, rather than half-grant: GRANT
                // by a non-owner without grant options is an error or, where PUBLIC
                // holds something, only a warning.
                check_grantable(tx, entry, &facts.name, facts.version_num).await?;
            }
            let oid = match existing {
                Some((oid, _)) => oid,
                None => {
                    create_role_returning_oid(
                        tx,
                        &format!(
                            "{}CREATE ROLE {n} NOLOGIN INHERIT{}",
                            facts.role_creation_prefix(),
                            facts.self_membership(&name),
                            n = Ident(&name)
                        ),
                        &name,
                    )
                    .await?
                }
            };
            let mut sql = String::new();
            for s in
                grant_statements(tx, entry, &name, &self.config.sensitive_roles_allowed).await?
            {
                sql.push_str(&s);
                sql.push_str("; ");
            }
            let record = PrivilegeRecord {
                pgwarden: LEDGER_VERSION,
                access: (*entry).clone(),
                state: PrivilegeState::Ready,
            };
            let _ = write!(
                sql,
                "COMMENT ON ROLE {} IS {}",
                Ident(&name),
                literal(&record.to_comment(key, oid, &name))
            );
            tx.batch_execute(&sql)
                .await
                .map_err(db(format!("setting up privilege role for {entry}")))?;
        }
        Ok(())
    }

    pub(crate) fn forget_privilege_role(&self, name: &str) {
        self.ready_privilege_roles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name);
    }

    /// Moves a grant's expiry (bounded by `max_ttl` from now).
    pub async fn extend(
        &self,
        grant_id: &str,
        expiry: Expiry,
    ) -> Result<ListedGrant, ProvisionError> {
        let now = OffsetDateTime::now_utc();
        let expires_at = self.expiry_instant(expiry, now)?;
        let mut conn = self.admin.get().await?;
        let tx = locked_transaction(
            &mut conn,
            &format!("pgwarden:grant:{grant_id}"),
            "locking the grant id",
        )
        .await?;
        let ledger = read_ledger_for_grant_cached(&tx, &self.config.ledger_key, grant_id)
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
        let sql = format!(
            "ALTER ROLE {u} VALID UNTIL {t}; COMMENT ON ROLE {u} IS {c}",
            u = Ident(&role.username),
            t = literal(&timestamp(until)),
            c = literal(&record.to_comment(&self.config.ledger_key, oid, &role.username))
        );
        tx.batch_execute(&sql)
            .await
            .map_err(db("extending the grant"))?;
        tx.commit().await.map_err(db("committing the extension"))?;
        let g = record
            .grants
            .iter()
            .find(|g| g.grant_id == grant_id)
            .cloned()
            .unwrap_or_else(|| record.grants[0].clone());
        tracing::info!(grant_id, username = %role.username, expires_at = %expires_at, "extended");
        Ok(listed(&role.username, &record, &g, now))
    }

    /// Every grant recorded in the instance.
    pub async fn list(&self) -> Result<Vec<ListedGrant>, ProvisionError> {
        let conn = self.admin.get().await?;
        let ledger = read_ledger(&**conn, &self.config.ledger_key)
            .await
            .map_err(db("reading the ledger"))?;
        let now = OffsetDateTime::now_utc();
        Ok(ledger
            .iter()
            .filter_map(|r| r.record.as_ref().map(|rec| (r, rec)))
            .flat_map(|(r, rec)| {
                rec.grants
                    .iter()
                    .map(move |g| listed(&r.username, rec, g, now))
            })
            .collect())
    }
}

/// A login role about to be created: made first without login or password (so that
/// its oid can be read back), then given both and its sealed record.
struct NewLoginRole {
    username: String,
    password: SecretString,
    verifier: String,
    record: RoleRecord,
    /// `CREATE ROLE … NOLOGIN … VALID UNTIL …` with its memberships: no secret in it.
    create: String,
}

impl NewLoginRole {
    fn new(
        username: String,
        record: RoleRecord,
        entry: &GrantEntry,
        facts: &ConnectorFacts,
        iterations: ScramIterations,
    ) -> Self {
        let password = generate_password();
        let verifier = verifier(&password, iterations).as_str().to_owned();
        let (in_roles, join) = facts.join_clauses(&username, &entry.privilege_roles);
        let create = format!(
            "{prefix}CREATE ROLE {u} NOLOGIN INHERIT VALID UNTIL {until}{in_roles}{join}{own}",
            prefix = facts.role_creation_prefix(),
            own = facts.self_membership(&username),
            u = Ident(&username),
            until = literal(&timestamp(entry.expires_at)),
        );
        NewLoginRole {
            username,
            password,
            verifier,
            record,
            create,
        }
    }

    /// `ALTER ROLE … LOGIN PASSWORD …; COMMENT …`: the password and the record sealed
    /// for the role's `oid`.
    fn finish(&self, key: &LedgerKey, oid: u32) -> String {
        format!(
            "ALTER ROLE {u} LOGIN PASSWORD {v}; COMMENT ON ROLE {u} IS {c}",
            u = Ident(&self.username),
            v = literal(&self.verifier),
            c = literal(&self.record.to_comment(key, oid, &self.username)),
        )
    }

    fn into_grant(self, entry: &GrantEntry) -> Grant {
        Grant {
            grant_id: entry.grant_id.clone(),
            username: self.username,
            password: Some(self.password),
            expires_at: entry.expires_at,
            access: entry.access.clone(),
            created: true,
        }
    }
}

/// Refuses a connector whose role does not match the configured mode.
fn check_mode(
    facts: &ConnectorFacts,
    createrole: bool,
    mode: ConnectorMode,
) -> Result<(), ProvisionError> {
    let name = &facts.name;
    match mode {
        ConnectorMode::Superuser if !facts.superuser => {
            Err(ProvisionError::ConnectorMode(format!(
                "connector role {name} is not a superuser, but connector_mode is \"superuser\": set connector_mode = \"createrole\" (managed clouds such as RDS, Cloud SQL, Azure) or connect as a superuser"
            )))
        }
        ConnectorMode::Createrole if !facts.superuser && !createrole => {
            Err(ProvisionError::ConnectorMode(format!(
                "connector role {name} has neither CREATEROLE nor SUPERUSER: pgwarden cannot create roles — ALTER ROLE {name} CREATEROLE"
            )))
        }
        _ => Ok(()),
    }
}

/// `SET LOCAL log_statement = 'none'`, sent on its own: the server logs a query
/// string when it arrives, so the setting must be in force before the statement that
/// carries a verifier is sent.
async fn silence_statement_log<C: tokio_postgres::GenericClient>(
    tx: &C,
    superuser: bool,
) -> Result<(), ProvisionError> {
    if superuser {
        tx.batch_execute("SET LOCAL log_statement = 'none'")
            .await
            .map_err(db("silencing the statement log"))?;
    }
    Ok(())
}

fn unreachable_record() -> RoleRecord {
    RoleRecord {
        pgwarden: LEDGER_VERSION,
        integration: String::new(),
        mode: RoleMode::Ephemeral,
        password_set_at: None,
        grants: Vec::new(),
    }
}

fn listed(username: &str, record: &RoleRecord, g: &GrantEntry, now: OffsetDateTime) -> ListedGrant {
    ListedGrant {
        grant_id: g.grant_id.clone(),
        integration: record.integration.clone(),
        username: username.to_owned(),
        requester: g.requester.clone(),
        access: g.access.clone(),
        created_at: g.created_at,
        expires_at: g.expires_at,
        state: match g.state {
            GrantState::Revoking => ListedState::Revoking,
            GrantState::Active if g.expires_at <= now => ListedState::Expired,
            GrantState::Active => ListedState::Active,
        },
        mode: record.mode,
    }
}

/// A grant found in the ledger, returned again (without a password).
fn existing_grant(role: &LedgerRole, g: &GrantEntry) -> Grant {
    Grant {
        grant_id: g.grant_id.clone(),
        username: role.username.clone(),
        password: None,
        expires_at: g.expires_at,
        access: g.access.clone(),
        created: false,
    }
}

/// The role holding a grant, and the grant.
pub(crate) fn find_grant<'a>(
    ledger: &'a [LedgerRole],
    grant_id: &str,
) -> Option<(&'a LedgerRole, &'a GrantEntry)> {
    ledger.iter().find_map(|r| {
        r.record
            .as_ref()
            .and_then(|rec| rec.grants.iter().find(|g| g.grant_id == grant_id))
            .map(|g| (r, g))
    })
}

/// Runs `create`, whose last statement creates role `name`, and returns the new role's
/// oid — what its sealed record is bound to — in the same round trip.
pub(crate) async fn create_role_returning_oid<C: tokio_postgres::GenericClient>(
    client: &C,
    create: &str,
    name: &str,
) -> Result<u32, ProvisionError> {
    let messages = client
        .simple_query(&format!(
            "{create}; SELECT oid FROM pg_catalog.pg_roles WHERE rolname = {}",
            literal(name)
        ))
        .await
        .map_err(db(format!("creating role {name}")))?;
    last_row_value(&messages, 0)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            ProvisionError::NotAuthentic(format!("role {name} was created but cannot be read back"))
        })
}

/// Column `i` of the last row of a simple-protocol result.
pub(crate) fn last_row_value(
    messages: &[tokio_postgres::SimpleQueryMessage],
    i: usize,
) -> Option<&str> {
    messages.iter().rev().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(i),
        _ => None,
    })
}

fn missing_role(e: &ProvisionError) -> bool {
    matches!(e, ProvisionError::Database { source, .. }
        if source.as_db_error().is_some_and(|d| d.code().code() == "42704"))
}

/// `VALID UNTIL` text: UTC, whole seconds.
pub(crate) fn timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}+00",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requesters_become_safe_role_names() {
        assert_eq!(
            sanitize_requester("alice@example.com", 40),
            "alice_example_com"
        );
        assert_eq!(sanitize_requester("Zoë O'Brien", 40), "zo_o_brien");
        assert_eq!(sanitize_requester("\"; DROP ROLE x; --", 40), "drop_role_x");
        assert_eq!(sanitize_requester("@@@", 40), "user");
        assert_eq!(sanitize_requester(&"a".repeat(100), 52).len(), 52);
    }

    #[test]
    fn timestamps_are_utc_seconds() {
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert_eq!(timestamp(t), "2027-01-15 08:00:00+00");
    }
}
