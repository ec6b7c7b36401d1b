//! A tree's identity on its objects (the tree label, the ownerReference of a child session to its parent, and of a
//! job to its session) and the Terminate cascade: what `domain::tree` decides, written.
//!
//! Crash safety: each write is a merge patch carrying the resourceVersion it was computed from, and each decision is
//! made again from the stores on the next reconcile, so a crash between two writes leaves nothing to undo.

use std::sync::Arc;

use crds::{AgentJob, AgentSession, labels};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::apply::not_found;
use crate::context::Context;
use crate::domain::tree::{
    Placement, closes_descendants, jobs_to_stop, owner_references, place, session_reference,
    tree_label,
};
use crate::error::{Error, Result};

/// On a job stopped because an ancestor of its session closed: that ancestor's name. Its callback to any other
/// parent (one inside the closed tree) is dropped with reason ParentClosed.
pub const STOPPED_BY: &str = "agentorchestrator.dev/stopped-by";

async fn patch_meta<K>(ctx: &Context, obj: &K, metadata: serde_json::Value) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let mut metadata = metadata;
    metadata["resourceVersion"] = json!(obj.resource_version());
    let resource = if K::kind(&()) == AgentSession::kind(&()) {
        "agentsessions"
    } else {
        "agentjobs"
    };
    ctx.metrics.write(resource, "patch");
    let written = api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": metadata})),
        )
        .await
        .map_err(|e| {
            Error::from_write(e, format!("{} {} metadata", K::kind(&()), obj.name_any()))
        })?;
    ctx.wrote(obj);
    Ok(written)
}

/// Brings the session's tree label and its ownerReference to its current parent up to date; returns the session
/// as written and its place (whose depth goes into status).
pub async fn sync_session(
    ctx: &Context,
    session: Arc<AgentSession>,
) -> Result<(Arc<AgentSession>, Placement)> {
    let ns = session.namespace().unwrap_or_default();
    let placement = place(&session, |n| ctx.session(&ns, n));
    let parent = crds::limits::current_parent(&session).and_then(|p| ctx.session(&ns, p));
    let refs = owner_references(&session, parent.as_deref());
    let same_refs = session.owner_references() == refs.as_slice();
    // A parent not in the store yet (a tree applied at once) keeps what the session has until it shows up.
    let refs_known = parent.is_some() || crds::limits::current_parent(&session).is_none();
    if tree_label(session.as_ref()) == Some(placement.tree.as_str()) && (same_refs || !refs_known) {
        return Ok((session, placement));
    }
    let mut metadata = json!({"labels": {labels::TREE: placement.tree}});
    if refs_known && !same_refs {
        metadata["ownerReferences"] = json!(refs);
    }
    let written = patch_meta(ctx, session.as_ref(), metadata).await?;
    Ok((Arc::new(written), placement))
}

/// Gives a job its session's tree label and an ownerReference to the session, if it lacks them (jobs applied with
/// kubectl; the gateway's and the operator's own jobs carry the label from their creation).
pub async fn label_job(
    ctx: &Context,
    job: Arc<AgentJob>,
    session: &AgentSession,
) -> Result<Arc<AgentJob>> {
    let tree = tree_label(session).map(str::to_string).unwrap_or_else(|| {
        place(session, |n| {
            ctx.session(&session.namespace().unwrap_or_default(), n)
        })
        .tree
    });
    let wanted = session_reference(session);
    let has_ref = wanted
        .as_ref()
        .is_none_or(|w| job.owner_references().iter().any(|r| r.uid == w.uid));
    if tree_label(job.as_ref()) == Some(tree.as_str()) && has_ref {
        return Ok(job);
    }
    let mut metadata = json!({"labels": {labels::TREE: tree}});
    if !has_ref {
        let mut refs: Vec<OwnerReference> = job
            .owner_references()
            .iter()
            .filter(|r| r.kind != AgentSession::kind(&()))
            .cloned()
            .collect();
        refs.extend(wanted);
        metadata["ownerReferences"] = json!(refs);
    }
    Ok(Arc::new(patch_meta(ctx, job.as_ref(), metadata).await?))
}

/// A session stopped with `parentClosePolicy: Terminate` stops every running job below it: each is marked with
/// the session that closed, then deleted (the job controller stops its Pod, and its callback follows the usual
/// path: to the closed session as Stopped, dropped with reason ParentClosed to a parent inside the closed tree).
pub async fn stop_descendants(ctx: &Context, session: &AgentSession) -> Result<usize> {
    if !closes_descendants(session) {
        return Ok(0);
    }
    let ns = session.namespace().unwrap_or_default();
    let stop = jobs_to_stop(
        session,
        |p| ctx.child_sessions(&ns, p),
        |s| ctx.jobs_of(&ns, s),
    );
    let api: Api<AgentJob> = Api::namespaced(ctx.client.clone(), &ns);
    for job in &stop {
        if job.annotations().get(STOPPED_BY).is_none() {
            patch_meta(
                ctx,
                job.as_ref(),
                json!({"annotations": {STOPPED_BY: session.name_any()}}),
            )
            .await?;
        }
        ctx.metrics.write("agentjobs", "delete");
        match api
            .delete(&job.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
        ctx.event(
            job.as_ref(),
            true,
            "AncestorStopped",
            format!(
                "session {} was stopped with parentClosePolicy Terminate; this job of a session below it is stopped",
                session.name_any()
            ),
        )
        .await;
    }
    if !stop.is_empty() {
        let names: Vec<String> = stop.iter().map(|j| j.name_any()).collect();
        ctx.event(
            session,
            true,
            "DescendantsStopped",
            format!(
                "parentClosePolicy Terminate: stopped {} job(s) below this session: {}",
                names.len(),
                names.join(", ")
            ),
        )
        .await;
    }
    Ok(stop.len())
}
