//! Validation: one parsed flow (a document of JSON values) to an [`AccessFlow`], with
//! every problem and its field path.
//!
//! Each field is read once, where it is declared ([`Table::get`]); what is left of a
//! table once its fields are read is unknown and reported with the valid fields.

#![allow(
    clippy::many_single_char_names,
    reason = "p (problems), t (table), v (value), f (field) are this validator's vocabulary"
)]

use std::fmt::Display;

use serde_json::{Map, Value};

use super::timeframe::{TimeOfDay, Weekday, zone};
use super::{
    AccessFlow, AccessTarget, ApprovalMode, ApproverGroup, ApproverPolicy, ApproverRule,
    ApproverType, Condition, FlowSettings, LogicalOperator, MatchOperator, Requestors,
    ResourceScope, ScopeBy, ScopeMode, SubjectType, Timeframe, Trigger,
};
use crate::config::ConfigProblem;
use crate::duration::Ttl;
use crate::resource::{PermissionLevel, ResourceType};
use crate::session::SessionLimits;

/// The longest flow name, in characters.
const MAX_NAME_CHARS: usize = 128;

/// Problems found so far.
pub(super) type Problems = Vec<ConfigProblem>;

fn problem(p: &mut Problems, path: &str, message: impl Into<String>) {
    p.push(ConfigProblem::new(path, message));
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

/// The fields of one table, taken as they are read.
struct Table<'v> {
    path: String,
    map: &'v Map<String, Value>,
    read: Vec<&'static str>,
}

impl<'v> Table<'v> {
    fn open(p: &mut Problems, path: &str, v: &'v Value) -> Option<Self> {
        if let Value::Object(map) = v {
            Some(Table {
                path: path.to_owned(),
                map,
                read: Vec::new(),
            })
        } else {
            problem(p, path, format!("must be a table, not {}", type_name(v)));
            None
        }
    }

    /// The field `key` and its path; `None` when unset (or `null`).
    fn get(&mut self, key: &'static str) -> (String, Option<&'v Value>) {
        self.read.push(key);
        (
            join(&self.path, key),
            self.map.get(key).filter(|v| !v.is_null()),
        )
    }

    /// Reports the fields no one read.
    fn finish(self, p: &mut Problems) {
        let valid = self.read.join(", ");
        for key in self.map.keys() {
            if !self.read.contains(&key.as_str()) {
                problem(
                    p,
                    &join(&self.path, key),
                    format!("unknown field (valid fields: {valid})"),
                );
            }
        }
    }
}

fn required<'v>(p: &mut Problems, path: &str, v: Option<&'v Value>) -> Option<&'v Value> {
    if v.is_none() {
        problem(p, path, "is required");
    }
    v
}

fn text(p: &mut Problems, path: &str, v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.trim().is_empty() => {
            problem(p, path, "must not be empty");
            None
        }
        Value::String(s) if s.chars().any(char::is_control) => {
            problem(p, path, "must not contain control characters");
            None
        }
        Value::String(s) => Some(s.clone()),
        other => {
            problem(
                p,
                path,
                format!("must be a string, not {}", type_name(other)),
            );
            None
        }
    }
}

fn boolean(p: &mut Problems, path: &str, v: &Value) -> Option<bool> {
    if let Value::Bool(b) = v {
        Some(*b)
    } else {
        problem(
            p,
            path,
            format!("must be true or false, not {}", type_name(v)),
        );
        None
    }
}

/// A list; `nonempty` reports an empty one with `what` ("list at least one …").
fn list<'v>(p: &mut Problems, path: &str, v: &'v Value, nonempty: &str) -> Option<&'v [Value]> {
    match v {
        Value::Array(items) if items.is_empty() && !nonempty.is_empty() => {
            problem(p, path, nonempty);
            None
        }
        Value::Array(items) => Some(items),
        other => {
            problem(p, path, format!("must be a list, not {}", type_name(other)));
            None
        }
    }
}

/// The list `v` at `path` (non-empty unless `nonempty` is empty), each item read by
/// `item` under its own path; `None` when any item had a problem.
fn each<T>(
    p: &mut Problems,
    path: &str,
    v: &Value,
    nonempty: &str,
    mut item: impl FnMut(&mut Problems, &str, &Value) -> Option<T>,
) -> Option<Vec<T>> {
    let values = list(p, path, v, nonempty)?;
    let before = p.len();
    let out: Vec<T> = values
        .iter()
        .enumerate()
        .filter_map(|(i, x)| item(p, &index(path, i), x))
        .collect();
    (p.len() == before).then_some(out)
}

