//! Agents act only within their own tree: the gateway (a real process, `--auth token`) with the operator (a real
//! process, whose agent Pods kwok runs), driven by the official MCP Python SDK with the Pod-bound tokens of the
//! operator's own agent Pods.
//!
//! One namespace holds two trees (root a with child a1, root b with child b1), a session k started with kubectl and
//! an orchestrator n whose blueprint has `scope: Namespace`. A second gateway in `--auth header` mode checks that
//! development callers follow the same rule.

use std::collections::BTreeMap;
use std::time::Duration;

use crds::{AgentJob, AgentSession, SessionPhase};
use e2e::agents::{create, install_crds, job, succeed_pod, wait_pod, wait_session};
use e2e::gateway::{AUDIENCE, Gateway, McpClient, call, error_text, ok_text, pod_token};
use e2e::operator::Operator;
use e2e::{eventually, wait_for, with_temp_ns};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);
/// A name no session has.
const GHOST: &str = "ghost";

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The Start job of `session` (named `<session>-start`; its Pod has that name too).
fn start_job(session: &str, parent: Option<&str>, blueprint: Option<&str>) -> AgentJob {
    let mut spec =
        json!({"type": "Start", "sessionName": session, "prompt": format!("work on {session}")});
    if let Some(parent) = parent {
        spec["parentSessionName"] = json!(parent);
    }
    if let Some(blueprint) = blueprint {
        spec["blueprint"] = json!(blueprint);
    }
    job(&format!("{session}-start"), spec)
}

/// The MCP client of the agent in the Pod of `session`'s Start job, with that Pod's token.
async fn agent(client: &Client, gw: &Gateway, ns: &str, session: &str) -> McpClient {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = wait_pod(&pods, &format!("{session}-start")).await;
    let token = pod_token(client, &pod, AUDIENCE).await;
    McpClient::new(gw.url())
        .bearer(&token)
        .header("X-Agent-Session-Name", session)
}

/// What the cluster holds: each session with its current parent, and each job with whether it is being deleted.
async fn snapshot(
    client: &Client,
    ns: &str,
) -> (BTreeMap<String, Option<String>>, BTreeMap<String, bool>) {
    let sessions: Api<AgentSession> = Api::namespaced(client.clone(), ns);
    let jobs: Api<AgentJob> = Api::namespaced(client.clone(), ns);
    let sessions = sessions
        .list(&ListParams::default())
        .await
        .expect("list sessions")
        .items;
    let jobs = jobs
        .list(&ListParams::default())
        .await
        .expect("list jobs")
        .items;
    (
        sessions
            .iter()
            .map(|s| {
                (
                    s.name_any(),
                    s.status
                        .as_ref()
                        .and_then(|st| st.parent_session_name.clone()),
                )
            })
            .collect(),
        jobs.iter()
            .map(|j| (j.name_any(), j.metadata.deletion_timestamp.is_some()))
            .collect(),
    )
}

/// Session names of a list_agent_sessions answer (JSON).
fn listed(result: &Value) -> Vec<String> {
    let mut names: Vec<String> = parse(&ok_text(result))["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| {
            s["session_name"]
                .as_str()
                .expect("session_name")
                .to_string()
        })
        .collect();
    names.sort();
    names
}

/// The answer with the session name it is about replaced, to compare answers about two names.
fn anonymised(text: &str, name: &str) -> String {
    text.replace(&format!("'{name}'"), "'NAME'")
}

/// The calls that act on `target`: status, result, resume (async, with callback: an adoption), stop.
fn calls_on(target: &str) -> Vec<Value> {
    vec![
        call("get_agent_session_status", json!({"session_name": target})),
        call("get_agent_session_result", json!({"session_name": target})),
        call(
            "resume_agent_session",
            json!({"session_name": target, "prompt": "hijack", "async_mode": true, "callback": true}),
        ),
        call("stop_agent_session", json!({"session_name": target})),
    ]
}

