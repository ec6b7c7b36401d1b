//! What a session and its tree have used, and whether a tree passed its budget. Pure: the session reconciler
//! gives the session's status, its current job and its child sessions; this returns the usage fields.
//!
//! Why every job counts once (see docs/architecture.md, "Usage counts once"):
//! - a job's own usage lives on the job (status.usage, written by the gateway; a later report replaces the
//!   earlier one, never adds to it);
//! - a session's usage is `endedJobsUsage` plus its current job's usage. A job's usage joins `endedJobsUsage` in
//!   the one status write that also moves the job out of `currentJob` (written with the resourceVersion read), so
//!   no crash or retry can add it twice or skip it, and deleting the job later changes nothing;
//! - a parent's treeUsage is its usage plus one entry per child session (by UID) holding that child's treeUsage,
//!   replaced by the child's current value on every reconcile: re-reading a child any number of times gives the
//!   same sum. An entry stays when the child session is deleted (its money was spent) and goes when the child is
//!   re-parented (its new parent counts it).

use crds::{AgentJob, AgentSession, AgentSessionStatus, ChildUsage, Usage};
use kube::ResourceExt;

/// At a job's end: its usage (or, for a job already gone, what the session last saw of it) joins the session's
/// ended jobs.
pub fn settle(status: &mut AgentSessionStatus, job: Option<&AgentJob>) {
    let reported = job.and_then(|j| j.status.as_ref()?.usage.clone());
    let Some(used) = reported.or_else(|| running_part(status)) else {
        return;
    };
    let ended = status.ended_jobs_usage.clone().unwrap_or_default();
    let ended = ended.plus(&used);
    status.usage = Some(ended.clone());
    status.ended_jobs_usage = Some(ended);
}

/// What the session's usage holds beyond its ended jobs: the current job's last report as the session saw it.
fn running_part(status: &AgentSessionStatus) -> Option<Usage> {
    let usage = status.usage.as_ref()?;
    let ended = status.ended_jobs_usage.clone().unwrap_or_default();
    let part = Usage {
        input_tokens: usage.input_tokens - ended.input_tokens,
        output_tokens: usage.output_tokens - ended.output_tokens,
        cache_read_tokens: usage.cache_read_tokens - ended.cache_read_tokens,
        cache_write_tokens: usage.cache_write_tokens - ended.cache_write_tokens,
        cost_usd: Some(crds::Cost(usage.cost().0 - ended.cost().0).render()),
        turns: usage.turns - ended.turns,
    };
    let nothing = part.total_tokens() == 0 && part.cost().0 == 0 && part.turns == 0;
    (!nothing).then_some(part)
}

