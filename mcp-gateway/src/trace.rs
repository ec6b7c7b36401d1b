//! The gateway's part of a tree's trace: each tool call is a span under the caller's job span, and a job the call
//! creates continues that span (its `agentorchestrator.dev/traceparent` annotation). With tracing off the created
//! job still continues the caller's job span, so a tree stays one trace when only the operator exports.

use agent_telemetry::{TRACE_TARGET, TraceParent};

use crate::auth::Caller;
use crate::store::Stores;

tokio::task_local! {
    /// The span that jobs created by the current tool call continue.
    static CHILD_PARENT: Option<TraceParent>;
}

/// The span of the job whose Pod is calling (verified callers only).
pub fn caller_span(stores: &Stores, caller: Option<&Caller>) -> Option<TraceParent> {
    let caller = caller?;
    let job = stores.job(&caller.namespace, caller.job.as_deref()?)?;
    let uid = job.metadata.uid.as_deref()?;
    let annotation = job
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(agent_telemetry::TRACEPARENT_ANNOTATION));
    Some(TraceParent::of_job(uid, annotation.map(String::as_str)))
}

/// The span of one tool call, under the caller's job span.
pub fn tool_span(tool: &'static str, parent: Option<TraceParent>) -> tracing::Span {
    let span = tracing::info_span!(target: TRACE_TARGET, "tool call", otel.name = tool, tool,
        otel.status_code = tracing::field::Empty, error = tracing::field::Empty);
    if let Some(parent) = parent {
        agent_telemetry::live::continue_from(&span, parent);
    }
    span
}

/// Runs `f` (inside the tool call's span) with the span its jobs continue: the tool call's own when it is
/// exported, else the caller's job span.
pub async fn scope<F: Future>(
    span: &tracing::Span,
    caller: Option<TraceParent>,
    f: F,
) -> F::Output {
    let parent = agent_telemetry::live::context_of(span).or(caller);
    CHILD_PARENT.scope(parent, f).await
}

/// The `traceparent` annotation of a job created now (`None` outside a tool call or for a caller without a job).
pub fn child_traceparent() -> Option<String> {
    CHILD_PARENT
        .try_with(|p| p.map(|p| p.header()))
        .ok()
        .flatten()
}
