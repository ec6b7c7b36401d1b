//! `AgentSession`: the long-lived conversation of one agent, and the queue of callbacks waiting for it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::governance::{Budget, ParentClosePolicy, Usage};
use crate::schema;

/// A long-lived agent conversation. Created by its first Start AgentJob (or directly); every later AgentJob on it
/// resumes the same conversation. Callbacks from child sessions wait in status.callbackQueue until the session is
/// idle, and are then delivered together as one Resume job.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "agentorchestrator.dev",
    version = "v1alpha1",
    kind = "AgentSession",
    namespaced,
    status = "AgentSessionStatus",
    shortname = "ags",
    category = "agents",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Parent", type_ = "string", json_path = ".status.parentSessionName"),
    printcolumn(name = "Queue", type_ = "integer", json_path = ".status.callbackQueueLength"),
    printcolumn(name = "Jobs", type_ = "integer", json_path = ".status.jobCount"),
    printcolumn(name = "Cost", type_ = "string", json_path = ".status.treeUsage.costUSD"),
    printcolumn(name = "Current", type_ = "string", json_path = ".status.currentJob", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 60 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("AgentSession names are DNS-1123 labels of at most 60 characters"),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.blueprint) == has(oldSelf.blueprint) && (!has(self.blueprint) || self.blueprint == oldSelf.blueprint)").message("blueprint is immutable"),
    validation = Rule::new("has(self.parentSessionName) == has(oldSelf.parentSessionName) && (!has(self.parentSessionName) || self.parentSessionName == oldSelf.parentSessionName)").message("parentSessionName is immutable: it records the first parent; status.parentSessionName is the current one"),
    validation = Rule::new("has(self.projectDir) == has(oldSelf.projectDir) && (!has(self.projectDir) || self.projectDir == oldSelf.projectDir)").message("projectDir is immutable"),
    validation = Rule::new("has(self.parentClosePolicy) == has(oldSelf.parentClosePolicy) && (!has(self.parentClosePolicy) || self.parentClosePolicy == oldSelf.parentClosePolicy)").message("parentClosePolicy is immutable"),
)]
pub struct AgentSessionSpec {
    /// The AgentBlueprint every job of this session runs with. Without it the operator's default Pod template is
    /// used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_object_name")]
    pub blueprint: Option<String>,

    /// The parent session as first recorded (by the Start job). The current parent is status.parentSessionName.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_session_name")]
    pub parent_session_name: Option<String>,

    /// Working directory of the agent, relative to the session workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub project_dir: Option<String>,

    /// What happens to this session's descendants when it closes: `Terminate` (default) stops its running
    /// descendants when it is stopped and deletes them with it; `Abandon` leaves them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_close_policy: Option<ParentClosePolicy>,

    /// What the tree below this session (itself included) may spend, from its Start job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
}

/// The observed state of an AgentSession.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentSessionStatus {
    /// Pending (no job has run yet), Running (a job runs), Idle (ready for the next job), Failed (the last job
    /// failed; a Resume may still continue it) or Stopped (the last job was stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SessionPhase>,

    /// Why the session is in its phase, in CamelCase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,

    /// Latest observations of the session's state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::conditions")]
    pub conditions: Vec<Condition>,

    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The AgentJob running on this session now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_job: Option<String>,

    /// The last AgentJob that ran to its end on this session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job: Option<String>,

    /// How many jobs have run (or run now) on this session.
    #[serde(default)]
    pub job_count: i64,

    /// The current parent session: set by the Start job, changed by a later job naming another parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_session_name: Option<String>,

    /// The agent CLI's own session id, needed to resume its conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_session_id: Option<String>,

    /// Result of the last job that ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,

    /// True when result was cut to the bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_truncated: Option<bool>,

    /// Callbacks of child sessions waiting to be delivered to this session, in arrival order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub callback_queue: Vec<QueuedCallback>,

    /// Number of entries in callbackQueue (for `kubectl get`).
    #[serde(default)]
    pub callback_queue_length: i64,

    /// Tokens and cost of this session's own jobs, summed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,

    /// Tokens and cost of this session and every session below it: usage plus every entry of childUsage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_usage: Option<Usage>,

    /// The part of usage from jobs that have ended: each job's usage is added once, in the same status write that
    /// records the job's end (lastJob), so it counts once whatever restarts or job deletions follow. usage is this
    /// plus what the running job has reported so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_jobs_usage: Option<Usage>,

    /// What each child session (by UID) adds to treeUsage: the child's own treeUsage, replaced (never added to)
    /// whenever the child's changes, and kept when the child is deleted, so spent money stays counted; dropped
    /// when the child is re-parented to another session, which then counts it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub child_usage: Vec<ChildUsage>,

    /// Set when treeUsage passed spec.budget: which bound, and since when. The tree's running jobs are stopped
    /// with reason BudgetExceeded and the gateway starts no more children in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_exceeded: Option<String>,

    /// Levels above this session in its tree: 0 for a root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<i32>,
}

/// One child session's share of its parent's treeUsage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChildUsage {
    /// The child session's name.
    pub session: String,
    /// The child session's UID: a new session reusing the name is another entry.
    pub uid: String,
    /// The child's treeUsage when last seen.
    pub usage: Usage,
}

/// Lifecycle phase of an AgentSession.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum SessionPhase {
    Pending,
    Running,
    Idle,
    Failed,
    Stopped,
}

impl SessionPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionPhase::Pending => "Pending",
            SessionPhase::Running => "Running",
            SessionPhase::Idle => "Idle",
            SessionPhase::Failed => "Failed",
            SessionPhase::Stopped => "Stopped",
        }
    }
}

/// A child's callback waiting in its parent's queue.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueuedCallback {
    /// The child session that called back.
    pub child_session: String,
    /// The child's AgentJob whose end this callback reports.
    pub child_job: String,
    /// UID of that AgentJob: the identity that makes delivery exactly once.
    pub child_job_uid: String,
    /// How the child's job ended.
    pub outcome: CallbackOutcome,
    /// The child's result text (bounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The child's error, for a Failed or Stopped outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the callback entered the queue.
    pub enqueue_time: Time,
}

/// How a child's job ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum CallbackOutcome {
    Succeeded,
    Failed,
    Stopped,
}

impl AgentSession {
    /// The sessions this one is filed under as a child: the parent it was started with (spec) and the one it calls
    /// back now (status, after a re-parenting), once each. Both the operator's and the gateway's by-parent indexes
    /// use this rule, so that a child moved to a new parent is found under both until the old one lets it go.
    pub fn parent_names(&self) -> Vec<String> {
        let mut names: Vec<String> = [
            self.spec.parent_session_name.clone(),
            self.status
                .as_ref()
                .and_then(|st| st.parent_session_name.clone()),
        ]
        .into_iter()
        .flatten()
        .collect();
        names.dedup();
        names
    }
}
