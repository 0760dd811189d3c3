//! What the library records through the `metrics` facade, read back as Prometheus
//! renders it: grants, failures, revocations by how, durations, expiry lag, live
//! grants, the sweeper's leadership.

use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use pgwarden::core::config::{ConfigFormat, IntegrationConfig};
use pgwarden::core::credentials::Credentials;
use pgwarden::secrets::{InMemory, PutOptions, SecretKey, SecretStoreExt};
use pgwarden::{AccessRequest, Integration, IntegrationOptions, RecordingAuditSink};
use pgwarden_testkit::TempCluster;

/// The value of the sample `name{labels}`; `labels` lists pairs it must have.
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

fn request(grant_id: &str, duration: &str) -> AccessRequest {
    AccessRequest::new(
        "alice@example.com",
        ["postgresql-schema:app/s1=read-only".parse().unwrap()],
        duration.parse().unwrap(),
    )
    .grant_id(grant_id)
}

async fn wait_for(
    what: &str,
    prometheus: &PrometheusHandle,
    mut done: impl FnMut(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rendered = prometheus.render();
        if done(&rendered) {
            return rendered;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{rendered}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An integration named `metered` on `c`, whose database `app` has schema `s1`.
async fn integration(c: &TempCluster) -> Arc<Integration> {
    c.create_database("app").unwrap();
    c.psql_in("app", "CREATE SCHEMA s1;").unwrap();
    let config = IntegrationConfig::parse(
        &format!(
            "name = \"metered\"\nhostname = \"127.0.0.1\"\nport = {}\nssl_mode = \"disable\"\nmax_ttl = \"1h\"\n",
            c.port()
        ),
        ConfigFormat::Toml,
    )
    .unwrap();
    let store = Arc::new(InMemory::new());
    let key = SecretKey::new("connector");
    store
        .put_credentials(
            &key,
            &Credentials::new(c.superuser(), c.password()),
            PutOptions::create(),
        )
        .await
        .unwrap();
    let options = IntegrationOptions {
        secret_key: Some(key),
        audit: Arc::new(RecordingAuditSink::new()),
        sweep_interval: Duration::from_millis(200),
        ..IntegrationOptions::default()
    };
    Integration::connect(config, store, options).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_revocations_failures_and_expiry_are_recorded() {
    let prometheus = PrometheusBuilder::new()
        .set_buckets(pgwarden::metrics::HISTOGRAM_BUCKETS)
        .unwrap()
        .install_recorder()
        .unwrap();
    pgwarden::metrics::describe();
    let c = TempCluster::builder().start().unwrap();
    let integration = integration(&c).await;
    let labels = [("integration", "metered")];

    // A grant, then one over max_ttl, then a revocation on request.
    integration.grant(request("M-1", "10m")).await.unwrap();
    integration.grant(request("M-2", "2h")).await.unwrap_err();
    integration.revoke("M-1").await.unwrap();
    // One that expires while nothing runs: reconcile revokes it.
    integration.grant(request("M-3", "1s")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    integration.reconcile().await.unwrap();

    let m = prometheus.render();
    assert_eq!(
        sample(&m, "pgwarden_grants_total", &labels),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "pgwarden_grant_duration_seconds_count", &labels),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "pgwarden_failures_total",
            &[labels[0], ("reason", "grant"), ("kind", "invalid_request")]
        ),
        Some(1.0),
        "{m}"
    );
    for how in ["revoke", "reconcile"] {
        assert_eq!(
            sample(&m, "pgwarden_revocations_total", &[labels[0], ("how", how)]),
            Some(1.0),
            "{how}: {m}"
        );
    }
    assert_eq!(
        sample(
            &m,
            "pgwarden_revoke_duration_seconds_count",
            &[labels[0], ("how", "revoke")]
        ),
        Some(1.0),
        "{m}"
    );
    assert!(
        m.contains("# HELP pgwarden_grants_total Grants made."),
        "{m}"
    );

    // The runtime: leadership, live grants, and a grant revoked at its expiry.
    let runtime = integration.run();
    integration.grant(request("M-4", "2s")).await.unwrap();
    wait_for("the sweeper to lead and see the grant", &prometheus, |m| {
        sample(m, "pgwarden_sweeper_leader", &labels) == Some(1.0)
            && sample(m, "pgwarden_live_grants", &labels) == Some(1.0)
    })
    .await;
    assert!(runtime.status().sweeper);
    assert!(runtime.status().is_ready());
    let m = wait_for("the expiry", &prometheus, |m| {
        sample(
            m,
            "pgwarden_revocations_total",
            &[labels[0], ("how", "expiry")],
        ) == Some(1.0)
    })
    .await;
    assert_eq!(
        sample(&m, "pgwarden_expiry_lag_seconds_count", &labels),
        Some(1.0),
        "{m}"
    );
    let lag = sample(&m, "pgwarden_expiry_lag_seconds_sum", &labels).unwrap();
    assert!((0.0..2.0).contains(&lag), "expiry lag {lag}s");
    let monitor = runtime.monitor();
    runtime.shutdown().await;
    assert!(!monitor.status().sweeper);
    assert_eq!(
        sample(&prometheus.render(), "pgwarden_sweeper_leader", &labels),
        Some(0.0)
    );
}
