//! Prometheus metrics of the operator, served on /metrics.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub controller: &'static str,
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabel {
    pub resource: &'static str,
    pub verb: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UsageLabel {
    pub namespace: String,
    /// The sessions' blueprint ("" for the operator's default Pod template).
    pub blueprint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabel {
    pub namespace: String,
    pub blueprint: String,
    /// input, output, cache_read or cache_write.
    pub kind: &'static str,
}

#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    reconciles: Family<ControllerLabel, Counter>,
    errors: Family<ErrorLabel, Counter>,
    durations: Family<ControllerLabel, Histogram>,
    pub jobs_by_phase: Family<PhaseLabel, Gauge>,
    pub writes: Family<WriteLabel, Counter>,
    pub leader: Gauge,
    pub callbacks_enqueued: Counter,
    pub callbacks_delivered: Counter,
    pub callbacks_dropped: Counter,
    pub callback_queue_depth: Gauge,
    pub callback_latency: Histogram,
    pub usage_tokens: Family<TokenLabel, Gauge>,
    pub usage_cost: Family<UsageLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("agent_operator");
        let reconciles = Family::<ControllerLabel, Counter>::default();
        let errors = Family::<ErrorLabel, Counter>::default();
        let durations = Family::<ControllerLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let jobs_by_phase = Family::<PhaseLabel, Gauge>::default();
        let writes = Family::<WriteLabel, Counter>::default();
        let leader = Gauge::default();
        let callbacks_enqueued = Counter::default();
        let callbacks_delivered = Counter::default();
        let callbacks_dropped = Counter::default();
        let callback_queue_depth = Gauge::default();
        let callback_latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let usage_tokens = Family::<TokenLabel, Gauge>::default();
        let usage_cost = Family::<UsageLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "usage_tokens",
            "Tokens used by the jobs of the sessions that exist, by namespace, blueprint and kind (from each \
             session's status.usage: a job counts once, whatever restarts)",
            usage_tokens.clone(),
        );
        registry.register(
            "usage_cost_usd",
            "Cost in US dollars of the jobs of the sessions that exist, by namespace and blueprint (from each \
             session's status.usage)",
            usage_cost.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciles run, by controller",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by controller and error kind",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            durations.clone(),
        );
        registry.register(
            "jobs",
            "AgentJobs by phase (Unknown: no status yet)",
            jobs_by_phase.clone(),
        );
        registry.register(
            "api_writes",
            "Writes sent to the API server, by resource and verb",
            writes.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        registry.register(
            "callbacks_enqueued",
            "Child callbacks added to a parent's queue",
            callbacks_enqueued.clone(),
        );
        registry.register(
            "callbacks_delivered",
            "Child callbacks delivered in a parent Resume job",
            callbacks_delivered.clone(),
        );
        registry.register(
            "callbacks_dropped",
            "Child callbacks dropped (parent missing)",
            callbacks_dropped.clone(),
        );
        registry.register(
            "callback_queue_depth",
            "Callbacks waiting in all parents' queues",
            callback_queue_depth.clone(),
        );
        registry.register(
            "callback_latency_seconds",
            "From a child job's end to the parent's Resume job that delivers it",
            callback_latency.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            reconciles,
            errors,
            durations,
            jobs_by_phase,
            writes,
            leader,
            callbacks_enqueued,
            callbacks_delivered,
            callbacks_dropped,
            callback_queue_depth,
            callback_latency,
            usage_tokens,
            usage_cost,
        }
    }
}

impl Metrics {
    /// Counts a reconcile and observes its duration when the returned guard drops.
    pub fn reconcile(&self, controller: &'static str) -> ReconcileTimer {
        self.reconciles
            .get_or_create(&ControllerLabel { controller })
            .inc();
        ReconcileTimer {
            start: Instant::now(),
            histogram: self
                .durations
                .get_or_create(&ControllerLabel { controller })
                .clone(),
        }
    }

    pub fn error(&self, controller: &'static str, error: &'static str) {
        self.errors
            .get_or_create(&ErrorLabel { controller, error })
            .inc();
    }

    pub fn write(&self, resource: &'static str, verb: &'static str) {
        self.writes
            .get_or_create(&WriteLabel { resource, verb })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("metrics encode to a String");
        out
    }
}

pub struct ReconcileTimer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}
