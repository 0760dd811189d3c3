//! `cargo run --example quickstart` exits 0 on a machine with PostgreSQL's server binaries.

mod common;

#[test]
fn quickstart_runs_end_to_end() {
    let out = common::example("quickstart").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "alice: SELECT works",
        "alice: INSERT denied",
        "role dropped: true",
        "alice can no longer log in",
        "audit trail:",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
}
