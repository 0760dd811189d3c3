//! The `access_portal` example, driven over HTTP as a person would: submit, list,
//! approve (wrong and right approver), fetch the credentials once, log in; a refusal
//! that explains itself; break-glass without approval; a cancellation.

#[path = "../examples/access_portal/app.rs"]
mod app;
#[path = "../examples/access_portal/setup.rs"]
mod setup;

use serde_json::{Value, json};

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn call(
        &self,
        method: &str,
        path: &str,
        user: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        };
        if let Some(u) = user {
            req = req.header("x-user", u);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(
    clippy::too_many_lines,
    reason = "one person's walk through the portal, top to bottom"
)]
async fn the_portal_takes_requests_approvals_and_hands_out_credentials_once() {
    // reqwest is built without a TLS provider of its own: it takes the process's.
    pgwarden::pg_driver::install_process_default_provider();
    let cluster = setup::cluster().unwrap();
    let (requests, runtime) = setup::portal(&cluster).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app::router(requests)).await.unwrap();
    });
    let c = Client {
        http: reqwest::Client::new(),
        base,
    };

    // alice asks for read-only on a table.
    let (status, body) = c
        .call(
            "POST",
            "/requests",
            Some("alice"),
            Some(json!({"access": ["postgresql-table:app/analytics/orders=read-only"], "duration": "1h", "justification": "Q3 report"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"]["decision"], "matched", "{body}");
    assert!(body["credentials"].is_null(), "approval needed: {body}");
    let id = body["request"]["id"].as_str().unwrap().to_owned();
    assert_eq!(body["request"]["state"], "pending");
    // The approver depends on the flow that matched (one has office hours).
    let approver = match body["decision"]["flow"].as_str().unwrap() {
        "no-pii-analysts" => "erin",
        "read-only-self-serve" => "bob",
        other => panic!("unexpected flow {other}: {body}"),
    };

    let (status, list) = c.call("GET", "/requests?state=pending", None, None).await;
    assert_eq!(status, 200);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str()),
        "{list}"
    );

    // Someone who is not an approver, then alice herself.
    let (status, body) = c
        .call(
            "POST",
            &format!("/requests/{id}/approve"),
            Some("carol"),
            Some(json!({"reason": "sure"})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = c
        .call(
            "POST",
            &format!("/requests/{id}/approve"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(status, 403, "{body}");
    // No credentials before the grant.
    let (status, _) = c
        .call(
            "GET",
            &format!("/requests/{id}/credentials"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(status, 404);

    let (status, body) = c
        .call(
            "POST",
            &format!("/requests/{id}/approve"),
            Some(approver),
            Some(json!({"reason": "ok"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["complete"], true, "{body}");
    assert_eq!(body["request"]["state"], "granted", "{body}");

    // The approver does not get alice's password; alice does, once.
    let (status, _) = c
        .call(
            "GET",
            &format!("/requests/{id}/credentials"),
            Some(approver),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, creds) = c
        .call(
            "GET",
            &format!("/requests/{id}/credentials"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{creds}");
    let (status, _) = c
        .call(
            "GET",
            &format!("/requests/{id}/credentials"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(status, 404, "handed out once");
    let out = cluster
        .psql_with(
            &cluster.conninfo(
                creds["username"].as_str().unwrap(),
                creds["password"].as_str().unwrap(),
                "app",
            ),
            "SELECT count(*) FROM analytics.orders",
        )
        .unwrap();
    assert_eq!(out.trim(), "2");

    // mallory is in no group: refused, with each flow's reasons; nothing stored.
    let (status, body) = c
        .call(
            "POST",
            "/requests",
            Some("mallory"),
            Some(json!({"access": ["postgresql-table:app/analytics/customers=read-only"], "duration": "1h", "justification": "x"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"]["decision"], "refused", "{body}");
    assert!(body["request"].is_null());
    let explanation = body["explanation"].as_str().unwrap();
    assert!(
        explanation.contains("no-pii-analysts") && explanation.contains("read-only-self-serve"),
        "{explanation}"
    );

    // dave is on call: break-glass grants at once and returns the credentials.
    let (status, body) = c
        .call(
            "POST",
            "/requests",
            Some("dave"),
            Some(json!({"access": ["postgresql-table:app/analytics/orders=read-write"], "duration": "30m", "justification": "INC-1"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"]["flow"], "on-call-break-glass", "{body}");
    // The flow audits every statement through pgaudit: without it, the grant is
    // refused rather than made without the audit trail the flow asks for.
    let pgaudit =
        pgwarden_testkit::PgBinaries::locate(None, None).is_ok_and(|b| b.has_library("pgaudit"));
    if pgaudit {
        assert_eq!(body["request"]["state"], "granted", "{body}");
        assert!(body["credentials"]["password"].is_string(), "{body}");
    } else {
        assert_eq!(body["request"]["state"], "failed", "{body}");
        assert!(
            body["request"]["failure"]
                .as_str()
                .unwrap()
                .contains("pgaudit"),
            "{body}"
        );
        assert!(body["credentials"].is_null(), "{body}");
    }

    // Bad input is a 400 naming what to fix; cancel by the requester.
    let (status, body) = c
        .call(
            "POST",
            "/requests",
            Some("alice"),
            Some(json!({"access": ["postgresql-table:app=read-only"], "duration": "1h"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (_, body) = c
        .call(
            "POST",
            "/requests",
            Some("alice"),
            Some(json!({"access": ["postgresql-table:app/analytics/orders=read-only"], "duration": "1h", "justification": "later"})),
        )
        .await;
    let second = body["request"]["id"].as_str().unwrap().to_owned();
    let (status, _) = c
        .call(
            "POST",
            &format!("/requests/{second}/cancel"),
            Some("bob"),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = c
        .call(
            "POST",
            &format!("/requests/{second}/cancel"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "cancelled");
    let (status, body) = c
        .call(
            "POST",
            &format!("/requests/{second}/approve"),
            Some(approver),
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");

    server.abort();
    runtime.shutdown().await;
}
