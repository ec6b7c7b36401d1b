//! Binding a child to its parent: a callback belongs to the parent session that existed when the child was made,
//! or, for a tree applied at once, to the session its parent's Start job makes; a name reused later never receives
//! it, and a child whose parent never comes drops its callback with `ParentNotFound`.

use std::collections::HashMap;
use std::time::Duration;

use crds::{AgentJob, AgentSession, CallbackState, JobPhase, SessionPhase};
use e2e::agents::*;
use e2e::operator::Operator;
use e2e::{eventually, wait_for, with_temp_ns};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::ListParams;
use kube::{Api, ResourceExt};

/// A blueprint whose Pods finish by themselves `after` their start with `message`, as YAML.
fn blueprint_yaml(name: &str, after: &str, message: &str) -> String {
    format!(
        r#"apiVersion: agentorchestrator.dev/v1alpha1
kind: AgentBlueprint
metadata: {{name: {name}}}
spec:
  description: finishes by itself
  podTemplate:
    annotations:
      sim.agentorchestrator.dev/outcome: succeed
      sim.agentorchestrator.dev/after: "{after}"
      sim.agentorchestrator.dev/message: "{message}"
"#
    )
}

fn job_yaml(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: agentorchestrator.dev/v1alpha1\nkind: AgentJob\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

/// Waits until the local clock (the control plane's too) is past the second `job` was created in, so that an
/// object created next has a strictly later creation time.
async fn past_creation_second_of(job: &AgentJob) {
    let created = job.metadata.creation_timestamp.clone().unwrap().0;
    eventually(
        "the clock past the child's creation second",
        Duration::from_secs(5),
        || async move { (jiff::Timestamp::now().as_second() > created.as_second()).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_tree_applied_at_once_delivers_every_callback_once_across_operator_kills() {
    with_temp_ns("bind-tree", |client, ns| async move {
        install_crds(&client).await;
        const N: usize = 10;
        // The whole tree in one apply, before any operator runs: every child exists before its parent session.
        let mut docs = vec![
            blueprint_yaml("parent-auto", "150ms", "parent turn"),
            job_yaml(
                "boss",
                r#"{type: Start, sessionName: boss, prompt: "lead", blueprint: parent-auto}"#,
            ),
        ];
        for i in 0..N {
            let delay = ["0s", "400ms", "900ms", "1500ms", "2500ms"][i % 5];
            docs.push(blueprint_yaml(
                &format!("child-{i}"),
                delay,
                &format!("result {i}"),
            ));
            docs.push(job_yaml(
                &format!("c{i}"),
                &format!(
                    "{{type: Start, sessionName: w{i}, prompt: work, parentSessionName: boss, callback: true, blueprint: child-{i}}}"
                ),
            ));
        }
        // `kubectl apply --server-side` of the whole tree in one command.
        let tree = docs.join("---\n");
        let applied = e2e::chart::kubectl(&["apply", "--server-side", "-n", &ns, "-f", "-"], Some(&tree)).await;
        assert!(applied.ok, "kubectl apply: {}", applied.stderr);

        let mut op = Operator::start(&ns).await;
        let (jobs, sessions) = (
            Api::<AgentJob>::namespaced(client.clone(), &ns),
            Api::<AgentSession>::namespaced(client.clone(), &ns),
        );
        // SIGKILLs while the parent session is made, children bind, end and are delivered (gaps of 0.3 to 0.9 s).
        let kills = 6;
        for k in 0..kills {
            tokio::time::sleep(Duration::from_millis(300 + (k as u64 * 233) % 600)).await;
            op.restart().await;
        }
        let children = eventually(
            "every child's callback Delivered or Dropped",
            Duration::from_secs(120),
            || async {
                let list = jobs.list(&Default::default()).await.ok()?.items;
                let children: Vec<AgentJob> =
                    list.into_iter().filter(|j| j.spec.callback && j.spec.parent_session_name.as_deref() == Some("boss") && j.name_any().starts_with('c')).collect();
                let settled = children.iter().filter(|j| {
                    matches!(callback_state(Some(j)), Some(CallbackState::Delivered | CallbackState::Dropped))
                });
                (settled.count() == N).then_some(children)
            },
        )
        .await;
        let boss = sessions.get("boss").await.unwrap();
        let dropped: Vec<String> = children
            .iter()
            .filter(|j| callback_state(Some(j)) == Some(CallbackState::Dropped))
            .map(|j| format!("{}: {:?}", j.name_any(), callback(j)))
            .collect();
        assert!(dropped.is_empty(), "dropped: {dropped:?}");
        for c in &children {
            assert_eq!(
                callback(c).and_then(|p| p.parent_uid.as_deref()),
                boss.uid().as_deref(),
                "{} bound to the session its parent's Start job made",
                c.name_any()
            );
        }

        // Every child's result in exactly one delivered prompt.
        let deliveries = deliveries(&jobs, "boss").await;
        let mut carried = HashMap::<String, usize>::new();
        let mut in_prompts = HashMap::<usize, usize>::new();
        for d in &deliveries {
            for c in delivered_jobs(d) {
                *carried.entry(c).or_default() += 1;
            }
            for i in 0..N {
                // "result 1" is a prefix of nothing else here: N is at most 10.
                if d.spec.prompt.contains(&format!("result {i}\n")) {
                    *in_prompts.entry(i).or_default() += 1;
                }
            }
        }
        let events = Api::<Event>::namespaced(client.clone(), &ns)
            .list(&ListParams::default().fields("reason=WaitingForParent"))
            .await
            .unwrap()
            .items
            .len();
        println!(
            "binding: {N} children applied with their parent, {kills} SIGKILLs, {} Resume jobs, {} children carried, {} seen waiting for the parent",
            deliveries.len(),
            carried.len(),
            events
        );
        for i in 0..N {
            assert_eq!(carried.get(&format!("c{i}")), Some(&1), "c{i} carried once: {carried:?}");
            assert_eq!(in_prompts.get(&i), Some(&1), "result {i} in exactly one prompt");
        }
    })
    .await;
}

#[tokio::test]
async fn a_missing_parent_drops_the_callback_and_a_later_namesake_never_receives_it() {
    with_temp_ns("bind-late", |client, ns| async move {
        install_crds(&client).await;
        self_finishing_blueprint(&client, &ns, "auto", "100ms", "namesake turn").await;
        let _op = Operator::start(&ns).await;
        let (jobs, pods, sessions) = (
            Api::<AgentJob>::namespaced(client.clone(), &ns),
            Api::<Pod>::namespaced(client.clone(), &ns),
            Api::<AgentSession>::namespaced(client.clone(), &ns),
        );

        // No parent and no Start job for it: dropped once the child ends.
        let orphan = create(&jobs, &child("orphan", "w-orphan", "ghost", None)).await;
        wait_pod(&pods, "orphan").await;
        succeed_pod(&pods, "orphan", "no one listens").await;
        let dropped = wait_for(&jobs, "orphan", TIMEOUT, |j: Option<&AgentJob>| {
            callback_state(j) == Some(CallbackState::Dropped)
        })
        .await
        .unwrap();
        let progress = callback(&dropped).unwrap();
        assert_eq!(progress.reason.as_deref(), Some("ParentNotFound"));
        assert!(
            progress.message.as_deref().unwrap().contains("ghost"),
            "{progress:?}"
        );

        // A child running while a session of its parent's name is started by a later Start job: not its parent.
        let early = create(&jobs, &child("early", "w-early", "reused", None)).await;
        wait_pod(&pods, "early").await;
        past_creation_second_of(&early).await;
        past_creation_second_of(&orphan).await;
        create(&jobs, &start_with("reused", "reused", "auto")).await;
        create(&jobs, &start_with("ghost", "ghost", "auto")).await;
        wait_session(&sessions, "reused", SessionPhase::Idle).await;
        wait_session(&sessions, "ghost", SessionPhase::Idle).await;
        assert_eq!(
            callback_state(jobs.get("early").await.ok().as_ref()),
            Some(CallbackState::Pending)
        );
        succeed_pod(&pods, "early", "not for the namesake").await;
        wait_job(&jobs, "early", JobPhase::Succeeded).await;
        let dropped = wait_for(&jobs, "early", TIMEOUT, |j: Option<&AgentJob>| {
            callback_state(j) == Some(CallbackState::Dropped)
        })
        .await
        .unwrap();
        let progress = callback(&dropped).unwrap();
        assert_eq!(progress.reason.as_deref(), Some("ParentNotFound"));
        assert!(
            progress
                .message
                .as_deref()
                .unwrap()
                .contains("created after this job"),
            "{progress:?}"
        );
        for namesake in ["reused", "ghost"] {
            assert!(
                deliveries(&jobs, namesake).await.is_empty(),
                "{namesake} got a delivery"
            );
            let status = sessions.get(namesake).await.unwrap().status.unwrap();
            assert!(
                status.callback_queue.is_empty(),
                "{namesake}: {:?}",
                status.callback_queue
            );
        }
    })
    .await;
}
