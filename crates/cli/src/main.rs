//! `pgwarden`: the command line over the pgwarden library.
//!
//! ```text
//! cargo install --path crates/cli            # installs `pgwarden`
//! pgwarden validate --config examples/integration.toml
//! pgwarden conninfo "postgres://alice@db:5433/app?sslmode=require"
//! pgwarden serve --config-dir /etc/pgwarden --metrics-addr 127.0.0.1:9187
//! pgwarden flows validate examples/flows
//! pgwarden request --config integration.toml --requester alice \
//!     --access postgresql-schema:app/s1=read-only --duration 2h --justification INC-42
//! pgwarden requests --config integration.toml --state pending
//! pgwarden approve <ID> --config integration.toml --approver bob
//! pgwarden reject <ID> --config integration.toml --approver bob --reason "not now"
//! pgwarden cancel <ID> --config integration.toml --requester alice
//! ```
//!
//! Every subcommand follows the same conventions: `--config FILE` or `--dsn
//! "<conninfo>"` to name the instance, `--format text|json`, exit 0 on success, 1 when
//! the operation failed (network, TLS, auth, server), 2 for usage or configuration
//! errors; errors go to stderr, one clear sentence first. Every secret-store backend
//! (file, Vault/OpenBao, AWS, GCP, Azure, Kubernetes) is built in.
//!
//! Access requests (`request`, `approve`, `reject`, `cancel`, `requests`) are decided
//! by the access flows the config's `[access_requests]` table names and kept in
//! PostgreSQL, so separate invocations share them. They exit 3 when the flows refuse
//! (no flow matches a request, or a person may not approve, reject or cancel it): an
//! answer, printed with its reasons. Without `--directory`, no identity provider is
//! registered: group conditions are unmet (the reasons say so), user conditions work.
//!
//! Logs go to stderr (stdout keeps each command's output): `--log-level` (or
//! `RUST_LOG`) takes `tracing` directives, `--log-format json` writes one JSON object
//! per event. `serve` logs every audit event (grant id, user, integration, action,
//! duration, error) and every error it meets; `--metrics-addr` exposes pgwarden's
//! metrics for Prometheus on `/metrics`, with `/healthz` and `/readyz`.

mod access;
mod check;
mod conninfo;
mod discover;
mod endpoints;
mod flows;
mod logging;
mod output;
mod requests;
mod runtime;
mod serve;
mod target;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use logging::LogFormat;
use output::{Failure, Format};

/// Just-in-time access to PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "pgwarden", version, about, propagate_version = true)]
struct Cli {
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// What to log, as `tracing` directives (`info`, `warn,pgwarden=debug`);
    /// overrides `RUST_LOG`. Default: serve logs pgwarden's events from info up and
    /// other crates' warnings, the other commands pgwarden's warnings only.
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
    /// How logs are written to stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check an integration config and list every problem in it.
    Validate(validate::Args),
    /// Parse a libpq connection string and print its keywords and values as JSON.
    Conninfo(conninfo::Args),
    /// Connect, then report the server, TLS, the connector's attributes and what it can do.
    Check(check::Args),
    /// List the databases, schemas, tables and roles of the whole instance.
    Discover(discover::Args),
    /// Grant a requester access for a limited time; prints the credentials once.
    Grant(access::GrantArgs),
    /// Revoke a grant completely and report what was removed.
    Revoke(access::GrantIdArgs),
    /// Move a grant's expiry.
    Extend(access::ExtendArgs),
    /// List the grants recorded in the instance.
    List(access::TargetArgs),
    /// Revoke expired grants, finish interrupted revocations, report drift.
    Reconcile(access::TargetArgs),
    /// Once, after upgrading from pgwarden 0.1: seal the plain records it wrote, so
    /// its grants are managed again (trusts the instance's current state).
    AdoptLedger(access::TargetArgs),
    /// Who must approve access to a resource, and why.
    Approvers(runtime::ApproversArgs),
    /// Rotate the connector's own password (stored through the config's [secret]).
    Rotate(runtime::RuntimeArgs),
    /// Run expiry, rotation and reconciliation until Ctrl-C or SIGTERM, for one
    /// integration or every config in a directory; optionally expose metrics.
    Serve(serve::Args),
    /// Check access flows: `flows validate PATH` (a file or a directory).
    Flows(flows::Args),
    /// Ask for access through the access flows; prints the decision and its reasons
    /// (exit 3 when no flow matches), and the credentials once when granted at once.
    Request(requests::RequestArgs),
    /// Approve a pending access request; grants (and prints the credentials once)
    /// when this approval completes the flow's approver policy.
    Approve(requests::DecideArgs),
    /// Reject a pending access request (an approver the flow names).
    Reject(requests::DecideArgs),
    /// Cancel your own pending access request.
    Cancel(requests::CancelArgs),
    /// List access requests, optionally in some states only.
    Requests(requests::ListArgs),
}

fn main() -> ExitCode {
    // Some secret-store clients (Kubernetes) take rustls' process-wide provider; an
    // application sets it once. pgwarden's own connections pass theirs explicitly.
    pgwarden::pg_driver::install_process_default_provider();
    let cli = Cli::parse_from(discover::accept_ndjson(std::env::args_os()));
    let default_logs = match cli.command {
        Command::Serve(_) => logging::SERVE_DEFAULT,
        _ => logging::COMMAND_DEFAULT,
    };
    if let Err(failure) = logging::init(cli.log_level.as_deref(), cli.log_format, default_logs) {
        return failure.report();
    }
    let result = match cli.command {
        Command::Validate(args) => validate::run(&args, cli.format),
        Command::Conninfo(args) => conninfo::run(&args, cli.format),
        Command::Check(args) => block_on(check::run(&args, cli.format)),
        Command::Discover(args) => block_on(discover::run(&args, cli.format)),
        Command::Grant(args) => block_on(access::grant(&args, cli.format)),
        Command::Revoke(args) => block_on(access::revoke(&args, cli.format)),
        Command::Extend(args) => block_on(access::extend(&args, cli.format)),
        Command::List(args) => block_on(access::list(&args, cli.format)),
        Command::Reconcile(args) => block_on(access::reconcile(&args, cli.format)),
        Command::AdoptLedger(args) => block_on(access::adopt_ledger(&args, cli.format)),
        Command::Approvers(args) => block_on(runtime::approvers(&args, cli.format)),
        Command::Rotate(args) => block_on(runtime::rotate(&args, cli.format)),
        Command::Serve(args) => serve_on_all_cores(serve::run(&args)),
        Command::Flows(args) => flows::run(&args, cli.format),
        Command::Request(args) => block_on(requests::request(&args, cli.format)),
        Command::Approve(args) => block_on(requests::approve(&args, cli.format)),
        Command::Reject(args) => block_on(requests::reject(&args, cli.format)),
        Command::Cancel(args) => block_on(requests::cancel(&args, cli.format)),
        Command::Requests(args) => block_on(requests::list(&args, cli.format)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

/// Runs `serve`, on a worker thread per core.
fn serve_on_all_cores<F: std::future::Future<Output = Result<(), Failure>>>(
    f: F,
) -> Result<(), Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))?
        .block_on(f)
}

/// Runs a subcommand that talks to a server.
fn block_on<F: std::future::Future<Output = Result<(), Failure>>>(f: F) -> Result<(), Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))?
        .block_on(f)
}
