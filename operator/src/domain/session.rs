//! The session state machine: which job runs on a session now, what ended, and the status that follows. Pure:
//! given the session, its jobs and which job Pods still exist, it returns the desired status and the events to
//! record, so the reconciler only reads and writes.
//!
//! Jobs on one session run one at a time. The Start job that created the session runs first (the job controller
//! starts its Pod without waiting, since nothing else can run on a session before its Start); after it, Resume jobs
//! run in creation order. A job that ends (or is deleted, once its Pod is gone) frees the session for the next.

use crds::{
    AgentJob, AgentSession, AgentSessionStatus, CallbackOutcome, JobPhase, JobType, SessionPhase,
    labels,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use super::order::{is_deleting, is_finished, run_order};

/// What the session planner sees.
pub struct SessionView<'a> {
    pub session: &'a AgentSession,
    /// Jobs naming this session, in any order.
    pub jobs: Vec<&'a AgentJob>,
    /// Whether the Pod of the named job still exists.
    pub pod_alive: &'a (dyn Fn(&str) -> bool + Sync),
    pub now: Time,
}

/// A transition worth an Event on the session. A job's start and end are Events on the job (`Started`,
/// `Succeeded`, `Failed`, with the session named in them), so the session records only what no job can: a job
/// that went away before it ended, and a change of parent.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// The current job was deleted before it ended (it can carry no Event of its own any more).
    JobGone {
        job: String,
        outcome: CallbackOutcome,
        detail: Option<String>,
    },
    Reparented {
        from: Option<String>,
        to: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionPlan {
    pub status: AgentSessionStatus,
    pub events: Vec<SessionEvent>,
}

fn created_by(session: &AgentSession) -> Option<&str> {
    session
        .annotations()
        .get(labels::CREATED_BY_JOB)
        .map(String::as_str)
}

/// Whether `job` may run on `session` at all: the Start job that created it, or a Resume job not bound to an
/// earlier session of the same name.
pub fn belongs_to(job: &AgentJob, session: &AgentSession) -> bool {
    match job.spec.job_type {
        JobType::Start => {
            created_by(session).is_some() && created_by(session) == job.uid().as_deref()
        }
        JobType::Resume => {
            let bound = bound_session(job);
            bound.is_none() || bound == session.uid().as_deref()
        }
    }
}

/// The UID of the session `job` was bound to, if it was: its ownerReference to that session (written when the
/// job was bound, before its Pod is made), or `status.sessionUid` (written with the job's first phase after that).
/// Either survives a restart, so the binding needs no write of its own.
pub fn bound_session(job: &AgentJob) -> Option<&str> {
    job.status
        .as_ref()
        .and_then(|s| s.session_uid.as_deref())
        .or_else(|| {
            job.metadata
                .owner_references
                .iter()
                .flatten()
                .find(|r| r.kind == "AgentSession")
                .map(|r| r.uid.as_str())
        })
}

pub fn plan(view: &SessionView) -> SessionPlan {
    let session = view.session;
    let mut status = session.status.clone().unwrap_or_default();
    let mut events = Vec::new();
    if status.phase.is_none() && status.parent_session_name.is_none() {
        status.parent_session_name = session.spec.parent_session_name.clone();
    }
    let find = |name: &str| view.jobs.iter().copied().find(|j| j.name_any() == name);

    // At most two rounds: end the current job, then claim the next; a claimed Start job that had already ended
    // before the session ever recorded it is ended at once in the second round.
    for _ in 0..3 {
        if let Some(current) = status.current_job.clone() {
            let job = find(&current).filter(|j| belongs_to(j, session));
            // No Event of the job's own will tell this end: it is gone, or going without a callback to hold it.
            let gone = job.is_none_or(|j| !j.spec.callback);
            let ended = match job {
                Some(j) if is_finished(j) => Some(ended_outcome(j)),
                Some(j) if !is_deleting(j) => None,
                // Deleted, or being deleted: the job is stopped once its Pod is gone; until then the session is
                // still busy, so no second Pod runs beside the dying one.
                _ if (view.pod_alive)(&current) => {
                    status.reason = Some("Stopping".into());
                    None
                }
                _ => Some((
                    CallbackOutcome::Stopped,
                    Some(format!("job {current} was deleted before it ended")),
                )),
            };
            let Some((outcome, detail)) = ended else {
                break;
            };
            let gone = gone && !job.is_some_and(is_finished);
            // The job's usage joins the session's ended jobs in this same write, which the guard above (this job
            // is current) makes happen once.
            super::usage::settle(&mut status, job);
            status.current_job = None;
            status.last_job = Some(current.clone());
            status.phase = Some(match outcome {
                CallbackOutcome::Succeeded => SessionPhase::Idle,
                CallbackOutcome::Failed => SessionPhase::Failed,
                CallbackOutcome::Stopped => SessionPhase::Stopped,
            });
            status.reason = Some(
                match outcome {
                    CallbackOutcome::Succeeded => "JobSucceeded",
                    CallbackOutcome::Failed => "JobFailed",
                    CallbackOutcome::Stopped => "JobStopped",
                }
                .into(),
            );
            if gone {
                events.push(SessionEvent::JobGone {
                    job: current.clone(),
                    outcome,
                    detail: detail.clone(),
                });
            }
            if let Some(job_status) = job.and_then(|j| j.status.as_ref()) {
                status.result = job_status.result.clone();
                status.result_truncated = job_status.result_truncated;
                if let Some(id) = &job_status.agent_session_id {
                    status.agent_session_id = Some(id.clone());
                }
            } else {
                status.result = None;
                status.result_truncated = None;
            }
            continue;
        }
        let Some(next) = next_job(session, &view.jobs, &status) else {
            break;
        };
        status.current_job = Some(next.name_any());
        status.job_count += 1;
        status.phase = Some(SessionPhase::Running);
        status.reason = Some("JobRunning".into());
        if let Some(parent) = &next.spec.parent_session_name
            && status.parent_session_name.as_ref() != Some(parent)
        {
            events.push(SessionEvent::Reparented {
                from: status.parent_session_name.clone(),
                to: parent.clone(),
            });
            status.parent_session_name = Some(parent.clone());
        }
    }

    if status.phase.is_none() {
        status.phase = Some(SessionPhase::Pending);
        status.reason = Some("NoJobYet".into());
    }
    finish(&mut status, session, &view.now);
    SessionPlan { status, events }
}

/// Fills the derived fields of a session status: generation, queue length, conditions.
pub fn finish(status: &mut AgentSessionStatus, session: &AgentSession, now: &Time) {
    status.observed_generation = session.metadata.generation;
    status.callback_queue_length = status.callback_queue.len() as i64;
    status.conditions = conditions(status, session, now);
}

/// Whether the session is free to take its callbacks now: no job runs and it is Idle (or never ran). A Failed or
/// Stopped session keeps its callbacks until a job resumes it successfully.
pub fn can_deliver(status: &AgentSessionStatus) -> bool {
    status.current_job.is_none()
        && status.job_count > 0
        && matches!(
            status.phase,
            Some(SessionPhase::Idle | SessionPhase::Pending)
        )
        && !status.callback_queue.is_empty()
}

/// The job to run next, if the session is free: its own Start job first (once), then the oldest waiting Resume.
fn next_job<'a>(
    session: &AgentSession,
    jobs: &[&'a AgentJob],
    status: &AgentSessionStatus,
) -> Option<&'a AgentJob> {
    if status.job_count == 0
        && let Some(start) = jobs
            .iter()
            .copied()
            .find(|j| j.spec.job_type == JobType::Start && belongs_to(j, session))
    {
        return Some(start);
    }
    jobs.iter()
        .copied()
        .filter(|j| j.spec.job_type == JobType::Resume && belongs_to(j, session))
        .filter(|j| !is_finished(j) && !is_deleting(j))
        // A callback delivery runs only when taken with the entries it carries (`callbacks::deliver`): one left by a
        // crash between its create and the queue's write is found there by name, not run as a plain Resume while
        // its entries still wait in the queue.
        .filter(|j| !is_delivery(j))
        .min_by(|a, b| run_order(a, b))
}

