//! The stored record of one access request: what was asked, who decided, what was
//! granted.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::state::{InvalidTransition, RequestState};
use crate::duration::Ttl;
use crate::resource::AccessEntry;

/// The longest request id accepted, in characters (the grant id rule).
pub const MAX_ID_CHARS: usize = 200;

/// One approver's decision: an approval, or the rejection (or cancellation) that
/// closed the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// Who decided (an approver's identity, or the requester for a cancellation).
    pub by: String,
    /// Why, if they said.
    #[serde(default)]
    pub reason: Option<String>,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl Vote {
    /// A decision by `by`, now.
    #[must_use]
    pub fn new(by: impl Into<String>, reason: Option<String>) -> Self {
        Vote {
            by: by.into(),
            reason,
            at: OffsetDateTime::now_utc(),
        }
    }
}

/// An access request as a [`RequestStore`](super::RequestStore) keeps it.
///
/// Built with [`StoredRequest::new`] (state `pending`, version 0 until inserted); every
/// field is public so the caller can fill in the rest. Serialized in `snake_case`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoredRequest {
    /// The request's id ([`StoredRequest::new_id`]), also the id of the grant it leads to.
    pub id: String,
    /// The integration asked for.
    pub integration: String,
    /// Who asked.
    pub requester: String,
    /// What was asked for.
    pub access: Vec<AccessEntry>,
    /// For how long.
    pub duration: Ttl,
    /// Why, in the requester's words.
    #[serde(default)]
    pub justification: Option<String>,
    /// The access flow that matched.
    #[serde(default)]
    pub flow: Option<String>,
    /// Where it stands.
    pub state: RequestState,
    /// The approvals given so far.
    #[serde(default)]
    pub approvals: Vec<Vote>,
    /// Who rejected or cancelled it, and why.
    #[serde(default)]
    pub rejection: Option<Vote>,
    /// Why it failed (never a secret).
    #[serde(default)]
    pub failure: Option<String>,
    /// The grant's login role, once granted.
    #[serde(default)]
    pub username: Option<String>,
    /// When the grant ends, once granted.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Whether the grant's audit event is to be reviewed after the fact (break-glass).
    #[serde(default)]
    pub review_required: bool,
    /// The flow's labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// The closed request this one repeats.
    #[serde(default)]
    pub again_of: Option<String>,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was last written.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// The stored version, for optimistic concurrency: 0 before insertion, 1 after,
    /// one more at each update.
    #[serde(default)]
    pub version: u64,
}

impl StoredRequest {
    /// A new `pending` request, created now, not yet stored (version 0).
    #[must_use]
    pub fn new(
        id: impl Into<String>,
        integration: impl Into<String>,
        requester: impl Into<String>,
        access: Vec<AccessEntry>,
        duration: Ttl,
        justification: Option<String>,
    ) -> Self {
        let now = OffsetDateTime::now_utc();
        StoredRequest {
            id: id.into(),
            integration: integration.into(),
            requester: requester.into(),
            access,
            duration,
            justification,
            flow: None,
            state: RequestState::Pending,
            approvals: Vec::new(),
            rejection: None,
            failure: None,
            username: None,
            expires_at: None,
            review_required: false,
            labels: Vec::new(),
            again_of: None,
            created_at: now,
            updated_at: now,
            version: 0,
        }
    }

    /// A fresh id: `req_` and 20 random characters from `[a-z0-9]` (about 103 bits).
    ///
    /// # Panics
    ///
    /// If the operating system's random source fails.
    #[must_use]
    pub fn new_id() -> String {
        const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut id = String::with_capacity(24);
        id.push_str("req_");
        let mut buf = [0u8; 64];
        while id.len() < 24 {
            getrandom::fill(&mut buf).expect("the operating system's random source failed");
            // Rejection sampling: 252 = 7 × 36, so every character is equally likely.
            for b in buf.iter().filter(|b| **b < 252) {
                if id.len() == 24 {
                    break;
                }
                id.push(char::from(ALPHABET[usize::from(*b % 36)]));
            }
        }
        id
    }

