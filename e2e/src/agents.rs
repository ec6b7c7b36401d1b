//! Working with the project's own kinds in end-to-end tests: installing the CRDs, making jobs, finishing Pods.

use std::time::Duration;

use crds::{AgentJob, AgentSession, JobPhase, SessionPhase};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::wait::conditions;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use crate::wait_for;

pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Applies the CRDs generated from the types (the same YAML `make crds` writes) and waits until they are served.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, crd) in crds::all_crds() {
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("apply CRD {name}: {e}"));
        wait_for(&api, &name, TIMEOUT, conditions::is_crd_established()).await;
    }
}

/// An AgentJob from its spec (JSON), named `name`.
pub fn job(name: &str, spec: Value) -> AgentJob {
    serde_json::from_value(json!({
        "apiVersion": "agentorchestrator.dev/v1alpha1",
        "kind": "AgentJob",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("job {name}: {e}"))
}

pub fn start(name: &str, session: &str) -> AgentJob {
    job(
        name,
        json!({"type": "Start", "sessionName": session, "prompt": format!("start {session}")}),
    )
}

pub fn resume(name: &str, session: &str) -> AgentJob {
    job(
        name,
        json!({"type": "Resume", "sessionName": session, "prompt": format!("resume {session}")}),
    )
}

pub async fn create(api: &Api<AgentJob>, job: &AgentJob) -> AgentJob {
    api.create(&PostParams::default(), job)
        .await
        .unwrap_or_else(|e| panic!("create AgentJob {}: {e}", job.name_any()))
}

pub fn job_phase(job: Option<&AgentJob>) -> Option<JobPhase> {
    job.and_then(|j| j.status.as_ref()?.phase)
}

pub fn job_reason(job: &AgentJob) -> Option<&str> {
    job.status.as_ref()?.reason.as_deref()
}

/// Where a job's callback stands (`None`: it has none yet).
pub fn callback(job: &AgentJob) -> Option<&crds::CallbackProgress> {
    job.status.as_ref()?.callback.as_ref()
}

pub fn callback_state(job: Option<&AgentJob>) -> Option<crds::CallbackState> {
    job.and_then(|j| callback(j).map(|c| c.state))
}

/// Waits until job `name` reaches `phase` and returns it.
pub async fn wait_job(api: &Api<AgentJob>, name: &str, phase: JobPhase) -> AgentJob {
    wait_for(api, name, TIMEOUT, move |j: Option<&AgentJob>| {
        job_phase(j) == Some(phase)
    })
    .await
    .expect("job exists")
}

pub async fn wait_session(
    api: &Api<AgentSession>,
    name: &str,
    phase: SessionPhase,
) -> AgentSession {
    wait_for(api, name, TIMEOUT, move |s: Option<&AgentSession>| {
        s.and_then(|s| s.status.as_ref()?.phase) == Some(phase)
    })
    .await
    .expect("session exists")
}

/// Waits until the Pod of job `name` exists and returns it.
pub async fn wait_pod(api: &Api<Pod>, name: &str) -> Pod {
    wait_for(api, name, TIMEOUT, |p: Option<&Pod>| p.is_some())
        .await
        .expect("pod exists")
}

/// Tells kwok to end a running Pod: `succeed` (with `message` as termination message) or `fail` (with `exit_code`).
pub async fn finish_pod(api: &Api<Pod>, name: &str, outcome: &str, message: &str, exit_code: i32) {
    let patch = json!({"metadata": {"annotations": {
        "sim.agentorchestrator.dev/outcome": outcome,
        "sim.agentorchestrator.dev/message": message,
        "sim.agentorchestrator.dev/exit-code": exit_code.to_string(),
    }}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("annotate pod {name}: {e}"));
}

pub async fn succeed_pod(api: &Api<Pod>, name: &str, message: &str) {
    finish_pod(api, name, "succeed", message, 0).await
}

/// A blueprint whose Pods finish by themselves (kwok completes them `after` their start, with `message`).
pub async fn self_finishing_blueprint(
    client: &Client,
    ns: &str,
    name: &str,
    after: &str,
    message: &str,
) {
    let bp: crds::AgentBlueprint = serde_json::from_value(json!({
        "apiVersion": "agentorchestrator.dev/v1alpha1", "kind": "AgentBlueprint",
        "metadata": {"name": name},
        "spec": {"description": "finishes by itself", "podTemplate": {"annotations": {
            "sim.agentorchestrator.dev/outcome": "succeed",
            "sim.agentorchestrator.dev/after": after,
            "sim.agentorchestrator.dev/message": message,
        }}}
    }))
    .expect("valid blueprint");
    Api::<crds::AgentBlueprint>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &bp)
        .await
        .unwrap_or_else(|e| panic!("create blueprint {name}: {e}"));
}

/// A Start job of session `session` with blueprint `blueprint`.
pub fn start_with(name: &str, session: &str, blueprint: &str) -> AgentJob {
    job(
        name,
        json!({"type": "Start", "sessionName": session, "prompt": format!("start {session}"), "blueprint": blueprint}),
    )
}

/// Counts the jobs of the namespace in `phase`.
pub async fn count_in_phase(api: &Api<AgentJob>, phase: JobPhase) -> usize {
    api.list(&Default::default())
        .await
        .map(|l| {
            l.items
                .iter()
                .filter(|j| job_phase(Some(j)) == Some(phase))
                .count()
        })
        .unwrap_or(0)
}

/// A job with `callback: true` starting session `session` as a child of `parent`.
pub fn child(name: &str, session: &str, parent: &str, blueprint: Option<&str>) -> AgentJob {
    let mut spec = json!({"type": "Start", "sessionName": session, "prompt": format!("work on {session}"),
        "parentSessionName": parent, "callback": true});
    if let Some(bp) = blueprint {
        spec["blueprint"] = json!(bp);
    }
    job(name, spec)
}

/// The callback-delivery Resume jobs of session `parent`, oldest first.
pub async fn deliveries(api: &Api<AgentJob>, parent: &str) -> Vec<AgentJob> {
    let selector = format!(
        "{}=true,{}={parent}",
        crds::labels::CALLBACK_DELIVERY,
        crds::labels::SESSION
    );
    let mut jobs = api
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
        .expect("list deliveries")
        .items;
    jobs.sort_by_key(|j| {
        (
            j.metadata.creation_timestamp.as_ref().map(|t| t.0),
            j.name_any(),
        )
    });
    jobs
}

/// The child job names a delivery job carries.
pub fn delivered_jobs(job: &AgentJob) -> Vec<String> {
    job.annotations()
        .get(crds::labels::DELIVERS_JOBS)
        .map(|s| s.split(',').map(String::from).collect())
        .unwrap_or_default()
}
