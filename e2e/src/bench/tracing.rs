//! The cost of tracing: the 500-job burst and the paced callback latency, each run with the operator's tracing off
//! (no OTEL_* variables) and on, in namespaces of their own on the same cluster. On, the operator exports either to
//! a real Jaeger or to a receiver that answers every export at once and keeps nothing. The operator's own cost (the
//! target: within 10% of off) is the discarding receiver's figure; Jaeger's adds what the trace store costs when it
//! ingests on the same two cores as everything else, which a cluster would run elsewhere. That the traced runs
//! really exported is checked from Jaeger (the operator's spans of the burst are counted).
//!
//! Each measurement runs in the order off, Jaeger, discard, discard, Jaeger, off, `REPEATS` times, and each side's
//! figure is the mean of its runs (the latency's percentiles are taken over all its runs' samples). A cluster gets
//! slower as it fills (etcd grows, the namespaces of earlier runs are still being deleted): run once each, whichever
//! came last would pay for it. So each run's namespace is also deleted, and gone, before the next run starts: left
//! in place, the burst's two "off" runs (first and last) took 15.9 and 26.2 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kube::Client;

use super::callbacks::{self, Latency, Pace};
use super::lifecycle::{self, Outcome};
use super::remove_namespace;
use crate::jaeger::{Jaeger, otlp_env};
use crate::operator::Options;

/// Where the operator's spans go.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Export {
    Off,
    Jaeger,
    Discard,
}

impl Export {
    pub fn label(self) -> &'static str {
        match self {
            Export::Off => "off",
            Export::Jaeger => "jaeger",
            Export::Discard => "discard",
        }
    }
}

/// One side of the comparison: the means of its runs.
pub struct Side {
    /// Every job of the burst Succeeded, from the first create.
    pub burst_done: Duration,
    /// Every Pod of the burst exists.
    pub burst_pods: Duration,
    /// Each run's time until every job of the burst Succeeded, in the order they ran.
    pub burst_runs: Vec<Duration>,
    /// The operator's CPU time in the burst (from its start): the operator's own cost, which the cluster's noise
    /// (the API server and etcd on the same cores) does not move the way it moves the wall times.
    pub burst_cpu: Duration,
    /// The highest of its runs' peaks.
    pub peak_rss_mib: f64,
    /// All its runs' samples.
    pub latency: Latency,
}

impl Side {
    fn of(bursts: Vec<Outcome>, latencies: Vec<Latency>) -> Side {
        let runs = 2 * REPEATS;
        assert_eq!(
            (bursts.len(), latencies.len()),
            (runs, runs),
            "{runs} runs a side"
        );
        let mean =
            |f: fn(&Outcome) -> Duration| bursts.iter().map(f).sum::<Duration>() / runs as u32;
        Side {
            burst_done: mean(|o| o.done),
            burst_pods: mean(|o| o.pods),
            burst_runs: bursts.iter().map(|o| o.done).collect(),
            burst_cpu: mean(|o| o.operator_cpu),
            peak_rss_mib: bursts.iter().map(|o| o.peak_rss_mib).fold(0.0, f64::max),
            latency: Latency {
                samples: latencies.into_iter().flat_map(|l| l.samples).collect(),
            },
        }
    }
}

pub struct Figures {
    pub off: Side,
    pub jaeger: Side,
    pub discard: Side,
    /// Spans of agent-operator in Jaeger after the traced runs.
    pub exported_spans: usize,
    /// Exports (requests) the discarding receiver answered.
    pub discarded_exports: usize,
}

/// The pace of the latency runs (as `make bench`'s "50 per second").
const PACE: Duration = Duration::from_millis(20);
/// Times the order is run: a burst's wall time moves by up to a half between two runs of the same side on two
/// shared cores, so two runs a side cannot resolve 10%.
pub const REPEATS: usize = 2;
const ORDER: [Export; 6] = [
    Export::Off,
    Export::Jaeger,
    Export::Discard,
    Export::Discard,
    Export::Jaeger,
    Export::Off,
];

/// An OTLP/HTTP receiver on loopback that answers every export with an empty success and keeps nothing but the
/// count of exports; its address for OTEL_EXPORTER_OTLP_ENDPOINT.
async fn discarding_receiver() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let exports = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(
                |axum::extract::State(n): axum::extract::State<Arc<AtomicUsize>>| async move {
                    n.fetch_add(1, Ordering::Relaxed);
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                },
            ),
        )
        .with_state(exports.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the discarding receiver");
    let addr = listener.local_addr().expect("its address");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), exports, server)
}

pub async fn tracing(client: &Client) -> Figures {
    let jaeger = Jaeger::start().await;
    let (discard_endpoint, discarded_exports, discard_server) = discarding_receiver().await;
    let options = |export: Export| match export {
        Export::Off => Options::default(),
        Export::Jaeger => Options {
            env: jaeger.env("agent-operator"),
            ..Default::default()
        },
        Export::Discard => Options {
            env: otlp_env(&discard_endpoint, "agent-operator"),
            ..Default::default()
        },
    };
    let index = |export: Export| export as usize;
    let mut bursts: [Vec<Outcome>; 3] = Default::default();
    for (round, export) in (0..REPEATS).flat_map(|_| ORDER).enumerate() {
        let ns = format!("bench-trace-{}-{round}", export.label());
        bursts[index(export)].push(lifecycle::lifecycle_in(client, &ns, options(export)).await);
        remove_namespace(client, &ns).await;
    }
    let mut latencies: [Vec<Latency>; 3] = Default::default();
    for (round, export) in (0..REPEATS).flat_map(|_| ORDER).enumerate() {
        let ns = format!("bench-trace-cb-{}-{round}", export.label());
        let latency = callbacks::latency_in(client, &ns, Pace::Every(PACE), options(export)).await;
        latencies[index(export)].push(latency);
        remove_namespace(client, &ns).await;
    }
    discard_server.abort();
    let discarded_exports = discarded_exports.load(Ordering::Relaxed);
    assert!(
        discarded_exports > 0,
        "the discarding receiver got no export: its side measured nothing"
    );
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
    let [b_off, b_jaeger, b_discard] = bursts;
    let [l_off, l_jaeger, l_discard] = latencies;
    Figures {
        off: Side::of(b_off, l_off),
        jaeger: Side::of(b_jaeger, l_jaeger),
        discard: Side::of(b_discard, l_discard),
        exported_spans,
        discarded_exports,
    }
}
