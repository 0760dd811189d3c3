//! `pgwarden flows validate`, and access requests across separate processes:
//! `request`, `requests`, `approve`, `reject`, `cancel` against a real PostgreSQL,
//! with the requests kept in the instance and the grants made there.
//!
//! The flows use user conditions and user approvers (no identity provider on the
//! command line), except one group flow that shows what `--directory` changes.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::LazyLock;

mod common;

use pgwarden_testkit::TempCluster;

/// The integration config, the flows next to it, and the shared cluster.
struct Fixture {
    cluster: &'static TempCluster,
    config: String,
    dir: PathBuf,
    /// Kept for the test binary's lifetime.
    _tmp: tempfile::TempDir,
}

const SCHEMA_FLOW: &str = r#"
name = "schema-read-only"
trigger = "self_serve"
grant_duration = "4h"

[requestors]
logical_operator = "or"
conditions = [{ type = "user", source = "idp", match_operator = "is", values = ["alice", "carol"] }]

[[access_targets]]
integration = "cli-req"
resource_type = "postgresql-schema"
permissions = ["read-only"]
resources = [{ scope_mode = "include", by = "name", values = ["app/s1"] }]

[approver_policy]
approver_groups = [{ approvers = [{ type = "user", source = "idp", match_operator = "is", values = ["bob"] }] }]

[settings]
justification_required = true
"#;

const BREAK_GLASS_FLOW: &str = r#"
name = "break-glass"
trigger = "automatic"
grant_duration = "1h"

[requestors]
conditions = [{ type = "user", source = "idp", match_operator = "is", values = ["oncall"] }]

[[access_targets]]
integration = "cli-req"
resource_type = "postgresql-table"
permissions = ["read-only"]

[settings]
review_required = true
"#;

const GROUP_FLOW: &str = r#"
name = "dba-s2"
trigger = "self_serve"
grant_duration = "2h"

[requestors]
conditions = [{ type = "group", source = "okta", match_operator = "is", values = ["dba"] }]

[[access_targets]]
integration = "cli-req"
resource_type = "postgresql-schema"
permissions = ["read-only"]
resources = [{ scope_mode = "include", by = "name", values = ["app/s2"] }]
"#;

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let c = TempCluster::shared();
    c.create_database("app").unwrap();
    c.psql_in(
        "app",
        "CREATE SCHEMA s1; CREATE TABLE s1.t (id int); INSERT INTO s1.t VALUES (1), (2);
         CREATE SCHEMA s2; CREATE TABLE s2.u (id int); INSERT INTO s2.u VALUES (7);
         COMMENT ON TABLE s1.t IS 'Orders. team=ops';",
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let credentials = dir.join("connector.json");
    std::fs::write(
        &credentials,
        serde_json::json!({"username": c.superuser(), "password": c.password()}).to_string(),
    )
    .unwrap();
    let flows = dir.join("flows");
    std::fs::create_dir(&flows).unwrap();
    std::fs::write(flows.join("1-schema.toml"), SCHEMA_FLOW).unwrap();
    std::fs::write(flows.join("2-break-glass.toml"), BREAK_GLASS_FLOW).unwrap();
    std::fs::write(flows.join("3-dba.toml"), GROUP_FLOW).unwrap();
    let config = dir.join("integration.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"cli-req\"\nhostname = \"{}\"\nport = {}\ndatabase = \"app\"\nssl_mode = \"require\"\n\n[secret]\nbackend = \"file\"\npath = \"{}\"\n\n[access_requests]\nflows = \"flows\"\n",
            c.host(),
            c.port(),
            credentials.display()
        ),
    )
    .unwrap();
    Fixture {
        cluster: c,
        config: config.display().to_string(),
        dir,
        _tmp: tmp,
    }
});

fn pgwarden(args: &[&str]) -> Output {
    common::pgwarden().args(args).output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts exit `code`, showing both streams otherwise.
fn assert_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
}

fn json(out: &Output) -> serde_json::Value {
    assert_code(out, 0);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `pgwarden [--format json] <command> --config <fixture> <args>`.
fn run(json_format: bool, command: &[&str], args: &[&str]) -> Output {
    let f = &*FIXTURE;
    let mut all: Vec<&str> = Vec::new();
    if json_format {
        all.extend(["--format", "json"]);
    }
    all.extend(command);
    all.extend(["--config", &f.config]);
    all.extend(args);
    let out = pgwarden(&all);
    // The connector's password never shows, whatever the command printed.
    for text in [stdout(&out), stderr(&out)] {
        assert!(
            !text.contains(f.cluster.password()),
            "connector password leaked: {text}"
        );
    }
    out
}

/// The id from `request <id>: <state>` in a text output.
fn request_id(text: &str) -> String {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("request ")?
                .split_once(": ")
                .map(|(id, _)| id)
        })
        .unwrap_or_else(|| panic!("no request id in:\n{text}"))
        .to_owned()
}

