//! `--config FILE | --dsn CONNINFO`: which instance a subcommand talks to.

use std::path::PathBuf;

use pgwarden::IntegrationConfig;
use pgwarden::core::conninfo::ConnInfo;
use pgwarden::core::credentials::Credentials;
use pgwarden::pg_driver::connect::{ConnectOptions, Connection, Connector};

use crate::output::Failure;

/// The instance to talk to.
#[derive(Debug, clap::Args)]
pub(crate) struct Target {
    /// An integration config (.toml, .yaml, .yml or .json).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "dsn",
        required_unless_present = "dsn"
    )]
    config: Option<PathBuf>,
    /// A libpq connection string; the password comes from it or from PGPASSWORD.
    #[arg(long, value_name = "CONNINFO")]
    dsn: Option<String>,
}

impl Target {
    /// The connection string (libpq's PG* variables fill what it leaves out) and the
    /// integration config when one was given.
    pub(crate) fn resolve(&self) -> Result<(ConnInfo, Option<IntegrationConfig>), Failure> {
        if let Some(dsn) = &self.dsn {
            let info: ConnInfo = dsn
                .parse()
                .map_err(|e| Failure::usage(format!("invalid --dsn: {e}")))?;
            return Ok((info.with_process_env_defaults(), None));
        }
        let path = self
            .config
            .as_ref()
            .ok_or_else(|| Failure::usage("give --config or --dsn"))?;
        let config = pgwarden::load_config(path).map_err(|e| Failure::usage(e.to_string()))?;
        // Until the secret stores are wired in, the connector's credentials come from
        // libpq's variables.
        let credentials = match (std::env::var("PGUSER"), std::env::var("PGPASSWORD")) {
            (Ok(user), Ok(password)) => Some(Credentials::new(user, password)),
            _ => None,
        };
        let info = config.conninfo(credentials.as_ref(), None);
        Ok((info, Some(config)))
    }

    /// Connects as libpq would.
    pub(crate) async fn connect(&self) -> Result<(Connection, Option<IntegrationConfig>), Failure> {
        let (info, config) = self.resolve()?;
        let connector =
            Connector::new(&info, &ConnectOptions::default()).map_err(Failure::from_connect)?;
        let connection = connector.connect().await.map_err(Failure::from_connect)?;
        Ok((connection, config))
    }
}
