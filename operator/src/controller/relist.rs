//! Which objects a watch event touches, so that a watch listing everything again (it broke: an API server
//! restart) reconciles only what changed meanwhile.

use std::collections::HashSet;

use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

/// Which objects a watch event touches. A watch that broke (an API server restart) lists everything again: an
/// object listed at the resourceVersion the store already holds has not changed, and reconciling it again would
/// only make a new object wait behind every unchanged one; an object the store holds that the new list lacks was
/// deleted while the watch was down, and is touched as deleted. The store keeps the old copies until the list is
/// complete, so both are read from it before the list replaces them.
///
/// The objects a list touches are handed out only once it is complete (`InitDone`). Until then the store still
/// holds the old copies and lacks the new objects: a reconcile triggered by a new object in the middle of a list
/// (a list of many pages takes a while) found nothing in the store and was dropped, and the object waited for the
/// next resync. Seen at 10,000 sessions: a job created right after an API server restart was never started.
pub struct Relist<K: Resource> {
    listed: HashSet<ObjectRef<K>>,
    changed: Vec<K>,
}

impl<K: Resource> Default for Relist<K> {
    fn default() -> Self {
        Relist {
            listed: Default::default(),
            changed: Vec::new(),
        }
    }
}

impl<K: Resource<DynamicType = ()> + Clone> Relist<K> {
    pub fn touched(&mut self, known: &Store<K>, event: &watcher::Event<K>) -> Vec<K> {
        match event {
            watcher::Event::Apply(obj) | watcher::Event::Delete(obj) => vec![obj.clone()],
            watcher::Event::Init => {
                self.listed.clear();
                self.changed.clear();
                Vec::new()
            }
            watcher::Event::InitApply(obj) => {
                let key = ObjectRef::from_obj(obj);
                let unchanged = known
                    .get(&key)
                    .is_some_and(|old| old.meta().resource_version == obj.meta().resource_version);
                self.listed.insert(key);
                if !unchanged {
                    self.changed.push(obj.clone());
                }
                Vec::new()
            }
            watcher::Event::InitDone => {
                let listed = std::mem::take(&mut self.listed);
                let gone = known
                    .state()
                    .into_iter()
                    .filter(|old| !listed.contains(&ObjectRef::from_obj(old.as_ref())))
                    .map(|old| old.as_ref().clone());
                std::mem::take(&mut self.changed)
                    .into_iter()
                    .chain(gone)
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crds::AgentJob;
    use kube::runtime::reflector;

    fn job(name: &str, rv: &str) -> AgentJob {
        crate::domain::fixtures::yaml(&format!(
            "{{apiVersion: agentorchestrator.dev/v1alpha1, kind: AgentJob, metadata: {{name: {name}, namespace: ns, resourceVersion: '{rv}'}}, spec: {{type: Start, sessionName: s, prompt: p}}}}"
        ))
    }

    fn names(objs: Vec<AgentJob>) -> Vec<String> {
        objs.into_iter().map(|o| o.metadata.name.unwrap()).collect()
    }

    #[test]
    fn a_relist_touches_what_changed_and_what_is_gone_not_what_is_unchanged() {
        let (store, mut writer) = reflector::store::<AgentJob>();
        let mut relist = Relist::default();
        let mut feed = |event: watcher::Event<AgentJob>| {
            let touched = relist.touched(&store, &event);
            writer.apply_watcher_event(&event);
            names(touched)
        };
        // The first list: everything is new, and handed out once the list is complete.
        assert!(feed(watcher::Event::Init).is_empty());
        assert!(feed(watcher::Event::InitApply(job("a", "1"))).is_empty());
        assert!(feed(watcher::Event::InitApply(job("b", "1"))).is_empty());
        assert!(feed(watcher::Event::InitApply(job("c", "1"))).is_empty());
        assert_eq!(feed(watcher::Event::InitDone), ["a", "b", "c"]);
        assert_eq!(feed(watcher::Event::Apply(job("a", "2"))), ["a"]);
        // The watch broke; meanwhile b changed, c was deleted, d was made.
        assert!(feed(watcher::Event::Init).is_empty());
        assert!(feed(watcher::Event::InitApply(job("a", "2"))).is_empty());
        assert!(feed(watcher::Event::InitApply(job("b", "3"))).is_empty());
        assert!(feed(watcher::Event::InitApply(job("d", "4"))).is_empty());
        assert_eq!(feed(watcher::Event::InitDone), ["b", "d", "c"]);
        assert!(store.get(&ObjectRef::new("c").within("ns")).is_none());
        assert_eq!(feed(watcher::Event::Delete(job("d", "5"))), ["d"]);
    }

    /// What a list touches is handed out only once the store holds the new list: a reconcile looks its object up
    /// in the store, and one triggered in the middle of a list found the new object missing and was dropped.
    #[test]
    fn what_a_relist_touches_is_in_the_store_when_it_is_handed_out() {
        let (store, mut writer) = reflector::store::<AgentJob>();
        let mut relist = Relist::default();
        for event in [
            watcher::Event::Init,
            watcher::Event::InitApply(job("a", "1")),
            watcher::Event::InitDone,
            watcher::Event::Init,
            watcher::Event::InitApply(job("a", "1")),
            watcher::Event::InitApply(job("new", "7")),
            watcher::Event::InitDone,
        ] {
            let touched = relist.touched(&store, &event);
            writer.apply_watcher_event(&event);
            for obj in touched {
                assert!(
                    store.get(&ObjectRef::from_obj(&obj)).is_some(),
                    "{} handed out before the store holds it",
                    obj.metadata.name.unwrap()
                );
            }
        }
        assert!(store.get(&ObjectRef::new("new").within("ns")).is_some());
    }
}
