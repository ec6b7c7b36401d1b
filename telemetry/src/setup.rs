//! The OTLP exporter, from the standard `OTEL_*` environment variables.
//!
//! Tracing is on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, unless
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. Off, nothing is built: no exporter, no batch thread, and
//! the span helpers return at once. The SDK itself reads the rest: `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_HEADERS` and `_TIMEOUT`.

use std::cell::Cell;
use std::sync::OnceLock;

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracer, SdkTracerProvider};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;

/// The `tracing` target of the spans that go to OpenTelemetry (`tracing::info_span!(target: TRACE_TARGET, ..)`).
/// Only these are exported: the logs' own spans (every reconcile, every request) would be noise in a tree's trace.
pub const TRACE_TARGET: &str = "agent_trace";

static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// The tracer of this process, when tracing is on.
pub(crate) fn tracer() -> Option<&'static SdkTracer> {
    TRACER.get()
}

/// Whether this process exports spans.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// What the environment asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Settings {
    Off,
    /// OTLP over HTTP/protobuf; the SDK reads the endpoint itself.
    Otlp {
        service_name: Option<String>,
    },
}

impl Settings {
    /// Reads the variables through `var` (the process environment in [`Telemetry::from_env`]). An unsupported
    /// protocol is an error that names it, not a silent fall-back.
    pub fn read(var: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(Settings::Off);
        }
        match set("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
            None | Some("otlp") => {}
            Some("none") => return Ok(Settings::Off),
            Some(other) => {
                return Err(format!(
                    "OTEL_TRACES_EXPORTER={other} is not supported: use otlp (or none to turn tracing off)"
                ));
            }
        }
        if set("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
            && set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
        {
            return Ok(Settings::Off);
        }
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(p) = set(name)
                && p.trim() != "http/protobuf"
            {
                return Err(format!(
                    "{name}={p} is not supported: this build exports OTLP over http/protobuf"
                ));
            }
        }
        Ok(Settings::Otlp {
            service_name: set("OTEL_SERVICE_NAME"),
        })
    }
}

/// This process's tracing: the tracer provider when on, to be shut down (flushed) before the process exits.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sets up the exporter the environment asks for; `service` names the process when `OTEL_SERVICE_NAME` does
    /// not.
    pub fn from_env(service: &'static str) -> Result<Telemetry, String> {
        match Settings::read(|name| std::env::var(name).ok())? {
            Settings::Off => Ok(Telemetry { provider: None }),
            Settings::Otlp { service_name } => {
                let exporter = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .build()
                    .map_err(|e| format!("the OTLP exporter: {e}"))?;
                let resource = Resource::builder()
                    .with_service_name(service_name.unwrap_or_else(|| service.to_string()))
                    .build();
                let provider = SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_id_generator(RecordedIds)
                    .with_resource(resource)
                    .build();
                let _ = TRACER.set(provider.tracer(service));
                opentelemetry::global::set_tracer_provider(provider.clone());
                Ok(Telemetry {
                    provider: Some(provider),
                })
            }
        }
    }

    /// Tracing off, whatever the environment says.
    pub fn from_env_off() -> Telemetry {
        Telemetry { provider: None }
    }

    /// Whether spans are exported.
    pub fn is_on(&self) -> bool {
        self.provider.is_some()
    }

    /// The `tracing` layer that turns spans of [`TRACE_TARGET`] into OpenTelemetry spans; `None` when off.
    pub fn layer<S>(&self) -> Option<Box<dyn Layer<S> + Send + Sync + 'static>>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let provider = self.provider.as_ref()?;
        let tracer = TRACER
            .get()
            .cloned()
            .unwrap_or_else(|| provider.tracer("agent-telemetry"));
        Some(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(filter_fn(|meta| meta.target() == TRACE_TARGET))
                .boxed(),
        )
    }

    /// Exports what is still queued and stops the exporter; a process calls it on its way out.
    pub fn shutdown(&self) {
        if let Some(p) = &self.provider
            && let Err(e) = p.shutdown()
        {
            tracing::warn!("stopping the OTLP exporter: {e}");
        }
    }
}

thread_local! {
    static NEXT_IDS: Cell<Option<(TraceId, SpanId)>> = const { Cell::new(None) };
}

/// Builds the next span on this thread with these ids (see [`crate::recorded`]): the SDK otherwise draws every id
/// at random, and a span emitted after the fact must carry the id its children already point to.
pub(crate) fn with_ids<T>(trace: TraceId, span: SpanId, f: impl FnOnce() -> T) -> T {
    NEXT_IDS.with(|c| c.set(Some((trace, span))));
    let out = f();
    NEXT_IDS.with(|c| c.set(None));
    out
}

/// Random ids, except for a span built inside [`with_ids`].
#[derive(Debug)]
struct RecordedIds;

impl IdGenerator for RecordedIds {
    fn new_trace_id(&self) -> TraceId {
        NEXT_IDS
            .with(|c| c.get())
            .map(|(t, _)| t)
            .unwrap_or_else(|| RandomIdGenerator::default().new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        NEXT_IDS
            .with(|c| c.get())
            .map(|(_, s)| s)
            .unwrap_or_else(|| RandomIdGenerator::default().new_span_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<Settings, String> {
        Settings::read(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn off_without_an_endpoint() {
        assert_eq!(read(&[]), Ok(Settings::Off));
        assert_eq!(read(&[("OTEL_SERVICE_NAME", "x")]), Ok(Settings::Off));
        assert_eq!(
            read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]),
            Ok(Settings::Off)
        );
    }

    #[test]
    fn unset_environment_builds_no_exporter() {
        // The test process has no OTEL_* variables (CI runs without them): nothing is built.
        if std::env::vars().any(|(k, _)| k.starts_with("OTEL_")) {
            panic!("this test must run without OTEL_* variables");
        }
        let t = Telemetry::from_env("test").expect("no configuration is valid");
        assert!(!t.is_on());
        assert!(t.layer::<tracing_subscriber::Registry>().is_none());
        assert!(!enabled());
    }

    #[test]
    fn on_with_an_endpoint_and_off_when_disabled() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        assert_eq!(
            read(&[endpoint, ("OTEL_SERVICE_NAME", "op")]),
            Ok(Settings::Otlp {
                service_name: Some("op".into())
            })
        );
        assert_eq!(
            read(&[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://h:4318/v1/traces"
            )]),
            Ok(Settings::Otlp { service_name: None })
        );
        assert_eq!(
            read(&[endpoint, ("OTEL_SDK_DISABLED", "true")]),
            Ok(Settings::Off)
        );
        assert_eq!(
            read(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]),
            Ok(Settings::Off)
        );
    }

    #[test]
    fn unsupported_choices_are_named() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317");
        let e = read(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap_err();
        assert!(e.contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc"), "{e}");
        let e = read(&[endpoint, ("OTEL_TRACES_EXPORTER", "zipkin")]).unwrap_err();
        assert!(e.contains("zipkin"), "{e}");
        assert_eq!(
            read(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]),
            Ok(Settings::Otlp { service_name: None })
        );
    }
}
