//! Per-grant session limits: role settings applied to the login role of each grant.
//!
//! An integration (its `[session]` table) and an access flow may set limits that
//! pgwarden applies to the login role of every grant it makes, in the transaction that
//! makes the grant: `ALTER ROLE … SET statement_timeout = …` and the like for the
//! settings, `CONNECTION LIMIT n` for the number of sessions. A flow's limits are laid
//! over the integration's with [`SessionLimits::merged_over`] (field by field, the
//! flow wins).
//!
//! | field | applied as | needs |
//! |---|---|---|
//! | `statement_timeout` | `statement_timeout` (ms) | |
//! | `lock_timeout` | `lock_timeout` (ms) | |
//! | `idle_in_transaction_session_timeout` | same name (ms) | |
//! | `idle_session_timeout` | same name (ms) | PostgreSQL 14 |
//! | `transaction_timeout` | same name (ms) | PostgreSQL 17 |
//! | `connection_limit` | `CONNECTION LIMIT n` | |
//! | `search_path` | `search_path`, each schema a quoted identifier | |
//! | `default_transaction_read_only` | same name | |
//! | `pgaudit_log` | `pgaudit.log` | pgaudit in `shared_preload_libraries` |
//!
//! **Security controls and guard rails.** Two limits are security controls: the
//! grantee cannot lift them. `connection_limit` is a role attribute only a role
//! administrator changes, and `pgaudit.log` is a superuser (`SUSET`) setting, so a
//! non-superuser grantee cannot turn its own audit logging off. Every other limit —
//! the timeouts, `search_path` and `default_transaction_read_only` — is only the
//! *default* of the grantee's sessions: the grantee may `SET` another value in its own
//! session (`SET statement_timeout = 0`, `SET default_transaction_read_only = off`).
//! They are guard rails against mistakes (a forgotten transaction, a runaway query, an
//! accidental write), not controls against a grantee who means harm; access itself is
//! bounded by the permission level granted.
//!
//! **Persistent users** carry several grants on one role; the role gets the
//! combination of its active grants' limits ([`SessionLimits::most_restrictive`]): the
//! smallest of each timeout and of the connection limit, read-only when any grant says
//! so, and the latest grant's `search_path` and `pgaudit_log`.
//!
//! ```
//! use pgwarden_core::session::SessionLimits;
//!
//! let flow: SessionLimits = toml::from_str(r#"
//!     statement_timeout = "30s"
//!     connection_limit = 2
//!     search_path = ["app", "public"]
//!     pgaudit_log = "read, write"
//! "#).unwrap();
//! assert!(flow.problems("session", Some(16)).is_empty());
//!
//! // The integration's defaults under the flow's limits: the flow wins.
//! let defaults: SessionLimits =
//!     toml::from_str("statement_timeout = \"5min\"\nlock_timeout = \"2s\"").unwrap();
//! let applied = flow.merged_over(&defaults);
//! assert_eq!(applied.settings()[..2], [
//!     ("statement_timeout", "30000".to_owned()),
//!     ("lock_timeout", "2000".to_owned()),
//! ]);
//!
//! // A setting the server lacks is refused, naming the setting and the major.
//! let newer: SessionLimits = toml::from_str("transaction_timeout = \"1min\"").unwrap();
//! let problems = newer.problems("session", Some(16));
//! assert_eq!(problems[0].field, "session.transaction_timeout");
//! assert!(problems[0].message.contains("PostgreSQL 17"), "{}", problems[0]);
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::ConfigProblem;

/// A timeout in whole milliseconds, written `500ms`, `30s`, `5min`, `1h` (or a bare
/// number of milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Millis(u64);

impl Millis {
    /// `ms` milliseconds.
    #[must_use]
    pub const fn new(ms: u64) -> Self {
        Millis(ms)
    }

    /// The length in milliseconds.
    #[must_use]
    pub const fn as_millis(self) -> u64 {
        self.0
    }
}

