//! `pgwarden grant | revoke | extend | list | reconcile`: access on an instance.

use pgwarden::core::access_details::AccessDetailsValues;
use pgwarden::core::config::UserMode;
use pgwarden::core::duration::Ttl;
use pgwarden::core::resource::AccessEntry;
use pgwarden::pg_driver::{
    ConnectOptions, Connector, Expiry, GrantRequest, ProvisionError, Provisioner, ProvisionerConfig,
};

use crate::output::{Failure, Format, GrantOutput, print_json, rfc3339};
use crate::target::Target;

/// Arguments of `pgwarden grant`.
#[derive(Debug, clap::Args)]
pub(crate) struct GrantArgs {
    #[command(flatten)]
    target: Target,
    /// Who asks (an identity-provider user id or email).
    #[arg(long)]
    requester: String,
    /// `<resource-id>=<level>`, e.g. `postgresql-schema:app/s1=read-only`; repeat for more.
    #[arg(long = "access", required = true, value_name = "RESOURCE=LEVEL")]
    access: Vec<String>,
    /// How long: 90s, 15m, 8h, 7d (at most the integration's `max_ttl`).
    #[arg(long, value_name = "DURATION")]
    ttl: String,
    /// The grant's id (granting the same id again returns the existing grant).
    #[arg(long, value_name = "ID")]
    grant_id: Option<String>,
}

/// Arguments naming one grant.
#[derive(Debug, clap::Args)]
pub(crate) struct GrantIdArgs {
    #[command(flatten)]
    target: Target,
    /// The grant's id.
    #[arg(long = "grant", value_name = "ID")]
    grant_id: String,
}

/// Arguments of `pgwarden extend`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExtendArgs {
    #[command(flatten)]
    grant: GrantIdArgs,
    /// The new duration, from now.
    #[arg(long, value_name = "DURATION")]
    ttl: String,
}

/// Arguments of `pgwarden list` and `pgwarden reconcile`.
#[derive(Debug, clap::Args)]
pub(crate) struct TargetArgs {
    #[command(flatten)]
    target: Target,
}

fn ttl(text: &str) -> Result<Ttl, Failure> {
    text.parse()
        .map_err(|e| Failure::usage(format!("--ttl: {e}")))
}

fn failed(e: ProvisionError) -> Failure {
    match e {
        ProvisionError::InvalidRequest(_)
        | ProvisionError::UnknownGrant { .. }
        | ProvisionError::Privilege(_) => Failure::usage(e.to_string()),
        ProvisionError::Connect(c) => Failure::from_connect(c),
        other => Failure::failed(other.to_string()),
    }
}

struct Session {
    provisioner: Provisioner,
    config: Option<pgwarden::IntegrationConfig>,
    host: String,
    port: u16,
    database: String,
}

async fn session(target: &Target) -> Result<Session, Failure> {
    let (info, config) = target.resolve_async().await?;
    let connector =
        Connector::new(&info, &ConnectOptions::default()).map_err(Failure::from_connect)?;
    let ledger_key = target.ledger_key(config.as_ref()).await?;
    let mut settings = match &config {
        Some(c) => ProvisionerConfig::from_integration(c, ledger_key),
        None => ProvisionerConfig {
            integration: "cli".into(),
            username_prefix: "pgw_".into(),
            user_mode: UserMode::Ephemeral,
            max_ttl: Ttl::from_secs(7 * 86_400)
                .unwrap_or(pgwarden::core::duration::MAX_TTL_CEILING),
            scram_iterations: pgwarden::pg_driver::ScramIterations::DEFAULT,
            password_max_age: None,
            successor: None,
            pool_size: 4,
            connector_mode: pgwarden::core::config::ConnectorMode::Superuser,
            sensitive_roles_allowed: Vec::new(),
            cleanup_lock_timeout: pgwarden::pg_driver::DEFAULT_CLEANUP_LOCK_TIMEOUT,
            ledger_key,
        },
    };
    settings.connector_mode = target.connector_mode(config.as_ref());
    let first = info.hosts().ok().and_then(|h| h.into_iter().next());
    let host = first
        .as_ref()
        .and_then(|h| h.host.clone().or_else(|| h.hostaddr.clone()))
        .unwrap_or_default();
    let port = first.map_or(5432, |h| h.port);
    let database = connector.database().to_owned();
    let provisioner = Provisioner::new(connector, settings).map_err(failed)?;
    Ok(Session {
        provisioner,
        config,
        host,
        port,
        database,
    })
}

