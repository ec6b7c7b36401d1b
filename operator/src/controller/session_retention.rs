//! Deletes an idle session (and its jobs) once the operator's session retention has passed and nothing needs it
//! any more (see domain::session_retention). The session is requeued for the moment its retention ends.
//!
//! Crash safety: the decision is made again from the stores on every reconcile. The jobs go first, each with a
//! precondition on its UID, then the session with its own: killed in between, the next reconcile finds the session
//! still idle with fewer jobs and goes on; a newer object of the same name is never deleted by an old decision.

use std::time::Duration;

use crds::{AgentJob, AgentSession};
use kube::api::{DeleteParams, Preconditions};
use kube::{Api, Resource, ResourceExt};
use tracing::info;

use crate::apply::not_found;
use crate::context::Context;
use crate::domain::session_retention::{
    SessionRetention, SessionRetentionView, busy_descendant, decide,
};
use crate::error::Result;

/// How soon a session held by something else is looked at again: its descendants' changes do not all trigger it.
const HELD: Duration = Duration::from_secs(10);

/// What the retention step did.
pub enum Expiry {
    /// The session and its jobs are being deleted: nothing more to do.
    Deleted,
    /// Kept: look again within this long (the reconcile goes on as usual).
    LookAgain(Duration),
    /// No retention applies now: a change of the session brings it back.
    Kept,
}

pub async fn expire(session: &AgentSession, ctx: &Context) -> Result<Expiry> {
    if ctx.default_session_retention_seconds.is_none() {
        return Ok(Expiry::Kept);
    }
    let ns = session.namespace().unwrap_or_default();
    let name = session.name_any();
    let jobs = ctx.jobs_of(&ns, &name);
    let view = SessionRetentionView {
        session,
        jobs: jobs.iter().map(|j| j.as_ref()).collect(),
        busy_descendant: None,
        retention_seconds: ctx.default_session_retention_seconds,
        now: jiff::Timestamp::now(),
    };
    // The walk down the tree only when everything else says the session may go.
    let view = match decide(&view) {
        SessionRetention::Due => SessionRetentionView {
            busy_descendant: busy_descendant(&name, &|s| ctx.started_by(&ns, s), &|s| {
                ctx.jobs_of(&ns, s)
            }),
            ..view
        },
        // A second past the moment, so the next look finds it due (the condition's time has second resolution).
        SessionRetention::Later(left) => {
            return Ok(Expiry::LookAgain(left + Duration::from_secs(1)));
        }
        SessionRetention::Keep => return Ok(Expiry::Kept),
        SessionRetention::Held(_) => return Ok(Expiry::LookAgain(HELD)),
    };
    match decide(&view) {
        SessionRetention::Due => {}
        SessionRetention::Held(why) => {
            tracing::debug!(?why, "idle past its retention, but still needed");
            return Ok(Expiry::LookAgain(HELD));
        }
        _ => return Ok(Expiry::Kept),
    }
    let retention = ctx.default_session_retention_seconds.unwrap_or_default();
    ctx.event(
        session,
        false,
        "SessionExpired",
        format!(
            "idle for {retention}s with nothing queued or running below it: deleted with its {} job(s)",
            jobs.len()
        ),
    )
    .await;
    let job_api: Api<AgentJob> = Api::namespaced(ctx.client.clone(), &ns);
    for job in &jobs {
        delete_exactly(&job_api, job.as_ref(), ctx, "agentjobs").await?;
    }
    let sessions: Api<AgentSession> = Api::namespaced(ctx.client.clone(), &ns);
    delete_exactly(&sessions, session, ctx, "agentsessions").await?;
    info!(session = %name, jobs = jobs.len(), "deleted after the session retention");
    Ok(Expiry::Deleted)
}

/// Deletes `obj`, that very object (a UID precondition): gone already, or replaced by a newer one, is success.
async fn delete_exactly<K>(
    api: &Api<K>,
    obj: &K,
    ctx: &Context,
    resource: &'static str,
) -> Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: obj.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    ctx.metrics.write(resource, "delete");
    match api.delete(&obj.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
