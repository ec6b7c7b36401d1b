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
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::{info, instrument};

use super::callbacks::write_progress;
use crate::apply::{already_exists, apply_status, not_found};
use crate::context::{Context, MANAGER};
use crate::domain::callback::rules::{calls_back, settled, state};
use crate::domain::job::{PodOutcome, failure_text, observe};
use crate::domain::lineage::creates_cycle;
use crate::domain::order::{is_deleting, is_finished};
use crate::domain::pod::{PodInputs, build_pod};
use crate::domain::session::{belongs_to, condition};
use crate::error::Result;

/// A job that cannot run, with the reason recorded on it.
struct Refusal {
    reason: &'static str,
    message: String,
}

fn refuse(reason: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        message: message.into(),
    }
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
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
    if is_deleting(&job) || is_finished(&job) {
        return Ok(Action::await_change());
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

    // A Resume runs when the session has chosen it; the Start job that created the session always runs first.
    let chosen = job.spec.job_type == JobType::Start
        || session
            .status
            .as_ref()
            .and_then(|s| s.current_job.as_deref())
            == Some(job.name_any().as_str());
    if !chosen {
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

enum Duties {
    Done(Action),
    Continue(Arc<AgentJob>),
}

/// What a job with `callback: true` owes its parent: a finalizer while its callback is not yet in the parent's
/// queue (so deleting the job cannot lose it), a `Stopped` end when deleted while running, and a `Dropped` callback
/// when the parent is gone.
async fn callback_duties(job: Arc<AgentJob>, ctx: &Context) -> Result<Duties> {
    let has_finalizer = job
        .finalizers()
        .iter()
        .any(|f| f == labels::CALLBACK_FINALIZER);
    if is_deleting(&job) {
        if !has_finalizer {
            return Ok(Duties::Done(Action::await_change()));
        }
        if !is_finished(&job) {
            return stop_deleted(&job, ctx).await.map(Duties::Done);
        }
        if !settled(&job) {
            match parent_of(&job, ctx).await? {
                ParentState::Present => return Ok(Duties::Done(Action::await_change())),
                gone => drop_callback(&job, ctx, gone).await?,
            }
        }
        set_finalizer(&job, ctx, false).await?;
        return Ok(Duties::Done(Action::await_change()));
    }
    if is_finished(&job) {
        let waiting = matches!(
            state(&job),
            None | Some(
                CallbackState::Pending | CallbackState::NotRequested | CallbackState::Enqueued
            )
        );
        if waiting
            && let gone @ (ParentState::Missing | ParentState::Replaced) =
                parent_of(&job, ctx).await?
        {
            drop_callback(&job, ctx, gone).await?;
        }
        if has_finalizer && (settled(&job) || waiting_dropped(&job)) {
            set_finalizer(&job, ctx, false).await?;
        }
        return Ok(Duties::Done(Action::await_change()));
    }
    if !has_finalizer {
        return Ok(Duties::Continue(Arc::new(
            set_finalizer(&job, ctx, true).await?,
        )));
    }
    Ok(Duties::Continue(job))
}

fn waiting_dropped(job: &AgentJob) -> bool {
    state(job) == Some(CallbackState::Dropped)
}

enum ParentState {
    Present,
    Missing,
    Replaced,
}

async fn parent_of(job: &AgentJob, ctx: &Context) -> Result<ParentState> {
    let Some(name) = &job.spec.parent_session_name else {
        return Ok(ParentState::Missing);
    };
    let ns = job.namespace().unwrap_or_default();
    let parent = match ctx.session(&ns, name) {
        Some(p) => Some(p),
        // Confirm before dropping anything: the store may lag behind a parent created a moment ago.
        None => Api::<AgentSession>::namespaced(ctx.client.clone(), &ns)
            .get_opt(name)
            .await?
            .map(Arc::new),
    };
    Ok(match parent {
        None => ParentState::Missing,
        Some(p) if p.metadata.deletion_timestamp.is_some() => ParentState::Missing,
        Some(p) if calls_back(job, &p) => ParentState::Present,
        Some(_) => ParentState::Replaced,
    })
}

async fn drop_callback(job: &AgentJob, ctx: &Context, why: ParentState) -> Result<()> {
    let parent = job.spec.parent_session_name.clone().unwrap_or_default();
    let (reason, message) = match why {
        ParentState::Replaced => (
            "ParentReplaced",
            format!(
                "session {parent} is a newer session reusing the parent's name; the callback is not delivered to it"
            ),
        ),
        _ => (
            "ParentNotFound",
            format!("parent session {parent} no longer exists; the callback is dropped"),
        ),
    };
    let progress = CallbackProgress {
        state: CallbackState::Dropped,
        reason: Some(reason.into()),
        message: Some(message.clone()),
        parent_uid: None,
        delivered_by: None,
    };
    write_progress(ctx, job, progress).await?;
    ctx.metrics.callbacks_dropped.inc();
    ctx.event(job, true, "CallbackDropped", message).await;
    Ok(())
}

/// Adds or removes the callback finalizer (with the job's resourceVersion, so it never acts on a stale job).
async fn set_finalizer(job: &AgentJob, ctx: &Context, present: bool) -> Result<AgentJob> {
    let mut finalizers: Vec<String> = job
        .finalizers()
        .iter()
        .filter(|f| *f != labels::CALLBACK_FINALIZER)
        .cloned()
        .collect();
    if present {
        finalizers.push(labels::CALLBACK_FINALIZER.into());
    }
    let api: Api<AgentJob> =
        Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    let patch = serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": job.resource_version()}});
    ctx.metrics.write("agentjobs", "patch");
    let written = api
        .patch(
            &job.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|e| {
            crate::error::Error::from_write(e, format!("AgentJob {} finalizers", job.name_any()))
        })?;
    ctx.wrote(job);
    Ok(written)
}

/// A callback job deleted while it ran: its Pod is stopped and it ends as Failed with reason Stopped, which the
/// parent receives as a Stopped callback. The finalizer keeps the job until then.
async fn stop_deleted(job: &AgentJob, ctx: &Context) -> Result<Action> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    if ctx
        .pod(&job.namespace().unwrap_or_default(), &job.name_any())
        .is_some()
    {
        ctx.metrics.write("pods", "delete");
        match pods.delete(&job.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    fail(
        job,
        ctx,
        "Stopped",
        "the job was deleted while it ran; its Pod was stopped".into(),
        None,
    )
    .await
}

enum Bound {
    Ready(Arc<AgentSession>),
    Wait(&'static str, String),
    Refused(Refusal),
}

/// The session of a Start job: created by it, or refused when another owns the name.
async fn start_session(job: &AgentJob, api: &Api<AgentSession>, ctx: &Context) -> Result<Bound> {
    let name = &job.spec.session_name;
    let ns = job.namespace().unwrap_or_default();
    let existing = match ctx.session(&ns, name) {
        Some(s) => Some(s),
        // The store may not have caught up with a session this job created a moment ago.
        None if job
            .status
            .as_ref()
            .and_then(|s| s.session_uid.as_ref())
            .is_some() =>
        {
            api.get_opt(name).await?.map(Arc::new)
        }
        None => None,
    };
    if let Some(session) = existing {
        return Ok(if belongs_to(job, &session) {
            Bound::Ready(session)
        } else {
            Bound::Refused(refuse(
                "AlreadyExists",
                format!(
                    "session {name} already exists; continue it with a Resume job, or choose another name"
                ),
            ))
        });
    }
    if job
        .status
        .as_ref()
        .and_then(|s| s.session_uid.as_ref())
        .is_some()
    {
        return Ok(Bound::Refused(refuse(
            "SessionDeleted",
            format!("session {name} was deleted while this job ran"),
        )));
    }
    if let Some(bp) = &job.spec.blueprint {
        match blueprint(ctx, &ns, bp).await? {
            None => {
                return Ok(Bound::Refused(refuse(
                    "BlueprintNotFound",
                    format!("AgentBlueprint {bp} does not exist in namespace {ns}"),
                )));
            }
            Some(b) if b.spec.disabled => {
                return Ok(Bound::Refused(refuse(
                    "BlueprintDisabled",
                    format!("AgentBlueprint {bp} is disabled"),
                )));
            }
            Some(_) => {}
        }
    }
    if let Some(refusal) = cycle(job, ctx) {
        return Ok(Bound::Refused(refusal));
    }
    let session = AgentSession {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            annotations: Some(
                [(
                    labels::CREATED_BY_JOB.to_string(),
                    job.uid().unwrap_or_default(),
                )]
                .into(),
            ),
            labels: Some([(labels::MANAGED_BY.to_string(), labels::MANAGER.to_string())].into()),
            ..Default::default()
        },
        spec: AgentSessionSpec {
            blueprint: job.spec.blueprint.clone(),
            parent_session_name: job.spec.parent_session_name.clone(),
            project_dir: job.spec.project_dir.clone(),
        },
        status: None,
    };
    ctx.metrics.write("agentsessions", "create");
    match api
        .create(
            &PostParams {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            },
            &session,
        )
        .await
    {
        Ok(created) => {
            info!(session = %name, "created session");
            ctx.event(
                &created,
                false,
                "Created",
                format!("Created by Start job {}", job.name_any()),
            )
            .await;
            Ok(Bound::Ready(Arc::new(created)))
        }
        Err(e) if already_exists(&e) => match api.get_opt(name).await? {
            Some(s) if belongs_to(job, &s) => Ok(Bound::Ready(Arc::new(s))),
            _ => Ok(Bound::Refused(refuse(
                "AlreadyExists",
                format!("session {name} already exists; continue it with a Resume job"),
            ))),
        },
        Err(e) => Err(e.into()),
    }
}

/// The session of a Resume job: it must exist, and be the one the job was first bound to.
async fn resume_session(job: &AgentJob, api: &Api<AgentSession>, ctx: &Context) -> Result<Bound> {
    let name = &job.spec.session_name;
    let ns = job.namespace().unwrap_or_default();
    let session = match ctx.session(&ns, name) {
        Some(s) => Some(s),
        None => api.get_opt(name).await?.map(Arc::new),
    };
    let Some(session) = session else {
        // A Start job for that name may be about to create it (both created at once): wait for it rather than fail.
        let start_pending = ctx.jobs.state().iter().any(|j| {
            j.namespace().as_deref() == Some(ns.as_str())
                && j.spec.job_type == JobType::Start
                && &j.spec.session_name == name
                && !is_finished(j)
                && !is_deleting(j)
        });
        return Ok(if start_pending {
            Bound::Wait(
                "WaitingForSession",
                format!("session {name} is being created by its Start job"),
            )
        } else {
            Bound::Refused(refuse(
                "SessionNotFound",
                format!("session {name} does not exist; start it with a Start job"),
            ))
        });
    };
    if !belongs_to(job, &session) {
        return Ok(Bound::Refused(refuse(
            "SessionNotFound",
            format!("session {name} was deleted and created again"),
        )));
    }
    Ok(Bound::Ready(session))
}

async fn blueprint(ctx: &Context, ns: &str, name: &str) -> Result<Option<Arc<AgentBlueprint>>> {
    if let Some(b) = ctx.blueprints.get(&ObjectRef::new(name).within(ns)) {
        return Ok(Some(b));
    }
    // Not in the store: it may have been created a moment ago. Ask before failing a job for it.
    let api: Api<AgentBlueprint> = Api::namespaced(ctx.client.clone(), ns);
    Ok(api.get_opt(name).await?.map(Arc::new))
}

fn cycle(job: &AgentJob, ctx: &Context) -> Option<Refusal> {
    let parent = job.spec.parent_session_name.as_ref()?;
    let ns = job.namespace().unwrap_or_default();
    let parent_of = |s: &str| {
        let session = ctx.session(&ns, s)?;
        session
            .status
            .as_ref()
            .and_then(|st| st.parent_session_name.clone())
            .or_else(|| session.spec.parent_session_name.clone())
    };
    creates_cycle(&job.spec.session_name, parent, parent_of).then(|| {
        refuse(
            "ParentCycle",
            format!(
                "session {parent} descends from session {}: it cannot be its parent",
                job.spec.session_name
            ),
        )
    })
}

async fn start_pod(job: &AgentJob, session: &AgentSession, ctx: &Context) -> Result<Action> {
    let ns = job.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    if job
        .status
        .as_ref()
        .and_then(|s| s.pod_name.as_ref())
        .is_some()
    {
        // It had a Pod. Unless the store is behind, someone deleted it: the run is lost.
        if pods.get_opt(&job.name_any()).await?.is_none() {
            return fail(
                job,
                ctx,
                "PodDeleted",
                "the job's Pod was deleted before it ended".into(),
                None,
            )
            .await;
        }
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    if let Some(refusal) = cycle(job, ctx) {
        return fail(job, ctx, refusal.reason, refusal.message, None).await;
    }
    let blueprint = match &session.spec.blueprint {
        Some(name) => match blueprint(ctx, &ns, name).await? {
            Some(b) => Some(b),
            None => {
                let message = format!(
                    "AgentBlueprint {name} of session {} does not exist",
                    session.name_any()
                );
                return fail(job, ctx, "BlueprintNotFound", message, None).await;
            }
        },
        None => None,
    };
    let workspace = blueprint
        .as_ref()
        .and_then(|b| b.spec.pod_template.as_ref())
        .and_then(|t| t.workspace.as_ref());
    if let Some(spec) = workspace
        && let Some(action) = super::workspace::ensure(job, session, spec, ctx).await?
    {
        return Ok(action);
    }
    let pod = build_pod(&PodInputs {
        job,
        session,
        blueprint: blueprint.as_deref(),
        defaults: &ctx.defaults,
    });
    ctx.metrics.write("pods", "create");
    match pods
        .create(
            &PostParams {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            },
            &pod,
        )
        .await
    {
        Ok(_) => {
            ctx.freshness.created_pod(job.uid().as_deref());
            info!("created pod")
        }
        Err(e) if already_exists(&e) => ctx.freshness.created_pod(job.uid().as_deref()),
        Err(e) => return Err(e.into()),
    }
    // The Pod's own events bring the job back here; its status is written when the Pod has one.
    Ok(Action::await_change())
}

async fn follow_pod(
    job: &AgentJob,
    session: &AgentSession,
    pod: &Pod,
    ctx: &Context,
) -> Result<Action> {
    let status = job.status.clone().unwrap_or_default();
    let started = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.clone())
        .or_else(|| pod.metadata.creation_timestamp.clone());
    match observe(pod) {
        PodOutcome::Pending => {
            if status.phase != Some(JobPhase::Pending)
                || status.reason.as_deref() != Some("PodStarting")
            {
                let mut next = lifecycle(
                    job,
                    &status,
                    JobPhase::Pending,
                    "PodStarting",
                    "the job's Pod is starting",
                );
                next.pod_name = Some(pod.name_any());
                next.session_uid = session.uid();
                write(job, ctx, next).await?;
            }
            Ok(Action::await_change())
        }
        PodOutcome::Running => {
            if status.phase != Some(JobPhase::Running) {
                let mut next = lifecycle(
                    job,
                    &status,
                    JobPhase::Running,
                    "PodRunning",
                    "the agent is running",
                );
                next.pod_name = Some(pod.name_any());
                next.session_uid = session.uid();
                next.start_time = started.clone();
                write(job, ctx, next).await?;
                ctx.event(
                    job,
                    false,
                    "Started",
                    format!(
                        "Pod {} runs the agent on session {}",
                        pod.name_any(),
                        session.name_any()
                    ),
                )
                .await;
            }
            match deadline_left(job, started.as_ref()) {
                Some(left) if left.is_zero() => stop_for_deadline(job, pod, ctx).await,
                Some(left) => Ok(Action::requeue(left)),
                None => Ok(Action::await_change()),
            }
        }
        PodOutcome::Succeeded {
            message,
            finished_at,
        } => {
            let mut next = lifecycle(
                job,
                &status,
                JobPhase::Succeeded,
                "Completed",
                "the agent finished",
            );
            next.pod_name = Some(pod.name_any());
            next.session_uid = session.uid();
            next.start_time = started;
            next.completion_time = Some(finished_at.unwrap_or_else(now));
            next.exit_code = Some(0);
            // The result the runner reported to the gateway wins; the termination message is the fallback. The write
            // carries the resourceVersion of the job as read: if the gateway's report landed after that read, the
            // write fails with Conflict and is decided again from a store that has it, so a report is never
            // overwritten, and no extra read is on the path of every job's end.
            let reported = job
                .status
                .as_ref()
                .and_then(|s| s.result.as_ref())
                .is_some();
            if !reported && let Some(text) = message {
                let (result, cut) = crds::contract::bound_result(&text);
                next.result = Some(result);
                next.result_truncated = cut.then_some(true);
            }
            write(job, ctx, next).await?;
            ctx.event(
                job,
                false,
                "Succeeded",
                "the agent finished successfully".into(),
            )
            .await;
            Ok(Action::await_change())
        }
        PodOutcome::Failed {
            exit_code,
            reason,
            message,
            finished_at,
        } => {
            let job_reason = if reason == "DeadlineExceeded" {
                "DeadlineExceeded"
            } else {
                "PodFailed"
            };
            let text = failure_text(exit_code, &reason, message.as_deref());
            let mut next = lifecycle(job, &status, JobPhase::Failed, job_reason, &text);
            next.pod_name = Some(pod.name_any());
            next.session_uid = session.uid();
            next.start_time = started;
            next.completion_time = Some(finished_at.unwrap_or_else(now));
            next.exit_code = exit_code;
            // As for results: the runner's reported error wins, and the resourceVersion keeps a late report safe.
            if job.status.as_ref().and_then(|s| s.error.as_ref()).is_none() {
                next.error = Some(text.clone());
            }
            write(job, ctx, next).await?;
            ctx.event(job, true, "Failed", text).await;
            Ok(Action::await_change())
        }
    }
}

fn deadline_left(job: &AgentJob, started: Option<&Time>) -> Option<Duration> {
    let timeout = job.spec.timeout_seconds?;
    let started = started?.0;
    let deadline = started
        .checked_add(jiff::SignedDuration::from_secs(timeout))
        .ok()?;
    let left = jiff::Timestamp::now().duration_until(deadline);
    Some(if left.is_negative() {
        Duration::ZERO
    } else {
        left.unsigned_abs()
    })
}

/// Ends a job that outran its timeoutSeconds: the status is written first, so that the Pod's disappearance is
/// never mistaken for an external deletion, then the Pod is stopped.
async fn stop_for_deadline(job: &AgentJob, pod: &Pod, ctx: &Context) -> Result<Action> {
    let message = format!(
        "the job ran longer than its timeoutSeconds ({}s) and was stopped",
        job.spec.timeout_seconds.unwrap_or(0)
    );
    fail(job, ctx, "DeadlineExceeded", message, Some(pod.name_any())).await?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    ctx.metrics.write("pods", "delete");
    match pods.delete(&pod.name_any(), &DeleteParams::default()).await {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if not_found(&e) => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

/// Marks a job Pending with `reason`, once (no write when it already says so).
async fn wait(
    job: &AgentJob,
    ctx: &Context,
    reason: &'static str,
    message: String,
) -> Result<Action> {
    let status = job.status.clone().unwrap_or_default();
    if status.phase != Some(JobPhase::Pending) || status.reason.as_deref() != Some(reason) {
        write(
            job,
            ctx,
            lifecycle(job, &status, JobPhase::Pending, reason, &message),
        )
        .await?;
        ctx.event(job, false, reason, message).await;
    }
    Ok(Action::await_change())
}

/// Fails a job that cannot run or whose run failed, with `reason` in its status and an Event.
pub(super) async fn fail(
    job: &AgentJob,
    ctx: &Context,
    reason: &'static str,
    message: String,
    pod: Option<String>,
) -> Result<Action> {
    let status = job.status.clone().unwrap_or_default();
    let mut next = lifecycle(job, &status, JobPhase::Failed, reason, &message);
    next.error = Some(message.clone());
    next.completion_time = Some(now());
    next.pod_name = pod.or(status.pod_name.clone());
    write(job, ctx, next).await?;
    info!(reason, %message, "job failed");
    ctx.event(job, true, reason, message).await;
    Ok(Action::await_change())
}

/// The operator's part of a job's status, carried over from `previous` and moved to `phase`. Fields the gateway
/// owns (result, agentSessionId, error reported by the runner) and the callback progress are left out, so that
/// server-side apply leaves them alone.
pub(super) fn lifecycle(
    job: &AgentJob,
    previous: &AgentJobStatus,
    phase: JobPhase,
    reason: &str,
    message: &str,
) -> AgentJobStatus {
    let now = now();
    let generation = job.metadata.generation;
    let mut conditions: Vec<Condition> = vec![condition(
        &previous.conditions,
        "Running",
        phase == JobPhase::Running,
        reason.into(),
        message.into(),
        generation,
        &now,
    )];
    if phase.is_finished() {
        let type_ = if phase == JobPhase::Succeeded {
            "Complete"
        } else {
            "Failed"
        };
        conditions.push(condition(
            &previous.conditions,
            type_,
            true,
            reason.into(),
            message.into(),
            generation,
            &now,
        ));
    }
    AgentJobStatus {
        phase: Some(phase),
        reason: Some(reason.into()),
        conditions,
        observed_generation: generation,
        pod_name: previous.pod_name.clone(),
        session_uid: previous.session_uid.clone(),
        start_time: previous.start_time.clone(),
        completion_time: previous.completion_time.clone(),
        exit_code: previous.exit_code,
        // Only the first states: from Enqueued on, the callback field manager owns this field.
        callback: Some(CallbackProgress {
            state: if job.spec.callback {
                CallbackState::Pending
            } else {
                CallbackState::NotRequested
            },
            reason: None,
            message: None,
            parent_uid: None,
            delivered_by: None,
        }),
        ..Default::default()
    }
}

pub(super) async fn write(job: &AgentJob, ctx: &Context, status: AgentJobStatus) -> Result<()> {
    let api: Api<AgentJob> =
        Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    ctx.metrics.write("agentjobs/status", "apply");
    apply_status(&api, job, MANAGER, &status).await?;
    ctx.wrote(job);
    Ok(())
}
