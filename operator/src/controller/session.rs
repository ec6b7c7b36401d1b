//! The AgentSession reconciler: decides which job runs on the session (see domain::session) and keeps the session's
//! status. It is the only writer of session status, and writes it with the resourceVersion it read, so two
//! decisions can never both land.

use std::sync::Arc;
use std::time::Duration;

use crds::{AgentJob, AgentSession, CallbackOutcome};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use tracing::instrument;

use super::callbacks;
use crate::apply::apply_status;
use crate::context::{Context, MANAGER};
use crate::domain::session::{SessionEvent, SessionView, finish, plan};
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
    let ns = session.namespace().expect("AgentSession is namespaced");
    // Callbacks that arrived are queued (and their children marked) before anything else is decided.
    let session = callbacks::enqueue(&ctx, session).await?;
    let marked = callbacks::mark_queued(&ctx, &session).await?;
    let mut jobs = jobs_of(&ctx, &session);
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
    let pod_alive = |job: &str| ctx.pod(&ns, job).is_some();
    let view = SessionView {
        session: &session,
        jobs: jobs.iter().map(|j| j.as_ref()).collect(),
        pod_alive: &pod_alive,
        now: Time(jiff::Timestamp::now()),
    };
    let mut plan = plan(&view);
    drop(view);
    let delivery = callbacks::deliver(&ctx, &session, &mut plan.status, &marked).await?;
    if delivery.is_some() {
        finish(&mut plan.status, &session, &Time(jiff::Timestamp::now()));
    }
    let mut written = session.clone();
    if session.status.as_ref() != Some(&plan.status) {
        let api: Api<AgentSession> = Api::namespaced(ctx.client.clone(), &ns);
        ctx.metrics.write("agentsessions/status", "apply");
        written = Arc::new(apply_status(&api, session.as_ref(), MANAGER, &plan.status).await?);
        ctx.wrote(session.as_ref());
        if let Some((job, carried)) = &delivery {
            let children: Vec<&str> = carried.iter().map(|e| e.child_job.as_str()).collect();
            let note = format!(
                "Resume job {job} delivers {} callback(s): {}",
                carried.len(),
                children.join(", ")
            );
            ctx.event_about(
                session.as_ref(),
                false,
                "CallbacksDelivered",
                note,
                Some(job_reference(&ns, job)),
            )
            .await;
        }
        for event in plan.events {
            let (warning, reason, note) = describe(&event);
            let related = match &event {
                SessionEvent::JobStarted { job, .. } | SessionEvent::JobEnded { job, .. } => {
                    Some(job_reference(&ns, job))
                }
                SessionEvent::Reparented { .. } => None,
            };
            ctx.event_about(session.as_ref(), warning, reason, note, related)
                .await;
        }
    }
    callbacks::mark_delivered(&ctx, &written, &marked.written).await?;
    Ok(Action::requeue(RESYNC))
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
        SessionEvent::JobStarted { job, job_type } => (
            false,
            "JobStarted",
            format!("{} job {job} started", job_type.as_str()),
        ),
        SessionEvent::JobEnded {
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
