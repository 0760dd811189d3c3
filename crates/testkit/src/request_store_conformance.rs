//! The conformance suite every [`RequestStore`] implementation's tests call.
//!
//! [`run`] runs every check against one store: the in-memory store and the PostgreSQL
//! store must behave alike. Ids and integration names are made unique per call
//! ([`unique`]), so one database can serve many tests at once; listing checks filter on
//! an integration of their own. Checks fail by panicking, as tests do.

#![allow(
    clippy::missing_panics_doc,
    reason = "every check is an assertion: panicking is how it reports"
)]

use std::sync::Arc;

use pgwarden_core::duration::Ttl;
use pgwarden_core::requests::{
    RequestFilter, RequestState, RequestStore, StoreError, StoredRequest, Vote,
};
use pgwarden_core::resource::AccessEntry;
use time::OffsetDateTime;

/// A name no other check uses: `<prefix>-<pid>-<nanos>-<counter>-<name>`.
#[must_use]
pub fn unique(prefix: &str, name: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{nanos}-{n}-{name}", std::process::id())
}

/// A justification in several scripts, with quotes and a newline.
pub const UNICODE_JUSTIFICATION: &str =
    "incident ñ 42 — 日本のデータベース 😀; it's \"urgent\"\nsecond line \\ done";

fn entry(s: &str) -> AccessEntry {
    s.parse().expect("a valid access entry")
}

/// A pending request of `requester` on `integration`, with two access entries.
#[must_use]
pub fn sample(integration: &str, requester: &str) -> StoredRequest {
    StoredRequest::new(
        StoredRequest::new_id(),
        integration,
        requester,
        vec![
            entry("postgresql-schema:app/public=read-only"),
            entry("postgresql-table:app/sales/orders=read-write"),
        ],
        Ttl::from_secs(3600).expect("non-zero"),
        Some("ticket 1".to_owned()),
    )
}

/// Runs every check against `store`.
pub async fn run(store: Arc<dyn RequestStore>, prefix: &str) {
    round_trip(&*store, prefix).await;
    not_found(&*store, prefix).await;
    duplicate_id(&*store, prefix).await;
    invalid_records(&*store, prefix).await;
    versions(&*store, prefix).await;
    transitions(&*store, prefix).await;
    list(&*store, prefix).await;
    concurrent_updates(store, prefix, 16).await;
}

/// Every field comes back as written: unicode, several entries, votes, timestamps to
/// the nanosecond; the stored version is 1.
pub async fn round_trip(store: &dyn RequestStore, prefix: &str) {
    let at =
        OffsetDateTime::from_unix_timestamp_nanos(1_760_000_000_123_456_789).expect("a valid time");
    let mut r = sample(&unique(prefix, "app"), "ålice@例え.jp");
    r.justification = Some(UNICODE_JUSTIFICATION.to_owned());
    r.access.push(entry("postgresql-role:analysts=member"));
    r.duration = "1h30m".parse().expect("a valid duration");
    r.flow = Some("read-only — self serve".to_owned());
    r.state = RequestState::Granted;
    r.approvals = vec![
        Vote {
            by: "bob".to_owned(),
            reason: Some("ok 👍".to_owned()),
            at,
        },
        Vote {
            by: "carol".to_owned(),
            reason: None,
            at: at + time::Duration::seconds(5),
        },
    ];
    r.failure = Some("an earlier attempt failed".to_owned());
    r.username = Some("pgw_alice_x1y2z3".to_owned());
    r.expires_at = Some(at + time::Duration::hours(1));
    r.review_required = true;
    r.labels = vec!["break-glass".to_owned(), "pii".to_owned()];
    r.again_of = Some("req_previous".to_owned());
    r.created_at = at - time::Duration::minutes(1);
    r.updated_at = at;
    r.version = 7; // whatever the caller holds, an insert stores version 1

    let stored = store.insert(&r).await.expect("insert");
    assert_eq!(stored.version, 1);
    let mut expected = r.clone();
    expected.version = 1;
    assert_eq!(stored, expected);
    let got = store.get(&r.id).await.expect("get").expect("found");
    assert_eq!(got, expected);

    let mut rejected = sample(&unique(prefix, "app"), "dave");
    rejected.state = RequestState::Rejected;
    rejected.rejection = Some(Vote::new("erin", Some("not during the freeze".to_owned())));
    rejected.justification = None;
    store.insert(&rejected).await.expect("insert");
    let got = store.get(&rejected.id).await.expect("get").expect("found");
    assert_eq!(got.rejection, rejected.rejection);
    assert_eq!(got.justification, None);
}

