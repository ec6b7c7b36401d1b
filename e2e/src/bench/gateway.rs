//! Gateway latency at 20 concurrent clients, each alternating `start_agent_session` (async) and
//! `get_agent_session_status`, authenticated like an agent Pod (its projected token and session header), against a
//! gateway process in token mode. Measured twice: with a lean Rust client (`mcp_load`: the gateway's own latency,
//! plus loopback), and with the official MCP Python SDK (`e2e/python/bench_gateway.py`: what a Python agent sees,
//! the client's own work included).

use serde_json::Value;

use super::fresh_namespace;
use crate::gateway::{Gateway, agent_pod, install_crds, pod_token};
use crate::workspace_root;

pub const CLIENTS: usize = 20;
pub const CALLS: usize = 25;

pub struct Figures {
    pub lean: super::mcp_load::Load,
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
    Figures {
        lean,
        report,
        gateway_peak_rss_mib,
    }
}
