//! What changed between two discoveries of the same instance.

use std::collections::BTreeMap;

use pgwarden_core::resource::{ResourceId, ResourceType};
use serde::Serialize;

use super::{DiscoveryResult, Resource};

/// What changed between an earlier discovery and a later one.
///
/// Only resource types both discoveries asked for are compared. The schemas and tables
/// of a database the later discovery could not read are unknown rather than gone: they
/// are never reported removed or changed, and the database is listed in
/// [`DiscoveryDiff::unverified_databases`]. (What a database the *earlier* discovery
/// could not read holds shows up as added, since it was not known before.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiscoveryDiff {
    /// Resources found now and not before, sorted by id.
    pub added: Vec<Resource>,
    /// Resources found before and not now, sorted by id.
    pub removed: Vec<Resource>,
    /// Resources found in both with a different kind, owner, comment, tags,
    /// partitions or role attributes, sorted by id.
    pub changed: Vec<ResourceChange>,
    /// Databases the later discovery could not read, whose contents were not compared.
    pub unverified_databases: Vec<String>,
}

impl DiscoveryDiff {
    /// Whether nothing changed (unverified databases aside).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// One resource that changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceChange {
    /// The resource.
    pub id: ResourceId,
    /// What changed: `kind`, `owner`, `comment`, `tags`, `partitions`, `attributes`.
    pub fields: Vec<&'static str>,
    /// The resource as it was.
    pub before: Resource,
    /// The resource as it is.
    pub after: Resource,
}

fn changed_fields(before: &Resource, after: &Resource) -> Vec<&'static str> {
    [
        ("kind", before.kind != after.kind),
        ("owner", before.owner != after.owner),
        ("comment", before.comment != after.comment),
        ("tags", before.tags != after.tags),
        ("partitions", before.partitions != after.partitions),
        ("attributes", before.attributes != after.attributes),
    ]
    .into_iter()
    .filter_map(|(field, differs)| differs.then_some(field))
    .collect()
}

pub(super) fn diff(earlier: &DiscoveryResult, later: &DiscoveryResult) -> DiscoveryDiff {
    let compared = |t: ResourceType| earlier.types.contains(&t) && later.types.contains(&t);
    // Inside a database the later discovery failed on, only absence is unknown.
    let unknown = |r: &Resource| {
        !matches!(r.resource_type, ResourceType::Database | ResourceType::Role)
            && r.database.as_deref().is_some_and(|db| later.failed(db))
    };
    let before: BTreeMap<&ResourceId, &Resource> = earlier
        .resources
        .iter()
        .filter(|r| compared(r.resource_type))
        .map(|r| (&r.id, r))
        .collect();
    let mut result = DiscoveryDiff {
        unverified_databases: later.failures.iter().map(|f| f.database.clone()).collect(),
        ..DiscoveryDiff::default()
    };
    for after in later.resources.iter().filter(|r| compared(r.resource_type)) {
        match before.get(&after.id) {
            None => result.added.push(after.clone()),
            Some(before) => {
                let fields = changed_fields(before, after);
                if !fields.is_empty() {
                    result.changed.push(ResourceChange {
                        id: after.id.clone(),
                        fields,
                        before: (*before).clone(),
                        after: after.clone(),
                    });
                }
            }
        }
    }
    result.removed = before
        .into_values()
        .filter(|r| !unknown(r) && later.get(&r.id).is_none())
        .cloned()
        .collect();
    result
}
