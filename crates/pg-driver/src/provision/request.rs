//! What a grant asks for, and what comes back: a grant made, or one read back.

use std::fmt;

use pgwarden_core::config::UserMode;
use pgwarden_core::duration::Ttl;
use pgwarden_core::resource::AccessEntry;
use pgwarden_core::session::SessionLimits;
use secrecy::SecretString;
use time::OffsetDateTime;

use crate::ledger::{GrantEntry, GrantState, LedgerRole, RoleMode, RoleRecord};

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
    /// Limits applied to the grant's login role (`SessionLimits::default()`: none).
    /// The facade passes the integration's `[session]` limits, with an access flow's
    /// own laid over them. A limit the server's major lacks, or `pgaudit_log` without
    /// pgaudit loaded, refuses the grant before anything is made.
    pub session: SessionLimits,
}

/// A grant that was made (or found, for a repeated id).
#[derive(Clone)]
pub struct Grant {
    /// The grant's id.
    pub grant_id: String,
    /// The login role.
    pub username: String,
    /// Who asked.
    pub requester: String,
    /// The password, given once: `None` when the grant already existed or a
    /// persistent user keeps the password it has.
    pub password: Option<SecretString>,
    /// When it was made.
    pub created_at: OffsetDateTime,
    /// When access ends.
    pub expires_at: OffsetDateTime,
    /// What was granted.
    pub access: Vec<AccessEntry>,
    /// Ephemeral or persistent.
    pub mode: RoleMode,
    /// Whether this call made the grant (false when the id already existed).
    pub created: bool,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("grant_id", &self.grant_id)
            .field("username", &self.username)
            .field("requester", &self.requester)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("access", &self.access)
            .field("mode", &self.mode)
            .field("created", &self.created)
            .finish()
    }
}

impl Grant {
    /// A grant found in the ledger, returned again (without a password).
    pub(super) fn existing(role: &LedgerRole, g: &GrantEntry) -> Self {
        Grant {
            grant_id: g.grant_id.clone(),
            username: role.username.clone(),
            requester: g.requester.clone(),
            password: None,
            created_at: g.created_at,
            expires_at: g.expires_at,
            access: g.access.clone(),
            mode: role.record.as_ref().map_or(RoleMode::Ephemeral, |r| r.mode),
            created: false,
        }
    }

    /// Grant `entry`, just made on login role `username` (`mode`), with its password.
    pub(super) fn made(
        entry: &GrantEntry,
        username: String,
        mode: RoleMode,
        password: Option<SecretString>,
    ) -> Self {
        Grant {
            grant_id: entry.grant_id.clone(),
            username,
            requester: entry.requester.clone(),
            password,
            created_at: entry.created_at,
            expires_at: entry.expires_at,
            access: entry.access.clone(),
            mode,
            created: true,
        }
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

impl ListedGrant {
    /// Grant `g` of login role `username`, whose record is `record`, as of `now`.
    pub(super) fn new(
        username: &str,
        record: &RoleRecord,
        g: &GrantEntry,
        now: OffsetDateTime,
    ) -> Self {
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
}
