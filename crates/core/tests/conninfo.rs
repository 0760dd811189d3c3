//! Table-driven tests of `pgwarden_core::conninfo` (the same strings are checked against
//! libpq itself in `conninfo_libpq.rs`).

#[path = "oracle/cases.rs"]
mod cases;

use std::collections::HashMap;
use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use pgwarden_core::conninfo::{ConnInfo, ConnInfoError, HostEntry, KEYWORDS, ParamValue};
use pgwarden_core::ssl::{RootCertSource, SslMode, SslNegotiation, SslRuleError};
use proptest::prelude::*;
use secrecy::ExposeSecret;

/// Every keyword and value, secrets exposed, in `iter()` (libpq) order.
fn pairs(info: &ConnInfo) -> Vec<(String, String)> {
    info.iter()
        .map(|(k, v)| (k.to_owned(), v.expose_secret().to_owned()))
        .collect()
}

fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v
}

/// `s` parses (without validation) to exactly `expected`.
fn check(s: &str, expected: &[(&str, &str)]) {
    let info = ConnInfo::parse_unvalidated(s).unwrap_or_else(|e| panic!("{s:?} failed: {e}"));
    let want: Vec<(String, String)> = expected
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    assert_eq!(sorted(pairs(&info)), sorted(want), "{s:?}");
}

/// `s` fails to parse with a message starting with `message`.
fn check_err(s: &str, message: &str) {
    match ConnInfo::parse_unvalidated(s) {
        Ok(info) => panic!("{s:?} parsed to {info:?}, expected error {message:?}"),
        Err(e) => assert!(
            e.to_string().starts_with(message),
            "{s:?}: got {e:?} ({e}), want {message:?}"
        ),
    }
}

/// Builds a lookup function from `(variable, value)` pairs.
fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn parses_the_table() {
    for (s, expected) in cases::PARSE_OK {
        check(s, expected);
    }
    assert!(cases::PARSE_OK.len() + cases::PARSE_ERR.len() + cases::VALIDATE_ERR.len() >= 60);
}

#[test]
fn rejects_the_table() {
    for (s, message) in cases::PARSE_ERR {
        check_err(s, message);
    }
}

#[test]
fn knows_every_libpq_18_keyword() {
    for (s, keyword) in cases::every_keyword() {
        let info = ConnInfo::parse_unvalidated(&s).unwrap();
        let value = format!("v_{keyword}");
        assert_eq!(pairs(&info), [(keyword.to_owned(), value.clone())], "{s}");
        let uri = format!("postgresql://h?{keyword}={value}");
        let info = ConnInfo::parse_unvalidated(&uri).unwrap();
        let mut want = vec![("host".to_owned(), "h".to_owned())];
        want.retain(|(k, _)| k != keyword);
        want.push((keyword.to_owned(), value));
        assert_eq!(sorted(pairs(&info)), sorted(want), "{uri}");
    }
    let names: Vec<&str> = KEYWORDS.iter().map(|k| k.name).collect();
    for documented in [
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "require_auth",
        "channel_binding",
        "connect_timeout",
        "client_encoding",
        "options",
        "application_name",
        "fallback_application_name",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "replication",
        "gssencmode",
        "sslmode",
        "sslnegotiation",
        "sslcompression",
        "sslcert",
        "sslkey",
        "sslkeylogfile",
        "sslpassword",
        "sslcertmode",
        "sslrootcert",
        "sslcrl",
        "sslcrldir",
        "sslsni",
        "requirepeer",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "min_protocol_version",
        "max_protocol_version",
        "krbsrvname",
        "gsslib",
        "gssdelegation",
        "service",
        "target_session_attrs",
        "load_balance_hosts",
        "scram_client_key",
        "scram_server_key",
        "oauth_issuer",
        "oauth_client_id",
        "oauth_client_secret",
        "oauth_scope",
    ] {
        assert!(names.contains(&documented), "{documented} missing");
    }
    assert_eq!(names.len(), 50);
    // Removed from the table long ago, still translated by libpq.
    assert!(!names.contains(&"requiressl"));
}

