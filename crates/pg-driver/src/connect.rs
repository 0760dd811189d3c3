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
//!
//! As in libpq, a host name is resolved first and each of its addresses is tried in
//! turn (each with the transports above), and `connect_timeout` (at least 2 s) bounds the
//! whole attempt on one address — TCP connect, TLS handshake, start-up and
//! authentication, for all its transports together; when it expires the next address or
//! host is tried.
//!
//! # Where pgwarden's defaults differ from libpq's
//!
//! A library that must revoke access on time cannot wait forever for a peer, so when the
//! connection string says nothing, [`ConnectOptions`] supplies bounds libpq does not
//! have. Whatever the string sets wins, with libpq's meaning:
//!
//! | setting | string sets nothing | libpq |
//! |---|---|---|
//! | `connect_timeout` | [`ConnectOptions::default_connect_timeout`], 10 s | no limit |
//! | `keepalives_idle`, `_interval`, `_count` | [`ConnectOptions::default_keepalives`]: 30 s, 10 s, 3 | the system's (2 h, 75 s, 9 on Linux) |
//! | `statement_timeout` (server side) | [`ConnectOptions::statement_timeout`], 60 s | the server's |
//!
//! `connect_timeout=0` (or negative) in the string keeps libpq's "no limit": it was asked
//! for. With the default connect timeout, resolving a host name is bounded by it too (libpq
//! leaves that to the system resolver); a name that does not resolve in time fails like an
//! address that does not answer, and the next host is tried.
//!
//! Only some failures move on to another address or host, as in libpq ("if a connection
//! is established successfully but authentication fails, the remaining hosts in the list
//! are not tried"; `PQconnectPoll`):
//!
//! | failure on one address | then |
//! |---|---|
//! | connection refused, host unreachable, name not resolved | the next address, then host |
//! | `connect_timeout` expired | the next address, then host |
//! | SQLSTATE 57P03 "cannot connect now" (starting up, shutting down, recovery) | the next host |
//! | a server of the wrong kind for `target_session_attrs` | the next host |
//! | anything else: TLS, authentication, another server error (database missing, too many connections), a connection closed by the server, a reply that is not PostgreSQL | the other transport of the table above on the same address, if any; else the connection fails with this host's error, and no other host is tried |
//!
//! The TCP options (`keepalives*`, `tcp_user_timeout`) are applied as libpq applies them
//! (with pgwarden's keepalive defaults for those the string does not set: see *Where
//! pgwarden's defaults differ from libpq's* above). Settings pgwarden cannot honour
//! (`require_auth` without `channel_binding=require`, `requirepeer` on a Unix socket,
//! `gssencmode=require`, CRL setups libpq would mishandle) are refused by
//! [`Connector::new`], never ignored.
//!
//! Also as in libpq, for every connection:
//!
//! - `load_balance_hosts=random` shuffles the host list, and then each host name's
//!   addresses, anew;
//! - `target_session_attrs` is checked once connected — `read-write`/`read-only` with
//!   `SHOW transaction_read_only`, `primary`/`standby` with `pg_is_in_recovery()` (the
//!   queries libpq sends to servers that do not report these settings), `prefer-standby` in
//!   two passes (standbys, then any server); a server of the wrong kind ends the attempts on
//!   that host (its other addresses and transports are skipped) and the next host is tried;
//! - without a password (or with an empty one), the password file (`passfile`, default
//!   `~/.pgpass` under [`ConnectOptions::home_dir`]) is read with libpq's rules: first
//!   matching `hostname:port:database:username:password` line, `*` wildcards, `\`
//!   escapes, ignored (with a warning) unless a plain file without group or world access.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pgwarden_core::conninfo::{ConnInfo, HostEntry};
use pgwarden_core::ssl::{RootCertSource, SslMode, SslNegotiation};
use rustls::ClientConfig;
use rustls::crypto::CryptoProvider;
use secrecy::{ExposeSecret, SecretSlice};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::config::{ChannelBinding, SslMode as PgSslMode, TargetSessionAttrs};
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{ConnectError, most_relevant};
use crate::tls::{
    CertMode, CrlSettings, PemSource, TlsSettings, TlsSetupError, TlsVersion, default_provider,
};

/// The `application_name` sent when the connection string names none.
pub const DEFAULT_APPLICATION_NAME: &str = "pgwarden";

