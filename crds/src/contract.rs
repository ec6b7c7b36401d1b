//! Conventions shared by the operator, the gateway and the agent runner: the environment of agent Pods, the
//! gateway token, and the bound on result text. One definition here keeps the three binaries in agreement.

/// Audience of the projected ServiceAccount token mounted in every agent Pod; the gateway accepts no other.
pub const GATEWAY_TOKEN_AUDIENCE: &str = "mcp-gateway.agentorchestrator.dev";
/// Where the agent Pod finds that token.
pub const TOKEN_DIR: &str = "/var/run/secrets/agentorchestrator.dev";
pub const TOKEN_FILE: &str = "/var/run/secrets/agentorchestrator.dev/token";
/// Where the agent Pod finds what does not fit its environment, as files: `prompt`, `system-prompt` and
/// `mcp-servers.json` (the blueprint's MCP servers, JSON of `AgentBlueprintSpec::mcp_servers`).
pub const FILES_DIR: &str = "/etc/agent";
/// The file names in FILES_DIR.
pub const PROMPT_FILE: &str = "prompt";
pub const SYSTEM_PROMPT_FILE: &str = "system-prompt";
pub const MCP_SERVERS_FILE: &str = "mcp-servers.json";
/// Default mount path of the session workspace.
pub const WORKSPACE_DIR: &str = "/workspace";
/// The agent container's termination message file (the Kubernetes default path).
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// Kubernetes keeps at most this many bytes of a termination message.
pub const MAX_TERMINATION_MESSAGE_BYTES: usize = 4096;
/// Name of the gateway among the agent's MCP servers: its tools reach the model as `mcp__agents__<tool>`.
pub const GATEWAY_MCP_SERVER: &str = "agents";

/// The result endpoint of the gateway whose MCP endpoint is `mcp_url`: `POST {base}/v1/namespaces/{ns}/agentjobs/
/// {job}/result`, where `base` is `mcp_url` without its final `/mcp`.
pub fn result_url(mcp_url: &str, namespace: &str, job: &str) -> String {
    let base = mcp_url.trim_end_matches('/');
    let base = base.strip_suffix("/mcp").unwrap_or(base);
    format!("{base}/v1/namespaces/{namespace}/agentjobs/{job}/result")
}

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
    /// Folder of the files in `FILES_DIR`'s layout.
    pub const FILES_DIR: &str = "AGENT_FILES_DIR";
    /// Mount path of the session workspace; the runner keeps the agent's home (its config and transcripts) there.
    pub const WORKSPACE: &str = "AGENT_WORKSPACE";
    /// The termination message file.
    pub const TERMINATION_LOG: &str = "AGENT_TERMINATION_LOG";
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
    fn result_url_sits_beside_the_mcp_endpoint() {
        for mcp in [
            "http://gw:9500/mcp",
            "http://gw:9500/mcp/",
            "http://gw:9500",
        ] {
            assert_eq!(
                result_url(mcp, "ns", "j1"),
                "http://gw:9500/v1/namespaces/ns/agentjobs/j1/result"
            );
        }
    }

    #[test]
    fn short_results_are_kept_whole() {
        assert_eq!(bound_result("done"), ("done".to_string(), false));
    }

    #[test]
    fn long_results_are_cut_on_a_char_boundary_and_marked() {
        // One ASCII byte, then 4-byte chars: the cut point falls inside a char.
        let long = format!("a{}", "😀".repeat(MAX_RESULT_BYTES));
        let allowed = MAX_RESULT_BYTES - TRUNCATION_MARKER.len();
        assert!(!long.is_char_boundary(allowed), "fixture must cut mid-char");
        let (kept, cut) = bound_result(&long);
        assert!(cut);
        let body = 1 + 4 * ((allowed - 1) / 4);
        assert!(body > allowed - 4 && body < allowed);
        assert_eq!(kept, format!("{}{TRUNCATION_MARKER}", &long[..body]));
        assert!(kept.len() <= MAX_RESULT_BYTES);
        assert!(kept.len() > MAX_RESULT_BYTES - 4);
    }
}
