//! Access requests: who may ask for what, who approves, and the life of each request
//! from submission to the end of its access.
//!
//! [`AccessRequests`] puts an integration's [access flows](pgwarden_core::flows)
//! between people and [`Integration::grant`]: a portal, a chat bot or the command
//! line only collects requests and approvals.
//!
//! - [`submit`](AccessRequests::submit) evaluates a request against every active flow
//!   of the integration and returns a [`Decision`] that explains itself: the flow that
//!   matched, or for each flow why it did not. A matched request is stored as
//!   `pending`; when its flow needs no approval (an `automatic` flow, or an empty
//!   approver policy) it is granted at once.
//! - [`approve`](AccessRequests::approve) and [`reject`](AccessRequests::reject) are
//!   checked against the flow's approver policy (`any_of` / `all_of`, no self-approval,
//!   reason required). The approval that completes the policy grants at once, with
//!   the request's id as the grant id, so the grant is made once however many
//!   replicas try.
//! - [`cancel`](AccessRequests::cancel) by the requester while pending;
//!   [`request_again`](AccessRequests::request_again) from a closed request.
//! - [`sync`](AccessRequests::sync) follows granted requests to the end of their
//!   access (`expired`, `revoked`) and grants approved requests a crash interrupted.
//!
//! States: `pending` → `approved` | `rejected` | `cancelled` → `granted` →
//! `revoking` → `expired` | `revoked`, or `failed` with its reason. Requests are kept
//! in a [`RequestStore`]: [`AccessRequests::open`] uses the PostgreSQL store in the
//! integration's own instance (its own schema, migrated on start-up), so replicas
//! share requests and a restart loses none. Two approvers at the same instant complete
//! a policy once: each write names the version it read, and the loser re-reads.
//!
//! Each decision is re-checked when the request is granted: a requester removed from
//! a group, a resource newly tagged out of a flow, or a flow made inactive since the
//! request stops the grant (`failed`, with the reasons). Only the timeframe is judged
//! at submission. Every transition is an [`AuditEvent`]
//! (`request_*` actions) naming the requester, approver, flow and reason.
//!
//! ```no_run
//! use pgwarden::{AccessEntry, AccessRequests, Integration, NewAccessRequest};
//! use pgwarden::core::flows::FlowSet;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let integration = Integration::from_config("integration.toml", Default::default()).await?;
//! let flows = FlowSet::load("flows/")?;
//! let requests = AccessRequests::open(integration.clone(), flows, None).await?;
//!
//! let entry: AccessEntry = "postgresql-schema:app/public=read-only".parse()?;
//! let submitted = requests
//!     .submit(NewAccessRequest::new("alice@example.com", [entry], "2h".parse()?).justification("INC-4711"))
//!     .await?;
//! println!("{}", submitted.decision); // which flow matched, or why none did
//! if let Some(request) = submitted.request {
//!     let approved = requests.approve(&request.id, "bob@example.com", Some("ok")).await?;
//!     if let Some(grant) = approved.grant {
//!         println!("alice logs in as {}", grant.username);
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod approve;
mod error;
mod lifecycle;
mod store;
mod submit;

use std::sync::Arc;

use pgwarden_core::flows::{AccessFlow, FlowEvaluator, FlowSet};
use pgwarden_core::requests::{
    RequestFilter, RequestState, RequestStore, StoreError, StoredRequest,
};

use crate::audit::{AuditAction, AuditEvent};
use crate::integration::Integration;

pub use approve::Approved;
pub use error::AccessRequestError;
pub use lifecycle::SyncReport;
pub use pgwarden_core::flows::Decision;
pub use store::IntegrationRequestStore;
pub use submit::{NewAccessRequest, RequestedAccess, Submitted};

/// How many times a transition re-reads a request that another writer changed first.
const MAX_ATTEMPTS: usize = 20;

/// `action` is not allowed in `request`'s state.
fn wrong_state(request: &StoredRequest, action: &'static str) -> AccessRequestError {
    AccessRequestError::WrongState {
        id: request.id.clone(),
        state: request.state,
        action,
    }
}

/// Request `id` kept changing under a transition for [`MAX_ATTEMPTS`] reads.
fn conflict(id: &str) -> AccessRequestError {
    StoreError::Conflict {
        id: id.to_owned(),
        expected: 0,
        found: 0,
    }
    .into()
}

/// Access requests of one integration, decided by its access flows. Share it as
/// `Arc<AccessRequests>`. See the [module documentation](self).
pub struct AccessRequests {
    integration: Arc<Integration>,
    flows: FlowSet,
    store: Arc<dyn RequestStore>,
}

