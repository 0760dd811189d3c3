//! The custom secret store example runs.

use std::process::Command;

#[test]
fn custom_secret_store_example_runs() {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let out = Command::new(dir.join("examples").join("custom_secret_store"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("rotated; now at version 3"), "{stdout}");
    assert!(stdout.contains("changed concurrently"), "{stdout}");
    assert!(
        !stdout.contains("second"),
        "a password was printed: {stdout}"
    );
}
