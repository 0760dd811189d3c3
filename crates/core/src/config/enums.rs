//! The config's enums and how they are spelled: each has one list of names, which its
//! `FromStr`, `Display` and serialization use, and a parse error that lists them.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::owners::OwnerAttribute;

/// How login roles are created for grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(into = "&'static str")]
pub enum UserMode {
    /// A fresh role per grant, dropped at revocation.
    #[default]
    Ephemeral,
    /// One role per requester, disabled and stripped of access between grants.
    Persistent,
}

/// What the connector role may do, and so how pgwarden provisions with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(into = "&'static str")]
pub enum ConnectorMode {
    /// The connector is a superuser (self-hosted instances): every step of granting
    /// and revoking is available.
    #[default]
    Superuser,
    /// The connector has `CREATEROLE` but not `SUPERUSER` (managed clouds: RDS, Cloud
    /// SQL, Azure). pgwarden makes itself a member of the roles it creates (on
    /// PostgreSQL 16+ through `createrole_self_grant = 'set, inherit'`, which also
    /// leaves it ADMIN OPTION), grants only on objects whose owner it can act as, and
    /// refuses, with an error naming the objects and owners, what it cannot do.
    Createrole,
}

/// A config value that is none of an enum's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{value}\" is not {what} (valid: {})", valid.join(", "))]
pub struct ParseEnumError {
    /// What was expected, e.g. `a user mode`.
    pub what: &'static str,
    /// The rejected value.
    pub value: String,
    /// Every valid name.
    pub valid: Vec<&'static str>,
}

/// An enum of the config with fixed names.
trait Named: Copy + 'static {
    /// What a value is, with its article: `a user mode`.
    const WHAT: &'static str;
    /// Every value and its name, in the order errors list them.
    const NAMES: &'static [(Self, &'static str)];
}

fn name_of<T: Named + PartialEq>(value: T) -> &'static str {
    T::NAMES
        .iter()
        .find(|(v, _)| *v == value)
        .map_or("", |(_, name)| name)
}

fn parse_named<T: Named>(s: &str) -> Result<T, ParseEnumError> {
    T::NAMES
        .iter()
        .find(|(_, name)| *name == s)
        .map(|(v, _)| *v)
        .ok_or_else(|| ParseEnumError {
            what: T::WHAT,
            value: s.to_owned(),
            valid: T::NAMES.iter().map(|(_, name)| *name).collect(),
        })
}

impl Named for UserMode {
    const WHAT: &'static str = "a user mode";
    const NAMES: &'static [(Self, &'static str)] = &[
        (UserMode::Ephemeral, "ephemeral"),
        (UserMode::Persistent, "persistent"),
    ];
}

impl Named for ConnectorMode {
    const WHAT: &'static str = "a connector mode";
    const NAMES: &'static [(Self, &'static str)] = &[
        (ConnectorMode::Superuser, "superuser"),
        (ConnectorMode::Createrole, "createrole"),
    ];
}

impl Named for OwnerAttribute {
    const WHAT: &'static str = "an owner attribute";
    const NAMES: &'static [(Self, &'static str)] = &[
        (OwnerAttribute::User, "user"),
        (OwnerAttribute::Group, "group"),
    ];
}

impl UserMode {
    /// The name used in configuration files.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        name_of(self)
    }
}

impl ConnectorMode {
    /// The name used in configuration files.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        name_of(self)
    }
}

impl FromStr for UserMode {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_named(s)
    }
}

impl FromStr for ConnectorMode {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_named(s)
    }
}

/// Owner attributes are spelled `user` and `group` in configs.
impl FromStr for OwnerAttribute {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_named(s)
    }
}

impl From<UserMode> for &'static str {
    fn from(mode: UserMode) -> Self {
        mode.as_str()
    }
}

impl From<ConnectorMode> for &'static str {
    fn from(mode: ConnectorMode) -> Self {
        mode.as_str()
    }
}

impl fmt::Display for UserMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ConnectorMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Named + PartialEq + fmt::Debug + FromStr<Err = ParseEnumError>>() {
        for (value, name) in T::NAMES {
            assert_eq!(name_of(*value), *name);
            assert_eq!(name.parse::<T>().unwrap(), *value);
        }
    }

    #[test]
    fn every_name_parses_back_and_errors_list_them() {
        round_trip::<UserMode>();
        round_trip::<ConnectorMode>();
        round_trip::<OwnerAttribute>();
        assert_eq!(
            "shared".parse::<UserMode>().unwrap_err().to_string(),
            "\"shared\" is not a user mode (valid: ephemeral, persistent)"
        );
        assert_eq!(
            "rds".parse::<ConnectorMode>().unwrap_err().to_string(),
            "\"rds\" is not a connector mode (valid: superuser, createrole)"
        );
        assert_eq!(
            "team".parse::<OwnerAttribute>().unwrap_err().to_string(),
            "\"team\" is not an owner attribute (valid: user, group)"
        );
        assert_eq!(
            serde_json::to_value(ConnectorMode::Createrole).unwrap(),
            "createrole"
        );
        assert_eq!(UserMode::Persistent.to_string(), "persistent");
    }
}
