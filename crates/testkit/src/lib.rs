//! Throwaway PostgreSQL clusters for pgwarden's tests.
//!
//! pgwarden's promises — exact grants, complete revocation, libpq-exact SSL modes —
//! can only be checked against a real server. This crate gives every test one in about
//! a second: [`TempCluster`] runs the system's own `initdb`, `pg_ctl` and `postgres`
//! (no downloads, no Docker) in a fresh directory under `$TMPDIR/pgwarden-testkit/`,
//! on a random loopback port, with durability switched off for speed.
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
//! Binaries are found on `PATH`, through `pg_config --bindir` or under
//! `/usr/lib/postgresql/*/bin`; `PGWARDEN_TEST_PG_BINDIR` (or
//! [`TempClusterBuilder::bindir`]) overrides ([`PgBinaries::locate`]). The crate is
//! synchronous and Linux-first (`/proc` is used to tell dead owners from live ones).
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
mod error;
mod files;
mod hba;
pub mod moto;
pub mod openbao;
mod pki;
pub mod secret_conformance;
mod server_user;
mod tls;

pub use binaries::{BINDIR_ENV, PgBinaries};
pub use cluster::{LISTEN_ADDRESS, TempCluster, TempClusterBuilder};
pub use error::Error;
pub use hba::HbaPolicy;
pub use moto::Moto;
pub use openbao::OpenBao;
pub use pki::{IssuedCert, TestCa, TestPki};
pub use tls::{ClientCert, ClusterTls, SslSetup};
