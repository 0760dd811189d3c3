//! `pgwarden serve` end to end: structured logs on stderr, Prometheus metrics and
//! health over HTTP, and several integrations in one process.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgwarden_testkit::TempCluster;

mod common;

/// A running `pgwarden serve`, its stderr collected line by line; stopped (SIGTERM)
/// when dropped.
struct Serve {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    fn start(args: &[&str]) -> Self {
        let mut child = common::pgwarden()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (pipe, lines) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        });
        Serve { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits until `done` holds, or fails the test after `timeout`, showing stderr.
    fn wait_for(&mut self, what: &str, timeout: Duration, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("serve exited ({status}) before {what}:\n{}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sends SIGTERM and returns the exit code.
    fn stop(&mut self) -> Option<i32> {
        terminate(&self.child);
        let code = self.child.wait().unwrap().code();
        // Let the reader thread take the last lines.
        std::thread::sleep(Duration::from_millis(200));
        code
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            terminate(&self.child);
            let _ = self.child.wait();
        }
    }
}

fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `http://addr{path}`: the status and the body.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut response = agent.get(format!("http://{addr}{path}")).call().ok()?;
    let status = response.status().as_u16();
    Some((status, response.body_mut().read_to_string().ok()?))
}

/// The value of the sample `name{labels}` in a Prometheus text exposition; `labels`
/// lists the pairs it must have (in any order, among others).
fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition.lines().find_map(|line| {
        if line.starts_with('#') {
            return None;
        }
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
        if metric != name {
            return None;
        }
        let wanted = labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        wanted.then(|| value.parse().ok()).flatten()
    })
}

