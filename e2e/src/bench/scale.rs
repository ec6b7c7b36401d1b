//! The scale benchmark: `SESSIONS` sessions, each with a finished Start job and its finished Pod, made directly
//! (not run) so that 30,000 objects take minutes, not hours. Each is a copy of one job, session and Pod that the
//! operator really ran (names and UIDs replaced), so the operator finds exactly what it would have written and has
//! nothing to redo. The operator is started on them; the figures are its resident memory once settled and at
//! peak, and the time to run one new job and to deliver one callback, against the same at `BASELINE` sessions.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crds::{AgentJob, AgentSession, JobPhase, SessionPhase, labels};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use super::{fresh_namespace, peak_rss_mib, percentile, rss_mib};
use crate::agents::{child, self_finishing_blueprint, start_with};
use crate::operator::Operator;

pub const SESSIONS: usize = 10_000;

/// The large size: `SESSIONS`, or `BENCH_SCALE_SESSIONS` for a quicker look at the same figures.
pub fn sessions() -> usize {
    std::env::var("BENCH_SCALE_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SESSIONS)
}
pub const BASELINE: usize = 100;
/// Samples of each timing at each size (the median is reported).
pub const ROUNDS: usize = 5;
/// Copies made at once (each is seven requests in a row: job, session, the job's owner, their statuses, Pod and its status).
const PARALLEL: usize = 96;
const LIMIT: Duration = Duration::from_secs(900);

const TEMPLATE_JOB: &str = "scaletpljob";
const TEMPLATE_SESSION: &str = "scaletplsession";

pub struct Figures {
    pub sessions: usize,
    /// Making the copies, until every Pod is Succeeded.
    pub created_in: Duration,
    /// From the operator's start until its reconciles stop.
    pub settled_in: Duration,
    pub settled_rss_mib: f64,
    /// VmHWM at the end (after the timings below).
    pub peak_rss_mib: f64,
    /// Creating a Start job to its `Succeeded` (median of `ROUNDS`).
    pub new_job: Duration,
    /// A child's Pod `Succeeded` to the idle parent's Resume Pod created (median of `ROUNDS`).
    pub callback: Duration,
    /// Writes the operator made while settling (0: it found nothing to redo).
    pub settling_writes: f64,
    /// kube-apiserver SIGKILLed and started again: from its /readyz to the Pod of a job created then.
    pub after_restart: Duration,
}

/// A scheduler nobody runs: the copies' Pods stay bound to no node.
const PARKED_SCHEDULER: &str = "bench-parked";

/// The template's Pod as a copy that no node runs: unbound, for a scheduler nobody runs, without kwok's outcome
/// annotations. Its final status is then written directly. Bound to a kwok node, every copy waited for kwok's stages
/// (about 3.5 Pods a second); the operator reads only a Pod's identity, phase and container states, which stay
/// those of the Pod it really ran.
fn parked(mut pod: Value) -> Value {
    pod["spec"]
        .as_object_mut()
        .expect("Pod spec")
        .remove("nodeName");
    pod["spec"]["schedulerName"] = PARKED_SCHEDULER.into();
    if let Some(annotations) = pod["metadata"]["annotations"].as_object_mut() {
        annotations.retain(|k, _| !k.starts_with("sim.agentorchestrator.dev/"));
    }
    pod
}

/// The job, session and Pod the operator made for one finished Start job, as JSON without server-set metadata.
struct Template {
    job: String,
    job_status: String,
    session: String,
    session_status: String,
    pod: String,
    pod_status: String,
    job_uid: String,
    session_uid: String,
}

fn strip(mut v: Value) -> (String, String) {
    let status = v["status"].take();
    let meta = v["metadata"].as_object_mut().expect("metadata");
    for field in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "managedFields",
        "generation",
        "finalizers",
    ] {
        meta.remove(field);
    }
    v.as_object_mut().unwrap().remove("status");
    (v.to_string(), json!({ "status": status }).to_string())
}

async fn template(client: &Client, ns: &str) -> Template {
    let op = Operator::start(ns).await;
    let jobs: Api<AgentJob> = Api::namespaced(client.clone(), ns);
    let sessions: Api<AgentSession> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    jobs.create(
        &PostParams::default(),
        &start_with(TEMPLATE_JOB, TEMPLATE_SESSION, "auto"),
    )
    .await
    .expect("template job");
    let idle = |s: Option<&AgentSession>| {
        s.and_then(|s| s.status.as_ref()?.phase) == Some(SessionPhase::Idle)
    };
    let session = tokio::time::timeout(LIMIT, await_condition(sessions, TEMPLATE_SESSION, idle))
        .await
        .expect("template session Idle")
        .unwrap()
        .unwrap();
    drop(op);
    let job = jobs.get(TEMPLATE_JOB).await.unwrap();
    let pod = pods.get(TEMPLATE_JOB).await.unwrap();
    assert_eq!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded")
    );
    let (job_uid, session_uid) = (job.uid().unwrap(), session.uid().unwrap());
    let (job, job_status) = strip(serde_json::to_value(&job).unwrap());
    let (session, session_status) = strip(serde_json::to_value(&session).unwrap());
    let (pod, pod_status) = strip(parked(serde_json::to_value(&pod).unwrap()));
    Template {
        job,
        job_status,
        session,
        session_status,
        pod,
        pod_status,
        job_uid,
        session_uid,
    }
}

