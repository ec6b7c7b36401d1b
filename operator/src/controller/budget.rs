//! Budget stops: a session whose treeUsage passed its budget (see `domain::usage`) has its tree's running jobs
//! stopped with reason BudgetExceeded, and no job of the tree starts any more. Both paths end a job the same way
//! (`stop`): its status first, so the Pod's disappearance is never taken for an external deletion, then its Pod.
//! The parent of a stopped job receives a Stopped callback carrying the reason.

use std::collections::HashSet;
use std::sync::Arc;

use crds::{AgentJob, AgentSession};
use k8s_openapi::api::core::v1::Pod;
use kube::api::DeleteParams;
use kube::{Api, ResourceExt};

use crate::apply::not_found;
use crate::context::Context;
use crate::controller::session_index::parent_of;
use crate::domain::order::{is_deleting, is_finished};
use crate::error::Result;

/// Reason of jobs stopped by a budget.
pub const REASON: &str = "BudgetExceeded";

/// The session at or above `session` whose tree passed its budget, with the bound it passed. Walks the chain of
/// current parents (its length is the tree's depth), stopping at a cycle or a missing parent.
pub fn exceeded_above(ctx: &Context, session: &AgentSession) -> Option<(String, String)> {
    let ns = session.namespace().unwrap_or_default();
    let mut seen = HashSet::new();
    let mut at = Some(Arc::new(session.clone()));
    while let Some(s) = at {
        if !seen.insert(s.name_any()) {
            break;
        }
        if let Some(bound) = s.status.as_ref().and_then(|st| st.budget_exceeded.clone()) {
            return Some((s.name_any(), bound));
        }
        at = parent_of(&s).and_then(|p| ctx.session(&ns, p));
    }
    None
}

/// Why a job of the tree of `root` stops.
pub fn message(root: &str, bound: &str) -> String {
    format!("the tree of session {root} passed its budget: {bound}")
}

/// Stops every running job of the tree below `root` (itself included). Returns the jobs it stopped.
pub async fn stop_tree(ctx: &Context, root: &AgentSession, bound: &str) -> Result<Vec<String>> {
    let ns = root.namespace().unwrap_or_default();
    let why = message(&root.name_any(), bound);
    let mut stopped = Vec::new();
    let mut seen = HashSet::new();
    let mut todo = vec![Arc::new(root.clone())];
    while let Some(session) = todo.pop() {
        if !seen.insert(session.name_any()) {
            continue;
        }
        for job in ctx.jobs_of(&ns, &session.name_any()) {
            if !is_finished(&job) && !is_deleting(&job) && ctx.pod(&ns, &job.name_any()).is_some() {
                stop(ctx, &job, why.clone()).await?;
                stopped.push(job.name_any());
            }
        }
        todo.extend(crate::controller::session_index::current_children(
            ctx,
            &ns,
            &session.name_any(),
        ));
    }
    Ok(stopped)
}

/// Ends one job with reason BudgetExceeded and stops its Pod.
pub async fn stop(ctx: &Context, job: &AgentJob, why: String) -> Result<()> {
    crate::controller::job::end_job(job, ctx, REASON, why).await?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    ctx.metrics.write("pods", "delete");
    match pods.delete(&job.name_any(), &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
