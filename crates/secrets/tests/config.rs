//! The `[secret]` section as the backends read it: every backend's settings, every
//! problem at once with its field, and the problems listed with the rest of a config's.

use pgwarden_core::config::{ConfigFormat, IntegrationConfig, SecretRef};
use pgwarden_secrets::{EnvStore, Error, SecretKey, backends, key_for, validate};

const MIN: &str = "name = \"x\"\nhostname = \"h\"\n";

/// The config's problems, as `field: message` lines.
fn problems(section: &str) -> Result<SecretRef, Vec<String>> {
    IntegrationConfig::parse_with(
        &format!("{MIN}[secret]\n{section}\n"),
        ConfigFormat::Toml,
        validate,
    )
    .map(|c| c.secret.unwrap())
    .map_err(|e| e.problems().iter().map(ToString::to_string).collect())
}

#[test]
fn every_backend_and_the_key_it_names() {
    assert_eq!(
        backends(),
        ["vault", "aws", "gcp", "azure", "kubernetes", "env", "file"]
    );
    let cases = [
        ("backend = \"vault\"\npath = \"p\"", SecretKey::new("p")),
        (
            "backend = \"vault\"\naddress = \"https://vault:8200\"\nmount = \"kv\"\npath = \"pg/orders\"\nnamespace = \"team-a\"",
            SecretKey::new("pg/orders"),
        ),
        (
            "backend = \"aws\"\nsecret_id = \"prod/pg\"\nregion = \"eu-west-1\"\nendpoint = \"http://127.0.0.1:5000\"",
            SecretKey::new("prod/pg"),
        ),
        (
            "backend = \"gcp\"\nproject = \"p1\"\nsecret = \"s\"",
            SecretKey::new("s"),
        ),
        (
            "backend = \"gcp\"\nproject = \"p1\"\nsecret = \"s\"\nversion = \"3\"",
            SecretKey::new("s"),
        ),
        (
            "backend = \"azure\"\nvault_url = \"https://kv.vault.azure.net\"\nname = \"pg\"",
            SecretKey::new("pg"),
        ),
        (
            "backend = \"kubernetes\"\nnamespace = \"ns\"\nname = \"pg\"",
            SecretKey::new("pg"),
        ),
        (
            "backend = \"env\"\nusername_var = \"U\"\npassword_var = \"P\"",
            EnvStore::pair_key("U", "P"),
        ),
        (
            "backend = \"file\"\npath = \"/etc/pg.json\"",
            SecretKey::new("pg.json"),
        ),
    ];
    for (section, key) in cases {
        let secret = problems(section).unwrap_or_else(|p| panic!("{section}: {p:?}"));
        assert!(validate(&secret).is_empty(), "{section}");
        assert_eq!(key_for(&secret).unwrap(), key, "{section}");
    }
}

/// Each invalid section and the problems it must report (field prefix + fragment).
#[test]
fn every_problem_names_its_field() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        (
            "path = \"p\"",
            &[("secret.backend", "is required (one of: vault, aws")],
        ),
        (
            "backend = \"consul\"",
            &[(
                "secret.backend",
                "\"consul\" is not a secret backend (valid: vault, aws, gcp, azure, kubernetes, env, file)",
            )],
        ),
        ("backend = \"vault\"", &[("secret.path", "is required")]),
        (
            "backend = \"vault\"\npath = \"p\"\nsecret_id = \"x\"",
            &[(
                "secret.secret_id",
                "unknown field (valid fields: backend, address, mount, path, namespace)",
            )],
        ),
        (
            "backend = \"vault\"\npath = \"p\"\naddress = \"vault:8200\"",
            &[(
                "secret.address",
                "\"vault:8200\" must start with http:// or https://",
            )],
        ),
        (
            "backend = \"vault\"\naddress = \"vault:8200\"\nmount = 3",
            &[
                ("secret.path", "is required"),
                ("secret.address", "must start with http:// or https://"),
                ("secret.mount", "must be a string, not a number"),
            ],
        ),
        ("backend = \"aws\"", &[("secret.secret_id", "is required")]),
        (
            "backend = \"gcp\"",
            &[
                ("secret.project", "is required"),
                ("secret.secret", "is required"),
            ],
        ),
        (
            "backend = \"azure\"\nvault_url = \"http://x\"\nname = \"n\"",
            &[("secret.vault_url", "\"http://x\" must start with https://")],
        ),
        (
            "backend = \"kubernetes\"\nname = \"n\"",
            &[("secret.namespace", "is required")],
        ),
        (
            "backend = \"env\"\nusername_var = \"U\"",
            &[("secret.password_var", "is required")],
        ),
        ("backend = \"file\"", &[("secret.path", "is required")]),
        (
            "backend = \"file\"\npath = \" \"",
            &[("secret.path", "must not be empty")],
        ),
        (
            "backend = \"file\"\npath = 5",
            &[("secret.path", "must be a string, not a number")],
        ),
        (
            "backend = \"gcp\"\nproject = [\"p\"]\nsecret = \"\"\nversion = true\nregion = \"eu\"\nzone = \"a\"",
            &[
                ("secret.project", "must be a string, not a list"),
                ("secret.secret", "must not be empty"),
                ("secret.version", "must be a string, not a boolean"),
                (
                    "secret.region",
                    "unknown field (valid fields: backend, project, secret, version)",
                ),
                ("secret.zone", "unknown field"),
            ],
        ),
    ];
    for (section, want) in cases {
        let problems = problems(section).expect_err(section);
        assert_eq!(problems.len(), want.len(), "{section}\n{problems:#?}");
        for (field, fragment) in *want {
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with(&format!("{field}: ")) && p.contains(fragment)),
                "{section}\nwant {field}: ..{fragment}..\ngot {problems:#?}"
            );
        }
    }
}

#[test]
fn secret_problems_are_reported_with_all_the_others() {
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
    let err = IntegrationConfig::parse_with(doc, ConfigFormat::Toml, validate).unwrap_err();
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
        "secret.secret_id: is required",
        "resource_owner:",
    ] {
        assert!(text.contains(field), "{field} missing from\n{text}");
    }
}

#[tokio::test]
async fn sections_built_by_hand_are_checked_before_use() {
    let e = key_for(&SecretRef::new("consul")).unwrap_err();
    assert!(matches!(e, Error::UnknownBackend { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "\"consul\" is not a secret backend (valid: vault, aws, gcp, azure, kubernetes, env, file): fix the [secret] section"
    );
    let e = pgwarden_secrets::from_config(&SecretRef::new("file"))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "file secret store is misconfigured: invalid [secret] section: secret.path: is required"
    );
    let e = key_for(
        &SecretRef::new("vault")
            .with("path", "p")
            .with("address", "vault:8200"),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Config {
                backend: "vault",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("must start with http:// or https://"),
        "{e}"
    );
}
