//! Item: the ledger cannot be forged.
//!
//! The attacker holds `CREATEROLE` (not pgwarden's connector). On 15 and earlier that
//! lets it rewrite any non-superuser role's comment and grant itself membership in
//! any non-superuser role; on every version it can create roles under pgwarden's
//! names and comment on them, and read every comment. pgwarden's records are sealed
//! for the role they were written on, so none of that is ever acted on.

use secrecy::ExposeSecret;

use pgwarden_testkit::login_roles_of;

use crate::{cluster, common, q_in};

const ATTACKER: &str = "lf_attacker";

fn as_attacker(db: &str, sql: &str) -> Result<String, String> {
    common::as_user(cluster(), ATTACKER, ATTACKER, db, sql)
}

fn setup(db: &str) {
    static ATTACKER_ROLE: std::sync::Once = std::sync::Once::new();
    ATTACKER_ROLE.call_once(|| {
        q_in(
            "postgres",
            &format!("CREATE ROLE {ATTACKER} LOGIN CREATEROLE PASSWORD '{ATTACKER}'"),
        );
    });
    cluster().create_database(db).unwrap();
    q_in(db, common::PROBE_SCHEMA_SQL);
}

fn comment_of(role: &str) -> Option<String> {
    let out = q_in(
        "postgres",
        &format!(
            "SELECT d.description FROM pg_catalog.pg_roles r
             JOIN pg_catalog.pg_shdescription d ON d.objoid = r.oid
             WHERE r.rolname = '{role}'"
        ),
    );
    let out = out.trim();
    (!out.is_empty()).then(|| out.to_owned())
}

/// The reproduction: a dropped privilege role's name recreated, its (copied) record
/// put back with state "retiring", membership granted to the attacker. Reconcile must
/// not re-grant the role; the next grant of that level must not use it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_privilege_role_with_a_copied_record_is_never_granted_to() {
    let _reconciling = crate::reconciling().await;
    let db = "lf_app";
    setup(db);
    let p = crate::provisioner("ledger", &pgwarden_pg_driver::ConnectOptions::default());
    let access = format!("postgresql-schema:{db}/s1=read-only");
    let g = p
        .grant(common::request("lf-alice@example.com", &[&access]))
        .await
        .unwrap();
    let role = crate::privilege_role_of(&g.username);
    let sealed = comment_of(&role).expect("a privilege role carries a record");
    assert!(
        !sealed.contains(db) && !sealed.contains("read-only"),
        "records are sealed, not readable by every user: {sealed}"
    );
    p.revoke(&g.grant_id).await.unwrap();
    let report = p.reconcile().await.unwrap();
    assert!(report.privilege_roles_dropped.contains(&role), "{report:?}");

    // The attack: same name, the real record copied back, and a plain-JSON forgery
    // in the old format saying "retiring" — each with the attacker as a member.
    for forged in [
        sealed.clone(),
        format!("{{\"pgwarden\":1,\"access\":\"{access}\",\"state\":\"retiring\"}}"),
    ] {
        as_attacker(
            "postgres",
            &format!(
                "CREATE ROLE {role} NOLOGIN;
                 COMMENT ON ROLE {role} IS '{}';
                 GRANT {role} TO {ATTACKER};",
                forged.replace('\'', "''")
            ),
        )
        .unwrap();
        let report = p.reconcile().await.unwrap();
        assert!(
            !report.privilege_roles_refreshed.contains(&role),
            "reconcile re-granted a forged privilege role: {report:?}"
        );
        assert!(
            report.drift.iter().any(|d| d.username == role),
            "the forgery is reported: {report:?}"
        );
        let read = as_attacker(db, "SELECT count(*) FROM s1.t1");
        assert!(read.is_err(), "the attacker reads the schema: {read:?}");
        // A grant of the same level must not adopt the attacker's role either.
        let e = p
            .grant(common::request("lf-bob@example.com", &[&access]))
            .await
            .expect_err("a grant used a privilege role pgwarden did not make");
        assert!(
            e.to_string().contains("carries no record pgwarden sealed"),
            "{e}"
        );
        let left = q_in(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_catalog.pg_roles WHERE {}",
                login_roles_of("lf_bob")
            ),
        );
        assert_eq!(left.trim(), "0", "a refused grant left a login role");
        // Dropped by a superuser: on 16+ reconcile took away the attacker's ADMIN
        // OPTION on it along with its membership (every grantor's grant goes).
        q_in("postgres", &format!("DROP ROLE {role}"));
    }
}

