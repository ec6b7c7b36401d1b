//! What the stores keep of each object: only what the operator reads. Applied to every watch event before the
//! store sees it, so memory follows the objects' number, not their size (a Pod carries its prompt in an annotation,
//! a client-side `kubectl apply` copies the whole object into another, and managedFields repeat every field name).
//!
//! Nothing trimmed is ever written back: every write builds its own body (server-side apply of status, merge
//! patches of finalizers, creates from the spec), so a trimmed copy cannot erase a field on the server.

use crds::{AgentBlueprint, AgentJob, AgentSession};
use kube::api::ObjectMeta;

use crate::domain::agent_pod::AgentPod;
use crate::domain::order::is_finished;

/// The annotation `kubectl apply` (client side) leaves: a full copy of the object as applied.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn trim_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// A job keeps its spec while it may still need a Pod; a finished job's prompt (up to 400 kB) is never read again.
pub fn job(job: &mut AgentJob) {
    trim_meta(&mut job.metadata);
    if is_finished(job) {
        job.spec.prompt = String::new();
    }
}

pub fn session(session: &mut AgentSession) {
    trim_meta(&mut session.metadata);
}

pub fn blueprint(blueprint: &mut AgentBlueprint) {
    trim_meta(&mut blueprint.metadata);
}

/// Of a Pod the operator reads its identity (name, labels, owner, creation and deletion times), its phase, reason,
/// message and start time, and each container's name and terminated state (see `domain::job::observe`).
/// A Pod is decoded as an `AgentPod` (identity, phase, conditions and container states only); of its metadata the
/// annotations go too (the prompt travels in one), and of its conditions all but `DisruptionTarget`, the only one
/// read (`domain::attempts::temporary_cause`).
pub fn pod(pod: &mut AgentPod) {
    trim_meta(&mut pod.metadata);
    pod.metadata.annotations = None;
    if let Some(conditions) = pod.status.as_mut().and_then(|s| s.conditions.as_mut()) {
        conditions.retain(|c| c.type_ == DISRUPTION_TARGET);
    }
}

const DISRUPTION_TARGET: &str = "DisruptionTarget";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::yaml;
    use crate::domain::job::{PodOutcome, observe};

    /// A Pod as the API server sends it, decoded as the watch decodes it.
    fn agent_pod(phase: &str) -> AgentPod {
        yaml(&format!(
            r#"
metadata:
  name: j1
  namespace: ns
  uid: u-p
  labels: {{agentorchestrator.dev/session: s1}}
  annotations: {{agentorchestrator.dev/prompt: "a very long prompt"}}
  ownerReferences: [{{apiVersion: agentorchestrator.dev/v1alpha1, kind: AgentJob, name: j1, uid: u-j, controller: true}}]
  managedFields: [{{manager: kubelet, operation: Update}}]
spec:
  containers: [{{name: agent, image: runner, env: [{{name: AGENT_PROMPT, value: "a very long prompt"}}]}}]
status:
  phase: {phase}
  startTime: "2026-01-01T00:00:00Z"
  podIP: 10.0.0.1
  containerStatuses:
  - name: agent
    image: runner
    imageID: sha256:abc
    ready: false
    restartCount: 0
    state: {{terminated: {{exitCode: 3, reason: Error, message: "it broke", finishedAt: "2026-01-01T00:01:00Z"}}}}
    lastState: {{terminated: {{exitCode: 1}}}}
"#
        ))
    }

    #[test]
    fn a_trimmed_pod_keeps_what_the_operator_reads() {
        for phase in ["Running", "Succeeded", "Failed", "Pending"] {
            let full = agent_pod(phase);
            let mut trimmed = full.clone();
            pod(&mut trimmed);
            assert_eq!(observe(&trimmed), observe(&full), "{phase}");
            assert_eq!(trimmed.metadata.labels, full.metadata.labels);
            assert_eq!(
                trimmed.metadata.owner_references,
                full.metadata.owner_references
            );
            assert_eq!(
                trimmed.status.as_ref().unwrap().start_time,
                full.status.as_ref().unwrap().start_time
            );
        }
        let mut trimmed = agent_pod("Failed");
        pod(&mut trimmed);
        assert!(matches!(
            observe(&trimmed),
            PodOutcome::Failed {
                exit_code: Some(3),
                ..
            }
        ));
        let text = serde_json::to_string(&trimmed).unwrap();
        assert!(!text.contains("a very long prompt"), "{text}");
        assert!(!text.contains("managedFields"), "{text}");
        assert!(!text.contains("sha256"), "{text}");
    }

    /// The store's copy is what `follow_pod` reads for a temporary cause: a trim that dropped the waiting state or
    /// the DisruptionTarget condition (as it once did) hid an image that cannot be pulled and an eviction.
    #[test]
    fn a_trimmed_pod_still_shows_why_its_run_failed_outside_the_agent() {
        use crate::domain::attempts::temporary_cause;
        let cases = [
            (
                "{phase: Pending, containerStatuses: [{name: agent, state: {waiting: {reason: ImagePullBackOff, message: no such image}}}]}",
                "ContainerNotStarted",
            ),
            (
                "{phase: Failed, conditions: [{type: Ready, status: 'False'}, {type: DisruptionTarget, status: 'True', reason: EvictionByEvictionAPI}]}",
                "Evicted",
            ),
        ];
        for (status, reason) in cases {
            let mut trimmed: AgentPod = yaml(&format!(
                "metadata: {{name: j1, namespace: ns}}\nstatus: {status}"
            ));
            pod(&mut trimmed);
            let cause = temporary_cause(&trimmed).map(|c| c.reason);
            assert_eq!(cause, Some(reason), "{status}");
            let conditions = trimmed.status.as_ref().unwrap().conditions.as_ref();
            assert!(conditions.is_none_or(|c| c.iter().all(|c| c.type_ == DISRUPTION_TARGET)));
        }
    }

    #[test]
    fn a_finished_job_drops_its_prompt_and_a_running_one_keeps_it() {
        let job_in = |phase: &str| -> AgentJob {
            yaml(&format!(
                r#"
metadata:
  name: j1
  namespace: ns
  annotations: {{kubectl.kubernetes.io/last-applied-configuration: "{{...}}", agentorchestrator.dev/parent-uid: u-1}}
  managedFields: [{{manager: kubectl, operation: Apply}}]
spec: {{type: Start, sessionName: s1, prompt: "the prompt"}}
status: {{phase: {phase}}}
"#
            ))
        };
        let mut running = job_in("Running");
        job(&mut running);
        assert_eq!(running.spec.prompt, "the prompt");
        assert!(running.metadata.managed_fields.is_none());
        let annotations = running.metadata.annotations.as_ref().unwrap();
        assert!(!annotations.contains_key(LAST_APPLIED));
        assert!(annotations.contains_key(crds::labels::PARENT_UID));
        let mut done = job_in("Succeeded");
        job(&mut done);
        assert_eq!(done.spec.prompt, "");
    }
}
