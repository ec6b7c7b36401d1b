//! Pure domain logic: no API calls, no async. Everything here is decided from objects already read, so it is unit
//! tested from YAML fixtures without a cluster.

pub mod agent_pod;
pub mod attempts;
pub mod callback;
pub mod job;
pub mod lifecycle;
pub mod limits;
pub mod lineage;
pub mod order;
pub mod pod;
pub mod retention;
pub mod session;
pub mod session_retention;
pub mod session_work;
pub mod tree;
pub mod usage;
pub mod workspace;

#[cfg(test)]
pub(crate) mod fixtures;
