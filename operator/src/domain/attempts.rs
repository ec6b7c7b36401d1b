//! Retries of a job's run (`backoffLimit`): which failures the agent did not make, and how long to wait before the
//! next attempt. Pure: decided from the job and its Pod as read.
//!
//! A run is retried when it failed for a cause outside the agent: its Pod was evicted or disrupted (the Eviction
//! API, node pressure, the taint manager, the Pod garbage collector after its node went), deleted by anyone while
//! the job ran (the operator itself only deletes a Pod after writing the job's end), its container never started
//! (image pull or create errors), or the runner exited with [`TEMPORARY_FAILURE_EXIT`] (the model API was
//! overloaded, rate-limited or failing). Any other failure (exit 1, a bad prompt, the deadline) is the run's own
//! and final.

use std::time::Duration;

use super::agent_pod::AgentPod;
use crds::AgentJob;

use super::job::AGENT_CONTAINER;

/// The runner's exit code when the model API failed for a while (EX_TEMPFAIL); see the runner's classifier.
pub const TEMPORARY_FAILURE_EXIT: i32 = 75;

/// `backoffLimit` of jobs that set none.
pub const DEFAULT_BACKOFF_LIMIT: i32 = 3;

/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Why a run failed, when the agent did not make it fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// The job's reason when this cause ends it (retries exhausted): Evicted, PodDeleted, ContainerNotStarted or
    /// ModelApiUnavailable.
    pub reason: &'static str,
    /// What happened, for Events, conditions and the final error.
    pub message: String,
}

fn cause(reason: &'static str, message: impl Into<String>) -> Cause {
    Cause {
        reason,
        message: message.into(),
    }
}

/// Reasons of a Pod's `DisruptionTarget` condition and of a Pod failed by its node: all outside the agent.
const DISRUPTIONS: [&str; 4] = ["Evicted", "Preempting", "NodeLost", "NodeShutdown"];

/// Waiting reasons of a container that could not be started: the image could not be pulled, or the runtime
/// could not create or start the container.
const NOT_STARTED_WAITING: [&str; 5] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "CreateContainerError",
    "CreateContainerConfigError",
    "RunContainerError",
];

/// Termination reasons of a container that never ran its command.
const NOT_STARTED_TERMINATED: [&str; 2] = ["StartError", "ContainerCannotRun"];

/// The cause outside the agent that ended (or is ending) this Pod's run, if there is one. A Pod going away while
/// its job has not ended was deleted by someone else than the operator, which writes the job's end first.
pub fn temporary_cause(pod: &AgentPod) -> Option<Cause> {
    let status = pod.status.as_ref();
    let disruption = status.and_then(|s| s.conditions.as_ref()).and_then(|cs| {
        cs.iter()
            .find(|c| c.type_ == "DisruptionTarget" && c.status == "True")
    });
    if let Some(c) = disruption {
        let why = c.reason.clone().unwrap_or_else(|| "Disrupted".into());
        let detail = c
            .message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        return Some(cause(
            "Evicted",
            format!("the Pod was disrupted ({why}){detail}"),
        ));
    }
    if let Some(reason) = status.and_then(|s| s.reason.as_deref())
        && DISRUPTIONS.contains(&reason)
    {
        let detail = status
            .and_then(|s| s.message.as_deref())
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        return Some(cause("Evicted", format!("the Pod was {reason}{detail}")));
    }
    let agent = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == AGENT_CONTAINER));
    let state = agent.and_then(|c| c.state.as_ref());
    if let Some(waiting) = state.and_then(|s| s.waiting.as_ref())
        && let Some(reason) = waiting.reason.as_deref()
        && NOT_STARTED_WAITING.contains(&reason)
    {
        return Some(not_started(reason, waiting.message.as_deref()));
    }
    if let Some(terminated) = state.and_then(|s| s.terminated.as_ref()) {
        if let Some(reason) = terminated.reason.as_deref()
            && NOT_STARTED_TERMINATED.contains(&reason)
        {
            return Some(not_started(reason, terminated.message.as_deref()));
        }
        if terminated.exit_code == TEMPORARY_FAILURE_EXIT {
            let why = terminated
                .message
                .as_deref()
                .filter(|m| !m.trim().is_empty())
                .unwrap_or("the agent runner reported a temporary model API failure");
            return Some(cause("ModelApiUnavailable", why));
        }
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return Some(deleted());
    }
    None
}

fn not_started(reason: &str, message: Option<&str>) -> Cause {
    let detail = message.map(|m| format!(": {m}")).unwrap_or_default();
    cause(
        "ContainerNotStarted",
        format!("the agent container never started ({reason}){detail}"),
    )
}

/// The cause of a run whose Pod is gone although the job had not ended.
pub fn deleted() -> Cause {
    cause(
        "PodDeleted",
        "the job's Pod was deleted (not by the operator) before the job ended",
    )
}

/// What follows a run that failed for `cause`'s kind of reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Run again after this wait; `attempt` is the number the next run will have.
    Retry { attempt: i32, after: Duration },
    /// `backoffLimit` retries are spent: the job fails with the cause.
    Exhausted { attempts: i32 },
}

/// Runs made so far: a job with a Pod has made at least one.
pub fn attempts_made(job: &AgentJob) -> i32 {
    job.status
        .as_ref()
        .and_then(|s| s.attempts)
        .unwrap_or(0)
        .max(1)
}

pub fn backoff_limit(job: &AgentJob) -> i32 {
    job.spec
        .backoff_limit
        .unwrap_or(DEFAULT_BACKOFF_LIMIT)
        .max(0)
}