/// A non-empty list of non-empty strings.
fn texts(p: &mut Problems, path: &str, v: &Value, nonempty: &str) -> Option<Vec<String>> {
    each(p, path, v, nonempty, text)
}

/// One of a closed set of words.
fn word<T: Copy + Display>(
    p: &mut Problems,
    path: &str,
    v: &Value,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Option<T> {
    let s = text(p, path, v)?;
    let found = all.iter().copied().find(|w| name(*w) == s);
    if found.is_none() {
        let valid: Vec<&str> = all.iter().map(|w| name(*w)).collect();
        problem(
            p,
            path,
            format!("\"{s}\" is not one of: {}", valid.join(", ")),
        );
    }
    found
}

/// A `logical_operator` (or `approval_mode`), required when there is more than one
/// item to combine; `single` otherwise.
fn combinator<T: Copy + Display>(
    p: &mut Problems,
    (path, v): (String, Option<&Value>),
    items: usize,
    all: &[T],
    name: fn(T) -> &'static str,
    single: T,
) -> Option<T> {
    match v {
        Some(v) => word(p, &path, v, all, name),
        None if items > 1 => {
            let valid: Vec<&str> = all.iter().map(|w| name(*w)).collect();
            problem(
                p,
                &path,
                format!(
                    "is required with more than one entry: say how they combine ({})",
                    valid.join(" or ")
                ),
            );
            None
        }
        None => Some(single),
    }
}

/// Validates the flow at `path` (empty for a one-flow document).
pub(super) fn flow(p: &mut Problems, path: &str, v: &Value) -> Option<AccessFlow> {
    let before = p.len();
    let mut t = Table::open(p, path, v)?;

    let (fp, f) = t.get("name");
    let name = required(p, &fp, f).and_then(|v| text(p, &fp, v));
    if let Some(n) = &name
        && n.chars().count() > MAX_NAME_CHARS
    {
        problem(
            p,
            &fp,
            format!("is longer than {MAX_NAME_CHARS} characters: shorten it"),
        );
    }
    let (fp, f) = t.get("active");
    let active = f.map_or(Some(true), |v| boolean(p, &fp, v));
    let (fp, f) = t.get("trigger");
    let trigger = required(p, &fp, f).and_then(|v| word(p, &fp, v, Trigger::ALL, Trigger::as_str));
    let (fp, f) = t.get("requestors");
    let requestors = required(p, &fp, f).and_then(|v| requestors(p, &fp, v));
    let (fp, f) = t.get("access_targets");
    let access_targets = required(p, &fp, f).and_then(|v| targets(p, &fp, v));
    let (fp, f) = t.get("grant_duration");
    let grant_duration = required(p, &fp, f).and_then(|v| ttl(p, &fp, v));
    let (fp, f) = t.get("timeframe");
    let timeframe = f.map(|v| timeframe(p, &fp, v));
    let (fp, f) = t.get("approver_policy");
    let approver_policy = f.map_or(Some(ApproverPolicy::default()), |v| policy(p, &fp, v));
    if let (Some(Trigger::Automatic), Some(policy)) = (trigger, &approver_policy)
        && !policy.is_empty()
    {
        problem(
            p,
            &fp,
            "an automatic flow is granted on request: remove approver_policy, or use trigger = \"self_serve\"",
        );
    }
    let (fp, f) = t.get("settings");
    let settings = settings(p, &fp, f, trigger.unwrap_or(Trigger::SelfServe));
    let (fp, f) = t.get("session");
    let session = f.map_or(Some(SessionLimits::default()), |v| session(p, &fp, v));
    t.finish(p);

    if p.len() > before {
        return None;
    }
    Some(AccessFlow {
        name: name?,
        active: active?,
        trigger: trigger?,
        requestors: requestors?,
        access_targets: access_targets?,
        grant_duration: grant_duration?,
        timeframe: match timeframe {
            Some(t) => Some(t?),
            None => None,
        },
        approver_policy: approver_policy?,
        settings: settings?,
        session: session?,
    })
}

fn ttl(p: &mut Problems, path: &str, v: &Value) -> Option<Ttl> {
    let s = text(p, path, v)?;
    match s.parse() {
        Ok(t) => Some(t),
        Err(e) => {
            problem(p, path, e.to_string());
            None
        }
    }
}

fn requestors(p: &mut Problems, path: &str, v: &Value) -> Option<Requestors> {
    let mut t = Table::open(p, path, v)?;
    let (operator, conditions) = combined(
        p,
        &mut t,
        "conditions",
        "list at least one condition on who may request",
        condition,
    );
    t.finish(p);
    Some(Requestors {
        logical_operator: operator?,
        conditions: conditions?,
    })
}

/// `type`, `source`, `match_operator` (default `is`) and `values` of a condition.
fn subject_fields<T: Copy + Display>(
    p: &mut Problems,
    t: &mut Table<'_>,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Option<T> {
    let (fp, f) = t.get("type");
    required(p, &fp, f).and_then(|v| word(p, &fp, v, all, name))
}

fn operator(p: &mut Problems, t: &mut Table<'_>) -> Option<MatchOperator> {
    let (fp, f) = t.get("match_operator");
    f.map_or(Some(MatchOperator::Is), |v| {
        word(p, &fp, v, MatchOperator::ALL, MatchOperator::as_str)
    })
}

fn condition(p: &mut Problems, path: &str, v: &Value) -> Option<Condition> {
    let mut t = Table::open(p, path, v)?;
    let subject = subject_fields(p, &mut t, SubjectType::ALL, SubjectType::as_str);
    let (fp, f) = t.get("source");
    let source = required(p, &fp, f).and_then(|v| text(p, &fp, v));
    let match_operator = operator(p, &mut t);
    let (fp, f) = t.get("values");
    let values = required(p, &fp, f).and_then(|v| texts(p, &fp, v, "list at least one value"));
    t.finish(p);
    Some(Condition {
        subject: subject?,
        source: source?,
        match_operator: match_operator?,
        values: values?,
    })
}

fn targets(p: &mut Problems, path: &str, v: &Value) -> Option<Vec<AccessTarget>> {
    each(
        p,
        path,
        v,
        "list at least one access target (integration, resource_type, permissions)",
        target,
    )
}

fn resource_type(p: &mut Problems, path: &str, v: &Value) -> Option<ResourceType> {
    let s = text(p, path, v)?;
    let bare = s.strip_prefix("postgresql-").unwrap_or(&s);
    if let Ok(t) = bare.parse() {
        return Some(t);
    }
    let valid: Vec<String> = ResourceType::ALL
        .iter()
        .map(|t| format!("postgresql-{t}"))
        .collect();
    problem(
        p,
        path,
        format!(
            "\"{s}\" is not a resource type: use one of {}",
            valid.join(", ")
        ),
    );
    None
}

fn target(p: &mut Problems, path: &str, v: &Value) -> Option<AccessTarget> {
    let mut t = Table::open(p, path, v)?;
    let (fp, f) = t.get("integration");
    let integration = required(p, &fp, f).and_then(|v| text(p, &fp, v));
    let (fp, f) = t.get("resource_type");
    let rtype = required(p, &fp, f).and_then(|v| resource_type(p, &fp, v));
    let (fp, f) = t.get("permissions");
    let permissions = required(p, &fp, f).and_then(|v| {
        let items = texts(p, &fp, v, "list at least one permission level")?;
        let before = p.len();
        let mut levels = Vec::new();
        for (i, s) in items.iter().enumerate() {
            let parsed = match rtype {
                Some(rt) => PermissionLevel::parse_for(s, rt),
                None => s.parse(),
            };
            match parsed {
                Ok(l) if !levels.contains(&l) => levels.push(l),
                Ok(_) => {}
                Err(e) => problem(p, &index(&fp, i), e.to_string()),
            }
        }
        (p.len() == before).then_some(levels)
    });
    let (fp, f) = t.get("resources");
    let resources = f.map_or(Some(Vec::new()), |v| {
        each(p, &fp, v, "", |p, path, s| scope(p, path, s, rtype))
    });
    t.finish(p);
    Some(AccessTarget {
        integration: integration?,
        resource_type: rtype?,
        permissions: permissions?,
        resources: resources?,
    })
}

fn scope(
    p: &mut Problems,
    path: &str,
    v: &Value,
    rtype: Option<ResourceType>,
) -> Option<ResourceScope> {
    let mut t = Table::open(p, path, v)?;
    let (fp, f) = t.get("scope_mode");
    let mode = required(p, &fp, f).and_then(|v| word(p, &fp, v, ScopeMode::ALL, ScopeMode::as_str));
    let (fp, f) = t.get("by");
    let by = required(p, &fp, f).and_then(|v| word(p, &fp, v, ScopeBy::ALL, ScopeBy::as_str));
    let (kp, k) = t.get("key");
    let key = match (by, k) {
        (Some(ScopeBy::Tag), None) => {
            problem(p, &kp, "is required with by = \"tag\": name the tag");
            None
        }
        (Some(ScopeBy::Tag), Some(v)) => text(p, &kp, v).map(Some),
        (Some(by), Some(_)) => {
            problem(
                p,
                &kp,
                format!("only by = \"tag\" takes a key: remove it (by = \"{by}\")"),
            );
            None
        }
        (_, _) => Some(None),
    };
    let (fp, f) = t.get("values");
    let values = required(p, &fp, f).and_then(|v| texts(p, &fp, v, "list at least one value"));
    if let (Some(by), Some(rt), Some(values)) = (by, rtype, &values) {
        for (i, value) in values.iter().enumerate() {
            if let Some(why) = never_matches(by, rt, value) {
                problem(p, &index(&fp, i), why);
            }
        }
    }
    t.finish(p);
    Some(ResourceScope {
        scope_mode: mode?,
        by: by?,
        key: key?,
        values: values?,
    })
}

/// The number of names in a path of `rt`, and how it is written.
fn path_shape(rt: ResourceType) -> (usize, &'static str) {
    match rt {
        ResourceType::Database => (1, "database"),
        ResourceType::Schema => (2, "database/schema"),
        ResourceType::Table => (3, "database/schema/table"),
        ResourceType::Role => (1, "role"),
    }
}

/// Why a name or id pattern can never match a resource of type `rt`.
fn never_matches(by: ScopeBy, rt: ResourceType, pattern: &str) -> Option<String> {
    let (parts, shape) = path_shape(rt);
    match by {
        ScopeBy::Tag => None,
        ScopeBy::Name => {
            let n = pattern.split('/').count();
            (pattern.contains('/') && n != parts).then(|| {
                format!(
                    "\"{pattern}\" has {n} parts but a {rt} path has {parts} ({shape}): write a name without / or a whole path"
                )
            })
        }
        ScopeBy::Id => {
            let prefix = format!("postgresql-{rt}:");
            match pattern.split_once(':') {
                Some((kind, _)) if kind.contains('*') => None,
                Some((_, path)) if pattern.starts_with(&prefix) => {
                    let n = path.split('/').count();
                    (n != parts).then(|| {
                        format!(
                            "\"{pattern}\" has {n} parts but a {rt} id has {parts} ({prefix}{shape}); * does not match /"
                        )
                    })
                }
                _ => Some(format!(
                    "\"{pattern}\" never matches: ids of this target's resources are written {prefix}{shape}"
                )),
            }
        }
    }
}

fn timeframe(p: &mut Problems, path: &str, v: &Value) -> Option<Timeframe> {
    let mut t = Table::open(p, path, v)?;
    let (fp, f) = t.get("days_of_week");
    let days = f.map_or(Some(Weekday::ALL.to_vec()), |v| {
        let items = list(
            p,
            &fp,
            v,
            "list at least one day, or leave days_of_week out for every day",
        )?;
        let before = p.len();
        let mut days = Vec::new();
        for (i, d) in items.iter().enumerate() {
            if let Some(d) = word(p, &index(&fp, i), d, Weekday::ALL, Weekday::as_str)
                && !days.contains(&d)
            {
                days.push(d);
            }
        }
        days.sort();
        (p.len() == before).then_some(days)
    });
    let mut time = |p: &mut Problems, key: &'static str| {
        let (fp, f) = t.get(key);
        let s = required(p, &fp, f).and_then(|v| text(p, &fp, v))?;
        match s.parse::<TimeOfDay>() {
            Ok(t) => Some((fp, t)),
            Err(e) => {
                problem(p, &fp, e);
                None
            }
        }
    };
    let start = time(p, "start_time");
    let end = time(p, "end_time");
    if let Some((sp, s)) = &start
        && *s == TimeOfDay::END_OF_DAY
    {
        problem(p, sp, "24:00 ends a day: start at 00:00 instead");
    }
    if let (Some(_), Some((ep, e))) = (&start, &end)
        && start.as_ref().is_some_and(|(_, s)| s == e)
    {
        problem(
            p,
            ep,
            "equals start_time, which leaves no time: an end before the start is an overnight window, 00:00-24:00 the whole day",
        );
    }
    let (fp, f) = t.get("time_zone");
    let time_zone = required(p, &fp, f)
        .and_then(|v| text(p, &fp, v))
        .and_then(|name| match zone(&name) {
            Ok(tz) => Some(tz.iana_name().map_or(name, str::to_owned)),
            Err(e) => {
                problem(p, &fp, e);
                None
            }
        });
    t.finish(p);
    Some(Timeframe {
        days_of_week: days?,
        start_time: start?.1,
        end_time: end?.1,
        time_zone: time_zone?,
    })
}

