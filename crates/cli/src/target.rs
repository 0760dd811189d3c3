//! `--config FILE | --dsn CONNINFO`: which instance a subcommand talks to.

use std::path::PathBuf;

use pgwarden::IntegrationConfig;
use pgwarden::core::config::SecretRef;
use pgwarden::core::conninfo::ConnInfo;
use pgwarden::core::credentials::Credentials;
use pgwarden::pg_driver::{ConnectOptions, Connection, Connector, LedgerKey};
use pgwarden::secrets::{Error as SecretError, SecretStoreExt};
use pgwarden::secrets::{InMemory, PutOptions, SecretKey};

use crate::output::Failure;

/// The instance to talk to.
#[derive(Debug, clap::Args)]
pub(crate) struct Target {
    /// An integration config (.toml, .yaml, .yml or .json); the connector's credentials
    /// come from its `[secret]` store (or PGUSER/PGPASSWORD when it has none).
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
    /// `superuser` or `createrole` (managed clouds); overrides the config's
    /// `connector_mode` (default: the config's, else superuser).
    #[arg(long, value_name = "MODE")]
    connector_mode: Option<pgwarden::core::config::ConnectorMode>,
}

impl Target {
    /// A target from its parts, for commands that take more than one kind of target.
    pub(crate) fn new(
        config: Option<PathBuf>,
        dsn: Option<String>,
        connector_mode: Option<pgwarden::core::config::ConnectorMode>,
    ) -> Self {
        Target {
            config,
            dsn,
            connector_mode,
        }
    }

    /// The connector mode: `--connector-mode`, else the config's, else superuser.
    pub(crate) fn connector_mode(
        &self,
        config: Option<&IntegrationConfig>,
    ) -> pgwarden::core::config::ConnectorMode {
        self.connector_mode
            .or_else(|| config.map(|c| c.connector_mode))
            .unwrap_or_default()
    }

    /// The connection string (libpq's PG* variables fill what it leaves out) and the
    /// integration config when one was given.
    ///
    /// Synchronous for callers outside an async context or inside one: reading the
    /// `[secret]` store runs on a short-lived thread with its own runtime.
    pub(crate) fn resolve(&self) -> Result<(ConnInfo, Option<IntegrationConfig>), Failure> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| {
                            Failure::failed(format!("cannot start the async runtime: {e}"))
                        })?
                        .block_on(self.resolve_async())
                })
                .join()
                .unwrap_or_else(|_| {
                    Err(Failure::failed(
                        "reading the connector's credentials panicked",
                    ))
                })
        })
    }

    /// [`Target::resolve`], async. With `--config`, the connector's credentials come
    /// from the integration's `[secret]` store; without one, from PGUSER/PGPASSWORD.
    pub(crate) async fn resolve_async(
        &self,
    ) -> Result<(ConnInfo, Option<IntegrationConfig>), Failure> {
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
        let credentials = match &config.secret {
            Some(secret) => Some(read_secret(secret).await?),
            None => match (std::env::var("PGUSER"), std::env::var("PGPASSWORD")) {
                (Ok(user), Ok(password)) => Some(Credentials::new(user, password)),
                _ => None,
            },
        };
        let info = config.conninfo(credentials.as_ref(), None);
        Ok((info, Some(config)))
    }

    /// Connects as libpq would.
    pub(crate) async fn connect(&self) -> Result<(Connection, Option<IntegrationConfig>), Failure> {
        let (info, config) = self.resolve_async().await?;
        let connector =
            Connector::new(&info, &ConnectOptions::default()).map_err(Failure::from_connect)?;
        let connection = connector.connect().await.map_err(Failure::from_connect)?;
        Ok((connection, config))
    }
}

/// The connector's credentials from the `[secret]` store. Store errors never contain
/// the secret: they name the backend and key and say what to fix. A misconfigured
/// store (no token, backend not compiled in) is a usage error (exit 2); a missing or
/// malformed secret, a denied or unreachable store, exit 1.
async fn read_secret(secret: &SecretRef) -> Result<Credentials, Failure> {
    let fail = |e: SecretError| {
        let message = format!("cannot read the connector's credentials: {e}");
        match e {
            SecretError::Config { .. } | SecretError::FeatureDisabled { .. } => {
                Failure::usage(message)
            }
            _ => Failure::failed(message),
        }
    };
    let (store, key) = pgwarden::secrets::from_config(secret).await.map_err(fail)?;
    let stored = store.get_credentials(&key).await.map_err(fail)?;
    Ok(stored.credentials)
}

/// The environment variable that carries the ledger key (base64) for `--dsn`, or
/// overrides the store's with `--config`.
pub(crate) const LEDGER_KEY_ENV: &str = "PGWARDEN_LEDGER_KEY";

