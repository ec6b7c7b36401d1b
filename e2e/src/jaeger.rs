//! A real Jaeger (v1's all-in-one, built from the Go module pinned in e2e/cluster/jaeger: `make jaeger`) for the
//! tests and benchmarks of tracing: in-memory storage, an OTLP/HTTP receiver and the query API, every port on
//! loopback and picked free (so runs side by side do not collide), stopped when dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::gateway::http;
use crate::{eventually, local_bin, unique};

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One Jaeger process. Killed when dropped.
pub struct Jaeger {
    child: Child,
    /// OTLP over HTTP (what `OTEL_EXPORTER_OTLP_ENDPOINT` names).
    pub otlp: SocketAddr,
    /// The query API (`/api/traces/...`).
    pub query: SocketAddr,
    pub log: PathBuf,
}

/// A loopback TCP port nobody listens on now (the kernel's pick; Jaeger binds it a moment later).
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// A loopback UDP port nobody listens on now.
fn free_udp_port() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free loopback UDP port")
}

/// The all-in-one's flags: OTLP on, memory storage, and every server it starts (collector, query, admin, the embedded
/// agent's UDP and HTTP servers) moved off its fixed default port onto a free loopback one.
fn args(otlp: SocketAddr, query: SocketAddr) -> Vec<String> {
    let collector_grpc = free_port();
    let tcp = [
        ("collector.otlp.http.host-port", otlp),
        ("query.http-server.host-port", query),
        ("collector.otlp.grpc.host-port", free_port()),
        ("collector.grpc-server.host-port", collector_grpc),
        ("collector.http-server.host-port", free_port()),
        ("query.grpc-server.host-port", free_port()),
        ("admin.http.host-port", free_port()),
        ("http-server.host-port", free_port()),
        // The embedded agent reports to the collector: to its moved gRPC port.
        ("reporter.grpc.host-port", collector_grpc),
    ];
    let udp = [
        "processor.jaeger-compact.server-host-port",
        "processor.jaeger-binary.server-host-port",
        "processor.zipkin-compact.server-host-port",
    ];
    let mut args = vec![
        "--collector.otlp.enabled=true".to_string(),
        "--memory.max-traces=100000".to_string(),
        "--log-level=warn".to_string(),
    ];
    args.extend(tcp.iter().map(|(flag, addr)| format!("--{flag}={addr}")));
    args.extend(
        udp.iter()
            .map(|flag| format!("--{flag}={}", free_udp_port())),
    );
    args
}

impl Jaeger {
    /// Starts Jaeger and returns once its query API answers and its OTLP receiver accepts connections.
    pub async fn start() -> Jaeger {
        let bin = local_bin("jaeger");
        assert!(
            bin.exists(),
            "no Jaeger at {}: run `make jaeger` (builds it from e2e/cluster/jaeger)",
            bin.display()
        );
        let (otlp, query) = (free_port(), free_port());
        let dir = std::env::temp_dir().join(unique("jaeger"));
        std::fs::create_dir_all(&dir).expect("jaeger folder");
        let log = dir.join("jaeger.log");
        let log_file = std::fs::File::create(&log).expect("jaeger log");
        let child = Command::new(&bin)
            .args(args(otlp, query))
            .env("SPAN_STORAGE_TYPE", "memory")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut jaeger = Jaeger {
            child,
            otlp,
            query,
            log,
        };
        let what = format!(
            "Jaeger's query API and OTLP receiver (log: {})",
            jaeger.log.display()
        );
        eventually(&what, START_TIMEOUT, || {
            let exited = jaeger.child.try_wait().ok().flatten();
            let log = jaeger.log.clone();
            async move {
                if let Some(status) = exited {
                    panic!(
                        "Jaeger exited ({status}):\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                // Connect first: `http` treats a refused connection as a failure, and Jaeger is still starting.
                TcpStream::connect(otlp).await.ok()?;
                TcpStream::connect(query).await.ok()?;
                (http(query, "GET", "/api/services", &[], b"").await.0 == 200).then_some(())
            }
        })
        .await;
        jaeger
    }

    /// `OTEL_EXPORTER_OTLP_ENDPOINT` for processes that export here.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.otlp)
    }

    /// The OTEL_* environment of a process named `service` that exports here, flushing spans every 200 ms.
    pub fn env(&self, service: &str) -> Vec<(String, String)> {
        otlp_env(&self.endpoint(), service)
    }

    /// The spans of trace `trace_id` (32 hex digits) as Jaeger's query API returns them, `None` until it has it.
    pub async fn trace(&self, trace_id: &str) -> Option<Trace> {
        let (code, body) = http(
            self.query,
            "GET",
            &format!("/api/traces/{trace_id}"),
            &[],
            b"",
        )
        .await;
        if code != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&body).ok()?;
        let trace = v["data"].as_array()?.first()?.clone();
        Some(Trace::from_json(&trace))
    }

