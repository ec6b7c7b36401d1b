//! One trace per tree: a three-level tree of real Claude Code agents (scripted stand-in model) with callbacks, with
//! the operator, the gateway and the agent runners exporting over OTLP to a real Jaeger, yields one trace in Jaeger's
//! query API whose spans nest as the tree does. That nothing is exported without OTEL_* configuration is shown by
//! every other e2e test (they run without it) and the unit tests of agent-telemetry's set-up.

use std::time::Duration;

use agent_telemetry::context::{span_id_of, trace_id_of};
use crds::{AgentJob, AgentSession, SessionPhase};
use e2e::anthropic::{FakeAnthropic, Reply};
use e2e::gateway::Gateway;
use e2e::jaeger::{Jaeger, Trace};
use e2e::local_agents::{ProcessNode, claude_blueprint};
use e2e::operator::{Operator, Options};
use e2e::{eventually, with_temp_ns};
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(180);
const START_TOOL: &str = "mcp__agents__start_agent_session";
const BLUEPRINT: &str = "claude";

fn start_child(name: &str) -> Reply {
    Reply::tool(
        START_TOOL,
        json!({"session_name": name, "prompt": format!("Work as {name}."),
               "agent_blueprint_name": BLUEPRINT, "async_mode": true, "callback": true}),
    )
}

/// grand starts middle, middle starts leaf; each parent ends its turn and is resumed by its child's callback.
fn script(r: &e2e::anthropic::Request) -> Reply {
    let child = match r.agent.as_str() {
        "grand" => Some("middle"),
        "middle" => Some("leaf"),
        _ => None,
    };
    match child {
        None => Reply::text("leaf work done"),
        Some(_) if r.last_user_text().contains("has completed") => Reply::text("reported up"),
        Some(_) if !r.tool_results().is_empty() => Reply::text("child started; waiting"),
        Some(child) => start_child(child),
    }
}

async fn idle_with_jobs(sessions: &Api<AgentSession>, name: &str, jobs: i64) -> Option<()> {
    let status = sessions.get_opt(name).await.ok()??.status?;
    (status.phase == Some(SessionPhase::Idle)
        && status.job_count == jobs
        && status.callback_queue.is_empty())
    .then_some(())
}

fn hex(id: impl std::fmt::Display) -> String {
    id.to_string()
}

