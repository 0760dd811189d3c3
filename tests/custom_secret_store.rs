//! The custom secret store example runs.

mod common;

#[test]
fn custom_secret_store_example_runs() {
    let out = common::example("custom_secret_store").output().unwrap();
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
