//! The operator's part of a job's status, and how it is written.

use super::*;
use crate::domain::lifecycle::{failed, needs_wait_write};

/// Marks a job Pending with `reason`, once (no write when it already says so).
pub(super) async fn wait(
    job: &AgentJob,
    ctx: &Context,
    reason: &'static str,
    message: String,
) -> Result<Action> {
    let status = job.status.clone().unwrap_or_default();
    if needs_wait_write(&status, reason) {
        write(
            job,
            ctx,
            lifecycle(job, &status, JobPhase::Pending, reason, &message),
        )
        .await?;
        ctx.event(job, false, reason, message).await;
    }
    Ok(Action::await_change())
}

/// Fails a job that cannot run or whose run failed, with `reason` in its status and an Event.
pub(super) async fn fail(
    job: &AgentJob,
    ctx: &Context,
    reason: &'static str,
    message: String,
    pod: Option<String>,
) -> Result<Action> {
    let status = job.status.clone().unwrap_or_default();
    write(
        job,
        ctx,
        failed(job, &status, reason, &message, pod, &now()),
    )
    .await?;
    info!(reason, %message, "job failed");
    ctx.event(job, true, reason, message).await;
    Ok(Action::await_change())
}

/// The decision of `domain::lifecycle`, taken now.
pub(super) fn lifecycle(
    job: &AgentJob,
    previous: &AgentJobStatus,
    phase: JobPhase,
    reason: &str,
    message: &str,
) -> AgentJobStatus {
    crate::domain::lifecycle::lifecycle(job, previous, phase, reason, message, &now())
}

pub(super) async fn write(job: &AgentJob, ctx: &Context, status: AgentJobStatus) -> Result<()> {
    let api: Api<AgentJob> =
        Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    ctx.metrics.write("agentjobs/status", "apply");
    apply_status(&api, job, MANAGER, &status).await?;
    ctx.wrote(job);
    // The job's span covers its whole life, so it is emitted once, from the recorded times, when the job ends.
    if status.phase.is_some_and(|p| p.is_finished()) && !is_finished(job) {
        let pod = ctx.pod(&job.namespace().unwrap_or_default(), &job.name_any());
        crate::trace::job_ended(job, &status, pod.as_deref());
    }
    Ok(())
}
