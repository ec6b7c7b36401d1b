//! When an idle session may be deleted (the operator's `--default-session-retention-seconds`, off unless set): it
//! has been `Idle` that long, and deleting it (with its jobs) loses no callback and stops nothing that runs.
//!
//! Idle since: the `Ready` condition's lastTransitionTime. `Ready` turns True when the session's job ends well
//! (phase `Idle`) and False when the next job starts, so the moment is in the status and survives restarts. Failed
//! and Stopped sessions are kept: someone should look at them (and their queued callbacks wait for a resume).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crds::{AgentJob, AgentSession, SessionPhase};
use jiff::Timestamp;
use kube::ResourceExt;

use super::callback::rules::settled;
use super::order::is_finished;
use super::retention::held_by_callback;

/// Why a session whose time has come is still kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// Callbacks wait in its queue.
    Queue,
    /// One of its own jobs has not ended, or its callback to the parent is not Delivered or Dropped yet.
    Job(String),
    /// A descendant still runs, or a child's callback has not reached the queue.
    Descendant(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionRetention {
    /// No retention applies, or the session is not idle: a change of the session brings it back.
    Keep,
    /// Due in this long.
    Later(Duration),
    /// Due, but still needed.
    Held(Held),
    /// Delete it (its jobs first) now.
    Due,
}

/// What the decision looks at.
pub struct SessionRetentionView<'a> {
    pub session: &'a AgentSession,
    /// The jobs that run on it.
    pub jobs: Vec<&'a AgentJob>,
    /// What keeps a descendant busy, if one is (see [`busy_descendant`]).
    pub busy_descendant: Option<String>,
    pub retention_seconds: Option<i64>,
    pub now: Timestamp,
}

/// Since when the session has been Idle, from its status.
pub fn idle_since(session: &AgentSession) -> Option<Timestamp> {
    let status = session.status.as_ref()?;
    if status.phase != Some(SessionPhase::Idle) || status.current_job.is_some() {
        return None;
    }
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.0)
}

pub fn decide(view: &SessionRetentionView) -> SessionRetention {
    let Some(retention) = view.retention_seconds.filter(|s| *s >= 0) else {
        return SessionRetention::Keep;
    };
    if view.session.metadata.deletion_timestamp.is_some() {
        return SessionRetention::Keep;
    }
    let Some(since) = idle_since(view.session) else {
        return SessionRetention::Keep;
    };
    let due = since + Duration::from_secs(retention as u64);
    if due > view.now {
        return SessionRetention::Later(view.now.duration_until(due).unsigned_abs());
    }
    let status = view.session.status.as_ref();
    if status.is_some_and(|s| !s.callback_queue.is_empty()) {
        return SessionRetention::Held(Held::Queue);
    }
    if let Some(job) = view
        .jobs
        .iter()
        .find(|j| !is_finished(j) || held_by_callback(j))
    {
        return SessionRetention::Held(Held::Job(job.name_any()));
    }
    if let Some(why) = &view.busy_descendant {
        return SessionRetention::Held(Held::Descendant(why.clone()));
    }
    SessionRetention::Due
}

