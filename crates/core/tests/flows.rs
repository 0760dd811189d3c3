//! Access flows: loading in every format, validation with every problem, evaluation
//! against real directories and tag sources, approver policies.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use pgwarden_core::config::{ConfigError, ConfigFormat};
use pgwarden_core::flows::{
    AccessFlow, ApprovalRefused, ApprovalVote, Decision, FlowEvaluator, FlowRequest, FlowSet,
    Mismatch, Trigger,
};
use pgwarden_core::owners::{
    Directory, DirectoryError, InMemoryDirectory, IntegrationOwner, OwnerAttribute, OwnerResolver,
    Person, ResourceOwnerSetting,
};
use pgwarden_core::resource::{AccessEntry, ResourceId};
use pgwarden_core::tags::InMemoryTagSource;
use time::OffsetDateTime;
use time::macros::datetime;

const RO: &str = r#"
name = "billing-ro"
trigger = "self_serve"
grant_duration = "4h"

[requestors]
logical_operator = "or"
conditions = [
    { type = "group", source = "okta", match_operator = "is", values = ["analysts"] },
    { type = "user", source = "okta", match_operator = "starts_with", values = ["admin-"] },
]

[[access_targets]]
integration = "orders"
resource_type = "postgresql-table"
permissions = ["read-only", "select"]
resources = [
    { scope_mode = "include", by = "name", values = ["app/billing/*"] },
    { scope_mode = "exclude", by = "tag", key = "pii", values = ["true"] },
]

[approver_policy]
approver_groups = [{ approvers = [{ type = "owner" }] }]

[settings]
labels = ["billing"]
"#;

fn toml(text: &str) -> FlowSet {
    FlowSet::parse(text, ConfigFormat::Toml).unwrap_or_else(|e| panic!("{e}"))
}

fn problems(err: &ConfigError) -> Vec<String> {
    err.problems().iter().map(|p| p.field.clone()).collect()
}

fn entry(s: &str) -> AccessEntry {
    s.parse().unwrap()
}

/// A directory whose memberships change while the evaluator holds it: the real
/// in-memory directory, swapped under a lock.
#[derive(Debug)]
struct Changing(RwLock<InMemoryDirectory>);

impl Changing {
    fn set(&self, dir: InMemoryDirectory) {
        *self.0.write().unwrap() = dir;
    }

    fn now(&self) -> InMemoryDirectory {
        self.0.read().unwrap().clone()
    }
}

#[async_trait]
impl Directory for Changing {
    fn name(&self) -> &'static str {
        "okta"
    }

    async fn user(&self, id: &str) -> Result<Option<Person>, DirectoryError> {
        self.now().user(id).await
    }

    async fn group_members(&self, group: &str) -> Result<Option<Vec<Person>>, DirectoryError> {
        self.now().group_members(group).await
    }

    async fn user_groups(&self, id: &str) -> Result<Option<Vec<String>>, DirectoryError> {
        self.now().user_groups(id).await
    }
}

/// A directory that knows nobody and cannot list anyone's groups (the trait's default).
#[derive(Debug)]
struct NoGroups;
#[async_trait]
impl Directory for NoGroups {
    fn name(&self) -> &'static str {
        "okta"
    }
    async fn user(&self, _: &str) -> Result<Option<Person>, DirectoryError> {
        Ok(None)
    }
    async fn group_members(&self, _: &str) -> Result<Option<Vec<Person>>, DirectoryError> {
        Ok(None)
    }
}

fn okta() -> InMemoryDirectory {
    InMemoryDirectory::new("okta")
        .with_group("analysts", &["alice", "erin"])
        .with_group("payments", &["bob", "erin"])
        .with_group("dba", &["carol", "dave"])
        .with_group("oncall-eu", &["olga"])
        .with_user("admin-zed")
}

fn evaluator(tags: Arc<InMemoryTagSource>) -> FlowEvaluator {
    FlowEvaluator::new(vec![Arc::new(okta()) as Arc<dyn Directory>], tags)
}

fn request<'a>(requester: &'a str, access: &'a [AccessEntry]) -> FlowRequest<'a> {
    FlowRequest {
        integration: "orders",
        requester,
        access,
        duration: "1h".parse().unwrap(),
        justification: Some("ticket 42"),
        at: OffsetDateTime::now_utc(),
    }
}

fn refused(d: &Decision) -> Vec<Vec<Mismatch>> {
    match d {
        Decision::Refused { flows, .. } => flows.iter().map(|f| f.reasons.clone()).collect(),
        Decision::Matched { flow, .. } => panic!("matched {flow}"),
    }
}

