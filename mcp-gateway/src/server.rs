//! The HTTP surface: MCP at /mcp (stateless streamable HTTP, behind caller verification), the result API for
//! runners, and /healthz, /readyz, /metrics.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::ops::App;
use crate::result_api;
use crate::tools::Gateway;

/// Hosts every instance answers to; the Service names come from --allowed-host.
const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The router, and a function that ends in-flight MCP requests (sync waits included) at shutdown.
pub fn router(app: Arc<App>, allowed_hosts: &[String]) -> (Router, impl FnOnce() + Send + 'static) {
    // Stateless and JSON: no per-replica session, so any replica can answer any request of a client.
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_allowed_hosts(
            LOOPBACK
                .iter()
                .map(|h| h.to_string())
                .chain(allowed_hosts.iter().cloned()),
        );
    let cancel = config.cancellation_token.clone();
    let gateway = Gateway::new(app.clone());
    let mcp = StreamableHttpService::new(
        move || Ok(gateway.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    let mcp = Router::new()
        .nest_service("/mcp", mcp)
        .layer(middleware::from_fn_with_state(app.clone(), verify_caller));

    let router = Router::new()
        .route(
            "/v1/namespaces/{ns}/agentjobs/{name}/result",
            post(result_api::report_result)
                .layer(DefaultBodyLimit::max(result_api::MAX_REPORT_BYTES)),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(app)
        .merge(mcp);
    (router, move || cancel.cancel())
}

/// Authenticates every MCP request once and hands the caller to the tools through the request extensions. A
/// refused request gets an HTTP error whose JSON-RPC body carries the reason, which MCP clients show as is.
async fn verify_caller(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    match app.auth.authenticate(req.headers()).await {
        Ok(caller) => {
            app.metrics.caller(caller.identified_by(), caller.claimed);
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(refusal) => {
            app.metrics.refused(refusal.reason());
            tracing::info!(reason = refusal.reason(), %refusal, "MCP request refused");
            let body = serde_json::json!({
                "jsonrpc": "2.0",
                "id": null,
                "error": {"code": -32001, "message": format!("Refused by mcp-gateway: {refusal}")},
            });
            let mut response = (refusal.status(), axum::Json(body)).into_response();
            if refusal.status() == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer realm=\"mcp-gateway\""),
                );
            }
            response
        }
    }
}

async fn readyz(State(app): State<Arc<App>>) -> (StatusCode, &'static str) {
    if app.stores.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches are not synced yet")
    }
}

async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
}
