//! Watch-fed caches of everything the tools read: sessions, jobs, blueprints and agent Pods (metadata only), with
//! indexes (index.rs) so that a lookup costs what it returns: a namespace's objects, a parent's children, a
//! session's jobs. Tools never GET per call; waits re-check the caches whenever a session or job event of their
//! namespace arrives, so a wait ends as soon as the change is seen, without polling, and an event elsewhere in the
//! cluster wakes nobody here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crds::{AgentBlueprint, AgentJob, AgentSession, JobType};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::index::{self, Index, Key};

pub type PodMeta = PartialObjectMeta<Pod>;

/// How long a job created by this replica is shown before its watch event arrives (which normally takes
/// milliseconds; the bound only matters if the event never comes, e.g. the job was deleted first).
const CREATED_TTL: Duration = Duration::from_secs(10);

/// Jobs this replica created that its job cache does not show yet, by (namespace, name): read-your-writes for the
/// caller that made them, without waiting for the watch. An entry leaves when any watch event names the job.
#[derive(Clone, Default)]
struct Created(Arc<Mutex<HashMap<Key, CreatedJob>>>);

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

/// One wake-up channel per namespace someone waits on: a session or job event bumps its namespace's only. A
/// channel nobody holds any more is dropped at the next event there (or the next relist).
#[derive(Clone, Default)]
struct Changes(Arc<Mutex<HashMap<String, watch::Sender<u64>>>>);

