//! People's own tokens at the gateway: a ServiceAccount token from the TokenRequest API with the API server's own
//! audience (what `kubectl create token NAME` gives), not bound to any Pod, used by the official MCP Python SDK and
//! the official TypeScript MCP SDK. The gateway (a real process, `--auth token`) and the operator (a real process,
//! whose agent Pods kwok runs and completes) work against the local control plane.
//!
//! alice holds a Role with the verbs the tools need: she starts root sessions in sync mode and gets their results;
//! her token with X-Agent-Session-Name, or with callback=true, is refused. bob holds no Role: each tool is refused
//! with the verb, resource and namespace he lacks, and nothing is created.

use std::process::Stdio;
use std::time::Duration;

use crds::{AgentJob, AgentSession};
use e2e::agents::{install_crds, self_finishing_blueprint};
use e2e::gateway::{Gateway, McpClient, McpOutcome, call, error_text, ok_text};
use e2e::operator::Operator;
use e2e::people::{grant_agent_user, person_token};
use e2e::{with_temp_ns, workspace_root};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

const GROUP: &str = "agentorchestrator.dev";
/// What kwok's completed agent Pods report as their result.
const ANSWER: &str = "the answer is 42";

/// One client session of the official TypeScript MCP SDK through `steps` (e2e/typescript/mcp_client.cjs; same
/// plan and output as the Python client).
async fn typescript(mcp: &McpClient, steps: Vec<Value>) -> McpOutcome {
    let env = workspace_root().join(".local/typescript");
    assert!(
        env.join("node_modules/@modelcontextprotocol/sdk").exists(),
        "no TypeScript MCP SDK in {}: run `make typescript-env`",
        env.display()
    );
    let plan = json!({"url": mcp.url, "headers": mcp.headers, "steps": steps});
    let mut child = tokio::process::Command::new("node")
        .arg(workspace_root().join("e2e/typescript/mcp_client.cjs"))
        .env("MCP_TS_ENV", &env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(plan.to_string().as_bytes())
        .await
        .expect("write plan");
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the TypeScript MCP client did not finish within 120 s")
        .expect("TypeScript MCP client output");
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the TypeScript MCP client printed no JSON ({e}); stdout: {}; stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    if parsed["ok"] == true {
        Ok(parsed["results"].as_array().cloned().unwrap_or_default())
    } else {
        Err(parsed["error"].as_str().unwrap_or_default().to_string())
    }
}

/// A person's calls: a sync start of `session` (returns the result), its result and the listing, then the
/// refused callback=true of a start and of a resume.
fn person_steps(session: &str) -> Vec<Value> {
    vec![
        call("list_agent_blueprints", json!({"response_format": "json"})),
        call(
            "start_agent_session",
            json!({"session_name": session, "prompt": "what is the answer?", "agent_blueprint_name": "quick"}),
        ),
        call("get_agent_session_result", json!({"session_name": session})),
        call("list_agent_sessions", json!({"response_format": "json"})),
        call(
            "start_agent_session",
            json!({"session_name": format!("{session}-cb"), "prompt": "call me", "async_mode": true,
                   "callback": true}),
        ),
        call(
            "resume_agent_session",
            json!({"session_name": session, "prompt": "again", "async_mode": true, "callback": true}),
        ),
    ]
}

fn assert_person_results(sdk: &str, session: &str, results: &[Value]) {
    let blueprints: Value = serde_json::from_str(&ok_text(&results[0])).expect("JSON");
    assert_eq!(
        blueprints["agent_blueprints"][0]["name"], "quick",
        "{sdk}: {blueprints}"
    );
    assert!(
        ok_text(&results[1]).contains(ANSWER),
        "{sdk}: the sync start returns the result: {}",
        results[1]
    );
    assert!(
        ok_text(&results[2]).contains(ANSWER),
        "{sdk}: {}",
        results[2]
    );
    let listed: Value = serde_json::from_str(&ok_text(&results[3])).expect("JSON");
    let row = listed["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .find(|s| s["session_name"] == session)
        .unwrap_or_else(|| panic!("{sdk}: {session} is not listed: {listed}"));
    assert_eq!(row["status"], "finished", "{sdk}: {row}");
    assert!(row["parent_session_name"].is_null(), "{sdk}: a root: {row}");
    for refused in &results[4..6] {
        let text = error_text(refused);
        assert!(
            text.contains("callback=true is refused")
                && text.contains("no session to deliver the result to"),
            "{sdk}: {text}"
        );
    }
}

/// Names of the sessions and jobs of the namespace, to show that refused calls created nothing.
async fn objects(client: &Client, ns: &str) -> (Vec<String>, Vec<String>) {
    let lp = ListParams::default();
    let sessions = Api::<AgentSession>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .expect("list sessions");
    let jobs = Api::<AgentJob>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .expect("list jobs");
    let mut s: Vec<String> = sessions.iter().map(|s| s.name_any()).collect();
    let mut j: Vec<String> = jobs.iter().map(|j| j.name_any()).collect();
    s.sort();
    j.sort();
    (s, j)
}

#[tokio::test]
async fn a_persons_token_starts_root_sessions_within_its_rbac_rights() {
    with_temp_ns("people", |client, ns| async move {
        install_crds(&client).await;
        let _operator = Operator::start(&ns).await;
        self_finishing_blueprint(&client, &ns, "quick", "200ms", ANSWER).await;
        // The default namespace of callers that name none is another one: alice's X-Agent-Namespace decides.
        let gw = Gateway::start(&["--namespace=default"]).await;
        let alice = person_token(&client, &ns, "alice").await;
        let bob = person_token(&client, &ns, "bob").await;
        grant_agent_user(&client, &ns, "alice").await;
        let as_alice = McpClient::new(gw.url())
            .bearer(&alice)
            .header("X-Agent-Namespace", &ns);

        // The official Python SDK and the official TypeScript SDK, one client session each.
        let results = as_alice.run(person_steps("py-root")).await.expect("Python client session");
        assert_person_results("Python", "py-root", &results);
        let results = typescript(&as_alice, person_steps("ts-root"))
            .await
            .expect("TypeScript client session");
        assert_person_results("TypeScript", "ts-root", &results);
        // Root sessions: no parent, in alice's namespace.
        let sessions: Api<AgentSession> = Api::namespaced(client.clone(), &ns);
        for name in ["py-root", "ts-root"] {
            let s = sessions.get(name).await.expect("the session exists");
            assert_eq!(s.spec.parent_session_name, None, "{name}");
        }

        // A person has no session of its own to name.
        let claimed = as_alice.clone().header("X-Agent-Session-Name", "py-root");
        let err = claimed
            .run(vec![call("list_agent_sessions", json!({}))])
            .await
            .expect_err("a person's X-Agent-Session-Name is refused");
        assert!(
            err.contains("X-Agent-Session-Name is for agent Pods"),
            "{err}"
        );
        let err = typescript(&claimed, vec![call("list_agent_sessions", json!({}))])
            .await
            .expect_err("a person's X-Agent-Session-Name is refused (TypeScript)");
        assert!(
            err.contains("X-Agent-Session-Name is for agent Pods"),
            "{err}"
        );

        // A token bound to a Pod is an agent's, never a person's: the agent Pod of py-root with a token for the API
        // server's audience (its ServiceAccount's, not the gateway's) is refused, not taken for a person's.
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let agent_pod = pods
            .list(&ListParams::default().labels(&format!("{}=py-root", crds::labels::SESSION)))
            .await
            .expect("list Pods")
            .items
            .into_iter()
            .next()
            .expect("the agent Pod of py-root");
        let pods_own = e2e::procnode::volumes::bound_token(&client, &agent_pod, None, Some(600))
            .await
            .expect("TokenRequest bound to the agent Pod");
        let err = McpClient::new(gw.url())
            .bearer(&pods_own)
            .header("X-Agent-Namespace", &ns)
            .run(vec![call("list_agent_sessions", json!({}))])
            .await
            .expect_err("a Pod-bound token with the API server's audience is refused");
        assert!(err.contains("a Pod's token is never a person's"), "{err}");

        // bob has no Role: every tool is refused with what he lacks, and nothing is created or deleted.
        let before = objects(&client, &ns).await;
        let refused: [(&str, Value, &str, &str); 8] = [
            ("list_agent_blueprints", json!({}), "list", "agentblueprints"),
            ("list_agent_sessions", json!({}), "get", "agentsessions"),
            ("get_agent_session_status", json!({"session_name": "py-root"}), "get", "agentsessions"),
            ("get_agent_session_result", json!({"session_name": "py-root"}), "get", "agentsessions"),
            (
                "start_agent_session",
                json!({"session_name": "bobs", "prompt": "hi", "agent_blueprint_name": "quick"}),
                "create",
                "agentjobs",
            ),
            ("resume_agent_session", json!({"session_name": "py-root", "prompt": "hi"}), "create", "agentjobs"),
            ("stop_agent_session", json!({"session_name": "py-root"}), "delete", "agentjobs"),
            ("delete_all_agent_sessions", json!({}), "delete", "agentjobs"),
        ];
        let steps = refused.iter().map(|(tool, args, _, _)| call(tool, args.clone())).collect();
        let results = McpClient::new(gw.url())
            .bearer(&bob)
            .header("X-Agent-Namespace", &ns)
            .run(steps)
            .await
            .expect("bob's client session");
        for ((tool, _, verb, resource), result) in refused.iter().zip(&results) {
            let text = error_text(result);
            let want = format!(
                "'system:serviceaccount:{ns}:bob' may not {verb} {resource}.{GROUP} in namespace '{ns}' (RBAC)"
            );
            assert!(text.contains(&want), "{tool}: {text}");
            assert!(text.contains(&format!("{tool} needs")), "{tool}: {text}");
        }
        // Without X-Agent-Namespace a person works in the gateway's --namespace (here: default), as the refusal
        // says; the TypeScript SDK sees the same refusal.
        let results = typescript(
            &McpClient::new(gw.url()).bearer(&bob),
            vec![call("list_agent_blueprints", json!({}))],
        )
        .await
        .expect("bob's TypeScript client session");
        let text = error_text(&results[0]);
        assert!(
            text.contains(&format!(
                "'system:serviceaccount:{ns}:bob' may not list agentblueprints.{GROUP} in namespace 'default'"
            )),
            "{text}"
        );
        assert_eq!(objects(&client, &ns).await, before, "a refused call changed the namespace");

        // Counted: people's requests by kind, refusals by tool and reason.
        let callers = gw.samples("mcp_gateway_callers_total").await;
        assert!(
            callers.get(r#"{by="person",header="absent"}"#).is_some_and(|n| *n > 0.0),
            "{callers:?}"
        );
        let refusals = gw.samples("mcp_gateway_tool_refusals_total").await;
        for (tool, ..) in &refused {
            // list_agent_blueprints was refused once more, in the default namespace.
            let want = if *tool == "list_agent_blueprints" { 2.0 } else { 1.0 };
            assert_eq!(
                refusals.get(&format!(r#"{{tool="{tool}",reason="rbac_denied"}}"#)),
                Some(&want),
                "{tool}: {refusals:?}"
            );
        }
        for tool in ["start_agent_session", "resume_agent_session"] {
            assert_eq!(
                refusals.get(&format!(r#"{{tool="{tool}",reason="person_callback"}}"#)),
                Some(&2.0),
                "{tool}: one per SDK: {refusals:?}"
            );
        }
        // Exactly the refusals above: the session header through Python (whose auto mode tries its handshake
        // twice) and TypeScript (once), and the Pod-bound token (Python, twice).
        let auth = gw.samples("mcp_gateway_auth_refusals_total").await;
        let want: std::collections::BTreeMap<String, f64> = [
            (r#"{reason="not_an_agent_pod"}"#.to_string(), 2.0),
            (r#"{reason="person_session_header"}"#.to_string(), 3.0),
        ]
        .into();
        assert_eq!(auth, want, "auth refusals by reason");
    })
    .await;
}
