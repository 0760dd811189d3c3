//! Owner resolution: who must approve access to a resource, and why.
//!
//! Two settings of an integration decide it:
//! - **integration owners** (`[[integration_owners]]`): identity-provider users or
//!   groups that approve anything, the fallback;
//! - the **resource owner** setting (`[resource_owner]`): a tag key whose value, on a
//!   resource, names users or groups of an identity provider. Tables inherit their
//!   schema's tag and schemas their database's.
//!
//! [`OwnerResolver::resolve`] returns the approvers and a [`ResolutionReason`] saying
//! which tag (on which resource) or which fallback decided. Names are checked against
//! a [`Directory`] for the identity provider when one is registered; a tag that names
//! nobody known falls back to the integration owners instead of leaving a request
//! without approvers.
//!
//! ```
//! # tokio_test_block_on(async {
//! use std::sync::Arc;
//! use pgwarden_core::owners::*;
//! use pgwarden_core::resource::ResourceId;
//! use pgwarden_core::tags::InMemoryTagSource;
//!
//! let tags = Arc::new(InMemoryTagSource::new());
//! tags.set_comment(ResourceId::schema("app", "billing"), "owner=payments");
//! let dir = InMemoryDirectory::new("okta").with_group("payments", &["bob"]).with_group("dba", &["carol"]);
//! let resolver = OwnerResolver::new(
//!     vec![IntegrationOwner { source: "okta".into(), attribute: OwnerAttribute::Group, values: vec!["dba".into()] }],
//!     Some(ResourceOwnerSetting { key: "owner".into(), source: "okta".into(), attribute: OwnerAttribute::Group }),
//!     tags,
//!     vec![Arc::new(dir)],
//! ).unwrap();
//! let r = resolver.resolve(&ResourceId::table("app", "billing", "invoices")).await.unwrap();
//! assert_eq!(r.approvers[0].value, "payments");
//! assert!(matches!(r.reason, ResolutionReason::ResourceOwnerTag { .. }));
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::resource::ResourceId;
use crate::tags::{TagSource, TagSourceError};

/// Whether an owner value names a user or a group of the identity provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerAttribute {
    /// A user id (login or email, as the provider knows it).
    User,
    /// A group name.
    Group,
}

impl fmt::Display for OwnerAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OwnerAttribute::User => "user",
            OwnerAttribute::Group => "group",
        })
    }
}

/// A fallback approver entry: `[[integration_owners]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationOwner {
    /// The identity provider's name (e.g. `okta`).
    pub source: String,
    /// What the values name.
    pub attribute: OwnerAttribute,
    /// User ids or group names.
    pub values: Vec<String>,
}

/// The `[resource_owner]` setting: which tag names a resource's owners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceOwnerSetting {
    /// The tag key (e.g. `owner`). Its value lists names separated by commas.
    pub key: String,
    /// The identity provider the names belong to.
    pub source: String,
    /// What the names are.
    pub attribute: OwnerAttribute,
}

/// A person known to a directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Person {
    /// The provider's id for the person.
    pub id: String,
    /// A display name, when the provider has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// A directory failed to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("directory {directory} failed: {message}")]
pub struct DirectoryError {
    /// The directory's name.
    pub directory: String,
    /// What went wrong.
    pub message: String,
}

/// An identity provider's users and groups. Object safe; held as `Arc<dyn Directory>`.
#[async_trait]
pub trait Directory: Send + Sync + Debug {
    /// The provider's name, matched against `source` in the config.
    fn name(&self) -> &str;

    /// Looks up a user; `None` when unknown.
    async fn user(&self, id: &str) -> Result<Option<Person>, DirectoryError>;

    /// The members of a group; `None` when the group is unknown.
    async fn group_members(&self, group: &str) -> Result<Option<Vec<Person>>, DirectoryError>;

    /// The names of the groups a user belongs to; `None` when the user is unknown or
    /// the directory cannot list a user's groups (the default). Access flows need it
    /// for group conditions other than `is` / `is_not`.
    async fn user_groups(&self, id: &str) -> Result<Option<Vec<String>>, DirectoryError> {
        let _ = id;
        Ok(None)
    }
}