#[test]
fn iteration_and_display_follow_libpq_order() {
    let info =
        ConnInfo::parse_unvalidated("sslmode=require port=1 host=h user=u password=p").unwrap();
    let keywords: Vec<&str> = info.iter().map(|(k, _)| k).collect();
    assert_eq!(keywords, ["user", "password", "host", "port", "sslmode"]);
    assert_eq!(
        info.to_string(),
        "user=u password=p host=h port=1 sslmode=require"
    );
    assert_eq!(info.len(), 5);
    assert!(!info.is_empty());
    assert!(ConnInfo::parse_unvalidated("").unwrap().is_empty());
}

#[test]
fn validates_the_table() {
    for (s, message) in cases::VALIDATE_ERR {
        let info =
            ConnInfo::parse_unvalidated(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"));
        let err = info.validate().expect_err(s);
        assert!(
            err.to_string().starts_with(message),
            "{s:?}: got {err}, want {message:?}"
        );
        let err = s.parse::<ConnInfo>().expect_err(s);
        assert!(
            err.to_string().starts_with(message),
            "{s:?}: FromStr gave {err}"
        );
    }
    for s in cases::VALIDATE_OK {
        let info: ConnInfo = s
            .parse()
            .unwrap_or_else(|e| panic!("{s:?} should validate: {e}"));
        info.validate().unwrap();
    }
}

#[test]
fn invalid_values_name_keyword_and_value_and_list_the_valid_ones() {
    let err = "sslmode=verify".parse::<ConnInfo>().unwrap_err();
    assert_eq!(
        err,
        ConnInfoError::InvalidValue {
            keyword: "sslmode",
            value: "verify".into(),
            expected: "disable, allow, prefer, require, verify-ca, verify-full",
        }
    );
    assert_eq!(
        err.to_string(),
        r#"invalid sslmode value: "verify" (valid values: disable, allow, prefer, require, verify-ca, verify-full)"#
    );
    let err = "host=x\n y".parse::<ConnInfo>().unwrap_err();
    assert_eq!(
        err,
        ConnInfoError::MissingEquals {
            keyword: "y".into(),
            position: 8
        }
    );
    let err = "a=1".parse::<ConnInfo>().unwrap_err();
    assert_eq!(
        err,
        ConnInfoError::InvalidOption {
            keyword: "a".into()
        }
    );
    let err = "host='x".parse::<ConnInfo>().unwrap_err();
    assert_eq!(
        err,
        ConnInfoError::UnterminatedQuote {
            keyword: "host".into(),
            position: 5
        }
    );
    let err = "sslrootcert=system sslmode=verify-ca"
        .parse::<ConnInfo>()
        .unwrap_err();
    assert_eq!(
        err,
        ConnInfoError::Ssl {
            source: SslRuleError::SystemRootsNeedVerifyFull {
                mode: SslMode::VerifyCa
            }
        }
    );
}

#[test]
fn parse_unvalidated_accepts_any_value() {
    let info = ConnInfo::parse_unvalidated("sslmode=bogus port=x,y,z host=a").unwrap();
    assert_eq!(info.get("sslmode"), Some("bogus"));
    assert!(info.validate().is_err());
    assert!(info.ssl_mode().is_err());
    assert!(info.hosts().is_err());
}

#[test]
fn hosts_pair_lists_like_libpq() {
    let info: ConnInfo = "host=a,b,/tmp port=1,,3".parse().unwrap();
    let hosts = info.hosts().unwrap();
    assert_eq!(
        hosts.iter().map(|h| h.host.as_deref()).collect::<Vec<_>>(),
        [Some("a"), Some("b"), Some("/tmp")]
    );
    assert_eq!(
        hosts.iter().map(|h| h.port).collect::<Vec<_>>(),
        [1, 5432, 3]
    );
    assert!(hosts[2].is_unix_socket() && !hosts[0].is_unix_socket());

    // One port applies to every host.
    let info: ConnInfo = "postgresql://h1,h2:6000".parse().unwrap();
    let ports: Vec<u16> = info.hosts().unwrap().iter().map(|h| h.port).collect();
    assert_eq!(ports, [5432, 6000]);
    let info: ConnInfo = "host=h1,h2 port=6000".parse().unwrap();
    assert_eq!(
        info.hosts()
            .unwrap()
            .iter()
            .map(|h| h.port)
            .collect::<Vec<_>>(),
        [6000, 6000]
    );

    // hostaddr decides the number of slots; host names pair with them.
    let info: ConnInfo = "hostaddr=10.0.0.1,10.0.0.2 host=db1.example,"
        .parse()
        .unwrap();
    let hosts = info.hosts().unwrap();
    assert_eq!(hosts[0].host.as_deref(), Some("db1.example"));
    assert_eq!(hosts[0].hostaddr.as_deref(), Some("10.0.0.1"));
    assert_eq!(hosts[1].host, None);
    assert_eq!(hosts[1].hostaddr.as_deref(), Some("10.0.0.2"));

    // Nothing given: one default slot (libpq's socket directory).
    let hosts = ConnInfo::new().hosts().unwrap();
    assert_eq!(hosts.len(), 1);
    assert!(hosts[0].host.is_none() && hosts[0].hostaddr.is_none() && hosts[0].port == 5432);
    assert!(hosts[0].is_unix_socket());

    let info: ConnInfo = "postgresql://[::1]:5433,[fe80::2]/db".parse().unwrap();
    let hosts: Vec<HostEntry> = info.hosts().unwrap();
    assert_eq!(hosts[0].host.as_deref(), Some("::1"));
    assert_eq!(hosts[1].host.as_deref(), Some("fe80::2"));
    assert_eq!(
        hosts.iter().map(|h| h.port).collect::<Vec<_>>(),
        [5433, 5432]
    );
}

#[test]
fn typed_accessors() {
    let info: ConnInfo =
        "host=h dbname=db user=u connect_timeout=10 fallback_application_name=fb sslrootcert=/ca.pem".parse().unwrap();
    assert_eq!(info.dbname(), Some("db"));
    assert_eq!(info.user(), Some("u"));
    assert_eq!(
        info.connect_timeout().unwrap(),
        Some(Duration::from_secs(10))
    );
    assert_eq!(info.application_name(), Some("fb"));
    assert_eq!(
        info.root_cert(),
        Some(RootCertSource::File("/ca.pem".into()))
    );
    assert_eq!(info.ssl_mode().unwrap(), SslMode::Prefer);
    assert_eq!(info.ssl_negotiation().unwrap(), SslNegotiation::Postgres);

    let info: ConnInfo = "application_name='' fallback_application_name=fb dbname='' user='' connect_timeout=0 sslrootcert=''"
        .parse()
        .unwrap();
    assert_eq!(
        info.application_name(),
        None,
        "an empty application_name suppresses the fallback"
    );
    assert_eq!(info.dbname(), None);
    assert_eq!(info.user(), None);
    assert_eq!(info.connect_timeout().unwrap(), None);
    assert_eq!(info.root_cert(), None);

    let info: ConnInfo = "sslrootcert=system sslnegotiation=direct connect_timeout=-3"
        .parse()
        .unwrap();
    assert_eq!(info.ssl_mode().unwrap(), SslMode::VerifyFull);
    assert_eq!(info.ssl_negotiation().unwrap(), SslNegotiation::Direct);
    assert_eq!(info.root_cert(), Some(RootCertSource::System));
    assert_eq!(info.connect_timeout().unwrap(), None);

    let info: ConnInfo = "sslmode=verify-ca sslrootcert=./system".parse().unwrap();
    assert_eq!(info.ssl_mode().unwrap(), SslMode::VerifyCa);
    assert_eq!(
        info.root_cert(),
        Some(RootCertSource::File("./system".into()))
    );
}

#[test]
fn set_get_remove() {
    let mut info = ConnInfo::new();
    info.set("host", "h").unwrap();
    info.set("password", "pw").unwrap();
    assert_eq!(info.get("host"), Some("h"));
    assert_eq!(
        info.get("password"),
        None,
        "secrets never come out of get()"
    );
    assert_eq!(info.password().map(ExposeSecret::expose_secret), Some("pw"));
    assert!(
        matches!(info.set("hots", "x"), Err(ConnInfoError::InvalidOption { keyword }) if keyword == "hots")
    );
    assert!(matches!(
        info.set("host", "a\0b"),
        Err(ConnInfoError::NulCharacter { position: 1 })
    ));
    assert!(info.remove("host").unwrap());
    assert!(!info.remove("host").unwrap());
    assert!(info.remove("hots").is_err());
    assert_eq!(info.get("host"), None);
    assert_eq!(info.get("no-such-keyword"), None);
}

#[test]
fn debug_and_redacted_hide_every_secret() {
    let s = "host=h password=hunter2 sslpassword=keypass scram_client_key=c2NyYW1jbGllbnQ= \
             scram_server_key=c2NyYW1zZXJ2ZXI= oauth_client_secret=oauthsecret user=u";
    let info = ConnInfo::parse_unvalidated(s).unwrap();
    let debug = format!("{info:?} {:?}", info.redacted());
    let redacted = info.redacted().to_string();
    for secret in [
        "hunter2",
        "keypass",
        "c2NyYW1jbGllbnQ",
        "c2NyYW1zZXJ2ZXI",
        "oauthsecret",
    ] {
        assert!(!debug.contains(secret), "{debug}");
        assert!(!redacted.contains(secret), "{redacted}");
        assert!(
            info.to_string().contains(secret),
            "Display keeps secrets so that it round-trips"
        );
    }
    assert!(debug.contains("password: ***"), "{debug}");
    assert!(debug.contains(r#"host: "h""#), "{debug}");
    assert_eq!(
        redacted,
        "user=u password=*** host=h sslpassword=*** scram_client_key=*** scram_server_key=*** oauth_client_secret=***"
    );
    let secrets: Vec<&str> = info
        .iter()
        .filter(|(_, v)| v.is_secret())
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        secrets,
        [
            "password",
            "sslpassword",
            "scram_client_key",
            "scram_server_key",
            "oauth_client_secret"
        ]
    );
    assert!(matches!(
        info.iter().next(),
        Some(("user", ParamValue::Plain("u")))
    ));
    assert!(!format!("{:?}", info.iter().collect::<Vec<_>>()).contains("hunter2"));
}

#[test]
fn errors_never_show_a_password() {
    for s in [
        "postgresql://u:hunter2@[::1",
        "postgresql://u:hunter2@[]",
        "postgresql://u:hunter2@[::1]x",
        "postgresql://u:hun%zzter2@h",
        "postgresql://u:hun ter2@h",
        "postgresql://u:hunter2%00@h",
        "postgresql://h?password=hunter2%",
        "postgresql://h?sslpassword=hunter2%00",
        "postgresql://h?oauth_client_secret=hunter2%2",
        "password=hunter2 more host=h",
        "password=hunter2 more=1",
        "password=hun ter2",
        "scram_client_key=hunter2",
        "password='hunter2'x",
    ] {
        let err = s.parse::<ConnInfo>().expect_err(s);
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("ter2"),
            "{s:?}: {shown}"
        );
    }
}

#[test]
fn display_round_trips_the_table() {
    for (s, _) in cases::PARSE_OK {
        let info = ConnInfo::parse_unvalidated(s).unwrap();
        let again = ConnInfo::parse_unvalidated(&info.to_string()).unwrap();
        assert_eq!(again, info, "{s:?} -> {info}");
    }
    let info: ConnInfo = "postgresql://u:p%20w@h/d?application_name=a%27b%5Cc"
        .parse()
        .unwrap();
    assert_eq!(
        info.to_string(),
        r"user=u password='p w' dbname=d host=h application_name='a\'b\\c'"
    );
}

#[test]
fn equality_includes_secrets() {
    let a = ConnInfo::parse_unvalidated("host=h password=a").unwrap();
    let b = ConnInfo::parse_unvalidated("host=h password=b").unwrap();
    let c = ConnInfo::parse_unvalidated("password=a host=h").unwrap();
    assert_ne!(a, b);
    assert_eq!(a, c);
    assert_eq!(a.clone(), a);
}

#[test]
fn env_defaults_fill_only_unset_keywords() {
    let info = ConnInfo::parse_unvalidated("dbname=x host=strhost").unwrap();
    let filled = info.with_env_defaults(env(&[
        ("PGHOST", "envhost"),
        ("PGPORT", "6543"),
        ("PGDATABASE", "envdb"),
        ("PGPASSWORD", "envpw"),
        ("PGAPPNAME", "app"),
        ("PGSSLMODE", "verify-full"),
        ("PGSSLROOTCERT", "system"),
        ("PGCONNECT_TIMEOUT", "7"),
        ("PGSSLNEGOTIATION", "direct"),
        ("PGTARGETSESSIONATTRS", "read-only"),
        ("PGUNRELATED", "x"),
    ]));
    assert_eq!(filled.get("host"), Some("strhost"), "the string wins");
    assert_eq!(filled.get("dbname"), Some("x"));
    assert_eq!(filled.get("port"), Some("6543"));
    assert_eq!(
        filled.password().map(ExposeSecret::expose_secret),
        Some("envpw")
    );
    assert_eq!(filled.application_name(), Some("app"));
    assert_eq!(filled.ssl_mode().unwrap(), SslMode::VerifyFull);
    assert_eq!(filled.root_cert(), Some(RootCertSource::System));
    assert_eq!(
        filled.connect_timeout().unwrap(),
        Some(Duration::from_secs(7))
    );
    assert_eq!(filled.ssl_negotiation().unwrap(), SslNegotiation::Direct);
    assert_eq!(filled.get("target_session_attrs"), Some("read-only"));
    assert_eq!(filled.len(), info.len() + 8);
    filled.validate().unwrap();
    // The original is untouched.
    assert_eq!(info.get("port"), None);
}

#[test]
fn env_defaults_follow_libpq_details() {
    let empty = ConnInfo::new();
    // Set-but-empty variables count.
    assert_eq!(
        empty.with_env_defaults(env(&[("PGHOST", "")])).get("host"),
        Some("")
    );
    // PGREQUIRESSL: "1..." means require, PGSSLMODE wins, other values are ignored.
    assert_eq!(
        empty
            .with_env_defaults(env(&[("PGREQUIRESSL", "1")]))
            .get("sslmode"),
        Some("require")
    );
    assert_eq!(
        empty
            .with_env_defaults(env(&[("PGREQUIRESSL", "1"), ("PGSSLMODE", "disable")]))
            .get("sslmode"),
        Some("disable")
    );
    assert_eq!(
        empty
            .with_env_defaults(env(&[("PGREQUIRESSL", "0")]))
            .get("sslmode"),
        None
    );
    // A string's sslmode beats PGREQUIRESSL too.
    let info = ConnInfo::parse_unvalidated("sslmode=allow").unwrap();
    assert_eq!(
        info.with_env_defaults(env(&[("PGREQUIRESSL", "1")]))
            .get("sslmode"),
        Some("allow")
    );
    // Keywords without a variable are never filled; no compiled default is added.
    let filled = empty.with_env_defaults(|_| Some("v".to_owned()));
    for k in KEYWORDS {
        let set = filled.iter().any(|(name, _)| name == k.name);
        assert_eq!(set, k.envvar.is_some(), "{}", k.name);
    }
    assert_eq!(empty.with_env_defaults(|_| None), empty);
}

#[test]
fn env_defaults_cover_every_variable() {
    let expected = [
        ("service", "PGSERVICE"),
        ("user", "PGUSER"),
        ("password", "PGPASSWORD"),
        ("passfile", "PGPASSFILE"),
        ("channel_binding", "PGCHANNELBINDING"),
        ("connect_timeout", "PGCONNECT_TIMEOUT"),
        ("dbname", "PGDATABASE"),
        ("host", "PGHOST"),
        ("hostaddr", "PGHOSTADDR"),
        ("port", "PGPORT"),
        ("client_encoding", "PGCLIENTENCODING"),
        ("options", "PGOPTIONS"),
        ("application_name", "PGAPPNAME"),
        ("sslmode", "PGSSLMODE"),
        ("sslnegotiation", "PGSSLNEGOTIATION"),
        ("sslcompression", "PGSSLCOMPRESSION"),
        ("sslcert", "PGSSLCERT"),
        ("sslkey", "PGSSLKEY"),
        ("sslcertmode", "PGSSLCERTMODE"),
        ("sslrootcert", "PGSSLROOTCERT"),
        ("sslcrl", "PGSSLCRL"),
        ("sslcrldir", "PGSSLCRLDIR"),
        ("sslsni", "PGSSLSNI"),
        ("requirepeer", "PGREQUIREPEER"),
        ("require_auth", "PGREQUIREAUTH"),
        ("min_protocol_version", "PGMINPROTOCOLVERSION"),
        ("max_protocol_version", "PGMAXPROTOCOLVERSION"),
        ("ssl_min_protocol_version", "PGSSLMINPROTOCOLVERSION"),
        ("ssl_max_protocol_version", "PGSSLMAXPROTOCOLVERSION"),
        ("gssencmode", "PGGSSENCMODE"),
        ("krbsrvname", "PGKRBSRVNAME"),
        ("gsslib", "PGGSSLIB"),
        ("gssdelegation", "PGGSSDELEGATION"),
        ("target_session_attrs", "PGTARGETSESSIONATTRS"),
        ("load_balance_hosts", "PGLOADBALANCEHOSTS"),
    ];
    let vars: Vec<(&str, String)> = expected
        .iter()
        .map(|(k, var)| (*var, format!("from_{k}")))
        .collect();
    let filled = ConnInfo::new().with_env_defaults(|name| {
        vars.iter()
            .find(|(v, _)| *v == name)
            .map(|(_, x)| x.clone())
    });
    let got: Vec<(String, String)> = pairs(&filled);
    let want: Vec<(String, String)> = expected
        .iter()
        .map(|(k, _)| ((*k).to_owned(), format!("from_{k}")))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn process_env_convenience_reads_the_environment() {
    // Read-only use of the real environment: whatever PGHOST holds (if anything) shows up.
    let filled = ConnInfo::new().with_process_env_defaults();
    assert_eq!(filled.get("host"), std::env::var("PGHOST").ok().as_deref());
}

/// Values with everything the quoting rules care about.
fn tricky_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9 '\\\\\t\n\r=,:/@%?&é漢🦀-]{0,12}",
        any::<String>().prop_map(|s| s.replace('\0', "")),
        Just(String::new()),
        Just("'".to_owned()),
        Just("\\".to_owned()),
        Just(" ".to_owned()),
    ]
}