pub(crate) async fn grant(args: &GrantArgs, format: Format) -> Result<(), Failure> {
    let access = args
        .access
        .iter()
        .map(|a| {
            a.parse::<AccessEntry>()
                .map_err(|e| Failure::usage(format!("--access {a}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ttl = ttl(&args.ttl)?;
    let s = session(&args.target).await?;
    let g = s
        .provisioner
        .grant(GrantRequest {
            grant_id: args.grant_id.clone(),
            requester: args.requester.clone(),
            access,
            expiry: Expiry::After(ttl),
            user_mode: None,
            session: s
                .config
                .as_ref()
                .map(|c| c.session.clone())
                .unwrap_or_default(),
        })
        .await
        .map_err(failed)?;
    let access_details = s
        .config
        .as_ref()
        .and_then(|c| c.custom_access_details.as_ref())
        .map(|t| {
            t.render(&AccessDetailsValues {
                hostname: s.host.clone(),
                port: s.port,
                database: s.database.clone(),
                username: g.username.clone(),
                expires_at: rfc3339(g.expires_at),
                integration: s
                    .config
                    .as_ref()
                    .map(|c| c.name.clone())
                    .unwrap_or_default(),
            })
        });
    let output = GrantOutput {
        grant_id: &g.grant_id,
        requester: &args.requester,
        username: &g.username,
        expires_at: g.expires_at,
        password: g.password.as_ref(),
        access_details: access_details.as_deref(),
        created: g.created,
    };
    match format {
        Format::Json => print_json(&output.json()),
        Format::Text => output.print_text(),
    }
    Ok(())
}

pub(crate) async fn revoke(args: &GrantIdArgs, format: Format) -> Result<(), Failure> {
    let s = session(&args.target).await?;
    let report = s.provisioner.revoke(&args.grant_id).await.map_err(failed)?;
    match format {
        Format::Json => print_json(&serde_json::to_value(&report).unwrap_or_default()),
        Format::Text if report.already_revoked => {
            println!("grant {}: nothing left to revoke", report.grant_id);
        }
        Format::Text => {
            println!(
                "revoked grant {} ({}): {} session(s) ended, memberships removed: {}",
                report.grant_id,
                report.username.as_deref().unwrap_or("?"),
                report.sessions_terminated,
                report.memberships_removed.join(", ")
            );
            for d in &report.databases {
                println!(
                    "  {}: {} object(s) dropped, {} reassigned, {} privilege entries removed",
                    d.database, d.objects_dropped, d.objects_reassigned, d.privileges_revoked
                );
            }
            println!(
                "  role {}",
                if report.role_dropped {
                    "dropped"
                } else {
                    "kept (persistent), login disabled"
                }
            );
        }
    }
    Ok(())
}

pub(crate) async fn extend(args: &ExtendArgs, format: Format) -> Result<(), Failure> {
    let ttl = ttl(&args.ttl)?;
    let s = session(&args.grant.target).await?;
    let g = s
        .provisioner
        .extend(&args.grant.grant_id, Expiry::After(ttl))
        .await
        .map_err(failed)?;
    match format {
        Format::Json => print_json(&serde_json::to_value(&g).unwrap_or_default()),
        Format::Text => println!("grant {} now ends at {}", g.grant_id, g.expires_at),
    }
    Ok(())
}

pub(crate) async fn list(args: &TargetArgs, format: Format) -> Result<(), Failure> {
    let s = session(&args.target).await?;
    let grants = s.provisioner.list().await.map_err(failed)?;
    match format {
        Format::Json => print_json(&serde_json::to_value(&grants).unwrap_or_default()),
        Format::Text => {
            for g in &grants {
                let access: Vec<String> = g.access.iter().map(ToString::to_string).collect();
                println!(
                    "{} {:?} {} ({}) until {}: {}",
                    g.grant_id,
                    g.state,
                    g.username,
                    g.requester,
                    g.expires_at,
                    access.join(" ")
                );
            }
        }
    }
    Ok(())
}

pub(crate) async fn adopt_ledger(args: &TargetArgs, format: Format) -> Result<(), Failure> {
    let s = session(&args.target).await?;
    let report = s
        .provisioner
        .adopt_unsealed_ledger()
        .await
        .map_err(failed)?;
    match format {
        Format::Json => print_json(&serde_json::to_value(&report).unwrap_or_default()),
        Format::Text => {
            println!(
                "sealed {} login role record(s) and {} privilege role record(s){}; {} already sealed",
                report.login_roles.len(),
                report.privilege_roles.len(),
                if report.marker {
                    " and the marker's"
                } else {
                    ""
                },
                report.already_sealed
            );
            for l in &report.left {
                println!("  left alone: {l}");
            }
        }
    }
    Ok(())
}

pub(crate) async fn reconcile(args: &TargetArgs, format: Format) -> Result<(), Failure> {
    let s = session(&args.target).await?;
    let report = s.provisioner.reconcile().await.map_err(failed)?;
    match format {
        Format::Json => print_json(&serde_json::to_value(&report).unwrap_or_default()),
        Format::Text => {
            println!(
                "revoked {} grant(s); dropped {} and refreshed {} privilege role(s); {} drift finding(s); {} error(s)",
                report.revoked.len(),
                report.privilege_roles_dropped.len(),
                report.privilege_roles_refreshed.len(),
                report.drift.len(),
                report.errors.len()
            );
            for d in &report.drift {
                println!("  drift: {}: {}", d.username, d.what);
            }
            for u in &report.made_findable_by_id {
                println!("  made findable by its grant id (made by an earlier pgwarden): {u}");
            }
            for e in &report.errors {
                println!("  error: {e}");
            }
        }
    }
    if report.errors.is_empty() {
        Ok(())
    } else {
        Err(Failure::failed(
            "reconcile left work for the next run (see errors above)",
        ))
    }
}
