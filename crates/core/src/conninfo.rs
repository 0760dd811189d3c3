//! libpq connection strings, parsed exactly as libpq parses them.
//!
//! Users paste strings that already work with `psql`, so [`ConnInfo`] accepts the same
//! two syntaxes as libpq (PostgreSQL 18) and yields the same keywords and values:
//!
//! - `key=value` pairs separated by whitespace, with single-quoted values and backslash
//!   escapes (`password='it\'s' host = db.example.com`);
//! - URIs: `postgresql://user:pass@host1:5432,host2:5433/dbname?sslmode=verify-full`, with
//!   percent-decoding, `[::1]` IPv6 hosts, several hosts (`host=host1,host2`,
//!   `port=5432,5433`) and query parameters (`ssl=true` means `sslmode=require`).
//!
//! Like libpq, parsing and validating are two steps. [`ConnInfo::parse_unvalidated`] is
//! `PQconninfoParse`: it rejects syntax errors and unknown keywords but accepts any value.
//! [`ConnInfo::validate`] applies the checks libpq makes when it connects (`sslmode` values,
//! host/port counts, integer options, the `sslrootcert=system` and `sslnegotiation=direct`
//! rules, ...). [`FromStr`] does both. Environment fallbacks (`PGHOST`, `PGSSLMODE`, ...) are
//! applied only on request, through [`ConnInfo::with_env_defaults`].
//!
//! Secrets (`password`, `sslpassword`, `scram_client_key`, `scram_server_key`,
//! `oauth_client_secret`) are held as [`SecretString`]s, never returned by
//! [`ConnInfo::get`], and shown as `***` by `Debug`, by [`ConnInfo::redacted`] and in errors.
//! `Display` renders a string that parses back to an equal `ConnInfo`, so it **does**
//! contain secrets: log `redacted()` instead.
//!
//! Not handled: service files (`service=` is kept as a keyword, but `pg_service.conf` is not
//! read, since this crate does no I/O) and the password file.
//!
//! ```
//! use pgwarden_core::conninfo::ConnInfo;
//! use pgwarden_core::ssl::SslMode;
//!
//! let info: ConnInfo = "postgresql://app:s3cret@db1:5432,db2:5433/orders?sslrootcert=system"
//!     .parse()?;
//! assert_eq!(info.get("host"), Some("db1,db2"));
//! assert_eq!(info.get("port"), Some("5432,5433"));
//! assert_eq!(info.ssl_mode()?, SslMode::VerifyFull); // sslrootcert=system implies verify-full
//! assert_eq!(info.hosts()?[1].port, 5433);
//! assert_eq!(info.get("password"), None); // secrets only through `secret()`/`password()`
//! assert!(!format!("{info:?}").contains("s3cret"));
//! assert!(!info.redacted().to_string().contains("s3cret"));
//! assert_eq!(info.to_string().parse::<ConnInfo>()?, info);
//!
//! let err = "host=db sslmode=verify".parse::<ConnInfo>().unwrap_err();
//! assert!(err.to_string().starts_with("invalid sslmode value: \"verify\""));
//! # Ok::<(), pgwarden_core::conninfo::ConnInfoError>(())
//! ```

mod env;
mod error;
mod keywords;
mod parse;
mod validate;

use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

pub use error::ConnInfoError;
pub use keywords::{KEYWORDS, Keyword, keyword};

use crate::ssl::{RootCertSource, SslMode, SslNegotiation, effective_ssl_mode};
use parse::REDACTED;

/// A stored value: secrets live in a [`SecretString`] so they are zeroized on drop.
#[derive(Clone)]
enum Stored {
    Plain(String),
    Secret(SecretString),
}

impl Stored {
    fn expose(&self) -> &str {
        match self {
            Stored::Plain(v) => v,
            Stored::Secret(v) => v.expose_secret(),
        }
    }
}

/// A parsed libpq connection string: libpq's keywords and the values given for them.
///
/// Only keywords that were given are set; nothing is defaulted (see
/// [`with_env_defaults`](Self::with_env_defaults)). Iteration and `Display` follow libpq's
/// keyword order. See the [module documentation](self) for parsing rules and secrets.
#[derive(Clone)]
pub struct ConnInfo {
    /// One slot per entry of [`KEYWORDS`].
    values: Vec<Option<Stored>>,
}