/// A missing id: `get` finds nothing, `update` is `NotFound`.
pub async fn not_found(store: &dyn RequestStore, prefix: &str) {
    let missing = unique(prefix, "missing");
    assert_eq!(store.get(&missing).await.expect("get"), None);
    let mut r = sample(&unique(prefix, "app"), "alice");
    r.id.clone_from(&missing);
    r.version = 1;
    let e = store
        .update(&r)
        .await
        .expect_err("updating a missing request");
    assert_eq!(
        e,
        StoreError::NotFound {
            id: missing.clone()
        }
    );
    assert!(e.to_string().contains(&missing), "{e}");
    assert!(!e.is_retryable());
}

/// Inserting an id twice: `DuplicateId`, the first record kept.
pub async fn duplicate_id(store: &dyn RequestStore, prefix: &str) {
    let first = sample(&unique(prefix, "app"), "alice");
    store.insert(&first).await.expect("insert");
    let mut second = sample(&unique(prefix, "other"), "mallory");
    second.id.clone_from(&first.id);
    let e = store.insert(&second).await.expect_err("a duplicate id");
    assert_eq!(
        e,
        StoreError::DuplicateId {
            id: first.id.clone()
        }
    );
    let got = store.get(&first.id).await.expect("get").expect("found");
    assert_eq!(got.requester, "alice");
}

