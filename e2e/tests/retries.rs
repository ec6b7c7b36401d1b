//! Retries (`backoffLimit`): a run that failed for a cause the agent did not make (its Pod evicted through the
//! Eviction API, the runner exiting with 75 for a temporary model API failure) runs again after the backoff, the
//! job stays unfinished in between (Pending, BackoffWaiting) and its parent is called back once, for the final
//! outcome; a failure the agent made (exit 1) is final; with the retries spent the job fails with the last cause.
//! The operator runs with a one-second backoff base. Agent Pods run on kwok nodes, ended by the test, except in the
//! last test: there the real runner and Claude Code run on a process node against the Anthropic stand-in, which
//! answers 529 (overloaded) once, and the retried Resume continues the same conversation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crds::{AgentJob, CallbackState, JobPhase};
use e2e::agents::*;
use e2e::anthropic::{FakeAnthropic, Reply};
use e2e::gateway::Gateway;
use e2e::local_agents::{ProcessNode, claude_blueprint};
use e2e::operator::{Operator, Options};
use e2e::{wait_for, with_temp_ns};
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DynamicObject, EvictParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};

async fn operator(ns: &str) -> Operator {
    Operator::start_with(
        ns,
        Options {
            extra_args: vec!["--retry-backoff-base-seconds=1".into()],
            ..Default::default()
        },
    )
    .await
}

fn attempts(job: &AgentJob) -> Option<i32> {
    job.status.as_ref()?.attempts
}

/// Waits until the job waits for its next attempt, and returns when that attempt may start.
async fn wait_backoff(jobs: &Api<AgentJob>, name: &str) -> Time {
    let job = wait_for(jobs, name, TIMEOUT, |j: Option<&AgentJob>| {
        j.and_then(job_reason) == Some("BackoffWaiting")
    })
    .await
    .expect("job exists");
    assert_eq!(job_phase(Some(&job)), Some(JobPhase::Pending), "{job:?}");
    job.status
        .and_then(|s| s.next_attempt_time)
        .expect("nextAttemptTime while BackoffWaiting")
}

/// Waits for the job's Pod of a new run (another UID than `old`), created no earlier than `not_before`.
async fn wait_next_pod(pods: &Api<Pod>, name: &str, old: &str, not_before: &Time) -> Pod {
    let old = old.to_string();
    let pod = wait_for(pods, name, TIMEOUT, move |p: Option<&Pod>| {
        p.is_some_and(|p| p.uid().as_deref() != Some(old.as_str()))
    })
    .await
    .expect("the next Pod");
    let created = pod.metadata.creation_timestamp.clone().expect("created");
    assert!(
        created.0 >= not_before.0,
        "the next Pod was created at {created:?}, before the backoff ended at {not_before:?}"
    );
    pod
}

/// Reasons of the job's Events, oldest first.
async fn event_notes(client: &Client, ns: &str, job: &str, reason: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let selector = format!("involvedObject.name={job},reason={reason}");
    let mut list = events
        .list(&ListParams::default().fields(&selector))
        .await
        .expect("list events")
        .items;
    list.sort_by_key(|e| e.metadata.creation_timestamp.as_ref().map(|t| t.0));
    list.into_iter().filter_map(|e| e.message).collect()
}

/// The parent `boss`, idle, so that a callback to it is delivered at once.
async fn idle_parent(client: &Client, ns: &str, jobs: &Api<AgentJob>) {
    self_finishing_blueprint(client, ns, "auto", "100ms", "parent turn").await;
    create(jobs, &start_with("boss", "boss", "auto")).await;
    wait_job(jobs, "boss", JobPhase::Succeeded).await;
}

/// Waits until `child`'s callback is delivered and checks that exactly one delivery job of `boss` carries it.
async fn delivered_once(jobs: &Api<AgentJob>, child: &str) {
    wait_for(jobs, child, TIMEOUT, |j: Option<&AgentJob>| {
        callback_state(j) == Some(CallbackState::Delivered)
    })
    .await;
    let carrying: Vec<String> = deliveries(jobs, "boss")
        .await
        .iter()
        .filter(|d| delivered_jobs(d).iter().any(|c| c == child))
        .map(|d| d.name_any())
        .collect();
    assert_eq!(carrying.len(), 1, "deliveries of {child}: {carrying:?}");
}