/// Logs in as the granted user and runs `sql` in database `app`.
fn login(user: &str, password: &str, sql: &str) -> Result<String, pgwarden_testkit::Error> {
    let c = FIXTURE.cluster;
    c.psql_with(&c.conninfo(user, password, "app"), sql)
}

fn examples_flows() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/flows")
}

#[test]
fn flows_validate_lists_the_examples() {
    let dir = examples_flows();
    let out = pgwarden(&["flows", "validate", dir.to_str().unwrap()]);
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("valid — 4 flows"), "{text}");
    for (name, line) in [
        (
            "no-pii-analysts",
            "self_serve, integrations orders-prod, up to 4h, approval required",
        ),
        (
            "on-call-break-glass",
            "automatic, integrations orders-prod, up to 1h, no approval",
        ),
        (
            "read-only-self-serve",
            "self_serve, integrations orders-prod, up to 8h, approval required",
        ),
        (
            "read-write-two-approvers",
            "self_serve, integrations orders-prod, up to 2h, approval required",
        ),
    ] {
        assert!(
            text.contains(&format!("  {name}: {line}")),
            "{name} in:\n{text}"
        );
    }

    let out = pgwarden(&[
        "--format",
        "json",
        "flows",
        "validate",
        dir.to_str().unwrap(),
    ]);
    let v = json(&out);
    assert_eq!(v["valid"], true);
    let names: Vec<_> = v["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "no-pii-analysts",
            "on-call-break-glass",
            "read-only-self-serve",
            "read-write-two-approvers"
        ]
    );
    let glass = &v["flows"][1];
    assert_eq!(glass["trigger"], "automatic");
    assert_eq!(glass["approval_required"], false);
    assert_eq!(glass["grant_duration"], "1h");
    assert_eq!(glass["integrations"][0], "orders-prod");

    // One file works too.
    let out = pgwarden(&[
        "flows",
        "validate",
        dir.join("on-call-break-glass.toml").to_str().unwrap(),
    ]);
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("valid — 1 flow\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn flows_validate_lists_every_problem_with_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    // A self-serve flow without grant_duration, with a level a schema does not have.
    std::fs::write(
        tmp.path().join("a.toml"),
        r#"
name = "a"
trigger = "self_serve"
[requestors]
conditions = [{ type = "user", source = "idp", values = ["x"] }]
[[access_targets]]
integration = "i"
resource_type = "postgresql-schema"
permissions = ["select"]
"#,
    )
    .unwrap();
    // An unknown field and an unknown trigger.
    std::fs::write(
        tmp.path().join("b.yaml"),
        "name: b\ntrigger: whenever\ngrant_duration: 1h\ncolour: blue\nrequestors:\n  conditions:\n    - {type: user, source: idp, values: [y]}\naccess_targets:\n  - {integration: i, resource_type: postgresql-table, permissions: [select]}\n",
    )
    .unwrap();
    // A file of another kind is not read.
    std::fs::write(tmp.path().join("notes.txt"), "not a flow").unwrap();

    let out = pgwarden(&["flows", "validate", tmp.path().to_str().unwrap()]);
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.starts_with("pgwarden: "), "{err}");
    for expected in [
        "a.toml: grant_duration",
        "a.toml: access_targets[0].permissions[0]",
        "b.yaml: trigger",
        "b.yaml: colour",
    ] {
        assert!(err.contains(expected), "{expected:?} in:\n{err}");
    }
    assert!(!err.contains("notes.txt"), "{err}");

    let out = pgwarden(&[
        "--format",
        "json",
        "flows",
        "validate",
        tmp.path().to_str().unwrap(),
    ]);
    assert_code(&out, 2);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    let fields: Vec<_> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["field"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        fields.iter().any(|f| f == "a.toml: grant_duration"),
        "{fields:?}"
    );
    assert!(fields.iter().any(|f| f == "b.yaml: colour"), "{fields:?}");

    let out = pgwarden(&["flows", "validate", "/nonexistent/flows"]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("no such file or directory"),
        "{}",
        stderr(&out)
    );
}

