//! What the session page shows besides the conversation: the session (phase, conditions, callback queue), its jobs
//! in run order with who asked for each, durations, results and errors, its children, and the Events of the session
//! and its jobs.

use crds::{AgentJob, AgentSession};
use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde::Serialize;
use serde_json::Value;

use crate::domain;

/// Who asked for a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum AskedBy {
    /// A person (or any client without a session: kubectl, a person's MCP client).
    Person,
    /// The parent session's agent, through the gateway.
    Parent { session: String },
    /// The operator, delivering the callbacks of these children.
    #[serde(rename_all = "camelCase")]
    Callback {
        child_jobs: Vec<String>,
        children: Vec<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub name: String,
    pub job_type: String,
    pub phase: String,
    pub reason: Option<String>,
    pub asked_by: AskedBy,
    pub prompt: String,
    pub start_time: Option<String>,
    pub completion_time: Option<String>,
    pub duration_seconds: Option<i64>,
    pub result: Option<String>,
    pub error: Option<String>,
    pub pod_name: Option<String>,
}

/// Who asked for `job`: a callback delivery names the child jobs it carries (and their sessions, from `all_jobs`).
pub fn asked_by(job: &AgentJob, all_jobs: &[&AgentJob]) -> AskedBy {
    let labels = job.metadata.labels.clone().unwrap_or_default();
    if labels
        .get(crds::labels::CALLBACK_DELIVERY)
        .map(String::as_str)
        == Some("true")
    {
        let child_jobs: Vec<String> = job
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(crds::labels::DELIVERS_JOBS))
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let mut children: Vec<String> = child_jobs
            .iter()
            .filter_map(|c| all_jobs.iter().find(|j| j.name_any() == *c))
            .map(|j| j.spec.session_name.clone())
            .collect();
        children.dedup();
        return AskedBy::Callback {
            child_jobs,
            children,
        };
    }
    match &job.spec.parent_session_name {
        Some(parent) => AskedBy::Parent {
            session: parent.clone(),
        },
        None => AskedBy::Person,
    }
}

/// The jobs of `session` in run order, from all the namespace's jobs.
pub fn jobs(session: &str, all_jobs: &[&AgentJob]) -> Vec<JobView> {
    let own: Vec<&AgentJob> = all_jobs
        .iter()
        .copied()
        .filter(|j| j.spec.session_name == session)
        .collect();
    domain::in_run_order(own)
        .into_iter()
        .map(|j| {
            let status = j.status.clone().unwrap_or_default();
            let duration_seconds = match (&status.start_time, &status.completion_time) {
                (Some(s), Some(e)) => Some(e.0.as_second() - s.0.as_second()),
                _ => None,
            };
            JobView {
                name: j.name_any(),
                job_type: j.spec.job_type.as_str().into(),
                phase: status
                    .phase
                    .map(|p| format!("{p:?}"))
                    .unwrap_or_else(|| "Pending".into()),
                reason: status.reason.clone(),
                asked_by: asked_by(j, all_jobs),
                prompt: j.spec.prompt.clone(),
                start_time: status.start_time.as_ref().map(|t| t.0.to_string()),
                completion_time: status.completion_time.as_ref().map(|t| t.0.to_string()),
                duration_seconds,
                result: status.result.clone(),
                error: status.error.clone(),
                pod_name: status.pod_name.clone(),
            }
        })
        .collect()
}

/// The session page's data.
pub fn detail(
    session: Option<&AgentSession>,
    name: &str,
    all_sessions: &[&AgentSession],
    all_jobs: &[&AgentJob],
    events: Vec<Value>,
) -> Value {
    let children: Vec<String> =
        super::tree::rows(all_sessions.iter().copied(), all_jobs.iter().copied())
            .into_values()
            .filter(|r| r.parent.as_deref() == Some(name))
            .map(|r| r.name)
            .collect();
    let mut object = session.map(|s| serde_json::to_value(s).expect("sessions serialise"));
    if let Some(m) = object
        .as_mut()
        .and_then(|o| o.get_mut("metadata"))
        .and_then(|m| m.as_object_mut())
    {
        m.remove("managedFields");
    }
    serde_json::json!({
        "name": name,
        "session": object,
        "jobs": jobs(name, all_jobs),
        "children": children,
        "events": events,
    })
}

