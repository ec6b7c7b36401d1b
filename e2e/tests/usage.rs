//! Usage roll-up against the local control plane: generic agents (agent-runner exec) write known usage to
//! $AGENT_USAGE_FILE; a three-level tree's jobs, sessions and root treeUsage hold the exact sums, also when the
//! operator is SIGKILLed in the middle and a finished job is deleted by its TTL; the operator's usage metrics show
//! the same totals. The same with the real Claude Code CLI against the scripted Anthropic stand-in: each job's usage
//! is what its run printed in its final stream-json message, and the tree sums those.

use std::time::Duration;

use crds::{AgentJob, AgentSession, Cost, JobType, SessionPhase, Usage};
use e2e::agents::{job, wait_job};
use e2e::anthropic::FakeAnthropic;
use e2e::local_agents::{claude_blueprint, create_exec_blueprint};
use e2e::{eventually, with_temp_ns};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

/// What every Start and every Resume run reports. Costs of 0.1 and 0.2 dollars: sums of them drift in binary
/// floating point (0.1 + 0.2 != 0.3), so an exact total shows the arithmetic is decimal.
fn start_usage() -> Usage {
    Usage {
        input_tokens: 1000,
        output_tokens: 100,
        cache_read_tokens: 10,
        cache_write_tokens: 1,
        cost_usd: Some("0.1".into()),
        turns: 1,
    }
}

fn resume_usage() -> Usage {
    Usage {
        input_tokens: 2000,
        output_tokens: 200,
        cache_read_tokens: 20,
        cache_write_tokens: 2,
        cost_usd: Some("0.2".into()),
        turns: 2,
    }
}

const SCRIPT: &str = r#"cat >/dev/null
if [ "$AGENT_JOB_TYPE" = Start ]; then
  u='{"inputTokens":1000,"outputTokens":100,"cacheReadTokens":10,"cacheWriteTokens":1,"costUSD":"0.1","turns":1}'
else
  u='{"inputTokens":2000,"outputTokens":200,"cacheReadTokens":20,"cacheWriteTokens":2,"costUSD":"0.2","turns":2}'
fi
sleep 1
printf '%s' "$u" > "$AGENT_USAGE_FILE.tmp" && mv "$AGENT_USAGE_FILE.tmp" "$AGENT_USAGE_FILE"
echo "done $AGENT_JOB_NAME" > "$AGENT_RESULT_FILE""#;

/// What a session whose jobs ran `job_count` times (its Start, then Resumes) used, computed apart from the code
/// under test: integer nano-dollars and plain token counts.
fn expected(job_count: i64) -> (i64, i64, i64) {
    let resumes = job_count - 1;
    let tokens = 1111 + 2222 * resumes;
    let nanos = 100_000_000 + 200_000_000 * resumes;
    let turns = 1 + 2 * resumes;
    (tokens, nanos, turns)
}

fn summary(u: &Usage) -> (i64, i64, i64) {
    (
        u.total_tokens(),
        Cost::parse(u.cost_usd.as_deref().unwrap_or("x"))
            .expect("a decimal cost")
            .0,
        u.turns,
    )
}

