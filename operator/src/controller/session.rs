//! The AgentSession reconciler: decides which job runs on the session (see domain::session) and delivers its
//! children's callbacks (see callbacks). It is the only writer of session status, and writes it with the
//! resourceVersion it read, so two decisions can never both land.
//!
//! One reconcile is a pipeline: `fetch` reads the session's jobs and children from the indexed stores (and what
//! must be read afresh from the API server), `domain::session_work::plan` decides everything from that, and
//! `write` makes the writes in the order the exactly-once argument of `callbacks` needs.

use std::sync::Arc;
use std::time::Duration;

use crds::{AgentJob, AgentSession, AgentSessionStatus, CallbackOutcome};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use tracing::instrument;

use super::callbacks;
use super::session_retention::Expiry;
use crate::apply::apply_status;
use crate::context::{Context, MANAGER};
use crate::domain::session::{SessionEvent, belongs_to, finish};
use crate::domain::session_work::{SessionFacts, SessionWork, plan, to_read};
use crate::domain::usage;
use crate::error::Result;

/// Watches can miss changes; a periodic look makes sure every session converges.
const RESYNC: Duration = Duration::from_secs(300);

/// The jobs naming `session`, from the store.
pub fn jobs_of(ctx: &Context, session: &AgentSession) -> Vec<Arc<AgentJob>> {
    ctx.jobs_of(
        &session.namespace().unwrap_or_default(),
        &session.name_any(),
    )
}

#[instrument(skip_all, fields(session = %session.name_any(), ns = session.namespace().unwrap_or_default()))]
pub async fn reconcile(session: Arc<AgentSession>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile("agentsession");
    if session.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if ctx.is_behind(session.as_ref()) {
        // Our own newer write is on its way from the watch, and brings the session back here.
        return Ok(Action::await_change());
    }
    let look_again = match super::session_retention::expire(&session, &ctx).await? {
        Expiry::Deleted => return Ok(Action::await_change()),
        Expiry::LookAgain(after) => after.min(RESYNC),
        Expiry::Kept => RESYNC,
    };
    let ns = session.namespace().expect("AgentSession is namespaced");
    // The tree label and the ownerReference to the current parent first: every later write builds on them.
    let (session, placement) = super::tree::sync_session(&ctx, session).await?;
    let fetched = fetch(&ctx, &session).await?;
    let pod_alive = |job: &str| ctx.pod(&ns, job).is_some();
    let facts = fetched.facts(&session, &pod_alive, Time(jiff::Timestamp::now()));
    let mut work = plan(&facts);
    roll_up_usage(&ctx, &session, &fetched.jobs, &mut work.status);
    work.status.depth = Some(placement.depth);
    if let Some(enqueue) = work.enqueue.as_mut() {
        enqueue.status.depth = Some(placement.depth);
    }
    // The session as this reconcile leaves it, for the parent-close policy.
    let after = AgentSession {
        status: Some(work.status.clone()),
        ..(*session).clone()
    };
    let over_budget = work.status.budget_exceeded.clone();
    write(&ctx, &ns, session.clone(), &facts, work).await?;
    super::tree::stop_descendants(&ctx, &after).await?;
    if let Some(bound) = over_budget {
        stop_for_budget(&ctx, &session, &bound).await?;
    }
    Ok(Action::requeue(look_again))
}

/// Brings the session's usage, its children's shares and treeUsage up to date (see `domain::usage`).
fn roll_up_usage(
    ctx: &Context,
    session: &AgentSession,
    jobs: &[Arc<AgentJob>],
    status: &mut AgentSessionStatus,
) {
    let ns = session.namespace().unwrap_or_default();
    let current = status.current_job.as_deref().and_then(|c| {
        jobs.iter()
            .find(|j| j.name_any() == c && belongs_to(j, session))
    });
    let children =
        crate::controller::session_index::current_children(ctx, &ns, &session.name_any());
    let children: Vec<&AgentSession> = children.iter().map(|c| c.as_ref()).collect();
    let parent_now = |name: &str, uid: &str| {
        ctx.session(&ns, name)
            .filter(|s| s.uid().as_deref() == Some(uid))
            .map(|s| crate::controller::session_index::parent_of(&s).map(String::from))
    };
    usage::roll_up(
        status,
        session,
        current.map(|j| j.as_ref()),
        &children,
        &parent_now,
    );
    finish(status, session, &Time(jiff::Timestamp::now()));
}

