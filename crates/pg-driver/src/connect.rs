//! Connecting as libpq does: every SSL mode, several hosts, client certificates.
//!
//! A [`Connector`] is prepared once from a [`ConnInfo`] (validation, TLS
//! configuration, defaults) and then connects as often as needed — directly with
//! [`Connector::connect`] or through a pool (see [`crate::pool`]). Each connection
//! tries the hosts in order; on each host, the transports the SSL mode allows:
//!
//! | sslmode | attempts |
//! |---|---|
//! | disable | plaintext |
//! | allow | plaintext, then TLS if that failed for any reason |
//! | prefer | TLS, then plaintext if that failed for any reason |
//! | require, verify-ca, verify-full | TLS |
//!
//! "Any reason" is libpq's rule and differs from tokio-postgres, which falls back only
//! when the server answers "no TLS": a failed handshake, or a `pg_hba.conf` that rejects
//! `hostssl`/`hostnossl`, also moves on to the next attempt. Unix-socket hosts ignore
//! `sslmode`, as in libpq.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pgwarden_core::conninfo::{ConnInfo, HostEntry};
use pgwarden_core::ssl::{RootCertSource, SslMode, SslNegotiation};
use rustls::ClientConfig;
use rustls::crypto::CryptoProvider;
use secrecy::ExposeSecret;
use tokio::task::JoinHandle;
use tokio_postgres::config::{ChannelBinding, SslMode as PgSslMode, TargetSessionAttrs};
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{ConnectError, most_relevant};
use crate::tls::{CertMode, PemSource, TlsSettings, TlsSetupError, TlsVersion, default_provider};

/// The `application_name` sent when the connection string names none.
pub const DEFAULT_APPLICATION_NAME: &str = "pgwarden";

/// How to connect, beyond what the connection string says.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The rustls crypto provider. Always explicit: never the process default.
    pub provider: Arc<CryptoProvider>,
    /// Home directory for libpq's defaults (`~/.postgresql/root.crt`,
    /// `postgresql.crt`, `postgresql.key`); `None` disables those defaults.
    pub home_dir: Option<PathBuf>,
    /// `application_name` when the string sets neither it nor `fallback_application_name`.
    pub application_name: String,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            provider: default_provider(),
            home_dir: std::env::var_os("HOME").map(PathBuf::from),
            application_name: DEFAULT_APPLICATION_NAME.to_owned(),
        }
    }
}

/// A live connection and how it was made.
#[derive(Debug)]
pub struct Connection {
    /// The tokio-postgres client.
    pub client: Client,
    /// Whether the session is encrypted.
    pub tls: bool,
    /// The `host:port` (or socket path) connected to.
    pub target: String,
    /// The task driving the connection; it ends when the client is dropped.
    pub task: JoinHandle<()>,
}

impl std::ops::Deref for Connection {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

/// One transport to try on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Plain,
    Tls,
}

/// A prepared, validated way to reach one PostgreSQL instance.
#[derive(Clone)]
pub struct Connector {
    base: tokio_postgres::Config,
    hosts: Vec<HostEntry>,
    mode: SslMode,
    negotiation: SslNegotiation,
    tls: Result<Arc<ClientConfig>, Arc<TlsSetupError>>,
}

impl std::fmt::Debug for Connector {
    /// Never prints the password (tokio-postgres' `Config` Debug redacts it too).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("hosts", &self.hosts)
            .field("mode", &self.mode)
            .field("negotiation", &self.negotiation)
            .field("tls_ready", &self.tls.is_ok())
            .finish_non_exhaustive()
    }
}

fn config_error(message: impl Into<String>) -> ConnectError {
    ConnectError::Config {
        message: message.into(),
    }
}

fn file_if_exists(home: Option<&Path>, name: &str) -> Option<PathBuf> {
    let path = home?.join(".postgresql").join(name);
    path.is_file().then_some(path)
}

/// The operating-system user name, which libpq uses when no `user` is given.
fn os_user_name() -> Option<String> {
    let uid = rustix::process::geteuid().as_raw().to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)? == uid).then(|| name.to_owned())
    })
}

