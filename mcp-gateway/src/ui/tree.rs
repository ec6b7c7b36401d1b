//! The rows of the dashboard's tree view, built from the caches: one row per session of a namespace (and per session
//! that exists so far only as its pending Start job), each naming its parent. The browser nests rows under their
//! parent; a row whose parent is not in the namespace is a root.

use std::collections::BTreeMap;

use crds::{AgentJob, AgentSession, JobType};
use kube::ResourceExt;
use serde::Serialize;

use crate::domain;

/// Characters of a session's result shown in the tree; the session page shows it whole.
pub const PREVIEW_CHARS: usize = 160;

/// One session as the tree view shows it. Absent values are left out of the JSON (a snapshot of 1,000 rows is
/// that much smaller to send and parse).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blueprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_job: Option<String>,
    /// Callbacks waiting in the session's queue.
    pub queue: i64,
    pub jobs: i64,
    /// Creation time (RFC 3339): the browser shows the age.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_preview: Option<String>,
}

/// The rows of a namespace, by session name.
pub fn rows<'a>(
    sessions: impl IntoIterator<Item = &'a AgentSession>,
    jobs: impl IntoIterator<Item = &'a AgentJob>,
) -> BTreeMap<String, Row> {
    let jobs: Vec<&AgentJob> = jobs.into_iter().collect();
    let mut jobs_per_session: BTreeMap<&str, i64> = BTreeMap::new();
    for j in &jobs {
        *jobs_per_session.entry(&j.spec.session_name).or_default() += 1;
    }
    let mut rows: BTreeMap<String, Row> = sessions
        .into_iter()
        .map(|s| {
            let name = s.name_any();
            let status = s.status.clone().unwrap_or_default();
            let row = Row {
                parent: status
                    .parent_session_name
                    .clone()
                    .or_else(|| s.spec.parent_session_name.clone()),
                phase: status
                    .phase
                    .map(|p| format!("{p:?}"))
                    .unwrap_or_else(|| "Pending".into()),
                blueprint: s.spec.blueprint.clone(),
                current_job: status.current_job.clone(),
                queue: status
                    .callback_queue_length
                    .max(status.callback_queue.len() as i64),
                jobs: status
                    .job_count
                    .max(jobs_per_session.get(name.as_str()).copied().unwrap_or(0)),
                created: s
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.to_string()),
                result_preview: status.result.as_deref().map(preview),
                name: name.clone(),
            };
            (name, row)
        })
        .collect();
    // A session being created exists only as its Start job until the operator makes it.
    for job in domain::in_run_order(jobs) {
        let name = &job.spec.session_name;
        if job.spec.job_type == JobType::Start
            && !domain::job_ended(job)
            && !rows.contains_key(name)
        {
            rows.insert(
                name.clone(),
                Row {
                    name: name.clone(),
                    parent: job.spec.parent_session_name.clone(),
                    phase: "Pending".into(),
                    blueprint: job.spec.blueprint.clone(),
                    current_job: Some(job.name_any()),
                    queue: 0,
                    jobs: 1,
                    created: job
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string()),
                    result_preview: None,
                },
            );
        }
    }
    rows
}

/// The first PREVIEW_CHARS characters of a result, on one line, with a marker when cut.
pub fn preview(result: &str) -> String {
    let flat: String = result.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crds::{AgentJobSpec, AgentSessionSpec, AgentSessionStatus, SessionPhase};

    pub fn session(name: &str, parent: Option<&str>, phase: SessionPhase) -> AgentSession {
        let mut s = AgentSession::new(
            name,
            AgentSessionSpec {
                blueprint: Some("bp".into()),
                ..Default::default()
            },
        );
        s.metadata.namespace = Some("ns".into());
        s.status = Some(AgentSessionStatus {
            phase: Some(phase),
            parent_session_name: parent.map(str::to_string),
            job_count: 1,
            result: Some("line one\n  line two".into()),
            ..Default::default()
        });
        s
    }

    fn start_job(name: &str, session: &str, parent: Option<&str>) -> AgentJob {
        let mut j = AgentJob::new(
            name,
            AgentJobSpec {
                job_type: JobType::Start,
                session_name: session.into(),
                prompt: "p".into(),
                blueprint: None,
                parent_session_name: parent.map(str::to_string),
                callback: true,
                project_dir: None,
                timeout_seconds: None,
                ttl_seconds_after_finished: None,
                backoff_limit: None,
                parent_close_policy: None,
                budget: None,
            },
        );
        j.metadata.namespace = Some("ns".into());
        j
    }

    #[test]
    fn each_session_is_a_row_naming_its_parent_and_a_pending_start_is_one_too() {
        let planner = session("planner", None, SessionPhase::Running);
        let child = session("haiku", Some("planner"), SessionPhase::Idle);
        let jobs = [
            start_job("planner-start", "planner", None),
            start_job("haiku-1", "haiku", Some("planner")),
            start_job("limerick-1", "limerick", Some("planner")),
        ];
        let rows = rows([&planner, &child], jobs.iter());
        assert_eq!(
            rows.keys().collect::<Vec<_>>(),
            ["haiku", "limerick", "planner"]
        );
        assert_eq!(rows["planner"].parent, None);
        assert_eq!(rows["planner"].phase, "Running");
        assert_eq!(rows["haiku"].parent.as_deref(), Some("planner"));
        assert_eq!(
            rows["haiku"].result_preview.as_deref(),
            Some("line one line two")
        );
        let pending = &rows["limerick"];
        assert_eq!(
            (
                pending.phase.as_str(),
                pending.parent.as_deref(),
                pending.current_job.as_deref()
            ),
            ("Pending", Some("planner"), Some("limerick-1"))
        );
    }

    #[test]
    fn a_long_result_is_cut_with_a_marker() {
        let long = "x".repeat(PREVIEW_CHARS + 5);
        let p = preview(&long);
        assert_eq!(p.chars().count(), PREVIEW_CHARS + 1);
        assert!(p.ends_with('…'));
        assert_eq!(preview("short"), "short");
    }
}
