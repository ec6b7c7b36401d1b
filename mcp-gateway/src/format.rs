//! How tool answers read: markdown for people and LLMs, JSON for programs, and a hard cap on length so that one
//! large result cannot flood the caller's context.

use crds::{AgentBlueprint, AgentSession};
use kube::ResourceExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::domain::SessionState;

/// Longest tool answer, in characters (as in the original system).
pub const MAX_RESPONSE_CHARS: usize = 25_000;
pub const TRUNCATION_MARKER: &str = "\n\n[Response truncated due to length]";

/// Cuts `text` after MAX_RESPONSE_CHARS characters and appends the marker, so a cut answer is never mistaken for
/// a whole one.
pub fn truncate_response(text: String) -> String {
    match text.char_indices().nth(MAX_RESPONSE_CHARS) {
        None => text,
        Some((cut, _)) => format!("{}{TRUNCATION_MARKER}", &text[..cut]),
    }
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ResponseFormat {
    #[default]
    Markdown,
    Json,
}

pub fn blueprints(list: &[&AgentBlueprint], format: ResponseFormat) -> String {
    match format {
        ResponseFormat::Json => {
            let items: Vec<Value> = list
                .iter()
                .map(|b| {
                    json!({
                        "name": b.name_any(),
                        "description": b.spec.description.clone().unwrap_or_default(),
                        "tags": b.spec.tags,
                        "mcp_servers": b.spec.mcp_servers.keys().collect::<Vec<_>>(),
                    })
                })
                .collect();
            pretty(&json!({ "total": items.len(), "agent_blueprints": items }))
        }
        ResponseFormat::Markdown if list.is_empty() => {
            "No agent blueprints are available. Start a session without agent_blueprint_name to use the default \
             agent."
                .into()
        }
        ResponseFormat::Markdown => {
            let mut out = format!("# Agent Blueprints ({})\n", list.len());
            for b in list {
                out.push_str(&format!("\n## {}\n", b.name_any()));
                if let Some(d) = b.spec.description.as_deref().filter(|d| !d.is_empty()) {
                    out.push_str(&format!("{d}\n"));
                }
                if !b.spec.tags.is_empty() {
                    out.push_str(&format!("- Tags: {}\n", b.spec.tags.join(", ")));
                }
                if !b.spec.mcp_servers.is_empty() {
                    let names: Vec<_> = b.spec.mcp_servers.keys().map(String::as_str).collect();
                    out.push_str(&format!("- MCP servers: {}\n", names.join(", ")));
                }
            }
            out
        }
    }
}

/// One line of list_agent_sessions.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionRow {
    pub name: String,
    pub state: SessionState,
    /// The operator's phase, or Pending while only its Start job exists.
    pub phase: String,
    pub blueprint: Option<String>,
    pub parent: Option<String>,
    pub created: Option<String>,
    pub jobs: i64,
}

impl SessionRow {
    pub fn from_session(s: &AgentSession, state: SessionState) -> Self {
        let status = s.status.clone().unwrap_or_default();
        SessionRow {
            name: s.name_any(),
            state,
            phase: status.phase.map_or("Pending", |p| p.as_str()).to_string(),
            blueprint: s.spec.blueprint.clone(),
            parent: status
                .parent_session_name
                .or_else(|| s.spec.parent_session_name.clone()),
            created: s
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string()),
            jobs: status.job_count,
        }
    }
}

pub fn sessions(rows: &[SessionRow], format: ResponseFormat) -> String {
    match format {
        ResponseFormat::Json => {
            let items: Vec<Value> = rows
                .iter()
                .map(|r| {
                    json!({
                        "session_name": r.name,
                        "status": r.state.as_str(),
                        "phase": r.phase,
                        "agent_blueprint_name": r.blueprint,
                        "parent_session_name": r.parent,
                        "created_at": r.created,
                        "job_count": r.jobs,
                    })
                })
                .collect();
            pretty(&json!({ "total": items.len(), "sessions": items }))
        }
        ResponseFormat::Markdown if rows.is_empty() => "No agent sessions found.".into(),
        ResponseFormat::Markdown => {
            let mut out = format!("# Agent Sessions ({})\n", rows.len());
            for r in rows {
                out.push_str(&format!(
                    "\n## {}\n- Status: {} ({})\n",
                    r.name,
                    r.state.as_str(),
                    r.phase
                ));
                if let Some(b) = &r.blueprint {
                    out.push_str(&format!("- Blueprint: {b}\n"));
                }
                if let Some(p) = &r.parent {
                    out.push_str(&format!("- Parent: {p}\n"));
                }
                if let Some(c) = &r.created {
                    out.push_str(&format!("- Created: {c}\n"));
                }
            }
            out
        }
    }
}

