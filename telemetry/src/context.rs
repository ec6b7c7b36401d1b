//! W3C trace context (`traceparent`) as kept on AgentJobs and handed to agent Pods.
//!
//! A job's annotation names the span the job continues: the gateway's tool call that started it, the job of the
//! parent session for a child applied with `parentSessionName`, or the session's previous job for a callback
//! delivery. The job's own span id is derived from its UID, so the operator can emit the job's span when it ends
//! (after any number of restarts) and every child, Pod and callback already points at that id. A root job has no
//! annotation: its trace id is derived from its UID as well.

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use sha2::{Digest, Sha256};

/// On an AgentJob: the W3C `traceparent` of the span the job continues (absent on a root job).
pub const TRACEPARENT_ANNOTATION: &str = "agentorchestrator.dev/traceparent";
/// In an agent Pod: the job's own span, which the runner's spans continue (the W3C name).
pub const TRACEPARENT_ENV: &str = "TRACEPARENT";

/// A sampled span of a trace, as a W3C `traceparent` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
}

impl TraceParent {
    /// Reads `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`; anything else (another version, an all-zero id)
    /// is `None`, which makes the job a root of its own trace rather than failing it.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let mut parts = value.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || version != "00" || flags.len() != 2 {
            return None;
        }
        if trace.len() != 32 || span.len() != 16 {
            return None;
        }
        let trace_id = TraceId::from_hex(trace).ok()?;
        let span_id = SpanId::from_hex(span).ok()?;
        (trace_id != TraceId::INVALID && span_id != SpanId::INVALID)
            .then_some(TraceParent { trace_id, span_id })
    }

    /// The `traceparent` header value (always sampled: whether to keep a trace is the exporter's sampler's choice).
    pub fn header(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }

    /// The span of the job with `uid`, in the trace its annotation names (or, without one, a trace of its own).
    pub fn of_job(uid: &str, annotation: Option<&str>) -> TraceParent {
        let trace_id = annotation
            .and_then(TraceParent::parse)
            .map(|p| p.trace_id)
            .unwrap_or_else(|| trace_id_of(uid));
        TraceParent {
            trace_id,
            span_id: span_id_of(uid),
        }
    }

    pub fn span_context(&self) -> SpanContext {
        SpanContext::new(
            self.trace_id,
            self.span_id,
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        )
    }

    pub fn from_span_context(cx: &SpanContext) -> Option<TraceParent> {
        cx.is_valid().then(|| TraceParent {
            trace_id: cx.trace_id(),
            span_id: cx.span_id(),
        })
    }
}

fn digest(domain: &str, uid: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(domain.as_bytes());
    h.update(uid.as_bytes());
    h.finalize().into()
}

/// The span id of the object with `uid`: the same in every process and after every restart.
pub fn span_id_of(uid: &str) -> SpanId {
    let d = digest("span:", uid);
    let mut id = [0u8; 8];
    id.copy_from_slice(&d[..8]);
    if id == [0; 8] {
        id[7] = 1;
    }
    SpanId::from_bytes(id)
}

/// The trace id of a tree whose root job has `uid`.
pub fn trace_id_of(uid: &str) -> TraceId {
    let d = digest("trace:", uid);
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    if id == [0; 16] {
        id[15] = 1;
    }
    TraceId::from_bytes(id)
}

/// A span id that names one step of a job (its waiting, its Pod starting, a callback it carries).
pub fn span_id_of_step(uid: &str, step: &str) -> SpanId {
    span_id_of(&format!("{uid}/{step}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_writes() {
        let p = TraceParent::of_job("uid-1", None);
        assert_eq!(TraceParent::parse(&p.header()), Some(p));
        assert!(p.header().starts_with("00-") && p.header().ends_with("-01"));
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "00-abc-def-01",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
            "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
        assert!(
            TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").is_some()
        );
    }

    #[test]
    fn a_child_keeps_the_trace_of_its_annotation_and_a_span_of_its_own() {
        let root = TraceParent::of_job("root-uid", None);
        let child = TraceParent::of_job("child-uid", Some(&root.header()));
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
        assert_eq!(child.span_id, span_id_of("child-uid"));
        // Derived ids are stable: another process (or the operator after a restart) computes the same.
        assert_eq!(TraceParent::of_job("root-uid", None), root);
        assert_ne!(TraceParent::of_job("other", None).trace_id, root.trace_id);
    }
}
