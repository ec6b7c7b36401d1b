//! A session's conversation for the session page: its jobs in run order, each with its prompt (a callback delivery's
//! prompt is the callback message) and the agent's stream-json from the job Pod's log, read through the API server
//! and turned into structured events by `agent_stream` (the reading `kubectl agents logs` uses), so the browser only
//! lays them out. A running job is followed live, and the session's next jobs after it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use agent_stream::{Block, Message};
use crds::AgentJob;
use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use kube::{Api, ResourceExt};
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use super::sse;
use crate::domain;
use crate::ops::App;

/// The agent's container in a job's Pod (the operator's name for it).
const AGENT_CONTAINER: &str = "agent";
/// How often the follower looks again when nothing changed (a Pod log that could not be opened yet).
const RECHECK: Duration = Duration::from_secs(2);

/// One thing the conversation shows.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Item {
    /// A job begins: its type, phase and prompt.
    #[serde(rename_all = "camelCase")]
    Job {
        name: String,
        job_type: String,
        phase: String,
        prompt: String,
    },
    #[serde(rename_all = "camelCase")]
    Init {
        model: Option<String>,
        cwd: Option<String>,
    },
    Text {
        text: String,
    },
    Thinking {
        text: String,
    },
    #[serde(rename_all = "camelCase")]
    ToolCall {
        id: String,
        name: String,
        input: Value,
    },
    #[serde(rename_all = "camelCase")]
    ToolResult {
        id: String,
        content: String,
        is_error: bool,
    },
    Error {
        text: String,
    },
    #[serde(rename_all = "camelCase")]
    Result {
        text: String,
        is_error: bool,
        turns: Option<i64>,
        cost_usd: Option<f64>,
    },
    /// A line of the runner's own (not stream-json), or a note about the log.
    Log {
        text: String,
    },
}

/// What one line of a job Pod's log shows.
pub fn items(line: &str) -> Vec<Item> {
    let Some(message) = Message::parse(line) else {
        let text = line.trim_end();
        return if text.is_empty() {
            vec![]
        } else {
            vec![Item::Log { text: text.into() }]
        };
    };
    match message {
        Message::Init { model, cwd, .. } => vec![Item::Init { model, cwd }],
        Message::Assistant { blocks, error, .. } => {
            let mut out: Vec<Item> = blocks.into_iter().map(block).collect();
            if let Some(e) = error {
                out.push(Item::Error {
                    text: format!("model call failed: {e}"),
                });
            }
            out
        }
        Message::User { blocks, .. } => blocks.into_iter().map(block).collect(),
        Message::Result(r) => vec![Item::Result {
            text: r.text,
            is_error: r.is_error,
            turns: r.num_turns,
            cost_usd: r.total_cost_usd,
        }],
        Message::Other { .. } => vec![],
    }
}

fn block(b: Block) -> Item {
    match b {
        Block::Text(text) => Item::Text { text },
        Block::Thinking(text) => Item::Thinking { text },
        Block::ToolUse { id, name, input } => Item::ToolCall { id, name, input },
        Block::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => Item::ToolResult {
            id: tool_use_id,
            content,
            is_error,
        },
    }
}

fn job_item(job: &AgentJob) -> Item {
    Item::Job {
        name: job.name_any(),
        job_type: job.spec.job_type.as_str().into(),
        phase: job
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .map(|p| format!("{p:?}"))
            .unwrap_or_else(|| "Pending".into()),
        prompt: job.spec.prompt.clone(),
    }
}

async fn send(tx: &mut sse::Sender, item: &Item) -> bool {
    let data = serde_json::to_string(item).expect("items serialise");
    sse::send(tx, sse::frame(None, "item", &data)).await
}

