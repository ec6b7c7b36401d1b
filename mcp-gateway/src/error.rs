//! The one error type of the tools. Every failure reaches the agent as a tool error whose text starts with
//! `Error:` and names what was wrong, so an LLM caller can correct itself instead of retrying blindly.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ToolError {
    /// The arguments are wrong; nothing was sent to the API server.
    #[error("Error: {0}")]
    Invalid(String),
    /// Something the call refers to does not exist.
    #[error("Error: {0}")]
    NotFound(String),
    /// The call conflicts with the current state (a session that already exists, one still running, ...).
    #[error("Error: {0}")]
    Conflict(String),
    /// A wait reached its deadline.
    #[error("Error: {0}")]
    Timeout(String),
    /// A job ended in failure; the text carries its reason and error.
    #[error("Error: {0}")]
    Failed(String),
    /// The session named is not the caller's to act on (see reach.rs); the text is the same whether it exists.
    #[error("Error: {0}")]
    Refused(String),
    /// The API server refused or failed a request.
    #[error("Error: {what}: {}", kube_message(.source))]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
}

impl ToolError {
    pub fn kube(what: impl Into<String>, source: kube::Error) -> Self {
        ToolError::Kube {
            what: what.into(),
            source,
        }
    }

    /// A short label for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ToolError::Invalid(_) => "invalid",
            ToolError::NotFound(_) => "not_found",
            ToolError::Conflict(_) => "conflict",
            ToolError::Timeout(_) => "timeout",
            ToolError::Failed(_) => "failed",
            ToolError::Refused(_) => "refused",
            ToolError::Kube { .. } => "kube",
        }
    }
}

/// The API server's own message is the readable part of a kube error (admission and CEL messages included).
pub fn kube_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_starts_with_error() {
        for e in [
            ToolError::Invalid("x".into()),
            ToolError::NotFound("x".into()),
            ToolError::Conflict("x".into()),
            ToolError::Timeout("x".into()),
            ToolError::Failed("x".into()),
            ToolError::Refused("x".into()),
        ] {
            assert!(e.to_string().starts_with("Error: "), "{e}");
        }
    }
}
