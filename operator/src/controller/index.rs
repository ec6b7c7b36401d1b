//! Jobs by the session they run on and by the parent that started them, kept from the job watch beside the job
//! store, so that a session's reconcile looks at its own jobs and children instead of every job in the cluster.
//!
//! The index holds names; a lookup resolves them through the store and checks the spec again, so a reconcile sees
//! exactly the store's view. To keep that true at every instant, each watch event updates the index and the store
//! in one step, in the order that keeps the index a superset of the store: a job is added to the index before the
//! store has it and removed after the store has let it go; a relist replaces the index right after the store.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use crds::{AgentJob, AgentSession};
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::watcher::Event;

/// (namespace, session name)
type Key = (String, String);

#[derive(Default)]
struct Maps {
    by_session: HashMap<Key, HashSet<String>>,
    by_parent: HashMap<Key, HashSet<String>>,
    /// Jobs not finished yet, by namespace: the queue of the namespace's running-jobs limit.
    unfinished: HashMap<String, HashSet<String>>,
}

impl Maps {
    fn keys(job: &AgentJob) -> (Key, Option<Key>) {
        let ns = job.namespace().unwrap_or_default();
        let parent = job
            .spec
            .parent_session_name
            .clone()
            .map(|p| (ns.clone(), p));
        ((ns, job.spec.session_name.clone()), parent)
    }

    fn insert(&mut self, job: &AgentJob) {
        let (session, parent) = Self::keys(job);
        let name = job.name_any();
        let ns = job.namespace().unwrap_or_default();
        if crate::domain::order::is_finished(job) {
            // An update that finished it: it leaves the queue.
            if let Some(names) = self.unfinished.get_mut(&ns) {
                names.remove(&name);
            }
        } else {
            self.unfinished.entry(ns).or_default().insert(name.clone());
        }
        self.by_session
            .entry(session)
            .or_default()
            .insert(name.clone());
        if let Some(parent) = parent {
            self.by_parent.entry(parent).or_default().insert(name);
        }
    }

    fn remove(&mut self, job: &AgentJob) {
        let (session, parent) = Self::keys(job);
        let name = job.name_any();
        let remove = |map: &mut HashMap<Key, HashSet<String>>, key: Key| {
            if let Some(names) = map.get_mut(&key) {
                names.remove(&name);
                if names.is_empty() {
                    map.remove(&key);
                }
            }
        };
        remove(&mut self.by_session, session);
        if let Some(parent) = parent {
            remove(&mut self.by_parent, parent);
        }
        if let Some(names) = self
            .unfinished
            .get_mut(&job.namespace().unwrap_or_default())
        {
            names.remove(&name);
        }
    }
}

#[derive(Default)]
struct State {
    live: Maps,
    /// The relist in progress: it replaces `live` once the store has swapped in the same list.
    relist: Option<Maps>,
}

/// The index; shared by the watch (which feeds it through `record`) and the reconcilers (which read it).
#[derive(Default)]
pub struct JobIndex {
    state: RwLock<State>,
}

impl JobIndex {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn names(&self, by_parent: bool, ns: &str, name: &str) -> Vec<String> {
        let state = self.read();
        let map = if by_parent {
            &state.live.by_parent
        } else {
            &state.live.by_session
        };
        map.get(&(ns.to_string(), name.to_string()))
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn resolve(
        &self,
        store: &Store<AgentJob>,
        ns: &str,
        names: Vec<String>,
        keep: impl Fn(&AgentJob) -> bool,
    ) -> Vec<Arc<AgentJob>> {
        names
            .iter()
            .filter_map(|n| store.get(&ObjectRef::new(n).within(ns)))
            .filter(|j| keep(j))
            .collect()
    }

    /// The jobs that run on session `name` (its Start job, Resume jobs, deliveries), as the store has them.
    pub fn jobs_of(&self, store: &Store<AgentJob>, ns: &str, name: &str) -> Vec<Arc<AgentJob>> {
        let names = self.names(false, ns, name);
        self.resolve(store, ns, names, |j| j.spec.session_name == name)
    }

