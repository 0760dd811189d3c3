//! Integration config: every field, every validation rule, every format, the aliases.

use pgwarden_core::config::{
    ConfigFormat, ConfigProblem, ConnectorMode, IntegrationConfig, SecretRef, UserMode,
};
use pgwarden_core::owners::OwnerAttribute;
use pgwarden_core::resource::ResourceType;
use pgwarden_core::ssl::SslMode;

const FULL_TOML: &str = r#"
name = "orders-prod"
hostname = "db.internal"
port = 6432
database = "orders"
ssl_mode = "verify-full"
ssl_root_cert = "ca.pem"
ssl_cert = "client.pem"
ssl_key = "client.key"
credential_rotation_days = 90
custom_access_details = "psql \"host={hostname} port={port} dbname={database} user={username}\""
discovery = ["database", "schema", "table", "role"]
user_mode = "persistent"
connector_mode = "createrole"
username_prefix = "jit_"
max_ttl = "12h"
sensitive_roles_allowed = ["ops", "Dba Team"]

[secret]
backend = "vault"
address = "http://127.0.0.1:8200"
mount = "kv"
path = "pgwarden/orders"
namespace = "team-a"

[[integration_owners]]
source = "okta"
attribute = "group"
values = ["dba"]

[[integration_owners]]
source = "okta"
attribute = "user"
values = ["alice@example.com", "bob@example.com"]

[resource_owner]
key = "owner"
source = "okta"
attribute = "group"
"#;

const FULL_YAML: &str = r#"
name: orders-prod
hostname: db.internal
port: 6432
database: orders
ssl_mode: verify-full
ssl_root_cert: ca.pem
ssl_cert: client.pem
ssl_key: client.key
credential_rotation_days: 90
custom_access_details: 'psql "host={hostname} port={port} dbname={database} user={username}"'
discovery: [database, schema, table, role]
user_mode: persistent
connector_mode: createrole
username_prefix: jit_
max_ttl: 12h
sensitive_roles_allowed: [ops, Dba Team]
secret:
  backend: vault
  address: http://127.0.0.1:8200
  mount: kv
  path: pgwarden/orders
  namespace: team-a
integration_owners:
  - source: okta
    attribute: group
    values: [dba]
  - source: okta
    attribute: user
    values: [alice@example.com, bob@example.com]
resource_owner:
  key: owner
  source: okta
  attribute: group
"#;

const FULL_JSON: &str = r#"{
  "name": "orders-prod", "hostname": "db.internal", "port": 6432, "database": "orders",
  "ssl_mode": "verify-full", "ssl_root_cert": "ca.pem", "ssl_cert": "client.pem", "ssl_key": "client.key",
  "credential_rotation_days": 90,
  "custom_access_details": "psql \"host={hostname} port={port} dbname={database} user={username}\"",
  "discovery": ["database", "schema", "table", "role"], "user_mode": "persistent", "connector_mode": "createrole",
  "username_prefix": "jit_", "max_ttl": "12h", "sensitive_roles_allowed": ["ops", "Dba Team"],
  "secret": {"backend": "vault", "address": "http://127.0.0.1:8200", "mount": "kv", "path": "pgwarden/orders", "namespace": "team-a"},
  "integration_owners": [
    {"source": "okta", "attribute": "group", "values": ["dba"]},
    {"source": "okta", "attribute": "user", "values": ["alice@example.com", "bob@example.com"]}
  ],
  "resource_owner": {"key": "owner", "source": "okta", "attribute": "group"}
}"#;

fn toml(s: &str) -> Result<IntegrationConfig, Vec<String>> {
    IntegrationConfig::parse(s, ConfigFormat::Toml)
        .map_err(|e| e.problems().iter().map(ToString::to_string).collect())
}

const MIN: &str = "name = \"x\"\nhostname = \"h\"\n";

