//! The tree view's live stream: one feed per namespace a browser has open, kept up to date by a task that rebuilds
//! the namespace's rows from the watch-fed caches whenever a session or job event of that namespace arrives (events
//! elsewhere never wake it), and one SSE response per browser that sends the catch-up (snapshot or missed changes)
//! and then each change, with heartbeats in between. The last browser to leave a namespace stops its task and drops
//! its feed; the next one starts a new feed, with a new epoch (so an old Last-Event-ID gets a snapshot).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::feed::{Catchup, Delta, Feed};
use super::sse;
use super::tree::{self, Row};

/// A namespace's feed, and the sequence number of its latest change (to wake the browsers' streams). Each browser's
/// stream holds one: the feed runs while any is held.
#[derive(Clone)]
pub struct NamespaceFeed {
    pub feed: Arc<Mutex<Feed>>,
    pub changed: watch::Receiver<u64>,
    /// Held, never read: the feed runs while a clone of this is held.
    _running: Option<Arc<Running>>,
}

/// The open feeds, by namespace. Entries are weak: a feed lives as long as a browser holds it.
type Open = Arc<Mutex<HashMap<String, Weak<Running>>>>;

/// A feed being kept up to date; dropping the last holder stops its task and forgets it.
struct Running {
    ns: String,
    feed: Arc<Mutex<Feed>>,
    changed: watch::Receiver<u64>,
    task: AbortHandle,
    open: Weak<Mutex<HashMap<String, Weak<Running>>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(open) = self.open.upgrade() {
            let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
            // A browser that came meanwhile may have started a new feed of this namespace: leave that one. (No
            // upgrade here: dropping the upgraded Arc under the lock could run this very drop again.)
            if open
                .get(&self.ns)
                .is_some_and(|w| std::ptr::eq(w.as_ptr(), self))
            {
                open.remove(&self.ns);
            }
        }
    }
}

pub struct Feeds {
    open: Open,
    /// The epoch of the newest feed: every feed gets a larger one (from the clock, so a restarted gateway's ids
    /// differ from the last process's too).
    last_epoch: AtomicU64,
}

impl Feeds {
    pub fn new() -> Self {
        Feeds {
            open: Arc::default(),
            last_epoch: AtomicU64::new(0),
        }
    }

