//! Budgets against the local control plane: a tree with maxCostUSD below what its worker will spend is stopped with
//! BudgetExceeded soon after the worker's progress reports cross it, while the worker is mid-run; the gateway
//! refuses a further child in that tree; a sibling tree without a budget spends more and finishes normally.

use std::time::{Duration, Instant};

use crds::{AgentJob, AgentSession, CallbackOutcome, Cost, JobPhase, SessionPhase};
use e2e::agents::{job, wait_job, wait_session};
use e2e::gateway::{Gateway, McpClient, call, error_text};
use e2e::local_agents::create_exec_blueprint;
use e2e::{eventually, wait_for, with_temp_ns};
use k8s_openapi::api::core::v1::Event;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

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

#[tokio::test]
async fn a_tree_over_its_budget_is_stopped_and_a_tree_without_one_finishes() {
    with_temp_ns("budget", |client, ns| async move {
        let (_gateway, node, _operator) = e2e::stack::agent_processes(&client, &ns, &[]).await;
        // A second gateway, trusting the session header, stands in for an agent of the capped tree asking for
        // one more child once its own Pod is gone.
        let asking = Gateway::start(&["--auth=header", &format!("--namespace={ns}")]).await;
        create_exec_blueprint(&client, &ns, "spender", SCRIPT, &node).await;
        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
        let sessions: Api<AgentSession> = Api::namespaced(client.clone(), &ns);
        let start = |name: &str, session: &str, seconds: u32, parent: Option<&str>, budget: bool| {
            let mut spec = json!({"type": "Start", "sessionName": session, "prompt": seconds.to_string(),
                "blueprint": "spender"});
            if let Some(p) = parent {
                spec["parentSessionName"] = p.into();
                spec["callback"] = true.into();
            }
            if budget {
                spec["budget"] = json!({"maxCostUSD": BUDGET});
            }
            job(name, spec)
        };
        // Capped: the worker would spend 2 dollars over 40 s, far past 0.25. Free: its worker spends 0.40.
        for j in [
            start("capped-start", "capped", 60, None, true),
            start("worker-capped-start", "worker-capped", 40, Some("capped"), false),
            start("free-start", "free", 2, None, false),
            start("worker-free-start", "worker-free", 8, Some("free"), false),
        ] {
            jobs.create(&PostParams::default(), &j).await.expect("create job");
        }

        // The moment a progress report over the budget is on the worker's job, and the moment the job is stopped.
        let limit = Cost::parse(BUDGET).unwrap();
        let seen_over = eventually("the capped worker's reported cost to pass the budget", Duration::from_secs(90), || async {
            let j = jobs.get_opt("worker-capped-start").await.ok()??;
            (cost_of(&j) > limit).then(Instant::now)
        })
        .await;
        let stopped = eventually("the capped worker to be stopped for the budget", Duration::from_secs(15), || async {
            let j = jobs.get_opt("worker-capped-start").await.ok()??;
            let st = j.status.as_ref()?;
            (st.phase == Some(JobPhase::Failed) && st.reason.as_deref() == Some("BudgetExceeded")).then_some(j)
        })
        .await;
        let took = seen_over.elapsed();
        let spent_at_stop = cost_of(&stopped);
        println!("budget: worker stopped {took:?} after its report over {BUDGET} was visible; it had spent {spent_at_stop}");
        assert!(spent_at_stop < Cost::parse("2").unwrap(), "stopped mid-run, not at its end");
        assert!(stopped.status.as_ref().unwrap().error.as_deref().unwrap_or_default().contains("maxCostUSD 0.25"));

        // The root's own running job is stopped too; the root session says why.
        let root_job = wait_job(&jobs, "capped-start", JobPhase::Failed).await;
        assert_eq!(root_job.status.as_ref().unwrap().reason.as_deref(), Some("BudgetExceeded"));
        let root = wait_for(&sessions, "capped", Duration::from_secs(30), |s: Option<&AgentSession>| {
            let st = s.and_then(|s| s.status.as_ref());
            st.is_some_and(|st| {
                st.conditions.iter().any(|c| c.type_ == "BudgetExceeded" && c.status == "True")
                    && st.callback_queue.iter().any(|e| e.child_session == "worker-capped")
            })
        })
        .await
        .expect("root session");
        let st = root.status.unwrap();
        assert!(st.budget_exceeded.as_deref().unwrap().starts_with("maxCostUSD 0.25"), "{:?}", st.budget_exceeded);
        // The parent got the worker's callback as Stopped, with the reason.
        let entry = st.callback_queue.iter().find(|e| e.child_session == "worker-capped").unwrap();
        assert_eq!(entry.outcome, CallbackOutcome::Stopped);
        assert!(entry.error.as_deref().unwrap_or_default().contains("budget"), "{entry:?}");
        // An Event on the root names the budget.
        let events: Api<Event> = Api::namespaced(client.clone(), &ns);
        eventually("a BudgetExceeded Event on the root session", Duration::from_secs(30), || async {
            let list = events.list(&ListParams::default()).await.ok()?.items;
            list.iter()
                .any(|e| e.reason.as_deref() == Some("BudgetExceeded") && e.involved_object.name.as_deref() == Some("capped"))
                .then_some(())
        })
        .await;

        // The gateway refuses a further child in the capped tree, naming the budget, and creates nothing.
        let before = jobs.list(&ListParams::default()).await.unwrap().items.len();
        let answer = eventually("the gateway to answer", Duration::from_secs(30), || async {
            let results = McpClient::new(asking.url())
                .header("X-Agent-Session-Name", "worker-capped")
                .run(vec![call("start_agent_session", json!({
                    "session_name": "worker-capped-helper", "prompt": "5", "agent_blueprint_name": "spender",
                    "async_mode": true}))])
                .await
                .ok()?;
            // Asked once the root's status says the budget passed, which the gateway's store shows by now.
            Some(error_text(&results[0]))
        })
        .await;
        assert!(answer.contains("maxCostUSD 0.25"), "{answer}");
        assert_eq!(jobs.list(&ListParams::default()).await.unwrap().items.len(), before, "nothing was created");

        // The tree without a budget spent more and finished normally: its worker, the root's Start and the
        // delivery of the worker's callback all succeeded.
        let free_worker = wait_job(&jobs, "worker-free-start", JobPhase::Succeeded).await;
        assert_eq!(cost_of(&free_worker), Cost::parse("0.4").unwrap());
        let free = eventually("the free tree to finish", Duration::from_secs(60), || async {
            let s = sessions.get_opt("free").await.ok()??;
            let st = s.status.as_ref()?;
            (st.phase == Some(SessionPhase::Idle) && st.job_count == 2 && st.callback_queue.is_empty()
                && st.current_job.is_none())
            .then_some(s)
        })
        .await;
        let free_status = free.status.unwrap();
        assert_eq!(free_status.tree_usage.unwrap().cost(), Cost::parse("0.4").unwrap());
        assert!(free_status.budget_exceeded.is_none());
        let all = jobs.list(&ListParams::default()).await.unwrap().items;
        for j in all.iter().filter(|j| j.spec.session_name == "free" || j.spec.session_name == "worker-free") {
            assert_eq!(j.status.as_ref().and_then(|s| s.phase), Some(JobPhase::Succeeded), "{}", j.name_any());
        }
        wait_session(&sessions, "worker-free", SessionPhase::Idle).await;
    })
    .await;
}
