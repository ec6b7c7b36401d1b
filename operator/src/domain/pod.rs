//! The Pod of a job: built from the job, its session and the session's blueprint, with the operator's defaults.

use std::collections::BTreeMap;

use crds::contract::{self, env};
use crds::{AgentBlueprint, AgentJob, AgentSession, JobType, labels};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, DownwardAPIVolumeFile, DownwardAPIVolumeSource, EmptyDirVolumeSource,
    EnvVar, ObjectFieldSelector, PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext,
    PodSpec, ProjectedVolumeSource, SeccompProfile, SecurityContext, ServiceAccountTokenProjection,
    Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::job::AGENT_CONTAINER;
use super::workspace::workspace_claim_name;

/// Operator-wide defaults for agent Pods.
#[derive(Debug, Clone)]
pub struct PodDefaults {
    pub image: String,
    pub mcp_url: String,
    /// OTLP endpoint agent Pods export their spans to (their `OTEL_EXPORTER_OTLP_ENDPOINT`); unset, the runner
    /// traces nothing.
    pub otlp_endpoint: Option<String>,
}

/// Annotations carrying what the runner reads as files (through the downward API): a prompt of up to 100,000
/// characters may not fit an environment variable, and the agent Pod has no API access to read its blueprint.
pub const PROMPT_ANNOTATION: &str = "agentorchestrator.dev/prompt";
pub const SYSTEM_PROMPT_ANNOTATION: &str = "agentorchestrator.dev/system-prompt";
pub const MCP_SERVERS_ANNOTATION: &str = "agentorchestrator.dev/mcp-servers";
/// Prompts up to this size are also passed as AGENT_PROMPT; larger ones only as a file.
const MAX_PROMPT_ENV_BYTES: usize = 96 * 1024;
/// Agent containers run as this user unless the image's own non-root user is set by the blueprint's security
/// settings: the restricted Pod Security profile forbids root.
const AGENT_UID: i64 = 65532;
/// Lifetime of the gateway token. The agent CLI reads it once, into its MCP configuration, at the start of a run, so
/// it must outlast the longest run; it is bound to the Pod, so it stops working when the Pod is gone anyway.
const TOKEN_EXPIRATION_SECONDS: i64 = 24 * 3600;

/// Everything a job's Pod depends on.
pub struct PodInputs<'a> {
    pub job: &'a AgentJob,
    pub session: &'a AgentSession,
    pub blueprint: Option<&'a AgentBlueprint>,
    pub defaults: &'a PodDefaults,
}

