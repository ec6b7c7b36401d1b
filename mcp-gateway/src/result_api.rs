//! `POST /v1/namespaces/{ns}/agentjobs/{name}/result`: the agent runner reports its job's final text. Only the
//! job's own Pod may do so (its token names the Pod, the Pod's label names the job). The gateway writes the
//! job's status fields result, resultTruncated, agentSessionId and error with server-side apply (field manager
//! `mcp-gateway`); the operator copies them to the session when the job ends. The same report carries the run's
//! `usage`; while the agent runs, the runner sends `{"progress": true, "usage": ..}`, which writes only
//! status.usage (field manager `mcp-gateway-usage`, so that it never removes the result fields).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use crds::AgentJob;
use http::{HeaderMap, StatusCode};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::Deserialize;
use serde_json::json;

use crate::ops::{App, FIELD_MANAGER};

/// Largest accepted report. Results are bounded to 32 KiB when stored; the margin lets a runner send its whole
/// output and leave the cutting (with a marker) to the gateway.
pub const MAX_REPORT_BYTES: usize = 1024 * 1024;
/// Longest error text kept.
const MAX_ERROR_CHARS: usize = 4096;

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResultReport {
    #[serde(default)]
    pub result: String,
    #[serde(default)]
    pub agent_session_id: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    /// Tokens and cost of the run (so far, for a progress report).
    #[serde(default)]
    pub usage: Option<crds::Usage>,
    /// A report of usage while the agent runs: only usage is written.
    #[serde(default)]
    pub progress: bool,
}

/// Field manager of usage-only (progress) writes.
const USAGE_MANAGER: &str = "mcp-gateway-usage";

pub async fn report_result(
    State(app): State<Arc<App>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let outcome = handle(&app, &ns, &name, &headers, body).await;
    let label = match &outcome {
        Ok(_) => "recorded",
        Err((code, _)) if *code == StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        Err((code, _)) if code.is_client_error() => "refused",
        Err(_) => "failed",
    };
    app.metrics.result_report(label);
    match outcome {
        Ok(truncated) => (
            StatusCode::OK,
            Json(json!({"namespace": ns, "job": name, "resultTruncated": truncated})),
        )
            .into_response(),
        Err((code, message)) => {
            tracing::info!(namespace = %ns, job = %name, %code, %message, "result report refused");
            (code, Json(json!({"error": message}))).into_response()
        }
    }
}

async fn handle(
    app: &App,
    ns: &str,
    name: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<bool, (StatusCode, String)> {
    let caller = app
        .auth
        .authenticate(headers)
        .await
        .map_err(|r| (r.status(), r.to_string()))?;
    if caller.verified && (caller.namespace != ns || caller.job.as_deref() != Some(name)) {
        return Err((
            StatusCode::FORBIDDEN,
            format!(
                "only the Pod of AgentJob {ns}/{name} may report its result; the caller is the Pod of job {}/{}",
                caller.namespace,
                caller.job.as_deref().unwrap_or("(none)")
            ),
        ));
    }
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the result report exceeds {MAX_REPORT_BYTES} bytes; send at most that (results are stored up to \
                 {} bytes and cut with a marker)",
                crds::contract::MAX_RESULT_BYTES
            ),
        ),
        code => (code, e.body_text()),
    })?;
    let report: ResultReport = serde_json::from_slice(&body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("the body must be JSON {{\"result\": string, \"agentSessionId\": string, \"error\"?: string, \"usage\"?: Usage, \"progress\"?: bool}}: {e}"),
        )
    })?;
    if let Some(cost) = report.usage.as_ref().and_then(|u| u.cost_usd.as_deref()) {
        crds::Cost::parse(cost)
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("usage.costUSD: {e}")))?;
    }
    let api: Api<AgentJob> = Api::namespaced(app.client.clone(), ns);
    if app.stores.job(ns, name).is_none() {
        // The cache may lag behind a very young job: confirm with one GET before saying it does not exist.
        let exists = api
            .get_metadata_opt(name)
            .await
            .map_err(|e| (StatusCode::BAD_GATEWAY, crate::error::kube_message(&e)))?
            .is_some();
        if !exists {
            return Err((
                StatusCode::NOT_FOUND,
                format!("AgentJob {ns}/{name} does not exist"),
            ));
        }
    }
    let mut report = report;
    if !report.progress
        && report.error.is_some()
        && stopped_by_operator(app, &api, ns, name).await?
    {
        // The agent's last words after being told to stop (killed by SIGTERM) would hide why it was stopped.
        report.error = None;
    }
    let (patch, truncated, manager) = if report.progress {
        if app
            .stores
            .job(ns, name)
            .is_some_and(|j| j.status.as_ref().is_some_and(|s| s.result.is_some()))
        {
            // The final report is in: a progress report that arrives late must not lower its usage.
            return Ok(false);
        }
        (usage_patch(&report), false, USAGE_MANAGER)
    } else {
        let (patch, truncated) = status_patch(&report);
        (patch, truncated, FIELD_MANAGER)
    };
    api.patch_status(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|e| {
        (
            StatusCode::BAD_GATEWAY,
            format!(
                "writing the job status failed: {}",
                crate::error::kube_message(&e)
            ),
        )
    })?;
    if report.progress {
        tracing::debug!(namespace = %ns, job = %name, "usage recorded");
    } else {
        tracing::info!(namespace = %ns, job = %name, truncated, "result recorded");
    }
    Ok(truncated)
}

