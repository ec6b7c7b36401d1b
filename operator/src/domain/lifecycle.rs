//! The operator's part of a job's status: the phase a job moves to, with its reason, conditions and the fields
//! carried over. Pure, so every transition is tested from fixtures; the job controller only writes the result.

use crds::{AgentJob, AgentJobStatus, CallbackProgress, CallbackState, JobPhase};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::session::condition;

/// The condition that tells a job waits to run again (True), or ran again (False): see domain::attempts.
pub const RETRYING: &str = "Retrying";

/// The operator's part of a job's status, carried over from `previous` and moved to `phase`. Fields the gateway
/// owns (result, agentSessionId, error reported by the runner) and the callback progress are left out, so that
/// server-side apply leaves them alone.
pub fn lifecycle(
    job: &AgentJob,
    previous: &AgentJobStatus,
    phase: JobPhase,
    reason: &str,
    message: &str,
    now: &Time,
) -> AgentJobStatus {
    let generation = job.metadata.generation;
    let mut conditions: Vec<Condition> = vec![condition(
        &previous.conditions,
        "Running",
        phase == JobPhase::Running,
        reason.into(),
        message.into(),
        generation,
        now,
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
            now,
        ));
    }
    // Kept as the retry steps last wrote it (controller/job/attempts.rs).
    if let Some(retrying) = previous.conditions.iter().find(|c| c.type_ == RETRYING) {
        conditions.push(retrying.clone());
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
        attempts: previous.attempts,
        next_attempt_time: previous.next_attempt_time.clone(),
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

/// A job that cannot run or whose run failed: Failed with `reason`, the message as its error, completed `now`, and
/// the Pod it ran in (`pod`, or the one already recorded).
pub fn failed(
    job: &AgentJob,
    previous: &AgentJobStatus,
    reason: &str,
    message: &str,
    pod: Option<String>,
    now: &Time,
) -> AgentJobStatus {
    let mut next = lifecycle(job, previous, JobPhase::Failed, reason, message, now);
    next.error = Some(message.into());
    next.completion_time = Some(now.clone());
    next.pod_name = pod.or(previous.pod_name.clone());
    next
}

/// Sets the Retrying condition of `status`: True while the job waits to run again (`reason`: the cause), False once
/// the next run starts.
pub fn set_retrying(
    status: &mut AgentJobStatus,
    job: &AgentJob,
    on: bool,
    reason: &str,
    message: &str,
    now: &Time,
) {
    let previous = std::mem::take(&mut status.conditions);
    let mut conditions: Vec<Condition> = previous
        .iter()
        .filter(|c| c.type_ != RETRYING)
        .cloned()
        .collect();
    conditions.push(condition(
        &previous,
        RETRYING,
        on,
        reason.into(),
        message.into(),
        job.metadata.generation,
        now,
    ));
    status.conditions = conditions;
}

/// Whether marking the job Pending with `reason` would change it (a job waiting for the same reason is not written
/// again).
pub fn needs_wait_write(previous: &AgentJobStatus, reason: &str) -> bool {
    previous.phase != Some(JobPhase::Pending) || previous.reason.as_deref() != Some(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::yaml;

    fn at(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn job(callback: bool, status: &str) -> AgentJob {
        yaml(&format!(
            r#"
apiVersion: agentorchestrator.dev/v1alpha1
kind: AgentJob
metadata: {{name: j, namespace: ns, uid: u-j, generation: 3}}
spec: {{type: Start, sessionName: s, prompt: p, callback: {callback}}}
status: {status}
"#
        ))
    }

    fn running() -> AgentJob {
        job(
            true,
            r#"{phase: Running, reason: PodRunning, podName: j, sessionUid: u-s, startTime: "2026-01-01T00:00:01Z",
               result: "r", agentSessionId: a1,
               callback: {state: Enqueued, parentUid: u-p},
               conditions: [{type: Running, status: "True", reason: PodRunning, message: m, lastTransitionTime: "2026-01-01T00:00:01Z"}]}"#,
        )
    }

    #[test]
    fn a_finished_job_gets_its_end_condition_and_keeps_what_it_carried() {
        let j = running();
        let prev = j.status.clone().unwrap();
        let next = lifecycle(
            &j,
            &prev,
            JobPhase::Succeeded,
            "PodSucceeded",
            "done",
            &at("2026-01-01T00:00:09Z"),
        );
        assert_eq!(next.phase, Some(JobPhase::Succeeded));
        assert_eq!(next.observed_generation, Some(3));
        let types: Vec<(&str, &str)> = next
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(types, [("Running", "False"), ("Complete", "True")]);
        assert_eq!(
            next.conditions[1].last_transition_time,
            at("2026-01-01T00:00:09Z")
        );
        assert_eq!(next.pod_name.as_deref(), Some("j"));
        assert_eq!(next.session_uid.as_deref(), Some("u-s"));
        assert_eq!(next.start_time, prev.start_time);
        // The gateway's fields are not ours to apply.
        assert_eq!(next.result, None);
        assert_eq!(next.agent_session_id, None);
    }

    #[test]
    fn an_unchanged_condition_keeps_its_transition_time() {
        let j = running();
        let prev = j.status.clone().unwrap();
        let next = lifecycle(
            &j,
            &prev,
            JobPhase::Running,
            "PodRunning",
            "m",
            &at("2026-01-01T00:00:09Z"),
        );
        assert_eq!(next.conditions.len(), 1);
        assert_eq!(
            next.conditions[0].last_transition_time,
            at("2026-01-01T00:00:01Z")
        );
    }

    #[test]
    fn the_callback_field_only_ever_says_pending_or_not_requested() {
        let j = running();
        let next = lifecycle(
            &j,
            j.status.as_ref().unwrap(),
            JobPhase::Running,
            "PodRunning",
            "m",
            &at("2026-01-01T00:00:09Z"),
        );
        assert_eq!(next.callback.unwrap().state, CallbackState::Pending);
        let plain = job(false, "{}");
        let next = lifecycle(
            &plain,
            &AgentJobStatus::default(),
            JobPhase::Pending,
            "SessionBusy",
            "m",
            &at("2026-01-01T00:00:09Z"),
        );
        assert_eq!(next.callback.unwrap().state, CallbackState::NotRequested);
        assert_eq!(next.conditions[0].status, "False");
    }

    #[test]
    fn a_failure_records_its_message_time_and_pod() {
        let j = running();
        let prev = j.status.clone().unwrap();
        let now = at("2026-01-01T00:00:09Z");
        let next = failed(&j, &prev, "PodRejected", "too big", None, &now);
        assert_eq!(next.phase, Some(JobPhase::Failed));
        assert_eq!(next.error.as_deref(), Some("too big"));
        assert_eq!(next.completion_time, Some(now.clone()));
        assert_eq!(
            next.pod_name.as_deref(),
            Some("j"),
            "the recorded Pod is kept"
        );
        assert_eq!(next.conditions[1].type_, "Failed");
        let next = failed(&j, &prev, "PodFailed", "x", Some("j-2".into()), &now);
        assert_eq!(next.pod_name.as_deref(), Some("j-2"));
    }

    #[test]
    fn waiting_for_the_same_reason_is_written_once() {
        let waiting = AgentJobStatus {
            phase: Some(JobPhase::Pending),
            reason: Some("SessionBusy".into()),
            ..Default::default()
        };
        assert!(!needs_wait_write(&waiting, "SessionBusy"));
        assert!(needs_wait_write(&waiting, "ParentPending"));
        assert!(needs_wait_write(&AgentJobStatus::default(), "SessionBusy"));
    }

    #[test]
    fn the_retry_state_is_carried_through_every_transition() {
        let j = running();
        let mut waiting = lifecycle(
            &j,
            j.status.as_ref().unwrap(),
            JobPhase::Pending,
            "BackoffWaiting",
            "evicted",
            &at("2026-01-01T00:00:05Z"),
        );
        waiting.attempts = Some(1);
        waiting.next_attempt_time = Some(at("2026-01-01T00:00:15Z"));
        set_retrying(
            &mut waiting,
            &j,
            true,
            "Evicted",
            "evicted",
            &at("2026-01-01T00:00:05Z"),
        );
        let next = lifecycle(
            &j,
            &waiting,
            JobPhase::Running,
            "PodRunning",
            "running",
            &at("2026-01-01T00:00:20Z"),
        );
        assert_eq!(next.attempts, Some(1));
        assert_eq!(next.next_attempt_time, Some(at("2026-01-01T00:00:15Z")));
        let retrying = next
            .conditions
            .iter()
            .find(|c| c.type_ == RETRYING)
            .unwrap();
        assert_eq!(
            (retrying.status.as_str(), retrying.reason.as_str()),
            ("True", "Evicted")
        );
        let mut started = next.clone();
        set_retrying(
            &mut started,
            &j,
            false,
            "AttemptStarted",
            "attempt 2",
            &at("2026-01-01T00:00:21Z"),
        );
        let retrying: Vec<_> = started
            .conditions
            .iter()
            .filter(|c| c.type_ == RETRYING)
            .collect();
        assert_eq!(retrying.len(), 1);
        assert_eq!(retrying[0].status, "False");
        assert_eq!(retrying[0].last_transition_time, at("2026-01-01T00:00:21Z"));
    }
}