fn non_empty_text() -> impl Strategy<Value = String> {
    any::<String>()
        .prop_map(|s| s.replace('\0', ""))
        .prop_filter("non-empty", |s| !s.is_empty())
}

proptest! {
    #[test]
    fn display_round_trips(entries in proptest::collection::vec((0..KEYWORDS.len(), tricky_value()), 0..10)) {
        let mut info = ConnInfo::new();
        for (index, value) in &entries {
            info.set(KEYWORDS[*index].name, value.clone()).unwrap();
        }
        let text = info.to_string();
        let again = ConnInfo::parse_unvalidated(&text).unwrap();
        prop_assert_eq!(pairs(&again), pairs(&info), "{}", text);
    }

    #[test]
    fn uri_components_decode_back(
        user in non_empty_text(),
        password in non_empty_text(),
        host in non_empty_text(),
        port in 1u16..,
        dbname in non_empty_text(),
        app in tricky_value(),
    ) {
        let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        let uri = format!(
            "postgresql://{}:{}@{}:{port}/{}?application_name={}",
            enc(&user), enc(&password), enc(&host), enc(&dbname), enc(&app)
        );
        let info = ConnInfo::parse_unvalidated(&uri).unwrap();
        prop_assert_eq!(info.user(), Some(user.as_str()));
        prop_assert_eq!(info.password().map(ExposeSecret::expose_secret), Some(password.as_str()));
        prop_assert_eq!(info.get("host"), Some(host.as_str()));
        let port = port.to_string();
        prop_assert_eq!(info.get("port"), Some(port.as_str()));
        prop_assert_eq!(info.dbname(), Some(dbname.as_str()));
        prop_assert_eq!(info.get("application_name"), Some(app.as_str()));
    }

    #[test]
    fn parsing_never_panics_and_reparses_stably(s in "\\PC{0,40}|postgres(ql)?://\\PC{0,40}") {
        if let Ok(info) = ConnInfo::parse_unvalidated(&s) {
            let again = ConnInfo::parse_unvalidated(&info.to_string()).unwrap();
            prop_assert_eq!(&again, &info);
            let _ = info.validate();
            let _ = info.hosts();
        }
        let _ = s.parse::<ConnInfo>();
    }
}

