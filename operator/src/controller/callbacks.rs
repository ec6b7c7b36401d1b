//! Callback delivery, run by the parent's session reconciler.
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
//! Every write to the parent's status carries the resourceVersion it was computed from, so two reconciles (or a
//! reconcile working from a stale cache) can never both append or both remove: the second write is refused with
//! a Conflict and recomputed from fresh data.
//!
//! * No duplicate: an entry is appended only if its UID is not in the queue, no delivery job of the parent lists
//!   it, and a fresh read of the child (not the cache) shows it neither `Enqueued`, `Delivered` nor `Dropped`.
//!   Because (2) is written before (3), a child whose entry has left the queue is always marked, so the fresh read
//!   sees it. A delivery repeated after a crash between creating the job and updating the queue finds the job by
//!   its deterministic name and removes the entries it lists, instead of making a second job.
//! * No loss: an entry leaves the queue only in the same write that records the job carrying it. A child job with
//!   `callback: true` holds a finalizer until its callback is marked, so deleting it (which stops it) cannot lose
//!   the `Stopped` callback. A callback whose parent no longer exists (or never came: no session and no pending
//!   Start job created no later than the child) is `Dropped` with reason `ParentNotFound` by the job controller once
//!   the child has ended, never left waiting.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crds::contract::bound_result;
use crds::{
    AgentJob, AgentSession, AgentSessionStatus, CallbackOutcome, CallbackProgress, CallbackState,
    JobPhase, MAX_PROMPT, QueuedCallback, SessionPhase, labels,
};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::apply::{already_exists, apply_status};
use crate::context::{Context, MANAGER};
use crate::domain::callback::rules::{
    calls_back, delivered_uids, delivery_job_name, ended, settled, state,
};
use crate::domain::callback::{delivery_job, inherited_parent, message};
use crate::error::Result;

/// Field manager of `status.callback` on child jobs (apart from the job lifecycle's own manager).
pub const CALLBACK_MANAGER: &str = "agent-operator-callbacks";
/// API calls about different children of one parent made at the same time (reads before queueing, marks).
const PARALLEL_CALLS: usize = 32;

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// The parent's delivery jobs, from the store.
fn delivery_jobs(ctx: &Context, parent: &AgentSession) -> Vec<Arc<AgentJob>> {
    ctx.jobs_of(&parent.namespace().unwrap_or_default(), &parent.name_any())
        .into_iter()
        .filter(|j| {
            j.labels()
                .get(labels::CALLBACK_DELIVERY)
                .map(String::as_str)
                == Some("true")
        })
        .collect()
}

/// The jobs that name `parent` as the parent to call back, from the store.
fn children(ctx: &Context, parent: &AgentSession) -> Vec<Arc<AgentJob>> {
    ctx.children_of(&parent.namespace().unwrap_or_default(), &parent.name_any())
}

fn outcome(job: &AgentJob) -> CallbackOutcome {
    let status = job.status.as_ref();
    match (
        status.and_then(|s| s.phase),
        status.and_then(|s| s.reason.as_deref()),
    ) {
        (Some(JobPhase::Succeeded), _) => CallbackOutcome::Succeeded,
        (_, Some("Stopped")) => CallbackOutcome::Stopped,
        _ => CallbackOutcome::Failed,
    }
}

fn entry(job: &AgentJob) -> QueuedCallback {
    let status = job.status.clone().unwrap_or_default();
    QueuedCallback {
        child_session: job.spec.session_name.clone(),
        child_job: job.name_any(),
        child_job_uid: job.uid().unwrap_or_default(),
        outcome: outcome(job),
        result: status.result.map(|r| bound_result(&r).0),
        error: status.error,
        enqueue_time: now(),
    }
}

