//! agent-operator: runs AgentJobs as Pods, keeps AgentSessions, and delivers callbacks between sessions.
//!
//! Layout: `domain` is pure logic (no API calls), `controller` holds the reconcilers and their wiring, `apply` the
//! write helpers, `context` what reconciles share; `http` and `metrics` are the process around them
//! (leader election is the binary's, in main.rs).

pub mod apply;
pub mod config;
pub mod context;
pub mod controller;
pub mod domain;
pub mod error;
pub mod freshness;
pub mod http;
pub mod metrics;
pub mod retry;
pub mod trace;
