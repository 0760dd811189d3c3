//! `pgwarden_core::conninfo` against libpq itself.
//!
//! `oracle/libpq_oracle.py` loads the machine's libpq with `ctypes` and answers, in one
//! process, for every string of `oracle/cases.rs` (plus extra edge cases):
//! `PQconninfoParse` (keywords and values, or the error), `PQconnectStart` (whether the
//! options are refused) and `PQconndefaults` (environment fallbacks and the keyword table).
//!
//! The machine's libpq may be older than the PostgreSQL 18 rules we follow. Strings that use
//! keywords the oracle does not know are skipped (the oracle's keyword list comes from
//! `PQconndefaults`), and so are the few rules newer than the oracle (URI spaces: 17+;
//! `sslrootcert=system`: 16+). Everything skipped is counted and printed.
//!
//! Without python3 or libpq the tests print why and pass, unless
//! `PGWARDEN_REQUIRE_LIBPQ_ORACLE=1` is set (CI sets it where libpq is installed).

#[path = "oracle/cases.rs"]
mod cases;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use pgwarden_core::conninfo::{ConnInfo, ConnInfoError, KEYWORDS, keyword};
use serde_json::{Value, json};

const ORACLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracle/libpq_oracle.py");

/// The oracle's answer, shared by every test of this file (one python run).
struct Answer {
    version: i64,
    /// keyword -> (envvar, compiled default, dispchar)
    keywords: BTreeMap<String, (Option<String>, Option<String>, String)>,
    parse: HashMap<String, Value>,
    validate: HashMap<String, Value>,
    defaults: Vec<(Vec<(String, String)>, Value)>,
}

fn parse_strings() -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    all.extend(cases::PARSE_OK.iter().map(|(s, _)| (*s).to_owned()));
    all.extend(cases::PARSE_ERR.iter().map(|(s, _)| (*s).to_owned()));
    all.extend(cases::VALIDATE_ERR.iter().map(|(s, _)| (*s).to_owned()));
    all.extend(cases::VALIDATE_OK.iter().map(|s| (*s).to_owned()));
    all.extend(cases::ORACLE_EXTRA.iter().map(|s| (*s).to_owned()));
    for (s, name) in cases::every_keyword() {
        all.push(s);
        all.push(format!("postgresql://h?{name}=v%20{name}"));
    }
    // A C string cannot carry NUL; that case is ours alone.
    all.retain(|s| !s.contains('\0'));
    let mut seen = BTreeSet::new();
    all.retain(|s| seen.insert(s.clone()));
    all
}

fn validate_strings() -> Vec<String> {
    let mut all: Vec<String> = cases::VALIDATE_ERR
        .iter()
        .map(|(s, _)| (*s).to_owned())
        .collect();
    all.extend(cases::VALIDATE_OK.iter().map(|s| (*s).to_owned()));
    all
}

fn env_cases() -> Vec<Vec<(String, String)>> {
    let pairs = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect::<Vec<_>>()
    };
    let mut cases = vec![
        vec![],
        pairs(&[
            ("PGHOST", "envhost"),
            ("PGPORT", "6543"),
            ("PGDATABASE", "db"),
            ("PGUSER", "u"),
            ("PGPASSWORD", "pw"),
            ("PGAPPNAME", "app"),
        ]),
        pairs(&[("PGREQUIRESSL", "1")]),
        pairs(&[("PGREQUIRESSL", "1"), ("PGSSLMODE", "disable")]),
        pairs(&[("PGREQUIRESSL", "0")]),
        pairs(&[("PGHOST", ""), ("PGOPTIONS", "-c a=b")]),
        pairs(&[("PGSSLROOTCERT", "system"), ("PGCONNECT_TIMEOUT", "3")]),
    ];
    cases.push(
        KEYWORDS
            .iter()
            .filter_map(|k| k.envvar)
            .map(|var| (var.to_owned(), format!("from {var}")))
            .collect(),
    );
    cases
}

