//! The crate's errors: connections ([`ConnectError`], classified so that each says
//! what to fix) and provisioning ([`ProvisionError`]: granting, extending, revoking,
//! reconciling). No message ever contains a secret or the text of a statement.

use std::error::Error as StdError;
use std::fmt;

use pgwarden_core::duration::Ttl;
use pgwarden_core::resource::ResourceError;
use time::OffsetDateTime;

use crate::pool::PoolError;
use crate::privilege::PrivilegeError;
use crate::retry::is_transient;
use crate::revoke::{Blocker, describe_blockers};
use crate::tls::TlsSetupError;

/// What kind of network failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetworkFailure {
    /// Nothing listens there, or the host cannot be reached or resolved.
    Unreachable,
    /// No answer within `connect_timeout` (or
    /// [`ConnectOptions::default_connect_timeout`](crate::connect::ConnectOptions::default_connect_timeout)).
    Timeout,
    /// The server closed the connection during start-up.
    Closed,
}

/// What kind of TLS failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The server refused TLS (`ssl = off`).
    ServerHasNoTls,
    /// The server's certificate does not chain to the trusted roots (or is expired).
    UntrustedCertificate,
    /// The certificate is valid but not for the host name connected to.
    HostnameMismatch,
    /// A certificate of the server's chain is revoked, or its revocation status is unknown
    /// (no current CRL from its issuer in `sslcrl`/`sslcrldir`).
    Revoked,
    /// The server rejected the client certificate, or wanted one and got none.
    ClientCertificateRejected,
    /// Any other handshake failure.
    Handshake,
}

/// What kind of authentication failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthFailure {
    /// Wrong password (or user unknown: the server does not tell them apart).
    WrongPassword,
    /// No `pg_hba.conf` line allows this host, user, database and encryption.
    NoHbaEntry,
    /// `channel_binding=require` could not be honoured.
    ChannelBinding,
    /// Authentication failed otherwise (a method the client lacks, a role that may not log in).
    Other,
}

/// A connection could not be made. The message never contains a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The connection settings are unusable; nothing was sent.
    #[error("invalid connection settings: {message}")]
    Config {
        /// What is wrong and how to fix it.
        message: String,
    },
    /// TLS could not be set up from the settings; nothing was sent.
    #[error("invalid TLS settings: {0}")]
    TlsSetup(#[from] TlsSetupError),
    /// The server could not be reached.
    #[error("cannot reach {target}: {detail}{}", hint_network(*kind))]
    Network {
        /// `host:port`.
        target: String,
        /// Which failure.
        kind: NetworkFailure,
        /// What the system said.
        detail: String,
    },
    /// TLS failed.
    #[error("TLS with {target} failed: {detail}{}", hint_tls(*kind))]
    Tls {
        /// `host:port`.
        target: String,
        /// Which failure.
        kind: TlsFailure,
        /// What rustls or the server said.
        detail: String,
    },
    /// The server refused the login.
    #[error("{target} refused the login: {detail}{}", hint_auth(*kind))]
    Auth {
        /// `host:port`.
        target: String,
        /// Which failure.
        kind: AuthFailure,
        /// What the server said.
        detail: String,
    },
    /// The server reported another error (database missing, too many connections, starting up).
    #[error("{target} reported an error: {detail} (SQLSTATE {code})")]
    Server {
        /// `host:port`.
        target: String,
        /// The SQLSTATE.
        code: String,
        /// The server's message.
        detail: String,
    },
}

fn hint_network(kind: NetworkFailure) -> &'static str {
    match kind {
        NetworkFailure::Unreachable => {
            " — check the host name and port, and that the server listens there (listen_addresses) and no firewall is in the way"
        }
        NetworkFailure::Timeout => {
            " — timed out: the connection (TCP, TLS handshake, start-up and authentication) did not complete within connect_timeout (the connection string's, else ConnectOptions::default_connect_timeout, 10 s unless changed): check the address, firewalls and the server's load, or raise connect_timeout"
        }
        NetworkFailure::Closed => " — the server closed the connection; see its log",
    }
}

fn hint_tls(kind: TlsFailure) -> &'static str {
    match kind {
        TlsFailure::ServerHasNoTls => {
            " — the server does not accept TLS: enable ssl on the server, or use sslmode=prefer/allow/disable"
        }
        TlsFailure::UntrustedCertificate => {
            " — the server certificate does not chain to sslrootcert: give the CA that signed it (or check the certificate's dates)"
        }
        TlsFailure::Revoked => {
            " — a certificate of the server's chain is revoked, or sslcrl/sslcrldir lack a current CRL from one of the CAs that issued the chain (libpq needs one from each)"
        }
        TlsFailure::HostnameMismatch => {
            " — the certificate is not valid for this host name: connect with a name in its subjectAltName, or use sslmode=verify-ca"
        }
        TlsFailure::ClientCertificateRejected => {
            " — the server rejected the client certificate: check sslcert/sslkey and that the server's ssl_ca_file trusts their CA"
        }
        TlsFailure::Handshake => "",
    }
}