#[test]
fn every_format_reads_the_same_flow() {
    let from_toml = toml(RO);
    let flow = &from_toml.flows()[0];
    assert_eq!(flow.name, "billing-ro");
    assert!(flow.active);
    assert_eq!(flow.trigger, Trigger::SelfServe);
    assert!(flow.settings.justification_required);
    assert!(flow.settings.requester_cannot_approve_self);
    assert!(flow.approval_required());

    // The same flow as JSON (serialized back) in a `flows` list, and as YAML.
    let json = serde_json::json!({ "flows": [serde_json::to_value(flow).unwrap()] });
    let from_json = FlowSet::parse(&json.to_string(), ConfigFormat::Json).unwrap();
    assert_eq!(from_json, from_toml);
    let yaml = serde_yaml_ng::to_string(&serde_json::to_value(flow).unwrap()).unwrap();
    let from_yaml = FlowSet::parse(&yaml, ConfigFormat::Yaml).unwrap();
    assert_eq!(from_yaml, from_toml);

    // A top-level list, and [[flows]] in TOML.
    let list = serde_json::json!([serde_json::to_value(flow).unwrap()]);
    assert_eq!(
        FlowSet::parse(&list.to_string(), ConfigFormat::Json).unwrap(),
        from_toml
    );
    let many = toml(
        r#"
        [[flows]]
        name = "a"
        trigger = "automatic"
        grant_duration = "1h"
        requestors.conditions = [{ type = "user", source = "okta", values = ["olga"] }]
        access_targets = [{ integration = "orders", resource_type = "database", permissions = ["connect"] }]
        [[flows]]
        name = "b"
        trigger = "automatic"
        grant_duration = "1h"
        requestors.conditions = [{ type = "user", source = "okta", values = ["olga"] }]
        access_targets = [{ integration = "other", resource_type = "database", permissions = ["connect"] }]
        "#,
    );
    assert_eq!(many.len(), 2);
    assert!(!many.flows()[0].settings.justification_required);
    assert_eq!(
        many.for_integration("orders")
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );
}

/// A flow with a mistake in nearly every field.
const MISTAKES: &str = r#"
        trigger = "sometimes"
        grant_duration = "forever"
        colour = "blue"
        [requestors]
        conditions = [
            { type = "user", source = "okta", match_operator = "like", values = [] },
            { type = "team", source = "", values = ["x"] },
        ]
        [[access_targets]]
        integration = "orders"
        resource_type = "postgresql-table"
        permissions = ["read-only", "member"]
        resources = [
            { scope_mode = "include", by = "tag", values = ["x"] },
            { scope_mode = "exclude", by = "name", key = "k", values = ["a/b"] },
            { scope_mode = "include", by = "id", values = ["postgresql-schema:app/s"] },
        ]
        [[access_targets]]
        resource_type = "postgresql-tabel"
        permissions = []
        [timeframe]
        days_of_week = ["monday", "caturday"]
        start_time = "9:00"
        end_time = "18:00"
        time_zone = "Mars/Olympus"
        [approver_policy]
        approver_groups = [
            { approvers = [{ type = "owner", source = "okta" }] },
            { approvers = [{ type = "user", values = ["bob"] }, { type = "user", source = "okta", values = ["carol"] }] },
        ]
        [settings]
        review_required = true
        justification_required = "yes"
        [session]
        statement_timeout = "soon"
        work_mem = "1GB"
        "#;

#[test]
fn every_mistake_is_reported_with_its_path() {
    let err = FlowSet::parse(MISTAKES, ConfigFormat::Toml).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("invalid access flows ("), "{text}");
    let mut fields = problems(&err);
    fields.sort();
    let mut want = vec![
        "name",
        "colour",
        "trigger",
        "grant_duration",
        "requestors.conditions[0].match_operator",
        "requestors.conditions[0].values",
        "requestors.conditions[1].type",
        "requestors.conditions[1].source",
        "requestors.logical_operator",
        "access_targets[0].permissions[1]",
        "access_targets[0].resources[0].key",
        "access_targets[0].resources[1].key",
        "access_targets[0].resources[1].values[0]",
        "access_targets[0].resources[2].values[0]",
        "access_targets[1].integration",
        "access_targets[1].resource_type",
        "access_targets[1].permissions",
        "timeframe.days_of_week[1]",
        "timeframe.start_time",
        "timeframe.time_zone",
        "approver_policy.approver_groups[0].approvers[0].source",
        "approver_policy.approver_groups[1].approvers[0].source",
        "approver_policy.approver_groups[1].logical_operator",
        "approver_policy.approval_mode",
        "settings.review_required",
        "settings.justification_required",
        "session.statement_timeout",
        "session.work_mem",
    ];
    want.sort_unstable();
    assert_eq!(fields, want, "{text}");
    // Messages say what to fix.
    let p = err.problems();
    let msg = |field: &str| {
        p.iter()
            .find(|p| p.field == field)
            .map(|p| p.message.clone())
            .unwrap()
    };
    assert!(
        msg("colour").contains("valid fields: name, active"),
        "{text}"
    );
    assert!(msg("trigger").contains("self_serve, automatic"), "{text}");
    assert!(
        msg("access_targets[0].permissions[1]").contains("member"),
        "{text}"
    );
    assert!(
        msg("timeframe.time_zone").contains("Europe/Paris"),
        "{text}"
    );
    assert!(
        msg("session.work_mem").contains("statement_timeout"),
        "{text}"
    );
    assert!(
        msg("access_targets[0].resources[2].values[0]").contains("postgresql-table:"),
        "{text}"
    );
}

