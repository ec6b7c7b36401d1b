//! The operator survives being killed, and of two replicas only the leader writes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crds::{AgentJob, AgentSession, JobPhase, labels};
use e2e::agents::*;
use e2e::operator::{Operator, Options};
use e2e::{eventually, with_temp_ns};
use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

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

#[tokio::test]
async fn only_the_leader_writes_and_a_follower_takes_over_when_it_dies() {
    with_temp_ns("leader", |client, ns| async move {
        install_crds(&client).await;
        self_finishing_blueprint(&client, &ns, "auto", "100ms", "done").await;
        let options = |id: &str| Options {
            leader_election: true,
            identity: Some(id.into()),
            ..Default::default()
        };
        let mut a = Operator::start_with(&ns, options("replica-a")).await;
        let mut b = Operator::start_with(&ns, options("replica-b")).await;
        let leader_is_a = eventually("a leader", Duration::from_secs(20), || async {
            match (
                a.metric("agent_operator_leader").await,
                b.metric("agent_operator_leader").await,
            ) {
                (x, y) if x == 1.0 && y == 0.0 => Some(true),
                (x, y) if x == 0.0 && y == 1.0 => Some(false),
                _ => None,
            }
        })
        .await;
        let (leader, follower) = if leader_is_a {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };

        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
        create(&jobs, &start_with("before", "s1", "auto")).await;
        wait_job(&jobs, "before", JobPhase::Succeeded).await;
        assert!(
            leader.metric("agent_operator_api_writes_total").await > 0.0,
            "the leader wrote"
        );
        assert_eq!(
            follower.metric("agent_operator_api_writes_total").await,
            0.0,
            "the follower wrote"
        );

        leader.kill();
        let killed = Instant::now();
        create(&jobs, &start_with("after", "s2", "auto")).await;
        eventually("the follower to lead", Duration::from_secs(20), || async {
            (follower.metric("agent_operator_leader").await == 1.0).then_some(())
        })
        .await;
        let handover = killed.elapsed();
        wait_job(&jobs, "after", JobPhase::Succeeded).await;
        println!("leader handover took {handover:?} (lease duration 4s)");
        assert!(
            handover <= Duration::from_secs(6),
            "handover took {handover:?}, more than the 4 s lease and its renewal slack"
        );
        assert!(follower.is_running());
    })
    .await;
}
