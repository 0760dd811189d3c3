//! The database is the ledger: what pgwarden granted, read back from the instance.
//!
//! Every login role pgwarden creates is a member of the marker role
//! ([`MARKER_ROLE`]) and carries a `COMMENT ON ROLE` with a versioned record — a
//! [`RoleRecord`]. Privilege roles carry a [`PrivilegeRecord`], the marker a
//! [`MarkerRecord`]. Every record is sealed with the [`LedgerKey`] for the role it is
//! written on (see [`crate::seal`]): one that does not open is not pgwarden's, and is
//! reported, never acted on. A restarted process (or another replica) reads
//! everything back with [`read_ledger`]; nothing lives outside PostgreSQL.
//!
//! Here too: the one readiness rule for privilege roles ([`privilege_ready`]) and the
//! reads it is applied to, and finding a grant among the roles read.

use std::collections::HashSet;

use pgwarden_core::naming::{MARKER_ROLE, UNTAGGED_ROLE};
use pgwarden_core::resource::AccessEntry;
use pgwarden_core::session::SessionLimits;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_postgres::GenericClient;

use crate::seal::LedgerKey;
use crate::sql::comment_on_role;

/// The ledger format version written into every record (2: sealed).
pub(crate) const LEDGER_VERSION: u32 = 2;

/// Where a grant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum GrantState {
    /// Access is in effect until `expires_at`.
    Active,
    /// Revocation started and has not finished; reconciliation finishes it.
    Revoking,
}

/// One grant as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GrantEntry {
    /// The grant's id.
    pub grant_id: String,
    /// Who asked.
    pub requester: String,
    /// What was granted.
    pub access: Vec<AccessEntry>,
    /// The privilege roles the login role was made a member of for this grant.
    pub privilege_roles: Vec<String>,
    /// When the grant was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When access ends.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Active or being revoked.
    pub state: GrantState,
    /// The session limits applied for this grant (absent in records written before
    /// limits existed, and when none is set).
    #[serde(default, skip_serializing_if = "SessionLimits::is_empty")]
    pub session: SessionLimits,
}

/// The comment on a login role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RoleRecord {
    /// Always [`LEDGER_VERSION`] when written by this version.
    pub pgwarden: u32,
    /// The integration that created the role.
    pub integration: String,
    /// `ephemeral` (one grant, dropped at revocation) or `persistent`.
    pub mode: RoleMode,
    /// For persistent roles: when the password was last set.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub password_set_at: Option<OffsetDateTime>,
    /// The grants this role carries (exactly one for an ephemeral role).
    pub grants: Vec<GrantEntry>,
}

/// How a login role lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleMode {
    /// Created for one grant, dropped when it ends.
    Ephemeral,
    /// One per requester, kept (NOLOGIN) between grants.
    Persistent,
}

impl RoleRecord {
    /// The comment text: the record sealed for the role with `oid` and `name`, tagged
    /// with its grant ids' lookup tags.
    #[must_use]
    pub(crate) fn to_comment(&self, key: &LedgerKey, oid: u32, name: &str) -> String {
        let tags: Vec<String> = self
            .grants
            .iter()
            .map(|g| key.lookup_tag(&g.grant_id))
            .collect();
        seal_record(key, oid, name, &tags, self)
    }

    /// Opens a comment; `None` for anything that is not a record pgwarden sealed for
    /// this role with this key.
    #[must_use]
    pub(crate) fn from_comment(
        key: &LedgerKey,
        oid: u32,
        name: &str,
        comment: &str,
    ) -> Option<Self> {
        open_record(key, oid, name, comment)
    }

    /// `COMMENT ON ROLE name IS …`: the statement that writes this record on the role.
    pub(crate) fn comment_on(&self, key: &LedgerKey, oid: u32, name: &str) -> String {
        comment_on_role(name, &self.to_comment(key, oid, name))
    }

    /// The privilege roles its grants made it a member of.
    pub(crate) fn privilege_roles(&self) -> impl Iterator<Item = &String> {
        self.grants.iter().flat_map(|g| g.privilege_roles.iter())
    }
}

