//! A local volume provisioner for the process node: a StorageClass whose claims get a hostPath PersistentVolume in
//! the process node's folder, deleted (folder and volume) when the claim is. This is what gives a session's
//! workspace claim a folder that every Pod of the session, one after the other, finds again.
//!
//! Several process nodes run at once (one per test), so each provisions only the claims of Pods that can run on it
//! (bound to it, or whose nodeSelector it matches): a Pod that names its node (kubernetes.io/hostname) gets its
//! workspace in that node's folder, never in another test's.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use futures::StreamExt;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::{PROVISIONER, STORAGE_CLASS};

/// Field manager of the default mark, before it was one per node: `unmark_default` also gives back its share.
const LEGACY_DEFAULT_MANAGER: &str = "process-node-default";

fn default_manager(node: &str) -> String {
    format!("process-node-default-{node}")
}

/// Creates or updates the StorageClass; `default` makes it the cluster's default class. The default mark has a
/// field manager per node, so that a node started without `default` (several run at once in tests) leaves
/// another's mark in place, and a node that stops takes back only its own share of it (`unmark_default`).
pub async fn ensure_class(client: &Client, node: &str, default: bool) -> Result<()> {
    let api: Api<StorageClass> = Api::all(client.clone());
    let class = json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    });
    api.patch(
        STORAGE_CLASS,
        &PatchParams::apply("process-node").force(),
        &Patch::Apply(class),
    )
    .await
    .context("StorageClass")?;
    if default {
        let mark = json!({
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": PROVISIONER,
        });
        api.patch(
            STORAGE_CLASS,
            &PatchParams::apply(&default_manager(node)).force(),
            &Patch::Apply(mark),
        )
        .await
        .context("default StorageClass")?;
    }
    Ok(())
}

/// Gives back this node's default mark: the class stays default only while another node still marks it.
pub async fn unmark_default(client: &Client, node: &str) -> Result<()> {
    let api: Api<StorageClass> = Api::all(client.clone());
    // Applying a configuration of no field drops this manager's claims (its managedFields entry goes, so stopped
    // nodes leave no trace on the shared class); the annotation goes when no manager claims it any more. The
    // provisioner stays, owned by the class's own manager.
    let unmarked = json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS},
    });
    for manager in [default_manager(node), LEGACY_DEFAULT_MANAGER.to_string()] {
        api.patch(
            STORAGE_CLASS,
            &PatchParams::apply(&manager).force(),
            &Patch::Apply(&unmarked),
        )
        .await
        .context("unmark the default StorageClass")?;
    }
    Ok(())
}

fn ours(pvc: &PersistentVolumeClaim) -> bool {
    let class = pvc
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref());
    let asked = pvc
        .annotations()
        .get("volume.kubernetes.io/storage-provisioner")
        .map(String::as_str);
    class == Some(STORAGE_CLASS) || asked == Some(PROVISIONER)
}

/// A claim of the class that waits for a volume.
fn pending(pvc: &PersistentVolumeClaim) -> bool {
    let unbound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound")
        && pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_ref())
            .is_none();
    unbound && ours(pvc) && pvc.metadata.deletion_timestamp.is_none()
}

/// Whether `pod` runs, or can be scheduled, on the node `node` with `labels`.
fn runs_here(pod: &Pod, node: &str, labels: &BTreeMap<String, String>) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    match spec.node_name.as_deref() {
        Some(bound) => bound == node,
        None => spec
            .node_selector
            .as_ref()
            .is_some_and(|s| s.iter().all(|(k, v)| labels.get(k) == Some(v))),
    }
}

/// The claims `pod` mounts.
fn claims_of(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| Some(v.persistent_volume_claim.as_ref()?.claim_name.clone()))
        .collect()
}

/// The volume that satisfies `pvc`: a hostPath folder under `root`, bound in advance to the claim. No node
/// affinity: every process node is on this machine, and a Pod that may run on any of them (a nodeSelector of the
/// process-node label alone) must not be held to one that has stopped since.
pub fn volume_for(pvc: &PersistentVolumeClaim, root: &Path) -> PersistentVolume {
    let uid = pvc.uid().unwrap_or_default();
    let name = format!("pvc-{uid}");
    let spec = pvc.spec.clone().unwrap_or_default();
    let size = spec
        .resources
        .and_then(|r| r.requests)
        .and_then(|r| r.get("storage").cloned())
        .map(|q| q.0)
        .unwrap_or_else(|| "1Gi".into());
    let modes = spec
        .access_modes
        .unwrap_or_else(|| vec!["ReadWriteOnce".into()]);
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": name,
            "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
        },
        "spec": {
            "capacity": {"storage": size},
            "accessModes": modes,
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": STORAGE_CLASS,
            "volumeMode": "Filesystem",
            "hostPath": {"path": root.join(&name).display().to_string(), "type": "DirectoryOrCreate"},
            "claimRef": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": pvc.namespace(), "name": pvc.name_any(), "uid": uid,
            },
        },
    }))
    .expect("a valid PersistentVolume")
}

/// What the provisioner reacts to: a claim, or a Pod (whose claims may be waiting for it).
enum Seen {
    Claim(Box<PersistentVolumeClaim>),
    Pod(Box<Pod>),
}