/// A base64 SCRAM key (32 zero bytes): a valid value for `scram_client_key`/`scram_server_key`.
const SCRAM_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// What `check_supported` does with every keyword of libpq's table, in the table's order:
/// settings it accepts (honoured by the connector, or without effect as in libpq), and
/// settings it refuses, naming the keyword. `client_encoding=auto` depends on the locale and
/// is covered by the unit tests.
const CLASSIFIED: &[(&str, &[&str], &[&str])] = &[
    ("service", &[], &["service=prod", "service=''"]),
    ("user", &["user=u", "user=''"], &[]),
    ("password", &["password=pw", "password=''"], &[]),
    ("passfile", &["passfile=/nonexistent/pgpass"], &[]),
    (
        "channel_binding",
        &["channel_binding=disable", "channel_binding=require"],
        &[],
    ),
    ("connect_timeout", &["connect_timeout=5"], &[]),
    ("dbname", &["dbname=d"], &[]),
    ("host", &["host=a,b", "host=/tmp"], &[]),
    (
        "hostaddr",
        &["hostaddr=127.0.0.1", "hostaddr=::1", "hostaddr=''"],
        &[
            "hostaddr=127.1",
            "hostaddr=localhost",
            "hostaddr=fe80::1%lo",
        ],
    ),
    ("port", &["port=5433"], &[]),
    (
        "client_encoding",
        &[
            "client_encoding=UTF8",
            "client_encoding=utf-8",
            "client_encoding=''",
        ],
        &["client_encoding=LATIN1", "client_encoding=SQL_ASCII"],
    ),
    ("options", &["options='-c work_mem=64MB'"], &[]),
    ("application_name", &["application_name=app"], &[]),
    (
        "fallback_application_name",
        &["fallback_application_name=app"],
        &[],
    ),
    ("keepalives", &["keepalives=0", "keepalives=1"], &[]),
    ("keepalives_idle", &["keepalives_idle=30"], &[]),
    ("keepalives_interval", &["keepalives_interval=5"], &[]),
    ("keepalives_count", &["keepalives_count=3"], &[]),
    ("tcp_user_timeout", &["tcp_user_timeout=1500"], &[]),
    ("sslmode", &["sslmode=disable", "sslmode=verify-full"], &[]),
    (
        "sslnegotiation",
        &["sslnegotiation=direct sslmode=require"],
        &[],
    ),
    (
        "sslcompression",
        &["sslcompression=0"],
        &["sslcompression=1", "sslcompression=''"],
    ),
    ("sslcert", &["sslcert=/c.crt"], &[]),
    ("sslkey", &["sslkey=/c.key"], &[]),
    ("sslcertmode", &["sslcertmode=require"], &[]),
    // Refused by the connector when the key is one it cannot read (encrypted).
    ("sslpassword", &["sslpassword=pw"], &[]),
    ("sslrootcert", &["sslrootcert=system"], &[]),
    ("sslcrl", &["sslcrl=/r.crl"], &[]),
    ("sslcrldir", &["sslcrldir=/crls"], &[]),
    ("sslsni", &["sslsni=0", "sslsni=1"], &[]),
    (
        "requirepeer",
        &["requirepeer=postgres"],
        &["host=/tmp requirepeer=postgres"],
    ),
    (
        "require_auth",
        &["require_auth=scram-sha-256 channel_binding=require"],
        &["require_auth=scram-sha-256", "require_auth=!md5"],
    ),
    (
        "min_protocol_version",
        &["min_protocol_version=3.0"],
        &["min_protocol_version=3.2", "min_protocol_version=latest"],
    ),
    (
        "max_protocol_version",
        &["max_protocol_version=3.0"],
        &["max_protocol_version=3.2", "max_protocol_version=latest"],
    ),
    (
        "ssl_min_protocol_version",
        &["ssl_min_protocol_version=TLSv1.3"],
        &[],
    ),
    (
        "ssl_max_protocol_version",
        &["ssl_max_protocol_version=TLSv1.3"],
        &[],
    ),
    (
        "gssencmode",
        &["gssencmode=disable", "gssencmode=prefer"],
        &["gssencmode=require"],
    ),
    ("krbsrvname", &["krbsrvname=other"], &[]),
    ("gsslib", &["gsslib=gssapi"], &[]),
    (
        "gssdelegation",
        &["gssdelegation=0", "gssdelegation=1"],
        &[],
    ),
    (
        "replication",
        &["replication=false", "replication=0", "replication=off"],
        &["replication=true", "replication=database"],
    ),
    (
        "target_session_attrs",
        &[
            "target_session_attrs=any",
            "target_session_attrs=read-write",
            "target_session_attrs=read-only",
            "target_session_attrs=primary",
            "target_session_attrs=standby",
            "target_session_attrs=prefer-standby",
        ],
        &[],
    ),
    (
        "load_balance_hosts",
        &["load_balance_hosts=disable", "load_balance_hosts=random"],
        &[],
    ),
    (
        "scram_client_key",
        &[],
        &["scram_client_key=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="],
    ),
    (
        "scram_server_key",
        &[],
        &["scram_server_key=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="],
    ),
    (
        "oauth_issuer",
        &["oauth_issuer=''"],
        &["oauth_issuer=https://idp.example"],
    ),
    ("oauth_client_id", &[], &["oauth_client_id=pgwarden"]),
    (
        "oauth_client_secret",
        &[],
        &["oauth_client_secret=0auth-S3cret"],
    ),
    ("oauth_scope", &[], &["oauth_scope=openid"]),
    (
        "sslkeylogfile",
        &["sslkeylogfile=''"],
        &["sslkeylogfile=/tmp/keys"],
    ),
];