/// A record pgwarden seals into a role's comment.
trait Sealed: Serialize + serde::de::DeserializeOwned {
    /// The record's format (`pgwarden`).
    fn format(&self) -> u32;
}

impl Sealed for RoleRecord {
    fn format(&self) -> u32 {
        self.pgwarden
    }
}

impl Sealed for PrivilegeRecord {
    fn format(&self) -> u32 {
        self.pgwarden
    }
}

impl Sealed for MarkerRecord {
    fn format(&self) -> u32 {
        self.pgwarden
    }
}

/// `record` as JSON, sealed for the role with `oid` and `name`.
fn seal_record<T: Sealed>(
    key: &LedgerKey,
    oid: u32,
    name: &str,
    tags: &[String],
    record: &T,
) -> String {
    key.seal(
        oid,
        name,
        tags,
        &serde_json::to_string(record).unwrap_or_default(),
    )
}

/// The record sealed in `comment` for the role with `oid` and `name`, if it opens
/// with `key` and is of the current format.
fn open_record<T: Sealed>(key: &LedgerKey, oid: u32, name: &str, comment: &str) -> Option<T> {
    serde_json::from_str::<T>(&key.open(oid, name, comment)?)
        .ok()
        .filter(|r| r.format() >= LEDGER_VERSION)
}

/// State of a privilege role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PrivilegeState {
    /// Holds its privileges; safe to grant.
    Ready,
    /// Being dropped; must be re-granted before use.
    Retiring,
}

/// The comment on a privilege role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PrivilegeRecord {
    /// Always [`LEDGER_VERSION`] when written by this version.
    pub pgwarden: u32,
    /// What it grants.
    pub access: AccessEntry,
    /// Ready or retiring.
    pub state: PrivilegeState,
}

impl PrivilegeRecord {
    /// The comment text, sealed for the role with `oid` and `name`.
    #[must_use]
    pub(crate) fn to_comment(&self, key: &LedgerKey, oid: u32, name: &str) -> String {
        seal_record(key, oid, name, &[], self)
    }

    /// Opens a comment; `None` unless pgwarden sealed it for this role with this key.
    #[must_use]
    pub(crate) fn from_comment(
        key: &LedgerKey,
        oid: u32,
        name: &str,
        comment: &str,
    ) -> Option<Self> {
        open_record(key, oid, name, comment)
    }

    /// `COMMENT ON ROLE name IS …`: the statement that writes this record on the role.
    pub(crate) fn comment_on(&self, key: &LedgerKey, oid: u32, name: &str) -> String {
        comment_on_role(name, &self.to_comment(key, oid, name))
    }
}

/// The comment on the marker role, and on the other bookkeeping roles named after it
/// ([`UNTAGGED_ROLE`], the names roles): proof that pgwarden created the role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MarkerRecord {
    /// Always [`LEDGER_VERSION`] when written by this version.
    pub pgwarden: u32,
    /// What the role is for, in words.
    pub marker: String,
    /// On the marker: every login role is either named by its grant's id or a member
    /// of [`UNTAGGED_ROLE`], so a grant id is found (or proven absent) through indexes
    /// ([`LEDGER_ID_SQL`]). Absent (false) in records written before: `ensure_marker`
    /// then makes every existing login role a member of [`UNTAGGED_ROLE`] first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ids_by_name: bool,
}

impl MarkerRecord {
    /// The marker's record, as written before ids were found by name (and as
    /// adoption seals it).
    #[must_use]
    pub(crate) fn new() -> Self {
        MarkerRecord {
            pgwarden: LEDGER_VERSION,
            marker: "every login role pgwarden manages is a member of this role".into(),
            ids_by_name: false,
        }
    }

    /// The marker's record once every login role is named by its grant's id or a
    /// member of [`UNTAGGED_ROLE`].
    #[must_use]
    pub(crate) fn ids_by_name() -> Self {
        MarkerRecord {
            ids_by_name: true,
            ..Self::new()
        }
    }