impl Connector {
    /// Prepares connections from a connection string (validated here). Env defaults
    /// (`PGHOST`, ...) are not applied: call [`ConnInfo::with_process_env_defaults`]
    /// first to get libpq's behaviour.
    pub fn new(info: &ConnInfo, options: &ConnectOptions) -> Result<Self, ConnectError> {
        info.validate().map_err(|e| config_error(e.to_string()))?;
        let mode = info.ssl_mode().map_err(|e| config_error(e.to_string()))?;
        let negotiation = info
            .ssl_negotiation()
            .map_err(|e| config_error(e.to_string()))?;
        let hosts = info.hosts().map_err(|e| config_error(e.to_string()))?;

        let user = match info.user() {
            Some(u) => u.to_owned(),
            None => os_user_name().ok_or_else(|| {
                config_error("no user given and the operating-system user is unknown: set user")
            })?,
        };
        let mut base = tokio_postgres::Config::new();
        base.user(&user);
        base.dbname(info.dbname().unwrap_or(&user));
        if let Some(password) = info.password() {
            base.password(password.expose_secret());
        }
        base.application_name(info.application_name().unwrap_or(&options.application_name));
        if let Some(o) = info.get("options").filter(|o| !o.is_empty()) {
            base.options(o);
        }
        if let Some(t) = info
            .connect_timeout()
            .map_err(|e| config_error(e.to_string()))?
        {
            // libpq waits at least 2 s per host.
            base.connect_timeout(t.max(Duration::from_secs(2)));
        }
        base.channel_binding(match info.get("channel_binding") {
            Some("disable") => ChannelBinding::Disable,
            Some("require") => ChannelBinding::Require,
            _ => ChannelBinding::Prefer,
        });
        base.target_session_attrs(match info.get("target_session_attrs") {
            Some("read-write" | "primary") => TargetSessionAttrs::ReadWrite,
            Some("read-only" | "standby") => TargetSessionAttrs::ReadOnly,
            _ => TargetSessionAttrs::Any,
        });
        if let Some(v) = info.get("keepalives") {
            base.keepalives(v != "0");
        }
        if let Some(secs) = info
            .get("keepalives_idle")
            .and_then(|v| v.parse::<u64>().ok())
        {
            base.keepalives_idle(Duration::from_secs(secs));
        }
        base.ssl_negotiation(match negotiation {
            SslNegotiation::Direct => tokio_postgres::config::SslNegotiation::Direct,
            SslNegotiation::Postgres => tokio_postgres::config::SslNegotiation::Postgres,
        });

        let home = options.home_dir.as_deref();
        let root_cert = info.root_cert().or_else(|| {
            file_if_exists(home, "root.crt").map(|p| RootCertSource::File(p.display().to_string()))
        });
        let source = |key: &str, default: &str| {
            info.get(key)
                .filter(|v| !v.is_empty())
                .map(PemSource::parse)
                .or_else(|| file_if_exists(home, default).map(PemSource::File))
        };
        // libpq skips a certificate file that does not exist, even one named explicitly.
        let client_cert = source("sslcert", "postgresql.crt")
            .filter(|s| !matches!(s, PemSource::File(p) if !p.exists()));
        let client_key = client_cert.as_ref().and(source("sslkey", "postgresql.key"));
        let settings = TlsSettings {
            mode,
            root_cert,
            client_cert,
            client_key,
            cert_mode: match info.get("sslcertmode") {
                Some("disable") => CertMode::Disable,
                Some("require") => CertMode::Require,
                _ => CertMode::Allow,
            },
            sni: info.get("sslsni") != Some("0"),
            min_version: TlsVersion::parse(
                info.get("ssl_min_protocol_version").unwrap_or("TLSv1.2"),
            )?,
            max_version: TlsVersion::parse(info.get("ssl_max_protocol_version").unwrap_or(""))?,
        };
        let tls = settings
            .client_config(&options.provider)
            .map(Arc::new)
            .map_err(Arc::new);
        // Modes that cannot fall back to plaintext fail now on a TLS setup problem.
        if mode.requires_tls()
            && let Err(e) = &tls
        {
            return Err(config_error(e.to_string()));
        }
        Ok(Connector {
            base,
            hosts,
            mode,
            negotiation,
            tls,
        })
    }

    /// The same connection settings, for another database of the instance.
    #[must_use]
    pub fn for_database(&self, dbname: &str) -> Connector {
        let mut other = self.clone();
        other.base.dbname(dbname);
        other
    }

    /// The database connections go to.
    #[must_use]
    pub fn database(&self) -> &str {
        self.base.get_dbname().unwrap_or_default()
    }

    /// The effective SSL mode.
    #[must_use]
    pub fn ssl_mode(&self) -> SslMode {
        self.mode
    }

    /// A tokio-postgres config for the first host, without TLS settings (for tools
    /// that want to display or reuse it; connections go through [`Connector::connect`]).
    #[must_use]
    pub fn base_config(&self) -> &tokio_postgres::Config {
        &self.base
    }

