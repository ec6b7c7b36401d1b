//! What a model call costs, while the run is still going. Claude Code prints the run's cost only in its last
//! message; every model call before that carries its token counts and its model's name, so the runner prices them
//! itself to report a running cost (what lets `maxCostUSD` stop a tree mid-run, not only when its agents end). The
//! result message's own total replaces the estimate when it comes.
//!
//! Prices are dollars per million tokens, looked up by the longest model-name prefix that has an entry. The
//! built-in table holds Anthropic's list prices; `AGENT_MODEL_PRICES` (JSON, same shape as [`ModelPrices`] with
//! the model-name prefix as key) adds entries or replaces some, for other prices or a model released after this
//! build. A call to a model with no entry is counted in tokens but not in the running cost.

use std::collections::BTreeMap;

use crds::Cost;
use serde_json::Value;

use crate::message::TokenUsage;

/// The environment variable that adds or replaces price entries.
pub const PRICES_ENV: &str = "AGENT_MODEL_PRICES";

/// A model's prices, in dollars per million tokens (decimal strings in JSON, like `costUSD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPrices {
    pub input: Cost,
    pub output: Cost,
    /// Reading the prompt cache.
    pub cache_read: Cost,
    /// Writing the prompt cache (the five-minute cache, what Claude Code uses).
    pub cache_write: Cost,
}

/// Prices by model-name prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceTable(BTreeMap<String, ModelPrices>);

/// Anthropic's list prices per million tokens: input, output, cache read, cache write (5 minutes), as the model
/// catalog of the pinned Claude Code release has them (`CLAUDE_VERSION` in the Makefile), so the running estimate
/// and Claude Code's final total agree. Haiku 5.5's higher price above 100,000 prompt tokens is not modelled: the
/// estimate is low there until the result's total replaces it.
const LIST_PRICES: &[(&str, &str, &str, &str, &str)] = &[
    ("claude-3-haiku", "0.25", "1.25", "0.03", "0.30"),
    ("claude-3-5-haiku", "0.80", "4", "0.08", "1"),
    ("claude-haiku-4-5", "1", "5", "0.10", "1.25"),
    ("claude-haiku-5-5", "0.10", "0.50", "0.01", "0.125"),
    ("claude-3-5-sonnet", "3", "15", "0.30", "3.75"),
    ("claude-3-7-sonnet", "3", "15", "0.30", "3.75"),
    ("claude-sonnet-4", "3", "15", "0.30", "3.75"),
    ("claude-sonnet-5", "2", "10", "0.20", "2.50"),
    ("claude-sonnet-5-5", "2", "10", "0.10", "2.50"),
    ("claude-3-opus", "15", "75", "1.50", "18.75"),
    ("claude-opus-4", "15", "75", "1.50", "18.75"),
    ("claude-opus-4-5", "5", "25", "0.50", "6.25"),
    ("claude-opus-4-6", "5", "25", "0.50", "6.25"),
    ("claude-opus-4-7", "5", "25", "0.50", "6.25"),
    ("claude-opus-4-8", "5", "25", "0.50", "6.25"),
    ("claude-opus-5", "5", "25", "0.50", "6.25"),
    ("claude-opus-5-5", "4", "20", "0.20", "5"),
    ("claude-fable-5", "10", "50", "1", "12.50"),
    ("claude-fable-5-1", "10", "50", "0.25", "12.50"),
    ("claude-fable-5-2", "8", "40", "0.20", "10"),
    ("claude-mythos-5", "10", "50", "1", "12.50"),
    ("claude-mythos-5-1", "10", "50", "0.25", "12.50"),
    ("claude-mythos-5-2", "8", "40", "0.20", "10"),
];

impl Default for PriceTable {
    fn default() -> PriceTable {
        let dollars = |d: &str| Cost::parse(d).expect("a list price is a decimal");
        PriceTable(
            LIST_PRICES
                .iter()
                .map(|(model, i, o, r, w)| {
                    let prices = ModelPrices {
                        input: dollars(i),
                        output: dollars(o),
                        cache_read: dollars(r),
                        cache_write: dollars(w),
                    };
                    (model.to_string(), prices)
                })
                .collect(),
        )
    }
}

impl PriceTable {
    /// The built-in table with `AGENT_MODEL_PRICES`'s entries over it (its value is read by [`PriceTable::with`]).
    pub fn from_env() -> Result<PriceTable, String> {
        match std::env::var(PRICES_ENV) {
            Ok(json) if !json.trim().is_empty() => PriceTable::default()
                .with(&json)
                .map_err(|e| format!("{PRICES_ENV}: {e}")),
            _ => Ok(PriceTable::default()),
        }
    }