/// The ledger key from [`LEDGER_KEY_ENV`], if set.
pub(crate) fn ledger_key_from_env() -> Result<Option<LedgerKey>, Failure> {
    match std::env::var(LEDGER_KEY_ENV) {
        Ok(text) => LedgerKey::from_base64(&text)
            .map(Some)
            .map_err(|e| Failure::usage(format!("{LEDGER_KEY_ENV}: {e}"))),
        Err(_) => Ok(None),
    }
}

fn ledger_key_needed() -> Failure {
    Failure::usage(format!(
        "this command reads or writes pgwarden's ledger, which is sealed with the instance's ledger key: set {LEDGER_KEY_ENV} (base64 of 32 bytes, e.g. from `openssl rand -base64 32`; keep it: grants are managed only with the key they were made with), or use --config, whose secret store keeps the key"
    ))
}

impl Target {
    /// The ledger key: [`LEDGER_KEY_ENV`] if set; else, with `--config` and a
    /// `[secret]` store, the key kept there (created on first use).
    pub(crate) async fn ledger_key(
        &self,
        config: Option<&IntegrationConfig>,
    ) -> Result<LedgerKey, Failure> {
        if let Some(key) = ledger_key_from_env()? {
            return Ok(key);
        }
        let Some(secret) = config.and_then(|c| c.secret.as_ref()) else {
            return Err(ledger_key_needed());
        };
        let (store, key) = pgwarden::secrets::from_config(secret)
            .await
            .map_err(|e| Failure::failed(format!("cannot open the secret store: {e}")))?;
        pgwarden::ledger_key::load_or_create_ledger_key(&store, &key)
            .await
            .map_err(|e| Failure::failed(e.to_string()))
    }

    /// The integration runtime for this target. With `--config`, the connector's
    /// credentials are read (and, on rotation, written) through its `[secret]` store;
    /// with `--dsn`, they come from the string and live in memory for this run.
    pub(crate) async fn integration(
        &self,
        mut options: pgwarden::IntegrationOptions,
        touches_ledger: bool,
    ) -> Result<std::sync::Arc<pgwarden::Integration>, Failure> {
        options.ledger_key = match (ledger_key_from_env()?, &self.dsn) {
            (Some(key), _) => Some(key),
            // A run that never reads or writes the ledger may use a throwaway key.
            (None, Some(_)) if !touches_ledger => Some(LedgerKey::generate()),
            (None, Some(_)) => return Err(ledger_key_needed()),
            (None, None) => None,
        };
        let (config, store, key): (
            IntegrationConfig,
            std::sync::Arc<pgwarden::secrets::DynSecretStore>,
            SecretKey,
        ) = if let Some(dsn) = &self.dsn {
            let info: ConnInfo = dsn
                .parse()
                .map_err(|e| Failure::usage(format!("invalid --dsn: {e}")))?;
            let info = info.with_process_env_defaults();
            let (config, credentials) = IntegrationConfig::from_conninfo("cli", &info)
                .map_err(|e| Failure::usage(format!("--dsn: {e}")))?;
            let credentials = credentials.ok_or_else(|| {
                Failure::usage(
                    "--dsn needs a user and a password (in the string or PGUSER/PGPASSWORD)",
                )
            })?;
            let store = InMemory::new();
            let key = SecretKey::new("cli");
            store
                .put_credentials(&key, &credentials, PutOptions::create())
                .await
                .map_err(|e| Failure::failed(e.to_string()))?;
            (config, std::sync::Arc::new(store), key)
        } else {
            let path = self
                .config
                .as_ref()
                .ok_or_else(|| Failure::usage("give --config or --dsn"))?;
            let config = pgwarden::load_config(path).map_err(|e| Failure::usage(e.to_string()))?;
            let secret = config
                    .secret
                    .clone()
                    .ok_or_else(|| Failure::usage("the config has no [secret] section: the runtime reads the connector's credentials from a store"))?;
            let (store, key) = pgwarden::secrets::from_config(&secret)
                .await
                .map_err(|e| Failure::failed(format!("cannot open the secret store: {e}")))?;
            (config, store, key)
        };
        let mut config = config;
        config.connector_mode = self.connector_mode(Some(&config));
        options.secret_key = Some(key);
        pgwarden::Integration::connect(config, store, options)
            .await
            .map_err(|e| match e {
                pgwarden::IntegrationError::Connect(c) => Failure::from_connect(c),
                pgwarden::IntegrationError::Config(_) => Failure::usage(e.to_string()),
                other => Failure::failed(other.to_string()),
            })
    }
}