/// How to connect, beyond what the connection string says.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The rustls crypto provider. Always explicit: never the process default.
    pub provider: Arc<CryptoProvider>,
    /// Home directory for libpq's defaults (`~/.postgresql/root.crt`,
    /// `postgresql.crt`, `postgresql.key`, and the password file `~/.pgpass`); `None`
    /// disables those defaults.
    pub home_dir: Option<PathBuf>,
    /// `application_name` when the string sets neither it nor `fallback_application_name`.
    pub application_name: String,
    /// Whether the startup packet pins `search_path` to [`PINNED_SEARCH_PATH`]. Always
    /// true outside pgwarden's own adversarial tests, which turn it off to prove that
    /// its SQL is safe even without the pin (defence in depth).
    #[doc(hidden)]
    pub pin_search_path: bool,
    /// The `connect_timeout` used when the connection string sets none: a bound on each
    /// attempt on one address (TCP connect, TLS handshake, start-up, authentication), and
    /// on resolving each host name. Default [`DEFAULT_CONNECT_TIMEOUT`]; `None` (or zero)
    /// waits as long as libpq would — forever. Unlike the string's `connect_timeout`, it is
    /// not raised to 2 s. A `connect_timeout` in the string, `0` included ("no limit"),
    /// always wins.
    pub default_connect_timeout: Option<Duration>,
    /// The `statement_timeout` of every session, sent in the startup packet
    /// (`-c statement_timeout=<ms>`) so that no catalog query or DDL statement waits for
    /// ever on a lock or a stuck server. Default [`DEFAULT_STATEMENT_TIMEOUT`]; `None`
    /// sends nothing (the server's setting applies). It comes before the string's own
    /// `options`, so `options='-c statement_timeout=0'` there wins; like any startup
    /// option it overrides `ALTER ROLE`/`ALTER DATABASE ... SET statement_timeout`. A
    /// statement that runs out fails with SQLSTATE 57014 (`query_canceled`).
    /// `lock_timeout` is not set here: revocation sets its own for each step.
    pub statement_timeout: Option<Duration>,
    /// TCP keepalive settings (`keepalives_idle`, `keepalives_interval`,
    /// `keepalives_count`) used for each one the connection string does not set, so that a
    /// peer that vanished is noticed in about a minute rather than two hours. Default
    /// [`DEFAULT_KEEPALIVES`]; `None` leaves the unset ones to the operating system, as
    /// libpq does. Nothing applies with `keepalives=0` or on Unix sockets.
    pub default_keepalives: Option<(Duration, Duration, u32)>,
}

/// [`ConnectOptions::default_connect_timeout`]'s default: 10 s per address.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// [`ConnectOptions::statement_timeout`]'s default: 60 s per statement.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);

/// [`ConnectOptions::default_keepalives`]'s default: first probe after 30 s idle, then
/// every 10 s, the connection dropped after 3 unanswered probes (about a minute in all).
pub const DEFAULT_KEEPALIVES: (Duration, Duration, u32) =
    (Duration::from_secs(30), Duration::from_secs(10), 3);

/// The `search_path` every pgwarden session runs with, set in the startup packet (so no
/// `RESET`, pool recycling or role setting can change it): objects that other users
/// may create — operators and functions in `public`, for instance — are never found
/// by pgwarden's own SQL. `pg_temp` comes last so that a temporary object never
/// shadows a catalog one (the server would otherwise search it first).
pub const PINNED_SEARCH_PATH: &str = "pg_catalog,pg_temp";

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            provider: default_provider(),
            home_dir: std::env::var_os("HOME").map(PathBuf::from),
            application_name: DEFAULT_APPLICATION_NAME.to_owned(),
            pin_search_path: true,
            default_connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
            statement_timeout: Some(DEFAULT_STATEMENT_TIMEOUT),
            default_keepalives: Some(DEFAULT_KEEPALIVES),
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
    /// `connect_timeout` (at least 2 s), else [`ConnectOptions::default_connect_timeout`],
    /// for a whole attempt on one address.
    timeout: Option<Duration>,
    /// Whether `timeout` is pgwarden's default rather than the string's (it then also
    /// bounds host name resolution).
    default_timeout: bool,
    /// `load_balance_hosts=random`: hosts, then each host's addresses, in a new random
    /// order for every connection.
    random_order: bool,
    /// What `target_session_attrs` asks of the server.
    server_type: ServerType,
    /// The password file, read at each connection, when no password is given.
    passfile: Option<PassFile>,
}

/// `target_session_attrs`, checked as libpq checks it once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerType {
    Any,
    /// tokio-postgres' own check, `SHOW transaction_read_only`: libpq's query for servers
    /// before 14, and equal to its check of `default_transaction_read_only` and
    /// `in_hot_standby` on later ones (a session starts read-only exactly when either is on).
    ReadWrite,
    ReadOnly,
    /// Not in hot standby: `pg_is_in_recovery()`, libpq's query for servers before 14,
    /// equal to the `in_hot_standby` that later ones report.
    Primary,
    Standby,
    /// A standby if any host is one, else any server: libpq's two passes.
    PreferStandby,
}

impl ServerType {
    fn of(info: &ConnInfo) -> Self {
        match info.get("target_session_attrs") {
            Some("read-write") => ServerType::ReadWrite,
            Some("read-only") => ServerType::ReadOnly,
            Some("primary") => ServerType::Primary,
            Some("standby") => ServerType::Standby,
            Some("prefer-standby") => ServerType::PreferStandby,
            _ => ServerType::Any,
        }
    }

