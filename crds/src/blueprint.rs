//! `AgentBlueprint`: a reusable agent configuration, and the Pod template of the sessions that use it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};

use crate::governance::{Scope, TreeLimits};
use serde::{Deserialize, Serialize};

/// An agent configuration template: the system prompt, the MCP servers the agent may use and the Pod its jobs run
/// in. Sessions name a blueprint when they start and keep it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "agentorchestrator.dev",
    version = "v1alpha1",
    kind = "AgentBlueprint",
    namespaced,
    shortname = "agb",
    category = "agents",
    printcolumn(
        name = "Description",
        type_ = "string",
        json_path = ".spec.description"
    ),
    printcolumn(name = "Disabled", type_ = "boolean", json_path = ".spec.disabled"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AgentBlueprintSpec {
    /// What this agent is for; shown to orchestrator agents by list_agent_blueprints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10000))]
    pub description: Option<String>,

    /// System prompt given to the agent when its session starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100000))]
    pub system_prompt: Option<String>,

    /// Free-form tags; the gateway's X-Agent-Tags header filters blueprints by them (all must match).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub tags: Vec<String>,

    /// A disabled blueprint is hidden from agents and cannot start new sessions.
    #[serde(default)]
    pub disabled: bool,

    /// MCP servers the agent may use, by name. Header and env values may contain ${AGENT_SESSION_NAME}, replaced
    /// with the session's own name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mcp_servers: BTreeMap<String, McpServer>,

    /// The Pod every job of a session with this blueprint runs in. Fields left out take the operator's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<PodTemplate>,

    /// Limits on the tree below each session of this blueprint, enforced by the gateway (a tool error naming the
    /// limit) and the operator (the job fails with reason TreeLimitExceeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<TreeLimits>,

    /// What this blueprint's agents may reach through the gateway: `Tree` (default: their own session and its
    /// descendants) or `Namespace` (any session of the namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
}

/// One MCP server: `http` (url, headers) or `stdio` (command, args, env).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type == 'http' ? has(self.url) && !has(self.command) : has(self.command) && !has(self.url)").message("an http MCP server needs url (and no command); a stdio server needs command (and no url)"),
    validation = Rule::new("self.type == 'http' || (!has(self.headers) || size(self.headers) == 0)").message("headers apply to http MCP servers only"),
    validation = Rule::new("self.type == 'stdio' || ((!has(self.args) || size(self.args) == 0) && (!has(self.env) || size(self.env) == 0))").message("args and env apply to stdio MCP servers only"),
)]
pub struct McpServer {
    /// Transport: `http` (streamable HTTP) or `stdio` (a local command).
    #[serde(rename = "type")]
    pub transport: McpTransport,
    /// URL of an http server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub url: Option<String>,
    /// Request headers of an http server.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Command of a stdio server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub command: Option<String>,
    /// Arguments of a stdio server's command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment of a stdio server's command.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// MCP transports.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum McpTransport {
    #[default]
    Http,
    Stdio,
}

/// The parts of a Pod a blueprint decides. The operator adds the rest: the agent runner's environment, the
/// gateway token, the restricted security context and the owner reference.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplate {
    /// Container image of the agent (defaults to the operator's --agent-image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Always, IfNotPresent or Never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Entrypoint (defaults to the image's, normally agent-runner).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments of the entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Extra environment of the agent container. The operator's AGENT_* variables take precedence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Compute resources of the agent container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// ServiceAccount the Pod runs as; agent Pods get no API access unless this account is granted some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Extra annotations of the Pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Extra labels of the Pod (the operator's own labels take precedence).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Node selector of the Pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the Pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// A persistent workspace for the session: one PersistentVolumeClaim per session, mounted in every job's Pod
    /// and deleted with the session. Without it each Pod gets an emptyDir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<WorkspaceSpec>,
}

/// The session workspace volume.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceSpec {
    /// Requested size, for example 1Gi.
    pub size: Quantity,
    /// StorageClass of the claim (the cluster default when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Where the workspace is mounted in the agent container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
}