    fn next_epoch(&self) -> u64 {
        let now = crate::naming::now_millis();
        let prev = self
            .last_epoch
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(now.max(last + 1))
            })
            .expect("the update closure always returns Some");
        now.max(prev + 1)
    }

    /// The feed of `ns`, started on first use from `source` (called only then): the rows of the namespace as they
    /// are now, and a receiver bumped after each of its events.
    pub fn of<R>(
        &self,
        ns: &str,
        source: impl FnOnce() -> (R, watch::Receiver<u64>),
    ) -> NamespaceFeed
    where
        R: Fn() -> BTreeMap<String, Row> + Send + 'static,
    {
        let mut open = self.open.lock().expect("feeds lock");
        if let Some(running) = open.get(ns).and_then(Weak::upgrade) {
            return NamespaceFeed {
                feed: running.feed.clone(),
                changed: running.changed.clone(),
                _running: Some(running),
            };
        }
        let (rows, mut events) = source();
        let epoch = self.next_epoch();
        let feed = Arc::new(Mutex::new(Feed::new(epoch)));
        let (tx, changed) = watch::channel(0u64);
        let rebuild = {
            let feed = feed.clone();
            move || {
                let now = rows();
                let mut feed = feed.lock().expect("feed lock");
                if feed.update(now) > 0 {
                    tx.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
        };
        // Seen before the first build: an event after it wakes the task.
        events.borrow_and_update();
        rebuild();
        let task = tokio::spawn(async move {
            while events.changed().await.is_ok() {
                rebuild();
            }
        })
        .abort_handle();
        let running = Arc::new(Running {
            ns: ns.to_string(),
            feed: feed.clone(),
            changed: changed.clone(),
            task,
            open: Arc::downgrade(&self.open),
        });
        open.insert(ns.to_string(), Arc::downgrade(&running));
        NamespaceFeed {
            feed,
            changed,
            _running: Some(running),
        }
    }

    /// The namespaces whose feed runs now.
    #[cfg(test)]
    fn open_namespaces(&self) -> Vec<String> {
        let open = self.open.lock().expect("feeds lock");
        let mut names: Vec<String> = open
            .iter()
            .filter(|(_, w)| w.strong_count() > 0)
            .map(|(ns, _)| ns.clone())
            .collect();
        names.sort();
        names
    }
}

/// The rows of `ns` from the caches (the namespace's own sessions and jobs, from the indexes).
pub fn rows_of(stores: &crate::store::Stores, ns: &str) -> BTreeMap<String, Row> {
    let sessions = stores.sessions_in(ns);
    let jobs = stores.jobs_in(ns);
    tree::rows(
        sessions.iter().map(|s| s.as_ref()),
        jobs.iter().map(|j| j.as_ref()),
    )
}

/// The frames of a catch-up: a snapshot event, or one event per missed change.
pub fn catchup_frames(catchup: Catchup) -> Vec<String> {
    match catchup {
        Catchup::Snapshot { id, rows } => {
            let data = serde_json::to_string(&serde_json::json!({ "rows": rows }))
                .expect("rows serialise");
            vec![sse::frame(Some(&id), "snapshot", &data)]
        }
        Catchup::Replay(changes) => changes
            .into_iter()
            .map(|(id, delta)| {
                let event = match delta {
                    Delta::Upsert { .. } => "upsert",
                    Delta::Remove { .. } => "remove",
                };
                let data = serde_json::to_string(&delta).expect("deltas serialise");
                sse::frame(Some(&id), event, &data)
            })
            .collect(),
    }
}

/// Streams `ns`'s tree to one browser, starting after `last_event_id`, until it goes away.
pub async fn stream(feed: NamespaceFeed, last_event_id: Option<String>, mut tx: sse::Sender) {
    let mut changed = feed.changed.clone();
    let mut last = last_event_id;
    loop {
        changed.borrow_and_update();
        let (frames, now) = {
            let f = feed.feed.lock().expect("feed lock");
            (catchup_frames(f.since(last.as_deref())), f.last_id())
        };
        last = Some(now);
        for frame in frames {
            if !sse::send(&mut tx, frame).await {
                return;
            }
        }
        match tokio::time::timeout(sse::HEARTBEAT, changed.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                if !sse::send(&mut tx, sse::HEARTBEAT_FRAME.into()).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn rows(list: &[(&str, &str)]) -> std::collections::BTreeMap<String, tree::Row> {
        list.iter()
            .map(|(n, p)| {
                let row = tree::Row {
                    name: n.to_string(),
                    parent: None,
                    phase: p.to_string(),
                    blueprint: None,
                    current_job: None,
                    queue: 0,
                    jobs: 1,
                    created: None,
                    result_preview: None,
                };
                (n.to_string(), row)
            })
            .collect()
    }

    /// A browser resuming with Last-Event-ID gets only what it missed, then each new change as it happens.
    #[tokio::test]
    async fn a_resumed_stream_sends_the_missed_changes_then_the_new_ones() {
        let feed = Arc::new(Mutex::new(Feed::new(3)));
        feed.lock()
            .unwrap()
            .update(rows(&[("a", "Running"), ("b", "Running")]));
        feed.lock()
            .unwrap()
            .update(rows(&[("a", "Idle"), ("b", "Running")]));
        let (tx, changed) = watch::channel(0u64);
        let (sender, mut frames) = futures::channel::mpsc::channel::<String>(16);
        let nf = NamespaceFeed {
            feed: feed.clone(),
            changed,
            _running: None,
        };
        let task = tokio::spawn(stream(nf, Some("3-2".into()), sender));
        let first = frames.next().await.unwrap();
        assert!(first.starts_with("id: 3-3\nevent: upsert\n"), "{first}");
        assert!(first.contains("\"phase\":\"Idle\""), "{first}");
        feed.lock().unwrap().update(rows(&[("a", "Idle")]));
        tx.send_modify(|n| *n += 1);
        let next = frames.next().await.unwrap();
        assert_eq!(
            next,
            "id: 3-4\nevent: remove\ndata: {\"op\":\"remove\",\"name\":\"b\"}\n\n"
        );
        // The browser goes away: the stream ends at its next frame.
        drop(frames);
        feed.lock().unwrap().update(rows(&[("a", "Failed")]));
        tx.send_modify(|n| *n += 1);
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .expect("the stream ends when the browser has gone")
            .unwrap();
    }

    type Shared = Arc<Mutex<std::collections::BTreeMap<String, tree::Row>>>;

    /// A namespace's rows as the test sets them, and the sender that stands for its watch events.
    fn namespace(list: &[(&str, &str)]) -> (Shared, watch::Sender<u64>) {
        (Arc::new(Mutex::new(rows(list))), watch::channel(0u64).0)
    }

    fn open(
        feeds: &Feeds,
        ns: &str,
        (rows, events): &(Shared, watch::Sender<u64>),
    ) -> NamespaceFeed {
        let (rows, events) = (rows.clone(), events.subscribe());
        feeds.of(ns, move || (move || rows.lock().unwrap().clone(), events))
    }

    /// A feed starts with its first browser, wakes on its own namespace's events only, and stops (its task ends,
    /// its rows are dropped) when the last browser leaves; the next browser gets a new feed, whose epoch tells an
    /// old Last-Event-ID to take a snapshot.
    #[tokio::test]
    async fn a_feed_runs_while_browsers_hold_it_and_only_for_its_namespace() {
        let feeds = Feeds::new();
        let a = namespace(&[("x", "Running")]);
        let b = namespace(&[("y", "Running")]);
        let first = open(&feeds, "a", &a);
        let second = open(&feeds, "a", &a);
        let other = open(&feeds, "b", &b);
        assert_eq!(feeds.open_namespaces(), ["a", "b"]);
        assert!(
            Arc::ptr_eq(&first.feed, &second.feed),
            "one feed per namespace"
        );
        assert_eq!(a.1.receiver_count(), 1, "one task per namespace");

        let mut changed = first.changed.clone();
        let mut changed_b = other.changed.clone();
        changed.borrow_and_update();
        changed_b.borrow_and_update();
        a.0.lock()
            .unwrap()
            .insert("z".into(), rows(&[("z", "Idle")])["z"].clone());
        a.1.send_modify(|n| *n += 1);
        tokio::time::timeout(std::time::Duration::from_secs(10), changed.changed())
            .await
            .expect("the feed of a follows a's events")
            .unwrap();
        {
            let feed = first.feed.lock().unwrap();
            assert!(matches!(feed.since(Some(&feed.id(1))), Catchup::Replay(c) if c.len() == 1));
        }
        assert!(!changed_b.has_changed().unwrap(), "b's feed did not wake");
        let old_id = first.feed.lock().unwrap().last_id();

        drop((first, second));
        assert_eq!(feeds.open_namespaces(), ["b"]);
        tokio::time::timeout(std::time::Duration::from_secs(10), a.1.closed())
            .await
            .expect("the task of a stopped when its last browser left");

        let again = open(&feeds, "a", &a);
        assert!(matches!(
            again.feed.lock().unwrap().since(Some(&old_id)),
            Catchup::Snapshot { .. }
        ));
        drop((again, other));
        assert!(feeds.open_namespaces().is_empty());
    }

    #[test]
    fn a_replay_is_one_event_per_change_and_a_snapshot_one_event() {
        let row = tree::Row {
            name: "a".into(),
            parent: None,
            phase: "Idle".into(),
            blueprint: None,
            current_job: None,
            queue: 0,
            jobs: 1,
            created: None,
            result_preview: None,
        };
        let frames = catchup_frames(Catchup::Replay(vec![
            ("1-1".into(), Delta::Upsert { row: row.clone() }),
            ("1-2".into(), Delta::Remove { name: "a".into() }),
        ]));
        assert_eq!(frames.len(), 2);
        assert!(frames[0].starts_with(
            "id: 1-1\nevent: upsert\ndata: {\"op\":\"upsert\",\"row\":{\"name\":\"a\""
        ));
        assert_eq!(
            frames[1],
            "id: 1-2\nevent: remove\ndata: {\"op\":\"remove\",\"name\":\"a\"}\n\n"
        );
        let snap = catchup_frames(Catchup::Snapshot {
            id: "1-2".into(),
            rows: vec![row],
        });
        assert!(snap[0].starts_with("id: 1-2\nevent: snapshot\ndata: {\"rows\":[{"));
    }
}