#[test]
fn semantic_rules_are_checked() {
    let base = |extra: &str| {
        format!(
            r#"
            name = "f"
            grant_duration = "1h"
            requestors.conditions = [{{ type = "user", source = "okta", values = ["olga"] }}]
            access_targets = [{{ integration = "orders", resource_type = "postgresql-database", permissions = ["connect"] }}]
            {extra}
            "#
        )
    };
    let err = |extra: &str| {
        let e = FlowSet::parse(&base(extra), ConfigFormat::Toml).unwrap_err();
        problems(&e)
    };
    // Automatic flows take no approver policy; review only for automatic ones.
    assert_eq!(
        err(
            "trigger = \"automatic\"\napprover_policy.approver_groups = [{ approvers = [{ type = \"owner\" }] }]"
        ),
        ["approver_policy"]
    );
    assert_eq!(
        err("trigger = \"self_serve\"\nsettings.review_required = true"),
        ["settings.review_required"]
    );
    // Windows: the end equal to the start is empty; 24:00 only ends a day.
    assert_eq!(
        err(
            "trigger = \"self_serve\"\ntimeframe = { start_time = \"09:00\", end_time = \"09:00\", time_zone = \"UTC\" }"
        ),
        ["timeframe.end_time"]
    );
    assert_eq!(
        err(
            "trigger = \"self_serve\"\ntimeframe = { start_time = \"24:00\", end_time = \"09:00\", time_zone = \"UTC\" }"
        ),
        ["timeframe.start_time"]
    );
    // Explicit justification on an automatic flow, an overnight window, a self-serve
    // flow without approvers: all valid.
    let set = toml(&base(
        "trigger = \"automatic\"\nsettings.justification_required = true\ntimeframe = { days_of_week = [\"friday\"], start_time = \"22:00\", end_time = \"06:00\", time_zone = \"europe/paris\" }",
    ));
    let flow = &set.flows()[0];
    assert!(flow.settings.justification_required);
    assert_eq!(flow.timeframe.as_ref().unwrap().time_zone, "Europe/Paris");
    let set = toml(&base("trigger = \"self_serve\""));
    assert!(!set.flows()[0].approval_required());
    // Duplicate names.
    let one = serde_json::to_value(&set.flows()[0]).unwrap();
    let twice = serde_json::json!({ "flows": [one, one] });
    let e = FlowSet::parse(&twice.to_string(), ConfigFormat::Json).unwrap_err();
    assert_eq!(problems(&e), ["flows[1].name"]);
    assert!(e.to_string().contains("flows[0].name"), "{e}");
}

#[test]
fn a_directory_is_every_flow_file_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("b.toml", RO);
    write(
        "a.json",
        r#"{"name": "oncall", "trigger": "automatic", "grant_duration": "1h",
            "requestors": {"conditions": [{"type": "group", "source": "okta", "values": ["oncall-eu"]}]},
            "access_targets": [{"integration": "orders", "resource_type": "postgresql-database", "permissions": ["admin"]}],
            "settings": {"review_required": true}}"#,
    );
    write("notes.md", "not a flow");
    let set = FlowSet::load(dir.path()).unwrap();
    assert_eq!(
        set.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        ["oncall", "billing-ro"]
    );
    // One file alone.
    assert_eq!(FlowSet::load(dir.path().join("b.toml")).unwrap().len(), 1);

    // Problems carry their file; a broken file does not hide the others' problems.
    write("c.yaml", "name: billing-ro\ntrigger: automatic\n");
    write("d.json", "{ not json");
    let err = FlowSet::load(dir.path()).unwrap_err();
    let fields = problems(&err);
    assert!(fields.contains(&"c.yaml: requestors".to_owned()), "{err}");
    assert!(
        fields.contains(&"c.yaml: grant_duration".to_owned()),
        "{err}"
    );
    assert!(fields.contains(&"d.json".to_owned()), "{err}");

    let dup = tempfile::tempdir().unwrap();
    std::fs::write(dup.path().join("one.toml"), RO).unwrap();
    std::fs::write(dup.path().join("two.toml"), RO).unwrap();
    let err = FlowSet::load(dup.path()).unwrap_err();
    assert_eq!(problems(&err), ["two.toml: name"]);
    assert!(err.to_string().contains("one.toml: name"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    assert_eq!(FlowSet::load(empty.path()).unwrap_err().problems().len(), 1);
}

#[tokio::test]
async fn a_request_matches_the_first_covering_flow() {
    let set = toml(RO);
    let tags = Arc::new(InMemoryTagSource::new());
    let ev = evaluator(tags);
    let access = [entry("postgresql-table:app/billing/invoices=select")];
    let d = ev.evaluate(&set, &request("alice", &access)).await.unwrap();
    let Decision::Matched {
        flow,
        approval_required,
        max_duration,
        labels,
        ..
    } = &d
    else {
        panic!("{d}")
    };
    assert_eq!(flow, "billing-ro");
    assert!(approval_required);
    assert_eq!(max_duration.to_string(), "4h");
    assert_eq!(labels, &["billing"]);
    assert!(d.to_string().contains("waiting for approval"), "{d}");
    // The `or` requestors: a user id prefix also qualifies.
    assert!(
        ev.evaluate(&set, &request("admin-zed", &access))
            .await
            .unwrap()
            .is_matched()
    );
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["decision"], "matched");
    assert_eq!(json["trigger"], "self_serve");
}

