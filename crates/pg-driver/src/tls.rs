//! rustls client configurations for libpq's SSL modes.
//!
//! | mode | root certificate given | check |
//! |---|---|---|
//! | allow, prefer, require | no | none ([`crate::danger::NoCertificateCheck`]) |
//! | allow, prefer, require | yes (file or inline) | chain only ([`crate::danger::ChainOnly`]), as libpq |
//! | verify-ca | yes | chain only |
//! | verify-full | yes, or `system` | chain and host name (rustls' `WebPkiServerVerifier`) |
//!
//! Only the given roots are trusted — never a public bundle added behind the user's
//! back (libpq trusts only the file). ALPN is always `postgresql`, as libpq 17+ sends
//! it, which `sslnegotiation=direct` requires. The crypto provider is always passed in.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgwarden_core::ssl::{RootCertSource, SslMode};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::danger::{ChainOnly, NoCertificateCheck};

/// The ALPN protocol name PostgreSQL servers expect.
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// A certificate or key given as a file path or as inline PEM text.
#[derive(Clone, PartialEq, Eq)]
pub enum PemSource {
    /// A file.
    File(PathBuf),
    /// PEM text.
    Inline(String),
}

impl PemSource {
    /// Inline when the text starts with `-----BEGIN`, else a path.
    #[must_use]
    pub fn parse(value: &str) -> Self {
        if value.trim_start().starts_with("-----BEGIN") {
            PemSource::Inline(value.to_owned())
        } else {
            PemSource::File(PathBuf::from(value))
        }
    }

    fn describe(&self) -> String {
        match self {
            PemSource::File(p) => p.display().to_string(),
            PemSource::Inline(_) => "inline PEM".to_owned(),
        }
    }
}

impl fmt::Debug for PemSource {
    /// Never prints inline PEM: it may be a private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemSource::File(p) => f.debug_tuple("File").field(p).finish(),
            PemSource::Inline(_) => f.write_str("Inline(_)"),
        }
    }
}

/// When the client certificate is sent (`sslcertmode`, PostgreSQL 16+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertMode {
    /// Never send one.
    Disable,
    /// Send one if configured (the default).
    #[default]
    Allow,
    /// A certificate must be configured.
    Require,
}

/// Highest or lowest TLS version, as `ssl_min_protocol_version` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// `TLSv1`.
    V1_0,
    /// `TLSv1.1`.
    V1_1,
    /// `TLSv1.2`.
    V1_2,
    /// `TLSv1.3`.
    V1_3,
}

impl TlsVersion {
    /// Parses libpq's spelling (`TLSv1.2`); the empty string is `None`.
    pub fn parse(value: &str) -> Result<Option<Self>, TlsSetupError> {
        Ok(Some(match value {
            "" => return Ok(None),
            "TLSv1" => TlsVersion::V1_0,
            "TLSv1.1" => TlsVersion::V1_1,
            "TLSv1.2" => TlsVersion::V1_2,
            "TLSv1.3" => TlsVersion::V1_3,
            other => {
                return Err(TlsSetupError::ProtocolVersion {
                    value: other.to_owned(),
                });
            }
        }))
    }
}

/// Everything that decides how a TLS session is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The effective SSL mode.
    pub mode: SslMode,
    /// Roots to trust, if any (already defaulted to `~/.postgresql/root.crt` when present).
    pub root_cert: Option<RootCertSource>,
    /// Client certificate chain.
    pub client_cert: Option<PemSource>,
    /// Client private key.
    pub client_key: Option<PemSource>,
    /// When to send the client certificate.
    pub cert_mode: CertMode,
    /// Send SNI for host names (never for IP addresses).
    pub sni: bool,
    /// Lowest TLS version; rustls never goes below 1.2.
    pub min_version: Option<TlsVersion>,
    /// Highest TLS version.
    pub max_version: Option<TlsVersion>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            mode: SslMode::Prefer,
            root_cert: None,
            client_cert: None,
            client_key: None,
            cert_mode: CertMode::Allow,
            sni: true,
            min_version: Some(TlsVersion::V1_2),
            max_version: None,
        }
    }
}

