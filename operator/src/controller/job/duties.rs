//! What a job with `callback: true` owes its parent, whatever happens to the job.

use super::*;

pub(super) enum Duties {
    Done(Action),
    Continue(Arc<AgentJob>),
}

/// What a job with `callback: true` owes its parent: a binding to the parent session, recorded on the job as soon
/// as it is made (see `lineage::bind`); a finalizer while its callback is not yet in the parent's queue (so deleting
/// the job cannot lose it); a `Stopped` end when deleted while running; and a `Dropped` callback when the job has
/// ended and its parent is gone (or never came).
///
/// Crash safety, write by write (the operator may die between any two): the finalizer comes first, so from then
/// on the job cannot vanish with its callback. The binding is written before any step of delivery can use it
/// (`calls_back` ignores an unbound child), so a crash before that write leaves nothing to undo: the next run
/// decides again from the same objects, and the only session that can qualify is the same one (a second Start job
/// for the name is refused with AlreadyExists). Every write carries the job's resourceVersion, so a decision made
/// from a copy that misses an earlier write (a binding, a mark) is refused with Conflict and made again. A drop is
/// decided only after fresh reads of the parent and of the namespace's Start jobs, and it is final: from then on
/// no step delivers the callback (`settled`).
pub(super) async fn callback_duties(job: Arc<AgentJob>, ctx: &Context) -> Result<Duties> {
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
        let job = if settled(&job) {
            job
        } else {
            follow_parent(job, ctx, true).await?
        };
        if !settled(&job) {
            // Bound, or waiting for the parent's Start job: the parent's queue takes the callback.
            return Ok(Duties::Done(Action::await_change()));
        }
        set_finalizer(&job, ctx, false).await?;
        return Ok(Duties::Done(Action::await_change()));
    }
    if is_finished(&job) {
        let open = !matches!(
            state(&job),
            Some(CallbackState::Delivered | CallbackState::Dropped)
        );
        let job = if open {
            follow_parent(job, ctx, true).await?
        } else {
            job
        };
        let job = if has_finalizer && settled(&job) {
            Arc::new(set_finalizer(&job, ctx, false).await?)
        } else {
            job
        };
        // Finished: what is left is its retention.
        return Ok(Duties::Continue(job));
    }
    let job = if has_finalizer {
        job
    } else {
        Arc::new(set_finalizer(&job, ctx, true).await?)
    };
    Ok(Duties::Continue(follow_parent(job, ctx, false).await?))
}

/// Brings the job's binding up to date and returns the job as written: records a new binding, says that it waits
/// for its parent, or (once the job has `ended`) drops the callback of a job whose parent is gone.
async fn follow_parent(job: Arc<AgentJob>, ctx: &Context, ended: bool) -> Result<Arc<AgentJob>> {
    let mut binding = binding_of(&job, ctx, false).await?;
    if ended && matches!(binding, Binding::Gone(_)) {
        // Dropping is for good: confirm with the API server, the store may lag behind a parent or its Start job.
        binding = binding_of(&job, ctx, true).await?;
    }
    let parent = job.spec.parent_session_name.clone().unwrap_or_default();
    let progress = |reason: &str, message: String, parent_uid: Option<String>| CallbackProgress {
        state: CallbackState::Pending,
        reason: Some(reason.into()),
        message: Some(message),
        parent_uid,
        delivered_by: None,
    };
    match binding {
        Binding::Bound { record: false, .. } => Ok(job),
        Binding::Bound { uid, record: true } => {
            let waited = callback_reason(&job) == Some(WAITING_FOR_PARENT);
            let message = format!("bound to parent session {parent} (UID {uid})");
            let written =
                write_progress(ctx, &job, progress("Bound", message.clone(), Some(uid))).await?;
            if waited {
                ctx.event(&written, false, "ParentBound", message).await;
            }
            Ok(Arc::new(written))
        }
        Binding::Waiting if callback_reason(&job) == Some(WAITING_FOR_PARENT) => Ok(job),
        Binding::Waiting => {
            let message = format!(
                "parent session {parent} does not exist yet; the callback goes to the session its pending Start job creates"
            );
            let written = write_progress(
                ctx,
                &job,
                progress(WAITING_FOR_PARENT, message.clone(), None),
            )
            .await?;
            ctx.event(&written, false, WAITING_FOR_PARENT, message)
                .await;
            Ok(Arc::new(written))
        }
        // While the job runs nothing is final yet; its end decides.
        Binding::Gone(_) if !ended => Ok(job),
        Binding::Gone(why) => Ok(Arc::new(drop_callback(&job, ctx, why).await?)),
    }
}

const WAITING_FOR_PARENT: &str = "WaitingForParent";

