//! The operator survives being killed; of two replicas only the leader writes (as the API server counts it), and a
//! leader stopped with SIGTERM hands its Lease over.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crds::{AgentJob, AgentSession, JobPhase, labels};
use e2e::agents::*;
use e2e::operator::api_users::ApiUsers;
use e2e::operator::{Operator, Options, lease_holder};
use e2e::{eventually, with_temp_ns};
use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

#[tokio::test]
async fn killing_the_operator_mid_batch_leaves_every_job_with_exactly_one_pod() {
    with_temp_ns("crash", |client, ns| async move {
        install_crds(&client).await;
        self_finishing_blueprint(&client, &ns, "auto", "300ms", "done").await;
        let mut op = Operator::start(&ns).await;
        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        const N: usize = 50;

        // Every Pod UID seen per job, for the whole test: a Pod deleted and created again (the agent run twice)
        // leaves one Pod at the end, but two UIDs here. A watch error fails the test rather than hiding Pods.
        let seen: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>> = Arc::default();
        let watch_error: Arc<Mutex<Option<String>>> = Arc::default();
        let watch = {
            let (pods, seen, watch_error) = (pods.clone(), seen.clone(), watch_error.clone());
            tokio::spawn(async move {
                let mut stream = watcher(pods, watcher::Config::default())
                    .applied_objects()
                    .boxed();
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(pod) => {
                            let job = pod.labels().get(labels::JOB).cloned().unwrap_or_default();
                            let uid = pod.metadata.uid.clone().unwrap_or_default();
                            seen.lock().unwrap().entry(job).or_default().insert(uid);
                        }
                        Err(e) => {
                            *watch_error.lock().unwrap() = Some(e.to_string());
                            return;
                        }
                    }
                }
            })
        };

        let batch: Vec<AgentJob> = (0..N)
            .map(|i| start_with(&format!("job-{i}"), &format!("s-{i}"), "auto"))
            .collect();
        let creating = tokio::spawn({
            let jobs = jobs.clone();
            async move { join_all(batch.iter().map(|j| create(&jobs, j))).await }
        });
        // Kill it as soon as some Pods exist, twice more while the batch is in flight, and restart it each time.
        for at_least in [5, 20, 35] {
            eventually(
                &format!("{at_least} Pods"),
                Duration::from_secs(60),
                || async {
                    let n = pods.list(&ListParams::default()).await.ok()?.items.len();
                    (n >= at_least).then_some(())
                },
            )
            .await;
            op.kill();
            op.restart().await;
        }
        creating.await.unwrap();

        eventually("all jobs Succeeded", Duration::from_secs(90), || async {
            (count_in_phase(&jobs, JobPhase::Succeeded).await == N).then_some(())
        })
        .await;
        let all_jobs = jobs.list(&ListParams::default()).await.unwrap().items;
        let all_pods = pods.list(&ListParams::default()).await.unwrap().items;
        assert_eq!(all_pods.len(), N, "one Pod per job, no more, no less");
        for job in &all_jobs {
            let owned: Vec<&Pod> = all_pods
                .iter()
                .filter(|p| {
                    p.owner_references()
                        .iter()
                        .any(|o| Some(&o.uid) == job.metadata.uid.as_ref())
                })
                .collect();
            assert_eq!(
                owned.len(),
                1,
                "job {} owns {} Pods",
                job.name_any(),
                owned.len()
            );
            assert_eq!(job.status.as_ref().unwrap().result.as_deref(), Some("done"));
        }
        watch.abort();
        if let Some(e) = watch_error.lock().unwrap().clone() {
            panic!("the Pod watch failed, so Pods may have gone unseen: {e}");
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen.len(),
            N,
            "Pods seen for {} jobs, expected {N}: {seen:?}",
            seen.len()
        );
        for (job, uids) in &seen {
            assert_eq!(
                uids.len(),
                1,
                "job {job} had {} Pods over the test (its agent ran more than once)",
                uids.len()
            );
        }
        let sessions: Api<AgentSession> = Api::namespaced(client.clone(), &ns);
        let all_sessions = sessions.list(&ListParams::default()).await.unwrap().items;
        assert_eq!(all_sessions.len(), N, "one session per Start job");
        for s in all_sessions {
            eventually(
                &format!("session {} settled", s.name_any()),
                Duration::from_secs(30),
                || async {
                    let s = sessions.get(&s.name_any()).await.ok()?;
                    let st = s.status?;
                    (st.job_count == 1 && st.current_job.is_none()).then_some(())
                },
            )
            .await;
        }
        println!(
            "crash test: {N} jobs, 3 SIGKILLs, {} Pods, all jobs Succeeded",
            all_pods.len()
        );
    })
    .await;
}

