//! A run that failed because the model API was unavailable for a while (overloaded, rate-limited, failing with
//! 5xx) ends with exit code 75 (EX_TEMPFAIL) and says so in its error (the termination message): the operator
//! retries such runs with backoff (`backoffLimit`), and leaves every other failure, the agent's own, final.

use agent_stream::ApiError;

use crate::outcome::{Exit, Outcome};

/// The runner's exit code for a temporary model API failure; the operator's domain::attempts reads the same.
pub const EXIT_TEMPORARY: i32 = 75;

/// `outcome` marked temporary when it is a failure and `api_error` (the model API's last refusal) is one that passes.
pub fn classify(outcome: Outcome, api_error: Option<ApiError>) -> Outcome {
    match api_error {
        Some(e) if !outcome.success && e.is_temporary() => {
            let detail = outcome.error.unwrap_or_default();
            Outcome::failed(
                Exit::Code(EXIT_TEMPORARY),
                format!("{}; the job may be retried: {detail}", e.describe()),
                outcome.session_id,
            )
            .with_usage(outcome.usage)
        }
        _ => outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overloaded_api_failure_exits_75_and_says_why() {
        let failed = Outcome::failed(
            Exit::Code(1),
            "API Error: 529 Overloaded".into(),
            Some("s".into()),
        );
        let o = classify(failed, Some(ApiError { status: 529 }));
        assert_eq!(o.exit_code(), 75);
        assert_eq!(
            o.termination_message(),
            "the model API was overloaded (HTTP 529); the job may be retried: API Error: 529 Overloaded"
        );
        assert_eq!(o.session_id.as_deref(), Some("s"));
    }

    #[test]
    fn other_failures_and_successes_are_left_alone() {
        let bad = Outcome::failed(Exit::Code(1), "API Error: 400 bad".into(), None);
        assert_eq!(classify(bad.clone(), Some(ApiError { status: 400 })), bad);
        assert_eq!(classify(bad.clone(), None), bad);
        let ok = Outcome::succeeded("done".into(), None);
        assert_eq!(classify(ok.clone(), Some(ApiError { status: 529 })), ok);
    }
}
