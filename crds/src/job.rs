//! `AgentJob`: one run on a session, to start it or to resume it with a new prompt.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::governance::{Budget, ParentClosePolicy, Usage};
use crate::schema;

/// One unit of work on an AgentSession: `Start` creates the session and runs its first prompt; `Resume` continues
/// an existing session with a new prompt. Each job runs as one Pod; jobs on one session run one at a time, in
/// creation order.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "agentorchestrator.dev",
    version = "v1alpha1",
    kind = "AgentJob",
    namespaced,
    status = "AgentJobStatus",
    shortname = "agj",
    category = "agents",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Session", type_ = "string", json_path = ".spec.sessionName"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Parent", type_ = "string", json_path = ".spec.parentSessionName"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.reason", priority = 1),
    printcolumn(name = "Callback", type_ = "string", json_path = ".status.callback.state", priority = 1),
    printcolumn(name = "Attempts", type_ = "integer", json_path = ".status.attempts", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 63").message("AgentJob names are at most 63 characters: the name is also its Pod's name and a label value"),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type == 'Start' || !has(self.blueprint)").message("blueprint may only be set on Start jobs: a Resume continues with the blueprint its session started with"),
    validation = Rule::new("!has(self.parentSessionName) || self.parentSessionName != self.sessionName").message("parentSessionName must differ from sessionName: a session cannot be its own parent"),
    validation = Rule::new("!self.callback || has(self.parentSessionName)").message("callback: true requires parentSessionName: a callback needs a parent to call back"),
    validation = Rule::new("self.type == oldSelf.type").message("type is immutable"),
    validation = Rule::new("self.sessionName == oldSelf.sessionName").message("sessionName is immutable"),
    validation = Rule::new("self.prompt == oldSelf.prompt").message("prompt is immutable: create a new AgentJob instead"),
    validation = Rule::new("has(self.blueprint) == has(oldSelf.blueprint) && (!has(self.blueprint) || self.blueprint == oldSelf.blueprint)").message("blueprint is immutable"),
    validation = Rule::new("has(self.parentSessionName) == has(oldSelf.parentSessionName) && (!has(self.parentSessionName) || self.parentSessionName == oldSelf.parentSessionName)").message("parentSessionName is immutable"),
    validation = Rule::new("self.callback == oldSelf.callback").message("callback is immutable"),
    validation = Rule::new("has(self.projectDir) == has(oldSelf.projectDir) && (!has(self.projectDir) || self.projectDir == oldSelf.projectDir)").message("projectDir is immutable"),
    validation = Rule::new("self.type == 'Start' || !has(self.parentClosePolicy)").message("parentClosePolicy may only be set on Start jobs: it is recorded on the session the Start job creates"),
    validation = Rule::new("self.type == 'Start' || !has(self.budget)").message("budget may only be set on Start jobs: it is recorded on the session the Start job creates"),
    validation = Rule::new("has(self.parentClosePolicy) == has(oldSelf.parentClosePolicy) && (!has(self.parentClosePolicy) || self.parentClosePolicy == oldSelf.parentClosePolicy)").message("parentClosePolicy is immutable"),
    validation = Rule::new("has(self.budget) == has(oldSelf.budget) && (!has(self.budget) || self.budget == oldSelf.budget)").message("budget is immutable: it is recorded on the session when the job starts"),
)]
pub struct AgentJobSpec {
    /// What the job does: `Start` creates the session named by sessionName and runs the prompt as its first turn;
    /// `Resume` continues that existing session with the prompt as its next turn.
    #[serde(rename = "type")]
    pub job_type: JobType,

    /// The AgentSession this job acts on: a DNS-1123 label of at most 60 characters. A Start job creates it and
    /// fails with reason AlreadyExists if it exists; a Resume job fails with reason SessionNotFound if it does not.
    #[schemars(schema_with = "schema::session_name")]
    pub session_name: String,

    /// The prompt given to the agent: 1 to 100,000 characters.
    #[schemars(length(min = 1, max = 100000))]
    pub prompt: String,