#[test]
fn every_field_in_every_format() {
    let a = IntegrationConfig::parse(FULL_TOML, ConfigFormat::Toml).unwrap();
    let b = IntegrationConfig::parse(FULL_YAML, ConfigFormat::Yaml).unwrap();
    let c = IntegrationConfig::parse(FULL_JSON, ConfigFormat::Json).unwrap();
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(a.name, "orders-prod");
    assert_eq!(a.hostname, "db.internal");
    assert_eq!(a.port, 6432);
    assert_eq!(a.database, "orders");
    assert_eq!(a.ssl_mode, SslMode::VerifyFull);
    assert_eq!(a.ssl_root_cert.as_deref(), Some("ca.pem"));
    assert_eq!(a.ssl_cert.as_deref(), Some("client.pem"));
    assert_eq!(a.ssl_key.as_deref(), Some("client.key"));
    assert_eq!(a.credential_rotation_days, Some(90));
    assert!(
        a.custom_access_details
            .as_ref()
            .unwrap()
            .source()
            .starts_with("psql")
    );
    assert_eq!(a.discovery, ResourceType::ALL.to_vec());
    assert_eq!(a.user_mode, UserMode::Persistent);
    assert_eq!(a.connector_mode, ConnectorMode::Createrole);
    assert_eq!(a.username_prefix, "jit_");
    assert_eq!(a.max_ttl.as_secs(), 12 * 3600);
    assert_eq!(a.sensitive_roles_allowed, ["ops", "Dba Team"]);
    assert_eq!(
        a.secret,
        Some(
            SecretRef::new("vault")
                .with("address", "http://127.0.0.1:8200")
                .with("mount", "kv")
                .with("path", "pgwarden/orders")
                .with("namespace", "team-a")
        )
    );
    assert_eq!(a.integration_owners.len(), 2);
    assert_eq!(a.integration_owners[1].attribute, OwnerAttribute::User);
    assert_eq!(
        a.integration_owners[1].values,
        ["alice@example.com", "bob@example.com"]
    );
    assert_eq!(a.resource_owner.as_ref().unwrap().key, "owner");
}

#[test]
fn defaults() {
    let c = toml(MIN).unwrap();
    assert_eq!(c.port, 5432);
    assert_eq!(c.database, "postgres");
    assert_eq!(c.ssl_mode, SslMode::Prefer);
    assert_eq!(c.discovery, ResourceType::ALL.to_vec());
    assert_eq!(c.user_mode, UserMode::Ephemeral);
    assert_eq!(c.connector_mode, ConnectorMode::Superuser);
    assert_eq!(c.username_prefix, "pgw_");
    assert_eq!(c.max_ttl.to_string(), "7d");
    assert!(c.sensitive_roles_allowed.is_empty());
    assert_eq!(c.credential_rotation_days, None);
    assert!(c.secret.is_none() && c.integration_owners.is_empty() && c.resource_owner.is_none());
}

#[test]
fn serialized_config_reads_back_equal() {
    for text in [FULL_TOML, MIN] {
        let c = toml(text).unwrap();
        assert_eq!(toml(&c.to_toml()).unwrap(), c);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            IntegrationConfig::parse(&json, ConfigFormat::Json).unwrap(),
            c
        );
    }
}

#[test]
fn terraform_aliases() {
    let c = toml(&format!(
        "{MIN}dbname = \"app\"\nsslmode = \"require\"\nsslrootcert = \"ca.pem\"\ncredentials_rotation_period_in_days = 30\n"
    ))
    .unwrap();
    assert_eq!(c.database, "app");
    assert_eq!(c.ssl_mode, SslMode::Require);
    assert_eq!(c.ssl_root_cert.as_deref(), Some("ca.pem"));
    assert_eq!(c.credential_rotation_days, Some(30));
    let err = toml(&format!("{MIN}dbname = \"a\"\ndatabase = \"b\"\n")).unwrap_err();
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(err[0].contains("both set database"), "{err:?}");
}

