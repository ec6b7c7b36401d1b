//! Retention: a finished job and its Pod are deleted `ttlSecondsAfterFinished` (or the operator's
//! `--default-job-ttl-seconds`) after the job ended; its session keeps the result, jobCount and phase; a job whose
//! callback is not delivered yet is kept until it is. With --default-session-retention-seconds, idle sessions go too,
//! unless a callback or a running child holds them.

use crds::{AgentJob, AgentSession, CallbackState, JobPhase, SessionPhase};
use e2e::agents::*;
use e2e::operator::{Operator, Options};
use e2e::{wait_for, with_temp_ns};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt};

fn with_ttl(mut job: AgentJob, seconds: i64) -> AgentJob {
    job.spec.ttl_seconds_after_finished = Some(seconds);
    job
}

async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    wait_for(api, name, TIMEOUT, |o: Option<&K>| o.is_none()).await;
}

/// The session still tells what its one job did, with the job gone.
async fn assert_kept_result(sessions: &Api<AgentSession>, name: &str, job: &str, result: &str) {
    let status = sessions.get(name).await.unwrap().status.unwrap();
    assert_eq!(status.phase, Some(SessionPhase::Idle), "{status:?}");
    assert_eq!(status.result.as_deref(), Some(result));
    assert_eq!(status.job_count, 1);
    assert_eq!(status.last_job.as_deref(), Some(job));
}

