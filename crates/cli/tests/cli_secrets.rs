//! `pgwarden check --config F`: the connector's credentials come from the `[secret]`
//! store the config names — a file, OpenBao (backend `vault`), moto (backend `aws`) —
//! and every way of failing to read them exits 1 with its own message and no secret.
//!
//! The OpenBao and moto tests skip with a printed reason when `bao`/`moto_server` are
//! not installed, unless `PGWARDEN_REQUIRE_SECRET_SERVERS=1`.

use std::path::Path;
use std::process::Output;

use pgwarden::secrets::aws::AwsStore;
use pgwarden::secrets::aws::aws_config::{self, BehaviorVersion, Region};
use pgwarden::secrets::aws::aws_sdk_secretsmanager::config::Credentials as AwsCredentials;
use pgwarden::secrets::vault::{VaultConfig, VaultStore};
use pgwarden::secrets::{PutOptions, SecretKey, SecretStore};
use pgwarden_testkit::moto::{MOTO_ACCESS_KEY_ID, MOTO_REGION, MOTO_SECRET_ACCESS_KEY};
use pgwarden_testkit::secret_conformance::unique_key;
use pgwarden_testkit::{Moto, OpenBao, TempCluster};

mod common;
use pgwarden::SecretString;

/// A value that must never show in any output.
const DECOY: &str = "decoy-hunter2-value";

fn pgwarden(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = common::pgwarden();
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("VAULT_") || k.starts_with("AWS_"))
    {
        cmd.env_remove(k);
    }
    // Keep the AWS SDK away from this machine's profiles and instance metadata.
    cmd.env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd.args(args).envs(env.iter().copied()).output().unwrap()
}

fn write_config(dir: &Path, c: &TempCluster, secret: &str) -> String {
    let path = dir.join("integration.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"local\"\nhostname = \"{}\"\nport = {}\nssl_mode = \"require\"\n\n[secret]\n{secret}\n",
            c.host(),
            c.port()
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn credentials_json(c: &TempCluster) -> String {
    serde_json::json!({"username": c.superuser(), "password": c.password(), "note": DECOY})
        .to_string()
}

/// Exit 0 and a connection report.
fn assert_connects(out: &Output, c: &TempCluster) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("connected to"), "{stdout}");
    assert!(
        stdout.contains(&format!("connector: {}", c.superuser())),
        "{stdout}"
    );
    assert_no_secret(out, c);
}

/// Exit 1 with `expected` in the message.
fn assert_fails_with(out: &Output, c: &TempCluster, expected: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.starts_with("pgwarden: cannot read the connector's credentials: "),
        "{stderr}"
    );
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in: {stderr}"
    );
    assert_no_secret(out, c);
}

fn assert_no_secret(out: &Output, c: &TempCluster) {
    for stream in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(stream);
        assert!(!text.contains(c.password()), "password leaked: {text}");
        assert!(!text.contains(DECOY), "secret document leaked: {text}");
    }
}

#[test]
fn check_reads_credentials_from_a_file() {
    let c = TempCluster::shared();
    let dir = tempfile::tempdir().unwrap();
    let secret_path = dir.path().join("connector.json");
    std::fs::write(&secret_path, credentials_json(c)).unwrap();
    let config = write_config(
        dir.path(),
        c,
        &format!("backend = \"file\"\npath = \"{}\"", secret_path.display()),
    );
    assert_connects(&pgwarden(&["check", "--config", &config], &[]), c);

    // PGUSER/PGPASSWORD do not override the [secret] section.
    let out = pgwarden(
        &["check", "--config", &config],
        &[("PGUSER", "nobody"), ("PGPASSWORD", "wrong")],
    );
    assert_connects(&out, c);
}

