//! `pgwarden discover`: the databases, schemas, tables and roles of an instance.
//!
//! Output, by `--format`:
//! - `text`: one line per resource (id, kind, owner, tags), then a count;
//! - `json`: `{"resources": [...], "errors": [...]}`, resources sorted by id;
//! - `ndjson`: one JSON object per line as discovered (nothing is held in memory):
//!   resources, then — wherever they occur — database errors as
//!   `{"type": "error", "database": .., "class": .., "message": ..}`.
//!
//! A resource is `{id, type, name, database, schema, kind, owner, comment, tags}`, plus
//! `partitions` on a partitioned table and `attributes` on a role. A database that could
//! not be read (no CONNECT, connection limit, dropped meanwhile) is reported on stderr
//! and in the JSON, and discovery goes on: the exit code stays 0. Exit 1 when nothing
//! could be discovered (the connector's database unreachable), 2 for bad arguments or
//! settings.

use std::ffi::OsString;
use std::io::{BufWriter, Write};

use pgwarden::core::resource::ResourceType;
use pgwarden::pg_driver::{
    ConnectOptions, Connector, DEFAULT_MAX_CONNECTIONS, DatabaseFailure, Discovered,
    DiscoveryError, DiscoveryOptions, Resource, discover, discover_stream,
};
use serde_json::json;

use crate::output::{Failure, Format, print_json};
use crate::target::Target;

/// The hidden flag `--format ndjson` turns into (see [`accept_ndjson`]).
const NDJSON_FLAG: &str = "--ndjson";

/// Arguments of `pgwarden discover`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Also: --format ndjson prints one JSON object per line as discovered.")]
pub(crate) struct Args {
    #[command(flatten)]
    target: Target,
    /// Resource types, comma-separated: database, schema, table, role (default: the
    /// config's `discovery`, else all).
    #[arg(long, value_delimiter = ',', value_name = "TYPES")]
    types: Option<Vec<ResourceType>>,
    /// How many databases to read at once, each over its own connection.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// One JSON object per line (what `--format ndjson` becomes).
    #[arg(long = "ndjson", hide = true)]
    ndjson: bool,
}

/// Lets `--format ndjson` through for `discover`: the global `--format` knows only
/// `text` and `json`, so `ndjson` becomes `--format json` plus the hidden `--ndjson`
/// flag of this subcommand. Other arguments pass unchanged.
pub(crate) fn accept_ndjson(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    // The subcommand is the first argument that is neither a flag nor `--format`'s value.
    let mut subcommand = None;
    let mut i = 1;
    while i < args.len() {
        let arg = args[i].to_string_lossy();
        if arg == "--format" {
            i += 2;
        } else if arg.starts_with('-') {
            i += 1;
        } else {
            subcommand = Some(arg.into_owned());
            break;
        }
    }
    if subcommand.as_deref() != Some("discover") {
        return args;
    }
    let mut ndjson = false;
    for i in 1..args.len() {
        if args[i] == "--format=ndjson" {
            args[i] = "--format=json".into();
            ndjson = true;
        } else if args[i] == "--format" && args.get(i + 1).is_some_and(|v| v == "ndjson") {
            args[i + 1] = "json".into();
            ndjson = true;
        }
    }
    if ndjson {
        args.push(NDJSON_FLAG.into());
    }
    args
}

pub(crate) async fn run(args: &Args, format: Format) -> Result<(), Failure> {
    let (info, config) = args.target.resolve()?;
    let connector =
        Connector::new(&info, &ConnectOptions::default()).map_err(Failure::from_connect)?;
    let types = match (&args.types, &config) {
        (Some(types), _) => types.clone(),
        (None, Some(config)) => config.discovery.clone(),
        (None, None) => ResourceType::ALL.to_vec(),
    };
    if args.max_connections == 0 {
        return Err(Failure::usage("--max-connections must be at least 1"));
    }
    let options = DiscoveryOptions {
        types,
        max_connections: args.max_connections,
        ..DiscoveryOptions::default()
    };
    if args.ndjson {
        return ndjson(&connector, &options).await;
    }
    let result = discover(&connector, &options).await.map_err(fatal)?;
    for failure in &result.failures {
        report(failure);
    }
    match format {
        Format::Json => print_json(&json!({
            "resources": result.resources,
            "errors": result.failures,
        })),
        Format::Text => {
            let mut out = BufWriter::new(std::io::stdout().lock());
            for resource in &result.resources {
                writeln!(out, "{}", text_line(resource)).map_err(write_failed)?;
            }
            let count = |t| result.of_type(t).count();
            writeln!(
                out,
                "{} resources: {} databases, {} schemas, {} tables, {} roles{}",
                result.resources.len(),
                count(ResourceType::Database),
                count(ResourceType::Schema),
                count(ResourceType::Table),
                count(ResourceType::Role),
                match result.failures.len() {
                    0 => String::new(),
                    n => format!("; {n} databases could not be read"),
                }
            )
            .map_err(write_failed)?;
            out.flush().map_err(write_failed)?;
        }
    }
    Ok(())
}

/// Streams one JSON object per line; memory stays flat however large the instance.
async fn ndjson(connector: &Connector, options: &DiscoveryOptions) -> Result<(), Failure> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut stream = discover_stream(connector, options);
    while let Some(item) = stream.next_item().await.transpose().map_err(fatal)? {
        let line = match item {
            Discovered::Resource(resource) => serde_json::to_string(&resource),
            Discovered::Failure(failure) => {
                report(&failure);
                serde_json::to_string(&json!({
                    "type": "error",
                    "database": failure.database,
                    "class": failure.class,
                    "message": failure.message,
                }))
            }
        }
        .map_err(|e| Failure::failed(format!("cannot encode a resource as JSON: {e}")))?;
        writeln!(out, "{line}").map_err(write_failed)?;
    }
    out.flush().map_err(write_failed)
}

fn text_line(r: &Resource) -> String {
    let mut parts = vec![r.id.to_string(), r.kind.to_string()];
    if let Some(owner) = &r.owner {
        parts.push(format!("owner={owner}"));
    }
    if let Some(a) = &r.attributes {
        let flags: Vec<&str> = [
            (a.login, "login"),
            (a.superuser, "superuser"),
            (a.createrole, "createrole"),
            (a.createdb, "createdb"),
            (a.replication, "replication"),
            (a.bypassrls, "bypassrls"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if !flags.is_empty() {
            parts.push(flags.join(","));
        }
        if !a.member_of.is_empty() {
            parts.push(format!("member_of={}", a.member_of.join(",")));
        }
    }
    if !r.partitions.is_empty() {
        parts.push(format!("partitions={}", r.partitions.len()));
    }
    if !r.tags.is_empty() {
        let tags: Vec<String> = r.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.push(format!("[{}]", tags.join(" ")));
    }
    parts.join("  ")
}

fn report(failure: &DatabaseFailure) {
    eprintln!("pgwarden: {} error: {failure}", failure.class);
}

fn fatal(e: DiscoveryError) -> Failure {
    match e {
        DiscoveryError::Connect { source, .. } => Failure::from_connect(source),
        e if e.is_config() => Failure::usage(e.to_string()),
        e => Failure::failed(format!("{} error: {e}", e.class())),
    }
}

#[allow(
    clippy::needless_pass_by_value,
    reason = "called through map_err, which passes the error by value"
)]
fn write_failed(e: std::io::Error) -> Failure {
    Failure::failed(format!("cannot write the output: {e}"))
}
