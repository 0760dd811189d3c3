//! Clusters must not outlive their test process, however it ends.
//!
//! These tests run this test binary again as a child (`child_process_entry`, selected
//! by an environment variable) that starts a cluster, reports it on stdout and then
//! either is killed with SIGKILL or exits with the cluster still in a `static`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use pgwarden_testkit::TempCluster;

const CHILD_MODE: &str = "PGWARDEN_TESTKIT_LEAK_TEST_CHILD";

/// The child's side: does nothing in a normal run.
#[test]
fn child_process_entry() {
    let Ok(mode) = std::env::var(CHILD_MODE) else {
        return;
    };
    let cluster = match mode.as_str() {
        "killed" => Box::leak(Box::new(TempCluster::start().unwrap())),
        "static" => TempCluster::shared(),
        other => panic!("unknown child mode {other}"),
    };
    println!(
        "CLUSTER {} {}",
        cluster.postmaster_pid().unwrap(),
        cluster.root_dir().display()
    );
    if mode == "killed" {
        std::thread::sleep(Duration::from_secs(120));
    }
}

struct Reported {
    child: Child,
    /// The rest of the child's stdout, to drain (closing it would fail the child's prints).
    stdout: BufReader<ChildStdout>,
    postmaster: u32,
    root: PathBuf,
}

fn start_child(mode: &str) -> Reported {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_MODE, mode)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 {
        // libtest prints "test child_process_entry ... " on the same line first.
        if let Some((_, rest)) = line.split_once("CLUSTER ") {
            let (pid, root) = rest.split_once(' ').unwrap();
            let root = root.trim_end();
            return Reported {
                child,
                stdout,
                postmaster: pid.parse().unwrap(),
                root: PathBuf::from(root),
            };
        }
        line.clear();
    }
    let status = child.wait().unwrap();
    panic!("the child exited ({status}) without reporting a cluster");
}

fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap()
            .trim_start()
            .starts_with('Z')
    })
}

fn assert_cleaned_up(postmaster: u32, root: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while (is_running(postmaster) || root.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!is_running(postmaster), "postmaster {postmaster} leaked");
    assert!(!root.exists(), "{} leaked", root.display());
}

#[test]
fn a_killed_test_process_leaves_nothing_behind() {
    let mut reported = start_child("killed");
    assert!(is_running(reported.postmaster));
    assert!(reported.root.exists());
    reported.child.kill().unwrap(); // SIGKILL: no destructor, no unwinding
    reported.child.wait().unwrap();
    assert_cleaned_up(reported.postmaster, &reported.root);
}

#[test]
fn a_cluster_in_a_static_is_removed_when_the_process_exits() {
    // A leftover whose owner is long gone: the child's first cluster start reaps it.
    let base = std::env::temp_dir().join("pgwarden-testkit");
    std::fs::create_dir_all(&base).unwrap();
    let stale = base.join(format!("cluster-stale-{}", std::process::id()));
    std::fs::create_dir_all(stale.join("data")).unwrap();
    std::fs::write(stale.join("owner"), "4294967294 1\n").unwrap();

    let mut reported = start_child("static");
    assert!(!stale.exists(), "the stale cluster was not reaped");
    std::io::copy(&mut reported.stdout, &mut std::io::sink()).unwrap();
    assert!(reported.child.wait().unwrap().success());
    assert_cleaned_up(reported.postmaster, &reported.root);
}
