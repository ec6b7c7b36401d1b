//! Spans emitted after the fact from recorded times: a job's span is emitted when the job ends, from its
//! `creationTimestamp`, `status.startTime` and `status.completionTime`, with the id derived from its UID. Nothing is
//! held in memory across reconciles, so an operator restart loses no span that the API server's times describe.

use std::time::SystemTime;

use opentelemetry::trace::{
    Link, Span as _, SpanBuilder, SpanKind, Status, TraceContextExt, Tracer as _,
};
use opentelemetry::{Context, KeyValue};

use crate::context::TraceParent;
use crate::setup::{tracer, with_ids};

/// One span with its own ids, its parent and its times.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub name: String,
    pub ids: TraceParent,
    pub parent: Option<TraceParent>,
    pub start: SystemTime,
    pub end: SystemTime,
    /// Spans this one is about without being under them (a callback delivery's children).
    pub links: Vec<TraceParent>,
    pub attributes: Vec<KeyValue>,
    /// Set for a failed job: the span's status is then Error with this description.
    pub error: Option<String>,
}

impl Recorded {
    pub fn new(
        name: impl Into<String>,
        ids: TraceParent,
        parent: Option<TraceParent>,
        start: SystemTime,
        end: SystemTime,
    ) -> Recorded {
        Recorded {
            name: name.into(),
            ids,
            parent,
            start,
            end: end.max(start),
            links: Vec::new(),
            attributes: Vec::new(),
            error: None,
        }
    }

    pub fn attribute(mut self, key: &'static str, value: impl Into<opentelemetry::Value>) -> Self {
        self.attributes.push(KeyValue::new(key, value));
        self
    }
}

/// Emits the spans (to the batch exporter); does nothing when tracing is off.
pub fn emit(spans: impl IntoIterator<Item = Recorded>) {
    let Some(tracer) = tracer() else { return };
    for r in spans {
        let parent = match r.parent {
            Some(p) => Context::new().with_remote_span_context(p.span_context()),
            None => Context::new(),
        };
        let links = r
            .links
            .iter()
            .map(|l| Link::with_context(l.span_context()))
            .collect();
        let builder = SpanBuilder::from_name(r.name)
            .with_kind(SpanKind::Internal)
            .with_start_time(r.start)
            .with_attributes(r.attributes)
            .with_links(links);
        let mut span = with_ids(r.ids.trace_id, r.ids.span_id, || {
            tracer.build_with_context(builder, &parent)
        });
        if let Some(e) = r.error {
            span.set_status(Status::error(e));
        }
        span.end_with_timestamp(r.end);
    }
}
