//! Exactly-once callbacks under chaos beyond the operator: a whole tree applied with one `kubectl apply` before its
//! parent session exists, children ending over about a minute, the operator SIGKILLed again and again and the API
//! server itself restarted in between. Every child's result must reach the parent in exactly one delivered prompt.
//!
//! Runs alone: restarting kube-apiserver breaks every watch in the cluster, so `scripts/e2e-lanes.sh` runs this
//! binary after all the others.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crds::{AgentJob, AgentSession, CallbackState, JobPhase};
use e2e::agents::*;
use e2e::chart::kubectl;
use e2e::control_plane::restart_api_server;
use e2e::operator::Operator;
use e2e::{eventually, with_temp_ns};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::json;

const CHILDREN: usize = 50;
const OPERATOR_KILLS: usize = 22;
/// The chaos steps (counted over kills and restarts together) at which the API server is restarted.
const API_SERVER_RESTARTS: [usize; 3] = [5, 12, 19];

fn result_of(i: usize) -> String {
    // The full stop keeps "c1." from matching inside "c10.".
    format!("result of c{i}.")
}

#[tokio::test]
async fn a_tree_applied_at_once_keeps_every_callback_across_operator_kills_and_api_server_restarts()
{
    with_temp_ns("chaos", |client, ns| async move {
        install_crds(&client).await;
        self_finishing_blueprint(&client, &ns, "parent-auto", "150ms", "parent turn").await;
        self_finishing_blueprint(&client, &ns, "probe", "0s", "probe").await;
        for i in 0..CHILDREN {
            // Children end at scattered moments over a minute (a permutation of 0 s, 1.2 s, ... 58.8 s).
            let after = format!("{}ms", (i * 37) % CHILDREN * 1200);
            self_finishing_blueprint(&client, &ns, &format!("child-{i}"), &after, &result_of(i)).await;
        }
        let mut op = Operator::start(&ns).await;
        let jobs = Api::<AgentJob>::namespaced(client.clone(), &ns);
        let sessions = Api::<AgentSession>::namespaced(client.clone(), &ns);
        let pods = Api::<Pod>::namespaced(client.clone(), &ns);

        // The whole tree in one apply, the parent's Start job first: no parent session exists yet when the
        // children are created, so each child must wait for it and bind to it.
        let mut items = vec![serde_json::to_value(start_with("boss", "boss", "parent-auto")).unwrap()];
        for i in 0..CHILDREN {
            let c = child(&format!("c{i}"), &format!("w{i}"), "boss", Some(&format!("child-{i}")));
            items.push(serde_json::to_value(c).unwrap());
        }
        let tree = serde_json::to_string(&json!({"apiVersion": "v1", "kind": "List", "items": items})).unwrap();
        let applied = kubectl(&["apply", "-n", &ns, "--server-side", "--field-manager=e2e", "-f", "-"], Some(&tree)).await;
        assert!(applied.ok, "kubectl apply of the tree: {}", applied.stderr);

        // The chaos: SIGKILLs at irregular gaps (1.2 to 3.2 s), and at three steps an API server restart followed
        // by a new job, to see the operator act on work that arrives after the API server came back.
        let mut kills = 0;
        let mut acted_after_restart = Vec::new();
        for step in 0..OPERATOR_KILLS + API_SERVER_RESTARTS.len() {
            tokio::time::sleep(Duration::from_millis(1200 + (step as u64 * 733) % 2000)).await;
            if API_SERVER_RESTARTS.contains(&step) {
                restart_api_server().await;
                let ready = Instant::now();
                let probe = format!("probe-{step}");
                create(&jobs, &start_with(&probe, &probe, "probe")).await;
                wait_pod(&pods, &probe).await;
                acted_after_restart.push(ready.elapsed());
            } else {
                op.kill();
                op.restart().await;
                kills += 1;
            }
        }

        eventually("every child's callback Delivered", Duration::from_secs(180), || async {
            let list = jobs.list(&Default::default()).await.ok()?;
            let delivered = list.items.iter().filter(|j| j.spec.callback)
                .filter(|j| callback_state(Some(j)) == Some(CallbackState::Delivered))
                .count();
            (delivered == CHILDREN).then_some(())
        })
        .await;
        eventually("the parent's queue drained and its last turn done", Duration::from_secs(60), || async {
            let status = sessions.get("boss").await.ok()?.status?;
            let deliveries = deliveries(&jobs, "boss").await;
            let last_done = deliveries.last().map(|d| job_phase(Some(d)) == Some(JobPhase::Succeeded))?;
            (status.callback_queue.is_empty() && last_done).then_some(())
        })
        .await;

        let deliveries = deliveries(&jobs, "boss").await;
        let mut by_annotation = HashMap::<String, usize>::new();
        let mut by_prompt = HashMap::<usize, usize>::new();
        for d in &deliveries {
            for c in delivered_jobs(d) {
                *by_annotation.entry(c).or_default() += 1;
            }
            for i in 0..CHILDREN {
                *by_prompt.entry(i).or_default() += d.spec.prompt.matches(&result_of(i)).count();
            }
        }
        let missing: Vec<usize> = (0..CHILDREN).filter(|i| by_prompt[i] == 0).collect();
        let twice: Vec<usize> = (0..CHILDREN).filter(|i| by_prompt[i] > 1).collect();
        println!(
            "chaos: {CHILDREN} children applied with their parent, {kills} operator SIGKILLs, {} API server \
             restarts, {} delivery jobs, {} children delivered, {} missing, {} twice; the operator created a new \
             job's Pod {:?} after the API server was ready",
            API_SERVER_RESTARTS.len(),
            deliveries.len(),
            CHILDREN - missing.len(),
            missing.len(),
            twice.len(),
            acted_after_restart
        );
        assert!(missing.is_empty(), "results never delivered: children {missing:?}");
        assert!(twice.is_empty(), "results delivered more than once: children {twice:?}");
        assert_eq!(by_annotation.len(), CHILDREN, "the delivery jobs' annotations name every child once");
        assert!(by_annotation.values().all(|n| *n == 1), "a child named by two delivery jobs: {by_annotation:?}");
        assert!(deliveries.len() >= 2, "the callbacks should arrive over several turns of the parent, got {}", deliveries.len());
        assert_eq!(kills, OPERATOR_KILLS);
    })
    .await;
}