    /// The record of another bookkeeping role, saying what it is for.
    #[must_use]
    pub(crate) fn bookkeeping(what: &str) -> Self {
        MarkerRecord {
            marker: what.to_owned(),
            ..Self::new()
        }
    }

    /// The comment text, sealed for the role with `oid` and `name`.
    #[must_use]
    pub(crate) fn to_comment(&self, key: &LedgerKey, oid: u32, name: &str) -> String {
        seal_record(key, oid, name, &[], self)
    }

    /// `COMMENT ON ROLE` on role `name`: the statement that writes this record on it.
    pub(crate) fn comment_on(&self, key: &LedgerKey, oid: u32, name: &str) -> String {
        comment_on_role(name, &self.to_comment(key, oid, name))
    }

    /// The record pgwarden sealed in `comment` for the role with `oid` and `name`, if
    /// it is one.
    #[must_use]
    pub(crate) fn open(key: &LedgerKey, oid: u32, name: &str, comment: &str) -> Option<Self> {
        open_record::<MarkerRecord>(key, oid, name, comment)
    }

    /// Whether `comment` is the marker record pgwarden sealed for the marker with `oid`.
    #[must_use]
    pub(crate) fn authentic(key: &LedgerKey, oid: u32, comment: &str) -> bool {
        Self::open(key, oid, MARKER_ROLE, comment).is_some()
    }
}

impl Default for MarkerRecord {
    fn default() -> Self {
        Self::new()
    }
}

/// A managed login role as found in the instance.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LedgerRole {
    /// The role's name.
    pub username: String,
    /// The role's oid (records are sealed for it).
    pub oid: u32,
    /// Its record; `None` when the comment is missing, foreign, forged, copied from
    /// another role or sealed with another key (drift: never acted on).
    pub record: Option<RoleRecord>,
    /// Whether the role has a comment at all (to tell "not pgwarden's" from "forged").
    pub has_comment: bool,
    /// The comment as read, when it holds a record: a revocation of the grant checks
    /// under the grant's lock that it is still exactly this, instead of reading it
    /// again (see `Seen` in the provisioner's hints).
    pub comment: Option<String>,
    /// Whether it may log in now.
    pub can_login: bool,
    /// Its `VALID UNTIL`.
    pub valid_until: Option<OffsetDateTime>,
    /// Roles it is a direct member of, except the marker and [`UNTAGGED_ROLE`].
    pub member_of: Vec<String>,
    /// Whether it has superuser, createrole, createdb, replication or bypassrls —
    /// none of which pgwarden ever gives.
    pub elevated: bool,
}

