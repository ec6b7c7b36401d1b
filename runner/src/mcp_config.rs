//! The agent's MCP configuration (Claude Code's `--mcp-config` format): the blueprint's servers with `${VAR}`
//! references filled in, and the gateway, reached with the Pod's token and the session's own name.

use std::collections::{BTreeMap, BTreeSet};

use crds::contract::GATEWAY_MCP_SERVER;
use crds::{McpServer, McpTransport};
use serde_json::{Map, Value, json};

/// How the agent reaches the gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct Gateway {
    pub url: String,
    pub session: String,
    /// The projected ServiceAccount token; `None` when the Pod has none (the gateway then refuses in token mode).
    pub token: Option<String>,
}

/// The configuration, and the `${VAR}` names that had no value (left as written, for the agent CLI to expand or
/// report).
#[derive(Debug, Clone, PartialEq)]
pub struct McpConfig {
    pub json: Value,
    pub unresolved: BTreeSet<String>,
    /// The server names, for the agent CLI's tool permissions.
    pub servers: Vec<String>,
}

/// Replaces every `${NAME}` in `text` whose `var(NAME)` is known; unknown ones stay and are collected.
pub fn expand(
    text: &str,
    var: &impl Fn(&str) -> Option<String>,
    unresolved: &mut BTreeSet<String>,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) if is_name(&after[..end]) => {
                let name = &after[..end];
                match var(name) {
                    Some(value) => out.push_str(&value),
                    None => {
                        unresolved.insert(name.to_string());
                        out.push_str(&rest[start..start + 3 + end]);
                    }
                }
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// Builds the configuration. A blueprint server whose URL is the gateway's (or that is named like ours) gets the
/// caller headers; otherwise the gateway is added under `GATEWAY_MCP_SERVER`. The gateway's tools are always loaded
/// (`alwaysLoad`): Claude Code otherwise defers MCP tools behind its tool search, and the orchestration tools are
/// what an orchestrator agent is for.
pub fn build(
    servers: &BTreeMap<String, McpServer>,
    gateway: Option<&Gateway>,
    var: impl Fn(&str) -> Option<String>,
) -> McpConfig {
    let mut unresolved = BTreeSet::new();
    let mut out = Map::new();
    let mut gateway_seen = false;
    for (name, server) in servers {
        let entry = match server.transport {
            McpTransport::Http => {
                let url = expand(
                    server.url.as_deref().unwrap_or_default(),
                    &var,
                    &mut unresolved,
                );
                let mut headers: Map<String, Value> = server
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(expand(v, &var, &mut unresolved))))
                    .collect();
                let mut entry = json!({"type": "http", "url": url});
                if let Some(gw) = gateway
                    && (same_endpoint(&url, &gw.url) || name == GATEWAY_MCP_SERVER)
                {
                    gateway_seen = true;
                    caller_headers(&mut headers, gw);
                    entry["alwaysLoad"] = true.into();
                }
                entry["headers"] = headers.into();
                entry
            }
            McpTransport::Stdio => {
                let env: Map<String, Value> = server
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(expand(v, &var, &mut unresolved))))
                    .collect();
                json!({
                    "type": "stdio",
                    "command": server.command.clone().unwrap_or_default(),
                    "args": server.args,
                    "env": env,
                })
            }
        };
        out.insert(name.clone(), entry);
    }
    if let Some(gw) = gateway
        && !gateway_seen
    {
        let mut headers = Map::new();
        caller_headers(&mut headers, gw);
        out.insert(
            GATEWAY_MCP_SERVER.into(),
            json!({"type": "http", "url": gw.url, "alwaysLoad": true, "headers": headers}),
        );
    }
    McpConfig {
        servers: out.keys().cloned().collect(),
        json: json!({ "mcpServers": out }),
        unresolved,
    }
}

/// The caller's identity: its session (the claim) and its Pod's token (the proof).
fn caller_headers(headers: &mut Map<String, Value>, gw: &Gateway) {
    headers.insert("X-Agent-Session-Name".into(), gw.session.clone().into());
    if let Some(token) = &gw.token {
        headers.insert("Authorization".into(), format!("Bearer {token}").into());
    }
}

