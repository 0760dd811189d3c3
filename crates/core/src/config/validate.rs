//! Validation: a parsed document to an [`IntegrationConfig`], with every problem.
//!
//! Each field is declared once, where it is read (`Table::take`, with its aliases):
//! what is left of a table once its fields are read is unknown, and reported with the
//! list of the fields that were read. Every enum is read through its one `FromStr`.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use super::{
    AccessRequestsSettings, ConfigError, ConfigProblem, IntegrationConfig, MAX_NAME_CHARS,
    MAX_USERNAME_PREFIX_BYTES, SecretRef,
};
use crate::access_details::AccessDetailsTemplate;
use crate::duration::Ttl;
use crate::owners::{IntegrationOwner, OwnerAttribute, ResourceOwnerSetting};
use crate::resource::ResourceType;
use crate::session::{Millis, SessionLimits};
use crate::ssl::{RootCertSource, SslMode, SslNegotiation, effective_ssl_mode};

/// Validates `doc`, with `check_secret` finding the problems of its `[secret]` section.
pub(super) fn integration(
    doc: &Value,
    check_secret: impl FnOnce(&SecretRef) -> Vec<ConfigProblem>,
) -> Result<IntegrationConfig, ConfigError> {
    let mut v = Validator::default();
    match v.integration(doc, check_secret) {
        Some(cfg) if v.problems.is_empty() => Ok(cfg),
        _ => Err(ConfigError::Invalid {
            problems: v.problems,
        }),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

fn join_path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The fields of one table, taken as they are read.
struct Table {
    prefix: String,
    rest: Map<String, Value>,
    read: Vec<&'static str>,
    /// Fields set twice (under a name and an alias).
    twice: Vec<ConfigProblem>,
    /// Where in the problem list the table's own problems (unknown fields, fields set
    /// twice) go: first, as they are found before its values are looked at.
    at: usize,
}

impl Table {
    fn new(v: &Validator, prefix: &str, map: &Map<String, Value>) -> Self {
        Table {
            prefix: prefix.to_owned(),
            rest: map.clone(),
            read: Vec::new(),
            twice: Vec::new(),
            at: v.problems.len(),
        }
    }

    /// The field `name`, set under its name or one of `aliases`; two of them set is a
    /// problem, and the first (in the document's key order) wins.
    fn take_aliased(&mut self, name: &'static str, aliases: &[&str]) -> Field {
        self.read.push(name);
        let spellings: Vec<String> = self
            .rest
            .keys()
            .filter(|k| *k == name || aliases.contains(&k.as_str()))
            .cloned()
            .collect();
        let mut found = None;
        for key in spellings {
            let value = self.rest.remove(&key);
            match &found {
                None => found = value.map(|value| (key, value)),
                Some((first, _)) => self.twice.push(ConfigProblem::new(
                    join_path(&self.prefix, &key),
                    format!("\"{key}\" and \"{first}\" both set {name}: keep one"),
                )),
            }
        }
        Field {
            path: join_path(&self.prefix, name),
            value: found.map(|(_, value)| value),
        }
    }

    /// The field `name`.
    fn take(&mut self, name: &'static str) -> Field {
        self.take_aliased(name, &[])
    }

    /// Reports the fields set twice and those no one read.
    fn finish(self, v: &mut Validator) {
        let valid = self.read.join(", ");
        let unknown = self.rest.keys().map(|key| {
            ConfigProblem::new(
                join_path(&self.prefix, key),
                format!("unknown field (valid fields: {valid})"),
            )
        });
        let mine: Vec<ConfigProblem> = self.twice.into_iter().chain(unknown).collect();
        let at = self.at.min(v.problems.len());
        v.problems.splice(at..at, mine);
    }
}

/// One field of a table: its path and its value, if set.
struct Field {
    path: String,
    value: Option<Value>,
}

impl Field {
    fn is_set(&self) -> bool {
        self.value.is_some()
    }

    /// The same, with `null` taken as not set.
    fn non_null(mut self) -> Self {
        self.value = self.value.filter(|v| !v.is_null());
        self
    }
}

#[derive(Default)]
struct Validator {
    problems: Vec<ConfigProblem>,
}

impl Validator {
    fn problem(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push(ConfigProblem::new(field, message));
    }

    fn string(&mut self, path: &str, v: Option<&Value>, required: bool) -> Option<String> {
        match v {
            None | Some(Value::Null) => {
                if required {
                    self.problem(path, "is required");
                }
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.problem(path, "must not be empty");
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.problem(path, format!("must be a string, not {}", type_name(other)));
                None
            }
        }
    }

    /// A string field that must be set.
    fn required(&mut self, f: &Field) -> Option<String> {
        self.string(&f.path, f.value.as_ref(), true)
    }

    fn integer(&mut self, path: &str, v: &Value, min: u64, max: u64) -> Option<u64> {
        let n = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(_) | None if matches!(v, Value::Number(_) | Value::String(_)) => {
                self.problem(
                    path,
                    format!("must be a whole number from {min} to {max}, got {v}"),
                );
                None
            }
            _ => {
                self.problem(
                    path,
                    format!("must be a whole number, not {}", type_name(v)),
                );
                None
            }
        }
    }

    /// An optional string field.
    fn optional(&mut self, f: &Field) -> Option<String> {
        self.string(&f.path, f.value.as_ref(), false)
    }

    /// A string field parsed with the type's one `FromStr`.
    fn parsed<T>(&mut self, f: &Field, required: bool) -> Option<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.parsed_value(&f.path, f.value.as_ref(), required)
    }

    /// A field parsed with the type's `FromStr`, its default when not set.
    fn parsed_or_default<T>(&mut self, f: &Field) -> Option<T>
    where
        T: FromStr + Default,
        T::Err: fmt::Display,
    {
        if f.is_set() {
            self.parsed(f, false)
        } else {
            Some(T::default())
        }
    }

    /// A string value parsed with the type's one `FromStr`, whose error says what is
    /// valid.
    fn parsed_value<T>(&mut self, path: &str, v: Option<&Value>, required: bool) -> Option<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let s = self.string(path, v, required)?;
        match s.parse() {
            Ok(t) => Some(t),
            Err(e) => {
                self.problem(path, e.to_string());
                None
            }
        }
    }

    /// An optional field: its default when not set, else what `read` makes of its path
    /// and value (`None`: invalid, reported).
    fn or_default<T>(
        &mut self,
        f: &Field,
        default: impl FnOnce() -> T,
        read: impl FnOnce(&mut Self, &str, &Value) -> Option<T>,
    ) -> Option<T> {
        match &f.value {
            None => Some(default()),
            Some(v) => read(self, &f.path, v),
        }
    }

    /// A table field: `None` when it is not a table (reported).
    fn table<'v>(
        &mut self,
        path: &str,
        v: &'v Value,
        hint: &str,
    ) -> Option<&'v Map<String, Value>> {
        if let Value::Object(map) = v {
            Some(map)
        } else {
            self.problem(path, format!("must be {hint}, not {}", type_name(v)));
            None
        }
    }

    /// A list field: `None` when it is not a list (reported).
    fn list<'v>(&mut self, path: &str, v: &'v Value, hint: &str) -> Option<&'v [Value]> {
        if let Value::Array(items) = v {
            Some(items)
        } else {
            self.problem(path, format!("must be {hint}, not {}", type_name(v)));
            None
        }
    }

    #[allow(
        clippy::too_many_lines,
        reason = "one flat pass over the fields reads best as a list"
    )]
    fn integration(
        &mut self,
        doc: &Value,
        check_secret: impl FnOnce(&SecretRef) -> Vec<ConfigProblem>,
    ) -> Option<IntegrationConfig> {
        let Value::Object(map) = doc else {
            self.problem(
                "",
                format!(
                    "the config must be a table of settings, not {}",
                    type_name(doc)
                ),
            );
            return None;
        };
        let mut f = Table::new(self, "", map);

        let name = f.take("name");
        let name = self.name(&name);
        let hostname = f.take("hostname");
        let hostname = self.hostname(&hostname);
        let port = self.or_default(
            &f.take("port"),
            || 5432,
            |v, path, p| {
                v.integer(path, p, 1, 65535)
                    .and_then(|p| u16::try_from(p).ok())
            },
        );
        let database = self.or_default(
            &f.take_aliased("database", &["dbname"]),
            || "postgres".to_owned(),
            |v, path, d| v.string(path, Some(d), true),
        );
        let ssl_mode = f.take_aliased("ssl_mode", &["sslmode"]);
        let explicit_mode: Option<SslMode> = self.parsed(&ssl_mode, false);
        let ssl_root_cert = f.take_aliased("ssl_root_cert", &["sslrootcert"]);
        let ssl_root_cert = self.optional(&ssl_root_cert);
        let ssl_cert = f.take_aliased("ssl_cert", &["sslcert"]);
        let ssl_cert = self.optional(&ssl_cert);
        let ssl_key = f.take_aliased("ssl_key", &["sslkey"]);
        let ssl_key = self.optional(&ssl_key);
        self.client_certificate(
            ssl_root_cert.as_deref(),
            ssl_cert.as_deref(),
            ssl_key.as_deref(),
        );
        let ssl_mode = if ssl_mode.is_set() && explicit_mode.is_none() {
            None
        } else {
            self.ssl_mode(explicit_mode, ssl_root_cert.as_deref())
        };

        let credential_rotation_days = self.or_default(
            &f.take_aliased(
                "credential_rotation_days",
                &["credentials_rotation_period_in_days"],
            )
            .non_null(),
            || None,
            |v, path, d| {
                v.integer(path, d, 1, 3650)
                    .map(|d| Some(u32::try_from(d).unwrap_or(3650)))
            },
        );
        let custom_access_details = self.or_default(
            &f.take("custom_access_details").non_null(),
            || None,
            |v, path, t| v.access_details(path, t).map(Some),
        );
        let discovery = self.or_default(
            &f.take("discovery"),
            || ResourceType::ALL.to_vec(),
            Self::discovery,
        );
        let user_mode = f.take("user_mode");
        let user_mode = self.parsed_or_default(&user_mode);
        let connector_mode = f.take("connector_mode");
        let connector_mode = self.parsed_or_default(&connector_mode);
        let username_prefix = self.or_default(
            &f.take("username_prefix"),
            || "pgw_".to_owned(),
            Self::username_prefix,
        );
        let max_ttl = self.or_default(
            &f.take("max_ttl"),
            || Ttl::from_secs(7 * 86_400).unwrap_or(crate::duration::MAX_TTL_CEILING),
            |v, path, t| v.parsed_value::<Ttl>(path, Some(t), false),
        );
        let sensitive_roles_allowed = self.or_default(
            &f.take("sensitive_roles_allowed").non_null(),
            Vec::new,
            Self::sensitive_roles_allowed,
        );
        let secret = self.or_default(
            &f.take("secret").non_null(),
            || None,
            |v, path, s| v.secret(path, s, check_secret).map(Some),
        );
        let integration_owners = self.or_default(
            &f.take("integration_owners").non_null(),
            Vec::new,
            Self::integration_owners,
        );
        let resource_owner = self.or_default(
            &f.take("resource_owner").non_null(),
            || None,
            |v, path, r| v.resource_owner(path, r).map(Some),
        );
        let session = self.or_default(
            &f.take("session").non_null(),
            SessionLimits::default,
            Self::session,
        );
        let access_requests = self.or_default(
            &f.take("access_requests").non_null(),
            || None,
            |v, path, r| v.access_requests(path, r).map(Some),
        );
        f.finish(self);
        if let (Some(Some(_)), Some(owners)) = (&resource_owner, &integration_owners)
            && owners.is_empty()
        {
            self.problem(
                "resource_owner",
                "is set but there are no integration_owners: add at least one [[integration_owners]] entry as the fallback approver",
            );
        }

        Some(IntegrationConfig {
            name: name?,
            hostname: hostname?,
            port: port?,
            database: database?,
            ssl_mode: ssl_mode?,
            ssl_root_cert,
            ssl_cert,
            ssl_key,
            credential_rotation_days: credential_rotation_days?,
            custom_access_details: custom_access_details?,
            discovery: discovery?,
            user_mode: user_mode?,
            connector_mode: connector_mode?,
            username_prefix: username_prefix?,
            max_ttl: max_ttl?,
            sensitive_roles_allowed: sensitive_roles_allowed?,
            secret: secret?,
            integration_owners: integration_owners?,
            resource_owner: resource_owner?,
            session: session?,
            access_requests: access_requests?,
        })
    }

    fn name(&mut self, f: &Field) -> Option<String> {
        let n = self.required(f)?;
        let len = n.chars().count();
        if len > MAX_NAME_CHARS {
            self.problem(
                &f.path,
                format!("is {len} chars; at most {MAX_NAME_CHARS} are allowed"),
            );
        } else if let Some(bad) = n
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            self.problem(
                &f.path,
                format!("has '{bad}': use only letters, digits, '-' and '_'"),
            );
        }
        Some(n)
    }

    fn hostname(&mut self, f: &Field) -> Option<String> {
        let h = self.required(f)?;
        if let Some(bad) = h
            .chars()
            .find(|c| c.is_whitespace() || matches!(c, ',' | '/' | '@' | '\'' | '"'))
        {
            self.problem(
                &f.path,
                format!(
                    "\"{h}\" has '{}': give one host name or IP address",
                    bad.escape_default()
                ),
            );
        }
        Some(h)
    }

    /// A client certificate needs its key and the reverse; inline PEM must be whole.
    fn client_certificate(
        &mut self,
        ssl_root_cert: Option<&str>,
        ssl_cert: Option<&str>,
        ssl_key: Option<&str>,
    ) {
        match (ssl_cert, ssl_key) {
            (Some(_), None) => self.problem("ssl_key", "is required when ssl_cert is set"),
            (None, Some(_)) => self.problem("ssl_cert", "is required when ssl_key is set"),
            _ => {}
        }
        for (field, value) in [
            ("ssl_root_cert", ssl_root_cert),
            ("ssl_cert", ssl_cert),
            ("ssl_key", ssl_key),
        ] {
            if let Some(v) = value
                && v.trim_start().starts_with("-----BEGIN")
                && !v.contains("-----END")
            {
                self.problem(
                    field,
                    "inline PEM has no -----END line: paste the whole block",
                );
            }
        }
    }

    /// The effective SSL mode, from the mode given (if any) and the root certificate.
    fn ssl_mode(&mut self, explicit: Option<SslMode>, root_cert: Option<&str>) -> Option<SslMode> {
        let root = root_cert.map(RootCertSource::parse);
        match effective_ssl_mode(explicit, root.as_ref(), SslNegotiation::Postgres, false) {
            Ok(m) => Some(m),
            Err(e) => {
                let field = if root.is_some() || explicit.is_some() {
                    "ssl_mode"
                } else {
                    "ssl_root_cert"
                };
                self.problem(field, e.to_string().replace("sslrootcert", "ssl_root_cert"));
                None
            }
        }
    }

    fn access_details(&mut self, path: &str, v: &Value) -> Option<AccessDetailsTemplate> {
        let Value::String(s) = v else {
            self.problem(path, format!("must be a string, not {}", type_name(v)));
            return None;
        };
        match AccessDetailsTemplate::parse(s) {
            Ok(t) => Some(t),
            Err(e) => {
                self.problem(
                    path,
                    e.to_string()
                        .trim_start_matches("custom_access_details ")
                        .to_owned(),
                );
                None
            }
        }
    }

    fn discovery(&mut self, path: &str, v: &Value) -> Option<Vec<ResourceType>> {
        let items = self.list(path, v, "a list such as [\"database\", \"table\"]")?;
        let mut out = Vec::new();
        let mut ok = true;
        for (i, value) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            match self.parsed_value::<ResourceType>(&item_path, Some(value), false) {
                Some(t) if out.contains(&t) => {
                    self.problem(&item_path, format!("\"{t}\" is listed twice"));
                    ok = false;
                }
                Some(t) => out.push(t),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn sensitive_roles_allowed(&mut self, path: &str, v: &Value) -> Option<Vec<String>> {
        let items = self.list(path, v, "a list of role names such as [\"ops\"]")?;
        let mut out: Vec<String> = Vec::new();
        let mut ok = true;
        for (i, value) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let Some(role) = self.string(&item_path, Some(value), true) else {
                ok = false;
                continue;
            };
            let problem = if role.len() > 63 {
                Some(format!(
                    "\"{role}\" is {} bytes; PostgreSQL role names have at most 63",
                    role.len()
                ))
            } else if role.starts_with("pg_") {
                Some(format!(
                    "\"{role}\" is a predefined role: membership in predefined roles is never granted"
                ))
            } else if crate::naming::is_bookkeeping_role(&role) {
                Some(format!(
                    "\"{role}\" is one of pgwarden's own roles, which are never granted"
                ))
            } else if out.contains(&role) {
                Some(format!("\"{role}\" is listed twice"))
            } else {
                None
            };
            match problem {
                Some(m) => {
                    self.problem(&item_path, m);
                    ok = false;
                }
                None => out.push(role),
            }
        }
        ok.then_some(out)
    }

    fn username_prefix(&mut self, path: &str, v: &Value) -> Option<String> {
        let Value::String(p) = v else {
            self.problem(path, format!("must be a string, not {}", type_name(v)));
            return None;
        };
        let problem = if p.is_empty() {
            Some("must not be empty (the default is \"pgw_\")".to_owned())
        } else if p.len() > MAX_USERNAME_PREFIX_BYTES {
            Some(format!(
                "is {} bytes; at most {MAX_USERNAME_PREFIX_BYTES} leave room for the requester in 63-byte role names",
                p.len()
            ))
        } else if !p.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
            Some("must start with a lowercase letter or '_'".to_owned())
        } else if let Some(bad) = p
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
        {
            Some(format!(
                "has '{bad}': use lowercase letters, digits and '_' so role names need no quoting"
            ))
        } else if p.starts_with("pg_") {
            Some(
                "must not start with \"pg_\": PostgreSQL reserves that prefix for its own roles"
                    .to_owned(),
            )
        } else {
            None
        };
        match problem {
            Some(m) => {
                self.problem(path, m);
                None
            }
            None => Some(p.clone()),
        }
    }

    /// The `[secret]` section: a backend name and settings this crate passes on
    /// unread; `check_secret` judges them, and its problems are listed here.
    fn secret(
        &mut self,
        path: &str,
        v: &Value,
        check_secret: impl FnOnce(&SecretRef) -> Vec<ConfigProblem>,
    ) -> Option<SecretRef> {
        let map = self.table(path, v, "a table ([secret])")?;
        let mut settings = map.clone();
        let backend = match settings.remove("backend") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(b)) => b,
            Some(other) => {
                self.problem(
                    &join_path(path, "backend"),
                    format!("must be a string, not {}", type_name(&other)),
                );
                return None;
            }
        };
        settings.retain(|_, value| !value.is_null());
        let secret = SecretRef { backend, settings };
        let problems = check_secret(&secret);
        let ok = problems.is_empty();
        self.problems.extend(problems);
        ok.then_some(secret)
    }

    fn integration_owners(&mut self, path: &str, v: &Value) -> Option<Vec<IntegrationOwner>> {
        let items = self.list(path, v, "a list of tables ([[integration_owners]])")?;
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let prefix = format!("{path}[{i}]");
            let Some(map) = self.table(&prefix, item, "a table") else {
                ok = false;
                continue;
            };
            let mut f = Table::new(self, &prefix, map);
            let source = f.take("source");
            let attribute = f.take("attribute");
            let values = f.take("values");
            f.finish(self);
            let source = self.required(&source);
            let attribute: Option<OwnerAttribute> = self.parsed(&attribute, true);
            let values = self.values(&values);
            match (source, attribute, values) {
                (Some(source), Some(attribute), Some(values)) => out.push(IntegrationOwner {
                    source,
                    attribute,
                    values,
                }),
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn values(&mut self, f: &Field) -> Option<Vec<String>> {
        let path = f.path.as_str();
        match &f.value {
            None => {
                self.problem(path, "is required: list at least one user or group");
                None
            }
            Some(Value::Array(items)) if items.is_empty() => {
                self.problem(path, "is empty: list at least one user or group");
                None
            }
            Some(Value::Array(items)) => {
                let before = self.problems.len();
                let vals: Vec<String> = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| self.string(&format!("{path}[{i}]"), Some(item), true))
                    .collect();
                (self.problems.len() == before).then_some(vals)
            }
            Some(other) => {
                self.problem(
                    path,
                    format!("must be a list of strings, not {}", type_name(other)),
                );
                None
            }
        }
    }

    fn resource_owner(&mut self, path: &str, v: &Value) -> Option<ResourceOwnerSetting> {
        let map = self.table(path, v, "a table ([resource_owner])")?;
        let mut f = Table::new(self, path, map);
        let key = f.take("key");
        let source = f.take("source");
        let attribute = f.take("attribute");
        f.finish(self);
        let key = self.required(&key);
        let source = self.required(&source);
        let attribute: Option<OwnerAttribute> = self.parsed(&attribute, true);
        Some(ResourceOwnerSetting {
            key: key?,
            source: source?,
            attribute: attribute?,
        })
    }

    /// The `[access_requests]` table.
    fn access_requests(&mut self, path: &str, v: &Value) -> Option<AccessRequestsSettings> {
        let map = self.table(path, v, "a table ([access_requests])")?;
        let mut f = Table::new(self, path, map);
        let flows = f.take("flows");
        let database = f.take("database").non_null();
        f.finish(self);
        let flows = self.required(&flows);
        let database = if database.is_set() {
            Some(self.required(&database)?)
        } else {
            None
        };
        Some(AccessRequestsSettings {
            flows: flows?,
            database,
        })
    }

    /// The `[session]` table: each limit read with its own problems, then
    /// [`SessionLimits::problems`] (the server's major is not known here).
    fn session(&mut self, path: &str, v: &Value) -> Option<SessionLimits> {
        let map = self.table(path, v, "a table ([session])")?;
        let mut f = Table::new(self, path, map);
        let statement_timeout = f.take("statement_timeout").non_null();
        let lock_timeout = f.take("lock_timeout").non_null();
        let idle_in_transaction = f.take("idle_in_transaction_session_timeout").non_null();
        let idle_session = f.take("idle_session_timeout").non_null();
        let transaction_timeout = f.take("transaction_timeout").non_null();
        let connection_limit = f.take("connection_limit").non_null();
        let search_path = f.take("search_path").non_null();
        let read_only = f.take("default_transaction_read_only").non_null();
        let pgaudit_log = f.take_aliased("pgaudit_log", &["pgaudit.log"]).non_null();
        f.finish(self);
        let before = self.problems.len();
        let limits = SessionLimits {
            statement_timeout: self.millis(&statement_timeout),
            lock_timeout: self.millis(&lock_timeout),
            idle_in_transaction_session_timeout: self.millis(&idle_in_transaction),
            idle_session_timeout: self.millis(&idle_session),
            transaction_timeout: self.millis(&transaction_timeout),
            connection_limit: connection_limit.value.as_ref().and_then(|n| {
                self.integer(
                    &connection_limit.path,
                    n,
                    1,
                    u64::from(crate::session::MAX_CONNECTION_LIMIT),
                )
                .and_then(|n| u32::try_from(n).ok())
            }),
            search_path: search_path.value.as_ref().and_then(|list| {
                let items = self.list(&search_path.path, list, "a list of schema names")?;
                let names: Vec<String> = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| match item {
                        Value::String(s) => Some(s.clone()),
                        other => {
                            self.problem(
                                &format!("{}[{i}]", search_path.path),
                                format!(
                                    "must be a schema name (a string), not {}",
                                    type_name(other)
                                ),
                            );
                            None
                        }
                    })
                    .collect();
                (names.len() == items.len()).then_some(names)
            }),
            default_transaction_read_only: match &read_only.value {
                None => None,
                Some(Value::Bool(b)) => Some(*b),
                Some(other) => {
                    self.problem(
                        &read_only.path,
                        format!("must be true or false, not {}", type_name(other)),
                    );
                    None
                }
            },
            pgaudit_log: self.optional(&pgaudit_log),
        };
        if self.problems.len() != before {
            return None;
        }
        self.problems.extend(limits.problems(path, None));
        (self.problems.len() == before).then_some(limits)
    }

    /// A timeout: `30s`, `500ms`, `5min`, `1h`, or a whole number of milliseconds.
    fn millis(&mut self, f: &Field) -> Option<Millis> {
        match f.value.as_ref()? {
            Value::Number(n) if n.as_u64().is_some() => n.as_u64().map(Millis::new),
            Value::String(s) => match s.parse() {
                Ok(ms) => Some(ms),
                Err(e) => {
                    self.problem(&f.path, e);
                    None
                }
            },
            other => {
                self.problem(
                    &f.path,
                    format!(
                        "must be a duration such as \"30s\" or a whole number of milliseconds, not {other}"
                    ),
                );
                None
            }
        }
    }
}
