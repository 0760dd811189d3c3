//! `pgwarden approvers | rotate`: the integration runtime from the shell.

use pgwarden::IntegrationOptions;
use pgwarden::core::resource::ResourceId;

use crate::output::{Failure, Format, print_json};
use crate::target::Target;

/// Arguments of `pgwarden approvers`.
#[derive(Debug, clap::Args)]
pub(crate) struct ApproversArgs {
    #[command(flatten)]
    target: Target,
    /// The resource, e.g. `postgresql-table:app/s1/orders`.
    #[arg(long, value_name = "ID")]
    resource: String,
}

/// Arguments of `pgwarden rotate`.
#[derive(Debug, clap::Args)]
pub(crate) struct RuntimeArgs {
    #[command(flatten)]
    target: Target,
}

#[allow(clippy::needless_pass_by_value, reason = "used as map_err(failed)")]
fn failed(e: pgwarden::IntegrationError) -> Failure {
    Failure::failed(e.to_string())
}

pub(crate) async fn approvers(args: &ApproversArgs, format: Format) -> Result<(), Failure> {
    let resource: ResourceId = args
        .resource
        .parse()
        .map_err(|e| Failure::usage(format!("--resource: {e}")))?;
    let integration = args
        .target
        .integration(IntegrationOptions::default(), false)
        .await?;
    let r = integration.approvers(&resource).await.map_err(failed)?;
    match format {
        Format::Json => print_json(&serde_json::to_value(&r).unwrap_or_default()),
        Format::Text => {
            if r.approvers.is_empty() {
                println!(
                    "nobody can approve access to {resource}: configure [[integration_owners]]"
                );
            }
            for a in &r.approvers {
                println!("{}:{}:{}", a.source, a.attribute, a.value);
            }
            println!(
                "why: {}",
                serde_json::to_string(&r.reason).unwrap_or_default()
            );
            for u in &r.unknown {
                println!("unknown to the directory: {u}");
            }
        }
    }
    Ok(())
}

pub(crate) async fn rotate(args: &RuntimeArgs, format: Format) -> Result<(), Failure> {
    let integration = args
        .target
        .integration(IntegrationOptions::default(), false)
        .await?;
    if integration.config().secret.is_none() {
        return Err(Failure::usage(
            "rotate needs --config with a [secret] store: the new password must be kept somewhere",
        ));
    }
    let report = integration.rotate_credentials().await.map_err(failed)?;
    match format {
        Format::Json => print_json(&serde_json::to_value(&report).unwrap_or_default()),
        Format::Text => println!(
            "rotated the password of {} at {}",
            report.username, report.rotated_at
        ),
    }
    Ok(())
}