/// The first thing below session `root` that still runs or still owes a callback: a child job (a job naming a
/// session of the tree as its parent) not finished, or whose callback has not reached its queue; or an unfinished
/// job on a child's session, walking down the tree. `started_by(s)` gives the jobs naming `s` as their parent,
/// `jobs_of(s)` the jobs on `s`. The walk follows the children's jobs, so it costs what the tree below holds.
pub fn busy_descendant(
    root: &str,
    started_by: &dyn Fn(&str) -> Vec<Arc<AgentJob>>,
    jobs_of: &dyn Fn(&str) -> Vec<Arc<AgentJob>>,
) -> Option<String> {
    let mut seen: HashSet<String> = HashSet::from([root.to_string()]);
    let mut below = vec![root.to_string()];
    while let Some(session) = below.pop() {
        for child in started_by(&session) {
            if !is_finished(&child) {
                return Some(format!("child job {} runs", child.name_any()));
            }
            if child.spec.callback && !settled(&child) {
                return Some(format!(
                    "the callback of child job {} is not queued yet",
                    child.name_any()
                ));
            }
            let child_session = child.spec.session_name.clone();
            if seen.insert(child_session.clone()) {
                if let Some(job) = jobs_of(&child_session).iter().find(|j| !is_finished(j)) {
                    return Some(format!(
                        "job {} of descendant session {child_session} runs",
                        job.name_any()
                    ));
                }
                below.push(child_session);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::yaml;

    fn session(status: &str) -> AgentSession {
        yaml(&format!(
            "metadata: {{name: s, namespace: ns, uid: u-s}}\nspec: {{}}\nstatus: {status}"
        ))
    }

    const IDLE: &str = r#"{phase: Idle, jobCount: 1, lastJob: j1,
        conditions: [{type: Ready, status: "True", reason: JobSucceeded, message: m, lastTransitionTime: "2026-01-01T00:00:00Z"}]}"#;

    fn job(name: &str, session: &str, extra: &str, status: &str) -> Arc<AgentJob> {
        Arc::new(yaml(&format!(
            "metadata: {{name: {name}, namespace: ns, uid: u-{name}}}\nspec: {{type: Start, sessionName: {session}, prompt: p{extra}}}\nstatus: {status}"
        )))
    }

    fn at(t: &str) -> Timestamp {
        t.parse().unwrap()
    }

    fn view<'a>(
        s: &'a AgentSession,
        jobs: Vec<&'a AgentJob>,
        now: &str,
    ) -> SessionRetentionView<'a> {
        SessionRetentionView {
            session: s,
            jobs,
            busy_descendant: None,
            retention_seconds: Some(60),
            now: at(now),
        }
    }

    #[test]
    fn an_idle_session_is_due_its_retention_after_it_went_idle() {
        let s = session(IDLE);
        let done = job("j1", "s", "", "{phase: Succeeded}");
        assert_eq!(
            decide(&view(&s, vec![&done], "2026-01-01T00:00:45Z")),
            SessionRetention::Later(Duration::from_secs(15))
        );
        assert_eq!(
            decide(&view(&s, vec![&done], "2026-01-01T00:01:00Z")),
            SessionRetention::Due
        );
        let mut off = view(&s, vec![&done], "2026-01-01T00:09:00Z");
        off.retention_seconds = None;
        assert_eq!(decide(&off), SessionRetention::Keep);
    }

    #[test]
    fn running_failed_and_stopped_sessions_are_kept() {
        for status in [
            r#"{phase: Running, currentJob: j2, conditions: [{type: Ready, status: "False", reason: JobRunning, message: m, lastTransitionTime: "2026-01-01T00:00:00Z"}]}"#,
            r#"{phase: Failed, conditions: [{type: Ready, status: "False", reason: JobFailed, message: m, lastTransitionTime: "2026-01-01T00:00:00Z"}]}"#,
            r#"{phase: Stopped}"#,
        ] {
            let s = session(status);
            assert_eq!(
                decide(&view(&s, vec![], "2026-01-02T00:00:00Z")),
                SessionRetention::Keep,
                "{status}"
            );
        }
    }

    #[test]
    fn queued_callbacks_waiting_jobs_and_unsettled_own_callbacks_keep_it() {
        let queued = session(&IDLE.replace(
            "lastJob: j1,",
            "lastJob: j1, callbackQueue: [{childSession: c, childJob: cj, childJobUid: u-cj, outcome: Succeeded, enqueueTime: \"2026-01-01T00:00:00Z\"}],",
        ));
        assert_eq!(
            decide(&view(&queued, vec![], "2026-01-02T00:00:00Z")),
            SessionRetention::Held(Held::Queue)
        );
        let s = session(IDLE);
        let waiting = job("j2", "s", "", "{phase: Pending, reason: SessionBusy}");
        assert_eq!(
            decide(&view(&s, vec![&waiting], "2026-01-02T00:00:00Z")),
            SessionRetention::Held(Held::Job("j2".into()))
        );
        let calling = job(
            "j1",
            "s",
            ", parentSessionName: p, callback: true",
            "{phase: Succeeded, callback: {state: Enqueued}}",
        );
        assert_eq!(
            decide(&view(&s, vec![&calling], "2026-01-02T00:00:00Z")),
            SessionRetention::Held(Held::Job("j1".into()))
        );
        let mut busy = view(&s, vec![], "2026-01-02T00:00:00Z");
        busy.busy_descendant = Some("child job c runs".into());
        assert_eq!(
            decide(&busy),
            SessionRetention::Held(Held::Descendant("child job c runs".into()))
        );
    }

    #[test]
    fn the_walk_finds_running_and_unsettled_descendants_at_any_depth() {
        let child_of_s = job(
            "c1",
            "child",
            ", parentSessionName: s, callback: true",
            "{phase: Succeeded, callback: {state: Delivered}}",
        );
        let grandchild = job(
            "g1",
            "grand",
            ", parentSessionName: child",
            "{phase: Running}",
        );
        let started_by = |tree: Vec<Arc<AgentJob>>| {
            move |s: &str| -> Vec<Arc<AgentJob>> {
                tree.iter()
                    .filter(|j| j.spec.parent_session_name.as_deref() == Some(s))
                    .cloned()
                    .collect()
            }
        };
        let none = |_: &str| -> Vec<Arc<AgentJob>> { Vec::new() };
        let tree = started_by(vec![child_of_s.clone(), grandchild.clone()]);
        assert_eq!(
            busy_descendant("s", &tree, &none),
            Some("child job g1 runs".into())
        );
        let finished = job(
            "g1",
            "grand",
            ", parentSessionName: child",
            "{phase: Succeeded}",
        );
        let quiet = started_by(vec![child_of_s.clone(), finished]);
        assert_eq!(busy_descendant("s", &quiet, &none), None);
        // A Resume running on the child's session (no parent on it) is found through the child's session.
        let resume = job("r1", "child", "", "{phase: Running}");
        let on_child = move |s: &str| -> Vec<Arc<AgentJob>> {
            if s == "child" {
                vec![resume.clone()]
            } else {
                Vec::new()
            }
        };
        assert_eq!(
            busy_descendant("s", &quiet, &on_child),
            Some("job r1 of descendant session child runs".into())
        );
        let unsettled = job(
            "c2",
            "child2",
            ", parentSessionName: s, callback: true",
            "{phase: Succeeded, callback: {state: Pending}}",
        );
        assert_eq!(
            busy_descendant("s", &started_by(vec![unsettled]), &none),
            Some("the callback of child job c2 is not queued yet".into())
        );
    }
}
