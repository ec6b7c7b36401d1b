//! Arithmetic on usage and budgets, shared by the operator (roll-up, budget stops), the gateway (budget refusals)
//! and the runner (reports). Cost is money: it is summed as whole nano-dollars (an `i64`), never as floating point,
//! so a tree's sum is exact whatever the order of its terms, and it is written back as a decimal string.

use crate::governance::{Budget, Usage};

/// Digits kept after the decimal point: nano-dollars. Claude Code reports costs with at most that many
/// significant fractional digits in practice; finer digits are rounded half up.
const FRACTION_DIGITS: u32 = 9;
const SCALE: i64 = 10i64.pow(FRACTION_DIGITS);

/// A non-negative amount of US dollars, in nano-dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cost(pub i64);

impl Cost {
    /// Reads a decimal string such as "2.50" (the `costUSD` and `maxCostUSD` shape).
    pub fn parse(text: &str) -> Result<Cost, String> {
        let bad = || format!("{text:?} is not a decimal amount of dollars such as \"2.50\"");
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        if whole.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
            || (text.contains('.') && fraction.is_empty())
        {
            return Err(bad());
        }
        let whole: i64 = whole.parse().map_err(|_| bad())?;
        let mut nanos: i64 = 0;
        for (i, digit) in fraction.bytes().enumerate() {
            let d = i64::from(digit - b'0');
            if (i as u32) < FRACTION_DIGITS {
                nanos += d * 10i64.pow(FRACTION_DIGITS - 1 - i as u32);
            } else {
                if i as u32 == FRACTION_DIGITS && d >= 5 {
                    nanos += 1;
                }
                break;
            }
        }
        whole
            .checked_mul(SCALE)
            .and_then(|w| w.checked_add(nanos))
            .map(Cost)
            .ok_or_else(bad)
    }

    /// Claude Code's `total_cost_usd` is a JSON number: its shortest decimal rendering is read as text, so
    /// 0.0125 becomes exactly 12,500,000 nano-dollars rather than the nearest binary fraction.
    pub fn from_f64(dollars: f64) -> Option<Cost> {
        if !dollars.is_finite() || dollars < 0.0 {
            return None;
        }
        let text = format!("{dollars}");
        if text.contains('e') {
            // Tiny amounts render in exponent form; below a nano-dollar they are nothing.
            return Some(Cost((dollars * SCALE as f64).round() as i64));
        }
        Cost::parse(&text).ok()
    }

    /// The decimal string: "0.0125", "2", "0".
    pub fn render(self) -> String {
        let whole = self.0 / SCALE;
        let fraction = self.0 % SCALE;
        if fraction == 0 {
            return whole.to_string();
        }
        let digits = format!("{fraction:0width$}", width = FRACTION_DIGITS as usize);
        format!("{whole}.{}", digits.trim_end_matches('0'))
    }
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, other: Cost) -> Cost {
        Cost(self.0.saturating_add(other.0))
    }
}

impl std::fmt::Display for Cost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render())
    }
}

impl Usage {
    /// The cost as a number; an unreadable cost string counts as nothing (admission keeps the shape right).
    pub fn cost(&self) -> Cost {
        self.cost_usd
            .as_deref()
            .and_then(|c| Cost::parse(c).ok())
            .unwrap_or_default()
    }

    /// Every token the run used: input, output, cache reads and writes (what `maxTokens` bounds).
    pub fn total_tokens(&self) -> i64 {
        self.input_tokens
            .saturating_add(self.output_tokens)
            .saturating_add(self.cache_read_tokens)
            .saturating_add(self.cache_write_tokens)
    }

