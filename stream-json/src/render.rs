//! The human rendering of stream-json: each message as a few labelled lines (`assistant:`, `tool call:`,
//! `tool result:`, `result:`, `error:`), continuation lines indented. Tool results and thinking are shortened
//! unless the full text is asked for: they are the bulk of a stream and rarely what a person looks for.

use serde_json::Value;

use crate::message::{Block, Message};

/// Lines and characters of a shortened text.
const SHORT_LINES: usize = 8;
const SHORT_CHARS: usize = 600;
/// Tool-call arguments are what the agent decided: kept longer than results.
const ARGUMENT_CHARS: usize = 2000;
/// A job's prompt (a callback delivery's carries its children's results) is what the agent was asked: longer still.
const PROMPT_LINES: usize = 40;
const PROMPT_CHARS: usize = 4000;

/// How to render.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rendering {
    /// Show tool results, thinking and arguments whole.
    pub full: bool,
}

impl Rendering {
    /// The text of one message, `None` for one with nothing to show (stream events, other system messages).
    pub fn message(&self, message: &Message) -> Option<String> {
        let mut out = Vec::new();
        match message {
            Message::Init {
                session_id,
                model,
                cwd,
            } => {
                let mut parts = vec![format!(
                    "session {}",
                    session_id.as_deref().unwrap_or("(no id)")
                )];
                parts.extend(model.iter().map(|m| format!("model {m}")));
                parts.extend(cwd.iter().map(|c| format!("in {c}")));
                out.push(format!("started: {}", parts.join(", ")));
            }
            Message::Assistant { blocks, error, .. } => {
                for block in blocks {
                    self.block(block, &mut out);
                }
                if let Some(error) = error {
                    out.push(labelled("error", error));
                }
            }
            Message::User { blocks, .. } => {
                for block in blocks {
                    match block {
                        // Text in a user message is the prompt or a reminder Claude Code injects.
                        Block::Text(text) => {
                            out.push(labelled("user", &self.shorten(text, SHORT_CHARS)))
                        }
                        other => self.block(other, &mut out),
                    }
                }
            }
            Message::Result(r) => {
                let mut meta = Vec::new();
                if let Some(turns) = r.num_turns {
                    meta.push(format!("{turns} turn{}", if turns == 1 { "" } else { "s" }));
                }
                if let Some(cost) = r.total_cost_usd {
                    meta.push(format!("${cost:.4}"));
                }
                if r.is_error {
                    meta.extend(r.subtype.clone().filter(|s| s != "success"));
                }
                let label = match (r.is_error, meta.is_empty()) {
                    (false, true) => "result".to_string(),
                    (false, false) => format!("result ({})", meta.join(", ")),
                    (true, true) => "failed".to_string(),
                    (true, false) => format!("failed ({})", meta.join(", ")),
                };
                out.push(labelled(&label, &r.text));
            }
            Message::Other { .. } => {}
        }
        (!out.is_empty()).then(|| out.join("\n"))
    }

    /// A job's prompt, labelled `prompt:`.
    pub fn prompt(&self, text: &str) -> String {
        labelled("prompt", &self.shorten_to(text, PROMPT_LINES, PROMPT_CHARS))
    }

    fn block(&self, block: &Block, out: &mut Vec<String>) {
        match block {
            Block::Text(text) if text.trim().is_empty() => {}
            Block::Text(text) => out.push(labelled("assistant", text)),
            Block::Thinking(text) if text.trim().is_empty() => {}
            Block::Thinking(text) => {
                out.push(labelled("thinking", &self.shorten(text, SHORT_CHARS)))
            }
            Block::ToolUse { name, input, .. } => {
                let arguments = match input {
                    Value::Null => String::new(),
                    Value::Object(o) if o.is_empty() => String::new(),
                    other => format!(" {}", self.shorten(&other.to_string(), ARGUMENT_CHARS)),
                };
                out.push(format!("tool call: {name}{arguments}"));
            }
            Block::ToolResult {
                content, is_error, ..
            } => {
                let label = if *is_error {
                    "tool error"
                } else {
                    "tool result"
                };
                out.push(labelled(label, &self.shorten(content, SHORT_CHARS)));
            }
        }
    }

    /// `text` cut to SHORT_LINES lines and `chars` characters, saying how much was left out.
    fn shorten(&self, text: &str, chars: usize) -> String {
        self.shorten_to(text, SHORT_LINES, chars)
    }

    /// `text` cut to `lines` lines and `chars` characters.
    fn shorten_to(&self, text: &str, lines: usize, chars: usize) -> String {
        let text = text.trim_end();
        if self.full {
            return text.to_string();
        }
        let mut kept: String = text.lines().take(lines).collect::<Vec<_>>().join("\n");
        if kept.chars().count() > chars {
            kept = kept.chars().take(chars).collect();
        }
        let total = text.chars().count();
        let shown = kept.chars().count();
        // Joining the kept lines drops nothing but line ends, so equal counts mean nothing was cut.
        if text.lines().count() <= lines && shown == total {
            return text.to_string();
        }
        format!("{kept} … [{} more characters]", total - shown)
    }
}

/// Renders one line of a Pod log: `Some` for a stream-json message with something to show, `None` otherwise.
pub fn render_line(line: &str, rendering: Rendering) -> Option<String> {
    rendering.message(&Message::parse(line)?)
}

/// `label: text`, the text's further lines indented under it.
fn labelled(label: &str, text: &str) -> String {
    let text = text.trim_end();
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let mut out = format!("{label}: {first}");
    for line in lines {
        out.push('\n');
        if !line.is_empty() {
            out.push_str("  ");
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_texts_are_kept_and_long_ones_say_what_was_cut() {
        let r = Rendering::default();
        assert_eq!(r.shorten("one\ntwo", SHORT_CHARS), "one\ntwo");
        let many: String = (1..=20).map(|i| format!("line {i}\n")).collect();
        let short = r.shorten(&many, SHORT_CHARS);
        assert!(short.starts_with("line 1\n"));
        assert!(short.contains("line 8 … ["), "{short}");
        assert!(!short.contains("line 9"));
        let wide = "é".repeat(700);
        assert_eq!(
            r.shorten(&wide, SHORT_CHARS),
            format!("{} … [100 more characters]", "é".repeat(600))
        );
        assert_eq!(
            Rendering { full: true }.shorten(&many, SHORT_CHARS),
            many.trim_end()
        );
        // Prompts keep more: all 20 lines here.
        let indented: Vec<String> = (2..=20).map(|i| format!("line {i}")).collect();
        assert_eq!(
            r.prompt(&many),
            format!("prompt: line 1\n  {}", indented.join("\n  "))
        );
    }
}