/// TLS could not be set up from the settings (before any network traffic).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// A certificate or key file could not be read.
    #[error("cannot read {what} {source_name}: {error}")]
    Read {
        /// Which file ("root certificate file", "certificate file", "private key file").
        what: &'static str,
        /// Its path.
        source_name: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The PEM holds no usable item.
    #[error("{what} {source_name} holds no {expected}: give a PEM file with at least one")]
    NoPem {
        /// Which input.
        what: &'static str,
        /// Its path or "inline PEM".
        source_name: String,
        /// What was looked for.
        expected: &'static str,
    },
    /// The private key is encrypted or in a format rustls cannot read.
    #[error(
        "private key {source_name} could not be read as an unencrypted PKCS#8, RSA or SEC1 PEM key ({detail}); encrypted keys (sslpassword) are not supported: decrypt it with `openssl pkey`"
    )]
    BadKey {
        /// Its path or "inline PEM".
        source_name: String,
        /// The parser's message.
        detail: String,
    },
    /// libpq's key file permission rule.
    #[error(
        "private key file {path} has group or world access; file must have permissions u=rw (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) or less if owned by root"
    )]
    KeyPermissions {
        /// The key file.
        path: String,
    },
    /// A client certificate without its key, or the reverse.
    #[error("{0}")]
    Incomplete(&'static str),
    /// `sslrootcert=system` but the system store has no certificates.
    #[error("sslrootcert=system: could not load the system's trusted certificates ({detail})")]
    SystemRoots {
        /// What the loader said.
        detail: String,
    },
    /// verify-ca / verify-full without roots.
    #[error(
        "sslmode \"{mode}\" needs a root certificate: set sslrootcert to a file, inline PEM or \"system\" (or place ~/.postgresql/root.crt)"
    )]
    MissingRootCert {
        /// The mode.
        mode: SslMode,
    },
    /// A TLS version rustls cannot do or a bad spelling.
    #[error(
        "invalid or unsupported TLS protocol version \"{value}\": use TLSv1.2 or TLSv1.3 (rustls does not speak older versions)"
    )]
    ProtocolVersion {
        /// The rejected value.
        value: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider compiled in by default: `ring` when its feature is on, else `aws-lc-rs`.
#[must_use]
pub fn default_provider() -> Arc<CryptoProvider> {
    #[cfg(feature = "ring")]
    {
        Arc::new(rustls::crypto::ring::default_provider())
    }
    #[cfg(all(not(feature = "ring"), feature = "aws-lc-rs"))]
    {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }
    #[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
    compile_error!("pgwarden-pg-driver needs the `ring` or the `aws-lc-rs` feature");
}

/// Installs [`default_provider`] as the process-wide rustls provider, if none is.
///
/// pgwarden itself never needs this: it passes its provider explicitly. Applications
/// call it once at start-up when other crates they link (Kubernetes, cloud SDKs) take
/// their TLS provider from the process default and both `ring` and `aws-lc-rs` are
/// compiled in — rustls cannot pick one then. Libraries must not call it.
pub fn install_process_default_provider() {
    let provider = Arc::unwrap_or_clone(default_provider());
    // Err means one is installed already, which is what we want.
    let _ = provider.install_default();
}

fn read_pem(what: &'static str, src: &PemSource) -> Result<Vec<u8>, TlsSetupError> {
    match src {
        PemSource::Inline(text) => Ok(text.as_bytes().to_vec()),
        PemSource::File(path) => std::fs::read(path).map_err(|error| TlsSetupError::Read {
            what,
            source_name: path.display().to_string(),
            error,
        }),
    }
}

fn certificates(
    what: &'static str,
    src: &PemSource,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let bytes = read_pem(what, src)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsSetupError::NoPem {
            what,
            source_name: src.describe(),
            expected: "certificate",
        });
    }
    Ok(certs)
}

