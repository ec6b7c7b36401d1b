//! What each tool does against the cluster: reads from the caches, writes AgentJobs, waits by watching. Argument
//! checks happen before anything here touches the API (see plan.rs and validate.rs).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crds::{AgentJob, JobPhase, JobType, SessionPhase};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, ResourceExt};
use tokio::time::Instant;

use crate::access::Access;
use crate::auth::{Authenticator, Caller};
use crate::domain::{self, SessionState};
use crate::error::ToolError;
use crate::events::Events;
use crate::format::{self, ResponseFormat, SessionRow};
use crate::metrics::Metrics;
use crate::naming;
use crate::plan::{self, JobRequest};
use crate::reach::{self, CallerKind, Reach};
use crate::store::Stores;
use crate::validate;

/// Longest wait of a sync-mode start or resume.
pub const SYNC_WAIT: Duration = Duration::from_secs(600);
pub const FIELD_MANAGER: &str = "mcp-gateway";

/// Tool names, as the refusal metric labels them.
const RESUME: &str = "resume_agent_session";
const STOP: &str = "stop_agent_session";
const STATUS: &str = "get_agent_session_status";
const RESULT: &str = "get_agent_session_result";
const START: &str = "start_agent_session";

/// Reasons of the tool refusal metric for people's calls (reach refusals have theirs in reach.rs).
pub const RBAC_DENIED: &str = "rbac_denied";
pub const PERSON_CALLBACK: &str = "person_callback";

pub struct App {
    pub client: Client,
    pub stores: Stores,
    pub metrics: Metrics,
    pub auth: Arc<Authenticator>,
    /// People's calls, checked against RBAC.
    pub access: Access,
    pub events: Events,
    /// Namespace defaults of the tree limits (see `limits`).
    pub limits: crds::limits::DefaultLimits,
    /// Last millisecond used in a job name: names from one replica never collide and keep call order.
    last_millis: AtomicU64,
}

impl App {
    pub fn new(client: Client, stores: Stores, auth: Arc<Authenticator>) -> Self {
        App {
            events: Events::start(client.clone()),
            access: Access::new(client.clone()),
            client,
            stores,
            metrics: Metrics::default(),
            auth,
            limits: Default::default(),
            last_millis: AtomicU64::new(0),
        }
    }

    /// The sessions `caller` may act on, from the caches as they are now.
    pub fn reach(&self, caller: &Caller) -> Reach {
        let ns = &caller.namespace;
        match caller.kind() {
            CallerKind::Developer | CallerKind::Person => Reach::Namespace,
            CallerKind::Agent { session } => {
                let own = self.stores.session(ns, session);
                let blueprint = reach::blueprint_name(own.as_deref())
                    .and_then(|b| self.stores.blueprint(ns, b));
                reach::of_agent(session, blueprint.as_deref(), &self.stores.in_namespace(ns))
            }
        }
    }