    /// The part of the check tokio-postgres makes itself.
    fn driver_check(self) -> TargetSessionAttrs {
        match self {
            ServerType::ReadWrite => TargetSessionAttrs::ReadWrite,
            ServerType::ReadOnly => TargetSessionAttrs::ReadOnly,
            _ => TargetSessionAttrs::Any,
        }
    }
}

/// libpq's password file for one connector.
#[derive(Debug, Clone)]
struct PassFile {
    path: PathBuf,
    /// Each host's port as the file's `port` field is matched against it: the text of
    /// the host's `port` list entry, `5432` when empty.
    ports: Vec<String>,
}

impl PassFile {
    /// The file libpq reads when no password (or an empty one) is given: `passfile`, else
    /// `~/.pgpass`.
    fn of(info: &ConnInfo, options: &ConnectOptions, hosts: usize) -> Option<Self> {
        if info
            .password()
            .is_some_and(|p| !p.expose_secret().is_empty())
        {
            return None;
        }
        let path = info
            .get("passfile")
            .filter(|f| !f.is_empty())
            .map(PathBuf::from)
            .or_else(|| options.home_dir.as_ref().map(|h| h.join(".pgpass")))?;
        Some(PassFile {
            path,
            ports: port_texts(info, hosts),
        })
    }
}

/// libpq uses `sslpassword` to decrypt an encrypted client key; rustls reads no encrypted
/// key. Refused when TLS may be used (`setup` is why TLS cannot be set up):
/// `sslmode=prefer` would otherwise go on without the certificate (and so, usually, without
/// TLS) where libpq would present it.
fn refuse_encrypted_key(
    info: &ConnInfo,
    mode: SslMode,
    hosts: &[HostEntry],
    setup: &TlsSetupError,
) -> Result<(), ConnectError> {
    if matches!(setup, TlsSetupError::BadKey { .. })
        && mode != SslMode::Disable
        && hosts.iter().any(|h| !h.is_unix_socket())
        && info
            .secret("sslpassword")
            .is_some_and(|p| !p.expose_secret().is_empty())
    {
        return Err(config_error(format!(
            "sslpassword=*** is not supported by pgwarden: encrypted client keys cannot be read ({setup}); decrypt the key (openssl pkey -in key -out plain.key, mode 0600) and remove sslpassword"
        )));
    }
    Ok(())
}

