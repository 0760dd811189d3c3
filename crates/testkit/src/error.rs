//! The one error type of the testkit: each variant names the step that failed and
//! carries what a person needs to fix it (the command's stderr, the server log tail).

use std::path::PathBuf;

/// Why a [`TempCluster`](crate::TempCluster) could not be prepared, started or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No PostgreSQL server binaries were found anywhere the testkit looks.
    #[error(
        "postgresql server binaries (initdb, pg_ctl, postgres) not found; searched: {searched}; \
         install them (`apt-get install postgresql`, e.g. postgresql-15) or set {env} to their bin directory",
        env = crate::BINDIR_ENV
    )]
    BinariesNotFound {
        /// Every place that was searched, in order.
        searched: String,
    },

    /// A bin directory given explicitly (builder option or environment variable) lacks a binary.
    #[error(
        "{binary} not found in {bindir} (given by {origin}); point it at a PostgreSQL bin directory \
         such as /usr/lib/postgresql/15/bin"
    )]
    BinaryMissing {
        /// The missing binary.
        binary: &'static str,
        /// The directory that was given.
        bindir: PathBuf,
        /// Who gave it: the builder option or the environment variable.
        origin: &'static str,
    },

    /// The tests run as root, which the server refuses, and there is no `postgres` user to
    /// run it as instead.
    #[error(
        "running as root, but the `postgres` system user to run the server as was not found ({detail}); \
         install postgresql (which creates it) or run the tests as a normal user"
    )]
    NoServerUser {
        /// What looking the user up said.
        detail: String,
    },

    /// The builder's options contradict each other.
    #[error("invalid cluster setup: {reason}")]
    InvalidSetup {
        /// What to change.
        reason: String,
    },

    /// A file or process operation failed.
    #[error("{step} failed: {source}")]
    Io {
        /// What was being done, e.g. "writing `pg_hba.conf`".
        step: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A PostgreSQL program exited unsuccessfully.
    #[error("{step} failed ({status}): {stderr}")]
    Command {
        /// The step, e.g. `initdb` or `pg_ctl stop`.
        step: &'static str,
        /// The exit status.
        status: String,
        /// The program's stderr (and stdout, when stderr was empty).
        stderr: String,
    },

    /// The server was launched but did not accept connections in time.
    #[error("server did not start within {seconds} s: {log_tail}")]
    StartTimeout {
        /// The timeout that expired.
        seconds: u64,
        /// The last lines of the server log.
        log_tail: String,
    },

    /// The server exited during start-up.
    #[error("server failed to start: {log_tail}")]
    StartFailed {
        /// The last lines of the server log.
        log_tail: String,
    },

    /// Every port tried was taken by the time the server bound it.
    #[error("no free loopback port after {attempts} attempts: {log_tail}")]
    NoFreePort {
        /// How many ports were tried.
        attempts: u32,
        /// The last lines of the server log of the final attempt.
        log_tail: String,
    },

    /// Generating a test certificate failed.
    #[error("generating test certificates failed: {0}")]
    Certificate(#[from] rcgen::Error),

    /// `psql` ran but reported an error (connection refused, authentication failed, SQL error).
    #[error("psql failed ({status}): {stderr}")]
    Psql {
        /// psql's exit status (2: bad connection, 3: error in the script).
        status: String,
        /// psql's stderr: the server's or libpq's message.
        stderr: String,
    },
}

impl Error {
    pub(crate) fn io(step: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            step: step.into(),
            source,
        }
    }

    /// The stderr of a failed `psql` run, if this is one: what tests assert on when a
    /// connection must be refused.
    #[must_use]
    pub fn psql_stderr(&self) -> Option<&str> {
        match self {
            Self::Psql { stderr, .. } => Some(stderr),
            _ => None,
        }
    }
}
