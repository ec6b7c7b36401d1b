//! Who calls the dashboard's API, with the gateway's own rules (auth.rs): a person's bearer token (pasted in the
//! browser, or set by an auth proxy in front) reviewed by TokenReview, every call authorized by SubjectAccessReview
//! for that identity in the namespace of the URL (access.rs), with the rights of the MCP tool that does the same.
//! Agent Pods have MCP; the dashboard is for people.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::auth::{Caller, NAMESPACE_HEADER};
use crate::error::ToolError;
use crate::ops::App;

/// A refused or failed dashboard call: an HTTP status and the message the page shows.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // No WWW-Authenticate challenge: the browser would show its own login box instead of the page's.
            response.headers_mut().insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            );
        }
        response
    }
}

impl From<ToolError> for ApiError {
    fn from(e: ToolError) -> Self {
        let status = match &e {
            ToolError::Invalid(_) => StatusCode::BAD_REQUEST,
            ToolError::NotFound(_) => StatusCode::NOT_FOUND,
            ToolError::Conflict(_) | ToolError::Failed(_) => StatusCode::CONFLICT,
            ToolError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ToolError::Refused(_) => StatusCode::FORBIDDEN,
            ToolError::Kube {
                source: kube::Error::Api(s),
                ..
            } => StatusCode::from_u16(s.code).unwrap_or(StatusCode::BAD_GATEWAY),
            ToolError::Kube { .. } => StatusCode::BAD_GATEWAY,
        };
        let message = e.to_string();
        ApiError {
            status,
            message: message
                .strip_prefix("Error: ")
                .unwrap_or(&message)
                .to_string(),
        }
    }
}

/// The caller of a dashboard request about namespace `ns`, authorized for what `tool` needs there.
pub async fn caller(
    app: &App,
    headers: &HeaderMap,
    ns: &str,
    tool: &str,
) -> Result<Caller, ApiError> {
    let mut headers = headers.clone();
    let value = HeaderValue::from_str(ns).map_err(|_| ApiError {
        status: StatusCode::BAD_REQUEST,
        message: format!("'{ns}' is not a namespace name"),
    })?;
    headers.insert(NAMESPACE_HEADER, value);
    let caller = app
        .auth
        .authenticate(&headers)
        .await
        .map_err(|refusal| ApiError {
            status: refusal.status(),
            message: refusal.to_string(),
        })?;
    if caller.session.is_some() {
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            message: "the dashboard is for people: an agent's token (or X-Agent-Session-Name) is not accepted here"
                .into(),
        });
    }
    if !app.stores.is_ready() {
        return Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "the gateway is starting and has not loaded the sessions yet; retry in a few seconds".into(),
        });
    }
    app.authorize(&caller, tool).await?;
    Ok(caller)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_error_becomes_the_status_and_message_the_page_shows() {
        let refused: ApiError = ToolError::Refused("'bob' may not create agentjobs".into()).into();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(refused.message, "'bob' may not create agentjobs");
        let missing: ApiError = ToolError::NotFound("session 'x' does not exist".into()).into();
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        let busy: ApiError = ToolError::Conflict("already exists".into()).into();
        assert_eq!(busy.status, StatusCode::CONFLICT);
        let bad: ApiError = ToolError::Invalid("prompt is empty".into()).into();
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    }
}
