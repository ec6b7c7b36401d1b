//! A session's place in its tree (the tree label, status.depth, the ownerReference to its current parent) and
//! what closing a session with `parentClosePolicy: Terminate` stops. Pure: the reconcilers pass what the stores hold.

use std::sync::Arc;

use crds::limits::{ancestors, current_parent};
use crds::{AgentJob, AgentSession, ParentClosePolicy, SessionPhase, labels};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

use super::order::{is_deleting, is_finished};

/// Where a session sits: the name of its tree's root and how many levels below the root it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub tree: String,
    pub depth: i32,
}

pub fn tree_label(obj: &impl Resource) -> Option<&str> {
    obj.meta()
        .labels
        .as_ref()?
        .get(labels::TREE)
        .map(String::as_str)
}

/// The placement of `session` from the chain of its ancestors as `lookup` finds them. When an ancestor is gone
/// (an `Abandon` parent deleted), the chain ends at the highest one still there, which keeps the tree it had: a
/// tree's label does not change because its root was deleted.
pub fn place(
    session: &AgentSession,
    lookup: impl Fn(&str) -> Option<Arc<AgentSession>>,
) -> Placement {
    let Some(parent) = current_parent(session) else {
        return Placement {
            tree: session.name_any(),
            depth: 0,
        };
    };
    let (chain, complete) = ancestors(parent, lookup);
    let below = chain.len() as i32;
    match chain.last() {
        Some(root) if complete => Placement {
            tree: root.name_any(),
            depth: below,
        },
        Some(top) => Placement {
            tree: tree_label(top.as_ref())
                .map(str::to_string)
                .or_else(|| current_parent(top).map(str::to_string))
                .unwrap_or_else(|| top.name_any()),
            depth: top.status.as_ref().and_then(|s| s.depth).unwrap_or(1) + below,
        },
        None => Placement {
            tree: tree_label(session)
                .map(str::to_string)
                .unwrap_or_else(|| parent.to_string()),
            depth: session.status.as_ref().and_then(|s| s.depth).unwrap_or(1),
        },
    }
}

pub fn policy(session: &AgentSession) -> ParentClosePolicy {
    session.spec.parent_close_policy.unwrap_or_default()
}

/// The ownerReference of a job to the session it runs on: deleting the session deletes its jobs (and so stops them).
pub fn session_reference(session: &AgentSession) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: AgentSession::api_version(&()).into(),
        kind: AgentSession::kind(&()).into(),
        name: session.name_any(),
        uid: session.uid()?,
        controller: Some(false),
        block_owner_deletion: Some(false),
    })
}

/// The ownerReference a child session of `parent` carries: garbage collection deletes the child with its parent.
/// A parent with `parentClosePolicy: Abandon` gets none, so its children outlive it.
pub fn parent_reference(parent: &AgentSession) -> Option<OwnerReference> {
    if policy(parent) == ParentClosePolicy::Abandon {
        return None;
    }
    Some(OwnerReference {
        api_version: AgentSession::api_version(&()).into(),
        kind: AgentSession::kind(&()).into(),
        name: parent.name_any(),
        uid: parent.uid()?,
        controller: Some(false),
        block_owner_deletion: Some(true),
    })
}

/// The ownerReferences `session` should have: those it has to other kinds, plus the one to its current parent (see
/// `parent_reference`). A reference to an earlier parent goes when the session is re-parented.
pub fn owner_references(
    session: &AgentSession,
    parent: Option<&AgentSession>,
) -> Vec<OwnerReference> {
    let kind = AgentSession::kind(&());
    let mut refs: Vec<OwnerReference> = session
        .owner_references()
        .iter()
        .filter(|r| r.kind != kind)
        .cloned()
        .collect();
    refs.extend(parent.and_then(parent_reference));
    refs
}

/// Whether `session` is closed with its descendants in tow: stopped, with `parentClosePolicy: Terminate`.
pub fn closes_descendants(session: &AgentSession) -> bool {
    session.metadata.deletion_timestamp.is_none()
        && policy(session) == ParentClosePolicy::Terminate
        && session.status.as_ref().and_then(|s| s.phase) == Some(SessionPhase::Stopped)
}

