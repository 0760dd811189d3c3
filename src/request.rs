//! What a host asks of an [`Integration`](crate::Integration) and what it gets back:
//! [`AccessRequest`] in, [`AccessGrant`] out of `grant`, `extend` and `list` alike.

use std::fmt;

use pgwarden_core::duration::Ttl;
use pgwarden_core::resource::AccessEntry;
use pgwarden_core::session::SessionLimits;
use pgwarden_pg_driver::{ListedGrant, ListedState, RoleMode};
use secrecy::SecretString;
use time::OffsetDateTime;

/// What a person asks for: who, which resources at which levels, for how long.
///
/// ```
/// use pgwarden::{AccessEntry, AccessRequest, PermissionLevel, ResourceId};
///
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let request = AccessRequest::new(
///     "alice@example.com",
///     [AccessEntry::new(ResourceId::schema("app", "public"), PermissionLevel::ReadOnly)?],
///     "2h".parse()?,
/// )
/// .justification("incident 4711")
/// .grant_id("ticket-4711");
/// assert_eq!(request.access[0].to_string(), "postgresql-schema:app/public=read-only");
///
/// // The string form of an entry parses to the same thing.
/// let same: AccessEntry = "postgresql-schema:app/public=read-only".parse()?;
/// assert_eq!(request.access[0], same);
/// # Ok(())
/// # }
/// # demo().unwrap();
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AccessRequest {
    /// Who asks (an identity-provider user id or email).
    pub requester: String,
    /// Resources and levels.
    pub access: Vec<AccessEntry>,
    /// For how long (at most the integration's `max_ttl`).
    pub duration: Ttl,
    /// Why; recorded in the audit trail.
    pub justification: Option<String>,
    /// The grant's id (e.g. the approval ticket); granting it again returns the grant.
    pub grant_id: Option<String>,
    /// Limits for the grant's login role (`statement_timeout`, `CONNECTION LIMIT`,
    /// ...). Each limit set here wins over the integration's `[session]` default.
    pub session: SessionLimits,
    /// The access flow that allowed the request, when it came through one.
    pub(crate) flow: Option<FlowContext>,
}

/// The access flow behind a grant: named in its audit event, which is marked for
/// review when the flow asks for it.
#[derive(Debug, Clone)]
pub(crate) struct FlowContext {
    pub(crate) name: String,
    pub(crate) review_required: bool,
}

impl AccessRequest {
    /// A request by `requester` for `access`, lasting `duration`; no justification,
    /// and an id pgwarden generates.
    #[must_use]
    pub fn new(
        requester: impl Into<String>,
        access: impl IntoIterator<Item = AccessEntry>,
        duration: Ttl,
    ) -> Self {
        AccessRequest {
            requester: requester.into(),
            access: access.into_iter().collect(),
            duration,
            justification: None,
            grant_id: None,
            session: SessionLimits::default(),
            flow: None,
        }
    }

    /// Limits for the grant's login role, over the integration's `[session]` defaults.
    #[must_use]
    pub fn session(mut self, session: SessionLimits) -> Self {
        self.session = session;
        self
    }

    /// Why access is asked for; recorded in the audit trail.
    #[must_use]
    pub fn justification(mut self, justification: impl Into<String>) -> Self {
        self.justification = Some(justification.into());
        self
    }

    /// The grant's id (e.g. the approval ticket's): granting the same id again returns
    /// the existing grant instead of making a second one.
    #[must_use]
    pub fn grant_id(mut self, grant_id: impl Into<String>) -> Self {
        self.grant_id = Some(grant_id.into());
        self
    }
}

/// A grant, as `grant`, `extend` and `list` return it. Serialized without its
/// password, which the host shows once, on purpose.
#[derive(Clone, serde::Serialize)]
#[non_exhaustive]
pub struct AccessGrant {
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
    /// When access ends.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Active, expired (awaiting its revocation) or being revoked.
    pub state: ListedState,
    /// A login role of its own (ephemeral) or a persistent user's.
    pub mode: RoleMode,
    /// The password, given once by the `grant` that made it. `None` everywhere else:
    /// when the grant existed already, when a persistent user keeps theirs, and in
    /// `extend` and `list`.
    #[serde(skip)]
    pub password: Option<SecretString>,
    /// Whether this call made the grant (`false` when its id existed already, and in
    /// `extend` and `list`).
    pub created: bool,
    /// The integration's custom access details, rendered for this grant (`grant` only).
    pub access_details: Option<String>,
}

impl AccessGrant {
    /// A grant as the ledger lists it: no password, no access details.
    pub(crate) fn listed(g: ListedGrant) -> Self {
        AccessGrant {
            grant_id: g.grant_id,
            integration: g.integration,
            username: g.username,
            requester: g.requester,
            access: g.access,
            created_at: g.created_at,
            expires_at: g.expires_at,
            state: g.state,
            mode: g.mode,
            password: None,
            created: false,
            access_details: None,
        }
    }
}

impl fmt::Debug for AccessGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessGrant")
            .field("grant_id", &self.grant_id)
            .field("integration", &self.integration)
            .field("username", &self.username)
            .field("requester", &self.requester)
            .field("access", &self.access)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("state", &self.state)
            .field("mode", &self.mode)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("created", &self.created)
            .field("access_details", &self.access_details)
            .finish()
    }
}
