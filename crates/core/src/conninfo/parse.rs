//! The two libpq syntaxes: `key=value` pairs (`conninfo_parse`) and URIs
//! (`conninfo_uri_parse_options`, `conninfo_uri_parse_params`, `conninfo_uri_decode`),
//! ported from PostgreSQL 18's `fe-connect.c` step by step so that edge cases land where
//! libpq lands them.

use super::ConnInfo;
use super::error::ConnInfoError;
use super::keywords::is_secret_name;

const URI_DESIGNATOR: &str = "postgresql://";
const SHORT_URI_DESIGNATOR: &str = "postgres://";

/// What an error shows instead of a secret.
pub(super) const REDACTED: &str = "***";

/// libpq's `uri_prefix_length`: the length of the URI designator, 0 if there is none.
fn uri_prefix_length(s: &str) -> usize {
    if s.starts_with(URI_DESIGNATOR) {
        URI_DESIGNATOR.len()
    } else if s.starts_with(SHORT_URI_DESIGNATOR) {
        SHORT_URI_DESIGNATOR.len()
    } else {
        0
    }
}

/// C's `isspace` in the "C" locale; libpq's key/value parser splits on exactly these bytes.
pub(super) fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `PQconninfoParse`: a URI when the string starts with a designator, else `key=value` pairs.
pub(super) fn parse(s: &str) -> Result<ConnInfo, ConnInfoError> {
    if let Some(position) = s.bytes().position(|b| b == 0) {
        return Err(ConnInfoError::NulCharacter { position });
    }
    match uri_prefix_length(s) {
        0 => parse_key_value(s),
        prefix => parse_uri(s, prefix),
    }
}

/// The next character at byte `i` of `s` (which must be a char boundary).
fn char_at(s: &str, i: usize) -> Option<char> {
    s.get(i..).and_then(|rest| rest.chars().next())
}

fn redact_if(redact: bool, word: &str) -> String {
    if redact {
        REDACTED.to_owned()
    } else {
        word.to_owned()
    }
}

/// `conninfo_parse`: whitespace-separated `keyword = value` pairs. A value is either bare
/// (ends at the first unescaped whitespace) or single-quoted; a backslash escapes the next
/// character in both forms.
fn parse_key_value(s: &str) -> Result<ConnInfo, ConnInfoError> {
    let b = s.as_bytes();
    let len = b.len();
    let mut info = ConnInfo::new();
    let mut i = 0;
    // When an unquoted secret value is cut short by a space, the next "keyword" is probably
    // the rest of the secret: never echo it in an error.
    let mut after_secret = false;

    while i < len {
        if is_c_space(b[i]) {
            i += 1;
            continue;
        }

        let name_start = i;
        while i < len && b[i] != b'=' && !is_c_space(b[i]) {
            i += 1;
        }
        let name = &s[name_start..i];
        while i < len && is_c_space(b[i]) {
            i += 1;
        }
        if i >= len || b[i] != b'=' {
            return Err(ConnInfoError::MissingEquals {
                keyword: redact_if(after_secret, name),
                position: name_start,
            });
        }
        i += 1;
        while i < len && is_c_space(b[i]) {
            i += 1;
        }

        let mut value = String::new();
        let quoted = i < len && b[i] == b'\'';
        let mut followed_by_text = false;
        if quoted {
            let quote_at = i;
            i += 1;
            loop {
                let Some(c) = char_at(s, i) else {
                    return Err(ConnInfoError::UnterminatedQuote {
                        keyword: redact_if(after_secret, name),
                        position: quote_at,
                    });
                };
                i += c.len_utf8();
                match c {
                    '\\' => {
                        if let Some(escaped) = char_at(s, i) {
                            value.push(escaped);
                            i += escaped.len_utf8();
                        }
                    }
                    '\'' => break,
                    other => value.push(other),
                }
            }
            followed_by_text = i < len && !is_c_space(b[i]);
        } else {
            while let Some(c) = char_at(s, i) {
                i += c.len_utf8();
                match c {
                    c if c.is_ascii() && is_c_space(c as u8) => {
                        followed_by_text = true;
                        break;
                    }
                    '\\' => {
                        if let Some(escaped) = char_at(s, i) {
                            value.push(escaped);
                            i += escaped.len_utf8();
                        }
                    }
                    other => value.push(other),
                }
            }
        }

        let stored = info
            .store(name, value)
            .ok_or_else(|| ConnInfoError::InvalidOption {
                keyword: redact_if(after_secret, name),
            })?;
        after_secret = followed_by_text && is_secret_name(stored);
    }
    Ok(info)
}