/// The ledger query, all of it or narrowed by a condition on `r` (the role; `AND …`);
/// `$1` is the marker role. Membership in the marker is a semi-join (`EXISTS`), not a
/// join, and roles are named by `to_regrole`/`pg_get_userbyid` (catalog cache look-ups),
/// not joined: driven by the narrowing condition, a look-up reads one role through the
/// `rolname` or `oid` index, and its memberships through `(member, roleid)`, whatever
/// the planner believes of the catalogs. (As joins, with statistics older than a
/// burst of grants, a cached generic plan read every member of the marker, 26 ms for
/// one role at 10,000 grants, and then merge-joined each role's memberships with the
/// whole `pg_authid`, 3 ms.)
///
/// A look-up (`$filter` narrowing to a few roles) fences the membership test with
/// `OFFSET 0`, which keeps it a sub-plan run per role read, on the `(roleid, member)`
/// index: flattened into a join, a generic plan that believed the marker had few
/// members scanned all of them (4 ms at 10,000 grants).
macro_rules! ledger_sql {
    (lookup, $filter:literal) => {
        ledger_sql!("OFFSET 0", $filter)
    };
    ($fence:literal, $filter:literal) => {
        concat!(
            "
SELECT r.rolname::text, d.description, r.rolcanlogin,
       NULLIF(NULLIF(r.rolvaliduntil, 'infinity'), '-infinity'),
       ARRAY(SELECT pg_catalog.pg_get_userbyid(m2.roleid)::pg_catalog.text
             FROM pg_catalog.pg_auth_members m2
             WHERE m2.member = r.oid
               AND m2.roleid OPERATOR(pg_catalog.<>) pg_catalog.to_regrole(pg_catalog.quote_ident($1::pg_catalog.text))::pg_catalog.oid
             ORDER BY 1),
       r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls,
       r.oid
FROM pg_catalog.pg_roles r
LEFT JOIN pg_catalog.pg_shdescription d
       ON d.objoid = r.oid AND d.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid
WHERE EXISTS (SELECT FROM pg_catalog.pg_auth_members m
              WHERE m.member = r.oid AND NOT m.admin_option
                AND m.roleid OPERATOR(pg_catalog.=) pg_catalog.to_regrole(pg_catalog.quote_ident($1::pg_catalog.text))::pg_catalog.oid
",
            $fence,
            ")
",
            $filter,
            "
ORDER BY 1"
        )
    };
}

/// Every managed role: the membership test may be planned as a join (it reads all the
/// marker's members anyway).
const LEDGER_SQL: &str = ledger_sql!("", "");
/// One role (`$2`).
pub(crate) const LEDGER_ROLE_SQL: &str = ledger_sql!(lookup, "AND r.rolname = $2");
/// The roles named in `$2` (an array).
const LEDGER_ROLES_SQL: &str = ledger_sql!(lookup, "AND r.rolname = ANY($2::pg_catalog.text[])");
/// Roles whose sealed comment (prefix `$3`) carries the lookup tag `$2` among its tags
/// (the field after the prefix; tags are hex, and the sealed body base64, so neither
/// holds a `:`). One pass over every shared description: the fallback of
/// [`LEDGER_ID_SQL`] where a grant must be proven absent without trusting that every
/// role was named by the rules (see [`scan_ledger_for_grant_cached`]). About 6 ms at
/// 10,000 grants.
const LEDGER_TAG_SQL: &str = ledger_sql!(
    lookup,
    "AND r.oid = ANY (ARRAY(
  SELECT s.objoid FROM pg_catalog.pg_shdescription s
  WHERE s.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid
    AND pg_catalog.starts_with(s.description, $3::pg_catalog.text)
    AND pg_catalog.strpos(pg_catalog.split_part(s.description, ':', 3), $2::pg_catalog.text) OPERATOR(pg_catalog.>) 0))"
);

