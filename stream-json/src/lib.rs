//! Claude Code's `--output-format stream-json` output, read once for every component that needs it: the runner
//! (session id, final result, error), `kubectl agents logs` (the conversation as readable text) and later the
//! dashboard.
//!
//! - [`message`]: what one line says, typed;
//! - [`transcript`]: what a whole run has said so far (its session id, its result, its last text, its usage);
//! - [`pricing`]: what its model calls cost, for a running cost before Claude Code prints its total;
//! - [`render`]: the human rendering of a line.

pub mod api_error;
pub mod message;
pub mod pricing;
pub mod render;
pub mod transcript;

pub use api_error::ApiError;
pub use message::{Block, Message, ResultMessage, TokenUsage};
pub use pricing::PriceTable;
pub use render::{Rendering, render_line};
pub use transcript::Transcript;
