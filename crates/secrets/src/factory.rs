//! From the integration's `[secret]` section to a store and a key: every backend this
//! crate knows, its settings, and how its store is opened.
//!
//! A backend is its own module (declared in `lib.rs`), its cargo feature and one line
//! in [`BACKENDS`]: the module declares its settings ([`Settings`]: a serde struct
//! with `deny_unknown_fields` whose field types check their values), the key they
//! name and how to open the store. Its settings are checked whether or not its
//! feature is compiled in; opening a store that is not is [`Error::FeatureDisabled`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use pgwarden_core::config::{ConfigProblem, SecretRef};
use serde_json::{Map, Value};

use crate::{
    DynSecretStore, Error, RetryConfig, RetryStore, SecretKey, TimeoutConfig, TimeoutStore,
};

/// The `[secret]` settings of one backend.
///
/// Implemented by a struct deriving `eserde::Deserialize` (serde's derive that reports
/// every problem, not the first) with `#[serde(deny_unknown_fields)]`; `backend` is
/// not one of its fields. An optional setting is an `Option` with `#[serde(default)]`
/// (without it, `eserde` reports it missing when it lists a section's problems). A
/// value with rules of its own (an address must start with `https://`) is a newtype
/// whose `TryFrom<String>` error says what to fix, read with `#[eserde(compat)]`.
pub(crate) trait Settings: for<'de> eserde::EDeserialize<'de> + Send + Sync {
    /// The backend's name, the `backend` value that selects it; also the name of the
    /// cargo feature that builds its store, where it has one.
    const BACKEND: &'static str;

    /// The key of the connector's credentials in the store.
    fn key(&self) -> Result<SecretKey, Error>;

    /// The store, its client set up (a bad address or missing token is reported now).
    /// The default is a backend whose feature is not compiled in.
    fn open(&self) -> impl Future<Output = Result<Arc<DynSecretStore>, Error>> + Send {
        async {
            Err(Error::FeatureDisabled {
                backend: Self::BACKEND,
                feature: Self::BACKEND,
            })
        }
    }
}

type Opening<'a> =
    Pin<Box<dyn Future<Output = Result<(Arc<DynSecretStore>, SecretKey), Error>> + Send + 'a>>;

/// One backend, as the factory uses it.
struct Backend {
    name: &'static str,
    check: fn(&Map<String, Value>) -> Vec<ConfigProblem>,
    key: fn(&Map<String, Value>) -> Result<SecretKey, Error>,
    open: for<'a> fn(&'a Map<String, Value>) -> Opening<'a>,
}

impl Backend {
    const fn of<S: Settings + 'static>() -> Self {
        Backend {
            name: S::BACKEND,
            check: |settings| read::<S>(settings).err().unwrap_or_default(),
            key: |settings| settings_or_error::<S>(settings)?.key(),
            open: |settings| {
                Box::pin(async move {
                    let settings = settings_or_error::<S>(settings)?;
                    let key = settings.key()?;
                    Ok((settings.open().await?, key))
                })
            },
        }
    }
}

/// Every backend, in the order messages list them.
const BACKENDS: &[Backend] = &[
    Backend::of::<crate::vault::Settings>(),
    Backend::of::<crate::aws::Settings>(),
    Backend::of::<crate::gcp::Settings>(),
    Backend::of::<crate::azure::Settings>(),
    Backend::of::<crate::kubernetes::Settings>(),
    Backend::of::<crate::env::Settings>(),
    Backend::of::<crate::file::Settings>(),
];

/// The names of every backend this crate knows, compiled in or not.
#[must_use]
pub fn backends() -> Vec<&'static str> {
    BACKENDS.iter().map(|b| b.name).collect()
}

fn valid_backends() -> String {
    backends().join(", ")
}

fn backend(secret: &SecretRef) -> Result<&'static Backend, Error> {
    BACKENDS
        .iter()
        .find(|b| b.name == secret.backend)
        .ok_or_else(|| Error::UnknownBackend {
            name: secret.backend.clone(),
            valid: valid_backends(),
        })
}