/// Brings usage, childUsage, treeUsage and budgetExceeded up to date. `current` is the session's running job as
/// the store has it (None when no job runs or it is gone: then the last seen usage stands); `children` are the
/// sessions whose current parent is this one; `parent_now` tells, for a recorded child UID, whether that session
/// still exists and under which parent (None: gone).
pub fn roll_up(
    status: &mut AgentSessionStatus,
    session: &AgentSession,
    current: Option<&AgentJob>,
    children: &[&AgentSession],
    parent_now: &dyn Fn(&str, &str) -> Option<Option<String>>,
) {
    if let Some(running) = current.and_then(|j| j.status.as_ref()?.usage.as_ref())
        && status.current_job.as_deref() == current.map(|j| j.name_any()).as_deref()
    {
        let ended = status.ended_jobs_usage.clone().unwrap_or_default();
        status.usage = Some(ended.plus(running));
    }

    let me = session.name_any();
    // Children re-parented elsewhere leave; children gone stay.
    status
        .child_usage
        .retain(|c| match parent_now(&c.session, &c.uid) {
            None => true,
            Some(parent) => parent.as_deref() == Some(me.as_str()),
        });
    for child in children {
        let (Some(uid), Some(tree)) = (
            child.uid(),
            child.status.as_ref().and_then(|s| s.tree_usage.clone()),
        ) else {
            continue;
        };
        match status.child_usage.iter_mut().find(|c| c.uid == uid) {
            Some(entry) => entry.usage = tree,
            None => status.child_usage.push(ChildUsage {
                session: child.name_any(),
                uid,
                usage: tree,
            }),
        }
    }
    status
        .child_usage
        .sort_by(|a, b| (&a.session, &a.uid).cmp(&(&b.session, &b.uid)));

    let parts = status
        .usage
        .iter()
        .chain(status.child_usage.iter().map(|c| &c.usage));
    if let Some(tree) = Usage::sum(parts) {
        status.tree_usage = Some(tree);
    }

    // Once passed, a budget stays passed (usage only grows): the first message stands, so the status does not
    // change with every later report.
    if status.budget_exceeded.is_none()
        && let (Some(budget), Some(tree)) = (&session.spec.budget, &status.tree_usage)
    {
        status.budget_exceeded = budget.exceeded_by(tree);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::yaml;

    fn usage(tokens: i64, cost: &str) -> Usage {
        Usage {
            input_tokens: tokens,
            cost_usd: Some(cost.into()),
            turns: 1,
            ..Default::default()
        }
    }

    fn job(name: &str, used: Option<Usage>) -> AgentJob {
        let mut j: AgentJob = yaml(&format!(
            "metadata: {{name: {name}, namespace: ns}}\nspec: {{type: Start, sessionName: s, prompt: p}}"
        ));
        j.status = Some(crds::AgentJobStatus {
            usage: used,
            ..Default::default()
        });
        j
    }

    fn session(name: &str, uid: &str, budget: &str, tree: Option<Usage>) -> AgentSession {
        let mut s: AgentSession = yaml(&format!(
            "metadata: {{name: {name}, namespace: ns, uid: {uid}}}\nspec: {{{budget}}}"
        ));
        s.status = Some(AgentSessionStatus {
            tree_usage: tree,
            parent_session_name: Some("root".into()),
            ..Default::default()
        });
        s
    }

    fn nobody(_: &str, _: &str) -> Option<Option<String>> {
        None
    }

    #[test]
    fn a_jobs_usage_counts_once_when_it_ends() {
        let root = session("root", "u-root", "", None);
        let mut status = AgentSessionStatus {
            current_job: Some("j1".into()),
            ..Default::default()
        };
        let j1 = job("j1", Some(usage(10, "0.01")));
        roll_up(&mut status, &root, Some(&j1), &[], &nobody);
        assert_eq!(status.usage, Some(usage(10, "0.01")));
        // A later report replaces the earlier one.
        let j1 = job("j1", Some(usage(30, "0.03")));
        roll_up(&mut status, &root, Some(&j1), &[], &nobody);
        roll_up(&mut status, &root, Some(&j1), &[], &nobody);
        assert_eq!(status.usage, Some(usage(30, "0.03")));
        // It ends: settled once; the session no longer runs it, so seeing it again adds nothing.
        settle(&mut status, Some(&j1));
        status.current_job = None;
        roll_up(&mut status, &root, Some(&j1), &[], &nobody);
        assert_eq!(status.ended_jobs_usage, Some(usage(30, "0.03")));
        // The next job adds to it.
        status.current_job = Some("j2".into());
        let j2 = job("j2", Some(usage(5, "0.005")));
        roll_up(&mut status, &root, Some(&j2), &[], &nobody);
        let mut both = usage(35, "0.035");
        both.turns = 2;
        assert_eq!(status.usage, Some(both.clone()));
        assert_eq!(status.tree_usage, Some(both.clone()));
        // j2 deleted before its end was seen: what the session last saw of it is kept.
        settle(&mut status, None);
        assert_eq!(status.ended_jobs_usage, Some(both));
    }

    #[test]
    fn children_are_replaced_not_added_kept_when_gone_and_dropped_when_reparented() {
        let root = session("root", "u-root", "budget: {maxCostUSD: \"0.10\"}", None);
        let mut status = AgentSessionStatus {
            usage: Some(usage(1, "0.01")),
            ..Default::default()
        };
        let a = session("a", "u-a", "", Some(usage(10, "0.02")));
        let b = session("b", "u-b", "", Some(usage(20, "0.03")));
        roll_up(&mut status, &root, None, &[&a, &b], &nobody);
        roll_up(&mut status, &root, None, &[&a, &b], &nobody);
        let tree = status.tree_usage.clone().unwrap();
        assert_eq!(
            (tree.input_tokens, tree.cost_usd.as_deref()),
            (31, Some("0.06"))
        );
        assert_eq!(status.budget_exceeded, None);
        // a grew; b was deleted (gone from the store and from the children).
        let a = session("a", "u-a", "", Some(usage(40, "0.08")));
        roll_up(&mut status, &root, None, &[&a], &nobody);
        let tree = status.tree_usage.clone().unwrap();
        assert_eq!(
            (tree.input_tokens, tree.cost_usd.as_deref()),
            (61, Some("0.12"))
        );
        assert_eq!(
            status.budget_exceeded.as_deref(),
            Some("maxCostUSD 0.1 (spent 0.12)")
        );
        // a re-parented elsewhere: dropped; the budget message stays.
        let elsewhere = |name: &str, _: &str| (name == "a").then(|| Some("other".to_string()));
        roll_up(&mut status, &root, None, &[], &elsewhere);
        assert_eq!(status.child_usage.len(), 1);
        assert_eq!(status.tree_usage.as_ref().unwrap().input_tokens, 21);
        assert!(status.budget_exceeded.is_some());
    }
}
