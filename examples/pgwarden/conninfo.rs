//! `pgwarden conninfo`: what libpq would make of a connection string.

use crate::output::{Failure, Format};

/// Arguments of `pgwarden conninfo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A libpq connection string: `key=value ...` or a `postgres://` URI.
    conninfo: String,
}

pub(crate) fn run(_args: &Args, _format: Format) -> Result<(), Failure> {
    Err(Failure::usage("conninfo parsing lands with the parser"))
}
