//! Which reconciles a change of one object calls for. One watch per kind feeds its store and then these mappings,
//! so a reconcile triggered by a change always finds that change in the store.

use crate::domain::agent_pod::AgentPod;
use crds::{AgentJob, AgentSession, labels};
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use super::index::JobIndex;
use crate::domain::callback::rules::state;
use crate::domain::lineage::recorded_parent;
use crate::domain::order::{is_deleting, is_finished};
use crds::{CallbackState, JobType};

/// A job's change concerns the job, its session (which may be waiting for it to end) and, for callbacks, its
/// parent session.
pub fn of_job(job: &AgentJob) -> (ObjectRef<AgentJob>, Vec<ObjectRef<AgentSession>>) {
    let ns = job.namespace().unwrap_or_default();
    let mut sessions = vec![ObjectRef::new(&job.spec.session_name).within(&ns)];
    if let Some(parent) = job
        .spec
        .parent_session_name
        .as_ref()
        .filter(|_| job.spec.callback)
    {
        sessions.push(ObjectRef::new(parent).within(&ns));
    }
    (ObjectRef::from_obj(job), sessions)
}

/// A Start job that ended (or is being deleted) without ever making its session concerns the children waiting for
/// that session: with no Start job pending, a child that has ended drops its callback (`ParentNotFound`).
pub fn waiting_for_start(
    job: &AgentJob,
    index: &JobIndex,
    jobs: &Store<AgentJob>,
) -> Vec<ObjectRef<AgentJob>> {
    let made_session = crate::domain::session::bound_session(job).is_some();
    if job.spec.job_type != JobType::Start
        || made_session
        || !(is_finished(job) || is_deleting(job))
    {
        return Vec::new();
    }
    index
        .children_of(
            jobs,
            &job.namespace().unwrap_or_default(),
            &job.spec.session_name,
        )
        .into_iter()
        .filter(|j| recorded_parent(j).is_none())
        .map(|j| ObjectRef::from_obj(j.as_ref()))
        .collect()
}

/// A session's change concerns the session and every unfinished job naming it (it may be their turn now, or the
/// session they wait for may exist now).
pub fn of_session(
    session: &AgentSession,
    index: &JobIndex,
    jobs: &Store<AgentJob>,
) -> (ObjectRef<AgentSession>, Vec<ObjectRef<AgentJob>>) {
    let (ns, name) = (session.namespace().unwrap_or_default(), session.name_any());
    let runs_on_it = index
        .jobs_of(jobs, &ns, &name)
        .into_iter()
        .filter(|j| !is_finished(j));
    // Children whose callback is not yet delivered: a parent that appears binds them, one that disappears makes
    // them drop it.
    let calls_it_back = index.children_of(jobs, &ns, &name).into_iter().filter(|j| {
        !matches!(
            state(j),
            Some(CallbackState::Delivered | CallbackState::Dropped)
        )
    });
    let waiting = runs_on_it
        .chain(calls_it_back)
        .map(|j| ObjectRef::from_obj(j.as_ref()))
        .collect();
    (ObjectRef::from_obj(session), waiting)
}

/// A Pod's change concerns the job that owns it and, when it disappears, the session it ran for.
pub fn of_pod(pod: &AgentPod) -> (Option<ObjectRef<AgentJob>>, Option<ObjectRef<AgentSession>>) {
    let ns = pod.namespace().unwrap_or_default();
    let job = pod
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "AgentJob")
        .map(|o| ObjectRef::new(&o.name).within(&ns));
    let session = pod
        .labels()
        .get(labels::SESSION)
        .map(|s| ObjectRef::new(s).within(&ns));
    (job, session)
}

/// A job that ended (or is being deleted) frees a place under the namespace's running-jobs limit: the jobs waiting
/// for one (reason ConcurrencyLimit) look again. Only the first waiting ones can start, but all of them are cheap
/// to look at and each decides from the store.
pub fn waiting_for_a_place(
    job: &AgentJob,
    index: &JobIndex,
    jobs: &Store<AgentJob>,
) -> Vec<ObjectRef<AgentJob>> {
    if !(is_finished(job) || is_deleting(job)) {
        return Vec::new();
    }
    index
        .unfinished_in(jobs, &job.namespace().unwrap_or_default())
        .into_iter()
        .filter(|j| {
            j.status.as_ref().and_then(|s| s.reason.as_deref())
                == Some(crate::domain::limits::CONCURRENCY_LIMIT)
        })
        .map(|j| ObjectRef::from_obj(j.as_ref()))
        .collect()
}

/// A session's change concerns its current parent when it has usage: the parent's treeUsage holds this session's.
pub fn usage_parent(session: &AgentSession) -> Option<ObjectRef<AgentSession>> {
    session.status.as_ref()?.tree_usage.as_ref()?;
    let parent = super::session_index::parent_of(session)?;
    Some(ObjectRef::new(parent).within(&session.namespace().unwrap_or_default()))
}
