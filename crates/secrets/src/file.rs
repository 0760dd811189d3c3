//! [`FileStore`]: secrets as JSON files in a directory.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::credentials::{SecretDocument, zeroize_json};
use crate::{
    Capabilities, DynSecretStore, Error, GetOptions, Operation, PutMode, PutOptions, SecretKey,
    SecretStore, SecretValue, Version,
};

const BACKEND: &str = "file";

/// The `[secret]` settings of backend `file`: the JSON file's path.
#[derive(eserde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    path: String,
}

impl crate::factory::Settings for Settings {
    const BACKEND: &'static str = BACKEND;

    fn key(&self) -> Result<SecretKey, Error> {
        Ok(FileStore::for_file(&self.path)?.1)
    }

    async fn open(&self) -> Result<Arc<DynSecretStore>, Error> {
        Ok(Arc::new(FileStore::for_file(&self.path)?.0))
    }
}

/// The field of a file's JSON object that holds its version counter. The store adds it
/// on write and hides it on read.
pub(crate) const VERSION_FIELD: &str = "pgwarden_version";

/// Secrets as files in a directory: the key is the file's path relative to it.
///
/// A file holds a JSON object, written by the store as a whole new file (a temporary
/// file in the same directory, synced, then renamed over the old one) with mode 0600,
/// and carrying a version counter in the field `pgwarden_version`, which `get` hides
/// and `put` checks for compare-and-set. Files written by hand need no counter
/// (version 0). Writers are serialized within a process; two processes writing the
/// same file at once are not guarded against. A deleted and recreated file starts
/// counting again at 1.
pub struct FileStore {
    root: PathBuf,
    write_lock: Arc<Mutex<()>>,
}

impl FileStore {
    /// A store over the files under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileStore {
            root: root.into(),
            write_lock: Arc::new(Mutex::new(())),
        }
    }

    /// A store and key for one file path, as the `[secret]` section's `path` gives it.
    pub fn for_file(path: impl AsRef<Path>) -> Result<(Self, SecretKey), Error> {
        let path = path.as_ref();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::Config {
                backend: BACKEND,
                reason: format!("{} does not name a file", path.display()),
            })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok((FileStore::new(dir), SecretKey::new(name)))
    }

    /// The directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &SecretKey) -> Result<PathBuf, Error> {
        let relative = Path::new(key.as_str());
        let plain = !key.as_str().is_empty()
            && relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        if !plain {
            return Err(Error::Config {
                backend: BACKEND,
                reason: format!(
                    "key {key:?} must be a relative path without \"..\" inside {}",
                    self.root.display()
                ),
            });
        }
        Ok(self.root.join(relative))
    }
}

fn io_error(path: &Path, operation: Operation, e: &std::io::Error) -> Error {
    let key = path.display().to_string();
    match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound {
            backend: BACKEND,
            key,
        },
        std::io::ErrorKind::PermissionDenied => Error::PermissionDenied {
            backend: BACKEND,
            key,
            reason: e.to_string(),
        },
        _ => Error::Backend {
            backend: BACKEND,
            operation,
            key,
            reason: e.to_string(),
            transient: false,
        },
    }
}

/// A file's content split into the document the caller sees and its version.
fn read_file(path: &Path) -> Result<(SecretString, u64), Error> {
    let text = SecretString::from(
        std::fs::read_to_string(path).map_err(|e| io_error(path, Operation::Get, &e))?,
    );
    let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(text.expose_secret()) else {
        // Not ours to interpret: hand it over as it is, and the caller says why it is
        // malformed.
        return Ok((text, 0));
    };
    let version = map
        .remove(VERSION_FIELD)
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    let document = SecretDocument::from_fields(map);
    Ok((document.to_secret(), version))
}

fn write_file(path: &Path, text: &str) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("secret");
    let temp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        fastrand::u64(..)
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        // The umask cannot widen 0600, but an inherited ACL default could: be explicit.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        // Make the rename itself durable.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(|e| io_error(path, Operation::Put, &e))
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "files in {}", self.root.display())
    }
}

async fn blocking<T: Send + 'static>(
    key: &SecretKey,
    operation: Operation,
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Backend {
            backend: BACKEND,
            operation,
            key: key.to_string(),
            reason: format!("the file task failed: {e}"),
            transient: false,
        })?
}

