//! Loading: flows from text, a file or a directory, into a validated [`FlowSet`].

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::AccessFlow;
use super::validate::{self, Problems};
use crate::config::{ConfigError, ConfigFormat, ConfigProblem};

/// The file extensions a directory of flows is read for.
const EXTENSIONS: [&str; 4] = ["toml", "yaml", "yml", "json"];

/// A validated set of access flows, in load order, names unique.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct FlowSet {
    flows: Vec<AccessFlow>,
}

impl FlowSet {
    /// Parses and validates one document written in `format` (one flow, or a
    /// `flows` list; see the [module docs](super)).
    pub fn parse(text: &str, format: ConfigFormat) -> Result<Self, ConfigError> {
        Self::from_value(&format.read(text)?)
    }

    /// Validates an already-parsed document (any serde format turned into JSON
    /// values), as [`FlowSet::parse`] does.
    pub fn from_value(doc: &Value) -> Result<Self, ConfigError> {
        let mut p = Problems::new();
        let flows = document(&mut p, doc, "");
        finish(p, flows)
    }

    /// Loads a file (its format from its extension), or every `.toml`, `.yaml`,
    /// `.yml` and `.json` file of a directory in file-name order, each problem then
    /// prefixed with its file name. Reading files is this crate's only I/O.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        if !path.is_dir() {
            let format = ConfigFormat::from_path(path)?;
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::InvalidFlows {
                problems: vec![ConfigProblem::new(
                    path.display().to_string(),
                    format!("cannot read the file: {e}"),
                )],
            })?;
            return Self::parse(&text, format);
        }
        let mut p = Problems::new();
        let mut flows = Vec::new();
        for file in flow_files(&mut p, path) {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let prefix = format!("{name}: ");
            let doc = ConfigFormat::from_path(&file).and_then(|format| {
                let text =
                    std::fs::read_to_string(&file).map_err(|e| ConfigError::InvalidFlows {
                        problems: vec![ConfigProblem::new("", format!("cannot read: {e}"))],
                    })?;
                format.read(&text)
            });
            match doc {
                Ok(doc) => flows.extend(document(&mut p, &doc, &prefix)),
                Err(e) => p.extend(e.problems().into_iter().map(|pr| prefixed(&prefix, pr))),
            }
        }
        finish(p, flows)
    }

    /// The flows, in load order.
    #[must_use]
    pub fn flows(&self) -> &[AccessFlow] {
        &self.flows
    }

    /// The flow called `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&AccessFlow> {
        self.flows.iter().find(|f| f.name == name)
    }

    /// The flows (active or not) with a target on `integration`, in load order.
    pub fn for_integration<'a>(
        &'a self,
        integration: &'a str,
    ) -> impl Iterator<Item = &'a AccessFlow> + 'a {
        self.flows
            .iter()
            .filter(move |f| f.covers_integration(integration))
    }

    /// The flows, in load order.
    pub fn iter(&self) -> std::slice::Iter<'_, AccessFlow> {
        self.flows.iter()
    }

    /// The number of flows.
    #[must_use]
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether there is no flow.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// What does not fit integration `name`, whose longest grant is `max_ttl`: no flow
    /// offering anything on it (every request would be refused), and flows whose
    /// `grant_duration` is longer than `max_ttl` (a request over `max_ttl` is refused
    /// anyway). Each problem is under the flow's name.
    #[must_use]
    pub fn problems_for(&self, name: &str, max_ttl: crate::duration::Ttl) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.for_integration(name).next().is_none() {
            problems.push(ConfigProblem::new(
                "",
                format!(
                    "no flow has an access target on integration {name}: every request would be refused; add a target with integration = \"{name}\""
                ),
            ));
        }
        for flow in self.for_integration(name) {
            if flow.grant_duration > max_ttl {
                problems.push(ConfigProblem::new(
                    format!("{}: grant_duration", flow.name),
                    format!(
                        "{} is longer than integration {name}'s max_ttl {max_ttl}: lower it, or raise max_ttl",
                        flow.grant_duration
                    ),
                ));
            }
        }
        problems
    }
}

impl<'a> IntoIterator for &'a FlowSet {
    type Item = &'a AccessFlow;
    type IntoIter = std::slice::Iter<'a, AccessFlow>;

    fn into_iter(self) -> Self::IntoIter {
        self.flows.iter()
    }
}

fn prefixed(prefix: &str, p: ConfigProblem) -> ConfigProblem {
    let field = if p.field.is_empty() {
        prefix.trim_end_matches([':', ' ']).to_owned()
    } else {
        format!("{prefix}{}", p.field)
    };
    ConfigProblem::new(field, p.message)
}

