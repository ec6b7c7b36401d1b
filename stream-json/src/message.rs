//! One line of Claude Code's stream-json output, typed. The reading is lenient: Claude Code adds fields between
//! releases, so only the fields read here matter and anything else on a line is ignored; a line that is not a JSON
//! object (the runner's own log lines share the Pod log) is not a message at all.

use serde_json::Value;

/// What one line says.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// `{"type":"system","subtype":"init"}`: the run starts; names the conversation, model and folder.
    Init {
        session_id: Option<String>,
        model: Option<String>,
        cwd: Option<String>,
    },
    /// A turn of the model: text, thinking and tool calls.
    Assistant {
        session_id: Option<String>,
        blocks: Vec<Block>,
        /// Claude Code marks an assistant message that stands for a failed model call (e.g. "invalid_request").
        error: Option<String>,
        /// The model message's id: Claude Code writes one line per content block, each repeating the message's id
        /// and usage, so usage is counted once per id.
        message_id: Option<String>,
        /// The tokens of this model call, as the API reported them.
        usage: Option<TokenUsage>,
        /// The model that answered (what prices the call's tokens while the run goes on).
        model: Option<String>,
    },
    /// What went back to the model: tool results (and, rarely, text).
    User {
        session_id: Option<String>,
        blocks: Vec<Block>,
    },
    /// The run's last line: its final text or its error.
    Result(ResultMessage),
    /// A JSON message of another type (other system subtypes, stream events): carried for its session id.
    Other {
        kind: String,
        session_id: Option<String>,
    },
}

/// A piece of an assistant or user message.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Text(String),
    Thinking(String),
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        /// The result's text; non-text parts (images) are named, not shown.
        content: String,
        is_error: bool,
    },
}

/// The `result` message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultMessage {
    pub session_id: Option<String>,
    /// `success`, `error_max_turns`, `error_during_execution`, ...
    pub subtype: Option<String>,
    pub is_error: bool,
    /// The final text; for an error result without one, its list of errors as JSON.
    pub text: String,
    pub num_turns: Option<i64>,
    pub total_cost_usd: Option<f64>,
    pub usage: Option<TokenUsage>,
    /// For an error result: the model API's refusal that ended the run, if that is what ended it.
    pub api_error: Option<crate::ApiError>,
}

/// Token counts of a result message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
}

impl Message {
    /// Reads one line; `None` for a line that is not a JSON object with a `type`.
    pub fn parse(line: &str) -> Option<Message> {
        let value: Value = serde_json::from_str(line.trim()).ok()?;
        Message::from_value(&value)
    }

    pub fn from_value(v: &Value) -> Option<Message> {
        let kind = v.get("type")?.as_str()?;
        let session_id = string(v, "/session_id");
        Some(match kind {
            "system" if v.get("subtype").and_then(Value::as_str) == Some("init") => Message::Init {
                session_id,
                model: string(v, "/model"),
                cwd: string(v, "/cwd"),
            },
            "assistant" => Message::Assistant {
                session_id,
                blocks: blocks(v),
                error: string(v, "/error"),
                message_id: string(v, "/message/id"),
                usage: v.pointer("/message/usage").and_then(token_usage),
                model: string(v, "/message/model"),
            },
            "user" => Message::User {
                session_id,
                blocks: blocks(v),
            },
            "result" => Message::Result(result(v, session_id)),
            other => Message::Other {
                kind: other.to_string(),
                session_id,
            },
        })
    }

    pub fn session_id(&self) -> Option<&str> {
        match self {
            Message::Init { session_id, .. }
            | Message::Assistant { session_id, .. }
            | Message::User { session_id, .. }
            | Message::Other { session_id, .. } => session_id.as_deref(),
            Message::Result(r) => r.session_id.as_deref(),
        }
    }
}

fn string(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer).and_then(Value::as_str).map(String::from)
}

/// The content of `message`: a list of blocks, or (user messages) a plain string.
fn blocks(v: &Value) -> Vec<Block> {
    match v.pointer("/message/content") {
        Some(Value::String(text)) => vec![Block::Text(text.clone())],
        Some(Value::Array(items)) => items.iter().filter_map(block).collect(),
        _ => Vec::new(),
    }
}