impl std::fmt::Debug for Connector {
    /// Never prints the password (tokio-postgres' `Config` Debug redacts it too).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("hosts", &self.hosts)
            .field("mode", &self.mode)
            .field("negotiation", &self.negotiation)
            .field("tls_ready", &self.tls.is_ok())
            .field("timeout", &self.timeout)
            .field("default_timeout", &self.default_timeout)
            .field("random_order", &self.random_order)
            .field("server_type", &self.server_type)
            .field("passfile", &self.passfile.as_ref().map(|p| &p.path))
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

/// libpq's TCP options (seconds, except `tcp_user_timeout` in milliseconds), as libpq sets
/// them on each TCP socket: nothing at all with `keepalives=0` — not even
/// `tcp_user_timeout`, which libpq sets only after the keepalive options. `tcp` says whether
/// any host is reached over TCP (libpq sets none of these on Unix sockets). `defaults`
/// ([`ConnectOptions::default_keepalives`]) stand in for the keepalive settings the string
/// does not set.
fn apply_tcp_options(
    base: &mut tokio_postgres::Config,
    info: &ConnInfo,
    tcp: bool,
    defaults: Option<(Duration, Duration, u32)>,
) -> Result<(), ConnectError> {
    let int = |keyword| {
        info.int_option(keyword)
            .map_err(|e| config_error(e.to_string()))
    };
    let on = int("keepalives")?.is_none_or(|v| v != 0);
    base.keepalives(on);
    if !on {
        return Ok(());
    }
    // libpq passes these to setsockopt, negative values as 0. Linux accepts only the ranges
    // below, so with any other value libpq fails every TCP connection ("setsockopt(...)
    // failed: Invalid argument"): refused here rather than failing each attempt.
    let ranged = |keyword: &'static str,
                  option: &str,
                  max: u32|
     -> Result<Option<u32>, ConnectError> {
        let Some(value) = int(keyword)? else {
            return Ok(None);
        };
        match u32::try_from(value) {
            Ok(v) if (1..=max).contains(&v) => Ok(Some(v)),
            _ if !tcp => Ok(None),
            _ => Err(config_error(format!(
                "{keyword}={value} is out of range: the kernel accepts 1 to {max} for {option}, and libpq fails every TCP connection with other values; use a value in range, or remove {keyword} for the system default"
            ))),
        }
    };
    // pgwarden's defaults only where the string sets nothing: a value it sets but that is
    // ignored (out of range, Unix sockets only) stays ignored, as in libpq.
    let unset = |keyword: &str| info.get(keyword).is_none();
    if let Some(secs) = ranged("keepalives_idle", "TCP_KEEPIDLE", 32_767)? {
        base.keepalives_idle(Duration::from_secs(secs.into()));
    } else if let Some((idle, _, _)) = defaults.filter(|_| unset("keepalives_idle")) {
        base.keepalives_idle(idle);
    }
    if let Some(secs) = ranged("keepalives_interval", "TCP_KEEPINTVL", 32_767)? {
        base.keepalives_interval(Duration::from_secs(secs.into()));
    } else if let Some((_, interval, _)) = defaults.filter(|_| unset("keepalives_interval")) {
        base.keepalives_interval(interval);
    }
    if let Some(count) = ranged("keepalives_count", "TCP_KEEPCNT", 127)? {
        base.keepalives_retries(count);
    } else if let Some((_, _, count)) = defaults.filter(|_| unset("keepalives_count")) {
        base.keepalives_retries(count);
    }
    if let Some(ms) = int("tcp_user_timeout")? {
        // Negative means 0 (the system default), as in libpq.
        base.tcp_user_timeout(Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
    }
    Ok(())
}

/// `sslcrl` and `sslcrldir`; when neither is set, libpq's default `~/.postgresql/root.crl`,
/// which libpq uses only with a root certificate file (and ignores when missing).
fn crl_settings(
    info: &ConnInfo,
    home: Option<&Path>,
    root: Option<&RootCertSource>,
) -> CrlSettings {
    let setting = |key: &str| info.get(key).filter(|v| !v.is_empty());
    match (setting("sslcrl"), setting("sslcrldir")) {
        (None, None) => CrlSettings {
            file: match root {
                Some(RootCertSource::File(_) | RootCertSource::InlinePem(_)) => {
                    home.map(|h| PemSource::File(h.join(".postgresql").join("root.crl")))
                }
                _ => None,
            },
            dir: None,
        },
        (file, dir) => CrlSettings {
            file: file.map(PemSource::parse),
            dir: dir.map(PathBuf::from),
        },
    }
}

/// `ssl_min_protocol_version`/`ssl_max_protocol_version` (or `default`), spelled in any
/// case as libpq accepts them (`tlsv1.3`).
fn tls_version(
    info: &ConnInfo,
    keyword: &str,
    default: &str,
) -> Result<Option<TlsVersion>, TlsSetupError> {
    let value = info.get(keyword).unwrap_or(default);
    let canonical = ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
        .into_iter()
        .find(|v| v.eq_ignore_ascii_case(value));
    TlsVersion::parse(canonical.unwrap_or(value))
}

/// The bound on one attempt on one address, and whether it is pgwarden's default. libpq
/// waits at least 2 s per address; 0 or negative means no limit. Unset,
/// [`ConnectOptions::default_connect_timeout`] applies (libpq would wait forever).
fn attempt_timeout(
    info: &ConnInfo,
    options: &ConnectOptions,
) -> Result<(Option<Duration>, bool), ConnectError> {
    if info.get("connect_timeout").is_none() {
        return Ok((
            options.default_connect_timeout.filter(|t| !t.is_zero()),
            true,
        ));
    }
    let timeout = info
        .connect_timeout()
        .map_err(|e| config_error(e.to_string()))?
        .map(|t| t.max(Duration::from_secs(2)));
    Ok((timeout, false))
}

/// The startup packet's `options`: [`ConnectOptions::statement_timeout`] first, then the
/// string's own `options` (so a `-c statement_timeout=...` there wins), then the
/// `search_path` pin last (so nothing overrides it); `None` when there is nothing to send.
fn startup_options(info: &ConnInfo, options: &ConnectOptions) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(timeout) = options.statement_timeout {
        // Whole milliseconds, rounded up so that a sub-millisecond limit is not 0 (none),
        // and at most the server's maximum (i32::MAX ms, about 24 days): a larger value
        // would make the server refuse every connection.
        let ms = timeout
            .as_nanos()
            .div_ceil(1_000_000)
            .min(i32::MAX.unsigned_abs().into());
        parts.push(format!("-c statement_timeout={ms}"));
    }
    if let Some(own) = info.get("options").filter(|o| !o.is_empty()) {
        parts.push(own.to_owned());
    }
    if options.pin_search_path {
        // In the startup packet, so it is the session's reset value too.
        parts.push(format!("-c search_path={PINNED_SEARCH_PATH}"));
    }
    (!parts.is_empty()).then(|| parts.join(" "))
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
        info.check_supported()
            .map_err(|e| config_error(e.to_string()))?;
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
        if let Some(startup) = startup_options(info, options) {
            base.options(&startup);
        }
        let (timeout, default_timeout) = attempt_timeout(info, options)?;
        if let Some(t) = timeout {
            // The driver's own limit covers the TCP connect only; connect_raw bounds the
            // whole attempt with the same duration.
            base.connect_timeout(t);
        }
        base.channel_binding(match info.get("channel_binding") {
            Some("disable") => ChannelBinding::Disable,
            Some("require") => ChannelBinding::Require,
            _ => ChannelBinding::Prefer,
        });
        base.target_session_attrs(ServerType::of(info).driver_check());
        apply_tcp_options(
            &mut base,
            info,
            hosts.iter().any(|h| !h.is_unix_socket()),
            options.default_keepalives,
        )?;
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
        let crl = crl_settings(info, home, root_cert.as_ref());
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
            // libpq sends SNI only when the value starts with 1 (the default).
            sni: info.get("sslsni").is_none_or(|v| v.starts_with('1')),
            min_version: tls_version(info, "ssl_min_protocol_version", "TLSv1.2")?,
            max_version: tls_version(info, "ssl_max_protocol_version", "")?,
            crl,
        };
        let tls = settings
            .client_config(&options.provider)
            .map(Arc::new)
            .map_err(Arc::new);
        if let Err(e) = &tls {
            refuse_encrypted_key(info, mode, &hosts, e)?;
        }
        // Modes that cannot fall back to plaintext fail now on a TLS setup problem; so does
        // every mode on a revocation-list setting pgwarden refuses (falling back to
        // plaintext would ignore the refusal).
        if let Err(e) = &tls
            && (mode.requires_tls() || matches!(**e, TlsSetupError::Crl { .. }))
        {
            return Err(config_error(e.to_string()));
        }
        Ok(Connector {
            base,
            mode,
            negotiation,
            tls,
            timeout,
            default_timeout,
            random_order: info.get("load_balance_hosts") == Some("random"),
            server_type: ServerType::of(info),
            passfile: PassFile::of(info, options, hosts.len()),
            hosts,
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

    /// The bound on one connection attempt on one address: the string's `connect_timeout`
    /// (at least 2 s), else [`ConnectOptions::default_connect_timeout`]; `None` for none.
    #[must_use]
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// How long a whole [`Connector::connect`] may take when every host (each resolving
    /// to one address) runs out its connect timeout: the timeout once per host (twice for
    /// `target_session_attrs=prefer-standby`, which makes two passes); `None` without a
    /// timeout.
    pub(crate) fn connect_budget(&self) -> Option<Duration> {
        let passes = if self.server_type == ServerType::PreferStandby {
            2
        } else {
            1
        };
        let attempts = u32::try_from(self.hosts.len().max(1) * passes).unwrap_or(u32::MAX);
        self.timeout.map(|t| t.saturating_mul(attempts))
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
                    .attempts
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
                failures.decisive,
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
    pub(crate) async fn connect_raw(&self) -> Result<Connection, Failures> {
        let mut failures = Vec::new();
        // libpq shuffles the hosts once per connection (pqConnectOptions2), and each host
        // name's addresses when it resolves them.
        let mut order: Vec<usize> = (0..self.hosts.len()).collect();
        if self.random_order {
            shuffle(&mut order);
        }
        let passwords = self.passwords_from_file();
        let passes = match self.server_type {
            ServerType::PreferStandby => vec![ServerType::Standby, ServerType::Any],
            wanted => vec![wanted],
        };
        for wanted in passes {
            for &index in &order {
                let host = &self.hosts[index];
                let target = describe(host);
                let resolving = self.timeout.filter(|_| self.default_timeout);
                let Ok(mut addresses) = resolve(host, resolving).await else {
                    // The name did not resolve within the default connect timeout: like an
                    // address that does not answer, the next host is tried.
                    let how = format!("{target} (resolving the host name)");
                    tracing::debug!(attempt = %how, "host name resolution timed out");
                    failures.push(AttemptFailure::Driver(
                        how,
                        target.clone(),
                        tokio_postgres::Error::__private_api_timeout(),
                    ));
                    continue;
                };
                if self.random_order {
                    shuffle(&mut addresses);
                }
                let several = addresses.len() > 1;
                'addresses: for address in addresses {
                    // libpq restarts its timer for each address, not for each transport.
                    let deadline = self.timeout.map(|t| Instant::now() + t);
                    // This address's attempts: if they end the connection, theirs is the error.
                    let first = failures.len();
                    // Whether the last attempt here failed in a way that tries no other host.
                    let mut ends = false;
                    for &transport in self.transports(host) {
                        let how = describe_attempt(&target, address.filter(|_| several), transport);
                        let config =
                            self.attempt_config(host, passwords[index].as_ref(), address, wanted);
                        let tls = match (transport, &self.tls) {
                            (Transport::Plain, _) => None,
                            (Transport::Tls, Ok(t)) => Some(t.clone()),
                            (Transport::Tls, Err(e)) => {
                                failures.push(AttemptFailure::Setup(how, e.clone()));
                                continue;
                            }
                        };
                        let connected = match attempt(config, tls, deadline).await {
                            Ok((client, task)) => {
                                match check_server_type(&client, wanted, deadline).await {
                                    Ok(()) => Ok((client, task)),
                                    // A server of the wrong kind (or a check that failed, which
                                    // libpq treats alike): closed (dropping the client
                                    // terminates the session) and reported like any failure.
                                    Err((e, timed_out)) => Err((e, timed_out, !timed_out)),
                                }
                            }
                            Err((e, timed_out)) => {
                                let wrong_kind = is_wrong_session(&e);
                                Err((e, timed_out, wrong_kind))
                            }
                        };
                        match connected {
                            Ok((client, task)) => {
                                tracing::debug!(target = %target, tls = transport == Transport::Tls, "connected");
                                return Ok(Connection {
                                    client,
                                    tls: transport == Transport::Tls,
                                    target,
                                    task,
                                });
                            }
                            Err((e, timed_out, wrong_kind)) => {
                                let next = Next::after(&e, timed_out, wrong_kind);
                                tracing::debug!(attempt = %how, error = %e, next = ?next, "connection attempt failed");
                                failures.push(AttemptFailure::Driver(how, target.clone(), e));
                                match next {
                                    Next::Host => break 'addresses,
                                    Next::Address => {
                                        ends = false;
                                        break;
                                    }
                                    Next::Transport => ends = true,
                                }
                            }
                        }
                    }
                    if ends {
                        // As libpq: a host that was reached and failed otherwise ends the
                        // connection; the remaining addresses and hosts are not tried.
                        tracing::debug!(target = %target, "no other host is tried after this failure");
                        return Err(Failures {
                            attempts: failures,
                            decisive: first,
                        });
                    }
                }
            }
        }
        Err(Failures {
            attempts: failures,
            decisive: 0,
        })
    }

    /// The driver's settings for one attempt on `host` (at `address`, when resolved here).
    fn attempt_config(
        &self,
        host: &HostEntry,
        password: Option<&SecretSlice<u8>>,
        address: Option<IpAddr>,
        wanted: ServerType,
    ) -> tokio_postgres::Config {
        let mut config = self.base.clone();
        apply_host(&mut config, host);
        if let Some(password) = password {
            config.password(password.expose_secret());
        }
        if let Some(ip) = address {
            config.hostaddr(ip);
        }
        config.target_session_attrs(wanted.driver_check());
        config
    }

    /// The password for each host (same order as `self.hosts`) from the password file, read
    /// now as libpq reads it when it starts a connection; `None` where there is none.
    fn passwords_from_file(&self) -> Vec<Option<SecretSlice<u8>>> {
        let Some(file) = &self.passfile else {
            return self.hosts.iter().map(|_| None).collect();
        };
        let user = self.base.get_user().unwrap_or_default();
        let dbname = self.base.get_dbname().unwrap_or_default();
        self.hosts
            .iter()
            .zip(&file.ports)
            .map(|(host, port)| {
                password_from_file(&file.path, pgpass_host(host), port, dbname, user)
            })
            .collect()
    }
}

/// libpq's `target_session_attrs` check for `primary` and `standby` (and the first pass of
/// `prefer-standby`), once connected: `SELECT pg_catalog.pg_is_in_recovery()`. The other
/// kinds need nothing here (tokio-postgres checks `read-write`/`read-only` itself). The
/// error says whether the deadline expired.
async fn check_server_type(
    client: &Client,
    wanted: ServerType,
    deadline: Option<Instant>,
) -> Result<(), (tokio_postgres::Error, bool)> {
    let want_standby = match wanted {
        ServerType::Primary => false,
        ServerType::Standby => true,
        _ => return Ok(()),
    };
    let check = async {
        let row = client
            .query_one("SELECT pg_catalog.pg_is_in_recovery()", &[])
            .await?;
        if row.try_get::<_, bool>(0)? == want_standby {
            return Ok(());
        }
        // tokio-postgres has no public error constructor, so the error is the server's own
        // refusal of what only the wanted kind of server allows: "cannot set transaction
        // read-write mode during recovery" (a standby, primary wanted), "recovery is not in
        // progress" (a primary, standby wanted). Neither changes anything; should the probe
        // succeed, the server has just changed kind (a promotion) and is the wanted one.
        client
            .batch_execute(if want_standby {
                "SELECT pg_catalog.pg_is_wal_replay_paused()"
            } else {
                "BEGIN READ WRITE; ROLLBACK"
            })
            .await
    };
    match deadline {
        None => check.await.map_err(|e| (e, false)),
        Some(deadline) => match tokio::time::timeout_at(deadline, check).await {
            Ok(result) => result.map_err(|e| (e, false)),
            Err(_) => Err((tokio_postgres::Error::__private_api_timeout(), true)),
        },
    }
}

/// Whether tokio-postgres refused the session for `target_session_attrs=read-write` or
/// `read-only` ("database does not allow writes", "database is not read only").
fn is_wrong_session(e: &tokio_postgres::Error) -> bool {
    use std::error::Error as _;
    e.source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| {
            io.kind() == std::io::ErrorKind::PermissionDenied
                && matches!(
                    io.to_string().as_str(),
                    "database does not allow writes" | "database is not read only"
                )
        })
}

/// Shuffles in place (Fisher-Yates, as libpq), with the operating system's random source.
fn shuffle<T>(items: &mut [T]) {
    for i in (1..items.len()).rev() {
        items.swap(i, random_below(i + 1));
    }
}

/// A uniform random number in `0..n` (multiply-shift: the bias is below 2^-50 for any
/// list a connection string can hold).
fn random_below(n: usize) -> usize {
    let bound = u64::try_from(n).expect("a list length fits in 64 bits");
    let random = getrandom::u64().expect("the operating system's random source failed");
    usize::try_from((u128::from(random) * u128::from(bound)) >> 64).expect("the result is below n")
}

/// Each host's port as text, as libpq keeps it for the password file: the `port` list entry
/// (the single one for every host), `5432` when empty or unset.
fn port_texts(info: &ConnInfo, count: usize) -> Vec<String> {
    let list: Vec<&str> = info
        .get("port")
        .filter(|p| !p.is_empty())
        .map(|p| p.split(',').collect())
        .unwrap_or_default();
    (0..count)
        .map(|i| {
            let text = if list.len() == 1 {
                list[0]
            } else {
                list.get(i).copied().unwrap_or_default()
            };
            if text.is_empty() { "5432" } else { text }.to_owned()
        })
        .collect()
}

/// The `hostname` libpq matches in the password file: `host`, else `hostaddr`; `localhost`
/// for the default socket directory (which libpq fills in when neither is given).
fn pgpass_host(host: &HostEntry) -> &str {
    match host.host.as_deref().or(host.hostaddr.as_deref()) {
        None => "localhost",
        Some(name) if name == default_socket_dir() => "localhost",
        Some(name) => name,
    }
}

/// libpq's `passwordFromFile`: the password of the first line of `file` whose first four
/// fields match (`*` matching anything), or `None`. A file that cannot be read is ignored;
/// so, with a warning, is one that is not a plain file or that the group or others may
/// access. Fields and password are raw bytes, as in libpq.
fn password_from_file(
    file: &Path,
    host: &str,
    port: &str,
    dbname: &str,
    user: &str,
) -> Option<SecretSlice<u8>> {
    use std::os::unix::fs::PermissionsExt as _;
    if dbname.is_empty() || user.is_empty() {
        return None;
    }
    // stat, not lstat: a symbolic link to a private file is fine, as in libpq.
    let metadata = std::fs::metadata(file).ok()?;
    if !metadata.is_file() {
        tracing::warn!(
            "password file \"{}\" is not a plain file; it is ignored",
            file.display()
        );
        return None;
    }
    if metadata.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "password file \"{}\" has group or world access; permissions should be u=rw (0600) or less; it is ignored",
            file.display()
        );
        return None;
    }
    let contents = SecretSlice::from(std::fs::read(file).ok()?);
    let fields = [host, port, dbname, user];
    contents
        .expose_secret()
        .split(|&b| b == b'\n')
        .find_map(|line| password_from_line(line, fields))
}