impl Changes {
    fn subscribe(&self, ns: &str) -> watch::Receiver<u64> {
        let mut map = self.0.lock().expect("changes lock");
        match map.get(ns) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(0u64);
                map.insert(ns.to_string(), tx);
                rx
            }
        }
    }

    fn touch(&self, ns: &str) {
        let mut map = self.0.lock().expect("changes lock");
        if let Some(tx) = map.get(ns) {
            if tx.receiver_count() == 0 {
                map.remove(ns);
            } else {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    /// A relist may have changed anything anywhere.
    fn touch_all(&self) {
        let mut map = self.0.lock().expect("changes lock");
        map.retain(|_, tx| tx.receiver_count() > 0);
        for tx in map.values() {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn after<K: Resource>(&self, event: &watcher::Event<K>) {
        match event {
            watcher::Event::Apply(o) | watcher::Event::Delete(o) => {
                self.touch(o.meta().namespace.as_deref().unwrap_or_default())
            }
            watcher::Event::InitDone => self.touch_all(),
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }
}

fn namespace_of<K: Resource>(o: &K) -> Vec<String> {
    vec![o.meta().namespace.clone().unwrap_or_default()]
}

/// The first and the current parent of a session (spec.parentSessionName, status.parentSessionName).
pub(crate) fn parents_of_session(s: &AgentSession) -> Vec<Key> {
    let ns = s.namespace().unwrap_or_default();
    s.parent_names()
        .into_iter()
        .map(|p| (ns.clone(), p))
        .collect()
}

fn session_of_job(j: &AgentJob) -> Vec<Key> {
    vec![(
        j.namespace().unwrap_or_default(),
        j.spec.session_name.clone(),
    )]
}

fn parent_of_job(j: &AgentJob) -> Vec<Key> {
    j.spec
        .parent_session_name
        .clone()
        .map(|p| (j.namespace().unwrap_or_default(), p))
        .into_iter()
        .collect()
}

/// The indexes the watches keep beside the stores.
struct Indexes {
    sessions_in: Index<AgentSession, String>,
    sessions_under: Index<AgentSession, Key>,
    jobs_in: Index<AgentJob, String>,
    jobs_of: Index<AgentJob, Key>,
    jobs_under: Index<AgentJob, Key>,
}

impl Default for Indexes {
    fn default() -> Self {
        Indexes {
            sessions_in: Index::new(namespace_of),
            sessions_under: Index::new(parents_of_session),
            jobs_in: Index::new(namespace_of),
            jobs_of: Index::new(session_of_job),
            jobs_under: Index::new(parent_of_job),
        }
    }
}

/// The writing side of the caches: what the watches feed (and the unit tests, by hand).
struct Writers {
    sessions: Writer<AgentSession>,
    jobs: Writer<AgentJob>,
    blueprints: Writer<AgentBlueprint>,
    pods: Writer<PodMeta>,
    /// What every session or job event also updates.
    sink: Sink,
}

#[derive(Clone)]
struct Sink {
    indexes: Arc<Indexes>,
    changes: Changes,
    created: Created,
}

impl Sink {
    fn session(&self, writer: &mut Writer<AgentSession>, event: &watcher::Event<AgentSession>) {
        let i = &self.indexes;
        index::record(writer, &[&i.sessions_in, &i.sessions_under], event);
        self.changes.after(event);
    }

    fn job(&self, writer: &mut Writer<AgentJob>, event: &watcher::Event<AgentJob>) {
        let i = &self.indexes;
        index::record(writer, &[&i.jobs_in, &i.jobs_of, &i.jobs_under], event);
        if let watcher::Event::Apply(j) | watcher::Event::InitApply(j) | watcher::Event::Delete(j) =
            event
        {
            self.created
                .forget(&j.namespace().unwrap_or_default(), &j.name_any());
        }
        self.changes.after(event);
    }
}

#[derive(Clone)]
pub struct Stores {
    sessions: Store<AgentSession>,
    jobs: Store<AgentJob>,
    blueprints: Store<AgentBlueprint>,
    pods: Store<PodMeta>,
    indexes: Arc<Indexes>,
    changes: Changes,
    /// True once every cache holds a full list.
    ready: watch::Receiver<bool>,
    created: Created,
}

impl Stores {
    /// Empty caches and their writing side, not fed by anything yet.
    fn unfed() -> (Stores, Writers) {
        let (sessions, session_writer) = reflector::store();
        let (jobs, job_writer) = reflector::store();
        let (blueprints, blueprint_writer) = reflector::store();
        let (pods, pod_writer) = reflector::store();
        let sink = Sink {
            indexes: Arc::default(),
            changes: Changes::default(),
            created: Created::default(),
        };
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
        let stores = Stores {
            sessions,
            jobs,
            blueprints,
            pods,
            indexes: sink.indexes.clone(),
            changes: sink.changes.clone(),
            ready,
            created: sink.created.clone(),
        };
        let writers = Writers {
            sessions: session_writer,
            jobs: job_writer,
            blueprints: blueprint_writer,
            pods: pod_writer,
            sink,
        };
        (stores, writers)
    }

    /// Starts the four watches (all namespaces: an authenticated caller works in its own namespace).
    pub fn start(client: Client) -> Stores {
        let (stores, w) = Self::unfed();
        let all = watcher::Config::default();
        let sink = w.sink.clone();
        feed(
            Api::<AgentSession>::all(client.clone()),
            all.clone(),
            w.sessions,
            move |writer, event| sink.session(writer, event),
        );
        let sink = w.sink;
        feed(
            Api::<AgentJob>::all(client.clone()),
            all.clone(),
            w.jobs,
            move |writer, event| sink.job(writer, event),
        );
        feed(
            Api::<AgentBlueprint>::all(client.clone()),
            all,
            w.blueprints,
            |writer, event| writer.apply_watcher_event(event),
        );
        // Only the operator's Pods can belong to an agent, and their metadata is all the gateway needs.
        let selector = format!("{}={}", crds::labels::MANAGED_BY, crds::labels::MANAGER);
        feed(
            Api::<PodMeta>::all(client),
            watcher::Config::default().labels(&selector),
            w.pods,
            |writer, event| writer.apply_watcher_event(event),
        );
        stores
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
        resolve(
            &self.sessions,
            self.indexes.sessions_in.get(&ns.to_string()),
            |s| s.namespace().as_deref() == Some(ns),
        )
    }

    /// The sessions whose first or current parent is `parent` (spec.parentSessionName or
    /// status.parentSessionName).
    pub fn sessions_under(&self, ns: &str, parent: &str) -> Vec<Arc<AgentSession>> {
        resolve(
            &self.sessions,
            self.indexes.sessions_under.get(&key(ns, parent)),
            |s| parents_of_session(s).iter().any(|(_, p)| p == parent),
        )
    }

    pub fn job(&self, ns: &str, name: &str) -> Option<Arc<AgentJob>> {
        self.jobs
            .get(&ObjectRef::new(name).within(ns))
            .or_else(|| self.created_in(ns, |j| j.name_any() == name).pop())
    }

    pub fn jobs_in(&self, ns: &str) -> Vec<Arc<AgentJob>> {
        let mut jobs = resolve(&self.jobs, self.indexes.jobs_in.get(&ns.to_string()), |j| {
            j.namespace().as_deref() == Some(ns)
        });
        jobs.extend(self.created_in(ns, |_| true));
        jobs
    }

    /// The jobs whose spec.sessionName is `session`.
    pub fn jobs_of(&self, ns: &str, session: &str) -> Vec<Arc<AgentJob>> {
        let mut jobs = resolve(
            &self.jobs,
            self.indexes.jobs_of.get(&key(ns, session)),
            |j| j.spec.session_name == session,
        );
        jobs.extend(self.created_in(ns, |j| j.spec.session_name == session));
        jobs
    }

    /// The Start jobs whose spec.parentSessionName is `parent`: children being made, or made by them.
    pub fn starts_under(&self, ns: &str, parent: &str) -> Vec<Arc<AgentJob>> {
        let started = |j: &AgentJob| {
            j.spec.job_type == JobType::Start
                && j.spec.parent_session_name.as_deref() == Some(parent)
        };
        let mut jobs = resolve(
            &self.jobs,
            self.indexes.jobs_under.get(&key(ns, parent)),
            started,
        );
        jobs.extend(self.created_in(ns, started));
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

    /// Namespace `ns`, as the reach rule asks about it.
    pub fn in_namespace<'a>(&'a self, ns: &'a str) -> InNamespace<'a> {
        InNamespace { stores: self, ns }
    }

    /// The children of `parent`, as `crds::limits::count_children` counts them: the sessions under it, the Start
    /// jobs naming it, and the sessions those jobs name (whether each was made yet). Nothing else in the namespace
    /// changes the count.
    pub fn children_of(
        &self,
        ns: &str,
        parent: &str,
    ) -> (Vec<Arc<AgentSession>>, Vec<Arc<AgentJob>>) {
        let starts = self.starts_under(ns, parent);
        let mut sessions = self.sessions_under(ns, parent);
        for j in &starts {
            let name = j.spec.session_name.as_str();
            if !sessions
                .iter()
                .any(|s| s.metadata.name.as_deref() == Some(name))
                && let Some(s) = self.session(ns, name)
            {
                sessions.push(s);
            }
        }
        (sessions, starts)
    }

    /// A receiver bumped after every session or job event of namespace `ns` (and every relist).
    pub fn changes_in(&self, ns: &str) -> watch::Receiver<u64> {
        self.changes.subscribe(ns)
    }

    /// Re-evaluates `check` after every session or job event of namespace `ns` until it returns Some or the
    /// deadline passes.
    pub async fn wait_until<T>(
        &self,
        ns: &str,
        deadline: Instant,
        mut check: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        let mut changes = self.changes_in(ns);
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

/// One namespace of the caches, as the reach rule asks about it (reach.rs).
pub struct InNamespace<'a> {
    pub stores: &'a Stores,
    pub ns: &'a str,
}

impl crate::reach::Family for InNamespace<'_> {
    fn session(&self, name: &str) -> Option<Arc<AgentSession>> {
        self.stores.session(self.ns, name)
    }
    fn sessions_under(&self, parent: &str) -> Vec<Arc<AgentSession>> {
        self.stores.sessions_under(self.ns, parent)
    }
    fn starts_under(&self, parent: &str) -> Vec<Arc<AgentJob>> {
        self.stores.starts_under(self.ns, parent)
    }
    fn jobs_of(&self, session: &str) -> Vec<Arc<AgentJob>> {
        self.stores.jobs_of(self.ns, session)
    }
}

fn key(ns: &str, name: &str) -> Key {
    (ns.to_string(), name.to_string())
}

/// The objects an index names, as the store has them, that still match (`keep` re-checks the index's key).
fn resolve<K>(store: &Store<K>, refs: Vec<Key>, keep: impl Fn(&K) -> bool) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    refs.iter()
        .filter_map(|(ns, name)| store.get(&ObjectRef::new(name).within(ns)))
        .filter(|o| keep(o))
        .collect()
}

/// Feeds `writer` from a watch; `record` applies each event (to the store and whatever is kept beside it).
fn feed<K>(
    api: Api<K>,
    config: watcher::Config,
    mut writer: Writer<K>,
    mut record: impl FnMut(&mut Writer<K>, &watcher::Event<K>) + Send + 'static,
) where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let kind = K::kind(&()).to_string();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(|o| o.managed_fields_mut().clear());
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => record(&mut writer, &event),
                // The watcher retries with backoff; a lasting error (missing CRD, RBAC) keeps /readyz failing.
                Err(e) => tracing::warn!(kind = %kind, error = %e, "watch failed; retrying"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::{job, session};
    use watcher::Event;

    fn in_ns(mut s: AgentSession, ns: &str) -> AgentSession {
        s.metadata.namespace = Some(ns.into());
        s
    }

    fn child(ns: &str, name: &str, first: Option<&str>, current: Option<&str>) -> AgentSession {
        let mut s = in_ns(session(name, None, None), ns);
        s.spec.parent_session_name = first.map(str::to_string);
        s.status.get_or_insert_default().parent_session_name = current.map(str::to_string);
        s
    }

    fn start(ns: &str, name: &str, session: &str, parent: Option<&str>) -> AgentJob {
        let mut j = job(name, session, JobType::Start, None, 1);
        j.metadata.namespace = Some(ns.into());
        j.spec.parent_session_name = parent.map(str::to_string);
        j
    }

    fn names<K: Resource>(objects: Vec<Arc<K>>) -> Vec<String> {
        let mut n: Vec<String> = objects
            .iter()
            .map(|o| o.meta().name.clone().unwrap_or_default())
            .collect();
        n.sort();
        n
    }

    /// The caches and their writers, each list complete.
    fn synced() -> (Stores, Writers) {
        let (stores, mut w) = Stores::unfed();
        w.sink.session(&mut w.sessions, &Event::InitDone);
        w.sink.job(&mut w.jobs, &Event::InitDone);
        (stores, w)
    }

    #[tokio::test]
    async fn lookups_answer_from_the_indexes_one_namespace_one_parent_one_session() {
        let (stores, mut w) = synced();
        for s in [
            child("a", "boss", None, None),
            child("a", "w1", Some("boss"), None),
            child("a", "moved", Some("boss"), Some("lead")),
            child("b", "w1", Some("boss"), None),
        ] {
            w.sink.session(&mut w.sessions, &Event::Apply(s));
        }
        for j in [
            start("a", "w1-start", "w1", Some("boss")),
            start("a", "w3-start", "w3", Some("boss")),
            start("b", "w1-start", "w1", Some("boss")),
        ] {
            w.sink.job(&mut w.jobs, &Event::Apply(j));
        }
        let mut resume = job("boss-resume", "boss", JobType::Resume, None, 2);
        resume.metadata.namespace = Some("a".into());
        resume.spec.parent_session_name = Some("boss".into());
        w.sink.job(&mut w.jobs, &Event::Apply(resume));

        assert_eq!(names(stores.sessions_in("a")), ["boss", "moved", "w1"]);
        assert_eq!(names(stores.sessions_in("b")), ["w1"]);
        assert_eq!(names(stores.sessions_under("a", "boss")), ["moved", "w1"]);
        assert_eq!(names(stores.sessions_under("a", "lead")), ["moved"]);
        assert_eq!(names(stores.jobs_in("a")).len(), 3);
        assert_eq!(names(stores.jobs_of("a", "w1")), ["w1-start"]);
        // A Resume naming a parent is no child being started.
        assert_eq!(
            names(stores.starts_under("a", "boss")),
            ["w1-start", "w3-start"]
        );
        assert!(stores.starts_under("c", "boss").is_empty());

        // A job this replica created shows before its watch event, in every lookup that covers it.
        stores.created(start("a", "w4-start", "w4", Some("boss")));
        assert!(names(stores.starts_under("a", "boss")).contains(&"w4-start".to_string()));
        assert_eq!(names(stores.jobs_of("a", "w4")), ["w4-start"]);
        w.sink.job(
            &mut w.jobs,
            &Event::Apply(start("a", "w4-start", "w4", Some("boss"))),
        );
        assert_eq!(
            names(stores.jobs_of("a", "w4")),
            ["w4-start"],
            "once, not twice"
        );

        w.sink.session(
            &mut w.sessions,
            &Event::Delete(child("a", "w1", Some("boss"), None)),
        );
        assert_eq!(names(stores.sessions_under("a", "boss")), ["moved"]);
    }

    /// Namespace `a`: roots r1 and r2; under r1 c1 (running, with a grandchild g1), c2 (first r1, now r2), c3 (only
    /// Start jobs so far: an old one of r2 that failed, the latest of r1), c4 (its Start refused), c5 (made by r2,
    /// and a Start of r1 of that name not decided yet); a Resume naming r1. Namespace `b` has sessions and jobs of the
    /// same names under r1.
    fn family() -> (Vec<AgentSession>, Vec<AgentJob>) {
        let mut c1 = child("a", "c1", Some("r1"), None);
        c1.status.as_mut().unwrap().current_job = Some("c1-start".into());
        let sessions = vec![
            child("a", "r1", None, None),
            child("a", "r2", None, None),
            c1,
            child("a", "c2", Some("r1"), Some("r2")),
            child("a", "g1", Some("c1"), None),
            child("a", "c5", Some("r2"), None),
            child("b", "r1", None, None),
            child("b", "c1", Some("r1"), None),
            child("b", "c9", Some("r1"), None),
        ];
        let at = |mut j: AgentJob, s: i64| {
            j.metadata.creation_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    jiff::Timestamp::from_second(s).unwrap(),
                ));
            j
        };
        let mut old = at(start("a", "c3-1", "c3", Some("r2")), 1);
        old.status = Some(crds::AgentJobStatus {
            phase: Some(crds::JobPhase::Failed),
            ..Default::default()
        });
        let mut refused = at(start("a", "c4-1", "c4", Some("r1")), 2);
        refused.status = old.status.clone();
        let mut resume = at(job("r1-2", "r1", JobType::Resume, None, 3), 3);
        resume.metadata.namespace = Some("a".into());
        resume.spec.parent_session_name = Some("r1".into());
        let jobs = vec![
            at(start("a", "c1-start", "c1", Some("r1")), 1),
            at(start("a", "c2-start", "c2", Some("r1")), 1),
            old,
            at(start("a", "c3-2", "c3", Some("r1")), 2),
            refused,
            at(start("a", "c5-2", "c5", Some("r1")), 2),
            resume,
            at(start("b", "c9-start", "c9", Some("r1")), 1),
        ];
        (sessions, jobs)
    }

    fn fed(sessions: &[AgentSession], jobs: &[AgentJob]) -> Stores {
        let (stores, mut w) = synced();
        for s in sessions {
            w.sink.session(&mut w.sessions, &Event::Apply(s.clone()));
        }
        for j in jobs {
            w.sink.job(&mut w.jobs, &Event::Apply(j.clone()));
        }
        stores
    }

    /// The indexed reach walk and the limit count agree with the same rules over the whole namespace, scanned.
    #[tokio::test]
    async fn reach_and_limits_from_the_indexes_match_a_scan_of_the_namespace() {
        use crate::reach::{self, tests::Slices};
        let (sessions, jobs) = family();
        let stores = fed(&sessions, &jobs);
        let in_a = |list: &[AgentSession]| {
            list.iter()
                .filter(|s| s.namespace().as_deref() == Some("a"))
                .cloned()
                .collect::<Vec<_>>()
        };
        let jobs_a: Vec<AgentJob> = jobs
            .iter()
            .filter(|j| j.namespace().as_deref() == Some("a"))
            .cloned()
            .collect();
        let scan = Slices::new(&in_a(&sessions), &jobs_a);
        let indexed = stores.in_namespace("a");
        for own in ["r1", "r2", "c1", "c2", "c3", "g1", "ghost"] {
            assert_eq!(
                reach::below(own, &indexed),
                reach::below(own, &scan),
                "below {own}"
            );
        }
        let below_r1: Vec<String> = reach::below("r1", &indexed).into_iter().collect();
        assert_eq!(below_r1, ["c1", "c3", "c4", "g1"]);
        assert_eq!(
            reach::below("r2", &indexed).into_iter().collect::<Vec<_>>(),
            ["c2", "c5"]
        );

        let all_sessions: Vec<&AgentSession> = scan.sessions.iter().map(|s| s.as_ref()).collect();
        let all_jobs: Vec<&AgentJob> = scan.jobs.iter().map(|j| j.as_ref()).collect();
        for parent in ["r1", "r2", "c1", "g1"] {
            let p = stores.session("a", parent).unwrap();
            let (s, j) = stores.children_of("a", parent);
            let counted = crds::limits::count_children(
                &p,
                &s.iter().map(|s| s.as_ref()).collect::<Vec<_>>(),
                &j.iter().map(|j| j.as_ref()).collect::<Vec<_>>(),
                None,
            );
            assert_eq!(
                counted,
                crds::limits::count_children(&p, &all_sessions, &all_jobs, None),
                "children of {parent}"
            );
        }
        let (s, _) = stores.children_of("a", "r1");
        assert_eq!(
            names(s),
            ["c1", "c2", "c5"],
            "r1's own children only, not b's"
        );
    }

    #[tokio::test]
    async fn an_event_wakes_the_waiters_of_its_namespace_only() {
        let (stores, mut w) = synced();
        let mut a = stores.changes_in("a");
        let mut b = stores.changes_in("b");
        a.borrow_and_update();
        b.borrow_and_update();
        w.sink
            .session(&mut w.sessions, &Event::Apply(child("a", "x", None, None)));
        assert!(a.has_changed().unwrap());
        assert!(!b.has_changed().unwrap());
        a.borrow_and_update();
        w.sink
            .job(&mut w.jobs, &Event::Apply(start("b", "y", "y", None)));
        assert!(b.has_changed().unwrap() && !a.has_changed().unwrap());
        // A relist wakes everyone; a namespace nobody waits on any more is forgotten.
        drop(b);
        w.sink.job(&mut w.jobs, &Event::InitDone);
        assert!(a.has_changed().unwrap());
        assert_eq!(
            stores.changes.0.lock().unwrap().keys().collect::<Vec<_>>(),
            ["a"]
        );
        // A wait re-checks on its namespace's events.
        let waiter = {
            let stores = stores.clone();
            tokio::spawn(async move {
                stores
                    .wait_until("a", Instant::now() + Duration::from_secs(30), || {
                        stores.session("a", "late").map(|_| ())
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        w.sink.session(
            &mut w.sessions,
            &Event::Apply(child("a", "late", None, None)),
        );
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(10), waiter)
                .await
                .unwrap()
                .unwrap(),
            Some(())
        );
    }
}
