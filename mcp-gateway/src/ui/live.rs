//! The tree view's live stream: one feed per namespace a browser has opened, kept up to date by a task that rebuilds
//! the namespace's rows from the watch-fed caches whenever a session or job event arrives, and one SSE response per
//! browser that sends the catch-up (snapshot or missed changes) and then each change, with heartbeats in between.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::time::Instant;

use super::feed::{Catchup, Delta, Feed};
use super::sse;
use super::tree;
use crate::ops::App;

/// A namespace's feed, and the sequence number of its latest change (to wake the browsers' streams).
#[derive(Clone)]
pub struct NamespaceFeed {
    pub feed: Arc<Mutex<Feed>>,
    pub changed: watch::Receiver<u64>,
}

pub struct Feeds {
    epoch: u64,
    by_namespace: Mutex<HashMap<String, NamespaceFeed>>,
}

impl Feeds {
    pub fn new() -> Self {
        Feeds {
            epoch: crate::naming::now_millis(),
            by_namespace: Mutex::new(HashMap::new()),
        }
    }

    /// The feed of `ns`, started on first use. It lives as long as the process: namespaces people look at are few.
    pub fn of(&self, app: &Arc<App>, ns: &str) -> NamespaceFeed {
        let mut feeds = self.by_namespace.lock().expect("feeds lock");
        if let Some(f) = feeds.get(ns) {
            return f.clone();
        }
        let feed = Arc::new(Mutex::new(Feed::new(self.epoch)));
        let (tx, changed) = watch::channel(0u64);
        let rebuild = {
            let (app, ns, feed) = (app.clone(), ns.to_string(), feed.clone());
            move || {
                let sessions = app.stores.sessions_in(&ns);
                let jobs = app.stores.jobs_in(&ns);
                let rows = tree::rows(
                    sessions.iter().map(|s| s.as_ref()),
                    jobs.iter().map(|j| j.as_ref()),
                );
                let mut feed = feed.lock().expect("feed lock");
                if feed.update(rows) > 0 {
                    tx.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
        };
        rebuild();
        let app_for_task = app.clone();
        tokio::spawn(async move {
            // wait_until runs the check after every session or job event; it never returns Some, so this loops for
            // the life of the process (the far deadline only bounds each round).
            loop {
                app_for_task
                    .stores
                    .wait_until(
                        Instant::now() + std::time::Duration::from_secs(3600),
                        || {
                            rebuild();
                            None::<()>
                        },
                    )
                    .await;
            }
        });
        let f = NamespaceFeed { feed, changed };
        feeds.insert(ns.to_string(), f.clone());
        f
    }
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
