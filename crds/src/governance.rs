//! Governance and cost types shared by the kinds: what a run used, what a tree may spend, what happens to a
//! session's children when it closes, and the limits a blueprint puts on a tree.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Tokens and cost of agent runs, as reported by the agent runner (Claude Code's stream-json `result` message, or
/// a generic agent's usage file). Sums over jobs and trees have the same shape.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Input tokens sent to the model (not counting cache reads and writes).
    #[serde(default)]
    pub input_tokens: i64,
    /// Output tokens the model produced.
    #[serde(default)]
    pub output_tokens: i64,
    /// Input tokens read from the prompt cache.
    #[serde(default)]
    pub cache_read_tokens: i64,
    /// Input tokens written to the prompt cache.
    #[serde(default)]
    pub cache_write_tokens: i64,
    /// Cost in US dollars, a decimal string such as "0.0132".
    #[serde(default, rename = "costUSD", skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::optional_decimal")]
    pub cost_usd: Option<String>,
    /// Model turns (one per assistant message with tool use, as the agent CLI counts them).
    #[serde(default)]
    pub turns: i64,
}

/// What a tree may spend: set on a Start job, recorded on its session, and applied to that session and every
/// session below it. A tree whose status.treeUsage passes either bound starts no more children and its running
/// jobs are stopped with reason BudgetExceeded.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.maxCostUSD) || has(self.maxTokens)").message("a budget needs maxCostUSD or maxTokens"))]
pub struct Budget {
    /// Most the tree may cost, in US dollars, a decimal string such as "2.50".
    #[serde(
        default,
        rename = "maxCostUSD",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "crate::schema::optional_decimal")]
    pub max_cost_usd: Option<String>,
    /// Most tokens (input, output, cache reads and writes together) the tree may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_tokens: Option<i64>,
}

/// What happens to a session's descendants when it closes (Start jobs only, recorded on the session).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, schemars::JsonSchema,
)]
pub enum ParentClosePolicy {
    /// Stopping the session stops its running descendants; deleting it deletes them.
    #[default]
    Terminate,
    /// Descendants go on; their callbacks to a parent that is gone are dropped with a reason.
    Abandon,
}

impl ParentClosePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ParentClosePolicy::Terminate => "Terminate",
            ParentClosePolicy::Abandon => "Abandon",
        }
    }
}

/// Limits a blueprint puts on the tree below each of its sessions. Unset limits fall back to the operator's and
/// gateway's namespace defaults; unset there too, they do not apply.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TreeLimits {
    /// Levels of children allowed below a session of this blueprint (1: children, no grandchildren).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_depth: Option<i32>,
    /// Children one session may start in its life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub max_children: Option<i32>,
    /// Children of one session running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub max_active_children: Option<i32>,
}

/// What the agents of a blueprint may reach through the gateway.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, schemars::JsonSchema,
)]
pub enum Scope {
    /// Its own session and the sessions below it (through status.parentSessionName).
    #[default]
    Tree,
    /// Any session of the namespace, for trusted orchestrators that adopt other trees' sessions.
    Namespace,
}
