//! Resources pgwarden can grant access to, and the permission levels of each type.
//!
//! A [`ResourceId`] has a stable text form, `postgresql-<type>:<path>`:
//!
//! | type | text form |
//! |---|---|
//! | database | `postgresql-database:app` |
//! | schema | `postgresql-schema:app/s1` |
//! | table (and views, materialized, partitioned and foreign tables) | `postgresql-table:app/s1/orders` |
//! | role | `postgresql-role:analysts` |
//!
//! Inside a name, `/`, `%` and `:` are percent-encoded (and so are control
//! characters, so an id never spans lines), which makes every PostgreSQL identifier —
//! quotes, spaces, unicode, 63 bytes — round-trip.
//!
//! ```
//! use pgwarden_core::resource::{AccessEntry, PermissionLevel, ResourceId};
//! let id: ResourceId = "postgresql-table:app/sales%2F2024/orders".parse().unwrap();
//! assert_eq!(id.schema_name(), Some("sales/2024"));
//! let entry: AccessEntry = "postgresql-schema:app/s1=read-only".parse().unwrap();
//! assert_eq!(entry.level, PermissionLevel::ReadOnly);
//! assert!("postgresql-role:analysts=admin".parse::<AccessEntry>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use percent_encoding::percent_decode_str;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest identifier PostgreSQL keeps (NAMEDATALEN - 1), in bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// The kinds of resource pgwarden discovers and grants on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceType {
    /// A database of the instance.
    Database,
    /// A schema in a database.
    Schema,
    /// A table, view, materialized view, partitioned table or foreign table.
    Table,
    /// A role of the instance (access means membership in it).
    Role,
}

impl ResourceType {
    /// Every type, in discovery order.
    pub const ALL: [ResourceType; 4] = [
        ResourceType::Database,
        ResourceType::Schema,
        ResourceType::Table,
        ResourceType::Role,
    ];

    /// The lowercase name (`database`, `schema`, `table`, `role`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ResourceType::Database => "database",
            ResourceType::Schema => "schema",
            ResourceType::Table => "table",
            ResourceType::Role => "role",
        }
    }

    /// The permission levels valid for this type.
    #[must_use]
    pub const fn levels(self) -> &'static [PermissionLevel] {
        use PermissionLevel as L;
        match self {
            ResourceType::Database => &[L::Connect, L::ReadOnly, L::ReadWrite, L::Admin],
            ResourceType::Schema => &[L::ReadOnly, L::ReadWrite, L::Admin],
            ResourceType::Table => &[
                L::Select,
                L::Insert,
                L::Update,
                L::Delete,
                L::ReadOnly,
                L::ReadWrite,
                L::Admin,
            ],
            ResourceType::Role => &[L::Member],
        }
    }

    fn segments(self) -> usize {
        match self {
            ResourceType::Database | ResourceType::Role => 1,
            ResourceType::Schema => 2,
            ResourceType::Table => 3,
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ResourceType {
    type Err = ResourceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ResourceType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| ResourceError::UnknownType {
                value: s.to_owned(),
            })
    }
}

/// What can go wrong with a resource id, a level or an access entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceError {
    /// The text does not start with `postgresql-<type>:`.
    #[error(
        "invalid resource id \"{id}\": expected postgresql-<type>:<path> with type database, schema, table or role"
    )]
    MissingPrefix {
        /// The rejected text.
        id: String,
    },
    /// The type is not one of database, schema, table, role.
    #[error("unknown resource type \"{value}\" (valid types: database, schema, table, role)")]
    UnknownType {
        /// The rejected type.
        value: String,
    },
    /// The path has the wrong number of `/`-separated names.
    #[error(
        "invalid resource id \"{id}\": a {resource_type} id has {expected} (encode a '/' inside a name as %2F)"
    )]
    WrongPath {
        /// The rejected text.
        id: String,
        /// The type named in the id.
        resource_type: ResourceType,
        /// What the path must look like.
        expected: &'static str,
    },
    /// A name is empty, longer than 63 bytes, or badly percent-encoded.
    #[error("invalid resource id \"{id}\": {problem}")]
    BadName {
        /// The rejected text.
        id: String,
        /// What is wrong with the name.
        problem: String,
    },
    /// A permission level that does not exist at all.
    #[error("unknown permission level \"{value}\" (valid levels: {valid})")]
    UnknownLevel {
        /// The rejected level.
        value: String,
        /// Every level, comma-separated.
        valid: String,
    },
    /// A level that exists but not for this type of resource.
    #[error(
        "permission level \"{level}\" is not valid for a {resource_type} (valid levels for a {resource_type}: {valid})"
    )]
    LevelNotValidFor {
        /// The level asked for.
        level: PermissionLevel,
        /// The type of the resource.
        resource_type: ResourceType,
        /// The valid levels, comma-separated.
        valid: String,
    },
    /// An access entry without `=<level>`.
    #[error(
        "invalid access entry \"{entry}\": expected <resource-id>=<level>, e.g. postgresql-schema:app/s1=read-only"
    )]
    MissingLevel {
        /// The rejected entry.
        entry: String,
    },
}

