//! Prometheus metrics of the gateway, served at /metrics: tool calls by tool and outcome, their latency, accepted and
//! refused callers, and result reports.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolOutcome {
    tool: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Tool {
    tool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolReason {
    tool: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Identity {
    /// What the caller is and how it was identified: `token` (an agent Pod's verified token), `person` (a
    /// person's or ServiceAccount's own verified token, each call checked against RBAC) or `header` (trusted,
    /// development mode).
    by: String,
    /// Whether the request named its session in X-Agent-Session-Name.
    header: String,
}

pub struct Metrics {
    registry: Registry,
    tool_calls: Family<ToolOutcome, Counter>,
    tool_latency: Family<Tool, Histogram>,
    refusals: Family<Reason, Counter>,
    tool_refusals: Family<ToolReason, Counter>,
    callers: Family<Identity, Counter>,
    result_reports: Family<Reason, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mcp_gateway");
        let tool_calls = Family::<ToolOutcome, Counter>::default();
        // 1 ms to about 65 s: status reads take microseconds, sync waits take minutes (they land in +Inf).
        let tool_latency = Family::<Tool, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 17))
        });
        let refusals = Family::<Reason, Counter>::default();
        let tool_refusals = Family::<ToolReason, Counter>::default();
        let callers = Family::<Identity, Counter>::default();
        let result_reports = Family::<Reason, Counter>::default();
        registry.register(
            "tool_calls",
            "MCP tool calls by tool and outcome (ok or error)",
            tool_calls.clone(),
        );
        registry.register(
            "tool_call_duration_seconds",
            "Latency of MCP tool calls, waits included",
            tool_latency.clone(),
        );
        registry.register(
            "auth_refusals",
            "Requests refused by caller verification, by reason",
            refusals.clone(),
        );
        registry.register(
            "tool_refusals",
            "Tool calls refused, by tool and reason (outside_reach: the session named exists in another tree; \
             unknown_session: it does not exist; rbac_denied: a person lacks the RBAC right the tool needs; \
             person_callback: a person asked for callback=true)",
            tool_refusals.clone(),
        );
        registry.register(
            "callers",
            "MCP requests accepted by caller verification, by kind of caller and how it was identified (token: an \
             agent Pod's token; person: a person's own token; header: header mode) and whether it sent \
             X-Agent-Session-Name",
            callers.clone(),
        );
        registry.register(
            "result_reports",
            "Result reports of agent runners, by outcome",
            result_reports.clone(),
        );
        Metrics {
            registry,
            tool_calls,
            tool_latency,
            refusals,
            tool_refusals,
            callers,
            result_reports,
        }
    }
}

impl Metrics {
    pub fn tool_call(&self, tool: &str, ok: bool, elapsed: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        self.tool_calls
            .get_or_create(&ToolOutcome {
                tool: tool.into(),
                outcome: outcome.into(),
            })
            .inc();
        self.tool_latency
            .get_or_create(&Tool { tool: tool.into() })
            .observe(elapsed.as_secs_f64());
    }

    pub fn refused(&self, reason: &str) {
        self.refusals
            .get_or_create(&Reason {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn tool_refused(&self, tool: &str, reason: &str) {
        self.tool_refusals
            .get_or_create(&ToolReason {
                tool: tool.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// An accepted request; `by` is Caller::identified_by.
    pub fn caller(&self, by: &str, claimed: bool) {
        self.callers
            .get_or_create(&Identity {
                by: by.into(),
                header: if claimed { "present" } else { "absent" }.into(),
            })
            .inc();
    }

    pub fn result_report(&self, outcome: &str) {
        self.result_reports
            .get_or_create(&Reason {
                reason: outcome.into(),
            })
            .inc();
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_calls_are_counted_by_tool_and_outcome() {
        let m = Metrics::default();
        m.tool_call("get_agent_session_status", true, Duration::from_millis(2));
        m.tool_call("get_agent_session_status", false, Duration::from_millis(2));
        m.refused("missing_token");
        m.caller("token", true);
        m.caller("token", true);
        m.caller("person", false);
        m.tool_refused("stop_agent_session", "outside_reach");
        let text = m.render();
        assert!(
            text.contains(
                r#"mcp_gateway_tool_calls_total{tool="get_agent_session_status",outcome="ok"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("mcp_gateway_tool_call_duration_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains(r#"mcp_gateway_auth_refusals_total{reason="missing_token"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"mcp_gateway_callers_total{by="token",header="present"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"mcp_gateway_callers_total{by="person",header="absent"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"mcp_gateway_tool_refusals_total{tool="stop_agent_session",reason="outside_reach"} 1"#
            ),
            "{text}"
        );
    }
}
