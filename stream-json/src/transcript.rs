//! What a run's stream has said so far: the facts a runner needs once the agent has exited.

use crds::{Cost, Usage};

use crate::message::{Block, Message, TokenUsage};

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
    /// The run's usage: the result message's totals once it came, until then the sum of the model calls so far
    /// (without cost, which Claude Code only reports at the end).
    pub usage: Option<Usage>,
    /// Tokens of each model call seen so far, by message id (repeated lines of one message count once).
    calls: Vec<(Option<String>, TokenUsage)>,
    /// Whether `usage` holds the result's totals (then model calls no longer change it).
    final_usage: bool,
}

fn as_usage(t: &TokenUsage) -> Usage {
    Usage {
        input_tokens: t.input_tokens,
        output_tokens: t.output_tokens,
        cache_read_tokens: t.cache_read_tokens,
        cache_write_tokens: t.cache_write_tokens,
        cost_usd: None,
        turns: 0,
    }
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
                if r.usage.is_some() || r.total_cost_usd.is_some() || r.num_turns.is_some() {
                    let mut usage = r.usage.as_ref().map(as_usage).unwrap_or_default();
                    usage.cost_usd = r.total_cost_usd.and_then(Cost::from_f64).map(Cost::render);
                    usage.turns = r.num_turns.unwrap_or(0);
                    self.usage = Some(usage);
                    self.final_usage = true;
                }
            }
            Message::Assistant {
                blocks,
                message_id,
                usage,
                ..
            } => {
                if let Some(call) = usage
                    && !self.final_usage
                {
                    match self
                        .calls
                        .iter_mut()
                        .find(|(id, _)| id.is_some() && id == message_id)
                    {
                        Some(seen) => seen.1 = call.clone(),
                        None => self.calls.push((message_id.clone(), call.clone())),
                    }
                    let mut so_far = self
                        .calls
                        .iter()
                        .fold(Usage::default(), |sum, (_, t)| sum.plus(&as_usage(t)));
                    so_far.cost_usd = None;
                    so_far.turns = self.calls.len() as i64;
                    self.usage = Some(so_far);
                }
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

    #[test]
    fn usage_grows_with_model_calls_and_the_result_has_the_last_word() {
        let mut t = Transcript::default();
        let call = |id: &str, out: i64| {
            format!(
                r#"{{"type":"assistant","message":{{"id":"{id}","content":[],"usage":{{"input_tokens":10,"output_tokens":{out}}}}}}}"#
            )
        };
        t.observe(&call("m1", 5));
        // The same message again (Claude Code writes a line per content block): counted once, latest wins.
        t.observe(&call("m1", 6));
        t.observe(&call("m2", 4));
        let so_far = t.usage.clone().unwrap();
        assert_eq!(
            (so_far.input_tokens, so_far.output_tokens, so_far.turns),
            (20, 10, 2)
        );
        assert_eq!(so_far.cost_usd, None);
        t.observe(r#"{"type":"result","subtype":"success","result":"ok","num_turns":3,"total_cost_usd":0.0125,"usage":{"input_tokens":30,"output_tokens":12,"cache_read_input_tokens":5,"cache_creation_input_tokens":7}}"#);
        let last = t.usage.clone().unwrap();
        assert_eq!(
            last,
            Usage {
                input_tokens: 30,
                output_tokens: 12,
                cache_read_tokens: 5,
                cache_write_tokens: 7,
                cost_usd: Some("0.0125".into()),
                turns: 3
            }
        );
        t.observe(&call("m3", 100));
        assert_eq!(
            t.usage,
            Some(last),
            "nothing after the result changes its totals"
        );
    }
}