    /// The AgentBlueprint that configures the session's agent and its Pods (Start jobs only). Without it the
    /// operator's default Pod template is used. A missing blueprint fails the job with reason BlueprintNotFound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_object_name")]
    pub blueprint: Option<String>,

    /// The session that asked for this job. A job whose parent differs from the session's current parent
    /// re-parents the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_session_name")]
    pub parent_session_name: Option<String>,

    /// When true, the parent session is called back when this job ends (succeeded, failed or stopped): the result
    /// is queued in the parent's status.callbackQueue and the parent is resumed with it once idle. Requires
    /// parentSessionName. Which session of that name is the parent: see status.callback.parentUid.
    #[serde(default)]
    pub callback: bool,

    /// Working directory of the agent, relative to the session workspace. No `..` segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("!self.split('/').exists(s, s == '..')").message("projectDir must stay inside the workspace: no '..' segments"))]
    pub project_dir: Option<String>,

    /// Deadline of the run in seconds, counted from the start of its Pod. A job that runs longer is stopped and
    /// fails with reason DeadlineExceeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2592000))]
    pub timeout_seconds: Option<i64>,

    /// Seconds after the job ends (Succeeded or Failed) when the job and its Pod are deleted; the session keeps the
    /// result and its jobCount. A job whose callback is not settled yet is kept until it is. Without it the
    /// operator's default applies (none unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 31536000))]
    pub ttl_seconds_after_finished: Option<i64>,

    /// How many times a run that failed for a cause the agent did not make (Pod evicted or lost with its node,
    /// container never started, the model API overloaded or rate-limited: the runner exits with 75) is retried,
    /// with exponential backoff. Default 3; 0 never retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub backoff_limit: Option<i32>,

    /// What happens to the session's descendants when it closes (Start jobs only, recorded on the session):
    /// `Terminate` (default) stops them when the session is stopped and deletes them with it; `Abandon` leaves
    /// them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_close_policy: Option<ParentClosePolicy>,

    /// What the tree below this session may spend (Start jobs only, recorded on the session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
}

/// What a job does to its session.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum JobType {
    Start,
    Resume,
}

impl JobType {
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::Start => "Start",
            JobType::Resume => "Resume",
        }
    }
}

/// The observed state of an AgentJob.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentJobStatus {
    /// Pending (waiting for its turn or its Pod), Running, Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<JobPhase>,

    /// Why the job is in its phase, in CamelCase (SessionBusy, SessionNotFound, AlreadyExists,
    /// BlueprintNotFound, ParentCycle, PodFailed, PodRejected (the API server refused the Pod for good: its
    /// message is in error), DeadlineExceeded, Stopped, BudgetExceeded (its tree passed its budget), Completed,
    /// BackoffWaiting (a run failed for a cause the agent did not make; the next starts at nextAttemptTime),
    /// Retrying (the next run is starting), and when backoffLimit is spent the last such cause: Evicted, PodDeleted,
    /// ContainerNotStarted, ModelApiUnavailable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,

    /// Latest observations of the job's state: conditions Running, Complete, Failed, and Retrying (True while the job
    /// waits to run again after a failure it did not make; its reason names the cause).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::conditions")]
    pub conditions: Vec<Condition>,

    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The Pod that runs (or ran) this job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,

    /// UID of the AgentSession this job ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_uid: Option<String>,

    /// When the job's Pod was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// When the job reached Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,

    /// The agent's final text, at most 32 KiB; longer results are cut and resultTruncated is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,

    /// True when result was cut to the bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_truncated: Option<bool>,

    /// The agent session id reported by the agent runner (needed to resume the agent's own conversation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_session_id: Option<String>,

    /// What went wrong, for a Failed job. For a job the operator stopped (reasons Stopped, BudgetExceeded,
    /// DeadlineExceeded) it is the operator's cause; what the agent says after being stopped does not replace it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,

    /// Exit code of the agent container, when it terminated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,

    /// Progress of this job's callback to its parent session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackProgress>,

    /// Tokens and cost of this job's latest run as the agent runner reported them: while it runs, its usage so far
    /// (for Claude Code, the cost is the runner's pricing of each model call until the final total replaces it).
    /// A retry's run replaces what the run before it reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,

    /// Runs made for this job, retries included. A run that failed for a cause the agent did not make is retried
    /// up to backoffLimit times; between two runs the job waits in phase Pending with reason BackoffWaiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,

    /// When the next run may start, while the job waits with reason BackoffWaiting after a run that failed for a
    /// cause the agent did not make (the wait doubles with each retry, from the operator's
    /// --retry-backoff-base-seconds, at most 5 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_time: Option<Time>,
}

