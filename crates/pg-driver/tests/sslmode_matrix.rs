//! The SSL-mode matrix, with libpq (`psql`) as the oracle for every cell.
//!
//! server {ssl off; ssl on with host, hostssl-only, hostnossl-only `pg_hba`} ×
//! certificate {valid for the name; right CA, wrong name; other CA} ×
//! client root {the test CA; none} × all six sslmodes × host {localhost, 127.0.0.1}.
//! For each cell, psql connects (or not) with the same string; pgwarden must connect
//! exactly when psql does and use TLS exactly when psql does. No expected outcome is
//! typed by hand.

use pgwarden_core::conninfo::ConnInfo;
use pgwarden_core::ssl::SslMode;
use pgwarden_pg_driver::{ConnectOptions, Connector};
use pgwarden_testkit::{HbaPolicy, SslSetup, TempCluster};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Failed,
    Plain,
    Tls,
}

fn oracle(cluster: &TempCluster, conninfo: &str) -> Outcome {
    match cluster.psql_with(
        conninfo,
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    ) {
        Ok(out) if out.trim() == "t" => Outcome::Tls,
        Ok(out) if out.trim() == "f" => Outcome::Plain,
        Ok(out) => panic!("unexpected psql output {out:?}"),
        Err(_) => Outcome::Failed,
    }
}

async fn ours(conninfo: &str) -> (Outcome, String) {
    let info: ConnInfo = conninfo.parse().expect("conninfo parses");
    let connector = match Connector::new(&info, &ConnectOptions::default()) {
        Ok(c) => c,
        Err(e) => return (Outcome::Failed, e.to_string()),
    };
    match connector.connect().await {
        Ok(conn) => {
            let row = conn
                .query_one(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
                .await
                .expect("query");
            let ssl: bool = row.get(0);
            assert_eq!(ssl, conn.tls, "Connection::tls disagrees with pg_stat_ssl");
            (
                if ssl { Outcome::Tls } else { Outcome::Plain },
                String::new(),
            )
        }
        Err(e) => (Outcome::Failed, e.to_string()),
    }
}

fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[test]
fn every_cell_matches_libpq() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut servers: Vec<(String, TempCluster)> = Vec::new();
    servers.push((
        "ssl off".into(),
        TempCluster::builder().hba(HbaPolicy::Both).start().unwrap(),
    ));
    for hba in [
        HbaPolicy::Both,
        HbaPolicy::HostSslOnly,
        HbaPolicy::HostNoSslOnly,
    ] {
        for cert in [SslSetup::Valid, SslSetup::WrongName, SslSetup::OtherCa] {
            let c = TempCluster::builder().ssl(cert).hba(hba).start().unwrap();
            servers.push((format!("ssl on, {hba:?}, cert {cert:?}"), c));
        }
    }
    // The trusted CA: the one that signed `Valid` and `WrongName` server certificates.
    let ca = servers[1].1.tls().unwrap().ca_cert_path().to_path_buf();

    let mut cells = 0;
    let mut mismatches = Vec::new();
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for (server, cluster) in &servers {
        // Each cluster has its own PKI: the CA for "given root" is the first TLS cluster's
        // only when this cluster shares it; use this cluster's own CA where it has one.
        let root = cluster
            .tls()
            .map_or(ca.clone(), |t| t.ca_cert_path().to_path_buf());
        for root_given in [true, false] {
            for mode in SslMode::ALL {
                for host in ["localhost", "127.0.0.1"] {
                    let mut s = format!(
                        "host={host} port={} user={} password={} dbname=postgres sslmode={mode} connect_timeout=10",
                        cluster.port(),
                        quote(cluster.superuser()),
                        quote(cluster.password()),
                    );
                    if root_given {
                        s += " sslrootcert=";
                        s += &quote(&root.display().to_string());
                    }
                    let want = oracle(cluster, &s);
                    let (got, why) = rt.block_on(ours(&s));
                    cells += 1;
                    *outcomes.entry(format!("{want:?}")).or_default() += 1;
                    if want != got {
                        mismatches.push(format!(
                            "{server} | root {root_given} | {mode} | {host}: libpq {want:?}, pgwarden {got:?} {why}"
                        ));
                    }
                }
            }
        }
    }
    assert_eq!(cells, 10 * 2 * 6 * 2);
    // The matrix must exercise all three outcomes, or it proves little.
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    assert!(
        mismatches.is_empty(),
        "{} of {cells} cells differ from libpq:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    println!("{cells} cells agree with libpq: {outcomes:?}");
}
