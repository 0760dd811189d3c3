//! Item: objects handed to a successor do not stay open to everyone.
//!
//! With a successor configured, what a revoked user created is reassigned to it
//! rather than dropped. The attack: before the grant ends, the user opens a table to
//! PUBLIC and leaves a `SECURITY DEFINER` function that PUBLIC may execute (the
//! default for functions). Reassigned as they are, the table would stay readable by
//! anyone, and the function would run with the successor's rights for anyone. The
//! revocation must revoke those PUBLIC grants and list the definer functions.

use pgwarden_core::config::{ConnectorMode, UserMode};
use pgwarden_core::conninfo::ConnInfo;
use pgwarden_pg_driver::Provisioner;
use pgwarden_pg_driver::{ConnectOptions, Connector};
use secrecy::ExposeSecret;

use crate::{cluster, common, q_in};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_handed_to_a_successor_lose_their_public_grants() {
    let db = "ho_app";
    cluster().create_database(db).unwrap();
    q_in(db, common::PROBE_SCHEMA_SQL);
    q_in(
        "postgres",
        "CREATE ROLE ho_successor NOLOGIN; CREATE ROLE ho_nobody LOGIN PASSWORD 'ho_nobody'",
    );
    // The successor can read the secret table: what a definer function would lend.
    q_in(
        db,
        "GRANT USAGE ON SCHEMA s1 TO ho_successor; GRANT SELECT ON s1.t1 TO ho_successor",
    );
    let mut config =
        common::provisioner_config("handover", UserMode::Ephemeral, ConnectorMode::Superuser);
    config.successor = Some("ho_successor".into());
    let info: ConnInfo = cluster().dsn().parse().unwrap();
    let p = Provisioner::new(
        Connector::new(&info, &ConnectOptions::default()).unwrap(),
        config,
    )
    .unwrap();
    let g = p
        .grant(common::request(
            "ho-user@example.com",
            &[&format!("postgresql-database:{db}=admin")],
        ))
        .await
        .unwrap();
    common::as_user(
        cluster(),
        &g.username,
        g.password.as_ref().unwrap().expose_secret(),
        db,
        "CREATE TABLE public.opened (v text); INSERT INTO public.opened VALUES ('x');
         GRANT SELECT ON public.opened TO PUBLIC;
         CREATE FUNCTION public.lend() RETURNS bigint SECURITY DEFINER LANGUAGE sql
           AS 'SELECT pg_catalog.count(*) FROM s1.t1';
         CREATE FUNCTION public.plain() RETURNS int LANGUAGE sql AS 'SELECT 1';",
    )
    .unwrap();
    let report = p.revoke(&g.grant_id).await.unwrap();
    assert!(report.role_dropped, "{report:?}");
    let cleanup = report
        .databases
        .iter()
        .find(|c| c.database == db)
        .unwrap_or_else(|| panic!("{report:?}"));
    for opened in [
        "table public.opened",
        "routine public.lend()",
        "routine public.plain()",
    ] {
        assert!(
            cleanup.public_grants_revoked.iter().any(|o| o == opened),
            "{opened} not revoked from PUBLIC: {cleanup:?}"
        );
    }
    assert_eq!(
        cleanup.security_definer_functions,
        vec!["public.lend()".to_owned()]
    );
    let owner = q_in(
        db,
        "SELECT pg_catalog.pg_get_userbyid(relowner) FROM pg_catalog.pg_class WHERE relname = 'opened'",
    );
    assert_eq!(owner.trim(), "ho_successor", "the table was not kept");
    for sql in ["SELECT * FROM public.opened", "SELECT public.lend()"] {
        let r = common::as_user(cluster(), "ho_nobody", "ho_nobody", db, sql);
        assert!(r.is_err(), "{sql} worked for a role with no grant: {r:?}");
    }
}
