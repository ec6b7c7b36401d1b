//! Watch-fed caches of everything the tools read: sessions, jobs, blueprints and agent Pods (metadata only).
//! Tools never GET per call; waits re-check the caches whenever a session or job event arrives, so a wait ends
//! as soon as the change is seen, without polling.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crds::{AgentBlueprint, AgentJob, AgentSession};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::time::Instant;

pub type PodMeta = PartialObjectMeta<Pod>;

/// How long a job created by this replica is shown before its watch event arrives (which normally takes
/// milliseconds; the bound only matters if the event never comes, e.g. the job was deleted first).
const CREATED_TTL: Duration = Duration::from_secs(10);

/// Jobs this replica created that its job cache does not show yet, by (namespace, name): read-your-writes for the
/// caller that made them, without waiting for the watch. An entry leaves when any watch event names the job.
#[derive(Clone, Default)]
struct Created(Arc<Mutex<HashMap<JobKey, CreatedJob>>>);

/// (namespace, name)
type JobKey = (String, String);
/// The job as created, and when.
type CreatedJob = (Arc<AgentJob>, Instant);

impl Created {
    fn live(&self) -> Vec<Arc<AgentJob>> {
        let mut map = self.0.lock().expect("created jobs lock");
        map.retain(|_, (_, at)| at.elapsed() < CREATED_TTL);
        map.values().map(|(j, _)| j.clone()).collect()
    }

    fn forget(&self, ns: &str, name: &str) {
        self.0
            .lock()
            .expect("created jobs lock")
            .remove(&(ns.to_string(), name.to_string()));
    }
}

#[derive(Clone)]
pub struct Stores {
    sessions: Store<AgentSession>,
    jobs: Store<AgentJob>,
    blueprints: Store<AgentBlueprint>,
    pods: Store<PodMeta>,
    /// Bumped on every session or job event, after the store has applied it.
    changes: watch::Receiver<u64>,
    /// True once every cache holds a full list.
    ready: watch::Receiver<bool>,
    created: Created,
}

impl Stores {
    /// Starts the four watches (all namespaces: an authenticated caller works in its own namespace).
    pub fn start(client: Client) -> Stores {
        let (tx, changes) = watch::channel(0u64);
        let tx = Arc::new(tx);
        let all = watcher::Config::default();
        let sessions = reflect(
            Api::<AgentSession>::all(client.clone()),
            all.clone(),
            Some(tx.clone()),
            |_| {},
        );
        let created = Created::default();
        let jobs = {
            let created = created.clone();
            reflect(
                Api::<AgentJob>::all(client.clone()),
                all.clone(),
                Some(tx),
                move |job: &AgentJob| {
                    created.forget(&job.namespace().unwrap_or_default(), &job.name_any())
                },
            )
        };
        let blueprints = reflect(
            Api::<AgentBlueprint>::all(client.clone()),
            all,
            None,
            |_| {},
        );
        // Only the operator's Pods can belong to an agent, and their metadata is all the gateway needs.
        let selector = format!("{}={}", crds::labels::MANAGED_BY, crds::labels::MANAGER);
        let pods = reflect(
            Api::<PodMeta>::all(client),
            watcher::Config::default().labels(&selector),
            None,
            |_| {},
        );

        let (ready_tx, ready) = watch::channel(false);
        tokio::spawn({
            let (s, j, b, p) = (
                sessions.clone(),
                jobs.clone(),
                blueprints.clone(),
                pods.clone(),
            );
            async move {
                let synced = s.wait_until_ready().await.is_ok()
                    && j.wait_until_ready().await.is_ok()
                    && b.wait_until_ready().await.is_ok()
                    && p.wait_until_ready().await.is_ok();
                if synced {
                    tracing::info!("caches synced: sessions, jobs, blueprints, agent pods");
                    let _ = ready_tx.send(true);
                }
            }
        });
        Stores {
            sessions,
            jobs,
            blueprints,
            pods,
            changes,
            ready,
            created,
        }
    }

    /// Shows `job`, just created by this replica, until the job cache has it.
    pub fn created(&self, job: AgentJob) {
        let key = (job.namespace().unwrap_or_default(), job.name_any());
        if self
            .jobs
            .get(&ObjectRef::new(&key.1).within(&key.0))
            .is_none()
        {
            self.created
                .0
                .lock()
                .expect("created jobs lock")
                .insert(key, (Arc::new(job), Instant::now()));
        }
    }

