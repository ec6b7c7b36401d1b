//! Tree governance at the gateway's start path: the tree limits a new child would pass (the rule is
//! `crds::limits`, the operator applies the same one) and the tree label every job it creates carries.

use crds::limits::{self, DefaultLimits};
use crds::{AgentJobSpec, JobType, labels};

use crate::error::ToolError;
use crate::store::Stores;

/// Refuses a Start job of `spec` when the new session would pass a limit of its parent's tree (a tool error
/// naming the limit, its value and where the value comes from). A session with no parent has no limits to pass.
pub fn check_start(
    stores: &Stores,
    ns: &str,
    spec: &AgentJobSpec,
    defaults: &DefaultLimits,
) -> Result<(), ToolError> {
    let Some(parent) = spec.parent_session_name.as_deref() else {
        return Ok(());
    };
    let (chain, _) = limits::ancestors(parent, |n| stores.session(ns, n));
    let Some(parent_session) = chain.first() else {
        return Ok(());
    };
    let blueprints: Vec<_> = chain
        .iter()
        .map(|s| {
            s.spec
                .blueprint
                .as_deref()
                .and_then(|b| stores.blueprint(ns, b))
        })
        .collect();
    let ancestors = limits::with_blueprints(&chain, &blueprints);
    // The parent's own children (from the indexes), not the namespace: the cost follows the parent.
    let (sessions, jobs) = stores.children_of(ns, parent);
    let counts = limits::count_children(
        parent_session,
        &sessions.iter().map(|s| s.as_ref()).collect::<Vec<_>>(),
        &jobs.iter().map(|j| j.as_ref()).collect::<Vec<_>>(),
        None,
    );
    limits::check(&ancestors, counts, defaults)
        .map_err(|e| ToolError::Conflict(format!("{e}; the session is not started")))
}

/// The tree label of a job of `spec`: the tree of the session it runs on, else (a Start) that of its parent, else
/// (a root) its own session's name. None while the parent's tree is not known yet (the operator labels it then).
pub fn tree_label(stores: &Stores, ns: &str, spec: &AgentJobSpec) -> Option<String> {
    let label_of = |name: &str| {
        stores
            .session(ns, name)
            .and_then(|s| s.metadata.labels.as_ref()?.get(labels::TREE).cloned())
    };
    if spec.job_type == JobType::Resume {
        return label_of(&spec.session_name);
    }
    match &spec.parent_session_name {
        Some(parent) => label_of(parent),
        None => Some(spec.session_name.clone()),
    }
}
