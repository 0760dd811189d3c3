//! SSL modes and the rules libpq applies to them.
//!
//! libpq is the authority: the six `sslmode` values, the default `prefer`, the
//! `sslrootcert=system` rule (it defaults the mode to `verify-full` and rejects any
//! weaker mode) and the `sslnegotiation=direct` rule (only with `require` or
//! stronger). The transport and certificate behaviour of each mode is implemented by
//! pgwarden-pg-driver; this module only names the modes and checks combinations.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a connection uses TLS, with libpq's exact meaning for each value.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// Plaintext first; on any failure, retry with TLS.
    Allow,
    /// TLS first; on any failure, retry plaintext. libpq's default.
    #[default]
    Prefer,
    /// TLS only; no certificate check unless a root certificate is given (then as `verify-ca`).
    Require,
    /// TLS only; the chain must lead to the given roots; the host name is not checked.
    VerifyCa,
    /// TLS only; chain and host name are checked.
    VerifyFull,
}

impl SslMode {
    /// Every mode, weakest first.
    pub const ALL: [SslMode; 6] = [
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// The libpq spelling of the mode.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether this mode never falls back to plaintext.
    #[must_use]
    pub const fn requires_tls(self) -> bool {
        matches!(
            self,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        )
    }

    /// Whether this mode always verifies the server certificate chain.
    #[must_use]
    pub const fn verifies_chain(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `sslmode` value that is not one of the six libpq modes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid sslmode value: \"{value}\" (valid values: disable, allow, prefer, require, verify-ca, verify-full)"
)]
pub struct ParseSslModeError {
    /// The rejected value.
    pub value: String,
}

impl FromStr for SslMode {
    type Err = ParseSslModeError;

    /// Parses a mode case-insensitively (`Verify-Full` is `verify-full`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SslMode::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseSslModeError {
                value: s.to_owned(),
            })
    }
}

/// How the TLS session is started (`sslnegotiation`, PostgreSQL 17+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslNegotiation {
    /// Send an SSLRequest first and start TLS only if the server agrees. The default.
    #[default]
    Postgres,
    /// Start the TLS handshake straight after the TCP connect, with ALPN `postgresql`.
    Direct,
}

impl SslNegotiation {
    /// The libpq spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            SslNegotiation::Postgres => "postgres",
            SslNegotiation::Direct => "direct",
        }
    }
}

impl fmt::Display for SslNegotiation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslNegotiation {
    type Err = SslRuleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "postgres" => Ok(SslNegotiation::Postgres),
            "direct" => Ok(SslNegotiation::Direct),
            other => Err(SslRuleError::InvalidNegotiation {
                value: other.to_owned(),
            }),
        }
    }
}

/// Where trusted root certificates come from (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RootCertSource {
    /// The operating system's trust store (`sslrootcert=system`).
    System,
    /// PEM text given inline (starts with `-----BEGIN`).
    InlinePem(String),
    /// A file path. libpq reads `./system` for a file literally named `system`.
    File(String),
}

impl RootCertSource {
    /// Classifies an `sslrootcert`/`ssl_root_cert` value.
    #[must_use]
    pub fn parse(value: &str) -> RootCertSource {
        if value == "system" {
            RootCertSource::System
        } else if value.trim_start().starts_with("-----BEGIN") {
            RootCertSource::InlinePem(value.to_owned())
        } else {
            RootCertSource::File(value.to_owned())
        }
    }
}

/// A combination of SSL settings that libpq (or pgwarden, for a missing root
/// certificate) refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SslRuleError {
    /// `sslrootcert=system` with a mode weaker than verify-full.
    #[error(
        "weak sslmode \"{mode}\" may not be used with sslrootcert=system (use \"verify-full\")"
    )]
    SystemRootsNeedVerifyFull {
        /// The mode that was asked for.
        mode: SslMode,
    },
    /// `sslnegotiation=direct` with a mode that may fall back to plaintext.
    #[error(
        "weak sslmode \"{mode}\" may not be used with sslnegotiation=direct (use \"require\", \"verify-ca\", or \"verify-full\")"
    )]
    DirectNeedsRequire {
        /// The mode that was asked for.
        mode: SslMode,
    },
    /// verify-ca/verify-full without any root certificate source.
    #[error(
        "sslmode \"{mode}\" needs a root certificate: set sslrootcert (a file, inline PEM, or \"system\")"
    )]
    MissingRootCert {
        /// The mode that was asked for.
        mode: SslMode,
    },
    /// An `sslnegotiation` value other than `postgres` or `direct`.
    #[error("invalid sslnegotiation value: \"{value}\" (valid values: postgres, direct)")]
    InvalidNegotiation {
        /// The rejected value.
        value: String,
    },
}

