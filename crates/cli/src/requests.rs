//! `pgwarden request | approve | reject | cancel | requests`: access requests decided
//! by the integration's access flows, from the shell.
//!
//! Every command opens the integration named by `--config` and the access flows its
//! `[access_requests]` table names; requests are kept in PostgreSQL, so separate
//! invocations (and any other process using the same instance, such as a portal)
//! share them.
//!
//! Identity providers: group conditions and group approvers need a directory. Without
//! `--directory`, none is registered, so a group condition is unmet (the decision
//! says so) while user conditions and user approvers work. `--directory FILE` (JSON,
//! repeatable) registers a fixed directory: `{"source": "okta", "groups": {"dba":
//! ["bob"]}, "users": ["carol"]}`, matched by `source` against the flows' `source`.
//!
//! Exit codes: 0 done; 1 the operation failed (server, store, a grant that failed);
//! 2 usage or configuration errors, unknown request ids, actions the request's state
//! forbids; 3 refused by the flows (no flow matches the request, or the person may
//! not approve, reject or cancel it) — an answer, with its reasons.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgwarden::access::{AccessRequestError, AccessRequests, Decision};
use pgwarden::core::owners::{Directory, InMemoryDirectory};
use pgwarden::core::requests::{RequestState, StoredRequest};
use pgwarden::core::resource::{AccessEntry, PermissionLevel, ResourceType};
use pgwarden::{AccessGrant, ErrorKind, IntegrationOptions, NewAccessRequest};
use pgwarden::{RequestedAccess, Ttl};
use serde_json::{Value, json};

use crate::output::{Failure, Format, GrantOutput, print_json, rfc3339};
use crate::target::Target;

const EXIT_CODES: &str = "Exit codes: 0 done; 1 the operation failed (server, store, a grant that failed); 2 usage or configuration error, unknown request, or an action the request's state forbids; 3 refused by the access flows (no flow matches, or the person may not do this), with the reasons.";

/// The integration and how people are looked up.
#[derive(Debug, clap::Args)]
pub(crate) struct ConfigArgs {
    /// The integration config; its `[access_requests]` table names the flows (a path
    /// relative to the config file) and where requests are kept.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// A fixed identity provider, as JSON: `{"source": "okta", "groups": {"dba":
    /// ["bob"]}, "users": ["carol"]}`; repeat for more. Without one, group conditions
    /// and group approvers are unmet (user ones work).
    #[arg(long = "directory", value_name = "FILE")]
    directories: Vec<PathBuf>,
}

/// Arguments of `pgwarden request`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub(crate) struct RequestArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Who asks (an identity-provider user id or email).
    #[arg(long, value_name = "ID")]
    requester: String,
    /// `<resource-id>=<level>`, e.g. `postgresql-schema:app/s1=read-only`; repeat for more.
    #[arg(
        long = "access",
        value_name = "RESOURCE=LEVEL",
        required_unless_present = "tags"
    )]
    access: Vec<String>,
    /// Every resource of a type carrying a tag: `<type>:<key>=<value>=<level>`, e.g.
    /// `table:team=billing=read-only` (type `database`, `schema`, `table` or `role`,
    /// with or without `postgresql-`); repeat for more.
    #[arg(long = "tag", value_name = "TYPE:KEY=VALUE=LEVEL")]
    tags: Vec<String>,
    /// How long: 90s, 15m, 8h, 7d (at most the matching flow's `grant_duration`).
    #[arg(long, value_name = "DURATION")]
    duration: String,
    /// Why (most flows require it).
    #[arg(long, value_name = "TEXT")]
    justification: Option<String>,
}

/// Arguments of `pgwarden approve` and `pgwarden reject`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub(crate) struct DecideArgs {
    /// The request's id.
    #[arg(value_name = "ID")]
    id: String,
    #[command(flatten)]
    config: ConfigArgs,
    /// Who decides (an identity-provider user id or email).
    #[arg(long, value_name = "ID")]
    approver: String,
    /// Why (required when the flow sets `approver_reason_required`).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

/// Arguments of `pgwarden cancel`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub(crate) struct CancelArgs {
    /// The request's id.
    #[arg(value_name = "ID")]
    id: String,
    #[command(flatten)]
    config: ConfigArgs,
    /// Who cancels: only the request's requester may.
    #[arg(long, value_name = "ID")]
    requester: String,
    /// Why.
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

/// Arguments of `pgwarden requests`.
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Only requests in this state (pending, approved, rejected, granted, revoking,
    /// expired, revoked, failed, cancelled); repeat for more. Default: all.
    #[arg(long = "state", value_name = "STATE")]
    states: Vec<String>,
}

