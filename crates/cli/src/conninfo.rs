//! `pgwarden conninfo`: what libpq would make of a connection string.

use pgwarden::core::conninfo::ConnInfo;
use serde_json::{Map, Value};

use crate::output::{Failure, Format, print_json};

/// Arguments of `pgwarden conninfo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A libpq connection string: `key=value ...` or a `postgres://` URI.
    conninfo: String,
    /// Only parse, like libpq's `PQconninfoParse`: skip the checks libpq makes when it
    /// connects (sslmode values, host/port counts, ...).
    #[arg(long)]
    parse_only: bool,
}

pub(crate) fn run(args: &Args, format: Format) -> Result<(), Failure> {
    let info = ConnInfo::parse_unvalidated(&args.conninfo)
        .map_err(|e| Failure::usage(format!("invalid connection string: {e}")))?;
    if !args.parse_only {
        info.validate()
            .map_err(|e| Failure::usage(format!("invalid connection string: {e}")))?;
    }
    let mut object = Map::new();
    for (keyword, value) in info.iter() {
        let shown = if value.is_secret() {
            "***"
        } else {
            value.expose_secret()
        };
        object.insert(keyword.to_owned(), Value::String(shown.to_owned()));
    }
    match format {
        // The flat object is the documented output in both formats: it is what scripts read.
        Format::Json | Format::Text => print_json(&Value::Object(object)),
    }
    Ok(())
}
