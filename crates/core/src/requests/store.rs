//! Where access requests are kept: the [`RequestStore`] trait, the filter for
//! listing, and what can go wrong.

use std::fmt::Debug;

use async_trait::async_trait;

use super::record::StoredRequest;
use super::state::{InvalidTransition, RequestState};

/// Keeps access requests, shared by every replica of the host that uses the same store.
///
/// Object safe: held as `Arc<dyn RequestStore>`. Writes use optimistic concurrency:
/// [`update`](RequestStore::update) succeeds only on the version it was read at, so two
/// approvers acting at the same instant cannot both complete a request.
#[async_trait]
pub trait RequestStore: Send + Sync + Debug {
    /// Stores a new request ([`StoredRequest::check`] must pass) and returns it as
    /// stored, with version 1. [`StoreError::DuplicateId`] if the id is taken.
    async fn insert(&self, request: &StoredRequest) -> Result<StoredRequest, StoreError>;

    /// The request with this id, if any.
    async fn get(&self, id: &str) -> Result<Option<StoredRequest>, StoreError>;

    /// Writes `request` over the stored one, if the stored version is still
    /// `request.version`; returns it as stored, with the version one more and
    /// `updated_at` now.
    ///
    /// [`StoreError::NotFound`] if there is none; [`StoreError::Conflict`] if someone
    /// wrote it since it was read (read it again and redo the change);
    /// [`StoreError::InvalidTransition`] if its state moved in a way
    /// [`RequestState::can_move_to`] forbids (staying in the same state is allowed).
    async fn update(&self, request: &StoredRequest) -> Result<StoredRequest, StoreError>;

    /// The requests `filter` selects, newest (`created_at`) first.
    async fn list(&self, filter: &RequestFilter) -> Result<Vec<StoredRequest>, StoreError>;
}

/// Which requests [`RequestStore::list`] returns: all conditions hold at once; the
/// default selects every request.
///
/// ```
/// use pgwarden_core::requests::{RequestFilter, RequestState};
/// let pending_in_app = RequestFilter::default()
///     .integration("app")
///     .state(RequestState::Pending)
///     .limit(50);
/// assert_eq!(pending_in_app.states, [RequestState::Pending]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestFilter {
    /// Only this integration's requests.
    pub integration: Option<String>,
    /// Only requests in one of these states (empty: any state).
    pub states: Vec<RequestState>,
    /// Only this requester's requests.
    pub requester: Option<String>,
    /// At most this many (the newest).
    pub limit: Option<usize>,
}

impl RequestFilter {
    /// Only `integration`'s requests.
    #[must_use]
    pub fn integration(mut self, integration: impl Into<String>) -> Self {
        self.integration = Some(integration.into());
        self
    }

    /// Also requests in `state` (states add up: any of them).
    #[must_use]
    pub fn state(mut self, state: RequestState) -> Self {
        if !self.states.contains(&state) {
            self.states.push(state);
        }
        self
    }

    /// Only `requester`'s requests.
    #[must_use]
    pub fn requester(mut self, requester: impl Into<String>) -> Self {
        self.requester = Some(requester.into());
        self
    }

    /// At most `limit` requests, the newest.
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Whether `request` passes every condition but the limit.
    #[must_use]
    pub fn matches(&self, request: &StoredRequest) -> bool {
        self.integration
            .as_ref()
            .is_none_or(|i| *i == request.integration)
            && (self.states.is_empty() || self.states.contains(&request.state))
            && self
                .requester
                .as_ref()
                .is_none_or(|r| *r == request.requester)
    }
}

/// Why a [`RequestStore`] call failed. Messages say what to do; none carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// [`insert`](RequestStore::insert): the id is taken.
    #[error("access request {id} already exists: make a new id (StoredRequest::new_id)")]
    DuplicateId {
        /// The id.
        id: String,
    },
    /// [`update`](RequestStore::update): no such request.
    #[error("access request {id} not found")]
    NotFound {
        /// The id.
        id: String,
    },
    /// [`update`](RequestStore::update): someone wrote the request since it was read.
    #[error(
        "access request {id} was changed by someone else (version {found}, expected {expected}): read it again and redo the change"
    )]
    Conflict {
        /// The id.
        id: String,
        /// The version the update was based on.
        expected: u64,
        /// The version stored now.
        found: u64,
    },
    /// [`update`](RequestStore::update): the state change is not allowed.
    #[error("access request {id}: {transition}")]
    InvalidTransition {
        /// The id.
        id: String,
        /// The refused move.
        transition: InvalidTransition,
    },
    /// The record fails [`StoredRequest::check`]; the message names the field.
    #[error("invalid access request: {0}")]
    Invalid(String),
    /// The store cannot be reached right now (connection lost, server restarting,
    /// timeout): retrying later may succeed.
    #[error("the request store is unavailable: {0}; retry later")]
    Unavailable(String),
    /// Anything else: the store refused or broke (the message says how).
    #[error("the request store failed: {0}")]
    Failed(String),
}

impl StoreError {
    /// Whether the same call may succeed if retried unchanged (only
    /// [`Unavailable`](StoreError::Unavailable); a [`Conflict`](StoreError::Conflict)
    /// needs a fresh read first).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}