#[tokio::test]
async fn an_evicted_pod_runs_again_after_the_backoff_and_the_parent_is_called_back_once() {
    with_temp_ns("retry-evict", |client, ns| async move {
        install_crds(&client).await;
        let _op = operator(&ns).await;
        let (jobs, pods) = (
            Api::<AgentJob>::namespaced(client.clone(), &ns),
            Api::<Pod>::namespaced(client.clone(), &ns),
        );
        idle_parent(&client, &ns, &jobs).await;
        create(&jobs, &child("evicted", "worker", "boss", None)).await;
        wait_job(&jobs, "evicted", JobPhase::Running).await;
        let first = wait_pod(&pods, "evicted").await;

        pods.evict("evicted", &EvictParams::default())
            .await
            .expect("evict the running Pod");
        let not_before = wait_backoff(&jobs, "evicted").await;
        assert_eq!(
            callback_state(jobs.get("evicted").await.ok().as_ref()),
            Some(CallbackState::Pending),
            "no callback while the job waits to run again"
        );
        let second = wait_next_pod(&pods, "evicted", &first.uid().unwrap(), &not_before).await;
        succeed_pod(&pods, &second.name_any(), "done on the second run").await;
        let done = wait_job(&jobs, "evicted", JobPhase::Succeeded).await;
        assert_eq!(attempts(&done), Some(2), "{:?}", done.status);
        assert_eq!(
            done.status.as_ref().and_then(|s| s.result.as_deref()),
            Some("done on the second run")
        );
        delivered_once(&jobs, "evicted").await;
        let retries = event_notes(&client, &ns, "evicted", "Retrying").await;
        assert_eq!(retries.len(), 1, "{retries:?}");
        assert!(
            retries[0].contains("attempt 1 failed") && retries[0].contains("starts in 1s"),
            "{retries:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn exit_75_is_retried_exit_1_is_not_and_spent_retries_fail_with_the_cause() {
    with_temp_ns("retry-exit", |client, ns| async move {
        install_crds(&client).await;
        let _op = operator(&ns).await;
        let (jobs, pods) = (
            Api::<AgentJob>::namespaced(client.clone(), &ns),
            Api::<Pod>::namespaced(client.clone(), &ns),
        );
        idle_parent(&client, &ns, &jobs).await;
        let overloaded = "the model API was overloaded (HTTP 529); the job may be retried";

        // 75 once, then success: two runs, one callback.
        create(&jobs, &child("flaky", "flaky", "boss", None)).await;
        let first = wait_pod(&pods, "flaky").await;
        finish_pod(&pods, "flaky", "fail", overloaded, 75).await;
        let not_before = wait_backoff(&jobs, "flaky").await;
        let second = wait_next_pod(&pods, "flaky", &first.uid().unwrap(), &not_before).await;
        succeed_pod(&pods, &second.name_any(), "answered on retry").await;
        let done = wait_job(&jobs, "flaky", JobPhase::Succeeded).await;
        assert_eq!(attempts(&done), Some(2), "{:?}", done.status);
        delivered_once(&jobs, "flaky").await;

        // Exit 1 is the agent's own failure: one run, failed at once.
        create(&jobs, &child("broken", "broken", "boss", None)).await;
        wait_pod(&pods, "broken").await;
        finish_pod(&pods, "broken", "fail", "bad prompt", 1).await;
        let failed = wait_job(&jobs, "broken", JobPhase::Failed).await;
        assert_eq!(job_reason(&failed), Some("PodFailed"));
        assert_eq!(attempts(&failed), Some(1), "{:?}", failed.status);
        assert!(
            event_notes(&client, &ns, "broken", "Retrying")
                .await
                .is_empty()
        );
        delivered_once(&jobs, "broken").await;

        // backoffLimit 1: the second 75 ends it, with the cause.
        let mut once = child("tired", "tired", "boss", None);
        once.spec.backoff_limit = Some(1);
        create(&jobs, &once).await;
        let first = wait_pod(&pods, "tired").await;
        finish_pod(&pods, "tired", "fail", overloaded, 75).await;
        let not_before = wait_backoff(&jobs, "tired").await;
        let second = wait_next_pod(&pods, "tired", &first.uid().unwrap(), &not_before).await;
        finish_pod(&pods, &second.name_any(), "fail", overloaded, 75).await;
        let spent = wait_job(&jobs, "tired", JobPhase::Failed).await;
        assert_eq!(job_reason(&spent), Some("ModelApiUnavailable"));
        assert_eq!(attempts(&spent), Some(2), "{:?}", spent.status);
        let error = spent
            .status
            .as_ref()
            .and_then(|s| s.error.clone())
            .unwrap_or_default();
        assert!(
            error.contains("overloaded") && error.contains("backoffLimit 1 spent"),
            "{error}"
        );
        delivered_once(&jobs, "tired").await;
    })
    .await;
}

/// Claude Code ends its Resume with the model API overloaded (529; its own retries off through
/// CLAUDE_CODE_MAX_RETRIES=0): the runner exits 75 and says why, the operator runs the Resume again, and the second
/// run gets the same conversation (the Start's exchange is in what the model is sent) and succeeds.
#[tokio::test]
async fn a_resume_that_met_an_overloaded_api_runs_again_in_the_same_conversation() {
    with_temp_ns("retry-real", |client, ns| async move {
        install_crds(&client).await;
        let overloaded = Arc::new(AtomicUsize::new(0));
        let seen = overloaded.clone();
        let fake = FakeAnthropic::start(move |r| {
            if !r.last_user_text().contains("second question") {
                return Reply::text("first answer");
            }
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                return Reply::Error(529, "Overloaded".into());
            }
            Reply::text("second answer")
        })
        .await;
        let gateway = Gateway::start(&[&format!("--namespace={ns}")]).await;
        let node = ProcessNode::start(&client, &ns).await;
        let _op = Operator::start_with(
            &ns,
            Options {
                mcp_url: Some(gateway.url()),
                extra_args: vec!["--retry-backoff-base-seconds=1".into()],
                ..Default::default()
            },
        )
        .await;
        let mut blueprint =
            claude_blueprint("claude", &node, &fake.base_url_per_session(), "Test agent.");
        blueprint["spec"]["podTemplate"]["env"]
            .as_array_mut()
            .expect("env")
            .push(serde_json::json!({"name": "CLAUDE_CODE_MAX_RETRIES", "value": "0"}));
        e2e::gateway::api(&client, &ns, "AgentBlueprint")
            .create(
                &PostParams::default(),
                &serde_json::from_value::<DynamicObject>(blueprint).expect("blueprint"),
            )
            .await
            .expect("create blueprint");
        let jobs = Api::<AgentJob>::namespaced(client.clone(), &ns);
        let long = Duration::from_secs(120);
        create(
            &jobs,
            &job(
                "s-start",
                serde_json::json!({"type": "Start", "sessionName": "s",
            "prompt": "first question", "blueprint": "claude"}),
            ),
        )
        .await;
        let started = wait_for(&jobs, "s-start", long, |j: Option<&AgentJob>| {
            job_phase(j) == Some(JobPhase::Succeeded)
        })
        .await
        .unwrap();
        let conversation = started
            .status
            .and_then(|s| s.agent_session_id)
            .expect("a session id");

        create(
            &jobs,
            &job(
                "s-resume",
                serde_json::json!({"type": "Resume", "sessionName": "s",
            "prompt": "second question"}),
            ),
        )
        .await;
        let waiting = wait_for(&jobs, "s-resume", long, |j: Option<&AgentJob>| {
            j.and_then(job_reason) == Some("BackoffWaiting")
        })
        .await
        .unwrap();
        let retrying = waiting
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Retrying").cloned())
            .expect("a Retrying condition");
        assert_eq!(retrying.reason, "ModelApiUnavailable", "{retrying:?}");
        assert!(
            retrying.message.contains("overloaded (HTTP 529)"),
            "the runner's termination message names the cause: {}",
            retrying.message
        );
        let done = wait_for(&jobs, "s-resume", long, |j: Option<&AgentJob>| {
            job_phase(j).is_some_and(|p| p.is_finished())
        })
        .await
        .unwrap();
        let status = done.status.clone().unwrap();
        assert_eq!(status.phase, Some(JobPhase::Succeeded), "{status:?}");
        assert_eq!(status.attempts, Some(2));
        assert_eq!(status.result.as_deref(), Some("second answer"));
        assert_eq!(
            overloaded.load(Ordering::SeqCst),
            2,
            "one overloaded answer, one good one"
        );
        let retried = fake
            .requests_of("s")
            .into_iter()
            .rfind(|r| r.last_user_text().contains("second question"))
            .expect("the retried run's request");
        assert!(
            retried.mentions("first question") && retried.mentions("first answer"),
            "the retried Resume continues the conversation {conversation}: {:?}",
            retried.messages()
        );
        drop(gateway);
    })
    .await;
}