/// A value yielded by [`ConnInfo::iter`]: plain text, or a secret that must be exposed
/// explicitly.
#[derive(Debug, Clone, Copy)]
pub enum ParamValue<'a> {
    /// A value that is not secret.
    Plain(&'a str),
    /// A secret value (password and friends).
    Secret(&'a SecretString),
}

impl<'a> ParamValue<'a> {
    /// The value if it is not a secret.
    #[must_use]
    pub fn as_plain(&self) -> Option<&'a str> {
        match self {
            ParamValue::Plain(v) => Some(v),
            ParamValue::Secret(_) => None,
        }
    }

    /// The value as text, secret or not. Named so that exposing a secret is never accidental.
    #[must_use]
    pub fn expose_secret(&self) -> &'a str {
        match self {
            ParamValue::Plain(v) => v,
            ParamValue::Secret(v) => v.expose_secret(),
        }
    }

    /// Whether this is a secret.
    #[must_use]
    pub fn is_secret(&self) -> bool {
        matches!(self, ParamValue::Secret(_))
    }
}

/// One server to try, as libpq pairs the comma-separated `host`, `hostaddr` and `port` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostEntry {
    /// The host name, IP literal or Unix-socket directory (`None` when empty or not given).
    /// With `hostaddr` it is only used for certificate checks and the password file.
    pub host: Option<String>,
    /// The numeric address to connect to, skipping name resolution (`None` when not given).
    pub hostaddr: Option<String>,
    /// The port (5432 when not given or empty).
    pub port: u16,
}

impl HostEntry {
    /// Whether libpq would connect through a Unix-domain socket: no `hostaddr`, and the host
    /// is an absolute path or an abstract socket name starting with `@`. A slot with neither
    /// host nor hostaddr also goes to libpq's default socket directory.
    #[must_use]
    pub fn is_unix_socket(&self) -> bool {
        self.hostaddr.is_none()
            && self
                .host
                .as_deref()
                .is_none_or(|h| h.starts_with('/') || h.starts_with('@'))
    }
}

impl Default for ConnInfo {
    fn default() -> Self {
        Self::new()
    }
}

impl ConnInfo {
    /// An empty connection string: no keyword set.
    #[must_use]
    pub fn new() -> Self {
        Self {
            values: vec![None; KEYWORDS.len()],
        }
    }

    /// Parses without checking values: libpq's `PQconninfoParse`. Syntax errors and unknown
    /// keywords are errors; `sslmode=bogus` is not (see [`validate`](Self::validate)).
    pub fn parse_unvalidated(s: &str) -> Result<Self, ConnInfoError> {
        parse::parse(s)
    }

    /// Applies the checks libpq makes before and while it connects: keyword values
    /// (`sslmode`, `gssencmode`, `channel_binding`, `target_session_attrs`,
    /// `load_balance_hosts`, `sslcertmode`, `sslnegotiation`, `require_auth`, protocol
    /// versions, SCRAM keys), `host`/`hostaddr`/`port` counts, ports and integer options, and
    /// the SSL rules of [`crate::ssl`]. libpq's compiled-in defaults take part (the minimum TLS
    /// version is `TLSv1.2` unless set), environment variables do not: call
    /// [`with_env_defaults`](Self::with_env_defaults) first to check what a connection would use.
    ///
    /// Stricter than libpq in one way: every port of a host list is checked, where libpq only
    /// notices a bad port when it reaches that host.
    pub fn validate(&self) -> Result<(), ConnInfoError> {
        validate::validate(self)
    }

    fn is_set_index(&self, index: usize) -> bool {
        self.values[index].is_some()
    }

    fn put(&mut self, index: usize, value: String) {
        self.values[index] = Some(if keywords::is_secret(index) {
            Stored::Secret(SecretString::from(value))
        } else {
            Stored::Plain(value)
        });
    }

