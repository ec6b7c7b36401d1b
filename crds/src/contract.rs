//! Conventions shared by the operator, the gateway and the agent runner: the environment of agent Pods, the
//! gateway token, and the bound on result text. One definition here keeps the three binaries in agreement.

/// Audience of the projected ServiceAccount token mounted in every agent Pod; the gateway accepts no other.
pub const GATEWAY_TOKEN_AUDIENCE: &str = "mcp-gateway.agentorchestrator.dev";
/// Where the agent Pod finds that token.
pub const TOKEN_DIR: &str = "/var/run/secrets/agentorchestrator.dev";
pub const TOKEN_FILE: &str = "/var/run/secrets/agentorchestrator.dev/token";

/// Environment of the agent container.
pub mod env {
    pub const SESSION_NAME: &str = "AGENT_SESSION_NAME";
    pub const JOB_NAME: &str = "AGENT_JOB_NAME";
    pub const JOB_TYPE: &str = "AGENT_JOB_TYPE";
    pub const PARENT_SESSION_NAME: &str = "AGENT_PARENT_SESSION_NAME";
    pub const RESUME_ID: &str = "AGENT_RESUME_ID";
    pub const MCP_URL: &str = "AGENT_MCP_URL";
    pub const PROMPT: &str = "AGENT_PROMPT";
    pub const NAMESPACE: &str = "AGENT_NAMESPACE";
    pub const TOKEN_FILE: &str = "AGENT_TOKEN_FILE";
    pub const PROJECT_DIR: &str = "AGENT_PROJECT_DIR";
    pub const BLUEPRINT: &str = "AGENT_BLUEPRINT";
}

/// Results are kept in status up to this many bytes; longer ones are cut on a character boundary and marked.
pub const MAX_RESULT_BYTES: usize = 32 * 1024;
/// Appended to a cut result, so that neither a person nor an agent mistakes it for the whole.
pub const TRUNCATION_MARKER: &str = "\n\n[Result truncated: it exceeded the 32 KiB bound]";

/// Bounds `text` to MAX_RESULT_BYTES (marker included). Returns the kept text and whether it was cut.
pub fn bound_result(text: &str) -> (String, bool) {
    if text.len() <= MAX_RESULT_BYTES {
        return (text.to_string(), false);
    }
    let mut end = MAX_RESULT_BYTES - TRUNCATION_MARKER.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (format!("{}{TRUNCATION_MARKER}", &text[..end]), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_results_are_kept_whole() {
        assert_eq!(bound_result("done"), ("done".to_string(), false));
    }

    #[test]
    fn long_results_are_cut_on_a_char_boundary_and_marked() {
        let long = "é".repeat(MAX_RESULT_BYTES);
        let (kept, cut) = bound_result(&long);
        assert!(cut);
        assert!(kept.len() <= MAX_RESULT_BYTES);
        assert!(kept.ends_with(TRUNCATION_MARKER));
        assert!(kept.starts_with("éé"));
    }
}
