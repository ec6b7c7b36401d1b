//! The cost of tracing: the 500-job burst and the paced callback latency, each run with the operator's tracing off
//! (no OTEL_* variables) and on (exporting to a real Jaeger), in namespaces of their own on the same cluster.
//! The target is the traced figure within 10% of the untraced one. That the traced runs really exported is checked
//! from Jaeger (the operator's spans of the burst are counted).

use std::time::Duration;

use kube::Client;

use super::callbacks::{self, Latency, Pace};
use super::lifecycle::{self, Outcome};
use crate::jaeger::Jaeger;
use crate::operator::Options;

pub struct Figures {
    pub burst_off: Outcome,
    pub burst_on: Outcome,
    pub latency_off: Latency,
    pub latency_on: Latency,
    /// Spans of agent-operator in Jaeger after the traced runs.
    pub exported_spans: usize,
}

/// The pace of the latency runs (as `make bench`'s "50 per second").
const PACE: Duration = Duration::from_millis(20);

pub async fn tracing(client: &Client) -> Figures {
    let jaeger = Jaeger::start().await;
    let traced = Options {
        env: jaeger.env("agent-operator"),
        ..Default::default()
    };
    let burst_off = lifecycle::lifecycle_in(client, "bench-trace-off", Options::default()).await;
    let burst_on = lifecycle::lifecycle_in(client, "bench-trace-on", traced.clone()).await;
    let latency_off = callbacks::latency_in(
        client,
        "bench-trace-cb-off",
        Pace::Every(PACE),
        Options::default(),
    )
    .await;
    let latency_on =
        callbacks::latency_in(client, "bench-trace-cb-on", Pace::Every(PACE), traced).await;
    // The exporter flushes every 200 ms (Jaeger::env); the traced operators have stopped (and flushed) by now.
    let wanted = lifecycle::N;
    let exported_spans = crate::eventually(
        "the traced runs' spans in Jaeger",
        Duration::from_secs(60),
        || {
            let jaeger = &jaeger;
            async move {
                let n = jaeger.span_count("agent-operator").await;
                (n >= wanted).then_some(n)
            }
        },
    )
    .await;
    Figures {
        burst_off,
        burst_on,
        latency_off,
        latency_on,
        exported_spans,
    }
}
