//! The checks libpq makes before and while it connects (`pqConnectOptions2`, plus the integer
//! options it parses in `PQconnectPoll`/`pqConnectDBComplete`). `PQconninfoParse` accepts any
//! value; these checks are what turns a bad value into an error.

use std::collections::HashSet;
use std::net::IpAddr;

use secrecy::ExposeSecret;

use super::error::ConnInfoError;
use super::parse::is_c_space;
use super::{ConnInfo, HostEntry};
use crate::ssl::SslMode;

/// libpq's default port (`DEF_PGPORT`).
pub(super) const DEFAULT_PORT: u16 = 5432;

/// libpq's `pqParseIntParam`: optional leading whitespace, an optional sign, decimal digits,
/// optional trailing whitespace, and the result must fit in a C `int`.
pub(super) fn parse_int_param(value: &str) -> Option<i32> {
    let trimmed = value.trim_start_matches(|c: char| c.is_ascii() && is_c_space(c as u8));
    let trimmed = trimmed.trim_end_matches(|c: char| c.is_ascii() && is_c_space(c as u8));
    let digits = trimmed.strip_prefix(['+', '-']).unwrap_or(trimmed);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    trimmed.parse::<i32>().ok()
}

fn int_param(info: &ConnInfo, keyword: &'static str) -> Result<Option<i32>, ConnInfoError> {
    match info.get(keyword) {
        None => Ok(None),
        Some(value) => {
            parse_int_param(value)
                .map(Some)
                .ok_or_else(|| ConnInfoError::InvalidInteger {
                    keyword,
                    value: value.to_owned(),
                })
        }
    }
}

/// Checks that a set keyword holds one of `allowed` (case-sensitive, like libpq's `strcmp`).
fn one_of(
    info: &ConnInfo,
    keyword: &'static str,
    allowed: &[&str],
    expected: &'static str,
) -> Result<(), ConnInfoError> {
    match info.get(keyword) {
        Some(value) if !allowed.contains(&value) => Err(ConnInfoError::InvalidValue {
            keyword,
            value: value.to_owned(),
            expected,
        }),
        _ => Ok(()),
    }
}

/// libpq's `count_comma_separated_elems`.
fn count_elements(list: &str) -> usize {
    list.bytes().filter(|&b| b == b',').count() + 1
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

/// One host slot per element of `hostaddr` (if given), else of `host` (if given), else one
/// default slot; each paired with its `host`, `hostaddr` and `port` entry, as libpq's
/// `pqConnectOptions2` and `PQconnectPoll` pair them.
pub(super) fn hosts(info: &ConnInfo) -> Result<Vec<HostEntry>, ConnInfoError> {
    let host = non_empty(info.get("host"));
    let hostaddr = non_empty(info.get("hostaddr"));
    let host_list: Vec<&str> = host.map(|h| h.split(',').collect()).unwrap_or_default();
    let addr_list: Vec<&str> = hostaddr.map(|h| h.split(',').collect()).unwrap_or_default();
    let slots = if hostaddr.is_some() {
        addr_list.len()
    } else if host.is_some() {
        host_list.len()
    } else {
        1
    };
    if hostaddr.is_some() && host.is_some() && host_list.len() != slots {
        return Err(ConnInfoError::HostCountMismatch {
            hosts: host_list.len(),
            hostaddrs: slots,
        });
    }

    let mut ports: Vec<u16> = vec![DEFAULT_PORT; slots];
    if let Some(port) = non_empty(info.get("port")) {
        let port_list: Vec<&str> = port.split(',').collect();
        if port_list.len() != 1 && port_list.len() != slots {
            return Err(ConnInfoError::PortCountMismatch {
                ports: count_elements(port),
                hosts: slots,
            });
        }
        let parsed = port_list
            .iter()
            .map(|p| parse_port(p))
            .collect::<Result<Vec<_>, _>>()?;
        ports = if parsed.len() == 1 {
            vec![parsed[0]; slots]
        } else {
            parsed
        };
    }

    Ok((0..slots)
        .map(|i| HostEntry {
            host: host_list
                .get(i)
                .filter(|h| !h.is_empty())
                .map(|h| (*h).to_owned()),
            hostaddr: addr_list
                .get(i)
                .filter(|h| !h.is_empty())
                .map(|h| (*h).to_owned()),
            port: ports[i],
        })
        .collect())
}

/// One `port` list element: empty means the default; otherwise an integer in 1..=65535.
fn parse_port(value: &str) -> Result<u16, ConnInfoError> {
    if value.is_empty() {
        return Ok(DEFAULT_PORT);
    }
    let number = parse_int_param(value).ok_or_else(|| ConnInfoError::InvalidInteger {
        keyword: "port",
        value: value.to_owned(),
    })?;
    u16::try_from(number)
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| ConnInfoError::InvalidPort {
            value: value.to_owned(),
        })
}