fn hint_auth(kind: AuthFailure) -> &'static str {
    match kind {
        AuthFailure::WrongPassword => " — check the user name and password",
        AuthFailure::NoHbaEntry => {
            " — add a matching pg_hba.conf line on the server, or change sslmode (hostssl lines need TLS, hostnossl lines need plaintext)"
        }
        AuthFailure::ChannelBinding => {
            " — channel_binding=require needs TLS and SCRAM: use sslmode=require or stronger, or channel_binding=prefer"
        }
        AuthFailure::Other => "",
    }
}

impl ConnectError {
    /// A short machine-readable class: `config`, `network`, `tls`, `auth` or `server`.
    #[must_use]
    pub fn class(&self) -> &'static str {
        match self {
            ConnectError::Config { .. } | ConnectError::TlsSetup(_) => "config",
            ConnectError::Network { .. } => "network",
            ConnectError::Tls { .. } => "tls",
            ConnectError::Auth { .. } => "auth",
            ConnectError::Server { .. } => "server",
        }
    }

    /// Whether the settings themselves are at fault (exit code 2 in the CLI).
    #[must_use]
    pub fn is_config(&self) -> bool {
        self.class() == "config"
    }

    /// How useful this error is to show when several attempts failed: a certificate
    /// problem explains more than "no `pg_hba.conf` entry for no encryption".
    pub(crate) fn relevance(&self) -> u8 {
        match self {
            ConnectError::Config { .. } | ConnectError::TlsSetup(_) => 9,
            ConnectError::Tls {
                kind: TlsFailure::ServerHasNoTls,
                ..
            } => 2,
            ConnectError::Tls { .. } => 8,
            ConnectError::Auth {
                kind: AuthFailure::NoHbaEntry,
                ..
            } => 4,
            ConnectError::Auth { .. } => 7,
            ConnectError::Server { .. } => 6,
            ConnectError::Network { .. } => 1,
        }
    }

    /// Classifies a tokio-postgres error from one connection attempt to `target`.
    pub(crate) fn classify(target: &str, err: &tokio_postgres::Error) -> Self {
        let target = target.to_owned();
        if let Some(db) = err.as_db_error() {
            let code = db.code().code().to_owned();
            let detail = db.message().to_owned();
            return match code.as_str() {
                "28P01" => ConnectError::Auth {
                    target,
                    kind: AuthFailure::WrongPassword,
                    detail,
                },
                "28000" if detail.contains("pg_hba.conf") => ConnectError::Auth {
                    target,
                    kind: AuthFailure::NoHbaEntry,
                    detail,
                },
                "28000" => ConnectError::Auth {
                    target,
                    kind: AuthFailure::Other,
                    detail,
                },
                _ => ConnectError::Server {
                    target,
                    code,
                    detail,
                },
            };
        }
        // Walk the source chain for rustls and I/O errors.
        let mut source: Option<&(dyn StdError + 'static)> = err.source();
        while let Some(e) = source {
            if let Some(tls) = e.downcast_ref::<rustls::Error>() {
                return ConnectError::Tls {
                    target,
                    kind: tls_kind(tls),
                    detail: tls.to_string(),
                };
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    return ConnectError::Tls {
                        target,
                        kind: tls_kind(tls),
                        detail: tls.to_string(),
                    };
                }
                let kind = match io.kind() {
                    std::io::ErrorKind::TimedOut => NetworkFailure::Timeout,
                    std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe => NetworkFailure::Closed,
                    _ => NetworkFailure::Unreachable,
                };
                return ConnectError::Network {
                    target,
                    kind,
                    detail: io.to_string(),
                };
            }
            source = e.source();
        }
        // tokio-postgres puts the reason in the source chain ("error performing TLS
        // handshake" / "server does not support TLS"): read the whole chain.
        let mut text = err.to_string();
        let mut source = err.source();
        while let Some(e) = source {
            text.push_str(": ");
            text.push_str(&e.to_string());
            source = e.source();
        }
        classify_text(target, text)
    }
}

