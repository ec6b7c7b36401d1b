//! The process node: test and development infrastructure that plays the kubelet of one Node whose Pods run as
//! local processes, so that agent Pods really run (the agent runner, Claude Code) against the local control plane.
//! kwok stays the node of simulated Pods; a Pod comes here only when it selects the node and tolerates its taint
//! (see `scheduling`).
//!
//! What it does like a kubelet: registers the Node and renews its Lease; materialises volumes (emptyDir, downward
//! API, ConfigMap, Secret, projected ServiceAccount tokens bound to the Pod, hostPath, claims), expands `$(VAR)`,
//! reports Running and the exit codes with termination messages, enforces `activeDeadlineSeconds`, stops deleted
//! Pods with SIGTERM then SIGKILL. What it does not: images (a container's command runs from the node's PATH; an
//! image without a command maps to a configured entrypoint), isolation (processes run as the node's user, in-
//! container paths are translated to local folders in environment values, arguments and the working folder),
//! restarts, probes, and refreshing projected tokens. SIGTERM or SIGINT stop it, giving back its default
//! StorageClass mark. Logs are files, `ROOT/logs/NAMESPACE/POD/CONTAINER.log`,
//! also served to `kubectl logs` (see `logs`).

pub mod container;
pub mod logs;
pub mod node;
pub mod pods;
pub mod status;
pub mod storage;
pub mod volumes;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use kube::Client;

/// Label of the process node (`"true"`), for Pods' nodeSelector.
pub const NODE_LABEL: &str = "agentorchestrator.dev/process-node";
/// Taint of the process node (`NoSchedule`): only Pods that tolerate it run here.
pub const TAINT_KEY: &str = "agentorchestrator.dev/process-node";
/// The StorageClass whose claims the process node provisions.
pub const STORAGE_CLASS: &str = "process-node";
pub const PROVISIONER: &str = "agentorchestrator.dev/process-node";
/// Default name of the Node.
pub const DEFAULT_NODE: &str = "process-node-0";

/// The nodeSelector and tolerations that send a Pod to the process node.
pub fn scheduling() -> (serde_json::Value, serde_json::Value) {
    (
        serde_json::json!({ NODE_LABEL: "true" }),
        serde_json::json!([{ "key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule" }]),
    )
}

#[derive(Debug, Clone)]
pub struct Config {
    pub node: String,
    /// Pods' folders, logs and volumes live here.
    pub root: PathBuf,
    /// PATH of the processes (unless the Pod sets one).
    pub path: String,
    /// Image (prefix) to command, for containers without a command.
    pub entrypoints: Vec<(String, String)>,
    /// Make the process node's StorageClass the cluster default.
    pub default_storage_class: bool,
}

impl Config {
    /// The command standing in for the entrypoint of `image`: the longest matching image prefix.
    pub fn entrypoint(&self, image: &str) -> Option<String> {
        self.entrypoints
            .iter()
            .filter(|(prefix, _)| image.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, cmd)| cmd.clone())
    }
}

/// Runs the process node until one of its loops ends (which is an error: they are meant to run forever).
pub async fn run(client: Client, mut config: Config) -> Result<()> {
    std::fs::create_dir_all(&config.root)?;
    // Absolute and without `..`: the API server refuses such hostPath volumes, and processes change folders.
    config.root = config.root.canonicalize()?;
    let config = Arc::new(config);
    // `kubectl logs` through the API server; without it the log files are still there.
    let logs_port = match logs::serve(config.root.clone()).await {
        Ok(port) => Some(port),
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "no log endpoint: kubectl logs will not reach this node"
            );
            None
        }
    };
    // The class (and its default mark) before the Node: once the Node is Ready, its claims can be provisioned.
    storage::ensure_class(&client, &config.node, config.default_storage_class).await?;
    node::register(&client, &config.node, logs_port).await?;
    let volumes = config.root.join("volumes");
    std::fs::create_dir_all(&volumes)?;
    tracing::info!(node = %config.node, root = %config.root.display(), "process node ready");
    tokio::select! {
        _ = node::heartbeat(client.clone(), config.node.clone(), logs_port) => Ok(()),
        r = pods::run(client.clone(), config.clone()) => r,
        r = storage::provision(client.clone(), volumes, config.node.clone()) => r,
        r = storage::reclaim(client.clone()) => r,
        r = stop_signal() => {
            r?;
            // What this node changed in the cluster beyond its own objects: the default StorageClass mark.
            if config.default_storage_class {
                storage::unmark_default(&client, &config.node).await?;
            }
            tracing::info!(node = %config.node, "process node stopped");
            Ok(())
        }
    }
}

/// SIGTERM or SIGINT.
async fn stop_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = (
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
    );
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entrypoints_match_the_longest_image_prefix() {
        let config = Config {
            node: "n".into(),
            root: "/r".into(),
            path: "/bin".into(),
            entrypoints: vec![
                ("ghcr.io/agentorchestrator/".into(), "generic".into()),
                (
                    "ghcr.io/agentorchestrator/agent-runner".into(),
                    "agent-runner".into(),
                ),
            ],
            default_storage_class: false,
        };
        assert_eq!(
            config
                .entrypoint("ghcr.io/agentorchestrator/agent-runner:latest")
                .as_deref(),
            Some("agent-runner")
        );
        assert_eq!(
            config
                .entrypoint("ghcr.io/agentorchestrator/other")
                .as_deref(),
            Some("generic")
        );
        assert_eq!(config.entrypoint("busybox"), None);
    }
}
