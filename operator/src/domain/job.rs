//! What a job's Pod says about the job: the agent container's outcome, read from Pod status.

use crds::contract::bound_result;
use k8s_openapi::api::core::v1::ContainerStateTerminated;

use super::agent_pod::AgentPod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Name of the agent container in every agent Pod.
pub const AGENT_CONTAINER: &str = "agent";

/// The Pod's state, as far as the job cares.
#[derive(Debug, Clone, PartialEq)]
pub enum PodOutcome {
    /// Not started yet (scheduling, pulling, initialising).
    Pending,
    Running,
    Succeeded {
        /// The termination message: the result fallback when the runner could not report to the gateway.
        message: Option<String>,
        finished_at: Option<Time>,
    },
    Failed {
        exit_code: Option<i32>,
        /// CamelCase cause: the container's reason (Error, OOMKilled, ...) or the Pod's (DeadlineExceeded, Evicted).
        reason: String,
        message: Option<String>,
        finished_at: Option<Time>,
    },
}

fn agent_termination(pod: &AgentPod) -> Option<&ContainerStateTerminated> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let agent = statuses
        .iter()
        .find(|c| c.name == AGENT_CONTAINER)
        .or_else(|| statuses.first())?;
    agent.state.as_ref()?.terminated.as_ref()
}

pub fn observe(pod: &AgentPod) -> PodOutcome {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let terminated = agent_termination(pod);
    let message = terminated
        .and_then(|t| t.message.clone())
        .filter(|m| !m.trim().is_empty());
    let finished_at = terminated.and_then(|t| t.finished_at.clone());
    match phase {
        "Running" => PodOutcome::Running,
        "Succeeded" => PodOutcome::Succeeded {
            message,
            finished_at,
        },
        "Failed" => {
            let pod_reason = status.and_then(|s| s.reason.clone());
            let reason = pod_reason
                .or_else(|| terminated.and_then(|t| t.reason.clone()))
                .unwrap_or_else(|| "PodFailed".into());
            let message = message.or_else(|| status.and_then(|s| s.message.clone()));
            PodOutcome::Failed {
                exit_code: terminated.map(|t| t.exit_code),
                reason,
                message,
                finished_at,
            }
        }
        _ => PodOutcome::Pending,
    }
}

/// The error text of a failed agent, for status.error and the failure callback.
pub fn failure_text(exit_code: Option<i32>, reason: &str, message: Option<&str>) -> String {
    let mut text = match exit_code {
        Some(code) => format!("agent exited with code {code} ({reason})"),
        None => format!("agent Pod failed ({reason})"),
    };
    if let Some(m) = message {
        text.push_str(": ");
        text.push_str(bound_result(m).0.as_str());
    }
    text
}

/// How long a running job has left before its `timeoutSeconds`, counted from `started`, at `now` (zero once past;
/// `None` without a timeout or a start time).
pub fn deadline_left(
    job: &crds::AgentJob,
    started: Option<&Time>,
    now: jiff::Timestamp,
) -> Option<std::time::Duration> {
    let timeout = job.spec.timeout_seconds?;
    let deadline = started?
        .0
        .checked_add(jiff::SignedDuration::from_secs(timeout))
        .ok()?;
    let left = now.duration_until(deadline);
    Some(if left.is_negative() {
        std::time::Duration::ZERO
    } else {
        left.unsigned_abs()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::yaml;

    #[test]
    fn the_deadline_counts_from_the_start_and_stops_at_zero() {
        let job = |timeout: &str| -> crds::AgentJob {
            yaml(&format!(
                "metadata: {{name: j, namespace: ns}}\nspec: {{type: Start, sessionName: s, prompt: p{timeout}}}"
            ))
        };
        let started = Time("2026-01-01T00:00:00Z".parse().unwrap());
        let at = |t: &str| -> jiff::Timestamp { t.parse().unwrap() };
        let timed = job(", timeoutSeconds: 60");
        assert_eq!(
            deadline_left(&timed, Some(&started), at("2026-01-01T00:00:45Z")),
            Some(std::time::Duration::from_secs(15))
        );
        assert_eq!(
            deadline_left(&timed, Some(&started), at("2026-01-01T00:05:00Z")),
            Some(std::time::Duration::ZERO)
        );
        assert_eq!(
            deadline_left(&timed, None, at("2026-01-01T00:05:00Z")),
            None
        );
        assert_eq!(
            deadline_left(&job(""), Some(&started), at("2026-01-01T00:05:00Z")),
            None
        );
    }

    #[test]
    fn a_running_pod_is_running() {
        let pod: AgentPod = yaml("status: {phase: Running}");
        assert_eq!(observe(&pod), PodOutcome::Running);
    }

    #[test]
    fn a_pod_without_status_is_pending() {
        assert_eq!(observe(&AgentPod::default()), PodOutcome::Pending);
    }

    #[test]
    fn success_carries_the_termination_message() {
        let pod: AgentPod = yaml(
            r#"
status:
  phase: Succeeded
  containerStatuses:
  - name: agent
    image: x
    imageID: ""
    ready: false
    restartCount: 0
    state: {terminated: {exitCode: 0, message: "the answer", finishedAt: "2026-01-01T00:00:00Z"}}
"#,
        );
        match observe(&pod) {
            PodOutcome::Succeeded {
                message,
                finished_at,
            } => {
                assert_eq!(message.as_deref(), Some("the answer"));
                assert!(finished_at.is_some());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failure_carries_exit_code_and_the_container_reason() {
        let pod: AgentPod = yaml(
            r#"
status:
  phase: Failed
  containerStatuses:
  - name: agent
    image: x
    imageID: ""
    ready: false
    restartCount: 0
    state: {terminated: {exitCode: 3, reason: Error, message: "boom"}}
"#,
        );
        let PodOutcome::Failed {
            exit_code,
            reason,
            message,
            ..
        } = observe(&pod)
        else {
            panic!("not failed")
        };
        assert_eq!(
            (exit_code, reason.as_str(), message.as_deref()),
            (Some(3), "Error", Some("boom"))
        );
        assert_eq!(
            failure_text(exit_code, &reason, message.as_deref()),
            "agent exited with code 3 (Error): boom"
        );
    }

    #[test]
    fn a_pod_level_reason_wins_over_the_container_reason() {
        let pod: AgentPod = yaml(
            r#"
status:
  phase: Failed
  reason: DeadlineExceeded
  message: too slow
  containerStatuses:
  - name: agent
    image: x
    imageID: ""
    ready: false
    restartCount: 0
    state: {terminated: {exitCode: 137, reason: Error}}
"#,
        );
        let PodOutcome::Failed {
            exit_code, reason, ..
        } = observe(&pod)
        else {
            panic!()
        };
        assert_eq!(
            (exit_code, reason.as_str()),
            (Some(137), "DeadlineExceeded")
        );
    }
}
