//! `pgwarden flows validate`: check access flows (a file or a directory of them)
//! without a server, listing every problem at once.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;

use pgwarden::core::config::ConfigError;
use pgwarden::core::flows::{AccessFlow, FlowSet};
use serde_json::json;

use crate::output::{Failure, Format, print_json};

/// Arguments of `pgwarden flows`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Load a flow file, or every .toml/.yaml/.yml/.json file of a directory, and list
    /// every problem (exit 2) or summarize each flow (exit 0). Needs no server.
    Validate(ValidateArgs),
}

/// Arguments of `pgwarden flows validate`.
#[derive(Debug, clap::Args)]
struct ValidateArgs {
    /// A flow file (.toml, .yaml, .yml, .json) or a directory of flow files.
    #[arg(value_name = "PATH")]
    path: PathBuf,
}

pub(crate) fn run(args: &Args, format: Format) -> Result<(), Failure> {
    match &args.command {
        Command::Validate(a) => validate(a, format),
    }
}

fn validate(args: &ValidateArgs, format: Format) -> Result<(), Failure> {
    if !args.path.exists() {
        return Err(Failure::usage(format!(
            "{}: no such file or directory: name a flow file or a directory of flow files",
            args.path.display()
        )));
    }
    match FlowSet::load(&args.path) {
        Ok(flows) => {
            match format {
                Format::Json => print_json(&json!({
                    "valid": true,
                    "flows": flows.iter().map(summary_json).collect::<Vec<_>>(),
                })),
                Format::Text => print_summary(&args.path, &flows),
            }
            Ok(())
        }
        Err(e) => Err(invalid(&args.path, &e, format)),
    }
}

/// Every problem of `e`: on stdout as JSON (`--format json`); as the error message
/// (stderr) in both formats. Exit 2.
fn invalid(path: &std::path::Path, e: &ConfigError, format: Format) -> Failure {
    let problems = e.problems();
    if format == Format::Json {
        print_json(&json!({
            "valid": false,
            "problems": problems
                .iter()
                .map(|p| json!({ "field": p.field, "message": p.message }))
                .collect::<Vec<_>>(),
        }));
    }
    let mut message = format!(
        "{}: {} problem{} in the access flows:",
        path.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in &problems {
        let _ = write!(message, "\n  - {p}");
    }
    Failure::usage(message)
}

/// The integrations a flow's targets name, sorted and unique.
fn integrations(flow: &AccessFlow) -> Vec<&str> {
    flow.access_targets
        .iter()
        .map(|t| t.integration.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn summary_json(flow: &AccessFlow) -> serde_json::Value {
    json!({
        "name": flow.name,
        "active": flow.active,
        "trigger": flow.trigger,
        "integrations": integrations(flow),
        "grant_duration": flow.grant_duration.to_string(),
        "approval_required": flow.approval_required(),
        "flow": flow,
    })
}

fn print_summary(path: &std::path::Path, flows: &FlowSet) {
    println!(
        "{}: valid — {} flow{}",
        path.display(),
        flows.len(),
        if flows.len() == 1 { "" } else { "s" }
    );
    for f in flows {
        println!(
            "  {}{}: {}, integrations {}, up to {}, {}",
            f.name,
            if f.active { "" } else { " (inactive)" },
            f.trigger,
            integrations(f).join(", "),
            f.grant_duration,
            if f.approval_required() {
                "approval required"
            } else {
                "no approval"
            }
        );
    }
}
