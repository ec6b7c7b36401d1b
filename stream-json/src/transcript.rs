//! What a run's stream has said so far: the facts a runner needs once the agent has exited.

use crds::{Cost, Usage};

use crate::message::{Block, Message, TokenUsage};
use crate::pricing::{PriceTable, Tally};

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
    /// The run's usage: the result message's totals once it came, until then the sum of the model calls so far,
    /// their cost estimated from `prices` (Claude Code reports its own cost only at the end).
    pub usage: Option<Usage>,
    /// Each model call seen so far, by message id (repeated lines of one message count once).
    calls: Vec<Call>,
    /// Whether `usage` holds the result's totals (then model calls no longer change it).
    final_usage: bool,
    /// The run's model as its first line named it, for a call that does not name its own.
    model: Option<String>,
    /// What prices the calls' tokens.
    prices: PriceTable,
}

#[derive(Debug, Clone, PartialEq)]
struct Call {
    id: Option<String>,
    model: Option<String>,
    tokens: TokenUsage,
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
    /// A transcript whose running cost uses `prices` (the default uses Anthropic's list prices).
    pub fn with_prices(prices: PriceTable) -> Transcript {
        Transcript {
            prices,
            ..Transcript::default()
        }
    }

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
            Message::Init {
                model: Some(model), ..
            } => self.model = Some(model.clone()),
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
                model,
                ..
            } => {
                if let Some(tokens) = usage
                    && !self.final_usage
                {
                    let call = Call {
                        id: message_id.clone(),
                        model: model.clone().or_else(|| self.model.clone()),
                        tokens: tokens.clone(),
                    };
                    match self
                        .calls
                        .iter_mut()
                        .find(|seen| seen.id.is_some() && seen.id == call.id)
                    {
                        Some(seen) => *seen = call,
                        None => self.calls.push(call),
                    }
                    self.usage = Some(self.so_far());
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

    /// The model calls' sum; its cost counts the calls whose model has a price (none priced: no cost).
    fn so_far(&self) -> Usage {
        let mut usage = self.calls.iter().fold(Usage::default(), |sum, call| {
            sum.plus(&as_usage(&call.tokens))
        });
        let mut tally = Tally::default();
        let mut priced = false;
        for call in &self.calls {
            if let Some(prices) = call.model.as_deref().and_then(|m| self.prices.of(m)) {
                tally.add(prices, &call.tokens);
                priced = true;
            }
        }
        usage.cost_usd = priced.then(|| tally.cost().render());
        usage.turns = self.calls.len() as i64;
        usage
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

    #[test]
    fn model_calls_are_priced_while_the_run_goes_on() {
        let call = |id: &str, model: Option<&str>| {
            let model = model
                .map(|m| format!(r#""model":"{m}","#))
                .unwrap_or_default();
            format!(
                r#"{{"type":"assistant","message":{{"id":"{id}",{model}"content":[],"usage":{{"input_tokens":10000,"output_tokens":1000}}}}}}"#
            )
        };
        let cost = |t: &Transcript| t.usage.as_ref().and_then(|u| u.cost_usd.clone());
        let mut t = Transcript::default();
        t.observe(r#"{"type":"system","subtype":"init","session_id":"s","model":"claude-haiku-4-5-20251001"}"#);
        // Sonnet: 10,000 x $3 + 1,000 x $15 per million.
        t.observe(&call("m1", Some("claude-sonnet-4-5-20250929")));
        assert_eq!(cost(&t).as_deref(), Some("0.045"));
        // No model on the line: the run's model from its first line, Haiku at $1 and $5.
        t.observe(&call("m2", None));
        assert_eq!(cost(&t).as_deref(), Some("0.06"));
        // A model without a price: its tokens count, its cost is not guessed.
        t.observe(&call("m3", Some("someone-elses-model")));
        let usage = t.usage.clone().unwrap();
        assert_eq!(
            (usage.input_tokens, usage.cost_usd.as_deref()),
            (30_000, Some("0.06"))
        );
        // The result's own total has the last word.
        t.observe(r#"{"type":"result","subtype":"success","result":"ok","num_turns":3,"total_cost_usd":0.07,"usage":{"input_tokens":30000,"output_tokens":3000}}"#);
        assert_eq!(cost(&t).as_deref(), Some("0.07"));

        let custom = PriceTable::default()
            .with(r#"{"someone-elses": {"input": "1", "output": "1"}}"#)
            .unwrap();
        let mut t = Transcript::with_prices(custom);
        t.observe(&call("m1", Some("someone-elses-model")));
        assert_eq!(cost(&t).as_deref(), Some("0.011"));
        let mut unpriced = Transcript::default();
        unpriced.observe(&call("m1", Some("someone-elses-model")));
        assert_eq!(cost(&unpriced), None, "no call priced: no cost at all");
    }
}