/// Classifies errors that tokio-postgres reports only as text.
fn classify_text(target: String, text: String) -> ConnectError {
    if text.contains("server does not support TLS") {
        return ConnectError::Tls {
            target,
            kind: TlsFailure::ServerHasNoTls,
            detail: "the server answered the SSL request with \"N\"".to_owned(),
        };
    }
    if text.contains("channel binding") {
        return ConnectError::Auth {
            target,
            kind: AuthFailure::ChannelBinding,
            detail: text,
        };
    }
    if text.starts_with("timeout") {
        return ConnectError::Network {
            target,
            kind: NetworkFailure::Timeout,
            detail: text,
        };
    }
    if text.contains("closed") {
        return ConnectError::Network {
            target,
            kind: NetworkFailure::Closed,
            detail: text,
        };
    }
    if text.starts_with("error performing TLS handshake") {
        return ConnectError::Tls {
            target,
            kind: TlsFailure::Handshake,
            detail: text,
        };
    }
    if text.starts_with("authentication error") {
        return ConnectError::Auth {
            target,
            kind: AuthFailure::Other,
            detail: text,
        };
    }
    ConnectError::Network {
        target,
        kind: NetworkFailure::Unreachable,
        detail: text,
    }
}

fn tls_kind(err: &rustls::Error) -> TlsFailure {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    match err {
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            TlsFailure::HostnameMismatch
        }
        E::InvalidCertificate(
            C::Revoked
            | C::UnknownRevocationStatus
            | C::ExpiredRevocationList
            | C::ExpiredRevocationListContext { .. },
        )
        | E::InvalidCertRevocationList(_) => TlsFailure::Revoked,
        E::InvalidCertificate(_) => TlsFailure::UntrustedCertificate,
        E::AlertReceived(
            A::CertificateRequired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::UnsupportedCertificate
            | A::AccessDenied
            | A::DecryptError,
        ) => TlsFailure::ClientCertificateRejected,
        _ => TlsFailure::Handshake,
    }
}

/// Several attempts failed: the most useful error of `errors[decisive..]` — the attempts on
/// the host that ended the connection, or all of them (`decisive` 0) when every host was
/// tried — with the others as notes (that host's first, then the earlier hosts').
pub(crate) fn most_relevant(
    mut errors: Vec<(String, ConnectError)>,
    decisive: usize,
) -> ConnectError {
    let mut candidates = errors.split_off(decisive.min(errors.len()));
    candidates.sort_by_key(|(_, e)| std::cmp::Reverse(e.relevance()));
    errors.sort_by_key(|(_, e)| std::cmp::Reverse(e.relevance()));
    let mut iter = candidates.into_iter().chain(errors);
    let Some((_, first)) = iter.next() else {
        return ConnectError::Config {
            message: "no host to connect to".to_owned(),
        };
    };
    let notes: Vec<String> = iter.map(|(how, e)| format!("{how}: {e}")).collect();
    if notes.is_empty() {
        return first;
    }
    let mut first = first;
    first.append_detail(&format!(" [also tried: {}]", notes.join("; ")));
    first
}

impl ConnectError {
    /// Appends to the detail of an error that has one (network, TLS, auth, server).
    pub(crate) fn append_detail(&mut self, note: &str) {
        if let ConnectError::Network { detail, .. }
        | ConnectError::Tls { detail, .. }
        | ConnectError::Auth { detail, .. }
        | ConnectError::Server { detail, .. } = self
        {
            detail.push_str(note);
        }
    }

    /// Whether the server hung up during start-up or the TLS handshake: what a server
    /// before PostgreSQL 17 does when the first bytes are a TLS handshake.
    pub(crate) fn is_early_hangup(&self) -> bool {
        matches!(
            self,
            ConnectError::Network {
                kind: NetworkFailure::Closed,
                ..
            } | ConnectError::Tls {
                kind: TlsFailure::Handshake,
                ..
            }
        )
    }
}

