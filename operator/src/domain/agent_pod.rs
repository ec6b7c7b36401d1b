//! What the operator keeps of an agent Pod: its identity (metadata: name, UID, labels, owner), its phase, its
//! conditions (`trim::pod` keeps only `DisruptionTarget`) and how its agent container waits, runs or ended. The watch decodes Pods straight into this, so nothing else of a Pod is ever
//! held: k8s-openapi's `Pod` is 2.4 KB before any of its contents (its spec alone 1.5 KB, each container status
//! 0.75 KB), and at 10,000 finished jobs the Pod store was the operator's largest. Writes (create, delete) use
//! the full `Pod` type; only the store and what reads it use this one.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::{
    ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, PodCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AgentPodStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPodStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<PodCondition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_statuses: Option<Vec<AgentContainerStatus>>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentContainerStatus {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<AgentContainerState>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentContainerState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<ContainerStateWaiting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<ContainerStateRunning>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminated: Option<ContainerStateTerminated>,
}

impl kube::Resource for AgentPod {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Pod".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "pods".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;

    #[test]
    fn it_is_read_from_a_pod_as_the_api_server_sends_it() {
        let full = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "j1", "namespace": "ns", "uid": "u-p",
                "labels": {"agentorchestrator.dev/session": "s1"},
                "ownerReferences": [{"apiVersion": "agentorchestrator.dev/v1alpha1", "kind": "AgentJob",
                    "name": "j1", "uid": "u-j", "controller": true}]},
            "spec": {"containers": [{"name": "agent", "image": "runner",
                "env": [{"name": "AGENT_PROMPT", "value": "a very long prompt"}]}]},
            "status": {"phase": "Failed", "startTime": "2026-01-01T00:00:00Z", "podIP": "10.0.0.1",
                "containerStatuses": [{"name": "agent", "image": "runner", "imageID": "sha256:abc", "ready": false,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": 3, "reason": "Error", "message": "it broke",
                        "startedAt": "2026-01-01T00:00:01Z", "finishedAt": "2026-01-01T00:01:00Z"}}}]}
        });
        let pod: AgentPod = serde_json::from_value(full).unwrap();
        assert_eq!(pod.meta().name.as_deref(), Some("j1"));
        assert_eq!(
            pod.metadata.owner_references.as_ref().unwrap()[0].uid,
            "u-j"
        );
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        let terminated = status.container_statuses.as_ref().unwrap()[0]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap();
        assert_eq!(terminated.exit_code, 3);
        assert!(
            !serde_json::to_string(&pod)
                .unwrap()
                .contains("a very long prompt"),
            "the spec is not kept"
        );
        assert_eq!(
            AgentPod::url_path(&(), Some("ns")),
            "/api/v1/namespaces/ns/pods"
        );
    }

    #[test]
    fn it_is_a_fraction_of_a_pod() {
        assert!(
            std::mem::size_of::<AgentPod>() * 4
                < std::mem::size_of::<k8s_openapi::api::core::v1::Pod>(),
            "{} bytes against {}",
            std::mem::size_of::<AgentPod>(),
            std::mem::size_of::<k8s_openapi::api::core::v1::Pod>()
        );
    }
}