    /// libpq's `conninfo_storeval`: `requiressl` becomes `sslmode` (`1...` → `require`, else
    /// `prefer`). Returns the keyword stored, or `None` if it is unknown.
    fn store(&mut self, keyword: &str, value: String) -> Option<&'static str> {
        let (keyword, value) = if keyword == "requiressl" {
            let mode = if value.starts_with('1') {
                "require"
            } else {
                "prefer"
            };
            ("sslmode", mode.to_owned())
        } else {
            (keyword, value)
        };
        let index = keywords::index_of(keyword)?;
        self.put(index, value);
        Some(KEYWORDS[index].name)
    }

    /// The value of a non-secret keyword, exactly as given (`None` when not set, when the
    /// keyword is unknown, and always for secret keywords: use [`secret`](Self::secret)).
    #[must_use]
    pub fn get(&self, keyword: &str) -> Option<&str> {
        match self.values[keywords::index_of(keyword)?].as_ref()? {
            Stored::Plain(v) => Some(v),
            Stored::Secret(_) => None,
        }
    }

    /// The value of a secret keyword (`password`, `sslpassword`, `scram_client_key`,
    /// `scram_server_key`, `oauth_client_secret`); `None` for other keywords.
    #[must_use]
    pub fn secret(&self, keyword: &str) -> Option<&SecretString> {
        match self.values[keywords::index_of(keyword)?].as_ref()? {
            Stored::Secret(v) => Some(v),
            Stored::Plain(_) => None,
        }
    }

    /// The password, if one was given.
    #[must_use]
    pub fn password(&self) -> Option<&SecretString> {
        self.secret("password")
    }

    /// Sets a keyword (replacing any value), as a later `key=value` pair would. `requiressl`
    /// is accepted and stored as `sslmode`, like libpq. Values are not checked here.
    pub fn set(&mut self, keyword: &str, value: impl Into<String>) -> Result<(), ConnInfoError> {
        let value = value.into();
        if let Some(position) = value.find('\0') {
            return Err(ConnInfoError::NulCharacter { position });
        }
        self.store(keyword, value)
            .map(|_| ())
            .ok_or_else(|| ConnInfoError::InvalidOption {
                keyword: keyword.to_owned(),
            })
    }

    /// Unsets a keyword. Returns whether it was set.
    pub fn remove(&mut self, keyword: &str) -> Result<bool, ConnInfoError> {
        let index = keywords::index_of(keyword).ok_or_else(|| ConnInfoError::InvalidOption {
            keyword: keyword.to_owned(),
        })?;
        Ok(self.values[index].take().is_some())
    }

    /// The keywords that are set, with their values, in libpq's keyword order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, ParamValue<'_>)> + '_ {
        KEYWORDS.iter().zip(&self.values).filter_map(|(k, v)| {
            let value = match v.as_ref()? {
                Stored::Plain(v) => ParamValue::Plain(v),
                Stored::Secret(v) => ParamValue::Secret(v),
            };
            Some((k.name, value))
        })
    }

    /// How many keywords are set.
    #[must_use]
    pub fn len(&self) -> usize {
        self.values.iter().filter(|v| v.is_some()).count()
    }

    /// Whether no keyword is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy where every unset keyword that has a `PG*` variable (see [`KEYWORDS`]) takes
    /// that variable's value, looked up through `lookup` (e.g. `|name| std::env::var(name).ok()`).
    /// Values in `self` win, as in libpq. A variable set to the empty string counts as set.
    /// `PGREQUIRESSL=1` means `sslmode=require` when `PGSSLMODE` is unset. libpq's
    /// compiled-in defaults are not added; the typed accessors apply them.
    #[must_use]
    pub fn with_env_defaults(&self, lookup: impl Fn(&str) -> Option<String>) -> ConnInfo {
        env::with_env_defaults(self, lookup)
    }

    /// [`with_env_defaults`](Self::with_env_defaults) with this process's environment
    /// (variables that are not UTF-8 are ignored).
    #[must_use]
    pub fn with_process_env_defaults(&self) -> ConnInfo {
        self.with_env_defaults(|name| std::env::var(name).ok())
    }

    /// The servers to try, in order, with libpq's pairing of `host`, `hostaddr` and `port`
    /// lists. One entry with neither host nor hostaddr means libpq's default (the local
    /// socket directory). `load_balance_hosts=random` shuffling is left to the caller.
    pub fn hosts(&self) -> Result<Vec<HostEntry>, ConnInfoError> {
        validate::hosts(self)
    }

    /// The effective `sslmode` under libpq's rules: `prefer` when unset, `verify-full` when
    /// unset and `sslrootcert=system`; `sslrootcert=system` with a weaker mode and
    /// `sslnegotiation=direct` with a mode that may fall back to plaintext are errors.
    ///
    /// Whether a `verify-*` mode actually has a root certificate (libpq falls back to
    /// `~/.postgresql/root.crt`) is checked when connecting, not here: this crate does no I/O.
    pub fn ssl_mode(&self) -> Result<SslMode, ConnInfoError> {
        let mode = match self.get("sslmode") {
            None => None,
            Some(value) => Some(
                SslMode::ALL
                    .into_iter()
                    .find(|m| m.as_str() == value)
                    .ok_or_else(|| ConnInfoError::InvalidValue {
                        keyword: "sslmode",
                        value: value.to_owned(),
                        expected: "disable, allow, prefer, require, verify-ca, verify-full",
                    })?,
            ),
        };
        let root = self.root_cert();
        Ok(effective_ssl_mode(
            mode,
            root.as_ref(),
            self.ssl_negotiation()?,
            true,
        )?)
    }

    /// `sslnegotiation`: `postgres` (the default) or `direct`.
    pub fn ssl_negotiation(&self) -> Result<SslNegotiation, ConnInfoError> {
        match self.get("sslnegotiation") {
            None => Ok(SslNegotiation::Postgres),
            Some(value) => value.parse().map_err(|_| ConnInfoError::InvalidValue {
                keyword: "sslnegotiation",
                value: value.to_owned(),
                expected: "postgres, direct",
            }),
        }
    }

    /// Where root certificates come from (`sslrootcert`), if set and not empty. `None` means
    /// libpq's default file `~/.postgresql/root.crt`, if it exists.
    #[must_use]
    pub fn root_cert(&self) -> Option<RootCertSource> {
        self.get("sslrootcert")
            .filter(|v| !v.is_empty())
            .map(RootCertSource::parse)
    }

    /// `connect_timeout` per host: `None` when unset, zero or negative (wait forever), as libpq.
    pub fn connect_timeout(&self) -> Result<Option<Duration>, ConnInfoError> {
        let Some(value) = self.get("connect_timeout") else {
            return Ok(None);
        };
        let seconds =
            validate::parse_int_param(value).ok_or_else(|| ConnInfoError::InvalidInteger {
                keyword: "connect_timeout",
                value: value.to_owned(),
            })?;
        Ok(u64::try_from(seconds)
            .ok()
            .filter(|&s| s > 0)
            .map(Duration::from_secs))
    }

    /// The application name libpq sends: `application_name` if set (nothing if it is set but
    /// empty), else `fallback_application_name` if not empty.
    #[must_use]
    pub fn application_name(&self) -> Option<&str> {
        self.get("application_name")
            .or_else(|| self.get("fallback_application_name"))
            .filter(|v| !v.is_empty())
    }

    /// The database name, if set and not empty (libpq then defaults it to the user name).
    #[must_use]
    pub fn dbname(&self) -> Option<&str> {
        self.get("dbname").filter(|v| !v.is_empty())
    }

    /// The user name, if set and not empty (libpq then uses the operating-system user).
    #[must_use]
    pub fn user(&self) -> Option<&str> {
        self.get("user").filter(|v| !v.is_empty())
    }

    /// A `Display` of the key/value form with every secret replaced by `***`, for logs.
    #[must_use]
    pub fn redacted(&self) -> Redacted<'_> {
        Redacted(self)
    }

    fn write_pairs(&self, f: &mut fmt::Formatter<'_>, redact: bool) -> fmt::Result {
        for (i, (keyword, value)) in self.iter().enumerate() {
            if i > 0 {
                f.write_char(' ')?;
            }
            f.write_str(keyword)?;
            f.write_char('=')?;
            if redact && value.is_secret() {
                f.write_str(REDACTED)?;
            } else {
                write_value(f, value.expose_secret())?;
            }
        }
        Ok(())
    }
}