/// A set where each flow fails for its own reasons.
const MANY: &str = r#"
[[flows]]
name = "off"
active = false
trigger = "self_serve"
grant_duration = "1h"
requestors.conditions = [{ type = "user", source = "okta", values = ["alice"] }]
access_targets = [{ integration = "orders", resource_type = "postgresql-table", permissions = ["select"] }]

[[flows]]
name = "strict"
trigger = "self_serve"
grant_duration = "30m"
requestors.logical_operator = "and"
requestors.conditions = [
    { type = "group", source = "okta", values = ["dba"] },
    { type = "group", source = "azure", values = ["admins"] },
]
timeframe = { days_of_week = ["monday"], start_time = "09:00", end_time = "10:00", time_zone = "Asia/Tokyo" }

[[flows.access_targets]]
integration = "orders"
resource_type = "postgresql-table"
permissions = ["read-only"]
resources = [
    { scope_mode = "include", by = "id", values = ["postgresql-table:app/*/inv*"] },
    { scope_mode = "exclude", by = "tag", key = "pii", values = ["true"] },
]

[[flows]]
name = "elsewhere"
trigger = "automatic"
grant_duration = "1h"
requestors.conditions = [{ type = "user", source = "okta", values = ["alice"] }]
access_targets = [{ integration = "reports", resource_type = "postgresql-database", permissions = ["connect"] }]
"#;

#[tokio::test]
async fn every_reason_of_every_flow_is_reported() {
    let set = toml(MANY);
    let tags = Arc::new(InMemoryTagSource::new());
    tags.set_comment(ResourceId::schema("app", "hr"), "pii=true");
    let ev = evaluator(tags);
    let access = [
        entry("postgresql-table:app/billing/invoices=select"),
        entry("postgresql-table:app/hr/invoices=read-only"),
        entry("postgresql-table:app/billing/orders=read-only"),
    ];
    let mut req = request("alice", &access);
    req.duration = "2h".parse().unwrap();
    req.justification = Some("  ");
    // Sunday 2025-01-05 12:00 UTC is 21:00 in Tokyo.
    req.at = datetime!(2025-01-05 12:00 UTC);
    let d = ev.evaluate(&set, &req).await.unwrap();
    let reasons = refused(&d);
    // "elsewhere" is not a flow of integration orders: not listed.
    assert_eq!(reasons.len(), 2, "{d}");
    assert_eq!(
        reasons[0],
        [
            Mismatch::Inactive,
            Mismatch::PermissionNotOffered {
                resource: ResourceId::table("app", "hr", "invoices"),
                level: "read-only".parse().unwrap(),
                offered: vec!["select".parse().unwrap()],
            },
            Mismatch::PermissionNotOffered {
                resource: ResourceId::table("app", "billing", "orders"),
                level: "read-only".parse().unwrap(),
                offered: vec!["select".parse().unwrap()],
            },
            Mismatch::DurationOverLimit {
                asked: "2h".parse().unwrap(),
                max: "1h".parse().unwrap(),
            },
            Mismatch::JustificationMissing,
        ]
    );
    let strict = &reasons[1];
    assert!(
        matches!(&strict[0], Mismatch::RequesterNotAllowed { condition, .. } if condition.starts_with("requestors.conditions[0]")),
        "{d}"
    );
    assert!(
        matches!(&strict[1], Mismatch::DirectoryUnavailable { source, .. } if source == "azure"),
        "{d}"
    );
    assert_eq!(
        strict[2],
        Mismatch::PermissionNotOffered {
            resource: ResourceId::table("app", "billing", "invoices"),
            level: "select".parse().unwrap(),
            offered: vec!["read-only".parse().unwrap()],
        }
    );
    assert!(
        matches!(&strict[3], Mismatch::ResourceExcluded { resource, scope }
            if *resource == ResourceId::table("app", "hr", "invoices") && scope.starts_with("access_targets[0].resources[1]")),
        "{d}"
    );
    assert_eq!(
        strict[4],
        Mismatch::ResourceNotIncluded {
            resource: ResourceId::table("app", "billing", "orders")
        }
    );
    assert!(matches!(&strict[5], Mismatch::DurationOverLimit { .. }));
    assert_eq!(
        strict[6],
        Mismatch::OutsideTimeframe {
            now: "sunday 21:00".into(),
            window: "monday, 09:00-10:00 (Asia/Tokyo)".into(),
        }
    );
    assert_eq!(strict[7], Mismatch::JustificationMissing);
    assert_eq!(strict.len(), 8, "{d}");

    // Human output names each flow and says what to do; JSON tags each reason.
    let text = d.to_string();
    assert!(text.contains("flow \"strict\":"), "{text}");
    assert!(text.contains("register one with the evaluator"), "{text}");
    assert!(text.contains("ask for 1h or less"), "{text}");
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["decision"], "refused");
    assert_eq!(
        json["flows"][1]["reasons"][6]["reason"],
        "outside_timeframe"
    );
    assert_eq!(
        json["flows"][1]["reasons"][3]["resource"],
        "postgresql-table:app/hr/invoices"
    );
}