/// Streams the conversation of `session` until the browser goes away: every job's log in run order, following the
/// running one.
pub async fn follow(app: Arc<App>, ns: String, session: String, mut tx: sse::Sender) {
    let pods: Api<Pod> = Api::namespaced(app.client.clone(), &ns);
    let mut done: HashSet<String> = HashSet::new();
    loop {
        let jobs = app.stores.jobs_of(&ns, &session);
        let next = domain::in_run_order(jobs.iter().map(|j| j.as_ref()).collect())
            .into_iter()
            .find(|j| !done.contains(&j.name_any()))
            .cloned();
        let Some(job) = next else {
            // Nothing new: wait for the next job (or for the browser to leave, seen at the heartbeat).
            if !sse::send(&mut tx, sse::HEARTBEAT_FRAME.into()).await {
                return;
            }
            let known = jobs.len();
            app.stores
                .wait_until(&ns, Instant::now() + sse::HEARTBEAT, || {
                    (app.stores.jobs_of(&ns, &session).len() != known).then_some(())
                })
                .await;
            continue;
        };
        let Some(pod) = job.status.as_ref().and_then(|s| s.pod_name.clone()) else {
            if domain::job_ended(&job) {
                done.insert(job.name_any());
                if !send(&mut tx, &job_item(&job)).await {
                    return;
                }
                continue;
            }
            // Not running yet: wait for its Pod.
            let name = job.name_any();
            app.stores
                .wait_until(&ns, Instant::now() + RECHECK, || {
                    app.stores
                        .job(&ns, &name)
                        .and_then(|j| j.status.clone()?.pod_name)
                        .map(|_| ())
                })
                .await;
            if app.stores.job(&ns, &name).is_none() {
                done.insert(name);
            }
            continue;
        };
        if !send(&mut tx, &job_item(&job)).await {
            return;
        }
        let ended = domain::job_ended(&job);
        let params = LogParams {
            container: Some(AGENT_CONTAINER.into()),
            follow: !ended,
            ..Default::default()
        };
        match pods.log_stream(&pod, &params).await {
            Ok(stream) => {
                let mut lines = stream.lines();
                loop {
                    match lines.try_next().await {
                        Ok(Some(line)) => {
                            for item in items(&line) {
                                if !send(&mut tx, &item).await {
                                    return;
                                }
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            let text = format!("reading the log of Pod {pod} failed: {e}");
                            if !send(&mut tx, &Item::Log { text }).await {
                                return;
                            }
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                let text = match &e {
                    kube::Error::Api(s) if s.code == 404 => format!("(no log: Pod {pod} is gone)"),
                    other => format!(
                        "(no log of Pod {pod}: {})",
                        crate::error::kube_message(other)
                    ),
                };
                if !ended {
                    // Container not started yet: try this job again shortly.
                    tokio::time::sleep(RECHECK).await;
                    continue;
                }
                if !send(&mut tx, &Item::Log { text }).await {
                    return;
                }
            }
        }
        // The log ends with the container; the job's phase follows a moment later.
        let name = job.name_any();
        app.stores
            .wait_until(&ns, Instant::now() + Duration::from_secs(30), || {
                app.stores
                    .job(&ns, &name)
                    .is_none_or(|j| domain::job_ended(&j))
                    .then_some(())
            })
            .await;
        done.insert(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stream_json_lines_become_messages_tool_calls_results_and_errors() {
        let call = json!({"type":"assistant","session_id":"s","message":{"content":[
            {"type":"text","text":"Starting two children."},
            {"type":"tool_use","id":"t1","name":"mcp__orchestrator__start_agent_session",
             "input":{"session_name":"haiku-writer","callback":true}}]}});
        assert_eq!(
            items(&call.to_string()),
            vec![
                Item::Text {
                    text: "Starting two children.".into()
                },
                Item::ToolCall {
                    id: "t1".into(),
                    name: "mcp__orchestrator__start_agent_session".into(),
                    input: json!({"session_name":"haiku-writer","callback":true}),
                },
            ]
        );
        let result = json!({"type":"user","message":{"content":[
            {"type":"tool_result","tool_use_id":"t1","content":"accepted","is_error":false}]}});
        assert_eq!(
            items(&result.to_string()),
            vec![Item::ToolResult {
                id: "t1".into(),
                content: "accepted".into(),
                is_error: false
            }]
        );
        let failed = json!({"type":"result","subtype":"error_during_execution","is_error":true,
            "result":"API Error: 400","num_turns":2});
        assert!(matches!(
            &items(&failed.to_string())[..],
            [Item::Result {
                is_error: true,
                turns: Some(2),
                ..
            }]
        ));
        assert_eq!(
            items("runner: starting claude"),
            vec![Item::Log {
                text: "runner: starting claude".into()
            }]
        );
        assert!(items("   ").is_empty());
    }

    #[test]
    fn items_serialise_with_their_kind() {
        let v = serde_json::to_value(Item::ToolResult {
            id: "t".into(),
            content: "c".into(),
            is_error: true,
        })
        .unwrap();
        assert_eq!(
            v,
            json!({"kind":"toolResult","id":"t","content":"c","isError":true})
        );
    }
}
