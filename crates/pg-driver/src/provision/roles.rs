//! Creating pgwarden's roles: what the connector and the server are, the one
//! `CREATE ROLE` builder (marker, privilege, holder and login roles) and the membership
//! grants it and the persistent path share, run so that the new role's oid — what its
//! sealed record is bound to — comes back in the same round trip.

use pgwarden_core::config::ConnectorMode;
use pgwarden_core::naming::{MARKER_ROLE, UNTAGGED_ROLE};
use secrecy::SecretString;
use time::OffsetDateTime;

use super::request::Grant;
use super::session::{apply_settings_sql, connection_limit_clause};
use crate::error::{ProvisionError, db};
use crate::ledger::{GrantEntry, RoleMode, RoleRecord};
use crate::scram::{ScramIterations, generate_password, verifier};
use crate::seal::LedgerKey;
use crate::sql::{Ident, comment_on_role, literal, timestamp};

/// What pgwarden needs to know about the connector role and the server, read once.
#[derive(Debug, Clone)]
pub(crate) struct ConnectorFacts {
    /// `current_user`.
    pub(crate) name: String,
    /// `rolsuper`.
    pub(crate) superuser: bool,
    /// `server_version_num`.
    pub(crate) version_num: i32,
    /// The configured mode is `createrole`.
    pub(crate) createrole_mode: bool,
}

/// A role pgwarden creates.
pub(crate) enum NewRole<'a> {
    /// The marker role, or another bookkeeping role named after it
    /// ([`UNTAGGED_ROLE`], a names role). The connector gets no membership of it (of
    /// the marker, it would be listed as a managed login role); a `CREATEROLE`
    /// connector holds ADMIN OPTION on it as its creator.
    Bookkeeping {
        /// Its name.
        name: &'a str,
    },
    /// A privilege role: `NOLOGIN INHERIT`, its privileges granted afterwards.
    Privilege {
        /// Its name.
        name: &'a str,
    },
    /// A throwaway role that what pgwarden's own roles own is handed to, then dropped
    /// with it. A `CREATEROLE` connector on 16+ becomes a member, to hand objects to it.
    Holder {
        /// Its name.
        name: &'a str,
    },
    /// A login role, made without login or password (given once its oid is known),
    /// valid until `valid_until`, a member of the marker and of `privilege_roles`, and
    /// (`untagged`: not named by its grant's id) of [`UNTAGGED_ROLE`].
    Login {
        /// Its name.
        name: &'a str,
        /// Its `VALID UNTIL`.
        valid_until: OffsetDateTime,
        /// The privilege roles it joins.
        privilege_roles: &'a [String],
        /// Whether it joins [`UNTAGGED_ROLE`].
        untagged: bool,
    },
}

impl NewRole<'_> {
    /// The role's name.
    pub(crate) fn name(&self) -> &str {
        match self {
            NewRole::Bookkeeping { name }
            | NewRole::Privilege { name }
            | NewRole::Holder { name }
            | NewRole::Login { name, .. } => name,
        }
    }
}

