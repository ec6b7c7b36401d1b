//! Running the job's Pod and following it to the job's end.

use super::attempts::after_temporary_failure;
use super::*;
use crate::controller::workspace::{Workspace, ensure as ensure_workspace};
use crate::domain::attempts::{attempts_made, deleted, temporary_cause};

pub(super) async fn start_pod(
    job: &AgentJob,
    session: &AgentSession,
    ctx: &Context,
) -> Result<Action> {
    let ns = job.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    if job
        .status
        .as_ref()
        .and_then(|s| s.pod_name.as_ref())
        .is_some()
    {
        // It had a Pod. Unless the store is behind, someone deleted it (its node, a person): the run is lost, and
        // it was not the agent's doing.
        if pods.get_opt(&job.name_any()).await?.is_none() {
            return after_temporary_failure(job, session, None, deleted(), ctx).await;
        }
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    if let Some(refusal) = cycle(job, ctx) {
        return fail(job, ctx, refusal.reason, refusal.message, None).await;
    }
    if let crate::domain::limits::Admission::Wait(message) = governance::queue_place(job, ctx) {
        return governance::wait_for_place(job, ctx, message).await;
    }
    let blueprint = match &session.spec.blueprint {
        Some(name) => match blueprint(ctx, &ns, name).await? {
            Some(b) => Some(b),
            None => {
                let message = format!(
                    "AgentBlueprint {name} of session {} does not exist",
                    session.name_any()
                );
                return fail(job, ctx, "BlueprintNotFound", message, None).await;
            }
        },
        None => None,
    };
    let workspace = blueprint
        .as_ref()
        .and_then(|b| b.spec.pod_template.as_ref())
        .and_then(|t| t.workspace.as_ref());
    if let Some(spec) = workspace {
        match ensure_workspace(session, spec, ctx).await? {
            Workspace::Ready => {}
            Workspace::Retry(after) => return Ok(Action::requeue(after)),
            Workspace::Releasing(message) => {
                let status = job.status.clone().unwrap_or_default();
                if status.reason.as_deref() != Some("WorkspaceReleasing") {
                    let next = lifecycle(
                        job,
                        &status,
                        JobPhase::Pending,
                        "WorkspaceReleasing",
                        &message,
                    );
                    write(job, ctx, next).await?;
                }
                return Ok(Action::requeue(Duration::from_secs(2)));
            }
            Workspace::Conflict(message) => {
                return fail(job, ctx, "WorkspaceConflict", message, None).await;
            }
            Workspace::Rejected(message) => {
                return fail(job, ctx, "WorkspaceRejected", shortened(&message), None).await;
            }
        }
    }
    let pod = build_pod(&PodInputs {
        job,
        session,
        blueprint: blueprint.as_deref(),
        defaults: &ctx.defaults,
    });
    let _place = match governance::take_place(job, ctx).await? {
        governance::Place::Granted(guard) => guard,
        governance::Place::Wait(message) => {
            return governance::wait_for_place(job, ctx, message).await;
        }
    };
    ctx.metrics.write("pods", "create");
    match pods
        .create(
            &PostParams {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            },
            &pod,
        )
        .await
    {
        Ok(_) => {
            ctx.freshness.created_pod(job.uid().as_deref());
            info!("created pod")
        }
        Err(e) if already_exists(&e) => ctx.freshness.created_pod(job.uid().as_deref()),
        Err(e) => {
            let err = crate::error::Error::from(e);
            // Refused for good (400, 403, 422: the Pod is invalid, over a size limit, or forbidden, e.g. a missing
            // ServiceAccount): the same request would be refused again, so the job fails with the server's words.
            if err.is_permanent() {
                let message = format!(
                    "the API server refused the job's Pod: {}",
                    shortened(err.api_message().unwrap_or_default())
                );
                return fail(job, ctx, "PodRejected", message, None).await;
            }
            return Err(err);
        }
    }
    // The Pod's own events bring the job back here; its status is written when the Pod has one.
    Ok(Action::await_change())
}

/// Longest part of an API server message kept in a job's status: a refusal may quote the refused value (a prompt
/// of 400 KB), and conditions carry at most 32 KiB.
const MAX_REFUSAL: usize = 2000;

fn shortened(message: &str) -> String {
    match message.char_indices().nth(MAX_REFUSAL) {
        Some((cut, _)) => format!("{} [cut]", &message[..cut]),
        None => message.to_string(),
    }
}

pub(super) async fn follow_pod(
    job: &AgentJob,
    session: &AgentSession,
    pod: &AgentPod,
    ctx: &Context,
) -> Result<Action> {
    let mut status = job.status.clone().unwrap_or_default();
    status.attempts = Some(attempts_made(job));
    let outcome = observe(pod);
    if !matches!(outcome, PodOutcome::Succeeded { .. })
        && let Some(cause) = temporary_cause(pod)
    {
        return after_temporary_failure(job, session, Some(pod), cause, ctx).await;
    }
    let started = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.clone())
        .or_else(|| pod.metadata.creation_timestamp.clone());
    match outcome {
        PodOutcome::Pending => {
            // A job with no status yet gets none for a Pod that has not started: the Pod tells it, and the job's
            // next write (Running, or its end) records the Pod and the session (the binding is already durable
            // in the job's ownerReference, see `bound_session`). A job whose status still tells of an earlier wait
            // (SessionBusy, ConcurrencyLimit, Retrying) is told that its Pod is starting now.
            if status.phase.is_some()
                && (status.phase != Some(JobPhase::Pending)
                    || status.reason.as_deref() != Some("PodStarting"))
            {
                let mut next = lifecycle(
                    job,
                    &status,
                    JobPhase::Pending,
                    "PodStarting",
                    "the job's Pod is starting",
                );
                next.pod_name = Some(pod.name_any());
                next.session_uid = session.uid();
                write(job, ctx, next).await?;
            }
            Ok(Action::await_change())
        }
        PodOutcome::Running => {
            if status.phase != Some(JobPhase::Running) {
                let mut next = lifecycle(
                    job,
                    &status,
                    JobPhase::Running,
                    "PodRunning",
                    "the agent is running",
                );
                next.pod_name = Some(pod.name_any());
                next.session_uid = session.uid();
                next.start_time = started.clone();
                write(job, ctx, next).await?;
                ctx.event(
                    job,
                    false,
                    "Started",
                    format!(
                        "Pod {} runs the agent on session {}{}",
                        pod.name_any(),
                        session.name_any(),
                        match status.attempts {
                            Some(n) if n > 1 => format!(" (attempt {n})"),
                            _ => String::new(),
                        }
                    ),
                )
                .await;
            }
            match deadline_left(job, started.as_ref(), jiff::Timestamp::now()) {
                Some(left) if left.is_zero() => stop_for_deadline(job, pod, ctx).await,
                Some(left) => Ok(Action::requeue(left)),
                None => Ok(Action::await_change()),
            }
        }
        PodOutcome::Succeeded {
            message,
            finished_at,
        } => {
            let mut next = lifecycle(
                job,
                &status,
                JobPhase::Succeeded,
                "Completed",
                "the agent finished",
            );
            next.pod_name = Some(pod.name_any());
            next.session_uid = session.uid();
            next.start_time = started;
            next.completion_time = Some(finished_at.unwrap_or_else(now));
            next.exit_code = Some(0);
            // The result the runner reported to the gateway wins; the termination message is the fallback. The write
            // carries the resourceVersion of the job as read: if the gateway's report landed after that read, the
            // write fails with Conflict and is decided again from a store that has it, so a report is never
            // overwritten, and no extra read is on the path of every job's end.
            let reported = job
                .status
                .as_ref()
                .and_then(|s| s.result.as_ref())
                .is_some();
            if !reported && let Some(text) = message {
                let (result, cut) = crds::contract::bound_result(&text);
                next.result = Some(result);
                next.result_truncated = cut.then_some(true);
            }
            write(job, ctx, next).await?;
            ctx.event(
                job,
                false,
                "Succeeded",
                "the agent finished successfully".into(),
            )
            .await;
            Ok(Action::await_change())
        }
        PodOutcome::Failed {
            exit_code,
            reason,
            message,
            finished_at,
        } => {
            let job_reason = if reason == "DeadlineExceeded" {
                "DeadlineExceeded"
            } else {
                "PodFailed"
            };
            let text = failure_text(exit_code, &reason, message.as_deref());
            let mut next = lifecycle(job, &status, JobPhase::Failed, job_reason, &text);
            next.pod_name = Some(pod.name_any());
            next.session_uid = session.uid();
            next.start_time = started;
            next.completion_time = Some(finished_at.unwrap_or_else(now));
            next.exit_code = exit_code;
            // As for results: the runner's reported error wins, and the resourceVersion keeps a late report safe.
            if job.status.as_ref().and_then(|s| s.error.as_ref()).is_none() {
                next.error = Some(text.clone());
            }
            write(job, ctx, next).await?;
            ctx.event(job, true, "Failed", text).await;
            Ok(Action::await_change())
        }
    }
}

/// Ends a job that outran its timeoutSeconds: the status is written first, so that the Pod's disappearance is
/// never mistaken for an external deletion, then the Pod is stopped.
pub(super) async fn stop_for_deadline(
    job: &AgentJob,
    pod: &AgentPod,
    ctx: &Context,
) -> Result<Action> {
    let message = format!(
        "the job ran longer than its timeoutSeconds ({}s) and was stopped",
        job.spec.timeout_seconds.unwrap_or(0)
    );
    fail(job, ctx, "DeadlineExceeded", message, Some(pod.name_any())).await?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    ctx.metrics.write("pods", "delete");
    match pods.delete(&pod.name_any(), &DeleteParams::default()).await {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if not_found(&e) => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_refusal_is_cut_at_a_character_boundary() {
        assert_eq!(shortened("short"), "short");
        let long = "\u{1F600}".repeat(MAX_REFUSAL + 5);
        let kept = shortened(&long);
        assert_eq!(kept.chars().count(), MAX_REFUSAL + " [cut]".len());
        assert!(kept.ends_with(" [cut]"));
    }
}