#[tokio::test]
async fn a_three_level_tree_sums_its_usage_exactly_across_an_operator_kill() {
    with_temp_ns("usage", |client, ns| async move {
        let (_gateway, node, mut operator) = e2e::stack::agent_processes(&client, &ns, &[]).await;
        create_exec_blueprint(&client, &ns, "metered", SCRIPT, &node).await;
        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
        let sessions: Api<AgentSession> = Api::namespaced(client.clone(), &ns);
        let tree = [
            job("root-start", json!({"type": "Start", "sessionName": "root", "prompt": "plan", "blueprint": "metered"})),
            job("mid-start", json!({"type": "Start", "sessionName": "mid", "prompt": "split", "blueprint": "metered",
                "parentSessionName": "root", "callback": true})),
            // Deleted right after its end: its usage must stay counted.
            job("leaf-start", json!({"type": "Start", "sessionName": "leaf", "prompt": "work", "blueprint": "metered",
                "parentSessionName": "mid", "callback": true, "ttlSecondsAfterFinished": 0})),
        ];
        for j in &tree {
            jobs.create(&PostParams::default(), j).await.expect("create job");
        }
        // The operator dies wherever it is once the first job has ended (the leaf's end, its callback and the
        // roll-up are in flight), and a new one takes over.
        wait_job(&jobs, "mid-start", crds::JobPhase::Succeeded).await;
        operator.restart().await;

        // Settled: no job left to run, no callback waiting, and the root's treeUsage is the sum of every job run.
        let (by_name, root_tree) = eventually("the tree to settle with its usage rolled up", Duration::from_secs(120), || async {
            let all = sessions.list(&ListParams::default()).await.ok()?.items;
            let listed = jobs.list(&ListParams::default()).await.ok()?.items;
            if all.len() != 3 || listed.iter().any(|j| !j.status.as_ref().and_then(|s| s.phase).is_some_and(|p| p.is_finished())) {
                return None;
            }
            // Every callback delivered: a child's last job may still be on its way into its parent's queue.
            let delivered = listed.iter().filter(|j| j.spec.callback).all(|j| {
                e2e::agents::callback_state(Some(j)) == Some(crds::CallbackState::Delivered)
            });
            let quiet = delivered && all.iter().all(|s| {
                let st = s.status.as_ref();
                st.is_some_and(|st| st.phase == Some(SessionPhase::Idle) && st.current_job.is_none() && st.callback_queue.is_empty())
            });
            let by_name: std::collections::BTreeMap<String, AgentSession> = all.into_iter().map(|s| (s.name_any(), s)).collect();
            let count = |n: &str| by_name[n].status.as_ref().map(|s| s.job_count).unwrap_or(0);
            let total = ["root", "mid", "leaf"].iter().map(|n| expected(count(n))).fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2));
            let root_tree = by_name["root"].status.as_ref()?.tree_usage.clone()?;
            (quiet && summary(&root_tree) == total).then_some((by_name, root_tree))
        })
        .await;

        // Every job that is left reports exactly what its run wrote; the leaf's job is gone (TTL 0).
        let listed = jobs.list(&ListParams::default()).await.expect("list jobs").items;
        assert!(listed.iter().all(|j| j.name_any() != "leaf-start"), "the leaf's job was deleted by its TTL");
        for j in &listed {
            let want = match j.spec.job_type {
                JobType::Start => start_usage(),
                JobType::Resume => resume_usage(),
            };
            assert_eq!(j.status.as_ref().and_then(|s| s.usage.clone()), Some(want), "usage of job {}", j.name_any());
        }
        // Each session: its own jobs; each treeUsage: itself and everything below.
        let status = |n: &str| by_name[n].status.clone().expect("status");
        let own = |n: &str| expected(status(n).job_count);
        for n in ["root", "mid", "leaf"] {
            assert_eq!(summary(&status(n).usage.expect("usage")), own(n), "usage of session {n}");
        }
        assert_eq!(summary(&status("leaf").tree_usage.expect("leaf tree")), own("leaf"));
        let (m, l) = (own("mid"), own("leaf"));
        assert_eq!(summary(&status("mid").tree_usage.expect("mid tree")), (m.0 + l.0, m.1 + l.1, m.2 + l.2));
        let counts: Vec<i64> = ["root", "mid", "leaf"].iter().map(|n| status(n).job_count).collect();
        println!("usage: job counts root/mid/leaf {counts:?}, root treeUsage {root_tree:?}");

        // The metrics say the same: gauges from the sessions' status, summed over the namespace.
        let (tokens, nanos, _) = summary(&root_tree);
        eventually("usage metrics to match the tree", Duration::from_secs(30), || async {
            let t = operator.metric("agent_operator_usage_tokens").await?;
            let c = operator.metric("agent_operator_usage_cost_usd").await?;
            (t == tokens as f64 && (c - nanos as f64 / 1e9).abs() < 1e-9).then_some(())
        })
        .await;
    })
    .await;
}

/// The usage a Claude Code run printed in its last stream-json message (`type: result`), read from its Pod's log
/// with plain JSON, apart from the runner's own reading.
async fn printed_usage(pods: &Api<Pod>, job: &str) -> Usage {
    let log = pods
        .logs(job, &LogParams::default())
        .await
        .unwrap_or_else(|e| panic!("log of {job}: {e}"));
    let result: serde_json::Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .rfind(|v| v["type"] == "result")
        .unwrap_or_else(|| panic!("no result line in the log of {job}:\n{log}"));
    let n = |k: &str| {
        result["usage"][k]
            .as_i64()
            .unwrap_or_else(|| panic!("{job}: usage.{k} in {result}"))
    };
    let cost = result["total_cost_usd"]
        .as_f64()
        .unwrap_or_else(|| panic!("{job}: total_cost_usd in {result}"));
    Usage {
        input_tokens: n("input_tokens"),
        output_tokens: n("output_tokens"),
        cache_read_tokens: n("cache_read_input_tokens"),
        cache_write_tokens: n("cache_creation_input_tokens"),
        cost_usd: Some(Cost::from_f64(cost).expect("a cost").render()),
        turns: result["num_turns"].as_i64().expect("num_turns"),
    }
}

