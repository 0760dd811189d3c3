//! libpq's keyword table (`PQconninfoOptions` in `fe-connect.c`, PostgreSQL 18).

/// One connection keyword libpq knows, with its fallback environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Keyword {
    /// The keyword, spelled as in connection strings (`sslmode`).
    pub name: &'static str,
    /// The environment variable libpq reads when the keyword is not given (`PGSSLMODE`).
    pub envvar: Option<&'static str>,
    /// libpq's compiled-in default, used when neither the string nor the environment sets it.
    pub compiled_default: Option<&'static str>,
    /// Whether the value is a secret: kept in a [`secrecy::SecretString`] and redacted in
    /// `Debug` and [`redacted`](super::ConnInfo::redacted) output.
    pub secret: bool,
}

const fn kw(
    name: &'static str,
    envvar: Option<&'static str>,
    compiled_default: Option<&'static str>,
) -> Keyword {
    Keyword {
        name,
        envvar,
        compiled_default,
        secret: false,
    }
}

const fn secret(name: &'static str, envvar: Option<&'static str>) -> Keyword {
    Keyword {
        name,
        envvar,
        compiled_default: None,
        secret: true,
    }
}

/// Every keyword of PostgreSQL 18's libpq, in libpq's order (the order of `PQconndefaults`,
/// which [`ConnInfo`](super::ConnInfo) also uses for `Display` and iteration).
///
/// The deprecated `requiressl` is not in the table (libpq removed it long ago) but is still
/// accepted and translated to `sslmode`, as libpq's `conninfo_storeval` does.
pub const KEYWORDS: &[Keyword] = &[
    kw("service", Some("PGSERVICE"), None),
    kw("user", Some("PGUSER"), None),
    secret("password", Some("PGPASSWORD")),
    kw("passfile", Some("PGPASSFILE"), None),
    kw("channel_binding", Some("PGCHANNELBINDING"), Some("prefer")),
    kw("connect_timeout", Some("PGCONNECT_TIMEOUT"), None),
    kw("dbname", Some("PGDATABASE"), None),
    kw("host", Some("PGHOST"), None),
    kw("hostaddr", Some("PGHOSTADDR"), None),
    kw("port", Some("PGPORT"), Some("5432")),
    kw("client_encoding", Some("PGCLIENTENCODING"), None),
    kw("options", Some("PGOPTIONS"), Some("")),
    kw("application_name", Some("PGAPPNAME"), None),
    kw("fallback_application_name", None, None),
    kw("keepalives", None, None),
    kw("keepalives_idle", None, None),
    kw("keepalives_interval", None, None),
    kw("keepalives_count", None, None),
    kw("tcp_user_timeout", None, None),
    kw("sslmode", Some("PGSSLMODE"), Some("prefer")),
    kw("sslnegotiation", Some("PGSSLNEGOTIATION"), Some("postgres")),
    kw("sslcompression", Some("PGSSLCOMPRESSION"), Some("0")),
    kw("sslcert", Some("PGSSLCERT"), None),
    kw("sslkey", Some("PGSSLKEY"), None),
    kw("sslcertmode", Some("PGSSLCERTMODE"), None),
    secret("sslpassword", None),
    kw("sslrootcert", Some("PGSSLROOTCERT"), None),
    kw("sslcrl", Some("PGSSLCRL"), None),
    kw("sslcrldir", Some("PGSSLCRLDIR"), None),
    kw("sslsni", Some("PGSSLSNI"), Some("1")),
    kw("requirepeer", Some("PGREQUIREPEER"), None),
    kw("require_auth", Some("PGREQUIREAUTH"), None),
    kw("min_protocol_version", Some("PGMINPROTOCOLVERSION"), None),
    kw("max_protocol_version", Some("PGMAXPROTOCOLVERSION"), None),
    kw(
        "ssl_min_protocol_version",
        Some("PGSSLMINPROTOCOLVERSION"),
        Some("TLSv1.2"),
    ),
    kw(
        "ssl_max_protocol_version",
        Some("PGSSLMAXPROTOCOLVERSION"),
        None,
    ),
    kw("gssencmode", Some("PGGSSENCMODE"), Some("prefer")),
    kw("krbsrvname", Some("PGKRBSRVNAME"), Some("postgres")),
    kw("gsslib", Some("PGGSSLIB"), None),
    kw("gssdelegation", Some("PGGSSDELEGATION"), Some("0")),
    kw("replication", None, None),
    kw(
        "target_session_attrs",
        Some("PGTARGETSESSIONATTRS"),
        Some("any"),
    ),
    kw(
        "load_balance_hosts",
        Some("PGLOADBALANCEHOSTS"),
        Some("disable"),
    ),
    // Derived from the password (SCRAM ClientKey/ServerKey, base64): as secret as the password.
    secret("scram_client_key", None),
    secret("scram_server_key", None),
    kw("oauth_issuer", None, None),
    kw("oauth_client_id", None, None),
    secret("oauth_client_secret", None),
    kw("oauth_scope", None, None),
    kw("sslkeylogfile", None, None),
];

/// The position of `name` in [`KEYWORDS`]; an exact, case-sensitive match like libpq's `strcmp`.
pub(super) fn index_of(name: &str) -> Option<usize> {
    KEYWORDS.iter().position(|k| k.name == name)
}

/// Looks a keyword up by name (case-sensitive, as libpq).
#[must_use]
pub fn keyword(name: &str) -> Option<&'static Keyword> {
    index_of(name).map(|i| &KEYWORDS[i])
}

/// Whether values of the keyword at `index` are secrets.
pub(super) fn is_secret(index: usize) -> bool {
    KEYWORDS[index].secret
}

/// Whether `name` names a secret keyword (unknown names are not secret).
pub(super) fn is_secret_name(name: &str) -> bool {
    keyword(name).is_some_and(|k| k.secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_secrets_are_the_expected_ones() {
        for (i, k) in KEYWORDS.iter().enumerate() {
            assert_eq!(index_of(k.name), Some(i), "{} appears twice", k.name);
        }
        let secrets: Vec<_> = KEYWORDS
            .iter()
            .filter(|k| k.secret)
            .map(|k| k.name)
            .collect();
        assert_eq!(
            secrets,
            [
                "password",
                "sslpassword",
                "scram_client_key",
                "scram_server_key",
                "oauth_client_secret"
            ]
        );
        assert_eq!(KEYWORDS.len(), 50);
        assert!(keyword("SSLMODE").is_none(), "keywords are case-sensitive");
    }
}