/// The Events about the session and its jobs, oldest first (a failed read is shown as no Events, and logged).
pub async fn events(client: &Client, ns: &str, objects: Vec<String>) -> Vec<Value> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let lists = futures::future::join_all(objects.iter().map(|name| {
        let api = api.clone();
        async move {
            api.list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
                .await
        }
    }))
    .await;
    let mut events: Vec<Event> = Vec::new();
    for list in lists {
        match list {
            Ok(l) => events.extend(l.items),
            Err(e) => tracing::debug!(error = %e, "listing Events for the dashboard"),
        }
    }
    let time = |e: &Event| {
        e.event_time
            .as_ref()
            .map(|t| t.0.to_string())
            .or_else(|| e.last_timestamp.as_ref().map(|t| t.0.to_string()))
            .or_else(|| {
                e.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.to_string())
            })
            .unwrap_or_default()
    };
    events.sort_by_key(|e| time(e));
    events
        .iter()
        .map(|e| {
            serde_json::json!({
                "time": time(e),
                "type": e.type_,
                "reason": e.reason,
                "object": e.involved_object.name,
                "kind": e.involved_object.kind,
                "message": e.message,
                "count": e.count,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crds::{AgentJobSpec, JobType};

    fn job(name: &str, session: &str, parent: Option<&str>, t: JobType) -> AgentJob {
        let mut j = AgentJob::new(
            name,
            AgentJobSpec {
                job_type: t,
                session_name: session.into(),
                prompt: format!("prompt of {name}"),
                blueprint: None,
                parent_session_name: parent.map(str::to_string),
                callback: parent.is_some(),
                project_dir: None,
                timeout_seconds: None,
                ttl_seconds_after_finished: None,
                backoff_limit: None,
                parent_close_policy: None,
                budget: None,
            },
        );
        j.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            format!("2026-01-01T00:00:0{}Z", name.len() % 10)
                .parse()
                .unwrap(),
        ));
        j
    }

    #[test]
    fn a_job_was_asked_for_by_a_person_a_parent_or_a_callback_delivery_naming_its_children() {
        let start = job("planner-start", "planner", None, JobType::Start);
        let child_a = job("haiku-1", "haiku", Some("planner"), JobType::Start);
        let child_b = job("limerick-1", "limerick", Some("planner"), JobType::Start);
        let mut delivery = job("planner-cb-12", "planner", None, JobType::Resume);
        delivery.metadata.labels = Some(
            [(
                crds::labels::CALLBACK_DELIVERY.to_string(),
                "true".to_string(),
            )]
            .into(),
        );
        delivery.metadata.annotations = Some(
            [(
                crds::labels::DELIVERS_JOBS.to_string(),
                "haiku-1, limerick-1".to_string(),
            )]
            .into(),
        );
        let all = [&start, &child_a, &child_b, &delivery];
        assert_eq!(asked_by(&start, &all), AskedBy::Person);
        assert_eq!(
            asked_by(&child_a, &all),
            AskedBy::Parent {
                session: "planner".into()
            }
        );
        assert_eq!(
            asked_by(&delivery, &all),
            AskedBy::Callback {
                child_jobs: vec!["haiku-1".into(), "limerick-1".into()],
                children: vec!["haiku".into(), "limerick".into()],
            }
        );
        let views = jobs("planner", &all);
        assert_eq!(
            views.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
            ["planner-cb-12", "planner-start"],
            "run order is creation order"
        );
        let detail = detail(None, "planner", &[], &all, vec![]);
        assert_eq!(detail["children"], serde_json::json!(["haiku", "limerick"]));
    }
}