impl FromStr for Millis {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let n: u64 = digits.parse().map_err(|_| {
            format!("invalid timeout \"{s}\": use a number and ms, s, min or h, e.g. 30s")
        })?;
        let factor = match unit.trim() {
            "" | "ms" => 1,
            "s" => 1000,
            "min" => 60_000,
            "h" => 3_600_000,
            _ => {
                return Err(format!(
                    "invalid timeout \"{s}\": use a number and ms, s, min or h, e.g. 30s"
                ));
            }
        };
        n.checked_mul(factor)
            .map(Millis)
            .ok_or_else(|| format!("invalid timeout \"{s}\": too long"))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

impl Serialize for Millis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Millis(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Limits applied to a grant's login role. Every field is optional; unset fields leave
/// the server's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionLimits {
    /// `statement_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_timeout: Option<Millis>,
    /// `lock_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_timeout: Option<Millis>,
    /// `idle_in_transaction_session_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_in_transaction_session_timeout: Option<Millis>,
    /// `idle_session_timeout` (PostgreSQL 14+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_session_timeout: Option<Millis>,
    /// `transaction_timeout` (PostgreSQL 17+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_timeout: Option<Millis>,
    /// The role's `CONNECTION LIMIT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_limit: Option<u32>,
    /// `search_path`, schema names in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_path: Option<Vec<String>>,
    /// `default_transaction_read_only` (a convenience, not a security control).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_transaction_read_only: Option<bool>,
    /// `pgaudit.log` (needs the pgaudit extension loaded).
    #[serde(
        default,
        rename = "pgaudit_log",
        alias = "pgaudit.log",
        skip_serializing_if = "Option::is_none"
    )]
    pub pgaudit_log: Option<String>,
}

/// The longest timeout, in milliseconds: PostgreSQL keeps timeouts in an `int`.
pub const MAX_TIMEOUT_MS: u64 = 2_147_483_647;

/// The largest `connection_limit` PostgreSQL accepts.
pub const MAX_CONNECTION_LIMIT: u32 = 2_147_483_647;

/// The longest schema name, in bytes (PostgreSQL's `NAMEDATALEN - 1`).
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// The classes `pgaudit.log` accepts (case-insensitive, each optionally prefixed `-`
/// to subtract it).
pub const PGAUDIT_CLASSES: [&str; 9] = [
    "read", "write", "function", "role", "ddl", "misc", "misc_set", "all", "none",
];

