//! Access targets: which resources a flow offers, at which levels.

use super::evaluate::{FlowError, Mismatch};
use super::lookup::Lookups;
use super::matching::wildcard;
use super::{AccessFlow, AccessTarget, ResourceScope, ScopeBy, ScopeMode};
use crate::resource::{AccessEntry, PermissionLevel, ResourceId};

/// The names of a resource's path: `[database, schema, table]`, `[role]`.
pub(super) fn path_names(r: &ResourceId) -> Vec<&str> {
    match r {
        ResourceId::Role { role } => vec![role],
        _ => [r.database_name(), r.schema_name()]
            .into_iter()
            .flatten()
            .chain((r.resource_type() == crate::resource::ResourceType::Table).then(|| r.name()))
            .collect(),
    }
}

/// Whether `scope` matches `resource` (ignoring its mode).
async fn scope_matches(
    lookups: &mut Lookups<'_>,
    scope: &ResourceScope,
    resource: &ResourceId,
) -> Result<bool, FlowError> {
    Ok(match scope.by {
        ScopeBy::Id => {
            let id = resource.to_string();
            scope.values.iter().any(|p| wildcard(p, &id, false))
        }
        ScopeBy::Name => {
            let names = path_names(resource);
            scope.values.iter().any(|p| {
                if p.contains('/') {
                    let parts: Vec<&str> = p.split('/').collect();
                    parts.len() == names.len()
                        && parts.iter().zip(&names).all(|(p, n)| wildcard(p, n, true))
                } else {
                    wildcard(p, resource.name(), true)
                }
            })
        }
        ScopeBy::Tag => {
            let key = scope.key.as_deref().unwrap_or_default();
            match lookups.inherited_tag(resource, key).await? {
                None => false,
                Some(value) => scope.values.iter().any(|p| {
                    wildcard(p, &value, true)
                        || value.split(',').any(|part| wildcard(p, part.trim(), true))
                }),
            }
        }
    })
}

/// Whether `target` takes in `resource`: `Ok(None)` when it does, else the exclude
/// scope that removed it (`Some(Some(i))`) or `Some(None)` when no include matched.
async fn in_scope(
    lookups: &mut Lookups<'_>,
    target: &AccessTarget,
    resource: &ResourceId,
) -> Result<Option<Option<usize>>, FlowError> {
    let mut any_include = false;
    let mut included = false;
    for scope in &target.resources {
        if scope.scope_mode == ScopeMode::Include {
            any_include = true;
            if !included && scope_matches(lookups, scope, resource).await? {
                included = true;
            }
        }
    }
    if any_include && !included {
        return Ok(Some(None));
    }
    for (i, scope) in target.resources.iter().enumerate() {
        if scope.scope_mode == ScopeMode::Exclude && scope_matches(lookups, scope, resource).await?
        {
            return Ok(Some(Some(i)));
        }
    }
    Ok(None)
}

/// Why `flow`'s targets on `integration` do not cover `entry`: nothing when they do.
pub(super) async fn check_entry(
    lookups: &mut Lookups<'_>,
    flow: &AccessFlow,
    integration: &str,
    entry: &AccessEntry,
) -> Result<Option<Mismatch>, FlowError> {
    let resource = &entry.resource;
    let mut offered: Vec<PermissionLevel> = Vec::new();
    let mut excluded_by: Option<String> = None;
    for (t, target) in flow.access_targets.iter().enumerate() {
        if target.integration != integration || target.resource_type != resource.resource_type() {
            continue;
        }
        match in_scope(lookups, target, resource).await? {
            None => {
                if target.permissions.contains(&entry.level) {
                    return Ok(None);
                }
                offered.extend(target.permissions.iter().copied());
            }
            Some(Some(s)) => {
                excluded_by.get_or_insert_with(|| {
                    format!(
                        "access_targets[{t}].resources[{s}] ({})",
                        target.resources[s]
                    )
                });
            }
            Some(None) => {}
        }
    }
    Ok(Some(if !offered.is_empty() {
        offered.sort_unstable();
        offered.dedup();
        Mismatch::PermissionNotOffered {
            resource: resource.clone(),
            level: entry.level,
            offered,
        }
    } else if let Some(scope) = excluded_by {
        Mismatch::ResourceExcluded {
            resource: resource.clone(),
            scope,
        }
    } else {
        Mismatch::ResourceNotIncluded {
            resource: resource.clone(),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            path_names(&ResourceId::table("a", "s", "t")),
            ["a", "s", "t"]
        );
        assert_eq!(path_names(&ResourceId::schema("a", "s")), ["a", "s"]);
        assert_eq!(path_names(&ResourceId::database("a")), ["a"]);
        assert_eq!(path_names(&ResourceId::role("r")), ["r"]);
    }
}
