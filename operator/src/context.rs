//! What every reconcile shares: the client, the watch-fed stores, the event recorder and the metrics.
//!
//! Events are published by a task of their own, in the order they were recorded: they are for people, so a
//! reconcile never waits for one (an Event write used to sit on the path from a child's end to its parent's
//! resume).

use crds::{AgentBlueprint, AgentJob, AgentSession};
use futures::StreamExt;
use futures::channel::mpsc;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use crate::controller::index::JobIndex;
use crate::domain::agent_pod::AgentPod;
use crate::domain::pod::PodDefaults;
use crate::freshness::Freshness;
use crate::metrics::Metrics;
use crate::retry::Backoff;

pub const MANAGER: &str = crds::labels::MANAGER;

/// The operator's governance settings: namespace defaults of the tree limits, and the most jobs one namespace
/// runs at once (None: no limit).
#[derive(Clone, Copy, Debug, Default)]
pub struct Governance {
    pub limits: crds::limits::DefaultLimits,
    pub max_running_jobs: Option<u32>,
}

pub struct Context {
    pub client: Client,
    pub defaults: PodDefaults,
    pub jobs: Store<AgentJob>,
    pub sessions: Store<AgentSession>,
    pub pods: Store<AgentPod>,
    pub blueprints: Store<AgentBlueprint>,
    /// Jobs by session and by parent, beside `jobs` (see `controller::index`).
    pub index: std::sync::Arc<JobIndex>,
    events: mpsc::UnboundedSender<(Event, ObjectReference)>,
    pub metrics: Metrics,
    pub freshness: Freshness,
    /// Failures in a row per object, for the retry backoff (see `retry`).
    pub backoff: Backoff,
    /// `ttlSecondsAfterFinished` of jobs that set none (None: they are kept).
    pub default_job_ttl_seconds: Option<i64>,
    /// The wait before a job's first retry; it doubles with each further retry (see domain::attempts).
    pub retry_backoff_base: std::time::Duration,
    /// How long an idle session is kept (None: sessions are kept), see domain::session_retention.
    pub default_session_retention_seconds: Option<i64>,
    /// Sessions by parent, beside `sessions` (see `controller::index`).
    pub session_index: std::sync::Arc<crate::controller::index::SessionIndex>,
    /// Tree limits and the namespace running-jobs limit (operator flags).
    pub governance: Governance,
    /// Held while a job is admitted under the running-jobs limit and its Pod created, so that two admissions of
    /// this process never count the same free place (see `domain::limits`).
    pub pod_starts: tokio::sync::Mutex<()>,
    events_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    unpublished: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Context {
    pub fn new(
        client: Client,
        defaults: PodDefaults,
        stores: (
            Store<AgentJob>,
            Store<AgentSession>,
            Store<AgentPod>,
            Store<AgentBlueprint>,
        ),
        index: std::sync::Arc<JobIndex>,
        metrics: Metrics,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        let (events, mut queue) = mpsc::unbounded::<(Event, ObjectReference)>();
        let unpublished = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let events_task = {
            let unpublished = unpublished.clone();
            tokio::spawn(async move {
                while let Some((event, object)) = queue.next().await {
                    if let Err(e) = recorder.publish(&event, &object).await {
                        tracing::warn!(object = ?object.name, reason = %event.reason, error = %e,
                            "could not record event");
                    }
                    unpublished.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                }
            })
        };
        Context {
            events,
            client,
            defaults,
            jobs: stores.0,
            sessions: stores.1,
            pods: stores.2,
            blueprints: stores.3,
            index,
            metrics,
            freshness: Freshness::default(),
            backoff: Backoff::default(),
            default_job_ttl_seconds: None,
            retry_backoff_base: std::time::Duration::from_secs(10),
            default_session_retention_seconds: None,
            session_index: Default::default(),
            governance: Governance::default(),
            pod_starts: tokio::sync::Mutex::new(()),
            events_task: std::sync::Mutex::new(Some(events_task)),
            unpublished,
        }
    }

    /// Events recorded and not yet published (or given up on).
    pub fn unpublished_events(&self) -> usize {
        self.unpublished.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops taking Events and waits (at most `limit`) until those recorded so far are published: at shutdown,
    /// after the controllers have stopped.
    pub async fn flush_events(&self, limit: std::time::Duration) {
        self.events.close_channel();
        let task = self
            .events_task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task
            && tokio::time::timeout(limit, task).await.is_err()
        {
            tracing::warn!("events still unpublished at shutdown; dropped");
        }
    }

    pub fn session(&self, ns: &str, name: &str) -> Option<std::sync::Arc<AgentSession>> {
        self.sessions.get(&ObjectRef::new(name).within(ns))
    }

    /// Whether `obj` is a copy this process has already written over (see `freshness`).
    pub fn is_behind<K: Resource>(&self, obj: &K) -> bool {
        self.freshness.is_behind(
            obj.meta().uid.as_deref(),
            obj.meta().resource_version.as_deref(),
        )
    }

    /// Records a successful write decided from the copy `obj`.
    pub fn wrote<K: Resource>(&self, obj: &K) {
        self.freshness.wrote(
            obj.meta().uid.as_deref(),
            obj.meta().resource_version.as_deref(),
        )
    }

    /// The jobs that run on session `name`.
    pub fn jobs_of(&self, ns: &str, name: &str) -> Vec<std::sync::Arc<AgentJob>> {
        self.index.jobs_of(&self.jobs, ns, name)
    }

    /// The sessions whose first or current parent is `name`.
    pub fn child_sessions(&self, ns: &str, name: &str) -> Vec<std::sync::Arc<AgentSession>> {
        self.session_index.children_of(&self.sessions, ns, name)
    }

    /// The jobs with `callback: true` whose parent is named `name`.
    pub fn children_of(&self, ns: &str, name: &str) -> Vec<std::sync::Arc<AgentJob>> {
        self.index.children_of(&self.jobs, ns, name)
    }

    /// The jobs whose parent is named `name`, with or without a callback.
    pub fn started_by(&self, ns: &str, name: &str) -> Vec<std::sync::Arc<AgentJob>> {
        self.index.started_by(&self.jobs, ns, name)
    }

    pub fn pod(&self, ns: &str, name: &str) -> Option<std::sync::Arc<AgentPod>> {
        self.pods.get(&ObjectRef::new(name).within(ns))
    }

    /// Records an Event on `obj` (in the background). Events are for people: a failure to record one is logged,
    /// never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        self.event_about(obj, warning, reason, note, None).await
    }

    /// An Event on `obj` about `related` too. Events are aggregated by reason and related object, so events of
    /// one reason about different jobs stay apart.
    pub async fn event_about<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        note: String,
        related: Option<ObjectReference>,
    ) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: related,
        };
        self.metrics.write("events", "create");
        self.unpublished
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self
            .events
            .unbounded_send((ev, obj.object_ref(&())))
            .is_err()
        {
            self.unpublished
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            tracing::warn!(object = %obj.name_any(), reason, "the event task has stopped; event not recorded");
        }
    }
}