/// The `[secret]` section is a backend name and settings this crate does not read:
/// kept as written, `null`s dropped; the backends check them (pgwarden-secrets' tests).
#[test]
fn secret_section_keeps_backend_and_settings() {
    let c = toml(&format!(
        "{MIN}[secret]\nbackend = \"some-store\"\nregion = \"eu\"\nretries = 3\n"
    ))
    .unwrap();
    let secret = c.secret.as_ref().unwrap();
    assert_eq!(secret.backend(), "some-store");
    assert_eq!(
        *secret,
        SecretRef::new("some-store")
            .with("region", "eu")
            .with("retries", 3)
    );
    assert_eq!(toml(&c.to_toml()).unwrap(), c);
    let json = r#"{"name": "x", "hostname": "h", "secret": {"backend": "file", "path": "/p", "unused": null}}"#;
    let c = IntegrationConfig::parse(json, ConfigFormat::Json).unwrap();
    assert_eq!(c.secret, Some(SecretRef::new("file").with("path", "/p")));
    for (section, field, fragment) in [
        ("path = \"p\"", "secret.backend", "is required"),
        (
            "backend = 3",
            "secret.backend",
            "must be a string, not a number",
        ),
    ] {
        let problems = toml(&format!("{MIN}[secret]\n{section}\n")).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with(&format!("{field}: ")) && problems[0].contains(fragment),
            "{problems:?}"
        );
    }
    let problems = toml(&format!("{MIN}secret = \"vault\"\n")).unwrap_err();
    assert!(
        problems[0].contains("secret: must be a table"),
        "{problems:?}"
    );
}

/// A check of the `[secret]` section given to `parse_with` sees the section as written,
/// and its problems are listed with the others.
#[test]
fn secret_checks_report_with_the_other_problems() {
    let text = format!("{MIN}port = 0\n[secret]\nbackend = \"vault\"\naddress = \"vault:8200\"\n");
    let mut seen = None;
    let err = IntegrationConfig::parse_with(&text, ConfigFormat::Toml, |secret| {
        seen = Some(secret.clone());
        vec![ConfigProblem::new("secret.path", "is required")]
    })
    .unwrap_err();
    assert_eq!(
        seen,
        Some(SecretRef::new("vault").with("address", "vault:8200"))
    );
    let problems: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        [
            "port: must be a whole number from 1 to 65535, got 0",
            "secret.path: is required"
        ]
    );
    // A check with nothing to say leaves the config valid.
    let c = IntegrationConfig::parse_with(
        &format!("{MIN}[secret]\nbackend = \"vault\"\n"),
        ConfigFormat::Toml,
        |_| Vec::new(),
    )
    .unwrap();
    assert_eq!(c.secret.unwrap().backend, "vault");
}

