//! Who runs the server.
//!
//! PostgreSQL refuses to run as root, and this project's machines and CI run as root.
//! So as root, every server program (`initdb`, `pg_ctl`, `postgres`) runs as the `postgres`
//! system user through `runuser -u postgres --`, and the files it must own are chowned
//! to it. As any other user the programs run directly.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::Error;

/// The system user the server runs as when the tests run as root.
const SERVER_USER_NAME: &str = "postgres";

/// A system user the server programs are run as (through `runuser`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SystemUser {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// Runs server programs as the right user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerUser {
    run_as: Option<SystemUser>,
}

impl ServerUser {
    /// Ourselves, unless we are root: then the `postgres` system user.
    pub(crate) fn detect() -> Result<Self, Error> {
        static DETECTED: OnceLock<Result<ServerUser, String>> = OnceLock::new();
        DETECTED
            .get_or_init(|| {
                if effective_uid() != 0 {
                    return Ok(Self { run_as: None });
                }
                let uid = id_of(SERVER_USER_NAME, "-u")?;
                let gid = id_of(SERVER_USER_NAME, "-g")?;
                Ok(Self {
                    run_as: Some(SystemUser {
                        name: SERVER_USER_NAME.to_owned(),
                        uid,
                        gid,
                    }),
                })
            })
            .clone()
            .map_err(|detail| Error::NoServerUser { detail })
    }

    /// The user the server runs as, when it is not ourselves.
    pub(crate) fn run_as(&self) -> Option<&SystemUser> {
        self.run_as.as_ref()
    }

    /// A command running `program` as the server user, with a clean `PG*` environment so
    /// the caller's `PGPORT`, `PGDATA` or `PGOPTIONS` cannot leak into the cluster.
    pub(crate) fn command(&self, program: impl AsRef<OsStr>, working_dir: &Path) -> Command {
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", &user.name, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        // The caller's working directory may be unreadable for the server user (e.g. /root).
        command.current_dir(working_dir).stdin(Stdio::null());
        without_pg_environment(&mut command);
        command
    }

    /// Makes `path` owned by the server user (a no-op when that is ourselves).
    pub(crate) fn give(&self, path: &Path) -> Result<(), Error> {
        match &self.run_as {
            Some(user) => std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
                .map_err(|e| Error::io(format!("chown {} to {}", path.display(), user.name), e)),
            None => Ok(()),
        }
    }
}

/// Removes every `PG*` variable from a command's environment.
pub(crate) fn without_pg_environment(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.as_encoded_bytes().starts_with(b"PG") {
            command.env_remove(key);
        }
    }
}

/// Our effective uid: the one place the testkit asks who it runs as.
pub(crate) fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The uid (`-u`) or gid (`-g`) of another user, from `id`, so that every name service
/// the system is configured with (files, LDAP, ...) counts.
fn id_of(user: &str, flag: &str) -> Result<u32, String> {
    let output = Command::new("id")
        .args([flag, user])
        .output()
        .map_err(|e| format!("running `id {flag} {user}`: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
    }
    parse_id(&output.stdout).ok_or_else(|| format!("`id {flag} {user}` printed no number"))
}

fn parse_id(stdout: &[u8]) -> Option<u32> {
    std::str::from_utf8(stdout).ok()?.trim().parse().ok()
}