fn callback_reason(job: &AgentJob) -> Option<&str> {
    job.status.as_ref()?.callback.as_ref()?.reason.as_deref()
}

/// The job's binding, from the stores, or (`fresh`) from the API server.
async fn binding_of(job: &AgentJob, ctx: &Context, fresh: bool) -> Result<Binding> {
    let Some(name) = &job.spec.parent_session_name else {
        return Ok(Binding::Gone(Gone::Never));
    };
    let ns = job.namespace().unwrap_or_default();
    let parent = if fresh {
        Api::<AgentSession>::namespaced(ctx.client.clone(), &ns)
            .get_opt(name)
            .await?
            .map(Arc::new)
    } else {
        ctx.session(&ns, name)
    };
    // Only an unbound child looks at Start jobs (once, until it is bound).
    let starts: Vec<Arc<AgentJob>> = match recorded_parent(job) {
        Some(_) => Vec::new(),
        None if fresh => Api::<AgentJob>::namespaced(ctx.client.clone(), &ns)
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter(|j| j.spec.job_type == JobType::Start && &j.spec.session_name == name)
            .map(Arc::new)
            .collect(),
        None => ctx
            .jobs_of(&ns, name)
            .into_iter()
            .filter(|j| j.spec.job_type == JobType::Start)
            .collect(),
    };
    let starts: Vec<&AgentJob> = starts.iter().map(|j| j.as_ref()).collect();
    Ok(bind(job, parent.as_deref(), &starts))
}

pub(super) async fn drop_callback(job: &AgentJob, ctx: &Context, why: Gone) -> Result<AgentJob> {
    let parent = job.spec.parent_session_name.clone().unwrap_or_default();
    let message = match why {
        Gone::Deleted => {
            format!("parent session {parent} no longer exists; the callback is dropped")
        }
        Gone::Replaced => format!(
            "parent session {parent} was deleted; the session now named {parent} is a newer one and does not receive the callback"
        ),
        Gone::Namesake => format!(
            "session {parent} was started by a Start job created after this job: a name reused later does not receive the callback"
        ),
        Gone::Never => format!(
            "parent session {parent} does not exist and no Start job created before this job is making it; the callback is dropped"
        ),
    };
    let progress = CallbackProgress {
        state: CallbackState::Dropped,
        reason: Some("ParentNotFound".into()),
        message: Some(message.clone()),
        parent_uid: None,
        delivered_by: None,
    };
    let written = write_progress(ctx, job, progress).await?;
    ctx.metrics.callbacks_dropped.inc();
    ctx.event(job, true, "CallbackDropped", message).await;
    Ok(written)
}

/// Adds or removes the callback finalizer (with the job's resourceVersion, so it never acts on a stale job).
pub(super) async fn set_finalizer(
    job: &AgentJob,
    ctx: &Context,
    present: bool,
) -> Result<AgentJob> {
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
pub(super) async fn stop_deleted(job: &AgentJob, ctx: &Context) -> Result<Action> {
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
    if let Some(closed) = closed_above(job) {
        return stop_with_parent_closed(job, ctx, &closed).await;
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

/// The session whose closing stopped this job, when the job's parent is not that session but one inside the closed
/// tree: that parent is going away too, so the callback is not for it.
fn closed_above(job: &AgentJob) -> Option<String> {
    let closed = job.annotations().get(crate::controller::tree::STOPPED_BY)?;
    (job.spec.parent_session_name.as_ref() != Some(closed)).then(|| closed.clone())
}

/// Ends a job stopped by an ancestor's close as Stopped, with its callback Dropped (reason ParentClosed) in the same
/// write: the parent's queue only takes callbacks of ended jobs, so it can never take this one.
async fn stop_with_parent_closed(job: &AgentJob, ctx: &Context, closed: &str) -> Result<Action> {
    let parent = job.spec.parent_session_name.clone().unwrap_or_default();
    let message = format!(
        "session {closed} was stopped with parentClosePolicy Terminate; this job below it was stopped, and its \
         callback to session {parent}, inside the closed tree, is dropped"
    );
    let status = job.status.clone().unwrap_or_default();
    let mut next = lifecycle(job, &status, JobPhase::Failed, "Stopped", &message);
    next.error = Some(message.clone());
    next.completion_time = Some(now());
    next.callback = Some(CallbackProgress {
        state: CallbackState::Dropped,
        reason: Some("ParentClosed".into()),
        message: Some(message.clone()),
        parent_uid: status.callback.as_ref().and_then(|c| c.parent_uid.clone()),
        delivered_by: None,
    });
    write(job, ctx, next).await?;
    ctx.metrics.callbacks_dropped.inc();
    ctx.event(job, true, "CallbackDropped", message).await;
    Ok(Action::await_change())
}
