//! Access requests end to end against a real PostgreSQL: flows decide, approvers
//! approve, the grant is made once, and every transition is stored (in the instance)
//! and audited.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pgwarden::core::config::ConfigFormat;
use pgwarden::core::flows::{Decision, FlowSet, Mismatch};
use pgwarden::core::owners::{Directory, DirectoryError, InMemoryDirectory, Person};
use pgwarden::core::requests::RequestState;
use pgwarden::secrets::{InMemory, PutOptions, SecretKey, SecretStoreExt};
use pgwarden::{
    AccessEntry, AccessRequests, AuditAction, ErrorKind, ExposeSecret, Integration,
    IntegrationConfig, IntegrationOptions, NewAccessRequest, RecordingAuditSink, ScramIterations,
};
use pgwarden_testkit::TempCluster;

fn cluster() -> &'static TempCluster {
    static C: std::sync::OnceLock<TempCluster> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        let c = TempCluster::start().unwrap();
        c.create_database("app").unwrap();
        c.psql_in(
            "app",
            "CREATE SCHEMA sales; CREATE TABLE sales.orders (id int); INSERT INTO sales.orders VALUES (1);
             CREATE TABLE sales.customers (id int); COMMENT ON TABLE sales.customers IS 'pii=true';
             CREATE USER req_connector SUPERUSER PASSWORD 'req-connector-pw';",
        )
        .unwrap();
        c
    })
}

/// An identity provider whose groups the test changes while requests are open.
#[derive(Debug)]
struct Okta(Mutex<InMemoryDirectory>);

impl Okta {
    fn new(groups: &[(&str, &[&str])]) -> Arc<Self> {
        let okta = Arc::new(Okta(Mutex::new(InMemoryDirectory::new("okta"))));
        okta.set(groups);
        okta
    }

    fn set(&self, groups: &[(&str, &[&str])]) {
        let mut d = InMemoryDirectory::new("okta");
        for (g, members) in groups {
            d = d.with_group(g, members);
        }
        *self.0.lock().unwrap() = d;
    }

    fn now(&self) -> InMemoryDirectory {
        self.0.lock().unwrap().clone()
    }
}

