//! A local volume provisioner for the process node: a StorageClass whose claims get a hostPath PersistentVolume in
//! the process node's folder, deleted (folder and volume) when the claim is. This is what gives a session's
//! workspace claim a folder that every Pod of the session, one after the other, finds again.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::{PROVISIONER, STORAGE_CLASS};

/// Creates or updates the StorageClass; `default` makes it the cluster's default class. The default mark has a
/// field manager of its own, so that a process node started without `default` (several run at once in tests)
/// leaves another's mark in place.
pub async fn ensure_class(client: &Client, default: bool) -> Result<()> {
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
            &PatchParams::apply("process-node-default").force(),
            &Patch::Apply(mark),
        )
        .await
        .context("default StorageClass")?;
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

/// The volume that satisfies `pvc`: a hostPath folder under `root`, bound in advance to the claim.
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

/// Provisions volumes for pending claims of the class.
pub async fn provision(client: Client, root: PathBuf) -> Result<()> {
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let mut events = watcher(claims, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = events.next().await {
        let Ok(pvc) = event else { continue };
        let pending = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound")
            && pvc
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_ref())
                .is_none();
        if !pending || !ours(&pvc) || pvc.metadata.deletion_timestamp.is_some() {
            continue;
        }
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
}
