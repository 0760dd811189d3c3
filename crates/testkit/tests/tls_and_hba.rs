//! TLS setups and `pg_hba.conf` policies, checked with the real libpq client (psql).
//!
//! One cluster per setup, shared by the tests that need it; each test creates its own
//! roles so tests sharing a cluster do not interfere.

use std::os::unix::fs::PermissionsExt;
use std::sync::OnceLock;

use pgwarden_testkit::{Error, HbaPolicy, SslSetup, TempCluster};

const SSL_IN_USE: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

macro_rules! cluster {
    ($name:ident, $builder:expr) => {
        fn $name() -> &'static TempCluster {
            static CLUSTER: OnceLock<TempCluster> = OnceLock::new();
            CLUSTER.get_or_init(|| $builder.start().expect("starting a test cluster"))
        }
    };
}

cluster!(
    wrong_name,
    TempCluster::builder()
        .ssl(SslSetup::WrongName)
        .hba(HbaPolicy::HostSslOnly)
        .hba_line("host all trusty 127.0.0.1/32 trust")
);
cluster!(other_ca, TempCluster::builder().ssl(SslSetup::OtherCa));
cluster!(
    no_ssl_only,
    TempCluster::builder()
        .ssl(SslSetup::Valid)
        .hba(HbaPolicy::HostNoSslOnly)
);
cluster!(
    client_cert,
    TempCluster::builder()
        .ssl(SslSetup::Valid)
        .hba(HbaPolicy::ClientCert)
);
cluster!(
    cert_and_password,
    TempCluster::builder()
        .ssl(SslSetup::Valid)
        .hba(HbaPolicy::ClientCertAndPassword)
);

/// Creates a login role with a password and returns its conninfo (TCP, no sslmode yet).
fn login_role(cluster: &TempCluster, name: &str, password: &str) -> String {
    cluster
        .psql(&format!("CREATE ROLE {name} LOGIN PASSWORD '{password}'"))
        .unwrap();
    cluster.conninfo(name, password, "postgres")
}

fn with(conninfo: &str, extra: &str) -> String {
    format!("{conninfo} {extra}")
}

fn root_of(cluster: &TempCluster) -> String {
    format!(
        "sslrootcert={}",
        cluster.tls().unwrap().ca_cert_path().display()
    )
}

fn stderr_of(result: Result<String, Error>) -> String {
    match result {
        Ok(out) => panic!("expected psql to fail, it printed {out:?}"),
        Err(e) => e
            .psql_stderr()
            .unwrap_or_else(|| panic!("not a psql failure: {e}"))
            .to_owned(),
    }
}

#[test]
fn valid_certificate_passes_verify_full_and_tls_is_in_use() {
    let cluster = TempCluster::shared();
    let base = login_role(cluster, "valid_full", "pw-valid-full");
    for host in ["localhost", "127.0.0.1"] {
        let conninfo = format!(
            "{} host={host} sslmode=verify-full {}",
            base,
            root_of(cluster)
        );
        assert_eq!(
            cluster.psql_with(&conninfo, SSL_IN_USE).unwrap(),
            "t\n",
            "{host}"
        );
    }
    // HbaPolicy::Both also takes plaintext.
    assert_eq!(
        cluster
            .psql_with(&with(&base, "sslmode=disable"), SSL_IN_USE)
            .unwrap(),
        "f\n"
    );
    // Trusting only the other CA fails.
    let other_root = format!(
        "sslrootcert={}",
        cluster.tls().unwrap().other_ca_cert_path().display()
    );
    let stderr = stderr_of(cluster.psql_with(
        &with(&base, &format!("sslmode=verify-ca {other_root}")),
        SSL_IN_USE,
    ));
    assert!(stderr.contains("certificate verify failed"), "{stderr}");
}

