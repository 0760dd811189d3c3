//! Tags on resources, and where they come from.
//!
//! Owner resolution reads a tag (say `owner`) on a table, its schema or its
//! database. Tags come from a [`TagSource`]; the built-in one parses `key=value`
//! pairs out of PostgreSQL object comments (`COMMENT ON TABLE .. IS 'owner=payments'`),
//! and a host application can plug in its own (cloud resource tags, a CMDB).
//!
//! # Comment syntax
//! A comment is split into words at whitespace. A word of the form `key=value` is a
//! tag; any other word is free text and ignored, so `Orders of the shop. owner=payments
//! team=core` carries two tags. Keys are letters, digits and `_ . - / :`. A value with
//! spaces is written in double quotes, with `\"` and `\\` inside: `team="core platform"`.
//! A value may list several names separated by commas (`owner=alice,bob`). When a key
//! appears twice, the last one wins.
//!
//! ```
//! use pgwarden_core::tags::Tags;
//! let tags = Tags::parse_comment(r#"Orders. owner=payments team="core platform""#);
//! assert_eq!(tags.get("owner"), Some("payments"));
//! assert_eq!(tags.get("team"), Some("core platform"));
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::RwLock;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::resource::ResourceId;

/// Key/value tags of one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tags(BTreeMap<String, String>);

fn is_key_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ':')
}

impl Tags {
    /// No tags.
    #[must_use]
    pub fn new() -> Self {
        Tags::default()
    }

    /// Parses the tags out of a comment (see the module docs for the syntax).
    /// Never fails: anything that is not a well-formed tag is free text.
    #[must_use]
    pub fn parse_comment(comment: &str) -> Self {
        let mut tags = BTreeMap::new();
        let chars: Vec<char> = comment.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if chars[i].is_whitespace() {
                i += 1;
                continue;
            }
            let word_start = i;
            while i < chars.len() && is_key_char(chars[i]) {
                i += 1;
            }
            let key: String = chars[word_start..i].iter().collect();
            if !key.is_empty() && i < chars.len() && chars[i] == '=' {
                i += 1;
                let (value, next, ok) = read_value(&chars, i);
                i = next;
                // A tag must end at whitespace or the end: `a=b,c` yes, `a="b"c` no.
                if ok && (i >= chars.len() || chars[i].is_whitespace()) {
                    tags.insert(key, value);
                    continue;
                }
            }
            // Free text: skip the rest of this word.
            while i < chars.len() && !chars[i].is_whitespace() {
                i += 1;
            }
        }
        Tags(tags)
    }

    /// The value of a tag.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Sets a tag.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    /// Whether there are no tags.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// All tags, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Tags {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Tags(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

/// Reads a tag value at `i`: quoted or bare. Returns (value, next index, well-formed).
fn read_value(chars: &[char], mut i: usize) -> (String, usize, bool) {
    let mut value = String::new();
    if chars.get(i) == Some(&'"') {
        i += 1;
        while i < chars.len() {
            match chars[i] {
                '\\' if i + 1 < chars.len() => {
                    value.push(chars[i + 1]);
                    i += 2;
                }
                '"' => return (value, i + 1, true),
                c => {
                    value.push(c);
                    i += 1;
                }
            }
        }
        (value, i, false)
    } else {
        while i < chars.len() && !chars[i].is_whitespace() {
            value.push(chars[i]);
            i += 1;
        }
        (value, i, true)
    }
}

/// A tag source failed (unreachable, permission denied, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tag source {source_name} failed for {resource}: {message}")]
pub struct TagSourceError {
    /// The source's name.
    pub source_name: String,
    /// The resource whose tags were asked for.
    pub resource: String,
    /// What went wrong.
    pub message: String,
}

/// Where tags come from. Object safe; held as `Arc<dyn TagSource>`.
#[async_trait]
pub trait TagSource: Send + Sync + Debug {
    /// The tags directly on `resource` (not inherited ones; the resolver walks parents).
    async fn tags(&self, resource: &ResourceId) -> Result<Tags, TagSourceError>;
}

/// Tags held in memory: fed by discovery (from comments) or by a test.
#[derive(Debug, Default)]
pub struct InMemoryTagSource {
    tags: RwLock<HashMap<ResourceId, Tags>>,
}

impl InMemoryTagSource {
    /// An empty source.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the tags of a resource.
    pub fn set(&self, resource: ResourceId, tags: Tags) {
        self.tags
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(resource, tags);
    }

    /// Sets the tags of a resource from its comment.
    pub fn set_comment(&self, resource: ResourceId, comment: &str) {
        self.set(resource, Tags::parse_comment(comment));
    }
}

#[async_trait]
impl TagSource for InMemoryTagSource {
    async fn tags(&self, resource: &ResourceId) -> Result<Tags, TagSourceError> {
        Ok(self
            .tags
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(resource)
            .cloned()
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_table() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("", &[]),
            ("just a comment", &[]),
            ("owner=payments", &[("owner", "payments")]),
            (
                "Orders table. owner=payments team=core",
                &[("owner", "payments"), ("team", "core")],
            ),
            ("owner=alice,bob", &[("owner", "alice,bob")]),
            (
                r#"team="core platform" x=1"#,
                &[("team", "core platform"), ("x", "1")],
            ),
            (r#"q="say \"hi\" \\ ok""#, &[("q", r#"say "hi" \ ok"#)]),
            ("owner=a owner=b", &[("owner", "b")]),
            (
                "app.kubernetes.io/team=core",
                &[("app.kubernetes.io/team", "core")],
            ),
            ("empty= next=1", &[("empty", ""), ("next", "1")]),
            ("=novalue", &[]),
            (r#"bad="unterminated"#, &[]),
            (r#"bad="a"b good=1"#, &[("good", "1")]),
            ("multi\nline\towner=x", &[("owner", "x")]),
            ("ünï=cödé", &[("ünï", "cödé")]),
            ("a=b=c", &[("a", "b=c")]),
        ];
        for (comment, want) in cases {
            let got = Tags::parse_comment(comment);
            let want: Tags = want.iter().copied().collect();
            assert_eq!(got, want, "{comment:?}");
        }
    }

    #[tokio::test]
    async fn in_memory_source() {
        let src = InMemoryTagSource::new();
        let t = ResourceId::table("app", "s", "t");
        assert!(src.tags(&t).await.unwrap().is_empty());
        src.set_comment(t.clone(), "owner=dba");
        assert_eq!(src.tags(&t).await.unwrap().get("owner"), Some("dba"));
    }
}
