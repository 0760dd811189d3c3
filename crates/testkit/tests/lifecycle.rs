//! Starting, querying, restarting, stopping and removing clusters.

use std::net::TcpStream;
use std::time::Duration;

use pgwarden_testkit::{Error, HbaPolicy, TempCluster};

fn accepts_tcp(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).is_ok()
}

/// Running, i.e. neither gone nor a zombie waiting to be reaped.
fn process_exists(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap()
            .trim_start()
            .starts_with('Z')
    })
}

#[test]
fn starts_answers_queries_and_reports_its_startup_time() {
    let cluster = TempCluster::start().unwrap();
    eprintln!(
        "cluster started in {:?} on port {}",
        cluster.startup_time(),
        cluster.port()
    );
    assert!(cluster.startup_time() < Duration::from_secs(10));
    assert_eq!(cluster.psql("SELECT 1 + 1").unwrap(), "2\n");
    assert_eq!(
        cluster.psql("SELECT current_user, 'x y'").unwrap(),
        format!("{}|x y\n", cluster.superuser())
    );
    let settings = cluster
        .psql("SELECT current_setting('fsync'), current_setting('listen_addresses'), current_setting('max_connections')")
        .unwrap();
    assert_eq!(settings, "off|127.0.0.1|100\n");
    assert_eq!(cluster.hba_policy(), HbaPolicy::Both);
    assert!(cluster.tls().is_none());

    // The superuser's password works over TCP (SCRAM), a wrong one does not.
    let dsn = cluster.dsn();
    assert!(dsn.starts_with(&format!("host=127.0.0.1 port={} ", cluster.port())));
    assert_eq!(
        cluster
            .psql_with(&dsn, "SELECT inet_server_addr()")
            .unwrap(),
        "127.0.0.1\n"
    );
    let wrong = cluster.conninfo(cluster.superuser(), "wrong", "postgres");
    let err = cluster.psql_with(&wrong, "SELECT 1").unwrap_err();
    assert!(
        err.psql_stderr()
            .unwrap()
            .contains("password authentication failed"),
        "{err}"
    );
}

#[test]
fn sql_errors_carry_psql_stderr() {
    let cluster = TempCluster::start().unwrap();
    let err = cluster.psql("SELECT 1; SELEC 2; SELECT 3").unwrap_err();
    assert!(matches!(err, Error::Psql { .. }), "{err}");
    assert!(err.to_string().contains("syntax error"), "{err}");
}

#[test]
fn creates_databases_and_runs_scripts_in_them() {
    let cluster = TempCluster::builder()
        .max_connections(20)
        .setting("log_statement", "all")
        .start()
        .unwrap();
    assert_eq!(cluster.psql("SHOW max_connections").unwrap(), "20\n");

    cluster.create_database("app db").unwrap();
    cluster
        .psql_in(
            "app db",
            "CREATE TABLE t (x int); INSERT INTO t VALUES (41), (1);",
        )
        .unwrap();
    assert_eq!(
        cluster.psql_in("app db", "SELECT sum(x) FROM t").unwrap(),
        "42\n"
    );

    // log_statement=all puts every statement in the server log.
    cluster.psql("SELECT 'log-marker-7f3a'").unwrap();
    let log = cluster.log_contents().unwrap();
    assert!(log.contains("statement: SELECT 'log-marker-7f3a'"), "{log}");
    assert!(log.contains("CREATE DATABASE \"app db\""), "{log}");
}

#[test]
fn restart_keeps_the_port_and_the_data() {
    let cluster = TempCluster::start().unwrap();
    let port = cluster.port();
    let first_pid = cluster.postmaster_pid().unwrap();
    cluster
        .psql("CREATE TABLE kept (x int); INSERT INTO kept VALUES (7);")
        .unwrap();

    cluster.restart().unwrap();
    assert_eq!(cluster.port(), port);
    assert_ne!(cluster.postmaster_pid().unwrap(), first_pid);
    assert_eq!(cluster.psql("SELECT x FROM kept").unwrap(), "7\n");
    assert_eq!(
        cluster.psql_with(&cluster.dsn(), "SELECT 1").unwrap(),
        "1\n"
    );

    // Stopped: connections fail, the data stays; restart brings it back.
    cluster.stop().unwrap();
    assert_eq!(cluster.postmaster_pid(), None);
    assert!(!accepts_tcp(port));
    assert!(cluster.psql("SELECT 1").is_err());
    cluster.stop().unwrap(); // stopping twice is fine
    cluster.restart().unwrap();
    assert_eq!(cluster.port(), port);
    assert_eq!(cluster.psql("SELECT x FROM kept").unwrap(), "7\n");
}

#[test]
fn drop_stops_the_server_and_removes_the_directory() {
    let cluster = TempCluster::start().unwrap();
    let root = cluster.root_dir().to_owned();
    let port = cluster.port();
    let pid = cluster.postmaster_pid().unwrap();
    assert!(root.join("data/PG_VERSION").exists());
    drop(cluster);
    assert!(!root.exists());
    assert!(!process_exists(pid));
    assert!(!accepts_tcp(port));
}

#[test]
fn a_panicking_test_leaves_nothing_behind() {
    let (sender, receiver) = std::sync::mpsc::channel();
    let result = std::panic::catch_unwind(move || {
        let cluster = TempCluster::start().unwrap();
        sender
            .send((
                cluster.root_dir().to_owned(),
                cluster.port(),
                cluster.postmaster_pid().unwrap(),
            ))
            .unwrap();
        assert_eq!(cluster.psql("SELECT 1").unwrap(), "1\n");
        panic!("the test fails while holding the cluster");
    });
    assert!(result.is_err());
    let (root, port, pid) = receiver.recv().unwrap();
    assert!(!root.exists(), "{} survived the panic", root.display());
    assert!(!process_exists(pid), "postmaster {pid} survived the panic");
    assert!(!accepts_tcp(port), "port {port} still accepts connections");
}

#[test]
fn the_shared_cluster_is_started_once() {
    let a = TempCluster::shared();
    let b = TempCluster::shared();
    assert!(std::ptr::eq(a, b));
    assert!(a.tls().is_some());
    assert_eq!(a.psql("SELECT 1").unwrap(), "1\n");
}

#[test]
fn clusters_can_be_used_from_several_threads() {
    let cluster = TempCluster::shared();
    std::thread::scope(|scope| {
        for i in 0..4 {
            scope.spawn(move || {
                assert_eq!(
                    cluster.psql(&format!("SELECT {i} * 2")).unwrap(),
                    format!("{}\n", i * 2)
                );
            });
        }
    });
}
