//! What a run's stream has said so far: the facts a runner needs once the agent has exited.

use crate::message::{Block, Message};

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Transcript {
    /// Claude Code's own session id, for the next `--resume`.
    pub session_id: Option<String>,
    /// The final `result` message: its text and whether it reports an error.
    pub result: Option<(String, bool)>,
    /// Text of the last assistant message, in case the stream ends without a result message.
    pub last_text: Option<String>,
    /// The model API's refusal reported by the result message, if that ended the run.
    pub api_error: Option<crate::ApiError>,
}

impl Transcript {
    /// Takes one line of output. Lines that are not messages are ignored.
    pub fn observe(&mut self, line: &str) {
        if let Some(message) = Message::parse(line) {
            self.observe_message(&message);
        }
    }

    pub fn observe_message(&mut self, message: &Message) {
        if let Some(id) = message.session_id() {
            self.session_id = Some(id.to_string());
        }
        match message {
            Message::Result(r) => {
                self.result = Some((r.text.clone(), r.is_error));
                self.api_error = r.api_error;
            }
            Message::Assistant { blocks, .. } => {
                let text: String = blocks
                    .iter()
                    .filter_map(|b| match b {
                        Block::Text(t) => Some(t.as_str()),
                        _ => None,
                    })
                    .collect();
                if !text.is_empty() {
                    self.last_text = Some(text);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_session_id_result_and_text_are_kept() {
        let mut t = Transcript::default();
        for line in [
            r#"{"type":"system","subtype":"init","session_id":"sid-1"}"#,
            "not json",
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"part"},{"type":"text","text":"ial"}]},"session_id":"sid-1"}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t","name":"x","input":{}}]},"session_id":"sid-1"}"#,
        ] {
            t.observe(line);
        }
        assert_eq!(t.session_id.as_deref(), Some("sid-1"));
        assert_eq!(t.last_text.as_deref(), Some("partial"));
        assert_eq!(t.result, None);
        t.observe(r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 400","session_id":"sid-2"}"#);
        assert_eq!(t.result, Some(("API Error: 400".into(), true)));
        assert_eq!(t.session_id.as_deref(), Some("sid-2"));
    }
}
