//! How soon a failed reconcile is tried again: per object, exponentially with jitter, reset on success.
//!
//! The policy is a pure function (`delay`) of the kind of failure, the number of failures in a row and a jitter
//! draw in [0, 1), so it is tested without a cluster; `Backoff` keeps the count per object.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::time::Duration;

/// First delay of a transient failure; it doubles on each failure in a row.
pub const BASE: Duration = Duration::from_millis(500);
/// No delay grows beyond this.
pub const CAP: Duration = Duration::from_secs(300);
/// A conflict resolves on the next read: retried soon, growing only a little.
pub const CONFLICT_BASE: Duration = Duration::from_millis(50);
pub const CONFLICT_CAP: Duration = Duration::from_secs(1);
/// Throttled without a Retry-After: back off from a longer start than other failures.
pub const THROTTLED_BASE: Duration = Duration::from_secs(2);
/// A refusal the API server will repeat (400, 403, 422): looked at again only after a long while.
pub const PERMANENT: Duration = Duration::from_secs(15 * 60);
/// A malformed object: not worth a fast retry.
pub const SERDE_BASE: Duration = Duration::from_secs(30);

/// What kind of failure a reconcile met, as far as retrying it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Optimistic-concurrency conflict (409).
    Conflict,
    /// Too many requests (429), with the server's Retry-After if it sent one.
    Throttled { retry_after: Option<Duration> },
    /// Server trouble (5xx), transport failures, anything that may pass.
    Transient,
    /// The API server refused the request for good (400, 403, 422).
    Permanent,
    /// (De)serialisation failed.
    Serde,
}

/// `base * 2^attempt`, at most `cap`.
fn exponential(base: Duration, attempt: u32, cap: Duration) -> Duration {
    base.saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
        .min(cap)
}

/// Jitter that keeps a delay within [d/2, d]: retries of many objects failing together spread out, and no delay
/// exceeds its cap.
fn jittered(d: Duration, jitter: f64) -> Duration {
    let j = jitter.clamp(0.0, 1.0);
    d.mul_f64(0.5 + 0.5 * j)
}

/// The delay before retry number `attempt + 1` (`attempt` is the number of earlier failures in a row, 0 for the
/// first), given a jitter draw in [0, 1).
pub fn delay(class: Class, attempt: u32, jitter: f64) -> Duration {
    match class {
        Class::Conflict => jittered(exponential(CONFLICT_BASE, attempt, CONFLICT_CAP), jitter),
        // The server said when: wait that long (never less), plus a little jitter so a crowd does not return at
        // one instant; at most the cap.
        Class::Throttled {
            retry_after: Some(after),
        } => {
            let spread = exponential(BASE, attempt, CAP).mul_f64(0.25 * jitter.clamp(0.0, 1.0));
            (after + spread).min(CAP.max(after))
        }
        Class::Throttled { retry_after: None } => {
            jittered(exponential(THROTTLED_BASE, attempt, CAP), jitter)
        }
        Class::Transient => jittered(exponential(BASE, attempt, CAP), jitter),
        Class::Permanent => PERMANENT,
        Class::Serde => jittered(exponential(SERDE_BASE, attempt, CAP), jitter),
    }
}

/// A jitter draw in [0, 1) without a random-number dependency: the std hasher's random keys over a counter.
pub fn jitter() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Failures in a row, per object (kind, namespace, name). Cleared when the object's reconcile succeeds.
#[derive(Default)]
pub struct Backoff {
    attempts: Mutex<HashMap<(&'static str, String, String), u32>>,
}

impl Backoff {
    /// Counts one more failure of the object and returns how many came before it.
    pub fn failed(&self, kind: &'static str, namespace: &str, name: &str) -> u32 {
        let mut map = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        let n = map
            .entry((kind, namespace.to_string(), name.to_string()))
            .or_insert(0);
        let before = *n;
        *n = n.saturating_add(1);
        before
    }

    /// The object reconciled: its next failure starts from the first delay again.
    pub fn succeeded(&self, kind: &'static str, namespace: &str, name: &str) {
        let mut map = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        if !map.is_empty() {
            map.remove(&(kind, namespace.to_string(), name.to_string()));
        }
    }

    /// Forgets the objects for which `keep` says false (deleted ones, whose reconcile will never succeed).
    pub fn retain(&self, mut keep: impl FnMut(&'static str, &str, &str) -> bool) {
        let mut map = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|(kind, ns, name), _| keep(kind, ns, name));
    }

    /// Objects with failures outstanding.
    pub fn len(&self) -> usize {
        self.attempts.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How soon a broken watch is opened again. kube-rs's default (client-go's: 0.8 s doubling to 30 s, reset only
/// after two calm minutes) keeps growing across a few API server restarts, so the operator stayed blind for seconds
/// after the server was back (measured: 5.5 s from /readyz to a new job's Pod). This one starts at 100 ms and stays
/// at most 1 s apart, with jitter, and starts over once a watch has been calm for 10 s: a handful of watches asking
/// once a second is no load for an API server that is coming back.
pub struct WatchBackoff {
    attempt: u32,
    last: Option<std::time::Instant>,
}

pub const WATCH_BASE: Duration = Duration::from_millis(100);
pub const WATCH_CAP: Duration = Duration::from_secs(1);
pub const WATCH_CALM: Duration = Duration::from_secs(10);

impl WatchBackoff {
    pub fn new() -> Self {
        WatchBackoff {
            attempt: 0,
            last: None,
        }
    }

    /// The delay after a failure at `now`, given a jitter draw in [0, 1).
    fn next_at(&mut self, now: std::time::Instant, jitter: f64) -> Duration {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) > WATCH_CALM)
        {
            self.attempt = 0;
        }
        self.last = Some(now);
        let d = jittered(exponential(WATCH_BASE, self.attempt, WATCH_CAP), jitter);
        self.attempt = self.attempt.saturating_add(1);
        d
    }
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.next_at(std::time::Instant::now(), jitter()))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOW: f64 = 0.0;
    const HIGH: f64 = 0.999_999;

