//! Measures the peak resident memory of `pgwarden serve` watching N live grants
//! (default 10,000) on a throwaway PostgreSQL cluster: once with no grant, then with
//! the N grants, each time until its sweeper has read the whole ledger and has swept
//! a few more times.
//!
//! ```text
//! cargo build --release -p pgwarden-cli
//! cargo run --release --example serve_memory -- 10000
//! ```
//!
//! `serve` is the binary at `PGWARDEN_BIN` (default `target/release/pgwarden`). It
//! runs with `--dsn` (integration `cli`) and the ledger key in `PGWARDEN_LEDGER_KEY`;
//! its peak is the kernel's high-water mark (`VmHWM` in `/proc/<pid>/status`).

#[path = "../tests/storm/harness.rs"]
mod harness;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::Storm;
use secrecy::ExposeSecret;
use time::OffsetDateTime;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(10_000, |a| a.parse().expect("the number of grants"));
    let bin = std::env::var("PGWARDEN_BIN").unwrap_or_else(|_| "target/release/pgwarden".into());
    let c = harness::cluster();
    let key = pgwarden::pg_driver::LedgerKey::generate();
    // The connector role `cli` and integration `cli`: what `serve --dsn` manages.
    let storm = Storm::new(&c, "cli", &key).await;
    let dsn = format!(
        "postgresql://cli:cli-pw@127.0.0.1:{}/app?sslmode=disable",
        c.port()
    );
    let key_text = key.to_base64().expose_secret().to_owned();
    println!(
        "PostgreSQL {} on 127.0.0.1:{}; serve: {bin}",
        c.server_major(),
        c.port()
    );

    let idle = peak_while_serving(&bin, &dsn, &key_text, 0);
    println!("serve, no grant:          peak RSS {idle} KiB");

    let made = Instant::now();
    storm
        .grant_until(
            n,
            16,
            OffsetDateTime::now_utc() + time::Duration::minutes(50),
        )
        .await;
    println!("granted {n} (16 at a time) in {:.1?}", made.elapsed());
    let busy = peak_while_serving(&bin, &dsn, &key_text, n);
    println!("serve, {n} live grants: peak RSS {busy} KiB");
}

/// Runs `serve` until its sweeper reports `live` grants, then for three more sweeps'
/// worth of time; its peak resident memory in KiB.
fn peak_while_serving(bin: &str, dsn: &str, key: &str, live: usize) -> u64 {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(bin)
        .args(["serve", "--dsn", dsn, "--metrics-addr", &addr])
        .env("PGWARDEN_LEDGER_KEY", key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin}: {e} (build it: cargo build --release -p pgwarden-cli)"));
    let started = Instant::now();
    let wanted = format!("pgwarden_live_grants{{integration=\"cli\"}} {live}");
    let mut seen = None;
    let mut peak = 0;
    while seen.is_none_or(|at: Instant| at.elapsed() < Duration::from_secs(15)) {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "serve never reported {live} live grants"
        );
        if let Some(status) = child.try_wait().expect("serve's status") {
            panic!("serve exited: {status}");
        }
        peak = peak.max(high_water_kib(&child).unwrap_or(0));
        if seen.is_none() && metrics(&addr).is_some_and(|m| m.lines().any(|l| l == wanted)) {
            seen = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop(&mut child);
    peak
}

/// The `VmHWM` of a running process, in KiB.
fn high_water_kib(child: &Child) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The Prometheus exposition at `http://addr/metrics`.
fn metrics(addr: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
