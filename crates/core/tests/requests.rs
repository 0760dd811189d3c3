//! The in-memory request store passes the same conformance suite as the PostgreSQL one.

use std::sync::Arc;

use pgwarden_core::requests::{InMemoryRequestStore, RequestStore};
use pgwarden_testkit::request_store_conformance;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_memory_store_conforms() {
    let store: Arc<dyn RequestStore> = Arc::new(InMemoryRequestStore::new());
    request_store_conformance::run(store, "mem").await;
}

#[tokio::test]
async fn stores_are_shared_by_clones_of_the_arc_and_not_across_instances() {
    let a: Arc<dyn RequestStore> = Arc::new(InMemoryRequestStore::new());
    let b = Arc::clone(&a);
    let r = request_store_conformance::sample("app", "alice");
    a.insert(&r).await.unwrap();
    assert!(b.get(&r.id).await.unwrap().is_some());
    let other = InMemoryRequestStore::new();
    assert!(other.get(&r.id).await.unwrap().is_none());
}