    /// The field-by-field sum; the cost is summed exactly.
    pub fn plus(&self, other: &Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens.saturating_add(other.input_tokens),
            output_tokens: self.output_tokens.saturating_add(other.output_tokens),
            cache_read_tokens: self
                .cache_read_tokens
                .saturating_add(other.cache_read_tokens),
            cache_write_tokens: self
                .cache_write_tokens
                .saturating_add(other.cache_write_tokens),
            cost_usd: Some((self.cost() + other.cost()).render()),
            turns: self.turns.saturating_add(other.turns),
        }
    }

    /// The sum of many; `None` when there is nothing to sum.
    pub fn sum<'a>(parts: impl IntoIterator<Item = &'a Usage>) -> Option<Usage> {
        parts.into_iter().fold(None, |acc: Option<Usage>, u| {
            Some(acc.map_or_else(|| u.plus(&Usage::default()), |a| a.plus(u)))
        })
    }
}

impl Budget {
    /// The bound `usage` passes, named for people ("maxCostUSD 0.05 (spent 0.0625)"); `None` while within.
    /// Reaching a bound exactly is within it.
    pub fn exceeded_by(&self, usage: &Usage) -> Option<String> {
        if let Some(max) = self
            .max_cost_usd
            .as_deref()
            .and_then(|m| Cost::parse(m).ok())
            && usage.cost() > max
        {
            return Some(format!("maxCostUSD {max} (spent {})", usage.cost()));
        }
        if let Some(max) = self.max_tokens
            && usage.total_tokens() > max
        {
            return Some(format!("maxTokens {max} (used {})", usage.total_tokens()));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_strings_round_trip_exactly() {
        for (text, nanos, back) in [
            ("0", 0, "0"),
            ("2.50", 2_500_000_000, "2.5"),
            ("0.0125", 12_500_000, "0.0125"),
            ("0.000000001", 1, "0.000000001"),
            ("0.0000000015", 2, "0.000000002"),
            ("12", 12_000_000_000, "12"),
        ] {
            assert_eq!(Cost::parse(text), Ok(Cost(nanos)), "{text}");
            assert_eq!(Cost(nanos).render(), back);
        }
        for bad in ["", ".5", "1.", "-1", "1e3", "abc", "1.2.3"] {
            assert!(Cost::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sums_do_not_drift_like_floats() {
        // 0.1 + 0.2 is 0.30000000000000004 in f64; here it is 0.3, in any order.
        let tenth = Usage {
            cost_usd: Some("0.1".into()),
            ..Default::default()
        };
        let fifth = Usage {
            cost_usd: Some(Cost::from_f64(0.2).unwrap().render()),
            ..Default::default()
        };
        assert_eq!(tenth.plus(&fifth).cost_usd.as_deref(), Some("0.3"));
        let many = vec![tenth.clone(); 1000];
        assert_eq!(Usage::sum(&many).unwrap().cost_usd.as_deref(), Some("100"));
        assert_eq!(Usage::sum(std::iter::empty()), None);
    }

    #[test]
    fn usage_adds_field_by_field() {
        let a = Usage {
            input_tokens: 1,
            output_tokens: 2,
            cache_read_tokens: 3,
            cache_write_tokens: 4,
            cost_usd: Some("0.01".into()),
            turns: 1,
        };
        let b = a.plus(&a);
        assert_eq!(b.total_tokens(), 20);
        assert_eq!(b.turns, 2);
        assert_eq!(b.cost_usd.as_deref(), Some("0.02"));
    }

    #[test]
    fn a_budget_names_the_bound_that_was_passed() {
        let budget = Budget {
            max_cost_usd: Some("0.05".into()),
            max_tokens: Some(100),
        };
        let mut used = Usage {
            input_tokens: 100,
            cost_usd: Some("0.05".into()),
            ..Default::default()
        };
        assert_eq!(
            budget.exceeded_by(&used),
            None,
            "reaching a bound is within it"
        );
        used.cost_usd = Some("0.0625".into());
        assert_eq!(
            budget.exceeded_by(&used).as_deref(),
            Some("maxCostUSD 0.05 (spent 0.0625)")
        );
        used.cost_usd = None;
        used.output_tokens = 1;
        assert_eq!(
            budget.exceeded_by(&used).as_deref(),
            Some("maxTokens 100 (used 101)")
        );
    }
}
