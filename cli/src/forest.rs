//! `kubectl agents tree`: sessions drawn as the trees their parents make, one line each: phase mark, name, phase,
//! current job, callbacks waiting, jobs, age and, once usage is recorded, cost. The same trees as data for `-o`.

use crds::{AgentSession, SessionPhase};
use kube::ResourceExt;
use serde::Serialize;

use crate::snapshot::Snapshot;

/// How lines are drawn.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub ascii: bool,
    /// Now, for ages.
    pub now: jiff::Timestamp,
}

/// One session and its descendants, as data.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub namespace: String,
    pub name: String,
    pub phase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_job: Option<String>,
    pub callbacks_waiting: i64,
    pub jobs: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(rename = "costUSD", skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<String>,
    pub children: Vec<Node>,
}

/// The trees to show: the one under `root` (None when that session does not exist), or every root's.
pub fn trees(snap: &Snapshot, namespace: &str, root: Option<&str>) -> Option<Vec<Node>> {
    match root {
        Some(name) => Some(vec![node(snap, snap.session(namespace, name)?)]),
        None => Some(snap.roots().into_iter().map(|s| node(snap, s)).collect()),
    }
}

fn node(snap: &Snapshot, s: &AgentSession) -> Node {
    let ns = s.namespace().unwrap_or_default();
    let status = s.status.clone().unwrap_or_default();
    Node {
        namespace: ns.clone(),
        name: s.name_any(),
        phase: status.phase.map(|p| p.as_str().to_string()),
        reason: status.reason,
        current_job: status.current_job,
        callbacks_waiting: status.callback_queue.len() as i64,
        jobs: status.job_count,
        created: s
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string()),
        cost_usd: status.usage.and_then(|u| u.cost_usd),
        children: snap
            .children_of(&ns, &s.name_any())
            .into_iter()
            .map(|c| node(snap, c))
            .collect(),
    }
}

/// The trees as text. Namespaces get a heading when there is more than one.
pub fn render(trees: &[Node], style: Style) -> String {
    let mut out = String::new();
    let namespaces: std::collections::BTreeSet<&str> =
        trees.iter().map(|t| t.namespace.as_str()).collect();
    let mut heading = None;
    for tree in trees {
        if namespaces.len() > 1 && heading != Some(tree.namespace.as_str()) {
            if heading.is_some() {
                out.push('\n');
            }
            out.push_str(&format!("namespace {}\n", tree.namespace));
            heading = Some(tree.namespace.as_str());
        }
        draw(tree, "", None, style, &mut out);
    }
    out
}

/// One line for `n`, then its children; `last` is None for a root, else whether `n` is its parent's last child.
fn draw(n: &Node, indent: &str, last: Option<bool>, style: Style, out: &mut String) {
    let (branch, last_branch, bar) = if style.ascii {
        ("|-- ", "`-- ", "|   ")
    } else {
        ("├── ", "└── ", "│   ")
    };
    let connector = match last {
        None => "",
        Some(false) => branch,
        Some(true) => last_branch,
    };
    out.push_str(&format!("{indent}{connector}{}\n", line(n, style)));
    let child_indent = match last {
        None => String::new(),
        Some(false) => format!("{indent}{bar}"),
        Some(true) => format!("{indent}    "),
    };
    for (i, child) in n.children.iter().enumerate() {
        draw(
            child,
            &child_indent,
            Some(i + 1 == n.children.len()),
            style,
            out,
        );
    }
}

fn line(n: &Node, style: Style) -> String {
    let phase = n.phase.as_deref().and_then(phase_of);
    let mut parts = vec![format!("{} {}", mark(phase, style.ascii), n.name)];
    let mut shown = n.phase.clone().unwrap_or_else(|| "Unknown".into());
    if matches!(phase, Some(SessionPhase::Failed | SessionPhase::Stopped))
        && let Some(reason) = &n.reason
    {
        shown.push_str(&format!(" ({reason})"));
    }
    parts.push(shown);
    if let Some(job) = &n.current_job {
        parts.push(format!("running {job}"));
    }
    if n.callbacks_waiting > 0 {
        let s = if n.callbacks_waiting == 1 { "" } else { "s" };
        parts.push(format!("{} callback{s} waiting", n.callbacks_waiting));
    }
    parts.push(format!("jobs {}", n.jobs));
    if let Some(created) = n
        .created
        .as_deref()
        .and_then(|c| c.parse::<jiff::Timestamp>().ok())
    {
        parts.push(format!("age {}", age(style.now.duration_since(created))));
    }
    if let Some(cost) = &n.cost_usd {
        parts.push(format!("cost ${cost}"));
    }
    parts.join("  ")
}

