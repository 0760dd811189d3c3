//! `serve --metrics-addr`: Prometheus metrics on `/metrics`, liveness on `/healthz`,
//! readiness on `/readyz`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use pgwarden::RunMonitor;
use tokio::task::JoinHandle;

use crate::output::Failure;

/// How often the recorder drains what its histograms buffered.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder for the whole process, with pgwarden's metrics
/// described and its histograms bucketed, and keeps it drained.
pub(crate) fn install_recorder() -> Result<PrometheusHandle, Failure> {
    let handle = PrometheusBuilder::new()
        .set_buckets(pgwarden::metrics::HISTOGRAM_BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| Failure::failed(format!("cannot install the metrics recorder: {e}")))?;
    pgwarden::metrics::describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(UPKEEP_INTERVAL).await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// What the endpoints read.
struct Endpoints {
    prometheus: PrometheusHandle,
    /// Each running integration's name and runtime.
    runtimes: Vec<(String, RunMonitor)>,
}

/// Serves the endpoints on `addr` until the returned task is aborted.
pub(crate) async fn serve(
    addr: SocketAddr,
    prometheus: PrometheusHandle,
    runtimes: Vec<(String, RunMonitor)>,
) -> Result<JoinHandle<()>, Failure> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::failed(format!("--metrics-addr {addr}: {e}")))?;
    let state = Arc::new(Endpoints {
        prometheus,
        runtimes,
    });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(state);
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(%addr, error = %e, "the metrics endpoint stopped");
        }
    }))
}

async fn metrics(State(s): State<Arc<Endpoints>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.prometheus.render(),
    )
}

/// 200 when every integration is connected and swept recently, else 503 with one
/// line per integration that is not.
async fn ready(State(s): State<Arc<Endpoints>>) -> (StatusCode, String) {
    let mut unready = String::new();
    for (name, monitor) in &s.runtimes {
        let status = monitor.status();
        if status.is_ready() {
            continue;
        }
        let why = if !status.connected {
            "cannot reach the instance".to_owned()
        } else if let Some(at) = status.last_pass {
            format!("last sweep {:.1}s ago", at.elapsed().as_secs_f64())
        } else {
            "no sweep yet".to_owned()
        };
        let _ = writeln!(unready, "{name}: {why}");
    }
    if unready.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, unready)
    }
}
