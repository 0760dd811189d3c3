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
//!
//! Certificate revocation lists ([`CrlSettings`]) are checked where libpq checks them:
//! whenever the chain is verified against a root certificate file (so also in
//! `allow`/`prefer`/`require` with a root certificate), never with `sslrootcert=system`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgwarden_core::ssl::{RootCertSource, SslMode};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::danger::{ChainOnly, NoCertificateCheck};

/// The ALPN protocol name PostgreSQL servers expect.
pub(crate) const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// A certificate or key given as a file path or as inline PEM text.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum PemSource {
    /// A file.
    File(PathBuf),
    /// PEM text.
    Inline(String),
}

impl PemSource {
    /// Inline when the text starts with `-----BEGIN`, else a path.
    #[must_use]
    pub(crate) fn parse(value: &str) -> Self {
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
pub(crate) enum CertMode {
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
pub(crate) enum TlsVersion {
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
    pub(crate) fn parse(value: &str) -> Result<Option<Self>, TlsSetupError> {
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

/// Certificate revocation lists, as libpq's `sslcrl` and `sslcrldir` give them.
///
/// libpq hands them to OpenSSL with `X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL`:
/// every certificate of the server's chain (below the root) needs a current CRL from its
/// issuer, and is rejected if that CRL lists it. pgwarden checks the same with rustls
/// (expired CRLs included). Where libpq's outcome is an accident of OpenSSL's loading rules,
/// the setting is refused with a [`TlsSetupError::Crl`] instead of being guessed at:
///
/// - a CRL file that does not exist is ignored, as libpq does (unless `sslcrldir` is set
///   too, which libpq would then silently drop: refused);
/// - a file, or a directory, that yields no CRL at all is refused (libpq would reject every
///   server certificate, or ignore an unreadable file);
/// - certificates in a CRL file or directory are refused (libpq would trust them as roots);
/// - with `sslrootcert=system` CRLs are refused (libpq ignores them there).
///
/// In `sslcrldir`, as in OpenSSL's hashed directories, only files named
/// `<issuer hash>.r<n>` are read (`openssl rehash` makes them); pgwarden uses all of them
/// rather than only those whose hash names the issuer. A CRL whose `thisUpdate` lies in the
/// future is used (OpenSSL rejects it as not yet valid).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct CrlSettings {
    /// `sslcrl` (a file, or inline PEM as pgwarden allows for certificates), or libpq's
    /// default `~/.postgresql/root.crl` when neither is set.
    pub file: Option<PemSource>,
    /// `sslcrldir`.
    pub dir: Option<PathBuf>,
}

impl CrlSettings {
    /// Whether no CRL source is given.
    #[must_use]
    pub(crate) fn is_empty(&self) -> bool {
        self.file.is_none() && self.dir.is_none()
    }

    /// The setting(s) to name in an error about the CRLs as a whole.
    fn subject(&self) -> (&'static str, String) {
        match (&self.file, &self.dir) {
            (Some(f), None) => ("sslcrl", f.describe()),
            (None, Some(d)) => ("sslcrldir", d.display().to_string()),
            (Some(f), Some(d)) => (
                "sslcrl/sslcrldir",
                format!("{} and {}", f.describe(), d.display()),
            ),
            (None, None) => ("sslcrl", String::new()),
        }
    }

    /// An error about the CRL settings as a whole.
    fn whole_error(&self, problem: impl Into<String>) -> TlsSetupError {
        let (keyword, path) = self.subject();
        TlsSetupError::Crl {
            keyword,
            path,
            problem: problem.into(),
        }
    }

    fn error(keyword: &'static str, path: String, problem: impl Into<String>) -> TlsSetupError {
        TlsSetupError::Crl {
            keyword,
            path,
            problem: problem.into(),
        }
    }

    /// The CRLs in one PEM file; certificates are refused.
    fn read_file(
        keyword: &'static str,
        path: &str,
        bytes: &[u8],
    ) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsSetupError> {
        let mut crls = Vec::new();
        for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes) {
            match item {
                Ok((SectionKind::Crl, der)) => crls.push(CertificateRevocationListDer::from(der)),
                Ok((SectionKind::Certificate, _)) => {
                    return Err(Self::error(
                        keyword,
                        path.to_owned(),
                        "holds certificates, which libpq would trust as root certificates: keep only CRLs there and put CA certificates in sslrootcert",
                    ));
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(Self::error(
                        keyword,
                        path.to_owned(),
                        format!("is not valid PEM ({e})"),
                    ));
                }
            }
        }
        Ok(crls)
    }

    /// The CRLs to check against, or `None` when libpq would check none. `root_pem` is the
    /// root certificate file: OpenSSL loads the CRLs it holds too.
    fn load(
        &self,
        root_pem: &[u8],
    ) -> Result<Option<Vec<CertificateRevocationListDer<'static>>>, TlsSetupError> {
        if self.is_empty() {
            return Ok(None);
        }
        let mut crls = Vec::new();
        if let Some(file) = &self.file {
            let name = file.describe();
            let bytes = match file {
                PemSource::Inline(text) => Ok(text.as_bytes().to_vec()),
                PemSource::File(path) => std::fs::read(path),
            };
            match bytes {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if self.dir.is_some() {
                        return Err(Self::error(
                            "sslcrl",
                            name,
                            "does not exist, and libpq then ignores sslcrldir as well: fix the sslcrl path or remove it",
                        ));
                    }
                    // libpq: "if not found, silently ignore; we do not require CRL".
                    return Ok(None);
                }
                Err(e) => {
                    return Err(Self::error("sslcrl", name, format!("cannot be read: {e}")));
                }
                Ok(bytes) => crls.extend(Self::read_file("sslcrl", &name, &bytes)?),
            }
        }
        if let Some(dir) = &self.dir {
            match std::fs::read_dir(dir) {
                // OpenSSL looks CRLs up there lazily: a missing directory just has none.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Self::error(
                        "sslcrldir",
                        dir.display().to_string(),
                        format!("cannot be read: {e}"),
                    ));
                }
                Ok(entries) => {
                    let mut names: Vec<_> = entries
                        .filter_map(Result::ok)
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    names.sort();
                    for name in names {
                        let path = dir.join(&name);
                        let shown = path.display().to_string();
                        match hashed_name_kind(&name) {
                            Some(HashedKind::Crl) => {
                                let bytes = std::fs::read(&path).map_err(|e| {
                                    Self::error(
                                        "sslcrldir",
                                        shown.clone(),
                                        format!("cannot be read: {e}"),
                                    )
                                })?;
                                crls.extend(Self::read_file("sslcrldir", &shown, &bytes)?);
                            }
                            Some(HashedKind::Certificate) => {
                                return Err(Self::error(
                                    "sslcrldir",
                                    shown,
                                    "is a hashed certificate file, which libpq would trust as a root certificate: keep only CRLs (<hash>.r<n>) in sslcrldir and put CA certificates in sslrootcert",
                                ));
                            }
                            None => {}
                        }
                    }
                }
            }
        }
        if crls.is_empty() {
            return Err(self.whole_error(
                "holds no CRL (or does not exist; CRLs are PEM \"X509 CRL\" sections, in sslcrldir in files named <issuer hash>.r<n> as `openssl rehash` makes them), so libpq would reject every server certificate: give the CRLs of the CAs that issued the server's chain",
            ));
        }
        crls.extend(CertificateRevocationListDer::pem_slice_iter(root_pem).filter_map(Result::ok));
        Ok(Some(crls))
    }
}