#[tokio::test]
async fn other_integrations_and_empty_requests_are_explained() {
    let set = toml(MANY);
    let ev = evaluator(Arc::new(InMemoryTagSource::new()));
    let access = [entry("postgresql-table:app/billing/invoices=select")];
    let req = request("alice", &access);
    // One flow checked alone: another integration, or nothing asked for.
    let elsewhere = set.flows().iter().find(|f| f.name == "elsewhere").unwrap();
    let r = ev.check(elsewhere, &req).await.unwrap();
    assert!(
        matches!(&r[..], [Mismatch::OtherIntegration { covers, .. }] if covers == &["reports"]),
        "{r:?}"
    );
    let mut reports = request("alice", &[]);
    reports.integration = "reports";
    assert_eq!(
        ev.check(elsewhere, &reports).await.unwrap(),
        [Mismatch::NothingRequested]
    );

    // No flow on the integration at all.
    let mut none = request("alice", &access);
    none.integration = "billing";
    let d = ev.evaluate(&set, &none).await.unwrap();
    assert!(refused(&d).is_empty());
    assert!(
        d.to_string()
            .contains("no access flow offers anything on integration billing")
    );
}

#[tokio::test]
async fn group_membership_is_read_at_each_evaluation() {
    let set = toml(RO);
    let dir = Arc::new(Changing(RwLock::new(okta())));
    let ev = FlowEvaluator::new(
        vec![dir.clone() as Arc<dyn Directory>],
        Arc::new(InMemoryTagSource::new()),
    );
    let access = [entry("postgresql-table:app/billing/invoices=read-only")];
    let req = request("mallory", &access);
    let reasons = refused(&ev.evaluate(&set, &req).await.unwrap());
    assert!(
        matches!(
            &reasons[0][..],
            [
                Mismatch::RequesterNotAllowed { .. },
                Mismatch::RequesterNotAllowed { .. }
            ]
        ),
        "{reasons:?}"
    );
    dir.set(okta().with_group("analysts", &["alice", "mallory"]));
    assert!(ev.evaluate(&set, &req).await.unwrap().is_matched());
    dir.set(okta());
    assert!(!ev.evaluate(&set, &req).await.unwrap().is_matched());
}