fn policy(p: &mut Problems, path: &str, v: &Value) -> Option<ApproverPolicy> {
    let mut t = Table::open(p, path, v)?;
    let (gp, g) = t.get("approver_groups");
    let count = g.and_then(Value::as_array).map_or(0, Vec::len);
    let groups = g.map_or(Some(Vec::new()), |v| each(p, &gp, v, "", group));
    let mode = combinator(
        p,
        t.get("approval_mode"),
        count,
        ApprovalMode::ALL,
        ApprovalMode::as_str,
        ApprovalMode::AnyOf,
    );
    t.finish(p);
    Some(ApproverPolicy {
        approval_mode: mode?,
        approver_groups: groups?,
    })
}

fn group(p: &mut Problems, path: &str, v: &Value) -> Option<ApproverGroup> {
    let mut t = Table::open(p, path, v)?;
    let (operator, approvers) = combined(
        p,
        &mut t,
        "approvers",
        "list at least one approver",
        approver,
    );
    t.finish(p);
    Some(ApproverGroup {
        logical_operator: operator?,
        approvers: approvers?,
    })
}

/// The non-empty list `key` of `t`, each item read by `item` (`None` when any has a
/// problem), and the `logical_operator` combining them (required with more than one).
fn combined<T>(
    p: &mut Problems,
    t: &mut Table<'_>,
    key: &'static str,
    empty: &str,
    item: fn(&mut Problems, &str, &Value) -> Option<T>,
) -> (Option<LogicalOperator>, Option<Vec<T>>) {
    let (lp, l) = t.get(key);
    let count = l.and_then(Value::as_array).map_or(0, Vec::len);
    let items = required(p, &lp, l).and_then(|v| each(p, &lp, v, empty, item));
    let operator = combinator(
        p,
        t.get("logical_operator"),
        count,
        LogicalOperator::ALL,
        LogicalOperator::as_str,
        LogicalOperator::And,
    );
    (operator, items)
}

