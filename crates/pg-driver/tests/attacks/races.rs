//! Item: races on a grant id and on persistent users.
//!
//! - A revocation of a grant whose (explicit-id) creation is still in flight waits for
//!   it and revokes it, instead of answering "already revoked" and letting it commit.
//! - A revocation for expiry never undoes an extension that committed first.
//! - A revocation of one of several grants on a persistent role ends the role's
//!   sessions (which may have `SET ROLE` to the revoked privilege role on 13–15).
//! - Nobody but pgwarden's grants keeps membership in a persistent role.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pgwarden_core::config::{ConnectorMode, UserMode};
use pgwarden_core::conninfo::ConnInfo;
use pgwarden_core::duration::Ttl;
use pgwarden_pg_driver::{ConnectOptions, Connector};
use pgwarden_pg_driver::{Expiry, ListedState, Provisioner, Step, StepHook};
use secrecy::ExposeSecret;

use crate::{cluster, common, q_in};

fn provisioner(user_mode: UserMode, hook: Option<StepHook>) -> Provisioner {
    let info: ConnInfo = cluster().dsn().parse().unwrap();
    let p = Provisioner::new(
        Connector::new(&info, &ConnectOptions::default()).unwrap(),
        common::provisioner_config("races", user_mode, ConnectorMode::Superuser),
    )
    .unwrap();
    match hook {
        Some(h) => p.with_step_hook(h),
        None => p,
    }
}

/// A hook that, at `target`, says so and holds the operation there for `hold`.
fn holding_hook(target: &'static str, reached: Arc<AtomicBool>, hold: Duration) -> StepHook {
    Arc::new(move |step: &Step| {
        if format!("{step:?}").starts_with(target) && !reached.swap(true, Ordering::SeqCst) {
            std::thread::sleep(hold);
        }
        Ok(())
    })
}

