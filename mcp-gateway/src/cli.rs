//! Flags of the `mcp-gateway` binary, each also settable by environment variable.

use std::net::SocketAddr;

use clap::Parser;

use crate::auth::AuthMode;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "mcp-gateway",
    version,
    about = "MCP gateway through which agents start and steer their child sessions"
)]
pub struct Args {
    /// Address of the HTTP server: MCP at /mcp, plus /healthz, /readyz, /metrics and the result API.
    #[arg(long, env = "MCP_GATEWAY_LISTEN", default_value = "127.0.0.1:9500")]
    pub listen: SocketAddr,

    /// How callers are identified: `token` verifies each agent Pod's ServiceAccount token (TokenReview);
    /// `header` trusts X-Agent-Session-Name alone and is for local development only.
    #[arg(long, env = "MCP_GATEWAY_AUTH", value_enum, default_value = "token")]
    pub auth: AuthMode,

    /// Namespace of the work of callers whose identity names none: header mode, and people whose requests carry no
    /// X-Agent-Namespace. (An agent works in its Pod's namespace.)
    #[arg(long, env = "MCP_GATEWAY_NAMESPACE", default_value = "default")]
    pub namespace: String,

    /// Extra Host names (or host:port) accepted on /mcp, such as the in-cluster Service names
    /// (`mcp-gateway`, `mcp-gateway.agents.svc`). Loopback is always accepted. Repeatable or comma-separated.
    #[arg(
        long = "allowed-host",
        env = "MCP_GATEWAY_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,

    /// Serve the dashboard at /ui/ (same port and identity rules as /mcp); `--dashboard=false` turns it off.
    #[arg(long, env = "MCP_GATEWAY_DASHBOARD", default_value_t = true, action = clap::ArgAction::Set)]
    pub dashboard: bool,
    /// Levels of children allowed below a session whose blueprint sets no `limits.maxDepth` (unset: no limit).
    /// The operator has the same flag; set both alike (the Helm value `governance.defaultMaxDepth` does).
    #[arg(long, env = "MCP_GATEWAY_DEFAULT_MAX_DEPTH", value_parser = clap::value_parser!(i32).range(0..=100))]
    pub default_max_depth: Option<i32>,

    /// Children one session may start in its life when its blueprint sets no `limits.maxChildren` (unset: no limit).
    #[arg(long, env = "MCP_GATEWAY_DEFAULT_MAX_CHILDREN", value_parser = clap::value_parser!(i32).range(0..=100_000))]
    pub default_max_children: Option<i32>,

    /// Children of one session running at once when its blueprint sets no `limits.maxActiveChildren` (unset: no
    /// limit).
    #[arg(long, env = "MCP_GATEWAY_DEFAULT_MAX_ACTIVE_CHILDREN", value_parser = clap::value_parser!(i32).range(0..=100_000))]
    pub default_max_active_children: Option<i32>,

    /// Log format: `text` or `json`.
    #[arg(long, env = "MCP_GATEWAY_LOG_FORMAT", default_value = "text")]
    pub log_format: String,

    /// Write the Markdown reference of the MCP tools (docs/mcp-tools.md) to this file and exit; `make crds` runs
    /// it. Hidden: it is a build step, not a way to run the gateway.
    #[arg(long, hide = true, value_name = "FILE")]
    pub write_tool_reference: Option<std::path::PathBuf>,
}

impl Args {
    /// The namespace defaults of the tree limits.
    pub fn default_limits(&self) -> crds::limits::DefaultLimits {
        crds::limits::DefaultLimits {
            max_depth: self.default_max_depth,
            max_children: self.default_max_children,
            max_active_children: self.default_max_active_children,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_design() {
        let a = Args::parse_from(["mcp-gateway"]);
        assert_eq!(a.listen.to_string(), "127.0.0.1:9500");
        assert_eq!(a.auth, AuthMode::Token);
        assert_eq!(a.namespace, "default");
        assert!(a.allowed_hosts.is_empty());
        assert!(a.dashboard);
        assert!(!Args::parse_from(["mcp-gateway", "--dashboard=false"]).dashboard);
    }

    #[test]
    fn allowed_hosts_repeat() {
        let a = Args::parse_from([
            "mcp-gateway",
            "--auth=header",
            "--allowed-host",
            "mcp-gateway",
            "--allowed-host=mcp-gateway.agents.svc,gw:9500",
        ]);
        assert_eq!(a.auth, AuthMode::Header);
        assert_eq!(
            a.allowed_hosts,
            ["mcp-gateway", "mcp-gateway.agents.svc", "gw:9500"]
        );
    }
}