const REQUIRE_AUTH_METHODS: &[&str] = &[
    "password",
    "md5",
    "gss",
    "sspi",
    "scram-sha-256",
    "oauth",
    "none",
];

/// libpq's `require_auth` rules: a comma-separated list of methods, either all negated
/// (`!md5,!password`) or none, each at most once.
fn check_require_auth(value: &str) -> Result<(), ConnInfoError> {
    if value.is_empty() {
        return Ok(());
    }
    let mut negated_list = false;
    let mut seen = HashSet::new();
    for (i, part) in value.split(',').enumerate() {
        let (negated, method) = match part.strip_prefix('!') {
            Some(method) => (true, method),
            None => (false, part),
        };
        if i == 0 {
            negated_list = negated;
        } else if negated != negated_list {
            return Err(ConnInfoError::RequireAuthMixed {
                method: part.to_owned(),
                negated,
            });
        }
        if !REQUIRE_AUTH_METHODS.contains(&method) {
            return Err(ConnInfoError::InvalidValue {
                keyword: "require_auth",
                value: method.to_owned(),
                expected: "password, md5, gss, sspi, scram-sha-256, oauth, none, each optionally negated with !",
            });
        }
        if !seen.insert(method) {
            return Err(ConnInfoError::RequireAuthDuplicate {
                method: part.to_owned(),
            });
        }
    }
    Ok(())
}

const TLS_VERSIONS: &[&str] = &["tlsv1", "tlsv1.1", "tlsv1.2", "tlsv1.3"];

/// `sslVerifyProtocolVersion` (case-insensitive; empty means unset) and
/// `sslVerifyProtocolRange`, with libpq's default minimum `TLSv1.2`.
fn check_tls_versions(info: &ConnInfo) -> Result<(), ConnInfoError> {
    for keyword in ["ssl_min_protocol_version", "ssl_max_protocol_version"] {
        if let Some(value) = non_empty(info.get(keyword))
            && !TLS_VERSIONS.contains(&value.to_ascii_lowercase().as_str())
        {
            return Err(ConnInfoError::InvalidValue {
                keyword,
                value: value.to_owned(),
                expected: "TLSv1, TLSv1.1, TLSv1.2, TLSv1.3",
            });
        }
    }
    let min = info.get("ssl_min_protocol_version").unwrap_or("TLSv1.2");
    let Some(max) = non_empty(info.get("ssl_max_protocol_version")) else {
        return Ok(());
    };
    if min.is_empty() || min.eq_ignore_ascii_case("tlsv1") {
        return Ok(());
    }
    let (min_lower, max_lower) = (min.to_ascii_lowercase(), max.to_ascii_lowercase());
    if max_lower == "tlsv1" || min_lower > max_lower {
        return Err(ConnInfoError::SslProtocolRange {
            min: min.to_owned(),
            max: max.to_owned(),
        });
    }
    Ok(())
}

/// `pqParseProtocolVersion`: the wire protocol as (major, minor).
fn protocol_version(keyword: &'static str, value: &str) -> Result<(u8, u8), ConnInfoError> {
    match value {
        "3.0" => Ok((3, 0)),
        "3.2" | "latest" => Ok((3, 2)),
        _ => Err(ConnInfoError::InvalidValue {
            keyword,
            value: value.to_owned(),
            expected: "3.0, 3.2, latest",
        }),
    }
}

fn check_protocol_versions(info: &ConnInfo) -> Result<(), ConnInfoError> {
    let min_text = info.get("min_protocol_version");
    let max_text = info.get("max_protocol_version");
    let min = min_text
        .map(|v| protocol_version("min_protocol_version", v))
        .transpose()?
        .unwrap_or((3, 0));
    let max = match max_text {
        Some(v) => protocol_version("max_protocol_version", v)?,
        // libpq defaults to 3.0 unless the minimum asks for more.
        None if min > (3, 0) => (3, 2),
        None => (3, 0),
    };
    if min > max {
        return Err(ConnInfoError::ProtocolVersionRange {
            min: min_text.unwrap_or("3.0").to_owned(),
            max: max_text.unwrap_or("3.0").to_owned(),
        });
    }
    Ok(())
}