fn is_delivery(job: &AgentJob) -> bool {
    job.labels()
        .get(labels::CALLBACK_DELIVERY)
        .map(String::as_str)
        == Some("true")
}

fn ended_outcome(job: &AgentJob) -> (CallbackOutcome, Option<String>) {
    let status = job.status.as_ref();
    match status.and_then(|s| s.phase) {
        Some(JobPhase::Succeeded) => (CallbackOutcome::Succeeded, None),
        _ => {
            let stopped = super::order::is_stop_reason(status.and_then(|s| s.reason.as_deref()));
            let outcome = if stopped {
                CallbackOutcome::Stopped
            } else {
                CallbackOutcome::Failed
            };
            (outcome, status.and_then(|s| s.error.clone()))
        }
    }
}

/// `Ready`: the session can take a job now. `CallbacksPending`: child callbacks wait in the queue.
fn conditions(status: &AgentSessionStatus, session: &AgentSession, now: &Time) -> Vec<Condition> {
    let phase = status.phase.unwrap_or(SessionPhase::Pending);
    let reason = status
        .reason
        .clone()
        .unwrap_or_else(|| phase.as_str().into());
    let ready = matches!(phase, SessionPhase::Idle | SessionPhase::Pending);
    let message = match (&status.current_job, phase) {
        (Some(job), _) => format!("job {job} is running"),
        (None, SessionPhase::Pending) => "no job has run yet".into(),
        (None, _) => match &status.last_job {
            Some(job) => {
                let how = match phase {
                    SessionPhase::Failed => "failed",
                    SessionPhase::Stopped => "was stopped",
                    _ => "succeeded",
                };
                format!("last job {job} {how}")
            }
            None => phase.as_str().into(),
        },
    };
    let queue = status.callback_queue.len();
    let mut wanted = vec![
        ("Ready", ready, reason, message),
        (
            "CallbacksPending",
            queue > 0,
            if queue > 0 {
                "CallbacksQueued".into()
            } else {
                "QueueEmpty".into()
            },
            format!("{queue} callback(s) waiting"),
        ),
    ];
    // Only a session with a budget says whether its tree passed it.
    if session.spec.budget.is_some() {
        wanted.push(match &status.budget_exceeded {
            Some(bound) => (
                "BudgetExceeded",
                true,
                "BudgetExceeded".into(),
                format!("the tree passed its budget: {bound}; its running jobs are stopped"),
            ),
            None => (
                "BudgetExceeded",
                false,
                "WithinBudget".into(),
                "the tree is within its budget".into(),
            ),
        });
    }
    wanted
        .into_iter()
        .map(|(type_, ok, reason, message)| {
            condition(
                &status.conditions,
                type_,
                ok,
                reason,
                message,
                session.metadata.generation,
                now,
            )
        })
        .collect()
}

