//! The lifecycle benchmark: 500 Start AgentJobs applied at once; time until all their Pods exist and all jobs are
//! Succeeded, the operator's peak RSS, API writes per job (from the API server's apiserver_request_total), and, on the
//! same cluster in the same run, the built-in Job controller with 500 batch/v1 Jobs whose Pods finish after the same
//! delay.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crds::{AgentJob, JobPhase};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::{CREATE_PARALLELISM, cpu_time, fresh_namespace, peak_rss_mib};
use crate::agents::{self_finishing_blueprint, start_with};
use crate::operator::{Operator, Options};

pub const N: usize = 500;
/// kwok completes each Pod this long after it starts.
pub const COMPLETION_DELAY: Duration = Duration::from_secs(2);

pub struct Timings {
    pub pods: Duration,
    pub done: Duration,
}

pub struct Outcome {
    pub pods: Duration,
    pub done: Duration,
    pub peak_rss_mib: f64,
    /// CPU time the operator used, from its start to the end of the burst.
    pub operator_cpu: Duration,
    pub writes: Writes,
    pub self_reported_writes: f64,
}

/// Watches the namespace's Pods and objects of kind K; returns when `n` Pods have existed and `done(obj)` holds
/// for `n` objects, with the time of each from `start`.
async fn track<K, F>(client: &Client, ns: &str, start: Instant, done: F) -> Timings
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
    F: Fn(&K) -> bool + Send + 'static,
{
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let objects: Api<K> = Api::namespaced(client.clone(), ns);
    let pod_watch = tokio::spawn(async move {
        let mut seen = HashSet::new();
        let mut stream = watcher(pods, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(event) = stream.next().await {
            let p = event.expect("the Pod watch");
            seen.insert(p.name_any());
            if seen.len() >= N {
                return start.elapsed();
            }
        }
        panic!("pod watch ended");
    });
    let done_watch = tokio::spawn(async move {
        let mut finished = HashSet::new();
        let mut stream = watcher(objects, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(event) = stream.next().await {
            let o = event.expect("the watch");
            if done(&o) {
                finished.insert(o.name_any());
                if finished.len() >= N {
                    return start.elapsed();
                }
            }
        }
        panic!("watch ended");
    });
    let limit = Duration::from_secs(600);
    let pods = tokio::time::timeout(limit, pod_watch)
        .await
        .expect("all Pods within 10 min")
        .unwrap();
    let done = tokio::time::timeout(limit, done_watch)
        .await
        .expect("all done within 10 min")
        .unwrap();
    Timings { pods, done }
}

pub async fn lifecycle(client: &Client) -> Outcome {
    lifecycle_in(client, "bench-agentjobs", Options::default()).await
}

/// The burst in namespace `ns` with an operator started with `options` (the tracing bench's: OTEL_* on or off).
pub async fn lifecycle_in(client: &Client, ns: &str, options: Options) -> Outcome {
    fresh_namespace(client, ns).await;
    let after = format!("{}s", COMPLETION_DELAY.as_secs());
    self_finishing_blueprint(client, ns, "auto", &after, "done").await;
    let op = Operator::start_with(ns, options).await;
    let before = Writes::read(client).await;

    let jobs: Api<AgentJob> = Api::namespaced(client.clone(), ns);
    let start = Instant::now();
    let tracker = {
        let (client, ns) = (client.clone(), ns.to_string());
        tokio::spawn(async move {
            track::<AgentJob, _>(&client, &ns, start, |j| {
                j.status.as_ref().and_then(|s| s.phase) == Some(JobPhase::Succeeded)
            })
            .await
        })
    };
    stream::iter(0..N)
        .map(|i| {
            let jobs = jobs.clone();
            async move {
                jobs.create(
                    &PostParams::default(),
                    &start_with(&format!("job-{i}"), &format!("s-{i}"), "auto"),
                )
                .await
            }
        })
        .buffer_unordered(CREATE_PARALLELISM)
        .try_collect::<Vec<_>>()
        .await
        .expect("create jobs");
    let t = tracker.await.unwrap();
    // Let the last session writes land before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = Writes::read(client).await;
    let peak_rss_mib = peak_rss_mib(op.pid());
    let operator_cpu = cpu_time(op.pid());
    let self_reported_writes = op
        .metric("agent_operator_api_writes_total")
        .await
        .expect("the operator's write counter");
    drop(op);
    Outcome {
        pods: t.pods,
        done: t.done,
        peak_rss_mib,
        operator_cpu,
        writes: after.minus(&before),
        self_reported_writes,
    }
}

pub async fn job_controller(client: &Client) -> Timings {
    let ns = "bench-batchjobs";
    fresh_namespace(client, ns).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let start = Instant::now();
    let tracker = {
        let client = client.clone();
        tokio::spawn(async move {
            track::<Job, _>(&client, ns, start, |j| {
                j.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0) >= 1
            })
            .await
        })
    };
    let after = format!("{}s", COMPLETION_DELAY.as_secs());
    stream::iter(0..N)
        .map(|i| {
            let jobs = jobs.clone();
            let job: Job = serde_json::from_value(json!({
                "metadata": {"name": format!("job-{i}")},
                "spec": {"backoffLimit": 0, "template": {
                    "metadata": {"annotations": {"sim.agentorchestrator.dev/outcome": "succeed", "sim.agentorchestrator.dev/after": after}},
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "agent", "image": "registry.invalid/agent:1"}]}
                }}
            }))
            .unwrap();
            async move { jobs.create(&PostParams::default(), &job).await }
        })
        .buffer_unordered(CREATE_PARALLELISM)
        .try_collect::<Vec<_>>()
        .await
        .expect("create Jobs");
    tracker.await.unwrap()
}

