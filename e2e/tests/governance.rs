//! Governing agent trees: the tree limits (blueprint `limits`, enforced by the gateway with a tool error and by the
//! operator with reason TreeLimitExceeded), the namespace's running-jobs limit (ConcurrencyLimit, creation order),
//! the tree label, depth and ownerReferences, and the parent-close policy (Terminate stops and deletes the tree
//! below a session, Abandon leaves it). A real gateway (token mode) and a real operator; kwok runs the agent Pods
//! until the test ends them.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crds::{AgentJob, AgentSession, CallbackOutcome, CallbackState, JobPhase, SessionPhase};
use e2e::agents::*;
use e2e::gateway::{AUDIENCE, Gateway, McpClient, call, error_text, ok_text, pod_token};
use e2e::operator::{Operator, Options};
use e2e::{eventually, wait_for, with_temp_ns};
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

const TREE: &str = crds::labels::TREE;

async fn blueprint(client: &Client, ns: &str, name: &str, limits: serde_json::Value) {
    let bp: crds::AgentBlueprint = serde_json::from_value(json!({
        "apiVersion": "agentorchestrator.dev/v1alpha1", "kind": "AgentBlueprint",
        "metadata": {"name": name},
        "spec": {"description": "limited", "limits": limits}
    }))
    .expect("valid blueprint");
    Api::<crds::AgentBlueprint>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &bp)
        .await
        .unwrap_or_else(|e| panic!("create blueprint {name}: {e}"));
}

/// The MCP client of the agent in Pod `pod` (of session `session`), with that Pod's token.
async fn agent(
    client: &Client,
    gw: &Gateway,
    pods: &Api<Pod>,
    pod: &str,
    session: &str,
) -> McpClient {
    let pod = wait_pod(pods, pod).await;
    let token = pod_token(client, &pod, AUDIENCE).await;
    McpClient::new(gw.url())
        .bearer(&token)
        .header("X-Agent-Session-Name", session)
}

fn start_call(session: &str) -> serde_json::Value {
    call(
        "start_agent_session",
        json!({"session_name": session, "prompt": format!("work on {session}"), "async_mode": true, "callback": true}),
    )
}

/// The name of the Start job of `session` (the gateway names it).
async fn start_job_of(jobs: &Api<AgentJob>, session: &str) -> String {
    eventually(&format!("the Start job of {session}"), TIMEOUT, || async {
        jobs.list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|j| j.spec.session_name == session)
            .map(|j| j.name_any())
    })
    .await
}

#[tokio::test]
async fn limits_refuse_children_past_them_at_the_gateway_and_the_operator() {
    with_temp_ns("gov-limits", |client, ns| async move {
        install_crds(&client).await;
        let gw = Gateway::start(&[&format!("--namespace={ns}")]).await;
        let _op = Operator::start(&ns).await;
        let (jobs, pods) = (
            Api::<AgentJob>::namespaced(client.clone(), &ns),
            Api::<Pod>::namespaced(client.clone(), &ns),
        );
        blueprint(&client, &ns, "lead", json!({"maxChildren": 2})).await;
        blueprint(&client, &ns, "shallow", json!({"maxDepth": 1})).await;

        // maxChildren: 2 children of boss start; the third is refused by the gateway, naming the limit.
        create(&jobs, &start_with("boss", "boss", "lead")).await;
        let boss = agent(&client, &gw, &pods, "boss", "boss").await;
        let results = boss
            .run(vec![start_call("c1"), start_call("c2"), start_call("c3")])
            .await
            .expect("client session");
        ok_text(&results[0]);
        ok_text(&results[1]);
        let refused = error_text(&results[2]);
        assert!(
            refused.contains("maxChildren 2") && refused.contains("AgentBlueprint lead"),
            "{refused}"
        );
        let names: Vec<String> = jobs
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|j| j.spec.session_name.clone())
            .collect();
        assert!(
            !names.contains(&"c3".to_string()),
            "nothing created for c3: {names:?}"
        );

        // A kubectl-applied third child fails TreeLimitExceeded, with the limit in its error and an Event.
        create(&jobs, &child("c4", "c4", "boss", None)).await;
        let failed = wait_job(&jobs, "c4", JobPhase::Failed).await;
        assert_eq!(job_reason(&failed), Some("TreeLimitExceeded"));
        let error = failed
            .status
            .as_ref()
            .and_then(|s| s.error.clone())
            .unwrap_or_default();
        assert!(
            error.contains("maxChildren 2 (from AgentBlueprint lead)"),
            "{error}"
        );
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
        eventually("the TreeLimitExceeded Event", TIMEOUT, || async {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some("TreeLimitExceeded")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("c4")
                })
                .then_some(())
        })
        .await;

        // maxDepth 1 on the root's blueprint: a child starts, a grandchild is refused.
        create(&jobs, &start_with("top", "top", "shallow")).await;
        let top = agent(&client, &gw, &pods, "top", "top").await;
        ok_text(
            &top.run(vec![start_call("mid")])
                .await
                .expect("client session")[0],
        );
        let mid_job = start_job_of(&jobs, "mid").await;
        let mid = agent(&client, &gw, &pods, &mid_job, "mid").await;
        let refused = error_text(
            &mid.run(vec![start_call("deep")])
                .await
                .expect("client session")[0],
        );
        assert!(
            refused.contains("maxDepth 1")
                && refused.contains("AgentBlueprint shallow")
                && refused.contains("below session top"),
            "{refused}"
        );
    })
    .await;
}

