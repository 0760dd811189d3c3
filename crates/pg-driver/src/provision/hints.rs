//! Finding a grant by its id: the roles that may hold it, read through indexes
//! ([`read_ledger_for_grant_cached`]), and where this process last saw each grant: a
//! hint that makes that a read of one role by name (a persistent role's grants are
//! otherwise matched among all of [`pgwarden_core::naming::UNTAGGED_ROLE`]'s members).
//!
//! Only a hint: the role it names is read and its sealed record checked like any
//! ledger entry, and when the record does not hold the grant (the hint is stale, or
//! another process moved things) the indexed read decides. Hints are kept for grants
//! this process made, found or listed, and dropped when it revokes them; at most
//! [`MAX_HINTS`], after which the oldest half is forgotten.
//!
//! For an ephemeral grant the hint also keeps what was [`Seen`] of its role (oid,
//! sealed comment, memberships), so that its revocation confirms them under the
//! grant's lock in the round trip that marks it, instead of reading them first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::Provisioner;
use crate::ledger::{
    LedgerRole, RoleMode, RoleRecord, Seqscan, find_grant, read_ledger_for_grant_cached,
    read_ledger_role_cached, scan_ledger_for_grant_cached,
};

/// The most hints kept (about 100 bytes each, and about 1 KB with what was [`Seen`]).
pub(crate) const MAX_HINTS: usize = 100_000;

/// What this process last wrote or read of an ephemeral grant's login role: what its
/// revocation checks is still there, under the grant's lock, before it marks the
/// grant on that knowledge (one round trip instead of a read, then the mark).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    /// The role's oid.
    pub(crate) oid: u32,
    /// Its sealed comment, exactly as stored.
    pub(crate) comment: String,
    /// The roles it is a direct member of, except pgwarden's bookkeeping roles:
    /// sorted by bytes, without repeats.
    pub(crate) member_of: Vec<String>,
}

impl Seen {
    /// What `role`, as read from the ledger, shows; `None` unless its record is an
    /// ephemeral grant's.
    pub(crate) fn of(role: &LedgerRole) -> Option<Seen> {
        Seen::written(role, role.record.as_ref()?, role.comment.clone()?)
    }

    /// What `role` shows once `record`, sealed as `comment`, is written on it;
    /// `None` unless `record` is an ephemeral grant's.
    pub(crate) fn written(role: &LedgerRole, record: &RoleRecord, comment: String) -> Option<Seen> {
        if record.mode != RoleMode::Ephemeral || record.grants.len() != 1 {
            return None;
        }
        Some(Seen::new(role.oid, comment, role.member_of.iter().cloned()))
    }

    /// Seen: `oid`, `comment`, and memberships `member_of` (in any order).
    pub(crate) fn new(oid: u32, comment: String, member_of: impl Iterator<Item = String>) -> Seen {
        let mut member_of: Vec<String> = member_of.collect();
        member_of.sort_unstable();
        member_of.dedup();
        Seen {
            oid,
            comment,
            member_of,
        }
    }
}

/// Grant id → login role, most recent last.
#[derive(Debug, Default)]
pub(crate) struct GrantHints {
    inner: Mutex<Hints>,
}

#[derive(Debug, Default)]
struct Hints {
    by_grant: HashMap<String, Hint>,
    order: VecDeque<String>,
}

/// Where a grant was last seen.
#[derive(Debug)]
struct Hint {
    username: String,
    seen: Option<Seen>,
}

impl Hints {
    /// Grant `grant_id` is on role `username`, which showed `seen`; the oldest half
    /// is forgotten past [`MAX_HINTS`].
    fn insert(&mut self, grant_id: &str, username: &str, seen: Option<Seen>) {
        let hint = Hint {
            username: username.to_owned(),
            seen,
        };
        if self.by_grant.insert(grant_id.to_owned(), hint).is_none() {
            self.order.push_back(grant_id.to_owned());
        }
        if self.by_grant.len() > MAX_HINTS {
            while self.by_grant.len() > MAX_HINTS / 2 {
                let Some(old) = self.order.pop_front() else {
                    break;
                };
                self.by_grant.remove(&old);
            }
        }
        // Forgetting is a map removal, not a scan of the queue, so the queue also holds
        // ids forgotten since: it is swept of them once it is twice the bound, which
        // keeps each call's cost constant on average.
        if self.order.len() > 2 * MAX_HINTS {
            let Hints { by_grant, order } = self;
            order.retain(|g| by_grant.contains_key(g));
        }
    }
}

