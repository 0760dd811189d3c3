//! Output conventions shared by every subcommand.

use std::process::ExitCode;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Human-readable text.
    Text,
    /// JSON on stdout.
    Json,
}

/// A subcommand that did not succeed: the exit code and the sentence for stderr.
#[derive(Debug)]
pub(crate) struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// The operation failed (network, TLS, auth, server): exit 1.
    pub(crate) fn failed(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: message.into(),
        }
    }

    /// Bad arguments or configuration: exit 2.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    /// The access flows said no (a request no flow matches, an approval by someone
    /// the flow does not name): an answer, not a failure; exit 3.
    pub(crate) fn refused(message: impl Into<String>) -> Self {
        Failure {
            code: 3,
            message: message.into(),
        }
    }

    /// A connection error: exit 2 for bad settings, 1 for everything else.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "used as map_err(Failure::from_connect)"
    )]
    pub(crate) fn from_connect(e: pgwarden::pg_driver::ConnectError) -> Self {
        let code = if e.is_config() { 2 } else { 1 };
        Failure {
            code,
            message: format!("{} error: {e}", e.class()),
        }
    }

    /// The sentence for stderr.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// Prints the message to stderr and returns the exit code.
    pub(crate) fn report(self) -> ExitCode {
        if !self.message.is_empty() {
            eprintln!("pgwarden: {}", self.message);
        }
        ExitCode::from(self.code)
    }
}

/// Prints a JSON value on stdout, pretty.
pub(crate) fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}