#[tokio::test]
async fn a_finished_job_and_its_pod_go_after_the_ttl_and_the_session_keeps_the_result() {
    with_temp_ns("ret-ttl", |client, ns| async move {
        install_crds(&client).await;
        // The default applies to the job without its own TTL.
        let _op = Operator::start_with(
            &ns,
            Options {
                extra_args: vec!["--default-job-ttl-seconds=5".into()],
                ..Default::default()
            },
        )
        .await;
        let (jobs, pods, sessions) = (
            Api::<AgentJob>::namespaced(client.clone(), &ns),
            Api::<Pod>::namespaced(client.clone(), &ns),
            Api::<AgentSession>::namespaced(client.clone(), &ns),
        );
        self_finishing_blueprint(&client, &ns, "auto", "100ms", "the answer").await;
        create(&jobs, &with_ttl(start_with("own", "s-own", "auto"), 5)).await;
        create(&jobs, &start_with("dflt", "s-dflt", "auto")).await;
        let both = [("own", "s-own"), ("dflt", "s-dflt")];
        for (job, _) in both {
            wait_job(&jobs, job, JobPhase::Succeeded).await;
        }
        for (job, session) in both {
            wait_gone(&jobs, job).await;
            wait_gone(&pods, job).await;
            assert_kept_result(&sessions, session, job, "the answer").await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_child_whose_callback_waits_for_a_busy_parent_is_kept_until_delivered() {
    with_temp_ns("ret-cb", |client, ns| async move {
        install_crds(&client).await;
        let _op = Operator::start(&ns).await;
        let (jobs, pods, sessions) = (
            Api::<AgentJob>::namespaced(client.clone(), &ns),
            Api::<Pod>::namespaced(client.clone(), &ns),
            Api::<AgentSession>::namespaced(client.clone(), &ns),
        );
        self_finishing_blueprint(&client, &ns, "auto", "100ms", "child result").await;
        // The parent's Pod runs until the test ends it: its callback waits in the queue meanwhile.
        create(&jobs, &start("boss", "boss")).await;
        wait_pod(&pods, "boss").await;
        create(
            &jobs,
            &with_ttl(child("c1", "worker", "boss", Some("auto")), 5),
        )
        .await;
        wait_for(&jobs, "c1", TIMEOUT, |j: Option<&AgentJob>| {
            callback_state(j) == Some(CallbackState::Enqueued)
        })
        .await;

        // A job without a callback, ended after c1 with the same TTL: once it is gone, c1's TTL has passed too.
        create(&jobs, &with_ttl(start_with("ctl", "s-ctl", "auto"), 5)).await;
        wait_job(&jobs, "ctl", JobPhase::Succeeded).await;
        wait_gone(&jobs, "ctl").await;
        let kept = jobs
            .get("c1")
            .await
            .expect("c1 is kept: its callback is not delivered");
        assert_eq!(
            kept.status
                .as_ref()
                .unwrap()
                .callback
                .as_ref()
                .unwrap()
                .state,
            CallbackState::Enqueued
        );
        assert!(
            pods.get_opt("c1").await.unwrap().is_some(),
            "its Pod is kept with it"
        );

        succeed_pod(&pods, "boss", "parent turn").await;
        wait_gone(&jobs, "c1").await;
        wait_gone(&pods, "c1").await;
        assert_kept_result(&sessions, "worker", "c1", "child result").await;
        let delivery = &deliveries(&jobs, "boss").await[0];
        assert_eq!(delivered_jobs(delivery), ["c1"]);
        // Without a TTL and without the operator's default, a job is kept.
        assert!(jobs.get_opt("boss").await.unwrap().is_some());
    })
    .await;
}

/// Session retention (`--default-session-retention-seconds`): an idle session with nothing queued and nothing
/// running below it is deleted with its jobs; a session whose callback to its busy parent waits in the parent's
/// queue, and one whose child still runs, are kept until those settle, then go too.
#[tokio::test]
async fn idle_sessions_go_after_the_retention_unless_a_callback_or_a_child_holds_them() {
    with_temp_ns("ret-ses", |client, ns| async move {
        install_crds(&client).await;
        let _op = Operator::start_with(
            &ns,
            Options {
                extra_args: vec!["--default-session-retention-seconds=3".into()],
                ..Default::default()
            },
        )
        .await;
        let (jobs, pods, sessions) = (
            Api::<AgentJob>::namespaced(client.clone(), &ns),
            Api::<Pod>::namespaced(client.clone(), &ns),
            Api::<AgentSession>::namespaced(client.clone(), &ns),
        );
        self_finishing_blueprint(&client, &ns, "auto", "100ms", "done").await;
        // boss runs (its Pod waits for the test); its child kid ends at once, and its callback waits in boss's queue.
        create(&jobs, &start("boss", "boss")).await;
        wait_pod(&pods, "boss").await;
        create(&jobs, &child("kid", "kid", "boss", Some("auto"))).await;
        wait_for(&jobs, "kid", TIMEOUT, |j: Option<&AgentJob>| {
            callback_state(j) == Some(CallbackState::Enqueued)
        })
        .await;
        // boss2 is idle, its child kid2 runs.
        create(&jobs, &start_with("boss2", "boss2", "auto")).await;
        wait_session(&sessions, "boss2", SessionPhase::Idle).await;
        create(&jobs, &child("kid2", "kid2", "boss2", None)).await;
        wait_job(&jobs, "kid2", JobPhase::Running).await;
        wait_session(&sessions, "kid", SessionPhase::Idle).await;

        // quiet went idle after all of them: once it is gone, their retention has passed too.
        create(&jobs, &start_with("quiet", "quiet", "auto")).await;
        wait_session(&sessions, "quiet", SessionPhase::Idle).await;
        wait_gone(&sessions, "quiet").await;
        wait_gone(&jobs, "quiet").await;
        for (session, why) in [
            ("kid", "its callback waits in boss's queue"),
            ("boss2", "its child kid2 runs"),
            ("boss", "it runs"),
            ("kid2", "it runs"),
        ] {
            assert!(
                sessions.get_opt(session).await.unwrap().is_some(),
                "session {session} is kept: {why}"
            );
        }
        assert!(
            jobs.get_opt("kid").await.unwrap().is_some(),
            "kid's job is kept with it"
        );

        // Settled: boss takes kid's callback and goes idle, kid2 ends and boss2 takes its callback. All go.
        succeed_pod(&pods, "boss", "boss turn").await;
        succeed_pod(&pods, "kid2", "kid2 result").await;
        // boss has no blueprint: the delivery that resumes it runs until the test ends it.
        let delivery = e2e::eventually("boss's delivery job", TIMEOUT, || {
            let jobs = jobs.clone();
            async move {
                deliveries(&jobs, "boss")
                    .await
                    .first()
                    .map(|d| d.name_any())
            }
        })
        .await;
        wait_pod(&pods, &delivery).await;
        succeed_pod(&pods, &delivery, "boss took the callback").await;
        for session in ["kid", "boss", "kid2", "boss2"] {
            wait_gone(&sessions, session).await;
        }
        e2e::eventually("every job deleted with its session", TIMEOUT, || {
            let jobs = jobs.clone();
            async move {
                let left = jobs.list(&Default::default()).await.ok()?.items;
                left.is_empty().then_some(())
            }
        })
        .await;
    })
    .await;
}