/// Lists what `mcp` reaches, then runs `calls_on` for every target and checks that each is refused, with the
/// answer a missing name gets. Returns the names listed.
async fn list_and_assert_refused(mcp: &McpClient, who: &str, targets: &[&str]) -> Vec<String> {
    let mut steps = vec![call(
        "list_agent_sessions",
        json!({"response_format": "json"}),
    )];
    steps.extend(calls_on(GHOST));
    for target in targets {
        steps.extend(calls_on(target));
    }
    let results = mcp.run(steps).await.expect("client session");
    let reached = listed(&results[0]);
    let (ghost, rest) = results[1..].split_at(4);
    let status = parse(&ok_text(&ghost[0]));
    assert_eq!(status["status"], "not_existent", "{who}: {status}");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("outside your reach")),
        "{who}: {status}"
    );
    let ghost_errors: Vec<String> = ghost[1..]
        .iter()
        .map(|r| anonymised(&error_text(r), GHOST))
        .collect();
    for e in &ghost_errors {
        assert!(
            e.contains("does not exist or is outside your reach"),
            "{who}: {e}"
        );
    }
    for (target, answers) in targets.iter().zip(rest.chunks(4)) {
        assert_eq!(
            anonymised(&ok_text(&answers[0]), target),
            anonymised(&ok_text(&ghost[0]), GHOST),
            "{who}: status of {target} differs from that of a missing session"
        );
        for (answer, ghost_error) in answers[1..].iter().zip(&ghost_errors) {
            assert_eq!(
                &anonymised(&error_text(answer), target),
                ghost_error,
                "{who}: a call on {target} is answered differently from one on a missing session"
            );
        }
    }
    reached
}

/// The Events recorded on session `name` with the gateway's refusal reason.
async fn refusal_events(client: &Client, ns: &str, name: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("OutsideCallerReach")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .collect()
}

