//! The states an access request goes through, and which moves between them are allowed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where an access request stands.
///
/// ```text
/// pending ──► approved ──► granted ──► revoking ──► expired | revoked
///    │            │           │
///    │            └─► failed  └─► expired | revoked
///    ├─► granted (automatic flow, or the approval that completes the policy)
///    └─► rejected | cancelled | failed
/// ```
///
/// Closed states ([`is_closed`](RequestState::is_closed)) are `rejected`, `expired`,
/// `revoked`, `failed` and `cancelled`: nothing moves out of them. Asking again makes a
/// new request that points at the closed one.
///
/// A revocation that fails does not close the request: it stays `revoking` (its
/// `failure` says why) until the revocation is retried and ends in `expired` or
/// `revoked`, because access may still exist and must not be forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for approvals.
    Pending,
    /// The approver policy is complete; the grant is being made.
    Approved,
    /// An approver refused it.
    Rejected,
    /// Access is granted and not over yet.
    Granted,
    /// The grant is being revoked (it expired or was revoked, and is being removed).
    Revoking,
    /// The grant ran out and was removed.
    Expired,
    /// The grant was revoked before it ran out.
    Revoked,
    /// Granting failed (the request's `failure` says why).
    Failed,
    /// The requester withdrew it while it was pending.
    Cancelled,
}

/// A move between two states that the lifecycle does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an access request cannot move from {from} to {to}{}", hint(*from))]
pub struct InvalidTransition {
    /// The state it is in.
    pub from: RequestState,
    /// The state asked for.
    pub to: RequestState,
}

fn hint(from: RequestState) -> &'static str {
    if from.is_closed() {
        ": it is closed; make a new request that repeats it instead"
    } else {
        ""
    }
}

impl RequestState {
    /// Every state, in lifecycle order.
    pub const ALL: [RequestState; 9] = [
        RequestState::Pending,
        RequestState::Approved,
        RequestState::Rejected,
        RequestState::Granted,
        RequestState::Revoking,
        RequestState::Expired,
        RequestState::Revoked,
        RequestState::Failed,
        RequestState::Cancelled,
    ];

    /// The `snake_case` name, as serialized and stored.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Rejected => "rejected",
            RequestState::Granted => "granted",
            RequestState::Revoking => "revoking",
            RequestState::Expired => "expired",
            RequestState::Revoked => "revoked",
            RequestState::Failed => "failed",
            RequestState::Cancelled => "cancelled",
        }
    }

    /// Whether the request is over: nothing moves out of a closed state.
    #[must_use]
    pub const fn is_closed(self) -> bool {
        matches!(
            self,
            RequestState::Rejected
                | RequestState::Expired
                | RequestState::Revoked
                | RequestState::Failed
                | RequestState::Cancelled
        )
    }

    /// Whether the lifecycle allows moving from `self` to `next` (staying in the same
    /// state is not a move: `false`).
    #[must_use]
    pub const fn can_move_to(self, next: RequestState) -> bool {
        use RequestState::{
            Approved, Cancelled, Expired, Failed, Granted, Pending, Rejected, Revoked, Revoking,
        };
        matches!(
            (self, next),
            (Pending, Approved | Rejected | Cancelled | Granted | Failed)
                | (Approved, Granted | Failed)
                | (Granted | Revoking, Expired | Revoked)
                | (Granted, Revoking)
        )
    }

    /// `Ok` if the move from `self` to `next` is allowed.
    pub const fn check_move(self, next: RequestState) -> Result<(), InvalidTransition> {
        if self.can_move_to(next) {
            Ok(())
        } else {
            Err(InvalidTransition {
                from: self,
                to: next,
            })
        }
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of [`RequestState::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown request state \"{value}\": use one of {}", valid_states())]
pub struct UnknownState {
    /// The text given.
    pub value: String,
}

fn valid_states() -> String {
    RequestState::ALL
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for RequestState {
    type Err = UnknownState;

    /// Parses a `snake_case` name, ignoring case and surrounding spaces.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase();
        RequestState::ALL
            .into_iter()
            .find(|state| state.as_str() == norm)
            .ok_or_else(|| UnknownState {
                value: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::RequestState::{
        self, Approved, Cancelled, Expired, Failed, Granted, Pending, Rejected, Revoked, Revoking,
    };

    #[test]
    fn allowed_moves_are_exactly_the_lifecycle() {
        let allowed: &[(RequestState, &[RequestState])] = &[
            (Pending, &[Approved, Rejected, Cancelled, Granted, Failed]),
            (Approved, &[Granted, Failed]),
            (Granted, &[Revoking, Expired, Revoked]),
            (Revoking, &[Expired, Revoked]),
            (Rejected, &[]),
            (Expired, &[]),
            (Revoked, &[]),
            (Failed, &[]),
            (Cancelled, &[]),
        ];
        for (from, to) in allowed {
            for next in RequestState::ALL {
                assert_eq!(
                    from.can_move_to(next),
                    to.contains(&next),
                    "{from} -> {next}"
                );
            }
        }
    }

    #[test]
    fn closed_states_have_no_way_out() {
        for s in RequestState::ALL {
            let has_way_out = RequestState::ALL.iter().any(|n| s.can_move_to(*n));
            assert_eq!(s.is_closed(), !has_way_out, "{s}");
        }
        let e = Revoked.check_move(Pending).unwrap_err();
        assert_eq!(
            e.to_string(),
            "an access request cannot move from revoked to pending: it is closed; make a new request that repeats it instead"
        );
    }

    #[test]
    fn names_round_trip() {
        for s in RequestState::ALL {
            assert_eq!(s.to_string().parse::<RequestState>().unwrap(), s);
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(" Pending ".parse::<RequestState>().unwrap(), Pending);
        let e = "done".parse::<RequestState>().unwrap_err().to_string();
        assert!(
            e.contains("\"done\"") && e.contains("pending, approved"),
            "{e}"
        );
    }
}