/// Every keyword libpq knows is either accepted or refused by name, never skipped: a
/// keyword added to the table fails this test until it is classified here.
#[test]
fn every_keyword_is_classified_and_refusals_name_it() {
    let names: Vec<&str> = KEYWORDS.iter().map(|k| k.name).collect();
    let classified: Vec<&str> = CLASSIFIED.iter().map(|(k, _, _)| *k).collect();
    assert_eq!(classified, names);
    for (keyword, accepted, refused) in CLASSIFIED {
        for setting in *accepted {
            let s = format!("host=h {setting}");
            let info: ConnInfo = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            info.check_supported()
                .unwrap_or_else(|e| panic!("{s} is refused: {e}"));
        }
        for setting in *refused {
            let s = format!("host=h {setting}");
            let info: ConnInfo = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            let e = info.check_supported().expect_err(&s);
            match &e {
                ConnInfoError::Unsupported { keyword: k, .. } => assert_eq!(k, keyword, "{s}"),
                other => panic!("{s}: {other:?}"),
            }
            let text = format!("{e} {e:?}");
            assert!(text.contains(&format!("{keyword}=")), "{text}");
            for secret in [SCRAM_KEY, "0auth-S3cret"] {
                assert!(!text.contains(secret), "{text}");
            }
        }
    }
}