/// The roles that may hold the grant whose lookup tag is `$2`, read through indexes
/// only, whatever the number of grants:
///
/// - every role named `<prefix><tag>_…` (a range of the `rolname` index) for each
///   registered username prefix: the roles named [`NAMES_ROLE_PREFIX`]`<prefix>`;
/// - the members of [`UNTAGGED_ROLE`] (the `(roleid, member)` index) whose sealed
///   comment (prefix `$3`) carries the tag among its tags.
///
/// The server keeps one plan for it (as it does for a prepared statement whose plan
/// does not depend on its values), so the plan must stay right as the roles grow:
///
/// - Those two names are written into the text, not passed: the planner then knows
///   that each reads a handful of rows, whether it plans for the values or once for
///   all. (As parameters, its one plan looked costlier than planning each run, so the
///   server planned every look-up anew: about 1 ms of a grant's 1.4 at 10,000 grants.)
///   `ledger::tests` checks the names written match.
/// - The prefixes and the untagged members are arrays computed first, and each name
///   range is a sub-query fenced with `OFFSET 0`, run once per prefix.
/// - It runs with `enable_seqscan` off ([`INDEX_SCANS`]), so each of those reads is
///   an index scan whatever the statistics said when the plan was made. (A plan made
///   while the instance had a few hundred roles read all of `pg_authid` once per
///   look-up and filtered the names: 30 ms at 10,000 grants.)
///
/// Every ephemeral role is named so, and every other login role is a member of
/// [`UNTAGGED_ROLE`] (see `ensure_marker`): a grant absent from these is absent. The
/// roles found are a superset, confirmed on their opened records like any read.
pub(crate) const LEDGER_ID_SQL: &str = ledger_sql!(
    lookup,
    "AND r.oid = ANY (ARRAY(
  SELECT t.oid
    FROM pg_catalog.unnest(ARRAY(
           SELECT pg_catalog.substr(p.rolname::pg_catalog.text, 24) OPERATOR(pg_catalog.||) $2::pg_catalog.text
             FROM pg_catalog.pg_roles p
            WHERE p.rolname OPERATOR(pg_catalog.>=) 'pgwarden_managed_names_'::pg_catalog.name
              AND p.rolname OPERATOR(pg_catalog.<) 'pgwarden_managed_names`'::pg_catalog.name)) AS b(base),
         LATERAL (SELECT t.oid FROM pg_catalog.pg_roles t
                   WHERE t.rolname OPERATOR(pg_catalog.>=) (b.base OPERATOR(pg_catalog.||) '_')::pg_catalog.name
                     AND t.rolname OPERATOR(pg_catalog.<) (b.base OPERATOR(pg_catalog.||) '`')::pg_catalog.name
                  OFFSET 0) t
  UNION ALL
  SELECT s.objoid FROM pg_catalog.pg_shdescription s
   WHERE s.objoid OPERATOR(pg_catalog.=) ANY (ARRAY(
           SELECT m.member FROM pg_catalog.pg_auth_members m
            WHERE m.roleid OPERATOR(pg_catalog.=) pg_catalog.to_regrole('pgwarden_managed_untagged')::pg_catalog.oid))
     AND s.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid
     AND pg_catalog.starts_with(s.description, $3::pg_catalog.text)
     AND pg_catalog.strpos(pg_catalog.split_part(s.description, ':', 3), $2::pg_catalog.text) OPERATOR(pg_catalog.>) 0))"
);

/// Every managed login role: members of the marker role, with their records.
pub(crate) async fn read_ledger<C: GenericClient>(
    client: &C,
    key: &LedgerKey,
) -> Result<Vec<LedgerRole>, tokio_postgres::Error> {
    let rows = client.query(LEDGER_SQL, &[&MARKER_ROLE]).await?;
    Ok(ledger_roles(&rows, key))
}

/// [`read_ledger`] through the connection's statement cache (the hot paths).
pub(crate) async fn read_ledger_cached<C: crate::sql::CachedQuery>(
    client: &C,
    key: &LedgerKey,
) -> Result<Vec<LedgerRole>, tokio_postgres::Error> {
    let rows = client.query_cached(LEDGER_SQL, &[&MARKER_ROLE]).await?;
    Ok(ledger_roles(&rows, key))
}

/// One managed role's ledger entry, if it is one (through the statement cache).
pub(crate) async fn read_ledger_role_cached<C: crate::sql::CachedQuery>(
    client: &C,
    key: &LedgerKey,
    username: &str,
) -> Result<Option<LedgerRole>, tokio_postgres::Error> {
    let rows = client
        .query_cached(LEDGER_ROLE_SQL, &[&MARKER_ROLE, &username])
        .await?;
    Ok(ledger_roles(&rows, key).into_iter().next())
}

/// The managed roles among `usernames` with their records, in one query (through the
/// statement cache): what a batch of expiries reads under its locks.
pub(crate) async fn read_ledger_roles_cached<C: crate::sql::CachedQuery>(
    client: &C,
    key: &LedgerKey,
    usernames: &[String],
) -> Result<Vec<LedgerRole>, tokio_postgres::Error> {
    let rows = client
        .query_cached(LEDGER_ROLES_SQL, &[&MARKER_ROLE, &usernames])
        .await?;
    Ok(ledger_roles(&rows, key))
}

