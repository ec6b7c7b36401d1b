//! Labels and annotations that tie the objects of one session together. Shared by the operator, which sets them,
//! and the gateway, which reads them to find a caller's session from its Pod.

/// On Pods and AgentJobs: the session the object works for.
pub const SESSION: &str = "agentorchestrator.dev/session";
/// On Pods: the AgentJob that owns the Pod.
pub const JOB: &str = "agentorchestrator.dev/job";
/// On Pods and AgentJobs: `Start` or `Resume`.
pub const JOB_TYPE: &str = "agentorchestrator.dev/job-type";
/// On AgentJobs the operator creates to deliver callbacks: `"true"`.
pub const CALLBACK_DELIVERY: &str = "agentorchestrator.dev/callback-delivery";
/// On AgentSessions and AgentJobs: the name of the root session of their tree, so
/// `kubectl get agj,ags -l agentorchestrator.dev/tree=ROOT` lists one tree.
pub const TREE: &str = "agentorchestrator.dev/tree";
/// Identifies objects managed by the operator (the recommended `app.kubernetes.io/managed-by` label).
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "agent-operator";

/// On an AgentSession created by a Start job: that job's UID. The Start job that created a session runs on it;
/// any other Start job naming the session fails with AlreadyExists.
pub const CREATED_BY_JOB: &str = "agentorchestrator.dev/created-by-job";

/// On an AgentJob: UID of its parent session when the job was made (set by the gateway). Without it, the operator
/// binds the job and records the UID in `status.callback.parentUid` (see that field for the rule).
pub const PARENT_UID: &str = "agentorchestrator.dev/parent-uid";

/// On a callback-delivery AgentJob: the UIDs of the child jobs whose callbacks it delivers, comma-separated.
pub const DELIVERS: &str = "agentorchestrator.dev/delivers";
/// On a callback-delivery AgentJob: the names of those child jobs, comma-separated, for people.
pub const DELIVERS_JOBS: &str = "agentorchestrator.dev/delivers-jobs";

/// Finalizer on jobs with `callback: true`: the job stays until its callback is in the parent's queue (or dropped),
/// so deleting a running child still calls its parent back.
pub const CALLBACK_FINALIZER: &str = "agentorchestrator.dev/callback";
