//! What a job with `callback: true` owes its parent, whatever happens to the job.

use super::*;

pub(super) enum Duties {
    Done(Action),
    Continue(Arc<AgentJob>),
}

/// What a job with `callback: true` owes its parent: a finalizer while its callback is not yet in the parent's
/// queue (so deleting the job cannot lose it), a `Stopped` end when deleted while running, and a `Dropped` callback
/// when the parent is gone.
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

pub(super) fn waiting_dropped(job: &AgentJob) -> bool {
    state(job) == Some(CallbackState::Dropped)
}

pub(super) enum ParentState {
    Present,
    Missing,
    Replaced,
}

pub(super) async fn parent_of(job: &AgentJob, ctx: &Context) -> Result<ParentState> {
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

pub(super) async fn drop_callback(job: &AgentJob, ctx: &Context, why: ParentState) -> Result<()> {
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
    fail(
        job,
        ctx,
        "Stopped",
        "the job was deleted while it ran; its Pod was stopped".into(),
        None,
    )
    .await
}