/// Every problem of a `[secret]` section: no backend or one this crate does not know,
/// settings its backend does not have or that are missing, of the wrong type, empty or
/// invalid (an address without `http://`). Each names its field (`secret.address`) and
/// what to fix. Backends whose feature is not compiled in are checked too.
///
/// A config loader passes this to
/// [`IntegrationConfig::parse_with`](pgwarden_core::config::IntegrationConfig::parse_with)
/// so these problems are listed with the config's others.
///
/// ```
/// use pgwarden_core::config::SecretRef;
/// let problems = pgwarden_secrets::validate(&SecretRef::new("vault").with("address", "vault:8200"));
/// let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
/// assert_eq!(text, [
///     "secret.address: \"vault:8200\" must start with http:// or https://",
///     "secret.path: is required",
/// ]);
/// ```
#[must_use]
pub fn validate(secret: &SecretRef) -> Vec<ConfigProblem> {
    if secret.backend.is_empty() {
        return vec![problem(
            "backend",
            format!("is required (one of: {})", valid_backends()),
        )];
    }
    match backend(secret) {
        Ok(b) => (b.check)(&secret.settings),
        Err(_) => vec![problem(
            "backend",
            format!(
                "\"{}\" is not a secret backend (valid: {})",
                secret.backend,
                valid_backends()
            ),
        )],
    }
}

fn problem(setting: &str, message: impl Into<String>) -> ConfigProblem {
    ConfigProblem::new(format!("secret.{setting}"), message)
}

/// The settings, or [`Error::Config`] listing their problems.
fn settings_or_error<S: Settings>(settings: &Map<String, Value>) -> Result<S, Error> {
    read::<S>(settings).map_err(|problems| Error::Config {
        backend: S::BACKEND,
        reason: format!(
            "invalid [secret] section: {}",
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
    })
}

/// The backend's settings, or every problem with them.
///
/// Each setting is first read alone (serde from a section holding only it), which
/// finds unknown settings and wrong values (of the wrong type, or refused by the
/// setting's own check) without one hiding the next; then the settings that passed are
/// read together by `eserde`, which lists every missing one. A blank string is never a
/// setting: it is reported as empty, not as missing.
fn read<S: Settings>(settings: &Map<String, Value>) -> Result<S, Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    let mut refused = Vec::new();
    let mut given = Map::new();
    for (name, value) in settings {
        let alone = || Value::Object(Map::from_iter([(name.clone(), value.clone())]));
        let problem = match value {
            Value::Null => continue,
            Value::String(s) if s.trim().is_empty() => Some(problem(name, "must not be empty")),
            _ => match serde_json::from_value::<S>(alone()) {
                Err(e) if !e.to_string().starts_with("missing field ") => {
                    Some(problem_from_serde(name, &e.to_string()))
                }
                _ => None,
            },
        };
        match problem {
            Some(p) => {
                problems.push(p);
                refused.push(name.as_str());
            }
            None => {
                given.insert(name.clone(), value.clone());
            }
        }
    }
    match eserde::json::from_str::<S>(&Value::Object(given).to_string()) {
        Ok(settings) if problems.is_empty() => Ok(settings),
        Ok(_) => Err(problems),
        Err(errors) => {
            let path = |e: &eserde::DeserializationError| {
                e.path().map(ToString::to_string).unwrap_or_default()
            };
            problems.extend(
                errors
                    .iter()
                    .map(|e| problem_from_serde(&path(e), e.message()))
                    // A refused setting is reported once, not also as missing.
                    .filter(|p| !refused.iter().any(|r| p.field == format!("secret.{r}"))),
            );
            Err(problems)
        }
    }
}

