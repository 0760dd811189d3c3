//! Access flows: who may request what, who approves, for how long.
//!
//! An [`AccessFlow`] says which requesters (users or groups of an identity provider)
//! may ask for which access (resources of an integration at some permission levels),
//! for how long, when, and who must approve. Flows are written in TOML, YAML or JSON
//! and loaded into a [`FlowSet`] ([`FlowSet::parse`], [`FlowSet::load`] for a file or a
//! directory), which validates them all at once: every problem is reported with its
//! field path (`access_targets[0].permissions[1]`) and what to fix, and unknown fields
//! are rejected by name.
//!
//! # Documents
//! A document holds one flow (its fields at the top level) or several, as a
//! `flows` list (`[[flows]]` in TOML, `flows:` in YAML, `{"flows": [...]}` in JSON; a
//! top-level JSON or YAML list works too). Paths of problems start at the flow
//! (`name`) for a one-flow document and at the list otherwise (`flows[1].name`, or
//! `[1].name` for a top-level list). A
//! directory is every `.toml`, `.yaml`, `.yml` and `.json` file in it (not in its
//! sub-directories), read in file-name order; each problem is prefixed with its file
//! (`ro.toml: access_targets[0].permissions[0]`). Names are unique across a set.
//!
//! # Fields
//! - `name` (required), `active` (default `true`), `trigger`: `self_serve` or
//!   `automatic` (granted on request: on call, break glass).
//! - `requestors`: `conditions`, each `{ type = "user" | "group", source, match_operator,
//!   values }`, combined by `logical_operator` (`and` | `or`, required with more than
//!   one condition). See [`MatchOperator`] for the operators.
//! - `access_targets`: `{ integration, resource_type, permissions, resources }`; see
//!   [`AccessTarget`] and [`ResourceScope`] for how resources are selected.
//! - `grant_duration` (required): the longest grant a request may ask for.
//! - `timeframe` (optional): see [`Timeframe`].
//! - `approver_policy` (optional): see [`ApproverPolicy`]; empty means no approval.
//! - `settings`: see [`FlowSettings`]; `session`: [`SessionLimits`] for the grant's role.
//!
//! A `self_serve` flow with an empty approver policy grants on request, like an
//! automatic one, but keeps its justification rule. An `automatic` flow may not have
//! an approver policy. Whether `grant_duration` fits the integration's `max_ttl` is
//! the caller's check.
//!
//! # Evaluation
//! A [`FlowEvaluator`] decides a [`FlowRequest`] against a set: the request matches a
//! flow when the flow is active, the requester meets its requestor conditions, every
//! access entry is covered by one of its targets, the duration is within
//! `grant_duration`, the time is within its timeframe and a justification is given
//! when one is required. The first matching flow in load order wins. Otherwise the
//! [`Decision`] lists, for each flow of the integration, every reason it did not match.
//! Groups and tags are looked up at each evaluation, so a change in the identity
//! provider or on a tag takes effect at once.
//!
//! ```
//! use std::sync::Arc;
//! use pgwarden_core::config::ConfigFormat;
//! use pgwarden_core::flows::{Decision, FlowEvaluator, FlowRequest, FlowSet, Mismatch};
//! use pgwarden_core::owners::{Directory, InMemoryDirectory};
//! use pgwarden_core::tags::InMemoryTagSource;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let flows = FlowSet::parse(r#"
//!     name = "billing-read-only"
//!     trigger = "self_serve"
//!     grant_duration = "4h"
//!     [requestors]
//!     conditions = [{ type = "group", source = "okta", match_operator = "is", values = ["analysts"] }]
//!     [[access_targets]]
//!     integration = "orders"
//!     resource_type = "postgresql-table"
//!     permissions = ["read-only"]
//!     resources = [
//!         { scope_mode = "include", by = "name", values = ["app/billing/*"] },
//!         { scope_mode = "exclude", by = "tag", key = "pii", values = ["true"] },
//!     ]
//!     [approver_policy]
//!     approver_groups = [{ approvers = [{ type = "owner" }] }]
//! "#, ConfigFormat::Toml)?;
//!
//! let okta = InMemoryDirectory::new("okta").with_group("analysts", &["alice"]);
//! let tags = Arc::new(InMemoryTagSource::new());
//! let evaluator = FlowEvaluator::new(vec![Arc::new(okta) as Arc<dyn Directory>], tags);
//! let access = ["postgresql-table:app/billing/invoices=read-only".parse()?];
//! let mut request = FlowRequest {
//!     integration: "orders",
//!     requester: "alice",
//!     access: &access,
//!     duration: "8h".parse()?,
//!     justification: Some("month-end report"),
//!     at: time::OffsetDateTime::now_utc(),
//! };
//! let Decision::Refused { flows: refused, .. } = evaluator.evaluate(&flows, &request).await? else {
//!     panic!("8h is over the flow's 4h");
//! };
//! assert!(matches!(refused[0].reasons[..], [Mismatch::DurationOverLimit { .. }]));
//!
//! request.duration = "2h".parse()?;
//! let decision = evaluator.evaluate(&flows, &request).await?;
//! assert!(matches!(decision, Decision::Matched { approval_required: true, .. }));
//! # Ok(())
//! # }
//! ```