impl std::fmt::Debug for AccessRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessRequests")
            .field("integration", &self.integration.config().name)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl AccessRequests {
    /// Requests of `integration`, decided by the `flows` whose targets name it, kept
    /// in `store`. Refuses flows whose session limits (over the integration's
    /// `[session]` defaults) the server's major cannot apply — every grant through
    /// them would fail — naming each setting and the major it needs.
    pub fn new(
        integration: Arc<Integration>,
        flows: FlowSet,
        store: Arc<dyn RequestStore>,
    ) -> Result<Self, AccessRequestError> {
        let config = integration.config();
        let major = u32::try_from(integration.preflight().server_version_num / 10_000).ok();
        let problems: Vec<String> = flows
            .for_integration(&config.name)
            .flat_map(|flow| {
                flow.session
                    .merged_over(&config.session)
                    .problems(&format!("{}: session", flow.name), major)
            })
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect();
        if !problems.is_empty() {
            return Err(crate::IntegrationError::Config(format!(
                "access flows of integration {} ask for session limits the server cannot apply: {}",
                config.name,
                problems.join("; ")
            ))
            .into());
        }
        Ok(AccessRequests {
            integration,
            flows,
            store,
        })
    }

    /// Requests kept in PostgreSQL: in `database` of the integration's instance (by
    /// default the database the connector connects to), in schema `pgwarden_requests`,
    /// created and migrated now if needed. Refuses a schema of that name that another
    /// role owns.
    pub async fn open(
        integration: Arc<Integration>,
        flows: FlowSet,
        database: Option<&str>,
    ) -> Result<Arc<Self>, AccessRequestError> {
        let store = IntegrationRequestStore::open(integration.clone(), database).await?;
        Ok(Arc::new(Self::new(integration, flows, Arc::new(store))?))
    }

    /// Requests as the integration's config sets them up (`[access_requests]`): its
    /// flows loaded from `flows`, its requests kept in PostgreSQL in `database`.
    pub async fn from_integration(
        integration: Arc<Integration>,
    ) -> Result<Arc<Self>, AccessRequestError> {
        let Some(settings) = integration.config().access_requests.clone() else {
            return Err(crate::IntegrationError::Config(format!(
                "integration {} has no [access_requests] table: add one naming its flows (flows = \"flows/\")",
                integration.config().name
            ))
            .into());
        };
        let flows = FlowSet::load(&settings.flows).map_err(|e| {
            crate::IntegrationError::Config(format!("access flows {}: {e}", settings.flows))
        })?;
        Self::open(integration, flows, settings.database.as_deref()).await
    }

    /// The integration.
    #[must_use]
    pub fn integration(&self) -> &Arc<Integration> {
        &self.integration
    }

    /// The flows.
    #[must_use]
    pub fn flows(&self) -> &FlowSet {
        &self.flows
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn RequestStore> {
        &self.store
    }

    /// One request of this integration.
    pub async fn get(&self, id: &str) -> Result<StoredRequest, AccessRequestError> {
        match self.store.get(id).await? {
            Some(r) if r.integration == self.integration.config().name => Ok(r),
            _ => Err(AccessRequestError::NotFound {
                id: id.to_owned(),
                integration: self.integration.config().name.clone(),
            }),
        }
    }

    /// This integration's requests in any of `states` (all when empty), newest first.
    pub async fn list(
        &self,
        states: &[RequestState],
    ) -> Result<Vec<StoredRequest>, AccessRequestError> {
        let filter = states.iter().fold(
            RequestFilter::default().integration(self.integration.config().name.clone()),
            |f, s| f.state(*s),
        );
        Ok(self.store.list(&filter).await?)
    }

    fn evaluator(&self, tags: Arc<dyn pgwarden_core::tags::TagSource>) -> FlowEvaluator {
        FlowEvaluator::new(self.integration.options.directories.clone(), tags)
    }

    /// The flow a stored request was made under, if it still exists and is active.
    fn flow_of(&self, request: &StoredRequest) -> Result<&AccessFlow, AccessRequestError> {
        let name = request.flow.clone().unwrap_or_default();
        let gone = |why| AccessRequestError::FlowGone {
            id: request.id.clone(),
            flow: name.clone(),
            why,
        };
        match self.flows.flows().iter().find(|f| f.name == name) {
            None => Err(gone("no longer exists")),
            Some(f) if !f.active => Err(gone("is no longer active")),
            Some(f) => Ok(f),
        }
    }

    /// Audits a request event.
    fn audit(
        &self,
        action: AuditAction,
        request: &StoredRequest,
        fill: impl FnOnce(&mut AuditEvent),
    ) {
        self.integration.audit(action, |e| {
            e.grant_id = Some(request.id.clone());
            e.requester = Some(request.requester.clone());
            e.access = request.access.iter().map(ToString::to_string).collect();
            e.flow.clone_from(&request.flow);
            e.state = Some(request.state.to_string());
            e.review_required = request.review_required;
            e.username.clone_from(&request.username);
            fill(e);
        });
    }
}
