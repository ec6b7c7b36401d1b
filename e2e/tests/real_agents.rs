//! Real agents: the real Claude Code CLI runs in agent Pods (agent-runner on a process node) against the scripted
//! Anthropic stand-in, and drives the orchestration itself through the gateway's MCP tools: it starts a child with
//! `callback=true`, the child's Claude Code answers, the operator resumes the parent's Claude Code with the
//! callback message, and the stand-in records what each agent was sent.

use std::time::Duration;

use crds::{AgentJob, AgentSession, CallbackState, JobPhase, SessionPhase};
use e2e::agents::{deliveries, job, wait_job};
use e2e::anthropic::{FakeAnthropic, Gate, Reply, Request};
use e2e::gateway::Gateway;
use e2e::local_agents::{ProcessNode, claude_blueprint};
use e2e::operator::Operator;
use e2e::{wait_for, with_temp_ns};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{DynamicObject, PostParams};
use kube::{Api, Client};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(120);
const START_TOOL: &str = "mcp__agents__start_agent_session";
const BLUEPRINT: &str = "claude";

/// What runs beside the test: the stand-in, the gateway (token mode), a process node and the operator.
struct Stack {
    fake: FakeAnthropic,
    gateway: Gateway,
    node: ProcessNode,
    _operator: Operator,
}

/// The gateway (token mode), a process node and an operator whose agent Pods use that gateway.
async fn processes(client: &Client, ns: &str) -> (Gateway, ProcessNode, Operator) {
    e2e::stack::agent_processes(client, ns, &[]).await
}

async fn stack(
    client: &Client,
    ns: &str,
    script: impl Fn(&Request) -> Reply + Send + Sync + 'static,
) -> Stack {
    let fake = FakeAnthropic::start(script).await;
    let (gateway, node, operator) = processes(client, ns).await;
    let blueprint = claude_blueprint(
        BLUEPRINT,
        &node,
        &fake.base_url_per_session(),
        "You are an orchestration test agent.",
    );
    let api: Api<DynamicObject> = e2e::gateway::api(client, ns, "AgentBlueprint");
    api.create(
        &PostParams::default(),
        &serde_json::from_value(blueprint).expect("blueprint"),
    )
    .await
    .expect("create blueprint");
    Stack {
        fake,
        gateway,
        node,
        _operator: operator,
    }
}

fn start_child(name: &str, prompt: &str) -> Reply {
    Reply::tool(
        START_TOOL,
        json!({"session_name": name, "prompt": prompt, "agent_blueprint_name": BLUEPRINT,
               "async_mode": true, "callback": true}),
    )
}

async fn start_root(client: &Client, ns: &str, session: &str, prompt: &str) {
    let api: Api<AgentJob> = Api::namespaced(client.clone(), ns);
    let start = job(
        &format!("{session}-start"),
        json!({"type": "Start", "sessionName": session, "prompt": prompt, "blueprint": BLUEPRINT}),
    );
    api.create(&PostParams::default(), &start)
        .await
        .expect("create the root job");
}

/// The job of `session` made by the gateway for an agent (its name is the gateway's).
async fn gateway_job(client: &Client, ns: &str, session: &str) -> AgentJob {
    let api: Api<AgentJob> = Api::namespaced(client.clone(), ns);
    e2e::eventually(&format!("a job for session {session}"), TIMEOUT, || {
        let api = api.clone();
        async move {
            api.list(&Default::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|j| j.spec.session_name == session)
        }
    })
    .await
}