impl SessionLimits {
    /// Whether no limit is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == SessionLimits::default()
    }

    /// The timeouts that are set, with their setting names.
    fn timeouts(&self) -> [(&'static str, Option<Millis>); 5] {
        [
            ("statement_timeout", self.statement_timeout),
            ("lock_timeout", self.lock_timeout),
            (
                "idle_in_transaction_session_timeout",
                self.idle_in_transaction_session_timeout,
            ),
            ("idle_session_timeout", self.idle_session_timeout),
            ("transaction_timeout", self.transaction_timeout),
        ]
    }

    /// The limits that are set and that PostgreSQL `major` lacks, each with the
    /// first major that has it: `idle_session_timeout` (14), `transaction_timeout`
    /// (17).
    #[must_use]
    pub fn unsupported(&self, major: u32) -> Vec<(&'static str, u32)> {
        [
            ("idle_session_timeout", self.idle_session_timeout, 14),
            ("transaction_timeout", self.transaction_timeout, 17),
        ]
        .into_iter()
        .filter(|(_, set, since)| set.is_some() && major < *since)
        .map(|(name, _, since)| (name, since))
        .collect()
    }

    /// The problems of these limits, each under `path` (e.g. `session`,
    /// `flows[0].session`); settings the server's `major` lacks are problems when the
    /// major is known.
    #[must_use]
    pub fn problems(&self, path: &str, major: Option<u32>) -> Vec<ConfigProblem> {
        let field = |name: &str| {
            if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            }
        };
        let mut problems = Vec::new();
        for (name, value) in self.timeouts() {
            match value.map(Millis::as_millis) {
                Some(0) => problems.push(ConfigProblem::new(
                    field(name),
                    "must be more than 0 (leave it out to keep the server's default)",
                )),
                Some(ms) if ms > MAX_TIMEOUT_MS => problems.push(ConfigProblem::new(
                    field(name),
                    format!("{ms}ms is too long: PostgreSQL takes at most {MAX_TIMEOUT_MS}ms (about 24 days)"),
                )),
                _ => {}
            }
        }
        match self.connection_limit {
            Some(0) => problems.push(ConfigProblem::new(
                field("connection_limit"),
                "must be at least 1 (0 would refuse every login; leave it out for no limit)",
            )),
            Some(n) if n > MAX_CONNECTION_LIMIT => problems.push(ConfigProblem::new(
                field("connection_limit"),
                format!("must be at most {MAX_CONNECTION_LIMIT}"),
            )),
            _ => {}
        }
        if let Some(schemas) = &self.search_path {
            if schemas.is_empty() {
                problems.push(ConfigProblem::new(
                    field("search_path"),
                    "is empty: list at least one schema, or leave it out",
                ));
            }
            for (i, schema) in schemas.iter().enumerate() {
                if let Some(why) = schema_problem(schema) {
                    problems.push(ConfigProblem::new(
                        format!("{}[{i}]", field("search_path")),
                        why,
                    ));
                }
            }
        }
        if let Some(log) = &self.pgaudit_log
            && let Err(why) = check_pgaudit_log(log)
        {
            problems.push(ConfigProblem::new(field("pgaudit_log"), why));
        }
        if let Some(major) = major {
            for (name, since) in self.unsupported(major) {
                problems.push(ConfigProblem::new(
                    field(name),
                    format!(
                        "{name} needs PostgreSQL {since} or later; the server is PostgreSQL {major}: leave it out"
                    ),
                ));
            }
        }
        problems
    }

    /// These limits laid over `defaults`, field by field: a field set here wins, an
    /// unset one takes the default's value. A flow's limits over its integration's.
    #[must_use]
    pub fn merged_over(&self, defaults: &SessionLimits) -> SessionLimits {
        SessionLimits {
            statement_timeout: self.statement_timeout.or(defaults.statement_timeout),
            lock_timeout: self.lock_timeout.or(defaults.lock_timeout),
            idle_in_transaction_session_timeout: self
                .idle_in_transaction_session_timeout
                .or(defaults.idle_in_transaction_session_timeout),
            idle_session_timeout: self.idle_session_timeout.or(defaults.idle_session_timeout),
            transaction_timeout: self.transaction_timeout.or(defaults.transaction_timeout),
            connection_limit: self.connection_limit.or(defaults.connection_limit),
            search_path: self
                .search_path
                .clone()
                .or_else(|| defaults.search_path.clone()),
            default_transaction_read_only: self
                .default_transaction_read_only
                .or(defaults.default_transaction_read_only),
            pgaudit_log: self
                .pgaudit_log
                .clone()
                .or_else(|| defaults.pgaudit_log.clone()),
        }
    }

    /// The limits of one role carrying two grants, these and `later`'s (a persistent
    /// user): the smallest of each timeout and of the connection limit, read-only when
    /// either says so, and `later`'s `search_path` and `pgaudit_log` when it sets them
    /// (else these). A field only one sets is kept.
    #[must_use]
    pub fn most_restrictive(&self, later: &SessionLimits) -> SessionLimits {
        fn min<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        SessionLimits {
            statement_timeout: min(self.statement_timeout, later.statement_timeout),
            lock_timeout: min(self.lock_timeout, later.lock_timeout),
            idle_in_transaction_session_timeout: min(
                self.idle_in_transaction_session_timeout,
                later.idle_in_transaction_session_timeout,
            ),
            idle_session_timeout: min(self.idle_session_timeout, later.idle_session_timeout),
            transaction_timeout: min(self.transaction_timeout, later.transaction_timeout),
            connection_limit: min(self.connection_limit, later.connection_limit),
            search_path: later
                .search_path
                .clone()
                .or_else(|| self.search_path.clone()),
            default_transaction_read_only: match (
                self.default_transaction_read_only,
                later.default_transaction_read_only,
            ) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (a, b) => a.or(b),
            },
            pgaudit_log: later
                .pgaudit_log
                .clone()
                .or_else(|| self.pgaudit_log.clone()),
        }
    }

    /// [`most_restrictive`](Self::most_restrictive) over several grants' limits,
    /// oldest first.
    #[must_use]
    pub fn combined<'a>(limits: impl IntoIterator<Item = &'a SessionLimits>) -> SessionLimits {
        limits
            .into_iter()
            .fold(SessionLimits::default(), |acc, l| acc.most_restrictive(l))
    }

    /// The settings that are set, as (setting name, value text), in a fixed order:
    /// timeouts in milliseconds, `default_transaction_read_only` as `on`/`off`,
    /// `search_path` as its schema names joined by `, ` (unquoted: for display — the
    /// driver quotes each name as an identifier), `pgaudit.log` as written.
    /// `connection_limit` is a role attribute, not a setting, and is not listed.
    #[must_use]
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = self
            .timeouts()
            .into_iter()
            .filter_map(|(name, v)| v.map(|v| (name, v.as_millis().to_string())))
            .collect();
        if let Some(schemas) = &self.search_path {
            out.push(("search_path", schemas.join(", ")));
        }
        if let Some(ro) = self.default_transaction_read_only {
            out.push((
                "default_transaction_read_only",
                if ro { "on" } else { "off" }.to_owned(),
            ));
        }
        if let Some(log) = &self.pgaudit_log {
            out.push(("pgaudit.log", log.clone()));
        }
        out
    }
}

