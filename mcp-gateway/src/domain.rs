//! What the tools conclude from the cached objects: whether a session runs, which job ended last, which
//! blueprints a caller sees. Pure functions over CRD values, so they are tested without a cluster.

use crds::{AgentBlueprint, AgentJob, AgentSession, JobPhase, JobType};
use kube::ResourceExt;

/// The three answers of get_agent_session_status (names kept from the original system).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    Running,
    Finished,
    NotExistent,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Running => "running",
            SessionState::Finished => "finished",
            SessionState::NotExistent => "not_existent",
        }
    }
}

/// A job has ended once the operator wrote Succeeded or Failed; a job without status has not started.
pub fn job_ended(job: &AgentJob) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(JobPhase::is_finished)
}

/// Session state from the session (if it exists) and the jobs naming it. Running: it has a current job that has
/// not ended, or a job naming it has not ended. A current job whose own status says it ended does not count: the
/// session's status lags the job's until the operator's next write, and a sync start or resume has already answered
/// with that job's result, so a status or result read right after must agree. Without the session object, a Start
/// job that has not ended means it is being created; anything else means it does not exist (a Resume alone will
/// fail with SessionNotFound).
pub fn session_state<'a>(
    session: Option<&AgentSession>,
    jobs: impl IntoIterator<Item = &'a AgentJob>,
) -> SessionState {
    let all: Vec<&AgentJob> = jobs.into_iter().collect();
    let mut jobs = all.iter().filter(|j| !job_ended(j));
    match session {
        Some(s) => {
            let has_current = current_job(s)
                .is_some_and(|cur| !all.iter().any(|j| j.name_any() == cur && job_ended(j)));
            if has_current || jobs.next().is_some() {
                SessionState::Running
            } else {
                SessionState::Finished
            }
        }
        None if jobs.any(|j| j.spec.job_type == JobType::Start) => SessionState::Running,
        None => SessionState::NotExistent,
    }
}

/// Jobs of one session in the order they run: (creationTimestamp, name).
pub fn in_run_order(mut jobs: Vec<&AgentJob>) -> Vec<&AgentJob> {
    jobs.sort_by(|a, b| {
        (a.metadata.creation_timestamp.as_ref(), a.name_any())
            .cmp(&(b.metadata.creation_timestamp.as_ref(), b.name_any()))
    });
    jobs
}

fn current_job(session: &AgentSession) -> Option<&str> {
    session.status.as_ref()?.current_job.as_deref()
}

/// The job whose result a finished session reports: its current job if that has ended (the operator has not
/// moved it to lastJob yet), else the session's lastJob when the operator recorded it, else the last ended job in
/// run order.
pub fn last_ended_job<'a>(
    session: Option<&AgentSession>,
    jobs: Vec<&'a AgentJob>,
) -> Option<&'a AgentJob> {
    if let Some(cur) = session.and_then(current_job)
        && let Some(job) = jobs.iter().find(|j| j.name_any() == cur && job_ended(j))
    {
        return Some(job);
    }
    let last = session.and_then(|s| s.status.as_ref()?.last_job.clone());
    if let Some(name) = last {
        // A recorded lastJob that is gone (deleted by its ttlSecondsAfterFinished): the session's own status has
        // its result; an older job that is still there does not.
        return jobs.into_iter().find(|j| j.name_any() == name);
    }
    in_run_order(jobs).into_iter().rev().find(|j| job_ended(j))
}

/// Tags of the X-Agent-Tags header: comma-separated, blanks ignored.
pub fn parse_tags(header: Option<&str>) -> Vec<String> {
    header
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// Blueprints an agent may see: enabled ones carrying every requested tag, by name.
pub fn visible_blueprints<'a>(
    blueprints: impl IntoIterator<Item = &'a AgentBlueprint>,
    tags: &[String],
) -> Vec<&'a AgentBlueprint> {
    let mut out: Vec<_> = blueprints
        .into_iter()
        .filter(|b| !b.spec.disabled)
        .filter(|b| tags.iter().all(|t| b.spec.tags.contains(t)))
        .collect();
    out.sort_by_key(|b| b.name_any());
    out
}