    fn transports(&self, host: &HostEntry) -> &'static [Transport] {
        if host.is_unix_socket() {
            return &[Transport::Plain];
        }
        match self.mode {
            SslMode::Disable => &[Transport::Plain],
            SslMode::Allow => &[Transport::Plain, Transport::Tls],
            SslMode::Prefer => &[Transport::Tls, Transport::Plain],
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => &[Transport::Tls],
        }
    }

    /// Connects: hosts in order, transports as the SSL mode says. On failure, the most
    /// telling error, with the other attempts noted.
    pub async fn connect(&self) -> Result<Connection, ConnectError> {
        self.connect_raw().await.map_err(|failures| {
            let mut error = most_relevant(
                failures
                    .into_iter()
                    .map(|f| match f {
                        AttemptFailure::Setup(how, e) => {
                            (how, ConnectError::TlsSetup(clone_setup_error(&e)))
                        }
                        AttemptFailure::Driver(how, target, e) => {
                            (how, ConnectError::classify(&target, &e))
                        }
                    })
                    .collect(),
            );
            if self.negotiation == SslNegotiation::Direct && error.is_early_hangup() {
                error.append_detail(
                    " (sslnegotiation=direct needs PostgreSQL 17 or later: older servers close the connection when the first bytes are a TLS handshake; use sslnegotiation=postgres with them)",
                );
            }
            error
        })
    }

    /// Like [`Connector::connect`] but keeps tokio-postgres' own errors (for the pool).
    pub(crate) async fn connect_raw(&self) -> Result<Connection, Vec<AttemptFailure>> {
        let mut failures = Vec::new();
        for host in &self.hosts {
            let target = describe(host);
            for &transport in self.transports(host) {
                let how = format!(
                    "{target} {}",
                    if transport == Transport::Tls {
                        "with TLS"
                    } else {
                        "without TLS"
                    }
                );
                let mut config = self.base.clone();
                apply_host(&mut config, host);
                let attempt = match transport {
                    Transport::Plain => {
                        config.ssl_mode(PgSslMode::Disable);
                        config.connect(NoTls).await.map(|(client, conn)| {
                            (client, tokio::spawn(async move { drop(conn.await) }))
                        })
                    }
                    Transport::Tls => {
                        let tls = match &self.tls {
                            Ok(t) => t.clone(),
                            Err(e) => {
                                failures.push(AttemptFailure::Setup(how, e.clone()));
                                continue;
                            }
                        };
                        config.ssl_mode(PgSslMode::Require);
                        let make = MakeRustlsConnect::new((*tls).clone());
                        config.connect(make).await.map(|(client, conn)| {
                            (client, tokio::spawn(async move { drop(conn.await) }))
                        })
                    }
                };
                match attempt {
                    Ok((client, task)) => {
                        tracing::debug!(target = %target, tls = transport == Transport::Tls, "connected");
                        return Ok(Connection {
                            client,
                            tls: transport == Transport::Tls,
                            target,
                            task,
                        });
                    }
                    Err(e) => {
                        let unreachable = is_unreachable(&e);
                        tracing::debug!(attempt = %how, error = %e, "connection attempt failed");
                        failures.push(AttemptFailure::Driver(how, target.clone(), e));
                        // Nothing listens: another transport on the same host cannot help.
                        if unreachable {
                            break;
                        }
                    }
                }
            }
        }
        Err(failures)
    }
}

/// Why one attempt failed.
#[derive(Debug)]
pub(crate) enum AttemptFailure {
    /// TLS could not be configured, so the TLS attempt was skipped.
    Setup(String, Arc<TlsSetupError>),
    /// The driver failed: attempt description, target, error.
    Driver(String, String, tokio_postgres::Error),
}

fn clone_setup_error(e: &TlsSetupError) -> TlsSetupError {
    // TlsSetupError holds io::Error, which is not Clone: keep the message.
    TlsSetupError::Rustls(rustls::Error::General(e.to_string()))
}

fn is_unreachable(e: &tokio_postgres::Error) -> bool {
    use std::error::Error as _;
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
                    | std::io::ErrorKind::AddrNotAvailable
            );
        }
        source = s.source();
    }
    false
}

/// libpq's default socket directory on Debian builds, else `/tmp`.
fn default_socket_dir() -> &'static str {
    if Path::new("/var/run/postgresql").is_dir() {
        "/var/run/postgresql"
    } else {
        "/tmp"
    }
}

fn describe(host: &HostEntry) -> String {
    let name = host
        .host
        .as_deref()
        .or(host.hostaddr.as_deref())
        .unwrap_or_else(|| default_socket_dir());
    if name.contains(':') && !name.starts_with('/') {
        format!("[{name}]:{}", host.port)
    } else {
        format!("{name}:{}", host.port)
    }
}

fn apply_host(config: &mut tokio_postgres::Config, host: &HostEntry) {
    config.port(host.port);
    match (&host.host, &host.hostaddr) {
        (_, Some(addr)) => {
            // The name (if any) is what the certificate is checked against.
            config.host(host.host.as_deref().unwrap_or(addr));
            if let Ok(ip) = addr.parse() {
                config.hostaddr(ip);
            }
        }
        (Some(h), None) if !h.starts_with('/') => {
            config.host(h);
        }
        (Some(dir), None) => {
            config.host_path(dir);
        }
        (None, None) => {
            config.host_path(default_socket_dir());
        }
    }
}
