//! The MCP gateway as a real process against the local control plane, driven by the official MCP Python SDK.
//!
//! These tests need no operator. Where a test needs a job to end, it plays the operator's part itself (see
//! `e2e::gateway::finish_job`: job status written with server-side apply on the status subresource) and creates
//! AgentSessions directly, as a user may. Operator-backed variants live with the operator's tests.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use e2e::gateway::{
    AUDIENCE, Gateway, McpClient, RoundRobinProxy, agent_pod, api, call, create, error_text,
    finish_job, http, install_crds, job_names, list_tools, ok_text, plain_pod, pod_token,
    wait_for_job_of, wait_for_object,
};
use e2e::with_temp_ns;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, DynamicObject};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);
/// The refusal of a token that is not valid (not "could not be verified right now", which a transient failure of
/// the TokenReview gets and which would also contain "Refused").
const INVALID_TOKEN: &str = "Refused by mcp-gateway: the bearer token was not accepted";

const TOOLS: [&str; 8] = [
    "delete_all_agent_sessions",
    "get_agent_session_result",
    "get_agent_session_status",
    "list_agent_blueprints",
    "list_agent_sessions",
    "resume_agent_session",
    "start_agent_session",
    "stop_agent_session",
];

/// An agent Pod of `session` and a token bound to it with the gateway's audience.
async fn agent(client: &Client, ns: &str, session: &str) -> String {
    let pod = agent_pod(
        client,
        ns,
        &format!("{session}-pod"),
        session,
        Some(&format!("{session}-job")),
    )
    .await;
    pod_token(client, &pod, AUDIENCE).await
}

async fn gateway(client: &Client, ns: &str, extra: &[&str]) -> Gateway {
    install_crds(client).await;
    let namespace = format!("--namespace={ns}");
    let mut args = vec![namespace.as_str()];
    args.extend_from_slice(extra);
    Gateway::start(&args).await
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test]
async fn tools_are_listed_with_their_schemas_and_blueprints_filtered_by_tags() {
    with_temp_ns("gw-tools", |client, ns| async move {
        let gw = gateway(&client, &ns, &[]).await;
        let token = agent(&client, &ns, "lead").await;
        for (name, tags, disabled) in [
            ("coder", vec!["py", "review"], false),
            ("writer", vec!["docs"], false),
            ("old", vec!["py"], true),
        ] {
            create(&client, &ns, "AgentBlueprint", json!({
                "metadata": {"name": name},
                "spec": {"description": format!("the {name}"), "tags": tags, "disabled": disabled}
            }))
            .await;
        }
        // The blueprint cache is fed by a watch: wait until this replica sees all three.
        let mcp = McpClient::new(gw.url()).bearer(&token);
        e2e::eventually("blueprints cached", TIMEOUT, || async {
            let r = mcp
                .run(vec![call(
                    "list_agent_blueprints",
                    json!({"response_format": "json"}),
                )])
                .await
                .ok()?;
            (parse(&ok_text(&r[0]))["total"] == 2).then_some(())
        })
        .await;

        let results = mcp
            .clone()
            .header("X-Agent-Tags", "py")
            .run(vec![
                list_tools(),
                call("list_agent_blueprints", json!({"response_format": "json"})),
                call("list_agent_blueprints", json!({})),
            ])
            .await
            .expect("client session");
        let tools = results[0]["tools"].as_array().expect("tools");
        let names: BTreeSet<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, BTreeSet::from(TOOLS));
        let schema =
            |name: &str| tools.iter().find(|t| t["name"] == name).unwrap()["input_schema"].clone();
        let start = schema("start_agent_session");
        let required: BTreeSet<&str> = start["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            required,
            BTreeSet::from(["prompt", "session_name"]),
            "{start}"
        );
        for p in [
            "agent_blueprint_name",
            "project_dir",
            "async_mode",
            "callback",
        ] {
            assert!(
                start["properties"][p].is_object(),
                "start_agent_session lacks {p}: {start}"
            );
        }
        assert_eq!(start["properties"]["async_mode"]["default"], false);
        let status = schema("get_agent_session_status");
        assert_eq!(
            status["properties"]["wait_seconds"]["maximum"], 300,
            "{status}"
        );
        assert!(schema("resume_agent_session")["properties"]["callback"].is_object());
        assert!(schema("list_agent_sessions")["properties"]["response_format"].is_object());

        // X-Agent-Tags: py keeps only enabled blueprints tagged py.
        let listed = parse(&ok_text(&results[1]));
        assert_eq!(listed["total"], 1, "{listed}");
        assert_eq!(listed["agent_blueprints"][0]["name"], "coder");
        let markdown = ok_text(&results[2]);
        assert!(
            markdown.contains("## coder")
                && !markdown.contains("writer")
                && !markdown.contains("## old"),
            "{markdown}"
        );
    })
    .await;
}

