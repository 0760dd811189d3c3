//! Custom access details: the integration's note to end users, rendered per grant.
//!
//! A template holds placeholders in braces: `{hostname}`, `{port}`, `{database}`,
//! `{username}`, `{expires_at}`, `{integration}`. `{{` and `}}` stand for literal
//! braces. An unknown placeholder is a validation error, found when the config is
//! loaded, not when a user is waiting for access.
//!
//! ```
//! use pgwarden_core::access_details::{AccessDetailsTemplate, AccessDetailsValues};
//! let t = AccessDetailsTemplate::parse("psql \"host={hostname} user={username}\"").unwrap();
//! let v = AccessDetailsValues { hostname: "db".into(), username: "pgw_alice_x1".into(), ..Default::default() };
//! assert_eq!(t.render(&v), "psql \"host=db user=pgw_alice_x1\"");
//! assert!(AccessDetailsTemplate::parse("{password}").is_err());
//! ```

use std::fmt::Write as _;

/// The longest template accepted, in characters.
pub const MAX_ACCESS_DETAILS_CHARS: usize = 400;

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 6] = [
    "hostname",
    "port",
    "database",
    "username",
    "expires_at",
    "integration",
];

/// Why a template was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessDetailsError {
    /// Longer than [`MAX_ACCESS_DETAILS_CHARS`].
    #[error(
        "custom_access_details is {chars} chars; at most {MAX_ACCESS_DETAILS_CHARS} are allowed"
    )]
    TooLong {
        /// The template's length in characters.
        chars: usize,
    },
    /// `{name}` with a name that is not a placeholder.
    #[error(
        "custom_access_details has unknown placeholder {{{name}}} (valid: {{hostname}} {{port}} {{database}} {{username}} {{expires_at}} {{integration}}; write {{{{ for a literal brace)"
    )]
    UnknownPlaceholder {
        /// The unknown name.
        name: String,
    },
    /// A `{` without its `}`, or a lone `}`.
    #[error(
        "custom_access_details has an unmatched '{brace}' at character {position} (write {{{{ or }}}} for a literal brace)"
    )]
    UnmatchedBrace {
        /// The brace.
        brace: char,
        /// Its 0-based character position.
        position: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Placeholder(&'static str),
}

/// A parsed, valid template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessDetailsTemplate {
    source: String,
    parts: Vec<Part>,
}

/// The values placed into a template for one grant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessDetailsValues {
    /// The instance's host name.
    pub hostname: String,
    /// The instance's port.
    pub port: u16,
    /// The integration's default database.
    pub database: String,
    /// The login role created for the grant.
    pub username: String,
    /// When the grant expires (RFC 3339).
    pub expires_at: String,
    /// The integration's name.
    pub integration: String,
}

impl AccessDetailsTemplate {
    /// Parses and validates a template.
    pub fn parse(source: &str) -> Result<Self, AccessDetailsError> {
        let chars = source.chars().count();
        if chars > MAX_ACCESS_DETAILS_CHARS {
            return Err(AccessDetailsError::TooLong { chars });
        }
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut it = source.chars().enumerate().peekable();
        while let Some((pos, c)) = it.next() {
            match c {
                '{' if it.peek().is_some_and(|&(_, n)| n == '{') => {
                    it.next();
                    text.push('{');
                }
                '}' if it.peek().is_some_and(|&(_, n)| n == '}') => {
                    it.next();
                    text.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for (_, n) in it.by_ref() {
                        if n == '}' {
                            closed = true;
                            break;
                        }
                        name.push(n);
                    }
                    if !closed {
                        return Err(AccessDetailsError::UnmatchedBrace {
                            brace: '{',
                            position: pos,
                        });
                    }
                    let known = PLACEHOLDERS
                        .into_iter()
                        .find(|p| *p == name)
                        .ok_or(AccessDetailsError::UnknownPlaceholder { name })?;
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Placeholder(known));
                }
                '}' => {
                    return Err(AccessDetailsError::UnmatchedBrace {
                        brace: '}',
                        position: pos,
                    });
                }
                _ => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(AccessDetailsTemplate {
            source: source.to_owned(),
            parts,
        })
    }

    /// The template as written.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders the template for one grant.
    #[must_use]
    pub fn render(&self, values: &AccessDetailsValues) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Placeholder(name) => match *name {
                    "hostname" => out.push_str(&values.hostname),
                    "port" => {
                        let _ = write!(out, "{}", values.port);
                    }
                    "database" => out.push_str(&values.database),
                    "username" => out.push_str(&values.username),
                    "expires_at" => out.push_str(&values.expires_at),
                    _ => out.push_str(&values.integration),
                },
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> AccessDetailsValues {
        AccessDetailsValues {
            hostname: "db.internal".into(),
            port: 5433,
            database: "app".into(),
            username: "pgw_alice_k3x9".into(),
            expires_at: "2026-11-28T23:00:00Z".into(),
            integration: "orders-prod".into(),
        }
    }

    #[test]
    fn renders_every_placeholder() {
        let t = AccessDetailsTemplate::parse(
            "{integration}: psql \"host={hostname} port={port} dbname={database} user={username}\" until {expires_at}",
        )
        .unwrap();
        assert_eq!(
            t.render(&values()),
            "orders-prod: psql \"host=db.internal port=5433 dbname=app user=pgw_alice_k3x9\" until 2026-11-28T23:00:00Z"
        );
    }

    #[test]
    fn literal_braces_and_plain_text() {
        let t = AccessDetailsTemplate::parse("{{json}} {username} }}").unwrap();
        assert_eq!(t.render(&values()), "{json} pgw_alice_k3x9 }");
        assert_eq!(
            AccessDetailsTemplate::parse("").unwrap().render(&values()),
            ""
        );
        assert_eq!(
            AccessDetailsTemplate::parse("ask #dba")
                .unwrap()
                .render(&values()),
            "ask #dba"
        );
    }

    #[test]
    fn errors() {
        let cases = [
            ("{password}", "unknown placeholder {password}"),
            ("{ hostname }", "unknown placeholder { hostname }"),
            ("host={hostname", "unmatched '{' at character 5"),
            ("a } b", "unmatched '}' at character 2"),
        ];
        for (src, msg) in cases {
            let err = AccessDetailsTemplate::parse(src).unwrap_err().to_string();
            assert!(err.contains(msg), "{src}: {err}");
        }
        let long = "x".repeat(431);
        assert_eq!(
            AccessDetailsTemplate::parse(&long).unwrap_err().to_string(),
            "custom_access_details is 431 chars; at most 400 are allowed"
        );
        assert!(AccessDetailsTemplate::parse(&"é".repeat(400)).is_ok());
    }
}
