//! Callback benchmarks.
//!
//! latency: 200 idle parents with one running child each; the children's Pods are finished one after the other
//! (each once the previous callback has arrived: the latency of one callback on an otherwise quiet operator), or at
//! a steady pace (under load), and each callback's latency is the time from the child Pod's `Succeeded` to the Pod
//! of the parent's Resume job being created, both seen by this process through one watch of the namespace's Pods.
//!
//! fan-out: 500 running children of one idle parent are finished at once; the figure is the time from the last
//! child Pod's `Succeeded` to every child job recorded as `Delivered`, with the number of Resume jobs that carried
//! them and a check that every child was delivered exactly once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crds::{AgentJob, AgentSession, CallbackState, SessionPhase, labels};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use super::{CREATE_PARALLELISM, fresh_namespace, percentile};
use crate::agents::{child, self_finishing_blueprint, start_with, succeed_pod};
use crate::operator::{Operator, Options};

pub const PARENTS: usize = 200;
pub const FAN_OUT: usize = 500;
/// How the children of the latency run are finished.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// Each once the previous callback has arrived.
    OneAtATime,
    /// One every this long, whether or not earlier callbacks have arrived.
    Every(Duration),
}
const LIMIT: Duration = Duration::from_secs(300);

pub struct Latency {
    pub samples: Vec<Duration>,
}

impl Latency {
    pub fn p(&self, p: f64) -> Duration {
        percentile(&self.samples, p)
    }
}

pub struct FanOut {
    pub delivered_after_last_child: Duration,
    pub resume_jobs: usize,
    pub distinct_delivered: usize,
    pub deliveries_total: usize,
}

async fn create_all(jobs: &Api<AgentJob>, all: Vec<AgentJob>) {
    stream::iter(all)
        .map(|job| {
            let jobs = jobs.clone();
            async move { jobs.create(&PostParams::default(), &job).await }
        })
        .buffer_unordered(CREATE_PARALLELISM)
        .try_collect::<Vec<_>>()
        .await
        .expect("create jobs");
}

async fn wait_count(what: &str, mut check: impl AsyncFnMut() -> usize, n: usize) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let got = check().await;
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {got} of {n} after {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn idle_sessions(api: &Api<AgentSession>) -> usize {
    api.list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .iter()
                .filter(|s| s.status.as_ref().and_then(|st| st.phase) == Some(SessionPhase::Idle))
                .count()
        })
        .unwrap_or(0)
}

/// The Pods of Start jobs that are running (the children, once their parents have finished).
async fn running_starts(api: &Api<Pod>) -> usize {
    let selector = format!("{}=Start", labels::JOB_TYPE);
    api.list(&ListParams::default().labels(&selector))
        .await
        .map(|l| {
            l.items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .count()
        })
        .unwrap_or(0)
}

/// When each Pod was first seen Succeeded, and when each Resume Pod was first seen at all, by session.
#[derive(Default)]
struct PodTimes {
    succeeded: HashMap<String, Instant>,
    resumed: HashMap<String, Instant>,
}

fn watch_pods(pods: Api<Pod>) -> (Arc<Mutex<PodTimes>>, tokio::task::JoinHandle<()>) {
    let times = Arc::new(Mutex::new(PodTimes::default()));
    let task = {
        let times = times.clone();
        tokio::spawn(async move {
            let mut stream = watcher(pods, watcher::Config::default())
                .applied_objects()
                .boxed();
            // A watch error ends the benchmark loudly: Pods missed here would be latencies never measured.
            while let Some(event) = stream.next().await {
                let pod = event.expect("the Pod watch");
                let now = Instant::now();
                let pod_labels = pod.labels();
                let session = pod_labels.get(labels::SESSION).cloned().unwrap_or_default();
                let mut t = times.lock().unwrap();
                if pod_labels.get(labels::JOB_TYPE).map(String::as_str) == Some("Resume") {
                    t.resumed.entry(session.clone()).or_insert(now);
                }
                if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded") {
                    t.succeeded.entry(pod.name_any()).or_insert(now);
                }
            }
        })
    };
    (times, task)
}

/// A fresh namespace with the parents' blueprint (Pods that finish at once) and an operator for it.
struct Bench {
    _operator: Operator,
    jobs: Api<AgentJob>,
    sessions: Api<AgentSession>,
    pods: Api<Pod>,
}

impl Bench {
    async fn start(client: &Client, ns: &str, options: Options) -> Bench {
        fresh_namespace(client, ns).await;
        self_finishing_blueprint(client, ns, "parent", "0s", "parent done").await;
        Bench {
            _operator: Operator::start_with(ns, options).await,
            jobs: Api::namespaced(client.clone(), ns),
            sessions: Api::namespaced(client.clone(), ns),
            pods: Api::namespaced(client.clone(), ns),
        }
    }
}

pub async fn latency(client: &Client, pace: Pace) -> Latency {
    let ns = match pace {
        Pace::OneAtATime => "bench-callbacks-serial",
        Pace::Every(_) => "bench-callbacks-paced",
    };
    latency_in(client, ns, pace, Options::default()).await
}

