//! `pgwarden check`: connect, and say what this connector can do for pgwarden.

use pgwarden::pg_driver::Preflight;
use serde_json::json;

use crate::output::{Failure, Format, print_json};
use crate::target::Target;

/// Arguments of `pgwarden check`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    target: Target,
}

pub(crate) async fn run(args: &Args, format: Format) -> Result<(), Failure> {
    let (conn, config) = args.target.connect().await?;
    let mode = args.target.connector_mode(config.as_ref());
    let report = Preflight::run(&conn.client, mode).await.map_err(|e| {
        Failure::failed(format!(
            "connected to {} but could not read the server's state: {e}",
            conn.target
        ))
    })?;
    match format {
        Format::Json => print_json(&json!({
            "connected": true,
            "target": conn.target,
            "server_version": report.server_version,
            "server_version_num": report.server_version_num,
            "connector_mode": report.mode,
            "tls": report.tls,
            "role": report.role,
            "preflight": report.capabilities,
        })),
        Format::Text => {
            let tls = if report.tls.enabled {
                format!(
                    "TLS {} {}",
                    report.tls.version.as_deref().unwrap_or("?"),
                    report.tls.cipher.as_deref().unwrap_or("?")
                )
            } else {
                "no TLS".to_owned()
            };
            println!("connected to {} ({tls})", conn.target);
            println!("server: PostgreSQL {}", report.server_version);
            let r = &report.role;
            let flags: Vec<&str> = [
                (r.superuser, "superuser"),
                (r.createrole, "createrole"),
                (r.createdb, "createdb"),
                (r.login, "login"),
                (r.replication, "replication"),
                (r.bypassrls, "bypassrls"),
            ]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
            println!("connector: {} ({})", r.name, flags.join(", "));
            if !r.member_of.is_empty() {
                println!("member of: {}", r.member_of.join(", "));
            }
            println!("preflight (connector_mode {}):", report.mode);
            for c in &report.capabilities {
                println!(
                    "  {} {}: {}",
                    match (c.ok, c.limited) {
                        (false, _) => "FAIL",
                        (true, true) => "LIMIT",
                        (true, false) => "ok  ",
                    },
                    c.key,
                    c.detail
                );
            }
        }
    }
    Ok(())
}