/// One line of the password file: its password if its first four fields match `fields`.
fn password_from_line(line: &[u8], fields: [&str; 4]) -> Option<SecretSlice<u8>> {
    // libpq reads C strings (a NUL ends the line), skips comments, then strips CR/LF.
    let line = line.split(|&b| b == 0).next().unwrap_or_default();
    if line.first() == Some(&b'#') {
        return None;
    }
    let end = line
        .iter()
        .rposition(|&b| b != b'\r' && b != b'\n')
        .map_or(0, |i| i + 1);
    let mut rest = &line[..end];
    if rest.is_empty() {
        return None;
    }
    for field in fields {
        rest = match_pgpass_field(rest, field.as_bytes())?;
    }
    // The password runs to the next unescaped colon, backslashes removed.
    let mut password = Vec::with_capacity(rest.len());
    let mut i = 0;
    while i < rest.len() && rest[i] != b':' {
        if rest[i] == b'\\' && i + 1 < rest.len() {
            i += 1;
        }
        password.push(rest[i]);
        i += 1;
    }
    Some(SecretSlice::from(password))
}

/// libpq's `pwdfMatchesString`: whether the field at the start of `line` is `*` or equals
/// `token` (a backslash escapes the next byte, `:` included); the rest of the line after the
/// field's colon if so.
fn match_pgpass_field<'a>(line: &'a [u8], token: &[u8]) -> Option<&'a [u8]> {
    if line.starts_with(b"*:") {
        return Some(&line[2..]);
    }
    let (mut at, mut matched) = (0, 0);
    while at < line.len() {
        let escaped = line[at] == b'\\';
        if escaped {
            at += 1;
        }
        let byte = line.get(at).copied();
        if byte == Some(b':') && matched == token.len() && !escaped {
            return Some(&line[at + 1..]);
        }
        if matched == token.len() || byte != Some(token[matched]) {
            return None;
        }
        at += 1;
        matched += 1;
    }
    None
}