/// The tree below a session over its budget: the crossing's Event (once, after the write that records it), then
/// every running job stopped (see `budget`).
async fn stop_for_budget(ctx: &Context, session: &AgentSession, bound: &str) -> Result<()> {
    let crossed = session
        .status
        .as_ref()
        .and_then(|s| s.budget_exceeded.as_ref())
        .is_none();
    if crossed {
        let note = format!("the tree passed its budget: {bound}; its running jobs are stopped");
        ctx.event_about(session, true, "BudgetExceeded", note, None)
            .await;
    }
    // The job reconciler may stop some of these jobs first; a conflict here is retried from fresh stores.
    let stopped = crate::controller::budget::stop_tree(ctx, session, bound).await?;
    if !stopped.is_empty() {
        let note = format!("stopped for the budget ({bound}): {}", stopped.join(", "));
        ctx.event_about(session, true, "BudgetExceeded", note, None)
            .await;
    }
    Ok(())
}

/// What one reconcile reads: the session's jobs and children from the indexed stores, and fresh copies of the
/// children whose callbacks may join the queue.
struct Fetched {
    jobs: Vec<Arc<AgentJob>>,
    children: Vec<Arc<AgentJob>>,
    fresh: Vec<AgentJob>,
}

impl Fetched {
    fn facts<'a>(
        &'a self,
        session: &'a AgentSession,
        pod_alive: &'a (dyn Fn(&str) -> bool + Sync),
        now: Time,
    ) -> SessionFacts<'a> {
        SessionFacts {
            session,
            jobs: self.jobs.iter().map(|j| j.as_ref()).collect(),
            children: self.children.iter().map(|j| j.as_ref()).collect(),
            fresh: self.fresh.iter().collect(),
            pod_alive,
            now,
        }
    }
}

async fn fetch(ctx: &Context, session: &AgentSession) -> Result<Fetched> {
    let ns = session.namespace().unwrap_or_default();
    let mut jobs = jobs_of(ctx, session);
    // The job store can lag behind the API server: a delivery job this operator created a moment ago, or every job
    // while a watch lists again after the API server came back. A current job missing from the store is read from
    // the API server before the plan may take it for deleted, which would stop the session with callbacks still
    // queued (seen in the chaos test, right after an API server restart).
    if let Some(current) = session
        .status
        .as_ref()
        .and_then(|s| s.current_job.as_deref())
        && !jobs.iter().any(|j| j.name_any() == current)
    {
        let api: Api<AgentJob> = Api::namespaced(ctx.client.clone(), &ns);
        if let Some(job) = api.get_opt(current).await? {
            jobs.push(Arc::new(job));
        }
    }
    let children = ctx.children_of(&ns, &session.name_any());
    let job_refs: Vec<&AgentJob> = jobs.iter().map(|j| j.as_ref()).collect();
    let child_refs: Vec<&AgentJob> = children.iter().map(|j| j.as_ref()).collect();
    let candidates = to_read(session, &job_refs, &child_refs);
    let fresh = if candidates.is_empty() {
        Vec::new()
    } else {
        callbacks::read_fresh(ctx, &ns, &candidates).await?
    };
    Ok(Fetched {
        jobs,
        children,
        fresh,
    })
}

