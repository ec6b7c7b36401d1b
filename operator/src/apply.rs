//! Writes to the API server: server-side apply of status with an optimistic-concurrency precondition.

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::{Error, Result};

/// Applies `status` to `obj`'s status subresource as field manager `manager`, only if `obj` is unchanged since it
/// was read (its resourceVersion): a decision made from a stale read fails with Conflict instead of landing.
pub async fn apply_status<K, S>(api: &Api<K>, obj: &K, manager: &str, status: &S) -> Result<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let body = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": obj.name_any(), "resourceVersion": obj.resource_version()},
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| Error::from_write(e, format!("{} {} status", K::kind(&()), obj.name_any())))
}

/// Whether a write failed because the object already exists.
pub fn already_exists(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

pub fn not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}
