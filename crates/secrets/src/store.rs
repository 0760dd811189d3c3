//! The [`SecretStore`] trait and the types its methods take and return.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use crate::Error;

/// Where a secret lives inside a store: a Vault path under the mount, an AWS secret id
/// or ARN, a file name, a variable name. Not secret, so it prints as is.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretKey(String);

impl SecretKey {
    /// A key from its store-specific spelling.
    pub fn new(key: impl Into<String>) -> Self {
        SecretKey(key.into())
    }

    /// The key as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for SecretKey {
    fn from(s: &str) -> Self {
        SecretKey::new(s)
    }
}

impl From<String> for SecretKey {
    fn from(s: String) -> Self {
        SecretKey(s)
    }
}

/// A store's name for one version of a secret: a KV v2 version number, an AWS
/// `VersionId`, a file's counter. Opaque: compare for equality only.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version(String);

impl Version {
    /// A version from the store's spelling.
    pub fn new(v: impl Into<String>) -> Self {
        Version(v.into())
    }

    /// The version as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A secret's text and the version it was read at. `Debug` shows the version only.
#[derive(Clone)]
pub struct SecretValue {
    /// The secret document, zeroized on drop.
    pub value: SecretString,
    /// The version read.
    pub version: Version,
}

impl SecretValue {
    /// The value, exposed for parsing.
    #[must_use]
    pub fn expose(&self) -> &str {
        self.value.expose_secret()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretValue")
            .field("value", &"***")
            .field("version", &self.version)
            .finish()
    }
}

/// Which version of a secret a read or write is about. Only stores whose
/// [`Capabilities::stages`] is true accept [`Stage::Pending`]; the others keep a
/// pending password inside the document (see the crate docs on rotation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Stage {
    /// The version clients use (AWS `AWSCURRENT`).
    #[default]
    Current,
    /// A version written but not yet promoted (AWS `AWSPENDING`).
    Pending,
}

/// Options of [`SecretStore::get`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GetOptions {
    /// The stage to read.
    pub stage: Stage,
}

impl GetOptions {
    /// Read the pending version.
    #[must_use]
    pub fn pending() -> Self {
        GetOptions {
            stage: Stage::Pending,
        }
    }
}

/// The precondition of a write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PutMode {
    /// Write whatever is there.
    #[default]
    Overwrite,
    /// Write only if the secret does not exist yet; else [`Error::Conflict`].
    Create,
    /// Write only if the current version is this one; else [`Error::Conflict`].
    /// Needs [`Capabilities::compare_and_set`].
    Update(Version),
}

/// Options of [`SecretStore::put`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutOptions {
    /// The precondition.
    pub mode: PutMode,
    /// Write a new current version (the default) or a pending one, which
    /// [`SecretStore::promote`] later makes current. Pending needs
    /// [`Capabilities::stages`].
    pub stage: Stage,
}

impl PutOptions {
    /// Overwrite, no precondition.
    #[must_use]
    pub fn overwrite() -> Self {
        PutOptions::default()
    }

    /// Create only.
    #[must_use]
    pub fn create() -> Self {
        PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        }
    }

    /// Compare-and-set: only if the current version is `expected`.
    #[must_use]
    pub fn expect_version(expected: Version) -> Self {
        PutOptions {
            mode: PutMode::Update(expected),
            ..PutOptions::default()
        }
    }

    /// The same options writing a pending version.
    #[must_use]
    pub fn pending(mut self) -> Self {
        self.stage = Stage::Pending;
        self
    }
}

/// What a store can do; tests and callers branch on these, never on backend names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent yes/no capabilities, like opendal's"
)]
pub struct Capabilities {
    /// `put` works.
    pub write: bool,
    /// `delete` works.
    pub delete: bool,
    /// [`PutMode::Create`] and [`PutMode::Update`] are atomic.
    pub compare_and_set: bool,
    /// Every successful `put` yields a new, distinct [`Version`].
    pub versions: bool,
    /// [`Stage::Pending`] and [`SecretStore::promote`] work.
    pub stages: bool,
    /// Any text can be stored; when false the value must be a JSON object (of strings,
    /// for Kubernetes) because the store keeps fields, not text.
    pub any_text: bool,
}

impl Capabilities {
    /// A read-only store.
    #[must_use]
    pub const fn read_only() -> Self {
        Capabilities {
            write: false,
            delete: false,
            compare_and_set: false,
            versions: false,
            stages: false,
            any_text: false,
        }
    }

    /// A store that can write, delete, compare-and-set and version.
    #[must_use]
    pub const fn versioned() -> Self {
        Capabilities {
            write: true,
            delete: true,
            compare_and_set: true,
            versions: true,
            stages: false,
            any_text: true,
        }
    }

    /// The same with `stages` set.
    #[must_use]
    pub const fn with_stages(mut self, stages: bool) -> Self {
        self.stages = stages;
        self
    }

    /// The same with `any_text` set.
    #[must_use]
    pub const fn with_any_text(mut self, any_text: bool) -> Self {
        self.any_text = any_text;
        self
    }

    /// The same with `compare_and_set` set.
    #[must_use]
    pub const fn with_compare_and_set(mut self, cas: bool) -> Self {
        self.compare_and_set = cas;
        self
    }
}

/// A place secrets live. Object safe; used as `Arc<dyn SecretStore>`
/// ([`DynSecretStore`]). `Display` names the store and where it points (never a
/// credential), for messages.
///
/// Values are whole documents (for pgwarden, the credentials JSON); the
/// [`SecretStoreExt`](crate::SecretStoreExt) helpers read and write that JSON.
#[async_trait]
pub trait SecretStore: Send + Sync + fmt::Debug + fmt::Display + 'static {
    /// The backend name used in errors, e.g. `vault`.
    fn backend(&self) -> &'static str;

    /// What this store supports.
    fn capabilities(&self) -> Capabilities;

    /// Reads a secret: the current version, or the pending one.
    async fn get(&self, key: &SecretKey, options: GetOptions) -> Result<SecretValue, Error>;

    /// Writes a new version and returns it.
    async fn put(
        &self,
        key: &SecretKey,
        value: SecretString,
        options: PutOptions,
    ) -> Result<Version, Error>;

    /// Removes the secret and all its versions. Deleting a missing secret succeeds, so
    /// a retried delete whose first reply was lost does not fail.
    async fn delete(&self, key: &SecretKey) -> Result<(), Error>;

    /// Makes the pending `version` current (and leaves no pending version). Only for
    /// stores with [`Capabilities::stages`].
    async fn promote(&self, key: &SecretKey, version: &Version) -> Result<(), Error> {
        let _ = (key, version);
        Err(Error::not_implemented(
            self.backend(),
            crate::Operation::Promote,
            Some("keep the pending password in the document (SecretStoreExt::stage_password)"),
        ))
    }
}

/// The trait object the runtime holds.
pub type DynSecretStore = dyn SecretStore;

#[async_trait]
impl<T: SecretStore + ?Sized> SecretStore for Arc<T> {
    fn backend(&self) -> &'static str {
        (**self).backend()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    async fn get(&self, key: &SecretKey, options: GetOptions) -> Result<SecretValue, Error> {
        (**self).get(key, options).await
    }
    async fn put(
        &self,
        key: &SecretKey,
        value: SecretString,
        options: PutOptions,
    ) -> Result<Version, Error> {
        (**self).put(key, value, options).await
    }
    async fn delete(&self, key: &SecretKey) -> Result<(), Error> {
        (**self).delete(key).await
    }
    async fn promote(&self, key: &SecretKey, version: &Version) -> Result<(), Error> {
        (**self).promote(key, version).await
    }
}
