//! The `pg_hba.conf` a cluster is started with.
//!
//! The file is first-match: the superuser's local socket line comes first (so the
//! testkit's own `psql` always works), then the caller's extra lines (so they can
//! override the policy), then the policy's TCP lines.

use std::fmt::Write as _;

/// Which TCP connections the server accepts, and how they authenticate.
///
/// Every policy also lets the superuser in over the cluster's unix socket without a
/// password (that is how [`TempCluster::psql`](crate::TempCluster::psql) connects), and
/// other roles over the socket with their password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HbaPolicy {
    /// `host`: TLS or plaintext, SCRAM password.
    #[default]
    Both,
    /// `hostssl` only, SCRAM password: plaintext connections (`sslmode=disable`) are refused.
    HostSslOnly,
    /// `hostnossl` only, SCRAM password: TLS connections (`sslmode=require`) are refused.
    HostNoSslOnly,
    /// `hostssl ... cert`: the client presents a certificate signed by the cluster's CA,
    /// whose common name is the role it logs in as; no password is asked.
    ClientCert,
    /// `hostssl ... scram-sha-256 clientcert=verify-full`: certificate (CN = role) *and*
    /// password.
    ClientCertAndPassword,
}

impl HbaPolicy {
    /// Whether the policy accepts only TLS connections, so the cluster needs SSL on.
    #[must_use]
    pub fn needs_ssl(self) -> bool {
        !matches!(self, Self::Both | Self::HostNoSslOnly)
    }

    fn tcp_line(self) -> (&'static str, &'static str) {
        match self {
            Self::Both => ("host", "scram-sha-256"),
            Self::HostSslOnly => ("hostssl", "scram-sha-256"),
            Self::HostNoSslOnly => ("hostnossl", "scram-sha-256"),
            Self::ClientCert => ("hostssl", "cert"),
            Self::ClientCertAndPassword => ("hostssl", "scram-sha-256 clientcert=verify-full"),
        }
    }
}

/// The text of `pg_hba.conf`.
pub(crate) fn render(policy: HbaPolicy, superuser: &str, extra_lines: &[String]) -> String {
    let superuser = quote_hba_name(superuser);
    let mut text = format!(
        "# Written by pgwarden-testkit; first match wins.\n\
         local all {superuser} trust\n"
    );
    for line in extra_lines {
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text.push_str("local all all scram-sha-256\n");
    let (kind, method) = policy.tcp_line();
    for address in ["127.0.0.1/32", "::1/128"] {
        let _ = writeln!(text, "{kind} all all {address} {method}");
    }
    text
}

/// A role name as a `pg_hba.conf` token: always double-quoted, so names with spaces or
/// keywords (`all`, `replication`) mean the role of that name.
fn quote_hba_name(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_lines_come_before_the_policy() {
        let text = render(
            HbaPolicy::HostSslOnly,
            "postgres",
            &["host all trusted 127.0.0.1/32 trust".to_owned()],
        );
        let extra = text.find("trusted").unwrap();
        let policy = text
            .find("hostssl all all 127.0.0.1/32 scram-sha-256")
            .unwrap();
        assert!(extra < policy, "{text}");
        assert!(text.contains("local all \"postgres\" trust\n"));
    }

    #[test]
    fn client_cert_policy_uses_cert_auth() {
        let text = render(HbaPolicy::ClientCert, "postgres", &[]);
        assert!(
            text.contains("hostssl all all 127.0.0.1/32 cert\n"),
            "{text}"
        );
        assert!(HbaPolicy::ClientCert.needs_ssl());
        assert!(!HbaPolicy::HostNoSslOnly.needs_ssl());
    }
}
