//! The session workspace claim, made by the first job of a session whose blueprint asks for one (see
//! `domain::workspace`). Idempotent: every job of the session asks, the first creates, later ones find it.

use crds::{AgentJob, AgentSession, JobPhase, WorkspaceSpec};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use std::time::Duration;

use super::job::{fail, lifecycle, write};
use crate::apply::already_exists;
use crate::context::{Context, MANAGER};
use crate::domain::workspace::{Existing, build_claim, judge, workspace_claim_name};
use crate::error::Result;

/// Makes sure the session's claim exists. `Some(action)` when the job cannot start yet (an earlier session's claim
/// of the same name is still being removed) or at all (the name is taken by a claim that is not the session's).
pub async fn ensure(
    job: &AgentJob,
    session: &AgentSession,
    spec: &WorkspaceSpec,
    ctx: &Context,
) -> Result<Option<Action>> {
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
            return Ok(None);
        }
        Err(e) if already_exists(&e) => api.get_opt(&claim.name_any()).await?,
        Err(e) => return Err(e.into()),
    };
    let Some(existing) = existing else {
        // Gone between the create and the read: try again.
        return Ok(Some(Action::requeue(Duration::from_millis(200))));
    };
    match judge(&existing, session) {
        Existing::Ours => Ok(None),
        Existing::Leaving => {
            let status = job.status.clone().unwrap_or_default();
            if status.reason.as_deref() != Some("WorkspaceReleasing") {
                let next = lifecycle(
                    job,
                    &status,
                    JobPhase::Pending,
                    "WorkspaceReleasing",
                    &format!(
                        "waiting for the workspace claim {} of an earlier session of this name to be deleted",
                        workspace_claim_name(&session.name_any())
                    ),
                );
                write(job, ctx, next).await?;
            }
            Ok(Some(Action::requeue(Duration::from_secs(2))))
        }
        Existing::Foreign => {
            let message = format!(
                "PersistentVolumeClaim {} exists and does not belong to session {}: rename or delete it",
                existing.name_any(),
                session.name_any()
            );
            fail(job, ctx, "WorkspaceConflict", message, None)
                .await
                .map(Some)
        }
    }
}