/// request (pending) → requests --state pending → approve by a non-approver (refused)
/// → approve by bob (granted, credentials once) → login → requests --state granted;
/// each step a separate process.
#[test]
fn request_approve_and_log_in() {
    let out = run(
        false,
        &["request"],
        &[
            "--requester",
            "alice",
            "--access",
            "postgresql-schema:app/s1=read-only",
            "--duration",
            "2h",
            "--justification",
            "INC-4711",
        ],
    );
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains(
            "matched flow \"schema-read-only\" (self_serve, up to 4h): waiting for approval"
        ),
        "{text}"
    );
    let id = request_id(&text);
    assert!(text.contains(&format!("request {id}: pending")), "{text}");

    let out = run(false, &["requests"], &["--state", "pending"]);
    assert_code(&out, 0);
    let table = stdout(&out);
    assert!(table.starts_with("ID "), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not listed:\n{table}"));
    for cell in [
        "pending",
        "alice",
        "schema-read-only",
        "postgresql-schema:app/s1=read-only",
    ] {
        assert!(row.contains(cell), "{cell} in {row}");
    }

    // Neither a stranger nor the requester may approve: exit 3, and why.
    let out = run(false, &["approve", &id], &["--approver", "mallory"]);
    assert_code(&out, 3);
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "pgwarden: mallory may not approve access request {id}: "
        )),
        "{err}"
    );
    let out = run(false, &["approve", &id], &["--approver", "alice"]);
    assert_code(&out, 3);
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));

    let approved = json(&run(
        true,
        &["approve", &id],
        &["--approver", "bob", "--reason", "ok"],
    ));
    assert_eq!(approved["request"]["state"], "granted", "{approved}");
    assert_eq!(approved["status"]["complete"], true);
    let grant = &approved["grant"];
    assert_eq!(grant["grant_id"].as_str(), Some(id.as_str()));
    let user = grant["username"].as_str().unwrap();
    let password = grant["password"].as_str().unwrap();
    assert_eq!(
        login(user, password, "SELECT count(*) FROM s1.t")
            .unwrap()
            .trim(),
        "2"
    );
    // Read-only on s1, nothing on s2.
    assert!(login(user, password, "INSERT INTO s1.t VALUES (3)").is_err());
    assert!(login(user, password, "SELECT * FROM s2.u").is_err());

    // Approving again changes nothing and shows no password.
    let again = json(&run(true, &["approve", &id], &["--approver", "bob"]));
    assert_eq!(again["request"]["state"], "granted");
    assert!(again["grant"].is_null(), "{again}");

    let listed = json(&run(true, &["requests"], &["--state", "granted"]));
    let r = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not granted in {listed}"));
    assert_eq!(r["username"].as_str(), Some(user));
    assert_eq!(r["approvals"][0]["by"], "bob");
    let pending = json(&run(true, &["requests"], &["--state", "pending"]));
    assert!(
        !pending
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str()),
        "{pending}"
    );
}

#[test]
fn reject_and_cancel() {
    let ask = |who: &str| {
        let v = json(&run(
            true,
            &["request"],
            &[
                "--requester",
                who,
                "--access",
                "postgresql-schema:app/s1=read-only",
                "--duration",
                "1h",
                "--justification",
                "report",
            ],
        ));
        assert_eq!(v["decision"]["decision"], "matched", "{v}");
        assert_eq!(v["request"]["state"], "pending", "{v}");
        assert!(v["grant"].is_null());
        v["request"]["id"].as_str().unwrap().to_owned()
    };

    // Reject: only an approver the flow names.
    let id = ask("carol");
    let out = run(false, &["reject", &id], &["--approver", "alice"]);
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains(&format!("alice may not reject access request {id}")),
        "{}",
        stderr(&out)
    );
    let out = run(
        false,
        &["reject", &id],
        &["--approver", "bob", "--reason", "use the replica"],
    );
    assert_code(&out, 0);
    assert_eq!(
        stdout(&out).trim(),
        format!("request {id}: rejected by bob")
    );
    // A rejected request cannot be approved: exit 2, naming the state.
    let out = run(false, &["approve", &id], &["--approver", "bob"]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains(&format!(
            "access request {id} is rejected: cannot approve it"
        )),
        "{}",
        stderr(&out)
    );
    let rejected = json(&run(true, &["requests"], &["--state", "rejected"]));
    let r = rejected
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not rejected in {rejected}"));
    assert_eq!(r["rejection"]["reason"], "use the replica");

    // Cancel: only by its requester.
    let id = ask("carol");
    let out = run(false, &["cancel", &id], &["--requester", "alice"]);
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("only its requester, carol, may"),
        "{}",
        stderr(&out)
    );
    let cancelled = json(&run(true, &["cancel", &id], &["--requester", "carol"]));
    assert_eq!(cancelled["state"], "cancelled");
    let out = run(
        false,
        &["requests"],
        &["--state", "cancelled", "--state", "rejected"],
    );
    assert_code(&out, 0);
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("cancelled")),
        "{}",
        stdout(&out)
    );

    // Unknown ids and states are usage errors.
    let out = run(
        false,
        &["approve", "no-such-request"],
        &["--approver", "bob"],
    );
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("no access request no-such-request"),
        "{}",
        stderr(&out)
    );
    let out = run(false, &["requests"], &["--state", "sleeping"]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("unknown request state \"sleeping\""),
        "{}",
        stderr(&out)
    );
}

