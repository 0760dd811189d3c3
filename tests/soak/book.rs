//! What the soak did and saw: the grants it made, the faults it injected, counters,
//! and the lateness allowance of an expiry.

use std::collections::{BTreeMap, HashMap};

use pgwarden::pg_driver::Connection;
use secrecy::SecretString;
use time::OffsetDateTime;

/// How often the sweeper re-reads the ledger.
pub(crate) const SWEEP: std::time::Duration = std::time::Duration::from_millis(250);
/// Slack on every expiry deadline: a debug build on 2 loaded cores.
pub(crate) const SLACK: time::Duration = time::Duration::seconds(2);

/// A fault the soak injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum FaultKind {
    /// `pg_terminate_backend` of every session of the connector role.
    KillBackends,
    /// `pg_ctl stop -m immediate` and start again.
    Restart,
    /// Scripted secret-store failures around a credential rotation.
    StoreFailure,
    /// A grant or revoke whose future is dropped after 0–30 ms.
    Cancel,
}

/// One injected fault.
#[derive(Debug, Clone)]
pub(crate) struct Fault {
    /// Which.
    pub(crate) kind: FaultKind,
    /// In which phase.
    pub(crate) phase: usize,
    /// When it started.
    pub(crate) start: OffsetDateTime,
    /// How long it lasted.
    pub(crate) duration: time::Duration,
    /// What exactly happened.
    pub(crate) detail: String,
}

/// How an explicit revocation of a grant ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RevokeOutcome {
    /// Not asked for.
    None,
    /// Returned Ok.
    Ok,
    /// Returned an error (the server may have finished it anyway).
    Failed,
    /// Its future was dropped half-way.
    Cancelled,
}

/// A grant whose `grant()` returned Ok.
#[derive(Debug, Clone)]
pub(crate) struct Tracked {
    /// The login role.
    pub(crate) username: String,
    /// Its password.
    pub(crate) password: SecretString,
    /// Its expiry as last known (grant, extension, or a listing).
    pub(crate) expires_at: OffsetDateTime,
    /// An extension failed: it may have committed, so `expires_at` may be stale
    /// until the next listing shows the grant.
    pub(crate) expiry_uncertain: bool,
    /// What an explicit revocation did.
    pub(crate) revoke: RevokeOutcome,
    /// The phase it was made in.
    pub(crate) phase: usize,
}

/// Counters for the final figures.
#[derive(Debug, Default, Clone)]
pub(crate) struct Counts {
    pub(crate) grants_ok: usize,
    pub(crate) grants_failed: usize,
    pub(crate) extends_ok: usize,
    pub(crate) extends_failed: usize,
    pub(crate) revokes_ok: usize,
    pub(crate) revokes_failed: usize,
    pub(crate) cancelled_grants: usize,
    pub(crate) cancelled_revokes: usize,
    pub(crate) cancelled_completed: usize,
    pub(crate) logins_ok: usize,
    pub(crate) logins_refused: usize,
    pub(crate) sessions_held: usize,
    pub(crate) sessions_seen_ended: usize,
    pub(crate) rotations_ok: usize,
    pub(crate) rotations_failed: usize,
    pub(crate) checks: usize,
    pub(crate) list_retries: usize,
}

/// Everything the soak tracks, behind one mutex (never held across an await).
#[derive(Default)]
pub(crate) struct Book {
    /// Grants made, by id.
    pub(crate) grants: HashMap<String, Tracked>,
    /// Counters.
    pub(crate) counts: Counts,
    /// Every fault so far.
    pub(crate) faults: Vec<Fault>,
    /// Grantee sessions kept open, with their grant id: a revocation must end them.
    pub(crate) sessions: Vec<(String, Connection)>,
    /// The largest lateness of an expiry beyond its expiry (audit time minus expiry).
    pub(crate) max_lateness: time::Duration,
    /// The grant of that lateness.
    pub(crate) max_lateness_grant: String,
    /// Operations that did not finish within the bound: each is a failure.
    pub(crate) hangs: Vec<String>,
}

impl Book {
    /// Faults per kind.
    pub(crate) fn faults_by_kind(&self) -> BTreeMap<FaultKind, usize> {
        let mut n = BTreeMap::new();
        for f in &self.faults {
            *n.entry(f.kind).or_insert(0) += 1;
        }
        n
    }

    /// Records a fault.
    pub(crate) fn fault(
        &mut self,
        kind: FaultKind,
        phase: usize,
        start: OffsetDateTime,
        took: std::time::Duration,
        detail: String,
    ) {
        self.faults.push(Fault {
            kind,
            phase,
            start,
            duration: to_time(took),
            detail,
        });
    }
}

/// A std duration as a `time` one.
pub(crate) fn to_time(d: std::time::Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

/// How late after `expiry` a grant seen at `seen` may still be there: the sweep
/// interval, the slack, and the whole duration of every fault that overlapped the
/// window from one sweep interval before the expiry (a sweeper that lost its lock
/// just before sleeps one interval) up to `seen`.
pub(crate) fn allowance(
    faults: &[Fault],
    expiry: OffsetDateTime,
    seen: OffsetDateTime,
) -> time::Duration {
    let from = expiry - to_time(SWEEP);
    let mut allowed = to_time(SWEEP) + SLACK;
    for f in faults {
        if f.start <= seen && f.start + f.duration >= from {
            allowed += f.duration;
        }
    }
    allowed
}