/// The answer of an async start/resume: enough to poll or to wait for the callback.
pub fn job_accepted(session: &str, job: &str, callback: bool) -> String {
    let message = if callback {
        "The agent session runs in the background; its result will be delivered to you as a new prompt when it \
         finishes."
    } else {
        "The agent session runs in the background. Use get_agent_session_status (with wait_seconds) until it is \
         finished, then get_agent_session_result."
    };
    pretty(&json!({
        "session_name": session,
        "job_name": job,
        "status": "running",
        "callback": callback,
        "message": message,
    }))
}

pub fn status(state: SessionState) -> String {
    pretty(&json!({ "status": state.as_str() }))
}

/// A status answer with a word for the caller (why a session is not_existent for it).
pub fn status_with_message(state: SessionState, message: &str) -> String {
    pretty(&json!({ "status": state.as_str(), "message": message }))
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("JSON values serialise")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures;

    #[test]
    fn short_answers_are_untouched() {
        let s = "x".repeat(MAX_RESPONSE_CHARS);
        assert_eq!(truncate_response(s.clone()), s);
    }

    #[test]
    fn long_answers_are_cut_at_25000_chars_and_marked() {
        let s = "é".repeat(MAX_RESPONSE_CHARS + 10);
        let out = truncate_response(s);
        assert!(out.ends_with("[Response truncated due to length]"));
        assert_eq!(
            out.chars().count(),
            MAX_RESPONSE_CHARS + TRUNCATION_MARKER.chars().count()
        );
    }

    #[test]
    fn blueprints_render_as_markdown_and_json() {
        let a = fixtures::blueprint("coder", &["py"], false);
        let md = blueprints(&[&a], ResponseFormat::Markdown);
        assert!(
            md.contains("## coder") && md.contains("coder agent") && md.contains("Tags: py"),
            "{md}"
        );
        let js: Value = serde_json::from_str(&blueprints(&[&a], ResponseFormat::Json)).unwrap();
        assert_eq!(js["total"], 1);
        assert_eq!(js["agent_blueprints"][0]["name"], "coder");
        assert_eq!(js["agent_blueprints"][0]["tags"][0], "py");
        assert!(blueprints(&[], ResponseFormat::Markdown).starts_with("No agent blueprints"));
    }

    #[test]
    fn sessions_render_with_their_status() {
        let s = fixtures::session("worker", Some("worker-1"), None);
        let row = SessionRow::from_session(&s, SessionState::Running);
        let js: Value =
            serde_json::from_str(&sessions(std::slice::from_ref(&row), ResponseFormat::Json))
                .unwrap();
        assert_eq!(js["sessions"][0]["session_name"], "worker");
        assert_eq!(js["sessions"][0]["status"], "running");
        assert_eq!(js["sessions"][0]["phase"], "Pending");
        let md = sessions(&[row], ResponseFormat::Markdown);
        assert!(
            md.contains("## worker") && md.contains("Status: running"),
            "{md}"
        );
    }

    #[test]
    fn accepted_and_status_answers_are_json() {
        let v: Value = serde_json::from_str(&job_accepted("s", "s-1", true)).unwrap();
        assert_eq!(
            (v["session_name"].as_str(), v["job_name"].as_str()),
            (Some("s"), Some("s-1"))
        );
        assert_eq!(v["callback"], true);
        let v: Value = serde_json::from_str(&status(SessionState::NotExistent)).unwrap();
        assert_eq!(v["status"], "not_existent");
        let v: Value =
            serde_json::from_str(&status_with_message(SessionState::NotExistent, "why")).unwrap();
        assert_eq!(
            (v["status"].as_str(), v["message"].as_str()),
            (Some("not_existent"), Some("why"))
        );
    }
}