/// libpq's rule: a key file owned by the current user must be 0600 or less; one owned
/// by root may be 0640 or less; it must be a regular file.
fn check_key_permissions(path: &Path) -> Result<(), TlsSetupError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|error| TlsSetupError::Read {
        what: "private key file",
        source_name: path.display().to_string(),
        error,
    })?;
    let mode = meta.mode();
    let me = rustix::process::geteuid().as_raw();
    let too_open = if meta.uid() == me {
        mode & 0o077 != 0
    } else if meta.uid() == 0 {
        mode & 0o037 != 0
    } else {
        false
    };
    if !meta.is_file() || too_open {
        return Err(TlsSetupError::KeyPermissions {
            path: path.display().to_string(),
        });
    }
    Ok(())
}

fn private_key(src: &PemSource) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    if let PemSource::File(path) = src {
        check_key_permissions(path)?;
    }
    let bytes = read_pem("private key file", src)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsSetupError::BadKey {
        source_name: src.describe(),
        detail: e.to_string(),
    })
}

fn root_store(src: &RootCertSource) -> Result<RootCertStore, TlsSetupError> {
    let mut store = RootCertStore::empty();
    let certs = match src {
        RootCertSource::System => {
            let loaded = rustls_native_certs::load_native_certs();
            if loaded.certs.is_empty() {
                let detail = loaded
                    .errors
                    .first()
                    .map_or_else(|| "none found".to_owned(), ToString::to_string);
                return Err(TlsSetupError::SystemRoots { detail });
            }
            loaded.certs
        }
        RootCertSource::File(p) => {
            certificates("root certificate file", &PemSource::File(PathBuf::from(p)))?
        }
        RootCertSource::InlinePem(t) => {
            certificates("root certificate", &PemSource::Inline(t.clone()))?
        }
    };
    // Like OpenSSL loading a bundle, skip entries that are not usable trust anchors
    // rather than failing the whole store.
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsSetupError::NoPem {
            what: "root certificate",
            source_name: format!("{src:?}"),
            expected: "usable CA certificate",
        });
    }
    Ok(store)
}

impl TlsSettings {
    /// Builds the rustls client configuration for these settings.
    pub fn client_config(
        &self,
        provider: &Arc<CryptoProvider>,
    ) -> Result<ClientConfig, TlsSetupError> {
        let versions = self.versions()?;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)?;

