//! The tree limits (`AgentBlueprint.spec.limits` and the namespace defaults), decided the same way by the gateway
//! (which refuses a `start_agent_session` with a tool error) and by the operator (which fails a Start job with
//! reason `TreeLimitExceeded`). Pure: the callers gather the ancestors and the parent's children from their caches.
//!
//! Whose limits apply: the parent session's blueprint limits govern its children (`maxChildren` counts the children
//! started in the parent's life, `maxActiveChildren` those running at once); `maxDepth` of any ancestor's blueprint
//! bounds the levels below that ancestor. A limit a blueprint leaves unset falls back to the namespace default;
//! unset there too, it does not apply.

use std::collections::BTreeSet;
use std::sync::Arc;

use kube::ResourceExt;

use crate::{AgentBlueprint, AgentJob, AgentSession, JobPhase, JobType, SessionPhase, TreeLimits};

/// Longest chain of ancestors followed: deeper than any maxDepth allows, and a guard against a cycle.
pub const MAX_CHAIN: usize = 128;

/// The namespace defaults, set by the same flags on the operator and the gateway.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefaultLimits {
    pub max_depth: Option<i32>,
    pub max_children: Option<i32>,
    pub max_active_children: Option<i32>,
}

/// A session above the new child (nearest first) and the limits of its blueprint, if it has one.
#[derive(Clone, Copy, Debug)]
pub struct Ancestor<'a> {
    pub session: &'a str,
    pub blueprint: Option<&'a str>,
    pub limits: Option<&'a TreeLimits>,
}

/// The chain of `ancestors` paired with each one's blueprint (looked up by the caller, who knows its store), as
/// `check` reads it. The gateway and the operator both build it this way.
pub fn with_blueprints<'a>(
    chain: &'a [Arc<AgentSession>],
    blueprints: &'a [Option<Arc<AgentBlueprint>>],
) -> Vec<Ancestor<'a>> {
    chain
        .iter()
        .zip(blueprints)
        .map(|(s, b)| Ancestor {
            session: s.metadata.name.as_deref().unwrap_or_default(),
            blueprint: b.as_ref().and_then(|b| b.metadata.name.as_deref()),
            limits: b.as_ref().and_then(|b| b.spec.limits.as_ref()),
        })
        .collect()
}

/// The parent's children, as counted by `count_children`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChildCounts {
    /// Children started in the parent's life.
    pub started: usize,
    /// Children running (or about to run) now.
    pub active: usize,
}

/// A limit a new child would pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exceeded {
    /// The field name: `maxDepth`, `maxChildren` or `maxActiveChildren`.
    pub limit: &'static str,
    pub value: i32,
    /// Where the value comes from: `AgentBlueprint NAME` or the default's flag.
    pub source: String,
    /// What the new child would do to it.
    pub detail: String,
}

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tree limit {} {} (from {}) would be exceeded: {}",
            self.limit, self.value, self.source, self.detail
        )
    }
}

/// The current parent of a session: status.parentSessionName (changed by re-parenting), else the first one.
pub fn current_parent(session: &AgentSession) -> Option<&str> {
    session
        .status
        .as_ref()
        .and_then(|s| s.parent_session_name.as_deref())
        .or(session.spec.parent_session_name.as_deref())
}

/// The sessions above a new child of `parent`, nearest first, as `lookup` finds them. Ends at a root, at a session
/// `lookup` does not know (the second value is then false), or after `MAX_CHAIN` steps (a cycle).
pub fn ancestors(
    parent: &str,
    lookup: impl Fn(&str) -> Option<Arc<AgentSession>>,
) -> (Vec<Arc<AgentSession>>, bool) {
    let mut chain: Vec<Arc<AgentSession>> = Vec::new();
    let mut next = Some(parent.to_string());
    while let Some(name) = next {
        if chain.len() >= MAX_CHAIN || chain.iter().any(|s| s.name_any() == name) {
            return (chain, false);
        }
        let Some(session) = lookup(&name) else {
            return (chain, false);
        };
        next = current_parent(&session).map(str::to_string);
        chain.push(session);
    }
    (chain, true)
}