#[tokio::test]
async fn group_operators_use_the_users_groups() {
    let flows = |op: &str, values: &str| {
        toml(&format!(
            r#"
            name = "f"
            trigger = "automatic"
            grant_duration = "1h"
            requestors.conditions = [{{ type = "group", source = "okta", match_operator = "{op}", values = {values} }}]
            access_targets = [{{ integration = "orders", resource_type = "postgresql-database", permissions = ["connect"] }}]
            "#
        ))
    };
    let ev = evaluator(Arc::new(InMemoryTagSource::new()));
    let access = [entry("postgresql-database:app=connect")];
    let ok = async |set: &FlowSet, who: &str| {
        ev.evaluate(set, &request(who, &access))
            .await
            .unwrap()
            .is_matched()
    };
    let oncall = flows("starts_with", r#"["oncall-"]"#);
    assert!(ok(&oncall, "olga").await);
    assert!(!ok(&oncall, "alice").await);
    let not_dba = flows("is_not", r#"["dba"]"#);
    assert!(ok(&not_dba, "alice").await);
    assert!(!ok(&not_dba, "carol").await);
    let no_pay = flows("does_not_contain", r#"["pay"]"#);
    assert!(ok(&no_pay, "alice").await);
    assert!(!ok(&no_pay, "erin").await);
    // A directory that cannot list a user's groups leaves the condition unmet, saying why.
    let limited = FlowEvaluator::new(vec![Arc::new(NoGroups)], Arc::new(InMemoryTagSource::new()));
    let d = limited
        .evaluate(&oncall, &request("olga", &access))
        .await
        .unwrap();
    assert!(
        matches!(&refused(&d)[0][..], [Mismatch::RequesterNotAllowed { note: Some(n), .. }] if n.contains("does not list the groups")),
        "{d}"
    );
}

#[tokio::test]
async fn tags_are_inherited_and_exclude_wins() {
    let set = toml(RO);
    let tags = Arc::new(InMemoryTagSource::new());
    let ev = evaluator(tags.clone());
    let invoices = [entry("postgresql-table:app/billing/invoices=read-only")];
    let cards = [entry("postgresql-table:app/billing/cards=read-only")];
    tags.set_comment(ResourceId::table("app", "billing", "cards"), "pii=true");
    assert!(
        ev.evaluate(&set, &request("alice", &invoices))
            .await
            .unwrap()
            .is_matched()
    );
    assert!(matches!(
        &refused(&ev.evaluate(&set, &request("alice", &cards)).await.unwrap())[0][..],
        [Mismatch::ResourceExcluded { .. }]
    ));
    // Tagging the schema (or the database) excludes every table in it, at once.
    tags.set_comment(ResourceId::database("app"), "pii=true");
    assert!(
        !ev.evaluate(&set, &request("alice", &invoices))
            .await
            .unwrap()
            .is_matched()
    );
    // The nearest tag wins: a table marked pii=false is offered again.
    tags.set_comment(ResourceId::table("app", "billing", "invoices"), "pii=false");
    assert!(
        ev.evaluate(&set, &request("alice", &invoices))
            .await
            .unwrap()
            .is_matched()
    );

    // Include by tag, with wildcards and comma lists.
    let by_tag = toml(
        r#"
        name = "team"
        trigger = "automatic"
        grant_duration = "1h"
        requestors.conditions = [{ type = "user", source = "okta", values = ["alice"] }]
        [[access_targets]]
        integration = "orders"
        resource_type = "postgresql-schema"
        permissions = ["read-only"]
        resources = [{ scope_mode = "include", by = "tag", key = "team", values = ["core*"] }]
        "#,
    );
    tags.set_comment(ResourceId::schema("app", "s1"), "team=payments,core-eu");
    let s = |name: &str| [entry(&format!("postgresql-schema:app/{name}=read-only"))];
    assert!(
        ev.evaluate(&by_tag, &request("alice", &s("s1")))
            .await
            .unwrap()
            .is_matched()
    );
    assert!(
        !ev.evaluate(&by_tag, &request("alice", &s("s2")))
            .await
            .unwrap()
            .is_matched()
    );
}

#[tokio::test]
async fn wildcards_do_not_cross_slashes() {
    let set = toml(
        r#"
        name = "w"
        trigger = "automatic"
        grant_duration = "1h"
        requestors.conditions = [{ type = "user", source = "okta", values = ["alice"] }]
        [[access_targets]]
        integration = "orders"
        resource_type = "postgresql-table"
        permissions = ["select"]
        resources = [
            { scope_mode = "include", by = "id", values = ["postgresql-table:app/*/audit_*"] },
            { scope_mode = "include", by = "name", values = ["tmp_*"] },
            { scope_mode = "exclude", by = "name", values = ["*/secret/*"] },
        ]
        "#,
    );
    let ev = evaluator(Arc::new(InMemoryTagSource::new()));
    let cases = [
        ("app/s/audit_log", true),
        ("app/s/audit", false),
        ("other/s/audit_log", false),
        ("x/y/tmp_1", true),
        ("app/secret/audit_log", false),
        ("app/secret/tmp_1", false),
    ];
    for (path, want) in cases {
        let access = [entry(&format!("postgresql-table:{path}=select"))];
        let got = ev
            .evaluate(&set, &request("alice", &access))
            .await
            .unwrap()
            .is_matched();
        assert_eq!(got, want, "{path}");
    }
}

#[tokio::test]
async fn timeframes_are_read_in_their_zone() {
    let set = toml(
        r#"
        name = "office-hours"
        trigger = "automatic"
        grant_duration = "1h"
        requestors.conditions = [{ type = "user", source = "okta", values = ["alice"] }]
        access_targets = [{ integration = "orders", resource_type = "postgresql-database", permissions = ["connect"] }]
        timeframe = { days_of_week = ["monday", "tuesday", "wednesday", "thursday", "friday"], start_time = "09:00", end_time = "18:00", time_zone = "America/New_York" }
        "#,
    );
    let ev = evaluator(Arc::new(InMemoryTagSource::new()));
    let access = [entry("postgresql-database:app=connect")];
    let at = |at: OffsetDateTime| {
        let mut r = request("alice", &access);
        r.at = at;
        r
    };
    // Monday 2025-03-03 14:00 UTC is 09:00 in New York (UTC-5).
    assert!(
        ev.evaluate(&set, &at(datetime!(2025-03-03 14:00 UTC)))
            .await
            .unwrap()
            .is_matched()
    );
    assert!(
        !ev.evaluate(&set, &at(datetime!(2025-03-03 13:59 UTC)))
            .await
            .unwrap()
            .is_matched()
    );
    // The same instant given with another offset is the same instant.
    assert!(
        ev.evaluate(&set, &at(datetime!(2025-03-03 15:30 +01:30)))
            .await
            .unwrap()
            .is_matched()
    );
    // After the switch to daylight time (UTC-4), 13:00 UTC is 09:00.
    assert!(
        ev.evaluate(&set, &at(datetime!(2025-03-10 13:00 UTC)))
            .await
            .unwrap()
            .is_matched()
    );
    // Friday 23:00 UTC is 18:00 in New York: closed.
    let d = ev
        .evaluate(&set, &at(datetime!(2025-03-07 23:00 UTC)))
        .await
        .unwrap();
    assert!(
        matches!(&refused(&d)[0][..], [Mismatch::OutsideTimeframe { now, .. }] if now == "friday 18:00"),
        "{d}"
    );
}

// ---- approver policies ----

const POLICIES: &str = r#"
[[flows]]
name = "any"
trigger = "self_serve"
grant_duration = "1h"
requestors.conditions = [{ type = "group", source = "okta", values = ["analysts", "dba"] }]
access_targets = [{ integration = "orders", resource_type = "postgresql-table", permissions = ["select"] }]
[flows.approver_policy]
approval_mode = "any_of"
approver_groups = [
    { approvers = [{ type = "user", source = "okta", values = ["bob"] }] },
    { approvers = [{ type = "group", source = "okta", values = ["dba"] }] },
]

[[flows]]
name = "all"
trigger = "self_serve"
grant_duration = "1h"
requestors.conditions = [{ type = "group", source = "okta", values = ["analysts", "dba"] }]
access_targets = [{ integration = "orders", resource_type = "postgresql-table", permissions = ["select"] }]
settings = { approver_reason_required = true }
[flows.approver_policy]
approval_mode = "all_of"
approver_groups = [
    { approvers = [{ type = "group", source = "okta", values = ["payments"] }] },
    { logical_operator = "or", approvers = [{ type = "group", source = "okta", values = ["dba"] }, { type = "user", source = "okta", values = ["erin"] }] },
]

[[flows]]
name = "owners"
trigger = "self_serve"
grant_duration = "1h"
requestors.conditions = [{ type = "group", source = "okta", values = ["analysts", "dba"] }]
access_targets = [{ integration = "orders", resource_type = "postgresql-table", permissions = ["select"] }]
approver_policy.approver_groups = [{ approvers = [{ type = "owner" }] }]
"#;

fn flow<'a>(set: &'a FlowSet, name: &str) -> &'a AccessFlow {
    set.get(name).unwrap()
}

fn votes(v: &[(&str, Option<&str>)]) -> Vec<ApprovalVote> {
    v.iter()
        .map(|(who, why)| ApprovalVote::new(*who, *why))
        .collect()
}

fn resolver(tags: Arc<InMemoryTagSource>) -> OwnerResolver {
    OwnerResolver::new(
        vec![IntegrationOwner {
            source: "okta".into(),
            attribute: OwnerAttribute::Group,
            values: vec!["dba".into()],
        }],
        Some(ResourceOwnerSetting {
            key: "owner".into(),
            source: "okta".into(),
            attribute: OwnerAttribute::Group,
        }),
        tags,
        vec![Arc::new(okta())],
    )
    .unwrap()
}

#[tokio::test]
async fn any_of_needs_one_group_and_refuses_self_approval() {
    let set = toml(POLICIES);
    let tags = Arc::new(InMemoryTagSource::new());
    let (ev, owners) = (evaluator(tags.clone()), resolver(tags));
    let any = flow(&set, "any");
    let access = [entry("postgresql-table:app/s/t=select")];
    let status = |v: Vec<ApprovalVote>, requester: &'static str| {
        let (ev, owners, access) = (&ev, &owners, &access);
        async move {
            ev.approval_status(any, requester, access, &v, owners)
                .await
                .unwrap()
        }
    };
    let s = status(vec![], "alice").await;
    assert!(!s.complete);
    assert_eq!(s.missing.len(), 2, "{s}");
    assert!(s.missing[0].contains("user bob (okta)"), "{s}");
    assert!(s.missing[1].contains("a member of dba (okta)"), "{s}");
    assert!(status(votes(&[("bob", None)]), "alice").await.complete);
    assert!(status(votes(&[("dave", None)]), "alice").await.complete);
    // carol asks; her own approval does not count, dave's does.
    let s = status(votes(&[("carol", None)]), "carol").await;
    assert!(!s.complete);
    assert_eq!(s.ignored[0].approver, "carol");
    assert!(
        status(votes(&[("carol", None), ("dave", None)]), "carol")
            .await
            .complete
    );
    // Someone no group names does not count.
    let s = status(votes(&[("mallory", None)]), "alice").await;
    assert!(
        !s.complete && s.ignored[0].why.contains("not an approver"),
        "{s}"
    );

    let may = |approver: &'static str, requester: &'static str| {
        let (ev, owners, access) = (&ev, &owners, &access);
        async move {
            ev.may_approve(any, requester, approver, None, access, owners)
                .await
                .unwrap()
        }
    };
    assert_eq!(may("bob", "alice").await, Ok(()));
    assert!(matches!(
        may("carol", "carol").await,
        Err(ApprovalRefused::SelfApproval { .. })
    ));
    let Err(ApprovalRefused::NotAnApprover { needed, .. }) = may("mallory", "alice").await else {
        panic!("mallory approves nothing")
    };
    assert_eq!(needed, ["user bob (okta)", "a member of dba (okta)"]);
}

