//! Budget refusals: no new job starts in a tree whose spending passed a budget set on it (a Start job's
//! `budget`, recorded on its session, covers that session and everything below it). The gateway checks the chain
//! of sessions from the one the job would join up to the root, in its store; the operator stops the jobs that
//! already run (reason BudgetExceeded).

use crds::AgentSession;
use std::collections::HashSet;
use std::sync::Arc;

use crate::error::ToolError;

/// The bound passed by the tree that a new job under (or on) `session` would join, if any. `lookup` reads a
/// session from the store.
pub fn passed(
    session: Option<Arc<AgentSession>>,
    lookup: impl Fn(&str) -> Option<Arc<AgentSession>>,
) -> Option<(String, String)> {
    let mut seen = HashSet::new();
    let mut at = session;
    while let Some(s) = at {
        let name = s.metadata.name.clone().unwrap_or_default();
        if !seen.insert(name.clone()) {
            break;
        }
        let status = s.status.as_ref();
        let recorded = status.and_then(|st| st.budget_exceeded.clone());
        let computed = || {
            let budget = s.spec.budget.as_ref()?;
            budget.exceeded_by(status?.tree_usage.as_ref()?)
        };
        if let Some(bound) = recorded.or_else(computed) {
            return Some((name, bound));
        }
        let parent = status
            .and_then(|st| st.parent_session_name.as_deref())
            .or(s.spec.parent_session_name.as_deref());
        at = parent.and_then(&lookup);
    }
    None
}

/// The tool error for a job refused by a budget.
pub fn refusal(root: &str, bound: &str) -> ToolError {
    ToolError::Refused(format!(
        "the tree of session '{root}' passed its budget: {bound}. No more agent sessions start in it; its running \
         jobs are stopped with reason BudgetExceeded."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(
        name: &str,
        parent: Option<&str>,
        max: Option<&str>,
        spent: &str,
    ) -> Arc<AgentSession> {
        let mut status = serde_json::json!({"treeUsage": {"costUSD": spent}});
        if let Some(p) = parent {
            status["parentSessionName"] = p.into();
        }
        let mut spec = serde_json::json!({});
        if let Some(m) = max {
            spec["budget"] = serde_json::json!({"maxCostUSD": m});
        }
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "agentorchestrator.dev/v1alpha1", "kind": "AgentSession",
                "metadata": {"name": name}, "spec": spec, "status": status,
            }))
            .unwrap(),
        )
    }

    #[test]
    fn a_budget_anywhere_above_refuses() {
        let root = session("root", None, Some("0.05"), "0.06");
        let mid = session("mid", Some("root"), None, "0.06");
        let lookup = |n: &str| (n == "root").then(|| root.clone());
        assert_eq!(
            passed(Some(mid.clone()), lookup),
            Some(("root".into(), "maxCostUSD 0.05 (spent 0.06)".into()))
        );
        let within = session("root", None, Some("0.05"), "0.05");
        assert_eq!(passed(Some(mid), |_| Some(within.clone())), None);
        let unbounded = session("free", None, None, "9");
        assert_eq!(passed(Some(unbounded), |_| None), None);
        assert!(
            refusal("root", "maxCostUSD 0.05")
                .to_string()
                .contains("budget")
        );
    }
}
