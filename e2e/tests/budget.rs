//! Budgets against the local control plane: a tree with maxCostUSD below what its worker will spend is stopped with
//! BudgetExceeded soon after the worker's progress reports cross it, while the worker is mid-run; the gateway
//! refuses a further child in that tree; a sibling tree without a budget spends more and finishes normally. Once
//! with generic agents that write their usage file every second, once with the real Claude Code CLI against the
//! scripted Anthropic stand-in, where the running cost is the runner's pricing of each model call (Claude Code
//! prints its own total only at the end).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crds::{AgentJob, AgentSession, CallbackOutcome, Cost, JobPhase, SessionPhase};
use e2e::agents::{job, wait_job, wait_session};
use e2e::anthropic::{FakeAnthropic, Reply, Request};
use e2e::gateway::{Gateway, McpClient, call, error_text};
use e2e::local_agents::{claude_blueprint, create_exec_blueprint};
use e2e::{eventually, wait_for, with_temp_ns};
use k8s_openapi::api::core::v1::Event;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

/// A generic agent that works for as many seconds as its prompt says (a callback prompt: one), writing its usage
/// every second: sessions named worker-* spend 0.05 dollars a second, the others nothing.
const SCRIPT: &str = r#"steps=$(cat)
case $steps in ''|*[!0-9]*) steps=1 ;; esac
rate=0
case $AGENT_SESSION_NAME in worker-*) rate=50 ;; esac
i=0
while [ "$i" -lt "$steps" ]; do
  i=$((i + 1)); c=$((i * rate))
  printf '{"inputTokens":%d,"outputTokens":%d,"costUSD":"%d.%03d","turns":%d}' $((i * 100)) $((i * 10)) $((c / 1000)) $((c % 1000)) "$i" > "$AGENT_USAGE_FILE.tmp"
  mv "$AGENT_USAGE_FILE.tmp" "$AGENT_USAGE_FILE"
  sleep 1
done
echo "worked $steps s" > "$AGENT_RESULT_FILE""#;

const BUDGET: &str = "0.25";

fn cost_of(job: &AgentJob) -> Cost {
    job.status
        .as_ref()
        .and_then(|s| s.usage.as_ref())
        .map(|u| u.cost())
        .unwrap_or_default()
}

/// A Start job of `blueprint`; a child (with `parent`) calls back.
fn start(
    name: &str,
    session: &str,
    blueprint: &str,
    prompt: &str,
    parent: Option<&str>,
    budget: bool,
) -> AgentJob {
    let mut spec =
        json!({"type": "Start", "sessionName": session, "prompt": prompt, "blueprint": blueprint});
    if let Some(p) = parent {
        spec["parentSessionName"] = p.into();
        spec["callback"] = true.into();
    }
    if budget {
        spec["budget"] = json!({"maxCostUSD": BUDGET});
    }
    job(name, spec)
}

/// Two trees, each a root running the generic `spender` (it spends nothing) and one worker: `capped` with the
/// budget, `free` without.
async fn apply_trees(
    jobs: &Api<AgentJob>,
    worker_blueprint: &str,
    capped_work: &str,
    free_work: &str,
) {
    for j in [
        start("capped-start", "capped", "spender", "60", None, true),
        start(
            "worker-capped-start",
            "worker-capped",
            worker_blueprint,
            capped_work,
            Some("capped"),
            false,
        ),
        start("free-start", "free", "spender", "2", None, false),
        start(
            "worker-free-start",
            "worker-free",
            worker_blueprint,
            free_work,
            Some("free"),
            false,
        ),
    ] {
        jobs.create(&PostParams::default(), &j)
            .await
            .expect("create job");
    }
}

/// Waits for the capped worker to be stopped for the budget, at most 15 s after `crossed` (when its spending passed
/// the budget); returns the stopped job.
async fn wait_stopped_within_15s(jobs: &Api<AgentJob>, crossed: Instant) -> AgentJob {
    let deadline = Duration::from_secs(15).saturating_sub(crossed.elapsed());
    let stopped = eventually(
        "the capped worker to be stopped for the budget",
        deadline,
        || async {
            let j = jobs.get_opt("worker-capped-start").await.ok()??;
            let st = j.status.as_ref()?;
            (st.phase == Some(JobPhase::Failed) && st.reason.as_deref() == Some("BudgetExceeded"))
                .then_some(j)
        },
    )
    .await;
    assert!(
        stopped
            .status
            .as_ref()
            .unwrap()
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("maxCostUSD 0.25")
    );
    stopped
}