/// A serde message about `setting` in the words of the config's other problems: a
/// missing field is "is required", an unknown one lists the valid fields, an invalid
/// type says what the setting must be and what it is ("must be a string, not a
/// number"); positions in JSON text are dropped.
fn problem_from_serde(setting: &str, message: &str) -> ConfigProblem {
    let message = match message.rsplit_once(" at line ") {
        Some((text, position)) if position.contains(" column ") => text,
        _ => message,
    };
    // serde's messages name fields in backticks: "missing field `path`".
    let quoted = |text: &str| -> Option<String> {
        let start = text.find('`')? + 1;
        let len = text[start..].find('`')?;
        Some(text[start..start + len].to_owned())
    };
    if let Some(name) = message.strip_prefix("missing field ").and_then(quoted) {
        return problem(&name, "is required");
    }
    if let Some(rest) = message.strip_prefix("unknown field ")
        && let Some(name) = quoted(rest)
    {
        let valid = match rest.split_once("expected one of ") {
            Some((_, names)) => format!("backend, {}", names.replace('`', "")),
            None => "backend".to_owned(),
        };
        return problem(&name, format!("unknown field (valid fields: {valid})"));
    }
    if let Some((found, expected)) = message
        .strip_prefix("invalid type: ")
        .and_then(|rest| rest.split_once(", expected "))
    {
        let found = match found.split(' ').next().unwrap_or_default() {
            "integer" | "floating" => "a number",
            "boolean" => "a boolean",
            "string" => "a string",
            "sequence" => "a list",
            "map" => "a table",
            other => other,
        };
        return problem(setting, format!("must be {expected}, not {found}"));
    }
    problem(setting, message)
}

/// The store and key the `[secret]` section names, with the default [`RetryConfig`] and
/// [`TimeoutConfig`]: each call to the store bounded (10 s), a call that times out or
/// finds the store unreachable retried with jittered backoff, and the whole call bounded
/// (60 s); see [`from_config_layered`]. Backend clients are set up here (Vault's
/// `AppRole` login included), so a bad address or missing token is reported now.
pub async fn from_config(secret: &SecretRef) -> Result<(Arc<DynSecretStore>, SecretKey), Error> {
    from_config_layered(
        secret,
        Some(RetryConfig::default()),
        Some(TimeoutConfig::default()),
    )
    .await
}

/// [`from_config`] with a chosen retry policy (`None`: no retries) and the default
/// [`TimeoutConfig`].
pub async fn from_config_with(
    secret: &SecretRef,
    retry: Option<RetryConfig>,
) -> Result<(Arc<DynSecretStore>, SecretKey), Error> {
    from_config_layered(secret, retry, Some(TimeoutConfig::default())).await
}

/// [`from_config`] with a chosen retry policy and time limits (`None`: no retries, no
/// limits beyond the backend client's own). The layers, from the outside in:
///
/// 1. [`TimeoutStore::total`] with [`TimeoutConfig::total`], around
/// 2. [`RetryStore`], which retries transient errors (timeouts included), around
/// 3. [`TimeoutStore::new`] with [`TimeoutConfig::per_call`], around the store.
///
/// Without a total limit, a call still ends within about
/// `max_attempts × (per_call + max_backoff)`.
pub async fn from_config_layered(
    secret: &SecretRef,
    retry: Option<RetryConfig>,
    timeout: Option<TimeoutConfig>,
) -> Result<(Arc<DynSecretStore>, SecretKey), Error> {
    let (store, key) = build(secret).await?;
    Ok((layer(store, retry, timeout), key))
}

/// Wraps `store` in the layers [`from_config_layered`] describes.
fn layer(
    store: Arc<DynSecretStore>,
    retry: Option<RetryConfig>,
    timeout: Option<TimeoutConfig>,
) -> Arc<DynSecretStore> {
    let store = match timeout {
        Some(limits) => Arc::new(TimeoutStore::new(store, limits.per_call)) as Arc<DynSecretStore>,
        None => store,
    };
    let store = match retry {
        Some(config) => Arc::new(RetryStore::new(store, config)) as Arc<DynSecretStore>,
        None => store,
    };
    match timeout.and_then(|limits| limits.total) {
        Some(total) => Arc::new(TimeoutStore::total(store, total)),
        None => store,
    }
}

/// The key of the credentials a `[secret]` section names, without opening the store
/// (for a host that builds the store itself and hands it to the runtime).
pub fn key_for(secret: &SecretRef) -> Result<SecretKey, Error> {
    (backend(secret)?.key)(&secret.settings)
}

