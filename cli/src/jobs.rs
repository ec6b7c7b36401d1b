//! `start`, `resume`, `stop` and `--wait`: AgentJobs made and removed as the gateway makes and removes them, after
//! checking locally everything that can be checked, so that a bad request creates nothing.

use crds::{AgentBlueprint, AgentJob, AgentSession, JobPhase, JobType, SessionPhase};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::context::Cluster;
use crate::error::{CliError, Result};
use crate::live::Live;
use crate::validate;

/// Field manager of the objects this command applies.
pub const FIELD_MANAGER: &str = "kubectl-agents";

/// What to create.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub job_type: JobType,
    pub session: String,
    pub prompt: String,
    pub blueprint: Option<String>,
    pub parent: Option<String>,
    pub callback: bool,
    pub project_dir: Option<String>,
}

impl NewJob {
    /// Everything that needs no API server.
    pub fn check(&self) -> Result<()> {
        validate::session_name("session name", &self.session)?;
        if let Some(b) = &self.blueprint {
            validate::blueprint_name(b)?;
        }
        if let Some(p) = &self.parent {
            validate::session_name("--parent", p)?;
            if *p == self.session {
                return Err(CliError::Invalid(format!(
                    "--parent must differ from the session: '{p}' cannot be its own parent"
                )));
            }
        }
        if self.callback && self.parent.is_none() {
            return Err(CliError::Invalid(
                "--callback needs --parent: a callback needs a parent to call back".into(),
            ));
        }
        if let Some(d) = &self.project_dir {
            validate::project_dir(d)?;
        }
        validate::prompt(&self.prompt)
    }

    /// The AgentJob, as a manifest for server-side apply.
    pub fn manifest(&self, name: &str) -> serde_json::Value {
        let mut spec = json!({
            "type": self.job_type.as_str(),
            "sessionName": self.session,
            "prompt": self.prompt,
        });
        let fields = [
            ("blueprint", self.blueprint.clone().map(Into::into)),
            ("parentSessionName", self.parent.clone().map(Into::into)),
            ("callback", self.callback.then_some(true.into())),
            ("projectDir", self.project_dir.clone().map(Into::into)),
        ];
        for (key, value) in fields {
            if let Some(v) = value {
                spec[key] = v;
            }
        }
        json!({
            "apiVersion": format!("{}/{}", crds::GROUP, crds::VERSION),
            "kind": "AgentJob",
            "metadata": {"name": name},
            "spec": spec,
        })
    }
}

/// Checks `job` against the cluster (the blueprint exists; a Start's session does not, a Resume's does; the parent
/// exists), then applies it. Returns the job's name.
pub async fn create(cluster: &Cluster, job: &NewJob) -> Result<String> {
    job.check()?;
    let ns = &cluster.namespace;
    let sessions: Api<AgentSession> = Api::namespaced(cluster.client.clone(), ns);
    let existing = sessions
        .get_opt(&job.session)
        .await
        .map_err(|e| CliError::kube(format!("reading session {}", job.session), e))?;
    match (job.job_type, existing) {
        (JobType::Start, Some(_)) => {
            return Err(CliError::Invalid(format!(
                "session '{}' already exists in namespace {ns}: continue it with `kubectl agents resume {}`",
                job.session, job.session
            )));
        }
        (JobType::Resume, None) => {
            return Err(CliError::NotFound(format!(
                "session '{}' does not exist in namespace {ns}: start it with `kubectl agents start`",
                job.session
            )));
        }
        _ => {}
    }
    if let Some(b) = &job.blueprint {
        let blueprints: Api<AgentBlueprint> = Api::namespaced(cluster.client.clone(), ns);
        let found = blueprints
            .get_opt(b)
            .await
            .map_err(|e| CliError::kube(format!("reading blueprint {b}"), e))?;
        if found.is_none() {
            let known: Vec<String> = blueprints
                .list(&Default::default())
                .await
                .map(|l| l.items.iter().map(|b| b.name_any()).collect())
                .unwrap_or_default();
            let known = if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            };
            return Err(CliError::NotFound(format!(
                "blueprint '{b}' does not exist in namespace {ns} (blueprints there: {known})"
            )));
        }
    }
    if let Some(p) = &job.parent {
        let found = sessions
            .get_opt(p)
            .await
            .map_err(|e| CliError::kube(format!("reading session {p}"), e))?;
        if found.is_none() {
            return Err(CliError::NotFound(format!(
                "parent session '{p}' does not exist in namespace {ns}"
            )));
        }
    }
    let name = crate::naming::job_name(&job.session, crate::naming::now_millis());
    let jobs: Api<AgentJob> = Api::namespaced(cluster.client.clone(), ns);
    jobs.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Apply(job.manifest(&name)),
    )
    .await
    .map_err(|e| CliError::kube(format!("creating AgentJob {name}"), e))?;
    Ok(name)
}

