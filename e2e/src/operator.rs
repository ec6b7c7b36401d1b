//! Running the operator as a real process in end-to-end tests: each test starts its own, watching only the test's
//! namespace (so tests run in parallel without sharing an operator) and electing its leader through a Lease there.

pub mod api_users;

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};

use crate::{eventually, kubeconfig_path, workspace_root};

/// The Lease the operators of a test elect their leader through (the operator's default `--lease-name`).
pub const LEASE: &str = "agent-operator-leader";

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The operator binary under test: `AGENT_OPERATOR_BIN`, else the workspace's debug build.
pub fn binary() -> PathBuf {
    std::env::var_os("AGENT_OPERATOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/agent-operator"))
}

/// One operator process. Killed when dropped.
pub struct Operator {
    child: Child,
    pub namespace: String,
    pub identity: String,
    /// Where it serves /metrics, /healthz and /readyz (it binds port 0 and logs the address it got).
    pub metrics_addr: SocketAddr,
    pub log: PathBuf,
    extra: Vec<String>,
    mcp_url: String,
    kubeconfig: PathBuf,
    env: Vec<(String, String)>,
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
    /// The kubeconfig of the process (default: the cluster's), e.g. one of `api_users::ApiUsers`.
    pub kubeconfig: Option<PathBuf>,
    /// Extra environment of the process (e.g. the OTEL_* variables of a test of tracing).
    pub env: Vec<(String, String)>,
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
            metrics_addr: ([127, 0, 0, 1], 0).into(),
            log: log_dir.join(format!("operator-{namespace}-{identity}.log")),
            extra,
            mcp_url: options
                .mcp_url
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:1/mcp".into()),
            kubeconfig: options.kubeconfig.unwrap_or_else(kubeconfig_path),
            env: options.env,
        };
        op.spawn().await;
        op
    }

    async fn spawn(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("operator log");
        // The log is appended to across restarts: this start's lines begin here.
        let from = log.metadata().map(|m| m.len()).unwrap_or(0);
        self.child = Command::new(binary())
            .args(["--namespace", &self.namespace, "--identity", &self.identity])
            // Port 0: the kernel picks a free port and the operator logs it, so no other process can take it
            // between choosing and binding.
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args([
                "--agent-image",
                "registry.invalid/agent-runner:test",
                "--mcp-url",
                &self.mcp_url,
            ])
            .args(&self.extra)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
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
        let log = self.log.clone();
        let child = &mut self.child;
        self.metrics_addr = eventually(
            &format!("the operator's serving address (log: {})", log.display()),
            START_TIMEOUT,
            || {
                let exited = child.try_wait().ok().flatten();
                let log = log.clone();
                async move {
                    if let Some(status) = exited {
                        panic!(
                            "the operator exited ({status}) before serving; log: {}",
                            log.display()
                        );
                    }
                    serving_addr(&log, from)
                }
            },
        )
        .await;
        let addr = self.metrics_addr;
        eventually(
            &format!("operator /readyz (log: {})", log.display()),
            START_TIMEOUT,
            || async move {
                match fetch(addr, "/readyz").await {
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

    /// SIGTERM (what the kubelet sends to stop a Pod); returns at once, see `exit_status`.
    pub fn terminate(&mut self) {
        // SAFETY: a plain kill(2) on our own child's pid, which it still is until it is waited for.
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM to the operator (pid {})", self.child.id());
    }

    /// Waits (up to `timeout`) for the process to exit and returns how it exited.
    pub async fn exit_status(&mut self, timeout: Duration) -> ExitStatus {
        let child = &mut self.child;
        eventually(
            &format!("operator {} to exit", self.identity),
            timeout,
            || {
                let status = child.try_wait().expect("wait for the operator");
                async move { status }
            },
        )
        .await
    }

    /// Kills and starts the operator again (same identity and namespace).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// The Prometheus text of /metrics, `None` when it cannot be read.
    pub async fn metrics(&self) -> Option<String> {
        fetch(self.metrics_addr, "/metrics").await
    }

    /// The value of one metric (summed over its label sets); `None` when /metrics cannot be read or has no
    /// sample of that name.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        parse_metric(&self.metrics().await?, name)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The operator's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The holder of the namespace's leader Lease, as the API server has it (`None`: no Lease, or nobody holds it).
pub async fn lease_holder(client: &Client, namespace: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let lease = leases
        .get_opt(LEASE)
        .await
        .unwrap_or_else(|e| panic!("read Lease {namespace}/{LEASE}: {e}"))?;
    lease.spec?.holder_identity
}

/// The address in the operator's "serving /metrics" log line, among the log's lines from byte `from` on.
fn serving_addr(log: &Path, from: u64) -> Option<SocketAddr> {
    let text = std::fs::read(log).ok()?;
    let text = String::from_utf8_lossy(text.get(from as usize..)?).to_string();
    text.lines()
        .filter(|l| l.contains("serving /metrics"))
        .find_map(|l| {
            let plain = strip_ansi(l);
            let (_, rest) = plain.split_once("addr=")?;
            rest.split_whitespace().next()?.parse().ok()
        })
}

/// The text without terminal colour sequences (ESC [ ... letter).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Sums the samples of `name` (any labels) in Prometheus text; `None` when there is none.
pub fn parse_metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ') | Some(b'{'))
        })
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("unreadable sample: {l}"))
        })
        .reduce(|a, b| a + b)
}

/// A plain HTTP/1.1 GET on loopback, enough for /metrics and /readyz.
async fn fetch(addr: SocketAddr, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serving_address_is_read_from_this_starts_lines() {
        let dir = std::env::temp_dir().join(crate::unique("op-log"));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("operator.log");
        let earlier =
            "INFO agent_operator::http: serving /metrics, /healthz, /readyz addr=127.0.0.1:1111\n";
        let now = "\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m agent_operator::http: serving /metrics, /healthz, \
                   /readyz \u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:2222\n";
        std::fs::write(&log, format!("{earlier}{now}")).unwrap();
        assert_eq!(
            serving_addr(&log, earlier.len() as u64),
            Some("127.0.0.1:2222".parse().unwrap())
        );
        assert_eq!(
            serving_addr(&log, 0),
            Some("127.0.0.1:1111".parse().unwrap())
        );
        assert_eq!(serving_addr(&log, (earlier.len() + now.len()) as u64), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_absent_metric_is_none_not_zero() {
        let text = "# TYPE agent_operator_leader gauge\nagent_operator_leader 0\n\
                    agent_operator_api_writes_total{resource=\"pods\",verb=\"create\"} 2\n\
                    agent_operator_api_writes_total{resource=\"jobs\",verb=\"patch\"} 3\n";
        assert_eq!(parse_metric(text, "agent_operator_leader"), Some(0.0));
        assert_eq!(
            parse_metric(text, "agent_operator_api_writes_total"),
            Some(5.0)
        );
        assert_eq!(parse_metric(text, "agent_operator_api_writes"), None);
        assert_eq!(parse_metric(text, "agent_operator_reconciles_total"), None);
    }
}