/// A resource of a PostgreSQL instance. Names are kept exactly as PostgreSQL
/// spells them (case, quotes and all).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceId {
    /// A database.
    Database {
        /// Database name.
        database: String,
    },
    /// A schema in a database.
    Schema {
        /// Database name.
        database: String,
        /// Schema name.
        schema: String,
    },
    /// A table-like relation in a schema.
    Table {
        /// Database name.
        database: String,
        /// Schema name.
        schema: String,
        /// Relation name.
        table: String,
    },
    /// A role of the instance.
    Role {
        /// Role name.
        role: String,
    },
}

impl ResourceId {
    /// A database id.
    pub fn database(database: impl Into<String>) -> Self {
        ResourceId::Database {
            database: database.into(),
        }
    }

    /// A schema id.
    pub fn schema(database: impl Into<String>, schema: impl Into<String>) -> Self {
        ResourceId::Schema {
            database: database.into(),
            schema: schema.into(),
        }
    }

    /// A table id.
    pub fn table(
        database: impl Into<String>,
        schema: impl Into<String>,
        table: impl Into<String>,
    ) -> Self {
        ResourceId::Table {
            database: database.into(),
            schema: schema.into(),
            table: table.into(),
        }
    }

    /// A role id.
    pub fn role(role: impl Into<String>) -> Self {
        ResourceId::Role { role: role.into() }
    }

    /// The type of this resource.
    #[must_use]
    pub fn resource_type(&self) -> ResourceType {
        match self {
            ResourceId::Database { .. } => ResourceType::Database,
            ResourceId::Schema { .. } => ResourceType::Schema,
            ResourceId::Table { .. } => ResourceType::Table,
            ResourceId::Role { .. } => ResourceType::Role,
        }
    }

    /// The database this resource lives in (none for roles, which are instance-wide).
    #[must_use]
    pub fn database_name(&self) -> Option<&str> {
        match self {
            ResourceId::Database { database }
            | ResourceId::Schema { database, .. }
            | ResourceId::Table { database, .. } => Some(database),
            ResourceId::Role { .. } => None,
        }
    }

    /// The schema of a schema or table.
    #[must_use]
    pub fn schema_name(&self) -> Option<&str> {
        match self {
            ResourceId::Schema { schema, .. } | ResourceId::Table { schema, .. } => Some(schema),
            _ => None,
        }
    }

    /// The resource's own (last) name.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            ResourceId::Database { database } => database,
            ResourceId::Schema { schema, .. } => schema,
            ResourceId::Table { table, .. } => table,
            ResourceId::Role { role } => role,
        }
    }

    /// The enclosing resource: a table's schema, a schema's database.
    #[must_use]
    pub fn parent(&self) -> Option<ResourceId> {
        match self {
            ResourceId::Table {
                database, schema, ..
            } => Some(ResourceId::schema(database.clone(), schema.clone())),
            ResourceId::Schema { database, .. } => Some(ResourceId::database(database.clone())),
            ResourceId::Database { .. } | ResourceId::Role { .. } => None,
        }
    }

    /// Checks that `level` is valid for this resource's type.
    pub fn check_level(&self, level: PermissionLevel) -> Result<(), ResourceError> {
        level.check_for(self.resource_type())
    }

    fn names(&self) -> Vec<&str> {
        match self {
            ResourceId::Database { database } => vec![database],
            ResourceId::Schema { database, schema } => vec![database, schema],
            ResourceId::Table {
                database,
                schema,
                table,
            } => vec![database, schema, table],
            ResourceId::Role { role } => vec![role],
        }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "postgresql-{}:", self.resource_type())?;
        for (i, name) in self.names().into_iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            write_encoded(f, name)?;
        }
        Ok(())
    }
}

/// Writes a name with `/`, `%`, `:` and control characters percent-encoded; everything
/// else, unicode included, stays as it is so ids remain readable.
fn write_encoded(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    for c in name.chars() {
        if matches!(c, '/' | '%' | ':') || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                write!(f, "%{b:02X}")?;
            }
        } else {
            write!(f, "{c}")?;
        }
    }
    Ok(())
}

fn decode_name(id: &str, raw: &str) -> Result<String, ResourceError> {
    let bad = |problem: String| ResourceError::BadName {
        id: id.to_owned(),
        problem,
    };
    if raw.is_empty() {
        return Err(bad("a name is empty".into()));
    }
    // Reject malformed escapes rather than passing a lone '%' through.
    let bytes = raw.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err(bad(format!(
                "\"{raw}\" has a '%' not followed by two hex digits (write a literal '%' as %25)"
            )));
        }
    }
    let name = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| bad(format!("\"{raw}\" does not decode to UTF-8")))?
        .into_owned();
    if name.contains('\0') {
        return Err(bad("a name contains a NUL byte".into()));
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(bad(format!(
            "name \"{name}\" is {} bytes; PostgreSQL names have at most {MAX_IDENTIFIER_BYTES}",
            name.len()
        )));
    }
    Ok(name)
}