/// The URI with its password (if any) replaced by `***`, for error messages.
fn redact_uri(uri: &str, prefix: usize) -> String {
    let rest = &uri[prefix..];
    let Some(at) = rest
        .find(['@', '/'])
        .filter(|&i| rest.as_bytes()[i] == b'@')
    else {
        return uri.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:{REDACTED}{}",
            &uri[..prefix],
            &rest[..colon],
            &rest[at..]
        ),
        None => uri.to_owned(),
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// `conninfo_uri_decode` (PostgreSQL 17+): leading and trailing spaces are dropped, an inner
/// space is an error, `%xy` decodes, a bad `%` sequence or `%00` is an error. `keyword` names
/// the value in errors; secrets are shown as `***`.
fn uri_decode(s: &str, keyword: &str) -> Result<String, ConnInfoError> {
    let shown = || redact_if(is_secret_name(keyword), s);
    let b = s.as_bytes();
    let len = b.len();
    let mut q = 0;
    while q < len && b[q] == b' ' {
        q += 1;
    }
    let mut out = Vec::with_capacity(len);
    while q < len && b[q] != b' ' {
        if b[q] == b'%' {
            let hi = b.get(q + 1).copied().and_then(hex_digit);
            let lo = b.get(q + 2).copied().and_then(hex_digit);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(ConnInfoError::InvalidPercentEncoding {
                    keyword: keyword.to_owned(),
                    value: shown(),
                });
            };
            let c = (hi << 4) | lo;
            if c == 0 {
                return Err(ConnInfoError::PercentEncodedNul {
                    keyword: keyword.to_owned(),
                    value: shown(),
                });
            }
            out.push(c);
            q += 3;
        } else {
            out.push(b[q]);
            q += 1;
        }
    }
    while q < len && b[q] == b' ' {
        q += 1;
    }
    if q < len {
        return Err(ConnInfoError::UnexpectedSpaces {
            keyword: keyword.to_owned(),
            value: shown(),
        });
    }
    String::from_utf8(out).map_err(|_| ConnInfoError::InvalidUtf8 {
        keyword: keyword.to_owned(),
    })
}

fn store_decoded(info: &mut ConnInfo, keyword: &str, raw: &str) -> Result<(), ConnInfoError> {
    let value = uri_decode(raw, keyword)?;
    // The URI parser only stores keywords from the table, so this cannot fail.
    info.store(keyword, value)
        .map(|_| ())
        .ok_or_else(|| ConnInfoError::InvalidOption {
            keyword: keyword.to_owned(),
        })
}

/// `conninfo_uri_parse_options`:
/// `postgresql://[user[:password]@][host][:port][,host[:port]...][/dbname][?key=value&...]`.
fn parse_uri(uri: &str, prefix: usize) -> Result<ConnInfo, ConnInfoError> {
    let b = uri.as_bytes();
    let len = b.len();
    let mut info = ConnInfo::new();

    // Credentials end at the first '@' seen before any '/' (a '?' does not stop the look-ahead,
    // exactly as in libpq).
    let mut p = prefix;
    while p < len && b[p] != b'@' && b[p] != b'/' {
        p += 1;
    }
    if p < len && b[p] == b'@' {
        let userinfo = &uri[prefix..p];
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        };
        if !user.is_empty() {
            store_decoded(&mut info, "user", user)?;
        }
        if let Some(password) = password.filter(|pw| !pw.is_empty()) {
            store_decoded(&mut info, "password", password)?;
        }
        p += 1;
    } else {
        p = prefix;
    }

    let mut hosts = String::new();
    let mut ports = String::new();
    let mut terminator: Option<u8>;
    loop {
        let host;
        if p < len && b[p] == b'[' {
            p += 1;
            let start = p;
            while p < len && b[p] != b']' {
                p += 1;
            }
            if p >= len {
                return Err(ConnInfoError::UnterminatedIpv6 {
                    uri: redact_uri(uri, prefix),
                });
            }
            if p == start {
                return Err(ConnInfoError::EmptyIpv6 {
                    uri: redact_uri(uri, prefix),
                });
            }
            host = &uri[start..p];
            p += 1;
            if p < len && !matches!(b[p], b':' | b'/' | b'?' | b',') {
                return Err(ConnInfoError::UnexpectedUriCharacter {
                    character: char_at(uri, p).unwrap_or('?'),
                    position: p,
                    uri: redact_uri(uri, prefix),
                });
            }
        } else {
            let start = p;
            while p < len && !matches!(b[p], b':' | b'/' | b'?' | b',') {
                p += 1;
            }
            host = &uri[start..p];
        }
        terminator = b.get(p).copied();
        hosts.push_str(host);

        if terminator == Some(b':') {
            p += 1;
            let start = p;
            while p < len && !matches!(b[p], b'/' | b'?' | b',') {
                p += 1;
            }
            terminator = b.get(p).copied();
            ports.push_str(&uri[start..p]);
        }

        if terminator != Some(b',') {
            break;
        }
        p += 1;
        hosts.push(',');
        ports.push(',');
    }

    if !hosts.is_empty() {
        store_decoded(&mut info, "host", &hosts)?;
    }
    if !ports.is_empty() {
        store_decoded(&mut info, "port", &ports)?;
    }

    if terminator.is_some_and(|t| t != b'?') {
        p += 1;
        let start = p;
        while p < len && b[p] != b'?' {
            p += 1;
        }
        terminator = b.get(p).copied();
        // An empty dbname is not stored: libpq keeps PGDATABASE usable that way.
        let dbname = &uri[start..p];
        if !dbname.is_empty() {
            store_decoded(&mut info, "dbname", dbname)?;
        }
    }

    if terminator.is_some() {
        parse_query(&uri[p + 1..], &mut info)?;
    }
    Ok(info)
}

