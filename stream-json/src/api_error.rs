//! A failed model call, as Claude Code reports it on its result line: the HTTP status of the Anthropic API's
//! answer (`api_error_status`, or the "API Error: 529 ..." text of CLI versions without that field), and whether
//! the failure is one that passes (the API overloaded, rate-limited or failing on its side), so that running the
//! same prompt again later may succeed.

use serde_json::Value;

/// The model API's refusal of the run's last call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status of the API's answer.
    pub status: u16,
}

impl ApiError {
    /// Read from a result line (`v`) that reports an error with text `text`.
    pub(crate) fn of_result(v: &Value, text: &str) -> Option<ApiError> {
        let status = v
            .get("api_error_status")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
            .or_else(|| status_in_text(text))?;
        Some(ApiError { status })
    }

    /// Overloaded (529), rate-limited (429) or failing on the server's side (5xx): not the prompt's fault.
    pub fn is_temporary(self) -> bool {
        self.status == 429 || (500..=599).contains(&self.status)
    }

    /// What the status means, in words.
    pub fn describe(self) -> String {
        let what = match self.status {
            529 => "overloaded",
            429 => "rate-limited",
            500..=599 => "failing",
            _ => "refusing the request",
        };
        format!("the model API was {what} (HTTP {})", self.status)
    }
}

/// "API Error: 529 Overloaded..." -> 529.
fn status_in_text(text: &str) -> Option<u16> {
    let rest = text.trim_start().strip_prefix("API Error: ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (digits.len() == 3).then(|| digits.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    fn api_error(line: &str) -> Option<ApiError> {
        match Message::parse(line) {
            Some(Message::Result(r)) => r.api_error,
            other => panic!("not a result: {other:?}"),
        }
    }

    #[test]
    fn claude_codes_overloaded_result_is_temporary() {
        // As Claude Code 2.1 writes it when the API answers 529 and its own retries are spent.
        let line = r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":529,"api_error_type":"overloaded_error","terminal_reason":"api_error","result":"API Error: 529 Overloaded. This is a server-side issue, usually temporary","session_id":"s"}"#;
        let e = api_error(line).expect("an API error");
        assert_eq!(e.status, 529);
        assert!(e.is_temporary());
        assert_eq!(e.describe(), "the model API was overloaded (HTTP 529)");
    }

    #[test]
    fn the_status_is_read_from_the_text_without_the_field() {
        let e = api_error(
            r#"{"type":"result","is_error":true,"result":"API Error: 429 rate limited"}"#,
        );
        assert_eq!(e, Some(ApiError { status: 429 }));
        let e = api_error(r#"{"type":"result","is_error":true,"result":"API Error: 503 down"}"#);
        assert!(e.unwrap().is_temporary());
    }

    #[test]
    fn the_prompts_own_errors_and_other_failures_are_not_temporary() {
        let bad = api_error(
            r#"{"type":"result","is_error":true,"api_error_status":400,"result":"API Error: 400 prompt is too long"}"#,
        );
        assert!(!bad.unwrap().is_temporary());
        assert!(!ApiError { status: 401 }.is_temporary());
        assert_eq!(
            api_error(r#"{"type":"result","is_error":true,"result":"the tool failed"}"#),
            None
        );
        // A successful result never carries one, whatever its text says.
        assert_eq!(
            api_error(
                r#"{"type":"result","is_error":false,"result":"API Error: 529 is what I would say"}"#
            ),
            None
        );
    }
}