#[tokio::test]
async fn agents_reach_their_own_tree_and_a_namespace_scope_agent_adopts_another() {
    with_temp_ns("confine", |client, ns| async move {
        install_crds(&client).await;
        let _operator = Operator::start(&ns).await;
        let gw = Gateway::start(&[&format!("--namespace={ns}")]).await;
        e2e::gateway::create(
            &client,
            &ns,
            "AgentBlueprint",
            json!({"metadata": {"name": "orchestrator"}, "spec": {"scope": "Namespace"}}),
        )
        .await;
        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
        for j in [
            start_job("a", None, None),
            start_job("a1", Some("a"), None),
            start_job("b", None, None),
            start_job("b1", Some("b"), None),
            start_job("k", None, None),
            start_job("n", None, Some("orchestrator")),
        ] {
            create(&jobs, &j).await;
        }
        let sessions: Api<AgentSession> = Api::namespaced(client.clone(), &ns);
        for name in ["a", "a1", "b", "b1", "k", "n"] {
            wait_session(&sessions, name, SessionPhase::Running).await;
        }
        let a = agent(&client, &gw, &ns, "a").await;
        let a1 = agent(&client, &gw, &ns, "a1").await;
        let n = agent(&client, &gw, &ns, "n").await;

        // The gateway's caches are fed by watches: wait until it sees all six sessions.
        eventually("the gateway sees every session", TIMEOUT, || async {
            let r = n.run(vec![call("list_agent_sessions", json!({"response_format": "json"}))]).await.ok()?;
            (listed(&r[0]).len() == 6).then_some(())
        })
        .await;
        let before = snapshot(&client, &ns).await;

        // A and A1 list their own tree only, and every call on another tree, on k or on a missing name is
        // refused with one answer. A1 does not reach its parent either.
        assert_eq!(list_and_assert_refused(&a, "a", &["b", "b1", "k"]).await, ["a", "a1"]);
        assert_eq!(list_and_assert_refused(&a1, "a1", &["a", "b"]).await, ["a1"]);
        assert_eq!(snapshot(&client, &ns).await, before, "a refused call changed something");
        // Counted exactly, by tool and reason: each of the four calls once per target, the five targets of another
        // tree (b, b1, k; a, b) outside the caller's reach and the ghost, twice, unknown.
        let refusals = gw.samples("mcp_gateway_tool_refusals_total").await;
        let want: BTreeMap<String, f64> = ["get_agent_session_status", "get_agent_session_result", "resume_agent_session", "stop_agent_session"]
            .iter()
            .flat_map(|tool| {
                [("outside_reach", 5.0), ("unknown_session", 2.0)]
                    .map(|(reason, n)| (format!(r#"{{tool="{tool}",reason="{reason}"}}"#), n))
            })
            .collect();
        assert_eq!(refusals, want, "refusals by tool and reason");
        // The refused stop and resume are Events on the session they aimed at, naming the caller.
        let on_b = eventually("refusal Events on b", TIMEOUT, || async {
            let events = refusal_events(&client, &ns, "b").await;
            let actions: Vec<&str> = events.iter().map(|e| e.action.as_deref().unwrap_or_default()).collect();
            (actions.contains(&"Stop") && actions.contains(&"Resume")).then_some(events)
        })
        .await;
        let note = on_b[0].note.clone().unwrap_or_default();
        assert!(note.contains("by agent session 'a'"), "{note}");

        // A reads, resumes and stops its child, then deletes all it may: A1 (and its job) only.
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        succeed_pod(&pods, "a1-start", "a1 is done").await;
        wait_session(&sessions, "a1", SessionPhase::Idle).await;
        let results = a
            .run(vec![
                call("get_agent_session_status", json!({"session_name": "a1"})),
                call("get_agent_session_result", json!({"session_name": "a1"})),
                call("resume_agent_session", json!({"session_name": "a1", "prompt": "more", "async_mode": true})),
                call("stop_agent_session", json!({"session_name": "a1"})),
                call("delete_all_agent_sessions", json!({})),
            ])
            .await
            .expect("client session");
        assert_eq!(parse(&ok_text(&results[0]))["status"], "finished");
        assert_eq!(ok_text(&results[1]), "a1 is done");
        let resumed = parse(&ok_text(&results[2]))["job_name"].as_str().expect("job_name").to_string();
        assert_eq!(parse(&ok_text(&results[3]))["stopped_jobs"], json!([resumed]));
        // The stopped job is gone already, so it is not counted again.
        let deleted = ok_text(&results[4]);
        assert!(deleted.contains("Deleted 1 agent sessions and 1 agent jobs"), "{deleted}");
        wait_for(&jobs, &resumed, TIMEOUT, |j: Option<&AgentJob>| j.is_none()).await;
        wait_for(&sessions, "a1", TIMEOUT, |s: Option<&AgentSession>| s.is_none()).await;
        wait_for(&jobs, "a1-start", TIMEOUT, |j: Option<&AgentJob>| j.is_none()).await;
        let (mut kept_sessions, mut kept_jobs) = before.clone();
        kept_sessions.remove("a1");
        kept_jobs.remove("a1-start");
        assert_eq!(snapshot(&client, &ns).await, (kept_sessions, kept_jobs), "delete_all reached beyond a1");

        // The orchestrator (scope: Namespace) reaches b, and its resume with callback adopts it.
        let results = n
            .run(vec![
                call("list_agent_sessions", json!({"response_format": "json"})),
                call("resume_agent_session", json!({"session_name": "b", "prompt": "join me", "async_mode": true, "callback": true})),
            ])
            .await
            .expect("client session");
        let reached = listed(&results[0]);
        for name in ["a", "b", "b1", "k", "n"] {
            assert!(reached.contains(&name.to_string()), "n does not reach {name}: {reached:?}");
        }
        let adopting = parse(&ok_text(&results[1]))["job_name"].as_str().expect("job_name").to_string();
        let job = jobs.get(&adopting).await.expect("the Resume job");
        assert_eq!((job.spec.parent_session_name.as_deref(), job.spec.callback), (Some("n"), true));
        // b's Start ends, its Resume runs: the operator records the new parent.
        succeed_pod(&pods, "b-start", "b is done").await;
        wait_for(&sessions, "b", TIMEOUT, |s: Option<&AgentSession>| {
            s.and_then(|s| s.status.as_ref()?.parent_session_name.as_deref()) == Some("n")
        })
        .await;

        // --auth header (development): the session the header names is confined the same way (b now reaches b1
        // below it, not n above it, nor a); a client without the header has no session and reaches the namespace.
        let dev = Gateway::start(&[&format!("--namespace={ns}"), "--auth=header"]).await;
        let as_b = McpClient::new(dev.url()).header("X-Agent-Session-Name", "b");
        let results = as_b
            .run(vec![
                call("list_agent_sessions", json!({"response_format": "json"})),
                call("stop_agent_session", json!({"session_name": "a"})),
            ])
            .await
            .expect("client session");
        assert_eq!(listed(&results[0]), ["b", "b1"]);
        assert!(error_text(&results[1]).contains("outside your reach"), "{}", results[1]);
        let anonymous = McpClient::new(dev.url())
            .run(vec![call("list_agent_sessions", json!({"response_format": "json"}))])
            .await
            .expect("client session");
        assert_eq!(listed(&anonymous[0]), ["a", "b", "b1", "k", "n"]);
    })
    .await;
}