impl ConnectorFacts {
    /// Refuses a connector whose role does not match the configured mode
    /// (`createrole`: whether the role has `CREATEROLE`).
    pub(crate) fn check_mode(
        &self,
        createrole: bool,
        mode: ConnectorMode,
    ) -> Result<(), ProvisionError> {
        let name = &self.name;
        match mode {
            ConnectorMode::Superuser if !self.superuser => {
                Err(ProvisionError::ConnectorMode(format!(
                    "connector role {name} is not a superuser, but connector_mode is \"superuser\": set connector_mode = \"createrole\" (managed clouds such as RDS, Cloud SQL, Azure) or connect as a superuser"
                )))
            }
            ConnectorMode::Createrole if !self.superuser && !createrole => {
                Err(ProvisionError::ConnectorMode(format!(
                    "connector role {name} has neither CREATEROLE nor SUPERUSER: pgwarden cannot create roles — ALTER ROLE {name} CREATEROLE"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Prefix of a transaction that creates roles: on PostgreSQL 16+ in createrole
    /// mode, the connector becomes a member (SET, INHERIT) of each role it creates, on
    /// top of the ADMIN OPTION the server gives the creator. REASSIGN/DROP OWNED and
    /// ending sessions need that membership.
    pub(crate) fn role_creation_prefix(&self) -> &'static str {
        if self.createrole_mode && self.version_num >= 160_000 {
            "SET LOCAL createrole_self_grant = 'set, inherit'; "
        } else {
            ""
        }
    }

    /// The options of every membership pgwarden gives a login role: from PostgreSQL
    /// 16 `INHERIT TRUE, SET FALSE`, so the grantee uses a privilege role's privileges
    /// but can never act *as* it (`SET ROLE`) and create objects it owns, which would
    /// outlive the grant and serve the next grantees. Before 16 membership always
    /// allows `SET ROLE`; there revocation and reconcile remove what pgwarden's roles
    /// come to own instead.
    fn membership_options(&self) -> &'static str {
        if self.version_num >= 160_000 {
            " WITH INHERIT TRUE, SET FALSE"
        } else {
            ""
        }
    }

    /// `GRANT roles TO member` with [`membership_options`](Self::membership_options):
    /// how a login role joins roles after it exists.
    pub(crate) fn grant_membership<'r>(
        &self,
        roles: impl IntoIterator<Item = &'r str>,
        member: &str,
    ) -> String {
        let roles = roles
            .into_iter()
            .map(|r| Ident(r).to_string())
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "GRANT {roles} TO {}{}",
            Ident(member),
            self.membership_options()
        )
    }

    /// What follows `CREATE ROLE role` so the connector can later act as the role:
    /// before PostgreSQL 16 a `CREATEROLE` connector grants itself the membership
    /// explicitly (16+ has [`role_creation_prefix`](Self::role_creation_prefix)).
    fn self_membership(&self, role: &str) -> String {
        if self.createrole_mode && self.version_num < 160_000 {
            format!("; GRANT {} TO {}", Ident(role), Ident(&self.name))
        } else {
            String::new()
        }
    }

    /// The statements that create `role` (the last one creating it; no secret in
    /// them). A login role joins the marker and its privilege roles as it is made:
    /// before 16 with `IN ROLE …`; from 16 with a `GRANT` right after, carrying
    /// [`membership_options`](Self::membership_options), which `IN ROLE` cannot.
    pub(crate) fn create_role(&self, role: &NewRole<'_>) -> String {
        let name = Ident(role.name());
        match role {
            NewRole::Bookkeeping { .. } => format!("CREATE ROLE {name} NOLOGIN"),
            NewRole::Holder { .. } => {
                format!("{}CREATE ROLE {name} NOLOGIN", self.role_creation_prefix())
            }
            NewRole::Privilege { name: n } => format!(
                "{}CREATE ROLE {name} NOLOGIN INHERIT{}",
                self.role_creation_prefix(),
                self.self_membership(n)
            ),
            NewRole::Login {
                name: n,
                valid_until,
                privilege_roles,
                untagged,
            } => {
                let roles = std::iter::once(MARKER_ROLE)
                    .chain(untagged.then_some(UNTAGGED_ROLE))
                    .chain(privilege_roles.iter().map(String::as_str));
                let (in_roles, join) = if self.version_num >= 160_000 {
                    (
                        String::new(),
                        format!("; {}", self.grant_membership(roles, n)),
                    )
                } else {
                    let roles = roles.map(|r| Ident(r).to_string()).collect::<Vec<_>>();
                    (format!(" IN ROLE {}", roles.join(", ")), String::new())
                };
                format!(
                    "{prefix}CREATE ROLE {name} NOLOGIN INHERIT VALID UNTIL {until}{in_roles}{join}{own}",
                    prefix = self.role_creation_prefix(),
                    until = literal(&timestamp(*valid_until)),
                    own = self.self_membership(n),
                )
            }
        }
    }
}

/// Runs `create`, whose last statement creates role `name`, and returns the new role's
/// oid — what its sealed record is bound to — in the same round trip.
pub(crate) async fn create_role_returning_oid<C: tokio_postgres::GenericClient>(
    client: &C,
    create: &str,
    name: &str,
) -> Result<u32, ProvisionError> {
    let messages = client
        .simple_query(&returning_oid_sql(create, name))
        .await
        .map_err(db(format!("creating role {name}")))?;
    returned_oid(&messages).ok_or_else(|| {
        ProvisionError::NotAuthentic(format!("role {name} was created but cannot be read back"))
    })
}

/// `create` (statements whose last creates role `name`, and that return no rows)
/// followed by the read of the new role's oid, for one simple-protocol message.
pub(crate) fn returning_oid_sql(create: &str, name: &str) -> String {
    format!(
        "{create}; SELECT pg_catalog.to_regrole(pg_catalog.quote_ident({}))::pg_catalog.oid",
        literal(name)
    )
}

/// The oid [`returning_oid_sql`] read (its last row).
pub(crate) fn returned_oid(messages: &[tokio_postgres::SimpleQueryMessage]) -> Option<u32> {
    last_row_value(messages, 0).and_then(|v| v.parse().ok())
}

/// Column `i` of the last row of a simple-protocol result.
fn last_row_value(messages: &[tokio_postgres::SimpleQueryMessage], i: usize) -> Option<&str> {
    messages.iter().rev().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(i),
        _ => None,
    })
}

