//! Deletes a finished job (and its Pod) once its TTL has passed and nothing still needs it (see
//! domain::retention). The job is requeued for the moment its TTL ends, so no pass over all jobs is needed.
//!
//! Crash safety: the decision is re-made from the stores on every reconcile; deleting an object that is already
//! gone is success, and the job is deleted with a precondition on its UID, so a newer job of the same name is never
//! deleted by an old decision.

use kube::api::Preconditions;

use super::*;
use crate::domain::callback::rules::settled as callback_settled;
use crate::domain::retention::{Held, Retention, RetentionView, decide};

/// How soon a job held by its session is looked at again: the session records a job's end within a reconcile, and
/// that write does not trigger finished jobs.
const HELD_BY_SESSION: Duration = Duration::from_secs(5);
/// How soon a job held for its session's pending callbacks is looked at again (the children's deliveries do not
/// trigger it).
const HELD_FOR_INHERITANCE: Duration = Duration::from_secs(30);

pub(super) async fn expire(job: &AgentJob, ctx: &Context) -> Result<Action> {
    let ns = job.namespace().unwrap_or_default();
    let session = ctx.session(&ns, &job.spec.session_name);
    let session_awaits_callbacks = session.as_ref().is_some_and(|s| {
        s.status
            .as_ref()
            .is_some_and(|st| !st.callback_queue.is_empty())
            || ctx
                .children_of(&ns, &s.name_any())
                .iter()
                .any(|c| c.spec.callback && !callback_settled(c))
    });
    let view = RetentionView {
        job,
        session: session.as_deref(),
        session_awaits_callbacks,
        default_ttl_seconds: ctx.default_job_ttl_seconds,
        now: jiff::Timestamp::now(),
    };
    match decide(&view) {
        Retention::Keep | Retention::Held(Held::Callback) => Ok(Action::await_change()),
        // A second past the moment, so the next look finds it due (the finish time has second resolution).
        Retention::Later(left) => Ok(Action::requeue(left + Duration::from_secs(1))),
        Retention::Held(Held::SessionRecording) => Ok(Action::requeue(HELD_BY_SESSION)),
        Retention::Held(Held::Inheritance) => Ok(Action::requeue(HELD_FOR_INHERITANCE)),
        Retention::Due => {
            delete_expired(job, ctx).await?;
            if let Some(session) = &session {
                let ttl = crate::domain::retention::ttl_of(job, ctx.default_job_ttl_seconds)
                    .unwrap_or_default();
                ctx.event_about(
                    session.as_ref(),
                    false,
                    "JobExpired",
                    format!(
                        "job {} deleted {ttl}s after it ended (ttlSecondsAfterFinished); the session keeps its result",
                        job.name_any()
                    ),
                    Some(crate::controller::session::job_reference(
                        &ns,
                        &job.name_any(),
                    )),
                )
                .await;
            }
            Ok(Action::await_change())
        }
    }
}

/// Deletes the job's Pod, then the job. The Pod is owned by the job, so garbage collection would remove it too;
/// deleting it here does not depend on a garbage collector running.
async fn delete_expired(job: &AgentJob, ctx: &Context) -> Result<()> {
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    if ctx.pod(&ns, &name).is_some() {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        ctx.metrics.write("pods", "delete");
        match pods.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let jobs: Api<AgentJob> = Api::namespaced(ctx.client.clone(), &ns);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: job.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    ctx.metrics.write("agentjobs", "delete");
    match jobs.delete(&name, &params).await {
        Ok(_) => {
            info!(job = %name, "deleted after its ttlSecondsAfterFinished");
            Ok(())
        }
        // Gone already, or (409 on the UID precondition) a newer job of that name: nothing of ours to delete.
        Err(e) if not_found(&e) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