impl FromStr for ResourceId {
    type Err = ResourceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let missing = || ResourceError::MissingPrefix { id: s.to_owned() };
        let rest = s.strip_prefix("postgresql-").ok_or_else(missing)?;
        let (kind, path) = rest.split_once(':').ok_or_else(missing)?;
        let resource_type: ResourceType = kind.parse()?;
        let parts: Vec<&str> = path.split('/').collect();
        if parts.len() != resource_type.segments() {
            let expected = match resource_type {
                ResourceType::Database => "one name: <database>",
                ResourceType::Schema => "two names: <database>/<schema>",
                ResourceType::Table => "three names: <database>/<schema>/<table>",
                ResourceType::Role => "one name: <role>",
            };
            return Err(ResourceError::WrongPath {
                id: s.to_owned(),
                resource_type,
                expected,
            });
        }
        let mut names = parts
            .into_iter()
            .map(|p| decode_name(s, p))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter();
        let mut next = || names.next().unwrap_or_default();
        Ok(match resource_type {
            ResourceType::Database => ResourceId::Database { database: next() },
            ResourceType::Schema => ResourceId::Schema {
                database: next(),
                schema: next(),
            },
            ResourceType::Table => ResourceId::Table {
                database: next(),
                schema: next(),
                table: next(),
            },
            ResourceType::Role => ResourceId::Role { role: next() },
        })
    }
}

impl Serialize for ResourceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ResourceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A permission level. Which levels apply to which resource type is fixed by
/// [`ResourceType::levels`]; `pgwarden_pg_driver::privilege` spells out the
/// privileges of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PermissionLevel {
    /// CONNECT on a database.
    Connect,
    /// SELECT on one table.
    Select,
    /// INSERT on one table.
    Insert,
    /// UPDATE (with SELECT) on one table.
    Update,
    /// DELETE (with SELECT) on one table.
    Delete,
    /// Read everything in scope.
    ReadOnly,
    /// Read and change data in scope.
    ReadWrite,
    /// Read-write plus CREATE and ALL on objects in scope.
    Admin,
    /// Membership in a role.
    Member,
}

impl PermissionLevel {
    /// Every level.
    pub const ALL: [PermissionLevel; 9] = [
        PermissionLevel::Connect,
        PermissionLevel::Select,
        PermissionLevel::Insert,
        PermissionLevel::Update,
        PermissionLevel::Delete,
        PermissionLevel::ReadOnly,
        PermissionLevel::ReadWrite,
        PermissionLevel::Admin,
        PermissionLevel::Member,
    ];

    /// The kebab-case name (`read-only`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            PermissionLevel::Connect => "connect",
            PermissionLevel::Select => "select",
            PermissionLevel::Insert => "insert",
            PermissionLevel::Update => "update",
            PermissionLevel::Delete => "delete",
            PermissionLevel::ReadOnly => "read-only",
            PermissionLevel::ReadWrite => "read-write",
            PermissionLevel::Admin => "admin",
            PermissionLevel::Member => "member",
        }
    }

    /// Checks that this level applies to `resource_type`.
    pub fn check_for(self, resource_type: ResourceType) -> Result<(), ResourceError> {
        if resource_type.levels().contains(&self) {
            Ok(())
        } else {
            Err(ResourceError::LevelNotValidFor {
                level: self,
                resource_type,
                valid: join(resource_type.levels()),
            })
        }
    }

    /// Parses a level and checks it applies to `resource_type`.
    pub fn parse_for(s: &str, resource_type: ResourceType) -> Result<Self, ResourceError> {
        let level: PermissionLevel = s.parse()?;
        level.check_for(resource_type)?;
        Ok(level)
    }
}

fn join(levels: &[PermissionLevel]) -> String {
    levels
        .iter()
        .map(|l| l.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for PermissionLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PermissionLevel {
    type Err = ResourceError;

    /// Parses the kebab-case name; `read_only` and `READ-ONLY` are accepted too.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        PermissionLevel::ALL
            .into_iter()
            .find(|l| l.as_str() == norm)
            .ok_or_else(|| ResourceError::UnknownLevel {
                value: s.to_owned(),
                valid: join(&PermissionLevel::ALL),
            })
    }
}

/// One resource at one level: what an access request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccessEntry {
    /// The resource.
    pub resource: ResourceId,
    /// The level on it.
    pub level: PermissionLevel,
}

impl AccessEntry {
    /// Builds an entry, checking that the level applies to the resource.
    pub fn new(resource: ResourceId, level: PermissionLevel) -> Result<Self, ResourceError> {
        resource.check_level(level)?;
        Ok(AccessEntry { resource, level })
    }
}

impl fmt::Display for AccessEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.resource, self.level)
    }
}

impl FromStr for AccessEntry {
    type Err = ResourceError;

    /// Parses `<resource-id>=<level>`, splitting at the last `=` (names may hold `=`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (id, level) = s
            .rsplit_once('=')
            .ok_or_else(|| ResourceError::MissingLevel {
                entry: s.to_owned(),
            })?;
        let resource: ResourceId = id.parse()?;
        let level = PermissionLevel::parse_for(level, resource.resource_type())?;
        Ok(AccessEntry { resource, level })
    }
}