/// A condition that keeps its lastTransitionTime unless its status changes.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    ok: bool,
    reason: String,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason,
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::yaml;

    fn now() -> Time {
        Time("2026-01-01T00:00:10Z".parse().unwrap())
    }

    fn session(status: &str) -> AgentSession {
        yaml(&format!(
            r#"
apiVersion: agentorchestrator.dev/v1alpha1
kind: AgentSession
metadata:
  name: s
  namespace: ns
  uid: u-s
  generation: 1
  annotations: {{agentorchestrator.dev/created-by-job: u-start}}
spec: {{parentSessionName: boss}}
status: {status}
"#
        ))
    }

    fn session_with_uid(uid: &str) -> AgentSession {
        let mut s = session("{}");
        s.metadata.uid = Some(uid.into());
        s
    }

    fn job(name: &str, kind: &str, created: &str, status: &str) -> AgentJob {
        yaml(&format!(
            r#"
apiVersion: agentorchestrator.dev/v1alpha1
kind: AgentJob
metadata: {{name: {name}, namespace: ns, uid: u-{name}, creationTimestamp: "2026-01-01T00:00:0{created}Z"}}
spec: {{type: {kind}, sessionName: s, prompt: p}}
status: {status}
"#
        ))
    }

    fn run(session: &AgentSession, jobs: &[AgentJob], alive: &[&str]) -> SessionPlan {
        let alive: Vec<String> = alive.iter().map(|s| s.to_string()).collect();
        let pod_alive = move |name: &str| alive.iter().any(|a| a == name);
        plan(&SessionView {
            session,
            jobs: jobs.iter().collect(),
            pod_alive: &pod_alive,
            now: now(),
        })
    }

    #[test]
    fn a_new_session_runs_its_start_job_first() {
        let s = session("{}");
        let mut start = job("start", "Start", "1", "{}");
        start.metadata.uid = Some("u-start".into());
        let resume = job("resume", "Resume", "0", "{}");
        let plan = run(&s, &[resume, start], &[]);
        assert_eq!(plan.status.current_job.as_deref(), Some("start"));
        assert_eq!(plan.status.phase, Some(SessionPhase::Running));
        assert_eq!(plan.status.job_count, 1);
        assert_eq!(plan.status.parent_session_name.as_deref(), Some("boss"));
    }

    #[test]
    fn a_start_job_that_ended_before_it_was_recorded_is_recorded_and_ended() {
        let s = session("{}");
        let mut start = job(
            "start",
            "Start",
            "1",
            "{phase: Succeeded, result: done, agentSessionId: a1}",
        );
        start.metadata.uid = Some("u-start".into());
        let plan = run(&s, &[start], &[]);
        assert_eq!(plan.status.current_job, None);
        assert_eq!(plan.status.last_job.as_deref(), Some("start"));
        assert_eq!(plan.status.phase, Some(SessionPhase::Idle));
        assert_eq!(plan.status.result.as_deref(), Some("done"));
        assert_eq!(plan.status.agent_session_id.as_deref(), Some("a1"));
        assert_eq!(plan.status.job_count, 1);
    }

    #[test]
    fn resumes_wait_while_a_job_runs_and_then_run_in_creation_order() {
        let s = session("{phase: Running, currentJob: r1, jobCount: 2, lastJob: start}");
        let running = job("r1", "Resume", "1", "{phase: Running}");
        let later = job("r3", "Resume", "3", "{}");
        let earlier = job("r2", "Resume", "2", "{phase: Pending, reason: SessionBusy}");
        let plan = run(
            &s,
            &[running.clone(), later.clone(), earlier.clone()],
            &["r1"],
        );
        assert_eq!(plan.status.current_job.as_deref(), Some("r1"));
        assert!(plan.events.is_empty());

        let mut done = running;
        done.status = Some(yaml("{phase: Succeeded, result: ok}"));
        let plan = run(&s, &[done, later, earlier], &["r1"]);
        assert_eq!(plan.status.current_job.as_deref(), Some("r2"));
        assert_eq!(plan.status.last_job.as_deref(), Some("r1"));
        assert_eq!(plan.status.job_count, 3);
        assert!(
            plan.events.is_empty(),
            "the jobs' own Events tell their end and start: {:?}",
            plan.events
        );
    }

    #[test]
    fn a_delivery_job_is_not_taken_as_a_plain_resume() {
        let s = session("{phase: Idle, jobCount: 1, lastJob: start}");
        let mut delivery = job("s-cb-1", "Resume", "2", "{}");
        delivery.metadata.labels =
            Some([(labels::CALLBACK_DELIVERY.to_string(), "true".to_string())].into());
        let plain = job("r1", "Resume", "3", "{}");
        let plan = run(&s, &[delivery.clone()], &[]);
        assert_eq!(plan.status.current_job, None, "left to the delivery step");
        let plan = run(&s, &[delivery, plain], &[]);
        assert_eq!(plan.status.current_job.as_deref(), Some("r1"));
    }

    #[test]
    fn same_second_jobs_run_in_name_order() {
        let s = session("{phase: Idle, jobCount: 1, lastJob: start}");
        let b = job("b", "Resume", "2", "{}");
        let a = job("a", "Resume", "2", "{}");
        assert_eq!(
            run(&s, &[b, a], &[]).status.current_job.as_deref(),
            Some("a")
        );
    }

    #[test]
    fn a_failed_job_fails_the_session() {
        let s = session("{phase: Running, currentJob: r1, jobCount: 2}");
        let failed = job(
            "r1",
            "Resume",
            "1",
            "{phase: Failed, reason: PodFailed, error: boom}",
        );
        let plan = run(&s, &[failed], &["r1"]);
        assert_eq!(plan.status.phase, Some(SessionPhase::Failed));
        let ready = plan
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "JobFailed")
        );
        assert!(plan.events.is_empty(), "the job's Failed Event tells it");
    }

    #[test]
    fn a_deleted_job_stops_the_session_once_its_pod_is_gone() {
        let s = session("{phase: Running, currentJob: r1, jobCount: 2}");
        let waiting = job("r2", "Resume", "2", "{}");
        let plan = run(&s, std::slice::from_ref(&waiting), &["r1"]);
        assert_eq!(
            plan.status.current_job.as_deref(),
            Some("r1"),
            "busy while the Pod dies"
        );
        let plan = run(&s, &[waiting], &[]);
        assert_eq!(plan.status.last_job.as_deref(), Some("r1"));
        assert_eq!(plan.status.current_job.as_deref(), Some("r2"));
        assert!(
            matches!(
                &plan.events[0],
                SessionEvent::JobGone {
                    outcome: CallbackOutcome::Stopped,
                    job,
                    ..
                } if job == "r1"
            ),
            "a job gone before its end has no Event of its own: the session tells it"
        );
        let plan = run(&s, &[], &[]);
        assert_eq!(plan.status.phase, Some(SessionPhase::Stopped));
    }

    #[test]
    fn a_resume_with_another_parent_reparents_the_session() {
        let s = session("{phase: Idle, jobCount: 1, lastJob: start, parentSessionName: boss}");
        let mut r = job("r1", "Resume", "1", "{}");
        r.spec.parent_session_name = Some("other".into());
        let plan = run(&s, &[r], &[]);
        assert_eq!(plan.status.parent_session_name.as_deref(), Some("other"));
        assert!(plan.events.contains(&SessionEvent::Reparented {
            from: Some("boss".into()),
            to: "other".into()
        }));
    }

    #[test]
    fn a_foreign_start_job_and_jobs_of_an_earlier_session_never_run() {
        let s = session("{phase: Idle, jobCount: 1, lastJob: start}");
        let foreign = job("other-start", "Start", "1", "{}");
        let stale = job("stale", "Resume", "1", "{sessionUid: u-old}");
        // Bound before it ran: only its ownerReference names the earlier session.
        let mut owned = job("owned", "Resume", "1", "{}");
        owned.metadata.owner_references = Some(vec![
            crate::domain::tree::session_reference(&session_with_uid("u-old")).unwrap(),
        ]);
        assert_eq!(bound_session(&owned), Some("u-old"));
        let plan = run(&s, &[foreign, stale, owned], &[]);
        assert_eq!(plan.status.current_job, None);
        assert_eq!(plan.status.phase, Some(SessionPhase::Idle));
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let s = session(
            r#"{phase: Idle, jobCount: 1, lastJob: start, conditions: [{type: Ready, status: "True", reason: JobSucceeded, message: x, lastTransitionTime: "2025-01-01T00:00:00Z"}]}"#,
        );
        let plan = run(&s, &[], &[]);
        let ready = plan
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            ready.last_transition_time.0.to_string(),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(ready.observed_generation, Some(1));
    }
}
