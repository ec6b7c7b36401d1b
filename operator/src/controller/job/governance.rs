//! The job's side of tree governance: the tree limits a Start job must stay within (the rule is `crds::limits`,
//! the gateway applies the same one), and its place under the namespace's running-jobs limit (`domain::limits`).

use super::*;
use crate::domain::limits::{Admission, admit};
use crate::domain::tree::{Placement, parent_reference, place, tree_label};
use crds::limits::{ancestors, check, count_children, with_blueprints};
use kube::api::ListParams;

/// A Start job whose new session would pass a limit of its parent's tree: refused with reason TreeLimitExceeded.
/// Decided once, before the session is made, from the stores; only jobs created before this one count, so jobs
/// applied together are admitted in creation order.
pub(super) fn tree_limit(job: &AgentJob, ctx: &Context) -> Option<Refusal> {
    let parent = job.spec.parent_session_name.as_deref()?;
    let ns = job.namespace().unwrap_or_default();
    let (chain, _) = ancestors(parent, |n| ctx.session(&ns, n));
    let parent_session = chain.first()?;
    let blueprints: Vec<Option<Arc<AgentBlueprint>>> = chain
        .iter()
        .map(|s| {
            let name = s.spec.blueprint.as_deref()?;
            ctx.blueprints.get(&ObjectRef::new(name).within(&ns))
        })
        .collect();
    let chain_limits = with_blueprints(&chain, &blueprints);
    let sessions = ctx.child_sessions(&ns, parent);
    let jobs = ctx.index.started_by(&ctx.jobs, &ns, parent);
    let counts = count_children(
        parent_session,
        &sessions.iter().map(|s| s.as_ref()).collect::<Vec<_>>(),
        &jobs.iter().map(|j| j.as_ref()).collect::<Vec<_>>(),
        Some(job),
    );
    check(&chain_limits, counts, &ctx.governance.limits)
        .err()
        .map(|e| refuse("TreeLimitExceeded", e.to_string()))
}

/// The tree label and ownerReferences a Start job's new session is created with (the session reconciler keeps
/// them right afterwards).
pub(super) fn new_session_place(job: &AgentJob, ctx: &Context) -> (String, Vec<OwnerReference>) {
    let ns = job.namespace().unwrap_or_default();
    let Some(parent_name) = job.spec.parent_session_name.as_deref() else {
        return (job.spec.session_name.clone(), Vec::new());
    };
    match ctx.session(&ns, parent_name) {
        Some(parent) => {
            let Placement { tree, .. } = place(&parent, |n| ctx.session(&ns, n));
            let tree = tree_label(parent.as_ref())
                .map(str::to_string)
                .unwrap_or(tree);
            (tree, parent_reference(&parent).into_iter().collect())
        }
        // Not there yet (a tree applied at once): provisional, until the parent shows up.
        None => (parent_name.to_string(), Vec::new()),
    }
}

fn is_current(ctx: &Context, ns: &str) -> impl Fn(&AgentJob) -> bool {
    move |j: &AgentJob| {
        ctx.session(ns, &j.spec.session_name)
            .and_then(|s| s.status.as_ref()?.current_job.clone())
            .as_deref()
            == Some(j.name_any().as_str())
    }
}

/// The job's place in the namespace's queue, from the store alone (no Pod count): a first look, before anything is
/// prepared for its Pod.
pub(super) fn queue_place(job: &AgentJob, ctx: &Context) -> Admission {
    let Some(limit) = ctx.governance.max_running_jobs else {
        return Admission::Start;
    };
    let ns = job.namespace().unwrap_or_default();
    let unfinished = ctx.index.unfinished_in(&ctx.jobs, &ns);
    let refs: Vec<&AgentJob> = unfinished.iter().map(|j| j.as_ref()).collect();
    admit(job, &refs, &is_current(ctx, &ns), limit, None)
}

/// A granted place: held until the job's Pod is created.
pub(super) enum Place<'a> {
    Granted(Option<tokio::sync::MutexGuard<'a, ()>>),
    Wait(String),
}

/// The final decision, right before the Pod is created: under the operator's admission lock, from the store's
/// queue and a fresh count of the namespace's live agent Pods (the truth across a crash or a lagging store).
pub(super) async fn take_place<'a>(job: &AgentJob, ctx: &'a Context) -> Result<Place<'a>> {
    let Some(limit) = ctx.governance.max_running_jobs else {
        return Ok(Place::Granted(None));
    };
    let guard = ctx.pod_starts.lock().await;
    let ns = job.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let live = pods
        .list(
            &ListParams::default()
                .labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER))
                .fields("status.phase!=Succeeded,status.phase!=Failed"),
        )
        .await?
        .items
        .len();
    let unfinished = ctx.index.unfinished_in(&ctx.jobs, &ns);
    let refs: Vec<&AgentJob> = unfinished.iter().map(|j| j.as_ref()).collect();
    Ok(
        match admit(job, &refs, &is_current(ctx, &ns), limit, Some(live)) {
            Admission::Start => Place::Granted(Some(guard)),
            Admission::Wait(message) => Place::Wait(message),
        },
    )
}

/// Marks the job waiting for a place (reason ConcurrencyLimit). A job ending elsewhere in the namespace brings it
/// back (see `triggers::waiting_for_a_place`); a look every few seconds covers a missed event.
pub(super) async fn wait_for_place(
    job: &AgentJob,
    ctx: &Context,
    message: String,
) -> Result<Action> {
    wait(job, ctx, crate::domain::limits::CONCURRENCY_LIMIT, message).await?;
    Ok(Action::requeue(Duration::from_secs(10)))
}