/// The managed roles whose record may hold `grant_id`, found through indexes (see
/// [`LEDGER_ID_SQL`]; run it between [`INDEX_SCANS`] and [`INDEX_SCANS_END`]). A
/// superset: callers confirm on the opened records. Flat in the number of grants;
/// proves a grant absent once the ledger is named by the rules (`ensure_marker`).
pub(crate) async fn read_ledger_for_grant_cached<C: crate::sql::CachedQuery>(
    client: &C,
    key: &LedgerKey,
    grant_id: &str,
    scans: Seqscan,
) -> Result<Vec<LedgerRole>, tokio_postgres::Error> {
    let tag = key.lookup_tag(grant_id);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&MARKER_ROLE, &tag, &crate::seal::SEALED_PREFIX];
    let rows = match scans {
        Seqscan::AlreadyOff => client.query_cached(LEDGER_ID_SQL, &params).await?,
        Seqscan::TurnOff => query_with_index_scans(client, LEDGER_ID_SQL, &params).await?,
    };
    Ok(ledger_roles(&rows, key))
}

/// Whether a read that needs [`INDEX_SCANS`] must send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seqscan {
    /// The session already has it (a grant's first round trip).
    AlreadyOff,
    /// Send it around the read ([`query_with_index_scans`]).
    TurnOff,
}

/// `SET enable_seqscan = off`: sent before the reads whose one cached plan must use
/// indexes whatever the statistics said when it was made ([`LEDGER_ID_SQL`],
/// [`PRIVILEGE_RECORDS_SQL`]); [`INDEX_SCANS_END`] after them. A plan made while the
/// instance had a few hundred roles and comments otherwise read every role, or every
/// comment, on each run once there are thousands (5 to 30 ms at 10,000 grants, in a
/// bench run right after a burst of grants, before any `ANALYZE`).
pub(crate) const INDEX_SCANS: &str = "SET enable_seqscan = off";
/// Undoes [`INDEX_SCANS`].
pub(crate) const INDEX_SCANS_END: &str = "RESET enable_seqscan";
/// [`INDEX_SCANS`] for the rest of the current transaction only: undone by its end.
pub(crate) const INDEX_SCANS_IN_TRANSACTION: &str = "SET LOCAL enable_seqscan = off";

/// Runs the cached statement `sql` between [`INDEX_SCANS`] and [`INDEX_SCANS_END`],
/// in one round trip (prepared first, once per connection). In a transaction, a
/// failed read's rollback undoes the setting too; outside one, each of the three
/// messages is its own.
pub(crate) async fn query_with_index_scans<C: crate::sql::CachedQuery>(
    client: &C,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    client.prepare_only(sql).await?;
    let (off, rows, on) = futures_util::join!(
        client.batch(INDEX_SCANS),
        client.query_cached(sql, params),
        client.batch(INDEX_SCANS_END)
    );
    let rows = rows?;
    off.and(on)?;
    Ok(rows)
}

/// The managed roles whose comment carries `grant_id`'s lookup tag, read from every
/// role's comment (see [`LEDGER_TAG_SQL`]): grows with the number of grants, and
/// trusts nothing about names, so it also finds a role made by an earlier version of
/// pgwarden that nobody has named by the rules yet. A superset, confirmed like any read.
pub(crate) async fn scan_ledger_for_grant_cached<C: crate::sql::CachedQuery>(
    client: &C,
    key: &LedgerKey,
    grant_id: &str,
) -> Result<Vec<LedgerRole>, tokio_postgres::Error> {
    let rows = client
        .query_cached(
            LEDGER_TAG_SQL,
            &[
                &MARKER_ROLE,
                &key.lookup_tag(grant_id),
                &crate::seal::SEALED_PREFIX,
            ],
        )
        .await?;
    Ok(ledger_roles(&rows, key))
}

/// Prepares (once per connection) the statements [`read_ledger_role_cached`] and
/// [`read_ledger_for_grant_cached`] use: after it, they send their query when first
/// polled, so they can take their place in a pipeline.
pub(crate) async fn prepare_grant_lookup(
    client: &deadpool_postgres::ClientWrapper,
) -> Result<(), tokio_postgres::Error> {
    client.prepare_cached(LEDGER_ROLE_SQL).await?;
    client.prepare_cached(LEDGER_ID_SQL).await?;
    Ok(())
}

