//! The session workspace claim, made by the first job of a session whose blueprint asks for one (see
//! `domain::workspace`). Idempotent: every job of the session asks, the first creates, later ones find it.

use std::time::Duration;

use crds::{AgentSession, WorkspaceSpec};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::PostParams;
use kube::{Api, ResourceExt};

use crate::apply::already_exists;
use crate::context::{Context, MANAGER};
use crate::domain::workspace::{Existing, build_claim, judge, workspace_claim_name};
use crate::error::{Error, Result};

/// What the job reconciler does about the session's claim (it writes the job's status; this module only talks to
/// the claim, so it depends on nothing of the job controller).
#[derive(Debug, PartialEq, Eq)]
pub enum Workspace {
    /// The claim exists and is the session's: the Pod may mount it.
    Ready,
    /// The claim went between the create and the read: look again after this long.
    Retry(Duration),
    /// A claim of an earlier session of the same name is being deleted: wait for it (reason WorkspaceReleasing).
    Releasing(String),
    /// The name is taken by a claim that is not the session's (reason WorkspaceConflict).
    Conflict(String),
    /// The API server refused the claim for good, with its message (reason WorkspaceRejected).
    Rejected(String),
}

/// Makes sure the session's claim exists, and says whether the job can go on.
pub async fn ensure(
    session: &AgentSession,
    spec: &WorkspaceSpec,
    ctx: &Context,
) -> Result<Workspace> {
    let ns = session.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let claim = build_claim(session, spec);
    ctx.metrics.write("persistentvolumeclaims", "create");
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let existing = match api.create(&params, &claim).await {
        Ok(_) => {
            ctx.event(
                session,
                false,
                "WorkspaceCreated",
                format!(
                    "PersistentVolumeClaim {} holds the session's workspace",
                    claim.name_any()
                ),
            )
            .await;
            return Ok(Workspace::Ready);
        }
        Err(e) if already_exists(&e) => api.get_opt(&claim.name_any()).await?,
        Err(e) => {
            let err = Error::from(e);
            if err.is_permanent() {
                return Ok(Workspace::Rejected(format!(
                    "the API server refused the workspace claim {}: {}",
                    claim.name_any(),
                    err.api_message().unwrap_or_default()
                )));
            }
            return Err(err);
        }
    };
    let Some(existing) = existing else {
        return Ok(Workspace::Retry(Duration::from_millis(200)));
    };
    Ok(match judge(&existing, session) {
        Existing::Ours => Workspace::Ready,
        Existing::Leaving => Workspace::Releasing(format!(
            "waiting for the workspace claim {} of an earlier session of this name to be deleted",
            workspace_claim_name(&session.name_any())
        )),
        Existing::Foreign => Workspace::Conflict(format!(
            "PersistentVolumeClaim {} exists and does not belong to session {}: rename or delete it",
            existing.name_any(),
            session.name_any()
        )),
    })
}