    /// The trace ids Jaeger holds for `service`.
    pub async fn trace_ids(&self, service: &str) -> Vec<String> {
        let (code, body) = http(
            self.query,
            "GET",
            &format!("/api/traces?service={service}&limit=1000&lookback=1h"),
            &[],
            b"",
        )
        .await;
        if code != 200 {
            return Vec::new();
        }
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]
            .as_array()
            .map(|traces| {
                traces
                    .iter()
                    .filter_map(|t| t["traceID"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The number of spans Jaeger holds for `service` (over its traces, as the query API lists them).
    pub async fn span_count(&self, service: &str) -> usize {
        let (code, body) = http(
            self.query,
            "GET",
            &format!("/api/traces?service={service}&limit=100000&lookback=1h"),
            &[],
            b"",
        )
        .await;
        if code != 200 {
            return 0;
        }
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]
            .as_array()
            .map(|traces| {
                traces
                    .iter()
                    .map(|t| t["spans"].as_array().map_or(0, Vec::len))
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// One span as Jaeger shows it.
#[derive(Clone, Debug)]
pub struct Span {
    pub span_id: String,
    pub name: String,
    pub service: String,
    /// CHILD_OF reference (the parent), if any.
    pub parent: Option<String>,
    /// FOLLOWS_FROM references (OpenTelemetry span links).
    pub links: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

/// The spans of one trace, by span id.
#[derive(Clone, Debug)]
pub struct Trace {
    pub trace_id: String,
    pub spans: BTreeMap<String, Span>,
}

impl Trace {
    fn from_json(trace: &Value) -> Trace {
        let services: BTreeMap<String, String> = trace["processes"]
            .as_object()
            .map(|p| {
                p.iter()
                    .map(|(k, v)| (k.clone(), v["serviceName"].as_str().unwrap_or("").into()))
                    .collect()
            })
            .unwrap_or_default();
        let spans = trace["spans"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let refs = s["references"].as_array().cloned().unwrap_or_default();
                let of = |kind: &str| -> Vec<String> {
                    refs.iter()
                        .filter(|r| r["refType"] == kind)
                        .filter_map(|r| r["spanID"].as_str().map(String::from))
                        .collect()
                };
                let tags = s["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| {
                        let value = match &t["value"] {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        Some((t["key"].as_str()?.to_string(), value))
                    })
                    .collect();
                let span = Span {
                    span_id: s["spanID"].as_str().unwrap_or("").into(),
                    name: s["operationName"].as_str().unwrap_or("").into(),
                    service: services
                        .get(s["processID"].as_str().unwrap_or(""))
                        .cloned()
                        .unwrap_or_default(),
                    parent: of("CHILD_OF").into_iter().next(),
                    links: of("FOLLOWS_FROM"),
                    tags,
                };
                (span.span_id.clone(), span)
            })
            .collect();
        Trace {
            trace_id: trace["traceID"].as_str().unwrap_or("").into(),
            spans,
        }
    }

    /// Whether `ancestor` is above `span` (following parents).
    pub fn is_under(&self, span: &str, ancestor: &str) -> bool {
        let mut at = self.spans.get(span).and_then(|s| s.parent.clone());
        let mut hops = 0;
        while let Some(id) = at {
            if id == ancestor {
                return true;
            }
            hops += 1;
            if hops > 100 {
                return false;
            }
            at = self.spans.get(&id).and_then(|s| s.parent.clone());
        }
        false
    }

    pub fn services(&self) -> std::collections::BTreeSet<String> {
        self.spans.values().map(|s| s.service.clone()).collect()
    }
}

/// The OTEL_* environment of a process named `service` that exports to `endpoint`, flushing spans every 200 ms.
pub fn otlp_env(endpoint: &str, service: &str) -> Vec<(String, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.into()),
        ("OTEL_SERVICE_NAME".into(), service.into()),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "200".into()),
    ]
}
