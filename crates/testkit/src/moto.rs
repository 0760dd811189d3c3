//! A throwaway moto server (AWS APIs, Secrets Manager among them) for tests.
//!
//! `moto_server -p <port>` comes from `PyPI` (`pip install 'moto[server]'`) and serves
//! every AWS service on one loopback port, in memory. Point an SDK's endpoint at
//! [`Moto::endpoint`] with any region and the dummy keys [`MOTO_ACCESS_KEY_ID`] /
//! [`MOTO_SECRET_ACCESS_KEY`]. Process handling is shared with
//! [`OpenBao`](crate::OpenBao): random port, readiness probe, killed on drop or by a
//! watchdog when the test process ends.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use crate::Error;
use crate::openbao::{ServerProcess, find_program, free_port, or_skip};

/// The access key id moto accepts (any works; this one is conventional).
pub const MOTO_ACCESS_KEY_ID: &str = "testing";
/// The secret access key moto accepts.
pub const MOTO_SECRET_ACCESS_KEY: &str = "testing";
/// The region tests use.
pub const MOTO_REGION: &str = "us-east-1";

/// A running moto server.
#[derive(Debug)]
pub struct Moto {
    process: ServerProcess,
    endpoint: String,
}

impl Moto {
    /// Starts a server. `$PGWARDEN_TEST_MOTO_SERVER` names the program; else
    /// `moto_server` on `PATH` or in the CI venv.
    pub fn start() -> Result<Self, Error> {
        let moto = find_program(
            "moto_server",
            "PGWARDEN_TEST_MOTO_SERVER",
            "pip install 'moto[server]'",
        )?;
        let port = free_port()?;
        let mut command = Command::new(moto);
        command
            .arg("-H")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(port.to_string());
        let process = ServerProcess::start("moto", command, port, "/moto-api/")?;
        Ok(Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            process,
        })
    }

    /// One server per test process, started on first use.
    pub fn shared() -> Result<&'static Self, &'static Error> {
        static SHARED: OnceLock<Result<Moto, Error>> = OnceLock::new();
        SHARED.get_or_init(Moto::start).as_ref()
    }

    /// [`Moto::shared`], or `None` after printing why `test` is skipped (a panic
    /// instead when `PGWARDEN_REQUIRE_SECRET_SERVERS=1`).
    #[must_use]
    pub fn shared_or_skip(test: &str) -> Option<&'static Self> {
        or_skip("moto (moto_server)", test, Self::shared())
    }

    /// `http://127.0.0.1:<port>`.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.process.port()
    }

    /// The server's output so far (last lines).
    #[must_use]
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// The server's log file.
    #[must_use]
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }
}
