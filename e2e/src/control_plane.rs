//! Acting on the local control plane itself in end-to-end tests: restarting one of its components under a running
//! workload (`localcluster restart`), as a crash or a rollout of the API server would.

use std::path::PathBuf;
use std::process::Command;

use crate::{kubeconfig_path, local_bin};

/// The folder `localcluster` was started with: it writes the kubeconfig at its top.
fn cluster_root() -> PathBuf {
    kubeconfig_path()
        .parent()
        .expect("the kubeconfig lies in the cluster's root folder")
        .to_path_buf()
}

/// SIGKILLs kube-apiserver and starts it again with its own arguments; returns once it answers /readyz again. Only
/// for tests that run alone (`scripts/e2e-lanes.sh` runs them after the others): every watch in the cluster breaks.
pub async fn restart_api_server() {
    let root = cluster_root();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(local_bin("localcluster"))
            .args([
                "restart",
                "--component",
                "kube-apiserver",
                "--signal",
                "KILL",
                "--root",
            ])
            .arg(&root)
            .output()
    })
    .await
    .expect("join")
    .expect("run localcluster restart");
    assert!(
        out.status.success(),
        "localcluster restart kube-apiserver failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
