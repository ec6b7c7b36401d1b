//! OpenTelemetry for the operator, the gateway and the runner: one trace per agent tree.
//!
//! - [`setup`]: the OTLP exporter, configured by the standard `OTEL_*` environment variables and off when they are
//!   unset (no exporter, no background thread).
//! - [`context`]: the W3C trace context a job keeps in its `agentorchestrator.dev/traceparent` annotation, and the
//!   span ids derived from object UIDs, so a span can be emitted long after the fact, by another process, with the
//!   id its children already point to.
//! - [`recorded`]: spans emitted from recorded times (status timestamps) rather than held open in memory, since the
//!   operator may restart between a job's creation and its end.

pub mod context;
pub mod live;
pub mod recorded;
pub mod setup;

pub use context::{TRACEPARENT_ANNOTATION, TRACEPARENT_ENV, TraceParent};
pub use recorded::{Recorded, emit};
pub use setup::enabled;
pub use setup::{TRACE_TARGET, Telemetry};