/// Each invalid document and the problems it must report (field prefix + fragment).
#[test]
#[allow(clippy::too_many_lines, reason = "one table of cases")]
fn validation_rules_each_name_the_field() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("hostname = \"h\"", &[("name", "is required")]),
        ("name = \"x\"", &[("hostname", "is required")]),
        (
            "name = \"\"\nhostname = \"h\"",
            &[("name", "must not be empty")],
        ),
        (
            "name = \"orders prod\"\nhostname = \"h\"",
            &[("name", "has ' '")],
        ),
        (
            &format!("name = \"{}\"\nhostname = \"h\"", "a".repeat(65)),
            &[("name", "65 chars")],
        ),
        (
            "name = \"x\"\nhostname = \"a b\"",
            &[("hostname", "give one host name")],
        ),
        (
            "name = \"x\"\nhostname = \"h1,h2\"",
            &[("hostname", "give one host name")],
        ),
        (
            "name = 5\nhostname = \"h\"",
            &[("name", "must be a string, not a number")],
        ),
        (
            &format!("{MIN}port = 0"),
            &[("port", "from 1 to 65535, got 0")],
        ),
        (
            &format!("{MIN}port = 70000"),
            &[("port", "from 1 to 65535")],
        ),
        (
            &format!("{MIN}port = \"x\""),
            &[("port", "from 1 to 65535")],
        ),
        (
            &format!("{MIN}port = true"),
            &[("port", "whole number, not a boolean")],
        ),
        (
            &format!("{MIN}database = \"\""),
            &[("database", "must not be empty")],
        ),
        (
            &format!("{MIN}ssl_mode = \"verify_full\""),
            &[("ssl_mode", "valid values: disable, allow")],
        ),
        (
            &format!("{MIN}ssl_mode = \"verify-ca\""),
            &[("ssl_mode", "needs a root certificate")],
        ),
        (
            &format!("{MIN}ssl_mode = \"verify-full\""),
            &[("ssl_mode", "needs a root certificate")],
        ),
        (
            &format!("{MIN}ssl_mode = \"require\"\nssl_root_cert = \"system\""),
            &[("ssl_mode", "ssl_root_cert=system")],
        ),
        (
            &format!("{MIN}ssl_cert = \"c.pem\""),
            &[("ssl_key", "required when ssl_cert")],
        ),
        (
            &format!("{MIN}ssl_key = \"c.key\""),
            &[("ssl_cert", "required when ssl_key")],
        ),
        (
            &format!("{MIN}ssl_root_cert = \"-----BEGIN CERTIFICATE-----\\nMIIB\""),
            &[("ssl_root_cert", "no -----END")],
        ),
        (
            &format!("{MIN}credential_rotation_days = 0"),
            &[("credential_rotation_days", "from 1 to 3650")],
        ),
        (
            &format!("{MIN}credential_rotation_days = 3651"),
            &[("credential_rotation_days", "from 1 to 3650")],
        ),
        (
            &format!("{MIN}custom_access_details = \"{}\"", "x".repeat(431)),
            &[("custom_access_details", "431 chars; at most 400")],
        ),
        (
            &format!("{MIN}custom_access_details = \"user={{password}}\""),
            &[("custom_access_details", "unknown placeholder {password}")],
        ),
        (
            &format!("{MIN}discovery = [\"tables\"]"),
            &[("discovery[0]", "unknown resource type \"tables\"")],
        ),
        (
            &format!("{MIN}discovery = [\"table\", \"table\"]"),
            &[("discovery[1]", "listed twice")],
        ),
        (
            &format!("{MIN}discovery = \"table\""),
            &[("discovery", "must be a list")],
        ),
        (
            &format!("{MIN}user_mode = \"shared\""),
            &[("user_mode", "valid: ephemeral, persistent")],
        ),
        (
            &format!("{MIN}connector_mode = \"rds\""),
            &[("connector_mode", "valid: superuser, createrole")],
        ),
        (
            &format!("{MIN}username_prefix = \"pg_\""),
            &[("username_prefix", "reserves that prefix")],
        ),
        (
            &format!("{MIN}username_prefix = \"Jit-\""),
            &[("username_prefix", "must start with a lowercase")],
        ),
        (
            &format!("{MIN}username_prefix = \"jit-\""),
            &[("username_prefix", "has '-'")],
        ),
        (
            &format!("{MIN}username_prefix = \"{}\"", "a".repeat(21)),
            &[("username_prefix", "21 bytes")],
        ),
        (
            &format!("{MIN}max_ttl = \"7 days\""),
            &[("max_ttl", "invalid duration")],
        ),
        (
            &format!("{MIN}max_ttl = \"0s\""),
            &[("max_ttl", "longer than zero")],
        ),
        (
            &format!("{MIN}max_ttl = \"3651d\""),
            &[("max_ttl", "longer than the maximum")],
        ),
        (
            &format!("{MIN}sensitive_roles_allowed = \"ops\""),
            &[("sensitive_roles_allowed", "must be a list of role names")],
        ),
        (
            &format!("{MIN}sensitive_roles_allowed = [\"ops\", 3, \"\"]"),
            &[
                (
                    "sensitive_roles_allowed[1]",
                    "must be a string, not a number",
                ),
                ("sensitive_roles_allowed[2]", "must not be empty"),
            ],
        ),
        (
            &format!(
                "{MIN}sensitive_roles_allowed = [\"pg_execute_server_program\", \"pgwarden_managed\", \"pgwarden_p_0123\"]"
            ),
            &[
                ("sensitive_roles_allowed[0]", "is a predefined role"),
                ("sensitive_roles_allowed[1]", "pgwarden's own roles"),
                ("sensitive_roles_allowed[2]", "pgwarden's own roles"),
            ],
        ),
        (
            &format!(
                "{MIN}sensitive_roles_allowed = [\"ops\", \"ops\", \"{}\"]",
                "r".repeat(64)
            ),
            &[
                ("sensitive_roles_allowed[1]", "listed twice"),
                ("sensitive_roles_allowed[2]", "64 bytes"),
            ],
        ),
        (
            &format!("{MIN}colour = \"blue\""),
            &[("colour", "unknown field (valid fields: name, hostname")],
        ),
        (
            &format!("{MIN}[secret]\npath = \"p\""),
            &[("secret.backend", "is required")],
        ),
        (
            &format!(
                "{MIN}[[integration_owners]]\nsource = \"okta\"\nattribute = \"team\"\nvalues = [\"dba\"]"
            ),
            &[("integration_owners[0].attribute", "valid: user, group")],
        ),
        (
            &format!(
                "{MIN}[[integration_owners]]\nsource = \"okta\"\nattribute = \"group\"\nvalues = []"
            ),
            &[("integration_owners[0].values", "is empty")],
        ),
        (
            &format!("{MIN}[[integration_owners]]\nattribute = \"group\"\nvalues = [\"dba\"]"),
            &[("integration_owners[0].source", "is required")],
        ),
        (
            &format!(
                "{MIN}[[integration_owners]]\nsource = \"okta\"\nattribute = \"group\"\nvalues = [\"dba\"]\nvalue = 1"
            ),
            &[("integration_owners[0].value", "unknown field")],
        ),
        (
            &format!(
                "{MIN}[resource_owner]\nkey = \"owner\"\nsource = \"okta\"\nattribute = \"group\""
            ),
            &[("resource_owner", "no integration_owners")],
        ),
        (
            &format!("{MIN}[resource_owner]\nsource = \"okta\"\nattribute = \"group\""),
            &[("resource_owner.key", "is required")],
        ),
    ];
    for (doc, want) in cases {
        let problems = toml(doc).expect_err(doc);
        assert_eq!(problems.len(), want.len(), "{doc}\n{problems:#?}");
        for (field, fragment) in *want {
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with(&format!("{field}: ")) && p.contains(fragment)),
                "{doc}\nwant {field}: ..{fragment}..\ngot {problems:#?}"
            );
        }
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let doc = r#"
name = "bad name"
hostname = "db"
port = 0
ssl_mode = "verify-ca"
custom_access_details = "{oops}"
[secret]
backend = "aws"
[resource_owner]
key = "owner"
source = "okta"
attribute = "group"
"#;
    // The secret section's own check (pgwarden-secrets' `validate` in the facade)
    // reports with the rest.
    let err = IntegrationConfig::parse_with(doc, ConfigFormat::Toml, |secret| {
        assert_eq!(secret.backend, "aws");
        vec![ConfigProblem::new("secret.secret_id", "is required")]
    })
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("invalid integration config (6 problems):"),
        "{text}"
    );
    for field in [
        "name:",
        "port:",
        "ssl_mode:",
        "custom_access_details:",
        "secret.secret_id:",
        "resource_owner:",
    ] {
        assert!(text.contains(field), "{field} missing from\n{text}");
    }
}