/// The latency run in namespace `ns` with an operator started with `options` (the tracing bench's).
pub async fn latency_in(client: &Client, ns: &str, pace: Pace, options: Options) -> Latency {
    let Bench {
        _operator,
        jobs,
        sessions,
        pods,
    } = Bench::start(client, ns, options).await;

    let parents = (0..PARENTS)
        .map(|i| start_with(&format!("parent-{i}"), &format!("p-{i}"), "parent"))
        .collect();
    create_all(&jobs, parents).await;
    wait_count("idle parents", || idle_sessions(&sessions), PARENTS).await;
    // Children without a blueprint: kwok keeps their Pods running until this benchmark finishes them.
    let children = (0..PARENTS)
        .map(|i| {
            child(
                &format!("child-{i}"),
                &format!("c-{i}"),
                &format!("p-{i}"),
                None,
            )
        })
        .collect();
    create_all(&jobs, children).await;
    wait_count("running children", || running_starts(&pods), PARENTS).await;

    let (times, watch) = watch_pods(pods.clone());
    for i in 0..PARENTS {
        succeed_pod(&pods, &format!("child-{i}"), &format!("result {i}")).await;
        match pace {
            Pace::Every(gap) => tokio::time::sleep(gap).await,
            Pace::OneAtATime => {
                let parent = format!("p-{i}");
                let deadline = Instant::now() + LIMIT;
                while !times.lock().unwrap().resumed.contains_key(&parent) {
                    assert!(Instant::now() < deadline, "{parent} was not resumed");
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
    }
    let deadline = Instant::now() + LIMIT;
    let samples = loop {
        {
            let t = times.lock().unwrap();
            if t.resumed.len() >= PARENTS {
                break (0..PARENTS)
                    .map(|i| {
                        let done = t.succeeded[&format!("child-{i}")];
                        t.resumed[&format!("p-{i}")].saturating_duration_since(done)
                    })
                    .collect::<Vec<_>>();
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {PARENTS} parents resumed",
                t.resumed.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    watch.abort();
    Latency { samples }
}

pub async fn fan_out(client: &Client) -> FanOut {
    let ns = "bench-fanout";
    let Bench {
        _operator,
        jobs,
        sessions,
        pods,
    } = Bench::start(client, ns, Options::default()).await;

    create_all(&jobs, vec![start_with("hub-start", "hub", "parent")]).await;
    wait_count("idle parent", || idle_sessions(&sessions), 1).await;
    let children = (0..FAN_OUT)
        .map(|i| child(&format!("leaf-{i}"), &format!("leaf-{i}"), "hub", None))
        .collect();
    create_all(&jobs, children).await;
    wait_count("running children", || running_starts(&pods), FAN_OUT).await;

    let (times, watch) = watch_pods(pods.clone());
    let delivered: Arc<Mutex<(HashSet<String>, Option<Instant>)>> = Default::default();
    let delivered_watch = {
        let (jobs, delivered) = (jobs.clone(), delivered.clone());
        tokio::spawn(async move {
            let mut stream = watcher(jobs, watcher::Config::default())
                .applied_objects()
                .boxed();
            while let Some(event) = stream.next().await {
                let job = event.expect("the AgentJob watch");
                let state = job
                    .status
                    .as_ref()
                    .and_then(|s| s.callback.as_ref())
                    .map(|c| c.state);
                if job.spec.callback && state == Some(CallbackState::Delivered) {
                    let mut d = delivered.lock().unwrap();
                    d.0.insert(job.name_any());
                    if d.0.len() == FAN_OUT && d.1.is_none() {
                        d.1 = Some(Instant::now());
                    }
                }
            }
        })
    };
    stream::iter(0..FAN_OUT)
        .map(|i| {
            let pods = pods.clone();
            async move { succeed_pod(&pods, &format!("leaf-{i}"), &format!("leaf {i}")).await }
        })
        .buffer_unordered(CREATE_PARALLELISM)
        .collect::<Vec<_>>()
        .await;
    let deadline = Instant::now() + LIMIT;
    let all_delivered = loop {
        if let Some(t) = delivered.lock().unwrap().1 {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {FAN_OUT} callbacks delivered",
            delivered.lock().unwrap().0.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    watch.abort();
    delivered_watch.abort();
    let last_child = {
        let t = times.lock().unwrap();
        (0..FAN_OUT)
            .filter_map(|i| t.succeeded.get(&format!("leaf-{i}")).copied())
            .max()
            .expect("children succeeded")
    };

    let resumes = crate::agents::deliveries(&jobs, "hub").await;
    let carried: Vec<String> = resumes
        .iter()
        .flat_map(|j| {
            j.annotations()
                .get(labels::DELIVERS)
                .map(|s| s.split(',').map(String::from).collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .collect();
    let distinct: HashSet<&String> = carried.iter().collect();
    FanOut {
        delivered_after_last_child: all_delivered.saturating_duration_since(last_child),
        resume_jobs: resumes.len(),
        distinct_delivered: distinct.len(),
        deliveries_total: carried.len(),
    }
}

/// One status write of an AgentSession, as the operator makes it (server-side apply of the status subresource),
/// timed from this process: `n` in a row on a session no operator watches. A callback's path is a chain of such
/// round trips, so this is the unit its latency is made of on the machine at hand.
pub async fn status_write_round_trip(client: &Client, n: usize) -> Latency {
    let ns = "bench-write-round-trip";
    fresh_namespace(client, ns).await;
    let sessions: Api<AgentSession> = Api::namespaced(client.clone(), ns);
    let session: AgentSession = serde_json::from_value(serde_json::json!({
        "apiVersion": "agentorchestrator.dev/v1alpha1", "kind": "AgentSession",
        "metadata": {"name": "round-trip"}, "spec": {}
    }))
    .unwrap();
    sessions
        .create(&PostParams::default(), &session)
        .await
        .expect("create the session");
    let params = kube::api::PatchParams::apply("bench").force();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let status = serde_json::json!({
            "apiVersion": "agentorchestrator.dev/v1alpha1", "kind": "AgentSession",
            "status": {"phase": "Idle", "lastJob": format!("job-{i}"), "jobCount": i}
        });
        let started = Instant::now();
        sessions
            .patch_status("round-trip", &params, &kube::api::Patch::Apply(&status))
            .await
            .expect("apply the session's status");
        samples.push(started.elapsed());
    }
    Latency { samples }
}