/// A refused keyword is refused from the environment too (libpq reads `PGSERVICE`,
/// `PGCLIENTENCODING`, ...), and libpq's defaults stay accepted.
#[test]
fn refusals_apply_to_environment_defaults() {
    let info: ConnInfo = "host=h".parse().unwrap();
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    for (pairs, keyword) in [
        (&[("PGSERVICE", "prod")][..], "service"),
        (&[("PGCLIENTENCODING", "LATIN1")], "client_encoding"),
        (
            &[("PGMAXPROTOCOLVERSION", "latest")],
            "max_protocol_version",
        ),
        (&[("PGSSLCOMPRESSION", "1")], "sslcompression"),
        (&[("PGHOSTADDR", "127.1")], "hostaddr"),
    ] {
        let e = info
            .with_env_defaults(env(pairs))
            .check_supported()
            .expect_err(keyword);
        assert!(
            matches!(e, ConnInfoError::Unsupported { keyword: k, .. } if k == keyword),
            "{e}"
        );
    }
    let defaults = info.with_env_defaults(env(&[
        ("PGTARGETSESSIONATTRS", "any"),
        ("PGLOADBALANCEHOSTS", "disable"),
        ("PGSSLCOMPRESSION", "0"),
        ("PGGSSENCMODE", "prefer"),
        ("PGCLIENTENCODING", "UTF8"),
        ("PGKRBSRVNAME", "postgres"),
        ("PGGSSDELEGATION", "0"),
        ("PGMINPROTOCOLVERSION", "3.0"),
    ]));
    defaults.check_supported().unwrap();
}
