//! Spans held by the code that does the work (a tool call, the agent's run): `tracing` spans of
//! [`crate::TRACE_TARGET`] whose parent is a recorded trace context.

use opentelemetry::trace::TraceContextExt as _;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::context::TraceParent;

/// Makes `span` a child of `parent` (no-op when tracing is off).
pub fn continue_from(span: &tracing::Span, parent: TraceParent) {
    if crate::enabled() {
        let cx = opentelemetry::Context::new().with_remote_span_context(parent.span_context());
        let _ = span.set_parent(cx);
    }
}

/// The OpenTelemetry span `span` stands for, when tracing is on and the span is exported.
pub fn context_of(span: &tracing::Span) -> Option<TraceParent> {
    if !crate::enabled() {
        return None;
    }
    TraceParent::from_span_context(span.context().span().span_context())
}