#[test]
fn syntax_errors_name_the_format() {
    let e = IntegrationConfig::parse("name = \n", ConfigFormat::Toml)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("config is not valid TOML") && e.contains("line 1"),
        "{e}"
    );
    let e = IntegrationConfig::parse("{", ConfigFormat::Json)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("config is not valid JSON"), "{e}");
    let e = IntegrationConfig::parse("a: [", ConfigFormat::Yaml)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("config is not valid YAML"), "{e}");
    let e = IntegrationConfig::parse("[1, 2]", ConfigFormat::Json)
        .unwrap_err()
        .to_string();
    assert!(e.contains("must be a table of settings, not a list"), "{e}");
}

#[test]
fn format_from_extension() {
    use std::path::Path;
    assert_eq!(
        ConfigFormat::from_path(Path::new("a.toml")).unwrap(),
        ConfigFormat::Toml
    );
    assert_eq!(
        ConfigFormat::from_path(Path::new("a.YML")).unwrap(),
        ConfigFormat::Yaml
    );
    assert_eq!(
        ConfigFormat::from_path(Path::new("a.yaml")).unwrap(),
        ConfigFormat::Yaml
    );
    assert_eq!(
        ConfigFormat::from_path(Path::new("dir/a.json")).unwrap(),
        ConfigFormat::Json
    );
    let e = ConfigFormat::from_path(Path::new("a.ini"))
        .unwrap_err()
        .to_string();
    assert!(e.contains(".toml, .yaml, .yml or .json"), "{e}");
}