fn env_var(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

/// Builds the Pod of `inputs.job`. Deterministic: the same inputs give the same Pod, named after the job, so a
/// create that is repeated after a crash finds the first one (AlreadyExists) instead of making a second.
pub fn build_pod(inputs: &PodInputs) -> Pod {
    let PodInputs {
        job,
        session,
        blueprint,
        defaults,
    } = inputs;
    let spec = &job.spec;
    let template = blueprint
        .and_then(|b| b.spec.pod_template.clone())
        .unwrap_or_default();
    let session_name = session.name_any();
    let job_name = job.name_any();

    let mut labels = template.labels.clone();
    labels.insert(labels::SESSION.into(), session_name.clone());
    labels.insert(labels::JOB.into(), job_name.clone());
    labels.insert(labels::JOB_TYPE.into(), spec.job_type.as_str().into());
    labels.insert(labels::MANAGED_BY.into(), labels::MANAGER.into());

    let mut annotations = template.annotations.clone();
    annotations.insert(PROMPT_ANNOTATION.into(), spec.prompt.clone());
    let mut files = vec![(contract::PROMPT_FILE, PROMPT_ANNOTATION)];
    if let Some(bp) = blueprint {
        // On every job, Resume included: agent CLIs keep the conversation across runs but not the system prompt.
        if let Some(system) = bp.spec.system_prompt.as_ref() {
            annotations.insert(SYSTEM_PROMPT_ANNOTATION.into(), system.clone());
            files.push((contract::SYSTEM_PROMPT_FILE, SYSTEM_PROMPT_ANNOTATION));
        }
        if !bp.spec.mcp_servers.is_empty() {
            let servers =
                serde_json::to_string(&bp.spec.mcp_servers).expect("MCP servers serialise");
            annotations.insert(MCP_SERVERS_ANNOTATION.into(), servers);
            files.push((contract::MCP_SERVERS_FILE, MCP_SERVERS_ANNOTATION));
        }
    }

    let session_status = session.status.clone().unwrap_or_default();
    let project_dir = spec
        .project_dir
        .clone()
        .or_else(|| session.spec.project_dir.clone());
    let workspace = template.workspace.as_ref();
    let workspace_mount = workspace
        .and_then(|w| w.mount_path.clone())
        .unwrap_or_else(|| contract::WORKSPACE_DIR.into());
    let mut ours = vec![
        env_var(env::SESSION_NAME, session_name.clone()),
        env_var(env::JOB_NAME, job_name.clone()),
        env_var(env::JOB_TYPE, spec.job_type.as_str()),
        env_var(env::MCP_URL, defaults.mcp_url.clone()),
        env_var(env::TOKEN_FILE, contract::TOKEN_FILE),
        env_var(env::FILES_DIR, contract::FILES_DIR),
        env_var(env::WORKSPACE, workspace_mount.clone()),
        env_var(env::TERMINATION_LOG, contract::TERMINATION_LOG),
        EnvVar {
            name: env::NAMESPACE.into(),
            value_from: Some(k8s_openapi::api::core::v1::EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.namespace".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    if let Some(parent) = &spec.parent_session_name {
        ours.push(env_var(env::PARENT_SESSION_NAME, parent.clone()));
    }
    if spec.job_type == JobType::Resume
        && let Some(id) = &session_status.agent_session_id
    {
        ours.push(env_var(env::RESUME_ID, id.clone()));
    }
    if spec.prompt.len() <= MAX_PROMPT_ENV_BYTES {
        ours.push(env_var(env::PROMPT, spec.prompt.clone()));
    }
    if let Some(dir) = &project_dir {
        ours.push(env_var(env::PROJECT_DIR, dir.clone()));
    }
    if let Some(bp) = session.spec.blueprint.as_ref() {
        ours.push(env_var(env::BLUEPRINT, bp.clone()));
    }
    if let Some(endpoint) = &defaults.otlp_endpoint {
        // The runner's spans continue the job's own span (whose id the operator derives from the job's UID).
        let traceparent = agent_telemetry::TraceParent::of_job(
            job.metadata.uid.as_deref().unwrap_or_default(),
            job.annotations()
                .get(agent_telemetry::TRACEPARENT_ANNOTATION)
                .map(String::as_str),
        );
        ours.push(env_var("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()));
        ours.push(env_var("OTEL_SERVICE_NAME", "agent-runner"));
        ours.push(env_var(
            agent_telemetry::TRACEPARENT_ENV,
            traceparent.header(),
        ));
    }
    // Ours come first, so that the blueprint's values can refer to them as $(AGENT_SESSION_NAME); a blueprint
    // variable of the same name as ours is left out.
    let mut env = ours.clone();
    env.extend(
        template
            .env
            .iter()
            .filter(|e| !ours.iter().any(|o| o.name == e.name))
            .cloned(),
    );
    let container = Container {
        name: AGENT_CONTAINER.into(),
        image: Some(
            template
                .image
                .clone()
                .unwrap_or_else(|| defaults.image.clone()),
        ),
        image_pull_policy: template.image_pull_policy.clone(),
        command: (!template.command.is_empty()).then(|| template.command.clone()),
        args: (!template.args.is_empty()).then(|| template.args.clone()),
        env: Some(env),
        resources: template.resources.clone(),
        working_dir: Some(workspace_mount.clone()),
        termination_message_path: Some(contract::TERMINATION_LOG.into()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "gateway-token".into(),
                mount_path: contract::TOKEN_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
            VolumeMount {
                name: "agent-files".into(),
                mount_path: contract::FILES_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
            VolumeMount {
                name: "workspace".into(),
                mount_path: workspace_mount,
                ..Default::default()
            },
        ]),
        ..Default::default()
    };

    let volumes = vec![
        Volume {
            name: "gateway-token".into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: Some(contract::GATEWAY_TOKEN_AUDIENCE.into()),
                        expiration_seconds: Some(TOKEN_EXPIRATION_SECONDS),
                        path: "token".into(),
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "agent-files".into(),
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(
                    files
                        .iter()
                        .map(|(path, annotation)| DownwardAPIVolumeFile {
                            path: (*path).into(),
                            field_ref: Some(ObjectFieldSelector {
                                field_path: format!("metadata.annotations['{annotation}']"),
                                ..Default::default()
                            }),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "workspace".into(),
            // The session's claim when the blueprint asks for a persistent workspace, else a folder for this Pod.
            persistent_volume_claim: workspace.map(|_| PersistentVolumeClaimVolumeSource {
                claim_name: workspace_claim_name(&session_name),
                read_only: None,
            }),
            empty_dir: workspace.is_none().then(EmptyDirVolumeSource::default),
            ..Default::default()
        },
    ];

    Pod {
        metadata: ObjectMeta {
            name: Some(job_name),
            namespace: job.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![
                job.controller_owner_ref(&())
                    .expect("a stored job has a name and uid"),
            ]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            restart_policy: Some("Never".into()),
            service_account_name: template.service_account_name.clone(),
            // Agents get no API credentials of their own: only the gateway token above, which the API server does
            // not accept (wrong audience). A blueprint grants API access through its ServiceAccount's roles.
            automount_service_account_token: Some(template.service_account_name.is_some()),
            active_deadline_seconds: spec.timeout_seconds,
            node_selector: (!template.node_selector.is_empty())
                .then(|| template.node_selector.clone()),
            tolerations: (!template.tolerations.is_empty()).then(|| template.tolerations.clone()),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(AGENT_UID),
                run_as_group: Some(AGENT_UID),
                fs_group: Some(AGENT_UID),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            volumes: Some(volumes),
            ..Default::default()
        }),
        status: None,
    }
}

/// The value of an env var in a built Pod (tests and diagnostics).
pub fn env_of(pod: &Pod) -> BTreeMap<String, String> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.env.iter().flatten())
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::yaml;

    fn defaults() -> PodDefaults {
        PodDefaults {
            image: "runner:default".into(),
            mcp_url: "http://gw:9500/mcp".into(),
            otlp_endpoint: None,
        }
    }

    fn job(text: &str) -> AgentJob {
        yaml(text)
    }

    const START: &str = r#"
apiVersion: agentorchestrator.dev/v1alpha1
kind: AgentJob
metadata: {name: j1, namespace: ns, uid: u-j1}
spec: {type: Start, sessionName: s1, prompt: "do it", parentSessionName: boss, callback: true, timeoutSeconds: 60}
"#;
    const SESSION: &str = r#"
apiVersion: agentorchestrator.dev/v1alpha1
kind: AgentSession
metadata: {name: s1, namespace: ns, uid: u-s1}
spec: {blueprint: coder}
status: {agentSessionId: claude-123}
"#;
    const BLUEPRINT: &str = r#"
apiVersion: agentorchestrator.dev/v1alpha1
kind: AgentBlueprint
metadata: {name: coder, namespace: ns}
spec:
  systemPrompt: "You write code."
  mcpServers:
    orchestrator: {type: http, url: "http://gw/mcp", headers: {X-Agent-Session-Name: "${AGENT_SESSION_NAME}"}}
  podTemplate:
    image: runner:coder
    env: [{name: EXTRA, value: "1"}, {name: AGENT_SESSION_NAME, value: spoofed}]
    labels: {team: a}
"#;

    /// The Pod of `job` on the fixture session.
    fn pod_of(job: &AgentJob, blueprint: Option<&AgentBlueprint>) -> Pod {
        build_pod(&PodInputs {
            job,
            session: &yaml::<AgentSession>(SESSION),
            blueprint,
            defaults: &defaults(),
        })
    }

    #[test]
    fn tracing_env_only_with_an_otlp_endpoint_and_the_job_span_as_parent() {
        let job = job(START);
        let env = env_of(&pod_of(&job, None));
        assert!(
            !env.contains_key("TRACEPARENT") && !env.contains_key("OTEL_EXPORTER_OTLP_ENDPOINT")
        );
        let traced = PodDefaults {
            otlp_endpoint: Some("http://jaeger:4318".into()),
            ..defaults()
        };
        let pod = build_pod(&PodInputs {
            job: &job,
            session: &yaml::<AgentSession>(SESSION),
            blueprint: None,
            defaults: &traced,
        });
        let env = env_of(&pod);
        assert_eq!(env["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://jaeger:4318");
        let own = agent_telemetry::TraceParent::of_job(job.metadata.uid.as_deref().unwrap(), None);
        assert_eq!(env["TRACEPARENT"], own.header());
    }

    #[test]
    fn start_pod_carries_the_contract_env_labels_and_owner() {
        let pod = pod_of(&job(START), Some(&yaml(BLUEPRINT)));
        assert_eq!(pod.metadata.name.as_deref(), Some("j1"));
        let env = env_of(&pod);
        assert_eq!(env["AGENT_SESSION_NAME"], "s1");
        assert_eq!(env["AGENT_JOB_NAME"], "j1");
        assert_eq!(env["AGENT_JOB_TYPE"], "Start");
        assert_eq!(env["AGENT_PARENT_SESSION_NAME"], "boss");
        assert_eq!(env["AGENT_MCP_URL"], "http://gw:9500/mcp");
        assert_eq!(env["AGENT_PROMPT"], "do it");
        assert_eq!(env["EXTRA"], "1");
        assert!(
            !env.contains_key("AGENT_RESUME_ID"),
            "a Start has nothing to resume"
        );
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[labels::SESSION], "s1");
        assert_eq!(labels[labels::JOB], "j1");
        assert_eq!(labels["team"], "a");
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("AgentJob", "u-j1", Some(true))
        );
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.containers[0].image.as_deref(), Some("runner:coder"));
        assert_eq!(spec.active_deadline_seconds, Some(60));
        assert_eq!(spec.automount_service_account_token, Some(false));
        let annotations = pod.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations[SYSTEM_PROMPT_ANNOTATION], "You write code.");
        assert!(annotations[MCP_SERVERS_ANNOTATION].contains("${AGENT_SESSION_NAME}"));
    }

    #[test]
    fn blueprint_env_cannot_override_the_operators_variables() {
        let pod = pod_of(&job(START), Some(&yaml(BLUEPRINT)));
        let names: Vec<_> = pod.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap()
            .into_iter()
            .filter(|e| e.name == "AGENT_SESSION_NAME")
            .collect();
        assert_eq!(names.len(), 1);
        assert_eq!(names[0].value.as_deref(), Some("s1"));
    }

    #[test]
    fn resume_pod_resumes_the_agent_session_with_the_system_prompt() {
        let job = job(r#"
apiVersion: agentorchestrator.dev/v1alpha1
kind: AgentJob
metadata: {name: j2, namespace: ns, uid: u-j2}
spec: {type: Resume, sessionName: s1, prompt: "next"}
"#);
        let pod = pod_of(&job, Some(&yaml(BLUEPRINT)));
        let env = env_of(&pod);
        assert_eq!(env["AGENT_RESUME_ID"], "claude-123");
        assert_eq!(env["AGENT_JOB_TYPE"], "Resume");
        assert!(!env.contains_key("AGENT_PARENT_SESSION_NAME"));
        // Agent CLIs do not keep the system prompt across runs: every job gets it.
        assert_eq!(
            pod.metadata.annotations.unwrap()[SYSTEM_PROMPT_ANNOTATION],
            "You write code."
        );
    }

    #[test]
    fn without_blueprint_the_defaults_apply_and_the_pod_is_restricted() {
        let job = job(START);
        let session: AgentSession = yaml("metadata: {name: s1, namespace: ns}\nspec: {}");
        let pod = build_pod(&PodInputs {
            job: &job,
            session: &session,
            blueprint: None,
            defaults: &defaults(),
        });
        let spec = pod.spec.unwrap();
        assert_eq!(spec.containers[0].image.as_deref(), Some("runner:default"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        let sc = spec.containers[0].security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(
            spec.security_context
                .unwrap()
                .seccomp_profile
                .unwrap()
                .type_,
            "RuntimeDefault"
        );
        let token = spec.volumes.unwrap()[0]
            .projected
            .clone()
            .unwrap()
            .sources
            .unwrap()[0]
            .service_account_token
            .clone()
            .unwrap();
        assert_eq!(
            token.audience.as_deref(),
            Some(contract::GATEWAY_TOKEN_AUDIENCE)
        );
        // Read once per run by the agent CLI: it must outlast long runs.
        assert_eq!(token.expiration_seconds, Some(24 * 3600));
    }

    #[test]
    fn the_operators_variables_come_first_so_the_blueprints_can_refer_to_them() {
        let pod = pod_of(&job(START), Some(&yaml(BLUEPRINT)));
        let names: Vec<String> = pod.spec.as_ref().unwrap().containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| e.name.clone())
            .collect();
        let position = |n: &str| names.iter().position(|x| x == n).unwrap();
        assert!(position("AGENT_SESSION_NAME") < position("EXTRA"));
        let env = env_of(&pod);
        assert_eq!(env["AGENT_FILES_DIR"], "/etc/agent");
        assert_eq!(env["AGENT_WORKSPACE"], "/workspace");
        assert_eq!(env["AGENT_TERMINATION_LOG"], "/dev/termination-log");
        let container = &pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            container.termination_message_path.as_deref(),
            Some("/dev/termination-log")
        );
        let volumes = pod.spec.unwrap().volumes.unwrap();
        let workspace = volumes.iter().find(|v| v.name == "workspace").unwrap();
        assert!(workspace.empty_dir.is_some() && workspace.persistent_volume_claim.is_none());
    }

    #[test]
    fn a_blueprint_workspace_mounts_the_sessions_claim() {
        let mut bp = yaml::<AgentBlueprint>(BLUEPRINT);
        bp.spec.pod_template.as_mut().unwrap().workspace =
            Some(yaml("{size: 1Gi, mountPath: /home/agent/work}"));
        let pod = pod_of(&job(START), Some(&bp));
        assert_eq!(env_of(&pod)["AGENT_WORKSPACE"], "/home/agent/work");
        let spec = pod.spec.unwrap();
        let workspace = spec
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "workspace")
            .unwrap();
        assert_eq!(
            workspace.persistent_volume_claim.unwrap().claim_name,
            "s1-workspace"
        );
        assert!(workspace.empty_dir.is_none());
        let container = &spec.containers[0];
        assert_eq!(container.working_dir.as_deref(), Some("/home/agent/work"));
        assert!(
            container
                .volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == "workspace" && m.mount_path == "/home/agent/work")
        );
    }

    #[test]
    fn a_huge_prompt_goes_only_to_the_file() {
        let mut job = job(START);
        job.spec.prompt = "x".repeat(100_000);
        let session: AgentSession = yaml("metadata: {name: s1, namespace: ns}\nspec: {}");
        let pod = build_pod(&PodInputs {
            job: &job,
            session: &session,
            blueprint: None,
            defaults: &defaults(),
        });
        assert!(!env_of(&pod).contains_key("AGENT_PROMPT"));
        assert_eq!(
            pod.metadata.annotations.unwrap()[PROMPT_ANNOTATION].len(),
            100_000
        );
    }
}
