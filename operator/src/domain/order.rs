//! The order jobs of one session run in.

use crds::AgentJob;
use kube::ResourceExt;

/// Jobs run in creation order. The API server's creation timestamps have one-second resolution, so jobs created in
/// the same second run in name order: the gateway names jobs with a millisecond suffix to keep that order.
pub fn run_order(a: &AgentJob, b: &AgentJob) -> std::cmp::Ordering {
    let key = |j: &AgentJob| {
        (
            j.metadata.creation_timestamp.as_ref().map(|t| t.0),
            j.name_any(),
        )
    };
    key(a).cmp(&key(b))
}

pub fn is_finished(job: &AgentJob) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(|p| p.is_finished())
}

pub fn is_deleting(job: &AgentJob) -> bool {
    job.metadata.deletion_timestamp.is_some()
}

/// Job reasons that mean the job was stopped rather than failed on its own: deleted while it ran, or its tree
/// passed its budget. Its parent receives a `Stopped` callback.
pub fn is_stop_reason(reason: Option<&str>) -> bool {
    matches!(reason, Some("Stopped" | "BudgetExceeded"))
}
