//! What `postgres --version` says: the version and major of a set of server binaries.
//!
//! Used both to describe binaries that were found ([`crate::binaries`]) and to check a
//! fetched package before it enters the cache ([`crate::embedded`]); it depends on
//! neither.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::Error;
use crate::server_user::{ServerUser, without_pg_environment};

/// What `postgres --version` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerVersion {
    /// `15.18`, `18beta1`.
    pub(crate) version: String,
    /// `15`, `18`.
    pub(crate) major: u32,
}

/// Runs `postgres --version` (as `as_user` when given, else as ourselves, remembered per
/// path for the process) and parses it.
pub(crate) fn query_server_version(
    postgres: &Path,
    as_user: Option<&ServerUser>,
) -> Result<ServerVersion, Error> {
    static KNOWN: OnceLock<Mutex<HashMap<PathBuf, ServerVersion>>> = OnceLock::new();
    let known = KNOWN.get_or_init(Mutex::default);
    if as_user.is_none()
        && let Some(version) = known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(postgres)
    {
        return Ok(version.clone());
    }
    let mut command = if let Some(user) = as_user {
        user.command(postgres, Path::new("/"))
    } else {
        let mut command = Command::new(postgres);
        without_pg_environment(&mut command);
        command
    };
    let unknown = |detail: String| Error::PgVersionUnknown {
        postgres: postgres.to_owned(),
        detail,
    };
    let output = command
        .arg("--version")
        .output()
        .map_err(|e| unknown(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(unknown(format!("{} ({})", output.status, stderr.trim())));
    }
    let version = parse_server_version(&stdout)
        .ok_or_else(|| unknown(format!("unexpected output {:?}", stdout.trim())))?;
    if as_user.is_none() {
        known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(postgres.to_owned(), version.clone());
    }
    Ok(version)
}

/// `postgres (PostgreSQL) 15.18 (Debian 15.18-1.pgdg120+1)` → `15.18`, major 15.
pub(crate) fn parse_server_version(text: &str) -> Option<ServerVersion> {
    let (_, rest) = text.split_once("(PostgreSQL)")?;
    let version = rest.split_whitespace().next()?;
    let digits = version.bytes().take_while(u8::is_ascii_digit).count();
    let major = version[..digits].parse().ok()?;
    Some(ServerVersion {
        version: version.to_owned(),
        major,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions_are_parsed() {
        let debian =
            parse_server_version("postgres (PostgreSQL) 15.18 (Debian 15.18-1.pgdg120+1)\n")
                .unwrap();
        assert_eq!((debian.version.as_str(), debian.major), ("15.18", 15));
        let npm = parse_server_version("postgres (PostgreSQL) 13.23\n").unwrap();
        assert_eq!((npm.version.as_str(), npm.major), ("13.23", 13));
        let beta = parse_server_version("postgres (PostgreSQL) 18beta1").unwrap();
        assert_eq!((beta.version.as_str(), beta.major), ("18beta1", 18));
        assert_eq!(parse_server_version("postgres 15.18"), None);
        assert_eq!(parse_server_version("postgres (PostgreSQL) devel"), None);
    }
}