#[async_trait]
impl Directory for Okta {
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

const FLOWS: &str = r#"
[[flows]]
name = "break-glass"
trigger = "automatic"
grant_duration = "1h"
requestors = { conditions = [{ type = "group", source = "okta", match_operator = "is", values = ["on-call"] }] }
access_targets = [{ integration = "INTEGRATION", resource_type = "postgresql-schema", permissions = ["read-write"] }]
settings = { review_required = true, justification_required = true }
session = { statement_timeout = "7s" }

[[flows]]
name = "read-only"
trigger = "self_serve"
grant_duration = "2h"
requestors = { conditions = [{ type = "group", source = "okta", match_operator = "is", values = ["engineering"] }] }
access_targets = [{ integration = "INTEGRATION", resource_type = "postgresql-table", permissions = ["read-only"], resources = [
  { scope_mode = "exclude", by = "tag", key = "pii", values = ["true"] },
] }]
approver_policy = { approval_mode = "any_of", approver_groups = [
  { approvers = [{ type = "group", source = "okta", match_operator = "is", values = ["dba"] }] },
] }

[[flows]]
name = "read-write"
trigger = "self_serve"
grant_duration = "30m"
requestors = { conditions = [{ type = "group", source = "okta", match_operator = "is", values = ["engineering"] }] }
access_targets = [{ integration = "INTEGRATION", resource_type = "postgresql-table", permissions = ["read-write"] }]
approver_policy = { approval_mode = "all_of", approver_groups = [
  { approvers = [{ type = "group", source = "okta", match_operator = "is", values = ["dba"] }] },
  { approvers = [{ type = "group", source = "okta", match_operator = "is", values = ["leads"] }] },
] }
settings = { approver_reason_required = true }
"#;

const GROUPS: &[(&str, &[&str])] = &[
    ("engineering", &["alice", "bob", "dave"]),
    ("dba", &["bob", "carol", "erin"]),
    ("leads", &["dave", "frank"]),
    ("on-call", &["olivia"]),
];

struct Setup {
    integration: Arc<Integration>,
    requests: Arc<AccessRequests>,
    audit: Arc<RecordingAuditSink>,
    okta: Arc<Okta>,
    name: String,
}

/// An integration of its own (`name`), its flows, and its requests in PostgreSQL.
async fn setup(name: &str) -> Setup {
    static KEY: std::sync::OnceLock<pgwarden::pg_driver::LedgerKey> = std::sync::OnceLock::new();
    let c = cluster();
    let config = IntegrationConfig::parse(
        &format!(
            "name = \"{name}\"\nhostname = \"127.0.0.1\"\nport = {}\ndatabase = \"app\"\n\
             ssl_mode = \"disable\"\nmax_ttl = \"8h\"\n\
             [[integration_owners]]\nsource = \"okta\"\nattribute = \"group\"\nvalues = [\"dba\"]\n",
            c.port()
        ),
        ConfigFormat::Toml,
    )
    .unwrap();
    let store = Arc::new(InMemory::new());
    let key = SecretKey::new("connector");
    store
        .put_credentials(
            &key,
            &pgwarden::core::credentials::Credentials::new("req_connector", "req-connector-pw"),
            PutOptions::create(),
        )
        .await
        .unwrap();
    let audit = Arc::new(RecordingAuditSink::new());
    let okta = Okta::new(GROUPS);
    let integration = Integration::connect(
        config,
        store,
        IntegrationOptions {
            audit: audit.clone(),
            secret_key: Some(key),
            ledger_key: Some(
                KEY.get_or_init(pgwarden::pg_driver::LedgerKey::generate)
                    .clone(),
            ),
            scram_iterations: ScramIterations::new(16).unwrap(),
            directories: vec![okta.clone() as Arc<dyn Directory>],
            ..IntegrationOptions::default()
        },
    )
    .await
    .unwrap();
    let flows = FlowSet::parse(&FLOWS.replace("INTEGRATION", name), ConfigFormat::Toml).unwrap();
    let requests = AccessRequests::open(integration.clone(), flows, None)
        .await
        .unwrap();
    Setup {
        integration,
        requests,
        audit,
        okta,
        name: name.to_owned(),
    }
}

fn entry(s: &str) -> AccessEntry {
    s.parse().unwrap()
}

fn ask(requester: &str, access: &[&str], duration: &str) -> NewAccessRequest {
    NewAccessRequest::new(
        requester,
        access.iter().map(|a| entry(a)),
        duration.parse().unwrap(),
    )
    .justification("ticket 42")
}

/// Submits `new`, which a flow must match and leave pending or granted.
async fn pending(s: &Setup, new: NewAccessRequest) -> pgwarden::core::requests::StoredRequest {
    let submitted = s.requests.submit(new).await.unwrap();
    submitted
        .request
        .unwrap_or_else(|| panic!("{}", submitted.decision))
}

/// Logs in as `username` and runs `sql` through psql (libpq).
fn psql_as(username: &str, password: &str, sql: &str) -> Result<String, String> {
    let c = cluster();
    c.psql_with(&c.conninfo(username, password, "app"), sql)
        .map_err(|e| e.to_string())
}

fn actions(audit: &RecordingAuditSink, id: &str) -> Vec<AuditAction> {
    audit
        .events()
        .iter()
        .filter(|e| e.grant_id.as_deref() == Some(id))
        .map(|e| e.action)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_says_flow_by_flow_why_and_stores_nothing() {
    let s = setup("req_refused").await;
    // mallory is in no group; pii table; read-write over the 30m limit.
    let submitted = s
        .requests
        .submit(ask(
            "mallory",
            &["postgresql-table:app/sales/customers=read-only"],
            "3h",
        ))
        .await
        .unwrap();
    let Decision::Refused { flows, .. } = &submitted.decision else {
        panic!("{}", submitted.decision);
    };
    assert!(submitted.request.is_none());
    assert_eq!(flows.len(), 3, "{}", submitted.decision);
    let read_only = flows.iter().find(|f| f.flow == "read-only").unwrap();
    assert!(
        read_only
            .reasons
            .iter()
            .any(|r| matches!(r, Mismatch::RequesterNotAllowed { .. })),
        "{read_only:?}"
    );
    assert!(
        read_only
            .reasons
            .iter()
            .any(|r| matches!(r, Mismatch::ResourceExcluded { .. })),
        "{read_only:?}"
    );
    assert!(
        read_only
            .reasons
            .iter()
            .any(|r| matches!(r, Mismatch::DurationOverLimit { .. })),
        "{read_only:?}"
    );
    let text = submitted.decision.to_string();
    assert!(text.contains("read-only") && text.contains("pii"), "{text}");
    assert!(s.requests.list(&[]).await.unwrap().is_empty());
    let refused: Vec<_> = s
        .audit
        .events()
        .into_iter()
        .filter(|e| e.action == AuditAction::RequestRefused)
        .collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].requester.as_deref(), Some("mallory"));
    // Nothing was granted.
    assert!(s.integration.list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(
    clippy::too_many_lines,
    reason = "one request's whole life, top to bottom"
)]
async fn an_approval_by_the_policy_grants_once_and_the_request_follows_the_grant() {
    let s = setup("req_any_of").await;
    let submitted = s
        .requests
        .submit(ask(
            "alice",
            &["postgresql-table:app/sales/orders=read-only"],
            "1h",
        ))
        .await
        .unwrap();
    assert!(
        matches!(&submitted.decision, Decision::Matched { flow, approval_required: true, .. } if flow == "read-only"),
        "{}",
        submitted.decision
    );
    let request = submitted.request.unwrap();
    assert_eq!(request.state, RequestState::Pending);
    assert!(submitted.grant.is_none());
    assert!(
        s.integration.list().await.unwrap().is_empty(),
        "nothing granted before approval"
    );

    // Not an approver; then the requester herself (alice is not in dba, but bob is
    // both requester-eligible and an approver: see below).
    let e = s
        .requests
        .approve(&request.id, "dave", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Denied, "{e}");
    let e = s
        .requests
        .cancel(&request.id, "bob", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Denied, "{e}");

    let approved = s
        .requests
        .approve(&request.id, "carol", Some("looks fine"))
        .await
        .unwrap();
    assert!(approved.status.complete);
    assert_eq!(approved.request.state, RequestState::Granted);
    let grant = approved.grant.expect("the completing approval grants");
    assert_eq!(grant.grant_id, request.id, "the request id is the grant id");
    let password = grant.password.as_ref().unwrap().expose_secret().to_owned();
    assert_eq!(
        psql_as(
            &grant.username,
            &password,
            "SELECT count(*) FROM sales.orders"
        )
        .unwrap()
        .trim(),
        "1"
    );
    // Approving again changes nothing and grants nothing.
    let again = s
        .requests
        .approve(&request.id, "carol", None)
        .await
        .unwrap();
    assert!(again.grant.is_none());
    assert_eq!(s.integration.list().await.unwrap().len(), 1);
    // A decided request cannot be cancelled or rejected.
    let e = s
        .requests
        .cancel(&request.id, "alice", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");

    // Revoked through the request: access ends, the request says so.
    let revoked = s
        .requests
        .revoke(&request.id, "erin", Some("done"))
        .await
        .unwrap();
    assert_eq!(revoked.state, RequestState::Revoked);
    assert!(psql_as(&grant.username, &password, "SELECT 1").is_err());
    assert_eq!(
        actions(&s.audit, &request.id),
        [
            AuditAction::RequestSubmitted,
            AuditAction::RequestApproval,
            AuditAction::Grant,
            AuditAction::RequestGranted,
            AuditAction::Revoke,
            AuditAction::RequestEnded,
        ]
    );
    let approval = s
        .audit
        .events()
        .into_iter()
        .find(|e| e.action == AuditAction::RequestApproval)
        .unwrap();
    assert_eq!(approval.approver.as_deref(), Some("carol"));
    assert_eq!(approval.reason.as_deref(), Some("looks fine"));
    assert_eq!(approval.flow.as_deref(), Some("read-only"));

    // Request again from the closed request: a new pending request pointing back.
    let again = s
        .requests
        .request_again(&request.id, "alice")
        .await
        .unwrap();
    let again = again.request.unwrap();
    assert_eq!(again.state, RequestState::Pending);
    assert_eq!(again.again_of.as_deref(), Some(request.id.as_str()));
    assert_ne!(again.id, request.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_of_needs_both_groups_distinct_people_and_reasons() {
    let s = setup("req_all_of").await;
    let request = pending(
        &s,
        ask(
            "alice",
            &["postgresql-table:app/sales/orders=read-write"],
            "20m",
        ),
    )
    .await;
    // Reason required.
    let e = s
        .requests
        .approve(&request.id, "bob", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Denied, "{e}");
    let first = s
        .requests
        .approve(&request.id, "bob", Some("dba ok"))
        .await
        .unwrap();
    assert!(!first.status.complete);
    assert!(!first.status.missing.is_empty());
    assert_eq!(first.request.state, RequestState::Pending);
    assert!(first.grant.is_none());
    // Another dba does not complete it: the leads group still has to approve.
    let second = s
        .requests
        .approve(&request.id, "carol", Some("me too"))
        .await
        .unwrap();
    assert!(!second.status.complete, "{:?}", second.status);
    let third = s
        .requests
        .approve(&request.id, "frank", Some("lead ok"))
        .await
        .unwrap();
    assert!(third.status.complete);
    assert_eq!(third.request.state, RequestState::Granted);
    assert!(third.grant.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requester_cannot_approve_their_own_request() {
    let s = setup("req_self").await;
    // bob is an engineer and a dba.
    let request = pending(
        &s,
        ask(
            "bob",
            &["postgresql-table:app/sales/orders=read-only"],
            "1h",
        ),
    )
    .await;
    let e = s
        .requests
        .approve(&request.id, "bob", Some("me"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Denied, "{e}");
    assert_eq!(
        s.requests.get(&request.id).await.unwrap().state,
        RequestState::Pending
    );
    // Rejected by another dba, with a reason; then it is closed.
    let rejected = s
        .requests
        .reject(&request.id, "carol", Some("not now"))
        .await
        .unwrap();
    assert_eq!(rejected.state, RequestState::Rejected);
    assert_eq!(rejected.rejection.as_ref().unwrap().by, "carol");
    let e = s
        .requests
        .approve(&request.id, "erin", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
    assert!(s.integration.list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_approvals_on_two_replicas_complete_the_policy_once() {
    let s = setup("req_race").await;
    // A second replica: its own integration object and store connection pool.
    let flows = FlowSet::parse(&FLOWS.replace("INTEGRATION", &s.name), ConfigFormat::Toml).unwrap();
    let replica = AccessRequests::open(s.integration.clone(), flows, None)
        .await
        .unwrap();
    for round in 0..5 {
        let request = s
            .requests
            .submit(ask(
                "alice",
                &["postgresql-table:app/sales/orders=read-only"],
                "1h",
            ))
            .await
            .unwrap()
            .request
            .unwrap();
        let (first, second, third) = tokio::join!(
            s.requests.approve(&request.id, "carol", None),
            replica.approve(&request.id, "erin", None),
            replica.approve(&request.id, "bob", None),
        );
        let results = [first, second, third];
        let grants = results
            .iter()
            .filter(|r| matches!(r, Ok(x) if x.grant.as_ref().is_some_and(|g| g.created)))
            .count();
        assert_eq!(grants, 1, "round {round}: {results:?}");
        let stored = s.requests.get(&request.id).await.unwrap();
        assert_eq!(stored.state, RequestState::Granted, "round {round}");
        let made = s
            .audit
            .events()
            .into_iter()
            .filter(|e| {
                e.action == AuditAction::Grant && e.grant_id.as_deref() == Some(&request.id)
            })
            .count();
        assert_eq!(made, 1, "round {round}: one grant event");
        s.integration.revoke(&request.id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_flows_grant_at_once_marked_for_review_with_their_session_limits() {
    let s = setup("req_auto").await;
    // Justification required on this automatic flow.
    let mut no_reason = ask("olivia", &["postgresql-schema:app/sales=read-write"], "30m");
    no_reason.justification = None;
    let d = s.requests.submit(no_reason).await.unwrap().decision;
    assert!(
        matches!(&d, Decision::Refused { flows, .. } if flows.iter().any(|f| f.reasons.contains(&Mismatch::JustificationMissing))),
        "{d}"
    );
    let submitted = s
        .requests
        .submit(ask(
            "olivia",
            &["postgresql-schema:app/sales=read-write"],
            "30m",
        ))
        .await
        .unwrap();
    let request = submitted.request.unwrap();
    assert_eq!(request.state, RequestState::Granted);
    let grant = submitted.grant.unwrap();
    let password = grant.password.as_ref().unwrap().expose_secret().to_owned();
    assert_eq!(
        psql_as(&grant.username, &password, "SHOW statement_timeout")
            .unwrap()
            .trim(),
        "7s",
        "the flow's session limit is on the grant's role"
    );
    let grant_event = s
        .audit
        .events()
        .into_iter()
        .find(|e| e.action == AuditAction::Grant && e.grant_id.as_deref() == Some(&request.id))
        .unwrap();
    assert!(grant_event.review_required, "{grant_event:?}");
    assert_eq!(grant_event.flow.as_deref(), Some("break-glass"));
    let json = serde_json::to_value(&grant_event).unwrap();
    assert_eq!(json["review_required"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_whose_session_limits_the_server_lacks_are_refused_at_open() {
    let s = setup("req_major").await;
    let major = cluster().server_major();
    // A setting newer than the server (transaction_timeout needs 17), or, on 17+,
    // nothing to refuse: then the same flows open.
    let flows = FlowSet::parse(
        &FLOWS
            .replace("INTEGRATION", &s.name)
            .replace("statement_timeout = \"7s\"", "transaction_timeout = \"7s\""),
        ConfigFormat::Toml,
    )
    .unwrap();
    let opened = AccessRequests::open(s.integration.clone(), flows, None).await;
    if major < 17 {
        let e = opened.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        let text = e.to_string();
        assert!(
            text.contains("break-glass: session.transaction_timeout") && text.contains("17"),
            "{text}"
        );
    } else {
        assert!(opened.is_ok());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requester_who_left_the_group_before_approval_is_not_granted() {
    let s = setup("req_left").await;
    let request = pending(
        &s,
        ask(
            "dave",
            &["postgresql-table:app/sales/orders=read-only"],
            "1h",
        ),
    )
    .await;
    // dave leaves engineering in the identity provider.
    s.okta.set(&[
        ("engineering", &["alice", "bob"]),
        ("dba", &["bob", "carol", "erin"]),
        ("leads", &["dave", "frank"]),
    ]);
    let approved = s
        .requests
        .approve(&request.id, "carol", None)
        .await
        .unwrap();
    assert!(approved.grant.is_none());
    assert_eq!(approved.request.state, RequestState::Failed);
    let failure = approved.request.failure.unwrap();
    assert!(failure.contains("no longer allowed"), "{failure}");
    assert!(s.integration.list().await.unwrap().is_empty());
    assert!(actions(&s.audit, &request.id).contains(&AuditAction::RequestFailed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_requests_survive_a_restart_and_sync_follows_grants_to_their_end() {
    let s = setup("req_restart").await;
    let waiting = pending(
        &s,
        ask(
            "alice",
            &["postgresql-table:app/sales/orders=read-only"],
            "1h",
        ),
    )
    .await;
    let short = pending(
        &s,
        ask(
            "alice",
            &["postgresql-table:app/sales/orders=read-only"],
            "2s",
        ),
    )
    .await;
    let granted = s.requests.approve(&short.id, "carol", None).await.unwrap();
    assert_eq!(granted.request.state, RequestState::Granted);

    // A "restarted process": a new integration and store, nothing shared in memory.
    let restarted = setup("req_restart").await;
    let listed = restarted
        .requests
        .list(&[RequestState::Pending])
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [waiting.id.as_str()]
    );
    assert_eq!(
        restarted.requests.get(&short.id).await.unwrap().state,
        RequestState::Granted
    );

    // The grant expires; the runtime revokes it; sync moves the request to expired.
    let runtime = restarted.integration.run();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let report = restarted.requests.sync().await.unwrap();
        if report
            .ended
            .iter()
            .any(|(id, state)| *id == short.id && *state == RequestState::Expired)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not expired: {report:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    runtime.shutdown().await;
    assert_eq!(
        restarted.requests.get(&short.id).await.unwrap().state,
        RequestState::Expired
    );
    // Still pending, and approvable after the restart.
    let approved = restarted
        .requests
        .approve(&waiting.id, "erin", None)
        .await
        .unwrap();
    assert_eq!(approved.request.state, RequestState::Granted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_request_a_crash_left_ungranted_is_granted_by_sync() {
    let s = setup("req_crash").await;
    let request = pending(
        &s,
        ask(
            "alice",
            &["postgresql-table:app/sales/orders=read-only"],
            "1h",
        ),
    )
    .await;
    // What a crash between the approval's write and the grant leaves behind.
    let mut approved = request.clone();
    approved
        .approvals
        .push(pgwarden::core::requests::Vote::new("carol", None));
    approved.transition(RequestState::Approved).unwrap();
    s.requests.store().update(&approved).await.unwrap();
    assert!(s.integration.list().await.unwrap().is_empty());
    let report = s.requests.sync().await.unwrap();
    assert_eq!(
        report.granted,
        std::slice::from_ref(&request.id),
        "{report:?}"
    );
    let stored = s.requests.get(&request.id).await.unwrap();
    assert_eq!(stored.state, RequestState::Granted);
    let grants = s.integration.list().await.unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].grant_id, request.id);
    // Sync again: nothing more to do, no second grant.
    let report = s.requests.sync().await.unwrap();
    assert!(report.granted.is_empty(), "{report:?}");
}
