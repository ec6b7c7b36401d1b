//! `make bench`: measures the operator against the local control plane and prints the figures.
//!
//! lifecycle: 500 Start AgentJobs applied at once; time until all their Pods exist and all jobs are Succeeded, the
//! operator's peak RSS, API writes per job (from the API server's apiserver_request_total), and, on the same cluster
//! in the same run, the built-in Job controller with 500 batch/v1 Jobs whose Pods finish after the same delay.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crds::{AgentJob, JobPhase};
use e2e::agents::{install_crds, self_finishing_blueprint, start_with};
use e2e::operator::Operator;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

const N: usize = 500;
/// kwok completes each Pod this long after it starts.
const COMPLETION_DELAY: Duration = Duration::from_secs(2);
const CREATE_PARALLELISM: usize = 64;

#[tokio::main]
async fn main() {
    let client = e2e::client().await;
    install_crds(&client).await;
    let ours = lifecycle(&client).await;
    let theirs = job_controller(&client).await;

    println!(
        "\n== lifecycle: {N} Start AgentJobs at once (Pods finish {}s after start) ==",
        COMPLETION_DELAY.as_secs()
    );
    println!(
        "all {N} Pods exist after            {:>8.2} s   (target <= 10 s)",
        ours.pods.as_secs_f64()
    );
    println!(
        "all {N} jobs Succeeded after        {:>8.2} s   = delay + {:.2} s (target <= delay + 20 s)",
        ours.done.as_secs_f64(),
        (ours.done.saturating_sub(COMPLETION_DELAY)).as_secs_f64()
    );
    println!(
        "operator peak RSS                   {:>8.1} MiB (target < 100 MiB)",
        ours.peak_rss_mib
    );
    println!(
        "API writes per job (apiserver)      {:>8.2}     (state {:.2}: sessions {:.2}, job status {:.2}, pods {:.2}; events {:.2}) (target <= 5)",
        ours.writes.total_per_job(),
        ours.writes.state_per_job(),
        ours.writes.sessions,
        ours.writes.job_status,
        ours.writes.pods,
        ours.writes.events
    );
    println!(
        "API writes per job (operator count) {:>8.2}",
        ours.self_reported_writes / N as f64
    );
    println!("\n== built-in Job controller: {N} batch/v1 Jobs, same cluster, same delay ==");
    println!(
        "all {N} Pods exist after            {:>8.2} s",
        theirs.pods.as_secs_f64()
    );
    println!(
        "all {N} Jobs complete after         {:>8.2} s",
        theirs.done.as_secs_f64()
    );
    println!(
        "\nratio (Job controller / operator): Pods exist {:.1}x, all done {:.1}x (target >= 6x)",
        theirs.pods.as_secs_f64() / ours.pods.as_secs_f64(),
        theirs.done.as_secs_f64() / ours.done.as_secs_f64()
    );
}

struct Timings {
    pods: Duration,
    done: Duration,
}

struct Outcome {
    pods: Duration,
    done: Duration,
    peak_rss_mib: f64,
    writes: Writes,
    self_reported_writes: f64,
}

async fn fresh_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await.unwrap().is_some() {
        let _ = api.delete(name, &DeleteParams::default()).await;
        e2e::wait_for(
            &api,
            name,
            Duration::from_secs(120),
            |n: Option<&Namespace>| n.is_none(),
        )
        .await;
    }
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &ns).await.unwrap();
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), name);
    e2e::wait_for(
        &accounts,
        "default",
        Duration::from_secs(30),
        |s: Option<&_>| s.is_some(),
    )
    .await;
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
        while let Some(Ok(p)) = stream.next().await {
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
        while let Some(Ok(o)) = stream.next().await {
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

async fn lifecycle(client: &Client) -> Outcome {
    let ns = "bench-agentjobs";
    fresh_namespace(client, ns).await;
    let after = format!("{}s", COMPLETION_DELAY.as_secs());
    self_finishing_blueprint(client, ns, "auto", &after, "done").await;
    let op = Operator::start(ns).await;
    let before = Writes::read(client).await;

    let jobs: Api<AgentJob> = Api::namespaced(client.clone(), ns);
    let start = Instant::now();
    let tracker = {
        let client = client.clone();
        tokio::spawn(async move {
            track::<AgentJob, _>(&client, ns, start, |j| {
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
    let peak_rss_mib = peak_rss_mib(&op);
    let self_reported_writes = op.metric("agent_operator_api_writes_total").await;
    drop(op);
    Outcome {
        pods: t.pods,
        done: t.done,
        peak_rss_mib,
        writes: after.minus(&before),
        self_reported_writes,
    }
}

async fn job_controller(client: &Client) -> Timings {
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

fn peak_rss_mib(op: &Operator) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", op.pid())).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Writes counted by the API server (apiserver_request_total), by what the operator writes.
#[derive(Default, Debug)]
struct Writes {
    sessions: f64,
    job_status: f64,
    pods: f64,
    events: f64,
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
            let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap_or(0.0);
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

    fn state_per_job(&self) -> f64 {
        self.sessions + self.job_status + self.pods
    }

    fn total_per_job(&self) -> f64 {
        self.state_per_job() + self.events
    }
}