#[tokio::test]
async fn all_of_needs_distinct_approvers_with_reasons() {
    let set = toml(POLICIES);
    let tags = Arc::new(InMemoryTagSource::new());
    let (ev, owners) = (evaluator(tags.clone()), resolver(tags));
    let all = flow(&set, "all");
    let access = [entry("postgresql-table:app/s/t=select")];
    let status = |v: Vec<ApprovalVote>| {
        let (ev, owners, access) = (&ev, &owners, &access);
        async move {
            ev.approval_status(all, "alice", access, &v, owners)
                .await
                .unwrap()
        }
    };
    // erin is in payments and may approve for group 1 too, but counts once.
    let s = status(votes(&[("erin", Some("ok"))])).await;
    assert!(!s.complete);
    assert_eq!(s.missing.len(), 1, "{s}");
    assert!(
        s.missing[0].contains("one person's approval counts for one group only"),
        "{s}"
    );
    assert!(
        status(votes(&[("erin", Some("ok")), ("bob", Some("ok"))]))
            .await
            .complete
    );
    assert!(
        status(votes(&[("erin", Some("ok")), ("carol", Some("ok"))]))
            .await
            .complete
    );
    // Without a reason, an approval does not count; may_approve says so.
    let s = status(votes(&[("bob", Some("ok")), ("carol", None)])).await;
    assert!(!s.complete);
    assert!(s.ignored[0].why.contains("reason"), "{s}");
    assert!(matches!(
        ev.may_approve(all, "alice", "carol", Some(" "), &access, &owners)
            .await
            .unwrap(),
        Err(ApprovalRefused::ReasonRequired { .. })
    ));
    assert_eq!(
        ev.may_approve(all, "alice", "carol", Some("fine"), &access, &owners)
            .await
            .unwrap(),
        Ok(())
    );
    // Nothing yet: both groups are missing.
    assert_eq!(status(vec![]).await.missing.len(), 2);
    let json = serde_json::to_value(status(vec![]).await).unwrap();
    assert_eq!(json["complete"], false);
}