/// The backend's store and the key, unlayered.
async fn build(secret: &SecretRef) -> Result<(Arc<DynSecretStore>, SecretKey), Error> {
    (backend(secret)?.open)(&secret.settings).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GetOptions, SecretStoreExt};
    use pgwarden_core::config::{ConfigFormat, IntegrationConfig};
    use secrecy::ExposeSecret;

    fn secret_section(section: &str) -> SecretRef {
        let text = format!("name = \"x\"\nhostname = \"db\"\n[secret]\n{section}\n");
        IntegrationConfig::parse_with(&text, ConfigFormat::Toml, validate)
            .unwrap()
            .secret
            .unwrap()
    }

    #[tokio::test]
    async fn file_section_reads_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(&path, r#"{"username":"u","password":"p"}"#).unwrap();
        let section = secret_section(&format!(
            "backend = \"file\"\npath = \"{}\"",
            path.display()
        ));
        let (store, key) = from_config(&section).await.unwrap();
        let c = store.get_credentials(&key).await.unwrap();
        assert_eq!(c.credentials.username, "u");
        assert_eq!(c.credentials.password.expose_secret(), "p");
        assert!(
            store
                .get(&SecretKey::new("nope"), GetOptions::default())
                .await
                .unwrap_err()
                .is_not_found()
        );
    }

    #[tokio::test]
    async fn stores_are_bounded_per_call_inside_retries_and_in_all() {
        let section = secret_section(
            "backend = \"env\"\nusername_var = \"PGW_TEST_NO_SUCH_USER\"\npassword_var = \"PGW_TEST_NO_SUCH_PASSWORD\"",
        );
        let (store, _) = from_config(&section).await.unwrap();
        let layers = format!("{store:?}");
        assert!(
            layers.starts_with(
                "TimeoutStore { inner: RetryStore { inner: TimeoutStore { inner: EnvStore"
            ),
            "{layers}"
        );
        assert!(layers.contains("limit: 60s, scope: Total"), "{layers}");
        assert!(layers.contains("limit: 10s, scope: PerCall"), "{layers}");
        let (store, _) = from_config_layered(&section, None, None).await.unwrap();
        assert!(format!("{store:?}").starts_with("EnvStore"), "{store:?}");
        let limits = TimeoutConfig::new(std::time::Duration::from_secs(3), None);
        let (store, _) = from_config_layered(&section, None, Some(limits))
            .await
            .unwrap();
        let layers = format!("{store:?}");
        assert!(
            layers.starts_with("TimeoutStore { inner: EnvStore") && layers.contains("limit: 3s"),
            "{layers}"
        );
    }

    #[tokio::test]
    async fn env_section_names_both_variables() {
        let section = secret_section(
            "backend = \"env\"\nusername_var = \"PGW_TEST_NO_SUCH_USER\"\npassword_var = \"PGW_TEST_NO_SUCH_PASSWORD\"",
        );
        let (store, key) = from_config(&section).await.unwrap();
        assert_eq!(
            key.as_str(),
            "PGW_TEST_NO_SUCH_USER,PGW_TEST_NO_SUCH_PASSWORD"
        );
        let e = store.get_credentials(&key).await.unwrap_err();
        assert!(e.is_not_found());
        assert!(e.to_string().contains("$PGW_TEST_NO_SUCH_USER"), "{e}");
    }

    #[tokio::test]
    async fn backends_not_compiled_in_name_their_feature() {
        let mut sections = vec![];
        if cfg!(not(feature = "vault")) {
            sections.push("backend = \"vault\"\npath = \"p\"");
        }
        if cfg!(not(feature = "aws")) {
            sections.push("backend = \"aws\"\nsecret_id = \"s\"");
        }
        if cfg!(not(feature = "gcp")) {
            sections.push("backend = \"gcp\"\nproject = \"p\"\nsecret = \"s\"");
        }
        if cfg!(not(feature = "azure")) {
            sections.push(
                "backend = \"azure\"\nvault_url = \"https://v.vault.azure.net\"\nname = \"n\"",
            );
        }
        if cfg!(not(feature = "kubernetes")) {
            sections.push("backend = \"kubernetes\"\nnamespace = \"ns\"\nname = \"n\"");
        }
        for section in sections {
            let section = secret_section(section);
            let backend = section.backend();
            let e = from_config(&section).await.unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "secret backend {backend} is not compiled into this build: enable the cargo feature \"{backend}\" of pgwarden-secrets"
                )
            );
        }
    }
}