    /// This table with the entries of `json` added or replaced:
    /// `{"claude-sonnet-4": {"input": "3", "output": "15", "cacheRead": "0.30", "cacheWrite": "3.75"}}`.
    /// `input` and `output` are required; a cache price left out is the input price.
    pub fn with(mut self, json: &str) -> Result<PriceTable, String> {
        let value: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
        let entries = value
            .as_object()
            .ok_or("expected an object of model-name prefixes")?;
        for (model, prices) in entries {
            let price = |key: &str| -> Result<Option<Cost>, String> {
                match prices.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(d)) => Cost::parse(d)
                        .map(Some)
                        .map_err(|e| format!("{model}.{key}: {e}")),
                    Some(other) => Err(format!(
                        "{model}.{key}: {other} is not a decimal string of dollars such as \"3.75\""
                    )),
                }
            };
            if !prices.is_object() {
                return Err(format!(
                    "{model}: expected an object with input and output prices"
                ));
            }
            let required = |key: &str| {
                price(key)?.ok_or_else(|| format!("{model}: the {key} price is missing"))
            };
            let input = required("input")?;
            let entry = ModelPrices {
                input,
                output: required("output")?,
                cache_read: price("cacheRead")?.unwrap_or(input),
                cache_write: price("cacheWrite")?.unwrap_or(input),
            };
            self.0.insert(model.clone(), entry);
        }
        Ok(self)
    }

    /// The prices of `model`: its longest prefix with an entry.
    pub fn of(&self, model: &str) -> Option<&ModelPrices> {
        self.0
            .iter()
            .filter(|(prefix, _)| model.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, prices)| prices)
    }
}

/// Sums what calls cost without rounding each: amounts are kept in nano-dollars times a million (a price per
/// million tokens times a token count), divided once at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally(i128);

impl Tally {
    /// Adds one call of `tokens` at `prices`.
    pub fn add(&mut self, prices: &ModelPrices, tokens: &TokenUsage) {
        let part = |count: i64, price: Cost| i128::from(count.max(0)) * i128::from(price.0);
        self.0 += part(tokens.input_tokens, prices.input)
            + part(tokens.output_tokens, prices.output)
            + part(tokens.cache_read_tokens, prices.cache_read)
            + part(tokens.cache_write_tokens, prices.cache_write);
    }

    /// The total, rounded half up to a nano-dollar.
    pub fn cost(self) -> Cost {
        let nanos = (self.0 + 500_000) / 1_000_000;
        Cost(i64::try_from(nanos).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(input: i64, output: i64, read: i64, write: i64) -> TokenUsage {
        TokenUsage {
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: read,
            cache_write_tokens: write,
        }
    }

    #[test]
    fn the_longest_prefix_prices_a_model() {
        let table = PriceTable::default();
        let input = |m: &str| table.of(m).map(|p| p.input.render());
        assert_eq!(input("claude-opus-4-5-20251101").as_deref(), Some("5"));
        assert_eq!(input("claude-opus-4-1-20250805").as_deref(), Some("15"));
        assert_eq!(input("claude-sonnet-4-5-20250929").as_deref(), Some("3"));
        assert_eq!(input("claude-haiku-4-5-20251001").as_deref(), Some("1"));
        assert_eq!(input("claude-3-5-haiku-20241022").as_deref(), Some("0.8"));
        assert_eq!(input("claude-sonnet-5-5").as_deref(), Some("2"));
        assert_eq!(input("claude-opus-4-20250514").as_deref(), Some("15"));
        assert_eq!(input("gpt-5"), None);
    }

    #[test]
    fn calls_are_priced_exactly() {
        let table = PriceTable::default();
        let sonnet = table.of("claude-sonnet-4-5").unwrap();
        let mut tally = Tally::default();
        // 10,000 in at $3, 1,000 out at $15, 2,000 cache reads at $0.30, 400 cache writes at $3.75 per million.
        tally.add(sonnet, &tokens(10_000, 1_000, 2_000, 400));
        assert_eq!(tally.cost().render(), "0.0471");
        // A third of a nano-dollar per call adds up instead of rounding away: 3 calls of 1 token at $0.000333 per million.
        let tiny = ModelPrices {
            input: Cost::parse("0.000333").unwrap(),
            output: Cost(0),
            cache_read: Cost(0),
            cache_write: Cost(0),
        };
        let mut small = Tally::default();
        for _ in 0..3 {
            small.add(&tiny, &tokens(1, 0, 0, 0));
        }
        assert_eq!(small.cost(), Cost(1));
    }

    #[test]
    fn entries_from_json_add_and_replace() {
        let table = PriceTable::default()
            .with(r#"{"claude-sonnet-4": {"input": "6", "output": "22.50"}, "my-model": {"input": "1", "output": "2", "cacheRead": "0.1", "cacheWrite": "1.25"}}"#)
            .unwrap();
        let sonnet = table.of("claude-sonnet-4-5").unwrap();
        assert_eq!(
            (
                sonnet.input.render(),
                sonnet.output.render(),
                sonnet.cache_read.render()
            ),
            ("6".into(), "22.5".into(), "6".into()),
            "a cache price left out is the input price"
        );
        assert_eq!(
            table.of("my-model-v2").unwrap().cache_write.render(),
            "1.25"
        );
        assert_eq!(
            table.of("claude-opus-4").unwrap().input.render(),
            "15",
            "others stay"
        );
    }

    #[test]
    fn bad_entries_are_refused_by_name() {
        for (json, says) in [
            ("[1]", "expected an object"),
            ("{", "not JSON"),
            (r#"{"m": 3}"#, "m: expected an object"),
            (r#"{"m": {"input": "3"}}"#, "m: the output price is missing"),
            (
                r#"{"m": {"input": 3, "output": "1"}}"#,
                "m.input: 3 is not a decimal string",
            ),
            (
                r#"{"m": {"input": "-1", "output": "1"}}"#,
                "m.input: \"-1\" is not a decimal",
            ),
        ] {
            let err = PriceTable::default().with(json).unwrap_err();
            assert!(err.contains(says), "{json}: {err}");
        }
    }
}
