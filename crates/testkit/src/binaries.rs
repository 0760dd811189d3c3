//! Finding the PostgreSQL server binaries.
//!
//! All lookup lives in [`PgBinaries::locate`], so that choosing among several installed
//! majors (a future `PGWARDEN_TEST_PG` variable) is a change in one place.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// The environment variable that overrides where the server binaries are looked up.
pub const BINDIR_ENV: &str = "PGWARDEN_TEST_PG_BINDIR";

/// The programs a cluster needs from the server's bin directory.
const SERVER_PROGRAMS: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// Where the PostgreSQL programs of one installation are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    bindir: PathBuf,
    origin: &'static str,
}

impl PgBinaries {
    /// Finds the server binaries, first match wins:
    ///
    /// 1. `explicit` (the builder's [`bindir`](crate::TempClusterBuilder::bindir));
    /// 2. the directory named by `PGWARDEN_TEST_PG_BINDIR`;
    /// 3. `initdb`, `pg_ctl` and `postgres` on `PATH` (symlinks are followed to the real
    ///    bin directory, so Debian's `/usr/local/bin` links lead to `/usr/lib/postgresql/N/bin`);
    /// 4. `pg_config --bindir`;
    /// 5. the highest `/usr/lib/postgresql/<major>/bin`.
    ///
    /// A directory given explicitly (1, 2) must hold all three programs; it is an error,
    /// not a fallback, when it does not.
    pub fn locate(explicit: Option<&Path>) -> Result<Self, Error> {
        if let Some(dir) = explicit {
            return Self::checked(dir, "the builder's bindir option");
        }
        if let Some(dir) = std::env::var_os(BINDIR_ENV).filter(|v| !v.is_empty()) {
            return Self::checked(Path::new(&dir), BINDIR_ENV);
        }
        let mut searched = vec!["PATH".to_owned()];
        if let Some(dir) = on_path() {
            return Ok(Self {
                bindir: dir,
                origin: "PATH",
            });
        }
        searched.push("pg_config --bindir".to_owned());
        if let Some(dir) = from_pg_config().filter(|d| has_server_programs(d)) {
            return Ok(Self {
                bindir: dir,
                origin: "pg_config --bindir",
            });
        }
        searched.push("/usr/lib/postgresql/*/bin".to_owned());
        if let Some(dir) = highest_debian_major(Path::new("/usr/lib/postgresql")) {
            return Ok(Self {
                bindir: dir,
                origin: "/usr/lib/postgresql",
            });
        }
        Err(Error::BinariesNotFound {
            searched: searched.join(", "),
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
        Ok(Self {
            bindir: dir.to_owned(),
            origin,
        })
    }

    /// The bin directory.
    #[must_use]
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// How the bin directory was found (for messages).
    #[must_use]
    pub fn origin(&self) -> &'static str {
        self.origin
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
    /// one on `PATH`.
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
        let err = PgBinaries::locate(Some(dir.path())).unwrap_err();
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
}