/// What the Pod watch saw: the Pods in the order they appeared, and the most alive at once.
#[derive(Default)]
struct PodLog {
    order: Vec<String>,
    alive: BTreeSet<String>,
    most: usize,
}

#[tokio::test]
async fn a_namespace_runs_at_most_its_limit_of_jobs_and_starts_them_in_creation_order() {
    with_temp_ns("gov-queue", |client, ns| async move {
        install_crds(&client).await;
        let options = Options {
            extra_args: vec!["--max-running-jobs=3".into()],
            ..Default::default()
        };
        let _op = Operator::start_with(&ns, options).await;
        let (jobs, pods) = (
            Api::<AgentJob>::namespaced(client.clone(), &ns),
            Api::<Pod>::namespaced(client.clone(), &ns),
        );
        // Every Pod event of the whole test, from before the first job.
        let log = Arc::new(Mutex::new(PodLog::default()));
        let watching = {
            let (log, pods) = (log.clone(), pods.clone());
            let stream = watcher(pods, watcher::Config::default()).applied_objects();
            tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                while let Ok(Some(pod)) = stream.try_next().await {
                    let mut log = log.lock().unwrap();
                    let name = pod.name_any();
                    if !log.order.contains(&name) {
                        log.order.push(name.clone());
                    }
                    let phase = pod
                        .status
                        .as_ref()
                        .and_then(|s| s.phase.clone())
                        .unwrap_or_default();
                    if phase == "Succeeded" || phase == "Failed" {
                        log.alive.remove(&name);
                    } else {
                        log.alive.insert(name);
                    }
                    log.most = log.most.max(log.alive.len());
                }
            })
        };
        let names: Vec<String> = (0..10).map(|i| format!("q{i:02}")).collect();
        for name in &names {
            create(&jobs, &start(name, name)).await;
        }
        // Three run; the others wait with reason ConcurrencyLimit.
        for name in &names[..3] {
            wait_pod(&pods, name).await;
        }
        wait_for(&jobs, "q09", TIMEOUT, |j: Option<&AgentJob>| {
            j.and_then(job_reason) == Some("ConcurrencyLimit")
        })
        .await;
        // End the newest running job each time: the next to start is still the oldest waiting one.
        let mut running: Vec<String> = names[..3].to_vec();
        let mut next = 3;
        while let Some(last) = running.pop() {
            succeed_pod(&pods, &last, "done").await;
            wait_job(&jobs, &last, JobPhase::Succeeded).await;
            if next < names.len() {
                wait_pod(&pods, &names[next]).await;
                running.insert(0, names[next].clone());
                next += 1;
            }
        }
        for name in &names {
            wait_job(&jobs, name, JobPhase::Succeeded).await;
        }
        eventually("the watch to see every Pod end", TIMEOUT, || async {
            log.lock().unwrap().alive.is_empty().then_some(())
        })
        .await;
        watching.abort();
        let log = log.lock().unwrap();
        assert_eq!(
            log.most, 3,
            "at most 3 Pods alive at once, and the limit was reached"
        );
        // The first three are admitted together (their Pods may appear in any order); every later one starts
        // only when a place frees, oldest first.
        let first: BTreeSet<&String> = log.order[..3].iter().collect();
        assert_eq!(first, names[..3].iter().collect(), "{:?}", log.order);
        assert_eq!(
            log.order[3..],
            names[3..],
            "Pods started in the jobs' creation order"
        );
    })
    .await;
}

