//! A cluster's TLS material: the test PKI written into the cluster's directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::files::{create_dir, write_file};
use crate::pki::{IssuedCert, TestCa, TestPki};
use crate::server_user::ServerUser;
use crate::{Error, conninfo};

/// Which server certificate a cluster presents. Every variant turns `ssl=on` and makes
/// the server trust [`ClusterTls::ca_cert_path`] for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SslSetup {
    /// Issued by the trusted CA for `localhost`, `127.0.0.1` and `::1`: passes
    /// `sslmode=verify-full` with `sslrootcert` = [`ClusterTls::ca_cert_path`].
    #[default]
    Valid,
    /// Issued by the trusted CA for `wrong.example`: passes `verify-ca`, fails `verify-full`.
    WrongName,
    /// Issued by the other CA for the right names: fails `verify-ca` (and `verify-full`)
    /// against the trusted CA.
    OtherCa,
}

impl SslSetup {
    fn server_names(self) -> &'static [&'static str] {
        match self {
            Self::Valid | Self::OtherCa => &["localhost", "127.0.0.1", "::1"],
            Self::WrongName => &["wrong.example"],
        }
    }
}

/// Paths and PEM texts of a running cluster's certificates.
#[derive(Debug)]
pub struct ClusterTls {
    setup: SslSetup,
    pki: TestPki,
    client_dir: PathBuf,
    ca_cert_pem: String,
    ca_cert_path: PathBuf,
    other_ca_cert_pem: String,
    other_ca_cert_path: PathBuf,
    server_cert_pem: String,
    server_cert_path: PathBuf,
    server_key_path: PathBuf,
    issued: AtomicU32,
}

impl ClusterTls {
    /// Generates the PKI and writes it under `root`: `tls/` for the server (key owned by
    /// the server user, mode 0600, as the server demands), `client/` for client keys
    /// (owned by us, mode 0600, as libpq demands).
    pub(crate) fn create(
        setup: SslSetup,
        root: &Path,
        server_user: &ServerUser,
    ) -> Result<Self, Error> {
        let pki = TestPki::generate()?;
        let server_ca = match setup {
            SslSetup::Valid | SslSetup::WrongName => pki.ca(),
            SslSetup::OtherCa => pki.other_ca(),
        };
        let server = server_ca.server_cert(setup.server_names())?;

        let tls_dir = root.join("tls");
        create_dir(&tls_dir, 0o755)?;
        let client_dir = root.join("client");
        create_dir(&client_dir, 0o700)?;

        let ca_cert_pem = pki.ca().cert_pem();
        let ca_cert_path = tls_dir.join("ca.crt");
        write_file(&ca_cert_path, &ca_cert_pem, 0o644)?;
        let other_ca_cert_pem = pki.other_ca().cert_pem();
        let other_ca_cert_path = tls_dir.join("other-ca.crt");
        write_file(&other_ca_cert_path, &other_ca_cert_pem, 0o644)?;
        let server_cert_path = tls_dir.join("server.crt");
        write_file(&server_cert_path, &server.cert_pem, 0o644)?;
        let server_key_path = tls_dir.join("server.key");
        write_file(&server_key_path, &server.key_pem, 0o600)?;
        server_user.give(&server_key_path)?;

        Ok(Self {
            setup,
            pki,
            client_dir,
            ca_cert_pem,
            ca_cert_path,
            other_ca_cert_pem,
            other_ca_cert_path,
            server_cert_pem: server.cert_pem,
            server_cert_path,
            server_key_path,
            issued: AtomicU32::new(0),
        })
    }

    /// The server settings that turn TLS on with this material.
    pub(crate) fn server_settings(&self) -> Vec<(String, String)> {
        let path = |p: &Path| p.display().to_string();
        vec![
            ("ssl".to_owned(), "on".to_owned()),
            ("ssl_cert_file".to_owned(), path(&self.server_cert_path)),
            ("ssl_key_file".to_owned(), path(&self.server_key_path)),
            ("ssl_ca_file".to_owned(), path(&self.ca_cert_path)),
        ]
    }

    /// Which server certificate the cluster presents.
    #[must_use]
    pub fn setup(&self) -> SslSetup {
        self.setup
    }

    /// The CAs, to issue more certificates.
    #[must_use]
    pub fn pki(&self) -> &TestPki {
        &self.pki
    }

    /// The trusted CA's certificate, PEM.
    #[must_use]
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// The trusted CA's certificate file: the client's `sslrootcert`.
    #[must_use]
    pub fn ca_cert_path(&self) -> &Path {
        &self.ca_cert_path
    }

    /// The other (untrusted) CA's certificate, PEM.
    #[must_use]
    pub fn other_ca_cert_pem(&self) -> &str {
        &self.other_ca_cert_pem
    }

    /// The other (untrusted) CA's certificate file.
    #[must_use]
    pub fn other_ca_cert_path(&self) -> &Path {
        &self.other_ca_cert_path
    }

    /// The certificate the server presents, PEM.
    #[must_use]
    pub fn server_cert_pem(&self) -> &str {
        &self.server_cert_pem
    }

    /// The certificate file the server presents.
    #[must_use]
    pub fn server_cert_path(&self) -> &Path {
        &self.server_cert_path
    }

    /// A client certificate for role `user` (CN = `user`) from the trusted CA, written to
    /// files a client can use as `sslcert`/`sslkey`.
    pub fn client_cert(&self, user: &str) -> Result<ClientCert, Error> {
        self.write_client_cert(user, self.pki.ca())
    }

    /// A client certificate for role `user` from the other CA: the server must reject it.
    pub fn client_cert_from_other_ca(&self, user: &str) -> Result<ClientCert, Error> {
        self.write_client_cert(user, self.pki.other_ca())
    }

    fn write_client_cert(&self, user: &str, ca: &TestCa) -> Result<ClientCert, Error> {
        let issued = ca.client_cert(user)?;
        // Role names may hold any character; files are numbered instead.
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let cert_path = self.client_dir.join(format!("client-{n}.crt"));
        let key_path = self.client_dir.join(format!("client-{n}.key"));
        write_file(&cert_path, &issued.cert_pem, 0o644)?;
        write_file(&key_path, &issued.key_pem, 0o600)?;
        Ok(ClientCert {
            user: user.to_owned(),
            issued,
            cert_path,
            key_path,
        })
    }
}

/// A client certificate and key on disk (key mode 0600, owned by the test process, so
/// libpq accepts it).
#[derive(Debug, Clone)]
pub struct ClientCert {
    user: String,
    issued: IssuedCert,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl ClientCert {
    /// The role named by the certificate's common name.
    #[must_use]
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The certificate, PEM.
    #[must_use]
    pub fn cert_pem(&self) -> &str {
        &self.issued.cert_pem
    }

    /// The private key, PEM (PKCS#8).
    #[must_use]
    pub fn key_pem(&self) -> &str {
        &self.issued.key_pem
    }

    /// The certificate file (`sslcert`).
    #[must_use]
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The key file (`sslkey`).
    #[must_use]
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// `sslcert=... sslkey=...`, to append to a conninfo string.
    #[must_use]
    pub fn conninfo(&self) -> String {
        conninfo::build(&[
            ("sslcert", &self.cert_path.display().to_string()),
            ("sslkey", &self.key_path.display().to_string()),
        ])
    }
}