/// The role holding a grant, and the grant.
pub(crate) fn find_grant<'a>(
    ledger: &'a [LedgerRole],
    grant_id: &str,
) -> Option<(&'a LedgerRole, &'a GrantEntry)> {
    ledger.iter().find_map(|r| {
        r.record
            .as_ref()
            .and_then(|rec| rec.grants.iter().find(|g| g.grant_id == grant_id))
            .map(|g| (r, g))
    })
}

/// One role's oid and comment (`$1`): what its sealed record is checked against.
pub(crate) const ROLE_RECORD_SQL: &str = "
SELECT r.oid, d.description FROM pg_catalog.pg_roles r
LEFT JOIN pg_catalog.pg_shdescription d ON d.objoid = r.oid AND d.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid
WHERE r.rolname = $1";

/// The roles named in `$1` (a `name[]`), each as oid, name and comment: what
/// [`privilege_ready`] decides on. The one read of privilege roles' readiness, run
/// through the statement cache. A role without a comment gives no row (it is not
/// ready). Names are resolved by `to_regrole`, and oids named by `pg_get_userbyid`
/// (catalog cache look-ups), not through the `pg_roles` view; the oids are an array
/// computed first, so the plan is one index scan that the server caches as a generic
/// plan. (Written as a join of the names with the descriptions, it was planned anew on
/// every run and cost 0.13 against 0.08 ms inside a grant's transaction, pgbench.)
pub(crate) const PRIVILEGE_RECORDS_SQL: &str = "\
SELECT d.objoid, pg_catalog.pg_get_userbyid(d.objoid)::pg_catalog.text, d.description \
  FROM pg_catalog.pg_shdescription d \
 WHERE d.objoid OPERATOR(pg_catalog.=) ANY (ARRAY( \
         SELECT pg_catalog.to_regrole(pg_catalog.quote_ident(n::pg_catalog.text))::pg_catalog.oid \
           FROM pg_catalog.unnest($1::pg_catalog.name[]) AS n)) \
   AND d.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid";

/// Which of `names` are privilege roles whose authentic record says "ready".
pub(crate) async fn ready_among<C: crate::sql::CachedQuery>(
    client: &C,
    key: &LedgerKey,
    names: &[String],
) -> Result<HashSet<String>, tokio_postgres::Error> {
    let rows = query_with_index_scans(client, PRIVILEGE_RECORDS_SQL, &[&names]).await?;
    Ok(ready_in(&rows, key))
}

/// The names among [`PRIVILEGE_RECORDS_SQL`]'s rows whose record says "ready".
pub(crate) fn ready_in(rows: &[tokio_postgres::Row], key: &LedgerKey) -> HashSet<String> {
    rows.iter()
        .filter_map(|r| {
            let (oid, name, comment): (u32, String, Option<String>) =
                (r.get(0), r.get(1), r.get(2));
            privilege_ready(key, oid, &name, comment.as_deref()).then_some(name)
        })
        .collect()
}

/// The one readiness rule: the role carries a record pgwarden sealed for it, in state
/// ready. A role made or altered by anyone else — even under a privilege role's name,
/// with a comment copied from a real one — is never used.
pub(crate) fn privilege_ready(
    key: &LedgerKey,
    oid: u32,
    name: &str,
    comment: Option<&str>,
) -> bool {
    comment
        .and_then(|c| PrivilegeRecord::from_comment(key, oid, name, c))
        .is_some_and(|p| p.state == PrivilegeState::Ready)
}