fn base64_value(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// The decoded length of `pg_b64_decode(value)`, or `None` if libpq would reject it.
fn base64_decoded_len(value: &str) -> Option<usize> {
    let mut len = 0;
    let mut pos = 0;
    let mut end = 0;
    for c in value.bytes() {
        if c == b'=' {
            if end == 0 {
                end = match pos {
                    2 => 1,
                    3 => 2,
                    _ => return None,
                };
            }
        } else {
            base64_value(c)?;
        }
        pos += 1;
        if pos == 4 {
            len += match end {
                0 => 3,
                1 => 1,
                _ => 2,
            };
            pos = 0;
        }
    }
    (pos == 0).then_some(len)
}

/// The SCRAM keys must be base64 of `SCRAM_MAX_KEY_LEN` (32) bytes.
fn check_scram_keys(info: &ConnInfo) -> Result<(), ConnInfoError> {
    for keyword in ["scram_client_key", "scram_server_key"] {
        if let Some(key) = info.secret(keyword)
            && base64_decoded_len(key.expose_secret()) != Some(32)
        {
            return Err(ConnInfoError::InvalidScramKey { keyword });
        }
    }
    Ok(())
}

/// All of libpq's option checks, in libpq's order.
pub(super) fn validate(info: &ConnInfo) -> Result<(), ConnInfoError> {
    hosts(info)?;
    check_require_auth(info.get("require_auth").unwrap_or(""))?;
    one_of(
        info,
        "channel_binding",
        &["disable", "prefer", "require"],
        "disable, prefer, require",
    )?;
    one_of(
        info,
        "sslmode",
        &SslMode::ALL.map(SslMode::as_str),
        "disable, allow, prefer, require, verify-ca, verify-full",
    )?;
    one_of(
        info,
        "sslnegotiation",
        &["postgres", "direct"],
        "postgres, direct",
    )?;
    info.ssl_mode()?;
    check_tls_versions(info)?;
    one_of(
        info,
        "sslcertmode",
        &["disable", "allow", "require"],
        "disable, allow, require",
    )?;
    one_of(
        info,
        "gssencmode",
        &["disable", "prefer", "require"],
        "disable, prefer, require",
    )?;
    one_of(
        info,
        "target_session_attrs",
        &[
            "any",
            "read-write",
            "read-only",
            "primary",
            "standby",
            "prefer-standby",
        ],
        "any, read-write, read-only, primary, standby, prefer-standby",
    )?;
    check_protocol_versions(info)?;
    check_scram_keys(info)?;
    one_of(
        info,
        "load_balance_hosts",
        &["disable", "random"],
        "disable, random",
    )?;
    // libpq parses these when it connects; a bad one fails every connection attempt.
    for keyword in [
        "connect_timeout",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
    ] {
        int_param(info, keyword)?;
    }
    Ok(())
}

/// Whether a `require_auth` list (already checked by [`check_require_auth`]) lets the server
/// use `method`: a plain list allows what it names, a negated list everything else.
fn require_auth_allows(list: &str, method: &str) -> bool {
    let negated = list.starts_with('!');
    let named = list
        .split(',')
        .any(|part| part.strip_prefix('!').unwrap_or(part) == method);
    named != negated
}

/// PostgreSQL's encoding-name comparison (`clean_encoding_name`): letters and digits only,
/// case-insensitive. Whether `name` is one of the server's spellings of UTF8.
fn is_utf8_encoding_name(name: &str) -> bool {
    let clean: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    matches!(clean.as_str(), "utf8" | "unicode")
}

/// Whether the locale that `psql` adopts (`setlocale(LC_ALL, "")`: `LC_ALL`, else
/// `LC_CTYPE`, else `LANG`) has the UTF-8 codeset, which is what libpq's
/// `client_encoding=auto` then picks. Unset, `C` and `POSIX` mean `SQL_ASCII`.
fn locale_is_utf8(lookup: &dyn Fn(&str) -> Option<String>) -> bool {
    let Some(locale) = ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .find_map(|name| lookup(name).filter(|v| !v.is_empty()))
    else {
        return false;
    };
    locale
        .split_once('.')
        .map(|(_, rest)| rest.split('@').next().unwrap_or(rest))
        .is_some_and(is_utf8_encoding_name)
}

/// Whether PostgreSQL's `parse_bool` reads `value` as false (`f`, `false`, `n`, `no`, `of`,
/// `off`, `0`, any case; no surrounding spaces), as the server does for `replication`.
fn is_false_bool(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    match lower.as_bytes().first() {
        Some(b'f') => "false".starts_with(&lower),
        Some(b'n') => "no".starts_with(&lower),
        // A lone `o` is ambiguous between on and off: the server rejects it.
        Some(b'o') => lower.len() >= 2 && "off".starts_with(&lower),
        Some(b'0') => lower.len() == 1,
        _ => false,
    }
}

/// Shown instead of a secret keyword's value in [`ConnInfoError::Unsupported`].
const HIDDEN: &str = "***";

fn refuse(keyword: &'static str, value: &str, reason: &'static str) -> Result<(), ConnInfoError> {
    Err(ConnInfoError::Unsupported {
        keyword,
        value: value.to_owned(),
        reason,
    })
}

/// The settings libpq honours but pgwarden's driver cannot: each is refused, never ignored.
/// `lookup` reads the process environment (only for `client_encoding=auto`).
fn check_supported(
    info: &ConnInfo,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConnInfoError> {
    check_target(info)?;
    check_session(info, lookup)
}

/// Where and how to authenticate: `service`, `require_auth`, `requirepeer`, `hostaddr`,
/// `gssencmode`.
fn check_target(info: &ConnInfo) -> Result<(), ConnInfoError> {
    if let Some(value) = info.get("service") {
        // libpq reads the service file when it parses the string (an unknown service is an
        // error there): ignoring the keyword would connect somewhere else.
        return refuse(
            "service",
            value,
            "pgwarden does not read connection service files (pg_service.conf, ~/.pg_service.conf); write the service's settings into the connection string instead",
        );
    }
    if let Some(value) = non_empty(info.get("require_auth")) {
        // channel_binding=require already limits authentication to SCRAM-SHA-256-PLUS (the
        // driver refuses trust, password, md5 and plain SCRAM then, as libpq does), so any
        // list that allows scram-sha-256 is honoured exactly.
        if info.get("channel_binding") != Some("require") {
            return refuse(
                "require_auth",
                value,
                "the driver cannot tell which authentication method the server asks for, so it cannot refuse the methods require_auth excludes (a server could obtain the password in cleartext); remove require_auth, or add channel_binding=require (with sslmode=verify-full), which allows only SCRAM-SHA-256 with channel binding and so honours any require_auth list that allows scram-sha-256",
            );
        }
        if !require_auth_allows(value, "scram-sha-256") {
            return refuse(
                "require_auth",
                value,
                "with channel_binding=require only SCRAM-SHA-256 can succeed and this list excludes it, so every connection would fail: allow scram-sha-256 in require_auth",
            );
        }
    }
    let hosts = hosts(info)?;
    if let Some(value) = non_empty(info.get("requirepeer"))
        && hosts.iter().any(HostEntry::is_unix_socket)
    {
        return refuse(
            "requirepeer",
            value,
            "the driver gives no access to the Unix socket, so the operating-system user of the server process cannot be checked; connect over TCP with sslmode=verify-full, or remove requirepeer",
        );
    }
    // libpq resolves hostaddr with getaddrinfo(AI_NUMERICHOST), which also takes shorthand
    // IPv4 (`127.1`) and IPv6 zone indexes (`fe80::1%eth0`), and fails the host for a name.
    if let Some(address) = hosts
        .iter()
        .filter_map(|h| h.hostaddr.as_deref())
        .find(|a| a.parse::<IpAddr>().is_err())
    {
        return refuse(
            "hostaddr",
            address,
            "pgwarden takes hostaddr only in standard notation: a dotted-quad IPv4 address (192.0.2.10) or an IPv6 address without zone index (2001:db8::1); put a host name in host instead",
        );
    }
    if let Some(value @ "require") = info.get("gssencmode") {
        return refuse(
            "gssencmode",
            value,
            "pgwarden has no GSSAPI support (a libpq built without GSSAPI refuses this value too); use gssencmode=prefer or disable, and sslmode=verify-full for an encrypted, authenticated connection",
        );
    }
    Ok(())
}

/// What the session would be: `client_encoding`, protocol versions, `sslcompression`,
/// `replication`, SCRAM keys, OAuth, `sslkeylogfile`.
fn check_session(
    info: &ConnInfo,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConnInfoError> {
    const NO_OAUTH: &str = "the driver has no OAuth (OAUTHBEARER) authentication; remove the oauth_* settings and authenticate with a password or a client certificate";
    if let Some(value) = non_empty(info.get("client_encoding")) {
        let utf8 = if value == "auto" {
            locale_is_utf8(lookup)
        } else {
            is_utf8_encoding_name(value)
        };
        if !utf8 {
            return refuse(
                "client_encoding",
                value,
                "the driver always uses client_encoding UTF8 (libpq's auto picks the locale's encoding, and this locale's is not UTF-8); remove client_encoding or set it to UTF8",
            );
        }
    }
    for keyword in ["min_protocol_version", "max_protocol_version"] {
        if let Some(value) = info.get(keyword).filter(|v| *v != "3.0") {
            return refuse(
                keyword,
                value,
                "the driver speaks protocol version 3.0 only (no 3.2 and its longer cancel keys); remove the setting or set it to 3.0",
            );
        }
    }
    if let Some(value) = info.get("sslcompression").filter(|v| !v.starts_with('0')) {
        // libpq clears SSL_OP_NO_COMPRESSION unless the value starts with 0.
        return refuse(
            "sslcompression",
            value,
            "rustls never compresses TLS records (compression exposes secrets to CRIME-style attacks, and PostgreSQL 14 and later refuse it); remove sslcompression or set it to 0",
        );
    }
    if let Some(value) = non_empty(info.get("replication")).filter(|v| !is_false_bool(v)) {
        return refuse(
            "replication",
            value,
            "pgwarden needs ordinary SQL sessions, not replication connections; remove replication or set it to false",
        );
    }
    for keyword in ["scram_client_key", "scram_server_key"] {
        if info.secret(keyword).is_some() {
            return refuse(
                keyword,
                HIDDEN,
                "the driver authenticates with SCRAM from the password only and cannot use precomputed SCRAM keys; give the password instead",
            );
        }
    }
    for keyword in ["oauth_issuer", "oauth_client_id", "oauth_scope"] {
        if let Some(value) = non_empty(info.get(keyword)) {
            return refuse(keyword, value, NO_OAUTH);
        }
    }
    if info
        .secret("oauth_client_secret")
        .is_some_and(|s| !s.expose_secret().is_empty())
    {
        return refuse("oauth_client_secret", HIDDEN, NO_OAUTH);
    }
    if let Some(value) = non_empty(info.get("sslkeylogfile")) {
        return refuse(
            "sslkeylogfile",
            value,
            "pgwarden never writes TLS session secrets to disk, since anyone who can read the file can decrypt the session (credentials included); remove sslkeylogfile, and debug TLS with psql instead",
        );
    }
    Ok(())
}

impl ConnInfo {
    /// An integer option (`keepalives`, `keepalives_idle`, `tcp_user_timeout`, ...) read as
    /// libpq reads it (`pqParseIntParam`); `None` when not set.
    pub fn int_option(&self, keyword: &'static str) -> Result<Option<i32>, ConnInfoError> {
        int_param(self, keyword)
    }

    /// Refuses the settings that libpq honours but pgwarden cannot, so that none is silently
    /// ignored. Each refusal is a [`ConnInfoError::Unsupported`] naming the keyword, its value
    /// (`***` for secrets) and what to do instead:
    ///
    /// - `service` (any value): `pg_service.conf` is not read;
    /// - `require_auth`, unless `channel_binding=require` makes it hold (see below);
    /// - `requirepeer` with a Unix-socket host;
    /// - `hostaddr` entries that are not plain IP addresses (libpq also takes `127.1` or
    ///   `fe80::1%eth0`);
    /// - `gssencmode=require`;
    /// - `client_encoding` other than UTF8 (any spelling the server takes: `utf8`, `UTF-8`,
    ///   `unicode`) and `auto` when the locale `psql` would use (`LC_ALL`, `LC_CTYPE`,
    ///   `LANG` of this process) is not UTF-8;
    /// - `min_protocol_version`/`max_protocol_version` other than `3.0`;
    /// - `sslcompression` not starting with `0` (libpq then allows compression);
    /// - `replication` other than a false boolean (`0`, `off`, `false`, `no`, ...);
    /// - `scram_client_key`, `scram_server_key`, the non-empty `oauth_*` settings and
    ///   `sslkeylogfile`.
    ///
    /// Separate from [`validate`](Self::validate), which accepts exactly what libpq accepts:
    /// these strings are valid, pgwarden just cannot connect as they ask. `require_auth` is
    /// accepted with `channel_binding=require` when its list allows `scram-sha-256`: channel
    /// binding then limits authentication to SCRAM-SHA-256-PLUS, which such a list allows.
    ///
    /// Everything else is honoured by the connector (`pgwarden-pg-driver`), or has no effect
    /// there as in a libpq without GSSAPI (`krbsrvname`, `gsslib`, `gssdelegation`, which
    /// only parametrize GSSAPI authentication: a server asking for it fails the connection).
    pub fn check_supported(&self) -> Result<(), ConnInfoError> {
        check_supported(self, &|name| std::env::var(name).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supported(s: &str) -> Result<(), ConnInfoError> {
        supported_in(s, &[])
    }

    /// With this environment (for `client_encoding=auto`).
    fn supported_in(s: &str, env: &[(&str, &str)]) -> Result<(), ConnInfoError> {
        let lookup = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        };
        check_supported(&ConnInfo::parse_unvalidated(s).unwrap(), &lookup)
    }

    #[test]
    fn require_auth_lists() {
        assert!(require_auth_allows("scram-sha-256", "scram-sha-256"));
        assert!(require_auth_allows("md5,scram-sha-256", "scram-sha-256"));
        assert!(!require_auth_allows("md5,password", "scram-sha-256"));
        assert!(require_auth_allows("!md5,!password", "scram-sha-256"));
        assert!(!require_auth_allows("!scram-sha-256", "scram-sha-256"));
        assert!(!require_auth_allows("none", "scram-sha-256"));
    }

    const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    #[test]
    fn unsupported_settings_are_refused_by_name() {
        let key = format!("host=h scram_client_key={KEY}");
        let server_key = format!("host=h scram_server_key={KEY}");
        for (s, keyword) in [
            ("host=h require_auth=scram-sha-256", "require_auth"),
            ("host=h require_auth=!password", "require_auth"),
            (
                "host=h require_auth=md5 channel_binding=require",
                "require_auth",
            ),
            ("host=/tmp requirepeer=postgres", "requirepeer"),
            ("requirepeer=postgres", "requirepeer"),
            ("host=h,/tmp requirepeer=postgres", "requirepeer"),
            ("host=h gssencmode=require", "gssencmode"),
            ("host=h service=prod", "service"),
            ("host=h service=''", "service"),
            ("hostaddr=127.1", "hostaddr"),
            ("hostaddr=db.example.com", "hostaddr"),
            ("host=a,b hostaddr=127.0.0.1,fe80::1%lo", "hostaddr"),
            ("host=h client_encoding=LATIN1", "client_encoding"),
            ("host=h client_encoding=SQL_ASCII", "client_encoding"),
            ("host=h client_encoding=auto", "client_encoding"),
            ("host=h min_protocol_version=3.2", "min_protocol_version"),
            ("host=h min_protocol_version=latest", "min_protocol_version"),
            ("host=h max_protocol_version=3.2", "max_protocol_version"),
            ("host=h max_protocol_version=latest", "max_protocol_version"),
            ("host=h sslcompression=1", "sslcompression"),
            ("host=h sslcompression=''", "sslcompression"),
            ("host=h sslcompression=yes", "sslcompression"),
            ("host=h replication=true", "replication"),
            ("host=h replication=database", "replication"),
            ("host=h replication=o", "replication"),
            ("host=h replication=offf", "replication"),
            (&key, "scram_client_key"),
            (&server_key, "scram_server_key"),
            ("host=h oauth_issuer=https://idp", "oauth_issuer"),
            ("host=h oauth_client_id=pgwarden", "oauth_client_id"),
            ("host=h oauth_client_secret=S3cr3t", "oauth_client_secret"),
            ("host=h oauth_scope=openid", "oauth_scope"),
            ("host=h sslkeylogfile=/tmp/keys", "sslkeylogfile"),
        ] {
            let e = supported(s).expect_err(s);
            assert!(
                matches!(&e, ConnInfoError::Unsupported { keyword: k, .. } if *k == keyword),
                "{s}: {e:?}"
            );
            assert!(e.to_string().starts_with(&format!("{keyword}=")), "{e}");
            for secret in [KEY, "S3cr3t"] {
                assert!(!format!("{e} {e:?}").contains(secret), "{e:?}");
            }
        }
        for s in [
            "host=h",
            "host=h require_auth=",
            "host=h require_auth=scram-sha-256 channel_binding=require",
            "host=h require_auth=!md5,!password channel_binding=require",
            "host=h requirepeer=postgres",
            "hostaddr=127.0.0.1 requirepeer=postgres",
            "host=/tmp requirepeer=",
            "host=h gssencmode=prefer",
            "host=h gssencmode=disable",
            "hostaddr=127.0.0.1,::1,,::ffff:10.0.0.1 host=a,b,c,d",
            "host=h client_encoding=''",
            "host=h client_encoding=UTF8",
            "host=h client_encoding=utf-8",
            "host=h client_encoding=Unicode",
            "host=h min_protocol_version=3.0 max_protocol_version=3.0",
            "host=h sslcompression=0",
            "host=h sslcompression=0x",
            "host=h replication=''",
            "host=h replication=false",
            "host=h replication=OFF",
            "host=h replication=of",
            "host=h replication=0",
            "host=h replication=n",
            "host=h replication=fa",
            "host=h oauth_issuer='' oauth_client_id='' oauth_scope='' oauth_client_secret=''",
            "host=h sslkeylogfile=''",
            "host=h krbsrvname=other gsslib=gssapi gssdelegation=1",
            "host=h target_session_attrs=prefer-standby load_balance_hosts=random",
            "host=h sslsni=0 passfile=/nonexistent fallback_application_name=x",
        ] {
            supported(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        }
    }

    #[test]
    fn client_encoding_auto_follows_the_locale_psql_would_use() {
        let auto = "host=h client_encoding=auto";
        for env in [
            &[("LANG", "en_US.UTF-8")][..],
            &[("LC_CTYPE", "C.utf8"), ("LANG", "C")],
            &[("LC_ALL", "de_DE.utf8@euro"), ("LC_CTYPE", "C")],
            &[("LC_ALL", ""), ("LANG", "en_GB.UTF-8")],
        ] {
            supported_in(auto, env).unwrap_or_else(|e| panic!("{env:?}: {e}"));
        }
        for env in [
            &[][..],
            &[("LANG", "C")],
            &[("LANG", "POSIX")],
            &[("LANG", "en_US")],
            &[("LANG", "en_US.ISO-8859-1")],
            &[("LC_ALL", "C"), ("LANG", "en_US.UTF-8")],
        ] {
            let e = supported_in(auto, env).expect_err(&format!("{env:?}"));
            assert!(e.to_string().starts_with("client_encoding=auto "), "{e}");
        }
    }

    #[test]
    fn int_options() {
        let info = ConnInfo::parse_unvalidated("keepalives_idle=' 30 ' keepalives=x").unwrap();
        assert_eq!(info.int_option("keepalives_idle"), Ok(Some(30)));
        assert_eq!(info.int_option("keepalives_count"), Ok(None));
        assert!(info.int_option("keepalives").is_err());
    }

    #[test]
    fn int_params_follow_strtol() {
        assert_eq!(parse_int_param(" 42 "), Some(42));
        assert_eq!(parse_int_param("+7"), Some(7));
        assert_eq!(parse_int_param("-1"), Some(-1));
        assert_eq!(parse_int_param(""), None);
        assert_eq!(parse_int_param("4x"), None);
        assert_eq!(parse_int_param("0x10"), None);
        assert_eq!(parse_int_param("2147483648"), None);
        assert_eq!(parse_int_param("-"), None);
    }

    #[test]
    fn base64_lengths() {
        assert_eq!(base64_decoded_len("AAAA"), Some(3));
        assert_eq!(base64_decoded_len("AA=="), Some(1));
        assert_eq!(base64_decoded_len("AAA="), Some(2));
        assert_eq!(base64_decoded_len("AAA"), None);
        assert_eq!(base64_decoded_len("A==="), None);
        assert_eq!(base64_decoded_len("AA A"), None);
        assert_eq!(
            base64_decoded_len(&format!("{}=", "A".repeat(43))),
            Some(32)
        );
    }
}