/// Applies libpq's rules and returns the effective mode.
///
/// - `mode` absent: `verify-full` when the root certificate is `system`, else `prefer`.
/// - `sslrootcert=system` with a weaker explicit mode is an error.
/// - `sslnegotiation=direct` needs `require` or stronger.
/// - `verify-ca`/`verify-full` without a root certificate are an error here, earlier
///   than libpq, which would only fail when it cannot find `~/.postgresql/root.crt`.
///   Pass `default_root_present = true` when that default file exists.
pub fn effective_ssl_mode(
    mode: Option<SslMode>,
    root_cert: Option<&RootCertSource>,
    negotiation: SslNegotiation,
    default_root_present: bool,
) -> Result<SslMode, SslRuleError> {
    let system = matches!(root_cert, Some(RootCertSource::System));
    let effective = match (mode, system) {
        (None, true) => SslMode::VerifyFull,
        (None, false) => SslMode::Prefer,
        (Some(m), true) if m != SslMode::VerifyFull => {
            return Err(SslRuleError::SystemRootsNeedVerifyFull { mode: m });
        }
        (Some(m), _) => m,
    };
    if negotiation == SslNegotiation::Direct && !effective.requires_tls() {
        return Err(SslRuleError::DirectNeedsRequire { mode: effective });
    }
    if effective.verifies_chain() && root_cert.is_none() && !default_root_present {
        return Err(SslRuleError::MissingRootCert { mode: effective });
    }
    Ok(effective)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively_and_lists_valid_values() {
        assert_eq!(
            "Verify-Full".parse::<SslMode>().unwrap(),
            SslMode::VerifyFull
        );
        assert_eq!("DISABLE".parse::<SslMode>().unwrap(), SslMode::Disable);
        let err = "verify_full".parse::<SslMode>().unwrap_err().to_string();
        assert!(
            err.contains("verify_full") && err.contains("verify-ca"),
            "{err}"
        );
    }

    #[test]
    fn display_and_serde_use_kebab_case() {
        for m in SslMode::ALL {
            assert_eq!(m.to_string().parse::<SslMode>().unwrap(), m);
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{m}\""));
        }
        assert_eq!(SslMode::default(), SslMode::Prefer);
    }

    #[test]
    #[allow(clippy::type_complexity, reason = "a test table reads best inline")]
    fn rules_table() {
        use SslMode::*;
        let sys = RootCertSource::System;
        let file = RootCertSource::File("ca.pem".into());
        let pg = SslNegotiation::Postgres;
        let direct = SslNegotiation::Direct;
        let cases: Vec<(
            Option<SslMode>,
            Option<&RootCertSource>,
            SslNegotiation,
            Result<SslMode, &str>,
        )> = vec![
            (None, None, pg, Ok(Prefer)),
            (None, Some(&sys), pg, Ok(VerifyFull)),
            (Some(VerifyFull), Some(&sys), pg, Ok(VerifyFull)),
            (Some(Require), Some(&sys), pg, Err("sslrootcert=system")),
            (Some(VerifyCa), Some(&sys), pg, Err("sslrootcert=system")),
            (Some(Prefer), Some(&file), pg, Ok(Prefer)),
            (Some(VerifyCa), Some(&file), pg, Ok(VerifyCa)),
            (Some(VerifyCa), None, pg, Err("needs a root certificate")),
            (Some(VerifyFull), None, pg, Err("needs a root certificate")),
            (Some(Require), None, direct, Ok(Require)),
            (Some(Prefer), None, direct, Err("sslnegotiation=direct")),
            (Some(Allow), None, direct, Err("sslnegotiation=direct")),
            (None, None, direct, Err("sslnegotiation=direct")),
            (None, Some(&sys), direct, Ok(VerifyFull)),
        ];
        for (mode, root, neg, want) in cases {
            let got = effective_ssl_mode(mode, root, neg, false);
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{mode:?} {root:?} {neg:?}"),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e} lacks {w}"),
                (g, w) => panic!("{mode:?} {root:?} {neg:?}: got {g:?}, want {w:?}"),
            }
        }
        assert_eq!(
            effective_ssl_mode(Some(VerifyCa), None, pg, true),
            Ok(VerifyCa)
        );
    }

    #[test]
    fn root_cert_source_classification() {
        assert_eq!(RootCertSource::parse("system"), RootCertSource::System);
        assert_eq!(
            RootCertSource::parse("./system"),
            RootCertSource::File("./system".into())
        );
        assert!(matches!(
            RootCertSource::parse("-----BEGIN CERTIFICATE-----\nMII..."),
            RootCertSource::InlinePem(_)
        ));
    }
}