    #[test]
    fn transient_doubles_from_500ms_within_jitter_bounds() {
        for attempt in 0..8 {
            let full = BASE * 2u32.pow(attempt);
            let lo = delay(Class::Transient, attempt, LOW);
            let hi = delay(Class::Transient, attempt, HIGH);
            assert_eq!(lo, full / 2, "attempt {attempt}");
            assert!(
                hi <= full && hi > full.mul_f64(0.99),
                "attempt {attempt}: {hi:?}"
            );
        }
    }

    #[test]
    fn jitter_stays_within_bounds_for_random_draws() {
        for _ in 0..1000 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
            let d = delay(Class::Transient, 3, j);
            assert!(d >= BASE * 4 && d <= BASE * 8, "{d:?}");
        }
    }

    #[test]
    fn draws_differ() {
        let draws: std::collections::HashSet<u64> = (0..100).map(|_| jitter().to_bits()).collect();
        assert!(draws.len() > 90);
    }

    #[test]
    fn capped_at_five_minutes_even_for_huge_attempts() {
        for attempt in [9, 10, 20, 31, 32, 1000, u32::MAX] {
            for class in [
                Class::Transient,
                Class::Serde,
                Class::Conflict,
                Class::Throttled { retry_after: None },
            ] {
                assert!(delay(class, attempt, HIGH) <= CAP, "{class:?} {attempt}");
            }
        }
        assert!(delay(Class::Transient, 1000, LOW) >= CAP / 2);
    }

    #[test]
    fn conflicts_stay_quick() {
        assert!(delay(Class::Conflict, 0, HIGH) <= Duration::from_millis(50));
        assert!(delay(Class::Conflict, 100, HIGH) <= CONFLICT_CAP);
    }

    #[test]
    fn throttled_honours_retry_after() {
        let after = Duration::from_secs(7);
        for attempt in 0..5 {
            for j in [LOW, 0.5, HIGH] {
                let d = delay(
                    Class::Throttled {
                        retry_after: Some(after),
                    },
                    attempt,
                    j,
                );
                assert!(d >= after, "{d:?}");
                assert!(d <= after + BASE * 2u32.pow(attempt) / 4 + Duration::from_millis(1));
            }
        }
        // A Retry-After longer than the cap is still honoured.
        let long = Duration::from_secs(600);
        assert!(
            delay(
                Class::Throttled {
                    retry_after: Some(long)
                },
                0,
                HIGH
            ) >= long
        );
    }

    #[test]
    fn throttled_without_retry_after_backs_off_longer_than_transient() {
        for attempt in 0..6 {
            assert!(
                delay(Class::Throttled { retry_after: None }, attempt, LOW)
                    > delay(Class::Transient, attempt, HIGH)
            );
        }
    }

    #[test]
    fn permanent_is_a_long_requeue() {
        assert_eq!(delay(Class::Permanent, 0, LOW), PERMANENT);
        assert!(PERMANENT >= Duration::from_secs(600));
    }

    #[test]
    fn backoff_counts_per_object_and_resets_on_success() {
        let b = Backoff::default();
        assert_eq!(b.failed("AgentJob", "ns", "a"), 0);
        assert_eq!(b.failed("AgentJob", "ns", "a"), 1);
        assert_eq!(b.failed("AgentJob", "ns", "b"), 0);
        assert_eq!(b.failed("AgentSession", "ns", "a"), 0);
        assert_eq!(b.failed("AgentJob", "ns", "a"), 2);
        b.succeeded("AgentJob", "ns", "a");
        assert_eq!(b.failed("AgentJob", "ns", "a"), 0);
        b.succeeded("AgentJob", "ns", "a");
        b.succeeded("AgentJob", "ns", "b");
        b.succeeded("AgentSession", "ns", "a");
        assert!(b.is_empty());
        b.failed("AgentJob", "ns", "gone");
        b.failed("AgentJob", "ns", "here");
        b.retain(|_, _, name| name == "here");
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn a_broken_watch_is_retried_within_a_second_and_starts_over_after_calm() {
        let mut b = WatchBackoff::new();
        let t0 = std::time::Instant::now();
        let delays: Vec<Duration> = (0..8)
            .map(|i| b.next_at(t0 + Duration::from_millis(i * 500), HIGH))
            .collect();
        assert!(
            delays[0] <= Duration::from_millis(100),
            "first retry {:?}",
            delays[0]
        );
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "grows: {delays:?}");
        assert!(
            delays.iter().all(|d| *d <= WATCH_CAP),
            "capped at 1 s: {delays:?}"
        );
        assert!(
            delays[7] > Duration::from_millis(900),
            "reaches the cap: {delays:?}"
        );
        // Calm for longer than WATCH_CALM: the next failure starts over.
        let again = b.next_at(t0 + Duration::from_secs(30), HIGH);
        assert!(again <= Duration::from_millis(100), "after calm {again:?}");
        // reset() (a watch event arrived) starts over too.
        b.next_at(t0 + Duration::from_secs(31), HIGH);
        kube::runtime::utils::Backoff::reset(&mut b);
        assert!(b.next_at(t0 + Duration::from_secs(32), LOW) <= Duration::from_millis(100));
    }
}