fn pick(
    limits: Option<&TreeLimits>,
    blueprint: Option<&str>,
    own: impl Fn(&TreeLimits) -> Option<i32>,
    default: Option<i32>,
    flag: &str,
) -> Option<(i32, String)> {
    match (limits.and_then(own), blueprint) {
        (Some(v), Some(b)) => Some((v, format!("AgentBlueprint {b}"))),
        _ => default.map(|v| (v, format!("the namespace default {flag}"))),
    }
}

/// Whether a new child of `chain[0]` stays within every limit that applies to it.
pub fn check(
    chain: &[Ancestor],
    counts: ChildCounts,
    defaults: &DefaultLimits,
) -> Result<(), Exceeded> {
    for (i, a) in chain.iter().enumerate() {
        let levels = i as i32 + 1;
        if let Some((value, source)) = pick(
            a.limits,
            a.blueprint,
            |l| l.max_depth,
            defaults.max_depth,
            "--default-max-depth",
        ) && levels > value
        {
            return Err(Exceeded {
                limit: "maxDepth",
                value,
                source,
                detail: format!(
                    "the new session would be {levels} level(s) below session {}",
                    a.session
                ),
            });
        }
    }
    let Some(parent) = chain.first() else {
        return Ok(());
    };
    if let Some((value, source)) = pick(
        parent.limits,
        parent.blueprint,
        |l| l.max_children,
        defaults.max_children,
        "--default-max-children",
    ) && counts.started >= value.max(0) as usize
    {
        return Err(Exceeded {
            limit: "maxChildren",
            value,
            source,
            detail: format!(
                "session {} has already started {} child session(s)",
                parent.session, counts.started
            ),
        });
    }
    if let Some((value, source)) = pick(
        parent.limits,
        parent.blueprint,
        |l| l.max_active_children,
        defaults.max_active_children,
        "--default-max-active-children",
    ) && counts.active >= value.max(0) as usize
    {
        return Err(Exceeded {
            limit: "maxActiveChildren",
            value,
            source,
            detail: format!(
                "session {} has {} child session(s) running",
                parent.session, counts.active
            ),
        });
    }
    Ok(())
}

/// Creation order: creation time (one-second resolution), then name.
fn order_key(job: &AgentJob) -> (Option<i64>, String) {
    (
        job.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second()),
        job.name_any(),
    )
}

fn created_second(meta: &kube::api::ObjectMeta) -> Option<i64> {
    meta.creation_timestamp.as_ref().map(|t| t.0.as_second())
}

/// A Start job refused before it made its session (it never was a child).
fn refused(job: &AgentJob) -> bool {
    job.status.as_ref().is_some_and(|s| {
        s.phase == Some(JobPhase::Failed) && s.session_uid.is_none() && s.start_time.is_none()
    })
}

fn ended(job: &AgentJob) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(|p| p.is_finished())
}