/// Runs the oracle once; `None` (with the reason printed) when it cannot run here.
fn answer() -> Option<&'static Answer> {
    static ANSWER: OnceLock<Option<Answer>> = OnceLock::new();
    ANSWER.get_or_init(run_oracle).as_ref()
}

fn unavailable(reason: &str) -> Option<Answer> {
    assert!(
        std::env::var("PGWARDEN_REQUIRE_LIBPQ_ORACLE").as_deref() != Ok("1"),
        "libpq oracle required but unavailable: {reason}"
    );
    eprintln!("SKIPPED: libpq comparison not run: {reason}");
    None
}

fn run_oracle() -> Option<Answer> {
    let parse = parse_strings();
    let validate = validate_strings();
    let envs = env_cases();
    let env_json: Vec<Value> = envs
        .iter()
        .map(|e| e.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
        .collect();
    let request = json!({ "parse": parse, "validate": validate, "defaults": env_json });

    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let mut command = Command::new(&python);
    // A clean environment: no PG* variable of the developer's shell may leak into libpq.
    command
        .arg(ORACLE)
        .env_clear()
        .env("LC_ALL", "C")
        .env("PYTHONIOENCODING", "utf-8");
    for var in [
        "PATH",
        "HOME",
        "LD_LIBRARY_PATH",
        "PYENV_ROOT",
        "PYENV_VERSION",
    ] {
        if let Some(value) = std::env::var_os(var) {
            command.env(var, value);
        }
    }
    let child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => return unavailable(&format!("cannot run {python}: {e}")),
    };
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(request.to_string().as_bytes())
        .expect("write the oracle request");
    let output = child.wait_with_output().expect("wait for the oracle");
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => {}
        Some(3) => return unavailable(stderr.trim()),
        _ if stderr.contains("No such file") || stderr.contains("not found") => {
            return unavailable(stderr.trim());
        }
        _ => panic!("the libpq oracle failed ({}): {stderr}", output.status),
    }
    let value: Value = serde_json::from_slice(&output.stdout).expect("the oracle answers JSON");

    let keywords = value["keywords"]
        .as_array()
        .expect("keyword table")
        .iter()
        .map(|k| {
            let text = |f: &str| k[f].as_str().map(str::to_owned);
            (
                text("keyword").unwrap(),
                (
                    text("envvar"),
                    text("compiled"),
                    text("dispchar").unwrap_or_default(),
                ),
            )
        })
        .collect();
    let list = |name: &str| value[name].as_array().expect("answer list").clone();
    Some(Answer {
        version: value["version"].as_i64().unwrap_or(0),
        keywords,
        parse: parse.into_iter().zip(list("parse")).collect(),
        validate: validate.into_iter().zip(list("validate")).collect(),
        defaults: envs.into_iter().zip(list("defaults")).collect(),
    })
}

/// Keywords set by `info` (exposing secrets: this compares with libpq's output).
fn values(info: &ConnInfo) -> BTreeMap<String, Value> {
    info.iter()
        .map(|(k, v)| (k.to_owned(), json!(v.expose_secret())))
        .collect()
}

fn unknown_to_oracle<'a>(info: &'a ConnInfo, oracle: &Answer) -> Option<&'a str> {
    info.iter()
        .map(|(k, _)| k)
        .find(|k| !oracle.keywords.contains_key(*k))
}

