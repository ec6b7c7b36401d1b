//! The operator's spans of a tree's trace, emitted from the times the API server keeps (see docs/architecture.md,
//! "Tracing"): a job's span and its steps when the job ends, a callback's span when its delivery job is made. Off
//! (no `OTEL_*` configuration), every function here returns at once.

use std::time::SystemTime;

use crate::domain::agent_pod::AgentPod;
use agent_telemetry::context::{span_id_of, span_id_of_step};
use agent_telemetry::{Recorded, TRACEPARENT_ANNOTATION, TraceParent, emit, enabled};
use crds::{AgentJob, AgentJobStatus, AgentSession, QueuedCallback, labels};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::error::Result;

use crate::domain::job::AGENT_CONTAINER;

/// The span a job continues, from its annotation (`None` for the root of a trace).
pub fn parent_of(job: &AgentJob) -> Option<TraceParent> {
    job.annotations()
        .get(TRACEPARENT_ANNOTATION)
        .and_then(|v| TraceParent::parse(v))
}

/// The job's own span.
pub fn context_of(job: &AgentJob) -> TraceParent {
    TraceParent::of_job(
        job.uid().as_deref().unwrap_or_default(),
        job.annotations()
            .get(TRACEPARENT_ANNOTATION)
            .map(String::as_str),
    )
}

/// Makes `job` (about to be created) continue the span of `previous`: a callback delivery continues the job
/// that ran on the session before it, so the tree's trace goes on through every hop.
pub fn continue_job(job: &mut AgentJob, previous: Option<&AgentJob>) {
    if let Some(previous) = previous.filter(|p| p.uid().is_some()) {
        job.annotations_mut().insert(
            TRACEPARENT_ANNOTATION.to_string(),
            context_of(previous).header(),
        );
    }
}

/// The job a child applied with `parentSessionName` (and no trace context) continues: its parent session's current
/// job, else its last. `None` when the job needs nothing or the parent has no job to continue.
pub fn parent_job_to_continue(job: &AgentJob, parent: Option<&AgentSession>) -> Option<String> {
    if job.annotations().contains_key(TRACEPARENT_ANNOTATION) {
        return None;
    }
    job.spec.parent_session_name.as_ref()?;
    let status = parent?.status.as_ref()?;
    status
        .current_job
        .clone()
        .or_else(|| status.last_job.clone())
}

/// On first sight of such a child, records the parent's job span as the span it continues (one metadata write,
/// only with tracing on); the write brings the job back here, so the caller stops this reconcile.
pub async fn adopt_parent_trace(job: &AgentJob, ctx: &Context) -> Result<Option<Action>> {
    if !enabled() {
        return Ok(None);
    }
    let ns = job.namespace().unwrap_or_default();
    let parent = job
        .spec
        .parent_session_name
        .as_ref()
        .and_then(|p| ctx.session(&ns, p));
    let Some(parent_job) = parent_job_to_continue(job, parent.as_deref())
        .and_then(|name| ctx.jobs.get(&ObjectRef::new(&name).within(&ns)))
    else {
        return Ok(None);
    };
    let api: Api<AgentJob> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = serde_json::json!({"metadata": {"annotations": {
        TRACEPARENT_ANNOTATION: context_of(&parent_job).header()
    }}});
    ctx.metrics.write("agentjobs", "patch");
    api.patch_metadata(
        &job.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    ctx.wrote(job);
    Ok(Some(Action::await_change()))
}

fn system_time(t: &Time) -> SystemTime {
    SystemTime::from(t.0)
}

/// When the agent container began to run, from the Pod's status.
fn container_started(pod: &AgentPod) -> Option<Time> {
    let status = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == AGENT_CONTAINER)?;
    let state = status.state.as_ref()?;
    state
        .running
        .as_ref()
        .and_then(|r| r.started_at.clone())
        .or_else(|| state.terminated.as_ref().and_then(|t| t.started_at.clone()))
}

