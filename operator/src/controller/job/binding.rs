//! Binding a job to its session: a Start creates it, a Resume finds it; refusals for cycles and unknown blueprints.

use super::*;

pub(super) enum Bound {
    Ready(Arc<AgentSession>),
    Wait(&'static str, String),
    Refused(Refusal),
}

/// The session of a Start job: created by it, or refused when another owns the name.
pub(super) async fn start_session(
    job: &AgentJob,
    api: &Api<AgentSession>,
    ctx: &Context,
) -> Result<Bound> {
    let name = &job.spec.session_name;
    let ns = job.namespace().unwrap_or_default();
    let made = bound_session(job).is_some();
    let existing = match ctx.session(&ns, name) {
        Some(s) => Some(s),
        // The store may not have caught up with a session this job created a moment ago.
        None if made => api.get_opt(name).await?.map(Arc::new),
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
    if made {
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
    if let Some(refusal) = governance::tree_limit(job, ctx) {
        return Ok(Bound::Refused(refusal));
    }
    let (tree, owners) = governance::new_session_place(job, ctx);
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
            labels: Some(
                [
                    (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
                    (labels::TREE.to_string(), tree),
                ]
                .into(),
            ),
            owner_references: (!owners.is_empty()).then_some(owners),
            ..Default::default()
        },
        spec: AgentSessionSpec {
            blueprint: job.spec.blueprint.clone(),
            parent_session_name: job.spec.parent_session_name.clone(),
            project_dir: job.spec.project_dir.clone(),
            parent_close_policy: job.spec.parent_close_policy,
            budget: job.spec.budget.clone(),
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
            // No Event: the job's Started Event names the session it runs on.
            info!(session = %name, "created session");
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
pub(super) async fn resume_session(
    job: &AgentJob,
    api: &Api<AgentSession>,
    ctx: &Context,
) -> Result<Bound> {
    let name = &job.spec.session_name;
    let ns = job.namespace().unwrap_or_default();
    let session = match ctx.session(&ns, name) {
        Some(s) => Some(s),
        None => api.get_opt(name).await?.map(Arc::new),
    };
    let Some(session) = session else {
        // A Start job for that name may be about to create it (both created at once): wait for it rather than fail.
        let start_pending = ctx
            .jobs_of(&ns, name)
            .iter()
            .any(|j| j.spec.job_type == JobType::Start && !is_finished(j) && !is_deleting(j));
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

pub(super) async fn blueprint(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<Option<Arc<AgentBlueprint>>> {
    if let Some(b) = ctx.blueprints.get(&ObjectRef::new(name).within(ns)) {
        return Ok(Some(b));
    }
    // Not in the store: it may have been created a moment ago. Ask before failing a job for it.
    let api: Api<AgentBlueprint> = Api::namespaced(ctx.client.clone(), ns);
    Ok(api.get_opt(name).await?.map(Arc::new))
}

pub(super) fn cycle(job: &AgentJob, ctx: &Context) -> Option<Refusal> {
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