/// Writes a value so that libpq's parser reads it back unchanged: bare when it is not empty
/// and has no whitespace, quote or backslash; otherwise single-quoted with `'` and `\`
/// escaped by a backslash.
fn write_value(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    let needs_quotes = value.is_empty()
        || value
            .bytes()
            .any(|b| parse::is_c_space(b) || b == b'\'' || b == b'\\');
    if !needs_quotes {
        return f.write_str(value);
    }
    f.write_char('\'')?;
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            f.write_char('\\')?;
        }
        f.write_char(c)?;
    }
    f.write_char('\'')
}

impl FromStr for ConnInfo {
    type Err = ConnInfoError;

    /// Parses (either syntax) and validates: [`parse_unvalidated`](Self::parse_unvalidated)
    /// followed by [`validate`](Self::validate).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let info = Self::parse_unvalidated(s)?;
        info.validate()?;
        Ok(info)
    }
}

/// The key/value form, **including secrets** (so that it parses back to an equal
/// `ConnInfo`). Use [`ConnInfo::redacted`] for anything that may be logged.
impl fmt::Display for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_pairs(f, false)
    }
}

/// Lists the keywords that are set; secrets print as `***`.
impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("ConnInfo");
        for (keyword, value) in self.iter() {
            match value {
                ParamValue::Plain(v) => s.field(keyword, &v),
                ParamValue::Secret(_) => s.field(keyword, &format_args!("{REDACTED}")),
            };
        }
        s.finish()
    }
}

