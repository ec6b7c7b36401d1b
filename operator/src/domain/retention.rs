//! When a finished job may be deleted (`ttlSecondsAfterFinished`, or the operator's default): its time has come,
//! and nothing still reads it. The session keeps what it took from the job (result, jobCount, phase) in its own
//! status, so a job is only needed until the session has recorded its end, until its callback has left its hands
//! for good, and (for a job that called its parent back) while it is the job its session's next callback delivery
//! inherits the grandparent from.

use std::time::Duration;

use crds::{AgentJob, AgentSession, CallbackState};
use jiff::Timestamp;
use kube::ResourceExt;

use super::callback::rules::state;
use super::order::{is_deleting, is_finished};

/// Why a job whose time has come is still kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Its callback is not Delivered or Dropped yet: a change of the job itself brings it back.
    Callback,
    /// Its session has not recorded its end yet.
    SessionRecording,
    /// It is its session's last job and called back: a delivery of the session's pending callbacks inherits the
    /// grandparent from it.
    Inheritance,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retention {
    /// No TTL applies, or the job has not finished (or is already going): nothing to do.
    Keep,
    /// Due in this long.
    Later(Duration),
    /// Due, but still needed.
    Held(Held),
    /// Delete it now.
    Due,
}

/// What the retention decision looks at.
pub struct RetentionView<'a> {
    pub job: &'a AgentJob,
    /// The session the job names, if it exists.
    pub session: Option<&'a AgentSession>,
    /// Whether the session has children whose callback is not settled, or callbacks queued.
    pub session_awaits_callbacks: bool,
    /// The operator's default for jobs without `ttlSecondsAfterFinished`.
    pub default_ttl_seconds: Option<i64>,
    pub now: Timestamp,
}

/// The TTL that applies to `job`: its own, else the operator's default.
pub fn ttl_of(job: &AgentJob, default_ttl_seconds: Option<i64>) -> Option<i64> {
    job.spec
        .ttl_seconds_after_finished
        .or(default_ttl_seconds)
        .filter(|t| *t >= 0)
}

/// Whether the job's callback still keeps it: it asked for one and it is neither Delivered nor Dropped.
pub fn held_by_callback(job: &AgentJob) -> bool {
    job.spec.callback
        && !matches!(
            state(job),
            Some(CallbackState::Delivered | CallbackState::Dropped)
        )
}