/// A directory with fixed users and groups, for tests and small setups.
#[derive(Debug, Clone, Default)]
pub struct InMemoryDirectory {
    name: String,
    users: BTreeSet<String>,
    groups: BTreeMap<String, Vec<String>>,
}

impl InMemoryDirectory {
    /// An empty directory called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        InMemoryDirectory {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Adds a user.
    #[must_use]
    pub fn with_user(mut self, id: &str) -> Self {
        self.users.insert(id.to_owned());
        self
    }

    /// Adds a group and its members (who become known users too).
    #[must_use]
    pub fn with_group(mut self, group: &str, members: &[&str]) -> Self {
        for m in members {
            self.users.insert((*m).to_owned());
        }
        self.groups.insert(
            group.to_owned(),
            members.iter().map(|m| (*m).to_owned()).collect(),
        );
        self
    }
}

#[async_trait]
impl Directory for InMemoryDirectory {
    fn name(&self) -> &str {
        &self.name
    }

    async fn user(&self, id: &str) -> Result<Option<Person>, DirectoryError> {
        Ok(self.users.contains(id).then(|| Person {
            id: id.to_owned(),
            display_name: None,
        }))
    }

    async fn group_members(&self, group: &str) -> Result<Option<Vec<Person>>, DirectoryError> {
        Ok(self.groups.get(group).map(|members| {
            members
                .iter()
                .map(|id| Person {
                    id: id.clone(),
                    display_name: None,
                })
                .collect()
        }))
    }

    async fn user_groups(&self, id: &str) -> Result<Option<Vec<String>>, DirectoryError> {
        Ok(self.users.contains(id).then(|| {
            self.groups
                .iter()
                .filter(|(_, members)| members.iter().any(|m| m == id))
                .map(|(group, _)| group.clone())
                .collect()
        }))
    }
}

/// One approver: a user or group of an identity provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approver {
    /// The identity provider.
    pub source: String,
    /// User or group.
    pub attribute: OwnerAttribute,
    /// The user id or group name.
    pub value: String,
    /// The people this approver stands for (the user, or the group's members), when
    /// a directory for the source is registered; `None` when unchecked.
    pub people: Option<Vec<Person>>,
}

/// Why the integration owners were used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum FallbackCause {
    /// The integration has no `[resource_owner]` setting.
    NoResourceOwnerSetting,
    /// Neither the resource nor its parents carry the tag.
    NoTag {
        /// The tag key looked for.
        key: String,
    },
    /// The tag was found but names nobody the directory knows.
    TagNamesNobody {
        /// The tag key.
        key: String,
        /// The tag's value.
        value: String,
        /// The resource carrying it.
        found_on: ResourceId,
    },
}

/// Why these approvers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ResolutionReason {
    /// The resource-owner tag decided.
    ResourceOwnerTag {
        /// The tag key.
        key: String,
        /// The tag's value.
        value: String,
        /// The resource carrying the tag: the resource itself, or a parent it inherits from.
        found_on: ResourceId,
    },
    /// The integration owners decided.
    IntegrationOwnerFallback {
        /// Why the resource owner did not.
        because: FallbackCause,
    },
    /// Nobody can approve: no usable resource owner and no (known) integration owner.
    Nobody {
        /// Why the resource owner did not decide.
        because: FallbackCause,
    },
}

/// The approvers of a resource and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// The resource asked about.
    pub resource: ResourceId,
    /// Who approves (empty only with [`ResolutionReason::Nobody`]).
    pub approvers: Vec<Approver>,
    /// Why.
    pub reason: ResolutionReason,
    /// Names that were configured or tagged but that the directory does not know,
    /// as `source:attribute:value`. Worth fixing: they approve nothing.
    pub unknown: Vec<String>,
}

