//! Helpers shared by the command-line tests.

use std::process::Command;

/// The `pgwarden` binary cargo built for these tests, with the caller's `PG*` and
/// `RUST_LOG` environment removed so only what a test passes counts, and
/// `PGWARDEN_LEDGER_KEY` set to the one ledger key of this test binary (its cluster
/// is one instance: every command managing it must seal with the same key).
#[must_use]
pub(crate) fn pgwarden() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgwarden"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("PG") || k == "RUST_LOG") {
        cmd.env_remove(k);
    }
    cmd.env("PGWARDEN_LEDGER_KEY", LEDGER_KEY.as_str());
    cmd
}

/// This test binary's ledger key (base64), fixed for its lifetime.
pub(crate) static LEDGER_KEY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    use pgwarden::ExposeSecret;
    pgwarden::pg_driver::LedgerKey::generate()
        .to_base64()
        .expose_secret()
        .to_owned()
});