/// Stops a session as the gateway's stop_agent_session does: deletes its jobs that have not ended (the running one
/// and any waiting); the operator stops their Pods and calls the parent back with a Stopped outcome. Returns the
/// jobs deleted.
pub async fn stop(cluster: &Cluster, session: &str) -> Result<Vec<String>> {
    validate::session_name("session name", session)?;
    let ns = &cluster.namespace;
    let sessions: Api<AgentSession> = Api::namespaced(cluster.client.clone(), ns);
    if sessions
        .get_opt(session)
        .await
        .map_err(|e| CliError::kube(format!("reading session {session}"), e))?
        .is_none()
    {
        return Err(CliError::NotFound(format!(
            "session '{session}' does not exist in namespace {ns}"
        )));
    }
    let jobs: Api<AgentJob> = Api::namespaced(cluster.client.clone(), ns);
    let all = jobs
        .list(&Default::default())
        .await
        .map_err(|e| CliError::kube("listing AgentJobs", e))?;
    let mut stopped = Vec::new();
    for job in all.items.iter().filter(|j| j.spec.session_name == session) {
        let ended = job
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(JobPhase::is_finished);
        if ended {
            continue;
        }
        match jobs
            .delete(&job.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => stopped.push(job.name_any()),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(CliError::kube(
                    format!("stopping AgentJob {}", job.name_any()),
                    e,
                ));
            }
        }
    }
    stopped.sort();
    Ok(stopped)
}

/// How a waited-for job ended; the process exits with `code()`.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded(String),
    Failed(String),
    Stopped(String),
}

impl Outcome {
    pub fn code(&self) -> i32 {
        match self {
            Outcome::Succeeded(_) => 0,
            Outcome::Failed(_) => 1,
            Outcome::Stopped(_) => 2,
        }
    }
}

/// Watches job `name` until it ends. A job deleted before it ended was stopped.
pub async fn wait(cluster: &Cluster, name: &str, session: &str) -> Result<Outcome> {
    let ns = &cluster.namespace;
    let mut live = Live::start(&cluster.client, Some(ns)).await?;
    loop {
        let snap = live.snapshot();
        let job = snap.jobs.iter().find(|j| j.name_any() == name);
        let status = job.and_then(|j| j.status.clone()).unwrap_or_default();
        let reason = status.reason.clone().unwrap_or_default();
        match (job, status.phase) {
            (None, _) => {
                let phase = snap
                    .session(ns, session)
                    .and_then(|s| s.status.as_ref()?.phase);
                return Ok(match phase {
                    Some(SessionPhase::Stopped) => {
                        Outcome::Stopped(format!("job {name} was stopped"))
                    }
                    _ => Outcome::Stopped(format!("job {name} was deleted before it ended")),
                });
            }
            (Some(_), Some(JobPhase::Succeeded)) => {
                return Ok(Outcome::Succeeded(status.result.unwrap_or_default()));
            }
            (Some(_), Some(JobPhase::Failed)) if reason == "Stopped" => {
                return Ok(Outcome::Stopped(format!(
                    "job {name} was stopped: {}",
                    status.error.unwrap_or_default()
                )));
            }
            (Some(_), Some(JobPhase::Failed)) => {
                return Ok(Outcome::Failed(format!(
                    "job {name} failed ({reason}): {}",
                    status.error.unwrap_or_else(|| "no error recorded".into())
                )));
            }
            _ => live.changed().await?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> NewJob {
        NewJob {
            job_type: JobType::Start,
            session: "fix-bug".into(),
            prompt: "Fix it.".into(),
            blueprint: Some("claude".into()),
            parent: None,
            callback: false,
            project_dir: None,
        }
    }

    #[test]
    fn bad_requests_are_refused_before_any_call() {
        assert!(start().check().is_ok());
        let bad = [
            NewJob {
                session: "Fix_Bug".into(),
                ..start()
            },
            NewJob {
                prompt: " ".into(),
                ..start()
            },
            NewJob {
                blueprint: Some("No".into()),
                ..start()
            },
            NewJob {
                callback: true,
                ..start()
            },
            NewJob {
                parent: Some("fix-bug".into()),
                ..start()
            },
            NewJob {
                project_dir: Some("../x".into()),
                ..start()
            },
        ];
        for job in bad {
            assert!(job.check().is_err(), "{job:?}");
        }
    }

    #[test]
    fn the_manifest_names_only_what_was_given() {
        let m = NewJob {
            parent: Some("boss".into()),
            callback: true,
            ..start()
        }
        .manifest("fix-bug-00000001");
        assert_eq!(
            m,
            json!({
                "apiVersion": "agentorchestrator.dev/v1alpha1", "kind": "AgentJob",
                "metadata": {"name": "fix-bug-00000001"},
                "spec": {"type": "Start", "sessionName": "fix-bug", "prompt": "Fix it.", "blueprint": "claude",
                         "parentSessionName": "boss", "callback": true},
            })
        );
    }
}
