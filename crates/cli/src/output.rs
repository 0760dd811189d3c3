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

/// A time as RFC 3339, as every subcommand prints times.
pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A grant as `grant`, `request` and `approve` print it: the password, when the call
/// made it, shown once on stdout to whoever ran the command, never logged.
pub(crate) struct GrantOutput<'a> {
    pub(crate) grant_id: &'a str,
    pub(crate) requester: &'a str,
    pub(crate) username: &'a str,
    pub(crate) expires_at: time::OffsetDateTime,
    pub(crate) password: Option<&'a pgwarden::SecretString>,
    pub(crate) access_details: Option<&'a str>,
    pub(crate) created: bool,
}

impl GrantOutput<'_> {
    /// As JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        use pgwarden::ExposeSecret;
        serde_json::json!({
            "grant_id": self.grant_id,
            "username": self.username,
            "password": self.password.map(|p| p.expose_secret().to_owned()),
            "expires_at": rfc3339(self.expires_at),
            "access_details": self.access_details,
            "created": self.created,
        })
    }

    /// As text.
    pub(crate) fn print_text(&self) {
        use pgwarden::ExposeSecret;
        println!(
            "grant {} for {}: user {} until {}",
            self.grant_id,
            self.requester,
            self.username,
            rfc3339(self.expires_at)
        );
        match self.password {
            Some(p) => println!("password (shown once): {}", p.expose_secret()),
            None => println!(
                "password: unchanged (this grant already existed or the user keeps theirs)"
            ),
        }
        if let Some(d) = self.access_details {
            println!("{d}");
        }
    }
}