/// A request no flow matches: every flow's reasons on stdout, exit 3.
#[test]
fn a_refused_request_prints_each_flows_reasons() {
    let args = [
        "--requester",
        "alice",
        "--access",
        "postgresql-schema:app/s1=read-only",
        "--duration",
        "8h",
    ];
    let out = run(false, &["request"], &args);
    assert_code(&out, 3);
    let text = stdout(&out);
    assert!(
        text.starts_with("refused: no access flow matches this request"),
        "{text}"
    );
    for expected in [
        "flow \"schema-read-only\":",
        "8h is longer than the flow's grant_duration 4h",
        "the flow requires a justification",
        "flow \"break-glass\":",
        "alice does not meet requestors.conditions[0]",
        "flow \"dba-s2\":",
        "no directory for identity provider okta",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }
    assert!(
        stderr(&out).starts_with("pgwarden: access refused for alice"),
        "{}",
        stderr(&out)
    );

    let out = run(true, &["request"], &args);
    assert_code(&out, 3);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"]["decision"], "refused");
    assert_eq!(v["decision"]["flows"].as_array().unwrap().len(), 3, "{v}");
    assert!(v["request"].is_null());

    // Bad input is a usage error naming the option.
    let out = run(
        false,
        &["request"],
        &[
            "--requester",
            "alice",
            "--tag",
            "table:team",
            "--duration",
            "1h",
        ],
    );
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("--tag table:team"),
        "{}",
        stderr(&out)
    );
}

/// An automatic flow grants on request, here for a tag selection, and prints the
/// credentials once.
#[test]
fn an_automatic_flow_grants_at_once() {
    let out = run(
        false,
        &["request"],
        &[
            "--requester",
            "oncall",
            "--tag",
            "table:team=ops=read-only",
            "--duration",
            "30m",
        ],
    );
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("matched flow \"break-glass\" (automatic, up to 1h): granted on request; the grant will be reviewed"),
        "{text}"
    );
    let id = request_id(&text);
    assert!(text.contains(&format!("request {id}: granted")), "{text}");
    let user = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("grant {id} for oncall: user "))?
                .split_once(' ')
                .map(|(u, _)| u.to_owned())
        })
        .unwrap_or_else(|| panic!("no grant line in:\n{text}"));
    let password = text
        .lines()
        .find_map(|l| l.strip_prefix("password (shown once): "))
        .unwrap_or_else(|| panic!("no password in:\n{text}"));
    assert_eq!(
        login(&user, password, "SELECT count(*) FROM s1.t")
            .unwrap()
            .trim(),
        "2"
    );
    let listed = json(&run(true, &["requests"], &["--state", "granted"]));
    let r = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap();
    assert_eq!(
        r["access"],
        serde_json::json!([{"resource": "postgresql-table:app/s1/t", "level": "read-only"}]),
        "{r}"
    );
    assert_eq!(r["review_required"], true);
}

/// A group condition is unmet without a directory, and met with `--directory`.
#[test]
fn group_conditions_need_a_directory() {
    let args = [
        "--requester",
        "dave",
        "--access",
        "postgresql-schema:app/s2=read-only",
        "--duration",
        "1h",
        "--justification",
        "migration",
    ];
    let out = run(false, &["request"], &args);
    assert_code(&out, 3);
    assert!(
        stdout(&out).contains("no directory for identity provider okta"),
        "{}",
        stdout(&out)
    );

    let directory = FIXTURE.dir.join("okta.json");
    std::fs::write(
        &directory,
        r#"{"source": "okta", "groups": {"dba": ["dave"]}}"#,
    )
    .unwrap();
    let mut with_directory = args.to_vec();
    with_directory.extend(["--directory", directory.to_str().unwrap()]);
    let v = json(&run(true, &["request"], &with_directory));
    assert_eq!(v["decision"]["flow"], "dba-s2", "{v}");
    assert_eq!(v["request"]["state"], "granted", "{v}");
    let (user, password) = (
        v["grant"]["username"].as_str().unwrap(),
        v["grant"]["password"].as_str().unwrap(),
    );
    assert_eq!(
        login(user, password, "SELECT id FROM s2.u").unwrap().trim(),
        "7"
    );

    // A malformed directory file says what to fix.
    let bad = FIXTURE.dir.join("bad.json");
    std::fs::write(&bad, r#"{"groups": {"dba": ["dave"]}}"#).unwrap();
    let mut with_bad = args.to_vec();
    with_bad.extend(["--directory", bad.to_str().unwrap()]);
    let out = run(false, &["request"], &with_bad);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("\"source\" must name the identity provider"),
        "{}",
        stderr(&out)
    );
}