impl PartialEq for ConnInfo {
    fn eq(&self, other: &Self) -> bool {
        self.values
            .iter()
            .zip(&other.values)
            .all(|(a, b)| a.as_ref().map(Stored::expose) == b.as_ref().map(Stored::expose))
    }
}

impl Eq for ConnInfo {}

/// The key/value form of a [`ConnInfo`] with secrets replaced by `***`; from
/// [`ConnInfo::redacted`].
#[derive(Clone, Copy)]
pub struct Redacted<'a>(&'a ConnInfo);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write_pairs(f, true)
    }
}

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requiressl_is_translated_like_libpq() {
        let info = ConnInfo::parse_unvalidated("requiressl=1").unwrap();
        assert_eq!(info.get("sslmode"), Some("require"));
        let info = ConnInfo::parse_unvalidated("requiressl=0").unwrap();
        assert_eq!(info.get("sslmode"), Some("prefer"));
        let mut info = ConnInfo::new();
        info.set("requiressl", "1").unwrap();
        assert_eq!(info.get("sslmode"), Some("require"));
    }

    #[test]
    fn secrets_are_not_reachable_through_get() {
        let info = ConnInfo::parse_unvalidated("password=pw sslpassword=kp host=h").unwrap();
        assert_eq!(info.get("password"), None);
        assert_eq!(info.password().map(ExposeSecret::expose_secret), Some("pw"));
        assert_eq!(
            info.secret("sslpassword").map(ExposeSecret::expose_secret),
            Some("kp")
        );
        assert!(info.secret("host").is_none());
        assert_eq!(
            format!("{info:?}"),
            r#"ConnInfo { password: ***, host: "h", sslpassword: *** }"#
        );
        assert_eq!(
            info.redacted().to_string(),
            "password=*** host=h sslpassword=***"
        );
    }

    #[test]
    fn display_quotes_only_when_needed() {
        let mut info = ConnInfo::new();
        info.set("host", "plain").unwrap();
        info.set("options", "-c a=b").unwrap();
        info.set("application_name", "").unwrap();
        info.set("dbname", r"it's \ here").unwrap();
        assert_eq!(
            info.to_string(),
            r"dbname='it\'s \\ here' host=plain options='-c a=b' application_name=''"
        );
        assert_eq!(
            ConnInfo::parse_unvalidated(&info.to_string()).unwrap(),
            info
        );
    }

    #[test]
    fn unix_socket_detection() {
        let info = ConnInfo::parse_unvalidated("host=/tmp,@abstract,db, hostaddr=''").unwrap();
        let kinds: Vec<bool> = info
            .hosts()
            .unwrap()
            .iter()
            .map(HostEntry::is_unix_socket)
            .collect();
        assert_eq!(kinds, [true, true, false, true]);
    }
}
