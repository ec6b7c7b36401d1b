//! A scripted local stand-in for the Anthropic Messages API (test fixture): the real Claude Code CLI runs offline
//! against it through `ANTHROPIC_BASE_URL`. Every request is recorded; a script (a function of the request) decides
//! the reply: text, a `tool_use` turn, an API error, or any of these held back until the test opens a gate, billed
//! at chosen token counts, or streamed slowly. Replies are streamed as the API's server-sent events.
//!
//! Agents are told apart by path: a base URL of `http://ADDR/agents/NAME` makes Claude Code call
//! `/agents/NAME/v1/messages`, and the request records `NAME` as its agent (blueprints set
//! `ANTHROPIC_BASE_URL=http://ADDR/agents/$(AGENT_SESSION_NAME)`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

/// One request Claude Code made.
#[derive(Debug, Clone)]
pub struct Request {
    /// The agent's name from the path (`""` without one).
    pub agent: String,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Request {
    pub fn messages(&self) -> &[Value] {
        self.body["messages"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Texts of a message's content (a string or text blocks).
    fn texts(message: &Value) -> Vec<String> {
        match &message["content"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(blocks) => blocks
                .iter()
                .filter(|b| b["type"] == "text")
                .filter_map(|b| b["text"].as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Every user text of the conversation, in order (system reminders included).
    pub fn user_texts(&self) -> Vec<String> {
        self.messages()
            .iter()
            .filter(|m| m["role"] == "user")
            .flat_map(Self::texts)
            .collect()
    }

    /// The text of the conversation's last user message.
    pub fn last_user_text(&self) -> String {
        self.messages()
            .iter()
            .rev()
            .find(|m| m["role"] == "user")
            .map(|m| Self::texts(m).join("\n"))
            .unwrap_or_default()
    }

    /// Results of tool calls in the last user message, as (tool_use_id, text).
    pub fn tool_results(&self) -> Vec<(String, String)> {
        let Some(last) = self.messages().iter().rev().find(|m| m["role"] == "user") else {
            return Vec::new();
        };
        last["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["type"] == "tool_result")
            .map(|b| {
                let text = match &b["content"] {
                    Value::String(s) => s.clone(),
                    Value::Array(parts) => parts
                        .iter()
                        .filter_map(|p| p["text"].as_str())
                        .collect::<Vec<_>>()
                        .join("\n"),
                    other => other.to_string(),
                };
                (
                    b["tool_use_id"].as_str().unwrap_or_default().to_string(),
                    text,
                )
            })
            .collect()
    }

    /// Number of assistant turns so far in the conversation.
    pub fn assistant_turns(&self) -> usize {
        self.messages()
            .iter()
            .filter(|m| m["role"] == "assistant")
            .count()
    }

    /// Names of the tools offered to the model.
    pub fn tool_names(&self) -> Vec<String> {
        self.body["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str().map(String::from))
            .collect()
    }

    /// Whether the whole conversation (messages, not the system prompt) mentions `text`.
    pub fn mentions(&self, text: &str) -> bool {
        self.messages().iter().any(|m| m.to_string().contains(text))
    }

    /// The system prompt as text.
    pub fn system(&self) -> String {
        match &self.body["system"] {
            Value::String(s) => s.clone(),
            Value::Array(blocks) => blocks
                .iter()
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        }
    }
}

/// A gate a scripted reply waits behind until the test opens it.
#[derive(Clone, Debug)]
pub struct Gate(watch::Sender<bool>);

impl Default for Gate {
    fn default() -> Gate {
        Gate(watch::channel(false).0)
    }
}

impl Gate {
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    async fn passed(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }
}

/// What the model answers.
#[derive(Debug, Clone)]
pub enum Reply {
    Text(String),
    /// Optional text, then one tool call.
    Tool {
        text: Option<String>,
        name: String,
        input: Value,
    },
    /// An API error with this HTTP status (use 4xx: Claude Code retries 5xx).
    Error(u16, String),
    /// The reply, sent once the gate is open.
    After(Gate, Box<Reply>),
    /// The reply, with these token counts as its usage (otherwise 10 in, 10 out).
    Billed(Tokens, Box<Reply>),
    /// The reply, its events streamed this far apart (a model that takes its time).
    Slow(Duration, Box<Reply>),
}

/// The usage a reply reports. The input tokens come in the stream's first event, the output tokens in its last one
/// (as the API does): Claude Code prints a message's line before the last event, so its per-message usage has the
/// input and only the first output token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
}

impl Default for Tokens {
    fn default() -> Tokens {
        Tokens {
            input: 10,
            output: 10,
        }
    }
}

impl Reply {
    pub fn text(t: impl Into<String>) -> Reply {
        Reply::Text(t.into())
    }

    pub fn tool(name: impl Into<String>, input: Value) -> Reply {
        Reply::Tool {
            text: None,
            name: name.into(),
            input,
        }
    }

    pub fn billed(self, input: u64, output: u64) -> Reply {
        Reply::Billed(Tokens { input, output }, Box::new(self))
    }

    pub fn slow(self, pause: Duration) -> Reply {
        Reply::Slow(pause, Box::new(self))
    }
}

type Script = dyn Fn(&Request) -> Reply + Send + Sync;

struct Shared {
    script: Box<Script>,
    requests: Mutex<Vec<Request>>,
    arrived: Notify,
    counter: Mutex<u64>,
}

/// The running stand-in. Stops when dropped.
pub struct FakeAnthropic {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeAnthropic {
    /// Serves on a free loopback port with `script` deciding every reply.
    pub async fn start(
        script: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> FakeAnthropic {
        Self::start_on("127.0.0.1:0".parse().expect("an address"), script).await
    }

    pub async fn start_on(
        addr: SocketAddr,
        script: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> FakeAnthropic {
        let shared = Arc::new(Shared {
            script: Box::new(script),
            requests: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            counter: Mutex::new(0),
        });
        let app = Router::new()
            .route("/v1/messages", post(messages_default))
            .route("/agents/{agent}/v1/messages", post(messages))
            .route("/v1/messages/count_tokens", post(count_tokens))
            .route(
                "/agents/{agent}/v1/messages/count_tokens",
                post(count_tokens),
            )
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("bind the Anthropic stand-in on {addr}: {e}"));
        let addr = listener.local_addr().expect("local address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeAnthropic {
            addr,
            shared,
            server,
        }
    }

    /// The base URL for agent `name` (what `ANTHROPIC_BASE_URL` should be).
    pub fn base_url(&self, name: &str) -> String {
        format!("http://{}/agents/{name}", self.addr)
    }

    /// The base URL with the session's name left for the kubelet to fill in from the Pod's environment.
    pub fn base_url_per_session(&self) -> String {
        self.base_url("$(AGENT_SESSION_NAME)")
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().expect("lock").clone()
    }

    /// The requests of one agent.
    pub fn requests_of(&self, agent: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.agent == agent)
            .collect()
    }

    /// Waits until some request satisfies `pred`, and returns it.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Request) -> bool,
    ) -> Request {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.arrived.notified();
            if let Some(r) = self.requests().into_iter().find(|r| pred(r)) {
                return r;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let seen: Vec<String> = self
                    .requests()
                    .iter()
                    .map(|r| {
                        format!(
                            "{}: {:?}",
                            r.agent,
                            r.last_user_text().chars().take(200).collect::<String>()
                        )
                    })
                    .collect();
                panic!(
                    "no model request {what} within {timeout:?}; requests seen:\n{}",
                    seen.join("\n")
                );
            }
        }
    }
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn count_tokens() -> impl IntoResponse {
    axum::Json(json!({"input_tokens": 1}))
}

async fn messages_default(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    handle(shared, String::new(), headers, body).await
}

async fn messages(
    State(shared): State<Arc<Shared>>,
    Path(agent): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    handle(shared, agent, headers, body).await
}

async fn handle(shared: Arc<Shared>, agent: String, headers: HeaderMap, body: String) -> Response {
    let body: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => return error(400, &format!("invalid JSON: {e}")),
    };
    let request = Request {
        agent,
        headers,
        body,
    };
    let stream = request.body["stream"] == true;
    let model = request.body["model"]
        .as_str()
        .unwrap_or("claude-test")
        .to_string();
    let mut reply = (shared.script)(&request);
    shared.requests.lock().expect("lock").push(request);
    shared.arrived.notify_waiters();
    let id = {
        let mut c = shared.counter.lock().expect("lock");
        *c += 1;
        *c
    };
    let mut tokens = Tokens::default();
    let mut pause = None;
    let reply = loop {
        reply = match reply {
            Reply::After(gate, next) => {
                gate.passed().await;
                *next
            }
            Reply::Billed(t, next) => {
                tokens = t;
                *next
            }
            Reply::Slow(p, next) => {
                pause = Some(p);
                *next
            }
            other => break other,
        };
    };
    if let Reply::Error(code, message) = &reply {
        return error(*code, message);
    }
    let (content, stop) = blocks(&reply, id);
    if !stream {
        return axum::Json(json!({
            "id": format!("msg_{id}"), "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop, "stop_sequence": null,
            "usage": {"input_tokens": tokens.input, "output_tokens": tokens.output},
        }))
        .into_response();
    }
    let events = sse(&model, id, &content, stop, tokens);
    // Every event but the first waits `pause` (none without one).
    let body = Body::from_stream(
        futures::stream::iter(events.into_iter().enumerate())
            .then(move |(i, event)| async move {
                if let Some(pause) = pause.filter(|_| i > 0) {
                    tokio::time::sleep(pause).await;
                }
                Ok::<_, Infallible>(event)
            })
            .boxed(),
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(body)
        .expect("a response")
}

fn error(code: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    let kind = if code == 429 {
        "rate_limit_error"
    } else {
        "invalid_request_error"
    };
    (
        status,
        axum::Json(json!({"type": "error", "error": {"type": kind, "message": message}})),
    )
        .into_response()
}

/// The content blocks and stop reason of a reply.
fn blocks(reply: &Reply, id: u64) -> (Vec<Value>, &'static str) {
    match reply {
        Reply::Text(t) => (vec![json!({"type": "text", "text": t})], "end_turn"),
        Reply::Tool { text, name, input } => {
            let mut content = Vec::new();
            if let Some(t) = text {
                content.push(json!({"type": "text", "text": t}));
            }
            content.push(json!({"type": "tool_use", "id": format!("toolu_{id:06}"), "name": name, "input": input}));
            (content, "tool_use")
        }
        Reply::Error(..) | Reply::After(..) | Reply::Billed(..) | Reply::Slow(..) => {
            unreachable!("resolved before")
        }
    }
}

/// The server-sent events of one streamed message.
fn sse(model: &str, id: u64, content: &[Value], stop: &str, tokens: Tokens) -> Vec<String> {
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut out = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": format!("msg_{id}"), "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": tokens.input, "output_tokens": 1}}}),
    )];
    for (index, block) in content.iter().enumerate() {
        let (start, delta) = if block["type"] == "text" {
            (
                json!({"type": "text", "text": ""}),
                json!({"type": "text_delta", "text": block["text"]}),
            )
        } else {
            (
                json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
                json!({"type": "input_json_delta", "partial_json": block["input"].to_string()}),
            )
        };
        out.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        out.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        ));
        out.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    out.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
               "usage": {"output_tokens": tokens.output}}),
    ));
    out.push(event("message_stop", json!({"type": "message_stop"})));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_calls_stream_their_input_as_json_deltas() {
        let (content, stop) = blocks(
            &Reply::Tool {
                text: Some("starting".into()),
                name: "mcp__agents__start_agent_session".into(),
                input: json!({"session_name": "c1"}),
            },
            7,
        );
        assert_eq!(stop, "tool_use");
        let events = sse("m", 7, &content, stop, Tokens::default()).join("");
        assert!(
            events.contains(r#""partial_json":"{\"session_name\":\"c1\"}""#),
            "{events}"
        );
        assert!(events.contains(r#""id":"toolu_000007""#));
        assert!(events.contains(r#""stop_reason":"tool_use""#));
    }

    #[test]
    fn requests_expose_the_conversation() {
        let r = Request {
            agent: "a".into(),
            headers: HeaderMap::new(),
            body: json!({"messages": [
                {"role": "user", "content": [{"type": "text", "text": "<reminder>"}, {"type": "text", "text": "go"}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "x", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                               "content": [{"type": "text", "text": "started"}]}]},
            ]}),
        };
        assert_eq!(r.user_texts(), ["<reminder>", "go"]);
        assert_eq!(
            r.tool_results(),
            [("t1".to_string(), "started".to_string())]
        );
        assert_eq!(r.assistant_turns(), 1);
        assert!(r.mentions("started"));
    }
}