/// A login role about to be created: made first without login or password (so that
/// its oid can be read back), then given both and its sealed record.
pub(super) struct NewLoginRole {
    pub(super) username: String,
    pub(super) password: SecretString,
    verifier: String,
    record: RoleRecord,
    /// `CREATE ROLE … NOLOGIN … VALID UNTIL …` with its memberships, then the grant's
    /// session settings (`ALTER ROLE … SET …`): no secret in it.
    pub(super) create: String,
    /// ` CONNECTION LIMIT n` when the grant sets one.
    connection_limit: String,
}

impl NewLoginRole {
    pub(super) fn new(
        username: String,
        record: RoleRecord,
        entry: &GrantEntry,
        facts: &ConnectorFacts,
        iterations: ScramIterations,
    ) -> Self {
        let password = generate_password();
        let verifier = verifier(&password, iterations).as_str().to_owned();
        let mut create = facts.create_role(&NewRole::Login {
            name: &username,
            valid_until: entry.expires_at,
            privilege_roles: &entry.privilege_roles,
            untagged: record.mode == RoleMode::Persistent,
        });
        let settings = apply_settings_sql(&username, &entry.session);
        if !settings.is_empty() {
            create.push_str("; ");
            create.push_str(&settings);
        }
        let connection_limit = connection_limit_clause(&entry.session, false);
        NewLoginRole {
            username,
            password,
            verifier,
            record,
            create,
            connection_limit,
        }
    }

    /// The role's record sealed for its `oid`: the comment [`Self::finish`] writes.
    pub(super) fn comment(&self, key: &LedgerKey, oid: u32) -> String {
        self.record.to_comment(key, oid, &self.username)
    }

    /// `ALTER ROLE … LOGIN [CONNECTION LIMIT n] PASSWORD …; COMMENT …`: the password
    /// and `comment` (from [`Self::comment`]).
    pub(super) fn finish(&self, comment: &str) -> String {
        format!(
            "ALTER ROLE {u} LOGIN{l} PASSWORD {v}; {c}",
            u = Ident(&self.username),
            l = self.connection_limit,
            v = literal(&self.verifier),
            c = comment_on_role(&self.username, comment),
        )
    }