fn block(b: &Value) -> Option<Block> {
    let text_of = |key: &str| {
        b.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Some(match b.get("type")?.as_str()? {
        "text" => Block::Text(text_of("text")),
        "thinking" => Block::Thinking(text_of("thinking")),
        "tool_use" => Block::ToolUse {
            id: text_of("id"),
            name: text_of("name"),
            input: b.get("input").cloned().unwrap_or(Value::Null),
        },
        "tool_result" => Block::ToolResult {
            tool_use_id: text_of("tool_use_id"),
            content: tool_result_text(b.get("content")),
            is_error: b.get("is_error").and_then(Value::as_bool) == Some(true),
        },
        _ => return None,
    })
}

/// A tool result's content is a string or a list of parts; the text parts are joined by newlines.
fn tool_result_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => p
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                Some(other) => format!("[{other}]"),
                None => p.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The Anthropic API's `usage` object (on a result, or on one model message).
fn token_usage(u: &Value) -> Option<TokenUsage> {
    let count = |key: &str| u.get(key).and_then(Value::as_i64).unwrap_or(0);
    u.is_object().then(|| TokenUsage {
        input_tokens: count("input_tokens"),
        output_tokens: count("output_tokens"),
        cache_read_tokens: count("cache_read_input_tokens"),
        cache_write_tokens: count("cache_creation_input_tokens"),
    })
}

fn result(v: &Value, session_id: Option<String>) -> ResultMessage {
    let subtype = string(v, "/subtype");
    let text = string(v, "/result")
        // Error results may carry a list of errors instead of a text.
        .or_else(|| v.get("errors").map(Value::to_string))
        .unwrap_or_default();
    let is_error = v.get("is_error").and_then(Value::as_bool) == Some(true)
        || subtype.as_deref().is_some_and(|s| s.starts_with("error"));
    let usage = v.get("usage").and_then(token_usage);
    let api_error = if is_error {
        crate::ApiError::of_result(v, &text)
    } else {
        None
    };
    ResultMessage {
        api_error,
        session_id,
        subtype,
        is_error,
        text,
        num_turns: v.get("num_turns").and_then(Value::as_i64),
        total_cost_usd: v.get("total_cost_usd").and_then(Value::as_f64),
        usage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_that_are_not_messages_are_none() {
        for line in [
            "",
            "not json",
            "[1,2]",
            r#"{"no":"type"}"#,
            "2026-01-01T00:00:00Z INFO running the agent",
        ] {
            assert_eq!(Message::parse(line), None, "{line}");
        }
    }

    #[test]
    fn an_assistant_turn_has_its_text_and_tool_calls() {
        let line = r#"{"type":"assistant","message":{"content":[{"type":"text","text":"Starting."},{"type":"tool_use","id":"t1","name":"mcp__agents__start_agent_session","input":{"session_name":"a"}}]},"session_id":"s"}"#;
        assert_eq!(
            Message::parse(line),
            Some(Message::Assistant {
                session_id: Some("s".into()),
                blocks: vec![
                    Block::Text("Starting.".into()),
                    Block::ToolUse {
                        id: "t1".into(),
                        name: "mcp__agents__start_agent_session".into(),
                        input: json!({"session_name": "a"})
                    },
                ],
                error: None,
                message_id: None,
                usage: None,
                model: None,
            })
        );
        let with_usage = r#"{"type":"assistant","message":{"id":"msg_1","model":"claude-sonnet-4-5","content":[],"usage":{"input_tokens":7,"output_tokens":3,"cache_read_input_tokens":2,"cache_creation_input_tokens":1}}}"#;
        let Some(Message::Assistant {
            message_id,
            usage,
            model,
            ..
        }) = Message::parse(with_usage)
        else {
            panic!("an assistant message")
        };
        assert_eq!(message_id.as_deref(), Some("msg_1"));
        assert_eq!(model.as_deref(), Some("claude-sonnet-4-5"));
        assert_eq!(
            usage,
            Some(TokenUsage {
                input_tokens: 7,
                output_tokens: 3,
                cache_read_tokens: 2,
                cache_write_tokens: 1
            })
        );
    }

    #[test]
    fn tool_results_come_as_text_or_parts() {
        let parts = r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"one"},{"type":"image"},{"type":"text","text":"two"}],"is_error":true}]}}"#;
        let Some(Message::User { blocks, .. }) = Message::parse(parts) else {
            panic!("a user message")
        };
        assert_eq!(
            blocks,
            vec![Block::ToolResult {
                tool_use_id: "t1".into(),
                content: "one\n[image]\ntwo".into(),
                is_error: true
            }]
        );
        let plain = r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t2","content":"ok"}]}}"#;
        let Some(Message::User { blocks, .. }) = Message::parse(plain) else {
            panic!("a user message")
        };
        assert_eq!(
            blocks,
            vec![Block::ToolResult {
                tool_use_id: "t2".into(),
                content: "ok".into(),
                is_error: false
            }]
        );
    }

    #[test]
    fn a_result_carries_text_error_cost_and_usage() {
        let ok = r#"{"type":"result","subtype":"success","is_error":false,"result":"done","num_turns":3,"total_cost_usd":0.0125,"usage":{"input_tokens":10,"output_tokens":20,"cache_read_input_tokens":30,"cache_creation_input_tokens":40},"session_id":"s"}"#;
        assert_eq!(
            Message::parse(ok),
            Some(Message::Result(ResultMessage {
                session_id: Some("s".into()),
                subtype: Some("success".into()),
                is_error: false,
                text: "done".into(),
                num_turns: Some(3),
                total_cost_usd: Some(0.0125),
                usage: Some(TokenUsage {
                    input_tokens: 10,
                    output_tokens: 20,
                    cache_read_tokens: 30,
                    cache_write_tokens: 40
                }),
                api_error: None,
            }))
        );
        // An error subtype is an error even without is_error; its errors stand in for the missing text.
        let Some(Message::Result(r)) = Message::parse(
            r#"{"type":"result","subtype":"error_during_execution","errors":["boom"]}"#,
        ) else {
            panic!("a result")
        };
        assert!(r.is_error);
        assert_eq!(r.text, r#"["boom"]"#);
    }
}
