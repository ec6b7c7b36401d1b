//! Parent chains between sessions: a job may not make a session its own ancestor; and which session a child job
//! calls back (its binding).

use crds::{AgentJob, AgentSession, JobType, labels};
use jiff::Timestamp;
use kube::{Resource, ResourceExt};

use super::order::{is_deleting, is_finished};

/// Longest parent chain followed; deeper trees are not expected and a longer walk is treated as a cycle.
const MAX_DEPTH: usize = 64;

/// Whether giving `session` the parent `parent` closes a cycle, following each session's current parent through
/// `parent_of`.
pub fn creates_cycle(
    session: &str,
    parent: &str,
    parent_of: impl Fn(&str) -> Option<String>,
) -> bool {
    let mut at = parent.to_string();
    for _ in 0..MAX_DEPTH {
        if at == session {
            return true;
        }
        match parent_of(&at) {
            Some(next) => at = next,
            None => return false,
        }
    }
    true
}

/// Which parent session a child job with `callback: true` calls back, as far as is known now.
///
/// The rule: a callback belongs to the parent session that existed when the child job was created. If none
/// existed then (a whole tree applied at once), the child waits for it and binds to the first session of that name
/// whose Start job was created no later than the child; a name reused later never receives it. A child that ends
/// while its parent neither exists nor has a pending Start job is dropped (`ParentNotFound`).
///
/// Creation timestamps have one-second resolution: a Start job created in the same second as the child counts as
/// created no later than it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// The parent is the session with this UID, and it exists. `record` when the binding is new and must be written
    /// on the child before anything else is done with its callback.
    Bound { uid: String, record: bool },
    /// No parent yet, but a Start job created no later than the child will create it.
    Waiting,
    /// The child has no parent to call back, and none can come: the callback is dropped with `ParentNotFound`.
    Gone(Gone),
}

/// Why a child has no parent, for the message of its dropped callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// The session it was bound to was deleted (or is being deleted).
    Deleted,
    /// The session it was bound to was deleted and another one reuses the name.
    Replaced,
    /// The session of that name was started by a Start job created after the child.
    Namesake,
    /// No session of that name exists, and no Start job created no later than the child is pending.
    Never,
}

/// The parent UID recorded on a child: by the operator in `status.callback.parentUid`, or by the gateway in the
/// `parent-uid` annotation when it created the child.
pub fn recorded_parent(child: &AgentJob) -> Option<&str> {
    child
        .status
        .as_ref()
        .and_then(|s| s.callback.as_ref())
        .and_then(|c| c.parent_uid.as_deref())
        .or_else(|| {
            child
                .annotations()
                .get(labels::PARENT_UID)
                .map(String::as_str)
        })
}

fn created(obj: &impl Resource) -> Option<Timestamp> {
    obj.meta().creation_timestamp.as_ref().map(|t| t.0)
}

/// Whether `start` (a Start job naming the child's parent) was created no later than `child`.
fn no_later(start: &AgentJob, child: &AgentJob) -> bool {
    match (created(start), created(child)) {
        (Some(s), Some(c)) => s <= c,
        _ => false,
    }
}

/// Whether `session` may be the parent of an unbound `child`: it existed when the child was created, or the Start
/// job that created it (found among `starts`) was created no later than the child.
fn eligible(session: &AgentSession, child: &AgentJob, starts: &[&AgentJob]) -> bool {
    if let (Some(s), Some(c)) = (created(session), created(child))
        && s <= c
    {
        return true;
    }
    let creator = session.annotations().get(labels::CREATED_BY_JOB);
    starts
        .iter()
        .any(|j| creator.is_some() && j.uid().as_ref() == creator && no_later(j, child))
}