fn phase_of(p: &str) -> Option<SessionPhase> {
    [
        SessionPhase::Pending,
        SessionPhase::Running,
        SessionPhase::Idle,
        SessionPhase::Failed,
        SessionPhase::Stopped,
    ]
    .into_iter()
    .find(|x| x.as_str() == p)
}

fn mark(phase: Option<SessionPhase>, ascii: bool) -> &'static str {
    match (phase, ascii) {
        (Some(SessionPhase::Pending), false) => "○",
        (Some(SessionPhase::Running), false) => "●",
        (Some(SessionPhase::Idle), false) => "✔",
        (Some(SessionPhase::Failed), false) => "✖",
        (Some(SessionPhase::Stopped), false) => "■",
        (None, false) => "?",
        (Some(SessionPhase::Pending), true) => "o",
        (Some(SessionPhase::Running), true) => "*",
        (Some(SessionPhase::Idle), true) => "+",
        (Some(SessionPhase::Failed), true) => "x",
        (Some(SessionPhase::Stopped), true) => "-",
        (None, true) => "?",
    }
}

/// An age as kubectl shows one: `42s`, `3m12s`, `2h5m`, `3d4h`.
pub fn age(d: jiff::SignedDuration) -> String {
    let s = d.as_secs().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixtures::*;
    use crds::JobPhase;

    fn snap() -> Snapshot {
        let mut running = session("root", None, SessionPhase::Running, 0);
        let st = running.status.as_mut().unwrap();
        st.current_job = Some("root-x".into());
        st.job_count = 2;
        st.usage = Some(crds::Usage {
            cost_usd: Some("0.0132".into()),
            ..Default::default()
        });
        let mut failed = session("a", Some("root"), SessionPhase::Failed, 1);
        failed.status.as_mut().unwrap().reason = Some("PodFailed".into());
        Snapshot {
            sessions: vec![
                running,
                failed,
                session("b", Some("root"), SessionPhase::Idle, 2),
                session("c", Some("a"), SessionPhase::Stopped, 3),
            ],
            jobs: vec![job("root-x", "root", None, JobPhase::Running, 0)],
        }
    }

    #[test]
    fn trees_are_drawn_with_box_lines_or_ascii() {
        let now = at(3725).0;
        let trees = trees(&snap(), "ns", None).unwrap();
        assert_eq!(
            render(&trees, Style { ascii: false, now }),
            "● root  Running  running root-x  jobs 2  age 1h2m  cost $0.0132\n\
             ├── ✖ a  Failed (PodFailed)  jobs 0  age 1h2m\n\
             │   └── ■ c  Stopped  jobs 0  age 1h2m\n\
             └── ✔ b  Idle  jobs 0  age 1h2m\n"
        );
        assert_eq!(
            render(&trees, Style { ascii: true, now }),
            "* root  Running  running root-x  jobs 2  age 1h2m  cost $0.0132\n\
             |-- x a  Failed (PodFailed)  jobs 0  age 1h2m\n\
             |   `-- - c  Stopped  jobs 0  age 1h2m\n\
             `-- + b  Idle  jobs 0  age 1h2m\n"
        );
    }

    #[test]
    fn one_tree_by_its_root() {
        let sub = trees(&snap(), "ns", Some("a")).unwrap();
        assert_eq!(sub.len(), 1);
        assert_eq!(
            sub[0]
                .children
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["c"]
        );
        assert_eq!(trees(&snap(), "ns", Some("nope")), None);
    }

    #[test]
    fn ages() {
        let s = jiff::SignedDuration::from_secs;
        assert_eq!(age(s(42)), "42s");
        assert_eq!(age(s(192)), "3m12s");
        assert_eq!(age(s(7500)), "2h5m");
        assert_eq!(age(s(3 * 86400 + 4 * 3600)), "3d4h");
    }
}