fn approver(p: &mut Problems, path: &str, v: &Value) -> Option<ApproverRule> {
    let mut t = Table::open(p, path, v)?;
    let kind = subject_fields(p, &mut t, ApproverType::ALL, ApproverType::as_str);
    if kind == Some(ApproverType::Owner) {
        for key in ["source", "match_operator", "values"] {
            if let (fp, Some(_)) = t.get(key) {
                problem(
                    p,
                    &fp,
                    "owners come from the integration's owner resolution: remove it",
                );
            }
        }
        t.finish(p);
        return Some(ApproverRule {
            approver: ApproverType::Owner,
            source: None,
            match_operator: MatchOperator::Is,
            values: Vec::new(),
        });
    }
    let (fp, f) = t.get("source");
    let source = required(p, &fp, f).and_then(|v| text(p, &fp, v));
    let match_operator = operator(p, &mut t);
    let (fp, f) = t.get("values");
    let values = required(p, &fp, f).and_then(|v| texts(p, &fp, v, "list at least one value"));
    t.finish(p);
    Some(ApproverRule {
        approver: kind?,
        source: Some(source?),
        match_operator: match_operator?,
        values: values?,
    })
}

fn settings(
    p: &mut Problems,
    path: &str,
    v: Option<&Value>,
    trigger: Trigger,
) -> Option<FlowSettings> {
    let automatic = trigger == Trigger::Automatic;
    let empty = Value::Object(Map::new());
    let mut t = Table::open(p, path, v.unwrap_or(&empty))?;
    let mut flag = |p: &mut Problems, key: &'static str, default: bool| {
        let (fp, f) = t.get(key);
        f.map_or(Some(default), |v| boolean(p, &fp, v))
    };
    let justification_required = flag(p, "justification_required", !automatic);
    let requester_cannot_approve_self = flag(p, "requester_cannot_approve_self", true);
    let approver_reason_required = flag(p, "approver_reason_required", false);
    let review_required = flag(p, "review_required", false);
    if review_required == Some(true) && !automatic {
        problem(
            p,
            &join(path, "review_required"),
            "only automatic flows are reviewed after the fact: remove it, or use trigger = \"automatic\"",
        );
    }
    let (fp, f) = t.get("labels");
    let labels = f.map_or(Some(Vec::new()), |v| texts(p, &fp, v, ""));
    t.finish(p);
    Some(FlowSettings {
        justification_required: justification_required?,
        requester_cannot_approve_self: requester_cannot_approve_self?,
        approver_reason_required: approver_reason_required?,
        labels: labels?,
        review_required: review_required?,
    })
}

