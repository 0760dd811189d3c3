//! Granting: validation, the retry around a grant, and the ephemeral grant in two
//! round trips (with an explicit id, its look-up under its lock pipelined in the first).

use pgwarden_core::config::UserMode;
use time::OffsetDateTime;

use super::Provisioner;
use super::hints::Seen;
use super::request::{Expiry, Grant, GrantRequest};
use super::roles::{ConnectorFacts, NewLoginRole, returned_oid, returning_oid_sql};
use super::session::explain_settings_error;
use super::steps::Step;
use crate::error::{InvalidRequest, ProvisionError, db, transient};
use crate::ledger::{
    GrantEntry, GrantState, INDEX_SCANS, INDEX_SCANS_END, LEDGER_VERSION, PRIVILEGE_RECORDS_SQL,
    RoleMode, RoleRecord, Seqscan, find_grant, prepare_grant_lookup, ready_among, ready_in,
};
use crate::lock::Lock;
use crate::pool::{Unsettled, connection_lost};
use crate::retry::with_retry;
use crate::scram::random_string;
use crate::sql::silence_log_sql;
use futures_util::join;

impl Provisioner {
    fn validate(
        &self,
        req: &GrantRequest,
        now: OffsetDateTime,
    ) -> Result<OffsetDateTime, ProvisionError> {
        if req.requester.trim().is_empty() {
            return Err(InvalidRequest::EmptyRequester.into());
        }
        if req.access.is_empty() {
            return Err(InvalidRequest::NoAccess.into());
        }
        for entry in &req.access {
            entry
                .resource
                .check_level(entry.level)
                .map_err(InvalidRequest::Level)?;
        }
        if let Some(id) = &req.grant_id
            && (id.is_empty() || id.len() > 200 || id.chars().any(char::is_control))
        {
            return Err(InvalidRequest::InvalidGrantId.into());
        }
        self.expiry_instant(req.expiry, now)
    }