/// libpq's own wording of a parse error, where ours carries enough to rebuild it.
fn libpq_parse_message(err: &ConnInfoError) -> Option<String> {
    Some(match err {
        ConnInfoError::MissingEquals { keyword, .. } if keyword != "***" => {
            format!(r#"missing "=" after "{keyword}" in connection info string"#)
        }
        ConnInfoError::UnterminatedQuote { .. } => {
            "unterminated quoted string in connection info string".to_owned()
        }
        ConnInfoError::InvalidOption { keyword } if keyword != "***" => {
            format!(r#"invalid connection option "{keyword}""#)
        }
        ConnInfoError::InvalidPercentEncoding { value, .. } if value != "***" => {
            format!(r#"invalid percent-encoded token: "{value}""#)
        }
        ConnInfoError::PercentEncodedNul { value, .. } if value != "***" => {
            format!(r#"forbidden value %00 in percent-encoded value: "{value}""#)
        }
        ConnInfoError::InvalidUriQueryParameter { .. }
        | ConnInfoError::MissingUriQuerySeparator { .. }
        | ConnInfoError::ExtraUriQuerySeparator { .. }
        | ConnInfoError::UnterminatedIpv6 { .. }
        | ConnInfoError::EmptyIpv6 { .. }
        | ConnInfoError::UnexpectedUriCharacter { .. } => {
            // libpq quotes the whole URI, password included; we do not.
            let message = err.to_string();
            if message.contains(":***@") {
                return None;
            }
            message
        }
        _ => return None,
    })
}

/// Why a string is outside what this oracle can judge, if it is.
fn newer_than_oracle(
    s: &str,
    ours: &Result<ConnInfo, ConnInfoError>,
    oracle: &Answer,
) -> Option<String> {
    if let Ok(info) = ours
        && let Some(k) = unknown_to_oracle(info, oracle)
    {
        return Some(format!(
            "keyword {k} is newer than libpq {}",
            oracle.version
        ));
    }
    let is_uri = s.starts_with("postgresql://") || s.starts_with("postgres://");
    if is_uri && s.contains(' ') && oracle.version < 170_000 {
        return Some("spaces in URIs are trimmed or rejected since libpq 17".to_owned());
    }
    if matches!(ours, Err(ConnInfoError::InvalidUtf8 { .. })) {
        return Some("libpq keeps non-UTF-8 bytes; pgwarden rejects them by design".to_owned());
    }
    None
}

#[test]
fn keyword_table_matches_libpq() {
    let Some(oracle) = answer() else { return };
    for (name, (envvar, compiled, dispchar)) in &oracle.keywords {
        let ours = keyword(name)
            .unwrap_or_else(|| panic!("libpq {} knows {name}, we do not", oracle.version));
        assert_eq!(ours.envvar, envvar.as_deref(), "envvar of {name}");
        assert_eq!(
            ours.compiled_default,
            compiled.as_deref(),
            "compiled default of {name}"
        );
        assert_eq!(ours.secret, dispchar == "*", "secrecy of {name}");
    }
    eprintln!(
        "libpq {}: {} keywords, all known to pgwarden with the same variables",
        oracle.version,
        oracle.keywords.len()
    );
}

#[test]
fn parsing_matches_libpq() {
    let Some(oracle) = answer() else { return };
    let mut compared = 0;
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for (s, theirs) in &oracle.parse {
        let ours = ConnInfo::parse_unvalidated(s);
        if let Some(reason) = newer_than_oracle(s, &ours, oracle) {
            *skipped.entry(reason).or_default() += 1;
            continue;
        }
        compared += 1;
        match (
            &ours,
            theirs.get("ok"),
            theirs.get("error").and_then(Value::as_str),
        ) {
            (Ok(info), Some(Value::Object(map)), _) => {
                let theirs: BTreeMap<String, Value> = map.clone().into_iter().collect();
                if values(info) != theirs {
                    failures.push(format!("{s:?}: ours {:?}, libpq {theirs:?}", values(info)));
                }
            }
            (Err(err), None, Some(message)) => {
                if let Some(expected) = libpq_parse_message(err)
                    && expected != message
                {
                    failures.push(format!(
                        "{s:?}: libpq says {message:?}, ours maps to {expected:?}"
                    ));
                }
            }
            (ours, _, _) => failures.push(format!("{s:?}: ours {ours:?}, libpq {theirs}")),
        }
    }
    eprintln!(
        "compared {compared} strings with libpq {}'s PQconninfoParse; skipped: {skipped:?}",
        oracle.version
    );
    assert!(
        failures.is_empty(),
        "{} disagreements with libpq:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(compared >= 60, "only {compared} strings compared");
}

/// Text libpq's message must contain for a validation error of ours (libpq's wording varies a
/// little across versions, e.g. `invalid "ssl_min_protocol_version" value` since 17).
fn libpq_validate_fragments(err: &ConnInfoError) -> Vec<String> {
    match err {
        ConnInfoError::InvalidValue { keyword, value, .. } => {
            vec![
                "invalid ".to_owned(),
                (*keyword).to_owned(),
                format!(r#"value: "{value}""#),
            ]
        }
        ConnInfoError::InvalidPort { value } => vec![format!(r#"invalid port number: "{value}""#)],
        ConnInfoError::SslProtocolRange { .. } => {
            vec!["invalid SSL protocol version range".to_owned()]
        }
        ConnInfoError::InvalidInteger { .. }
        | ConnInfoError::HostCountMismatch { .. }
        | ConnInfoError::PortCountMismatch { .. }
        | ConnInfoError::RequireAuthMixed { .. }
        | ConnInfoError::RequireAuthDuplicate { .. } => vec![err.to_string()],
        _ => vec![],
    }
}

#[test]
fn validation_matches_libpq() {
    let Some(oracle) = answer() else { return };
    let mut compared = 0;
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for (s, theirs) in &oracle.validate {
        let parsed = ConnInfo::parse_unvalidated(s);
        let info = parsed
            .as_ref()
            .unwrap_or_else(|e| panic!("{s:?} must parse: {e}"));
        let ours = info.validate();
        let reason = newer_than_oracle(s, &parsed, oracle).or_else(|| {
            if s.contains("sslrootcert=system") && oracle.version < 160_000 {
                Some("sslrootcert=system is a libpq 16 rule".to_owned())
            } else if matches!(
                ours,
                Err(ConnInfoError::InvalidInteger {
                    keyword: "connect_timeout",
                    ..
                })
            ) {
                Some("libpq checks connect_timeout only in PQconnectdb's blocking phase".to_owned())
            } else {
                None
            }
        });
        if let Some(reason) = reason {
            *skipped.entry(reason).or_default() += 1;
            continue;
        }
        compared += 1;
        let bad = theirs["bad"].as_bool().unwrap_or(false);
        let message = theirs["message"].as_str().unwrap_or("");
        // A failed connect (nothing listening) is not an option error.
        let libpq_rejects = bad
            && (!message.starts_with("connection to server")
                || message.contains("invalid integer value")
                || message.contains("invalid port number"));
        match &ours {
            Ok(()) if libpq_rejects => failures.push(format!("{s:?}: libpq refuses it: {message}")),
            Err(err) if !libpq_rejects => {
                failures.push(format!("{s:?}: we refuse it ({err}), libpq: {message:?}"));
            }
            Err(err) => {
                let fragments = libpq_validate_fragments(err);
                if !fragments.iter().all(|f| message.contains(f.as_str())) {
                    failures.push(format!(
                        "{s:?}: libpq says {message:?}, expected {fragments:?} in it"
                    ));
                }
            }
            Ok(()) => {}
        }
    }
    eprintln!(
        "compared {compared} strings with libpq {}'s PQconnectStart; skipped: {skipped:?}",
        oracle.version
    );
    assert!(
        failures.is_empty(),
        "{} disagreements with libpq:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(compared >= 30, "only {compared} strings compared");
}

#[test]
fn env_defaults_match_libpq() {
    let Some(oracle) = answer() else { return };
    let mut compared = 0;
    for (env, theirs) in &oracle.defaults {
        let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let ours = values(&ConnInfo::new().with_env_defaults(lookup));
        for (name, (envvar, _, _)) in &oracle.keywords {
            let from_env = envvar.as_deref().is_some_and(|var| lookup(var).is_some())
                || (name == "sslmode"
                    && lookup("PGREQUIRESSL").is_some_and(|v| v.starts_with('1')));
            if from_env {
                compared += 1;
                assert_eq!(ours.get(name), theirs.get(name), "{name} under {env:?}");
            } else {
                // libpq adds compiled-in defaults here; we leave them to the accessors.
                assert_eq!(ours.get(name), None, "{name} under {env:?}");
            }
        }
    }
    eprintln!(
        "compared {compared} environment fallbacks with libpq {}'s PQconndefaults",
        oracle.version
    );
    assert!(compared >= 30, "only {compared} fallbacks compared");
}