fn grant(target: &[&str], access: &str, ttl: &str, id: &str) -> serde_json::Value {
    let out = common::pgwarden()
        .args(["--format", "json", "grant"])
        .args(target)
        .args([
            "--requester",
            "alice@example.com",
            "--access",
            access,
            "--ttl",
            ttl,
            "--grant-id",
            id,
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn role_exists(c: &TempCluster, name: &str) -> bool {
    c.psql(&format!(
        "SELECT count(*) FROM pg_roles WHERE rolname = '{name}'"
    ))
    .unwrap()
    .trim()
        == "1"
}

#[test]
fn serve_logs_every_expiry_and_exposes_metrics_and_health() {
    let c = TempCluster::builder().start().unwrap();
    c.create_database("app").unwrap();
    c.psql_in("app", "CREATE SCHEMA s1; CREATE TABLE s1.t (id int);")
        .unwrap();
    let dsn = c.dsn();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut serve = Serve::start(&[
        "--log-format",
        "json",
        "serve",
        "--dsn",
        &dsn,
        "--metrics-addr",
        &addr,
    ]);

    serve.wait_for("/readyz to answer 200", Duration::from_secs(60), |_| {
        get(&addr, "/readyz").is_some_and(|(status, _)| status == 200)
    });
    assert_eq!(get(&addr, "/healthz").unwrap().0, 200);
    let labels = [("integration", "cli")];
    let metrics = get(&addr, "/metrics").unwrap().1;
    assert_eq!(
        sample(&metrics, "pgwarden_sweeper_leader", &labels),
        Some(1.0),
        "{metrics}"
    );

    let g = grant(
        &["--dsn", &dsn],
        "postgresql-schema:app/s1=read-only",
        "2s",
        "T-serve",
    );
    let (user, password) = (
        g["username"].as_str().unwrap().to_owned(),
        g["password"].as_str().unwrap().to_owned(),
    );
    let expiry = ("how", "expiry");
    serve.wait_for(
        "the expiry to show in /metrics",
        Duration::from_secs(30),
        |_| {
            get(&addr, "/metrics").is_some_and(|(_, m)| {
                sample(&m, "pgwarden_revocations_total", &[labels[0], expiry]) == Some(1.0)
            })
        },
    );
    assert!(!role_exists(&c, &user), "{user} outlived its expiry");
    let metrics = get(&addr, "/metrics").unwrap().1;
    assert_eq!(
        sample(&metrics, "pgwarden_expiry_lag_seconds_count", &labels),
        Some(1.0),
        "{metrics}"
    );
    let lag = sample(&metrics, "pgwarden_expiry_lag_seconds_sum", &labels).unwrap();
    assert!((0.0..5.0).contains(&lag), "expiry lag {lag}s");
    assert_eq!(
        sample(
            &metrics,
            "pgwarden_revoke_duration_seconds_count",
            &[labels[0], expiry]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metrics.contains("pgwarden_expiry_lag_seconds_bucket{"),
        "a Prometheus histogram: {metrics}"
    );
    serve.wait_for("no live grant", Duration::from_secs(10), |_| {
        get(&addr, "/metrics")
            .is_some_and(|(_, m)| sample(&m, "pgwarden_live_grants", &labels) == Some(0.0))
    });
    assert_eq!(get(&addr, "/readyz").unwrap(), (200, "ready\n".to_owned()));

    assert_eq!(serve.stop(), Some(0), "{}", serve.stderr());
    // The expiry's audit event is one JSON object with its own fields.
    let logs = serve.stderr();
    let event: serde_json::Value = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["action"] == "expire" && e["grant_id"] == "T-serve")
        .unwrap_or_else(|| panic!("no expiry event in:\n{logs}"));
    assert_eq!(event["target"], "pgwarden::audit", "{event}");
    assert_eq!(event["level"], "INFO", "{event}");
    assert_eq!(event["integration"], "cli", "{event}");
    assert_eq!(event["user"], user.as_str(), "{event}");
    assert!(event["duration_seconds"].as_f64().is_some(), "{event}");
    assert!(event["message"].as_str().unwrap().starts_with("revoked: "));
    assert!(!logs.contains(&password), "a password in the logs");
    assert!(
        !logs.contains(c.password()),
        "the connector's password in the logs"
    );
}

/// An integration config in `dir`, reading the connector's credentials from
/// `secret`.
fn write_config(dir: &Path, file: &str, name: &str, port: u16, database: &str, secret: &Path) {
    std::fs::write(
        dir.join(file),
        format!(
            "name = \"{name}\"\nhostname = \"127.0.0.1\"\nport = {port}\ndatabase = \"{database}\"\nssl_mode = \"disable\"\n\n[secret]\nbackend = \"file\"\npath = \"{}\"\n",
            secret.display()
        ),
    )
    .unwrap();
}

#[test]
fn serve_config_dir_runs_every_integration_and_reports_the_broken_ones() {
    let c = TempCluster::builder().start().unwrap();
    for db in ["one", "two"] {
        c.create_database(db).unwrap();
        c.psql_in(db, "CREATE SCHEMA s1;").unwrap();
    }
    let secrets = tempfile::tempdir().unwrap();
    let credentials = secrets.path().join("connector.json");
    std::fs::write(
        &credentials,
        serde_json::json!({"username": c.superuser(), "password": c.password()}).to_string(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "one.toml", "one", c.port(), "one", &credentials);
    write_config(dir.path(), "two.toml", "two", c.port(), "two", &credentials);
    // Invalid, and valid but its instance unreachable; a file that is no config.
    std::fs::write(dir.path().join("broken.yaml"), "name: bad name\nport: 0\n").unwrap();
    write_config(
        dir.path(),
        "unreachable.toml",
        "unreachable",
        free_port(),
        "one",
        &credentials,
    );
    std::fs::write(dir.path().join("notes.txt"), "not a config").unwrap();

    let dir_arg = dir.path().display().to_string();
    let mut serve = Serve::start(&["serve", "--config-dir", &dir_arg]);
    serve.wait_for("both integrations to start", Duration::from_secs(60), |s| {
        let logs = s.stderr();
        logs.contains("one.toml") && logs.contains("two.toml")
    });

    let mut users = Vec::new();
    for name in ["one", "two"] {
        let config = dir.path().join(format!("{name}.toml"));
        let g = grant(
            &["--config", config.to_str().unwrap()],
            &format!("postgresql-schema:{name}/s1=read-only"),
            "2s",
            &format!("T-{name}"),
        );
        users.push(g["username"].as_str().unwrap().to_owned());
    }
    serve.wait_for("both grants to expire", Duration::from_secs(30), |_| {
        users.iter().all(|u| !role_exists(&c, u))
    });
    assert_eq!(serve.stop(), Some(0), "{}", serve.stderr());

    let logs = serve.stderr();
    for (file, problem) in [
        ("broken.yaml", "invalid integration config"),
        ("unreachable.toml", "cannot reach"),
    ] {
        let line = logs
            .lines()
            .find(|l| l.contains(file))
            .unwrap_or_else(|| panic!("{file} not reported:\n{logs}"));
        assert!(line.contains("ERROR"), "{line}");
        assert!(line.contains(problem), "{line}");
    }
    assert!(!logs.contains("notes.txt"), "{logs}");
    for id in ["T-one", "T-two"] {
        assert!(
            logs.lines()
                .any(|l| l.contains("pgwarden::audit") && l.contains(id) && l.contains("expire")),
            "no expiry of {id}:\n{logs}"
        );
    }
    assert!(!logs.contains(c.password()), "a password in the logs");
}

#[test]
fn serve_fails_when_no_config_in_the_directory_can_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.toml"), "name = \"bad name\"\n").unwrap();
    let out = common::pgwarden()
        .args(["serve", "--config-dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("broken.toml"), "{stderr}");
    assert!(
        stderr.contains("none of the 1 integration config(s)"),
        "{stderr}"
    );

    let empty = tempfile::tempdir().unwrap();
    let out = common::pgwarden()
        .args(["serve", "--config-dir", empty.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn a_bad_log_filter_is_a_usage_error() {
    let out = common::pgwarden()
        .args(["--log-level", "pgwarden=[", "conninfo", "host=a"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("pgwarden: --log-level"));
}