fn same_endpoint(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "AGENT_SESSION_NAME" => Some("child-1".into()),
            "TEAM" => Some("blue".into()),
            _ => None,
        }
    }

    fn servers(yaml: &str) -> BTreeMap<String, McpServer> {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn gateway(token: Option<&str>) -> Gateway {
        Gateway {
            url: "http://gw:9500/mcp".into(),
            session: "child-1".into(),
            token: token.map(String::from),
        }
    }

    #[test]
    fn expands_known_variables_and_keeps_the_rest() {
        let mut unresolved = BTreeSet::new();
        let text = expand(
            "s=${AGENT_SESSION_NAME} t=${TEAM} u=${UNSET} $HOME ${not a var} ${",
            &vars,
            &mut unresolved,
        );
        assert_eq!(text, "s=child-1 t=blue u=${UNSET} $HOME ${not a var} ${");
        assert_eq!(unresolved, BTreeSet::from(["UNSET".to_string()]));
    }

    #[test]
    fn blueprint_servers_are_expanded_and_the_gateway_added() {
        let config = build(
            &servers(
                r#"
docs: {type: http, url: "http://docs/${TEAM}", headers: {X-Agent-Session-Name: "${AGENT_SESSION_NAME}", X-Key: "${MISSING}"}}
fs: {type: stdio, command: mcp-fs, args: ["--root", "/w"], env: {OWNER: "${AGENT_SESSION_NAME}"}}
"#,
            ),
            Some(&gateway(Some("tok"))),
            vars,
        );
        let servers = &config.json["mcpServers"];
        assert_eq!(servers["docs"]["url"], "http://docs/blue");
        assert_eq!(
            servers["docs"]["headers"]["X-Agent-Session-Name"],
            "child-1"
        );
        assert_eq!(servers["docs"]["headers"]["X-Key"], "${MISSING}");
        assert!(
            servers["docs"]["headers"].get("Authorization").is_none(),
            "no token for other servers"
        );
        assert_eq!(servers["fs"]["env"]["OWNER"], "child-1");
        assert_eq!(servers["fs"]["args"], json!(["--root", "/w"]));
        assert_eq!(
            servers["agents"],
            json!({"type": "http", "url": "http://gw:9500/mcp", "alwaysLoad": true,
                   "headers": {"X-Agent-Session-Name": "child-1", "Authorization": "Bearer tok"}})
        );
        assert_eq!(config.servers, ["agents", "docs", "fs"]);
        assert_eq!(config.unresolved, BTreeSet::from(["MISSING".to_string()]));
    }

    #[test]
    fn a_blueprint_entry_for_the_gateway_gets_the_token_instead_of_a_second_entry() {
        let config = build(
            &servers(
                r#"
orchestrator: {type: http, url: "http://gw:9500/mcp/", headers: {X-Agent-Session-Name: "${AGENT_SESSION_NAME}", X-Extra: "1"}}
"#,
            ),
            Some(&gateway(Some("tok"))),
            vars,
        );
        let servers = config.json["mcpServers"].as_object().unwrap();
        assert_eq!(servers.len(), 1);
        let headers = &servers["orchestrator"]["headers"];
        assert_eq!(headers["Authorization"], "Bearer tok");
        assert_eq!(headers["X-Agent-Session-Name"], "child-1");
        assert_eq!(headers["X-Extra"], "1");
        assert_eq!(servers["orchestrator"]["alwaysLoad"], true);
    }

    #[test]
    fn without_a_gateway_only_the_blueprint_servers() {
        let config = build(&BTreeMap::new(), None, vars);
        assert_eq!(config.json, json!({"mcpServers": {}}));
        let config = build(&BTreeMap::new(), Some(&gateway(None)), vars);
        assert_eq!(
            config.json["mcpServers"]["agents"]["headers"],
            json!({"X-Agent-Session-Name": "child-1"})
        );
    }
}