    /// The jobs whose parent is named `name` (with or without a callback), as the store has them.
    pub fn started_by(&self, store: &Store<AgentJob>, ns: &str, name: &str) -> Vec<Arc<AgentJob>> {
        let names = self.names(true, ns, name);
        self.resolve(store, ns, names, |j| {
            j.spec.parent_session_name.as_deref() == Some(name)
        })
    }

    /// The jobs with `callback: true` whose parent is named `name`, as the store has them.
    pub fn children_of(&self, store: &Store<AgentJob>, ns: &str, name: &str) -> Vec<Arc<AgentJob>> {
        let names = self.names(true, ns, name);
        self.resolve(store, ns, names, |j| {
            j.spec.callback && j.spec.parent_session_name.as_deref() == Some(name)
        })
    }
}

impl JobIndex {
    /// The jobs of namespace `ns` that have not finished, as the store has them.
    pub fn unfinished_in(&self, store: &Store<AgentJob>, ns: &str) -> Vec<Arc<AgentJob>> {
        let names: Vec<String> = self
            .read()
            .live
            .unfinished
            .get(ns)
            .map(|n| n.iter().cloned().collect())
            .unwrap_or_default();
        self.resolve(store, ns, names, |j| !crate::domain::order::is_finished(j))
    }
}

/// Applies one watch event to the index and the store, in the order described above.
pub fn record(index: &JobIndex, writer: &mut Writer<AgentJob>, event: &Event<AgentJob>) {
    match event {
        Event::Apply(job) => {
            index.write().live.insert(job);
            writer.apply_watcher_event(event);
        }
        Event::Delete(job) => {
            writer.apply_watcher_event(event);
            index.write().live.remove(job);
        }
        Event::Init => {
            index.write().relist = Some(Maps::default());
            writer.apply_watcher_event(event);
        }
        Event::InitApply(job) => {
            index
                .write()
                .relist
                .get_or_insert_with(Maps::default)
                .insert(job);
            writer.apply_watcher_event(event);
        }
        Event::InitDone => {
            writer.apply_watcher_event(event);
            let mut state = index.write();
            if let Some(relisted) = state.relist.take() {
                state.live = relisted;
            }
        }
    }
}

/// Sessions by their parent (the first one, spec.parentSessionName, and the current one,
/// status.parentSessionName), kept from the session watch beside the session store the same way as `JobIndex`:
/// a parent's reconcile finds its children without looking at every session.
#[derive(Default)]
pub struct SessionIndex {
    state: RwLock<SessionState>,
}

#[derive(Default)]
struct SessionState {
    live: HashMap<Key, HashSet<String>>,
    relist: Option<HashMap<Key, HashSet<String>>>,
}

fn parents_of(session: &AgentSession) -> Vec<Key> {
    let ns = session.namespace().unwrap_or_default();
    session
        .parent_names()
        .into_iter()
        .map(|p| (ns.clone(), p))
        .collect()
}

fn insert_session(map: &mut HashMap<Key, HashSet<String>>, session: &AgentSession) {
    for key in parents_of(session) {
        map.entry(key).or_default().insert(session.name_any());
    }
}

impl SessionIndex {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, SessionState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The sessions whose first or current parent is `name`, as the store has them.
    pub fn children_of(
        &self,
        store: &Store<AgentSession>,
        ns: &str,
        name: &str,
    ) -> Vec<Arc<AgentSession>> {
        let names: Vec<String> = {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            state
                .live
                .get(&(ns.to_string(), name.to_string()))
                .map(|n| n.iter().cloned().collect())
                .unwrap_or_default()
        };
        names
            .iter()
            .filter_map(|n| store.get(&ObjectRef::new(n).within(ns)))
            .filter(|s| parents_of(s).iter().any(|(_, p)| p == name))
            .collect()
    }
}

/// Applies one session watch event to the index and the store (a superset of the store at every instant, as
/// for jobs; a parent change adds the new key and keeps the old one until the next relist, and lookups check).
pub fn record_session(
    index: &SessionIndex,
    writer: &mut Writer<AgentSession>,
    event: &Event<AgentSession>,
) {
    match event {
        Event::Apply(s) => {
            insert_session(&mut index.write().live, s);
            writer.apply_watcher_event(event);
        }
        Event::Delete(s) => {
            writer.apply_watcher_event(event);
            let mut state = index.write();
            for key in parents_of(s) {
                if let Some(names) = state.live.get_mut(&key) {
                    names.remove(&s.name_any());
                    if names.is_empty() {
                        state.live.remove(&key);
                    }
                }
            }
        }
        Event::Init => {
            index.write().relist = Some(HashMap::new());
            writer.apply_watcher_event(event);
        }
        Event::InitApply(s) => {
            insert_session(index.write().relist.get_or_insert_with(HashMap::new), s);
            writer.apply_watcher_event(event);
        }
        Event::InitDone => {
            writer.apply_watcher_event(event);
            let mut state = index.write();
            if let Some(relisted) = state.relist.take() {
                state.live = relisted;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::yaml;
    use kube::runtime::reflector::store;

    fn job(name: &str, session: &str, parent: Option<&str>) -> AgentJob {
        let parent = parent
            .map(|p| format!(", parentSessionName: {p}, callback: true"))
            .unwrap_or_default();
        yaml(&format!(
            "metadata: {{name: {name}, namespace: ns}}\nspec: {{type: Start, sessionName: {session}, prompt: p{parent}}}"
        ))
    }

    fn names(jobs: Vec<Arc<AgentJob>>) -> Vec<String> {
        let mut n: Vec<String> = jobs.iter().map(|j| j.name_any()).collect();
        n.sort();
        n
    }

    #[test]
    fn a_watch_fed_index_answers_by_session_and_by_parent() {
        let index = JobIndex::default();
        let (reader, mut writer) = store::<AgentJob>();
        let feed = |writer: &mut Writer<AgentJob>, e: Event<AgentJob>| record(&index, writer, &e);
        feed(&mut writer, Event::Init);
        feed(&mut writer, Event::InitApply(job("boss", "boss", None)));
        feed(&mut writer, Event::InitApply(job("c1", "w1", Some("boss"))));
        feed(&mut writer, Event::InitDone);
        feed(&mut writer, Event::Apply(job("c2", "w2", Some("boss"))));
        feed(&mut writer, Event::Apply(job("r1", "boss", None)));
        feed(
            &mut writer,
            Event::Apply(job("other", "elsewhere", Some("x"))),
        );
        assert_eq!(names(index.jobs_of(&reader, "ns", "boss")), ["boss", "r1"]);
        assert_eq!(
            names(index.children_of(&reader, "ns", "boss")),
            ["c1", "c2"]
        );
        assert!(index.jobs_of(&reader, "other-ns", "boss").is_empty());

        feed(&mut writer, Event::Delete(job("c1", "w1", Some("boss"))));
        assert_eq!(names(index.children_of(&reader, "ns", "boss")), ["c2"]);

        // A relist that no longer has r1 (its delete was missed while the watch was down): gone from both.
        feed(&mut writer, Event::Init);
        feed(&mut writer, Event::InitApply(job("boss", "boss", None)));
        feed(&mut writer, Event::InitApply(job("c2", "w2", Some("boss"))));
        assert_eq!(
            names(index.jobs_of(&reader, "ns", "boss")),
            ["boss", "r1"],
            "until the relist is complete, the old view stands"
        );
        feed(&mut writer, Event::InitDone);
        assert_eq!(names(index.jobs_of(&reader, "ns", "boss")), ["boss"]);
        assert_eq!(names(index.children_of(&reader, "ns", "boss")), ["c2"]);
    }

    #[test]
    fn a_name_reused_for_another_session_is_found_under_the_new_one_only() {
        let index = JobIndex::default();
        let (reader, mut writer) = store::<AgentJob>();
        record(&index, &mut writer, &Event::InitDone);
        record(&index, &mut writer, &Event::Apply(job("j", "a", None)));
        // The delete was missed; the new object of that name names another session.
        record(&index, &mut writer, &Event::Apply(job("j", "b", None)));
        assert!(index.jobs_of(&reader, "ns", "a").is_empty());
        assert_eq!(names(index.jobs_of(&reader, "ns", "b")), ["j"]);
    }
}
