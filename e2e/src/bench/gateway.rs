//! Gateway latency at 20 concurrent clients, each alternating `start_agent_session` (async) and
//! `get_agent_session_status`, authenticated like an agent Pod (its projected token and session header), against a
//! gateway process in token mode. Measured twice: with a lean Rust client (`mcp_load`: the gateway's own latency,
//! plus loopback), and with the official MCP Python SDK (`e2e/python/bench_gateway.py`: what a Python agent sees,
//! the client's own work included). And how soon a status call waiting on a session answers once its job ends.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::fresh_namespace;
use crate::gateway::{
    Gateway, McpClient, agent_pod, call, create, finish_job, install_crds, ok_text, pod_token,
};
use crate::{eventually, workspace_root};

/// Status waits measured.
pub const WAITS: usize = 3;
/// How long the waiting client is given to be waiting before the job ends (its Python start-up included).
const WAITING_HEAD_START: Duration = Duration::from_secs(3);

pub const CLIENTS: usize = 20;
pub const CALLS: usize = 25;

pub struct Figures {
    pub lean: super::mcp_load::Load,
    /// From a job's end to the answer of a `get_agent_session_status` call that waited on it.
    pub status_waits: Vec<Duration>,
    /// What bench_gateway.py printed: calls, errors, calls_per_second, and p50_ms/p99_ms per tool.
    pub report: Value,
    pub gateway_peak_rss_mib: f64,
}

pub async fn latency(client: &kube::Client) -> Figures {
    let ns = "bench-gateway";
    fresh_namespace(client, ns).await;
    install_crds(client).await;
    let gateway = Gateway::start(&[&format!("--namespace={ns}")]).await;
    let pod = agent_pod(
        client,
        ns,
        "orchestrator-pod",
        "orchestrator",
        Some("orchestrator-job"),
    )
    .await;
    let token = pod_token(client, &pod, crds::contract::GATEWAY_TOKEN_AUDIENCE).await;
    let lean = super::mcp_load::run(
        gateway.addr,
        vec![
            ("authorization".into(), format!("Bearer {token}")),
            ("x-agent-session-name".into(), "orchestrator".into()),
        ],
        CLIENTS,
        CALLS,
    )
    .await;
    let python = workspace_root().join(".local/venv/bin/python");
    assert!(
        python.exists(),
        "no {} (run `make python-env`)",
        python.display()
    );
    let out = tokio::process::Command::new(python)
        .arg(workspace_root().join("e2e/python/bench_gateway.py"))
        .arg(gateway.url())
        .args([
            "--clients",
            &CLIENTS.to_string(),
            "--calls",
            &CALLS.to_string(),
        ])
        .args(["--header", &format!("Authorization=Bearer {token}")])
        .args(["--header", "X-Agent-Session-Name=orchestrator"])
        .output()
        .await
        .expect("run bench_gateway.py");
    assert!(
        out.status.success(),
        "bench_gateway.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bench_gateway.py printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let gateway_peak_rss_mib = gateway.pid().map(super::peak_rss_mib).unwrap_or(f64::NAN);
    let mut status_waits = Vec::new();
    for i in 0..WAITS {
        status_waits.push(status_wait(client, &gateway, ns, &token, &format!("waited-{i}")).await);
    }
    Figures {
        lean,
        status_waits,
        report,
        gateway_peak_rss_mib,
    }
}

/// A session (a child of the benchmark's agent) is resumed, a client waits on its status, the job ends: the time
/// from the end to the answer.
async fn status_wait(
    client: &kube::Client,
    gateway: &Gateway,
    ns: &str,
    token: &str,
    session: &str,
) -> Duration {
    create(
        client,
        ns,
        "AgentSession",
        json!({"metadata": {"name": session}, "spec": {"parentSessionName": "orchestrator"}}),
    )
    .await;
    let mcp = McpClient::new(gateway.url())
        .bearer(token)
        .header("X-Agent-Session-Name", "orchestrator");
    let resume = json!({"session_name": session, "prompt": "x", "async_mode": true});
    let job = eventually(
        "the session cached by the gateway",
        Duration::from_secs(30),
        || async {
            let results = mcp
                .run(vec![call("resume_agent_session", resume.clone())])
                .await
                .ok()?;
            let text = results[0]["text"].as_str()?;
            let accepted: Value = serde_json::from_str(text).ok()?;
            Some(accepted["job_name"].as_str()?.to_string())
        },
    )
    .await;
    let waiter = {
        let (mcp, session) = (mcp.clone(), session.to_string());
        tokio::spawn(async move {
            let r = mcp
                .run(vec![call(
                    "get_agent_session_status",
                    json!({"session_name": session, "wait_seconds": 120}),
                )])
                .await
                .expect("the waiting client");
            (ok_text(&r[0]), Instant::now())
        })
    };
    // A benchmark, not a test: the waiter gets a head start, and an answer before the end is a failure below.
    tokio::time::sleep(WAITING_HEAD_START).await;
    assert!(
        !waiter.is_finished(),
        "the status call answered before the job ended"
    );
    let ended = Instant::now();
    finish_job(client, ns, &job, true).await;
    let (text, answered) = waiter.await.expect("the waiting client");
    assert!(text.contains("finished"), "status after the end: {text}");
    answered.duration_since(ended)
}
