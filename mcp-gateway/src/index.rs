//! Watch-fed indexes beside the gateway's caches: the objects of a namespace, the sessions under a parent, the jobs
//! of a session. A lookup then costs what it returns (one namespace, one parent's children) instead of a scan of
//! every object the gateway watches in the cluster. Pure: no API server and no async, so the tests feed watch
//! events by hand and read the result.
//!
//! An index holds references; a lookup resolves them through the store and checks the key again, so what it
//! returns is exactly the store's view. For that to hold at every instant, `record` applies a watch event to the
//! indexes and the store in one step, in the order that keeps each index a superset of the store: a key is added
//! before the store has the object and removed after the store has let it go (or no longer shows it under that
//! key); a relist builds a new index, merged into the old one before the store swaps in the same list and replacing
//! it right after.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::RwLock;

use kube::Resource;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::Event;

/// (namespace, name): an object, or a session named as a key (a parent, the session a job runs on).
pub type Key = (String, String);

pub fn key_of<K: Resource>(object: &K) -> Key {
    let meta = object.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The objects under each key, and the keys each object is under (to drop the stale ones when it changes).
#[derive(Debug)]
struct Map<Q> {
    by_key: HashMap<Q, HashSet<Key>>,
    keys_of: HashMap<Key, Vec<Q>>,
}

impl<Q> Default for Map<Q> {
    fn default() -> Self {
        Map {
            by_key: HashMap::new(),
            keys_of: HashMap::new(),
        }
    }
}

impl<Q: Clone + Eq + Hash> Map<Q> {
    /// Files `object` under `keys` as well as under the keys it had.
    fn add(&mut self, object: &Key, keys: &[Q]) {
        let held = self.keys_of.entry(object.clone()).or_default();
        for k in keys {
            if !held.contains(k) {
                held.push(k.clone());
            }
            self.by_key
                .entry(k.clone())
                .or_default()
                .insert(object.clone());
        }
    }

    /// Leaves `object` under `keys` only (none: it is gone).
    fn keep_only(&mut self, object: &Key, keys: &[Q]) {
        let Some(held) = self.keys_of.remove(object) else {
            return;
        };
        for k in held.iter().filter(|k| !keys.contains(k)) {
            if let Some(objects) = self.by_key.get_mut(k) {
                objects.remove(object);
                if objects.is_empty() {
                    self.by_key.remove(k);
                }
            }
        }
        if !keys.is_empty() {
            self.keys_of.insert(object.clone(), keys.to_vec());
        }
    }
}

#[derive(Debug)]
struct State<Q> {
    live: Map<Q>,
    /// The relist in progress: it replaces `live` once the store has swapped in the same list.
    relist: Option<Map<Q>>,
}

/// One index of objects of kind `K` by key `Q` (what `keys` says each object is filed under).
pub struct Index<K, Q> {
    keys: fn(&K) -> Vec<Q>,
    state: RwLock<State<Q>>,
}

impl<K: Resource, Q: Clone + Eq + Hash> Index<K, Q> {
    pub fn new(keys: fn(&K) -> Vec<Q>) -> Self {
        Index {
            keys,
            state: RwLock::new(State {
                live: Map::default(),
                relist: None,
            }),
        }
    }

    /// The objects filed under `key` (a superset of the store's: resolve them and check the key).
    pub fn get(&self, key: &Q) -> Vec<Key> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state
            .live
            .by_key
            .get(key)
            .map(|objects| objects.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State<Q>> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// What `record` does to an index around the store's update.
pub trait Recorded<K> {
    fn before(&self, event: &Event<K>);
    fn after(&self, event: &Event<K>);
}

impl<K: Resource, Q: Clone + Eq + Hash> Recorded<K> for Index<K, Q> {
    fn before(&self, event: &Event<K>) {
        match event {
            Event::Apply(o) => self.write().live.add(&key_of(o), &(self.keys)(o)),
            Event::Init => self.write().relist = Some(Map::default()),
            Event::InitApply(o) => self
                .write()
                .relist
                .get_or_insert_with(Map::default)
                .add(&key_of(o), &(self.keys)(o)),
            // The store is about to show the relisted objects: file them in the live index too until it is
            // replaced, so that nothing the store shows is missing in between.
            Event::InitDone => {
                let mut state = self.write();
                let State { live, relist } = &mut *state;
                for (object, keys) in relist.iter().flat_map(|r| &r.keys_of) {
                    live.add(object, keys);
                }
            }
            Event::Delete(_) => {}
        }
    }

    fn after(&self, event: &Event<K>) {
        match event {
            Event::Apply(o) => self.write().live.keep_only(&key_of(o), &(self.keys)(o)),
            Event::Delete(o) => self.write().live.keep_only(&key_of(o), &[]),
            Event::InitDone => {
                let mut state = self.write();
                if let Some(relisted) = state.relist.take() {
                    state.live = relisted;
                }
            }
            Event::Init | Event::InitApply(_) => {}
        }
    }
}

/// Applies one watch event to `indexes` and the store, in the order described above.
pub fn record<K>(writer: &mut Writer<K>, indexes: &[&dyn Recorded<K>], event: &Event<K>)
where
    K: Resource + Clone,
    K::DynamicType: Eq + Hash + Clone,
{
    for index in indexes {
        index.before(event);
    }
    writer.apply_watcher_event(event);
    for index in indexes {
        index.after(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crds::{AgentSession, AgentSessionSpec, AgentSessionStatus};
    use kube::runtime::reflector::{ObjectRef, Store, store};

    // Sessions by their first and current parent, as the gateway files them.
    use crate::store::parents_of_session as by_parent;

    fn session(ns: &str, name: &str, first: Option<&str>, current: Option<&str>) -> AgentSession {
        let mut s = AgentSession::new(
            name,
            AgentSessionSpec {
                parent_session_name: first.map(str::to_string),
                ..Default::default()
            },
        );
        s.metadata.namespace = Some(ns.into());
        s.status = current.map(|c| AgentSessionStatus {
            parent_session_name: Some(c.into()),
            ..Default::default()
        });
        s
    }

    /// The names under `parent` in `ns` that the store shows there now (what a lookup returns).
    fn under(
        index: &Index<AgentSession, Key>,
        store: &Store<AgentSession>,
        ns: &str,
        parent: &str,
    ) -> Vec<String> {
        let mut names: Vec<String> = index
            .get(&(ns.into(), parent.into()))
            .into_iter()
            .filter_map(|(ns, name)| store.get(&ObjectRef::new(&name).within(&ns)))
            .filter(|s| by_parent(s).iter().any(|(_, p)| p == parent))
            .map(|s| s.metadata.name.clone().unwrap_or_default())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn an_index_follows_applies_deletes_and_parent_changes() {
        let index = Index::new(by_parent);
        let (reader, mut writer) = store::<AgentSession>();
        let feed = |w: &mut Writer<AgentSession>, e: Event<AgentSession>| record(w, &[&index], &e);
        feed(&mut writer, Event::Init);
        feed(
            &mut writer,
            Event::InitApply(session("a", "boss", None, None)),
        );
        feed(
            &mut writer,
            Event::InitApply(session("a", "w1", Some("boss"), None)),
        );
        feed(
            &mut writer,
            Event::InitApply(session("b", "w1", Some("boss"), None)),
        );
        feed(&mut writer, Event::InitDone);
        feed(
            &mut writer,
            Event::Apply(session("a", "w2", Some("boss"), None)),
        );
        assert_eq!(under(&index, &reader, "a", "boss"), ["w1", "w2"]);
        assert_eq!(
            under(&index, &reader, "b", "boss"),
            ["w1"],
            "namespaces apart"
        );
        assert!(index.get(&("a".into(), "nobody".into())).is_empty());

        // Re-parented: the current parent finds it, and so does the first one (spec keeps it).
        feed(
            &mut writer,
            Event::Apply(session("a", "w2", Some("boss"), Some("lead"))),
        );
        assert_eq!(under(&index, &reader, "a", "lead"), ["w2"]);
        assert_eq!(under(&index, &reader, "a", "boss"), ["w1", "w2"]);
        // Moved again: the key it left holds nothing any more (exact, not only filtered).
        feed(
            &mut writer,
            Event::Apply(session("a", "w2", Some("boss"), Some("other"))),
        );
        assert!(index.get(&("a".into(), "lead".into())).is_empty());
        assert_eq!(under(&index, &reader, "a", "other"), ["w2"]);

        feed(
            &mut writer,
            Event::Delete(session("a", "w1", Some("boss"), None)),
        );
        assert_eq!(under(&index, &reader, "a", "boss"), ["w2"]);
        assert_eq!(index.get(&("a".into(), "boss".into())).len(), 1);
    }

    #[test]
    fn a_relist_replaces_the_index_once_complete() {
        let index = Index::new(by_parent);
        let (reader, mut writer) = store::<AgentSession>();
        let feed = |w: &mut Writer<AgentSession>, e: Event<AgentSession>| record(w, &[&index], &e);
        feed(&mut writer, Event::InitDone);
        feed(
            &mut writer,
            Event::Apply(session("a", "w1", Some("boss"), None)),
        );
        feed(
            &mut writer,
            Event::Apply(session("a", "w2", Some("boss"), None)),
        );
        // The watch was down while w1 was deleted: the relist no longer has it.
        feed(&mut writer, Event::Init);
        feed(
            &mut writer,
            Event::InitApply(session("a", "w2", Some("boss"), None)),
        );
        assert_eq!(
            under(&index, &reader, "a", "boss"),
            ["w1", "w2"],
            "until the relist is complete, the old view stands"
        );
        feed(&mut writer, Event::InitDone);
        assert_eq!(under(&index, &reader, "a", "boss"), ["w2"]);
        assert_eq!(index.get(&("a".into(), "boss".into())).len(), 1);
    }

    /// Between the index's update and the store's, a lookup must never miss what the store shows.
    #[test]
    fn the_index_is_a_superset_of_the_store_at_every_step() {
        struct Probe<'a> {
            index: &'a Index<AgentSession, Key>,
            store: Store<AgentSession>,
        }
        impl Recorded<AgentSession> for Probe<'_> {
            fn before(&self, _: &Event<AgentSession>) {
                self.check();
            }
            fn after(&self, _: &Event<AgentSession>) {
                self.check();
            }
        }
        impl Probe<'_> {
            fn check(&self) {
                for s in self.store.state() {
                    for key in by_parent(&s) {
                        assert!(
                            self.index.get(&key).contains(&key_of(s.as_ref())),
                            "{key:?}"
                        );
                    }
                }
            }
        }
        let index = Index::new(by_parent);
        let (reader, mut writer) = store::<AgentSession>();
        let probe = Probe {
            index: &index,
            store: reader,
        };
        // The probe looks before and after each of the index's steps, and right after the store's.
        let feed = |w: &mut Writer<AgentSession>, e: Event<AgentSession>| {
            record(w, &[&probe, &index, &probe], &e)
        };
        feed(&mut writer, Event::InitDone);
        feed(
            &mut writer,
            Event::Apply(session("a", "w", Some("boss"), None)),
        );
        feed(
            &mut writer,
            Event::Apply(session("a", "w", Some("boss"), Some("lead"))),
        );
        feed(
            &mut writer,
            Event::Apply(session("a", "w", Some("x"), Some("y"))),
        );
        // A relist that finds it moved, and one made while the watch was down.
        feed(&mut writer, Event::Init);
        feed(
            &mut writer,
            Event::InitApply(session("a", "w", Some("z"), None)),
        );
        feed(
            &mut writer,
            Event::InitApply(session("a", "new", Some("z"), None)),
        );
        feed(&mut writer, Event::InitDone);
        feed(
            &mut writer,
            Event::Delete(session("a", "w", Some("z"), None)),
        );
        assert_eq!(
            index.get(&("a".into(), "z".into())),
            [("a".to_string(), "new".to_string())]
        );
        assert!(index.get(&("a".into(), "y".into())).is_empty());
    }
}