use std::fmt;

use serde::{Serialize, Serializer};

use crate::duration::Ttl;
use crate::resource::{PermissionLevel, ResourceType};
use crate::session::SessionLimits;

pub use evaluate::{Decision, FlowError, FlowEvaluator, FlowMismatch, FlowRequest, Mismatch};
pub use load::FlowSet;
pub use policy::{ApprovalRefused, ApprovalStatus, ApprovalVote, IgnoredVote};
pub use timeframe::{TimeOfDay, Weekday};

/// Declares a closed set of `snake_case` words: the enum, its `ALL` list, `as_str`,
/// `Display` and `Serialize`.
macro_rules! words {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in the order the docs list them.
            pub const ALL: &[$name] = &[$($name::$variant,)+];

            /// The word as written in a flow.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

mod evaluate;
mod load;
mod lookup;
mod matching;
mod policy;
mod requestors;
mod targets;
mod timeframe;
mod validate;

words! {
    /// How a flow is used.
    Trigger {
        /// A requester asks; approvers approve unless the approver policy is empty.
        SelfServe = "self_serve",
        /// Granted on request, without approval (on call, break glass).
        Automatic = "automatic",
    }
}

words! {
    /// How conditions (or approvers) of a list combine.
    LogicalOperator {
        /// All of them.
        And = "and",
        /// At least one of them.
        Or = "or",
    }
}

words! {
    /// How a condition compares a subject (a user id, or each of the requester's group
    /// names) with its `values`. Comparisons are exact and case-sensitive.
    ///
    /// The positive operators hold when **some** subject matches **some** value; the
    /// negative ones when **no** subject matches **any** value. For a group
    /// condition, `is_not = ["contractors"]` thus means "in none of these groups".
    MatchOperator {
        /// Equal to one of the values.
        Is = "is",
        /// Equal to none of the values.
        IsNot = "is_not",
        /// Contains one of the values.
        Contains = "contains",
        /// Contains none of the values.
        DoesNotContain = "does_not_contain",
        /// Starts with one of the values.
        StartsWith = "starts_with",
    }
}

words! {
    /// What a requestor condition looks at.
    SubjectType {
        /// The requester's id.
        User = "user",
        /// The requester's groups in the condition's identity provider.
        Group = "group",
    }
}

words! {
    /// What an approver entry names.
    ApproverType {
        /// Users, by id.
        User = "user",
        /// Members of groups.
        Group = "group",
        /// The owners of the requested resources, as owner resolution finds them.
        Owner = "owner",
    }
}

words! {
    /// Whether a resource scope adds or removes resources.
    ScopeMode {
        /// The resources it matches are offered.
        Include = "include",
        /// The resources it matches are not offered, whatever the includes say.
        Exclude = "exclude",
    }
}

words! {
    /// What a resource scope matches on.
    ScopeBy {
        /// The resource's name or path (see [`ResourceScope`]).
        Name = "name",
        /// The resource's full id (`postgresql-table:app/billing/invoices`).
        Id = "id",
        /// A tag of the resource or of a parent it inherits from.
        Tag = "tag",
    }
}

words! {
    /// How approver groups combine (default `any_of`).
    #[derive(Default)]
    ApprovalMode {
        /// One group's approval suffices.
        #[default]
        AnyOf = "any_of",
        /// Every group must approve, each through different people.
        AllOf = "all_of",
    }
}

/// One access flow, validated. Built by [`FlowSet`]'s loaders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessFlow {
    /// The flow's name, unique in its set.
    pub name: String,
    /// Whether requests may match it.
    pub active: bool,
    /// Self-serve or automatic.
    pub trigger: Trigger,
    /// Who may request.
    pub requestors: Requestors,
    /// What may be requested.
    pub access_targets: Vec<AccessTarget>,
    /// The longest grant a request may ask for.
    pub grant_duration: Ttl,
    /// When requests are accepted (always when `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeframe: Option<Timeframe>,
    /// Who approves (nobody when empty).
    pub approver_policy: ApproverPolicy,
    /// Justification, self-approval, labels, review.
    pub settings: FlowSettings,
    /// Limits applied to the grant's login role.
    #[serde(skip_serializing_if = "SessionLimits::is_empty")]
    pub session: SessionLimits,
}

