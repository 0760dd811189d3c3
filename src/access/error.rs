//! What can go wrong with an access request, and what kind of failure it is.

use pgwarden_core::flows::FlowError;
use pgwarden_core::requests::{RequestState, StoreError};

use crate::error::{ErrorKind, IntegrationError, InvalidReason};

/// An access request could not be submitted, decided or carried out. Messages say
/// what to do and never contain a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessRequestError {
    /// The request is malformed (no requester, no access, a tag selection that selects
    /// nothing); nothing was stored.
    #[error("invalid access request: {message}")]
    Invalid {
        /// Why, and what to fix.
        message: String,
        /// The kind of problem.
        reason: InvalidReason,
    },
    /// No request of this integration has the id.
    #[error("no access request {id} in integration {integration}")]
    NotFound {
        /// The id asked for.
        id: String,
        /// The integration.
        integration: String,
    },
    /// The request's state does not allow the action (approving a rejected request,
    /// cancelling a granted one).
    #[error("access request {id} is {state}: cannot {action} it")]
    WrongState {
        /// The request.
        id: String,
        /// Its state.
        state: RequestState,
        /// What was attempted (`approve`, `reject`, `cancel`, `revoke`, `request again`).
        action: &'static str,
    },
    /// The person may not do this: an approver the flow's policy does not name, a
    /// requester approving their own request, an approval without the reason the flow
    /// requires, a cancellation by someone other than the requester.
    #[error("{who} may not {action} access request {id}: {why}")]
    NotAllowed {
        /// The request.
        id: String,
        /// Who tried.
        who: String,
        /// What they tried.
        action: &'static str,
        /// Why not, and what to do.
        why: String,
    },
    /// The flow the request matched is gone or inactive since: the request cannot be
    /// decided under it; request again.
    #[error("access request {id} was made under flow {flow}, which {why}: request again")]
    FlowGone {
        /// The request.
        id: String,
        /// The flow's name.
        flow: String,
        /// `no longer exists` or `is no longer active`.
        why: &'static str,
    },
    /// The requests' store failed.
    #[error("access requests store: {0}")]
    Store(#[from] StoreError),
    /// Evaluating flows failed (a directory or tag source did not answer).
    #[error("evaluating access flows: {0}")]
    Flow(#[from] FlowError),
    /// The integration failed (granting, revoking, owner resolution, discovery).
    #[error(transparent)]
    Integration(#[from] IntegrationError),
}

impl AccessRequestError {
    /// What kind of failure this is: [`ErrorKind::Denied`] for a person who may not
    /// act, [`ErrorKind::InvalidState`] for an action the request's state forbids.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            AccessRequestError::Invalid { reason, .. } => ErrorKind::InvalidRequest(*reason),
            AccessRequestError::NotFound { .. } => ErrorKind::NotFound,
            AccessRequestError::WrongState { .. } | AccessRequestError::FlowGone { .. } => {
                ErrorKind::InvalidState
            }
            AccessRequestError::NotAllowed { .. } => ErrorKind::Denied,
            AccessRequestError::Store(e) if e.is_retryable() => ErrorKind::Unavailable,
            AccessRequestError::Store(StoreError::Conflict { .. }) => ErrorKind::Conflict,
            AccessRequestError::Store(_) => ErrorKind::Failed,
            AccessRequestError::Flow(_) => ErrorKind::Unavailable,
            AccessRequestError::Integration(e) => e.kind(),
        }
    }

    /// Shorthand for `self.kind().is_retryable()`.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }
}