/// The flow files of `dir`, sorted by name.
fn flow_files(p: &mut Problems, dir: &Path) -> Vec<std::path::PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            p.push(ConfigProblem::new(
                dir.display().to_string(),
                format!("cannot read the directory: {e}"),
            ));
            return Vec::new();
        }
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|f| {
            f.is_file()
                && f.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        p.push(ConfigProblem::new(
            dir.display().to_string(),
            "holds no .toml, .yaml, .yml or .json file: add a flow file",
        ));
    }
    files
}

/// The flows of one document, each with the path of its name for duplicate reports;
/// problems are prefixed with `prefix` (a file name and `": "`, or nothing).
fn document(p: &mut Problems, doc: &Value, prefix: &str) -> Vec<(String, AccessFlow)> {
    let mut mine = Problems::new();
    let mut out = Vec::new();
    let mut read = |mine: &mut Problems, path: String, v: &Value| {
        if let Some(f) = validate::flow(mine, &path, v) {
            let name_path = if path.is_empty() {
                "name".to_owned()
            } else {
                format!("{path}.name")
            };
            out.push((format!("{prefix}{name_path}"), f));
        }
    };
    match doc {
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                read(&mut mine, format!("[{i}]"), v);
            }
        }
        Value::Object(map) if map.contains_key("flows") => {
            for key in map.keys().filter(|k| *k != "flows") {
                mine.push(ConfigProblem::new(
                    key.clone(),
                    "a document holds one flow or a flows list, not both: move this field into a flow",
                ));
            }
            match &map["flows"] {
                Value::Array(items) if !items.is_empty() => {
                    for (i, v) in items.iter().enumerate() {
                        read(&mut mine, format!("flows[{i}]"), v);
                    }
                }
                Value::Array(_) => mine.push(ConfigProblem::new("flows", "list at least one flow")),
                _ => mine.push(ConfigProblem::new("flows", "must be a list of flows")),
            }
        }
        other => read(&mut mine, String::new(), other),
    }
    p.extend(mine.into_iter().map(|pr| {
        if prefix.is_empty() {
            pr
        } else {
            prefixed(prefix, pr)
        }
    }));
    out
}

/// The set, or every problem (duplicate names included).
fn finish(mut p: Problems, flows: Vec<(String, AccessFlow)>) -> Result<FlowSet, ConfigError> {
    for (i, (path, flow)) in flows.iter().enumerate() {
        if let Some((first, _)) = flows[..i].iter().find(|(_, f)| f.name == flow.name) {
            p.push(ConfigProblem::new(
                path.clone(),
                format!(
                    "\"{}\" is also the name of the flow at {first}: flow names must be unique",
                    flow.name
                ),
            ));
        }
    }
    if p.is_empty() {
        Ok(FlowSet {
            flows: flows.into_iter().map(|(_, f)| f).collect(),
        })
    } else {
        Err(ConfigError::InvalidFlows { problems: p })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str) -> Value {
        serde_json::json!({
            "name": name, "trigger": "automatic", "grant_duration": "1h",
            "requestors": {"conditions": [{"type": "user", "source": "okta", "values": ["a"]}]},
            "access_targets": [{"integration": "i", "resource_type": "role", "permissions": ["member"]}],
        })
    }

    #[test]
    fn document_shapes() {
        let mut p = Problems::new();
        assert_eq!(document(&mut p, &one("a"), "").len(), 1);
        let list = Value::Array(vec![one("a"), one("b")]);
        assert_eq!(document(&mut p, &list, "").len(), 2);
        let flows = serde_json::json!({ "flows": [one("a")] });
        assert_eq!(
            document(&mut p, &flows, "x.json: ")[0].0,
            "x.json: flows[0].name"
        );
        assert!(p.is_empty(), "{p:?}");

        let mixed = serde_json::json!({ "flows": [], "name": "a" });
        document(&mut p, &mixed, "x.json: ");
        let fields: Vec<&str> = p.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["x.json: name", "x.json: flows"]);
    }

    #[test]
    fn lookups_by_name_and_integration() {
        let set = FlowSet::from_value(&Value::Array(vec![one("a"), one("b")])).unwrap();
        assert_eq!(set.get("b").map(|f| f.name.as_str()), Some("b"));
        assert!(set.get("c").is_none());
        assert_eq!(set.for_integration("i").count(), 2);
        assert_eq!(set.for_integration("j").count(), 0);
        assert_eq!((&set).into_iter().count(), 2);
    }
}
