//! `describe` and `result`: one session with its jobs in run order, its queue, its conditions and the Events of it
//! and its jobs; or only its last result.

use crds::{AgentJob, AgentSession};
use k8s_openapi::api::core::v1::Event;
use kube::{Api, ResourceExt};
use serde::Serialize;

use crate::context::Cluster;
use crate::error::{CliError, Result};
use crate::forest::age;
use crate::snapshot::run_order;

/// Everything `describe` shows, as data for `-o`.
#[derive(Debug, Serialize)]
pub struct Description {
    pub session: AgentSession,
    pub jobs: Vec<AgentJob>,
    pub events: Vec<Event>,
}

pub async fn session(cluster: &Cluster, name: &str) -> Result<AgentSession> {
    crate::validate::session_name("session name", name)?;
    let api: Api<AgentSession> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    api.get_opt(name)
        .await
        .map_err(|e| CliError::kube(format!("reading session {name}"), e))?
        .ok_or_else(|| {
            CliError::NotFound(format!(
                "session '{name}' does not exist in namespace {}",
                cluster.namespace
            ))
        })
}

pub async fn describe(cluster: &Cluster, name: &str) -> Result<Description> {
    let session = session(cluster, name).await?;
    let jobs: Api<AgentJob> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut jobs: Vec<AgentJob> = jobs
        .list(&Default::default())
        .await
        .map_err(|e| CliError::kube("listing AgentJobs", e))?
        .items
        .into_iter()
        .filter(|j| j.spec.session_name == name)
        .collect();
    jobs.sort_by(run_order);
    let mut involved: std::collections::HashSet<String> =
        jobs.iter().map(|j| j.name_any()).collect();
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let events: Vec<Event> = events
        .list(&Default::default())
        .await
        .map_err(|e| CliError::kube("listing Events", e))?
        .items;
    // A job's start and end are Events on the job alone; a job deleted since is still named by the session's
    // status or by the related object of the session's own Events, so its Events stay in the session's story.
    let of_session = |e: &&Event| {
        e.involved_object.kind.as_deref() == Some("AgentSession")
            && e.involved_object.name.as_deref() == Some(name)
    };
    involved.extend(
        events
            .iter()
            .filter(of_session)
            .filter_map(|e| e.related.as_ref())
            .filter(|r| r.kind.as_deref() == Some("AgentJob"))
            .filter_map(|r| r.name.clone()),
    );
    if let Some(st) = &session.status {
        involved.extend(st.last_job.iter().chain(st.current_job.iter()).cloned());
    }
    involved.insert(name.to_string());
    let mut events: Vec<Event> = events
        .into_iter()
        .filter(|e| {
            let kind = e.involved_object.kind.as_deref().unwrap_or_default();
            matches!(kind, "AgentSession" | "AgentJob")
                && e.involved_object
                    .name
                    .as_ref()
                    .is_some_and(|n| involved.contains(n))
        })
        .collect();
    events.sort_by_key(event_time);
    Ok(Description {
        session,
        jobs,
        events,
    })
}

fn event_time(e: &Event) -> Option<jiff::Timestamp> {
    e.last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or(e.event_time.as_ref().map(|t| t.0))
        .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn ago(t: Option<jiff::Timestamp>, now: jiff::Timestamp) -> String {
    t.map(|t| format!("{} ago", age(now.duration_since(t))))
        .unwrap_or_else(|| "-".into())
}

/// The description as text, in kubectl describe's manner.
pub fn render(d: &Description, now: jiff::Timestamp) -> String {
    let s = &d.session;
    let st = s.status.clone().unwrap_or_default();
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut out = String::new();
    let mut field = |k: &str, v: String| out.push_str(&format!("{:<18}{v}\n", format!("{k}:")));
    field("Session", s.name_any());
    field("Namespace", s.namespace().unwrap_or_default());
    field("Blueprint", dash(s.spec.blueprint.clone()));
    field("Parent", dash(st.parent_session_name.clone()));
    let phase = st
        .phase
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "Unknown".into());
    field(
        "Phase",
        match &st.reason {
            Some(r) => format!("{phase} ({r})"),
            None => phase,
        },
    );
    field("Current job", dash(st.current_job.clone()));
    field("Last job", dash(st.last_job.clone()));
    field("Jobs", st.job_count.to_string());
    field("Agent session id", dash(st.agent_session_id.clone()));
    if let Some(u) = &st.usage {
        field(
            "Usage",
            format!(
                "{} in, {} out, {} cache read, {} cache write tokens; cost ${}",
                u.input_tokens,
                u.output_tokens,
                u.cache_read_tokens,
                u.cache_write_tokens,
                u.cost_usd.as_deref().unwrap_or("?")
            ),
        );
    }
    field(
        "Created",
        ago(s.metadata.creation_timestamp.as_ref().map(|t| t.0), now),
    );

    out.push_str("\nJobs (in run order):\n");
    if d.jobs.is_empty() {
        out.push_str("  none\n");
    }
    for j in &d.jobs {
        let js = j.status.clone().unwrap_or_default();
        let mut line = format!(
            "  {}  {}  {}",
            j.name_any(),
            j.spec.job_type.as_str(),
            js.phase.map(|p| p.as_str()).unwrap_or("Pending")
        );
        if let Some(r) = &js.reason {
            line.push_str(&format!(" ({r})"));
        }
        if let Some(cb) = &js.callback {
            line.push_str(&format!("  callback {:?}", cb.state));
        }
        line.push_str(&format!(
            "  {}",
            ago(j.metadata.creation_timestamp.as_ref().map(|t| t.0), now)
        ));
        out.push_str(&line);
        out.push('\n');
        if let Some(e) = &js.error {
            out.push_str(&format!(
                "    error: {}\n",
                e.lines().next().unwrap_or_default()
            ));
        }
    }

    out.push_str("\nCallback queue:\n");
    if st.callback_queue.is_empty() {
        out.push_str("  empty\n");
    }
    for q in &st.callback_queue {
        out.push_str(&format!(
            "  {} (job {})  {:?}  queued {}\n",
            q.child_session,
            q.child_job,
            q.outcome,
            ago(Some(q.enqueue_time.0), now)
        ));
    }

    out.push_str("\nConditions:\n");
    if st.conditions.is_empty() {
        out.push_str("  none\n");
    }
    for c in &st.conditions {
        out.push_str(&format!(
            "  {}={}  {}  {}\n",
            c.type_, c.status, c.reason, c.message
        ));
    }

    out.push_str("\nEvents:\n");
    if d.events.is_empty() {
        out.push_str("  none\n");
    }
    for e in &d.events {
        out.push_str(&format!(
            "  {}  {}  {}/{}  {}  {}\n",
            ago(event_time(e), now),
            e.type_.as_deref().unwrap_or("-"),
            e.involved_object.kind.as_deref().unwrap_or("-"),
            e.involved_object.name.as_deref().unwrap_or("-"),
            e.reason.as_deref().unwrap_or("-"),
            e.message.as_deref().unwrap_or("").trim()
        ));
    }

    if let Some(r) = &st.result {
        out.push_str("\nResult:\n");
        for l in r.lines() {
            out.push_str(&format!("  {l}\n"));
        }
    }
    out
}