/// The plan's writes, in the order of the exactly-once argument (see `callbacks`): queue; marks `Enqueued` and the
/// delivery job together; session status; marks `Delivered`. Each step runs only once the one before it has landed.
async fn write(
    ctx: &Context,
    ns: &str,
    session: Arc<AgentSession>,
    facts: &SessionFacts<'_>,
    work: SessionWork,
) -> Result<()> {
    // 1. Queued.
    let session = match &work.enqueue {
        Some(enqueue) => {
            let written = write_status(ctx, &session, &enqueue.status).await?;
            ctx.metrics
                .callbacks_enqueued
                .inc_by(enqueue.entries.len() as u64);
            let waiting = enqueue.status.callback_queue.len();
            for e in &enqueue.entries {
                let note = format!(
                    "callback of job {} ({:?}) queued; {waiting} waiting",
                    e.child_job, e.outcome
                );
                ctx.event(&written, false, "CallbackQueued", note).await;
            }
            Arc::new(written)
        }
        None => session,
    };
    let child = |uid: &str| {
        facts
            .children
            .iter()
            .copied()
            .find(|c| c.uid().as_deref() == Some(uid))
    };
    // 2 and 3 at once: the marks `Enqueued` and the delivery job. The argument of `callbacks` needs every carried
    // child marked before its entry leaves the queue, which is the status write of step 4, not before the job is
    // made: a job whose entries are still queued is only found by name and taken later. The copies as written are
    // fresher than the store for the marks that follow (a write from the older copy would only fail with Conflict).
    let unmarked: Vec<&AgentJob> = work
        .mark_enqueued
        .iter()
        .filter_map(|uid| child(uid))
        .collect();
    let creating = work.delivery.as_ref().and_then(|d| d.create.as_ref());
    let (marked, existing) =
        tokio::try_join!(callbacks::mark_all(ctx, unmarked, &work.enqueued), async {
            match creating {
                Some(job) => callbacks::create_delivery(ctx, ns, job).await,
                None => Ok(None),
            }
        })?;
    let latest = |uid: &str| marked.get(uid).or_else(|| child(uid));
    let mut work = work;
    if let Some(delivery) = &work.delivery
        && let Some(job) = &delivery.create
    {
        match existing {
            None => {
                callbacks::observe_latency(ctx, ns, &delivery.carried);
                crate::trace::callbacks_delivered(job, &delivery.carried, |e| {
                    ctx.jobs
                        .get(&kube::runtime::reflector::ObjectRef::new(&e.child_job).within(ns))
                });
            }
            // Made before a crash and not in the store yet: the plan is made again with it (from the session as
            // queued and the children as marked), so the session takes the entries that job carries.
            Some(existing) => {
                let again = SessionFacts {
                    session: &session,
                    jobs: facts.jobs.iter().copied().chain([&existing]).collect(),
                    children: facts
                        .children
                        .iter()
                        .filter_map(|c| latest(&c.uid().unwrap_or_default()))
                        .collect(),
                    fresh: Vec::new(),
                    pod_alive: facts.pod_alive,
                    now: facts.now.clone(),
                };
                work = plan(&again);
            }
        }
    }
    // 4. The session's next status, taking the delivery job with the entries it carries.
    if !same_on_the_wire(session.status.as_ref(), &work.status) {
        write_status(ctx, &session, &work.status).await?;
        if let Some(delivery) = &work.delivery {
            let children: Vec<&str> = delivery
                .carried
                .iter()
                .map(|e| e.child_job.as_str())
                .collect();
            let note = format!(
                "Resume job {} delivers {} callback(s): {}",
                delivery.name,
                delivery.carried.len(),
                children.join(", ")
            );
            ctx.event_about(
                session.as_ref(),
                false,
                "CallbacksDelivered",
                note,
                Some(job_reference(ns, &delivery.name)),
            )
            .await;
        }
        for event in &work.events {
            let (warning, reason, note) = describe(event);
            let related = match event {
                SessionEvent::JobGone { job, .. } => Some(job_reference(ns, job)),
                SessionEvent::Reparented { .. } => None,
            };
            ctx.event_about(session.as_ref(), warning, reason, note, related)
                .await;
        }
    }
    // 5. Marked Delivered.
    let delivered = work
        .mark_delivered
        .into_iter()
        .filter_map(|(uid, progress)| Some((latest(&uid)?, progress)))
        .collect();
    callbacks::mark_each(ctx, delivered).await?;
    Ok(())
}

/// Whether writing `next` over `current` would change nothing. Compared as sent, not in memory: times go out in
/// whole seconds, so a status planned from an unsent copy (the queue as just written) differs in memory from the
/// copy the API server returned, and an apply that changes nothing leaves the resourceVersion where it was: the
/// copy would then count as superseded (`freshness`) and the session would never be reconciled again.
fn same_on_the_wire(current: Option<&AgentSessionStatus>, next: &AgentSessionStatus) -> bool {
    current.is_some_and(|c| serde_json::to_value(c).ok() == serde_json::to_value(next).ok())
}

async fn write_status(
    ctx: &Context,
    session: &AgentSession,
    status: &AgentSessionStatus,
) -> Result<AgentSession> {
    let api: Api<AgentSession> =
        Api::namespaced(ctx.client.clone(), &session.namespace().unwrap_or_default());
    ctx.metrics.write("agentsessions/status", "apply");
    let written = apply_status(&api, session, MANAGER, status).await?;
    ctx.wrote(session);
    Ok(written)
}

pub(crate) fn job_reference(ns: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some(AgentJob::api_version(&()).into()),
        kind: Some(AgentJob::kind(&()).into()),
        name: Some(name.into()),
        namespace: Some(ns.into()),
        ..Default::default()
    }
}

fn describe(event: &SessionEvent) -> (bool, &'static str, String) {
    match event {
        SessionEvent::JobGone {
            job,
            outcome,
            detail,
        } => {
            let (warning, reason, what) = match outcome {
                CallbackOutcome::Succeeded => (false, "JobSucceeded", "succeeded"),
                CallbackOutcome::Failed => (true, "JobFailed", "failed"),
                CallbackOutcome::Stopped => (true, "JobStopped", "was stopped"),
            };
            let note = match detail {
                Some(d) => format!("job {job} {what}: {d}"),
                None => format!("job {job} {what}"),
            };
            (warning, reason, note)
        }
        SessionEvent::Reparented { from, to } => (
            false,
            "Reparented",
            match from {
                Some(from) => format!("parent changed from {from} to {to}"),
                None => format!("parent set to {to}"),
            },
        ),
    }
}
