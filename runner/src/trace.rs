//! The runner's spans: the agent's run and its report to the gateway, under the job's span (TRACEPARENT, set by
//! the operator when it is configured with an OTLP endpoint for agent Pods). Off without OTEL_* variables.

use agent_telemetry::{TRACE_TARGET, TRACEPARENT_ENV, Telemetry, TraceParent};

/// The exporter the environment asks for; a bad configuration is logged and tracing stays off (the agent's
/// work matters more than its trace).
pub fn telemetry() -> Telemetry {
    Telemetry::from_env("agent-runner").unwrap_or_else(|e| {
        eprintln!("agent-runner: tracing is off: {e}");
        Telemetry::from_env_off()
    })
}

/// The job's span, which the runner's spans continue.
fn job_span() -> Option<TraceParent> {
    std::env::var(TRACEPARENT_ENV)
        .ok()
        .and_then(|v| TraceParent::parse(&v))
}

/// The span of the agent's whole run (preparing, running, reporting).
pub fn run_span(job: &str, session: &str) -> tracing::Span {
    let span = tracing::info_span!(target: TRACE_TARGET, "agent run", job, session,
        otel.status_code = tracing::field::Empty, error = tracing::field::Empty);
    if let Some(parent) = job_span() {
        agent_telemetry::live::continue_from(&span, parent);
    }
    span
}

/// The span of one report to the gateway (inside the run's span).
pub fn report_span(what: &'static str) -> tracing::Span {
    tracing::info_span!(target: TRACE_TARGET, "report", otel.name = what,
        otel.status_code = tracing::field::Empty)
}
