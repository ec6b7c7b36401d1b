//! The live feed of one namespace's tree: the rows as last seen, and the recent changes to them, each with an event
//! id `EPOCH-SEQ`. A browser that reconnects with `Last-Event-ID` gets the changes it missed; one whose id is too old
//! (or from another gateway process or replica: another epoch) gets a full snapshot instead.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use super::tree::Row;

/// Changes kept for resuming. A browser further behind than this gets a snapshot, which is as good, only bigger.
pub const KEPT_CHANGES: usize = 4096;

/// A change to one row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Delta {
    Upsert { row: Row },
    Remove { name: String },
}

/// What a (re)connecting browser is sent first.
#[derive(Debug, PartialEq, Eq)]
pub enum Catchup {
    /// Every row, as of event `id`.
    Snapshot { id: String, rows: Vec<Row> },
    /// The changes after the browser's last event, each with its id (none when it is up to date).
    Replay(Vec<(String, Delta)>),
}

pub struct Feed {
    /// Tells this process's ids from another's: a gateway restarted (or another replica) starts a new sequence.
    epoch: u64,
    seq: u64,
    rows: BTreeMap<String, Row>,
    changes: VecDeque<(u64, Delta)>,
}

impl Feed {
    pub fn new(epoch: u64) -> Self {
        Feed {
            epoch,
            seq: 0,
            rows: BTreeMap::new(),
            changes: VecDeque::new(),
        }
    }

    pub fn id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.epoch)
    }

    /// The id of the latest change.
    pub fn last_id(&self) -> String {
        self.id(self.seq)
    }

    /// Takes the rows as they are now; returns how many rows changed (each a new event).
    pub fn update(&mut self, now: BTreeMap<String, Row>) -> usize {
        let mut deltas = Vec::new();
        for (name, row) in &now {
            if self.rows.get(name) != Some(row) {
                deltas.push(Delta::Upsert { row: row.clone() });
            }
        }
        for name in self.rows.keys() {
            if !now.contains_key(name) {
                deltas.push(Delta::Remove { name: name.clone() });
            }
        }
        let changed = deltas.len();
        for d in deltas {
            self.seq += 1;
            self.changes.push_back((self.seq, d));
        }
        while self.changes.len() > KEPT_CHANGES {
            self.changes.pop_front();
        }
        self.rows = now;
        changed
    }

    /// What a browser whose last event was `last` needs (None: a first connection).
    pub fn since(&self, last: Option<&str>) -> Catchup {
        let snapshot = || Catchup::Snapshot {
            id: self.last_id(),
            rows: self.rows.values().cloned().collect(),
        };
        let Some(seq) = last.and_then(|l| self.seq_of(l)) else {
            return snapshot();
        };
        if seq > self.seq {
            return snapshot();
        }
        // Every change after `seq` must still be kept, else some are lost: snapshot.
        let oldest_kept = self
            .changes
            .front()
            .map(|(s, _)| *s)
            .unwrap_or(self.seq + 1);
        if seq < self.seq && seq + 1 < oldest_kept {
            return snapshot();
        }
        Catchup::Replay(
            self.changes
                .iter()
                .filter(|(s, _)| *s > seq)
                .map(|(s, d)| (self.id(*s), d.clone()))
                .collect(),
        )
    }

    /// The sequence number of an id of this epoch.
    fn seq_of(&self, id: &str) -> Option<u64> {
        let (epoch, seq) = id.trim().split_once('-')?;
        (epoch.parse::<u64>().ok()? == self.epoch)
            .then(|| seq.parse().ok())
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, phase: &str) -> Row {
        Row {
            name: name.into(),
            parent: None,
            phase: phase.into(),
            blueprint: None,
            current_job: None,
            queue: 0,
            jobs: 1,
            created: None,
            result_preview: None,
        }
    }

    fn rows(list: &[(&str, &str)]) -> BTreeMap<String, Row> {
        list.iter()
            .map(|(n, p)| (n.to_string(), row(n, p)))
            .collect()
    }

    #[test]
    fn a_first_connection_gets_a_snapshot_and_a_resume_the_changes_it_missed() {
        let mut feed = Feed::new(7);
        assert_eq!(feed.update(rows(&[("a", "Running"), ("b", "Running")])), 2);
        let Catchup::Snapshot { id, rows: all } = feed.since(None) else {
            panic!("snapshot expected")
        };
        assert_eq!((id.as_str(), all.len()), ("7-2", 2));
        // Unchanged rows make no event.
        assert_eq!(feed.update(rows(&[("a", "Running"), ("b", "Running")])), 0);
        assert_eq!(feed.update(rows(&[("a", "Idle")])), 2);
        assert_eq!(
            feed.since(Some("7-2")),
            Catchup::Replay(vec![
                (
                    "7-3".into(),
                    Delta::Upsert {
                        row: row("a", "Idle")
                    }
                ),
                ("7-4".into(), Delta::Remove { name: "b".into() }),
            ])
        );
        assert_eq!(feed.since(Some("7-4")), Catchup::Replay(vec![]));
    }

    #[test]
    fn an_id_too_old_from_another_epoch_or_unreadable_gets_a_snapshot() {
        let mut feed = Feed::new(1);
        for i in 0..(KEPT_CHANGES + 10) {
            feed.update(rows(&[("a", &format!("p{i}"))]));
        }
        for last in ["1-3", "2-5", "garbage", "1-999999"] {
            assert!(
                matches!(feed.since(Some(last)), Catchup::Snapshot { .. }),
                "{last}"
            );
        }
        let recent = feed.id(feed.seq - 1);
        assert!(matches!(feed.since(Some(&recent)), Catchup::Replay(c) if c.len() == 1));
    }
}
