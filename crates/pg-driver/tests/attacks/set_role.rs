//! Item: grantees cannot act *as* pgwarden's roles.
//!
//! The attack: two people hold `database=admin`. One runs `SET ROLE pgwarden_p_…` and
//! creates `public.peek()`, `SECURITY DEFINER`, reading a table, with EXECUTE granted
//! to PUBLIC. The function is owned by the privilege role, which outlives the
//! attacker's grant (the second grantee still uses it): after the attacker's
//! revocation a role with no grant at all would read the table through it.
//!
//! On PostgreSQL 16+ pgwarden's memberships are `INHERIT TRUE, SET FALSE`: the
//! `SET ROLE` itself is refused. On 13–15, where membership always allows it,
//! reconcile removes whatever pgwarden's roles own and reports it. Either way the
//! role without a grant cannot read the table at the end.

use secrecy::ExposeSecret;

use crate::{cluster, common, q_in};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grantee_cannot_leave_code_behind_as_a_privilege_role() {
    let _reconciling = crate::reconciling().await;
    let db = "sr_app";
    cluster().create_database(db).unwrap();
    q_in(db, common::PROBE_SCHEMA_SQL);
    q_in(
        "postgres",
        "CREATE ROLE sr_nobody LOGIN PASSWORD 'sr_nobody'",
    );
    let p = crate::provisioner("set_role", &pgwarden_pg_driver::ConnectOptions::default());
    let access = format!("postgresql-database:{db}=admin");
    let attacker = p
        .grant(common::request("sr-attacker@example.com", &[&access]))
        .await
        .unwrap();
    let colleague = p
        .grant(common::request("sr-colleague@example.com", &[&access]))
        .await
        .unwrap();
    let role = crate::privilege_role_of(&attacker.username);
    assert!(role.starts_with("pgwarden_p_"), "{role}");
    let password = attacker
        .password
        .as_ref()
        .unwrap()
        .expose_secret()
        .to_owned();
    let as_attacker =
        |sql: &str| common::as_user(cluster(), &attacker.username, &password, db, sql);

    let planted = as_attacker(&format!(
        "SET ROLE {role};
         CREATE FUNCTION public.peek() RETURNS bigint SECURITY DEFINER LANGUAGE sql
           AS 'SELECT pg_catalog.count(*) FROM s1.t1';
         GRANT EXECUTE ON FUNCTION public.peek() TO PUBLIC;"
    ));
    // The marker role too: every pgwarden login role is its member.
    let marker_planted =
        as_attacker("SET ROLE pgwarden_managed; CREATE TABLE public.sr_marker_owned (id int);");
    if cluster().server_major() >= 16 {
        let err = planted.expect_err("SET ROLE to a privilege role worked on 16+");
        assert!(err.contains("permission denied to set role"), "{err}");
        let err = marker_planted.expect_err("SET ROLE to the marker role worked on 16+");
        assert!(err.contains("permission denied to set role"), "{err}");
    } else {
        // 13–15: the server cannot forbid it; the clean-up must catch it.
        planted.unwrap();
    }
    // Inheritance still works: the grant itself is intact.
    as_attacker("SELECT pg_catalog.count(*) FROM s1.t1").unwrap();

    p.revoke(&attacker.grant_id).await.unwrap();
    let report = p.reconcile().await.unwrap();
    if cluster().server_major() < 16 {
        assert!(
            report
                .owned_objects_removed
                .iter()
                .any(|o| o.contains("function public.peek()")),
            "{report:?}"
        );
    }
    assert!(report.errors.is_empty(), "{report:?}");
    let nobody = common::as_user(
        cluster(),
        "sr_nobody",
        "sr_nobody",
        db,
        "SELECT public.peek()",
    );
    assert!(
        nobody.is_err(),
        "a role with no grant read the table through the planted function: {nobody:?}"
    );
    let owned = q_in(
        "postgres",
        "SELECT pg_catalog.count(*) FROM pg_catalog.pg_shdepend s
         JOIN pg_catalog.pg_roles r ON r.oid = s.refobjid
         WHERE s.deptype = 'o' AND (r.rolname LIKE 'pgwarden\\_p\\_%' OR r.rolname = 'pgwarden_managed')",
    );
    assert_eq!(owned.trim(), "0", "pgwarden's roles still own objects");
    // The colleague's access is untouched by the clean-up.
    common::as_user(
        cluster(),
        &colleague.username,
        colleague.password.as_ref().unwrap().expose_secret(),
        db,
        "SELECT pg_catalog.count(*) FROM s1.t1",
    )
    .unwrap();
    p.revoke(&colleague.grant_id).await.unwrap();
}
