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

mod check;
mod conninfo;
mod output;
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => validate::run(&args, cli.format),
        Command::Conninfo(args) => conninfo::run(&args, cli.format),
        Command::Check(args) => block_on(check::run(&args, cli.format)),
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
