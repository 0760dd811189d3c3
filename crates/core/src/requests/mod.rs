//! Access requests: their record, their lifecycle, and the stores that keep them.
//!
//! A request asks for access entries on one integration for a while. It starts
//! `pending`, is approved or rejected (or cancelled by its requester), is granted, and
//! ends `expired` or `revoked` once its grant is revoked; granting can also fail
//! ([`RequestState`] has the allowed moves). A closed request is never reopened:
//! [`StoredRequest::again`] makes a new one pointing back at it.
//!
//! Requests live in a [`RequestStore`]: [`InMemoryRequestStore`] here, and a PostgreSQL
//! store in pgwarden's driver crate, so that replicas share pending requests and a
//! restart loses none. Writes are versioned: an update based on a stale read is a
//! [`StoreError::Conflict`], so two approvers acting at the same instant complete a
//! request once.
//!
//! ```
//! use pgwarden_core::requests::{
//!     InMemoryRequestStore, RequestFilter, RequestState, RequestStore, StoreError,
//!     StoredRequest, Vote,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = InMemoryRequestStore::new();
//! let request = StoredRequest::new(
//!     StoredRequest::new_id(),
//!     "app",
//!     "alice@example.com",
//!     vec!["postgresql-schema:app/public=read-only".parse()?],
//!     "1h".parse()?,
//!     Some("incident 42".into()),
//! );
//! let mut stored = store.insert(&request).await?;
//! assert_eq!(stored.version, 1);
//!
//! // Two approvers read version 1; the first write wins.
//! let mut late = stored.clone();
//! stored.approvals.push(Vote::new("bob", None));
//! stored.transition(RequestState::Approved)?;
//! let stored = store.update(&stored).await?;
//! assert_eq!(stored.version, 2);
//! late.transition(RequestState::Rejected)?;
//! assert!(matches!(store.update(&late).await, Err(StoreError::Conflict { .. })));
//!
//! let approved = store
//!     .list(&RequestFilter::default().integration("app").state(RequestState::Approved))
//!     .await?;
//! assert_eq!(approved, [stored]);
//! # Ok(())
//! # }
//! ```

mod memory;
mod record;
mod state;
mod store;

pub use memory::InMemoryRequestStore;
pub use record::{MAX_ID_CHARS, StoredRequest, Vote};
pub use state::{InvalidTransition, RequestState, UnknownState};
pub use store::{RequestFilter, RequestStore, StoreError};