    /// Moves to `next` if the lifecycle allows it ([`RequestState::can_move_to`]);
    /// otherwise changes nothing. The store sets `updated_at` when the change is written.
    pub fn transition(&mut self, next: RequestState) -> Result<(), InvalidTransition> {
        self.state.check_move(next)?;
        self.state = next;
        Ok(())
    }

    /// A new `pending` request repeating this closed one ("request again"): same
    /// integration, requester, access, duration and justification, a new id, pointing
    /// back at this one. `None` while this one is not closed.
    #[must_use]
    pub fn again(&self) -> Option<StoredRequest> {
        if !self.state.is_closed() {
            return None;
        }
        let mut next = StoredRequest::new(
            StoredRequest::new_id(),
            self.integration.clone(),
            self.requester.clone(),
            self.access.clone(),
            self.duration,
            self.justification.clone(),
        );
        next.again_of = Some(self.id.clone());
        Some(next)
    }

    /// Checks what every store requires of a record: an id of 1 to
    /// [`MAX_ID_CHARS`] printable characters, an integration, a requester and at least
    /// one access entry. The message names the field and what to fix.
    pub fn check(&self) -> Result<(), String> {
        let chars = self.id.chars().count();
        if chars == 0 || chars > MAX_ID_CHARS {
            return Err(format!(
                "request id must be 1 to {MAX_ID_CHARS} characters long, not {chars}"
            ));
        }
        if self.id.chars().any(char::is_control) {
            return Err(
                "request id must not contain control characters: use StoredRequest::new_id()"
                    .to_owned(),
            );
        }
        if self.integration.trim().is_empty() {
            return Err(format!("request {}: integration is empty", self.id));
        }
        if self.requester.trim().is_empty() {
            return Err(format!("request {}: requester is empty", self.id));
        }
        if self.access.is_empty() {
            return Err(format!(
                "request {}: access is empty; ask for at least one resource",
                self.id
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredRequest {
        StoredRequest::new(
            StoredRequest::new_id(),
            "app",
            "alice@example.com",
            vec!["postgresql-schema:app/public=read-only".parse().unwrap()],
            Ttl::from_secs(3600).unwrap(),
            Some("incident 42".into()),
        )
    }

    #[test]
    fn ids_have_the_documented_shape_and_differ() {
        let a = StoredRequest::new_id();
        assert_eq!(a.len(), 24);
        assert!(a.starts_with("req_"));
        assert!(
            a[4..]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_ne!(a, StoredRequest::new_id());
    }

    #[test]
    fn transitions_follow_the_lifecycle() {
        let mut r = sample();
        r.transition(RequestState::Approved).unwrap();
        let e = r.transition(RequestState::Pending).unwrap_err();
        assert_eq!(
            (e.from, e.to),
            (RequestState::Approved, RequestState::Pending)
        );
        assert_eq!(r.state, RequestState::Approved);
        assert!(r.again().is_none());
        r.transition(RequestState::Failed).unwrap();
        let again = r.again().unwrap();
        assert_eq!(again.again_of.as_deref(), Some(r.id.as_str()));
        assert_eq!(again.state, RequestState::Pending);
        assert_ne!(again.id, r.id);
    }

    #[test]
    fn serialization_is_snake_case_and_round_trips() {
        let mut r = sample();
        r.approvals.push(Vote::new("bob", Some("ok".into())));
        r.expires_at = Some(r.created_at + time::Duration::hours(1));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["state"], "pending");
        assert_eq!(json["duration"], "1h");
        assert_eq!(json["review_required"], false);
        let back: StoredRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn check_names_the_field() {
        let mut r = sample();
        r.check().unwrap();
        r.requester = " ".into();
        assert!(r.check().unwrap_err().contains("requester"));
        r.id = String::new();
        assert!(r.check().unwrap_err().contains("1 to 200"));
    }
}
