//! The cost of tracing: the 500-job burst and the paced callback latency, each run with the operator's tracing off
//! (no OTEL_* variables) and on (exporting to a real Jaeger), in namespaces of their own on the same cluster.
//! The target is the traced figure within 10% of the untraced one. That the traced runs really exported is checked
//! from Jaeger (the operator's spans of the burst are counted).
//!
//! Each measurement runs four times, in the order off, on, on, off, and each side's figure is the mean of its two
//! runs (the latency's percentiles are taken over both runs' samples). A cluster gets slower as it fills (etcd grows,
//! the namespaces of earlier runs are still being deleted): run once each, whichever came second would pay for it.

use std::time::Duration;

use kube::Client;

use super::callbacks::{self, Latency, Pace};
use super::lifecycle::{self, Outcome};
use crate::jaeger::Jaeger;
use crate::operator::Options;

/// One side (off or on) of the comparison: the means of its two runs.
pub struct Side {
    /// Every job of the burst Succeeded, from the first create.
    pub burst_done: Duration,
    /// Every Pod of the burst exists.
    pub burst_pods: Duration,
    /// The higher of the two runs' peaks.
    pub peak_rss_mib: f64,
    /// Both runs' samples.
    pub latency: Latency,
}

impl Side {
    fn of(bursts: [Outcome; 2], latencies: [Latency; 2]) -> Side {
        let mean = |f: fn(&Outcome) -> Duration| (f(&bursts[0]) + f(&bursts[1])) / 2;
        let [a, b] = latencies;
        Side {
            burst_done: mean(|o| o.done),
            burst_pods: mean(|o| o.pods),
            peak_rss_mib: bursts[0].peak_rss_mib.max(bursts[1].peak_rss_mib),
            latency: Latency {
                samples: a.samples.into_iter().chain(b.samples).collect(),
            },
        }
    }
}

pub struct Figures {
    pub off: Side,
    pub on: Side,
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
    let options = |on: bool| {
        if on {
            traced.clone()
        } else {
            Options::default()
        }
    };
    let label = |on: bool| if on { "on" } else { "off" };
    let order = [false, true, true, false];
    let mut bursts: [Vec<Outcome>; 2] = Default::default();
    for (round, on) in order.into_iter().enumerate() {
        let ns = format!("bench-trace-{}-{round}", label(on));
        bursts[on as usize].push(lifecycle::lifecycle_in(client, &ns, options(on)).await);
    }
    let mut latencies: [Vec<Latency>; 2] = Default::default();
    for (round, on) in order.into_iter().enumerate() {
        let ns = format!("bench-trace-cb-{}-{round}", label(on));
        let latency = callbacks::latency_in(client, &ns, Pace::Every(PACE), options(on)).await;
        latencies[on as usize].push(latency);
    }
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
    let [bursts_off, bursts_on] =
        bursts.map(|v| <[Outcome; 2]>::try_from(v).ok().expect("two runs"));
    let [latencies_off, latencies_on] =
        latencies.map(|v| <[Latency; 2]>::try_from(v).ok().expect("two runs"));
    Figures {
        off: Side::of(bursts_off, latencies_off),
        on: Side::of(bursts_on, latencies_on),
        exported_spans,
    }
}