/// The binding of `child`, given the session that now carries its parent's name (if any) and the Start jobs of the
/// namespace naming that session (`starts`, in any order; others are ignored).
pub fn bind(child: &AgentJob, parent: Option<&AgentSession>, starts: &[&AgentJob]) -> Binding {
    let Some(name) = child.spec.parent_session_name.as_deref() else {
        return Binding::Gone(Gone::Never);
    };
    let parent = parent.filter(|p| {
        p.name_any() == name
            && p.namespace() == child.namespace()
            && p.meta().deletion_timestamp.is_none()
    });
    if let Some(uid) = recorded_parent(child) {
        return match parent {
            Some(p) if p.uid().as_deref() == Some(uid) => Binding::Bound {
                uid: uid.to_string(),
                record: false,
            },
            Some(_) => Binding::Gone(Gone::Replaced),
            None => Binding::Gone(Gone::Deleted),
        };
    }
    let starts: Vec<&AgentJob> = starts
        .iter()
        .copied()
        .filter(|j| {
            j.spec.job_type == JobType::Start
                && j.spec.session_name == name
                && j.namespace() == child.namespace()
        })
        .collect();
    if let Some(p) = parent {
        if eligible(p, child, &starts) {
            return Binding::Bound {
                uid: p.uid().unwrap_or_default(),
                record: true,
            };
        }
        // A namesake made by a later Start job: the child's own parent can no longer come (its Start job would be
        // refused with AlreadyExists while the namesake exists).
        return Binding::Gone(Gone::Namesake);
    }
    let coming = starts
        .iter()
        .any(|j| no_later(j, child) && !is_finished(j) && !is_deleting(j));
    if coming {
        Binding::Waiting
    } else {
        Binding::Gone(Gone::Never)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn chain(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        move |s| map.get(s).cloned()
    }

    #[test]
    fn self_parenting_is_a_cycle() {
        assert!(creates_cycle("a", "a", chain(&[])));
    }

    #[test]
    fn an_ancestor_as_child_is_a_cycle() {
        // a -> b -> c; making c's ... no: giving a the parent c, where c's parent is b and b's parent is a.
        assert!(creates_cycle("a", "c", chain(&[("c", "b"), ("b", "a")])));
    }

    mod binding {
        use super::super::*;
        use crate::domain::fixtures::yaml;

        /// A child of `boss` created at second `at`, with extra metadata (annotations) and status.
        fn child(at: u32, annotations: &str, status: &str) -> AgentJob {
            yaml(&format!(
                r#"
metadata: {{name: c, namespace: ns, uid: u-c, creationTimestamp: "2026-01-01T00:00:{at:02}Z", annotations: {annotations}}}
spec: {{type: Start, sessionName: c, prompt: p, parentSessionName: boss, callback: true}}
status: {status}
"#
            ))
        }

        fn unbound(at: u32) -> AgentJob {
            child(at, "{}", "{}")
        }

        /// Session `boss` with UID `uid`, created at second `at` by the Start job with UID `by`.
        fn session(uid: &str, at: u32, by: &str) -> AgentSession {
            yaml(&format!(
                r#"
metadata: {{name: boss, namespace: ns, uid: {uid}, creationTimestamp: "2026-01-01T00:00:{at:02}Z", annotations: {{agentorchestrator.dev/created-by-job: {by}}}}}
spec: {{}}
"#
            ))
        }

        /// A Start job of session `boss` created at second `at`, with status `status`.
        fn start(uid: &str, at: u32, status: &str) -> AgentJob {
            yaml(&format!(
                r#"
metadata: {{name: {uid}, namespace: ns, uid: {uid}, creationTimestamp: "2026-01-01T00:00:{at:02}Z"}}
spec: {{type: Start, sessionName: boss, prompt: p}}
status: {status}
"#
            ))
        }

        fn bound(uid: &str, record: bool) -> Binding {
            Binding::Bound {
                uid: uid.into(),
                record,
            }
        }

        #[test]
        fn a_parent_that_existed_when_the_child_was_made_is_bound_and_recorded() {
            let s = session("u-1", 3, "j-1");
            assert_eq!(bind(&unbound(5), Some(&s), &[]), bound("u-1", true));
        }

        #[test]
        fn a_tree_applied_at_once_waits_then_binds_to_the_session_its_start_job_makes() {
            let c = unbound(5);
            let pending = start("j-1", 5, "{}");
            assert_eq!(bind(&c, None, &[&pending]), Binding::Waiting);
            // The session appears seconds after the child; its Start job was created with it.
            let running = start("j-1", 5, "{phase: Running}");
            let s = session("u-1", 9, "j-1");
            assert_eq!(bind(&c, Some(&s), &[&running]), bound("u-1", true));
        }

        #[test]
        fn a_start_job_created_after_the_child_is_a_namesake() {
            let c = unbound(5);
            let late = start("j-2", 6, "{}");
            assert_eq!(bind(&c, None, &[&late]), Binding::Gone(Gone::Never));
            let s = session("u-2", 7, "j-2");
            assert_eq!(bind(&c, Some(&s), &[&late]), Binding::Gone(Gone::Namesake));
        }

        #[test]
        fn no_session_and_no_pending_start_job_is_gone() {
            let c = unbound(5);
            assert_eq!(bind(&c, None, &[]), Binding::Gone(Gone::Never));
            let failed = start("j-1", 4, "{phase: Failed}");
            assert_eq!(bind(&c, None, &[&failed]), Binding::Gone(Gone::Never));
        }

        #[test]
        fn a_recorded_binding_decides_and_is_not_recorded_again() {
            let c = child(5, "{}", "{callback: {state: Pending, parentUid: u-1}}");
            assert_eq!(
                bind(&c, Some(&session("u-1", 9, "j-1")), &[]),
                bound("u-1", false)
            );
            // The parent was deleted and its name reused, even by a job older than the child: not the parent.
            let again = session("u-2", 10, "j-0");
            let old = start("j-0", 1, "{phase: Running}");
            assert_eq!(
                bind(&c, Some(&again), &[&old]),
                Binding::Gone(Gone::Replaced)
            );
            assert_eq!(bind(&c, None, &[]), Binding::Gone(Gone::Deleted));
        }

        #[test]
        fn the_gateways_annotation_is_a_recorded_binding() {
            let c = child(5, "{agentorchestrator.dev/parent-uid: u-1}", "{}");
            assert_eq!(
                bind(&c, Some(&session("u-1", 1, "j-1")), &[]),
                bound("u-1", false)
            );
            assert_eq!(
                bind(&c, Some(&session("u-2", 1, "j-2")), &[]),
                Binding::Gone(Gone::Replaced)
            );
        }

        #[test]
        fn a_parent_being_deleted_is_gone() {
            let c = child(5, "{}", "{callback: {state: Pending, parentUid: u-1}}");
            let mut s = session("u-1", 1, "j-1");
            s.metadata.deletion_timestamp = s.metadata.creation_timestamp.clone();
            assert_eq!(bind(&c, Some(&s), &[]), Binding::Gone(Gone::Deleted));
        }
    }

    #[test]
    fn an_ordinary_tree_is_fine() {
        assert!(!creates_cycle("leaf", "mid", chain(&[("mid", "root")])));
    }
}
