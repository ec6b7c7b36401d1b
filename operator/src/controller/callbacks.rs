//! The writes of callback delivery, made by the parent's session reconcile (`controller::session`) in the order
//! `domain::session_work::plan` lists them.
//!
//! # Why every callback is delivered exactly once
//!
//! A child's callback moves through three durable records, always written in this order, after its binding (the
//! UID of its parent session, recorded on the child by the job controller or by the gateway that made it, see
//! `domain::lineage::bind`): a child not bound yet is invisible to every step below, and a binding never changes
//! once recorded, so all steps agree on which parent a child calls back.
//!
//! 1. **queued**: an entry with the child job's UID is appended to the parent's `status.callbackQueue`;
//! 2. **marked**: the child's `status.callback.state` becomes `Enqueued`;
//! 3. **delivered**: a Resume job of the parent is created whose name is derived from the UID of the queue's first
//!    entry and whose annotation lists the UIDs it carries; then the parent's status drops exactly those entries
//!    (and takes that job as its current job) in one write; then the child is marked `Delivered`.
//!
//! The job of (3) is created at the same time as the marks of (2) (one round trip instead of two): what must come
//! after every mark is the status write that drops the entries, and it does. A job made while a mark failed only
//! lists entries that are still queued, and is found by its name and taken once the marks have landed.
//!
//! Every write to the parent's status carries the resourceVersion it was computed from, so two reconciles (or a
//! reconcile working from a stale cache) can never both append or both remove: the second write is refused with
//! a Conflict and recomputed from fresh data.
//!
//! * No duplicate: an entry is appended only if its UID is not in the queue, no delivery job of the parent lists
//!   it, and a fresh read of the child (not the cache) shows it neither `Enqueued`, `Delivered` nor `Dropped`.
//!   Because (2) is written before the status write of (3), a child whose entry has left the queue is always
//!   marked, so the fresh read sees it. A delivery repeated after a crash between creating the job and updating the queue finds the job by
//!   its deterministic name and removes the entries it lists, instead of making a second job.
//! * No loss: an entry leaves the queue only in the same write that records the job carrying it. A child job with
//!   `callback: true` holds a finalizer until its callback is marked, so deleting it (which stops it) cannot lose
//!   the `Stopped` callback. A callback whose parent no longer exists (or never came: no session and no pending
//!   Start job created no later than the child) is `Dropped` with reason `ParentNotFound` by the job controller once
//!   the child has ended, never left waiting.

use std::collections::HashMap;

use crds::{AgentJob, CallbackProgress, QueuedCallback};
use futures::{StreamExt, TryStreamExt, stream};
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::apply::{already_exists, apply_status};
use crate::context::{Context, MANAGER};
use crate::error::Result;

/// Field manager of `status.callback` on child jobs (apart from the job lifecycle's own manager).
pub const CALLBACK_MANAGER: &str = "agent-operator-callbacks";
/// API calls about different children of one parent made at the same time (reads before queueing, marks).
pub const PARALLEL_CALLS: usize = 32;

/// Fresh reads of `children` (the API server, not the cache), made together in arrival order: a parent of
/// hundreds of children would otherwise wait for each in turn. A child that is gone is left out.
pub async fn read_fresh(ctx: &Context, ns: &str, children: &[&AgentJob]) -> Result<Vec<AgentJob>> {
    let api: Api<AgentJob> = Api::namespaced(ctx.client.clone(), ns);
    let names: Vec<String> = children.iter().map(|c| c.name_any()).collect();
    let fresh: Vec<Option<AgentJob>> = stream::iter(names)
        .map(|name| {
            let api = api.clone();
            async move { api.get_opt(&name).await }
        })
        .buffered(PARALLEL_CALLS)
        .try_collect()
        .await?;
    Ok(fresh.into_iter().flatten().collect())
}

/// Writes the same callback progress on each of `children`, all at once. Returns the copies as written, by UID.
pub async fn mark_all(
    ctx: &Context,
    children: Vec<&AgentJob>,
    progress: &CallbackProgress,
) -> Result<HashMap<String, AgentJob>> {
    mark_each(
        ctx,
        children
            .into_iter()
            .map(|c| (c, progress.clone()))
            .collect(),
    )
    .await
}

/// Writes each child's own callback progress, all at once. Returns the copies as written, by UID.
pub async fn mark_each(
    ctx: &Context,
    marks: Vec<(&AgentJob, CallbackProgress)>,
) -> Result<HashMap<String, AgentJob>> {
    let writes: Vec<_> = marks
        .into_iter()
        .map(|(child, progress)| write_progress(ctx, child, progress))
        .collect();
    let written: Vec<AgentJob> = stream::iter(writes)
        .buffer_unordered(PARALLEL_CALLS)
        .try_collect()
        .await?;
    Ok(written
        .into_iter()
        .map(|j| (j.uid().unwrap_or_default(), j))
        .collect())
}

/// Creates a delivery job. `None`: it exists already (made before a crash, not in the store yet), and here it is as
/// the API server holds it.
pub async fn create_delivery(ctx: &Context, ns: &str, job: &AgentJob) -> Result<Option<AgentJob>> {
    let api: Api<AgentJob> = Api::namespaced(ctx.client.clone(), ns);
    ctx.metrics.write("agentjobs", "create");
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    match api.create(&params, job).await {
        Ok(_) => Ok(None),
        Err(e) if already_exists(&e) => Ok(Some(api.get(&job.name_any()).await?)),
        Err(e) => Err(e.into()),
    }
}

/// Records how long each carried callback took from its child's end to its delivery job.
pub fn observe_latency(ctx: &Context, ns: &str, carried: &[QueuedCallback]) {
    let now = jiff::Timestamp::now();
    for e in carried {
        let child = ctx
            .jobs
            .get(&kube::runtime::reflector::ObjectRef::new(&e.child_job).within(ns));
        let ended = child
            .and_then(|c| c.status.as_ref()?.completion_time.clone())
            .map(|t| t.0)
            .unwrap_or(e.enqueue_time.0);
        let seconds = ended.duration_until(now).as_secs_f64().max(0.0);
        ctx.metrics.callback_latency.observe(seconds);
    }
    ctx.metrics.callbacks_delivered.inc_by(carried.len() as u64);
}

/// Writes a child job's callback progress (as the callback field manager, with its resourceVersion).
pub async fn write_progress(
    ctx: &Context,
    job: &AgentJob,
    progress: CallbackProgress,
) -> Result<AgentJob> {
    let api: Api<AgentJob> =
        Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    ctx.metrics.write("agentjobs/status", "apply");
    let written = apply_status(&api, job, CALLBACK_MANAGER, &json!({"callback": progress})).await?;
    ctx.wrote(job);
    Ok(written)
}
