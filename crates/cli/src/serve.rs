//! `pgwarden serve`: expiry, rotation and reconciliation until Ctrl-C or SIGTERM, for
//! one integration or for every integration config in a directory.
//!
//! With `--config-dir`, each config file (`*.toml`, `*.yaml`, `*.yml`, `*.json`) gets
//! a runtime of its own: its own pools, its own sweeper lock. A file that cannot start
//! (invalid, its secret store or instance unreachable) is logged as an error naming
//! the file, and the others run; `serve` fails only when none can start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgwarden::core::config::ConnectorMode;
use pgwarden::{Integration, IntegrationOptions, RunHandle};
use tokio::task::JoinSet;

use crate::endpoints;
use crate::output::Failure;
use crate::target::Target;

/// Arguments of `pgwarden serve`.
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("instances")
        .required(true)
        .args(["config", "dsn", "config_dir"])
))]
pub(crate) struct Args {
    /// An integration config (.toml, .yaml, .yml or .json); the connector's
    /// credentials come from its `[secret]` store.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A libpq connection string; the password comes from it or from PGPASSWORD.
    #[arg(long, value_name = "CONNINFO")]
    dsn: Option<String>,
    /// A directory of integration configs (*.toml, *.yaml, *.yml, *.json): one runtime
    /// each; a config that cannot start is reported and the others run.
    #[arg(long, value_name = "DIR")]
    config_dir: Option<PathBuf>,
    /// `superuser` or `createrole` (managed clouds); overrides each config's
    /// `connector_mode` (default: the config's, else superuser).
    #[arg(long, value_name = "MODE")]
    connector_mode: Option<ConnectorMode>,
    /// Serve Prometheus metrics on `/metrics`, and `/healthz` and `/readyz`, at this
    /// address (e.g. 127.0.0.1:9187).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
}

/// One integration being served.
struct Served {
    integration: Arc<Integration>,
    runtime: RunHandle,
    /// Following access requests to their grants' ends (`[access_requests]`).
    requests: Option<tokio::task::JoinHandle<()>>,
}

pub(crate) async fn run(args: &Args) -> Result<(), Failure> {
    // Installed first, so that what happens while connecting is counted too.
    let prometheus = args
        .metrics_addr
        .map(|_| endpoints::install_recorder())
        .transpose()?;
    let integrations = if let Some(dir) = &args.config_dir {
        start_dir(dir, args.connector_mode).await?
    } else {
        let target = Target::new(args.config.clone(), args.dsn.clone(), args.connector_mode);
        vec![
            target
                .integration(IntegrationOptions::default(), true)
                .await?,
        ]
    };
    let mut served = Vec::new();
    for integration in integrations {
        let requests = follow_requests(&integration).await;
        served.push(Served {
            runtime: integration.run(),
            integration,
            requests,
        });
    }
    let endpoints = match (args.metrics_addr, prometheus) {
        (Some(addr), Some(prometheus)) => {
            let runtimes = served
                .iter()
                .map(|s| (s.integration.config().name.clone(), s.runtime.monitor()))
                .collect();
            match endpoints::serve(addr, prometheus, runtimes).await {
                Ok(task) => Some(task),
                Err(failure) => {
                    stop(served).await;
                    return Err(failure);
                }
            }
        }
        _ => None,
    };
    for s in &served {
        tracing::info!(integration = %s.integration.config().name, "serving (expiry, rotation, reconciliation); Ctrl-C or SIGTERM stops");
    }
    let waited = signalled().await;
    tracing::info!("stopping");
    if let Some(task) = endpoints {
        task.abort();
    }
    stop(served).await;
    waited
}

/// Waits for Ctrl-C or SIGTERM.
async fn signalled() -> Result<(), Failure> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Failure::failed(format!("cannot listen for SIGTERM: {e}")))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

async fn stop(served: Vec<Served>) {
    for s in served {
        if let Some(task) = s.requests {
            task.abort();
        }
        s.runtime.shutdown().await;
    }
}

/// For an integration with `[access_requests]`: keeps its requests in step with their
/// grants (approved ones granted after a crash, ended ones expired or revoked). A
/// request store that cannot open is logged; expiry and the rest still run.
async fn follow_requests(integration: &Arc<Integration>) -> Option<tokio::task::JoinHandle<()>> {
    integration.config().access_requests.as_ref()?;
    match pgwarden::AccessRequests::from_integration(integration.clone()).await {
        Ok(requests) => Some(requests.spawn_sync(std::time::Duration::from_secs(5))),
        Err(e) => {
            tracing::error!(integration = %integration.config().name, error = %e, "access requests not followed");
            None
        }
    }
}

/// Whether `path` names a config file by its extension.
fn is_config(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "toml" | "yaml" | "yml" | "json"))
}

/// Connects every config in `dir`, at once; logs those that cannot start.
async fn start_dir(
    dir: &Path,
    connector_mode: Option<ConnectorMode>,
) -> Result<Vec<Arc<Integration>>, Failure> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Failure::usage(format!("--config-dir {}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_config(p))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Failure::usage(format!(
            "--config-dir {}: no integration config (*.toml, *.yaml, *.yml, *.json) in it",
            dir.display()
        )));
    }
    let mut starting = JoinSet::new();
    for (i, file) in files.iter().enumerate() {
        let target = Target::new(Some(file.clone()), None, connector_mode);
        starting.spawn(async move {
            (
                i,
                target
                    .integration(IntegrationOptions::default(), true)
                    .await,
            )
        });
    }
    let mut started: Vec<(usize, Result<Arc<Integration>, Failure>)> = starting.join_all().await;
    started.sort_by_key(|(i, _)| *i);
    let mut running: Vec<Arc<Integration>> = Vec::new();
    for (i, result) in started {
        let file = files[i].display();
        match result {
            Ok(integration) => {
                let name = &integration.config().name;
                if running.iter().any(|r| r.config().name == *name) {
                    // One name, one sweeper lock and one set of metrics: the first wins.
                    tracing::error!(file = %file, integration = %name, "not started: another config in the directory has the same integration name");
                } else {
                    tracing::info!(file = %file, integration = %name, "started");
                    running.push(integration);
                }
            }
            Err(failure) => {
                // One line: a config's problems come one per line.
                let error = failure
                    .message()
                    .lines()
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" ");
                tracing::error!(file = %file, error = %error, "cannot start this integration; serving the others");
            }
        }
    }
    if running.is_empty() {
        return Err(Failure::failed(format!(
            "none of the {} integration config(s) in {} could start (see the errors above)",
            files.len(),
            dir.display()
        )));
    }
    Ok(running)
}