async fn wait_for(flag: &AtomicBool) {
    for _ in 0..200 {
        if flag.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the step was never reached");
}

fn role_exists(name: &str) -> bool {
    q_in(
        "postgres",
        &format!("SELECT count(*) FROM pg_catalog.pg_roles WHERE rolname = '{name}'"),
    )
    .trim()
        == "1"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_waits_for_the_grant_in_flight() {
    let db = "rc_inflight";
    cluster().create_database(db).unwrap();
    q_in(db, common::PROBE_SCHEMA_SQL);
    for mode in [UserMode::Ephemeral, UserMode::Persistent] {
        let reached = Arc::new(AtomicBool::new(false));
        let granter = Arc::new(provisioner(
            mode,
            Some(holding_hook(
                "GrantCommit",
                reached.clone(),
                Duration::from_millis(700),
            )),
        ));
        let id = format!("rc-inflight-{mode:?}");
        let mut request = common::request(
            &format!("rc-inflight-{mode:?}@example.com"),
            &[&format!("postgresql-schema:{db}/s1=read-only")],
        );
        request.grant_id = Some(id.clone());
        let grant = tokio::spawn({
            let granter = granter.clone();
            async move { granter.grant(request).await }
        });
        wait_for(&reached).await;
        // The grant holds its id's lock and has not committed: revoke now.
        let report = provisioner(mode, None).revoke(&id).await.unwrap();
        let g = grant.await.unwrap().unwrap();
        assert!(
            !report.already_revoked,
            "{mode:?}: answered 'already revoked' while the grant was in flight: {report:?}"
        );
        let left = provisioner(mode, None).list().await.unwrap();
        assert!(
            !left
                .iter()
                .any(|l| l.grant_id == id && l.state == ListedState::Active),
            "{mode:?}: the grant survived its revocation: {left:?}"
        );
        if mode == UserMode::Ephemeral {
            assert!(!role_exists(&g.username), "{} survived", g.username);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_extension_that_came_first_survives_the_expiry_revocation() {
    let _reconciling = crate::reconciling().await;
    let db = "rc_extend";
    cluster().create_database(db).unwrap();
    q_in(db, common::PROBE_SCHEMA_SQL);
    let access = format!("postgresql-schema:{db}/s1=read-only");
    // One grant through reconcile's path, one through the sweeper's (revoke_expired).
    for through_reconcile in [true, false] {
        let p = provisioner(UserMode::Ephemeral, None);
        let mut request = common::request("rc-extend@example.com", &[&access]);
        request.expiry = Expiry::After(Ttl::from_secs(1).unwrap());
        let g = p.grant(request).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // The expiry was decided; before the revocation marks the grant, an
        // extension commits (on another thread: the hook cannot await).
        let grant_id = g.grant_id.clone();
        let reached = Arc::new(AtomicBool::new(false));
        let hook: StepHook = {
            let reached = reached.clone();
            Arc::new(move |step: &Step| {
                if matches!(step, Step::RevokeMark) && !reached.swap(true, Ordering::SeqCst) {
                    let id = grant_id.clone();
                    std::thread::spawn(move || {
                        tokio::runtime::Runtime::new().unwrap().block_on(async {
                            provisioner(UserMode::Ephemeral, None)
                                .extend(&id, Expiry::After(Ttl::from_secs(3600).unwrap()))
                                .await
                                .unwrap();
                        });
                    })
                    .join()
                    .unwrap();
                }
                Ok(())
            })
        };
        let sweeper = provisioner(UserMode::Ephemeral, Some(hook));
        if through_reconcile {
            let report = sweeper.reconcile().await.unwrap();
            assert!(
                !report.revoked.iter().any(|r| r.grant_id == g.grant_id),
                "{report:?}"
            );
        } else {
            let e = sweeper.revoke_expired(&g.grant_id).await.unwrap_err();
            assert!(e.to_string().contains("extended meanwhile"), "{e}");
        }
        assert!(
            reached.load(Ordering::SeqCst),
            "the revocation never started"
        );
        common::as_user(
            cluster(),
            &g.username,
            g.password.as_ref().unwrap().expose_secret(),
            db,
            "SELECT count(*) FROM s1.t1",
        )
        .expect("the extended grant was revoked");
        p.revoke(&g.grant_id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_roles_lose_sessions_and_outside_members_with_a_grant() {
    let _reconciling = crate::reconciling().await;
    let db = "rc_persistent";
    cluster().create_database(db).unwrap();
    q_in(db, common::PROBE_SCHEMA_SQL);
    q_in(
        "postgres",
        "CREATE ROLE rc_outsider LOGIN PASSWORD 'rc_outsider'",
    );
    let p = provisioner(UserMode::Persistent, None);
    let first = p
        .grant(common::request(
            "rc-pers@example.com",
            &[&format!("postgresql-schema:{db}/s1=read-only")],
        ))
        .await
        .unwrap();
    let second = p
        .grant(common::request(
            "rc-pers@example.com",
            &[&format!("postgresql-schema:{db}/s2=read-only")],
        ))
        .await
        .unwrap();
    assert_eq!(first.username, second.username);
    let password = first.password.as_ref().unwrap().expose_secret().to_owned();
    // An open session, which on 13-15 may even act as the privilege role.
    let session = common::session(cluster(), &first.username, &password, db).await;
    session
        .simple_query("SELECT count(*) FROM s1.t1")
        .await
        .unwrap();
    // Someone hands the persistent role on.
    q_in(
        "postgres",
        &format!("GRANT {} TO rc_outsider", first.username),
    );
    common::as_user(
        cluster(),
        "rc_outsider",
        "rc_outsider",
        db,
        "SELECT count(*) FROM s1.t1",
    )
    .expect("the attack's setup works");

    let report = p.revoke(&first.grant_id).await.unwrap();
    assert!(report.sessions_terminated >= 1, "{report:?}");
    assert!(
        session.simple_query("SELECT 1").await.is_err(),
        "a session kept the revoked grant's access"
    );
    // The second grant goes on, in a new session.
    common::as_user(
        cluster(),
        &first.username,
        &password,
        db,
        "SELECT count(*) FROM s2.u1",
    )
    .expect("the other grant still works");
    assert!(
        common::as_user(
            cluster(),
            &first.username,
            &password,
            db,
            "SELECT count(*) FROM s1.t1"
        )
        .is_err()
    );
    let report = p.reconcile().await.unwrap();
    assert!(
        report
            .memberships_removed
            .iter()
            .any(|m| m.starts_with(&format!("rc_outsider from {}", first.username))),
        "{report:?}"
    );
    assert!(
        common::as_user(
            cluster(),
            "rc_outsider",
            "rc_outsider",
            db,
            "SELECT count(*) FROM s2.u1"
        )
        .is_err(),
        "an outsider kept a persistent role's access"
    );
    p.revoke(&second.grant_id).await.unwrap();
}

/// Someone creates a role under the name pgwarden would give a requester's persistent
/// role: the requester's grant fails, and the stranger's role gets neither a new
/// password nor any membership.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_name_taken_by_someone_else_is_never_handed_over() {
    let db = "rc_squat";
    cluster().create_database(db).unwrap();
    q_in(db, common::PROBE_SCHEMA_SQL);
    let access = format!("postgresql-schema:{db}/s1=read-only");
    let p = provisioner(UserMode::Persistent, None);
    // Learn the name, then make the instance forget it.
    let first = p
        .grant(common::request("rc-victim@example.com", &[&access]))
        .await
        .unwrap();
    p.revoke(&first.grant_id).await.unwrap();
    q_in("postgres", &format!("DROP ROLE {}", first.username));
    q_in(
        "postgres",
        &format!(
            "CREATE ROLE {} LOGIN PASSWORD 'squatter-pw'",
            first.username
        ),
    );
    let e = p
        .grant(common::request("rc-victim@example.com", &[&access]))
        .await
        .expect_err("a grant went to a role pgwarden did not make");
    assert!(!e.to_string().contains("squatter-pw"), "{e}");
    common::as_user(cluster(), &first.username, "squatter-pw", db, "SELECT 1")
        .expect("the stranger's password was changed");
    let memberships = q_in(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_catalog.pg_auth_members m
             JOIN pg_catalog.pg_roles u ON u.oid = m.member WHERE u.rolname = '{}'",
            first.username
        ),
    );
    assert_eq!(
        memberships.trim(),
        "0",
        "the stranger's role got memberships"
    );
    q_in("postgres", &format!("DROP ROLE {}", first.username));
}
