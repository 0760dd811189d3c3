//! Making sure no cluster outlives its test process.
//!
//! Three layers, each covering what the previous one cannot:
//!
//! 1. `Drop` for [`TempCluster`](crate::TempCluster) stops the server (`pg_ctl stop -m
//!    immediate`) and removes the directory. It runs on normal scope exit and while a
//!    panic unwinds.
//! 2. A **watchdog**: a tiny `sh` started with each cluster, in its own process group
//!    (so a terminal's Ctrl-C does not reach it), blocked reading a pipe whose only
//!    writer is the test process. When the test process ends in *any* way — normal
//!    exit with the cluster still in a `static`, `std::process::exit`, a panic with
//!    `panic = "abort"`, SIGKILL from a test runner's timeout — the kernel closes the
//!    pipe, `read` returns, and the watchdog stops the server and removes the
//!    directory. `Drop` disarms it after cleaning up itself.
//! 3. A **reaper**: clusters live under `$TMPDIR/pgwarden-testkit/`, each with an
//!    `owner` file naming the owning process (pid and start time, so a recycled pid is
//!    not mistaken for the owner). The first cluster a process starts sweeps that
//!    directory and removes clusters whose owner is gone (for when even the watchdog
//!    was killed, e.g. a whole container stopped).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, SystemTime};

use crate::Error;
use crate::files::write_file;
use crate::server_user::{ServerUser, without_pg_environment};

/// Directory names of clusters under the base directory start with this.
pub(crate) const CLUSTER_DIR_PREFIX: &str = "cluster-";

/// The marker naming a cluster's owning process.
const OWNER_FILE: &str = "owner";

/// A cluster directory without an owner marker younger than this may be one being
/// created right now; older ones are leftovers of a crash during creation.
const UNMARKED_GRACE: Duration = Duration::from_secs(600);

/// The well-known directory every cluster lives in (`$TMPDIR/pgwarden-testkit`),
/// created world-writable and sticky like `/tmp` so root and normal users can share it.
pub(crate) fn prepare_base_dir() -> Result<PathBuf, Error> {
    let base = std::env::temp_dir().join("pgwarden-testkit");
    match std::fs::create_dir(&base) {
        Ok(()) => std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o1777))
            .map_err(|e| Error::io(format!("making {} shared", base.display()), e))?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(format!("creating {}", base.display()), e)),
    }
    Ok(base)
}

/// Records the current process as the owner of the cluster directory `root`.
pub(crate) fn write_owner_marker(root: &Path) -> Result<(), Error> {
    let me = ProcessIdentity::current();
    write_file(&root.join(OWNER_FILE), &me.to_marker(), 0o644)
}

/// A process identified by pid and start time (clock ticks since boot, from
/// `/proc/<pid>/stat`), so that a recycled pid does not pass for a dead owner.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProcessIdentity {
    pid: u32,
    start_time: Option<u64>,
}

impl ProcessIdentity {
    fn current() -> Self {
        let pid = std::process::id();
        Self {
            pid,
            start_time: start_time_of(pid),
        }
    }

    fn to_marker(&self) -> String {
        match self.start_time {
            Some(start) => format!("{} {start}\n", self.pid),
            None => format!("{} -\n", self.pid),
        }
    }

    fn from_marker(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        let pid = words.next()?.parse().ok()?;
        let start_time = words.next().and_then(|w| w.parse().ok());
        Some(Self { pid, start_time })
    }

    /// Whether this process still runs. Without `/proc` we cannot tell, and say yes:
    /// reaping a live cluster would be far worse than leaking a dead one.
    fn is_alive(&self) -> bool {
        if !Path::new("/proc/self/stat").exists() {
            return true;
        }
        match (start_time_of(self.pid), self.start_time) {
            (None, _) => false,
            (Some(now), Some(recorded)) => now == recorded,
            (Some(_), None) => true,
        }
    }
}

