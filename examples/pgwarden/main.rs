//! `pgwarden`: the command line over the pgwarden library.
//!
//! Every subcommand follows the same conventions: `--config FILE` or `--dsn
//! "<conninfo>"` to name the instance, `--format text|json`, exit 0 on success, 1 when
//! the operation failed (network, TLS, auth, server), 2 for usage or configuration
//! errors; errors go to stderr, one clear sentence first.
//!
//! ```text
//! cargo run --example pgwarden -- validate --config examples/integration.toml
//! cargo run --example pgwarden -- conninfo "postgres://alice@db:5433/app?sslmode=require"
//! ```

mod access;
mod check;
mod conninfo;
mod discover;
mod output;
mod runtime;
mod target;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use output::{Failure, Format};

/// Just-in-time access to PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "pgwarden", version, about, propagate_version = true)]
struct Cli {
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    format: Format,
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
    /// Run expiry, rotation and reconciliation until Ctrl-C or SIGTERM.
    Serve(runtime::RuntimeArgs),
}

fn main() -> ExitCode {
    // Some secret-store clients (Kubernetes) take rustls' process-wide provider; an
    // application sets it once. pgwarden's own connections pass theirs explicitly.
    pgwarden::pg_driver::tls::install_process_default_provider();
    let cli = Cli::parse_from(discover::accept_ndjson(std::env::args_os()));
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
        Command::Serve(args) => block_on(runtime::serve(&args, cli.format)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

/// Runs a subcommand that talks to a server.
fn block_on<F: std::future::Future<Output = Result<(), Failure>>>(f: F) -> Result<(), Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))?
        .block_on(f)
}
