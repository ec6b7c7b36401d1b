//! A Pod's volumes as local folders: emptyDir, downward API, ConfigMap, Secret, projected (ServiceAccount token by
//! TokenRequest bound to the Pod, as the kubelet does), hostPath and PersistentVolumeClaim (the bound volume's
//! hostPath, which the process node's provisioner creates).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod,
    Secret, ServiceAccount, Volume,
};
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};

use super::container::field;

/// Materialises every volume of `pod` under `dir` and returns the local folder of each, by volume name.
pub async fn prepare(client: &Client, pod: &Pod, dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let local = prepare_one(client, pod, volume, &dir.join(&volume.name))
            .await
            .with_context(|| format!("volume {}", volume.name))?;
        out.insert(volume.name.clone(), local);
    }
    Ok(out)
}

async fn prepare_one(client: &Client, pod: &Pod, v: &Volume, dir: &Path) -> Result<PathBuf> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(host) = &v.host_path {
        std::fs::create_dir_all(&host.path).ok();
        return Ok(PathBuf::from(&host.path));
    }
    if let Some(claim) = &v.persistent_volume_claim {
        return claim_path(client, &ns, &claim.claim_name).await;
    }
    std::fs::create_dir_all(dir)?;
    if v.empty_dir.is_some() {
        return Ok(dir.to_path_buf());
    }
    if let Some(d) = &v.downward_api {
        downward(pod, d.items.iter().flatten(), dir)?;
    } else if let Some(cm) = &v.config_map {
        let data = config_map(client, &ns, &cm.name, cm.optional == Some(true)).await?;
        write_keys(&data, cm.items.as_deref(), dir)?;
    } else if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let data = secret(client, &ns, &name, s.optional == Some(true)).await?;
        write_keys(&data, s.items.as_deref(), dir)?;
    } else if let Some(p) = &v.projected {
        for source in p.sources.iter().flatten() {
            if let Some(t) = &source.service_account_token {
                let audience = t.audience.clone();
                let token = bound_token(client, pod, audience, t.expiration_seconds).await?;
                write(&dir.join(&t.path), token.as_bytes())?;
            }
            if let Some(d) = &source.downward_api {
                downward(pod, d.items.iter().flatten(), dir)?;
            }
            if let Some(cm) = &source.config_map {
                let data = config_map(client, &ns, &cm.name, cm.optional == Some(true)).await?;
                write_keys(&data, cm.items.as_deref(), dir)?;
            }
            if let Some(s) = &source.secret {
                let data = secret(client, &ns, &s.name, s.optional == Some(true)).await?;
                write_keys(&data, s.items.as_deref(), dir)?;
            }
        }
    } else {
        bail!("this kind of volume is not supported by the process node");
    }
    Ok(dir.to_path_buf())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, bytes).with_context(|| format!("write {}", path.display()))
}

fn downward<'a>(
    pod: &Pod,
    items: impl Iterator<Item = &'a DownwardAPIVolumeFile>,
    dir: &Path,
) -> Result<()> {
    for item in items {
        let path = item
            .field_ref
            .as_ref()
            .map(|f| f.field_path.as_str())
            .ok_or_else(|| anyhow!("downward API file {} needs a fieldRef", item.path))?;
        let value = field(pod, path).unwrap_or_default();
        write(&dir.join(&item.path), value.as_bytes())?;
    }
    Ok(())
}

fn write_keys(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    dir: &Path,
) -> Result<()> {
    match items {
        Some(items) => {
            for item in items {
                let bytes = data
                    .get(&item.key)
                    .ok_or_else(|| anyhow!("key {} is missing", item.key))?;
                write(&dir.join(&item.path), bytes)?;
            }
        }
        None => {
            for (key, bytes) in data {
                write(&dir.join(key), bytes)?;
            }
        }
    }
    Ok(())
}

async fn config_map(
    client: &Client,
    ns: &str,
    name: &str,
    optional: bool,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await? {
        Some(cm) => {
            let mut data: BTreeMap<String, Vec<u8>> = cm
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            data.extend(
                cm.binary_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, ByteString(v))| (k, v)),
            );
            Ok(data)
        }
        None if optional => Ok(BTreeMap::new()),
        None => bail!("ConfigMap {name} does not exist"),
    }
}

async fn secret(
    client: &Client,
    ns: &str,
    name: &str,
    optional: bool,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await? {
        Some(s) => Ok(s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, ByteString(v))| (k, v))
            .collect()),
        None if optional => Ok(BTreeMap::new()),
        None => bail!("Secret {name} does not exist"),
    }
}

/// A ServiceAccount token for the Pod, bound to it (TokenReview then names the Pod), as the kubelet asks for one.
pub async fn bound_token(
    client: &Client,
    pod: &Pod,
    audience: Option<String>,
    expiration: Option<i64>,
) -> Result<String> {
    let ns = pod.namespace().unwrap_or_default();
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(audience.into_iter().collect()),
            expiration_seconds: Some(expiration.unwrap_or(3600)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        }),
        ..Default::default()
    };
    let answer = api
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .with_context(|| format!("TokenRequest for ServiceAccount {account}"))?;
    answer
        .status
        .and_then(|s| s.token)
        .ok_or_else(|| anyhow!("TokenRequest for {account} returned no token"))
}

/// The local folder of a claim: the hostPath of the volume it is bound to.
async fn claim_path(client: &Client, ns: &str, claim: &str) -> Result<PathBuf> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pvc = claims
        .get(claim)
        .await
        .with_context(|| format!("PersistentVolumeClaim {claim}"))?;
    let volume = pvc
        .spec
        .and_then(|s| s.volume_name)
        .ok_or_else(|| anyhow!("PersistentVolumeClaim {claim} is not bound"))?;
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get(&volume)
        .await
        .with_context(|| format!("PersistentVolume {volume}"))?;
    let path = pv
        .spec
        .and_then(|s| s.host_path)
        .map(|h| h.path)
        .ok_or_else(|| {
            anyhow!("PersistentVolume {volume} has no hostPath the process node can use")
        })?;
    std::fs::create_dir_all(&path).with_context(|| format!("create {path}"))?;
    Ok(PathBuf::from(path))
}
