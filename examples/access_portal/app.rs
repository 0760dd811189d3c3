//! The access portal's HTTP API: an axum router over [`pgwarden::AccessRequests`].
//!
//! | method and path | who | what |
//! | --- | --- | --- |
//! | `POST /requests` | requester | submit `{access, duration, justification}`; returns the decision, the request and, when no approval is needed, the credentials |
//! | `GET /requests?state=pending` | anyone | list requests (all states when `state` is absent) |
//! | `GET /requests/{id}` | anyone | one request |
//! | `POST /requests/{id}/approve` | approver | `{reason}`; the approval that completes the policy grants |
//! | `POST /requests/{id}/reject` | approver | `{reason}` |
//! | `POST /requests/{id}/cancel` | requester | `{reason}` |
//! | `GET /requests/{id}/credentials` | requester | the grant's login and password, once |
//!
//! Who is calling comes from the `x-user` header. That is for the demo only: a real
//! portal takes the caller's identity from its single sign-on, never from the client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pgwarden::core::requests::{RequestState, StoredRequest};
use pgwarden::{
    AccessEntry, AccessGrant, AccessRequestError, AccessRequests, ErrorKind, ExposeSecret,
    NewAccessRequest,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// The portal's state: the requests, and passwords waiting for their requester.
#[derive(Clone)]
pub(crate) struct Portal {
    requests: Arc<AccessRequests>,
    /// Grants made by an approval, kept until their requester fetches the password
    /// once. In memory: a portal with several replicas would hand it over another way.
    waiting: Arc<Mutex<HashMap<String, AccessGrant>>>,
}

/// The portal's routes.
pub(crate) fn router(requests: Arc<AccessRequests>) -> Router {
    let portal = Portal {
        requests,
        waiting: Arc::default(),
    };
    Router::new()
        .route("/requests", post(submit).get(list))
        .route("/requests/{id}", get(show))
        .route("/requests/{id}/approve", post(approve))
        .route("/requests/{id}/reject", post(reject))
        .route("/requests/{id}/cancel", post(cancel))
        .route("/requests/{id}/credentials", get(credentials))
        .with_state(portal)
}

/// An error as JSON, with the HTTP status its kind calls for.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<AccessRequestError> for ApiError {
    fn from(e: AccessRequestError) -> Self {
        let status = match e.kind() {
            ErrorKind::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Denied => StatusCode::FORBIDDEN,
            ErrorKind::InvalidState | ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

/// The caller, from the demo's `x-user` header.
fn caller(headers: &HeaderMap) -> Result<String, ApiError> {
    headers
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "set the x-user header".into()))
}

fn request_json(r: &StoredRequest) -> Value {
    json!({
        "id": r.id,
        "state": r.state,
        "requester": r.requester,
        "access": r.access.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "duration": r.duration.to_string(),
        "justification": r.justification,
        "flow": r.flow,
        "approvals": r.approvals.iter().map(|v| json!({"by": v.by, "reason": v.reason})).collect::<Vec<_>>(),
        "rejection": r.rejection.as_ref().map(|v| json!({"by": v.by, "reason": v.reason})),
        "failure": r.failure,
        "username": r.username,
        "expires_at": r.expires_at.map(|t| t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()),
    })
}

fn credentials_json(g: &AccessGrant) -> Value {
    json!({
        "username": g.username,
        "password": g.password.as_ref().map(|p| p.expose_secret().to_owned()),
        "expires_at": g.expires_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "access_details": g.access_details,
    })
}

#[derive(Deserialize)]
struct SubmitBody {
    access: Vec<String>,
    duration: String,
    justification: Option<String>,
}

async fn submit(
    State(portal): State<Portal>,
    headers: HeaderMap,
    Json(body): Json<SubmitBody>,
) -> Result<Json<Value>, ApiError> {
    let requester = caller(&headers)?;
    let access = body
        .access
        .iter()
        .map(|a| {
            a.parse::<AccessEntry>()
                .map_err(|e| bad_request(format!("access {a:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let duration = body
        .duration
        .parse()
        .map_err(|e| bad_request(format!("duration: {e}")))?;
    let mut new = NewAccessRequest::new(requester, access, duration);
    if let Some(j) = body.justification {
        new = new.justification(j);
    }
    let submitted = portal.requests.submit(new).await?;
    Ok(Json(json!({
        "decision": submitted.decision,
        "explanation": submitted.decision.to_string(),
        "request": submitted.request.as_ref().map(request_json),
        // Granted at once (no approval needed): the requester is the caller.
        "credentials": submitted.grant.as_ref().map(credentials_json),
    })))
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
}

async fn list(
    State(portal): State<Portal>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let states = match q.state.as_deref() {
        None => Vec::new(),
        Some(s) => vec![
            s.parse::<RequestState>()
                .map_err(|e| bad_request(e.to_string()))?,
        ],
    };
    let requests = portal.requests.list(&states).await?;
    Ok(Json(json!(
        requests.iter().map(request_json).collect::<Vec<_>>()
    )))
}

async fn show(
    State(portal): State<Portal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(request_json(&portal.requests.get(&id).await?)))
}

#[derive(Deserialize, Default)]
struct ReasonBody {
    reason: Option<String>,
}

async fn approve(
    State(portal): State<Portal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<ReasonBody>>,
) -> Result<Json<Value>, ApiError> {
    let approver = caller(&headers)?;
    let reason = body.map(|b| b.0.reason).unwrap_or_default();
    let outcome = portal
        .requests
        .approve(&id, &approver, reason.as_deref())
        .await?;
    if let Some(grant) = outcome.grant {
        // The password is the requester's, not the approver's: kept for them.
        portal
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, grant);
    }
    Ok(Json(json!({
        "request": request_json(&outcome.request),
        "complete": outcome.status.complete,
        "missing": outcome.status.missing,
    })))
}

async fn reject(
    State(portal): State<Portal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<ReasonBody>>,
) -> Result<Json<Value>, ApiError> {
    close(&portal, &headers, &id, body, true).await
}

async fn cancel(
    State(portal): State<Portal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<ReasonBody>>,
) -> Result<Json<Value>, ApiError> {
    close(&portal, &headers, &id, body, false).await
}

/// Rejects (an approver) or cancels (the requester) pending request `id`.
async fn close(
    portal: &Portal,
    headers: &HeaderMap,
    id: &str,
    body: Option<Json<ReasonBody>>,
    reject: bool,
) -> Result<Json<Value>, ApiError> {
    let who = caller(headers)?;
    let reason = body.and_then(|b| b.0.reason);
    let r = if reject {
        portal.requests.reject(id, &who, reason.as_deref()).await?
    } else {
        portal.requests.cancel(id, &who, reason.as_deref()).await?
    };
    Ok(Json(request_json(&r)))
}

async fn credentials(
    State(portal): State<Portal>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let who = caller(&headers)?;
    let request = portal.requests.get(&id).await?;
    if request.requester != who {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "only the requester may fetch the credentials".into(),
        ));
    }
    let grant = portal
        .waiting
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&id);
    match grant {
        Some(g) => Ok(Json(credentials_json(&g))),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no credentials waiting for request {id}: they are handed out once, after the grant"
            ),
        )),
    }
}
