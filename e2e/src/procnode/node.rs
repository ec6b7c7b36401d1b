//! The Node object of the process node: registered with a label and a taint (so that only Pods that ask for it
//! run here, and kwok stays the node of everything else), reported Ready, and kept alive by renewing its Lease in
//! `kube-node-lease` as a kubelet does.

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::{NODE_LABEL, TAINT_KEY};

const MANAGER: &str = "process-node";
const LEASE_SECONDS: i32 = 40;
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// The Ready condition's heartbeat is refreshed this often (the Lease says alive in between, as for kubelets).
const STATUS_EVERY: Duration = Duration::from_secs(60);

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The Node object, as registered.
pub fn node(name: &str) -> Node {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let mut labels = json!({
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "type": "process",
    });
    labels[NODE_LABEL] = "true".into();
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
        },
        "spec": {
            "taints": [{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
        },
    }))
    .expect("a valid Node")
}

fn status(logs_port: Option<u16>) -> serde_json::Value {
    let t = now();
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": t, "lastTransitionTime": t})
    };
    let capacity =
        json!({"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                condition("Ready", "True", "ProcessNodeReady", "the process node runs Pods as local processes"),
                condition("MemoryPressure", "False", "NoPressure", "not measured"),
                condition("DiskPressure", "False", "NoPressure", "not measured"),
                condition("PIDPressure", "False", "NoPressure", "not measured"),
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "localhost"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": logs_port.unwrap_or(0)}},
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "", "osImage": "local processes",
                "containerRuntimeVersion": "process://0", "kubeletVersion": "v0.0.0-process-node",
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": std::env::consts::ARCH,
            },
        },
    })
}

/// Registers the Node (or takes over the one registered before) and reports it Ready.
pub async fn register(client: &Client, name: &str, logs_port: Option<u16>) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let desired = node(name);
    match api.create(&PostParams::default(), &desired).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let patch = json!({"metadata": {"labels": desired.metadata.labels}, "spec": {"taints": desired.spec.and_then(|s| s.taints)}});
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .context("update the Node")?;
        }
        Err(e) => return Err(e).context("register the Node"),
    }
    report_ready(client, name, logs_port).await
}

async fn report_ready(client: &Client, name: &str, logs_port: Option<u16>) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(status(logs_port)),
    )
    .await
    .context("Node status")?;
    Ok(())
}

async fn renew(client: &Client, name: &str) -> Result<()> {
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name},
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        },
    });
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(lease),
    )
    .await
    .context("renew the node Lease")?;
    Ok(())
}

/// Keeps the Node alive: Lease every 10 s, Ready heartbeat every minute. Errors are logged and retried.
pub async fn heartbeat(client: Client, name: String, logs_port: Option<u16>) {
    let mut since_status = Duration::ZERO;
    loop {
        if let Err(e) = renew(&client, &name).await {
            tracing::warn!(error = format!("{e:#}"), "heartbeat");
        }
        if since_status >= STATUS_EVERY {
            since_status = Duration::ZERO;
            if let Err(e) = report_ready(&client, &name, logs_port).await {
                tracing::warn!(error = format!("{e:#}"), "node status");
            }
        }
        tokio::time::sleep(RENEW_EVERY).await;
        since_status += RENEW_EVERY;
    }
}