/// A member nobody granted through pgwarden — the attacker granting itself a live
/// privilege role (possible for CREATEROLE up to 15), or a grantee's record rewritten
/// so that pgwarden no longer recognises it — loses the membership at reconcile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_members_of_privilege_roles_are_removed() {
    let _reconciling = crate::reconciling().await;
    let db = "lf_members";
    setup(db);
    let p = crate::provisioner("ledger", &pgwarden_pg_driver::ConnectOptions::default());
    let access = format!("postgresql-schema:{db}/s1=read-only");
    let alice = p
        .grant(common::request("lf-carol@example.com", &[&access]))
        .await
        .unwrap();
    let bob = p
        .grant(common::request("lf-dave@example.com", &[&access]))
        .await
        .unwrap();
    let role = crate::privilege_role_of(&alice.username);
    let joined = as_attacker("postgres", &format!("GRANT {role} TO {ATTACKER}"));
    let rewritten = as_attacker(
        "postgres",
        &format!(
            "COMMENT ON ROLE {} IS {}",
            bob.username,
            comment_of(&alice.username)
                .map(|c| format!("'{}'", c.replace('\'', "''")))
                .unwrap()
        ),
    );
    if cluster().server_major() >= 16 {
        // CREATEROLE no longer reaches roles it did not create: both are refused.
        assert!(
            joined.is_err() && rewritten.is_err(),
            "{joined:?} {rewritten:?}"
        );
    } else {
        joined.unwrap();
        rewritten.unwrap();
        as_attacker(db, "SELECT count(*) FROM s1.t1").expect("the attack's setup works");
    }
    let report = p.reconcile().await.unwrap();
    if cluster().server_major() < 16 {
        for who in [ATTACKER, bob.username.as_str()] {
            assert!(
                report
                    .memberships_removed
                    .iter()
                    .any(|m| m.starts_with(&format!("{who} from {role}"))),
                "{who}: {report:?}"
            );
        }
        assert!(
            report.drift.iter().any(|d| d.username == bob.username),
            "the rewritten record is reported: {report:?}"
        );
    }
    assert!(as_attacker(db, "SELECT count(*) FROM s1.t1").is_err());
    let bob_reads = common::as_user(
        cluster(),
        &bob.username,
        bob.password.as_ref().unwrap().expose_secret(),
        db,
        "SELECT count(*) FROM s1.t1",
    );
    if cluster().server_major() < 16 {
        assert!(
            bob_reads.is_err(),
            "access survived its record: {bob_reads:?}"
        );
    }
    // Alice, whose record is intact, keeps her access.
    common::as_user(
        cluster(),
        &alice.username,
        alice.password.as_ref().unwrap().expose_secret(),
        db,
        "SELECT count(*) FROM s1.t1",
    )
    .unwrap();
    p.revoke(&alice.grant_id).await.unwrap();
}

/// Sets up `db` and makes one grant there and revokes it, so that pgwarden's
/// bookkeeping roles exist (the marker, the untagged role, the names role of the
/// default prefix): the provisioner, and the access the grant was for.
async fn after_one_grant(db: &str) -> (pgwarden_pg_driver::Provisioner, String) {
    setup(db);
    let access = format!("postgresql-schema:{db}/s1=read-only");
    let p = crate::provisioner("ledger", &pgwarden_pg_driver::ConnectOptions::default());
    let g = p
        .grant(common::request("lf-first@example.com", &[&access]))
        .await
        .unwrap();
    p.revoke(&g.grant_id).await.unwrap();
    (p, access)
}

