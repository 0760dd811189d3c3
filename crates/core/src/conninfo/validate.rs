//! The checks libpq makes before and while it connects (`pqConnectOptions2`, plus the integer
//! options it parses in `PQconnectPoll`/`pqConnectDBComplete`). `PQconninfoParse` accepts any
//! value; these checks are what turns a bad value into an error.

use std::collections::HashSet;

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
    use secrecy::ExposeSecret;
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

#[cfg(test)]
mod tests {
    use super::*;

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