/// What an OpenSSL hashed-directory entry holds, judged by its name: `<8 hex>.r<n>` is a
/// CRL, `<8 hex>.<n>` a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HashedKind {
    Crl,
    Certificate,
}

fn hashed_name_kind(name: &str) -> Option<HashedKind> {
    let (hash, suffix) = name.split_once('.')?;
    if hash.len() != 8 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (kind, number) = match suffix.strip_prefix('r') {
        Some(n) => (HashedKind::Crl, n),
        None => (HashedKind::Certificate, suffix),
    };
    (!number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())).then_some(kind)
}

/// Everything that decides how a TLS session is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
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
    /// Revocation lists, used when the chain is verified against a root certificate file
    /// or inline PEM (as libpq); none by default.
    pub crl: CrlSettings,
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
            crl: CrlSettings::default(),
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
    /// A revocation-list setting (`sslcrl`, `sslcrldir`) that cannot be honoured as
    /// libpq would.
    #[error("{keyword} {path} {problem}")]
    Crl {
        /// `sslcrl` or `sslcrldir`.
        keyword: &'static str,
        /// The file or directory.
        path: String,
        /// What is wrong and what to do.
        problem: String,
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
    pub(crate) fn client_config(
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
                // No verification at all, so nothing to check CRLs against (libpq too).
                (None, _) => Arc::new(NoCertificateCheck::new(provider.clone())),
                (Some(src), mode) => {
                    let crls = self.crls(src)?;
                    let roots = Arc::new(root_store(src)?);
                    let mut builder =
                        WebPkiServerVerifier::builder_with_provider(roots, provider.clone());
                    if let Some(crls) = crls {
                        // rustls' defaults are OpenSSL's CRL_CHECK_ALL: every certificate
                        // below the root, unknown status rejected. OpenSSL also rejects
                        // an expired CRL.
                        builder = builder.with_crls(crls).enforce_revocation_expiration();
                    }
                    let full = builder.build().map_err(|e| match e {
                        rustls::client::VerifierBuilderError::InvalidCrl(e) => {
                            self.crl.whole_error(format!(
                                "holds a CRL rustls cannot use ({})",
                                rustls::Error::InvalidCertRevocationList(e)
                            ))
                        }
                        e => TlsSetupError::Rustls(rustls::Error::General(e.to_string())),
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

    /// The CRLs for a chain verified against `root`, as libpq would load them.
    fn crls(
        &self,
        root: &RootCertSource,
    ) -> Result<Option<Vec<CertificateRevocationListDer<'static>>>, TlsSetupError> {
        let root_pem = match root {
            RootCertSource::System => {
                if self.crl.is_empty() {
                    return Ok(None);
                }
                return Err(self.crl.whole_error(
                    "cannot be used with sslrootcert=system: libpq ignores CRLs with the system's roots, so revocation would silently go unchecked; put the CA certificates in a file and give it as sslrootcert",
                ));
            }
            // Read again: root_store has accepted it already.
            RootCertSource::File(p) => std::fs::read(p).unwrap_or_default(),
            RootCertSource::InlinePem(t) => t.as_bytes().to_vec(),
        };
        self.crl.load(&root_pem)
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
    fn hashed_directory_names() {
        assert_eq!(hashed_name_kind("6b8544ea.r0"), Some(HashedKind::Crl));
        assert_eq!(hashed_name_kind("6B8544EA.r12"), Some(HashedKind::Crl));
        assert_eq!(
            hashed_name_kind("6b8544ea.0"),
            Some(HashedKind::Certificate)
        );
        for other in [
            "crl.pem",
            "6b8544ea.r",
            "6b8544e.r0",
            "6b8544ea.rx",
            "6b8544ea",
        ] {
            assert_eq!(hashed_name_kind(other), None, "{other}");
        }
    }

    const FAKE_CRL: &str = "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n";
    const FAKE_CERT: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

    fn load(file: Option<&Path>, dir: Option<&Path>) -> Result<Option<usize>, String> {
        CrlSettings {
            file: file.map(|f| PemSource::File(f.to_owned())),
            dir: dir.map(Path::to_owned),
        }
        .load(b"")
        .map(|c| c.map(|c| c.len()))
        .map_err(|e| e.to_string())
    }

    #[test]
    fn crl_sources_follow_libpq_or_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = |name: &str| tmp.path().join(name);
        let missing = path("missing.crl");
        // A missing CRL file is ignored, as libpq does, unless sslcrldir is set too.
        assert_eq!(load(Some(&missing), None), Ok(None));
        let e = load(Some(&missing), Some(tmp.path())).unwrap_err();
        assert!(
            e.starts_with("sslcrl ") && e.contains("ignores sslcrldir"),
            "{e}"
        );
        // CRLs are found; certificates beside them are refused.
        std::fs::write(path("one.crl"), FAKE_CRL).unwrap();
        assert_eq!(load(Some(&path("one.crl")), None), Ok(Some(1)));
        std::fs::write(path("mixed.pem"), format!("{FAKE_CERT}{FAKE_CRL}")).unwrap();
        let e = load(Some(&path("mixed.pem")), None).unwrap_err();
        assert!(e.contains("trust as root certificates"), "{e}");
        // A file without any CRL is refused.
        std::fs::write(path("garbage"), "not pem").unwrap();
        let e = load(Some(&path("garbage")), None).unwrap_err();
        assert!(
            e.starts_with("sslcrl ") && e.contains("holds no CRL"),
            "{e}"
        );
        // Directories: only hashed CRL names count; a missing or empty one holds no CRL.
        let dir = path("crls");
        let e = load(None, Some(&dir)).unwrap_err();
        assert!(
            e.starts_with("sslcrldir ") && e.contains("holds no CRL"),
            "{e}"
        );
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("crl.pem"), FAKE_CRL).unwrap();
        assert!(load(None, Some(&dir)).is_err());
        // ... but the file's CRLs are enough.
        assert_eq!(load(Some(&path("one.crl")), Some(&dir)), Ok(Some(1)));
        std::fs::write(dir.join("0123abcd.r0"), FAKE_CRL).unwrap();
        std::fs::write(dir.join("0123abcd.r1"), FAKE_CRL).unwrap();
        assert_eq!(load(None, Some(&dir)), Ok(Some(2)));
        std::fs::write(dir.join("0123abcd.0"), FAKE_CERT).unwrap();
        let e = load(None, Some(&dir)).unwrap_err();
        assert!(e.contains("hashed certificate file"), "{e}");
    }

    #[test]
    fn crls_with_system_roots_are_refused_and_bad_crls_named() {
        let s = TlsSettings {
            mode: SslMode::VerifyFull,
            root_cert: Some(RootCertSource::System),
            crl: CrlSettings {
                file: None,
                dir: Some("/nonexistent".into()),
            },
            ..TlsSettings::default()
        };
        let e = s
            .client_config(&default_provider())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("sslcrldir /nonexistent cannot be used with sslrootcert=system"),
            "{e}"
        );

        // A self-signed CA made with openssl for these tests (a trust anchor's dates are
        // not checked).
        let ca = "-----BEGIN CERTIFICATE-----
MIIBqDCCAU2gAwIBAgIUcBPM42fG5Ix4AgAmylUslgPni6wwCgYIKoZIzj0EAwIw
IDEeMBwGA1UEAwwVcGd3YXJkZW4gdW5pdC10ZXN0IENBMCAXDTI2MTEyOTE5MjY0
NloYDzIxMjYxMTA1MTkyNjQ2WjAgMR4wHAYDVQQDDBVwZ3dhcmRlbiB1bml0LXRl
c3QgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAR5ESScwUK97/8X7uFeexfo
KpELZg3sCWLWBF4lkLTpbOKToaSEXxsq8tQS3v2gygQnOO2GgT9kiwpXYLXZkcWk
o2MwYTAdBgNVHQ4EFgQUJ1q+kPRR29bL721szpoq6gO0WewwHwYDVR0jBBgwFoAU
J1q+kPRR29bL721szpoq6gO0WewwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8E
BAMCAQYwCgYIKoZIzj0EAwIDSQAwRgIhAJIMLABMX6BQLm6APtdayLzjyy1CS0is
j2Btx86JwVHMAiEArUoVsUoo8ivIfpsvmcPPeVIUSCqU6aEajLOX9IEY+Qo=
-----END CERTIFICATE-----
";
        let s = TlsSettings {
            mode: SslMode::VerifyCa,
            root_cert: Some(RootCertSource::InlinePem(ca.to_owned())),
            crl: CrlSettings {
                file: Some(PemSource::Inline(FAKE_CRL.to_owned())),
                dir: None,
            },
            ..TlsSettings::default()
        };
        let e = s
            .client_config(&default_provider())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("sslcrl inline PEM holds a CRL rustls cannot use"),
            "{e}"
        );
    }

    #[test]
    fn inline_pem_is_never_printed() {
        let s = PemSource::parse("-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----");
        assert_eq!(format!("{s:?}"), "Inline(_)");
    }
}