pub fn decide(view: &RetentionView) -> Retention {
    let job = view.job;
    let Some(ttl) = ttl_of(job, view.default_ttl_seconds) else {
        return Retention::Keep;
    };
    if !is_finished(job) || is_deleting(job) {
        return Retention::Keep;
    }
    // A finished job always has its finish time; without one there is no moment to count from.
    let Some(finished) = job.status.as_ref().and_then(|s| s.completion_time.as_ref()) else {
        return Retention::Keep;
    };
    let due = finished.0 + Duration::from_secs(ttl as u64);
    if due > view.now {
        let left = view.now.duration_until(due).unsigned_abs();
        return Retention::Later(left);
    }
    if held_by_callback(job) {
        return Retention::Held(Held::Callback);
    }
    let name = job.name_any();
    let status = view
        .session
        .filter(|s| {
            // Only the session this job ran on; a newer one of the same name does not need it.
            let bound = super::session::bound_session(job);
            bound.is_none() || bound == s.uid().as_deref()
        })
        .and_then(|s| s.status.as_ref());
    if let Some(status) = status {
        if status.current_job.as_deref() == Some(name.as_str()) {
            return Retention::Held(Held::SessionRecording);
        }
        if job.spec.callback
            && status.last_job.as_deref() == Some(name.as_str())
            && view.session_awaits_callbacks
        {
            return Retention::Held(Held::Inheritance);
        }
    }
    Retention::Due
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::yaml;

    fn job(spec_extra: &str, status: &str) -> AgentJob {
        yaml(&format!(
            "apiVersion: agentorchestrator.dev/v1alpha1
kind: AgentJob
metadata: {{name: j1, namespace: ns, uid: u-j1}}
spec:
  type: Start
  sessionName: s
  prompt: hi
{spec_extra}
status:
{status}"
        ))
    }

    fn session(current: Option<&str>, last: Option<&str>) -> AgentSession {
        let mut s: AgentSession = yaml(
            "apiVersion: agentorchestrator.dev/v1alpha1
kind: AgentSession
metadata: {name: s, namespace: ns, uid: u-s}
spec: {}
status: {jobCount: 1}",
        );
        let st = s.status.as_mut().unwrap();
        st.current_job = current.map(String::from);
        st.last_job = last.map(String::from);
        s
    }

    const ENDED: &str =
        "  phase: Succeeded\n  sessionUid: u-s\n  completionTime: '2026-01-01T00:00:00Z'";

    fn at(seconds_after_end: i64) -> Timestamp {
        "2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap()
            + jiff::SignedDuration::from_secs(seconds_after_end)
    }

    fn decide_at(job: &AgentJob, session: Option<&AgentSession>, now: Timestamp) -> Retention {
        decide(&RetentionView {
            job,
            session,
            session_awaits_callbacks: false,
            default_ttl_seconds: None,
            now,
        })
    }

    #[test]
    fn without_a_ttl_a_job_is_kept_forever() {
        let j = job("", ENDED);
        assert_eq!(decide_at(&j, None, at(1_000_000)), Retention::Keep);
    }

    #[test]
    fn a_job_is_due_its_ttl_after_its_finish_time() {
        let j = job("  ttlSecondsAfterFinished: 5", ENDED);
        let s = session(None, Some("j1"));
        assert_eq!(
            decide_at(&j, Some(&s), at(2)),
            Retention::Later(Duration::from_secs(3))
        );
        assert_eq!(decide_at(&j, Some(&s), at(5)), Retention::Due);
        assert_eq!(decide_at(&j, None, at(60)), Retention::Due);
    }

    #[test]
    fn the_operator_default_applies_only_to_jobs_without_their_own() {
        let plain = job("", ENDED);
        let own = job("  ttlSecondsAfterFinished: 100", ENDED);
        let view = |j| RetentionView {
            job: j,
            session: None,
            session_awaits_callbacks: false,
            default_ttl_seconds: Some(10),
            now: at(10),
        };
        assert_eq!(decide(&view(&plain)), Retention::Due);
        assert_eq!(
            decide(&view(&own)),
            Retention::Later(Duration::from_secs(90))
        );
    }

    #[test]
    fn a_job_not_yet_finished_is_never_due() {
        let running = job("  ttlSecondsAfterFinished: 0", "  phase: Running");
        assert_eq!(decide_at(&running, None, at(1_000)), Retention::Keep);
        let no_time = job("  ttlSecondsAfterFinished: 0", "  phase: Failed");
        assert_eq!(decide_at(&no_time, None, at(1_000)), Retention::Keep);
    }

    #[test]
    fn an_unsettled_callback_keeps_the_job_until_delivered_or_dropped() {
        let with = |state: &str| {
            job(
                "  ttlSecondsAfterFinished: 0\n  callback: true\n  parentSessionName: p",
                &format!("{ENDED}\n  callback: {{state: {state}}}"),
            )
        };
        let s = session(None, None);
        for open in ["Pending", "Enqueued"] {
            assert_eq!(
                decide_at(&with(open), Some(&s), at(1)),
                Retention::Held(Held::Callback),
                "{open}"
            );
        }
        let never_recorded = job(
            "  ttlSecondsAfterFinished: 0\n  callback: true\n  parentSessionName: p",
            ENDED,
        );
        assert_eq!(
            decide_at(&never_recorded, Some(&s), at(1)),
            Retention::Held(Held::Callback)
        );
        for closed in ["Delivered", "Dropped"] {
            assert_eq!(
                decide_at(&with(closed), Some(&s), at(1)),
                Retention::Due,
                "{closed}"
            );
        }
    }

    #[test]
    fn a_job_whose_end_the_session_has_not_recorded_is_kept() {
        let j = job("  ttlSecondsAfterFinished: 0", ENDED);
        let recording = session(Some("j1"), None);
        assert_eq!(
            decide_at(&j, Some(&recording), at(1)),
            Retention::Held(Held::SessionRecording)
        );
        // A newer session of the same name does not hold it.
        let mut newer = session(Some("j1"), None);
        newer.metadata.uid = Some("u-other".into());
        assert_eq!(decide_at(&j, Some(&newer), at(1)), Retention::Due);
    }

    #[test]
    fn a_calling_back_last_job_is_kept_while_its_session_awaits_callbacks() {
        let j = job(
            "  ttlSecondsAfterFinished: 0\n  callback: true\n  parentSessionName: p",
            &format!("{ENDED}\n  callback: {{state: Delivered}}"),
        );
        let s = session(None, Some("j1"));
        let view = |awaits| RetentionView {
            job: &j,
            session: Some(&s),
            session_awaits_callbacks: awaits,
            default_ttl_seconds: None,
            now: at(1),
        };
        assert_eq!(decide(&view(true)), Retention::Held(Held::Inheritance));
        assert_eq!(decide(&view(false)), Retention::Due);
    }
}