/// Field 22 of `/proc/<pid>/stat`. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its closing parenthesis.
fn start_time_of(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    // after_name starts at field 3 (state); field 22 is the 20th from there.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Whether process `pid` exists and is not a zombie (a zombie has exited; it only
/// waits for its parent, often an init that reaps lazily, to collect its status).
pub(crate) fn process_is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// Waits until process `pid` has exited, for at most `timeout`; says whether it did.
pub(crate) fn wait_for_exit(pid: u32, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while process_is_running(pid) {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Removes clusters whose owning process is gone; runs once per process.
pub(crate) fn reap_stale_clusters(base: &Path, pg_ctl: &Path, server_user: &ServerUser) {
    static REAPED: Once = Once::new();
    REAPED.call_once(|| {
        let Ok(entries) = std::fs::read_dir(base) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let is_cluster = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(CLUSTER_DIR_PREFIX));
            if is_cluster && is_stale(&entry.path()) {
                remove_cluster(&entry.path(), pg_ctl, server_user);
            }
        }
    });
}

fn is_stale(root: &Path) -> bool {
    match std::fs::read_to_string(root.join(OWNER_FILE)) {
        Ok(text) => ProcessIdentity::from_marker(&text).is_none_or(|owner| !owner.is_alive()),
        Err(_) => std::fs::metadata(root)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| SystemTime::now().duration_since(modified).ok())
            .is_some_and(|age| age > UNMARKED_GRACE),
    }
}

/// Best effort: stop a leftover server and delete its directory. Failures (e.g. another
/// user's cluster) are ignored; the next sweep tries again.
fn remove_cluster(root: &Path, pg_ctl: &Path, server_user: &ServerUser) {
    let data_dir = root.join("data");
    if data_dir.join("postmaster.pid").exists() {
        let _ = server_user
            .command(pg_ctl, Path::new("/"))
            .arg("stop")
            .arg("-D")
            .arg(&data_dir)
            .args(["-m", "immediate", "-w", "-t", "10", "-s"])
            .output();
    }
    let _ = std::fs::remove_dir_all(root);
}

/// The script the watchdog runs: wait for the pipe to close, then clean up unless the
/// cluster's owner disarmed it first. SIGINT and SIGHUP are ignored: a terminal's
/// Ctrl-C or hang-up must not kill it before the cleanup.
const WATCHDOG_SCRIPT: &str = r#"trap '' INT HUP
IFS= read -r word
[ "$word" = disarm ] && exit 0
if [ -n "$1" ]; then
  runuser -u "$1" -- "$2" stop -D "$3" -m immediate -w -t 10 -s
else
  "$2" stop -D "$3" -m immediate -w -t 10 -s
fi >/dev/null 2>&1
rm -rf "$4"
"#;

/// Stops the server and removes the cluster directory when the test process ends
/// without doing so itself. Dropping it (rather than [`disarm`](Self::disarm)ing it)
/// triggers the cleanup right away.
#[derive(Debug)]
pub(crate) struct Watchdog {
    child: Child,
    pipe: Option<ChildStdin>,
}

impl Watchdog {
    pub(crate) fn spawn(
        pg_ctl: &Path,
        data_dir: &Path,
        root: &Path,
        server_user: &ServerUser,
    ) -> Result<Self, Error> {
        let run_as = server_user.run_as().map_or("", |u| u.name.as_str());
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("pgwarden-testkit-watchdog")
            .arg(run_as)
            .arg(pg_ctl)
            .arg(data_dir)
            .arg(root)
            .current_dir("/")
            .stdin(Stdio::piped())
            // Holding the test's stdout/stderr would make `cargo test` wait for us.
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        without_pg_environment(&mut command);
        let mut child = command
            .spawn()
            .map_err(|e| Error::io("starting the cleanup watchdog (sh)", e))?;
        let pipe = child.stdin.take();
        Ok(Self { child, pipe })
    }

    /// The owner cleaned up itself: tell the watchdog to exit without doing anything.
    pub(crate) fn disarm(mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(b"disarm\n");
        }
        let _ = self.child.wait();
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Closing the pipe without "disarm" makes the watchdog clean up now. We do not
        // wait for it: its cleanup may take a moment and the caller is already failing.
        self.pipe.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_process_is_alive_and_a_recycled_pid_is_not() {
        let me = ProcessIdentity::current();
        assert!(me.start_time.is_some(), "Linux has /proc/self/stat");
        assert!(me.is_alive());
        let parsed = ProcessIdentity::from_marker(&me.to_marker()).unwrap();
        assert_eq!(parsed, me);
        let recycled = ProcessIdentity {
            pid: me.pid,
            start_time: me.start_time.map(|t| t + 1),
        };
        assert!(!recycled.is_alive());
        let gone = ProcessIdentity {
            pid: u32::MAX - 1,
            start_time: Some(1),
        };
        assert!(!gone.is_alive());
    }

    #[test]
    fn start_time_survives_odd_command_names() {
        // The kernel's own threads have names like "(kworker/0:1)"; pid 1 always exists.
        assert!(start_time_of(1).is_some());
    }
}