#[cfg(test)]
pub mod fixtures {
    //! Small builders of CRD values for the unit tests.
    use crds::{
        AgentBlueprintSpec, AgentJobSpec, AgentJobStatus, AgentSessionSpec, AgentSessionStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    pub fn job(
        name: &str,
        session: &str,
        job_type: JobType,
        phase: Option<JobPhase>,
        created_s: i64,
    ) -> AgentJob {
        let mut j = AgentJob::new(
            name,
            AgentJobSpec {
                job_type,
                session_name: session.into(),
                prompt: "p".into(),
                blueprint: None,
                parent_session_name: None,
                callback: false,
                project_dir: None,
                timeout_seconds: None,
                ttl_seconds_after_finished: None,
                backoff_limit: None,
                parent_close_policy: None,
                budget: None,
            },
        );
        j.metadata.namespace = Some("ns".into());
        j.metadata.creation_timestamp =
            Some(Time(jiff::Timestamp::from_second(created_s).unwrap()));
        j.status = phase.map(|p| AgentJobStatus {
            phase: Some(p),
            ..Default::default()
        });
        j
    }

    pub fn session(name: &str, current: Option<&str>, last: Option<&str>) -> AgentSession {
        let mut s = AgentSession::new(name, AgentSessionSpec::default());
        s.metadata.namespace = Some("ns".into());
        s.status = Some(AgentSessionStatus {
            current_job: current.map(Into::into),
            last_job: last.map(Into::into),
            ..Default::default()
        });
        s
    }

    pub fn blueprint(name: &str, tags: &[&str], disabled: bool) -> AgentBlueprint {
        AgentBlueprint::new(
            name,
            AgentBlueprintSpec {
                description: Some(format!("{name} agent")),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                disabled,
                ..Default::default()
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn a_session_with_a_current_or_unfinished_job_is_running() {
        let s = session("s", Some("s-1"), None);
        assert_eq!(session_state(Some(&s), []), SessionState::Running);

        let s = session("s", None, Some("s-1"));
        let pending = job("s-2", "s", JobType::Resume, None, 2);
        let running = job("s-2", "s", JobType::Resume, Some(JobPhase::Running), 2);
        let done = job("s-1", "s", JobType::Start, Some(JobPhase::Succeeded), 1);
        let failed = job("s-1", "s", JobType::Start, Some(JobPhase::Failed), 1);
        assert_eq!(session_state(Some(&s), [&pending]), SessionState::Running);
        assert_eq!(session_state(Some(&s), [&running]), SessionState::Running);
        assert_eq!(
            session_state(Some(&s), [&done, &failed]),
            SessionState::Finished
        );
        assert_eq!(session_state(Some(&s), []), SessionState::Finished);
    }

    #[test]
    fn a_current_job_that_ended_is_finished_before_the_operator_moves_it() {
        // The operator has not yet written that s-2 ended: currentJob still names it, lastJob the one before.
        let s = session("s", Some("s-2"), Some("s-1"));
        let first = job("s-1", "s", JobType::Start, Some(JobPhase::Succeeded), 1);
        let running = job("s-2", "s", JobType::Resume, Some(JobPhase::Running), 2);
        let ended = job("s-2", "s", JobType::Resume, Some(JobPhase::Succeeded), 2);
        assert_eq!(
            session_state(Some(&s), [&first, &running]),
            SessionState::Running
        );
        assert_eq!(
            session_state(Some(&s), [&first, &ended]),
            SessionState::Finished
        );
        let reported = last_ended_job(Some(&s), vec![&first, &ended]).expect("a job");
        assert_eq!(
            reported.name_any(),
            "s-2",
            "the ended current job, not lastJob"
        );
    }

    #[test]
    fn a_last_job_deleted_by_its_ttl_is_not_replaced_by_an_older_one() {
        let s = session("s", None, Some("s-2"));
        let older = job("s-1", "s", JobType::Start, Some(JobPhase::Succeeded), 1);
        assert!(last_ended_job(Some(&s), vec![&older]).is_none());
    }

    #[test]
    fn without_a_session_only_an_unfinished_start_job_counts() {
        let start = job("s-1", "s", JobType::Start, Some(JobPhase::Pending), 1);
        let resume = job("s-1", "s", JobType::Resume, None, 1);
        let failed_start = job("s-1", "s", JobType::Start, Some(JobPhase::Failed), 1);
        assert_eq!(session_state(None, [&start]), SessionState::Running);
        assert_eq!(session_state(None, [&resume]), SessionState::NotExistent);
        assert_eq!(
            session_state(None, [&failed_start]),
            SessionState::NotExistent
        );
        assert_eq!(session_state(None, []), SessionState::NotExistent);
    }

    #[test]
    fn the_last_ended_job_prefers_the_sessions_record() {
        let a = job("s-a", "s", JobType::Start, Some(JobPhase::Succeeded), 1);
        let b = job("s-b", "s", JobType::Resume, Some(JobPhase::Failed), 2);
        let c = job("s-c", "s", JobType::Resume, Some(JobPhase::Running), 3);
        let none = session("s", None, None);
        assert_eq!(
            last_ended_job(Some(&none), vec![&c, &a, &b])
                .unwrap()
                .name_any(),
            "s-b"
        );
        let recorded = session("s", None, Some("s-a"));
        assert_eq!(
            last_ended_job(Some(&recorded), vec![&c, &a, &b])
                .unwrap()
                .name_any(),
            "s-a"
        );
        assert!(last_ended_job(None, vec![&c]).is_none());
    }

    #[test]
    fn same_second_jobs_run_in_name_order() {
        // The Start job sorts last by name, and the input order is neither: only name order passes.
        let a = job("s-0000000b", "s", JobType::Start, None, 5);
        let b = job("s-0000000a", "s", JobType::Resume, None, 5);
        let order: Vec<_> = in_run_order(vec![&a, &b])
            .iter()
            .map(|j| j.name_any())
            .collect();
        assert_eq!(order, ["s-0000000a", "s-0000000b"]);
    }

    #[test]
    fn tags_header_is_comma_separated() {
        assert_eq!(parse_tags(Some(" a, b ,,c")), ["a", "b", "c"]);
        assert!(parse_tags(None).is_empty());
        assert!(parse_tags(Some(" ")).is_empty());
    }

    #[test]
    fn blueprints_need_every_tag_and_must_be_enabled() {
        let all = [
            blueprint("zeta", &["py", "review"], false),
            blueprint("alpha", &["py"], false),
            blueprint("off", &["py", "review"], true),
        ];
        let names = |tags: &[&str]| -> Vec<String> {
            let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
            visible_blueprints(&all, &tags)
                .iter()
                .map(|b| b.name_any())
                .collect()
        };
        assert_eq!(names(&[]), ["alpha", "zeta"]);
        assert_eq!(names(&["py"]), ["alpha", "zeta"]);
        assert_eq!(names(&["py", "review"]), ["zeta"]);
        assert!(names(&["go"]).is_empty());
    }
}