/// Two replicas with leader election, each acting as an API user of its own, and which of them leads: the Lease's
/// holder as the API server has it, which each replica's own leader gauge must agree with (a gauge that cannot be
/// read fails the wait, it does not count as 0).
async fn two_replicas(client: &Client, ns: &str) -> (ApiUsers, Operator, Operator) {
    install_crds(client).await;
    self_finishing_blueprint(client, ns, "auto", "100ms", "done").await;
    let users = ApiUsers::create(client, ns, &["replica-a", "replica-b"]).await;
    let options = |id: &str| Options {
        leader_election: true,
        identity: Some(id.into()),
        kubeconfig: Some(users.kubeconfig(id)),
        ..Default::default()
    };
    let a = Operator::start_with(ns, options("replica-a")).await;
    let b = Operator::start_with(ns, options("replica-b")).await;
    (users, a, b)
}

/// Which replica leads (true: `a`), once the Lease and both replicas' leader gauges agree on one.
async fn leader_is_a(client: &Client, ns: &str, a: &Operator, b: &Operator) -> bool {
    eventually(
        "one leader, by the Lease and both gauges",
        Duration::from_secs(20),
        || async {
            let holder = lease_holder(client, ns).await?;
            let gauges = (
                a.metric("agent_operator_leader").await?,
                b.metric("agent_operator_leader").await?,
            );
            match (holder.as_str(), gauges) {
                ("replica-a", (1.0, 0.0)) => Some(true),
                ("replica-b", (0.0, 1.0)) => Some(false),
                _ => None,
            }
        },
    )
    .await
}

#[tokio::test]
async fn only_the_leader_writes_and_a_follower_takes_over_when_it_dies() {
    with_temp_ns("leader", |client, ns| async move {
        let (users, mut a, mut b) = two_replicas(&client, &ns).await;
        let (leader, follower) = if leader_is_a(&client, &ns, &a, &b).await {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };

        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
        create(&jobs, &start_with("before", "s1", "auto")).await;
        wait_job(&jobs, "before", JobPhase::Succeeded).await;
        // As the API server counted them: the leader wrote; the follower, which it saw asking for the Lease (so
        // its requests are attributed to it), wrote nothing.
        let by_leader = users.dispatched(&leader.identity).await;
        assert!(
            by_leader.writes.is_some_and(|n| n > 0.0),
            "the API server saw no write of the leader: {by_leader:?}"
        );
        let by_follower = users.dispatched(&follower.identity).await;
        assert!(
            by_follower.lease.is_some_and(|n| n > 0.0),
            "the API server saw no Lease request of the follower, so its writes would not be seen either: {by_follower:?}"
        );
        assert_eq!(
            by_follower.writes, None,
            "the API server dispatched writes of the follower"
        );

        leader.kill();
        create(&jobs, &start_with("after", "s2", "auto")).await;
        let standby = follower.identity.clone();
        eventually("the follower to hold the Lease", Duration::from_secs(30), || async {
            (lease_holder(&client, &ns).await.as_deref() == Some(standby.as_str())).then_some(())
        })
        .await;
        wait_job(&jobs, "after", JobPhase::Succeeded).await;
        // The same counter now shows the new leader's writes: the attribution that read "none" above works.
        let by_new_leader = users.dispatched(&follower.identity).await;
        assert!(
            by_new_leader.writes.is_some_and(|n| n > 0.0),
            "the new leader's writes are not seen by the API server: {by_new_leader:?}"
        );
        assert_eq!(follower.metric("agent_operator_leader").await, Some(1.0));
        assert!(follower.is_running());
    })
    .await;
}

#[tokio::test]
async fn a_leader_sent_sigterm_exits_0_and_hands_the_lease_to_the_standby() {
    with_temp_ns("handover", |client, ns| async move {
        let (users, mut a, mut b) = two_replicas(&client, &ns).await;
        let (leader, standby) = if leader_is_a(&client, &ns, &a, &b).await {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
        create(&jobs, &start_with("before", "s1", "auto")).await;
        wait_job(&jobs, "before", JobPhase::Succeeded).await;
        assert_eq!(users.dispatched(&standby.identity).await.writes, None);

        leader.terminate();
        let status = leader.exit_status(Duration::from_secs(30)).await;
        assert_eq!(
            status.code(),
            Some(0),
            "the leader's exit on SIGTERM: {status}"
        );
        // Released, not left to expire: at its exit the Lease is nobody's or already the standby's (a lease left
        // held would still name the old leader for the 4 s of its duration).
        let holder = lease_holder(&client, &ns).await;
        assert!(
            holder.is_none() || holder.as_deref() == Some(standby.identity.as_str()),
            "the Lease after the leader's exit: held by {holder:?}"
        );
        let id = standby.identity.clone();
        eventually(
            "the standby to hold the Lease",
            Duration::from_secs(30),
            || async {
                (lease_holder(&client, &ns).await.as_deref() == Some(id.as_str())).then_some(())
            },
        )
        .await;
        create(&jobs, &start_with("after", "s2", "auto")).await;
        wait_job(&jobs, "after", JobPhase::Succeeded).await;
        let by_standby = users.dispatched(&standby.identity).await;
        assert!(
            by_standby.writes.is_some_and(|n| n > 0.0),
            "the API server saw no write of the new leader: {by_standby:?}"
        );
        assert!(standby.is_running());
    })
    .await;
}
