//! Helpers shared by the end-to-end tests.

use std::path::PathBuf;
use std::process::Command;

/// An example binary, built by `cargo test` next to the test's own executable, with
/// the caller's `PG*` environment removed so only what a test passes counts, and
/// `PGWARDEN_LEDGER_KEY` set to the one ledger key of this test binary (its cluster
/// is one instance: every command managing it must seal with the same key).
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
    cmd.env("PGWARDEN_LEDGER_KEY", LEDGER_KEY.as_str());
    cmd
}

/// This test binary's ledger key (base64), fixed for its lifetime.
pub(crate) static LEDGER_KEY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    use secrecy::ExposeSecret;
    pgwarden::pg_driver::LedgerKey::generate()
        .to_base64()
        .expose_secret()
        .to_owned()
});
