//! Command line of `agent-operator`.

use std::net::SocketAddr;

use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "agent-operator",
    version,
    about = "Runs AgentJobs as Pods and delivers callbacks between agent sessions"
)]
pub struct Config {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "AGENT_OPERATOR_NAMESPACE")]
    pub namespace: Option<String>,

    /// Address of /metrics, /healthz and /readyz.
    #[arg(
        long,
        default_value = "127.0.0.1:8080",
        env = "AGENT_OPERATOR_METRICS_ADDR"
    )]
    pub metrics_addr: SocketAddr,

    /// Image of agent Pods whose blueprint names none (or of jobs without a blueprint).
    #[arg(
        long,
        default_value = "ghcr.io/agentorchestrator/agent-runner:latest",
        env = "AGENT_OPERATOR_AGENT_IMAGE"
    )]
    pub agent_image: String,

    /// URL agents reach the MCP gateway at (AGENT_MCP_URL of agent Pods).
    #[arg(
        long,
        default_value = "http://mcp-gateway.agent-orchestrator.svc:9500/mcp",
        env = "AGENT_OPERATOR_MCP_URL"
    )]
    pub mcp_url: String,

    /// OTLP endpoint of agent Pods (their OTEL_EXPORTER_OTLP_ENDPOINT, e.g. http://otel-collector:4318): the runner
    /// then exports its spans into the job's trace. Unset: agent Pods trace nothing. The operator's own exporter is
    /// configured by the standard OTEL_* variables.
    #[arg(long, env = "AGENT_OPERATOR_AGENT_OTLP_ENDPOINT")]
    pub agent_otlp_endpoint: Option<String>,

    /// Elect a leader through a Lease, so that only one of several replicas writes.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "AGENT_OPERATOR_LEADER_ELECTION")]
    pub leader_election: bool,

    /// Namespace of the leader-election Lease (default: the namespace in the kubeconfig or service account).
    #[arg(long, env = "AGENT_OPERATOR_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Name of the leader-election Lease.
    #[arg(
        long,
        default_value = "agent-operator-leader",
        env = "AGENT_OPERATOR_LEASE_NAME"
    )]
    pub lease_name: String,

    /// How long a leader's lease lasts without renewal; a new leader takes over at most this long after the old
    /// one died.
    #[arg(
        long,
        default_value_t = 15,
        env = "AGENT_OPERATOR_LEASE_DURATION_SECONDS"
    )]
    pub lease_duration_seconds: u64,

    /// Identity of this replica in the Lease (default: the Pod name from POD_NAME, else HOSTNAME, else
    /// `agent-operator`; no PID, so a restarted container takes its own lease back at once).
    #[arg(long, env = "AGENT_OPERATOR_IDENTITY")]
    pub identity: Option<String>,

    /// Seconds after their end when finished AgentJobs without their own `ttlSecondsAfterFinished` are deleted
    /// (with their Pods; sessions keep the result). Unset: such jobs are kept.
    #[arg(long, env = "AGENT_OPERATOR_DEFAULT_JOB_TTL_SECONDS", value_parser = clap::value_parser!(i64).range(0..=31_536_000))]
    pub default_job_ttl_seconds: Option<i64>,

    /// Seconds an Idle AgentSession is kept after its last job ended; then it is deleted with its jobs, unless
    /// callbacks wait in its queue, one of its jobs or descendants still runs, or a callback to or from it is not
    /// settled yet. Unset: sessions are kept.
    #[arg(long, env = "AGENT_OPERATOR_DEFAULT_SESSION_RETENTION_SECONDS", value_parser = clap::value_parser!(i64).range(0..=31_536_000))]
    pub default_session_retention_seconds: Option<i64>,

    /// Seconds before the first retry of a job whose run failed for a cause the agent did not make (Pod evicted or
    /// lost, container never started, model API unavailable); each further retry waits twice as long, at most
    /// 5 minutes.
    #[arg(long, default_value_t = 10, env = "AGENT_OPERATOR_RETRY_BACKOFF_BASE_SECONDS", value_parser = clap::value_parser!(u64).range(1..=300))]
    pub retry_backoff_base_seconds: u64,
    /// Levels of children allowed below a session whose blueprint sets no `limits.maxDepth` (unset: no limit). The
    /// gateway has the same flag; the Helm value `governance.defaultMaxDepth` sets both.
    #[arg(long, env = "AGENT_OPERATOR_DEFAULT_MAX_DEPTH", value_parser = clap::value_parser!(i32).range(0..=100))]
    pub default_max_depth: Option<i32>,

    /// Children one session may start in its life when its blueprint sets no `limits.maxChildren` (unset: no limit).
    #[arg(long, env = "AGENT_OPERATOR_DEFAULT_MAX_CHILDREN", value_parser = clap::value_parser!(i32).range(0..=100_000))]
    pub default_max_children: Option<i32>,

    /// Children of one session running at once when its blueprint sets no `limits.maxActiveChildren` (unset: no
    /// limit).
    #[arg(long, env = "AGENT_OPERATOR_DEFAULT_MAX_ACTIVE_CHILDREN", value_parser = clap::value_parser!(i32).range(0..=100_000))]
    pub default_max_active_children: Option<i32>,

    /// Most AgentJobs of one namespace running at once; jobs over it wait `Pending` with reason ConcurrencyLimit and
    /// start in creation order (unset: no limit).
    #[arg(long, env = "AGENT_OPERATOR_MAX_RUNNING_JOBS", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_running_jobs: Option<u32>,

    /// Log as JSON lines instead of text.
    #[arg(long, env = "AGENT_OPERATOR_LOG_JSON")]
    pub log_json: bool,
}

impl Config {
    pub fn governance(&self) -> crate::context::Governance {
        crate::context::Governance {
            limits: crds::limits::DefaultLimits {
                max_depth: self.default_max_depth,
                max_children: self.default_max_children,
                max_active_children: self.default_max_active_children,
            },
            max_running_jobs: self.max_running_jobs,
        }
    }
}