/// One connection attempt, bounded by `deadline` as a whole (TCP, TLS, start-up,
/// authentication). The error says whether the deadline expired.
async fn attempt(
    mut config: tokio_postgres::Config,
    tls: Option<Arc<ClientConfig>>,
    deadline: Option<Instant>,
) -> Result<(Client, JoinHandle<()>), (tokio_postgres::Error, bool)> {
    let connect =
        async move {
            match tls {
                None => {
                    config.ssl_mode(PgSslMode::Disable);
                    config.connect(NoTls).await.map(|(client, conn)| {
                        (client, tokio::spawn(async move { drop(conn.await) }))
                    })
                }
                Some(tls) => {
                    config.ssl_mode(PgSslMode::Require);
                    let make = MakeRustlsConnect::new((*tls).clone());
                    config.connect(make).await.map(|(client, conn)| {
                        (client, tokio::spawn(async move { drop(conn.await) }))
                    })
                }
            }
        };
    match deadline {
        None => connect.await.map_err(|e| (e, false)),
        Some(deadline) => match tokio::time::timeout_at(deadline, connect).await {
            Ok(result) => result.map_err(|e| (e, false)),
            // tokio-postgres has no public constructor for errors; this one (made for
            // deadpool) reads "timeout waiting for server", which classifies as a timeout.
            Err(_) => Err((tokio_postgres::Error::__private_api_timeout(), true)),
        },
    }
}