impl fmt::Display for NetworkFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Granting, extending, revoking or reconciling failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// The request is invalid; nothing was changed.
    #[error("invalid request: {0}")]
    InvalidRequest(#[from] InvalidRequest),
    /// A resource does not exist, or may not be granted.
    #[error(transparent)]
    Privilege(#[from] PrivilegeError),
    /// No grant with this id is active.
    #[error("no active grant has id {grant_id}")]
    UnknownGrant {
        /// The id asked for.
        grant_id: String,
    },
    /// The instance could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The pool gave no connection.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A statement failed.
    #[error("{action} failed: {}", describe_db_error(source))]
    Database {
        /// What was being done.
        action: String,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// A revocation could not finish; the grant stays "revoking" and reconciliation
    /// retries it. Nothing is forgotten.
    #[error("revocation of {username} is incomplete: {reason}")]
    RevocationIncomplete {
        /// The login role.
        username: String,
        /// What is left.
        reason: String,
    },
    /// A privilege role the grant needs was retired meanwhile; the grant retries.
    #[error("privilege role {0} is being retired; retry the grant")]
    PrivilegeRoleNotReady(String),
    /// Reconcile found the grant expired, but it was extended before its revocation
    /// began: it stays.
    #[error("grant {grant_id} was extended meanwhile: not revoked")]
    NotExpired {
        /// The grant.
        grant_id: String,
    },
    /// Access has ended (login disabled, sessions ended, memberships removed), but
    /// removing what the role owns waited longer than `cleanup_lock_timeout` for locks
    /// other sessions hold. The grant stays "revoking" and the clean-up is retried.
    #[error(
        "access of {username} has ended, but removing what it owns in database {database} waited {waited:?} for locks held by {}; it stays revoking and is retried",
        describe_blockers(blockers)
    )]
    CleanupWaiting {
        /// The login role.
        username: String,
        /// The database whose clean-up waits.
        database: String,
        /// How long it waited (the lock timeout).
        waited: std::time::Duration,
        /// The sessions holding locks on what the role owns there.
        blockers: Vec<Blocker>,
    },
    /// Another process is revoking this grant right now.
    #[error("grant {grant_id} is being revoked by another process")]
    InProgress {
        /// The grant.
        grant_id: String,
    },
    /// The connector role does not fit the configured
    /// [`ConnectorMode`](pgwarden_core::config::ConnectorMode); nothing was
    /// changed.
    #[error("{0}")]
    ConnectorMode(String),
    /// A role in pgwarden's namespace carries no record pgwarden sealed for it (made or
    /// altered by someone else, or sealed with another ledger key): pgwarden will not
    /// use it. Nothing was changed.
    #[error("{0}")]
    NotAuthentic(String),
    /// A test hook stopped the operation at a step (feature `testing`).
    #[cfg(feature = "testing")]
    #[error("stopped at {step:?}: {message}")]
    Injected {
        /// The step.
        step: crate::provision::Step,
        /// The hook's message.
        message: String,
    },
}

/// Why a request was refused before anything was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRequest {
    /// Nobody is named as asking.
    #[error("requester is empty: name who asks for access")]
    EmptyRequester,
    /// No access is asked for.
    #[error("no access asked for: give at least one <resource-id>=<level>")]
    NoAccess,
    /// A level is not valid for its resource's type.
    #[error(transparent)]
    Level(#[from] ResourceError),
    /// The grant id is empty, longer than 200 characters, or holds a control character.
    #[error("grant id must be 1 to 200 printable characters")]
    InvalidGrantId,
    /// The expiry is not in the future.
    #[error("expiry {at} is not in the future")]
    ExpiryNotInFuture {
        /// The expiry asked for.
        at: OffsetDateTime,
    },
    /// The expiry is further than `max_ttl` from now.
    #[error(
        "expiry is more than max_ttl ({max_ttl}) from now: ask for a shorter time or raise max_ttl"
    )]
    OverMaxTtl {
        /// The integration's `max_ttl`.
        max_ttl: Ttl,
    },
    /// The session limits are invalid (each problem names the limit and what to fix).
    #[error("invalid session limits: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    SessionLimits(Vec<pgwarden_core::config::ConfigProblem>),
    /// A session limit needs a newer PostgreSQL than the server's.
    #[error(
        "session limit {setting} needs PostgreSQL {since} or later, and the server is PostgreSQL {major}: leave {setting} out of the grant's session limits"
    )]
    SettingUnsupported {
        /// The limit (`idle_session_timeout`, `transaction_timeout`).
        setting: &'static str,
        /// The server's major version.
        major: u32,
        /// The first major that has it.
        since: u32,
    },
    /// `pgaudit_log` is set, but the server has not loaded pgaudit (no `pgaudit.log`
    /// setting exists).
    #[error(
        "session limit pgaudit_log needs the pgaudit extension, which the server has not loaded: add pgaudit to shared_preload_libraries and restart the server, or leave pgaudit_log out of the session limits"
    )]
    PgauditMissing,
}

/// The server's message, detail and SQLSTATE (never SQL text, which may hold a verifier).
#[must_use]
pub fn describe_db_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(": ");
                s.push_str(d);
            }
            s
        }
        None => e.to_string(),
    }
}

/// Wraps a statement's failure as [`ProvisionError::Database`], saying what was done.
pub(crate) fn db(
    action: impl Into<String>,
) -> impl FnOnce(tokio_postgres::Error) -> ProvisionError {
    let action = action.into();
    move |source| ProvisionError::Database { action, source }
}

/// Whether a database error says the connection itself was gone (see
/// [`crate::pool::connection_lost`]).
pub(crate) fn lost(e: &ProvisionError) -> bool {
    matches!(e, ProvisionError::Database { source, .. } if crate::pool::connection_lost(source))
}

/// Whether retrying may succeed (a transient catalog conflict: see [`is_transient`]).
pub(crate) fn transient(e: &ProvisionError) -> bool {
    matches!(e, ProvisionError::Database { source, .. } if is_transient(source))
}
