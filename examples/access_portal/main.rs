//! An access portal in one file of routes: people request access to PostgreSQL,
//! approvers approve, pgwarden grants and revokes. Requests are decided by the flows
//! in `examples/flows/` and kept in PostgreSQL, so the portal can restart (or run
//! twice) without losing one.
//!
//! ```text
//! cargo run --example access_portal                    # a throwaway PostgreSQL, port 8080
//! cargo run --example access_portal -- --addr 127.0.0.1:9000
//! ```
//!
//! It prints the calls to try (`curl`). Who approves depends on the flow that matched
//! (the submission's answer names it): erin for `no-pii-analysts` (office hours in
//! Berlin), bob (dba, the integration owner) for `read-only-self-serve`. The demo's
//! identity provider knows alice
//! (engineering, analysts), bob (dba), carol (team-leads), dave (on-call) and erin
//! (data-stewards); the caller is named by the `x-user` header, which a real portal
//! would take from its single sign-on instead.

mod app;
mod setup;

use std::time::Duration;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = match args.as_slice() {
        [] => "127.0.0.1:8080".to_owned(),
        [flag, addr] if flag == "--addr" => addr.clone(),
        _ => {
            eprintln!("usage: access_portal [--addr HOST:PORT]");
            std::process::exit(2);
        }
    };
    println!("starting a throwaway PostgreSQL…");
    let cluster = setup::cluster()?;
    let (requests, runtime) = setup::portal(&cluster).await?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let base = format!("http://{}", listener.local_addr()?);
    println!(
        "access portal on {base}; try:\n\
         curl -s -X POST {base}/requests -H 'x-user: alice' -H 'content-type: application/json' \\\n  \
           -d '{{\"access\": [\"postgresql-table:app/analytics/orders=read-only\"], \"duration\": \"2h\", \"justification\": \"Q3 report\"}}'\n\
         curl -s '{base}/requests?state=pending'\n\
         curl -s -X POST {base}/requests/<id>/approve -H 'x-user: bob' -H 'content-type: application/json' -d '{{\"reason\": \"ok\"}}'\n\
         curl -s {base}/requests/<id>/credentials -H 'x-user: alice'\n\
         (Ctrl-C to stop; the throwaway PostgreSQL goes with it)"
    );
    // Follow grants to their end, and finish what a crash interrupted.
    let syncing = requests.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if let Err(e) = syncing.sync().await {
                eprintln!("sync: {e}");
            }
        }
    });
    axum::serve(listener, app::router(requests))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    runtime.shutdown().await;
    Ok(())
}