/// The addresses to try for `host`, in order, as libpq tries each address of a host
/// name. `None` leaves the address to the driver: Unix sockets, `hostaddr`, IP literals,
/// and names that do not resolve (the driver then reports the resolution error itself).
/// `Err` when the lookup took longer than `limit`.
async fn resolve(host: &HostEntry, limit: Option<Duration>) -> Result<Vec<Option<IpAddr>>, ()> {
    let name = match (&host.host, &host.hostaddr) {
        (Some(name), None) if !host.is_unix_socket() && name.parse::<IpAddr>().is_err() => name,
        _ => return Ok(vec![None]),
    };
    let mut addresses: Vec<Option<IpAddr>> = Vec::new();
    let lookup = tokio::net::lookup_host((name.as_str(), host.port));
    let found = match limit {
        None => lookup.await,
        Some(limit) => tokio::time::timeout(limit, lookup).await.map_err(drop)?,
    };
    if let Ok(found) = found {
        for address in found {
            if !addresses.contains(&Some(address.ip())) {
                addresses.push(Some(address.ip()));
            }
        }
    }
    if addresses.is_empty() {
        addresses.push(None);
    }
    Ok(addresses)
}

/// Why no connection was made.
#[derive(Debug)]
pub(crate) struct Failures {
    /// Every failed attempt, in order.
    pub(crate) attempts: Vec<AttemptFailure>,
    /// The first of the attempts whose error is the one to report: those on the address
    /// whose failure ended the connection (libpq tries no other host after it), or 0 when
    /// every host was tried.
    pub(crate) decisive: usize,
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

/// Where libpq goes on after a failed attempt on one address (`PQconnectPoll`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The host was reached and failed otherwise (TLS, authentication, any server error
    /// but 57P03, a closed connection, a protocol violation): the SSL mode's other
    /// transport on this address if one is left (see the module's table), else no further
    /// address or host — the connection fails with this host's error.
    Transport,
    /// The connection could not be opened (nothing listens, unreachable, name not
    /// resolved), or `connect_timeout` expired: the next address, then the next host.
    Address,
    /// The server cannot take connections now (SQLSTATE 57P03: starting up, shutting
    /// down, in recovery), or is of the wrong kind for `target_session_attrs`: the next
    /// host, without this host's other addresses and transports.
    Host,
}

