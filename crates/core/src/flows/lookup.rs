//! The directory and tag answers of one evaluation, each asked once.
//!
//! Nothing outlives the evaluation, so a membership or tag change is seen by the next
//! one.

use std::collections::HashMap;
use std::sync::Arc;

use super::evaluate::FlowError;
use crate::owners::Directory;
use crate::resource::ResourceId;
use crate::tags::{TagSource, Tags};

/// Lookups through the evaluator's directories and tag source, cached for one
/// evaluation.
pub(super) struct Lookups<'a> {
    directories: &'a [Arc<dyn Directory>],
    tags: &'a dyn TagSource,
    tag_cache: HashMap<ResourceId, Tags>,
    /// (source, group) → member ids, `None` for an unknown group.
    members: HashMap<(String, String), Option<Vec<String>>>,
    /// (source, user) → group names, `None` when the directory cannot say.
    groups: HashMap<(String, String), Option<Vec<String>>>,
}

impl<'a> Lookups<'a> {
    pub(super) fn new(directories: &'a [Arc<dyn Directory>], tags: &'a dyn TagSource) -> Self {
        Lookups {
            directories,
            tags,
            tag_cache: HashMap::new(),
            members: HashMap::new(),
            groups: HashMap::new(),
        }
    }

    fn directory(&self, source: &str) -> Option<&'a Arc<dyn Directory>> {
        self.directories.iter().find(|d| d.name() == source)
    }

    /// Whether a directory called `source` is registered.
    pub(super) fn has_directory(&self, source: &str) -> bool {
        self.directory(source).is_some()
    }

    /// Whether `user` is a member of `group` in `source` (false for an unknown group
    /// or an unregistered source).
    pub(super) async fn is_member(
        &mut self,
        source: &str,
        group: &str,
        user: &str,
    ) -> Result<bool, FlowError> {
        let key = (source.to_owned(), group.to_owned());
        if !self.members.contains_key(&key) {
            let found = match self.directory(source) {
                None => None,
                Some(dir) => dir
                    .group_members(group)
                    .await?
                    .map(|people| people.into_iter().map(|p| p.id).collect()),
            };
            self.members.insert(key.clone(), found);
        }
        Ok(self
            .members
            .get(&key)
            .and_then(Option::as_ref)
            .is_some_and(|ids| ids.iter().any(|id| id == user)))
    }

    /// The groups of `user` in `source`; `None` when the directory cannot say (or is
    /// not registered).
    pub(super) async fn user_groups(
        &mut self,
        source: &str,
        user: &str,
    ) -> Result<Option<Vec<String>>, FlowError> {
        let key = (source.to_owned(), user.to_owned());
        if let Some(found) = self.groups.get(&key) {
            return Ok(found.clone());
        }
        let found = match self.directory(source) {
            None => None,
            Some(dir) => dir.user_groups(user).await?,
        };
        self.groups.insert(key, found.clone());
        Ok(found)
    }

    /// The tag `key` of `resource`, or of the nearest parent carrying it.
    pub(super) async fn inherited_tag(
        &mut self,
        resource: &ResourceId,
        key: &str,
    ) -> Result<Option<String>, FlowError> {
        let mut current = Some(resource.clone());
        while let Some(r) = current {
            if !self.tag_cache.contains_key(&r) {
                let tags = self.tags.tags(&r).await?;
                self.tag_cache.insert(r.clone(), tags);
            }
            if let Some(v) = self.tag_cache.get(&r).and_then(|t| t.get(key)) {
                return Ok(Some(v.to_owned()));
            }
            current = r.parent();
        }
        Ok(None)
    }
}