/// The exit code and message of a request error: 3 for a person the flow does not
/// allow; 2 for bad input, unknown ids, forbidden transitions and configuration; 1
/// for the rest.
fn failed(e: &AccessRequestError) -> Failure {
    if matches!(e, AccessRequestError::NotAllowed { .. }) {
        return Failure::refused(e.to_string());
    }
    match e.kind() {
        ErrorKind::InvalidRequest(_)
        | ErrorKind::InvalidState
        | ErrorKind::NotFound
        | ErrorKind::Config => Failure::usage(e.to_string()),
        _ => Failure::failed(e.to_string()),
    }
}

/// A directory from a JSON file: `source`, `groups` (name → members), `users`.
fn directory(path: &Path) -> Result<InMemoryDirectory, Failure> {
    let bad = |why: String| Failure::usage(format!("--directory {}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let doc: Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let Some(map) = doc.as_object() else {
        return Err(bad(
            "expected an object {\"source\": ..., \"groups\": {...}, \"users\": [...]}".into(),
        ));
    };
    if let Some(k) = map
        .keys()
        .find(|k| !["source", "groups", "users"].contains(&k.as_str()))
    {
        return Err(bad(format!(
            "unknown field \"{k}\": use source, groups and users"
        )));
    }
    let Some(source) = map.get("source").and_then(Value::as_str) else {
        return Err(bad(
            "\"source\" must name the identity provider, as the flows' `source` does".into(),
        ));
    };
    let strings = |v: &Value, what: &str| -> Result<Vec<String>, Failure> {
        v.as_array()
            .and_then(|a| {
                a.iter()
                    .map(|x| x.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| bad(format!("{what} must be a list of user ids")))
    };
    let mut dir = InMemoryDirectory::new(source);
    if let Some(groups) = map.get("groups") {
        let Some(groups) = groups.as_object() else {
            return Err(bad(
                "\"groups\" must map each group to its members: {\"dba\": [\"bob\"]}".into(),
            ));
        };
        for (group, members) in groups {
            let members = strings(members, &format!("groups.{group}"))?;
            let members: Vec<&str> = members.iter().map(String::as_str).collect();
            dir = dir.with_group(group, &members);
        }
    }
    if let Some(users) = map.get("users") {
        for u in strings(users, "users")? {
            dir = dir.with_user(&u);
        }
    }
    Ok(dir)
}

/// The integration's access requests, as its config sets them up.
async fn open(args: &ConfigArgs) -> Result<Arc<AccessRequests>, Failure> {
    let mut options = IntegrationOptions::default();
    for path in &args.directories {
        options
            .directories
            .push(Arc::new(directory(path)?) as Arc<dyn Directory>);
    }
    let integration = Target::new(Some(args.config.clone()), None, None)
        .integration(options, true)
        .await?;
    AccessRequests::from_integration(integration)
        .await
        .map_err(|e| failed(&e))
}

/// One `--tag TYPE:KEY=VALUE=LEVEL`.
fn tagged(text: &str) -> Result<RequestedAccess, Failure> {
    let bad = |why: &str| {
        Failure::usage(format!(
            "--tag {text}: {why}; write <type>:<key>=<value>=<level>, e.g. table:team=billing=read-only"
        ))
    };
    let (rtype, rest) = text.split_once(':').ok_or_else(|| bad("no type"))?;
    let (selector, level) = rest.rsplit_once('=').ok_or_else(|| bad("no level"))?;
    let (key, value) = selector
        .split_once('=')
        .ok_or_else(|| bad("no tag value"))?;
    if key.is_empty() || value.is_empty() {
        return Err(bad("empty tag key or value"));
    }
    let resource_type: ResourceType = rtype
        .strip_prefix("postgresql-")
        .unwrap_or(rtype)
        .parse()
        .map_err(|e| Failure::usage(format!("--tag {text}: {e}")))?;
    let level: PermissionLevel = level
        .parse()
        .map_err(|e| Failure::usage(format!("--tag {text}: {e}")))?;
    if !resource_type.levels().contains(&level) {
        return Err(Failure::usage(format!(
            "--tag {text}: {level} is not valid for a {resource_type}: use {}",
            resource_type
                .levels()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(RequestedAccess::Tagged {
        resource_type,
        key: key.to_owned(),
        value: value.to_owned(),
        level,
    })
}

/// How a grant made through a request is printed.
fn grant_output(g: &AccessGrant) -> GrantOutput<'_> {
    GrantOutput {
        grant_id: &g.grant_id,
        requester: &g.requester,
        username: &g.username,
        expires_at: g.expires_at,
        password: g.password.as_ref(),
        access_details: g.access_details.as_deref(),
        created: g.created,
    }
}

/// A request's state in one line: `request <id>: <state>`, with its failure.
fn print_state(r: &StoredRequest) {
    match &r.failure {
        Some(why) if r.state == RequestState::Failed => {
            println!("request {}: {}: {why}", r.id, r.state);
        }
        _ => println!("request {}: {}", r.id, r.state),
    }
}

fn request_json(r: &StoredRequest) -> Value {
    serde_json::to_value(r).unwrap_or_default()
}

/// Exit 1 when the request ended `failed` (its grant could not be made).
fn check_not_failed(r: &StoredRequest) -> Result<(), Failure> {
    if r.state == RequestState::Failed {
        return Err(Failure::failed(format!(
            "access request {} failed: {}",
            r.id,
            r.failure.as_deref().unwrap_or("no reason recorded")
        )));
    }
    Ok(())
}

pub(crate) async fn request(args: &RequestArgs, format: Format) -> Result<(), Failure> {
    let mut access: Vec<RequestedAccess> = args
        .access
        .iter()
        .map(|a| {
            a.parse::<AccessEntry>()
                .map(RequestedAccess::from)
                .map_err(|e| Failure::usage(format!("--access {a}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    for t in &args.tags {
        access.push(tagged(t)?);
    }
    let duration: Ttl = args
        .duration
        .parse()
        .map_err(|e| Failure::usage(format!("--duration: {e}")))?;
    let mut new = NewAccessRequest::new(args.requester.clone(), access, duration);
    if let Some(j) = &args.justification {
        new = new.justification(j.clone());
    }
    let requests = open(&args.config).await?;
    let submitted = requests.submit(new).await.map_err(|e| failed(&e))?;
    match format {
        Format::Json => print_json(&json!({
            "decision": submitted.decision,
            "request": submitted.request.as_ref().map(request_json),
            "grant": submitted.grant.as_ref().map(|g| grant_output(g).json()),
        })),
        Format::Text => {
            println!("{}", submitted.decision);
            if let Some(r) = &submitted.request {
                print_state(r);
            }
            if let Some(g) = &submitted.grant {
                grant_output(g).print_text();
            }
        }
    }
    if let Decision::Refused { .. } = submitted.decision {
        return Err(Failure::refused(format!(
            "access refused for {}: no access flow matches the request (the reasons are on stdout)",
            args.requester
        )));
    }
    submitted.request.as_ref().map_or(Ok(()), check_not_failed)
}

pub(crate) async fn approve(args: &DecideArgs, format: Format) -> Result<(), Failure> {
    let requests = open(&args.config).await?;
    let approved = requests
        .approve(&args.id, &args.approver, args.reason.as_deref())
        .await
        .map_err(|e| failed(&e))?;
    match format {
        Format::Json => print_json(&json!({
            "request": request_json(&approved.request),
            "status": approved.status,
            "grant": approved.grant.as_ref().map(|g| grant_output(g).json()),
        })),
        Format::Text => {
            print_state(&approved.request);
            println!("{}", approved.status);
            if let Some(g) = &approved.grant {
                grant_output(g).print_text();
            }
        }
    }
    check_not_failed(&approved.request)
}

pub(crate) async fn reject(args: &DecideArgs, format: Format) -> Result<(), Failure> {
    let requests = open(&args.config).await?;
    let r = requests
        .reject(&args.id, &args.approver, args.reason.as_deref())
        .await
        .map_err(|e| failed(&e))?;
    print_closed(&r, &args.approver, format);
    Ok(())
}

pub(crate) async fn cancel(args: &CancelArgs, format: Format) -> Result<(), Failure> {
    let requests = open(&args.config).await?;
    let r = requests
        .cancel(&args.id, &args.requester, args.reason.as_deref())
        .await
        .map_err(|e| failed(&e))?;
    print_closed(&r, &args.requester, format);
    Ok(())
}

fn print_closed(r: &StoredRequest, by: &str, format: Format) {
    match format {
        Format::Json => print_json(&request_json(r)),
        Format::Text => println!("request {}: {} by {by}", r.id, r.state),
    }
}

pub(crate) async fn list(args: &ListArgs, format: Format) -> Result<(), Failure> {
    let states = args
        .states
        .iter()
        .map(|s| {
            s.parse::<RequestState>()
                .map_err(|e| Failure::usage(format!("--state: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let requests = open(&args.config).await?;
    let listed = requests.list(&states).await.map_err(|e| failed(&e))?;
    match format {
        Format::Json => print_json(&Value::Array(listed.iter().map(request_json).collect())),
        Format::Text if listed.is_empty() => println!("no access requests"),
        Format::Text => print_table(&listed),
    }
    Ok(())
}

/// Requests as an aligned table: id, state, requester, flow, access, created.
fn print_table(listed: &[StoredRequest]) {
    let rows: Vec<[String; 6]> = listed
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                r.state.to_string(),
                r.requester.clone(),
                r.flow.clone().unwrap_or_else(|| "-".into()),
                r.access
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                rfc3339(r.created_at),
            ]
        })
        .collect();
    let header = ["ID", "STATE", "REQUESTER", "FLOW", "ACCESS", "CREATED"].map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        println!("{}", line.trim_end());
    }
}