/// The jobs to stop because `closed` was stopped: every job not yet ended (nor being deleted) of every session
/// below it, walking down through current parents. Below a session with `parentClosePolicy: Abandon` the walk
/// stops (that session's own jobs are stopped, its children go on).
pub fn jobs_to_stop(
    closed: &AgentSession,
    children_of: impl Fn(&str) -> Vec<Arc<AgentSession>>,
    jobs_of: impl Fn(&str) -> Vec<Arc<AgentJob>>,
) -> Vec<Arc<AgentJob>> {
    let mut stop = Vec::new();
    let mut seen = vec![closed.name_any()];
    let mut next = vec![closed.name_any()];
    while let Some(parent) = next.pop() {
        for child in children_of(&parent) {
            let name = child.name_any();
            if current_parent(&child) != Some(parent.as_str()) || seen.contains(&name) {
                continue;
            }
            seen.push(name.clone());
            stop.extend(
                jobs_of(&name)
                    .into_iter()
                    .filter(|j| !is_finished(j) && !is_deleting(j)),
            );
            if policy(&child) == ParentClosePolicy::Terminate {
                next.push(name);
            }
        }
    }
    stop.sort_by_key(|j| j.name_any());
    stop
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::yaml;

    fn session(name: &str, parent: Option<&str>, extra: &str) -> Arc<AgentSession> {
        let spec: Vec<String> = parent
            .map(|p| format!("parentSessionName: {p}"))
            .into_iter()
            .chain((!extra.is_empty()).then(|| extra.to_string()))
            .collect();
        let spec = spec.join(", ");
        Arc::new(yaml(&format!(
            "metadata: {{name: {name}, uid: uid-{name}}}\nspec: {{{spec}}}"
        )))
    }

    fn job(name: &str, session: &str, phase: &str) -> Arc<AgentJob> {
        Arc::new(yaml(&format!(
            "metadata: {{name: {name}}}\nspec: {{type: Start, sessionName: {session}, prompt: p}}\nstatus: {{phase: {phase}}}"
        )))
    }

    #[test]
    fn a_session_is_placed_under_its_root() {
        let all = [
            session("root", None, ""),
            session("mid", Some("root"), ""),
            session("leaf", Some("mid"), ""),
        ];
        let lookup = |n: &str| all.iter().find(|s| s.name_any() == n).cloned();
        let at = |s: &AgentSession| place(s, lookup);
        assert_eq!(
            at(&all[0]),
            Placement {
                tree: "root".into(),
                depth: 0
            }
        );
        assert_eq!(
            at(&all[2]),
            Placement {
                tree: "root".into(),
                depth: 2
            }
        );
    }

    #[test]
    fn a_tree_keeps_its_label_when_its_root_is_gone() {
        let mid: Arc<AgentSession> = Arc::new(yaml(
            "metadata: {name: mid, labels: {agentorchestrator.dev/tree: root}}\nspec: {parentSessionName: root}\nstatus: {depth: 1}",
        ));
        let leaf = session("leaf", Some("mid"), "");
        let lookup = |n: &str| (n == "mid").then(|| mid.clone());
        assert_eq!(
            place(&leaf, lookup),
            Placement {
                tree: "root".into(),
                depth: 2
            }
        );
        // The parent itself gone, nothing known: the parent's name, one level down.
        assert_eq!(
            place(&leaf, |_| None),
            Placement {
                tree: "mid".into(),
                depth: 1
            }
        );
    }

    #[test]
    fn only_a_terminate_parent_owns_its_children_and_re_parenting_moves_the_reference() {
        let terminate = session("a", None, "");
        let abandon = session("b", None, "parentClosePolicy: Abandon");
        let child: AgentSession = yaml(
            "metadata:\n  name: c\n  ownerReferences:\n  - {apiVersion: agentorchestrator.dev/v1alpha1, kind: AgentSession, name: old, uid: uid-old}\n  - {apiVersion: v1, kind: ConfigMap, name: keep, uid: uid-keep}\nspec: {}",
        );
        let refs = owner_references(&child, Some(&terminate));
        let names: Vec<&str> = refs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["keep", "a"]);
        assert_eq!(refs[1].uid, "uid-a");
        assert_eq!(refs[1].controller, Some(false));
        let refs = owner_references(&child, Some(&abandon));
        assert_eq!(
            refs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["keep"]
        );
    }

    #[test]
    fn closing_stops_running_descendants_down_to_an_abandon_session() {
        let root: AgentSession = yaml("metadata: {name: root}\nspec: {}\nstatus: {phase: Stopped}");
        assert!(closes_descendants(&root));
        let all = [
            session("c1", Some("root"), ""),
            session("c2", Some("root"), "parentClosePolicy: Abandon"),
            session("g1", Some("c1"), ""),
            session("g2", Some("c2"), ""),
        ];
        let jobs = [
            job("c1-start", "c1", "Succeeded"),
            job("c2-start", "c2", "Running"),
            job("g1-start", "g1", "Running"),
            job("g2-start", "g2", "Running"),
        ];
        let children_of = |p: &str| {
            all.iter()
                .filter(|s| current_parent(s) == Some(p))
                .cloned()
                .collect()
        };
        let jobs_of = |s: &str| {
            jobs.iter()
                .filter(|j| j.spec.session_name == s)
                .cloned()
                .collect()
        };
        let names: Vec<String> = jobs_to_stop(&root, children_of, jobs_of)
            .iter()
            .map(|j| j.name_any())
            .collect();
        assert_eq!(names, ["c2-start", "g1-start"]);
        let abandon: AgentSession = yaml(
            "metadata: {name: root}\nspec: {parentClosePolicy: Abandon}\nstatus: {phase: Stopped}",
        );
        assert!(!closes_descendants(&abandon));
    }
}
