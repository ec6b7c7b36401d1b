//! The operator's part of a job's status, and how it is written.

use super::*;

/// Marks a job Pending with `reason`, once (no write when it already says so).
pub(super) async fn wait(
    job: &AgentJob,
    ctx: &Context,
    reason: &'static str,
    message: String,
) -> Result<Action> {
    let status = job.status.clone().unwrap_or_default();
    if status.phase != Some(JobPhase::Pending) || status.reason.as_deref() != Some(reason) {
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
    let mut next = lifecycle(job, &status, JobPhase::Failed, reason, &message);
    next.error = Some(message.clone());
    next.completion_time = Some(now());
    next.pod_name = pod.or(status.pod_name.clone());
    write(job, ctx, next).await?;
    info!(reason, %message, "job failed");
    ctx.event(job, true, reason, message).await;
    Ok(Action::await_change())
}

/// The operator's part of a job's status, carried over from `previous` and moved to `phase`. Fields the gateway
/// owns (result, agentSessionId, error reported by the runner) and the callback progress are left out, so that
/// server-side apply leaves them alone.
pub(super) fn lifecycle(
    job: &AgentJob,
    previous: &AgentJobStatus,
    phase: JobPhase,
    reason: &str,
    message: &str,
) -> AgentJobStatus {
    let now = now();
    let generation = job.metadata.generation;
    let mut conditions: Vec<Condition> = vec![condition(
        &previous.conditions,
        "Running",
        phase == JobPhase::Running,
        reason.into(),
        message.into(),
        generation,
        &now,
    )];
    if phase.is_finished() {
        let type_ = if phase == JobPhase::Succeeded {
            "Complete"
        } else {
            "Failed"
        };
        conditions.push(condition(
            &previous.conditions,
            type_,
            true,
            reason.into(),
            message.into(),
            generation,
            &now,
        ));
    }
    AgentJobStatus {
        phase: Some(phase),
        reason: Some(reason.into()),
        conditions,
        observed_generation: generation,
        pod_name: previous.pod_name.clone(),
        session_uid: previous.session_uid.clone(),
        start_time: previous.start_time.clone(),
        completion_time: previous.completion_time.clone(),
        exit_code: previous.exit_code,
        // Only the first states: from Enqueued on, the callback field manager owns this field.
        callback: Some(CallbackProgress {
            state: if job.spec.callback {
                CallbackState::Pending
            } else {
                CallbackState::NotRequested
            },
            reason: None,
            message: None,
            parent_uid: None,
            delivered_by: None,
        }),
        ..Default::default()
    }
}

pub(super) async fn write(job: &AgentJob, ctx: &Context, status: AgentJobStatus) -> Result<()> {
    let api: Api<AgentJob> =
        Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    ctx.metrics.write("agentjobs/status", "apply");
    apply_status(&api, job, MANAGER, &status).await?;
    ctx.wrote(job);
    Ok(())
}
