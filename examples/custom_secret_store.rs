//! Implementing `SecretStore` for a host application's own backend.
//!
//! Here the "backend" is a directory of files, one per key, each holding the JSON
//! document, with a version counter kept beside it — a stand-in for whatever a host
//! already runs (an internal KMS, a config service). Five methods make it usable by
//! pgwarden, including compare-and-set, so credential rotation stays safe.
//!
//! ```text
//! cargo run --example custom_secret_store
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use pgwarden::core::credentials::Credentials;
use pgwarden::secrets::{
    Capabilities, Error, GetOptions, PutMode, PutOptions, SecretKey, SecretStore, SecretStoreExt,
    SecretValue, Stage, Version,
};
use secrecy::{ExposeSecret, SecretString};

/// A directory of `<key>.json` files; versions counted in memory.
#[derive(Debug)]
struct DirectoryStore {
    dir: PathBuf,
    versions: Mutex<HashMap<String, u64>>,
}

impl fmt::Display for DirectoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "directory store at {}", self.dir.display())
    }
}

impl DirectoryStore {
    fn path(&self, key: &SecretKey) -> PathBuf {
        // Keys become file names: keep them to a safe alphabet.
        let name: String = key
            .as_str()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        self.dir.join(format!("{name}.json"))
    }
}

#[async_trait]
impl SecretStore for DirectoryStore {
    fn backend(&self) -> &'static str {
        "directory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::versioned()
    }

    async fn get(&self, key: &SecretKey, options: GetOptions) -> Result<SecretValue, Error> {
        if options.stage == Stage::Pending {
            return Err(Error::NotFound {
                backend: self.backend(),
                key: key.to_string(),
            });
        }
        let text = std::fs::read_to_string(self.path(key)).map_err(|_| Error::NotFound {
            backend: self.backend(),
            key: key.to_string(),
        })?;
        let version = *self
            .versions
            .lock()
            .unwrap()
            .get(key.as_str())
            .unwrap_or(&1);
        Ok(SecretValue {
            value: SecretString::from(text),
            version: Version::new(version.to_string()),
        })
    }

    async fn put(
        &self,
        key: &SecretKey,
        value: SecretString,
        options: PutOptions,
    ) -> Result<Version, Error> {
        let mut versions = self.versions.lock().unwrap();
        let exists = self.path(key).exists();
        let current = *versions.get(key.as_str()).unwrap_or(&u64::from(exists));
        let conflict = match &options.mode {
            PutMode::Overwrite => false,
            PutMode::Create => exists,
            PutMode::Update(v) => v.as_str() != current.to_string(),
        };
        if conflict {
            return Err(Error::Conflict {
                backend: self.backend(),
                key: key.to_string(),
                expected: format!("{:?}", options.mode),
            });
        }
        std::fs::write(self.path(key), value.expose_secret()).map_err(|e| Error::Unreachable {
            backend: self.backend(),
            key: key.to_string(),
            reason: e.kind().to_string(),
        })?;
        let next = current + 1;
        versions.insert(key.as_str().to_owned(), next);
        Ok(Version::new(next.to_string()))
    }

    async fn delete(&self, key: &SecretKey) -> Result<(), Error> {
        let _ = std::fs::remove_file(self.path(key));
        self.versions.lock().unwrap().remove(key.as_str());
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("pgwarden-custom-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = DirectoryStore {
        dir: dir.clone(),
        versions: Mutex::new(HashMap::new()),
    };
    let key = SecretKey::new("orders-prod/connector");

    // The conveniences pgwarden uses come for free through SecretStoreExt.
    store
        .put_credentials(
            &key,
            &Credentials::new("pgwarden_connector", "first"),
            PutOptions::create(),
        )
        .await?;
    let current = store.get_credentials(&key).await?;
    println!(
        "{store}: {} at version {}",
        current.credentials.username, current.version
    );

    // The rotation protocol: stage, (ALTER ROLE + verify happen in PostgreSQL), promote.
    let staged = store
        .stage_password(&key, &current, &SecretString::from("second".to_owned()))
        .await?;
    store.promote_password(&key, &staged).await?;
    let rotated = store.get_credentials(&key).await?;
    assert_eq!(rotated.credentials.password.expose_secret(), "second");
    println!(
        "rotated; now at version {} (Debug never shows it: {:?})",
        rotated.version, rotated.credentials
    );

    // A stale writer loses: compare-and-set protects against two rotations at once.
    let stale = store
        .put(
            &key,
            SecretString::from("{}".to_owned()),
            PutOptions::expect_version(current.version),
        )
        .await;
    println!(
        "stale write: {}",
        stale.map_or_else(|e| e.to_string(), |_| "accepted?!".into())
    );

    // Hand it to the runtime as any other store:
    //   Integration::connect(config, Arc::new(store), IntegrationOptions { secret_key: Some(key), .. })
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