#[tokio::test]
async fn async_start_with_callback_records_the_verified_caller_as_parent() {
    with_temp_ns("gw-start", |client, ns| async move {
        let gw = gateway(&client, &ns, &[]).await;
        let token = agent(&client, &ns, "lead").await;
        let results = McpClient::new(gw.url())
            .bearer(&token)
            .header("X-Agent-Session-Name", "lead")
            .run(vec![
                call("start_agent_session", json!({
                    "session_name": "child", "prompt": "write the tests", "async_mode": true, "callback": true
                })),
                call("get_agent_session_status", json!({"session_name": "child"})),
                call("start_agent_session", json!({"session_name": "child", "prompt": "again", "async_mode": true})),
            ])
            .await
            .expect("client session");
        let accepted = parse(&ok_text(&results[0]));
        assert_eq!(accepted["session_name"], "child");
        assert_eq!(accepted["callback"], true);
        let job_name = accepted["job_name"].as_str().expect("job_name").to_string();
        assert!(job_name.starts_with("child-") && job_name.len() == "child-".len() + 8, "{job_name}");
        // The Start job alone makes the session exist (running) and blocks a second start.
        assert_eq!(parse(&ok_text(&results[1]))["status"], "running");
        assert!(error_text(&results[2]).contains("already exists"), "{}", results[2]);

        let job = api(&client, &ns, "AgentJob").get(&job_name).await.expect("the AgentJob exists");
        let spec = &job.data["spec"];
        assert_eq!(spec["type"], "Start");
        assert_eq!(spec["sessionName"], "child");
        assert_eq!(spec["prompt"], "write the tests");
        assert_eq!(spec["parentSessionName"], "lead");
        assert_eq!(spec["callback"], true);
        assert_eq!(job.labels().get("agentorchestrator.dev/session").map(String::as_str), Some("child"));
        assert_eq!(job_names(&client, &ns).await, [job_name]);
    })
    .await;
}

