//! The conformance suite against a real Kubernetes API server. Runs only when
//! `PGWARDEN_TEST_K8S_NAMESPACE` names a namespace of the kubeconfig's current
//! context (or the in-cluster service account) where Secrets may be created,
//! replaced and deleted; otherwise prints why it skips.
#![cfg(feature = "kubernetes")]

use std::sync::Arc;

use pgwarden_secrets::DynSecretStore;
use pgwarden_secrets::kubernetes::KubernetesStore;
use pgwarden_testkit::secret_conformance::run_writable;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_secrets_pass_the_suite() {
    let Some(namespace) = std::env::var("PGWARDEN_TEST_K8S_NAMESPACE")
        .ok()
        .filter(|n| !n.is_empty())
    else {
        eprintln!(
            "skipping kubernetes_secrets_pass_the_suite: set PGWARDEN_TEST_K8S_NAMESPACE (and a kubeconfig) to run it against a Kubernetes cluster"
        );
        return;
    };
    // kube builds its TLS config from the process default provider; the host (here,
    // this test) installs one, as the crate docs ask.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let store = KubernetesStore::from_env(&namespace)
        .await
        .expect("Kubernetes client");
    run_writable(Arc::new(store) as Arc<DynSecretStore>, "pgw-conformance").await;
}