/// Step 1: appends the callbacks of children that ended since the last look. Returns the parent as written.
pub async fn enqueue(ctx: &Context, parent: Arc<AgentSession>) -> Result<Arc<AgentSession>> {
    let status = parent.status.clone().unwrap_or_default();
    let queued: HashSet<&str> = status
        .callback_queue
        .iter()
        .map(|e| e.child_job_uid.as_str())
        .collect();
    let delivered: HashSet<String> = delivery_jobs(ctx, &parent)
        .iter()
        .flat_map(|j| delivered_uids(j))
        .collect();
    let mut ready: Vec<Arc<AgentJob>> = children(ctx, &parent)
        .into_iter()
        .filter(|j| calls_back(j, &parent) && ended(j) && !settled(j))
        .filter(|j| {
            let uid = j.uid().unwrap_or_default();
            !queued.contains(uid.as_str()) && !delivered.contains(&uid)
        })
        .collect();
    if ready.is_empty() {
        return Ok(parent);
    }
    // Arrival order: when the children ended.
    ready.sort_by_key(|j| {
        (
            j.status
                .as_ref()
                .and_then(|s| s.completion_time.as_ref().map(|t| t.0)),
            j.name_any(),
        )
    });
    let api: Api<AgentJob> =
        Api::namespaced(ctx.client.clone(), &parent.namespace().unwrap_or_default());
    // The cache may not show a mark written a moment ago: only a fresh read can rule out a second entry. The reads
    // go out together (a parent of hundreds of children would otherwise wait for each in turn), in arrival order.
    let fresh: Vec<Option<AgentJob>> = stream::iter(ready)
        .map(|child| {
            let api = api.clone();
            async move {
                let fresh = api.get_opt(&child.name_any()).await?;
                Ok::<_, kube::Error>(
                    fresh.filter(|f| f.uid() == child.uid() && !settled(f) && ended(f)),
                )
            }
        })
        .buffered(PARALLEL_CALLS)
        .try_collect()
        .await?;
    let entries: Vec<QueuedCallback> = fresh.iter().flatten().map(entry).collect();
    if entries.is_empty() {
        return Ok(parent);
    }
    let mut next = status;
    next.callback_queue.extend(entries.iter().cloned());
    crate::domain::session::finish(&mut next, &parent, &now());
    let sessions: Api<AgentSession> =
        Api::namespaced(ctx.client.clone(), &parent.namespace().unwrap_or_default());
    ctx.metrics.write("agentsessions/status", "apply");
    let written = apply_status(&sessions, parent.as_ref(), MANAGER, &next).await?;
    ctx.wrote(parent.as_ref());
    ctx.metrics.callbacks_enqueued.inc_by(entries.len() as u64);
    for e in &entries {
        let waiting = next.callback_queue.len();
        let note = format!(
            "callback of job {} ({:?}) queued; {waiting} waiting",
            e.child_job, e.outcome
        );
        ctx.event(&written, false, "CallbackQueued", note).await;
    }
    Ok(Arc::new(written))
}

/// The children of a parent's queue that are marked `Enqueued` (or gone), and the copies of those marked in this
/// reconcile as written, fresher than the store for the steps that follow.
#[derive(Default)]
pub struct Marked {
    pub uids: HashSet<String>,
    pub written: HashMap<String, AgentJob>,
}

/// Step 2: marks every queued child `Enqueued`.
pub async fn mark_queued(ctx: &Context, parent: &AgentSession) -> Result<Marked> {
    let ns = parent.namespace().unwrap_or_default();
    let mut marked = Marked::default();
    let mut unmarked = Vec::new();
    for e in parent.status.iter().flat_map(|s| s.callback_queue.iter()) {
        let child = ctx
            .jobs
            .get(&kube::runtime::reflector::ObjectRef::new(&e.child_job).within(&ns));
        // A child job that is gone has nothing to mark: its entry is all that is left of it.
        if let Some(child) = child
            && child.uid().as_deref() == Some(e.child_job_uid.as_str())
            && state(&child) != Some(CallbackState::Enqueued)
        {
            unmarked.push(child);
        }
        marked.uids.insert(e.child_job_uid.clone());
    }
    let progress = CallbackProgress {
        state: CallbackState::Enqueued,
        reason: Some("Queued".into()),
        message: Some(format!(
            "waiting in the callback queue of session {}",
            parent.name_any()
        )),
        parent_uid: parent.uid(),
        delivered_by: None,
    };
    // Independent writes, all done before anything is delivered.
    let written: Vec<AgentJob> = stream::iter(unmarked)
        .map(|child| {
            let progress = progress.clone();
            async move { write_progress(ctx, &child, progress).await }
        })
        .buffer_unordered(PARALLEL_CALLS)
        .try_collect()
        .await?;
    marked.written = written
        .into_iter()
        .map(|j| (j.uid().unwrap_or_default(), j))
        .collect();
    Ok(marked)
}