#[test]
fn file_failures_each_say_what_is_wrong() {
    let c = TempCluster::shared();
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("missing.json");
    let config = write_config(
        dir.path(),
        c,
        &format!("backend = \"file\"\npath = \"{}\"", missing.display()),
    );
    let out = pgwarden(&["check", "--config", &config], &[]);
    assert_fails_with(
        &out,
        c,
        &format!("file secret {} not found", missing.display()),
    );

    let no_password = dir.path().join("no-password.json");
    std::fs::write(
        &no_password,
        serde_json::json!({"username": c.superuser(), "passwd": DECOY}).to_string(),
    )
    .unwrap();
    let config = write_config(
        dir.path(),
        c,
        &format!("backend = \"file\"\npath = \"{}\"", no_password.display()),
    );
    let out = pgwarden(&["check", "--config", &config], &[]);
    assert_fails_with(&out, c, "is malformed: it has no \"password\" field");

    let not_json = dir.path().join("not-json.json");
    std::fs::write(&not_json, format!("password={DECOY}")).unwrap();
    let config = write_config(
        dir.path(),
        c,
        &format!("backend = \"file\"\npath = \"{}\"", not_json.display()),
    );
    let out = pgwarden(&["check", "--config", &config], &[]);
    assert_fails_with(&out, c, "is malformed: it is not JSON");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one scenario per failure, side by side"
)]
fn check_reads_credentials_from_openbao() {
    let Some(bao) = OpenBao::shared_or_skip("check_reads_credentials_from_openbao") else {
        return;
    };
    let c = TempCluster::shared();
    let key = unique_key("pgwarden/cli", "connector");
    runtime().block_on(async {
        let store = VaultStore::new(VaultConfig::new(
            bao.address(),
            "secret",
            SecretString::from(bao.root_token()),
        ))
        .await
        .unwrap();
        store
            .put(
                &key,
                SecretString::from(credentials_json(c)),
                PutOptions::default(),
            )
            .await
            .unwrap();
        store
            .put(
                &SecretKey::new(format!("{key}-no-password")),
                SecretString::from(
                    serde_json::json!({"username": c.superuser(), "note": DECOY}).to_string(),
                ),
                PutOptions::default(),
            )
            .await
            .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let token = [("VAULT_TOKEN", bao.root_token())];

    let config = write_config(
        dir.path(),
        c,
        &format!(
            "backend = \"vault\"\naddress = \"{}\"\nmount = \"secret\"\npath = \"{key}\"",
            bao.address()
        ),
    );
    assert_connects(&pgwarden(&["check", "--config", &config], &token), c);

    // The address may also come from $VAULT_ADDR.
    let config = write_config(
        dir.path(),
        c,
        &format!("backend = \"vault\"\npath = \"{key}\""),
    );
    let out = pgwarden(
        &["check", "--config", &config],
        &[
            ("VAULT_TOKEN", bao.root_token()),
            ("VAULT_ADDR", bao.address()),
        ],
    );
    assert_connects(&out, c);

    let config = write_config(
        dir.path(),
        c,
        &format!(
            "backend = \"vault\"\naddress = \"{}\"\npath = \"{key}-missing\"",
            bao.address()
        ),
    );
    let out = pgwarden(&["check", "--config", &config], &token);
    assert_fails_with(
        &out,
        c,
        &format!("vault secret secret/{key}-missing not found"),
    );

    let config = write_config(
        dir.path(),
        c,
        &format!(
            "backend = \"vault\"\naddress = \"{}\"\npath = \"{key}-no-password\"",
            bao.address()
        ),
    );
    let out = pgwarden(&["check", "--config", &config], &token);
    assert_fails_with(&out, c, "is malformed: it has no \"password\" field");

    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = write_config(
        dir.path(),
        c,
        &format!("backend = \"vault\"\naddress = \"http://127.0.0.1:{dead}\"\npath = \"{key}\""),
    );
    let out = pgwarden(&["check", "--config", &config], &token);
    assert_fails_with(&out, c, "vault secret store is unreachable");

    // No token at all is a configuration problem: exit 2, saying what to set.
    let config = write_config(
        dir.path(),
        c,
        &format!(
            "backend = \"vault\"\naddress = \"{}\"\npath = \"{key}\"",
            bao.address()
        ),
    );
    let out = pgwarden(&["check", "--config", &config], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("$VAULT_TOKEN"));
}

#[test]
fn check_reads_credentials_from_aws_secrets_manager() {
    let Some(moto) = Moto::shared_or_skip("check_reads_credentials_from_aws_secrets_manager")
    else {
        return;
    };
    let c = TempCluster::shared();
    let key = unique_key("pgwarden-cli", "connector");
    runtime().block_on(async {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(MOTO_REGION))
            .endpoint_url(moto.endpoint())
            .credentials_provider(AwsCredentials::new(
                MOTO_ACCESS_KEY_ID,
                MOTO_SECRET_ACCESS_KEY,
                None,
                None,
                "pgwarden-test",
            ))
            .load()
            .await;
        let store = AwsStore::from_sdk_config(&config);
        store
            .put(
                &key,
                SecretString::from(credentials_json(c)),
                PutOptions::default(),
            )
            .await
            .unwrap();
        store
            .put(
                &SecretKey::new(format!("{key}-no-password")),
                SecretString::from(
                    serde_json::json!({"username": c.superuser(), "note": DECOY}).to_string(),
                ),
                PutOptions::default(),
            )
            .await
            .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", MOTO_ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", MOTO_SECRET_ACCESS_KEY),
    ];
    let section = |secret_id: &str, endpoint: &str| {
        format!(
            "backend = \"aws\"\nsecret_id = \"{secret_id}\"\nregion = \"{MOTO_REGION}\"\nendpoint = \"{endpoint}\""
        )
    };

    let config = write_config(dir.path(), c, &section(key.as_str(), moto.endpoint()));
    assert_connects(&pgwarden(&["check", "--config", &config], &env), c);

    let config = write_config(
        dir.path(),
        c,
        &section(&format!("{key}-missing"), moto.endpoint()),
    );
    let out = pgwarden(&["check", "--config", &config], &env);
    assert_fails_with(&out, c, &format!("aws secret {key}-missing not found"));

    let config = write_config(
        dir.path(),
        c,
        &section(&format!("{key}-no-password"), moto.endpoint()),
    );
    let out = pgwarden(&["check", "--config", &config], &env);
    assert_fails_with(&out, c, "is malformed: it has no \"password\" field");

    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = write_config(
        dir.path(),
        c,
        &section(key.as_str(), &format!("http://127.0.0.1:{dead}")),
    );
    let out = pgwarden(&["check", "--config", &config], &env);
    assert_fails_with(&out, c, "aws secret store is unreachable");
}
