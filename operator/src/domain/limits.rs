//! The namespace's running-jobs limit (`--max-running-jobs`): which job may start its Pod now. Pure: decided from
//! the store's unfinished jobs of the namespace and the count of live agent Pods.
//!
//! The queue is every job of the namespace that has not finished and could run: a Start job, or a Resume job its
//! session has taken as current job (callback deliveries included, so a parent waits in the same queue as every
//! other job and is never starved by its own children). A Resume still waiting for its session's turn holds no
//! place. A job starts only when fewer than N jobs of the queue come before it in creation order (creation time,
//! then name) and fewer than N agent Pods are alive: two jobs deciding at once from the same store cannot both be
//! the N-th, and the Pod count (read from the API server, under one lock per operator) covers a store that has not
//! seen a Pod created a moment ago.

use crds::{AgentJob, JobType};
use kube::ResourceExt;

use super::order::{is_deleting, is_finished, run_order};

/// The reason of a job waiting for a place under the limit.
pub const CONCURRENCY_LIMIT: &str = "ConcurrencyLimit";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Start,
    Wait(String),
}

/// Whether `job` holds a place in the queue.
pub fn in_queue(job: &AgentJob, is_current: &dyn Fn(&AgentJob) -> bool) -> bool {
    !is_finished(job)
        && !is_deleting(job)
        && (job.spec.job_type == JobType::Start || is_current(job))
}

/// Jobs of the queue that come before `job`.
pub fn ahead(
    job: &AgentJob,
    unfinished: &[&AgentJob],
    is_current: &dyn Fn(&AgentJob) -> bool,
) -> usize {
    unfinished
        .iter()
        .filter(|j| j.uid() != job.uid() || j.name_any() != job.name_any())
        .filter(|j| run_order(j, job).is_lt())
        .filter(|j| in_queue(j, is_current))
        .count()
}

/// The decision for `job` under a limit of `limit` running jobs; `live_pods` is the count of agent Pods of the
/// namespace that have not ended (None: not counted yet, the store's order alone decides).
pub fn admit(
    job: &AgentJob,
    unfinished: &[&AgentJob],
    is_current: &dyn Fn(&AgentJob) -> bool,
    limit: u32,
    live_pods: Option<usize>,
) -> Admission {
    let before = ahead(job, unfinished, is_current);
    if before >= limit as usize {
        return Admission::Wait(format!(
            "the namespace runs at most {limit} jobs at once (--max-running-jobs); {before} job(s) created before \
             this one come first"
        ));
    }
    match live_pods {
        Some(n) if n >= limit as usize => Admission::Wait(format!(
            "the namespace runs at most {limit} jobs at once (--max-running-jobs); {n} agent Pod(s) are still alive"
        )),
        _ => Admission::Start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::yaml;

    fn job(name: &str, kind: &str, at: &str, phase: &str) -> AgentJob {
        yaml(&format!(
            "metadata: {{name: {name}, uid: u-{name}, creationTimestamp: '2026-01-01T00:00:{at}Z'}}\n\
             spec: {{type: {kind}, sessionName: s-{name}, prompt: p}}\nstatus: {{phase: {phase}}}"
        ))
    }

    #[test]
    fn jobs_start_in_creation_order_up_to_the_limit() {
        let jobs: Vec<AgentJob> = (0..5)
            .map(|i| job(&format!("j{i}"), "Start", "01", "Pending"))
            .collect();
        let refs: Vec<&AgentJob> = jobs.iter().collect();
        let none = |_: &AgentJob| false;
        let starts: Vec<bool> = jobs
            .iter()
            .map(|j| admit(j, &refs, &none, 3, Some(0)) == Admission::Start)
            .collect();
        assert_eq!(starts, [true, true, true, false, false]);
    }

    #[test]
    fn a_finished_job_frees_its_place_and_a_waiting_resume_holds_none() {
        let done = job("a", "Start", "01", "Succeeded");
        let busy = job("b", "Resume", "02", "Pending");
        let current = job("c", "Resume", "03", "Pending");
        let me = job("d", "Start", "04", "Pending");
        let all = [&done, &busy, &current, &me];
        let is_current = |j: &AgentJob| j.name_any() == "c";
        assert_eq!(ahead(&me, &all, &is_current), 1);
        assert_eq!(admit(&me, &all, &is_current, 2, Some(1)), Admission::Start);
        assert!(
            matches!(admit(&me, &all, &is_current, 1, Some(0)), Admission::Wait(m) if m.contains("1 job(s) created before"))
        );
    }

    #[test]
    fn live_pods_are_the_truth_when_the_store_is_behind() {
        let me = job("a", "Start", "01", "Pending");
        let none = |_: &AgentJob| false;
        assert_eq!(admit(&me, &[&me], &none, 2, Some(1)), Admission::Start);
        assert!(
            matches!(admit(&me, &[&me], &none, 2, Some(2)), Admission::Wait(m) if m.contains("2 agent Pod(s)"))
        );
    }
}
