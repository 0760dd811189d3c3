//! Helpers shared by the end-to-end tests.

use std::path::PathBuf;
use std::process::Command;

/// An example binary, built by `cargo test` next to the test's own executable, with
/// the caller's `PG*` environment removed so only what a test passes counts.
#[must_use]
pub(crate) fn example(name: &str) -> Command {
    let mut dir: PathBuf = std::env::current_exe().unwrap();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("examples").join(name);
    assert!(
        bin.exists(),
        "{} missing: run through `cargo test`, which builds examples",
        bin.display()
    );
    let mut cmd = Command::new(bin);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("PG")) {
        cmd.env_remove(k);
    }
    cmd
}
