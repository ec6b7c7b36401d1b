//! Names of the AgentJobs this command creates: the gateway's rule (crds::naming), so jobs made by people and by
//! agents on one session sort in the order they were asked for.

pub use crds::naming::{job_name, now_millis};
