//! The sessions and jobs of one namespace (or all) at one moment, and what follows from them alone: a session's
//! jobs in run order, its children, and whether a tree is idle. Pure, so the rules are unit-tested.

use std::collections::BTreeSet;

use crds::{AgentJob, AgentSession, CallbackState, JobPhase, SessionPhase};
use kube::ResourceExt;

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub sessions: Vec<AgentSession>,
    pub jobs: Vec<AgentJob>,
}

/// The order the operator runs a session's jobs in: creation time, then name.
pub fn run_order(a: &AgentJob, b: &AgentJob) -> std::cmp::Ordering {
    let key = |j: &AgentJob| {
        (
            j.metadata.creation_timestamp.clone().map(|t| t.0),
            j.name_any(),
        )
    };
    key(a).cmp(&key(b))
}

/// The current parent of a session: status first (a later job may re-parent it), else the recorded one.
pub fn parent_of(s: &AgentSession) -> Option<&str> {
    s.status
        .as_ref()
        .and_then(|st| st.parent_session_name.as_deref())
        .or(s.spec.parent_session_name.as_deref())
}

impl Snapshot {
    pub fn session(&self, namespace: &str, name: &str) -> Option<&AgentSession> {
        self.sessions
            .iter()
            .find(|s| s.name_any() == name && s.namespace().as_deref() == Some(namespace))
    }

    /// The jobs of one session, in run order.
    pub fn jobs_of(&self, namespace: &str, session: &str) -> Vec<&AgentJob> {
        let mut jobs: Vec<&AgentJob> = self
            .jobs
            .iter()
            .filter(|j| {
                j.spec.session_name == session && j.namespace().as_deref() == Some(namespace)
            })
            .collect();
        jobs.sort_by(|a, b| run_order(a, b));
        jobs
    }

    /// The children of a session, oldest first.
    pub fn children_of(&self, namespace: &str, session: &str) -> Vec<&AgentSession> {
        let mut children: Vec<&AgentSession> = self
            .sessions
            .iter()
            .filter(|s| {
                s.namespace().as_deref() == Some(namespace) && parent_of(s) == Some(session)
            })
            .collect();
        children.sort_by_key(|s| {
            (
                s.metadata.creation_timestamp.clone().map(|t| t.0),
                s.name_any(),
            )
        });
        children
    }

    /// Sessions without a parent in their namespace (a parent deleted makes its children roots), by namespace and
    /// age.
    pub fn roots(&self) -> Vec<&AgentSession> {
        let mut roots: Vec<&AgentSession> = self
            .sessions
            .iter()
            .filter(|s| {
                let ns = s.namespace().unwrap_or_default();
                parent_of(s).is_none_or(|p| self.session(&ns, p).is_none())
            })
            .collect();
        roots.sort_by_key(|s| {
            (
                s.namespace(),
                s.metadata.creation_timestamp.clone().map(|t| t.0),
                s.name_any(),
            )
        });
        roots
    }

    /// The names of `root` and every session below it.
    pub fn tree_of(&self, namespace: &str, root: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![root.to_string()];
        while let Some(name) = todo.pop() {
            if !seen.insert(name.clone()) {
                continue; // a cycle cannot happen (admission and the operator refuse it), but never loop on one
            }
            todo.extend(
                self.children_of(namespace, &name)
                    .iter()
                    .map(|c| c.name_any()),
            );
        }
        seen
    }

    /// True when nothing in the tree under `root` runs or will run by itself: every session has ended its last job,
    /// no Idle session has callbacks queued (the operator delivers those; a Failed or Stopped session keeps its queue
    /// until someone resumes it), no job is waiting or running, and no callback is still on its way. A child's job
    /// that names a session of the tree as parent counts before its session exists.
    pub fn tree_is_idle(&self, namespace: &str, root: &str) -> bool {
        if self.session(namespace, root).is_none() {
            return false;
        }
        let tree = self.tree_of(namespace, root);
        let sessions_quiet = tree.iter().all(|name| {
            self.session(namespace, name).is_some_and(|s| {
                let status = s.status.clone().unwrap_or_default();
                match status.phase {
                    Some(SessionPhase::Idle) => status.callback_queue.is_empty(),
                    Some(SessionPhase::Failed | SessionPhase::Stopped) => true,
                    _ => false,
                }
            })
        });
        let jobs_quiet = self
            .jobs
            .iter()
            .filter(|j| j.namespace().as_deref() == Some(namespace))
            .filter(|j| {
                tree.contains(&j.spec.session_name)
                    || j.spec
                        .parent_session_name
                        .as_ref()
                        .is_some_and(|p| tree.contains(p))
            })
            .all(job_is_settled);
        sessions_quiet && jobs_quiet
    }
}

/// A job that has ended and whose callback, if it asked for one, has reached its parent or been dropped.
pub fn job_is_settled(j: &AgentJob) -> bool {
    let status = j.status.clone().unwrap_or_default();
    let ended = status.phase.is_some_and(JobPhase::is_finished);
    let callback_settled = !j.spec.callback
        || matches!(
            status.callback.map(|c| c.state),
            Some(CallbackState::Delivered | CallbackState::Dropped | CallbackState::NotRequested)
        );
    ended && callback_settled
}

