//! Which sessions a caller may act on. An agent reaches its own session and the sessions below it (through each
//! session's current parent), unless the blueprint of its own session says `scope: Namespace`. Everything here is
//! pure: it asks a `Family` (the gateway's indexed caches, or slices in the tests), so it is tested without a
//! cluster.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use crds::{AgentBlueprint, AgentJob, AgentSession, JobType, Scope};

use crate::domain;

/// Who is asking, as far as reach goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallerKind<'a> {
    /// An agent: its session comes from its verified Pod token (or, with `--auth header`, from
    /// X-Agent-Session-Name). Reaches its own tree, or the namespace when its blueprint says so.
    Agent { session: &'a str },
    /// `--auth header` without X-Agent-Session-Name: a developer's client with no session of its own. Reaches
    /// the namespace.
    Developer,
    /// A person's own token (not bound to an agent Pod): no session of its own; reaches the namespace, as far as
    /// RBAC lets it (each call is authorized in access.rs).
    Person,
}

/// The sessions a caller may list, read, resume, stop and delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Every session of the namespace.
    Namespace,
    /// The caller's own session and the sessions below it.
    Tree {
        own: String,
        below: BTreeSet<String>,
    },
}

impl Reach {
    pub fn includes(&self, session: &str) -> bool {
        match self {
            Reach::Namespace => true,
            Reach::Tree { own, below } => own == session || below.contains(session),
        }
    }

    /// What delete_all_agent_sessions removes: what the caller reaches, never its own session.
    pub fn deletable(&self, session: &str, own: Option<&str>) -> bool {
        match self {
            Reach::Namespace => Some(session) != own,
            Reach::Tree { below, .. } => below.contains(session),
        }
    }

    /// The caller's own session when its reach is a tree.
    pub fn tree_root(&self) -> Option<&str> {
        match self {
            Reach::Namespace => None,
            Reach::Tree { own, .. } => Some(own),
        }
    }
}

/// What the reach rule needs to know about one namespace's sessions. The gateway answers from the indexes its
/// watches keep (store.rs), so a walk costs what the caller's own tree holds; the tests answer from slices.
pub trait Family {
    fn session(&self, name: &str) -> Option<Arc<AgentSession>>;
    /// The sessions whose first or current parent is `parent` (more may come back: each is checked).
    fn sessions_under(&self, parent: &str) -> Vec<Arc<AgentSession>>;
    /// The Start jobs naming `parent` as their parent (more may come back: each is checked).
    fn starts_under(&self, parent: &str) -> Vec<Arc<AgentJob>>;
    /// The jobs that run on `session`.
    fn jobs_of(&self, session: &str) -> Vec<Arc<AgentJob>>;
}

/// The reach of an agent whose own session is `own` (its object, if cached, tells its blueprint).
pub fn of_agent(own: &str, blueprint: Option<&AgentBlueprint>, family: &impl Family) -> Reach {
    match blueprint.and_then(|b| b.spec.scope).unwrap_or_default() {
        Scope::Namespace => Reach::Namespace,
        Scope::Tree => Reach::Tree {
            own: own.to_string(),
            below: below(own, family),
        },
    }
}

/// The blueprint whose scope applies to a caller: the one its own session was started with.
pub fn blueprint_name(own: Option<&AgentSession>) -> Option<&str> {
    own.and_then(|s| s.spec.blueprint.as_deref())
}

/// The sessions whose current parent is `parent`. A session's current parent is status.parentSessionName, else
/// spec.parentSessionName (before the operator's first status write). A session that exists only as its Start job
/// (being created) has that job's parent; of several such jobs, the last in run order counts (an earlier one
/// failed, or lost the name).
pub fn children(parent: &str, family: &impl Family) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = family
        .sessions_under(parent)
        .iter()
        .filter(|s| crds::limits::current_parent(s) == Some(parent))
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    for start in family.starts_under(parent) {
        let name = start.spec.session_name.as_str();
        if start.spec.job_type != JobType::Start
            || out.contains(name)
            || family.session(name).is_some()
        {
            continue;
        }
        let jobs = family.jobs_of(name);
        let last_start = domain::in_run_order(
            jobs.iter()
                .map(|j| j.as_ref())
                .filter(|j| j.spec.job_type == JobType::Start)
                .collect(),
        )
        .pop()
        .and_then(|j| j.spec.parent_session_name.clone());
        if last_start.as_deref() == Some(parent) {
            out.insert(name.to_string());
        }
    }
    out
}

