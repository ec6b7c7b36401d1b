//! The dashboard at /ui/: static assets embedded in the binary (plain HTML, one ES module and CSS, no build step),
//! and its JSON and server-sent-event API under /ui/api/, with the gateway's identity rules (identity.rs).
//!
//! - `GET /ui/api/whoami`: the signed-in identity (401 sends the page back to sign-in);
//! - `GET /ui/api/namespaces/{ns}/tree`: SSE, the tree's rows (snapshot, then changes; `Last-Event-ID` resumes);
//! - `GET /ui/api/namespaces/{ns}/sessions/{name}`: the session page's data;
//! - `GET /ui/api/namespaces/{ns}/sessions/{name}/conversation`: SSE, the agent's conversation, followed live;
//! - `POST .../sessions` (start), `POST .../sessions/{name}/resume`, `POST .../sessions/{name}/stop`,
//!   `DELETE .../sessions/{name}`.

mod actions;
mod assets;
mod conversation;
mod feed;
mod identity;
mod live;
mod session;
mod sse;
mod tree;

use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use http::HeaderMap;
use kube::ResourceExt;
use serde_json::json;

use identity::ApiError;

use crate::ops::App;

/// Read rights, as list_agent_sessions needs them (get and list on agentsessions and agentjobs).
const READ: &str = "list_agent_sessions";

/// The feeds of the process (one set, whichever router asked first).
fn feeds() -> &'static live::Feeds {
    static FEEDS: OnceLock<live::Feeds> = OnceLock::new();
    FEEDS.get_or_init(live::Feeds::new)
}

/// The dashboard's routes (empty when `enabled` is false: --dashboard=false).
pub fn router(app: Arc<App>, enabled: bool) -> Router {
    if !enabled {
        return Router::new();
    }
    let api = Router::new()
        .route("/whoami", get(whoami))
        .route("/namespaces/{ns}/tree", get(tree_stream))
        .route("/namespaces/{ns}/sessions", post(actions::start))
        .route(
            "/namespaces/{ns}/sessions/{name}",
            get(session_detail).delete(actions::delete),
        )
        .route(
            "/namespaces/{ns}/sessions/{name}/conversation",
            get(conversation_stream),
        )
        .route(
            "/namespaces/{ns}/sessions/{name}/resume",
            post(actions::resume),
        )
        .route("/namespaces/{ns}/sessions/{name}/stop", post(actions::stop))
        .fallback(|| async {
            ApiError {
                status: http::StatusCode::NOT_FOUND,
                message: "no such dashboard API".into(),
            }
        });
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(assets::index))
        .route("/ui/{file}", get(assets::file))
        .nest("/ui/api", api)
        .with_state(app)
}

async fn whoami(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let caller = app
        .auth
        .authenticate(&headers)
        .await
        .map_err(|r| ApiError {
            status: r.status(),
            message: r.to_string(),
        })?;
    let user = caller
        .person
        .as_ref()
        .map(|p| p.username.clone())
        .unwrap_or_else(|| "developer (--auth header)".into());
    Ok(Json(json!({ "user": user, "namespace": caller.namespace })))
}

async fn tree_stream(
    State(app): State<Arc<App>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    identity::caller(&app, &headers, &ns, READ).await?;
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let feed = feeds().of(&ns, || {
        let (stores, namespace) = (app.stores.clone(), ns.clone());
        (
            move || live::rows_of(&stores, &namespace),
            app.stores.changes_in(&ns),
        )
    });
    let (tx, response) = sse::response();
    tokio::spawn(live::stream(feed, last, tx));
    Ok(response)
}

async fn session_detail(
    State(app): State<Arc<App>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    identity::caller(&app, &headers, &ns, READ).await?;
    let sessions = app.stores.sessions_in(&ns);
    let jobs = app.stores.jobs_in(&ns);
    let own = sessions.iter().find(|s| s.name_any() == name);
    let own_jobs: Vec<String> = jobs
        .iter()
        .filter(|j| j.spec.session_name == name)
        .map(|j| j.name_any())
        .collect();
    if own.is_none() && own_jobs.is_empty() {
        return Err(ApiError {
            status: http::StatusCode::NOT_FOUND,
            message: format!("session '{name}' does not exist in namespace '{ns}'"),
        });
    }
    let mut objects = vec![name.clone()];
    objects.extend(own_jobs);
    let events = session::events(&app.client, &ns, objects).await;
    let sessions_ref: Vec<&crds::AgentSession> = sessions.iter().map(|s| s.as_ref()).collect();
    let jobs_ref: Vec<&crds::AgentJob> = jobs.iter().map(|j| j.as_ref()).collect();
    let detail = session::detail(
        own.map(|s| s.as_ref()),
        &name,
        &sessions_ref,
        &jobs_ref,
        events,
    );
    Ok(Json(detail).into_response())
}

async fn conversation_stream(
    State(app): State<Arc<App>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    identity::caller(&app, &headers, &ns, READ).await?;
    let (tx, response) = sse::response();
    tokio::spawn(conversation::follow(app, ns, name, tx));
    Ok(response)
}
