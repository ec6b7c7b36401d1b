//! The dashboard's actions: start, resume, stop and delete, each authorized for the signed-in identity with the
//! rights of the MCP tool that does the same (access.rs), and done by the same operations in ops.rs. A refusal
//! creates nothing; its message is the API server's reason.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use http::HeaderMap;
use kube::Api;
use kube::api::DeleteParams;
use serde::Deserialize;
use serde_json::{Value, json};

use super::identity::{self, ApiError};
use crate::error::ToolError;
use crate::ops::App;
use crate::plan::JobRequest;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartBody {
    pub name: String,
    pub prompt: String,
    #[serde(default)]
    pub blueprint: Option<String>,
    #[serde(default)]
    pub project_dir: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ResumeBody {
    pub prompt: String,
}

fn answer(text: String) -> Json<Value> {
    Json(json!({ "message": text }))
}

/// POST /ui/api/namespaces/{ns}/sessions: a root session, in async mode (the page follows it live).
pub async fn start(
    State(app): State<Arc<App>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    Json(body): Json<StartBody>,
) -> Result<Json<Value>, ApiError> {
    let caller = identity::caller(&app, &headers, &ns, "start_agent_session").await?;
    let req = JobRequest {
        session_name: body.name,
        prompt: body.prompt,
        blueprint: body.blueprint,
        project_dir: body.project_dir,
        async_mode: true,
        callback: false,
    };
    Ok(answer(app.start(&caller, req).await?))
}

/// POST /ui/api/namespaces/{ns}/sessions/{name}/resume
pub async fn resume(
    State(app): State<Arc<App>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<ResumeBody>,
) -> Result<Json<Value>, ApiError> {
    let caller = identity::caller(&app, &headers, &ns, "resume_agent_session").await?;
    let req = JobRequest {
        session_name: name,
        prompt: body.prompt,
        async_mode: true,
        ..Default::default()
    };
    Ok(answer(app.resume(&caller, req).await?))
}

/// POST /ui/api/namespaces/{ns}/sessions/{name}/stop
pub async fn stop(
    State(app): State<Arc<App>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = identity::caller(&app, &headers, &ns, "stop_agent_session").await?;
    Ok(answer(app.stop(&caller, &name).await?))
}

/// DELETE /ui/api/namespaces/{ns}/sessions/{name}: stops the session (as stop does), then deletes its jobs and the
/// session itself. Needs what delete_all_agent_sessions needs (delete on agentjobs).
pub async fn delete(
    State(app): State<Arc<App>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = identity::caller(&app, &headers, &ns, "delete_all_agent_sessions").await?;
    app.stop(&caller, &name).await?;
    let jobs: Api<crds::AgentJob> = Api::namespaced(app.client.clone(), &ns);
    let dp = DeleteParams::background();
    let mut deleted_jobs = 0;
    for job in app.stores.jobs_of(&ns, &name) {
        let job_name = kube::ResourceExt::name_any(job.as_ref());
        app.stores.deleted(&ns, &job_name);
        match jobs.delete(&job_name, &dp).await {
            Ok(_) => deleted_jobs += 1,
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => {
                return Err(ToolError::kube(format!("deleting AgentJob {job_name}"), e).into());
            }
        }
    }
    let sessions: Api<crds::AgentSession> = Api::namespaced(app.client.clone(), &ns);
    match sessions.delete(&name, &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.is_not_found() => {}
        Err(e) => return Err(ToolError::kube(format!("deleting AgentSession {name}"), e).into()),
    }
    Ok(answer(format!(
        "Deleted session '{name}' and {deleted_jobs} of its jobs in namespace '{ns}'."
    )))
}