fn tool_result_of(request: &Request) -> String {
    request
        .tool_results()
        .into_iter()
        .map(|(_, text)| text)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parent `boss` starts child `worker` (async, callback) and ends its turn; `worker` answers; the operator resumes
/// `boss`, whose Claude Code is sent its earlier conversation followed by the callback message.
#[tokio::test]
async fn a_claude_parent_starts_a_child_and_is_resumed_with_its_result() {
    with_temp_ns("real-tree", |client, ns| async move {
        let stack = stack(&client, &ns, |r| match r.agent.as_str() {
            "boss" if r.last_user_text().contains("has completed") => {
                Reply::text("The worker counted; orchestration complete.")
            }
            "boss" if !r.tool_results().is_empty() => {
                Reply::text("Started worker; waiting for its callback.")
            }
            "boss" => start_child("worker", "Count to three."),
            "worker" => Reply::text("one, two, three"),
            _ => Reply::text("unexpected agent"),
        })
        .await;
        start_root(
            &client,
            &ns,
            "boss",
            "Delegate the counting to a child session.",
        )
        .await;

        // The child job records its parent, proven by the token of the parent's Pod.
        let child = gateway_job(&client, &ns, "worker").await;
        assert_eq!(child.spec.parent_session_name.as_deref(), Some("boss"));
        assert!(child.spec.callback);
        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
        let child = wait_job(
            &jobs,
            &child.metadata.name.clone().unwrap(),
            JobPhase::Succeeded,
        )
        .await;
        assert_eq!(
            child.status.as_ref().unwrap().result.as_deref(),
            Some("one, two, three")
        );

        // The parent's first turn saw the tool succeed.
        let first = stack
            .fake
            .wait_for("of boss with the tool's result", TIMEOUT, |r| {
                r.agent == "boss" && !r.tool_results().is_empty()
            })
            .await;
        let answer = tool_result_of(&first);
        assert!(
            answer.contains("worker") && !answer.contains("Error"),
            "start_agent_session said: {answer}"
        );

        // The callback resumes the parent's own conversation.
        let resumed = stack
            .fake
            .wait_for("of boss with the callback", TIMEOUT, |r| {
                r.agent == "boss" && r.last_user_text().contains("has completed")
            })
            .await;
        let last = resumed.last_user_text();
        assert!(
            last.contains("The child agent session \"worker\" has completed."),
            "{last}"
        );
        assert!(
            last.contains("## Child Result\n\none, two, three"),
            "{last}"
        );
        assert!(
            last.contains("Please continue with the orchestration based on this result."),
            "{last}"
        );
        let texts = resumed.user_texts();
        let delegated = texts
            .iter()
            .position(|t| t.contains("Delegate the counting"))
            .expect("earlier prompt kept");
        let callback = texts
            .iter()
            .position(|t| t.contains("has completed"))
            .expect("callback");
        assert!(delegated < callback, "the earlier conversation comes first");
        assert!(
            resumed.mentions(START_TOOL),
            "the earlier tool call is in the conversation"
        );
        assert!(resumed.mentions("Started worker; waiting for its callback."));
        assert!(
            resumed
                .system()
                .contains("You are an orchestration test agent."),
            "system prompt on resume"
        );

        let sessions: Api<AgentSession> = Api::namespaced(client.clone(), &ns);
        let boss = wait_for(&sessions, "boss", TIMEOUT, |s: Option<&AgentSession>| {
            s.and_then(|s| s.status.as_ref())
                .is_some_and(|st| st.phase == Some(SessionPhase::Idle) && st.job_count == 2)
        })
        .await;
        let status = boss.expect("session boss").status.unwrap();
        assert_eq!(
            status.result.as_deref(),
            Some("The worker counted; orchestration complete.")
        );
        assert!(status.callback_queue.is_empty());
        assert!(status.agent_session_id.is_some());
        let delivered = deliveries(&jobs, "boss").await;
        assert_eq!(delivered.len(), 1, "one Resume job delivered the callback");
        let child = jobs.get(&child.metadata.name.unwrap()).await.unwrap();
        assert_eq!(
            child.status.unwrap().callback.unwrap().state,
            CallbackState::Delivered
        );

        // Every MCP request carried the caller's own session name and a token the gateway accepted (a header
        // naming another session, or a bad token, is refused and counted as such).
        // All of them, by label set: a request without the header, or a renamed label, shows as another set.
        let callers = stack.gateway.samples("mcp_gateway_callers_total").await;
        let present = r#"{by="token",header="present"}"#;
        assert_eq!(
            callers.keys().collect::<Vec<_>>(),
            [present],
            "accepted requests by how the caller was identified: {callers:?}"
        );
        // How many requests Claude Code's MCP client makes (initialize, list, calls) is its own business.
        assert!(
            callers[present] >= 2.0,
            "verified requests with the session header: {callers:?}"
        );
        let logs = stack.gateway.logs();
        assert!(
            !logs.contains("refused"),
            "the gateway refused a call:\n{logs}"
        );
        let runner_log = stack.node.log(&ns, "boss-start", "agent");
        assert!(
            runner_log.contains("result reported"),
            "runner log:\n{runner_log}"
        );
    })
    .await;
}

/// The parent's model keeps working (its reply is held) while two children finish: their callbacks wait in the
/// parent's queue and arrive together in one aggregated Resume.
#[tokio::test]
async fn a_busy_claude_parent_gets_one_aggregated_callback() {
    with_temp_ns("real-busy", |client, ns| async move {
        let gate = Gate::default();
        let held = gate.clone();
        let stack = stack(&client, &ns, move |r| match r.agent.as_str() {
            "lead" if r.last_user_text().contains("have completed") => {
                Reply::text("Both children reported.")
            }
            "lead" => match r.assistant_turns() {
                0 => start_child("alpha", "Say alpha."),
                1 => start_child("beta", "Say beta."),
                _ => Reply::After(
                    held.clone(),
                    Box::new(Reply::text("Children started; my turn ends.")),
                ),
            },
            "alpha" => Reply::text("alpha result"),
            "beta" => Reply::text("beta result"),
            _ => Reply::text("unexpected agent"),
        })
        .await;
        start_root(&client, &ns, "lead", "Start two children.").await;

        let sessions: Api<AgentSession> = Api::namespaced(client.clone(), &ns);
        let lead = wait_for(&sessions, "lead", TIMEOUT, |s: Option<&AgentSession>| {
            s.and_then(|s| s.status.as_ref())
                .is_some_and(|st| st.callback_queue.len() == 2)
        })
        .await;
        assert_eq!(
            lead.expect("session lead").status.unwrap().phase,
            Some(SessionPhase::Running),
            "the parent is still busy"
        );
        gate.open();

        let resumed = stack
            .fake
            .wait_for("of lead with the aggregated callback", TIMEOUT, |r| {
                r.agent == "lead" && r.last_user_text().contains("have completed")
            })
            .await;
        let last = resumed.last_user_text();
        assert!(
            last.starts_with("Multiple child agent sessions have completed."),
            "{last}"
        );
        let (a, b) = (last.find("### Child: alpha"), last.find("### Child: beta"));
        assert!(a.is_some() && b.is_some(), "{last}");
        assert!(
            last.contains("alpha result") && last.contains("beta result"),
            "{last}"
        );
        assert!(
            last.contains("Please continue with the orchestration based on these results."),
            "{last}"
        );
        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
        wait_for(&sessions, "lead", TIMEOUT, |s: Option<&AgentSession>| {
            s.and_then(|s| s.status.as_ref()).is_some_and(|st| {
                st.phase == Some(SessionPhase::Idle)
                    && st.result.as_deref() == Some("Both children reported.")
            })
        })
        .await;
        assert_eq!(
            deliveries(&jobs, "lead").await.len(),
            1,
            "exactly one aggregated Resume"
        );
        let callbacks = stack
            .fake
            .requests_of("lead")
            .into_iter()
            .filter(|r| r.last_user_text().contains("completed.") && r.tool_results().is_empty())
            .count();
        assert_eq!(callbacks, 1, "the parent was resumed once");
    })
    .await;
}

/// A child whose agent fails (the model API refuses it, Claude Code exits non-zero) ends Failed with the agent's
/// error, and its parent is called back with the failure.
#[tokio::test]
async fn a_failing_claude_child_fails_its_job_and_calls_back_with_the_error() {
    with_temp_ns("real-fail", |client, ns| async move {
        let stack = stack(&client, &ns, |r| match r.agent.as_str() {
            "chief" if r.last_user_text().contains("has completed") => {
                Reply::text("Noted the failure.")
            }
            "chief" if !r.tool_results().is_empty() => Reply::text("Started broken."),
            "chief" => start_child("broken", "This will fail."),
            "broken" => Reply::Error(400, "scripted failure for the test".into()),
            _ => Reply::text("unexpected agent"),
        })
        .await;
        start_root(&client, &ns, "chief", "Start a child that fails.").await;

        let child = gateway_job(&client, &ns, "broken").await;
        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
        let child = wait_job(
            &jobs,
            &child.metadata.name.clone().unwrap(),
            JobPhase::Failed,
        )
        .await;
        let status = child.status.unwrap();
        let error = status.error.unwrap_or_default();
        assert!(
            error.contains("scripted failure for the test"),
            "job error: {error}"
        );
        assert_eq!(status.exit_code, Some(1));

        let resumed = stack
            .fake
            .wait_for("of chief with the failure callback", TIMEOUT, |r| {
                r.agent == "chief" && r.last_user_text().contains("has completed")
            })
            .await;
        let last = resumed.last_user_text();
        assert!(last.contains("Error: Child session failed."), "{last}");
        assert!(last.contains("scripted failure for the test"), "{last}");
        let sessions: Api<AgentSession> = Api::namespaced(client.clone(), &ns);
        let broken = sessions.get("broken").await.unwrap();
        assert_eq!(broken.status.unwrap().phase, Some(SessionPhase::Failed));
    })
    .await;
}

/// `agent-runner exec` runs any agent that follows the contract (prompt on stdin, result and session id files),
/// the session's workspace claim carries files from one job's Pod to the next, Resume gives the agent its own
/// session id back, and the claim goes with the session.
#[tokio::test]
async fn a_generic_agent_keeps_its_workspace_and_session_id_across_jobs() {
    with_temp_ns("real-generic", |client, ns| async move {
        let (_gateway, node, _operator) = processes(&client, &ns).await;
        // Start: remember the prompt in the workspace, answer, and name a session id. Resume: answer with what the
        // first Pod left in the workspace, the resume id, and the new prompt.
        let script = r#"prompt=$(cat)
if [ "$AGENT_JOB_TYPE" = Start ]; then
  echo "$prompt" > notes.txt
  echo "generic-sid-1" > "$AGENT_SESSION_ID_FILE"
  echo "started: $prompt" > "$AGENT_RESULT_FILE"
else
  echo "resumed $AGENT_RESUME_ID; notes: $(cat notes.txt); now: $prompt" > "$AGENT_RESULT_FILE"
fi"#;
        let (selector, tolerations) = node.scheduling();
        let blueprint = json!({
            "apiVersion": "agentorchestrator.dev/v1alpha1", "kind": "AgentBlueprint",
            "metadata": {"name": "generic"},
            "spec": {"podTemplate": {
                "command": ["agent-runner", "exec", "--", "sh", "-c", script],
                "nodeSelector": selector, "tolerations": tolerations,
                "workspace": {"size": "1Gi", "storageClassName": e2e::procnode::STORAGE_CLASS},
            }},
        });
        e2e::gateway::create(&client, &ns, "AgentBlueprint", blueprint).await;
        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
        let start = job(
            "g-start",
            json!({"type": "Start", "sessionName": "notes", "prompt": "remember the milk", "blueprint": "generic"}),
        );
        jobs.create(&PostParams::default(), &start).await.unwrap();
        let done = wait_job(&jobs, "g-start", JobPhase::Succeeded).await;
        assert_eq!(done.status.unwrap().result.as_deref(), Some("started: remember the milk"));
        // The agent's log reaches `kubectl logs` through the API server, as from a kubelet.
        let logs = e2e::chart::kubectl(&["logs", "-n", &ns, "g-start", "-c", "agent"], None).await;
        assert!(
            logs.ok && logs.stdout.contains("running the agent") && logs.stdout.contains("result reported"),
            "kubectl logs: {}{}",
            logs.stdout,
            logs.stderr
        );

        let resume = job("g-resume", json!({"type": "Resume", "sessionName": "notes", "prompt": "what was it?"}));
        jobs.create(&PostParams::default(), &resume).await.unwrap();
        let done = wait_job(&jobs, "g-resume", JobPhase::Succeeded).await;
        assert_eq!(
            done.status.unwrap().result.as_deref(),
            Some("resumed generic-sid-1; notes: remember the milk; now: what was it?")
        );
        let sessions: Api<AgentSession> = Api::namespaced(client.clone(), &ns);
        let session = sessions.get("notes").await.unwrap();
        assert_eq!(session.status.unwrap().agent_session_id.as_deref(), Some("generic-sid-1"));

        // The claim belongs to the session and goes with it.
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        let claim = claims.get("notes-workspace").await.expect("the session's workspace claim");
        assert_eq!(claim.metadata.owner_references.unwrap()[0].kind, "AgentSession");
        sessions.delete("notes", &Default::default()).await.unwrap();
        wait_for(&claims, "notes-workspace", TIMEOUT, |c: Option<&PersistentVolumeClaim>| {
            c.is_none_or(|c| c.metadata.deletion_timestamp.is_some())
        })
        .await;
    })
    .await;
}

/// The README's example as `make run` sets it up: examples/local-claude-blueprint.yaml and examples/tree-job.yaml
/// applied as they are, the model behind the Secret and ConfigMap "anthropic" being the demo model of
/// `fake-anthropic`, the session claims on the default StorageClass (the process node's). The planner's Claude Code
/// starts both children through the gateway, and their callbacks resume it until it has heard from both.
#[tokio::test]
async fn the_readme_example_runs_a_two_level_tree() {
    with_temp_ns("real-example", |client, ns| async move {
        let fake = FakeAnthropic::start(e2e::demo_model::reply).await;
        let (_gateway, node, _operator) =
            e2e::stack::agent_processes(&client, &ns, &["--default-storage-class"]).await;
        e2e::stack::apply_readme_example(&ns, &fake, &node).await;

        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
        let sessions: Api<AgentSession> = Api::namespaced(client.clone(), &ns);
        let children = ["haiku-writer", "limerick-writer"];
        e2e::eventually(
            "both children called back and the planner idle",
            TIMEOUT,
            || {
                let (jobs, sessions) = (jobs.clone(), sessions.clone());
                async move {
                    let all = jobs.list(&Default::default()).await.ok()?.items;
                    let delivered = children.iter().all(|c| {
                        all.iter().any(|j| {
                            j.spec.session_name == *c
                                && j.spec.parent_session_name.as_deref() == Some("planner")
                                && j.status
                                    .as_ref()
                                    .and_then(|s| s.callback.as_ref())
                                    .map(|cb| cb.state)
                                    == Some(CallbackState::Delivered)
                        })
                    });
                    let planner = sessions.get_opt("planner").await.ok()??.status?;
                    let idle = planner.phase == Some(SessionPhase::Idle)
                        && planner.callback_queue.is_empty();
                    (delivered && idle).then_some(())
                }
            },
        )
        .await;
        // The children ran the demo model's answers; the planner's last turn summarised what it was sent back.
        let planner = sessions.get("planner").await.unwrap().status.unwrap();
        let result = planner.result.unwrap_or_default();
        assert!(result.contains("My children reported back"), "{result}");
        let carried: Vec<String> = deliveries(&jobs, "planner")
            .await
            .iter()
            .flat_map(e2e::agents::delivered_jobs)
            .collect();
        assert_eq!(carried.len(), 2, "each child delivered once: {carried:?}");
        for child in children {
            assert!(
                carried.iter().any(|j| j.starts_with(child)),
                "{child} in {carried:?}"
            );
        }
        // The planner's model was told of haiku-writer's end: alone, or beside its sibling when both ended while the
        // planner was busy (one aggregated delivery, as callbacks.rs shows).
        let requests = fake.requests();
        assert!(requests.iter().any(|r| {
            let told = r.last_user_text();
            told.contains("The child agent session \"haiku-writer\" has completed.")
                || (told.starts_with("Multiple child agent sessions have completed.")
                    && told.contains("### Child: haiku-writer"))
        }));
    })
    .await;
}