/// The spans of a job that has just ended (its final status written): the job from creation to end, and its
/// steps (waiting for its turn, Pod starting, running). A callback delivery links the children it carried.
pub fn job_ended(job: &AgentJob, status: &AgentJobStatus, pod: Option<&AgentPod>) {
    if !enabled() {
        return;
    }
    let Some(uid) = job.uid() else { return };
    let ids = context_of(job);
    let created = job
        .metadata
        .creation_timestamp
        .as_ref()
        .map(system_time)
        .unwrap_or_else(SystemTime::now);
    let ended = status
        .completion_time
        .as_ref()
        .map(system_time)
        .unwrap_or_else(SystemTime::now);
    let phase = status.phase.map(|p| p.as_str()).unwrap_or("Unknown");
    let delivers = crate::domain::callback::rules::delivered_uids(job);
    let name = if delivers.is_empty() {
        format!("AgentJob {}", job.spec.job_type.as_str())
    } else {
        "AgentJob callback delivery".to_string()
    };
    let mut span = Recorded::new(name, ids, parent_of(job), created, ended)
        .attribute("k8s.namespace.name", job.namespace().unwrap_or_default())
        .attribute("agentorchestrator.job", job.name_any())
        .attribute("agentorchestrator.session", job.spec.session_name.clone())
        .attribute("agentorchestrator.phase", phase)
        .attribute(
            "agentorchestrator.reason",
            status.reason.clone().unwrap_or_default(),
        );
    if let Some(tree) = job.labels().get(labels::TREE) {
        span = span.attribute("agentorchestrator.tree", tree.clone());
    }
    span.links = delivers
        .iter()
        .map(|child| TraceParent {
            trace_id: ids.trace_id,
            span_id: span_id_of(child),
        })
        .collect();
    if phase != "Succeeded" {
        span.error = Some(status.error.clone().unwrap_or_else(|| phase.to_string()));
    }

    let pod_created = pod
        .filter(|p| p.metadata.name.is_some())
        .and_then(|p| p.metadata.creation_timestamp.as_ref())
        .map(system_time);
    let running = pod
        .and_then(container_started)
        .or_else(|| status.start_time.clone())
        .map(|t| system_time(&t));
    let step = |name: &str, start: SystemTime, end: SystemTime| {
        Recorded::new(
            name,
            TraceParent {
                trace_id: ids.trace_id,
                span_id: span_id_of_step(&uid, name),
            },
            Some(ids),
            start,
            end,
        )
    };
    let mut spans = vec![span];
    match (pod_created, running) {
        (Some(pod_created), Some(running)) => {
            spans.push(step("waiting", created, pod_created));
            spans.push(step("pod starting", pod_created, running));
            spans.push(step("running", running, ended));
        }
        (None, Some(running)) => {
            spans.push(step("waiting", created, running));
            spans.push(step("running", running, ended));
        }
        (Some(pod_created), None) => {
            spans.push(step("waiting", created, pod_created));
            spans.push(step("pod starting", pod_created, ended));
        }
        (None, None) => spans.push(step("waiting", created, ended)),
    }
    emit(spans);
}

/// The spans of callbacks that have just left their queue in the delivery job `delivery`: each from its
/// enqueue time to now, under the child job that called back.
pub fn callbacks_delivered(
    delivery: &AgentJob,
    carried: &[QueuedCallback],
    child: impl Fn(&QueuedCallback) -> Option<std::sync::Arc<AgentJob>>,
) {
    if !enabled() {
        return;
    }
    let now = SystemTime::now();
    let spans = carried.iter().filter_map(|e| {
        let child_span = child(e).map(|j| context_of(&j))?;
        Some(
            Recorded::new(
                "callback",
                TraceParent {
                    trace_id: child_span.trace_id,
                    span_id: span_id_of_step(&e.child_job_uid, "callback"),
                },
                Some(child_span),
                system_time(&e.enqueue_time),
                now,
            )
            .attribute("agentorchestrator.child_job", e.child_job.clone())
            .attribute("agentorchestrator.delivered_by", delivery.name_any()),
        )
    });
    emit(spans.collect::<Vec<_>>());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::yaml;

    #[test]
    fn a_kubectl_child_continues_its_parents_current_job_else_its_last() {
        let child = |extra: &str| -> AgentJob {
            yaml(&format!(
                "apiVersion: agentorchestrator.dev/v1alpha1\nkind: AgentJob\nmetadata: {{name: c, namespace: ns{extra}}}\n\
                 spec: {{type: Start, sessionName: c, prompt: p, parentSessionName: boss}}\n"
            ))
        };
        let parent = |status: &str| -> AgentSession {
            yaml(&format!(
                "apiVersion: agentorchestrator.dev/v1alpha1\nkind: AgentSession\nmetadata: {{name: boss, namespace: ns}}\n\
                 spec: {{}}\nstatus: {status}\n"
            ))
        };
        let busy = parent("{currentJob: boss-2, lastJob: boss-1}");
        let idle = parent("{lastJob: boss-1}");
        assert_eq!(
            parent_job_to_continue(&child(""), Some(&busy)).as_deref(),
            Some("boss-2")
        );
        assert_eq!(
            parent_job_to_continue(&child(""), Some(&idle)).as_deref(),
            Some("boss-1")
        );
        assert_eq!(parent_job_to_continue(&child(""), None), None);
        let traced = child(", annotations: {agentorchestrator.dev/traceparent: x}");
        assert_eq!(
            parent_job_to_continue(&traced, Some(&busy)),
            None,
            "the gateway's context stays"
        );
    }

    #[test]
    fn a_delivery_continues_the_previous_job_of_its_session() {
        let root: AgentJob = yaml(
            "apiVersion: agentorchestrator.dev/v1alpha1\nkind: AgentJob\nmetadata: {name: r, namespace: ns, uid: u-r}\n\
             spec: {type: Start, sessionName: s, prompt: p}\n",
        );
        assert_eq!(parent_of(&root), None);
        let mut delivery: AgentJob = yaml(
            "apiVersion: agentorchestrator.dev/v1alpha1\nkind: AgentJob\nmetadata: {name: d, namespace: ns}\n\
             spec: {type: Resume, sessionName: s, prompt: p}\n",
        );
        continue_job(&mut delivery, Some(&root));
        assert_eq!(parent_of(&delivery), Some(context_of(&root)));
        delivery.metadata.uid = Some("u-d".into());
        let own = context_of(&delivery);
        assert_eq!(own.trace_id, context_of(&root).trace_id);
        assert_ne!(own.span_id, context_of(&root).span_id);
    }
}