/// Whether the operator has already ended the job (deleted while running, over its tree's budget, past its
/// deadline): then its cause stays the job's error. The operator writes that status before it stops the Pod, and the
/// agent reports only after being told to stop, so a fresh read sees the status whenever the cache does not yet.
/// The read is made only for reports that carry an error and a job the cache does not show finished.
async fn stopped_by_operator(
    app: &App,
    api: &Api<AgentJob>,
    ns: &str,
    name: &str,
) -> Result<bool, (StatusCode, String)> {
    let stopped = |j: &AgentJob| j.status.as_ref().is_some_and(|s| s.stopped_by_operator());
    if let Some(cached) = app.stores.job(ns, name) {
        let finished = cached
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(|p| p.is_finished());
        if finished {
            return Ok(stopped(&cached));
        }
    }
    let fresh = api
        .get_opt(name)
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, crate::error::kube_message(&e)))?;
    Ok(fresh.as_ref().is_some_and(stopped))
}

/// The server-side apply patch of the job's status: only the fields the gateway owns.
pub fn status_patch(report: &ResultReport) -> (serde_json::Value, bool) {
    let (result, truncated) = crds::contract::bound_result(&report.result);
    let mut status = json!({"result": result, "resultTruncated": truncated});
    if let Some(id) = report.agent_session_id.as_deref().filter(|s| !s.is_empty()) {
        status["agentSessionId"] = json!(id);
    }
    if let Some(e) = report.error.as_deref().filter(|s| !s.is_empty()) {
        status["error"] = json!(e.chars().take(MAX_ERROR_CHARS).collect::<String>());
    }
    if let Some(usage) = &report.usage {
        status["usage"] = json!(usage);
    }
    let patch = json!({
        "apiVersion": format!("{}/{}", crds::GROUP, crds::VERSION),
        "kind": "AgentJob",
        "status": status,
    });
    (patch, truncated)
}

/// The patch of a progress report: status.usage alone.
pub fn usage_patch(report: &ResultReport) -> serde_json::Value {
    json!({
        "apiVersion": format!("{}/{}", crds::GROUP, crds::VERSION),
        "kind": "AgentJob",
        "status": {"usage": report.usage.clone().unwrap_or_default()},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_parse_with_optional_fields() {
        let r: ResultReport =
            serde_json::from_str(r#"{"result":"done","agentSessionId":"abc"}"#).unwrap();
        assert_eq!(r.agent_session_id.as_deref(), Some("abc"));
        assert_eq!(r.error, None);
    }

    #[test]
    fn the_patch_bounds_the_result_and_sets_only_given_fields() {
        let report = ResultReport {
            result: "x".repeat(crds::contract::MAX_RESULT_BYTES + 1),
            agent_session_id: Some("id-1".into()),
            error: None,
            usage: None,
            progress: false,
        };
        let (patch, truncated) = status_patch(&report);
        assert!(truncated);
        assert_eq!(patch["kind"], "AgentJob");
        assert_eq!(patch["apiVersion"], "agentorchestrator.dev/v1alpha1");
        assert_eq!(patch["status"]["resultTruncated"], true);
        assert_eq!(patch["status"]["agentSessionId"], "id-1");
        assert!(patch["status"].get("error").is_none());
        let result = patch["status"]["result"].as_str().unwrap();
        assert!(result.len() <= crds::contract::MAX_RESULT_BYTES);
        assert!(result.ends_with(crds::contract::TRUNCATION_MARKER));
    }

    #[test]
    fn usage_goes_with_the_result_and_alone_in_progress() {
        let report: ResultReport =
            serde_json::from_str(r#"{"progress":true,"usage":{"inputTokens":5,"costUSD":"0.01"}}"#)
                .unwrap();
        assert!(report.progress);
        let patch = usage_patch(&report);
        assert_eq!(
            patch["status"],
            json!({"usage": {"inputTokens": 5, "outputTokens": 0, "cacheReadTokens": 0,
                "cacheWriteTokens": 0, "costUSD": "0.01", "turns": 0}})
        );
        let (patch, _) = status_patch(&report);
        assert_eq!(patch["status"]["usage"]["costUSD"], "0.01");
        assert_eq!(patch["status"]["result"], "");
    }
}