/// After a temporary failure of the job's latest run: retry (with the wait), or give up.
pub fn next(job: &AgentJob, base: Duration) -> Next {
    let made = attempts_made(job);
    if made > backoff_limit(job) {
        return Next::Exhausted { attempts: made };
    }
    Next::Retry {
        attempt: made + 1,
        after: backoff(made, base),
    }
}

/// The wait after the `failed`-th run failed: `base`, doubled for each earlier failure, at most [`MAX_BACKOFF`].
pub fn backoff(failed: i32, base: Duration) -> Duration {
    let doublings = failed.saturating_sub(1).clamp(0, 30) as u32;
    base.saturating_mul(1u32 << doublings).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::yaml;

    fn pod(status: &str) -> AgentPod {
        yaml(&format!(
            "metadata: {{name: j, namespace: ns}}\nstatus: {status}"
        ))
    }

    fn agent(state: &str) -> AgentPod {
        pod(&format!(
            "{{phase: Pending, containerStatuses: [{{name: agent, image: x, imageID: '', ready: false, restartCount: 0, state: {state}}}]}}"
        ))
    }

    fn reason(p: &AgentPod) -> Option<&'static str> {
        temporary_cause(p).map(|c| c.reason)
    }

    #[test]
    fn an_evicted_or_disrupted_pod_is_not_the_agents_doing() {
        let by_api = pod(
            "{phase: Failed, conditions: [{type: DisruptionTarget, status: 'True', reason: EvictionByEvictionAPI, message: 'Eviction API: evicting'}]}",
        );
        let c = temporary_cause(&by_api).unwrap();
        assert_eq!(c.reason, "Evicted");
        assert!(c.message.contains("EvictionByEvictionAPI"), "{}", c.message);
        assert_eq!(
            reason(&pod(
                "{phase: Failed, reason: Evicted, message: 'low on memory'}"
            )),
            Some("Evicted")
        );
        assert_eq!(
            reason(&pod(
                "{phase: Running, conditions: [{type: DisruptionTarget, status: 'False'}]}"
            )),
            None
        );
    }

    #[test]
    fn a_pod_deleted_while_its_job_runs_is_retried() {
        let mut p = pod("{phase: Running}");
        assert_eq!(reason(&p), None);
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-01-01T00:00:00Z".parse().unwrap(),
        ));
        assert_eq!(reason(&p), Some("PodDeleted"));
    }

    #[test]
    fn a_container_that_never_started_is_retried() {
        for waiting in [
            "ErrImagePull",
            "ImagePullBackOff",
            "CreateContainerError",
            "CreateContainerConfigError",
        ] {
            let p = agent(&format!(
                "{{waiting: {{reason: {waiting}, message: nope}}}}"
            ));
            assert_eq!(reason(&p), Some("ContainerNotStarted"), "{waiting}");
        }
        assert_eq!(
            reason(&agent("{waiting: {reason: ContainerCreating}}")),
            None
        );
        assert_eq!(
            reason(&agent("{terminated: {exitCode: 128, reason: StartError}}")),
            Some("ContainerNotStarted")
        );
    }

    #[test]
    fn exit_75_is_a_temporary_model_failure_and_says_why() {
        let p = agent(
            "{terminated: {exitCode: 75, reason: Error, message: 'model API overloaded (529)'}}",
        );
        let c = temporary_cause(&p).unwrap();
        assert_eq!(
            (c.reason, c.message.as_str()),
            ("ModelApiUnavailable", "model API overloaded (529)")
        );
    }

    #[test]
    fn the_agents_own_failures_are_final() {
        for state in [
            "{terminated: {exitCode: 1, reason: Error, message: 'bad prompt'}}",
            "{terminated: {exitCode: 137, reason: OOMKilled}}",
            "{running: {}}",
        ] {
            assert_eq!(reason(&agent(state)), None, "{state}");
        }
        assert_eq!(
            reason(&pod("{phase: Failed, reason: DeadlineExceeded}")),
            None
        );
    }

    #[test]
    fn the_backoff_doubles_from_the_base_up_to_the_cap() {
        let base = Duration::from_secs(10);
        let waits: Vec<u64> = (1..=7).map(|n| backoff(n, base).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(1000, base), MAX_BACKOFF);
        assert_eq!(backoff(2, Duration::from_secs(1)), Duration::from_secs(2));
    }

    fn job(extra: &str) -> AgentJob {
        yaml(&format!(
            "metadata: {{name: j, namespace: ns}}\nspec: {{type: Start, sessionName: s, prompt: p{extra}}}"
        ))
    }

    #[test]
    fn retries_stop_after_backoff_limit_retries() {
        let base = Duration::from_secs(10);
        let mut j = job("");
        // No status yet: the run that failed was the first.
        assert_eq!(
            next(&j, base),
            Next::Retry {
                attempt: 2,
                after: base
            }
        );
        j.status = Some(crds::AgentJobStatus {
            attempts: Some(3),
            ..Default::default()
        });
        assert_eq!(
            next(&j, base),
            Next::Retry {
                attempt: 4,
                after: Duration::from_secs(40)
            }
        );
        j.status.as_mut().unwrap().attempts = Some(4);
        assert_eq!(next(&j, base), Next::Exhausted { attempts: 4 });
        let never = job(", backoffLimit: 0");
        assert_eq!(next(&never, base), Next::Exhausted { attempts: 1 });
    }
}