impl Template {
    fn fill(&self, text: &str, i: usize, job_uid: &str, session_uid: &str) -> Value {
        let text = text
            .replace(TEMPLATE_SESSION, &format!("s-{i}"))
            .replace(TEMPLATE_JOB, &format!("j-{i}"))
            .replace(&self.job_uid, job_uid)
            .replace(&self.session_uid, session_uid);
        serde_json::from_str(&text).unwrap()
    }

    /// One copy: the job, its session (bound to it by UID), their statuses, the Pod (owned by the job).
    async fn copy(&self, client: &Client, ns: &str, i: usize) -> kube::Result<()> {
        let jobs: Api<AgentJob> = Api::namespaced(client.clone(), ns);
        let sessions: Api<AgentSession> = Api::namespaced(client.clone(), ns);
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let pp = PostParams::default();
        // The job is owned by its session and the session names the job's UID: the job comes first, without its
        // owner, which is added once the session exists.
        let mut job = self.fill(&self.job, i, "", "");
        job["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove("ownerReferences");
        let job: AgentJob = serde_json::from_value(job).unwrap();
        let job_uid = jobs.create(&pp, &job).await?.uid().unwrap();
        let session: AgentSession =
            serde_json::from_value(self.fill(&self.session, i, &job_uid, "")).unwrap();
        let session_uid = sessions.create(&pp, &session).await?.uid().unwrap();
        let status = |text: &str| self.fill(text, i, &job_uid, &session_uid);
        let merge = PatchParams::default();
        let owners = status(&self.job)["metadata"]["ownerReferences"].take();
        if !owners.is_null() {
            jobs.patch(
                &format!("j-{i}"),
                &merge,
                &Patch::Merge(json!({"metadata": {"ownerReferences": owners}})),
            )
            .await?;
        }
        jobs.patch_status(
            &format!("j-{i}"),
            &merge,
            &Patch::Merge(status(&self.job_status)),
        )
        .await?;
        sessions
            .patch_status(
                &format!("s-{i}"),
                &merge,
                &Patch::Merge(status(&self.session_status)),
            )
            .await?;
        let pod: Pod = serde_json::from_value(status(&self.pod)).unwrap();
        pods.create(&pp, &pod).await?;
        pods.patch_status(
            &format!("j-{i}"),
            &merge,
            &Patch::Merge(status(&self.pod_status)),
        )
        .await?;
        Ok(())
    }
}

/// Waits until `n` Pods of the namespace are Succeeded (the copies are written so; the template's by kwok).
async fn pods_succeeded(client: &Client, ns: &str, n: usize) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut done = HashSet::new();
    let mut stream = watcher(pods, watcher::Config::default())
        .applied_objects()
        .boxed();
    let deadline = Instant::now() + LIMIT;
    while done.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let pod = tokio::time::timeout(left, stream.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {n} Pods Succeeded after {LIMIT:?}", done.len()))
            .expect("the Pod watch goes on")
            .expect("the Pod watch");
        if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded") {
            done.insert(pod.name_any());
        }
    }
}

/// Waits until the operator's reconciles stop (the counter unchanged for two seconds); returns its writes.
async fn settled(op: &Operator) -> f64 {
    let deadline = Instant::now() + LIMIT;
    let reconciles = || op.metric("agent_operator_reconciles_total");
    let mut last = reconciles().await;
    let mut calm = 0;
    while calm < 4 {
        assert!(Instant::now() < deadline, "the operator never settled");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = reconciles().await;
        calm = if now == last && now.is_some() {
            calm + 1
        } else {
            0
        };
        last = now;
    }
    op.metric("agent_operator_api_writes_total")
        .await
        .unwrap_or(0.0)
}

async fn run_one_job(jobs: &Api<AgentJob>, round: usize) -> Duration {
    let name = format!("probe-{round}");
    let start = Instant::now();
    jobs.create(
        &PostParams::default(),
        &start_with(&name, &format!("probe-{round}"), "auto"),
    )
    .await
    .expect("probe job");
    let succeeded = |j: Option<&AgentJob>| {
        j.and_then(|j| j.status.as_ref()?.phase) == Some(JobPhase::Succeeded)
    };
    tokio::time::timeout(LIMIT, await_condition(jobs.clone(), &name, succeeded))
        .await
        .expect("probe job Succeeded")
        .unwrap();
    start.elapsed()
}

