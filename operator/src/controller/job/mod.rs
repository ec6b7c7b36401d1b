//! The AgentJob reconciler: binds a job to its session (creating it for a Start), waits for its turn, runs its Pod
//! and follows the Pod to the job's end.
//!
//! Crash safety: every step is idempotent and re-derived from what the API server holds. The session is created with
//! the job's UID in an annotation, so a repeated create recognises its own session; the Pod is named after the job,
//! so a repeated create finds the first one; status is written with the resourceVersion it was computed from, so a
//! decision based on a stale read is refused (Conflict) and made again from fresh data.

use std::sync::Arc;
use std::time::Duration;

use crds::{
    AgentBlueprint, AgentJob, AgentJobStatus, AgentSession, AgentSessionSpec, CallbackProgress,
    CallbackState, JobPhase, JobType, labels,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::{info, instrument};

use super::callbacks::write_progress;
use crate::apply::{already_exists, apply_status, not_found};
use crate::context::{Context, MANAGER};
use crate::domain::agent_pod::AgentPod;
use crate::domain::callback::rules::{settled, state};
use crate::domain::job::{PodOutcome, deadline_left, failure_text, observe};
use crate::domain::lineage::{Binding, Gone, bind, creates_cycle, recorded_parent};
use crate::domain::order::{is_deleting, is_finished};
use crate::domain::pod::{PodInputs, build_pod};
use crate::domain::session::{belongs_to, bound_session};
use crate::error::Result;

/// A job that cannot run, with the reason recorded on it.
pub(super) struct Refusal {
    reason: &'static str,
    message: String,
}

pub(super) fn refuse(reason: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        message: message.into(),
    }
}

pub(super) fn now() -> Time {
    Time(jiff::Timestamp::now())
}

mod attempts;
mod binding;
mod duties;
mod governance;
mod retention;
mod run;
mod status;

#[cfg(test)]
mod scenarios;

use binding::*;
use duties::*;
use run::*;
use status::wait;
use status::{fail, lifecycle, write};

/// Ends `job` as Failed with `reason` (for stops decided elsewhere, such as budgets), with an Event.
pub async fn end_job(
    job: &AgentJob,
    ctx: &Context,
    reason: &'static str,
    message: String,
) -> Result<()> {
    fail(job, ctx, reason, message, None).await.map(|_| ())
}

#[instrument(skip_all, fields(job = %job.name_any(), ns = job.namespace().unwrap_or_default()))]
pub async fn reconcile(job: Arc<AgentJob>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile("agentjob");
    if ctx.is_behind(job.as_ref()) {
        // Our own newer write is on its way from the watch, and brings the job back here.
        return Ok(Action::await_change());
    }
    let job = if job.spec.callback {
        match callback_duties(job, &ctx).await? {
            Duties::Done(action) => return Ok(action),
            Duties::Continue(job) => job,
        }
    } else {
        job
    };
    if is_deleting(&job) {
        return Ok(Action::await_change());
    }
    if is_finished(&job) {
        return retention::expire(&job, &ctx).await;
    }
    if let Some(action) = crate::trace::adopt_parent_trace(&job, &ctx).await? {
        return Ok(action);
    }
    let ns = job.namespace().expect("AgentJob is namespaced");
    let sessions: Api<AgentSession> = Api::namespaced(ctx.client.clone(), &ns);

    let session = match job.spec.job_type {
        JobType::Start => start_session(&job, &sessions, &ctx).await?,
        JobType::Resume => resume_session(&job, &sessions, &ctx).await?,
    };
    let session = match session {
        Bound::Ready(s) => s,
        Bound::Wait(reason, message) => return wait(&job, &ctx, reason, message).await,
        Bound::Refused(r) => return fail(&job, &ctx, r.reason, r.message, None).await,
    };
    let job = crate::controller::tree::label_job(&ctx, job, &session).await?;

    // A Resume runs when the session has chosen it; the Start job that created the session always runs first.
    let chosen = job.spec.job_type == JobType::Start
        || session
            .status
            .as_ref()
            .and_then(|s| s.current_job.as_deref())
            == Some(job.name_any().as_str());
    if !chosen {
        // A callback delivery is created only for a free parent, which takes it in its next status write: until
        // that write arrives (it brings this job back here), there is nothing to tell anyone, nor to write.
        if job
            .labels()
            .get(labels::CALLBACK_DELIVERY)
            .map(String::as_str)
            == Some("true")
        {
            return Ok(Action::await_change());
        }
        let running = session.status.as_ref().and_then(|s| s.current_job.clone());
        let message = match running {
            Some(other) => format!(
                "session {} is running job {other}; this job runs after it",
                session.name_any()
            ),
            None => format!(
                "waiting for session {} to take this job",
                session.name_any()
            ),
        };
        return wait(&job, &ctx, "SessionBusy", message).await;
    }

    // A tree over its budget runs nothing more: a job about to start fails, a running one is stopped.
    if let Some((root, bound)) = crate::controller::budget::exceeded_above(&ctx, &session) {
        let why = crate::controller::budget::message(&root, &bound);
        if ctx.pod(&ns, &job.name_any()).is_some() {
            crate::controller::budget::stop(&ctx, &job, why).await?;
            return Ok(Action::await_change());
        }
        return fail(&job, &ctx, crate::controller::budget::REASON, why, None).await;
    }

    if let Some(action) = attempts::waiting(&job, &ctx).await? {
        return Ok(action);
    }
    let pod = match ctx.pod(&ns, &job.name_any()) {
        Some(pod) => {
            ctx.freshness.saw_pod(job.uid().as_deref());
            pod
        }
        // Created a moment ago: its watch event brings the job back here (and a look later, should the Pod have
        // gone before the store ever showed it).
        None if ctx.freshness.expects_pod(job.uid().as_deref()) => {
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
        None => return start_pod(&job, &session, &ctx).await,
    };
    follow_pod(&job, &session, &pod, &ctx).await
}
