//! `kubectl agents logs`: the Pod logs of a session's jobs in run order, each under a heading with the job's
//! prompt (a callback resume's prompt is the callback message), Claude Code's stream-json rendered as text by
//! `agent_stream`. `-f` follows the running job, then the session's next jobs, until the tree under the session is
//! idle.

use std::collections::HashSet;
use std::io::Write;

use agent_stream::{Message, Rendering};
use crds::{AgentJob, JobPhase};
use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use kube::{Api, ResourceExt};

use crate::context::Cluster;
use crate::error::{CliError, Result};
use crate::live::Live;
use crate::snapshot::Snapshot;

/// The agent's container in a job's Pod (the operator's name for it).
const AGENT_CONTAINER: &str = "agent";

#[derive(Debug, Clone)]
pub struct Options {
    pub session: String,
    pub job: Option<String>,
    pub follow: bool,
    pub raw: bool,
    pub full: bool,
}

pub async fn run(cluster: &Cluster, opts: &Options) -> Result<()> {
    let ns = &cluster.namespace;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let mut live = Live::start(&cluster.client, Some(ns)).await?;
    let first = live.snapshot();
    if first.session(ns, &opts.session).is_none() && first.jobs_of(ns, &opts.session).is_empty() {
        return Err(CliError::NotFound(format!(
            "session '{}' does not exist in namespace {ns}",
            opts.session
        )));
    }
    if let Some(job) = &opts.job
        && !first
            .jobs_of(ns, &opts.session)
            .iter()
            .any(|j| j.name_any() == *job)
    {
        return Err(CliError::NotFound(format!(
            "job '{job}' is not a job of session '{}' in namespace {ns}",
            opts.session
        )));
    }
    let mut shown: HashSet<String> = HashSet::new();
    let mut out = std::io::stdout().lock();
    loop {
        let snap = live.snapshot();
        let next = jobs_wanted(&snap, ns, opts)
            .into_iter()
            .find(|j| !shown.contains(&j.name_any()));
        match next {
            Some(job) => {
                let name = job.name_any();
                let phase = job.status.as_ref().and_then(|s| s.phase);
                let ended = phase.is_some_and(JobPhase::is_finished);
                if !opts.follow || ended {
                    heading(&mut out, &job, opts)?;
                    let text = whole_log(&pods, &job).await?;
                    for line in text.lines() {
                        print_line(&mut out, line, opts)?;
                    }
                    shown.insert(name);
                } else if phase == Some(JobPhase::Running) {
                    heading(&mut out, &job, opts)?;
                    let followed = follow_log(&pods, &job, &mut out, opts).await?;
                    // The log ends with the container; the job ends a moment later.
                    while live
                        .snapshot()
                        .jobs
                        .iter()
                        .find(|j| j.name_any() == name)
                        .is_some_and(|j| {
                            !j.status
                                .as_ref()
                                .and_then(|s| s.phase)
                                .is_some_and(JobPhase::is_finished)
                        })
                    {
                        live.changed().await?;
                    }
                    if !followed {
                        // The log could not be streamed yet (container starting): read it whole now it has ended.
                        let ended = live
                            .snapshot()
                            .jobs
                            .into_iter()
                            .find(|j| j.name_any() == name);
                        let text = whole_log(&pods, ended.as_ref().unwrap_or(&job)).await?;
                        for line in text.lines() {
                            print_line(&mut out, line, opts)?;
                        }
                    }
                    shown.insert(name);
                } else {
                    live.changed().await?; // Pending: wait for its Pod
                }
            }
            None => {
                let done =
                    !opts.follow || opts.job.is_some() || snap.tree_is_idle(ns, &opts.session);
                if done {
                    return Ok(());
                }
                live.changed().await?;
            }
        }
    }
}

fn jobs_wanted(snap: &Snapshot, ns: &str, opts: &Options) -> Vec<AgentJob> {
    snap.jobs_of(ns, &opts.session)
        .into_iter()
        .filter(|j| opts.job.as_ref().is_none_or(|want| j.name_any() == *want))
        .cloned()
        .collect()
}

fn pod_of(job: &AgentJob) -> String {
    job.status
        .as_ref()
        .and_then(|s| s.pod_name.clone())
        .unwrap_or_else(|| job.name_any())
}

fn heading(out: &mut impl Write, job: &AgentJob, opts: &Options) -> Result<()> {
    let status = job.status.clone().unwrap_or_default();
    let phase = status.phase.map(|p| p.as_str()).unwrap_or("Pending");
    let mut title = format!(
        "=== {} ({}, {phase}",
        job.name_any(),
        job.spec.job_type.as_str()
    );
    if let Some(reason) = status.reason.filter(|_| phase == "Failed") {
        title.push_str(&format!(", {reason}"));
    }
    title.push_str(") ===");
    let prompt = Rendering { full: opts.full }.prompt(&job.spec.prompt);
    write_out(out, &format!("{title}\n{prompt}\n"))
}

fn print_line(out: &mut impl Write, line: &str, opts: &Options) -> Result<()> {
    if opts.raw {
        return write_out(out, &format!("{line}\n"));
    }
    match Message::parse(line) {
        Some(message) => match (Rendering { full: opts.full }).message(&message) {
            Some(text) => write_out(out, &format!("{text}\n")),
            None => Ok(()),
        },
        // The runner's own lines share the log: kept as they are.
        None if !line.trim().is_empty() => write_out(out, &format!("{line}\n")),
        None => Ok(()),
    }
}

fn write_out(out: &mut impl Write, text: &str) -> Result<()> {
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| CliError::Other(format!("writing output: {e}")))
}

fn params(follow: bool) -> LogParams {
    LogParams {
        container: Some(AGENT_CONTAINER.into()),
        follow,
        ..Default::default()
    }
}

async fn whole_log(pods: &Api<Pod>, job: &AgentJob) -> Result<String> {
    let pod = pod_of(job);
    match pods.logs(&pod, &params(false)).await {
        Ok(text) => Ok(text),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(format!("(no log: Pod {pod} is gone)")),
        Err(kube::Error::Api(s)) if s.code == 400 => Ok(format!("(no log yet: {})", s.message)),
        Err(e) => Err(CliError::kube(format!("reading the log of Pod {pod}"), e)),
    }
}

/// Streams the log of a running job's Pod to its end. False when it cannot be streamed (yet): the caller reads it
/// whole once the job has ended.
async fn follow_log(
    pods: &Api<Pod>,
    job: &AgentJob,
    out: &mut impl Write,
    opts: &Options,
) -> Result<bool> {
    let pod = pod_of(job);
    let stream = match pods.log_stream(&pod, &params(true)).await {
        Ok(s) => s,
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 400 => return Ok(false),
        Err(e) => return Err(CliError::kube(format!("following the log of Pod {pod}"), e)),
    };
    let mut lines = stream.lines();
    while let Some(line) = lines
        .try_next()
        .await
        .map_err(|e| CliError::Other(format!("reading the log of Pod {pod}: {e}")))?
    {
        print_line(out, &line, opts)?;
    }
    Ok(true)
}