#[test]
fn system_roots_default_to_verify_full() {
    let c = toml(&format!("{MIN}ssl_root_cert = \"system\"")).unwrap();
    assert_eq!(c.ssl_mode, SslMode::VerifyFull);
    let c = toml(&format!(
        "{MIN}ssl_root_cert = \"ca.pem\"\nssl_mode = \"Verify-CA\""
    ))
    .unwrap();
    assert_eq!(c.ssl_mode, SslMode::VerifyCa);
}

#[test]
fn shipped_example_config_is_valid() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/integration.toml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let c = IntegrationConfig::parse(&text, ConfigFormat::Toml).unwrap();
    assert_eq!(c.name, "orders-prod");
}

#[test]
fn conninfo_round_trip() {
    use pgwarden_core::conninfo::ConnInfo;
    use pgwarden_core::credentials::Credentials;
    use secrecy::ExposeSecret;
    let cfg = IntegrationConfig::parse(FULL_TOML, ConfigFormat::Toml).unwrap();
    let creds = Credentials::new("connector", "pa ss'word");
    let info = cfg.conninfo(Some(&creds), None);
    assert_eq!(info.get("host"), Some("db.internal"));
    assert_eq!(info.get("port"), Some("6432"));
    assert_eq!(info.get("dbname"), Some("orders"));
    assert_eq!(info.get("sslmode"), Some("verify-full"));
    assert_eq!(info.get("sslrootcert"), Some("ca.pem"));
    assert_eq!(info.get("sslcert"), Some("client.pem"));
    assert_eq!(info.get("user"), Some("connector"));
    assert_eq!(info.password().unwrap().expose_secret(), "pa ss'word");
    // Through text and back: the string is a valid libpq string.
    let reparsed: ConnInfo = info.to_string().parse().unwrap();
    assert_eq!(reparsed, info);
    let (back, got) = IntegrationConfig::from_conninfo("orders-prod", &reparsed).unwrap();
    assert_eq!(back.hostname, cfg.hostname);
    assert_eq!(back.port, cfg.port);
    assert_eq!(back.database, cfg.database);
    assert_eq!(back.ssl_mode, cfg.ssl_mode);
    assert_eq!(back.ssl_root_cert, cfg.ssl_root_cert);
    assert_eq!(back.ssl_key, cfg.ssl_key);
    let got = got.unwrap();
    assert_eq!(got.username, "connector");
    assert_eq!(got.password.expose_secret(), "pa ss'word");
    assert!(!format!("{got:?}").contains("pa ss"));
    // Another database of the same instance.
    assert_eq!(
        cfg.conninfo(None, Some("other")).get("dbname"),
        Some("other")
    );
}

#[test]
fn from_conninfo_rejects_what_an_integration_cannot_hold() {
    use pgwarden_core::conninfo::ConnInfo;
    let two: ConnInfo = "host=a,b port=1,2".parse().unwrap();
    let e = IntegrationConfig::from_conninfo("x", &two)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("exactly one TCP host; the connection string has 2"),
        "{e}"
    );
    let sock: ConnInfo = "host=/var/run/postgresql".parse().unwrap();
    let e = IntegrationConfig::from_conninfo("x", &sock)
        .unwrap_err()
        .to_string();
    assert!(e.contains("Unix socket"), "{e}");
    let bad_name: ConnInfo = "host=db".parse().unwrap();
    let e = IntegrationConfig::from_conninfo("bad name", &bad_name)
        .unwrap_err()
        .to_string();
    assert!(e.contains("name: has ' '"), "{e}");
    let uri: ConnInfo = "postgresql://u:p@db.internal:5433/app?sslmode=require"
        .parse()
        .unwrap();
    let (cfg, creds) = IntegrationConfig::from_conninfo("x", &uri).unwrap();
    assert_eq!(
        (cfg.port, cfg.database.as_str(), cfg.ssl_mode),
        (5433, "app", SslMode::Require)
    );
    assert_eq!(creds.unwrap().username, "u");
}
