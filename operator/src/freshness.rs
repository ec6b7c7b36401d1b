//! Read-your-writes for reconciles that read from watch-fed stores.
//!
//! A reconcile writes an object and returns; the next trigger can arrive before the watch has brought that write
//! into the store. Acting on the older copy is safe (every write carries the resourceVersion it was decided from,
//! so it fails with Conflict) but wasteful: a write refused, a retry after a backoff. Instead, the operator
//! remembers the resourceVersions it has written over, and a reconcile that finds one of them in the store waits
//! for the watch, which is already on its way with the newer copy. Only equality of resourceVersions is used,
//! never their order.
//!
//! Likewise for Pods: after creating a job's Pod, a reconcile that does not see it in the store yet expects it
//! (for a while) instead of creating it again and being refused with AlreadyExists.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Beyond this many objects the records are dropped: they only save work, losing them costs nothing else.
const MAX_TRACKED: usize = 50_000;
/// How long a created Pod is expected before the job may try again (it may have been deleted unseen).
const POD_EXPECTATION: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Freshness {
    /// By object UID: resourceVersions this process has written over.
    superseded: Mutex<HashMap<String, HashSet<String>>>,
    /// By job UID: when its Pod was created.
    pods: Mutex<HashMap<String, Instant>>,
}

impl Freshness {
    /// Records a successful write to the object `uid` that was decided from `resource_version`.
    pub fn wrote(&self, uid: Option<&str>, resource_version: Option<&str>) {
        let (Some(uid), Some(rv)) = (uid, resource_version) else {
            return;
        };
        let mut superseded = self.superseded.lock().expect("freshness lock");
        if superseded.len() >= MAX_TRACKED {
            superseded.clear();
        }
        superseded
            .entry(uid.to_string())
            .or_default()
            .insert(rv.to_string());
    }

    /// Whether the copy `(uid, resource_version)` is one this process has already written over. A copy that is
    /// not clears the records of that object: the store has caught up.
    pub fn is_behind(&self, uid: Option<&str>, resource_version: Option<&str>) -> bool {
        let (Some(uid), Some(rv)) = (uid, resource_version) else {
            return false;
        };
        let mut superseded = self.superseded.lock().expect("freshness lock");
        match superseded.get(uid) {
            Some(versions) if versions.contains(rv) => true,
            Some(_) => {
                superseded.remove(uid);
                false
            }
            None => false,
        }
    }

    /// Records that the Pod of job `uid` was created.
    pub fn created_pod(&self, job_uid: Option<&str>) {
        if let Some(uid) = job_uid {
            let mut pods = self.pods.lock().expect("freshness lock");
            if pods.len() >= MAX_TRACKED {
                pods.clear();
            }
            pods.insert(uid.to_string(), Instant::now());
        }
    }

    /// Whether the Pod of job `uid` was created a moment ago (and is not in the store yet).
    pub fn expects_pod(&self, job_uid: Option<&str>) -> bool {
        let Some(uid) = job_uid else { return false };
        let mut pods = self.pods.lock().expect("freshness lock");
        match pods.get(uid) {
            Some(at) if at.elapsed() < POD_EXPECTATION => true,
            Some(_) => {
                pods.remove(uid);
                false
            }
            None => false,
        }
    }

    /// The Pod of job `uid` is in the store: nothing more to expect.
    pub fn saw_pod(&self, job_uid: Option<&str>) {
        if let Some(uid) = job_uid {
            self.pods.lock().expect("freshness lock").remove(uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_written_over_is_behind_until_the_store_catches_up() {
        let f = Freshness::default();
        f.wrote(Some("u"), Some("10"));
        f.wrote(Some("u"), Some("11"));
        assert!(f.is_behind(Some("u"), Some("10")));
        assert!(f.is_behind(Some("u"), Some("11")));
        assert!(!f.is_behind(Some("other"), Some("10")));
        // The store shows our write (or a later one): fresh, and the records are gone.
        assert!(!f.is_behind(Some("u"), Some("12")));
        assert!(!f.is_behind(Some("u"), Some("10")));
        assert!(!f.is_behind(None, Some("10")));
    }

    #[test]
    fn created_pods_are_expected_until_seen() {
        let f = Freshness::default();
        assert!(!f.expects_pod(Some("j")));
        f.created_pod(Some("j"));
        assert!(f.expects_pod(Some("j")));
        f.saw_pod(Some("j"));
        assert!(!f.expects_pod(Some("j")));
    }
}
