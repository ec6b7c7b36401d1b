//! What a job's life costs in API writes and Events, counted against the simulated API server (`simulation`): one
//! Start job from `kubectl apply` to its session Idle, and one callback from the child's Pod Succeeded to the
//! parent's Resume Pod. The counts do not depend on load, so they are checked here, at every build, rather than
//! only by the 500-job burst of `make bench` (which counts the same writes from the API server's metrics).

use crds::{AgentJob, AgentSession, JobPhase, SessionPhase};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::simulation::{Call, Simulation};

fn job(name: &str, spec: serde_json::Value) -> AgentJob {
    serde_json::from_value(json!({
        "apiVersion": "agentorchestrator.dev/v1alpha1", "kind": "AgentJob",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

/// The writes of `calls` by what they write, in the categories `make bench` reports.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    /// Bench's state writes: session creates and writes, job status writes, Pod creates.
    sessions: usize,
    job_status: usize,
    pods: usize,
    /// Writes bench does not count: job metadata (labels, ownerReferences, finalizers) and creates of jobs.
    jobs: usize,
    events: Vec<String>,
}

impl Tally {
    fn of(calls: &[Call]) -> Tally {
        let mut t = Tally::default();
        for c in calls.iter().filter(|c| c.is_write()) {
            match c.resource.as_str() {
                "events" => t.events.extend(
                    c.event
                        .as_ref()
                        .map(|(reason, kind)| format!("{kind}/{reason}")),
                ),
                r if r.starts_with("agentsessions") => t.sessions += 1,
                "agentjobs/status" => t.job_status += 1,
                "pods" if c.method == "POST" => t.pods += 1,
                "agentjobs" => t.jobs += 1,
                _ => {}
            }
        }
        t
    }

    fn state(&self) -> usize {
        self.sessions + self.job_status + self.pods
    }
}

fn show(calls: &[Call]) -> String {
    calls
        .iter()
        .filter(|c| c.is_write() || c.method == "GET")
        .map(|c| {
            let what = c
                .event
                .as_ref()
                .map(|(r, k)| format!(" {k}/{r}"))
                .unwrap_or_default();
            let by = c
                .manager
                .as_ref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default();
            format!(
                "{} {} {}{what}{by} -> {}",
                c.method, c.resource, c.name, c.code
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A Start job applied and run through the Pod states kwok gives it (created, Pending, Running), not ended yet.
async fn start_job(sim: &mut Simulation, name: &str, session: &str, extra: serde_json::Value) {
    let mut spec =
        json!({"type": "Start", "sessionName": session, "prompt": format!("start {session}")});
    merge(&mut spec, extra);
    sim.apply("agentjobs", &job(name, spec));
    sim.run().await;
    assert!(
        sim.get::<Pod>("pods", name).is_some(),
        "{}",
        show(&sim.calls())
    );
    for phase in ["Pending", "Running"] {
        sim.kubelet(name, phase, "");
        sim.run().await;
    }
}

async fn succeed(sim: &mut Simulation, name: &str) {
    sim.kubelet(name, "Succeeded", &format!("result of {name}"));
    sim.run().await;
}

fn merge(spec: &mut serde_json::Value, extra: serde_json::Value) {
    if let Some(extra) = extra.as_object() {
        for (k, v) in extra {
            spec[k] = v.clone();
        }
    }
}

#[tokio::test]
async fn a_start_jobs_life() {
    let mut sim = Simulation::new();
    start_job(&mut sim, "j1", "s1", json!({})).await;
    succeed(&mut sim, "j1").await;
    let calls = sim.calls();
    let job: AgentJob = sim.get("agentjobs", "j1").unwrap();
    assert_eq!(
        job.status.as_ref().and_then(|s| s.phase),
        Some(JobPhase::Succeeded)
    );
    let session: AgentSession = sim.get("agentsessions", "s1").unwrap();
    assert_eq!(
        session.status.as_ref().and_then(|s| s.phase),
        Some(SessionPhase::Idle)
    );
    assert!(sim.errors.is_empty(), "{:?}", sim.errors);
    let tally = Tally::of(&calls);
    println!(
        "one Start job: {tally:?}, {} state writes\n{}",
        tally.state(),
        show(&calls)
    );
    // Each state write is a transition a person sees: the session made, Running and Idle; the job Running and
    // Succeeded; the Pod. A Pod not started yet costs no job write (the Pod tells it, and the binding is durable
    // in the job's ownerReference). The job's start and end are told once, by Events on the job.
    assert_eq!(
        (tally.sessions, tally.job_status, tally.pods, tally.jobs),
        (3, 2, 1, 1),
        "session create, Running, Idle; job Running, Succeeded; the Pod; the job's ownerReference"
    );
    assert_eq!(tally.state(), 6);
    assert_eq!(tally.events, ["AgentJob/Started", "AgentJob/Succeeded"]);
}

/// The calls from the child's Pod Succeeded to the parent's Resume Pod (in the order the simulation makes them;
/// the child's own session going Idle is left out, it runs beside this), and the Events of that stretch.
#[tokio::test]
async fn a_callback_to_an_idle_parent() {
    let mut sim = Simulation::new();
    start_job(&mut sim, "boss", "boss", json!({})).await;
    succeed(&mut sim, "boss").await;
    start_job(
        &mut sim,
        "c1",
        "w1",
        json!({"parentSessionName": "boss", "callback": true}),
    )
    .await;
    sim.forget_calls();
    succeed(&mut sim, "c1").await;
    assert!(sim.errors.is_empty(), "{:?}", sim.errors);
    let parent: AgentSession = sim.get("agentsessions", "boss").unwrap();
    let delivery = parent
        .status
        .and_then(|s| s.current_job)
        .expect("a delivery job runs on the parent");
    assert_ne!(delivery, "boss");
    let calls = sim.calls();
    println!("one callback:\n{}", show(&calls));
    let resumed = calls
        .iter()
        .position(|c| c.resource == "pods" && c.method == "POST")
        .expect("the delivery job's Pod created");
    let path: Vec<String> = calls[..=resumed]
        .iter()
        .filter(|c| !c.is_event() && c.name != "w1")
        .map(|c| {
            let name = if c.name == delivery {
                "DELIVERY"
            } else {
                &c.name
            };
            format!("{} {} {name}", c.method, c.resource)
        })
        .collect();
    assert_eq!(
        path,
        [
            "PATCH agentjobs/status c1",       // the child Succeeded
            "GET agentjobs c1",                // fresh read: the cache may miss a mark
            "PATCH agentsessions/status boss", // queued
            "PATCH agentjobs/status c1",       // marked Enqueued, and at the same time:
            "POST agentjobs ",                 // the delivery job
            "PATCH agentsessions/status boss", // taken by the parent
            "PATCH agentjobs/status c1",       // marked Delivered (beside the rest)
            "PATCH agentjobs c1",              // its finalizer removed (beside the rest)
            "POST pods ", // the parent resumes (its job was made with its ownerReference: no patch first)
        ]
    );
    let tally = Tally::of(&calls);
    println!("{tally:?}");
    assert_eq!(
        tally.events,
        [
            "AgentJob/Succeeded",
            "AgentSession/CallbackQueued",
            "AgentSession/CallbacksDelivered",
        ]
    );
}