#[tokio::test]
async fn claude_code_runs_report_what_they_printed_and_a_three_level_tree_sums_it_across_an_operator_kill()
 {
    with_temp_ns("usage-cc", |client, ns| async move {
        // The demo model: root starts mid, mid starts leaf (both with callback), each is resumed with its child's
        // result; the stand-in counts tokens on every reply, so every run has usage and Claude Code prices it.
        let fake = FakeAnthropic::start(e2e::demo_model::reply).await;
        let (_gateway, node, mut operator) = e2e::stack::agent_processes(&client, &ns, &[]).await;
        let blueprint = claude_blueprint("cc-metered", &node, &fake.base_url_per_session(), "You are a metered agent.");
        e2e::gateway::create(&client, &ns, "AgentBlueprint", blueprint).await;
        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
        let sessions: Api<AgentSession> = Api::namespaced(client.clone(), &ns);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let prompt = "Split the work (blueprint \"cc-metered\"):\n- child \"mid\": - child \"leaf\": count the files (blueprint \"cc-metered\")";
        let root = job("root-start", json!({"type": "Start", "sessionName": "root", "prompt": prompt, "blueprint": "cc-metered"}));
        jobs.create(&PostParams::default(), &root).await.expect("create the root job");

        // The operator dies once the leaf has ended (its callback and the roll-up are in flight), and a new one
        // takes over.
        eventually("the leaf's job to succeed", Duration::from_secs(120), || async {
            let listed = jobs.list(&ListParams::default()).await.ok()?.items;
            listed.iter().any(|j| j.spec.session_name == "leaf" && e2e::agents::job_phase(Some(j)) == Some(crds::JobPhase::Succeeded)).then_some(())
        })
        .await;
        operator.restart().await;

        // Settled: every run ended (three Starts, mid's resume with the leaf's result, and one or two resumes of root:
        // mid calls back after each of its jobs, and root may take both in one), every callback delivered, every
        // session idle with an empty queue.
        let (listed, by_name) = eventually("the Claude Code tree to settle", Duration::from_secs(120), || async {
            let listed = jobs.list(&ListParams::default()).await.ok()?.items;
            let all = sessions.list(&ListParams::default()).await.ok()?.items;
            let done = (5..=6).contains(&listed.len())
                && listed.iter().all(|j| j.status.as_ref().and_then(|s| s.phase) == Some(crds::JobPhase::Succeeded))
                && listed.iter().filter(|j| j.spec.callback).all(|j| e2e::agents::callback_state(Some(j)) == Some(crds::CallbackState::Delivered));
            let quiet = all.len() == 3 && all.iter().all(|s| {
                s.status.as_ref().is_some_and(|st| st.phase == Some(SessionPhase::Idle) && st.current_job.is_none() && st.callback_queue.is_empty())
            });
            let by_name: std::collections::BTreeMap<String, AgentSession> = all.into_iter().map(|s| (s.name_any(), s)).collect();
            (done && quiet).then_some((listed, by_name))
        })
        .await;

        // Each job holds what its run printed; each session the sum over its jobs; each treeUsage itself and below.
        let mut own: std::collections::BTreeMap<String, Usage> = Default::default();
        for j in &listed {
            let printed = printed_usage(&pods, &j.name_any()).await;
            assert!(printed.total_tokens() > 0 && printed.cost().0 > 0, "{}: the run printed no usage: {printed:?}", j.name_any());
            assert_eq!(j.status.as_ref().and_then(|s| s.usage.clone()).as_ref(), Some(&printed), "usage of job {}", j.name_any());
            let sum = own.entry(j.spec.session_name.clone()).or_default();
            *sum = sum.plus(&printed);
        }
        let status = |n: &str| by_name[n].status.clone().expect("status");
        for n in ["root", "mid", "leaf"] {
            assert_eq!(summary(&status(n).usage.expect("usage")), summary(&own[n]), "usage of session {n}");
        }
        let below_mid = own["mid"].plus(&own["leaf"]);
        assert_eq!(summary(&status("leaf").tree_usage.expect("leaf tree")), summary(&own["leaf"]));
        assert_eq!(summary(&status("mid").tree_usage.expect("mid tree")), summary(&below_mid));
        let whole = own["root"].plus(&below_mid);
        let root_tree = status("root").tree_usage.expect("root tree");
        assert_eq!(summary(&root_tree), summary(&whole), "the root's treeUsage");
        println!("usage (Claude Code): root treeUsage {root_tree:?}");
    })
    .await;
}
