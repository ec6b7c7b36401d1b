//! Callbacks: a child started with `callback: true` resumes its parent with its result, exactly once, whatever
//! happens in between (the callback rules of docs/architecture.md). The same under operator SIGKILLs and API server
//! restarts, with the whole tree applied at once, is tests/chaos.rs.

use crds::{AgentJob, AgentSession, CallbackState, JobPhase, ParentClosePolicy, SessionPhase};
use e2e::agents::*;
use e2e::operator::Operator;
use e2e::{eventually, wait_for, with_temp_ns};
use k8s_openapi::api::core::v1::Pod;
use kube::api::DeleteParams;
use kube::{Api, ResourceExt};

/// The length of the session's callback queue; `None` when the session or its status cannot be read (which is
/// not an empty queue).
async fn queue_len(api: &Api<AgentSession>, name: &str) -> Option<usize> {
    let session = api.get(name).await.ok()?;
    Some(session.status?.callback_queue.len())
}

/// Starts session `name` and leaves its Pod running (busy) or finishes it (idle).
async fn parent(jobs: &Api<AgentJob>, pods: &Api<Pod>, name: &str, busy: bool) {
    create(jobs, &start(name, name)).await;
    wait_pod(pods, name).await;
    if !busy {
        succeed_pod(pods, name, "parent turn").await;
        wait_job(jobs, name, JobPhase::Succeeded).await;
    }
}

#[tokio::test]
async fn an_idle_parent_is_resumed_with_its_childs_result() {
    with_temp_ns("cb-idle", |client, ns| async move {
        install_crds(&client).await;
        let _op = Operator::start(&ns).await;
        let (jobs, pods, sessions) = (Api::<AgentJob>::namespaced(client.clone(), &ns), Api::<Pod>::namespaced(client.clone(), &ns), Api::<AgentSession>::namespaced(client.clone(), &ns));
        parent(&jobs, &pods, "boss", false).await;
        wait_session(&sessions, "boss", SessionPhase::Idle).await;

        create(&jobs, &child("c1", "worker", "boss", None)).await;
        wait_pod(&pods, "c1").await;
        succeed_pod(&pods, "c1", "the child's answer").await;

        let delivered = wait_for(&jobs, "c1", TIMEOUT, |j: Option<&AgentJob>| callback_state(j) == Some(CallbackState::Delivered)).await.unwrap();
        let by = delivered.status.unwrap().callback.unwrap().delivered_by.unwrap();
        let resume = jobs.get(&by).await.unwrap();
        assert_eq!(resume.spec.session_name, "boss");
        assert_eq!(
            resume.spec.prompt,
            "The child agent session \"worker\" has completed.\n\n## Child Result\n\nthe child's answer\n\nPlease continue with the orchestration based on this result."
        );
        assert_eq!(delivered_jobs(&resume), ["c1"]);
        assert_eq!(deliveries(&jobs, "boss").await.len(), 1);
        wait_pod(&pods, &by).await;
        assert_eq!(queue_len(&sessions, "boss").await, Some(0));
    })
    .await;
}