    /// A person's call of `tool` needs its RBAC rights in the caller's namespace (access.rs); agents and
    /// header-mode callers are not checked here. A refusal is counted and changes nothing.
    pub async fn authorize(&self, caller: &Caller, tool: &str) -> Result<(), ToolError> {
        let Some(person) = &caller.person else {
            return Ok(());
        };
        match self.access.authorize(person, &caller.namespace, tool).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(denied)) => {
                self.metrics.tool_refused(tool, RBAC_DENIED);
                tracing::info!(namespace = %caller.namespace, user = %person.username, tool, %denied,
                    "refused: RBAC");
                Err(ToolError::Refused(denied.to_string()))
            }
            Err(unavailable) => Err(ToolError::Conflict(format!(
                "{unavailable}; retry in a few seconds"
            ))),
        }
    }

    /// A person has no session to call back: callback=true is refused (in sync mode too, where it would be
    /// silently meaningless), before anything is created.
    fn check_callback(
        &self,
        caller: &Caller,
        tool: &str,
        req: &JobRequest,
    ) -> Result<(), ToolError> {
        match &caller.person {
            Some(person) if req.callback => {
                self.metrics.tool_refused(tool, PERSON_CALLBACK);
                Err(ToolError::Invalid(format!(
                    "callback=true is refused: the caller is '{}', a person (a token not bound to an agent Pod), \
                     which has no session to deliver the result to. Use async_mode=false to wait for the result, \
                     or async_mode=true with callback=false and poll with get_agent_session_status.",
                    person.username
                )))
            }
            _ => Ok(()),
        }
    }

    /// Refuses a call of `tool` on `target` when the caller does not reach it: counted by reason, and, for a stop
    /// or resume (`action`) of a session that exists, recorded as an Event on it. The answer is the same whether
    /// the session exists or not.
    fn check_reach(
        &self,
        caller: &Caller,
        tool: &str,
        action: Option<&str>,
        target: &str,
    ) -> Result<(), ToolError> {
        let reach = self.reach(caller);
        let Some(own) = reach.tree_root().filter(|_| !reach.includes(target)) else {
            return Ok(());
        };
        let ns = &caller.namespace;
        let exists = self.state_of(ns, target) != SessionState::NotExistent;
        self.metrics
            .tool_refused(tool, reach::refusal_reason(exists));
        tracing::info!(namespace = %ns, caller = own, tool, target, exists, "refused: outside the caller's reach");
        if let (Some(action), Some(session)) = (action, self.stores.session(ns, target)) {
            self.events
                .refused(&session, action, reach::event_note(tool, target, own));
        }
        Err(ToolError::Refused(reach::refusal(target, own)))
    }

    pub fn list_blueprints(
        &self,
        caller: &Caller,
        tags: &[String],
        format: ResponseFormat,
    ) -> String {
        let all = self.stores.blueprints_in(&caller.namespace);
        let visible = domain::visible_blueprints(all.iter().map(|b| b.as_ref()), tags);
        format::blueprints(&visible, format)
    }

    /// The sessions the caller reaches (see reach.rs), with their status.
    pub fn list_sessions(&self, caller: &Caller, format: ResponseFormat) -> String {
        let ns = &caller.namespace;
        let reach = self.reach(caller);
        let jobs = self.stores.jobs_in(ns);
        let mut sessions = self.stores.sessions_in(ns);
        sessions.retain(|s| reach.includes(&s.name_any()));
        sessions.sort_by(|a, b| {
            (a.metadata.creation_timestamp.as_ref(), a.name_any())
                .cmp(&(b.metadata.creation_timestamp.as_ref(), b.name_any()))
        });
        let mut jobs_by_session: std::collections::HashMap<&str, Vec<&AgentJob>> =
            std::collections::HashMap::new();
        for j in &jobs {
            jobs_by_session
                .entry(j.spec.session_name.as_str())
                .or_default()
                .push(j);
        }
        let mut rows: Vec<SessionRow> = sessions
            .iter()
            .map(|s| {
                let name = s.name_any();
                let state = domain::session_state(
                    Some(s),
                    jobs_by_session
                        .get(name.as_str())
                        .into_iter()
                        .flatten()
                        .copied(),
                );
                SessionRow::from_session(s, state)
            })
            .collect();
        // Sessions still being created exist only as their Start job.
        for job in domain::in_run_order(jobs.iter().map(|j| j.as_ref()).collect()) {
            let name = &job.spec.session_name;
            if job.spec.job_type == JobType::Start
                && !domain::job_ended(job)
                && reach.includes(name)
                && !rows.iter().any(|r| &r.name == name)
            {
                rows.push(SessionRow {
                    name: name.clone(),
                    state: SessionState::Running,
                    phase: "Pending".into(),
                    blueprint: job.spec.blueprint.clone(),
                    parent: job.spec.parent_session_name.clone(),
                    created: job
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string()),
                    jobs: 0,
                });
            }
        }
        format::sessions(&rows, format)
    }

    pub async fn start(&self, caller: &Caller, req: JobRequest) -> Result<String, ToolError> {
        self.check_callback(caller, START, &req)?;
        let spec = plan::job_spec(JobType::Start, &req, caller.session.as_deref())?;
        let ns = &caller.namespace;
        if let Some(name) = &spec.blueprint {
            match self.stores.blueprint(ns, name) {
                None => {
                    return Err(ToolError::NotFound(format!(
                        "agent blueprint '{name}' does not exist in namespace '{ns}'. Use list_agent_blueprints to \
                         see the available blueprints, or omit agent_blueprint_name for the default agent."
                    )));
                }
                Some(b) if b.spec.disabled => {
                    return Err(ToolError::Conflict(format!(
                        "agent blueprint '{name}' is disabled and cannot start sessions"
                    )));
                }
                Some(_) => {}
            }
        }
        if self.state_of(ns, &spec.session_name) != SessionState::NotExistent {
            return Err(ToolError::Conflict(format!(
                "session '{}' already exists. Use resume_agent_session to give it a new prompt, or choose another \
                 session_name.",
                spec.session_name
            )));
        }
        crate::limits::check_start(&self.stores, ns, &spec, &self.limits)?;
        self.check_budget(ns, spec.parent_session_name.as_deref())?;
        self.submit(ns, spec, req.async_mode).await
    }

    pub async fn resume(&self, caller: &Caller, req: JobRequest) -> Result<String, ToolError> {
        self.check_callback(caller, RESUME, &req)?;
        let spec = plan::job_spec(JobType::Resume, &req, caller.session.as_deref())?;
        // Also what keeps an agent from adopting (re-parenting) a session of another tree.
        self.check_reach(caller, RESUME, Some("Resume"), &spec.session_name)?;
        let ns = &caller.namespace;
        if self.state_of(ns, &spec.session_name) == SessionState::NotExistent {
            return Err(ToolError::NotFound(format!(
                "session '{}' does not exist in namespace '{ns}'. Start it with start_agent_session, or check the \
                 name with list_agent_sessions.",
                spec.session_name
            )));
        }
        self.check_budget(ns, Some(&spec.session_name))?;
        self.submit(ns, spec, req.async_mode).await
    }

    /// Refuses a job that would join (on or below `session`) a tree that passed its budget.
    fn check_budget(&self, ns: &str, session: Option<&str>) -> Result<(), ToolError> {
        let lookup = |name: &str| self.stores.session(ns, name);
        match crate::budget::passed(session.and_then(lookup), lookup) {
            Some((root, bound)) => Err(crate::budget::refusal(&root, &bound)),
            None => Ok(()),
        }
    }

    async fn submit(
        &self,
        ns: &str,
        spec: crds::AgentJobSpec,
        async_mode: bool,
    ) -> Result<String, ToolError> {
        let session = spec.session_name.clone();
        let callback = spec.callback;
        // Read-your-writes on this replica: once the answer is out, status, stop and list already see the job (the
        // stores show it until its watch event arrives).
        let job = self.create_job(ns, spec).await?;
        if async_mode {
            return Ok(format::job_accepted(&session, &job, callback));
        }
        self.wait_for_result(ns, &session, &job).await
    }

    /// Creates the job under a fresh time-ordered name; another replica may take the same millisecond, in which
    /// case the next one is used.
    async fn create_job(&self, ns: &str, spec: crds::AgentJobSpec) -> Result<String, ToolError> {
        let api: Api<AgentJob> = Api::namespaced(self.client.clone(), ns);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        for _ in 0..50 {
            let name = naming::job_name(&spec.session_name, self.next_millis());
            let mut job = AgentJob::new(&name, spec.clone());
            job.metadata.labels = Some(
                [
                    (crds::labels::SESSION.to_string(), spec.session_name.clone()),
                    (
                        crds::labels::JOB_TYPE.to_string(),
                        spec.job_type.as_str().to_string(),
                    ),
                ]
                .into_iter()
                .chain(
                    crate::limits::tree_label(&self.stores, ns, &spec)
                        .map(|t| (crds::labels::TREE.to_string(), t)),
                )
                .collect(),
            );
            // The parent's identity travels with the job, so a later session reusing the parent's name never
            // receives this job's callback; the callback finalizer is set at once (saving the operator a write).
            if let Some(parent) = spec
                .parent_session_name
                .as_ref()
                .and_then(|p| self.stores.session(ns, p))
                .and_then(|p| p.metadata.uid.clone())
            {
                job.metadata.annotations =
                    Some([(crds::labels::PARENT_UID.to_string(), parent)].into());
            }
            if let Some(traceparent) = crate::trace::child_traceparent() {
                job.annotations_mut().insert(
                    agent_telemetry::TRACEPARENT_ANNOTATION.to_string(),
                    traceparent,
                );
            }
            if spec.callback {
                job.metadata.finalizers = Some(vec![crds::labels::CALLBACK_FINALIZER.to_string()]);
            }
            match api.create(&params, &job).await {
                Ok(created) => {
                    self.stores.created(created);
                    tracing::info!(namespace = ns, job = %name, session = %spec.session_name,
                        r#type = spec.job_type.as_str(), parent = ?spec.parent_session_name,
                        callback = spec.callback, "created AgentJob");
                    return Ok(name);
                }
                Err(kube::Error::Api(s)) if s.is_already_exists() => continue,
                Err(e) => {
                    return Err(ToolError::kube(
                        format!(
                            "creating the AgentJob for session '{}' failed",
                            spec.session_name
                        ),
                        e,
                    ));
                }
            }
        }
        Err(ToolError::Conflict(
            "could not find a free AgentJob name; try again".into(),
        ))
    }

    fn next_millis(&self) -> u64 {
        let now = naming::now_millis();
        let prev = self
            .last_millis
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(now.max(last + 1))
            })
            .expect("the update closure always returns Some");
        now.max(prev + 1)
    }

    /// Sync mode: wait (watching) for the job to end, then answer with its result.
    async fn wait_for_result(
        &self,
        ns: &str,
        session: &str,
        job: &str,
    ) -> Result<String, ToolError> {
        let mut seen = false;
        let ended = self
            .stores
            .wait_until(ns, Instant::now() + SYNC_WAIT, || {
                match self.stores.job(ns, job) {
                    Some(j) => {
                        seen = true;
                        domain::job_ended(&j).then_some(Some(j))
                    }
                    None if seen => Some(None),
                    None => None,
                }
            })
            .await;
        match ended {
            None => Err(ToolError::Timeout(format!(
                "session '{session}' (job {job}) did not finish within {} s. It keeps running: use \
                 get_agent_session_status and get_agent_session_result to follow it.",
                SYNC_WAIT.as_secs()
            ))),
            Some(None) => Err(ToolError::Failed(format!(
                "job {job} of session '{session}' was deleted (stopped) before it finished"
            ))),
            Some(Some(j)) => self.job_outcome(ns, session, &j),
        }
    }

    /// The answer for an ended job: its result, or a tool error carrying why it failed.
    fn job_outcome(&self, ns: &str, session: &str, job: &AgentJob) -> Result<String, ToolError> {
        let status = job.status.clone().unwrap_or_default();
        // The gateway writes the reported result on the job; the operator copies it to the session. Either will do.
        let from_session = self
            .stores
            .session(ns, session)
            .filter(|s| {
                s.status.as_ref().and_then(|st| st.last_job.as_deref()) == Some(&job.name_any())
            })
            .and_then(|s| s.status.clone()?.result);
        let result = status.result.clone().or(from_session);
        if status.phase == Some(JobPhase::Failed) {
            let reason = status.reason.as_deref().unwrap_or("Failed");
            let mut msg = format!(
                "session '{session}' failed (job {}, reason {reason})",
                job.name_any()
            );
            if let Some(e) = status.error.as_deref().filter(|e| !e.is_empty()) {
                msg.push_str(&format!(": {e}"));
            }
            if let Some(r) = result.filter(|r| !r.is_empty()) {
                msg.push_str(&format!("\n\nPartial result:\n{r}"));
            }
            return Err(ToolError::Failed(msg));
        }
        Ok(result
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| format!("Session '{session}' finished without reporting a result.")))
    }

    fn state_of(&self, ns: &str, session: &str) -> SessionState {
        let jobs = self.stores.jobs_of(ns, session);
        domain::session_state(
            self.stores.session(ns, session).as_deref(),
            jobs.iter().map(|j| j.as_ref()),
        )
    }

    /// Status now, or, with wait_seconds, as soon as it changes from running (or from not existing yet).
    pub async fn status(
        &self,
        caller: &Caller,
        session: &str,
        wait_seconds: i64,
    ) -> Result<String, ToolError> {
        validate::session_name("session_name", session)?;
        validate::wait_seconds(wait_seconds)?;
        // Outside the caller's reach a session is not_existent, as a missing one is: the answer keeps the three
        // values of the original system and tells nothing about other trees.
        if let Err(refused) = self.check_reach(caller, STATUS, None, session) {
            tracing::debug!(%refused, "status outside the caller's reach");
        }
        let initial = self.visible_state(caller, session);
        if wait_seconds == 0 || initial == SessionState::Finished {
            return Ok(self.status_answer(caller, session, initial));
        }
        let deadline = Instant::now() + Duration::from_secs(wait_seconds as u64);
        let state = self
            .stores
            .wait_until(&caller.namespace, deadline, || {
                let now = self.visible_state(caller, session);
                (now != initial).then_some(now)
            })
            .await
            .unwrap_or_else(|| self.visible_state(caller, session));
        Ok(self.status_answer(caller, session, state))
    }

    /// The state of `session` as the caller may see it: not_existent outside its reach.
    fn visible_state(&self, caller: &Caller, session: &str) -> SessionState {
        if self.reach(caller).includes(session) {
            self.state_of(&caller.namespace, session)
        } else {
            SessionState::NotExistent
        }
    }

    /// The status answer; a confined caller's not_existent says where it may look.
    fn status_answer(&self, caller: &Caller, session: &str, state: SessionState) -> String {
        let reach = self.reach(caller);
        match reach.tree_root() {
            Some(own) if state == SessionState::NotExistent => {
                format::status_with_message(state, &reach::refusal(session, own))
            }
            _ => format::status(state),
        }
    }

    pub fn result(&self, caller: &Caller, session: &str) -> Result<String, ToolError> {
        validate::session_name("session_name", session)?;
        self.check_reach(caller, RESULT, None, session)?;
        let ns = &caller.namespace;
        match self.state_of(ns, session) {
            SessionState::NotExistent => {
                return Err(ToolError::NotFound(format!(
                    "session '{session}' does not exist. Please check the session name."
                )));
            }
            SessionState::Running => {
                return Err(ToolError::Conflict(format!(
                    "session '{session}' is still running. Use get_agent_session_status to poll until status is \
                     'finished'."
                )));
            }
            SessionState::Finished => {}
        }
        let record = self.stores.session(ns, session);
        let status = record
            .as_ref()
            .and_then(|s| s.status.clone())
            .unwrap_or_default();
        if status.phase == Some(SessionPhase::Stopped) {
            // The stopped job is gone; an older job's result would be mistaken for this run's.
            return Err(ToolError::Failed(format!(
                "session '{session}' was stopped before its last run finished; resume it to continue"
            )));
        }
        let jobs = self.stores.jobs_of(ns, session);
        let last =
            domain::last_ended_job(record.as_deref(), jobs.iter().map(|j| j.as_ref()).collect());
        if let Some(job) = last {
            return self.job_outcome(ns, session, job);
        }
        // The job may have been deleted since: the session keeps what the operator copied.
        match (status.phase, status.result) {
            (Some(SessionPhase::Failed), r) => Err(ToolError::Failed(format!(
                "session '{session}' failed{}",
                r.map(|r| format!("\n\nPartial result:\n{r}"))
                    .unwrap_or_default()
            ))),
            (_, Some(r)) if !r.is_empty() => Ok(r),
            _ => Ok(format!(
                "Session '{session}' finished without reporting a result."
            )),
        }
    }

    /// Deletes the sessions the caller reaches and their jobs, never the caller's own session: for an agent
    /// confined to its tree, the sessions below it; with scope Namespace (or no session), every other session.
    pub async fn delete_all(&self, caller: &Caller) -> Result<String, ToolError> {
        let ns = &caller.namespace;
        let own = caller.session.as_deref();
        let reach = self.reach(caller);
        let sessions: Api<crds::AgentSession> = Api::namespaced(self.client.clone(), ns);
        let jobs: Api<AgentJob> = Api::namespaced(self.client.clone(), ns);
        let dp = DeleteParams::background();
        let mut deleted_sessions = 0;
        let mut deleted_jobs = 0;
        for job in self.stores.jobs_in(ns) {
            if !reach.deletable(&job.spec.session_name, own) {
                continue;
            }
            self.stores.deleted(ns, &job.name_any());
            match jobs.delete(&job.name_any(), &dp).await {
                Ok(_) => deleted_jobs += 1,
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(e) => {
                    return Err(ToolError::kube(
                        format!("deleting AgentJob {}", job.name_any()),
                        e,
                    ));
                }
            }
        }
        for session in self.stores.sessions_in(ns) {
            if !reach.deletable(&session.name_any(), own) {
                continue;
            }
            match sessions.delete(&session.name_any(), &dp).await {
                Ok(_) => deleted_sessions += 1,
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(e) => {
                    return Err(ToolError::kube(
                        format!("deleting AgentSession {}", session.name_any()),
                        e,
                    ));
                }
            }
        }
        let mut kept = own
            .map(|s| format!(" Your own session '{s}' was kept."))
            .unwrap_or_default();
        if reach.tree_root().is_some() {
            kept.push_str(
                " Only the sessions below it were deleted: other trees are not yours to delete.",
            );
        }
        Ok(format!(
            "Deleted {deleted_sessions} agent sessions and {deleted_jobs} agent jobs in namespace '{ns}'.{kept}"
        ))
    }

    /// Stops a session by deleting its jobs that have not ended (the running one and any waiting ones): the
    /// operator stops their Pods and calls the parent back with a Stopped outcome.
    pub async fn stop(&self, caller: &Caller, session: &str) -> Result<String, ToolError> {
        validate::session_name("session_name", session)?;
        if caller.session.as_deref() == Some(session) {
            return Err(ToolError::Invalid(format!(
                "session '{session}' is the calling session; a session cannot stop itself"
            )));
        }
        self.check_reach(caller, STOP, Some("Stop"), session)?;
        let ns = &caller.namespace;
        if self.state_of(ns, session) == SessionState::NotExistent {
            return Err(ToolError::NotFound(format!(
                "session '{session}' does not exist"
            )));
        }
        let api: Api<AgentJob> = Api::namespaced(self.client.clone(), ns);
        let mut stopped = Vec::new();
        for job in self.stores.jobs_of(ns, session) {
            if domain::job_ended(&job) {
                continue;
            }
            self.stores.deleted(ns, &job.name_any());
            match api
                .delete(&job.name_any(), &DeleteParams::background())
                .await
            {
                Ok(_) => stopped.push(job.name_any()),
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(e) => {
                    return Err(ToolError::kube(
                        format!("stopping AgentJob {}", job.name_any()),
                        e,
                    ));
                }
            }
        }
        if stopped.is_empty() {
            return Ok(format!(
                "Session '{session}' is not running; nothing to stop."
            ));
        }
        stopped.sort();
        Ok(serde_json::to_string_pretty(&serde_json::json!({
            "session_name": session,
            "status": "stopping",
            "stopped_jobs": stopped,
        }))
        .expect("JSON values serialise"))
    }
}