impl AccessFlow {
    /// Whether a request matching this flow waits for approvals: a self-serve flow with
    /// a non-empty approver policy.
    #[must_use]
    pub fn approval_required(&self) -> bool {
        self.trigger == Trigger::SelfServe && !self.approver_policy.is_empty()
    }

    /// Whether one of its targets is on `integration`.
    #[must_use]
    pub fn covers_integration(&self, integration: &str) -> bool {
        self.access_targets
            .iter()
            .any(|t| t.integration == integration)
    }
}

/// Who may request: conditions on the requester.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requestors {
    /// How the conditions combine (`and` when there is a single condition).
    pub logical_operator: LogicalOperator,
    /// At least one condition.
    pub conditions: Vec<Condition>,
}

/// A condition on a user: its id, or its groups in an identity provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    /// User or group.
    #[serde(rename = "type")]
    pub subject: SubjectType,
    /// The identity provider (a registered directory's name for group conditions).
    pub source: String,
    /// How the subject is compared with `values`.
    pub match_operator: MatchOperator,
    /// At least one value.
    pub values: Vec<String>,
}

/// Resources of one integration and type, and the levels offered on them.
///
/// A resource is covered when its type is `resource_type`, some include scope matches
/// it (or there is no include scope), and no exclude scope matches it: exclude wins.
/// Scopes apply within their target: another target of the flow may still cover a
/// resource this one excludes. No `resources` at all means every resource of the type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessTarget {
    /// The integration's name.
    pub integration: String,
    /// The type of the resources.
    #[serde(serialize_with = "resource_type_id")]
    pub resource_type: ResourceType,
    /// The levels offered, each valid for the type.
    pub permissions: Vec<PermissionLevel>,
    /// Include and exclude scopes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceScope>,
}

/// `resource_type` as written in flows: `postgresql-table`.
#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's serialize_with passes a reference"
)]
fn resource_type_id<S: Serializer>(t: &ResourceType, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("postgresql-{t}"))
}

/// A set of resources, by name, id or tag.
///
/// In `values`, `*` matches any run of characters except `/`; everything else is
/// literal.
/// - `by = "name"`: a value without `/` is matched against the resource's own name
///   (`invoices`, `inv*`); a value with `/` against its whole path, one pattern per
///   part (`app/billing/*` for the tables of schema `billing` of database `app`).
/// - `by = "id"`: against the full id, `postgresql-table:app/billing/*`.
/// - `by = "tag"`: the tag `key` of the resource, or, when it has none, of its schema,
///   then its database (the nearest wins); a value matches the tag's whole value or
///   one of its comma-separated parts (`*` here also matches `/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceScope {
    /// Include or exclude.
    pub scope_mode: ScopeMode,
    /// Name, id or tag.
    pub by: ScopeBy,
    /// The tag key (`by = "tag"` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Patterns, at least one.
    pub values: Vec<String>,
}