        let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> =
            match (&self.root_cert, self.mode) {
                (None, SslMode::VerifyCa | SslMode::VerifyFull) => {
                    return Err(TlsSetupError::MissingRootCert { mode: self.mode });
                }
                (None, _) => Arc::new(NoCertificateCheck::new(provider.clone())),
                (Some(src), mode) => {
                    let roots = Arc::new(root_store(src)?);
                    let full = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                        .build()
                        .map_err(|e| {
                            TlsSetupError::Rustls(rustls::Error::General(e.to_string()))
                        })?;
                    if mode == SslMode::VerifyFull {
                        full
                    } else {
                        Arc::new(ChainOnly::new(full))
                    }
                }
            };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);

        let mut config = match (self.cert_mode, &self.client_cert, &self.client_key) {
            (CertMode::Disable, _, _) | (CertMode::Allow, None, None) => {
                builder.with_no_client_auth()
            }
            (CertMode::Require, None, _) => {
                return Err(TlsSetupError::Incomplete(
                    "sslcertmode=require but no client certificate is configured: set sslcert and sslkey",
                ));
            }
            (_, Some(_), None) => {
                return Err(TlsSetupError::Incomplete(
                    "a client certificate (sslcert) needs its private key (sslkey)",
                ));
            }
            (_, None, Some(_)) => {
                return Err(TlsSetupError::Incomplete(
                    "a private key (sslkey) was given without its certificate (sslcert)",
                ));
            }
            (_, Some(cert), Some(key)) => {
                let chain = certificates("certificate file", cert)?;
                builder.with_client_auth_cert(chain, private_key(key)?)?
            }
        };
        config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
        config.enable_sni = self.sni;
        Ok(config)
    }

    fn versions(&self) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, TlsSetupError> {
        let min = self
            .min_version
            .unwrap_or(TlsVersion::V1_2)
            .max(TlsVersion::V1_2);
        let max = self.max_version.unwrap_or(TlsVersion::V1_3);
        let mut v = Vec::new();
        if min <= TlsVersion::V1_2 && max >= TlsVersion::V1_2 {
            v.push(&rustls::version::TLS12);
        }
        if max >= TlsVersion::V1_3 {
            v.push(&rustls::version::TLS13);
        }
        if v.is_empty() {
            return Err(TlsSetupError::ProtocolVersion {
                value: format!("{max:?} (ssl_max_protocol_version)"),
            });
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_is_postgresql_for_every_mode() {
        for mode in [SslMode::Allow, SslMode::Prefer, SslMode::Require] {
            let settings = TlsSettings {
                mode,
                ..TlsSettings::default()
            };
            let config = settings.client_config(&default_provider()).unwrap();
            assert_eq!(config.alpn_protocols, vec![b"postgresql".to_vec()]);
            assert!(config.enable_sni);
        }
        let no_sni = TlsSettings {
            sni: false,
            ..TlsSettings::default()
        };
        assert!(
            !no_sni
                .client_config(&default_provider())
                .unwrap()
                .enable_sni
        );
    }

    #[test]
    fn verify_modes_need_roots() {
        for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
            let e = TlsSettings {
                mode,
                ..TlsSettings::default()
            }
            .client_config(&default_provider())
            .unwrap_err();
            assert!(e.to_string().contains("needs a root certificate"), "{e}");
        }
    }

    #[test]
    fn protocol_versions() {
        assert_eq!(
            TlsVersion::parse("TLSv1.3").unwrap(),
            Some(TlsVersion::V1_3)
        );
        assert_eq!(TlsVersion::parse("").unwrap(), None);
        assert!(TlsVersion::parse("SSLv3").is_err());
        let only13 = TlsSettings {
            min_version: Some(TlsVersion::V1_3),
            ..TlsSettings::default()
        };
        assert_eq!(only13.versions().unwrap().len(), 1);
        let too_old = TlsSettings {
            max_version: Some(TlsVersion::V1_1),
            ..TlsSettings::default()
        };
        let e = too_old.client_config(&default_provider()).unwrap_err();
        assert!(e.to_string().contains("use TLSv1.2 or TLSv1.3"), "{e}");
    }

    #[test]
    fn client_certificate_needs_its_key() {
        let s = TlsSettings {
            client_cert: Some(PemSource::File("/nonexistent.crt".into())),
            ..TlsSettings::default()
        };
        let e = s.client_config(&default_provider()).unwrap_err();
        assert!(e.to_string().contains("needs its private key"), "{e}");
    }

    #[test]
    fn system_roots_load_the_platform_store_for_verify_full() {
        let s = TlsSettings {
            mode: SslMode::VerifyFull,
            root_cert: Some(RootCertSource::System),
            ..TlsSettings::default()
        };
        match s.client_config(&default_provider()) {
            Ok(config) => assert_eq!(config.alpn_protocols, vec![b"postgresql".to_vec()]),
            // A machine without a CA bundle: the error says what is missing.
            Err(e) => assert!(e.to_string().contains("sslrootcert=system"), "{e}"),
        }
    }

    #[test]
    fn inline_pem_is_never_printed() {
        let s = PemSource::parse("-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----");
        assert_eq!(format!("{s:?}"), "Inline(_)");
    }
}