fn policy_start(name: &str, policy: &str) -> AgentJob {
    job(
        name,
        json!({"type": "Start", "sessionName": name, "prompt": "lead", "parentClosePolicy": policy}),
    )
}

fn owner_names(session: &AgentSession) -> Vec<(String, String)> {
    session
        .owner_references()
        .iter()
        .map(|r| (r.name.clone(), r.uid.clone()))
        .collect()
}

#[tokio::test]
async fn a_tree_is_labelled_owned_stopped_and_deleted_from_its_root() {
    with_temp_ns("gov-tree", |client, ns| async move {
        install_crds(&client).await;
        let _op = Operator::start(&ns).await;
        let (jobs, pods, sessions) = (
            Api::<AgentJob>::namespaced(client.clone(), &ns),
            Api::<Pod>::namespaced(client.clone(), &ns),
            Api::<AgentSession>::namespaced(client.clone(), &ns),
        );
        create(&jobs, &policy_start("root", "Terminate")).await;
        wait_pod(&pods, "root").await;
        create(&jobs, &child("c1", "c1", "root", None)).await;
        create(&jobs, &child("c2", "c2", "root", None)).await;
        wait_pod(&pods, "c1").await;
        create(&jobs, &child("g1", "g1", "c1", None)).await;
        for p in ["c2", "g1"] {
            wait_pod(&pods, p).await;
        }

        // One label lists the tree; depths and ownerReferences follow it.
        let tree = ["c1", "c2", "g1", "root"];
        let out = e2e::chart::kubectl(
            &[
                "get",
                "ags",
                "-n",
                &ns,
                "-l",
                &format!("{TREE}=root"),
                "-o",
                "name",
            ],
            None,
        )
        .await;
        assert!(out.ok, "{}", out.stderr);
        let listed: BTreeSet<&str> = out
            .stdout
            .lines()
            .map(|l| l.trim_start_matches("agentsession.agentorchestrator.dev/"))
            .collect();
        assert_eq!(listed, tree.into_iter().collect(), "{}", out.stdout);
        let labelled = jobs
            .list(&ListParams::default().labels(&format!("{TREE}=root")))
            .await
            .unwrap()
            .items
            .len();
        assert_eq!(labelled, 4, "every job of the tree carries the label");
        for (name, parent, depth) in [
            ("root", None, 0),
            ("c1", Some("root"), 1),
            ("c2", Some("root"), 1),
            ("g1", Some("c1"), 2),
        ] {
            let s = wait_for(&sessions, name, TIMEOUT, move |s: Option<&AgentSession>| {
                s.is_some_and(|s| {
                    s.status.as_ref().and_then(|st| st.depth) == Some(depth)
                        && (parent.is_none() || !s.owner_references().is_empty())
                })
            })
            .await
            .unwrap();
            if let Some(parent) = parent {
                let p = sessions.get(parent).await.unwrap();
                assert_eq!(
                    owner_names(&s),
                    [(parent.to_string(), p.uid().unwrap())],
                    "{name}"
                );
            }
        }

        // Stopping the root (its running job deleted) stops every running descendant. A stopped job goes away once
        // its callback is settled, so a watch keeps what each one showed last.
        let seen = Arc::new(Mutex::new(
            std::collections::BTreeMap::<String, AgentJob>::new(),
        ));
        let watching = {
            let (seen, jobs) = (seen.clone(), jobs.clone());
            let stream = watcher(jobs, watcher::Config::default()).applied_objects();
            tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                while let Ok(Some(job)) = stream.try_next().await {
                    seen.lock().unwrap().insert(job.name_any(), job);
                }
            })
        };
        jobs.delete("root", &DeleteParams::default()).await.unwrap();
        wait_session(&sessions, "root", SessionPhase::Stopped).await;
        let last = |name: &str| seen.lock().unwrap().get(name).cloned();
        for name in ["c1", "c2", "g1"] {
            eventually(&format!("{name} stopped"), TIMEOUT, || async {
                let j = last(name)?;
                (job_phase(Some(&j)) == Some(JobPhase::Failed) && job_reason(&j) == Some("Stopped"))
                    .then_some(())
            })
            .await;
        }
        // The root's children call it back as Stopped; the grandchild's parent is inside the closed tree: dropped.
        let root = eventually(
            "both children's callbacks in the root's queue",
            TIMEOUT,
            || async {
                let s = sessions.get("root").await.ok()?;
                (s.status.as_ref()?.callback_queue.len() == 2).then_some(s)
            },
        )
        .await;
        let queue = root.status.unwrap().callback_queue;
        assert!(
            queue.iter().all(|e| e.outcome == CallbackOutcome::Stopped),
            "{queue:?}"
        );
        let g1 = eventually("g1's callback dropped", TIMEOUT, || async {
            last("g1").filter(|j| callback_state(Some(j)) == Some(CallbackState::Dropped))
        })
        .await;
        assert_eq!(
            callback(&g1).and_then(|c| c.reason.as_deref()),
            Some("ParentClosed")
        );
        watching.abort();

        // Deleting the root deletes its descendants.
        sessions
            .delete("root", &DeleteParams::background())
            .await
            .unwrap();
        for name in tree {
            wait_for(
                &sessions,
                name,
                Duration::from_secs(60),
                |s: Option<&AgentSession>| s.is_none(),
            )
            .await;
        }
    })
    .await;
}