/// Writes counted by the API server (apiserver_request_total), by what the operator writes.
#[derive(Default, Debug)]
pub struct Writes {
    pub sessions: f64,
    pub job_status: f64,
    pub pods: f64,
    pub events: f64,
}

impl Writes {
    async fn read(client: &Client) -> Writes {
        let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
        let text = client.request_text(req).await.expect("apiserver /metrics");
        let mut w = Writes::default();
        for line in text
            .lines()
            .filter(|l| l.starts_with("apiserver_request_total{"))
        {
            let labels = &line[line.find('{').unwrap() + 1..line.rfind('}').unwrap()];
            let get = |k: &str| {
                labels.split("\",").find_map(|kv| {
                    kv.strip_prefix(&format!("{k}=\""))
                        .map(|v| v.trim_end_matches('"').to_string())
                })
            };
            let value: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("unreadable sample: {line}"));
            let verb = get("verb").unwrap_or_default();
            if !matches!(verb.as_str(), "POST" | "PUT" | "PATCH" | "APPLY" | "DELETE") {
                continue;
            }
            let (resource, sub) = (
                get("resource").unwrap_or_default(),
                get("subresource").unwrap_or_default(),
            );
            match (resource.as_str(), sub.as_str(), verb.as_str()) {
                ("agentsessions", _, _) => w.sessions += value,
                ("agentjobs", "status", _) => w.job_status += value,
                ("pods", "", "POST") => w.pods += value,
                ("events", "", _) => w.events += value,
                _ => {}
            }
        }
        w
    }

    /// Per job, with the scheduler's one "Scheduled" Event per Pod taken out of the Event count.
    fn minus(&self, before: &Writes) -> Writes {
        let per = |a: f64, b: f64| (a - b) / N as f64;
        Writes {
            sessions: per(self.sessions, before.sessions),
            job_status: per(self.job_status, before.job_status),
            pods: per(self.pods, before.pods),
            events: (per(self.events, before.events) - 1.0).max(0.0),
        }
    }

    pub fn state_per_job(&self) -> f64 {
        self.sessions + self.job_status + self.pods
    }

    pub fn total_per_job(&self) -> f64 {
        self.state_per_job() + self.events
    }
}