/// Records without an id, requester or access are refused, naming the field.
pub async fn invalid_records(store: &dyn RequestStore, prefix: &str) {
    let mut r = sample(&unique(prefix, "app"), "alice");
    r.requester = String::new();
    let e = store.insert(&r).await.expect_err("no requester");
    assert!(
        matches!(&e, StoreError::Invalid(m) if m.contains("requester")),
        "{e:?}"
    );
    let mut r = sample(&unique(prefix, "app"), "alice");
    r.access.clear();
    let e = store.insert(&r).await.expect_err("no access");
    assert!(
        matches!(&e, StoreError::Invalid(m) if m.contains("access")),
        "{e:?}"
    );
    let mut r = sample(&unique(prefix, "app"), "alice");
    r.id = "x".repeat(201);
    assert!(matches!(
        store.insert(&r).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.get(&r.id).await.expect("get"), None);
}

/// Each update bumps the version and `updated_at`; an update from a stale version is a
/// `Conflict` and changes nothing.
pub async fn versions(store: &dyn RequestStore, prefix: &str) {
    let mut r = sample(&unique(prefix, "app"), "alice");
    r.updated_at = r.created_at - time::Duration::hours(1);
    let v1 = store.insert(&r).await.expect("insert");
    let mut change = v1.clone();
    change.approvals.push(Vote::new("bob", None));
    let v2 = store.update(&change).await.expect("update");
    assert_eq!(v2.version, 2);
    assert!(v2.updated_at > v1.updated_at);
    assert_eq!(store.get(&r.id).await.expect("get"), Some(v2.clone()));

    let mut stale = v1.clone();
    stale.labels.push("stale".to_owned());
    let e = store.update(&stale).await.expect_err("a stale version");
    assert_eq!(
        e,
        StoreError::Conflict {
            id: r.id.clone(),
            expected: 1,
            found: 2
        }
    );
    assert!(e.to_string().contains("read it again"), "{e}");
    assert_eq!(store.get(&r.id).await.expect("get"), Some(v2.clone()));

    let mut ahead = v2.clone();
    ahead.version = 9;
    assert!(matches!(
        store.update(&ahead).await,
        Err(StoreError::Conflict {
            expected: 9,
            found: 2,
            ..
        })
    ));
    let v3 = store
        .update(&v2)
        .await
        .expect("update from the current version");
    assert_eq!(v3.version, 3);
}

/// The whole lifecycle is accepted; moves the lifecycle forbids are
/// `InvalidTransition` and change nothing; staying in a state is an ordinary update.
pub async fn transitions(store: &dyn RequestStore, prefix: &str) {
    let mut r = store
        .insert(&sample(&unique(prefix, "app"), "alice"))
        .await
        .expect("insert");
    for next in [
        RequestState::Approved,
        RequestState::Granted,
        RequestState::Revoking,
    ] {
        r.transition(next).expect("an allowed move");
        r = store.update(&r).await.expect("an allowed move");
    }
    // A failed revocation stays revoking, saying why.
    r.failure = Some("sessions still open".to_owned());
    r = store.update(&r).await.expect("same state");
    assert_eq!(r.state, RequestState::Revoking);
    r.transition(RequestState::Revoked).expect("allowed");
    r = store.update(&r).await.expect("revoked");
    assert_eq!(r.version, 6);

    // Closed: nothing moves out, even bypassing `transition`.
    for next in RequestState::ALL {
        if next == RequestState::Revoked {
            continue;
        }
        let mut bad = r.clone();
        bad.state = next;
        let e = store.update(&bad).await.expect_err("out of a closed state");
        assert_eq!(
            e,
            StoreError::InvalidTransition {
                id: r.id.clone(),
                transition: pgwarden_core::requests::InvalidTransition {
                    from: RequestState::Revoked,
                    to: next
                }
            }
        );
    }
    assert_eq!(store.get(&r.id).await.expect("get"), Some(r.clone()));

    // Forbidden moves from an open state.
    let pending = store
        .insert(&sample(&unique(prefix, "app"), "alice"))
        .await
        .expect("insert");
    for next in [
        RequestState::Revoking,
        RequestState::Expired,
        RequestState::Revoked,
    ] {
        let mut bad = pending.clone();
        bad.state = next;
        assert!(
            matches!(
                store.update(&bad).await,
                Err(StoreError::InvalidTransition { .. })
            ),
            "pending -> {next}"
        );
    }
    // A conflict is reported before the transition.
    let mut stale = pending.clone();
    stale.version = 5;
    stale.state = RequestState::Revoked;
    assert!(matches!(
        store.update(&stale).await,
        Err(StoreError::Conflict { .. })
    ));
    // The automatic flow: pending straight to granted.
    let mut auto = pending;
    auto.transition(RequestState::Granted).expect("allowed");
    assert_eq!(
        store.update(&auto).await.expect("granted").state,
        RequestState::Granted
    );
}

/// Listing by integration, states (any of), requester and limit, newest first.
pub async fn list(store: &dyn RequestStore, prefix: &str) {
    let app = unique(prefix, "list");
    let base = OffsetDateTime::from_unix_timestamp(1_750_000_000).expect("a valid time");
    let plan = [
        ("alice", RequestState::Pending),
        ("bob", RequestState::Pending),
        ("alice", RequestState::Granted),
        ("alice", RequestState::Rejected),
        ("bob", RequestState::Cancelled),
    ];
    let mut ids = Vec::new();
    for (i, (requester, state)) in (0i64..).zip(plan) {
        let mut r = sample(&app, requester);
        r.state = state;
        r.created_at = base + time::Duration::seconds(i);
        r.updated_at = r.created_at;
        store.insert(&r).await.expect("insert");
        ids.push(r.id);
    }
    // Another integration's requests are never listed with this one's.
    store
        .insert(&sample(&unique(prefix, "list-other"), "alice"))
        .await
        .expect("insert");

    let listed = |filter: RequestFilter| async move {
        store
            .list(&filter)
            .await
            .expect("list")
            .into_iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    let all = RequestFilter::default().integration(app.clone());
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(listed(all.clone()).await, newest_first);
    assert_eq!(
        listed(all.clone().state(RequestState::Pending)).await,
        [ids[1].clone(), ids[0].clone()]
    );
    assert_eq!(
        listed(
            all.clone()
                .state(RequestState::Granted)
                .state(RequestState::Cancelled)
        )
        .await,
        [ids[4].clone(), ids[2].clone()]
    );
    assert_eq!(
        listed(all.clone().requester("alice")).await,
        [ids[3].clone(), ids[2].clone(), ids[0].clone()]
    );
    assert_eq!(
        listed(all.clone().requester("bob").state(RequestState::Pending)).await,
        [ids[1].clone()]
    );
    assert_eq!(
        listed(all.clone().limit(2)).await,
        [ids[4].clone(), ids[3].clone()]
    );
    assert_eq!(listed(all.clone().limit(0)).await, Vec::<String>::new());
    assert_eq!(
        listed(all.clone().state(RequestState::Expired)).await,
        Vec::<String>::new()
    );
    assert_eq!(
        listed(RequestFilter::default().integration(unique(prefix, "none"))).await,
        Vec::<String>::new()
    );
    // Without an integration, both of this check's integrations' requests are there.
    let everything = store
        .list(&RequestFilter::default().requester("alice"))
        .await
        .expect("list");
    for id in [&ids[0], &ids[2], &ids[3]] {
        assert!(everything.iter().any(|r| &r.id == id));
    }
}

/// `n` writers update the same version at once: exactly one wins, the others get
/// `Conflict`, and the stored request is the winner's.
pub async fn concurrent_updates(store: Arc<dyn RequestStore>, prefix: &str, n: usize) {
    let v1 = store
        .insert(&sample(&unique(prefix, "race"), "alice"))
        .await
        .expect("insert");
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
        let mut change = v1.clone();
        change
            .approvals
            .push(Vote::new(format!("approver-{i}"), None));
        change.state = RequestState::Approved;
        tasks.spawn(async move {
            barrier.wait().await;
            (i, store.update(&change).await)
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (i, result) = joined.expect("the task ran");
        match result {
            Ok(stored) => winners.push((i, stored)),
            Err(StoreError::Conflict {
                expected: 1,
                found: 2,
                ..
            }) => {}
            Err(e) => panic!("writer {i}: {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins");
    let (i, won) = winners.remove(0);
    assert_eq!(won.version, 2);
    let got = store.get(&v1.id).await.expect("get").expect("found");
    assert_eq!(got, won);
    assert_eq!(got.approvals[0].by, format!("approver-{i}"));
}
