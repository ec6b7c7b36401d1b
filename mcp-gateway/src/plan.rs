//! The AgentJob a start or resume call asks for, decided from the arguments and the verified caller before any
//! API call. The parent and callback rules live here:
//! - the caller's session becomes parentSessionName (no caller, no parent);
//! - async mode with callback=true sets spec.callback, which needs a parent to call back;
//! - sync mode records the parent but never asks for a callback: the caller receives the result directly.

use crds::{AgentJobSpec, JobType};

use crate::error::ToolError;
use crate::validate;

/// The arguments of start_agent_session / resume_agent_session.
#[derive(Clone, Debug, Default)]
pub struct JobRequest {
    pub session_name: String,
    pub prompt: String,
    pub blueprint: Option<String>,
    pub project_dir: Option<String>,
    pub async_mode: bool,
    pub callback: bool,
}

/// Validates the request and returns the spec of the job to create. `caller_session` is the verified session of
/// the caller (None for an anonymous caller).
pub fn job_spec(
    job_type: JobType,
    req: &JobRequest,
    caller_session: Option<&str>,
) -> Result<AgentJobSpec, ToolError> {
    validate::session_name("session_name", &req.session_name)?;
    validate::prompt(&req.prompt)?;
    let blueprint = non_blank(req.blueprint.as_deref());
    if let Some(b) = blueprint {
        validate::blueprint_name(b)?;
    }
    let project_dir = non_blank(req.project_dir.as_deref());
    if let Some(d) = project_dir {
        validate::project_dir(d)?;
    }
    let (parent, callback) = parent_and_callback(req, caller_session)?;
    Ok(AgentJobSpec {
        job_type,
        session_name: req.session_name.clone(),
        prompt: req.prompt.clone(),
        blueprint: blueprint.map(str::to_string),
        parent_session_name: parent,
        callback,
        project_dir: project_dir.map(str::to_string),
        timeout_seconds: None,
        ttl_seconds_after_finished: None,
        backoff_limit: None,
        parent_close_policy: None,
        budget: None,
    })
}

fn parent_and_callback(
    req: &JobRequest,
    caller_session: Option<&str>,
) -> Result<(Option<String>, bool), ToolError> {
    if caller_session == Some(req.session_name.as_str()) {
        return Err(ToolError::Invalid(format!(
            "session '{}' is the calling session: a session cannot start or resume itself (it would be its own \
             parent)",
            req.session_name
        )));
    }
    let parent = caller_session.map(str::to_string);
    let callback = req.callback && req.async_mode;
    if callback && parent.is_none() {
        return Err(ToolError::Invalid(
            "callback=true needs a calling session to call back, and this call comes from none (no verified \
             agent token or X-Agent-Session-Name header). Use callback=false and poll with \
             get_agent_session_status, or async_mode=false to wait for the result."
                .into(),
        ));
    }
    Ok((parent, callback))
}

/// Optional string arguments: an empty or blank value means "not given" (LLM callers often send "").
fn non_blank(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(async_mode: bool, callback: bool) -> JobRequest {
        JobRequest {
            session_name: "child".into(),
            prompt: "work".into(),
            async_mode,
            callback,
            ..Default::default()
        }
    }

    #[test]
    fn async_callback_with_a_caller_records_parent_and_callback() {
        let spec = job_spec(JobType::Start, &req(true, true), Some("parent")).unwrap();
        assert_eq!(spec.parent_session_name.as_deref(), Some("parent"));
        assert!(spec.callback);
        assert_eq!(spec.job_type, JobType::Start);
    }

    #[test]
    fn sync_callback_records_parent_without_callback() {
        let spec = job_spec(JobType::Resume, &req(false, true), Some("parent")).unwrap();
        assert_eq!(spec.parent_session_name.as_deref(), Some("parent"));
        assert!(!spec.callback);
    }

    #[test]
    fn async_callback_without_a_caller_is_refused() {
        let err = job_spec(JobType::Start, &req(true, true), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("Error: callback=true needs a calling session"),
            "{err}"
        );
    }

    #[test]
    fn no_caller_means_no_parent() {
        let spec = job_spec(JobType::Start, &req(true, false), None).unwrap();
        assert_eq!(spec.parent_session_name, None);
        assert!(!spec.callback);
        let spec = job_spec(JobType::Start, &req(false, true), None).unwrap();
        assert_eq!(spec.parent_session_name, None);
        assert!(!spec.callback);
    }

    #[test]
    fn a_session_cannot_parent_itself() {
        let err = job_spec(JobType::Resume, &req(true, false), Some("child"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot start or resume itself"), "{err}");
    }

    #[test]
    fn blank_optionals_are_dropped_and_bad_ones_refused() {
        let mut r = req(true, false);
        r.blueprint = Some("".into());
        r.project_dir = Some(" ".into());
        let spec = job_spec(JobType::Start, &r, None).unwrap();
        assert_eq!((spec.blueprint, spec.project_dir), (None, None));
        r.blueprint = Some("Bad_Name".into());
        assert!(job_spec(JobType::Start, &r, None).is_err());
        r.blueprint = Some("coder".into());
        r.project_dir = Some("../up".into());
        assert!(job_spec(JobType::Start, &r, None).is_err());
    }

    #[test]
    fn names_and_prompts_are_checked_first() {
        let mut r = req(true, false);
        r.session_name = "Not Valid".into();
        assert!(
            job_spec(JobType::Start, &r, Some("p"))
                .unwrap_err()
                .to_string()
                .contains("session_name")
        );
        let mut r = req(true, false);
        r.prompt = "".into();
        assert!(
            job_spec(JobType::Start, &r, Some("p"))
                .unwrap_err()
                .to_string()
                .contains("prompt")
        );
    }
}
