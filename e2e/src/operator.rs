//! Running the operator as a real process in end-to-end tests: each test starts its own, watching only the test's
//! namespace (so tests run in parallel without sharing an operator) and electing its leader through a Lease there.

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{eventually, kubeconfig_path, workspace_root};

/// The operator binary under test: `AGENT_OPERATOR_BIN`, else the workspace's debug build.
pub fn binary() -> PathBuf {
    std::env::var_os("AGENT_OPERATOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/agent-operator"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .unwrap()
        .port()
}

/// One operator process. Killed when dropped.
pub struct Operator {
    child: Child,
    pub namespace: String,
    pub identity: String,
    pub metrics_port: u16,
    pub log: PathBuf,
    extra: Vec<String>,
    mcp_url: String,
}

/// Options of a test operator.
#[derive(Clone, Default)]
pub struct Options {
    /// Run leader election (with a short lease) instead of starting as the only writer.
    pub leader_election: bool,
    /// The identity in the Lease.
    pub identity: Option<String>,
    pub extra_args: Vec<String>,
    /// The gateway agent Pods are told to use (default: a closed port, for tests whose Pods run nothing).
    pub mcp_url: Option<String>,
}

impl Operator {
    /// Starts an operator for `namespace`, without leader election, and waits until it serves /readyz.
    pub async fn start(namespace: &str) -> Operator {
        Self::start_with(namespace, Options::default()).await
    }

    pub async fn start_with(namespace: &str, options: Options) -> Operator {
        let identity = options
            .identity
            .clone()
            .unwrap_or_else(|| crate::unique("op"));
        let mut extra = vec![format!("--leader-election={}", options.leader_election)];
        if options.leader_election {
            extra.extend([
                "--lease-namespace".into(),
                namespace.into(),
                "--lease-duration-seconds".into(),
                "4".into(),
            ]);
        }
        extra.extend(options.extra_args);
        let log_dir = workspace_root().join("target/e2e-logs");
        std::fs::create_dir_all(&log_dir).expect("log folder");
        let mut op = Operator {
            child: Command::new("true").spawn().expect("placeholder"),
            namespace: namespace.into(),
            identity: identity.clone(),
            metrics_port: 0,
            log: log_dir.join(format!("operator-{namespace}-{identity}.log")),
            extra,
            mcp_url: options
                .mcp_url
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:1/mcp".into()),
        };
        op.spawn().await;
        op
    }

    async fn spawn(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.metrics_port = free_port();
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("operator log");
        self.child = Command::new(binary())
            .args(["--namespace", &self.namespace, "--identity", &self.identity])
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{}", self.metrics_port))
            .args([
                "--agent-image",
                "registry.invalid/agent-runner:test",
                "--mcp-url",
                &self.mcp_url,
            ])
            .args(&self.extra)
            .env("KUBECONFIG", kubeconfig_path())
            .env("RUST_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {} (run `cargo build --bins`): {e}",
                    binary().display()
                )
            });
        let port = self.metrics_port;
        let log = self.log.clone();
        eventually(
            &format!("operator /readyz (log: {})", log.display()),
            Duration::from_secs(20),
            || async move {
                match fetch(port, "/readyz").await {
                    Some(body) if body.contains("ready") => Some(()),
                    _ => None,
                }
            },
        )
        .await;
    }

    /// SIGKILL: the process dies wherever it is, with no chance to finish a write sequence.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills and starts the operator again (same identity and namespace).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// The Prometheus text of /metrics.
    pub async fn metrics(&self) -> String {
        fetch(self.metrics_port, "/metrics")
            .await
            .unwrap_or_default()
    }

    /// The value of one metric sample (summed over label sets when `labels` is empty).
    pub async fn metric(&self, name: &str) -> f64 {
        parse_metric(&self.metrics().await, name)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sums the samples of `name` (any labels) in Prometheus text.
pub fn parse_metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ') | Some(b'{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A plain HTTP/1.1 GET on loopback, enough for /metrics and /readyz.
async fn fetch(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

impl Operator {
    /// The operator's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}
