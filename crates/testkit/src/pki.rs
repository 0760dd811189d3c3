//! A throwaway public key infrastructure for TLS tests, generated with rcgen.
//!
//! Two certificate authorities: [`TestPki::ca`], the one a test trusts (and the server
//! trusts for client certificates), and [`TestPki::other_ca`], a stranger, for the
//! negative cases ("a certificate from another CA must be rejected"). Keys are ECDSA
//! P-256, which both OpenSSL (the server, libpq) and rustls accept.

use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::Error;

/// A certificate and its private key, both PEM-encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// The certificate (`-----BEGIN CERTIFICATE-----`).
    pub cert_pem: String,
    /// The PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`).
    pub key_pem: String,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A certificate authority that issues server and client certificates.
pub struct TestCa {
    common_name: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl fmt::Debug for TestCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCa")
            .field("common_name", &self.common_name)
            .finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new self-signed CA with a fresh key.
    pub fn generate(common_name: &str) -> Result<Self, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = named(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Self {
            common_name: common_name.to_owned(),
            issuer,
        })
    }

    /// The CA's common name.
    #[must_use]
    pub fn common_name(&self) -> &str {
        &self.common_name
    }

    /// The CA certificate, PEM-encoded: what `sslrootcert` (client) or `ssl_ca_file`
    /// (server) points to.
    #[must_use]
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names`: host names become DNS SANs, IP addresses become
    /// IP SANs; the first name is also the subject's common name.
    pub fn server_cert(&self, names: &[&str]) -> Result<IssuedCert, Error> {
        let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name = named(names.first().copied().unwrap_or("server"));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(&params)
    }

    /// A client certificate whose common name is `user`: with `cert` authentication the
    /// server logs the client in as the role named by the CN.
    pub fn client_cert(&self, user: &str) -> Result<IssuedCert, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = named(user);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(&params)
    }

    fn issue(&self, params: &CertificateParams) -> Result<IssuedCert, Error> {
        let mut params = params.clone();
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn named(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "pgwarden-testkit");
    name.push(DnType::CommonName, common_name);
    name
}

/// The trusted CA and a stranger CA.
#[derive(Debug)]
pub struct TestPki {
    ca: TestCa,
    other_ca: TestCa,
}

impl TestPki {
    /// Generates both CAs (a few milliseconds).
    pub fn generate() -> Result<Self, Error> {
        Ok(Self {
            ca: TestCa::generate("pgwarden test CA")?,
            other_ca: TestCa::generate("pgwarden other test CA")?,
        })
    }

    /// The CA tests trust, and the server trusts for client certificates.
    #[must_use]
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// A CA nobody trusts.
    #[must_use]
    pub fn other_ca(&self) -> &TestCa {
        &self.other_ca
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_pem_certificates_and_keys() {
        let pki = TestPki::generate().unwrap();
        assert!(
            pki.ca()
                .cert_pem()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert_ne!(pki.ca().cert_pem(), pki.other_ca().cert_pem());
        let server = pki.ca().server_cert(&["localhost", "127.0.0.1"]).unwrap();
        assert!(server.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let client = pki.other_ca().client_cert("alice").unwrap();
        assert!(client.cert_pem.contains("CERTIFICATE"));
        assert!(!format!("{client:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TestPki>();
    }
}
