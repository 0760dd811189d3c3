//! `pgwarden validate`: every problem of a config, at once.

use serde_json::json;

use crate::output::{Failure, Format, print_json};

/// Arguments of `pgwarden validate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The integration config (.toml, .yaml, .yml or .json).
    #[arg(long, value_name = "FILE")]
    config: std::path::PathBuf,
}

pub(crate) fn run(args: &Args, format: Format) -> Result<(), Failure> {
    match pgwarden::load_config(&args.config) {
        Ok(cfg) => {
            match format {
                Format::Json => print_json(&json!({ "valid": true, "config": cfg })),
                Format::Text => println!(
                    "{}: valid — {}:{} database {} sslmode {}{}",
                    cfg.name,
                    cfg.hostname,
                    cfg.port,
                    cfg.database,
                    cfg.ssl_mode,
                    cfg.secret
                        .as_ref()
                        .map(|s| format!(", secret in {}", s.backend()))
                        .unwrap_or_default(),
                ),
            }
            Ok(())
        }
        Err(e @ pgwarden::LoadConfigError::Read { .. }) => Err(Failure::usage(e.to_string())),
        Err(e) => {
            if format == Format::Json {
                let problems: Vec<_> = e
                    .problems()
                    .iter()
                    .map(|p| json!({ "field": p.field, "message": p.message }))
                    .collect();
                print_json(&json!({ "valid": false, "problems": problems }));
            }
            Err(Failure::usage(e.to_string()))
        }
    }
}
