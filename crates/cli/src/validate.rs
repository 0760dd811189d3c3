//! `pgwarden validate`: every problem of a config, at once.

use pgwarden::core::config::ConfigProblem;
use pgwarden::core::flows::FlowSet;
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
            let flow_problems = flow_problems(&cfg);
            if !flow_problems.is_empty() {
                return Err(report(&cfg.name, &flow_problems, format));
            }
            match format {
                Format::Json => print_json(&json!({ "valid": true, "config": cfg })),
                Format::Text => {
                    println!(
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
                    );
                    if let Some(a) = &cfg.access_requests {
                        println!("  access flows: {} (valid for {})", a.flows, cfg.name);
                    }
                }
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

/// The problems of the flows an `[access_requests]` table names, for this
/// integration: those of the files, else what does not fit the integration.
fn flow_problems(cfg: &pgwarden::IntegrationConfig) -> Vec<ConfigProblem> {
    let Some(settings) = &cfg.access_requests else {
        return Vec::new();
    };
    let problems = match FlowSet::load(&settings.flows) {
        Ok(flows) => flows.problems_for(&cfg.name, cfg.max_ttl),
        Err(e) => e.problems(),
    };
    problems
        .into_iter()
        .map(|p| {
            let field = if p.field.is_empty() {
                settings.flows.clone()
            } else {
                format!("{}: {}", settings.flows, p.field)
            };
            ConfigProblem::new(format!("access_requests.flows: {field}"), p.message)
        })
        .collect()
}

/// Reports `problems` of config `name` and returns the usage failure.
fn report(name: &str, problems: &[ConfigProblem], format: Format) -> Failure {
    if format == Format::Json {
        let list: Vec<_> = problems
            .iter()
            .map(|p| json!({ "field": p.field, "message": p.message }))
            .collect();
        print_json(&json!({ "valid": false, "problems": list }));
    }
    let lines: Vec<String> = problems
        .iter()
        .map(|p| format!("  {}: {}", p.field, p.message))
        .collect();
    Failure::usage(format!(
        "invalid integration config {name}: {} problem(s) in its access flows\n{}",
        problems.len(),
        lines.join("\n")
    ))
}