impl GrantHints {
    fn lock(&self) -> std::sync::MutexGuard<'_, Hints> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Grant `grant_id` is on role `username` (what was seen of that role is kept).
    pub(crate) fn remember(&self, grant_id: &str, username: &str) {
        let mut h = self.lock();
        if h.by_grant
            .get(grant_id)
            .is_none_or(|hint| hint.username != username)
        {
            h.insert(grant_id, username, None);
        }
    }

    /// Grant `grant_id` is on role `username`, which showed `seen`.
    pub(crate) fn remember_seen(&self, grant_id: &str, username: &str, seen: Option<Seen>) {
        self.lock().insert(grant_id, username, seen);
    }

    /// Grant `grant_id` is gone.
    pub(crate) fn forget(&self, grant_id: &str) {
        self.lock().by_grant.remove(grant_id);
    }

    /// The role grant `grant_id` was last seen on.
    pub(crate) fn get(&self, grant_id: &str) -> Option<String> {
        self.lock()
            .by_grant
            .get(grant_id)
            .map(|h| h.username.clone())
    }

    /// The role grant `grant_id` was last seen on, and what it showed then.
    pub(crate) fn get_seen(&self, grant_id: &str) -> Option<(String, Option<Seen>)> {
        self.lock()
            .by_grant
            .get(grant_id)
            .map(|h| (h.username.clone(), h.seen.clone()))
    }
}

impl Provisioner {
    /// The managed roles that may hold `grant_id`, with their records: the hinted role
    /// when its record holds the grant, else the roles found from the id through
    /// indexes ([`read_ledger_for_grant_cached`]). Proves the grant absent once
    /// `ensure_marker` ran: what a grant decides on.
    pub(crate) async fn ledger_for_grant<C: crate::sql::CachedQuery>(
        &self,
        client: &C,
        grant_id: &str,
        scans: Seqscan,
    ) -> Result<Vec<LedgerRole>, tokio_postgres::Error> {
        let key = &self.config.ledger_key;
        if let Some(username) = self.hints.get(grant_id) {
            let role: Vec<LedgerRole> = read_ledger_role_cached(client, key, &username)
                .await?
                .into_iter()
                .collect();
            if find_grant(&role, grant_id).is_some() {
                return Ok(role);
            }
            self.hints.forget(grant_id);
        }
        read_ledger_for_grant_cached(client, key, grant_id, scans).await
    }

    /// [`Self::ledger_for_grant`], and when that finds no grant, every role whose
    /// comment carries the grant's lookup tag (the scan, which trusts nothing about
    /// names): what revoking and extending decide on. A grant that exists is found
    /// through indexes; only "there is no such grant" pays for the scan, so that a
    /// login role no process of this version has made findable yet (one made by an
    /// earlier version while this one runs) is still revoked, never reported gone.
    pub(crate) async fn ledger_for_grant_or_scan<C: crate::sql::CachedQuery>(
        &self,
        client: &C,
        grant_id: &str,
    ) -> Result<Vec<LedgerRole>, tokio_postgres::Error> {
        let found = self
            .ledger_for_grant(client, grant_id, Seqscan::TurnOff)
            .await?;
        if find_grant(&found, grant_id).is_some() {
            return Ok(found);
        }
        scan_ledger_for_grant_cached(client, &self.config.ledger_key, grant_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_are_bounded_and_forgotten() {
        let h = GrantHints::default();
        h.remember("g1", "u1");
        let seen = Seen::new(
            7,
            "c".into(),
            ["b".to_owned(), "a".into(), "b".into()].into_iter(),
        );
        assert_eq!(seen.member_of, ["a", "b"]);
        h.remember_seen("g1", "u2", Some(seen.clone()));
        assert_eq!(h.get("g1").as_deref(), Some("u2"));
        assert_eq!(h.get_seen("g1"), Some(("u2".to_owned(), Some(seen))));
        h.remember("g1", "u2");
        assert!(
            h.get_seen("g1").unwrap().1.is_some(),
            "kept for the same role"
        );
        h.remember("g1", "u3");
        assert_eq!(h.get_seen("g1"), Some(("u3".to_owned(), None)));
        h.forget("g1");
        assert_eq!(h.get("g1"), None);
        for i in 0..=MAX_HINTS {
            h.remember(&format!("g{i}"), "u");
        }
        let kept = h.lock().by_grant.len();
        assert!(kept <= MAX_HINTS / 2 + 1, "{kept}");
        // The newest are kept.
        assert!(h.get(&format!("g{MAX_HINTS}")).is_some());
        assert!(h.get("g0").is_none());
    }
}