#[cfg(test)]
pub mod fixtures {
    use crds::{AgentJob, AgentJobSpec, AgentSession, AgentSessionSpec, JobType};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    pub fn at(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(1_800_000_000 + seconds).unwrap())
    }

    pub fn session(
        name: &str,
        parent: Option<&str>,
        phase: crds::SessionPhase,
        created: i64,
    ) -> AgentSession {
        let mut s = AgentSession::new(
            name,
            AgentSessionSpec {
                parent_session_name: parent.map(String::from),
                ..Default::default()
            },
        );
        s.metadata.namespace = Some("ns".into());
        s.metadata.creation_timestamp = Some(at(created));
        s.status = Some(crds::AgentSessionStatus {
            phase: Some(phase),
            parent_session_name: parent.map(String::from),
            ..Default::default()
        });
        s
    }

    pub fn job(
        name: &str,
        session: &str,
        parent: Option<&str>,
        phase: crds::JobPhase,
        created: i64,
    ) -> AgentJob {
        let mut j = AgentJob::new(
            name,
            AgentJobSpec {
                job_type: JobType::Start,
                session_name: session.into(),
                prompt: "go".into(),
                blueprint: None,
                parent_session_name: parent.map(String::from),
                callback: parent.is_some(),
                project_dir: None,
                timeout_seconds: None,
                ttl_seconds_after_finished: None,
                backoff_limit: None,
                parent_close_policy: None,
                budget: None,
            },
        );
        j.metadata.namespace = Some("ns".into());
        j.metadata.creation_timestamp = Some(at(created));
        j.status = Some(crds::AgentJobStatus {
            phase: Some(phase),
            ..Default::default()
        });
        j
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crds::{CallbackProgress, QueuedCallback};

    fn delivered(mut j: AgentJob) -> AgentJob {
        j.status.as_mut().unwrap().callback = Some(CallbackProgress {
            state: CallbackState::Delivered,
            reason: None,
            message: None,
            parent_uid: None,
            delivered_by: None,
        });
        j
    }

    fn finished_tree() -> Snapshot {
        Snapshot {
            sessions: vec![
                session("root", None, SessionPhase::Idle, 0),
                session("b", Some("root"), SessionPhase::Idle, 2),
                session("a", Some("root"), SessionPhase::Failed, 1),
                session("other", None, SessionPhase::Running, 3),
            ],
            jobs: vec![
                job("root-start", "root", None, JobPhase::Succeeded, 0),
                delivered(job("a-1", "a", Some("root"), JobPhase::Failed, 1)),
                delivered(job("b-1", "b", Some("root"), JobPhase::Succeeded, 2)),
                job("other-1", "other", None, JobPhase::Running, 3),
            ],
        }
    }

    #[test]
    fn roots_children_and_trees() {
        let snap = finished_tree();
        let names = |v: Vec<&AgentSession>| v.iter().map(|s| s.name_any()).collect::<Vec<_>>();
        assert_eq!(names(snap.roots()), ["root", "other"]);
        assert_eq!(names(snap.children_of("ns", "root")), ["a", "b"]);
        assert_eq!(
            snap.tree_of("ns", "root").into_iter().collect::<Vec<_>>(),
            ["a", "b", "root"]
        );
    }

    #[test]
    fn a_tree_is_idle_only_when_nothing_runs_waits_or_is_on_its_way() {
        let snap = finished_tree();
        assert!(snap.tree_is_idle("ns", "root"));
        assert!(!snap.tree_is_idle("ns", "other"), "a running job");
        assert!(
            !snap.tree_is_idle("ns", "missing"),
            "a session not created yet"
        );

        // A child's callback not yet in its parent's queue.
        let mut pending = finished_tree();
        pending.jobs[2]
            .status
            .as_mut()
            .unwrap()
            .callback
            .as_mut()
            .unwrap()
            .state = CallbackState::Pending;
        assert!(!pending.tree_is_idle("ns", "root"));

        // A callback waiting in the parent's queue.
        let mut queued = finished_tree();
        queued.sessions[0]
            .status
            .as_mut()
            .unwrap()
            .callback_queue
            .push(QueuedCallback {
                child_session: "b".into(),
                child_job: "b-1".into(),
                child_job_uid: "u".into(),
                outcome: crds::CallbackOutcome::Succeeded,
                result: None,
                error: None,
                enqueue_time: at(5),
            });
        assert!(!queued.tree_is_idle("ns", "root"));
        // A Failed parent keeps its queue until it is resumed: nothing more happens by itself.
        queued.sessions[0].status.as_mut().unwrap().phase = Some(SessionPhase::Failed);
        assert!(queued.tree_is_idle("ns", "root"));

        // A child job created for the tree whose session does not exist yet.
        let mut starting = finished_tree();
        starting
            .jobs
            .push(job("c-1", "c", Some("root"), JobPhase::Pending, 6));
        assert!(!starting.tree_is_idle("ns", "root"));
    }

    #[test]
    fn jobs_run_in_creation_then_name_order() {
        let mut snap = finished_tree();
        snap.jobs
            .push(job("root-b", "root", None, JobPhase::Succeeded, 9));
        snap.jobs
            .push(job("root-a", "root", None, JobPhase::Succeeded, 9));
        let order: Vec<String> = snap
            .jobs_of("ns", "root")
            .iter()
            .map(|j| j.name_any())
            .collect();
        assert_eq!(order, ["root-start", "root-a", "root-b"]);
    }
}
