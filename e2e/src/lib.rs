//! Helpers of the end-to-end suite: a client for the local control plane (`make cluster-up`), a fresh namespace per
//! test that is deleted afterwards and dumped when the test fails, and waits with deadlines.
//!
//! The suite never skips: without a reachable cluster every test fails with a message that says how to start one.

pub mod agents;
pub mod anthropic;
pub mod bench;
pub mod browser;
pub mod chart;
pub mod control_plane;
pub mod demo_model;
pub mod gateway;
pub mod jaeger;
pub mod local_agents;
pub mod operator;
pub mod people;
pub mod procnode;
pub mod stack;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Api, Client, Config, Resource};
use serde::de::DeserializeOwned;

/// Root of the workspace (the folder holding `.local/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The kubeconfig of the cluster under test: `E2E_KUBECONFIG`, else `.local/kubeconfig`.
pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os("E2E_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".local/kubeconfig"))
}

/// A folder of the local toolchain (`.local/bin`: kubectl, helm, the control plane).
pub fn local_bin(tool: &str) -> PathBuf {
    workspace_root().join(".local/bin").join(tool)
}

/// A client for the cluster under test. Panics with a clear message when there is none: e2e never passes by
/// skipping.
pub async fn client() -> Client {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| {
        panic!(
            "no local cluster: cannot read {} ({e}); start one with `make cluster-up`",
            path.display()
        )
    });
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig is usable");
    Client::try_from(config).expect("client from kubeconfig")
}

/// A name unique within this test run, for namespaces and other objects tests create.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}-{:x}{:x}{n}",
        std::process::id() % 4096,
        nanos % 65536
    )
}

/// Runs `test` in a fresh namespace that exists (with its `default` ServiceAccount, without which Pods are refused)
/// before the test starts and is deleted after it. When the test fails the namespace's objects and Events are
/// printed first, so the failure can be understood from the log alone.
pub async fn with_temp_ns<F, Fut>(prefix: &str, test: F)
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let client = client().await;
    let ns = unique(prefix);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut object = Namespace::default();
    object.metadata.name = Some(ns.clone());
    object.metadata.labels = Some(
        [(
            "e2e.agentorchestrator.dev/test".to_string(),
            prefix.to_string(),
        )]
        .into(),
    );
    namespaces
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create namespace {ns}: {e}"));
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    wait_for(
        &accounts,
        "default",
        Duration::from_secs(30),
        |sa: Option<&ServiceAccount>| sa.is_some(),
    )
    .await;

    let outcome = std::panic::AssertUnwindSafe(test(client.clone(), ns.clone()))
        .catch_unwind()
        .await;
    if outcome.is_err() {
        dump_namespace(&ns);
    }
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn dump_namespace(ns: &str) {
    let kubectl = local_bin("kubectl");
    for args in [
        vec![
            "get",
            "all,agentjobs,agentsessions,agentblueprints",
            "-o",
            "wide",
        ],
        vec!["get", "events", "--sort-by=.metadata.creationTimestamp"],
    ] {
        let out = std::process::Command::new(&kubectl)
            .args(&args)
            .args(["-n", ns, "--kubeconfig"])
            .arg(kubeconfig_path())
            .output();
        if let Ok(out) = out {
            eprintln!(
                "----- kubectl {} -n {ns} -----\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Waits, by watching, until the object `name` satisfies `condition` (which also sees `None` while the object does
/// not exist), and returns it. Panics with what it waited for when the deadline passes.
pub async fn wait_for<K, C>(api: &Api<K>, name: &str, timeout: Duration, condition: C) -> Option<K>
where
    K: Resource + Clone + std::fmt::Debug + DeserializeOwned + Send + 'static,
    C: Condition<K>,
{
    let kind = std::any::type_name::<K>()
        .rsplit("::")
        .next()
        .unwrap_or("object");
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, condition)).await {
        Ok(Ok(obj)) => obj,
        Ok(Err(e)) => panic!("watching {kind} {name}: {e}"),
        Err(_) => {
            let last = api.get_opt(name).await.ok().flatten();
            panic!("timed out after {timeout:?} waiting for {kind} {name}; last seen: {last:#?}")
        }
    }
}

/// Retries `check` until it returns `Some`, for state that cannot be watched (authorization decisions, metrics).
/// Panics with `what` when the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