#[tokio::test]
async fn owners_approve_per_distinct_owner_set() {
    let set = toml(POLICIES);
    let tags = Arc::new(InMemoryTagSource::new());
    tags.set_comment(ResourceId::schema("app", "billing"), "owner=payments");
    let (ev, owners) = (evaluator(tags.clone()), resolver(tags));
    let f = flow(&set, "owners");
    // Two resources: billing (owned by payments) and ops (falls back to dba).
    let access = [
        entry("postgresql-table:app/billing/invoices=select"),
        entry("postgresql-table:app/billing/cards=select"),
        entry("postgresql-table:app/ops/jobs=select"),
    ];
    let status = |v: Vec<ApprovalVote>| {
        let (ev, owners, access) = (&ev, &owners, &access);
        async move {
            ev.approval_status(f, "alice", access, &v, owners)
                .await
                .unwrap()
        }
    };
    let s = status(votes(&[("bob", None)])).await;
    assert!(!s.complete, "{s}");
    assert!(
        s.missing[0].contains("postgresql-table:app/ops/jobs"),
        "{s}"
    );
    assert!(!s.missing[0].contains("invoices"), "{s}");
    assert!(
        status(votes(&[("bob", None), ("carol", None)]))
            .await
            .complete
    );
    // erin is in payments only; dave in dba.
    assert!(!status(votes(&[("erin", None)])).await.complete);
    assert!(
        status(votes(&[("erin", None), ("dave", None)]))
            .await
            .complete
    );
    // One resource, one owner set.
    let one = [entry("postgresql-table:app/billing/invoices=select")];
    let s = ev
        .approval_status(f, "alice", &one, &votes(&[("bob", None)]), &owners)
        .await
        .unwrap();
    assert!(s.complete, "{s}");
    assert!(matches!(
        ev.may_approve(f, "alice", "carol", None, &one, &owners)
            .await
            .unwrap(),
        Err(ApprovalRefused::NotAnApprover { .. })
    ));
    // An automatic flow needs nobody.
    let auto = toml(
        r#"
        name = "break-glass"
        trigger = "automatic"
        grant_duration = "1h"
        requestors.conditions = [{ type = "group", source = "okta", values = ["oncall-eu"] }]
        access_targets = [{ integration = "orders", resource_type = "postgresql-database", permissions = ["admin"] }]
        settings.review_required = true
        "#,
    );
    let auto = &auto.flows()[0];
    assert!(
        ev.approval_status(auto, "olga", &one, &[], &owners)
            .await
            .unwrap()
            .complete
    );
    assert!(matches!(
        ev.may_approve(auto, "olga", "bob", None, &one, &owners)
            .await
            .unwrap(),
        Err(ApprovalRefused::NoApprovalNeeded { .. })
    ));
}
