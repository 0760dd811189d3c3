//! Logs: `tracing` events to stderr, as text or one JSON object per line; stdout
//! keeps each command's output.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::output::Failure;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event, its fields at the top level.
    Json,
}

/// What `serve` logs when neither `--log-level` nor `RUST_LOG` says: pgwarden's
/// events from info up (every audit event, every error), other crates' warnings.
pub(crate) const SERVE_DEFAULT: &str =
    "warn,pgwarden=info,pgwarden_pg_driver=info,pgwarden_secrets=info,pgwarden_core=info";

/// What the other commands log by default: pgwarden's own warnings and errors only
/// (their result is their output, and the one sentence of a failure comes last).
pub(crate) const COMMAND_DEFAULT: &str =
    "off,pgwarden=warn,pgwarden_pg_driver=warn,pgwarden_secrets=warn,pgwarden_core=warn";

/// Installs the subscriber. The filter is `level` (`--log-level`), else `RUST_LOG`,
/// else `default`; each takes `tracing` directives (`debug`,
/// `warn,pgwarden=debug`, ...).
pub(crate) fn init(level: Option<&str>, format: LogFormat, default: &str) -> Result<(), Failure> {
    let filter = match level {
        Some(l) => EnvFilter::builder()
            .parse(l)
            .map_err(|e| Failure::usage(format!("--log-level {l:?}: {e}")))?,
        None => match std::env::var(EnvFilter::DEFAULT_ENV) {
            Ok(v) if !v.trim().is_empty() => EnvFilter::builder()
                .parse(&v)
                .map_err(|e| Failure::usage(format!("{}={v:?}: {e}", EnvFilter::DEFAULT_ENV)))?,
            _ => EnvFilter::new(default),
        },
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    installed.map_err(|e| Failure::failed(format!("cannot set up logging: {e}")))
}