#[tokio::test]
async fn a_busy_parent_gets_one_aggregated_resume_in_arrival_order() {
    with_temp_ns("cb-busy", |client, ns| async move {
        install_crds(&client).await;
        let _op = Operator::start(&ns).await;
        let (jobs, pods, sessions) = (
            Api::<AgentJob>::namespaced(client.clone(), &ns),
            Api::<Pod>::namespaced(client.clone(), &ns),
            Api::<AgentSession>::namespaced(client.clone(), &ns),
        );
        parent(&jobs, &pods, "boss", true).await;
        let order = ["c3", "c0", "c4", "c1", "c2"];
        for c in order {
            create(&jobs, &child(c, &format!("w-{c}"), "boss", None)).await;
            wait_pod(&pods, c).await;
        }
        for (i, c) in order.iter().enumerate() {
            succeed_pod(&pods, c, &format!("result of {c}")).await;
            eventually("the callback in the queue", TIMEOUT, || async {
                (queue_len(&sessions, "boss").await == Some(i + 1)).then_some(())
            })
            .await;
        }
        let s = sessions.get("boss").await.unwrap().status.unwrap();
        assert_eq!(s.callback_queue_length, 5);
        let queued: Vec<&str> = s
            .callback_queue
            .iter()
            .map(|e| e.child_job.as_str())
            .collect();
        assert_eq!(queued, order, "queue in arrival order");
        assert!(
            deliveries(&jobs, "boss").await.is_empty(),
            "nothing delivered while the parent runs"
        );

        succeed_pod(&pods, "boss", "parent done").await;
        eventually("one delivery", TIMEOUT, || async {
            (deliveries(&jobs, "boss").await.len() == 1).then_some(())
        })
        .await;
        let resume = &deliveries(&jobs, "boss").await[0];
        assert_eq!(delivered_jobs(resume), order);
        let prompt = &resume.spec.prompt;
        assert!(
            prompt.starts_with("Multiple child agent sessions have completed."),
            "{prompt}"
        );
        let positions: Vec<usize> = order
            .iter()
            .map(|c| {
                prompt
                    .find(&format!("### Child: w-{c}"))
                    .expect("every child")
            })
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "arrival order in the prompt"
        );
        assert_eq!(prompt.matches("---").count(), 4);
        for c in order {
            assert!(prompt.contains(&format!("result of {c}")));
        }
        // The delivery job is created before the queue is emptied (the exactly-once write order), so the queue may
        // still be full at the moment the job is first seen.
        eventually("the queue emptied after the delivery", TIMEOUT, || async {
            (queue_len(&sessions, "boss").await == Some(0)).then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn failed_and_stopped_children_call_back_with_an_error() {
    with_temp_ns("cb-fail", |client, ns| async move {
        install_crds(&client).await;
        let _op = Operator::start(&ns).await;
        let (jobs, pods) = (
            Api::<AgentJob>::namespaced(client.clone(), &ns),
            Api::<Pod>::namespaced(client.clone(), &ns),
        );
        parent(&jobs, &pods, "boss", false).await;

        create(&jobs, &child("bad", "w-bad", "boss", None)).await;
        wait_pod(&pods, "bad").await;
        finish_pod(&pods, "bad", "fail", "compiler exploded", 2).await;
        eventually("failure delivered", TIMEOUT, || async {
            (deliveries(&jobs, "boss").await.len() == 1).then_some(())
        })
        .await;
        let first = deliveries(&jobs, "boss").await.remove(0);
        assert!(
            first.spec.prompt.contains("Error: Child session failed."),
            "{}",
            first.spec.prompt
        );
        assert!(first.spec.prompt.contains("compiler exploded"));
        wait_pod(&pods, &first.name_any()).await;
        succeed_pod(&pods, &first.name_any(), "noted").await;
        wait_job(&jobs, &first.name_any(), JobPhase::Succeeded).await;

        create(&jobs, &child("stopme", "w-stop", "boss", None)).await;
        wait_job(&jobs, "stopme", JobPhase::Running).await;
        jobs.delete("stopme", &DeleteParams::background())
            .await
            .unwrap();
        eventually("stop delivered", TIMEOUT, || async {
            (deliveries(&jobs, "boss").await.len() == 2).then_some(())
        })
        .await;
        // Created within a second of the first, perhaps: found by name, not by position.
        let second = deliveries(&jobs, "boss")
            .await
            .into_iter()
            .find(|d| d.name_any() != first.name_any())
            .expect("a second delivery");
        assert_eq!(delivered_jobs(&second), ["stopme"]);
        assert!(
            second.spec.prompt.contains("Error: Child session failed."),
            "{}",
            second.spec.prompt
        );
        assert!(
            second.spec.prompt.contains("deleted while it ran"),
            "{}",
            second.spec.prompt
        );
        // The finalizer let go once the callback was safe: the stopped job is gone, and so is its Pod.
        wait_for(&jobs, "stopme", TIMEOUT, |j: Option<&AgentJob>| j.is_none()).await;
        wait_for(&pods, "stopme", TIMEOUT, |p: Option<&Pod>| p.is_none()).await;
    })
    .await;
}

#[tokio::test]
async fn callbacks_to_a_missing_or_deleted_parent_are_dropped_with_a_reason() {
    with_temp_ns("cb-drop", |client, ns| async move {
        install_crds(&client).await;
        let _op = Operator::start(&ns).await;
        let (jobs, pods, sessions) = (
            Api::<AgentJob>::namespaced(client.clone(), &ns),
            Api::<Pod>::namespaced(client.clone(), &ns),
            Api::<AgentSession>::namespaced(client.clone(), &ns),
        );

        create(&jobs, &child("orphan", "w-orphan", "nobody", None)).await;
        wait_pod(&pods, "orphan").await;
        succeed_pod(&pods, "orphan", "no one listens").await;
        let dropped = wait_for(&jobs, "orphan", TIMEOUT, |j: Option<&AgentJob>| {
            callback_state(j) == Some(CallbackState::Dropped)
        })
        .await
        .unwrap();
        assert_eq!(
            dropped.status.unwrap().callback.unwrap().reason.as_deref(),
            Some("ParentNotFound")
        );

        // Abandon: the child outlives its deleted parent. With the default, Terminate, the child's session and job
        // are deleted with the tree (ownerReferences), the mark with them, so the test would race the collector.
        let mut boss = start("boss", "boss");
        boss.spec.parent_close_policy = Some(ParentClosePolicy::Abandon);
        create(&jobs, &boss).await;
        wait_pod(&pods, "boss").await;
        create(&jobs, &child("waits", "w-waits", "boss", None)).await;
        wait_pod(&pods, "waits").await;
        succeed_pod(&pods, "waits", "too late").await;
        eventually("queued", TIMEOUT, || async {
            (queue_len(&sessions, "boss").await == Some(1)).then_some(())
        })
        .await;
        sessions
            .delete("boss", &DeleteParams::background())
            .await
            .unwrap();
        let dropped = wait_for(&jobs, "waits", TIMEOUT, |j: Option<&AgentJob>| {
            callback_state(j) == Some(CallbackState::Dropped)
        })
        .await
        .unwrap();
        let progress = dropped.status.unwrap().callback.unwrap();
        assert_eq!(progress.reason.as_deref(), Some("ParentNotFound"));
        assert!(progress.message.unwrap().contains("boss"));
    })
    .await;
}

#[tokio::test]
async fn a_three_level_tree_reports_up_every_level() {
    with_temp_ns("cb-tree", |client, ns| async move {
        install_crds(&client).await;
        self_finishing_blueprint(&client, &ns, "auto", "200ms", "level done").await;
        let _op = Operator::start(&ns).await;
        let jobs = Api::<AgentJob>::namespaced(client.clone(), &ns);
        create(&jobs, &start_with("g", "grand", "auto")).await;
        wait_job(&jobs, "g", JobPhase::Succeeded).await;
        create(&jobs, &child("p", "middle", "grand", Some("auto"))).await;
        eventually("grand hears from middle", TIMEOUT, || async {
            (deliveries(&jobs, "grand").await.len() == 1).then_some(())
        })
        .await;
        create(&jobs, &child("c", "leaf", "middle", Some("auto"))).await;
        eventually("middle hears from leaf", TIMEOUT, || async {
            (deliveries(&jobs, "middle").await.len() == 1).then_some(())
        })
        .await;
        let middle_resume = deliveries(&jobs, "middle").await.remove(0);
        assert_eq!(delivered_jobs(&middle_resume), ["c"]);
        // The middle session's continued turn reports to the grandparent, as its first turn did.
        eventually("grand hears again", TIMEOUT, || async {
            (deliveries(&jobs, "grand").await.len() == 2).then_some(())
        })
        .await;
        // Both deliveries may carry the same creation second, so tell them apart by what they carry.
        let to_grand = deliveries(&jobs, "grand").await;
        let carried: Vec<Vec<String>> = to_grand.iter().map(delivered_jobs).collect();
        assert!(carried.contains(&vec!["p".to_string()]), "{carried:?}");
        let second = to_grand
            .into_iter()
            .find(|d| delivered_jobs(d) != ["p"])
            .expect("a second delivery to grand");
        assert_eq!(delivered_jobs(&second), [middle_resume.name_any()]);
        assert!(second.spec.prompt.contains("\"middle\""));
    })
    .await;
}