impl Next {
    fn after(e: &tokio_postgres::Error, timed_out: bool, wrong_kind: bool) -> Self {
        if wrong_kind || e.code() == Some(&tokio_postgres::error::SqlState::CANNOT_CONNECT_NOW) {
            Next::Host
        } else if timed_out || is_connect_failure(e) {
            Next::Address
        } else {
            Next::Transport
        }
    }
}

/// Whether the connection itself could not be opened: refused, unreachable, a name that
/// does not resolve, a TCP option the kernel refuses, the driver's own `connect_timeout` on
/// the TCP connect. tokio-postgres reports exactly these (and the `target_session_attrs`
/// refusals, told apart by [`is_wrong_session`] first) as "error connecting to server" —
/// its error kind is not public; an I/O error once connected (a reset, a keepalive
/// timeout) is "error communicating with the server".
fn is_connect_failure(e: &tokio_postgres::Error) -> bool {
    e.to_string().starts_with("error connecting to server")
}

/// libpq's default socket directory on Debian builds, else `/tmp`.
fn default_socket_dir() -> &'static str {
    if Path::new("/var/run/postgresql").is_dir() {
        "/var/run/postgresql"
    } else {
        "/tmp"
    }
}

/// One attempt, for messages: `host:port`, the address when the name has several, and
/// the transport.
fn describe_attempt(target: &str, address: Option<IpAddr>, transport: Transport) -> String {
    format!(
        "{target}{} {}",
        address.map(|ip| format!(" ({ip})")).unwrap_or_default(),
        if transport == Transport::Tls {
            "with TLS"
        } else {
            "without TLS"
        }
    )
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