#[tokio::test]
async fn a_three_level_tree_is_one_trace_whose_spans_nest_as_the_tree_does() {
    with_temp_ns("trace-tree", |client, ns| async move {
        let jaeger = Jaeger::start().await;
        let fake = FakeAnthropic::start(script).await;
        e2e::agents::install_crds(&client).await;
        let gateway =
            Gateway::start_with_env(&[&format!("--namespace={ns}")], &jaeger.env("mcp-gateway")).await;
        let node = ProcessNode::start(&client, &ns).await;
        let _operator = Operator::start_with(
            &ns,
            Options {
                mcp_url: Some(gateway.url()),
                extra_args: vec![format!("--agent-otlp-endpoint={}", jaeger.endpoint())],
                env: jaeger.env("agent-operator"),
                ..Default::default()
            },
        )
        .await;
        let blueprint = claude_blueprint(BLUEPRINT, &node, &fake.base_url_per_session(), "You trace.");
        e2e::gateway::create(&client, &ns, "AgentBlueprint", blueprint).await;
        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
        let root = e2e::agents::job(
            "grand-start",
            json!({"type": "Start", "sessionName": "grand", "prompt": "Delegate.", "blueprint": BLUEPRINT}),
        );
        let root = jobs.create(&PostParams::default(), &root).await.expect("create the root job");

        // The tree runs to its end: every callback delivered (middle calls grand back twice: after its first turn
        // and after leaf's callback resumed it; the two may arrive in one delivery or two) and every session idle.
        let sessions: Api<AgentSession> = Api::namespaced(client.clone(), &ns);
        let all: Vec<AgentJob> = eventually("every callback delivered and the sessions idle", TIMEOUT, || {
            let (sessions, jobs) = (sessions.clone(), jobs.clone());
            async move {
                idle_with_jobs(&sessions, "leaf", 1).await?;
                idle_with_jobs(&sessions, "middle", 2).await?;
                let all = jobs.list(&Default::default()).await.ok()?.items;
                let delivered = all.iter().filter(|j| j.spec.callback).all(|j| {
                    e2e::agents::callback_state(Some(j)) == Some(crds::CallbackState::Delivered)
                });
                let grand = sessions.get_opt("grand").await.ok()??.status?;
                let idle = grand.phase == Some(SessionPhase::Idle) && grand.callback_queue.is_empty();
                (delivered && idle && all.len() >= 5).then_some(all)
            }
        })
        .await;
        let span_of = |job: &AgentJob| hex(span_id_of(&job.uid().unwrap()));
        let of = |session: &str, delivery: bool| -> Vec<AgentJob> {
            all.iter()
                .filter(|j| {
                    j.spec.session_name == session
                        && j.labels().contains_key(crds::labels::CALLBACK_DELIVERY) == delivery
                })
                .cloned()
                .collect()
        };
        let one = |session: &str, delivery: bool| -> AgentJob {
            let found = of(session, delivery);
            assert_eq!(found.len(), 1, "one job of {session} (delivery: {delivery})");
            found[0].clone()
        };
        let (grand, middle, leaf) = (one("grand", false), one("middle", false), one("leaf", false));
        let middle_cb = one("middle", true);
        let grand_cbs = of("grand", true);
        assert!(matches!(grand_cbs.len(), 1 | 2), "grand's deliveries: {}", grand_cbs.len());

        // ONE trace: the root job's (its id derived from the root's UID), and the only one the operator wrote.
        let trace_id = hex(trace_id_of(&root.uid().unwrap()));
        let wanted: Vec<String> = all.iter().map(span_of).collect();
        let trace: Trace = eventually("every job's span in the root's trace", TIMEOUT, || {
            let (jaeger, trace_id, wanted) = (&jaeger, trace_id.clone(), wanted.clone());
            async move {
                let t = jaeger.trace(&trace_id).await?;
                let runners = t.spans.values().filter(|s| s.service == "agent-runner" && s.name == "agent run").count();
                (wanted.iter().all(|w| t.spans.contains_key(w)) && runners == wanted.len()).then_some(t)
            }
        })
        .await;
        // Jaeger writes trace ids without leading zeros: compare them as numbers.
        let as_number = |id: &str| u128::from_str_radix(id, 16).expect("a hex trace id");
        let traces: Vec<u128> = jaeger.trace_ids("agent-operator").await.iter().map(|t| as_number(t)).collect();
        assert_eq!(traces, vec![as_number(&trace_id)], "one trace for the tree");
        assert_eq!(
            trace.services().into_iter().collect::<Vec<_>>(),
            ["agent-operator", "agent-runner", "mcp-gateway"],
            "operator, gateway and runners export into it"
        );

        // The spans nest as the tree does: leaf under middle under grand, through the gateway's tool calls.
        let (g, m, l) = (span_of(&grand), span_of(&middle), span_of(&leaf));
        assert_eq!(trace.spans[&g].parent, None, "the root job's span is the trace's root");
        assert!(trace.is_under(&m, &g), "middle's job under grand's");
        assert!(trace.is_under(&l, &m), "leaf's job under middle's");
        let via = trace.spans[&trace.spans[&l].parent.clone().unwrap()].clone();
        assert_eq!((via.service.as_str(), via.name.as_str()), ("mcp-gateway", "start_agent_session"),
            "leaf was started by middle's tool call: {via:?}");
        assert_eq!(via.parent.as_deref(), Some(m.as_str()), "the tool call is under middle's job");

        // A delivery continues its session's previous job and links the children it carries.
        let mcb = span_of(&middle_cb);
        assert_eq!(trace.spans[&mcb].parent.as_deref(), Some(m.as_str()));
        assert_eq!(trace.spans[&mcb].links, vec![l.clone()], "middle's delivery links leaf");
        let mut carried: Vec<String> = Vec::new();
        for cb in &grand_cbs {
            let span = &trace.spans[&span_of(cb)];
            assert!(span.parent.as_ref().is_some_and(|p| trace.is_under(p, &g) || *p == g),
                "grand's delivery continues grand's jobs: {span:?}");
            carried.extend(span.links.clone());
        }
        carried.sort();
        let mut middles = vec![m.clone(), mcb.clone()];
        middles.sort();
        assert_eq!(carried, middles, "grand's deliveries link both of middle's jobs");

        // Each job's steps and its runner's run sit under the job's span; each callback under the child that made it.
        for job in &all {
            let j = span_of(job);
            let under: Vec<&str> = trace.spans.values()
                .filter(|s| s.parent.as_deref() == Some(j.as_str()))
                .map(|s| s.name.as_str())
                .collect();
            for step in ["waiting", "running", "agent run"] {
                assert!(under.contains(&step), "{} lacks {step}: {under:?}", job.name_any());
            }
        }
        let runner = trace.spans.values()
            .find(|s| s.name == "agent run" && s.parent.as_deref() == Some(l.as_str()))
            .unwrap();
        assert!(trace.spans.values().any(|s| s.name == "report result" && s.parent.as_deref() == Some(runner.span_id.as_str())),
            "the runner's report is under its run");
        assert!(trace.spans.values().any(|s| s.name == "callback" && s.parent.as_deref() == Some(l.as_str())),
            "leaf's callback span under leaf's job");
        drop(gateway);
    })
    .await;
}