/// Lifecycle phase of an AgentJob.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum JobPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl JobPhase {
    pub fn is_finished(self) -> bool {
        matches!(self, JobPhase::Succeeded | JobPhase::Failed)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            JobPhase::Pending => "Pending",
            JobPhase::Running => "Running",
            JobPhase::Succeeded => "Succeeded",
            JobPhase::Failed => "Failed",
        }
    }
}

impl AgentJobStatus {
    /// The job was ended by the operator (deleted while it ran, its tree passed its budget, or it outran its
    /// timeoutSeconds) rather than by its agent: the cause in `error` is the operator's.
    pub fn stopped_by_operator(&self) -> bool {
        self.phase == Some(JobPhase::Failed)
            && matches!(
                self.reason.as_deref(),
                Some("Stopped" | "BudgetExceeded" | "DeadlineExceeded")
            )
    }
}

/// Where a job's callback to its parent stands.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallbackProgress {
    /// NotRequested, Pending (the job has not ended), Enqueued (waiting in the parent's callbackQueue),
    /// Delivered (a Resume job of the parent carries it) or Dropped (see reason).
    pub state: CallbackState,

    /// Why the callback is in its state, in CamelCase: WaitingForParent (Pending: the parent session does not exist
    /// yet, a Start job created no later than this job is making it), Bound (Pending: parentUid is recorded),
    /// Queued, Delivered, ParentNotFound (Dropped: the parent is gone, or never came).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,

    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// UID of the parent AgentSession this callback belongs to, recorded as soon as the binding is made. The rule:
    /// the callback belongs to the parent session that existed when this job was created (the gateway records its
    /// UID when it creates the job). If none existed then (a whole tree applied at once), the job waits for it
    /// (reason WaitingForParent) and binds to the first session of that name whose Start job was created no later
    /// than this job (creation times have one-second resolution: the same second counts as no later). A session
    /// that reuses the name later never receives the callback. A job that ends while its parent neither exists nor
    /// has a pending Start job (of type Start, naming that session, created no later than this job, not yet turned
    /// into a session) has its callback Dropped with reason ParentNotFound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_uid: Option<String>,

    /// The parent's Resume AgentJob that delivered this callback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_by: Option<String>,
}

/// States of a job's callback.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum CallbackState {
    NotRequested,
    Pending,
    Enqueued,
    Delivered,
    Dropped,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: JobPhase, reason: &str) -> AgentJobStatus {
        AgentJobStatus {
            phase: Some(phase),
            reason: Some(reason.into()),
            ..Default::default()
        }
    }

    #[test]
    fn only_a_job_the_operator_ended_counts_as_stopped_by_it() {
        for reason in ["Stopped", "BudgetExceeded", "DeadlineExceeded"] {
            assert!(
                status(JobPhase::Failed, reason).stopped_by_operator(),
                "{reason}"
            );
        }
        // The agent's own failure, and a run that is waiting to be retried, are not the operator's stop.
        assert!(!status(JobPhase::Failed, "PodFailed").stopped_by_operator());
        assert!(!status(JobPhase::Pending, "BackoffWaiting").stopped_by_operator());
        // A reason of a stop on a job not Failed (yet) is not a stop.
        assert!(!status(JobPhase::Running, "BudgetExceeded").stopped_by_operator());
        assert!(!AgentJobStatus::default().stopped_by_operator());
    }
}