    /// The grant made: an ephemeral role with its new password.
    pub(super) fn into_grant(self, entry: &GrantEntry) -> Grant {
        Grant::made(
            entry,
            self.username,
            RoleMode::Ephemeral,
            Some(self.password),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(version_num: i32, createrole_mode: bool) -> ConnectorFacts {
        ConnectorFacts {
            name: "pgw".into(),
            superuser: !createrole_mode,
            version_num,
            createrole_mode,
        }
    }

    #[test]
    fn the_marker_is_made_without_the_connector() {
        for f in [
            facts(150_000, true),
            facts(170_000, true),
            facts(170_000, false),
        ] {
            assert_eq!(
                f.create_role(&NewRole::Bookkeeping { name: MARKER_ROLE }),
                "CREATE ROLE \"pgwarden_managed\" NOLOGIN"
            );
        }
    }

    #[test]
    fn holders_are_made_with_the_connector_a_member_from_16() {
        let h = NewRole::Holder {
            name: "pgwarden_h_x",
        };
        assert_eq!(
            facts(150_000, true).create_role(&h),
            "CREATE ROLE \"pgwarden_h_x\" NOLOGIN"
        );
        assert_eq!(
            facts(160_000, true).create_role(&h),
            "SET LOCAL createrole_self_grant = 'set, inherit'; CREATE ROLE \"pgwarden_h_x\" NOLOGIN"
        );
    }

    #[test]
    fn privilege_roles_let_a_createrole_connector_act_as_them() {
        let p = NewRole::Privilege {
            name: "pgwarden_p_1",
        };
        assert_eq!(
            facts(150_000, false).create_role(&p),
            "CREATE ROLE \"pgwarden_p_1\" NOLOGIN INHERIT"
        );
        assert_eq!(
            facts(150_000, true).create_role(&p),
            "CREATE ROLE \"pgwarden_p_1\" NOLOGIN INHERIT; GRANT \"pgwarden_p_1\" TO \"pgw\""
        );
        assert_eq!(
            facts(160_000, true).create_role(&p),
            "SET LOCAL createrole_self_grant = 'set, inherit'; CREATE ROLE \"pgwarden_p_1\" NOLOGIN INHERIT"
        );
    }

    #[test]
    fn login_roles_join_in_role_before_16_and_by_grant_from_16() {
        let until = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let roles = vec!["pgwarden_p_1".to_owned()];
        let login = NewRole::Login {
            name: "u",
            valid_until: until,
            privilege_roles: &roles,
            untagged: false,
        };
        assert_eq!(
            facts(150_000, false).create_role(&login),
            "CREATE ROLE \"u\" NOLOGIN INHERIT VALID UNTIL '2027-01-15 08:00:00+00' IN ROLE \"pgwarden_managed\", \"pgwarden_p_1\""
        );
        assert_eq!(
            facts(160_000, false).create_role(&login),
            "CREATE ROLE \"u\" NOLOGIN INHERIT VALID UNTIL '2027-01-15 08:00:00+00'; GRANT \"pgwarden_managed\", \"pgwarden_p_1\" TO \"u\" WITH INHERIT TRUE, SET FALSE"
        );
        assert_eq!(
            facts(140_000, true).create_role(&login),
            "CREATE ROLE \"u\" NOLOGIN INHERIT VALID UNTIL '2027-01-15 08:00:00+00' IN ROLE \"pgwarden_managed\", \"pgwarden_p_1\"; GRANT \"u\" TO \"pgw\""
        );
        // A login role not named by its grant's id (persistent) is found through
        // the untagged role.
        let persistent = NewRole::Login {
            name: "u",
            valid_until: until,
            privilege_roles: &roles,
            untagged: true,
        };
        assert_eq!(
            facts(160_000, false).create_role(&persistent),
            "CREATE ROLE \"u\" NOLOGIN INHERIT VALID UNTIL '2027-01-15 08:00:00+00'; GRANT \"pgwarden_managed\", \"pgwarden_managed_untagged\", \"pgwarden_p_1\" TO \"u\" WITH INHERIT TRUE, SET FALSE"
        );
    }
}