    /// Forgets a job this replica deleted.
    pub fn deleted(&self, ns: &str, name: &str) {
        self.created.forget(ns, name);
    }

    /// The jobs of namespace `ns` this replica created and the cache does not show yet, matching `keep`.
    fn created_in(&self, ns: &str, keep: impl Fn(&AgentJob) -> bool) -> Vec<Arc<AgentJob>> {
        self.created
            .live()
            .into_iter()
            .filter(|j| j.namespace().as_deref() == Some(ns) && keep(j))
            .collect()
    }

    /// True once every cache holds a full list: before that, "not found" could be a lie.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits (up to `deadline`) for the caches to be synced; false if they are not by then.
    pub async fn wait_ready(&self, deadline: Instant) -> bool {
        let mut ready = self.ready.clone();
        matches!(
            tokio::time::timeout_at(deadline, ready.wait_for(|r| *r)).await,
            Ok(Ok(_))
        )
    }

    pub fn session(&self, ns: &str, name: &str) -> Option<Arc<AgentSession>> {
        self.sessions.get(&ObjectRef::new(name).within(ns))
    }

    pub fn sessions_in(&self, ns: &str) -> Vec<Arc<AgentSession>> {
        self.sessions
            .state_filter(|s| s.namespace().as_deref() == Some(ns))
    }

    pub fn job(&self, ns: &str, name: &str) -> Option<Arc<AgentJob>> {
        self.jobs
            .get(&ObjectRef::new(name).within(ns))
            .or_else(|| self.created_in(ns, |j| j.name_any() == name).pop())
    }

    pub fn jobs_in(&self, ns: &str) -> Vec<Arc<AgentJob>> {
        let mut jobs = self
            .jobs
            .state_filter(|j| j.namespace().as_deref() == Some(ns));
        jobs.extend(self.created_in(ns, |_| true));
        jobs
    }

    /// The jobs whose spec.sessionName is `session`.
    pub fn jobs_of(&self, ns: &str, session: &str) -> Vec<Arc<AgentJob>> {
        let mut jobs = self.jobs.state_filter(|j| {
            j.spec.session_name == session && j.namespace().as_deref() == Some(ns)
        });
        jobs.extend(self.created_in(ns, |j| j.spec.session_name == session));
        jobs
    }

    pub fn blueprint(&self, ns: &str, name: &str) -> Option<Arc<AgentBlueprint>> {
        self.blueprints.get(&ObjectRef::new(name).within(ns))
    }

    pub fn blueprints_in(&self, ns: &str) -> Vec<Arc<AgentBlueprint>> {
        self.blueprints
            .state_filter(|b| b.namespace().as_deref() == Some(ns))
    }

    pub fn pod(&self, ns: &str, name: &str) -> Option<Arc<PodMeta>> {
        self.pods.get(&ObjectRef::new(name).within(ns))
    }

    /// Re-evaluates `check` after every session or job event until it returns Some or the deadline passes.
    pub async fn wait_until<T>(
        &self,
        deadline: Instant,
        mut check: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        let mut changes = self.changes.clone();
        loop {
            // Mark the current version seen before checking: an event after the check then wakes us.
            changes.borrow_and_update();
            if let Some(v) = check() {
                return Some(v);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return None,
            }
        }
    }
}

/// A watch-fed store; `seen` is called with every object an event carries, after the store has it.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    notify: Option<Arc<watch::Sender<u64>>>,
    seen: impl Fn(&K) + Send + 'static,
) -> Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(|o| o.managed_fields_mut().clear());
    let kind = K::kind(&()).to_string();
    let stream = reflector::reflector(writer, stream).inspect(move |event| {
        if let Ok(
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o),
        ) = event
        {
            seen(o);
        }
    });
    tokio::spawn(drain(kind, stream, notify));
    store
}

async fn drain<S, E, T>(
    kind: impl std::fmt::Display,
    stream: S,
    notify: Option<Arc<watch::Sender<u64>>>,
) where
    S: futures::Stream<Item = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(_) => {
                if let Some(tx) = &notify {
                    tx.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
            // The watcher retries with backoff; a lasting error (missing CRD, RBAC) keeps /readyz failing.
            Err(e) => tracing::warn!(kind = %kind, error = %e, "watch failed; retrying"),
        }
    }
}