/// `conninfo_uri_parse_params`: `key=value` pairs separated by `&`, both percent-decoded;
/// `ssl=true` means `sslmode=require` (JDBC compatibility); unknown keys are errors.
fn parse_query(params: &str, info: &mut ConnInfo) -> Result<(), ConnInfoError> {
    let b = params.as_bytes();
    let len = b.len();
    let mut i = 0;
    while i < len {
        let start = i;
        let mut equals: Option<usize> = None;
        let (raw_keyword, raw_value) = loop {
            if i < len && b[i] == b'=' {
                if let Some(eq) = equals {
                    return Err(ConnInfoError::ExtraUriQuerySeparator {
                        keyword: params[start..eq].to_owned(),
                    });
                }
                equals = Some(i);
                i += 1;
            } else if i >= len || b[i] == b'&' {
                let end = i;
                if i < len {
                    i += 1;
                }
                let Some(eq) = equals else {
                    return Err(ConnInfoError::MissingUriQuerySeparator {
                        parameter: params[start..end].to_owned(),
                    });
                };
                break (&params[start..eq], &params[eq + 1..end]);
            } else {
                i += 1;
            }
        };

        let keyword = uri_decode(raw_keyword, "query parameter name")?;
        let value = uri_decode(raw_value, &keyword)?;
        let (keyword, value) = if keyword == "ssl" && value == "true" {
            ("sslmode".to_owned(), "require".to_owned())
        } else {
            (keyword, value)
        };
        if info.store(&keyword, value).is_none() {
            return Err(ConnInfoError::InvalidUriQueryParameter { keyword });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_redaction_hides_only_the_password() {
        let p = URI_DESIGNATOR.len();
        assert_eq!(
            redact_uri("postgresql://u:secret@[::1", p),
            "postgresql://u:***@[::1"
        );
        assert_eq!(redact_uri("postgresql://u@[::1", p), "postgresql://u@[::1");
        assert_eq!(
            redact_uri("postgresql://[::1/a@b", p),
            "postgresql://[::1/a@b"
        );
    }

    #[test]
    fn decode_follows_libpq() {
        assert_eq!(uri_decode("  a%20b  ", "host").unwrap(), "a b");
        assert!(matches!(
            uri_decode("a b", "host"),
            Err(ConnInfoError::UnexpectedSpaces { .. })
        ));
        assert!(matches!(
            uri_decode("%2", "host"),
            Err(ConnInfoError::InvalidPercentEncoding { .. })
        ));
        assert!(matches!(
            uri_decode("%00", "host"),
            Err(ConnInfoError::PercentEncodedNul { .. })
        ));
        assert!(matches!(
            uri_decode("%C3", "host"),
            Err(ConnInfoError::InvalidUtf8 { .. })
        ));
        let err = uri_decode("se%zzcret", "password").unwrap_err().to_string();
        assert!(!err.contains("cret"), "{err}");
    }
}
