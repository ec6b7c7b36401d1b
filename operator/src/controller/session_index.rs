//! A session's current parent, as the roll-up of usage and budget stops follow it (the sessions-by-parent index
//! itself is `index::SessionIndex`, which also finds sessions by their first parent).

use crds::AgentSession;

/// The current parent of a session: its status once the operator wrote one, else the first recorded.
pub fn parent_of(session: &AgentSession) -> Option<&str> {
    session
        .status
        .as_ref()
        .and_then(|s| s.parent_session_name.as_deref())
        .or(session.spec.parent_session_name.as_deref())
}

/// The sessions whose current parent is `ns/name`.
pub fn current_children(
    ctx: &crate::context::Context,
    ns: &str,
    name: &str,
) -> Vec<std::sync::Arc<AgentSession>> {
    ctx.child_sessions(ns, name)
        .into_iter()
        .filter(|s| parent_of(s) == Some(name))
        .collect()
}