/// The sessions below `own`, following children down. Each session is visited once, so a cycle in bad data (a
/// session that is its own ancestor) ends the walk instead of looping; `own` itself is never included.
pub fn below(own: &str, family: &impl Family) -> BTreeSet<String> {
    let mut seen = BTreeSet::from([own.to_string()]);
    let mut queue = VecDeque::from([own.to_string()]);
    while let Some(next) = queue.pop_front() {
        for child in children(&next, family) {
            if seen.insert(child.clone()) {
                queue.push_back(child);
            }
        }
    }
    seen.remove(own);
    seen
}

/// The one answer for a session outside the caller's tree, whether it exists or not: the text names only what the
/// caller gave and its own session, so it tells nothing about other trees.
pub fn refusal(target: &str, own: &str) -> String {
    format!(
        "session '{target}' does not exist or is outside your reach: an agent reaches only its own session \
         ('{own}') and the sessions below it. Use list_agent_sessions to see the sessions you can reach."
    )
}

/// Why a call was refused, for the metrics (never shown to the caller).
pub fn refusal_reason(exists: bool) -> &'static str {
    if exists {
        "outside_reach"
    } else {
        "unknown_session"
    }
}

/// The note of the Event on a session whose stop or resume was refused.
pub fn event_note(tool: &str, target: &str, caller: &str) -> String {
    format!(
        "{tool} of session '{target}' by agent session '{caller}' was refused: '{target}' is outside that agent's \
         reach (its own session and the sessions below it)"
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::fixtures::{blueprint, job, session};
    use crds::JobPhase;

    /// A session whose current parent is `parent` (recorded by the operator in status).
    fn child(name: &str, parent: &str) -> AgentSession {
        let mut s = session(name, None, None);
        s.status.as_mut().unwrap().parent_session_name = Some(parent.into());
        s
    }

    fn start_of(
        name: &str,
        session: &str,
        parent: Option<&str>,
        phase: Option<JobPhase>,
        at: i64,
    ) -> AgentJob {
        let mut j = job(name, session, JobType::Start, phase, at);
        j.spec.parent_session_name = parent.map(Into::into);
        j
    }

    fn names(set: &BTreeSet<String>) -> Vec<&str> {
        set.iter().map(String::as_str).collect()
    }

    /// A namespace as plain lists, scanned: the rule's reference answers, without any index.
    pub struct Slices {
        pub sessions: Vec<Arc<AgentSession>>,
        pub jobs: Vec<Arc<AgentJob>>,
    }

    impl Slices {
        pub fn new(sessions: &[AgentSession], jobs: &[AgentJob]) -> Self {
            Slices {
                sessions: sessions.iter().cloned().map(Arc::new).collect(),
                jobs: jobs.iter().cloned().map(Arc::new).collect(),
            }
        }
    }

    impl Family for Slices {
        fn session(&self, name: &str) -> Option<Arc<AgentSession>> {
            self.sessions
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(name))
                .cloned()
        }
        fn sessions_under(&self, _: &str) -> Vec<Arc<AgentSession>> {
            self.sessions.clone()
        }
        fn starts_under(&self, _: &str) -> Vec<Arc<AgentJob>> {
            self.jobs.clone()
        }
        fn jobs_of(&self, session: &str) -> Vec<Arc<AgentJob>> {
            self.jobs
                .iter()
                .filter(|j| j.spec.session_name == session)
                .cloned()
                .collect()
        }
    }

    fn tree(sessions: &[AgentSession], jobs: &[AgentJob], own: &str) -> Reach {
        of_agent(own, None, &Slices::new(sessions, jobs))
    }

    fn below_of(sessions: &[AgentSession], own: &str) -> BTreeSet<String> {
        below(own, &Slices::new(sessions, &[]))
    }

    /// Two trees, a -> a1 -> a1x and b -> b1, and a root k started by a person.
    fn two_trees() -> Vec<AgentSession> {
        vec![
            session("a", None, None),
            child("a1", "a"),
            child("a1x", "a1"),
            session("b", None, None),
            child("b1", "b"),
            session("k", None, None),
        ]
    }

    #[test]
    fn an_agent_reaches_its_own_session_and_every_session_below_it() {
        let reach = tree(&two_trees(), &[], "a");
        let Reach::Tree { own, below } = &reach else {
            panic!("{reach:?}")
        };
        assert_eq!((own.as_str(), names(below)), ("a", vec!["a1", "a1x"]));
        for name in ["a", "a1", "a1x"] {
            assert!(reach.includes(name), "{name}");
        }
        for name in ["b", "b1", "k", "ghost"] {
            assert!(!reach.includes(name), "{name}");
        }
        // A child reaches down, never up or sideways.
        let reach = tree(&two_trees(), &[], "a1");
        assert!(reach.includes("a1x") && !reach.includes("a") && !reach.includes("b"));
    }

    #[test]
    fn delete_all_takes_what_is_below_never_the_callers_own_session() {
        let reach = tree(&two_trees(), &[], "a");
        assert!(reach.deletable("a1", Some("a")) && reach.deletable("a1x", Some("a")));
        assert!(!reach.deletable("a", Some("a")) && !reach.deletable("b", Some("a")));
        assert!(Reach::Namespace.deletable("b", Some("a")));
        assert!(!Reach::Namespace.deletable("a", Some("a")));
        assert!(Reach::Namespace.deletable("a", None));
    }

    #[test]
    fn the_current_parent_counts_and_the_first_recorded_one_until_status_has_one() {
        // Re-parented: spec says b (first parent), status says a (current): a reaches it, b no longer does.
        let mut moved = child("m", "a");
        moved.spec.parent_session_name = Some("b".into());
        // Not reconciled yet: only spec knows the parent.
        let mut fresh = session("f", None, None);
        fresh.spec.parent_session_name = Some("b".into());
        let all = [
            session("a", None, None),
            session("b", None, None),
            moved,
            fresh,
        ];
        assert_eq!(names(&below_of(&all, "a")), ["m"]);
        assert_eq!(names(&below_of(&all, "b")), ["f"]);
    }

    #[test]
    fn a_session_being_created_belongs_to_the_parent_of_its_last_start_job() {
        let jobs = [
            // An old Start of "n" by b failed; the new one is a's. A Resume names no new session.
            start_of("n-1", "n", Some("b"), Some(JobPhase::Failed), 1),
            start_of("n-2", "n", Some("a"), None, 2),
            start_of("c-1", "c", Some("n"), None, 3),
            job("r-1", "z", JobType::Resume, None, 4),
        ];
        let reach = tree(&[session("a", None, None)], &jobs, "a");
        assert!(reach.includes("n") && reach.includes("c") && !reach.includes("z"));
        assert!(!tree(&[], &jobs, "b").includes("n"));
        // Once the session object exists, its own record wins over any job.
        let reach = tree(&[session("n", None, None)], &jobs, "a");
        assert!(!reach.includes("n"));
    }

    #[test]
    fn cycles_in_bad_data_end_the_walk() {
        let sessions = [
            child("x", "y"),
            child("y", "z"),
            child("z", "x"),
            child("w", "w"),
        ];
        let reach = tree(&sessions, &[], "x");
        let Reach::Tree { below, .. } = &reach else {
            panic!("{reach:?}")
        };
        assert_eq!(names(below), ["y", "z"]);
        let reach = tree(&sessions, &[], "w");
        assert_eq!(
            reach,
            Reach::Tree {
                own: "w".into(),
                below: BTreeSet::new()
            }
        );
    }

    #[test]
    fn unknown_callers_reach_only_their_own_name() {
        let reach = tree(&two_trees(), &[], "ghost");
        assert_eq!(
            reach,
            Reach::Tree {
                own: "ghost".into(),
                below: BTreeSet::new()
            }
        );
        assert!(reach.includes("ghost") && !reach.includes("a"));
    }

    #[test]
    fn a_namespace_scope_blueprint_reaches_every_session() {
        let mut orchestrator = blueprint("orchestrator", &[], false);
        orchestrator.spec.scope = Some(Scope::Namespace);
        let mut own = session("o", None, None);
        own.spec.blueprint = Some("orchestrator".into());
        assert_eq!(blueprint_name(Some(&own)), Some("orchestrator"));
        let refs = Slices::new(&two_trees(), &[]);
        let reach = of_agent("o", Some(&orchestrator), &refs);
        assert_eq!(reach, Reach::Namespace);
        assert!(reach.includes("b1") && reach.includes("ghost"));
        // scope: Tree, or no scope at all, is the tree rule.
        let mut plain = blueprint("plain", &[], false);
        assert!(!of_agent("a", Some(&plain), &refs).includes("b"));
        plain.spec.scope = Some(Scope::Tree);
        assert!(!of_agent("a", Some(&plain), &refs).includes("b"));
    }

    #[test]
    fn the_refusal_is_the_same_for_a_session_of_another_tree_and_a_missing_one() {
        let reach = tree(&two_trees(), &[], "a");
        assert!(!reach.includes("b") && !reach.includes("ghost"));
        let other = refusal("b", "a").replace("'b'", "'NAME'");
        let missing = refusal("ghost", "a").replace("'ghost'", "'NAME'");
        assert_eq!(other, missing);
        assert!(other.contains("outside your reach"), "{other}");
        assert_eq!(refusal_reason(true), "outside_reach");
        assert_eq!(refusal_reason(false), "unknown_session");
    }
}