/// Counts the children of `parent`: the sessions whose parent it is (`sessions` may hold others) and the Start jobs
/// naming it as parent (`jobs` may hold others) that have not made their session yet. Only children made in the
/// parent's life count (not those of an earlier session of that name). With `new`, the Start job being decided:
/// only jobs created before it count, so that jobs created together are admitted in creation order.
pub fn count_children(
    parent: &AgentSession,
    sessions: &[&AgentSession],
    jobs: &[&AgentJob],
    new: Option<&AgentJob>,
) -> ChildCounts {
    let name = parent.name_any();
    let born = created_second(&parent.metadata);
    let in_life = |meta: &kube::api::ObjectMeta| match (born, created_second(meta)) {
        (Some(b), Some(c)) => c >= b,
        _ => true,
    };
    let own = new.map(|j| j.spec.session_name.as_str());
    let mut started: BTreeSet<&str> = BTreeSet::new();
    let mut active: BTreeSet<&str> = BTreeSet::new();
    for s in sessions {
        let child = s.metadata.name.as_deref().unwrap_or_default();
        if Some(child) == own {
            continue;
        }
        if s.spec.parent_session_name.as_deref() == Some(name.as_str()) && in_life(&s.metadata) {
            started.insert(child);
        }
        let running = s
            .status
            .as_ref()
            .is_some_and(|st| st.current_job.is_some() || st.phase == Some(SessionPhase::Running));
        if current_parent(s) == Some(name.as_str()) && running {
            active.insert(child);
        }
    }
    let made: BTreeSet<&str> = sessions
        .iter()
        .filter_map(|s| s.metadata.name.as_deref())
        .collect();
    for j in jobs {
        if j.spec.job_type != JobType::Start
            || j.spec.parent_session_name.as_deref() != Some(name.as_str())
            || !in_life(&j.metadata)
            || refused(j)
            || Some(j.spec.session_name.as_str()) == own
        {
            continue;
        }
        if let Some(new) = new
            && order_key(j) >= order_key(new)
        {
            continue;
        }
        started.insert(&j.spec.session_name);
        if !made.contains(j.spec.session_name.as_str()) && !ended(j) {
            active.insert(&j.spec.session_name);
        }
    }
    ChildCounts {
        started: started.len(),
        active: active.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(y: &str) -> AgentSession {
        serde_yaml_ng::from_str(y).unwrap()
    }
    fn job(y: &str) -> AgentJob {
        serde_yaml_ng::from_str(y).unwrap()
    }
    fn limits(d: Option<i32>, c: Option<i32>, a: Option<i32>) -> TreeLimits {
        TreeLimits {
            max_depth: d,
            max_children: c,
            max_active_children: a,
        }
    }

    #[test]
    fn the_parents_blueprint_bounds_its_children_and_names_itself() {
        let l = limits(None, Some(2), Some(1));
        let chain = [Ancestor {
            session: "boss",
            blueprint: Some("lead"),
            limits: Some(&l),
        }];
        let defaults = DefaultLimits::default();
        let counts = |started, active| ChildCounts { started, active };
        assert!(check(&chain, counts(1, 0), &defaults).is_ok());
        let e = check(&chain, counts(2, 0), &defaults).unwrap_err();
        assert_eq!((e.limit, e.value), ("maxChildren", 2));
        assert_eq!(
            e.to_string(),
            "tree limit maxChildren 2 (from AgentBlueprint lead) would be exceeded: session boss has already \
             started 2 child session(s)"
        );
        let e = check(&chain, counts(1, 1), &defaults).unwrap_err();
        assert_eq!((e.limit, e.value), ("maxActiveChildren", 1));
    }

    #[test]
    fn max_depth_of_any_ancestor_bounds_the_levels_below_it() {
        let one = limits(Some(1), None, None);
        let three = limits(Some(3), None, None);
        // root (maxDepth 1) > mid > new: the new session would be 2 levels below root.
        let chain = [
            Ancestor {
                session: "mid",
                blueprint: Some("deep"),
                limits: Some(&three),
            },
            Ancestor {
                session: "root",
                blueprint: Some("shallow"),
                limits: Some(&one),
            },
        ];
        let e = check(&chain, ChildCounts::default(), &DefaultLimits::default()).unwrap_err();
        assert_eq!((e.limit, e.value), ("maxDepth", 1));
        assert!(e.source.contains("AgentBlueprint shallow"), "{e}");
        assert!(e.detail.contains("2 level(s) below session root"), "{e}");
        assert!(
            check(
                &chain[..1],
                ChildCounts::default(),
                &DefaultLimits::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn unset_limits_fall_back_to_the_defaults_and_say_so() {
        let chain = [Ancestor {
            session: "boss",
            blueprint: None,
            limits: None,
        }];
        assert!(
            check(
                &chain,
                ChildCounts {
                    started: 99,
                    active: 99
                },
                &DefaultLimits::default()
            )
            .is_ok()
        );
        let defaults = DefaultLimits {
            max_children: Some(3),
            ..Default::default()
        };
        let e = check(
            &chain,
            ChildCounts {
                started: 3,
                active: 0,
            },
            &defaults,
        )
        .unwrap_err();
        assert_eq!(e.source, "the namespace default --default-max-children");
        let zero = DefaultLimits {
            max_depth: Some(0),
            ..Default::default()
        };
        assert_eq!(
            check(&chain, ChildCounts::default(), &zero)
                .unwrap_err()
                .limit,
            "maxDepth"
        );
    }

    #[test]
    fn children_count_sessions_and_pending_starts_once_each_and_in_creation_order() {
        let boss =
            session("metadata: {name: boss, creationTimestamp: '2026-01-01T00:00:00Z'}\nspec: {}");
        let c1 = session(
            "metadata: {name: c1, creationTimestamp: '2026-01-01T00:00:05Z'}\nspec: {parentSessionName: boss}\n\
             status: {phase: Running, currentJob: c1, parentSessionName: boss}",
        );
        let old = session(
            "metadata: {name: old, creationTimestamp: '2025-01-01T00:00:05Z'}\nspec: {parentSessionName: boss}\n\
             status: {phase: Idle, parentSessionName: boss}",
        );
        let start = |name: &str, session: &str, at: &str| {
            job(&format!(
                "metadata: {{name: {name}, creationTimestamp: '{at}'}}\n\
                 spec: {{type: Start, sessionName: {session}, prompt: p, parentSessionName: boss}}"
            ))
        };
        let j1 = start("c1", "c1", "2026-01-01T00:00:04Z");
        let j2 = start("c2", "c2", "2026-01-01T00:00:06Z");
        let j3 = start("c3", "c3", "2026-01-01T00:00:06Z");
        let sessions = [&c1, &old];
        let jobs = [&j1, &j2, &j3];
        let all = count_children(&boss, &sessions, &jobs, None);
        assert_eq!(
            all,
            ChildCounts {
                started: 3,
                active: 3
            }
        );
        // Deciding c3: c2 (same second, earlier name) counts, c3 itself does not.
        let before_c3 = count_children(&boss, &sessions, &jobs, Some(&j3));
        assert_eq!(
            before_c3,
            ChildCounts {
                started: 2,
                active: 2
            }
        );
        let before_c2 = count_children(&boss, &sessions, &jobs, Some(&j2));
        assert_eq!(
            before_c2,
            ChildCounts {
                started: 1,
                active: 1
            }
        );
    }

    #[test]
    fn the_chain_ends_at_a_root_a_missing_session_or_a_cycle() {
        let s = |name: &str, parent: Option<&str>| {
            Arc::new(session(&match parent {
                Some(p) => format!("metadata: {{name: {name}}}\nspec: {{parentSessionName: {p}}}"),
                None => format!("metadata: {{name: {name}}}\nspec: {{}}"),
            }))
        };
        let all = [
            s("a", None),
            s("b", Some("a")),
            s("c", Some("b")),
            s("x", Some("y")),
            s("y", Some("x")),
        ];
        let lookup = |n: &str| all.iter().find(|s| s.name_any() == n).cloned();
        let names = |(c, complete): (Vec<Arc<AgentSession>>, bool)| {
            (c.iter().map(|s| s.name_any()).collect::<Vec<_>>(), complete)
        };
        assert_eq!(
            names(ancestors("c", lookup)),
            (vec!["c".into(), "b".into(), "a".into()], true)
        );
        assert_eq!(names(ancestors("gone", lookup)), (vec![], false));
        assert!(!names(ancestors("x", lookup)).1);
    }
}