/// Provisions volumes for pending claims of the class that a Pod of this node mounts. A claim may come before
/// or after its Pod, so both are watched.
pub async fn provision(client: Client, root: PathBuf, node: String) -> Result<()> {
    let labels = super::node::node(&node).metadata.labels.unwrap_or_default();
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claim_events = watcher(claims, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .map(|e| e.map(|c| Seen::Claim(Box::new(c))))
        .boxed();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .map(|e| e.map(|p| Seen::Pod(Box::new(p))))
        .boxed();
    let mut events = futures::stream::select(claim_events, pod_events);
    while let Some(event) = events.next().await {
        // The watchers back off and resume by themselves after an error.
        let Ok(seen) = event else { continue };
        let wanted = match seen {
            Seen::Claim(pvc) if pending(&pvc) => {
                let ns = pvc.namespace().unwrap_or_default();
                let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
                let mounted_here = match pods.list(&Default::default()).await {
                    Ok(list) => list.items.iter().any(|p| {
                        runs_here(p, &node, &labels) && claims_of(p).contains(&pvc.name_any())
                    }),
                    Err(e) => {
                        tracing::warn!(error = %e, "listing the Pods of a claim");
                        false
                    }
                };
                if mounted_here { vec![*pvc] } else { vec![] }
            }
            Seen::Claim(_) => vec![],
            Seen::Pod(pod) if runs_here(&pod, &node, &labels) => {
                let ns = pod.namespace().unwrap_or_default();
                let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
                let mut wanted = vec![];
                for name in claims_of(&pod) {
                    if let Ok(Some(pvc)) = api.get_opt(&name).await
                        && pending(&pvc)
                    {
                        wanted.push(pvc);
                    }
                }
                wanted
            }
            Seen::Pod(_) => vec![],
        };
        for pvc in wanted {
            let pv = volume_for(&pvc, &root);
            match volumes.create(&PostParams::default(), &pv).await {
                Ok(_) => {
                    tracing::info!(claim = %format!("{}/{}", pvc.namespace().unwrap_or_default(), pvc.name_any()),
                    volume = %pv.name_any(), "provisioned")
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => tracing::warn!(error = %e, "provisioning"),
            }
        }
    }
    Ok(())
}

/// Deletes released volumes of the class, with their folders.
pub async fn reclaim(client: Client) -> Result<()> {
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let mut events = watcher(volumes.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = events.next().await {
        let Ok(pv) = event else { continue };
        let mine = pv
            .annotations()
            .get("pv.kubernetes.io/provisioned-by")
            .map(String::as_str)
            == Some(PROVISIONER);
        let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
        if !mine || !released {
            continue;
        }
        if let Some(path) = pv
            .spec
            .as_ref()
            .and_then(|s| s.host_path.as_ref())
            .map(|h| h.path.clone())
        {
            let _ = std::fs::remove_dir_all(&path);
        }
        match volumes
            .delete(&pv.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => tracing::info!(volume = %pv.name_any(), "released volume deleted"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::warn!(error = %e, "deleting a released volume"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_bound_in_advance_to_their_claim() {
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "s1-workspace", "namespace": "ns", "uid": "abc"},
            "spec": {"storageClassName": "process-node", "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "2Gi"}}},
        }))
        .unwrap();
        assert!(ours(&pvc));
        let pv = volume_for(&pvc, Path::new("/data"));
        let spec = pv.spec.unwrap();
        assert_eq!(pv.metadata.name.as_deref(), Some("pvc-abc"));
        assert_eq!(spec.host_path.unwrap().path, "/data/pvc-abc");
        let claim = spec.claim_ref.unwrap();
        assert_eq!(
            (
                claim.namespace.as_deref(),
                claim.name.as_deref(),
                claim.uid.as_deref()
            ),
            (Some("ns"), Some("s1-workspace"), Some("abc"))
        );
        assert_eq!(spec.capacity.unwrap()["storage"].0, "2Gi");
    }

    #[test]
    fn a_node_provisions_only_for_pods_that_run_on_it() {
        let labels = super::super::node::node("node-a").metadata.labels.unwrap();
        let pod = |spec: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
        };
        let mounts = json!([{"name": "w", "persistentVolumeClaim": {"claimName": "s1-workspace"}}]);
        let containers = json!([{"name": "agent"}]);
        let mine = pod(json!({"containers": containers, "volumes": mounts,
            "nodeSelector": {"kubernetes.io/hostname": "node-a", super::super::NODE_LABEL: "true"}}));
        let other = pod(json!({"containers": containers, "volumes": mounts,
            "nodeSelector": {"kubernetes.io/hostname": "node-b", super::super::NODE_LABEL: "true"}}));
        let bound_here = pod(json!({"containers": containers, "nodeName": "node-a"}));
        let bound_elsewhere = pod(json!({"containers": containers, "nodeName": "node-b",
            "nodeSelector": {super::super::NODE_LABEL: "true"}}));
        let anywhere = pod(json!({"containers": containers}));
        assert!(runs_here(&mine, "node-a", &labels));
        assert!(!runs_here(&other, "node-a", &labels));
        assert!(runs_here(&bound_here, "node-a", &labels));
        assert!(!runs_here(&bound_elsewhere, "node-a", &labels));
        assert!(
            !runs_here(&anywhere, "node-a", &labels),
            "no selector: kwok's, not ours"
        );
        assert_eq!(claims_of(&mine), ["s1-workspace"]);
        assert!(claims_of(&bound_here).is_empty());
    }
}
