//! The prompt that delivers child callbacks to a parent, in the message format of the original system.

use crds::{CallbackOutcome, QueuedCallback};

fn body(entry: &QueuedCallback) -> String {
    match entry.outcome {
        CallbackOutcome::Succeeded => entry.result.clone().unwrap_or_default(),
        CallbackOutcome::Failed | CallbackOutcome::Stopped => {
            let what = if entry.outcome == CallbackOutcome::Stopped {
                "was stopped"
            } else {
                "failed"
            };
            let detail = entry
                .error
                .clone()
                .unwrap_or_else(|| format!("the child session {what}"));
            format!("Error: Child session failed.\n\n{detail}")
        }
    }
}

/// One callback: the single-child form; several: the aggregated form, in queue (arrival) order.
pub fn message(entries: &[QueuedCallback]) -> String {
    match entries {
        [] => String::new(),
        [one] => format!(
            "The child agent session \"{}\" has completed.\n\n## Child Result\n\n{}\n\nPlease continue with the orchestration based on this result.",
            one.child_session,
            body(one)
        ),
        many => {
            let blocks: Vec<String> = many
                .iter()
                .map(|e| format!("### Child: {}\n\n{}", e.child_session, body(e)))
                .collect();
            format!(
                "Multiple child agent sessions have completed.\n\n{}\n\nPlease continue with the orchestration based on these results.",
                blocks.join("\n\n---\n\n")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn entry(
        child: &str,
        outcome: CallbackOutcome,
        result: Option<&str>,
        error: Option<&str>,
    ) -> QueuedCallback {
        QueuedCallback {
            child_session: child.into(),
            child_job: format!("{child}-job"),
            child_job_uid: format!("u-{child}"),
            outcome,
            result: result.map(Into::into),
            error: error.map(Into::into),
            enqueue_time: Time("2026-01-01T00:00:00Z".parse().unwrap()),
        }
    }

    #[test]
    fn single_child_form() {
        let m = message(&[entry("c1", CallbackOutcome::Succeeded, Some("42"), None)]);
        assert_eq!(
            m,
            "The child agent session \"c1\" has completed.\n\n## Child Result\n\n42\n\nPlease continue with the orchestration based on this result."
        );
    }

    #[test]
    fn aggregated_form_keeps_arrival_order() {
        let m = message(&[
            entry("c2", CallbackOutcome::Succeeded, Some("two"), None),
            entry(
                "c1",
                CallbackOutcome::Failed,
                None,
                Some("agent exited with code 1"),
            ),
        ]);
        assert_eq!(
            m,
            "Multiple child agent sessions have completed.\n\n### Child: c2\n\ntwo\n\n---\n\n### Child: c1\n\nError: Child session failed.\n\nagent exited with code 1\n\nPlease continue with the orchestration based on these results."
        );
    }

    #[test]
    fn a_stopped_child_is_reported_as_a_failure() {
        let m = message(&[entry("c1", CallbackOutcome::Stopped, None, None)]);
        assert!(
            m.contains("Error: Child session failed.\n\nthe child session was stopped"),
            "{m}"
        );
    }
}