/// The rows of a ledger query, with their records opened.
pub(crate) fn ledger_roles(rows: &[tokio_postgres::Row], key: &LedgerKey) -> Vec<LedgerRole> {
    rows.iter()
        .map(|row| {
            let (username, comment, oid): (String, Option<String>, u32) =
                (row.get(0), row.get(1), row.get(6));
            // Membership in the untagged role is bookkeeping, like the marker's.
            let mut member_of: Vec<String> = row.get(4);
            member_of.retain(|g| g != UNTAGGED_ROLE);
            let record = comment
                .as_deref()
                .and_then(|c| RoleRecord::from_comment(key, oid, &username, c));
            LedgerRole {
                has_comment: comment.is_some(),
                comment: comment.filter(|_| record.is_some()),
                record,
                username,
                oid,
                can_login: row.get(2),
                valid_until: row.get(3),
                member_of,
                elevated: row.get(5),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgwarden_core::resource::{PermissionLevel, ResourceId};

    #[test]
    fn records_round_trip_and_foreign_comments_are_ignored() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let rec = RoleRecord {
            pgwarden: LEDGER_VERSION,
            integration: "orders".into(),
            mode: RoleMode::Ephemeral,
            password_set_at: None,
            grants: vec![GrantEntry {
                grant_id: "g1".into(),
                requester: "alice@example.com".into(),
                access: vec![
                    AccessEntry::new(ResourceId::schema("app", "s"), PermissionLevel::ReadOnly)
                        .unwrap(),
                ],
                privilege_roles: vec!["pgwarden_p_x".into()],
                created_at: now,
                expires_at: now + time::Duration::hours(1),
                state: GrantState::Active,
                session: SessionLimits::default(),
            }],
        };
        let key = LedgerKey::generate();
        let text = rec.to_comment(&key, 16_384, "pgw_alice");
        assert!(
            text.starts_with(crate::seal::SEALED_PREFIX) && !text.contains("app/s"),
            "sealed and unreadable: {text}"
        );
        assert!(text.contains(&key.lookup_tag("g1")), "{text}");
        assert_eq!(
            RoleRecord::from_comment(&key, 16_384, "pgw_alice", &text),
            Some(rec.clone())
        );
        // Copied onto a role recreated under the same name, or onto another role.
        assert_eq!(
            RoleRecord::from_comment(&key, 16_385, "pgw_alice", &text),
            None
        );
        assert_eq!(
            RoleRecord::from_comment(&key, 16_384, "pgw_bob", &text),
            None
        );
        // The plain JSON of format 1 is anybody's to write: not a record.
        let plain = serde_json::to_string(&rec).unwrap();
        assert_eq!(
            RoleRecord::from_comment(&key, 16_384, "pgw_alice", &plain),
            None
        );
        assert_eq!(
            RoleRecord::from_comment(&key, 16_384, "pgw_alice", "analysts team"),
            None
        );
    }

    #[test]
    fn the_id_look_up_names_the_bookkeeping_roles_it_reads() {
        use pgwarden_core::naming::NAMES_ROLE_PREFIX;
        // The names roles' range: [prefix, prefix with its last byte moved up).
        let mut end = NAMES_ROLE_PREFIX.to_owned();
        let last = end.pop().unwrap();
        end.push(char::from(u8::try_from(last).unwrap() + 1));
        for literal in [NAMES_ROLE_PREFIX, &end, UNTAGGED_ROLE] {
            assert!(
                LEDGER_ID_SQL.contains(&format!("'{literal}'")),
                "{literal} not in the look-up"
            );
        }
        assert!(LEDGER_ID_SQL.contains(&format!(
            "substr(p.rolname::pg_catalog.text, {})",
            NAMES_ROLE_PREFIX.len() + 1
        )));
    }

    #[test]
    fn session_limits_are_recorded_and_old_records_still_read() {
        let old = r#"{"grant_id":"g1","requester":"a","access":[],"privilege_roles":[],
            "created_at":"2027-01-15T08:00:00Z","expires_at":"2027-01-15T09:00:00Z",
            "state":"active"}"#;
        let mut g: GrantEntry = serde_json::from_str(old).unwrap();
        assert!(g.session.is_empty());
        assert!(!serde_json::to_string(&g).unwrap().contains("session"));
        g.session.connection_limit = Some(2);
        g.session.pgaudit_log = Some("read".into());
        let text = serde_json::to_string(&g).unwrap();
        assert!(
            text.contains(r#""session":{"connection_limit":2,"pgaudit_log":"read"}"#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<GrantEntry>(&text).unwrap(), g);
    }
}
