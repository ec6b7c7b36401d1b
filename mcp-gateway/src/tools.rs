//! The MCP tools (names and parameters compatible with the original system). Each tool is a thin adapter: it
//! reads the verified caller from the request, calls App, and turns the outcome into a tool result (or tool
//! error) whose text is capped at 25,000 characters.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use http::request::Parts;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::auth::{self, Caller};
use crate::error::ToolError;
use crate::format::{self, ResponseFormat};
use crate::ops::App;
use crate::plan::JobRequest;
use crate::trace;
use tracing::Instrument;

/// How long a tool call that arrives before the caches are synced waits for them.
const STARTUP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListParams {
    /// Output format: "markdown" (default) or "json".
    #[serde(default)]
    pub response_format: ResponseFormat,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct StartParams {
    /// Name of the new session: lowercase letters, digits and '-', at most 60 characters, unique in the namespace.
    pub session_name: String,
    /// What the agent should do (1 to 100,000 characters).
    pub prompt: String,
    /// Agent blueprint to use (see list_agent_blueprints); omit for the default agent.
    #[serde(default)]
    pub agent_blueprint_name: Option<String>,
    /// Working directory of the agent, relative to its workspace.
    #[serde(default)]
    pub project_dir: Option<String>,
    /// false (default): wait for the session to finish and return its result. true: return at once.
    #[serde(default)]
    pub async_mode: bool,
    /// With async_mode: deliver the child's result to you as a new prompt when it finishes.
    #[serde(default)]
    pub callback: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ResumeParams {
    /// The existing session to continue.
    pub session_name: String,
    /// The next prompt for it (1 to 100,000 characters).
    pub prompt: String,
    /// false (default): wait for this turn to finish and return its result. true: return at once.
    #[serde(default)]
    pub async_mode: bool,
    /// With async_mode: deliver the result to you as a new prompt when this turn finishes.
    #[serde(default)]
    pub callback: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct StatusParams {
    /// The session to check.
    pub session_name: String,
    /// Wait up to this many seconds (0 to 300) for a running session to finish before answering.
    #[serde(default)]
    #[schemars(range(min = 0, max = 300))]
    pub wait_seconds: i64,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SessionParams {
    /// The session.
    pub session_name: String,
}

#[derive(Clone)]
pub struct Gateway {
    app: Arc<App>,
    tool_router: ToolRouter<Self>,
}

impl Gateway {
    pub fn new(app: Arc<App>) -> Self {
        Gateway {
            app,
            tool_router: Self::tool_router(),
        }
    }

    /// The tools exactly as the server lists them (name, description, input schema), sorted by name: the source
    /// of docs/mcp-tools.md.
    pub fn served_tools() -> Vec<rmcp::model::Tool> {
        Self::tool_router().list_all()
    }

    /// Runs one tool for the caller the request carries, once a person's call is authorized (access.rs): records
    /// its metrics and turns its outcome into a (possibly error) tool result.
    async fn run<Fut>(
        &self,
        tool: &'static str,
        parts: &Parts,
        f: impl FnOnce(Caller) -> Fut,
    ) -> CallToolResult
    where
        Fut: Future<Output = Result<String, ToolError>>,
    {
        let started = Instant::now();
        let caller_span = trace::caller_span(&self.app.stores, caller(parts).ok().as_ref());
        let span = trace::tool_span(tool, caller_span);
        let call = async {
            // Before the first full list, "not found" could be a lie: a call that arrives that early waits briefly.
            let deadline = tokio::time::Instant::now() + STARTUP_WAIT;
            if self.app.stores.is_ready() || self.app.stores.wait_ready(deadline).await {
                match self.authorized(tool, parts).await {
                    Ok(caller) => f(caller).await,
                    Err(e) => Err(e),
                }
            } else {
                Err(ToolError::Conflict(
                    "the gateway is starting and has not loaded the sessions yet; retry in a few seconds".into(),
                ))
            }
        };
        let outcome = trace::scope(&span, caller_span, call)
            .instrument(span.clone())
            .await;
        if let Err(e) = &outcome {
            span.record("otel.status_code", "ERROR");
            span.record("error", e.kind());
        }
        self.app
            .metrics
            .tool_call(tool, outcome.is_ok(), started.elapsed());
        match outcome {
            Ok(text) => {
                CallToolResult::success(vec![ContentBlock::text(format::truncate_response(text))])
            }
            Err(e) => {
                tracing::info!(tool, kind = e.kind(), error = %e, "tool error");
                CallToolResult::error(vec![ContentBlock::text(format::truncate_response(
                    e.to_string(),
                ))])
            }
        }
    }

    async fn authorized(&self, tool: &str, parts: &Parts) -> Result<Caller, ToolError> {
        let caller = caller(parts)?;
        self.app.authorize(&caller, tool).await?;
        Ok(caller)
    }
}

/// The caller the auth middleware attached to the HTTP request.
fn caller(parts: &Parts) -> Result<Caller, ToolError> {
    parts
        .extensions
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| ToolError::Invalid("the request carries no verified caller".into()))
}

#[tool_router]
impl Gateway {
    #[tool(
        description = "List the agent blueprints (agent configurations) you can start sessions with. Disabled \
                       blueprints are hidden, and so are those lacking any tag of the X-Agent-Tags header."
    )]
    async fn list_agent_blueprints(
        &self,
        Parameters(p): Parameters<ListParams>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        let tags = auth::tags(&parts.headers);
        self.run("list_agent_blueprints", &parts, |caller| async move {
            Ok(self.app.list_blueprints(&caller, &tags, p.response_format))
        })
        .await
    }

    #[tool(
        description = "List the agent sessions you reach, with their status (running or finished): your own \
                       session and the sessions below it (your children, theirs, and so on). An agent whose \
                       blueprint has scope Namespace reaches every session of its namespace."
    )]
    async fn list_agent_sessions(
        &self,
        Parameters(p): Parameters<ListParams>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.run("list_agent_sessions", &parts, |caller| async move {
            Ok(self.app.list_sessions(&caller, p.response_format))
        })
        .await
    }

    #[tool(
        description = "Start a new agent session with a prompt. Sync mode (default) waits up to 600 s and returns \
                       the agent's result; async_mode=true returns at once with the session and job names. With \
                       async_mode and callback=true, the result is delivered to you as a new prompt when the \
                       child finishes."
    )]
    async fn start_agent_session(
        &self,
        Parameters(p): Parameters<StartParams>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.run("start_agent_session", &parts, |caller| async move {
            let req = JobRequest {
                session_name: p.session_name,
                prompt: p.prompt,
                blueprint: p.agent_blueprint_name,
                project_dir: p.project_dir,
                async_mode: p.async_mode,
                callback: p.callback,
            };
            self.app.start(&caller, req).await
        })
        .await
    }

    #[tool(
        description = "Resume an existing agent session with a new prompt. Sync mode (default) waits up to 600 s \
                       and returns the result; async_mode=true returns at once. A resume on a busy session waits \
                       for its turn. Only a session you reach (see list_agent_sessions) can be resumed; you become \
                       its parent."
    )]
    async fn resume_agent_session(
        &self,
        Parameters(p): Parameters<ResumeParams>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.run("resume_agent_session", &parts, |caller| async move {
            let req = JobRequest {
                session_name: p.session_name,
                prompt: p.prompt,
                async_mode: p.async_mode,
                callback: p.callback,
                ..Default::default()
            };
            self.app.resume(&caller, req).await
        })
        .await
    }

    #[tool(
        description = "Status of a session: {\"status\": \"running\" | \"finished\" | \"not_existent\"}. With \
                       wait_seconds (0 to 300) a running session is watched and the answer comes as soon as it \
                       finishes. A session you do not reach (see list_agent_sessions) is not_existent, like a \
                       missing one."
    )]
    async fn get_agent_session_status(
        &self,
        Parameters(p): Parameters<StatusParams>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.run("get_agent_session_status", &parts, |caller| async move {
            self.app
                .status(&caller, &p.session_name, p.wait_seconds)
                .await
        })
        .await
    }

    #[tool(
        description = "The result of a finished session's last run. An error if it is still running or failed, \
                       or if you do not reach it (see list_agent_sessions)."
    )]
    async fn get_agent_session_result(
        &self,
        Parameters(p): Parameters<SessionParams>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.run("get_agent_session_result", &parts, |caller| async move {
            self.app.result(&caller, &p.session_name)
        })
        .await
    }

    #[tool(
        description = "Delete the agent sessions below yours (your children, theirs, and so on) and their jobs; \
                       your own session and other trees are kept. An agent whose blueprint has scope Namespace \
                       deletes every session of its namespace but its own. Running sessions are stopped."
    )]
    async fn delete_all_agent_sessions(
        &self,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.run("delete_all_agent_sessions", &parts, |caller| async move {
            self.app.delete_all(&caller).await
        })
        .await
    }

    #[tool(
        description = "Stop a running session: its current and waiting jobs are cancelled (a parent waiting for a \
                       callback is told it was stopped). The session itself is kept and can be resumed. Only a \
                       session you reach (see list_agent_sessions) can be stopped."
    )]
    async fn stop_agent_session(
        &self,
        Parameters(p): Parameters<SessionParams>,
        Extension(parts): Extension<Parts>,
    ) -> CallToolResult {
        self.run("stop_agent_session", &parts, |caller| async move {
            self.app.stop(&caller, &p.session_name).await
        })
        .await
    }
}

#[tool_handler(router = self.tool_router, name = "mcp-gateway")]
impl ServerHandler for Gateway {}