#[tokio::test]
async fn refused_callers_create_nothing() {
    with_temp_ns("gw-refuse", |client, ns| async move {
        let gw = gateway(&client, &ns, &[]).await;
        let token_a = agent(&client, &ns, "session-a").await;
        let start = || {
            vec![call(
                "start_agent_session",
                json!({"session_name": "child", "prompt": "x", "async_mode": true}),
            )]
        };

        // A token bound to session A cannot speak for session B.
        let err = McpClient::new(gw.url())
            .bearer(&token_a)
            .header("X-Agent-Session-Name", "session-b")
            .run(start())
            .await;
        let err = err.expect_err("a mismatched header is refused");
        assert!(
            err.contains("does not match the caller's session 'session-a'"),
            "{err}"
        );

        // No token at all, even with a plausible header.
        let err = McpClient::new(gw.url())
            .header("X-Agent-Session-Name", "session-a")
            .run(start())
            .await;
        assert!(
            err.expect_err("no token is refused")
                .contains("no bearer token")
        );

        // A valid token for another audience.
        let pod_a: Pod = Api::<Pod>::namespaced(client.clone(), &ns)
            .get("session-a-pod")
            .await
            .unwrap();
        let foreign = pod_token(&client, &pod_a, "some-other-service").await;
        let err = McpClient::new(gw.url()).bearer(&foreign).run(start()).await;
        let err = err.expect_err("a foreign audience is refused");
        assert!(err.contains(INVALID_TOKEN), "{err}");

        // A tampered token (its signature no longer matches). A character inside the signature changes: the last
        // one would not do, as some of its bits are base64 padding that decoders ignore.
        let mut chars: Vec<char> = token_a.chars().collect();
        let i = chars.len() - 10;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        let err = McpClient::new(gw.url())
            .bearer(&tampered)
            .run(start())
            .await;
        let err = err.expect_err("a tampered token is refused");
        assert!(err.contains(INVALID_TOKEN), "{err}");

        // A token whose Pod is gone: the API server invalidates Pod-bound tokens with their Pod. (An expired token
        // cannot be made here: TokenRequest issues tokens for at least 10 minutes.)
        let doomed = agent_pod(&client, &ns, "doomed", "session-a", None).await;
        let doomed_token = pod_token(&client, &doomed, AUDIENCE).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        pods.delete(
            "doomed",
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        e2e::wait_for(&pods, "doomed", TIMEOUT, |p: Option<&Pod>| p.is_none()).await;
        let err = McpClient::new(gw.url())
            .bearer(&doomed_token)
            .run(start())
            .await;
        let err = err.expect_err("a deleted Pod's token is refused");
        // Refused as a token that is no longer valid, not as a check that could not be made right now.
        assert!(err.contains(INVALID_TOKEN), "{err}");

        // A token of a Pod that is not an agent's.
        let stranger = plain_pod(&client, &ns, "stranger", Default::default()).await;
        let stranger_token = pod_token(&client, &stranger, AUDIENCE).await;
        let err = McpClient::new(gw.url())
            .bearer(&stranger_token)
            .run(start())
            .await;
        assert!(
            err.expect_err("a non-agent Pod is refused")
                .contains("not managed by agent-operator")
        );

        assert!(
            job_names(&client, &ns).await.is_empty(),
            "a refused call created a job"
        );
        // Per case above, by its reason (three invalid tokens: foreign audience, tampered, deleted Pod), and no
        // other refusal. Each refused client sends two requests before it gives up (the SDK's auto mode tries its
        // handshake twice), each refused.
        let refusals = gw.samples("mcp_gateway_auth_refusals_total").await;
        let want: BTreeMap<String, f64> = [
            ("invalid_token", 6.0),
            ("missing_token", 2.0),
            ("not_an_agent_pod", 2.0),
            ("session_mismatch", 2.0),
        ]
        .into_iter()
        .map(|(reason, n)| (format!("{{reason=\"{reason}\"}}"), n))
        .collect();
        assert_eq!(refusals, want, "refusals by reason");

        // The same token with its own session's header is accepted.
        let ok = McpClient::new(gw.url())
            .bearer(&token_a)
            .header("X-Agent-Session-Name", "session-a")
            .run(start())
            .await;
        ok_text(&ok.expect("the matching header is accepted")[0]);
    })
    .await;
}

#[tokio::test]
async fn bad_arguments_are_tool_errors_and_create_nothing() {
    with_temp_ns("gw-args", |client, ns| async move {
        let gw = gateway(&client, &ns, &[]).await;
        let token = agent(&client, &ns, "lead").await;
        let results = McpClient::new(gw.url())
            .bearer(&token)
            .run(vec![
                call("start_agent_session", json!({"session_name": "Bad_Name", "prompt": "x", "async_mode": true})),
                call("start_agent_session", json!({"session_name": "x".repeat(61), "prompt": "x", "async_mode": true})),
                call("start_agent_session", json!({"session_name": "child", "prompt": "", "async_mode": true})),
                call("start_agent_session", json!({"session_name": "child", "prompt": "x", "agent_blueprint_name": "nope", "async_mode": true})),
                call("start_agent_session", json!({"session_name": "child", "prompt": "x", "project_dir": "../etc", "async_mode": true})),
                call("get_agent_session_status", json!({"session_name": "child", "wait_seconds": 301})),
                call("resume_agent_session", json!({"session_name": "missing", "prompt": "x", "async_mode": true})),
                call("resume_agent_session", json!({"session_name": "lead", "prompt": "x", "async_mode": true})),
                call("get_agent_session_result", json!({"session_name": "missing"})),
                call("stop_agent_session", json!({"session_name": "missing"})),
                call("get_agent_session_status", json!({"session_name": "missing"})),
            ])
            .await
            .expect("client session");
        let expected = [
            "session_name 'Bad_Name' is not valid",
            "at most 60 are allowed",
            "prompt must not be empty",
            "agent blueprint 'nope' does not exist",
            "no '..' segments",
            "wait_seconds must be between 0 and 300, got 301",
            "session 'missing' does not exist",
            "a session cannot start or resume itself",
            "session 'missing' does not exist",
            "session 'missing' does not exist",
        ];
        for (result, want) in results.iter().zip(expected) {
            let text = error_text(result);
            assert!(text.starts_with("Error: ") && text.contains(want), "want {want:?}, got {text:?}");
        }
        assert_eq!(parse(&ok_text(&results[10]))["status"], "not_existent");
        assert!(job_names(&client, &ns).await.is_empty(), "a bad call created a job");
        assert_eq!(
            gw.metric(r#"mcp_gateway_tool_calls_total{tool="start_agent_session",outcome="error"}"#).await,
            5.0,
            "the five bad starts above"
        );
    })
    .await;
}

#[tokio::test]
async fn header_mode_trusts_the_header_and_a_callback_needs_a_caller() {
    with_temp_ns("gw-header", |client, ns| async move {
        let gw = gateway(&client, &ns, &["--auth=header"]).await;
        assert!(
            gw.logs().contains("--auth=header"),
            "no start-up warning:\n{}",
            gw.logs()
        );
        let child = |name: &str| {
            call(
                "start_agent_session",
                json!({"session_name": name, "prompt": "x", "async_mode": true, "callback": true}),
            )
        };
        let anonymous = McpClient::new(gw.url())
            .run(vec![child("orphan")])
            .await
            .expect("client session");
        assert!(error_text(&anonymous[0]).contains("callback=true needs a calling session"));
        assert!(job_names(&client, &ns).await.is_empty());

        let claimed = McpClient::new(gw.url())
            .header("X-Agent-Session-Name", "lead")
            .run(vec![child("kid")])
            .await;
        let job = parse(&ok_text(&claimed.expect("client session")[0]))["job_name"]
            .as_str()
            .unwrap()
            .to_string();
        let job = api(&client, &ns, "AgentJob").get(&job).await.unwrap();
        assert_eq!(job.data["spec"]["parentSessionName"], "lead");
        assert_eq!(job.data["spec"]["callback"], true);
    })
    .await;
}

/// Reports a result as the job's runner would, with a token of a Pod labelled for that job.
async fn report(gw: &Gateway, ns: &str, job: &str, token: &str, body: &[u8]) -> (u16, String) {
    let bearer = format!("Bearer {token}");
    let path = format!("/v1/namespaces/{ns}/agentjobs/{job}/result");
    http(
        gw.addr,
        "POST",
        &path,
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .await
}

#[tokio::test]
async fn status_waits_for_the_end_and_result_returns_the_reported_text() {
    with_temp_ns("gw-result", |client, ns| async move {
        let gw = gateway(&client, &ns, &[]).await;
        let lead = agent(&client, &ns, "lead").await;
        // The session exists (created directly, as lead's child: an agent reaches only its own tree); the
        // gateway resumes it.
        create(
            &client,
            &ns,
            "AgentSession",
            json!({"metadata": {"name": "worker"}, "spec": {"parentSessionName": "lead"}}),
        )
        .await;
        let mcp = McpClient::new(gw.url()).bearer(&lead);
        let resumed = e2e::eventually("session cached", TIMEOUT, || async {
            let r = mcp
                .run(vec![call(
                    "resume_agent_session",
                    json!({"session_name": "worker", "prompt": "go", "async_mode": true}),
                )])
                .await
                .ok()?;
            (r[0]["is_error"] == false).then(|| parse(&ok_text(&r[0])))
        })
        .await;
        let job = resumed["job_name"].as_str().unwrap().to_string();
        let spec = api(&client, &ns, "AgentJob").get(&job).await.unwrap().data["spec"].clone();
        assert_eq!(
            (spec["type"].as_str(), spec["parentSessionName"].as_str()),
            (Some("Resume"), Some("lead"))
        );

        // A client waits on the status while the job runs.
        let waiter = {
            let mcp = mcp.clone();
            tokio::spawn(async move {
                let r = mcp
                    .run(vec![call(
                        "get_agent_session_status",
                        json!({"session_name": "worker", "wait_seconds": 120}),
                    )])
                    .await;
                (r, Instant::now())
            })
        };

        // The runner reports: only the job's own Pod may, within the size limit.
        let runner = agent_pod(&client, &ns, "worker-runner", "worker", Some(&job)).await;
        let runner_token = pod_token(&client, &runner, AUDIENCE).await;
        let body =
            json!({"result": "the answer is 42", "agentSessionId": "cli-session-1"}).to_string();
        let (code, text) = report(&gw, &ns, &job, &lead, body.as_bytes()).await;
        assert_eq!(code, 403, "another job's Pod may not report: {text}");
        let (code, _) = http(
            gw.addr,
            "POST",
            &format!("/v1/namespaces/{ns}/agentjobs/{job}/result"),
            &[],
            body.as_bytes(),
        )
        .await;
        assert_eq!(code, 401, "no token, no report");
        let huge = json!({"result": "x".repeat(2 * 1024 * 1024)}).to_string();
        let (code, text) = report(&gw, &ns, &job, &runner_token, huge.as_bytes()).await;
        assert_eq!(code, 413, "{text}");
        assert!(text.contains("exceeds"), "{text}");
        let (code, text) = report(&gw, &ns, &job, &runner_token, body.as_bytes()).await;
        assert_eq!(code, 200, "{text}");
        let status = wait_for_object(&client, &ns, "AgentJob", &job, TIMEOUT, |j| {
            !j.data["status"]["result"].is_null()
        })
        .await;
        assert_eq!(status.data["status"]["result"], "the answer is 42");
        assert_eq!(status.data["status"]["agentSessionId"], "cli-session-1");
        assert_eq!(status.data["status"]["resultTruncated"], false);

        // Still running: the waiter has not answered, and the result is not served yet.
        assert!(
            !waiter.is_finished(),
            "status returned before the job ended"
        );
        let early = mcp
            .run(vec![call(
                "get_agent_session_result",
                json!({"session_name": "worker"}),
            )])
            .await
            .unwrap();
        assert!(error_text(&early[0]).contains("still running"));

        // The job ends: the waiting status call answers at once.
        let ended = Instant::now();
        finish_job(&client, &ns, &job, true).await;
        let (outcome, answered) = waiter.await.unwrap();
        assert_eq!(
            parse(&ok_text(&outcome.expect("client session")[0]))["status"],
            "finished"
        );
        assert!(answered > ended, "status answered before the job ended");

        let results = mcp
            .run(vec![call(
                "get_agent_session_result",
                json!({"session_name": "worker"}),
            )])
            .await
            .unwrap();
        assert_eq!(ok_text(&results[0]), "the answer is 42");
    })
    .await;
}

#[tokio::test]
async fn sync_mode_waits_for_the_job_and_returns_its_result() {
    with_temp_ns("gw-sync", |client, ns| async move {
        let gw = gateway(&client, &ns, &[]).await;
        let lead = agent(&client, &ns, "lead").await;
        create(
            &client,
            &ns,
            "AgentSession",
            json!({"metadata": {"name": "helper"}, "spec": {"parentSessionName": "lead"}}),
        )
        .await;
        let mcp = McpClient::new(gw.url()).bearer(&lead);
        e2e::eventually("session cached", TIMEOUT, || async {
            let r = mcp
                .run(vec![call(
                    "get_agent_session_status",
                    json!({"session_name": "helper"}),
                )])
                .await
                .ok()?;
            (parse(&ok_text(&r[0]))["status"] == "finished").then_some(())
        })
        .await;

        let caller = {
            let mcp = mcp.clone();
            tokio::spawn(async move {
                mcp.run(vec![call(
                    "resume_agent_session",
                    json!({"session_name": "helper", "prompt": "summarise", "callback": true}),
                )])
                .await
            })
        };
        let job = wait_for_job_of(&client, &ns, "helper", TIMEOUT).await;
        // Sync mode with callback=true records the parent but asks for no callback: the caller gets the result.
        assert_eq!(job.data["spec"]["parentSessionName"], "lead");
        assert_eq!(job.data["spec"]["callback"], false);
        let runner = agent_pod(
            &client,
            &ns,
            "helper-runner",
            "helper",
            Some(&job.name_any()),
        )
        .await;
        let runner_token = pod_token(&client, &runner, AUDIENCE).await;
        let (code, text) = report(
            &gw,
            &ns,
            &job.name_any(),
            &runner_token,
            br#"{"result": "summary: all green"}"#,
        )
        .await;
        assert_eq!(code, 200, "{text}");
        assert!(
            !caller.is_finished(),
            "sync mode returned before the job ended"
        );
        finish_job(&client, &ns, &job.name_any(), true).await;
        let results = caller.await.unwrap().expect("client session");
        assert_eq!(ok_text(&results[0]), "summary: all green");

        // A failed job is a tool error that carries its reason.
        let caller = {
            let mcp = mcp.clone();
            tokio::spawn(async move {
                mcp.run(vec![call(
                    "resume_agent_session",
                    json!({"session_name": "helper", "prompt": "again"}),
                )])
                .await
            })
        };
        let second = e2e::eventually("second job", TIMEOUT, || async {
            job_names(&client, &ns)
                .await
                .into_iter()
                .find(|n| *n != job.name_any())
        })
        .await;
        finish_job(&client, &ns, &second, false).await;
        let results = caller.await.unwrap().expect("client session");
        let text = error_text(&results[0]);
        assert!(
            text.starts_with("Error: session 'helper' failed") && text.contains(&second),
            "{text}"
        );
    })
    .await;
}

#[tokio::test]
async fn two_replicas_behind_one_address_serve_one_client_session() {
    with_temp_ns("gw-replicas", |client, ns| async move {
        let one = gateway(&client, &ns, &[]).await;
        let two = gateway(&client, &ns, &[]).await;
        let proxy = RoundRobinProxy::start(vec![one.addr, two.addr]).await;
        let token = agent(&client, &ns, "lead").await;
        let url = format!("http://{}/mcp", proxy.addr);
        for mode in ["legacy", "auto"] {
            let session = format!("child-{mode}");
            let mut mcp = McpClient::new(url.clone()).bearer(&token).header("X-Agent-Session-Name", "lead");
            mcp.mode = Some(mode.into());
            mcp.fresh_connections = true;
            let results = mcp
                .run(vec![
                    list_tools(),
                    call("start_agent_session", json!({"session_name": session, "prompt": "x", "async_mode": true, "callback": true})),
                    call("get_agent_session_status", json!({"session_name": session, "wait_seconds": 1})),
                    call("list_agent_sessions", json!({"response_format": "json"})),
                    call("list_agent_blueprints", json!({})),
                    call("get_agent_session_status", json!({"session_name": session})),
                ])
                .await
                .unwrap_or_else(|e| panic!("{mode} client session failed: {e}"));
            assert_eq!(results[0]["tools"].as_array().map(Vec::len), Some(8), "{mode}: {}", results[0]);
            for r in &results[1..] {
                ok_text(r);
            }
            assert_eq!(parse(&ok_text(&results[5]))["status"], "running", "{mode}");
        }
        let counts = proxy.counts();
        assert!(counts.iter().all(|&c| c >= 3), "both replicas must serve the session: {counts:?}");
        assert_eq!(job_names(&client, &ns).await.len(), 2);
        // How the calls split between the replicas is the proxy's round robin over the SDK's requests; each
        // served some, and none failed.
        for gw in [&one, &two] {
            let calls = gw.samples("mcp_gateway_tool_calls_total").await;
            let ok: f64 = calls.iter().filter(|(labels, _)| labels.contains(r#"outcome="ok""#)).map(|(_, n)| n).sum();
            assert!(ok > 0.0, "replica {} served no tool call: {calls:?}", gw.addr);
            assert!(calls.keys().all(|labels| labels.contains(r#"outcome="ok""#)), "replica {}: {calls:?}", gw.addr);
        }
    })
    .await;
}

#[tokio::test]
async fn stop_cancels_unfinished_jobs_and_delete_all_keeps_the_callers_session() {
    with_temp_ns("gw-stop", |client, ns| async move {
        let gw = gateway(&client, &ns, &[]).await;
        let token = agent(&client, &ns, "lead").await;
        // "other" is lead's child: an agent reaches only its own tree.
        for (name, spec) in [
            ("lead", json!({})),
            ("other", json!({"parentSessionName": "lead"})),
        ] {
            create(
                &client,
                &ns,
                "AgentSession",
                json!({"metadata": {"name": name}, "spec": spec}),
            )
            .await;
        }
        let mcp = McpClient::new(gw.url()).bearer(&token);
        e2e::eventually("sessions cached", TIMEOUT, || async {
            let r = mcp
                .run(vec![call(
                    "list_agent_sessions",
                    json!({"response_format": "json"}),
                )])
                .await
                .ok()?;
            (parse(&ok_text(&r[0]))["total"] == 2).then_some(())
        })
        .await;
        let results = mcp
            .run(vec![
                call(
                    "start_agent_session",
                    json!({"session_name": "kid", "prompt": "x", "async_mode": true}),
                ),
                // Same replica, right after: the new job is already visible (read-your-writes).
                call("stop_agent_session", json!({"session_name": "kid"})),
                call("stop_agent_session", json!({"session_name": "lead"})),
                call(
                    "resume_agent_session",
                    json!({"session_name": "other", "prompt": "x", "async_mode": true}),
                ),
                call("delete_all_agent_sessions", json!({})),
            ])
            .await
            .expect("client session");
        let kid_job = parse(&ok_text(&results[0]))["job_name"]
            .as_str()
            .unwrap()
            .to_string();
        let stopped = parse(&ok_text(&results[1]));
        assert_eq!(stopped["stopped_jobs"], json!([kid_job]), "{stopped}");
        assert!(error_text(&results[2]).contains("cannot stop itself"));
        let other_job = parse(&ok_text(&results[3]))["job_name"]
            .as_str()
            .unwrap()
            .to_string();
        let deleted = ok_text(&results[4]);
        assert!(
            deleted.contains("Deleted 1 agent sessions and 1 agent jobs")
                && deleted.contains("'lead' was kept"),
            "{deleted}"
        );

        let jobs = api(&client, &ns, "AgentJob");
        let gone = |o: Option<&DynamicObject>| o.is_none();
        e2e::wait_for(&jobs, &other_job, TIMEOUT, gone).await;
        e2e::wait_for(&jobs, &kid_job, TIMEOUT, gone).await;
        let sessions = api(&client, &ns, "AgentSession");
        e2e::wait_for(&sessions, "other", TIMEOUT, gone).await;
        assert!(
            sessions.get_opt("lead").await.unwrap().is_some(),
            "the caller's own session was deleted"
        );
    })
    .await;
}