    /// When `expiry` ends, from `now`: in the future, within `max_ttl`, whole seconds.
    pub(super) fn expiry_instant(
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
            return Err(InvalidRequest::ExpiryNotInFuture { at }.into());
        }
        let max = self.config.max_ttl;
        if at - now
            > time::Duration::seconds(i64::try_from(max.as_secs()).unwrap_or(i64::MAX))
                + time::Duration::seconds(1)
        {
            return Err(InvalidRequest::OverMaxTtl { max_ttl: max }.into());
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
        // Superusers silence the statement log around verifiers (`SET LOCAL
        // log_statement`). Asked before any transaction takes its connection: the
        // first call needs a connection of its own. The session limits are checked
        // against the server before anything is made.
        let facts = self.facts().await?.clone();
        self.check_session_limits(&req.session, &facts).await?;
        self.ensure_marker().await?;
        let explicit_id = req.grant_id.is_some();
        let mut grant_id = req.grant_id.clone().unwrap_or_else(new_grant_id);
        let mode = req.user_mode.unwrap_or(self.config.user_mode);
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
                session: req.session.clone(),
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
                    self.forget_privilege_roles();
                }
                // An ephemeral role is named by its grant id's tag (64 bits): a name
                // taken for a generated id (by a role someone else made, or an id whose
                // tag is alike) draws a new id. For an id the caller chose, the id was
                // just found in no grant, so the role of that name is not pgwarden's.
                Err(e) if mode == UserMode::Ephemeral && name_taken(&e) => {
                    if explicit_id || attempt >= 3 {
                        return Err(ProvisionError::NotAuthentic(format!(
                            "the login role name for grant {grant_id:?} is taken by a role that is not a grant pgwarden recorded (another tool or user made it): {e}"
                        )));
                    }
                    grant_id = new_grant_id();
                }
                other => {
                    if let Ok(g) = &other {
                        self.hints.remember(&g.grant_id, &g.username);
                    }
                    return other;
                }
            }
        }
    }

    /// Under the shared privileges lock, checks that every privilege role is ready.
    pub(super) async fn lock_ready_privilege_roles(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        names: &[String],
    ) -> Result<(), ProvisionError> {
        Lock::Privileges
            .acquire_shared(&**tx)
            .await
            .map_err(db("locking privilege roles"))?;
        let ready = ready_among(tx, &self.config.ledger_key, names)
            .await
            .map_err(db("reading privilege roles"))?;
        match names.iter().find(|n| !ready.contains(*n)) {
            Some(name) => Err(ProvisionError::PrivilegeRoleNotReady(name.clone())),
            None => Ok(()),
        }
    }

    /// A new ephemeral login role for `entry`: named by its grant id's lookup tag
    /// ([`ephemeral_name`]), with a fresh password.
    fn new_ephemeral_role(&self, entry: &GrantEntry, facts: &ConnectorFacts) -> NewLoginRole {
        let username = ephemeral_name(
            &self.config.username_prefix,
            &self.config.ledger_key.lookup_tag(&entry.grant_id),
            &entry.requester,
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

    /// An ephemeral grant in two round trips. The first is one pipeline: with an
    /// explicit id, `BEGIN`, the id's `Grant` lock and the look-up of the roles that
    /// may hold the id; then (after `BEGIN`, without one) the shared privileges lock,
    /// the privilege roles' records, and the login role created (no login, no
    /// password yet) with its memberships. The records are opened here, and only if
    /// the id is new and every privilege role is authentic and ready does the second
    /// round trip give the role its password and sealed record (bound to the oid the
    /// first returned) and commit. Otherwise the transaction rolls back: a grant
    /// already made under the id is returned as it is (the role made meanwhile is
    /// undone with the rollback). The password travels only in the second, after
    /// [`silence_log_sql`] took effect (superusers).
    ///
    /// The connection is checked out without the pool's check query: nothing before
    /// the second round trip commits, so when the first finds the connection dead (a
    /// backend terminated while it sat in the pool), the grant runs again, once, on a
    /// connection the pool checked.
    async fn create_ephemeral(
        &self,
        entry: &GrantEntry,
        explicit_id: bool,
        facts: &ConnectorFacts,
    ) -> Result<Grant, ProvisionError> {
        let mut lost = false;
        let conn = self.admin.get_unchecked().await?;
        let result = self
            .create_ephemeral_on(conn, entry, explicit_id, facts, &mut lost)
            .await;
        match result {
            Err(e) if lost => {
                tracing::debug!(error = %e, "a pooled connection was dead; granting on a checked one");
                let conn = self.admin.get().await?;
                self.create_ephemeral_on(conn, entry, explicit_id, facts, &mut lost)
                    .await
            }
            other => other,
        }
    }

    /// [`Self::create_ephemeral`] on `conn`; sets `lost` when its first round trip
    /// found the connection dead (nothing was committed).
    async fn create_ephemeral_on(
        &self,
        conn: deadpool_postgres::Object,
        entry: &GrantEntry,
        explicit_id: bool,
        facts: &ConnectorFacts,
        lost: &mut bool,
    ) -> Result<Grant, ProvisionError> {
        // A plain BEGIN … COMMIT over two round trips: dropped in between (a cancelled
        // future), the connection must close, not return to the pool mid-transaction
        // holding its locks.
        let conn = Unsettled::new(conn);
        // Prepared before the pipeline (once per connection), so that each request
        // goes out when first polled, in order, and the server reuses their plans.
        let records_sql = conn
            .prepare_cached(PRIVILEGE_RECORDS_SQL)
            .await
            .map_err(first_trip(lost, "reading privilege roles"))?;
        if explicit_id {
            prepare_grant_lookup(&conn)
                .await
                .map_err(first_trip(lost, "reading the ledger"))?;
        }
        let role = self.new_ephemeral_role(entry, facts);
        let (open, create) = create_sql(&role, entry, facts, explicit_id);
        let names: &[&(dyn tokio_postgres::types::ToSql + Sync)] = &[&entry.privilege_roles];
        // One round trip, sent in this order (futures' join polls in order).
        let (opened, found, records, created) = join!(
            conn.batch_execute(&open),
            async {
                if explicit_id {
                    self.ledger_for_grant(&**conn, &entry.grant_id, Seqscan::AlreadyOff)
                        .await
                } else {
                    Ok(Vec::new())
                }
            },
            conn.query(&records_sql, names),
            conn.simple_query(&create),
        );
        opened.map_err(first_trip(lost, "locking the grant"))?;
        let existing = match found {
            Ok(ledger) => {
                find_grant(&ledger, &entry.grant_id).map(|(role, g)| Grant::existing(role, g))
            }
            Err(e) => {
                let _ = conn.batch_execute("ROLLBACK").await;
                return Err(db("reading the ledger")(e));
            }
        };
        if let Some(grant) = existing {
            conn.batch_execute("ROLLBACK")
                .await
                .map_err(db("reading the ledger"))?;
            conn.settle();
            return Ok(grant);
        }
        let key = &self.config.ledger_key;
        let outcome = match (records, created) {
            (Err(e), _) => Err(db("reading privilege roles")(e)),
            (_, Err(e)) => Err(explain_settings_error(
                db("creating the login role")(e),
                &entry.session,
                facts,
            )),
            (Ok(records), Ok(messages)) => {
                let ready = ready_in(&records, key);
                let all_ready = entry.privilege_roles.iter().all(|n| ready.contains(n));
                match returned_oid(&messages) {
                    Some(oid) if all_ready => {
                        if explicit_id {
                            self.step(Step::GrantCommit)?;
                        }
                        // COMMIT goes as a message of its own, in the same round trip:
                        // the server logs a statement's duration when its message ends,
                        // and by then a COMMIT in it would have undone the silence.
                        let comment = role.comment(key, oid);
                        let finish = role.finish(&comment);
                        let (finished, committed) =
                            join!(conn.batch_execute(&finish), conn.batch_execute("COMMIT"));
                        finished
                            .and(committed)
                            .map_err(db("creating the login role"))
                            .map(|()| {
                                let seen =
                                    Seen::new(oid, comment, entry.privilege_roles.iter().cloned());
                                self.hints.remember_seen(
                                    &entry.grant_id,
                                    &role.username,
                                    Some(seen),
                                );
                            })
                    }
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
}

/// The first round trip's two simple-protocol messages, around the id look-up and
/// the privilege roles' records ([`PRIVILEGE_RECORDS_SQL`], prepared): before them,
/// `BEGIN`, the id's `Grant` lock (with `explicit_id`), the shared privileges lock and
/// [`INDEX_SCANS`] for the two reads; after them, [`INDEX_SCANS_END`], the login role
/// created, its oid (the last row), and the statement log silenced (superusers) for
/// the second round trip, which carries the verifier.
fn create_sql(
    role: &NewLoginRole,
    entry: &GrantEntry,
    facts: &ConnectorFacts,
    explicit_id: bool,
) -> (String, String) {
    let mut open = String::from("BEGIN; ");
    if explicit_id {
        open.push_str(
            &Lock::Grant {
                grant_id: &entry.grant_id,
            }
            .acquire_sql(false),
        );
        open.push_str("; ");
    }
    open.push_str(&Lock::Privileges.acquire_shared_sql());
    // For the id look-up and the privilege roles' records, whose plans the server
    // keeps (see INDEX_SCANS); undone before the role is created.
    open.push_str("; ");
    open.push_str(INDEX_SCANS);
    let mut create = format!(
        "{INDEX_SCANS_END}; {}",
        returning_oid_sql(&role.create, &role.username)
    );
    // Last: the server logs a message's text when it arrives, so the role's creation
    // (no secret in it) stays in the statement log; the verifier comes later.
    if facts.superuser {
        create.push_str("; ");
        create.push_str(&silence_log_sql(true));
    }
    (open, create)
}

/// [`db`] for a failure in the first round trip, noting in `lost` whether the
/// connection itself was gone.
fn first_trip<'a>(
    lost: &'a mut bool,
    what: &'static str,
) -> impl FnOnce(tokio_postgres::Error) -> ProvisionError + 'a {
    move |e| {
        *lost = connection_lost(&e);
        db(what)(e)
    }
}

/// A generated grant id: `g_` and 20 random characters (about 103 bits).
fn new_grant_id() -> String {
    format!(
        "g_{}",
        random_string(b"abcdefghijklmnopqrstuvwxyz0123456789", 20)
    )
}

/// An ephemeral login role's name: `<prefix><tag>_<requester>`, where `tag` is its
/// grant id's lookup tag (16 hex digits, keyed with the ledger key, so nobody without
/// it can tell a grant's role name in advance), and the requester is sanitized to
/// what is left of 63 bytes. The names starting `<prefix><tag>_` are one range of the
/// `rolname` index: finding a grant by its id reads that range
/// ([`crate::ledger::LEDGER_ID_SQL`]), never every role.
pub(super) fn ephemeral_name(prefix: &str, tag: &str, requester: &str) -> String {
    let max = 63 - prefix.len() - tag.len() - 1;
    format!("{prefix}{tag}_{}", sanitize_requester(requester, max))
}

/// A requester as a role-name part: lower-case ASCII letters and digits, runs of
/// anything else as one `_`, at most `max` bytes; `user` when nothing is left.
pub(super) fn sanitize_requester(requester: &str, max: usize) -> String {
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

/// [`silence_log_sql`] for the transaction, sent on its own: the server logs a query
/// string when it arrives, so the settings must be in force before the statement that
/// carries a verifier is sent.
pub(super) async fn silence_statement_log<C: tokio_postgres::GenericClient>(
    tx: &C,
    superuser: bool,
) -> Result<(), ProvisionError> {
    if superuser {
        tx.batch_execute(&silence_log_sql(true))
            .await
            .map_err(db("silencing the statement log"))?;
    }
    Ok(())
}

/// Whether creating a role failed because its name is taken (SQLSTATE 42710).
fn name_taken(e: &ProvisionError) -> bool {
    matches!(e, ProvisionError::Database { source, .. }
        if source.as_db_error().is_some_and(|d| d.code().code() == "42710"))
}

/// Whether a statement failed because a role it names does not exist (SQLSTATE 42704).
fn missing_role(e: &ProvisionError) -> bool {
    matches!(e, ProvisionError::Database { source, .. }
        if source.as_db_error().is_some_and(|d| d.code().code() == "42704"))
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
    fn ephemeral_names_start_with_the_prefix_and_tag_and_fit_63_bytes() {
        let tag = "0123456789abcdef";
        assert_eq!(
            ephemeral_name("pgw_", tag, "alice@example.com"),
            "pgw_0123456789abcdef_alice_example_com"
        );
        let long = ephemeral_name(&"p".repeat(20), tag, &"a".repeat(100));
        assert_eq!(long.len(), 63);
        assert!(long.starts_with(&format!("{}{tag}_a", "p".repeat(20))));
    }
}