impl fmt::Display for ResourceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} by {}", self.scope_mode, self.by)?;
        if let Some(key) = &self.key {
            write!(f, " {key}")?;
        }
        write!(f, " = {}", self.values.join(", "))
    }
}

/// When requests are accepted: on some days, between two times, in a time zone.
///
/// The window opens at `start_time` and closes at `end_time` (excluded). An
/// `end_time` before `start_time` is an overnight window (`22:00`–`06:00`) which
/// belongs to the day it opens on: a Friday 22:00–06:00 window covers Saturday
/// 02:00. `end_time = "24:00"` closes at midnight. Days default to every day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timeframe {
    /// The days the window opens on.
    pub days_of_week: Vec<Weekday>,
    /// When the window opens.
    pub start_time: TimeOfDay,
    /// When it closes.
    pub end_time: TimeOfDay,
    /// An IANA time zone name (`Europe/Paris`), as the bundled database spells it.
    pub time_zone: String,
}

/// Who approves.
///
/// Each group lists approvers; an approver entry is one *requirement*, except
/// `type = "owner"`, which is one requirement per distinct owner set among the
/// request's resources (the owners of each resource, as owner resolution finds them:
/// its resource-owner tag, else the integration owners). A requirement is met by a
/// counted approval from a person it names. A group with `logical_operator = "and"`
/// needs all its requirements met (one person may meet several); with `or`, one entry
/// fully met. `any_of`: one group suffices; `all_of`: every group, each through
/// different people — one person's approval never counts for two groups.
///
/// An approval counts when it is not the requester's own (with
/// `requester_cannot_approve_self`) and carries a reason when
/// `approver_reason_required`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApproverPolicy {
    /// How groups combine (`any_of` when there is at most one group).
    pub approval_mode: ApprovalMode,
    /// The groups; none means no approval is needed.
    pub approver_groups: Vec<ApproverGroup>,
}

impl ApproverPolicy {
    /// Whether no approval is needed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.approver_groups.is_empty()
    }
}

/// A group of approvers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApproverGroup {
    /// How its approvers combine (`and` when there is a single one).
    pub logical_operator: LogicalOperator,
    /// At least one approver entry.
    pub approvers: Vec<ApproverRule>,
}

/// Who may approve: users, members of groups, or the resources' owners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproverRule {
    /// User, group or owner.
    pub approver: ApproverType,
    /// The identity provider (none for owners).
    pub source: Option<String>,
    /// How the approver's id (or groups) is compared with `values` (default `is`;
    /// unused for owners).
    pub match_operator: MatchOperator,
    /// At least one value (none for owners).
    pub values: Vec<String>,
}

/// Serialized as written in a flow: an owner entry is only `type = "owner"`.
impl Serialize for ApproverRule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let owner = self.approver == ApproverType::Owner;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("type", &self.approver)?;
        if !owner {
            if let Some(source) = &self.source {
                map.serialize_entry("source", source)?;
            }
            map.serialize_entry("match_operator", &self.match_operator)?;
            map.serialize_entry("values", &self.values)?;
        }
        map.end()
    }
}

/// A flow's settings.
#[allow(
    clippy::struct_excessive_bools,
    reason = "each is a yes/no setting of the flow file"
)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowSettings {
    /// A request must say why (default `true` for self-serve flows, `false` for
    /// automatic ones).
    pub justification_required: bool,
    /// The requester's own approval does not count (default `true`).
    pub requester_cannot_approve_self: bool,
    /// An approval must carry a reason (default `false`).
    pub approver_reason_required: bool,
    /// Free labels, copied to the decision.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Automatic flows only: the grant is marked for review after the fact (default
    /// `false`).
    pub review_required: bool,
}