/// The roles that let a grant id be found by name are pgwarden's too: an attacker
/// who made one first (the names role of a username prefix not in use yet, empty or
/// with the real one's record copied onto it) could drop it later, and hide every
/// grant named under that prefix from its id. pgwarden refuses to use one it did not
/// seal, and grants nothing until it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_names_role_made_by_someone_else_is_never_used() {
    let db = "lf_names";
    let (_, access) = after_one_grant(db).await;
    let real = comment_of("pgwarden_managed_names_pgw_").expect("the names role is sealed");

    let info: pgwarden_core::conninfo::ConnInfo = cluster().dsn().parse().unwrap();
    let squatted = || {
        let mut config = common::provisioner_config(
            "ledger",
            pgwarden_core::config::UserMode::Ephemeral,
            pgwarden_core::config::ConnectorMode::Superuser,
        );
        config.username_prefix = "sq_".into();
        pgwarden_pg_driver::Provisioner::new(
            pgwarden_pg_driver::Connector::new(
                &info,
                &pgwarden_pg_driver::ConnectOptions::default(),
            )
            .unwrap(),
            config,
        )
        .unwrap()
    };
    as_attacker("postgres", "CREATE ROLE pgwarden_managed_names_sq_ NOLOGIN").unwrap();
    for comment in [None, Some(real)] {
        if let Some(c) = &comment {
            as_attacker(
                "postgres",
                &format!("COMMENT ON ROLE pgwarden_managed_names_sq_ IS '{c}'"),
            )
            .unwrap();
        }
        let e = squatted()
            .grant(common::request("lf-dave@example.com", &[&access]))
            .await
            .expect_err("a grant used a names role pgwarden did not make");
        assert!(
            matches!(e, pgwarden_pg_driver::ProvisionError::NotAuthentic(_))
                && e.to_string().contains("pgwarden_managed_names_sq_"),
            "{e}"
        );
        let left = q_in(
            "postgres",
            "SELECT count(*) FROM pg_catalog.pg_roles WHERE rolname LIKE 'sq\\_%'",
        );
        assert_eq!(left.trim(), "0", "a refused grant left a login role");
    }
    // Gone: pgwarden makes its own, and grants under the prefix.
    as_attacker("postgres", "DROP ROLE pgwarden_managed_names_sq_").unwrap();
    let p = squatted();
    let g = p
        .grant(common::request("lf-dave@example.com", &[&access]))
        .await
        .unwrap();
    assert!(g.username.starts_with("sq_"), "{}", g.username);
    assert!(comment_of("pgwarden_managed_names_sq_").is_some());
    p.revoke(&g.grant_id).await.unwrap();
}

/// A role already holding the name a grant id's login role gets (squatted by someone
/// who learnt the ledger key, or a 64-bit tag collision): the grant is refused with an
/// error saying so, never made under another name (where a retry with the same id
/// would not find it) and never reported as the squatter's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_login_role_name_refuses_the_grant() {
    // The squatter sits in the marker: other tests' reconciles would act on it.
    let _reconciling = crate::reconciling().await;
    let db = "lf_taken";
    let (p, access) = after_one_grant(db).await;
    let tag = common::ledger_key().lookup_tag("taken-1");
    let name = format!("pgw_{tag}_lf_erin_example_com");
    as_attacker(
        "postgres",
        &format!("CREATE ROLE {name} LOGIN PASSWORD 'squat'"),
    )
    .unwrap();
    // Even in the marker (a CREATEROLE role can put it there before 16): no record.
    q_in("postgres", &format!("GRANT pgwarden_managed TO {name}"));
    let mut req = common::request("lf-erin@example.com", &[&access]);
    req.grant_id = Some("taken-1".into());
    for _ in 0..2 {
        let e = p
            .grant(req.clone())
            .await
            .expect_err("granted over a squatter");
        assert!(
            matches!(e, pgwarden_pg_driver::ProvisionError::NotAuthentic(_))
                && e.to_string()
                    .contains("is taken by a role that is not a grant pgwarden recorded"),
            "{e}"
        );
    }
    assert!(
        p.list()
            .await
            .unwrap()
            .iter()
            .all(|g| g.grant_id != "taken-1")
    );
    let read = common::as_user(cluster(), &name, "squat", db, "SELECT count(*) FROM s1.t1");
    assert!(read.is_err(), "the squatter was given access: {read:?}");
    // By a superuser: a reconcile may have taken the attacker's ADMIN OPTION on it.
    q_in("postgres", &format!("DROP ROLE {name}"));
    let g = p.grant(req).await.unwrap();
    assert!(g.created && g.username == name, "{g:?}");
    p.revoke(&g.grant_id).await.unwrap();
}