#[async_trait]
impl SecretStore for FileStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::versioned().with_any_text(false)
    }

    async fn get(&self, key: &SecretKey, options: GetOptions) -> Result<SecretValue, Error> {
        Error::only_current_stage(BACKEND, Operation::Get, options.stage)?;
        let path = self.path(key)?;
        let (value, version) = blocking(key, Operation::Get, move || read_file(&path)).await?;
        Ok(SecretValue {
            value,
            version: Version::new(version.to_string()),
        })
    }

    async fn put(
        &self,
        key: &SecretKey,
        value: SecretString,
        options: PutOptions,
    ) -> Result<Version, Error> {
        Error::only_current_stage(BACKEND, Operation::Put, options.stage)?;
        let path = self.path(key)?;
        let document = match serde_json::from_str::<Value>(value.expose_secret()) {
            Ok(Value::Object(map)) => SecretDocument::from_fields(map),
            Ok(mut other) => {
                zeroize_json(&mut other);
                return Err(Error::Malformed {
                    backend: BACKEND,
                    key: key.to_string(),
                    reason: "the file store keeps JSON objects only".into(),
                });
            }
            Err(_) => {
                return Err(Error::Malformed {
                    backend: BACKEND,
                    key: key.to_string(),
                    reason: "the file store keeps JSON objects only, and this is not JSON".into(),
                });
            }
        };
        let lock = Arc::clone(&self.write_lock);
        let k = key.clone();
        blocking(key, Operation::Put, move || {
            let _guard = lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let current = match read_file(&path) {
                Ok((_, v)) => Some(v),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e),
            };
            let conflict = |expected: String| Error::Conflict {
                backend: BACKEND,
                key: k.to_string(),
                expected,
            };
            match (&options.mode, current) {
                (PutMode::Create, Some(_)) => return Err(conflict("no secret".into())),
                (PutMode::Update(expected), current)
                    if current.map(|v| v.to_string()).as_deref() != Some(expected.as_str()) =>
                {
                    return Err(conflict(expected.to_string()));
                }
                _ => {}
            }
            let next = current.unwrap_or(0) + 1;
            let mut fields = document.fields().clone();
            fields.insert(VERSION_FIELD.to_owned(), Value::from(next));
            let with_version = SecretDocument::from_fields(fields);
            let mut text = serde_json::to_string_pretty(with_version.fields()).unwrap_or_default();
            text.push('\n');
            let text = SecretString::from(text);
            write_file(&path, text.expose_secret())?;
            Ok(Version::new(next.to_string()))
        })
        .await
    }

    async fn delete(&self, key: &SecretKey) -> Result<(), Error> {
        let path = self.path(key)?;
        let lock = Arc::clone(&self.write_lock);
        blocking(key, Operation::Delete, move || {
            let _guard = lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(io_error(&path, Operation::Delete, &e))
                }
                _ => Ok(()),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_0600_atomically_with_a_hidden_counter() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        let key = SecretKey::new("pg.json");
        let v1 = store
            .put(
                &key,
                SecretString::from(r#"{"username":"u","password":"p"}"#),
                PutOptions::create(),
            )
            .await
            .unwrap();
        assert_eq!(v1.as_str(), "1");
        let path = dir.path().join("pg.json");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let raw = std::fs::read_to_string(&path).unwrap();
        assert!(raw.contains("\"pgwarden_version\": 1"), "{raw}");
        let got = store.get(&key, GetOptions::default()).await.unwrap();
        assert!(!got.expose().contains("pgwarden_version"));
        assert_eq!(got.version, v1);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // Hand-written files have version 0 and can be updated with it.
        std::fs::write(&path, r#"{"username":"u","password":"p","note":"x"}"#).unwrap();
        let got = store.get(&key, GetOptions::default()).await.unwrap();
        assert_eq!(got.version.as_str(), "0");
        let v = store
            .put(
                &key,
                got.value.clone(),
                PutOptions::expect_version(got.version),
            )
            .await
            .unwrap();
        assert_eq!(v.as_str(), "1");
        // Keys cannot escape the directory.
        for bad in ["../x", "/etc/passwd", "", "a/../../b"] {
            let e = store
                .get(&SecretKey::new(bad), GetOptions::default())
                .await
                .unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{bad}: {e}");
        }
        // Non-objects are refused on write, and hand-written non-JSON reads back as text.
        let e = store
            .put(&key, SecretString::from("not json"), PutOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Malformed { .. }));
        std::fs::write(&path, "hunter2").unwrap();
        let got = store.get(&key, GetOptions::default()).await.unwrap();
        assert_eq!(got.expose(), "hunter2");
    }

    #[test]
    fn for_file_splits_directory_and_name() {
        let (store, key) = FileStore::for_file("/etc/pgwarden/connector.json").unwrap();
        assert_eq!(store.root(), Path::new("/etc/pgwarden"));
        assert_eq!(key.as_str(), "connector.json");
        let (store, key) = FileStore::for_file("connector.json").unwrap();
        assert_eq!(store.root(), Path::new("."));
        assert_eq!(key.as_str(), "connector.json");
    }
}
