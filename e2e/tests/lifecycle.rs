//! The operator's job and session lifecycle, with the operator running as a real process against the local
//! control plane (the job and session state machines of docs/architecture.md).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crds::{AgentJob, AgentSession, JobPhase, SessionPhase, labels};
use e2e::agents::*;
use e2e::operator::Operator;
use e2e::{eventually, kubeconfig_path, local_bin, wait_for, with_temp_ns};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

fn kubectl(ns: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(local_bin("kubectl"))
        .args(args)
        .args(["-n", ns, "--kubeconfig"])
        .arg(kubeconfig_path())
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// What `kubectl describe KIND NAME` shows once it mentions every one of `reasons` (Events are recorded in the
/// background, a moment after the change they describe).
async fn described_with(ns: &str, kind: &str, name: &str, reasons: &[&str]) -> String {
    // On failure the namespace's Events are printed by with_temp_ns.
    let what = format!("kubectl describe {kind} {name} to show all of {reasons:?}");
    eventually(&what, Duration::from_secs(20), || async {
        let text = kubectl(ns, &["describe", kind, name]);
        reasons.iter().all(|r| text.contains(r)).then_some(text)
    })
    .await
}

#[tokio::test]
async fn start_job_creates_its_session_runs_a_pod_and_records_the_result() {
    with_temp_ns("start", |client, ns| async move {
        install_crds(&client).await;
        let _op = Operator::start(&ns).await;
        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
        let sessions: Api<AgentSession> = Api::namespaced(client.clone(), &ns);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let mut j = start("first", "alpha");
        j.spec.parent_session_name = Some("boss".into());
        create(&jobs, &j).await;

        let pod = wait_pod(&pods, "first").await;
        let owner = &pod.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("AgentJob", "first", Some(true))
        );
        let env: std::collections::BTreeMap<_, _> = pod.spec.as_ref().unwrap().containers[0]
            .env
            .clone()
            .unwrap()
            .into_iter()
            .filter_map(|e| Some((e.name, e.value?)))
            .collect();
        assert_eq!(env["AGENT_SESSION_NAME"], "alpha");
        assert_eq!(env["AGENT_JOB_NAME"], "first");
        assert_eq!(env["AGENT_JOB_TYPE"], "Start");
        assert_eq!(env["AGENT_PARENT_SESSION_NAME"], "boss");
        assert_eq!(env["AGENT_PROMPT"], "start alpha");
        assert_eq!(env["AGENT_MCP_URL"], "http://127.0.0.1:1/mcp");
        assert_eq!(pod.labels()[labels::SESSION], "alpha");
        assert_eq!(pod.labels()[labels::JOB], "first");

        let running = wait_session(&sessions, "alpha", SessionPhase::Running).await;
        assert_eq!(
            running.status.as_ref().unwrap().current_job.as_deref(),
            Some("first")
        );
        wait_job(&jobs, "first", JobPhase::Running).await;

        succeed_pod(&pods, "first", "the answer is 42").await;
        let done = wait_job(&jobs, "first", JobPhase::Succeeded).await;
        let status = done.status.unwrap();
        assert_eq!(status.result.as_deref(), Some("the answer is 42"));
        assert_eq!(status.pod_name.as_deref(), Some("first"));
        assert!(status.completion_time.is_some());
        assert!(
            status
                .conditions
                .iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
        );
        let idle = wait_session(&sessions, "alpha", SessionPhase::Idle).await;
        let s = idle.status.unwrap();
        assert_eq!(
            (s.job_count, s.result.as_deref(), s.current_job),
            (1, Some("the answer is 42"), None)
        );
        assert_eq!(s.parent_session_name.as_deref(), Some("boss"));

        let table = kubectl(&ns, &["get", "agj,ags"]);
        for column in ["TYPE", "SESSION", "PHASE", "PARENT", "AGE", "QUEUE", "JOBS"] {
            assert!(table.contains(column), "missing column {column}:\n{table}");
        }
        assert!(
            table.contains("Succeeded") && table.contains("Idle"),
            "{table}"
        );
        described_with(&ns, "agj", "first", &["Started", "Succeeded"]).await;
        // Two Events for the job's life, on the job; the session repeats none of them (its status tells its phase,
        // and the job's Started Event names the session). Events are published in the order they were recorded,
        // so once the job's last one shows, any the session had would show too.
        let described = kubectl(&ns, &["describe", "ags", "alpha"]);
        let session_events = described.split("\nEvents:").nth(1).unwrap_or_default();
        for duplicate in ["Created", "JobStarted", "JobSucceeded"] {
            assert!(
                !session_events.contains(duplicate),
                "the session repeats the job's Event {duplicate}:\n{session_events}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn a_resume_waits_while_its_session_is_busy_and_runs_after() {
    with_temp_ns("busy", |client, ns| async move {
        install_crds(&client).await;
        let _op = Operator::start(&ns).await;
        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        create(&jobs, &start("s", "beta")).await;
        wait_job(&jobs, "s", JobPhase::Running).await;

        create(&jobs, &resume("r", "beta")).await;
        let waiting = wait_for(&jobs, "r", TIMEOUT, |j: Option<&AgentJob>| {
            j.is_some_and(|j| job_reason(j) == Some("SessionBusy"))
        })
        .await
        .unwrap();
        assert_eq!(job_phase(Some(&waiting)), Some(JobPhase::Pending));
        assert!(
            pods.get_opt("r").await.unwrap().is_none(),
            "no Pod while the session is busy"
        );

        succeed_pod(&pods, "s", "first turn").await;
        wait_pod(&pods, "r").await;
        wait_job(&jobs, "r", JobPhase::Running).await;
        succeed_pod(&pods, "r", "second turn").await;
        wait_job(&jobs, "r", JobPhase::Succeeded).await;
        let sessions: Api<AgentSession> = Api::namespaced(client.clone(), &ns);
        let s = wait_session(&sessions, "beta", SessionPhase::Idle)
            .await
            .status
            .unwrap();
        assert_eq!((s.job_count, s.result.as_deref()), (2, Some("second turn")));
    })
    .await;
}

#[tokio::test]
async fn resumes_created_at_once_run_one_after_the_other() {
    with_temp_ns("serial", |client, ns| async move {
        install_crds(&client).await;
        let _op = Operator::start(&ns).await;
        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        create(&jobs, &start("s", "gamma")).await;
        wait_pod(&pods, "s").await;
        succeed_pod(&pods, "s", "ok").await;
        wait_job(&jobs, "s", JobPhase::Succeeded).await;

        // Watch every Pod of the namespace and remember the most that were alive (not ended) at once. A watch
        // error fails the test: a watch that stopped early would see no overlap.
        let most = Arc::new(Mutex::new(0usize));
        let watch_error: Arc<Mutex<Option<String>>> = Arc::default();
        let watch = {
            let (pods, most, watch_error) = (pods.clone(), most.clone(), watch_error.clone());
            tokio::spawn(async move {
                let mut alive = HashSet::new();
                let mut stream = watcher(pods, watcher::Config::default())
                    .applied_objects()
                    .boxed();
                while let Some(event) = stream.next().await {
                    let pod = match event {
                        Ok(pod) => pod,
                        Err(e) => {
                            *watch_error.lock().unwrap() = Some(e.to_string());
                            return;
                        }
                    };
                    let ended = matches!(
                        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded" | "Failed")
                    );
                    if ended {
                        alive.remove(&pod.name_any())
                    } else {
                        alive.insert(pod.name_any())
                    };
                    let mut m = most.lock().unwrap();
                    *m = (*m).max(alive.len());
                }
            })
        };
        let (ra, rb, pp) = (
            resume("r-a", "gamma"),
            resume("r-b", "gamma"),
            PostParams::default(),
        );
        let (a, b) = tokio::join!(jobs.create(&pp, &ra), jobs.create(&pp, &rb));
        a.unwrap();
        b.unwrap();
        // Created in the same instant, they run in either order (creation timestamps have one-second resolution
        // and may straddle a second): finish whichever runs, then the other.
        let mut left = vec!["r-a", "r-b"];
        while !left.is_empty() {
            let running = eventually(
                "the Pod of the next resume",
                Duration::from_secs(30),
                || {
                    let (pods, left) = (pods.clone(), left.clone());
                    async move {
                        for name in left {
                            if pods.get_opt(name).await.ok().flatten().is_some() {
                                return Some(name);
                            }
                        }
                        None
                    }
                },
            )
            .await;
            succeed_pod(&pods, running, running).await;
            wait_job(&jobs, running, JobPhase::Succeeded).await;
            left.retain(|n| *n != running);
        }
        watch.abort();
        if let Some(e) = watch_error.lock().unwrap().clone() {
            panic!("the Pod watch failed, so overlapping Pods may have gone unseen: {e}");
        }
        assert_eq!(
            *most.lock().unwrap(),
            1,
            "two jobs of one session ran at the same time"
        );
    })
    .await;
}

#[tokio::test]
async fn a_failed_pod_fails_the_job_with_its_exit_code_and_fails_the_session() {
    with_temp_ns("fail", |client, ns| async move {
        install_crds(&client).await;
        let _op = Operator::start(&ns).await;
        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        create(&jobs, &start("s", "delta")).await;
        wait_pod(&pods, "s").await;
        finish_pod(&pods, "s", "fail", "out of ideas", 7).await;
        let failed = wait_job(&jobs, "s", JobPhase::Failed).await;
        let status = failed.status.unwrap();
        assert_eq!(status.exit_code, Some(7));
        assert_eq!(status.reason.as_deref(), Some("PodFailed"));
        let error = status.error.unwrap();
        assert!(
            error.contains("code 7") && error.contains("out of ideas"),
            "{error}"
        );
        let sessions: Api<AgentSession> = Api::namespaced(client.clone(), &ns);
        wait_session(&sessions, "delta", SessionPhase::Failed).await;
    })
    .await;
}

#[tokio::test]
async fn jobs_that_cannot_run_fail_with_a_reason_and_start_no_pod() {
    with_temp_ns("refuse", |client, ns| async move {
        install_crds(&client).await;
        let _op = Operator::start(&ns).await;
        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let sessions: Api<AgentSession> = Api::namespaced(client.clone(), &ns);

        create(
            &jobs,
            &job(
                "unknown-bp",
                json!({"type": "Start", "sessionName": "eps", "prompt": "x", "blueprint": "nope"}),
            ),
        )
        .await;
        let failed = wait_job(&jobs, "unknown-bp", JobPhase::Failed).await;
        assert_eq!(job_reason(&failed), Some("BlueprintNotFound"));
        assert!(failed.status.unwrap().error.unwrap().contains("nope"));
        assert!(
            sessions.get_opt("eps").await.unwrap().is_none(),
            "no session for a refused Start"
        );

        create(&jobs, &resume("orphan", "nobody")).await;
        let failed = wait_job(&jobs, "orphan", JobPhase::Failed).await;
        assert_eq!(job_reason(&failed), Some("SessionNotFound"));

        create(&jobs, &start("first", "zeta")).await;
        wait_job(&jobs, "first", JobPhase::Running).await;
        create(&jobs, &start("second", "zeta")).await;
        let failed = wait_job(&jobs, "second", JobPhase::Failed).await;
        assert_eq!(job_reason(&failed), Some("AlreadyExists"));

        let names: Vec<String> = pods
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(names, ["first"], "only the valid job has a Pod");
    })
    .await;
}

#[tokio::test]
async fn a_job_past_its_deadline_fails_and_its_pod_is_stopped() {
    with_temp_ns("deadline", |client, ns| async move {
        install_crds(&client).await;
        let _op = Operator::start(&ns).await;
        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        create(
            &jobs,
            &job(
                "slow",
                json!({"type": "Start", "sessionName": "eta", "prompt": "x", "timeoutSeconds": 2}),
            ),
        )
        .await;
        let failed = wait_job(&jobs, "slow", JobPhase::Failed).await;
        assert_eq!(job_reason(&failed), Some("DeadlineExceeded"));
        wait_for(&pods, "slow", TIMEOUT, |p: Option<&Pod>| p.is_none()).await;
        let sessions: Api<AgentSession> = Api::namespaced(client.clone(), &ns);
        wait_session(&sessions, "eta", SessionPhase::Failed).await;
    })
    .await;
}

#[tokio::test]
async fn deleting_a_running_job_stops_its_pod_and_the_session() {
    with_temp_ns("stop", |client, ns| async move {
        install_crds(&client).await;
        let _op = Operator::start(&ns).await;
        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        create(&jobs, &start("s", "theta")).await;
        wait_job(&jobs, "s", JobPhase::Running).await;
        create(&jobs, &resume("next", "theta")).await;
        jobs.delete("s", &DeleteParams::background()).await.unwrap();
        wait_for(&pods, "s", TIMEOUT, |p: Option<&Pod>| p.is_none()).await;
        // The session records the stop, and the waiting Resume runs once the stopped Pod is gone.
        wait_pod(&pods, "next").await;
        let sessions: Api<AgentSession> = Api::namespaced(client.clone(), &ns);
        let s = wait_session(&sessions, "theta", SessionPhase::Running).await;
        assert_eq!(s.status.as_ref().unwrap().last_job.as_deref(), Some("s"));
        described_with(&ns, "ags", "theta", &["JobStopped"]).await;
        jobs.delete("next", &DeleteParams::background())
            .await
            .unwrap();
        wait_session(&sessions, "theta", SessionPhase::Stopped).await;
    })
    .await;
}
