//! The script of the Anthropic stand-in behind `make run`: a tiny, deterministic "model" that shows a two-level
//! tree without an API key. It decides from the conversation alone (the stand-in runs as one process for every
//! agent):
//!
//! - a prompt with lines `- child "NAME": TASK` makes an orchestrator: it starts each child through the gateway's
//!   `start_agent_session` tool (async, with callback; blueprint from a `blueprint "NAME"` mention), then ends its
//!   turn; when the callbacks arrive it summarises what the children reported;
//! - any other prompt makes a worker, which answers at once.

use serde_json::json;

use crate::anthropic::{Reply, Request};

pub const START_TOOL: &str = "mcp__agents__start_agent_session";

/// A child the orchestrator prompt asks for: (session name, task).
fn children(prompt: &str) -> Vec<(String, String)> {
    prompt
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("- child \"")?;
            let (name, task) = rest.split_once("\":")?;
            Some((name.trim().to_string(), task.trim().to_string()))
        })
        .collect()
}

fn quoted_after(text: &str, word: &str) -> Option<String> {
    let rest = &text[text.find(&format!("{word} \""))? + word.len() + 2..];
    Some(rest[..rest.find('"')?].to_string())
}

/// The user's own prompt: the first user text that is not a system reminder.
fn first_prompt(r: &Request) -> String {
    r.user_texts()
        .into_iter()
        .find(|t| !t.trim_start().starts_with("<system-reminder>"))
        .unwrap_or_default()
}

pub fn reply(r: &Request) -> Reply {
    let last = r.last_user_text();
    if last.contains("child agent session") && last.contains("completed") {
        let lines: Vec<String> = last
            .lines()
            .filter(|l| {
                !l.trim().is_empty()
                    && !l.starts_with('#')
                    && !l.contains("completed")
                    && !l.contains("Please continue")
            })
            .map(|l| format!("> {l}"))
            .collect();
        return Reply::text(format!(
            "(local stand-in model) My children reported back:\n\n{}\n\nThe orchestration is complete.",
            lines.join("\n")
        ));
    }
    let prompt = first_prompt(r);
    let wanted = children(&prompt);
    if wanted.is_empty() || !r.tool_names().iter().any(|t| t == START_TOOL) {
        let task = prompt
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .trim_end_matches('.');
        return Reply::text(format!(
            "(local stand-in model) Done: {task}. A real model would do the work here; set ANTHROPIC_API_KEY before \
             `make run` to use one."
        ));
    }
    let started = r.assistant_turns();
    match wanted.get(started) {
        Some((name, task)) => {
            let mut input =
                json!({"session_name": name, "prompt": task, "async_mode": true, "callback": true});
            if let Some(blueprint) = quoted_after(&prompt, "blueprint") {
                input["agent_blueprint_name"] = blueprint.into();
            }
            Reply::Tool {
                text: Some(format!("Starting child session {name}.")),
                name: START_TOOL.into(),
                input,
            }
        }
        None => Reply::text(format!(
            "(local stand-in model) I started {} child sessions; I continue when they report back.",
            wanted.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use serde_json::Value;

    fn request(messages: Value) -> Request {
        Request {
            agent: String::new(),
            headers: HeaderMap::new(),
            body: json!({"messages": messages, "tools": [{"name": START_TOOL}, {"name": "Bash"}]}),
        }
    }

    const PROMPT: &str = "Split the work (blueprint \"local-claude\"):\n- child \"haiku\": write a haiku\n- child \"limerick\": write a limerick";

    #[test]
    fn an_orchestrator_starts_each_child_then_waits() {
        let first = request(json!([{"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>x</system-reminder>"}, {"type": "text", "text": PROMPT}]}]));
        match reply(&first) {
            Reply::Tool { name, input, .. } => {
                assert_eq!(name, START_TOOL);
                assert_eq!(input["session_name"], "haiku");
                assert_eq!(input["agent_blueprint_name"], "local-claude");
                assert_eq!(input["callback"], true);
            }
            other => panic!("{other:?}"),
        }
        let turn = |n: usize| {
            let mut messages = vec![json!({"role": "user", "content": PROMPT})];
            for i in 0..n {
                messages.push(json!({"role": "assistant", "content": [{"type": "tool_use", "id": format!("t{i}"), "name": START_TOOL, "input": {}}]}));
                messages.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": format!("t{i}"), "content": "ok"}]}));
            }
            request(Value::Array(messages))
        };
        assert!(
            matches!(reply(&turn(1)), Reply::Tool { input, .. } if input["session_name"] == "limerick")
        );
        assert!(
            matches!(reply(&turn(2)), Reply::Text(t) if t.contains("started 2 child sessions"))
        );
    }

    #[test]
    fn workers_answer_and_callbacks_are_summarised() {
        let worker = request(json!([{"role": "user", "content": "write a haiku"}]));
        assert!(matches!(reply(&worker), Reply::Text(t) if t.contains("Done: write a haiku")));
        let callback = request(json!([
            {"role": "user", "content": PROMPT},
            {"role": "assistant", "content": "started"},
            {"role": "user", "content": "The child agent session \"haiku\" has completed.\n\n## Child Result\n\nfive seven five\n\nPlease continue with the orchestration based on this result."}
        ]));
        assert!(matches!(reply(&callback), Reply::Text(t) if t.contains("> five seven five")));
    }
}