/// Why `schema` cannot be a `search_path` entry, if it cannot.
fn schema_problem(schema: &str) -> Option<String> {
    if schema.is_empty() {
        Some("is empty: name a schema".to_owned())
    } else if schema.len() > MAX_IDENTIFIER_BYTES {
        Some(format!(
            "schema name is {} bytes; PostgreSQL names have at most {MAX_IDENTIFIER_BYTES}",
            schema.len()
        ))
    } else if schema.chars().any(char::is_control) {
        Some("schema name holds a control character".to_owned())
    } else if schema.trim() != schema {
        Some(format!(
            "schema name {schema:?} starts or ends with white space: remove it"
        ))
    } else {
        None
    }
}

/// Checks a `pgaudit.log` value: a comma-separated list of pgaudit classes.
fn check_pgaudit_log(log: &str) -> Result<(), String> {
    let valid = || {
        PGAUDIT_CLASSES
            .iter()
            .map(|c| c.to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if log.trim().is_empty() {
        return Err(format!(
            "is empty: list pgaudit classes ({}), e.g. \"read, write\"",
            valid()
        ));
    }
    for class in log.split(',') {
        let class = class.trim();
        let name = class.strip_prefix('-').unwrap_or(class);
        if !PGAUDIT_CLASSES.iter().any(|c| c.eq_ignore_ascii_case(name)) {
            return Err(format!(
                "{class:?} is not a pgaudit class: use a comma-separated list of {}, each optionally prefixed with -",
                valid()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(toml_text: &str) -> SessionLimits {
        toml::from_str(toml_text).unwrap()
    }

    fn fields(problems: &[ConfigProblem]) -> Vec<&str> {
        problems.iter().map(|p| p.field.as_str()).collect()
    }

    #[test]
    fn timeouts_read_units_and_serialize_back() {
        let l = limits(
            "statement_timeout = \"30s\"\nlock_timeout = 250\nidle_session_timeout = \"5min\"\ntransaction_timeout = \"1h\"",
        );
        assert_eq!(l.statement_timeout, Some(Millis::new(30_000)));
        assert_eq!(l.lock_timeout, Some(Millis::new(250)));
        assert_eq!(l.idle_session_timeout, Some(Millis::new(300_000)));
        assert_eq!(l.transaction_timeout, Some(Millis::new(3_600_000)));
        let back: SessionLimits = toml::from_str(&toml::to_string(&l).unwrap()).unwrap();
        assert_eq!(back, l);
        assert!(toml::from_str::<SessionLimits>("lock_timeout = \"2 days\"").is_err());
        assert!(toml::from_str::<SessionLimits>("colour = 1").is_err());
    }

    #[test]
    fn valid_limits_have_no_problems() {
        let l = limits(
            r#"statement_timeout = "30s"
               lock_timeout = "2s"
               idle_in_transaction_session_timeout = "1min"
               idle_session_timeout = "10min"
               transaction_timeout = "1h"
               connection_limit = 3
               search_path = ["$user", "app", "Mixed Case"]
               default_transaction_read_only = true
               pgaudit_log = "READ, -misc_set,ddl""#,
        );
        assert!(l.problems("session", None).is_empty());
        assert!(l.problems("session", Some(17)).is_empty());
        assert!(
            SessionLimits::default()
                .problems("session", Some(13))
                .is_empty()
        );
    }

    #[test]
    fn every_bad_value_is_named() {
        let l = SessionLimits {
            statement_timeout: Some(Millis::new(0)),
            lock_timeout: Some(Millis::new(MAX_TIMEOUT_MS + 1)),
            connection_limit: Some(0),
            search_path: Some(vec![
                "ok".into(),
                String::new(),
                "x".repeat(64),
                " padded".into(),
                "nul\0".into(),
            ]),
            pgaudit_log: Some("read, writes".into()),
            ..SessionLimits::default()
        };
        let problems = l.problems("flows[0].session", None);
        assert_eq!(
            fields(&problems),
            [
                "flows[0].session.statement_timeout",
                "flows[0].session.lock_timeout",
                "flows[0].session.connection_limit",
                "flows[0].session.search_path[1]",
                "flows[0].session.search_path[2]",
                "flows[0].session.search_path[3]",
                "flows[0].session.search_path[4]",
                "flows[0].session.pgaudit_log",
            ],
            "{problems:?}"
        );
        assert!(
            problems[7].message.contains("\"writes\""),
            "{}",
            problems[7]
        );
        let empty = SessionLimits {
            search_path: Some(Vec::new()),
            pgaudit_log: Some(" ".into()),
            ..SessionLimits::default()
        };
        assert_eq!(
            fields(&empty.problems("session", None)),
            ["session.search_path", "session.pgaudit_log"]
        );
    }

    #[test]
    fn settings_a_major_lacks_are_refused_by_name_and_major() {
        let l = limits("idle_session_timeout = \"1s\"\ntransaction_timeout = \"1s\"");
        assert!(l.problems("session", None).is_empty());
        let p13 = l.problems("session", Some(13));
        assert_eq!(
            fields(&p13),
            [
                "session.idle_session_timeout",
                "session.transaction_timeout"
            ]
        );
        assert!(
            p13[0].message.contains("PostgreSQL 14") && p13[0].message.contains("PostgreSQL 13")
        );
        let p16 = l.problems("session", Some(16));
        assert_eq!(fields(&p16), ["session.transaction_timeout"]);
        assert!(
            p16[0]
                .message
                .contains("transaction_timeout needs PostgreSQL 17")
        );
        assert_eq!(l.unsupported(16), [("transaction_timeout", 17)]);
        assert!(l.unsupported(17).is_empty());
    }

    #[test]
    fn merged_over_takes_each_field_from_self_first() {
        let flow = limits("statement_timeout = \"1s\"\nsearch_path = [\"a\"]");
        let defaults = limits(
            "statement_timeout = \"9s\"\nlock_timeout = \"2s\"\nsearch_path = [\"d\"]\nconnection_limit = 4",
        );
        let m = flow.merged_over(&defaults);
        assert_eq!(m.statement_timeout, Some(Millis::new(1000)));
        assert_eq!(m.lock_timeout, Some(Millis::new(2000)));
        assert_eq!(m.search_path, Some(vec!["a".to_owned()]));
        assert_eq!(m.connection_limit, Some(4));
        assert_eq!(SessionLimits::default().merged_over(&defaults), defaults);
        assert_eq!(flow.merged_over(&SessionLimits::default()), flow);
    }

    #[test]
    fn the_combination_is_the_most_restrictive() {
        let a = limits(
            "statement_timeout = \"10s\"\nconnection_limit = 1\ndefault_transaction_read_only = true\nsearch_path = [\"a\"]\npgaudit_log = \"read\"",
        );
        let b = limits(
            "statement_timeout = \"5s\"\nlock_timeout = \"1s\"\nconnection_limit = 3\ndefault_transaction_read_only = false\nsearch_path = [\"b\"]",
        );
        let c = SessionLimits::combined([&a, &b]);
        assert_eq!(c.statement_timeout, Some(Millis::new(5000)));
        assert_eq!(c.lock_timeout, Some(Millis::new(1000)));
        assert_eq!(c.connection_limit, Some(1));
        assert_eq!(c.default_transaction_read_only, Some(true));
        assert_eq!(c.search_path, Some(vec!["b".to_owned()]));
        assert_eq!(c.pgaudit_log.as_deref(), Some("read"));
        assert_eq!(SessionLimits::combined([&b]), b);
        assert!(SessionLimits::combined([]).is_empty());
    }

    #[test]
    fn settings_list_gucs_with_value_text() {
        let l = limits(
            "lock_timeout = \"2s\"\nsearch_path = [\"a\", \"b\"]\ndefault_transaction_read_only = false\npgaudit_log = \"read\"\nconnection_limit = 2",
        );
        assert_eq!(
            l.settings(),
            [
                ("lock_timeout", "2000".to_owned()),
                ("search_path", "a, b".to_owned()),
                ("default_transaction_read_only", "off".to_owned()),
                ("pgaudit.log", "read".to_owned()),
            ]
        );
    }

    #[test]
    fn pgaudit_log_reads_under_either_name() {
        let json: SessionLimits = serde_json::from_str(r#"{"pgaudit.log": "write"}"#).unwrap();
        assert_eq!(json.pgaudit_log.as_deref(), Some("write"));
        assert!(!json.is_empty());
        assert!(SessionLimits::default().is_empty());
    }

    #[test]
    fn the_integration_reads_its_session_table_with_every_problem() {
        use crate::config::{ConfigFormat, IntegrationConfig};
        let base = "name = \"x\"\nhostname = \"h\"\n";
        let cfg = IntegrationConfig::parse(
            &format!("{base}[session]\nstatement_timeout = \"30s\"\nconnection_limit = 2\nsearch_path = [\"app\"]\ndefault_transaction_read_only = true\npgaudit_log = \"write\"\n"),
            ConfigFormat::Toml,
        )
        .unwrap();
        assert_eq!(cfg.session.statement_timeout, Some(Millis::new(30_000)));
        assert_eq!(cfg.session.connection_limit, Some(2));
        let back = IntegrationConfig::parse(&cfg.to_toml(), ConfigFormat::Toml).unwrap();
        assert_eq!(back, cfg);
        assert!(
            IntegrationConfig::parse(base, ConfigFormat::Toml)
                .unwrap()
                .session
                .is_empty()
        );

        let err = IntegrationConfig::parse(
            &format!("{base}[session]\nstatement_timeout = \"soon\"\nlock_timeout = -1\nconnection_limit = 0\nsearch_path = \"app\"\ndefault_transaction_read_only = \"yes\"\ncolour = 1\n"),
            ConfigFormat::Toml,
        )
        .unwrap_err();
        let problems = err.problems();
        let mut got = fields(&problems);
        got.sort_unstable();
        assert_eq!(
            got,
            [
                "session.colour",
                "session.connection_limit",
                "session.default_transaction_read_only",
                "session.lock_timeout",
                "session.search_path",
                "session.statement_timeout",
            ],
            "{problems:?}"
        );
        let err = IntegrationConfig::parse(
            &format!("{base}[session]\npgaudit_log = \"reads\"\nidle_session_timeout = \"0s\"\n"),
            ConfigFormat::Toml,
        )
        .unwrap_err();
        let problems = err.problems();
        assert_eq!(
            fields(&problems),
            ["session.idle_session_timeout", "session.pgaudit_log"],
            "{problems:?}"
        );
    }
}