#[tokio::test]
async fn an_abandoned_child_outlives_its_deleted_root_and_its_callback_is_dropped() {
    with_temp_ns("gov-abandon", |client, ns| async move {
        install_crds(&client).await;
        let _op = Operator::start(&ns).await;
        let (jobs, pods, sessions) = (
            Api::<AgentJob>::namespaced(client.clone(), &ns),
            Api::<Pod>::namespaced(client.clone(), &ns),
            Api::<AgentSession>::namespaced(client.clone(), &ns),
        );
        create(&jobs, &policy_start("lone", "Abandon")).await;
        wait_pod(&pods, "lone").await;
        create(&jobs, &child("a1", "a1", "lone", None)).await;
        wait_pod(&pods, "a1").await;
        let a1 = wait_for(&sessions, "a1", TIMEOUT, |s: Option<&AgentSession>| {
            s.is_some_and(|s| s.labels().get(TREE).map(String::as_str) == Some("lone"))
        })
        .await
        .unwrap();
        assert!(
            owner_names(&a1).is_empty(),
            "an Abandon parent owns no child: {:?}",
            a1.owner_references()
        );

        // Stopping the root leaves the child running; deleting it too.
        jobs.delete("lone", &DeleteParams::default()).await.unwrap();
        wait_session(&sessions, "lone", SessionPhase::Stopped).await;
        sessions
            .delete("lone", &DeleteParams::background())
            .await
            .unwrap();
        wait_for(&sessions, "lone", TIMEOUT, |s: Option<&AgentSession>| {
            s.is_none()
        })
        .await;
        let running = jobs.get("a1").await.unwrap();
        assert_eq!(job_phase(Some(&running)), Some(JobPhase::Running));
        assert!(sessions.get_opt("a1").await.unwrap().is_some());

        // It finishes; its callback to the deleted root is dropped with a reason.
        succeed_pod(&pods, "a1", "done alone").await;
        wait_job(&jobs, "a1", JobPhase::Succeeded).await;
        let a1 = wait_for(&jobs, "a1", TIMEOUT, |j: Option<&AgentJob>| {
            callback_state(j) == Some(CallbackState::Dropped)
        })
        .await
        .unwrap();
        assert_eq!(
            callback(&a1).and_then(|c| c.reason.as_deref()),
            Some("ParentNotFound")
        );
        assert!(
            sessions.get_opt("a1").await.unwrap().is_some(),
            "the child session outlives its root"
        );
    })
    .await;
}
