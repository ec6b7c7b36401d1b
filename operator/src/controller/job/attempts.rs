//! Running a job again after a run that failed for a cause the agent did not make (decided in
//! domain::attempts). The states, all in the job's status:
//!
//! 1. the run fails: the job goes back to `Pending` with reason `BackoffWaiting`, `nextAttemptTime` and a
//!    `Retrying` condition (True), and a `Retrying` Event names the cause and the wait; then the old Pod is deleted;
//! 2. once the old Pod is gone (in the store and on the API server) and the wait is over: `attempts` + 1 and reason
//!    `Retrying` are written, without a `podName`;
//! 3. the usual start creates the Pod (same name as the job: there is never a second Pod of a job beside the first).
//!
//! The job is never finished in between, so its callback is sent once, for the last run. Crash safety: each step is
//! decided from the status alone. Killed after 1, the old Pod is deleted again; after 2, the Pod is created (the
//! attempt is counted once, in 2); the Pod is only created after the API server said the old one is gone.

use kube::api::Preconditions;

use super::*;
use crate::domain::attempts::{Cause, Next, attempts_made, backoff_limit, next};
use crate::domain::lifecycle::set_retrying;

pub(super) const BACKOFF_WAITING: &str = "BackoffWaiting";
const RETRYING_REASON: &str = "Retrying";

/// How soon a job waiting for its old Pod to go looks again if no Pod event comes first.
const POD_GOING: Duration = Duration::from_secs(5);

/// The latest run failed for `cause`: wait and run again, or fail the job with the cause when its retries are spent.
/// `pod` is the failed run's Pod, if it still exists.
pub(super) async fn after_temporary_failure(
    job: &AgentJob,
    session: &AgentSession,
    pod: Option<&AgentPod>,
    cause: Cause,
    ctx: &Context,
) -> Result<Action> {
    let status = job.status.clone().unwrap_or_default();
    let made = attempts_made(job);
    let action = match next(job, ctx.retry_backoff_base) {
        Next::Exhausted { attempts } => {
            let message = format!(
                "{} (attempt {attempts}; backoffLimit {} spent)",
                cause.message,
                backoff_limit(job)
            );
            let mut end = lifecycle(job, &status, JobPhase::Failed, cause.reason, &message);
            end.attempts = Some(attempts);
            end.next_attempt_time = None;
            end.error = Some(message.clone());
            end.completion_time = Some(now());
            end.session_uid = session.uid();
            if let Some(pod) = pod {
                end.pod_name = Some(pod.name_any());
            }
            write(job, ctx, end).await?;
            info!(reason = cause.reason, %message, "job failed; no retries left");
            ctx.event(job, true, cause.reason, message).await;
            // A Pod that ended stays for its logs, as after any failure; one still starting or going is stopped.
            if let Some(pod) = pod.filter(|p| !has_ended(p)) {
                delete_pod(pod, ctx).await?;
            }
            return Ok(Action::await_change());
        }
        Next::Retry { attempt, after } => {
            let message = format!(
                "attempt {made} failed: {}; attempt {attempt} starts in {}s",
                cause.message,
                after.as_secs()
            );
            let mut wait = lifecycle(job, &status, JobPhase::Pending, BACKOFF_WAITING, &message);
            wait.attempts = Some(made);
            wait.next_attempt_time = Some(at_or_after(jiff::Timestamp::now(), after));
            wait.session_uid = session.uid();
            retrying(&mut wait, job, true, cause.reason, &message);
            write(job, ctx, wait).await?;
            info!(
                reason = cause.reason,
                attempt,
                ?after,
                "run failed for a cause outside the agent; retrying"
            );
            ctx.event(job, true, RETRYING_REASON, message).await;
            Action::requeue(after)
        }
    };
    if let Some(pod) = pod {
        delete_pod(pod, ctx).await?;
    }
    Ok(action)
}

/// A job waiting to run again: it records the next attempt once the old Pod is gone and the wait is over. `None`
/// when the job is not waiting.
pub(super) async fn waiting(job: &AgentJob, ctx: &Context) -> Result<Option<Action>> {
    let status = job.status.clone().unwrap_or_default();
    if status.reason.as_deref() != Some(BACKOFF_WAITING) {
        return Ok(None);
    }
    let ns = job.namespace().unwrap_or_default();
    // While the job waits, a Pod of its name is the failed run's: the next is only created after step 2.
    if let Some(pod) = ctx.pod(&ns, &job.name_any()) {
        if pod.metadata.deletion_timestamp.is_none() {
            delete_pod(&pod, ctx).await?;
        }
        return Ok(Some(Action::requeue(POD_GOING)));
    }
    let now = jiff::Timestamp::now();
    if let Some(at) = &status.next_attempt_time
        && at.0 > now
    {
        return Ok(Some(Action::requeue(
            now.duration_until(at.0).unsigned_abs(),
        )));
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    if pods.get_opt(&job.name_any()).await?.is_some() {
        return Ok(Some(Action::requeue(Duration::from_secs(1))));
    }
    let attempt = attempts_made(job) + 1;
    let message = format!("attempt {attempt} is starting");
    let mut next = lifecycle(job, &status, JobPhase::Pending, RETRYING_REASON, &message);
    next.attempts = Some(attempt);
    next.next_attempt_time = None;
    next.pod_name = None;
    retrying(&mut next, job, false, "AttemptStarted", &message);
    write(job, ctx, next).await?;
    Ok(Some(Action::await_change()))
}

/// Sets the Retrying condition of `status`, now.
fn retrying(status: &mut AgentJobStatus, job: &AgentJob, on: bool, reason: &str, message: &str) {
    set_retrying(status, job, on, reason, message, &now());
}

/// `from + wait`, rounded up to the whole second (a status time keeps seconds only: rounded down, the next attempt
/// could start before its wait is over).
fn at_or_after(from: jiff::Timestamp, wait: Duration) -> Time {
    let at = from
        .checked_add(jiff::SignedDuration::try_from(wait).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(jiff::Timestamp::MAX);
    let whole = at.as_second() + i64::from(at.subsec_nanosecond() > 0);
    Time(jiff::Timestamp::from_second(whole).unwrap_or(at))
}

fn has_ended(pod: &AgentPod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    ) && pod.metadata.deletion_timestamp.is_none()
}

/// Deletes the failed run's Pod, that one only (a UID precondition): gone already is success.
async fn delete_pod(pod: &AgentPod, ctx: &Context) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    ctx.metrics.write("pods", "delete");
    match pods.delete(&pod.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_attempt_time_is_never_early() {
        let from: jiff::Timestamp = "2026-01-01T00:00:00.250Z".parse().unwrap();
        assert_eq!(
            at_or_after(from, Duration::from_secs(10)).0.to_string(),
            "2026-01-01T00:00:11Z"
        );
        let whole: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            at_or_after(whole, Duration::from_secs(10)).0.to_string(),
            "2026-01-01T00:00:10Z"
        );
    }
}