/// Owner resolution failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OwnerError {
    /// A `[resource_owner]` setting without any integration owner.
    #[error(
        "resource_owner is set but integration_owners is empty: add at least one [[integration_owners]] entry as the fallback approver"
    )]
    ResourceOwnerWithoutIntegrationOwner,
    /// The tag source failed.
    #[error(transparent)]
    TagSource(#[from] TagSourceError),
    /// A directory failed.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

/// Resolves approvers for resources.
#[derive(Debug, Clone)]
pub struct OwnerResolver {
    integration_owners: Vec<IntegrationOwner>,
    resource_owner: Option<ResourceOwnerSetting>,
    tags: Arc<dyn TagSource>,
    directories: Vec<Arc<dyn Directory>>,
}

impl OwnerResolver {
    /// A resolver for one integration's owner settings. Names from a `source` with no
    /// matching directory are returned unchecked (`people: None`).
    pub fn new(
        integration_owners: Vec<IntegrationOwner>,
        resource_owner: Option<ResourceOwnerSetting>,
        tags: Arc<dyn TagSource>,
        directories: Vec<Arc<dyn Directory>>,
    ) -> Result<Self, OwnerError> {
        if resource_owner.is_some() && integration_owners.iter().all(|o| o.values.is_empty()) {
            return Err(OwnerError::ResourceOwnerWithoutIntegrationOwner);
        }
        Ok(OwnerResolver {
            integration_owners,
            resource_owner,
            tags,
            directories,
        })
    }

    /// Who approves access to `resource`, and why.
    pub async fn resolve(&self, resource: &ResourceId) -> Result<Resolution, OwnerError> {
        let mut unknown = Vec::new();
        let because = match &self.resource_owner {
            None => FallbackCause::NoResourceOwnerSetting,
            Some(setting) => match self.find_tag(resource, &setting.key).await? {
                None => FallbackCause::NoTag {
                    key: setting.key.clone(),
                },
                Some((found_on, value)) => {
                    let names = value.split(',').map(str::trim).filter(|n| !n.is_empty());
                    let mut approvers = Vec::new();
                    for name in names {
                        match self
                            .approver(&setting.source, setting.attribute, name)
                            .await?
                        {
                            Some(a) => approvers.push(a),
                            None => unknown
                                .push(format!("{}:{}:{name}", setting.source, setting.attribute)),
                        }
                    }
                    if !approvers.is_empty() {
                        return Ok(Resolution {
                            resource: resource.clone(),
                            approvers,
                            reason: ResolutionReason::ResourceOwnerTag {
                                key: setting.key.clone(),
                                value,
                                found_on,
                            },
                            unknown,
                        });
                    }
                    FallbackCause::TagNamesNobody {
                        key: setting.key.clone(),
                        value,
                        found_on,
                    }
                }
            },
        };
        let mut approvers = Vec::new();
        for owner in &self.integration_owners {
            for value in &owner.values {
                match self.approver(&owner.source, owner.attribute, value).await? {
                    Some(a) => approvers.push(a),
                    None => unknown.push(format!("{}:{}:{value}", owner.source, owner.attribute)),
                }
            }
        }
        let reason = if approvers.is_empty() {
            ResolutionReason::Nobody { because }
        } else {
            ResolutionReason::IntegrationOwnerFallback { because }
        };
        Ok(Resolution {
            resource: resource.clone(),
            approvers,
            reason,
            unknown,
        })
    }

    /// The tag on the resource itself, else on its schema, else on its database.
    async fn find_tag(
        &self,
        resource: &ResourceId,
        key: &str,
    ) -> Result<Option<(ResourceId, String)>, OwnerError> {
        let mut current = Some(resource.clone());
        while let Some(r) = current {
            if let Some(v) = self.tags.tags(&r).await?.get(key) {
                return Ok(Some((r, v.to_owned())));
            }
            current = r.parent();
        }
        Ok(None)
    }

    async fn approver(
        &self,
        source: &str,
        attribute: OwnerAttribute,
        value: &str,
    ) -> Result<Option<Approver>, OwnerError> {
        let people = match self.directories.iter().find(|d| d.name() == source) {
            None => None,
            Some(dir) => {
                let found = match attribute {
                    OwnerAttribute::User => dir.user(value).await?.map(|p| vec![p]),
                    OwnerAttribute::Group => dir.group_members(value).await?,
                };
                match found {
                    None => return Ok(None),
                    some => some,
                }
            }
        };
        Ok(Some(Approver {
            source: source.to_owned(),
            attribute,
            value: value.to_owned(),
            people,
        }))
    }
}