/// After the capped worker's stop: the root's running job is stopped too, the root says why (condition, Event),
/// its parent got the worker's callback as Stopped with the reason, and the gateway refuses a further child of the
/// tree (asked through `asking`, which trusts the session header), creating nothing.
async fn check_capped_tree(client: &Client, ns: &str, asking: &Gateway, child_blueprint: &str) {
    let jobs: Api<AgentJob> = Api::namespaced(client.clone(), ns);
    let sessions: Api<AgentSession> = Api::namespaced(client.clone(), ns);
    let root_job = wait_job(&jobs, "capped-start", JobPhase::Failed).await;
    assert_eq!(
        root_job.status.as_ref().unwrap().reason.as_deref(),
        Some("BudgetExceeded")
    );
    let root = wait_for(
        &sessions,
        "capped",
        Duration::from_secs(30),
        |s: Option<&AgentSession>| {
            let st = s.and_then(|s| s.status.as_ref());
            st.is_some_and(|st| {
                st.conditions
                    .iter()
                    .any(|c| c.type_ == "BudgetExceeded" && c.status == "True")
                    && st
                        .callback_queue
                        .iter()
                        .any(|e| e.child_session == "worker-capped")
            })
        },
    )
    .await
    .expect("root session");
    let st = root.status.unwrap();
    assert!(
        st.budget_exceeded
            .as_deref()
            .unwrap()
            .starts_with("maxCostUSD 0.25"),
        "{:?}",
        st.budget_exceeded
    );
    let entry = st
        .callback_queue
        .iter()
        .find(|e| e.child_session == "worker-capped")
        .unwrap();
    assert_eq!(entry.outcome, CallbackOutcome::Stopped);
    assert!(
        entry
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("budget"),
        "{entry:?}"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    eventually(
        "a BudgetExceeded Event on the root session",
        Duration::from_secs(30),
        || async {
            let list = events.list(&ListParams::default()).await.ok()?.items;
            list.iter()
                .any(|e| {
                    e.reason.as_deref() == Some("BudgetExceeded")
                        && e.involved_object.name.as_deref() == Some("capped")
                })
                .then_some(())
        },
    )
    .await;

    let answer = eventually("the gateway to answer", Duration::from_secs(30), || async {
        let results = McpClient::new(asking.url())
            .header("X-Agent-Session-Name", "worker-capped")
            .run(vec![call("start_agent_session", json!({
                "session_name": "worker-capped-helper", "prompt": "5", "agent_blueprint_name": child_blueprint,
                "async_mode": true}))])
            .await
            .ok()?;
        // Asked once the root's status says the budget passed, which the gateway's store shows by now.
        Some(error_text(&results[0]))
    })
    .await;
    assert!(answer.contains("maxCostUSD 0.25"), "{answer}");
    // The other tree goes on meanwhile (its callback's delivery job may appear), so what is checked is the child.
    let listed = jobs.list(&ListParams::default()).await.unwrap().items;
    assert!(
        !listed
            .iter()
            .any(|j| j.spec.session_name == "worker-capped-helper"),
        "no job was created"
    );
    assert!(
        sessions
            .get_opt("worker-capped-helper")
            .await
            .unwrap()
            .is_none(),
        "no session was created"
    );
}

/// The tree without a budget finished normally: its worker (returned), the root's Start and the delivery of the
/// worker's callback all succeeded, and the root's treeUsage holds the worker's cost.
async fn check_free_tree(client: &Client, ns: &str) -> AgentJob {
    let jobs: Api<AgentJob> = Api::namespaced(client.clone(), ns);
    let sessions: Api<AgentSession> = Api::namespaced(client.clone(), ns);
    let free_worker = wait_job(&jobs, "worker-free-start", JobPhase::Succeeded).await;
    let free = eventually(
        "the free tree to finish",
        Duration::from_secs(60),
        || async {
            let s = sessions.get_opt("free").await.ok()??;
            let st = s.status.as_ref()?;
            (st.phase == Some(SessionPhase::Idle)
                && st.job_count == 2
                && st.callback_queue.is_empty()
                && st.current_job.is_none())
            .then_some(s)
        },
    )
    .await;
    let free_status = free.status.unwrap();
    assert_eq!(
        free_status.tree_usage.unwrap().cost(),
        cost_of(&free_worker)
    );
    assert!(free_status.budget_exceeded.is_none());
    let all = jobs.list(&ListParams::default()).await.unwrap().items;
    for j in all
        .iter()
        .filter(|j| j.spec.session_name == "free" || j.spec.session_name == "worker-free")
    {
        assert_eq!(
            j.status.as_ref().and_then(|s| s.phase),
            Some(JobPhase::Succeeded),
            "{}",
            j.name_any()
        );
    }
    wait_session(&sessions, "worker-free", SessionPhase::Idle).await;
    free_worker
}

#[tokio::test]
async fn a_tree_over_its_budget_is_stopped_and_a_tree_without_one_finishes() {
    with_temp_ns("budget", |client, ns| async move {
        let (_gateway, node, _operator) = e2e::stack::agent_processes(&client, &ns, &[]).await;
        // A second gateway, trusting the session header, stands in for an agent of the capped tree asking for
        // one more child once its own Pod is gone.
        let asking = Gateway::start(&["--auth=header", &format!("--namespace={ns}")]).await;
        create_exec_blueprint(&client, &ns, "spender", SCRIPT, &node).await;
        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
        // Capped: the worker would spend 2 dollars over 40 s, far past 0.25. Free: its worker spends 0.40.
        apply_trees(&jobs, "spender", "40", "8").await;

        // The moment a progress report over the budget is on the worker's job (the agent's own crossing is up to
        // a report interval earlier: the Claude Code test below measures from that).
        let limit = Cost::parse(BUDGET).unwrap();
        let seen_over = eventually("the capped worker's reported cost to pass the budget", Duration::from_secs(90), || async {
            let j = jobs.get_opt("worker-capped-start").await.ok()??;
            (cost_of(&j) > limit).then(Instant::now)
        })
        .await;
        let stopped = wait_stopped_within_15s(&jobs, seen_over).await;
        let spent_at_stop = cost_of(&stopped);
        println!("budget: worker stopped {:?} after its report over {BUDGET} was visible; it had spent {spent_at_stop}", seen_over.elapsed());
        assert!(spent_at_stop < Cost::parse("2").unwrap(), "stopped mid-run, not at its end");

        check_capped_tree(&client, &ns, &asking, "spender").await;
        let free_worker = check_free_tree(&client, &ns).await;
        assert_eq!(cost_of(&free_worker), Cost::parse("0.4").unwrap());
    })
    .await;
}

/// The model Claude Code workers talk to: every reply is billed 20,000 input tokens and streamed over a second.
const MODEL: &str = "claude-sonnet-4-5";
const INPUT_PER_CALL: u64 = 20_000;
const OUTPUT_PER_CALL: u64 = 10;

/// A worker whose prompt is a number N calls the gateway's list_agent_blueprints tool N times, then answers. Each
/// request's arrival is recorded by agent.
fn worker_model(
    arrivals: Arc<Mutex<Vec<(String, Instant)>>>,
) -> impl Fn(&Request) -> Reply + Send + Sync {
    move |r: &Request| {
        arrivals
            .lock()
            .unwrap()
            .push((r.agent.clone(), Instant::now()));
        let calls = r
            .user_texts()
            .iter()
            .find_map(|t| t.trim().parse::<usize>().ok())
            .unwrap_or(1);
        let reply = if r.assistant_turns() < calls {
            Reply::tool("mcp__agents__list_agent_blueprints", json!({}))
        } else {
            Reply::text(format!("called the tool {calls} times"))
        };
        reply
            .billed(INPUT_PER_CALL, OUTPUT_PER_CALL)
            .slow(Duration::from_millis(200))
    }
}

/// What `calls` model calls cost at the list price of `MODEL` ($3 in, $15 out per million tokens), with `output`
/// tokens each.
fn priced(calls: i64, output: i64) -> Cost {
    Cost(calls * (INPUT_PER_CALL as i64 * 3_000 + output * 15_000))
}

fn claude_worker(
    name: &str,
    node: &e2e::local_agents::ProcessNode,
    fake: &FakeAnthropic,
    prices: Option<&str>,
) -> Value {
    let mut blueprint = claude_blueprint(
        name,
        node,
        &fake.base_url_per_session(),
        "You are a worker.",
    );
    let env = blueprint["spec"]["podTemplate"]["env"]
        .as_array_mut()
        .expect("env");
    env.push(json!({"name": "ANTHROPIC_MODEL", "value": MODEL}));
    if let Some(prices) = prices {
        env.push(json!({"name": "AGENT_MODEL_PRICES", "value": prices}));
    }
    blueprint
}

#[tokio::test]
async fn a_claude_code_worker_is_stopped_mid_run_by_its_trees_budget() {
    with_temp_ns("budget-cc", |client, ns| async move {
        let arrivals: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
        let fake = FakeAnthropic::start(worker_model(arrivals.clone())).await;
        let (_gateway, node, _operator) = e2e::stack::agent_processes(&client, &ns, &[]).await;
        let asking = Gateway::start(&["--auth=header", &format!("--namespace={ns}")]).await;
        create_exec_blueprint(&client, &ns, "spender", SCRIPT, &node).await;
        e2e::gateway::create(&client, &ns, "AgentBlueprint", claude_worker("cc-worker", &node, &fake, None)).await;
        // A price table that cannot be read fails its job with the reason instead of running without prices.
        let mispriced = claude_worker("cc-mispriced", &node, &fake, Some(r#"{"claude-sonnet-4": {"input": "3"}}"#));
        e2e::gateway::create(&client, &ns, "AgentBlueprint", mispriced).await;
        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
        jobs.create(&PostParams::default(), &start("mispriced-start", "mispriced", "cc-mispriced", "1", None, false))
            .await
            .expect("create job");
        // Capped: 40 calls, 2.40 dollars over 40 s; the budget passes at the 5th (0.30). Free: 6 calls and the
        // answer, 0.42.
        apply_trees(&jobs, "cc-worker", "40", "6").await;

        // The 5th model call of the capped worker is where its spending passes 0.25: the stop must come within 15 s
        // of that request's arrival (its line, with its usage, is printed a little later still).
        let crossing = eventually("the capped worker's 5th model call", Duration::from_secs(120), || async {
            let calls: Vec<Instant> = arrivals.lock().unwrap().iter()
                .filter(|(agent, _)| agent == "worker-capped").map(|(_, at)| *at).collect();
            calls.get(4).copied()
        })
        .await;
        let stopped = wait_stopped_within_15s(&jobs, crossing).await;
        let spent = cost_of(&stopped);
        let calls = arrivals.lock().unwrap().iter().filter(|(agent, _)| agent == "worker-capped").count();
        println!("budget (Claude Code): worker stopped {:?} after the model call that passed {BUDGET}; it had made {calls} calls, reported {spent}", crossing.elapsed());
        // The running cost is the runner's pricing of whole calls (their lines carry the input and the first output
        // token), and the worker was stopped long before its 40 calls.
        let limit = Cost::parse(BUDGET).unwrap();
        assert!(spent > limit && spent.0 % priced(1, 1).0 == 0, "reported {spent}, not whole calls of {}", priced(1, 1));
        assert!(calls < 20, "stopped mid-run: {calls} calls");

        check_capped_tree(&client, &ns, &asking, "cc-worker").await;
        // Claude Code's own total for the free worker, 7 calls with their full output, is what the runner's price
        // table says they cost.
        let free_worker = check_free_tree(&client, &ns).await;
        assert_eq!(cost_of(&free_worker), priced(7, OUTPUT_PER_CALL as i64), "Claude Code's total for 7 calls");

        let failed = wait_job(&jobs, "mispriced-start", JobPhase::Failed).await;
        let error = failed.status.unwrap().error.unwrap_or_default();
        assert!(error.contains("AGENT_MODEL_PRICES: claude-sonnet-4: the output price is missing"), "{error}");
    })
    .await;
}
