//! Names of the AgentJobs the gateway creates: the rule is shared with `kubectl agents` and lives in crds.

pub use crds::naming::{job_name, now_millis};