/// The session limits: each setting read alone (so one bad setting does not hide the
/// next), then all together, then their own checks.
fn session(p: &mut Problems, path: &str, v: &Value) -> Option<SessionLimits> {
    let Value::Object(map) = v else {
        problem(p, path, format!("must be a table, not {}", type_name(v)));
        return None;
    };
    let before = p.len();
    for (key, value) in map {
        let alone = Value::Object(Map::from_iter([(key.clone(), value.clone())]));
        if let Err(e) = serde_json::from_value::<SessionLimits>(alone) {
            let message = e.to_string();
            let message = match message.split_once(", expected one of ") {
                Some((_, valid)) if message.starts_with("unknown field") => {
                    format!("unknown field (valid fields: {})", valid.replace('`', ""))
                }
                _ => message,
            };
            problem(p, &join(path, key), message);
        }
    }
    if p.len() > before {
        return None;
    }
    match serde_json::from_value::<SessionLimits>(v.clone()) {
        Ok(limits) => {
            p.extend(limits.problems(path, None));
            (p.len() == before).then_some(limits)
        }
        Err(e) => {
            problem(p, path, e.to_string());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_that_never_match_are_named() {
        let t = ResourceType::Table;
        assert_eq!(never_matches(ScopeBy::Name, t, "inv*"), None);
        assert_eq!(never_matches(ScopeBy::Name, t, "app/billing/*"), None);
        assert!(never_matches(ScopeBy::Name, t, "billing/*").is_some());
        assert_eq!(
            never_matches(ScopeBy::Id, t, "postgresql-table:app/*/t"),
            None
        );
        assert_eq!(never_matches(ScopeBy::Id, t, "*:app/s/t"), None);
        assert!(never_matches(ScopeBy::Id, t, "postgresql-table:app/*").is_some());
        assert!(never_matches(ScopeBy::Id, t, "postgresql-schema:app/s").is_some());
        assert!(never_matches(ScopeBy::Id, t, "invoices").is_some());
        assert_eq!(never_matches(ScopeBy::Tag, t, "a/b/c/d"), None);
    }

    #[test]
    fn combinators_are_required_only_for_several_entries() {
        let mut p = Problems::new();
        let got = combinator(
            &mut p,
            ("x.logical_operator".into(), None),
            1,
            LogicalOperator::ALL,
            LogicalOperator::as_str,
            LogicalOperator::And,
        );
        assert_eq!((got, p.len()), (Some(LogicalOperator::And), 0));
        let got = combinator(
            &mut p,
            ("x.logical_operator".into(), None),
            2,
            LogicalOperator::ALL,
            LogicalOperator::as_str,
            LogicalOperator::And,
        );
        assert_eq!(got, None);
        assert!(p[0].message.contains("and or or"), "{p:?}");
    }

    #[test]
    fn a_flow_reads_its_defaults() {
        let doc = serde_json::json!({
            "name": "f", "trigger": "automatic", "grant_duration": "1h",
            "requestors": {"conditions": [{"type": "user", "source": "okta", "values": ["a"]}]},
            "access_targets": [{"integration": "i", "resource_type": "role", "permissions": ["member"]}],
        });
        let mut p = Problems::new();
        let f = flow(&mut p, "", &doc).unwrap();
        assert!(p.is_empty());
        assert!(f.active && !f.settings.justification_required);
        assert!(f.settings.requester_cannot_approve_self && !f.settings.review_required);
        assert_eq!(f.requestors.conditions[0].match_operator, MatchOperator::Is);
        assert!(f.approver_policy.is_empty() && f.session.is_empty() && f.timeframe.is_none());
        // Not a table at all.
        assert!(flow(&mut p, "flows[0]", &serde_json::json!(3)).is_none());
        assert_eq!(p[0].field, "flows[0]");
    }
}