/// An idle parent, then a child that calls it back: from the child Pod's `Succeeded` to the parent's Resume Pod.
async fn deliver_one(client: &Client, ns: &str, round: usize) -> Duration {
    let jobs: Api<AgentJob> = Api::namespaced(client.clone(), ns);
    let sessions: Api<AgentSession> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let (parent, kid) = (format!("boss-{round}"), format!("kid-{round}"));
    jobs.create(
        &PostParams::default(),
        &start_with(&parent, &parent, "auto"),
    )
    .await
    .expect("parent job");
    let idle = |s: Option<&AgentSession>| {
        s.and_then(|s| s.status.as_ref()?.phase) == Some(SessionPhase::Idle)
    };
    tokio::time::timeout(LIMIT, await_condition(sessions, &parent, idle))
        .await
        .expect("parent Idle")
        .unwrap();
    let selector = format!("{} in ({parent},{kid})", labels::SESSION);
    let mut stream = watcher(pods, watcher::Config::default().labels(&selector))
        .applied_objects()
        .boxed();
    jobs.create(
        &PostParams::default(),
        &child(&kid, &kid, &parent, Some("auto")),
    )
    .await
    .expect("child job");
    let (mut ended, mut resumed) = (None, None);
    let deadline = Instant::now() + LIMIT;
    while resumed.is_none() || ended.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let pod = tokio::time::timeout(left, stream.next())
            .await
            .expect("the callback within the limit")
            .expect("the Pod watch goes on")
            .expect("the Pod watch");
        let now = Instant::now();
        let pod_labels = pod.labels();
        let session = pod_labels.get(labels::SESSION).map(String::as_str);
        let job_type = pod_labels.get(labels::JOB_TYPE).map(String::as_str);
        if session == Some(parent.as_str()) && job_type == Some("Resume") {
            resumed.get_or_insert(now);
        }
        if session == Some(kid.as_str())
            && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded")
        {
            ended.get_or_insert(now);
        }
    }
    resumed.unwrap().saturating_duration_since(ended.unwrap())
}

/// The whole benchmark at `n` sessions, in namespace `bench-scale-N`.
pub async fn scale(client: &Client, n: usize) -> Figures {
    let ns = format!("bench-scale-{n}");
    fresh_namespace(client, &ns).await;
    self_finishing_blueprint(client, &ns, "auto", "0s", "done").await;
    let template = template(client, &ns).await;

    let start = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let template = &template;
            let ns = ns.as_str();
            async move { template.copy(client, ns, i).await }
        })
        .buffer_unordered(PARALLEL)
        .try_collect::<Vec<_>>()
        .await
        .expect("make the copies");
    // The template's own Pod is one of them.
    pods_succeeded(client, &ns, n + 1).await;
    let created_in = start.elapsed();

    let start = Instant::now();
    let op = Operator::start(&ns).await;
    let settling_writes = settled(&op).await;
    let settled_in = start.elapsed();
    let settled_rss_mib = rss_mib(op.pid());

    let jobs: Api<AgentJob> = Api::namespaced(client.clone(), &ns);
    let mut new_jobs = Vec::new();
    let mut callbacks = Vec::new();
    for round in 0..ROUNDS {
        new_jobs.push(run_one_job(&jobs, round).await);
        callbacks.push(deliver_one(client, &ns, round).await);
    }
    let after_restart = act_after_restart(client, &ns).await;
    let peak_rss_mib = peak_rss_mib(op.pid());
    drop(op);
    // Leave no 30,000 objects behind for the benchmarks after this one.
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .delete(&ns, &Default::default())
        .await;
    Figures {
        sessions: n,
        created_in,
        settled_in,
        settled_rss_mib,
        peak_rss_mib,
        new_job: percentile(&new_jobs, 50.0),
        callback: percentile(&callbacks, 50.0),
        settling_writes,
        after_restart,
    }
}

/// Restarts kube-apiserver, then creates a job as soon as it is ready again: the time until the operator has made
/// the job's Pod. Every watch of the operator breaks and lists again meanwhile.
async fn act_after_restart(client: &Client, ns: &str) -> Duration {
    crate::control_plane::restart_api_server().await;
    let ready = Instant::now();
    let jobs: Api<AgentJob> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let name = "after-restart";
    // The client's connections broke with the API server: the first calls may need a retry.
    let job = start_with(name, name, "auto");
    let deadline = Instant::now() + Duration::from_secs(30);
    // A request sent on a connection the old server held open may never be answered: each try gets a second.
    loop {
        let tried = tokio::time::timeout(
            Duration::from_secs(1),
            jobs.create(&PostParams::default(), &job),
        )
        .await;
        match tried {
            Ok(Ok(_)) => break,
            // An earlier try that timed out may have reached the server after all.
            Ok(Err(kube::Error::Api(e))) if e.code == 409 => break,
            Ok(Err(e)) => assert!(
                Instant::now() < deadline,
                "create {name} after the restart: {e}"
            ),
            Err(_) => assert!(
                Instant::now() < deadline,
                "create {name} after the restart: no answer"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::timeout(
        LIMIT,
        await_condition(pods, name, |p: Option<&Pod>| p.is_some()),
    )
    .await
    .expect("the Pod after the restart")
    .unwrap();
    ready.elapsed()
}