/// Step 3: when the parent is free, makes (or finds) the Resume job that carries its queue and takes it as the
/// parent's current job in `status`. Returns the job's name and the entries it carries.
pub async fn deliver(
    ctx: &Context,
    parent: &AgentSession,
    status: &mut AgentSessionStatus,
    marked: &Marked,
) -> Result<Option<(String, Vec<QueuedCallback>)>> {
    if !crate::domain::session::can_deliver(status) {
        return Ok(None);
    }
    // Only entries whose child is marked may leave; the prompt holds as many as fit its bound.
    let mut carried: Vec<QueuedCallback> = Vec::new();
    for e in status.callback_queue.iter() {
        if !marked.uids.contains(&e.child_job_uid) {
            break;
        }
        carried.push(e.clone());
        if message(&carried).chars().count() > MAX_PROMPT {
            carried.pop();
            break;
        }
    }
    let Some(first) = carried.first() else {
        return Ok(None);
    };
    let ns = parent.namespace().unwrap_or_default();
    let name = delivery_job_name(&parent.name_any(), &first.child_job_uid);
    let api: Api<AgentJob> = Api::namespaced(ctx.client.clone(), &ns);
    // A job made before a crash is in the store, or found by the create below (AlreadyExists): no read first.
    let existing = ctx
        .jobs
        .get(&kube::runtime::reflector::ObjectRef::new(&name).within(&ns));
    let delivered: Vec<String> = match existing {
        Some(job) => delivered_uids(&job),
        None => {
            // The delivery calls the parent's own parent back if the job that just ended on the parent did.
            let last = status.last_job.as_ref().and_then(|l| {
                ctx.jobs
                    .get(&kube::runtime::reflector::ObjectRef::new(l).within(&ns))
            });
            let inherit = inherited_parent(last.as_deref(), status);
            let job = delivery_job(parent, status, &name, &carried, inherit);
            ctx.metrics.write("agentjobs", "create");
            match api
                .create(
                    &PostParams {
                        field_manager: Some(MANAGER.into()),
                        ..Default::default()
                    },
                    &job,
                )
                .await
            {
                Ok(_) => {
                    observe_latency(ctx, &ns, &carried);
                    carried.iter().map(|e| e.child_job_uid.clone()).collect()
                }
                Err(e) if already_exists(&e) => delivered_uids(&api.get(&name).await?),
                Err(e) => return Err(e.into()),
            }
        }
    };
    let carried: Vec<QueuedCallback> = status
        .callback_queue
        .iter()
        .filter(|e| delivered.contains(&e.child_job_uid))
        .cloned()
        .collect();
    status
        .callback_queue
        .retain(|e| !delivered.contains(&e.child_job_uid));
    status.current_job = Some(name.clone());
    status.job_count += 1;
    status.phase = Some(SessionPhase::Running);
    status.reason = Some("CallbackDelivery".into());
    Ok(Some((name, carried)))
}

fn observe_latency(ctx: &Context, ns: &str, carried: &[QueuedCallback]) {
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

/// Step 4: marks `Delivered` every child whose entry has left the parent's queue in a delivery job. Children
/// marked `Enqueued` in this reconcile are taken as written (`fresh`): the store may not show that write yet, and a
/// write from the older copy would only fail with Conflict.
pub async fn mark_delivered(
    ctx: &Context,
    parent: &AgentSession,
    fresh: &HashMap<String, AgentJob>,
) -> Result<()> {
    let queued: HashSet<String> = parent
        .status
        .iter()
        .flat_map(|s| s.callback_queue.iter().map(|e| e.child_job_uid.clone()))
        .collect();
    let deliveries = delivery_jobs(ctx, parent);
    let children: Vec<Arc<AgentJob>> = children(ctx, parent)
        .into_iter()
        .map(|j| match fresh.get(&j.uid().unwrap_or_default()) {
            Some(written) => Arc::new(written.clone()),
            None => j,
        })
        .filter(|j| calls_back(j, parent) && state(j) == Some(CallbackState::Enqueued))
        .collect();
    let mut writes = Vec::new();
    for child in children {
        let uid = child.uid().unwrap_or_default();
        if queued.contains(&uid) {
            continue;
        }
        let Some(by) = deliveries.iter().find(|d| delivered_uids(d).contains(&uid)) else {
            continue;
        };
        let progress = CallbackProgress {
            state: CallbackState::Delivered,
            reason: Some("Delivered".into()),
            message: Some(format!(
                "delivered to session {} by Resume job {}",
                parent.name_any(),
                by.name_any()
            )),
            parent_uid: parent.uid(),
            delivered_by: Some(by.name_any()),
        };
        writes.push((child, progress));
    }
    stream::iter(writes)
        .map(|(child, progress)| async move { write_progress(ctx, &child, progress).await })
        .buffer_unordered(PARALLEL_CALLS)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
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