#[test]
fn pem_strings_match_the_files() {
    let tls = TempCluster::shared().tls().unwrap();
    assert_eq!(
        std::fs::read_to_string(tls.ca_cert_path()).unwrap(),
        tls.ca_cert_pem()
    );
    assert_eq!(
        std::fs::read_to_string(tls.server_cert_path()).unwrap(),
        tls.server_cert_pem()
    );
    let client = tls.client_cert("pem_check").unwrap();
    assert_eq!(
        std::fs::read_to_string(client.key_path()).unwrap(),
        client.key_pem()
    );
    let mode = std::fs::metadata(client.key_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn wrong_name_certificate_fails_verify_full_but_passes_verify_ca() {
    let cluster = wrong_name();
    let base = login_role(cluster, "wrong_name_user", "pw-wrong-name");
    let root = root_of(cluster);
    let stderr = stderr_of(cluster.psql_with(
        &with(&base, &format!("host=localhost sslmode=verify-full {root}")),
        SSL_IN_USE,
    ));
    assert!(stderr.contains("does not match host name"), "{stderr}");
    assert_eq!(
        cluster
            .psql_with(
                &with(&base, &format!("sslmode=verify-ca {root}")),
                SSL_IN_USE
            )
            .unwrap(),
        "t\n"
    );
}

#[test]
fn host_ssl_only_rejects_plaintext() {
    let cluster = wrong_name();
    let base = login_role(cluster, "ssl_only_user", "pw-ssl-only");
    let stderr = stderr_of(cluster.psql_with(&with(&base, "sslmode=disable"), "SELECT 1"));
    assert!(stderr.contains("no pg_hba.conf entry"), "{stderr}");
    // PostgreSQL 14 reworded the end of the message ("SSL off" before).
    let plaintext = if cluster.server_major() >= 14 {
        "no encryption"
    } else {
        "SSL off"
    };
    assert!(stderr.contains(plaintext), "{stderr}");
    assert_eq!(
        cluster
            .psql_with(&with(&base, "sslmode=require"), SSL_IN_USE)
            .unwrap(),
        "t\n"
    );
}

#[test]
fn extra_hba_lines_take_precedence() {
    // `host all trusty ... trust` comes before the policy's hostssl lines.
    let cluster = wrong_name();
    cluster.psql("CREATE ROLE trusty LOGIN").unwrap();
    let conninfo = cluster.conninfo("trusty", "", "postgres");
    assert_eq!(
        cluster
            .psql_with(&with(&conninfo, "sslmode=disable"), "SELECT current_user")
            .unwrap(),
        "trusty\n"
    );
}

#[test]
fn other_ca_certificate_fails_verify_ca() {
    let cluster = other_ca();
    let base = login_role(cluster, "other_ca_user", "pw-other-ca");
    let root = root_of(cluster);
    for mode in ["verify-ca", "verify-full"] {
        let stderr = stderr_of(
            cluster.psql_with(&with(&base, &format!("sslmode={mode} {root}")), SSL_IN_USE),
        );
        assert!(
            stderr.contains("certificate verify failed"),
            "{mode}: {stderr}"
        );
    }
    // require without a root file does not check the chain.
    assert_eq!(
        cluster
            .psql_with(&with(&base, "sslmode=require"), SSL_IN_USE)
            .unwrap(),
        "t\n"
    );
}

#[test]
fn host_no_ssl_only_rejects_tls() {
    let cluster = no_ssl_only();
    let base = login_role(cluster, "plain_user", "pw-plain");
    let stderr = stderr_of(cluster.psql_with(&with(&base, "sslmode=require"), "SELECT 1"));
    assert!(stderr.contains("no pg_hba.conf entry"), "{stderr}");
    assert_eq!(
        cluster
            .psql_with(&with(&base, "sslmode=disable"), SSL_IN_USE)
            .unwrap(),
        "f\n"
    );
    // prefer tries TLS, is refused, and falls back to plaintext.
    assert_eq!(
        cluster
            .psql_with(&with(&base, "sslmode=prefer"), SSL_IN_USE)
            .unwrap(),
        "f\n"
    );
}

#[test]
fn client_certificate_logs_in_without_a_password() {
    let cluster = client_cert();
    cluster.psql("CREATE ROLE cert_user LOGIN").unwrap();
    let tls = cluster.tls().unwrap();
    let root = root_of(cluster);
    // No password anywhere: the certificate is the credential.
    let base = format!(
        "host=localhost port={} user=cert_user dbname=postgres sslmode=verify-full {root}",
        cluster.port()
    );

    let cert = tls.client_cert("cert_user").unwrap();
    assert_eq!(
        cluster
            .psql_with(&with(&base, &cert.conninfo()), "SELECT current_user")
            .unwrap(),
        "cert_user\n"
    );
    let client_dn = cluster
        .psql_with(
            &with(&base, &cert.conninfo()),
            "SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        )
        .unwrap();
    assert!(client_dn.contains("CN=cert_user"), "{client_dn}");

    // No certificate: nothing else is accepted over TCP.
    let stderr = stderr_of(cluster.psql_with(&base, "SELECT 1"));
    assert!(
        stderr.contains("requires a valid client certificate"),
        "{stderr}"
    );

    // A certificate for another role.
    let someone_else = tls.client_cert("someone_else").unwrap();
    let stderr = stderr_of(cluster.psql_with(&with(&base, &someone_else.conninfo()), "SELECT 1"));
    assert!(
        stderr.contains("certificate authentication failed"),
        "{stderr}"
    );

    // The right name, from a CA the server does not trust.
    let stranger = tls.client_cert_from_other_ca("cert_user").unwrap();
    let stderr = stderr_of(cluster.psql_with(&with(&base, &stranger.conninfo()), "SELECT 1"));
    assert!(stderr.contains("unknown ca"), "{stderr}");
}

#[test]
fn client_certificate_and_password_needs_both() {
    let cluster = cert_and_password();
    let base = with(
        &login_role(cluster, "both_user", "pw-both"),
        &format!("sslmode=verify-full {}", root_of(cluster)),
    );
    let cert = cluster.tls().unwrap().client_cert("both_user").unwrap();
    assert_eq!(
        cluster
            .psql_with(&with(&base, &cert.conninfo()), "SELECT current_user")
            .unwrap(),
        "both_user\n"
    );
    // Password without certificate.
    let stderr = stderr_of(cluster.psql_with(&base, "SELECT 1"));
    assert!(
        stderr.contains("requires a valid client certificate"),
        "{stderr}"
    );
    // Certificate with a wrong password.
    let wrong = cluster.conninfo("both_user", "wrong", "postgres");
    let wrong = format!(
        "{wrong} sslmode=verify-full {} {}",
        root_of(cluster),
        cert.conninfo()
    );
    let stderr = stderr_of(cluster.psql_with(&wrong, "SELECT 1"));
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
}

#[test]
fn ssl_only_policies_without_ssl_are_refused_before_starting() {
    for policy in [
        HbaPolicy::HostSslOnly,
        HbaPolicy::ClientCert,
        HbaPolicy::ClientCertAndPassword,
    ] {
        let err = TempCluster::builder().hba(policy).start().unwrap_err();
        assert!(
            matches!(err, Error::InvalidSetup { .. }),
            "{policy:?}: {err}"
        );
    }
}
